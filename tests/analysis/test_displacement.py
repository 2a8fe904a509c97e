"""Likelihood displacement (prefopt_toy.analysis.displacement) against independent computations.

Oracles: torch autograd and central finite differences on a DPO loss written here from
log_softmax and softplus; the one-dimensional recursion of the step size along the ray
w_t = w0 + s_t delta (derived by hand below); hand-computed first-order changes; symmetry
arguments for the tabular runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt_toy.analysis import displacement as D

F64 = torch.float64


def _dpo_loss_by_hand(phi, pairs, w, w_ref, beta):
    """Mean of -log sigmoid(beta h) with h from log-softmax log-ratios (written independently)."""
    log_pi = torch.log_softmax(phi @ w, dim=0)
    log_mu = torch.log_softmax(phi @ w_ref, dim=0)
    total = 0.0
    for c, r in pairs:
        h = (log_pi[c] - log_mu[c]) - (log_pi[r] - log_mu[r])
        total = total + torch.log1p(torch.exp(-beta * h))
    return total / len(pairs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_autograd_and_finite_differences(seed):
    gen = torch.Generator().manual_seed(seed)
    k, d = 5, 3
    phi = torch.randn(k, d, generator=gen, dtype=F64)
    w = torch.randn(d, generator=gen, dtype=F64)
    w_ref = torch.randn(d, generator=gen, dtype=F64)
    pairs = [(0, 1), (2, 1), (4, 3)]
    beta = 0.7
    loss, grad = D.dpo_loss_and_gradient(
        phi, [p[0] for p in pairs], [p[1] for p in pairs], w, w_ref, beta
    )

    w_var = w.clone().requires_grad_(True)
    ref_loss = _dpo_loss_by_hand(phi, pairs, w_var, w_ref, beta)
    (auto,) = torch.autograd.grad(ref_loss, w_var)
    assert loss == pytest.approx(float(ref_loss.detach()), abs=1e-14)
    torch.testing.assert_close(grad, auto, atol=1e-14, rtol=0)

    eps = 1e-6
    fd = torch.empty(d, dtype=F64)
    for i in range(d):
        e = torch.zeros(d, dtype=F64)
        e[i] = eps
        up = float(_dpo_loss_by_hand(phi, pairs, w + e, w_ref, beta))
        down = float(_dpo_loss_by_hand(phi, pairs, w - e, w_ref, beta))
        fd[i] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad, fd, atol=1e-9, rtol=0)


def test_run_follows_the_ray_recursion():
    """One pair from w0 = w_ref: w_t = w0 + s_t delta, s_{t+1} = s_t + lr beta sigmoid(-beta |delta|^2 s_t).

    Derivation: h(w) = delta . (w - w_ref), grad = -beta sigmoid(-beta h) delta, so every step adds a
    multiple of delta; with w - w_ref = s delta the margin is h = |delta|^2 s.
    """
    ex = D.displacement_example("shared_features")
    run = ex.run()
    phi = torch.tensor(ex.features, dtype=F64)
    delta = phi[ex.chosen] - phi[ex.rejected]
    norm2 = float(delta @ delta)
    s = 0.0
    for t in range(run.steps + 1):
        expected_logp = torch.log_softmax(phi @ (s * delta), dim=0)
        torch.testing.assert_close(run.weights[t], s * delta, atol=1e-10, rtol=1e-12)
        torch.testing.assert_close(run.log_policies[t], expected_logp, atol=1e-10, rtol=1e-12)
        assert float(run.margin[t]) == pytest.approx(norm2 * s, rel=1e-12, abs=1e-12)
        s += ex.lr * ex.beta / (1.0 + math.exp(ex.beta * norm2 * s))


def test_default_example_displaces_both_log_probs_while_the_margin_grows():
    run = D.displacement_example("shared_features").run()
    lc, lr_, h = run.logp_chosen.numpy(), run.logp_rejected.numpy(), run.margin.numpy()
    # Theory (module docstring): a = (0.08, -0.08, 0.4), E_mu[a] = 0.4/3 > 0.08, and E_pi[a] only
    # grows along the run, so both log-probabilities fall at every step and the margin rises.
    assert np.all(np.diff(lc) < 0)
    assert np.all(np.diff(lr_) < 0)
    assert np.all(np.diff(h) > 0)
    assert lc[0] == pytest.approx(-math.log(3.0), abs=1e-15)  # uniform start
    assert lc[-1] < -20.0 and lr_[-1] < -30.0 and h[-1] > 10.0  # measured: -22.5, -33.7, 11.2
    # The mass went to the third response ("Yes"), the argmax of a.
    assert float(run.policies[-1, 2]) > 1 - 1e-9
    assert np.all(np.diff(run.losses.numpy()) < 0)


def test_default_example_criterion_by_hand():
    c = D.displacement_criterion(D.displacement_example("shared_features").features, 0, 1)
    # delta = (0, 0.4): a = (0.2 * 0.4, -0.2 * 0.4, 1.0 * 0.4); uniform mean 0.4 / 3.
    torch.testing.assert_close(
        c.scores, torch.tensor([0.08, -0.08, 0.4], dtype=F64), atol=1e-15, rtol=0
    )
    assert c.mean_score == pytest.approx(0.4 / 3, abs=1e-15)
    assert c.chosen_rate == pytest.approx(0.08 - 0.4 / 3, abs=1e-15)
    assert c.chosen_falls_from_start and c.chosen_falls_eventually and c.winner == 2


def test_tabular_chosen_rises_and_only_two_logits_move():
    ex = D.displacement_example("tabular")
    run = ex.run()
    # Identity features: the gradient is -beta sigma(-beta h) (e_chosen - e_rejected), so the logit
    # of the third response never moves and the chosen logit rises by exactly what the rejected loses.
    assert torch.equal(run.weights[:, 2], torch.zeros(run.steps + 1, dtype=F64))
    torch.testing.assert_close(run.weights[:, 0], -run.weights[:, 1], atol=0, rtol=0)
    assert np.all(np.diff(run.weights[:, 0].numpy()) > 0)
    # pi(chosen) = e^x / (e^x + e^-x + 1) is increasing in x = theta_chosen > 0.
    lc = run.logp_chosen.numpy()
    assert np.all(np.diff(lc) > 0)
    assert np.all(np.diff(run.logp_rejected.numpy()) < 0)
    x = run.weights[:, 0]
    expected = x - torch.log(torch.exp(x) + torch.exp(-x) + 1.0)
    torch.testing.assert_close(run.logp_chosen, expected, atol=1e-12, rtol=0)
    c = D.displacement_criterion(ex.features, 0, 1)
    assert not c.chosen_falls_eventually and c.chosen_rate == pytest.approx(1.0)


def test_shared_responses_tabular_b_falls_although_it_wins_b_over_c():
    run = D.displacement_example("shared_responses").run()
    # Pairs a>b, b>c, a>c from theta = 0: the map (a, b, c) -> (-c, -b, -a) swaps the pairs a>b and
    # b>c and keeps a>c, so theta_b = 0 and theta_c = -theta_a = -x all along; then
    # log pi(b) = -log(1 + 2 cosh x), decreasing in x > 0, while h(b>c) = x grows.
    w = run.weights
    assert float(w[:, 1].abs().max()) < 1e-12
    torch.testing.assert_close(w[:, 2], -w[:, 0], atol=1e-12, rtol=0)
    x = w[:, 0]
    torch.testing.assert_close(
        run.log_policies[:, 1], -torch.log(1 + 2 * torch.cosh(x)), atol=1e-12, rtol=0
    )
    assert np.all(np.diff(run.log_policies[:, 1].numpy()) < 0)
    assert np.all(np.diff(run.margins[:, 1].numpy()) > 0)  # the margin of the pair b > c
    assert run.logp_chosen.shape == (run.steps + 1, 3)


def test_first_step_matches_first_order_formula():
    """At w0 = w_ref, h = 0 and the gradient is -(beta / 2) delta; one step of size lr changes
    log pi(y) by lr (beta / 2) (a_y - E_mu[a]) + O(lr^2), a = Phi delta."""
    ex = D.displacement_example("shared_features")
    phi = torch.tensor(ex.features, dtype=F64)
    beta = ex.beta
    a = np.array([0.08, -0.08, 0.4])  # hand-computed: Phi @ (0, 0.4)
    v = beta / 2 * (a - a.mean())  # mu uniform
    vel = D.log_prob_velocity(phi, 0, 1, [0.0, 0.0], [0.0, 0.0], beta)
    np.testing.assert_allclose(vel.numpy(), v, atol=1e-15)
    errors = []
    for lr in (1e-2, 1e-3):
        run = D.displacement_run(phi, 0, 1, beta=beta, lr=lr, steps=1)
        change = (run.log_policies[1] - run.log_policies[0]).numpy()
        errors.append(np.abs(change / lr - v).max())
    # The remainder is O(lr): ten times smaller step, about ten times smaller error.
    assert errors[0] < 1e-3 and errors[1] < errors[0] / 8


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-2, 2, allow_nan=False), min_size=8, max_size=8),
    st.floats(0.05, 2.0),
)
def test_criterion_predicts_monotone_fall(entries, beta):
    phi = torch.tensor(entries, dtype=F64).reshape(4, 2)
    if float((phi[0] - phi[1]).abs().max()) < 1e-3:
        return
    c = D.displacement_criterion(phi, 0, 1)
    if abs(c.chosen_rate) < 1e-3:
        return
    run = D.displacement_run(phi, 0, 1, beta=beta, lr=0.5, steps=30)
    diffs = np.diff(run.logp_chosen.numpy())
    if c.chosen_falls_from_start:
        # E_pi[a] only grows along the ray, so the fall never stops, whatever the step size.
        assert np.all(diffs < 0)
    else:
        # A positive rate is a statement about the derivative: a small first step rises.
        tiny = D.displacement_run(phi, 0, 1, beta=beta, lr=1e-5, steps=1)
        assert float(tiny.logp_chosen[1] - tiny.logp_chosen[0]) > 0
    assert np.all(np.diff(run.margin.numpy()) > 0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"features": [1.0, 2.0]}, "features"),
        ({"features": [[1.0, 2.0]]}, "features"),
        ({"features": [[1.0, float("nan")], [0.0, 1.0]]}, "features"),
        ({"chosen": 3}, "chosen"),
        ({"chosen": 1.5}, "chosen"),
        ({"rejected": -1}, "rejected"),
        ({"chosen": 1}, "chosen and rejected must differ"),
        ({"chosen": [0, 2], "rejected": [1]}, "same length"),
        ({"chosen": [0], "rejected": 1}, "both"),
        ({"features": [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]}, "features of chosen"),
        ({"w0": [0.0]}, "w0"),
        ({"w_ref": [0.0, 0.0, 0.0]}, "w_ref"),
        ({"beta": 0.0}, "beta"),
        ({"lr": -1.0}, "lr"),
        ({"steps": -1}, "steps"),
        ({"steps": 2.5}, "steps"),
    ],
)
def test_bad_input_raises(kwargs, name):
    args = {"features": [[1.0, 0.2], [1.0, -0.2], [-1.0, 1.0]], "chosen": 0, "rejected": 1}
    args.update(kwargs)
    features, chosen, rejected = args.pop("features"), args.pop("chosen"), args.pop("rejected")
    with pytest.raises(ValueError, match=name):
        D.displacement_run(features, chosen, rejected, **args)


def test_bad_input_other_functions():
    phi = [[1.0, 0.2], [1.0, -0.2], [-1.0, 1.0]]
    with pytest.raises(ValueError, match="one pair"):
        D.displacement_criterion(phi, [0, 1], [1, 2])
    with pytest.raises(ValueError, match="w0"):
        D.displacement_criterion(phi, 0, 1, w0=[1.0])
    with pytest.raises(ValueError, match="w"):
        D.dpo_loss_and_gradient(phi, 0, 1, [0.0], [0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="beta"):
        D.log_prob_velocity(phi, 0, 1, [0.0, 0.0], [0.0, 0.0], -1.0)
    with pytest.raises(ValueError, match="name must be one of"):
        D.displacement_example("nope")
    with pytest.raises(ValueError, match="responses"):
        import matplotlib.figure

        axes = matplotlib.figure.Figure().subplots(1, 2)
        D.plot_displacement(axes, D.displacement_example("tabular").run(quick=True), ["x"])


def test_plot_draws_every_response_and_margin():
    import matplotlib.figure

    run = D.displacement_example("shared_features").run(quick=True)
    axes = matplotlib.figure.Figure().subplots(1, 2)
    lines = D.plot_displacement(axes, run, ("No", "Never", "Yes"))
    assert len(lines) == 3 + 1 + 1  # three responses, one margin, the loss
    np.testing.assert_array_equal(lines[0].get_ydata(), run.log_policies[:, 0].numpy())
    np.testing.assert_array_equal(lines[3].get_ydata(), run.margins[:, 0].numpy())
    assert lines[0].get_label() == "No (chosen)" and lines[1].get_label() == "Never (rejected)"
