"""Tests for prefopt_toy.lm.train.trainer / lm.online: the GPT-2 preference training loop.

Oracles: a hand-written per-example forward pass with ``log_softmax`` and a Python loop over the
completion tokens (policy and reference), the DPO formula written here with ``F.logsigmoid``, the
Nash-MD-PG gradient assembled here from per-sample ``autograd.grad`` of ``log pi(y_i)`` with
coefficients ``tau log pi/mu - (P - 1/2)``, an uninterrupted run for the resumed one, direct calls to
``sampling.sample`` with the same generator state, ``torch.rand`` draws for sampled labels, and
``prefopt_toy.regularized_nash`` (the exact toy) for the class distribution's direction.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import prefopt_toy.lm.train.online as online_mod
import prefopt_toy.lm.train.trainer as trainer_mod
from prefopt_toy.lm.judges import CallableJudge, LiftedGameJudge
from prefopt_toy.lm.models.corpus import FRUIT_TASK
from prefopt_toy.lm.sampling import sample
from prefopt_toy.lm.train.checkpoint import NonFiniteLossError, list_checkpoints, load_checkpoint
from prefopt_toy.lm.train.online import label_weights, nash_md_pg_surrogate
from prefopt_toy.lm.train.runlog import read_run_log
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer, train

PROMPTS = list(FRUIT_TASK.prompt_templates)
# A non-transitive game on apple / banana / cherry (a cycle: apple > banana > cherry > apple).
P_CYCLE = [[0.5, 0.7, 0.2], [0.3, 0.5, 0.8], [0.8, 0.2, 0.5]]
DATASET = [
    {"prompt": PROMPTS[0], "chosen": " a cherry.", "rejected": " an apple."},
    {"prompt": PROMPTS[1], "chosen": " a ripe yellow banana.", "rejected": " a secret."},
    {"prompt": PROMPTS[2], "chosen": " a green apple.", "rejected": " a bowl of dark cherries."},
    {"prompt": PROMPTS[3], "chosen": " bananas, without a doubt.", "rejected": " hard to choose."},
    {"prompt": PROMPTS[0], "chosen": " a sweet red cherry.", "rejected": " a banana."},
    {"prompt": PROMPTS[2], "chosen": " an apple.", "rejected": " whatever is in season."},
]


@pytest.fixture(scope="module")
def judge():
    return LiftedGameJudge(P_CYCLE, dict(FRUIT_TASK.keywords))


def _weights_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize("algorithm", ["dpo", "online_ipo"])
def test_interrupted_and_resumed_run_ends_bitwise_where_uninterrupted_does(
    tiny_lm, judge, tmp_path, algorithm
):
    model, tok = tiny_lm
    kw = dict(beta=0.1) if algorithm == "dpo" else dict(tau=0.5)
    common = dict(
        reduction="sum",
        batch_size=4,
        lr=1e-3,
        max_new_tokens=8,
        max_length=40,
        seed=3,
        checkpoint_every=3,
        eval_every=3,
        n_eval=8,
        **kw,
    )
    data = dict(dataset=DATASET) if algorithm == "dpo" else {}

    straight = copy.deepcopy(model)
    train(
        TrainConfig(algorithm, steps=6, run_dir=str(tmp_path / "a"), **common),
        straight,
        model,
        tok,
        prompts=PROMPTS,
        judge=judge,
        **data,
    )

    first = copy.deepcopy(model)
    train(
        TrainConfig(algorithm, steps=3, run_dir=str(tmp_path / "b"), **common),
        first,
        model,
        tok,
        prompts=PROMPTS,
        judge=judge,
        **data,
    )
    resumed = copy.deepcopy(model)  # a fresh process: the initial weights, restored from step 3
    summary = train(
        TrainConfig(algorithm, steps=6, run_dir=str(tmp_path / "b"), **common),
        resumed,
        model,
        tok,
        prompts=PROMPTS,
        judge=judge,
        resume=True,
        **data,
    )

    assert summary["resumed_from"] == 3
    assert _weights_equal(straight, resumed)
    assert not _weights_equal(straight, model)  # training moved the weights
    log_a, log_b = (
        read_run_log(tmp_path / "a" / "run.jsonl"),
        read_run_log(tmp_path / "b" / "run.jsonl"),
    )
    assert [r["step"] for r in log_b] == [0, 1, 2, 3, 4, 5, 6]
    assert log_a == log_b


# ----------------------------------------------------------------------------- non-finite


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tiny_lm, tmp_path, monkeypatch
):
    model, tok = tiny_lm
    real = trainer_mod.preference_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        losses, metrics = real(*args, **kwargs)
        calls["n"] += 1
        return (losses * math.nan if calls["n"] == 3 else losses), metrics

    monkeypatch.setattr(trainer_mod, "preference_loss", poisoned)
    policy = copy.deepcopy(model)
    cfg = TrainConfig(
        "dpo",
        reduction="sum",
        beta=0.1,
        batch_size=2,
        steps=5,
        lr=1e-3,
        max_length=40,
        checkpoint_every=2,
        run_dir=str(tmp_path),
    )
    with pytest.raises(NonFiniteLossError, match="step 3") as info:
        train(cfg, policy, model, tok, dataset=DATASET)
    assert info.value.step == 3
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000002"]
    assert info.value.last_good == tmp_path / "step-000000002"
    restored = copy.deepcopy(model)
    load_checkpoint(tmp_path / "step-000000002", model=restored)
    assert _weights_equal(restored, policy)  # the bad step never reached the weights
    assert not _weights_equal(restored, model)
    assert [r["step"] for r in read_run_log(tmp_path / "run.jsonl")] == [1, 2]


# ----------------------------------------------------------------------------- offline step 0


def _hand_logp(model, tok, prompt: str, completion: str, *, grad: bool):
    """Summed log-prob of completion + EOS after prompt: one unpadded sequence, a per-token loop."""
    p_ids = tok(prompt).input_ids
    c_ids = tok(completion).input_ids + [tok.eos_token_id]
    ids = torch.tensor([p_ids + c_ids])
    with torch.set_grad_enabled(grad):
        logp = torch.log_softmax(
            model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0], dim=-1
        )  # (T, V)
        total = 0.0
        for j, token in enumerate(c_ids):
            total = total + logp[len(p_ids) + j - 1, token]
    return total


def test_offline_dpo_loss_and_gradient_at_step_0_match_a_hand_computation(tiny_lm):
    model, tok = tiny_lm
    model = copy.deepcopy(model).double()  # float64: the comparison is then tight
    policy = copy.deepcopy(model)
    beta = 0.1
    trainer = Trainer(
        TrainConfig("dpo", reduction="sum", beta=beta, batch_size=4, max_length=40, seed=5),
        policy,
        model,
        tok,
        dataset=DATASET,
    )
    rows = trainer.next_indices()
    loss, metrics = trainer.offline_loss(rows)
    loss.backward()

    hand = copy.deepcopy(model)
    losses, margins = [], []
    for i in rows:
        ex = DATASET[i]
        pc = _hand_logp(hand, tok, ex["prompt"], ex["chosen"], grad=True)
        pr = _hand_logp(hand, tok, ex["prompt"], ex["rejected"], grad=True)
        rc = _hand_logp(model, tok, ex["prompt"], ex["chosen"], grad=False)
        rr = _hand_logp(model, tok, ex["prompt"], ex["rejected"], grad=False)
        h = (pc - rc) - (pr - rr)
        losses.append(-F.logsigmoid(beta * h))
        margins.append(float(beta * h.detach()))
    hand_loss = torch.stack(losses).mean()
    hand_loss.backward()
    assert float(loss.detach()) == pytest.approx(float(hand_loss.detach()), rel=1e-10)
    assert float(metrics["rewards/margins"]) == pytest.approx(
        sum(margins) / len(margins), rel=1e-10
    )
    for (name, p), q in zip(policy.named_parameters(), hand.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-13), name


def test_reference_log_probs_are_computed_once(tiny_lm):
    model, tok = tiny_lm
    calls = {"n": 0}
    policy = copy.deepcopy(model)  # before the hook, so the copy has none
    handle = model.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    try:
        trainer = Trainer(
            TrainConfig(
                "ipo", reduction="mean", tau=0.5, batch_size=4, steps=4, lr=1e-3, max_length=40
            ),
            policy,
            model,
            tok,
            dataset=DATASET,
        )
        assert calls["n"] == 2  # 6 pairs in chunks of 4, at the start
        trainer.run()
        assert trainer.step == 4
        assert calls["n"] == 2  # 4 steps (16 pairs, every example seen) and no new reference pass
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- online sampling


@pytest.mark.parametrize(
    "algorithm,mixture", [("online_ipo", 0.0), ("ipo_md", 0.4), ("nash_md_pg", 0.4)]
)
def test_online_completions_come_from_the_policy_or_the_mixture(
    tiny_lm, judge, monkeypatch, algorithm, mixture
):
    model, tok = tiny_lm
    policy = copy.deepcopy(model)
    seen = []

    def recording_sample(lm_, input_ids, attention_mask, **kw):
        seen.append((lm_, kw["ref_model"], kw["mixture"], input_ids, attention_mask))
        return sample(lm_, input_ids, attention_mask, **kw)

    monkeypatch.setattr(online_mod, "sample", recording_sample)
    cfg = TrainConfig(
        algorithm,
        reduction="sum",
        tau=0.5,
        mixture=mixture,
        batch_size=3,
        max_new_tokens=8,
        max_length=40,
        seed=11,
    )
    trainer = Trainer(cfg, policy, model, tok, prompts=PROMPTS, judge=judge)
    state = trainer.generators["sampling"].get_state()
    trainer.train_step()
    expected = {"online_ipo": [0.0], "ipo_md": [mixture], "nash_md_pg": [0.0, mixture]}[algorithm]
    assert [s[2] for s in seen] == expected
    assert all(s[0] is policy and s[1] is model for s in seen)

    # the same draws from an independent call with the saved generator state
    gen = torch.Generator().set_state(state)
    texts = []
    for _, _, m, ids, mask in seen:
        out = sample(
            policy_before := copy.deepcopy(model),
            ids,
            mask,
            max_new_tokens=8,
            generator=gen,
            eos_token_id=tok.eos_token_id,
            ref_model=model,
            mixture=m,
        )
        del policy_before
        texts += tok.batch_decode(
            [r[k.bool()].tolist() for r, k in zip(out.completion_ids, out.completion_mask)],
            skip_special_tokens=True,
        )
    assert texts == trainer.last_pairs.texts_a + trainer.last_pairs.texts_b


# ----------------------------------------------------------------------------- labels


def test_soft_hard_and_sampled_label_weights():
    pairs = {("a", "b"): 0.2, ("c", "d"): 0.5, ("e", "f"): 0.9, ("g", "h"): 0.65}
    judge = CallableJudge(lambda a, b: pairs[(a, b)])
    ta, tb = ["a", "c", "e", "g"], ["b", "d", "f", "h"]
    p = judge.probs(ta, tb)
    assert label_weights(p, "soft").tolist() == [0.2, 0.5, 0.9, 0.65]
    assert label_weights(p, "hard").tolist() == [0.0, 0.5, 1.0, 1.0]
    n = 7
    got = label_weights(
        p,
        "sampled",
        judge=judge,
        texts_a=ta,
        texts_b=tb,
        generator=torch.Generator().manual_seed(4),
        n_samples=n,
    )
    gen = torch.Generator().manual_seed(4)
    draws = [
        [
            float(u < q)
            for u, q in zip(
                torch.rand(4, generator=gen, dtype=torch.float64).tolist(), [0.2, 0.5, 0.9, 0.65]
            )
        ]
        for _ in range(n)
    ]
    assert got.tolist() == [sum(col) / n for col in zip(*draws)]
    with pytest.raises(ValueError, match="mode"):
        label_weights(p, "rounded")


def test_trainer_soft_labels_are_the_judges_probabilities(tiny_lm, judge):
    model, tok = tiny_lm
    trainer = Trainer(
        TrainConfig(
            "online_dpo",
            reduction="sum",
            beta=0.1,
            batch_size=4,
            max_new_tokens=8,
            max_length=40,
            seed=2,
        ),
        copy.deepcopy(model),
        model,
        tok,
        prompts=PROMPTS,
        judge=judge,
    )
    trainer.train_step()
    pairs = trainer.last_pairs
    assert trainer.last_label_weights.tolist() == [
        judge.prob(a, b) for a, b in zip(pairs.texts_a, pairs.texts_b)
    ]


# ----------------------------------------------------------------------------- Nash-MD-PG


def test_nash_md_pg_gradient_equals_the_policy_gradient_formula(tiny_lm, judge):
    model, tok = tiny_lm
    model = copy.deepcopy(model).double()  # float64: the comparison is then tight
    policy = copy.deepcopy(model)
    tau = 0.2
    trainer = Trainer(
        TrainConfig(
            "nash_md_pg",
            reduction="sum",
            tau=tau,
            mixture=0.3,
            batch_size=4,
            max_new_tokens=8,
            max_length=40,
            seed=7,
        ),
        policy,
        model,
        tok,
        prompts=PROMPTS,
        judge=judge,
    )
    loss, _ = trainer.online_loss(trainer.next_indices())
    loss.backward()
    pairs = trainer.last_pairs
    B = len(pairs.texts_a)

    hand = copy.deepcopy(model)
    params = list(hand.parameters())
    total = [torch.zeros_like(q) for q in params]
    for i in range(B):
        ids = pairs.input_ids[i][pairs.attention_mask[i].bool()]
        comp = pairs.completion_mask[i][pairs.attention_mask[i].bool()].bool()
        one = torch.ones_like(ids[None])
        logp = torch.log_softmax(
            hand(input_ids=ids[None], attention_mask=one).logits[0], dim=-1
        )  # (T, V)
        with torch.no_grad():
            ref_logp = torch.log_softmax(
                model(input_ids=ids[None], attention_mask=one).logits[0], dim=-1
            )
        lp, ref = 0.0, 0.0
        for t in range(1, len(ids)):
            if comp[t]:
                lp = lp + logp[t - 1, ids[t]]
                ref = ref + float(ref_logp[t - 1, ids[t]])
        win = judge.prob(pairs.texts_a[i], pairs.texts_b[i])
        coef = tau * (float(lp.detach()) - ref) - (
            win - 0.5
        )  # descent direction of Munos et al.'s ascent g
        for acc, g in zip(total, torch.autograd.grad(lp, params)):
            acc += coef * g / B
    for (name, p), g in zip(policy.named_parameters(), total):
        assert torch.allclose(p.grad, g, rtol=1e-9, atol=1e-13), name


def test_nash_md_pg_surrogate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        nash_md_pg_surrogate(torch.zeros(2), torch.zeros(3), torch.zeros(2), tau=0.1)


# ----------------------------------------------------------------------------- log and config


def test_run_log_has_trl_metric_names_and_a_class_distribution(tiny_lm, judge, tmp_path):
    model, tok = tiny_lm
    cfg = TrainConfig(
        "online_ipo",
        reduction="mean",
        tau=0.5,
        batch_size=4,
        steps=2,
        max_new_tokens=8,
        max_length=40,
        eval_every=2,
        n_eval=12,
        run_dir=str(tmp_path),
    )
    train(cfg, copy.deepcopy(model), model, tok, task=FRUIT_TASK, judge=judge)
    log = read_run_log(tmp_path / "run.jsonl")
    assert [r["step"] for r in log] == [0, 1, 2]
    for name in (
        "loss",
        "kl",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    ):
        assert isinstance(log[1][name], float), name
    for record in (log[0], log[2]):
        dist = record["class_distribution"]
        assert len(dist) == 4  # apple, banana, cherry, other
        assert sum(dist) == pytest.approx(1.0, abs=1e-12)
        assert all(x * 12 == round(x * 12) for x in dist)  # frequencies of 12 samples
        assert 0.0 <= record["win_rate"] <= 1.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(algorithm="dpo", beta=0.1), "reduction"),
        (dict(algorithm="ppo", reduction="sum"), "algorithm"),
        (dict(algorithm="dpo", reduction="sum", loss="ipo"), "loss"),
        (dict(algorithm="online_ipo", reduction="sum", tau=0.5, labels="dataset"), "labels"),
        (dict(algorithm="online_ipo", reduction="sum", tau=0.5, mixture=0.5), "mixture"),
        (dict(algorithm="nash_md_pg", reduction="sum", beta=0.1), "tau"),
        (dict(algorithm="ipo_md", reduction="sum", tau=0.5, mixture=1.5), "mixture"),
        (dict(algorithm="dpo", reduction="sum", beta=0.1, checkpoint_every=2), "run_dir"),
    ],
)
def test_bad_config_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


# The bridge itself (online and offline IPO landing within TV 0.05 of the exact prediction on the
# small model) is tests/tiny_lm/bridge/test_converged.py.


# ----------------------------------------------------------------------------- lr schedule


def _expected_lr(lr: float, steps: int, warmup: int, schedule: str) -> list[float]:
    """The schedule written out: ramp (t + 1) / warmup, then 1 or the linear decay to lr / (steps - warmup)."""
    out = []
    for t in range(steps):
        if t < warmup:
            out.append(lr * (t + 1) / warmup)
        elif schedule == "constant":
            out.append(lr)
        else:
            out.append(lr * (steps - t) / (steps - warmup))
    return out


@pytest.mark.parametrize(
    "schedule,warmup", [("constant", 0), ("linear", 0), ("linear", 2), ("constant", 2)]
)
def test_the_optimizer_steps_with_the_scheduled_learning_rate(tiny_lm, schedule, warmup):
    model, tok = tiny_lm
    lr, steps = 2e-3, 5
    cfg = TrainConfig(
        "dpo",
        reduction="sum",
        beta=0.1,
        batch_size=2,
        steps=steps,
        lr=lr,
        max_length=40,
        lr_schedule=schedule,
        warmup_steps=warmup,
    )
    trainer = Trainer(cfg, copy.deepcopy(model), model, tok, dataset=DATASET)
    used, step = [], trainer.optimizer.step

    def recording_step(*args, **kwargs):
        used.append([g["lr"] for g in trainer.optimizer.param_groups])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    history = trainer.run()["history"]
    want = _expected_lr(lr, steps, warmup, schedule)
    assert [u[0] for u in used] == pytest.approx(want, rel=1e-15, abs=0)
    assert all(len(set(u)) == 1 for u in used)
    assert [rec["learning_rate"] for rec in history] == [u[0] for u in used]
    if (
        schedule == "linear" and warmup == 0
    ):  # the brief's formula, and the last update has lr / steps
        assert [u[0] for u in used] == [lr * (1 - t / steps) for t in range(steps)]
        assert used[-1][0] == pytest.approx(lr / steps, rel=1e-15)
    if schedule == "constant" and warmup == 0:
        assert all(
            u[0] == lr for u in used
        )  # exactly the configured rate, as before schedules existed


def test_resume_with_a_linear_schedule_and_warmup_ends_bitwise_where_the_uninterrupted_run_does(
    tiny_lm, judge, tmp_path
):
    model, tok = tiny_lm
    common = dict(
        reduction="sum",
        tau=0.5,
        batch_size=3,
        steps=5,
        lr=2e-3,
        max_new_tokens=6,
        max_length=40,
        seed=8,
        lr_schedule="linear",
        warmup_steps=2,
        checkpoint_every=2,
        labels="sampled",
    )

    straight = copy.deepcopy(model)
    train(
        TrainConfig("online_ipo", run_dir=str(tmp_path / "a"), **common),
        straight,
        model,
        tok,
        prompts=PROMPTS,
        judge=judge,
    )

    class Interrupted(Exception):
        pass

    first = Trainer(
        TrainConfig("online_ipo", run_dir=str(tmp_path / "b"), **common),
        copy.deepcopy(model),
        model,
        tok,
        prompts=PROMPTS,
        judge=judge,
    )
    save = first.save

    def save_then_stop():  # a crash right after the step-2 checkpoint, mid-warmup-to-decay
        path = save()
        if first.step == 2:
            raise Interrupted
        return path

    first.save = save_then_stop
    with pytest.raises(Interrupted):
        first.run()
    resumed = copy.deepcopy(model)
    summary = train(
        TrainConfig("online_ipo", run_dir=str(tmp_path / "b"), **common),
        resumed,
        model,
        tok,
        prompts=PROMPTS,
        judge=judge,
        resume=True,
    )
    assert summary["resumed_from"] == 2
    assert _weights_equal(straight, resumed)
    log_a, log_b = (
        read_run_log(tmp_path / "a" / "run.jsonl"),
        read_run_log(tmp_path / "b" / "run.jsonl"),
    )
    assert log_a == log_b and [r["step"] for r in log_b] == [1, 2, 3, 4, 5]
    assert [r["learning_rate"] for r in log_b] == [
        1e-3,
        2e-3,
        2e-3,
        2e-3 * (1 - 1 / 3),
        2e-3 * (1 - 2 / 3),
    ]


def test_a_single_process_context_is_the_default_bit_for_bit(tiny_lm):
    from prefopt_toy.lm.distributed import DistributedContext

    model, tok = tiny_lm
    cfg = TrainConfig(
        "dpo", reduction="sum", beta=0.1, batch_size=3, steps=2, lr=1e-3, max_length=40, seed=1
    )
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    ha = train(cfg, a, model, tok, dataset=DATASET)["history"]
    hb = train(cfg, b, model, tok, dataset=DATASET, ctx=DistributedContext())["history"]
    assert ha == hb and _weights_equal(a, b) and not _weights_equal(a, model)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lr_schedule="cosine"), "lr_schedule"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(warmup_steps=1.5), "warmup_steps"),
        (dict(warmup_steps=4, steps=4), r"warmup_steps must be < steps \(4\)"),
    ],
)
def test_bad_lr_schedule_raises_value_error_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig("dpo", reduction="sum", beta=0.1, **kwargs)
    cfg = TrainConfig("dpo", reduction="sum", beta=0.1, steps=3, lr_schedule="linear")
    with pytest.raises(ValueError, match="step"):
        cfg.lr_at(3)
    with pytest.raises(ValueError, match="step"):
        cfg.lr_at(-1)
