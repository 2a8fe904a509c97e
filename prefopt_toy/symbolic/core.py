r"""The :class:`Derivation` record of :mod:`prefopt_toy.symbolic`: its two checks, its rendering, and the shared sympy vocabulary.

A derivation is a chain of steps, a final identity ``lhs == rhs`` and a few lemmas; it is verified
symbolically (:meth:`Derivation.residual` / :meth:`Derivation.verify` reduce every difference to an
exact 0 with targeted sympy rewrites) and numerically against the library
(:meth:`Derivation.numeric_check`), and rendered as LaTeX or Markdown for notebooks. This module also
holds the building blocks the derivation modules share (Gibbs normalisation, the generic 3-action
preference matrix, display symbols); the builders themselves live in
:mod:`prefopt_toy.symbolic.dpo_ipo`, :mod:`prefopt_toy.symbolic.online` and
:mod:`prefopt_toy.symbolic.margins`, and :mod:`prefopt_toy.symbolic` re-exports everything.

References: as :mod:`prefopt_toy.symbolic`, the module this one was split from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp
import torch

__all__ = ["Check", "Derivation", "Lemma", "Step"]

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
        lambda x: sp.cancel(
            sp.powsimp(sp.expand(x, power_exp=True, mul=False, multinomial=False, basic=False))
        ),
        lambda x: sp.cancel(
            sp.expand_power_base(sp.powsimp(sp.expand(x, power_exp=True), force=True), force=True)
        ),
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
            raise ValueError(
                f"derivation {self.name!r}: lhs has {len(left)} entries, rhs {len(right)}"
            )
        if self.policy_size:
            diffs = []
            for k in range(0, len(left), self.policy_size):
                diffs += _policy_differences(
                    left[k : k + self.policy_size], right[k : k + self.policy_size]
                )
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
                    raise ValueError(
                        f"derivation {self.name!r}: shape {got.shape} vs library {want.shape}"
                    )
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
        r"""The steps, lemmas and claim as one LaTeX ``array`` (explanations in ``\text{}``)."""
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


# -------------------------------------------------------------------------------- 2. PsiPO cases


def _three_action_game() -> dict[str, Any]:
    p12, p13, p23 = sp.symbols("P12 P13 P23", positive=True)
    return {"P": _preference_matrix(p12, p13, p23), "p": (p12, p13, p23)}


# ------------------------------------------------------------- 4. IPO loss: Bernoulli label form


def _pair_sum(weights: Sequence[Any], term: Callable[[int, int], Any]) -> Any:
    return sum(weights[i] * weights[j] * term(i, j) for i in range(3) for j in range(3))
