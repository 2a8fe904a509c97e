r"""What a raw, order-biased judge does to each algorithm's fixed point, exactly.

A judge ``J`` (``games.judges``) is asked "is the FIRST shown answer better?"; ``J[i, j]`` is the
probability of "yes" with ``i`` first. An algorithm sees the judge only through the pairs it shows
and the order it shows them in. At the population level (every expectation an exact finite sum)
this module works out, per algorithm, the matrix the algorithm actually optimises against
(``effective_preference``), and the fixed point it then reaches, next to the fixed point under the
symmetrised judge :math:`P_{\mathrm{sym}} = (J + 1 - J^\top)/2` (``judge_fixed_points``).

**Exchangeable pairs see** :math:`P_{\mathrm{sym}}`. Let the compared ordered pair be
:math:`(y, y') \sim s \times s` (offline DPO / IPO with ``nu x nu``, online DPO / IPO with
:math:`\pi \times \pi`, IPO-MD with the mixture), shown in the order drawn, and let the per-pair
loss depend on the margin through :math:`\ell(h)` for the winner,
:math:`h(y, y') = -h(y', y)`. The expected loss is

.. math:: \sum_{y,y'} s_y s_{y'}\big[J_{yy'}\,\ell(h_{yy'}) + (1 - J_{yy'})\,\ell(h_{y'y})\big].

Relabel :math:`(y, y') \to (y', y)` in half of it (the weight :math:`s_y s_{y'}` is symmetric):
the coefficient of :math:`\ell(h_{yy'})` becomes
:math:`\tfrac12 s_y s_{y'}\,[J_{yy'} + 1 - J_{y'y}] = s_y s_{y'}\,P_{\mathrm{sym}}[y, y']`, so the
loss, its gradient and its minimisers are those of the order-consistent judge
:math:`P_{\mathrm{sym}}`, for every ``theta``: the position bias ``B`` is invisible, whatever it
is. The same holds for a deterministic order as long as the pair's two members are exchangeable
(``order="both"``: Lee et al., arXiv:2309.00267v3, Sec. 2.1.2, average both orders).

**Nash-MD sees** :math:`J` **itself.** Nash-MD (Munos et al., arXiv:2312.00886v4, Eq. (8)-(9))
and Nash-MD-PG (ibid., Sec. 7) ask "does :math:`y \sim \pi` beat :math:`y' \sim \pi^\mu_t`?": the
two slots hold different distributions and the policy's answer is shown first, so the payoff is
:math:`(J s)_y`, not :math:`(P_{\mathrm{sym}} s)_y`. With
:math:`J - \tfrac12 = (P_{\mathrm{sym}} - \tfrac12) + \tfrac12 B` the fixed point solves

.. math:: \pi \propto \mu \exp\big(\big[(P_{\mathrm{sym}} - \tfrac12) s(\pi) + \tfrac12 B\, s(\pi)\big]/\tau\big),
          \qquad s(\pi) = \pi^{1-m}\mu^m/Z,

the regularised "Nash equilibrium" of a game that is no longer zero-sum: the symmetric part
:math:`\tfrac12 B` adds a coordination term (a potential game,
:math:`\tfrac12 B\pi = \nabla_\pi \tfrac14\pi^\top B\pi`). A constant ``B`` (``lapse_judge``)
shifts every payoff alike and cancels in the normalisation: only the *non-uniform* part of the
bias moves Nash-MD. ``raw_regularized_fixed_point`` solves it by Newton, continued from the
symmetrised judge's certified solution (predictor-corrector in the bias, never jumping branch),
and certifies the residual; where the bias is large against ``tau`` the branch can fold (meet a
second fixed point and vanish) before the full bias, and it says so. Munos et al.'s convergence
proof (Theorem 1) uses :math:`P + P^\top = 1`; with a non-constant ``B`` it no longer applies, so
this is where Nash-MD stops *if* it converges (the tests iterate constant-step Nash-MD on a
biased judge and reach it).

**Offline data with an order convention** (``slots=(nu_first, nu_second)``: the first shown
answer drawn from ``nu_first``, e.g. a reference answer always shown first): the same relabelling
gives pair weights :math:`W = \tfrac12(\nu_1\nu_2^\top + \nu_2\nu_1^\top)` and

.. math:: P_{\mathrm{eff}}[y, y'] = P_{\mathrm{sym}}[y, y'] + \tfrac12 B[y, y']\,
          \frac{\nu_1(y)\nu_2(y') - \nu_1(y')\nu_2(y)}{\nu_1(y)\nu_2(y') + \nu_1(y')\nu_2(y)},

so the bias leaks in exactly where the two slots' distributions differ (``nu_first = nu_second``
gives back :math:`P_{\mathrm{sym}}`). The DPO optimum is then the weighted Bradley-Terry fit under
``W`` (not a product, so ``solutions.bt`` does not apply: ``_weighted_bt_fit``), the IPO optimum
a weighted least-squares fit of :math:`(P_{\mathrm{eff}} - 1/2)/\tau` (Azar et al.,
arXiv:2310.12036v2, Sec. 5; the normal equations are a graph Laplacian).

**Self-rewarding** (Yuan et al., arXiv:2401.10020v3): ``self_rewarding_dpo`` runs iterative DPO
with the policy as its own judge, each round solved exactly (``rlhf_optimum`` with pairs from
the round's policy, the population optimum of DPO: Azar et al., App. B Prop. 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import (
    DTYPE,
    _detached,
    as_int,
    as_policy,
    as_positive_float,
    as_preference_matrix,
    as_unit_interval,
)
from prefopt_toy.dynamics import ALGORITHMS
from prefopt_toy.games.judges import check_judge_matrix, symmetrize_judge
from prefopt_toy.solutions.optima import gibbs_policy, ipo_optimum, rlhf_optimum
from prefopt_toy.solutions.regularized import ipo_md_fixed_point, regularized_nash

__all__ = [
    "EXCHANGEABLE",
    "FIXED_POINT_ALGORITHMS",
    "JudgeFixedPoint",
    "OFFLINE",
    "OPPONENT",
    "ORDERS",
    "SelfRewardingRun",
    "effective_pair_weights",
    "effective_preference",
    "judge_fixed_points",
    "raw_regularized_fixed_point",
    "self_judge",
    "self_rewarding_dpo",
    "self_rewarding_residual",
]

OPPONENT: tuple[str, ...] = ("nash_md", "nash_md_pg", "kto")
"""Algorithms whose comparison puts one answer against an opponent's from another distribution,
the answer being judged shown first: they see ``J``. Nash-MD / Nash-MD-PG (the policy's sample
against the mixture's) and KTO (an example labelled desirable if it beats a data sample,
``dynamics.unpaired``: :math:`d = J D`)."""

EXCHANGEABLE: tuple[str, ...] = tuple(a for a in ALGORITHMS if a not in OPPONENT)
"""Every other ``ALGORITHMS`` entry: both members of a pair come from one distribution."""

OFFLINE: tuple[str, ...] = ("dpo", "ipo", "slic", "rlhf", "rso") + tuple(
    a for a in ALGORITHMS if a.startswith("gpo_")
)
"""Entries with a fixed data distribution, the ones a two-slot dataset (``slots``) applies to."""

ORDERS: tuple[str, ...] = ("sampled", "reversed", "both", "index")
"""How the pair is shown: as drawn (Nash-MD: the policy's answer first), the other way round,
both orders averaged (Lee et al.), or the lower action index first (a canonical order)."""

FIXED_POINT_ALGORITHMS: tuple[str, ...] = (
    "dpo",
    "ipo",
    "online_ipo",
    "ipo_md",
    "nash_md",
    "nash_md_pg",
)
"""Algorithms whose population fixed point ``judge_fixed_points`` computes."""

DEFAULT_TOL = 1e-12


def _index_order(J: Tensor) -> Tensor:
    """The preference seen when the lower index is always shown first (upper triangle of ``J``)."""
    k = J.shape[0]
    mask = torch.ones(k, k, dtype=torch.bool).triu(1)
    u = torch.where(mask, J, torch.zeros((), dtype=DTYPE))
    lower = torch.where(mask, 1.0 - u, torch.zeros((), dtype=DTYPE)).T
    return u + lower + 0.5 * torch.eye(k, dtype=DTYPE)


def _slots(slots: Any, k: int) -> tuple[Tensor, Tensor]:
    if not isinstance(slots, (tuple, list)) or len(slots) != 2:
        raise ValueError("slots must be a pair (nu_first, nu_second) of policies")
    return (
        as_policy(_detached(slots[0]), "slots[0]", size=k),
        as_policy(_detached(slots[1]), "slots[1]", size=k),
    )


def effective_pair_weights(slots: Any) -> Tensor:
    r"""Weights of the unordered pairs of a two-slot dataset: :math:`W = (\nu_1\nu_2^\top + \nu_2\nu_1^\top)/2`.

    ``W[y, y']`` is the probability of the ordered pair :math:`(y, y')` after the order is
    forgotten (each unordered pair split evenly over its two orders); it sums to 1 and is
    symmetric. A product :math:`\nu\nu^\top` iff :math:`\nu_1 = \nu_2`.

    Parameters
    ----------
    slots : pair of array-likes, shape (K,) each
        ``(nu_first, nu_second)``.

    Returns
    -------
    Tensor, shape (K, K), float64.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (5) (the pair distribution of the population loss).
    """
    if not isinstance(slots, (tuple, list)) or len(slots) != 2:
        raise ValueError("slots must be a pair (nu_first, nu_second) of policies")
    n1 = as_policy(_detached(slots[0]), "slots[0]")
    n2 = as_policy(_detached(slots[1]), "slots[1]", size=n1.shape[0])
    outer = torch.outer(n1, n2)
    return 0.5 * (outer + outer.T)


def effective_preference(
    J: Any, algorithm: str, order: str = "sampled", *, slots: Any = None
) -> Tensor:
    r"""The matrix an algorithm optimises against when its labels come from the ordered judge ``J``.

    Exact at the population level (module docstring for the proofs):

    - exchangeable pairs (every ``ALGORITHMS`` entry but those of ``OPPONENT``), ``order``
      "sampled", "reversed" or "both": :math:`P_{\mathrm{sym}} = (J + 1 - J^\top)/2`;
    - Nash-MD / Nash-MD-PG / KTO (``OPPONENT``), "sampled" (the judged answer first): ``J``
      itself, a payoff matrix with :math:`J + J^\top \ne 1` in general; "reversed" (the
      opponent's first): :math:`1 - J^\top`; "both": :math:`P_{\mathrm{sym}}`;
    - any algorithm, "index" (the lower action index always first): the preference matrix with
      upper triangle ``J[i, j]`` (``i < j``), lower ``1 - J[i, j]``, diagonal 1/2;
    - offline algorithms with ``slots=(nu_first, nu_second)``, "sampled": the
      :math:`P_{\mathrm{eff}}` of the module docstring (``nu_first`` in the first slot),
      "reversed" the same with the slots swapped (for the pair weights see
      ``effective_pair_weights``).

    Parameters
    ----------
    J : array-like, shape (K, K)
        Raw judge matrix.
    algorithm : str
        A key of ``dynamics.ALGORITHMS``.
    order : {"sampled", "reversed", "both", "index"}, default "sampled"
    slots : pair of policies, optional
        Only for the offline algorithms (``OFFLINE``) with ``order`` "sampled" or "reversed".

    Returns
    -------
    Tensor, shape (K, K), float64
        A preference matrix (``P + P.T == 1``), except for Nash-MD with "sampled" / "reversed".

    Raises
    ------
    ValueError
        Unknown ``algorithm`` or ``order``, malformed ``J`` or ``slots``, or ``slots`` for an
        algorithm that has no fixed data distribution. A pair the slots never compare (zero
        weight) gets 1/2: it does not enter the loss.

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1.2 (both orders averaged); Zheng et al.,
    arXiv:2306.05685v4, Sec. 3.3; Munos et al., arXiv:2312.00886v4, Eq. (8)-(9);
    Calandriello et al., arXiv:2403.08635v1, Sec. 4-5.

    Examples
    --------
    >>> J = [[0.5, 0.9], [0.3, 0.5]]
    >>> effective_preference(J, "online_ipo")[0, 1]  # (0.9 + 1 - 0.3) / 2
    tensor(0.8000, dtype=torch.float64)
    >>> effective_preference(J, "nash_md")[1, 0]  # the raw J
    tensor(0.3000, dtype=torch.float64)
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    J_t = check_judge_matrix(J)
    if slots is not None:
        if algorithm not in OFFLINE:
            raise ValueError(
                f"slots apply only to the offline algorithms {OFFLINE} (a fixed two-slot "
                f"dataset), got algorithm {algorithm!r}"
            )
        n1, n2 = _slots(slots, J_t.shape[0])
        if order in ("sampled", "reversed"):
            if order == "reversed":
                n1, n2 = n2, n1
            a = torch.outer(n1, n2)  # a[y, y']: y first, y' second
            num = a * J_t + a.T * (1.0 - J_t.T)
            den = a + a.T
            P = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.5)
            return as_preference_matrix(P, "effective preference")
    if order == "index":
        return _index_order(J_t)
    if order == "both" or algorithm not in OPPONENT:
        return symmetrize_judge(J_t)
    return J_t.clone() if order == "sampled" else 1.0 - J_t.T


# ----------------------------------------------------------------------------------------------
# The fixed point of a regularised game whose payoff matrix need not be a preference matrix.


def _mix(x: Tensor, log_mu: Tensor, m: float) -> Tensor:
    return torch.softmax((1.0 - m) * x + m * log_mu, 0)


def _log_map(M: Tensor, x: Tensor, log_mu: Tensor, tau: float, m: float) -> Tensor:
    w = (M - 0.5) @ _mix(x, log_mu, m)
    z = log_mu + (w - w.max()) / tau
    return z - torch.logsumexp(z, 0)


def _residual(M: Tensor, x: Tensor, log_mu: Tensor, tau: float, m: float) -> float:
    return float((x.exp() - _log_map(M, x, log_mu, tau, m).exp()).abs().max())


def _newton(
    M: Tensor, x: Tensor, log_mu: Tensor, tau: float, m: float, tol: float, iters: int = 100
) -> Tensor:
    """Damped Newton on ``G(x) = x - log T(exp x)`` (autograd Jacobian; K is small here)."""
    for _ in range(iters):
        if _residual(M, x, log_mu, tau, m) <= tol:
            return x

        def G(v: Tensor) -> Tensor:
            return v - _log_map(M, v, log_mu, tau, m)

        g = G(x)
        Jac = torch.autograd.functional.jacobian(G, x)
        try:
            d = torch.linalg.solve(Jac, -g)
        except RuntimeError:
            return x
        step, r0 = 1.0, float(g.abs().max())
        while step > 1e-8:
            x_new = x + step * d
            x_new = x_new - torch.logsumexp(x_new, 0)
            if float(G(x_new).abs().max()) < r0 or r0 < 1e-8:
                break
            step *= 0.5
        x = x_new
    return x


def _continue_bias(
    P_sym: Tensor, B: Tensor, x: Tensor, log_mu: Tensor, tau: float, m: float, tol: float
) -> tuple[Tensor, float]:
    """Follow the fixed point of ``P_sym + lam * B / 2`` from ``lam = 0`` (``x``) to ``lam = 1``.

    Predictor-corrector: the tangent ``dx/dlam = -G_x^{-1} G_lam`` predicts the next point, and
    Newton corrects it to 1e-10 in at most 12 iterations (``tol`` at ``lam = 1``). A step is kept
    only if Newton lands within half a step's predicted move of the prediction and the Jacobian's
    determinant keeps its sign, so the path never jumps to another branch; otherwise the step (at
    most 1/16) is halved. A step below 2^-24 means the branch folds there. Returns the last point
    reached and its ``lam``.
    """

    def G(v: Tensor, lam: Tensor) -> Tensor:
        return v - _log_map(P_sym + lam * 0.5 * B, v, log_mu, tau, m)

    def tangent(v: Tensor, lam: float) -> tuple[Tensor, float]:
        G_x, G_l = torch.autograd.functional.jacobian(G, (v, torch.tensor(lam, dtype=DTYPE)))
        return torch.linalg.solve(G_x, -G_l), float(torch.linalg.det(G_x))

    lam, h = 0.0, 1.0 / 16
    t, det = tangent(x, lam)
    while lam < 1.0:
        nxt = min(1.0, lam + h)
        M = P_sym + nxt * 0.5 * B
        goal = tol if nxt == 1.0 else 1e-10
        pred = x + (nxt - lam) * t
        # From the predictor Newton converges in a few steps; more means the step is too long.
        y = _newton(
            M, pred - torch.logsumexp(pred, 0), log_mu, tau, m, goal, 100 if nxt == 1.0 else 12
        )
        ok = bool(torch.isfinite(y).all()) and _residual(M, y, log_mu, tau, m) <= goal
        if ok:
            move = float(((nxt - lam) * t).abs().max())
            ok = float((y - pred).abs().max()) <= 0.5 * move + 1e-9
        if ok:
            try:
                t_new, det_new = tangent(y, nxt)
            except RuntimeError:  # an exactly singular Jacobian: the fold itself
                t_new, det_new = t, 0.0
            ok = det_new * det > 0 and bool(torch.isfinite(t_new).all())
        if ok:
            x, lam, t, det, h = y, nxt, t_new, det_new, min(2.0 * h, 1.0 / 16)
        else:
            h *= 0.5
            if h < 2.0**-24:
                break
    return x, lam


def raw_regularized_fixed_point(
    M: Any, mu: Any, tau: Any, mixture: Any = 0.0, *, tol: float = DEFAULT_TOL
) -> tuple[Tensor, float]:
    r"""A certified solution of :math:`\pi \propto \mu\exp\big((M - \tfrac12)\,s(\pi)/\tau\big)`, ``M`` any judge.

    :math:`s(\pi) = \pi^{1-m}\mu^m/Z`. With ``M`` a preference matrix this is the regularised
    Nash equilibrium (``mixture = 0``) or the IPO-MD fixed point; with a raw judge ``M = J`` it is
    the fixed point of Nash-MD (decreasing steps, ``mixture = 0``) or of Nash-MD with constant
    step ``eta`` and of Nash-MD-PG (``mixture = eta * tau``) querying the judge with the policy's
    answer first (module docstring). Such a game is not zero-sum and may have several fixed
    points when the bias is large against ``tau``; the one returned is the branch continued from
    the symmetrised judge (homotopy :math:`M_\lambda = P_{\mathrm{sym}} + \lambda B/2`,
    :math:`\lambda: 0 \to 1`, from the certified ``regularized_nash`` / ``ipo_md_fixed_point``).

    Parameters
    ----------
    M : array-like, shape (K, K)
        Judge (payoff) matrix, entries in [0, 1].
    mu : array-like, shape (K,)
        Reference policy, strictly positive.
    tau : float > 0
    mixture : float in [0, 1), default 0
    tol : float, default 1e-12
        Certificate: :math:`\max_y |\pi_y - T(\pi)_y| \le` ``tol``.

    Returns
    -------
    (Tensor, float)
        The fixed point, shape (K,), float64, and its residual.

    Raises
    ------
    ValueError
        Malformed input; or the branch folds before the full bias (the message gives the
        ``lambda`` where it ends and the Jacobian's smallest singular value there, about 0: a
        two-action case is tested against a scalar analysis of the fold); or no point certified
        to ``tol`` (the message gives the residual).

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 4 and Eq. (8)-(9); Calandriello et al.,
    arXiv:2403.08635v1, Sec. 5 (the mixture's fixed point).
    """
    M_t = check_judge_matrix(M)
    k = M_t.shape[0]
    mu_t = as_policy(_detached(mu), "mu", size=k, positive=True)
    tau_f = as_positive_float(tau, "tau")
    m = as_unit_interval(mixture, "mixture")
    if m >= 1.0:
        raise ValueError(f"mixture must be < 1 (at 1 the opponent is mu: no game), got {m!r}")
    P_sym = symmetrize_judge(M_t)
    log_mu = mu_t.log()
    if m == 0.0:
        start = regularized_nash(P_sym, mu_t, tau_f)
    else:
        start = ipo_md_fixed_point(P_sym, mu_t, tau_f, m)
    # One application of the map gives finite log-probabilities even where the start underflowed
    # to 0 (small tau): log 0 = -inf would make every Newton step NaN.
    x = _log_map(P_sym, start.log(), log_mu, tau_f, m)
    B = (M_t + M_t.T) - 1.0
    x, reached = _continue_bias(P_sym, B, x, log_mu, tau_f, m, tol)
    if reached < 1.0:
        M_end = P_sym + reached * 0.5 * B

        def G_end(v: Tensor) -> Tensor:
            return v - _log_map(M_end, v, log_mu, tau_f, m)

        s_min = float(torch.linalg.svdvals(torch.autograd.functional.jacobian(G_end, x)).min())
        raise ValueError(
            f"no fixed point certified for this judge at tau = {tau_f!r}: the branch continued "
            f"from the symmetrised judge (M = P_sym + lambda (J + J^T - 1) / 2, lambda from 0 to "
            f"1) ends at lambda = {reached:.4g}, where the smallest singular value of the "
            f"fixed-point equation's Jacobian is {s_min:.3g} (0 at a fold, where this fixed point "
            "meets another and both vanish): the position bias is too large against tau for one "
            "fixed point to follow it (a larger tau, or a smaller bias, keeps it)"
        )
    # Newton's end point is certified on the raw M itself (P_sym + B/2 == M up to round-off).
    res = _residual(M_t, x, log_mu, tau_f, m)
    if not res <= tol:
        x = _newton(M_t, x, log_mu, tau_f, m, tol)
        res = _residual(M_t, x, log_mu, tau_f, m)
    if not res <= tol:
        raise ValueError(
            f"no fixed point certified for this judge at tau = {tau_f!r}: residual {res:.3g} > "
            f"tol = {tol:.3g} (a large position bias against tau can split the fixed points)"
        )
    pi = x.exp()
    return pi / pi.sum(), res


# ----------------------------------------------------------------------------------------------
# Offline optima under non-product pair weights (two-slot datasets).


def _laplacian(W: Tensor) -> Tensor:
    return torch.diag(W.sum(1)) - W


def _check_pair_graph_connected(W: Tensor) -> None:
    """Refuse two-slot data whose pairs leave the offline optimum undetermined.

    The population loss fixes the log-ratio differences only along pairs with weight > 0: an
    action in no pair, or two groups of actions never compared with each other, leave a free
    shift, so there is no unique optimum to report.
    """
    k = W.shape[0]
    seen = {0}
    frontier = [0]
    while frontier:
        i = frontier.pop()
        for j in torch.nonzero(W[i] > 0).flatten().tolist():
            if j not in seen:
                seen.add(j)
                frontier.append(j)
    if len(seen) < k:
        missing = sorted(set(range(k)) - seen)
        raise ValueError(
            "slots must compare every action with the others, directly or through other actions: "
            f"actions {missing} are never compared with action 0, so the offline optimum is not "
            "unique (give both slots full support, or a connected set of pairs)"
        )


def _weighted_ipo_scores(P: Tensor, W: Tensor, tau: float) -> Tensor:
    r"""Minimiser ``g`` of :math:`\sum W_{yy'}(g_y - g_{y'} - (P_{yy'} - 1/2)/\tau)^2` (mean zero)."""
    t = (P - 0.5) / tau
    rhs = (W * t).sum(1)
    return torch.linalg.pinv(_laplacian(W), hermitian=True) @ rhs


def _weighted_bt_fit(P: Tensor, W: Tensor, tol: float = 1e-13) -> Tensor:
    r"""Maximiser of :math:`\sum W_{yy'} P_{yy'} \log\sigma(r_y - r_{y'})` (mean zero), by Newton.

    Concave with Hessian :math:`-2L(W\odot\sigma(1-\sigma))`; raises ``ValueError`` if no finite
    maximiser is reached (a pair-graph with a deterministic cut).
    """
    k = P.shape[0]
    r = torch.zeros(k, dtype=DTYPE)
    for _ in range(200):
        S = torch.sigmoid(r[:, None] - r[None, :])
        grad = (W * (P - S)).sum(1)  # half the gradient (both orders counted)
        if float(grad.abs().max()) <= tol:
            return r - r.mean()
        H = _laplacian(W * S * (1.0 - S))
        step = torch.linalg.pinv(H, hermitian=True) @ grad
        r = r + step
        if not bool(torch.isfinite(r).all()) or float(r.abs().max()) > 700:
            break
    raise ValueError("no finite Bradley-Terry fit for these slots: the data never reverse a pair")


# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeFixedPoint:
    """One algorithm's population fixed point under the raw judge and under its symmetrisation."""

    algorithm: str
    """Key of ``dynamics.ALGORITHMS``."""
    raw: Tensor
    """Fixed point when the algorithm queries the raw judge ``J`` in its own order, (K,)."""
    symmetrized: Tensor
    """Fixed point when it queries ``symmetrize_judge(J)`` (both orders averaged), (K,)."""
    distance: float
    """Total variation ``sum |raw - symmetrized| / 2``."""
    residual: float
    """Certificate of ``raw``: its fixed-point residual (0.0 for a closed form)."""


def _fixed_point(
    name: str, J: Tensor, mu: Tensor, tau: float, mixture: float, order: str, slots: Any
) -> tuple[Tensor, float]:
    M = effective_preference(J, name, order, slots=slots)
    if name in OPPONENT:
        return raw_regularized_fixed_point(M, mu, tau, mixture if name == "nash_md_pg" else 0.0)
    if name == "online_ipo":
        pi, rep = regularized_nash(M, mu, tau, return_report=True)
        return pi, rep.residual
    if name == "ipo_md":
        pi, rep = ipo_md_fixed_point(M, mu, tau, mixture, return_report=True)
        return pi, rep.residual
    if slots is not None and order in ("sampled", "reversed"):
        W = effective_pair_weights(slots)
        _check_pair_graph_connected(W)
        if name == "ipo":
            return gibbs_policy(mu, _weighted_ipo_scores(M, W, tau), 1.0), 0.0
        return gibbs_policy(mu, _weighted_bt_fit(M, W), tau), 0.0
    if name == "ipo":
        return ipo_optimum(M, mu, tau), 0.0
    return rlhf_optimum(M, mu, tau), 0.0


def judge_fixed_points(
    J: Any,
    mu: Any,
    tau: Any,
    algorithms: Any = ("dpo", "ipo", "online_ipo", "nash_md"),
    *,
    order: str = "sampled",
    mixture: Any = 0.0,
    slots: Any = None,
) -> dict[str, JudgeFixedPoint]:
    r"""Each algorithm's population fixed point under the raw judge ``J`` and under :math:`P_{\mathrm{sym}}`.

    - ``dpo``: the RLHF/DPO optimum ``rlhf_optimum(P_eff, mu, tau)`` (pairs from ``mu x mu``),
      or with ``slots`` :math:`\mu\exp(\hat r/\tau)` with :math:`\hat r` the BT fit under the
      pair weights ``W``;
    - ``ipo``: ``ipo_optimum(P_eff, mu, tau)``, or with ``slots`` the weighted least-squares
      scores;
    - ``online_ipo``: ``regularized_nash(P_eff, mu, tau)`` (Calandriello et al., Sec. 4);
    - ``ipo_md``: ``ipo_md_fixed_point(P_eff, mu, tau, mixture)``;
    - ``nash_md``: ``raw_regularized_fixed_point(P_eff, mu, tau)`` (Theorem 1's decreasing
      steps: no mixture at the fixed point); ``nash_md_pg``: the same with ``mixture`` (which is
      also Nash-MD with a constant step ``eta``, ``mixture = eta * tau``).

    ``P_eff = effective_preference(J, name, order, slots=slots)``; the symmetrised column uses
    ``symmetrize_judge(J)`` in place of ``J`` (where every order gives the same ``P_eff``).

    Parameters
    ----------
    J : array-like, shape (K, K)
        Raw judge matrix.
    mu : array-like, shape (K,)
        Reference policy, strictly positive (also the offline data policy).
    tau : float > 0
        KL strength (DPO's ``beta``).
    algorithms : sequence of str
        Among ``FIXED_POINT_ALGORITHMS``.
    order, slots : as ``effective_preference``.
    mixture : float in [0, 1)
        IPO-MD's and Nash-MD-PG's mixture weight (Nash-MD's ``eta * tau``).

    Returns
    -------
    dict of str to JudgeFixedPoint, in the order of ``algorithms``.

    Raises
    ------
    ValueError
        An algorithm outside ``FIXED_POINT_ALGORITHMS``, malformed inputs, an uncertified fixed
        point, or ``slots`` whose pairs never compare some action with the rest (the offline
        optimum is then not unique).

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (4); Azar et al., arXiv:2310.12036v2, Eq. (8) and
    App. B Prop. 4; Munos et al., arXiv:2312.00886v4, Sec. 4; Calandriello et al.,
    arXiv:2403.08635v1, Sec. 4-5.

    Examples
    --------
    >>> from prefopt_toy.games.judges import logit_shift_judge
    >>> from prefopt_toy.games.constructors import rock_paper_scissors
    >>> J = logit_shift_judge(rock_paper_scissors(0.8), 1.0)
    >>> fp = judge_fixed_points(J, [0.6, 0.3, 0.1], 0.1)
    >>> fp["online_ipo"].distance, round(fp["nash_md"].distance, 4)
    (0.0, 0.0324)
    """
    J_t = check_judge_matrix(J)
    k = J_t.shape[0]
    mu_t = as_policy(_detached(mu), "mu", size=k, positive=True)
    tau_f = as_positive_float(tau, "tau")
    m = as_unit_interval(mixture, "mixture")
    if isinstance(algorithms, str):
        algorithms = (algorithms,)
    names = list(algorithms)
    bad = [a for a in names if a not in FIXED_POINT_ALGORITHMS]
    if bad or not names:
        raise ValueError(
            f"algorithms must be a non-empty list from {FIXED_POINT_ALGORITHMS}, got {names!r}"
        )
    P_sym = symmetrize_judge(J_t)
    out: dict[str, JudgeFixedPoint] = {}
    for name in names:
        raw, res = _fixed_point(name, J_t, mu_t, tau_f, m, order, slots)
        sym, _ = _fixed_point(name, P_sym, mu_t, tau_f, m, order, slots)
        out[name] = JudgeFixedPoint(name, raw, sym, 0.5 * float((raw - sym).abs().sum()), res)
    return out


# ----------------------------------------------------------------------------------------------
# Self-rewarding iterative DPO.


def self_judge(J_true: Any, pi: Any, weight: Any, sharpness: Any = 1.0) -> Tensor:
    r"""A policy used as its own judge: :math:`J_\pi = (1 - w)J + w\,\sigma\big(s(\log\pi_i - \log\pi_j)\big)`.

    The model of this suite for self-preference (an LLM judge prefers answers it finds likely;
    Yuan et al., arXiv:2401.10020v3, Sec. 2 use the policy as the judge, and Zheng et al.,
    arXiv:2306.05685v4, Sec. 3.3 report self-enhancement bias): with probability ``1 - w`` the
    judge answers as ``J_true`` (its position bias included), with probability ``w`` as a
    Bradley-Terry judge whose scores are ``s log pi``. The second part is order-consistent.
    Where both ``pi`` entries are 0 that part is a tie (1/2).

    Parameters
    ----------
    J_true : array-like, shape (K, K)
        The judge the policy would be without self-preference.
    pi : array-like, shape (K,)
        The policy.
    weight : float in [0, 1]
        ``w``, the self-preference weight.
    sharpness : float >= 0, default 1
        ``s``.

    Returns
    -------
    Tensor, shape (K, K), float64.

    Examples
    --------
    >>> self_judge([[0.5, 0.5], [0.5, 0.5]], [0.75, 0.25], 1.0)[0, 1]  # sigma(log 3) = 3/4
    tensor(0.7500, dtype=torch.float64)
    """
    J_t = check_judge_matrix(J_true)
    pi_t = as_policy(_detached(pi), "pi", size=J_t.shape[0])
    w = as_unit_interval(weight, "weight")
    s = as_positive_float(sharpness, "sharpness", allow_zero=True)
    lp = pi_t.log()
    diff = lp[:, None] - lp[None, :]
    diff = torch.where(torch.isnan(diff), torch.zeros((), dtype=DTYPE), diff)  # -inf - -inf: tie
    return (1.0 - w) * J_t + w * torch.sigmoid(s * diff)


@dataclass(frozen=True)
class SelfRewardingRun:
    """Rounds of exact self-rewarding DPO (``self_rewarding_dpo``)."""

    policies: Tensor
    """``pi_0 = mu, pi_1, ..., pi_R``, shape (R + 1, K)."""
    distance: Tensor
    """Total variation of each round's policy to ``target``, shape (R + 1,)."""
    entropy: Tensor
    """Shannon entropy of each round's policy (nats), shape (R + 1,)."""
    max_mass: Tensor
    """Largest probability of each round's policy (its mass on its own argmax), shape (R + 1,)."""
    target: Tensor
    """The true-judge target: ``rlhf_optimum(symmetrize_judge(J_true), mu, beta)``, shape (K,)."""
    reference: str
    """"previous" (self-rewarding, Yuan et al.) or "initial" (RLHFlow)."""


REFERENCES = ("previous", "initial")


def _round(
    J_t: Tensor, mu: Tensor, pi: Tensor, beta: float, w: float, s: float, ref: str
) -> Tensor:
    P_t = symmetrize_judge(self_judge(J_t, pi, w, s))  # pairs pi x pi in the sampled order
    anchor = pi if ref == "previous" else mu
    return rlhf_optimum(P_t, anchor, beta, nu=pi)


def self_rewarding_dpo(
    J_true: Any,
    mu: Any,
    beta: Any,
    *,
    rounds: int = 10,
    weight: Any = 0.0,
    sharpness: Any = 1.0,
    reference: str = "previous",
) -> SelfRewardingRun:
    r"""Self-rewarding iterative DPO, each round solved exactly at the population level.

    Round t: pairs :math:`(y, y') \sim \pi_t \times \pi_t` shown in the order drawn, labelled by
    the policy-as-judge :math:`J_{\pi_t}` (``self_judge``), so the round sees
    :math:`P_t = \mathrm{sym}(J_{\pi_t}) = (1-w)\,\mathrm{sym}(J) + w\,\sigma(s(\log\pi_{t,i} - \log\pi_{t,j}))`
    (``effective_preference``); DPO is run to its population optimum,

    .. math:: \pi_{t+1} = \mathrm{ref}_t\exp(\hat r_t/\beta)/Z, \qquad
              \hat r_t = \texttt{bt\_fit}(P_t, \pi_t),

    with :math:`\mathrm{ref}_t = \pi_t` (``"previous"``: Yuan et al.) or :math:`\mu`
    (``"initial"``: Xiong et al., arXiv:2312.11456v4; Dong et al., arXiv:2405.07863v3).

    Exact facts (tested): with ``w = 0`` and a Bradley-Terry ``J_true = BT(r)``, ``"previous"``
    gives :math:`\pi_t \propto \mu e^{t r/\beta}` (a vertex as :math:`t\to\infty`) and
    ``"initial"`` gives :math:`\mu e^{r/\beta}` from round 1 on; with ``w > 0`` and an
    all-ties ``J_true``, ``"previous"`` is a pure self-reinforcement: on two actions
    :math:`z_{t+1} = z_t + \operatorname{logit}\big(\tfrac{1-w}2 + w\sigma(s z_t)\big)/\beta`
    (:math:`z = \log(\pi_0/\pi_1)`), so the initial favourite takes all the mass; ``"initial"``
    stops at a fixed point of the round map (``self_rewarding_residual``), further from
    ``target`` than the ``w = 0`` one.

    Parameters
    ----------
    J_true : array-like, shape (K, K)
        The judge without self-preference (may have position bias; the sampled order removes it).
    mu : array-like, shape (K,)
        Initial policy and ``"initial"`` reference, strictly positive.
    beta : float > 0
        DPO's KL strength.
    rounds : int >= 0, default 10
    weight, sharpness : as ``self_judge``.
    reference : {"previous", "initial"}, default "previous"

    Returns
    -------
    SelfRewardingRun

    Raises
    ------
    ValueError
        Malformed inputs, or a round whose Bradley-Terry fit has no finite maximiser (the
        message names the round: the policy has collapsed so far that the round's preference is
        0 or 1 in float64).

    References
    ----------
    Yuan et al., arXiv:2401.10020v3, Sec. 2 (self-rewarding rounds, reference = previous model);
    Azar et al., arXiv:2310.12036v2, App. B Prop. 4 (the population DPO optimum).
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    J_t = check_judge_matrix(J_true)
    k = J_t.shape[0]
    mu_t = as_policy(_detached(mu), "mu", size=k, positive=True)
    beta_f = as_positive_float(beta, "beta")
    R = as_int(rounds, "rounds", minimum=0)
    w = as_unit_interval(weight, "weight")
    s = as_positive_float(sharpness, "sharpness", allow_zero=True)
    target = rlhf_optimum(symmetrize_judge(J_t), mu_t, beta_f)
    pols = [mu_t]
    for t in range(R):
        try:
            pols.append(_round(J_t, mu_t, pols[-1], beta_f, w, s, reference))
        except ValueError as err:
            raise ValueError(
                f"self_rewarding_dpo: round {t + 1} of {R} has no finite DPO optimum: its "
                f"preference sym(J_pi) is 0 or 1 in float64 on some pairs: pi_{t} has collapsed "
                f"so far (largest mass {float(pols[-1].max()):.17g}) that its own verdicts are "
                "certain, and the exact optimum would be a vertex. Run fewer rounds, or a smaller weight or sharpness, or a larger "
                f"beta. ({err})"
            ) from err
    policies = torch.stack(pols)
    plogp = torch.where(policies > 0, policies * policies.log(), torch.zeros((), dtype=DTYPE))
    ent = 0.0 - plogp.sum(1)  # 0 - 0 = +0.0: a vertex has entropy 0, not -0
    return SelfRewardingRun(
        policies=policies,
        distance=0.5 * (policies - target).abs().sum(1),
        entropy=ent,
        max_mass=policies.max(1).values,
        target=target,
        reference=reference,
    )


def self_rewarding_residual(
    J_true: Any, mu: Any, beta: Any, pi: Any, *, weight: Any = 0.0, sharpness: Any = 1.0
) -> float:
    r"""How far ``pi`` is from a fixed point of the ``"initial"``-reference self-rewarding round.

    :math:`\max_y |\pi_y - \Phi(\pi)_y|` with
    :math:`\Phi(\pi) = \texttt{rlhf\_optimum}(\mathrm{sym}(J_\pi), \mu, \beta, \nu = \pi)`: 0 at a
    stationary point of self-rewarding iterative DPO with the reference kept at ``mu``.

    Returns
    -------
    float

    References
    ----------
    Yuan et al., arXiv:2401.10020v3, Sec. 2; Xiong et al., arXiv:2312.11456v4 (reference kept at
    the initial policy).
    """
    J_t = check_judge_matrix(J_true)
    k = J_t.shape[0]
    mu_t = as_policy(_detached(mu), "mu", size=k, positive=True)
    pi_t = as_policy(_detached(pi), "pi", size=k, positive=True)
    beta_f = as_positive_float(beta, "beta")
    w = as_unit_interval(weight, "weight")
    s = as_positive_float(sharpness, "sharpness", allow_zero=True)
    nxt = _round(J_t, mu_t, pi_t, beta_f, w, s, "initial")
    return float((pi_t - nxt).abs().max())
