"""Exact dynamics of the rest of the DPO family against computations written separately.

Each claim (the known results of the family on a tabular softmax bandit) is checked against a
closed form or a second algorithm written here in numpy / scipy, never the library's output.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq, minimize

import prefopt_toy as pt
from prefopt_toy.dynamics import kto_reference_point_distribution

Q = np.array([1.0, 0.3, -0.5])  # BT rewards
P_BT = pt.bradley_terry(Q.tolist())
MU = np.array([0.5, 0.3, 0.2])


def _gibbs(mu, g):
    w = mu * np.exp(g - g.max())
    return w / w.sum()


def _tv(a, b):
    return 0.5 * float(np.abs(np.asarray(a) - np.asarray(b)).sum())


def test_family_registered_with_fixed_points():
    assert set(pt.FAMILY) <= set(pt.ALGORITHMS)
    assert set(pt.FAMILY) <= set(pt.FIXED_POINTS)


def test_rdpo_with_alpha_zero_is_dpo_step_for_step():
    a = pt.ALGORITHMS["rdpo"](P_BT, MU, steps=200, beta=0.5, lengths=[1.0, 3.0, 2.0])
    d = pt.ALGORITHMS["dpo"](P_BT, MU, steps=200, beta=0.5)
    torch.testing.assert_close(a.policies, d.policies, rtol=0, atol=1e-13)


def test_rdpo_recovers_the_true_reward_under_a_length_biased_judge():
    # labels BT in q + kappa L: R-DPO with alpha = kappa lands on mu exp(q / beta)
    L = np.array([1.0, 2.0, 4.0])
    kappa, beta = 0.4, 1.0
    P = pt.bradley_terry((Q + kappa * L).tolist())
    run = pt.ALGORITHMS["rdpo"](P, MU, steps=4000, beta=beta, alpha=kappa, lengths=L.tolist())
    assert _tv(run.final, _gibbs(MU, Q / beta)) < 1e-6
    dpo = pt.ALGORITHMS["dpo"](P, MU, steps=4000, beta=beta)
    assert _tv(dpo.final, _gibbs(MU, Q / beta)) > 0.05  # plain DPO learns the length bias


def test_rdpo_optimum_on_a_non_bt_game_against_scipy():
    P = pt.rock_paper_scissors(0.8).numpy()
    mu = np.array([0.6, 0.3, 0.1])
    L = np.array([1.0, 2.0, 3.0])
    beta, alpha = 0.7, 0.2

    def nll(r):  # weighted BT likelihood of pairs from mu x mu, written here
        d = r[:, None] - r[None, :]
        return -(mu[:, None] * mu[None, :] * P * -np.logaddexp(0, -d)).sum()

    r = minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-12}).x
    want = _gibbs(mu, (r - alpha * L) / beta)
    run = pt.ALGORITHMS["rdpo"](P, mu, steps=6000, beta=beta, alpha=alpha, lengths=L.tolist())
    assert _tv(run.final, want) < 1e-6
    assert _tv(run.target("rdpo_optimum"), want) < 1e-8


def test_simpo_equal_lengths_is_dpo_with_a_uniform_reference_at_beta_over_L():
    L, beta = 2.0, 2.0
    run = pt.ALGORITHMS["simpo"](P_BT, MU, steps=4000, beta=beta, lengths=[L, L, L])
    assert _tv(run.final, _gibbs(np.ones(3) / 3, Q * L / beta)) < 1e-6


def test_simpo_gamma_inflates_the_margin_two_actions():
    # two actions, soft label p: the stationary scaled gap x solves p s(-(x-g)) = (1-p) s(-(-x-g))
    p, beta, gamma = 0.7, 2.0, 0.8
    P = [[0.5, p], [1 - p, 0.5]]

    def sig(z):
        return 1 / (1 + math.exp(-z))

    x = brentq(lambda x: p * sig(-(x - gamma)) - (1 - p) * sig(-(-x - gamma)), -50, 50)
    run = pt.ALGORITHMS["simpo"](P, [0.5, 0.5], steps=6000, beta=beta, gamma=gamma)
    got = beta * float(run.log_policies[-1, 0] - run.log_policies[-1, 1])
    assert got == pytest.approx(x, abs=1e-8)
    assert x > math.log(p / (1 - p))  # beyond logit p


def test_orpo_tends_to_sft_on_the_chosen_actions():
    run = pt.ALGORITHMS["orpo"](P_BT, MU, steps=4000, lam=1e-4)
    P = P_BT.numpy()
    chosen = MU * (P @ MU - MU / 2)  # pairs of two different actions, the winner's frequency
    assert _tv(run.final, chosen / chosen.sum()) < 1e-3


def test_orpo_final_minimises_the_population_objective_written_in_numpy():
    P = pt.three_voter_types(0.1).numpy()
    mu = np.array([0.4, 0.35, 0.25])
    lam = 0.5

    def objective(theta):
        lp = theta - np.logaddexp.reduce(theta)
        l1m = np.array([np.logaddexp.reduce(np.delete(lp, y)) for y in range(3)])
        lo = lp - l1m
        total = 0.0
        for w, l in itertools.permutations(range(3), 2):
            weight = 2 * mu[w] * mu[l] * P[w, l]
            total += weight * (-lp[w] + lam * np.logaddexp(0, -(lo[w] - lo[l])))
        return total

    best = minimize(objective, np.log(mu), method="BFGS", options={"gtol": 1e-12}).x
    run = pt.ALGORITHMS["orpo"](P, mu, steps=6000, lam=lam)
    want = np.exp(best - np.logaddexp.reduce(best))
    assert _tv(run.final, want) < 1e-6
    assert float(run.losses[-1]) == pytest.approx(objective(best), abs=1e-9)


def _kto_objective(theta, mu, D, d, beta, z0, wd=1.0, wu=1.0):
    lp = theta - np.logaddexp.reduce(theta)
    r = lp - np.log(mu)
    s = 1 / (1 + np.exp(-beta * (r - z0)))
    return (D * (d * wd * (1 - s) + (1 - d) * wu * s)).sum()


def test_kto_stationary_point_with_the_paper_reference_point():
    mu = np.array([0.4, 0.35, 0.25])
    d = np.array([0.8, 0.65, 0.55])  # every action desirable more often: an interior point
    beta = 0.5
    run = pt.ALGORITHMS["kto"](P_BT, mu, steps=20000, beta=beta, desirable=d.tolist())
    pi = run.final.numpy()
    theta = np.log(pi)
    z0 = float((pi * np.log(pi / mu)).sum())  # KL(pi || mu), held fixed
    grad = np.array([
        (_kto_objective(theta + e, mu, mu, d, beta, z0) - _kto_objective(theta - e, mu, mu, d, beta, z0)) / 2e-6
        for e in np.eye(3) * 1e-6
    ])  # fmt: skip
    assert np.abs(grad).max() < 1e-7
    assert float(run.hyper["reference_points"][-1]) == pytest.approx(z0, abs=1e-10)


def test_kto_small_beta_limit():
    mu = np.array([0.4, 0.35, 0.25])
    D = np.array([0.2, 0.5, 0.3])
    d = np.array([0.9, 0.7, 0.6])
    c = D * (d - (1 - d))
    run = pt.ALGORITHMS["kto"](
        P_BT, mu, steps=20000, beta=1e-3, desirable=d.tolist(), data=D.tolist()
    )
    assert _tv(run.final, c / c.sum()) < 2e-3


def test_kto_drops_actions_labelled_undesirable_more_often():
    d = [0.9, 0.3, 0.6]
    run = pt.ALGORITHMS["kto"](P_BT, MU, steps=5000, beta=1.0, desirable=d)
    assert float(run.final[1]) < 1e-3


def test_kto_data_reference_point_is_a_difference_of_kls():
    run = pt.ALGORITHMS["kto"](
        P_BT, MU, steps=50, beta=1.0, reference_point="data_unclamped", data=[0.2, 0.2, 0.6]
    )
    pi = run.policies[-2].numpy()  # the iterate of the last step's z0
    D = np.array([0.2, 0.2, 0.6])
    kl = lambda a, b: float((a * np.log(a / b)).sum())  # noqa: E731
    want = kl(D, MU) - kl(D, pi)
    assert float(run.hyper["reference_points"][-1]) == pytest.approx(want, abs=1e-12)


def test_kto_batch_reference_point_by_brute_force_enumeration():
    b = 3
    pi = np.array([0.6, 0.3, 0.1])
    values, probs = kto_reference_point_distribution(pi.tolist(), MU.tolist(), b)
    r = np.log(pi / MU)
    mean_z0 = sum(
        np.prod(MU[list(seq)]) * max(0.0, r[list(seq)].mean())
        for seq in itertools.product(range(3), repeat=b)
    )
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-14)
    assert float((values * probs).sum()) == pytest.approx(mean_z0, abs=1e-14)
    assert len(values) == math.comb(b + 2, 2)
    # the batch-mode run's first loss: the same enumeration of the expected loss at pi_0 = mu
    run = pt.ALGORITHMS["kto"](P_BT, MU, steps=1, beta=0.5, reference_point="batch", batch_size=2)
    assert float(run.losses[0]) == pytest.approx(
        _kto_objective(np.log(MU), MU, MU, P_BT.numpy() @ MU, 0.5, 0.0), abs=1e-14
    )


def test_dpop_outside_pins_the_middle_action_that_dpo_empties():
    P = [[0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]]  # total order 0 > 1 > 2
    mu = [1 / 3, 1 / 3, 1 / 3]
    dpo = pt.ALGORITHMS["dpo"](P, mu, steps=3000, beta=0.1, lr=10.0)
    assert float(dpo.final[1]) < 1e-3  # the middle action is emptied
    out = pt.ALGORITHMS["dpop"](P, mu, steps=8000, beta=0.1, lam=5.0, placement="outside")
    assert float(out.final[1]) == pytest.approx(1 / 3, abs=0.015)  # hovering at the kink
    assert float(out.final[2]) < 0.05


def test_sdpo_after_T_stages_is_dpo_at_beta_over_T():
    beta, T = 1.0, 3
    run = pt.ALGORITHMS["sdpo"](P_BT, MU, stages=T, steps=T * 2500, beta=beta)
    assert _tv(run.final, _gibbs(MU, T * Q / beta)) < 1e-6
    assert run.steps == T * 2500
    assert _tv(run.target("sdpo_optimum"), _gibbs(MU, T * Q / beta)) < 1e-10


def test_rso_leaves_dpo_unchanged_and_moves_ipo():
    beta = 1.0
    dpo = pt.ALGORITHMS["rso"](P_BT, MU, steps=4000, beta=beta)
    assert _tv(dpo.final, _gibbs(MU, Q / beta)) < 1e-6
    nu = _gibbs(MU, Q / beta)  # the reward model is the BT fit, = Q up to a constant
    ipo = pt.ALGORITHMS["rso"](P_BT, MU, steps=4000, tau=beta, loss="ipo")
    want = _gibbs(MU, P_BT.numpy() @ nu / beta)
    assert _tv(ipo.final, want) < 1e-6
    assert _tv(want, _gibbs(MU, P_BT.numpy() @ MU / beta)) > 1e-3


def test_iterative_dpo_initial_reference_lands_on_online_dpo():
    P = pt.three_voter_types(0.1)
    it = pt.ALGORITHMS["iterative_dpo"](P, MU, rounds=30, steps=30 * 400, beta=1.0)
    on = pt.ALGORITHMS["online_dpo"](P, MU, steps=30000, beta=1.0)
    assert _tv(it.final, on.final) < 1e-5


def test_iterative_dpo_updated_reference_drifts_to_the_vertex():
    run = pt.ALGORITHMS["iterative_dpo"](
        P_BT, MU, rounds=20, steps=20 * 400, beta=1.0, reference="previous"
    )
    assert float(run.final[0]) > 0.999


def test_beta_dpo_without_filter_and_scaling_is_dpo():
    # beta-DPO averages over the pairs of different actions; DPO's population weighs them by
    # their probability 1 - sum mu^2 (ties add a constant): the same steps with lr rescaled
    ties = 1 - float((MU**2).sum())
    a = pt.ALGORITHMS["beta_dpo"](
        P_BT, MU, steps=100, beta=0.5, a=0.0, mode_weight=0.0, lr=2.0 * ties
    )
    d = pt.ALGORITHMS["dpo"](P_BT, MU, steps=100, beta=0.5, lr=2.0)
    torch.testing.assert_close(a.policies, d.policies, rtol=0, atol=1e-12)


def test_beta_dpo_running_statistics_follow_the_official_update():
    run = pt.ALGORITHMS["beta_dpo"](P_BT, MU, steps=5, beta=0.5)
    M = run.hyper["running_mean"].numpy()
    # step 0: every margin is 0, so the first mean is 0.9 * 0 + 0.1 * 0
    assert M[0] == 0.0
    # step 1: the population mean margin of the (winner, loser) pairs at pi_1, by hand
    lp = run.log_policies[1].numpy() - np.log(MU)
    P = P_BT.numpy()
    W = 2 * MU[:, None] * MU[None, :] * P * (1 - np.eye(3))
    mean = (W * (lp[:, None] - lp[None, :])).sum() / W.sum()
    assert M[1] == pytest.approx(0.1 * mean, abs=1e-14)


def test_beta_dpo_sampled_minibatches_run_and_are_seeded():
    a = pt.ALGORITHMS["beta_dpo"](P_BT, MU, steps=50, beta=0.5, batch_size=8, seed=3)
    b = pt.ALGORITHMS["beta_dpo"](P_BT, MU, steps=50, beta=0.5, batch_size=8, seed=3)
    torch.testing.assert_close(a.policies, b.policies, rtol=0, atol=0)
    with pytest.raises(ValueError, match="seed"):
        pt.ALGORITHMS["beta_dpo"](P_BT, MU, steps=5, beta=0.5, batch_size=8, minibatches="sampled")
    with pytest.raises(ValueError, match="at most"):  # refused before anything is enumerated
        pt.ALGORITHMS["beta_dpo"](P_BT, MU, steps=5, beta=0.5, batch_size=16)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("kto", {"beta": 0.1, "reference_point": "mean"}, "reference_point"),
        ("kto", {"beta": 0.1, "reference_point": "batch"}, "batch_size"),
        ("kto", {"beta": 0.1, "desirable": [0.5, 2.0, 0.1]}, "desirable"),
        ("simpo", {"beta": 1.0, "lengths": [1.0, 0.0, 1.0]}, "lengths"),
        ("simpo", {"beta": 1.0, "gamma": 1.0, "gamma_beta_ratio": 0.5}, "not both"),
        ("orpo", {"lam": -1.0}, "lam"),
        ("rdpo", {"beta": 1.0, "alpha": -1.0}, "alpha"),
        ("dpop", {"beta": 1.0, "placement": "middle"}, "placement"),
        ("beta_dpo", {"beta": 1.0, "mode_weight": 1.0}, "mode_weight"),
        ("sdpo", {"beta": 1.0, "stages": 0}, "stages"),
        ("iterative_dpo", {"beta": 1.0, "reference": "last"}, "reference"),
        ("rso", {"beta": 1.0, "loss": "kto"}, "loss"),
    ],
)
def test_family_bad_input_names_the_argument(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pt.ALGORITHMS[name](P_BT, MU, steps=3, **kwargs)


def test_beta_dpo_exact_minibatch_loss_by_brute_force():
    b, beta, a, drop = 3, 1.0, 0.6, 0.2
    run = pt.ALGORITHMS["beta_dpo"](P_BT, MU, steps=3, beta=beta, a=a, mode_weight=drop,
                                    batch_size=b, lr=0.5)  # fmt: skip
    P = P_BT.numpy()
    cells = [(w, lo) for w in range(3) for lo in range(3) if w != lo]
    W = np.array([2 * MU[w] * MU[lo] * P[w, lo] for w, lo in cells])
    W = W / W.sum()
    m = int(b * (1 - drop))
    M = S = 0.0
    for t in range(2):  # the running statistics at steps 0 and 1, then the loss at step 1
        g = run.log_policies[t].numpy() - np.log(MU)
        A = np.array([g[w] - g[lo] for w, lo in cells])
        batches = list(itertools.product(range(len(cells)), repeat=b))
        probs = np.array([np.prod(W[list(bt)]) for bt in batches])
        M = 0.9 * M + 0.1 * sum(p * A[list(bt)].mean() for p, bt in zip(probs, batches))
        S = 0.9 * S + 0.1 * sum(p * A[list(bt)].std(ddof=1) for p, bt in zip(probs, batches))
    expected = 0.0
    for p, bt in zip(probs, batches):
        Ab = A[list(bt)]
        w = np.exp(-0.5 * ((Ab - M) / S) ** 2) if S > 0 else np.ones(b)
        for sel in itertools.permutations(range(b), m):
            q, left = 1.0, list(range(b))
            for i in sel:
                q *= w[i] / w[left].sum()
                left.remove(i)
            beta_b = max(beta * (1 + a * (Ab[list(sel)].mean() - M)), 1e-3)
            expected += p * q * np.logaddexp(0, -beta_b * Ab[list(sel)]).mean()
    assert float(run.losses[1]) == pytest.approx(expected, rel=1e-12)
    assert float(run.hyper["running_mean"][1]) == pytest.approx(M, rel=1e-12)


def test_beta_dpo_kept_fraction_is_exact_even_for_tiny_weights():
    from prefopt_toy.dynamics.adaptive import keep_probabilities

    log_w = torch.tensor([[0.0, -720.0, float("-inf"), -3.0]], dtype=torch.float64)
    probs = torch.tensor([[0.1, 0.85, 0.0, 0.05]], dtype=torch.float64)
    keep, _ = keep_probabilities(log_w, probs, torch.tensor([0.8], dtype=torch.float64))
    assert float((keep * probs).sum()) == pytest.approx(0.8, abs=1e-12)
    # 1 - exp(-lambda w) with one lambda: the order of the weights is kept
    assert float(keep[0, 0]) >= float(keep[0, 3]) >= float(keep[0, 1]) > 0


def test_beta_dpo_keep_probabilities_solve_for_lambda_as_brentq_does_from_any_start():
    """The Newton search's log lambda against scipy's brentq on the kept mean, cold and warm."""
    from scipy.optimize import brentq

    from prefopt_toy.dynamics.adaptive import keep_probabilities

    gen = torch.Generator().manual_seed(3)
    for scale in (1.0, 30.0, 600.0):
        log_w = -torch.rand(4, 7, generator=gen, dtype=torch.float64) * scale
        probs = torch.rand(4, 7, generator=gen, dtype=torch.float64)
        probs = probs / probs.sum(-1, keepdim=True)
        frac = torch.tensor([0.05, 0.3, 0.8, 0.99], dtype=torch.float64)
        lw, pr = log_w.numpy(), probs.numpy()
        for start in (None, torch.full((4,), 500.0, dtype=torch.float64)):
            keep, u = keep_probabilities(log_w, probs, frac, start)
            for i in range(4):

                def kept_mean(v, p_i=pr[i], lw_i=lw[i], f_i=float(frac[i])):
                    return float((p_i * -np.expm1(-np.exp(v + lw_i))).sum()) - f_i

                root = brentq(kept_mean, -scale - 60, scale + 60, xtol=1e-14, rtol=1e-15)
                assert float(u[i]) == pytest.approx(root, rel=1e-10, abs=1e-10)
            assert torch.allclose((keep * probs).sum(-1), frac, rtol=0, atol=1e-12)
