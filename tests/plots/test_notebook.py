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
