"""Tests of the exact population objective (prefopt_toy.losses.population).

Oracles are written here, independently of the rest of the package: an explicit double loop over
pairs in plain Python floats, and the closed-form minimisers mu * exp(r / beta) (DPO on
Bradley-Terry data) and mu * exp(P @ nu / tau) (IPO), reached by L-BFGS on the library objective.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt_toy.losses.gpo import gpo_loss
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, slic_loss
from prefopt_toy.losses.population import dataset_loss, hard_labels, pair_margins, population_loss
from prefopt_toy.policies import geometric_mixture

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)


# ---------------------------------------------------------------------------------------------
# test-local constructions (deliberately not imported from the package)


def _simplex(gen: torch.Generator, k: int, floor: float = 0.05) -> torch.Tensor:
    w = floor + torch.rand(k, generator=gen, dtype=F64)
    return w / w.sum()


def _random_P(gen: torch.Generator, k: int) -> torch.Tensor:
    """A generic (not Bradley-Terry, typically non-transitive) preference matrix."""
    a = torch.rand(k, k, generator=gen, dtype=F64)
    P = (a + 1.0 - a.T) / 2.0  # P + P.T = 1, entries in [0, 1]
    return P.fill_diagonal_(0.5)  # exactly 1/2, not 1/2 up to round-off (hard labels compare to it)


def _bt_P(scores: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-(scores[:, None] - scores[None, :])))


def _minimise(objective, k: int, tol: float = 1e-10) -> torch.Tensor:
    """L-BFGS on logits, then Newton polish, to gradient norm ``tol``; returns pi = softmax(theta).

    L-BFGS alone stalls near 1e-9: its line search compares function values, which float64 cannot
    resolve once f - f* ~ |grad|^2 drops below 1e-16. Newton steps use the gradient only.
    """
    theta = torch.zeros(k, dtype=F64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=500,
        history_size=20,
        tolerance_grad=tol,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        value = objective(theta)
        value.backward()
        return value

    opt.step(closure)
    t = theta.detach().clone()
    ones = torch.ones(k, k, dtype=F64)
    for _ in range(10):
        g = torch.autograd.functional.jacobian(objective, t)
        if float(g.norm()) < tol:
            break
        # The objective is invariant under theta + c: H 1 = 0 and g . 1 = 0. Adding 1 1^T makes the
        # system regular without changing the step's component orthogonal to 1.
        H = torch.autograd.functional.hessian(objective, t)
        t = t - torch.linalg.solve(H + ones, g)
    g = torch.autograd.functional.jacobian(objective, t)
    assert float(g.norm()) < tol, f"did not converge: |grad| = {float(g.norm()):.3g}"
    return torch.softmax(t, dim=0)


def _oracle(theta, P, mu, s, L, pair_loss) -> float:
    """The expected loss of one comparison, written as the literal double loop over draws."""
    z = [float(t) for t in theta]
    zmax = max(z)
    norm = sum(math.exp(t - zmax) for t in z)
    pi = [math.exp(t - zmax) / norm for t in z]
    k = len(pi)
    total = 0.0
    for y in range(k):
        for y2 in range(k):
            h = math.log(pi[y] / float(mu[y])) - math.log(pi[y2] / float(mu[y2]))
            # (Y, Y') = (y, y2) is drawn w.p. s_y s_y2; y wins w.p. L[y, y2], else y2 wins.
            total += (
                float(s[y])
                * float(s[y2])
                * (float(L[y, y2]) * pair_loss(h) + float(L[y2, y]) * pair_loss(-h))
            )
    return total


def _dpo_scalar(beta):
    return lambda h: (
        math.log1p(math.exp(-beta * h))
        if beta * h > -30
        else -beta * h + math.log1p(math.exp(beta * h))
    )


def _ipo_scalar(tau):
    return lambda h: (h - 1.0 / (2.0 * tau)) ** 2


# ---------------------------------------------------------------------------------------------
# normalisation and the independent double-loop oracle


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(2, 5),
    beta=st.floats(0.05, 5.0),
    tau=st.floats(0.05, 5.0),
)
def test_value_at_reference_policy(seed, k, beta, tau):
    gen = torch.Generator().manual_seed(seed)
    P, mu, nu = _random_P(gen, k), _simplex(gen, k), _simplex(gen, k, floor=0.0)
    theta = mu.log() + 3.0  # pi = mu: every margin is 0 (a shift of the logits changes nothing)
    for kwargs in [{}, {"nu": nu}, {"nu": lambda p: p}, {"labels": "hard"}]:
        dpo = population_loss(theta, P, mu, partial(dpo_loss, beta=beta), **kwargs)
        ipo = population_loss(theta, P, mu, partial(ipo_loss, tau=tau), **kwargs)
        assert float(dpo) == pytest.approx(math.log(2.0), rel=1e-12)
        assert float(ipo) == pytest.approx(1.0 / (4.0 * tau**2), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_value_matches_double_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    k = 3 + seed
    P, mu, nu = _random_P(gen, k), _simplex(gen, k), _simplex(gen, k)
    theta = torch.randn(k, generator=gen, dtype=F64) * 2.0
    pi = torch.softmax(theta, 0)
    hard = (P > 0.5).to(F64) + 0.5 * (P == 0.5).to(F64)
    cases = [
        (partial(dpo_loss, beta=0.7), _dpo_scalar(0.7), {}, mu, P),
        (partial(ipo_loss, tau=0.3), _ipo_scalar(0.3), {"nu": nu}, nu, P),
        (partial(ipo_loss, tau=0.3), _ipo_scalar(0.3), {"nu": lambda p: p}, pi, P),
        (partial(dpo_loss, beta=0.2), _dpo_scalar(0.2), {"nu": nu, "labels": "hard"}, nu, hard),
        (
            partial(slic_loss, beta=0.5),
            lambda h: max(0.0, 1 - 0.5 * h),
            {"labels": hard.numpy()},
            mu,
            hard,
        ),
    ]
    for loss, scalar, kwargs, s, L in cases:
        got = float(population_loss(theta, P, mu, loss, **kwargs))
        assert got == pytest.approx(_oracle(theta, P, mu, s, L, scalar), rel=1e-12, abs=1e-14)


def test_pair_margins():
    theta = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    mu = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
    h = pair_margins(theta, mu)
    lr = torch.log_softmax(theta, 0) - mu.log()
    for i in range(3):
        for j in range(3):
            assert float(h[i, j]) == pytest.approx(float(lr[i] - lr[j]), abs=1e-15)
    torch.testing.assert_close(h, -h.T)


# ---------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize(
    "loss",
    [
        partial(dpo_loss, beta=0.5),
        partial(ipo_loss, tau=0.2),
        partial(gpo_loss, beta=1.0, f="exponential"),
        partial(dpo_loss, beta=1.0, label_smoothing=0.1),
    ],
)
def test_gradcheck(loss):
    gen = torch.Generator().manual_seed(7)
    k = 4
    P, mu, nu = _random_P(gen, k), _simplex(gen, k), _simplex(gen, k)
    theta = torch.randn(k, generator=gen, dtype=F64, requires_grad=True)
    # Only fixed samplers: with a callable nu, finite differences would also move s = nu(pi), which
    # the stop-gradient deliberately ignores (that case is test_callable_nu_is_stop_gradient).
    for kwargs in [{}, {"nu": nu}, {"nu": nu, "labels": "hard"}]:
        assert torch.autograd.gradcheck(
            lambda t, kwargs=kwargs: population_loss(t, P, mu, loss, **kwargs), (theta,)
        )


def test_callable_nu_is_stop_gradient():
    gen = torch.Generator().manual_seed(3)
    k = 4
    P, mu = _random_P(gen, k), _simplex(gen, k)
    theta = torch.randn(k, generator=gen, dtype=F64, requires_grad=True)
    loss = partial(ipo_loss, tau=0.5)
    mixture = lambda p: geometric_mixture(p, mu, 0.4)  # noqa: E731  (IPO-MD's sampler)
    online = population_loss(theta, P, mu, loss, nu=mixture)
    fixed_nu = geometric_mixture(torch.softmax(theta.detach(), 0), mu, 0.4)
    offline = population_loss(theta, P, mu, loss, nu=fixed_nu)
    (g_online,) = torch.autograd.grad(online, theta)
    (g_offline,) = torch.autograd.grad(offline, theta)
    assert float(online.detach()) == pytest.approx(float(offline.detach()), rel=1e-14)
    torch.testing.assert_close(g_online, g_offline, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# minimisers against closed forms written here


@pytest.mark.parametrize("beta", [0.5, 1.0])
@pytest.mark.parametrize("use_nu", [False, True])
def test_dpo_minimiser_is_rlhf_optimum_under_bradley_terry(beta, use_nu):
    gen = torch.Generator().manual_seed(11)
    k = 4
    scores = torch.randn(k, generator=gen, dtype=F64)
    P, mu = _bt_P(scores), _simplex(gen, k)
    nu = _simplex(gen, k) if use_nu else None
    pi = _minimise(lambda t: population_loss(t, P, mu, partial(dpo_loss, beta=beta), nu=nu), k)
    expected = mu * torch.exp(scores / beta)
    torch.testing.assert_close(pi, expected / expected.sum(), rtol=0.0, atol=1e-8)


def test_online_dpo_is_stationary_at_rlhf_optimum_under_bradley_terry():
    # Calandriello et al. (arXiv:2403.08635v1, App. F): under BT the RLHF solution is a stationary
    # point of online DPO. Checked at the closed form, no optimiser involved.
    gen = torch.Generator().manual_seed(5)
    k, beta = 4, 0.7
    scores = torch.randn(k, generator=gen, dtype=F64)
    P, mu = _bt_P(scores), _simplex(gen, k)
    theta = (mu.log() + scores / beta).requires_grad_(True)
    value = population_loss(theta, P, mu, partial(dpo_loss, beta=beta), nu=lambda p: p)
    (g,) = torch.autograd.grad(value, theta)
    assert float(g.norm()) < 1e-14


@pytest.mark.parametrize("tau", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_ipo_minimiser_is_closed_form(tau, seed):
    gen = torch.Generator().manual_seed(100 + seed)
    k = 4
    # rock-paper-scissors on the first three actions plus noise: non-transitive
    base = torch.tensor(
        [[0.5, 0.9, 0.1, 0.6], [0.1, 0.5, 0.9, 0.4], [0.9, 0.1, 0.5, 0.7], [0.4, 0.6, 0.3, 0.5]],
        dtype=F64,
    )
    noise = 0.05 * (torch.rand(k, k, generator=gen, dtype=F64) - 0.5)
    P = base + noise - noise.T
    mu, nu = _simplex(gen, k), _simplex(gen, k)
    pi = _minimise(lambda t: population_loss(t, P, mu, partial(ipo_loss, tau=tau), nu=nu), k)
    expected = mu * torch.exp(P @ nu / tau)
    torch.testing.assert_close(pi, expected / expected.sum(), rtol=0.0, atol=1e-9)


def test_against_optima_module_when_present():
    optima = pytest.importorskip("prefopt_toy.solutions.optima")
    gen = torch.Generator().manual_seed(21)
    k = 3
    scores = torch.randn(k, generator=gen, dtype=F64)
    P_bt, P, mu, nu = _bt_P(scores), _random_P(gen, k), _simplex(gen, k), _simplex(gen, k)
    pi = _minimise(lambda t: population_loss(t, P_bt, mu, partial(dpo_loss, beta=0.5), nu=nu), k)
    torch.testing.assert_close(
        torch.as_tensor(optima.rlhf_optimum(P_bt, mu, 0.5, nu=nu), dtype=F64), pi, rtol=0, atol=1e-7
    )
    pi = _minimise(lambda t: population_loss(t, P, mu, partial(ipo_loss, tau=0.5), nu=nu), k)
    torch.testing.assert_close(
        torch.as_tensor(optima.ipo_optimum(P, mu, 0.5, nu=nu), dtype=F64), pi, rtol=0, atol=1e-8
    )


# ---------------------------------------------------------------------------------------------
# the IPO paper toys (Azar et al., arXiv:2310.12036v2, Sec. 5.3-5.4)

TWO_ACTION_P = [[0.5, 1.0], [0.0, 0.5]]


@pytest.mark.parametrize("tau, expected", [(0.1, 0.993307), (0.5, 0.731059), (1.0, 0.622459)])
def test_two_action_ipo_toy(tau, expected):
    mu = [0.5, 0.5]
    pi = _minimise(
        lambda t: population_loss(t, TWO_ACTION_P, mu, partial(ipo_loss, tau=tau), nu=mu), 2
    )
    assert float(pi[0]) == pytest.approx(expected, abs=1e-6)
    assert float(pi[0]) == pytest.approx(1.0 / (1.0 + math.exp(-0.5 / tau)), abs=1e-10)


@pytest.mark.parametrize("labels", [None, "hard"])
def test_two_action_dpo_has_no_minimiser(labels):
    beta, mu = 0.1, [0.5, 0.5]
    ts = torch.linspace(-10.0, 200.0, 211, dtype=F64)
    values, grads = [], []
    for t in ts:
        theta = torch.stack([t, torch.zeros((), dtype=F64)]).requires_grad_(True)
        v = population_loss(
            theta, TWO_ACTION_P, mu, partial(dpo_loss, beta=beta), nu=mu, labels=labels
        )
        (g,) = torch.autograd.grad(v, theta)
        values.append(float(v.detach()))
        grads.append(float(g[0]))
    values_t = torch.tensor(values, dtype=F64)
    infimum = 0.5 * math.log(2.0)  # the two diagonal draws (h = 0) pay log 2 each w.p. 1/4
    assert bool((values_t.diff() < 0).all())  # strictly decreasing along theta = (t, 0)
    assert all(g < 0 for g in grads)  # the gradient never vanishes
    assert min(values) > infimum  # the infimum is not attained ...
    assert values[-1] - infimum < 1e-8  # ... but approached as pi(y1) -> 1


D1 = [(0, 1), (1, 2), (0, 2)]


@pytest.mark.parametrize(
    "tau, expected",
    [
        (0.1, (0.964370, 0.034403, 0.001227)),
        (0.5, (0.562742, 0.288921, 0.148337)),
        (1.0, (0.448441, 0.321322, 0.230237)),
    ],
)
def test_d1_ipo_minimiser(tau, expected):
    mu = [1 / 3, 1 / 3, 1 / 3]
    pi = _minimise(lambda t: dataset_loss(t, mu, D1, partial(ipo_loss, tau=tau)), 3)
    torch.testing.assert_close(pi, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-6)
    closed = torch.tensor([math.exp(2 / (3 * tau)), math.exp(1 / (3 * tau)), 1.0], dtype=F64)
    torch.testing.assert_close(pi, closed / closed.sum(), rtol=0, atol=1e-9)


def test_dataset_loss_is_mean_of_listed_pairs():
    theta = torch.tensor([0.4, -0.2, 1.1], dtype=F64)
    mu = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    lr = torch.log_softmax(theta, 0) - mu.log()
    pairs = [(0, 1), (2, 1), (0, 1)]
    expected = sum(math.log1p(math.exp(-0.3 * float(lr[w] - lr[l]))) for w, l in pairs) / 3
    assert float(dataset_loss(theta, mu, pairs, partial(dpo_loss, beta=0.3))) == pytest.approx(
        expected, rel=1e-13
    )


# ---------------------------------------------------------------------------------------------
# labels and input handling


def test_hard_labels():
    P = torch.tensor([[0.5, 0.7, 0.5], [0.3, 0.5, 0.2], [0.5, 0.8, 0.5]], dtype=F64)
    L = hard_labels(P)
    torch.testing.assert_close(
        L, torch.tensor([[0.5, 1, 0.5], [0, 0.5, 0], [0.5, 1, 0.5]], dtype=F64)
    )
    torch.testing.assert_close(L + L.T, torch.ones(3, 3, dtype=F64))
    theta = torch.tensor([0.1, 0.2, -0.3], dtype=F64)
    loss = partial(dpo_loss, beta=1.0)
    assert float(population_loss(theta, P, [0.2, 0.3, 0.5], loss, labels="hard")) == pytest.approx(
        float(population_loss(theta, P, [0.2, 0.3, 0.5], loss, labels=L)), rel=1e-15
    )


def test_inputs_not_modified():
    P = np.array([[0.5, 0.8], [0.2, 0.5]])
    mu = np.array([0.25, 0.75])
    theta = np.array([0.0, 1.0])
    population_loss(theta, P, mu, partial(dpo_loss, beta=0.1), nu=mu)
    np.testing.assert_array_equal(P, [[0.5, 0.8], [0.2, 0.5]])
    np.testing.assert_array_equal(mu, [0.25, 0.75])
    np.testing.assert_array_equal(theta, [0.0, 1.0])


P3 = [[0.5, 0.6, 0.3], [0.4, 0.5, 0.8], [0.7, 0.2, 0.5]]
MU3 = [0.2, 0.3, 0.5]
IPO = partial(ipo_loss, tau=0.5)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: population_loss([0.0, 0.0], P3, MU3, IPO), "theta"),
        (lambda: population_loss([0.0] * 3, P3, [0.5, 0.5], IPO), "mu"),
        (lambda: population_loss([0.0] * 3, P3, [0.5, 0.5, 0.0], IPO), "mu"),
        (lambda: population_loss([0.0] * 3, P3, [0.6, 0.6, -0.2], IPO), "mu"),
        (lambda: population_loss([0.0] * 3, [[0.5, 0.6], [0.6, 0.5]], [0.5, 0.5], IPO), "P"),
        (lambda: population_loss([0.0] * 3, P3, MU3, "ipo"), "loss"),
        (lambda: population_loss([0.0] * 3, P3, MU3, lambda h: h.sum()), "loss"),
        (lambda: population_loss([0.0] * 3, P3, MU3, IPO, nu=[0.5, 0.5]), "nu"),
        (lambda: population_loss([0.0] * 3, P3, MU3, IPO, nu=[0.5, 0.5, 0.5]), "nu"),
        (lambda: population_loss([0.0] * 3, P3, MU3, IPO, nu=lambda p: p[:2]), "nu"),
        (lambda: population_loss([0.0] * 3, P3, MU3, IPO, nu=lambda p: 2 * p), "nu"),
        (
            lambda: population_loss(
                [0.0] * 3, P3, MU3, IPO, labels=[[0.5, 1.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]]
            ),
            "labels",
        ),
        (
            lambda: population_loss([0.0] * 3, P3, MU3, IPO, labels=[[0.5, 1.0], [0.0, 0.5]]),
            "labels",
        ),
        (lambda: population_loss([0.0] * 3, P3, MU3, IPO, labels="noisy"), "labels"),
        (lambda: population_loss([0.0, float("nan"), 0.0], P3, MU3, IPO), "theta"),
        (lambda: pair_margins([0.0, 0.0], [1.0, 0.0]), "mu"),
        (lambda: dataset_loss([0.0] * 3, MU3, [(0, 3)], IPO), "pairs"),
        (lambda: dataset_loss([0.0] * 3, MU3, [], IPO), "pairs"),
        (lambda: dataset_loss([0.0] * 3, MU3, [(0.0, 1.0)], IPO), "pairs"),
        (lambda: dataset_loss([0.0] * 3, MU3, [(0, 1)], None), "loss"),
        (lambda: dataset_loss([0.0] * 3, [0.5, 0.5, 0.0], [(0, 1)], IPO), "mu"),
    ],
)
def test_bad_arguments_raise_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()
