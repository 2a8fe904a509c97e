"""Barycentric <-> cartesian coordinates on the 3-action simplex and simplex grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt_toy.simplex import (
    TRIANGLE_CORNERS,
    barycentric_to_cartesian,
    cartesian_to_barycentric,
    simplex_grid,
)

weights = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=3, max_size=3).filter(
    lambda w: sum(w) > 1e-6
)


def _policy(w: list[float]) -> torch.Tensor:
    t = torch.tensor(w, dtype=torch.float64)
    return t / t.sum()


@settings(deadline=None)  # the first call pays torch's warm-up
@given(weights)
def test_round_trip_from_simplex(w):
    pi = _policy(w)
    back = cartesian_to_barycentric(barycentric_to_cartesian(pi))
    torch.testing.assert_close(back, pi, rtol=0, atol=1e-12)


@settings(deadline=None)  # the first call pays torch's warm-up
@given(st.floats(-2, 2), st.floats(-2, 2))
def test_round_trip_from_plane(x, y):
    xy = torch.tensor([x, y], dtype=torch.float64)
    torch.testing.assert_close(
        barycentric_to_cartesian(cartesian_to_barycentric(xy)), xy, rtol=0, atol=1e-12
    )


@settings(deadline=None)  # the first call pays torch's warm-up
@given(weights)
def test_points_of_the_simplex_land_in_the_triangle(w):
    x, y = barycentric_to_cartesian(_policy(w)).tolist()
    h = math.sqrt(3) / 2
    tol = 1e-12
    # Inside the equilateral triangle (0, 0), (1, 0), (1/2, h): above the base, below both sides.
    assert y >= -tol
    assert y <= 2 * h * x + tol
    assert y <= 2 * h * (1 - x) + tol


def test_vertices_map_to_the_corners():
    torch.testing.assert_close(
        barycentric_to_cartesian(torch.eye(3, dtype=torch.float64)), TRIANGLE_CORNERS
    )
    torch.testing.assert_close(
        cartesian_to_barycentric(TRIANGLE_CORNERS), torch.eye(3, dtype=torch.float64)
    )


def test_triangle_is_equilateral_with_unit_side():
    c = TRIANGLE_CORNERS
    sides = [float(torch.linalg.norm(c[i] - c[j])) for i, j in [(0, 1), (1, 2), (0, 2)]]
    assert sides == pytest.approx([1.0, 1.0, 1.0], abs=1e-15)


def test_uniform_policy_is_the_centroid():
    centre = barycentric_to_cartesian([1 / 3, 1 / 3, 1 / 3])
    torch.testing.assert_close(centre, TRIANGLE_CORNERS.mean(dim=0))


def test_batches_keep_their_shape():
    pis = torch.rand(4, 5, 3, dtype=torch.float64)
    pis = pis / pis.sum(-1, keepdim=True)
    xy = barycentric_to_cartesian(pis)
    assert xy.shape == (4, 5, 2) and xy.dtype == torch.float64
    assert cartesian_to_barycentric(xy).shape == (4, 5, 3)


def test_inputs_are_not_modified():
    pi = np.array([0.2, 0.3, 0.5])
    barycentric_to_cartesian(pi)
    np.testing.assert_array_equal(pi, [0.2, 0.3, 0.5])


@pytest.mark.parametrize(
    "bad, match",
    [
        ([0.5, 0.5], "length 3"),
        ([0.5, 0.6, 0.2], "sum to 1"),
        ([float("nan"), 0.5, 0.5], "finite"),
        (0.3, "length 3"),
    ],
)
def test_barycentric_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        barycentric_to_cartesian(bad)


def test_cartesian_rejects_bad_input():
    with pytest.raises(ValueError, match="length 2"):
        cartesian_to_barycentric([0.1, 0.2, 0.3])


@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_grid_points_lie_on_the_simplex(n):
    grid = simplex_grid(n)
    assert grid.shape == ((n + 1) * (n + 2) // 2, 3)
    assert grid.dtype == torch.float64
    assert bool((grid >= 0).all())
    torch.testing.assert_close(grid.sum(dim=1), torch.ones(len(grid), dtype=torch.float64))
    # Every coordinate is a multiple of 1/n, and no point repeats.
    torch.testing.assert_close(grid * n, (grid * n).round())
    assert len({tuple(row) for row in (grid * n).round().long().tolist()}) == len(grid)


def test_grid_contains_the_vertices():
    rows = {tuple(r) for r in simplex_grid(3).tolist()}
    assert {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)} <= rows


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_grid_rejects_bad_resolution(bad):
    with pytest.raises(ValueError, match="resolution"):
        simplex_grid(bad)
