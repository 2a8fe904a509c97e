"""Tests for prefopt_toy.symbolic.family: R-DPO, SimPO, sDPO, KTO, RSO, ORPO and DPOP derivations.

Oracles. The symbolic check is sympy's exact algebra on generic symbols, independent of the torch
code. The numeric check compares the lambdified sympy expressions with values the library computed
(``rlhf_optimum``, ``ipo_optimum``, ``bradley_terry``, ``population_loss`` with ``dpo_loss``,
``win_rates``), or, for KTO and DPOP (no such loss in the library), with a torch evaluation built on
the library's functions. Deliberately wrong variants (built here) must fail both checks. Separate
tests check the claims the derivations do not cover with a lambdified identity: the library's own
sDPO iteration, SimPO's gamma > 0 margin against a scipy minimisation of ``dpo_loss``, KTO's
stationary point by autograd, RSO's nu-independence, ORPO's small-lambda minimiser, and where
DPOP's minimiser sits.
"""

from __future__ import annotations

import dataclasses
import math
import re
from functools import partial

import numpy as np
import pytest
import sympy as sp
import torch

from prefopt_toy import symbolic
from prefopt_toy.symbolic import family
from prefopt_toy.symbolic.core import _display_width, _gibbs

NAMES = ["rdpo", "simpo_dpo", "sdpo", "kto_limit", "rso", "orpo_limit", "dpop_kink"]
NUMERIC_TOL = 1e-10


def _symbol(d: symbolic.Derivation, name: str) -> sp.Symbol:
    (s,) = [a for a in d.arguments if a.name == name]
    return s


def _wrong_variants() -> dict[str, symbolic.Derivation]:
    """One plausible mistake per derivation."""
    D = {name: symbolic.DERIVATIONS[name]() for name in NAMES}
    out = {}
    d = D["rdpo"]  # the length term with the wrong sign: r + alpha L
    out["rdpo"] = dataclasses.replace(d, rhs=d.rhs.subs(_symbol(d, "alpha"), -_symbol(d, "alpha")))
    d = D["simpo_dpo"]  # forgets the length normalisation: strength beta instead of beta / L
    out["simpo_dpo"] = dataclasses.replace(d, rhs=d.rhs.subs(_symbol(d, "L"), 1))
    d = D["sdpo"]  # forgets that the reference moves: every stage at strength beta
    out["sdpo"] = dataclasses.replace(d, rhs=sp.ImmutableMatrix(list(d.rhs[:3]) * 4))
    d = D["kto_limit"]  # ignores the undesirable labels: pi ∝ D(y) lambda_D d(y)
    out["kto_limit"] = dataclasses.replace(d, rhs=d.rhs.subs(_symbol(d, "lambda_U"), 0))
    d = D["rso"]  # claims IPO's optimum does not move either
    out["rso"] = dataclasses.replace(d, rhs=sp.ImmutableMatrix([*d.rhs[:3], 0, 0]))
    d = D["orpo_limit"]  # SFT on the pair marginal nu instead of the chosen actions
    n1, n2 = _symbol(d, "nu1"), _symbol(d, "nu2")
    out["orpo_limit"] = dataclasses.replace(d, rhs=_gibbs([n1, n2, 1 - n1 - n2]))
    d = D["dpop_kink"]  # drops the probability (1 - p) that action 2 is the chosen one
    beta, p, lam, mu1 = (_symbol(d, n) for n in ("beta", "p", "lambda", "mu1"))
    right = beta * (sp.Rational(1, 2) - p) + lam * mu1
    out["dpop_kink"] = dataclasses.replace(d, rhs=sp.ImmutableMatrix([right, d.rhs[1]]))
    return out


WRONG = _wrong_variants()


# --- the registry and the two checks ------------------------------------------------------------


def test_registered_and_cached():
    for name in NAMES:
        builder = symbolic.DERIVATIONS[name]
        d = builder()
        assert d.name == name
        assert builder() is d
        assert getattr(symbolic, builder.__name__) is builder
        assert builder.__name__ in symbolic.__all__ and builder.__name__ in family.__all__


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


@pytest.mark.parametrize("name", NAMES)
def test_wrong_variant_fails_both_checks(name):
    wrong = WRONG[name]
    assert not wrong.verify(), f"{name}: a wrong variant verified"
    assert wrong.numeric_check() > 1e-3, f"{name}: a wrong variant matched the library"


# --- rendering ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_steps_render_compactly(name):
    d = symbolic.DERIVATIONS[name]()
    assert len(d.steps) >= 3 and d.statement
    for text, expr in d.steps:
        assert isinstance(text, str) and text
        assert sp.latex(expr)
    latex = d.to_latex()
    assert latex.startswith(r"\begin{array}") and latex.endswith(r"\end{array}")
    assert latex.count(r"\text{(") == len(d.steps)
    md = d._repr_markdown_()
    assert d.title in md and md.count("$$") >= 2 * (len(d.steps) + 1)
    assert "arXiv:" in d.references
    for block in re.findall(r"\$\$ (.*?) \$\$", md, flags=re.S):
        for line in block.split(r"\\"):
            assert _display_width(line) <= 66, (name, line[:120])
    assert len(md) < 6000
    for text in (md, latex):
        bare = text.replace(r"\ell", "").replace(r"\pi", "")
        for raw in ("E_{nu", "E_nu", "ell'", "ell_", "pi_{t+1}", "pi_mix", "dL/da", "{ell}"):
            assert raw not in bare, (name, raw)


# --- R-DPO ----------------------------------------------------------------------------------------


def test_rdpo_alpha_equal_kappa_removes_the_length_bias():
    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.solutions.optima import rlhf_optimum

    d = symbolic.rdpo_length_optimum()
    policy = sp.lambdify(d.arguments, d.lhs[:3, :])
    q, L, mu, beta, kappa = [0.2, 0.0, 0.1], [2.0, 8.0, 4.0], [0.2, 0.5, 0.3], 0.5, 0.1
    r = [q[i] + kappa * L[i] for i in range(3)]
    plain = np.ravel(policy(*r, *L, 0.0, *mu, beta, *q, kappa))  # DPO: alpha = 0
    fixed = np.ravel(policy(*r, *L, kappa, *mu, beta, *q, kappa))
    target = rlhf_optimum(bradley_terry(q), mu, beta).numpy()
    assert np.max(np.abs(fixed - target)) < 1e-12
    assert plain[1] > target[1] + 0.1  # without the correction the longest action is favoured


# --- SimPO ----------------------------------------------------------------------------------------


def _simpo_pair_minimiser(p: float, gamma: float) -> float:
    """Minimiser of p * l(x - gamma) + (1 - p) * l(-x - gamma), l = pt.dpo_loss at beta = 1."""
    from scipy.optimize import brentq

    from prefopt_toy.losses.pairwise import dpo_loss

    def slope(x: float) -> float:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        risk = p * dpo_loss(t - gamma, 1.0) + (1 - p) * dpo_loss(-t - gamma, 1.0)
        (g,) = torch.autograd.grad(risk, t)
        return float(g)

    return float(brentq(slope, -50.0, 50.0, xtol=1e-14, rtol=4 * np.finfo(float).eps))


@pytest.mark.parametrize(("p", "gamma"), [(0.75, 0.5), (0.6, 1.0), (0.95, 0.3), (0.5, 0.8)])
def test_simpo_gamma_margin_exceeds_logit_p_by_less_than_gamma(p, gamma):
    e = math.exp(gamma)
    u = (e * (2 * p - 1) + math.sqrt(e**2 * (2 * p - 1) ** 2 + 4 * p * (1 - p))) / (2 * (1 - p))
    x_star = _simpo_pair_minimiser(p, gamma)
    assert x_star == pytest.approx(math.log(u), abs=1e-10)
    logit = math.log(p / (1 - p))
    if p == 0.5:
        assert x_star == pytest.approx(0.0, abs=1e-12)  # no inflation at an even label
    else:
        assert logit < x_star < logit + gamma  # inflated, but not by the full gamma


# --- sDPO -----------------------------------------------------------------------------------------


def test_sdpo_library_stages_compound():
    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.solutions.optima import rlhf_optimum

    P, mu, beta = bradley_terry([0.3, -0.5, 1.2]), [0.2, 0.3, 0.5], 0.7
    pi = torch.tensor(mu, dtype=torch.float64)
    for t in range(1, 5):
        pi = rlhf_optimum(P, pi, beta)  # stage t: DPO with the previous stage as reference
        assert torch.allclose(pi, rlhf_optimum(P, mu, beta / t), atol=1e-13, rtol=0)


# --- KTO ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1e-6, 0.5])
def test_kto_fixed_point_is_stationary_for_the_exact_loss(beta):
    D, d, lam_d, lam_u, mu, z0 = [0.2, 0.3, 0.5], [0.9, 0.7, 0.6], 1.0, 1.0, [0.5, 0.2, 0.3], 0.4
    pi = family._kto_stationary_policy(D, d, lam_d, lam_u, mu, z0, beta)
    theta = torch.tensor(pi, dtype=torch.float64).log().requires_grad_(True)
    loss = family.kto_population_loss(theta, D, d, lam_d, lam_u, mu, z0, beta)
    (g,) = torch.autograd.grad(loss, theta)
    assert float(g.abs().max()) < 1e-12 * beta  # the loss's slope scales with beta
    c = np.array([D[i] * (lam_d * d[i] - lam_u * (1 - d[i])) for i in range(3)])
    gap = np.max(np.abs(np.array(pi) - c / c.sum()))
    assert (gap < 1e-10) if beta < 1e-3 else (gap > 1e-3)  # the limit, and only the limit


def test_kto_limit_ignores_mu_and_z0():
    D, d = [0.5, 0.25, 0.25], [0.8, 0.95, 0.5]
    a = family._kto_stationary_policy(D, d, 1.0, 0.6, [0.6, 0.3, 0.1], 0.7, 1e-7)
    b = family._kto_stationary_policy(D, d, 1.0, 0.6, [0.1, 0.1, 0.8], -2.0, 1e-7)
    assert np.max(np.abs(np.array(a) - np.array(b))) < 1e-11


# --- RSO ------------------------------------------------------------------------------------------


def test_rso_dpo_optimum_ignores_nu_but_ipo_optimum_does_not():
    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.solutions.optima import ipo_optimum, rlhf_optimum

    r, mu, beta, tau = [0.0, math.log(2.0), 2 * math.log(2.0)], [1 / 3] * 3, 1.0, 0.1
    P = bradley_terry(r)
    pi_r = rlhf_optimum(P, mu, beta)
    assert torch.allclose(rlhf_optimum(P, mu, beta, nu=pi_r), pi_r, atol=1e-14, rtol=0)
    assert torch.allclose(pi_r, torch.tensor([1, 2, 4], dtype=torch.float64) / 7, atol=1e-14)
    shift = ipo_optimum(P, mu, tau, nu=pi_r).log() - ipo_optimum(P, mu, tau, nu=mu).log()
    got = (float(shift[1] - shift[0]), float(shift[2] - shift[0]))
    assert got == pytest.approx((-5 / 63, -1 / 63), abs=1e-13)  # the lemma's exact numbers


def test_rso_library_gradient_vanishes_at_the_optimum_for_any_nu():
    from prefopt_toy.games.constructors import bradley_terry
    from prefopt_toy.losses.pairwise import dpo_loss
    from prefopt_toy.losses.population import population_loss
    from prefopt_toy.solutions.optima import rlhf_optimum

    P, mu, beta = bradley_terry([1.0, -0.3, 0.4]), [0.5, 0.3, 0.2], 0.3
    theta0 = rlhf_optimum(P, mu, beta).log()
    for nu in ([0.1, 0.1, 0.8], [0.6, 0.3, 0.1], [1 / 3] * 3):
        theta = theta0.clone().requires_grad_(True)
        loss = population_loss(theta, P, mu, partial(dpo_loss, beta=beta), nu=nu)
        (g,) = torch.autograd.grad(loss, theta)
        assert float(g.abs().max()) < 1e-13


# --- ORPO -----------------------------------------------------------------------------------------


def _orpo_population_loss(theta, P, nu, lam):
    from prefopt_toy.policies import softmax

    log_pi = softmax(theta).log()
    log_odds = log_pi - torch.log1p(-log_pi.exp())
    nu_t = torch.tensor(nu, dtype=torch.float64)
    W = nu_t[:, None] * nu_t[None, :] * torch.as_tensor(P, dtype=torch.float64)
    # both orders of each pair; W[y, y'] = Pr(pair (y, y') and y chosen), summed twice
    nll = -(W.sum(1) * log_pi).sum() * 2
    odds_term = (
        -2 * (W * torch.nn.functional.logsigmoid(log_odds[:, None] - log_odds[None, :])).sum()
    )
    return nll + lam * odds_term


def test_orpo_small_lambda_minimiser_tends_to_the_limit():
    from scipy.optimize import minimize

    from prefopt_toy.policies import win_rates

    P = [[0.5, 0.7, 0.4], [0.3, 0.5, 0.25], [0.6, 0.75, 0.5]]
    nu = [0.3, 0.5, 0.2]
    w = torch.tensor(nu, dtype=torch.float64) * win_rates(P, nu)
    limit = (w / w.sum()).numpy()

    def minimiser(lam):
        def fun(x):
            t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            loss = _orpo_population_loss(t, torch.tensor(P, dtype=torch.float64), nu, lam)
            (g,) = torch.autograd.grad(loss, t)
            return float(loss.detach()), g.numpy()

        res = minimize(fun, np.zeros(3), jac=True, method="BFGS", options={"gtol": 1e-12})
        x = np.exp(res.x - res.x.max())
        return x / x.sum()

    assert np.max(np.abs(minimiser(0.0) - limit)) < 1e-7
    gaps = [np.max(np.abs(minimiser(lam) - limit)) for lam in (1e-1, 1e-2, 1e-3)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3  # O(lambda)


# --- DPOP -----------------------------------------------------------------------------------------


def _dpop_slope(theta: float, mu_w: float, p: float, beta: float, lam: float) -> float:
    t = torch.tensor([theta, 0.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(family.dpop_outside_population_loss(t, mu_w, p, beta, lam), t)
    return float(g[0])


@pytest.mark.parametrize(("mu_w", "p", "beta"), [(0.3, 0.7, 0.5), (0.6, 0.9, 0.1)])
def test_dpop_minimiser_sits_at_the_kink_iff_lambda_reaches_the_threshold(mu_w, p, beta):
    from scipy.optimize import brentq

    kink = math.log(mu_w / (1 - mu_w))
    lam_star = beta * (p - 0.5) / ((1 - p) * mu_w)
    for lam in (1.5 * lam_star, 0.5 * lam_star):
        # the loss is convex: its minimiser is where the slope changes sign
        x = brentq(
            lambda th, lam=lam: _dpop_slope(th, mu_w, p, beta, lam),
            kink - 30,
            kink + 30,
            xtol=1e-13,
        )
        if lam > lam_star:
            assert x == pytest.approx(kink, abs=1e-10)  # pi* = mu exactly
        else:
            assert x > kink + 1e-3
            pi1, h = 1 / (1 + math.exp(-x)), x - kink
            foc = beta * (1 / (1 + math.exp(-beta * h)) - p) + lam * (1 - p) * pi1
            assert foc == pytest.approx(0.0, abs=1e-9)
            assert 1 / (1 + math.exp(-beta * h)) < p  # short of DPO's margin


def test_dpop_hard_label_never_binds_on_two_actions():
    for theta in np.linspace(-5.0, 20.0, 11):
        assert _dpop_slope(float(theta), 0.3, 1.0, 0.5, 50.0) < 0.0  # always pushed up, as DPO
