r"""Token reduction in IPO: what TRL's per-token *averaging* of log-probs does to IPO's tau.

In the theory the log-probability of a completion is a *sum* over its tokens; TRL's ``DPOTrainer``
with ``loss_type="ipo"`` *averages* them (huggingface/trl PR #1265), so its per-pair loss is
:math:`(r(y_w)/L(y_w) - r(y_l)/L(y_l) - 1/(2\tau))^2` with :math:`L(y)` the number of completion
tokens. With equal lengths :math:`L` this is the summed IPO loss at :math:`\tau_{\rm eff} = \tau/L`
(``effective_tau``); with unequal lengths it is no reparametrisation of tau at all
(``averaged_ipo_loss``, ``averaged_ipo_population_loss``, ``averaged_ipo_optimum``,
``best_effective_tau``). All are re-exported from ``prefopt_toy.analysis.conventions``.

References: as :mod:`prefopt_toy.analysis.conventions`, the module this one was split from.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prefopt_toy._validate import (
    as_policy,
    as_positive_float,
    as_preference_matrix,
    as_tensor,
    as_vector,
)
from prefopt_toy.policies import normalize_log
from prefopt_toy.solutions.optima import ipo_optimum

__all__ = [
    "averaged_ipo_loss",
    "averaged_ipo_optimum",
    "averaged_ipo_population_loss",
    "best_effective_tau",
    "effective_tau",
]


def effective_tau(tau: Any, length: Any) -> float:
    r"""The tau of the *summed* IPO loss that TRL's averaged IPO loss equals, for equal lengths.

    With per-token averaged log-ratios and both completions of length :math:`L`,

    .. math:: \Bigl(\frac{h}{L} - \frac{1}{2\tau}\Bigr)^2
              = \frac{1}{L^2}\Bigl(h - \frac{L}{2\tau}\Bigr)^2
              = \frac{1}{L^2}\Bigl(h - \frac{1}{2\tau_{\rm eff}}\Bigr)^2,
              \qquad \tau_{\rm eff} = \frac{\tau}{L},

    so the minimiser is the IPO optimum at :math:`\tau/L` (the factor :math:`1/L^2` only rescales
    the gradient): averaging over 100 tokens regularises 100 times *less*. With unequal lengths
    there is no such tau (see ``averaged_ipo_optimum``).

    Parameters
    ----------
    tau : float > 0
        TRL's ``beta`` with ``loss_type="ipo"`` (IPO's tau).
    length : float > 0
        The common completion length L in tokens.

    Returns
    -------
    float
        ``tau / length``.

    Raises
    ------
    ValueError
        If ``tau`` or ``length`` is not a finite number > 0.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (17) (summed log-probs); huggingface/trl PR #1265 (the
    averaging in ``DPOTrainer``).

    Examples
    --------
    >>> effective_tau(0.1, 50)
    0.002
    """
    return as_positive_float(tau, "tau") / as_positive_float(length, "length")


def _lengths(lengths: Any, k: int) -> Tensor:
    t = as_vector(lengths, "lengths", size=k)
    if float(t.min()) <= 0:
        raise ValueError(f"lengths must be > 0 (token counts), got min {float(t.min())!r}")
    return t


def averaged_ipo_loss(
    log_ratio_chosen: Any,
    log_ratio_rejected: Any,
    length_chosen: Any,
    length_rejected: Any,
    tau: Any,
) -> Tensor:
    r"""TRL's per-pair IPO loss on per-token *averaged* log-ratios (``DPOTrainer``, ``loss_type="ipo"``).

    .. math:: \ell = \Bigl(\frac{r_w}{L_w} - \frac{r_l}{L_l} - \frac{1}{2\tau}\Bigr)^2,
              \qquad r = \log\pi(y) - \log\mu(y) \text{ summed over the completion's tokens.}

    Parameters
    ----------
    log_ratio_chosen, log_ratio_rejected : array-like
        Summed log-ratios :math:`r_w, r_l` (broadcast together, no reduction).
    length_chosen, length_rejected : array-like, > 0
        Completion lengths in tokens.
    tau : float > 0
        TRL's ``beta``.

    Returns
    -------
    Tensor, float64, of the broadcast shape.

    Raises
    ------
    ValueError
        Non-finite inputs, a length <= 0 or ``tau <= 0``.

    References
    ----------
    huggingface/trl PR #1265, ``trl/trainer/dpo_trainer.py``; compare Azar et al.,
    arXiv:2310.12036v2, Eq. (17) with sums.

    Examples
    --------
    >>> float(averaged_ipo_loss(10.0, 0.0, 10, 10, tau=0.5))  # (10/10 - 0 - 1)^2
    0.0
    """
    tau_f = as_positive_float(tau, "tau")
    r_w = as_tensor(log_ratio_chosen, "log_ratio_chosen")
    r_l = as_tensor(log_ratio_rejected, "log_ratio_rejected")
    l_w = as_tensor(length_chosen, "length_chosen")
    l_l = as_tensor(length_rejected, "length_rejected")
    for name, t in (("length_chosen", l_w), ("length_rejected", l_l)):
        if t.numel() and float(t.min()) <= 0:
            raise ValueError(f"{name} must be > 0 (token counts), got min {float(t.min())!r}")
    return (r_w / l_w - r_l / l_l - 0.5 / tau_f) ** 2


def _checked_problem(
    P: Any, mu: Any, tau: Any, lengths: Any, nu: Any
) -> tuple[Tensor, Tensor, float, Tensor, Tensor]:
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    mu_t = as_policy(mu, "mu", size=k, positive=True)
    tau_f = as_positive_float(tau, "tau")
    lengths_t = _lengths(lengths, k)
    nu_t = mu_t if nu is None else as_policy(nu, "nu", size=k, positive=True)
    return P_t, mu_t, tau_f, lengths_t, nu_t


def _averaged_objective(
    theta: Tensor, P: Tensor, log_mu: Tensor, tau: float, lengths: Tensor, nu: Tensor
) -> Tensor:
    # 2 sum_{y,y'} nu_y nu_y' P[y, y'] (s_y - s_y' - 1/(2 tau))^2, s = log(pi/mu) / L: the expected
    # loss of one comparison, the convention of population.population_loss.
    s = (normalize_log(theta) - log_mu) / lengths
    h = s[:, None] - s[None, :]
    weights = 2.0 * nu[:, None] * nu[None, :] * P
    return (weights * (h - 0.5 / tau) ** 2).sum()


def averaged_ipo_population_loss(
    theta: Any, P: Any, mu: Any, tau: Any, lengths: Any, nu: Any = None
) -> Tensor:
    r"""Exact population IPO loss with TRL's per-token averaged log-ratios, on a bandit with lengths.

    Each action ``y`` is a completion of ``lengths[y]`` tokens; its summed log-ratio is
    :math:`r(y) = \log\pi(y)/\mu(y)`. Enumerating all ordered pairs from :math:`\nu\otimes\nu`,
    soft labels ``P``:

    .. math:: \mathcal L(\theta) = 2\sum_{y,y'}\nu_y\nu_{y'}P_{yy'}
              \Bigl(\frac{r(y)}{L(y)} - \frac{r(y')}{L(y')} - \frac{1}{2\tau}\Bigr)^2,

    the convention of ``population_loss`` (with all lengths 1 the two agree).

    Parameters
    ----------
    theta : Tensor or array-like, shape (K,)
        Logits; autograd is kept when ``theta`` requires grad.
    P : array-like, shape (K, K)
        Preference matrix.
    mu : array-like, shape (K,)
        Reference policy, strictly positive.
    tau : float > 0
        TRL's ``beta`` (IPO's tau).
    lengths : array-like, shape (K,), > 0
        Completion length of each action, in tokens.
    nu : array-like, shape (K,), optional
        Pair distribution, strictly positive; default ``mu``.

    Returns
    -------
    Tensor, shape (), float64.

    Raises
    ------
    ValueError
        Malformed ``P``, ``mu``, ``nu``, ``theta``; ``tau <= 0``; a length <= 0.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (13)/(17); huggingface/trl PR #1265.

    Examples
    --------
    >>> P = [[0.5, 0.8], [0.2, 0.5]]
    >>> float(averaged_ipo_population_loss([0.0, 0.0], P, [0.5, 0.5], 0.5, [3, 7]))  # 1/(4 tau^2)
    1.0
    """
    P_t, mu_t, tau_f, lengths_t, nu_t = _checked_problem(P, mu, tau, lengths, nu)
    theta_t = as_vector(theta, "theta", size=P_t.shape[0])
    return _averaged_objective(theta_t, P_t, mu_t.log(), tau_f, lengths_t, nu_t)


def averaged_ipo_optimum(
    P: Any,
    mu: Any,
    tau: Any,
    lengths: Any,
    nu: Any = None,
    *,
    tol: float = 1e-12,
    max_iter: int = 200,
) -> Tensor:
    r"""Minimiser of the population IPO loss with per-token averaged log-ratios (TRL's IPO), exact.

    Damped Newton on the logits of ``averaged_ipo_population_loss`` (float64, exact Hessian by
    autograd, restricted to logits summing to 0, Levenberg-Marquardt damping with a backtracking
    line search), run until the gradient's max-norm is at most ``tol``.

    With equal lengths :math:`L` the result is ``ipo_optimum(P, mu, tau / L, nu)``
    (``effective_tau``). With unequal lengths the minimiser satisfies
    :math:`\log(\pi(y)/\mu(y)) = L(y)\,\bigl((P\nu)_y/\tau + c\bigr)` for one constant :math:`c`
    fixed by normalisation (the averaged log-ratios solve Azar et al.'s least squares; the
    log-ratios are them times the lengths): every action has its own temperature
    :math:`\tau/L(y)` plus a length term :math:`cL(y)`, so in general no single tau of the summed
    loss reproduces it (``best_effective_tau``). The solver does not use this identity; the tests
    check it.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.
    mu : array-like, shape (K,)
        Reference policy, strictly positive.
    tau : float > 0
        TRL's ``beta`` with ``loss_type="ipo"``.
    lengths : array-like, shape (K,), > 0
        Completion length of each action in tokens.
    nu : array-like, shape (K,), optional
        Pair distribution, strictly positive (the minimiser is unique only with full support);
        default ``mu``.
    tol : float > 0, default 1e-12
        Stop when ``max |grad|`` of the loss in the logits is at most ``tol``.
    max_iter : int >= 1, default 200

    Returns
    -------
    Tensor, shape (K,), float64.

    Raises
    ------
    ValueError
        Malformed inputs (see ``averaged_ipo_population_loss``).
    RuntimeError
        If Newton does not reach ``tol`` in ``max_iter`` iterations.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (13), Theorem 2 (summed: unique minimiser
    :math:`\mu e^{P\nu/\tau}/Z`); huggingface/trl PR #1265 (averaging).

    Examples
    --------
    >>> P = [[0.5, 1.0], [0.0, 0.5]]
    >>> averaged_ipo_optimum(P, [0.5, 0.5], 1.0, [2, 2])  # = ipo_optimum(P, mu, 1.0 / 2)
    tensor([0.7311, 0.2689], dtype=torch.float64)
    """
    P_t, mu_t, tau_f, lengths_t, nu_t = _checked_problem(P, mu, tau, lengths, nu)
    tol = as_positive_float(tol, "tol")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    k = P_t.shape[0]
    log_mu = mu_t.log()

    def objective(th: Tensor) -> Tensor:
        return _averaged_objective(th, P_t, log_mu, tau_f, lengths_t, nu_t)

    # Basis of the logits summing to 0 (the loss is flat along 1): Q has orthonormal columns.
    Q = torch.linalg.qr(torch.eye(k, dtype=torch.float64) - 1.0 / k)[0][:, : k - 1]
    # Start at the summed IPO optimum with tau / mean length (exact when the lengths are equal).
    start = ipo_optimum(P_t, mu_t, tau_f / float(lengths_t.mean()), nu_t).log()
    theta = start - start.mean()

    def value_and_grad(th: Tensor) -> tuple[float, Tensor]:
        th = th.clone().requires_grad_(True)
        value = objective(th)
        (grad,) = torch.autograd.grad(value, th)
        return float(value.detach()), grad

    damping = 0.0
    value, grad = value_and_grad(theta)
    for _ in range(max_iter):
        if float(grad.abs().max()) <= tol:
            return normalize_log(theta).exp()
        hess = torch.autograd.functional.hessian(objective, theta)
        g, H = Q.T @ grad, Q.T @ hess @ Q
        scale = float(torch.linalg.eigvalsh(H).abs().max()) or 1.0
        while True:
            try:
                step = -torch.linalg.solve(
                    H + damping * scale * torch.eye(k - 1, dtype=torch.float64), g
                )
            except RuntimeError:
                step = None
            if step is not None and float(g @ step) < 0:
                break
            damping = max(10.0 * damping, 1e-8)
        # Backtracking (Armijo) on the loss. Near the minimum the decrease drops below the round-off
        # of the loss; there a step is accepted when the loss does not rise beyond round-off and the
        # gradient shrinks, so Newton's last steps still polish the gradient to ``tol``.
        t, slope = 1.0, float(g @ step)
        noise = 1e-13 * max(1.0, abs(value))
        while True:
            candidate = theta + t * (Q @ step)
            c_value, c_grad = value_and_grad(candidate)
            if c_value <= value + 1e-4 * t * slope:
                break
            if c_value <= value + noise and float(c_grad.abs().max()) < float(grad.abs().max()):
                break
            t *= 0.5
            if t < 1e-12:
                raise RuntimeError(
                    "averaged_ipo_optimum: the line search found no decrease "
                    f"(max |grad| = {float(grad.abs().max()):.3g})"
                )
        theta, value, grad = candidate, c_value, c_grad
        damping = damping / 10.0 if t == 1.0 else max(10.0 * damping, 1e-8)
    raise RuntimeError(
        f"averaged_ipo_optimum: Newton did not reach max |grad| <= {tol:g} in {max_iter} iterations"
    )


def best_effective_tau(
    P: Any,
    mu: Any,
    tau: Any,
    lengths: Any,
    nu: Any = None,
    *,
    tau_min: float = 1e-4,
    tau_max: float = 1e4,
) -> tuple[float, float]:
    r"""The single tau of the summed IPO loss whose optimum comes closest to TRL's averaged optimum.

    Minimises the total variation distance
    :math:`\tfrac12\|\texttt{ipo\_optimum}(P,\mu,t,\nu) - \texttt{averaged\_ipo\_optimum}(P,\mu,\tau,L,\nu)\|_1`
    over :math:`t \in [\tau_{\min}, \tau_{\max}]`: a log-spaced grid, then a bounded scalar search
    around the best grid point. With equal lengths the answer is :math:`t = \tau/L` at distance ~0
    (``effective_tau``); with unequal lengths the distance stays positive in general, i.e. averaging
    is then not a change of tau.

    Parameters
    ----------
    P, mu, tau, lengths, nu
        As in ``averaged_ipo_optimum``.
    tau_min, tau_max : float, 0 < tau_min < tau_max
        Search interval for the summed tau.

    Returns
    -------
    (float, float)
        The best summed tau and its total variation distance to the averaged optimum.

    Raises
    ------
    ValueError
        Malformed inputs or ``tau_min >= tau_max``.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (9) (summed optimum); huggingface/trl PR #1265.

    Examples
    --------
    >>> P = [[0.5, 0.7, 0.6], [0.3, 0.5, 0.8], [0.4, 0.2, 0.5]]
    >>> t, d = best_effective_tau(P, [1/3, 1/3, 1/3], 0.5, [10, 10, 10])
    >>> round(t, 6), d < 1e-9
    (0.05, True)
    """
    from scipy.optimize import minimize_scalar

    P_t, mu_t, tau_f, lengths_t, nu_t = _checked_problem(P, mu, tau, lengths, nu)
    lo, hi = as_positive_float(tau_min, "tau_min"), as_positive_float(tau_max, "tau_max")
    if lo >= hi:
        raise ValueError(f"tau_min must be < tau_max, got {lo!r} >= {hi!r}")
    target = averaged_ipo_optimum(P_t, mu_t, tau_f, lengths_t, nu_t)

    def tv(log_t: float) -> float:
        return 0.5 * float((ipo_optimum(P_t, mu_t, math.exp(log_t), nu_t) - target).abs().sum())

    def squared(log_t: float) -> float:  # smooth, so the scalar search converges fast
        return float(((ipo_optimum(P_t, mu_t, math.exp(log_t), nu_t) - target) ** 2).sum())

    grid = np.linspace(math.log(lo), math.log(hi), 161)
    i = int(np.argmin([tv(g) for g in grid]))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    candidates = [float(grid[i])]
    for fun in (squared, tv):  # the squared distance for exact matches, then TV itself
        res = minimize_scalar(fun, bounds=(a, b), method="bounded", options={"xatol": 1e-12})
        candidates.append(float(res.x))
    best_log = min(candidates, key=tv)
    return math.exp(best_log), tv(best_log)
