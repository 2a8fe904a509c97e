"""Curves from GPT-2 run logs: metrics against the step, and class distributions against predictions.

``run_log_curves`` draws chosen metrics of several runs (one panel per metric, one line per run),
read from their ``run.jsonl`` with ``runlog.run_log_frame``; ``class_curves`` draws, for several
bridge runs, each class's logged probability against the step with the exact prediction as a dashed
line. Both return a ``matplotlib.figure.Figure`` built without pyplot; every line carries a ``gid``
(``"<run>:<metric>"``, ``"<run>:<class>"``, ``"<run>:<class>:prediction"``) so tests can read back
exactly what was drawn. The notebooks of ``notebooks/gpt2`` call them.

References: as :mod:`prefopt_toy.lm.runlog` (JSON Lines, pandas) and :mod:`prefopt_toy.lm.bridge`
(the predictions drawn).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["class_curves", "run_log_curves"]


def run_log_curves(logs: Mapping[str, str | os.PathLike[str]], keys: Sequence[str], *,
                   titles: Sequence[str] | None = None, figsize: tuple[float, float] | None = None):
    """One panel per metric ``key``, one line per run, against the step (missing values skipped).

    Parameters
    ----------
    logs : mapping name -> path of a ``run.jsonl``
    keys : sequence of str
        Logged metrics (e.g. ``"loss"``, ``"rewards/margins"``, ``"win_rate"``, ``"eval/kl"``).
    titles : sequence of str, optional
        Panel titles (default: the keys).
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        No runs or keys, titles of the wrong length, or a key no run logged.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (the metric names).
    """
    from matplotlib.figure import Figure

    from .runlog import run_log_frame

    if not logs:
        raise ValueError("logs must name at least one run log")
    keys = list(keys)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"keys must be a non-empty list of metric names, got {keys!r}")
    titles = keys if titles is None else list(titles)
    if len(titles) != len(keys):
        raise ValueError(f"titles must have one entry per key ({len(keys)}), got {len(titles)}")
    frames = {name: run_log_frame(path) for name, path in logs.items()}
    for key in keys:
        if not any(key in f.columns for f in frames.values()):
            raise ValueError(f"key {key!r} is in no run log (logged: {sorted(set().union(*(f.columns for f in frames.values())))})")
    fig = Figure(figsize=figsize or (4.0 * len(keys), 3.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key, title in zip(axes, keys, titles):
        for name, frame in frames.items():
            if key in frame.columns:
                series = frame[key].dropna()
                ax.plot(series.index, series.to_numpy(dtype=float), marker=".", label=name, gid=f"{name}:{key}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    return fig


def class_curves(results: Mapping[str, Any], *, figsize: tuple[float, float] | None = None):
    """Per bridge run, each class's logged probability against the step, and its prediction (dashed).

    Parameters
    ----------
    results : mapping name -> BridgeResult
        Finished ``run_bridge`` results (their ``steps``, ``measured``, ``prediction``).
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Munos et al., arXiv:2312.00886v4; Calandriello et al., arXiv:2403.08635v1 (the predictions).
    """
    from matplotlib.figure import Figure

    from .bridge import BridgeResult

    if not results or not all(isinstance(r, BridgeResult) for r in results.values()):
        raise ValueError("results must map names to BridgeResult objects (at least one)")
    fig = Figure(figsize=figsize or (4.0 * len(results), 3.2), layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False, sharey=True)[0]
    for ax, (name, result) in zip(axes, results.items()):
        for k, cls in enumerate(result.class_names):
            (line,) = ax.plot(result.steps, result.measured[:, k].numpy(), marker="o", label=cls, gid=f"{name}:{cls}")
            ax.axhline(float(result.prediction[k]), color=line.get_color(), linestyle="--", linewidth=1,
                       gid=f"{name}:{cls}:prediction")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
    axes[0].set_ylabel("class probability")
    axes[0].legend(fontsize=8)
    return fig
