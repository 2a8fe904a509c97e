r"""Symbolic derivations of the online and game-theoretic fixed points: online IPO, Nash-MD, IPO-MD.

Three :class:`~prefopt_toy.symbolic.core.Derivation` builders on generic 3-action games: online
IPO's stationary points are the regularised Nash equilibrium, the Nash-MD mirror step in closed
form, and IPO-MD's fixed-point mixture as the regularised Nash equilibrium at tau / (1 - m), m the
mixture weight (``mixture`` in the library; the paper's beta).
Each is verified symbolically and checked numerically against the library; all are re-exported by
:mod:`prefopt_toy.symbolic`, which holds the registry.

References: as :mod:`prefopt_toy.symbolic`, the module this one was split from.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import sympy as sp
import torch

from .core import Derivation, _gibbs, _mu, _P_numeric, _pair_sum, _pi, _three_action_game, _vec, _y

__all__ = ["ipo_md_mixture", "nash_md_step", "online_ipo_fixed_point"]


# --------------------------------------------------------------- 5. online IPO -> regularised Nash


@functools.cache
def online_ipo_fixed_point() -> Derivation:
    r"""Online IPO's stationary points are the regularised Nash fixed point :math:`\pi \propto \mu e^{P\pi/\tau}`.

    The online IPO objective samples pairs from the current policy with stop-gradient, :math:`s =
    SG[\pi]`: :math:`L(a; s) = \sum_{y,y'} s_y s_{y'}[P_{yy'}(h - c)^2 + P_{y'y}(-h - c)^2]`,
    :math:`c = 1/(2\tau)`, :math:`h = a_y - a_{y'}`, :math:`a = \log(\pi/\mu)`. Its gradient is

    .. math:: \partial L/\partial a_k = 4 s_k\,[a_k - E_s a - ((Ps)_k - 1/2)/\tau],

    zero (on the support of s) iff :math:`a_k = (Ps)_k/\tau + \text{const}`. With :math:`s = \pi`
    this is :math:`\pi \propto \mu\exp(P\pi/\tau)`, the regularised Nash equilibrium. Checked against
    the autograd gradient of ``pt.population_loss`` (pairs from a fixed ``nu = s``, which is the
    stop-gradient) at generic points, and at ``pt.regularized_nash`` where both must vanish.

    Returns
    -------
    Derivation

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 4 (online IPO, Eq. (11)), Prop. 4.1 (fixed
    point); Munos et al., arXiv:2312.00886v4, Sec. 4 (regularised preference game).

    Examples
    --------
    >>> online_ipo_fixed_point().verify()
    True
    """
    tau = sp.Symbol("tau", positive=True)
    kappa = sp.Symbol("kappa", real=True)
    a = sp.symbols("a1:4", real=True)
    s1, s2 = sp.symbols("s1 s2", positive=True)
    s = (s1, s2, 1 - s1 - s2)
    game = _three_action_game()
    P = game["P"]
    Ps = P * sp.Matrix(s)
    c = 1 / (2 * tau)
    L = _pair_sum(
        s, lambda i, j: P[i, j] * (a[i] - a[j] - c) ** 2 + (1 - P[i, j]) * (a[j] - a[i] - c) ** 2
    )
    grad = sp.ImmutableMatrix([sp.diff(L, a[k]) for k in range(3)])
    Esa = sum(s[i] * a[i] for i in range(3))
    closed = sp.ImmutableMatrix(
        [4 * s[k] * (a[k] - Esa - (Ps[k] - sp.Rational(1, 2)) / tau) for k in range(3)]
    )
    at_nash = closed.subs({a[k]: Ps[k] / tau + kappa for k in range(3)})
    ak, Ea, pk = sp.symbols("a_k E_s[a] (Ps)_k", real=True)
    steps = (
        (
            "Online IPO objective (pairs and labels from $s = SG[\\pi]$), one ordered pair",
            sp.Eq(
                sp.Symbol("ell"),
                sp.Symbol("P_yy'") * (sp.Symbol("h") - c) ** 2
                + sp.Symbol("P_y'y") * (-sp.Symbol("h") - c) ** 2,
            ),
        ),
        (
            "Differentiate the exact 3-action sum in $a_1$ (sympy.diff), expanded",
            sp.Eq(sp.Symbol("dL/da_1"), sp.expand(grad[0])),
        ),
        (
            "Closed form of the gradient",
            sp.Eq(
                sp.Symbol("dL/da_k"),
                4 * sp.Symbol("s_k") * (ak - Ea - (pk - sp.Rational(1, 2)) / tau),
            ),
        ),
        (
            "Zero on the support of $s$ iff (sympy.solve)",
            sp.Eq(ak, sp.solve(ak - Ea - (pk - sp.Rational(1, 2)) / tau, ak)[0]),
        ),
        (
            "With $s = \\pi$ and $a = \\log(\\pi/\\mu)$: the regularised Nash fixed point",
            sp.Eq(_pi(_y), _mu(_y) * sp.exp(sp.Symbol("(P pi)_y") / tau) / sp.Symbol("Z")),
        ),
    )
    lemmas = (
        (
            "the gradient vanishes at $a = Ps/\\tau + \\kappa$ (uses $s^\\top P s = 1/2$)",
            at_nash,
            sp.zeros(3, 1),
        ),
    )
    from functools import partial

    from prefopt_toy.losses.pairwise import ipo_loss
    from prefopt_toy.losses.population import population_loss
    from prefopt_toy.solutions.regularized import regularized_nash

    def library_gradient(
        av: Sequence[float], pv: Sequence[float], sv: Sequence[float], t: float
    ) -> tuple[float, ...]:
        theta = torch.tensor(av, dtype=torch.float64, requires_grad=True)
        loss = population_loss(
            theta, _P_numeric(*pv), [1 / 3] * 3, partial(ipo_loss, tau=t), nu=list(sv)
        )
        (g,) = torch.autograd.grad(loss, theta)
        return _vec(g)

    args = (*a, s1, s2, *game["p"], tau)
    checks = []
    for av, pv, (x1, x2), t in [
        ((0.3, -1.0, 0.5), (0.7, 0.4, 0.25), (0.3, 0.5), 0.5),
        ((2.0, 0.0, -1.0), (0.9, 0.2, 0.6), (0.1, 0.1), 0.1),
    ]:
        sv = (x1, x2, 1.0 - x1 - x2)
        checks.append(((*av, x1, x2, *pv, t), library_gradient(av, pv, sv, t)))
    for pv, mv, t in [
        ((0.7, 0.4, 0.25), (0.2, 0.3, 0.5), 0.5),
        ((0.9, 0.2, 0.6), (0.6, 0.3, 0.1), 0.1),
        ((0.2, 0.8, 0.3), (1 / 3, 1 / 3, 1 / 3), 0.05),
    ]:
        pi = regularized_nash(_P_numeric(*pv), mv, t)
        av = _vec(pi.log() - torch.tensor(mv, dtype=torch.float64).log())
        sv = _vec(pi)
        # At the regularised Nash the library's gradient is ~0; the sympy sides must be ~0 too.
        checks.append(((*av, sv[0], sv[1], *pv, t), library_gradient(av, pv, sv, t)))
    return Derivation(
        "online_ipo",
        "Online IPO's stationary point is the regularised Nash equilibrium",
        "Calandriello et al., arXiv:2403.08635v1, Sec. 4, Prop. 4.1",
        steps,
        grad,
        closed,
        args,
        tuple(checks),
        lemmas,
        statement=(
            r"\begin{aligned}\frac{\partial L}{\partial a_k} &= 4 s_k\Big(a_k - \mathbb{E}_{y\sim s}\,a_y"
            r" - \frac{(Ps)_k - 1/2}{\tau}\Big) = 0 \\ &\iff \pi \propto \mu\, e^{P\pi/\tau}"
            r"\quad (s = \pi,\ a = \log\pi/\mu)\end{aligned}"
        ),
    )


# ------------------------------------------------------------------------------ 6. Nash-MD step


@functools.cache
def nash_md_step() -> Derivation:
    r"""The Nash-MD mirror step in closed form.

    :math:`\pi_{t+1} = \arg\max_\pi\,\eta\,\pi^\top P\pi_t^\mu - KL(\pi\|\pi_t^\mu)` with the
    geometric mixture :math:`\pi_t^\mu \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}`. The Lagrange
    condition gives :math:`\pi_{t+1} \propto \pi_t^\mu\exp(\eta P\pi_t^\mu)`, i.e.

    .. math:: \log\pi_{t+1} = (1-\eta\tau)\log\pi_t + \eta\tau\log\mu + \eta P\pi_t^\mu + c.

    Three generic actions; checked against two steps of ``pt.nash_md`` (the step from iterate 1 to
    iterate 2, constant and scheduled step sizes).

    Returns
    -------
    Derivation

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 6 (Nash-MD, Eq. (8)-(9); equation numbers as in the
    library's ``nash_md``, not re-checked against the PDF).

    Examples
    --------
    >>> nash_md_step().verify()
    True
    """
    tau, eta = sp.symbols("tau eta", positive=True)
    t = sp.symbols("pi_t1:4", positive=True)
    m = sp.symbols("mu1:4", positive=True)
    lam = sp.Symbol("lambda", real=True)
    game = _three_action_game()
    P = game["P"]
    w = eta * tau
    mix = _gibbs([t[i] ** (1 - w) * m[i] ** w for i in range(3)])
    payoff = P * mix
    # Lagrangian eta sum_y x_y g_y - sum_y x_y log(x_y / q_y) + lambda (sum_y x_y - 1), solved with
    # placeholders g_y = (P pi_mix)_y and q_y = pi_mix(y) (cheap for sympy), then substituted.
    g, qm = sp.symbols("g q", positive=True)
    xs = sp.Symbol("x", positive=True)
    lagrangian = eta * xs * g - xs * sp.log(xs / qm) + lam * xs
    foc = sp.diff(lagrangian, xs)
    (x_star,) = sp.solve(sp.Eq(foc, 0), xs)
    sol = [x_star.subs({g: payoff[i], qm: mix[i]}) for i in range(3)]
    lhs = _gibbs(sol)
    rhs = _gibbs(
        [sp.exp((1 - w) * sp.log(t[i]) + w * sp.log(m[i]) + eta * payoff[i]) for i in range(3)]
    )
    Pm = sp.Symbol("(P pi_mix)_y")
    pi_t, mix_y = sp.Symbol("pi_t(y)"), sp.Symbol("pi_mix(y)")
    steps = (
        (
            "Geometric mixture of the iterate and the reference",
            sp.Eq(mix_y, pi_t ** (1 - w) * _mu(_y) ** w / sp.Symbol("Z_mix")),
        ),
        (
            (
                "Mirror step: maximise $\\eta\\,\\pi^\\top P \\pi_t^{\\mu} - KL(\\pi\\|\\pi_t^{\\mu})$; "
                "stationarity in $\\pi_y$ ($x = \\pi_y$, $g = (P\\pi_t^{\\mu})_y$, $q = \\pi_t^{\\mu}(y)$)"
            ),
            sp.Eq(foc, 0),
        ),
        ("Solve (sympy.solve)", sp.Eq(xs, x_star)),
        (
            "Normalise: $\\lambda$ cancels",
            sp.Eq(sp.Symbol("pi_{t+1}(y)"), mix_y * sp.exp(eta * Pm) / sp.Symbol("Z'")),
        ),
        (
            "Take logs and expand the mixture",
            sp.Eq(
                sp.log(sp.Symbol("pi_{t+1}(y)")),
                (1 - w) * sp.log(pi_t) + w * sp.log(_mu(_y)) + eta * Pm + sp.Symbol("const"),
            ),
        ),
    )
    from prefopt_toy.dynamics import nash_md

    args = (*t, *m, eta, tau, *game["p"], lam)  # lambda cancels; checked at a nonzero value
    checks = []
    for pv, mv, tv, ev in [
        ((0.7, 0.4, 0.25), (0.2, 0.3, 0.5), 0.5, 1.0),
        ((0.9, 0.2, 0.6), (0.6, 0.3, 0.1), 0.1, 4.0),
        ((0.2, 0.8, 0.3), (1 / 3, 1 / 3, 1 / 3), 0.2, None),
    ]:
        traj = nash_md(_P_numeric(*pv), mv, tau=tv, steps=2, eta=ev)
        pols = traj.policies
        eta_1 = ev if ev is not None else 2.0 / (tv * 3)  # the schedule 2 / (tau (t + 2)) at t = 1
        checks.append(((*_vec(pols[1]), *mv, eta_1, tv, *pv, 0.7), _vec(pols[2])))
    return Derivation(
        "nash_md",
        "Nash-MD: the closed-form mirror step",
        "Munos et al., arXiv:2312.00886v4, Sec. 6",
        steps,
        lhs,
        rhs,
        args,
        tuple(checks),
        policy_size=3,
        statement=(
            r"\log\pi_{t+1}(y) = (1-\eta\tau)\log\pi_t(y) + \eta\tau\log\mu(y)"
            r" + \eta\,(P\pi_t^{\mu})_y + \mathrm{const}"
        ),
    )


# --------------------------------------------------------------------- 7. IPO-MD mixture = Nash


@functools.cache
def ipo_md_mixture() -> Derivation:
    r"""At IPO-MD's fixed point the mixture is the regularised Nash equilibrium at :math:`\tau/(1-m)`.

    ``m`` is the mixture weight of ``mu`` (the library's ``mixture``; Calandriello et al. and Munos
    et al. call it :math:`\mix`, which is DPO's KL strength everywhere else in this suite).
    IPO-MD's fixed point is :math:`\pi \propto \mu\exp(Pq/\tau)` with the sampling mixture
    :math:`q \propto \pi^{1-m}\mu^m`. Substituting,
    :math:`q \propto \mu^{1-m}e^{(1-m)Pq/\tau}\mu^m = \mu\exp(Pq/(\tau/(1-m)))`:
    as maps of q, "mixture of the IPO-MD update" equals "regularised-Nash update at
    :math:`\tau/(1-m)`", so their fixed points coincide. Three generic actions; checked at the
    mixture of ``pt.ipo_md_fixed_point(P, mu, tau, m)`` against
    ``pt.regularized_nash(P, mu, tau / (1 - m))``.

    Returns
    -------
    Derivation

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 5 (IPO-MD), Prop. 5.2.

    Examples
    --------
    >>> ipo_md_mixture().verify()
    True
    """
    tau, mix = sp.symbols("tau m", positive=True)  # mix: the mixture weight m
    q = sp.symbols("q1:4", positive=True)
    mus = sp.symbols("mu1:4", positive=True)
    game = _three_action_game()
    P = game["P"]
    Pq = P * sp.Matrix(q)
    pi = _gibbs(
        [mus[i] * sp.exp(Pq[i] / tau) for i in range(3)]
    )  # IPO-MD update given the mixture q
    lhs = _gibbs([pi[i] ** (1 - mix) * mus[i] ** mix for i in range(3)])
    rhs = _gibbs([mus[i] * sp.exp(Pq[i] / (tau / (1 - mix))) for i in range(3)])
    lr = sp.expand(sp.expand_log(sp.log(lhs[1] / lhs[0]), force=True))
    steps = (
        (
            "IPO-MD fixed point, given its sampling mixture $q$",
            sp.Eq(_pi(_y), _mu(_y) * sp.exp(sp.Symbol("(P q)_y") / tau) / sp.Symbol("Z")),
        ),
        (
            "The mixture, weight $m$ on $\\mu$",
            sp.Eq(sp.Function("q")(_y), _pi(_y) ** (1 - mix) * _mu(_y) ** mix / sp.Symbol("Z_q")),
        ),
        (
            "Log-ratio of the mixture of the update, actions 2 vs 1 (expand_log)",
            sp.Eq(sp.Symbol("log(q_2/q_1)"), lr),
        ),
        (
            "That is the regularised-Nash map at temperature $\\tau/(1-m)$",
            sp.Eq(
                sp.Function("q")(_y),
                _mu(_y) * sp.exp(sp.Symbol("(P q)_y") * (1 - mix) / tau) / sp.Symbol("Z'"),
            ),
        ),
    )
    from prefopt_toy.policies import geometric_mixture
    from prefopt_toy.solutions.regularized import ipo_md_fixed_point, regularized_nash

    args = (*q, *mus, tau, mix, *game["p"])
    checks = []
    for pv, mv, tv, bv in [
        ((0.7, 0.4, 0.25), (0.2, 0.3, 0.5), 0.5, 0.3),
        ((0.9, 0.2, 0.6), (0.6, 0.3, 0.1), 0.1, 0.125),
        ((0.2, 0.8, 0.3), (1 / 3, 1 / 3, 1 / 3), 0.05, 0.6),
    ]:
        Pn = _P_numeric(*pv)
        qv = _vec(geometric_mixture(ipo_md_fixed_point(Pn, mv, tv, bv), mv, bv))
        checks.append(((*qv, *mv, tv, bv, *pv), _vec(regularized_nash(Pn, mv, tv / (1.0 - bv)))))
    return Derivation(
        "ipo_md",
        "IPO-MD: the fixed-point mixture is the regularised Nash at tau / (1 - m)",
        "Calandriello et al., arXiv:2403.08635v1, Sec. 5, Prop. 5.2",
        steps,
        lhs,
        rhs,
        args,
        tuple(checks),
        policy_size=3,
        statement=(
            r"\pi \propto \mu\, e^{Pq/\tau},\ q \propto \pi^{1-m}\mu^{m}"
            r"\;\Longrightarrow\; q \propto \mu\, e^{Pq/(\tau/(1-m))}"
        ),
    )
