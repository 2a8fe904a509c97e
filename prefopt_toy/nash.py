r"""The unregularised (tau = 0) Nash equilibrium of a preference game, and exploitability.

The preference game is symmetric and constant-sum: player one gains :math:`\pi^\top P \pi'`,
player two :math:`1 - \pi^\top P \pi' = \pi'^\top P \pi`. Its value is 1/2, and ``pi`` is an
equilibrium strategy exactly when no action beats it with probability above 1/2,
:math:`\max_y (P\pi)_y \le 1/2` (Munos et al., arXiv:2312.00886v4, Sec. 3; the maximal lotteries
of Fishburn 1984).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor

from ._validate import as_policy, as_preference_matrix

# HiGHS stops at feasibility 1e-7 by default; ask for its tightest tolerances, then polish.
_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
_SUPPORT = 1e-9
# Above this size HiGHS's interior point (with crossover) beats its dual simplex by ~4x on dense
# preference games (K = 1000: ~5 s against ~20 s, benchmarks/README.md); below it the simplex is
# as fast or faster.
_IPM_FROM = 200


def exploitability(P: Any, pi: Any) -> float:
    r"""How much a best response beats ``pi``: :math:`\max_y (P\pi)_y - 1/2 \ge 0`.

    Zero exactly at a Nash equilibrium of the (unregularised) preference game; never negative,
    because :math:`\pi^\top P \pi = 1/2` makes ``pi`` itself achieve 1/2 on average.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.
    pi : array-like, shape (K,)
        A policy.

    Returns
    -------
    float in [0, 1/2].

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3 (the preference game and its value 1/2).

    Examples
    --------
    >>> exploitability([[0.5, 0.9], [0.1, 0.5]], [0.0, 1.0])  # action 0 beats it w.p. 0.9
    0.4
    """
    P_t = as_preference_matrix(P)
    pi_t = as_policy(pi, "pi", size=P_t.shape[0])
    # Clamp: round-off may give -1e-17 where the exact value is 0.
    return max(float((P_t @ pi_t).max()) - 0.5, 0.0)


def nash_equilibrium(P: Any) -> Tensor:
    r"""An unregularised Nash equilibrium of the preference game, by linear programming.

    Solves :math:`\max_{\pi \in \Delta, v} v` subject to :math:`(P^\top \pi)_y \ge v` for every
    ``y`` with scipy's HiGHS solver (dual simplex below K = 200, interior point with crossover
    above), then polishes the solution on its support: the
    indifference equations :math:`(P\pi)_y = 1/2` on the support together with
    :math:`\sum \pi = 1` are solved by least squares, and the polished point is kept when it is a
    valid equilibrium with smaller exploitability. In generic games the equilibrium is unique;
    otherwise the one HiGHS finds is returned.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.

    Returns
    -------
    Tensor, shape (K,), float64, with ``exploitability(P, pi)`` at round-off level (~1e-15 for
    small K). No gradient (scipy inside).

    Raises
    ------
    ValueError
        If ``P`` is not a valid preference matrix.
    RuntimeError
        If HiGHS reports failure.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3; Dantzig (1951) on zero-sum games as linear
    programs.

    Examples
    --------
    >>> from prefopt_toy.games import rock_paper_scissors
    >>> nash_equilibrium(rock_paper_scissors(1.0))
    tensor([0.3333, 0.3333, 0.3333], dtype=torch.float64)
    """
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    Pn = P_t.numpy()
    # Variables (pi_0..pi_{k-1}, v); minimise -v; v - (P^T pi)_y <= 0; sum(pi) = 1; pi >= 0.
    c = np.zeros(k + 1)
    c[-1] = -1.0
    A_ub = np.hstack([-Pn.T, np.ones((k, 1))])
    A_eq = np.hstack([np.ones((1, k)), np.zeros((1, 1))])
    bounds = [(0.0, None)] * k + [(None, None)]
    method = "highs-ipm" if k >= _IPM_FROM else "highs"
    result = linprog(c, A_ub=A_ub, b_ub=np.zeros(k), A_eq=A_eq, b_eq=[1.0], bounds=bounds,
                     method=method, options=_HIGHS)
    if result.status != 0:
        raise RuntimeError(f"nash_equilibrium: HiGHS failed ({result.message})")
    pi = np.clip(result.x[:k], 0.0, None)
    pi /= pi.sum()
    pi = _polish(Pn, pi)
    return torch.tensor(pi, dtype=torch.float64)


def _polish(Pn: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Re-solve the indifference equations on the LP's support; keep the result if it is better."""
    support = np.flatnonzero(pi > _SUPPORT)
    A = Pn[np.ix_(support, support)] - 0.5  # (P pi)_S = 1/2 on the support, i.e. A pi_S = 0
    system = np.vstack([A, np.ones((1, support.size))])
    rhs = np.zeros(support.size + 1)
    rhs[-1] = 1.0
    sol, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    if (sol < 0).any():
        return pi
    candidate = np.zeros_like(pi)
    candidate[support] = sol / sol.sum()
    if (Pn @ candidate).max() <= (Pn @ pi).max():
        return candidate
    return pi
