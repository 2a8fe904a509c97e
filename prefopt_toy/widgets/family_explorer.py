r"""The family explorer of notebook 08: one DPO-family method's exact run beside DPO's optimum.

:func:`family_explorer` runs ``ALGORITHMS[method]`` from ``mu`` (settings of
``plots.family.family_settings``: ORPO reads beta as its lam, sDPO runs 2 stages, iterative DPO 5
rounds), and draws its path and end on the simplex with DPO's optimum ``rlhf_optimum(P, mu, beta)``
and, where one is registered (``FIXED_POINTS``), the method's own fixed point; a bar panel
compares the end with DPO's optimum action by action, under each action's length. References:
Rafailov et al. arXiv:2305.18290v3; Meng et al. arXiv:2405.14734v3 (SimPO's gamma); Park et al.
arXiv:2403.19159v3 (R-DPO's alpha and lengths).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from prefopt_toy._validate import as_int, as_positive_float
from prefopt_toy.dynamics import ALGORITHMS, FAMILY, FIXED_POINTS
from prefopt_toy.plots.draw import COLORS, draw_simplex, plot_policy, plot_trajectory
from prefopt_toy.plots.family import FAMILY_COLORS, family_settings
from prefopt_toy.plots.style import log_indices, mark_target, target_handles
from prefopt_toy.simplex import barycentric_to_cartesian
from prefopt_toy.solutions.optima import rlhf_optimum

from .handle import (
    _ACTIONS,
    WidgetHandle,
    _connect,
    _fmt,
    _legend_below,
    _log_slider,
    _three_action_game,
    _update,
)

__all__ = ["FAMILY_BETA_RANGE", "FAMILY_METHODS", "family_explorer", "parse_lengths"]

FAMILY_METHODS: tuple[str, ...] = ("dpo", *FAMILY)
"""The methods of the dropdown: DPO, then ``dynamics.FAMILY``."""
FAMILY_BETA_RANGE = (0.05, 20.0)
"""The beta slider's range (log scale)."""
_POINTS = 200  # iterates drawn per path


def parse_lengths(text: str) -> torch.Tensor:
    """Three positive lengths from text such as ``"1, 2, 3"``; a ValueError says what is wrong."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"lengths must be three numbers such as 1, 2, 3; got {text!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"lengths must be three finite numbers > 0 such as 1, 2, 3; got {text!r}")
    return torch.tensor(values, dtype=torch.float64)


def family_explorer(
    P: Any,
    mu: Any,
    method: str = "simpo",
    beta: float = 1.0,
    gamma: float = 0.0,
    alpha: float = 0.0,
    lengths: str = "1, 2, 3",
    steps: int = 300,
) -> WidgetHandle:
    r"""One family method's exact run on the simplex beside DPO's optimum, with live controls.

    Parameters
    ----------
    P : (3, 3) preference matrix. mu : (3,) positive reference policy.
    method : one of ``FAMILY_METHODS``, default "simpo".
    beta : float in [0.05, 20]: the KL strength (SimPO's reward scale; ORPO's lam).
    gamma : float in [0, 4]: SimPO's absolute target margin (other methods ignore it).
    alpha : float in [0, 4]: R-DPO's length weight (other methods ignore it).
    lengths : text of three lengths > 0 (SimPO and R-DPO read them).
    steps : int >= 10: updates per run (shared among sDPO's stages and iterative DPO's rounds).

    Returns
    -------
    WidgetHandle
        ``controls``: ``"method"``, ``"beta"``, ``"gamma"``, ``"alpha"``, ``"lengths"``.
        ``data``: ``"method"``, ``"beta"``, ``"gamma"``, ``"alpha"``, ``"lengths"``, ``"path"``
        (the drawn iterates), ``"final"``, ``"dpo_optimum"``, ``"fixed_point"`` (the registered
        target or None), ``"mu"``.

    References
    ----------
    Rafailov et al. arXiv:2305.18290v3 (DPO's optimum); each method's paper as its
    ``ALGORITHMS`` entry.
    """
    P_t, mu_t = _three_action_game(P, mu)
    if method not in FAMILY_METHODS:
        raise ValueError(f"method must be one of {FAMILY_METHODS}, got {method!r}")
    n_steps = as_int(steps, "steps", minimum=10)
    beta_f = as_positive_float(beta, "beta")
    parse_lengths(lengths)
    slider = {"continuous_update": False, "style": {"description_width": "initial"}}
    controls = {
        "method": widgets.Dropdown(options=list(FAMILY_METHODS), value=method, description="method"),
        "beta": _log_slider("beta", beta_f, *FAMILY_BETA_RANGE),
        "gamma": widgets.FloatSlider(value=gamma, min=0.0, max=4.0, step=0.25, description="gamma", **slider),
        "alpha": widgets.FloatSlider(value=alpha, min=0.0, max=4.0, step=0.25, description="alpha", **slider),
        "lengths": widgets.Text(value=lengths, description="lengths", continuous_update=False),
    }  # fmt: skip
    h = WidgetHandle(controls, figsize=(9.0, 4.4))

    def compute() -> dict[str, Any]:
        name = controls["method"].value
        b = float(controls["beta"].value)
        L = parse_lengths(controls["lengths"].value)
        settings = family_settings(b, n_steps, L, float(controls["alpha"].value))[name]
        if name == "simpo":
            settings["gamma"] = float(controls["gamma"].value)
        run = ALGORITHMS[name](P_t, mu_t, **settings)
        target = FIXED_POINTS.get(name)
        return {
            "method": name,
            "beta": b,
            "gamma": float(controls["gamma"].value),
            "alpha": float(controls["alpha"].value),
            "lengths": L,
            "path": run.policies[log_indices(run.steps, _POINTS)],
            "final": run.final,
            "dpo_optimum": rlhf_optimum(P_t, mu_t, b),
            "fixed_point": None if target is None else run.target(target),
            "mu": mu_t,
        }

    _connect(h, lambda: _update(h, compute, lambda _data: "family", _build, _refresh))
    return h


def _refresh(artists: dict[str, Any], data: dict[str, Any]) -> list[Any]:
    """Move the path, the markers and the bars; retitle. Returns the artists that moved."""
    name = data["method"]
    color = FAMILY_COLORS.get(name, "black")
    xy = barycentric_to_cartesian(data["path"]).numpy()
    artists["path"].set_data(xy[:, 0], xy[:, 1])
    artists["path"].set_color(color)
    artists["end"].set_data(*barycentric_to_cartesian(data["final"]).numpy().reshape(2, 1))
    artists["end"].set_color(color)
    artists["end"].set_markeredgecolor("black")
    artists["dpo_optimum"].set_data(
        *barycentric_to_cartesian(data["dpo_optimum"]).numpy().reshape(2, 1)
    )
    fixed = data["fixed_point"]
    artists["fixed_point"].set_visible(fixed is not None)
    if fixed is not None:
        artists["fixed_point"].set_data(*barycentric_to_cartesian(fixed).numpy().reshape(2, 1))
    for bar, height in zip(artists["bars"], data["final"].tolist()):
        bar.set_height(height)
        bar.set_color(color)
    for bar, height in zip(artists["dpo_bars"], data["dpo_optimum"].tolist()):
        bar.set_height(height)
    knobs = f"β = {_fmt(data['beta'])}" if name != "orpo" else f"λ = {_fmt(data['beta'])}"
    if name == "simpo":
        knobs += f", γ = {_fmt(data['gamma'])}"
    if name == "rdpo":
        knobs += f", α = {_fmt(data['alpha'])}"
    artists["title"].set_text(f"{name}: {knobs}")
    lengths = ", ".join(f"{v:g}" for v in data["lengths"].tolist())
    artists["lengths"].set_text(f"end (left), DPO optimum (right); L = ({lengths})")
    return [
        *artists["bars"],
        *artists["dpo_bars"],
        artists["path"],
        artists["dpo_optimum"],
        artists["fixed_point"],
        artists["end"],
        artists["title"],
        artists["lengths"],
    ]


def _build(fig: Figure, data: dict[str, Any]) -> dict[str, Any]:
    """Draw the whole figure; returns the artists ``_refresh`` moves."""
    ax, ax_b = fig.subplots(1, 2, width_ratios=(1.3, 1.0))
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.24, wspace=0.15)
    draw_simplex(ax, _ACTIONS, gridlines=4)
    path = plot_trajectory(ax, data["path"], linewidth=2.0, zorder=3, gid="path")
    mark_target(ax, "reference mu", data["mu"], "mu")
    dpo = mark_target(ax, "RLHF/DPO optimum", data["dpo_optimum"], "dpo_optimum")
    fixed = plot_policy(
        ax, data["mu"], marker="o", markersize=15, markerfacecolor="none",
        markeredgecolor="black", markeredgewidth=1.5, zorder=5, gid="fixed_point",
    )  # fmt: skip
    end = plot_policy(ax, data["final"], markersize=9, zorder=7, gid="end")
    title = ax.set_title("", fontsize=11)
    x = np.arange(3)
    bars = ax_b.bar(x - 0.2, data["final"].numpy(), width=0.4, label="method's end", gid="bars:end")
    dpo_bars = ax_b.bar(
        x + 0.2, data["dpo_optimum"].numpy(), width=0.4, color=COLORS["RLHF/DPO optimum"],
        alpha=0.5, label="DPO optimum", gid="bars:dpo_optimum",
    )  # fmt: skip
    ax_b.set_xticks(x, list(_ACTIONS), fontsize=10)
    ax_b.set_ylim(0.0, 1.0)
    ax_b.set_ylabel("probability", fontsize=10)
    ax_b.tick_params(labelsize=10)
    lengths = ax_b.set_title("", fontsize=11)
    handles = [
        Line2D([], [], color="0.3", linewidth=2.0, label="the method's exact path"),
        Line2D([], [], linestyle="none", marker="o", color="0.3", label="its end"),
        Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
               markeredgecolor="black", markersize=11, label="its registered fixed point"),
        *target_handles(["RLHF/DPO optimum", "reference mu"],
                        labels=["DPO optimum at β (pairs ~ mu)", "reference mu"]),
    ]  # fmt: skip
    _legend_below(fig, handles, 3)
    for text in fig.legends[0].get_texts():
        text.set_fontsize(10)
    return {
        "path": path,
        "end": end,
        "dpo_optimum": dpo,
        "fixed_point": fixed,
        "bars": list(bars),
        "dpo_bars": list(dpo_bars),
        "title": title,
        "lengths": lengths,
    }
