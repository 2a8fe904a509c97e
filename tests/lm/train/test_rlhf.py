"""RLHF on GPT-2: the Bradley-Terry reward loss, the RLOO advantage and loss, the two trainers.

The arithmetic is checked against independent hand computations; the reward model is trained on a
lifted-game dataset and must rank the classes in the game's Bradley-Terry order; RLOO with a known
class reward moves the class distribution towards ``mu * exp(r / beta)`` (slow).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import prefopt_toy as pt
from prefopt_toy.lm.bridge.class_estimate import estimate_class_distribution, total_variation
from prefopt_toy.lm.bridge.rlhf import reward_tilt_prediction
from prefopt_toy.lm.judges import LiftedGameJudge
from prefopt_toy.lm.models import EOS_TOKEN_ID, FRUIT_TASK, VOCAB_SIZE, gpt2_tokenizer
from prefopt_toy.lm.models.reward import reward_model, score_texts
from prefopt_toy.lm.train.rlhf import (
    REWARD_METRIC_NAMES,
    reward_accuracy,
    reward_model_loss,
    rloo,
    rloo_advantages,
    rloo_loss,
    train_reward_model,
)
from prefopt_toy.lm.train.runlog import read_run_log


def _lm(seed: int = 0, n_embd: int = 16) -> GPT2LMHeadModel:
    cfg = GPT2Config(
        n_layer=1,
        n_head=1,
        n_embd=n_embd,
        n_positions=64,
        vocab_size=VOCAB_SIZE,
        bos_token_id=EOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID,
        pad_token_id=EOS_TOKEN_ID,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(cfg).eval()


# --------------------------------------------------------------------------- the reward loss
def test_reward_model_loss_is_bradley_terry_by_hand():
    rw = torch.tensor([1.5, -0.25, 0.0, 3.0], dtype=torch.float64)
    rl = torch.tensor([0.5, 0.75, 0.0, -1.0], dtype=torch.float64)
    losses, metrics = reward_model_loss(rw, rl)
    want = [math.log(1.0 + math.exp(-(a - b))) for a, b in zip(rw.tolist(), rl.tolist())]
    assert losses.tolist() == pytest.approx(want, abs=1e-15)
    torch.testing.assert_close(losses, pt.dpo_loss(rw - rl, beta=1.0), rtol=0, atol=0)
    assert set(metrics) == set(REWARD_METRIC_NAMES)
    assert metrics["accuracy"] == 0.5  # 1.5 > 0.5 and 3 > -1; -0.25 < 0.75; a tie is not right
    assert metrics["margin"] == pytest.approx((1.0 - 1.0 + 0.0 + 4.0) / 4)
    assert (metrics["min_reward"], metrics["max_reward"]) == (-1.0, 3.0)
    assert metrics["mean_reward"] == pytest.approx(sum(rw.tolist() + rl.tolist()) / 8)
    margin = torch.tensor([0.0, 1.0, -2.0, 0.5], dtype=torch.float64)
    got = reward_model_loss(rw, rl, margin=margin)[0]
    want_m = [
        math.log(1.0 + math.exp(-(a - b - m)))
        for a, b, m in zip(rw.tolist(), rl.tolist(), margin.tolist())
    ]
    assert got.tolist() == pytest.approx(want_m, abs=1e-15)


# --------------------------------------------------------------------------- RLOO arithmetic
def test_rloo_advantages_by_hand():
    R = [[1.0, 2.0, 6.0, -1.0], [0.5, 0.5, 0.5, 0.5], [3.0, -3.0, 0.0, 1.0]]
    got = rloo_advantages(torch.tensor(R, dtype=torch.float64))
    for b, row in enumerate(R):
        for i, r in enumerate(row):
            others = [x for j, x in enumerate(row) if j != i]
            assert float(got[b, i]) == pytest.approx(r - sum(others) / len(others), abs=1e-14)
    assert rloo_advantages(torch.tensor([[1.0, 2.0, 6.0]])).tolist() == [[-3.0, -1.5, 4.5]]


def test_kl_penalised_advantage_and_loss_gradient_by_hand():
    """R_i = r_i - beta (log pi - log mu); A_i leave-one-out; d loss / d log pi_i = -A_i / n."""
    beta = 0.25
    r = [1.0, 0.0, 2.0, 0.5]
    lp = [-3.0, -1.0, -4.0, -2.0]
    ref = [-2.0, -2.0, -2.0, -2.0]
    R = [ri - beta * (a - b) for ri, a, b in zip(r, lp, ref)]  # 0.75, 0.25, 2.5, 0.5
    A = [R[i] - (sum(R) - R[i]) / 3 for i in range(4)]
    logps = torch.tensor([lp], dtype=torch.float64, requires_grad=True)
    total = torch.tensor([r], dtype=torch.float64) - beta * (
        logps.detach() - torch.tensor([ref], dtype=torch.float64)
    )
    adv = rloo_advantages(total)
    assert adv[0].tolist() == pytest.approx(A, abs=1e-14)
    loss = rloo_loss(logps, adv)
    assert float(loss.detach()) == pytest.approx(-sum(a * b for a, b in zip(A, lp)) / 4, abs=1e-14)
    loss.backward()
    assert logps.grad[0].tolist() == pytest.approx([-a / 4 for a in A], abs=1e-14)


# --------------------------------------------------------------------------- the reward model
P3 = [[0.5, 0.8, 0.9], [0.2, 0.5, 0.7], [0.1, 0.3, 0.5]]  # apple > banana > cherry


def _lifted_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Pairs of corpus completions of uniform classes, labelled Bernoulli(P3) (the lifted game)."""
    g = torch.Generator().manual_seed(seed)
    names = FRUIT_TASK.class_names
    out = []
    for i in range(n):
        a, b = torch.randint(0, 3, (2,), generator=g).tolist()
        ca, cb = FRUIT_TASK.classes[names[a]], FRUIT_TASK.classes[names[b]]
        ya = ca[int(torch.randint(0, len(ca), (1,), generator=g))]
        yb = cb[int(torch.randint(0, len(cb), (1,), generator=g))]
        if ya == yb:
            continue
        a_wins = bool(torch.rand(1, generator=g, dtype=torch.float64) < P3[a][b])
        prompt = FRUIT_TASK.prompt_templates[i % len(FRUIT_TASK.prompt_templates)]
        chosen, rejected = (ya, yb) if a_wins else (yb, ya)
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def test_train_reward_model_small(tmp_path):
    tok = gpt2_tokenizer()
    data = _lifted_pairs(12, seed=1)
    rm = reward_model(_lm(seed=1), seed=0)
    out = train_reward_model(
        rm, tok, data[:8], steps=3, batch_size=4, lr=1e-3, eval_dataset=data[8:], run_dir=tmp_path
    )
    assert [h["step"] for h in out["history"]] == [1, 2, 3] and out["steps"] == 3
    assert 0.0 <= out["train_accuracy"] <= 1.0 and 0.0 <= out["eval_accuracy"] <= 1.0
    assert len(read_run_log(out["log"])) == 3
    assert not rm.training


@pytest.mark.slow
def test_reward_model_ranks_the_classes_in_bt_order(tmp_path):
    tok = gpt2_tokenizer()
    data = _lifted_pairs(320, seed=0)
    rm = reward_model(_lm(seed=1, n_embd=32), seed=0)
    out = train_reward_model(
        rm, tok, data, steps=120, batch_size=16, lr=3e-3, seed=0, run_dir=tmp_path
    )
    records = read_run_log(out["log"])
    assert [r["step"] for r in records] == list(range(1, 121))
    assert set(REWARD_METRIC_NAMES) <= set(records[0])
    first = sum(h["loss"] for h in out["history"][:10]) / 10
    last = sum(h["loss"] for h in out["history"][-20:]) / 20
    assert last < first
    # the best a ranking can do on these labels: E[max(P, 1 - P)] over distinct-class pairs
    assert out["train_accuracy"] > 0.65
    assert out["train_accuracy"] == reward_accuracy(rm, tok, data)
    with torch.no_grad():
        means = []
        for name in FRUIT_TASK.class_names:
            comps = list(FRUIT_TASK.classes[name])
            prompts = [FRUIT_TASK.prompt_templates[0]] * len(comps)
            means.append(float(score_texts(rm, tok, prompts, comps).mean()))
    bt = pt.bt_fit(torch.tensor(P3, dtype=torch.float64)).tolist()
    assert sorted(range(3), key=lambda c: -means[c]) == sorted(range(3), key=lambda c: -bt[c])


# --------------------------------------------------------------------------- RLOO
def _class_reward(rewards: list[float], judge: LiftedGameJudge):
    R = torch.tensor(rewards, dtype=torch.float64)

    def fn(prompts, completions):
        return R[judge.classify(completions)]

    return fn


def _two_class_judge() -> LiftedGameJudge:
    kw = {c: tuple(FRUIT_TASK.keywords[c]) for c in ("apple", "banana")}
    return LiftedGameJudge([[0.5, 0.5], [0.5, 0.5]], kw, "other", other_loses=0.5)


def test_rloo_runs_is_deterministic_and_leaves_the_reference(tmp_path):
    tok = gpt2_tokenizer()
    ref = _lm(seed=2)
    runs = []
    for i in range(2):
        policy = copy.deepcopy(ref)
        before = copy.deepcopy(ref.state_dict())
        out = rloo(
            policy,
            ref,
            tok,
            list(FRUIT_TASK.prompt_templates),
            lambda prompts, completions: [float(len(c)) for c in completions],
            beta=0.1,
            k=3,
            steps=2,
            batch_size=2,
            lr=1e-3,
            max_new_tokens=4,
            seed=5,
            run_dir=tmp_path / str(i),
        )
        runs.append((out, policy))
        for name, value in before.items():
            assert torch.equal(ref.state_dict()[name], value)
    (a, pa), (b, pb) = runs
    assert a["history"] == b["history"]
    assert all(torch.equal(x, y) for x, y in zip(pa.parameters(), pb.parameters()))
    assert not torch.equal(pa.lm_head.weight, ref.lm_head.weight)
    assert set(a["history"][0]) >= {"loss", "grad_norm", "reward", "kl", "rlhf_reward"}
    assert a["history"][0]["kl"] == pytest.approx(0.0, abs=1e-5)  # pi = mu before the first step
    assert len(read_run_log(a["log"])) == 2


def test_rloo_with_a_reward_model():
    tok = gpt2_tokenizer()
    ref = _lm(seed=2)
    rm = reward_model(ref, seed=0)
    out = rloo(
        copy.deepcopy(ref),
        ref,
        tok,
        ["My favourite fruit is"],
        rm,
        beta=0.5,
        k=2,
        steps=1,
        batch_size=1,
        max_new_tokens=3,
    )
    assert math.isfinite(out["history"][0]["reward"])


@pytest.mark.slow
def test_rloo_moves_the_class_distribution_towards_the_tilt(tiny_lm):
    """2-class lifted game, known reward (banana 1, else 0), beta 0.5: towards mu exp(r / beta)."""
    ref, tok = tiny_lm
    judge = _two_class_judge()
    rewards, beta = [0.0, 1.0, 0.0], 0.5
    kw = dict(n_samples=256, max_new_tokens=16)
    mu = estimate_class_distribution(
        ref, tok, FRUIT_TASK, judge, generator=torch.Generator().manual_seed(1), **kw
    )
    pred = reward_tilt_prediction(mu, rewards, beta=beta)
    policy = copy.deepcopy(ref)
    rloo(
        policy,
        ref,
        tok,
        list(FRUIT_TASK.prompt_templates),
        _class_reward(rewards, judge),
        beta=beta,
        k=4,
        steps=40,
        batch_size=4,
        lr=3e-4,
        seed=0,
    )
    final = estimate_class_distribution(
        policy, tok, FRUIT_TASK, judge, generator=torch.Generator().manual_seed(3), **kw
    )
    assert float(final.probs[1]) > float(mu.probs[1]) + 0.1  # banana up
    assert total_variation(final.probs, pred) < 0.5 * total_variation(mu.probs, pred)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_error_naming_the_argument():
    tok = gpt2_tokenizer()
    ref = _lm()
    pol = copy.deepcopy(ref)
    ok = dict(beta=0.1, k=2, steps=1, batch_size=1, max_new_tokens=2)
    prompts = ["My favourite fruit is"]
    fn = _class_reward([0.0, 1.0, 0.0], _two_class_judge())
    x = torch.zeros(3)
    cases = [
        ("rewards_chosen", lambda: reward_model_loss([1.0], x)),
        ("rewards_rejected", lambda: reward_model_loss(x, torch.zeros(2))),
        ("rewards_chosen", lambda: reward_model_loss(torch.tensor([math.nan]), torch.zeros(1))),
        ("margin", lambda: reward_model_loss(x, x, margin=torch.zeros(2))),
        ("margin", lambda: reward_model_loss(x, x, margin=math.inf)),
        ("rewards", lambda: rloo_advantages(torch.zeros(2, 1))),
        ("rewards", lambda: rloo_advantages(torch.zeros(3))),
        ("rewards", lambda: rloo_advantages(torch.tensor([[0.0, math.inf]]))),
        ("rewards", lambda: rloo_advantages(torch.zeros(2, 2, dtype=torch.long))),
        ("logps", lambda: rloo_loss(torch.zeros(2), torch.zeros(2, 1))),
        ("logps and advantages", lambda: rloo_loss(torch.zeros(1, 2), torch.zeros(1, 3))),
        ("policy", lambda: rloo("m", ref, tok, prompts, fn, **ok)),
        ("ref_model", lambda: rloo(pol, None, tok, prompts, fn, **ok)),
        ("policy and ref_model", lambda: rloo(ref, ref, tok, prompts, fn, **ok)),
        ("prompts", lambda: rloo(pol, ref, tok, "My favourite fruit is", fn, **ok)),
        ("reward", lambda: rloo(pol, ref, tok, prompts, 3.0, **ok)),
        ("beta", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "beta": 0.0})),
        ("k", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "k": 1})),
        ("steps", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "steps": 0})),
        ("batch_size", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "batch_size": 0})),
        ("lr", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "lr": -1.0})),
        ("max_new_tokens", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "max_new_tokens": 0})),
        ("temperature", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "temperature": 0.0})),
        ("callback", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "callback": 1})),
        ("run_dir", lambda: rloo(pol, ref, tok, prompts, fn, **{**ok, "run_dir": 1})),
        ("reward", lambda: rloo(pol, ref, tok, prompts, lambda p, c: [0.0], **{**ok, "k": 3})),
        ("reward_model", lambda: train_reward_model(ref, tok, [], steps=1)),
        ("dataset", lambda: train_reward_model(reward_model(ref), tok, [], steps=1)),
        ("dataset", lambda: train_reward_model(reward_model(ref), tok, [{"prompt": "a"}], steps=1)),
    ]
    good = [{"prompt": "My favourite fruit is", "chosen": " an apple.", "rejected": " a plum."}]
    for key, value in (
        ("steps", 0),
        ("batch_size", 0),
        ("lr", 0.0),
        ("seed", -1),
        ("max_grad_norm", 0.0),
    ):
        cases.append(
            (
                key,
                lambda k=key, v=value: train_reward_model(
                    reward_model(ref), tok, good, **{"steps": 1, k: v}
                ),
            )
        )
    cases.append(
        (
            "eval_dataset",
            lambda: train_reward_model(reward_model(ref), tok, good, steps=1, eval_dataset=[1]),
        )
    )
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()
