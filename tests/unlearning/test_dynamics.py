r"""Tests of the exact unlearning dynamics (``prefopt_toy.dynamics.unlearn``) against separate maths.

The oracle is a numpy re-implementation with hand-derived gradients in the logits :math:`\theta`
of one context (:math:`\pi = \mathrm{softmax}(\theta)`, :math:`r(y) = \log\pi(y) - \log\mu(y)`,
F forget and R retain contexts, m alternates, forget answer f). Since :math:`\partial r(y) /
\partial\theta_z = \delta_{yz} - \pi_z`, a loss of the r's has gradient
:math:`g = \partial\ell/\partial r - \pi\,\sum_y \partial\ell/\partial r(y)`:

- GA, :math:`\ell = \log\pi_f`: :math:`g = (e_f - \pi)/F`;
- NPO: :math:`g = 2\sigma(\beta r_f)\,(e_f - \pi)/F`, GA's vector times a positive number;
- DPO to the refusal (index d): :math:`\partial\ell/\partial r_d = -\beta s = -\partial\ell/\partial r_f`
  with :math:`s = \sigma(-\beta(r_d - r_f))`; the sum over y is 0, so :math:`g = \beta s(e_f - e_d)/F`;
- AltPO: :math:`s_a = \sigma(-\beta(r_a - r_f))`, :math:`g_a = -2 s_a/(mF)`,
  :math:`g_f = 2\sum_a s_a/(mF)`, every other entry 0 (the sum over y is again 0);
- retain NLL with weight w: :math:`g = w(\pi - e_y)/R`.

Proved consequences, each tested below:

(a) **GA squeezes.** A GD step changes :math:`\log(\pi_y/\pi_{y'})` by exactly
    :math:`\eta(\pi_y - \pi_{y'})/F` for y, y' != f: the ratios among the remaining answers are
    *not* preserved; the leader gains on everyone, so the renormalised remaining distribution tends
    to the vertex of the most likely remaining answer (not to :math:`\mu(\cdot\mid y\ne f)`). To
    first order in :math:`\eta`, :math:`\Delta\pi_y = \eta\,\pi_y(\pi_y + \pi_f - \sum_z\pi_z^2)/F`:
    an answer with :math:`\pi_y + \pi_f < \sum_z \pi_z^2` *loses* mass while f is pushed down.
(b) **AltPO keeps mu inside the alternates and converges to mu(.|A) only in the limit.** All
    alternates start with r = 0 and get the same update, so :math:`\pi_a/\pi_b = \mu_a/\mu_b` at
    every step; answers outside the pairs never move in :math:`\theta`. With :math:`\delta` the
    alternates' common logit gain and :math:`d = (m+1)\delta` the margin, gradient flow gives
    :math:`e^{\beta d} \sim 2\beta\eta(m+1)t/(mF)`, so :math:`\pi(\text{outside})/\pi(A) \propto
    t^{-1/(\beta(m+1))}` and :math:`\pi_f/\pi(A) \propto t^{-1/\beta}`. :math:`g_f > 0` at every
    finite :math:`\theta`: there is no stationary point, only the limit :math:`\mu(\cdot\mid A)`.
(c) **NPO -> GA as beta -> 0.** NPO's step is GA's times :math:`2\sigma(\beta r_f)`, which differs
    from 1 by :math:`|\tanh(\beta r_f/2)| \le \beta|r_f|/2`: with the same lr, the trajectories
    over a fixed horizon differ by O(beta).
(d) **DPO to the refusal.** Only :math:`\theta_d` and :math:`\theta_f` move, by equal and opposite
    amounts: :math:`\pi_d\pi_f/\pi_y^2 = \mu_d\mu_f/\mu_y^2` for every other y, and the others keep
    mu's proportions. Their total mass grows (to first order) exactly while :math:`\pi_f > \pi_d`,
    then shrinks; :math:`\pi_d \to 1`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefopt_toy.dynamics import unlearn, unlearning_objective
from prefopt_toy.unlearning import UnlearningTask, random_task, teaching_task

TASK = teaching_task()
METHODS = ("ga", "npo", "dpo_refusal", "altpo")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(th):
    z = np.exp(th - th.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _np_grad(task, theta, method, beta, w, m=None):
    """Hand-derived gradient of the objective in the (C, K) logits (see the module docstring)."""
    mu = task.mu.numpy()
    forget = task.forget_contexts.tolist()
    retain = task.retain_contexts.tolist()
    F, R = len(forget), len(retain)
    g = np.zeros_like(theta)
    for c in forget:
        pi = _softmax(theta[c])
        r = np.log(pi) - np.log(mu[c])
        f = task.true_answers[c]
        e_f = np.eye(len(pi))[f]
        if method == "ga":
            g[c] = (e_f - pi) / F
        elif method == "npo":
            g[c] = 2 * _sigmoid(beta * r[f]) * (e_f - pi) / F
        elif method == "dpo_refusal":
            d = task.refusal
            s = _sigmoid(-beta * (r[d] - r[f]))
            g[c] = beta * s * (e_f - np.eye(len(pi))[d]) / F
        else:
            alts = list(task.alternates[c])[:m]
            s = _sigmoid(-beta * (r[alts] - r[f]))
            g[c, alts] = -2 * s / (len(alts) * F)
            g[c, f] = 2 * s.sum() / (len(alts) * F)
    for c in retain:
        pi = _softmax(theta[c])
        g[c] = w * (pi - np.eye(len(pi))[task.true_answers[c]]) / R
    return g


def _np_value(task, theta, method, beta, w, m=None):
    mu = task.mu.numpy()
    lp = np.log(_softmax(theta))
    r = lp - np.log(mu)
    vals = []
    for c in task.forget_contexts.tolist():
        f = task.true_answers[c]
        if method == "ga":
            vals.append(lp[c, f])
        elif method == "npo":
            vals.append((2 / beta) * np.logaddexp(0, beta * r[c, f]))
        elif method == "dpo_refusal":
            vals.append(np.logaddexp(0, -beta * (r[c, task.refusal] - r[c, f])))
        else:
            alts = list(task.alternates[c])[:m]
            vals.append(np.mean((2 / beta) * np.logaddexp(0, -beta * (r[c, alts] - r[c, f]))))
    value = np.mean(vals)
    if w:
        value += w * np.mean([-lp[c, task.true_answers[c]] for c in task.retain_contexts.tolist()])
    return value


def _np_run(task, method, steps, lr, beta=0.1, w=0.0, m=None):
    theta = np.log(task.mu.numpy()).copy()
    out = [_softmax(theta)]
    for _ in range(steps):
        theta = theta - lr * _np_grad(task, theta, method, beta, w, m)
        out.append(_softmax(theta))
    return np.stack(out)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("w", [0.0, 0.7])
def test_objective_and_gradient_match_hand_derivation(method, w):
    task = random_task(4, n_answers=7)
    theta = torch.randn(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = theta.clone().requires_grad_(True)
    for m in (None, 2) if method == "altpo" else (None,):
        value = unlearning_objective(task, x, method=method, beta=0.3, retain_weight=w, augment_k=m)
        np.testing.assert_allclose(
            float(value.detach()), _np_value(task, theta.numpy(), method, 0.3, w, m), rtol=1e-13
        )
        (g,) = torch.autograd.grad(value, x)
        np.testing.assert_allclose(
            g.numpy(), _np_grad(task, theta.numpy(), method, 0.3, w, m), atol=1e-14
        )


@pytest.mark.parametrize("method", METHODS)
def test_trajectory_matches_numpy_gradient_descent(method):
    lr = 2.0 if method != "dpo_refusal" else 20.0
    run = unlearn(TASK, method=method, steps=60, retain_weight=0.5, lr=lr)
    want = _np_run(TASK, method, 60, lr, w=0.5)
    np.testing.assert_allclose(run.policies.numpy(), want, rtol=1e-10, atol=1e-14)
    # metrics against the numpy policies
    f, r = TASK.forget_contexts.numpy(), TASK.retain_contexts.numpy()
    np.testing.assert_allclose(run.forget_prob.numpy(), want[:, f, 0], rtol=1e-10)
    np.testing.assert_allclose(run.retain_log_likelihood.numpy(), np.log(want[:, r, 0]), rtol=1e-10)
    mu = TASK.mu.numpy()
    kl = (want * (np.log(want) - np.log(mu))).sum(-1)
    np.testing.assert_allclose(run.retain_kl.numpy(), kl[:, r], rtol=1e-8, atol=1e-15)
    # implausible: gibberish (5) in a forget context; in a retain context (no alternates) 1, 2, 3, 5
    np.testing.assert_allclose(run.implausible_mass[:, f].numpy(), want[:, f, 5], rtol=1e-10)
    np.testing.assert_allclose(
        run.implausible_mass[:, r].numpy(), want[:, r][:, :, [1, 2, 3, 5]].sum(-1), rtol=1e-10
    )
    np.testing.assert_allclose(run.refusal_mass.numpy(), want[:, :, 4], rtol=1e-10)
    np.testing.assert_allclose(run.alternate_mass.numpy(), want[:, f, 1:4].sum(-1), rtol=1e-10)
    assert run.losses.shape == (60,)
    np.testing.assert_allclose(
        float(run.losses[0]),
        _np_value(TASK, np.log(mu), method, 0.1, 0.5),
        rtol=1e-13,
    )


def test_ga_squeezes_mass_towards_the_remaining_mode():
    lr, F = 3.0, 3
    run = unlearn(TASK, method="ga", steps=300, lr=lr)
    lp = run.log_policies.numpy()[:, :3, :]  # forget contexts
    p = np.exp(lp)
    # (a) exact per step: log(pi_y / pi_y') gains lr (pi_y - pi_y') / F, for y, y' != f = 0
    gain = (lp[1:, :, 1:, None] - lp[1:, :, None, 1:]) - (
        lp[:-1, :, 1:, None] - lp[:-1, :, None, 1:]
    )
    want = lr * (p[:-1, :, 1:, None] - p[:-1, :, None, 1:]) / F
    np.testing.assert_allclose(gain, want, atol=1e-11)
    # the ratios are not kept: the remaining distribution leaves mu(. | y != f) for the mode's vertex
    q = p[:, :, 1:] / p[:, :, 1:].sum(-1, keepdims=True)
    mu_rest = TASK.mu.numpy()[:3, 1:]
    for c in range(3):
        # the set of most likely remaining answers (context 2 has three tied at 0.12): they share
        # the limit equally, and their share only grows
        modes = np.flatnonzero(mu_rest[c] == mu_rest[c].max())
        share = q[:, c, modes].sum(-1)
        assert share[-1] > 0.99 and (np.diff(share) >= 0).all() and share[20] > share[0] + 0.15
        np.testing.assert_allclose(q[-1, c, modes], share[-1] / len(modes), rtol=1e-12)
    assert q[-1, 0, 0] > 0.99 and q[-1, 1, 1] > 0.99  # not mu(. | y != f): 0.50 and 0.33 there
    assert run.forget_prob[-1].max() < 1e-6


def test_ga_first_order_losers():
    # start: pi = [0.3 (f), 0.6, 0.04, 0.03, 0.02, 0.01] in context 0: sum pi^2 = 0.4530,
    # so every y with pi_y < 0.153 loses mass to first order although only f is pushed down.
    pi0 = np.array([0.3, 0.6, 0.04, 0.03, 0.02, 0.01])
    start = np.log(TASK.mu.numpy())
    start[0] = np.log(pi0)
    eta = 1e-5
    run = unlearn(TASK, method="ga", steps=1, lr=eta, start=start)
    delta = run.policies[1, 0].numpy() - pi0
    first_order = eta * pi0 * (pi0 + pi0[0] - (pi0**2).sum()) / 3
    first_order[0] = -eta * pi0[0] * (1 - pi0[0] - (pi0[0] - (pi0**2).sum())) / 3
    np.testing.assert_allclose(delta, first_order, rtol=1e-4)
    assert delta[1] > 0 and (delta[2:] < 0).all() and delta[0] < 0


def test_npo_step_is_ga_step_times_two_sigmoid():
    start = np.log(TASK.mu.numpy()) + np.random.default_rng(2).normal(size=(6, 6))
    lr = 0.01
    ga = unlearn(TASK, method="ga", steps=1, lr=lr, start=start).log_policies.numpy()
    npo = unlearn(TASK, method="npo", steps=1, lr=lr, beta=0.5, start=start).log_policies.numpy()
    lp0 = ga[0]
    r_f = lp0[:3, 0] - np.log(TASK.mu.numpy()[:3, 0])
    scale = 2 * _sigmoid(0.5 * r_f)
    # logit steps (centred: the policy fixes the logits up to a constant per context)
    d_ga = (ga[1] - lp0)[:3]
    d_npo = (npo[1] - lp0)[:3]
    d_ga -= d_ga.mean(-1, keepdims=True)
    d_npo -= d_npo.mean(-1, keepdims=True)
    np.testing.assert_allclose(d_npo, scale[:, None] * d_ga, rtol=1e-9, atol=1e-15)


def test_npo_tends_to_ga_as_beta_to_zero():
    ga = unlearn(TASK, method="ga", steps=150, lr=1.0).policies.numpy()
    gaps = []
    for beta in (1e-2, 1e-3, 1e-4):
        npo = unlearn(TASK, method="npo", steps=150, lr=1.0, beta=beta).policies.numpy()
        gaps.append(np.abs(npo - ga).max())
    # O(beta): tenfold smaller beta, tenfold smaller gap
    assert 9.0 < gaps[0] / gaps[1] < 11.0 and 9.0 < gaps[1] / gaps[2] < 11.0
    assert gaps[-1] < 1e-3


def test_altpo_keeps_mu_inside_the_alternates_and_among_the_bystanders():
    run = unlearn(TASK, method="altpo", steps=200, lr=3.0)
    p = run.policies.numpy()[:, :3, :]
    mu = TASK.mu.numpy()[:3]
    # alternates 1..3: pi_a / pi_1 = mu_a / mu_1 at every step
    np.testing.assert_allclose(
        p[:, :, 2:4] / p[:, :, 1:2],
        np.broadcast_to(mu[None, :, 2:4] / mu[None, :, 1:2], p[:, :, 2:4].shape),
        rtol=1e-12,
    )
    # bystanders (refusal 4, gibberish 5) keep theirs too
    np.testing.assert_allclose(
        p[:, :, 5] / p[:, :, 4], np.broadcast_to(mu[:, 5] / mu[:, 4], p[:, :, 5].shape), rtol=1e-12
    )
    # and the outside mass relative to the alternates only falls
    ratio = p[:, :, 4:].sum(-1) / p[:, :, 1:4].sum(-1)
    assert (np.diff(ratio, axis=0) < 0).all()
    # retain contexts are untouched without a retain term
    np.testing.assert_allclose(run.retain_kl.numpy(), 0.0, atol=1e-15)


def test_altpo_under_adam_keeps_mu_inside_the_alternates():
    run = unlearn(TASK, method="altpo", steps=50, lr=0.1, optimizer="adam")
    p = run.policies.numpy()[:, :3, :]
    mu = TASK.mu.numpy()[:3]
    np.testing.assert_allclose(
        p[:, :, 2:4] / p[:, :, 1:2],
        np.broadcast_to(mu[None, :, 2:4] / mu[None, :, 1:2], p[:, :, 2:4].shape),
        rtol=1e-12,
    )


def test_altpo_has_no_stationary_point_and_tends_to_mu_given_alternates():
    target = TASK.alternate_conditional().numpy()
    ones_a = np.zeros((6, 6))
    ones_a[:3, 1:4] = 1.0
    norms, tvs = [], []
    for lam in (0.0, 10.0, 40.0, 100.0, 200.0):
        theta = np.log(TASK.mu.numpy()) + lam * ones_a
        g = _np_grad(TASK, theta, "altpo", 0.1, 0.0)
        x = torch.tensor(theta, requires_grad=True)
        (g_engine,) = torch.autograd.grad(unlearning_objective(TASK, x, method="altpo"), x)
        np.testing.assert_allclose(g_engine.numpy(), g, atol=1e-15)
        assert (g[:3, 0] > 0).all()  # the forget answer is always pushed down: no stationary point
        norms.append(np.abs(g).max())
        tvs.append(0.5 * np.abs(_softmax(theta)[:3] - target).sum(-1).max())
    # the gradient vanishes only as lambda -> inf (~ sigma(-beta lambda)), where pi -> mu(. | A)
    assert all(a > b for a, b in zip(norms, norms[1:])) and norms[-1] < 1e-8
    assert tvs[0] > tvs[1] > tvs[2] and max(tvs[2:]) < 1e-14  # then float64 round-off


def _one_context_altpo(mu, f, alts, beta, eta, steps):
    """One forget context under AltPO gradient descent (numpy, hand-derived gradient)."""
    theta = np.log(mu).copy()
    m = len(alts)
    times = np.unique(np.geomspace(1, steps, 40).astype(int))
    rec = []
    for t in range(1, steps + 1):
        pi = _softmax(theta)
        r = np.log(pi) - np.log(mu)
        s = _sigmoid(-beta * (r[alts] - r[f]))
        theta[alts] += eta * 2 * s / m
        theta[f] -= eta * 2 * s.sum() / m
        if t in times:
            pi = _softmax(theta)
            outside = 1 - pi[alts].sum() - pi[f]
            rec.append((t, outside / pi[alts].sum(), pi[f] / pi[alts].sum()))
    return np.array(rec)


def test_altpo_rates_match_the_asymptotics():
    # (b): pi(outside)/pi(A) ~ t^{-1/(beta(m+1))}, pi_f/pi(A) ~ t^{-1/beta}; beta = 0.5, m = 3
    mu = TASK.mu.numpy()[0]
    rec = _one_context_altpo(mu, 0, [1, 2, 3], beta=0.5, eta=1.0, steps=8000)
    late = rec[rec[:, 0] >= 800]
    slope_out = np.polyfit(np.log(late[:, 0]), np.log(late[:, 1]), 1)[0]
    slope_f = np.polyfit(np.log(late[:, 0]), np.log(late[:, 2]), 1)[0]
    assert abs(slope_out - (-1 / (0.5 * 4))) < 0.02
    assert abs(slope_f - (-1 / 0.5)) < 0.05


def test_dpo_refusal_moves_only_refusal_and_forget():
    run = unlearn(TASK, method="dpo_refusal", steps=400, lr=4.0)
    p = run.policies.numpy()[:, :3, :]
    mu = TASK.mu.numpy()[:3]
    # pi_d pi_f / pi_y^2 is mu's, for every bystander y (alternates and gibberish)
    for y in (1, 2, 3, 5):
        np.testing.assert_allclose(
            p[:, :, 4] * p[:, :, 0] / p[:, :, y] ** 2,
            np.broadcast_to(mu[:, 4] * mu[:, 0] / mu[:, y] ** 2, p[:, :, 0].shape),
            rtol=1e-11,
        )
    np.testing.assert_allclose(
        p[:, :, 2] / p[:, :, 5], np.broadcast_to(mu[:, 2] / mu[:, 5], p[:, :, 2].shape), rtol=1e-12
    )
    # the bystanders' mass rises while pi_f > pi_d and falls after: its peak is at the crossing
    by = p[:, :, [1, 2, 3, 5]].sum(-1)
    for c in range(3):
        peak = int(by[:, c].argmax())
        cross = int(np.argmax(p[:, c, 4] > p[:, c, 0]))
        assert 0 < cross < 400 and abs(peak - cross) <= 1
    assert (run.refusal_mass[-1, :3] > 0.99).all()


def test_dpo_refusal_is_altpo_with_the_refusal_as_only_alternate():
    beta = 0.2
    alt_task = UnlearningTask(
        mu=TASK.mu,
        roles=TASK.roles,
        true_answers=TASK.true_answers,
        alternates=((4,),) * 3 + ((),) * 3,
        refusal=None,
    )
    dpo = unlearn(TASK, method="dpo_refusal", steps=80, beta=beta, lr=2 / beta)  # the default lr
    alt = unlearn(alt_task, method="altpo", steps=80, beta=beta, lr=1.0)
    np.testing.assert_allclose(dpo.policies.numpy(), alt.policies.numpy(), rtol=1e-12)
    default = unlearn(TASK, method="dpo_refusal", steps=80, beta=beta)
    np.testing.assert_allclose(default.policies.numpy(), dpo.policies.numpy(), rtol=0, atol=0)


def test_retain_term_touches_only_retain_contexts():
    for method in METHODS:
        plain = unlearn(TASK, method=method, steps=50)
        mixed = unlearn(TASK, method=method, steps=50, retain_weight=1.0)
        np.testing.assert_allclose(
            mixed.policies[:, :3].numpy(), plain.policies[:, :3].numpy(), rtol=1e-13
        )
        # without it they do not move (up to the loop's renormalisation round-off)
        np.testing.assert_allclose(
            plain.policies[:, 3:].numpy(), plain.policies[:1, 3:].numpy().repeat(51, 0), atol=1e-15
        )
        # the retain NLL sharpens the retained answers: their KL from mu only grows
        assert (np.diff(mixed.retain_kl.numpy(), axis=0) > 0).all()


def _np_run_shared(task, method, steps, lr, beta=0.1, w=0.0):
    """GD on (phi, psi) with logits phi[c] + psi: d/dphi[c] = g[c], d/dpsi = sum_c g[c]."""
    phi = np.log(task.mu.numpy()).copy()
    psi = np.zeros(task.n_answers)
    out = [_softmax(phi + psi)]
    for _ in range(steps):
        g = _np_grad(task, phi + psi, method, beta, w)
        phi, psi = phi - lr * g, psi - lr * g.sum(0)
        out.append(_softmax(phi + psi))
    return np.stack(out)


@pytest.mark.parametrize("method", METHODS)
def test_shared_bias_matches_numpy_and_couples_the_contexts(method):
    lr = 1.0 if method != "dpo_refusal" else 20.0
    for w in (0.0, 1.0):
        run = unlearn(TASK, method=method, steps=40, lr=lr, retain_weight=w, shared_bias=True)
        want = _np_run_shared(TASK, method, 40, lr, w=w)
        np.testing.assert_allclose(run.policies.numpy(), want, rtol=1e-10, atol=1e-15)
    # without a retain term the forget term now lowers the retained true answers (all index 0)
    plain = unlearn(TASK, method=method, steps=40, lr=lr, shared_bias=True)
    assert (plain.retain_log_likelihood[-1] < plain.retain_log_likelihood[0]).all()
    assert (plain.retain_kl[-1] > 1e-4).all()


def test_shared_bias_first_step_on_retain_contexts():
    # GA, one step: psi moves by -lr * sum_forget (e_f - pi_c) / F, so a retain context's
    # log-probs move by that minus its pi-weighted mean (first order is exact for the logits)
    lr = 0.1
    run = unlearn(TASK, method="ga", steps=1, lr=lr, shared_bias=True)
    mu = TASK.mu.numpy()
    d_psi = -lr * sum(np.eye(6)[0] - mu[c] for c in range(3)) / 3
    for c in range(3, 6):
        logits = np.log(mu[c]) + d_psi
        want = logits - np.log(np.exp(logits).sum())
        np.testing.assert_allclose(run.log_policies[1, c].numpy(), want, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "ga", "shared_bias": 1}, "shared_bias must be True or False"),
        ({"method": "sgd"}, "method must be one of"),
        ({"method": "npo", "beta": 0.0}, "beta"),
        ({"method": "ga", "retain_weight": -1.0}, "retain_weight"),
        ({"method": "altpo", "augment_k": 4}, "augment_k must be <= 3"),
        ({"method": "altpo", "augment_k": 0}, "augment_k must be >= 1"),
        ({"method": "ga", "steps": -1}, "steps must be >= 0"),
        ({"method": "ga", "lr": -1.0}, "lr"),
        ({"method": "ga", "optimizer": "sgd"}, "optimizer must be"),
        ({"method": "ga", "start": np.zeros((6, 5))}, r"start must have shape \(6, 6\)"),
        ({"method": "ga", "start": np.full((6, 6), np.nan)}, "start must be finite"),
    ],
)
def test_bad_unlearn_input(kwargs, match):
    kwargs = {"steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        unlearn(TASK, **kwargs)


def test_bad_task_for_method():
    no_refusal = random_task(0, refusal=False)
    with pytest.raises(ValueError, match="needs a task with a refusal"):
        unlearn(no_refusal, method="dpo_refusal", steps=1)
    with pytest.raises(ValueError, match="task must be an UnlearningTask"):
        unlearn("task", method="ga", steps=1)
    only_forget = random_task(0, n_forget=6)
    with pytest.raises(ValueError, match="retain_weight must be 0"):
        unlearn(only_forget, method="ga", steps=1, retain_weight=1.0)
    with pytest.raises(ValueError, match=r"logits must have shape"):
        unlearning_objective(TASK, np.zeros(6), method="ga")
