"""Tests for prefopt_toy.lm.bridge.runs (saved bridge runs) and prefopt_toy.lm.bridge.widget.

Oracles: the ``BridgeResult`` returned by ``run_bridge`` itself (the round trip must give it back);
``runlog.read_run_log`` on the run's own log (the measured trajectory); ``bridge.predict`` called
here on the saved ``mu_class`` (the toy trajectory the widget draws); the renormalisation and the
triangle's corners written out here (what lands on the figure). The GPT-2 runs are tiny (2 steps,
the tiny offline model), a few seconds each, shared by the module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch

from prefopt_toy.lm.bridge import runs as bridge_runs
from prefopt_toy.lm.bridge.demo import BRIDGE_MIXTURE, BRIDGE_P, BRIDGE_TAU
from prefopt_toy.lm.bridge.run import predict, run_bridge
from prefopt_toy.lm.bridge.runs import (
    BRIDGE_FILE,
    LOG_FILE,
    load_bridge_run,
    load_bridge_runs,
    run_bridge_grid,
    run_name,
    save_bridge_run,
)
from prefopt_toy.lm.bridge.widget import bridge_explorer, interval_ends
from prefopt_toy.lm.train.runlog import read_run_log

P = [list(row) for row in BRIDGE_P]
TINY = {
    "steps": 2,
    "n_eval_samples": 32,
    "n_eval": 8,
    "eval_every": 1,
    "n_pairs": 16,
    "batch_size": 4,
    "max_new_tokens": 8,
    "toy_steps": 50,
}
CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]])


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_lm):
    """One online IPO run saved by hand (its BridgeResult kept), then a grid that adds IPO-MD."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("bridge_runs")
    model, tokenizer = tiny_lm
    kwargs = dict(P=P, model=model, tokenizer=tokenizer, **TINY)
    run_dir = root / run_name("online_ipo", BRIDGE_TAU)
    result = run_bridge("online_ipo", tau=BRIDGE_TAU, run_dir=run_dir, **kwargs)
    save_bridge_run(result, run_dir)
    runs = run_bridge_grid(
        root, ["online_ipo", "ipo_md"], [BRIDGE_TAU], mixture=BRIDGE_MIXTURE, **kwargs
    )
    yield {"root": root, "result": result, "run_dir": run_dir, "runs": runs, "kwargs": kwargs}
    mp.undo()


def _copy(grid, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(grid["run_dir"], target)
    return target


# ----------------------------------------------------------------------------- save / load
def test_round_trip_equals_the_result(grid):
    result, run = grid["result"], load_bridge_run(grid["run_dir"])
    assert (run.algorithm, run.strength_name, run.strength, run.mixture) == (
        "online_ipo",
        "tau",
        BRIDGE_TAU,
        0.0,
    )
    assert run.tau == BRIDGE_TAU and run.beta is None
    assert run.class_names == result.class_names and run.steps == tuple(result.steps)
    for name in ("P_ext", "prediction", "toy_trajectory", "measured"):
        got, want = getattr(run, name), getattr(result, name)
        assert got.dtype == torch.float64 and got.shape == want.shape, name
        assert float((got - want.to(torch.float64)).abs().max()) <= 1e-12, name
    for name in ("mu_class", "final"):
        got, want = getattr(run, name), getattr(result, name)
        for field in ("probs", "lower", "upper", "counts"):
            assert (
                float((getattr(got, field).double() - getattr(want, field).double()).abs().max())
                <= 1e-12
            )
        assert (got.n, got.level, got.class_names) == (want.n, want.level, want.class_names)
    assert run.tv == pytest.approx(result.tv, abs=1e-12)
    saved = json.loads((grid["run_dir"] / BRIDGE_FILE).read_text())
    assert saved["summary"] == json.loads(json.dumps(result.summary()))
    assert run.config["algorithm"] == "online_ipo" and run.config["steps"] == TINY["steps"]


def test_measured_trajectory_is_read_from_the_run_log(grid):
    run = load_bridge_run(grid["run_dir"])
    records = [
        r
        for r in read_run_log(grid["run_dir"] / LOG_FILE)
        if r.get("class_distribution") is not None
    ]
    assert run.steps == tuple(r["step"] for r in records) == (0, 1, 2)
    assert torch.equal(
        run.measured, torch.tensor([r["class_distribution"] for r in records], dtype=torch.float64)
    )


def test_a_run_log_from_another_run_is_refused(grid, tmp_path):
    target = _copy(grid, tmp_path)
    lines = (target / LOG_FILE).read_text().splitlines()
    record = json.loads(lines[1])
    record["class_distribution"] = [0.25, 0.25, 0.25, 0.25]
    lines[1] = json.dumps(record)
    (target / LOG_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=str(target / LOG_FILE)):
        load_bridge_run(target)


def test_missing_bridge_json_names_the_file(grid, tmp_path):
    target = _copy(grid, tmp_path)
    (target / BRIDGE_FILE).unlink()
    with pytest.raises(ValueError, match=f"{target / BRIDGE_FILE}.*does not exist"):
        load_bridge_run(target)
    with pytest.raises(
        ValueError, match=str(target / BRIDGE_FILE)
    ):  # an unfinished run in a folder
        load_bridge_runs(tmp_path)
    with pytest.raises(ValueError, match="holds no bridge run"):
        load_bridge_runs(tmp_path, skip_incomplete=True)
    with pytest.raises(ValueError, match="not a directory"):
        load_bridge_runs(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "damage",
    [
        "not json",
        "other format",
        "no prediction",
        "short trajectory",
        "bad counts",
        "unknown algorithm",
    ],
)
def test_malformed_bridge_json_names_the_file(grid, tmp_path, damage):
    target = _copy(grid, tmp_path)
    path = target / BRIDGE_FILE
    record = json.loads(path.read_text())
    if damage == "not json":
        path.write_text("{ truncated")
    else:
        if damage == "other format":
            record["format"] = "something else"
        elif damage == "no prediction":
            del record["prediction"]
        elif damage == "short trajectory":
            record["toy_trajectory"] = [row[:3] for row in record["toy_trajectory"]]
        elif damage == "bad counts":
            record["final"]["counts"][0] += 1
        else:
            record["algorithm"] = "nash_md"
        path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=str(path)):
        load_bridge_run(target)
    with pytest.raises(ValueError, match=str(path)):
        load_bridge_runs(tmp_path)


def test_save_needs_the_run_log(grid, tmp_path):
    with pytest.raises(ValueError, match="result has no run log"):
        save_bridge_run(dataclasses.replace(grid["result"], log_path=None), tmp_path / "x")
    with pytest.raises(ValueError, match="result must be a BridgeResult"):
        save_bridge_run(load_bridge_run(grid["run_dir"]), tmp_path / "x")
    # a log elsewhere is copied beside bridge.json
    save_bridge_run(grid["result"], tmp_path / "elsewhere")
    assert load_bridge_run(tmp_path / "elsewhere").steps == (0, 1, 2)


# ----------------------------------------------------------------------------- the grid
def test_grid_runs_saves_and_sorts(grid):
    runs = grid["runs"]
    assert [(r.algorithm, r.strength, r.mixture) for r in runs] == [
        ("online_ipo", BRIDGE_TAU, 0.0),
        ("ipo_md", BRIDGE_TAU, BRIDGE_MIXTURE),
    ]
    assert runs[1].path.name == f"ipo_md-tau{BRIDGE_TAU:g}-mix{BRIDGE_MIXTURE:g}"
    # the hand-saved online IPO run was skipped, not redone: it is the same run
    assert torch.equal(runs[0].measured, grid["result"].measured.double())
    loaded = load_bridge_runs(grid["root"])
    assert [r.algorithm for r in loaded] == ["ipo_md", "online_ipo"]


def test_grid_skips_saved_runs_and_checks_them(grid, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("run_bridge must not be called for a saved run")

    monkeypatch.setattr("prefopt_toy.lm.bridge.run.run_bridge", refuse)
    again = run_bridge_grid(grid["root"], ["ipo_md"], [BRIDGE_TAU], mixture=BRIDGE_MIXTURE, P=P)
    assert again[0].path == grid["runs"][1].path
    fake = tmp_path / run_name("online_ipo", 1.0)
    shutil.copytree(grid["run_dir"], fake)  # holds tau = 0.25 under the name of tau = 1
    with pytest.raises(ValueError, match="overwrite=True"):
        run_bridge_grid(tmp_path, ["online_ipo"], [1.0], P=P)
    for bad, match in [({"tau": 1.0}, "must not set"), ({}, "must include P")]:
        with pytest.raises(ValueError, match=match):
            run_bridge_grid(tmp_path, ["online_ipo"], [1.0], **({"P": P} if bad else {}), **bad)
    with pytest.raises(ValueError, match="algorithms must be"):
        run_bridge_grid(tmp_path, ["nash_md"], [1.0], P=P)
    with pytest.raises(ValueError, match="taus must be > 0"):
        run_bridge_grid(tmp_path, ["ipo"], [0.0], P=P)
    assert bridge_runs.run_name("dpo", 0.5) == "dpo-beta0.5"


# ----------------------------------------------------------------------------- the widget
def _renormalise(d):
    d = np.asarray(d, dtype=float)[..., :3]
    return d / d.sum(axis=-1, keepdims=True)


def _line(fig, gid):
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, f"expected one line {gid!r}, found {len(found)}"
    return found[0]


def _expected_toy(run):
    kw = {"beta": run.strength} if run.strength_name == "beta" else {"tau": run.strength}
    if run.algorithm in ("ipo_md", "nash_md_pg"):
        kw["mixture"] = run.mixture
    return predict(
        run.algorithm,
        run.P_ext,
        run.mu_class.probs,
        toy_steps=run.toy_trajectory.shape[0] - 1,
        **kw,
    )


@pytest.mark.parametrize("algorithm", ["online_ipo", "ipo_md"])
def test_widget_draws_the_exact_toy_for_the_chosen_run(grid, algorithm):
    h = bridge_explorer(grid["root"])
    h.controls["algorithm"].value = algorithm
    run = h.data["run"]
    assert run.algorithm == algorithm and h.data["strength"] == BRIDGE_TAU
    prediction, trajectory = _expected_toy(run)
    assert float((h.data["toy_trajectory"] - trajectory).abs().max()) <= 1e-12
    assert float((h.data["prediction"] - prediction).abs().max()) <= 1e-12
    # on the figure: the renormalised distributions at the triangle's corners
    xy = np.stack(_line(h.figure, "toy").get_data(), axis=1)
    np.testing.assert_allclose(xy, _renormalise(trajectory.numpy()) @ CORNERS, atol=1e-12)
    records = [
        r for r in read_run_log(run.path / LOG_FILE) if r.get("class_distribution") is not None
    ]
    xy = np.stack(_line(h.figure, "gpt2").get_data(), axis=1)
    np.testing.assert_allclose(
        xy, _renormalise([r["class_distribution"] for r in records]) @ CORNERS, atol=1e-12
    )
    star = np.stack(_line(h.figure, "prediction").get_data(), axis=1)
    np.testing.assert_allclose(star, _renormalise(prediction.numpy()[None]) @ CORNERS, atol=1e-12)
    assert bytes(h.image.value).startswith(b"\x89PNG")
    assert f"prediction {float(prediction[-1]):.3f}" in h.status.value and "other" in h.status.value


def test_changing_the_dropdown_changes_the_data(grid):
    h = bridge_explorer(grid["root"])
    first = h.data["run"].path
    other = "online_ipo" if h.data["algorithm"] == "ipo_md" else "ipo_md"
    h.controls["algorithm"].value = other
    run = load_bridge_run(h.data["run"].path)
    assert run.path != first and run.algorithm == other
    for name in ("toy_trajectory", "measured", "prediction"):
        assert torch.equal(h.data[name], getattr(run, name)), name
    assert h.controls["mixture"].disabled and h.controls["tau"].description == "tau"


def test_tau_slider_offers_the_strengths_of_the_chosen_algorithm(grid):
    base = grid["runs"]
    online = base[0]
    p2, t2 = _expected_toy(dataclasses.replace(online, strength=1.0))
    second = dataclasses.replace(
        online, strength=1.0, path=online.path.parent / "b", prediction=p2, toy_trajectory=t2
    )
    h = bridge_explorer([*base, second])
    h.controls["algorithm"].value = "online_ipo"
    assert [v for _, v in h.controls["tau"].options] == [BRIDGE_TAU, 1.0]
    h.controls["tau"].value = 1.0
    assert h.data["run"] is second and torch.equal(h.data["toy_trajectory"], t2)
    h.controls["algorithm"].value = "ipo_md"  # one tau there: the slider follows
    assert [v for _, v in h.controls["tau"].options] == [BRIDGE_TAU] and h.data[
        "algorithm"
    ] == "ipo_md"


def test_interval_segments_span_the_wilson_intervals(grid):
    final = grid["runs"][0].final
    ends = interval_ends(final)
    assert ends.shape == (3, 2, 4)
    for k in range(3):
        assert float(ends[k, 0, k]) == float(final.lower[k]) and float(ends[k, 1, k]) == float(
            final.upper[k]
        )
        others = [j for j in range(4) if j != k]
        assert torch.equal(ends[k, :, others], final.probs[others].expand(2, 3))
    h = bridge_explorer(grid["runs"])
    name = h.data["class_names"][0]
    xy = np.stack(_line(h.figure, f"interval:{name}").get_data(), axis=1)
    np.testing.assert_allclose(
        xy, _renormalise(h.data["interval_ends"][0].numpy()) @ CORNERS, atol=1e-12
    )


def test_a_collapsed_run_is_drawn_without_its_off_simplex_points(grid):
    # a run can log distributions with every sample "other": no point on the fruit simplex
    run = grid["runs"][0]
    measured = run.measured.clone()
    measured[1:] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    other = dataclasses.replace(
        run.final, probs=torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    )
    h = bridge_explorer([dataclasses.replace(run, measured=measured, final=other)])
    assert h.data["off_simplex_steps"] == [1, 2] and h.data["drawn_steps"] == [0]
    xy = np.stack(_line(h.figure, "gpt2").get_data(), axis=1)
    np.testing.assert_allclose(xy, _renormalise(measured[:1].numpy()) @ CORNERS, atol=1e-12)
    assert "logged steps [1, 2]" in h.status.value and "the final estimate" in h.status.value
    assert not [ln for ln in h.figure.axes[0].get_lines() if ln.get_gid() == "final"]


def test_explorer_bad_input(grid):
    with pytest.raises(ValueError, match="runs_or_root must be"):
        bridge_explorer([])
    with pytest.raises(ValueError, match="runs_or_root must be"):
        bridge_explorer([grid["result"]])
    with pytest.raises(ValueError, match="two runs of online_ipo"):
        bridge_explorer(
            [grid["runs"][0], dataclasses.replace(grid["runs"][0], path=grid["root"] / "dup")]
        )
    with pytest.raises(ValueError, match="estimate must be a ClassEstimate"):
        interval_ends(grid["runs"][0].final.probs)
