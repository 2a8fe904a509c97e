r"""Generalised preference optimisation (GPO): one convex f applied to beta times the margin.

Tang et al. write the offline losses DPO, IPO and SLiC as one family,

.. math:: \ell_f(h) = f(\beta h),

with f a binary-classification surrogate of the scaled margin x = beta * h. ``GPO_FUNCTIONS`` maps
each name to its f (a function of a tensor x); ``gpo_loss`` applies one to margins, elementwise and
without reduction, like the losses in ``prefopt_toy.losses.pairwise``. ``gpo_optimal_margin`` gives the
per-pair optimum under soft labels, the target each f pulls a pair's margin to.

Per-pair optimum. A pair whose first response wins with probability p, seen in both orders, costs
:math:`p\,f(x) + (1-p)\,f(-x)`; its minimiser solves :math:`p\,f'(x) = (1-p)\,f'(-x)`. Those targets
differ across a triangle of pairs, so the population optimum over a policy is a joint solve
(``prefopt_toy.losses.population``), not these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_hyper, as_positive_float, as_tensor

from .pairwise import _as_margin, _in_float32_if_half, _neg_logsigmoid

__all__ = ["GPO_FUNCTIONS", "exponential_threshold", "gpo_loss", "gpo_optimal_margin"]


def exponential_threshold(dtype: torch.dtype) -> float:
    r"""Where the GPO exponential loss switches from :math:`e^{-x}` to its tangent line.

    :math:`x_0 = -\tfrac12 \ln(\text{largest finite value of dtype})`, so :math:`e^{-x_0}` is the
    square root of the largest float: -44.3614 (float32), -44.3595 (bfloat16), -354.8914 (float64),
    -5.5449 (float16). ``gpo_loss`` uses the threshold of the margin's dtype even where it computes
    in float32 (half-precision margins), so the slope :math:`-e^{-x_0}` of the linear part, the
    gradient that flows back to the margin, stays finite in the margin's dtype (256 in float16).

    Examples
    --------
    >>> round(exponential_threshold(torch.float64), 4)
    -354.8914
    """
    return -0.5 * math.log(torch.finfo(dtype).max)


def _logistic(x: Tensor) -> Tensor:
    # log(1 + e^{-x}) = -log sigma(x), the same stable softplus as dpo_loss (finite for finite x).
    return _neg_logsigmoid(x)


def _hinge(x: Tensor) -> Tensor:
    return torch.clamp_min(1.0 - x, 0.0)


def _squared(x: Tensor) -> Tensor:
    return (x - 1.0) ** 2


def _exponential(x: Tensor, threshold_dtype: torch.dtype | None = None) -> Tensor:
    # e^{-x} overflows for x < -88.7 (float32) / -709.8 (float64). Below x0 = exponential_threshold
    # we continue with the tangent line e^{-x0} (1 + x0 - x): C^1, convex, decreasing, exact above x0.
    # Branch-free form with xc = max(x, x0): e^{-xc} (1 + xc - x). exp only ever sees -xc <= -x0, so
    # no inf appears even in an unused branch (torch.where would leak 0 * inf = NaN into gradients).
    # threshold_dtype: the margin's dtype when x is a float32 copy of a half-precision margin.
    x0 = exponential_threshold(threshold_dtype or x.dtype)
    xc = torch.clamp_min(x, x0)
    return torch.exp(-xc) * (1.0 + (xc - x))


def _truncated_quadratic(x: Tensor) -> Tensor:
    return _hinge(x) ** 2


def _savage(x: Tensor) -> Tensor:
    # 1 / (1 + e^x)^2 = sigma(-x)^2: bounded in [0, 1], no overflow for any x.
    return torch.sigmoid(-x) ** 2


GPO_FUNCTIONS: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType(
    {
        "logistic": _logistic,
        "hinge": _hinge,
        "squared": _squared,
        "exponential": _exponential,
        "truncated_quadratic": _truncated_quadratic,
        "savage": _savage,
    }
)
"""Name -> f(x) of the GPO family, x = beta * margin (a read-only mapping; see ``gpo_loss``)."""


def _hinge_prime(x: Tensor) -> Tensor:
    return -(x <= 1.0).to(x.dtype)  # clamp_min passes the gradient at equality, like autograd


def _exponential_prime(x: Tensor) -> Tensor:
    return -torch.exp(-torch.clamp_min(x, exponential_threshold(x.dtype)))


def _savage_prime(x: Tensor) -> Tensor:
    s = torch.sigmoid(-x)
    return -2.0 * s * s * torch.sigmoid(x)


# f'(x) beside each f (used by the exact engine; tests check them against autograd of f).
GPO_DERIVATIVES: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType(
    {
        "logistic": lambda x: -torch.sigmoid(-x),
        "hinge": _hinge_prime,
        "squared": lambda x: 2.0 * (x - 1.0),
        "exponential": _exponential_prime,
        "truncated_quadratic": lambda x: -2.0 * _hinge(x),
        "savage": _savage_prime,
    }
)


def _gpo_value(h: Tensor, beta: Any, f: str, threshold_dtype: torch.dtype | None = None) -> Tensor:
    if f == "exponential":
        return _exponential(beta * h, threshold_dtype)
    return GPO_FUNCTIONS[f](beta * h)


def _gpo_slope(h: Tensor, beta: Any, f: str) -> Tensor:
    return beta * GPO_DERIVATIVES[f](beta * h)


def _gpo_name(f: Any) -> str:
    if not isinstance(f, str) or f not in GPO_FUNCTIONS:
        raise ValueError(f"f must be one of {sorted(GPO_FUNCTIONS)}, got {f!r}")
    return f


def gpo_loss(margin: Any, beta: float, f: str) -> Tensor:
    r"""Per-pair GPO loss :math:`f(\beta h)` for a named surrogate f.

    =========================  ======================  ====================  ===========================
    ``f``                      :math:`f(x)`            same as               optimal :math:`\beta h^*`
    =========================  ======================  ====================  ===========================
    ``"logistic"``             :math:`\log(1+e^{-x})`  DPO (``dpo_loss``)    :math:`\mathrm{logit}\,p`
    ``"hinge"``                :math:`\max(0, 1-x)`    SLiC (``slic_loss``)  :math:`\mathrm{sign}(2p-1)`
    ``"squared"``              :math:`(x-1)^2`         IPO, beta = 2 tau     :math:`2p-1`
    ``"exponential"``          :math:`e^{-x}`          (boosting)            :math:`\mathrm{logit}(p)/2`
    ``"truncated_quadratic"``  :math:`\max(0,1-x)^2`   (squared hinge)       :math:`2p-1`
    ``"savage"``               :math:`(1+e^{x})^{-2}`  (Savage)              :math:`\mathrm{logit}\,p`
    =========================  ======================  ====================  ===========================

    Which way each pushes the margin: logistic, exponential and Savage push it **up** forever (f is
    decreasing with f' < 0 everywhere, so a pair seen in one direction drives h to +inf); hinge and
    truncated quadratic push it up until :math:`\beta h \ge 1`, then stop; squared pulls
    :math:`\beta h` to 1 from both sides. IPO: :math:`(2\tau h - 1)^2 = 4\tau^2 (h - 1/(2\tau))^2`,
    i.e. ``gpo_loss(h, 2 * tau, "squared") == 4 * tau**2 * ipo_loss(h, tau)``. The last column is the
    minimiser of :math:`p f(x) + (1-p) f(-x)` (``gpo_optimal_margin``).

    Parameters
    ----------
    margin : Tensor or array-like, shape (...)
        Chosen-minus-rejected log-ratio difference h (rho in Tang et al.).
    beta : float > 0
        Scale of the margin inside f (beta in Tang et al.).
    f : str
        A key of ``GPO_FUNCTIONS``.

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses, same shape as ``margin``; its dtype, except float32 for a float16 margin
        (computed in float32 for float16 and bfloat16 margins, as in ``prefopt_toy.losses.pairwise``).

    Raises
    ------
    ValueError
        If ``margin`` is not finite, ``beta <= 0`` or ``f`` is not a known name.

    Notes
    -----
    *Exponential.* :math:`e^{-x}` is computed exactly for :math:`x \ge x_0`, where
    :math:`x_0 =` ``exponential_threshold(margin.dtype)`` :math:`= -\tfrac12\ln(\text{float max})`
    (-44.36 in float32 and bfloat16, -354.89 in float64, -5.54 in float16, whose gradient must
    stay below 65504). Below :math:`x_0` it is replaced by its tangent line :math:`e^{-x_0}(1 + x_0 - x)`, which keeps the loss C^1, convex and decreasing,
    with constant slope :math:`-e^{-x_0}` (magnitude 1.8e19 in float32), so value and gradient stay
    finite for :math:`|x|` up to about :math:`e^{-x_0}`, far beyond 1e4. Unmodified, :math:`e^{-x}` overflows
    for x below -88.7 (float32) or -709.8 (float64).

    *Savage* is computed as :math:`\sigma(-x)^2`, bounded in [0, 1]. Unlike the others it is not
    convex (only monotone), though its per-pair optimum is still unique; the GPO table as commonly
    reproduced lists it. At the kink x = 1 autograd gives the hinge its left derivative -1 and the
    truncated quadratic its (two-sided) derivative 0.

    References
    ----------
    Tang et al., arXiv:2402.05749v2, Sec. 2 (the GPO loss and its table of convex functions; the
    table is as commonly reproduced, not re-checked against the PDF);
    Masnadi-Shirazi & Vasconcelos (2008), NeurIPS (Savage loss);
    Azar et al., arXiv:2310.12036v2, Eq. (17) (IPO), Rafailov et al., arXiv:2305.18290v3, Eq. (7).

    Examples
    --------
    >>> round(float(gpo_loss(6.0, beta=0.1, f="hinge")), 12)
    0.4
    """
    h = _as_margin(margin)
    return _in_float32_if_half(_gpo_value, h, as_hyper(beta, "beta"), _gpo_name(f), h.dtype)


def gpo_optimal_margin(p: Any, beta: float, f: str) -> Tensor:
    r"""Per-pair optimal margin :math:`h^*` of ``gpo_loss`` under soft labels.

    :math:`h^* = x^*/\beta` with :math:`x^* = \arg\min_x\, p\,f(x) + (1-p)\,f(-x)`, the solution of
    :math:`p\,f'(x) = (1-p)\,f'(-x)`:

    - logistic and Savage: :math:`x^* = \mathrm{logit}\,p` (both are proper with the logit link);
    - exponential: :math:`x^* = \tfrac12\,\mathrm{logit}\,p`;
    - squared and truncated quadratic: :math:`x^* = 2p - 1`;
    - hinge: :math:`x^* = \mathrm{sign}(2p - 1)`; at p = 1/2 every x in [-1, 1] is optimal and 0 is
      returned.

    Parameters
    ----------
    p : float or array-like, shape (...)
        Probability in [0, 1] that the first response of the pair wins. p in {0, 1} gives -inf/+inf
        for logistic, exponential and Savage (no finite optimum).
    beta : float > 0
        Scale of the margin inside f.
    f : str
        A key of ``GPO_FUNCTIONS``.

    Returns
    -------
    Tensor, shape (...), float64

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1], ``beta <= 0`` or ``f`` is unknown.

    References
    ----------
    Tang et al., arXiv:2402.05749v2, Sec. 2-3 (GPO as binary classification of the pair order).

    Examples
    --------
    >>> gpo_optimal_margin(0.75, beta=0.5, f="squared")
    tensor(1., dtype=torch.float64)
    """
    p_t = as_tensor(p, "p")
    if bool(((p_t < 0) | (p_t > 1)).any()):
        raise ValueError("p must lie in [0, 1] (a win probability)")
    b = as_positive_float(beta, "beta")
    name = _gpo_name(f)
    if name in ("logistic", "savage"):
        x = torch.logit(p_t)
    elif name == "exponential":
        x = 0.5 * torch.logit(p_t)
    elif name in ("squared", "truncated_quadratic"):
        x = 2.0 * p_t - 1.0
    else:  # hinge
        x = torch.sign(2.0 * p_t - 1.0)
    return x / b
