"""Named likelihood-displacement settings and the two-panel plot of a displacement run.

``EXAMPLES`` holds frozen settings of ``prefopt_toy.displacement.displacement_run`` shared by the
notebook and the tests: ``shared_features`` (a log-linear policy where preferring "No" over
"Never" pushes the mass onto "Yes"), ``tabular`` (identity features, no displacement) and
``shared_responses`` (three tabular pairs, the IPO paper's data set D1). ``plot_displacement``
draws a run: every response's log-probability and the DPO margins against the step.
References: Razin et al., arXiv:2410.08847 (likelihood displacement, embeddings of chosen and
rejected); Pal et al., arXiv:2402.13228 (Smaug / DPOP); Azar et al., arXiv:2310.12036v2, Sec. 5.4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .displacement import DisplacementRun


# --------------------------------------------------------------------------- named examples


@dataclass(frozen=True)
class DisplacementExample:
    """A named, frozen setting of ``displacement_run`` (shared by the notebook and the tests).

    References
    ----------
    Razin et al., arXiv:2410.08847 (the "No" / "Never" / "Yes" story of their introduction).
    """

    name: str
    """Key in ``EXAMPLES``."""
    title: str
    """One-line description."""
    responses: tuple[str, ...]
    """Names of the K responses, for plots."""
    features: tuple[tuple[float, ...], ...]
    """(K, d) feature vectors."""
    chosen: int | tuple[int, ...]
    """Chosen response(s)."""
    rejected: int | tuple[int, ...]
    """Rejected response(s)."""
    beta: float
    """DPO's KL strength."""
    lr: float
    """Step size of gradient descent."""
    steps: int
    """Steps of the full run."""
    quick_steps: int
    """Steps in smoke mode (the monotone facts already show)."""

    def run(self, quick: bool = False, **override: Any) -> DisplacementRun:
        """``displacement_run`` with this example's settings (``w0 = w_ref = 0``); keywords override them."""
        # imported here, not at the top: prefopt_toy.displacement re-exports this module
        from .displacement import displacement_run

        kwargs: dict[str, Any] = {"beta": self.beta, "lr": self.lr, "steps": self.quick_steps if quick else self.steps}
        kwargs.update(override)
        return displacement_run(torch.tensor(self.features, dtype=torch.float64), self.chosen, self.rejected, **kwargs)


EXAMPLES: dict[str, DisplacementExample] = {
    ex.name: ex
    for ex in (
        DisplacementExample(
            name="shared_features",
            title='Log-linear policy: preferring "No" over "Never" pushes the mass onto "Yes"',
            responses=("No", "Never", "Yes"),
            # "No" and "Never" share their first coordinate (both refuse) and differ a little in the
            # second; the difference delta = (0, 0.4) points where "Yes" scores highest:
            # a = features @ delta = (0.08, -0.08, 0.4), E_mu[a] = 0.4 / 3 > 0.08 = a_No.
            features=((1.0, 0.2), (1.0, -0.2), (-1.0, 1.0)),
            chosen=0,
            rejected=1,
            beta=0.1,
            lr=5.0,
            steps=400,
            quick_steps=60,
        ),
        DisplacementExample(
            name="tabular",
            title="Tabular softmax (identity features): the chosen response only gains",
            responses=("No", "Never", "Yes"),
            features=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
            chosen=0,
            rejected=1,
            beta=0.1,
            lr=5.0,
            steps=400,
            quick_steps=60,
        ),
        DisplacementExample(
            name="shared_responses",
            title="Tabular softmax, pairs a > b, b > c, a > c: b falls although it wins b > c",
            responses=("a", "b", "c"),
            features=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
            chosen=(0, 1, 0),
            rejected=(1, 2, 2),
            beta=0.1,
            lr=5.0,
            steps=400,
            quick_steps=60,
        ),
    )
}
"""Named displacement settings: ``shared_features`` (displacement), ``tabular`` (none),
``shared_responses`` (the IPO paper's data set D1, Azar et al., arXiv:2310.12036v2, Sec. 5.4)."""


def displacement_example(name: str) -> DisplacementExample:
    """The example registered as ``name`` in ``EXAMPLES``.

    Raises
    ------
    ValueError
        Unknown ``name``; the message lists the valid names.

    References
    ----------
    Razin et al., arXiv:2410.08847.

    Examples
    --------
    >>> displacement_example("shared_features").responses
    ('No', 'Never', 'Yes')
    """
    try:
        return EXAMPLES[name]
    except (KeyError, TypeError):
        raise ValueError(f"name must be one of {', '.join(EXAMPLES)}, got {name!r}") from None


# --------------------------------------------------------------------------- plotting


def plot_displacement(axes: Any, run: DisplacementRun, responses: Any = None) -> list[Any]:
    r"""Draw a run on two axes: :math:`\log\pi(y)` of every response per step, and the margin(s) h.

    Parameters
    ----------
    axes : two matplotlib Axes
        Left: log-probabilities (chosen solid, rejected dashed, others dotted); right: the DPO
        margin of each pair and the loss.
    run : DisplacementRun
    responses : sequence of K str, optional
        Response names (default ``y0, y1, ...``).

    Returns
    -------
    list of Line2D

    References
    ----------
    Razin et al., arXiv:2410.08847 (their figures plot both log-probabilities against training steps).
    """
    if len(axes) != 2:
        raise ValueError(f"axes must be two Axes (log-probabilities, margin), got {len(axes)}")
    k = run.features.shape[0]
    names = [f"y{i}" for i in range(k)] if responses is None else [str(r) for r in responses]
    if len(names) != k:
        raise ValueError(f"responses must name the {k} responses, got {len(names)} names")
    steps = torch.arange(run.steps + 1).numpy()
    chosen = set(run.pairs[:, 0].tolist())
    rejected = set(run.pairs[:, 1].tolist())
    ax_lp, ax_h = axes
    lines = []
    for y in range(k):
        role = ("chosen" if y in chosen else "") + ("/" if y in chosen and y in rejected else "")
        role += "rejected" if y in rejected else ""
        style = "-" if y in chosen else ("--" if y in rejected else ":")
        label = f"{names[y]} ({role})" if role else f"{names[y]} (neither)"
        (line,) = ax_lp.plot(steps, run.log_policies[:, y].numpy(), style, linewidth=2.0, label=label)
        lines.append(line)
    ax_lp.set_xlabel("gradient step t")
    ax_lp.set_ylabel(r"$\log \pi_t(y)$")
    ax_lp.set_title("log-probability of each response")
    ax_lp.legend(fontsize=8)
    for i in range(run.pairs.shape[0]):
        c, r = (int(x) for x in run.pairs[i])
        (line,) = ax_h.plot(steps, run.margins[:, i].numpy(), linewidth=2.0, label=f"margin h({names[c]} > {names[r]})")
        lines.append(line)
    (line,) = ax_h.plot(steps, run.losses.numpy(), color="0.4", linewidth=1.2, linestyle="--", label="DPO loss (mean)")
    lines.append(line)
    ax_h.set_xlabel("gradient step t")
    ax_h.set_title(rf"DPO margin and loss ($\beta$ = {run.beta:g})")
    ax_h.legend(fontsize=8)
    return lines
