r"""Certified solvers for the KL-regularised preference game and the IPO-MD fixed point.

Both solutions are fixed points of a best-response map in log space,

.. math:: \pi = T(\pi), \qquad
          T(\pi)(y) = \frac{\mu(y)\exp\big((P\,s(\pi))_y/\tau\big)}{\sum_{y'}\mu(y')\exp\big((P\,s(\pi))_{y'}/\tau\big)},

with :math:`s(\pi) = \pi` for the regularised Nash equilibrium (Munos et al., arXiv:2312.00886v4,
Sec. 4; Calandriello et al., arXiv:2403.08635v1, Prop. 4.1) and
:math:`s(\pi) = \pi^{1-m}\mu^{m}/Z` for IPO-MD (Calandriello et al., Sec. 5). One Newton solver
serves both; it returns only once the residual :math:`\max_y |\pi_y - T(\pi)_y|` is at most the
tolerance (1e-12 by default), and raises otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._validate import as_policy, as_positive_float, as_preference_matrix, as_unit_interval

DEFAULT_TOL = 1e-12

# Below this mixture probability an action's column in the Newton Jacobian is < 1e-40 / tau in
# size: dropping it changes the Newton direction by far less than round-off, and shrinks the
# linear solve to the (often much smaller) effective support when tau is small.
_ACTIVE = 1e-40
# Once the residual is this small, Newton is inside its quadratic basin: take full steps (the
# merit function is then at round-off level and cannot arbitrate a line search).
_LOCAL = 1e-6


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
    """``"newton"`` or ``"newton+continuation"``."""


class _Map:
    """The log-space best-response map for fixed ``A = P - 1/2``, ``log mu``, ``tau``, ``mixture``."""

    def __init__(self, A: Tensor, log_mu: Tensor, tau: float, mixture: float) -> None:
        self.A, self.log_mu, self.tau, self.m = A, log_mu, tau, mixture

    def mix(self, x: Tensor) -> Tensor:
        if self.m == 0.0:
            return torch.softmax(x, 0)
        return torch.softmax((1.0 - self.m) * x + self.m * self.log_mu, 0)

    def residual_vector(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``G(x) = x - log T(exp x)`` together with ``s(x)`` and ``log T``."""
        s = self.mix(x)
        z = self.log_mu + (self.A @ s) / self.tau  # (K,)
        log_t = z - torch.logsumexp(z, 0)
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

    def newton_direction(self, G: Tensor, s: Tensor, log_t: Tensor) -> Tensor:
        r"""Solve ``J d = -G`` with ``J = I - c (I - 1 t^T) A (diag(s) - s s^T)``, ``c = (1-m)/tau``."""
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
    """Damped Newton on ``G(x) = 0`` with a line search on the gap ``KL(pi || T(pi))``."""
    x = x0 - torch.logsumexp(x0, 0)
    G, s, log_t = f.residual_vector(x)
    residual = math.inf
    for it in range(max_iter + 1):
        pi = x.exp()
        residual = f.residual(x, s, log_t)
        if residual <= tol:
            return x, residual, it, True
        if it == max_iter:
            break
        d = f.newton_direction(G, s, log_t)
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
    return x, residual, max_iter, False


def _solve(A: Tensor, log_mu: Tensor, tau: float, mixture: float, tol: float) -> tuple[Tensor, FixedPointReport]:
    """Newton from ``log mu``; if that stalls, continuation in tau from ``max(tau, 1)`` downwards."""
    x, residual, iters, ok = _newton(_Map(A, log_mu, tau, mixture), log_mu, tol, max_iter=60)
    stages, method = 1, "newton"
    if not ok:
        # Continuation: the solution path tau -> pi_tau is smooth (the Jacobian is nonsingular
        # along it), so a small enough decrease of tau starts Newton inside its basin.
        method = "newton+continuation"
        t = max(tau * 10.0, 1.0)
        x, residual, it0, ok = _newton(_Map(A, log_mu, t, mixture), log_mu, tol, max_iter=60)
        iters += it0
        stages += 1
        factor = 10.0
        while ok and t > tau:
            t_next = max(tau, t / factor)
            x_next, res_next, it_n, ok_n = _newton(_Map(A, log_mu, t_next, mixture), x, tol, max_iter=25)
            iters += it_n
            stages += 1
            if ok_n:
                x, t, residual = x_next, t_next, res_next
                factor = min(factor * 3.0, 100.0)
            else:
                factor = math.sqrt(factor)
                if factor < 1.0 + 1e-3:
                    ok = False
        ok = ok and t == tau
    if not ok:
        raise RuntimeError(
            f"fixed-point solver did not certify: residual {residual:.3e} > tol {tol:.1e} "
            f"(tau={tau}, mixture={mixture}, K={A.shape[0]}); please report this game"
        )
    G, _, _ = _Map(A, log_mu, tau, mixture).residual_vector(x)
    gap = max(float((x.exp() * G).sum()), 0.0)
    return x, FixedPointReport(residual, gap, iters, stages, method)


def _fixed_point(P: Any, mu: Any, tau: Any, mixture: float, tol: Any, return_report: bool):
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    mu_t = as_policy(mu, "mu", size=k)
    tau_f = as_positive_float(tau, "tau")
    tol_f = as_positive_float(tol, "tol")
    # Actions with mu = 0 have zero probability under any KL-regularised solution: solve the
    # game restricted to supp(mu) and embed the result.
    support = (mu_t > 0).nonzero().squeeze(1)
    A = P_t[support][:, support] - 0.5  # skew-symmetric: A + A.T = 0
    log_mu = mu_t[support].log()
    x, report = _solve(A, log_mu, tau_f, mixture, tol_f)
    pi = torch.zeros(k, dtype=P_t.dtype)
    pi[support] = x.exp()
    return (pi, report) if return_report else pi


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
        KL strength (tau in Munos et al. and Calandriello et al.). Tested from 1e-3 to 1e3.
    tol : float, default 1e-12
        Certification threshold on ``max_y |pi_y - T(pi)_y|``.
    return_report : bool
        Also return a :class:`FixedPointReport` (residual, gap, iterations, method).

    Returns
    -------
    Tensor, shape (K,), float64 (and the report when asked). No gradient.

    Raises
    ------
    ValueError
        Malformed ``P`` or ``mu``, ``tau <= 0``, ``tol <= 0``.
    RuntimeError
        If the residual cannot be brought below ``tol`` (not observed for K <= 1000,
        tau in [1e-3, 1e3]).

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

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 4 (regularised preference game, Prop. 1 uniqueness).
    Calandriello et al., arXiv:2403.08635v1, Prop. 4.1 (online IPO's fixed point).

    Examples
    --------
    >>> from prefopt_toy.games import rock_paper_scissors
    >>> regularized_nash(rock_paper_scissors(1.0), [0.5, 0.3, 0.2], tau=10.0).sum().item()
    1.0
    """
    return _fixed_point(P, mu, tau, 0.0, tol, return_report)


def ipo_md_fixed_point(
    P: Any, mu: Any, tau: Any, mixture: Any, *, tol: float = DEFAULT_TOL, return_report: bool = False
) -> Tensor | tuple[Tensor, FixedPointReport]:
    r"""Fixed point of IPO-MD (and of Nash-MD-PG with the same mixture), certified.

    .. math:: \pi(y) \propto \mu(y)\exp\big((P\,\pi_m)_y/\tau\big), \qquad
              \pi_m = \pi^{1-m}\mu^{m}/Z, \quad m = \text{mixture}.

    ``mixture = 0`` is online IPO (the regularised Nash); ``mixture = 1`` is offline IPO with
    ``nu = mu``. By Calandriello et al. Prop. 5.2 the mixture :math:`\pi_m` at this fixed point is
    the regularised Nash equilibrium at temperature ``tau / (1 - mixture)``; the solver does *not*
    use that identity (it solves the equation above directly), so tests can check it.

    Parameters
    ----------
    P, mu, tau, tol, return_report
        As in :func:`regularized_nash`.
    mixture : float in [0, 1]
        Weight of ``mu`` in the sampling mixture (beta in Calandriello et al. and Munos et al.;
        TRL's ``mixture_coef``).

    Returns
    -------
    Tensor, shape (K,), float64 (and a :class:`FixedPointReport` when asked).

    Raises
    ------
    ValueError, RuntimeError
        As in :func:`regularized_nash`; also ``mixture`` outside [0, 1].

    Notes
    -----
    Same damped Newton method as :func:`regularized_nash`, on
    :math:`x - \log T(e^x)` with :math:`T` built from the mixture. Under the change of variable
    :math:`x \mapsto (1-m)x + m\log\mu` the equation is the regularised-Nash equation at
    :math:`\tau/(1-m)`, so the same convergence argument applies. Certification covers both
    ``pi`` and its mixture: the mixture raises tiny probabilities to the power ``1 - m``, so a
    residual of 1e-12 in ``pi`` alone would not pin down the mixture's small entries.

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 5 (IPO-MD) and Prop. 5.2;
    Munos et al., arXiv:2312.00886v4, Sec. 7 (Nash-MD-PG's mixture policy).
    """
    m = as_unit_interval(mixture, "mixture")
    return _fixed_point(P, mu, tau, m, tol, return_report)
