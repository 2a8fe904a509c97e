"""The GPT-2 reward model: construction, pooling at the last real token, and TRL 1.13 parity.

TRL is a test-only peer: ``RewardTrainer.compute_loss`` on a tiny ``GPT2ForSequenceClassification``
built here (offline) must equal ``reward_model_loss`` on ``reward_scores`` of the same batch.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from prefopt_toy.lm.data import tokenize_pairs
from prefopt_toy.lm.models import EOS_TOKEN_ID, VOCAB_SIZE, gpt2_tokenizer
from prefopt_toy.lm.models.reward import reward_model, reward_scores, score_texts
from prefopt_toy.lm.train.rlhf import reward_model_loss

pytestmark = [
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]


def _config(vocab: int = VOCAB_SIZE) -> GPT2Config:
    eos = EOS_TOKEN_ID if vocab == VOCAB_SIZE else 0
    return GPT2Config(
        n_layer=1,
        n_head=1,
        n_embd=16,
        n_positions=64,
        vocab_size=vocab,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )


def _policy(seed: int = 3) -> GPT2LMHeadModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(_config()).eval()


def _right_padded(
    seed: int = 0, rows: int = 6, lengths=(5, 9, 7, 3, 9, 6), pad: int = EOS_TOKEN_ID
):
    """Random ids below the pad id, right padding: the last real token is never ``pad``."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(0, 50000, (rows, T), generator=g)
    mask = torch.zeros(rows, T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = pad
    return ids, mask


def test_reward_model_from_policy_copies_the_transformer():
    policy = _policy()
    before = copy.deepcopy(policy.state_dict())
    rm = reward_model(policy, seed=0)
    assert isinstance(rm, GPT2ForSequenceClassification)
    assert rm.config.num_labels == 1 and tuple(rm.score.weight.shape) == (1, 16)
    assert not rm.training
    for name, value in policy.transformer.state_dict().items():
        assert torch.equal(rm.transformer.state_dict()[name], value)
    for name, value in before.items():  # the policy is not modified
        assert torch.equal(policy.state_dict()[name], value)
    assert rm.transformer.wte.weight.data_ptr() != policy.transformer.wte.weight.data_ptr()


def test_reward_model_is_seeded_and_leaves_the_global_rng():
    state = torch.random.get_rng_state()
    a, b, c = (reward_model(_config(), seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.score.weight, b.score.weight)
    assert not torch.equal(a.score.weight, c.score.weight)


def test_reward_scores_match_transformers_pooling_and_padding_side():
    rm = reward_model(_policy(), seed=0)
    ids, mask = _right_padded()
    with torch.no_grad():
        ours = reward_scores(rm, ids, mask)
        theirs = rm(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        # the same rows left-padded: positions come from the mask, the last real token is scored
        left_ids, left_mask = torch.full_like(ids, EOS_TOKEN_ID), torch.zeros_like(mask)
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())
            left_ids[i, -n:], left_mask[i, -n:] = ids[i, :n], 1
        torch.testing.assert_close(reward_scores(rm, left_ids, left_mask), ours, rtol=0, atol=1e-5)


def test_a_trailing_eos_is_scored():
    """transformers pools before a trailing EOS (pad = EOS); the mask makes it the scored token."""
    rm = reward_model(_policy(), seed=0)
    ids = torch.tensor([[11, 12, 13, EOS_TOKEN_ID]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        with_eos = reward_scores(rm, ids, mask)
        without = reward_scores(rm, ids[:, :3], mask[:, :3])
        hf = rm(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    torch.testing.assert_close(hf, without, rtol=0, atol=1e-6)
    assert not torch.allclose(with_eos, without)


def test_score_texts_uses_the_preference_data_layout():
    tok = gpt2_tokenizer()
    rm = reward_model(_policy(), seed=0)
    examples = [
        {"prompt": "My favourite fruit is", "chosen": " an apple.", "rejected": " a banana."},
        {"prompt": "For a snack I usually pick", "chosen": " a cherry.", "rejected": ""},
    ]
    with torch.no_grad():
        got = score_texts(
            rm,
            tok,
            [e["prompt"] for e in examples] * 2,
            [e["chosen"] for e in examples] + [e["rejected"] for e in examples],
        )
        pairs = tokenize_pairs(tok, examples[:1], max_length=32)  # the empty one: EOS alone
        want = reward_scores(rm, pairs["chosen_input_ids"], pairs["chosen_attention_mask"])
    torch.testing.assert_close(got[:1], want, rtol=0, atol=1e-6)
    assert got.shape == (4,) and bool(torch.isfinite(got).all())


# --------------------------------------------------------------------------- TRL parity
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")


def _trl_trainer(tmp_path, rm, **config):
    tok = gpt2_tokenizer()
    data = datasets.Dataset.from_dict(
        {
            "prompt": ["The film was", "I thought it"],
            "chosen": [" great.", " wonderful."],
            "rejected": [" bad.", " dull and long."],
        }
    )
    args = trl.RewardConfig(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=2,
        disable_tqdm=True,
        **config,
    )
    return trl.RewardTrainer(model=rm, args=args, train_dataset=data, processing_class=tok)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reward_loss_equals_trl_reward_trainer(tmp_path, dtype):
    """Default RewardConfig (no margin, center_rewards_coefficient=None): loss and gradients equal."""
    rm = reward_model(_policy(), seed=0).to(dtype)
    trainer = _trl_trainer(tmp_path, rm)
    ids, mask = _right_padded()  # rows [:3] chosen, [3:] rejected (TRL's chunk order)
    rm.eval()
    theirs = trainer.compute_loss(rm, {"input_ids": ids, "attention_mask": mask})
    g_theirs = torch.autograd.grad(theirs, rm.score.weight)[0]
    r = reward_scores(rm, ids, mask)
    losses, metrics = reward_model_loss(r[:3], r[3:])
    ours = losses.mean()
    g_ours = torch.autograd.grad(ours, rm.score.weight)[0]
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, theirs, rtol=0, atol=tol)
    torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=tol)
    assert metrics["accuracy"] == pytest.approx(trainer._metrics["eval"]["accuracy"][-1])
    assert metrics["margin"] == pytest.approx(trainer._metrics["eval"]["margin"][-1], abs=1e-6)


def test_reward_loss_margin_and_centering_against_trl(tmp_path):
    """TRL's margin column is ``margin=``; its centring term is the one difference (not applied)."""
    rm = reward_model(_policy(), seed=0).to(torch.float64)
    ids, mask = _right_padded()
    margin = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    trainer = _trl_trainer(tmp_path / "a", rm)
    theirs = trainer.compute_loss(rm, {"input_ids": ids, "attention_mask": mask, "margin": margin})
    r = reward_scores(rm, ids, mask)
    ours = reward_model_loss(r[:3], r[3:], margin=margin)[0].mean()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)

    c = 0.01
    centred = _trl_trainer(tmp_path / "b", rm, center_rewards_coefficient=c)
    theirs_c = centred.compute_loss(rm, {"input_ids": ids, "attention_mask": mask})
    plain = reward_model_loss(r[:3], r[3:])[0].mean()
    torch.testing.assert_close(
        plain + c * ((r[:3] + r[3:]) ** 2).mean(), theirs_c, rtol=0, atol=1e-12
    )


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_error_naming_the_argument():
    rm = reward_model(_policy(), seed=0)
    tok = gpt2_tokenizer()
    ids, mask = _right_padded()
    with pytest.raises(ValueError, match="source"):
        reward_model(torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match="source"):
        reward_model(3.0)
    with pytest.raises(ValueError, match="seed"):
        reward_model(_config(), seed=1.5)
    with pytest.raises(ValueError, match="reward_model"):
        reward_scores(_policy(), ids, mask)
    with pytest.raises(ValueError, match="input_ids"):
        reward_scores(rm, ids.float(), mask)
    with pytest.raises(ValueError, match="attention_mask"):
        reward_scores(rm, ids, mask[:, :-1])
    with pytest.raises(ValueError, match="attention_mask"):
        reward_scores(rm, ids, 2 * mask)
    with pytest.raises(ValueError, match="attention_mask"):
        reward_scores(rm, ids, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="input_ids"):
        reward_scores(rm, ids + VOCAB_SIZE, mask)  # outside the vocabulary
    with pytest.raises(ValueError, match="prompts"):
        score_texts(rm, tok, "My favourite fruit is", [" an apple."])
    with pytest.raises(ValueError, match="prompts and completions"):
        score_texts(rm, tok, ["a", "b"], [" c"])
    with pytest.raises(ValueError, match="batch_size"):
        score_texts(rm, tok, ["a"], [" c"], batch_size=0)
    assert math.isfinite(float(score_texts(rm, tok, ["a"], [""]).detach()[0]))
