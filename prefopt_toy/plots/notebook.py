r"""Figures and tables the teaching notebooks share (00 tour, 05 online IPO, 07 algorithm zoo).

Every number comes from the library: trajectories from ``dynamics`` (``redraw`` or
``ALGORITHMS``), targets from ``Trajectory.target`` (the solvers). These functions only run,
arrange and draw, without pyplot global state (figures are ``matplotlib.figure.Figure`` objects).
Artists that tests read carry a ``gid``: ``"<algorithm>"`` for a path, ``"target:<name>"`` for a
target marker, and ``"<algorithm>/fixed_point"`` in the zoo's panels.

References
----------
Algorithms and fixed points as in ``dynamics.ALGORITHMS``: Rafailov et al., arXiv:2305.18290v3;
Azar et al., arXiv:2310.12036v2; Munos et al., arXiv:2312.00886v4; Calandriello et al.,
arXiv:2403.08635v1; Tang et al., arXiv:2402.05749v2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from prefopt_toy._validate import as_int
from prefopt_toy.dynamics import ALGORITHMS, FAMILY, FIXED_POINTS, Trajectory

from .draw import _xy, draw_simplex, plot_policy, plot_trajectory
from .experiments import TRAJECTORIES
from .style import ALGORITHM_STYLE, algorithm_label, log_indices, mark_target, target_handles

__all__ = [
    "TARGET_LABELS",
    "coincident_ends",
    "crowded_region",
    "draw_trajectories",
    "regularized_exploitability",
    "solution_table",
    "table_view",
    "zoo_figure",
    "zoo_runs",
    "zoo_table",
]

TARGET_LABELS: dict[str, str] = {
    "rlhf_optimum": "RLHF/DPO optimum",
    "ipo_optimum": "IPO optimum",
    "regularized_nash": "regularized Nash",
    "ipo_md_fixed_point": "IPO-MD fixed point",
}
"""``Trajectory.target`` name -> the marker style name of ``style.TARGET_STYLE``."""


def _style(name: str) -> tuple[str, Any]:
    return ALGORITHM_STYLE.get(name, ("black", "-"))


def _single_link(points: np.ndarray, link: float) -> list[list[int]]:
    """Groups of row indices of ``points`` (N, 2) joined by chains of steps shorter than ``link``."""
    groups: list[list[int]] = []
    unseen = list(range(len(points)))
    while unseen:
        group = [unseen.pop(0)]
        for i in group:
            near = [j for j in unseen if np.hypot(*(points[i] - points[j])) < link]
            for j in near:
                unseen.remove(j)
            group += near
        groups.append(group)
    return groups


def crowded_region(points: Any, *, link: float = 0.04, min_span: float = 0.02) -> Any:
    r"""Limits ``(x0, x1, y0, y1)`` of an inset around the most crowded group of simplex points.

    Points (cartesian coordinates of the simplex of ``draw.draw_simplex``, side 1) closer than
    ``link`` to each other, directly or through a chain, form a group: at the size a notebook shows
    a triangle (about 4 inches wide) their markers overlap. The largest group of two or more
    points is fitted with 30% padding (and at least ``min_span`` wide and high); None when no two
    points are that close.

    Parameters
    ----------
    points : array (N, 2)
        Cartesian coordinates.
    link : float > 0
        Distance under which two markers count as crowded.
    min_span : float > 0
        Smallest width and height of the limits.

    Returns
    -------
    tuple of four float, or None
    """
    xy = np.asarray(points, dtype=float).reshape(-1, 2)
    groups = [g for g in _single_link(xy, link) if len(g) >= 2]
    if not groups:
        return None
    group = xy[max(groups, key=len)]
    lo, hi = group.min(axis=0), group.max(axis=0)
    centre, half = (lo + hi) / 2, np.maximum(0.65 * (hi - lo), min_span / 2)
    half[:] = half.max()  # square limits: the inset keeps the triangle's angles
    return (
        float(centre[0] - half[0]),
        float(centre[0] + half[0]),
        float(centre[1] - half[1]),
        float(centre[1] + half[1]),
    )


def _mark_ends(
    ax: Axes, ends: Mapping[str, Any], colors: Mapping[str, str], tol: float
) -> dict[str, Line2D]:
    """A marker at every end point: a dot, then a ring per further run that ends on the same spot.

    Ends closer than ``tol`` (cartesian) share a spot; the first run there gets a white-edged dot,
    the k-th one after it a ring wider than any target marker (k steps wider), so each one stays
    visible (concentric rings in the runs' colours). gid ``"<name>:end"``.
    """
    names = list(ends)
    xy = np.array([_xy(ends[n]) for n in names]).reshape(-1, 2)
    out = {}
    for group in _single_link(xy, tol):
        for k, i in enumerate(group):
            name = names[i]
            line = plot_policy(
                ax,
                ends[name],
                marker="o",
                markersize=5.0 if k == 0 else 15.0 + 4.0 * k,  # rings clear a 15-pt target
                color=colors[name],
                markerfacecolor=colors[name] if k == 0 else "none",
                markeredgecolor="white" if k == 0 else colors[name],
                markeredgewidth=1.0 if k == 0 else 1.6,
                zorder=7 + 0.01 * (len(group) - k),
            )
            line.set_gid(f"{name}:end")
            out[name] = line
    return out


def coincident_ends(runs: Mapping[str, Trajectory], tol: float = 2e-3) -> list[list[str]]:
    """Groups (two or more) of runs whose last iterates coincide: cartesian distance below ``tol``."""
    names = list(runs)
    xy = np.array([_xy(runs[n].final) for n in names]).reshape(-1, 2)
    return [[names[i] for i in g] for g in _single_link(xy, tol) if len(g) >= 2]


def _target_label(name: str, source: Trajectory) -> str:
    """Legend label of a target: the RLHF/DPO optimum says which pairs its BT reward is fitted on."""
    label = TARGET_LABELS[name]
    if name == "rlhf_optimum":
        nu = source.hyper.get("nu")
        same = nu is None or bool(
            torch.allclose(torch.as_tensor(nu, dtype=source.mu.dtype), source.mu)
        )
        label += " (pairs ~ mu)" if same else " (pairs ~ nu)"
    return label


def draw_trajectories(
    ax: Axes,
    runs: Mapping[str, Trajectory],
    *,
    targets: Sequence[str] = ("rlhf_optimum", "ipo_optimum", "regularized_nash"),
    labels: Sequence[str] = ("y0", "y1", "y2"),
    points: int = 400,
    legend: bool = True,
    inset: bool = True,
    inset_bounds: Sequence[float] = (0.0, 0.56, 0.36, 0.44),
    notes: bool = True,
    fontsize: float = 9.0,
) -> dict[str, Any]:
    r"""Draw several exact trajectories on one simplex, with the targets they aim at.

    Where end points and targets crowd (markers closer than about one marker width at notebook
    size, ``crowded_region``), an inset zooms in on them with limits fitted to the data, and the
    zoomed region is outlined on the triangle. Every run's last iterate gets a marker; runs that end
    on the same spot get concentric rings, and a note under the triangle names them (they coincide
    on purpose: the theory gives them the same fixed point).

    Parameters
    ----------
    ax : matplotlib Axes
    runs : mapping name -> Trajectory
        Unbatched three-action runs on the same game and reference, e.g. the dict of
        ``dynamics.redraw``. Each is drawn in its ``style.ALGORITHM_STYLE`` colour, with a
        marker at its last iterate.
    targets : sequence of str
        ``Trajectory.target`` names to mark (keys of ``TARGET_LABELS``), computed by the solvers for
        the first run's game (from the run that converges to it when there is one: its strength,
        its mixture, its pairs; the RLHF/DPO optimum is fitted on pairs from that run's ``nu``,
        ``mu`` when it has none); ``mu`` is always marked.
    labels : three str
        Corner labels.
    points : int >= 2
        Iterates drawn per path (log-spaced in the step index).
    legend : bool
        Add a legend outside the triangle, to its right.
    inset : bool
        Zoom in on the most crowded group of end points and targets, when there is one.
    inset_bounds : four float
        Where the inset goes, in axes coordinates ``(x0, y0, width, height)`` (default: the empty
        upper left corner, beside the triangle's left edge).
    notes : bool
        Write which runs end on the same spot under the triangle.
    fontsize : float
        Font size of the legend and the notes (points).

    Returns
    -------
    dict
        ``{name: Line2D}`` for every path (gid = name), ``{"<name>:end": Line2D}`` for the end
        markers, ``{"target:<name>": Line2D}`` for the target markers, ``"inset"`` (the inset
        Axes, its artists carry the same gids) when one is drawn, and ``"notes"`` (a Text) when
        two runs end on the same spot.

    Raises
    ------
    ValueError
        ``runs`` empty, batched, not on three actions, or an unknown target.

    References
    ----------
    Targets: Azar et al., arXiv:2310.12036v2 (IPO optimum, App. B Prop. 4 for DPO); Munos et al.,
    arXiv:2312.00886v4 (regularised Nash); Calandriello et al., arXiv:2403.08635v1 (IPO-MD).
    """
    if not runs:
        raise ValueError("runs must hold at least one Trajectory")
    points = as_int(points, "points", minimum=2)
    unknown = [t for t in targets if t not in TARGET_LABELS]
    if unknown:
        raise ValueError(f"targets must be among {sorted(TARGET_LABELS)}, got unknown {unknown}")
    for name, run in runs.items():
        if run.batched or run.log_policies.shape[-1] != 3:
            raise ValueError(f"runs[{name!r}] must be an unbatched run on 3 actions")
    first = next(iter(runs.values()))
    paths = {name: run.policies[log_indices(run.steps, points)] for name, run in runs.items()}
    ends = {name: run.final for name, run in runs.items()}
    colors = {name: _style(name)[0] for name in runs}
    solved: dict[str, tuple[Any, str]] = {}
    for target in targets:
        # The run that converges to this target supplies its hyperparameters (mixture for IPO-MD,
        # pairs for the RLHF/DPO optimum); DPO-family runs record their strength as beta.
        source = next((r for n, r in runs.items() if FIXED_POINTS.get(n) == target), first)
        override: dict[str, Any] = (
            {} if "tau" in source.hyper else {"tau": source.hyper.get("beta")}
        )
        if target == "rlhf_optimum" and source.hyper.get("nu") is None:
            override["nu"] = source.mu  # pairs from mu, whatever rlhf_optimum's default
        solved[target] = (source.target(target, **override), _target_label(target, source))

    def layer(where: Axes, tol: float) -> dict[str, Any]:
        drawn: dict[str, Any] = {}
        for name, path in paths.items():
            color, style = _style(name)
            line = plot_trajectory(
                where,
                path,
                color=color,
                linestyle=style,
                linewidth=1.6,
                zorder=3,
                label=algorithm_label(name),
            )
            line.set_gid(name)
            drawn[name] = line
        for target, (pi, _) in solved.items():
            drawn[f"target:{target}"] = mark_target(
                where, TARGET_LABELS[target], pi, f"target:{target}"
            )
        drawn["target:mu"] = mark_target(where, "reference mu", first.mu, "target:mu")
        for name, line in _mark_ends(where, ends, colors, tol).items():
            drawn[f"{name}:end"] = line
        return drawn

    draw_simplex(ax, labels, gridlines=4)
    artists = layer(ax, 0.012)
    if inset:
        crowd = [_xy(pi) for pi in ends.values()] + [_xy(pi) for pi, _ in solved.values()]
        limits = crowded_region(np.array(crowd))
        if limits is not None:
            zoom = ax.inset_axes(list(inset_bounds))
            inner = layer(zoom, 0.012 * (limits[1] - limits[0]))
            zoom.set_xlim(limits[0], limits[1])
            zoom.set_ylim(limits[2], limits[3])
            zoom.set_aspect("equal", adjustable="box")
            zoom.set_xticks([])
            zoom.set_yticks([])
            zoom.text(
                0.04,
                0.96,
                f"zoom x{(1.24 / (limits[1] - limits[0])):.0f}",
                transform=zoom.transAxes,
                ha="left",
                va="top",
                fontsize=fontsize,
                color="0.25",
            )
            for line in inner.values():
                line.set_clip_on(True)
            ax.indicate_inset_zoom(zoom, edgecolor="0.4")
            artists["inset"] = zoom
    if notes:
        groups = coincident_ends(runs)
        if groups:
            lines = []
            for group in groups:
                where = next(
                    (
                        label
                        for pi, label in solved.values()
                        if np.hypot(*(_xy(pi) - _xy(ends[group[0]]))) < 2e-3
                    ),
                    None,
                )
                lines.append(" = ".join(group) + (f" (all on the {where})" if where else ""))
            artists["notes"] = ax.text(
                0.5,
                -0.01,
                "Same end point (one ring per run):\n" + "\n".join(lines),
                transform=ax.transAxes,
                ha="center",
                va="top",
                fontsize=fontsize,
                color="0.25",
            )
    if legend:
        handles = [
            *(artists[n] for n in runs),
            *target_handles(
                [*(TARGET_LABELS[t] for t in solved), "reference mu"],
                labels=[*(label for _, label in solved.values()), "reference mu"],
            ),
        ]
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            fontsize=fontsize,
            frameon=False,
        )
    return artists


def zoo_runs(
    P: Any,
    mu: Any,
    *,
    tau: float = 0.1,
    steps: int = 2000,
    mixture: float = 0.125,
    names: Sequence[str] | None = None,
) -> dict[str, Trajectory]:
    r"""Every core algorithm (``ALGORITHMS`` but the ``FAMILY``, by default) on one game from :math:`\pi_0 = \mu`.

    Each runs as ``ALGORITHMS[name](P, mu, steps=steps, tau=tau, **extra)`` with the extra settings
    of the ``trajectories`` experiment (``lr = 1`` for the hinge losses) and ``mixture`` for
    ``ipo_md``; everything else is the algorithm's default.

    Returns
    -------
    dict name -> Trajectory, in registry order.

    Raises
    ------
    ValueError
        Unknown names, or bad inputs of an algorithm.

    References
    ----------
    As ``dynamics.ALGORITHMS`` (DPO arXiv:2305.18290v3, IPO arXiv:2310.12036v2, Nash-MD
    arXiv:2312.00886v4, online IPO / IPO-MD arXiv:2403.08635v1, GPO arXiv:2402.05749v2).
    """
    names = [n for n in ALGORITHMS if n not in FAMILY] if names is None else list(names)
    unknown = [n for n in names if n not in ALGORITHMS]
    if unknown:
        raise ValueError(f"names must be keys of ALGORITHMS, got unknown {unknown}")
    runs = {}
    for name in names:
        extra = TRAJECTORIES.hyper_for(name)
        if name == "ipo_md":
            extra["mixture"] = mixture
        runs[name] = ALGORITHMS[name](P, mu, steps=steps, tau=tau, **extra)
    return runs


def regularized_exploitability(P: Any, mu: Any, pi: Any, tau: float) -> float:
    r"""Exploitability of ``pi`` in the KL-regularised preference game of strength ``tau``.

    In the regularised game (Munos et al., Sec. 4) a policy :math:`\pi'` scores
    :math:`P(\pi' \succ \pi) - \tau KL(\pi'\|\mu) + \tau KL(\pi\|\mu)` against :math:`\pi`; the
    best response is the Gibbs policy :math:`\mu e^{P\pi/\tau}/Z`, so

    .. math:: e_\tau(\pi) = \tau\log\textstyle\sum_y \mu(y)e^{(P\pi)_y/\tau}
              + \tau KL(\pi\|\mu) - \tfrac12 \;\ge 0,

    zero exactly at the regularised Nash equilibrium (which is the Nash equilibrium of this game,
    not of the raw game: its raw exploitability ``pt.exploitability`` need not be small).

    Parameters
    ----------
    P : array-like (K, K)
    mu, pi : array-like (K,)
        Reference policy (full support) and the policy scored.
    tau : float > 0

    Returns
    -------
    float

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 4 (the regularised preference model and its Nash
    equilibrium).
    """
    from prefopt_toy.policies import kl

    P_t = torch.as_tensor(P, dtype=torch.float64)
    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    pi_t = torch.as_tensor(pi, dtype=torch.float64)
    tau = float(tau)
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    best = tau * float(torch.logsumexp(mu_t.log() + (P_t @ pi_t) / tau, dim=0))
    return best + tau * kl(pi_t, mu_t) - 0.5


def solution_table(P: Any, mu: Any, tau: float, *, actions: Sequence[str] | None = None) -> Any:
    r"""The answers to "what is the best policy?" on one game, with both exploitabilities.

    Rows: ``mu``, the RLHF/DPO optimum with the BT reward fitted on pairs from ``mu`` (the target
    of DPO's dynamics, ``beta = tau``), the regularised Nash equilibrium at ``tau`` and the Nash
    equilibrium. Columns: the probabilities, the exploitability in the game itself
    (``pt.exploitability``, zero only at the Nash equilibrium) and in the KL-regularised game
    (column ``"exploitability, KL game"``, ``regularized_exploitability``: zero only at the
    regularised Nash).

    Returns
    -------
    pandas.DataFrame indexed by solution name.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3 (RLHF optimum); Munos et al., arXiv:2312.00886v4, Sec. 4
    (regularised Nash).
    """
    import pandas as pd

    from prefopt_toy.solutions.nash import exploitability, nash_equilibrium
    from prefopt_toy.solutions.optima import rlhf_optimum
    from prefopt_toy.solutions.regularized import regularized_nash

    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    rows = {
        "reference mu": mu_t,
        "RLHF/DPO optimum (pairs ~ mu)": rlhf_optimum(P, mu_t, tau, nu=mu_t),
        "regularized Nash": regularized_nash(P, mu_t, tau),
        "Nash equilibrium": nash_equilibrium(P),
    }
    names = list(actions) if actions is not None else [f"y{i}" for i in range(len(mu_t))]
    table = pd.DataFrame({k: v.numpy() for k, v in rows.items()}, index=names).T
    table["exploitability"] = [exploitability(P, pi) for pi in rows.values()]
    table["exploitability, KL game"] = [
        regularized_exploitability(P, mu_t, pi, tau) for pi in rows.values()
    ]
    return table


def zoo_table(runs: Mapping[str, Trajectory]) -> Any:
    r"""Where each run ends and how far that is from its own theoretical fixed point.

    Columns: ``pi(y0)``, ... (the last iterate), ``fixed point`` (the ``FIXED_POINTS`` name, with
    "(pairs ~ mu)" for an RLHF/DPO optimum fitted on pairs from ``mu``, or "none (a set)" / "none
    registered"), ``TV to fixed point`` (total variation at the last step,
    NaN without a fixed point) and ``last step moved`` (TV between the last two iterates: near 0
    when the run has settled, whatever its limit).

    Returns
    -------
    pandas.DataFrame indexed by algorithm name.

    Raises
    ------
    ValueError
        If ``runs`` is empty or holds a batched run.

    References
    ----------
    Fixed points: Azar et al., arXiv:2310.12036v2 (Eq. (9), App. B Prop. 4); Munos et al.,
    arXiv:2312.00886v4 (Theorem 1); Calandriello et al., arXiv:2403.08635v1 (Prop. 4.1, 5.2).
    """
    import pandas as pd

    if not runs:
        raise ValueError("runs must hold at least one Trajectory")
    rows = []
    for name, run in runs.items():
        if run.batched:
            raise ValueError(f"runs[{name!r}] must be unbatched")
        row: dict[str, Any] = {"algorithm": name}
        for y, p in enumerate(run.final.tolist()):
            row[f"pi(y{y})"] = p
        fp = FIXED_POINTS.get(name)
        if fp is None:
            row["fixed point"] = (
                "none (a set)" if name in ("slic", "gpo_hinge") else "none registered"
            )
            row["TV to fixed point"] = math.nan
        else:
            # The RLHF/DPO optimum says which pairs its BT reward is fitted on (the run's own).
            row["fixed point"] = fp + _target_label(fp, run)[len(TARGET_LABELS[fp]) :]
            row["TV to fixed point"] = float(run.distance_to(fp)[-1])
        last = run.policies[-2:] if run.steps >= 1 else run.policies[-1:].expand(2, -1)
        row["last step moved"] = 0.5 * float((last[1] - last[0]).abs().sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("algorithm")


def table_view(table: Any, number_format: str = "{:.2e}") -> Any:
    """A table as a notebook shows it: one number format, and "—" where a value does not exist.

    The data keep ``NaN`` (``zoo_table``'s "TV to fixed point" of a run with no registered fixed
    point); the view prints a dash there instead of a ``NaN`` a reader would take for a failure.

    Parameters
    ----------
    table : pandas.DataFrame
        Any table (e.g. :func:`zoo_table`, :func:`solution_table`).
    number_format : str
        Format of every numeric column (one format per table).

    Returns
    -------
    pandas.io.formats.style.Styler

    References
    ----------
    As :func:`zoo_table`.
    """
    numeric = table.select_dtypes("number").columns
    return table.style.format(number_format, subset=numeric, na_rep="—")


def zoo_figure(
    runs: Mapping[str, Trajectory],
    *,
    labels: Sequence[str] = ("y0", "y1", "y2"),
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    r"""Small multiples: one simplex per algorithm, its trajectory and its own fixed point.

    Each panel draws the run's path (log-spaced iterates), its last iterate, ``mu`` and, where
    ``FIXED_POINTS`` names one, that fixed point computed by the solver (gid
    ``"<algorithm>/fixed_point"``); the panel title gives the TV distance to it.

    Raises
    ------
    ValueError
        ``runs`` empty, batched or not on three actions; ``ncols < 1``.

    References
    ----------
    As ``zoo_table``.
    """
    if not runs:
        raise ValueError("runs must hold at least one Trajectory")
    ncols = as_int(ncols, "ncols", minimum=1)
    n = len(runs)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(2.6 * ncols, 2.7 * nrows + 1.0), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, run) in zip(axes, runs.items()):
        if run.batched or run.log_policies.shape[-1] != 3:
            raise ValueError(f"runs[{name!r}] must be an unbatched run on 3 actions")
        draw_simplex(ax, labels, gridlines=4, fontsize=9)
        color, style = _style(name)
        path = run.policies[log_indices(run.steps)]
        plot_trajectory(ax, path, color=color, linestyle=style, linewidth=1.6, zorder=3).set_gid(
            name
        )
        mark_target(ax, "reference mu", run.mu, f"{name}/mu")
        fp = FIXED_POINTS.get(name)
        if fp is None:
            ax.set_title(f"{algorithm_label(name)}\n(no registered target)", fontsize=9)
        else:
            mark_target(ax, TARGET_LABELS[fp], run.target(fp), f"{name}/fixed_point")
            tv = float(run.distance_to(fp)[-1])
            ax.set_title(
                f"{algorithm_label(name)}\nTV to {TARGET_LABELS[fp]}: {tv:.1e}", fontsize=9
            )
        # The last iterate on top of any target, white-edged so it shows on a marker of its colour.
        plot_policy(
            ax,
            path[-1],
            color=color,
            markersize=6,
            markeredgecolor="white",
            markeredgewidth=1.0,
            zorder=7,
        ).set_gid(f"{name}:end")
    for ax in axes[n:]:
        ax.set_axis_off()
    rlhf_source = next((r for n, r in runs.items() if FIXED_POINTS.get(n) == "rlhf_optimum"), None)
    rlhf_label = (
        TARGET_LABELS["rlhf_optimum"]
        if rlhf_source is None
        else _target_label("rlhf_optimum", rlhf_source)
    )
    fig.legend(
        handles=target_handles(
            [*TARGET_LABELS.values(), "reference mu"],
            labels=[rlhf_label, *list(TARGET_LABELS.values())[1:], "reference mu"],
        ),
        loc="outside lower center",
        ncols=3,
        fontsize=9,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
