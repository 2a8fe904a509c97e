"""Widgets: build headless, set ``.value`` on a control, check that the handle followed.

In the style of jupyter-widgets/ipywidgets ``widgets/tests/test_interaction.py``: every check sets a
control's value as the browser would and reads the handle back. The drawn numbers are compared with
independent computations written here from the closed forms (the Gibbs form of the RLHF optimum,
the Nash-MD mirror step of Munos et al. Eq. (9) in numpy, the fixed-point equations, Theorem 1's
bound, the three-voter-types equilibrium of Sec. 3.2), not with the widget's own earlier output.
"""

from __future__ import annotations

import math

import ipywidgets
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.simplex import barycentric_to_cartesian

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCORES = np.array([1.0, 0.5, 0.0])  # BT scores of the transitive test game
MU = np.array([0.5, 0.3, 0.2])


def bt_game():
    return pt.bradley_terry(SCORES)


def rps_game():
    return pt.rock_paper_scissors(0.8), np.array([0.6, 0.3, 0.1])


def line(fig, gid):
    """The one Line2D with ``gid`` in the figure."""
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, f"expected one line {gid!r}, found {len(found)}"
    return found[0]


def gids(fig):
    """The gids of the lines drawn (a marker a widget hides is not drawn)."""
    return {ln.get_gid() for ax in fig.axes for ln in ax.get_lines() if ln.get_visible()}


# ----------------------------------------------------------------------------- independent oracles


def gibbs(mu, reward, beta):
    """mu * exp(reward / beta) / Z (DPO arXiv:2305.18290v3 Eq. (4)), in numpy."""
    w = np.asarray(mu) * np.exp((np.asarray(reward) - np.max(reward)) / beta)
    return w / w.sum()


def nash_md_numpy(P, mu, tau, steps, eta=None):
    """Nash-MD written directly from Munos et al. arXiv:2312.00886v4 Eq. (8)-(9), in numpy."""
    P, mu = np.asarray(P, dtype=float), np.asarray(mu, dtype=float)
    pi = mu.copy()
    out = [pi]
    for t in range(steps):
        step = 2.0 / (tau * (t + 2)) if eta is None else eta
        mix = pi ** (1 - step * tau) * mu ** (step * tau)
        mix /= mix.sum()
        new = mix * np.exp(step * (P @ mix))
        pi = new / new.sum()
        out.append(pi)
    return np.array(out)


def mixture_fixed_point_residual(P, mu, tau, m, pi):
    """max |pi - normalise(mu exp(P pi_m / tau))| with pi_m = normalise(pi^(1-m) mu^m)
    (Calandriello et al. arXiv:2403.08635v1 Sec. 5; m = 0 is the regularised Nash)."""
    P, mu, pi = (np.asarray(x, dtype=float) for x in (P, mu, pi))
    pm = pi ** (1 - m) * mu**m
    pm /= pm.sum()
    return float(np.abs(pi - gibbs(mu, P @ pm, tau)).max())


def kl_numpy(p, q):
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    return float(np.sum(p * np.log(p / q)))


# ------------------------------------------------------------------------------------ contract


@pytest.fixture(params=["editor", "beta", "nash"])
def any_widget(request):
    P, mu = rps_game()
    return {
        "editor": lambda: widgets.preference_editor(),
        "beta": lambda: widgets.beta_explorer(P, mu),
        "nash": lambda: widgets.nash_learning(P, mu, steps=200),
    }[request.param]()


def test_handle_follows_the_contract(any_widget):
    h = any_widget
    assert isinstance(h.widget, ipywidgets.Box)
    assert isinstance(h.figure.canvas, FigureCanvasAgg)
    assert isinstance(h.image, ipywidgets.Image) and h.image.format == "png"
    assert "prefopt-figure" in h.image._dom_classes
    assert bytes(h.image.value).startswith(PNG_MAGIC)
    assert h.status.value == ""
    for name, control in h.controls.items():
        assert control.description == name
        assert f"prefopt-{name}" in control._dom_classes
        if isinstance(
            control, (ipywidgets.FloatSlider, ipywidgets.FloatLogSlider, ipywidgets.IntSlider)
        ):
            assert control.continuous_update is False
    bundle = h._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == h.widget.model_id


# ------------------------------------------------------------------------------- beta explorer


def test_beta_slider_moves_the_optimum_to_the_gibbs_closed_form():
    h = widgets.beta_explorer(bt_game(), MU, beta=1.0)
    at_one = h.data["optimum"].clone()
    png_before = bytes(h.image.value)
    h.controls["beta"].value = 0.5
    assert h.data["beta"] == 0.5
    # The library's own optimum, as the contract says ...
    torch.testing.assert_close(
        h.data["optimum"], pt.rlhf_optimum(bt_game(), MU, 0.5), rtol=0, atol=1e-12
    )
    # ... and the closed form on a BT game, where bt_fit recovers the scores up to a constant.
    np.testing.assert_allclose(
        h.data["optimum"].numpy(), gibbs(MU, SCORES, 0.5), rtol=0, atol=1e-12
    )
    assert float((h.data["optimum"] - at_one).abs().max()) > 0.05
    np.testing.assert_allclose(at_one.numpy(), gibbs(MU, SCORES, 1.0), rtol=0, atol=1e-12)
    assert bytes(h.image.value) != png_before


def test_beta_optimum_is_the_library_rlhf_optimum_on_pairs_from_mu():
    P = pt.three_voter_types(0.1)  # not BT: the fit depends on the pairs' distribution
    h = widgets.beta_explorer(P, MU)
    for beta in (0.05, 0.4, 3.2):
        h.controls["beta"].value = beta
        expected = pt.rlhf_optimum(P, MU, beta, nu=MU)
        torch.testing.assert_close(h.data["optimum"], expected, rtol=0, atol=1e-12)
    i = len(h.data["path_betas"]) // 3
    torch.testing.assert_close(
        h.data["path"][i],
        pt.rlhf_optimum(P, MU, float(h.data["path_betas"][i]), nu=MU),
        rtol=0,
        atol=1e-12,
    )


def test_beta_path_runs_from_the_bt_argmax_to_mu():
    h = widgets.beta_explorer(bt_game(), MU)
    betas = h.data["path_betas"].numpy()
    assert betas[0] == pytest.approx(0.01) and betas[-1] == pytest.approx(100.0)
    expected = np.stack([gibbs(MU, SCORES, b) for b in betas])
    np.testing.assert_allclose(h.data["path"].numpy(), expected, rtol=0, atol=1e-12)
    # Small beta: mass on the top score y0 (1 - pi_0 ~ 0.6 e^-50); large beta: close to mu.
    assert h.data["path"][0, 0] > 1 - 1e-15
    assert float((h.data["path"][-1] - torch.tensor(MU)).abs().max()) < 0.01
    np.testing.assert_array_equal(h.data["bt_argmax"].numpy(), [1.0, 0.0, 0.0])


def test_beta_figure_draws_the_data():
    h = widgets.beta_explorer(bt_game(), MU)
    h.controls["beta"].value = 2.0
    np.testing.assert_allclose(
        line(h.figure, "optimum").get_xydata()[0],
        barycentric_to_cartesian(gibbs(MU, SCORES, 2.0)).numpy(),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        line(h.figure, "path").get_xydata(),
        barycentric_to_cartesian(h.data["path"]).numpy(),
        atol=1e-15,
    )


def test_beta_on_a_tie_has_no_argmax_vertex():
    # The BT fit of rock-paper-scissors on pairs from a uniform mu gives every action the same
    # score (the explorer fits on pairs ~ mu: a skewed mu breaks the tie).
    P, mu = rps_game()[0], np.full(3, 1.0 / 3.0)
    h = widgets.beta_explorer(P, mu, beta=0.05)
    assert h.data["bt_argmax"] is None
    assert "bt_argmax" not in gids(h.figure)
    np.testing.assert_allclose(h.data["optimum"].numpy(), mu, atol=1e-12)  # equal scores: pi = mu


# ------------------------------------------------------------------------------- Nash learning


def test_nash_md_follows_the_mirror_step_and_the_bound_after_a_tau_change():
    P, mu = rps_game()
    h = widgets.nash_learning(P, mu, tau=0.1, steps=300)
    png_before = bytes(h.image.value)
    h.controls["tau"].value = 0.3
    assert h.data["tau"] == 0.3
    traj = h.data["trajectories"]["decaying"].numpy()
    np.testing.assert_allclose(traj, nash_md_numpy(P, mu, 0.3, 300), rtol=0, atol=1e-12)
    star = h.data["regularized_nash"].numpy()
    assert mixture_fixed_point_residual(P, mu, 0.3, 0.0, star) < 1e-12
    final_kl = kl_numpy(star, traj[-1])
    assert h.data["final_kl"]["decaying"] == pytest.approx(final_kl, rel=1e-9, abs=1e-15)
    bound = 8.0 / (0.3**2 * 301)  # Munos et al. Theorem 1 with T = 300
    assert h.data["bound"] == pytest.approx(bound, rel=1e-14)
    assert final_kl < bound
    assert bytes(h.image.value) != png_before


def test_constant_step_converges_to_the_ipo_md_fixed_point_with_mixture_eta_tau():
    P, mu = rps_game()
    h = widgets.nash_learning(P, mu, tau=0.1, steps=200)
    h.controls["eta"].value = 5.0  # eta * tau = 0.5
    traj = h.data["trajectories"]["constant"].numpy()
    np.testing.assert_allclose(traj, nash_md_numpy(P, mu, 0.1, 200, eta=5.0), rtol=0, atol=1e-12)
    limit = h.data["constant_limit"].numpy()
    assert mixture_fixed_point_residual(P, mu, 0.1, 0.5, limit) < 1e-12
    assert np.abs(traj[-1] - limit).max() < 1e-8
    # ... which is not the regularised Nash: the KL levels off at KL(pi* || limit) > 0.
    plateau = kl_numpy(h.data["regularized_nash"].numpy(), limit)
    assert plateau > 1e-4
    assert h.data["final_kl"]["constant"] == pytest.approx(plateau, rel=1e-6)


def test_mixture_moves_ipo_md_and_its_fixed_point():
    P, mu = rps_game()
    h = widgets.nash_learning(P, mu, tau=0.2, steps=1000)
    h.controls["mixture"].value = 0.5
    fp = h.data["ipo_md_fixed_point"].numpy()
    assert mixture_fixed_point_residual(P, mu, 0.2, 0.5, fp) < 1e-12
    assert np.abs(h.data["trajectories"]["ipo_md"][-1].numpy() - fp).max() < 1e-6


def test_invalid_eta_tau_shows_a_message_and_leaves_out_the_constant_run():
    P, mu = rps_game()
    h = widgets.nash_learning(P, mu, tau=0.1, eta=1.0, steps=100)
    h.controls["eta"].value = 20.0  # eta * tau = 2 > 1
    assert "eta * tau" in h.status.value and "constant" in h.status.value
    assert set(h.data["trajectories"]) == {"decaying", "ipo_md"}
    assert h.data["constant_limit"] is None
    assert "trajectory:constant" not in gids(h.figure)
    h.controls["tau"].value = 0.04  # 20 * 0.04 = 0.8: valid again
    assert h.status.value == ""
    np.testing.assert_allclose(
        h.data["trajectories"]["constant"].numpy(),
        nash_md_numpy(P, mu, 0.04, 100, eta=20.0),
        rtol=0,
        atol=1e-12,
    )


def test_schedule_and_steps_choose_the_runs():
    P, mu = rps_game()
    h = widgets.nash_learning(P, mu, steps=100)
    h.controls["schedule"].value = "decaying"
    assert set(h.data["trajectories"]) == {"decaying", "ipo_md"} and h.controls["eta"].disabled
    h.controls["schedule"].value = "constant"
    assert set(h.data["trajectories"]) == {"constant", "ipo_md"} and not h.controls["eta"].disabled
    h.controls["steps"].value = 37
    assert h.data["trajectories"]["constant"].shape == (38, 3)
    assert h.data["kl"]["ipo_md"].shape == (38,)


def test_nash_learning_figure_draws_the_data():
    P, mu = rps_game()
    h = widgets.nash_learning(P, mu, tau=0.1, steps=150)
    h.controls["tau"].value = 0.2
    for name in ("decaying", "constant", "ipo_md"):
        np.testing.assert_allclose(
            line(h.figure, f"trajectory:{name}").get_xydata(),
            barycentric_to_cartesian(h.data["trajectories"][name]).numpy(),
            atol=1e-15,
        )
    star = h.data["regularized_nash"].numpy()
    kl_line = line(h.figure, "kl:decaying").get_xydata()
    expected = [kl_numpy(star, p) for p in h.data["trajectories"]["decaying"].numpy()[1:]]
    np.testing.assert_allclose(kl_line[:, 0], np.arange(1, 151))
    np.testing.assert_allclose(kl_line[:, 1], expected, rtol=1e-8, atol=1e-15)
    bound = line(h.figure, "bound").get_xydata()
    np.testing.assert_allclose(bound[:, 1], 8.0 / (0.2**2 * (bound[:, 0] + 1.0)), rtol=1e-14)
    np.testing.assert_allclose(
        line(h.figure, "regularized_nash").get_xydata()[0],
        barycentric_to_cartesian(star).numpy(),
        atol=1e-15,
    )


def test_nash_md_bound_value():
    assert widgets.nash_md_bound(0.5, 31) == 1.0  # 8 / (0.25 * 32)
    np.testing.assert_allclose(widgets.nash_md_bound(0.1, np.array([0.0, 9.0])), [800.0, 80.0])


# ------------------------------------------------------------------------------- P editor


def test_editor_rejects_an_entry_outside_the_unit_interval():
    h = widgets.preference_editor()
    before, png_before = h.data, bytes(h.image.value)
    P_before = before["P"].clone()
    h.controls["p01"].value = 1.5
    assert "p01" in h.status.value and "[0, 1]" in h.status.value
    assert h.data is before
    torch.testing.assert_close(h.data["P"], P_before, rtol=0, atol=0)
    assert bytes(h.image.value) == png_before
    h.controls["p01"].value = 0.45
    assert h.status.value == ""
    assert float(h.data["P"][0, 1]) == 0.45 and float(h.data["P"][1, 0]) == 0.55


def test_editor_finds_the_condorcet_winner_after_an_edit():
    # Default: the named condorcet_winner game, (p01, p02, p12) = (0.55, 0.55, 0.95): y0 wins.
    h = widgets.preference_editor()
    assert h.data["condorcet_winner"] == 0
    h.controls["p01"].value = 0.45  # now y1 beats y0 (0.55) and y2 (0.95)
    assert h.data["condorcet_winner"] == 1
    np.testing.assert_allclose(h.data["nash"].numpy(), [0.0, 1.0, 0.0], atol=1e-9)
    assert "condorcet_winner" in gids(h.figure)
    np.testing.assert_allclose(
        line(h.figure, "condorcet_winner").get_xydata()[0], [1.0, 0.0]
    )  # corner y1
    heights = [
        r.get_height() for ax in h.figure.axes for r in ax.patches if r.get_gid() == "bars:P"
    ]
    np.testing.assert_allclose(heights, [0.45, 0.55, 0.95])


def test_editor_on_a_condorcet_cycle():
    eps = 0.1
    h = widgets.preference_editor(pt.three_voter_types(eps))
    assert h.data["transitive"] is False and h.data["condorcet_winner"] is None
    assert "condorcet_winner" not in gids(h.figure)
    # Munos et al. Sec. 3.2: the Nash equilibrium is (1/3 + eps/2, 1/3 + eps/2, 1/3 - eps).
    third = 1.0 / 3.0
    np.testing.assert_allclose(
        h.data["nash"].numpy(), [third + eps / 2, third + eps / 2, third - eps], atol=1e-9
    )
    assert h.data["bt_fit_gap"] > 0.01
    assert "no (a Condorcet cycle)" in h.summary.value


def test_editor_on_a_bradley_terry_game():
    h = widgets.preference_editor(pt.three_voter_types(0.1))
    P = bt_game()
    for name, i, j in (("p01", 0, 1), ("p02", 0, 2), ("p12", 1, 2)):
        h.controls[name].value = float(P[i, j])
    assert h.status.value == ""
    assert h.data["bradley_terry"] is True and h.data["transitive"] is True
    assert h.data["bt_fit_gap"] < 1e-12
    scores = h.data["bt_scores"].numpy()
    np.testing.assert_allclose(scores - scores[2], SCORES, atol=1e-9)
    np.testing.assert_allclose(
        h.data["bt_policy"].numpy(), np.exp(SCORES) / np.exp(SCORES).sum(), atol=1e-9
    )
    np.testing.assert_allclose(
        line(h.figure, "bt_policy").get_xydata()[0],
        barycentric_to_cartesian(h.data["bt_policy"]).numpy(),
        atol=1e-15,
    )


def test_editor_reports_a_matrix_without_a_finite_bt_fit():
    h = widgets.preference_editor()
    h.controls["p01"].value = 1.0  # still fine: y1 -> y2 -> y0 leads back to y0
    assert h.status.value == ""
    before = h.data
    h.controls["p02"].value = 1.0  # y0 beats everyone surely: no finite BT scores
    assert "BT" in h.status.value or "Bradley" in h.status.value, h.status.value
    assert h.data is before


def test_editor_says_an_all_tied_fit_is_tied():
    # Rock-paper-scissors: every BT score is 0 up to round-off; no "y0 > y1 > y2".
    h = widgets.preference_editor(pt.rock_paper_scissors(0.8))
    assert h.data["bt_ranking"] == "all tied (y0 = y1 = y2)"
    assert "BT ranking: all tied (y0 = y1 = y2)" in h.summary.value
    assert ">" not in h.data["bt_ranking"]
    h.controls["p01"].value = 0.25  # y1 now beats y0 more often: the tie breaks
    assert "all tied" not in h.data["bt_ranking"] and ">" in h.data["bt_ranking"]


def test_ranking_treats_round_off_as_a_tie():
    from prefopt_toy.widgets.handle import _ranking

    assert _ranking(torch.tensor([0.0, 0.0, 1e-15], dtype=torch.float64)) == (
        "all tied (y0 = y1 = y2)"
    )
    assert _ranking(torch.tensor([0.5, 0.1, 0.5 + 1e-12], dtype=torch.float64)) == "y0 = y2 > y1"
    assert _ranking(torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)) == "y1 > y0 > y2"


# ------------------------------------------------------------------------------- log sliders


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: widgets.beta_explorer(bt_game(), MU), "beta"),
        (lambda: widgets.nash_learning(bt_game(), MU, steps=20), "tau"),
        (lambda: widgets.nash_learning(bt_game(), MU, steps=20), "eta"),
    ],
)
def test_log_sliders_step_through_round_values(build, name):
    """Ten key presses a decade (step 0.1 in log10), each value rounded to two digits."""
    h = build()
    slider = h.controls[name]
    assert isinstance(slider, ipywidgets.FloatLogSlider)
    assert slider.base == 10.0 and slider.step == pytest.approx(0.1)
    assert slider.readout_format == ".3~g"  # d3-format: "0.13", "1", "100"
    # What the browser sends after k arrow presses up from 10**-1: 10**(-1 + k / 10).
    seen = []
    for k in range(11):
        slider.value = 10.0 ** (-1 + k / 10)
        seen.append(slider.value)
    assert seen == [0.1, 0.13, 0.16, 0.2, 0.25, 0.32, 0.4, 0.5, 0.63, 0.79, 1.0]
    assert h.data[name] == 1.0  # the widget computed with the rounded value
    slider.value = 0.123  # from code: rounded as well
    assert slider.value == 0.12 and h.data[name] == 0.12


# ------------------------------------------------------------------------------- fast redraws


@pytest.mark.parametrize(
    ("build", "name", "values"),
    [
        (lambda: widgets.beta_explorer(bt_game(), MU), "beta", (0.5, 0.63)),
        (lambda: widgets.nash_learning(*rps_game(), tau=0.1, steps=100), "mixture", (0.2, 0.3)),
        (lambda: widgets.preference_editor(), "p12", (0.9, 0.85)),
    ],
)
def test_a_move_updates_the_figure_in_place(build, name, values):
    """The figure is built once: a move updates its artists and blits them (no new figure)."""
    h = build()
    axes, lines = list(h.figure.axes), {ln.get_gid(): ln for ax in h.figure.axes for ln in ax.lines}
    pngs = [bytes(h.image.value)]
    for value in values:
        h.controls[name].value = value
        pngs.append(bytes(h.image.value))
    assert h.figure.axes == axes
    assert {ln.get_gid(): ln for ax in h.figure.axes for ln in ax.lines} == lines
    assert len(set(pngs)) == len(pngs), "every move gives a new picture"
    # The blitted picture is the figure a full draw gives (up to antialiasing at overlaps).
    blitted = np.asarray(_decode(pngs[-1]), dtype=float)
    h.render()
    full = np.asarray(_decode(bytes(h.image.value)), dtype=float)
    assert blitted.shape == full.shape
    assert np.mean(np.abs(blitted - full).max(axis=-1) > 32) < 0.002


def _decode(png: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: widgets.preference_editor(np.full((4, 4), 0.5)), "P"),
        (lambda: widgets.preference_editor([[0.5, 0.7], [0.2, 0.5]]), "P"),
        (lambda: widgets.beta_explorer(np.full((2, 2), 0.5), [0.5, 0.5]), "P"),
        (lambda: widgets.beta_explorer(bt_game(), [0.5, 0.5]), "mu"),
        (lambda: widgets.beta_explorer(bt_game(), [1.0, 0.0, 0.0]), "mu"),
        (lambda: widgets.beta_explorer(bt_game(), MU, beta=0.0), "beta"),
        (lambda: widgets.beta_explorer(bt_game(), MU, beta=1e3), "beta"),
        (lambda: widgets.nash_learning(bt_game(), MU, tau=-1.0), "tau"),
        (lambda: widgets.nash_learning(bt_game(), MU, tau=100.0), "tau"),
        (lambda: widgets.nash_learning(bt_game(), MU, eta=0.0), "eta"),
        (lambda: widgets.nash_learning(bt_game(), MU, mixture=1.5), "mixture"),
        (lambda: widgets.nash_learning(bt_game(), MU, steps=0), "steps"),
        (lambda: widgets.nash_learning(bt_game(), MU, schedule="sometimes"), "schedule"),
    ],
)
def test_bad_builder_input_names_the_argument(build, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        build()


def test_builder_with_eta_tau_above_one_shows_a_message_instead_of_raising():
    h = widgets.nash_learning(bt_game(), MU, tau=0.5, eta=4.0, steps=10)
    assert "eta * tau" in h.status.value
    assert "constant" not in h.data["trajectories"]
    assert math.isfinite(h.data["final_kl"]["decaying"])
