"""Tests for prefopt_toy.analysis.judges: what an ordered judge does to each algorithm.

The references are independent: population losses enumerated in numpy over the raw ordered pairs
(never through ``effective_preference``), fixed-point residuals in numpy, scipy's root finder and
minimiser, the iterative DPO of ``dynamics.staged`` (gradient descent, another code path), and
scalar recursions / bisections for two actions.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest
import torch
from scipy import optimize

from prefopt_toy.analysis.judges import (
    effective_pair_weights,
    effective_preference,
    judge_fixed_points,
    raw_regularized_fixed_point,
    self_judge,
    self_rewarding_dpo,
    self_rewarding_residual,
)
from prefopt_toy.dynamics import iterative_dpo
from prefopt_toy.games.constructors import bradley_terry, random_game, rock_paper_scissors
from prefopt_toy.games.judges import lapse_judge, logit_shift_judge, symmetrize_judge
from prefopt_toy.solutions.regularized import regularized_nash

MU = np.array([0.5, 0.3, 0.2])


def _judge(seed: int, k: int = 3) -> np.ndarray:
    """A generic raw judge: non-complementary, non-transitive, diagonal not 1/2."""
    return np.random.default_rng(seed).uniform(0.05, 0.95, size=(k, k))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _raw_loss(theta, J, first, second, mu, strength, loss):
    """Population loss over ordered pairs (y first ~ first, y' second ~ second), raw labels J[y, y']."""
    lp = theta - np.log(np.exp(theta).sum()) - np.log(mu)
    total = 0.0
    k = len(mu)
    for y in range(k):
        for yp in range(k):
            h = lp[y] - lp[yp]  # margin of y over y'
            if loss == "dpo":
                win, lose = -_log_sigmoid(strength * h), -_log_sigmoid(-strength * h)
            else:  # ipo
                c = 1.0 / (2.0 * strength)
                win, lose = (h - c) ** 2, (-h - c) ** 2
            total += first[y] * second[yp] * (J[y, yp] * win + (1.0 - J[y, yp]) * lose)
    return total


# ------------------------------------------------------------------ effective preferences


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_exchangeable_pairs_see_the_symmetrised_judge_for_every_theta(loss: str) -> None:
    # The raw ordered loss equals the loss with labels sym(J) = (J + 1 - J^T)/2, at any theta.
    J = _judge(0)
    P_sym = (J + 1.0 - J.T) / 2.0
    rng = np.random.default_rng(1)
    for _ in range(5):
        theta = rng.normal(size=3)
        s = _softmax(rng.normal(size=3))
        raw = _raw_loss(theta, J, s, s, MU, 0.7, loss)
        sym = _raw_loss(theta, P_sym, s, s, MU, 0.7, loss)
        assert raw == pytest.approx(sym, rel=1e-13)
    for name in ("dpo", "ipo", "online_dpo", "online_ipo", "ipo_md", "iterative_dpo"):
        for order in ("sampled", "reversed", "both"):
            np.testing.assert_allclose(
                effective_preference(J, name, order).numpy(), P_sym, atol=1e-15
            )


def test_online_ipo_fixed_point_is_stationary_for_the_raw_judge() -> None:
    # Online IPO's population gradient (pairs from pi, stop-gradient) with RAW labels vanishes at
    # the regularised Nash equilibrium of sym(J): finite differences of the numpy loss.
    J = _judge(2)
    tau = 0.3
    fp = judge_fixed_points(J, MU, tau, ("online_ipo",))["online_ipo"]
    pi = fp.raw.numpy()
    theta = np.log(pi)
    eps = 1e-6
    grad = []
    for i in range(3):
        e = np.zeros(3)
        e[i] = eps
        up = _raw_loss(theta + e, J, pi, pi, MU, tau, "ipo")
        down = _raw_loss(theta - e, J, pi, pi, MU, tau, "ipo")
        grad.append((up - down) / (2 * eps))
    assert max(abs(g) for g in grad) < 1e-8
    assert fp.distance == 0.0


def test_nash_md_sees_the_raw_judge_and_index_order_the_upper_triangle() -> None:
    J = _judge(3)
    np.testing.assert_array_equal(effective_preference(J, "nash_md").numpy(), J)
    np.testing.assert_array_equal(effective_preference(J, "kto").numpy(), J)
    np.testing.assert_allclose(effective_preference(J, "nash_md_pg", "reversed").numpy(), 1 - J.T)
    P_idx = effective_preference(J, "dpo", "index").numpy()
    for i in range(3):
        for j in range(3):
            expected = 0.5 if i == j else (J[i, j] if i < j else 1.0 - J[j, i])
            assert P_idx[i, j] == pytest.approx(expected, abs=1e-15)


def test_two_slot_dataset_leaks_the_bias() -> None:
    # Enumerate the ordered dataset: Pr(y labelled winner over y') / Pr(pair {y, y'}).
    J = _judge(4)
    n1, n2 = np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.3, 0.5])
    P = effective_preference(J, "dpo", slots=(n1, n2)).numpy()
    W = effective_pair_weights((n1, n2)).numpy()
    for y in range(3):
        for yp in range(3):
            if y == yp:
                continue
            win = n1[y] * n2[yp] * J[y, yp] + n1[yp] * n2[y] * (1.0 - J[yp, y])
            both = n1[y] * n2[yp] + n1[yp] * n2[y]
            assert P[y, yp] == pytest.approx(win / both, abs=1e-15)
            assert W[y, yp] == pytest.approx(both / 2.0, abs=1e-15)
    same = effective_preference(J, "ipo", slots=(n1, n1)).numpy()
    np.testing.assert_allclose(same, symmetrize_judge(J).numpy(), atol=1e-15)
    with pytest.raises(ValueError, match="slots"):
        effective_preference(J, "online_ipo", slots=(n1, n2))


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_two_slot_offline_optimum_minimises_the_raw_loss(loss: str) -> None:
    # scipy minimises the raw ordered population loss; the closed forms must agree.
    J = _judge(5)
    n1, n2 = np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.3, 0.5])
    tau = 0.8
    res = optimize.minimize(
        _raw_loss, np.zeros(3), args=(J, n1, n2, MU, tau, loss), method="BFGS",
        options={"gtol": 1e-11},
    )  # fmt: skip
    fp = judge_fixed_points(J, MU, tau, (loss,), slots=(n1, n2))[loss]
    np.testing.assert_allclose(fp.raw.numpy(), _softmax(res.x), atol=1e-6)
    assert fp.distance > 1e-3  # the bias moved it
    # With equal slots the weighted solvers reduce to the product-weight closed forms.
    eq = judge_fixed_points(J, MU, tau, (loss,), slots=(MU, MU))[loss]
    plain = judge_fixed_points(J, MU, tau, (loss,))[loss]
    np.testing.assert_allclose(eq.raw.numpy(), plain.raw.numpy(), atol=1e-12)


@pytest.mark.parametrize(
    "slots",
    [
        ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),  # action 2 in no pair
        ([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]),  # the same, with equal slots
    ],
)
@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_two_slot_data_that_never_compare_an_action_are_refused(loss: str, slots) -> None:
    # The loss leaves action 2's log-ratio free: any value is an optimum, so none is reported.
    with pytest.raises(ValueError, match=r"slots must compare every action.*\[2\]"):
        judge_fixed_points(_judge(5), MU, 0.8, (loss,), slots=slots)


# ------------------------------------------------------------------ Nash-MD under a raw judge


def _nash_residual(J, mu, tau, pi, m=0.0):
    s = pi ** (1 - m) * mu**m
    s = s / s.sum()
    z = np.log(mu) + (J - 0.5) @ s / tau
    return np.abs(pi - _softmax(z)).max()


def test_raw_fixed_point_residual_and_scipy_root() -> None:
    J = logit_shift_judge(random_game(4, seed=6), 1.2).numpy()
    mu = np.array([0.4, 0.3, 0.2, 0.1])
    tau = 0.4
    pi, res = raw_regularized_fixed_point(J, mu, tau)
    pi = pi.numpy()
    assert res <= 1e-12 and _nash_residual(J, mu, tau, pi) <= 1e-12

    def F(x):  # log-space fixed-point equation, solved from mu by scipy
        p = _softmax(x)
        return x - np.log(_softmax(np.log(mu) + (J - 0.5) @ p / tau))

    sol = optimize.root(F, np.log(mu), tol=1e-14)
    np.testing.assert_allclose(_softmax(sol.x), pi, atol=1e-10)


def _two_action_branch(J, mu0, tau):
    """The scalar fixed-point equation of a 2-action judge along M = P_sym + lam B / 2.

    pi = (p, 1 - p) is a fixed point iff F(p, lam) = logit(mu0) + (a p + b (1 - p)) / tau -
    logit(p) = 0, with a = M[0, 0] - M[1, 0] and b = M[0, 1] - M[1, 1]; a fold is where also
    dF/dp = (a - b) / tau - 1 / (p (1 - p)) = 0.
    """
    P_sym, B = (J + 1 - J.T) / 2, J + J.T - 1

    def ab(lam):
        M = P_sym + lam * B / 2
        return M[0, 0] - M[1, 0], M[0, 1] - M[1, 1]

    def F(p, lam):
        a, b = ab(lam)
        return math.log(mu0 / (1 - mu0)) + (a * p + b * (1 - p)) / tau - math.log(p / (1 - p))

    def fold(v):
        a, b = ab(v[1])
        return [F(v[0], v[1]), (a - b) / tau - 1 / (v[0] * (1 - v[0]))]

    return F, fold


def test_raw_fixed_point_stops_at_the_fold_a_scalar_analysis_finds() -> None:
    # Two actions, a judge whose first slot wins 88% of ties against itself: the branch from the
    # symmetrised judge (unique at lam = 0) is followed by brackets in lam steps of 1e-3 until it
    # has no root nearby, then the fold is solved from (F, dF/dp) = 0. The solver must stop there
    # and say so, not jump to another branch.
    J, mu0, tau = np.array([[0.88, 0.131], [0.074, 0.395]]), 0.227, 0.1
    F, fold = _two_action_branch(J, mu0, tau)
    p, lam = optimize.brentq(lambda q: F(q, 0.0), 1e-12, 1 - 1e-12), 0.0
    while lam < 1.0:
        grid = np.linspace(p - 0.05, p + 0.05, 401)
        f_next = functools.partial(lambda q, lam_next: F(q, lam_next), lam_next=lam + 1e-3)
        vals = [f_next(q) for q in grid]
        roots = [
            optimize.brentq(f_next, grid[i], grid[i + 1])
            for i in range(400)
            if vals[i] * vals[i + 1] < 0
        ]
        if not roots:
            break
        p, lam = min(roots, key=lambda r: abs(r - p)), lam + 1e-3
    assert lam < 1.0  # the branch ends inside (0, 1)
    p_fold, lam_fold = optimize.fsolve(fold, [p, lam], xtol=1e-12)
    assert lam <= lam_fold < lam + 1e-3
    with pytest.raises(ValueError, match=r"ends at lambda = ([0-9.]+)") as err:
        raw_regularized_fixed_point(J, [mu0, 1 - mu0], tau)
    reported = float(re.search(r"ends at lambda = ([0-9.]+)", str(err.value)).group(1))
    assert reported == pytest.approx(lam_fold, abs=2e-4)
    # Below the fold the solver follows the same branch: at lam = 0.9 lam_fold, on the judge
    # P_sym + 0.9 lam_fold B / 2 itself, it returns the bracketed root nearest the lam = 0 one.
    lam_in = 0.9 * lam_fold
    J_in = (J + 1 - J.T) / 2 + lam_in * (J + J.T - 1) / 2
    pi_in, _ = raw_regularized_fixed_point(J_in, [mu0, 1 - mu0], tau)
    p_in = optimize.brentq(lambda q: F(q, lam_in), 1e-9, p_fold)
    assert pi_in[0].item() == pytest.approx(p_in, abs=1e-10)


def test_constant_step_nash_md_iteration_converges_to_the_raw_fixed_point() -> None:
    # Nash-MD with constant eta (Munos et al. Eq. (9)), querying J with the policy's answer first,
    # iterated in numpy; its limit is the mixture fixed point with m = eta * tau.
    J = logit_shift_judge(rock_paper_scissors(0.9), 1.5).numpy()
    tau, eta = 0.5, 1.0
    log_pi = np.log(MU)
    for _ in range(400):
        s = _softmax((1 - eta * tau) * log_pi + eta * tau * np.log(MU))
        log_pi = np.log(_softmax((1 - eta * tau) * log_pi + eta * tau * np.log(MU) + eta * (J @ s)))
    fp = judge_fixed_points(J, MU, tau, ("nash_md_pg",), mixture=eta * tau)["nash_md_pg"]
    np.testing.assert_allclose(fp.raw.numpy(), np.exp(log_pi), atol=1e-10)
    assert fp.distance > 1e-3


def test_raw_solver_matches_regularized_nash_on_a_preference_matrix() -> None:
    P = random_game(4, seed=8)
    mu = [0.1, 0.2, 0.3, 0.4]
    pi, _ = raw_regularized_fixed_point(P, mu, 0.2)
    assert float((pi - regularized_nash(P, mu, 0.2)).abs().max()) <= 1e-11


def test_lapse_bias_does_not_move_nash_md_and_tempers_tau() -> None:
    # B = b 11^T shifts every payoff alike: raw and symmetrised fixed points coincide, and both
    # are the regularised Nash of P at tau / (1 - b).
    P = random_game(3, seed=9)
    b, tau = 0.4, 0.3
    fps = judge_fixed_points(lapse_judge(P, b), MU, tau, ("nash_md", "online_ipo"))
    assert fps["nash_md"].distance <= 1e-12
    expected = regularized_nash(P, MU, tau / (1 - b)).numpy()
    np.testing.assert_allclose(fps["nash_md"].raw.numpy(), expected, atol=1e-11)
    np.testing.assert_allclose(fps["online_ipo"].raw.numpy(), expected, atol=1e-11)


def test_judge_fixed_points_refuses_unknown_algorithms() -> None:
    with pytest.raises(ValueError, match="algorithms"):
        judge_fixed_points(_judge(0), MU, 0.5, ("kto",))
    with pytest.raises(ValueError, match="order"):
        effective_preference(_judge(0), "dpo", "random")


# ------------------------------------------------------------------ self-rewarding DPO


@pytest.mark.parametrize("reference", ["initial", "previous"])
def test_no_self_preference_is_iterative_dpo(reference: str) -> None:
    # w = 0: the exact rounds equal dynamics.staged.iterative_dpo (gradient descent) on sym(J).
    J = _judge(10)
    mu = torch.tensor(MU)
    run = self_rewarding_dpo(J, mu, 1.0, rounds=2, weight=0.0, reference=reference)
    tr = iterative_dpo(symmetrize_judge(J), mu, rounds=2, steps=800, beta=1.0, reference=reference)
    ends = tr.log_policies[tr.hyper["stage_ends"]].exp()
    assert float((ends - run.policies[1:]).abs().max()) <= 1e-9


def test_previous_reference_on_bradley_terry_is_a_tempered_gibbs_path() -> None:
    # pi_t = mu exp(t r / beta) / Z exactly (each round's BT fit is r, whatever the pairs).
    r = np.array([0.0, 0.4, 1.0])
    beta = 0.5
    run = self_rewarding_dpo(bradley_terry(r), MU, beta, rounds=6, reference="previous")
    for t in range(7):
        np.testing.assert_allclose(
            run.policies[t].numpy(), _softmax(np.log(MU) + t * r / beta), atol=1e-12
        )
    assert run.max_mass[-1] > 0.99 and bool((run.entropy[1:] < run.entropy[:-1]).all())
    initial = self_rewarding_dpo(bradley_terry(r), MU, beta, rounds=3, reference="initial")
    np.testing.assert_allclose(initial.distance[1:].numpy(), 0.0, atol=1e-12)


def test_self_preference_on_ties_locks_in_the_initial_favourite() -> None:
    # All-ties judge, two actions, reference updated: z_{t+1} = z_t + logit((1-w)/2 + w sig(s z_t)) / beta.
    w, s, beta = 0.4, 2.0, 1.0
    mu2 = np.array([0.55, 0.45])
    run = self_rewarding_dpo(np.full((2, 2), 0.5), mu2, beta, rounds=8, weight=w, sharpness=s)
    z = math.log(mu2[0] / mu2[1])
    for t in range(1, 9):
        q = (1 - w) / 2 + w / (1 + math.exp(-s * z))
        z += math.log(q / (1 - q)) / beta
        p0 = 1 / (1 + math.exp(-z))
        assert run.policies[t, 0].item() == pytest.approx(p0, abs=1e-12)
    assert bool((run.max_mass[1:] > run.max_mass[:-1]).all()) and run.max_mass[-1] > 0.99
    # Without self-preference nothing moves.
    still = self_rewarding_dpo(np.full((2, 2), 0.5), mu2, beta, rounds=3, weight=0.0)
    np.testing.assert_allclose(still.policies.numpy(), np.tile(mu2, (4, 1)), atol=1e-15)


def test_self_preference_collapse_names_the_round_that_has_no_optimum() -> None:
    # Pure self-judging (w = 1, s = 1) on ties: round 1 sees BT(log mu), so pi_1 = mu^(1 + 1/beta)
    # normalised, with full support. Round 2's preference sig(log pi_1[0] - log pi_1[2]) is then 1
    # in float64: no finite DPO optimum, and the error names round 2 rather than a bare BT fit.
    beta, mu3 = 0.01, np.array([0.5, 0.3, 0.2])
    pi_1 = mu3 ** (1 + 1 / beta) / (mu3 ** (1 + 1 / beta)).sum()
    assert (pi_1 > 0).all() and 1.0 / (1.0 + math.exp(-math.log(pi_1[0] / pi_1[2]))) == 1.0
    ties = np.full((3, 3), 0.5)
    run = self_rewarding_dpo(ties, mu3, beta, rounds=1, weight=1.0)
    np.testing.assert_allclose(run.policies[1].numpy(), pi_1, rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match=r"round 2 of 4 has no finite DPO optimum.*collapsed"):
        self_rewarding_dpo(ties, mu3, beta, rounds=4, weight=1.0)


def test_initial_reference_fixed_point_with_self_preference() -> None:
    # Two actions, reference mu: the fixed point solves z = log(mu0/mu1) + logit(q(z)) / beta,
    # q(z) = (1 - w) P01 + w sig(s z); brentq finds it, the rounds converge to it.
    J = np.array([[0.5, 0.7], [0.4, 0.5]])  # position-biased: sym(J)[0, 1] = 0.65
    p01 = (J[0, 1] + 1 - J[1, 0]) / 2
    mu2 = np.array([0.4, 0.6])
    w, s, beta = 0.3, 1.0, 1.0

    def f(z):
        q = (1 - w) * p01 + w / (1 + math.exp(-s * z))
        return math.log(mu2[0] / mu2[1]) + math.log(q / (1 - q)) / beta - z

    z_star = optimize.brentq(f, -20, 20, xtol=1e-15)
    pi_star = np.array([1 / (1 + math.exp(-z_star)), 1 / (1 + math.exp(z_star))])
    run = self_rewarding_dpo(J, mu2, beta, rounds=40, weight=w, reference="initial")
    np.testing.assert_allclose(run.policies[-1].numpy(), pi_star, atol=1e-12)
    assert self_rewarding_residual(J, mu2, beta, pi_star, weight=w) <= 1e-12
    assert self_rewarding_residual(J, mu2, beta, run.target, weight=w) > 1e-3
    # Here the self-judge (sig(s z*) ~ 0.51) is less sure than the true judge (0.65): it drags the
    # fixed point from the true-judge target back towards mu.
    assert run.distance[-1] > 1e-3 and mu2[0] < pi_star[0] < run.target[0].item()


def test_self_judge_formula() -> None:
    J = _judge(11)
    pi = np.array([0.6, 0.3, 0.1])
    out = self_judge(J, pi, 0.25, 3.0).numpy()
    for i in range(3):
        for j in range(3):
            sig = 1 / (1 + math.exp(-3.0 * math.log(pi[i] / pi[j])))
            assert out[i, j] == pytest.approx(0.75 * J[i, j] + 0.25 * sig, abs=1e-15)
    with pytest.raises(ValueError, match="weight"):
        self_judge(J, pi, 1.5)
