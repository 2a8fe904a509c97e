"""Completion log-probs against a hand-written gather + log_softmax and a per-token prefix loop.

Models: a randomly initialised tiny GPT-2 (GPT-2's vocabulary, float32) and a float64 one with a
small vocabulary for finite differences. No network.
"""

from __future__ import annotations

import pytest
import torch

from prefopt_toy.lm.logprobs import (
    completion_logprobs,
    completion_logprobs_from_logits,
    position_ids_from_mask,
    reduce_logprobs,
    token_logprobs,
)


def _model(vocab=50257, dtype=torch.float32, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab,
        n_layer=2,
        n_head=2,
        n_embd=32,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    return model.to(dtype).eval()


# (prompt ids, completion ids); 50256 (EOS) ends two completions.
ROWS = [
    ([464, 2646, 373], [4950, 13, 50256]),
    ([40, 7342, 428, 3807, 290], [6151, 50256]),
    ([3666], [257, 2266, 17180, 13]),
]


def _batch(side):
    t = max(len(p) + len(c) for p, c in ROWS)
    ids = torch.full((len(ROWS), t), 50256, dtype=torch.long)
    attn = torch.zeros_like(ids)
    comp = torch.zeros_like(ids)
    for i, (p, c) in enumerate(ROWS):
        n = len(p) + len(c)
        s = 0 if side == "right" else t - n
        ids[i, s : s + n] = torch.tensor(p + c)
        attn[i, s : s + n] = 1
        comp[i, s + len(p) : s + n] = 1
    return ids, attn, comp


def _loop_logprobs(model, reduction):
    """Per-token Python loop: feed each unpadded prefix alone, read the next token's log-prob."""
    out = []
    with torch.no_grad():
        for p, c in ROWS:
            seq = p + c
            lps = []
            for t in range(len(p), len(seq)):
                logits = model(torch.tensor([seq[:t]])).logits[0, -1].double()  # (V,)
                lps.append(float(torch.log_softmax(logits, dim=-1)[seq[t]]))
            out.append(sum(lps) if reduction == "sum" else sum(lps) / len(lps))
    return torch.tensor(out, dtype=torch.float64)


def _gather_logprobs(model, ids, attn, comp, reduction):
    """Hand-written gather + log_softmax over the whole batch."""
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(
            input_ids=ids, attention_mask=attn, position_ids=pos
        ).logits.double()  # (B, T, V)
    logp = torch.log_softmax(logits, dim=-1)
    res = []
    for b in range(ids.shape[0]):
        vals = [logp[b, t - 1, ids[b, t]] for t in range(1, ids.shape[1]) if comp[b, t]]
        res.append(sum(vals) if reduction == "sum" else sum(vals) / len(vals))
    return torch.stack(res)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_completion_logprobs_match_gather_and_prefix_loop(reduction, side):
    model = _model()
    ids, attn, comp = _batch(side)
    with torch.no_grad():
        got = completion_logprobs(model, ids, attn, comp, reduction=reduction)
    assert got.shape == (3,) and got.dtype == torch.float32
    torch.testing.assert_close(
        got.double(), _gather_logprobs(model, ids, attn, comp, reduction), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(got.double(), _loop_logprobs(model, reduction), rtol=1e-4, atol=1e-4)


def test_left_and_right_padding_agree_per_token():
    model = _model()
    with torch.no_grad():
        left = token_logprobs(model, *_batch("left"))
        right = token_logprobs(model, *_batch("right"))
    for i, (_, c) in enumerate(ROWS):
        torch.testing.assert_close(
            left[i][left[i] != 0], right[i][right[i] != 0], rtol=1e-5, atol=1e-5
        )
        assert int((left[i] != 0).sum()) == len(c)


def test_eos_counts_when_in_the_completion():
    model = _model()
    ids, attn, comp = _batch("right")
    without_eos = comp.clone()
    without_eos[0, len(ROWS[0][0]) + len(ROWS[0][1]) - 1] = 0  # drop row 0's EOS from the mask
    with torch.no_grad():
        full = completion_logprobs(model, ids, attn, comp, reduction="sum")
        part = completion_logprobs(model, ids, attn, without_eos, reduction="sum")
        logp = torch.log_softmax(
            model(ids[:1, :6]).logits[0, 4].double(), dim=-1
        )  # predicts position 5
    assert ids[0, 5] == 50256
    torch.testing.assert_close((full - part)[0].double(), logp[50256], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full[1:], part[1:])


def test_from_logits_equals_model_path():
    model = _model()
    ids, attn, comp = _batch("left")
    with torch.no_grad():
        logits = model(
            input_ids=ids, attention_mask=attn, position_ids=position_ids_from_mask(attn)
        ).logits
        a = completion_logprobs_from_logits(logits, ids, comp, reduction="mean")
        b = completion_logprobs(model, ids, attn, comp, reduction="mean")
    torch.testing.assert_close(a, b)


def test_gradient_equals_finite_differences():
    model = _model(vocab=17, dtype=torch.float64, seed=1)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 17, (2, 7), generator=g)
    attn = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])
    comp = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1]])
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    name = "transformer.h.0.mlp.c_fc.weight"
    for reduction in ("sum", "mean"):
        model.zero_grad()
        completion_logprobs(model, ids, attn, comp, reduction=reduction).sum().backward()
        grad = dict(model.named_parameters())[name].grad.clone()
        direction = torch.randn(params[name].shape, generator=g, dtype=torch.float64)
        eps = 1e-6
        vals = []
        for sign in (1, -1):
            with torch.no_grad():
                dict(model.named_parameters())[name].copy_(params[name] + sign * eps * direction)
                vals.append(completion_logprobs(model, ids, attn, comp, reduction=reduction).sum())
        with torch.no_grad():
            dict(model.named_parameters())[name].copy_(params[name])
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert abs(float((grad * direction).sum()) - float(fd)) < 1e-7 * max(1.0, abs(float(fd)))
        assert abs(float(fd)) > 1e-4  # the check is not vacuous


def test_reduction_has_no_default_and_is_checked():
    model = _model()
    ids, attn, comp = _batch("right")
    with pytest.raises(ValueError, match="reduction"):
        completion_logprobs(model, ids, attn, comp)
    with pytest.raises(ValueError, match="reduction"):
        completion_logprobs(model, ids, attn, comp, reduction="none")
    with pytest.raises(ValueError, match="reduction"):
        reduce_logprobs(torch.zeros(3, 8), comp, reduction=None)


def test_bad_batches_raise():
    model = _model()
    ids, attn, comp = _batch("right")
    empty = comp.clone()
    empty[1] = 0
    with pytest.raises(ValueError, match="empty completion"):
        completion_logprobs(model, ids, attn, empty, reduction="sum")
    with pytest.raises(ValueError, match="completion_mask must have the shape"):
        completion_logprobs(model, ids, attn, comp[:, :-1], reduction="sum")
    first = comp.clone()
    first[0, 0] = 1
    with pytest.raises(ValueError, match="position 0"):
        completion_logprobs(model, ids, attn, first, reduction="sum")
    assert attn[2, -1] == 0  # row 2 (5 of 7 tokens) is right-padded
    row = 2
    on_pad = comp.clone()
    on_pad[row, -1] = 1
    with pytest.raises(ValueError, match="padding"):
        completion_logprobs(model, ids, attn, on_pad, reduction="sum")
    with pytest.raises(ValueError, match="0 and 1"):
        completion_logprobs(model, ids, attn, comp * 2, reduction="sum")
