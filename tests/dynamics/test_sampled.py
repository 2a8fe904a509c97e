"""Sampled mode (``prefopt_toy.dynamics.sampled``): the IPO paper's minibatch protocol on data sets.

Oracles, none of them the module's own earlier output:

- autograd of ``prefopt_toy.losses.population.dataset_loss`` on the same minibatch, for the hand-derived
  scatter-add gradient (library losses through their kernels, and a custom callable);
- enumeration of every minibatch drawn with replacement, for unbiasedness of the sampled gradient;
- closed-form minimisers derived for this suite from Azar et al., Sec. 5.4: D1 IPO
  ``~ (e^{2/(3 tau)}, e^{1/(3 tau)}, 1)``, D3' DPO ``(1/2, 1/2, 0)`` and IPO
  ``~ (e^{1/(2 tau)}, e^{1/(2 tau)}, 1)``; the printed D3 leaves action c without gradient;
- ``scipy.stats.t.interval`` on numpy copies, for the seed summary.
"""

from __future__ import annotations

import functools
import itertools
import math
import time

import numpy as np
import pytest
import torch
from scipy import stats

from prefopt_toy.dynamics.sampled import DATASET_LOSSES, dataset_run, minibatch_loss_and_gradient
from prefopt_toy.dynamics.seeds import seed_summary
from prefopt_toy.losses.gpo import gpo_loss
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, slic_loss
from prefopt_toy.losses.population import dataset_loss

F64 = torch.float64
UNIFORM = [1 / 3, 1 / 3, 1 / 3]
D1 = [(0, 1), (1, 2), (0, 2)]  # total order a > b > c (Azar et al. Sec. 5.4)
D3 = [(0, 1), (1, 0)]  # as printed in the paper: action c is never compared
D3_PRIME = [
    (0, 1),
    (1, 0),
    (0, 2),
]  # the data set the paper's text describes (Azar et al. Sec. 5.4), as this suite reads it
TAUS = [0.1, 0.5, 1.0]


def _softmax(logits: list[float]) -> torch.Tensor:
    t = torch.tensor(logits, dtype=F64)
    return torch.exp(t - torch.logsumexp(t, 0))


def d1_ipo_exact(tau: float) -> torch.Tensor:
    """Least-squares solution h_ab = h_bc = 1/(3 tau), h_ac = 2/(3 tau) under uniform mu."""
    return _softmax([2 / (3 * tau), 1 / (3 * tau), 0.0])


def d3_prime_ipo_exact(tau: float) -> torch.Tensor:
    """h_ab = 0 (the symmetric pair), h_ac = 1/(2 tau) (the single target)."""
    return _softmax([1 / (2 * tau), 1 / (2 * tau), 0.0])


# --------------------------------------------------------------------------- the minibatch gradient

LOSS_CASES = [
    ("dpo", functools.partial(dpo_loss, beta=0.7), "beta", 0.7),
    ("ipo", functools.partial(ipo_loss, tau=0.3), "tau", 0.3),
    ("slic", functools.partial(slic_loss, beta=2.0), "beta", 2.0),
    ("gpo_exponential", functools.partial(gpo_loss, beta=0.5, f="exponential"), "beta", 0.5),
    ("custom", lambda h: torch.log1p(h * h) - 0.3 * h, None, None),  # autograd fallback
]


@pytest.mark.parametrize("name, loss, key, strength", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_gradient_matches_autograd_of_dataset_loss(name, loss, key, strength):
    """The scatter-add gradient equals autograd of ``dataset_loss`` on the same minibatch, row by row."""
    gen = torch.Generator().manual_seed(3)
    k, n, b, m = 4, 7, 5, 6
    pairs = torch.stack([torch.randperm(k, generator=gen)[:2] for _ in range(n)])  # (N, 2), w != l
    mu = torch.rand(k, generator=gen, dtype=F64) + 0.2
    mu = mu / mu.sum()
    theta = 2.0 * torch.randn(b, k, generator=gen, dtype=F64)
    index = torch.randint(n, (b, m), generator=gen)
    log_pi = theta - torch.logsumexp(theta, -1, keepdim=True)
    batch_loss = loss
    if key is not None:  # the engine's batched form: one strength per row, broadcast as (B, 1)
        fn, _, fixed = DATASET_LOSSES[name]
        batch_loss = functools.partial(
            fn, **fixed, **{key: torch.full((b, 1), strength, dtype=F64)}
        )
    value, grad = minibatch_loss_and_gradient(log_pi, mu.log(), pairs, index, batch_loss)
    assert value.shape == (b,) and grad.shape == (b, k)
    for row in range(b):
        th = theta[row].clone().requires_grad_(True)
        ref = dataset_loss(th, mu, pairs[index[row]], loss)
        (ref_grad,) = torch.autograd.grad(ref, th)
        assert float(value[row]) == pytest.approx(float(ref.detach()), abs=1e-12)
        torch.testing.assert_close(grad[row], ref_grad, atol=1e-12, rtol=1e-12)


def test_gradient_rows_sum_to_zero_and_an_uncompared_action_gets_none():
    """Invariants: the softmax normaliser cancels (rows sum to 0); on the printed D3 theta_c is never touched."""
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(8, 3, generator=gen, dtype=F64)
    log_pi = theta - torch.logsumexp(theta, -1, keepdim=True)
    index = torch.randint(2, (8, 9), generator=gen)
    _, grad = minibatch_loss_and_gradient(
        log_pi,
        torch.full((3,), 1 / 3, dtype=F64).log(),
        torch.tensor(D3),
        index,
        functools.partial(dpo_loss, beta=0.5),
    )
    torch.testing.assert_close(grad.sum(-1), torch.zeros(8, dtype=F64), atol=1e-15, rtol=0)
    assert bool((grad[:, 2] == 0).all())


def test_minibatch_gradient_is_unbiased():
    """Averaged over all N^M minibatches drawn with replacement, the gradient is the full-data-set one."""
    n, m = 3, 3
    pairs = torch.tensor(D1)
    theta = torch.tensor([[0.3, -0.2, 0.5]], dtype=F64)
    log_pi = theta - torch.logsumexp(theta, -1, keepdim=True)
    log_mu = torch.tensor([0.2, 0.3, 0.5], dtype=F64).log()
    loss = functools.partial(ipo_loss, tau=0.25)
    every = torch.tensor(list(itertools.product(range(n), repeat=m)))  # (N^M, M)
    _, grads = minibatch_loss_and_gradient(log_pi.expand(len(every), 3), log_mu, pairs, every, loss)
    _, full = minibatch_loss_and_gradient(log_pi, log_mu, pairs, torch.arange(n)[None], loss)
    torch.testing.assert_close(grads.mean(0), full[0], atol=1e-14, rtol=0)


# --------------------------------------------------------------------------- check 8: the paper's protocol


def test_check8_d1_full_protocol_dpo_deterministic_ipo_at_the_minimiser():
    """Azar et al., arXiv:2310.12036v2, Sec. 5.4 on D1: Adam lr 0.01, batch 9, 18,000 steps, 10 seeds.

    DPO drives pi(a) to 1 for every tau; IPO's 10-seed mean lands within 0.01 of the exact
    least-squares minimiser of Eq. (17) (``dataset_run``'s Notes). One call per loss: 3 taus x 10
    seeds.
    """
    start = time.perf_counter()
    runs = {loss: dataset_run(UNIFORM, D1, loss=loss, tau=TAUS) for loss in ("dpo", "ipo")}
    elapsed = time.perf_counter() - start
    for traj in runs.values():
        assert traj.log_policies.shape == (30, 18_001, 3)
        assert (
            traj.hyper["steps"],
            traj.hyper["batch_size"],
            traj.hyper["lr"],
            traj.hyper["n_seeds"],
        ) == (18_000, 9, 0.01, 10)
        assert traj.hyper["optimizer"] == "adam" and traj.hyper["betas"] == (0.9, 0.999)
        assert traj.hyper["eps"] == 1e-8
    dpo_summary, ipo_summary = seed_summary(runs["dpo"]), seed_summary(runs["ipo"])
    lines = [f"check 8 runtime {elapsed:.1f} s (2 calls x 30 rows x 18000 steps)"]
    for g, tau in enumerate(TAUS):
        exact = d1_ipo_exact(tau)
        assert float(dpo_summary.mean[g, 0]) > 0.999
        assert (
            float(runs["dpo"].final[g * 10 : (g + 1) * 10, 0].min()) > 0.999
        )  # every seed, not just the mean
        gap = (ipo_summary.mean[g] - exact).abs().max()
        assert float(gap) < 0.01
        lines.append(
            f"tau={tau}: DPO mean {dpo_summary.mean[g].numpy()} +- {dpo_summary.half_width[g].numpy()}; "
            f"IPO mean {ipo_summary.mean[g].numpy()} +- {ipo_summary.half_width[g].numpy()} "
            f"vs exact {exact.numpy()} (max gap {float(gap):.4f})"
        )
    print("\n".join(lines))  # shown with pytest -s: the numbers reported to the lead


# --------------------------------------------------------------------------- exact mode (minibatch=False)


def test_exact_ipo_on_d1_reaches_the_closed_form():
    """Independent oracle: pi ~ (e^{2/(3 tau)}, e^{1/(3 tau)}, 1), to 1e-10 (plain GD; Hessian 2 I on the
    orthogonal complement of 1, so lr 0.5 contracts by 0 per step up to round-off)."""
    traj = dataset_run(
        UNIFORM, D1, loss="ipo", tau=TAUS, steps=200, optimizer="gd", lr=0.5, minibatch=False
    )
    exact = torch.stack([d1_ipo_exact(t) for t in TAUS])
    torch.testing.assert_close(traj.final, exact, atol=1e-10, rtol=0)
    # The recorded loss decreases to the least-squares residual: 3 equal residuals of c/3, c = 1/(2 tau).
    residual = torch.tensor([(1 / (6 * t)) ** 2 for t in TAUS], dtype=F64)
    torch.testing.assert_close(traj.losses[:, -1], residual, atol=1e-12, rtol=0)


def test_exact_mode_with_adam_follows_the_protocol_and_is_deterministic():
    """Adam on the full-data-set gradient: near the minimiser, and two calls are identical.

    Adam at a constant step does not settle to round-off: measured 1e-8 off at 2,000 steps but
    ~4e-4 at 18,000 (v decays, the effective step grows, the iterate hops), hence 1e-3 here.
    """
    a = dataset_run(UNIFORM, D1, loss="ipo", tau=TAUS, steps=2000, minibatch=False)
    b = dataset_run(UNIFORM, D1, loss="ipo", tau=TAUS, steps=2000, minibatch=False)
    assert torch.equal(a.log_policies, b.log_policies)
    exact = torch.stack([d1_ipo_exact(t) for t in TAUS])
    assert float((a.final - exact).abs().max()) < 1e-3
    # Batching over tau changes nothing: each row equals its own unbatched run.
    single = dataset_run(UNIFORM, D1, loss="ipo", tau=0.5, steps=2000, minibatch=False)
    assert not single.batched
    torch.testing.assert_close(single.log_policies, a.log_policies[1], atol=0, rtol=0)


def test_exact_d3_prime_dpo_and_ipo_limits():
    """D3' = {(a,b), (b,a), (a,c)}: DPO -> (1/2, 1/2, 0) (an infimum at infinite h_ac, approached);
    IPO -> ~ (e^{1/(2 tau)}, e^{1/(2 tau)}, 1), reached (derived for this suite)."""
    dpo_run = dataset_run(UNIFORM, D3_PRIME, loss="dpo", tau=TAUS, steps=6000, minibatch=False)
    limit = torch.tensor([0.5, 0.5, 0.0], dtype=F64)
    assert float((dpo_run.final - limit).abs().max()) < 1e-3
    ipo_run = dataset_run(
        UNIFORM, D3_PRIME, loss="ipo", tau=TAUS, steps=300, optimizer="gd", lr=0.5, minibatch=False
    )
    exact = torch.stack([d3_prime_ipo_exact(t) for t in TAUS])
    torch.testing.assert_close(ipo_run.final, exact, atol=1e-10, rtol=0)


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_printed_d3_leaves_the_policy_uniform(loss):
    """D3 as printed: both losses depend on theta only through theta_a - theta_b, optimal at 0.

    Exact: the gradient at pi = mu is exactly 0, so every iterate is uniform. Sampled: the minibatch
    noise moves theta_a - theta_b around 0, pi stays near uniform (seed std <= 0.05), and pi(c)
    moves only through the normaliser.
    """
    exact = dataset_run(UNIFORM, D3, loss=loss, tau=TAUS, steps=500, minibatch=False)
    torch.testing.assert_close(
        exact.policies, torch.full_like(exact.policies, 1 / 3), atol=1e-15, rtol=0
    )
    sampled = dataset_run(UNIFORM, D3, loss=loss, tau=TAUS, steps=3000)
    summary = seed_summary(sampled)
    assert float((summary.mean - 1 / 3).abs().max()) < 0.03
    assert float(summary.std.max()) < 0.05
    assert float((sampled.final[:, 2] - 1 / 3).abs().max()) < 0.01


# --------------------------------------------------------------------------- recorded losses, loss forms


def test_recorded_losses_are_the_data_set_loss_at_each_iterate():
    """``losses[b, t]`` is ``dataset_loss`` (the full data set, not the minibatch) at iterate t."""
    traj = dataset_run(
        [0.2, 0.3, 0.5], D3_PRIME, loss="dpo", beta=[0.5, 2.0], steps=40, seeds=[4, 9]
    )
    loss_rows = {0: 0.5, 1: 0.5, 2: 2.0, 3: 2.0}
    for row, beta in loss_rows.items():
        for t in (0, 17, 39):
            ref = dataset_loss(
                traj.log_policies[row, t],
                [0.2, 0.3, 0.5],
                D3_PRIME,
                functools.partial(dpo_loss, beta=beta),
            )
            assert float(traj.losses[row, t]) == pytest.approx(float(ref), abs=1e-13)
    assert float(traj.losses[0, 0]) == pytest.approx(math.log(2.0), abs=1e-15)  # h = 0 at pi = mu


def test_named_callable_and_autograd_losses_give_the_same_trajectory():
    """``loss="ipo"``, ``loss=ipo_loss`` with tau, and an autograd-only callable with the same target."""
    named = dataset_run(UNIFORM, D1, loss="ipo", tau=0.5, steps=300, seeds=[1, 2])
    function = dataset_run(UNIFORM, D1, loss=ipo_loss, tau=0.5, steps=300, seeds=[1, 2])
    custom = dataset_run(UNIFORM, D1, loss=lambda h: (h - 1.0) ** 2, steps=300, seeds=[1, 2])
    assert torch.equal(named.log_policies, function.log_policies)
    torch.testing.assert_close(custom.log_policies, named.log_policies, atol=1e-12, rtol=0)
    assert named.hyper["loss"] == "ipo" and "tau" in named.hyper and "tau" not in custom.hyper


def test_tau_and_beta_are_aliases_for_named_losses():
    a = dataset_run(UNIFORM, D1, loss="dpo", tau=0.5, steps=100, seeds=2)
    b = dataset_run(UNIFORM, D1, loss="dpo", beta=0.5, steps=100, seeds=2)
    assert torch.equal(a.log_policies, b.log_policies)
    torch.testing.assert_close(a.hyper["beta"], torch.full((2,), 0.5, dtype=F64))


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_same_trajectory_different_seeds_differ():
    a = dataset_run(UNIFORM, D1, loss="ipo", tau=0.5, steps=200, seeds=[0, 1])
    b = dataset_run(UNIFORM, D1, loss="ipo", tau=0.5, steps=200, seeds=[0, 1])
    assert torch.equal(a.log_policies, b.log_policies)
    assert not torch.equal(a.log_policies[0], a.log_policies[1])


def test_a_seed_row_does_not_depend_on_the_rest_of_the_call():
    """Per-seed generators: a row equals the same seed run alone, whatever the other seeds,
    strengths and step count; batch 4096 makes index blocks of 16 steps, so blocks are crossed."""
    big = {"batch_size": 4096, "steps": 50}
    together = dataset_run(UNIFORM, D1, loss="dpo", tau=[0.5, 1.0], seeds=[5, 3, 8], **big)
    alone = dataset_run(UNIFORM, D1, loss="dpo", tau=1.0, seeds=[3], **big)
    torch.testing.assert_close(together.log_policies[4], alone.log_policies[0], atol=0, rtol=0)
    longer = dataset_run(UNIFORM, D1, loss="dpo", tau=1.0, seeds=[3], batch_size=4096, steps=70)
    torch.testing.assert_close(longer.log_policies[0, :51], alone.log_policies[0], atol=0, rtol=0)
    assert together.hyper["seed"].tolist() == [5, 3, 8, 5, 3, 8]


def test_a_generator_stands_for_its_seed():
    from_gen = dataset_run(
        UNIFORM, D1, loss="ipo", tau=1.0, steps=100, seeds=torch.Generator().manual_seed(7)
    )
    from_int = dataset_run(UNIFORM, D1, loss="ipo", tau=1.0, steps=100, seeds=[7])
    assert torch.equal(from_gen.log_policies, from_int.log_policies)
    assert from_gen.hyper["seed"].tolist() == [-1]
    counted = dataset_run(UNIFORM, D1, loss="ipo", tau=1.0, steps=10, seeds=np.array([0, 1]))
    assert torch.equal(
        counted.log_policies,
        dataset_run(UNIFORM, D1, loss="ipo", tau=1.0, steps=10, seeds=2).log_policies,
    )


def test_golden_short_run():
    """Regression value (torch 2.13 CPU generator): seed 0, D1, IPO tau 0.5, 200 steps of the protocol."""
    traj = dataset_run(UNIFORM, D1, loss="ipo", tau=0.5, steps=200, seeds=[0])
    golden = torch.tensor(GOLDEN_SEED0_IPO_TAU05_200, dtype=F64)
    torch.testing.assert_close(traj.final[0], golden, atol=1e-12, rtol=0)


GOLDEN_SEED0_IPO_TAU05_200 = [0.5538356051917486, 0.29371794365402587, 0.15244645115422562]


# --------------------------------------------------------------------------- Trajectory, summary, inputs


def test_trajectory_record():
    traj = dataset_run(UNIFORM, D1, loss="ipo", tau=[0.5, 1.0], steps=5, seeds=3)
    assert traj.algorithm == "dataset_ipo" and len(traj) == 6 and traj.losses.shape == (6, 5)
    torch.testing.assert_close(traj.hyper["tau"], torch.tensor([0.5] * 3 + [1.0] * 3, dtype=F64))
    empirical = torch.tensor([[0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]], dtype=F64)
    torch.testing.assert_close(traj.P[0], empirical)
    row = traj[4]
    assert (
        float(row.hyper["tau"]) == 1.0
        and int(row.hyper["seed"]) == 1
        and row.hyper["pairs"] == tuple(D1)
    )
    assert "2310.12036v2" in traj.hyper["protocol"]
    zero = dataset_run(UNIFORM, D1, loss="ipo", tau=1.0, steps=0, seeds=2)
    assert zero.log_policies.shape == (2, 1, 3) and zero.losses is None


def test_seed_summary_is_a_t_interval():
    traj = dataset_run(UNIFORM, D1, loss="ipo", tau=[0.5, 1.0], steps=300, seeds=6)
    summary = seed_summary(traj)
    assert summary.mean.shape == (2, 3) and summary.n_seeds == 6
    torch.testing.assert_close(summary.strength, torch.tensor([0.5, 1.0], dtype=F64))
    finals = traj.final.numpy().reshape(2, 6, 3)
    for g in range(2):
        mean = finals[g].mean(0)
        lo, hi = stats.t.interval(
            0.95, df=5, loc=mean, scale=finals[g].std(0, ddof=1) / math.sqrt(6)
        )
        np.testing.assert_allclose(summary.mean[g].numpy(), mean, atol=1e-15)
        np.testing.assert_allclose(summary.lower[g].numpy(), lo, atol=1e-13)
        np.testing.assert_allclose(summary.upper[g].numpy(), hi, atol=1e-13)
    assert seed_summary(traj, step=None).mean.shape == (2, 301, 3)
    torch.testing.assert_close(seed_summary(traj, step=0).half_width, torch.zeros(2, 3, dtype=F64))
    wider = seed_summary(traj, confidence=0.99)
    assert bool((wider.half_width >= summary.half_width).all())


def test_seed_summary_bad_input():
    exact = dataset_run(UNIFORM, D1, loss="ipo", tau=[0.5, 1.0], steps=3, minibatch=False)
    with pytest.raises(ValueError, match="traj"):
        seed_summary(exact)
    with pytest.raises(ValueError, match="traj"):
        seed_summary(dataset_run(UNIFORM, D1, loss="ipo", tau=0.5, steps=3, seeds=1))
    with pytest.raises(ValueError, match="confidence"):
        seed_summary(
            dataset_run(UNIFORM, D1, loss="ipo", tau=0.5, steps=3, seeds=2), confidence=1.5
        )


BAD = [
    ({"pairs": []}, "pairs"),
    ({"pairs": [(0, 3)]}, "pairs"),
    ({"pairs": [(0, -1)]}, "pairs"),
    ({"pairs": [(1, 1)]}, "pairs"),
    ({"pairs": [(0.5, 1.0)]}, "pairs"),
    ({"batch_size": 0}, "batch_size"),
    ({"steps": -1}, "steps"),
    ({"loss": "dpoo"}, "loss"),
    ({"loss": 3}, "loss"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"lr": 0.0}, "lr"),
    ({"tau": None}, "tau"),
    ({"beta": 0.5}, "tau or beta"),
    ({"tau": -0.1}, "tau"),
    ({"tau": [0.1, 0.0]}, "tau"),
    ({"mu": [0.5, 0.5, 0.0]}, "mu"),
    ({"mu": [0.5, 0.6, 0.1]}, "mu"),
    ({"seeds": 0}, "seeds"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [-1]}, "seeds"),
    ({"seeds": "abc"}, "seeds"),
    ({"seeds": 3, "minibatch": False}, "seeds"),
    ({"minibatch": "yes"}, "minibatch"),
    ({"loss": lambda h: h.sum()}, "loss"),
]


@pytest.mark.parametrize("override, name", BAD, ids=[f"{n}-{i}" for i, (_, n) in enumerate(BAD)])
def test_bad_input_names_the_argument(override, name):
    kwargs = {"mu": UNIFORM, "pairs": D1, "loss": "ipo", "tau": 0.5, "steps": 2}
    kwargs.update(override)
    if override.get("loss") is not None and callable(override["loss"]):
        kwargs.pop("tau")
    mu, pairs = kwargs.pop("mu"), kwargs.pop("pairs")
    with pytest.raises(ValueError, match=name):
        dataset_run(mu, pairs, **kwargs)


def test_inputs_are_not_modified():
    mu = np.array([0.2, 0.3, 0.5])
    pairs = np.array(D1)
    taus = torch.tensor(TAUS, dtype=F64)
    dataset_run(mu, pairs, loss="ipo", tau=taus, steps=20, seeds=2)
    np.testing.assert_array_equal(mu, [0.2, 0.3, 0.5])
    np.testing.assert_array_equal(pairs, D1)
    assert taus.tolist() == TAUS
