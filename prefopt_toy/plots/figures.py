r"""The figure registry and the simplex and convergence figures of the exact dynamics.

``FIGURES`` maps every figure name (the keys of ``experiments.EXPERIMENTS``) to a function
``(config, quick=False) -> matplotlib.figure.Figure``; ``write_figures`` builds them and saves PNG
and PDF through ``draw.save_figure`` (no timestamps: same bytes on every rerun). The figures:

- ``reference_solutions``: where each objective puts its optimum (``reference_solutions_figure``);
- ``trajectories``: every algorithm of ``dynamics.ALGORITHMS`` on the simplex, with its targets;
- ``tau_path``: the regularised Nash and the RLHF/DPO optimum as tau shrinks (``tau_path``);
- ``nash_md_convergence``: Nash-MD's KL to the regularised Nash against T, with Theorem 1's bound;
- ``ipo_toy``: the IPO paper's toy bandits, DPO against IPO (``ipo_toy``).

All numbers come from the library (solvers, ``dynamics``); these files arrange and draw them.
Artists that tests read carry a ``gid`` (``"<what>:<game>"``).
"""

from __future__ import annotations

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

from prefopt_toy._paths import check_out_folder
from prefopt_toy.dynamics import ALGORITHMS, nash_md
from prefopt_toy.games.named import NAMED_GAMES, NamedGame, named_game
from prefopt_toy.policies import kl
from prefopt_toy.solutions.optima import ipo_optimum, rlhf_optimum
from prefopt_toy.solutions.reference import IPO, PATH_TAUS, REG_NASH, RLHF, reference_table
from prefopt_toy.solutions.reference import reference_paths as _reference_paths
from prefopt_toy.solutions.regularized import ipo_md_fixed_point, regularized_nash

from .draw import COLORS, _xy, draw_simplex, plot_policy, plot_trajectory, save_figure
from .experiments import (
    EXPERIMENTS,
    NASH_MD_CONVERGENCE,
    TRAJECTORIES,
    NashMDConvergenceConfig,
    ReferenceSolutionsConfig,
    TrajectoriesConfig,
)
from .ipo_toy import ipo_toy_figure
from .style import ALGORITHM_STYLE, algorithm_label, log_indices, mark_target, target_handles
from .tau_path import tau_path_figure

__all__ = [
    "FIGURES",
    "figure_configs",
    "nash_md_convergence_figure",
    "reference_figure",
    "reference_solutions_figure",
    "trajectories_figure",
    "write_figures",
]


# On three actions the RLHF/DPO and IPO optima often run along nearly the same curve (both are
# exponential tilts of mu, by r / beta and by P @ mu / tau) at different speeds: draw RLHF wide
# and pale underneath and IPO dashed on top so that both stay visible.
_CURVE_STYLE: dict[str, dict[str, Any]] = {
    RLHF: {"linewidth": 4.0, "alpha": 0.45, "solid_capstyle": "round"},
    IPO: {"linewidth": 1.5, "linestyle": (0, (4, 2))},
    REG_NASH: {"linewidth": 1.5},
}


# The single points of a panel, drawn in this order: mu (cross), the unregularised Nash equilibrium
# (star), the Condorcet winner (open square, when there is one).
_POINT_STYLE: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "reference mu",
        {
            "marker": "X",
            "markersize": 9,
            "color": COLORS["reference mu"],
            "markeredgecolor": "white",
            "zorder": 4,
        },
    ),
    (
        "Nash equilibrium",
        {
            "marker": "*",
            "markersize": 13,
            "color": COLORS["Nash equilibrium"],
            "markeredgecolor": "white",
            "zorder": 5,
        },
    ),
    (
        "Condorcet winner",
        {
            "marker": "s",
            "markersize": 15,
            "markerfacecolor": "none",
            "markeredgecolor": COLORS["Condorcet winner"],
            "markeredgewidth": 1.5,
            "zorder": 4,
        },
    ),
)


def _draw_reference_panel(ax: Axes, game: NamedGame, path_taus: Sequence[float]) -> None:
    """One panel of ``reference_solutions_figure``: every solution concept of ``game``."""
    draw_simplex(ax, game.actions, gridlines=4)
    paths = _reference_paths(game, path_taus)
    rows = reference_table(game)
    for name, path in paths.items():
        plot_trajectory(ax, path, color=COLORS[name], zorder=2, **_CURVE_STYLE[name])
    # Tabulated taus: markers grow as tau shrinks, so the direction of travel reads off the panel.
    sizes = np.linspace(4.0, 9.0, len(game.taus))
    for name in paths:
        points = [r for r in rows if r.solution == name]
        for size, r in zip(sizes, points):
            plot_policy(
                ax,
                r.policy,
                color=COLORS[name],
                markersize=size,
                markeredgecolor="white",
                markeredgewidth=0.5,
                zorder=3,
            )
    for r in rows:
        if r.solution == REG_NASH:
            x, y = _xy(r.policy)
            ax.annotate(
                rf"$\tau$={r.tau:g}",
                (x, y),
                xytext=(4, -9),
                textcoords="offset points",
                fontsize=8.5,
                color=COLORS[REG_NASH],
            )
    by_name = {r.solution: r for r in rows}
    for name, style in _POINT_STYLE:
        policy = by_name[name].policy
        if policy is not None:  # no Condorcet winner on a cyclic game
            plot_policy(ax, policy, **style)
    ax.set_title(game.title, fontsize=11)


def _legend_handles() -> list[Line2D]:
    curves = (
        (RLHF, rf"{RLHF} ($\beta = \tau$, BT fit on pairs $\sim \mu$)"),
        (IPO, rf"{IPO} ($\nu = \mu$)"),
        (REG_NASH, "regularized Nash equilibrium"),
    )
    points: tuple[tuple[str, dict[str, Any]], ...] = (
        (
            r"Nash equilibrium ($\tau = 0$)",
            {"color": COLORS["Nash equilibrium"], "marker": "*", "markersize": 12},
        ),
        (
            "Condorcet winner",
            {
                "color": COLORS["Condorcet winner"],
                "marker": "s",
                "markersize": 11,
                "markerfacecolor": "none",
            },
        ),
        (
            r"reference policy $\mu$",
            {"color": COLORS["reference mu"], "marker": "X", "markersize": 9},
        ),
    )
    return [
        Line2D([], [], label=label, color=COLORS[name], marker="o", **_CURVE_STYLE[name])
        for name, label in curves
    ] + [Line2D([], [], label=label, linestyle="none", **style) for label, style in points]


def reference_solutions_figure(
    games: Iterable[NamedGame | str] | None = None,
    *,
    path_taus: Sequence[float] = PATH_TAUS,
) -> Figure:
    r"""Where RLHF/DPO, IPO, regularised Nash and Nash land on each named game: one panel per game.

    Each panel draws the simplex of the game's three actions with: the RLHF/DPO optimum
    (``beta = tau``), the offline IPO optimum (``nu = mu``) and the regularised Nash equilibrium as
    curves over ``path_taus`` (from ``tau = 10``, near ``mu``, to ``tau = 0.01``), with markers at
    the game's tabulated taus (larger for smaller tau); the unregularised Nash equilibrium (star);
    the Condorcet winner when there is one (open square); and ``mu`` (cross).

    Parameters
    ----------
    games : iterable of NamedGame or str, optional
        The games, one panel each, in order (default: all of ``NAMED_GAMES``: a 2 x 2 grid).
    path_taus : sequence of float > 0
        The taus along the curves (default ``solutions.reference.PATH_TAUS``).

    Returns
    -------
    matplotlib.figure.Figure
        A figure not attached to pyplot; save it with ``save_figure`` or ``fig.savefig``.
    """
    chosen = [
        g if isinstance(g, NamedGame) else named_game(g)
        for g in (NAMED_GAMES.values() if games is None else games)
    ]
    if not chosen:
        raise ValueError("games must name at least one game")
    ncols = 1 if len(chosen) == 1 else 2
    nrows = (len(chosen) + ncols - 1) // ncols
    fig = Figure(figsize=(5.0 * ncols, 4.6 * nrows + 1.0), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, game in zip(axes, chosen):
        _draw_reference_panel(ax, game, path_taus)
    for ax in axes[len(chosen) :]:
        ax.set_axis_off()
    fig.suptitle(
        "Reference solutions on the named games\n"
        rf"curves: $\tau$ from {max(path_taus):g} to {min(path_taus):g}; "
        r"markers: tabulated $\tau$ (larger = smaller $\tau$)",
        fontsize=12,
    )
    fig.legend(
        handles=_legend_handles(), loc="outside lower center", ncols=3, fontsize=9, frameon=False
    )
    return fig


# ---------------------------------------------------------------------------------- reference


def reference_figure(config: ReferenceSolutionsConfig, quick: bool = False) -> Figure:
    """``reference_solutions_figure`` on ``config.games`` (quick mode changes nothing)."""
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
                # A slowly damped spiral (online DPO on a cyclic game) goes underneath, thinner.
                under = name in config.background
                line = plot_trajectory(
                    ax,
                    path,
                    color=color,
                    linestyle=style,
                    linewidth=1.0 if under else 1.6,
                    alpha=0.7 if under else 1.0,
                    zorder=2 if under else 3,
                )
                line.set_gid(f"{name}:{game.name}")
                plot_policy(ax, path[-1], color=color, markersize=4, zorder=4)
            for target, points in targets.items():
                mark_target(ax, target, points[c], f"{target}:{game.name}")
            if "ipo_md" in group:
                mark_target(
                    ax,
                    "IPO-MD fixed point",
                    runs["ipo_md"].target("ipo_md_fixed_point")[c],
                    f"IPO-MD fixed point:{game.name}",
                )
            mark_target(ax, "reference mu", mu[c], f"reference mu:{game.name}")
            if r == 0:
                ax.set_title(game.title, fontsize=11)
        handles = [
            Line2D(
                [],
                [],
                color=ALGORITHM_STYLE.get(n, ("black", "-"))[0],
                linewidth=1.6,
                linestyle=ALGORITHM_STYLE.get(n, ("black", "-"))[1],
                label=algorithm_label(n),
            )
            for n in group
        ]
        axes[r, -1].legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            fontsize=9,
            title="algorithm",
            title_fontsize=9,
            frameon=False,
        )
    marks = [
        *targets,
        *(["IPO-MD fixed point"] if any("ipo_md" in g for g in config.algorithm_groups) else []),
        "reference mu",
    ]
    fig.legend(
        handles=target_handles(marks),
        loc="outside lower center",
        ncols=len(marks),
        fontsize=9,
        frameon=False,
    )
    extras = ", ".join(f"{n} {k} = {v:g}" for n, kv in config.hyper for k, v in kv)
    fig.suptitle(
        rf"Exact dynamics from $\pi_0=\mu$, {steps} steps, $\tau$ = {tau:g} for every algorithm "
        r"($\beta=\tau$ for DPO-family losses)" + (" [quick]" if quick else "") + "\n"
        f"defaults otherwise (IPO-MD mixture 0.125, Nash-MD decaying step){'; ' + extras if extras else ''}",
        fontsize=11,
    )
    return fig


# ------------------------------------------------------------------------ Nash-MD convergence


def nash_md_convergence_figure(
    config: NashMDConvergenceConfig = NASH_MD_CONVERGENCE, quick: bool = False
) -> Figure:
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
    constant = nash_md(P, mu, tau=row_tau, steps=steps, eta=row_eta).kl_to(
        stars[[i for i, _ in pairs]]
    )
    idx = log_indices(steps)[1:]  # T >= 1 on a log axis
    T = np.asarray(idx, dtype=float)
    colors = ["tab:orange", "tab:purple", "tab:cyan", "tab:olive"]
    fig = Figure(figsize=(5.4 * len(taus), 4.8), layout="constrained")
    axes = fig.subplots(1, len(taus), squeeze=False)[0]
    for i, (ax, tau) in enumerate(zip(axes, config.taus)):
        ax.plot(
            T,
            8.0 / (tau**2 * (T + 1.0)),
            color="0.45",
            linestyle=(0, (1, 1.5)),
            linewidth=1.6,
            label=r"bound $8/(\tau^2(T+1))$ (Munos et al., Thm. 1)",
            gid=f"bound:{tau:g}",
        )
        ax.plot(
            T,
            schedule[i, idx].numpy(),
            color=COLORS["regularized Nash"],
            linewidth=2.0,
            label=r"decaying step $\eta_t = 2/(\tau(t+2))$",
            gid=f"schedule:{tau:g}",
        )
        for j, (row, (_, m)) in enumerate((r, p) for r, p in enumerate(pairs) if p[0] == i):
            color = colors[j % len(colors)]
            ax.plot(
                T,
                constant[row, idx].numpy(),
                color=color,
                linewidth=1.5,
                label=rf"constant step $\eta\tau$ = {m:g}",
                gid=f"constant:{tau:g}:{m:g}",
            )
            plateau = kl(stars[i], ipo_md_fixed_point(P, mu, tau, m))
            ax.axhline(
                plateau,
                color=color,
                linestyle="--",
                linewidth=1.0,
                gid=f"plateau:{tau:g}:{m:g}",
                label=rf"its limit: KL($\pi^*_\tau$ || IPO-MD fixed point, mixture {m:g})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1, steps)
        ax.grid(True, which="major", color="0.9")
        ax.set_xlabel("Nash-MD step T")
        ax.set_ylabel(r"$KL(\pi^*_\tau \,\|\, \pi_T)$ (nats)")
        etas = ", ".join(f"{m / tau:g}" for m in config.constant_eta_tau)
        ax.set_title(rf"$\tau$ = {tau:g} (constant steps $\eta$ = {etas})", fontsize=11)
    fig.legend(
        handles=axes[0].get_legend_handles_labels()[0],
        loc="outside lower center",
        ncols=3,
        fontsize=9,
        frameon=False,
    )
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


def figure_configs(config: Any, quick: bool = False) -> list[str]:
    """What a figure's file metadata records as its configs (``save_figure(configs=...)``).

    ``reference_solutions`` records its games (as ``demo.run_demo`` always has); every other figure
    records ``experiments.<name>`` (with ``[quick]`` in smoke mode) and the named games it uses.
    """
    games = list(
        getattr(config, "games", None) or ([config.game] if hasattr(config, "game") else [])
    )
    if isinstance(config, ReferenceSolutionsConfig):
        return games
    return [f"experiments.{config.name}" + (" [quick]" if quick else ""), *games]


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
    check_out_folder(out_dir, "out_dir")
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
        written = save_figure(fig, Path(out_dir) / name, configs=figure_configs(config, quick))
        for path in written:
            print(f"wrote {path}", file=out)
        print(f"  {name}: {time.perf_counter() - start:.1f} s", file=out)
        paths += written
    return paths
