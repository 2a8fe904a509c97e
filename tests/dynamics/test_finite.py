"""The exact dynamics never return inf or NaN as an answer, and their errors name the caller's argument.

A run whose arithmetic leaves float64 (an iterate or loss becomes inf / NaN, or the updates throw
the logits beyond float64's resolution for the loss) raises ``DivergenceError`` (a
``FloatingPointError`` and a ``ValueError``) naming the step, the batch row and the argument the
caller passed: ``lr``, or ``tau`` / ``beta`` when the default step derived from it is at fault. A
legitimate run to a vertex (DPO on deterministic preferences) is an answer, not an error.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import prefopt_toy as pt
from prefopt_toy.dynamics import ALGORITHMS, DivergenceError, dataset_run, redraw
from prefopt_toy.dynamics.optimizers import Adam

F64 = torch.float64
P3 = torch.tensor([[0.5, 0.8, 0.3], [0.2, 0.5, 0.9], [0.7, 0.1, 0.5]], dtype=F64)  # a cycle
MU3 = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
DETERMINISTIC = torch.tensor([[0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]], dtype=F64)
NAMES = sorted(ALGORITHMS)  # the registry itself: new entries are covered

# Entries whose default lr is a function of the strength that leaves float64 at the extremes
# (0.4 / (f'' beta**2)); the hinge's 1 / beta and the IPO / policy-gradient defaults stay finite.
SMOOTH_DPO_FAMILY = {
    "dpo",
    # the rest of the DPO family whose default step is 1.6 / beta**2 like DPO's
    "rdpo",
    "beta_dpo",
    "rso",
    "sdpo",
    "iterative_dpo",
    "online_dpo",
    "gpo_logistic",
    "gpo_squared",
    "gpo_exponential",
    "gpo_truncated_quadratic",
    "gpo_savage",
}


# Their defaults also have a term linear in beta (the curvature of log pi, or of the penalty):
# finite at tiny beta, but still 0 at a huge one.
UNDERFLOW_AT_HUGE_BETA = SMOOTH_DPO_FAMILY | {"kto", "simpo", "dpop"}


def _strength(name: str, value: object) -> dict:
    """Every entry's strength keyword: ``tau`` (read as beta by the DPO family), ORPO's ``lam``."""
    return {"lam": value} if name == "orpo" else {"tau": value}


def _assert_answer(traj: pt.Trajectory) -> None:
    """Finite log-policies and losses, every policy row on the simplex."""
    assert bool(torch.isfinite(traj.log_policies).all())
    if traj.losses is not None:
        assert bool(torch.isfinite(traj.losses).all())
    pi = traj.policies
    assert bool((pi >= 0).all()) and bool((traj.log_policies <= 1e-12).all())
    torch.testing.assert_close(pi.sum(-1), torch.ones_like(pi.sum(-1)), rtol=0, atol=1e-12)


def test_divergence_error_is_a_floating_point_error_and_a_value_error():
    with pytest.raises(DivergenceError) as info:
        ALGORITHMS["ipo"](P3, MU3, steps=50, lr=1e3)
    err = info.value
    assert isinstance(err, FloatingPointError) and isinstance(err, ValueError)
    assert (
        err.algorithm == "ipo" and err.argument == "lr" and err.rows == (0,) and 0 < err.step <= 50
    )


# ---------------------------------------------------------------------------------------------
# 1. an absurd step size raises, naming lr, at every entry of the registry


@pytest.mark.parametrize("name", NAMES)
def test_absurd_lr_raises_naming_lr(name):
    with pytest.raises(ValueError) as info:  # DivergenceError, or Nash-MD's lr * tau <= 1 check
        ALGORITHMS[name](P3, MU3, steps=50, **_strength(name, 0.1), lr=1e300)
    message = str(info.value)
    assert "lr = 1e+300" in message, message
    if isinstance(info.value, DivergenceError):
        assert info.value.argument == "lr" and info.value.step >= 1
        assert re.search(r"diverged at step \d+", message)
        assert "lr=None gives" in message or name == "nash_md"  # the hint: the default


@pytest.mark.parametrize(
    "name, lr",
    [
        ("ipo", 1e3),
        ("online_ipo", 1e300),
        ("gpo_exponential", 1e3),
        ("nash_md_pg", 1e3),
        ("rlhf", 1e3),
    ],
)
def test_the_probe_cases_no_longer_return_inf_or_nan(name, lr):
    # Before: ipo returned a vertex with infinite losses, online_ipo NaN losses.
    with pytest.raises(DivergenceError, match=re.escape(f"Change lr: lr = {lr:g}")):
        ALGORITHMS[name](P3, MU3, steps=200, **_strength(name, 0.1), lr=lr)


def test_adam_and_dataset_run_diverge_with_a_named_lr():
    with pytest.raises(DivergenceError, match=r"lr = 1e\+300.*Adam moves each logit"):
        ALGORITHMS["dpo"](P3, MU3, steps=20, tau=0.1, lr=1e300, optimizer="adam")
    d1 = [(0, 1), (1, 2), (0, 2)]
    with pytest.raises(
        DivergenceError, match=r"batch row 0 \(rows \[0, 1, 2\] of 3 diverged\).*lr = 1e\+300"
    ):
        dataset_run([1 / 3] * 3, d1, loss="ipo", tau=0.1, lr=1e300, steps=20, seeds=3)
    with pytest.raises(DivergenceError, match=r"diverged at step 1: .*lr = 1e\+300"):
        dataset_run(
            [1 / 3] * 3,
            d1,
            loss="dpo",
            tau=0.1,
            lr=1e300,
            steps=20,
            optimizer="gd",
            minibatch=False,
        )


def test_adam_takes_a_finite_step_on_a_huge_gradient():
    # g**2 overflows for |g| > ~1e154: the old second moment became inf and the step silently 0.
    opt = Adam(torch.tensor([0.1], dtype=F64))
    theta = torch.zeros(1, 3, dtype=F64)
    grad = torch.tensor([[1e200, -1e300, 1e-200]], dtype=F64)
    new, (m, root_v) = opt.update(theta, grad, opt.init(theta), 0)
    assert bool(torch.isfinite(root_v).all()) and bool(
        (root_v > 0).all()
    )  # no overflow, no underflow
    # First step of Adam: -lr * sign(g), except where |g| is far below eps = 1e-8.
    torch.testing.assert_close(
        new, torch.tensor([[-0.1, 0.1, 0.0]], dtype=F64), rtol=1e-12, atol=1e-180
    )


# ---------------------------------------------------------------------------------------------
# 2. an error names the argument the caller passed, not a default derived from it


@pytest.mark.parametrize("name", NAMES)
def test_tiny_tau_without_lr_names_tau(name):
    try:
        traj = ALGORITHMS[name](P3, MU3, steps=30, **_strength(name, 1e-300))
    except ValueError as err:
        message = str(err)
        assert "tau = 1e-300" in message, message
        assert "lr must" not in message and not message.startswith("lr"), message
        if isinstance(err, DivergenceError):
            assert err.argument == "tau"
    else:
        assert name not in SMOOTH_DPO_FAMILY | {"ipo", "online_ipo", "ipo_md"}, name
        _assert_answer(traj)


@pytest.mark.parametrize("name", sorted(SMOOTH_DPO_FAMILY))
def test_a_default_lr_outside_float64_names_the_strength_and_its_formula(name):
    with pytest.raises(
        ValueError, match=r"tau = 1e-300 gives a default lr = .*tau\*\*2.* = inf.*pass lr"
    ):
        ALGORITHMS[name](P3, MU3, steps=5, **_strength(name, 1e-300))
    with pytest.raises(
        ValueError, match=r"beta = 1e\+300 gives a default lr = .*beta\*\*2.* = 0.*underflows"
    ):
        ALGORITHMS[name](P3, MU3, steps=5, beta=1e300)
    # With an explicit lr a tiny strength runs (steps of lr * beta at most: the policy stays at mu) ...
    traj = ALGORITHMS[name](P3, MU3, steps=20, **_strength(name, 1e-300), lr=1e-3)
    _assert_answer(traj)
    if name != "beta_dpo":  # its batch beta is clamped at 1e-3 (the official code), so it moves
        torch.testing.assert_close(traj.final, MU3, rtol=0, atol=1e-12)
    # ... and a huge one where the loss's slope is bounded (logistic-like); the squared and
    # exponential losses of beta h overflow for any move of h that float64 can represent.
    if name in (
        "dpo",
        "online_dpo",
        "gpo_logistic",
        "gpo_savage",
        *("rdpo", "beta_dpo", "rso", "sdpo", "iterative_dpo"),
    ):
        traj = ALGORITHMS[name](P3, MU3, steps=20, **_strength(name, 1e300), lr=1e-315)
        _assert_answer(traj)
        torch.testing.assert_close(traj.final, MU3, rtol=0, atol=1e-12)
    else:
        with pytest.raises(
            DivergenceError, match=r"loss at that iterate is inf.*lr = 1e-315.*or tau = 1e\+300"
        ):
            ALGORITHMS[name](P3, MU3, steps=20, **_strength(name, 1e300), lr=1e-315)


def test_loss_overflowing_at_the_start_names_tau_even_with_an_explicit_lr():
    # IPO's target margin 1 / (2 tau) squared is inf: no lr can help, the message says tau.
    with pytest.raises(
        DivergenceError, match=r"step 0: the loss at the start .*Change tau: tau = 1e-300"
    ) as info:
        ALGORITHMS["ipo"](P3, MU3, steps=10, tau=1e-300, lr=1e-3)
    assert info.value.step == 0 and info.value.argument == "tau"


def test_nash_md_schedule_overflow_names_tau_and_lr_is_an_alias_of_eta():
    with pytest.raises(
        DivergenceError, match=r"tau = 4.94066e-324, and Nash-MD's first step eta_0 = 1 / tau"
    ):
        ALGORITHMS["nash_md"](P3, MU3, steps=5, tau=5e-324)
    a = ALGORITHMS["nash_md"](P3, MU3, steps=20, tau=0.1, lr=2.0)
    b = ALGORITHMS["nash_md"](P3, MU3, steps=20, tau=0.1, eta=2.0)
    assert torch.equal(a.log_policies, b.log_policies)
    with pytest.raises(ValueError, match="eta or lr"):
        ALGORITHMS["nash_md"](P3, MU3, steps=5, eta=1.0, lr=1.0)
    with pytest.raises(ValueError, match=r"eta \* tau must be <= 1.*eta = 20"):
        ALGORITHMS["nash_md"](P3, MU3, steps=5, tau=0.1, eta=20.0)


def test_beta_alias_is_named_as_given():
    with pytest.raises(DivergenceError, match=r"Change lr: lr = 1e\+300") as info:
        ALGORITHMS["rlhf"](P3, MU3, steps=5, beta=0.1, lr=1e300)
    assert "min(beta, 1)" in str(info.value)
    with pytest.raises(ValueError, match=r"online_dpo: beta = 1e-300 gives a default lr"):
        ALGORITHMS["online_dpo"](P3, MU3, steps=5, beta=1e-300)


# ---------------------------------------------------------------------------------------------
# 3. a vertex is an answer; batches name their diverging row; extreme but valid inputs run


@pytest.mark.parametrize("labels", ["soft", "hard"])
def test_dpo_to_a_vertex_is_an_answer_not_a_divergence(labels):
    traj = ALGORITHMS["dpo"](DETERMINISTIC, [1 / 3] * 3, steps=1000, beta=0.001, labels=labels)
    _assert_answer(traj)
    final = traj.log_policies[-1]
    assert float(final[2]) < -1000  # exp underflows to exactly 0 ...
    assert float(traj.policies[-1, 2]) == 0.0 and float(traj.policies[-1, 0]) == 1.0
    assert bool(
        (traj.log_policies[1:, 2] < traj.log_policies[:-1, 2]).all()
    )  # ... and keeps falling
    # The same vertex through Adam and through the widget's fused path.
    _assert_answer(
        ALGORITHMS["dpo"](
            DETERMINISTIC, [1 / 3] * 3, steps=300, beta=0.001, lr=100.0, optimizer="adam"
        )
    )
    for traj in redraw(
        DETERMINISTIC, [1 / 3] * 3, tau=0.01, steps=500, names=("dpo", "slic", "ipo")
    ).values():
        _assert_answer(traj)


def test_rlhf_closed_form_keeps_underflowing_probabilities_in_log_space():
    # The closed form mu exp(r / beta) / Z at a small beta: probabilities underflow to exactly 0,
    # their logarithms (formerly log(0) = -inf) are finite; a subnormal beta overflows r / beta.
    traj = ALGORITHMS["rlhf"](P3, MU3, steps=2, beta=1e-5, method="closed_form")
    _assert_answer(traj)
    r = pt.bt_fit(P3, MU3)
    expected = torch.log_softmax(MU3.log() + (r - r.max()) / 1e-5, 0)
    torch.testing.assert_close(traj.log_policies[-1], expected, rtol=1e-12, atol=0)
    assert float(traj.policies[-1].min()) == 0.0 and float(traj.log_policies[-1].min()) < -1e4
    with pytest.raises(
        DivergenceError, match=r"Change beta: beta = 4.94066e-324 overflows the closed form"
    ):
        ALGORITHMS["rlhf"](P3, MU3, steps=2, beta=5e-324, method="closed_form")


def test_a_batched_run_names_its_diverging_row():
    P = torch.stack([P3, pt.random_game(3, seed=1), P3])
    with pytest.raises(
        DivergenceError, match=r"ipo: the run diverged at step \d+ in batch row 2: .*lr = 1000"
    ) as info:
        ALGORITHMS["ipo"](P, MU3, steps=100, lr=[0.2, 0.2, 1e3])
    assert info.value.rows == (2,)
    # One row's strength overflows the loss at the start: that row, and tau, are named.
    with pytest.raises(
        DivergenceError, match=r"step 0 in batch row 1: the loss at the start .*tau = 1e-300"
    ) as info:
        ALGORITHMS["online_ipo"](P, MU3, steps=10, tau=[0.1, 1e-300, 0.5], lr=0.01)
    assert info.value.rows == (1,) and info.value.argument == "tau"
    # Several rows: the earliest is described, all are listed.
    with pytest.raises(DivergenceError, match=r"rows \[0, 2\] of 3 diverged"):
        ALGORITHMS["nash_md_pg"](P, MU3, steps=50, lr=[1e300, 0.1, 1e5])
    # The fused widget path names the row by its algorithm.
    with pytest.raises(
        DivergenceError, match=r"redraw: the run diverged at step 0 in the ipo row: .*tau = 1e-200"
    ):
        redraw(P3, MU3, tau=1e-200, steps=20, names=("ipo", "nash_md"))


def test_a_bad_matrix_in_a_batch_is_named():
    bad = P3.clone()
    bad[0, 1] = 0.9  # P + P.T != 1
    with pytest.raises(ValueError, match=r"matrix 1 of the batch"):
        ALGORITHMS["ipo"](torch.stack([P3, bad]), MU3, steps=5)


@pytest.mark.parametrize("name", NAMES)
def test_extreme_but_valid_inputs_stay_finite(name):
    alg = ALGORITHMS[name]
    # mu with an entry of 1e-300 (log mu = -690.8), steps = 0, a one-action game.
    tiny = torch.tensor([1e-300, 0.5, 0.5 - 1e-300], dtype=F64)
    _assert_answer(alg(P3, tiny, steps=200, **_strength(name, 0.1)))
    zero = alg(P3, MU3, steps=0, **_strength(name, 0.1))
    assert zero.log_policies.shape == (1, 3) and torch.allclose(zero.final, MU3, rtol=0, atol=1e-15)
    one = alg([[0.5]], [1.0], steps=10, **_strength(name, 0.1))
    _assert_answer(one)
    assert torch.equal(one.final, torch.ones(1, dtype=F64))
    # A huge strength: every representable default runs, and stays at mu (the optimum up to 1e-300).
    if name not in UNDERFLOW_AT_HUGE_BETA:
        traj = alg(P3, MU3, steps=100, **_strength(name, 1e300))
        _assert_answer(traj)
        # the hinge's subgradient steps hover (docstring); ORPO's lam weighs an odds ratio, not
        # a KL to mu: a huge lam does not hold the policy at mu
        if name not in ("slic", "gpo_hinge", "orpo"):
            torch.testing.assert_close(traj.final, MU3, rtol=0, atol=1e-12)
    # A tiny strength with an explicit small step (Nash-MD's own schedule is finite there).
    if name not in (
        "ipo",
        "online_ipo",
        "ipo_md",
    ):  # their loss (1 / (2 tau))**2 is inf: tested above
        _assert_answer(
            alg(
                P3,
                MU3,
                steps=100,
                **_strength(name, 1e-300),
                **({} if name == "nash_md" else {"lr": 1e-3}),
            )
        )


# ---------------------------------------------------------------------------------------------
# 4. property: random valid games, reference policies and strengths, default step sizes


@st.composite
def games(draw):
    """A batch of 3 valid games of one size K (1..5), each with its own mu and tau."""
    k = draw(st.integers(1, 5))
    # Upper-triangle entries: mostly interior, sometimes deterministic (0 or 1) or extreme.
    entry = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 1e-12, 1.0 - 1e-12]))
    Ps, mus, taus = [], [], []
    for _ in range(3):
        P = torch.full((k, k), 0.5, dtype=F64)
        for i in range(k):
            for j in range(i + 1, k):
                P[i, j] = draw(entry)
                P[j, i] = 1.0 - P[i, j]
        logits = [draw(st.floats(-30.0, 30.0)) for _ in range(k)]  # mu entries down to ~1e-26
        Ps.append(P)
        mus.append(torch.softmax(torch.tensor(logits, dtype=F64), 0))
        taus.append(10.0 ** draw(st.floats(-2.0, 2.0)))
    return torch.stack(Ps), torch.stack(mus), taus


def _bt_fits(P: torch.Tensor, mu: torch.Tensor) -> bool:
    """Whether RLHF's first stage, the Bradley-Terry fit, accepts the game (it refuses games with
    no finite maximiser, or one beyond float64: documented input errors, not divergences)."""
    try:
        pt.bt_fit(P, mu)
    except (ValueError, RuntimeError) as err:
        assert not isinstance(err, DivergenceError) and str(err).startswith("bt_fit"), str(err)
        return False
    return True


@settings(max_examples=25, deadline=None, derandomize=True)
@given(games())
def test_default_runs_are_finite_and_on_the_simplex(batch):
    P, mu, tau = batch
    k = P.shape[-1]
    for name in NAMES:
        # RLHF and RSO fit a BT reward model first: only games that have one
        fits = name in ("rlhf", "rso")
        rows = [i for i in range(3) if _bt_fits(P[i], mu[i])] if fits else [0, 1, 2]
        if not rows:
            continue
        traj = ALGORITHMS[name](
            P[rows], mu[rows], steps=50, **_strength(name, [tau[i] for i in rows])
        )
        _assert_answer(traj)
        assert traj.log_policies.shape == (len(rows), 51, k)
        assert math.isfinite(float(traj.log_policies.min()))
