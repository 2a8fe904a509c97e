"""The bridge for SimPO and ORPO (``prefopt_toy.lm.bridge.reference_free``).

Oracles: the population objectives written out in numpy (ordered pairs of different classes from
``nu = mu_class``, soft labels from ``P``), whose gradient in the logits must vanish at the toy's
end point; SimPO's closed form with equal lengths and gamma 0 (DPO with a uniform reference at
beta / L, Meng et al. arXiv:2405.14734 Eq. (6)); ORPO's small-lambda limit (the distribution of
the chosen classes, Hong et al. arXiv:2403.07691 Eq. (6)). The GPT-2 run is a few steps on the
tiny model: its shape and that its logged class distributions are distributions.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from prefopt_toy.lm.bridge import (
    BridgeResult,
    predict_reference_free,
    reference_free_verdict,
    run_reference_free_bridge,
    simpo_uniform_optimum,
)
from prefopt_toy.lm.bridge.demo import BRIDGE_P

P_EXT = np.array(
    [
        [0.5, 0.9, 0.1, 0.9],
        [0.1, 0.5, 0.9, 0.9],
        [0.9, 0.1, 0.5, 0.9],
        [0.1, 0.1, 0.1, 0.5],
    ]
)  # BRIDGE_P bordered with other_loses = 0.9: lifted_judge(FRUIT_TASK, BRIDGE_P, 0.9).P_ext
MU = np.array([0.45, 0.3, 0.1, 0.15])


def _log_softmax(theta):
    return theta - np.log(np.exp(theta - theta.max()).sum()) - theta.max()


def _softplus(x):
    return np.logaddexp(0.0, x)


def _simpo_objective(theta, beta, gamma, lengths):
    a = _log_softmax(theta) / lengths
    J = 0.0
    for i in range(4):
        for j in range(4):
            if i != j:  # winner i, loser j: weight nu_i nu_j P_ij; -log sigma(x) = softplus(-x)
                J += MU[i] * MU[j] * P_EXT[i, j] * _softplus(-(beta * (a[i] - a[j]) - gamma))
    return J


def _orpo_objective(theta, lam):
    lp = _log_softmax(theta)
    log_odds = lp - np.log1p(-np.exp(lp))
    J = 0.0
    for i in range(4):
        for j in range(4):
            if i != j:
                ratio = _softplus(-(log_odds[i] - log_odds[j]))
                J += MU[i] * MU[j] * P_EXT[i, j] * (-lp[i] + lam * ratio)
    return J


def _grad(f, theta, h=1e-6):
    g = np.zeros_like(theta)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = h
        g[k] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


def test_the_test_game_is_the_lifted_bridge_game():
    from prefopt_toy.lm.bridge import lifted_judge
    from prefopt_toy.lm.models.corpus import FRUIT_TASK

    judge = lifted_judge(FRUIT_TASK, [list(r) for r in BRIDGE_P], other_loses=0.9)
    assert np.allclose(judge.P_ext.numpy(), P_EXT)


def test_simpo_end_point_is_stationary_for_the_numpy_objective():
    beta, gamma, lengths = 2.0, 0.5, np.array([5.6, 5.25, 8.0, 4.25])
    pred, traj = predict_reference_free(
        "simpo", P_EXT, MU, beta=beta, gamma=gamma, lengths=lengths, toy_steps=1000, lr=20.0
    )
    assert traj.shape == (1001, 4) and torch.allclose(traj[0], torch.tensor(MU))
    g = _grad(lambda t: _simpo_objective(t, beta, gamma, lengths), np.log(pred.numpy()))
    assert np.abs(g).max() < 1e-6, g
    # no KL anchor: "other", beaten by every class, collapses
    assert float(pred[-1]) < 1e-2 < MU[-1]


def test_simpo_equal_lengths_gamma_zero_is_dpo_with_a_uniform_reference():
    L, beta = 5.0, 2.0
    pred, _ = predict_reference_free(
        "simpo", P_EXT, MU, beta=beta, gamma=0.0, lengths=[L] * 4, toy_steps=1000, lr=20.0
    )
    closed = simpo_uniform_optimum(P_EXT, MU, beta=beta, length=L)
    assert torch.allclose(pred, closed, atol=1e-8)
    # the same optimum by the numpy objective: stationary there
    g = _grad(lambda t: _simpo_objective(t, beta, 0.0, np.full(4, L)), np.log(closed.numpy()))
    assert np.abs(g).max() < 1e-8


def test_orpo_end_point_is_stationary_and_near_the_chosen_distribution():
    lam = 0.1
    pred, _ = predict_reference_free("orpo", P_EXT, MU, beta=lam, toy_steps=1000)
    g = _grad(lambda t: _orpo_objective(t, lam), np.log(pred.numpy()))
    assert np.abs(g).max() < 1e-7, g
    chosen = MU * (P_EXT @ MU - MU / 2)  # the lam -> 0 limit (pairs of different classes)
    chosen /= chosen.sum()
    assert np.abs(pred.numpy() - chosen).sum() / 2 < 0.02
    assert float(pred[-1]) > 0.5 * chosen[-1]  # "other" keeps the mass it is chosen with


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"algorithm": "dpo"}, "algorithm"),
        ({"mu_class": [0.5, 0.5]}, "mu_class"),
        ({"mu_class": [0.5, 0.5, 0.5, -0.5]}, "mu_class"),
        ({"beta": 0.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"gamma": -1.0}, "gamma"),
        ({"lengths": [1.0, 2.0, 0.0, 1.0]}, "lengths"),
        ({"lengths": [1.0, 2.0]}, "lengths"),
        ({"toy_steps": 0}, "toy_steps"),
        ({"lr": 0.0}, "lr"),
        ({"mu_class": [0.5, 0.5, 0.0, 0.0]}, "mu_class"),
        ({"algorithm": "orpo", "gamma": 0.5}, "gamma"),
        ({"algorithm": "orpo", "lengths": [1.0] * 4}, "lengths"),
    ],
)
def test_predict_refuses_bad_arguments(kwargs, match):
    args = {"algorithm": "simpo", "mu_class": MU, "beta": 2.0, **kwargs}
    algorithm, mu = args.pop("algorithm"), args.pop("mu_class")
    with pytest.raises(ValueError, match=match):
        predict_reference_free(algorithm, P_EXT, mu, **args)


def test_simpo_uniform_optimum_and_the_run_refuse_bad_arguments():
    with pytest.raises(ValueError, match="length"):
        simpo_uniform_optimum(P_EXT, MU, beta=1.0, length=0.0)
    with pytest.raises(ValueError, match="beta"):
        simpo_uniform_optimum(P_EXT, MU, beta=-1.0, length=1.0)
    P = [list(r) for r in BRIDGE_P]
    with pytest.raises(ValueError, match="algorithm"):
        run_reference_free_bridge("ipo", P=P, beta=1.0)
    with pytest.raises(ValueError, match="beta"):
        run_reference_free_bridge("simpo", P=P, beta=0.0)
    with pytest.raises(ValueError, match="gamma"):
        run_reference_free_bridge("simpo", P=P, beta=1.0, gamma=-0.1)
    with pytest.raises(ValueError, match="tokenizer"):
        run_reference_free_bridge("orpo", P=P, beta=0.1, model=object())
    with pytest.raises(ValueError, match="result"):
        reference_free_verdict({"tv": 0.1})


@pytest.mark.parametrize("algorithm", ["simpo", "orpo"])
def test_run_on_the_tiny_model_logs_class_distributions(tiny_lm, algorithm):
    model, tok = tiny_lm
    before = copy.deepcopy(next(model.parameters()).detach())
    r = run_reference_free_bridge(
        algorithm,
        P=[list(row) for row in BRIDGE_P],
        beta=2.0 if algorithm == "simpo" else 0.1,
        model=model,
        tokenizer=tok,
        steps=2,
        batch_size=2,
        n_pairs=8,
        n_eval_samples=16,
        n_eval=4,
        eval_every=1,
        toy_steps=20,
        lr=1e-3,
    )
    assert isinstance(r, BridgeResult) and r.algorithm == algorithm
    assert torch.equal(next(model.parameters()).detach(), before)  # the reference is untouched
    assert r.steps == [0, 1, 2] and r.measured.shape == (3, 4) and r.n_steps == 2
    assert bool((r.measured >= 0).all()) and torch.allclose(
        r.measured.sum(-1), torch.ones(3, dtype=torch.float64)
    )
    assert r.toy_trajectory.shape == (21, 4)
    start = torch.tensor(r.extra["toy_start"], dtype=torch.float64)
    assert bool((start > 0).all()) and abs(float(start.sum()) - 1) < 1e-12
    if bool((r.mu_class.counts > 0).all()):
        assert torch.equal(start, r.mu_class.probs)
    assert torch.allclose(r.toy_trajectory[0], start)
    assert torch.equal(r.prediction, r.toy_trajectory[-1])
    assert abs(float(r.final.probs.sum()) - 1) < 1e-12 and r.final.n == 16
    assert torch.allclose(r.extra["predictor"](r.mu_class.probs), r.prediction)
    if algorithm == "simpo":
        assert len(r.extra["lengths"]) == 4 and min(r.extra["lengths"]) >= 1
        assert set(r.hyper) == {"beta", "gamma"}
    else:
        assert r.extra["lengths"] is None and set(r.hyper) == {"lam"}
    v = reference_free_verdict(r)
    assert v["tv_to_prediction"] == pytest.approx(r.tv)
    assert v["closer_to_prediction"] == (v["tv_to_prediction"] < v["tv_to_start"])
