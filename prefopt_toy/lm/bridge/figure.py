"""The bridge figures: the toy's and GPT-2's class trajectories on one simplex, and class curves.

``bridge_figure`` draws a ``BridgeResult`` of ``prefopt_toy.lm.bridge.run.run_bridge`` with K = 3
classes: the simplex of the three classes (distributions renormalised with "other" dropped) holding
the exact toy trajectory, the GPT-2 class distributions from the run log, the predicted fixed point,
the reference's class distribution and the final estimate; beside it the "other" mass against the
step with the final Wilson interval.

``landing_figure`` sets several methods trained on the same pairs side by side (RLHF beside DPO):
where each landed against one prediction, as bars with Wilson intervals, and their class
trajectories on one axis.

``class_curves`` draws, for several bridge runs, each class's logged probability against the step
with the exact prediction as a dashed line; every line carries a ``gid`` (``"<run>:<class>"``,
``"<run>:<class>:prediction"``) so tests can read back exactly what was drawn.

References: Munos et al., arXiv:2312.00886v4 (regularised preference games, the regularised game
drawn on the simplex); Calandriello et al., arXiv:2403.08635v1; Wilson, JASA 22 (1927) 209-212.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from .run import BridgeResult

__all__ = ["bridge_figure", "class_curves", "landing_figure"]


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

    if not results or not all(isinstance(r, BridgeResult) for r in results.values()):
        raise ValueError("results must map names to BridgeResult objects (at least one)")
    fig = Figure(figsize=figsize or (4.0 * len(results), 3.2), layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False, sharey=True)[0]
    for ax, (name, result) in zip(axes, results.items()):
        for k, cls in enumerate(result.class_names):
            (line,) = ax.plot(
                result.steps,
                result.measured[:, k].numpy(),
                marker="o",
                label=cls,
                gid=f"{name}:{cls}",
            )
            ax.axhline(
                float(result.prediction[k]),
                color=line.get_color(),
                linestyle="--",
                linewidth=1,
                gid=f"{name}:{cls}:prediction",
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
    axes[0].set_ylabel("class probability")
    axes[0].legend(fontsize=8)
    return fig


_LINESTYLES = ("-", ":", "-.", (0, (5, 2)))
# the bars' colours (mu_class, the prediction, then the methods) stay clear of the classes' C0-C3
_BAR_COLORS = ("0.65", "0.2", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
_MARKERS = ("o", "s", "^", "D")


def landing_figure(
    results: Mapping[str, Any],
    prediction: Tensor,
    mu_class: Any,
    *,
    title: str = "where each landed",
    figsize: tuple[float, float] = (9.0, 3.6),
):
    """Methods trained on the same pairs against one prediction: final bars and class trajectories.

    Left: ``mu_class``, the prediction and each method's final class distribution, with the 95%
    Wilson interval of each estimate. Right: each method's measured class distribution against
    its step (one line style per method, one colour per class) and the prediction (dashed).

    Parameters
    ----------
    results : mapping name -> result
        Each with ``class_names``, ``final`` (a ``ClassEstimate``), ``steps`` and ``measured``
        (``BridgeResult``, ``RLHFBridgeResult`` with ``eval_every``); at most four, same classes.
    prediction : (K+1,) Tensor
        The shared prediction (e.g. ``rlhf_optimum(P_ext, mu_class, beta)``).
    mu_class : ClassEstimate
        The reference's class distribution.
    title, figsize : the left panel's title; the figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Bars carry ``gid`` ``"bars:<name>"``, lines ``"<name>:<class>"``, the prediction's
        ``"prediction:<class>"``.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (4) (RLHF's and DPO's common optimum); Wilson, JASA
    22 (1927) 209-212.
    """
    from matplotlib.figure import Figure

    if not results or len(results) > len(_LINESTYLES):
        raise ValueError(f"results must hold 1 to {len(_LINESTYLES)} runs, got {len(results)}")
    names = {tuple(r.class_names) for r in results.values()}
    if len(names) != 1:
        raise ValueError(f"results must share their class names, got {sorted(names)}")
    classes = list(names.pop())
    k1 = len(classes)
    pred = np.asarray(prediction, dtype=float).reshape(-1)
    if pred.shape != (k1,) or not np.all(np.isfinite(pred)):
        raise ValueError(f"prediction must be {k1} finite probabilities, got shape {pred.shape}")
    fig = Figure(figsize=figsize, layout="constrained")
    ax, ax_t = fig.subplots(1, 2, width_ratios=[3, 2])
    bars: dict[str, Any] = {"mu_class": mu_class, "prediction": pred}
    bars |= {name: r.final for name, r in results.items()}
    width = 0.8 / len(bars)
    x = np.arange(k1)
    for i, (name, d) in enumerate(bars.items()):
        if isinstance(d, np.ndarray):
            p, err = d, None
        else:
            p = d.probs.numpy()
            err = np.stack([p - d.lower.numpy(), d.upper.numpy() - p]).clip(min=0.0)
        offset = (i - (len(bars) - 1) / 2) * width
        ax.bar(
            x + offset, p, width, yerr=err, label=name, capsize=2, color=_BAR_COLORS[i],
            gid=f"bars:{name}",
        )  # fmt: skip
    ax.set_xticks(x, classes)
    ax.set(ylabel="class probability", title=title)
    ax.legend(fontsize=10)
    for k, cls in enumerate(classes):
        color = f"C{k}"
        for j, (name, r) in enumerate(results.items()):
            ax_t.plot(
                r.steps, np.asarray(r.measured)[:, k], linestyle=_LINESTYLES[j],
                marker=_MARKERS[j], color=color, label=cls if j == 0 else None,
                gid=f"{name}:{cls}",
            )  # fmt: skip
        ax_t.axhline(
            float(pred[k]), color=color, linestyle="--", linewidth=1, gid=f"prediction:{cls}"
        )
    styles = ", ".join(f"{name} {_style_name(j)}" for j, name in enumerate(results))
    ax_t.set(xlabel="step", title=f"classes: {styles}")
    ax_t.title.set_fontsize(10)
    ax_t.legend(fontsize=10)
    return fig


def _style_name(j: int) -> str:
    return ("solid", "dotted", "dash-dot", "dashed")[j]


# --------------------------------------------------------------------------- figure
def _renormalised(dists: Tensor) -> Tensor:
    """The K = 3 classes of (…, 4) distributions renormalised to sum to 1 ("other" dropped)."""
    head = dists[..., :3]
    return head / head.sum(dim=-1, keepdim=True)


def bridge_figure(result: BridgeResult, *, figsize: tuple[float, float] = (9.0, 4.0)):
    """The toy trajectory and the GPT-2 class trajectory on one simplex, plus the "other" mass.

    Left: the simplex of the K = 3 classes, each distribution **renormalised over the three
    classes** (the "other" mass dropped): the exact toy trajectory (line, ``gid="toy"``), the GPT-2
    class distributions read from the run log (markers, ``gid="gpt2"``), the prediction (star,
    ``gid="prediction"``), ``mu_class`` (cross, ``gid="mu_class"``) and the final estimate
    (``gid="final"``); a logged or final distribution with no mass on the three classes (every
    sample "other") has no point there and is left off the simplex. Right: the "other" mass against the step: GPT-2's logged values
    (``gid="gpt2_other"``), the prediction (horizontal line, ``gid="prediction_other"``) and the
    final estimate with its Wilson interval. The figure is a ``matplotlib.figure.Figure`` built
    without pyplot.

    Parameters
    ----------
    result : BridgeResult
        With K = 3 classes (4 entries with "other").

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Munos et al., arXiv:2312.00886v4 (the regularised game drawn on the simplex).
    """
    from matplotlib.figure import Figure

    from prefopt_toy.plots.draw import draw_simplex, plot_policy, plot_trajectory

    if not isinstance(result, BridgeResult):
        raise ValueError(f"result must be a BridgeResult, got {type(result).__name__}")
    if result.prediction.shape[0] != 4:
        raise ValueError(
            f"bridge_figure draws K = 3 classes plus other; result has {result.prediction.shape[0]} entries"
        )
    fig = Figure(figsize=figsize, layout="constrained")
    ax, ax_other = fig.subplots(1, 2, width_ratios=[1.4, 1.0])
    draw_simplex(ax, result.class_names[:3], gridlines=4)
    hyper = ", ".join(f"{k}={v:g}" for k, v in result.hyper.items())
    plot_trajectory(
        ax,
        _renormalised(result.toy_trajectory),
        color="tab:blue",
        linewidth=1.5,
        label="exact toy",
        gid="toy",
    )
    # a distribution with no fruit at all (every sample "other") has no point on the simplex
    kept = (
        result.measured[result.measured[:, :3].sum(dim=-1) > 0]
        if len(result.steps)
        else result.measured
    )
    if len(kept):
        plot_trajectory(
            ax,
            _renormalised(kept),
            color="tab:orange",
            marker="o",
            markersize=4,
            linewidth=0.8,
            alpha=0.8,
            label="GPT-2 (run log)",
            gid="gpt2",
        )
    plot_policy(
        ax,
        _renormalised(result.mu_class.probs),
        marker="X",
        markersize=9,
        color="tab:gray",
        label="mu_class",
        gid="mu_class",
    )
    plot_policy(
        ax,
        _renormalised(result.prediction),
        marker="*",
        markersize=14,
        color="tab:green",
        markeredgecolor="white",
        label="prediction",
        gid="prediction",
        zorder=5,
    )
    if float(result.final.probs[:3].sum()) > 0:
        plot_policy(
            ax,
            _renormalised(result.final.probs),
            marker="s",
            markersize=7,
            color="tab:red",
            label=f"GPT-2 final (n={result.final.n})",
            gid="final",
            zorder=5,
        )
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(f"{result.algorithm} ({hyper}); TV = {result.tv:.3f}", fontsize=10)

    steps = np.asarray(result.steps, dtype=float)
    if len(result.steps):
        ax_other.plot(
            steps,
            result.measured[:, 3].numpy(),
            "o-",
            color="tab:orange",
            markersize=3,
            label="GPT-2 (run log)",
            gid="gpt2_other",
        )
    last = float(steps[-1]) if len(steps) else 1.0
    ax_other.axhline(
        float(result.prediction[3]),
        color="tab:green",
        linestyle="--",
        label="prediction",
        gid="prediction_other",
    )
    f = result.final
    ax_other.errorbar(
        [last],
        [float(f.probs[3])],
        yerr=[[float(f.probs[3] - f.lower[3])], [float(f.upper[3] - f.probs[3])]],
        fmt="s",
        color="tab:red",
        capsize=3,
        label=f"final, {100 * f.level:g}% Wilson",
        gid="final_other",
    )
    ax_other.set_xlabel("GPT-2 step")
    ax_other.set_ylabel(f"Pr({result.class_names[3]})")
    ax_other.set_ylim(bottom=0.0)
    ax_other.legend(fontsize=8, frameon=False)
    return fig
