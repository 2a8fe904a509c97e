r"""Barycentric coordinates on the simplex of three actions, and grids of simplex points.

A policy ``pi = (pi_0, pi_1, pi_2)`` on three actions is a point of the 2-simplex. Drawn as an
equilateral triangle with unit side, action ``y_k`` sits at corner ``TRIANGLE_CORNERS[k]``:

    y2 at (1/2, sqrt(3)/2)  (top)
    y0 at (0, 0)            (bottom left)
    y1 at (1, 0)            (bottom right)

and a policy is drawn at the convex combination of the corners weighted by its probabilities,
``x = pi @ TRIANGLE_CORNERS``. The uniform policy lands on the centroid. This file is pure torch;
``plots/draw.py`` turns the results into pictures.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._validate import DTYPE, as_int, as_tensor

__all__ = [
    "TRIANGLE_CORNERS",
    "barycentric_to_cartesian",
    "cartesian_to_barycentric",
    "simplex_grid",
]

TRIANGLE_CORNERS = torch.tensor(
    [[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]], dtype=DTYPE
)  # (3, 2): row k is the corner of action y_k

# Barycentric coordinates of plotted points carry round-off from the solvers; anything that sums
# to 1 within this tolerance is accepted as a point of the plane of the triangle.
_SUM_ATOL = 1e-6


def barycentric_to_cartesian(pi: Any) -> Tensor:
    r"""Map barycentric coordinates (policies on three actions) to points of the plane.

    .. math:: x = \sum_{k=0}^{2} \pi_k \, c_k

    with :math:`c_k` the corners ``TRIANGLE_CORNERS``. The map is affine, so a trajectory of
    policies maps to a path in the triangle, and straight lines stay straight.

    Parameters
    ----------
    pi : array-like, shape (..., 3)
        Barycentric coordinates, each row summing to 1. Negative entries are allowed (points
        outside the triangle), so the map is the exact inverse of ``cartesian_to_barycentric``.

    Returns
    -------
    Tensor, shape (..., 2), float64
        Cartesian coordinates ``(x, y)``.

    Raises
    ------
    ValueError
        If ``pi`` is not finite, its last axis is not of length 3, or a row does not sum to 1.

    Examples
    --------
    >>> barycentric_to_cartesian([1.0, 0.0, 0.0])
    tensor([0., 0.], dtype=torch.float64)
    >>> barycentric_to_cartesian([1 / 3, 1 / 3, 1 / 3])
    tensor([0.5000, 0.2887], dtype=torch.float64)
    """
    t = as_tensor(pi, "pi")
    if t.ndim == 0 or t.shape[-1] != 3:
        raise ValueError(
            f"pi must have a last axis of length 3 (three actions), got shape {tuple(t.shape)}"
        )
    gap = (t.sum(dim=-1) - 1.0).abs()
    if t.numel() and float(gap.max()) > _SUM_ATOL:
        raise ValueError(
            "pi must sum to 1 along its last axis (barycentric coordinates); "
            f"the worst row is off by {float(gap.max()):.3g}"
        )
    return t @ TRIANGLE_CORNERS


def cartesian_to_barycentric(xy: Any) -> Tensor:
    r"""Map points of the plane to barycentric coordinates with respect to ``TRIANGLE_CORNERS``.

    Solves :math:`x = \sum_k \pi_k c_k,\ \sum_k \pi_k = 1` for :math:`\pi` in closed form: with the
    corners at ``(0, 0)``, ``(1, 0)`` and ``(1/2, sqrt(3)/2)``,

    .. math::
        \pi_2 = \tfrac{2}{\sqrt 3}\, y, \qquad \pi_1 = x - \tfrac{1}{2}\pi_2,
        \qquad \pi_0 = 1 - \pi_1 - \pi_2 .

    Parameters
    ----------
    xy : array-like, shape (..., 2)
        Cartesian points.

    Returns
    -------
    Tensor, shape (..., 3), float64
        Barycentric coordinates; all entries are in [0, 1] exactly when the point lies in the
        triangle.

    Raises
    ------
    ValueError
        If ``xy`` is not finite or its last axis is not of length 2.

    Examples
    --------
    >>> cartesian_to_barycentric([1.0, 0.0])
    tensor([0., 1., 0.], dtype=torch.float64)
    """
    t = as_tensor(xy, "xy")
    if t.ndim == 0 or t.shape[-1] != 2:
        raise ValueError(f"xy must have a last axis of length 2 (x, y), got shape {tuple(t.shape)}")
    x, y = t[..., 0], t[..., 1]
    pi_2 = y * (2.0 / math.sqrt(3.0))
    pi_1 = x - 0.5 * pi_2
    pi_0 = 1.0 - pi_1 - pi_2
    return torch.stack([pi_0, pi_1, pi_2], dim=-1)


def simplex_grid(resolution: int) -> Tensor:
    r"""All policies on three actions whose probabilities are multiples of ``1 / resolution``.

    The points :math:`(i, j, k) / n` with non-negative integers :math:`i + j + k = n`, listed with
    ``i`` decreasing, then ``j`` decreasing; corners and edges included. There are
    :math:`(n + 1)(n + 2) / 2` of them.

    Parameters
    ----------
    resolution : int >= 1
        The denominator ``n``.

    Returns
    -------
    Tensor, shape ((n + 1)(n + 2) / 2, 3), float64
        One policy per row; each row sums to 1 and has non-negative entries.

    Raises
    ------
    ValueError
        If ``resolution`` is not an integer >= 1.

    Examples
    --------
    >>> simplex_grid(1)
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]], dtype=torch.float64)
    """
    n = as_int(resolution, "resolution", minimum=1)
    counts = [(i, j, n - i - j) for i in range(n, -1, -1) for j in range(n - i, -1, -1)]
    return torch.tensor(counts, dtype=DTYPE) / n
