r"""beta-DPO, RSO and iterative DPO in the GPT-2 trainer.

Oracles: beta-DPO's batch beta and loss recomputed by hand from the logged margins (batches of 2,
whose two margins the mean and standard deviation determine) and the toy's update rule written out
here; ``dpo`` itself for beta-DPO with ``a = 0`` and no filtering (bitwise); RSO's acceptance rule
against :math:`\mu_c e^{r_c/\beta}` normalised, within a binomial bound on a large seeded sample,
and its deterministic limits (beta large: everything in order; beta tiny: the best first); for
iterative DPO a direct ``sample_pairs`` call from a copy of the policy at the round's start, the
toy's split of the steps and the policy's own weights for the "previous" reference; an
uninterrupted run for every resumed one (bitwise).
"""

from __future__ import annotations

import copy
import json
import math
import shutil

import pytest
import torch

from prefopt_toy.lm.data import tokenize_prompts
from prefopt_toy.lm.family import beta_dpo_batch, rso_rejection_sample
from prefopt_toy.lm.models.corpus import FRUIT_TASK
from prefopt_toy.lm.train.online import label_weights, sample_pairs
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer, train

PROMPTS = list(FRUIT_TASK.prompt_templates)
DATASET = [
    {"prompt": PROMPTS[0], "chosen": " a cherry.", "rejected": " an apple."},
    {"prompt": PROMPTS[1], "chosen": " a ripe yellow banana.", "rejected": " a secret."},
    {"prompt": PROMPTS[2], "chosen": " a green apple.", "rejected": " a bowl of dark cherries."},
    {"prompt": PROMPTS[3], "chosen": " bananas, without a doubt.", "rejected": " hard to choose."},
]
SAMPLED = dict(max_length=24, max_new_tokens=5)


def judge_fn(a: str, b: str) -> float:
    """A smooth, deterministic Pr(a beats b): longer completions win."""
    return 1.0 / (1.0 + math.exp((len(b) - len(a)) / 4.0))


def _weights_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _resume(make_cfg, model, tok, src, dst, step: int, **data):
    """Copy run ``src`` to ``dst`` keeping checkpoints up to ``step``; resume it to the end."""
    shutil.copytree(src, dst)
    for path in dst.glob("step-*"):
        if int(path.name.split("-")[1]) > step:
            shutil.rmtree(path)
    (dst / "run.jsonl").unlink()
    resumed, ref = copy.deepcopy(model), copy.deepcopy(model)
    summary = train(make_cfg(str(dst)), resumed, ref, tok, resume=True, **data)
    assert summary["resumed_from"] == step
    return summary, resumed, ref


# ----------------------------------------------------------------------------- beta-DPO


def test_beta_dpo_batch_beta_and_loss_equal_a_hand_computation_from_the_logged_margins(tiny_lm):
    model, tok = tiny_lm
    model = copy.deepcopy(model).double()
    beta0, a = 0.5, 0.6
    cfg = TrainConfig(
        "beta_dpo", reduction="sum", beta=beta0, batch_size=2, steps=5, lr=3e-2, max_length=40,
        beta_dpo_a=a, beta_dpo_mode_weight=0.0, seed=2,
    )  # fmt: skip
    history = train(cfg, copy.deepcopy(model), model, tok, dataset=DATASET)["history"]
    M = S = 0.0
    for rec in history:
        m, s = rec["beta_dpo/margin_mean"], rec["beta_dpo/margin_std"]
        M, S = 0.9 * M + 0.1 * m, 0.9 * S + 0.1 * s  # updated before the loss (the toy's order)
        beta_b = max(beta0 * (1 + a * (m - M)), 1e-3)
        assert rec["beta_dpo/running_mean"] == pytest.approx(M, rel=1e-12, abs=1e-15)
        assert rec["beta_dpo/running_std"] == pytest.approx(S, rel=1e-12, abs=1e-15)
        assert rec["beta_batch"] == pytest.approx(beta_b, rel=1e-12)
        # two margins m +- s / sqrt(2) (torch's unbiased std of two numbers is |h1 - h2| / sqrt 2)
        h = torch.tensor([m + s / math.sqrt(2), m - s / math.sqrt(2)], dtype=torch.float64)
        hand = float(-torch.nn.functional.logsigmoid(beta_b * h).mean())
        assert rec["loss"] == pytest.approx(hand, rel=1e-9)
        assert rec["beta_dpo/kept_fraction"] == 1.0
    assert history[0]["beta_batch"] == beta0  # step 1: policy = reference, every margin 0
    assert len({round(r["beta_batch"], 12) for r in history}) > 2  # beta moves


def test_beta_dpo_with_a_zero_and_no_filter_is_dpo_bitwise(tiny_lm):
    model, tok = tiny_lm
    common = dict(reduction="sum", beta=0.5, batch_size=3, steps=3, lr=1e-2, max_length=40, seed=4)
    runs = []
    for alg, kw in (("dpo", {}), ("beta_dpo", {"beta_dpo_a": 0.0, "beta_dpo_mode_weight": 0.0})):
        policy = copy.deepcopy(model)
        hist = train(
            TrainConfig(alg, **common, **kw), policy, copy.deepcopy(model), tok, dataset=DATASET
        )["history"]
        runs.append((policy, hist))
    (dpo_model, dpo_hist), (b_model, b_hist) = runs
    assert _weights_equal(dpo_model, b_model)
    assert not _weights_equal(dpo_model, model)
    assert [r["loss"] for r in dpo_hist] == [r["loss"] for r in b_hist]
    assert all(r["beta_batch"] == 0.5 for r in b_hist)


def test_beta_dpo_filter_keeps_the_drawn_pairs_and_their_mean_sets_beta():
    h = torch.tensor([0.3, -1.0, 2.0, 0.1, 0.5])
    gen = torch.Generator().manual_seed(0)
    out = beta_dpo_batch(h, 0.2, 0.4, beta=0.1, a=0.5, mode_weight=0.4, generator=gen)
    assert len(out.keep) == 3 and out.keep.tolist() == sorted(set(out.keep.tolist()))
    M = 0.9 * 0.2 + 0.1 * float(h.double().mean())
    assert out.running_mean == pytest.approx(M, rel=1e-12)
    assert out.running_std == pytest.approx(0.9 * 0.4 + 0.1 * float(h.double().std()), rel=1e-12)
    kept_mean = float(h.double()[out.keep].mean())
    assert out.beta == pytest.approx(0.1 * (1 + 0.5 * (kept_mean - M)), rel=1e-12)
    # the floor
    low = beta_dpo_batch(h, 50.0, 0.0, beta=0.1, a=10.0, mode_weight=0.0)
    assert low.beta == 1e-3
    # the Gaussian weights favour margins near M: over many draws of 1 out of 5, the middle wins
    counts = torch.zeros(5)
    gen = torch.Generator().manual_seed(1)
    for _ in range(400):
        one = beta_dpo_batch(h, 0.3, 0.5, beta=0.1, a=0.5, mode_weight=0.8, generator=gen)
        counts[one.keep] += 1
    assert counts[0] > counts[1] and counts[0] > counts[2]
    with pytest.raises(ValueError, match="generator is required"):
        beta_dpo_batch(h, 0.0, 0.0, beta=0.1, a=0.5, mode_weight=0.5)


def test_beta_dpo_resumed_ends_bitwise_where_the_uninterrupted_run_does(tiny_lm, tmp_path):
    model, tok = tiny_lm

    def cfg(run_dir):
        return TrainConfig(
            "beta_dpo", reduction="sum", beta=0.5, batch_size=4, steps=4, lr=1e-2, max_length=40,
            beta_dpo_mode_weight=0.5, checkpoint_every=1, seed=3, run_dir=run_dir,
        )  # fmt: skip

    straight = copy.deepcopy(model)
    full = train(cfg(str(tmp_path / "a")), straight, copy.deepcopy(model), tok, dataset=DATASET)
    saved = json.loads((tmp_path / "a" / "step-000000002" / "checkpoint.json").read_text())
    assert "beta_dpo_state" in json.dumps(saved)
    summary, resumed, _ = _resume(
        cfg, model, tok, tmp_path / "a", tmp_path / "b", 2, dataset=DATASET
    )
    assert _weights_equal(straight, resumed)
    assert summary["history"][-1] == full["history"][-1]
    assert full["history"][-1]["beta_dpo/kept_fraction"] == 0.5


# ----------------------------------------------------------------------------- RSO


def test_rso_acceptance_matches_mu_exp_r_over_beta_within_a_binomial_bound():
    mu = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    r = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    beta = 0.7
    gen = torch.Generator().manual_seed(123)
    classes = torch.multinomial(mu, 40_000, replacement=True, generator=gen)
    n = 3000
    accepted, tried = rso_rejection_sample(r[classes], n, beta=beta, generator=gen)
    assert len(accepted) == n and len(set(accepted)) == n
    target = mu * torch.exp(r / beta)
    target = target / target.sum()
    counts = torch.bincount(classes[accepted], minlength=3).double()
    sd = torch.sqrt(n * target * (1 - target))
    assert bool(((counts - n * target).abs() <= 4.5 * sd).all()), (counts / n, target)
    # and far from mu itself (the test can fail)
    assert bool(((counts - n * mu).abs() > 4.5 * sd).any())
    # one pass suffices here: the acceptance rate is sum_c mu_c exp((r_c - r_max) / beta)
    rate = float((mu * torch.exp((r - r.max()) / beta)).sum())
    assert n / tried == pytest.approx(rate, rel=0.08)


def test_rso_rejection_sampling_limits():
    gen = torch.Generator().manual_seed(0)
    r = torch.tensor([0.3, -2.0, 5.0, 1.0])
    assert rso_rejection_sample(r, 4, beta=1e12, generator=gen) == ([0, 1, 2, 3], 4)
    got, _ = rso_rejection_sample(r, 4, beta=1e-9, generator=gen)
    assert got == [2, 3, 0, 1]  # each pass accepts only the best remaining candidate
    with pytest.raises(ValueError, match="at least n_accept"):
        rso_rejection_sample(r, 5, beta=1.0, generator=gen)


def test_rso_pairs_are_the_rejection_samples_of_the_references_candidates(tiny_lm):
    model, tok = tiny_lm
    calls = []

    def reward(texts):
        calls.append(list(texts))
        return [len(t) + 0.01 * i for i, t in enumerate(texts)]  # distinct scores

    cfg = TrainConfig(
        "rso", reduction="sum", beta=0.5, batch_size=2, steps=2, lr=1e-3, rso_candidates=5,
        rso_beta=1e-9, labels="hard", seed=1, **SAMPLED,
    )  # fmt: skip
    ref = copy.deepcopy(model)
    trainer = Trainer(
        cfg, copy.deepcopy(model), ref, tok, prompts=PROMPTS, judge=judge_fn, reward=reward
    )
    pairs = trainer.rso_draw.pairs
    assert len(calls) == len(PROMPTS) and all(len(c) == 5 for c in calls)
    tried = 0
    for i, cands in enumerate(calls):  # beta -> 0: the two best candidates, best first
        scores = [len(t) + 0.01 * j for j, t in enumerate(cands)]
        order = sorted(range(5), key=lambda j: -scores[j])
        assert (pairs.texts_a[i], pairs.texts_b[i]) == (cands[order[0]], cands[order[1]])
        # pass 1 tries all 5 (only the best is accepted), pass 2 stops at the second best
        tried += 5 + [j for j in range(5) if j != order[0]].index(order[1]) + 1
    probs = torch.tensor([judge_fn(a, b) for a, b in zip(pairs.texts_a, pairs.texts_b)])
    torch.testing.assert_close(trainer.rso_draw.probs, probs.double())
    hard = [1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0 for p in probs.tolist()]  # ties: 1/2
    assert trainer.rso_draw.weights.tolist() == hard
    assert trainer.rso_acceptance == pytest.approx(2 * len(PROMPTS) / tried, rel=1e-12)
    rec = trainer.train_step()
    assert rec["rso/acceptance_rate"] == trainer.rso_acceptance
    assert _weights_equal(ref, model)  # the reference is never trained


def test_rso_with_ipo_and_slic_and_resume(tiny_lm, tmp_path):
    model, tok = tiny_lm
    for loss, key in (("ipo", "tau"), ("slic", "beta")):
        cfg = TrainConfig(
            "rso", loss=loss, reduction="sum", **{key: 0.5}, batch_size=2, steps=1,
            rso_candidates=2, **SAMPLED,
        )  # fmt: skip
        assert cfg.loss == loss and cfg.strength_key == key

    def cfg(run_dir):
        return TrainConfig(
            "rso", reduction="sum", beta=0.5, batch_size=2, steps=3, lr=1e-2, rso_candidates=3,
            checkpoint_every=1, seed=6, run_dir=run_dir, **SAMPLED,
        )  # fmt: skip

    straight = copy.deepcopy(model)
    data = dict(prompts=PROMPTS, judge=judge_fn)
    train(cfg(str(tmp_path / "a")), straight, copy.deepcopy(model), tok, **data)
    _, resumed, _ = _resume(cfg, model, tok, tmp_path / "a", tmp_path / "b", 1, **data)
    assert _weights_equal(straight, resumed)
    assert not _weights_equal(straight, model)


# ----------------------------------------------------------------------------- iterative DPO


def test_iterative_dpo_splits_steps_as_the_toy():
    cfg = TrainConfig("iterative_dpo", reduction="sum", beta=0.1, steps=7, iterative_rounds=3)
    assert cfg.iterative_round_ends() == [3, 5, 7]  # toy's _split(7, 3) = [3, 2, 2]
    assert [cfg.iterative_round(t) for t in range(7)] == [0, 0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("reference", ["initial", "previous"])
def test_iterative_dpo_rounds_draw_from_the_current_policy(tiny_lm, reference):
    model, tok = tiny_lm
    cfg = TrainConfig(
        "iterative_dpo", reduction="sum", beta=0.5, batch_size=2, steps=4, lr=1e-2, seed=2,
        iterative_rounds=2, iterative_reference=reference, labels="hard", **SAMPLED,
    )  # fmt: skip
    ref = copy.deepcopy(model)
    trainer = Trainer(cfg, copy.deepcopy(model), ref, tok, prompts=PROMPTS, judge=judge_fn)
    for _ in range(2):
        rec = trainer.train_step()
        assert rec["round"] == 0.0
    first = trainer.round_draw
    at_start = copy.deepcopy(trainer.model)
    gen = torch.Generator().set_state(trainer.generators["sampling"].get_state())
    rec = trainer.train_step()
    assert rec["round"] == 1.0 and trainer.round_draw is not first
    # the round's pairs: sampled from the policy at the round's start, labelled by the judge
    prompts = tokenize_prompts(tok, PROMPTS, max_length=cfg.max_length - cfg.max_new_tokens)
    expect = sample_pairs(
        at_start, ref, tok, prompts, mixture_a=0.0, mixture_b=0.0,
        max_new_tokens=cfg.max_new_tokens, generator=gen,
    )  # fmt: skip
    got = trainer.round_draw.pairs
    assert got.texts_a == expect.texts_a and got.texts_b == expect.texts_b
    assert torch.equal(got.input_ids, expect.input_ids)
    w = label_weights(
        trainer.round_draw.probs, "hard", judge=None, texts_a=None, texts_b=None, generator=None
    )
    assert torch.equal(trainer.round_draw.weights, w)
    if reference == "previous":
        assert _weights_equal(trainer.ref_model, at_start)
    else:
        assert _weights_equal(trainer.ref_model, model)


@pytest.mark.parametrize("reference", ["initial", "previous"])
def test_iterative_dpo_resumed_across_a_round_ends_bitwise(tiny_lm, tmp_path, reference):
    model, tok = tiny_lm

    def cfg(run_dir):
        return TrainConfig(
            "iterative_dpo", reduction="sum", beta=0.5, batch_size=2, steps=4, lr=1e-2, seed=8,
            iterative_rounds=2, iterative_reference=reference, checkpoint_every=1,
            run_dir=run_dir, **SAMPLED,
        )  # fmt: skip

    data = dict(prompts=PROMPTS, judge=judge_fn)
    straight, sref = copy.deepcopy(model), copy.deepcopy(model)
    train(cfg(str(tmp_path / "a")), straight, sref, tok, **data)
    has_ref = (tmp_path / "a" / "step-000000003" / "reference.safetensors").is_file()
    assert has_ref == (reference == "previous")
    for step in (1, 2, 3):  # inside round 0, at its end, inside round 1
        _, resumed, ref = _resume(
            cfg, model, tok, tmp_path / "a", tmp_path / f"r{step}", step, **data
        )
        assert _weights_equal(straight, resumed), step
        assert _weights_equal(sref, ref), step


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "algorithm, kw, match",
    [
        ("beta_dpo", {"beta_dpo_a": -1.0}, "beta_dpo_a"),
        ("beta_dpo", {"beta_dpo_mode_weight": 1.0}, "beta_dpo_mode_weight must be < 1"),
        ("beta_dpo", {"beta_dpo_mode_weight": "0.2"}, "beta_dpo_mode_weight"),
        ("beta_dpo", {"batch_size": 1}, "batch_size must be >= 2 for beta_dpo"),
        ("beta_dpo", {"loss": "ipo"}, "uses loss 'dpo'"),
        ("dpo", {"beta_dpo_a": 0.1}, "beta_dpo_a is only used by algorithm 'beta_dpo'"),
        ("rso", {"loss": "robust_dpo"}, "loss must be one of \\['dpo', 'ipo', 'slic'\\]"),
        ("rso", {"rso_candidates": 1}, "rso_candidates"),
        ("rso", {"rso_beta": 0.0}, "rso_beta"),
        ("rso", {"labels": "dataset"}, "labels must be one of"),
        ("rso", {"mixture": 0.5}, "mixture must be 0"),
        ("online_dpo", {"rso_beta": 1.0}, "rso_beta is only used by algorithm 'rso'"),
        ("iterative_dpo", {"iterative_rounds": 0}, "iterative_rounds"),
        ("iterative_dpo", {"iterative_rounds": 20}, "iterative_rounds .* must be <= steps"),
        ("iterative_dpo", {"iterative_reference": "best"}, "iterative_reference must be one of"),
        ("sdpo", {"iterative_rounds": 2}, "iterative_rounds is only used"),
        ("iterative_dpo", {"tau": 0.1}, "tau is not used"),
    ],
)
def test_config_refuses_bad_fields_naming_them(algorithm, kw, match):
    base = dict(reduction="sum", beta=0.1, batch_size=4, steps=10)
    with pytest.raises(ValueError, match=match):
        TrainConfig(algorithm, **{**base, **kw})


def test_config_defaults_and_trainer_argument_checks(tiny_lm):
    cfg = TrainConfig("beta_dpo", reduction="sum", beta=0.1)
    assert (cfg.beta_dpo_a, cfg.beta_dpo_mode_weight) == (0.6, 0.2)
    cfg = TrainConfig("rso", reduction="sum", beta=0.1)
    assert (cfg.loss, cfg.rso_beta, cfg.rso_candidates, cfg.labels) == ("dpo", None, 8, "soft")
    cfg = TrainConfig("iterative_dpo", reduction="sum", beta=0.1)
    assert (cfg.iterative_rounds, cfg.iterative_reference) == (2, "initial")
    model, tok = tiny_lm
    with pytest.raises(ValueError, match="reward is only used by algorithm 'rso'"):
        Trainer(
            TrainConfig("online_dpo", reduction="sum", beta=0.1, **SAMPLED), copy.deepcopy(model),
            copy.deepcopy(model), tok, prompts=PROMPTS, judge=judge_fn, reward=len,
        )  # fmt: skip
    with pytest.raises(ValueError, match="dataset is only used by the offline"):
        Trainer(
            TrainConfig("rso", reduction="sum", beta=0.1, **SAMPLED), copy.deepcopy(model),
            copy.deepcopy(model), tok, dataset=DATASET, judge=judge_fn,
        )  # fmt: skip
