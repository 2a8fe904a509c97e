r"""The closed-form displacement criterion: does DPO on one pair lower the chosen log-probability?

On the log-linear policy :math:`\pi_w(y) \propto \exp(\phi(y)\cdot w)` of ``prefopt_toy.displacement``,
gradient descent on the DPO loss of one pair keeps :math:`w_t = w_0 + s_t\delta` on the ray along
:math:`\delta = \phi(y^+) - \phi(y^-)` with :math:`s_t` increasing, and with the scores
:math:`a = \Phi\delta`

.. math:: \frac{d}{ds}\log\pi(y) = a_y - E_{\pi}[a], \qquad \frac{d}{ds}E_{\pi}[a] = \mathrm{Var}_{\pi}(a) \ge 0.

``displacement_criterion`` reads the outcome off the scores alone, with no run: the chosen
log-probability falls at every step when :math:`a_{y^+} < E_{\pi_{w_0}}[a]`, and eventually when
some response scores above it. ``prefopt_toy.displacement`` re-exports both names.

References: as :mod:`prefopt_toy.displacement`, the module this one was split from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .displacement_inputs import _features, _pairs, _weights
from .policies import normalize_log

__all__ = ["DisplacementCriterion", "displacement_criterion"]


@dataclass(frozen=True)
class DisplacementCriterion:
    """Whether one DPO pair displaces its chosen response, read off the scores ``a = features @ delta``.

    References
    ----------
    Razin et al., arXiv:2410.08847 (displacement through similar embeddings of chosen and rejected).
    """

    scores: Tensor
    r"""``a_y = phi(y) . (phi(chosen) - phi(rejected))``, shape (K,)."""
    mean_score: float
    r""":math:`E_{\pi_{w_0}}[a]`, the score averaged under the starting policy."""
    chosen_rate: float
    r""":math:`a_{y^+} - E_{\pi_{w_0}}[a]`: d log pi(chosen) / ds at the start (ds = lr beta sigma(-beta h) per step)."""
    rejected_rate: float
    r""":math:`a_{y^-} - E_{\pi_{w_0}}[a]`, the same for the rejected response."""
    chosen_falls_from_start: bool
    """``chosen_rate < 0``: log pi(chosen) falls at every step of the run, not just the first."""
    chosen_falls_eventually: bool
    """Some response scores above the chosen one: log pi(chosen) falls once the run is long enough."""
    winner: int
    """``argmax_y a_y``: the response the policy concentrates on as the margin grows."""


def displacement_criterion(features: Any, chosen: int, rejected: int, w0: Any = None) -> DisplacementCriterion:
    r"""Predict, in closed form, whether DPO on one pair lowers :math:`\log\pi(y^+)`, starting from ``w0``.

    Gradient descent keeps :math:`w_t = w_0 + s_t\delta` on a ray (see the module docstring) with
    :math:`s_t` increasing, and :math:`\frac{d}{ds}\log\pi(y) = a_y - E_\pi[a]` where
    :math:`E_\pi[a]` increases in ``s`` (its derivative is a variance). So ``chosen_rate < 0``
    means the chosen log-probability falls at every step; ``a_chosen < max(a)`` means it falls
    eventually. The same holds for the rejected response with ``rejected_rate``.

    Parameters
    ----------
    features : array-like, shape (K, d)
    chosen, rejected : int
        One pair (the ray argument needs a single pair).
    w0 : array-like, shape (d,), optional
        Starting parameters; zeros by default. The reference does not matter for the criterion.

    References
    ----------
    Razin et al., arXiv:2410.08847; Pal et al., arXiv:2402.13228 (the chosen likelihood falls on
    pairs with small edit distance, i.e. similar chosen and rejected).

    Examples
    --------
    >>> c = displacement_criterion([[1.0, 0.2], [1.0, -0.2], [-1.0, 1.0]], 0, 1)
    >>> c.chosen_falls_from_start, c.winner
    (True, 2)
    """
    phi = _features(features)
    pairs, single = _pairs(phi, chosen, rejected)
    if not single:
        raise ValueError("chosen and rejected must be single indices: the criterion is for one pair")
    c, r = int(pairs[0, 0]), int(pairs[0, 1])
    w = torch.zeros(phi.shape[1], dtype=torch.float64) if w0 is None else _weights(w0, "w0", phi.shape[1])
    a = phi @ (phi[c] - phi[r])
    mean = float(normalize_log(phi @ w).exp() @ a)
    top = float(a.max())
    return DisplacementCriterion(
        scores=a,
        mean_score=mean,
        chosen_rate=float(a[c]) - mean,
        rejected_rate=float(a[r]) - mean,
        chosen_falls_from_start=float(a[c]) < mean,
        chosen_falls_eventually=float(a[c]) < top,
        winner=int(a.argmax()),
    )
