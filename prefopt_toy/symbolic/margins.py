r"""Symbolic derivations of per-pair optimal margins: conservative DPO and the GPO loss family.

Two :class:`~prefopt_toy.symbolic.core.Derivation` builders: the optimal margin of cDPO (label
smoothing epsilon) and the per-pair optimal margins of the logistic, squared and exponential GPO
losses, each from the root of the derivative of the per-pair risk. Each is verified symbolically and
checked numerically against the library; both are re-exported by :mod:`prefopt_toy.symbolic`,
which holds the registry.

References: as :mod:`prefopt_toy.symbolic`, the module this one was split from.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
import torch

from .core import Derivation, _sigma, _sigmoid

__all__ = ["cdpo_optimal_margin", "gpo_optimal_margins"]


# --------------------------------------------------------------------------- 8. cDPO margin


@functools.cache
def cdpo_optimal_margin() -> Derivation:
    r"""Conservative DPO (label smoothing epsilon): the optimal margin is :math:`\log((1-\varepsilon)/\varepsilon)/\beta`.

    :math:`\ell(h) = -(1-\varepsilon)\log\sigma(\beta h) - \varepsilon\log\sigma(-\beta h)` has
    :math:`\ell'(h) = \beta(\sigma(\beta h) - (1-\varepsilon))` and :math:`\ell'' = \beta^2\sigma(1-\sigma)
    > 0`, so its unique minimiser solves :math:`\sigma(\beta h^*) = 1-\varepsilon`. Checked against a
    numerical minimisation of ``pt.dpo_loss(h, beta, label_smoothing=eps)`` (scipy ``brentq`` on its
    autograd derivative, to 1e-15).

    Returns
    -------
    Derivation

    References
    ----------
    Mitchell (2023), "A note on DPO with noisy preferences", https://ericmitchell.ai/cdpo.pdf,
    Eq. (3); Rafailov et al., arXiv:2305.18290v3, Eq. (7).

    Examples
    --------
    >>> cdpo_optimal_margin().verify()
    True
    """
    from scipy.optimize import brentq

    from prefopt_toy.losses.pairwise import dpo_loss

    h = sp.Symbol("h", real=True)
    beta, eps = sp.symbols("beta epsilon", positive=True)
    loss = -(1 - eps) * sp.log(_sigmoid(beta * h)) - eps * sp.log(_sigmoid(-beta * h))
    d1 = sp.diff(loss, h)
    (h_star,) = sp.solve(d1, h)
    rhs = sp.log((1 - eps) / eps) / beta
    sig = _sigmoid(beta * h)
    steps = (
        (
            "cDPO loss: the label is flipped with probability $\\varepsilon$",
            sp.Eq(sp.Symbol("ell(h)"), loss),
        ),
        (
            "Derivative (sympy.diff), written with $\\sigma$",
            sp.Eq(sp.Symbol("ell'(h)"), beta * (_sigma(beta * h) - (1 - eps))),
        ),
        (
            "Second derivative $\\beta^2\\sigma(1-\\sigma) > 0$: strictly convex",
            sp.Eq(sp.Symbol("ell''(h)"), beta**2 * _sigma(beta * h) * (1 - _sigma(beta * h))),
        ),
        ("Solve $\\ell'(h) = 0$ (sympy.solve)", sp.Eq(sp.Symbol("h^*"), h_star)),
    )
    lemmas = (
        (
            "$\\ell'(h) = \\beta(\\sigma(\\beta h) - (1 - \\varepsilon))$",
            d1,
            beta * (sig - (1 - eps)),
        ),
        (
            "$\\ell''(h) = \\beta^2\\sigma(\\beta h)(1 - \\sigma(\\beta h))$",
            sp.diff(loss, h, 2),
            beta**2 * sig * (1 - sig),
        ),
    )

    def library_minimiser(e: float, b: float) -> float:
        def slope(x: float) -> float:
            t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            (g,) = torch.autograd.grad(dpo_loss(t, b, label_smoothing=e), t)
            return float(g)

        return float(
            brentq(slope, -1e3, 1e3, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
        )

    args = (eps, beta)
    checks = tuple(
        ((e, b), (library_minimiser(e, b),))
        for e, b in [(0.1, 0.1), (0.1, 1.0), (0.25, 0.5), (0.01, 2.0), (0.4, 1.0)]
    )
    return Derivation(
        "cdpo",
        "Conservative DPO: the optimal margin",
        "Mitchell (2023), ericmitchell.ai/cdpo.pdf, Eq. (3)",
        steps,
        h_star,
        rhs,
        args,
        checks,
        lemmas,
        statement=r"h^* = \frac{1}{\beta}\log\frac{1-\varepsilon}{\varepsilon}",
    )


# ------------------------------------------------------------------------------ 9. GPO margins


@functools.cache
def gpo_optimal_margins() -> Derivation:
    r"""Per-pair optimal margins of the GPO family: logistic, squared and exponential.

    A pair whose first response wins with probability p, seen in both orders, costs
    :math:`p f(\beta h) + (1-p) f(-\beta h)`. Setting the derivative in h to zero:

    - logistic :math:`f(x) = \log(1+e^{-x})`: :math:`h^* = \mathrm{logit}(p)/\beta`;
    - squared :math:`f(x) = (x-1)^2`: :math:`h^* = (2p-1)/\beta`;
    - exponential :math:`f(x) = e^{-x}`: :math:`h^* = \mathrm{logit}(p)/(2\beta)`.

    The library's convention (``pt.gpo_optimal_margin``) returns the margin h, i.e. already divided
    by beta; checked against it.

    Returns
    -------
    Derivation

    References
    ----------
    Tang et al., arXiv:2402.05749v2, Sec. 2 (the GPO family f(beta rho); table of f as commonly
    reproduced, not re-checked against the PDF).

    Examples
    --------
    >>> gpo_optimal_margins().verify()
    True
    """
    from prefopt_toy.losses.gpo import gpo_optimal_margin

    h = sp.Symbol("h", real=True)
    p, beta = sp.symbols("p beta", positive=True)
    fs = {
        "logistic": lambda z: sp.log(1 + sp.exp(-z)),
        "squared": lambda z: (z - 1) ** 2,
        "exponential": lambda z: sp.exp(-z),
    }
    logit = sp.log(p / (1 - p))
    closed = {
        "logistic": logit / beta,
        "squared": (2 * p - 1) / beta,
        "exponential": logit / (2 * beta),
    }
    sols, steps = [], []
    for name, f in fs.items():
        risk = p * f(beta * h) + (1 - p) * f(-beta * h)
        roots = sp.solve(sp.diff(risk, h), h)
        # Keep the real root for p in (0, 1) (sympy cannot know p < 1; the other branch is complex).
        real = [s for s in roots if sp.im(sp.N(s.subs({p: sp.Rational(1, 3), beta: 1}))) == 0]
        sols.append(real[0])
        steps.append((f"{name}: expected loss of the pair", sp.Eq(sp.Function("R")(h), risk)))
        steps.append((f"{name}: root of $dR/dh$ (sympy.solve)", sp.Eq(sp.Symbol("h^*"), real[0])))
    steps.append(
        (
            "IPO as GPO-squared with $\\beta = 2\\tau$: at $p = 1$ the target is $1/(2\\tau)$",
            sp.Eq(
                sp.Symbol("h^*"),
                ((2 * p - 1) / beta).subs({p: 1, beta: 2 * sp.Symbol("tau", positive=True)}),
            ),
        )
    )
    lhs = sp.ImmutableMatrix(sols)
    rhs = sp.ImmutableMatrix(list(closed.values()))
    args = (p, beta)
    checks = tuple(
        ((pv, bv), tuple(float(gpo_optimal_margin(pv, bv, name)) for name in fs))
        for pv, bv in [(0.75, 0.5), (0.2, 1.0), (0.5, 2.0), (0.9, 0.1), (0.999, 1.0)]
    )
    return Derivation(
        "gpo",
        "GPO: per-pair optimal margins",
        "Tang et al., arXiv:2402.05749v2, Sec. 2",
        tuple(steps),
        lhs,
        rhs,
        args,
        checks,
        statement=(
            r"h^*_{\mathrm{logistic}} = \frac{\mathrm{logit}\,p}{\beta},\quad "
            r"h^*_{\mathrm{squared}} = \frac{2p-1}{\beta},\quad "
            r"h^*_{\mathrm{exponential}} = \frac{\mathrm{logit}\,p}{2\beta}"
        ),
    )
