"""Text is readable at the size a notebook shows a figure (issue 12).

A notebook shows a figure inline at 100 dpi and shrinks it to its output column when wider, so a
wide figure's 9 pt legend can end up 8 px high. ``style.displayed_font_px`` computes the shown
height; every figure a notebook displays must keep all of its text at ``MIN_FONT_PX`` or more.
"""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

import prefopt_toy as pt
from prefopt_toy.plots import notebook as nbp
from prefopt_toy.plots.experiments import experiment
from prefopt_toy.plots.figures import nash_md_convergence_figure, reference_solutions_figure
from prefopt_toy.plots.ipo_toy import ipo_toy_figure
from prefopt_toy.plots.style import MIN_FONT_PX, displayed_font_px, small_texts

P, MU, TAU = pt.three_voter_types(0.1), [0.5, 0.3, 0.2], 0.1


def test_displayed_size_shrinks_wide_figures():
    narrow, wide = Figure(figsize=(8, 5)), Figure(figsize=(15, 5))
    assert displayed_font_px(narrow, 9) == pytest.approx(9 / 72 * 100)  # shown at 100 dpi
    assert displayed_font_px(wide, 9) == pytest.approx(9 / 72 * 60)  # 1500 px shrunk to 900
    # The old IPO-toy legend: 8 pt in a 15-inch figure is 6.7 px, under the readable minimum.
    assert displayed_font_px(wide, 8) < MIN_FONT_PX
    wide.text(0.5, 0.5, "tiny", fontsize=8)
    wide.text(0.5, 0.2, "", fontsize=4)  # empty texts do not count
    assert [t for t, _ in small_texts(wide)] == ["tiny"]


def _trajectories_figure() -> Figure:
    # Notebooks 00 and 05: one triangle with every run, at the size the notebooks use.
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.subplots()
    runs = pt.dynamics.redraw(P, MU, tau=TAU, steps=100)
    nbp.draw_trajectories(ax, runs, targets=("rlhf_optimum", "ipo_optimum", "regularized_nash"))
    ax.set_title("Exact trajectories")
    return fig


NOTEBOOK_FIGURES = {
    "reference_solutions (notebook 01)": lambda: reference_solutions_figure(),
    "ipo_toy (notebooks 02, 03)": lambda: ipo_toy_figure(experiment("ipo_toy"), quick=True),
    "nash_md_convergence (notebook 04)": lambda: nash_md_convergence_figure(
        experiment("nash_md_convergence"), quick=True
    ),
    "draw_trajectories (notebooks 00, 05)": _trajectories_figure,
    "zoo_figure (notebook 07)": lambda: nbp.zoo_figure(
        nbp.zoo_runs(P, MU, tau=TAU, steps=20), title="every algorithm"
    ),
}


@pytest.mark.parametrize("name", list(NOTEBOOK_FIGURES))
def test_notebook_figures_are_readable_at_their_displayed_size(name):
    fig = NOTEBOOK_FIGURES[name]()
    texts = [
        t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
    ]
    assert any(t.get_text().strip() for t in texts)  # the check looks at real text
    assert small_texts(fig) == [], f"{name}: text under {MIN_FONT_PX} px when shown"
