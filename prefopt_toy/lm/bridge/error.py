r"""How much of a bridge run's total variation is sampling error: a parametric bootstrap.

A bridge run compares two *estimates*: the trained policy's class frequencies (``n_final``
completions) and the exact prediction, itself computed from the reference's class frequencies
(``n_mu`` completions). Both carry multinomial sampling error, so even a policy sitting exactly on
the prediction shows a positive total variation. ``tv_sampling_error`` measures that:

- **interval**: the percentile bootstrap of the observed TV. Draw
  :math:`\mu^* \sim \mathrm{Mult}(n_\mu, \hat\mu)/n_\mu` and
  :math:`\hat\pi^* \sim \mathrm{Mult}(n_{final}, \hat\pi)/n_{final}`, recompute the prediction
  :math:`p(\mu^*)` with the same solver, and take the ``level`` quantiles of
  :math:`\mathrm{TV}(\hat\pi^*, p(\mu^*))`.
- **floor**: the TV expected from sampling alone if the policy's class distribution *were* the
  prediction: :math:`X \sim \mathrm{Mult}(n_{final}, p(\hat\mu))/n_{final}` against
  :math:`p(\mu^*)`; its mean and its upper ``level`` quantile. A measured TV near the floor means the
  run is as close as the sample sizes can show.

With ``resample_mu=False`` the prediction is held fixed; then the floor's mean is exactly
:math:`\tfrac12 \sum_k \mathbb{E}\,|X_k/n - p_k|` with :math:`X_k \sim \mathrm{Bin}(n, p_k)`, which the
tests compute by summing binomial probabilities.

References
----------
Efron & Tibshirani, *An Introduction to the Bootstrap* (1993), Ch. 6 and 13 (parametric bootstrap,
percentile intervals); Wilson, JASA 22 (1927) 209-212 (the per-class intervals beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_unit_interval

from .class_estimate import total_variation

__all__ = ["TVError", "tv_sampling_error"]


@dataclass(frozen=True)
class TVError:
    """The sampling error of a bridge run's total variation (see the module docstring).

    References
    ----------
    Efron & Tibshirani (1993), Ch. 13.
    """

    tv: float
    """The observed TV(final, prediction)."""
    interval: tuple[float, float]
    """Percentile bootstrap interval of the observed TV at ``level``."""
    floor_mean: float
    """Mean TV from sampling alone, were the policy exactly at the prediction."""
    floor_upper: float
    """Upper ``level`` quantile of that TV."""
    level: float
    n_boot: int

    def as_dict(self) -> dict[str, Any]:
        """Plain Python values (for JSON)."""
        return {
            "tv": self.tv,
            "interval": list(self.interval),
            "floor_mean": self.floor_mean,
            "floor_upper": self.floor_upper,
            "level": self.level,
            "n_boot": self.n_boot,
        }


def _draw(probs: Tensor, n: int, n_boot: int, gen: torch.Generator) -> Tensor:
    """(n_boot, K) multinomial frequencies with ``n`` trials each."""
    idx = torch.multinomial(
        probs.expand(n_boot, -1), n, replacement=True, generator=gen
    )  # (n_boot, n)
    counts = torch.zeros(n_boot, probs.numel(), dtype=torch.float64)
    counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    return counts / n


def tv_sampling_error(
    result,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    resample_mu: bool = True,
    predictor=None,
) -> TVError:
    """Bootstrap interval and sampling floor of a bridge run's total variation.

    Parameters
    ----------
    result : BridgeResult
        A finished ``run_bridge`` (its ``mu_class``, ``final``, ``P_ext``, ``hyper``, ``algorithm``).
    n_boot : int >= 10
        Bootstrap draws.
    level : float in (0, 1)
        Interval level (two-sided for ``interval``, upper for ``floor_upper``).
    seed : int
    resample_mu : bool
        Also resample the reference's counts (the prediction's own error). False holds the
        prediction fixed (used by the tests' closed form).
    predictor : callable, optional
        ``mu_class -> prediction`` for an algorithm ``predict`` does not know (default:
        ``result.extra["predictor"]`` when present, else ``predict``): the family bridge's sDPO
        and R-DPO (``bridge.family``). R-DPO's effective lengths are held fixed.

    Returns
    -------
    TVError

    References
    ----------
    Efron & Tibshirani, *An Introduction to the Bootstrap* (1993), Ch. 6 and 13.
    """
    from .run import BridgeResult, predict

    if not isinstance(result, BridgeResult):
        raise ValueError(f"result must be a BridgeResult, got {type(result).__name__}")
    n_boot = as_int(n_boot, "n_boot", minimum=10)
    level = as_unit_interval(level, "level", closed_left=False, closed_right=False)
    gen = torch.Generator().manual_seed(as_int(seed, "seed", minimum=0))
    mu_hat, pi_hat = result.mu_class.probs.to(torch.float64), result.final.probs.to(torch.float64)
    hyper = dict(result.hyper)
    mixture = hyper.pop("mixture", 0.0)
    strength = {"beta": hyper["beta"]} if "beta" in hyper else {"tau": hyper["tau"]}

    if predictor is None:
        predictor = getattr(result, "extra", {}).get("predictor")
    if predictor is not None and not callable(predictor):
        raise ValueError(f"predictor must be callable or None, got {type(predictor).__name__}")

    def prediction(mu: Tensor) -> Tensor:
        if predictor is not None:
            return predictor(mu)
        return predict(result.algorithm, result.P_ext, mu, mixture=mixture, **strength)[0]

    if resample_mu:
        mus = _draw(mu_hat, result.mu_class.n, n_boot, gen)
        preds = torch.stack([prediction(m) for m in mus])  # (n_boot, K+1)
    else:
        preds = result.prediction.to(torch.float64).expand(n_boot, -1)
    finals = _draw(pi_hat, result.final.n, n_boot, gen)
    nulls = _draw(result.prediction.to(torch.float64), result.final.n, n_boot, gen)
    tv_boot = 0.5 * (finals - preds).abs().sum(-1)  # (n_boot,)
    tv_null = 0.5 * (nulls - preds).abs().sum(-1)
    alpha = 1.0 - level
    q = torch.tensor([alpha / 2, 1 - alpha / 2, level], dtype=torch.float64)
    lo, hi = torch.quantile(tv_boot, q[:2]).tolist()
    return TVError(
        tv=total_variation(pi_hat, result.prediction),
        interval=(lo, hi),
        floor_mean=float(tv_null.mean()),
        floor_upper=float(torch.quantile(tv_null, q[2])),
        level=level,
        n_boot=n_boot,
    )
