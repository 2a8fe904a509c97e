"""Certified regularised Nash and IPO-MD fixed points, checked against independent computations.

Oracles: the fixed-point equation re-evaluated in numpy; the best response of the regularised game
found by scipy's SLSQP; the two-action closed form; plain Picard iteration where it contracts;
Calandriello et al. Prop. 5.2 between the two solvers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import logsumexp

from prefopt_toy import (
    geometric_mixture,
    ipo_md_fixed_point,
    ipo_optimum,
    nash_equilibrium,
    random_game,
    regularized_nash,
    rock_paper_scissors,
    three_voter_types,
)


def numpy_map(
    P: np.ndarray, mu: np.ndarray, tau: float, mixture: float, pi: np.ndarray
) -> np.ndarray:
    """T(pi) = mu exp(P s / tau) / Z with s the geometric mixture, written independently in numpy."""
    with np.errstate(divide="ignore"):
        log_pi, log_mu = np.log(pi), np.log(mu)
    z = (1 - mixture) * log_pi + mixture * log_mu if mixture < 1 else log_mu
    s = np.exp(z - logsumexp(z))
    w = log_mu + P @ s / tau
    return np.exp(w - logsumexp(w))


def policy(k: int, seed: int, kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    mu = torch.rand(k, generator=gen, dtype=torch.float64) + 0.01
    if kind == "tiny":  # tiny positive entries: the certification must survive log mu = -690
        mu[::2] = 1e-12
        mu[-1] = 1e-300
    return mu / mu.sum()


@pytest.mark.parametrize("k", [2, 3, 10, 100, 1000])
@pytest.mark.parametrize("tau", [1e-3, 1e-2, 1.0, 1e3])
@pytest.mark.parametrize("kind", ["uniform", "tiny"])
def test_certified_fixed_point(k, tau, kind):
    P = random_game(k, seed=k)
    mu = policy(k, seed=k + 1, kind=kind)
    pi, report = regularized_nash(P, mu, tau, return_report=True)
    assert report.residual <= 1e-12
    # Independent re-evaluation of the defining equation in numpy.
    T = numpy_map(P.numpy(), mu.numpy(), tau, 0.0, pi.numpy())
    assert np.abs(T - pi.numpy()).max() <= 2e-12
    assert pi.dtype == torch.float64 and abs(float(pi.sum()) - 1) < 1e-14 and bool((pi >= 0).all())


@pytest.mark.parametrize("seed", range(6))
def test_best_response_to_itself_in_regularised_game(seed):
    """No policy q gains against pi* in P(q > pi) - tau KL(q || mu) (scipy SLSQP as the oracle)."""
    k, tau = 4, 0.05
    P = random_game(k, seed=seed).numpy()
    mu = policy(k, seed=seed, kind="random").numpy()
    pi = regularized_nash(P, mu, tau).numpy()

    def payoff(q):
        q = np.clip(q, 1e-300, None)
        return q @ P @ pi - tau * np.sum(q * np.log(q / mu))

    best = max(
        -minimize(
            lambda q: -payoff(q),
            x0=start,
            method="SLSQP",
            bounds=[(0, 1)] * k,
            constraints=[{"type": "eq", "fun": lambda q: q.sum() - 1}],
            options={"ftol": 1e-15, "maxiter": 500},
        ).fun
        for start in (np.full(k, 1 / k), mu, np.eye(k)[seed % k] * 0.9 + 0.1 / k)
    )
    assert best <= payoff(pi) + 1e-9
    # ...and pi itself attains that value (the best response is unique: strongly concave).
    assert payoff(pi) >= best - 1e-7


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("tau", [1e-3, 0.1, 10.0])
def test_two_actions_closed_form(p, tau):
    """For K = 2, (P pi)_0 - (P pi)_1 = p - 1/2 for every pi, so pi*(0) = sigmoid(logit mu0 + (p - 1/2)/tau)."""
    mu = np.array([0.3, 0.7])
    P = np.array([[0.5, p], [1 - p, 0.5]])
    expected = 1 / (1 + math.exp(-(math.log(0.3 / 0.7) + (p - 0.5) / tau)))
    pi = regularized_nash(P, mu, tau)
    assert float(pi[0]) == pytest.approx(expected, abs=1e-14)


def test_rock_paper_scissors_uniform_reference_gives_uniform():
    pi = regularized_nash(rock_paper_scissors(0.7), np.full(3, 1 / 3), 0.01)
    assert torch.allclose(pi, torch.full((3,), 1 / 3, dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_picard_iteration_agrees_where_it_contracts(seed):
    """For tau >= 2 the map is a contraction (Lipschitz <= 1/(2 tau) in l1): plain iteration is a second algorithm."""
    k, tau = 6, 2.0
    P = random_game(k, seed=seed).numpy()
    mu = policy(k, seed=seed, kind="random").numpy()
    x = mu.copy()
    for _ in range(200):
        x = numpy_map(P, mu, tau, 0.0, x)
    assert np.abs(regularized_nash(P, mu, tau).numpy() - x).max() < 1e-14


def test_limits_in_tau():
    P = three_voter_types(0.1)
    mu = np.full(3, 1 / 3)
    # tau -> infinity: the reference policy.
    assert float((regularized_nash(P, mu, 1e3) - torch.tensor(mu)).abs().max()) < 1e-3
    # tau -> 0: the unregularised Nash, proportional to (alpha3, alpha2, alpha1) (Munos et al. Sec. 3.2).
    alpha = np.array([1 / 3 + 0.05, 1 / 3 + 0.05, 1 / 3 - 0.1])
    assert np.abs(regularized_nash(P, mu, 1e-4).numpy() - alpha).max() < 1e-3
    assert np.abs(nash_equilibrium(P).numpy() - alpha).max() < 1e-12


def test_condorcet_winner_is_the_small_tau_limit():
    P = np.array([[0.5, 0.55, 0.55], [0.45, 0.5, 0.95], [0.45, 0.05, 0.5]])
    pi = regularized_nash(P, np.full(3, 1 / 3), 1e-3)
    assert float(pi[0]) > 1 - 1e-12


def test_zero_reference_mass_is_excluded_and_subgame_solved():
    P = random_game(5, seed=3)
    mu = np.array([0.2, 0.0, 0.3, 0.5, 0.0])
    pi = regularized_nash(P, mu, 0.05)
    assert float(pi[1]) == 0.0 and float(pi[4]) == 0.0
    keep = [0, 2, 3]
    sub = regularized_nash(P[keep][:, keep], mu[keep], 0.05)
    assert torch.allclose(pi[keep], sub, atol=1e-15)


# --- IPO-MD ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [3, 10, 200])
@pytest.mark.parametrize("mixture", [0.125, 0.5, 0.9])
@pytest.mark.parametrize("tau", [1e-3, 0.1, 10.0])
def test_ipo_md_certified_and_prop_5_2(k, mixture, tau):
    """Calandriello et al. (arXiv:2403.08635v1) Prop. 5.2: the mixture at the IPO-MD fixed point is
    the regularised Nash at tau / (1 - mixture). The two solvers solve different equations."""
    P = random_game(k, seed=7 * k)
    mu = policy(k, seed=k, kind="random")
    pi, report = ipo_md_fixed_point(P, mu, tau, mixture, return_report=True)
    assert report.residual <= 1e-12
    T = numpy_map(P.numpy(), mu.numpy(), tau, mixture, pi.numpy())
    assert np.abs(T - pi.numpy()).max() <= 2e-12
    mix = geometric_mixture(pi, mu, mixture)
    nash = regularized_nash(P, mu, tau / (1 - mixture))
    assert float((mix - nash).abs().max()) < 1e-10


def test_ipo_md_endpoints():
    P = random_game(5, seed=11)
    mu = policy(5, seed=2, kind="random")
    assert torch.allclose(
        ipo_md_fixed_point(P, mu, 0.1, 0.0), regularized_nash(P, mu, 0.1), atol=1e-15
    )
    # mixture = 1 samples from mu: offline IPO with nu = mu (a closed form).
    assert torch.allclose(ipo_md_fixed_point(P, mu, 0.1, 1.0), ipo_optimum(P, mu, 0.1), atol=1e-15)


def test_report_fields():
    _, report = ipo_md_fixed_point(
        random_game(4, seed=0), np.full(4, 0.25), 0.5, 0.3, return_report=True
    )
    assert report.method in {"newton", "newton+continuation"}
    assert report.iterations >= 1 and report.stages >= 1 and 0 <= report.gap < 1e-12


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"tau": 0.0}, "tau"),
        ({"tau": -1.0}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"mu": [0.5, 0.6, 0.1]}, "mu"),
        ({"mu": [0.5, 0.5]}, "mu"),
        ({"P": [[0.5, 0.7], [0.7, 0.5]]}, "P"),
        ({"tol": 0.0}, "tol"),
    ],
)
def test_bad_input(kwargs, name):
    args = {"P": rock_paper_scissors(1.0), "mu": [1 / 3] * 3, "tau": 0.1} | kwargs
    with pytest.raises(ValueError, match=name):
        regularized_nash(**args)


@pytest.mark.parametrize("mixture", [-0.1, 1.5, float("inf")])
def test_bad_mixture(mixture):
    with pytest.raises(ValueError, match="mixture"):
        ipo_md_fixed_point(rock_paper_scissors(1.0), [1 / 3] * 3, 0.1, mixture)
