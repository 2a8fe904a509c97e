r"""Drawing policies on the three-action simplex with matplotlib.

Every drawing function takes an ``ax``, draws, and returns its artists; none calls ``plt.show()``
or touches pyplot's global state, so the same code serves notebooks (any backend), widgets (redraw
by updating the returned artists) and the headless figure command. Figures are built as
``matplotlib.figure.Figure`` objects, which need no backend until they are saved.

This is the one place where tensors become numpy arrays for matplotlib. The numbers themselves
come from the library: ``simplex.py`` for coordinates, ``demo.py`` (and through it the solvers) for
the reference solutions.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon
from matplotlib.text import Text

from .demo import IPO, PATH_TAUS, REG_NASH, RLHF, reference_table
from .demo import reference_paths as _reference_paths
from ._paths import check_out_folder
from .named_games import NAMED_GAMES, NamedGame, named_game
from .simplex import TRIANGLE_CORNERS, barycentric_to_cartesian

__all__ = [
    "draw_simplex",
    "plot_policy",
    "plot_trajectory",
    "reference_solutions_figure",
    "save_figure",
]

# One colour per solution concept, shared by every figure so a legend read once applies everywhere.
COLORS = {
    RLHF: "tab:blue",
    IPO: "tab:orange",
    REG_NASH: "tab:green",
    "Nash equilibrium": "tab:red",
    "Condorcet winner": "black",
    "reference mu": "tab:gray",
}


def _xy(pi: Any) -> np.ndarray:
    """Cartesian coordinates of a policy (3,) or a stack of policies (T, 3), as a numpy array."""
    return barycentric_to_cartesian(pi).numpy()


def draw_simplex(
    ax: Axes,
    labels: Sequence[str] = ("y0", "y1", "y2"),
    *,
    gridlines: int = 0,
    fontsize: float = 10.0,
) -> list[Any]:
    """Draw the triangle of policies on three actions, with a label at each corner.

    Parameters
    ----------
    ax : matplotlib Axes
        Where to draw. Its aspect is set to equal and its axis frame hidden.
    labels : three str
        Names of the actions at the corners of ``TRIANGLE_CORNERS`` (y0 bottom left, y1 bottom
        right, y2 top).
    gridlines : int >= 0
        Draw the lines ``pi_k = i / gridlines`` for ``0 < i < gridlines`` (0 for none).
    fontsize : float
        Font size of the corner labels.

    Returns
    -------
    list of Artist
        The triangle patch, the corner labels, then the grid lines.
    """
    if len(labels) != 3:
        raise ValueError(f"labels must name the 3 corners, got {len(labels)} labels")
    corners = TRIANGLE_CORNERS.numpy()
    triangle = Polygon(corners, closed=True, fill=False, edgecolor="0.3", linewidth=1.0, zorder=1)
    artists: list[Any] = [ax.add_patch(triangle)]
    centroid = corners.mean(axis=0)
    for corner, label in zip(corners, labels):
        # Push each label outward from the centroid so it never sits on the plotted points.
        offset = 0.07 * (corner - centroid) / np.linalg.norm(corner - centroid)
        x, y = corner + offset
        text: Text = ax.text(x, y, label, ha="center", va="center", fontsize=fontsize)
        artists.append(text)
    for i in range(1, gridlines):
        level = i / gridlines
        for k in range(3):
            # The segment where pi_k = level joins the two edges that meet at corner k.
            a, b = [j for j in range(3) if j != k]
            ends = np.zeros((2, 3))
            ends[:, k] = level
            ends[0, a] = ends[1, b] = 1.0 - level
            (line,) = ax.plot(*_xy(ends).T, color="0.85", linewidth=0.6, zorder=0)
            artists.append(line)
    ax.set_aspect("equal")
    ax.set_xlim(-0.12, 1.12)
    ax.set_ylim(-0.1, float(corners[2, 1]) + 0.1)
    ax.set_axis_off()
    return artists


def plot_policy(ax: Axes, pi: Any, **kwargs: Any) -> Line2D:
    """Mark one policy (shape (3,)) on a simplex drawn by ``draw_simplex``; returns the marker.

    Keyword arguments go to ``ax.plot`` (default: a circle marker, no line).
    """
    style = {"marker": "o", "linestyle": "none"} | kwargs
    (line,) = ax.plot(*_xy(pi).reshape(1, 2).T, **style)
    return line


def plot_trajectory(ax: Axes, policies: Any, **kwargs: Any) -> Line2D:
    """Draw a sequence of policies (shape (T, 3), e.g. ``Trajectory.policies``) as a path.

    Keyword arguments go to ``ax.plot``. Returns the line, whose data a widget can update with
    ``line.set_data(...)`` after recomputing.
    """
    xy = _xy(policies)
    if xy.ndim != 2:
        raise ValueError(f"policies must have shape (T, 3), got {tuple(np.shape(policies))}")
    (line,) = ax.plot(xy[:, 0], xy[:, 1], **kwargs)
    return line


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
                fontsize=7,
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
        (RLHF, rf"{RLHF} ($\beta = \tau$)"),
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
        The taus along the curves (default ``demo.PATH_TAUS``).

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


def _commit() -> str:
    """The git commit of the source tree, or ``"unknown"`` (installed package, no git)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def save_figure(
    fig: Figure,
    stem: str | Path,
    *,
    configs: Sequence[str] = (),
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
) -> list[Path]:
    """Save ``fig`` as ``stem.<format>`` for each format, byte-for-byte reproducibly.

    Timestamps and the software string are left out of the file metadata, so rerunning a figure
    command at the same commit rewrites identical files; the metadata records instead the package
    version, the commit and the named configs the figure was built from.

    Returns the paths written (parent folders are created).
    """
    stem = Path(stem)
    check_out_folder(stem.parent, "the figure's folder").mkdir(parents=True, exist_ok=True)
    from prefopt_toy import __version__

    source = f"prefopt_toy {__version__}, commit {_commit()}"
    subject = "configs: " + (", ".join(configs) if configs else "none")
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        if fmt == "png":
            metadata: dict[str, Any] = {
                "Software": None,
                "Title": stem.name,
                "Source": source,
                "Description": subject,
            }
        elif fmt == "pdf":
            metadata = {
                "CreationDate": None,
                "ModDate": None,
                "Title": stem.name,
                "Creator": source,
                "Subject": subject,
            }
        else:
            raise ValueError(f"formats may contain 'png' and 'pdf', got {fmt!r}")
        fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata)
        paths.append(path)
    return paths
