r"""Coursework labs: auto-checkers for the exercises in ``notebooks/labs/``, and the student builder.

Each lab notebook asks the student to write a function in a cell marked ``# YOUR CODE``; the next
cell calls a checker from this module, e.g. ``labs.check_dpo_loss(dpo_loss)``. A checker runs the
student's function on several named inputs and compares the result with the library:

- on success it prints and returns a short "passed N checks" message;
- on failure it raises :class:`LabCheckError` (an ``AssertionError``) saying which input failed,
  what was expected, what came back and, when the answer matches a common mistake (sign flipped,
  ``beta`` missing, ``log(sigmoid(x))`` overflowing, mixture weights swapped, ...), a hint;
- an exercise left untouched raises ``NotImplementedError`` inside the student's code, which the
  checker turns into a readable "exercise N is not done yet" message.

The oracles are the library's own solvers (``dpo_loss``, ``ipo_loss``, ``ipo_optimum``,
``nash_md``, ``rlhf_optimum``, ``nash_equilibrium``, ``condorcet_winner``). The wrong formulas
below exist only to recognise mistakes and phrase hints; they never decide pass or fail.

Solutions and student versions come from one source. A solution notebook
``notebooks/labs/solutions/labN_name.py`` marks each solution region with ``# BEGIN SOLUTION`` /
``# END SOLUTION`` lines; :func:`student_version` replaces every region with a
``raise NotImplementedError(...)`` at the same indentation, and ``python -m prefopt_toy.labs build``
(:func:`build_student_notebooks`) writes ``notebooks/labs/labN_name.py`` and syncs the ``.ipynb``
of both with jupytext.

References
----------
Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO);
Munos et al., arXiv:2312.00886v4 (Nash-MD, RLHF vs. Nash).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._validate import DTYPE, as_policy
from .bt import bt_fit
from .dynamics import nash_md
from .game_properties import condorcet_winner
from .games import bradley_terry, check_preference_matrix, random_game, rock_paper_scissors, three_voter_types
from .losses import dpo_loss, ipo_loss, margin
from .nash import exploitability, nash_equilibrium
from .optima import gibbs_policy, ipo_optimum, rlhf_optimum
from .policies import win_rates

__all__ = [
    "LabCheckError",
    "CheckPassed",
    "check_dpo_loss",
    "check_ipo_loss",
    "check_ipo_optimum",
    "check_nash_md_step",
    "check_condorcet_disagreement",
    "check_cycle_disagreement",
    "student_version",
    "build_student_notebooks",
    "BEGIN_SOLUTION",
    "END_SOLUTION",
]

BEGIN_SOLUTION = "# BEGIN SOLUTION"
END_SOLUTION = "# END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("# YOUR CODE: replace this line with your solution")'

# Agreement required with the library. Loose enough for any sensible float64 formula (the
# library works in log space, a student may not), tight enough to catch every real mistake.
RTOL = 1e-8
ATOL = 1e-12


class LabCheckError(AssertionError):
    """A lab exercise gave a wrong (or no) answer; the message says on which input and why.

    References
    ----------
    The exercises follow Rafailov et al., arXiv:2305.18290v3; Azar et al., arXiv:2310.12036v2;
    Munos et al., arXiv:2312.00886v4.
    """


class CheckPassed(str):
    """The success message of a checker (a ``str``), already printed by the checker.

    In Jupyter, displaying it again as the cell's value would repeat it, so its IPython display
    hook shows nothing.

    References
    ----------
    See :class:`LabCheckError`.
    """

    def _ipython_display_(self) -> None:
        return None


# ---------------------------------------------------------------------------------- helpers


def _fmt(x: Any) -> str:
    """Numbers for messages: 6 significant digits, vectors in parentheses."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().tolist()
    if isinstance(x, (list, tuple)):
        return "(" + ", ".join(_fmt(v) for v in x) + ")"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _passed(exercise: str, n_checks: int, extra: str = "") -> CheckPassed:
    message = f"exercise {exercise}: passed {n_checks} checks." + (f"\n{extra}" if extra else "")
    print(message)
    return CheckPassed(message)


def _call(exercise: str, what: str, fn: Any, args: Sequence[Any], where: str) -> Any:
    """Call the student's function; NotImplementedError and crashes become LabCheckError."""
    if not callable(fn):
        raise LabCheckError(
            f"exercise {exercise}: pass your function itself to the checker (e.g. check(my_function), "
            f"without calling it), got a {type(fn).__name__}"
        )
    try:
        # Clones: a function that modifies its inputs in place must not corrupt the next check.
        return fn(*[a.clone() if isinstance(a, Tensor) else a for a in args])
    except NotImplementedError:
        raise LabCheckError(
            f"exercise {exercise} is not done yet: fill in the cell marked # YOUR CODE "
            f"(exercise {exercise}), run it, then run this check again."
        ) from None
    except LabCheckError:
        raise
    except Exception as err:  # the student's code crashed: say where, keep the traceback
        raise LabCheckError(
            f"exercise {exercise}: your {what} raised {type(err).__name__} on {where}: {err}"
        ) from err


def _as_result(exercise: str, what: str, value: Any, shape: tuple[int, ...], where: str) -> Tensor:
    """The student's answer as a float64 tensor of the expected shape, or a LabCheckError."""
    if isinstance(value, Tensor):
        t = value.detach().to(DTYPE)
    else:
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise LabCheckError(
                f"exercise {exercise}: your {what} should return a tensor (or array) of shape "
                f"{shape} on {where}, got {type(value).__name__}"
            ) from None
    if tuple(t.shape) != shape:
        hint = ""
        if t.numel() == 1 and t.ndim < len(shape):
            hint = " (return one value per pair; do not average or sum over the batch)"
        raise LabCheckError(
            f"exercise {exercise}: your {what} should return shape {shape} on {where}, "
            f"got shape {tuple(t.shape)}{hint}"
        )
    return t


def _close(got: Tensor, expected: Tensor, atol: float = ATOL) -> bool:
    return bool(torch.isfinite(got).all()) and torch.allclose(got, expected, rtol=RTOL, atol=atol)


def _diagnose(got: Tensor, variants: Sequence[tuple[str, Callable[[], Tensor]]], atol: float = ATOL) -> str:
    """The hint of the first known mistake whose result matches the student's answer."""
    for hint, compute in variants:
        try:
            wrong = compute()
        except (ValueError, ZeroDivisionError, RuntimeError):
            continue
        if wrong.shape == got.shape and _close(got, wrong, atol):
            return hint
    return ""


def _mismatch(exercise: str, call: str, expected: Tensor, got: Tensor, hint: str) -> LabCheckError:
    if expected.ndim and expected.numel() > 1:
        bad = int(((got - expected).abs() - RTOL * expected.abs()).nan_to_num(float("inf")).argmax())
        detail = f" (first difference at index {bad}: expected {_fmt(float(expected[bad]))}, got {_fmt(float(got[bad]))})"
    else:
        detail = ""
    return LabCheckError(
        f"exercise {exercise}: {call}: expected {_fmt(expected)}, got {_fmt(got)}{detail}"
        + (f" ({hint})" if hint else "")
    )


# ------------------------------------------------------------------------ lab 1: DPO and IPO

# (name, logp_chosen, logp_rejected, ref_chosen, ref_rejected, hyperparameter). The first case
# has distinct reference log-probs and a hyperparameter != 1, so every known mistake shows there.
_LOSS_CASES: list[tuple[str, list[float], list[float], list[float], list[float], float]] = [
    ("one pair", [-1.0], [-3.0], [-1.5], [-2.0], 0.1),
    ("a batch of 4 pairs", [-0.5, -2.0, -4.0, -1.0], [-1.0, -1.0, -0.5, -6.0],
     [-0.7, -1.5, -3.0, -2.0], [-1.2, -0.8, -1.0, -3.0], 0.5),
    ("a batch with margins +-1e3", [0.0, -1000.0, -2.0], [-1000.0, 0.0, -3.0],
     [-5.0, -5.0, -2.5], [-5.0, -5.0, -2.5], 0.1),
    ("an extreme margin +1e3", [0.0], [-1000.0], [-3.0], [-3.0], 1.0),
    ("an extreme margin -1e3", [-1000.0], [0.0], [-3.0], [-3.0], 1.0),
]

_OVERFLOW_HINT = (
    "log(sigmoid(x)) underflows to log 0 = -inf once sigmoid(x) < 1e-308, e.g. at x = -1000; "
    "use torch.nn.functional.logsigmoid(x) or -softplus(-x), which stay finite"
)


def _loss_inputs() -> list[tuple[str, list[Tensor], float, Tensor]]:
    cases = []
    for name, *logps, hyper in _LOSS_CASES:
        tensors = [torch.tensor(v, dtype=DTYPE) for v in logps]
        cases.append((name, tensors, hyper, margin(*tensors)))
    return cases


def _check_pair_loss(exercise: str, fn: Any, hyper_name: str,
                     reference: Callable[[Tensor, float], Tensor],
                     mistakes: Callable[[list[Tensor], Tensor, float], list[tuple[str, Callable[[], Tensor]]]],
                     what: str) -> int:
    cases = _loss_inputs()
    for name, logps, hyper, h in cases:
        where = f"input '{name}'"
        call = f"{what} on {where} (margin h = {_fmt(h)}) with {hyper_name}={hyper:g}"
        got = _as_result(exercise, what, _call(exercise, what, fn, [*logps, hyper], where), tuple(h.shape), where)
        expected = reference(h, hyper)
        if _close(got, expected):
            continue
        if not bool(torch.isfinite(got).all()):
            hint = _OVERFLOW_HINT if h.abs().max() >= 100 else "your loss is not finite"
        else:
            hint = _diagnose(got, mistakes(logps, h, hyper))
        raise _mismatch(exercise, call, expected, got, hint)
    return len(cases)


def _dpo_mistakes(logps: list[Tensor], h: Tensor, beta: float) -> list[tuple[str, Callable[[], Tensor]]]:
    pc, pr, rc, rr = logps
    return [
        ("did you flip the sign of the margin? the loss is -log sigmoid(+beta * h)", lambda: dpo_loss(-h, beta)),
        ("beta seems to be missing: the sigmoid's argument is beta * h", lambda: dpo_loss(h, 1.0)),
        ("did you divide by beta? the sigmoid's argument is beta * h", lambda: dpo_loss(h, 1.0 / beta)),
        ("the minus sign is missing: the loss is -log sigmoid(beta * h) >= 0", lambda: -dpo_loss(h, beta)),
        ("the reference log-probs are missing: h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)",
         lambda: dpo_loss(pc - pr, beta)),
        ("the reference log-ratio enters with the wrong sign: h = (logp_chosen - logp_rejected) - "
         "(ref_chosen - ref_rejected)", lambda: dpo_loss(pc - pr + rc - rr, beta)),
    ]


def _ipo_mistakes(logps: list[Tensor], h: Tensor, tau: float) -> list[tuple[str, Callable[[], Tensor]]]:
    pc, pr, rc, rr = logps
    return [
        ("the target margin is 1/(2 tau), not 1/tau", lambda: (h - 1.0 / tau) ** 2),
        ("the target is 1/(2 tau): '1/2*tau' means tau/2 in Python; write 1 / (2 * tau)", lambda: (h - tau / 2.0) ** 2),
        ("did you flip the sign of the margin? the loss is (h - 1/(2 tau))^2", lambda: ipo_loss(-h, tau)),
        ("the square is missing: the loss is (h - 1/(2 tau))^2", lambda: h - 1.0 / (2.0 * tau)),
        ("the square is missing: the loss is (h - 1/(2 tau))^2, not its absolute value",
         lambda: (h - 1.0 / (2.0 * tau)).abs()),
        ("tau does not multiply the margin: the loss is (h - 1/(2 tau))^2, not (tau h - 1/2)^2",
         lambda: (tau * h - 0.5) ** 2),
        ("the reference log-probs are missing: h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)",
         lambda: ipo_loss(pc - pr, tau)),
        ("the reference log-ratio enters with the wrong sign", lambda: ipo_loss(pc - pr + rc - rr, tau)),
    ]


def check_dpo_loss(student_dpo_loss: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 1a: ``student_dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta)``.

    Expected: one loss per pair, :math:`-\log\sigma(\beta h)` with the margin
    :math:`h = (\log\pi(y_w) - \log\mu(y_w)) - (\log\pi(y_l) - \log\mu(y_l))`, equal to
    ``pt.dpo_loss(pt.margin(...), beta)`` on five inputs, including margins of +-1e3 with
    ``beta = 1`` (where the loss must stay finite).

    Parameters
    ----------
    student_dpo_loss : callable
        Takes four float64 tensors of shape (B,) and a float; returns shape (B,).

    Returns
    -------
    CheckPassed
        The printed success message.

    Raises
    ------
    LabCheckError
        On the first failing input, with the expected and returned values and a hint.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (7).

    Examples
    --------
    >>> import prefopt_toy as pt
    >>> def reference(pc, pr, rc, rr, beta):
    ...     return pt.dpo_loss(pt.margin(pc, pr, rc, rr), beta)
    >>> _ = check_dpo_loss(reference)
    exercise 1a: passed 5 checks.
    """
    n = _check_pair_loss("1a", student_dpo_loss, "beta", dpo_loss, _dpo_mistakes, "dpo_loss")
    return _passed("1a", n)


def check_ipo_loss(student_ipo_loss: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 1b: ``student_ipo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, tau)``.

    Expected: one loss per pair, :math:`(h - \frac{1}{2\tau})^2`, equal to
    ``pt.ipo_loss(pt.margin(...), tau)`` on the five inputs of :func:`check_dpo_loss`.

    Parameters
    ----------
    student_ipo_loss : callable
        Takes four float64 tensors of shape (B,) and a float; returns shape (B,).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint when the answer matches a common mistake.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (17).
    """
    n = _check_pair_loss("1b", student_ipo_loss, "tau", ipo_loss, _ipo_mistakes, "ipo_loss")
    return _passed("1b", n)


# ------------------------------------------------------------------------ lab 2: IPO optimum

_TINY = (1e-200, 1e-300)
# Relative tolerance only, in effect: the entries of order 1e-280 of the tiny-mu game count too.
_POLICY_ATOL = 1e-300


def _ipo_optimum_cases() -> list[tuple[str, Tensor, Tensor, Tensor, float]]:
    """(name, P, mu, nu, tau); ``nu != mu`` and ``mu`` not uniform in the first case."""
    uniform3 = torch.full((3,), 1.0 / 3.0, dtype=DTYPE)
    tiny_mu = torch.tensor([1.0 - sum(_TINY), *_TINY], dtype=DTYPE)
    return [
        ("three voter types (epsilon=0.1), mu=(0.5, 0.3, 0.2), nu=(0.2, 0.2, 0.6)", three_voter_types(0.1),
         torch.tensor([0.5, 0.3, 0.2], dtype=DTYPE), torch.tensor([0.2, 0.2, 0.6], dtype=DTYPE), 0.1),
        ("rock-paper-scissors, mu=(0.6, 0.3, 0.1), nu=mu", rock_paper_scissors(1.0),
         torch.tensor([0.6, 0.3, 0.1], dtype=DTYPE), torch.tensor([0.6, 0.3, 0.1], dtype=DTYPE), 0.5),
        ("Bradley-Terry scores (0, 1, 2, 3), uniform mu, nu=(0.4, 0.3, 0.2, 0.1)",
         bradley_terry([0.0, 1.0, 2.0, 3.0]), torch.full((4,), 0.25, dtype=DTYPE),
         torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=DTYPE), 1.0),
        ("random 5-action game (seed 0), uniform mu and nu", random_game(5, seed=0),
         torch.full((5,), 0.2, dtype=DTYPE), torch.full((5,), 0.2, dtype=DTYPE), 0.05),
        (f"tiny mu entries mu=(1 - 1e-200 - 1e-300, {_TINY[0]:g}, {_TINY[1]:g}), uniform nu",
         three_voter_types(0.1), tiny_mu, uniform3, 0.01),
        ("Bradley-Terry scores (0, 2, 4), small tau = 0.001 (exp(P @ nu / tau) overflows float64)",
         bradley_terry([0.0, 2.0, 4.0]),
         uniform3, uniform3, 0.001),
    ]


def check_ipo_optimum(student_ipo_optimum: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 2: ``student_ipo_optimum(P, mu, nu, tau)``, the IPO optimum.

    Expected: :math:`\pi^*(y) = \mu(y)\exp((P\nu)_y/\tau)/Z`, equal to
    ``pt.ipo_optimum(P, mu, tau, nu=nu)`` (relative tolerance 1e-8 on every entry, so tiny
    entries count) on six games: three voter types, rock-paper-scissors, a 4-action
    Bradley-Terry game, a random 5-action game, one with ``mu`` entries 1e-200 and 1e-300, and one
    with ``tau = 0.001``, where ``exp(P @ nu / tau)`` overflows unless computed in log space.

    Parameters
    ----------
    student_ipo_optimum : callable
        Takes ``P`` (K, K), ``mu`` (K,), ``nu`` (K,) float64 tensors and a float ``tau``;
        returns a policy of shape (K,).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing game, with a hint when the answer matches a common mistake.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (8)-(9) with Psi = identity.
    """
    cases = _ipo_optimum_cases()
    for name, P, mu, nu, tau in cases:
        where = f"game '{name}'"
        got = _as_result("2", "ipo_optimum", _call("2", "ipo_optimum", student_ipo_optimum, [P, mu, nu, tau], where),
                         tuple(mu.shape), where)
        expected = ipo_optimum(P, mu, tau, nu=nu)
        if _close(got, expected, _POLICY_ATOL):
            continue
        call = f"ipo_optimum on {where} with tau={tau:g}"
        if not bool(torch.isfinite(got).all()):
            hint = ("exp overflows (e^710 = inf in float64): compute the logits log(mu) + P @ nu / tau "
                    "and normalise with torch.softmax, which subtracts their maximum first")
        elif abs(float(got.sum()) - 1.0) > 1e-8:
            hint = f"your policy sums to {float(got.sum()):.6g}, not 1: divide by the normaliser Z"
        else:
            uniform = torch.full_like(mu, 1.0 / mu.numel())
            hint = _diagnose(got, [
                ("P is transposed: P[i, j] = Pr(i beats j), so action y's win rate against nu is (P @ nu)[y]",
                 lambda: gibbs_policy(mu, P.T @ nu, tau)),
                ("mu is missing in front of the exponential", lambda: gibbs_policy(uniform, P @ nu, tau)),
                ("tau should divide the win rate, not multiply it", lambda: gibbs_policy(mu, tau * (P @ nu), 1.0)),
                ("the win rate is against nu (the pair distribution), not against mu",
                 lambda: gibbs_policy(mu, P @ mu, tau)),
                ("a tiny mu entry was changed (clamped, or an epsilon added): use log(mu) as it is",
                 lambda: gibbs_policy(mu.clamp_min(1e-12) / mu.clamp_min(1e-12).sum(), P @ nu, tau)),
            ], _POLICY_ATOL)
        raise _mismatch("2", call, expected, got, hint)
    return _passed("2", len(cases))


# ------------------------------------------------------------------------ lab 3: Nash-MD step


def _nash_md_cases() -> list[tuple[str, Tensor, Tensor, Tensor, float, float, Tensor]]:
    """(name, P, mu, pi_t, tau, eta, expected pi_{t+1}), every transition read off ``pt.nash_md``."""
    cases = []
    P1, mu1, tau1, eta1 = three_voter_types(0.1), torch.tensor([0.5, 0.3, 0.2], dtype=DTYPE), 0.1, 0.5
    traj = nash_md(P1, mu1, tau=tau1, steps=3, eta=eta1).policies
    for t in (1, 2):
        cases.append((f"three voter types (epsilon=0.1), mu=(0.5, 0.3, 0.2), constant eta, step t={t}",
                      P1, mu1, traj[t], tau1, eta1, traj[t + 1]))
    P2, mu2, tau2, eta2 = random_game(4, seed=3), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DTYPE), 0.5, 1.2
    traj = nash_md(P2, mu2, tau=tau2, steps=2, eta=eta2).policies
    cases.append(("random 4-action game (seed 3), mu=(0.1, 0.2, 0.3, 0.4), constant eta, step t=1",
                  P2, mu2, traj[1], tau2, eta2, traj[2]))
    # The decaying schedule of Theorem 1, eta_t = 2 / (tau (t + 2)): t = 0 has eta * tau = 1.
    traj = nash_md(P1, mu1, tau=tau1, steps=4).policies
    for t in (0, 3):
        eta_t = 2.0 / (tau1 * (t + 2))
        cases.append((f"three voter types, schedule eta_t = 2/(tau (t+2)), step t={t}",
                      P1, mu1, traj[t], tau1, eta_t, traj[t + 1]))
    return cases


def _nash_md_mistakes(P: Tensor, mu: Tensor, pi: Tensor, tau: float, eta: float) -> list[tuple[str, Callable[[], Tensor]]]:
    lp, lm, m = pi.log(), mu.log(), eta * tau
    mix = torch.softmax((1 - m) * lp + m * lm, -1)
    swapped = torch.softmax(m * lp + (1 - m) * lm, -1)
    unnormalised = ((1 - m) * lp + m * lm).exp()
    return [
        ("wrong mixture direction: the geometric mixture is pi_t^(1 - eta tau) * mu^(eta tau) "
         "(weight eta * tau on mu)", lambda: torch.softmax(swapped.log() + eta * (P @ swapped), -1)),
        ("the opponent is the mixture pi_t^mu, not pi_t: use P @ pi_mix", lambda: torch.softmax(mix.log() + eta * (P @ pi), -1)),
        ("the step starts from the mixture: pi_{t+1} is proportional to pi_mix * exp(eta P pi_mix), not pi_t * ...",
         lambda: torch.softmax(lp + eta * (P @ mix), -1)),
        ("normalise the mixture before computing its win rates P @ pi_mix",
         lambda: torch.softmax(mix.log() + eta * (P @ unnormalised), -1)),
        ("P is transposed: the win rate of action y against pi_mix is (P @ pi_mix)[y]",
         lambda: torch.softmax(mix.log() + eta * (P.T @ mix), -1)),
        ("eta is missing in the exponent: exp(eta * P @ pi_mix)", lambda: torch.softmax(mix.log() + P @ mix, -1)),
        ("the exponent is eta * (P @ pi_mix), not eta * tau * (P @ pi_mix)",
         lambda: torch.softmax(mix.log() + eta * tau * (P @ mix), -1)),
        ("the exponent is eta * (P @ pi_mix), not (P @ pi_mix) / tau", lambda: torch.softmax(mix.log() + (P @ mix) / tau, -1)),
    ]


def check_nash_md_step(student_nash_md_step: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 3: ``student_nash_md_step(pi, mu, P, tau, eta)``, one closed-form Nash-MD step.

    Expected:

    .. math:: \pi_t^\mu \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}, \qquad
              \pi_{t+1} \propto \pi_t^\mu \exp\bigl(\eta\,P\pi_t^\mu\bigr),

    checked on five transitions ``pi_t -> pi_{t+1}`` read off ``pt.nash_md`` trajectories (constant
    steps on two games, and the decaying schedule :math:`\eta_t = 2/(\tau(t+2))` of Theorem 1,
    including ``t = 0`` where :math:`\eta\tau = 1`).

    Parameters
    ----------
    student_nash_md_step : callable
        Takes ``pi`` (K,), ``mu`` (K,), ``P`` (K, K) float64 tensors and floats ``tau``, ``eta``;
        returns the next policy, shape (K,).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing transition, with a hint when the answer matches a common mistake.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 6, Eq. (8)-(9) and Theorem 1.
    """
    cases = _nash_md_cases()
    for name, P, mu, pi, tau, eta, expected in cases:
        where = f"input '{name}' (pi_t = {_fmt(pi)}, tau={tau:g}, eta={eta:g})"
        got = _as_result("3", "nash_md_step", _call("3", "nash_md_step", student_nash_md_step,
                                                     [pi, mu, P, tau, eta], where), tuple(mu.shape), where)
        if _close(got, expected):
            continue
        if not bool(torch.isfinite(got).all()):
            hint = "your policy is not finite"
        elif abs(float(got.sum()) - 1.0) > 1e-8:
            hint = f"your policy sums to {float(got.sum()):.6g}, not 1: normalise pi_{{t+1}}"
        else:
            hint = _diagnose(got, _nash_md_mistakes(P, mu, pi, tau, eta))
        raise _mismatch("3", f"nash_md_step on {where}", expected, got, hint)
    return _passed("3", len(cases))


# ------------------------------------------------------------------- lab 4: RLHF versus Nash

SMALL_BETA = 0.01


def _student_game(exercise: str, make_game: Any) -> tuple[Tensor, Tensor]:
    answer = _call(exercise, "function", make_game, [], "no input (it returns your game)")
    if not (isinstance(answer, (tuple, list)) and len(answer) == 2):
        raise LabCheckError(f"exercise {exercise}: return a pair (P, mu), got {type(answer).__name__}")
    P_raw, mu_raw = answer
    try:
        P = check_preference_matrix(P_raw)
    except ValueError as err:
        raise LabCheckError(f"exercise {exercise}: your P is not a preference matrix: {err}") from None
    if tuple(P.shape) != (3, 3):
        raise LabCheckError(f"exercise {exercise}: P should be 3 x 3 (three actions), got shape {tuple(P.shape)}")
    try:
        mu = as_policy(mu_raw, "mu", size=3, positive=True)
    except ValueError as err:
        raise LabCheckError(f"exercise {exercise}: your mu is not a full-support policy on 3 actions: {err}") from None
    return P, mu


def _rlhf(exercise: str, P: Tensor, mu: Tensor) -> tuple[Tensor, Tensor]:
    try:
        return bt_fit(P), rlhf_optimum(P, mu, SMALL_BETA)
    except ValueError as err:
        raise LabCheckError(
            f"exercise {exercise}: the Bradley-Terry fit of your game has no finite maximiser, so RLHF is "
            f"undefined (keep every entry of P strictly between 0 and 1): {err}"
        ) from None


def check_condorcet_disagreement(make_game: Callable[[], Any]) -> CheckPassed:
    r"""Check exercise 4a: a 3-action game whose Condorcet winner RLHF does not pick.

    ``make_game()`` returns ``(P, mu)``. Checked: ``P`` is a 3 x 3 preference matrix
    (``pt.check_preference_matrix``) and ``mu`` a full-support policy; ``P`` has a Condorcet winner
    c (``pt.condorcet_winner``), which is then the Nash equilibrium (``pt.nash_equilibrium``
    plays it with probability 1); and the RLHF optimum ``pt.rlhf_optimum(P, mu, beta=0.01)``
    (Bradley-Terry reward fitted under uniform pairs) has its largest probability on another action,
    whose fitted reward is above c's.

    Parameters
    ----------
    make_game : callable
        No arguments; returns ``(P, mu)`` (array-likes of shape (3, 3) and (3,)).

    Returns
    -------
    CheckPassed
        Says what was computed: the Condorcet winner, the BT rewards, the RLHF policy.

    Raises
    ------
    LabCheckError
        Naming the broken requirement and the numbers computed.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3 (the preference model's Nash equilibrium can differ
    from the RLHF solution); Azar et al., arXiv:2310.12036v2, App. B Prop. 4.
    """
    P, mu = _student_game("4a", make_game)
    c = condorcet_winner(P)
    if c is None:
        raise LabCheckError(
            f"exercise 4a: your game has no Condorcet winner (no action beats both others with "
            f"probability above 1/2); P = {_fmt(P)}. Make one action beat each of the others."
        )
    nash = nash_equilibrium(P)
    if float(nash[c]) < 1.0 - 1e-6:  # a Condorcet winner is the unique Nash equilibrium
        raise LabCheckError(f"exercise 4a: the Nash equilibrium {_fmt(nash)} should be pure on y{c}")
    reward, pi = _rlhf("4a", P, mu)
    a = int(pi.argmax())
    computed = (f"Condorcet winner y{c} (Nash equilibrium {_fmt(nash)}); Bradley-Terry rewards "
                f"{_fmt(reward)}; RLHF optimum at beta={SMALL_BETA:g}: {_fmt(pi)}")
    if a == c or float(reward[a]) <= float(reward[c]) + 1e-9:
        raise LabCheckError(
            f"exercise 4a: RLHF agrees with the Nash equilibrium on your game: {computed}. RLHF puts most "
            f"mass on y{a}. Hint: the BT fit ranks actions by their average win rate, so let another "
            "action win big against the weakest one while losing narrowly to the Condorcet winner."
        )
    return _passed("4a", 3, f"On your game: {computed}.\nThe Nash equilibrium plays y{c}, RLHF plays y{a}.")


def check_cycle_disagreement(make_game: Callable[[], Any]) -> CheckPassed:
    r"""Check exercise 4b: a 3-action cyclic game where RLHF is nearly deterministic, the Nash mixed.

    ``make_game()`` returns ``(P, mu)``. Checked: ``P`` is a valid 3 x 3 preference matrix with no
    Condorcet winner; the RLHF optimum ``pt.rlhf_optimum(P, mu, beta=0.01)`` puts at least 0.9 on
    one action a; the Nash equilibrium ``pt.nash_equilibrium(P)`` puts at most 1/2 on a. The
    success message also reports the action that best answers the RLHF policy and by how much it
    beats it (``pt.win_rates``, ``pt.exploitability``).

    Parameters
    ----------
    make_game : callable
        No arguments; returns ``(P, mu)``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        Naming the broken requirement and the numbers computed.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3 and 3.2 (a Condorcet cycle whose Nash equilibrium is
    mixed while the BT-based solution is not).
    """
    P, mu = _student_game("4b", make_game)
    c = condorcet_winner(P)
    if c is not None:
        raise LabCheckError(
            f"exercise 4b: your game has a Condorcet winner y{c}, so its Nash equilibrium is pure; "
            "make the majority relation a cycle (y0 < y1 < y2 < y0, say)"
        )
    reward, pi = _rlhf("4b", P, mu)
    nash = nash_equilibrium(P)
    a = int(pi.argmax())
    computed = (f"Bradley-Terry rewards {_fmt(reward)}; RLHF optimum at beta={SMALL_BETA:g}: {_fmt(pi)}; "
                f"Nash equilibrium {_fmt(nash)}")
    if float(pi[a]) < 0.9:
        raise LabCheckError(
            f"exercise 4b: RLHF is not nearly deterministic on your game: its largest probability is "
            f"{float(pi[a]):.6g} < 0.9 ({computed}). Break the symmetry of the cycle so the BT fit prefers one action."
        )
    if float(nash[a]) > 0.5:
        raise LabCheckError(
            f"exercise 4b: the Nash equilibrium also favours y{a}, playing it with probability "
            f"{float(nash[a]):.6g} > 1/2 ({computed})"
        )
    rates = win_rates(P, pi)
    best = int(rates.argmax())
    return _passed("4b", 3, (
        f"On your game: {computed}.\nAgainst the RLHF policy, y{best} wins with probability "
        f"{float(rates[best]):.4f} (exploitability {exploitability(P, pi):.4f}); no action wins more than 1/2 "
        "against the Nash equilibrium."
    ))


# ---------------------------------------------------------------- student versions and build


def student_version(solution_text: str) -> str:
    """The student version of a solution notebook's py:percent text.

    Every region from a ``# BEGIN SOLUTION`` line to the next ``# END SOLUTION`` line (both
    included) becomes one line ``raise NotImplementedError(...)`` indented like the BEGIN line.
    Everything else, including the ``# YOUR CODE`` comments, is kept as it is.

    Parameters
    ----------
    solution_text : str
        Contents of ``notebooks/labs/solutions/labN_name.py``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If the markers are unbalanced or nested (the message gives the line number), or if there
        is no solution region at all.

    References
    ----------
    The marker convention follows nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION``
    (Jupyter Development Team, https://nbgrader.readthedocs.io); the exercises cite arXiv:2305.18290v3,
    arXiv:2310.12036v2 and arXiv:2312.00886v4.

    Examples
    --------
    >>> text = "def f(x):\\n    # BEGIN SOLUTION\\n    return 2 * x\\n    # END SOLUTION\\n"
    >>> print(student_version(text), end="")
    def f(x):
        raise NotImplementedError("# YOUR CODE: replace this line with your solution")
    """
    out: list[str] = []
    begin_line: int | None = None
    regions = 0
    for number, line in enumerate(solution_text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if begin_line is not None:
                raise ValueError(f"solution_text: line {number} opens a solution region inside the one opened "
                                 f"at line {begin_line} (regions must not nest)")
            begin_line = number
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{PLACEHOLDER}\n")
        elif marker == END_SOLUTION:
            if begin_line is None:
                raise ValueError(f"solution_text: line {number} closes a solution region that was never opened")
            begin_line = None
            regions += 1
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise ValueError(f"solution_text: the solution region opened at line {begin_line} is never closed")
    if regions == 0:
        raise ValueError(f"solution_text: no '{BEGIN_SOLUTION}' ... '{END_SOLUTION}' region found")
    return "".join(out)


def labs_dir() -> Path:
    """``notebooks/labs`` of the source checkout this package is imported from.

    References
    ----------
    See :func:`student_version`.
    """
    return Path(__file__).resolve().parent.parent / "notebooks" / "labs"


def _jupytext_sync(paths: Sequence[Path]) -> None:
    # The CLI (not the Python API) so that notebooks/jupytext.toml decides the pairing.
    subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet", *map(str, paths)], check=True)


def build_student_notebooks(root: Path | str | None = None, *, check: bool = False,
                            sync: bool = True) -> list[Path]:
    """Write each student ``labN_name.py`` from ``solutions/labN_name.py`` and sync the notebooks.

    Parameters
    ----------
    root : path, optional
        The labs folder (default :func:`labs_dir`), holding ``solutions/lab*.py``.
    check : bool
        Write nothing; return the student files that are missing or differ from what would be
        written (an empty list means up to date).
    sync : bool
        After writing, run ``jupytext --sync`` on the solution and student ``.py`` files so each
        ``.ipynb`` follows its ``.py`` (needs jupytext).

    Returns
    -------
    list of Path
        The student ``.py`` files written (or, with ``check``, out of date).

    References
    ----------
    See :func:`student_version`.
    """
    folder = Path(root) if root is not None else labs_dir()
    solutions = sorted((folder / "solutions").glob("lab*.py"))
    if not solutions:
        raise ValueError(f"root: no solutions/lab*.py under {folder}")
    changed: list[Path] = []
    for solution in solutions:
        target = folder / solution.name
        text = student_version(solution.read_text(encoding="utf-8"))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            changed.append(target)
            if not check:
                target.write_text(text, encoding="utf-8")
    if sync and not check:
        _jupytext_sync([*solutions, *(folder / s.name for s in solutions)])
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m prefopt_toy.labs build [--check]``: write (or check) the student notebooks.

    References
    ----------
    See :func:`student_version`.
    """
    parser = argparse.ArgumentParser(prog="python -m prefopt_toy.labs", description=main.__doc__)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--check", action="store_true", help="only report student files that are out of date")
    parser.add_argument("--root", default=None, help="labs folder (default: notebooks/labs of this checkout)")
    args = parser.parse_args(argv)
    paths = build_student_notebooks(args.root, check=args.check)
    if args.check:
        for path in paths:
            print(f"out of date: {path}")
        return 1 if paths else 0
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
