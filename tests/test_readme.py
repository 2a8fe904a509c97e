"""The README's tour runs as written, and its comments state what the code returns."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
import torch
from _readme import python_code  # tests/_readme.py

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_namespace() -> dict:
    blocks = python_code(README)
    assert blocks, "README.md has no python block"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # our own README, not user input
    return namespace


def test_readme_tour_runs_and_its_comments_hold():
    ns = tour_namespace()
    pt = ns["pt"]
    P, mu = ns["P"], ns["mu"]
    assert pt.condorcet_winner(P) == 0
    assert int(pt.bt_fit(P).argmax()) == 1
    assert int(pt.rlhf_optimum(P, mu, beta=0.1).argmax()) == 1
    assert int(pt.ipo_optimum(P, mu, tau=0.1).argmax()) == 1
    assert ns["report"].residual <= 1e-12
    assert pt.nash_equilibrium(P).tolist() == [1.0, 0.0, 0.0]
    assert pt.exploitability(P, pt.rlhf_optimum(P, mu, beta=0.01)) == pytest.approx(0.05, abs=1e-6)
    assert float(ns["h"]) == pytest.approx(3.0)  # (-12 + 13) - (-15 + 13)
    assert float(ns["loss"].detach()) == pytest.approx(math.log(2), abs=1e-15)
    assert ns["theta"].grad is not None and bool(torch.isfinite(ns["theta"].grad).all())


def test_readme_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    assert first_block.splitlines()[0].startswith("make test")
    assert first_block.splitlines()[1].startswith("make demo")


def test_readme_algorithms_block_runs_and_lands():
    blocks = python_code(README)
    assert len(blocks) >= 2, "README.md lost its Algorithms example"
    namespace: dict = {}
    exec(compile(blocks[1], str(README), "exec"), namespace)  # our own README, not user input
    traj = namespace["traj"]
    assert tuple(traj.policies.shape) == (5001, 3)
    assert float(traj.distance_to("regularized_nash")[-1]) < 1e-12


def test_notebooks_readme_block_runs():
    (block,) = python_code(README.parent / "notebooks" / "README.md")
    namespace: dict = {}
    exec(compile(block, "notebooks/README.md", "exec"), namespace)  # our own file, not user input
    handle = namespace["h"]  # the block's own assert compares with pt.rlhf_optimum
    assert handle.controls["beta"].value == 0.5
    assert handle.image.value[:8] == b"\x89PNG\r\n\x1a\n"  # the figure was rendered


def test_readme_gpt2_block_trains_and_logs_trls_metric_names(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path))
    blocks = python_code(README)
    (block,) = [b for b in blocks if "prefopt_toy.lm" in b]
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)  # our own README, not user input
    final = namespace["summary"]["final"]
    for key in (
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "learning_rate",
    ):
        assert key in final
    assert namespace["summary"]["steps"] == 2
    # the printed keys are the ones the README's metric table explains
    table = README.read_text(encoding="utf-8").split("### What the logged metrics mean", 1)[1]
    for key in ast.literal_eval(
        capsys.readouterr().out.strip().splitlines()[-1]
    ):  # the printed list
        if key != "step":
            assert f"`{key}`" in table, key
