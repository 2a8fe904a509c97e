"""Closed-form optima (RLHF/DPO and IPO) against direct numerical maximisation and the IPO paper's toys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from prefopt_toy import (
    ALGORITHMS,
    FIXED_POINTS,
    bradley_terry,
    ipo_optimum,
    is_bradley_terry,
    random_game,
    rlhf_optimum,
    rock_paper_scissors,
    three_voter_types,
)
from prefopt_toy.games.named import named_game


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


# --------------------------------------------------------------- one convention: pairs from mu
#
# Oracle: the population DPO loss of pairs drawn from nu x nu (Azar et al., arXiv:2310.12036v2,
# Eq. (5); Rafailov et al., arXiv:2305.18290v3, Eq. (7)), written here in numpy on the log-ratios
# a = log(pi / mu) and minimised with scipy. The loss depends on a only through differences and is
# convex in a, so BFGS reaches its minimiser to ~1e-9; it never calls bt_fit or rlhf_optimum.


def dpo_population_loss_and_grad(a, P, nu, beta):
    """2 sum_{y,y'} nu_y nu_y' P[y, y'] softplus(-beta (a_y - a_y')) and its gradient in a."""
    w = np.outer(nu, nu) * P
    d = a[:, None] - a[None, :]
    loss = 2.0 * np.sum(w * np.logaddexp(0.0, -beta * d))
    s = 1.0 / (1.0 + np.exp(beta * d))  # sigmoid(-beta d)
    g = w * s  # d loss / d a_y gets -2 beta g[y, y'], d loss / d a_y' gets +2 beta g[y, y']
    grad = 2.0 * beta * (g.sum(axis=0) - g.sum(axis=1))
    return loss, grad


def dpo_minimiser(P, mu, beta, nu):
    """The policy minimising the population DPO loss under nu x nu, 0 where mu = 0 (scipy BFGS)."""
    P, mu, nu = (np.asarray(x, dtype=float) for x in (P, mu, nu))
    res = minimize(
        dpo_population_loss_and_grad,
        np.zeros(len(mu)),
        args=(P, nu, beta),
        jac=True,
        method="BFGS",
        options={"gtol": 1e-13, "maxiter": 10_000},
    )
    # pi = mu exp(a) / Z; the log-ratio of an action with mu = 0 is irrelevant (pi = 0 there).
    logits = np.where(mu > 0, np.log(np.where(mu > 0, mu, 1.0)) + res.x, -np.inf)
    return np.exp(logits - np.logaddexp.reduce(logits[mu > 0]))


def _games_with_skewed_mu():
    gen = np.random.default_rng(7)
    return {
        # rock-paper-scissors with the named game's skewed mu: the BT fit under mu x mu is not 0.
        "rock_paper_scissors": (rock_paper_scissors(0.8), [0.6, 0.3, 0.1]),
        "three_voter_types": (three_voter_types(0.1), [0.5, 0.3, 0.2]),
        "condorcet_winner": (named_game("condorcet_winner").preference_matrix(), [0.2, 0.2, 0.6]),
        "random_4": (random_game(4, seed=11), gen.dirichlet(np.ones(4))),
        "random_5": (random_game(5, seed=3), gen.dirichlet(np.ones(5))),
    }


GAMES = _games_with_skewed_mu()


@pytest.mark.parametrize("name", list(GAMES))
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_rlhf_optimum_default_is_the_population_dpo_minimiser_under_mu_x_mu(name, beta):
    P, mu = GAMES[name]
    assert not is_bradley_terry(P)  # nu matters only on non-BT games
    expected = dpo_minimiser(P, mu, beta, nu=mu)
    got = rlhf_optimum(P, mu, beta).numpy()
    assert np.abs(got - expected).max() < 1e-7
    # ... the same as naming nu = mu, and not the fit under uniform pairs (nu matters here).
    assert torch.equal(rlhf_optimum(P, mu, beta), rlhf_optimum(P, mu, beta, nu=mu))
    k = len(mu)
    uniform = dpo_minimiser(P, mu, beta, nu=np.full(k, 1.0 / k))
    assert np.abs(rlhf_optimum(P, mu, beta, nu=[1.0 / k] * k).numpy() - uniform).max() < 1e-7
    assert np.abs(uniform - expected).max() > 1e-3


@pytest.mark.parametrize("algorithm", ["dpo", "rlhf"])
def test_rlhf_optimum_default_is_the_fixed_point_of_the_default_offline_dynamics(algorithm):
    """``FIXED_POINTS`` names rlhf_optimum for dpo and rlhf, and the runs with their default pairs
    land on ``rlhf_optimum(P, mu, beta)`` with its default nu (and on the scipy minimiser)."""
    assert FIXED_POINTS[algorithm] == "rlhf_optimum"
    beta = 0.5
    for name in ("rock_paper_scissors", "three_voter_types", "condorcet_winner"):
        P, mu = GAMES[name]
        traj = ALGORITHMS[algorithm](P, mu, steps=1500, beta=beta)
        default = rlhf_optimum(P, mu, beta)
        # (the run's mu and nu are renormalised copies: equal up to round-off)
        torch.testing.assert_close(
            traj.target(FIXED_POINTS[algorithm]), default, rtol=0, atol=1e-14
        )
        assert float((traj.final - default).abs().max()) < 1e-9, name
        assert np.abs(traj.final.numpy() - dpo_minimiser(P, mu, beta, nu=mu)).max() < 1e-7


def test_rock_paper_scissors_under_pairs_from_mu_goes_to_paper_under_uniform_pairs_stays_at_mu():
    """The named game's contrast: pairs from mu = (0.6, 0.3, 0.1) favour paper (it beats rock, mu's
    favourite); uniform pairs give every action the same BT reward, so the optimum is mu itself."""
    P, mu = GAMES["rock_paper_scissors"]
    for beta in (1.0, 0.1, 0.01):
        assert int(rlhf_optimum(P, mu, beta).argmax()) == 1
        np.testing.assert_allclose(
            rlhf_optimum(P, mu, beta, nu=[1 / 3] * 3).numpy(), mu, atol=1e-15
        )
    assert float(rlhf_optimum(P, mu, 0.1)[1]) > 0.9999  # the paper vertex as beta -> 0


def test_mu_with_zeros_is_fitted_on_its_support():
    """Pairs from mu never involve an action with mu = 0: the reward is fitted on supp(mu), and
    the optimum is the DPO minimiser over supp(mu) (scipy on the sub-game), 0 elsewhere."""
    P = random_game(5, seed=4)
    mu = np.array([0.4, 0.0, 0.35, 0.25, 0.0])
    support = [0, 2, 3]
    for beta in (0.2, 2.0):
        got = rlhf_optimum(P, mu, beta).numpy()
        assert got[1] == 0.0 and got[4] == 0.0
        sub = P.numpy()[np.ix_(support, support)]
        expected = dpo_minimiser(sub, mu[support], beta, nu=mu[support])
        assert np.abs(got[support] - expected).max() < 1e-7
        # An explicit nu that also compares actions outside supp(mu) is allowed (a different fit).
        nu = np.full(5, 0.2)
        expected_nu = dpo_minimiser(P.numpy(), mu, beta, nu=nu)
        assert np.abs(rlhf_optimum(P, mu, beta, nu=nu).numpy() - expected_nu).max() < 1e-7


def test_explicit_nu_that_leaves_an_action_of_mu_uncompared_is_refused():
    P = random_game(3, seed=0)
    with pytest.raises(ValueError, match=r"nu must be strictly positive.*actions \{0\}"):
        rlhf_optimum(P, [0.5, 0.5, 0.0], 1.0, nu=[0.0, 0.5, 0.5])
    # zeros of nu outside supp(mu) are fine
    pi = rlhf_optimum(P, [0.5, 0.5, 0.0], 1.0, nu=[0.5, 0.5, 0.0])
    torch.testing.assert_close(pi, rlhf_optimum(P, [0.5, 0.5, 0.0], 1.0), rtol=0, atol=0)


def test_support_fit_without_finite_maximiser_names_the_full_game_actions():
    """The full game is strongly connected (2 -> 1 -> 0 -> 2), the sub-game {0, 2} is not: 0 always
    beats 2. The error names the actions by their index in P, not in the sub-game."""
    P = [[0.5, 0.5, 1.0], [0.5, 0.5, 0.5], [0.0, 0.5, 0.5]]
    rlhf_optimum(P, [1 / 3] * 3, 1.0)  # finite with full support
    with pytest.raises(
        ValueError, match=r"actions \{0\} are never beaten by actions \{2\}.*\(0, 2\)"
    ):
        rlhf_optimum(P, [0.5, 0.0, 0.5], 1.0)


@pytest.mark.parametrize("tiny", [1e-300, 5e-324])
def test_mu_with_subnormal_entries_under_the_default_pairs(tiny):
    """nu = mu with an entry so small that nu_y nu_y' underflows to 0 (subnormal): the fit still
    converges. On a BT game the reward is the score vector whatever nu is (closed form); on a
    random game the other actions' optimum is that of the game without the tiny action, up to
    O(tiny) (scipy on the sub-game), and the tiny action keeps probability ~0."""
    s = np.array([0.3, -1.0, 0.8, 0.0])
    mu = np.array([0.4, tiny, 0.35, 0.25])
    w = mu * np.exp(s / 0.5)
    np.testing.assert_allclose(
        rlhf_optimum(bradley_terry(s), mu, 0.5).numpy(), w / w.sum(), rtol=1e-12, atol=1e-300
    )
    P = random_game(4, seed=9)
    got = rlhf_optimum(P, mu, 0.5).numpy()
    keep = [0, 2, 3]
    sub = dpo_minimiser(P.numpy()[np.ix_(keep, keep)], mu[keep], 0.5, nu=mu[keep])
    assert np.abs(got[keep] - sub).max() < 1e-7 and got[1] < 1e-290
