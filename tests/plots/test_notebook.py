"""prefopt_toy.plots.notebook: the drawn data against the solvers and independent runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import prefopt_toy as pt
from prefopt_toy.plots import notebook as nbp
from prefopt_toy.simplex import barycentric_to_cartesian

P, MU, TAU = pt.three_voter_types(0.1), [0.5, 0.3, 0.2], 0.1


def xy(pi):
    return barycentric_to_cartesian(torch.as_tensor(pi, dtype=torch.float64)).numpy()


def line_end(line):
    x, y = line.get_data()
    return np.array([x[-1], y[-1]])


def test_draw_trajectories_paths_and_targets_match_independent_runs_and_solvers():
    runs = pt.dynamics.redraw(P, MU, tau=TAU, steps=300)
    ax = Figure().subplots()
    targets = ("rlhf_optimum", "ipo_optimum", "regularized_nash", "ipo_md_fixed_point")
    art = nbp.draw_trajectories(ax, runs, targets=targets)
    for name in ("ipo", "online_ipo", "nash_md"):  # each path ends where its own registry run ends
        final = pt.ALGORITHMS[name](P, MU, steps=300, tau=TAU).final
        assert np.abs(line_end(art[name]) - xy(final)).max() < 1e-10
    expected = {
        "rlhf_optimum": pt.rlhf_optimum(P, MU, TAU, nu=MU),  # DPO's pairs come from mu
        "ipo_optimum": pt.ipo_optimum(P, MU, TAU),
        "regularized_nash": pt.regularized_nash(P, MU, TAU),
        "ipo_md_fixed_point": pt.ipo_md_fixed_point(P, MU, TAU, 0.125),
        "mu": torch.tensor(MU, dtype=torch.float64),
    }
    for target, pi in expected.items():
        assert np.abs(line_end(art[f"target:{target}"]) - xy(pi)).max() < 1e-12


def test_zoo_table_distances_and_endpoints_against_solvers():
    names = ["dpo", "ipo", "online_ipo", "ipo_md", "slic"]
    runs = nbp.zoo_runs(P, MU, tau=TAU, steps=1500, names=names)
    table = nbp.zoo_table(runs)
    assert list(table.index) == names
    online = pt.ALGORITHMS["online_ipo"](P, MU, steps=1500, tau=TAU).final
    assert (
        np.abs(
            table.loc["online_ipo", ["pi(y0)", "pi(y1)", "pi(y2)"]].to_numpy(float) - online.numpy()
        ).max()
        < 1e-12
    )
    # TV distance to the solver's fixed point, computed here.
    nash = pt.regularized_nash(P, MU, TAU).numpy()
    tv = 0.5 * np.abs(online.numpy() - nash).sum()
    assert abs(table.loc["online_ipo", "TV to fixed point"] - tv) < 1e-14
    assert tv < 1e-8  # online IPO has converged to the regularised Nash (Calandriello Prop. 4.1)
    md = pt.ipo_md_fixed_point(P, MU, TAU, 0.125).numpy()
    md_run = table.loc["ipo_md", ["pi(y0)", "pi(y1)", "pi(y2)"]].to_numpy(float)
    assert abs(table.loc["ipo_md", "TV to fixed point"] - 0.5 * np.abs(md_run - md).sum()) < 1e-14
    assert table.loc["slic", "fixed point"] == "none (a set)" and math.isnan(
        table.loc["slic", "TV to fixed point"]
    )


def test_zoo_figure_marks_each_algorithms_own_fixed_point():
    runs = nbp.zoo_runs(P, MU, tau=TAU, steps=50, names=["ipo", "ipo_md", "online_dpo"])
    fig = nbp.zoo_figure(runs, ncols=2)
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.lines if line.get_gid()}
    assert np.abs(line_end(lines["ipo/fixed_point"]) - xy(pt.ipo_optimum(P, MU, TAU))).max() < 1e-12
    fp = pt.ipo_md_fixed_point(P, MU, TAU, 0.125)
    assert np.abs(line_end(lines["ipo_md/fixed_point"]) - xy(fp)).max() < 1e-12
    assert "online_dpo/fixed_point" not in lines
    assert len(fig.axes) == 4  # 3 panels + 1 empty in a 2 x 2 grid


def test_bad_input():
    with pytest.raises(ValueError, match="runs"):
        nbp.draw_trajectories(Figure().subplots(), {})
    runs = nbp.zoo_runs(P, MU, steps=5, names=["ipo"])
    with pytest.raises(ValueError, match="targets"):
        nbp.draw_trajectories(Figure().subplots(), runs, targets=["nash"])
    with pytest.raises(ValueError, match="names"):
        nbp.zoo_runs(P, MU, names=["nope"])
    with pytest.raises(ValueError, match="ncols"):
        nbp.zoo_figure(runs, ncols=0)
    with pytest.raises(ValueError, match="runs"):
        nbp.zoo_table({})


# --- pictures that show their point (issue 12) ----------------------------------------------------


def _fig_ax(size=(9, 6)):
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.subplots()


def _px(ax, pi):
    """Display pixels (at the figure's dpi) of a policy drawn on ``ax``."""
    ax.figure.canvas.draw()  # Agg canvas: apply the layout and the aspect
    return ax.transData.transform(xy(pi).reshape(1, 2))[0]


NB05_TARGETS = ("ipo_optimum", "regularized_nash", "ipo_md_fixed_point")


@pytest.fixture(scope="module")
def nb05_runs():
    """Notebook 05's triangle: five runs, three targets, crowded around the regularised Nash."""
    return {
        "ipo": pt.ALGORITHMS["ipo"](P, MU, steps=1500, tau=TAU),
        "online_ipo": pt.ALGORITHMS["online_ipo"](P, MU, steps=1500, tau=TAU),
        "ipo_md": pt.ALGORITHMS["ipo_md"](P, MU, steps=1500, tau=TAU, mixture=0.125),
        "nash_md": pt.nash_md(P, MU, tau=TAU, steps=1500),
        "online_dpo": pt.ALGORITHMS["online_dpo"](P, MU, steps=1500, tau=TAU),
    }


def test_inset_zooms_on_the_crowd_and_separates_the_nash_star_from_the_ipo_md_marker(nb05_runs):
    fig, ax = _fig_ax()
    art = nbp.draw_trajectories(ax, nb05_runs, targets=NB05_TARGETS)
    zoom = art["inset"]
    assert zoom in ax.child_axes
    nash, md = pt.regularized_nash(P, MU, TAU), pt.ipo_md_fixed_point(P, MU, TAU, 0.125)
    # On the triangle the star (15 pt) covers the triangle marker: under 10 px apart at 100 dpi.
    main_gap = np.hypot(*(_px(ax, nash) - _px(ax, md)))
    assert main_gap < 10
    # In the inset they are far apart, and the inset's limits hold both and the runs that end there.
    assert np.hypot(*(_px(zoom, nash) - _px(zoom, md))) > 3 * main_gap
    (x0, x1), (y0, y1) = sorted(zoom.get_xlim()), sorted(zoom.get_ylim())
    for pi in (nash, md, *(nb05_runs[n].final for n in ("online_ipo", "ipo_md", "nash_md"))):
        x, y = xy(pi)
        assert x0 < x < x1 and y0 < y < y1
    # The inset draws the same data: its target markers sit where the solvers put them.
    inner = {line.get_gid(): line for line in zoom.lines}
    assert np.abs(line_end(inner["target:ipo_md_fixed_point"]) - xy(md)).max() < 1e-12


def test_every_end_point_has_a_marker_and_coincident_ends_get_rings_and_a_note(nb05_runs):
    fig, ax = _fig_ax()
    art = nbp.draw_trajectories(ax, nb05_runs, targets=NB05_TARGETS)
    for where in (ax, art["inset"]):
        ends = {
            line.get_gid(): line for line in where.lines if str(line.get_gid()).endswith(":end")
        }
        assert set(ends) == {f"{n}:end" for n in nb05_runs}
        for name, run in nb05_runs.items():
            assert np.abs(line_end(ends[f"{name}:end"]) - xy(run.final)).max() < 1e-12
    # online IPO and Nash-MD both end on the regularised Nash: the second one gets a wider ring.
    assert nbp.coincident_ends(nb05_runs) == [["online_ipo", "nash_md"]]
    sizes = {n: art[f"{n}:end"].get_markersize() for n in ("online_ipo", "nash_md")}
    assert sizes["nash_md"] > sizes["online_ipo"]
    assert art["nash_md:end"].get_markerfacecolor() == "none"  # a ring: the dot inside shows
    note = art["notes"].get_text()
    assert "online_ipo = nash_md" in note and "regularized Nash" in note


def test_no_inset_when_nothing_crowds():
    runs = {"ipo": pt.ALGORITHMS["ipo"](P, MU, steps=200, tau=TAU)}
    fig, ax = _fig_ax()
    art = nbp.draw_trajectories(ax, runs, targets=["regularized_nash"])
    assert "inset" not in art and not ax.child_axes and "notes" not in art
    assert nbp.crowded_region(np.array([[0.0, 0.0], [1.0, 0.0]])) is None
    x0, x1, y0, y1 = nbp.crowded_region(np.array([[0.5, 0.2], [0.501, 0.2], [0.9, 0.1]]))
    assert x0 < 0.5 < 0.501 < x1 and y0 < 0.2 < y1 and x1 - x0 == pytest.approx(0.02)


def test_rlhf_optimum_is_labelled_with_its_pairs_and_agrees_with_the_table():
    runs = pt.dynamics.redraw(P, MU, tau=TAU, steps=50)
    fig, ax = _fig_ax()
    art = nbp.draw_trajectories(ax, runs, targets=("rlhf_optimum", "regularized_nash"))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "RLHF/DPO optimum (pairs ~ mu)" in labels
    table = nbp.solution_table(P, MU, TAU)
    row = table.loc["RLHF/DPO optimum (pairs ~ mu)", ["y0", "y1", "y2"]].to_numpy(float).copy()
    assert np.abs(line_end(art["target:rlhf_optimum"]) - xy(row)).max() < 1e-12  # table = triangle
    assert np.abs(row - pt.rlhf_optimum(P, MU, TAU, nu=MU).numpy()).max() < 1e-14
    zoo = nbp.zoo_table(nbp.zoo_runs(P, MU, tau=TAU, steps=20, names=["dpo", "rlhf", "ipo"]))
    assert zoo.loc["dpo", "fixed point"] == "rlhf_optimum (pairs ~ mu)"
    assert zoo.loc["ipo", "fixed point"] == "ipo_optimum"


def test_solution_table_regularised_nash_minimises_the_kl_game_exploitability():
    table = nbp.solution_table(P, MU, TAU)
    raw, kl_game = table["exploitability"], table["exploitability, KL game"]
    assert abs(kl_game["regularized Nash"]) < 1e-12
    for name in ("reference mu", "RLHF/DPO optimum (pairs ~ mu)", "Nash equilibrium"):
        assert kl_game[name] > 1e-4
    assert raw["Nash equilibrium"] < 1e-12
    # The point notebook 00 explains: in the raw game the regularised Nash is more exploitable
    # than mu here, because it is the Nash of the KL game, not of the raw one.
    assert raw["regularized Nash"] > raw["reference mu"]
    # Independent check of the closed form: the best response's regularised score, by brute force.
    grid = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample((20000,))
    pi = pt.regularized_nash(P, MU, TAU)
    mu = torch.tensor(MU, dtype=torch.float64)
    score = grid @ (P @ pi) - TAU * (grid * (grid / mu).log()).sum(1) + TAU * pt.kl(pi, mu) - 0.5
    assert float(score.max()) <= 1e-12
    e_mu = nbp.regularized_exploitability(P, MU, MU, TAU)
    score_mu = grid @ (P @ mu) - TAU * (grid * (grid / mu).log()).sum(1) - 0.5
    assert float(score_mu.max()) <= e_mu + 1e-12 and float(score_mu.max()) > e_mu - 1e-2
    with pytest.raises(ValueError, match="tau"):
        nbp.regularized_exploitability(P, MU, MU, 0.0)


def test_zoo_figure_marks_every_end_and_labels_the_pairs():
    runs = nbp.zoo_runs(P, MU, tau=TAU, steps=30, names=["dpo", "ipo", "slic"])
    fig = nbp.zoo_figure(runs)
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.lines if line.get_gid()}
    for name, run in runs.items():
        assert np.abs(line_end(lines[f"{name}:end"]) - xy(run.final)).max() < 1e-12
        assert lines[f"{name}:end"].get_zorder() > lines[f"{name}/mu"].get_zorder()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "RLHF/DPO optimum (pairs ~ mu)" in labels


def test_table_view_prints_a_dash_where_no_fixed_point_exists():
    runs = nbp.zoo_runs(P, MU, tau=TAU, steps=20, names=["slic", "ipo"])
    table = nbp.zoo_table(runs)
    assert math.isnan(table.loc["slic", "TV to fixed point"])  # the data keep NaN
    html = nbp.table_view(table, "{:.2e}").to_html()
    assert "nan" not in html.lower() and "—" in html
    tv = table.loc["ipo", "TV to fixed point"]
    assert f"{tv:.2e}" in html and "none (a set)" in html
