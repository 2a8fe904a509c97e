r"""Symbolic derivations of the offline closed forms: DPO from RLHF, the PsiPO special cases, IPO's optimum and loss.

Four :class:`~prefopt_toy.symbolic.core.Derivation` builders: DPO's loss from the KL-regularised
RLHF optimum (the partition function cancels), PsiPO with Psi = logit (RLHF/DPO) and Psi = identity
(IPO), IPO's optimum from the first-order condition, and IPO's population loss against its
Bernoulli-label forms (Prop. 3). Each is verified symbolically and checked numerically against the
library; all are re-exported by :mod:`prefopt_toy.symbolic`, which holds the registry.

References: as :mod:`prefopt_toy.symbolic`, the module this one was split from.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import sympy as sp

from .core import (
    Derivation,
    _gibbs,
    _mu,
    _nu,
    _P_numeric,
    _p_win,
    _pair_sum,
    _pi,
    _Psi,
    _r,
    _sigma,
    _sigmoid,
    _three_action_game,
    _vec,
    _y,
    _yl,
    _yp,
    _yw,
)

__all__ = [
    "dpo_from_rlhf",
    "ipo_bernoulli_labels",
    "ipo_optimum_first_order",
    "psipo_special_cases",
]


# ------------------------------------------------------------------------------ 1. DPO from RLHF


@functools.cache
def dpo_from_rlhf() -> Derivation:
    r"""DPO's loss from the RLHF closed form: the partition function cancels.

    The KL-regularised RLHF optimum :math:`\pi^*(y) = \mu(y) e^{r(y)/\beta}/Z` is solved for the
    reward, :math:`r(y) = \beta\log(\pi(y)/\mu(y)) + \beta\log Z`, and substituted into the
    Bradley-Terry probability :math:`\sigma(r(y_w) - r(y_l))`; ``log Z`` cancels in the
    difference, and the negative log-likelihood of one preference is
    :math:`-\log\sigma(\beta h)`. Checked against ``pt.dpo_loss`` of ``pt.margin``.

    Returns
    -------
    Derivation

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Sec. 4 (Eq. (4)-(5): closed form and reparametrised
    reward; Eq. (7): the loss); Azar et al., arXiv:2310.12036v2, Eq. (1)-(4).

    Examples
    --------
    >>> dpo_from_rlhf().verify()
    True
    """
    beta, Z = sp.symbols("beta Z", positive=True)
    pi_w, pi_l, mu_w, mu_l = sp.symbols("pi_w pi_l mu_w mu_l", positive=True)
    piy, muy = sp.symbols("pi_y mu_y", positive=True)
    ry = sp.Symbol("r_y", real=True)
    # Solve the closed form pi = mu e^{r/beta} / Z for the reward (step 2, done by sympy).
    (r_solved,) = sp.solve(sp.Eq(piy, muy * sp.exp(ry / beta) / Z), ry)
    reward = sp.Lambda((piy, muy), r_solved)
    diff_r = reward(pi_w, mu_w) - reward(pi_l, mu_l)
    h = sp.log(pi_w / mu_w) - sp.log(pi_l / mu_l)
    lhs = -sp.log(_sigmoid(diff_r))  # minus log BT probability with the solved rewards
    rhs = -sp.log(_sigmoid(beta * h))
    steps = (
        (
            "RLHF maximises $\\mathbb{E}_\\pi[r] - \\beta\\,KL(\\pi\\|\\mu)$; its maximiser is a Gibbs policy",
            sp.Eq(_pi(_y), _mu(_y) * sp.exp(_r(_y) / beta) / Z),
        ),
        (
            "Solve for the reward (sympy.solve)",
            sp.Eq(
                _r(_y),
                sp.expand(sp.expand_log(r_solved.subs({piy: _pi(_y), muy: _mu(_y)}), force=True)),
            ),
        ),
        (
            "Bradley-Terry probability that $y_w$ beats $y_l$",
            sp.Eq(sp.Symbol("P(y_w > y_l)"), _sigma(_r(_yw) - _r(_yl))),
        ),
        (
            "Reward difference in policy terms: $\\beta\\log Z$ cancels",
            sp.Eq(sp.Symbol("r_w - r_l"), sp.expand(sp.expand_log(diff_r, force=True))),
        ),
        (
            (
                "Negative log-likelihood of the observed preference, with $h = \\log\\frac{\\pi_w}{\\mu_w} - "
                "\\log\\frac{\\pi_l}{\\mu_l}$"
            ),
            sp.Eq(sp.Symbol("ell"), -sp.log(_sigma(beta * sp.Symbol("h")))),
        ),
    )
    lemmas = (
        (
            "the solved reward is $\\beta\\log(\\pi/\\mu) + \\beta\\log Z$",
            r_solved,
            beta * sp.log(piy / muy) + beta * sp.log(Z),
        ),
        ("the reward difference does not depend on $Z$", sp.diff(diff_r, Z), sp.S.Zero),
    )
    from prefopt_toy.losses.pairwise import dpo_loss, margin

    args = (pi_w, pi_l, mu_w, mu_l, Z, beta)
    points = [
        (0.5, 0.2, 0.3, 0.4, 1.7, 0.1),
        (0.1, 0.6, 0.5, 0.2, 0.3, 1.0),
        (0.9, 0.05, 0.25, 0.25, 4.0, 2.5),
        (0.3, 0.3, 0.1, 0.6, 1.0, 0.5),
    ]
    checks = tuple(
        (
            p,
            (
                float(
                    dpo_loss(
                        margin(
                            [math.log(p[0])], [math.log(p[1])], [math.log(p[2])], [math.log(p[3])]
                        ),
                        beta=p[5],
                    )[0]
                ),
            ),
        )
        for p in points
    )
    return Derivation(
        "dpo",
        "DPO from the RLHF closed form",
        "Rafailov et al., arXiv:2305.18290v3, "
        "Sec. 4, Eq. (4)-(7); Azar et al., arXiv:2310.12036v2, Eq. (1)-(4)",
        steps,
        lhs,
        rhs,
        args,
        checks,
        lemmas,
        statement=(
            r"-\log\sigma\big(r(y_w) - r(y_l)\big) = -\log\sigma(\beta h),\quad "
            r"h = \log\frac{\pi(y_w)}{\mu(y_w)} - \log\frac{\pi(y_l)}{\mu(y_l)}"
        ),
    )


@functools.cache
def psipo_special_cases() -> Derivation:
    r"""PsiPO with :math:`\Psi = \mathrm{logit}` under Bradley-Terry is RLHF/DPO; with the identity, IPO.

    The PsiPO optimum is :math:`\pi^*(y) \propto \mu(y)\exp(g(y)/\tau)` with
    :math:`g(y) = E_{y'\sim\nu}\Psi(P[y, y'])`. Under BT, :math:`\mathrm{logit}\,\sigma(r_y - r_{y'}) =
    r_y - r_{y'}`, so :math:`g(y) = r(y) - E_\nu r` and the constant drops out in the normalisation:
    the RLHF optimum :math:`\mu e^{r/\tau}/Z`. With :math:`\Psi(q) = q`,
    :math:`g = P\nu` and the optimum is IPO's. Three generic actions; checked against
    ``pt.rlhf_optimum(pt.bradley_terry(r), ...)`` and ``pt.ipo_optimum``.

    Returns
    -------
    Derivation

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (6)-(9) (PsiPO and its optimum), Sec. 4.1 and Prop. 1
    (logit case), Sec. 5 (identity case, IPO).

    Examples
    --------
    >>> psipo_special_cases().verify()
    True
    """
    tau = sp.Symbol("tau", positive=True)
    r = sp.symbols("r1:4", real=True)
    m = sp.symbols("mu1:4", positive=True)
    n1, n2 = sp.symbols("nu1 nu2", positive=True)
    nu = (n1, n2, 1 - n1 - n2)
    game = _three_action_game()
    P = game["P"]
    q = sp.Symbol("q", positive=True)
    d = sp.Symbol("d", real=True)
    logit = sp.Lambda(q, sp.log(q / (1 - q)))
    logit_of_bt = sp.simplify(logit(_sigmoid(d)))  # = d
    # Psi = logit on BT preferences: Psi(P[y, y']) = logit(sigma(r_y - r_y')) = r_y - r_y'.
    g_logit = [sum(nu[j] * logit_of_bt.subs(d, r[i] - r[j]) for j in range(3)) for i in range(3)]
    g_id = [sum(nu[j] * P[i, j] for j in range(3)) for i in range(3)]
    pi_logit = _gibbs([m[i] * sp.exp(g_logit[i] / tau) for i in range(3)])
    pi_id = _gibbs([m[i] * sp.exp(g_id[i] / tau) for i in range(3)])
    rlhf = _gibbs([m[i] * sp.exp(r[i] / tau) for i in range(3)])
    ipo = _gibbs([m[i] * sp.exp((P * sp.Matrix(nu))[i] / tau) for i in range(3)])
    lhs = sp.ImmutableMatrix([*pi_logit, *pi_id])
    rhs = sp.ImmutableMatrix([*rlhf, *ipo])
    steps = (
        (
            (
                "PsiPO: maximise $\\mathbb{E}_{y\\sim\\pi, y'\\sim\\nu}[\\Psi(P(y \\succ y'))] - \\tau KL(\\pi\\|\\mu)$; "
                "optimum (Gibbs)"
            ),
            sp.Eq(_pi(_y), _mu(_y) * sp.exp(sp.Function("g")(_y) / tau) / sp.Symbol("Z")),
        ),
        (
            "with the payoff",
            sp.Eq(
                sp.Function("g")(_y),
                sp.Sum(_nu(_yp) * _Psi(sp.Function("P")(_y, _yp)), (_yp, 1, 3)),
            ),
        ),
        (
            "Logit of a Bradley-Terry probability (sympy.simplify)",
            sp.Eq(logit(_sigmoid(d)), logit_of_bt),
        ),
        (
            "Logit case, payoff of action 1 (a constant $\\mathbb{E}_\\nu r$ is subtracted from every action)",
            sp.Eq(sp.Symbol("g_1"), sp.expand(g_logit[0])),
        ),
        (
            "Identity case: payoff = win rate against $\\nu$",
            sp.Eq(sp.Symbol("g_1"), sp.expand(g_id[0])),
        ),
    )
    lemmas = (("logit undoes the sigmoid", logit_of_bt, d),)
    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.solutions.optima import ipo_optimum, rlhf_optimum

    args = (*r, *game["p"], n1, n2, *m, tau)
    points = [
        ((0.3, -0.5, 1.2), (0.7, 0.4, 0.25), (0.3, 0.5), (0.2, 0.3, 0.5), 0.5),
        ((1.0, 0.0, -2.0), (0.9, 0.2, 0.6), (0.1, 0.1), (0.6, 0.3, 0.1), 0.1),
        ((0.0, 0.4, 0.4), (0.55, 0.35, 0.8), (0.45, 0.25), (1 / 3, 1 / 3, 1 / 3), 2.0),
    ]
    checks = []
    for rv, pv, (a, b), mv, t in points:
        nuv = [a, b, 1.0 - a - b]
        exp = _vec(rlhf_optimum(bradley_terry(rv), mv, t, nu=nuv)) + _vec(
            ipo_optimum(_P_numeric(*pv), mv, t, nu=nuv)
        )
        checks.append(((*rv, *pv, a, b, *mv, t), exp))
    return Derivation(
        "psipo",
        "PsiPO: logit gives RLHF/DPO, identity gives IPO",
        "Azar et al., arXiv:2310.12036v2, Eq. (6)-(9), Prop. 1",
        steps,
        lhs,
        rhs,
        args,
        tuple(checks),
        lemmas,
        policy_size=3,
        statement=(
            r"\Psi = \mathrm{logit},\ P = \sigma(r_y - r_{y'}):\ \pi^* \propto \mu\, e^{r/\tau};"
            r"\qquad \Psi = \mathrm{id}:\ \pi^* \propto \mu\, e^{P\nu/\tau}"
        ),
    )


# ---------------------------------------------------------------------- 3. IPO optimum by the FOC


@functools.cache
def ipo_optimum_first_order() -> Derivation:
    r"""IPO's optimum :math:`\pi \propto \mu e^{p/\tau}` from the first-order (Lagrange) condition.

    Maximise :math:`J(\pi) = \sum_y \pi(y) p(y) - \tau\sum_y \pi(y)\log(\pi(y)/\mu(y))` over the
    simplex, :math:`p(y) = (P\nu)_y = E_{y'\sim\nu}P(y \succ y')`. Stationarity of the Lagrangian
    gives :math:`\pi(y) = \mu(y) e^{(p(y) + \lambda - \tau)/\tau}`; normalising removes
    :math:`\lambda`. :math:`J` is strictly concave (Hessian :math:`-\tau\,\mathrm{diag}(1/\pi)`), so
    this is the unique maximiser. Three generic actions; checked against ``pt.ipo_optimum``.

    Returns
    -------
    Derivation

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (8)-(9) (Psi = identity), App. A.1 (the Gibbs argument).

    Examples
    --------
    >>> ipo_optimum_first_order().verify()
    True
    """
    tau = sp.Symbol("tau", positive=True)
    m = sp.symbols("mu1:4", positive=True)
    x = sp.symbols("pi1:4", positive=True)
    lam = sp.Symbol("lambda", real=True)
    n1, n2 = sp.symbols("nu1 nu2", positive=True)
    nu = sp.Matrix([n1, n2, 1 - n1 - n2])
    game = _three_action_game()
    p = game["P"] * nu
    J = sum(x[i] * p[i] for i in range(3)) - tau * sum(x[i] * sp.log(x[i] / m[i]) for i in range(3))
    L = J + lam * (sum(x) - 1)
    foc = [sp.diff(L, x[i]) for i in range(3)]
    sol = [sp.solve(sp.Eq(foc[i], 0), x[i])[0] for i in range(3)]
    lhs = _gibbs(sol)
    rhs = _gibbs([m[i] * sp.exp(p[i] / tau) for i in range(3)])
    grad_at = [sp.diff(J, x[i]).subs(dict(zip(x, rhs, strict=True))) for i in range(3)]
    hessian = sp.hessian(J, x)
    steps = (
        (
            "Objective on the simplex, $p(y) = (P\\nu)_y$",
            sp.Eq(
                sp.Symbol("J"),
                sp.Sum(
                    _pi(_y) * _p_win(_y) - sp.Symbol("tau") * _pi(_y) * sp.log(_pi(_y) / _mu(_y)),
                    (_y, 1, 3),
                ),
            ),
        ),
        (
            "Lagrangian with multiplier $\\lambda$ for $\\sum_y \\pi(y) = 1$; stationarity in $\\pi_1$",
            sp.Eq(foc[0].subs(p[0], sp.Symbol("p_1")), 0),
        ),
        ("Solve (sympy.solve) for $\\pi_1$", sp.Eq(x[0], sol[0].subs(p[0], sp.Symbol("p_1")))),
        (
            "Normalise: the factor $e^{(\\lambda - \\tau)/\\tau}$ is common to all actions and cancels",
            sp.Eq(x[0], sp.Symbol("mu1") * sp.exp(sp.Symbol("p_1") / tau) / sp.Symbol("Z")),
        ),
        (
            "Hessian of $J$: negative definite, so the stationary point is the unique maximiser",
            hessian,
        ),
    )
    lemmas = (
        (
            (
                "at the closed form, $\\partial J/\\partial\\pi_y$ is the same for every action "
                "(zero gradient along the simplex)"
            ),
            sp.ImmutableMatrix([grad_at[1] - grad_at[0], grad_at[2] - grad_at[0]]),
            sp.zeros(2, 1),
        ),
    )
    from prefopt_toy.solutions.optima import ipo_optimum

    # lambda stays in the unsimplified lhs; any value must give the same policy (it cancels).
    args = (*game["p"], n1, n2, *m, tau, lam)
    points = [
        ((0.7, 0.4, 0.25), (0.3, 0.5), (0.2, 0.3, 0.5), 0.5, 0.0),
        ((0.9, 0.2, 0.6), (0.1, 0.1), (0.6, 0.3, 0.1), 0.1, -0.3),
        ((1.0, 1.0, 0.5), (1 / 3, 1 / 3), (1 / 3, 1 / 3, 1 / 3), 0.05, 0.02),
    ]
    checks = tuple(
        ((*pv, a, b, *mv, t, lv), _vec(ipo_optimum(_P_numeric(*pv), mv, t, nu=[a, b, 1.0 - a - b])))
        for pv, (a, b), mv, t, lv in points
    )
    return Derivation(
        "ipo_optimum",
        "IPO's optimum from the first-order condition",
        "Azar et al., arXiv:2310.12036v2, Eq. (8)-(9), App. A.1",
        steps,
        lhs,
        rhs,
        args,
        checks,
        lemmas,
        policy_size=3,
        statement=r"\pi^*(y) = \frac{\mu(y)\, e^{p(y)/\tau}}{Z},\quad p = P\nu",
    )


@functools.cache
def ipo_bernoulli_labels() -> Derivation:
    r"""IPO's population loss equals its label forms up to a constant that does not depend on the policy.

    With :math:`a = \log(\pi/\mu)`, :math:`h(y, y') = a_y - a_{y'}` and :math:`p = P\nu`:

    - Eq. (13): :math:`L_{13} = E_{\nu\otimes\nu}[(h - (p_y - p_{y'})/\tau)^2]`;
    - Eq. (16), Bernoulli label :math:`I \sim B(P[y, y'])`:
      :math:`L_{16} = E_{\nu\otimes\nu}E_I[(h - I/\tau)^2] = L_{13} + C`, with
      :math:`C = \tau^{-2}E_{\nu\otimes\nu}[P - (p_y - p_{y'})^2]` (Prop. 3). The linear terms agree
      because :math:`E_{\nu\otimes\nu}[h P] = E_{\nu\otimes\nu}[h(p_y - p_{y'})]`, which uses
      :math:`P + P^\top = 1` and :math:`E_\nu p = 1/2`;
    - the label-sampler form the library enumerates (``pt.population_loss`` with ``pt.ipo_loss``;
      both orders, target :math:`1/(2\tau)`): :math:`L_{lab} = L_{16} - 1/(4\tau^2)`.

    The claim is :math:`L_{lab} = L_{13} + C - 1/(4\tau^2)`, checked against ``pt.population_loss``.

    Returns
    -------
    Derivation

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (13), (16), (17) and Prop. 3; Calandriello et al.,
    arXiv:2403.08635v1, Sec. 4 (Eq. (10), label sampler).

    Examples
    --------
    >>> ipo_bernoulli_labels().verify()
    True
    """
    tau = sp.Symbol("tau", positive=True)
    a = sp.symbols("a1:4", real=True)
    n1, n2 = sp.symbols("nu1 nu2", positive=True)
    nu = (n1, n2, 1 - n1 - n2)
    game = _three_action_game()
    P = game["P"]
    p = P * sp.Matrix(nu)

    def h(i: int, j: int) -> Any:
        return a[i] - a[j]

    L13 = _pair_sum(nu, lambda i, j: (h(i, j) - (p[i] - p[j]) / tau) ** 2)
    L16 = _pair_sum(
        nu, lambda i, j: P[i, j] * (h(i, j) - 1 / tau) ** 2 + (1 - P[i, j]) * h(i, j) ** 2
    )
    C = _pair_sum(nu, lambda i, j: (P[i, j] - (p[i] - p[j]) ** 2) / tau**2)
    c = 1 / (2 * tau)
    L_lab = _pair_sum(
        nu, lambda i, j: P[i, j] * (h(i, j) - c) ** 2 + (1 - P[i, j]) * (-h(i, j) - c) ** 2
    )
    hs, Ps, ps, qs = sp.symbols("h P_yy' p_y p_y'", real=True)
    steps = (
        (
            "Eq. (13), one pair: target $(p(y) - p(y'))/\\tau$",
            sp.Eq(sp.Symbol("ell_13"), sp.expand((hs - (ps - qs) / tau) ** 2)),
        ),
        (
            "Eq. (16), one pair, averaged over $I \\sim$ Bernoulli$(P_{yy'})$ ($I^2 = I$)",
            sp.Eq(sp.Symbol("ell_16"), sp.expand(Ps * (hs - 1 / tau) ** 2 + (1 - Ps) * hs**2)),
        ),
        (
            "The quadratic terms agree; the linear terms agree after averaging over $\\nu\\otimes\\nu$ (lemma)",
            sp.Eq(
                sp.Symbol("ell_16 - ell_13"),
                sp.expand(
                    Ps * (hs - 1 / tau) ** 2 + (1 - Ps) * hs**2 - (hs - (ps - qs) / tau) ** 2
                ),
            ),
        ),
        (
            "Library form (label sampler, both orders, target $1/(2\\tau)$), one pair",
            sp.Eq(sp.Symbol("ell_lab"), sp.expand(Ps * (hs - c) ** 2 + (1 - Ps) * (-hs - c) ** 2)),
        ),
        (
            "Average win rate of $\\nu$ against itself",
            sp.Eq(sp.Symbol("E_nu p"), sp.expand(sum(nu[i] * p[i] for i in range(3)))),
        ),
    )
    lemmas = (
        (
            "linear terms: $\\mathbb{E}[hP] = \\mathbb{E}[h\\,(p_y - p_{y'})]$",
            _pair_sum(nu, lambda i, j: h(i, j) * P[i, j]),
            _pair_sum(nu, lambda i, j: h(i, j) * (p[i] - p[j])),
        ),
        ("Prop. 3: Eq. (16) = Eq. (13) + C, C free of the policy", L16, L13 + C),
    )
    from functools import partial

    from prefopt_toy.losses.pairwise import ipo_loss
    from prefopt_toy.losses.population import population_loss

    args = (*a, *game["p"], n1, n2, tau)
    points = [
        ((0.3, -1.0, 0.5), (0.7, 0.4, 0.25), (0.3, 0.5), 0.5),
        ((2.0, 0.0, -1.0), (0.9, 0.2, 0.6), (0.1, 0.1), 0.1),
        ((0.0, 0.0, 0.0), (1.0, 0.5, 0.0), (0.5, 0.25), 1.0),
        ((-0.4, 1.3, 0.2), (0.55, 0.35, 0.8), (0.45, 0.25), 2.0),
    ]
    checks = tuple(
        (
            (*av, *pv, x1, x2, t),
            (
                float(
                    population_loss(
                        list(av),
                        _P_numeric(*pv),
                        [1 / 3] * 3,
                        partial(ipo_loss, tau=t),
                        nu=[x1, x2, 1.0 - x1 - x2],
                    )
                ),
            ),
        )
        for av, pv, (x1, x2), t in points
    )
    return Derivation(
        "ipo_labels",
        "IPO: the population loss and its label forms differ by a constant",
        "Azar et al., arXiv:2310.12036v2, Eq. (13), (16), (17), Prop. 3",
        steps,
        L_lab,
        L13 + C - 1 / (4 * tau**2),
        args,
        checks,
        lemmas,
        statement=(
            r"L_{\mathrm{lab}} = L_{13} + C - \frac{1}{4\tau^2},\quad "
            r"C = \tau^{-2}\,\mathbb{E}_{y,y'\sim\nu}\big[P_{yy'} - (p_y - p_{y'})^2\big]"
        ),
    )
