"""The RLHF bridge: the toy's prediction for a reward model + RLOO on a lifted game, and the driver."""

from __future__ import annotations

import math

import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge.class_estimate import ClassEstimate, class_estimate
from prefopt_toy.lm.bridge.predict import predict
from prefopt_toy.lm.bridge.rlhf import (
    RLHFBridgeResult,
    reward_tilt_prediction,
    rlhf_prediction,
    run_rlhf_bridge,
)
from prefopt_toy.lm.bridge.run import lifted_judge
from prefopt_toy.lm.models import FRUIT_TASK

P3 = [[0.5, 0.8, 0.9], [0.2, 0.5, 0.7], [0.1, 0.3, 0.5]]
MU = torch.tensor([0.5, 0.25, 0.15, 0.10], dtype=torch.float64)


def test_rlhf_prediction_is_the_tilt_by_the_bt_reward():
    P_ext = lifted_judge(FRUIT_TASK, P3, other_loses=0.9).P_ext
    beta = 0.5
    got = rlhf_prediction(P_ext, MU, beta=beta)
    r = pt.bt_fit(P_ext, MU)  # pairs from the reference: nu = mu_class
    w = [m * math.exp(x / beta) for m, x in zip(MU.tolist(), r.tolist())]
    assert got.tolist() == pytest.approx([x / sum(w) for x in w], abs=1e-12)
    torch.testing.assert_close(got, pt.rlhf_optimum(P_ext, MU, beta), rtol=0, atol=0)
    # the same fixed point as offline DPO on the same pairs
    torch.testing.assert_close(got, predict("dpo", P_ext, MU, beta=beta)[0], rtol=0, atol=0)
    est = class_estimate(
        torch.tensor([0] * 5 + [1] * 3 + [2] + [3]), 4, class_names=("a", "b", "c")
    )
    torch.testing.assert_close(
        rlhf_prediction(P_ext, est, beta=beta), pt.rlhf_optimum(P_ext, est.probs, beta)
    )


def test_reward_tilt_prediction_by_hand():
    r, beta = [1.0, 0.0, -0.5, 0.25], 0.4
    got = reward_tilt_prediction(MU, r, beta=beta)
    w = [m * math.exp(x / beta) for m, x in zip(MU.tolist(), r)]
    assert got.tolist() == pytest.approx([x / sum(w) for x in w], abs=1e-12)
    # a class reward that is the BT fit gives rlhf_prediction
    P_ext = lifted_judge(FRUIT_TASK, P3, other_loses=0.9).P_ext
    torch.testing.assert_close(
        reward_tilt_prediction(MU, pt.bt_fit(P_ext, MU), beta=beta),
        rlhf_prediction(P_ext, MU, beta=beta),
    )


def test_bad_inputs_raise_value_error_naming_the_argument():
    P_ext = lifted_judge(FRUIT_TASK, P3, other_loses=0.9).P_ext
    cases = [
        ("beta", lambda: rlhf_prediction(P_ext, MU, beta=0.0)),
        ("beta", lambda: rlhf_prediction(P_ext, MU, beta=None)),
        ("mu_class", lambda: rlhf_prediction(P_ext, MU[:3], beta=1.0)),
        ("mu_class", lambda: rlhf_prediction(P_ext, MU * 2, beta=1.0)),
        ("mu_class", lambda: reward_tilt_prediction([[0.5, 0.5]], [0.0, 0.0], beta=1.0)),
        ("rewards", lambda: reward_tilt_prediction(MU, [0.0, 1.0], beta=1.0)),
        ("rewards", lambda: reward_tilt_prediction(MU, [0.0, 1.0, math.nan, 0.0], beta=1.0)),
        ("beta", lambda: reward_tilt_prediction(MU, [0.0] * 4, beta=-1.0)),
        ("beta", lambda: run_rlhf_bridge(P=P3, beta=0.0)),
        ("other_loses", lambda: run_rlhf_bridge(P=P3, beta=1.0, other_loses=1.0)),
        ("other_loses", lambda: run_rlhf_bridge(P=P3, beta=1.0, other_loses="x")),
        ("model and tokenizer", lambda: run_rlhf_bridge(P=P3, beta=1.0, model=object())),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()
    with pytest.raises(ValueError):  # other_loses = 1: no finite BT reward for "other"
        rlhf_prediction(lifted_judge(FRUIT_TASK, P3).P_ext, MU, beta=1.0)


@pytest.mark.slow
def test_run_rlhf_bridge_small(tiny_lm):
    """A small end-to-end run: every field is filled, the policy moves towards the prediction."""
    model, tok = tiny_lm
    res = run_rlhf_bridge(
        P=P3,
        beta=0.5,
        model=model,
        tokenizer=tok,
        n_pairs=128,
        rm_steps=60,
        rl_steps=30,
        k=4,
        batch_size=4,
        rl_lr=3e-4,
        n_eval_samples=128,
        n_boot=50,
    )
    assert isinstance(res, RLHFBridgeResult)
    assert isinstance(res.final, ClassEstimate) and res.final.n == 128
    assert res.prediction.shape == (4,) and 0.0 <= res.tv <= 1.0
    assert res.tv_error.interval[0] <= res.tv_error.interval[1]
    assert 0.0 <= res.reward_accuracy <= 1.0
    assert res.class_rewards.shape == res.bt_rewards.shape == (3,)
    assert len(res.rloo_summary["history"]) == 30
    s = res.summary()
    assert s["algorithm"] == "rlhf_rloo" and set(s) >= {"tv", "tv_error", "reward_accuracy"}


def test_rlhf_class_trajectory_is_measured_without_changing_the_run(tiny_lm):
    """``eval_every`` records step 0 and every k-th RLOO step; the trained policy is bitwise the
    one a run without measurements trains (the measurements draw from their own generator)."""
    model, tok = tiny_lm
    kwargs = dict(
        P=P3, beta=0.5, model=model, tokenizer=tok, n_pairs=16, rm_steps=2, rl_steps=3, k=2,
        batch_size=2, n_eval_samples=16, n_boot=10, max_new_tokens=4,
    )  # fmt: skip
    plain = run_rlhf_bridge(**kwargs)
    traced = run_rlhf_bridge(**kwargs, eval_every=2, n_eval=8)
    assert plain.steps == [] and plain.measured.shape == (0, 4)
    assert traced.steps == [0, 2]
    assert traced.measured.shape == (2, 4)
    assert torch.allclose(traced.measured.sum(-1), torch.ones(2, dtype=torch.float64))
    assert ((traced.measured * 8) - (traced.measured * 8).round()).abs().max() < 1e-9  # counts / 8
    for a, b in zip(plain.extra["policy"].parameters(), traced.extra["policy"].parameters()):
        assert torch.equal(a, b)
    assert torch.equal(plain.final.probs, traced.final.probs)
    with pytest.raises(ValueError, match="eval_every"):
        run_rlhf_bridge(**kwargs, eval_every=-1)
