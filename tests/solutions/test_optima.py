"""Closed-form optima (RLHF/DPO and IPO) against direct numerical maximisation and the IPO paper's toys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from prefopt_toy import bradley_terry, ipo_optimum, random_game, rlhf_optimum


def maximise_on_simplex(objective, k: int) -> np.ndarray:
    """Maximise a smooth concave function of a policy through unconstrained logits (BFGS)."""
    res = minimize(
        lambda th: -objective(np.exp(th - np.logaddexp.reduce(th))),
        np.zeros(k),
        method="BFGS",
        options={"gtol": 1e-12},
    )
    return np.exp(res.x - np.logaddexp.reduce(res.x))


@pytest.mark.parametrize("seed", range(4))
def test_ipo_optimum_maximises_regularised_win_rate(seed):
    """Azar et al. (arXiv:2310.12036v2) Eq. (8): argmax P(pi > nu) - tau KL(pi || mu)."""
    k, tau = 4, 0.3
    P = random_game(k, seed=seed).numpy()
    gen = np.random.default_rng(seed)
    mu, nu = gen.dirichlet(np.ones(k)), gen.dirichlet(np.ones(k))
    expected = maximise_on_simplex(lambda pi: pi @ P @ nu - tau * np.sum(pi * np.log(pi / mu)), k)
    assert np.abs(ipo_optimum(P, mu, tau, nu).numpy() - expected).max() < 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_rlhf_optimum_on_bt_game_is_gibbs_of_the_scores_for_any_nu(seed):
    """On a BT game the fitted reward is the score vector whatever nu is: pi = mu exp(s / beta) / Z."""
    gen = np.random.default_rng(seed)
    k, beta = 5, 0.7
    s = gen.normal(size=k)
    mu, nu = gen.dirichlet(np.ones(k)), gen.dirichlet(np.ones(k))
    w = mu * np.exp(s / beta)
    assert np.abs(rlhf_optimum(bradley_terry(s), mu, beta, nu).numpy() - w / w.sum()).max() < 1e-12
    # ... which is also the maximiser of E_pi[s] - beta KL(pi || mu) (a second computation).
    direct = maximise_on_simplex(lambda pi: pi @ s - beta * np.sum(pi * np.log(pi / mu)), k)
    assert np.abs(w / w.sum() - direct).max() < 1e-6


@pytest.mark.parametrize(
    "tau, expected", [(0.1, 0.993307), (0.5, 0.731059), (1.0, 0.622459), (10.0, 0.512497)]
)
def test_ipo_paper_two_action_toy(tau, expected):
    """Azar et al. Sec. 5.3.1: P[y1, y2] = 1, uniform mu = nu: IPO keeps pi(y1) = sigmoid(0.5 / tau)."""
    pi = ipo_optimum([[0.5, 1.0], [0.0, 0.5]], [0.5, 0.5], tau)
    assert float(pi[0]) == pytest.approx(1 / (1 + math.exp(-0.5 / tau)), abs=1e-15)
    assert float(pi[0]) == pytest.approx(expected, abs=5e-7)  # sigmoid(0.5 / tau) to 6 decimals


def test_dpo_on_the_deterministic_toy_has_no_finite_optimum():
    """...while the BT reward (hence the DPO/RLHF optimum) diverges: pi(y1) -> 1 as P[y1, y2] -> 1."""
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        rlhf_optimum([[0.5, 1.0], [0.0, 0.5]], [0.5, 0.5], 0.5)
    p1 = [
        float(rlhf_optimum([[0.5, 1 - e], [e, 0.5]], [0.5, 0.5], 0.5)[0])
        for e in (1e-2, 1e-4, 1e-8)
    ]
    assert p1[0] < p1[1] < p1[2] and p1[2] > 1 - 1e-15


def test_tiny_strength_and_tiny_mu_stay_finite():
    P = random_game(6, seed=1)
    mu = np.array([1e-300, 0.2, 0.2, 0.2, 0.2, 0.2 - 1e-300])
    for pi in (ipo_optimum(P, mu, 1e-6), rlhf_optimum(P, mu, 1e-6)):
        assert bool(torch.isfinite(pi).all()) and abs(float(pi.sum()) - 1) < 1e-14


def test_zero_mu_entries_stay_zero():
    pi = ipo_optimum(random_game(3, seed=0), [0.0, 0.5, 0.5], 0.01)
    assert float(pi[0]) == 0.0
