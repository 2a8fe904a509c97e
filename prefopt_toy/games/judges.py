r"""Ordered judges: the raw matrix ``J`` of an LLM judge shown two answers in a given order.

A judge on K actions is a K x K matrix with

.. math:: J[i, j] = \Pr(\text{the judge says the FIRST shown answer wins} \mid
          i \text{ shown first}, j \text{ shown second}).

A preference matrix (``games.constructors``) is the special case :math:`J + J^\top = 1`. An LLM
judge breaks it: it favours a slot (position bias, Zheng et al., arXiv:2306.05685v4, Sec. 3.3;
Lee et al., arXiv:2309.00267v3, Sec. 2.1.2 and App. on position bias), and it may be
non-transitive. Every judge splits uniquely as

.. math:: J = P_{\mathrm{sym}} + \tfrac12 B, \qquad
          P_{\mathrm{sym}} = \tfrac12\,(J + 1 - J^\top), \qquad B = J + J^\top - 1,

with :math:`P_{\mathrm{sym}}` a preference matrix (the judge asked in both orders and averaged,
Lee et al.'s mitigation) and :math:`B` symmetric (the position bias: :math:`B[i, j] > 0` means
the first slot wins the pair more often than the two orders agree on; :math:`B = 0` iff the
judge is order-consistent).

**Diagonal convention.** ``J[i, i]`` is what the judge does when both slots hold the same answer
(an on-policy sampler draws such pairs). Any value in [0, 1] is accepted: an unbiased judge has
1/2, a judge with a first-slot bias more. :math:`P_{\mathrm{sym}}` always has diagonal exactly
1/2, and ``B[i, i] = 2 J[i, i] - 1``. Which algorithms read the diagonal is worked out in
``analysis.judges`` (Nash-MD does; losses of the margin do not).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import (
    DTYPE,
    ENTRY_ULPS,
    PROB_ATOL,
    _detached,
    as_float,
    as_preference_matrix,
    as_square,
)

__all__ = [
    "check_judge_matrix",
    "judge_decomposition",
    "lapse_judge",
    "logit_shift_judge",
    "max_position_bias",
    "position_bias",
    "symmetrize_judge",
]


def check_judge_matrix(J: Any, *, atol: float = PROB_ATOL) -> Tensor:
    r"""Validate a raw (ordered) judge matrix and return it as a float64 tensor.

    Parameters
    ----------
    J : array-like, shape (K, K)
        ``J[i, j]`` = probability that the first shown answer (``i``) is called the winner. No
        relation between ``J[i, j]`` and ``J[j, i]`` is required; the diagonal may be anything in
        [0, 1] (module docstring, "Diagonal convention").
    atol : float, default 1e-9
        Entries within ``atol`` (plus two ulps) outside [0, 1] are clipped; others are refused.

    Returns
    -------
    Tensor, shape (K, K), float64
        A copy (never a view of the caller's array), entries in [0, 1].

    Raises
    ------
    ValueError
        Naming ``J``: not numeric, NaN or inf, not square, empty, or an entry outside [0, 1].

    References
    ----------
    Zheng et al., arXiv:2306.05685v4, Sec. 3.3 (position bias of LLM judges).

    Examples
    --------
    >>> check_judge_matrix([[0.6, 0.9], [0.3, 0.6]])  # a first-slot bias: 0.9 + 0.3 > 1
    tensor([[0.6000, 0.9000],
            [0.3000, 0.6000]], dtype=torch.float64)
    """
    tol = as_float(atol, "atol")
    if tol < 0:
        raise ValueError(f"atol must be >= 0, got {tol!r}")
    t = as_square(_detached(J), "J")
    eps = torch.finfo(DTYPE).eps
    lo, hi = float(t.min()), float(t.max())
    if lo < -(tol + ENTRY_ULPS * eps * abs(lo)) or hi > 1.0 + tol + ENTRY_ULPS * eps * abs(hi):
        raise ValueError(
            f"J entries must lie in [0, 1] (probabilities that the first shown answer wins), "
            f"got min {lo:.6g}, max {hi:.6g}"
        )
    return t.clamp(0.0, 1.0)


def symmetrize_judge(J: Any) -> Tensor:
    r"""The judge asked in both orders and averaged: :math:`P = (J + 1 - J^\top)/2`.

    :math:`P[i, j] = \tfrac12\big(\Pr(i \text{ wins shown first}) + \Pr(i \text{ wins shown
    second})\big)`: a valid preference matrix (``P + P.T == 1`` exactly, diagonal exactly 1/2),
    the label RLAIF uses after averaging both orders (Lee et al., arXiv:2309.00267v3, Sec. 2.1.2),
    and the preference every algorithm whose compared pair is exchangeable sees in expectation
    (``analysis.judges.effective_preference``).

    Parameters
    ----------
    J : array-like, shape (K, K)
        Raw judge matrix (``check_judge_matrix``).

    Returns
    -------
    Tensor, shape (K, K), float64
        Exactly complementary: each pair is computed once and its partner is ``1 - entry``.

    Examples
    --------
    >>> symmetrize_judge([[0.6, 0.9], [0.3, 0.6]])  # (0.9 + 1 - 0.3) / 2 = 0.8
    tensor([[0.5000, 0.8000],
            [0.2000, 0.5000]], dtype=torch.float64)
    """
    J_t = check_judge_matrix(J)
    k = J_t.shape[0]
    upper = 0.5 * (J_t + (1.0 - J_t.T))  # in [0, 1]: the mean of two probabilities
    mask = torch.ones(k, k, dtype=torch.bool).triu(1)
    u = torch.where(mask, upper, torch.zeros((), dtype=DTYPE))
    lower = torch.where(mask, 1.0 - u, torch.zeros((), dtype=DTYPE)).T
    return as_preference_matrix(u + lower + 0.5 * torch.eye(k, dtype=DTYPE), "P")


def position_bias(J: Any) -> Tensor:
    r"""The position-bias matrix :math:`B = J + J^\top - 1` (symmetric).

    :math:`B[i, j] = \Pr(i \text{ wins shown first}) - \Pr(i \text{ wins shown second})`: the
    advantage the first slot gives either answer of the pair (the same for both, so ``B`` is
    symmetric). ``B = 0`` off the diagonal iff the judge is order-consistent; ``B > 0`` is a
    first-slot bias, ``B < 0`` a second-slot bias. The diagonal is ``2 J[i, i] - 1``.

    Returns
    -------
    Tensor, shape (K, K), float64, symmetric bit for bit, entries in [-1, 1].

    References
    ----------
    Zheng et al., arXiv:2306.05685v4, Sec. 3.3 (consistency when the order is swapped).

    Examples
    --------
    >>> position_bias([[0.5, 0.9], [0.3, 0.5]])
    tensor([[0.0000, 0.2000],
            [0.2000, 0.0000]], dtype=torch.float64)
    """
    J_t = check_judge_matrix(J)
    return (J_t + J_t.T) - 1.0  # fl(a + b) is commutative: B == B.T exactly


def max_position_bias(J: Any) -> float:
    r"""The scalar size of the position bias: :math:`\max_{i \ne j} |B[i, j]|`, ``B = J + J^T - 1``.

    The largest change, over distinct pairs, in the probability that an answer wins when it is
    moved from the second slot to the first. 0 iff the judge is order-consistent on distinct
    answers; 1 for a judge that always picks the first slot. The diagonal (identical answers) is
    left out: it is a tie-breaking rule, not a disagreement between the two orders. 0.0 for K = 1.

    References
    ----------
    Zheng et al., arXiv:2306.05685v4, Sec. 3.3 (position bias: a swap of the order changes the
    verdict).

    Examples
    --------
    >>> round(max_position_bias([[0.5, 0.9], [0.3, 0.5]]), 12)
    0.2
    """
    B = position_bias(J)
    k = B.shape[0]
    if k == 1:
        return 0.0
    off = ~torch.eye(k, dtype=torch.bool)
    return float(B[off].abs().max())


def judge_decomposition(J: Any) -> tuple[Tensor, Tensor]:
    r"""The split ``(P_sym, B)`` of a judge: :math:`J = P_{\mathrm{sym}} + B/2` (module docstring).

    ``P_sym`` is a preference matrix and ``B`` is symmetric.

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1.2 (``P_sym``: both orders averaged); Zheng et al.,
    arXiv:2306.05685v4, Sec. 3.3 (``B``: the position bias).

    The split is unique: a preference matrix minus its transpose-complement is antisymmetric,
    the bias symmetric, and a matrix is the sum of one of each in one way only.

    Returns
    -------
    tuple of two Tensors, shape (K, K), float64
        ``symmetrize_judge(J)`` and ``position_bias(J)``.

    Examples
    --------
    >>> P, B = judge_decomposition([[0.5, 0.9], [0.3, 0.5]])
    >>> (P + B / 2)[0, 1]
    tensor(0.9000, dtype=torch.float64)
    """
    return symmetrize_judge(J), position_bias(J)


def lapse_judge(P: Any, bias: float) -> Tensor:
    r"""A judge that answers honestly, except for a fixed rate of slot-picking lapses.

    With probability :math:`|b|` the judge names the first slot (``b > 0``) or the second
    (``b < 0``) whatever the answers; otherwise it answers with the preference ``P``:

    .. math:: J = P + b\,(1 - P) \;(b \ge 0), \qquad J = (1 + b)\,P \;(b < 0).

    Then :math:`B = J + J^\top - 1 = b\,\mathbf 1\mathbf 1^\top` (constant, diagonal included) and
    :math:`P_{\mathrm{sym}} = (1 - |b|)P + |b|/2`: a *uniform* bias, which shifts every payoff
    alike, so Nash-MD sees no more than the averaged judge does (``analysis.judges``), and the
    averaged judge is ``P`` with :math:`P - 1/2` shrunk by :math:`1 - |b|` (for the regularised
    solutions, ``tau`` becomes :math:`\tau/(1 - |b|)`).

    Parameters
    ----------
    P : array-like, shape (K, K)
        The honest preference matrix.
    bias : float in [-1, 1]
        ``b``, the lapse rate with its slot as a sign.

    Returns
    -------
    Tensor, shape (K, K), float64, entries in [0, 1].

    Raises
    ------
    ValueError
        If ``P`` is not a preference matrix or ``bias`` is outside [-1, 1].

    References
    ----------
    A lapse-rate model built for this suite; the bias it models: Zheng et al.,
    arXiv:2306.05685v4, Sec. 3.3; Lee et al., arXiv:2309.00267v3, Sec. 2.1.2.

    Examples
    --------
    >>> lapse_judge([[0.5, 0.8], [0.2, 0.5]], 0.5)
    tensor([[0.7500, 0.9000],
            [0.6000, 0.7500]], dtype=torch.float64)
    """
    P_t = as_preference_matrix(_detached(P), "P")
    b = as_float(bias, "bias")
    if not -1.0 <= b <= 1.0:
        raise ValueError(
            f"bias must lie in [-1, 1] (a lapse rate with its slot as sign), got {b!r}"
        )
    J = P_t + b * (1.0 - P_t) if b >= 0 else (1.0 + b) * P_t
    return J.clamp(0.0, 1.0)


def logit_shift_judge(P: Any, bias: float) -> Tensor:
    r"""A judge whose log-odds favour the first slot by ``bias``: :math:`J = \sigma(\operatorname{logit} P + b)`.

    A Bradley-Terry judge with a first-position bonus ``b`` (the order effect as an additive term
    in the comparison's log-odds, as in position-aware comparison models; Zheng et al.,
    arXiv:2306.05685v4, Sec. 3.3 for the effect). Unlike ``lapse_judge`` the bias is not uniform:

    .. math:: B[i, j] = \sigma(\ell_{ij} + b) - \sigma(\ell_{ij} - b), \qquad \ell = \operatorname{logit} P,

    largest on near-ties (``B = tanh(b/2)`` at :math:`\ell = 0`, the diagonal) and vanishing on
    certain pairs (:math:`P \in \{0, 1\}` stays put). So a biased judge of a cyclic game is no
    longer a shifted copy of it, and Nash-MD's fixed point moves (``analysis.judges``).

    Parameters
    ----------
    P : array-like, shape (K, K)
        The judge's order-free preference matrix.
    bias : float
        ``b`` in nats; > 0 favours the first slot, < 0 the second.

    Returns
    -------
    Tensor, shape (K, K), float64, entries in [0, 1].

    Examples
    --------
    >>> import math
    >>> logit_shift_judge([[0.5, 0.5], [0.5, 0.5]], math.log(3.0))  # sigma(log 3) = 3/4
    tensor([[0.7500, 0.7500],
            [0.7500, 0.7500]], dtype=torch.float64)
    """
    P_t = as_preference_matrix(_detached(P), "P")
    b = as_float(bias, "bias")
    # logit(0) = -inf and logit(1) = inf give sigma(-inf) = 0 and sigma(inf) = 1: certain pairs stay.
    return torch.sigmoid(torch.logit(P_t) + b)
