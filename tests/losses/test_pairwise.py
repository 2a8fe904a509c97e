"""Tests of the per-pair losses (prefopt_toy.losses.pairwise) and the GPO family (prefopt_toy.losses.gpo).

Oracles: hand-computed values, closed-form per-pair optima checked against scipy minimisation,
identities between losses, autograd gradcheck, finiteness at extreme margins in every dtype.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from prefopt_toy.losses.gpo import (
    GPO_FUNCTIONS,
    exponential_threshold,
    gpo_loss,
    gpo_optimal_margin,
)
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, margin, robust_dpo_loss, slic_loss

SETTINGS = settings(max_examples=40, deadline=None)
betas = st.floats(0.01, 10.0)
margins = st.floats(-50.0, 50.0, allow_nan=False)

# Every loss as a function (margin, beta) -> tensor; beta doubles as tau for IPO.
ALL_LOSSES = {
    "dpo": lambda m, b: dpo_loss(m, b),
    "cdpo": lambda m, b: dpo_loss(m, b, label_smoothing=0.1),
    "rdpo": lambda m, b: robust_dpo_loss(m, b, label_smoothing=0.2),
    "ipo": lambda m, b: ipo_loss(m, tau=b),
    "slic": lambda m, b: slic_loss(m, b),
    **{f"gpo_{f}": (lambda m, b, f=f: gpo_loss(m, b, f)) for f in GPO_FUNCTIONS},
}
# Losses with a kink in the first derivative at beta * margin = 1.
KINKED = {"slic", "gpo_hinge"}


def _value_and_grad(fn, h: float) -> tuple[float, float]:
    m = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    value = fn(m)
    (grad,) = torch.autograd.grad(value, m)
    return float(value.detach()), float(grad)


# ---------------------------------------------------------------------------------------------
# margin


def test_margin_value_and_gradient():
    lc = torch.tensor([-1.0, -2.0], dtype=torch.float64, requires_grad=True)
    h = margin(lc, [-3.0, -1.0], [-2.0, -2.5], [-2.0, -0.5])
    # (lc - lrc) - (lr - lrr): (-1 + 2) - (-3 + 2) = 2;  (-2 + 2.5) - (-1 + 0.5) = 1
    torch.testing.assert_close(h, torch.tensor([2.0, 1.0], dtype=torch.float64))
    (g,) = torch.autograd.grad(h.sum(), lc)
    torch.testing.assert_close(g, torch.ones(2, dtype=torch.float64))


def test_margin_keeps_float32():
    t = torch.zeros(3, dtype=torch.float32)
    assert margin(t, t, t, t).dtype == torch.float32


@pytest.mark.parametrize("bad", ["logp_rejected", "logp_ref_chosen", "logp_ref_rejected"])
def test_margin_shape_mismatch_names_argument(bad):
    args = {
        k: torch.zeros(4)
        for k in ["logp_chosen", "logp_rejected", "logp_ref_chosen", "logp_ref_rejected"]
    }
    args[bad] = torch.zeros(4, 1)  # would broadcast to (4, 4) silently
    with pytest.raises(ValueError, match=bad):
        margin(**args)


def test_margin_rejects_nan():
    with pytest.raises(ValueError, match="logp_ref_chosen"):
        margin([0.0], [0.0], [float("nan")], [0.0])


# ---------------------------------------------------------------------------------------------
# hand values (computed by hand: softplus(-0.6) = 0.437488, -0.1 * sigmoid(-0.6) = -0.035434)


def test_dpo_hand_value():
    value, grad = _value_and_grad(lambda m: dpo_loss(m, beta=0.1), 6.0)
    assert value == pytest.approx(0.437488, abs=1e-6)
    assert grad == pytest.approx(-0.035434, abs=1e-6)


def test_slic_hand_value():
    value, grad = _value_and_grad(lambda m: slic_loss(m, beta=0.1), 6.0)
    assert value == pytest.approx(0.4, abs=1e-12)
    assert grad == pytest.approx(-0.1, abs=1e-12)


def test_ipo_hand_value():
    value, grad = _value_and_grad(lambda m: ipo_loss(m, tau=0.1), 6.0)
    assert value == pytest.approx(1.0, abs=1e-12)
    assert grad == pytest.approx(2.0, abs=1e-12)


@SETTINGS
@given(h=margins, beta=betas, eps=st.floats(0.0, 0.45))
def test_cdpo_and_rdpo_values_by_formula(h, beta, eps):
    # Independent oracle: -log sigma(z) = log(1 + e^{-z}) via numpy's logaddexp, then the cDPO
    # mixture (Mitchell, Eq. 3) and the rDPO de-biased difference (Chowdhury et al., Sec. 3).
    x = beta * h
    clean, flipped = float(np.logaddexp(0.0, -x)), float(np.logaddexp(0.0, x))
    cdpo = (1 - eps) * clean + eps * flipped
    rdpo = ((1 - eps) * clean - eps * flipped) / (1 - 2 * eps)
    assert float(dpo_loss(h, beta, label_smoothing=eps)) == pytest.approx(
        cdpo, rel=1e-12, abs=1e-12
    )
    assert float(robust_dpo_loss(h, beta, eps)) == pytest.approx(
        rdpo, rel=1e-12, abs=1e-9 * (1 + abs(x))
    )


def test_cdpo_optimal_margin():
    eps, beta = 0.1, 0.1
    closed = math.log((1 - eps) / eps) / beta
    assert closed == pytest.approx(21.972246, abs=1e-6)
    res = minimize_scalar(
        lambda h: float(dpo_loss(h, beta, label_smoothing=eps)),
        bounds=(0.0, 100.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert res.x == pytest.approx(21.972246, abs=1e-4)
    _, grad = _value_and_grad(lambda m: dpo_loss(m, beta, label_smoothing=eps), closed)
    assert abs(grad) < 1e-15


# ---------------------------------------------------------------------------------------------
# invariants


@SETTINGS
@given(beta=betas)
def test_dpo_at_zero_is_log2(beta):
    assert float(dpo_loss(0.0, beta)) == pytest.approx(math.log(2.0), abs=1e-15)


@SETTINGS
@given(h=margins, beta=betas)
def test_dpo_antisymmetric_part(h, beta):
    # -log s(x) + log s(-x) = -x: the odd part of DPO is linear in the margin.
    diff = float(dpo_loss(h, beta) - dpo_loss(-h, beta))
    assert diff == pytest.approx(-beta * h, abs=1e-9 * (1 + abs(beta * h)))


@SETTINGS
@given(h=margins, beta=betas, eps=st.floats(0.0, 0.49))
def test_cdpo_antisymmetric_part(h, beta, eps):
    diff = float(dpo_loss(h, beta, eps) - dpo_loss(-h, beta, eps))
    assert diff == pytest.approx(-(1 - 2 * eps) * beta * h, abs=1e-9 * (1 + abs(beta * h)))


@SETTINGS
@given(tau=betas)
def test_ipo_at_zero_and_stationary_at_target(tau):
    assert float(ipo_loss(0.0, tau)) == pytest.approx(1.0 / (4 * tau**2), rel=1e-14)
    value, grad = _value_and_grad(lambda m: ipo_loss(m, tau), 1.0 / (2 * tau))
    assert value == 0.0 and grad == 0.0


@SETTINGS
@given(h=margins, beta=betas, eps=st.floats(0.0, 0.45))
def test_rdpo_is_unbiased_for_clean_dpo(h, beta, eps):
    # A label flipped w.p. eps: E[rDPO] = (1 - eps) l(h) + eps l(-h) = clean DPO loss.
    expected = (1 - eps) * robust_dpo_loss(h, beta, eps) + eps * robust_dpo_loss(-h, beta, eps)
    assert float(expected) == pytest.approx(float(dpo_loss(h, beta)), rel=1e-9, abs=1e-12)


def test_rdpo_reduces_to_dpo_and_is_unbounded_below():
    h = torch.linspace(-30, 30, 61, dtype=torch.float64)
    torch.testing.assert_close(robust_dpo_loss(h, 0.5, 0.0), dpo_loss(h, 0.5))
    eps, beta = 0.1, 1.0
    big = torch.tensor([1e2, 1e3, 1e4], dtype=torch.float64)
    values = robust_dpo_loss(big, beta, eps)
    assert bool((values < 0).all()) and bool((values.diff() < 0).all())
    # asymptote -eps beta h / (1 - 2 eps)
    torch.testing.assert_close(values, -eps * beta * big / (1 - 2 * eps), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# dtype, shape, finiteness, gradients


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_and_shape_preserved(name, dtype):
    m = torch.linspace(-3, 3, 24, dtype=dtype).reshape(2, 3, 4)
    out = ALL_LOSSES[name](m, 0.5)
    assert out.dtype == dtype and out.shape == (2, 3, 4)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_lists_and_numbers_become_float64(name):
    assert ALL_LOSSES[name]([0.5, -1.0], 1.0).dtype == torch.float64
    assert ALL_LOSSES[name](0.5, 1.0).shape == ()


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_finite_value_and_gradient_at_extreme_margins(name, dtype, beta):
    grid = torch.cat(
        [torch.linspace(-1e4, 1e4, 2001), torch.tensor([-1e4, -1e3, -100.0, 0.0, 100.0, 1e4])]
    )
    m = grid.to(dtype).requires_grad_(True)
    out = ALL_LOSSES[name](m, beta)
    assert bool(torch.isfinite(out).all()), name
    (g,) = torch.autograd.grad(out.sum(), m)
    assert bool(torch.isfinite(g).all()), name


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_gradcheck(name, beta):
    gen = torch.Generator().manual_seed(0)
    m = (torch.rand(64, generator=gen, dtype=torch.float64) - 0.5) * 40.0
    if name in KINKED:
        m = m[(beta * m - 1.0).abs() > 1e-2]
    m.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ALL_LOSSES[name](x, beta), (m,))


def test_inputs_not_modified():
    arr = np.array([1.0, -2.0, 3.0])
    t = torch.tensor([1.0, -2.0, 3.0])
    for fn in ALL_LOSSES.values():
        fn(arr, 0.3)
        fn(t, 0.3)
    np.testing.assert_array_equal(arr, [1.0, -2.0, 3.0])
    torch.testing.assert_close(t, torch.tensor([1.0, -2.0, 3.0]))


# ---------------------------------------------------------------------------------------------
# GPO family


def test_gpo_special_cases():
    h = torch.linspace(-40, 40, 161, dtype=torch.float64)
    torch.testing.assert_close(gpo_loss(h, 0.3, "logistic"), dpo_loss(h, 0.3))
    torch.testing.assert_close(gpo_loss(h, 0.3, "hinge"), slic_loss(h, 0.3))
    tau = 0.25  # (2 tau h - 1)^2 = 4 tau^2 (h - 1/(2 tau))^2
    torch.testing.assert_close(gpo_loss(h, 2 * tau, "squared"), 4 * tau**2 * ipo_loss(h, tau))


def test_gpo_functions_by_formula():
    x = torch.linspace(-30, 30, 121, dtype=torch.float64)
    expected = {
        "logistic": torch.log1p(torch.exp(-x)),
        "hinge": torch.relu(1 - x),
        "squared": (x - 1) ** 2,
        "exponential": torch.exp(-x),
        "truncated_quadratic": torch.relu(1 - x) ** 2,
        "savage": 1.0 / (1.0 + torch.exp(x)) ** 2,
    }
    assert set(expected) == set(GPO_FUNCTIONS)
    for f, want in expected.items():
        torch.testing.assert_close(gpo_loss(x, 1.0, f), want, rtol=1e-12, atol=1e-14, msg=f)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exponential_extension_is_exact_above_and_c1_convex_below(dtype):
    x0 = exponential_threshold(dtype)
    assert x0 == pytest.approx(-0.5 * math.log(torch.finfo(dtype).max))
    f = GPO_FUNCTIONS["exponential"]
    above = torch.linspace(x0, 30.0, 200, dtype=torch.float64)
    torch.testing.assert_close(f(above.to(dtype)).double(), torch.exp(-above), rtol=1e-5, atol=0.0)
    # C^1 at x0: value and slope agree from both sides.
    for side in (x0 - 1e-3, x0 + 1e-3):
        x = torch.tensor(side, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(f(x.to(dtype)).double(), x)
        assert float(g) == pytest.approx(-math.exp(-x0), rel=2e-3)
    # below x0: the tangent line e^{-x0}(1 + x0 - x), decreasing and (weakly) convex
    below = torch.linspace(-1e4, x0, 400, dtype=torch.float64)
    vals = f(below.to(dtype)).double()
    torch.testing.assert_close(vals, math.exp(-x0) * (1 + x0 - below), rtol=1e-5, atol=0.0)
    assert bool((vals.diff() < 0).all())


def test_gpo_convex_and_non_increasing_where_claimed():
    x = torch.linspace(-8, 8, 1601, dtype=torch.float64)
    for f in ["logistic", "hinge", "exponential", "truncated_quadratic", "savage"]:
        v = GPO_FUNCTIONS[f](x)
        assert bool((v.diff() <= 1e-15).all()), f
    for f in ["logistic", "hinge", "squared", "exponential", "truncated_quadratic"]:
        v = GPO_FUNCTIONS[f](x)
        assert bool((v[:-2] + v[2:] - 2 * v[1:-1] >= -1e-12).all()), f


# Closed forms of the optimal scaled margin x* = beta h*, written here independently.
CLOSED_FORM = {
    "logistic": lambda p: math.log(p / (1 - p)),
    "savage": lambda p: math.log(p / (1 - p)),
    "exponential": lambda p: 0.5 * math.log(p / (1 - p)),
    "squared": lambda p: 2 * p - 1,
    "truncated_quadratic": lambda p: 2 * p - 1,
    "hinge": lambda p: math.copysign(1.0, 2 * p - 1),
}


@pytest.mark.parametrize("f", sorted(GPO_FUNCTIONS))
@pytest.mark.parametrize("p", [0.1, 0.3, 0.6, 0.85])
def test_gpo_optimal_margin_by_scipy(f, p):
    beta = 0.5

    def soft_label_loss(h: float) -> float:
        return float(p * gpo_loss(h, beta, f) + (1 - p) * gpo_loss(-h, beta, f))

    res = minimize_scalar(
        soft_label_loss, bounds=(-20.0, 20.0), method="bounded", options={"xatol": 1e-10}
    )
    assert beta * res.x == pytest.approx(CLOSED_FORM[f](p), abs=1e-5)
    assert float(gpo_optimal_margin(p, beta, f)) == pytest.approx(
        CLOSED_FORM[f](p) / beta, abs=1e-12
    )


def test_gpo_optimal_margin_edges():
    assert float(gpo_optimal_margin(1.0, 1.0, "logistic")) == math.inf
    assert float(gpo_optimal_margin(0.0, 1.0, "exponential")) == -math.inf
    assert float(gpo_optimal_margin(1.0, 0.5, "squared")) == 2.0
    assert float(gpo_optimal_margin(0.5, 1.0, "hinge")) == 0.0
    with pytest.raises(ValueError, match="p must"):
        gpo_optimal_margin(1.5, 1.0, "logistic")


def test_gpo_registry_is_read_only():
    with pytest.raises(TypeError):
        GPO_FUNCTIONS["new"] = lambda x: x  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: dpo_loss(1.0, 0.0), "beta"),
        (lambda: dpo_loss(1.0, -1.0), "beta"),
        (lambda: dpo_loss(1.0, 0.1, label_smoothing=0.5), "label_smoothing"),
        (lambda: dpo_loss(1.0, 0.1, label_smoothing=-0.1), "label_smoothing"),
        (lambda: robust_dpo_loss(1.0, 0.1, 0.5), "label_smoothing"),
        (lambda: robust_dpo_loss(1.0, float("nan"), 0.1), "beta"),
        (lambda: ipo_loss(1.0, 0.0), "tau"),
        (lambda: slic_loss(1.0, -0.1), "beta"),
        (lambda: gpo_loss(1.0, 0.0, "logistic"), "beta"),
        (lambda: gpo_loss(1.0, 1.0, "cubic"), "f must be one of"),
        (lambda: dpo_loss(float("nan"), 0.1), "margin"),
        (lambda: ipo_loss(torch.tensor([0.0, float("inf")]), 0.1), "margin"),
        (lambda: gpo_loss(torch.tensor([float("nan")]), 1.0, "savage"), "margin"),
        (lambda: slic_loss("abc", 0.1), "margin"),
    ],
)
def test_bad_arguments_raise_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()
