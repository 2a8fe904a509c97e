"""Preference data (TRL's convention) and the generated corpus.

Oracles: ids and masks built here by hand from the tokenizer's output for each piece; class
counts from the task's frequencies; keyword classification by hand.
"""

from __future__ import annotations

import pytest
import torch

from prefopt_toy.lm.data import build_batch, tokenize_pairs, tokenize_prompts
from prefopt_toy.lm.models.corpus import (
    FRUIT_TASK,
    MOVIE_TASK,
    LiftedTask,
    lifted_corpus,
    sentiment_corpus,
    training_corpus,
)
from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer

EXAMPLES = [
    {
        "prompt": "My favourite fruit is",
        "chosen": " an apple.",
        "rejected": " a bowl of dark cherries.",
    },
    {"prompt": "The film was", "chosen": " wonderful.", "rejected": " dull."},
]


@pytest.mark.parametrize("side", ["left", "right"])
def test_tokenize_pairs_masks_match_hand_tokenisation(side):
    tok = gpt2_tokenizer()
    out = tokenize_pairs(tok, EXAMPLES, max_length=32, padding_side=side)
    # Hand tokenisation: prompt ids, then completion ids, then EOS (50256); pad with 50256.
    # "The film was" = [464, 2646, 373] in GPT-2's encoder.json.
    assert tok("The film was").input_ids == [464, 2646, 373]
    rows = {
        k: [tok(ex["prompt"]).input_ids + tok(ex[k]).input_ids + [50256] for ex in EXAMPLES]
        for k in ("chosen", "rejected")
    }
    t = max(len(r) for k in rows for r in rows[k])
    for key in ("chosen", "rejected"):
        ids, attn, comp = (
            out[f"{key}_{n}"] for n in ("input_ids", "attention_mask", "completion_mask")
        )
        assert ids.shape == attn.shape == comp.shape == (2, t) and ids.dtype == torch.long
        for i, ex in enumerate(EXAMPLES):
            n_prompt = len(tok(ex["prompt"]).input_ids)
            row = rows[key][i]
            pad = [50256] * (t - len(row))
            expect_ids = row + pad if side == "right" else pad + row
            real = [1] * len(row)
            expect_attn = real + [0] * len(pad) if side == "right" else [0] * len(pad) + real
            compl = [0] * n_prompt + [1] * (len(row) - n_prompt)
            expect_comp = compl + [0] * len(pad) if side == "right" else [0] * len(pad) + compl
            assert ids[i].tolist() == expect_ids
            assert attn[i].tolist() == expect_attn
            assert comp[i].tolist() == expect_comp
    # The completion's EOS is covered although it equals the pad id.
    last = out["chosen_attention_mask"][0].nonzero().max()
    assert out["chosen_input_ids"][0, last] == 50256 and out["chosen_completion_mask"][0, last] == 1


def test_tokenize_pairs_validation():
    tok = gpt2_tokenizer()
    with pytest.raises(ValueError, match=r"examples\[1\] is missing the key 'rejected'"):
        tokenize_pairs(tok, [EXAMPLES[0], {"prompt": "a", "chosen": " b"}], max_length=32)
    with pytest.raises(ValueError, match=r"examples\[0\]\['chosen'\] is an empty completion"):
        tokenize_pairs(tok, [{"prompt": "a", "chosen": "", "rejected": " c"}], max_length=32)
    with pytest.raises(ValueError, match=r"examples\[0\]\['prompt'\] is an empty prompt"):
        tokenize_pairs(tok, [{"prompt": " ", "chosen": " b", "rejected": " c"}], max_length=32)
    with pytest.raises(ValueError, match=r"examples\[0\]\['rejected'\].*max_length=8"):
        tokenize_pairs(tok, EXAMPLES, max_length=8)
    with pytest.raises(ValueError, match="examples must be a list"):
        tokenize_pairs(tok, EXAMPLES[0], max_length=32)


def test_build_batch_and_prompts():
    b = build_batch([[5, 6], [7]], [[8], [9, 10, 11]], pad_token_id=0, padding_side="right")
    assert b["input_ids"].tolist() == [[5, 6, 8, 0], [7, 9, 10, 11]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert b["completion_mask"].tolist() == [[0, 0, 1, 0], [0, 1, 1, 1]]
    with pytest.raises(ValueError, match=r"completion_ids\[1\] is empty"):
        build_batch([[1], [2]], [[3], []], pad_token_id=0)
    tok = gpt2_tokenizer()
    p = tokenize_prompts(tok, [{"prompt": "Hello world"}, {"prompt": "Hello"}], max_length=8)
    assert p["input_ids"].tolist() == [[15496, 995], [50256, 15496]]
    assert p["attention_mask"].tolist() == [[1, 1], [0, 1]]


def test_lifted_corpus_counts_labels_and_determinism():
    texts, labels = lifted_corpus(FRUIT_TASK, 200, seed=3)
    # 200 * (0.5, 0.3, 0.15, 0.05)
    assert [labels.count(c) for c in ("apple", "banana", "cherry", "other")] == [100, 60, 30, 10]
    for text, lab in zip(texts, labels):
        prompt = next(p for p in FRUIT_TASK.prompt_templates if text.startswith(p))
        completion = text[len(prompt) :]
        pool = FRUIT_TASK.other if lab == "other" else FRUIT_TASK.classes[lab]
        assert completion in pool
    assert lifted_corpus(FRUIT_TASK, 200, seed=3) == (texts, labels)
    assert lifted_corpus(FRUIT_TASK, 200, seed=4)[0] != texts
    assert FRUIT_TASK.classify(" I like bananas") == "banana"
    assert FRUIT_TASK.classify(" an apple and a cherry") == "other"  # two classes -> none
    with pytest.raises(ValueError, match="n must be"):
        lifted_corpus(FRUIT_TASK, 0)


def test_lifted_task_validation():
    with pytest.raises(ValueError, match="frequencies"):
        LiftedTask(
            "x",
            ("P",),
            {"a": (" a.",), "b": (" b.",)},
            {"a": ("a",), "b": ("b",)},
            (" c.",),
            {"a": 0.5, "b": 0.6, "other": 0.1},
        )
    with pytest.raises(ValueError, match="classified"):
        LiftedTask(
            "x",
            ("P",),
            {"a": (" zzz.",), "b": (" b.",)},
            {"a": ("a",), "b": ("b",)},
            (" q.",),
            {"a": 0.4, "b": 0.5, "other": 0.1},
        )


def test_sentiment_and_training_corpus():
    texts, labels = sentiment_corpus(MOVIE_TASK, 101, seed=0)
    assert labels.count("positive") == 51 and labels.count("negative") == 50
    for text, lab in zip(texts, labels):
        prompt = next(p for p in MOVIE_TASK.prompts if text.startswith(p))
        table = MOVIE_TASK.positive if lab == "positive" else MOVIE_TASK.negative
        assert text[len(prompt) :] in table[prompt]
    mixed = training_corpus(seed=0, n_lifted=30, n_sentiment=20)
    assert sorted(mixed) == sorted(
        lifted_corpus(FRUIT_TASK, 30, seed=0)[0] + sentiment_corpus(MOVIE_TASK, 20, seed=1)[0]
    )
