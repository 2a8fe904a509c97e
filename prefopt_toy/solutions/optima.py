r"""Closed-form optima of the KL-regularised objectives: RLHF/DPO and PsiPO/IPO.

Both are Gibbs policies :math:`\pi^*(y) \propto \mu(y)\exp(g(y)/\text{strength})`, the maximiser
of :math:`E_\pi[g] - \text{strength}\,KL(\pi\|\mu)` (Azar et al., arXiv:2310.12036v2, Eq. (7), App.
A.1). They differ in the payoff ``g``: the fitted Bradley-Terry reward for RLHF/DPO, the win rate
against the data policy ``nu`` for IPO. Computed in log space with the payoff's maximum subtracted
before dividing by the strength, so tiny ``mu`` and any strength, subnormal to huge, neither
underflow nor overflow, and the limits in the strength are exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import (
    _detached,
    as_policy,
    as_positive_float,
    as_preference_matrix,
    as_vector,
)
from prefopt_toy.policies import normalize_log

from .bt import _fit_on_support, _fmt_actions


def gibbs_policy(mu: Tensor, payoff: Tensor, strength: float | Tensor) -> Tensor:
    r"""Normalised :math:`\mu \exp(\text{payoff}/\text{strength})` in log space (no validation).

    ``mu`` and ``payoff`` have shape (..., K) and ``strength`` is a positive number or a tensor
    broadcasting against them (e.g. (N, 1) for a path of strengths). Entries with ``mu = 0`` stay
    exactly 0.

    The payoff's maximum over ``supp(mu)`` is subtracted *before* dividing by ``strength``
    (the normalisation cancels it), so the exponent is :math:`(g - \max g)/\text{strength} \le 0`:
    it cannot overflow for any strength, however small (subnormal included), and the action(s)
    attaining the maximum keep exponent exactly 0. The result is therefore always finite and on
    the simplex, and its limits are exact in floating point: as ``strength -> 0`` it is ``mu``
    restricted to the argmax set of the payoff and renormalised (ties shared in proportion to
    ``mu``; Azar et al., arXiv:2310.12036v2, Eq. (7) at vanishing regularisation), and as
    ``strength -> inf`` it is ``mu``.
    """
    mu, payoff = torch.broadcast_tensors(mu, payoff)
    support = mu > 0
    top = payoff.masked_fill(~support, -math.inf).amax(dim=-1, keepdim=True)
    gap = (payoff - top).masked_fill(~support, 0.0)  # <= 0 on supp(mu); 0 off it (masked below)
    z = mu.log() + gap / strength  # log 0 = -inf keeps unsupported actions at probability 0
    z = z.masked_fill(~support.expand_as(z), -math.inf)
    return normalize_log(z).exp()


def rlhf_optimum(P: Any, mu: Any, beta: Any, nu: Any = None) -> Tensor:
    r"""The KL-regularised RLHF optimum for the Bradley-Terry reward fitted under ``nu x nu``.

    .. math:: \pi^*(y) = \frac{\mu(y)\exp(\hat r(y)/\beta)}{Z}, \qquad
              \hat r = \texttt{bt\_fit}(P, \nu), \quad \nu = \mu \text{ by default}.

    This is also the minimiser of the population DPO loss with the same ``beta`` and pairs from
    ``nu x nu`` (Azar et al., arXiv:2310.12036v2, App. B Prop. 4), whether or not ``P`` is itself a
    Bradley-Terry matrix. The default ``nu = mu`` (pairs sampled from the reference, as in offline
    DPO) makes it the fixed point of ``ALGORITHMS["dpo"](P, mu, ...)`` and
    ``ALGORITHMS["rlhf"](P, mu, ...)`` with their default pairs (``FIXED_POINTS``), and the same
    convention as :func:`ipo_optimum`. On a Bradley-Terry game ``nu`` does not matter; on other
    games it does (rock-paper-scissors with a skewed ``mu`` gives a BT reward that favours the
    action beating ``mu``'s favourite, while uniform pairs give every action the same reward).

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix, ``P[i, j] = Pr(y_i beats y_j)``.
    mu : array-like, shape (K,)
        Reference policy (the KL anchor; pi_ref in the DPO paper). Zeros are allowed: those
        actions get probability 0.
    beta : float > 0
        KL strength (beta in Rafailov et al.; TRL's ``beta``).
    nu : array-like, shape (K,), optional
        Distribution of the compared pairs; default ``mu``. The reward is fitted on the actions
        ``nu`` compares, ``supp(nu)``, which must contain ``supp(mu)`` (the reward of an action
        never compared is not identified). So with the default, a ``mu`` with zeros is fitted on
        the sub-game of ``supp(mu)`` and the optimum is 0 outside it; a uniform ``nu`` gives the
        fit of ``bt_fit(P)``.

    Returns
    -------
    Tensor, shape (K,), float64: finite and on the simplex for every ``beta > 0`` (subnormal to
    the float64 maximum; the limits are ``mu`` on the argmax of the reward, and ``mu``; see
    :func:`gibbs_policy`).

    Raises
    ------
    ValueError
        Malformed inputs, ``beta <= 0``, ``nu = 0`` on an action where ``mu > 0`` (the message names
        the actions), or no finite BT maximiser on ``supp(nu)`` (deterministic preferences with no
        path back; the message names the pairs).

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (4); Azar et al., arXiv:2310.12036v2, Eq. (3), Eq.
    (5) (pairs from ``mu``) and App. B Prop. 4.

    Examples
    --------
    >>> from prefopt_toy.games.constructors import bradley_terry
    >>> import math
    >>> rlhf_optimum(bradley_terry([math.log(3.0), 0.0]), [0.5, 0.5], beta=1.0)
    tensor([0.7500, 0.2500], dtype=torch.float64)
    >>> rlhf_optimum(bradley_terry([0.0, 1.0, 2.0]), [0.5, 0.5, 0.0], beta=1.0)  # fit on {0, 1}
    tensor([0.2689, 0.7311, 0.0000], dtype=torch.float64)
    """
    beta_f = as_positive_float(beta, "beta")
    mu_t, reward = _fitted_reward(P, mu, nu)
    return gibbs_policy(mu_t, reward, beta_f)


def _fitted_reward(P: Any, mu: Any, nu: Any) -> tuple[Tensor, Tensor]:
    """``mu`` validated and the BT reward fitted under ``nu x nu`` (default ``mu``) on ``supp(nu)``."""
    P_t = as_preference_matrix(_detached(P))
    k = P_t.shape[0]
    mu_t = as_policy(mu, "mu", size=k)
    nu_t = mu_t.detach() if nu is None else as_policy(_detached(nu), "nu", size=k)
    missing = [int(y) for y in torch.nonzero((nu_t == 0) & (mu_t > 0)).flatten()]
    if missing:
        raise ValueError(
            "nu must be strictly positive (on the support of mu): "
            f"nu is 0 on actions {_fmt_actions(missing)} where mu > 0, "
            "so no pair involves them and their BT rewards are not identified"
        )
    return mu_t, _fit_on_support(P_t, nu_t)


def rdpo_optimum(P: Any, mu: Any, beta: Any, alpha: Any, lengths: Any, nu: Any = None) -> Tensor:
    r"""The population optimum of R-DPO: the RLHF optimum of the length-penalised reward.

    .. math:: \pi^*(y) \propto \mu(y)\exp\bigl((\hat r(y) - \alpha L(y))/\beta\bigr), \qquad
              \hat r = \texttt{bt\_fit}(P, \nu).

    The population R-DPO loss :math:`\sum W\,[-\log\sigma(\beta h + \alpha(L_w - L_l))]` depends
    on the policy through :math:`u = \beta\log(\pi/\mu) + \alpha L` only as :math:`u_w - u_l`, and
    is minimised where those differences are the BT fit's. If the labels are BT in
    :math:`q + \kappa L` (a judge that also likes length), ``alpha = kappa`` gives back
    :math:`\mu e^{q/\beta}`.

    Parameters
    ----------
    P, mu, beta, nu : as :func:`rlhf_optimum`.
    alpha : float >= 0
        Length weight.
    lengths : array-like, shape (K,), each > 0
        Length of each action.

    Returns
    -------
    Tensor, shape (K,), float64.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3; Azar et al., arXiv:2310.12036v2, App. B Prop. 4.

    Examples
    --------
    >>> rdpo_optimum([[0.5, 0.5], [0.5, 0.5]], [0.5, 0.5], beta=1.0, alpha=math.log(3.0),
    ...              lengths=[1.0, 2.0])
    tensor([0.7500, 0.2500], dtype=torch.float64)
    """
    beta_f = as_positive_float(beta, "beta")
    alpha_f = as_positive_float(alpha, "alpha", allow_zero=True)
    mu_t, reward = _fitted_reward(P, mu, nu)
    L = as_vector(_detached(lengths), "lengths", size=mu_t.shape[0])
    if not bool(torch.isfinite(L).all()) or bool((L <= 0).any()):
        raise ValueError("lengths must be finite and > 0 (one length per action)")
    return gibbs_policy(mu_t, reward - alpha_f * L, beta_f)


def ipo_optimum(P: Any, mu: Any, tau: Any, nu: Any = None) -> Tensor:
    r"""The IPO optimum: :math:`\pi^*(y) \propto \mu(y)\exp\big(p(y \succ \nu)/\tau\big)`.

    The maximiser of :math:`P(\pi \succ \nu) - \tau KL(\pi\|\mu)` (PsiPO with Psi = identity) and
    the unique minimiser of the population IPO loss with pairs from ``nu x nu`` when
    ``supp(nu) = supp(mu)`` (Azar et al., Theorem 2).

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.
    mu : array-like, shape (K,)
        Reference policy; actions with ``mu = 0`` get probability 0.
    tau : float > 0
        KL strength (tau in Azar et al.; TRL's ``beta`` for ``loss_type="ipo"``).
    nu : array-like, shape (K,), optional
        Distribution the compared pairs are drawn from; default ``mu``.

    Returns
    -------
    Tensor, shape (K,), float64: finite and on the simplex for every ``tau > 0``. As
    ``tau -> 0`` (subnormal included) it is ``mu`` restricted to the best actions against
    ``nu`` (ties shared in proportion to ``mu``); for huge ``tau`` it is ``mu`` (see
    :func:`gibbs_policy`).

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (8)-(9) with Psi = identity; Sec. 5.3.1 for the
    two-action example below.

    Examples
    --------
    >>> ipo_optimum([[0.5, 1.0], [0.0, 0.5]], [0.5, 0.5], tau=0.5)  # sigmoid(0.5 / tau) = 0.731059
    tensor([0.7311, 0.2689], dtype=torch.float64)
    """
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    mu_t = as_policy(mu, "mu", size=k)
    tau_f = as_positive_float(tau, "tau")
    nu_t = mu_t if nu is None else as_policy(nu, "nu", size=k)
    # (P - 1/2) nu differs from P nu by the constant 1/2 (the normalisation cancels it) and is
    # exact where P is within 1e-10 of 1/2: P - 1/2 is exact for P in [1/4, 1] (Sterbenz), and
    # symmetric games keep their exact ties (e.g. rock-paper-scissors against uniform nu).
    return gibbs_policy(mu_t, (P_t - 0.5) @ nu_t, tau_f)
