r"""Figure ``tau_path``: the regularised Nash and the RLHF/DPO optimum as tau runs from 10 to 0.001.

As the KL strength tau shrinks, the regularised Nash equilibrium (fixed point of
:math:`\mu e^{P\pi/\tau}`) tends to a Nash equilibrium of the unregularised game (the Condorcet
winner when there is one), while the RLHF/DPO optimum :math:`\mu e^{r/\tau}` tends to the vertex of
the Bradley-Terry argmax (Munos et al., arXiv:2312.00886v4, Sec. 3-4; Azar et al.,
arXiv:2310.12036v2, Eq. (3)). ``tau_path_data`` computes both paths (one BT fit per game), and
``tau_path_figure`` draws them on the simplex and as distances against tau.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from prefopt_toy.games.named import named_game
from prefopt_toy.simplex import barycentric_to_cartesian
from prefopt_toy.solutions.bt import bt_fit
from prefopt_toy.solutions.nash import nash_equilibrium
from prefopt_toy.solutions.optima import gibbs_policy
from prefopt_toy.solutions.regularized import regularized_nash

from .draw import COLORS, draw_simplex, plot_policy, plot_trajectory
from .experiments import TAU_PATH, TauPathConfig
from .style import mark_target, target_handles, tau_grid

__all__ = ["tau_path_data", "tau_path_figure"]


def tau_path_data(
    config: TauPathConfig = TAU_PATH, quick: bool = False
) -> dict[str, dict[str, Tensor]]:
    r"""Per game: the regularised Nash and RLHF/DPO optimum along a log grid of tau, and the limits.

    Returns ``{game: {"taus": (N,), "regularized_nash": (N, K), "rlhf": (N, K), "nash": (K,),
    "bt_argmax": (K,) vertex, "marked_regularized_nash": (M, K), "marked_rlhf": (M, K)}}``, taus
    from ``tau_max`` down to ``tau_min``; the ``marked_*`` rows are at ``config.marked_taus``. The BT reward does not
    depend on tau, so it is fitted once per game and the RLHF path is one vectorised
    ``gibbs_policy`` call (``rlhf_optimum = mu * exp(bt_fit(P, mu) / tau)``); the regularised Nash is
    solved per tau (certified Newton, ``regularized_nash``).
    """
    taus = tau_grid(config.tau_max, config.tau_min, config.quick_points if quick else config.points)
    taus = torch.cat([taus, torch.tensor(config.marked_taus, dtype=torch.float64)])
    data = {}
    for name in config.games:
        game = named_game(name)
        P, mu = game.preference_matrix(), game.reference_policy()
        reward = bt_fit(P, mu)  # (K,) once per game; pairs from nu = mu as in offline DPO
        rlhf = gibbs_policy(mu, reward, taus[:, None])  # (N, K)
        nash_path = torch.stack([regularized_nash(P, mu, float(t)) for t in taus])
        vertex = torch.zeros_like(mu)
        vertex[int(reward.argmax())] = 1.0
        n = len(taus) - len(config.marked_taus)
        data[name] = {
            "taus": taus[:n],
            "regularized_nash": nash_path[:n],
            "rlhf": rlhf[:n],
            "marked_regularized_nash": nash_path[n:],
            "marked_rlhf": rlhf[n:],
            "nash": nash_equilibrium(P),
            "bt_argmax": vertex,
        }
    return data


def _label_taus(ax: Axes, taus: Sequence[float], points: Tensor, min_gap: float = 0.07) -> None:
    """Label the points at ``taus`` on a simplex; points closer than ``min_gap`` share one label."""
    groups: list[tuple[np.ndarray, list[str]]] = []
    for t, xy in zip(taus, barycentric_to_cartesian(points).numpy()):
        if groups and np.linalg.norm(xy - groups[-1][0]) < min_gap:
            groups[-1][1].append(f"{t:g}")
        else:
            groups.append((xy, [f"{t:g}"]))
    for xy, labels in groups:
        ax.annotate(
            r"$\tau$=" + ", ".join(labels),
            tuple(xy),
            xytext=(6, -4),
            textcoords="offset points",
            fontsize=7,
            color="darkgreen",
            zorder=7,
        )


def _tv(a: Tensor, b: Tensor) -> Tensor:
    """Total variation ``0.5 * ||a - b||_1`` along the last axis.

    ``Trajectory.distance_to`` is the same quantity for a run of the dynamics; these paths are
    solutions, not runs.
    """
    return 0.5 * (a - b).abs().sum(-1)


# The distance curves of the bottom row: (gid prefix, legend label, path key, limit key of
# ``tau_path_data``, line style). One spec drives both the curve and its legend entry.
_DISTANCES: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    (
        "tv regularized nash to nash",
        "TV(regularized Nash, Nash equilibrium)",
        "regularized_nash",
        "nash",
        {"color": COLORS["regularized Nash"], "linewidth": 1.8},
    ),
    (
        "tv rlhf to bt argmax",
        "TV(RLHF optimum, BT-argmax vertex)",
        "rlhf",
        "bt_argmax",
        {"color": COLORS["RLHF/DPO optimum"], "linewidth": 1.8},
    ),
    (
        "tv rlhf to nash",
        "TV(RLHF optimum, Nash equilibrium)",
        "rlhf",
        "nash",
        {"color": COLORS["RLHF/DPO optimum"], "linewidth": 1.4, "linestyle": ":"},
    ),
)


def tau_path_figure(config: TauPathConfig = TAU_PATH, quick: bool = False) -> Figure:
    r"""As tau shrinks, the regularised Nash tends to the Nash equilibrium, the RLHF optimum to the BT argmax.

    Top row, one simplex per game: both paths (RLHF/DPO wide pale blue, regularised Nash green) with
    markers at ``config.marked_taus``, the Nash equilibrium (red star) and ``mu``. Bottom row: total
    variation distances against tau (log axis, decreasing to the right): regularised Nash to the
    Nash equilibrium, RLHF optimum to the BT-argmax vertex and to the Nash equilibrium. Lines carry
    gids ``"<quantity>:<game>"``.
    """
    data = tau_path_data(config, quick)
    ncols = len(config.games)
    fig = Figure(figsize=(3.9 * ncols, 7.4), layout="constrained")
    axes = fig.subplots(2, ncols, squeeze=False, height_ratios=(1.25, 1.0))
    for c, name in enumerate(config.games):
        game, d = named_game(name), data[name]
        ax = axes[0, c]
        draw_simplex(ax, game.actions, gridlines=4)
        plot_trajectory(
            ax,
            d["rlhf"],
            color=COLORS["RLHF/DPO optimum"],
            linewidth=4.0,
            alpha=0.45,
            solid_capstyle="round",
            zorder=2,
        ).set_gid(f"rlhf path:{name}")
        plot_trajectory(
            ax, d["regularized_nash"], color=COLORS["regularized Nash"], linewidth=1.6, zorder=3
        ).set_gid(f"regularized nash path:{name}")
        sizes = np.linspace(4.0, 8.0, len(config.marked_taus))
        for key, color, zorder in (
            ("marked_rlhf", COLORS["RLHF/DPO optimum"], 4),
            ("marked_regularized_nash", COLORS["regularized Nash"], 5),
        ):
            for size, pi in zip(sizes, d[key]):
                plot_policy(
                    ax,
                    pi,
                    color=color,
                    markersize=size,
                    markeredgecolor="white",
                    markeredgewidth=0.5,
                    zorder=zorder,
                )
        _label_taus(ax, config.marked_taus, d["marked_regularized_nash"])
        plot_policy(
            ax,
            d["nash"],
            marker="*",
            markersize=14,
            color=COLORS["Nash equilibrium"],
            markeredgecolor="white",
            zorder=6,
        )
        mark_target(ax, "reference mu", game.reference_policy(), f"reference mu:{name}")
        ax.set_title(game.title, fontsize=10)

        ax = axes[1, c]
        taus = d["taus"].numpy()
        for gid, _label, path, limit, style in _DISTANCES:
            ax.plot(taus, _tv(d[path], d[limit]).numpy(), gid=f"{gid}:{name}", **style)
        ax.set_xscale("log")
        ax.set_xlim(config.tau_max, config.tau_min)  # tau decreases to the right, as on the simplex
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="major", color="0.9")
        ax.set_xlabel(r"KL strength $\tau$ (decreasing $\rightarrow$)")
        if c == 0:
            ax.set_ylabel("total variation distance")
    fig.legend(
        handles=[
            Line2D(
                [],
                [],
                color=COLORS["RLHF/DPO optimum"],
                linewidth=4.0,
                alpha=0.45,
                label=r"RLHF/DPO optimum $\mu e^{r/\tau}$ ($\beta=\tau$, pairs $\sim\mu$)",
            ),
            Line2D(
                [],
                [],
                color=COLORS["regularized Nash"],
                linewidth=1.6,
                marker="o",
                label="regularized Nash equilibrium",
            ),
            Line2D(
                [],
                [],
                color=COLORS["Nash equilibrium"],
                marker="*",
                markersize=12,
                linestyle="none",
                label=r"Nash equilibrium ($\tau=0$)",
            ),
            *target_handles(["reference mu"]),
            *(Line2D([], [], label=label, **style) for _, label, _, _, style in _DISTANCES),
        ],
        loc="outside lower center",
        ncols=4,
        fontsize=9,
        frameon=False,
    )
    fig.suptitle(
        rf"$\tau$ from {config.tau_max:g} to {config.tau_min:g}: the regularized Nash tends to the Nash "
        "equilibrium (the Condorcet winner when there is one), RLHF/DPO to the BT argmax"
        + (" [quick]" if quick else "")
        + "\nmarkers on the simplex at "
        + r"$\tau$ = "
        + ", ".join(f"{t:g}" for t in config.marked_taus)
        + r" (larger marker = smaller $\tau$)",
        fontsize=11,
    )
    return fig
