r"""Symbolic derivations for the rest of the preference-optimisation family on a tabular bandit.

Seven :class:`~prefopt_toy.symbolic.core.Derivation` builders, one per method: R-DPO's optimum (the
length term is a reward shift), SimPO with equal lengths as DPO with a uniform reference at
beta / L (and what gamma > 0 does to the fitted margin), sDPO's stages compounding to the KL
strength beta / T, KTO's small-beta limit, RSO (the DPO optimum does not depend on the pair
distribution under Bradley-Terry labels; IPO's does), ORPO's small-lambda limit (SFT on how often
each action is chosen) and DPOP with the penalty outside the sigmoid (when it pins the policy at
its kink). Each is verified symbolically and checked numerically against the library (or, where
the library has no such loss, against a torch evaluation built on its functions); all are
re-exported by :mod:`prefopt_toy.symbolic`, which holds the registry.

References: as :mod:`prefopt_toy.symbolic` (the R-DPO, SimPO, sDPO, KTO, RSO, ORPO and DPOP papers
are listed there).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import sympy as sp
import torch

from .core import (
    Derivation,
    _gibbs,
    _mu,
    _nu,
    _P_numeric,
    _pair_sum,
    _pi,
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
    "dpop_outside_kink",
    "dpop_outside_population_loss",
    "kto_population_loss",
    "kto_small_beta_limit",
    "orpo_small_lambda_limit",
    "rdpo_length_optimum",
    "rso_pair_distribution",
    "sdpo_stages",
    "simpo_uniform_reference",
]


def _logistic_risk(x: Any, p: Any) -> Any:
    """Expected logistic loss of a pair seen in both orders: ``-p log s(x) - (1-p) log s(-x)``."""
    return -p * sp.log(_sigmoid(x)) - (1 - p) * sp.log(_sigmoid(-x))


def _logit_of_sigmoid() -> tuple[Any, Any]:
    """``(d, logit(sigmoid(d)))`` with the second simplified by sympy (it is ``d``)."""
    d = sp.Symbol("d", real=True)
    q = sp.Symbol("q", positive=True)
    logit = sp.Lambda(q, sp.log(q / (1 - q)))
    return d, sp.simplify(logit(_sigmoid(d)))


# ------------------------------------------------------------------------------------ 1. R-DPO


@functools.cache
def rdpo_length_optimum() -> Derivation:
    r"""R-DPO's population optimum :math:`\pi^* \propto \mu\exp((r - \alpha L)/\beta)`.

    R-DPO's loss is :math:`-\log\sigma(\beta h + \alpha(L_w - L_l))` (h the log-ratio margin, L
    the lengths). A pair whose first action wins with the Bradley-Terry probability
    :math:`p = \sigma(r_y - r_{y'})`, seen in both orders, costs
    :math:`-p\log\sigma(x) - (1-p)\log\sigma(-x)` with :math:`x = \beta h + \alpha\Delta L`, whose
    derivative in h is :math:`\beta(\sigma(x) - p)`: the per-pair optimum is
    :math:`\beta h^* = (r_y - r_{y'}) - \alpha(L_y - L_{y'})`. These margins are differences of
    :math:`a = (r - \alpha L)/\beta`, so one tabular policy attains every pair's optimum at once,
    whatever the (full-support) pair distribution: :math:`\pi^* \propto \mu e^{(r - \alpha L)/\beta}`.
    With a spurious length preference :math:`r = q + \kappa L`, :math:`\alpha = \kappa` gives back
    :math:`\mu e^{q/\beta}`. Three generic actions; checked against
    ``pt.rlhf_optimum(pt.bradley_terry(r - alpha L), mu, beta)`` and
    ``pt.rlhf_optimum(pt.bradley_terry(q), mu, beta)``.

    Returns
    -------
    Derivation

    References
    ----------
    Park et al., arXiv:2403.19159 (the length-regularised DPO objective; version, section and
    equation numbers not re-checked against the PDF); Rafailov et al., arXiv:2305.18290v3, Eq. (4).

    Examples
    --------
    >>> rdpo_length_optimum().verify()
    True
    """
    beta = sp.Symbol("beta", positive=True)
    alpha, kappa = sp.symbols("alpha kappa", real=True)
    r = sp.symbols("r1:4", real=True)
    q = sp.symbols("q1:4", real=True)
    lengths = sp.symbols("L1:4", positive=True)
    m = sp.symbols("mu1:4", positive=True)
    h, dL = sp.symbols("h Delta_L", real=True)
    p = sp.Symbol("p", positive=True)
    risk = _logistic_risk(beta * h + alpha * dL, p)
    slope = sp.diff(risk, h)
    (h_star,) = sp.solve(slope, h)
    closed = (sp.log(p / (1 - p)) - alpha * dL) / beta
    d, logit_of_bt = _logit_of_sigmoid()

    def margin(i: int, j: int, rr: Sequence[Any], al: Any) -> Any:
        # closed form of the solved margin, at p = sigmoid(r_i - r_j) (logit undoes the sigmoid)
        return (logit_of_bt.subs(d, rr[i] - rr[j]) - al * (lengths[i] - lengths[j])) / beta

    def policy(rr: Sequence[Any], al: Any) -> sp.ImmutableMatrix:
        return _gibbs([m[i] * sp.exp(margin(i, 0, rr, al)) for i in range(3)])

    r_len = [q[i] + kappa * lengths[i] for i in range(3)]
    lhs = sp.ImmutableMatrix([*policy(r, alpha), *policy(r_len, kappa)])
    rhs = sp.ImmutableMatrix(
        [
            *_gibbs([m[i] * sp.exp((r[i] - alpha * lengths[i]) / beta) for i in range(3)]),
            *_gibbs([m[i] * sp.exp(q[i] / beta) for i in range(3)]),
        ]
    )
    x = sp.Symbol("x", real=True)
    steps = (
        (
            "R-DPO loss of one preference, $L$ the lengths",
            sp.Eq(
                sp.Symbol("ell"),
                -sp.log(
                    _sigma(
                        beta * sp.Symbol("h")
                        + alpha * (sp.Function("L")(_yw) - sp.Function("L")(_yl))
                    )
                ),
            ),
        ),
        (
            "A pair seen in both orders, the first action winning with probability $p$; "
            "$\\Delta L = L(y) - L(y')$",
            sp.Eq(sp.Function("R")(h), risk),
        ),
        ("Root of $dR/dh$ (sympy.solve)", sp.Eq(sp.Symbol("h^*"), h_star)),
        (
            "Bradley-Terry labels: $p = \\sigma(r(y) - r(y'))$ and logit undoes the sigmoid",
            sp.Eq(sp.log(_sigmoid(x) / (1 - _sigmoid(x))), logit_of_bt.subs(d, x)),
        ),
        (
            "The optimal margins are differences of $(r - \\alpha L)/\\beta$: one policy attains "
            "them all",
            sp.Eq(
                _pi(_y),
                _mu(_y) * sp.exp((_r(_y) - alpha * sp.Function("L")(_y)) / beta) / sp.Symbol("Z"),
            ),
        ),
        (
            "Spurious length preference $r = q + \\kappa L$, corrected by $\\alpha = \\kappa$",
            sp.Eq(_pi(_y), _mu(_y) * sp.exp(sp.Function("q")(_y) / beta) / sp.Symbol("Z")),
        ),
    )
    lemmas = (
        (
            "$dR/dh = \\beta(\\sigma(\\beta h + \\alpha\\Delta L) - p)$",
            slope,
            beta * (_sigmoid(beta * h + alpha * dL) - p),
        ),
        ("the root is $(\\mathrm{logit}\\,p - \\alpha\\Delta L)/\\beta$", h_star, closed),
        ("logit undoes the sigmoid", logit_of_bt, d),
        (
            "the optimal margins are consistent: $h^*_{32} = h^*_{31} - h^*_{21}$",
            margin(2, 1, r, alpha),
            margin(2, 0, r, alpha) - margin(1, 0, r, alpha),
        ),
    )
    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.solutions.optima import rlhf_optimum

    args = (*r, *lengths, alpha, *m, beta, *q, kappa)
    points = [
        ((0.3, -0.5, 1.2), (3.0, 7.0, 12.0), 0.1, (0.2, 0.3, 0.5), 0.5, (0.1, 0.4, -0.3), 0.05),
        ((1.0, 0.0, -2.0), (1.0, 2.0, 5.0), -0.4, (0.6, 0.3, 0.1), 0.1, (0.0, 0.2, 0.1), 0.02),
        (
            (0.0, 0.4, 0.4),
            (10.0, 4.0, 6.0),
            0.25,
            (1 / 3, 1 / 3, 1 / 3),
            2.0,
            (1.0, -1.0, 0.5),
            0.3,
        ),
    ]
    checks = []
    for rv, lv, av, mv, bv, qv, kv in points:
        shifted = [rv[i] - av * lv[i] for i in range(3)]
        expected = _vec(rlhf_optimum(bradley_terry(shifted), mv, bv)) + _vec(
            rlhf_optimum(bradley_terry(list(qv)), mv, bv)
        )
        checks.append(((*rv, *lv, av, *mv, bv, *qv, kv), expected))
    return Derivation(
        "rdpo",
        "R-DPO: the length term shifts the reward",
        "Park et al., arXiv:2403.19159 (length-regularised DPO)",
        steps,
        lhs,
        rhs,
        args,
        tuple(checks),
        lemmas,
        policy_size=3,
        statement=(
            r"\pi^* \propto \mu\, e^{(r - \alpha L)/\beta};\quad "
            r"r = q + \kappa L,\ \alpha = \kappa:\ \pi^* \propto \mu\, e^{q/\beta}"
        ),
    )


# ------------------------------------------------------------------------------------ 2. SimPO


@functools.cache
def simpo_uniform_reference() -> Derivation:
    r"""SimPO with equal lengths and :math:`\gamma = 0` is DPO with a uniform reference at :math:`\beta/L`.

    SimPO's loss is :math:`-\log\sigma(\frac{\beta}{|y_w|}\log\pi(y_w) - \frac{\beta}{|y_l|}
    \log\pi(y_l) - \gamma)`. With :math:`|y| = L` for every action and :math:`\gamma = 0` the
    argument is :math:`(\beta/L)\,h_u`, :math:`h_u` the DPO margin against the uniform reference
    :math:`u` (the :math:`\log u` cancel). Under Bradley-Terry labels the per-pair optimum is
    :math:`\log\pi(y) - \log\pi(y') = L(r_y - r_{y'})/\beta`, so
    :math:`\pi^* \propto e^{L r/\beta} = u\,e^{r/(\beta/L)}`: DPO's optimum with reference u at
    strength :math:`\beta/L`.

    With :math:`\gamma > 0` (lemmas) a pair with soft label p seen in both orders costs
    :math:`-p\log\sigma(x - \gamma) - (1-p)\log\sigma(-x - \gamma)`, x the length-normalised
    margin. Its stationarity condition is the quadratic
    :math:`(1-p)u^2 + e^\gamma(1-2p)u - p = 0` in :math:`u = e^x`, and it says
    :math:`\mathrm{logit}\,p = x^* - \log\frac{1 + e^{x^*+\gamma}}{e^\gamma + e^{x^*}}`: the fitted
    margin exceeds :math:`\mathrm{logit}\,p` (for :math:`p > 1/2`) by an amount in
    :math:`(0, \gamma)` that tends to :math:`\gamma` as :math:`p \to 1`; at :math:`p = 1/2` it is 0.
    The margin is *not* :math:`\mathrm{logit}\,p + \gamma` exactly: the offset favours whichever
    action is labelled the winner, in both orders. Three generic actions; checked against
    ``pt.rlhf_optimum(pt.bradley_terry(r), uniform, beta / L)``.

    Returns
    -------
    Derivation

    References
    ----------
    Meng et al., arXiv:2405.14734, Eq. (6) (the SimPO objective; version not re-checked);
    Rafailov et al., arXiv:2305.18290v3, Eq. (4) and (7).

    Examples
    --------
    >>> simpo_uniform_reference().verify()
    True
    """
    beta, length, gamma, p = sp.symbols("beta L gamma p", positive=True)
    r = sp.symbols("r1:4", real=True)
    x = sp.Symbol("x", real=True)
    pw, pl = sp.Symbol(r"\pi(y_{w})", positive=True), sp.Symbol(r"\pi(y_{l})", positive=True)
    u = sp.Symbol("u", positive=True)  # a uniform reference probability (1/K)
    u3 = sp.Rational(1, 3)
    # gamma = 0, equal lengths: risk of the pair in the log-probability difference x
    risk0 = _logistic_risk(beta / length * x, p)
    (x_star,) = sp.solve(sp.diff(risk0, x), x)
    d, logit_of_bt = _logit_of_sigmoid()
    lhs = _gibbs([sp.exp(length * logit_of_bt.subs(d, r[i] - r[0]) / beta) for i in range(3)])
    rhs = _gibbs([u3 * sp.exp(r[i] / (beta / length)) for i in range(3)])
    # gamma > 0: f(x) in the length-normalised margin x
    f = -p * sp.log(_sigmoid(x - gamma)) - (1 - p) * sp.log(_sigmoid(-x - gamma))
    fprime = sp.diff(f, x)
    g, ux = sp.exp(gamma), sp.exp(x)
    quadratic = (1 - p) * ux**2 + g * (1 - 2 * p) * ux - p
    disc = g**2 * (2 * p - 1) ** 2 + 4 * p * (1 - p)
    u_star = (g * (2 * p - 1) + sp.sqrt(disc)) / (2 * (1 - p))
    uu = sp.Symbol("u", positive=True)
    (p_of_x,) = sp.solve(fprime, p)
    simpo_arg = beta / length * sp.log(pw) - beta / length * sp.log(pl)
    dpo_arg = beta / length * (sp.log(pw / u) - sp.log(pl / u))
    steps = (
        (
            "SimPO loss of one preference ($|y|$ the length, $\\gamma$ the target margin)",
            sp.Eq(
                sp.Symbol("ell"),
                -sp.log(
                    _sigma(
                        beta / sp.Symbol(r"\lvert y_{w}\rvert") * sp.log(_pi(_yw))
                        - beta / sp.Symbol(r"\lvert y_{l}\rvert") * sp.log(_pi(_yl))
                        - gamma
                    )
                ),
            ),
        ),
        (
            "Equal lengths $L$, $\\gamma = 0$: the DPO argument with a uniform reference $u$",
            sp.Eq(
                simpo_arg,
                dpo_arg,
            ),
        ),
        (
            "Pair risk in $x = \\log\\pi(y) - \\log\\pi(y')$, label probability $p$; its root "
            "(sympy.solve)",
            sp.Eq(sp.Symbol("h^*"), x_star),
        ),
        (
            "Bradley-Terry labels: $\\log\\pi(y) = L r(y)/\\beta + c$, i.e. DPO's optimum "
            "with reference $u$ at $\\beta/L$",
            sp.Eq(_pi(_y), sp.exp(length * _r(_y) / beta) / sp.Symbol("Z")),
        ),
        (
            "$\\gamma > 0$, soft label $p$, both orders: pair risk in the normalised margin $x$",
            sp.Eq(sp.Function("f")(x), f),
        ),
        (
            "Its stationarity condition, as a quadratic in $u = e^x$",
            sp.Eq((1 - p) * uu**2 + sp.exp(gamma) * (1 - 2 * p) * uu - p, 0),
        ),
        (
            "Equivalently, the label that makes $x$ optimal: the margin exceeds $\\mathrm{logit}\\,p$",
            sp.Eq(
                sp.log(p / (1 - p)),
                x - sp.log((1 + sp.exp(x + gamma)) / (sp.exp(gamma) + sp.exp(x))),
            ),
        ),
    )
    lemmas = (
        (
            "equal lengths, $\\gamma = 0$: the uniform reference cancels from the margin",
            simpo_arg,
            dpo_arg,
        ),
        (
            "the pair optimum is $L\\,\\mathrm{logit}(p)/\\beta$",
            x_star,
            length * sp.log(p / (1 - p)) / beta,
        ),
        ("logit undoes the sigmoid", logit_of_bt, d),
        (
            "$f'(x)(e^\\gamma + e^x)(1 + e^{x+\\gamma})/e^\\gamma$ is the quadratic in $e^x$",
            fprime * (g + ux) * (1 + g * ux) / g,
            quadratic,
        ),
        ("its positive root solves it", quadratic.subs(x, sp.log(u_star)), sp.S.Zero),
        ("at $\\gamma = 0$ the root is the odds $p/(1-p)$", u_star.subs(gamma, 0), p / (1 - p)),
        ("at $p = 1/2$ the root is 1 (margin 0)", u_star.subs(p, sp.Rational(1, 2)), sp.S.One),
        (
            "the odds of the label that makes $x$ stationary",
            p_of_x / (1 - p_of_x),
            ux * (g + ux) / (1 + g * ux),
        ),
    )
    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.solutions.optima import rlhf_optimum

    args = (*r, beta, length)
    points = [
        ((0.3, -0.5, 1.2), 2.5, 3.0),
        ((1.0, 0.0, -2.0), 0.5, 1.0),
        ((0.0, 0.4, 0.4), 2.0, 7.0),
        ((-0.2, 0.1, 0.05), 0.1, 2.0),
    ]
    checks = tuple(
        ((*rv, bv, lv), _vec(rlhf_optimum(bradley_terry(list(rv)), [1 / 3] * 3, bv / lv)))
        for rv, bv, lv in points
    )
    return Derivation(
        "simpo_dpo",
        "SimPO with equal lengths: DPO with a uniform reference at beta / L",
        "Meng et al., arXiv:2405.14734, Eq. (6)",
        steps,
        lhs,
        rhs,
        args,
        checks,
        lemmas,
        policy_size=3,
        statement=(
            r"|y| = L,\ \gamma = 0:\ \pi^* \propto e^{L r/\beta} = u\, e^{r/(\beta/L)};\quad"
            r" \gamma > 0:\ h^* > \mathrm{logit}\,p"
        ),
    )


# ------------------------------------------------------------------------------------- 3. sDPO


@functools.cache
def sdpo_stages() -> Derivation:
    r"""Stages of sDPO compound: after T stages :math:`\pi_T \propto \mu\exp(T r/\beta)`, KL strength :math:`\beta/T`.

    Stage t runs DPO with the previous stage's policy as reference. If each stage reaches its DPO
    optimum for the same Bradley-Terry reward, :math:`\pi_t \propto \pi_{t-1}e^{r/\beta}`, and by
    induction (:math:`\pi_0 = \mu`) :math:`\pi_T \propto \mu\prod_{t=1}^T e^{r/\beta} =
    \mu e^{Tr/\beta}`: the RLHF optimum at :math:`\beta/T`. The claim iterates the map for
    T = 1, ..., 4 on three generic actions; the lemmas do the induction step and the product for a
    symbolic T. Checked against ``pt.rlhf_optimum(pt.bradley_terry(r), mu, beta / T)``.

    Returns
    -------
    Derivation

    References
    ----------
    Kim et al., arXiv:2403.19270 (stepwise DPO: the reference of stage t is the model aligned at
    stage t - 1; section not re-checked against the PDF); Rafailov et al., arXiv:2305.18290v3, Eq. (4).

    Examples
    --------
    >>> sdpo_stages().verify()
    True
    """
    beta = sp.Symbol("beta", positive=True)
    r = sp.symbols("r1:4", real=True)
    m = sp.symbols("mu1:4", positive=True)
    t, T = sp.symbols("t T", positive=True, integer=True)
    stages = 4
    iterates, pol = [], sp.ImmutableMatrix(list(m))
    for _ in range(stages):
        pol = _gibbs([pol[i] * sp.exp(r[i] / beta) for i in range(3)])
        iterates.extend(pol)
    lhs = sp.ImmutableMatrix(iterates)
    rhs = sp.ImmutableMatrix(
        [
            v
            for k in range(1, stages + 1)
            for v in _gibbs([m[i] * sp.exp(r[i] / (beta / k)) for i in range(3)])
        ]
    )
    ry = sp.Symbol("r_y", real=True)
    a_t = (
        sp.log(m[1] / m[0]) + t * (r[1] - r[0]) / beta
    )  # induction hypothesis, log(pi_t(2)/pi_t(1))
    product = sp.Product(sp.exp(ry / beta), (t, 1, T)).doit()
    steps = (
        (
            "Stage $t$: DPO with reference $\\pi_{t-1}$; its optimum for the BT reward $r$",
            sp.Eq(
                sp.Symbol(r"\pi_{t}(y)"),
                sp.Symbol(r"\pi_{t-1}(y)") * sp.exp(_r(_y) / beta) / sp.Symbol("Z"),
            ),
        ),
        (
            "Induction hypothesis, as a log-ratio against action 1",
            sp.Eq(sp.log(sp.Symbol(r"\pi_{t}(2)") / sp.Symbol(r"\pi_{t}(1)")), a_t),
        ),
        (
            "One more stage adds $(r_2 - r_1)/\\beta$",
            sp.Eq(
                sp.log(sp.Symbol(r"\pi_{t+1}(2)") / sp.Symbol(r"\pi_{t+1}(1)")),
                sp.expand(a_t + (r[1] - r[0]) / beta),
            ),
        ),
        (
            "After $T$ stages from $\\pi_0 = \\mu$ (sympy Product)",
            sp.Eq(
                _pi(_y),
                _mu(_y) * sp.Product(sp.exp(_r(_y) / beta), (t, 1, T)) / sp.Symbol("Z"),
            ),
        ),
        (
            "That is the RLHF optimum at KL strength $\\beta/T$",
            sp.Eq(_pi(_y), _mu(_y) * sp.exp(_r(_y) / (beta / T)) / sp.Symbol("Z")),
        ),
    )
    lemmas = (
        (
            "induction step: $t \\to t + 1$",
            a_t + (r[1] - r[0]) / beta,
            a_t.subs(t, t + 1),
        ),
        ("the product of $T$ stage factors", product, sp.exp(T * ry / beta)),
    )
    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.solutions.optima import rlhf_optimum

    args = (*r, *m, beta)
    points = [
        ((0.3, -0.5, 1.2), (0.2, 0.3, 0.5), 0.5),
        ((1.0, 0.0, -2.0), (0.6, 0.3, 0.1), 1.0),
        ((0.0, 0.4, 0.4), (1 / 3, 1 / 3, 1 / 3), 2.0),
    ]
    checks = tuple(
        (
            (*rv, *mv, bv),
            tuple(
                v
                for k in range(1, stages + 1)
                for v in _vec(rlhf_optimum(bradley_terry(list(rv)), mv, bv / k))
            ),
        )
        for rv, mv, bv in points
    )
    return Derivation(
        "sdpo",
        "sDPO: T stages act as one DPO at beta / T",
        "Kim et al., arXiv:2403.19270 (stepwise DPO)",
        steps,
        lhs,
        rhs,
        args,
        checks,
        lemmas,
        policy_size=3,
        statement=(
            r"\pi_t \propto \pi_{t-1}\, e^{r/\beta},\ \pi_0 = \mu"
            r"\;\Longrightarrow\; \pi_T \propto \mu\, e^{T r/\beta}"
        ),
    )


# -------------------------------------------------------------------------------------- 4. KTO


def _kto_stationary_policy(
    D: Sequence[float],
    d: Sequence[float],
    lam_d: float,
    lam_u: float,
    mu: Sequence[float],
    z0: float,
    beta: float,
) -> tuple[float, ...]:
    """Stationary point of the exact population KTO loss (z0 fixed), by fixed-point iteration.

    Minimising ``sum_y a_y (1 - s_y) + b_y s_y`` over the simplex, ``s_y = sigmoid(beta (log pi_y -
    log mu_y - z0))``, gives ``pi_y ∝ c_y sigmoid'(beta (log pi_y - log mu_y - z0))``,
    ``c = a - b`` (all positive here); for small ``beta`` the map is a contraction.
    """
    Dt, dt = torch.tensor(D, dtype=torch.float64), torch.tensor(d, dtype=torch.float64)
    c = Dt * (lam_d * dt - lam_u * (1.0 - dt))
    log_mu = torch.tensor(mu, dtype=torch.float64).log()
    pi = c / c.sum()
    for _ in range(200):
        s = torch.sigmoid(beta * (pi.log() - log_mu - z0))
        new = c * s * (1.0 - s)
        new = new / new.sum()
        if bool(torch.max(torch.abs(new - pi)) == 0.0):
            break
        pi = new
    return _vec(pi)


def kto_population_loss(
    theta: Any,
    D: Sequence[float],
    d: Sequence[float],
    lam_d: float,
    lam_u: float,
    mu: Sequence[float],
    z0: float,
    beta: float,
) -> torch.Tensor:
    r"""Exact population KTO loss on a bandit with the reference point z0 held fixed (torch).

    Action y is drawn from ``D`` and labelled desirable with probability ``d[y]``; the loss is
    :math:`\lambda_D(1 - \sigma(\beta(r_y - z_0)))` if desirable, :math:`\lambda_U(1 -
    \sigma(\beta(z_0 - r_y)))` if not, :math:`r_y = \log\pi(y) - \log\mu(y)`,
    :math:`\pi = \mathrm{softmax}(\theta)` (``pt.softmax``).

    Parameters
    ----------
    theta : Tensor, shape (K,)
        Logits (autograd is kept).
    D, d : sequence of float, length K
        Data distribution over actions and the probability each is labelled desirable.
    lam_d, lam_u : float
        Weights of the desirable and undesirable losses.
    mu : sequence of float, length K
        Reference policy.
    z0 : float
        Reference point (detached in KTO, so a constant here).
    beta : float
        KTO's beta.

    Returns
    -------
    Tensor, scalar, float64.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306, Eq. (7)-(8) (the KTO loss).
    """
    from prefopt_toy.policies import softmax

    pi = softmax(theta)
    ry = pi.log() - torch.tensor(mu, dtype=torch.float64).log()
    Dt, dt = torch.tensor(D, dtype=torch.float64), torch.tensor(d, dtype=torch.float64)
    desirable = lam_d * (1.0 - torch.sigmoid(beta * (ry - z0)))
    undesirable = lam_u * (1.0 - torch.sigmoid(beta * (z0 - ry)))
    return torch.sum(Dt * (dt * desirable + (1.0 - dt) * undesirable))


@functools.cache
def kto_small_beta_limit() -> Derivation:
    r"""KTO as :math:`\beta \to 0`: :math:`\pi^* \propto c_y = D(y)(\lambda_D d(y) - \lambda_U(1 - d(y)))`.

    Action y is drawn from the data distribution D and labelled desirable with probability d(y).
    With the reference point :math:`z_0` held fixed (KTO detaches it), the expected loss of y is
    :math:`a_y(1 - s_y) + b_y s_y`, :math:`s_y = \sigma(\beta(r_y - z_0))`,
    :math:`r_y = \log\pi(y) - \log\mu(y)`, :math:`a_y = D(y)\lambda_D d(y)`,
    :math:`b_y = D(y)\lambda_U(1 - d(y))`. Expanding in :math:`\beta` (the sigmoid has no
    quadratic term), the population loss is
    :math:`\mathrm{const} - \frac{\beta}{4}\sum_y c_y\log\pi(y) + O(\beta^3)`, :math:`c = a - b`
    (the :math:`\log\mu` and :math:`z_0` terms do not depend on :math:`\pi`). With every
    :math:`c_y > 0`, the Lagrange condition of :math:`\max\sum_y c_y\log\pi(y)` on the simplex gives
    :math:`\pi \propto c`, independent of :math:`\mu` and :math:`z_0` (an action with
    :math:`c_y \le 0` is sent to 0 instead). Checked against the stationary point of the exact
    KTO population loss at :math:`\beta = 10^{-6}`, computed numerically (the library has no KTO
    loss; :func:`kto_population_loss` is a torch evaluation with ``pt.softmax``).

    Returns
    -------
    Derivation

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306, Eq. (7)-(8) (the KTO loss and its reference point, detached
    in practice; equation numbers as TRL cites them, not re-checked against the PDF).

    Examples
    --------
    >>> kto_small_beta_limit().verify()
    True
    """
    beta = sp.Symbol("beta", positive=True)
    z0, ry = sp.symbols("z_0 r_y", real=True)
    a, b = sp.symbols("a_y b_y", positive=True)
    D = sp.symbols("D1:4", positive=True)
    d = sp.symbols("d1:4", positive=True)
    lam_d, lam_u = sp.symbols("lambda_D lambda_U", positive=True)
    lam = sp.Symbol("lambda", real=True)
    m = sp.symbols("mu1:4", positive=True)
    s = _sigmoid(beta * (ry - z0))
    per_action = a * (1 - s) + b * s
    series = sp.series(per_action, beta, 0, 3).removeO()
    c = [D[i] * (lam_d * d[i] - lam_u * (1 - d[i])) for i in range(3)]
    # first-order objective (divided by beta/4): sum_y c_y log pi(y) + lambda (sum_y pi(y) - 1)
    cs, xs = sp.Symbol("c", positive=True), sp.Symbol("x", positive=True)
    foc = sp.diff(cs * sp.log(xs) + lam * xs, xs)
    (x_star,) = sp.solve(sp.Eq(foc, 0), xs)
    lhs = _gibbs([x_star.subs(cs, c[i]) for i in range(3)])
    rhs = _gibbs(c)
    dd, lD, lU, Dy = sp.symbols("d(y) lambda_D lambda_U D(y)", positive=True)
    steps = (
        (
            "Expected KTO loss of action $y$ (drawn from $D$, desirable with probability $d(y)$)",
            sp.Eq(
                sp.Symbol("ell"),
                Dy * dd * lD * (1 - _sigma(beta * (ry - z0)))
                + Dy * (1 - dd) * lU * (1 - _sigma(beta * (z0 - ry))),
            ),
        ),
        (
            "With $1 - \\sigma(-z) = \\sigma(z)$: $a_y(1 - s_y) + b_y s_y$",
            sp.Eq(
                sp.Symbol("ell"), a * (1 - _sigma(beta * (ry - z0))) + b * _sigma(beta * (ry - z0))
            ),
        ),
        (
            "Expand in $\\beta$ to second order (sympy.series): no $\\beta^2$ term",
            sp.Eq(sp.Symbol("ell"), sp.collect(sp.expand(series), beta)),
        ),
        (
            "Sum over actions, $r_y = \\log\\pi(y) - \\log\\mu(y)$, drop what does not depend on $\\pi$",
            sp.Eq(
                sp.Symbol("L"),
                sp.Symbol("const")
                - beta / 4 * sp.Sum(sp.Function("c")(_y) * sp.log(_pi(_y)), (_y, 1, 3)),
            ),
        ),
        (
            "Lagrange condition of $\\max \\sum_y c_y \\log\\pi(y)$ on the simplex; solve (sympy.solve)",
            sp.Eq(xs, x_star),
        ),
        (
            "Normalise ($\\lambda$ cancels); needs every $c_y > 0$",
            sp.Eq(
                _pi(_y),
                sp.Function("D")(_y)
                * (lD * sp.Function("d")(_y) - lU * (1 - sp.Function("d")(_y)))
                / sp.Symbol("Z"),
            ),
        ),
    )
    lemmas = (
        (
            "undesirable loss: $\\lambda_U(1 - \\sigma(\\beta(z_0 - r)))= \\lambda_U\\,s$",
            lU * (1 - _sigmoid(beta * (z0 - ry))),
            lU * s,
        ),
        (
            "second-order expansion: $(a + b)/2 - \\beta(a - b)(r_y - z_0)/4$",
            series,
            (a + b) / 2 - beta * (a - b) * (ry - z0) / 4,
        ),
        (
            "slope in $r_y$: $-(a_y - b_y)\\,\\beta\\,\\sigma'$, which tends to $-\\beta c_y/4$",
            sp.diff(per_action, ry),
            -(a - b) * beta * s * (1 - s),
        ),
    )
    # mu and z0 are arguments that neither side uses: the checks vary them to show independence.
    args = (*D, *d, lam_d, lam_u, lam, *m, z0)
    points = [
        ((0.2, 0.3, 0.5), (0.9, 0.7, 0.6), 1.0, 1.0, -0.5, (0.2, 0.3, 0.5), 0.0),
        ((0.5, 0.25, 0.25), (0.8, 0.95, 0.5), 1.0, 0.6, 2.0, (0.6, 0.3, 0.1), 0.7),
        ((1 / 3, 1 / 3, 1 / 3), (0.6, 0.75, 0.99), 1.33, 1.0, -1.0, (0.05, 0.05, 0.9), -1.2),
    ]
    checks = tuple(
        (
            (*Dv, *dv, ld, lu, lv, *mv, zv),
            _kto_stationary_policy(Dv, dv, ld, lu, mv, zv, 1e-6),
        )
        for Dv, dv, ld, lu, lv, mv, zv in points
    )
    return Derivation(
        "kto_limit",
        "KTO as beta -> 0: the policy is proportional to the net desirability",
        "Ethayarajh et al., arXiv:2402.01306, Eq. (7)-(8)",
        steps,
        lhs,
        rhs,
        args,
        checks,
        lemmas,
        policy_size=3,
        statement=(
            r"\beta \to 0:\ \pi^*(y) \propto c_y = D(y)\big(\lambda_D d(y)"
            r" - \lambda_U (1 - d(y))\big) > 0"
        ),
    )


# -------------------------------------------------------------------------------------- 5. RSO


@functools.cache
def rso_pair_distribution() -> Derivation:
    r"""RSO: with Bradley-Terry labels the DPO optimum ignores the pair distribution; IPO's does not.

    With pairs from :math:`\nu\otimes\nu` and labels :math:`P_{yy'} = \sigma(r_y - r_{y'})`, the
    population DPO loss in :math:`a = \log(\pi/\mu)` has gradient

    .. math:: \partial L/\partial a_k = 2\beta\,\nu_k\sum_{y'}\nu_{y'}
              \big(\sigma(\beta(a_k - a_{y'})) - P_{ky'}\big),

    and every bracket vanishes at :math:`a = r/\beta + \kappa`, for every :math:`\nu`: each pair's
    term is zero on its own, so sampling pairs from the optimal policy
    :math:`\pi_r \propto \mu e^{r/\beta}` (statistical rejection sampling) leaves the population
    optimum unchanged. IPO's optimum :math:`\mu e^{P\nu/\tau}` does move: its log-ratios shift by
    :math:`((P(\pi_r - \mu))_y - (P(\pi_r - \mu))_1)/\tau`, nonzero in general (lemma with exact
    numbers). Three generic actions; checked against the autograd gradient of
    ``pt.population_loss`` with ``pt.dpo_loss`` (zero where ``a`` comes from
    ``pt.rlhf_optimum(P, mu, beta)`` and the pairs from :math:`\pi_r`), and against
    ``pt.ipo_optimum(P, mu, tau, nu=pi_r)`` vs ``nu=mu``.

    Returns
    -------
    Derivation

    References
    ----------
    Liu et al., arXiv:2309.06657 (statistical rejection sampling from the optimal policy, fitted
    with the sigmoid-norm (DPO) loss; section not re-checked against the PDF); Azar et al.,
    arXiv:2310.12036v2, Eq. (9) and App. B Prop. 4.

    Examples
    --------
    >>> rso_pair_distribution().verify()
    True
    """
    beta, tau = sp.symbols("beta tau", positive=True)
    kappa = sp.Symbol("kappa", real=True)
    a = sp.symbols("a1:4", real=True)
    r = sp.symbols("r1:4", real=True)
    n1, n2 = sp.symbols("nu1 nu2", positive=True)
    nu = (n1, n2, 1 - n1 - n2)
    m1, m2 = sp.symbols("mu1 mu2", positive=True)
    mu = (m1, m2, 1 - m1 - m2)
    P = sp.ImmutableMatrix(3, 3, lambda i, j: _sigmoid(r[i] - r[j]))

    def ell(z: Any) -> Any:
        return sp.log(1 + sp.exp(-z))  # -log sigmoid(z)

    L = _pair_sum(
        nu,
        lambda i, j: P[i, j] * ell(beta * (a[i] - a[j])) + P[j, i] * ell(beta * (a[j] - a[i])),
    )
    grad = [sp.diff(L, a[k]) for k in range(3)]
    closed = [
        2 * beta * nu[k] * sum(nu[j] * (_sigmoid(beta * (a[k] - a[j])) - P[k, j]) for j in range(3))
        for k in range(3)
    ]
    pi_r = _gibbs([mu[i] * sp.exp(r[i] / beta) for i in range(3)])
    p_r, p_mu = P * pi_r, P * sp.Matrix(mu)

    def ipo_log_ratio(p: Any, k: int) -> Any:
        return sp.log(mu[k] * sp.exp(p[k] / tau) / (mu[0] * sp.exp(p[0] / tau)))

    shift = [ipo_log_ratio(p_r, k) - ipo_log_ratio(p_mu, k) for k in (1, 2)]
    diff = P * (pi_r - sp.Matrix(mu))
    shift_closed = [(diff[k] - diff[0]) / tau for k in (1, 2)]
    lhs = sp.ImmutableMatrix([*grad, *shift])
    rhs = sp.ImmutableMatrix([*closed, *shift_closed])
    at_opt = {a[k]: r[k] / beta + kappa for k in range(3)}
    numbers = {r[0]: 0, r[1]: sp.log(2), r[2]: 2 * sp.log(2), beta: 1, m1: sp.Rational(1, 3)}
    numbers |= {m2: sp.Rational(1, 3), tau: sp.Rational(1, 10)}
    ak = sp.Symbol("a_k", real=True)
    steps = (
        (
            "Population DPO loss, pairs from $\\nu\\otimes\\nu$, BT labels $P_{yy'} = "
            "\\sigma(r_y - r_{y'})$, one ordered pair",
            sp.Eq(
                sp.Symbol("ell"),
                sp.Symbol("P_yy'") * -sp.log(_sigma(beta * sp.Symbol("h")))
                + sp.Symbol("P_y'y") * -sp.log(_sigma(-beta * sp.Symbol("h"))),
            ),
        ),
        (
            "Gradient in $a_k = \\log(\\pi/\\mu)(k)$ (sympy.diff of the 3-action sum), closed form",
            sp.Eq(
                sp.Symbol("dL/da_k"),
                2
                * beta
                * _nu(sp.Symbol("k"))
                * sp.Sum(
                    _nu(_yp) * (_sigma(beta * (ak - sp.Function("a")(_yp))) - sp.Symbol("P_yy'")),
                    (_yp, 1, 3),
                ),
            ),
        ),
        (
            "At $a = r/\\beta + \\kappa$ each bracket is $\\sigma(r_k - r_{y'}) - P_{ky'} = 0$, "
            "whatever $\\nu$",
            sp.Eq(_pi(_y), _mu(_y) * sp.exp(_r(_y) / beta) / sp.Symbol("Z")),
        ),
        (
            "RSO samples pairs from that policy, $\\nu = \\pi_r$: the optimum does not move",
            sp.Eq(_nu(_y), _mu(_y) * sp.exp(_r(_y) / beta) / sp.Symbol("Z")),
        ),
        (
            "IPO's optimum depends on $\\nu$; its log-ratios shift by",
            sp.Eq(
                sp.Symbol("Delta_y"),
                (sp.Symbol("(P q)_y") - sp.Symbol("(P q)_1")) / tau,
            ),
        ),
    )
    lemmas = (
        (
            "the DPO gradient vanishes at $a = r/\\beta + \\kappa$ for every $\\nu$",
            sp.ImmutableMatrix([cl.subs(at_opt) for cl in closed]),
            sp.zeros(3, 1),
        ),
        (
            "$r = (0, \\log 2, 2\\log 2)$, $\\beta = 1$, $\\mu$ uniform, $\\tau = 1/10$: "
            "IPO's shift is $(-5/63, -1/63) \\neq 0$",
            sp.ImmutableMatrix([sc.subs(numbers) for sc in shift_closed]),
            sp.ImmutableMatrix([sp.Rational(-5, 63), sp.Rational(-1, 63)]),
        ),
    )
    from functools import partial

    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.losses.pairwise import dpo_loss
    from prefopt_toy.losses.population import population_loss
    from prefopt_toy.solutions.optima import ipo_optimum, rlhf_optimum

    def library_values(
        av: Sequence[float],
        nv: Sequence[float],
        rv: Sequence[float],
        mv: Sequence[float],
        b: float,
        t: float,
    ) -> tuple[float, ...]:
        Pn = bradley_terry(list(rv))
        theta = torch.tensor(av, dtype=torch.float64, requires_grad=True)
        loss = population_loss(theta, Pn, [1 / 3] * 3, partial(dpo_loss, beta=b), nu=list(nv))
        (g,) = torch.autograd.grad(loss, theta)
        pr = rlhf_optimum(Pn, mv, b)
        lr = ipo_optimum(Pn, mv, t, nu=pr).log() - ipo_optimum(Pn, mv, t, nu=list(mv)).log()
        return _vec(g) + (float(lr[1] - lr[0]), float(lr[2] - lr[0]))

    args = (*a, n1, n2, *r, m1, m2, beta, tau)
    checks = []
    for av, (x1, x2), rv, (u1, u2), b, t in [
        ((0.3, -1.0, 0.5), (0.3, 0.5), (0.3, -0.5, 1.2), (0.2, 0.3), 0.5, 0.1),
        ((2.0, 0.0, -1.0), (0.1, 0.1), (1.0, 0.0, -2.0), (0.6, 0.3), 0.1, 1.0),
    ]:
        nv, mv = (x1, x2, 1.0 - x1 - x2), (u1, u2, 1.0 - u1 - u2)
        checks.append(((*av, x1, x2, *rv, u1, u2, b, t), library_values(av, nv, rv, mv, b, t)))
    for rv, (u1, u2), b, t in [
        ((0.3, -0.5, 1.2), (0.2, 0.3), 0.5, 0.1),
        ((1.0, 0.0, -2.0), (0.6, 0.3), 1.0, 0.05),
        ((0.0, math.log(2.0), 2 * math.log(2.0)), (1 / 3, 1 / 3), 1.0, 0.1),
    ]:
        mv = (u1, u2, 1.0 - u1 - u2)
        Pn = bradley_terry(list(rv))
        # a from the library's DPO optimum with pairs from mu; gradient with pairs from pi_r
        opt = rlhf_optimum(Pn, mv, b, nu=list(mv))
        av = _vec(opt.log() - torch.tensor(mv, dtype=torch.float64).log())
        nv = _vec(rlhf_optimum(Pn, mv, b))
        checks.append(
            ((*av, nv[0], nv[1], *rv, u1, u2, b, t), library_values(av, nv, rv, mv, b, t))
        )
    return Derivation(
        "rso",
        "RSO: under Bradley-Terry labels the pair distribution does not move the DPO optimum",
        "Liu et al., arXiv:2309.06657; Azar et al., arXiv:2310.12036v2, Eq. (9)",
        steps,
        lhs,
        rhs,
        args,
        tuple(checks),
        lemmas,
        statement=(
            r"\frac{\partial L_\nu}{\partial a_k} = 2\beta\nu_k \sum_{y'} \nu_{y'}"
            r"\big(\sigma(\beta(a_k - a_{y'})) - \sigma(r_k - r_{y'})\big) = 0"
            r" \text{ at } a = r/\beta,\ \forall \nu"
        ),
    )


# ------------------------------------------------------------------------------------- 6. ORPO


@functools.cache
def orpo_small_lambda_limit() -> Derivation:
    r"""ORPO as :math:`\lambda \to 0`: SFT on the chosen responses, :math:`\pi^*(y) \propto \nu(y)(P\nu)_y`.

    ORPO's loss is :math:`-\log\pi(y_w) + \lambda\,(-\log\sigma(\log\mathrm{odds}(y_w) -
    \log\mathrm{odds}(y_l)))`, :math:`\mathrm{odds}(y) = \pi(y)/(1-\pi(y))`. As
    :math:`\lambda \to 0` the population objective is the expected NLL of the chosen action. With
    pairs from :math:`\nu\otimes\nu` and labels P, action y is the chosen one with probability
    :math:`c_y = 2\nu(y)(P\nu)_y` (these sum to 1 because :math:`P + P^\top = 1`), so the objective
    is :math:`-\sum_y c_y\log\pi(y)`, minimised on the simplex (Lagrange) at :math:`\pi \propto c`.
    Three generic actions; checked against ``nu * pt.win_rates(P, nu)``, normalised.

    Returns
    -------
    Derivation

    References
    ----------
    Hong et al., arXiv:2403.07691, Eq. (6)-(7) (the ORPO objective and its odds-ratio term).

    Examples
    --------
    >>> orpo_small_lambda_limit().verify()
    True
    """
    lam = sp.Symbol("lambda", real=True)
    lp = sp.symbols("l1:4", real=True)  # log pi(y)
    n1, n2 = sp.symbols("nu1 nu2", positive=True)
    nu = (n1, n2, 1 - n1 - n2)
    game = _three_action_game()
    P = game["P"]
    Pnu = P * sp.Matrix(nu)
    c = [2 * nu[i] * Pnu[i] for i in range(3)]
    nll = _pair_sum(nu, lambda i, j: P[i, j] * (-lp[i]) + P[j, i] * (-lp[j]))
    cs, xs = sp.Symbol("c", positive=True), sp.Symbol("x", positive=True)
    foc = sp.diff(-cs * sp.log(xs) + lam * xs, xs)
    (x_star,) = sp.solve(sp.Eq(foc, 0), xs)
    lhs = _gibbs([x_star.subs(cs, c[i]) for i in range(3)])
    rhs = _gibbs([nu[i] * Pnu[i] for i in range(3)])
    odds = sp.Function("odds")
    steps = (
        (
            "ORPO loss of one preference",
            sp.Eq(
                sp.Symbol("ell"),
                -sp.log(_pi(_yw))
                - sp.Symbol("lambda") * sp.log(_sigma(sp.log(odds(_yw)) - sp.log(odds(_yl)))),
            ),
        ),
        (
            "with the odds of the policy",
            sp.Eq(odds(_y), _pi(_y) / (1 - _pi(_y))),
        ),
        (
            "As $\\lambda \\to 0$: expected NLL of the chosen action, pairs from $\\nu\\otimes\\nu$",
            sp.Eq(
                sp.Symbol("L"),
                -sp.Sum(2 * _nu(_y) * sp.Symbol("(P q)_y") * sp.log(_pi(_y)), (_y, 1, 3)),
            ),
        ),
        (
            "Lagrange condition of $\\min -\\sum_y c_y\\log\\pi(y)$ on the simplex; solve (sympy.solve)",
            sp.Eq(xs, x_star),
        ),
        (
            "Normalise: SFT on how often each action is chosen ($q = \\nu$)",
            sp.Eq(_pi(_y), _nu(_y) * sp.Symbol("(P q)_y") / sp.Symbol("Z")),
        ),
    )
    lemmas = (
        (
            "the expected NLL of the chosen action, summed over ordered pairs",
            nll,
            -sum(c[i] * lp[i] for i in range(3)),
        ),
        ("the chosen action's distribution sums to 1 ($P + P^\\top = 1$)", sum(c), sp.S.One),
    )
    from prefopt_toy.policies import win_rates

    args = (*game["p"], n1, n2, lam)
    checks = []
    for pv, (x1, x2), lv in [
        ((0.7, 0.4, 0.25), (0.3, 0.5), 0.5),
        ((0.9, 0.2, 0.6), (0.1, 0.1), -2.0),
        ((1.0, 0.5, 0.0), (0.5, 0.25), 1.0),
        ((0.2, 0.8, 0.3), (1 / 3, 1 / 3), 3.0),
    ]:
        nv = torch.tensor([x1, x2, 1.0 - x1 - x2], dtype=torch.float64)
        w = nv * win_rates(_P_numeric(*pv), nv)
        checks.append(((*pv, x1, x2, lv), _vec(w / w.sum())))
    return Derivation(
        "orpo_limit",
        "ORPO as lambda -> 0: SFT on how often each action is chosen",
        "Hong et al., arXiv:2403.07691, Eq. (6)-(7)",
        steps,
        lhs,
        rhs,
        args,
        tuple(checks),
        lemmas,
        policy_size=3,
        statement=r"\lambda \to 0:\ \pi^*(y) \propto \nu(y)\,(P\nu)_y",
    )


# -------------------------------------------------------------------------- 7. DPOP, outside form


def dpop_outside_population_loss(
    theta: Any, mu_w: float, p: float, beta: float, lam: float
) -> torch.Tensor:
    r"""Population DPOP loss (penalty outside the sigmoid) of one two-action pair, in torch.

    Action 1 wins with probability ``p``. The DPO part is the library's ``pt.population_loss``
    with ``pt.dpo_loss`` and pairs from the uniform distribution, rescaled to one comparison of the
    pair (it weighs the pair 1/2 and adds ``ell(0)/2`` for the two ties); the penalty
    :math:`\lambda\max(0, \log\mu(y_w) - \log\pi(y_w))` is paid by whichever action is chosen.

    Parameters
    ----------
    theta : Tensor, shape (2,)
        Logits (autograd is kept).
    mu_w : float
        Reference probability of action 1 (action 2 has ``1 - mu_w``).
    p, beta, lam : float
        Label probability of action 1, DPO's beta and DPOP's lambda.

    Returns
    -------
    Tensor, scalar, float64.

    References
    ----------
    Pal et al., arXiv:2402.13228v3 (DPOP; this is the form with the penalty outside the
    sigmoid that several ports use, not v3's corrected form).
    """
    from functools import partial

    from prefopt_toy.losses.pairwise import dpo_loss
    from prefopt_toy.losses.population import population_loss
    from prefopt_toy.policies import softmax

    mu = [mu_w, 1.0 - mu_w]
    P = [[0.5, p], [1.0 - p, 0.5]]
    dpo = 2.0 * population_loss(theta, P, mu, partial(dpo_loss, beta=beta), nu=[0.5, 0.5])
    dpo = dpo - math.log(2.0)  # the ties' ell(0) = log 2, times 2 * 1/2
    log_pi = softmax(theta).log()
    log_mu = torch.tensor(mu, dtype=torch.float64).log()
    penalty = torch.clamp(log_mu - log_pi, min=0.0)
    return dpo + lam * (p * penalty[0] + (1.0 - p) * penalty[1])


@functools.cache
def dpop_outside_kink() -> Derivation:
    r"""DPOP, penalty outside the sigmoid: on two actions :math:`\pi^* = \mu` iff :math:`\lambda(1-p)\mu_1 \ge \beta(p - 1/2)`.

    Loss of one preference: :math:`-\log\sigma(\beta h) + \lambda\max(0, \log\mu(y_w) -
    \log\pi(y_w))`. Its penalty has slope :math:`-\lambda` in :math:`\log\pi(y_w)` below the kink
    :math:`\pi(y_w) = \mu(y_w)` and 0 above. On two actions with logit gap :math:`\theta`
    (:math:`\pi_1 = \sigma(\theta)`), action 1 winning with probability :math:`p > 1/2`, the
    population loss is convex in :math:`\theta` with a kink at :math:`\theta_k = \log(\mu_1/\mu_2)`
    (:math:`\pi = \mu`, :math:`h = 0`). Above it the penalty of action 2 is active, below it that
    of action 1:

    .. math:: g'(\theta_k^+) = \beta(\tfrac12 - p) + \lambda(1-p)\mu_1, \qquad
              g'(\theta_k^-) = \beta(\tfrac12 - p) - \lambda p\,\mu_2 < 0.

    So :math:`\pi^* = \mu` exactly iff :math:`\lambda(1-p)\mu_1 \ge \beta(p - 1/2)`; otherwise the
    optimum lies above the kink, where :math:`\beta(\sigma(\beta h) - p) + \lambda(1-p)\pi_1 = 0`
    (no closed form), short of DPO's :math:`\sigma(\beta h) = p`. With a hard label (p = 1) the
    penalty never binds on two actions: the chosen action only gains, as in DPO. Checked against
    the autograd derivative of :func:`dpop_outside_population_loss` (the library's DPO population
    loss plus the penalty) on each side of the kink.

    Returns
    -------
    Derivation

    References
    ----------
    Pal et al., arXiv:2402.13228v3 (DPOP; v3 puts the penalty inside the sigmoid, this is
    the outside form several ports use); Rafailov et al., arXiv:2305.18290v3, Eq. (7).

    Examples
    --------
    >>> dpop_outside_kink().verify()
    True
    """
    theta = sp.Symbol("theta", real=True)
    mu1, p, beta, lam = sp.symbols("mu1 p beta lambda", positive=True)
    mu2 = 1 - mu1
    h = theta - sp.log(mu1 / mu2)
    pi1, pi2 = _sigmoid(theta), _sigmoid(-theta)
    dpo = _logistic_risk(beta * h, p)
    pen_1 = lam * p * (sp.log(mu1) - sp.log(pi1))  # action 1 chosen and below its reference
    pen_2 = lam * (1 - p) * (sp.log(mu2) - sp.log(pi2))
    kink = sp.log(mu1 / mu2)
    right = sp.diff(dpo + pen_2, theta).subs(theta, kink)
    left = sp.diff(dpo + pen_1, theta).subs(theta, kink)
    half = sp.Rational(1, 2)
    lhs = sp.ImmutableMatrix([right, left])
    rhs = sp.ImmutableMatrix(
        [beta * (half - p) + lam * (1 - p) * mu1, beta * (half - p) - lam * p * mu2]
    )
    lam_star = beta * (p - half) / ((1 - p) * mu1)
    lw = sp.Symbol(r"\log\pi(y_{w})", real=True)
    steps = (
        (
            "DPOP loss of one preference, penalty outside the sigmoid",
            sp.Eq(
                sp.Symbol("ell"),
                -sp.log(_sigma(beta * sp.Symbol("h")))
                + lam * sp.Max(0, sp.log(_mu(_yw)) - sp.log(_pi(_yw))),
            ),
        ),
        (
            "Slope of the penalty in $\\log\\pi(y_w)$: $-\\lambda$ below the kink, 0 above",
            sp.Piecewise((-lam, lw < sp.log(_mu(_yw))), (0, True)),
        ),
        (
            "Two actions, $\\pi_1 = \\sigma(\\theta)$, action 1 wins with probability $p$: DPO part",
            sp.Eq(sp.Function("g")(theta), dpo),
        ),
        (
            "Above the kink $\\theta_k = \\log(\\mu_1/\\mu_2)$ action 2 is below its reference; "
            "right derivative at $\\theta_k$",
            sp.Eq(
                sp.Symbol(r"g^{\prime}(\theta_{k}^{+})"), beta * (half - p) + lam * (1 - p) * mu1
            ),
        ),
        (
            "Below the kink action 1 is; left derivative (negative for $p > 1/2$)",
            sp.Eq(sp.Symbol(r"g^{\prime}(\theta_{k}^{-})"), beta * (half - p) - lam * p * mu2),
        ),
        (
            "Convex in $\\theta$: $\\pi^* = \\mu$ iff $g'(\\theta_k^+) \\geq 0$, i.e. "
            "$\\lambda \\geq \\lambda^*$",
            sp.Eq(sp.Symbol("lambda^*"), lam_star),
        ),
    )
    lemmas = (
        (
            "derivative of the DPO part: $\\beta(\\sigma(\\beta h) - p)$",
            sp.diff(dpo, theta),
            beta * (_sigmoid(beta * h) - p),
        ),
        (
            "derivative of action 2's penalty: $\\lambda(1-p)\\pi_1$",
            sp.diff(pen_2, theta),
            lam * (1 - p) * pi1,
        ),
        (
            "derivative of action 1's penalty: $-\\lambda p\\,\\pi_2$",
            sp.diff(pen_1, theta),
            -lam * p * pi2,
        ),
        (
            "at $\\lambda = \\lambda^*$ the right derivative is 0",
            right.subs(lam, lam_star),
            sp.S.Zero,
        ),
    )

    def library_slopes(mv: float, pv: float, bv: float, lv: float) -> tuple[float, float]:
        # One-sided derivatives at the kink: autograd of the library's DPO population loss plus
        # the penalty of the branch on that side (action 2's on the right, action 1's on the left).
        from functools import partial

        from prefopt_toy.losses.pairwise import dpo_loss
        from prefopt_toy.losses.population import population_loss
        from prefopt_toy.policies import softmax

        tk = math.log(mv / (1.0 - mv))
        out = []
        for side in (1, 0):  # penalty of action 2 (right of the kink), then of action 1 (left)
            theta_t = torch.tensor([tk, 0.0], dtype=torch.float64, requires_grad=True)
            dpo = 2.0 * population_loss(
                theta_t,
                [[0.5, pv], [1.0 - pv, 0.5]],
                [mv, 1.0 - mv],
                partial(dpo_loss, beta=bv),
                nu=[0.5, 0.5],
            )
            log_pi = softmax(theta_t).log()
            weight = (1.0 - pv) if side == 1 else pv
            mu_side = (1.0 - mv) if side == 1 else mv
            total = dpo + lv * weight * (math.log(mu_side) - log_pi[side])
            (g,) = torch.autograd.grad(total, theta_t)
            out.append(float(g[0]))
        return out[0], out[1]

    args = (mu1, p, beta, lam)
    points = [
        (0.3, 0.7, 0.5, 2.0),
        (0.6, 0.9, 0.1, 0.5),
        (0.5, 0.55, 1.0, 0.1),
        (0.2, 1.0, 0.5, 10.0),
    ]
    checks = tuple(((mv, pv, bv, lv), library_slopes(mv, pv, bv, lv)) for mv, pv, bv, lv in points)
    return Derivation(
        "dpop_kink",
        "DPOP outside the sigmoid: when the penalty pins the policy at the reference",
        "Pal et al., arXiv:2402.13228v3 (DPOP, outside form)",
        steps,
        lhs,
        rhs,
        args,
        checks,
        lemmas,
        statement=(
            r"g'(\theta_k^\pm) = \beta(\tfrac12 - p) + \{\lambda(1-p)\mu_1,\ -\lambda p\,\mu_2\}"
            r";\ \pi^* = \mu \iff \lambda(1-p)\mu_1 \geq \beta(p - \tfrac12)"
        ),
    )
