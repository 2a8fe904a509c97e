r"""Lab checkers for labs 1 and 2: the DPO and IPO pair losses and the IPO optimum.

``check_dpo_loss`` and ``check_ipo_loss`` (lab 1) run the student's per-pair loss on the input
table ``_LOSS_CASES`` (including margins of +-1e3, where a naive ``log(sigmoid(x))`` overflows)
against ``dpo_loss`` / ``ipo_loss``; ``check_ipo_optimum`` (lab 2) runs the student's closed-form
IPO optimum on the games of ``_ipo_optimum_cases`` against ``ipo_optimum``. The wrong formulas
below only recognise common mistakes to phrase hints; they never decide pass or fail. All are
re-exported from ``prefopt_toy.labs``.

References: as :mod:`prefopt_toy.labs`, the module this one was split from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE
from prefopt_toy.games.constructors import (
    bradley_terry,
    random_game,
    rock_paper_scissors,
    three_voter_types,
)
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, margin
from prefopt_toy.solutions.optima import gibbs_policy, ipo_optimum

from .checking import (
    CheckPassed,
    _answer,
    _close,
    _diagnose,
    _fmt,
    _mismatch,
    _passed,
    _policy_hint,
)

__all__ = ["check_dpo_loss", "check_ipo_loss", "check_ipo_optimum"]


# ------------------------------------------------------------------------ lab 1: DPO and IPO

# (name, logp_chosen, logp_rejected, ref_chosen, ref_rejected, hyperparameter). The first case
# has distinct reference log-probs and a hyperparameter != 1, so every known mistake shows there.
_LOSS_CASES: list[tuple[str, list[float], list[float], list[float], list[float], float]] = [
    ("one pair", [-1.0], [-3.0], [-1.5], [-2.0], 0.1),
    (
        "a batch of 4 pairs",
        [-0.5, -2.0, -4.0, -1.0],
        [-1.0, -1.0, -0.5, -6.0],
        [-0.7, -1.5, -3.0, -2.0],
        [-1.2, -0.8, -1.0, -3.0],
        0.5,
    ),
    (
        "a batch with margins +-1e3",
        [0.0, -1000.0, -2.0],
        [-1000.0, 0.0, -3.0],
        [-5.0, -5.0, -2.5],
        [-5.0, -5.0, -2.5],
        0.1,
    ),
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


def _check_pair_loss(
    exercise: str,
    fn: Any,
    hyper_name: str,
    reference: Callable[[Tensor, float], Tensor],
    mistakes: Callable[[list[Tensor], Tensor, float], list[tuple[str, Callable[[], Tensor]]]],
    what: str,
) -> int:
    cases = _loss_inputs()
    for name, logps, hyper, h in cases:
        where = f"input '{name}'"
        call = f"{what} on {where} (margin h = {_fmt(h)}) with {hyper_name}={hyper:g}"
        got, dtype = _answer(exercise, what, fn, [*logps, hyper], tuple(h.shape), where)
        expected = reference(h, hyper)
        if _close(got, expected):
            continue
        if not bool(torch.isfinite(got).all()):
            hint = _OVERFLOW_HINT if h.abs().max() >= 100 else "your loss is not finite"
        else:
            hint = _diagnose(got, mistakes(logps, h, hyper)) or _per_token_hint(
                got, h, hyper, reference
            )
        raise _mismatch(exercise, call, expected, got, hint, dtype)
    return len(cases)


# Lengths tried when an answer looks like the loss of h / L (per-token averaging).
_LENGTHS = range(2, 1025)


def _per_token_hint(
    got: Tensor, h: Tensor, hyper: float, reference: Callable[[Tensor, float], Tensor]
) -> str:
    """The hint for a margin divided by a length L (an average over tokens), else ``""``."""
    if not bool((h != 0).any()):
        return ""
    for length in [h.numel(), *_LENGTHS]:
        if length > 1 and _close(got, reference(h / length, hyper)):
            return (
                f"your loss is the loss of h / L with L = {length}: the margin is built from the "
                "summed log-probs of each response; averaging them over tokens (as TRL's per-token "
                "IPO does) divides h by the length and changes the effective strength (tau becomes "
                "tau * L)"
            )
    return ""


def _dpo_mistakes(
    logps: list[Tensor], h: Tensor, beta: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    pc, pr, rc, rr = logps
    return [
        (
            "did you flip the sign of the margin? the loss is -log sigmoid(+beta * h)",
            lambda: dpo_loss(-h, beta),
        ),
        ("beta seems to be missing: the sigmoid's argument is beta * h", lambda: dpo_loss(h, 1.0)),
        (
            "beta is outside the log-sigmoid: the loss is -log sigmoid(beta * h), not "
            "-beta * log sigmoid(h)",
            lambda: beta * dpo_loss(h, 1.0),
        ),
        (
            "did you divide by beta? the sigmoid's argument is beta * h",
            lambda: dpo_loss(h, 1.0 / beta),
        ),
        (
            "the minus sign is missing: the loss is -log sigmoid(beta * h) >= 0",
            lambda: -dpo_loss(h, beta),
        ),
        (
            "the reference log-probs are missing: h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)",
            lambda: dpo_loss(pc - pr, beta),
        ),
        (
            "the reference log-ratio enters with the wrong sign: h = (logp_chosen - logp_rejected) - "
            "(ref_chosen - ref_rejected)",
            lambda: dpo_loss(pc - pr + rc - rr, beta),
        ),
    ]


def _ipo_mistakes(
    logps: list[Tensor], h: Tensor, tau: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    pc, pr, rc, rr = logps
    return [
        ("the target margin is 1/(2 tau), not 1/tau", lambda: (h - 1.0 / tau) ** 2),
        (
            "the target 1/(2 tau) is missing: the loss is (h - 1/(2 tau))^2, not h^2 (IPO pulls the "
            "margin to 1/(2 tau), not to 0)",
            lambda: h**2,
        ),
        (
            "tau appears as 2 tau: the target is 1/(2 tau), not 1/(4 tau) = 1/(2 (2 tau))",
            lambda: (h - 1.0 / (4.0 * tau)) ** 2,
        ),
        (
            "the factor 1/2 is not part of the IPO loss: it is (h - 1/(2 tau))^2, not "
            "0.5 * (h - 1/(2 tau))^2",
            lambda: 0.5 * ipo_loss(h, tau),
        ),
        (
            "the target is 1/(2 tau): '1/2*tau' means tau/2 in Python; write 1 / (2 * tau)",
            lambda: (h - tau / 2.0) ** 2,
        ),
        (
            "did you flip the sign of the margin? the loss is (h - 1/(2 tau))^2",
            lambda: ipo_loss(-h, tau),
        ),
        ("the square is missing: the loss is (h - 1/(2 tau))^2", lambda: h - 1.0 / (2.0 * tau)),
        (
            "the square is missing: the loss is (h - 1/(2 tau))^2, not its absolute value",
            lambda: (h - 1.0 / (2.0 * tau)).abs(),
        ),
        (
            "tau does not multiply the margin: the loss is (h - 1/(2 tau))^2, not (tau h - 1/2)^2",
            lambda: (tau * h - 0.5) ** 2,
        ),
        (
            "the reference log-probs are missing: h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)",
            lambda: ipo_loss(pc - pr, tau),
        ),
        (
            "the reference log-ratio enters with the wrong sign",
            lambda: ipo_loss(pc - pr + rc - rr, tau),
        ),
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
        (
            "three voter types (epsilon=0.1), mu=(0.5, 0.3, 0.2), nu=(0.2, 0.2, 0.6)",
            three_voter_types(0.1),
            torch.tensor([0.5, 0.3, 0.2], dtype=DTYPE),
            torch.tensor([0.2, 0.2, 0.6], dtype=DTYPE),
            0.1,
        ),
        (
            "rock-paper-scissors, mu=(0.6, 0.3, 0.1), nu=mu",
            rock_paper_scissors(1.0),
            torch.tensor([0.6, 0.3, 0.1], dtype=DTYPE),
            torch.tensor([0.6, 0.3, 0.1], dtype=DTYPE),
            0.5,
        ),
        (
            "Bradley-Terry scores (0, 1, 2, 3), uniform mu, nu=(0.4, 0.3, 0.2, 0.1)",
            bradley_terry([0.0, 1.0, 2.0, 3.0]),
            torch.full((4,), 0.25, dtype=DTYPE),
            torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=DTYPE),
            1.0,
        ),
        (
            "random 5-action game (seed 0), uniform mu and nu",
            random_game(5, seed=0),
            torch.full((5,), 0.2, dtype=DTYPE),
            torch.full((5,), 0.2, dtype=DTYPE),
            0.05,
        ),
        (
            f"tiny mu entries mu=(1 - 1e-200 - 1e-300, {_TINY[0]:g}, {_TINY[1]:g}), uniform nu",
            three_voter_types(0.1),
            tiny_mu,
            uniform3,
            0.01,
        ),
        (
            "Bradley-Terry scores (0, 2, 4), small tau = 0.001 (exp(P @ nu / tau) overflows float64)",
            bradley_terry([0.0, 2.0, 4.0]),
            uniform3,
            uniform3,
            0.001,
        ),
    ]


_OPTIMUM_OVERFLOW_HINT = (
    "exp overflows (e^710 = inf in float64): compute the logits log(mu) + P @ nu / tau "
    "and normalise with torch.softmax, which subtracts their maximum first"
)


def _ipo_optimum_mistakes(
    P: Tensor, mu: Tensor, nu: Tensor, tau: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    uniform = torch.full_like(mu, 1.0 / mu.numel())
    return [
        (
            "P is transposed: P[i, j] = Pr(i beats j), so action y's win rate against nu is (P @ nu)[y]",
            lambda: gibbs_policy(mu, P.T @ nu, tau),
        ),
        ("mu is missing in front of the exponential", lambda: gibbs_policy(uniform, P @ nu, tau)),
        (
            "tau should divide the win rate, not multiply it",
            lambda: gibbs_policy(mu, tau * (P @ nu), 1.0),
        ),
        (
            "tau appears as 2 tau: the optimum is mu exp(P nu / tau) / Z; the 2 belongs to the IPO "
            "loss's target 1/(2 tau), not to the optimum",
            lambda: gibbs_policy(mu, P @ nu, 2.0 * tau),
        ),
        (
            "the win rate is against nu (the pair distribution), not against mu",
            lambda: gibbs_policy(mu, P @ mu, tau),
        ),
        (
            "a tiny mu entry was changed (clamped, or an epsilon added): use log(mu) as it is",
            lambda: gibbs_policy(mu.clamp_min(1e-12) / mu.clamp_min(1e-12).sum(), P @ nu, tau),
        ),
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
        got, dtype = _answer(
            "2", "ipo_optimum", student_ipo_optimum, [P, mu, nu, tau], tuple(mu.shape), where
        )
        expected = ipo_optimum(P, mu, tau, nu=nu)
        if _close(got, expected, _POLICY_ATOL):
            continue
        call = f"ipo_optimum on {where} with tau={tau:g}"
        hint = _policy_hint(
            got,
            _OPTIMUM_OVERFLOW_HINT,
            "divide by the normaliser Z",
            _ipo_optimum_mistakes(P, mu, nu, tau),
            _POLICY_ATOL,
        )
        raise _mismatch("2", call, expected, got, hint, dtype)
    return _passed("2", len(cases))
