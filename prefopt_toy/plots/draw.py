r"""Drawing policies on the three-action simplex with matplotlib.

Every drawing function takes an ``ax``, draws, and returns its artists; none calls ``plt.show()``
or touches pyplot's global state, so the same code serves notebooks (any backend), widgets (redraw
by updating the returned artists) and the headless figure command. Figures are built as
``matplotlib.figure.Figure`` objects, which need no backend until they are saved.

This is the one place where tensors become numpy arrays for matplotlib. The numbers themselves
come from the library: ``simplex.py`` for coordinates, ``solutions/reference.py`` (and through it
the solvers) for the reference solutions.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon
from matplotlib.text import Text

from prefopt_toy._paths import check_out_folder
from prefopt_toy.simplex import TRIANGLE_CORNERS, barycentric_to_cartesian
from prefopt_toy.solutions.reference import IPO, REG_NASH, RLHF

__all__ = ["draw_simplex", "plot_policy", "plot_trajectory", "save_figure"]

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
