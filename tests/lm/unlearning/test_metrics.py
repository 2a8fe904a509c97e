"""TOFU's metrics on constructed cases, against hand computations, loops and scipy/numpy oracles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from prefopt_toy.lm.unlearning.metrics import (
    answer_probability,
    forget_quality,
    harmonic_mean,
    rouge_l_recall,
    truth_ratio,
    truth_ratio_score,
    value_accuracy,
    well_formed_fraction,
)


def test_truth_ratio_matches_a_loop_and_the_probability_form():
    rng = np.random.default_rng(0)
    para = rng.uniform(0.1, 3.0, size=7)
    pert = rng.uniform(0.1, 3.0, size=(7, 4))
    got = truth_ratio(para, pert).numpy()
    for i in range(7):
        # TOFU's code: exp(mean perturbed loss - paraphrased loss) (curr_stat_1).
        want = math.exp(sum(pert[i]) / 4 - para[i])
        # Same number as P(para)^{1/|a|} over the geometric mean of P(pert)^{1/|a|}.
        p_para = math.exp(-para[i])
        geo_pert = math.prod(math.exp(-x) for x in pert[i]) ** (1 / 4)
        assert got[i] == pytest.approx(want, rel=1e-12)
        assert got[i] == pytest.approx(p_para / geo_pert, rel=1e-12)


def test_truth_ratio_direction():
    # A model sure of the truth (low paraphrase loss) has R > 1; an indifferent one has R = 1.
    assert truth_ratio([0.1], [[2.0, 2.0]]).item() > 1
    assert truth_ratio([1.5], [[1.5, 1.5]]).item() == 1.0


def test_truth_ratio_score_hand_cases():
    r = np.array([2.0, 0.5, 4.0])
    # retain: mean(max(0, 1 - 1/R)) = (0.5 + 0 + 0.75) / 3
    assert truth_ratio_score(r, forget=False) == pytest.approx(1.25 / 3)
    # forget: mean(min(R, 1/R)) = (0.5 + 0.5 + 0.25) / 3
    assert truth_ratio_score(r, forget=True) == pytest.approx(1.25 / 3)
    assert truth_ratio_score([1.0, 1.0], forget=True) == 1.0


def test_forget_quality_identical_samples_give_p_one():
    x = np.array([0.3, 1.2, 0.9, 2.0, 1.1])
    p, d = forget_quality(x, x.copy())
    assert p == 1.0 and d == 0.0


def test_forget_quality_disjoint_samples_exact_p():
    a = np.arange(5) + 0.5
    b = np.arange(5) + 10.0
    p, d = forget_quality(a, b)
    # Disjoint samples: D = 1. Exact two-sided p for n = m = 5: only the two fully separated
    # orderings of the 10 pooled points reach D = 1, out of C(10, 5) = 252 equally likely ones.
    assert d == 1.0
    assert p == pytest.approx(2 / math.comb(10, 5), rel=1e-9)
    p_big, _ = forget_quality(np.arange(40.0), np.arange(40.0) + 100)
    assert p_big < 1e-10


def test_forget_quality_statistic_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([2.5, 5.0, 6.0])
    # Empirical CDFs at the pooled points, by hand:
    # x:    1    2    2.5  3    4    5    6
    # F_a: .25  .5   .5   .75  1    1    1
    # F_b:  0    0   1/3  1/3  1/3  2/3  1
    # |diff| is largest at x = 4: 1 - 1/3 = 2/3.
    p, d = forget_quality(a, b)
    assert d == pytest.approx(2 / 3)
    assert p == pytest.approx(stats.ks_2samp(a, b).pvalue)
    # and an explicit loop over the pooled points for a random pair of samples
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=9), rng.normal(0.7, size=11)
    pts = np.concatenate([x, y])
    want = max(abs(np.mean(x <= t) - np.mean(y <= t)) for t in pts)
    assert forget_quality(x, y)[1] == pytest.approx(want)


def _lcs_brute(c: list[str], r: list[str]) -> int:
    """Longest common subsequence by trying every subsequence of the shorter list."""
    short, long_ = (c, r) if len(c) <= len(r) else (r, c)
    for k in range(len(short), 0, -1):
        for idx in itertools.combinations(range(len(short)), k):
            sub = [short[i] for i in idx]
            it = iter(long_)
            if all(any(w == v for v in it) for w in sub):
                return k
    return 0


def test_rouge_l_recall_hand_cases():
    assert rouge_l_recall("the cat sat", "the cat sat on the mat") == 0.5
    assert rouge_l_recall("Alba Kovac was born in Lima.", "Alba Kovac was born in Lima.") == 1.0
    # LCS of "born in paris alba" and "alba was born in lima" is "born in" (2 of 5 words)
    assert rouge_l_recall("born in paris alba", "alba was born in lima") == pytest.approx(2 / 5)
    assert rouge_l_recall("", "a b") == 0.0
    assert rouge_l_recall("a b", "") == 0.0
    # case and punctuation are ignored
    assert rouge_l_recall("THE, cat!", "the cat") == 1.0


def test_rouge_l_recall_matches_brute_force_lcs():
    rng = np.random.default_rng(1)
    words = ["a", "b", "c", "d"]
    for _ in range(40):
        c = list(rng.choice(words, size=rng.integers(1, 7)))
        r = list(rng.choice(words, size=rng.integers(1, 7)))
        want = _lcs_brute(c, r) / len(r)
        assert rouge_l_recall(" ".join(c), " ".join(r)) == pytest.approx(want)


def test_harmonic_mean_and_answer_probability():
    v = [0.2, 0.5, 0.9]
    assert harmonic_mean(v) == pytest.approx(stats.hmean(v))
    assert harmonic_mean([0.0, 0.5]) == 0.0
    loss = np.array([0.0, math.log(2.0)])
    assert answer_probability(loss) == pytest.approx((1.0 + 0.5) / 2)


def test_value_accuracy_hand_cases():
    gen = ["Alba Kovac was born in the year 1950.", "She likes plum", "", "PLUM!"]
    # hits: "1950" yes; "plum" vs "peach" no; empty no; case-insensitive "plum" yes
    assert value_accuracy(gen, ["1950", "peach", "Lima", "plum"]) == pytest.approx(2 / 4)
    # a value must be a whole word: "plum" is not found inside "plumber"
    assert value_accuracy(["a plumber"], ["plum"]) == 0.0


def test_well_formed_fraction_counts():
    assert well_formed_fraction(["ok", "bad", "ok"], lambda t: t == "ok") == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda: truth_ratio([1.0, 2.0], [[1.0]]),
        lambda: truth_ratio([float("nan")], [[1.0]]),
        lambda: truth_ratio([], []),
        lambda: truth_ratio_score([0.0], forget=True),
        lambda: forget_quality([], [1.0]),
        lambda: rouge_l_recall(None, "a"),
        lambda: harmonic_mean([-1.0]),
        lambda: well_formed_fraction("abc", bool),
        lambda: value_accuracy(["a"], ["a", "b"]),
        lambda: well_formed_fraction(["a"], None),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        # Log-probabilities in place of losses: the sign gives them away.
        (lambda: truth_ratio([-1.0], [[1.0, 2.0]]), "paraphrased_loss must be non-negative"),
        (lambda: truth_ratio([1.0], [[1.0, -0.5]]), "perturbed_losses must be non-negative"),
        (lambda: answer_probability([0.5, -0.1]), "answer_loss must be non-negative"),
        # exp(709.8) overflows float64 and exp(-745.2) underflows to 0: such a ratio is refused,
        # never clipped (a clip would tie distinct ratios in the KS test); summed losses of long
        # answers are the usual cause.
        (lambda: truth_ratio([0.0], [[709.0, 709.0]]), "question 0 has exp"),
        (lambda: truth_ratio([1.0, 800.0], [[1.0, 1.0], [0.5, 0.5]]), "question 1 has exp"),
        (lambda: truth_ratio([0.0], [[1e308, 1e308]]), "outside float64's range"),
    ],
)
def test_losses_out_of_range_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_truth_ratio_at_the_edge_of_float64():
    # |exponent| = 708 is still a finite, non-zero ratio, equal to math.exp.
    r = truth_ratio([0.0, 708.0], [[708.0, 708.0], [0.0, 0.0]])
    assert r.tolist() == [math.exp(708.0), math.exp(-708.0)]
