"""Tests for prefopt_toy.lm.model_judge: a language model as a pairwise judge.

Oracles: for each pair, a separate, unpadded forward pass of the tiny model on the judge text
written here with an f-string, the full-vocabulary softmax taken here, and the ratio
p(t1) / (p(t1) + p(t2)) of its two entries; the position bias from those hand values; exact
float equality for P + P^T = 1 (a property of the construction, not a tolerance).
"""

from __future__ import annotations

import pytest
import torch

from prefopt_toy.lm.judges import judge_probs
from prefopt_toy.lm.model_judge import LanguageModelJudge

PROMPT = "My favourite fruit is"
A = [
    " an apple.",
    " a banana.",
    " a sweet red cherry.",
    " a secret.",
    "",
    " apples, without a doubt.",
]
B = [
    " a cherry.",
    " an apple.",
    " a banana.",
    " a ripe yellow banana.",
    " a green apple.",
    " a secret.",
]
# tokens the tiny model saw in training (unseen tokens share one embedding row: J would be 1/2)
TOKENS = (" sweet", " dark")


def hand_text(prompt: str, first: str, second: str) -> str:
    # DEFAULT_TEMPLATE written out by hand, with the labels "sweet" / "dark"
    return (
        "Which answer completes the sentence better?\n"
        f"Sentence: {prompt} ...\n"
        f"Answer sweet:{first}\n"
        f"Answer dark:{second}\n"
        "Preferred answer="
    )


def hand_J(model, tok, prompt: str, first: str, second: str) -> float:
    """One unpadded forward pass; softmax over the whole vocabulary; renormalise over the two."""
    ids = torch.tensor([tok(hand_text(prompt, first, second)).input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    p = torch.softmax(logits, dim=-1)
    t1, t2 = (tok(t).input_ids[0] for t in TOKENS)
    return float(p[t1] / (p[t1] + p[t2]))


@pytest.fixture(scope="module")
def judge_and_hand(tiny_lm):
    model, tok = tiny_lm
    hand_ab = [hand_J(model, tok, PROMPT, a, b) for a, b in zip(A, B)]
    hand_ba = [hand_J(model, tok, PROMPT, b, a) for a, b in zip(A, B)]
    return (
        model,
        tok,
        torch.tensor(hand_ab, dtype=torch.float64),
        torch.tensor(hand_ba, dtype=torch.float64),
    )


def test_raw_judge_matches_a_hand_forward_pass_per_pair(judge_and_hand):
    model, tok, hand_ab, hand_ba = judge_and_hand
    judge = LanguageModelJudge(
        model, tok, tokens=TOKENS, prompt=PROMPT, order="first", batch_size=4
    )
    got = judge.probs(A, B)
    assert got.dtype == torch.float64 and got.shape == (len(A),)
    # batched, left-padded float32 passes against unpadded single ones: float32 round-off
    assert torch.allclose(got, hand_ab, atol=2e-5, rtol=0), (got, hand_ab)
    assert torch.allclose(judge.raw_probs(B, A), hand_ba, atol=2e-5, rtol=0)
    # the judge depends on the texts: not a constant
    assert float(hand_ab.max() - hand_ab.min()) > 1e-3
    # deterministic: the same call gives the same bits
    assert torch.equal(judge.probs(A, B), got)


def test_both_orders_average_and_sum_to_one_exactly(judge_and_hand):
    model, tok, hand_ab, hand_ba = judge_and_hand
    judge = LanguageModelJudge(model, tok, tokens=TOKENS, prompt=PROMPT)
    p = judge.probs(A + B, B + A)  # each pair and its swap in one call
    n = len(A)
    assert torch.equal(p[:n] + p[n:], torch.ones(n, dtype=torch.float64))
    assert torch.allclose(p[:n], (hand_ab + 1 - hand_ba) / 2, atol=2e-5, rtol=0)
    # a pair with itself is a tie
    assert judge.probs(A[:3], A[:3]).tolist() == [0.5, 0.5, 0.5]
    # the Judge interface: prob, judge_probs and sampled labels work on it
    assert judge.prob(A[0], B[0]) == pytest.approx(float(p[0]), abs=1e-6)
    assert judge_probs(judge, A, B).shape == (n,)
    labels = judge.sample_labels(A, B, torch.Generator().manual_seed(0))
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= {0, 1}


def test_position_bias_equals_the_hand_computation(judge_and_hand):
    model, tok, hand_ab, hand_ba = judge_and_hand
    judge = LanguageModelJudge(model, tok, tokens=TOKENS, prompt=PROMPT)
    pb = judge.position_bias(A, B)
    bias = hand_ab + hand_ba - 1
    assert torch.allclose(pb.bias, bias, atol=4e-5, rtol=0)
    assert pb.mean == pytest.approx(float(bias.mean()), abs=4e-5)
    assert pb.mean_abs == pytest.approx(float(bias.abs().mean()), abs=4e-5)
    consistent = ((hand_ab > 0.5) & (hand_ba < 0.5)) | ((hand_ab < 0.5) & (hand_ba > 0.5))
    assert pb.consistent == pytest.approx(float(consistent.double().mean()))
    assert pb.first_both == pytest.approx(
        float(((hand_ab > 0.5) & (hand_ba > 0.5)).double().mean())
    )


def test_per_pair_prompts_enter_the_template(judge_and_hand):
    model, tok, _, _ = judge_and_hand
    judge = LanguageModelJudge(model, tok, tokens=TOKENS, order="first")
    other = "For a snack I usually pick"
    got = judge.probs(A[:2], B[:2], prompts=[other, PROMPT])
    want = [hand_J(model, tok, other, A[0], B[0]), hand_J(model, tok, PROMPT, A[1], B[1])]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=2e-5, rtol=0)


def test_unseen_tokens_give_an_exact_tie(tiny_lm):
    # "1" and "2" never occur in the corpus: their embedding rows are equal, so J = 1/2 exactly
    model, tok = tiny_lm
    E = model.get_output_embeddings().weight
    assert torch.equal(E[tok("1").input_ids[0]], E[tok("2").input_ids[0]])
    judge = LanguageModelJudge(model, tok, prompt=PROMPT, order="first")
    assert judge.probs(A, B).tolist() == [0.5] * len(A)


def test_model_mode_is_restored_and_nothing_is_trained(tiny_lm):
    model, tok = tiny_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        judge = LanguageModelJudge(model, tok, tokens=TOKENS, prompt=PROMPT)
        judge.probs(A, B)
        assert model.training
    finally:
        model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"template": "no fields here"}, "first"),
        ({"template": "{first} {second} {third}"}, "may only use"),
        ({"template": "{first} {first} {second}"}, "exactly once"),
        ({"template": ""}, "template"),
        ({"tokens": ("1",)}, "tokens"),
        ({"tokens": "12"}, "tokens"),
        ({"tokens": (" apple pie", "2")}, "exactly one token"),
        ({"tokens": ("1", "1")}, "different"),
        ({"order": "second"}, "order"),
        ({"batch_size": 0}, "batch_size"),
        ({"prompt": 3}, "prompt"),
    ],
)
def test_bad_arguments_raise(tiny_lm, kwargs, match):
    model, tok = tiny_lm
    with pytest.raises(ValueError, match=match):
        LanguageModelJudge(model, tok, **kwargs)


def test_bad_inputs_raise(tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(ValueError, match="model"):
        LanguageModelJudge("gpt2", tok)
    with pytest.raises(ValueError, match="tokenizer"):
        LanguageModelJudge(model, None)
    judge = LanguageModelJudge(model, tok, tokens=TOKENS)
    with pytest.raises(ValueError, match="same length"):
        judge.probs(A, B[:2])
    with pytest.raises(ValueError, match="list_a"):
        judge.probs(" an apple.", " a cherry.")
    with pytest.raises(ValueError, match="prompts"):
        judge.probs(A, B, prompts=[PROMPT])
    with pytest.raises(ValueError, match="positions"):
        judge.probs([" apple" * 200], [" cherry."])
    with pytest.raises(ValueError, match="at least one pair"):
        judge.position_bias([], [])
