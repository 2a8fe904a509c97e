"""The token tree against loops along each path (tests/_token_oracle.py), and its bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from _token_oracle import (
    enumerate_sequences,
    kl_rows,
    sequence_logp,
    sequential_kl,
    visit_probability,
)

from prefopt_toy.tokens import TokenTree, lifted_game, prefix_entropy, prefix_kl, sequence_game


def _random_logits(tree: TokenTree, seed: int, scale: float = 1.5) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=scale, size=tree.table_shape)


@pytest.mark.parametrize(
    ("v", "t", "n", "n_prefixes"), [(3, 3, 15, 7), (2, 4, 5, 4), (4, 2, 13, 4)]
)
def test_sizes_and_enumeration(v, t, n, n_prefixes):
    tree = TokenTree(v, t)
    assert (tree.n_sequences, tree.n_prefixes) == (n, n_prefixes)
    assert sorted(tree.sequences) == sorted(enumerate_sequences(v, t))
    assert len(set(tree.sequences)) == n
    # the free parameters match: (V - 1) per prefix = N - 1, so tables <-> sequence distributions
    assert tree.n_prefixes * (v - 1) == n - 1
    for seq in tree.sequences:
        assert len(seq) <= t and (seq[-1] == tree.eos or len(seq) == t)
        assert tree.eos not in seq[:-1]


@pytest.mark.parametrize(("v", "t"), [(3, 3), (2, 4), (4, 2)])
def test_sequence_probabilities_sum_to_one_and_match_a_loop(v, t):
    tree = TokenTree(v, t)
    logits = _random_logits(tree, seed=v * 10 + t)
    probs = tree.sequence_probs(logits)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-14)
    loop = [sequence_logp(logits, list(tree.prefixes), s) for s in tree.sequences]
    np.testing.assert_allclose(tree.sequence_log_probs(logits).numpy(), loop, rtol=0, atol=1e-12)


def test_batched_tables_give_one_distribution_per_row():
    tree = TokenTree(3, 3)
    stack = np.stack([_random_logits(tree, s) for s in range(4)])  # (4, n, V)
    probs = tree.sequence_probs(stack)
    assert probs.shape == (4, tree.n_sequences)
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, atol=1e-14)
    np.testing.assert_allclose(probs[2].numpy(), tree.sequence_probs(stack[2]).numpy(), atol=0)


def test_visit_probabilities_match_a_loop_and_add_up():
    tree = TokenTree(3, 3)
    logits = _random_logits(tree, seed=1)
    visits = tree.visit_probabilities(logits).numpy()
    loop = [visit_probability(logits, list(tree.prefixes), p) for p in tree.prefixes]
    np.testing.assert_allclose(visits, loop, atol=1e-14)
    # the visits at depth k are the chance of not having stopped in the first k tokens
    seq = tree.sequence_probs(logits).numpy()
    for k in range(tree.max_length):
        at_depth = sum(v for v, p in zip(visits, tree.prefixes) if len(p) == k)
        still_going = sum(q for q, s in zip(seq, tree.sequences) if len(s) > k)
        assert at_depth == pytest.approx(still_going, abs=1e-14)


def test_sequential_kl_matches_a_per_prefix_loop():
    tree = TokenTree(3, 3)
    ref, pol = _random_logits(tree, seed=2), _random_logits(tree, seed=3)
    got = tree.sequential_kl(ref, pol).numpy()
    loop = [sequential_kl(ref, pol, list(tree.prefixes), s) for s in tree.sequences]
    np.testing.assert_allclose(got, loop, atol=1e-13)
    np.testing.assert_allclose(prefix_kl(tree, ref, pol).numpy(), kl_rows(ref, pol), atol=1e-14)
    # the direction: reference first (not symmetric, so a swapped argument would fail)
    assert not np.allclose(got, tree.sequential_kl(pol, ref).numpy(), atol=1e-3)
    # every position counts, the one that emits EOS included: (EOS,) has the root's KL alone
    root_kl = kl_rows(ref, pol)[0]
    assert got[tree.sequences.index((tree.eos,))] == pytest.approx(root_kl, abs=1e-14)


def test_entropy_and_kl_chain_rules():
    tree = TokenTree(3, 3)
    ref, pol = _random_logits(tree, seed=4), _random_logits(tree, seed=5)
    visits = tree.visit_probabilities(pol).numpy()
    # H(pi_seq) = sum_s d(s) H(pi(.|s)); KL(pi_seq || mu_seq) = sum_s d(s) KL(pi(.|s) || mu(.|s))
    seq = tree.sequence_probs(pol).numpy()
    direct_h = -sum(q * math.log(q) for q in seq)
    assert float(tree.sequence_entropy(pol)) == pytest.approx(direct_h, abs=1e-13)
    assert float((visits * prefix_entropy(tree, pol).numpy()).sum()) == pytest.approx(
        direct_h, abs=1e-13
    )
    chain_kl = float((visits * kl_rows(pol, ref)).sum())
    assert float(tree.sequence_kl(pol, ref)) == pytest.approx(chain_kl, abs=1e-13)


def test_every_sequence_distribution_is_a_table():
    tree = TokenTree(3, 3)
    p = np.random.default_rng(6).dirichlet(np.ones(tree.n_sequences))
    table = tree.table_from_sequences(p)
    np.testing.assert_allclose(tree.sequence_probs(table).numpy(), p, rtol=1e-12, atol=0)
    np.testing.assert_allclose(table.exp().sum(-1).numpy(), 1.0, atol=1e-14)


def test_classes_and_lifted_game_match_a_loop():
    tree = TokenTree(3, 3)
    P_class = np.array([[0.5, 0.3, 0.1], [0.7, 0.5, 0.4], [0.9, 0.6, 0.5]])
    P = lifted_game(tree, P_class, "length").numpy()
    for (i, a), (j, b) in itertools.product(enumerate(tree.sequences), repeat=2):
        assert P[i, j] == P_class[len(a) - 1, len(b) - 1]
    first = tree.classes("first_token").tolist()
    assert first == [s[0] for s in tree.sequences]
    np.testing.assert_array_equal(sequence_game(tree, P).numpy(), P)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: TokenTree(1, 3), "vocab_size must be >= 2"),
        (lambda: TokenTree(3, 0), "max_length must be >= 1"),
        (lambda: TokenTree(3, 2.5), "max_length must be an integer"),
        (lambda: TokenTree(9, 9), "sequences"),
        (lambda: TokenTree(3, 3).sequence_probs(np.zeros((6, 3))), r"logits must have shape"),
        (lambda: TokenTree(3, 3).sequence_probs(np.full((7, 3), np.nan)), "logits"),
        (lambda: TokenTree(3, 3).probability_table(np.full((7, 3), 0.5)), "mu must sum to 1"),
        (
            lambda: TokenTree(3, 3).probability_table(np.tile([1.0, 0.0, 0.0], (7, 1))),
            "mu must be strictly positive",
        ),
        (lambda: TokenTree(3, 3).table_from_sequences(np.ones(14) / 14), "p must have shape"),
        (lambda: TokenTree(3, 3).classes("colour"), "by must be"),
        (lambda: lifted_game(TokenTree(3, 3), [[0.5, 0.6], [0.4, 0.5]], [0] * 14), "classes"),
        (
            lambda: lifted_game(TokenTree(3, 3), [[0.5, 0.6], [0.4, 0.5]], "length"),
            "classes must be",
        ),
        (lambda: lifted_game(TokenTree(3, 3), [[0.5, 0.6], [0.6, 0.5]], "length"), "P_class"),
        (lambda: sequence_game(TokenTree(3, 3), np.full((3, 3), 0.5)), r"P must be \(15, 15\)"),
        (lambda: prefix_kl(TokenTree(3, 3), np.zeros((7, 2)), np.zeros((7, 3))), "first_logits"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_inputs_are_not_modified():
    tree = TokenTree(3, 3)
    logits = _random_logits(tree, seed=7)
    keep = logits.copy()
    tree.sequence_probs(logits)
    tree.sequential_kl(logits, torch.as_tensor(logits))
    np.testing.assert_array_equal(logits, keep)


def test_trees_compare_by_their_sizes():
    assert TokenTree(3, 3) == TokenTree(3, 3)
    assert TokenTree(3, 3) != TokenTree(3, 2)
    assert len({TokenTree(3, 3), TokenTree(3, 3)}) == 1
