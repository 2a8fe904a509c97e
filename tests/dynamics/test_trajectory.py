"""``Trajectory`` (shapes, rows, conversions, diagnostics) and the algorithms' input validation.

Diagnostics are checked against hand computations in numpy (exploitability, KL, total variation)
and the reference solvers called directly; batched rows against unbatched runs.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from prefopt_toy import (
    exploitability,
    ipo_md_fixed_point,
    ipo_optimum,
    random_game,
    regularized_nash,
    rlhf_optimum,
    rock_paper_scissors,
)
from prefopt_toy.dynamics import (
    ALGORITHMS,
    TARGETS,
    Trajectory,
    dpo,
    ipo,
    ipo_md,
    nash_md,
    nash_md_pg,
    online_dpo,
    online_ipo,
    rlhf,
    run_algorithm,
    slic,
)

F64 = torch.float64
K = 3
P1 = random_game(K, seed=3)
P2 = torch.stack([random_game(K, seed=4), random_game(K, seed=5)])
MU = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
MU2 = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], dtype=F64)
TAUS = [0.2, 0.7]


# ---------------------------------------------------------------------------------------------
# shapes, rows, conversions


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_shapes_unbatched_and_batched(name):
    steps = 7
    key = "lam" if name == "orpo" else "tau"  # ORPO's weight is not a KL strength
    single = ALGORITHMS[name](P1, MU, steps=steps, **{key: 0.3})
    assert isinstance(single, Trajectory) and not single.batched
    assert single.log_policies.shape == single.policies.shape == (steps + 1, K)
    assert single.final.shape == (K,) and single.steps == steps
    assert single.log_policies.dtype == F64
    if single.losses is not None:
        assert single.losses.shape == (steps,)
    torch.testing.assert_close(single.policies[0], MU, rtol=0, atol=1e-15)  # pi_0 = mu
    batch = ALGORITHMS[name](P2, MU2, steps=steps, **{key: TAUS})
    assert batch.batched and len(batch) == 2
    assert batch.log_policies.shape == (2, steps + 1, K) and batch.final.shape == (2, K)
    if batch.losses is not None:
        assert batch.losses.shape == (2, steps)
    with pytest.raises(TypeError):
        len(single)
    with pytest.raises(TypeError):
        single[0]


@pytest.mark.parametrize("name", ["online_ipo", "ipo_md", "dpo", "nash_md", "nash_md_pg", "rlhf"])
def test_row_of_a_batch_equals_the_unbatched_run(name):
    steps = 25
    fixed = {
        "dpo": "rlhf_optimum",
        "rlhf": "rlhf_optimum",
        "ipo_md": "ipo_md_fixed_point",
        "nash_md_pg": "ipo_md_fixed_point",
    }.get(name, "regularized_nash")
    batch = ALGORITHMS[name](P2, MU2, steps=steps, tau=TAUS)
    for i, row in enumerate(batch.rows()):
        alone = ALGORITHMS[name](P2[i], MU2[i], steps=steps, tau=TAUS[i])
        for r in (row, batch[i]):
            assert not r.batched and r.algorithm == alone.algorithm == batch.algorithm
            torch.testing.assert_close(r.log_policies, alone.log_policies, rtol=0, atol=1e-13)
            torch.testing.assert_close(r.P, alone.P, rtol=0, atol=0)
            torch.testing.assert_close(r.mu, alone.mu, rtol=0, atol=0)
            if alone.losses is not None:
                torch.testing.assert_close(r.losses, alone.losses, rtol=1e-13, atol=1e-13)
            # Per-row hyperparameters come back as this row's values.
            for key in ("tau", "beta", "mixture", "lr"):
                if key in alone.hyper and alone.hyper[key] is not None:
                    assert float(r.hyper[key]) == pytest.approx(float(alone.hyper[key]), rel=1e-15)
            # The diagnostics of a row are those of the unbatched run.
            torch.testing.assert_close(r.kl_to(fixed), alone.kl_to(fixed), rtol=1e-10, atol=1e-13)
            torch.testing.assert_close(
                r.exploitability(), alone.exploitability(), rtol=0, atol=1e-13
            )
    torch.testing.assert_close(batch.kl_to(fixed)[1], batch[1].kl_to(fixed), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        batch.exploitability()[1], batch[1].exploitability(), rtol=0, atol=1e-15
    )


def test_to_numpy():
    traj = online_ipo(P2, MU2, steps=5, tau=TAUS)
    out = traj.to_numpy()
    assert set(out) == {"policies", "losses"}
    assert isinstance(out["policies"], np.ndarray) and out["policies"].shape == (2, 6, K)
    np.testing.assert_array_equal(out["policies"], np.exp(traj.log_policies.numpy()))
    np.testing.assert_array_equal(out["losses"], traj.losses.numpy())
    no_loss = nash_md(P1, MU, tau=0.3, steps=5).to_numpy()
    assert set(no_loss) == {"policies"} and no_loss["policies"].shape == (6, K)


def test_to_dataframe():
    pd = pytest.importorskip("pandas")
    traj = online_ipo(P2, MU2, steps=4, tau=TAUS)
    frame = traj.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["run", "step", "pi_0", "pi_1", "pi_2", "loss"]
    assert len(frame) == 2 * 5
    assert (
        frame["run"].tolist() == [0] * 5 + [1] * 5 and frame["step"].tolist() == list(range(5)) * 2
    )
    pol = traj.policies.numpy()
    for b in range(2):
        rows = frame[frame["run"] == b]
        for y in range(K):
            np.testing.assert_array_equal(rows[f"pi_{y}"].to_numpy(), pol[b, :, y])
        np.testing.assert_array_equal(rows["loss"].to_numpy()[:-1], traj.losses[b].numpy())
        assert math.isnan(rows["loss"].to_numpy()[-1])  # no loss after the last iterate
    assert frame.attrs["algorithm"] == "online_ipo"
    single = nash_md(P1, MU, tau=0.3, steps=3).to_dataframe()
    assert len(single) == 4 and single["run"].tolist() == [0] * 4 and single["loss"].isna().all()


# ---------------------------------------------------------------------------------------------
# diagnostics against hand computations


def _hand_exploitability(P: np.ndarray, pis: np.ndarray) -> np.ndarray:
    out = np.empty(pis.shape[0])
    for t, pi in enumerate(pis):
        wins = [sum(P[y, z] * pi[z] for z in range(len(pi))) for y in range(len(pi))]
        out[t] = max(max(wins) - 0.5, 0.0)
    return out


def test_exploitability_matches_a_hand_computation():
    traj = online_ipo(P2, MU2, steps=30, tau=TAUS)
    ex = traj.exploitability()
    assert ex.shape == (2, 31)
    for b in range(2):
        hand = _hand_exploitability(P2[b].numpy(), traj.policies[b].numpy())
        np.testing.assert_allclose(ex[b].numpy(), hand, rtol=0, atol=1e-15)
        for t in (0, 7, 30):
            assert float(ex[b, t]) == pytest.approx(
                exploitability(P2[b], traj.policies[b, t]), abs=1e-15
            )
    single = nash_md(P1, MU, tau=0.3, steps=4)
    np.testing.assert_allclose(
        single.exploitability().numpy(),
        _hand_exploitability(P1.numpy(), single.policies.numpy()),
        rtol=0,
        atol=1e-15,
    )


def _hand_kl(p: np.ndarray, qs: np.ndarray) -> np.ndarray:
    return np.array(
        [sum(p[y] * math.log(p[y] / q[y]) for y in range(len(p)) if p[y] > 0) for q in qs]
    )


def test_kl_to_and_distance_to_match_hand_computations():
    traj = online_ipo(P2, MU2, steps=20, tau=TAUS)
    kl = traj.kl_to("regularized_nash")
    tv = traj.distance_to("regularized_nash")
    assert kl.shape == tv.shape == (2, 21)
    for b in range(2):
        star = regularized_nash(P2[b], MU2[b], TAUS[b]).numpy()
        pis = traj.policies[b].numpy()
        np.testing.assert_allclose(kl[b].numpy(), _hand_kl(star, pis), rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(
            tv[b].numpy(), 0.5 * np.abs(pis - star).sum(-1), rtol=1e-12, atol=1e-15
        )
    # An explicit target policy (with a zero: 0 log 0 = 0), as a list, broadcast over the batch.
    q = [0.0, 0.25, 0.75]
    kl_q = traj.kl_to(q)
    for b in range(2):
        np.testing.assert_allclose(
            kl_q[b].numpy(), _hand_kl(np.array(q), traj.policies[b].numpy()), rtol=1e-12
        )
    np.testing.assert_allclose(
        traj.distance_to(q)[0].numpy(),
        0.5 * np.abs(traj.policies[0].numpy() - np.array(q)).sum(-1),
        rtol=1e-12,
    )
    # KL to itself at step 0 is 0.
    assert float(traj.kl_to(MU2)[0, 0]) == 0.0 and float(traj.kl_to(MU2)[1, 0]) == 0.0


def test_targets_use_the_run_hyperparameters_and_overrides():
    nu = torch.tensor([0.2, 0.2, 0.6], dtype=F64)
    traj_ipo = ipo(P1, MU, steps=1, tau=0.4, nu=nu)
    torch.testing.assert_close(
        traj_ipo.target("ipo_optimum"), ipo_optimum(P1, MU, 0.4, nu), rtol=0, atol=1e-15
    )
    torch.testing.assert_close(
        traj_ipo.target("ipo_optimum", tau=0.9), ipo_optimum(P1, MU, 0.9, nu), rtol=0, atol=1e-15
    )
    traj_dpo = dpo(P1, MU, steps=1, beta=0.6, nu=nu)
    torch.testing.assert_close(
        traj_dpo.target("rlhf_optimum"), rlhf_optimum(P1, MU, 0.6, nu), rtol=0, atol=1e-14
    )
    traj_md = ipo_md(P2, MU2, steps=1, tau=TAUS, mixture=[0.1, 0.6])
    expected = torch.stack(
        [ipo_md_fixed_point(P2[i], MU2[i], TAUS[i], [0.1, 0.6][i]) for i in range(2)]
    )
    torch.testing.assert_close(traj_md.target("ipo_md_fixed_point"), expected, rtol=0, atol=1e-15)
    traj_const = nash_md(P1, MU, tau=0.5, steps=1, eta=1.2)  # mixture = eta * tau recorded
    torch.testing.assert_close(
        traj_const.target("ipo_md_fixed_point"),
        ipo_md_fixed_point(P1, MU, 0.5, 0.6),
        rtol=0,
        atol=1e-15,
    )
    assert set(TARGETS) >= {"regularized_nash", "rlhf_optimum", "ipo_optimum", "ipo_md_fixed_point"}


def test_rlhf_and_ipo_targets_default_to_pairs_from_mu():
    """One convention: the offline runs record nu = mu when given none, and a run that records no
    nu (online IPO, Nash-MD) gets the solvers' default, also nu = mu. On rock-paper-scissors with a
    skewed mu the uniform-pairs optimum is mu itself (every BT score equal), so the two differ."""
    P, mu = rock_paper_scissors(0.8), torch.tensor([0.6, 0.3, 0.1], dtype=F64)
    expected = rlhf_optimum(P, mu, 0.5, nu=mu)
    uniform = torch.full((3,), 1 / 3, dtype=F64)
    assert float((expected - rlhf_optimum(P, mu, 0.5, nu=uniform)).abs().max()) > 0.2
    for traj in (dpo(P, mu, steps=1, beta=0.5), rlhf(P, mu, steps=1, beta=0.5)):
        torch.testing.assert_close(traj.hyper["nu"], mu, rtol=0, atol=1e-15)
        torch.testing.assert_close(traj.target("rlhf_optimum"), expected, rtol=0, atol=1e-14)
    for traj in (online_ipo(P, mu, steps=1, tau=0.5), nash_md(P, mu, steps=1, tau=0.5)):
        assert "nu" not in traj.hyper
        torch.testing.assert_close(traj.target("rlhf_optimum"), expected, rtol=0, atol=1e-14)
        torch.testing.assert_close(
            traj.target("ipo_optimum"), ipo_optimum(P, mu, 0.5, nu=mu), rtol=0, atol=1e-14
        )


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: online_ipo(P1, MU, steps=1).target("nash"), "name"),
        (lambda: online_ipo(P1, MU, steps=1).kl_to("regularised_nash"), "name"),
        (lambda: online_ipo(P1, MU, steps=1).distance_to("bt"), "name"),
        (lambda: dpo(P1, MU, steps=1, beta=0.5).target("regularized_nash"), "tau"),
        (lambda: dpo(P1, MU, steps=1, beta=0.5).kl_to("ipo_optimum"), "tau"),
        (lambda: nash_md(P1, MU, tau=0.5, steps=1).target("ipo_md_fixed_point"), "mixture"),
        (lambda: online_ipo(P1, MU, steps=1).target("ipo_md_fixed_point"), "mixture"),
    ],
)
def test_bad_target_raises_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


# ---------------------------------------------------------------------------------------------
# bad inputs to the algorithms: ValueError naming the argument

_P3 = torch.stack([P1, P1, P1])
_MU3 = MU.expand(3, K)

BAD_INPUTS = [
    # KL strength <= 0
    pytest.param(lambda: ipo(P1, MU, steps=2, tau=0.0), "tau", id="ipo-tau0"),
    pytest.param(lambda: ipo(P1, MU, steps=2, tau=-1.0), "tau", id="ipo-tau-neg"),
    pytest.param(lambda: nash_md(P1, MU, tau=0.0, steps=2), "tau", id="nash_md-tau0"),
    pytest.param(lambda: nash_md_pg(P1, MU, steps=2, tau=-0.1), "tau", id="nash_md_pg-tau-neg"),
    pytest.param(lambda: rlhf(P1, MU, steps=2, beta=0.0), "beta", id="rlhf-beta0"),
    pytest.param(lambda: dpo(P1, MU, steps=2, beta=-1.0), "beta", id="dpo-beta-neg"),
    pytest.param(lambda: online_ipo(P1, MU, steps=2, tau=-2.0), "tau", id="online_ipo-tau-2"),
    pytest.param(lambda: online_ipo(P1, MU, steps=2, tau=0.0), "tau", id="online_ipo-tau0"),
    pytest.param(
        lambda: online_ipo(P1, MU, steps=2, tau=-0.5),
        "tau",
        id="online_ipo-tau-half",
    ),
    pytest.param(
        lambda: online_ipo(P1, MU, steps=2, tau=-1.0),
        "tau",
        id="online_ipo-tau-1",
    ),
    pytest.param(
        lambda: online_ipo(P1, MU, steps=2, tau=float("nan")),
        "tau",
        id="online_ipo-tau-nan",
    ),
    pytest.param(lambda: ipo_md(P1, MU, steps=2, tau=0.0), "tau", id="ipo_md-tau0"),
    pytest.param(lambda: dpo(P1, MU, steps=2, beta=0.0), "beta", id="dpo-beta0"),
    pytest.param(
        lambda: online_dpo(P1, MU, steps=2, beta=-0.1),
        "beta",
        id="online_dpo-beta-neg",
    ),
    pytest.param(lambda: slic(P1, MU, steps=2, beta=0.0), "beta", id="slic-beta0"),
    pytest.param(lambda: dpo(P1, MU, steps=2), "beta", id="dpo-no-beta"),
    # eta * tau > 1, eta <= 0
    pytest.param(lambda: nash_md(P1, MU, tau=0.5, steps=2, eta=3.0), "eta", id="nash_md-eta-tau"),
    pytest.param(
        lambda: nash_md(P2, MU2, tau=[0.1, 0.5], steps=2, eta=[1.0, 3.0]),
        "eta",
        id="nash_md-eta-row",
    ),
    pytest.param(lambda: nash_md(P1, MU, tau=0.5, steps=2, eta=0.0), "eta", id="nash_md-eta0"),
    # mixture outside [0, 1]
    pytest.param(lambda: ipo_md(P1, MU, steps=2, mixture=1.5), "mixture", id="ipo_md-mix-big"),
    pytest.param(lambda: ipo_md(P1, MU, steps=2, mixture=-0.1), "mixture", id="ipo_md-mix-neg"),
    pytest.param(
        lambda: ipo_md(P2, MU2, steps=2, mixture=[0.2, 1.01]), "mixture", id="ipo_md-mix-row"
    ),
    pytest.param(lambda: ipo_md(P1, MU, steps=0, mixture=2.0), "mixture", id="ipo_md-mix-steps0"),
    pytest.param(lambda: nash_md_pg(P1, MU, steps=2, mixture=1.5), "mixture", id="nash_md_pg-mix"),
    # lr <= 0
    pytest.param(lambda: ipo(P1, MU, steps=2, lr=0.0), "lr", id="ipo-lr0"),
    pytest.param(
        lambda: online_ipo(P2, MU2, steps=2, lr=[0.1, -0.1]), "lr", id="online_ipo-lr-row"
    ),
    pytest.param(lambda: nash_md_pg(P1, MU, steps=2, lr=-1.0), "lr", id="nash_md_pg-lr"),
    pytest.param(lambda: rlhf(P1, MU, steps=2, beta=1.0, lr=0.0), "lr", id="rlhf-lr0"),
    # labels
    pytest.param(lambda: ipo(P1, MU, steps=2, labels="sof"), "labels", id="labels-typo"),
    pytest.param(lambda: online_ipo(P1, MU, steps=2, labels=0), "labels", id="labels-0"),
    pytest.param(lambda: online_ipo(P1, MU, steps=2, labels=True), "labels", id="labels-bool"),
    pytest.param(lambda: dpo(P1, MU, steps=2, beta=0.5, labels=2.5), "labels", id="labels-float"),
    pytest.param(
        lambda: online_ipo(P1, MU, steps=2, labels=5), "seed", id="labels-sampled-no-seed"
    ),
    # mismatched batch sizes
    pytest.param(lambda: online_ipo(P2, _MU3, steps=2), "mu", id="batch-P-mu"),
    pytest.param(lambda: online_ipo(P2, MU2, steps=2, tau=[0.1, 0.2, 0.3]), "tau", id="batch-tau"),
    pytest.param(lambda: nash_md(_P3, MU2, tau=0.3, steps=2), "mu", id="batch-nash_md"),
    pytest.param(
        lambda: ipo_md(P2, MU2, steps=2, mixture=[0.1, 0.2, 0.3]), "mixture", id="batch-mixture"
    ),
    pytest.param(lambda: ipo(P2, MU2, steps=2, nu=_MU3), "nu", id="batch-ipo-nu"),
    pytest.param(lambda: dpo(P2, MU2, steps=2, beta=0.5, nu=_MU3), "nu", id="batch-dpo-nu"),
    pytest.param(lambda: rlhf(P2, MU2, steps=2, beta=0.5, nu=_MU3), "nu", id="batch-rlhf-nu"),
    # malformed games, policies and options
    pytest.param(
        lambda: online_ipo([[0.5, 0.7], [0.7, 0.5]], [0.5, 0.5], steps=2),
        "P",
        id="P-not-complementary",
    ),
    pytest.param(lambda: online_ipo(P1, [0.5, 0.5, 0.0], steps=2), "mu", id="mu-zero"),
    pytest.param(lambda: ipo(P1, MU, steps=2, nu=[1.2, -0.2, 0.0]), "nu", id="nu-negative"),
    pytest.param(lambda: ipo(P1, MU, steps=-1), "steps", id="steps-negative"),
    pytest.param(lambda: ipo(P1, MU, steps=2, optimizer="sgd"), "optimizer", id="optimizer"),
    pytest.param(
        lambda: rlhf(P1, MU, steps=2, beta=1.0, method="exact"), "method", id="rlhf-method"
    ),
    pytest.param(
        lambda: dpo(P1, MU, steps=2, beta=0.1, label_smoothing=0.5),
        "label_smoothing",
        id="label-smoothing",
    ),
    pytest.param(lambda: run_algorithm("dpo2", P1, MU, steps=2), "name", id="unknown-algorithm"),
]


@pytest.mark.parametrize("call, name", BAD_INPUTS)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError) as info:
        call()
    # The message names the argument (as a word, so "tau" does not match inside another name).
    assert re.search(rf"\b{name}\b", str(info.value)), str(info.value)
