"""Tests for prefopt_toy.games.properties: Condorcet winners, transitivity, distance from BT."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt_toy.games.constructors import (
    bradley_terry,
    from_comparisons,
    random_game,
    rock_paper_scissors,
    three_voter_types,
)
from prefopt_toy.games.properties import condorcet_winner, is_transitive
from prefopt_toy.solutions.bt import bt_fit, bt_fit_gap, bt_fit_kl, is_bradley_terry

FAST = settings(max_examples=40, deadline=None)

# Hand-built: action 1 beats 0 (0.6) and 2 (0.8); 0 beats 2 (0.9). Condorcet winner 1, yet not BT:
# logit(0.6) + logit(0.9) = 0.405 + 2.197 != logit(0.8) = 1.386.
CONDORCET = [[0.5, 0.4, 0.9], [0.6, 0.5, 0.8], [0.1, 0.2, 0.5]]


def brute_force_transitive(P: torch.Tensor) -> bool:
    """Weak stochastic transitivity by looping over all triples (an independent oracle)."""
    k = P.shape[0]
    for i, j, l in itertools.product(range(k), repeat=3):
        if P[i, j] >= 0.5 and P[j, l] >= 0.5 and not P[i, l] >= 0.5:
            return False
    return True


# ---------------------------------------------------------------- Condorcet winner


def test_condorcet_winner_hand_built():
    assert condorcet_winner(CONDORCET) == 1
    assert is_transitive(CONDORCET) and not is_bradley_terry(CONDORCET)


def test_condorcet_winner_none_for_cycles_and_ties():
    assert condorcet_winner(rock_paper_scissors(1.0)) is None
    assert condorcet_winner(rock_paper_scissors(0.2)) is None
    assert condorcet_winner(three_voter_types(0.1)) is None
    # A tie with the runner-up disqualifies (strict > 1/2 required).
    assert condorcet_winner([[0.5, 0.5, 0.9], [0.5, 0.5, 0.8], [0.1, 0.2, 0.5]]) is None
    assert condorcet_winner([[0.5]]) == 0


@FAST
@given(st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=7, unique=True))
def test_condorcet_winner_of_bt_game_is_top_score(scores):
    # In a BT game the highest score beats everyone strictly (scores distinct by > 0 here, and
    # sigmoid of a positive gap is > 1/2 unless the gap underflows, which 1e-300 spacing cannot).
    s = np.array(scores)
    if np.min(np.diff(np.sort(s))) < 1e-12:
        return
    assert condorcet_winner(bradley_terry(s)) == int(np.argmax(s))


@FAST
@given(st.integers(1, 6), st.integers(0, 10_000), st.booleans())
def test_condorcet_winner_matches_brute_force(k, seed, transitive):
    # Independent oracle: the definition, looped in plain Python over every other action.
    P = random_game(k, seed, transitive=transitive)
    winners = [y for y in range(k) if all(float(P[y, z]) > 0.5 for z in range(k) if z != y)]
    assert len(winners) <= 1
    assert condorcet_winner(P) == (winners[0] if winners else None)


# ---------------------------------------------------------------- BT or not


@FAST
@given(st.lists(st.floats(-20.0, 20.0), min_size=1, max_size=8))
def test_bradley_terry_matrices_are_bt(scores):
    P = bradley_terry(scores)
    assert is_bradley_terry(P)
    assert is_transitive(P)
    assert bt_fit_gap(P) <= 1e-14
    assert bt_fit_kl(P) <= 1e-14


@pytest.mark.parametrize("seed", range(5))
def test_random_transitive_games_are_bt(seed):
    P = random_game(6, seed, transitive=True, scale=2.0)
    assert is_bradley_terry(P) and is_transitive(P)
    assert bt_fit_gap(P, [0.1, 0.2, 0.3, 0.1, 0.2, 0.1]) <= 1e-14


@pytest.mark.parametrize("seed", range(5))
def test_random_generic_games_are_not_bt(seed):
    P = random_game(5, seed)
    assert not is_bradley_terry(P)
    assert bt_fit_gap(P) > 1e-3
    assert bt_fit_kl(P) > 1e-6


def test_every_two_action_game_with_interior_entries_is_bt():
    for p in (0.01, 0.3, 0.5, 0.77, 0.999):
        P = [[0.5, p], [1 - p, 0.5]]
        assert is_bradley_terry(P)
        assert bt_fit_gap(P) <= 1e-15


def test_deterministic_entries_are_not_bt_with_finite_scores():
    # A BT limit (scores at +-infinity) but no finite scores reproduce exact 0/1 entries.
    assert not is_bradley_terry([[0.5, 1.0], [0.0, 0.5]])
    assert not is_bradley_terry(bradley_terry([0.0, 800.0]))  # sigmoid(-800) underflows to 0
    assert is_bradley_terry([[0.5, 1.0 - 1e-12], [1e-12, 0.5]])
    # 1 - sigmoid(-40) rounds to exactly 1, but its partner 4e-18 keeps the log-odds finite.
    assert is_bradley_terry(bradley_terry([0.0, 40.0]))


def test_cycles_are_not_bt_and_not_transitive():
    for P in (rock_paper_scissors(0.5), three_voter_types(0.1), three_voter_types(-0.3)):
        assert not is_bradley_terry(P)
        assert not is_transitive(P)
    # Rock-paper-scissors at strength 0 is all ties: BT (scores equal) and transitive.
    assert is_bradley_terry(rock_paper_scissors(0.0)) and is_transitive(rock_paper_scissors(0.0))


def test_is_bradley_terry_tolerance():
    P = bradley_terry([0.0, 1.0, -0.5]).clone()
    P[0, 1] += 1e-6
    P[1, 0] -= 1e-6
    assert not is_bradley_terry(P)
    assert is_bradley_terry(P, atol=1e-5)


def test_bt_fit_gap_golden_rock_paper_scissors():
    # By symmetry the fit is r = 0, i.e. every fitted probability is 1/2, so the gap is the largest
    # |P - 1/2| = strength / 2; and the KL is (each ordered pair weighted 1/9; six off-diagonal
    # pairs, each pair of entries contributing KL(Bernoulli(p) || Bernoulli(1/2)) once):
    # 3/9 * (p log 2p + (1 - p) log 2(1 - p)) with p = (1 + strength) / 2.
    strength = 0.6
    p = (1 + strength) / 2
    assert abs(bt_fit_gap(rock_paper_scissors(strength)) - strength / 2) <= 1e-15
    expected_kl = 3 / 9 * (p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p)))
    assert abs(bt_fit_kl(rock_paper_scissors(strength)) - expected_kl) <= 1e-15


def test_bt_fit_kl_is_likelihood_gap_and_minimal():
    P = random_game(4, 11)
    nu = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    kl = bt_fit_kl(P, nu)
    # Any other BT matrix is at least as far in the same weighted KL.
    w = nu[:, None] * nu[None, :]

    def weighted_kl(Q: torch.Tensor) -> float:
        return float((w * P * (P.log() - Q.log())).sum())

    r = bt_fit(P, nu)
    assert abs(weighted_kl(bradley_terry(r)) - kl) <= 1e-15
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        other = r + 0.05 * torch.randn(4, generator=gen, dtype=torch.float64)
        assert weighted_kl(bradley_terry(other)) > kl


def test_bt_fit_gap_and_kl_by_hand_on_a_non_bt_game():
    # Independent oracle: fit the BT scores with scipy on a numpy objective written here, then take
    # the largest entry error and the nu x nu weighted KL by their definitions.
    P = random_game(4, 3)
    nu = np.array([0.1, 0.2, 0.3, 0.4])
    P_np, w = P.numpy(), np.outer(nu, nu)

    def neg_log_likelihood(r: np.ndarray) -> float:
        return float(np.sum(w * P_np * np.logaddexp(0.0, -(r[:, None] - r[None, :]))))

    r = scipy.optimize.minimize(
        neg_log_likelihood, np.zeros(4), method="BFGS", options={"gtol": 1e-12}
    ).x
    Q = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    assert abs(bt_fit_gap(P, nu) - float(np.abs(P_np - Q).max())) <= 1e-6
    assert abs(bt_fit_kl(P, nu) - float(np.sum(w * P_np * np.log(P_np / Q)))) <= 1e-10


def test_bt_fit_gap_propagates_no_finite_maximiser():
    with pytest.raises(ValueError, match="no finite"):
        bt_fit_gap([[0.5, 1.0], [0.0, 0.5]])


# ---------------------------------------------------------------- transitivity


@FAST
@given(st.integers(1, 6), st.integers(0, 10_000))
def test_is_transitive_matches_brute_force(k, seed):
    P = random_game(k, seed)
    assert is_transitive(P) == brute_force_transitive(P)


def test_is_transitive_with_ties_and_from_data():
    # 0 ~ 1 (tie), 1 > 2, but 2 > 0: not transitive through the tie.
    assert not is_transitive([[0.5, 0.5, 0.4], [0.5, 0.5, 0.7], [0.6, 0.3, 0.5]])
    P = from_comparisons([(0, 1), (1, 2), (0, 2)], 3)
    assert is_transitive(P) and condorcet_winner(P) == 0


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "argname"),
    [
        (lambda: condorcet_winner([[0.5, 0.7]]), "P"),
        (lambda: is_transitive([[0.5, 0.7], [0.7, 0.5]]), "P"),
        (lambda: is_bradley_terry([[0.5, 0.9], [0.1, 0.5]], atol=-1.0), "atol"),
        (lambda: is_bradley_terry([[0.5, 1.2], [-0.2, 0.5]]), "P"),
        (lambda: bt_fit_gap([[0.5, 0.9], [0.1, 0.5]], [1.0]), "nu"),
        (lambda: bt_fit_kl([[0.5, 0.9], [0.1, 0.5]], [0.0, 1.0]), "nu"),
    ],
)
def test_bad_inputs(call, argname):
    with pytest.raises(ValueError, match=argname):
        call()
