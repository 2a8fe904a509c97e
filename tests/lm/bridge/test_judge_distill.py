"""Tests for prefopt_toy.lm.bridge.judge_distill: a GPT-2 fine-tuned into a judge of a known J.

Oracles: the class of each drawn completion looked up here in a hand-written dict and J indexed
by hand; the ordered-pair frequencies and the hard labels' class means against their binomial
spread; the loss rebuilt pair by pair from ``LanguageModelJudge.raw_probs`` (one unpadded
call per pair, a different code path from the batched training forward) and the cross-entropy
written out; stationarity of the loss at labels equal to the judge's own reading (gradient 0,
as d loss / d gap = sigma(gap) - y); the designed pair bias from a loop over every unordered pair
of a class list; and, on the tiny model, that training moves the measured class matrix and the
mean position bias towards the design (against the untrained judge, which is exactly 1/2).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from prefopt_toy.games.judges import logit_shift_judge, symmetrize_judge
from prefopt_toy.lm.bridge.ai_feedback import JudgeGame, measure_judge_game
from prefopt_toy.lm.bridge.judge_distill import (
    designed_pair_bias,
    distill_judge,
    distillation_pairs,
    judge_distill_loss,
    judge_recovery,
)
from prefopt_toy.lm.bridge.run import lifted_judge
from prefopt_toy.lm.model_judge import LanguageModelJudge, PositionBias
from prefopt_toy.lm.models.corpus import FRUIT_TASK

PROMPT = "My favourite fruit is"
# a designed game: cherry > banana > apple, every class beats "other" with 0.8, first slot +log 2
P_DESIGN = [[0.5, 0.3, 0.2], [0.7, 0.5, 0.35], [0.8, 0.65, 0.5]]
BIAS = math.log(2.0)
# hand-labelled pool: 0 apple, 1 banana, 2 cherry, 3 other
HAND = {
    " an apple.": 0,
    " a green apple.": 0,
    " a banana.": 1,
    " a ripe yellow banana.": 1,
    " a cherry.": 2,
    " a bowl of dark cherries.": 2,
    " a secret.": 3,
    " hard to choose.": 3,
}
TEXTS = list(HAND)
CLASSES = list(HAND.values())


def _design() -> torch.Tensor:
    lifted = lifted_judge(FRUIT_TASK, P_DESIGN, other_loses=0.8)
    return logit_shift_judge(lifted.P_ext, BIAS)


def test_pairs_targets_against_a_hand_lookup():
    J = _design()
    gen = torch.Generator().manual_seed(3)
    pairs = distillation_pairs(TEXTS, CLASSES, J, n_pairs=200, generator=gen)
    for a, b, ca, cb, y, lab in zip(
        pairs.first,
        pairs.second,
        pairs.class_first.tolist(),
        pairs.class_second.tolist(),
        pairs.target.tolist(),
        pairs.label.tolist(),
    ):
        assert a != b  # two different pool entries (the hand pool has no repeated string)
        assert (ca, cb) == (HAND[a], HAND[b])
        assert y == J[HAND[a], HAND[b]].item() == lab  # soft labels are the targets


def test_pairs_are_uniform_over_ordered_pairs_and_hard_labels_have_mean_J():
    J = torch.tensor([[0.5, 0.9], [0.2, 0.7]], dtype=torch.float64)
    texts, classes = [" a", " b", " c"], [0, 1, 1]
    n = 30000
    pairs = distillation_pairs(
        texts, classes, J, n_pairs=n, generator=torch.Generator().manual_seed(0), labels="hard"
    )
    # 6 ordered pairs of two different entries, each with probability 1/6
    sd = math.sqrt(n * (1 / 6) * (5 / 6))
    for a in texts:
        for b in texts:
            if a != b:
                k = sum(1 for x, y in zip(pairs.first, pairs.second) if (x, y) == (a, b))
                assert abs(k - n / 6) < 5 * sd, (a, b, k)
    assert set(pairs.label.tolist()) <= {0.0, 1.0}
    for i in range(2):
        for j in range(2):
            sel = (pairs.class_first == i) & (pairs.class_second == j)
            m = int(sel.sum())
            if (i, j) == (0, 0):
                assert m == 0  # one text of class 0: never paired with itself
                continue
            p = J[i, j].item()
            assert abs(pairs.label[sel].mean().item() - p) < 5 * math.sqrt(p * (1 - p) / m)
            assert torch.all(pairs.target[sel] == p)


def test_balanced_pairs_have_the_class_pair_frequencies_of_the_weights():
    J = torch.full((3, 3), 0.5, dtype=torch.float64)
    classes = [0] * 6 + [1] * 3 + [2]  # class 2 is rare
    texts = [f" t{k}" for k in range(len(classes))]
    n = 30000
    pairs = distillation_pairs(
        texts, classes, J, n_pairs=n, generator=torch.Generator().manual_seed(1), balanced=True
    )
    assert all(a != b for a, b in zip(pairs.first, pairs.second))
    # oracle: P(s = k) = w_k / W, P(t = l | s = k) = w_l / (W - w_k), w_k = 1 / n_class(k)
    size = {c: classes.count(c) for c in set(classes)}
    w = [1.0 / size[c] for c in classes]
    W = sum(w)
    want = [[0.0] * 3 for _ in range(3)]
    for k in range(len(w)):
        for l in range(len(w)):
            if k != l:
                want[classes[k]][classes[l]] += w[k] / W * w[l] / (W - w[k])
    for i in range(3):
        assert sum(want[i]) == pytest.approx(1 / 3, abs=1e-12)  # each class first equally often
        for j in range(3):
            k = int(((pairs.class_first == i) & (pairs.class_second == j)).sum())
            p = want[i][j]
            assert abs(k - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (i, j, k, n * p)


def test_loss_against_the_judge_read_pair_by_pair(tiny_lm):
    model, tok = tiny_lm
    judge = LanguageModelJudge(model, tok, prompt=PROMPT, tokens=(" sweet", " dark"))
    first = [" an apple.", " a cherry.", " a secret.", " a ripe yellow banana."]
    second = [" a banana.", " an apple.", " a bowl of dark cherries.", " a green apple."]
    y = [0.9, 0.2, 0.5, 1.0]
    loss = judge_distill_loss(judge, first, second, y)
    want = 0.0
    for a, b, t in zip(first, second, y):
        p = judge.raw_probs([a], [b]).item()  # its own unpadded forward pass, no grad
        want -= t * math.log(p) + (1 - t) * math.log(1 - p)
    assert loss.item() == pytest.approx(want / len(y), abs=2e-5)
    assert loss.requires_grad


def test_loss_is_stationary_at_the_judges_own_reading(tiny_lm):
    model, tok = tiny_lm
    m = copy.deepcopy(model).double()
    judge = LanguageModelJudge(m, tok, prompt=PROMPT, tokens=(" sweet", " dark"))
    first, second = (
        [" an apple.", " a cherry.", " a secret."],
        [" a banana.", " an apple.", " a cherry."],
    )
    own = judge.raw_probs(first, second)  # the labels the judge already gives
    judge_distill_loss(judge, first, second, own).backward()
    g_own = max(p.grad.abs().max().item() for p in m.parameters() if p.grad is not None)
    m.zero_grad()
    judge_distill_loss(judge, first, second, [1.0, 0.0, 1.0]).backward()
    g_far = max(p.grad.abs().max().item() for p in m.parameters() if p.grad is not None)
    assert g_far > 1e-3
    assert g_own < 1e-9 * max(1.0, g_far)


def test_designed_pair_bias_against_a_loop():
    J = _design()
    counts = [2, 3, 1, 0]
    labels = [c for c, k in enumerate(counts) for _ in range(k)]
    vals = [
        J[labels[s], labels[t]].item() + J[labels[t], labels[s]].item() - 1
        for s in range(len(labels))
        for t in range(s + 1, len(labels))
    ]
    assert designed_pair_bias(J, counts) == pytest.approx(sum(vals) / len(vals), abs=1e-14)
    with pytest.raises(ValueError, match="counts"):
        designed_pair_bias(J, [1, 0, 0, 0])
    with pytest.raises(ValueError, match="counts"):
        designed_pair_bias(J, [1.0, 1.0, 0.0, 0.0])


def test_recovery_of_the_design_itself_is_exact():
    J = _design()
    counts = torch.tensor([2, 2, 1, 0])
    empty = torch.zeros(0, dtype=torch.float64)
    pb = PositionBias(empty, empty, empty, designed_pair_bias(J, counts), 0.0, 0.0, 0.0, 0.0)
    raw = J.clone()
    raw[3, :] = raw[:, 3] = 0.5  # a class with no completion keeps 1/2 (measure_judge_game)
    game = JudgeGame(("a", "b", "c", "o"), raw, symmetrize_judge(raw), counts, pb, 0.0)
    rec = judge_recovery(game, J)
    assert rec["raw_max"] == rec["P_max"] == rec["bias_max"] == 0.0
    assert rec["pair_bias"] == rec["pair_bias_designed"]
    # cherry-cherry (one completion) and every "other" entry are left out: 3 x 3 - 1 entries
    assert rec["n_entries"] == 8
    keep = [(i, j) for i in range(3) for j in range(3) if (i, j) != (2, 2)]
    assert rec["raw_max_uniform"] == pytest.approx(max(abs(J[i, j].item() - 0.5) for i, j in keep))


@pytest.mark.slow
def test_distillation_moves_the_class_game_towards_the_design(tiny_lm):
    model, tok = tiny_lm
    before = [p.detach().clone() for p in model.parameters()]
    J = _design()
    untrained = LanguageModelJudge(model, tok, prompt=PROMPT)  # "1" / "2": exactly 1/2
    g0 = measure_judge_game(untrained, TEXTS, CLASSES, 4, per_class=2)
    assert torch.all(g0.raw == 0.5)
    student = copy.deepcopy(model)
    dj = distill_judge(
        student, tok, TEXTS, CLASSES, J, steps=60, batch_size=16, lr=2e-3, prompt=PROMPT
    )
    assert dj.judge.model is student and len(dj.losses) == 60
    assert all(k > -1e-9 for k in dj.kl)  # soft labels: the loss minus the labels' entropy is a KL
    g = measure_judge_game(dj.judge, TEXTS, CLASSES, 4, per_class=2)
    r0, r = judge_recovery(g0, J), judge_recovery(g, J)
    assert r["raw_mean"] < 0.5 * r0["raw_mean"]  # measured 0.054 against 0.222 (seed 0)
    # who beats whom after averaging both orders: the design's verdict on every pair of classes
    P_design = symmetrize_judge(J)
    for i in range(4):
        for j in range(i + 1, 4):
            assert (g.P[i, j] > 0.5) == (P_design[i, j] > 0.5), (i, j)
    designed = r["pair_bias_designed"]
    assert designed > 0.2 and g0.position_bias.mean == 0.0
    assert abs(r["pair_bias"] - designed) < 0.5 * designed
    # the reference model is untouched
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_hard_labels_train_on_zero_one_targets(tiny_lm):
    model, tok = tiny_lm
    dj = distill_judge(
        copy.deepcopy(model), tok, TEXTS, CLASSES, _design(), steps=3, batch_size=4, labels="hard"
    )
    # a 0/1 label has entropy 0: the recorded KL is the loss itself
    assert dj.kl == dj.losses and all(math.isfinite(x) and x > 0 for x in dj.losses)
    assert not dj.judge.model.training


def test_bad_input():
    J = _design()
    gen = torch.Generator()
    with pytest.raises(ValueError, match="labels"):
        distillation_pairs(TEXTS, CLASSES, J, n_pairs=2, generator=gen, labels="sampled")
    with pytest.raises(ValueError, match="n_pairs"):
        distillation_pairs(TEXTS, CLASSES, J, n_pairs=0, generator=gen)
    with pytest.raises(ValueError, match="class_ids"):
        distillation_pairs(TEXTS, [4] * len(TEXTS), J, n_pairs=2, generator=gen)
    with pytest.raises(ValueError, match="texts"):
        distillation_pairs(TEXTS[:1], CLASSES[:1], J, n_pairs=2, generator=gen)
    with pytest.raises(ValueError, match="balanced"):
        distillation_pairs(TEXTS, CLASSES, J, n_pairs=2, generator=gen, balanced="yes")
    with pytest.raises(ValueError, match="generator"):
        distillation_pairs(TEXTS, CLASSES, J, n_pairs=2, generator=0)
    with pytest.raises(ValueError, match="J"):
        distillation_pairs(TEXTS, CLASSES, [[1.5, 0.0], [0.0, 0.5]], n_pairs=2, generator=gen)
    with pytest.raises(ValueError, match="judge"):
        judge_distill_loss(None, [" a"], [" b"], [0.5])


def test_bad_loss_input(tiny_lm):
    model, tok = tiny_lm
    judge = LanguageModelJudge(model, tok)
    with pytest.raises(ValueError, match="label"):
        judge_distill_loss(judge, [" a"], [" b"], [1.5])
    with pytest.raises(ValueError, match="label"):
        judge_distill_loss(judge, [" a"], [" b"], [0.5, 0.5])
    with pytest.raises(ValueError, match="first and second"):
        judge_distill_loss(judge, [" a"], [], [0.5])
    with pytest.raises(ValueError, match="steps"):
        distill_judge(copy.deepcopy(model), tok, TEXTS, CLASSES, _design(), steps=0)
