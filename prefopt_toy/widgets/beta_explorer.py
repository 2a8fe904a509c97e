r"""The beta explorer of notebook 02: the RLHF/DPO optimum on the simplex as the KL strength beta moves.

:func:`beta_explorer` draws ``rlhf_optimum(P, mu, beta, nu=mu)`` for a log slider on beta, the whole path
over the slider's range (from the Bradley-Terry argmax at small beta back to ``mu`` at large beta)
and a bar panel comparing the optimum with ``mu``. References: Rafailov et al.,
arXiv:2305.18290v3, Eq. (4); Azar et al., arXiv:2310.12036v2, Eq. (3).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from prefopt_toy._validate import as_positive_float
from prefopt_toy.plots.draw import COLORS, draw_simplex, plot_policy, plot_trajectory
from prefopt_toy.plots.style import mark_target, target_handles
from prefopt_toy.simplex import barycentric_to_cartesian
from prefopt_toy.solutions.bt import bt_fit
from prefopt_toy.solutions.optima import gibbs_policy

from .handle import (
    _ACTIONS,
    WidgetHandle,
    _connect,
    _fmt,
    _legend_below,
    _log_slider,
    _three_action_game,
    _top,
    _update,
    _vertex,
)

__all__ = ["BETA_RANGE", "beta_explorer"]

BETA_RANGE = (1e-2, 1e2)
"""The beta slider's range (log scale)."""


def beta_explorer(P: Any, mu: Any, beta: float = 1.0) -> WidgetHandle:
    r"""The RLHF/DPO optimum :math:`\pi_\beta \propto \mu\exp(\hat r/\beta)` on the simplex as beta moves.

    A log-scale slider ``beta`` (1e-2 to 1e2, ten steps a decade, values of two significant
    digits) moves the optimum ``rlhf_optimum(P, mu, beta, nu=mu)`` (``hat r = bt_fit(P, mu)``:
    the reward fitted on pairs from ``mu x mu``, "pairs ~ mu" in the figure). The whole path over the slider's range is drawn
    faintly, with its two ends labelled: small beta (weak KL) goes to the vertex of the
    Bradley-Terry argmax, large beta (strong KL) back to ``mu``. A bar panel compares the
    optimum with ``mu`` action by action.

    Parameters
    ----------
    P : array-like, shape (3, 3)
        Preference matrix.
    mu : array-like, shape (3,)
        Reference policy, strictly positive.
    beta : float in [0.01, 100], default 1.0
        Starting KL strength.

    Returns
    -------
    WidgetHandle
        ``controls``: ``"beta"``. ``data``: ``"beta"``, ``"optimum"`` (= ``rlhf_optimum(P, mu,
        beta, nu=mu)``), ``"path_betas"`` (N,), ``"path"`` (N, 3), ``"bt_scores"``, ``"bt_argmax"``
        (vertex; None on a tie for the top score), ``"mu"``.

    Raises
    ------
    ValueError
        ``P`` not a 3 x 3 preference matrix, ``mu`` not a positive policy on 3 actions, ``beta``
        outside the slider's range.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (4); Azar et al., arXiv:2310.12036v2, Eq. (3).
    """
    P_t, mu_t = _three_action_game(P, mu)
    beta_f = as_positive_float(beta, "beta")
    controls = {"beta": _log_slider("beta", beta_f, *BETA_RANGE)}
    h = WidgetHandle(controls, figsize=(9.0, 4.2))
    # The path does not depend on the slider: computed once, one library call per beta.
    path_betas = torch.logspace(
        math.log10(BETA_RANGE[0]), math.log10(BETA_RANGE[1]), 81, dtype=torch.float64
    )
    # rlhf_optimum(P, mu, beta, nu=mu) is the Gibbs policy of one BT fit that beta does not
    # change: fitted once, then each beta (the path's 81 and every move) is one closed form.
    scores = bt_fit(P_t, mu_t)  # the reward of the optimum's pairs, nu = mu
    path = gibbs_policy(mu_t, scores, path_betas[:, None])
    # A tie for the top BT score (e.g. rock-paper-scissors, all scores 0) has no single vertex.
    top = _top(scores)
    fixed = {
        "path_betas": path_betas,
        "path": path,
        "bt_scores": scores,
        "bt_argmax": _vertex(top[0]) if len(top) == 1 else None,
        "mu": mu_t,
    }

    def compute() -> dict[str, Any]:
        b = float(controls["beta"].value)
        return {**fixed, "beta": b, "optimum": gibbs_policy(mu_t, scores, b)}

    # One layout: the path, its ends, mu and the BT argmax stay; the optimum moves.
    _connect(h, lambda: _update(h, compute, lambda _data: "beta", _build_beta, _update_beta))
    return h


def _update_beta(artists: dict[str, Any], data: dict[str, Any]) -> list[Any]:
    """Move the optimum's marker and bars, retitle; returns the artists that moved."""
    artists["optimum"].set_data(*barycentric_to_cartesian(data["optimum"]).numpy().reshape(2, 1))
    for bar, height in zip(artists["bars"], data["optimum"].tolist()):
        bar.set_height(height)
    artists["title"].set_text(f"RLHF/DPO optimum at β = {_fmt(data['beta'])}")
    return [*artists["bars"], artists["optimum"], artists["title"]]


def _build_beta(fig: Figure, data: dict[str, Any]) -> dict[str, Any]:
    """Draw the whole figure; returns the artists ``_update_beta`` moves."""
    ax, ax_b = fig.subplots(1, 2, width_ratios=(1.3, 1.0))
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.22, wspace=0.12)
    draw_simplex(ax, _ACTIONS, gridlines=4)
    color = COLORS["RLHF/DPO optimum"]
    plot_trajectory(ax, data["path"], color=color, alpha=0.3, linewidth=3.0, zorder=2, gid="path")
    small, large = data["path"][0], data["path"][-1]
    where = "BT argmax" if data["bt_argmax"] is not None else "mu on the tied top BT scores"
    _annotate_end(
        ax,
        small,
        rf"small $\beta$ (weak KL) $\to$ {where}" + f"\n(β = {data['path_betas'][0]:g})",
        outward=True,
    )
    _annotate_end(
        ax,
        large,
        r"large $\beta$ (strong KL) $\to \mu$" + f"\n(β = {data['path_betas'][-1]:g})",
        outward=False,
    )
    mark_target(ax, "reference mu", data["mu"], "mu")
    if data["bt_argmax"] is not None:
        plot_policy(
            ax,
            data["bt_argmax"],
            marker="o",
            markersize=14,
            markerfacecolor="none",
            markeredgecolor=color,
            markeredgewidth=1.5,
            zorder=4,
            gid="bt_argmax",
        )
    optimum = plot_policy(
        ax,
        data["optimum"],
        marker="o",
        markersize=11,
        color=color,
        markeredgecolor="black",
        zorder=6,
        gid="optimum",
    )
    title = ax.set_title("", fontsize=11)
    x = np.arange(3)
    bars = ax_b.bar(
        x - 0.2,
        data["optimum"].numpy(),
        width=0.4,
        color=color,
        label=r"$\pi_\beta$",
        gid="bars:optimum",
    )
    ax_b.bar(
        x + 0.2,
        data["mu"].numpy(),
        width=0.4,
        color=COLORS["reference mu"],
        label=r"$\mu$",
        gid="bars:mu",
    )
    ax_b.set_xticks(
        x,
        [f"{a}\n(BT score {s:+.2f})" for a, s in zip(_ACTIONS, data["bt_scores"].tolist())],
        fontsize=8,
    )
    ax_b.set_ylim(0.0, 1.0)
    ax_b.set_ylabel("probability")
    ax_b.legend(fontsize=9)
    ax_b.set_title(
        r"$\pi_\beta(y) \propto \mu(y)\, e^{\hat r(y)/\beta}$, $\hat r$: BT fit, pairs ~ $\mu$",
        fontsize=10,
    )
    handles = [
        Line2D(
            [],
            [],
            color=color,
            alpha=0.3,
            linewidth=3.0,
            label=r"path over $\beta$ from 0.01 to 100",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            color=color,
            markeredgecolor="black",
            label=r"optimum at the slider's $\beta$ (BT fit on pairs ~ $\mu$)",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            markeredgecolor=color,
            markersize=11,
            label="BT argmax (vertex)",
        ),
        *target_handles(["reference mu"]),
    ]
    _legend_below(fig, handles, 4)
    return {"optimum": optimum, "bars": list(bars), "title": title}


def _annotate_end(ax: Axes, pi: Tensor, text: str, outward: bool) -> None:
    """An arrow to the policy ``pi`` on the simplex from a label beside it.

    The label goes under the triangle for a point near the bottom edge, to the right for one higher
    up (``outward``, an end of the path near the boundary), or straight above (a point inside).
    """
    line = plot_policy(ax, pi, marker=".", color="0.4", markersize=4)
    x, y = line.get_xydata()[0]
    offset, ha = (0.0, 55.0), "center"
    if outward:
        if y < 0.3:
            offset, ha = (0.0, -34.0), "left" if x < 0.5 else "right"
        else:
            offset, ha = (25.0, 0.0), "left"
    ax.annotate(
        text,
        xy=(x, y),
        xytext=offset,
        textcoords="offset points",
        fontsize=8,
        ha=ha,
        va="center",
        annotation_clip=False,
        arrowprops={"arrowstyle": "->", "color": "0.3", "linewidth": 0.8},
    )
