"""Certified means certified: every solver answer is checked against an independent computation.

Oracles used here, none of them the code under test: exact rational arithmetic (``fractions``) for
exploitability; 50-digit ``mpmath`` for the Gibbs closed forms and the fixed-point maps; a numpy
re-implementation of the IPO-MD map; nashpy's support enumeration; an equilibrium solved on its
support in sympy rationals; and analytic facts (a Condorcet winner is the unique equilibrium, a
strictly dominated action gets no mass, Gibbs policies tend to ``mu`` restricted to the argmax as
the strength goes to 0 and to ``mu`` as it goes to infinity).

Covers: near-tie games that HiGHS's tolerances cannot see (the Condorcet loser of
``bradley_terry([0, 1e-10, 2e-10, 3e-10])``), IPO-MD over its documented range (K up to 1000, tau
in [1e-3, 1e3], mu entries down to 1e-300, mixture in [0, 1)), closed forms at subnormal and
huge strengths, and errors that name the caller's argument and never contradict themselves.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import mpmath
import nashpy
import numpy as np
import pytest
import sympy
import torch
from scipy.special import logsumexp

import prefopt_toy as pt
from prefopt_toy.solutions import nash as nash_module
from prefopt_toy.solutions import regularized as regularized_module
from prefopt_toy.solutions.optima import gibbs_policy

EPS = float(np.finfo(np.float64).eps)
# "... = <residual>, exceeds tol = <tol>." in the solvers' error messages
RESIDUAL = r"= (\S+), exceeds tol = (\S+?)[;.]"


# --------------------------------------------------------------------------------------------
# independent oracles


def exact_exploitability(P: np.ndarray, pi: np.ndarray) -> Fraction:
    """max_y sum_j A_yj pi_j with A = (P - P.T) / 2, every float read as an exact rational."""
    k = len(pi)
    p = [[Fraction(float(P[i, j])) for j in range(k)] for i in range(k)]
    q = [Fraction(float(x)) for x in pi]
    return max(sum((p[y][j] - p[j][y]) / 2 * q[j] for j in range(k)) for y in range(k))


def game_scale(P: np.ndarray) -> float:
    return float(np.abs((P - P.T) / 2).max())


def assert_certified_nash(P, pi) -> None:
    """On the simplex, with exact exploitability within the documented 16 K eps max|P - 1/2|."""
    P = np.asarray(P, dtype=np.float64)
    pi = np.asarray(pi, dtype=np.float64)
    k = len(pi)
    assert np.isfinite(pi).all() and (pi >= 0).all() and abs(pi.sum() - 1) <= 4 * k * EPS
    bound = 16 * k * EPS * game_scale(P)
    exact = exact_exploitability(P, pi)
    assert exact <= Fraction(bound), (float(exact), bound)


def numpy_residual(P: np.ndarray, mu: np.ndarray, tau: float, m: float, pi: np.ndarray) -> float:
    """max|pi - T(pi)| and, for m > 0, max|s(pi) - s(T(pi))|, written independently in numpy."""
    sup = mu > 0
    with np.errstate(divide="ignore"):
        log_pi = np.where(sup, np.log(np.where(sup, pi, 1.0)), -np.inf)
        log_mu = np.where(sup, np.log(np.where(sup, mu, 1.0)), -np.inf)

    def mixture(log_p):
        z = (1 - m) * np.where(sup, log_p, 0.0) + m * np.where(sup, log_mu, 0.0)
        z = np.where(sup, z, -np.inf)
        return np.exp(z - logsumexp(z[sup]))

    s = mixture(log_pi)
    w = (P - 0.5) @ s
    w = w - w[sup].max()
    log_t = np.where(sup, np.where(sup, log_mu, 0.0) + w / tau, -np.inf)
    log_t = log_t - logsumexp(log_t[sup])
    residual = np.abs(np.exp(log_t) - pi).max()
    if m > 0:
        residual = max(residual, np.abs(mixture(log_t) - s).max())
    return float(residual)


def mp_residual(P: np.ndarray, mu: np.ndarray, tau: float, m: float, pi: np.ndarray) -> float:
    """The same residual evaluated in 50-digit arithmetic (mpmath), mu > 0 everywhere."""
    with mpmath.workdps(50):
        k = len(mu)
        Pm = [[mpmath.mpf(float(P[i, j])) for j in range(k)] for i in range(k)]
        mum = [mpmath.mpf(float(x)) for x in mu]
        pim = [mpmath.mpf(float(x)) for x in pi]

        def mixture(p):
            w = [p[i] ** (1 - m) * mum[i] ** m for i in range(k)]
            z = mpmath.fsum(w)
            return [x / z for x in w]

        s = mixture(pim)
        g = [mpmath.fsum(Pm[i][j] * s[j] for j in range(k)) for i in range(k)]
        top = max(g)
        w = [mum[i] * mpmath.exp((g[i] - top) / tau) for i in range(k)]
        z = mpmath.fsum(w)
        t = [x / z for x in w]
        residual = max(abs(t[i] - pim[i]) for i in range(k))
        if m > 0:
            st = mixture(t)
            residual = max(residual, max(abs(st[i] - s[i]) for i in range(k)))
        return float(residual)


def mp_gibbs(mu, payoff, strength) -> np.ndarray:
    """mu exp(payoff / strength) / Z in 60-digit arithmetic (mu > 0)."""
    with mpmath.workdps(60):
        mu_m = [mpmath.mpf(float(x)) for x in mu]
        g = [mpmath.mpf(float(x)) for x in payoff]
        top = max(g)
        w = [m_ * mpmath.exp((x - top) / mpmath.mpf(strength)) for m_, x in zip(mu_m, g)]
        z = mpmath.fsum(w)
        return np.array([float(x / z) for x in w])


def exact_win_rates(P: np.ndarray, nu: np.ndarray) -> list[Fraction]:
    k = len(nu)
    q = [Fraction(float(x)) for x in nu]
    return [sum(Fraction(float(P[i, j])) * q[j] for j in range(k)) for i in range(k)]


def argmax_limit(mu: np.ndarray, gains: list) -> np.ndarray:
    """The analytic strength -> 0 limit: mu restricted to argmax_{supp mu} gains, renormalised."""
    top = max(g for g, m_ in zip(gains, mu) if m_ > 0)
    w = np.array([m_ if (m_ > 0 and g == top) else 0.0 for g, m_ in zip(gains, mu)])
    return w / w.sum()


def random_mu(rng: np.random.Generator, k: int, kind: str) -> np.ndarray:
    if kind == "uniform":
        return np.full(k, 1.0 / k)
    mu = rng.dirichlet(np.full(k, 0.5)) + 1e-3
    if kind == "tiny":  # entries down to 1e-300
        idx = rng.random(k) < 0.5
        mu[idx] = 10.0 ** rng.uniform(-300, -12, int(idx.sum()))
        mu[0] = 1e-300
    return mu / mu.sum()


# --------------------------------------------------------------------------------------------
# nash_equilibrium: near ties are not ties


@pytest.mark.parametrize("gap", [1e-10, 1e-14, 1e-15])
def test_near_tie_bradley_terry_gives_the_bt_argmax(gap):
    """The probe's game: at HiGHS's tolerances the LP saw ties and returned the Condorcet loser."""
    P = pt.bradley_terry([0.0, gap, 2 * gap, 3 * gap]).numpy()
    # Analytic: in the float matrix, action 3 beats every other action (the BT argmax is a
    # Condorcet winner), checked here on the exact entries, so e_3 is the unique equilibrium.
    assert all(Fraction(P[3, j]) > Fraction(P[j, 3]) for j in range(3))
    pi = pt.nash_equilibrium(P).numpy()
    assert pi.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert_certified_nash(P, pi)
    assert pt.exploitability(P, pi) == 0.0
    # The old answer, the Condorcet loser, is far above the certificate's threshold.
    loser = exact_exploitability(P, np.array([1.0, 0.0, 0.0, 0.0]))
    assert loser > 1000 * 16 * 4 * EPS * game_scale(P)


def test_gap_at_float64_resolution_is_certified():
    """Gaps of 3e-16 leave P within one ulp of 1/2, with some pairs rounded to exact ties: any
    equilibrium of the float matrix will do, and the answer is one (exact arithmetic)."""
    P = pt.bradley_terry([0.0, 3e-16, 6e-16, 9e-16]).numpy()
    assert 0 < game_scale(P) < 3e-16
    assert_certified_nash(P, pt.nash_equilibrium(P).numpy())


def test_gap_below_float64_resolution_is_an_exact_tie():
    """A gap of 1e-300 rounds P to exactly 1/2: every policy is an equilibrium."""
    P = pt.bradley_terry([0.0, 1e-300, 2e-300, 3e-300]).numpy()
    assert (P == 0.5).all()
    pi = pt.nash_equilibrium(P).numpy()
    assert exact_exploitability(P, pi) == 0 and abs(pi.sum() - 1) < 1e-15 and (pi >= 0).all()


@pytest.mark.parametrize("gap", [1e-10, 1e-13])
def test_near_tie_cluster_that_dominates_a_cycle(gap):
    """A near-tied BT cluster (entries 1e-10 from 1/2) above a rock-paper-scissors block (0.4):
    HiGHS drops matrix entries below 1e-9, so rescaling the whole game is not enough."""
    bt = pt.bradley_terry([0.0, gap, 2 * gap, 3 * gap]).numpy()
    P = np.full((7, 7), 0.5)
    P[:4, :4] = bt
    P[4:, 4:] = 0.5 + 0.4 * np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]])
    P[:4, 4:], P[4:, :4] = 0.8, 0.2
    assert all(P[3, j] > 0.5 for j in range(7) if j != 3)  # Condorcet winner: unique equilibrium
    pi = pt.nash_equilibrium(P).numpy()
    assert pi.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert_certified_nash(P, pi)


@pytest.mark.parametrize("d", [1e-6, 1e-12])
def test_near_twin_is_strictly_dominated(d):
    """Rock-paper-scissors plus a twin of scissors that does better by d against everything:
    scissors is strictly dominated (so gets no mass) and the answer is certified."""
    A = np.zeros((4, 4))
    rps = 0.4 * np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]])
    A[:3, :3] = rps
    A[3, :3] = rps[2] + d
    A[3, 2] = d
    A[:, 3] = -A[3, :]
    P = 0.5 + A
    pi = pt.nash_equilibrium(P).numpy()
    assert pi[2] == 0.0
    assert_certified_nash(P, pi)
    # Against the exact equilibrium of the designed skew game A, in rational arithmetic (d = 1e-6
    # is resolvable in float64). nashpy's support enumeration compares floats with tol 1e-16 and
    # finds none of this game's equilibria on some CPUs (AVX-512 LAPACK kernels round otherwise).
    if d == 1e-6:
        reference = _exact_symmetric_equilibrium(A, support=[0, 1, 3])
        assert np.abs(pi - reference).max() < 1e-9


def _exact_symmetric_equilibrium(A, support):
    """The equilibrium of the skew game ``A`` (value 0) on ``support``, solved and certified in
    rationals: ``(A x)_i = 0`` on the support, ``sum x = 1``, ``x >= 0``, ``(A x)_i <= 0`` off it."""
    S = sympy.Matrix(A.shape[0], A.shape[1], lambda i, j: sympy.Rational(float(A[i, j])))
    sub = S.extract(support, support)
    system = sub.col_join(sympy.ones(1, len(support)))
    rhs = sympy.zeros(len(support), 1).col_join(sympy.ones(1, 1))
    x_sub = (system.T * system).LUsolve(system.T * rhs)  # square, consistent: the exact solution
    assert system * x_sub == rhs
    x = sympy.zeros(A.shape[0], 1)
    for k, i in enumerate(support):
        x[i] = x_sub[k]
    assert all(v >= 0 for v in x) and all(v <= 0 for v in S * x)
    return np.array([float(v) for v in x])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("d", [1e-11, 1e-13])
def test_perturbed_clone_blocks_are_certified(seed, d):
    """Three clone groups in a cycle, perturbed by d: the equilibrium is selected by the
    perturbation, below HiGHS's tolerance (the exact-arithmetic recovery certifies it)."""
    rng = np.random.default_rng(seed)
    base = np.kron(0.4 * np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]]), np.ones((3, 3)))
    E = rng.uniform(-1, 1, (9, 9))
    P = 0.5 + base + d * (E - E.T) / 2
    assert_certified_nash(P, pt.nash_equilibrium(P).numpy())


@pytest.mark.parametrize("scale", [1e-8, 1e-12])
@pytest.mark.parametrize("seed", range(3))
def test_tiny_scale_random_games_match_nashpy(scale, seed):
    """Shrinking P - 1/2 keeps the equilibrium (up to the rounding of the shrunk entries): compare
    with nashpy's support enumeration on the exact skew part, rescaled by a power of two."""
    P = 0.5 + scale * (pt.random_game(5, seed=100 + seed).numpy() - 0.5)
    A = (P - P.T) / 2
    A = np.ldexp(A, -math.frexp(np.abs(A).max())[1])
    equilibria = [eq[0] for eq in nashpy.Game(A).support_enumeration()]
    pi = pt.nash_equilibrium(P).numpy()
    assert_certified_nash(P, pi)
    if len(equilibria) == 1:
        assert np.abs(pi - equilibria[0]).max() < 1e-9


def test_uncertified_answer_is_never_returned(monkeypatch):
    """If every stage returns the Condorcet loser, the solver raises instead of returning it."""
    P = pt.bradley_terry([0.0, 1e-10, 2e-10, 3e-10]).numpy()
    loser = np.array([1.0, 0.0, 0.0, 0.0])

    def lp(As, rhs, lower, total):
        return loser.copy() if total else np.zeros(4)

    monkeypatch.setattr(nash_module, "_solve_lp", lp)
    monkeypatch.setattr(nash_module, "_exact_equilibrium", lambda As: np.eye(As.shape[0])[0])
    monkeypatch.setattr(nash_module, "_candidates", lambda *args: iter(()))
    with pytest.raises(RuntimeError, match="could not certify") as info:
        pt.nash_equilibrium(P)
    pattern = r"exploitability (\S+) exceeds the round-off threshold (\S+)"
    reached, threshold = (float(x) for x in re.findall(pattern, str(info.value))[0])
    assert reached > threshold  # the message never contradicts itself


def test_recovery_fixes_a_wrong_lp_answer(monkeypatch):
    """A wrong LP answer (as HiGHS gives at its tolerances) fails the certificate, then is fixed."""
    P = pt.bradley_terry([0.0, 1e-10, 2e-10, 3e-10]).numpy()
    real = nash_module._solve_lp

    def wrong_first(As, rhs, lower, total):
        if total == 1.0 and As.shape[0] == 4:
            return np.array([1.0, 0.0, 0.0, 0.0])
        return real(As, rhs, lower, total)

    monkeypatch.setattr(nash_module, "_solve_lp", wrong_first)
    pi = pt.nash_equilibrium(P).numpy()
    assert pi.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_exploitability_keeps_relative_accuracy_near_one_half():
    P = pt.bradley_terry([0.0, 1e-10, 2e-10, 3e-10]).numpy()
    pi = np.array([0.4, 0.3, 0.2, 0.1])
    exact = float(exact_exploitability(P, pi))
    assert exact > 0
    assert abs(pt.exploitability(P, pi) - exact) <= 1e-12 * exact


def test_exploitability_ignores_complementarity_slack():
    """P may miss P + P.T = 1 by up to 1e-9 (validation's tolerance): all ties stay ties."""
    P = np.full((3, 3), 0.5 + 4e-10)
    for pi in ([1.0, 0.0, 0.0], [0.2, 0.3, 0.5]):
        assert pt.exploitability(P, pi) == 0.0
    assert_certified_nash(P, pt.nash_equilibrium(P).numpy())


# --------------------------------------------------------------------------------------------
# IPO-MD and the regularised Nash over the documented range


def test_ipo_md_probe_case_all_200_seeds():
    """K = 3, uniform mu, tau = 0.005, mixture = 0.95: 26 of these 200 seeds used to raise."""
    mu = np.full(3, 1 / 3)
    worst = 0.0
    for seed in range(200):
        P = pt.random_game(3, seed=seed)
        pi, report = pt.ipo_md_fixed_point(P, mu, 0.005, 0.95, return_report=True)
        assert report.residual <= 1e-12
        worst = max(worst, numpy_residual(P.numpy(), mu, 0.005, 0.95, pi.numpy()))
        assert abs(float(pi.sum()) - 1) < 1e-14 and bool((pi >= 0).all())
    assert worst <= 2e-12


def test_documented_range_sweep():
    """Seeded sweep: K up to 1000, tau in [1e-3, 1e3], mu entries down to 1e-300, mixture in [0, 1).

    Both solvers, each checked by the numpy re-implementation of its map (2e-12: the 1e-12
    certificate plus the two evaluations' round-off)."""
    rng = np.random.default_rng(20240308)
    configs = []
    for _ in range(300):
        k = int(np.exp(rng.uniform(np.log(2), np.log(60))))
        tau = float(10 ** rng.uniform(-3, 3))
        m = float(rng.choice([rng.uniform(0, 1), 0.95, 0.999, 1 - 1e-9]))
        kind = str(rng.choice(["uniform", "dirichlet", "tiny"]))
        configs.append((k, tau, m, kind, bool(rng.random() < 0.3)))
    configs += [
        (1000, 1e-3, 0.9, "tiny", False),
        (1000, 3e-2, 0.5, "dirichlet", False),
        (300, 1e-3, 0.99, "uniform", True),
        # Mixture 0.9, not 0.99: at tau = 1e-3 this game's fixed point has probabilities below
        # exp(-745) whose weights in a 0.99-mixture are visible (the refusal test below).
        (1000, 1e-3, 0.9, "uniform", True),
    ]
    for k, tau, m, kind, transitive in configs:
        P = pt.random_game(k, seed=int(rng.integers(2**31)), transitive=transitive)
        mu = random_mu(rng, k, kind)
        for mixture in (0.0, m):
            if mixture == 0.0:
                pi, report = pt.regularized_nash(P, mu, tau, return_report=True)
            else:
                pi, report = pt.ipo_md_fixed_point(P, mu, tau, mixture, return_report=True)
            assert report.residual <= 1e-12, (k, tau, mixture, kind)
            assert bool(torch.isfinite(pi).all()) and abs(float(pi.sum()) - 1) < 1e-13
            residual = numpy_residual(P.numpy(), mu, tau, mixture, pi.numpy())
            assert residual <= 2e-12, (k, tau, mixture, kind)


@pytest.mark.parametrize("tau, mixture", [(1e-3, 0.5), (5e-3, 0.95), (0.3, 0.999), (10.0, 0.25)])
def test_ipo_md_residual_in_high_precision(tau, mixture):
    """The IPO-MD map re-evaluated in 50-digit arithmetic at the returned point."""
    rng = np.random.default_rng(7)
    P = pt.random_game(6, seed=int(tau * 1000) + 3)
    mu = random_mu(rng, 6, "tiny")
    pi = pt.ipo_md_fixed_point(P, mu, tau, mixture).numpy()
    assert mp_residual(P.numpy(), mu, tau, mixture, pi) <= 2e-12


def test_ipo_md_fixed_point_below_float64_range_is_refused():
    """The true fixed point (50-digit Picard iteration on Prop. 5.2's equation, a contraction at
    tau / (1 - mixture) = 1) has a probability below exp(-745) whose mixture weight is not
    negligible: no float64 vector is the answer, so the solver raises instead of rounding."""
    k, tau, mixture = 5, 1e-3, 0.999
    P = pt.bradley_terry(40.0 * np.arange(k)).numpy()
    mu = np.full(k, 1 / k)
    with mpmath.workdps(50):
        A = [[mpmath.mpf(float(P[i, j])) - mpmath.mpf(0.5) for j in range(k)] for i in range(k)]
        s = [mpmath.mpf(1) / k] * k
        for _ in range(200):  # Lipschitz 1/(2 tau') = 1/2 in l1: 200 steps reach 1e-60
            w = [
                mpmath.exp(mpmath.fsum(A[i][j] * s[j] for j in range(k)) * (1 - mixture) / tau)
                for i in range(k)
            ]
            s = [x / mpmath.fsum(w) for x in w]
        w = [mpmath.exp(mpmath.fsum(A[i][j] * s[j] for j in range(k)) / tau) for i in range(k)]
        pi = [x / mpmath.fsum(w) for x in w]
        smallest = min(range(k), key=lambda i: pi[i])
        assert pi[smallest] < mpmath.mpf(2) ** -1075  # below the smallest subnormal: rounds to 0
        assert s[smallest] > 1e-3  # ...yet a visible share of the mixture
    refusal = r"tau = 0\.001 with mixture = 0\.999 is out of float64's reach"
    with pytest.raises(ValueError, match=refusal):
        pt.ipo_md_fixed_point(P, mu, tau, mixture)
    # One step further from 1 in mixture is fine: nothing underflows at mixture = 0.99.
    pi = pt.ipo_md_fixed_point(P, mu, tau, 0.99).numpy()
    assert numpy_residual(P, mu, tau, 0.99, pi) <= 2e-12


def test_ipo_md_huge_tau_is_mu():
    """tau -> infinity (tau / (1 - mixture) overflows float64 here): the fixed point is mu."""
    P = pt.random_game(4, seed=1)
    mu = np.array([0.1, 0.2, 0.3, 0.4])
    for tau, mixture in [(1e300, 0.5), (1e308, 0.99)]:
        assert np.abs(pt.ipo_md_fixed_point(P, mu, tau, mixture).numpy() - mu).max() < 1e-15
    assert np.abs(pt.regularized_nash(P, mu, 1e300).numpy() - mu).max() < 1e-15


@pytest.mark.parametrize("tau", [1e-300, 5e-324])
def test_regularized_nash_condorcet_winner_at_vanishing_tau(tau):
    """Analytic: with a Condorcet winner the tau -> 0 limit is its vertex (no overflow, no NaN)."""
    P = [[0.5, 0.55, 0.55], [0.45, 0.5, 0.95], [0.45, 0.05, 0.5]]
    assert pt.regularized_nash(P, [1 / 3] * 3, tau).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("fn", ["regularized_nash", "ipo_md_fixed_point"])
@pytest.mark.parametrize("tau", [1e-300, 5e-324])
def test_vanishing_tau_on_a_cycle_names_the_callers_tau(fn, tau):
    """A mixed equilibrium cannot be certified at tau = 1e-300 in float64: ValueError naming the
    caller's tau (not tau / (1 - mixture)), with a residual that really exceeds tol."""
    P = pt.rock_paper_scissors(0.8) * 0.5 + pt.random_game(3, seed=0) * 0.5
    call = (
        (lambda: pt.regularized_nash(P, [0.2, 0.3, 0.5], tau))
        if fn == "regularized_nash"
        else (lambda: pt.ipo_md_fixed_point(P, [0.2, 0.3, 0.5], tau, 0.5))
    )
    with pytest.raises(ValueError, match=re.escape(f"tau = {tau!r} is too small")) as info:
        call()
    message = str(info.value)
    reached, tol = (float(x) for x in re.findall(RESIDUAL, message)[0])
    assert reached > tol
    assert f"tau = {2 * tau!r}" not in message  # not the internal tau / (1 - mixture)


def test_too_small_tol_names_tol():
    with pytest.raises(ValueError, match=r"tol = 1e-20 is below float64 round-off"):
        pt.regularized_nash(pt.random_game(3, seed=0), [1 / 3] * 3, 0.1, tol=1e-20)


def test_solver_failure_message_never_contradicts_itself(monkeypatch):
    """Force every Newton run to stop early: the RuntimeError reports the residual at the target
    tau, recomputed there, and it exceeds tol (the old message read 'residual 1.482e-13 > tol
    1.0e-12', the residual of an intermediate continuation stage)."""
    real = regularized_module._newton

    def crippled(f, x0, tol, max_iter):
        return real(f, x0, tol, max_iter=min(max_iter, 1))

    monkeypatch.setattr(regularized_module, "_newton", crippled)
    P = pt.random_game(5, seed=3)
    with pytest.raises(RuntimeError, match=r"tau = 0\.01, K = 5, mixture = 0\.5") as info:
        pt.ipo_md_fixed_point(P, [0.2] * 5, 0.01, 0.5)
    reached, tol = (float(x) for x in re.findall(RESIDUAL, str(info.value))[0])
    assert reached > tol


# --------------------------------------------------------------------------------------------
# closed forms: finite, on the simplex, correct at every strength


@pytest.mark.parametrize("tau", [1e-310, 5e-324, 1e-300])
def test_ipo_optimum_at_subnormal_tau_is_the_argmax_limit(tau):
    P = pt.random_game(5, seed=4).numpy()
    mu = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    gains = exact_win_rates(P, mu)
    assert len({g for g in gains}) == 5  # a unique argmax, decided exactly
    pi = pt.ipo_optimum(P, mu, tau).numpy()
    assert np.isfinite(pi).all()
    np.testing.assert_array_equal(pi, argmax_limit(mu, gains))


@pytest.mark.parametrize("tau", [1e-310, 5e-324])
def test_ipo_optimum_ties_are_shared_in_proportion_to_mu(tau):
    """Actions 0 and 1 have identical rows: their win rates tie exactly; the limit splits mu."""
    P = np.array([[0.5, 0.5, 0.9], [0.5, 0.5, 0.9], [0.1, 0.1, 0.5]])
    mu = np.array([0.2, 0.6, 0.2])
    pi = pt.ipo_optimum(P, mu, tau).numpy()
    np.testing.assert_allclose(pi, [0.25, 0.75, 0.0], rtol=0, atol=4 * EPS)


def test_ipo_optimum_argmax_off_the_support_of_mu():
    """The best action has mu = 0: the limit is on supp(mu), never NaN."""
    P = pt.bradley_terry([3.0, 1.0, 0.0]).numpy()
    pi = pt.ipo_optimum(P, [0.0, 0.5, 0.5], 5e-324, nu=[0.4, 0.3, 0.3]).numpy()
    assert pi.tolist() == [0.0, 1.0, 0.0]


def test_ipo_optimum_tiny_mu_at_the_argmax():
    """mu = 1e-300 on the best action still takes all the mass in the limit (analytic)."""
    P = pt.bradley_terry([3.0, 1.0, 0.0]).numpy()
    mu = np.array([1e-300, 0.5, 0.5 - 1e-300])
    assert pt.ipo_optimum(P, mu, 1e-310).numpy().tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("tau", [1e-3, 0.37, 25.0, 1e6])
def test_ipo_optimum_against_high_precision(tau):
    P = pt.random_game(6, seed=9).numpy()
    rng = np.random.default_rng(3)
    mu, nu = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
    expected = mp_gibbs(mu, [float(g) for g in exact_win_rates(P, nu)], tau)
    actual = pt.ipo_optimum(P, mu, tau, nu).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("strength", [1e300, 1.7e308])
def test_huge_strength_gives_mu(strength):
    P = pt.random_game(4, seed=2)
    mu = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(pt.ipo_optimum(P, mu, strength).numpy(), mu, rtol=1e-15)
    np.testing.assert_allclose(pt.rlhf_optimum(P, mu, strength).numpy(), mu, rtol=1e-15)


@pytest.mark.parametrize("beta", [1e-310, 5e-324, 1e-200])
def test_rlhf_optimum_at_vanishing_beta_is_the_bt_argmax(beta):
    """On a BT game the fitted reward is the score vector (analytic), so the limit is its argmax."""
    scores = np.array([0.3, 1.2, -0.5, 1.1])
    pi = pt.rlhf_optimum(pt.bradley_terry(scores), [0.25] * 4, beta).numpy()
    assert pi.tolist() == [0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("beta", [0.05, 1.0, 40.0])
def test_rlhf_optimum_against_high_precision(beta):
    scores = np.array([0.3, 1.2, -0.5, 1.1])
    mu = np.array([1e-300, 0.3, 0.3, 0.4 - 1e-300])
    expected = mp_gibbs(mu, scores - scores.mean(), beta)  # BT game: reward = centred scores
    actual = pt.rlhf_optimum(pt.bradley_terry(scores), mu, beta).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0)


def test_gibbs_policy_batched_strengths_stay_finite():
    """The vectorised path used by the tau-path figure: a column of strengths, subnormal to huge."""
    mu = torch.tensor([0.0, 0.2, 0.3, 0.5], dtype=torch.float64)
    payoff = torch.tensor([5.0, 1.0, 2.0, 2.0], dtype=torch.float64)
    strengths = torch.tensor([[5e-324], [1e-300], [1.0], [1e300]], dtype=torch.float64)
    out = gibbs_policy(mu, payoff, strengths)
    assert out.shape == (4, 4) and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out.sum(-1), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-15)
    limit = argmax_limit(mu.numpy(), payoff.tolist())  # [0, 0, 0.375, 0.625]: ties split by mu
    np.testing.assert_allclose(out[0].numpy(), limit, rtol=0, atol=1e-16)
    np.testing.assert_allclose(out[1].numpy(), limit, rtol=0, atol=1e-16)
    expected = np.r_[0.0, mp_gibbs(mu.numpy()[1:], payoff.numpy()[1:], 1.0)]
    np.testing.assert_allclose(out[2].numpy(), expected, rtol=1e-13, atol=0)
    np.testing.assert_allclose(out[3].numpy(), mu.numpy(), rtol=1e-15)
