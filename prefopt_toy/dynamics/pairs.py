r"""Pair samplers, label models and the exact expected gradient of a per-pair loss.

One preference-optimisation algorithm on a bandit is a **pair sampler** (where the compared pair
comes from), a **label model** (which of the two is called the winner) and a **per-pair loss** of
the margin. With all three fixed, the expected loss of one comparison is a finite sum over the
K^2 ordered pairs,

.. math:: \mathcal L(\theta) = \sum_{y, y'} 2\, s(y)\, s(y')\, L[y, y']\; \ell\big(h_\theta(y, y')\big),
          \qquad h_\theta(y, y') = (\theta_y - \theta_{y'}) - (\log\mu_y - \log\mu_{y'}),

(the same normalisation as ``prefopt_toy.population_loss``; Azar et al., arXiv:2310.12036v2,
Eq. (10); Calandriello et al., arXiv:2403.08635v1, Eq. (10)-(11)). Because the softmax normaliser
cancels in ``h``, the exact gradient is :math:`\partial\mathcal L/\partial\theta_k = \sum_{y'} G[k, y'] -
\sum_{y} G[y, k]` with :math:`G = 2 s s^\top \odot L \odot \ell'(H)`: no autograd is needed in the loop,
and tests check it against autograd of ``population_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prefopt_toy.losses.population import margin_matrix
from prefopt_toy.policies import normalize_log_finite

from .derivatives import PairLoss, ValueAndSlope, value_and_derivative


def mixture_log_weights(log_pi: Tensor, log_mu: Tensor, mixture: Tensor | float) -> Tensor:
    r"""Log of the geometric mixture :math:`\pi^{1-m}\mu^m / Z` from finite log-policies (B, K).

    The one mixture of the dynamics: IPO-MD's pair sampler, Nash-MD-PG's opponent, the fused
    redraw's per-row samplers. ``mixture`` is a number or per-row (B, 1) weights of ``mu``.
    """
    return normalize_log_finite((1.0 - mixture) * log_pi + mixture * log_mu)


@dataclass(frozen=True)
class Sampler:
    r"""Where pairs come from, held fixed within a step (stop-gradient).

    A data policy ``nu`` (``"fixed"``), the current policy (``"online"``) or the mixture
    :math:`\pi^{1-m}\mu^m` (``"mixture"``).
    """

    kind: str
    """"fixed", "online" or "mixture"."""
    log_nu: Tensor | None = None
    """"fixed": log of the data policy; "mixture": log mu. Shape (B, K); may hold -inf (fixed)."""
    mixture: Tensor | None = None
    """"mixture": the weight of mu, shape (B, 1)."""

    def log_weights(self, log_pi: Tensor) -> Tensor:
        """``log s``, shape (B, K), from the current log-policy (treated as a constant)."""
        if self.kind == "fixed":
            return self.log_nu  # type: ignore[return-value]
        if self.kind == "online":
            return log_pi
        return mixture_log_weights(log_pi, self.log_nu, self.mixture)  # type: ignore[arg-type]


def fixed_sampler(log_nu: Tensor) -> Sampler:
    """Pairs from a fixed data policy ``nu`` (offline algorithms), ``log_nu`` of shape (B, K)."""
    return Sampler("fixed", log_nu=log_nu)


def online_sampler(batch_size: int, n_actions: int) -> Sampler:
    """Pairs from the current policy with stop-gradient (online DPO / IPO)."""
    return Sampler("online")


def mixture_sampler(log_mu: Tensor, mixture: Tensor) -> Sampler:
    """Pairs from the geometric mixture ``pi^(1-m) mu^m`` with stop-gradient (IPO-MD), ``mixture`` (B,)."""
    return Sampler("mixture", log_nu=log_mu, mixture=mixture[:, None])


def sampled_label_matrix(P: Tensor, n_labels: int, generator: torch.Generator) -> Tensor:
    """Empirical labels from ``n_labels`` Bernoulli(P) draws per unordered pair, complementary.

    ``L[y, y'] = Binomial(n, P[y, y']) / n`` above the diagonal, ``1 - L[y', y]`` below, 1/2 on it.
    """
    k = P.shape[-1]
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool), diagonal=1)
    draws = torch.binomial(torch.full_like(P, float(n_labels)), P, generator=generator) / n_labels
    L = torch.where(upper, draws, 0.0)
    L = L + torch.where(upper.T, 1.0 - L.transpose(-1, -2), 0.0)
    return L + 0.5 * torch.eye(k, dtype=P.dtype)


def pair_margins(log_pi: Tensor, log_mu: Tensor) -> Tensor:
    """``H[b, y, y'] = h(y, y')``, shape (B, K, K), from log-policies of shape (B, K)."""
    return margin_matrix(log_pi - log_mu)  # from the (B, K) log-ratios to the reference


def expected_loss_and_gradient(
    log_pi: Tensor,
    log_mu: Tensor,
    log_s: Tensor,
    labels: Tensor,
    loss: PairLoss | None = None,
    *,
    value_and_slope: ValueAndSlope | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Exact expected per-comparison loss (B,) and its gradient in the logits (B, K).

    ``log_s`` is the log pair distribution (held fixed: stop-gradient), ``labels`` the (B, K, K)
    probability that the row action is labelled the winner. Give the per-pair ``loss``, or (in a
    loop) ``value_and_slope = derivatives.prepare(loss, probe)``, validated once.
    """
    s = log_s.exp()
    W = 2.0 * s[:, :, None] * s[:, None, :] * labels  # (B, K, K) weight of (winner, loser)
    H = pair_margins(log_pi, log_mu)
    if value_and_slope is None:
        if loss is None:
            raise ValueError("give loss or value_and_slope")
        value, slope = value_and_derivative(loss, H)
    else:
        value, slope = value_and_slope(H)
    G = W * slope
    # dh(y, y')/dtheta_k = [k = y] - [k = y']: row sums minus column sums.
    grad = G.sum(-1) - G.sum(-2)
    return (W * value).sum((-1, -2)), grad
