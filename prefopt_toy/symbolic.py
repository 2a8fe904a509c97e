r"""Symbolic derivations (sympy) of the closed forms the suite relies on, verified twice.

Each public function here builds one :class:`Derivation`: a chain of steps (an explanation and a
sympy expression each), a final identity ``lhs == rhs``, and a few intermediate identities
(``lemmas``). A derivation is checked in two independent ways:

- **symbolically**: :meth:`Derivation.residual` reduces ``lhs - rhs`` (and each lemma's difference)
  with targeted sympy rewrites (``expand``, ``expand_log(force=True)``, ``cancel``; ``simplify``
  only as a last resort, on small expressions); :meth:`Derivation.verify` is True only if every entry is
  exactly 0;
- **numerically, against the library**: :meth:`Derivation.numeric_check` lambdifies both sides of
  the identity and evaluates them at fixed points where the expected value was computed by
  ``prefopt_toy`` itself (``dpo_loss``, ``ipo_optimum``, ``regularized_nash``, ``nash_md``, ...);
  it returns the largest absolute difference.

Where a claim is about a K-action policy, the sympy version uses K = 3 generic actions (every
probability, preference and reward a symbol), so the identity is checked for all 3-action games
at once, not at a few numbers. Symbols are declared positive or real so that the rewrites are
exact. No function here parses text: every expression is built from sympy objects.

``DERIVATIONS`` maps a short name to each builder. Builders are cached; a derivation is frozen,
so a changed variant is made with :func:`dataclasses.replace` (the tests build deliberately wrong
variants that way and check that both checks reject them).

References
----------
Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO / PsiPO);
Munos et al., arXiv:2312.00886v4 (Nash-MD); Calandriello et al., arXiv:2403.08635v1 (online IPO,
IPO-MD); Tang et al., arXiv:2402.05749v2 (GPO); Mitchell (2023), https://ericmitchell.ai/cdpo.pdf
(cDPO).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp
import torch

__all__ = [
    "DERIVATIONS",
    "Derivation",
    "cdpo_optimal_margin",
    "dpo_from_rlhf",
    "gpo_optimal_margins",
    "ipo_bernoulli_labels",
    "ipo_md_mixture",
    "ipo_optimum_first_order",
    "nash_md_step",
    "online_ipo_fixed_point",
    "psipo_special_cases",
]

Step = tuple[str, Any]  # (explanation, sympy expression / Eq / Matrix)
Lemma = tuple[str, Any, Any]  # (statement, lhs, rhs)
Check = tuple[tuple[float, ...], tuple[float, ...]]  # (argument values, value from the library)


# ------------------------------------------------------------------------------ reduction to zero


_SIMPLIFY_MAX_OPS = 60


def _reduce(e: Any) -> Any:
    """Reduce a scalar expression that should be 0, trying cheap exact rewrites first.

    Each rewrite is exact under the symbols' assumptions (``force=True`` in ``expand_log`` is
    justified because every symbol under a log is declared positive).
    """
    strategies: tuple[Callable[[Any], Any], ...] = (
        sp.expand,
        lambda x: sp.expand(sp.expand_log(x, force=True)),
        lambda x: sp.cancel(sp.powsimp(sp.expand(x, power_exp=True, mul=False, multinomial=False, basic=False))),
        lambda x: sp.cancel(sp.expand_power_base(sp.powsimp(sp.expand(x, power_exp=True), force=True), force=True)),
    )
    out = e
    for rewrite in strategies:
        out = rewrite(e)
        if out == 0:
            return sp.S.Zero
    # Last resort, on small expressions only: a blind simplify of a large nonzero residual (a wrong
    # claim) can take minutes. A residual left unreduced counts as "not verified" (conservative).
    if sp.count_ops(out) <= _SIMPLIFY_MAX_OPS:
        out = sp.simplify(out)
    return sp.S.Zero if out == 0 else out


def _policy_differences(left: Sequence[Any], right: Sequence[Any]) -> list[Any]:
    """Log-ratio differences and the sum difference of two positive vectors (zero iff equal)."""
    out = [sp.log(left[i] / left[0]) - sp.log(right[i] / right[0]) for i in range(1, len(left))]
    return out + [sp.together(sum(left)) - sp.together(sum(right))]


def _entries(x: Any) -> list[Any]:
    return list(x) if isinstance(x, sp.MatrixBase) else [x]


def _gibbs(weights: Sequence[Any]) -> sp.ImmutableMatrix:
    """Normalised column vector ``w / sum(w)``."""
    total = sum(weights)
    return sp.ImmutableMatrix([w / total for w in weights])


def _preference_matrix(p12: Any, p13: Any, p23: Any) -> sp.ImmutableMatrix:
    """Generic 3 x 3 preference matrix with ``P + P.T = 1`` built in."""
    half = sp.Rational(1, 2)
    return sp.ImmutableMatrix([[half, p12, p13], [1 - p12, half, p23], [1 - p13, 1 - p23, half]])


def _P_numeric(p12: float, p13: float, p23: float) -> list[list[float]]:
    return [[0.5, p12, p13], [1.0 - p12, 0.5, p23], [1.0 - p13, 1.0 - p23, 0.5]]


def _vec(t: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in torch.as_tensor(t).reshape(-1))


# ------------------------------------------------------------------------------------ Derivation


@dataclass(frozen=True)
class Derivation:
    r"""One derivation: the steps, the final identity, and its symbolic and numeric checks.

    Attributes
    ----------
    name, title : str
        Registry key and a human-readable title.
    references : str
        Paper, arXiv version and equation/section the derivation follows.
    steps : tuple of (str, sympy object)
        The chain of reasoning: an explanation and the expression it produces. Display only; what
        is checked is ``lhs == rhs`` and the lemmas.
    lhs, rhs : sympy expression or column Matrix
        The final identity. ``lhs`` is what the steps derive; ``rhs`` the closed form claimed.
    arguments : tuple of sympy.Symbol
        The symbols both sides are lambdified in, in order.
    checks : tuple of (argument values, expected values)
        Fixed numeric points; the expected values were computed by the library (e.g.
        ``pt.ipo_optimum``) when the derivation was built.
    lemmas : tuple of (str, lhs, rhs)
        Intermediate identities, also reduced to 0 by :meth:`residual`.
    policy_size : int
        0: compare ``lhs`` and ``rhs`` entrywise. K > 0: both are stacks of probability vectors
        of length K (positive entries), compared by their log-ratios
        :math:`\log(x_i/x_1)` and their sums; two positive vectors agree iff both do. This keeps
        the reduction to zero fast (``expand_log``) where a direct difference of normalised
        exponentials would need a slow ``simplify``.

    References
    ----------
    See each builder (e.g. :func:`dpo_from_rlhf`); module docstring for the list of papers.
    """

    name: str
    title: str
    references: str
    steps: tuple[Step, ...]
    lhs: Any
    rhs: Any
    arguments: tuple[Any, ...]
    checks: tuple[Check, ...]
    lemmas: tuple[Lemma, ...] = field(default=())
    policy_size: int = 0

    @property
    def claim(self) -> Any:
        """The final identity as an unevaluated ``sympy.Eq``."""
        return sp.Eq(self.lhs, self.rhs, evaluate=False)

    def residual(self) -> sp.ImmutableMatrix:
        """Column of reduced differences: ``lhs - rhs`` entrywise, then each lemma's ``lhs - rhs``.

        Every entry is exactly ``0`` when the derivation is right.
        """
        return sp.ImmutableMatrix([_reduce(d) for d in self._differences()])

    def _differences(self) -> list[Any]:
        left, right = _entries(self.lhs), _entries(self.rhs)
        if len(left) != len(right):
            raise ValueError(f"derivation {self.name!r}: lhs has {len(left)} entries, rhs {len(right)}")
        if self.policy_size:
            diffs = []
            for k in range(0, len(left), self.policy_size):
                diffs += _policy_differences(left[k:k + self.policy_size], right[k:k + self.policy_size])
        else:
            diffs = [a - b for a, b in zip(left, right, strict=True)]
        for _, a, b in self.lemmas:
            diffs += [x - y for x, y in zip(_entries(a), _entries(b), strict=True)]
        return diffs

    def verify(self) -> bool:
        """True iff every entry of :meth:`residual` is exactly 0 (a structural sympy zero).

        Stops at the first entry that does not reduce to 0.
        """
        return all(_reduce(d) == 0 for d in self._differences())

    def numeric_check(self) -> float:
        """Max abs difference between both lambdified sides and the library's values at ``checks``."""
        if not self.checks:
            raise ValueError(f"derivation {self.name!r} has no numeric checks")
        f_lhs = sp.lambdify(self.arguments, self.lhs, modules="numpy")
        f_rhs = sp.lambdify(self.arguments, self.rhs, modules="numpy")
        worst = 0.0
        for args, expected in self.checks:
            want = np.asarray(expected, dtype=np.float64).reshape(-1)
            for f in (f_lhs, f_rhs):
                got = np.asarray(f(*args), dtype=np.float64).reshape(-1)
                if got.shape != want.shape:
                    raise ValueError(f"derivation {self.name!r}: shape {got.shape} vs library {want.shape}")
                worst = max(worst, float(np.max(np.abs(got - want))))
        return worst

    def report(self) -> str:
        """One line: the symbolic verdict and the numeric cross-check."""
        ok = self.verify()
        return (
            f"{self.name}: sympy residual {'== 0 (verified)' if ok else '!= 0 (NOT verified)'}; "
            f"max |sympy - library| = {self.numeric_check():.1e} at {len(self.checks)} points"
        )

    def to_latex(self) -> str:
        """The steps, lemmas and claim as one LaTeX ``array`` (explanations in ``\\text{}``)."""
        rows = []
        for i, (text, expr) in enumerate(self.steps, 1):
            rows.append(rf"\text{{({i}) {_tex_text(text)}}}")
            rows.append(r"\quad " + sp.latex(expr))
        for text, a, b in self.lemmas:
            rows.append(rf"\text{{Lemma: {_tex_text(text)}}}")
            rows.append(r"\quad " + sp.latex(sp.Eq(a, b, evaluate=False)))
        rows.append(r"\text{Claim:}")
        rows.append(r"\quad " + sp.latex(self.claim))
        return r"\begin{array}{l}" + r" \\ ".join(rows) + r"\end{array}"

    def _repr_markdown_(self) -> str:
        lines = [f"**{self.title}**", "", f"*{self.references}*", ""]
        for i, (text, expr) in enumerate(self.steps, 1):
            lines += [f"{i}. {text}", "", f"$$ {sp.latex(expr)} $$", ""]
        for text, a, b in self.lemmas:
            lines += [f"*Lemma.* {text}", "", f"$$ {sp.latex(sp.Eq(a, b, evaluate=False))} $$", ""]
        lines += ["**Claim.**", "", f"$$ {sp.latex(self.claim)} $$"]
        return "\n".join(lines)

    def show(self) -> None:
        """Display the derivation in a notebook (IPython imported lazily)."""
        from IPython.display import Markdown, display

        display(Markdown(self._repr_markdown_()))


def _tex_text(text: str) -> str:
    # Inside \text{...}: inline $...$ stays math; escape the characters LaTeX treats specially.
    return text.replace("%", r"\%").replace("&", r"\&").replace("#", r"\#").replace("_", r"\_")


# ---------------------------------------------------------------------------- display notation

_y, _yw, _yl, _yp = sp.symbols("y y_w y_l y'")
_pi, _mu, _r, _sigma, _nu = (sp.Function(n) for n in ("pi", "mu", "r", "sigma", "nu"))
_Psi, _p_win = sp.Function("Psi"), sp.Function("p")


def _sigmoid(x: Any) -> Any:
    return 1 / (1 + sp.exp(-x))


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
        ("RLHF maximises $E_\\pi[r] - \\beta\\,KL(\\pi\\|\\mu)$; its maximiser is a Gibbs policy",
         sp.Eq(_pi(_y), _mu(_y) * sp.exp(_r(_y) / beta) / Z)),
        ("Solve for the reward (sympy.solve)", sp.Eq(_r(_y), sp.expand(sp.expand_log(
            r_solved.subs({piy: _pi(_y), muy: _mu(_y)}), force=True)))),
        ("Bradley-Terry probability that $y_w$ beats $y_l$",
         sp.Eq(sp.Symbol("P(y_w > y_l)"), _sigma(_r(_yw) - _r(_yl)))),
        ("Reward difference in policy terms: $\\beta\\log Z$ cancels",
         sp.Eq(sp.Symbol("r_w - r_l"), sp.expand(sp.expand_log(diff_r, force=True)))),
        (("Negative log-likelihood of the observed preference, with $h = \\log\\frac{\\pi_w}{\\mu_w} - "
          "\\log\\frac{\\pi_l}{\\mu_l}$"), sp.Eq(sp.Symbol("ell"), -sp.log(_sigma(beta * sp.Symbol("h"))))),
    )
    lemmas = (
        ("the solved reward is $\\beta\\log(\\pi/\\mu) + \\beta\\log Z$",
         r_solved, beta * sp.log(piy / muy) + beta * sp.log(Z)),
        ("the reward difference does not depend on $Z$", sp.diff(diff_r, Z), sp.S.Zero),
    )
    from .losses import dpo_loss, margin

    args = (pi_w, pi_l, mu_w, mu_l, Z, beta)
    points = [(0.5, 0.2, 0.3, 0.4, 1.7, 0.1), (0.1, 0.6, 0.5, 0.2, 0.3, 1.0),
              (0.9, 0.05, 0.25, 0.25, 4.0, 2.5), (0.3, 0.3, 0.1, 0.6, 1.0, 0.5)]
    checks = tuple(
        (p, (float(dpo_loss(margin([math.log(p[0])], [math.log(p[1])], [math.log(p[2])], [math.log(p[3])]),
                            beta=p[5])[0]),))
        for p in points
    )
    return Derivation("dpo", "DPO from the RLHF closed form", "Rafailov et al., arXiv:2305.18290v3, "
                      "Sec. 4, Eq. (4)-(7); Azar et al., arXiv:2310.12036v2, Eq. (1)-(4)",
                      steps, lhs, rhs, args, checks, lemmas)


# -------------------------------------------------------------------------------- 2. PsiPO cases


def _three_action_game() -> dict[str, Any]:
    p12, p13, p23 = sp.symbols("P12 P13 P23", positive=True)
    return {"P": _preference_matrix(p12, p13, p23), "p": (p12, p13, p23)}


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
        (("PsiPO: maximise $E_{y\\sim\\pi, y'\\sim\\nu}[\\Psi(P(y \\succ y'))] - \\tau KL(\\pi\\|\\mu)$; "
          "optimum (Gibbs)"), sp.Eq(_pi(_y), _mu(_y) * sp.exp(sp.Function("g")(_y) / tau) / sp.Symbol("Z"))),
        ("with the payoff", sp.Eq(sp.Function("g")(_y), sp.Sum(_nu(_yp) * _Psi(sp.Function("P")(_y, _yp)), (_yp, 1, 3)))),
        ("Logit of a Bradley-Terry probability (sympy.simplify)", sp.Eq(logit(_sigmoid(d)), logit_of_bt)),
        ("Logit case, payoff of action 1 (a constant $E_\\nu r$ is subtracted from every action)",
         sp.Eq(sp.Symbol("g_1"), sp.expand(g_logit[0]))),
        ("Identity case: payoff = win rate against $\\nu$", sp.Eq(sp.Symbol("g_1"), sp.expand(g_id[0]))),
    )
    lemmas = (("logit undoes the sigmoid", logit_of_bt, d),)
    from .games import bradley_terry
    from .optima import ipo_optimum, rlhf_optimum

    args = (*r, *game["p"], n1, n2, *m, tau)
    points = [((0.3, -0.5, 1.2), (0.7, 0.4, 0.25), (0.3, 0.5), (0.2, 0.3, 0.5), 0.5),
              ((1.0, 0.0, -2.0), (0.9, 0.2, 0.6), (0.1, 0.1), (0.6, 0.3, 0.1), 0.1),
              ((0.0, 0.4, 0.4), (0.55, 0.35, 0.8), (0.45, 0.25), (1 / 3, 1 / 3, 1 / 3), 2.0)]
    checks = []
    for rv, pv, (a, b), mv, t in points:
        nuv = [a, b, 1.0 - a - b]
        exp = _vec(rlhf_optimum(bradley_terry(rv), mv, t, nu=nuv)) + _vec(ipo_optimum(_P_numeric(*pv), mv, t, nu=nuv))
        checks.append(((*rv, *pv, a, b, *mv, t), exp))
    return Derivation("psipo", "PsiPO: logit gives RLHF/DPO, identity gives IPO",
                      "Azar et al., arXiv:2310.12036v2, Eq. (6)-(9), Prop. 1", steps, lhs, rhs, args,
                      tuple(checks), lemmas, policy_size=3)


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
        ("Objective on the simplex, $p(y) = (P\\nu)_y$",
         sp.Eq(sp.Symbol("J"), sp.Sum(_pi(_y) * _p_win(_y) - sp.Symbol("tau") * _pi(_y) * sp.log(_pi(_y) / _mu(_y)),
                                      (_y, 1, 3)))),
        ("Lagrangian with multiplier $\\lambda$ for $\\sum_y \\pi(y) = 1$; stationarity in $\\pi_1$",
         sp.Eq(foc[0].subs(p[0], sp.Symbol("p_1")), 0)),
        ("Solve (sympy.solve) for $\\pi_1$", sp.Eq(x[0], sol[0].subs(p[0], sp.Symbol("p_1")))),
        ("Normalise: the factor $e^{(\\lambda - \\tau)/\\tau}$ is common to all actions and cancels",
         sp.Eq(x[0], sp.Symbol("mu1") * sp.exp(sp.Symbol("p_1") / tau) / sp.Symbol("Z"))),
        ("Hessian of $J$: negative definite, so the stationary point is the unique maximiser", hessian),
    )
    lemmas = ((("at the closed form, $\\partial J/\\partial\\pi_y$ is the same for every action "
                "(zero gradient along the simplex)"), sp.ImmutableMatrix([grad_at[1] - grad_at[0], grad_at[2] - grad_at[0]]),
               sp.zeros(2, 1)),)
    from .optima import ipo_optimum

    # lambda stays in the unsimplified lhs; any value must give the same policy (it cancels).
    args = (*game["p"], n1, n2, *m, tau, lam)
    points = [((0.7, 0.4, 0.25), (0.3, 0.5), (0.2, 0.3, 0.5), 0.5, 0.0),
              ((0.9, 0.2, 0.6), (0.1, 0.1), (0.6, 0.3, 0.1), 0.1, -0.3),
              ((1.0, 1.0, 0.5), (1 / 3, 1 / 3), (1 / 3, 1 / 3, 1 / 3), 0.05, 0.02)]
    checks = tuple(((*pv, a, b, *mv, t, lv), _vec(ipo_optimum(_P_numeric(*pv), mv, t, nu=[a, b, 1.0 - a - b])))
                   for pv, (a, b), mv, t, lv in points)
    return Derivation("ipo_optimum", "IPO's optimum from the first-order condition",
                      "Azar et al., arXiv:2310.12036v2, Eq. (8)-(9), App. A.1", steps, lhs, rhs, args, checks, lemmas,
                      policy_size=3)


# ------------------------------------------------------------- 4. IPO loss: Bernoulli label form


def _pair_sum(weights: Sequence[Any], term: Callable[[int, int], Any]) -> Any:
    return sum(weights[i] * weights[j] * term(i, j) for i in range(3) for j in range(3))


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
    L16 = _pair_sum(nu, lambda i, j: P[i, j] * (h(i, j) - 1 / tau) ** 2 + (1 - P[i, j]) * h(i, j) ** 2)
    C = _pair_sum(nu, lambda i, j: (P[i, j] - (p[i] - p[j]) ** 2) / tau**2)
    c = 1 / (2 * tau)
    L_lab = _pair_sum(nu, lambda i, j: P[i, j] * (h(i, j) - c) ** 2 + (1 - P[i, j]) * (-h(i, j) - c) ** 2)
    hs, Ps, ps, qs = sp.symbols("h P_yy' p_y p_y'", real=True)
    steps = (
        ("Eq. (13), one pair: target $(p(y) - p(y'))/\\tau$", sp.Eq(sp.Symbol("ell_13"), sp.expand((hs - (ps - qs) / tau) ** 2))),
        ("Eq. (16), one pair, averaged over $I \\sim$ Bernoulli$(P_{yy'})$ ($I^2 = I$)",
         sp.Eq(sp.Symbol("ell_16"), sp.expand(Ps * (hs - 1 / tau) ** 2 + (1 - Ps) * hs**2))),
        ("The quadratic terms agree; the linear terms agree after averaging over $\\nu\\otimes\\nu$ (lemma)",
         sp.Eq(sp.Symbol("ell_16 - ell_13"), sp.expand(Ps * (hs - 1 / tau) ** 2 + (1 - Ps) * hs**2 - (hs - (ps - qs) / tau) ** 2))),
        ("Library form (label sampler, both orders, target $1/(2\\tau)$), one pair",
         sp.Eq(sp.Symbol("ell_lab"), sp.expand(Ps * (hs - c) ** 2 + (1 - Ps) * (-hs - c) ** 2))),
        ("Average win rate of $\\nu$ against itself", sp.Eq(sp.Symbol("E_nu p"), sp.expand(sum(nu[i] * p[i] for i in range(3))))),
    )
    lemmas = (
        ("linear terms: $E[hP] = E[h\\,(p_y - p_{y'})]$", _pair_sum(nu, lambda i, j: h(i, j) * P[i, j]),
         _pair_sum(nu, lambda i, j: h(i, j) * (p[i] - p[j]))),
        ("Prop. 3: Eq. (16) = Eq. (13) + C, C free of the policy", L16, L13 + C),
    )
    from functools import partial

    from .losses import ipo_loss
    from .population import population_loss

    args = (*a, *game["p"], n1, n2, tau)
    points = [((0.3, -1.0, 0.5), (0.7, 0.4, 0.25), (0.3, 0.5), 0.5),
              ((2.0, 0.0, -1.0), (0.9, 0.2, 0.6), (0.1, 0.1), 0.1),
              ((0.0, 0.0, 0.0), (1.0, 0.5, 0.0), (0.5, 0.25), 1.0),
              ((-0.4, 1.3, 0.2), (0.55, 0.35, 0.8), (0.45, 0.25), 2.0)]
    checks = tuple(
        ((*av, *pv, x1, x2, t),
         (float(population_loss(list(av), _P_numeric(*pv), [1 / 3] * 3, partial(ipo_loss, tau=t),
                                nu=[x1, x2, 1.0 - x1 - x2])),))
        for av, pv, (x1, x2), t in points
    )
    return Derivation("ipo_labels", "IPO: the population loss and its label forms differ by a constant",
                      "Azar et al., arXiv:2310.12036v2, Eq. (13), (16), (17), Prop. 3",
                      steps, L_lab, L13 + C - 1 / (4 * tau**2), args, checks, lemmas)


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
    L = _pair_sum(s, lambda i, j: P[i, j] * (a[i] - a[j] - c) ** 2 + (1 - P[i, j]) * (a[j] - a[i] - c) ** 2)
    grad = sp.ImmutableMatrix([sp.diff(L, a[k]) for k in range(3)])
    Esa = sum(s[i] * a[i] for i in range(3))
    closed = sp.ImmutableMatrix([4 * s[k] * (a[k] - Esa - (Ps[k] - sp.Rational(1, 2)) / tau) for k in range(3)])
    at_nash = closed.subs({a[k]: Ps[k] / tau + kappa for k in range(3)})
    ak, Ea, pk = sp.symbols("a_k E_s[a] (Ps)_k", real=True)
    steps = (
        ("Online IPO objective (pairs and labels from $s = SG[\\pi]$), one ordered pair",
         sp.Eq(sp.Symbol("ell"), sp.Symbol("P_yy'") * (sp.Symbol("h") - c) ** 2
               + sp.Symbol("P_y'y") * (-sp.Symbol("h") - c) ** 2)),
        ("Differentiate the exact 3-action sum in $a_1$ (sympy.diff), collected", sp.Eq(sp.Symbol("dL/da_1"), sp.factor(grad[0]))),
        ("Closed form of the gradient", sp.Eq(sp.Symbol("dL/da_k"), 4 * sp.Symbol("s_k") * (ak - Ea - (pk - sp.Rational(1, 2)) / tau))),
        ("Zero on the support of $s$ iff (sympy.solve)",
         sp.Eq(ak, sp.solve(ak - Ea - (pk - sp.Rational(1, 2)) / tau, ak)[0])),
        ("With $s = \\pi$ and $a = \\log(\\pi/\\mu)$: the regularised Nash fixed point",
         sp.Eq(_pi(_y), _mu(_y) * sp.exp(sp.Symbol("(P pi)_y") / tau) / sp.Symbol("Z"))),
    )
    lemmas = (("the gradient vanishes at $a = Ps/\\tau + \\kappa$ (uses $s^\\top P s = 1/2$)", at_nash, sp.zeros(3, 1)),)
    from functools import partial

    from .losses import ipo_loss
    from .population import population_loss
    from .regularized import regularized_nash

    def library_gradient(av: Sequence[float], pv: Sequence[float], sv: Sequence[float], t: float) -> tuple[float, ...]:
        theta = torch.tensor(av, dtype=torch.float64, requires_grad=True)
        loss = population_loss(theta, _P_numeric(*pv), [1 / 3] * 3, partial(ipo_loss, tau=t), nu=list(sv))
        (g,) = torch.autograd.grad(loss, theta)
        return _vec(g)

    args = (*a, s1, s2, *game["p"], tau)
    checks = []
    for av, pv, (x1, x2), t in [((0.3, -1.0, 0.5), (0.7, 0.4, 0.25), (0.3, 0.5), 0.5),
                                ((2.0, 0.0, -1.0), (0.9, 0.2, 0.6), (0.1, 0.1), 0.1)]:
        sv = (x1, x2, 1.0 - x1 - x2)
        checks.append(((*av, x1, x2, *pv, t), library_gradient(av, pv, sv, t)))
    for pv, mv, t in [((0.7, 0.4, 0.25), (0.2, 0.3, 0.5), 0.5), ((0.9, 0.2, 0.6), (0.6, 0.3, 0.1), 0.1),
                      ((0.2, 0.8, 0.3), (1 / 3, 1 / 3, 1 / 3), 0.05)]:
        pi = regularized_nash(_P_numeric(*pv), mv, t)
        av = _vec(pi.log() - torch.tensor(mv, dtype=torch.float64).log())
        sv = _vec(pi)
        # At the regularised Nash the library's gradient is ~0; the sympy sides must be ~0 too.
        checks.append(((*av, sv[0], sv[1], *pv, t), library_gradient(av, pv, sv, t)))
    return Derivation("online_ipo", "Online IPO's stationary point is the regularised Nash equilibrium",
                      "Calandriello et al., arXiv:2403.08635v1, Sec. 4, Prop. 4.1",
                      steps, grad, closed, args, tuple(checks), lemmas)


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
    rhs = _gibbs([sp.exp((1 - w) * sp.log(t[i]) + w * sp.log(m[i]) + eta * payoff[i]) for i in range(3)])
    Pm = sp.Symbol("(P pi_mix)_y")
    steps = (
        ("Geometric mixture of the iterate and the reference",
         sp.Eq(sp.Function("pi_mix")(_y), _pi(_y) ** (1 - w) * _mu(_y) ** w / sp.Symbol("Z_mix"))),
        (("Mirror step: maximise $\\eta\\,\\pi^\\top P \\pi_{mix} - KL(\\pi\\|\\pi_{mix})$; stationarity in "
          "$\\pi_y$ ($x = \\pi_y$, $g = (P\\pi_{mix})_y$, $q = \\pi_{mix}(y)$)"), sp.Eq(foc, 0)),
        ("Solve (sympy.solve)", sp.Eq(xs, x_star)),
        ("Solve: $\\pi_{t+1}(y) \\propto \\pi_{mix}(y)\\,e^{\\eta (P\\pi_{mix})_y}$ ($\\lambda$ cancels on normalising)",
         sp.Eq(sp.Symbol("pi_{t+1}(y)"), sp.Symbol("pi_mix_y") * sp.exp(eta * Pm) / sp.Symbol("Z'"))),
        ("Take logs and expand the mixture",
         sp.Eq(sp.log(sp.Symbol("pi_{t+1}(y)")), (1 - w) * sp.log(_pi(_y)) + w * sp.log(_mu(_y)) + eta * Pm
               + sp.Symbol("const"))),
    )
    from .dynamics import nash_md

    args = (*t, *m, eta, tau, *game["p"], lam)  # lambda cancels; checked at a nonzero value
    checks = []
    for pv, mv, tv, ev in [((0.7, 0.4, 0.25), (0.2, 0.3, 0.5), 0.5, 1.0), ((0.9, 0.2, 0.6), (0.6, 0.3, 0.1), 0.1, 4.0),
                           ((0.2, 0.8, 0.3), (1 / 3, 1 / 3, 1 / 3), 0.2, None)]:
        traj = nash_md(_P_numeric(*pv), mv, tau=tv, steps=2, eta=ev)
        pols = traj.policies
        eta_1 = ev if ev is not None else 2.0 / (tv * 3)  # the schedule 2 / (tau (t + 2)) at t = 1
        checks.append(((*_vec(pols[1]), *mv, eta_1, tv, *pv, 0.7), _vec(pols[2])))
    return Derivation("nash_md", "Nash-MD: the closed-form mirror step",
                      "Munos et al., arXiv:2312.00886v4, Sec. 6", steps, lhs, rhs, args, tuple(checks),
                      policy_size=3)


# --------------------------------------------------------------------- 7. IPO-MD mixture = Nash


@functools.cache
def ipo_md_mixture() -> Derivation:
    r"""At IPO-MD's fixed point the mixture is the regularised Nash equilibrium at :math:`\tau/(1-\beta)`.

    IPO-MD's fixed point is :math:`\pi \propto \mu\exp(Pq/\tau)` with the sampling mixture
    :math:`q \propto \pi^{1-\beta}\mu^\beta`. Substituting,
    :math:`q \propto \mu^{1-\beta}e^{(1-\beta)Pq/\tau}\mu^\beta = \mu\exp(Pq/(\tau/(1-\beta)))`:
    as maps of q, "mixture of the IPO-MD update" equals "regularised-Nash update at
    :math:`\tau/(1-\beta)`", so their fixed points coincide. Three generic actions; checked at the
    mixture of ``pt.ipo_md_fixed_point`` against ``pt.regularized_nash(P, mu, tau / (1 - beta))``.

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
    tau, beta = sp.symbols("tau beta", positive=True)
    q = sp.symbols("q1:4", positive=True)
    m = sp.symbols("mu1:4", positive=True)
    game = _three_action_game()
    P = game["P"]
    Pq = P * sp.Matrix(q)
    pi = _gibbs([m[i] * sp.exp(Pq[i] / tau) for i in range(3)])  # IPO-MD update given the mixture q
    lhs = _gibbs([pi[i] ** (1 - beta) * m[i] ** beta for i in range(3)])
    rhs = _gibbs([m[i] * sp.exp(Pq[i] / (tau / (1 - beta))) for i in range(3)])
    lr = sp.expand(sp.expand_log(sp.log(lhs[1] / lhs[0]), force=True))
    steps = (
        ("IPO-MD fixed point, given its sampling mixture $q$",
         sp.Eq(_pi(_y), _mu(_y) * sp.exp(sp.Symbol("(P q)_y") / tau) / sp.Symbol("Z"))),
        ("The mixture", sp.Eq(sp.Function("q")(_y), _pi(_y) ** (1 - beta) * _mu(_y) ** beta / sp.Symbol("Z_q"))),
        ("Log-ratio of the mixture of the update, actions 2 vs 1 (expand_log)", sp.Eq(sp.Symbol("log(q_2/q_1)"), sp.collect(lr, tau))),
        ("That is the regularised-Nash map at temperature $\\tau/(1-\\beta)$",
         sp.Eq(sp.Function("q")(_y), _mu(_y) * sp.exp(sp.Symbol("(P q)_y") * (1 - beta) / tau) / sp.Symbol("Z'"))),
    )
    from .policies import geometric_mixture
    from .regularized import ipo_md_fixed_point, regularized_nash

    args = (*q, *m, tau, beta, *game["p"])
    checks = []
    for pv, mv, tv, bv in [((0.7, 0.4, 0.25), (0.2, 0.3, 0.5), 0.5, 0.3), ((0.9, 0.2, 0.6), (0.6, 0.3, 0.1), 0.1, 0.125),
                           ((0.2, 0.8, 0.3), (1 / 3, 1 / 3, 1 / 3), 0.05, 0.6)]:
        Pn = _P_numeric(*pv)
        qv = _vec(geometric_mixture(ipo_md_fixed_point(Pn, mv, tv, bv), mv, bv))
        checks.append(((*qv, *mv, tv, bv, *pv), _vec(regularized_nash(Pn, mv, tv / (1.0 - bv)))))
    return Derivation("ipo_md", "IPO-MD: the fixed-point mixture is the regularised Nash at tau / (1 - beta)",
                      "Calandriello et al., arXiv:2403.08635v1, Sec. 5, Prop. 5.2", steps, lhs, rhs, args, tuple(checks),
                      policy_size=3)


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

    from .losses import dpo_loss

    h = sp.Symbol("h", real=True)
    beta, eps = sp.symbols("beta epsilon", positive=True)
    loss = -(1 - eps) * sp.log(_sigmoid(beta * h)) - eps * sp.log(_sigmoid(-beta * h))
    d1 = sp.diff(loss, h)
    (h_star,) = sp.solve(d1, h)
    rhs = sp.log((1 - eps) / eps) / beta
    sig = _sigmoid(beta * h)
    steps = (
        ("cDPO loss: the label is flipped with probability $\\varepsilon$", sp.Eq(sp.Function("ell")(h), loss)),
        ("Derivative (sympy.diff), written with $\\sigma$", sp.Eq(sp.Function("ell'")(h), beta * (_sigma(beta * h) - (1 - eps)))),
        ("Second derivative $\\beta^2\\sigma(1-\\sigma) > 0$: strictly convex", sp.Eq(sp.Function("ell''")(h), beta**2 * _sigma(beta * h) * (1 - _sigma(beta * h)))),
        ("Solve $\\ell'(h) = 0$ (sympy.solve)", sp.Eq(sp.Symbol("h^*"), h_star)),
    )
    lemmas = (
        ("$\\ell'(h) = \\beta(\\sigma(\\beta h) - (1 - \\varepsilon))$", d1, beta * (sig - (1 - eps))),
        ("$\\ell''(h) = \\beta^2\\sigma(\\beta h)(1 - \\sigma(\\beta h))$", sp.diff(loss, h, 2), beta**2 * sig * (1 - sig)),
    )

    def library_minimiser(e: float, b: float) -> float:
        def slope(x: float) -> float:
            t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            (g,) = torch.autograd.grad(dpo_loss(t, b, label_smoothing=e), t)
            return float(g)

        return float(brentq(slope, -1e3, 1e3, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))

    args = (eps, beta)
    checks = tuple(((e, b), (library_minimiser(e, b),)) for e, b in [(0.1, 0.1), (0.1, 1.0), (0.25, 0.5), (0.01, 2.0), (0.4, 1.0)])
    return Derivation("cdpo", "Conservative DPO: the optimal margin", "Mitchell (2023), ericmitchell.ai/cdpo.pdf, Eq. (3)",
                      steps, h_star, rhs, args, checks, lemmas)


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
    from .gpo import gpo_optimal_margin

    h = sp.Symbol("h", real=True)
    p, beta = sp.symbols("p beta", positive=True)
    fs = {
        "logistic": lambda z: sp.log(1 + sp.exp(-z)),
        "squared": lambda z: (z - 1) ** 2,
        "exponential": lambda z: sp.exp(-z),
    }
    logit = sp.log(p / (1 - p))
    closed = {"logistic": logit / beta, "squared": (2 * p - 1) / beta, "exponential": logit / (2 * beta)}
    sols, steps = [], []
    for name, f in fs.items():
        risk = p * f(beta * h) + (1 - p) * f(-beta * h)
        roots = sp.solve(sp.diff(risk, h), h)
        # Keep the real root for p in (0, 1) (sympy cannot know p < 1; the other branch is complex).
        real = [s for s in roots if sp.im(sp.N(s.subs({p: sp.Rational(1, 3), beta: 1}))) == 0]
        sols.append(real[0])
        steps.append((f"{name}: expected loss of the pair", sp.Eq(sp.Function("R")(h), risk)))
        steps.append((f"{name}: root of $dR/dh$ (sympy.solve)", sp.Eq(sp.Symbol("h^*"), real[0])))
    steps.append(("IPO as GPO-squared with $\\beta = 2\\tau$: at $p = 1$ the target is $1/(2\\tau)$",
                  sp.Eq(sp.Symbol("h^*"), ((2 * p - 1) / beta).subs({p: 1, beta: 2 * sp.Symbol("tau", positive=True)}))))
    lhs = sp.ImmutableMatrix(sols)
    rhs = sp.ImmutableMatrix(list(closed.values()))
    args = (p, beta)
    checks = tuple(
        ((pv, bv), tuple(float(gpo_optimal_margin(pv, bv, name)) for name in fs))
        for pv, bv in [(0.75, 0.5), (0.2, 1.0), (0.5, 2.0), (0.9, 0.1), (0.999, 1.0)]
    )
    return Derivation("gpo", "GPO: per-pair optimal margins", "Tang et al., arXiv:2402.05749v2, Sec. 2",
                      tuple(steps), lhs, rhs, args, checks)


DERIVATIONS: dict[str, Callable[[], Derivation]] = {
    "dpo": dpo_from_rlhf,
    "psipo": psipo_special_cases,
    "ipo_optimum": ipo_optimum_first_order,
    "ipo_labels": ipo_bernoulli_labels,
    "online_ipo": online_ipo_fixed_point,
    "nash_md": nash_md_step,
    "ipo_md": ipo_md_mixture,
    "cdpo": cdpo_optimal_margin,
    "gpo": gpo_optimal_margins,
}
"""Registry: short name -> builder of the :class:`Derivation` (each builder is cached)."""
