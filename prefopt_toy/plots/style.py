r"""Shared look of the dynamics figures: colours and line styles of algorithms and targets, sampling helpers.

One colour per algorithm and one marker per solution concept, used by every figure of
``figures``, ``tau_path`` and ``ipo_toy`` so a legend read once applies
everywhere; the solution concepts keep the colours of ``draw.COLORS`` (the reference-solutions
figure). Also the two grids the figures share: log-spaced iterate indices and log-spaced taus;
and text at its displayed size (``displayed_font_px``, ``small_texts``): a notebook shows a figure
at 100 dpi, shrunk to its output column when wider.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from torch import Tensor

from .draw import COLORS, plot_policy

__all__ = [
    "ALGORITHM_STYLE",
    "DISPLAY_DPI",
    "DISPLAY_WIDTH_PX",
    "MIN_FONT_PX",
    "TARGET_STYLE",
    "algorithm_label",
    "displayed_font_px",
    "log_indices",
    "mark_target",
    "small_texts",
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


def target_handles(names: Iterable[str], labels: Iterable[str] | None = None) -> list[Line2D]:
    """Legend entries (marker only) for the targets ``names`` (keys of ``TARGET_STYLE``).

    ``labels``, one per name, replace the names as legend text (e.g. to say which pairs the
    RLHF/DPO optimum is fitted on).
    """
    names = list(names)
    texts = names if labels is None else list(labels)
    if len(texts) != len(names):
        raise ValueError(f"labels must have one entry per name, got {len(texts)} for {len(names)}")
    return [
        Line2D([], [], linestyle="none", markeredgecolor="black", label=t, **TARGET_STYLE[n])
        for n, t in zip(names, texts)
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


# ------------------------------------------------------------------------ text at displayed size

DISPLAY_DPI = 100.0
"""Pixels per inch of a figure shown inline in a notebook (matplotlib's default ``figure.dpi``)."""

DISPLAY_WIDTH_PX = 900.0
"""Width a notebook's output area (or a README column) shrinks a wider image to, in pixels."""

MIN_FONT_PX = 10.0
"""Smallest readable text height at the displayed size, in pixels (about 7 pt at 100 dpi)."""


def displayed_font_px(fig: Figure, fontsize: float) -> float:
    """Height in pixels of ``fontsize`` points of ``fig``'s text as a notebook shows the figure.

    Inline, a figure is drawn at ``DISPLAY_DPI`` and shrunk to ``DISPLAY_WIDTH_PX`` when wider, so
    a wide figure's text is shown smaller than its point size says.
    """
    px_per_inch = min(DISPLAY_DPI, DISPLAY_WIDTH_PX / float(fig.get_figwidth()))
    return float(fontsize) / 72.0 * px_per_inch


def small_texts(fig: Figure, minimum: float = MIN_FONT_PX) -> list[tuple[str, float]]:
    """Texts of ``fig`` shown below ``minimum`` pixels in a notebook: ``(text, displayed px)`` pairs.

    Every visible, non-empty text counts (titles, axis labels, tick labels, legends, notes); the
    list is empty when all of them are readable.
    """
    out = []
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip():
            px = displayed_font_px(fig, text.get_fontsize())
            if px < minimum:
                out.append((text.get_text(), px))
    return out
