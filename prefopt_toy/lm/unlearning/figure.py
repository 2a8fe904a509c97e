"""Forget quality against model utility over unlearning, one curve per method (TOFU's trade-off plot).

TOFU (Maini et al., arXiv:2401.06121v1, Fig. 5) and AltPO (Mekala et al., arXiv:2409.13474v1,
Fig. 1) plot each method's checkpoints in the (model utility, forget quality) plane, forget quality
on a log scale: the goal is the top right, where the retain model sits (forget quality 1 by
construction).
"""

from __future__ import annotations

from collections.abc import Sequence

from .unlearn import UnlearnRun

__all__ = ["tradeoff_figure"]


def tradeoff_figure(
    runs: Sequence[UnlearnRun],
    *,
    retain_point: tuple[float, float] | None = None,
    full_point: tuple[float, float] | None = None,
    ax=None,
):
    """Draw each run's (model utility, forget quality) checkpoints as a line, in step order.

    Parameters
    ----------
    runs : sequence of UnlearnRun
        Each needs ``history["model_utility"]`` and ``history["forget_quality"]``.
    retain_point, full_point : (utility, forget quality), optional
        Drawn as markers: the retain model (the target) and the model before unlearning.
    ax : matplotlib Axes, optional
        Drawn into; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        Line ``i`` of ``fig.axes[0].lines`` is ``runs[i]`` (label = method), its x data the
        utilities and its y data the forget qualities, exactly as recorded.

    References
    ----------
    Maini et al., arXiv:2401.06121v1, Fig. 5; Mekala et al., arXiv:2409.13474v1, Fig. 1.
    """
    import matplotlib.pyplot as plt

    if not runs or not all(isinstance(r, UnlearnRun) for r in runs):
        raise ValueError("runs must be a non-empty sequence of UnlearnRun")
    for r in runs:
        if not r.history.get("model_utility") or not r.history.get("forget_quality"):
            raise ValueError(f"run {r.method!r} has no recorded model_utility / forget_quality")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.2))
    else:
        fig = ax.figure
    for r in runs:
        ax.plot(
            r.history["model_utility"],
            r.history["forget_quality"],
            marker="o",
            ms=3,
            label=r.method,
        )
    if retain_point is not None:
        ax.scatter(
            [retain_point[0]],
            [retain_point[1]],
            marker="*",
            s=160,
            c="k",
            zorder=5,
            label="retain model",
        )
    if full_point is not None:
        ax.scatter(
            [full_point[0]],
            [full_point[1]],
            marker="s",
            s=50,
            c="grey",
            zorder=5,
            label="before unlearning",
        )
    ax.set_yscale("log")
    ax.set_xlabel("model utility (harmonic mean on retain questions)")
    ax.set_ylabel("forget quality (KS-test p-value)")
    ax.set_title("Unlearning trade-off on the fact corpus")
    ax.legend(fontsize=8)
    return fig
