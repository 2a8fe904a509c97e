"""The GPT-2 trainer's ``tdpo`` algorithm (TDPO1 / TDPO2 on offline pairs).

Oracles: a hand-written per-example forward pass of the policy and of a different reference
(unpadded rows, ``log_softmax``, a loop over the completion tokens, the KL summed over the whole
vocabulary at each state) fed to the official formula written out here; an uninterrupted run for
the resumed one (bitwise weights and an identical run log).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from prefopt_toy.lm.models.corpus import FRUIT_TASK
from prefopt_toy.lm.train.runlog import read_run_log
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer, train

PROMPTS = list(FRUIT_TASK.prompt_templates)
DATASET = [
    {"prompt": PROMPTS[0], "chosen": " a cherry.", "rejected": " an apple."},
    {"prompt": PROMPTS[1], "chosen": " a ripe yellow banana.", "rejected": " a secret."},
    {"prompt": PROMPTS[2], "chosen": " a green apple.", "rejected": " a bowl of dark cherries."},
    {"prompt": PROMPTS[3], "chosen": " bananas, without a doubt.", "rejected": " hard to choose."},
    {"prompt": PROMPTS[0], "chosen": " a sweet red cherry.", "rejected": " a banana."},
]


def _weights_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _cfg(**kw):
    base = dict(reduction="sum", beta=0.5, batch_size=3, max_length=40, seed=5)
    return TrainConfig("tdpo", **{**base, **kw})


def _perturbed(model, seed=0):
    """A reference different from the policy: noise on the final layer norm's scale."""
    ref = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = ref.transformer.ln_f.weight
        w.add_(0.3 * torch.randn(w.shape, generator=g, dtype=w.dtype))
    return ref


def _hand(model, ref, tok, prompt: str, completion: str):
    """(log pi(y) - log mu(y), SeqKL) of completion + EOS after prompt, one unpadded row."""
    p_ids = tok(prompt).input_ids
    ids = torch.tensor([p_ids + tok(completion).input_ids + [tok.eos_token_id]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[0], dim=-1)
        lm = torch.log_softmax(ref(input_ids=ids, attention_mask=mask).logits[0], dim=-1)
    ratio, seqkl = 0.0, 0.0
    for j in range(len(p_ids), ids.shape[1]):  # every completion token, EOS included
        y = int(ids[0, j])
        ratio += float(lp[j - 1, y] - lm[j - 1, y])
        seqkl += float((lm[j - 1].exp() * (lm[j - 1] - lp[j - 1])).sum())
    return ratio, seqkl


@pytest.mark.parametrize("variant, alpha", [("tdpo1", 0.5), ("tdpo2", 0.5), ("tdpo2", 0.2)])
def test_loss_matches_the_official_formula_on_hand_statistics(tiny_lm, variant, alpha):
    model, tok = tiny_lm
    policy = copy.deepcopy(model).double()
    ref = _perturbed(policy)
    cfg = _cfg(tdpo_variant=variant, tdpo_alpha=alpha)
    trainer = Trainer(cfg, copy.deepcopy(policy), copy.deepcopy(ref), tok, dataset=DATASET)
    rows = trainer.next_indices()
    loss, metrics = trainer.offline_loss(rows)

    losses, kl_w, kl_l = [], [], []
    for i in rows:
        ex = DATASET[i]
        rw, kw = _hand(policy, ref, tok, ex["prompt"], ex["chosen"])
        rl, kl = _hand(policy, ref, tok, ex["prompt"], ex["rejected"])
        a = 1.0 if variant == "tdpo1" else alpha
        z = (rw - rl) - a * (kl - kw)  # official: margin - alpha (rejected_kl - chosen_kl)
        losses.append(math.log1p(math.exp(-cfg.beta * z)))  # -log sigma(beta z)
        kl_w.append(kw)
        kl_l.append(kl)
    assert min(kl_w + kl_l) > 1e-3  # the reference differs: every KL is non-trivial
    assert float(loss.detach()) == pytest.approx(sum(losses) / len(losses), rel=1e-10)
    assert metrics["seqkl/chosen"] == pytest.approx(sum(kl_w) / len(kl_w), rel=1e-10)
    assert metrics["seqkl/rejected"] == pytest.approx(sum(kl_l) / len(kl_l), rel=1e-10)


def test_with_the_policy_as_reference_the_first_loss_is_log_2_and_kl_zero(tiny_lm):
    model, tok = tiny_lm
    summary = train(  # float32 weights: equal logits give exactly 0 (computed in float64)
        _cfg(steps=1, lr=1e-3), copy.deepcopy(model), copy.deepcopy(model), tok, dataset=DATASET
    )
    first = summary["final"]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-7)  # u = 0 and both KLs 0
    assert first["seqkl/chosen"] == 0.0 and first["seqkl/rejected"] == 0.0
    assert first["rewards/margins"] == 0.0


@pytest.mark.slow
def test_resumed_run_ends_bitwise_where_the_uninterrupted_run_does(tiny_lm, tmp_path):
    model, tok = tiny_lm
    ref = _perturbed(model)
    common = dict(tdpo_variant="tdpo1", lr=1e-3, checkpoint_every=2, seed=3)

    straight = copy.deepcopy(model)
    train(_cfg(steps=4, run_dir=str(tmp_path / "a"), **common), straight, ref, tok, dataset=DATASET)
    first = copy.deepcopy(model)
    train(_cfg(steps=2, run_dir=str(tmp_path / "b"), **common), first, ref, tok, dataset=DATASET)
    resumed = copy.deepcopy(model)  # a fresh process: the initial weights, restored from step 2
    summary = train(
        _cfg(steps=4, run_dir=str(tmp_path / "b"), **common),
        resumed,
        copy.deepcopy(ref),
        tok,
        dataset=DATASET,
        resume=True,
    )
    assert summary["resumed_from"] == 2
    assert _weights_equal(straight, resumed)
    assert not _weights_equal(straight, model)  # training moved the weights
    log_a = read_run_log(tmp_path / "a" / "run.jsonl")
    log_b = read_run_log(tmp_path / "b" / "run.jsonl")
    assert [r["step"] for r in log_b] == [1, 2, 3, 4]
    assert log_a == log_b
    for name in ("loss", "seqkl/chosen", "seqkl/rejected", "rewards/margins", "grad_norm"):
        assert all(math.isfinite(r[name]) for r in log_a), name
    assert log_a[-1]["seqkl/rejected"] != log_a[0]["seqkl/rejected"]


def test_config_defaults_and_bad_values():
    cfg = _cfg()
    assert (cfg.tdpo_variant, cfg.tdpo_alpha, cfg.loss) == ("tdpo2", 0.5, "tdpo")
    for kw, match in [
        (dict(tdpo_variant="tdpo3"), "tdpo_variant"),
        (dict(tdpo_alpha=-0.1), "tdpo_alpha"),
        (dict(reduction="mean"), "reduction must be 'sum'"),
        (dict(beta=None, tau=0.1), "tau is not used"),
        (dict(loss="dpo"), "uses loss 'tdpo'"),
    ]:
        with pytest.raises(ValueError, match=match):
            _cfg(**kw)
    with pytest.raises(ValueError, match="only used by algorithm 'tdpo'"):
        TrainConfig("dpo", reduction="sum", beta=0.1, tdpo_variant="tdpo1")
