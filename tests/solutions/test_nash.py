"""The unregularised Nash equilibrium (LP) and exploitability, against nashpy and hand values."""

from __future__ import annotations

import nashpy
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt_toy import (
    exploitability,
    nash_equilibrium,
    random_game,
    rock_paper_scissors,
    three_voter_types,
)


def unique_equilibrium(P: np.ndarray):
    """All equilibria of the zero-sum game (P - 1/2) by nashpy's support enumeration; None unless unique."""
    eqs = list(nashpy.Game(P - 0.5).support_enumeration())
    return eqs[0][0] if len(eqs) == 1 else None


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7])
def test_agrees_with_nashpy_on_games_with_a_unique_equilibrium(k):
    checked = 0
    for seed in range(40):
        P = random_game(k, seed=1000 * k + seed).numpy()
        reference = unique_equilibrium(P)
        if reference is None:
            continue
        ours = nash_equilibrium(P).numpy()
        assert np.abs(ours - reference).max() < 1e-12, (k, seed)
        checked += 1
        if checked == 8:
            break
    assert checked >= 5  # generic random games have a unique equilibrium


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 12), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_exploitability_nonnegative_and_zero_at_lp_solution(k, seed, data):
    P = random_game(k, seed=seed)
    raw = data.draw(st.lists(st.floats(0, 1), min_size=k, max_size=k))
    pi = np.asarray(raw) + 1e-3
    pi /= pi.sum()
    assert exploitability(P, pi) >= 0
    nash = nash_equilibrium(P)
    assert exploitability(P, nash) <= 1e-13
    assert bool((nash >= 0).all()) and abs(float(nash.sum()) - 1) < 1e-14


def test_rock_paper_scissors_and_three_voter_types():
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    assert torch.allclose(nash_equilibrium(rock_paper_scissors(0.4)), uniform, atol=1e-14)
    eps = 0.2
    # Munos et al. (arXiv:2312.00886v4) Sec. 3.2: the Nash is proportional to (alpha3, alpha2, alpha1).
    alpha = torch.tensor([1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps], dtype=torch.float64)
    assert torch.allclose(nash_equilibrium(three_voter_types(eps)), alpha, atol=1e-14)


def test_condorcet_winner_is_the_pure_equilibrium():
    P = [[0.5, 0.55, 0.55], [0.45, 0.5, 0.95], [0.45, 0.05, 0.5]]
    assert nash_equilibrium(P).tolist() == [1.0, 0.0, 0.0]


def test_exploitability_hand_values():
    # Hand: against pi = (0, 1), action 0 wins w.p. 0.9, so exploitability is 0.9 - 0.5 = 0.4.
    assert exploitability([[0.5, 0.9], [0.1, 0.5]], [0.0, 1.0]) == pytest.approx(0.4, abs=1e-15)
    # Rock-paper-scissors with strength 1 against pure rock: paper beats it surely: 1 - 1/2.
    assert exploitability(rock_paper_scissors(1.0), [1.0, 0.0, 0.0]) == pytest.approx(
        0.5, abs=1e-15
    )


def test_large_game_is_an_equilibrium():
    P = random_game(150, seed=5)
    pi = nash_equilibrium(P)
    assert exploitability(P, pi) <= 1e-12
