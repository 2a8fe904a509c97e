"""Tests of the unlearning losses (prefopt_toy.losses.unlearning).

Oracles: the formulas re-implemented in numpy (``np.logaddexp`` for ``-log sigmoid``), central
finite differences of those numpy formulas, the closed-form NPO slope ``2 sigmoid(beta x)`` and its
beta -> 0 limit (the gradient-ascent slope 1), and the identity AltPO(alternate log-ratio 0) = NPO.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefopt_toy.losses.unlearning import altpo_loss, gradient_ascent_loss, npo_loss, retain_nll

RNG = np.random.default_rng(0)
X = RNG.normal(0.0, 5.0, size=(4, 3)) - 5.0
R = RNG.normal(0.0, 5.0, size=(4, 3)) - 5.0
A = RNG.normal(0.0, 5.0, size=(4, 3)) - 5.0
RA = RNG.normal(0.0, 5.0, size=(4, 3)) - 5.0


def _np_neg_logsig(z):
    return np.logaddexp(0.0, -z)  # -log sigmoid(z), stable


def _np_npo(p, r, beta):
    return (2.0 / beta) * _np_neg_logsig(-beta * (p - r))


def _np_altpo(pa, ra, pf, rf, beta):
    return (2.0 / beta) * _np_neg_logsig(beta * ((pa - ra) - (pf - rf)))


def _fd(f, args, i, eps=1e-6):
    """Central finite difference of the numpy function f in its i-th array argument, per element."""
    up = [np.array(a, dtype=np.float64) for a in args]
    down = [np.array(a, dtype=np.float64) for a in args]
    up[i] = up[i] + eps
    down[i] = down[i] - eps
    return (f(*up) - f(*down)) / (2 * eps)


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_values_match_numpy(beta):
    np.testing.assert_allclose(gradient_ascent_loss(X).numpy(), X, rtol=0, atol=0)
    np.testing.assert_allclose(retain_nll(X).numpy(), -X, rtol=0, atol=0)
    np.testing.assert_allclose(npo_loss(X, R, beta).numpy(), _np_npo(X, R, beta), rtol=1e-13)
    np.testing.assert_allclose(
        altpo_loss(A, RA, X, R, beta).numpy(), _np_altpo(A, RA, X, R, beta), rtol=1e-13
    )


def test_default_beta_is_point_one():
    np.testing.assert_allclose(npo_loss(X, R).numpy(), _np_npo(X, R, 0.1), rtol=1e-13)
    np.testing.assert_allclose(
        altpo_loss(A, RA, X, R).numpy(), _np_altpo(A, RA, X, R, 0.1), rtol=1e-13
    )


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_gradients_match_finite_differences(beta):
    args = [torch.tensor(a, requires_grad=True) for a in (A, RA, X, R)]
    torch.autograd.grad(altpo_loss(*args, beta=beta).sum(), args)
    grads = torch.autograd.grad(altpo_loss(*args, beta=beta).sum(), args)
    for i, g in enumerate(grads):
        fd = _fd(lambda *a: _np_altpo(*a, beta), (A, RA, X, R), i)
        np.testing.assert_allclose(g.numpy(), fd, rtol=1e-6, atol=1e-8)
    p, r = (torch.tensor(a, requires_grad=True) for a in (X, R))
    gp, gr = torch.autograd.grad(npo_loss(p, r, beta).sum(), (p, r))
    np.testing.assert_allclose(
        gp.numpy(), _fd(lambda a, b: _np_npo(a, b, beta), (X, R), 0), rtol=1e-6
    )
    np.testing.assert_allclose(
        gr.numpy(), _fd(lambda a, b: _np_npo(a, b, beta), (X, R), 1), rtol=1e-6
    )
    # closed form: d npo / d policy = 2 sigmoid(beta (p - r))
    np.testing.assert_allclose(gp.numpy(), 2.0 / (1.0 + np.exp(-beta * (X - R))), rtol=1e-12)
    (g,) = torch.autograd.grad(gradient_ascent_loss(p).sum(), p)
    np.testing.assert_array_equal(g.numpy(), np.ones_like(X))
    (g,) = torch.autograd.grad(retain_nll(p).sum(), p)
    np.testing.assert_array_equal(g.numpy(), -np.ones_like(X))


def test_altpo_without_alternate_is_npo():
    for beta in (0.05, 0.1, 2.0):
        np.testing.assert_allclose(
            altpo_loss(A, A, X, R, beta).numpy(), npo_loss(X, R, beta).numpy(), rtol=1e-14
        )
        # and against the numpy NPO directly
        np.testing.assert_allclose(
            altpo_loss(R, R, X, R, beta).numpy(), _np_npo(X, R, beta), rtol=1e-13
        )


def test_npo_gradient_tends_to_gradient_ascent_as_beta_to_zero():
    # d npo / dx = 2 sigmoid(beta x) -> 1 (GA's slope); error |tanh(beta x / 2)| <= beta |x| / 2
    x = torch.tensor(X - R, requires_grad=True)
    zero = torch.zeros_like(x)
    errors = []
    for beta in (1e-1, 1e-2, 1e-3, 1e-4):
        (g,) = torch.autograd.grad(npo_loss(x, zero, beta).sum(), x)
        err = (g - 1.0).abs()
        assert bool((err <= beta * x.detach().abs() / 2 + 1e-15).all())
        np.testing.assert_allclose(
            err.numpy(), np.abs(np.tanh(beta * (X - R) / 2)), rtol=1e-8, atol=1e-15
        )
        errors.append(float(err.max()))
    # first order in beta: each tenfold smaller beta gives a ~tenfold smaller error
    # (from beta = 1e-2 on, where beta |x| << 1; at beta = 0.1, beta |x| ~ 2 is not yet linear)
    for big, small in zip(errors[1:], errors[2:]):
        assert 9.9 < big / small < 10.1
    # the value: npo - 2 log 2 / beta -> x
    beta = 1e-5
    v = npo_loss(X - R, np.zeros_like(X), beta).numpy() - 2 * np.log(2) / beta
    np.testing.assert_allclose(v, X - R, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_finite_at_extreme_inputs(dtype, beta):
    big = torch.tensor([-1e4, -1e4, 0.0, 1e4, -5e3], dtype=dtype, requires_grad=True)
    other = torch.tensor([1e4, -1e4, -1e4, -1e4, 0.0], dtype=dtype, requires_grad=True)
    for value in (
        npo_loss(big, other, beta),
        altpo_loss(big, other, other, big, beta),
        altpo_loss(other, big, big, other, beta),
        gradient_ascent_loss(big),
        retain_nll(big),
    ):
        assert value.dtype == (torch.float32 if dtype == torch.float16 else dtype)
        assert bool(torch.isfinite(value).all())
        grads = torch.autograd.grad(value.sum(), (big, other), allow_unused=True)
        for g in grads:
            if g is not None:
                assert bool(torch.isfinite(g).all())
    if dtype == torch.float64:  # saturated ends against the asymptotes (numpy, log-add-exp)
        v = npo_loss(big, other, beta).detach().numpy()
        np.testing.assert_allclose(
            v, _np_npo(big.detach().numpy(), other.detach().numpy(), beta), rtol=1e-12
        )


def test_dtypes_and_no_aliasing():
    assert gradient_ascent_loss([-1.0]).dtype == torch.float64
    t = torch.tensor([-1.0, -2.0], dtype=torch.float32)
    out = gradient_ascent_loss(t)
    assert out.dtype == torch.float32
    out.add_(1.0)
    assert t.tolist() == [-1.0, -2.0]
    assert npo_loss(t, t.double()).dtype == torch.float64  # promotion


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gradient_ascent_loss([float("nan")]), "policy_logps must be finite"),
        (lambda: retain_nll([float("inf")]), "policy_logps must be finite"),
        (lambda: retain_nll(["a"]), "policy_logps"),
        (lambda: npo_loss([-1.0], [-1.0, -2.0]), "reference_logps must have the shape"),
        (lambda: npo_loss([-1.0], [-1.0], beta=0.0), "beta"),
        (lambda: npo_loss([-1.0], [-1.0], beta=-1.0), "beta"),
        (
            lambda: altpo_loss([-1.0], [-1.0], [-1.0], [[-1.0]]),
            "reference_forget_logps must have the shape",
        ),
        (lambda: altpo_loss([-1.0], [float("nan")], [-1.0], [-1.0]), "reference_alternate_logps"),
        (lambda: altpo_loss([-1.0], [-1.0], [-1.0], [-1.0], beta=float("inf")), "beta"),
        (lambda: gradient_ascent_loss(torch.tensor([1 + 1j])), "policy_logps must be a real"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
