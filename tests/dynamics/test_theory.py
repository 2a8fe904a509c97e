"""Where the exact dynamics land, checked against the theory (issue #3, numbered checks).

Every target is computed independently of the trajectory: the certified solvers
``regularized_nash`` / ``ipo_md_fixed_point`` (damped Newton on the fixed-point equation), the
closed forms ``ipo_optimum`` / ``rlhf_optimum`` (with ``bt_fit``), autograd of
``population_loss``, and gradients derived by hand in the comments below. The long runs are batched:
one call per algorithm, shared through module-scoped fixtures.

Measured (torch 2.13, float64; see the report of issue #3):

- online IPO, default lr, tau = 0.1: residual < 1e-8 after up to ~4.3e3 steps at K = 3, ~1.5e4 at
  K = 5 and ~2.9e4 at K = 10 (8 random games each); at tau in [0.2, 1] under 3e3 steps for K <= 10;
- Nash-MD (decaying schedule), T = 20000, tau = 0.1: max |pi_T - pi*| = 2e-5 (the O(1/T) rate);
- RLHF and Nash-MD-PG default to the natural-gradient (mirror) form of their exact policy
  gradient; the vanilla softmax gradient is pi-weighted and needs ~1e5 steps where the fixed point
  has probabilities ~1e-3 (Mei et al. 2020, arXiv:2005.06392), so it is tested at larger tau.
"""

from __future__ import annotations

import functools

import pytest
import torch

from prefopt_toy import (
    bradley_terry,
    bt_fit,
    dpo_loss,
    geometric_mixture,
    ipo_loss,
    ipo_md_fixed_point,
    ipo_optimum,
    is_transitive,
    nash_equilibrium,
    population_loss,
    random_game,
    regularized_nash,
    rlhf_optimum,
    rock_paper_scissors,
    three_voter_types,
)
from prefopt_toy.dynamics import (
    ALGORITHMS,
    FAMILY,
    FIXED_POINTS,
    ipo_md,
    nash_md,
    nash_md_pg,
    online_dpo,
    online_ipo,
    rlhf,
)
from prefopt_toy.dynamics.mirror_descent import regularized_advantage

F64 = torch.float64


def _simplex_rows(seed: int, b: int, k: int, floor: float = 0.1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = floor + torch.rand(b, k, generator=gen, dtype=F64)
    return w / w.sum(-1, keepdim=True)


def _non_transitive_games(k: int, n: int, base: int) -> torch.Tensor:
    games, s = [], 0
    while len(games) < n:
        P = random_game(k, seed=base + s)
        s += 1
        if not is_transitive(P):
            games.append(P)
    return torch.stack(games)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _kl_rows(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q_t) by hand: p (B, K) full support, log_q (B, T, K) -> (B, T)."""
    return (p[:, None, :] * (p.log()[:, None, :] - log_q)).sum(-1)


# ---------------------------------------------------------------------------------------------
# K = 3 games for the long default-hyperparameter runs: random (cyclic or not), rock-paper-scissors,
# the three-voter-types Condorcet cycle and a Bradley-Terry game, each with its own random mu.

GAMES3 = torch.cat(
    [
        _non_transitive_games(3, 3, base=0),
        torch.stack(
            [
                random_game(3, seed=1),
                rock_paper_scissors(0.8),
                three_voter_types(0.1),
                bradley_terry([1.0, 0.0, -0.5]),
            ]
        ),
    ]
)
N3 = GAMES3.shape[0]
MU3 = _simplex_rows(0, N3, 3)
NU3 = _simplex_rows(1, N3, 3)  # a data policy != mu for the offline algorithms
TAU = 0.1
LONG = 20_000


@pytest.fixture(scope="module")
def default_runs():
    """``ALGORITHMS[name](P, mu, steps=20000, tau=0.1)`` for every name with a fixed point.

    DPO and IPO run on the games twice in one call: rows 0..N3-1 with ``nu = mu`` (the default),
    rows N3.. with ``nu = NU3`` (check 5).
    """
    runs = {}
    for name, fixed_point in FIXED_POINTS.items():
        if fixed_point is None or name in FAMILY:  # the family's: tests/dynamics/test_family.py
            continue
        if name in ("dpo", "ipo"):
            runs[name] = ALGORITHMS[name](
                torch.cat([GAMES3, GAMES3]),
                torch.cat([MU3, MU3]),
                steps=LONG,
                tau=TAU,
                nu=torch.cat([MU3, NU3]),
            )
        else:
            runs[name] = ALGORITHMS[name](GAMES3, MU3, steps=LONG, tau=TAU)
    return runs


def _default_target(name: str, i: int) -> torch.Tensor:
    P, mu = GAMES3[i], MU3[i]
    if name in ("dpo", "rlhf"):
        return rlhf_optimum(P, mu, TAU, mu)
    if name == "ipo":
        return ipo_optimum(P, mu, TAU)
    if name in ("online_ipo", "nash_md"):
        return regularized_nash(P, mu, TAU)
    if name == "ipo_md":  # the default mixture 0.125 (Calandriello et al. Sec. 7)
        return ipo_md_fixed_point(P, mu, TAU, 0.125)
    if name == "nash_md_pg":
        return ipo_md_fixed_point(P, mu, TAU, 0.0)  # the default mixture 0: self-play
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    [n for n, fp in FIXED_POINTS.items() if fp is not None and n not in FAMILY],
)
def test_default_hyperparameters_land_on_the_fixed_point(default_runs, name):
    traj = default_runs[name]
    assert traj.policies.shape[-2] == LONG + 1
    targets = torch.stack([_default_target(name, i) for i in range(N3)])
    final = traj.final[:N3]
    if name == "nash_md":
        # O(1/T): check the Theorem 1 bound at every T, and that the last iterate is close.
        kl = _kl_rows(targets, traj.log_policies[:N3])
        t = torch.arange(LONG + 1, dtype=F64)
        assert bool((kl <= 8.0 / (TAU**2 * (t + 1))).all())
        assert _max_abs(final, targets) < 1e-4  # measured 2.0e-5
        return
    assert _max_abs(final, targets) < 1e-6


# ---------------------------------------------------------------------------------------------
# 1. Online IPO converges to the regularised Nash equilibrium (Calandriello et al. Prop. 4.1)


def test_online_ipo_converges_to_regularized_nash_k3(default_runs):
    # K = 3 at tau = 0.1, default lr, 20000 steps, on the non-transitive games of GAMES3
    # (measured: residual < 1e-8 after <= 871 steps here, final < 4e-15; other K = 3 random games
    # needed up to ~4.3e3 steps, and the Bradley-Terry row of GAMES3 8.9e3).
    rows = [i for i in range(N3) if not is_transitive(GAMES3[i])]
    assert len(rows) == 5
    final = default_runs["online_ipo"].final
    for i in rows:
        assert _max_abs(final[i], regularized_nash(GAMES3[i], MU3[i], TAU)) <= 1e-8


@pytest.mark.parametrize(
    "k, taus, steps", [(5, [0.2, 0.5, 1.0], 4000), (10, [0.25, 0.5, 1.0], 5000)]
)
def test_online_ipo_converges_to_regularized_nash(k, taus, steps):
    # One batched call per K: 6 non-transitive games, taus per row, default lr. Steps measured for a
    # residual of 1e-8: <= 803 (K = 5), <= 2863 (K = 10). At tau = 0.1 the same needs ~1.5e4 (K = 5)
    # and ~2.9e4 (K = 10) steps: the default lr scales like tau / (1 + tau).
    P = _non_transitive_games(k, 6, base=100 * k)
    mu = _simplex_rows(k, 6, k)
    tau = taus * 2
    traj = online_ipo(P, mu, steps=steps, tau=tau)
    for i in range(6):
        assert _max_abs(traj.final[i], regularized_nash(P[i], mu[i], tau[i])) <= 1e-8


# ---------------------------------------------------------------------------------------------
# 2. IPO-MD converges to its fixed point; its mixture there is the regularised Nash at tau/(1-m)


def test_ipo_md_default_converges(default_runs):
    final = default_runs["ipo_md"].final
    for i in range(N3):
        target = ipo_md_fixed_point(GAMES3[i], MU3[i], TAU, 0.125)
        assert _max_abs(final[i], target) < 1e-10
        # Calandriello et al. Prop. 5.2, from the dynamics' own final iterate.
        mixture = geometric_mixture(final[i], MU3[i], 0.125)
        assert _max_abs(mixture, regularized_nash(GAMES3[i], MU3[i], TAU / (1 - 0.125))) < 1e-10


def test_ipo_md_mixtures_converge_and_satisfy_prop_5_2():
    mixtures = [0.0, 0.25, 0.5, 0.75, 1.0]
    P = _non_transitive_games(4, len(mixtures), base=7)
    mu = _simplex_rows(3, len(mixtures), 4)
    tau = 0.3
    traj = ipo_md(P, mu, steps=3000, tau=tau, mixture=mixtures)  # measured: 1e-10 by step 1043
    for i, m in enumerate(mixtures):
        assert _max_abs(traj.final[i], ipo_md_fixed_point(P[i], mu[i], tau, m)) < 1e-10
        if m < 1:
            mix = geometric_mixture(traj.final[i], mu[i], m)
            assert _max_abs(mix, regularized_nash(P[i], mu[i], tau / (1 - m))) < 1e-10
    # The ends: mixture 0 is online IPO (regularised Nash), mixture 1 offline IPO with nu = mu.
    assert _max_abs(traj.final[0], regularized_nash(P[0], mu[0], tau)) < 1e-10
    assert _max_abs(traj.final[-1], ipo_optimum(P[-1], mu[-1], tau)) < 1e-10


# ---------------------------------------------------------------------------------------------
# 3. Nash-MD with the decaying schedule: Theorem 1 bound, and the first step is the IPO optimum


@pytest.mark.parametrize("k", [3, 5])
def test_nash_md_schedule_obeys_theorem_1_on_random_games(k):
    n, steps = 100, 1000
    gen = torch.Generator().manual_seed(30 + k)
    P = torch.stack([random_game(k, seed=gen) for _ in range(n)])
    mu = _simplex_rows(40 + k, n, k, floor=0.02)
    tau = 0.05 + 1.95 * torch.rand(n, generator=gen, dtype=F64)  # in [0.05, 2]
    traj = nash_md(P, mu, tau=tau, steps=steps)
    assert traj.log_policies.shape == (n, steps + 1, k)
    target = torch.stack([regularized_nash(P[i], mu[i], float(tau[i])) for i in range(n)])
    kl = _kl_rows(target, traj.log_policies)  # (n, steps + 1)
    t = torch.arange(steps + 1, dtype=F64)
    bound = 8.0 / (tau[:, None] ** 2 * (t + 1))  # Munos et al. Theorem 1, eta_t = 2 / (tau (t + 2))
    assert bool((kl <= bound).all()), f"worst kl / bound = {float((kl / bound).max()):.3g}"
    # eta_0 tau = 1: the first iterate is the offline IPO optimum with nu = mu, whatever pi_0.
    first = torch.stack([ipo_optimum(P[i], mu[i], float(tau[i])) for i in range(n)])
    torch.testing.assert_close(traj.policies[:, 1], first, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# 4. Nash-MD with a constant step converges to the IPO-MD fixed point with mixture eta * tau


def test_nash_md_constant_step_converges_to_ipo_md_not_to_regularized_nash():
    P = torch.stack([rock_paper_scissors(1.0), rock_paper_scissors(1.0), three_voter_types(0.2)])
    mu = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.2, 0.3]], dtype=F64)
    tau = [0.1, 0.5, 0.2]
    eta = [2.5, 1.0, 2.0]  # eta * tau = 0.25, 0.5, 0.4
    traj = nash_md(P, mu, tau=tau, steps=1000, eta=eta)  # measured: 1e-10 by step 218
    for i in range(3):
        m = eta[i] * tau[i]
        assert _max_abs(traj.final[i], ipo_md_fixed_point(P[i], mu[i], tau[i], m)) < 1e-10
        # ...and not the regularised Nash (a cyclic game with non-uniform mu).
        assert _max_abs(traj.final[i], regularized_nash(P[i], mu[i], tau[i])) > 1e-3


def _nash_md_step_by_hand(P, mu, pi, tau, eta):
    """One Nash-MD step (Munos et al. Eq. (8)-(9)), written from the argmax form:
    pi_next propto mix * exp(eta * P mix), mix propto pi^(1 - eta tau) mu^(eta tau)."""
    m = eta * tau
    mix = pi ** (1 - m) * mu**m
    mix = mix / mix.sum()
    nxt = mix * torch.exp(eta * (P @ mix))
    return nxt / nxt.sum()


def test_nash_md_steps_follow_the_mirror_step_by_hand():
    P, mu = GAMES3[0], MU3[0]
    traj = nash_md(P, mu, tau=0.3, steps=5)
    for t in range(5):
        eta = 2.0 / (0.3 * (t + 2))
        expected = _nash_md_step_by_hand(P, mu, traj.policies[t], 0.3, eta)
        torch.testing.assert_close(traj.policies[t + 1], expected, rtol=0, atol=1e-14)
    traj = nash_md(P, mu, tau=0.3, steps=5, eta=1.5)
    for t in range(5):
        expected = _nash_md_step_by_hand(P, mu, traj.policies[t], 0.3, 1.5)
        torch.testing.assert_close(traj.policies[t + 1], expected, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# 5. Offline DPO -> rlhf_optimum(P, mu, beta, nu); offline IPO -> ipo_optimum(P, mu, tau, nu)


@pytest.mark.parametrize("name", ["dpo", "ipo"])
def test_offline_algorithms_converge_to_their_closed_forms(default_runs, name):
    final = default_runs[name].final  # (2 * N3, 3): rows N3.. use nu = NU3 != mu
    nus = torch.cat([MU3, NU3])
    for i in range(2 * N3):
        P, mu, nu = GAMES3[i % N3], MU3[i % N3], nus[i]
        target = rlhf_optimum(P, mu, TAU, nu) if name == "dpo" else ipo_optimum(P, mu, TAU, nu)
        assert _max_abs(final[i], target) < 1e-10
    # nu matters: the two halves land on different policies.
    assert _max_abs(final[:N3], final[N3:]) > 1e-3


# ---------------------------------------------------------------------------------------------
# 6. Online DPO: not the (regularised) Nash on cyclic games; RLHF optimum on BT games


def test_online_dpo_stationary_point():
    P = torch.stack(
        [
            three_voter_types(0.1),
            rock_paper_scissors(0.6),
            bradley_terry([1.0, 0.0, -0.5]),
            bradley_terry([0.3, -0.2, 0.5]),
        ]
    )
    mu = torch.tensor(
        [[1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]], dtype=F64
    )
    beta = 0.5
    traj = online_dpo(P, mu, steps=4000, beta=beta)
    pi = traj.final
    for i in range(4):
        # Stationarity, independently: autograd of population_loss with pairs from pi (held fixed).
        theta = pi[i].log().clone().requires_grad_(True)
        value = population_loss(
            theta, P[i], mu[i], functools.partial(dpo_loss, beta=beta), nu=pi[i].clone()
        )
        (grad,) = torch.autograd.grad(value, theta)
        assert float(grad.abs().max()) < 1e-12
        # Self-consistency (IPO Prop. 4 with nu = pi): pi is the RLHF optimum for the BT reward
        # fitted on pairs from pi x pi.
        assert _max_abs(pi[i], rlhf_optimum(P[i], mu[i], beta, nu=pi[i])) < 1e-10
    for i in (0, 1):  # cyclic: not the regularised Nash, not the Nash equilibrium
        assert _max_abs(pi[i], regularized_nash(P[i], mu[i], beta)) > 1e-2
        assert _max_abs(pi[i], nash_equilibrium(P[i])) > 1e-2
    for i in (2, 3):  # Bradley-Terry: the RLHF optimum (Calandriello et al. Thm F.7), for any nu
        assert _max_abs(pi[i], rlhf_optimum(P[i], mu[i], beta)) < 1e-10


# ---------------------------------------------------------------------------------------------
# 7. The expected online-IPO gradient is (4 / tau) times the Nash-MD-PG (mixture 0) gradient
#
# Derivation (population_loss normalisation, L = sum_{y,y'} 2 s_y s_y' L_yy' l(h_yy'), s held
# fixed, labels L = P, l(h) = (h - c)^2 with c = 1 / (2 tau), h_yy' = r_y - r_y', r = log(pi/mu)):
#   dL/dtheta_k = sum_{y'} 4 s_k s_y' [P_ky' (h_ky' - c) + P_y'k (h_ky' + c)]     (h_y'k = -h_ky')
#               = 4 s_k sum_{y'} s_y' [h_ky' - c (2 P_ky' - 1)]                     (P + P^T = 1)
#               = -(4 / tau) s_k [(P s)_k - 1/2 - tau (r_k - E_s r)].
# With s = pi (online), E_pi[P pi] = 1/2, so with A = P pi - tau r the bracket is A_k - E_pi A and
#   grad L_online = -(4 / tau) * pi * (A - E_pi A) = -(4 / tau) * (Nash-MD-PG ascent direction).
# For a mixture s = pi^(1-m) mu^m the same line gives Calandriello et al. Prop. 5.1 (off-policy).


@pytest.mark.parametrize("k", [2, 3, 4, 6])
@pytest.mark.parametrize("tau", [0.05, 0.3, 2.0])
def test_online_ipo_gradient_is_a_positive_multiple_of_nash_md_pg(k, tau):
    gen = torch.Generator().manual_seed(k * 17 + int(tau * 100))
    P = random_game(k, seed=gen)
    mu = _simplex_rows(k + 200, 1, k)[0]
    theta = 2.0 * torch.randn(k, generator=gen, dtype=F64)
    pi = torch.softmax(theta, 0)
    th = theta.clone().requires_grad_(True)
    value = population_loss(th, P, mu, functools.partial(ipo_loss, tau=tau), nu=lambda p: p)
    (g_online,) = torch.autograd.grad(value, th)
    A = P @ pi - tau * (pi / mu).log()
    ascent = pi * (A - (pi * A).sum())  # Nash-MD-PG exact expected direction, my own formula
    torch.testing.assert_close(g_online, -(4.0 / tau) * ascent, rtol=1e-11, atol=1e-13)
    # The library's regularized_advantage returns the descent direction -ascent.
    _, descent = regularized_advantage(
        pi.log()[None], mu.log()[None], (P @ pi)[None], torch.tensor([[tau]], dtype=F64)
    )
    torch.testing.assert_close(descent[0], -ascent, rtol=1e-12, atol=1e-15)
    # The ratio is the same positive constant in every coordinate (where the direction is not tiny).
    big = ascent.abs() > 1e-8 * ascent.abs().max()
    ratio = g_online[big] / descent[0][big]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 4.0 / tau), rtol=1e-9, atol=0)


@pytest.mark.parametrize("m", [0.25, 0.7])
def test_ipo_md_gradient_is_prop_5_1(m):
    gen = torch.Generator().manual_seed(int(100 * m))
    k, tau = 4, 0.2
    P = random_game(k, seed=gen)
    mu = _simplex_rows(5, 1, k)[0]
    theta = torch.randn(k, generator=gen, dtype=F64)
    pi = torch.softmax(theta, 0)
    th = theta.clone().requires_grad_(True)
    value = population_loss(
        th, P, mu, functools.partial(ipo_loss, tau=tau), nu=lambda p: geometric_mixture(p, mu, m)
    )
    (grad,) = torch.autograd.grad(value, th)
    s = pi ** (1 - m) * mu**m
    s = s / s.sum()
    r = (pi / mu).log()
    expected = -(4.0 / tau) * s * (P @ s - 0.5 - tau * (r - (s * r).sum()))
    torch.testing.assert_close(grad, expected, rtol=1e-11, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# 9. Every registry algorithm stays on the simplex; fixed points are fixed points of the update


K9 = 4
P9 = torch.stack([random_game(K9, seed=90), random_game(K9, seed=91)])
MU9 = torch.tensor([[0.001, 0.2, 0.3, 0.499], [0.25, 0.25, 0.25, 0.25]], dtype=F64)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_iterates_stay_on_the_simplex(name):
    traj = ALGORITHMS[name](P9, MU9, steps=300, **_strength(name, TAU))
    pi = traj.policies
    assert pi.shape == (2, 301, K9)
    assert bool(torch.isfinite(traj.log_policies).all())
    assert bool((pi >= 0).all())
    torch.testing.assert_close(pi.sum(-1), torch.ones(2, 301, dtype=F64), rtol=0, atol=1e-12)
    if traj.losses is not None:
        assert bool(torch.isfinite(traj.losses).all())


def _strength(name: str, value: float) -> dict:
    """Every entry's strength keyword: ``tau`` (read as beta by the DPO family), ORPO's ``lam``."""
    return {"lam": value} if name == "orpo" else {"tau": value}


def _game_with_interior_nash(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A preference matrix with P @ x = 1/2 exactly in exact arithmetic: x is a Nash equilibrium.

    P = 1/2 + A with A skew and A x = 0: A = Q^T C Q, C a random skew matrix and Q = I - x 1^T
    (Q x = x - x (1^T x) = 0).
    """
    k = x.numel()
    gen = torch.Generator().manual_seed(seed)
    C = torch.randn(k, k, generator=gen, dtype=F64)
    C = C - C.T
    Q = torch.eye(k, dtype=F64) - x[:, None] * torch.ones(k, dtype=F64)[None, :]
    A = Q.T @ C @ Q
    A = 0.5 * (A - A.T)  # skew to the last bit
    A = A * (0.45 / A.abs().max())
    return 0.5 + A


# Not for the reference-free methods (SimPO, ORPO: mu is only their start, not their anchor),
# beta-DPO (its filter standardises the margins by their spread, so round-off margins of 1e-17
# weigh pairs as unevenly as real ones would) nor DPOP (mu sits on its penalty's kink, where the
# round-off of log pi - log mu, 1e-17, decides whether the one-sided slope lam applies).
@pytest.mark.parametrize("name", sorted(set(ALGORITHMS) - {"simpo", "orpo", "beta_dpo", "dpop"}))
def test_interior_nash_reference_is_a_fixed_point_of_every_update(name):
    # With mu = x, a full-support Nash equilibrium (P x = 1/2): every margin starts at 0 and, for
    # any per-pair loss with soft labels, dL/dtheta_k = 2 l'(0) x_k (2 (P x)_k - 1) = 0; Nash-MD's
    # mixture is mu and mu exp(eta P mu) propto mu; the BT fit under nu = x is r = 0 (its stationarity
    # condition is (P x)_y = 1/2). So every algorithm starts *at* its fixed point: no registry
    # algorithm takes a start argument, and this is the way to start one there.
    x = torch.tensor([0.15, 0.4, 0.25, 0.2], dtype=F64)
    P = _game_with_interior_nash(x, seed=9)
    assert _max_abs(P @ x, torch.full((4,), 0.5, dtype=F64)) < 1e-15
    traj = ALGORITHMS[name](P, x, steps=3, tau=TAU)
    assert _max_abs(traj.policies, x.expand(traj.steps + 1, 4)) < 1e-12
    fixed_point = FIXED_POINTS[name]
    if fixed_point is not None:
        assert _max_abs(traj.target(fixed_point), x) < 1e-12


def _one_step_from(name: str, P, mu, target) -> torch.Tensor:
    """The update of algorithm ``name`` (default lr, tau = 0.1) applied once to ``target``, by hand:
    gradients from autograd of population_loss or the policy-gradient formula pi (A - E_pi A)."""
    lr = float(ALGORITHMS[name](P, mu, steps=0, tau=TAU).hyper["lr"])
    log_t = target.log()
    if name in ("dpo", "ipo", "online_ipo", "ipo_md"):
        loss = (
            functools.partial(dpo_loss, beta=TAU)
            if name == "dpo"
            else functools.partial(ipo_loss, tau=TAU)
        )
        nu = {
            "dpo": None,
            "ipo": None,
            "online_ipo": lambda p: p,
            "ipo_md": lambda p: geometric_mixture(p, mu, 0.125),
        }[name]
        th = log_t.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(population_loss(th, P, mu, loss, nu=nu), th)
        return torch.softmax(log_t - lr * grad, 0)
    payoff = bt_fit(P, mu) if name == "rlhf" else P @ target  # rlhf: reward fitted on pairs from mu
    A = payoff - TAU * (target / mu).log()
    return torch.softmax(log_t + lr * target * (A - (target * A).sum()), 0)


@pytest.mark.parametrize("name", ["dpo", "ipo", "online_ipo", "ipo_md", "nash_md_pg", "rlhf"])
def test_fixed_point_is_a_fixed_point_of_the_update(name):
    # Generic games (fixed point far from mu): one step of the update from the fixed point.
    for i in range(N3):
        target = _default_target(name, i)
        moved = _max_abs(_one_step_from(name, GAMES3[i], MU3[i], target), target)
        assert moved < 1e-12, f"row {i}: one step moves by {moved:.2e}"


def test_nash_md_fixed_points():
    # Constant step eta: the IPO-MD fixed point with mixture eta * tau is invariant under one step.
    # Decaying step: pi*_tau is invariant only in the limit; one step at time t moves it by
    # O(eta_t^2 tau) (the mixture differs from pi*_tau by O(eta_t tau)), i.e. O(1 / (tau t^2)).
    for i in range(N3):
        P, mu = GAMES3[i], MU3[i]
        for eta in (0.5, 2.5, 10.0):
            fp = ipo_md_fixed_point(P, mu, TAU, eta * TAU)
            assert _max_abs(_nash_md_step_by_hand(P, mu, fp, TAU, eta), fp) < 1e-12
        star = regularized_nash(P, mu, TAU)
        for t in (10, 100, 1000):
            eta_t = 2.0 / (TAU * (t + 2))
            moved = _max_abs(_nash_md_step_by_hand(P, mu, star, TAU, eta_t), star)
            assert moved < 20.0 / (TAU * (t + 2) ** 2)


# ---------------------------------------------------------------------------------------------
# RLHF policy gradient and Nash-MD-PG (mixture m)


def test_rlhf_policy_gradient_converges_to_rlhf_optimum():
    P = GAMES3[:4]
    mu, nu = MU3[:4], NU3[:4]
    betas = [1.0, 3.0, 1.0, 3.0]
    traj = rlhf(P, mu, steps=2000, beta=betas, nu=nu)  # measured: 1e-10 by step ~1030 at beta = 1
    closed = rlhf(P, mu, steps=2, beta=betas, nu=nu, method="closed_form")
    for i in range(4):
        target = rlhf_optimum(P[i], mu[i], betas[i], nu[i])
        assert _max_abs(traj.final[i], target) < 1e-10
        assert _max_abs(closed.final[i], target) < 1e-13
        # Independent closed form: mu exp(r / beta) / Z with r the BT fit on pairs from nu.
        gibbs = mu[i] * torch.exp(bt_fit(P[i], nu[i]) / betas[i])
        assert _max_abs(target, gibbs / gibbs.sum()) < 1e-13


def test_nash_md_pg_mixtures_converge_to_ipo_md_fixed_point():
    mixtures = [0.0, 0.25, 0.5, 0.9]
    P = GAMES3[:4]
    mu = MU3[:4]
    tau = 0.3
    traj = nash_md_pg(P, mu, steps=3000, tau=tau, mixture=mixtures)  # measured: 1e-10 by step 1717
    for i, m in enumerate(mixtures):
        assert _max_abs(traj.final[i], ipo_md_fixed_point(P[i], mu[i], tau, m)) < 1e-10
