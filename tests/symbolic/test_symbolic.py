"""Tests for prefopt_toy.symbolic: every derivation reduces to an exact sympy 0 and matches the library.

Oracles. The symbolic check is sympy's exact algebra on generic 3-action symbols, independent of
the torch code. The numeric check compares the lambdified sympy expressions with values the
library computed (``dpo_loss``, ``ipo_optimum``, ``rlhf_optimum``, ``population_loss``,
``regularized_nash``, ``ipo_md_fixed_point``, ``nash_md``, ``gpo_optimal_margin``, and a scipy
minimisation of ``dpo_loss``). Deliberately wrong variants (built here) must fail both checks, so
neither check is vacuous.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import sympy as sp

from prefopt_toy import symbolic

NAMES = sorted(symbolic.DERIVATIONS)
NUMERIC_TOL = 1e-10


def _symbol(d: symbolic.Derivation, name: str) -> sp.Symbol:
    (s,) = [a for a in d.arguments if a.name == name]
    return s


def _wrong_variants() -> dict[str, symbolic.Derivation]:
    """One plausible mistake per derivation (a flipped sign, a missing factor, a wrong temperature)."""
    D = {name: f() for name, f in symbolic.DERIVATIONS.items()}
    out = {}
    d = D["dpo"]  # sign flip inside the sigmoid: -log sigma(-beta h)
    out["dpo"] = dataclasses.replace(d, rhs=d.rhs.subs(_symbol(d, "beta"), -_symbol(d, "beta")))
    d = D["psipo"]  # RLHF optimum at temperature 2 tau instead of tau
    out["psipo"] = dataclasses.replace(d, rhs=d.rhs.subs(_symbol(d, "tau"), 2 * _symbol(d, "tau")))
    d = D["ipo_optimum"]  # mu exp(p / tau) without mu
    mus = [_symbol(d, f"mu{i}") for i in (1, 2, 3)]
    out["ipo_optimum"] = dataclasses.replace(d, rhs=d.rhs.subs({m: 1 for m in mus}))
    d = D[
        "ipo_labels"
    ]  # constant forgotten: the label form is NOT Eq. (13) + C - 1/(4 tau^2) without C
    tau = _symbol(d, "tau")
    out["ipo_labels"] = dataclasses.replace(d, rhs=d.rhs + 1 / (4 * tau**2))
    d = D["online_ipo"]  # a missing factor 2 on the label term of the gradient
    out["online_ipo"] = dataclasses.replace(
        d, rhs=d.rhs.subs(_symbol(d, "tau"), 2 * _symbol(d, "tau"))
    )
    d = D["nash_md"]  # forgets the reference: (1 - eta tau) log pi_t + eta P pi_mix
    out["nash_md"] = dataclasses.replace(
        d, rhs=d.rhs.subs({_symbol(d, f"mu{i}"): 1 for i in (1, 2, 3)})
    )
    d = D["ipo_md"]  # claims temperature tau (1 - m) instead of tau / (1 - m)
    tau, m = _symbol(d, "tau"), _symbol(d, "m")
    out["ipo_md"] = dataclasses.replace(d, rhs=d.rhs.subs(tau, tau * (1 - m) ** 2))
    d = D["cdpo"]  # the target without 1/beta
    out["cdpo"] = dataclasses.replace(d, rhs=d.rhs * _symbol(d, "beta"))
    d = D["gpo"]  # exponential margin without the factor 1/2
    out["gpo"] = dataclasses.replace(d, rhs=sp.ImmutableMatrix([d.rhs[0], d.rhs[1], 2 * d.rhs[2]]))
    return out


WRONG = _wrong_variants()


@pytest.mark.parametrize("name", NAMES)
def test_derivation_verifies_exactly(name):
    d = symbolic.DERIVATIONS[name]()
    residual = d.residual()
    assert all(r == 0 for r in residual), f"{name}: residual {residual}"
    assert d.verify()


@pytest.mark.parametrize("name", NAMES)
def test_numeric_check_against_library(name):
    d = symbolic.DERIVATIONS[name]()
    assert len(d.checks) >= 3
    assert d.numeric_check() < NUMERIC_TOL


@pytest.mark.parametrize("name", sorted(WRONG))  # the family's are in test_family.py
def test_wrong_variant_fails_both_checks(name):
    wrong = WRONG[name]
    assert not wrong.verify(), f"{name}: a wrong variant verified"
    assert wrong.numeric_check() > 1e-3, f"{name}: a wrong variant matched the library"


def test_registry_has_the_sixteen_derivations_and_builders_are_cached():
    assert set(NAMES) == {
        "rdpo",
        "simpo_dpo",
        "sdpo",
        "kto_limit",
        "rso",
        "orpo_limit",
        "dpop_kink",
        "dpo",
        "psipo",
        "ipo_optimum",
        "ipo_labels",
        "online_ipo",
        "nash_md",
        "ipo_md",
        "cdpo",
        "gpo",
    }
    for name, builder in symbolic.DERIVATIONS.items():
        d = builder()
        assert d.name == name
        assert builder() is d
        assert getattr(symbolic, builder.__name__) is builder


@pytest.mark.parametrize("name", NAMES)
def test_steps_render(name):
    d = symbolic.DERIVATIONS[name]()
    assert len(d.steps) >= 3
    for text, expr in d.steps:
        assert isinstance(text, str) and text
        assert sp.latex(expr)
    latex = d.to_latex()
    assert latex.startswith(r"\begin{array}") and latex.endswith(r"\end{array}")
    assert latex.count(r"\text{(") == len(d.steps)
    md = d._repr_markdown_()
    assert d.title in md and md.count("$$") >= 2 * (len(d.steps) + 1)
    assert "arXiv:" in d.references or "cdpo.pdf" in d.references


def test_known_values():
    """Hand-checked: cDPO's h* = log((1 - eps) / eps) / beta = 21.972246 at eps = beta = 0.1."""
    d = symbolic.cdpo_optimal_margin()
    f = sp.lambdify(d.arguments, d.rhs)
    assert f(0.1, 0.1) == pytest.approx(10 * math.log(9), abs=1e-12)
    assert round(f(0.1, 0.1), 6) == 21.972246
    g = symbolic.gpo_optimal_margins()
    values = sp.lambdify(g.arguments, g.lhs)(0.75, 0.5)  # logit(0.75) = log 3
    assert [float(v) for v in values.ravel()] == pytest.approx(
        [2 * math.log(3), 1.0, math.log(3)], abs=1e-12
    )


def test_claim_and_report():
    d = symbolic.dpo_from_rlhf()
    assert isinstance(d.claim, sp.Eq)
    line = d.report()
    assert "verified" in line and "NOT" not in line
    assert "NOT verified" in WRONG["dpo"].report()


def test_numeric_check_needs_points():
    d = dataclasses.replace(symbolic.dpo_from_rlhf(), checks=())
    with pytest.raises(ValueError, match="numeric checks"):
        d.numeric_check()


# --- typeset in the papers' symbols (issue 12) ---------------------------------------------------


def _display_blocks(d: symbolic.Derivation) -> list[str]:
    import re

    return re.findall(r"\$\$ (.*?) \$\$", d._repr_markdown_(), flags=re.S)


def test_latex_uses_the_papers_symbols():
    cdpo = symbolic.cdpo_optimal_margin()._repr_markdown_()
    assert r"\ell'(h)" in cdpo and r"\ell''(h)" in cdpo and r"\varepsilon" in cdpo
    nash = symbolic.nash_md_step()
    for text in (nash._repr_markdown_(), nash.to_latex()):
        assert r"\pi_{t+1}(y)" in text and r"\pi_t^{\mu}" in text
    labels = symbolic.ipo_bernoulli_labels()._repr_markdown_()
    assert r"\mathbb{E}_{y\sim\nu}" in labels and r"\ell_{13}" in labels
    online = symbolic.online_ipo_fixed_point()._repr_markdown_()
    assert r"\partial L/\partial a_1" in online and r"(P\pi)_y" in online
    for name, build in symbolic.DERIVATIONS.items():
        for text in (build()._repr_markdown_(), build().to_latex()):
            # sympy's spelling of our display names must not leak through
            for raw in ("E_{nu", "E_nu", "ell'", "ell_", "pi_{t+1}", "pi_mix", "dL/da", "{ell}"):
                assert raw not in text.replace(r"\ell", "").replace(r"\pi", ""), (name, raw)


def test_ipo_md_calls_the_mixture_weight_m():
    d = symbolic.ipo_md_mixture()
    names = {a.name for a in d.arguments}
    assert "m" in names and "beta" not in names
    assert "tau / (1 - m)" in d.title
    text = d._repr_markdown_()
    assert r"\beta" not in text and "1-m" in text.replace(" ", "")


@pytest.mark.parametrize("name", NAMES)
def test_display_is_compact_and_wrapped(name):
    """No displayed line runs off a notebook column: long sums wrap, huge identities are summarised."""
    from prefopt_toy.symbolic.core import _display_width

    d = symbolic.DERIVATIONS[name]()
    assert d.statement  # every claim has its paper form
    for block in _display_blocks(d):
        for line in block.split(r"\\"):
            assert _display_width(line) <= 66, (name, line[:120])
    # The raw generic-3-action claim of e.g. Nash-MD is thousands of characters; it is not shown.
    assert len(d._repr_markdown_()) < 6000


def test_display_latex_wraps_a_long_sum_and_leaves_a_short_one():
    from prefopt_toy.symbolic.core import display_latex

    x = sp.symbols("x1:30")
    long = display_latex(sp.Eq(sp.Symbol("ell"), sum(k * x[k] for k in range(1, 29))))
    assert long.startswith(r"\begin{aligned} \ell &=") and long.count(r"\\") >= 2
    short = display_latex(sp.Eq(sp.Symbol("ell'(h)"), x[0] + x[1]))
    assert short == r"\ell'(h) = x_{1} + x_{2}"
