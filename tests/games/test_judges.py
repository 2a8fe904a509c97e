"""Tests for prefopt_toy.games.judges: validation, symmetrisation, position bias, biased judges.

Every expected value is recomputed here in numpy or by a per-element loop over the formula.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prefopt_toy.games.constructors import random_game, rock_paper_scissors
from prefopt_toy.games.judges import (
    check_judge_matrix,
    judge_decomposition,
    lapse_judge,
    logit_shift_judge,
    max_position_bias,
    position_bias,
    symmetrize_judge,
)


def _random_judge(k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(k, k))


def test_check_judge_matrix_accepts_a_biased_judge_and_copies() -> None:
    J = _random_judge(4, 0)
    out = check_judge_matrix(J)
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), J)
    out[0, 0] = 7.0  # a copy: the caller's array is untouched
    assert J[0, 0] != 7.0


@pytest.mark.parametrize(
    "bad",
    [
        [[0.5, 1.2], [0.3, 0.5]],
        [[0.5, -0.1], [0.3, 0.5]],
        [[0.5, float("nan")], [0.3, 0.5]],
        [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]],
        [],
        "judge",
    ],
)
def test_check_judge_matrix_refuses(bad) -> None:
    with pytest.raises(ValueError, match="J"):
        check_judge_matrix(bad)


def test_symmetrize_matches_numpy_and_is_exactly_complementary() -> None:
    for seed in range(5):
        J = _random_judge(5, seed)
        P = symmetrize_judge(J).numpy()
        expected = (J + 1.0 - J.T) / 2.0
        np.fill_diagonal(expected, 0.5)
        np.testing.assert_allclose(P, expected, atol=1e-15)
        assert np.all(P + P.T == 1.0)
        assert np.all(np.diag(P) == 0.5)


def test_symmetrize_leaves_a_preference_matrix_alone() -> None:
    P = random_game(6, seed=1)
    assert float((symmetrize_judge(P) - P).abs().max()) <= 1e-16


def test_position_bias_is_symmetric_and_matches_a_loop() -> None:
    J = _random_judge(4, 3)
    B = position_bias(J)
    assert torch.equal(B, B.T)
    for i in range(4):
        for j in range(4):
            assert B[i, j].item() == pytest.approx(J[i, j] + J[j, i] - 1.0, abs=1e-15)
    worst = max(abs(J[i, j] + J[j, i] - 1.0) for i in range(4) for j in range(4) if i != j)
    assert max_position_bias(J) == pytest.approx(worst, abs=1e-15)
    assert max_position_bias([[0.9]]) == 0.0
    assert max_position_bias(random_game(5, seed=2)) <= 1e-15


def test_decomposition_recovers_the_parts() -> None:
    # Build J from a known preference matrix and a known symmetric bias, then split it again.
    rng = np.random.default_rng(7)
    P0 = random_game(4, seed=7).numpy()
    S = rng.uniform(-0.2, 0.2, size=(4, 4))
    B0 = (S + S.T) / 2.0
    J = np.clip(P0 + B0 / 2.0, 0.0, 1.0)
    assert np.all((J > 0) & (J < 1))  # no clipping happened, so the split must be exact
    P, B = judge_decomposition(J)
    np.testing.assert_allclose(P.numpy(), P0, atol=1e-15)  # P0 has diagonal 1/2
    np.testing.assert_allclose(B.numpy(), B0, atol=1e-15)
    np.testing.assert_allclose((P + B / 2).numpy(), J, atol=1e-15)


def test_lapse_judge_has_a_constant_bias_and_keeps_the_preference() -> None:
    P = random_game(4, seed=4).numpy()
    for b in (0.3, -0.25, 1.0, -1.0, 0.0):
        J = lapse_judge(P, b).numpy()
        for i in range(4):
            for j in range(4):
                # with probability |b| the judge names its slot, otherwise it answers with P
                first = 1.0 if b > 0 else 0.0
                assert J[i, j] == pytest.approx(abs(b) * first + (1 - abs(b)) * P[i, j], abs=1e-15)
        np.testing.assert_allclose(position_bias(J).numpy(), np.full((4, 4), b), atol=1e-15)
        # both orders averaged: the lapses cancel to a coin flip, (1 - |b|) P + |b| / 2
        expected = (1.0 - abs(b)) * P + abs(b) / 2.0
        np.testing.assert_allclose(symmetrize_judge(J).numpy(), expected, atol=1e-15)
    with pytest.raises(ValueError, match="bias"):
        lapse_judge(P, 1.5)


def test_logit_shift_judge_matches_the_formula() -> None:
    P = rock_paper_scissors(0.6).numpy()
    P[0, 1], P[1, 0] = 0.0, 1.0  # a certain pair stays certain
    for b in (0.8, -1.3):
        J = logit_shift_judge(P, b).numpy()
        for i in range(3):
            for j in range(3):
                p = P[i, j]
                if p in (0.0, 1.0):
                    expected = p
                else:
                    expected = 1.0 / (1.0 + math.exp(-(math.log(p / (1 - p)) + b)))
                assert J[i, j] == pytest.approx(expected, abs=1e-15)
        # the bias on a tie (the diagonal) is tanh(b / 2); none on the certain pair
        assert position_bias(J)[0, 0].item() == pytest.approx(math.tanh(b / 2), abs=1e-15)
        assert position_bias(J)[0, 1].item() == 0.0
    with pytest.raises(ValueError, match="bias"):
        logit_shift_judge(P, float("inf"))
    with pytest.raises(ValueError, match="P"):
        logit_shift_judge([[0.5, 0.9], [0.9, 0.5]], 1.0)
