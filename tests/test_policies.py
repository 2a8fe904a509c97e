"""Policies: KL, entropy, geometric mixture, win rates (hypothesis invariants and hand values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt_toy import (
    entropy,
    geometric_mixture,
    kl,
    log_softmax,
    random_game,
    softmax,
    win_rate,
    win_rates,
)


@st.composite
def simplex(draw, k: int):
    raw = np.asarray(draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))) + 1e-6
    return raw / raw.sum()


@settings(max_examples=80, deadline=None)
@given(k=st.integers(1, 8), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_self_play_win_rate_is_one_half(k, seed, data):
    """pi^T P pi = 1/2 for every pi, because P + P.T = 1 (catches transposed indices)."""
    pi = data.draw(simplex(k))
    assert win_rate(random_game(k, seed=seed), pi, pi) == pytest.approx(0.5, abs=1e-14)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), k=st.integers(1, 6))
def test_kl_properties(data, k):
    p, q = data.draw(simplex(k)), data.draw(simplex(k))
    assert kl(p, p) == pytest.approx(0.0, abs=1e-14)
    assert kl(p, q) >= 0
    assert 0 <= entropy(p) <= math.log(k) + 1e-12


def test_kl_hand_values_and_support():
    # Hand: 0.5 log(0.5/0.9) + 0.5 log(0.5/0.1) = 0.510826
    assert kl([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.5108256237659907, abs=1e-15)
    assert kl([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2), abs=1e-15)
    assert kl([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert entropy([0.25] * 4) == pytest.approx(math.log(4), abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), k=st.integers(1, 6), m=st.floats(0, 1))
def test_geometric_mixture_matches_direct_formula(data, k, m):
    pi, mu = data.draw(simplex(k)), data.draw(simplex(k))
    direct = pi ** (1 - m) * mu**m
    assert np.abs(geometric_mixture(pi, mu, m).numpy() - direct / direct.sum()).max() < 1e-12


def test_geometric_mixture_endpoints_and_tiny_entries():
    pi, mu = [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]
    assert geometric_mixture(pi, mu, 0.0).tolist() == pytest.approx(pi, abs=1e-15)
    assert geometric_mixture(pi, mu, 1.0).tolist() == pytest.approx(mu, abs=1e-15)
    # Log space: (1e-300)^(1/2) (1e-300)^(1/2) = 1e-300 is computed, not underflowed to 0.
    out = geometric_mixture([1e-300, 1 - 1e-300], [1e-300, 1 - 1e-300], 0.5)
    assert float(out[0]) == pytest.approx(1e-300, rel=1e-9)
    with pytest.raises(ValueError, match="disjoint"):
        geometric_mixture([1.0, 0.0], [0.0, 1.0], 0.5)


def test_win_rates_default_is_uniform_opponent():
    P = random_game(5, seed=0)
    assert torch.allclose(win_rates(P), P.mean(dim=1), atol=1e-15)
    pi = torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2], dtype=torch.float64)
    assert torch.allclose(win_rates(P, pi), P @ pi, atol=1e-15)


def test_softmax_is_differentiable_and_stable():
    theta = torch.tensor([1000.0, 0.0, -1000.0], dtype=torch.float64, requires_grad=True)
    log_pi = log_softmax(theta)
    assert bool(torch.isfinite(log_pi).all())
    log_pi[0].backward()
    assert theta.grad is not None and bool(torch.isfinite(theta.grad).all())
    assert softmax([0.0, math.log(3.0)]).tolist() == pytest.approx([0.25, 0.75], abs=1e-15)
