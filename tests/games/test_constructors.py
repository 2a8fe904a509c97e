"""Tests for prefopt_toy.games.constructors: invariants of every constructor, goldens, oracles, bad inputs."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt_toy.games.constructors import (
    bradley_terry,
    check_preference_matrix,
    from_comparisons,
    from_win_counts,
    random_game,
    rock_paper_scissors,
    three_voter_types,
)

FAST = settings(max_examples=60, deadline=None)

finite_scores = st.lists(
    st.floats(min_value=-800.0, max_value=800.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=8,
)


def assert_preference_matrix(P: torch.Tensor, k: int | None = None) -> None:
    """The invariants every constructor promises: float64, square, complementary exactly, [0, 1]."""
    assert isinstance(P, torch.Tensor) and P.dtype == torch.float64
    assert P.ndim == 2 and P.shape[0] == P.shape[1]
    if k is not None:
        assert P.shape == (k, k)
    assert float((P + P.T - 1).abs().max()) <= 1e-15
    assert bool(((P >= 0) & (P <= 1)).all())
    assert bool((P.diagonal() == 0.5).all())


# ---------------------------------------------------------------- invariants (hypothesis)


@FAST
@given(finite_scores)
def test_bradley_terry_invariants(scores):
    P = bradley_terry(scores)
    assert_preference_matrix(P, len(scores))
    # The complementary pair is built as (x, 1 - x): exact, not merely within 1e-15.
    assert bool((P + P.T == 1).all())
    s = torch.tensor(scores, dtype=torch.float64)
    # Monotone: a higher score beats a lower one with probability >= 1/2.
    higher = s[:, None] > s[None, :]
    assert bool((P[higher] >= 0.5).all())


@FAST
@given(st.lists(st.floats(-30.0, 30.0), min_size=2, max_size=6))
def test_bradley_terry_matches_sigmoid_formula(scores):
    # Independent oracle: the textbook formula e^{s_i} / (e^{s_i} + e^{s_j}) in numpy.
    s = np.array(scores)
    expected = np.exp(s)[:, None] / (np.exp(s)[:, None] + np.exp(s)[None, :])
    np.testing.assert_allclose(bradley_terry(scores).numpy(), expected, rtol=1e-13, atol=1e-300)


@FAST
@given(st.floats(0.0, 1.0))
def test_rock_paper_scissors_invariants(strength):
    P = rock_paper_scissors(strength)
    assert_preference_matrix(P, 3)
    u = torch.full((3,), 1.0 / 3.0, dtype=torch.float64)
    # Uniform play is an equilibrium: every action wins exactly half the time against it.
    assert float((P @ u - 0.5).abs().max()) <= 1e-15


@FAST
@given(st.floats(-2.0 / 3.0, 1.0 / 3.0))
def test_three_voter_types_invariants_and_nash(epsilon):
    P = three_voter_types(epsilon)
    assert_preference_matrix(P, 3)
    alpha1, alpha2, alpha3 = 1 / 3 - epsilon, 1 / 3 + epsilon / 2, 1 / 3 + epsilon / 2
    pi = torch.tensor([alpha3, alpha2, alpha1], dtype=torch.float64)
    assert abs(float(pi.sum()) - 1.0) <= 1e-15
    # Equilibrium condition checked directly (no solver): every action's win rate against pi is
    # exactly 1/2, so no deviation gains and pi is a Nash equilibrium of the symmetric game.
    assert float((P @ pi - 0.5).abs().max()) <= 1e-15


@FAST
@given(
    st.lists(st.lists(st.integers(0, 50), min_size=4, max_size=4), min_size=4, max_size=4),
    st.floats(0.0, 5.0),
)
def test_from_win_counts_invariants(wins, prior):
    P = from_win_counts(wins, prior)
    assert_preference_matrix(P, 4)
    if prior >= 1e-3:  # (a prior below ~1e-16 x counts rounds 1 - P to 0 in float64)
        off = ~torch.eye(4, dtype=torch.bool)
        assert bool(((P[off] > 0) & (P[off] < 1)).all())


@st.composite
def comparison_lists(draw):
    k = draw(st.integers(1, 6))
    if k == 1:
        return k, []  # a single action cannot be compared with another
    winner_loser = st.permutations(list(range(k))).map(lambda perm: (perm[0], perm[1]))
    return k, draw(st.lists(winner_loser, max_size=30))


@FAST
@given(comparison_lists(), st.floats(0.0, 3.0))
def test_from_comparisons_counts_independently(case, prior):
    k, comparisons = case
    P = from_comparisons(comparisons, k, prior=prior)
    assert_preference_matrix(P, k)
    # Oracle: count with a Counter and apply the formula pair by pair in plain Python.
    counts = Counter(comparisons)
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            total = counts[(i, j)] + counts[(j, i)] + 2 * prior
            expected = 0.5 if total == 0 else (counts[(i, j)] + prior) / total
            assert abs(float(P[i, j]) - expected) <= 1e-15


@FAST
@given(st.integers(1, 12), st.integers(0, 2**31), st.booleans())
def test_random_game_invariants(k, seed, transitive):
    P = random_game(k, seed, transitive=transitive)
    assert_preference_matrix(P, k)
    assert torch.equal(P, random_game(k, seed, transitive=transitive))


# ---------------------------------------------------------------- goldens (by hand)


def test_bradley_terry_golden():
    # By hand: sigmoid(log 3 - 0) = 3 / (3 + 1) = 0.75.
    P = bradley_terry([0.0, math.log(3.0)])
    assert abs(float(P[1, 0]) - 0.75) <= 1e-15 and abs(float(P[0, 1]) - 0.25) <= 1e-15
    # Munos et al. arXiv:2312.00886v4 App. A Elo scores (0, log 9, log 2):
    # P[1, 0] = 9/10, P[1, 2] = 9/11, P[2, 0] = 2/3.
    P = bradley_terry([0.0, math.log(9.0), math.log(2.0)])
    assert abs(float(P[1, 0]) - 0.9) <= 1e-15
    assert abs(float(P[1, 2]) - 9.0 / 11.0) <= 1e-15
    assert abs(float(P[2, 0]) - 2.0 / 3.0) <= 1e-15


def test_bradley_terry_extreme_scores_stay_finite():
    P = bradley_terry([0.0, 30.0, 1e4, -1e4])
    assert bool(torch.isfinite(P).all())
    assert float(P[2, 3]) == 1.0 and float(P[3, 2]) == 0.0
    # The small entry keeps its relative accuracy: sigmoid(-30) = 1 / (1 + e^30).
    assert abs(float(P[0, 1]) / (1.0 / (1.0 + math.exp(30.0))) - 1.0) <= 1e-14


def test_bradley_terry_only_differences_matter():
    s = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    assert float((bradley_terry(s) - bradley_terry(s + 7.0)).abs().max()) <= 1e-15


def test_rock_paper_scissors_golden():
    P = rock_paper_scissors()
    # 0 = rock, 1 = paper, 2 = scissors: paper beats rock, scissors beats paper, rock beats
    # scissors.
    expected = torch.tensor(
        [[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]], dtype=torch.float64
    )
    assert torch.equal(P, expected)
    assert torch.equal(rock_paper_scissors(0.0), torch.full((3, 3), 0.5, dtype=torch.float64))
    assert abs(float(rock_paper_scissors(0.5)[1, 0]) - 0.75) <= 1e-15


def test_three_voter_types_golden():
    # By hand, epsilon = 0.1: alpha1 = 1/3 - 0.1 = 0.2333..., alpha2 = alpha3 = 1/3 + 0.05
    # = 0.3833...
    # P[1, 0] = 1/2 + alpha1/2 = 0.61666..., P[0, 2] = P[2, 1] = 1/2 + alpha2/2 = 0.691666...
    P = three_voter_types(0.1)
    assert abs(float(P[1, 0]) - (0.5 + (1 / 3 - 0.1) / 2)) <= 1e-15
    assert abs(float(P[1, 0]) - 0.6166666666666667) <= 1e-15
    assert abs(float(P[0, 2]) - 0.6916666666666667) <= 1e-15
    assert abs(float(P[2, 1]) - 0.6916666666666667) <= 1e-15
    # The Condorcet cycle runs 1 > 0 > 2 > 1: every "upper" entry listed above is > 1/2.
    assert float(P[0, 1]) < 0.5 and float(P[1, 2]) < 0.5 and float(P[2, 0]) < 0.5


def test_three_voter_types_at_zero_is_weak_rock_paper_scissors():
    assert float((three_voter_types(0.0) - rock_paper_scissors(1.0 / 3.0)).abs().max()) <= 1e-15


def test_three_voter_types_range_ends():
    # epsilon = 1/3: alpha1 = 0, the type-1 pair becomes a tie.
    assert float(three_voter_types(1.0 / 3.0)[1, 0]) == 0.5
    # epsilon = -2/3: alpha2 = alpha3 = 0, alpha1 = 1: action 1 beats 0 with probability 1.
    P = three_voter_types(-2.0 / 3.0)
    assert abs(float(P[1, 0]) - 1.0) <= 1e-15 and float(P[0, 2]) == 0.5


def test_from_win_counts_golden():
    # By hand: 3 wins to 1 with prior 1: (3 + 1) / (3 + 1 + 2) = 2/3; prior 0: 3/4.
    assert abs(float(from_win_counts([[0, 3], [1, 0]])[0, 1]) - 2.0 / 3.0) <= 1e-15
    assert float(from_win_counts([[0, 3], [1, 0]], prior=0.0)[0, 1]) == 0.75
    # prior 0, never compared: 1/2; undefeated: exactly 1.
    P = from_win_counts([[0, 0, 5], [0, 0, 0], [0, 0, 0]], prior=0.0)
    assert float(P[0, 1]) == 0.5 and float(P[0, 2]) == 1.0 and float(P[2, 0]) == 0.0


def test_from_win_counts_ignores_diagonal_and_accepts_weights():
    base = from_win_counts([[0.0, 2.5], [1.5, 0.0]])
    assert torch.equal(base, from_win_counts([[100.0, 2.5], [1.5, -3.0]]))
    assert abs(float(base[0, 1]) - 3.5 / 6.0) <= 1e-15


def test_from_comparisons_input_types_agree():
    rows = [(0, 1), (2, 1), (0, 1), (1, 0)]
    P = from_comparisons(rows, 3)
    assert torch.equal(P, from_comparisons(np.array(rows, dtype=np.int32), 3))
    assert torch.equal(P, from_comparisons(torch.tensor(rows), 3))
    assert torch.equal(from_comparisons([], 2), torch.full((2, 2), 0.5, dtype=torch.float64))


def test_random_game_documented_distributions():
    # The documented recipes, replayed with the same seed.
    gen = torch.Generator().manual_seed(7)
    upper = torch.rand(5, 5, generator=gen, dtype=torch.float64)
    P = random_game(5, 7)
    iu = torch.triu_indices(5, 5, 1)
    assert torch.equal(P[iu[0], iu[1]], upper[iu[0], iu[1]])
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(5, generator=gen, dtype=torch.float64)
    assert torch.equal(random_game(5, 7, transitive=True, scale=2.0), bradley_terry(2.0 * z))


def test_random_game_seed_and_generator():
    assert not torch.equal(random_game(6, 0), random_game(6, 1))
    gen = torch.Generator().manual_seed(3)
    first, second = random_game(6, gen), random_game(6, gen)  # the generator advances
    assert torch.equal(first, random_game(6, 3)) and not torch.equal(first, second)
    # Uniform upper triangle: mean 1/2 over ~20k entries (the seed is fixed, so this is exact).
    P = random_game(200, 0)
    iu = torch.triu_indices(200, 200, 1)
    assert abs(float(P[iu[0], iu[1]].mean()) - 0.5) < 0.01


# ---------------------------------------------------------------- purity and validation


def test_inputs_are_not_modified_or_aliased():
    P_np = np.array([[0.5, 0.9], [0.1, 0.5]])
    P = check_preference_matrix(P_np)
    P[0, 1] = 0.0  # editing the result must not reach the caller's array
    assert P_np[0, 1] == 0.9
    scores = np.array([1.0, 2.0])
    bradley_terry(scores)
    assert scores.tolist() == [1.0, 2.0]
    wins = np.array([[0.0, 1.0], [2.0, 0.0]])
    from_win_counts(wins)
    assert wins.tolist() == [[0.0, 1.0], [2.0, 0.0]]


def test_check_preference_matrix_accepts_and_copies():
    P = check_preference_matrix(torch.tensor([[0.5, 0.3], [0.7, 0.5]], dtype=torch.float32))
    assert P.dtype == torch.float64
    # Within tolerance, and clipped into [0, 1].
    P = check_preference_matrix([[0.5, 1.0 + 1e-12], [-1e-12, 0.5]])
    assert float(P.max()) == 1.0 and float(P.min()) == 0.0


@pytest.mark.parametrize(
    ("call", "argname"),
    [
        (lambda: check_preference_matrix([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]), "P"),  # not square
        (lambda: check_preference_matrix([[0.5, float("nan")], [0.5, 0.5]]), "P"),  # NaN
        (lambda: check_preference_matrix([[0.5, 0.7], [0.4, 0.5]]), "P"),  # P + P.T != 1
        (lambda: check_preference_matrix([[0.5, 1.5], [-0.5, 0.5]]), "P"),  # outside [0, 1]
        (lambda: check_preference_matrix(np.zeros((0, 0))), "P"),  # no actions
        (lambda: check_preference_matrix([[0.5]], atol=-1.0), "atol"),
        (lambda: bradley_terry([[0.0, 1.0]]), "scores"),  # not a vector
        (lambda: bradley_terry([0.0, float("inf")]), "scores"),
        (lambda: bradley_terry([]), "scores"),
        (lambda: rock_paper_scissors(1.5), "strength"),
        (lambda: rock_paper_scissors(-0.1), "strength"),
        (lambda: three_voter_types(0.5), "epsilon"),  # alpha1 < 0
        (lambda: three_voter_types(-0.7), "epsilon"),  # alpha2 < 0
        (lambda: three_voter_types("0.1"), "epsilon"),
        (lambda: from_win_counts([[0, -1], [2, 0]]), "wins"),  # negative count
        (lambda: from_win_counts([[0, 1, 2]]), "wins"),  # not square
        (lambda: from_win_counts([[0, 1], [1, 0]], prior=-1.0), "prior"),
        (lambda: from_comparisons([(0, 3)], 3), "comparisons"),  # index out of range
        (lambda: from_comparisons([(-1, 0)], 3), "comparisons"),
        (lambda: from_comparisons([(1, 1)], 3), "comparisons"),  # winner == loser
        (lambda: from_comparisons([(0, 1, 2)], 3), "comparisons"),  # shape (m, 3)
        (lambda: from_comparisons([(0.0, 1.0)], 3), "comparisons"),  # not integers
        (lambda: from_comparisons([(0, 1)], 0), "n_actions"),
        (lambda: random_game(0, 0), "n_actions"),
        (lambda: random_game(3, -1), "seed"),
        (lambda: random_game(3, 1.5), "seed"),
        (lambda: random_game(3, 0, scale=2.0), "scale"),  # scale without transitive=True
        (lambda: random_game(3, 0, transitive=True, scale=0.0), "scale"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(call, argname):
    with pytest.raises(ValueError, match=argname):
        call()
