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

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp
import torch

__all__ = ["TEX_NAMES", "Check", "Derivation", "Lemma", "Step", "display_latex"]

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
    statement : str
        The claim in the paper's symbols, as LaTeX (e.g. ``\pi_{t+1}(y) \propto ...``): what the
        rendering shows when ``lhs == rhs`` on the generic 3-action symbols is too long to read.

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
    statement: str = ""

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
        r"""The steps, lemmas and claim as one LaTeX ``array`` (explanations in ``\text{}``).

        Expressions use the papers' symbols (``TEX_NAMES``), long sums are wrapped over several
        lines, and an identity too long to read (the generic 3-action claim of most derivations)
        is replaced by ``statement`` and a note that sympy reduced it to 0.
        """
        rows = []
        for i, (text, expr) in enumerate(self.steps, 1):
            rows.append(rf"\text{{({i}) {_tex_text(text)}}}")
            rows.append(r"\quad " + display_latex(expr))
        for text, a, b in self.lemmas:
            rows.append(rf"\text{{Lemma: {_tex_text(text)}}}")
            rows.append(r"\quad " + self._identity(a, b))
        rows.append(r"\text{Claim:}")
        rows.append(r"\quad " + self._claim_latex())
        short = self._sympy_claim()
        if short is not None:
            rows.append(r"\quad " + short)
        return r"\begin{array}{l}" + r" \\ ".join(rows) + r"\end{array}"

    def _identity(self, a: Any, b: Any) -> str:
        """A checked identity ``a == b`` as LaTeX, or a compact note when it is too long to read."""
        tex = display_latex(sp.Eq(a, b, evaluate=False))
        if _widest_line(tex) <= _MAX_LINE_WIDTH:
            return tex
        n = len(_entries(a))
        what = f"a {n}-entry identity" if n > 1 else "an identity"
        ops = sp.count_ops(a) + sp.count_ops(b)
        return rf"\text{{{what} of {ops} operations, reduced to 0 by sympy}}"

    def _claim_latex(self) -> str:
        """The claim: ``statement`` when given, else the sympy identity (compact when long)."""
        return self.statement or self._identity(self.lhs, self.rhs)

    def _sympy_claim(self) -> str | None:
        """The sympy form of the claim beside a ``statement``, when it is short enough to read."""
        if not self.statement:
            return None
        tex = display_latex(self.claim)
        return tex if _widest_line(tex) <= _MAX_LINE_WIDTH else None

    def _repr_markdown_(self) -> str:
        lines = [f"**{self.title}**", "", f"*{self.references}*", ""]
        for i, (text, expr) in enumerate(self.steps, 1):
            lines += [f"{i}. {text}", "", f"$$ {display_latex(expr)} $$", ""]
        for text, a, b in self.lemmas:
            lines += [f"*Lemma.* {text}", "", f"$$ {self._identity(a, b)} $$", ""]
        lines += ["**Claim.**", "", f"$$ {self._claim_latex()} $$"]
        short = self._sympy_claim()
        if short is not None:
            lines += ["", "as sympy writes it:", "", f"$$ {short} $$"]
        if self.statement:
            lines += [
                "",
                "*Checked exactly:* sympy reduces `lhs - rhs` to 0 (the full expressions are "
                "`d.lhs` and `d.rhs`).",
            ]
        return "\n".join(lines)

    def show(self) -> None:
        """Display the derivation in a notebook (IPython imported lazily)."""
        from IPython.display import Markdown, display

        display(Markdown(self._repr_markdown_()))


def _tex_text(text: str) -> str:
    # Inside \text{...}: inline $...$ stays math (odd pieces, untouched); escape the characters LaTeX
    # treats specially in the text between.
    pieces = text.split("$")
    for k in range(0, len(pieces), 2):
        for char in "%&#_":
            pieces[k] = pieces[k].replace(char, "\\" + char)
    return "$".join(pieces)


# ------------------------------------------------------------------------- LaTeX in the papers' symbols

TEX_NAMES: dict[str, str] = {
    "epsilon": r"\varepsilon",
    "ell": r"\ell",
    "ell(h)": r"\ell(h)",
    "ell'(h)": r"\ell'(h)",
    "ell''(h)": r"\ell''(h)",
    "ell_13": r"\ell_{13}",
    "ell_16": r"\ell_{16}",
    "ell_16 - ell_13": r"\ell_{16} - \ell_{13}",
    "ell_lab": r"\ell_{\mathrm{lab}}",
    "E_nu p": r"\mathbb{E}_{y\sim\nu}\,p(y)",
    "E_s[a]": r"\mathbb{E}_{y\sim s}\,a_y",
    "P(y_w > y_l)": r"P(y_w \succ y_l)",
    "r_w - r_l": r"r(y_w) - r(y_l)",
    "dL/da_1": r"\partial L/\partial a_1",
    "dL/da_k": r"\partial L/\partial a_k",
    "(Ps)_k": r"(Ps)_k",
    "(P pi)_y": r"(P\pi)_y",
    "(P q)_y": r"(Pq)_y",
    "(P pi_mix)_y": r"(P\pi_t^{\mu})_y",
    "P_yy'": r"P_{yy'}",
    "P_y'y": r"P_{y'y}",
    "p_y'": r"p_{y'}",
    "pi_{t+1}(y)": r"\pi_{t+1}(y)",
    "pi_t(y)": r"\pi_t(y)",
    "pi_mix(y)": r"\pi_t^{\mu}(y)",
    "Z_mix": r"Z_{\mathrm{mix}}",
    "Z_q": r"Z_q",
    "const": r"\mathrm{const}",
    "log(q_2/q_1)": r"\log(q_2/q_1)",
    "h^*": r"h^*",
    "a_k": r"a_k",
}
"""Display name (a sympy Symbol's ``name``) -> LaTeX in the papers' notation, for ``display_latex``."""

_MAX_LINE_WIDTH = 64  # rendered characters per displayed line (a notebook column at ~100 dpi)


def _display_width(tex: str) -> int:
    """Rough rendered width of LaTeX: characters left once commands and braces are dropped."""
    bare = re.sub(r"\\(left|right|begin\{[a-z]*\}|end\{[a-z]*\}|quad|,)", "", tex)
    bare = re.sub(r"\\(frac|mathrm|mathbb|operatorname)", "", bare)
    bare = re.sub(r"\\[a-zA-Z]+", "x", bare)
    return len(re.sub(r"[{}\s^_]", "", bare))


def _widest_line(tex: str) -> int:
    """The widest line of a (possibly ``aligned``) LaTeX block, by ``_display_width``."""
    return max(_display_width(line) for line in tex.split(r"\\"))


def display_latex(expr: Any) -> str:
    r"""LaTeX of a step's expression in the papers' symbols, long sums wrapped over lines.

    Symbols named in ``TEX_NAMES`` print as the papers write them (``\ell'(h)``,
    ``\pi_{t+1}(y)``, ``\mathbb{E}_{y\sim\nu}``); an equation whose right-hand side is a sum too
    wide for a notebook column becomes an ``aligned`` block, a few terms per line.
    """
    free = getattr(expr, "free_symbols", set())
    names = {x: TEX_NAMES[x.name] for x in free if getattr(x, "name", None) in TEX_NAMES}
    tex = sp.latex(expr, symbol_names=names)
    if _display_width(tex) <= _MAX_LINE_WIDTH or not isinstance(expr, sp.Equality):
        return tex
    if not isinstance(expr.rhs, sp.Add):
        return tex
    lhs = sp.latex(expr.lhs, symbol_names=names)
    lines, line = [], ""
    for k, term in enumerate(expr.rhs.as_ordered_terms()):
        t = sp.latex(term, symbol_names=names)
        piece = t if k == 0 else (f" - {t[1:].lstrip()}" if t.startswith("-") else f" + {t}")
        shown = (lhs + "=" if not lines else "") + line + piece  # the first line carries the lhs
        if line and _display_width(shown) > _MAX_LINE_WIDTH:
            lines.append(line)
            line = piece
        else:
            line += piece
    lines.append(line)
    body = r" \\ &\quad ".join(lines)
    return rf"\begin{{aligned}} {lhs} &= {body} \end{{aligned}}"


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
