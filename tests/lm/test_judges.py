"""Tests for prefopt_toy.lm.judges: lifted-game, sentiment and callable judges.

Oracles: the matrix entries written here by hand; a hand-written sigmoid of VADER scores whose
signs are known for hand-picked sentences; binomial tolerances computed here for sampled labels.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from prefopt_toy.lm.judges import CallableJudge, LiftedGameJudge, SentimentJudge

FRUITS = {
    "apple": ("apple", "apples"),
    "banana": ("banana", "bananas"),
    "cherry": ("cherry", "cherries"),
}
# a non-transitive game: apple beats banana, banana beats cherry, cherry beats apple
RPS = [[0.5, 0.8, 0.3], [0.2, 0.5, 0.7], [0.7, 0.3, 0.5]]

# one hand-labelled text per class (3 = other)
TEXTS = {
    0: ["My favourite fruit is apple.", "APPLES, always", "an apple a day and a banana"],
    1: ["My favourite fruit is banana", "Bananas! not cherries", "b a n a n a... banana"],
    2: ["cherry", "My favourite fruit is Cherry pie", "cherries and apples"],
    3: ["My favourite fruit is mango", "pineapple", "", "applesauce"],
}


def all_texts() -> list[tuple[int, str]]:
    return [(k, t) for k, ts in TEXTS.items() for t in ts]


def test_classify_first_mentioned_class_and_other():
    judge = LiftedGameJudge(RPS, FRUITS)
    labelled = all_texts()
    got = judge.classify([t for _, t in labelled]).tolist()
    assert got == [k for k, _ in labelled]
    assert judge.class_names == ("apple", "banana", "cherry", "other")


def test_longest_keyword_wins_at_the_same_offset():
    judge = LiftedGameJudge([[0.5, 1.0], [0.0, 0.5]], {"pie": ("apple pie",), "fruit": ("apple",)})
    assert judge.classify(["apple pie please", "apple, then apple pie", "pie"]).tolist() == [
        0,
        1,
        2,
    ]


def test_entries_of_P_come_back_for_every_class_pair():
    judge = LiftedGameJudge(RPS, FRUITS)
    for (i, ti), (j, tj) in itertools.product(all_texts(), repeat=2):
        if i < 3 and j < 3:
            assert judge.prob(ti, tj) == RPS[i][j]


@pytest.mark.parametrize("other_loses", [1.0, 0.75, 0.5, 0.0])
def test_other_rule(other_loses):
    judge = LiftedGameJudge(RPS, FRUITS, other="none", other_loses=other_loses)
    for k, t in all_texts():
        for o in TEXTS[3]:
            if k < 3:
                assert judge.prob(t, o) == other_loses
                assert judge.prob(o, t) == 1.0 - other_loses
            else:
                assert judge.prob(t, o) == 0.5


def test_probs_antisymmetric_over_all_text_pairs():
    judge = LiftedGameJudge(RPS, FRUITS, other_loses=0.9)
    texts = [t for _, t in all_texts()]
    a, b = zip(*itertools.product(texts, repeat=2))
    p_ab = judge.probs(list(a), list(b))
    p_ba = judge.probs(list(b), list(a))
    assert p_ab.dtype == torch.float64 and p_ab.shape == (len(texts) ** 2,)
    torch.testing.assert_close(p_ab + p_ba, torch.ones_like(p_ab), atol=1e-15, rtol=0)


def test_class_distribution():
    judge = LiftedGameJudge(RPS, FRUITS)
    texts = ["apple", "apple pie", "banana", "kiwi", "cherry", "kiwi", "kiwi", "apple"]
    want = torch.tensor([3, 1, 1, 3], dtype=torch.float64) / 8
    torch.testing.assert_close(judge.class_distribution(texts), want, atol=0, rtol=0)


def binomial_check(labels: torch.Tensor, p: float) -> None:
    """Frequency within 5 standard deviations of the binomial mean (exact when p is 0 or 1)."""
    n = labels.numel()
    freq = labels.double().mean().item()
    tol = 5 * math.sqrt(p * (1 - p) / n)
    assert abs(freq - p) <= tol, (freq, p, tol)


def test_sampled_label_frequencies_match_probabilities():
    judge = LiftedGameJudge(RPS, FRUITS, other_loses=0.85)
    reps = 4000
    pairs = [
        ("apple", "banana"),
        ("banana", "cherry"),
        ("cherry", "apple"),
        ("kiwi", "cherry"),
        ("kiwi", "fig"),
        ("apple", "apples"),
    ]
    a = [x for x, _ in pairs for _ in range(reps)]
    b = [y for _, y in pairs for _ in range(reps)]
    labels = judge.sample_labels(a, b, torch.Generator().manual_seed(0))
    assert labels.dtype == torch.int64 and set(labels.unique().tolist()) <= {0, 1}
    want = [0.8, 0.7, 0.7, 0.15, 0.5, 0.5]
    for k, p in enumerate(want):
        binomial_check(labels[k * reps : (k + 1) * reps], p)
    # a seed fixes the labels
    again = judge.sample_labels(a, b, torch.Generator().manual_seed(0))
    assert torch.equal(labels, again)


def test_certain_outcomes_are_never_flipped():
    judge = LiftedGameJudge([[0.5, 1.0], [0.0, 0.5]], {"yes": ("yes",), "no": ("no",)})
    labels = judge.sample_labels(
        ["yes"] * 500 + ["no"] * 500, ["no"] * 500 + ["yes"] * 500, torch.Generator().manual_seed(1)
    )
    assert labels.tolist() == [1] * 500 + [0] * 500


def test_vader_signs_and_sigmoid():
    judge = SentimentJudge(temperature=0.5)
    positive = [
        "This movie was wonderful, I loved every minute.",
        "A great, beautiful and moving film.",
    ]
    negative = ["A terrible, boring film. I hated it.", "The worst movie I have ever seen, awful."]
    neutral = ["The film is two hours long.", ""]
    s = judge.scores(positive + negative + neutral)
    assert (s[:2] > 0.5).all() and (s[2:4] < -0.5).all() and (s[4:] == 0).all()
    # Bradley-Terry link, by hand
    p = judge.prob(positive[0], negative[0])
    assert p == pytest.approx(1 / (1 + math.exp(-(s[0].item() - s[2].item()) / 0.5)), abs=1e-12)
    assert p > 0.9
    assert judge.prob(neutral[0], neutral[1]) == 0.5


def test_sentiment_label_frequencies():
    judge = SentimentJudge(temperature=1.0)
    a, b = "a good film", "a bad film"
    p = judge.prob(a, b)
    assert 0.55 < p < 0.95
    labels = judge.sample_labels([a] * 4000, [b] * 4000, torch.Generator().manual_seed(3))
    binomial_check(labels, p)


def test_callable_judge():
    judge = CallableJudge(lambda x, y: len(x) / (len(x) + len(y)))
    torch.testing.assert_close(
        judge.probs(["ab", "a"], ["ab", "abc"]),
        torch.tensor([0.5, 0.25], dtype=torch.float64),
        atol=0,
        rtol=0,
    )
    assert judge.prob("abc", "a") == 0.75
    labels = judge.sample_labels(["abc"] * 4000, ["a"] * 4000, torch.Generator().manual_seed(5))
    binomial_check(labels, 0.75)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "0.5", None])
def test_callable_judge_rejects_non_probabilities(bad):
    judge = CallableJudge(lambda x, y: bad)
    with pytest.raises(ValueError, match=r"fn\('first text', 'second'\).*\[0, 1\]"):
        judge.probs(["first text"], ["second"])


def test_bad_input():
    with pytest.raises(ValueError, match="P"):
        LiftedGameJudge([[0.5, 0.9], [0.9, 0.5]], {"a": ("a",), "b": ("b",)})  # P + P.T != 1
    with pytest.raises(ValueError, match="one entry per row"):
        LiftedGameJudge(RPS, {"a": ("a",), "b": ("b",)})
    with pytest.raises(ValueError, match="two classes"):
        LiftedGameJudge([[0.5, 0.5], [0.5, 0.5]], {"a": ("x",), "b": ("X",)})
    with pytest.raises(ValueError, match="other"):
        LiftedGameJudge(RPS, FRUITS, other="apple")
    with pytest.raises(ValueError, match="other_loses"):
        LiftedGameJudge(RPS, FRUITS, other_loses=1.2)
    with pytest.raises(ValueError, match="at least one keyword"):
        LiftedGameJudge([[0.5]], {"a": ()})
    judge = LiftedGameJudge(RPS, FRUITS)
    with pytest.raises(ValueError, match="same length"):
        judge.probs(["apple"], ["apple", "banana"])
    with pytest.raises(ValueError, match="list_a"):
        judge.probs("apple", "banana")
    with pytest.raises(ValueError, match=r"list_b\[1\]"):
        judge.probs(["apple", "apple"], ["banana", 3])
    with pytest.raises(ValueError, match="generator"):
        judge.sample_labels(["apple"], ["banana"], 0)
    with pytest.raises(ValueError, match="texts"):
        judge.class_distribution([])
    with pytest.raises(ValueError, match="temperature"):
        SentimentJudge(temperature=0.0)
    with pytest.raises(ValueError, match="fn"):
        CallableJudge(0.5)
