r"""Hidden tests of the labs: what nbgrader's autograder runs after each visible self-check.

The visible checkers (``labs.check_*``) show the student their inputs and compare with the
library. The hidden tests below, called from the ``### BEGIN HIDDEN TESTS`` region of each
autograded cell of ``course/source/``, differ in three ways:

- **fresh inputs**: pairs, games and policies drawn here from a fixed seed, none of them among the
  self-check's inputs (other sizes, other hyperparameters, extreme margins and tiny ``mu``);
- **an independent oracle**: the expected values are computed here in numpy from the papers'
  formulas, not by the library the self-check compares with;
- **a guard against calling the library**: the student's function runs under
  :func:`sys.setprofile`, and entering any Python function of a module that implements what is
  asked (:data:`FORBIDDEN_MODULES`: the losses, the solvers, the dynamics, ...) fails the test.
  This catches ``pt.dpo_loss``, a ``from prefopt_toy.losses import dpo_loss`` bound before the
  test, and any wrapper around them (``functools.partial`` included). Generic helpers
  (``prefopt_toy.policies``: ``softmax``, ``geometric_mixture``, ``win_rates``; the game
  constructors) stay allowed.

Each test raises :class:`~prefopt_toy.labs.checking.LabCheckError` on the first failure (so
nbgrader scores the cell 0) and returns ``None`` (a cell ending in a number would be read by
nbgrader as partial credit).

References
----------
Rafailov et al., arXiv:2305.18290v3, Eq. (7) (DPO); Azar et al., arXiv:2310.12036v2, Eq. (8)-(9)
and (17) (IPO optimum and loss); Munos et al., arXiv:2312.00886v4, Sec. 3 and Eq. (8)-(9)
(RLHF against Nash, the Nash-MD step); Ethayarajh et al., arXiv:2402.01306v4, Sec. 4 (KTO);
Park et al., arXiv:2403.19159v3, Sec. 3 (R-DPO); Zeng et al., arXiv:2404.11999v5, Sec. 3-4 (the
sequential KL, TDPO1 and TDPO2). nbgrader: Jupyter Development Team,
https://nbgrader.readthedocs.io (hidden tests, autograded cells).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE

from .checking import LabCheckError, _as_result, _call, _fmt_pair

__all__ = [
    "FORBIDDEN_MODULES",
    "grade_condorcet_disagreement",
    "grade_cycle_disagreement",
    "grade_debiasing_alpha",
    "grade_dpo_length_optimum",
    "grade_dpo_loss",
    "grade_expected_sequential_kl",
    "grade_ipo_loss",
    "grade_ipo_optimum",
    "grade_kl_reference_point",
    "grade_kto_dropped",
    "grade_kto_loss",
    "grade_length_biased_preferences",
    "grade_nash_md_step",
    "grade_prefix_kl",
    "grade_rdpo_loss",
    "grade_rdpo_optimum",
    "grade_sequence_probability",
    "grade_sequential_kl",
    "grade_tdpo1_loss",
    "grade_tdpo2_loss",
    "grade_trl_reference_point",
    "library_calls",
]

# Modules that implement what the labs ask for (and the labs' own oracles): an answer that enters
# any of them is not the student's own computation.
FORBIDDEN_MODULES = (
    "prefopt_toy.losses",
    "prefopt_toy.solutions",
    "prefopt_toy.dynamics",
    "prefopt_toy.analysis",
    "prefopt_toy.symbolic",
    "prefopt_toy.lm",
    "prefopt_toy.labs",
    "prefopt_toy.plots",
    "prefopt_toy.widgets",
    "prefopt_toy.demo",
    "prefopt_toy.tokens",
)

# Agreement required with the numpy oracle (as the self-check's RTOL / ATOL).
_RTOL, _ATOL = 1e-8, 1e-12

_SEED = 20231212


def _forbidden(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in FORBIDDEN_MODULES)


def library_calls(
    fn: Callable[..., Any], *args: Any, also: tuple[str, ...] = ()
) -> tuple[Any, list[str]]:
    """Call ``fn(*args)`` and list the library functions of :data:`FORBIDDEN_MODULES` it entered.

    Parameters
    ----------
    fn : callable
        The student's function.
    *args
        Its arguments.
    also : tuple of str
        ``module.function`` names forbidden on top of :data:`FORBIDDEN_MODULES` (a generic helper
        that is what one exercise asks, e.g. ``prefopt_toy.policies.kl`` in exercise 5b).

    Returns
    -------
    result : object
        What ``fn`` returned.
    entered : list of str
        ``module.function`` of every forbidden Python function entered, in order, without repeats.

    References
    ----------
    Python's profiler hook, :func:`sys.setprofile` (a ``"call"`` event for every Python frame).

    Examples
    --------
    >>> import prefopt_toy as pt
    >>> _, entered = library_calls(lambda h: pt.dpo_loss(h, 0.1), torch.tensor([1.0]))
    >>> "prefopt_toy.losses.pairwise.dpo_loss" in entered
    True
    >>> library_calls(torch.nn.functional.logsigmoid, torch.tensor([1.0]))[1]
    []
    """
    entered: list[str] = []

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if isinstance(module, str):
                name = f"{module}.{frame.f_code.co_name}"
                if (_forbidden(module) or name in also) and name not in entered:
                    entered.append(name)

    previous = sys.getprofile()
    sys.setprofile(profiler)
    try:
        result = fn(*args)
    finally:
        sys.setprofile(previous)
    return result, entered


def _guarded_value(
    exercise: str, what: str, fn: Any, args: list[Any], where: str, also: tuple[str, ...] = ()
) -> Any:
    """``fn(*args)`` as returned (autograd kept), failed when it entered the library."""
    entered: list[str] = []

    def watched(*a: Any) -> Any:
        result, calls = library_calls(fn, *a, also=also)
        entered.extend(calls)
        return result

    if not callable(fn):
        _call(exercise, what, fn, args, where)  # raises the checker's message
    value = _call(exercise, what, watched, args, where)
    if entered:
        raise LabCheckError(
            f"exercise {exercise}: your {what} calls the library's own implementation "
            f"({', '.join(entered[:3])}); the exercise is to write it yourself\n"
            f"  hidden test on {where}"
        )
    return value


def _guarded_answer(
    exercise: str,
    what: str,
    fn: Any,
    args: list[Any],
    shape: tuple[int, ...],
    where: str,
    also: tuple[str, ...] = (),
    dtypes: tuple[str, ...] = ("float64",),
) -> Tensor:
    value = _guarded_value(exercise, what, fn, args, where, also)
    got, dtype = _as_result(exercise, what, value, shape, where)
    if dtype not in dtypes:
        raise LabCheckError(
            f"exercise {exercise}: your {what} returned {dtype}; keep float64 (the inputs' dtype)\n"
            f"  hidden test on {where}"
        )
    return got


def _compare(exercise: str, what: str, where: str, got: Tensor, expected: np.ndarray) -> None:
    values = got.numpy()
    if np.all(np.isfinite(values)) and np.allclose(values, expected, rtol=_RTOL, atol=_ATOL):
        return
    shown_expected, shown_got = _fmt_pair(expected.tolist(), values.tolist())
    raise LabCheckError(
        f"exercise {exercise}: your {what} is wrong on a hidden test\n"
        f"  {where}\n"
        f"  expected {shown_expected}\n"
        f"  got      {shown_got}"
    )


def _t(x: Any) -> Tensor:
    return torch.tensor(np.ascontiguousarray(x, dtype=np.float64), dtype=DTYPE)


# ----------------------------------------------------------------------- lab 1: pair losses


def _pair_cases() -> list[tuple[str, np.ndarray, float]]:
    """(name, log-probs of shape (4, B), hyperparameter): none of the self-check's inputs."""
    rng = np.random.default_rng(_SEED)
    cases = []
    for b, hyper in [(7, 0.05), (3, 0.7), (12, 2.5)]:
        logps = rng.uniform(-40.0, -0.05, size=(4, b))
        cases.append((f"{b} random pairs", logps, hyper))
    extreme = np.array([[0.0, -800.0], [-800.0, 0.0], [-2.0, -2.0], [-2.0, -2.0]])
    cases.append(("2 pairs with margins +-800", extreme, 2.0))
    return cases


def _grade_pair_loss(
    exercise: str, what: str, hyper_name: str, fn: Any, oracle: Callable[..., np.ndarray]
) -> None:
    for name, logps, hyper in _pair_cases():
        pc, pr, rc, rr = logps
        where = f"{name} with {hyper_name}={hyper:g}"
        got = _guarded_answer(
            exercise, what, fn, [*map(_t, logps), hyper], (logps.shape[1],), where
        )
        _compare(exercise, what, where, got, oracle((pc - rc) - (pr - rr), hyper))


def grade_dpo_loss(student_dpo_loss: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 1a: the DPO loss :math:`-\log\sigma(\beta h)` on fresh pairs.

    Four batches drawn here (7, 3 and 12 random pairs with ``beta`` 0.05, 0.7, 2.5; two pairs
    with margins +-800 at ``beta = 2``), compared with numpy's ``logaddexp(0, -beta h)``, under
    the library-call guard of :func:`library_calls`.

    Parameters
    ----------
    student_dpo_loss : callable
        ``(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta) -> losses``.

    Raises
    ------
    LabCheckError
        On the first failing batch, or when the answer calls the library.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (7).
    """
    _grade_pair_loss(
        "1a", "dpo_loss", "beta", student_dpo_loss, lambda h, b: np.logaddexp(0.0, -b * h)
    )


def grade_ipo_loss(student_ipo_loss: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 1b: the IPO loss :math:`(h - 1/(2\tau))^2` on fresh pairs.

    The batches of :func:`grade_dpo_loss` with ``tau`` in place of ``beta``, compared with numpy,
    under the library-call guard.

    Parameters
    ----------
    student_ipo_loss : callable
        ``(logp_chosen, logp_rejected, ref_chosen, ref_rejected, tau) -> losses``.

    Raises
    ------
    LabCheckError
        On the first failing batch, or when the answer calls the library.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (17).
    """
    _grade_pair_loss(
        "1b", "ipo_loss", "tau", student_ipo_loss, lambda h, t: (h - 1.0 / (2.0 * t)) ** 2
    )


# ---------------------------------------------------------------------- lab 2: IPO optimum


def _random_game(rng: np.random.Generator, k: int) -> np.ndarray:
    """A random complementary ``P`` (``P + P.T = 1``), entries strictly inside (0, 1)."""
    upper = np.triu(rng.uniform(0.02, 0.98, size=(k, k)), 1)
    return upper + np.tril(1.0 - upper.T, -1) + 0.5 * np.eye(k)


def _np_softmax(logits: np.ndarray) -> np.ndarray:
    w = np.exp(logits - logits.max())
    return w / w.sum()


def _optimum_cases() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]:
    rng = np.random.default_rng(_SEED + 2)
    cases = []
    for k, tau in [(4, 0.2), (6, 0.02), (2, 3.0)]:
        P = _random_game(rng, k)
        mu, nu = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
        cases.append((f"a random {k}-action game, tau={tau:g}", P, mu, nu, tau))
    P = _random_game(rng, 4)
    mu = np.array([1.0 - 2e-250, 1e-250, 5e-251, 5e-251])
    cases.append(
        ("a random 4-action game with mu entries 1e-250, tau=0.004", P, mu, mu[::-1], 0.004)
    )
    return cases


def grade_ipo_optimum(student_ipo_optimum: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 2: the IPO optimum :math:`\mu\exp(P\nu/\tau)/Z` on fresh games.

    Random complementary games with 2, 4 and 6 actions (random ``mu`` and ``nu``, ``tau`` from
    0.02 to 3) and one with ``mu`` entries of 1e-250 and ``tau = 0.004``, compared with a numpy
    softmax of the logits ``log mu + P nu / tau``, under the library-call guard.

    Parameters
    ----------
    student_ipo_optimum : callable
        ``(P, mu, nu, tau) -> policy``.

    Raises
    ------
    LabCheckError
        On the first failing game, or when the answer calls the library.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (8)-(9) with Psi = identity.
    """
    for where, P, mu, nu, tau in _optimum_cases():
        args = [_t(P), _t(mu), _t(nu), tau]
        got = _guarded_answer("2", "ipo_optimum", student_ipo_optimum, args, mu.shape, where)
        expected = _np_softmax(np.log(mu) + P @ nu / tau)
        if not np.allclose(got.numpy(), expected, rtol=_RTOL, atol=1e-300):
            _compare("2", "ipo_optimum", where, got, expected)


# --------------------------------------------------------------------- lab 3: Nash-MD step


def _np_nash_md_step(pi: np.ndarray, mu: np.ndarray, P: np.ndarray, tau: float, eta: float):
    """Munos et al. Eq. (8)-(9) in numpy, in log space."""
    m = eta * tau
    mix = _np_softmax((1.0 - m) * np.log(pi) + m * np.log(mu))
    return _np_softmax(np.log(mix) + eta * (P @ mix))


def _step_cases() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float, float]]:
    rng = np.random.default_rng(_SEED + 3)
    cases = []
    for k, tau, eta in [(5, 0.2, 1.5), (3, 0.05, 20.0), (6, 1.0, 0.3)]:
        P = _random_game(rng, k)
        pi, mu = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
        cases.append((f"a random {k}-action game, tau={tau:g}, eta={eta:g}", P, pi, mu, tau, eta))
    P = _random_game(rng, 4)
    pi = np.array([0.97, 0.01, 0.01, 0.01])
    cases.append(
        ("a random 4-action game, pi_t near a vertex, tau=0.3, eta=2", P, pi, pi[::-1], 0.3, 2.0)
    )
    return cases


def grade_nash_md_step(student_nash_md_step: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 3: one Nash-MD step on fresh games, policies and step sizes.

    Random games with 3 to 6 actions, random ``pi_t`` and ``mu``, ``eta * tau`` from 0.3 to 1
    (the end of the schedule's first step), and a ``pi_t`` near a vertex, compared with numpy's
    geometric mixture and mirror step, under the library-call guard (so ``pt.nash_md`` or
    ``pt.ipo_optimum`` inside the answer fail it; ``pt.geometric_mixture`` and ``pt.win_rates`` are
    allowed).

    Parameters
    ----------
    student_nash_md_step : callable
        ``(pi, mu, P, tau, eta) -> next policy``.

    Raises
    ------
    LabCheckError
        On the first failing transition, or when the answer calls the library.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 6, Eq. (8)-(9).
    """
    for where, P, pi, mu, tau, eta in _step_cases():
        args = [_t(pi), _t(mu), _t(P), tau, eta]
        got = _guarded_answer("3", "nash_md_step", student_nash_md_step, args, mu.shape, where)
        _compare("3", "nash_md_step", where, got, _np_nash_md_step(pi, mu, P, tau, eta))


# ------------------------------------------------------------------ lab 4: RLHF against Nash

BETA = 0.01


def _np_bt_fit(P: np.ndarray, nu: np.ndarray, iters: int = 200) -> np.ndarray:
    """Bradley-Terry rewards (mean zero) for pairs from ``nu x nu``, by Newton's method in numpy."""
    k = len(nu)
    r = np.zeros(k)
    weights = np.outer(nu, nu)
    for _ in range(iters):
        s = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
        grad = (weights * (P - s)).sum(1)
        curv = weights * s * (1.0 - s)
        hess = np.diag(curv.sum(1)) - curv  # minus the Hessian: a graph Laplacian
        step = np.linalg.lstsq(hess + np.ones((k, k)) / k, grad, rcond=None)[0]
        r = r + step - (r + step).mean()
        if np.abs(step).max() < 1e-14:
            break
    return r


def _student_game_np(exercise: str, make_game: Any) -> tuple[np.ndarray, np.ndarray]:
    answer = _call(exercise, "function", make_game, [], "no input (it returns your game)")
    try:
        P, mu = (np.asarray(torch.as_tensor(x, dtype=DTYPE), dtype=np.float64) for x in answer)
    except (TypeError, ValueError, RuntimeError):
        raise LabCheckError(f"exercise {exercise}: return a pair (P, mu)") from None
    ok = (
        P.shape == (3, 3)
        and mu.shape == (3,)
        and np.allclose(P + P.T, 1.0, atol=1e-9)
        and bool(((P > 0) & (P < 1)).all())
        and bool((mu > 0).all())
        and abs(mu.sum() - 1.0) < 1e-9
    )
    if not ok:
        raise LabCheckError(
            f"exercise {exercise}: the hidden test needs a 3 x 3 complementary P with entries "
            "strictly between 0 and 1 and a full-support mu (run the self-check first)"
        )
    return P, mu / mu.sum()


def _condorcet(P: np.ndarray) -> int | None:
    wins = [all(P[i, j] > 0.5 for j in range(3) if j != i) for i in range(3)]
    return wins.index(True) if any(wins) else None


def grade_condorcet_disagreement(make_game: Callable[[], Any]) -> None:
    r"""Hidden test of exercise 4a, recomputed in numpy: a Condorcet winner that RLHF misses.

    The Condorcet winner from the pairwise majorities; the Bradley-Terry fit on pairs from ``mu``
    by Newton's method; the RLHF optimum :math:`\mu\exp(\hat r/\beta)/Z` at ``beta = 0.01``. Passes
    when the RLHF optimum's largest probability is on another action than the Condorcet winner.

    Parameters
    ----------
    make_game : callable
        ``() -> (P, mu)``.

    Raises
    ------
    LabCheckError
        When the numpy recomputation does not confirm the disagreement.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3; Azar et al., arXiv:2310.12036v2, Eq. (2)-(3).
    """
    P, mu = _student_game_np("4a", make_game)
    c = _condorcet(P)
    pi = _np_softmax(np.log(mu) + _np_bt_fit(P, mu) / BETA)
    if c is None or int(pi.argmax()) == c:
        raise LabCheckError(
            f"exercise 4a: the hidden recomputation finds no disagreement (Condorcet winner {c}, "
            f"RLHF optimum {np.round(pi, 6).tolist()})"
        )


def grade_cycle_disagreement(make_game: Callable[[], Any]) -> None:
    r"""Hidden test of exercise 4b, recomputed in numpy: a cycle where RLHF is nearly deterministic.

    No Condorcet winner; the RLHF optimum (BT fit on pairs from ``mu``, ``beta = 0.01``) puts at
    least 0.9 on one action a; the Nash equilibrium of the 3-action cycle, the kernel
    :math:`\propto (A_{12}, A_{20}, A_{01})` of :math:`A = P - 1/2`, puts at most 1/2 on a.

    Parameters
    ----------
    make_game : callable
        ``() -> (P, mu)``.

    Raises
    ------
    LabCheckError
        When the numpy recomputation does not confirm the claim.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3 and 3.2.
    """
    P, mu = _student_game_np("4b", make_game)
    pi = _np_softmax(np.log(mu) + _np_bt_fit(P, mu) / BETA)
    a = int(pi.argmax())
    A = P - 0.5
    nash = np.array([A[1, 2], A[2, 0], A[0, 1]])
    nash = nash / nash.sum() if _condorcet(P) is None else None
    if nash is None or pi[a] < 0.9 or nash[a] > 0.5:
        raise LabCheckError(
            f"exercise 4b: the hidden recomputation does not confirm the claim (RLHF optimum "
            f"{np.round(pi, 6).tolist()}, Nash equilibrium "
            f"{None if nash is None else np.round(nash, 6).tolist()})"
        )


# ------------------------------------------------------------------------ lab 5: KTO


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def grade_kto_loss(student_kto_loss: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 5a: the KTO loss on fresh examples, labels and weights.

    Three random batches (sizes 6, 2, 9; ``beta`` 0.07, 1.7, 4; unequal weights; ``z0`` of both
    signs) and a batch with rewards +-300 from ``z0``, compared with numpy's
    :math:`d\lambda_D\sigma(-\beta(r - z_0)) + (1-d)\lambda_U\sigma(\beta(r - z_0))`, under the
    library-call guard (``pt.kto_loss`` fails it).

    Parameters
    ----------
    student_kto_loss : callable
        ``(logratio, reference_point, desirable, beta, desirable_weight, undesirable_weight)``.

    Raises
    ------
    LabCheckError
        On the first failing batch, or when the answer calls the library.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4.
    """
    rng = np.random.default_rng(_SEED + 5)
    cases = []
    for b, z0, beta, wd, wu in [
        (6, 0.35, 0.07, 1.0, 1.3),
        (2, -0.4, 1.7, 0.8, 1.0),
        (9, 0.0, 4.0, 1.2, 0.9),
    ]:
        cases.append(
            (f"{b} random examples", rng.normal(0.0, 2.0, b), z0, rng.random(b) < 0.5, beta, wd, wu)
        )
    cases.append(
        (
            "4 examples 300 from z0",
            np.array([300.0, -300.0, 300.0, -300.0]),
            0.1,
            np.array([True, False, False, True]),
            3.0,
            1.0,
            1.0,
        )
    )
    for name, r, z0, d, beta, wd, wu in cases:
        where = f"{name} with z0={z0:g}, beta={beta:g}, weights ({wd:g}, {wu:g})"
        args = [_t(r), z0, torch.as_tensor(d), beta, wd, wu]
        got = _guarded_answer("5a", "kto_loss", student_kto_loss, args, r.shape, where)
        x = beta * (r - z0)
        expected = np.where(d, wd * _np_sigmoid(-x), wu * _np_sigmoid(x))
        _compare("5a", "kto_loss", where, got, expected)


def _np_policies(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    cases = []
    for k in (3, 5, 7):
        cases.append(
            (f"random {k}-action policies", rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k)))
        )
    pi = rng.dirichlet(np.ones(4))
    pi[1] = 0.0
    cases.append(("a 4-action pi with a zero entry", pi / pi.sum(), rng.dirichlet(np.ones(4))))
    return cases


def grade_kl_reference_point(student_kl: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 5b: KL(pi || mu) on fresh policies (one pi with a zero entry).

    Compared with numpy's :math:`\sum_{\pi > 0}\pi\log(\pi/\mu)`, under the library-call guard,
    which here also forbids ``pt.kl`` (``prefopt_toy.policies.kl``): the exercise is that sum.

    Parameters
    ----------
    student_kl : callable
        ``(pi, mu) -> scalar``.

    Raises
    ------
    LabCheckError
        On the first failing pair, or when the answer calls the library.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4.
    """
    for where, pi, mu in _np_policies(np.random.default_rng(_SEED + 6)):
        got = _guarded_answer(
            "5b",
            "kl_reference_point",
            student_kl,
            [_t(pi), _t(mu)],
            (),
            where,
            also=("prefopt_toy.policies.kl",),
        )
        support = pi > 0
        expected = np.array((pi[support] * np.log(pi[support] / mu[support])).sum())
        _compare("5b", "kl_reference_point", where, got, expected)


def grade_trl_reference_point(student_reference_point: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 5c: TRL's reference point on fresh batches of log-ratios.

    Batches of 1, 8 and 16 log-ratios of mixed signs, one with a negative mean; compared with
    numpy's ``max(0, mean)``, under the library-call guard (``pt.kto_reference_point`` fails it).

    Parameters
    ----------
    student_reference_point : callable
        ``(mismatched_logratios) -> scalar``.

    Raises
    ------
    LabCheckError
        On the first failing batch, or when the answer calls the library.

    References
    ----------
    TRL v1.13.0 ``KTOTrainer``; Ethayarajh et al., arXiv:2402.01306v4, Sec. 4.1.
    """
    rng = np.random.default_rng(_SEED + 7)
    batches = [
        rng.normal(0.3, 1.0, 8),
        rng.normal(-0.5, 0.2, 16),
        np.array([0.77]),
        rng.normal(0.0, 3.0, 5),
    ]
    for x in batches:
        where = f"{len(x)} log-ratios with mean {x.mean():.4g}"
        got = _guarded_answer(
            "5c", "trl_reference_point", student_reference_point, [_t(x)], (), where
        )
        _compare("5c", "trl_reference_point", where, got, np.array(max(0.0, x.mean())))


def grade_kto_dropped(student_dropped: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 5d: the actions KTO drops, on fresh games, data and weights.

    Random complementary games with 4 to 6 actions, random ``mu`` and weights; the expected mask
    :math:`\lambda_U(1 - d) > \lambda_D d`, :math:`d = P\mu`, in numpy; under the library-call guard
    (so running ``pt.ALGORITHMS["kto"]`` inside the answer fails it).

    Parameters
    ----------
    student_dropped : callable
        ``(P, mu, desirable_weight, undesirable_weight) -> (K,)`` booleans.

    Raises
    ------
    LabCheckError
        On the first failing game, or when the answer calls the library.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4; ``prefopt_toy.dynamics.unpaired``.
    """
    rng = np.random.default_rng(_SEED + 8)
    for k, wd, wu in [(4, 1.0, 1.25), (6, 1.33, 1.0), (5, 0.9, 1.1)]:
        P = _random_game(rng, k)
        mu = rng.dirichlet(np.ones(k))
        where = f"a random {k}-action game, desirable_weight={wd:g}, undesirable_weight={wu:g}"
        got = _guarded_answer(
            "5d",
            "kto_dropped",
            student_dropped,
            [_t(P), _t(mu), wd, wu],
            mu.shape,
            where,
            dtypes=("float64", "bool", "int64"),
        )
        d = P @ mu
        _compare("5d", "kto_dropped", where, got, (wu * (1.0 - d) > wd * d).astype(np.float64))


# ------------------------------------------------------------- lab 6: length and R-DPO


def _np_bt(s: np.ndarray) -> np.ndarray:
    return _np_sigmoid(s[:, None] - s[None, :])


def _length_cases(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, float]]:
    cases = []
    for k, kappa in [(3, 0.12), (5, 0.7), (6, 0.02)]:
        cases.append((rng.normal(0.0, 1.0, k), rng.integers(1, 60, k).astype(np.float64), kappa))
    return cases


def grade_length_biased_preferences(student_judge: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 6a: the length-biased Bradley-Terry judge on fresh inputs.

    Random qualities, lengths from 1 to 59 tokens and ``kappa`` from 0.02 to 0.7; compared with
    numpy's :math:`\sigma(s_i - s_j)`, :math:`s = q + \kappa L`, under the library-call guard.

    Parameters
    ----------
    student_judge : callable
        ``(q, lengths, kappa) -> P``.

    Raises
    ------
    LabCheckError
        On the first failing input, or when the answer calls the library.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 2-3.
    """
    for q, L, kappa in _length_cases(np.random.default_rng(_SEED + 9)):
        k = len(q)
        where = f"{k} actions, kappa={kappa:g}"
        got = _guarded_answer(
            "6a", "length_biased_preferences", student_judge, [_t(q), _t(L), kappa], (k, k), where
        )
        _compare("6a", "length_biased_preferences", where, got, _np_bt(q + kappa * L))


def grade_dpo_length_optimum(student_optimum: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 6b: the DPO optimum on a length-biased judge, fresh inputs.

    Random qualities, lengths, ``mu`` and ``beta`` (down to 0.003, where ``exp`` overflows); the
    expected :math:`\mu\exp((q + \kappa L)/\beta)/Z` as a numpy softmax, under the library-call guard.

    Parameters
    ----------
    student_optimum : callable
        ``(q, lengths, kappa, mu, beta) -> policy``.

    Raises
    ------
    LabCheckError
        On the first failing input, or when the answer calls the library.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, App. B Prop. 4.
    """
    rng = np.random.default_rng(_SEED + 10)
    for (q, L, kappa), beta in zip(_length_cases(rng), [0.3, 2.5, 0.003]):
        mu = rng.dirichlet(np.ones(len(q)))
        where = f"{len(q)} actions, kappa={kappa:g}, beta={beta:g}"
        args = [_t(q), _t(L), kappa, _t(mu), beta]
        got = _guarded_answer("6b", "dpo_length_optimum", student_optimum, args, mu.shape, where)
        expected = _np_softmax(np.log(mu) + (q + kappa * L) / beta)
        if not np.allclose(got.numpy(), expected, rtol=_RTOL, atol=1e-300):
            _compare("6b", "dpo_length_optimum", where, got, expected)


def grade_rdpo_loss(student_rdpo_loss: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 6c: the R-DPO loss on fresh pairs, lengths and hyperparameters.

    The pair batches of :func:`grade_dpo_loss` with random lengths (1 to 199 tokens) and ``alpha``
    0.01 to 0.4; compared with numpy's ``logaddexp(0, -(beta h + alpha (Lw - Ll)))``, under the
    library-call guard (``pt.rdpo_loss`` fails it).

    Parameters
    ----------
    student_rdpo_loss : callable
        ``(logp_chosen, logp_rejected, ref_chosen, ref_rejected, length_chosen, length_rejected,
        beta, alpha) -> losses``.

    Raises
    ------
    LabCheckError
        On the first failing batch, or when the answer calls the library.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3.
    """
    rng = np.random.default_rng(_SEED + 11)
    for (name, logps, beta), alpha in zip(_pair_cases(), [0.03, 0.4, 0.01, 0.2]):
        b = logps.shape[1]
        lw, ll = (
            rng.integers(1, 200, b).astype(np.float64),
            rng.integers(1, 200, b).astype(np.float64),
        )
        pc, pr, rc, rr = logps
        where = f"{name} with random lengths, beta={beta:g}, alpha={alpha:g}"
        args = [*map(_t, logps), _t(lw), _t(ll), beta, alpha]
        got = _guarded_answer("6c", "rdpo_loss", student_rdpo_loss, args, (b,), where)
        h = (pc - rc) - (pr - rr)
        _compare("6c", "rdpo_loss", where, got, np.logaddexp(0.0, -(beta * h + alpha * (lw - ll))))


def grade_rdpo_optimum(student_rdpo_optimum: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 6d: the R-DPO optimum on fresh rewards, lengths and hyperparameters.

    Random rewards, ``mu``, lengths, ``beta`` (down to 0.004) and ``alpha``; the expected
    :math:`\mu\exp((r - \alpha L)/\beta)/Z` as a numpy softmax, under the library-call guard
    (``pt.rdpo_optimum`` fails it).

    Parameters
    ----------
    student_rdpo_optimum : callable
        ``(r, mu, lengths, beta, alpha) -> policy``.

    Raises
    ------
    LabCheckError
        On the first failing input, or when the answer calls the library.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3.
    """
    rng = np.random.default_rng(_SEED + 12)
    for (r, L, alpha), beta in zip(_length_cases(rng), [0.7, 0.004, 3.0]):
        mu = rng.dirichlet(np.ones(len(r)))
        where = f"{len(r)} actions, beta={beta:g}, alpha={alpha:g}"
        args = [_t(r), _t(mu), _t(L), beta, alpha]
        got = _guarded_answer("6d", "rdpo_optimum", student_rdpo_optimum, args, mu.shape, where)
        expected = _np_softmax(np.log(mu) + (r - alpha * L) / beta)
        if not np.allclose(got.numpy(), expected, rtol=_RTOL, atol=1e-300):
            _compare("6d", "rdpo_optimum", where, got, expected)


def grade_debiasing_alpha(student_alpha: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 6e: the debiasing weight on fresh (kappa, beta) pairs.

    ``alpha = kappa`` whatever beta: the optimum :math:`\mu\exp((q + \kappa L - \alpha L)/\beta)/Z`
    is length-free exactly then. Checked on four pairs, under the library-call guard.

    Parameters
    ----------
    student_alpha : callable
        ``(kappa, beta) -> alpha``.

    Raises
    ------
    LabCheckError
        On the first failing pair, or when the answer calls the library.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3.
    """
    for kappa, beta in [(0.17, 0.3), (2.0, 0.05), (0.004, 7.0), (0.6, 1.0)]:
        where = f"kappa={kappa:g}, beta={beta:g}"
        got = _guarded_answer("6e", "debiasing_alpha", student_alpha, [kappa, beta], (), where)
        _compare("6e", "debiasing_alpha", where, got, np.array(kappa))


# ------------------------------------------------------------- lab 7: the sequential KL (TDPO)


def _np_tree(
    vocab_size: int, max_length: int
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Prefixes and sequences of a token tree, enumerated here (EOS = the last token)."""
    eos = vocab_size - 1
    prefixes = [p for k in range(max_length) for p in itertools.product(range(eos), repeat=k)]
    sequences = [(*p, eos) for p in prefixes]
    sequences += list(itertools.product(range(eos), repeat=max_length))  # truncated, no EOS
    return prefixes, sequences


def _np_tables(
    rng: np.random.Generator, prefixes: list[tuple[int, ...]], v: int, concentration: float
) -> dict[tuple[int, ...], np.ndarray]:
    """A next-token distribution per prefix, Dirichlet rows (small concentration: near a vertex)."""
    rows = {}
    for p in prefixes:
        row = rng.dirichlet(np.full(v, concentration))
        row = np.maximum(row, 1e-30)
        rows[p] = row / row.sum()
    return rows


def _torch_tables(tables: dict[tuple[int, ...], np.ndarray]) -> dict[tuple[int, ...], Tensor]:
    return {p: _t(row) for p, row in tables.items()}


def _np_prob(tables: dict, y: tuple[int, ...]) -> float:
    return float(np.prod([tables[y[:t]][tok] for t, tok in enumerate(y)]))


def _np_kl(mu: np.ndarray, pi: np.ndarray) -> float:
    return float((mu * (np.log(mu) - np.log(pi))).sum())


def _np_seqkl(mu: dict, pi: dict, y: tuple[int, ...]) -> float:
    return sum(_np_kl(mu[y[:t]], pi[y[:t]]) for t in range(len(y)))


def _token_cases() -> list[tuple[str, list, list, dict, dict]]:
    """(name, prefixes, sequences, mu, pi) on trees of other shapes than the self-check's."""
    rng = np.random.default_rng(_SEED + 13)
    cases = []
    for v, t, conc in [(4, 2, 1.0), (2, 4, 0.7), (3, 3, 0.15), (5, 2, 2.0)]:
        prefixes, sequences = _np_tree(v, t)
        mu = _np_tables(rng, prefixes, v, 3.0)
        pi = _np_tables(rng, prefixes, v, conc)
        name = f"a V={v}, T={t} tree ({len(sequences)} sequences), random mu and pi"
        cases.append((name, prefixes, sequences, mu, pi))
    return cases


def _grade_per_sequence(
    exercise: str,
    what: str,
    fn: Any,
    args: Callable[[tuple[int, ...]], list[Any]],
    sequences: list,
    oracle: Callable[[tuple[int, ...]], float],
    where: str,
    atol: float,
) -> None:
    got = torch.stack(
        [_guarded_answer(exercise, what, fn, args(y), (), f"{where}, y={y}") for y in sequences]
    )
    expected = np.array([oracle(y) for y in sequences])
    if not np.allclose(got.numpy(), expected, rtol=_RTOL, atol=atol):
        _compare(exercise, what, where, got, expected)


def grade_sequence_probability(student_probability: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 7a: :math:`\pi(y) = \prod_t \pi(y_t \mid y_{<t})` on fresh trees.

    Trees of shapes the self-check does not use (V=4 T=2, V=2 T=4, V=5 T=2, and V=3 T=3 with rows
    near a vertex), random Dirichlet tables, every sequence (EOS-ended and truncated); compared with
    a numpy product along the path over the tree enumerated here, under the library-call guard.

    Parameters
    ----------
    student_probability : callable
        ``(next_token: dict, y: tuple) -> scalar``.

    Raises
    ------
    LabCheckError
        On the first failing tree, or when the answer calls the library.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 3.
    """
    for name, _, sequences, _, pi in _token_cases():
        nxt = _torch_tables(pi)
        _grade_per_sequence(
            "7a",
            "sequence_probability",
            student_probability,
            lambda y, n=nxt: [n, y],
            sequences,
            lambda y, p=pi: _np_prob(p, y),
            name,
            1e-300,
        )


def grade_prefix_kl(student_kl: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 7b: :math:`KL(\mu(\cdot|s) \| \pi(\cdot|s))` on fresh distributions.

    Random pairs with 3, 6 and 9 tokens, one ``pi`` near a vertex (entries down to 1e-30); numpy's
    :math:`\sum_v \mu\log(\mu/\pi)`, under the library-call guard, which here also forbids ``pt.kl``.

    Parameters
    ----------
    student_kl : callable
        ``(mu_s, pi_s) -> scalar``.

    Raises
    ------
    LabCheckError
        On the first failing pair, or when the answer calls the library.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4.
    """
    rng = np.random.default_rng(_SEED + 14)
    pairs = [
        (rng.dirichlet(np.ones(v)), rng.dirichlet(np.ones(v) * c))
        for v, c in [(3, 1.0), (6, 0.5), (9, 2.0)]
    ]
    vertex = np.array([1.0 - 3e-30, 1e-30, 1e-30, 1e-30])
    pairs.append((rng.dirichlet(np.ones(4)), vertex))
    for mu, pi in pairs:
        where = f"a random {len(mu)}-token pair" + (
            " with pi near a vertex" if pi.min() < 1e-20 else ""
        )
        got = _guarded_answer(
            "7b",
            "prefix_kl",
            student_kl,
            [_t(mu), _t(pi)],
            (),
            where,
            also=("prefopt_toy.policies.kl",),
        )
        _compare("7b", "prefix_kl", where, got, np.array(_np_kl(mu, pi)))


def grade_sequential_kl(student_seqkl: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 7c: :math:`\mathrm{SeqKL}(y)` on every sequence of fresh trees.

    The trees and tables of :func:`grade_sequence_probability`; numpy's sum of the per-prefix KLs
    (reference first) along each sequence, the EOS position included, under the library-call guard.

    Parameters
    ----------
    student_seqkl : callable
        ``(mu_next: dict, pi_next: dict, y: tuple) -> scalar``.

    Raises
    ------
    LabCheckError
        On the first failing tree, or when the answer calls the library.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4; official ``_tdpo_get_batch_logps`` @ 2a736ec.
    """
    for name, _, sequences, mu, pi in _token_cases():
        m, p = _torch_tables(mu), _torch_tables(pi)
        _grade_per_sequence(
            "7c",
            "sequential_kl",
            student_seqkl,
            lambda y, m=m, p=p: [m, p, y],
            sequences,
            lambda y, mu=mu, pi=pi: _np_seqkl(mu, pi, y),
            name,
            _ATOL,
        )


def _grade_tdpo(exercise: str, what: str, fn: Any, variant: str) -> None:
    rng = np.random.default_rng(_SEED + (15 if variant == "tdpo1" else 16))
    for (name, logps, beta), alpha in zip(_pair_cases(), [0.5, 0.2, 1.3, 0.7]):
        b = logps.shape[1]
        kl_w, kl_l = rng.exponential(0.5, b), rng.exponential(0.5, b)
        a = 1.0 if variant == "tdpo1" else alpha
        hyper = [beta] if variant == "tdpo1" else [beta, alpha]
        where = f"{name} with random SeqKLs, beta={beta:g}" + (
            f", alpha={alpha:g}" if variant == "tdpo2" else ""
        )
        leaves = [*map(_t, logps), _t(kl_w).requires_grad_(True), _t(kl_l).requires_grad_(True)]
        with torch.enable_grad():
            value = _guarded_value(exercise, what, fn, [*leaves, *hyper], where)
            got, dtype = _as_result(exercise, what, value, (b,), where)
            if dtype != "float64":
                raise LabCheckError(
                    f"exercise {exercise}: your {what} returned {dtype}; keep float64\n"
                    f"  hidden test on {where}"
                )
            pc, pr, rc, rr = logps
            z = (pc - rc) - (pr - rr) - a * (kl_l - kl_w)
            _compare(exercise, what, where, got, np.logaddexp(0.0, -beta * z))
            if not (isinstance(value, Tensor) and value.requires_grad):
                raise LabCheckError(
                    f"exercise {exercise}: your {what} carries no gradient on a hidden test\n"
                    f"  {where}"
                )
            g_w, g_l = torch.autograd.grad(
                value.sum(), leaves[4:], allow_unused=True, materialize_grads=True
            )
        slope = beta * _np_sigmoid(-beta * z)  # d loss / d z = -beta sigma(-beta z)
        expected_w = np.zeros(b) if variant == "tdpo2" else -a * slope
        _compare(exercise, f"{what}'s gradient in seqkl_chosen", where, g_w, expected_w)
        _compare(exercise, f"{what}'s gradient in seqkl_rejected", where, g_l, a * slope)


def grade_tdpo1_loss(student_tdpo1_loss: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 7d: TDPO1's value and gradients on fresh pairs and sequential KLs.

    The pair batches of :func:`grade_dpo_loss` (margins +-800 included) with random sequential KLs;
    the value against numpy's ``logaddexp(0, -beta z)``, :math:`z = u - (\mathrm{SeqKL}_l -
    \mathrm{SeqKL}_w)`, and the autograd gradients in both KLs against
    :math:`\mp\beta\sigma(-\beta z)`, under the library-call guard (``pt.tdpo_loss`` fails it).

    Parameters
    ----------
    student_tdpo1_loss : callable
        ``(logp_chosen, logp_rejected, ref_chosen, ref_rejected, seqkl_chosen, seqkl_rejected,
        beta) -> losses``.

    Raises
    ------
    LabCheckError
        On the first failing batch, or when the answer calls the library.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4; official ``trainers.py::tdpo_loss``.
    """
    _grade_tdpo("7d", "tdpo1_loss", student_tdpo1_loss, "tdpo1")


def grade_tdpo2_loss(student_tdpo2_loss: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 7e: TDPO2's value and stop-gradient on fresh pairs.

    As :func:`grade_tdpo1_loss` with ``alpha`` 0.2 to 1.3: the value with
    :math:`z = u - \alpha(\mathrm{SeqKL}_l - \mathrm{SeqKL}_w)`, a zero gradient in
    ``seqkl_chosen`` and :math:`\alpha\beta\sigma(-\beta z)` in ``seqkl_rejected``.

    Parameters
    ----------
    student_tdpo2_loss : callable
        ``(logp_chosen, logp_rejected, ref_chosen, ref_rejected, seqkl_chosen, seqkl_rejected,
        beta, alpha) -> losses``.

    Raises
    ------
    LabCheckError
        On the first failing batch, or when the answer calls the library.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4; official ``trainers.py::tdpo_loss``.
    """
    _grade_tdpo("7e", "tdpo2_loss", student_tdpo2_loss, "tdpo2")


def grade_expected_sequential_kl(student_expected: Callable[..., Any]) -> None:
    r"""Hidden test of exercise 7f: :math:`\sum_y \pi(y)\,\mathrm{SeqKL}(y)` on fresh trees.

    The trees and tables of :func:`grade_sequence_probability` (the sequences in this module's own
    order); numpy's weighted sum, under the library-call guard.

    Parameters
    ----------
    student_expected : callable
        ``(mu_next: dict, pi_next: dict, sequences) -> scalar``.

    Raises
    ------
    LabCheckError
        On the first failing tree, or when the answer calls the library.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4.
    """
    for name, _, sequences, mu, pi in _token_cases():
        args = [_torch_tables(mu), _torch_tables(pi), tuple(sequences)]
        got = _guarded_answer("7f", "expected_sequential_kl", student_expected, args, (), name)
        expected = sum(_np_prob(pi, y) * _np_seqkl(mu, pi, y) for y in sequences)
        _compare("7f", "expected_sequential_kl", name, got, np.array(expected))
