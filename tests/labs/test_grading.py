"""Hidden tests (prefopt_toy.labs.grading): fresh inputs, a numpy oracle, the library-call guard.

A correct answer written from the formula passes every hidden test; an answer that calls the
library's own implementation (through ``pt.``, a name imported before the test, or a wrapper)
fails it, although it passes the self-check; so do zeros. The correct answers here are numpy.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import prefopt_toy as pt
from prefopt_toy import labs
from prefopt_toy.labs import grading
from prefopt_toy.labs.losses import _LOSS_CASES
from prefopt_toy.losses import dpo_loss as library_dpo_loss


def _margin(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


def np_dpo(pc, pr, rc, rr, beta):
    return np.logaddexp(0.0, -beta * _margin(pc, pr, rc, rr).numpy())


def np_ipo(pc, pr, rc, rr, tau):
    return (_margin(pc, pr, rc, rr).numpy() - 1 / (2 * tau)) ** 2


def np_optimum(P, mu, nu, tau):
    z = np.log(mu.numpy()) + P.numpy() @ nu.numpy() / tau
    w = np.exp(z - z.max())
    return w / w.sum()


def np_step(pi, mu, P, tau, eta):
    m = eta * tau
    z = (1 - m) * np.log(pi.numpy()) + m * np.log(mu.numpy())
    mix = np.exp(z - z.max())
    mix /= mix.sum()
    z = np.log(mix) + eta * (P.numpy() @ mix)
    new = np.exp(z - z.max())
    return new / new.sum()


CONDORCET_GAME = ([[0.5, 0.55, 0.55], [0.45, 0.5, 0.95], [0.45, 0.05, 0.5]], [1 / 3] * 3)
CYCLE_GAME = ([[0.5, 0.4, 0.8], [0.6, 0.5, 0.4], [0.2, 0.6, 0.5]], [0.2, 0.4, 0.4])


def _hidden_failure(grade, answer) -> str:
    with pytest.raises(labs.LabCheckError) as info:
        grade(answer)
    return str(info.value)


@pytest.mark.parametrize(
    ("grade", "answer"),
    [
        (grading.grade_dpo_loss, np_dpo),
        (
            grading.grade_dpo_loss,
            lambda pc, pr, rc, rr, b: F.softplus(-b * _margin(pc, pr, rc, rr)),
        ),
        (grading.grade_ipo_loss, np_ipo),
        (grading.grade_ipo_optimum, np_optimum),
        (grading.grade_nash_md_step, np_step),
        # The generic helpers of prefopt_toy.policies are allowed.
        (
            grading.grade_nash_md_step,
            lambda pi, mu, P, tau, eta: (
                lambda mix: pt.softmax(mix.log() + eta * pt.win_rates(P, mix))
            )(pt.geometric_mixture(pi, mu, eta * tau)),
        ),
        (grading.grade_condorcet_disagreement, lambda: CONDORCET_GAME),
        (grading.grade_cycle_disagreement, lambda: CYCLE_GAME),
        (grading.grade_cycle_disagreement, lambda: (pt.three_voter_types(0.1), [1 / 3] * 3)),
    ],
    ids=["dpo", "dpo-torch", "ipo", "optimum", "step", "step-helpers", "condorcet", "cycle", "tvt"],
)
def test_correct_answers_pass_the_hidden_tests(grade, answer):
    assert grade(answer) is None  # None: nbgrader must not read the cell's value as a score


def test_hidden_inputs_are_not_the_self_check_inputs():
    seen = {tuple(np.round(v, 12)) for _, *logps, _ in _LOSS_CASES for v in logps}
    for _, logps, hyper in grading._pair_cases():
        assert all(tuple(np.round(v, 12)) not in seen for v in logps)
        assert hyper not in {case[-1] for case in _LOSS_CASES}
    assert {c[-1] for c in grading._optimum_cases()}.isdisjoint({0.1, 0.5, 1.0, 0.05, 0.01, 0.001})


# An answer that calls the library passes the self-check but not the hidden test.
LIBRARY_ANSWERS = [
    (
        labs.check_dpo_loss,
        grading.grade_dpo_loss,
        lambda pc, pr, rc, rr, b: pt.dpo_loss(pt.margin(pc, pr, rc, rr), b),
        "prefopt_toy.losses.pairwise.",
    ),
    (  # a name bound before the test, without pt.
        labs.check_dpo_loss,
        grading.grade_dpo_loss,
        lambda pc, pr, rc, rr, b: library_dpo_loss(_margin(pc, pr, rc, rr), b),
        "prefopt_toy.losses.pairwise.dpo_loss",
    ),
    (  # a wrapper
        labs.check_ipo_loss,
        grading.grade_ipo_loss,
        lambda pc, pr, rc, rr, t: functools.partial(pt.ipo_loss, tau=t)(_margin(pc, pr, rc, rr)),
        "prefopt_toy.losses.pairwise.ipo_loss",
    ),
    (
        labs.check_ipo_optimum,
        grading.grade_ipo_optimum,
        lambda P, mu, nu, tau: pt.ipo_optimum(P, mu, tau, nu=nu),
        "prefopt_toy.solutions.optima.",
    ),
    (  # the mirror step is an IPO optimum with nu = mu = the mixture and tau = 1 / eta
        labs.check_nash_md_step,
        grading.grade_nash_md_step,
        lambda pi, mu, P, tau, eta: (lambda mix: pt.ipo_optimum(P, mix, 1 / eta, nu=mix))(
            pt.geometric_mixture(pi, mu, eta * tau)
        ),
        "prefopt_toy.solutions.optima.",
    ),
]


@pytest.mark.parametrize(
    ("check", "grade", "answer", "named"),
    LIBRARY_ANSWERS,
    ids=["pt.dpo_loss", "bound-import", "partial", "pt.ipo_optimum", "step-as-optimum"],
)
def test_calling_the_library_passes_the_self_check_but_fails_the_hidden_test(
    check, grade, answer, named
):
    check(answer)
    message = _hidden_failure(grade, answer)
    assert "calls the library's own implementation" in message and named in message


def test_the_guard_restores_the_previous_profiler():
    events = []

    def outer(frame, event, arg):
        events.append(event)

    sys.setprofile(outer)
    try:
        _, entered = grading.library_calls(lambda: pt.dpo_loss(torch.tensor([1.0]), 0.1))
        assert sys.getprofile() is outer
    finally:
        sys.setprofile(None)
    assert entered[0] == "prefopt_toy.losses.pairwise.dpo_loss"


@pytest.mark.parametrize(
    ("grade", "zeros"),
    [
        (grading.grade_dpo_loss, lambda pc, pr, rc, rr, b: torch.zeros_like(pc)),
        (grading.grade_ipo_loss, lambda pc, pr, rc, rr, t: torch.zeros_like(pc)),
        (grading.grade_ipo_optimum, lambda P, mu, nu, tau: torch.zeros_like(mu)),
        (grading.grade_nash_md_step, lambda pi, mu, P, tau, eta: torch.zeros_like(mu)),
    ],
    ids=["dpo", "ipo", "optimum", "step"],
)
def test_zeros_fail_the_hidden_tests(grade, zeros):
    assert "wrong on a hidden test" in _hidden_failure(grade, zeros)


def test_hidden_tests_reject_float32_and_wrong_games():
    message = _hidden_failure(
        grading.grade_dpo_loss,
        lambda pc, pr, rc, rr, b: F.softplus(-b * _margin(pc, pr, rc, rr)).float(),
    )
    assert "float32" in message
    message = _hidden_failure(
        grading.grade_condorcet_disagreement,
        lambda: (pt.bradley_terry([0.0, 1.0, 2.0]).tolist(), [1 / 3] * 3),
    )
    assert "no disagreement" in message
    message = _hidden_failure(grading.grade_cycle_disagreement, lambda: CONDORCET_GAME)
    assert "does not confirm" in message


def test_numpy_bt_fit_agrees_with_the_library():
    """The hidden tests' own BT fit (Newton in numpy) is the library's bt_fit, for nu = mu."""
    P, mu = np.array(CYCLE_GAME[0]), np.array(CYCLE_GAME[1])
    expected = pt.bt_fit(P, nu=mu).numpy()
    np.testing.assert_allclose(grading._np_bt_fit(P, mu), expected, atol=1e-10)
