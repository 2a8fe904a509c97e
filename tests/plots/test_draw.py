"""Simplex drawing helpers: they draw on the given axes, return their artists, touch no pyplot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

from prefopt_toy.plots.draw import draw_simplex, plot_policy, plot_trajectory
from prefopt_toy.simplex import TRIANGLE_CORNERS, barycentric_to_cartesian


@pytest.fixture
def ax():
    return Figure().subplots()


def test_draw_simplex_returns_triangle_and_labels(ax):
    artists = draw_simplex(ax, ("rock", "paper", "scissors"))
    assert isinstance(artists[0], Polygon)
    np.testing.assert_allclose(artists[0].get_xy()[:3], TRIANGLE_CORNERS.numpy())
    assert [t.get_text() for t in artists[1:4]] == ["rock", "paper", "scissors"]
    assert len(artists) == 4
    assert not ax.axison


def test_draw_simplex_gridlines(ax):
    artists = draw_simplex(ax, gridlines=4)
    lines = [a for a in artists if isinstance(a, Line2D)]
    assert len(lines) == 3 * 3  # levels 1/4, 2/4, 3/4 for each of the three actions


def test_draw_simplex_needs_three_labels(ax):
    with pytest.raises(ValueError, match="3 corners"):
        draw_simplex(ax, ("a", "b"))


def test_plot_policy_marks_the_cartesian_point(ax):
    pi = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    line = plot_policy(ax, pi, color="red")
    assert isinstance(line, Line2D) and line in ax.lines
    np.testing.assert_allclose(
        np.c_[line.get_xdata(), line.get_ydata()][0], barycentric_to_cartesian(pi).numpy()
    )
    assert line.get_marker() == "o" and line.get_linestyle() == "None"
    # By hand: y1 at (1, 0), y2 at (1/2, sqrt(3)/2), so x = 0.3 + 0.5 * 0.5, y = 0.5 * sqrt(3)/2.
    np.testing.assert_allclose(
        [line.get_xdata()[0], line.get_ydata()[0]], [0.55, 0.25 * np.sqrt(3.0)], rtol=0, atol=1e-15
    )


def test_plot_trajectory_follows_the_policies(ax):
    t = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    policies = (1 - t) * torch.tensor([1.0, 0.0, 0.0]) + t * torch.tensor([0.0, 0.5, 0.5])
    line = plot_trajectory(ax, policies, linewidth=2)
    xy = np.c_[line.get_xdata(), line.get_ydata()]
    np.testing.assert_allclose(xy, barycentric_to_cartesian(policies).numpy())
    assert line.get_linewidth() == 2
    # The path is the straight segment from the y0 corner (0, 0) to the midpoint of the y1-y2 edge.
    end = np.array([0.75, np.sqrt(3.0) / 4.0])
    np.testing.assert_allclose(xy, t.numpy() * end, rtol=0, atol=1e-15)


def test_plot_trajectory_rejects_a_single_policy(ax):
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        plot_trajectory(ax, [0.2, 0.3, 0.5])
