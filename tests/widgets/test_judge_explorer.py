"""The judge explorer (notebook 11): its pure compute function and its widget, set as a browser would.

Oracles, in numpy and sharing no code with the package: the two bias models written out
(``P + b (1 - P)``, a logistic of ``logit P + 2 atanh b``), the symmetrised judge and the
two-slot effective preference from their formulas (module docstring of ``analysis.judges``), and
each fixed point checked by its own stationarity condition: Nash-MD's and Nash-MD-PG's
``pi = mu exp((M - 1/2) s(pi) / tau) / Z``, the DPO optimum's Bradley-Terry score equations
``sum_y' W (P - sigma(r_y - r_y')) = 0`` with ``r = tau log(pi / mu)``, and IPO's weighted
least-squares normal equations ``sum_y' W (h_yy' - (P_yy' - 1/2) / tau) = 0`` with
``h = log(pi / mu)`` differences. Golden values: README, "AI feedback: an order-biased judge,
exactly" (three voter types, a 1-nat first-slot bonus, mu = (0.6, 0.3, 0.1), tau = 0.1).
"""

from __future__ import annotations

import math

import ipywidgets
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from prefopt_toy import widgets
from prefopt_toy.widgets.judge_explorer import (
    JUDGE_BIAS_RANGE,
    JUDGE_COLUMNS,
    JUDGE_GAMES,
    JUDGE_MODELS,
    JUDGE_TAU_RANGE,
    biased_judge,
    judge_explorer_data,
    judge_game,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MU = np.array([0.6, 0.3, 0.1])
UNIFORM = np.full(3, 1.0 / 3.0)
ONE_NAT = math.tanh(0.5)  # a 1-nat logit shift has position bias tanh(1/2) on a tie


def oracle_judge(P, model, b):
    P = np.asarray(P)
    if model == "lapse":
        return P + b * (1.0 - P) if b >= 0 else (1.0 + b) * P
    with np.errstate(divide="ignore"):
        logit = np.log(P) - np.log1p(-P)
    return 1.0 / (1.0 + np.exp(-(logit + 2.0 * math.atanh(b))))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def nash_residual(M, pi, tau, m):
    s = pi ** (1.0 - m) * MU**m
    s /= s.sum()
    w = MU * np.exp(((M - 0.5) @ s) / tau)
    return np.abs(pi - w / w.sum()).max()


def bt_score_residual(P, W, pi, tau):
    r = tau * np.log(pi / MU)
    return np.abs((W * (P - sigmoid(r[:, None] - r[None, :]))).sum(1)).max()


def ipo_residual(P, W, pi, tau):
    g = np.log(pi / MU)
    return np.abs((W * (g[:, None] - g[None, :] - (P - 0.5) / tau)).sum(1)).max()


def two_slot_preference(J, n1, n2):
    a = np.outer(n1, n2)
    return (a * J + a.T * (1.0 - J.T)) / (a + a.T)


@pytest.mark.parametrize("model", ["lapse", "logit shift"])
@pytest.mark.parametrize("b", [-0.6, 0.0, 0.45])
def test_biased_judge_is_the_written_out_model_with_bias_b_on_a_tie(model, b):
    P = judge_game("three voter types").numpy()
    J = biased_judge(P, model, b).numpy()
    np.testing.assert_allclose(J, oracle_judge(P, model, b), atol=1e-15)
    np.testing.assert_allclose(np.diag(J + J.T - 1.0), b, atol=1e-15)  # B on a tie is b


@pytest.mark.parametrize(
    ("game", "model", "b", "tau"),
    [
        ("three voter types", "logit shift", ONE_NAT, 0.1),
        ("rock-paper-scissors", "logit shift", -0.7, 0.3),
        ("bradley-terry", "lapse", 0.5, 0.1),
    ],
)
def test_every_column_satisfies_its_own_fixed_point_equation(game, model, b, tau):
    d = judge_explorer_data(game, model, b, tau, mu=MU, mixture=0.5)
    J = oracle_judge(judge_game(game).numpy(), model, b)
    P_sym = 0.5 * (J + 1.0 - J.T)
    np.testing.assert_allclose(d["J"].numpy(), J, atol=1e-15)
    np.testing.assert_allclose(d["P_sym"].numpy(), P_sym, atol=1e-15)
    np.testing.assert_allclose(d["B"].numpy(), J + J.T - 1.0, atol=1e-15)
    off = ~np.eye(3, dtype=bool)
    assert d["max_bias"] == pytest.approx(np.abs(J + J.T - 1.0)[off].max(), abs=1e-15)
    pooled = np.outer(MU, MU)
    two = 0.5 * (np.outer(MU, UNIFORM) + np.outer(UNIFORM, MU))
    P_two = two_slot_preference(J, MU, UNIFORM)
    P_two_sym = two_slot_preference(P_sym, MU, UNIFORM)
    raw, sym = d["raw"].numpy(), d["symmetrized"].numpy()
    for i, (algorithm, label, two_slot) in enumerate(JUDGE_COLUMNS):
        assert d["labels"][i] == label
        np.testing.assert_allclose(raw[i].sum(), 1.0, atol=1e-12)
        tv = 0.5 * np.abs(raw[i] - sym[i]).sum()
        assert float(d["distance"][i]) == pytest.approx(tv, abs=1e-14)
        if algorithm in ("nash_md", "nash_md_pg", "online_ipo", "ipo_md"):
            m = 0.0 if algorithm in ("nash_md", "online_ipo") else 0.5
            M = J if algorithm.startswith("nash") else P_sym  # Nash-MD sees J; the others P_sym
            assert nash_residual(M, raw[i], tau, m) < 1e-10
            assert nash_residual(P_sym, sym[i], tau, m) < 1e-10
        elif algorithm == "dpo":
            W, P_raw, P_s = (two, P_two, P_two_sym) if two_slot else (pooled, P_sym, P_sym)
            assert bt_score_residual(P_raw, W, raw[i], tau) < 1e-9
            assert bt_score_residual(P_s, W, sym[i], tau) < 1e-9
        else:
            W, P_raw, P_s = (two, P_two, P_two_sym) if two_slot else (pooled, P_sym, P_sym)
            assert ipo_residual(P_raw, W, raw[i], tau) < 1e-9
            assert ipo_residual(P_s, W, sym[i], tau) < 1e-9
        if not two_slot and not algorithm.startswith("nash"):
            assert tv < 1e-12  # pairs from one distribution: the bias is invisible


@pytest.mark.parametrize("game", JUDGE_GAMES)
@pytest.mark.parametrize("model", JUDGE_MODELS)
def test_the_sliders_extremes_are_certified(game, model):
    # The hard corner is a large bias against the smallest tau (where a branch could fold):
    # every column there is still a certified fixed point of its own equation.
    low, high = JUDGE_BIAS_RANGE
    for b in (low, -0.5, 0.5, high):
        d = judge_explorer_data(game, model, b, JUDGE_TAU_RANGE[0], mu=MU, mixture=0.5)
        J = oracle_judge(judge_game(game).numpy(), model, b)
        for i, (algorithm, _, _) in enumerate(JUDGE_COLUMNS):
            if algorithm in ("nash_md", "nash_md_pg"):
                m = 0.0 if algorithm == "nash_md" else 0.5
                assert nash_residual(J, d["raw"][i].numpy(), JUDGE_TAU_RANGE[0], m) < 1e-10


def test_readme_numbers_and_a_uniform_bias_cancels_for_nash_md():
    # README, "AI feedback: an order-biased judge, exactly": Nash-MD (0.482, 0.436, 0.082) at
    # TV 0.015, Nash-MD-PG (mixture 0.5) TV 0.012, DPO two-slot TV 0.344, IPO two-slot TV 0.162
    d = judge_explorer_data("three voter types", "logit shift", ONE_NAT, 0.1, mu=MU)
    tv = dict(zip(d["labels"], d["distance"].tolist()))
    np.testing.assert_allclose(
        d["raw"][d["labels"].index("Nash-MD")], [0.482, 0.436, 0.082], atol=6e-4
    )
    assert (round(tv["Nash-MD"], 3), round(tv["Nash-MD-PG"], 3)) == (0.015, 0.012)
    assert (round(tv["DPO two-slot"], 3), round(tv["IPO two-slot"], 3)) == (0.344, 0.162)
    # a lapse judge has a constant B: it shifts every payoff alike and Nash-MD does not move
    lapse = judge_explorer_data("three voter types", "lapse", 0.6, 0.1, mu=MU)
    assert float(lapse["distance"][:6].max()) < 1e-10
    assert float(lapse["distance"][6]) > 0.1  # the two-slot data still leak it


def test_widget_follows_its_controls():
    h = widgets.judge_explorer(bias=0.5, tau=0.1)
    assert isinstance(h.widget, ipywidgets.Box)
    assert isinstance(h.figure.canvas, FigureCanvasAgg)
    assert bytes(h.image.value).startswith(PNG_MAGIC)
    assert set(h.controls) == {"bias", "model", "tau", "game"}
    for name, control in h.controls.items():
        assert control.description == name
        assert f"prefopt-{name}" in control._dom_classes
        if isinstance(control, (ipywidgets.FloatSlider, ipywidgets.FloatLogSlider)):
            assert control.continuous_update is False
    png = bytes(h.image.value)
    h.controls["game"].value = "rock-paper-scissors"
    h.controls["bias"].value = -0.7
    h.controls["tau"].value = 0.32
    assert bytes(h.image.value) != png
    expected = judge_explorer_data("rock-paper-scissors", "logit shift", -0.7, 0.32, mu=MU)
    torch.testing.assert_close(h.data["raw"], expected["raw"], rtol=0, atol=1e-13)
    ax, ax_tv = h.figure.axes
    heights = [b.get_height() for b in ax.patches if b.get_gid() == "bars:raw"]
    np.testing.assert_allclose(heights, h.data["raw"].reshape(-1).numpy())
    ticks = [ln for ln in ax.get_lines() if ln.get_gid() == "symmetrized"][0]
    np.testing.assert_allclose(ticks.get_ydata()[0::3], h.data["symmetrized"].reshape(-1).numpy())
    tv_bars = [b for b in ax_tv.patches if b.get_gid() == "bars:tv"]
    tops = [b.get_y() + b.get_height() for b in tv_bars]
    shown = np.maximum(h.data["distance"].numpy(), 1e-4)  # the log axis' floor
    np.testing.assert_allclose(tops, shown, rtol=1e-12)
    labels = [t.get_text() for t in ax_tv.texts]
    assert labels[:4] == ["0"] * 4 and labels[4] == f"{float(h.data['distance'][4]):.2g}"
    assert "-0.7" in h._artists["title"].get_text()
    assert h.status.value == ""


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="game must be one of"):
        judge_game("chess")
    with pytest.raises(ValueError, match="model must be one of"):
        biased_judge(judge_game("bradley-terry"), "random", 0.1)
    with pytest.raises(ValueError, match=r"bias must lie in \(-1, 1\)"):
        biased_judge(judge_game("bradley-terry"), "lapse", 1.0)
    with pytest.raises(ValueError, match=r"bias must lie in \[-0.95, 0.95\]"):
        widgets.judge_explorer(bias=0.99)
    with pytest.raises(ValueError, match="tau must lie in"):
        widgets.judge_explorer(tau=10.0)
    with pytest.raises(ValueError, match="mu must"):
        judge_explorer_data(mu=[0.5, 0.5])
    with pytest.raises(ValueError, match="game must be one of"):
        widgets.judge_explorer(game="chess")
