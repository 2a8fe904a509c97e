"""Tests for prefopt_toy.solutions.bt: BT games are fitted exactly, stationarity, a scipy oracle, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt_toy.games.constructors import (
    bradley_terry,
    random_game,
    rock_paper_scissors,
    three_voter_types,
)
from prefopt_toy.policies import win_rates
from prefopt_toy.solutions.bt import _newton, _validate, bt_fit, bt_log_likelihood

FAST = settings(max_examples=40, deadline=None)


@st.composite
def scores_and_nu(draw, max_score=10.0):
    k = draw(st.integers(2, 6))
    scores = draw(st.lists(st.floats(-max_score, max_score), min_size=k, max_size=k))
    weights = draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k))
    nu = np.array(weights) / sum(weights)
    return np.array(scores), nu


def stationarity(P: torch.Tensor, r: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """sum_{y'} nu_y nu_y' (P[y, y'] - sigmoid(r_y - r_y')) for each y (Azar et al. Eq. 2)."""
    return nu * ((P - torch.sigmoid(r[:, None] - r[None, :])) @ nu)


def random_policy(k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(k, generator=gen, dtype=torch.float64), 0)


def numpy_neg_log_likelihood(r: np.ndarray, P: np.ndarray, nu: np.ndarray) -> float:
    """The BT objective written again, independently, in numpy: -sum nu nu' P log sigma(r - r')."""
    gap = r[:, None] - r[None, :]
    log_sigmoid = -np.logaddexp(0.0, -gap)
    return -float(np.sum(np.outer(nu, nu) * P * log_sigmoid))


def numpy_neg_gradient(r: np.ndarray, P: np.ndarray, nu: np.ndarray) -> np.ndarray:
    # d/dr_y of -sum_{a,b} w_ab P_ab log sigma(r_a - r_b), term by term:
    # -sum_b w_yb P_yb (1 - sigma(r_y - r_b)) + sum_a w_ay P_ay (1 - sigma(r_a - r_y)).
    w = np.outer(nu, nu)
    one_minus = 1.0 / (1.0 + np.exp(r[:, None] - r[None, :]))  # 1 - sigma(r_a - r_b)
    term = w * P * one_minus
    return -term.sum(axis=1) + term.sum(axis=0)


# ---------------------------------------------------------------- oracle: BT games fitted exactly


@FAST
@given(scores_and_nu())
def test_bt_game_is_fitted_exactly_for_any_nu(case):
    scores, nu = case
    r = bt_fit(bradley_terry(scores), nu)
    assert r.dtype == torch.float64 and r.shape == (len(scores),)
    np.testing.assert_allclose(r.numpy(), scores - scores.mean(), rtol=0, atol=1e-10)
    assert abs(float(r.mean())) <= 1e-12


@FAST
@given(scores_and_nu(max_score=14.0))
def test_newton_from_zero_recovers_bt_scores(case):
    # The public function starts from the log-odds average, already exact on a BT game; start
    # Newton from r = 0 instead, so the damped iteration itself is what gets tested.
    scores, nu = case
    P, nu_t = _validate(bradley_terry(scores), nu)
    info = _newton(P, nu_t, torch.zeros(len(scores), dtype=torch.float64))
    assert info.residual <= 1e-13
    # A gradient residual g leaves an error ~ g / curvature in each reward; with score gaps up to 28
    # an action's curvature nu_i sum_j nu_j P_ij P_ji can be ~1e-7 (found by hypothesis: gap 19,
    # error 1.03e-10 at residual 1.9e-16), so the tolerance scales with the conditioning.
    Pn, w = P.numpy(), nu_t.numpy()
    curvature = w * ((Pn * Pn.T) @ w - w * 0.25)  # the self-pair term dropped
    atol = 1e-10 + 10 * info.residual / curvature.min()
    np.testing.assert_allclose(info.rewards.numpy(), scores - scores.mean(), rtol=0, atol=atol)


def test_golden_two_actions():
    # By hand: P[1, 0] = 3/4 = sigmoid(log 3), so r = (-log 3 / 2, log 3 / 2).
    r = bt_fit([[0.5, 0.25], [0.75, 0.5]])
    half = math.log(3.0) / 2.0
    assert abs(float(r[0]) + half) <= 1e-14 and abs(float(r[1]) - half) <= 1e-14


def test_near_deterministic_bt_game_is_exact_and_finite():
    # Scores 27.6 apart: off-diagonal entries down to ~1e-12 and ~1e-24.
    scores = np.array([0.0, 27.6, 55.2])
    for nu in (None, [0.7, 0.2, 0.1]):
        r = bt_fit(bradley_terry(scores), nu)
        assert bool(torch.isfinite(r).all())
        np.testing.assert_allclose(r.numpy(), scores - scores.mean(), rtol=0, atol=1e-10)
    # And from r = 0, through the damped Newton iteration and its step doubling.
    P, nu_t = _validate([[0.5, 1.0 - 1e-12], [1e-12, 0.5]], None)
    info = _newton(P, nu_t, torch.zeros(2, dtype=torch.float64))
    gap = math.log((1.0 - 1e-12) / 1e-12)
    assert abs(float(info.rewards[0] - info.rewards[1]) - gap) <= 1e-9


def test_extreme_but_finite_gap_is_reached():
    # P[1, 0] = 1e-300: the maximiser has r_0 - r_1 = log(1e300) ~ 690.8 (P[0, 1] rounds to 1).
    P, nu_t = _validate([[0.5, 1.0], [1e-300, 0.5]], None)
    info = _newton(P, nu_t, torch.zeros(2, dtype=torch.float64))
    assert abs(float(info.rewards[0] - info.rewards[1]) - 300 * math.log(10.0)) <= 1e-9
    assert torch.allclose(bt_fit([[0.5, 1.0], [1e-300, 0.5]]), info.rewards, rtol=0, atol=1e-9)


def test_beyond_float64_raises_runtime_error():
    # A 1e-310 entry needs a reward gap of ~714, where sigmoid underflows: no silent garbage.
    with pytest.raises(RuntimeError, match="deterministic"):
        bt_fit([[0.5, 1.0], [1e-310, 0.5]])


# ---------------------------------------------------------------- non-BT games


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [3, 5, 8])
def test_stationarity_and_scipy_oracle_on_generic_games(k, seed):
    P = random_game(k, seed)
    nu = random_policy(k, 100 + seed)
    r = bt_fit(P, nu)
    assert float(stationarity(P, r, nu).abs().max()) <= 1e-14
    # Independent oracle: BFGS on the numpy objective, then centred.
    P_np, nu_np = P.numpy(), nu.numpy()
    opt = scipy.optimize.minimize(
        numpy_neg_log_likelihood,
        np.zeros(k),
        args=(P_np, nu_np),
        jac=numpy_neg_gradient,
        method="BFGS",
        options={"gtol": 1e-12, "maxiter": 10_000},
    )
    np.testing.assert_allclose(r.numpy(), opt.x - opt.x.mean(), rtol=0, atol=1e-6)
    # bt_fit really is the maximiser: the objectives agree, and nudging r only lowers it.
    best = bt_log_likelihood(P, r, nu)
    assert abs(best + numpy_neg_log_likelihood(r.numpy(), P_np, nu_np)) <= 1e-14
    for y in range(k):
        nudge = 1e-3 * torch.eye(k, dtype=torch.float64)[y]
        assert bt_log_likelihood(P, r + nudge, nu) < best


@FAST
@given(st.integers(2, 7), st.integers(0, 10_000))
def test_uniform_nu_ranks_like_borda(k, seed):
    # With uniform nu, stationarity says the BT model reproduces each action's win rate against the
    # uniform policy, and a BT model's win rate is increasing in the reward: same ranking as Borda.
    P = random_game(k, seed)
    r = bt_fit(P)
    borda = win_rates(P)
    for i in range(k):
        for j in range(k):
            if float(borda[i] - borda[j]) > 1e-12:
                assert float(r[i]) > float(r[j])
    # ... and the fitted model's win rates against uniform match P's exactly.
    assert float((win_rates(bradley_terry(r)) - borda).abs().max()) <= 1e-13


@FAST
@given(st.integers(2, 6), st.integers(0, 10_000), st.data())
def test_permutation_equivariance(k, seed, data):
    P = random_game(k, seed)
    nu = random_policy(k, seed)
    perm = torch.tensor(data.draw(st.permutations(list(range(k)))))
    r = bt_fit(P, nu)
    r_perm = bt_fit(P[perm][:, perm], nu[perm])
    assert float((r_perm - r[perm]).abs().max()) <= 1e-12


def test_three_voter_types_bt_ranking_jumps_at_zero():
    # Munos et al. arXiv:2312.00886v4 Sec. 3.2: BT (so RLHF as tau -> 0) puts action 0 (the paper's
    # y1) first for epsilon > 0, while the Nash equilibrium stays mixed; for epsilon < 0 action 1.
    assert int(bt_fit(three_voter_types(0.1)).argmax()) == 0
    assert int(bt_fit(three_voter_types(-0.1)).argmax()) == 1
    assert float(bt_fit(three_voter_types(0.0)).abs().max()) <= 1e-15


def test_fit_depends_on_nu_for_non_bt_games():
    P = three_voter_types(0.1)
    r_uniform = bt_fit(P)
    r_skewed = bt_fit(P, [0.6, 0.3, 0.1])
    assert float((r_uniform - r_skewed).abs().max()) > 1e-2


def test_deterministic_cycle_has_a_finite_fit():
    # Deterministic rock-paper-scissors is strongly connected (each action beats another), so the
    # Ford condition holds; by symmetry the fit is all zeros.
    assert float(bt_fit(rock_paper_scissors(1.0)).abs().max()) <= 1e-15


def test_single_action_and_medium_size():
    assert torch.equal(bt_fit([[0.5]]), torch.zeros(1, dtype=torch.float64))
    P = random_game(300, 5)
    r = bt_fit(P)
    nu = torch.full((300,), 1.0 / 300, dtype=torch.float64)
    assert float(stationarity(P, r, nu).abs().max() / nu.max()) <= 1e-13


def test_bt_log_likelihood_at_zero_and_purity():
    P_np = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.6], [0.8, 0.4, 0.5]])
    before = P_np.copy()
    assert abs(bt_log_likelihood(P_np, [0.0, 0.0, 0.0]) + math.log(2.0) / 2.0) <= 1e-15
    bt_fit(P_np, np.array([0.2, 0.3, 0.5]))
    assert np.array_equal(P_np, before)


# ---------------------------------------------------------------- errors


def test_no_finite_maximiser_two_actions():
    with pytest.raises(ValueError, match="no finite") as err:
        bt_fit([[0.5, 1.0], [0.0, 0.5]])
    message = str(err.value)
    assert "actions {0} are never beaten by actions {1}" in message
    assert "P[1, 0] = 0" in message and "Pairs responsible: (0, 1)" in message


def test_no_finite_maximiser_dominant_action():
    P = [[0.5, 1.0, 1.0], [0.0, 0.5, 0.3], [0.0, 0.7, 0.5]]
    with pytest.raises(ValueError, match="P") as err:
        bt_fit(P, [0.2, 0.3, 0.5])
    message = str(err.value)
    assert "actions {0} are never beaten by actions {1, 2}" in message
    assert "P[1, 0] = P[2, 0] = 0" in message
    assert "Pairs responsible: (0, 1), (0, 2)" in message


def test_no_finite_maximiser_dominated_action_and_class_chain():
    # Action 2 loses every comparison with certainty: the top class is {0, 1}.
    P = [[0.5, 0.4, 1.0], [0.6, 0.5, 1.0], [0.0, 0.0, 0.5]]
    expected = r"actions \{0, 1\} are never beaten by actions \{2\}"
    with pytest.raises(ValueError, match=expected) as err:
        bt_fit(P)
    assert "Pairs responsible: (0, 2), (1, 2)" in str(err.value)
    # A deterministic total order on 3 actions splits into 3 classes, listed best first.
    with pytest.raises(ValueError, match=r"3 classes.*\{2\} > \{0\} > \{1\}"):
        bt_fit(bradley_terry([0.0, -1000.0, 1000.0]))


@pytest.mark.parametrize(
    ("P", "nu", "argname"),
    [
        ([[0.5, 0.9], [0.1, 0.5]], [0.5, 0.3, 0.2], "nu"),  # wrong length
        ([[0.5, 0.9], [0.1, 0.5]], [0.5, 0.6], "nu"),  # does not sum to 1
        ([[0.5, 0.9], [0.1, 0.5]], [1.5, -0.5], "nu"),  # negative
        ([[0.5, 0.9], [0.1, 0.5]], [1.0, 0.0], r"nu must be strictly positive.*\{1\}"),
        ([[0.5, 0.9], [0.2, 0.5]], None, "P"),  # not complementary
        ([[0.5, 0.9, 0.1], [0.1, 0.5, 0.5]], None, "P"),  # not square
        ([[0.5, float("nan")], [0.1, 0.5]], None, "P"),
    ],
)
def test_bad_inputs(P, nu, argname):
    with pytest.raises(ValueError, match=argname):
        bt_fit(P, nu)


def test_bt_log_likelihood_bad_rewards():
    with pytest.raises(ValueError, match="rewards"):
        bt_log_likelihood([[0.5, 0.9], [0.1, 0.5]], [0.0, 0.0, 0.0])


def test_inputs_with_autograd_history_are_accepted():
    # bt_fit is a solver, not a differentiable op: a P built from scores that require grad is
    # detached, not rejected (and warns nothing; warnings are errors in this suite).
    s = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64, requires_grad=True)
    r = bt_fit(bradley_terry(s))
    assert not r.requires_grad
    assert float((r - (s.detach() - s.detach().mean())).abs().max()) <= 1e-12


@pytest.mark.parametrize("x", [3.9e-3, 1e-3, 1e-6, 1e-12, 1e-200])
def test_near_deterministic_strongly_connected_cycle_is_fitted(x):
    # 0 ties 1 and 2 in aggregate; 2 beats 1 with probability 1 - x. The win-rate equations give
    # r = (0, -a, a) with x = sigmoid(-a) + sigmoid(-2a); the raw Newton step from the log-odds
    # start was ~1e98 long here (found by the property suite), now capped by a trust radius.
    import mpmath

    mpmath.mp.dps = 60
    a = mpmath.findroot(
        lambda t: 1 / (1 + mpmath.exp(t)) + 1 / (1 + mpmath.exp(2 * t)) - mpmath.mpf(x),
        -mpmath.log(mpmath.mpf(x)),
    )
    r = bt_fit([[0.5, 1.0, 0.0], [0.0, 0.5, x], [1.0, 1.0 - x, 0.5]])
    assert torch.allclose(
        r, torch.tensor([0.0, -float(a), float(a)], dtype=torch.float64), rtol=1e-12, atol=1e-9
    )


def test_a_pair_below_round_off_of_the_others_is_still_resolved():
    # P[1, 2] = 2.3e-18 is far below the round-off of action 1's other terms, yet it alone pins
    # r_2: sigmoid(-(r2 - r0)) + sigmoid(-(r2 - r1)) = 2.3e-18 sigmoid(r2 - r1), and r1 - r0 = -log 9.
    # Pinning the weakly tied action in the Newton system made it singular; checked in mpmath.
    import mpmath

    mpmath.mp.dps = 60
    P = [[0.5, 0.9, 0.0], [0.1, 0.5, 2.3e-18], [1.0, 1.0, 0.5]]
    r = bt_fit(P)
    d10 = -mpmath.log(9)
    sig = lambda t: 1 / (1 + mpmath.exp(-t))  # noqa: E731
    d20 = mpmath.findroot(
        lambda d: sig(-d) + sig(-(d - d10)) - mpmath.mpf(2.3e-18) * sig(d - d10), 40
    )
    assert abs(float(r[1] - r[0]) - float(d10)) <= 1e-9
    assert abs(float(r[2] - r[0]) - float(d20)) <= 1e-9
