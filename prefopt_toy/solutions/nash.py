r"""The unregularised (tau = 0) Nash equilibrium of a preference game, and exploitability.

The preference game is symmetric and constant-sum: player one gains :math:`\pi^\top P \pi'`,
player two :math:`1 - \pi^\top P \pi' = \pi'^\top P \pi`. Its value is 1/2, and ``pi`` is an
equilibrium strategy exactly when no action beats it with probability above 1/2,
:math:`\max_y (P\pi)_y \le 1/2` (Munos et al., arXiv:2312.00886v4, Sec. 3; the maximal lotteries
of Fishburn 1984).

Both functions work with the skew-symmetric part :math:`A = (P - P^\top)/2` of ``P``, which is
:math:`P - 1/2` when ``P + P.T = 1`` holds exactly and removes the slack that input validation
allows otherwise (``P + P.T = 1`` is checked to 1e-9, e.g. for matrices read from text). ``A`` is
skew in floating point too (``fl(a - b) = -fl(b - a)``), so :math:`\pi^\top A \pi = 0` and the game
value is exactly 0 for it. Working with ``A`` instead of ``P`` also keeps the relative accuracy of
games whose entries all lie within 1e-10 of 1/2 (``P - 1/2`` is exact for ``P`` in [1/4, 1]).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor

from prefopt_toy._validate import as_policy, as_preference_matrix

# HiGHS stops at feasibility 1e-7 by default; ask for its tightest tolerances (the bounds of these
# options are 1e-10), then refine, polish and certify.
_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


_SUPPORT = 1e-9


# Above this size HiGHS's interior point (with crossover) beats its dual simplex by ~4x on dense
# preference games (K = 1000: ~5 s against ~20 s, benchmarks/README.md); below it the simplex is
# as fast or faster.
_IPM_FROM = 200


_EPS = float(np.finfo(np.float64).eps)


# Certificate: exploitability <= CERT_ULPS * K * eps * max|A| (see ``certificate_threshold``).
CERT_ULPS = 16.0


# Iterative-refinement rounds (one extra LP each) when the first LP answer is not certified.
_REFINE_ROUNDS = 2


# Recovery when refinement does not certify (see ``_solve_game``): actions within this fraction of
# the game's scale of the best response form the zoomed subgame; subgames nest at most this deep;
# neighbouring supports are tried for supports of at most _NEIGHBOUR_MAX actions, adding one of
# the _NEIGHBOUR_ADD most violated actions, for at most _SEARCH_ROUNDS rounds of best improvement.
_ZOOM = 1e-6


_MAX_DEPTH = 3


_NEIGHBOUR_MAX = 64


_NEIGHBOUR_ADD = 8


_SEARCH_ROUNDS = 8


# Exact integer simplex (last resort): games of at most this many actions (K = 32: ~0.5 s),
# at most this many pivots.
_EXACT_MAX = 32


_EXACT_PIVOTS = 2000


def _skew(P_t: Tensor) -> Tensor:
    """The skew-symmetric part ``(P - P.T) / 2`` (exactly skew in floating point)."""
    return (P_t - P_t.T) * 0.5


def certificate_threshold(k: int, scale: float) -> float:
    r"""Largest exploitability :func:`nash_equilibrium` accepts as round-off: ``16 K eps scale``.

    ``scale = max|P - 1/2|`` is the size of the game (the equilibrium set is invariant under
    positive scaling of ``P - 1/2``, so only relative exploitability is meaningful) and ``eps``
    is float64's machine epsilon. Two round-off effects are unavoidable, whatever the solver:
    storing an exact equilibrium in float64 and renormalising it moves each entry by a relative
    ``eps`` at most, which changes :math:`(A\pi)_y` by at most about ``eps * scale``; and the
    float64 evaluation of :math:`(A\pi)_y`, a K-term dot product with terms of size at most
    ``scale * pi_j``, carries an error of at most
    :math:`\gamma_K\,\text{scale} \approx K\,\text{eps}\,\text{scale}`
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., Eq. (3.5)). An
    exploitability below ``16 K eps scale`` is therefore indistinguishable from 0 in float64; one
    above it is a genuinely wrong answer (the Condorcet loser of a game of scale 1e-10 has relative
    exploitability 1, fifteen orders of magnitude above the threshold).
    """
    return CERT_ULPS * k * _EPS * scale


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

    Notes
    -----
    Computed as :math:`\max(\max_y (A\pi)_y, 0)` with :math:`A = (P - P^\top)/2`, which equals
    :math:`\max_y (P\pi)_y - 1/2` when ``P + P.T = 1`` exactly, keeps its relative accuracy for
    games whose entries are all close to 1/2 (no cancellation against the 1/2), and is never
    negative in exact arithmetic for any ``P`` that passes validation (the clamp removes
    round-off of order ``K eps max|P - 1/2|``).

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
    return max(float((_skew(P_t.detach()) @ pi_t.detach()).max()), 0.0)


def nash_equilibrium(P: Any) -> Tensor:
    r"""An unregularised Nash equilibrium of the preference game, by linear programming, certified.

    Solves :math:`\max_{\pi \in \Delta, v} v` subject to :math:`(A^\top \pi)_y \ge v` for every
    ``y``, with :math:`A = (P - P^\top)/2` scaled by a power of two to :math:`\max|A| \in [1/2, 1)`
    (exact, and the equilibrium set is invariant under positive scaling), with scipy's HiGHS
    solver (dual simplex below K = 200, interior point with crossover above), then polishes the
    answer on its support (the indifference equations :math:`(A\pi)_y = 0` on the support with
    :math:`\sum \pi = 1`, by least squares, kept when better) and **certifies** it: its
    exploitability must be at most :func:`certificate_threshold` ``= 16 K eps max|P - 1/2|``, the
    round-off level of float64 (see there). An uncertified answer is never returned.

    HiGHS works to absolute tolerances of 1e-10 and drops matrix entries below 1e-9, so structure
    finer than that (near-tied actions, near twins) can make its answer wrong by more than
    round-off: for ``bradley_terry([0, 1e-10, 2e-10, 3e-10])`` the unscaled LP returned the
    Condorcet loser. When the first answer is not certified, the solver tries, in order and
    judging every candidate by the same certificate: iterative refinement of the LP (up to 2
    rounds; Gleixner, Steffy & Wolter, INFORMS J. Comput. 28(3), 2016); the subgame of the actions
    within 1e-6 (relative) of the best response, rescaled and solved recursively; the supports
    next to the answer's (one action dropped, added or swapped), polished; and, for games or
    relevant subgames of at most 32 actions, an exact simplex in integer arithmetic. If none
    certifies, a RuntimeError gives the exploitability reached and the threshold. In generic
    games the equilibrium is unique; otherwise the one found is returned (the uniform policy
    when ``P`` is exactly 1/2 everywhere, where every policy is an equilibrium).

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.

    Returns
    -------
    Tensor, shape (K,), float64, with ``exploitability(P, pi) <= 16 K eps max|P - 1/2|``
    (~1e-15 for small K; exactly 0 at a pure equilibrium). No gradient (scipy inside).

    Raises
    ------
    ValueError
        If ``P`` is not a valid preference matrix.
    RuntimeError
        If HiGHS reports failure, or if no answer can be certified (the message gives the
        exploitability reached and the threshold).

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3; Dantzig (1951) on zero-sum games as linear
    programs; Gleixner, Steffy & Wolter (2016) on iterative refinement for linear programming.

    Examples
    --------
    >>> from prefopt_toy.games.constructors import rock_paper_scissors
    >>> nash_equilibrium(rock_paper_scissors(1.0))
    tensor([0.3333, 0.3333, 0.3333], dtype=torch.float64)
    """
    P_t = as_preference_matrix(P).detach()
    k = P_t.shape[0]
    A = _skew(P_t).numpy()
    scale = float(np.abs(A).max())
    if scale == 0.0:  # every policy is an equilibrium (exploitability exactly 0)
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    As = _rescale(A)
    threshold = certificate_threshold(k, float(np.abs(As).max()))
    pi, gap = _solve_game(As, threshold, depth=0)
    if not gap <= threshold:
        unit = scale / float(np.abs(As).max())
        raise RuntimeError(
            f"nash_equilibrium could not certify its answer: exploitability {gap * unit!r} exceeds "
            f"the round-off threshold {threshold * unit!r} = 16 K eps max|P - 1/2| (K = {k}, "
            f"max|P - 1/2| = {scale!r}); please report this game"
        )
    return torch.tensor(pi, dtype=torch.float64)


def _rescale(A: np.ndarray) -> np.ndarray:
    """``A`` times the power of two that brings ``max|A|`` into [1/2, 1) (exact; ``A != 0``).

    HiGHS's absolute tolerances (1e-10) then mean the same for a game of scale 1e-10 as for one of
    scale 1/2; without it a game whose entries all lie within 1e-10 of 1/2 looks like a tie.
    """
    return np.ldexp(A, -math.frexp(float(np.abs(A).max()))[1])


def _solve_game(As: np.ndarray, threshold: float, depth: int) -> tuple[np.ndarray, float]:
    """Best candidate found for the game ``As`` and its exploitability (certified if <= threshold).

    1. The LP, polished on its support.
    2. Iterative refinement (Gleixner, Steffy & Wolter 2016): with ``pi0`` the current point and
       ``g`` its exploitability, ``pi = pi0 + g f`` where ``f`` solves the LP of the residual game
       ``max w`` s.t. ``w + (As f)_y <= -(As pi0)_y / g``, ``sum f = 0``, ``f >= -pi0 / g`` (its
       optimum is ``w = 0``), so the corrections are computed from data of size ~1 again.
    3. Zoom: the actions that are at most ``_ZOOM * max|As|`` below the best response to ``pi``
       (with ``pi``'s support) form a subgame that may live at a much smaller scale (a cluster
       of near-tied actions that dominates the rest); HiGHS drops matrix entries below 1e-9
       (its ``small_matrix_value``) and so cannot see that structure in the full game. The
       subgame, rescaled to size 1, is solved recursively and embedded.
    4. Neighbouring supports: ``pi``'s support less one action, or plus one of the most
       violated best responses, each polished (the LP's tolerances can put mass on an action
       that is worse by less than 1e-10, which changes the support by one).
    5. At the top level only, for a relevant subgame (as in 3) or a game of at most
       ``_EXACT_MAX`` actions: the exact equilibrium by the simplex method in integer arithmetic
       (``_exact_equilibrium``), rounded to float64.

    Every candidate is judged by its exploitability in the full game ``As``; only the
    caller's certificate decides whether it is accepted.
    """
    k = As.shape[0]
    pi = _polish(As, _solve_lp(As, np.zeros(k), np.zeros(k), total=1.0))
    gap = _gap(As, pi)
    for _ in range(_REFINE_ROUNDS):
        if gap <= threshold:
            return pi, gap
        try:
            f = _solve_lp(As, -(As @ pi) / gap, -pi / gap, total=0.0)
        except RuntimeError:
            break
        candidate = np.clip(pi + gap * f, 0.0, None)
        candidate = _polish(As, candidate / candidate.sum())
        candidate_gap = _gap(As, candidate)
        if not candidate_gap < gap:
            break
        pi, gap = candidate, candidate_gap
    if gap <= threshold:
        return pi, gap
    zoom_depth = depth
    for _ in range(_SEARCH_ROUNDS):  # hill-climb over candidates, best improvement first
        best, best_gap = None, gap
        for candidate in _candidates(As, pi, threshold, zoom_depth):
            candidate_gap = _gap(As, candidate)
            if candidate_gap < best_gap:
                best, best_gap = candidate, candidate_gap
                if best_gap <= threshold:
                    return best, best_gap
        if best is None:
            break
        pi, gap = best, best_gap
        zoom_depth = _MAX_DEPTH  # zoom only from the LP's answer
    if depth == 0:  # step 5, at the top level only: exact rational arithmetic on a small game
        for candidate in _exact_candidates(As, pi):
            candidate_gap = _gap(As, candidate)
            if candidate_gap < gap:
                pi, gap = candidate, candidate_gap
                if gap <= threshold:
                    break
    return pi, gap


def _candidates(As: np.ndarray, pi: np.ndarray, threshold: float, depth: int):
    """Candidate equilibria near ``pi`` (steps 3 and 4 of ``_solve_game``), lazily."""
    k = As.shape[0]
    wins = As @ pi
    near = (wins >= wins.max() - _ZOOM * float(np.abs(As).max())) | (pi > _SUPPORT)
    keep = np.flatnonzero(near)
    if keep.size < k and depth < _MAX_DEPTH:
        sub = As[np.ix_(keep, keep)]
        if float(np.abs(sub).max()) == 0.0:
            x = np.full(keep.size, 1.0 / keep.size)
        else:
            sub = _rescale(sub)
            sub_threshold = certificate_threshold(keep.size, float(np.abs(sub).max()))
            x, _ = _solve_game(sub, sub_threshold, depth + 1)
        candidate = np.zeros(k)
        candidate[keep] = x
        yield candidate
    support = np.flatnonzero(pi > _SUPPORT)
    if support.size > _NEIGHBOUR_MAX:
        return
    drops = support[np.argsort(pi[support])]  # smallest mass first
    if support.size > 1:
        for drop in drops:
            yield _polish_on(As, np.setdiff1d(support, [drop]))
    outside = np.setdiff1d(np.arange(k), support)
    violators = outside[np.argsort(-wins[outside])][:_NEIGHBOUR_ADD]
    for add in violators[wins[violators] > threshold]:
        grown = np.union1d(support, [add])
        yield _polish_on(As, grown)
        for drop in drops:  # swap: the LP may have picked the near-tied twin of ``add``
            yield _polish_on(As, np.setdiff1d(grown, [drop]))


def _exact_candidates(As: np.ndarray, pi: np.ndarray):
    """Step 5 of ``_solve_game``: exact equilibria of the relevant subgame, then of the game.

    The relevant subgame is ``pi``'s support with the actions within ``_ZOOM * max|As|`` of the
    best response to ``pi``; only games of at most ``_EXACT_MAX`` actions are solved exactly.
    """
    k = As.shape[0]
    wins = As @ pi
    keep = np.flatnonzero((wins >= wins.max() - _ZOOM * float(np.abs(As).max())) | (pi > _SUPPORT))
    tried = set()
    for subset in (keep, np.arange(k)):
        if subset.size > _EXACT_MAX or subset.size in tried:
            continue
        tried.add(subset.size)
        candidate = np.zeros(k)
        candidate[subset] = _exact_equilibrium(As[np.ix_(subset, subset)])
        yield candidate


def _exact_equilibrium(As: np.ndarray) -> np.ndarray:
    r"""An equilibrium of the skew game ``As`` by the simplex method in exact integer arithmetic.

    Float64 entries are exact dyadic rationals. With :math:`B = A + 1 > 0` entrywise
    (``max|As| < 1``), the classical LP of a matrix game, :math:`\max \mathbf 1^\top y` subject
    to :math:`By \le \mathbf 1`, :math:`y \ge 0`, has an optimum ``y*`` whose normalisation
    :math:`q = y^*/\mathbf 1^\top y^*` is an optimal strategy of the column player
    (von Neumann; e.g. Dantzig 1951); for a skew-symmetric game that is the condition
    :math:`(Aq)_y \le 0` for every ``y``, i.e. an equilibrium. The all-slack basis is feasible
    with right-hand side 1 (no degeneracy at the start). It is solved by a dense tableau simplex,
    Dantzig's rule while pivots make progress and Bland's rule (which cannot cycle) after ``K``
    degenerate pivots in a row. ``B`` is scaled to integers by a power of two and the tableau kept
    integral by Edmonds' integer-preserving pivot
    :math:`t_{ij} \leftarrow (p\,t_{ij} - t_{ic} t_{rj}) / d` (exact division; ``d`` the previous
    pivot, the tableau's common denominator), so entries stay of the size of the basis minors.
    Returns the exact solution correctly rounded to float64 and renormalised.

    References
    ----------
    Dantzig (1951), "A proof of the equivalence of the programming problem and the game
    problem"; Edmonds (1967), J. Res. Nat. Bur. Standards 71B; Bland (1977), Math. Oper. Res. 2.
    """
    k = As.shape[0]
    entries = [[Fraction(float(a)) for a in row] for row in As]
    denominator = max(f.denominator for row in entries for f in row)  # a power of 2
    n = 2 * k  # columns: y (k), slacks (k); then the right-hand side
    rows = []
    for i in range(k):
        # (B y)_i <= 1 times the denominator, an integer row; its slack is scaled alike.
        row = [int(f * denominator) + denominator for f in entries[i]] + [0] * k + [denominator]
        row[k + i] = 1
        rows.append(row)
    cost = [-1] * k + [0] * (k + 1)  # reduced costs of max sum(y), times d; last: objective
    basis = list(range(k, 2 * k))
    d = 1
    stalled = 0  # consecutive degenerate pivots; past k of them, Bland's rule for good
    for _ in range(_EXACT_PIVOTS):
        if stalled <= k:  # Dantzig's rule: most negative reduced cost (common denominator d)
            entering = min(range(n), key=cost.__getitem__)
            entering = entering if cost[entering] < 0 else None
        else:  # Bland's rule: lowest index, terminates
            entering = next((j for j in range(n) if cost[j] < 0), None)
        if entering is None:
            break
        leaving = None
        for i, row in enumerate(rows):
            if row[entering] > 0:
                if leaving is None:
                    leaving = i
                    continue
                best = rows[leaving]
                lhs, rhs = row[-1] * best[entering], best[-1] * row[entering]  # ratio comparison
                if lhs < rhs or (lhs == rhs and basis[i] < basis[leaving]):
                    leaving = i
        if leaving is None:  # unbounded: impossible, B > 0
            break
        pivot = rows[leaving]
        p = pivot[entering]
        for row in rows + [cost]:
            if row is not pivot:
                factor = row[entering]
                row[:] = [(p * x - factor * y) // d for x, y in zip(row, pivot)]
        stalled = stalled + 1 if pivot[-1] == 0 else 0
        d = p
        basis[leaving] = entering
    x = np.zeros(k)
    for i, j in enumerate(basis):
        if j < k:
            x[j] = rows[i][-1] / rows[i][j]  # int / int: correctly rounded
    total = x.sum()
    return x / total if total > 0 else np.full(k, 1.0 / k)


def _gap(As: np.ndarray, pi: np.ndarray) -> float:
    """Exploitability of ``pi`` in the (scaled) skew game, clamped at 0."""
    return max(float((As @ pi).max()), 0.0)


def _solve_lp(As: np.ndarray, rhs: np.ndarray, lower: np.ndarray, total: float) -> np.ndarray:
    """``argmax w`` s.t. ``w + (As x)_y <= rhs_y``, ``sum x = total``, ``x >= lower``: ``x``.

    With ``rhs = 0``, ``lower = 0``, ``total = 1`` this is the maximin LP of the game (``A`` skew:
    ``-(A^T pi)_y = (A pi)_y``).
    """
    k = As.shape[0]
    c = np.zeros(k + 1)
    c[-1] = -1.0
    A_ub = np.hstack([As, np.ones((k, 1))])
    A_eq = np.hstack([np.ones((1, k)), np.zeros((1, 1))])
    bounds = [(float(lo), None) for lo in lower] + [(None, None)]
    method = "highs-ipm" if k >= _IPM_FROM else "highs"
    result = linprog(
        c,
        A_ub=A_ub,
        b_ub=rhs,
        A_eq=A_eq,
        b_eq=[total],
        bounds=bounds,
        method=method,
        options=_HIGHS,
    )
    if result.status != 0:
        raise RuntimeError(f"nash_equilibrium: HiGHS failed ({result.message})")
    x = result.x[:k]
    if total == 1.0:
        x = np.clip(x, 0.0, None)
        x = x / x.sum()
    return x


def _polish_on(As: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Least-squares solution of ``(As pi)_S = 0``, ``sum pi = 1`` on ``support`` (zeros elsewhere).

    Returns ``pi`` clipped at 0 and renormalised: a candidate for the caller to judge.
    """
    A = As[np.ix_(support, support)]
    system = np.vstack([A, np.ones((1, support.size))])
    rhs = np.zeros(support.size + 1)
    rhs[-1] = 1.0
    sol, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    candidate = np.zeros(As.shape[0])
    if not np.isfinite(sol).all() or sol.max() <= 0:
        candidate[support] = 1.0 / support.size
        return candidate
    candidate[support] = np.clip(sol, 0.0, None)
    return candidate / candidate.sum()


def _polish(As: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Re-solve the indifference equations on ``pi``'s support; keep the result if it is better.

    Backward stable (least squares), so the polished point's win rates on the support are 0 to
    within ~eps, whatever the conditioning; discarded when the solution has a negative entry.
    """
    support = np.flatnonzero(pi > _SUPPORT)
    A = As[np.ix_(support, support)]
    system = np.vstack([A, np.ones((1, support.size))])
    rhs = np.zeros(support.size + 1)
    rhs[-1] = 1.0
    sol, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    if (sol < 0).any() or not np.isfinite(sol).all():
        return pi
    candidate = np.zeros_like(pi)
    candidate[support] = sol / sol.sum()
    if _gap(As, candidate) <= _gap(As, pi):
        return candidate
    return pi
