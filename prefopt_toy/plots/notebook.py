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

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from prefopt_toy._validate import as_int
from prefopt_toy.dynamics import ALGORITHMS, FIXED_POINTS, Trajectory

from .draw import draw_simplex, plot_policy, plot_trajectory
from .experiments import TRAJECTORIES
from .style import ALGORITHM_STYLE, algorithm_label, log_indices, mark_target, target_handles

__all__ = ["TARGET_LABELS", "draw_trajectories", "zoo_figure", "zoo_runs", "zoo_table"]

TARGET_LABELS: dict[str, str] = {
    "rlhf_optimum": "RLHF/DPO optimum",
    "ipo_optimum": "IPO optimum",
    "regularized_nash": "regularized Nash",
    "ipo_md_fixed_point": "IPO-MD fixed point",
}
"""``Trajectory.target`` name -> the marker style name of ``style.TARGET_STYLE``."""


def _style(name: str) -> tuple[str, Any]:
    return ALGORITHM_STYLE.get(name, ("black", "-"))


def draw_trajectories(
    ax: Axes,
    runs: Mapping[str, Trajectory],
    *,
    targets: Sequence[str] = ("rlhf_optimum", "ipo_optimum", "regularized_nash"),
    labels: Sequence[str] = ("y0", "y1", "y2"),
    points: int = 400,
    legend: bool = True,
) -> dict[str, Line2D]:
    r"""Draw several exact trajectories on one simplex, with the targets they aim at.

    Parameters
    ----------
    ax : matplotlib Axes
    runs : mapping name -> Trajectory
        Unbatched three-action runs on the same game and reference, e.g. the dict of
        ``dynamics.redraw``. Each is drawn in its ``style.ALGORITHM_STYLE`` colour, with a
        dot at its last iterate.
    targets : sequence of str
        ``Trajectory.target`` names to mark (keys of ``TARGET_LABELS``), computed by the solvers for
        the first run's game (``ipo_md_fixed_point`` from the ``ipo_md`` run when there is one);
        ``mu`` is always marked.
    labels : three str
        Corner labels.
    points : int >= 2
        Iterates drawn per path (log-spaced in the step index).
    legend : bool
        Add a legend outside the triangle, to its right.

    Returns
    -------
    dict
        ``{name: Line2D}`` for every path (gid = name) and ``{"target:<name>": Line2D}`` for the
        markers.

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
    draw_simplex(ax, labels, gridlines=4)
    artists: dict[str, Line2D] = {}
    for name, run in runs.items():
        color, style = _style(name)
        path = run.policies[log_indices(run.steps, points)]
        line = plot_trajectory(
            ax,
            path,
            color=color,
            linestyle=style,
            linewidth=1.6,
            zorder=3,
            label=algorithm_label(name),
        )
        line.set_gid(name)
        artists[name] = line
        plot_policy(ax, path[-1], color=color, markersize=4, zorder=4)
    first = next(iter(runs.values()))
    for target in targets:
        # The run that converges to this target supplies its hyperparameters (mixture for IPO-MD);
        # DPO-family runs record their strength as beta.
        source = next((r for n, r in runs.items() if FIXED_POINTS.get(n) == target), first)
        override = {} if "tau" in source.hyper else {"tau": source.hyper.get("beta")}
        artists[f"target:{target}"] = mark_target(
            ax, TARGET_LABELS[target], source.target(target, **override), f"target:{target}"
        )
    artists["target:mu"] = mark_target(ax, "reference mu", first.mu, "target:mu")
    if legend:
        handles = [
            *(artists[n] for n in runs),
            *target_handles([*(TARGET_LABELS[t] for t in targets), "reference mu"]),
        ]
        ax.legend(
            handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False
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
    r"""Every registered algorithm (``ALGORITHMS``) on one game from :math:`\pi_0 = \mu`.

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
    names = list(ALGORITHMS) if names is None else list(names)
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


def zoo_table(runs: Mapping[str, Trajectory]) -> Any:
    r"""Where each run ends and how far that is from its own theoretical fixed point.

    Columns: ``pi(y0)``, ... (the last iterate), ``fixed point`` (the ``FIXED_POINTS`` name, or
    "none (a set)" / "none registered"), ``TV to fixed point`` (total variation at the last step,
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
            row["fixed point"] = fp
            row["TV to fixed point"] = float(run.distance_to(fp)[-1])
        last = run.policies[-2:] if run.steps >= 1 else run.policies[-1:].expand(2, -1)
        row["last step moved"] = 0.5 * float((last[1] - last[0]).abs().sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("algorithm")


def zoo_figure(
    runs: Mapping[str, Trajectory],
    *,
    labels: Sequence[str] = ("y0", "y1", "y2"),
    ncols: int = 5,
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
    fig = Figure(figsize=(3.2 * ncols, 3.1 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, run) in zip(axes, runs.items()):
        if run.batched or run.log_policies.shape[-1] != 3:
            raise ValueError(f"runs[{name!r}] must be an unbatched run on 3 actions")
        draw_simplex(ax, labels, gridlines=4, fontsize=8)
        color, style = _style(name)
        path = run.policies[log_indices(run.steps)]
        plot_trajectory(ax, path, color=color, linestyle=style, linewidth=1.6, zorder=3).set_gid(
            name
        )
        plot_policy(ax, path[-1], color=color, markersize=5, zorder=4)
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
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.legend(
        handles=target_handles([*TARGET_LABELS.values(), "reference mu"]),
        loc="outside lower center",
        ncols=5,
        fontsize=9,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
