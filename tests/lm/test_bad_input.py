"""Bad inputs on the GPT-2 side get a ValueError naming the argument, never a silent wrong run.

Four classes of mistakes, each checked where every path goes through it:

1. a bare string (or bytes, a dict, a generator, an empty list) where a sequence of texts or
   records is expected: ``data.validate_texts`` / ``validate_*_examples`` refuse it (a str is
   iterable and would train on one-character prompts);
2. token ids outside the model's vocabulary and sequences longer than its positions:
   ``data.check_model_inputs`` where ids enter a model (log-probs, sampling), and the trainer's
   every row against ``n_positions`` where it meets the model (no raw ``IndexError`` from torch);
3. every ``TrainConfig`` field, per algorithm (which of beta / tau from ``ALGORITHMS`` and
   ``objectives.LOSS_STRENGTH``), real finite numbers only;
4. judges: a plain callable ``fn(a, b) -> Pr(a beats b)`` is accepted (wrapped), anything else is
   refused at the start, and every probability a judge returns is checked (``judges.judge_probs``).

Plus valid calls that must keep working (a 2-step offline DPO run, a 2-step online IPO run with a
plain-function judge). The models are tiny random GPT-2s (one layer, width 16, 32 positions) with
GPT-2's real tokenizer, so the file runs in seconds.
"""

from __future__ import annotations

import copy
import math
import types

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from prefopt_toy.lm import data as data_mod
from prefopt_toy.lm.data import check_model_inputs, model_limits, tokenize_pairs, tokenize_prompts
from prefopt_toy.lm.judges import CallableJudge, Judge, LiftedGameJudge, as_judge, judge_probs
from prefopt_toy.lm.logprobs import completion_logprobs, token_logprobs, token_logprobs_from_logits
from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer
from prefopt_toy.lm.sampling import sample
from prefopt_toy.lm.train.online import label_weights, nash_md_pg_surrogate, sample_pairs
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer, train

N_POSITIONS = 32
VOCAB = 50257
PROMPTS = ["My favourite fruit is", "The best fruit is"]
DATASET = [
    {"prompt": PROMPTS[0], "chosen": " a cherry.", "rejected": " an apple."},
    {"prompt": PROMPTS[1], "chosen": " a banana.", "rejected": " a secret."},
]
FRUITS = {"apple": ("apple",), "banana": ("banana",), "cherry": ("cherry",)}
P3 = [[0.5, 0.7, 0.2], [0.3, 0.5, 0.8], [0.8, 0.2, 0.5]]


def _tiny(vocab: int = VOCAB, n_positions: int = N_POSITIONS, seed: int = 0) -> GPT2LMHeadModel:
    special = min(50256, vocab - 1)  # GPT-2's EOS, or the last id of a smaller vocabulary
    config = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=16,
        vocab_size=vocab,
        n_positions=n_positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=special,
        eos_token_id=special,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def lm():
    ref = _tiny()
    return copy.deepcopy(ref), ref, gpt2_tokenizer()


def _cfg(algorithm: str = "dpo", **kw) -> TrainConfig:
    base = dict(reduction="sum", steps=2, batch_size=2, lr=1e-3, max_new_tokens=4, max_length=24)
    base.update({"beta": 0.1} if algorithm in ("dpo", "slic", "online_dpo") else {"tau": 0.5})
    base.update(kw)
    return TrainConfig(algorithm, **base)


# ----------------------------------------------------------------------------- valid calls still work


def test_valid_offline_and_online_runs_still_work_with_a_plain_function_judge(lm):
    policy, ref, tok = lm
    summary = train(_cfg("dpo"), copy.deepcopy(policy), ref, tok, dataset=DATASET)
    assert summary["steps"] == 2 and math.isfinite(summary["final"]["loss"])
    # a plain function is a judge (wrapped in a CallableJudge), and tuples of prompts are fine
    summary = train(
        _cfg("online_ipo", eval_every=2, n_eval=2),
        copy.deepcopy(policy),
        ref,
        tok,
        prompts=tuple(PROMPTS),
        judge=lambda a, b: 0.5 + 0.5 * ((len(a) > len(b)) - (len(a) < len(b))),
    )
    assert summary["steps"] == 2 and math.isfinite(summary["final"]["loss"])
    assert 0.0 <= summary["final"]["win_rate"] <= 1.0
    # the dataset's prompts are the evaluation prompts; a task supplies prompts
    task = types.SimpleNamespace(prompt_templates=tuple(PROMPTS))
    summary = train(
        _cfg("online_ipo"),
        copy.deepcopy(policy),
        ref,
        tok,
        task=task,
        judge=LiftedGameJudge(P3, FRUITS),
    )
    assert summary["steps"] == 2


# ----------------------------------------------------------------------------- 1. sequences of texts / records


def _empty_generator():
    yield from ()


@pytest.mark.parametrize(
    "prompts,match",
    [
        ("My favourite fruit is", r"prompts must be a list or tuple of str, not a single str"),
        (b"My favourite fruit is", r"prompts must be a list or tuple of str, not a single bytes"),
        ({"prompt": "My favourite fruit is"}, r"prompts must be a list or tuple of str, got dict"),
        (_empty_generator(), r"prompts must be a list or tuple of str, got generator"),
        ({"a", "b"}, r"prompts must be a list or tuple of str, got set"),
        ([], r"prompts must not be empty"),
        (["My favourite fruit is", 3], r"prompts\[1\] must be a str, got int"),
        (["My favourite fruit is", "   "], r"prompts\[1\] is an empty text"),
    ],
    ids=["str", "bytes", "dict", "generator", "set", "empty", "non-str", "blank"],
)
def test_online_prompts_must_be_a_sequence_of_texts(lm, prompts, match):
    policy, ref, tok = lm
    with pytest.raises(ValueError, match=match):
        train(_cfg("online_ipo"), policy, ref, tok, prompts=prompts, judge=lambda a, b: 0.5)


def test_evaluation_prompts_of_an_offline_run_must_be_texts_too(lm):
    policy, ref, tok = lm
    with pytest.raises(
        ValueError, match="prompts must be a list or tuple of str, not a single str"
    ):
        Trainer(_cfg("dpo"), policy, ref, tok, dataset=DATASET, prompts="My favourite fruit is")


@pytest.mark.parametrize(
    "dataset,match",
    [
        ("My favourite fruit is", r"dataset must be a list or tuple of dicts .*not a single str"),
        (DATASET[0], r"dataset must be a list or tuple of dicts .*got dict"),
        (iter(DATASET), r"dataset must be a list or tuple of dicts .*got list_iterator"),
        (_empty_generator(), r"dataset must be a list or tuple of dicts .*got generator"),
        ([], r"dataset must not be empty"),
        ([("p", "c", "r")], r"dataset\[0\] must be a dict"),
        ([{"prompt": "Hi", "chosen": " yes."}], r"dataset\[0\] is missing the key 'rejected'"),
        (
            [{"prompt": "Hi", "response": " yes.", "rejected": " no."}],
            r"dataset\[0\] is missing the key 'chosen'",
        ),
        (
            [{"prompt": "Hi", "chosen": "", "rejected": " no."}],
            r"dataset\[0\]\['chosen'\] is an empty completion",
        ),
        (
            [{"prompt": " ", "chosen": " yes.", "rejected": " no."}],
            r"dataset\[0\]\['prompt'\] is an empty prompt",
        ),
        (
            [{"prompt": "Hi", "chosen": 1, "rejected": " no."}],
            r"dataset\[0\]\['chosen'\] must be a string",
        ),
    ],
    ids=[
        "str",
        "dict",
        "iterator",
        "generator",
        "empty",
        "tuple-record",
        "missing-key",
        "wrong-key",
        "empty-completion",
        "blank-prompt",
        "non-str",
    ],
)
def test_offline_dataset_must_be_a_sequence_of_records(lm, dataset, match):
    policy, ref, tok = lm
    with pytest.raises(ValueError, match=match):
        train(_cfg("dpo"), policy, ref, tok, dataset=dataset)


def test_a_dataset_given_to_an_online_algorithm_is_refused_not_ignored(lm):
    policy, ref, tok = lm
    with pytest.raises(ValueError, match="dataset is only used by the offline algorithms"):
        train(
            _cfg("online_ipo"),
            policy,
            ref,
            tok,
            dataset=DATASET,
            prompts=PROMPTS,
            judge=lambda a, b: 0.5,
        )


def test_task_without_prompts_and_task_with_a_bare_string(lm):
    policy, ref, tok = lm
    with pytest.raises(ValueError, match="task must have prompt_templates or prompts"):
        train(_cfg("online_ipo"), policy, ref, tok, task=object(), judge=lambda a, b: 0.5)
    with pytest.raises(ValueError, match=r"task.prompt_templates must be a list or tuple of str"):
        train(
            _cfg("online_ipo"),
            policy,
            ref,
            tok,
            task=types.SimpleNamespace(prompt_templates="Hi"),
            judge=lambda a, b: 0.5,
        )


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda tok: tokenize_prompts(tok, "My favourite fruit is", max_length=8),
            "examples must be a list or tuple",
        ),
        (
            lambda tok: tokenize_prompts(tok, ["Hi", {"prompt": "x"}], max_length=8),
            r"examples\[0\] must be a dict",
        ),
        (
            lambda tok: tokenize_prompts(
                tok, ["My favourite fruit is"], max_length=2, name="prompts"
            ),
            r"prompts\[0\] is 4 tokens, more than max_length=2",
        ),
        (
            lambda tok: tokenize_pairs(tok, DATASET[0], max_length=24),
            "examples must be a list or tuple of dicts",
        ),
        (lambda tok: tokenize_pairs(None, DATASET, max_length=24), "tokenizer must be a tokenizer"),
        (
            lambda tok: data_mod.validate_texts(b"abc", "completions"),
            "completions must be a list or tuple of str",
        ),
    ],
    ids=[
        "prompts-str",
        "prompts-mixed",
        "prompt-too-long",
        "pairs-dict",
        "no-tokenizer",
        "texts-bytes",
    ],
)
def test_data_functions_reject_bare_strings_and_records(lm, call, match):
    with pytest.raises(ValueError, match=match):
        call(lm[2])


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda j: j.probs("an apple", "a cherry"),
            "list_a must be a list or tuple of str, not a single str",
        ),
        (
            lambda j: j.probs(["an apple"], b"a cherry"),
            "list_b must be a list or tuple of str, not a single bytes",
        ),
        (lambda j: j.classify("an apple"), "texts must be a list or tuple of str"),
        (
            lambda j: j.class_distribution(iter(["an apple"])),
            "texts must be a list or tuple of str",
        ),
        (
            lambda j: j.sample_labels("ab", "cd", torch.Generator()),
            "list_a must be a list or tuple of str",
        ),
    ],
    ids=["probs-str", "probs-bytes", "classify-str", "distribution-iterator", "labels-str"],
)
def test_judges_reject_bare_strings(call, match):
    with pytest.raises(ValueError, match=match):
        call(LiftedGameJudge(P3, FRUITS))


def test_sampled_label_weights_need_their_texts():
    with pytest.raises(ValueError, match=r"missing \['texts_a', 'texts_b'\]"):
        label_weights(
            torch.tensor([0.5], dtype=torch.float64),
            "sampled",
            judge=LiftedGameJudge(P3, FRUITS),
            generator=torch.Generator(),
        )


# ----------------------------------------------------------------------------- 2. lengths and token ids


def _right_padded(ids: list[int], n_prompt: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = torch.tensor([ids])
    comp = torch.zeros_like(t)
    comp[0, n_prompt:] = 1
    return t, torch.ones_like(t), comp


def test_log_probs_of_a_token_id_outside_the_vocabulary(lm):
    _, ref, _ = lm
    ids, attn, comp = _right_padded([464, 2646, 50300, 13], 2)
    with pytest.raises(
        ValueError,
        match=r"input_ids holds token id 50300 at \[0, 2\], outside model's vocabulary "
        r"\[0, 50257\) \(vocab_size=50257\)",
    ):
        completion_logprobs(ref, ids, attn, comp, reduction="sum")
    ids[0, 2] = -1
    with pytest.raises(ValueError, match="input_ids holds token id -1"):
        token_logprobs(ref, ids, attn, comp)
    with pytest.raises(
        ValueError, match=r"input_ids holds token id 7 at \[0, 2\], outside the logits' vocabulary"
    ):
        token_logprobs_from_logits(torch.zeros(1, 4, 5), torch.tensor([[1, 2, 7, 3]]), comp)


def test_log_probs_of_a_sequence_longer_than_the_positions(lm):
    _, ref, _ = lm
    ids, attn, comp = _right_padded([464] * (N_POSITIONS + 3), 4)
    with pytest.raises(
        ValueError,
        match=r"input_ids: row 0 needs 35 tokens, more than model's position limit "
        r"n_positions=32",
    ):
        completion_logprobs(ref, ids, attn, comp, reduction="sum")
    # padding beyond the positions is fine: positions are counted from the mask
    wide = torch.full((1, N_POSITIONS + 8), 50256)
    wide[0, :6] = torch.tensor([464, 2646, 373, 4950, 13, 50256])
    mask = (torch.arange(wide.shape[1]) < 6).long()[None]
    cmask = mask.clone()
    cmask[0, :3] = 0
    assert torch.isfinite(completion_logprobs(ref, wide, mask, cmask, reduction="sum")).all()


def test_sampling_past_the_positions_or_outside_the_vocabulary(lm):
    policy, ref, _ = lm
    gen = torch.Generator().manual_seed(0)
    ids = torch.full((1, 30), 464)
    mask = torch.ones_like(ids)
    with pytest.raises(
        ValueError,
        match=r"input_ids: row 0 needs 30 prompt tokens \+ max_new_tokens=4 = 34 "
        r"positions, more than model's position limit n_positions=32",
    ):
        sample(policy, ids, mask, max_new_tokens=4, generator=gen, eos_token_id=50256)
    with pytest.raises(ValueError, match="ref_model's position limit"):
        sample(
            policy,
            ids,
            mask,
            max_new_tokens=4,
            generator=gen,
            eos_token_id=50256,
            ref_model=ref,
            mixture=1.0,
        )
    bad = torch.tensor([[464, 60000]])
    with pytest.raises(
        ValueError, match=r"input_ids holds token id 60000 at \[0, 1\], outside model's vocabulary"
    ):
        sample(
            policy, bad, torch.ones_like(bad), max_new_tokens=2, generator=gen, eos_token_id=50256
        )
    ok = torch.tensor([[464, 2646]])
    with pytest.raises(
        ValueError, match=r"pad_token_id = 50257 is outside model's vocabulary \[0, 50257\)"
    ):
        sample(
            policy,
            ok,
            torch.ones_like(ok),
            max_new_tokens=2,
            generator=gen,
            eos_token_id=50256,
            pad_token_id=50257,
        )
    with pytest.raises(ValueError, match=r"eos_token_id = 70000 is outside model's vocabulary"):
        sample(policy, ok, torch.ones_like(ok), max_new_tokens=2, generator=gen, eos_token_id=70000)
    with pytest.raises(ValueError, match="must share one vocabulary"):
        sample(
            _tiny(vocab=101),
            torch.tensor([[5, 6]]),
            torch.ones(1, 2, dtype=torch.int64),
            max_new_tokens=2,
            generator=gen,
            eos_token_id=5,
            ref_model=_tiny(vocab=100),
            mixture=0.5,
        )
    with pytest.raises(ValueError, match="model must be a causal LM"):
        sample(None, ok, torch.ones_like(ok), max_new_tokens=2, generator=gen, eos_token_id=50256)


def test_trainer_rows_beyond_the_positions_and_a_tokenizer_for_another_vocabulary(lm):
    policy, ref, tok = lm
    # max_length is a cap: beyond the positions is fine while every row fits them
    Trainer(_cfg("dpo", max_length=40), policy, ref, tok, dataset=DATASET)
    long_row = {**DATASET[0], "chosen": " apple" * 30}  # about 33 tokens: past n_positions=32
    with pytest.raises(ValueError, match=r"more than model's position limit n_positions=32"):
        Trainer(_cfg("dpo", max_length=40), policy, ref, tok, dataset=[long_row, DATASET[1]])
    small = _tiny(vocab=50000)
    with pytest.raises(
        ValueError,
        match=r"tokenizer's eos_token_id \(50256\) is outside model's vocabulary \[0, 50000\)",
    ):
        Trainer(_cfg("dpo"), small, _tiny(vocab=50000, seed=1), tok, dataset=DATASET)


def test_trainer_rows_and_prompts_longer_than_max_length(lm):
    policy, ref, tok = lm
    long_text = " apple" * 30
    with pytest.raises(
        ValueError,
        match=r"dataset\[1\]\['chosen'\]: prompt \+ completion \+ EOS is \d+ tokens, "
        r"more than max_length=24",
    ):
        Trainer(
            _cfg("dpo"), policy, ref, tok, dataset=[DATASET[0], {**DATASET[1], "chosen": long_text}]
        )
    with pytest.raises(
        ValueError,
        match=r"prompts\[1\] is \d+ tokens, more than max_length - max_new_tokens = "
        r"24 - 4 = 20",
    ):
        Trainer(
            _cfg("online_ipo"),
            policy,
            ref,
            tok,
            prompts=[PROMPTS[0], "Fruit:" + long_text],
            judge=lambda a, b: 0.5,
        )


def test_model_limits_read_max_position_embeddings_of_other_architectures():
    class Stub(torch.nn.Module):
        config = types.SimpleNamespace(vocab_size=10, max_position_embeddings=4)

    assert model_limits(Stub()) == (10, 4, "max_position_embeddings")
    with pytest.raises(
        ValueError,
        match=r"needs 5 tokens, more than ref's position limit max_position_embeddings=4",
    ):
        check_model_inputs(Stub(), torch.zeros(1, 5, dtype=torch.int64), model_name="ref")
    with pytest.raises(ValueError, match=r"token id 10 at \[0, 1\]"):
        check_model_inputs(Stub(), torch.tensor([[1, 10]]))
    check_model_inputs(
        torch.nn.Linear(2, 2), torch.tensor([[1, 10**6]])
    )  # unknown limits: nothing checked


# ----------------------------------------------------------------------------- 3. TrainConfig


@pytest.mark.parametrize(
    "algorithm,kwargs,match",
    [
        ("dpo", dict(beta=-1), r"beta must be > 0, got -1"),
        ("dpo", dict(beta=0), r"beta must be > 0"),
        ("dpo", dict(), r"beta is required for algorithm 'dpo'"),
        ("slic", dict(), r"beta is required for algorithm 'slic'"),
        ("online_dpo", dict(), r"beta is required for algorithm 'online_dpo'"),
        ("offline", dict(loss="gpo_squared"), r"beta is required"),
        ("dpo", dict(beta="0.1"), r"beta must be a real number, got str"),
        ("dpo", dict(beta=True), r"beta must be a real number, got bool"),
        ("dpo", dict(beta=math.nan), r"beta must be finite"),
        ("dpo", dict(beta=math.inf), r"beta must be finite"),
        ("dpo", dict(beta=0.1, tau=0.1), r"tau is not used by algorithm 'dpo'"),
        ("ipo", dict(), r"tau is required for algorithm 'ipo'"),
        ("ipo", dict(tau=0.1, beta=0.1), r"beta is not used by algorithm 'ipo'"),
        ("ipo", dict(tau=-0.5), r"tau must be > 0"),
        ("online_ipo", dict(), r"tau is required"),
        ("ipo_md", dict(mixture=0.5), r"tau is required"),
        ("nash_md_pg", dict(), r"tau is required"),
        ("nash_md_pg", dict(beta=0.1), r"beta is not used by algorithm 'nash_md_pg'"),
        ("nash_md_pg", dict(tau=0.1, loss="dpo"), r"loss is not used by nash_md_pg"),
        ("offline", dict(beta=0.1), r"loss must be one of"),
        ("offline", dict(beta=0.1, loss="sigmoid"), r"loss must be one of"),
        ("offline", dict(beta=0.1, loss=["dpo"]), r"loss must be one of"),
        ("dpo", dict(beta=0.1, loss="ipo"), r"algorithm 'dpo' uses loss 'dpo'"),
        ("ppo", dict(), r"algorithm must be one of"),
        (["dpo"], dict(), r"algorithm must be one of"),
    ],
)
def test_train_config_hyperparameters_per_algorithm(algorithm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(algorithm, reduction="sum", **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(reduction="avg"), "reduction"),
        (dict(reduction=None), "reduction is required"),
        (dict(mixture=0.5), r"mixture must be 0 for 'dpo'"),
        (dict(mixture=-0.1), r"mixture must lie in \[0, 1\]"),
        (dict(mixture="0"), r"mixture must be a real number"),
        (dict(lr=0), r"lr must be > 0"),
        (dict(lr=-1e-4), r"lr must be > 0"),
        (dict(lr=math.nan), r"lr must be finite"),
        (dict(lr=math.inf), r"lr must be finite"),
        (dict(lr="1e-4"), r"lr must be a real number"),
        (dict(lr=True), r"lr must be a real number"),
        (dict(steps=0), r"steps must be >= 1"),
        (dict(steps=2.0), r"steps must be an integer"),
        (dict(steps=True), r"steps must be an integer"),
        (dict(batch_size=0), r"batch_size must be >= 1"),
        (dict(batch_size="4"), r"batch_size must be an integer"),
        (dict(max_new_tokens=0), r"max_new_tokens must be >= 1"),
        (
            dict(max_length=16, max_new_tokens=16),
            r"max_length \(16\) must exceed max_new_tokens \(16\)",
        ),
        (dict(log_every=0), r"log_every must be >= 1"),
        (dict(eval_every=-1), r"eval_every must be >= 0"),
        (dict(eval_every=1.5), r"eval_every must be an integer"),
        (dict(n_eval=0), r"n_eval must be >= 1"),
        (dict(checkpoint_every=-1), r"checkpoint_every must be >= 0"),
        (dict(checkpoint_every=2), r"checkpoint_every > 0 needs run_dir"),
        (dict(seed=-1), r"seed must be >= 0"),
        (dict(seed=2**40), r"seed must be < 2\*\*32"),
        (dict(seed=1.0), r"seed must be an integer"),
        (dict(warmup_steps=-1), r"warmup_steps must be >= 0"),
        (dict(temperature=0), r"temperature must be > 0"),
        (dict(temperature=math.nan), r"temperature must be finite"),
        (dict(max_grad_norm=0), r"max_grad_norm must be > 0"),
        (dict(max_grad_norm=-1.0), r"max_grad_norm must be > 0"),
        (dict(max_grad_norm=math.inf), r"max_grad_norm must be finite"),
        (dict(max_grad_norm="1"), r"max_grad_norm must be a real number"),
        (dict(lr_schedule="cosine"), r"lr_schedule must be one of"),
        (dict(lr_schedule=None), r"lr_schedule must be one of"),
        (dict(labels="soft"), r"labels must be one of \('dataset',\) for algorithm 'dpo'"),
        (dict(n_label_samples=0), r"n_label_samples must be >= 1"),
        (dict(n_label_samples=4), r"n_label_samples is only used with labels='sampled'"),
        (dict(run_dir=3), r"run_dir must be None or a non-empty path"),
        (dict(run_dir=""), r"run_dir must be None or a non-empty path"),
        (dict(show_progress="yes"), r"show_progress must be None or a bool"),
    ],
)
def test_train_config_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig("dpo", **{"reduction": "sum", "beta": 0.1, **kwargs})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(labels="dataset"), r"labels must be one of \('soft', 'hard', 'sampled'\)"),
        (dict(labels="hardd"), r"labels must be one of"),
        (dict(labels=1), r"labels must be one of"),
        (dict(mixture=0.3), r"mixture must be 0 for 'online_ipo'"),
        (
            dict(labels="soft", n_label_samples=3),
            r"n_label_samples is only used with labels='sampled'",
        ),
    ],
)
def test_train_config_online_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig("online_ipo", **{"reduction": "sum", "tau": 0.5, **kwargs})


def test_train_config_accepts_and_normalises_valid_values(tmp_path):
    import numpy as np

    cfg = TrainConfig(
        "ipo_md",
        reduction="mean",
        tau=np.float64(0.25),
        mixture=1,
        lr=1,
        steps=np.int64(3),
        labels="sampled",
        n_label_samples=2,
        run_dir=tmp_path,
        show_progress=False,
    )
    assert (cfg.tau, cfg.mixture, cfg.lr, cfg.steps) == (0.25, 1.0, 1.0, 3)
    assert type(cfg.tau) is float and type(cfg.steps) is int and cfg.run_dir == str(tmp_path)
    assert TrainConfig("nash_md_pg", reduction="sum", tau=0.1, mixture=0.0).strength_key == "tau"
    assert TrainConfig("offline", reduction="sum", loss="gpo_hinge", beta=0.2).loss_kwargs() == {
        "loss": "gpo_hinge",
        "reduction": "sum",
        "beta": 0.2,
    }


def test_a_field_changed_after_construction_is_checked_by_the_trainer(lm):
    policy, ref, tok = lm
    cfg = _cfg("dpo")
    cfg.beta = -1.0
    with pytest.raises(ValueError, match="beta must be > 0"):
        Trainer(cfg, policy, ref, tok, dataset=DATASET)


# ----------------------------------------------------------------------------- 4. judges


class _ConstantJudge(Judge):
    def __init__(self, value):
        self.value = value

    def probs(self, list_a, list_b):
        return self.value if not callable(self.value) else self.value(len(list_a))


@pytest.mark.parametrize(
    "judge,match",
    [
        (
            0.5,
            r"judge must be a prefopt_toy.lm.judges.Judge .* or a plain callable fn\(a, b\) -> Pr\(a beats b\) "
            r"in \[0, 1\], got float",
        ),
        ("lifted", r"judge must be a prefopt_toy.lm.judges.Judge .*got str"),
        (LiftedGameJudge, r"judge must be a prefopt_toy.lm.judges.Judge .*got ABCMeta"),
        (
            lambda prompts, a, b: 0.5,
            r"judge must be callable as judge\(a, b\) with two completion texts",
        ),
        (lambda: 0.5, r"judge must be callable as judge\(a, b\)"),
    ],
    ids=["number", "str", "class", "three-arguments", "no-argument"],
)
def test_a_judge_that_is_not_one_is_refused_at_the_start(lm, judge, match):
    policy, ref, tok = lm
    with pytest.raises(ValueError, match=match):
        Trainer(_cfg("online_ipo"), policy, ref, tok, prompts=PROMPTS, judge=judge)


@pytest.mark.parametrize(
    "judge,match",
    [
        (
            lambda a, b: 1.5,
            r"judge\('.*', '.*'\) must return a probability in \[0, 1\] \(Pr\(a beats b\)\), got 1.5",
        ),
        (lambda a, b: math.nan, r"judge\(.*\) must return a probability in \[0, 1\]"),
        (lambda a, b: "0.5", r"judge\(.*\) must return a probability in \[0, 1\] .*got '0.5'"),
        (lambda a, b: [0.5, 0.5], r"judge\(.*\) must return a probability"),
        (
            _ConstantJudge(lambda n: torch.full((n,), math.nan)),
            r"judge \(_ConstantJudge\).probs must return probabilities "
            r"in \[0, 1\] .*got nan at index 0",
        ),
        (
            _ConstantJudge(lambda n: torch.full((n,), -0.1)),
            r"judge \(_ConstantJudge\).probs must return probabilities",
        ),
        (
            _ConstantJudge(lambda n: torch.full((n + 1,), 0.5)),
            r"judge \(_ConstantJudge\).probs must return shape \(2,\)",
        ),
        (_ConstantJudge(lambda n: [0.5] * n), None),  # a list of probabilities is fine
        (
            _ConstantJudge(lambda n: "0.5"),
            r"judge \(_ConstantJudge\).probs must return a \(n,\) tensor",
        ),
        (
            _ConstantJudge(lambda n: torch.ones(n, dtype=torch.bool)),
            r"judge \(_ConstantJudge\).probs must return real",
        ),
    ],
    ids=[
        "above-1",
        "nan",
        "str",
        "list",
        "subclass-nan",
        "subclass-negative",
        "subclass-shape",
        "subclass-list",
        "subclass-str",
        "subclass-bool",
    ],
)
def test_judge_outputs_are_checked_naming_the_judge(lm, judge, match):
    policy, ref, tok = lm
    trainer = Trainer(
        _cfg("online_ipo", steps=1), copy.deepcopy(policy), ref, tok, prompts=PROMPTS, judge=judge
    )
    if match is None:
        assert math.isfinite(trainer.train_step()["loss"])
        return
    with pytest.raises(ValueError, match=match):
        trainer.train_step()


def test_judge_helpers():
    judge = as_judge(lambda a, b: 0.25)
    assert isinstance(judge, CallableJudge) and as_judge(judge) is judge
    assert judge.prob("a", "b") == 0.25
    assert judge_probs(judge, [], []).shape == (0,)
    with pytest.raises(ValueError, match=r"fn must be callable as fn\(a, b\)"):
        CallableJudge(lambda a: 0.5)
    with pytest.raises(
        ValueError, match=r"judge \(_ConstantJudge\).probs must return probabilities"
    ):
        _ConstantJudge(torch.tensor([2.0])).sample_labels(["a"], ["b"], torch.Generator())
    with pytest.raises(ValueError, match=r"list_a and list_b must have the same length"):
        judge_probs(judge, ["a"], ["b", "c"])


# ----------------------------------------------------------------------------- 5. the rest


def test_other_arguments_are_named(lm):
    policy, ref, tok = lm
    ids, attn, comp = _right_padded([464, 2646, 373, 13], 2)
    with pytest.raises(ValueError, match="model must be a causal LM"):
        token_logprobs(None, ids, attn, comp)
    with pytest.raises(ValueError, match="attention_mask is required"):
        token_logprobs(ref, ids, None, comp)
    with pytest.raises(ValueError, match="tau must be > 0"):
        nash_md_pg_surrogate(torch.zeros(2), torch.zeros(2), torch.ones(2), tau=-1.0)
    with pytest.raises(ValueError, match="tau must be a real number"):
        nash_md_pg_surrogate(torch.zeros(2), torch.zeros(2), torch.ones(2), tau="0.1")
    with pytest.raises(ValueError, match="win must hold probabilities"):
        nash_md_pg_surrogate(torch.zeros(2), torch.zeros(2), torch.tensor([0.5, 2.0]), tau=0.1)
    with pytest.raises(ValueError, match="policy_logps must be a"):
        nash_md_pg_surrogate([0.0], torch.zeros(1), torch.ones(1), tau=0.1)
    with pytest.raises(
        ValueError, match="prompt_batch must be a dict with 'input_ids' and 'attention_mask'"
    ):
        sample_pairs(
            policy,
            ref,
            tok,
            {"ids": ids},
            mixture_a=0.0,
            mixture_b=0.0,
            max_new_tokens=2,
            generator=torch.Generator(),
        )
    with pytest.raises(ValueError, match="resume must be a bool"):
        train(_cfg("dpo"), policy, ref, tok, dataset=DATASET, resume="yes")
    with pytest.raises(ValueError, match="model must be a causal LM"):
        Trainer(_cfg("dpo"), "gpt2", ref, tok, dataset=DATASET)
    with pytest.raises(ValueError, match="tokenizer must be a tokenizer"):
        Trainer(_cfg("dpo"), policy, ref, None, dataset=DATASET)
    with pytest.raises(ValueError, match="judge is required"):
        Trainer(_cfg("online_ipo"), policy, ref, tok, prompts=PROMPTS)
    with pytest.raises(ValueError, match="config must be a TrainConfig"):
        Trainer({"algorithm": "dpo"}, policy, ref, tok, dataset=DATASET)
