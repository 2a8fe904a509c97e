r"""The bridge explorer: the exact toy trajectory and GPT-2's class trajectory, per saved run, on one simplex.

:func:`bridge_explorer` reads a folder of bridge runs (``runs.load_bridge_runs``) and shows
one run at a time, chosen by algorithm, KL strength (tau; beta for DPO) and, where runs differ in
it, the mixture. Everything drawn was computed when the run was saved (``bridge.run_bridge``) or
is read from its run log; the callbacks only look runs up and redraw, with the plotting helpers of
``prefopt_toy.plots.draw``. The handle is the notebooks' ``WidgetHandle``.

**The "other" class.** A lifted game has K = 3 fruit classes plus "other" (completions that name
no fruit), so every distribution has four entries. The simplex shows the three classes with each
distribution **renormalised over them** (``figure._renormalised``: "other" dropped, the
rest divided by its sum), the same convention as ``bridge.bridge_figure``; the "other" mass itself
(reference, prediction, last logged, final with its interval) is printed in ``h.status``.

References
----------
Munos et al., arXiv:2312.00886v4 (regularised preference games on the simplex); Calandriello et
al., arXiv:2403.08635v1 (online IPO, IPO-MD); Wilson, JASA 22 (1927) 209-212 (the intervals).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from prefopt_toy.plots.draw import draw_simplex, plot_policy, plot_trajectory
from prefopt_toy.simplex import barycentric_to_cartesian
from prefopt_toy.widgets.handle import WidgetHandle

from .class_estimate import ClassEstimate
from .figure import _renormalised
from .run import BRIDGE_ALGORITHMS
from .runs import BridgeRun, load_bridge_runs

__all__ = ["MAX_STEP_LABELS", "bridge_explorer", "interval_ends"]

MAX_STEP_LABELS = 8
"""At most this many GPT-2 markers carry their step number (evenly spaced, first and last included)."""

Key = tuple[str, float, float]


def interval_ends(estimate: ClassEstimate, n_classes: int = 3) -> Tensor:
    """The estimate with one class's probability moved to either end of its Wilson interval.

    Row ``k`` holds two distributions: ``estimate.probs`` with entry ``k`` replaced by
    ``estimate.lower[k]``, then by ``estimate.upper[k]``, the other entries unchanged (so the rows
    need not sum to 1; drawn renormalised over the classes, each pair is a segment through the
    estimate towards corner ``k``). Per class, not a joint region: the intervals are per class.

    Parameters
    ----------
    estimate : ClassEstimate
        With K+1 entries, "other" last.
    n_classes : int
        K, the classes given a segment (the first K entries).

    Returns
    -------
    Tensor, shape (n_classes, 2, K+1), float64

    References
    ----------
    Wilson, JASA 22 (1927) 209-212.
    """
    if not isinstance(estimate, ClassEstimate):
        raise ValueError(f"estimate must be a ClassEstimate, got {type(estimate).__name__}")
    if not 1 <= n_classes <= estimate.probs.shape[0]:
        raise ValueError(f"n_classes must lie in [1, {estimate.probs.shape[0]}], got {n_classes!r}")
    ends = estimate.probs.to(torch.float64).repeat(n_classes, 2, 1)  # (K, 2, K+1)
    for k in range(n_classes):
        ends[k, 0, k], ends[k, 1, k] = estimate.lower[k], estimate.upper[k]
    return ends


# --------------------------------------------------------------------------- runs and controls
def _as_runs(runs_or_root: Any) -> dict[Key, BridgeRun]:
    if isinstance(runs_or_root, (str, os.PathLike)):
        runs = load_bridge_runs(runs_or_root)
    elif (
        isinstance(runs_or_root, Sequence)
        and runs_or_root
        and all(isinstance(r, BridgeRun) for r in runs_or_root)
    ):
        runs = list(runs_or_root)
    else:
        raise ValueError(
            "runs_or_root must be a folder of bridge runs or a non-empty list of BridgeRun, "
            f"got {type(runs_or_root).__name__}"
        )
    index: dict[Key, BridgeRun] = {}
    for run in runs:
        if run.prediction.shape[0] != 4:
            raise ValueError(
                f"runs_or_root: the explorer draws K = 3 classes plus other; run {str(run.path)!r} "
                f"has {run.prediction.shape[0]} entries"
            )
        key = (run.algorithm, run.strength, run.mixture)
        if key in index:
            raise ValueError(
                f"runs_or_root holds two runs of {run.algorithm} with {run.strength_name}="
                f"{run.strength:g}, mixture={run.mixture:g}: {str(index[key].path)!r} and "
                f"{str(run.path)!r}"
            )
        index[key] = run
    return index


def _nearest(options: list[float], value: Any) -> float:
    if value in options:
        return value
    target = float(value) if isinstance(value, (int, float)) else options[0]
    return min(options, key=lambda x: abs(np.log(x / target)) if target > 0 else x)


def _sync(controls: dict[str, widgets.Widget], index: dict[Key, BridgeRun]) -> Key:
    """Restrict the tau and mixture options to the runs of the chosen algorithm; return the chosen key."""
    algorithm = controls["algorithm"].value
    strengths = sorted({s for a, s, _ in index if a == algorithm})
    tau = _nearest(strengths, controls["tau"].value)
    controls["tau"].options = [(f"{s:g}", s) for s in strengths]
    controls["tau"].value = tau
    controls["tau"].description = BRIDGE_ALGORITHMS[algorithm][0]
    mixtures = sorted({m for a, s, m in index if a == algorithm and s == tau})
    mixture = (
        mixtures[0] if controls["mixture"].value not in mixtures else controls["mixture"].value
    )
    controls["mixture"].options = [(f"{m:g}", m) for m in mixtures]
    controls["mixture"].value = mixture
    controls["mixture"].disabled = len(mixtures) == 1
    return algorithm, tau, mixture


# --------------------------------------------------------------------------- data and drawing
def _bridge_data(run: BridgeRun) -> dict[str, Any]:
    """Every array the explorer draws for ``run``: the saved ones and their renormalised forms."""
    ends = interval_ends(run.final, 3)  # (3, 2, 4)
    steps = list(run.steps)
    n = len(steps)
    # a logged distribution with no fruit at all (every sample "other") has no point on the simplex
    on = run.measured[:, :3].sum(dim=1) > 0 if n else torch.zeros(0, dtype=torch.bool)
    drawn = [s for s, keep in zip(steps, on.tolist()) if keep]
    spots = np.linspace(0, len(drawn) - 1, min(len(drawn), MAX_STEP_LABELS)).round()
    labelled = sorted({drawn[int(i)] for i in spots})
    raw = {
        "toy": run.toy_trajectory,
        "gpt2": run.measured[on],
        "mu_class": run.mu_class.probs,
        "prediction": run.prediction,
        "final": run.final.probs,
    }
    return {
        "run": run,
        "algorithm": run.algorithm,
        "strength_name": run.strength_name,
        "strength": run.strength,
        "mixture": run.mixture,
        "class_names": run.class_names,
        "steps": steps,
        "labelled_steps": labelled,
        "drawn_steps": drawn,
        "off_simplex_steps": [s for s, keep in zip(steps, on.tolist()) if not keep],
        "toy_trajectory": run.toy_trajectory,
        "measured": run.measured,
        "mu_class": run.mu_class.probs,
        "prediction": run.prediction,
        "final": run.final.probs,
        "final_lower": run.final.lower,
        "final_upper": run.final.upper,
        "interval_ends": ends,
        "tv": run.tv,
        # what is actually handed to the plotting functions: renormalised over the three classes
        "simplex": {
            **{k: _renormalised(v) for k, v in raw.items()},
            **{f"interval:{run.class_names[k]}": _renormalised(ends[k]) for k in range(3)},
        },
    }


def _status(data: dict[str, Any]) -> str:
    run: BridgeRun = data["run"]
    other, f = run.class_names[-1], run.final
    off = (
        f". Not drawn (every sample '{other}'): logged steps {data['off_simplex_steps']}"
        if data["off_simplex_steps"]
        else ""
    )
    off += (
        f"; the final estimate (every sample '{other}')" if not bool(f.probs[:3].sum() > 0) else ""
    )
    last = (
        f"last logged (step {run.steps[-1]}, n = {run.config.get('n_eval', '?')}) "
        f"{float(run.measured[-1, -1]):.3f}, "
        if run.steps
        else ""
    )
    return (
        f"'{other}' mass (left off the simplex, which renormalises over the {len(run.class_names) - 1} classes): "
        f"mu_class {float(run.mu_class.probs[-1]):.3f}, prediction {float(run.prediction[-1]):.3f}, {last}"
        f"final {float(f.probs[-1]):.3f} [{float(f.lower[-1]):.3f}, {float(f.upper[-1]):.3f}] "
        f"({100 * f.level:g}% Wilson, n = {f.n}). TV(final, prediction) = {run.tv:.3f} over all "
        f"{len(run.class_names)} entries. Run: {run.path.name}" + off
    )


def _draw(fig: Figure, data: dict[str, Any]) -> None:
    ax = fig.add_axes((0.01, 0.02, 0.6, 0.88))
    draw_simplex(ax, data["class_names"][:3], gridlines=4)
    s = data["simplex"]
    plot_trajectory(
        ax, s["toy"], color="tab:blue", linewidth=1.6, label="exact toy", gid="toy", zorder=2
    )
    if data["drawn_steps"]:
        plot_trajectory(
            ax,
            s["gpt2"],
            color="tab:orange",
            marker="o",
            markersize=4,
            linewidth=0.8,
            alpha=0.85,
            label="GPT-2 (run log)",
            gid="gpt2",
            zorder=3,
        )
        xy = barycentric_to_cartesian(s["gpt2"]).numpy()
        for i, step in enumerate(data["drawn_steps"]):
            if step in data["labelled_steps"]:
                ax.annotate(
                    str(step),
                    xy[i],
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=7,
                    color="tab:orange",
                    gid=f"step:{step}",
                )
    plot_policy(
        ax,
        s["mu_class"],
        marker="X",
        markersize=9,
        color="tab:gray",
        label="mu_class",
        gid="mu_class",
    )
    plot_policy(
        ax,
        s["prediction"],
        marker="*",
        markersize=15,
        color="tab:green",
        markeredgecolor="white",
        label="prediction",
        gid="prediction",
        zorder=5,
    )
    for k, name in enumerate(data["class_names"][:3]):
        if bool(torch.isfinite(s[f"interval:{name}"]).all()):
            plot_trajectory(
                ax,
                s[f"interval:{name}"],
                color="tab:red",
                linewidth=1.2,
                gid=f"interval:{name}",
                zorder=4,
                **({"label": "final, per-class Wilson"} if k == 0 else {}),
            )
    if bool(torch.isfinite(s["final"]).all()):
        plot_policy(
            ax,
            s["final"],
            marker="s",
            markersize=7,
            color="tab:red",
            label="GPT-2 final",
            gid="final",
            zorder=5,
        )
    mix = f", mixture = {data['mixture']:g}" if BRIDGE_ALGORITHMS[data["algorithm"]][1] else ""
    ax.set_title(
        f"{data['algorithm']} ({data['strength_name']} = {data['strength']:g}{mix})", fontsize=10
    )
    fig.legend(
        *ax.get_legend_handles_labels(),
        loc="center left",
        bbox_to_anchor=(0.62, 0.5),
        fontsize=8,
        frameon=False,
    )


# --------------------------------------------------------------------------- the builder
def bridge_explorer(runs_or_root: Any) -> WidgetHandle:
    r"""One simplex per saved bridge run: exact toy trajectory, prediction, GPT-2 class trajectory, final.

    Controls: ``"algorithm"`` (Dropdown over the algorithms present), ``"tau"`` (SelectionSlider
    over the KL strengths present for that algorithm; it reads "beta" for DPO) and ``"mixture"``
    (Dropdown, disabled when the chosen (algorithm, tau) has one run). Drawn on the simplex of the
    three classes, each distribution renormalised over them (see the module docstring; the "other"
    mass is in ``h.status``): the exact toy trajectory from ``mu_class`` (line, ``gid="toy"``), the
    prediction (star), ``mu_class`` (cross), the GPT-2 class distributions read from the run log
    (markers, ``gid="gpt2"``, step numbers on at most ``MAX_STEP_LABELS`` of them), and the final
    estimate (square) with a segment per class spanning its Wilson interval (``interval_ends``).
    A distribution with no fruit at all (every sample "other", which a collapsed run can log) has
    no point on the simplex: it is left out, and ``h.status`` lists it.

    Parameters
    ----------
    runs_or_root : path or list of BridgeRun
        A folder of runs (``runs.load_bridge_runs``) or runs already loaded.

    Returns
    -------
    WidgetHandle
        ``data``: ``"algorithm"``, ``"strength_name"``, ``"strength"``, ``"mixture"``,
        ``"class_names"``, ``"steps"``, ``"labelled_steps"``, ``"drawn_steps"``,
        ``"off_simplex_steps"`` (logged steps with no fruit), ``"tv"``, ``"run"`` (the BridgeRun);
        the distributions drawn with their K+1 entries, ``"toy_trajectory"`` (T+1, 4),
        ``"measured"`` (len(steps), 4), ``"mu_class"``, ``"prediction"``, ``"final"``,
        ``"final_lower"``, ``"final_upper"`` (4,), ``"interval_ends"`` (3, 2, 4); and
        ``"simplex"``: the same renormalised to (…, 3), exactly what the plotting calls received.

    Raises
    ------
    ValueError
        ``runs_or_root`` is neither a folder of runs nor a list of ``BridgeRun``, a run does not
        have K = 3 classes, two runs share algorithm, strength and mixture; and any error of
        ``load_bridge_runs`` (naming the bad file).

    References
    ----------
    Munos et al., arXiv:2312.00886v4; Calandriello et al., arXiv:2403.08635v1; Wilson, JASA 22
    (1927) 209-212.
    """
    index = _as_runs(runs_or_root)
    first = next(iter(sorted(index)))
    controls: dict[str, widgets.Widget] = {
        "algorithm": widgets.Dropdown(
            options=sorted({a for a, _, _ in index}), value=first[0], description="algorithm"
        ),
        "tau": widgets.SelectionSlider(
            options=[(f"{first[1]:g}", first[1])],
            value=first[1],
            description="tau",
            continuous_update=False,
        ),
        "mixture": widgets.Dropdown(
            options=[(f"{first[2]:g}", first[2])], value=first[2], description="mixture"
        ),
    }
    h = WidgetHandle(controls, figsize=(7.6, 4.4))
    busy = False

    def refresh(_change: Any = None) -> None:
        nonlocal busy
        if (
            busy
        ):  # options being restricted by _sync: one redraw at the end, not one per option change
            return
        busy = True
        try:
            key = _sync(controls, index)
        finally:
            busy = False
        data = _bridge_data(index[key])
        h.figure.clear()
        _draw(h.figure, data)
        h.data = data
        h.render()
        h.status.value = html.escape(_status(data))

    for control in controls.values():
        control.observe(refresh, names="value")
    refresh()
    return h
