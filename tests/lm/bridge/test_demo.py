"""Tests for the ``bridge`` command (``prefopt_toy.lm.bridge.demo``) and its place in ``demo``.

Oracles: the PNG signature and IHDR chunk / the PDF header and trailer (file-format specs); the
exact solver ``pt.regularized_nash`` run here on a bordered matrix built by hand from the game and
on ``mu_class = count / n`` read back from the printed text; argparse's own ``--help`` text.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.__main__ import main

P = [[0.5, 0.9, 0.1], [0.1, 0.5, 0.9], [0.9, 0.1, 0.5]]  # the game the command documents
TAU = 0.25
ROW = re.compile(
    r"^(apple|banana|cherry|other)\s+"
    r"([\d.]+) \[([\d.]+), ([\d.]+)\] \((\d+)/(\d+)\)\s+"  # mu_class
    r"([\d.]+)\s+"  # prediction
    r"([\d.]+) \[([\d.]+), ([\d.]+)\] \((\d+)/(\d+)\)$",  # final
    re.MULTILINE,
)


@pytest.fixture(autouse=True)
def _session_model_cache(monkeypatch, tiny_cache):
    """The demo's models come from the session's cache (tests/lm/conftest.py): trained once."""
    monkeypatch.setenv("PREFOPT_CACHE", str(tiny_cache))


def test_help_lists_bridge(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert re.search(r"^\s+bridge\s", text, re.MULTILINE)
    with pytest.raises(SystemExit):
        main(["bridge", "--help"])
    sub = capsys.readouterr().out
    for flag in ("--quick", "--algorithm", "--steps", "--out"):
        assert flag in sub
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--no-bridge" in capsys.readouterr().out


def test_bridge_bad_steps(capsys):
    assert main(["bridge", "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--steps must be >= 1" in err and err.count("\n") == 1


def test_bridge_quick_writes_figures_and_the_exact_prediction(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["bridge", "--quick", "--algorithm", "online_ipo", "--out", str(out)]) == 0
    text = capsys.readouterr().out

    png = (out / "bridge_online_ipo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 100 and height > 100
    pdf = (out / "bridge_online_ipo.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")

    rows = ROW.findall(text)
    assert [r[0] for r in rows] == ["apple", "banana", "cherry", "other"], text
    counts = [int(r[4]) for r in rows]
    n = int(rows[0][5])
    assert sum(counts) == n and all(int(r[5]) == n for r in rows)
    mu = torch.tensor(counts, dtype=torch.float64) / n
    # bordered game by hand: every class beats "other" surely (the judge's default other_loses = 1)
    P_ext = torch.full((4, 4), 0.5, dtype=torch.float64)
    P_ext[:3, :3] = torch.tensor(P, dtype=torch.float64)
    P_ext[:3, 3], P_ext[3, :3] = 1.0, 0.0
    expected = pt.regularized_nash(P_ext, mu, TAU)
    printed = torch.tensor([float(r[6]) for r in rows], dtype=torch.float64)
    assert torch.allclose(printed, expected, atol=5.1e-5), (printed, expected)
    # printed mu_class and final are count / n, and each lies inside its own interval
    for r in rows:
        for p, lo, hi, c, m in (r[1:6], r[7:12]):
            assert float(p) == pytest.approx(int(c) / int(m), abs=5.1e-5)
            assert float(lo) <= float(p) <= float(hi)
    final = torch.tensor([int(r[10]) for r in rows], dtype=torch.float64) / n
    tv = float(re.search(r"total variation\(final, prediction\) = ([\d.]+)", text).group(1))
    assert tv == pytest.approx(0.5 * float((final - expected).abs().sum()), abs=2e-4)
    assert "not the converged comparison" in text
    assert re.search(r"wall time: [\d.]+ s", text)

    # the sampling-error line and the JSON summary carry the same numbers as the text
    m = re.search(
        r"bootstrap interval of the TV \[([\d.]+), ([\d.]+)\]; a policy exactly at the prediction "
        r"would show TV ([\d.]+) on average",
        text,
    )
    assert m and float(m.group(1)) <= float(m.group(2))
    summary = json.loads((out / "bridge_summary.json").read_text())
    (run,) = summary["runs"]
    assert run["algorithm"] == "online_ipo" and run["tv"] == pytest.approx(tv, abs=1e-4)
    assert run["prediction"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert run["tv_error"]["floor_mean"] == pytest.approx(float(m.group(3)), abs=1e-4)
    assert run["settings"]["size"] == "tiny"


def test_bridge_settings_are_the_readme_runs_and_bad_input_is_named():
    from prefopt_toy.lm.bridge.demo import DEMO_RUNS, bridge_settings, run_bridge_demo

    assert DEMO_RUNS == ("online_ipo", "ipo")
    online, offline = bridge_settings("online_ipo"), bridge_settings("ipo")
    assert (online.size, online.steps, online.batch_size, online.lr) == ("small", 120, 16, 5e-5)
    assert (offline.size, offline.steps, offline.batch_size, offline.lr, offline.n_pairs) == (
        "small",
        100,
        32,
        1e-4,
        1024,
    )
    # the README's GPT-2 section states the settings its numbers were measured with: the same ones
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    text = " ".join(readme.split("### The bridge", 1)[1].split())
    m = re.search(
        r"Online IPO: (\d+) steps of (\d+) pairs at lr ([\de.-]+).*?Offline IPO: (\d+) steps of (\d+) "
        r"pairs at lr ([\de.-]+), on (\d+) reference pairs",
        text,
    )
    assert m, "README lost the bridge settings line"
    assert (int(m[1]), int(m[2]), float(m[3])) == (online.steps, online.batch_size, online.lr)
    assert (int(m[4]), int(m[5]), float(m[6]), int(m[7])) == (
        offline.steps,
        offline.batch_size,
        offline.lr,
        offline.n_pairs,
    )
    assert f"{online.n_eval_samples} completions for each class estimate" in text
    assert online.n_eval_samples == offline.n_eval_samples == 2000
    assert bridge_settings("ipo", quick=True).size == "tiny"
    assert bridge_settings("ipo", steps=8).steps == 8
    with pytest.raises(ValueError, match="algorithm must be one of"):
        bridge_settings("rlhf")
    with pytest.raises(ValueError, match="steps must be an integer"):
        bridge_settings("ipo", steps=0)
    with pytest.raises(ValueError, match="algorithms must be a non-empty list"):
        run_bridge_demo(algorithms=["nash_md"])
