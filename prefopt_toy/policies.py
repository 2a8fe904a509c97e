r"""Policies on K actions: softmax parametrisation, KL, entropy, geometric mixtures, win rates.

A policy is a probability vector ``pi`` of shape ``(K,)``; logits ``theta`` give ``pi = softmax(theta)``.
Everything here is float64 at the boundary and computed in log space where it matters, so that
mixtures with tiny probabilities neither underflow nor produce ``0 * log 0 = NaN``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._validate import as_policy, as_preference_matrix, as_tensor, as_unit_interval


def log_softmax(theta: Any) -> Tensor:
    r"""Log-policy ``log pi = theta - logsumexp(theta)`` of logits ``theta``, shape (K,) or (..., K).

    Differentiable when ``theta`` requires grad (the exact engine relies on it).

    Examples
    --------
    >>> log_softmax([0.0, 0.0]).exp()
    tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    t = as_tensor(theta, "theta")
    if t.ndim == 0 or t.shape[-1] == 0:
        raise ValueError(f"theta must have a last axis of actions, got shape {tuple(t.shape)}")
    return normalize_log(t)


def normalize_log(z: Tensor, dim: int = -1) -> Tensor:
    """``z - logsumexp(z)`` over axis ``dim`` (no validation; differentiable; ``-inf`` allowed).

    Used instead of ``torch.log_softmax`` / ``torch.softmax`` on batched inputs: with torch 2.13
    on CPU those parallelise over rows, and a tiny (B, K) call was measured stalling ~8 ms waking
    the intra-op thread pool on a busy 2-core machine; ``logsumexp`` does not.
    """
    return z - torch.logsumexp(z, dim=dim, keepdim=True)


def normalize_log_finite(z: Tensor, dim: int = -1) -> Tensor:
    """``normalize_log`` for finite ``z`` only: max-shift, exp, sum, log; no inf bookkeeping.

    ``torch.logsumexp`` guards against infinite maxima with extra comparisons and a copy; on the
    exact engine's hot path (finite log-policies) this plain form does half the work.
    """
    shifted = z - z.amax(dim=dim, keepdim=True)
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def softmax(theta: Any) -> Tensor:
    r"""Policy ``pi = softmax(theta)`` over the last axis (float64, differentiable)."""
    return log_softmax(theta).exp()


def kl(p: Any, q: Any) -> float:
    r"""Kullback-Leibler divergence :math:`KL(p \| q) = \sum_y p_y \log(p_y / q_y)`, in nats.

    Terms with ``p_y = 0`` contribute 0. Returns ``inf`` when ``q_y = 0 < p_y`` (``p`` not
    absolutely continuous w.r.t. ``q``), the mathematically correct value.

    Examples
    --------
    >>> round(kl([0.5, 0.5], [0.9, 0.1]), 6)
    0.510826
    """
    p_t = as_policy(p, "p")
    q_t = as_policy(q, "q", size=p_t.numel())
    support = p_t > 0
    if bool((q_t[support] == 0).any()):
        return float("inf")
    ps, qs = p_t[support], q_t[support]
    return float((ps * (ps.log() - qs.log())).sum().clamp_min(0.0))


def entropy(p: Any) -> float:
    r"""Shannon entropy :math:`H(p) = -\sum_y p_y \log p_y` in nats (``0 log 0 = 0``)."""
    p_t = as_policy(p, "p")
    ps = p_t[p_t > 0]
    return float(-(ps * ps.log()).sum())


def geometric_mixture(pi: Any, mu: Any, mixture: float) -> Tensor:
    r"""Normalised geometric mixture :math:`\pi^{1-m}\mu^{m} / Z`, with ``m = mixture`` the weight of ``mu``.

    .. math:: \pi_m(y) = \frac{\pi(y)^{1-m}\,\mu(y)^{m}}{\sum_{y'} \pi(y')^{1-m}\,\mu(y')^{m}}

    ``mixture = 0`` returns ``pi``; ``mixture = 1`` returns ``mu``. Computed in log space.

    Parameters
    ----------
    pi, mu : array-like, shape (K,)
        Probability vectors. Where one is 0 and ``0 < mixture < 1`` the mixture is 0 there.
    mixture : float in [0, 1]
        Weight of ``mu`` (beta in Munos et al. and Calandriello et al.; ``mixture_coef`` in TRL).

    Returns
    -------
    Tensor, shape (K,), float64

    Raises
    ------
    ValueError
        If ``pi`` or ``mu`` is not a probability vector, their lengths differ, ``mixture`` is
        outside [0, 1], or the mixture has no mass (``pi`` and ``mu`` with disjoint supports).

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 6 (the regularised policy of Nash-MD);
    Calandriello et al., arXiv:2403.08635v1, Sec. 5 (IPO-MD's sampling policy).

    Examples
    --------
    >>> geometric_mixture([0.8, 0.2], [0.5, 0.5], 0.5)
    tensor([0.6667, 0.3333], dtype=torch.float64)
    """
    pi_t = as_policy(pi, "pi")
    mu_t = as_policy(mu, "mu", size=pi_t.numel())
    m = as_unit_interval(mixture, "mixture")
    # Mixing in log space: pi^(1-m) mu^m never underflows, and zeros stay exact (log 0 = -inf);
    # the inf-safe normalisation handles them (the dynamics' finite-only mixture is
    # dynamics.pairs.mixture_log_weights).
    with torch.no_grad():
        z = (
            pi_t.log()
            if m == 0.0
            else mu_t.log()
            if m == 1.0
            else (1.0 - m) * pi_t.log() + m * mu_t.log()
        )
    log_mix = normalize_log(z)
    if not bool(torch.isfinite(log_mix).any()):
        raise ValueError("pi and mu have disjoint supports: their geometric mixture has no mass")
    return log_mix.exp()


def win_rates(P: Any, pi: Any = None) -> Tensor:
    r"""Vector of win rates :math:`p(y \succ \pi) = (P\pi)_y` of every action against ``pi``.

    With ``pi=None`` the opponent is uniform, which gives the (normalised) Borda score of each
    action: its average probability of beating a uniformly drawn action (itself included, at 1/2).

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix, ``P[i, j] = Pr(y_i beats y_j)``.
    pi : array-like, shape (K,), optional
        Opponent policy (default uniform).

    Returns
    -------
    Tensor, shape (K,), float64, entries in [0, 1].

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Sec. 3 (notation p*(y > mu)).
    """
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    pi_t = torch.full((k,), 1.0 / k, dtype=P_t.dtype) if pi is None else as_policy(pi, "pi", size=k)
    return P_t @ pi_t


def win_rate(P: Any, pi: Any, pi_other: Any) -> float:
    r"""Probability that a draw from ``pi`` beats a draw from ``pi_other``: :math:`\pi^\top P \pi'`.

    ``win_rate(P, pi, pi) == 0.5`` for every ``pi`` because ``P + P.T = 1``.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3 (the preference between policies, P(pi > pi'));
    Azar et al., arXiv:2310.12036v2, Sec. 3.

    Examples
    --------
    >>> win_rate([[0.5, 0.9], [0.1, 0.5]], [1.0, 0.0], [0.0, 1.0])
    0.9
    """
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    pi_t = as_policy(pi, "pi", size=k)
    other = as_policy(pi_other, "pi_other", size=k)
    return float(pi_t @ P_t @ other)
