r"""Lab checkers for lab 6: a judge that likes length, DPO exploiting it, and the R-DPO fix.

``check_length_biased_preferences`` (6a) compares the student's Bradley-Terry matrix in
:math:`q + \kappa L` with ``bradley_terry``; ``check_dpo_length_optimum`` (6b) the DPO optimum on that
judge, :math:`\mu\exp((q + \kappa L)/\beta)/Z`, with ``gibbs_policy``; ``check_rdpo_loss`` (6c) the
per-pair R-DPO loss with ``rdpo_loss``; ``check_rdpo_optimum`` (6d) its optimum
:math:`\mu\exp((r - \alpha L)/\beta)/Z`; ``check_debiasing_alpha`` (6e) the length weight that removes
the judge's bias (``alpha = kappa``), and shows the exact R-DPO dynamics reaching the length-free
optimum with it. The wrong formulas below only phrase hints. All are re-exported from
``prefopt_toy.labs``.

References
----------
Park et al., arXiv:2403.19159v3, Sec. 3 (R-DPO); Rafailov et al., arXiv:2305.18290v3, Eq. (7);
Azar et al., arXiv:2310.12036v2, App. B Prop. 4 (the DPO optimum is the RLHF optimum of the BT
reward).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE
from prefopt_toy.dynamics import rdpo
from prefopt_toy.games.constructors import bradley_terry
from prefopt_toy.losses.pairwise import dpo_loss, margin
from prefopt_toy.losses.shaped import rdpo_loss
from prefopt_toy.solutions.optima import gibbs_policy

from .checking import (
    CheckPassed,
    LabCheckError,
    _answer,
    _close,
    _diagnose,
    _fmt,
    _mismatch,
    _passed,
    _policy_hint,
)

__all__ = [
    "check_debiasing_alpha",
    "check_dpo_length_optimum",
    "check_length_biased_preferences",
    "check_rdpo_loss",
    "check_rdpo_optimum",
]

# Relative tolerance only on policies (tiny entries count).
_POLICY_ATOL = 1e-300

_OVERFLOW_HINT = (
    "exp overflows (e^710 = inf in float64): compute the logits and normalise with "
    "torch.softmax, which subtracts their maximum first"
)


def _t(x: Sequence[float]) -> Tensor:
    return torch.tensor(x, dtype=DTYPE)


# ------------------------------------------------------------- 6a: a judge that likes length

_JUDGE_CASES: list[tuple[str, list[float], list[float], float]] = [
    ("q=(1, 0.5, 0), L=(1, 4, 2), kappa=0.3", [1.0, 0.5, 0.0], [1.0, 4.0, 2.0], 0.3),
    (
        "q=(0.2, -0.4, 0.8, 0), L=(10, 30, 5, 20), kappa=0.05",
        [0.2, -0.4, 0.8, 0.0],
        [10.0, 30.0, 5.0, 20.0],
        0.05,
    ),
    ("equal quality q=(0, 0), L=(1, 3), kappa=1", [0.0, 0.0], [1.0, 3.0], 1.0),
]


def _judge_mistakes(q: Tensor, L: Tensor, kappa: float) -> list[tuple[str, Callable[[], Tensor]]]:
    return [
        (
            "the sign of the length term: this judge prefers longer answers, so the score is "
            "q + kappa L, not q - kappa L",
            lambda: bradley_terry(q - kappa * L),
        ),
        (
            "P is transposed: P[i, j] = Pr(i beats j) = sigmoid(s_i - s_j)",
            lambda: bradley_terry(q + kappa * L).T,
        ),
        ("kappa is missing: the score is q + kappa L", lambda: bradley_terry(q + L)),
        (
            "the quality q is missing: the score is q + kappa L",
            lambda: bradley_terry(kappa * L),
        ),
        (
            "the length term is missing: this judge scores q + kappa L",
            lambda: bradley_terry(q),
        ),
    ]


def check_length_biased_preferences(student_judge: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 6a: ``student_judge(q, lengths, kappa)``, a judge that also likes length.

    Expected: the Bradley-Terry matrix :math:`P[i, j] = \sigma(s_i - s_j)` of the scores
    :math:`s = q + \kappa L`, equal to ``pt.bradley_terry(q + kappa * L)`` on three inputs.

    Parameters
    ----------
    student_judge : callable
        ``(q (K,), lengths (K,), kappa float) -> P (K, K)``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint (the length term's sign, ``P`` transposed, a
        missing term).

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 2-3 (length as a spurious feature of the preferences).
    """
    for name, q_v, L_v, kappa in _JUDGE_CASES:
        q, L = _t(q_v), _t(L_v)
        k = len(q_v)
        where = f"input '{name}'"
        got, dtype = _answer(
            "6a", "length_biased_preferences", student_judge, [q, L, kappa], (k, k), where
        )
        expected = bradley_terry(q + kappa * L)
        if _close(got, expected):
            continue
        hint = _diagnose(got, _judge_mistakes(q, L, kappa))
        raise _mismatch(
            "6a",
            f"length_biased_preferences on {where}",
            expected.flatten(),
            got.flatten(),
            hint,
            dtype,
        )
    return _passed("6a", len(_JUDGE_CASES))


# --------------------------------------------------- 6b: the DPO optimum on a length-biased judge

_DPO_CASES: list[tuple[str, list[float], list[float], float, list[float], float]] = [
    (
        "q=(1, 0.5, 0, -0.2), L=(1, 4, 2, 8), kappa=0.3, uniform mu, beta=1",
        [1.0, 0.5, 0.0, -0.2],
        [1.0, 4.0, 2.0, 8.0],
        0.3,
        [0.25] * 4,
        1.0,
    ),
    (
        "q=(0.5, 0, 1), L=(3, 1, 2), kappa=0.2, mu=(0.5, 0.3, 0.2), beta=0.2",
        [0.5, 0.0, 1.0],
        [3.0, 1.0, 2.0],
        0.2,
        [0.5, 0.3, 0.2],
        0.2,
    ),
    (
        "q=(2, 0, 1), L=(1, 5, 3), kappa=1, uniform mu, small beta=0.001 (exp overflows)",
        [2.0, 0.0, 1.0],
        [1.0, 5.0, 3.0],
        1.0,
        [1 / 3] * 3,
        0.001,
    ),
]


def _dpo_length_mistakes(
    q: Tensor, L: Tensor, kappa: float, mu: Tensor, beta: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    uniform = torch.full_like(mu, 1.0 / mu.numel())
    return [
        (
            "that is the length-free optimum mu exp(q / beta) / Z: DPO fits the judge's reward, "
            "which includes kappa L, so its optimum is mu exp((q + kappa L) / beta) / Z",
            lambda: gibbs_policy(mu, q, beta),
        ),
        (
            "the sign of the length term: the judge's reward is q + kappa L (it prefers longer "
            "answers)",
            lambda: gibbs_policy(mu, q - kappa * L, beta),
        ),
        (
            "beta multiplies the reward: the optimum is mu exp(r / beta) / Z, not mu exp(beta r) / Z",
            lambda: gibbs_policy(mu, q + kappa * L, 1.0 / beta),
        ),
        (
            "mu is missing in front of the exponential",
            lambda: gibbs_policy(uniform, q + kappa * L, beta),
        ),
    ]


def check_dpo_length_optimum(student_optimum: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 6b: ``student_optimum(q, lengths, kappa, mu, beta)``, DPO on the biased judge.

    Expected: :math:`\mu\exp((q + \kappa L)/\beta)/Z`, the DPO (= RLHF) optimum with pairs from
    ``mu`` labelled by ``pt.bradley_terry(q + kappa * L)`` (the Bradley-Terry fit recovers
    :math:`q + \kappa L` up to a constant), on three inputs, one with ``beta = 0.001``.

    Parameters
    ----------
    student_optimum : callable
        ``(q (K,), lengths (K,), kappa, mu (K,), beta) -> policy (K,)``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint (the length-free optimum, the sign of the length
        term, ``beta * r`` for ``r / beta``, ``mu`` missing, overflow, no normalisation).

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (4); Azar et al., arXiv:2310.12036v2, App. B Prop. 4.
    """
    for name, q_v, L_v, kappa, mu_v, beta in _DPO_CASES:
        q, L, mu = _t(q_v), _t(L_v), _t(mu_v)
        where = f"input '{name}'"
        got, dtype = _answer(
            "6b",
            "dpo_length_optimum",
            student_optimum,
            [q, L, kappa, mu, beta],
            tuple(mu.shape),
            where,
        )
        expected = gibbs_policy(mu, q + kappa * L, beta)
        if _close(got, expected, _POLICY_ATOL):
            continue
        hint = _policy_hint(
            got,
            _OVERFLOW_HINT,
            "divide by the normaliser Z",
            _dpo_length_mistakes(q, L, kappa, mu, beta),
            _POLICY_ATOL,
        )
        raise _mismatch("6b", f"dpo_length_optimum on {where}", expected, got, hint, dtype)
    return _passed("6b", len(_DPO_CASES))


# ------------------------------------------------------------------------ 6c: the R-DPO loss

# (name, logp_chosen, logp_rejected, ref_chosen, ref_rejected, length_chosen, length_rejected,
# beta, alpha). The first case has distinct lengths, beta != 1 and alpha != 0.
_RDPO_CASES: list[
    tuple[
        str,
        list[float],
        list[float],
        list[float],
        list[float],
        list[float],
        list[float],
        float,
        float,
    ]
] = [
    ("one pair", [-1.0], [-3.0], [-1.5], [-2.0], [5.0], [2.0], 0.1, 0.2),
    (
        "a batch of 3 pairs",
        [-0.5, -2.0, -4.0],
        [-1.0, -1.0, -0.5],
        [-0.7, -1.5, -3.0],
        [-1.2, -0.8, -1.0],
        [10.0, 3.0, 7.0],
        [4.0, 9.0, 7.0],
        0.5,
        0.05,
    ),
    (
        "margins +-1e3",
        [0.0, -1000.0],
        [-1000.0, 0.0],
        [-5.0, -5.0],
        [-5.0, -5.0],
        [2.0, 2.0],
        [3.0, 1.0],
        1.0,
        0.1,
    ),
]

_LOGSIG_HINT = (
    "log(sigmoid(x)) underflows to log 0 = -inf at x = -1000; use "
    "torch.nn.functional.logsigmoid(x), which stays finite"
)


def _rdpo_mistakes(
    logps: list[Tensor], h: Tensor, beta: float, alpha: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    pc, pr, _, _ = logps[:4]
    lw, ll = logps[4], logps[5]
    dl = lw - ll
    return [
        (
            "the sign of the length term: R-DPO adds + alpha (|y_w| - |y_l|) inside the sigmoid "
            "(a longer chosen answer needs a smaller margin), so its implied reward is r - alpha L",
            lambda: dpo_loss(h + (-alpha * dl) / beta, beta),
        ),
        (
            "alpha is multiplied by beta: the argument is beta h + alpha (|y_w| - |y_l|), not "
            "beta (h + alpha (|y_w| - |y_l|))",
            lambda: dpo_loss(h + alpha * dl, beta),
        ),
        (
            "the length term is missing: that is the DPO loss; add alpha (|y_w| - |y_l|) inside "
            "the sigmoid",
            lambda: dpo_loss(h, beta),
        ),
        (
            "beta seems to be missing: the argument is beta h + alpha (|y_w| - |y_l|)",
            lambda: rdpo_loss(h, 1.0, alpha, lw, ll),
        ),
        (
            "the length term is outside the sigmoid: the loss is "
            "-log sigmoid(beta h + alpha (|y_w| - |y_l|))",
            lambda: dpo_loss(h, beta) - alpha * dl,
        ),
        (
            "did you flip the sign of the margin? h = (logp_chosen - ref_chosen) - "
            "(logp_rejected - ref_rejected)",
            lambda: rdpo_loss(-h, beta, alpha, lw, ll),
        ),
        (
            "the reference log-probs are missing: h = (logp_chosen - ref_chosen) - "
            "(logp_rejected - ref_rejected)",
            lambda: rdpo_loss(pc - pr, beta, alpha, lw, ll),
        ),
    ]


def check_rdpo_loss(student_rdpo_loss: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 6c: the per-pair R-DPO loss.

    ``student_rdpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, length_chosen,
    length_rejected, beta, alpha)``; expected :math:`-\log\sigma(\beta h + \alpha(|y_w| - |y_l|))`,
    equal to ``pt.rdpo_loss(pt.margin(...), beta, alpha, length_chosen, length_rejected)`` on
    three inputs, one with margins of +-1e3 (where the loss must stay finite).

    Parameters
    ----------
    student_rdpo_loss : callable
        Six float64 tensors of shape (B,) and two floats; returns shape (B,).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint (the length term's sign, alpha times beta, the
        term missing or outside the sigmoid, overflow).

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3.
    """
    for name, *vectors, beta, alpha in _RDPO_CASES:
        tensors = [_t(v) for v in vectors]
        h = margin(*tensors[:4])
        lw, ll = tensors[4], tensors[5]
        where = f"input '{name}'"
        got, dtype = _answer(
            "6c", "rdpo_loss", student_rdpo_loss, [*tensors, beta, alpha], tuple(h.shape), where
        )
        expected = rdpo_loss(h, beta, alpha, lw, ll)
        if _close(got, expected):
            continue
        call = (
            f"rdpo_loss on {where} (margin h = {_fmt(h)}, |y_w| = {_fmt(lw)}, |y_l| = {_fmt(ll)}) "
            f"with beta={beta:g}, alpha={alpha:g}"
        )
        if not bool(torch.isfinite(got).all()):
            hint = _LOGSIG_HINT if h.abs().max() >= 100 else "your loss is not finite"
        else:
            hint = _diagnose(got, _rdpo_mistakes(tensors, h, beta, alpha))
        raise _mismatch("6c", call, expected, got, hint, dtype)
    return _passed("6c", len(_RDPO_CASES))


# --------------------------------------------------------------------- 6d: the R-DPO optimum

_OPTIMUM_CASES: list[tuple[str, list[float], list[float], list[float], float, float]] = [
    (
        "r=(1, 0.5, 0), mu=(0.5, 0.3, 0.2), L=(1, 4, 2), beta=0.5, alpha=0.3",
        [1.0, 0.5, 0.0],
        [0.5, 0.3, 0.2],
        [1.0, 4.0, 2.0],
        0.5,
        0.3,
    ),
    (
        "r=(0.2, 1.2, 0.4, 0.9), uniform mu, L=(10, 30, 5, 20), beta=1, alpha=0.02",
        [0.2, 1.2, 0.4, 0.9],
        [0.25] * 4,
        [10.0, 30.0, 5.0, 20.0],
        1.0,
        0.02,
    ),
    (
        "r=(1, 0, 2), uniform mu, L=(3, 1, 2), small beta=0.002, alpha=0.5 (exp overflows)",
        [1.0, 0.0, 2.0],
        [1 / 3] * 3,
        [3.0, 1.0, 2.0],
        0.002,
        0.5,
    ),
]


def _rdpo_optimum_mistakes(
    r: Tensor, mu: Tensor, L: Tensor, beta: float, alpha: float
) -> list[tuple[str, Callable[[], Tensor]]]:
    uniform = torch.full_like(mu, 1.0 / mu.numel())
    return [
        (
            "the sign of the length term: R-DPO penalises length, the optimum is "
            "mu exp((r - alpha L) / beta) / Z",
            lambda: gibbs_policy(mu, r + alpha * L, beta),
        ),
        (
            "beta multiplies the reward: the optimum is mu exp((r - alpha L) / beta) / Z, not "
            "mu exp(beta (r - alpha L)) / Z",
            lambda: gibbs_policy(mu, r - alpha * L, 1.0 / beta),
        ),
        (
            "alpha L is divided by beta too: the optimum is mu exp((r - alpha L) / beta) / Z, "
            "not mu exp(r / beta - alpha L) / Z",
            lambda: gibbs_policy(mu, r - beta * alpha * L, beta),
        ),
        (
            "the length term is missing: the optimum is mu exp((r - alpha L) / beta) / Z",
            lambda: gibbs_policy(mu, r, beta),
        ),
        (
            "mu is missing in front of the exponential",
            lambda: gibbs_policy(uniform, r - alpha * L, beta),
        ),
    ]


def check_rdpo_optimum(student_rdpo_optimum: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 6d: ``student_rdpo_optimum(r, mu, lengths, beta, alpha)``.

    Expected: :math:`\mu\exp((r - \alpha L)/\beta)/Z` (relative tolerance on every entry), on
    three inputs, one with ``beta = 0.002`` where a naive ``exp`` overflows.

    Parameters
    ----------
    student_rdpo_optimum : callable
        ``(r (K,), mu (K,), lengths (K,), beta, alpha) -> policy (K,)``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint (the length term's sign, ``beta r`` for
        ``r / beta``, ``alpha L`` not divided by beta, ``mu`` missing, overflow).

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3; ``pt.rdpo_optimum``.
    """
    for name, r_v, mu_v, L_v, beta, alpha in _OPTIMUM_CASES:
        r, mu, L = _t(r_v), _t(mu_v), _t(L_v)
        where = f"input '{name}'"
        got, dtype = _answer(
            "6d",
            "rdpo_optimum",
            student_rdpo_optimum,
            [r, mu, L, beta, alpha],
            tuple(mu.shape),
            where,
        )
        expected = gibbs_policy(mu, r - alpha * L, beta)
        if _close(got, expected, _POLICY_ATOL):
            continue
        hint = _policy_hint(
            got,
            _OVERFLOW_HINT,
            "divide by the normaliser Z",
            _rdpo_optimum_mistakes(r, mu, L, beta, alpha),
            _POLICY_ATOL,
        )
        raise _mismatch("6d", f"rdpo_optimum on {where}", expected, got, hint, dtype)
    return _passed("6d", len(_OPTIMUM_CASES))


# -------------------------------------------------------- 6e: the alpha that removes the bias

_ALPHA_CASES: list[tuple[float, float]] = [(0.3, 0.5), (0.05, 2.0), (1.0, 0.1)]

# The game of the success message: the judge of 6b's first input.
_Q, _L, _MU = [1.0, 0.5, 0.0, -0.2], [1.0, 4.0, 2.0, 8.0], [0.25] * 4
EXACT_STEPS = 1500


def _alpha_mistakes(kappa: float, beta: float) -> list[tuple[str, float]]:
    return [
        (
            "alpha is on the reward's scale, like kappa: the optimum is mu exp((q + kappa L - "
            "alpha L) / beta), so alpha = kappa, not beta * kappa",
            beta * kappa,
        ),
        (
            "alpha is on the reward's scale, like kappa: (q + kappa L - alpha L) / beta is "
            "q / beta when alpha = kappa, not kappa / beta",
            kappa / beta,
        ),
        (
            "the sign: R-DPO's optimum subtracts alpha L from the judge's reward q + kappa L, so "
            "alpha = +kappa (alpha = -kappa doubles the bias)",
            -kappa,
        ),
        ("alpha = 0 is plain DPO, which keeps the judge's length bias", 0.0),
    ]


def exact_rdpo_end(alpha: float, beta: float = 0.5, steps: int = EXACT_STEPS) -> Tensor:
    """The exact R-DPO policy after ``steps`` on the judge ``q + 0.3 L`` of 6b's first input."""
    P = bradley_terry(_t(_Q) + 0.3 * _t(_L))
    return rdpo(P, _t(_MU), beta=beta, alpha=alpha, lengths=_t(_L), steps=steps).final


def check_debiasing_alpha(student_alpha: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 6e: ``student_alpha(kappa, beta)``, the R-DPO weight that undoes the judge's bias.

    Expected: ``alpha = kappa`` (whatever beta): the R-DPO optimum on a judge that is Bradley-Terry in
    :math:`q + \kappa L` is :math:`\mu\exp((q + \kappa L - \alpha L)/\beta)/Z`, the length-free
    :math:`\mu\exp(q/\beta)/Z` exactly when :math:`\alpha = \kappa`. Three (kappa, beta) pairs; on
    success the message shows the exact R-DPO dynamics (``pt.ALGORITHMS["rdpo"]``) with the
    student's alpha against the length-free optimum.

    Parameters
    ----------
    student_alpha : callable
        ``(kappa, beta) -> alpha`` (a number).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing pair, with a hint (``beta * kappa``, ``kappa / beta``, ``-kappa``, 0).

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3.
    """
    for kappa, beta in _ALPHA_CASES:
        where = f"kappa={kappa:g}, beta={beta:g}"
        got, dtype = _answer("6e", "debiasing_alpha", student_alpha, [kappa, beta], (), where)
        expected = torch.tensor(kappa, dtype=DTYPE)
        if _close(got, expected):
            continue
        hint = next(
            (h for h, wrong in _alpha_mistakes(kappa, beta) if abs(float(got) - wrong) < 1e-9),
            "",
        )
        raise _mismatch("6e", f"debiasing_alpha with {where}", expected, got, hint, dtype)
    where = "kappa=0.3, beta=0.5 (the judge of 6b)"
    alpha = float(_answer("6e", "debiasing_alpha", student_alpha, [0.3, 0.5], (), where)[0])
    end = exact_rdpo_end(alpha)
    free = gibbs_policy(_t(_MU), _t(_Q), 0.5)
    tv = 0.5 * float((end - free).abs().sum())
    if tv > 1e-6:
        raise LabCheckError(
            f"exercise 6e: the exact R-DPO dynamics with your alpha = {alpha:g} end at {_fmt(end, 4)}, "
            f"not at the length-free optimum {_fmt(free, 4)} (total variation {tv:.2g})"
        )
    return _passed(
        "6e",
        len(_ALPHA_CASES) + 1,
        f"Exact R-DPO (beta=0.5, alpha={alpha:g}, {EXACT_STEPS} steps) on the judge q + 0.3 L of 6b: "
        f"{_fmt(end, 4)}; length-free optimum mu exp(q / beta) / Z: {_fmt(free, 4)} "
        f"(total variation {tv:.1e}).",
    )
