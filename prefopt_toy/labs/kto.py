r"""Lab checkers for lab 5: the KTO loss, its two reference points, and which actions KTO drops.

``check_kto_loss`` (5a) runs the student's per-example KTO loss on ``_KTO_CASES`` against
``kto_loss``; ``check_kl_reference_point`` (5b) compares the paper's reference point
:math:`\mathrm{KL}(\pi\|\mu)` with ``policies.kl``; ``check_trl_reference_point`` (5c) compares TRL's
estimator (the detached, clamped batch mean of mismatched log-ratios) with ``kto_reference_point``;
``check_kto_dropped`` (5d) compares the student's rule for the actions the exact KTO dynamics drive
to 0 (weighted: labelled undesirable more often than desirable) with the rule computed here, and
shows the exact dynamics' end point. The wrong formulas below only phrase hints; they never decide
pass or fail. All are re-exported from ``prefopt_toy.labs``.

References
----------
Ethayarajh et al., arXiv:2402.01306v4, Sec. 4 (the KTO loss, :math:`z_0 = \mathrm{KL}(\pi\|\mu)`, the
batch estimate of Sec. 4.1); TRL v1.13.0 ``KTOTrainer`` (the mismatched completions, ``clamp(min=0)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE
from prefopt_toy.dynamics import kto
from prefopt_toy.games.constructors import random_game, three_voter_types
from prefopt_toy.losses.unpaired import kto_loss, kto_reference_point
from prefopt_toy.policies import kl

from .checking import (
    CheckPassed,
    LabCheckError,
    _answer,
    _as_result,
    _call,
    _close,
    _diagnose,
    _fmt,
    _mismatch,
    _passed,
)

__all__ = [
    "check_kl_reference_point",
    "check_kto_dropped",
    "check_kto_loss",
    "check_trl_reference_point",
]


def _t(x: Sequence[float]) -> Tensor:
    return torch.tensor(x, dtype=DTYPE)


# ------------------------------------------------------------------------ 5a: the KTO loss

# (name, logratio, reference point z0, desirable, beta, lambda_D, lambda_U). The first case has
# both labels, z0 != 0, beta != 1 and lambda_D != lambda_U, so every known mistake shows there.
_KTO_CASES: list[tuple[str, list[float], float, list[bool], float, float, float]] = [
    (
        "4 examples, 2 desirable",
        [0.5, -1.0, 2.0, -0.3],
        0.2,
        [True, False, True, False],
        0.5,
        1.0,
        1.5,
    ),
    ("3 desirable examples", [-3.0, 0.0, 3.0], 0.0, [True, True, True], 1.0, 1.33, 1.0),
    ("3 undesirable examples", [-3.0, 0.0, 3.0], 0.5, [False, False, False], 0.1, 1.0, 1.0),
    (
        "rewards far from z0 (the loss saturates)",
        [40.0, -40.0, 40.0, -40.0],
        0.0,
        [True, True, False, False],
        2.0,
        1.0,
        1.0,
    ),
]


def _kto_value(r: Tensor, z0: float, d: Tensor, beta: float, wd: float, wu: float) -> Tensor:
    return kto_loss(r, z0, d, beta, wd, wu)


def _kto_mistakes(
    r: Tensor, z0: float, d: Tensor, beta: float, wd: float, wu: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    df = d.to(DTYPE)
    x = beta * (r - z0)

    def mix(des: Tensor, und: Tensor, a: float = wd, b: float = wu) -> Tensor:
        return df * a * des + (1.0 - df) * b * und

    return [
        (
            "the undesirable examples have the desirable formula: an undesirable example pushes "
            "its reward down, its loss is lambda_U (1 - sigma(beta (z0 - r))) = lambda_U sigma(beta (r - z0))",
            lambda: mix(torch.sigmoid(-x), torch.sigmoid(-x)),
        ),
        (
            "the desirable examples have the undesirable formula: a desirable example pushes its "
            "reward up, its loss is lambda_D (1 - sigma(beta (r - z0))), which falls as r rises",
            lambda: mix(torch.sigmoid(x), torch.sigmoid(x)),
        ),
        (
            "the labels are the wrong way round (or sigma for 1 - sigma): desirable "
            "lambda_D (1 - sigma(beta (r - z0))), undesirable lambda_U (1 - sigma(beta (z0 - r)))",
            lambda: mix(torch.sigmoid(x), torch.sigmoid(-x)),
        ),
        (
            "the weights are swapped: lambda_D (desirable_weight) multiplies the desirable "
            "examples, lambda_U (undesirable_weight) the undesirable ones",
            lambda: mix(torch.sigmoid(-x), torch.sigmoid(x), wu, wd),
        ),
        (
            "the weights lambda_D, lambda_U are missing",
            lambda: mix(torch.sigmoid(-x), torch.sigmoid(x), 1.0, 1.0),
        ),
        (
            "beta seems to be missing: the sigmoid's argument is beta (r - z0)",
            lambda: kto_loss(r, z0, d, 1.0, wd, wu),
        ),
        (
            "the reference point z0 is missing: the sigmoid's argument is beta (r - z0), not beta r",
            lambda: kto_loss(r, 0.0, d, beta, wd, wu),
        ),
        (
            "z0 enters with the wrong sign: the argument is beta (r - z0)",
            lambda: kto_loss(r, -z0, d, beta, wd, wu),
        ),
        (
            "KTO's value function is the sigmoid itself, not its log: the loss is "
            "lambda (1 - sigma(.)), not -lambda log sigma(.) as in DPO",
            lambda: mix(-torch.nn.functional.logsigmoid(x), -torch.nn.functional.logsigmoid(-x)),
        ),
    ]


def check_kto_loss(student_kto_loss: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 5a: ``student_kto_loss(logratio, reference_point, desirable, beta, wd, wu)``.

    Expected: one loss per example,
    :math:`d\,\lambda_D(1 - \sigma(\beta(r - z_0))) + (1 - d)\,\lambda_U(1 - \sigma(\beta(z_0 - r)))`,
    equal to ``pt.kto_loss`` on four inputs (both labels, ``z0 != 0``, unequal weights, and
    rewards far from ``z0`` where the loss saturates).

    Parameters
    ----------
    student_kto_loss : callable
        ``(logratio (B,) float64, reference_point float, desirable (B,) bool, beta, desirable_weight,
        undesirable_weight) -> (B,)``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint when the answer matches a common mistake.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4 (Eq. 8, the KTO loss).

    Examples
    --------
    >>> import prefopt_toy as pt
    >>> _ = check_kto_loss(pt.kto_loss)
    exercise 5a: passed 4 checks.
    """
    for name, r_v, z0, d_v, beta, wd, wu in _KTO_CASES:
        r, d = _t(r_v), torch.tensor(d_v)
        where = f"input '{name}'"
        args = [r, z0, d.clone(), beta, wd, wu]
        got, dtype = _answer("5a", "kto_loss", student_kto_loss, args, tuple(r.shape), where)
        expected = _kto_value(r, z0, d, beta, wd, wu)
        if _close(got, expected):
            continue
        call = (
            f"kto_loss on {where} (logratio {_fmt(r)}, desirable {_fmt(d.tolist())}) with "
            f"z0={z0:g}, beta={beta:g}, desirable_weight={wd:g}, undesirable_weight={wu:g}"
        )
        hint = (
            _diagnose(got, _kto_mistakes(r, z0, d, beta, wd, wu))
            if bool(torch.isfinite(got).all())
            else "your loss is not finite"
        )
        raise _mismatch("5a", call, expected, got, hint, dtype)
    return _passed("5a", len(_KTO_CASES))


# ------------------------------------------------------------ 5b: the paper's z0 = KL(pi || mu)

_KL_CASES: list[tuple[str, list[float], list[float]]] = [
    ("pi=(0.6, 0.3, 0.1), mu=(0.2, 0.3, 0.5)", [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]),
    ("pi=(0.7, 0.1, 0.1, 0.1), uniform mu", [0.7, 0.1, 0.1, 0.1], [0.25] * 4),
    ("pi = mu = (0.6, 0.4)", [0.6, 0.4], [0.6, 0.4]),
    ("pi=(0.6, 0.4, 0) with a zero entry, mu=(0.2, 0.3, 0.5)", [0.6, 0.4, 0.0], [0.2, 0.3, 0.5]),
]


def _xlogy_ratio(p: Tensor, q: Tensor) -> Tensor:
    """Sum p log(p / q) with 0 log 0 = 0 (inf where q = 0 < p)."""
    return torch.where(p > 0, p * (p.log() - q.log()), 0.0).sum()


def _kl_mistakes(pi: Tensor, mu: Tensor) -> list[tuple[str, Callable[[], Tensor]]]:
    return [
        (
            "that is KL(mu || pi), the KL in the wrong direction: the paper's z0 is "
            "KL(pi || mu) = sum_y pi(y) log(pi(y) / mu(y)), an expectation under the policy",
            lambda: _xlogy_ratio(mu, pi),
        ),
        (
            "that is sum_y mu(y) log(pi(y) / mu(y)) = -KL(mu || pi), the expectation under mu "
            "(what TRL's estimator estimates with completions from mu); the paper's z0 averages "
            "under pi: sum_y pi(y) log(pi(y) / mu(y))",
            lambda: (mu * (pi.log() - mu.log())).sum(),
        ),
        (
            "the log-ratios are not weighted: KL(pi || mu) = sum_y pi(y) log(pi(y) / mu(y))",
            lambda: (pi.log() - mu.log()).sum(),
        ),
        ("the sign is flipped: KL(pi || mu) >= 0", lambda: -_xlogy_ratio(pi, mu)),
        (
            "the log is in base 2 (bits); the KL here is in nats (natural log)",
            lambda: _xlogy_ratio(pi, mu) / torch.log(torch.tensor(2.0, dtype=DTYPE)),
        ),
    ]


def check_kl_reference_point(student_kl: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 5b: ``student_kl(pi, mu)``, the paper's reference point KL(pi || mu).

    Expected: the number :math:`\sum_y \pi(y)\log(\pi(y)/\mu(y))` (``0 log 0 = 0``), equal to
    ``pt.kl(pi, mu)`` on four pairs of policies, one with a zero entry in ``pi``.

    Parameters
    ----------
    student_kl : callable
        ``(pi (K,), mu (K,)) -> scalar`` (a 0-d tensor, numpy value or float).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing pair, with a hint when the answer matches a common mistake (the KL
        in the wrong direction, the expectation under ``mu``, ``0 log 0`` giving ``nan``).

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4 (:math:`z_0 = \mathrm{KL}(\pi_\theta\|\pi_{ref})`).
    """
    for name, pi_v, mu_v in _KL_CASES:
        pi, mu = _t(pi_v), _t(mu_v)
        where = f"policies {name}"
        got, dtype = _answer("5b", "kl_reference_point", student_kl, [pi, mu], (), where)
        expected = torch.tensor(kl(pi, mu), dtype=DTYPE)
        if _close(got, expected):
            continue
        if not bool(torch.isfinite(got).all()):
            hint = (
                "pi has a zero entry: the term 0 log 0 is 0 by convention (torch.xlogy(pi, pi), or "
                "torch.where(pi > 0, ..., 0)), not nan"
                if bool((pi == 0).any())
                else "your KL is not finite"
            )
        else:
            hint = _diagnose(got, _kl_mistakes(pi, mu))
        raise _mismatch("5b", f"kl_reference_point on {where}", expected, got, hint, dtype)
    return _passed("5b", len(_KL_CASES))


# ---------------------------------------------------------------- 5c: TRL's reference point

_TRL_CASES: list[tuple[str, list[float]]] = [
    ("4 log-ratios with a positive mean", [0.4, -0.1, 0.3, 0.2]),
    ("3 log-ratios with a negative mean", [-0.5, 0.2, -0.3]),
    ("one log-ratio", [1.5]),
    ("5 log-ratios of both signs", [-2.0, 3.0, -0.5, 0.1, 0.4]),
]


def _trl_mistakes(x: Tensor) -> list[tuple[str, Callable[[], Tensor]]]:
    return [
        (
            "the clamp is missing: TRL's z0 is max(0, mean), so a negative mean gives 0",
            lambda: x.mean(),
        ),
        (
            "clamp the mean, not each log-ratio: z0 = max(0, mean(x)), not mean(max(0, x))",
            lambda: x.clamp_min(0.0).mean(),
        ),
        ("z0 is the batch mean, not the sum", lambda: x.sum().clamp_min(0.0)),
        ("z0 is max(0, mean), not |mean|", lambda: x.mean().abs()),
        ("z0 is max(0, mean), not the largest log-ratio", lambda: x.max().clamp_min(0.0)),
    ]


def check_trl_reference_point(student_reference_point: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 5c: ``student_reference_point(mismatched_logratios)``, TRL's KTO z0.

    Expected: :math:`\max(0, \frac1n\sum_i x_i)`, detached (no gradient flows through the
    reference point), equal to ``pt.kto_reference_point`` on four vectors, one with a negative
    mean (where the clamp matters); a fifth input requires grad, and the answer must not.

    Parameters
    ----------
    student_reference_point : callable
        ``(x (n,) float64) -> scalar``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint (clamp missing or misplaced, a sum, not detached).

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4.1; TRL v1.13.0 ``KTOTrainer`` (``kl_logps``,
    ``.clamp(min=0)``, detached).
    """
    for name, x_v in _TRL_CASES:
        x = _t(x_v)
        where = f"input '{name}' {_fmt(x)}"
        got, dtype = _answer("5c", "trl_reference_point", student_reference_point, [x], (), where)
        expected = kto_reference_point(x)
        if _close(got, expected):
            continue
        hint = _diagnose(got, _trl_mistakes(x))
        raise _mismatch("5c", f"trl_reference_point on {where}", expected, got, hint, dtype)
    x = _t([0.3, 0.5]).requires_grad_(True)
    where = "input (0.3, 0.5) with requires_grad=True"
    value = _call("5c", "trl_reference_point", student_reference_point, [x], where)
    if isinstance(value, Tensor) and value.requires_grad:
        raise LabCheckError(
            "exercise 5c: the reference point is a constant in the loss: detach it (the paper and "
            "TRL give z0 no gradient), e.g. x.detach().mean().clamp_min(0)\n"
            f"  trl_reference_point on {where} returned a tensor that requires grad"
        )
    got, dtype = _as_result("5c", "trl_reference_point", value, (), where)
    expected = torch.tensor(0.4, dtype=DTYPE)
    if not _close(got, expected):
        raise _mismatch("5c", f"trl_reference_point on {where}", expected, got, "", dtype)
    return _passed("5c", len(_TRL_CASES) + 1)


# ------------------------------------------------------- 5d: which actions KTO drives to zero

# (name, P, mu, lambda_D, lambda_U): labels from the default data model, an example of action y
# (drawn from mu) labelled desirable with probability d(y) = (P mu)_y.
KTO_BETA = 0.5


def _dropped_cases() -> list[tuple[str, Tensor, Tensor, float, float]]:
    return [
        (
            "random 4-action game (seed 1), mu=(0.4, 0.3, 0.2, 0.1), lambda_D = lambda_U = 1",
            random_game(4, seed=1),
            _t([0.4, 0.3, 0.2, 0.1]),
            1.0,
            1.0,
        ),
        (
            "random 5-action game (seed 4), uniform mu, lambda_D=1.2, lambda_U=1",
            random_game(5, seed=4),
            _t([0.2] * 5),
            1.2,
            1.0,
        ),
        (
            "three voter types (epsilon=0.1), mu=(0.5, 0.3, 0.2), lambda_D=1, lambda_U=1.05",
            three_voter_types(0.1),
            _t([0.5, 0.3, 0.2]),
            1.0,
            1.05,
        ),
    ]


def dropped_rule(P: Tensor, mu: Tensor, wd: float, wu: float) -> Tensor:
    """The actions KTO drives to 0: ``lambda_U (1 - d) > lambda_D d`` with ``d = P @ mu`` (bool)."""
    d = P @ mu
    return wu * (1.0 - d) > wd * d


def _dropped_mistakes(
    P: Tensor, mu: Tensor, wd: float, wu: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    d = P @ mu
    uniform = torch.full_like(mu, 1.0 / mu.numel())
    return [
        (
            "these are the actions KTO keeps; return the ones it drops (True where the action "
            "goes to 0) (or P is transposed: P[i, j] = Pr(i beats j), d = P @ mu)",
            lambda: ~dropped_rule(P, mu, wd, wu),
        ),
        (
            "the weights are swapped: an action is dropped when lambda_U (1 - d) > lambda_D d "
            "(its weighted undesirable labels outweigh its desirable ones)",
            lambda: dropped_rule(P, mu, wu, wd),
        ),
        (
            "the weights are missing: an action is dropped when lambda_U (1 - d) > lambda_D d, "
            "not when d < 1/2",
            lambda: d < 0.5,
        ),
        (
            "the data are drawn from mu: d = P @ mu, not the win rate against a uniform policy",
            lambda: dropped_rule(P, uniform, wd, wu),
        ),
    ]


def _exact_kto_end(P: Tensor, mu: Tensor, wd: float, wu: float, steps: int = 1500) -> Tensor:
    return kto(P, mu, beta=KTO_BETA, steps=steps, desirable_weight=wd, undesirable_weight=wu).final


def check_kto_dropped(student_dropped: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 5d: ``student_dropped(P, mu, desirable_weight, undesirable_weight)``.

    Expected: a boolean vector, True for the actions that the exact KTO dynamics (the paper's
    :math:`z_0 = \mathrm{KL}(\pi\|\mu)`, examples drawn from ``mu``, an example of action y labelled
    desirable with probability :math:`d(y) = (P\mu)_y`) drive to probability 0: those with
    :math:`\lambda_U(1 - d(y)) > \lambda_D d(y)`. Three games; on success the message shows the
    exact KTO run on the first one (``beta = 0.5``).

    Parameters
    ----------
    student_dropped : callable
        ``(P (K, K), mu (K,), desirable_weight, undesirable_weight) -> (K,)`` booleans (0/1 accepted).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing game, with a hint (kept for dropped, weights swapped or missing,
        ``P`` transposed, the win rate against a uniform policy).

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4; the tabular analysis of
    ``prefopt_toy.dynamics.unpaired``.
    """
    cases = _dropped_cases()
    for name, P, mu, wd, wu in cases:
        where = f"game '{name}'"
        got, dtype = _answer(
            "5d", "kto_dropped", student_dropped, [P, mu, wd, wu], tuple(mu.shape), where
        )
        expected = dropped_rule(P, mu, wd, wu).to(DTYPE)
        if torch.equal(got, expected):
            continue
        hint = (
            "return one boolean per action (True: KTO drives it to 0)"
            if not bool(((got == 0) | (got == 1)).all())
            else _diagnose(
                got, [(h, lambda f=f: f().to(DTYPE)) for h, f in _dropped_mistakes(P, mu, wd, wu)]
            )
        )
        call = f"kto_dropped on {where} (d = P @ mu = {_fmt(P @ mu)})"
        raise _mismatch("5d", call, expected, got, hint, dtype)
    name, P, mu, wd, wu = cases[0]
    end = _exact_kto_end(P, mu, wd, wu)
    return _passed(
        "5d",
        len(cases),
        f"Exact KTO (beta={KTO_BETA:g}, z0 = KL(pi || mu)) on the first game after 1500 steps: "
        f"{_fmt(end, 4)}; dropped: {_fmt(dropped_rule(P, mu, wd, wu).tolist())}.",
    )
