r"""Figures of the exact dynamics, each a function of its named experiment config, and the figure registry.

``FIGURES`` maps every figure name (the keys of ``experiments.EXPERIMENTS``) to a function
``(config, quick=False) -> matplotlib.figure.Figure``; ``write_figures`` builds them and saves PNG and
PDF through ``plotting.save_figure`` (no timestamps: same bytes on every rerun). The figures:

- ``trajectories``: every algorithm of ``dynamics.ALGORITHMS`` on the simplex, with its targets;
- ``tau_path``: the regularised Nash and the RLHF/DPO optimum as tau shrinks (``tau_path_data``);
- ``nash_md_convergence``: Nash-MD's KL to the regularised Nash against T, with Theorem 1's bound;
- ``ipo_toy``: the IPO paper's toy bandits, DPO against IPO (``prefopt_toy.ipo_toy_figure``).

All numbers come from the library (solvers, ``dynamics``); this file arranges and draws them. Shapes
are (K,) policies and (steps + 1, K) trajectories; tensors become numpy only in ``plotting``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from .bt import bt_fit
from .dynamics import ALGORITHMS, nash_md
from .experiments import (
    EXPERIMENTS,
    NASH_MD_CONVERGENCE,
    TAU_PATH,
    TRAJECTORIES,
    NashMDConvergenceConfig,
    ReferenceSolutionsConfig,
    TauPathConfig,
    TrajectoriesConfig,
)
from .ipo_toy_figure import ipo_toy_figure
from .named_games import named_game
from .nash import nash_equilibrium
from .optima import gibbs_policy, ipo_optimum, rlhf_optimum
from .plotting import (
    COLORS,
    draw_simplex,
    plot_policy,
    plot_trajectory,
    reference_solutions_figure,
    save_figure,
)
from .policies import kl
from .regularized import ipo_md_fixed_point, regularized_nash

__all__ = [
    "FIGURES",
    "nash_md_convergence_figure",
    "reference_figure",
    "tau_path_data",
    "tau_path_figure",
    "trajectories_figure",
    "write_figures",
]

# (colour, line style) per algorithm: dashed = offline (pairs from mu), solid = online or mixture
# sampling, dotted = RLHF's policy gradient on a fitted reward. An algorithm shares the colour of
# the target it converges to (DPO / RLHF blue, IPO orange, Nash-MD green) as in reference_solutions.
ALGORITHM_STYLE: dict[str, tuple[str, Any]] = {
    "dpo": ("tab:blue", "--"),
    "ipo": ("tab:orange", "--"),
    "slic": ("tab:olive", "--"),
    "online_dpo": ("tab:cyan", "-"),
    "online_ipo": ("tab:red", "-"),
    "ipo_md": ("tab:purple", "-"),
    "nash_md": ("tab:green", "-"),
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
    "IPO-MD fixed point": {"marker": "^", "color": "tab:purple", "markersize": 9},
    "reference mu": {"marker": "X", "color": COLORS["reference mu"], "markersize": 9},
}


def _target_handles(names: Iterable[str]) -> list[Line2D]:
    return [Line2D([], [], linestyle="none", markeredgecolor="black", label=n, **TARGET_STYLE[n]) for n in names]


def _mark(ax: Axes, name: str, pi: Tensor, gid: str) -> Line2D:
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


# ---------------------------------------------------------------------------------- reference


def reference_figure(config: ReferenceSolutionsConfig, quick: bool = False) -> Figure:
    """``plotting.reference_solutions_figure`` on ``config.games`` (quick mode changes nothing)."""
    return reference_solutions_figure(config.games)


# ------------------------------------------------------------------------------ trajectories


def trajectories_figure(config: TrajectoriesConfig = TRAJECTORIES, quick: bool = False) -> Figure:
    r"""Every algorithm's exact trajectory from :math:`\pi_0 = \mu` on the simplex, with its targets.

    One column per game of ``config.games``, one row per group of ``config.algorithm_groups``. All
    games run in one batched call per algorithm. Marked in every panel: the RLHF/DPO optimum
    (``beta = tau``, BT reward fitted on pairs from ``mu``), the offline IPO optimum, the
    regularised Nash equilibrium, ``mu``, and the IPO-MD fixed point where IPO-MD is drawn.
    Artists carry gids ``"<algorithm>:<game>"`` and ``"<target>:<game>"`` for tests.
    """
    games = [named_game(g) for g in config.games]
    P = torch.stack([g.preference_matrix() for g in games])  # (G, K, K)
    mu = torch.stack([g.reference_policy() for g in games])  # (G, K)
    steps = config.quick_steps if quick else config.steps
    runs = {
        name: ALGORITHMS[name](P, mu, steps=steps, tau=config.tau, **config.hyper_for(name))
        for group in config.algorithm_groups
        for name in group
    }
    tau = config.tau
    targets = {
        "RLHF/DPO optimum": [rlhf_optimum(P[i], mu[i], tau, nu=mu[i]) for i in range(len(games))],
        "IPO optimum": [ipo_optimum(P[i], mu[i], tau) for i in range(len(games))],
        "regularized Nash": [regularized_nash(P[i], mu[i], tau) for i in range(len(games))],
    }
    idx = log_indices(steps)
    nrows, ncols = len(config.algorithm_groups), len(games)
    fig = Figure(figsize=(4.1 * ncols + 2.6, 4.0 * nrows + 1.0), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, group in enumerate(config.algorithm_groups):
        for c, game in enumerate(games):
            ax = axes[r, c]
            draw_simplex(ax, game.actions, gridlines=4)
            for name in group:
                color, style = ALGORITHM_STYLE.get(name, ("black", "-"))
                path = runs[name].policies[c, idx]
                line = plot_trajectory(ax, path, color=color, linestyle=style, linewidth=1.6, zorder=3)
                line.set_gid(f"{name}:{game.name}")
                plot_policy(ax, path[-1], color=color, markersize=4, zorder=4)
            for target, points in targets.items():
                _mark(ax, target, points[c], f"{target}:{game.name}")
            if "ipo_md" in group:
                _mark(ax, "IPO-MD fixed point", runs["ipo_md"].target("ipo_md_fixed_point")[c],
                      f"IPO-MD fixed point:{game.name}")
            _mark(ax, "reference mu", mu[c], f"reference mu:{game.name}")
            if r == 0:
                ax.set_title(game.title, fontsize=11)
        handles = [
            Line2D([], [], color=ALGORITHM_STYLE.get(n, ("black", "-"))[0], linewidth=1.6,
                   linestyle=ALGORITHM_STYLE.get(n, ("black", "-"))[1], label=n + _GPO_ALIAS.get(n, ""))
            for n in group
        ]
        axes[r, -1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9,
                           title="algorithm", title_fontsize=9, frameon=False)
    marks = [*targets, *(["IPO-MD fixed point"] if any("ipo_md" in g for g in config.algorithm_groups) else []),
             "reference mu"]
    fig.legend(handles=_target_handles(marks), loc="outside lower center", ncols=len(marks), fontsize=9,
               frameon=False)
    mixture = config.hyper_for("ipo_md").get("mixture", 0.125)
    fig.suptitle(
        rf"Exact dynamics from $\pi_0=\mu$: $\tau$ = {tau:g} for every algorithm ($\beta=\tau$ for "
        f"DPO-family losses), {steps} steps; IPO-MD mixture {mixture:g}, Nash-MD decaying step"
        + (" [quick]" if quick else ""),
        fontsize=11,
    )
    return fig


# ---------------------------------------------------------------------------------- tau path


def tau_path_data(config: TauPathConfig = TAU_PATH, quick: bool = False) -> dict[str, dict[str, Tensor]]:
    r"""Per game: the regularised Nash and RLHF/DPO optimum along a log grid of tau, and the limits.

    Returns ``{game: {"taus": (N,), "regularized_nash": (N, K), "rlhf": (N, K), "nash": (K,),
    "bt_argmax": (K,) vertex}}``, taus from ``tau_max`` down to ``tau_min``. The BT reward does not
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
        data[name] = {"taus": taus[:n], "regularized_nash": nash_path[:n], "rlhf": rlhf[:n],
                      "marked_regularized_nash": nash_path[n:], "marked_rlhf": rlhf[n:],
                      "nash": nash_equilibrium(P), "bt_argmax": vertex}
    return data


def _tv(a: Tensor, b: Tensor) -> Tensor:
    return 0.5 * (a - b).abs().sum(-1)


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
        plot_trajectory(ax, d["rlhf"], color=COLORS["RLHF/DPO optimum"], linewidth=4.0, alpha=0.45,
                        solid_capstyle="round", zorder=2).set_gid(f"rlhf path:{name}")
        plot_trajectory(ax, d["regularized_nash"], color=COLORS["regularized Nash"], linewidth=1.6,
                        zorder=3).set_gid(f"regularized nash path:{name}")
        sizes = np.linspace(4.0, 8.0, len(config.marked_taus))
        for size, t, pi_n, pi_r in zip(sizes, config.marked_taus, d["marked_regularized_nash"], d["marked_rlhf"]):
            plot_policy(ax, pi_r, color=COLORS["RLHF/DPO optimum"], markersize=size, markeredgecolor="white",
                        markeredgewidth=0.5, zorder=4)
            point = plot_policy(ax, pi_n, color=COLORS["regularized Nash"], markersize=size,
                                markeredgecolor="white", markeredgewidth=0.5, zorder=5)
            x, y = point.get_xdata()[0], point.get_ydata()[0]
            ax.annotate(rf"$\tau$={t:g}", (x, y), xytext=(5, -3), textcoords="offset points", fontsize=7,
                        color="darkgreen", zorder=7)
        plot_policy(ax, d["nash"], marker="*", markersize=14, color=COLORS["Nash equilibrium"],
                    markeredgecolor="white", zorder=6)
        _mark(ax, "reference mu", game.reference_policy(), f"reference mu:{name}")
        ax.set_title(game.title, fontsize=10)

        ax = axes[1, c]
        taus = d["taus"].numpy()
        ax.plot(taus, _tv(d["regularized_nash"], d["nash"]).numpy(), color=COLORS["regularized Nash"],
                linewidth=1.8, gid=f"tv regularized nash to nash:{name}")
        ax.plot(taus, _tv(d["rlhf"], d["bt_argmax"]).numpy(), color=COLORS["RLHF/DPO optimum"],
                linewidth=1.8, gid=f"tv rlhf to bt argmax:{name}")
        ax.plot(taus, _tv(d["rlhf"], d["nash"]).numpy(), color=COLORS["RLHF/DPO optimum"], linewidth=1.4,
                linestyle=":", gid=f"tv rlhf to nash:{name}")
        ax.set_xscale("log")
        ax.set_xlim(config.tau_max, config.tau_min)  # tau decreases to the right, as on the simplex
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="major", color="0.9")
        ax.set_xlabel(r"KL strength $\tau$ (decreasing $\rightarrow$)")
        if c == 0:
            ax.set_ylabel("total variation distance")
    fig.legend(
        handles=[
            Line2D([], [], color=COLORS["RLHF/DPO optimum"], linewidth=4.0, alpha=0.45,
                   label=r"RLHF/DPO optimum $\mu e^{r/\tau}$ ($\beta=\tau$)"),
            Line2D([], [], color=COLORS["regularized Nash"], linewidth=1.6, marker="o",
                   label="regularized Nash equilibrium"),
            Line2D([], [], color=COLORS["Nash equilibrium"], marker="*", markersize=12, linestyle="none",
                   label=r"Nash equilibrium ($\tau=0$)"),
            *_target_handles(["reference mu"]),
            Line2D([], [], color=COLORS["regularized Nash"], linewidth=1.8,
                   label="TV(regularized Nash, Nash equilibrium)"),
            Line2D([], [], color=COLORS["RLHF/DPO optimum"], linewidth=1.8,
                   label="TV(RLHF optimum, BT-argmax vertex)"),
            Line2D([], [], color=COLORS["RLHF/DPO optimum"], linewidth=1.4, linestyle=":",
                   label="TV(RLHF optimum, Nash equilibrium)"),
        ],
        loc="outside lower center", ncols=4, fontsize=9, frameon=False,
    )
    fig.suptitle(
        rf"$\tau$ from {config.tau_max:g} to {config.tau_min:g}: the regularized Nash tends to the Nash "
        "equilibrium (the Condorcet winner when there is one), RLHF/DPO to the BT argmax"
        + (" [quick]" if quick else ""),
        fontsize=11,
    )
    return fig


# ------------------------------------------------------------------------ Nash-MD convergence


def nash_md_convergence_figure(config: NashMDConvergenceConfig = NASH_MD_CONVERGENCE, quick: bool = False) -> Figure:
    r"""Nash-MD's :math:`KL(\pi^*_\tau\|\pi_T)` against T (log-log), schedule vs constant steps, with the bound.

    One panel per tau. The decaying step :math:`\eta_t = 2/(\tau(t+2))` obeys
    :math:`KL \le 8/(\tau^2(T+1))` (Munos et al., arXiv:2312.00886v4, Theorem 1). A constant step
    :math:`\eta` converges instead to the IPO-MD fixed point with mixture :math:`\eta\tau`, so its KL
    to :math:`\pi^*_\tau` levels off at :math:`KL(\pi^*_\tau\|\text{ipo\_md\_fixed\_point}(P, \mu,
    \tau, \eta\tau))` (dashed). Every run of a kind is one batched ``nash_md`` call. Lines carry
    gids ``"schedule:<tau>"``, ``"bound:<tau>"``, ``"constant:<tau>:<eta tau>"``, ``"plateau:..."``.
    """
    game = named_game(config.game)
    P, mu = game.preference_matrix(), game.reference_policy()
    steps = config.quick_steps if quick else config.steps
    taus = torch.tensor(config.taus, dtype=torch.float64)
    stars = torch.stack([regularized_nash(P, mu, float(t)) for t in taus])  # (n_tau, K)
    schedule = nash_md(P, mu, tau=taus, steps=steps).kl_to(stars)  # (n_tau, steps + 1)
    pairs = [(i, m) for i in range(len(taus)) for m in config.constant_eta_tau]
    row_tau = taus[[i for i, _ in pairs]]
    row_eta = torch.tensor([m for _, m in pairs], dtype=torch.float64) / row_tau
    constant = nash_md(P, mu, tau=row_tau, steps=steps, eta=row_eta).kl_to(stars[[i for i, _ in pairs]])
    idx = log_indices(steps)[1:]  # T >= 1 on a log axis
    T = np.asarray(idx, dtype=float)
    colors = ["tab:orange", "tab:purple", "tab:cyan", "tab:olive"]
    fig = Figure(figsize=(5.4 * len(taus), 4.8), layout="constrained")
    axes = fig.subplots(1, len(taus), squeeze=False)[0]
    for i, (ax, tau) in enumerate(zip(axes, config.taus)):
        ax.plot(T, 8.0 / (tau**2 * (T + 1.0)), color="0.45", linestyle=(0, (1, 1.5)), linewidth=1.6,
                label=r"bound $8/(\tau^2(T+1))$", gid=f"bound:{tau:g}")
        ax.plot(T, schedule[i, idx].numpy(), color=COLORS["regularized Nash"], linewidth=2.0,
                label=r"decaying step $\eta_t = 2/(\tau(t+2))$", gid=f"schedule:{tau:g}")
        for j, (row, (_, m)) in enumerate((r, p) for r, p in enumerate(pairs) if p[0] == i):
            color = colors[j % len(colors)]
            ax.plot(T, constant[row, idx].numpy(), color=color, linewidth=1.5,
                    label=rf"constant $\eta$ = {m / tau:g} ($\eta\tau$ = {m:g})", gid=f"constant:{tau:g}:{m:g}")
            plateau = kl(stars[i], ipo_md_fixed_point(P, mu, tau, m))
            ax.axhline(plateau, color=color, linestyle="--", linewidth=1.0, gid=f"plateau:{tau:g}:{m:g}",
                       label=rf"its limit: KL to IPO-MD fixed point, mixture {m:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1, steps)
        ax.grid(True, which="major", color="0.9")
        ax.set_xlabel("Nash-MD step T")
        ax.set_ylabel(r"$KL(\pi^*_\tau \,\|\, \pi_T)$ (nats)")
        ax.set_title(rf"$\tau$ = {tau:g}", fontsize=11)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(
        rf"Nash-MD on {game.title}: last-iterate KL to the regularized Nash $\pi^*_\tau$, from $\pi_0=\mu$"
        + (" [quick]" if quick else ""),
        fontsize=11,
    )
    return fig


# ------------------------------------------------------------------------------- registry


FIGURES: dict[str, Callable[..., Figure]] = {
    "reference_solutions": reference_figure,
    "trajectories": trajectories_figure,
    "tau_path": tau_path_figure,
    "nash_md_convergence": nash_md_convergence_figure,
    "ipo_toy": ipo_toy_figure,
}
"""Figure name -> function ``(config, quick=False) -> Figure``; its config is ``EXPERIMENTS[name]``."""


def _games_of(config: Any) -> list[str]:
    games = getattr(config, "games", None) or ([config.game] if hasattr(config, "game") else [])
    return list(games)


def write_figures(
    out_dir: str | Path = "figures",
    *,
    only: Sequence[str] | None = None,
    quick: bool = False,
    games: Sequence[str] | None = None,
    stream: TextIO | None = None,
) -> list[Path]:
    """Build the figures of ``FIGURES`` (or those named in ``only``) and save each as PNG and PDF.

    Parameters
    ----------
    out_dir : str or Path
        Folder for ``<name>.png`` and ``<name>.pdf`` (created if needed).
    only : sequence of str, optional
        Figure names (keys of ``FIGURES``), in the order to write them; default all.
    quick : bool
        Smoke mode: the configs' ``quick_*`` sizes (fewer steps, points and seeds).
    games : sequence of str, optional
        Named games of the ``reference_solutions`` figure (the other figures keep their configs').
    stream : text stream, optional
        Where ``wrote <path>`` lines and timings go (default ``sys.stdout``).

    Returns
    -------
    list of Path
        The files written, two per figure.
    """
    out = sys.stdout if stream is None else stream
    names = list(FIGURES) if only is None else list(only)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure {unknown[0]!r}; valid names: {', '.join(FIGURES)}")
    paths: list[Path] = []
    for name in names:
        config = EXPERIMENTS[name]
        if games and name == "reference_solutions":
            config = replace(config, games=tuple(games))
        start = time.perf_counter()
        fig = FIGURES[name](config, quick=quick)
        # reference_solutions keeps its historical metadata (the games); the others name the config.
        configs = _games_of(config) if name == "reference_solutions" else [
            f"experiments.{config.name}" + (" (quick)" if quick else ""), *_games_of(config)]
        written = save_figure(fig, Path(out_dir) / name, configs=configs)
        for path in written:
            print(f"wrote {path}", file=out)
        print(f"  {name}: {time.perf_counter() - start:.1f} s", file=out)
        paths += written
    return paths
