"""The bridge for sDPO and R-DPO (``prefopt_toy.lm.bridge.family``).

Oracles: the exact toy at the **completion** level (``pt.rdpo_optimum`` on a lifted game whose
completions have their own lengths, summed by class; ``pt.rlhf_optimum`` run stage by stage with
the previous stage's policy as the reference) for the class-level predictions; and, in the slow
tier, the small GPT-2 trained offline on the lifted game, within total variation 0.05 of the
prediction (``benchmarks/bridge_family.md`` records the measured runs).
"""

from __future__ import annotations

import math

import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge.class_estimate import total_variation
from prefopt_toy.lm.bridge.error import tv_sampling_error
from prefopt_toy.lm.bridge.family import (
    effective_lengths,
    predict_family,
    run_family_bridge,
)
from prefopt_toy.lm.bridge.length_game import LENGTH_TASK, length_game

TARGET = 0.05
# a transitive class game: cherry (the longest completions) > banana > apple; "other" loses 0.8
FAMILY_P = [[0.5, 0.4, 0.3], [0.6, 0.5, 0.4], [0.7, 0.6, 0.5]]


def _bordered(P, other_loses=0.8) -> torch.Tensor:
    K = len(P)
    out = torch.full((K + 1, K + 1), 0.5, dtype=torch.float64)
    out[:K, :K] = torch.tensor(P, dtype=torch.float64)
    out[:K, K], out[K, :K] = other_loses, 1 - other_loses
    return out


def test_sdpo_prediction_is_t_stages_of_dpo_from_the_previous_policy():
    P = _bordered(FAMILY_P)
    mu = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    beta, T = 1.0, 3
    # stage by stage: each stage's optimum tilts its reference by the same BT reward (pairs from mu)
    reward = torch.log(pt.rlhf_optimum(P, mu, 1.0) / mu)  # r / 1 up to a constant
    pi = mu.clone()
    for _ in range(T):
        pi = pi * torch.exp(reward / beta)
        pi = pi / pi.sum()
    got = predict_family("sdpo", P, mu, beta=beta, stages=T)
    assert torch.allclose(got, pi, atol=1e-10)


def test_rdpo_class_prediction_with_effective_lengths_is_the_completion_level_optimum_summed():
    # completion level: 3 classes with 2, 3, 2 completions of different lengths, a class-level P
    classes = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    lengths = torch.tensor([4.0, 7.0, 4.0, 5.0, 8.0, 3.0, 6.0], dtype=torch.float64)
    mu_y = torch.tensor([0.2, 0.1, 0.15, 0.1, 0.05, 0.3, 0.1], dtype=torch.float64)
    Pc = torch.tensor([[0.5, 0.3, 0.6], [0.7, 0.5, 0.4], [0.4, 0.6, 0.5]], dtype=torch.float64)
    P_y = Pc[classes][:, classes]
    beta, alpha = 0.7, 0.4
    pi_y = pt.rdpo_optimum(P_y, mu_y, beta, alpha, lengths)
    want = torch.zeros(3, dtype=torch.float64).index_add_(0, classes, pi_y)
    mu_c = torch.zeros(3, dtype=torch.float64).index_add_(0, classes, mu_y)
    # E[exp(-alpha L / beta) | c] under mu: weight each sample by mu (here: exact weights)
    L_eff = torch.empty(3, dtype=torch.float64)
    for c in range(3):
        m = classes == c
        w = mu_y[m] / mu_y[m].sum()
        L_eff[c] = (
            -beta / alpha * math.log(float((w * torch.exp(-alpha * lengths[m] / beta)).sum()))
        )
    got = predict_family("rdpo", Pc, mu_c, beta=beta, alpha=alpha, lengths=L_eff)
    assert torch.allclose(got, want, atol=1e-9)
    # effective_lengths computes the same from samples (equal weights: repeat by mu * 20)
    reps = (mu_y * 20).round().long()
    ids = classes.repeat_interleave(reps)
    Ls = lengths.repeat_interleave(reps)
    assert torch.allclose(effective_lengths(ids, Ls, 3, beta=beta, alpha=alpha), L_eff, atol=1e-9)
    # a class that fixes its length: the effective length is that length
    assert effective_lengths([0, 0], [5.0, 5.0], 1, beta=1.0, alpha=2.0).tolist() == [5.0]


def test_predict_family_refuses_bad_arguments():
    P, mu = _bordered(FAMILY_P), [0.25] * 4
    with pytest.raises(ValueError, match="algorithm must be one of"):
        predict_family("dpo", P, mu, beta=1.0)
    with pytest.raises(ValueError, match="alpha and lengths are required"):
        predict_family("rdpo", P, mu, beta=1.0)
    with pytest.raises(ValueError, match="stages"):
        predict_family("sdpo", P, mu, beta=1.0, stages=0)


@pytest.mark.parametrize("algorithm", ["sdpo", "rdpo"])
def test_run_family_bridge_smoke_on_the_tiny_model(tiny_lm, algorithm):
    model, tok = tiny_lm
    res = run_family_bridge(
        algorithm,
        P=FAMILY_P,
        beta=1.0,
        stages=2,
        alpha=0.3,
        steps=2,
        batch_size=4,
        n_pairs=16,
        n_eval_samples=32,
        n_eval=8,
        eval_every=1,
        model=model,
        tokenizer=tok,
    )
    assert res.n_steps == 2 and res.steps == [0, 1, 2]
    assert math.isclose(float(res.prediction.sum()), 1.0, abs_tol=1e-12)
    assert res.tv == pytest.approx(total_variation(res.final.probs, res.prediction))
    err = tv_sampling_error(res, n_boot=20)
    assert err.floor_mean > 0
    if algorithm == "rdpo":
        assert len(res.extra["effective_lengths"]) == 4


# ----------------------------------------------------------------------------- slow: small GPT-2

# The runs of benchmarks/bridge_family.md (small model, one thread). 4096 pairs, as for R-DPO
# below: with 1024 the 120 steps are 3.75 passes over the pairs and sDPO passes through the
# prediction and on (TV 0.048 on one CPU, 0.078 on another, 0.17 at 240 steps or at lr 2e-4),
# so a pass depended on where the schedule stopped. With 4096 pairs two schedules land at the
# sampling floor (0.022 at 120 steps / 2e-4, 0.026 at 200 / 1e-4). A second base model (seed 1)
# ends 0.089 from its own prediction with this schedule: the benchmark records it.
_SLOW = {"sdpo": {"stages": 2, "steps": 120, "lr": 2e-4, "n_pairs": 4096}}


@pytest.fixture()
def _one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sdpo"])
def test_small_gpt2_lands_within_tv_005_of_the_family_prediction(_one_thread, algorithm):
    kw = dict(_SLOW[algorithm])
    res = run_family_bridge(
        algorithm,
        P=FAMILY_P,
        beta=1.0,
        batch_size=32,
        n_eval_samples=2000,
        n_eval=128,
        eval_every=max(1, kw["steps"] // 6),
        **kw,
    )
    mu = res.mu_class.probs
    expected = pt.rlhf_optimum(_bordered(FAMILY_P), mu, 1.0 / 2)
    assert torch.allclose(res.prediction, expected, atol=1e-12)
    start = total_variation(mu, res.prediction)
    err = tv_sampling_error(res)
    print(
        f"{algorithm}: TV {res.tv:.4f} (reference {start:.4f}; sampling floor {err.floor_mean:.4f} "
        f"({err.floor_upper:.4f}), "
        f"bootstrap {err.interval[0]:.4f}-{err.interval[1]:.4f}); {res.wall_s:.0f} s; "
        f"final {[round(p, 4) for p in res.final.probs.tolist()]}, "
        f"prediction {[round(p, 4) for p in res.prediction.tolist()]}"
    )
    assert start > 2 * TARGET
    assert res.tv <= TARGET
    # The second stage's tilt is there: one-stage DPO's optimum (0.13 from sDPO's) is far.
    one_stage = pt.rlhf_optimum(_bordered(FAMILY_P), mu, 1.0)
    assert total_variation(res.final.probs, one_stage) > 2 * res.tv


# R-DPO on the lifted game of completion lengths (classes "3 tokens" ... "7 tokens"), judged by
# Bradley-Terry in KAPPA * length: DPO's optimum tilts mu towards long completions by
# exp(KAPPA L / beta), R-DPO's (ALPHA > KAPPA) towards short ones by exp((KAPPA - ALPHA) L / beta).
# The fruit game's R-DPO run (TV 0.069 / 0.076) is the earlier attempt in the benchmark.
# 4096 pairs: with 1024 the labels' own noise (Bernoulli labels near coin flips at KAPPA = 0.3) puts
# the optimum of the drawn pairs 0.067 from the population prediction, and the result depends on the
# schedule (TV 0.041 at 60 steps / 2e-4, 0.076 at 100 steps / 1e-4: runs A and B). With 4096 pairs
# both schedules land within 0.021 (runs C and D, benchmarks/bridge_family.md), about 10 min CPU.
RDPO_SLOW = {"kappa": 0.3, "alpha": 0.6, "steps": 60, "lr": 2e-4, "n_pairs": 4096}


@pytest.mark.slow
def test_small_gpt2_rdpo_lands_within_tv_005_on_the_length_game(_one_thread):
    kw = dict(RDPO_SLOW)
    P = length_game(LENGTH_TASK, kw.pop("kappa"))
    res = run_family_bridge(
        "rdpo",
        P=P,
        beta=1.0,
        task=LENGTH_TASK,
        batch_size=32,
        n_eval_samples=2000,
        n_eval=128,
        eval_every=max(1, kw["steps"] // 6),
        **kw,
    )
    mu = res.mu_class.probs
    K = len(LENGTH_TASK.class_names)
    # every length class has one length: the effective lengths are the class lengths, exactly
    L_eff = torch.tensor(res.extra["effective_lengths"], dtype=torch.float64)
    assert L_eff[:K].tolist() == [float(n) for n in LENGTH_TASK.class_lengths]
    expected = pt.rdpo_optimum(res.P_ext, mu, 1.0, RDPO_SLOW["alpha"], L_eff)
    assert torch.allclose(res.prediction, expected, atol=1e-12)
    dpo = pt.rlhf_optimum(res.P_ext, mu, 1.0)
    start = total_variation(mu, res.prediction)
    apart = total_variation(dpo, res.prediction)
    to_dpo = total_variation(res.final.probs, dpo)
    err = tv_sampling_error(res)
    print(
        f"rdpo (length game): TV {res.tv:.4f} (reference {start:.4f}, DPO prediction {to_dpo:.4f}; "
        f"sampling floor {err.floor_mean:.4f}, bootstrap {err.interval[0]:.4f}-"
        f"{err.interval[1]:.4f}); {res.wall_s:.0f} s"
    )
    assert start > 2 * TARGET and apart > 2 * TARGET  # the prediction is apart from mu and DPO
    assert res.tv <= TARGET
    assert to_dpo > 3 * res.tv  # clearly closer to R-DPO's prediction than to DPO's


def test_run_family_bridge_on_the_length_game_smoke(tiny_lm):
    model, tok = tiny_lm
    res = run_family_bridge(
        "rdpo",
        P=length_game(LENGTH_TASK, 0.3),
        beta=1.0,
        alpha=0.6,
        task=LENGTH_TASK,
        steps=2,
        batch_size=4,
        n_pairs=16,
        n_eval_samples=32,
        n_eval=8,
        eval_every=1,
        model=model,
        tokenizer=tok,
    )
    K = len(LENGTH_TASK.class_names)
    assert res.class_names == (*LENGTH_TASK.class_names, "other")
    assert res.n_steps == 2 and res.P_ext.shape == (K + 1, K + 1)
    # the classes that occurred have their own length as effective length
    ids = set(torch.arange(K)[res.mu_class.probs[:K] > 0].tolist())
    assert ids, "the tiny model wrote no completion of 3 to 7 tokens"
    for c in ids:
        assert res.extra["effective_lengths"][c] == LENGTH_TASK.class_lengths[c]
