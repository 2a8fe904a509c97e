"""Tests for prefopt_toy.lm.bridge.ai_feedback: the LM judge's class game, the prediction, the loops.

Oracles: the symmetrisation written out as (J + 1 - J^T) / 2; the class matrix rebuilt here from one
judge call per ordered pair and a per-element loop over classes; online DPO's stationary point on a
Bradley-Terry game, which is the RLHF optimum (Calandriello et al., arXiv:2403.08635v1, Thm. F.7),
from ``rlhf_optimum``; the fixed-point equation pi = mu exp(P pi / tau) / Z checked directly; the
online soft-label IPO population loss summed here pair by pair, with the raw judge and with the
symmetrised one, and its autograd gradient. The GPT-2 loops are checked for structure only
(distributions, frozen and distinct snapshots), not for agreement with the toy.
"""

from __future__ import annotations

import copy

import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge.ai_feedback import (
    ClassTrackingJudge,
    measure_judge_game,
    predict_ai_feedback,
    run_ai_feedback,
    self_rewarding,
)
from prefopt_toy.lm.bridge.run import lifted_judge
from prefopt_toy.lm.model_judge import LanguageModelJudge
from prefopt_toy.lm.models.corpus import FRUIT_TASK

TOKENS = (" sweet", " dark")
PROMPT = "My favourite fruit is"
# hand-labelled completions: 0 apple, 1 banana, 2 cherry, 3 other
TEXTS = [
    " an apple.",
    " a banana.",
    " a green apple.",
    " a cherry.",
    " a secret.",
    " bananas, yes.",
]
CLASSES = [0, 1, 0, 2, 3, 1]


def _params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_class_matrix_against_a_per_pair_loop(tiny_lm):
    model, tok = tiny_lm
    judge = LanguageModelJudge(model, tok, tokens=TOKENS, prompt=PROMPT)
    game = measure_judge_game(judge, TEXTS, CLASSES, 4, per_class=2)
    # oracle: one judge call per ordered pair of two different texts, averaged by class here
    M = len(TEXTS)
    J = [
        [judge.raw_probs([TEXTS[s]], [TEXTS[t]]).item() if s != t else None for t in range(M)]
        for s in range(M)
    ]
    for i in range(4):
        for j in range(4):
            vals = [
                J[s][t]
                for s in range(M)
                for t in range(M)
                if s != t and CLASSES[s] == i and CLASSES[t] == j
            ]
            want = sum(vals) / len(vals) if vals else 0.5
            assert game.raw[i, j].item() == pytest.approx(want, abs=3e-5), (i, j)
    assert game.counts.tolist() == [2, 2, 1, 1]
    assert torch.equal(game.P + game.P.T, torch.ones(4, 4, dtype=torch.float64))
    bias = [J[s][t] + J[t][s] - 1 for s in range(M) for t in range(s + 1, M)]
    assert game.position_bias.mean == pytest.approx(sum(bias) / len(bias), abs=3e-5)
    # per_class keeps the first completions of each class only
    small = measure_judge_game(judge, TEXTS, CLASSES, 4, per_class=1)
    assert small.counts.tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="class_ids"):
        measure_judge_game(judge, TEXTS, CLASSES[:3], 4)
    with pytest.raises(ValueError, match="LanguageModelJudge"):
        measure_judge_game(lifted_judge(FRUIT_TASK, [[0.5] * 3] * 3), TEXTS, CLASSES, 4)


def test_online_ipo_prediction_solves_its_fixed_point_equation():
    P = pt.symmetrize_judge([[0.5, 0.7, 0.2], [0.4, 0.5, 0.9], [0.6, 0.3, 0.5]])
    mu = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    pred, res = predict_ai_feedback("online_ipo", P, mu, tau=0.1)
    g = mu * torch.exp(P @ pred / 0.1)
    assert torch.allclose(pred, g / g.sum(), atol=1e-10) and res == 0.0


def test_online_dpo_prediction_is_the_rlhf_optimum_on_a_bt_game():
    # Calandriello et al., Thm. F.7: on a Bradley-Terry game online DPO's stationary point is RLHF's
    r = torch.tensor([0.0, 1.0, -0.5, 0.3], dtype=torch.float64)
    P = torch.sigmoid(r[:, None] - r[None, :])
    mu = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    pred, res = predict_ai_feedback("online_dpo", P, mu, beta=0.5, toy_steps=3000)
    g = mu * torch.exp(r / 0.5)
    assert torch.allclose(pred, g / g.sum(), atol=1e-6), (pred, g / g.sum())
    assert res < 1e-8
    # a class the reference never produced keeps probability 0; the rest is solved on the support
    mu0 = torch.tensor([0.5, 0.0, 0.3, 0.2], dtype=torch.float64)
    pred0, _ = predict_ai_feedback("online_ipo", P, mu0, tau=0.5)
    sub = pt.regularized_nash(P[[0, 2, 3]][:, [0, 2, 3]], mu0[[0, 2, 3]], 0.5)
    assert pred0[1].item() == 0.0 and torch.allclose(pred0[[0, 2, 3]], sub, atol=1e-12)
    with pytest.raises(ValueError, match="beta"):
        predict_ai_feedback("online_dpo", P, mu, tau=0.5)
    with pytest.raises(ValueError, match="algorithm"):
        predict_ai_feedback("dpo", P, mu, beta=0.5)


def test_raw_judge_gives_the_symmetrised_online_loss_in_expectation():
    # iid pairs from pi, soft labels w = J(y, y'): the online IPO population loss (and its gradient)
    # equals the one with w = (J + 1 - J^T) / 2, summed here pair by pair
    gen = torch.Generator().manual_seed(5)
    K, tau = 4, 0.2
    J = torch.rand(K, K, generator=gen, dtype=torch.float64)  # not antisymmetric
    mu = torch.softmax(torch.randn(K, generator=gen, dtype=torch.float64), 0)
    theta = torch.randn(K, generator=gen, dtype=torch.float64)
    pi_sg = torch.softmax(theta, 0)  # stop-gradient sampling distribution

    def loss(W, th):
        logr = torch.log_softmax(th, 0) - torch.log(mu)
        total = th.new_zeros(())
        for y in range(K):
            for z in range(K):
                h = logr[y] - logr[z]
                c = 1 / (2 * tau)
                total = total + pi_sg[y] * pi_sg[z] * (
                    W[y, z] * (h - c) ** 2 + (1 - W[y, z]) * (-h - c) ** 2
                )
        return total

    t1 = theta.clone().requires_grad_(True)
    t2 = theta.clone().requires_grad_(True)
    l_raw, l_sym = loss(J, t1), loss(pt.symmetrize_judge(J), t2)
    l_raw.backward()
    l_sym.backward()
    assert l_raw.item() == pytest.approx(l_sym.item(), abs=1e-12)
    assert torch.allclose(t1.grad, t2.grad, atol=1e-12)


def test_class_tracking_judge_delegates(tiny_lm):
    model, tok = tiny_lm
    lm = LanguageModelJudge(model, tok, tokens=TOKENS, prompt=PROMPT)
    lifted = lifted_judge(FRUIT_TASK, [[0.5] * 3] * 3)
    both = ClassTrackingJudge(lm, lifted)
    assert torch.equal(both.probs(TEXTS, TEXTS[::-1]), lm.probs(TEXTS, TEXTS[::-1]))
    assert torch.equal(both.class_distribution(TEXTS), lifted.class_distribution(TEXTS))
    with pytest.raises(ValueError, match="lifted"):
        ClassTrackingJudge(lm, lm)


def test_run_ai_feedback_structure(tiny_lm):
    model, tok = tiny_lm
    ref = model
    policy = copy.deepcopy(ref)
    before = _params(ref)
    judge = LanguageModelJudge(ref, tok, tokens=TOKENS, prompt=PROMPT, order="first")
    res = run_ai_feedback(
        "online_ipo", policy, ref, tok, judge, tau=0.5, steps=2, batch_size=2, n_samples=12,
        per_class=2, max_new_tokens=4, eval_every=1, n_eval=4, toy_steps=10,
    )  # fmt: skip
    assert _same(before, _params(ref))  # the reference (and the judge's model) untouched
    for d in (res.mu_class.probs, res.final.probs, res.prediction):
        assert d.shape == (4,) and float(d.sum()) == pytest.approx(1.0, abs=1e-12)
    assert res.steps == [0, 1, 2] and res.measured.shape == (3, 4)
    assert torch.allclose(res.measured.sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert res.summary()["measured"] == res.measured.tolist()
    assert res.order == "first" and res.tv == pytest.approx(
        0.5 * float((res.final.probs - res.prediction).abs().sum())
    )


def test_self_rewarding_snapshots_are_frozen_and_differ_per_round(tiny_lm):
    model, tok = tiny_lm
    ref = model
    policy = copy.deepcopy(ref)
    start = _params(policy)
    rounds = self_rewarding(
        policy, ref, tok, rounds=2, beta=0.5, steps=1, lr=1e-3, batch_size=2, n_samples=8,
        per_class=2, max_new_tokens=4, judge_kwargs={"tokens": TOKENS}, toy_steps=10,
    )  # fmt: skip
    assert [r.round for r in rounds] == [0, 1]
    j0, j1 = rounds[0].judge.model, rounds[1].judge.model
    # round 0's judge is the starting policy; round 1's is the policy after round 0
    assert _same(start, _params(j0))
    assert not _same(_params(j0), _params(j1))
    # frozen: no gradients, eval mode, separate objects from the policy trained in place
    for j in (j0, j1):
        assert j is not policy and not j.training
        assert not any(p.requires_grad for p in j.parameters())
    assert not _same(_params(policy), _params(j1))  # round 1 trained past its snapshot
    for r in rounds:
        for d in (r.start.probs, r.end.probs, r.prediction):
            assert float(d.sum()) == pytest.approx(1.0, abs=1e-12)
        assert torch.equal(r.game.P + r.game.P.T, torch.ones(4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="reference"):
        self_rewarding(policy, ref, tok, reference="latest")
