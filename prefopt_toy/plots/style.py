r"""Shared look of the dynamics figures: colours and line styles of algorithms and targets, sampling helpers.

One colour per algorithm and one marker per solution concept, used by every figure of
``figures``, ``tau_path`` and ``ipo_toy`` so a legend read once applies
everywhere; the solution concepts keep the colours of ``draw.COLORS`` (the reference-solutions
figure). Also the two grids the figures share: log-spaced iterate indices and log-spaced taus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from torch import Tensor

from .draw import COLORS, plot_policy

__all__ = [
    "ALGORITHM_STYLE",
    "TARGET_STYLE",
    "algorithm_label",
    "log_indices",
    "mark_target",
    "target_handles",
    "tau_grid",
]

# (colour, line style) per algorithm: dashed = offline (pairs from mu), solid = online or mixture
# sampling, dotted = RLHF's policy gradient on a fitted reward. DPO, IPO and Nash-MD share the
# colour of the target they converge to (taken from draw.COLORS, as in reference_solutions);
# RLHF's policy gradient is pink so that it stays apart from DPO, which has the same target.
ALGORITHM_STYLE: dict[str, tuple[str, Any]] = {
    "dpo": (COLORS["RLHF/DPO optimum"], "--"),
    "ipo": (COLORS["IPO optimum"], "--"),
    "slic": ("tab:olive", "--"),
    "online_dpo": ("tab:cyan", "-"),
    "online_ipo": ("tab:red", "-"),
    "ipo_md": ("tab:purple", "-"),
    "nash_md": (COLORS["regularized Nash"], "-"),
    "nash_md_pg": ("tab:brown", "-."),
    "rlhf": ("tab:pink", ":"),
    "gpo_logistic": ("tab:blue", "--"),
    "gpo_hinge": ("tab:olive", "--"),
    "gpo_squared": ("tab:orange", "--"),
    "gpo_exponential": ("tab:purple", "--"),
    "gpo_truncated_quadratic": ("tab:red", (0, (1, 1))),
    "gpo_savage": ("tab:gray", "--"),
}


_GPO_ALIAS = {"gpo_logistic": " (= DPO)", "gpo_hinge": " (= SLiC)"}

# Targets: filled markers with a black edge, coloured like the reference-solutions figure.
TARGET_STYLE: dict[str, dict[str, Any]] = {
    "RLHF/DPO optimum": {"marker": "s", "color": COLORS["RLHF/DPO optimum"], "markersize": 9},
    "IPO optimum": {"marker": "D", "color": COLORS["IPO optimum"], "markersize": 8},
    "regularized Nash": {"marker": "*", "color": COLORS["regularized Nash"], "markersize": 15},
    "IPO-MD fixed point": {"marker": "^", "color": ALGORITHM_STYLE["ipo_md"][0], "markersize": 9},
    "reference mu": {"marker": "X", "color": COLORS["reference mu"], "markersize": 9},
}


def target_handles(names: Iterable[str]) -> list[Line2D]:
    """Legend entries (marker only) for the targets ``names`` (keys of ``TARGET_STYLE``)."""
    return [
        Line2D([], [], linestyle="none", markeredgecolor="black", label=n, **TARGET_STYLE[n])
        for n in names
    ]


def mark_target(ax: Axes, name: str, pi: Tensor, gid: str) -> Line2D:
    """Mark the policy ``pi`` (3,) as the target ``name`` on a simplex; the marker gets ``gid``."""
    style = TARGET_STYLE[name]
    line = plot_policy(ax, pi, markeredgecolor="black", markeredgewidth=0.8, zorder=6, **style)
    line.set_gid(gid)
    return line


def log_indices(steps: int, points: int = 400) -> list[int]:
    """Iterate indices 0..steps to draw: all of them when few, else ``points`` log-spaced ones."""
    if steps + 1 <= points:
        return list(range(steps + 1))
    grid = np.unique(np.round(np.geomspace(1, steps, points)).astype(int))
    return [0, *grid.tolist()]


def tau_grid(tau_max: float, tau_min: float, points: int) -> Tensor:
    """``points`` log-spaced taus from ``tau_max`` down to ``tau_min`` (both included), float64."""
    return torch.logspace(math.log10(tau_max), math.log10(tau_min), points, dtype=torch.float64)


def algorithm_label(name: str) -> str:
    """Legend label of an algorithm: its registry name, with the loss it equals for two GPO entries."""
    return name + _GPO_ALIAS.get(name, "")
