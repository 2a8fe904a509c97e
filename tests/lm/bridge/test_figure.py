"""Curves drawn from run logs (``prefopt_toy.lm.bridge.figure``).

Oracle: the values written to the logs here by hand (``RunLogger``), and a ``BridgeResult`` built
by hand; every drawn line is read back by its ``gid``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefopt_toy.lm.bridge.class_estimate import class_estimate
from prefopt_toy.lm.bridge.figure import class_curves, landing_figure
from prefopt_toy.lm.bridge.run import BridgeResult
from prefopt_toy.lm.train.runlog import RunLogger, run_log_curves


def _log(path, rows):
    logger = RunLogger(path, config={"run": path.stem})
    for step, record in rows:
        logger.log(step, record)
    return path


def test_run_log_curves_draw_each_metric_of_each_run_and_skip_missing_values(tmp_path):
    a = _log(
        tmp_path / "a.jsonl",
        [(0, {"win_rate": 0.5}), (1, {"loss": 0.7}), (2, {"loss": 0.6, "win_rate": 0.55})],
    )
    b = _log(tmp_path / "b.jsonl", [(1, {"loss": 0.9}), (2, {"loss": 0.4})])
    fig = run_log_curves({"a": a, "b": b}, ["loss", "win_rate"], titles=["loss", "win rate"])
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["a:loss"].get_xydata(), [[1, 0.7], [2, 0.6]])
    np.testing.assert_array_equal(lines["b:loss"].get_xydata(), [[1, 0.9], [2, 0.4]])
    np.testing.assert_array_equal(lines["a:win_rate"].get_xydata(), [[0, 0.5], [2, 0.55]])
    assert "b:win_rate" not in lines  # b never logged it
    assert [ax.get_title() for ax in fig.axes] == ["loss", "win rate"]


def test_run_log_curves_bad_input(tmp_path):
    a = _log(tmp_path / "a.jsonl", [(1, {"loss": 0.7})])
    with pytest.raises(ValueError, match="logs must name"):
        run_log_curves({}, ["loss"])
    with pytest.raises(ValueError, match="keys must be"):
        run_log_curves({"a": a}, [])
    with pytest.raises(ValueError, match="titles must have one entry per key"):
        run_log_curves({"a": a}, ["loss"], titles=["x", "y"])
    with pytest.raises(ValueError, match="'eval/kl' is in no run log"):
        run_log_curves({"a": a}, ["eval/kl"])


def test_class_curves_draw_the_logged_classes_and_the_predictions():
    names = ("apple", "banana", "cherry", "other")
    mu = class_estimate(torch.tensor([0, 1, 2, 3]), 4, class_names=names)
    measured = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.4, 0.3, 0.2, 0.1]], dtype=torch.float64)
    pred = torch.tensor([0.5, 0.2, 0.25, 0.05], dtype=torch.float64)
    res = BridgeResult(
        algorithm="online_ipo",
        class_names=names,
        P_ext=torch.full((4, 4), 0.5, dtype=torch.float64),
        hyper={"tau": 1.0, "mixture": 0.0},
        mu_class=mu,
        prediction=pred,
        toy_trajectory=None,
        steps=[0, 5],
        measured=measured,
        final=mu,
        tv=0.0,
    )
    fig = class_curves({"run": res})
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines()}
    for k, cls in enumerate(names):
        np.testing.assert_array_equal(
            lines[f"run:{cls}"].get_xydata(), [[0, measured[0, k]], [5, measured[1, k]]]
        )
        assert lines[f"run:{cls}:prediction"].get_ydata()[0] == pytest.approx(float(pred[k]))
    with pytest.raises(ValueError, match="BridgeResult"):
        class_curves({"run": {"tv": 0.1}})


def test_landing_figure_draws_each_method_on_its_own_style_with_the_wilson_intervals():
    """Bars: mu_class, the prediction and each final (heights and error bars read back);
    lines: each method's measured classes (one style each) and the prediction."""
    from types import SimpleNamespace

    names = ("apple", "banana", "cherry", "other")
    mu = class_estimate(torch.tensor([0, 0, 1, 2, 3, 0, 1, 2]), 4, class_names=names)
    fin_a = class_estimate(torch.tensor([2, 2, 2, 1, 0, 2, 1, 3]), 4, class_names=names)
    fin_b = class_estimate(torch.tensor([2, 1, 2, 1, 0, 0, 1, 3]), 4, class_names=names)
    pred = torch.tensor([0.2, 0.3, 0.45, 0.05], dtype=torch.float64)
    meas_a = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.2, 0.3, 0.4, 0.1]], dtype=torch.float64)
    meas_b = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1], [0.2, 0.4, 0.3, 0.1]])
    a = SimpleNamespace(class_names=names, final=fin_a, steps=[0, 10], measured=meas_a)
    b = SimpleNamespace(class_names=names, final=fin_b, steps=[0, 5, 10], measured=meas_b)
    fig = landing_figure({"DPO": a, "RLHF": b}, pred, mu)
    ax, ax_t = fig.axes
    from matplotlib.container import BarContainer

    bars = {c.patches[0].get_gid(): c for c in ax.containers if isinstance(c, BarContainer)}
    heights = {gid: [r.get_height() for r in c] for gid, c in bars.items()}
    assert heights["bars:prediction"] == pytest.approx(pred.tolist())
    assert heights["bars:mu_class"] == pytest.approx(mu.probs.tolist())
    assert heights["bars:DPO"] == pytest.approx(fin_a.probs.tolist())
    assert heights["bars:RLHF"] == pytest.approx(fin_b.probs.tolist())
    # the error bars span the Wilson interval of each estimate
    caps = bars["bars:DPO"].errorbar.lines[2][0].get_segments()
    lows = [seg[0][1] for seg in caps]
    highs = [seg[1][1] for seg in caps]
    assert lows == pytest.approx(fin_a.lower.tolist()) and highs == pytest.approx(
        fin_a.upper.tolist()
    )
    lines = {line.get_gid(): line for line in ax_t.get_lines()}
    for k, cls in enumerate(names):
        np.testing.assert_allclose(lines[f"DPO:{cls}"].get_ydata(), meas_a[:, k].numpy())
        np.testing.assert_allclose(lines[f"RLHF:{cls}"].get_xdata(), [0, 5, 10])
        assert lines[f"prediction:{cls}"].get_ydata()[0] == pytest.approx(float(pred[k]))
        assert lines[f"DPO:{cls}"].get_linestyle() != lines[f"RLHF:{cls}"].get_linestyle()
    with pytest.raises(ValueError, match="prediction"):
        landing_figure({"DPO": a}, pred[:3], mu)
    with pytest.raises(ValueError, match="class names"):
        landing_figure(
            {"DPO": a, "x": SimpleNamespace(**{**vars(b), "class_names": names[:3]})}, pred, mu
        )
    with pytest.raises(ValueError, match="results"):
        landing_figure({}, pred, mu)
