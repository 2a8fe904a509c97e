"""The lifted game of completion lengths (``prefopt_toy.lm.bridge.length_game``).

Oracles: GPT-2's BPE token counts of the fruit phrasings (``gpt2_tokenizer``, independently of
the task's own counting); the Bradley-Terry formula; and, on the tiny model's samples, the
trainer lengths ``sample_classes_and_lengths`` measures against the classes' lengths.
"""

from __future__ import annotations

import math

import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge.family import effective_lengths, sample_classes_and_lengths
from prefopt_toy.lm.bridge.length_game import (
    LENGTH_TASK,
    LengthJudge,
    LengthTask,
    length_game,
    length_judge,
)
from prefopt_toy.lm.models.corpus import FRUIT_TASK, OTHER
from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" an apple.", "3 tokens"),
        (" a green apple.", "4 tokens"),
        (" a crisp red apple.", "5 tokens"),
        (" apples, without a doubt.", "6 tokens"),
        (" a bowl of dark cherries.", "7 tokens"),
        (" a secret.", "3 tokens"),  # an "other" of the fruit game is a length class here
    ],
)
def test_classify_counts_gpt2_tokens(text, expected):
    assert len(gpt2_tokenizer()(text).input_ids) == int(expected.split()[0])
    assert LENGTH_TASK.classify(text) == expected


@pytest.mark.parametrize("text", ["", " a", " a bowl of dark red cherries, I think."])
def test_classify_other_for_counts_outside_the_task(text):
    n = len(gpt2_tokenizer()(text).input_ids)
    assert n not in LENGTH_TASK.token_counts
    assert LENGTH_TASK.classify(text) == OTHER
    assert LENGTH_TASK.class_index(text) == len(LENGTH_TASK.class_names)


def test_every_fruit_phrasing_has_a_length_class():
    for pool in (*FRUIT_TASK.classes.values(), FRUIT_TASK.other):
        for text in pool:
            assert LENGTH_TASK.classify(text) != OTHER, text


def test_class_names_and_lengths():
    task = LengthTask("t", ("Hello",), (2, 5))
    assert task.class_names == ("2 tokens", "5 tokens")
    assert task.class_lengths == (3, 6)  # + EOS, the trainer's completion length
    assert LENGTH_TASK.prompt_templates == FRUIT_TASK.prompt_templates


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"name": ""}, "name"),
        ({"prompt_templates": ()}, "prompt_templates"),
        ({"prompt_templates": ("ok", " ")}, "prompt_templates"),
        ({"token_counts": (3,)}, "token_counts"),
        ({"token_counts": (0, 3)}, "token_counts"),
        ({"token_counts": (3, 2.5)}, "token_counts"),
        ({"token_counts": (4, 3)}, "token_counts"),
        ({"token_counts": (3, 3)}, "token_counts"),
    ],
)
def test_length_task_refuses_bad_arguments(kwargs, argument):
    base = {"name": "t", "prompt_templates": ("Hello",), "token_counts": (3, 4)}
    with pytest.raises(ValueError, match=argument):
        LengthTask(**{**base, **kwargs})


def test_classify_and_judge_refuse_non_text():
    with pytest.raises(ValueError, match="text"):
        LENGTH_TASK.classify(3)
    judge = length_judge(LENGTH_TASK, length_game(LENGTH_TASK, 0.5))
    with pytest.raises(ValueError, match="texts"):
        judge.classify(" an apple.")
    with pytest.raises(ValueError, match="task"):
        LengthJudge(FRUIT_TASK, length_game(LENGTH_TASK, 0.5))
    with pytest.raises(ValueError, match="task"):
        length_game(FRUIT_TASK, 0.5)
    with pytest.raises(ValueError, match="kappa"):
        length_game(LENGTH_TASK, -1.0)
    with pytest.raises(ValueError, match="other_loses"):
        length_judge(LENGTH_TASK, length_game(LENGTH_TASK, 0.5), other_loses=1.5)


def test_length_game_is_bradley_terry_in_kappa_times_length():
    kappa = 0.3
    P = length_game(LENGTH_TASK, kappa)
    L = LENGTH_TASK.class_lengths
    for i in range(len(L)):
        for j in range(len(L)):
            want = 1.0 / (1.0 + math.exp(-kappa * (L[i] - L[j])))
            assert float(P[i, j]) == pytest.approx(want, abs=1e-12)
    # its BT reward is kappa * L: DPO's optimum tilts mu by exp(kappa L / beta)
    mu = torch.tensor([0.2, 0.2, 0.3, 0.2, 0.1], dtype=torch.float64)
    want = mu * torch.exp(kappa * torch.tensor(L, dtype=torch.float64))
    assert torch.allclose(pt.rlhf_optimum(P, mu, 1.0), want / want.sum(), atol=1e-9)


def test_judge_classifies_by_length_and_borders_other():
    P = length_game(LENGTH_TASK, 0.5)
    judge = length_judge(LENGTH_TASK, P, other_loses=0.8)
    texts = [" an apple.", " a green apple.", " a bowl of dark cherries.", " a"]
    assert judge.classify(texts).tolist() == [0, 1, 4, 5]
    assert judge.class_names == (*LENGTH_TASK.class_names, OTHER)
    # a longer completion beats a shorter one with the game's probability; "other" loses 0.8
    assert float(judge.probs([texts[1]], [texts[0]])[0]) == pytest.approx(float(P[1, 0]))
    assert float(judge.probs([texts[0]], [texts[3]])[0]) == pytest.approx(0.8)
    assert judge.class_distribution(texts).tolist() == [0.25, 0.25, 0, 0, 0.25, 0.25]


def test_effective_lengths_on_the_length_game_are_the_class_lengths(tiny_lm):
    model, tok = tiny_lm
    judge = length_judge(LENGTH_TASK, length_game(LENGTH_TASK, 0.5))
    ids, lengths = sample_classes_and_lengths(
        model,
        tok,
        LENGTH_TASK,
        judge,
        n_samples=64,
        generator=torch.Generator().manual_seed(0),
        max_new_tokens=8,
    )
    K = len(LENGTH_TASK.class_names)
    seen = sorted(set(ids.tolist()) - {K})
    assert len(seen) >= 2  # the tiny model writes the fruit phrasings: several lengths occur
    L_eff = effective_lengths(ids, lengths, K + 1, beta=1.0, alpha=0.6)
    for c in seen:
        assert (lengths[ids == c] == LENGTH_TASK.class_lengths[c]).all()
        assert float(L_eff[c]) == pytest.approx(LENGTH_TASK.class_lengths[c], abs=1e-12)
