r"""Mean and confidence interval over the seeds of a sampled ``dataset_run`` (the IPO paper's error bars).

Azar et al., arXiv:2310.12036v2, Sec. 5.4 report the mean policy and a 95% confidence interval
over 10 seeds; :func:`seed_summary` computes both per action and per strength group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import stats
from torch import Tensor

from prefopt_toy._validate import DTYPE, as_positive_float

from .trajectory import Trajectory

__all__ = ["SeedSummary", "seed_summary"]


@dataclass(frozen=True)
class SeedSummary:
    """Mean and confidence interval of policies over the seed rows of a sampled run.

    As reported by Azar et al., arXiv:2310.12036v2, Sec. 5.4 (mean and 95% CI over 10 seeds).
    """

    mean: Tensor
    """Mean policy over seeds, shape (G, K), or (G, steps + 1, K) for ``step=None``."""
    half_width: Tensor
    """Half-width of the confidence interval (t-distribution), same shape as ``mean``."""
    std: Tensor
    """Sample standard deviation over seeds (ddof = 1), same shape as ``mean``."""
    strength: Tensor | None
    """The strength (tau or beta) of each group, shape (G,); None when the loss had none."""
    n_seeds: int
    """Number of seeds S per group."""
    confidence: float
    """Confidence level of the interval, e.g. 0.95."""

    @property
    def lower(self) -> Tensor:
        """``mean - half_width`` (not clipped to [0, 1])."""
        return self.mean - self.half_width

    @property
    def upper(self) -> Tensor:
        """``mean + half_width`` (not clipped to [0, 1])."""
        return self.mean + self.half_width


def seed_summary(
    traj: Trajectory, *, confidence: float = 0.95, step: int | None = -1
) -> SeedSummary:
    r"""Mean and confidence interval over seeds of a minibatch ``dataset_run``, per strength group.

    .. math:: \bar\pi \pm t_{(1+c)/2,\,S-1}\, \frac{s}{\sqrt S}

    with :math:`s` the sample standard deviation over the S seeds (Student t, not normal: S = 10 is
    small; :math:`t_{0.975, 9} = 2.262` against 1.960). Computed per action, per strength.

    Parameters
    ----------
    traj : Trajectory
        A batched result of ``dataset_run(..., minibatch=True)`` with at least 2 seeds.
    confidence : float in (0, 1), default 0.95
    step : int or None, default -1
        Which iterate to summarise (-1: the final policy); None summarises every step.

    Returns
    -------
    SeedSummary
        Fields of shape (G, K) (or (G, steps + 1, K) for ``step=None``), G = number of strengths.

    Raises
    ------
    ValueError
        If ``traj`` is not a batched minibatch ``dataset_run`` result with >= 2 seeds, or
        ``confidence`` is outside (0, 1).

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Sec. 5.4 (mean and 95% CI over 10 seeds).

    Examples
    --------
    >>> from prefopt_toy.dynamics.sampled import dataset_run
    >>> traj = dataset_run([1/3, 1/3, 1/3], [(0, 1), (1, 2), (0, 2)], loss="ipo", tau=[0.5, 1.0],
    ...                    steps=100, seeds=5)
    >>> summary = seed_summary(traj)
    >>> tuple(summary.mean.shape), summary.n_seeds, summary.strength.tolist()
    ((2, 3), 5, [0.5, 1.0])
    """
    s = traj.hyper.get("n_seeds", 0) if traj.batched else 0
    if not traj.hyper.get("minibatch", False) or s < 2:
        raise ValueError(
            "traj must be a batched minibatch dataset_run result with at least 2 seeds"
        )
    c = as_positive_float(confidence, "confidence")
    if c >= 1:
        raise ValueError(f"confidence must lie in (0, 1), got {c!r}")
    policies = traj.policies if step is None else traj.policies[:, step]
    groups = policies.reshape(len(traj) // s, s, *policies.shape[1:])  # (G, S, ...)
    mean = groups.mean(1)
    std = groups.std(1, correction=1)
    half = float(stats.t.ppf(0.5 + c / 2, df=s - 1)) * std / s**0.5
    strength = traj.hyper.get("tau", traj.hyper.get("beta"))
    if strength is not None:
        strength = torch.as_tensor(strength, dtype=DTYPE).reshape(-1)[::s]
    return SeedSummary(mean, half, std, strength, s, c)
