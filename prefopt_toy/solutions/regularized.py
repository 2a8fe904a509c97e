r"""Certified solvers for the KL-regularised preference game and the IPO-MD fixed point.

Both solutions are fixed points of a best-response map in log space,

.. math:: \pi = T(\pi), \qquad
          T(\pi)(y) = \frac{\mu(y)\exp\big((P\,s(\pi))_y/\tau\big)}{\sum_{y'}\mu(y')\exp\big((P\,s(\pi))_{y'}/\tau\big)},

with :math:`s(\pi) = \pi` for the regularised Nash equilibrium (Munos et al., arXiv:2312.00886v4,
Sec. 4; Calandriello et al., arXiv:2403.08635v1, Prop. 4.1) and
:math:`s(\pi) = \pi^{1-m}\mu^{m}/Z` for IPO-MD (Calandriello et al., Sec. 5). One Newton solver
serves both; they return only once the residual :math:`\max_y |\pi_y - T(\pi)_y|` (for IPO-MD also
that of the mixture) is at most the tolerance (1e-12 by default), and raise otherwise.

The exponent is evaluated as :math:`((P s)_y - \max_{y'} (P s)_{y'})/\tau \le 0` (the
normalisation cancels the shift), so no tau, however small, overflows it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import (
    as_policy,
    as_positive_float,
    as_preference_matrix,
    as_unit_interval,
)

DEFAULT_TOL = 1e-12

_EPS = torch.finfo(torch.float64).eps


# Below this mixture probability an action's column in the Newton Jacobian is < 1e-40 / tau in
# size: dropping it changes the Newton direction by far less than round-off, and shrinks the
# linear solve to the (often much smaller) effective support when tau is small.
_ACTIVE = 1e-40


# Once the residual is this small, Newton is inside its quadratic basin: take full steps (the
# merit function is then at round-off level and cannot arbitrate a line search).
_LOCAL = 1e-6


# Newton iterations allowed to polish the IPO-MD point mapped back from the regularised Nash.
_POLISH_ITER = 8


# Smallest tol that float64 can honour on probabilities of size up to 1.
_TOL_FLOOR = 16.0 * _EPS


@dataclass(frozen=True)
class FixedPointReport:
    """Certificate returned with a solution when ``return_report=True``."""

    residual: float
    """``max_y |pi_y - T(pi)_y|`` at the returned ``pi`` (probability space, float64); for IPO-MD
    the larger of that and the same residual of the mixture, ``max_y |s(pi)_y - s(T(pi))_y|``."""
    gap: float
    """Duality gap ``KL(pi || T(pi))``, in nats (for ``mixture = 0``: ``tau`` times it is the
    regularised game's exploitability of ``pi``)."""
    iterations: int
    """Newton iterations in total, over all continuation stages."""
    stages: int
    """Number of tau values solved (1 when no continuation was needed)."""
    method: str
    """``"newton"`` or ``"newton+continuation"`` (for IPO-MD: how the regularised Nash at
    ``tau / (1 - mixture)`` was solved when ``reduction`` is set), or ``"closed form"`` (IPO-MD
    with ``mixture = 1``)."""
    reduction: str | None = None
    """``"prop-5.2"`` when the IPO-MD point was obtained from the regularised Nash at
    ``tau / (1 - mixture)`` (Calandriello et al., arXiv:2403.08635v1, Prop. 5.2), then polished
    and certified against the IPO-MD map itself; None for a direct solve."""


class _Map:
    """The log-space best-response map for fixed ``A = P - 1/2``, ``log mu``, tau and mixture."""

    def __init__(self, A: Tensor, log_mu: Tensor, tau: float, mixture: float) -> None:
        self.A, self.log_mu, self.tau, self.m = A, log_mu, tau, mixture

    def mix(self, x: Tensor) -> Tensor:
        if self.m == 0.0:
            return torch.softmax(x, 0)
        return torch.softmax((1.0 - self.m) * x + self.m * self.log_mu, 0)

    def log_map(self, s: Tensor) -> Tensor:
        """``log T`` for the opponent ``s``: ``log mu + (A s - max A s) / tau``, normalised."""
        w = self.A @ s
        z = self.log_mu + (w - w.max()) / self.tau  # <= log mu: never overflows, whatever tau
        return z - torch.logsumexp(z, 0)

    def residual_vector(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``G(x) = x - log T(exp x)`` together with ``s(x)`` and ``log T``."""
        s = self.mix(x)
        log_t = self.log_map(s)
        return x - log_t, s, log_t

    def residual(self, x: Tensor, s: Tensor, log_t: Tensor) -> float:
        """``max |pi - T(pi)|``, and for a mixture also ``max |s(pi) - s(T(pi))|``.

        The mixture ``pi^(1-m) mu^m`` magnifies tiny probabilities (``(1e-30)^0.1 = 1e-3``), so a
        point that is a fixed point to 1e-12 in ``pi`` may still have a wrong mixture; certifying
        both makes the mixture, the quantity of Prop. 5.2, accurate too.
        """
        residual = float((x.exp() - log_t.exp()).abs().max())
        if self.m > 0.0:
            residual = max(residual, float((s - self.mix(log_t)).abs().max()))
        return residual

    def certify(self, x: Tensor) -> tuple[float, float]:
        """Residual (as in ``residual``) and duality gap ``KL(pi || T(pi))`` at ``x``."""
        G, s, log_t = self.residual_vector(x)
        pi = x.exp()
        gap = float((pi * G)[pi > 0].sum())  # entries that underflowed to 0 contribute 0 (0 log 0)
        return self.residual(x, s, log_t), max(gap, 0.0)

    def newton_direction(self, G: Tensor, s: Tensor, log_t: Tensor) -> Tensor:
        r"""Solve ``J d = -G``, ``J = I - c (I - 1 t^T) A (diag(s) - s s^T)``, ``c = (1-m)/tau``."""
        c = (1.0 - self.m) / self.tau
        if c == 0.0:  # mixture = 1: T is constant, J = I.
            return -G
        t = log_t.exp()
        active = s > _ACTIVE
        a = active.nonzero().squeeze(1)
        s_a = s[a]
        A_a = self.A[:, a]  # (K, k): only active columns matter
        As = A_a @ s_a  # (K,)
        M = A_a * s_a[None, :] - torch.outer(As, s_a)  # A (diag(s) - s s^T), active columns
        M = M - torch.outer(torch.ones_like(t), t @ M)  # (I - 1 t^T) M
        k = a.numel()
        J_aa = torch.eye(k, dtype=G.dtype) - c * M[a]
        d = torch.empty_like(G)
        d_a = torch.linalg.solve(J_aa, -G[a])
        # Inactive rows have an identity diagonal block and no coupling into the active block.
        d.copy_(-G + c * (M @ d_a))
        d[a] = d_a
        return d


def _newton(f: _Map, x0: Tensor, tol: float, max_iter: int) -> tuple[Tensor, float, int, bool]:
    """Damped Newton on ``G(x) = 0`` with a line search on the gap ``KL(pi || T(pi))``.

    Returns ``(x, residual at x, iterations, certified)``; ``residual`` is always the one of the
    returned ``x``.
    """
    x = x0 - torch.logsumexp(x0, 0)
    G, s, log_t = f.residual_vector(x)
    residual = math.inf
    for it in range(max_iter + 1):
        pi = x.exp()
        residual = f.residual(x, s, log_t)
        if residual <= tol:
            return x, residual, it, True
        if it == max_iter or not bool(torch.isfinite(G).all()):
            break  # an exponent of -inf (tau below round-off) leaves log space: give up here
        try:
            d = f.newton_direction(G, s, log_t)
        except RuntimeError:  # singular Jacobian (torch.linalg.LinAlgError is a RuntimeError)
            break
        if not bool(torch.isfinite(d).all()):
            break
        gap0 = float((pi * G).sum())  # KL(pi || T(pi)) >= 0, zero only at the fixed point
        step = 1.0
        while True:
            x_new = x + step * d
            x_new = x_new - torch.logsumexp(x_new, 0)
            G_new, s_new, log_t_new = f.residual_vector(x_new)
            gap = float((x_new.exp() * G_new).sum())
            if residual < _LOCAL or gap <= (1.0 - 1e-4 * step) * gap0:
                break
            step *= 0.5
            if step < 1e-6:
                return x, residual, it, False
        x, G, s, log_t = x_new, G_new, s_new, log_t_new
    return x, residual, it, False


@dataclass
class _Attempt:
    """Outcome of ``_solve``: the best point at the target tau and its (recomputed) residual."""

    x: Tensor
    residual: float
    iterations: int
    stages: int
    method: str

    def certified(self, tol: float) -> bool:
        return self.residual <= tol


def _solve(A: Tensor, log_mu: Tensor, tau: float, mixture: float, tol: float) -> _Attempt:
    """Newton from ``log mu``; if that stalls, continuation in tau from ``max(10 tau, 1)`` down.

    The returned point is the best one found *at the target tau*, with its residual recomputed
    there (never a residual of an intermediate continuation stage).
    """
    f = _Map(A, log_mu, tau, mixture)
    x, residual, iters, ok = _newton(f, log_mu, tol, max_iter=60)
    best_x, best_res = x, residual
    stages, method = 1, "newton"
    if not ok:
        # Continuation: the solution path tau -> pi_tau is smooth (the Jacobian is nonsingular
        # along it), so a small enough decrease of tau starts Newton inside its basin.
        method = "newton+continuation"
        t = max(tau * 10.0, 1.0)
        x, _, it0, ok = _newton(_Map(A, log_mu, t, mixture), log_mu, tol, max_iter=60)
        iters += it0
        stages += 1
        factor = 10.0
        while ok and t > tau:
            t_next = max(tau, t / factor)
            stage = _Map(A, log_mu, t_next, mixture)
            x_next, res_next, it_n, ok_n = _newton(stage, x, tol, max_iter=25)
            iters += it_n
            stages += 1
            if t_next == tau and res_next < best_res:
                best_x, best_res = x_next, res_next
            if ok_n:
                x, t = x_next, t_next
                factor = min(factor * 3.0, 100.0)
            else:
                factor = math.sqrt(factor)
                if factor < 1.0 + 1e-3:
                    ok = False
    best_res, _ = f.certify(best_x)  # the certified quantity, recomputed at the returned point
    return _Attempt(best_x, best_res, iters, stages, method)


class _NotCertified(Exception):
    """Raised by ``_fixed_point`` with the best residual reached; the caller words the message."""

    def __init__(self, residual: float, scale: float) -> None:
        super().__init__(residual)
        self.residual, self.scale = residual, scale


def _report(attempt: _Attempt, residual: float, gap: float) -> FixedPointReport:
    return FixedPointReport(residual, gap, attempt.iterations, attempt.stages, attempt.method)


def _fixed_point_core(
    A: Tensor, log_mu: Tensor, tau: float, mixture: float, tol: float
) -> tuple[Tensor, FixedPointReport]:
    """Solve on ``supp(mu)``; raise ``_NotCertified`` with the best residual if it cannot."""
    f = _Map(A, log_mu, tau, mixture)
    scale = float(A.abs().max()) if A.numel() else 0.0
    if mixture == 1.0:  # T is constant: pi = mu exp(A mu / tau) / Z
        x = f.log_map(log_mu.exp())
        residual, gap = f.certify(x)
        if residual > tol:
            raise _NotCertified(residual, scale)
        return x, FixedPointReport(residual, gap, 0, 1, "closed form")
    if mixture == 0.0:
        attempt = _solve(A, log_mu, tau, 0.0, tol)
        if not attempt.certified(tol):
            raise _NotCertified(attempt.residual, scale)
        residual, gap = f.certify(attempt.x)
        return attempt.x, _report(attempt, residual, gap)
    # IPO-MD by Calandriello et al. Prop. 5.2: the mixture s at the fixed point is the regularised
    # Nash at tau / (1 - m), and then pi = T(s) explicitly. Substituting pi = T(s) into
    # s = pi^(1-m) mu^m / Z gives s = mu exp(A s (1 - m) / tau) / Z', the regularised-Nash
    # equation at tau / (1 - m) (>= tau: better conditioned, inside the range certified there).
    tau_nash = min(tau / (1.0 - mixture), torch.finfo(torch.float64).max)  # tau -> inf: s = mu
    inner = _solve(A, log_mu, tau_nash, 0.0, tol)
    x = f.log_map(inner.x.exp())  # pi = T(s), even if s missed tol: the IPO-MD check decides
    residual, gap = f.certify(x)
    polish_iters = 0
    if residual > tol:  # a few Newton steps on the IPO-MD equation itself, from inside its basin
        x_polished, _, polish_iters, _ = _newton(f, x, tol, max_iter=_POLISH_ITER)
        polished = f.certify(x_polished)
        if polished[0] < residual:
            x, (residual, gap) = x_polished, polished
    if residual <= tol:
        return x, FixedPointReport(
            residual,
            gap,
            inner.iterations + polish_iters,
            inner.stages,
            inner.method,
            reduction="prop-5.2",
        )
    # Fallback: the IPO-MD equation solved directly (Newton, then continuation in tau).
    attempt = _solve(A, log_mu, tau, mixture, tol)
    if attempt.certified(tol):
        residual, gap = f.certify(attempt.x)
        return attempt.x, _report(attempt, residual, gap)
    raise _NotCertified(min(attempt.residual, residual), scale)


def _fixed_point(
    P: Any, mu: Any, tau: Any, mixture: float, tol: Any, return_report: bool, name: str
) -> Tensor | tuple[Tensor, FixedPointReport]:
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    mu_t = as_policy(mu, "mu", size=k)
    tau_f = as_positive_float(tau, "tau")
    tol_f = as_positive_float(tol, "tol")
    # Actions with mu = 0 have zero probability under any KL-regularised solution: solve the
    # game restricted to supp(mu) and embed the result.
    support = (mu_t > 0).nonzero().squeeze(1)
    A = P_t.detach()[support][:, support] - 0.5  # skew-symmetric: A + A.T = 0
    log_mu = mu_t.detach()[support].log()
    try:
        x, report = _fixed_point_core(A, log_mu, tau_f, mixture, tol_f)
    except _NotCertified as err:
        raise _uncertified_error(name, tau_f, mixture, tol_f, k, err) from None
    # Certify what is returned: the float64 probabilities exp(x), rounded (subnormal or 0 below
    # 1e-308), not the log-space point. For mixture > 0 the difference can matter: an entry
    # exp(-1000) underflows to 0, yet its mixture weight exp(-1000 (1 - m)) is e^-1 for m = 0.999.
    pi_support = x.exp()
    residual, gap = _Map(A, log_mu, tau_f, mixture).certify(pi_support.log())
    if not residual <= tol_f:
        raise _unrepresentable_error(name, tau_f, mixture, tol_f, k, float(x.min()), residual)
    report = dataclasses.replace(report, residual=residual, gap=gap)
    pi = torch.zeros(k, dtype=P_t.dtype)
    pi[support] = pi_support
    return (pi, report) if return_report else pi


def _unrepresentable_error(
    name: str, tau: float, mixture: float, tol: float, k: int, smallest_log: float, residual: float
) -> ValueError:
    """The fixed point exists (certified in log space) but not as float64 probabilities."""
    args = f"tau = {tau!r}" + (f" with mixture = {mixture!r}" if mixture > 0.0 else "")
    return ValueError(
        f"{name}: {args} is out of float64's reach for this game (K = {k}): the fixed point has "
        f"probabilities down to exp({smallest_log:.6g}), below the smallest float64 (about "
        "exp(-745)), yet their mixture weights pi^(1 - mixture) are not negligible, so rounded "
        f"to float64 probabilities it is no longer a fixed point: residual {residual!r}, exceeds "
        f"tol = {tol!r}. Use a larger tau or a smaller mixture"
    )


def _uncertified_error(
    name: str, tau: float, mixture: float, tol: float, k: int, err: _NotCertified
) -> Exception:
    """The error for a failed certification, naming the caller's arguments.

    ValueError when the caller's ``tau`` or ``tol`` is beyond what float64 can certify (the
    cause is the argument, and the message says which bound it breaks); RuntimeError otherwise
    (a solver failure inside the supported range: a bug to report).
    """
    game = f"K = {k}" + (f", mixture = {mixture!r}" if name == "ipo_md_fixed_point" else "")
    what = "max|pi - T(pi)|" + (" (and of its mixture)" if mixture > 0.0 else "")
    reached = f"the best residual reached, {what} = {err.residual!r}, exceeds tol = {tol!r}"
    if tol < _TOL_FLOOR:
        return ValueError(
            f"{name}: tol = {tol!r} is below float64 round-off on probabilities (16 eps = "
            f"{_TOL_FLOOR:.3g}), so the fixed point cannot be certified to it (tau = {tau!r}, "
            f"{game}): {reached}. Use tol >= {_TOL_FLOOR:.3g}"
        )
    # Round-off floor of the certificate: the win rates (P s)_y are computed to about
    # eps * max|P - 1/2| absolutely, and dividing by tau scales that into log T(pi).
    floor = _EPS * err.scale / tau
    if floor > tol:
        limit = "; the tau -> 0 limit is nash_equilibrium(P)" if name == "regularized_nash" else ""
        return ValueError(
            f"{name}: tau = {tau!r} is too small to certify in float64 for this game ({game}): "
            f"the win rates (P pi)_y carry round-off of about eps * max|P - 1/2| = "
            f"{_EPS * err.scale:.3g}, which divided by tau moves log T(pi) by up to {floor:.3g}, "
            f"more than tol = {tol!r}; {reached}. Use tau >= {_EPS * err.scale / tol:.3g} for this "
            f"game (or a larger tol){limit}"
        )
    return RuntimeError(
        f"{name} could not certify its answer (tau = {tau!r}, {game}): {reached}; please report "
        "this game"
    )


def regularized_nash(
    P: Any, mu: Any, tau: Any, *, tol: float = DEFAULT_TOL, return_report: bool = False
) -> Tensor | tuple[Tensor, FixedPointReport]:
    r"""The unique Nash equilibrium of the KL-regularised preference game, certified.

    .. math:: \pi^*_\tau = \arg\max_\pi \min_{\pi'}\; P(\pi \succ \pi') - \tau\,KL(\pi\|\mu)
              + \tau\,KL(\pi'\|\mu),
              \qquad \pi^*_\tau(y) \propto \mu(y)\exp\big((P\pi^*_\tau)_y/\tau\big).

    It is the limit of Nash-MD and the fixed point of online IPO.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix, ``P[i, j] = Pr(y_i beats y_j)``, ``P + P.T = 1``.
    mu : array-like, shape (K,)
        Reference policy. Entries may be tiny (1e-300); actions with ``mu = 0`` get probability 0
        (the game is solved on ``supp(mu)``).
    tau : float > 0
        KL strength (tau in Munos et al. and Calandriello et al.). Certified for K up to 1000,
        tau from 1e-3 to 1e3 and ``mu`` entries down to 1e-300 (a seeded sweep of that range is
        a test, ``tests/solutions/test_certified.py``). Larger tau is fine (up to the float64 maximum, where
        the answer is ``mu``); below ``eps * max|P - 1/2| / tol`` (about 1e-4) the round-off of the
        win rates divided by tau exceeds ``tol``, and the answer is certified only when the
        equilibrium is nearly pure (e.g. a Condorcet winner, returned as its vertex even at
        subnormal tau); otherwise a ValueError names tau.
    tol : float, default 1e-12
        Certification threshold on ``max_y |pi_y - T(pi)_y|``; at least ``16 eps`` (3.6e-15) to be
        attainable in float64.
    return_report : bool
        Also return a :class:`FixedPointReport` (residual, gap, iterations, method).

    Returns
    -------
    Tensor, shape (K,), float64 (and the report when asked). No gradient.

    Raises
    ------
    ValueError
        Malformed ``P`` or ``mu``, ``tau <= 0``, ``tol <= 0``; and, when the answer cannot be
        certified, ``tol`` below ``16 eps`` or ``tau`` below the round-off bound
        ``eps * max|P - 1/2| / tol`` (the message names the argument, the bound and the best
        residual reached).
    RuntimeError
        If the residual cannot be brought below ``tol`` although float64 allows it (not observed
        for K <= 1000, tau in [1e-3, 1e3]); the message gives the best residual reached at the
        requested tau (never one of an intermediate continuation stage), which exceeds ``tol``.

    Notes
    -----
    **Method.** Damped Newton's method on the log-space equation
    :math:`G(x) = x - \log T(e^x) = 0`. At the solution the Jacobian
    :math:`I - \tau^{-1}(I - \mathbf 1\pi^\top)(P - \tfrac12)(\mathrm{diag}\,\pi - \pi\pi^\top)`
    is, on the tangent space of the simplex and after the similarity
    :math:`\mathrm{diag}(\pi)^{1/2}`, the identity minus a *skew-symmetric* matrix divided by tau
    (because :math:`P - \tfrac12` is skew). All its eigenvalues have real part 1, so it is
    nonsingular and Newton converges quadratically near the solution. Far from it, steps are
    damped by a line search on the duality gap :math:`KL(\pi\|T(\pi))` (tau times the
    exploitability of ``pi`` in the regularised game: convex in ``pi``, zero only at the
    equilibrium). If the line search stalls (tiny tau, far start), the solver follows the smooth
    path :math:`\tau' \mapsto \pi^*_{\tau'}` from :math:`\tau' = \max(10\tau, 1)` down to tau,
    shrinking the tau-step whenever Newton fails to converge from the previous solution. Each
    iteration solves a linear system restricted to the actions with non-negligible probability.
    The exponent is evaluated as :math:`((P\pi)_y - \max_{y'}(P\pi)_{y'})/\tau \le 0`, so it
    never overflows, whatever tau.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 4 (regularised preference game, Prop. 1 uniqueness).
    Calandriello et al., arXiv:2403.08635v1, Prop. 4.1 (online IPO's fixed point).

    Examples
    --------
    >>> from prefopt_toy.games.constructors import rock_paper_scissors
    >>> regularized_nash(rock_paper_scissors(1.0), [0.5, 0.3, 0.2], tau=10.0).sum().item()
    1.0
    """
    return _fixed_point(P, mu, tau, 0.0, tol, return_report, "regularized_nash")


def ipo_md_fixed_point(
    P: Any,
    mu: Any,
    tau: Any,
    mixture: Any,
    *,
    tol: float = DEFAULT_TOL,
    return_report: bool = False,
) -> Tensor | tuple[Tensor, FixedPointReport]:
    r"""Fixed point of IPO-MD (and of Nash-MD-PG with the same mixture), certified.

    .. math:: \pi(y) \propto \mu(y)\exp\big((P\,\pi_m)_y/\tau\big), \qquad
              \pi_m = \pi^{1-m}\mu^{m}/Z, \quad m = \text{mixture}.

    ``mixture = 0`` is online IPO (the regularised Nash); ``mixture = 1`` is offline IPO with
    ``nu = mu``. By Calandriello et al. Prop. 5.2 the mixture :math:`\pi_m` at this fixed point is
    the regularised Nash equilibrium at temperature ``tau / (1 - mixture)``; the solver uses that
    identity (see Notes) and then certifies the answer against the equation above itself.

    Parameters
    ----------
    P, mu, tau, tol, return_report
        As in :func:`regularized_nash`.
    mixture : float in [0, 1]
        Weight of ``mu`` in the sampling mixture (beta in Calandriello et al. and Munos et al.;
        TRL's ``mixture_coef``). Certified over [0, 1) in the range given for tau in
        :func:`regularized_nash`, except where the answer is not representable in float64 (tau
        near 1e-3 with mixture above about 0.95 in games with win-rate gaps near 1; see Raises);
        ``mixture = 1`` is the closed form ``mu exp(P mu / tau) / Z``.

    Returns
    -------
    Tensor, shape (K,), float64 (and a :class:`FixedPointReport` when asked).

    Raises
    ------
    ValueError, RuntimeError
        As in :func:`regularized_nash` (a message names the caller's ``tau`` and ``mixture``,
        never the internal ``tau / (1 - mixture)``); also ``mixture`` outside [0, 1]. Also a
        ValueError naming ``tau`` and ``mixture`` when the fixed point exists but not as float64
        probabilities: with small tau some of its probabilities fall below the smallest float64
        (``exp(-745)``) and underflow, while their mixture weights ``pi^(1 - mixture)`` are not
        negligible when ``mixture`` is close to 1 (e.g. ``bradley_terry(40 * arange(5))``,
        uniform ``mu``, tau = 1e-3, mixture = 0.999: an entry ``exp(-785)`` with weight
        ``exp(-0.785)``). The returned vector itself is what is certified, so no rounded,
        uncertified answer is returned.

    Notes
    -----
    **Method.** Substituting :math:`\pi = T(\pi_m)` into :math:`\pi_m \propto \pi^{1-m}\mu^m`
    gives :math:`\pi_m \propto \mu\exp\big((1-m)(P\pi_m)/\tau\big)`: the regularised-Nash
    equation at :math:`\tau/(1-m) \ge \tau` (Calandriello et al., Prop. 5.2). The solver
    solves that with the Newton method of :func:`regularized_nash` (a better-conditioned problem,
    inside the range certified there), maps it back by the explicit step
    :math:`\pi = \mu\exp((P\pi_m)/\tau)/Z`, takes up to 8 Newton steps on the IPO-MD equation
    itself if needed, and certifies the result against the IPO-MD map. Should that fail, damped
    Newton with continuation on :math:`x - \log T(e^x)` (the equation solved directly) is the
    fallback. Certification covers both ``pi`` and its mixture: the mixture raises tiny
    probabilities to the power ``1 - m``, so a residual of 1e-12 in ``pi`` alone would not pin
    down the mixture's small entries. Measured: with uniform ``mu``, K = 3, tau = 0.005 and
    mixture = 0.95, the direct solve failed on 26 of 200 random games; this one certifies all
    200 (about 4 ms each).

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 5 (IPO-MD) and Prop. 5.2;
    Munos et al., arXiv:2312.00886v4, Sec. 7 (Nash-MD-PG's mixture policy).
    """
    m = as_unit_interval(mixture, "mixture")
    return _fixed_point(P, mu, tau, m, tol, return_report, "ipo_md_fixed_point")
