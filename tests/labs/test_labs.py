"""Lab checkers (prefopt_toy.labs): the students' self-check, its hints and how a failure shows.

Each checker must accept a correct answer and reject realistic wrong ones with a message that
names the input and the expected value, hint first. The expected values asserted on here are
computed in this file from the formulas themselves (math / numpy), independently of the library
the checkers use. The hidden tests are in test_grading.py, the nbgrader course in test_course.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import prefopt_toy as pt
from prefopt_toy import labs
from prefopt_toy.labs.checking import MAX_RENDERED_LINES
from prefopt_toy.labs.games import _nash_md_cases


def _margin(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


def _error(check, answer) -> labs.LabCheckError:
    with pytest.raises(labs.LabCheckError) as info:
        check(answer)
    return info.value


def _failure(check, answer) -> str:
    """The failure message with its line breaks and alignment spaces collapsed."""
    return " ".join(str(_error(check, answer)).split())


# ------------------------------------------------------------------------------- lab 1

# First DPO/IPO input of the checker: logp_chosen=-1, logp_rejected=-3, ref_chosen=-1.5,
# ref_rejected=-2, so h = (-1 + 1.5) - (-3 + 2) = 1.5 (by hand), with beta = tau = 0.1.
H1, HYPER1 = 1.5, 0.1


def _dpo_value(h, beta):  # -log sigmoid(beta h) = log(1 + e^{-beta h}), for moderate arguments
    return math.log1p(math.exp(-beta * h))


def test_dpo_checker_passes_correct_answers(capsys):
    message = labs.check_dpo_loss(
        lambda pc, pr, rc, rr, beta: pt.dpo_loss(pt.margin(pc, pr, rc, rr), beta)
    )
    assert "passed 5 checks" in message and "passed 5 checks" in capsys.readouterr().out
    # An independent formula: softplus(-beta h) is -log sigmoid(beta h).
    labs.check_dpo_loss(lambda pc, pr, rc, rr, beta: F.softplus(-beta * _margin(pc, pr, rc, rr)))
    # numpy arrays are accepted as answers.
    labs.check_dpo_loss(
        lambda pc, pr, rc, rr, beta: np.logaddexp(0.0, -beta * _margin(pc, pr, rc, rr).numpy())
    )


@pytest.mark.parametrize(
    ("wrong", "got", "hint"),
    [
        (
            lambda pc, pr, rc, rr, b: F.softplus(b * _margin(pc, pr, rc, rr)),
            math.log1p(math.exp(HYPER1 * H1)),
            "flip the sign",
        ),
        (
            lambda pc, pr, rc, rr, b: F.softplus(-_margin(pc, pr, rc, rr)),
            math.log1p(math.exp(-H1)),
            "beta seems to be missing",
        ),
        (
            lambda pc, pr, rc, rr, b: F.logsigmoid(b * _margin(pc, pr, rc, rr)),
            -_dpo_value(H1, HYPER1),
            "minus sign",
        ),
        (
            lambda pc, pr, rc, rr, b: F.softplus(-b * (pc - pr)),
            math.log1p(math.exp(-HYPER1 * 2.0)),
            "reference",
        ),
    ],
    ids=["sign-flipped", "beta-missing", "minus-missing", "reference-missing"],
)
def test_dpo_checker_names_input_expected_value_and_mistake(wrong, got, hint):
    message = _failure(labs.check_dpo_loss, wrong)
    assert "input 'one pair'" in message and "beta=0.1" in message
    assert f"expected ({_dpo_value(H1, HYPER1):.6g})" in message  # 0.620957
    assert f"got ({got:.6g})" in message
    assert hint in message


def test_dpo_checker_catches_log_of_sigmoid_overflow():
    message = _failure(
        labs.check_dpo_loss,
        lambda pc, pr, rc, rr, b: -torch.log(torch.sigmoid(b * _margin(pc, pr, rc, rr))),
    )
    # At h = -1000, beta = 1: -log sigma(-1000) = 1000 + log1p(e^{-1000}) = 1000 in float64.
    assert (
        "extreme margin -1e3" in message and "expected (1000)" in message and "got (inf)" in message
    )
    assert "logsigmoid" in message


def test_dpo_checker_rejects_a_batch_mean():
    message = _failure(
        labs.check_dpo_loss,
        lambda pc, pr, rc, rr, b: F.softplus(-b * _margin(pc, pr, rc, rr)).mean(),
    )
    assert "shape (1,)" in message and "do not average" in message


def test_ipo_checker():
    labs.check_ipo_loss(lambda pc, pr, rc, rr, tau: (_margin(pc, pr, rc, rr) - 1 / (2 * tau)) ** 2)
    expected = (H1 - 1 / (2 * HYPER1)) ** 2  # (1.5 - 5)^2 = 12.25
    cases = [
        (
            lambda pc, pr, rc, rr, t: (_margin(pc, pr, rc, rr) - 1 / t) ** 2,
            (H1 - 10) ** 2,
            "1/(2 tau), not 1/tau",
        ),
        (
            lambda pc, pr, rc, rr, t: (_margin(pc, pr, rc, rr) - 1 / 2 * t) ** 2,
            (H1 - 0.05) ** 2,
            "tau/2",
        ),
        (
            lambda pc, pr, rc, rr, t: (-_margin(pc, pr, rc, rr) - 1 / (2 * t)) ** 2,
            (H1 + 5) ** 2,
            "flip the sign",
        ),
        (
            lambda pc, pr, rc, rr, t: _margin(pc, pr, rc, rr) - 1 / (2 * t),
            H1 - 5,
            "square is missing",
        ),
    ]
    for wrong, got, hint in cases:
        message = _failure(labs.check_ipo_loss, wrong)
        assert "input 'one pair'" in message and "tau=0.1" in message
        assert (
            f"expected ({expected:.6g})" in message
            and f"got ({got:.6g})" in message
            and hint in message
        )


def test_not_done_is_readable_and_a_crash_is_reported():
    def untouched(*args):
        raise NotImplementedError("# YOUR CODE: replace this line with your solution")

    for exercise, check in [
        ("1a", labs.check_dpo_loss),
        ("1b", labs.check_ipo_loss),
        ("2", labs.check_ipo_optimum),
        ("3", labs.check_nash_md_step),
        ("4a", labs.check_condorcet_disagreement),
        ("4b", labs.check_cycle_disagreement),
    ]:
        message = _failure(check, untouched)
        assert message.startswith(
            f"exercise {exercise} is not done yet: fill in the cell marked # YOUR CODE"
        )
    message = _failure(labs.check_dpo_loss, lambda *args: 1 / 0)
    assert "raised ZeroDivisionError on input 'one pair'" in message
    assert issubclass(labs.LabCheckError, AssertionError)


# ------------------------------------------------------------------------------- lab 2


def _np_ipo_optimum(P, mu, nu, tau):
    """mu exp(P nu / tau) / Z in numpy, through logits (an independent implementation)."""
    z = np.log(np.asarray(mu)) + np.asarray(P) @ np.asarray(nu) / tau
    w = np.exp(z - z.max())
    return w / w.sum()


def test_ipo_optimum_checker_passes_correct_answers():
    labs.check_ipo_optimum(lambda P, mu, nu, tau: pt.ipo_optimum(P, mu, tau, nu=nu))
    assert "passed 6 checks" in labs.check_ipo_optimum(_np_ipo_optimum)


def test_ipo_optimum_checker_failures():
    # First game: three voter types (epsilon = 0.1), mu = (0.5, 0.3, 0.2), nu = (0.2, 0.2, 0.6), tau = 0.1.
    # By hand from the voter model (alpha1 = 1/3 - 0.1, alpha2 = alpha3 = 1/3 + 0.05):
    a1, a2 = 1 / 3 - 0.1, 1 / 3 + 0.05
    P = np.array(
        [
            [0.5, 0.5 - a1 / 2, 0.5 + a2 / 2],
            [0.5 + a1 / 2, 0.5, 0.5 - a2 / 2],
            [0.5 - a2 / 2, 0.5 + a2 / 2, 0.5],
        ]
    )
    mu, nu = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.2, 0.6])
    expected = _np_ipo_optimum(P, mu, nu, 0.1)
    where = "game 'three voter types (epsilon=0.1)"
    cases = [
        (lambda P, mu, nu, tau: mu * torch.exp(P @ nu / tau), "divide by the normaliser"),
        (lambda P, mu, nu, tau: torch.softmax(mu.log() + P.T @ nu / tau, -1), "P is transposed"),
        (lambda P, mu, nu, tau: torch.softmax(P @ nu / tau, -1), "mu is missing"),
        (lambda P, mu, nu, tau: torch.softmax(mu.log() + P @ mu / tau, -1), "against nu"),
    ]
    for wrong, hint in cases:
        message = _failure(labs.check_ipo_optimum, wrong)
        assert where in message and "tau=0.1" in message and hint in message
        assert "expected (" + ", ".join(f"{v:.6g}" for v in expected) + ")" in message
    # Naive exp overflows on the tau = 0.001 game: BT scores (0, 2, 4), uniform mu and nu.
    message = _failure(
        labs.check_ipo_optimum,
        lambda P, mu, nu, tau: (lambda w: w / w.sum())(mu * torch.exp(P @ nu / tau)),
    )
    assert (
        "small tau = 0.001" in message and "log space" not in message and "torch.softmax" in message
    )
    # Clamping mu (a "safe log") is wrong on the tiny-mu game.
    message = _failure(
        labs.check_ipo_optimum,
        lambda P, mu, nu, tau: torch.softmax(mu.clamp_min(1e-12).log() + P @ nu / tau, -1),
    )
    assert "tiny mu entries" in message and "use log(mu) as it is" in message


# ------------------------------------------------------------------------------- lab 3


def _np_nash_md_step(pi, mu, P, tau, eta):
    """Munos et al. Eq. (8)-(9) in numpy: normalised geometric mixture, then the mirror step."""
    m = eta * tau
    mix = np.asarray(pi) ** (1 - m) * np.asarray(mu) ** m
    mix /= mix.sum()
    new = mix * np.exp(eta * (np.asarray(P) @ mix))
    return new / new.sum()


def test_nash_md_checker_passes_correct_answers():
    assert "passed 5 checks" in labs.check_nash_md_step(_np_nash_md_step)

    # The library's pieces: its geometric mixture and win rates.
    def with_library(pi, mu, P, tau, eta):
        mix = pt.geometric_mixture(pi, mu, eta * tau)
        return pt.softmax(mix.log() + eta * pt.win_rates(P, mix))

    labs.check_nash_md_step(with_library)


def test_nash_md_checker_failures():
    def swapped(pi, mu, P, tau, eta):
        return _np_nash_md_step(mu, pi, P, tau, eta)  # weight eta * tau on pi instead of mu

    def opponent_pi(pi, mu, P, tau, eta):
        m = eta * tau
        mix = pi ** (1 - m) * mu**m
        mix = mix / mix.sum()
        new = mix * torch.exp(eta * (P @ pi))
        return new / new.sum()

    def unnormalised(pi, mu, P, tau, eta):
        new = torch.as_tensor(_np_nash_md_step(pi, mu, P, tau, eta))
        return 2.0 * new

    for wrong, hint in [
        (swapped, "wrong mixture direction"),
        (opponent_pi, "not pi_t: use P @ pi_mix"),
        (unnormalised, "sums to 2"),
    ]:
        message = _failure(labs.check_nash_md_step, wrong)
        assert (
            "constant eta, step t=1" in message
            and "tau=0.1, eta=0.5" in message
            and hint in message
        )
        assert "expected (" in message and "got (" in message


def test_nash_md_checker_transitions_are_nash_md_steps():
    """Every case is a real transition: the numpy step maps pi_t to the checker's pi_{t+1}."""
    for _, P, mu, pi, tau, eta, expected in _nash_md_cases():
        np.testing.assert_allclose(_np_nash_md_step(pi, mu, P, tau, eta), expected, rtol=1e-12)


# ------------------------------------------------------------------------------- lab 4

# Condorcet winner y0 (beats y1 and y2 with 0.55) but y1 crushes y2: average win rates under
# uniform nu are 0.533, 0.633, 0.333 (by hand), so the BT fit and RLHF rank y1 first.
CONDORCET_GAME = ([[0.5, 0.55, 0.55], [0.45, 0.5, 0.95], [0.45, 0.05, 0.5]], [1 / 3, 1 / 3, 1 / 3])


def test_condorcet_checker():
    message = labs.check_condorcet_disagreement(lambda: CONDORCET_GAME)
    assert "Condorcet winner y0" in message and "RLHF plays y1" in message
    # A Bradley-Terry game: the BT winner y2 is the Condorcet winner.
    message = _failure(
        labs.check_condorcet_disagreement, lambda: (pt.bradley_terry([0.0, 1.0, 2.0]), [1 / 3] * 3)
    )
    assert "RLHF agrees with the Nash equilibrium" in message and "Condorcet winner y2" in message
    # Not complementary: P[1, 2] + P[2, 1] = 0.95 + 0.06 = 1.01.
    bad = [[0.5, 0.55, 0.55], [0.45, 0.5, 0.95], [0.45, 0.06, 0.5]]
    message = _failure(labs.check_condorcet_disagreement, lambda: (bad, [1 / 3] * 3))
    assert "not a preference matrix" in message and "P[1, 2] + P[2, 1] = 1.01" in message
    message = _failure(
        labs.check_condorcet_disagreement, lambda: (pt.rock_paper_scissors(1.0), [1 / 3] * 3)
    )
    assert "no Condorcet winner" in message
    message = _failure(
        labs.check_condorcet_disagreement, lambda: (CONDORCET_GAME[0], [0.5, 0.5, 0.0])
    )
    assert "full-support" in message
    message = _failure(labs.check_condorcet_disagreement, lambda: pt.bradley_terry([0.0, 1.0, 2.0]))
    assert "return a pair (P, mu)" in message


def test_cycle_checker():
    message = labs.check_cycle_disagreement(lambda: (pt.three_voter_types(0.1), [1 / 3] * 3))
    # The paper's equilibrium (alpha3, alpha2, alpha1) = (0.383333, 0.383333, 0.233333) for epsilon = 0.1.
    assert "Nash equilibrium (0.383333, 0.383333, 0.233333)" in message
    message = _failure(
        labs.check_cycle_disagreement, lambda: (pt.rock_paper_scissors(1.0), [1 / 3] * 3)
    )
    assert "not nearly deterministic" in message and "0.333333 < 0.9" in message
    message = _failure(labs.check_cycle_disagreement, lambda: CONDORCET_GAME)
    assert "Condorcet winner y0" in message


# ---------------------------------------------------------- hints the checkers used to miss


def _ipo(h, t):
    return (h - 1 / (2 * t)) ** 2


@pytest.mark.parametrize(
    ("check", "wrong", "hint"),
    [
        (
            labs.check_ipo_loss,
            lambda pc, pr, rc, rr, t: _margin(pc, pr, rc, rr) ** 2,
            "the target 1/(2 tau) is missing",
        ),
        (
            labs.check_ipo_loss,
            lambda pc, pr, rc, rr, t: 0.5 * _ipo(_margin(pc, pr, rc, rr), t),
            "the factor 1/2 is not part of the IPO loss",
        ),
        (
            labs.check_ipo_loss,
            lambda pc, pr, rc, rr, t: _ipo(_margin(pc, pr, rc, rr), 2 * t),
            "tau appears as 2 tau",
        ),
        (  # "tokens": the margin averaged over the entries of the batch
            labs.check_ipo_loss,
            lambda pc, pr, rc, rr, t: _ipo(_margin(pc, pr, rc, rr) / len(pc), t),
            "h / L with L = 4",
        ),
        (
            labs.check_dpo_loss,
            lambda pc, pr, rc, rr, b: F.softplus(-b * _margin(pc, pr, rc, rr) / 10),
            "h / L with L = 10",
        ),
        (
            labs.check_dpo_loss,
            lambda pc, pr, rc, rr, b: -b * F.logsigmoid(_margin(pc, pr, rc, rr)),
            "beta is outside the log-sigmoid",
        ),
        (
            labs.check_ipo_optimum,
            lambda P, mu, nu, tau: torch.softmax(mu.log() + P @ nu / (2 * tau), -1),
            "tau appears as 2 tau",
        ),
        (
            labs.check_nash_md_step,
            lambda pi, mu, P, tau, eta: (
                lambda mix: torch.softmax(mix.log() + eta * (P @ mix), -1)
            )((1 - eta * tau) * pi + eta * tau * mu),
            "arithmetic mixture",
        ),
    ],
    ids=[
        "ipo-no-target",
        "ipo-half",
        "ipo-2tau",
        "ipo-per-token",
        "dpo-per-token",
        "dpo-beta-outside",
        "optimum-2tau",
        "nash-md-arithmetic-mixture",
    ],
)
def test_new_hints_are_recognised(check, wrong, hint):
    assert hint in _failure(check, wrong)


def test_ipo_without_target_names_the_first_input():
    message = _failure(labs.check_ipo_loss, lambda pc, pr, rc, rr, t: _margin(pc, pr, rc, rr) ** 2)
    # h = 1.5 on the first input (by hand): expected (1.5 - 5)^2 = 12.25, got 1.5^2 = 2.25.
    assert "input 'one pair'" in message and "expected (12.25)" in message
    assert "got (2.25)" in message


def test_float32_answer_says_so_with_enough_digits():
    error = _error(
        labs.check_dpo_loss,
        lambda pc, pr, rc, rr, b: F.softplus(-b * _margin(pc, pr, rc, rr)).float(),
    )
    first, *rest = str(error).splitlines()
    assert first.startswith("exercise 1a: your answer is float32") and "keep float64" in first
    expected = next(line for line in rest if "expected" in line).split()[-1]
    got = next(line for line in rest if line.strip().startswith("got"))
    # The two values differ in what is shown (not "expected 0.620957, got 0.620957").
    assert expected.strip("()") not in got and "(float32)" in got
    # -log sigmoid(0.15) = log1p(exp(-0.15)), shown to 9 digits at least.
    assert f"{math.log1p(math.exp(-0.15)):.9g}" in expected
    # A numpy float32 answer too.
    message = _failure(
        labs.check_dpo_loss,
        lambda pc, pr, rc, rr, b: (
            F.softplus(-b * _margin(pc, pr, rc, rr)).numpy().astype("float32")
        ),
    )
    assert "your answer is float32" in message


# ------------------------------------------------------------------ how a failure is shown


def test_render_traceback_is_short_with_the_hint_first():
    error = _error(
        labs.check_dpo_loss, lambda pc, pr, rc, rr, b: F.softplus(b * _margin(pc, pr, rc, rr))
    )
    lines = error._render_traceback_()
    assert 3 <= len(lines) <= MAX_RENDERED_LINES
    assert "LabCheckError" in lines[0] and "did you flip the sign of the margin" in lines[0]
    assert any("expected (0.620957)" in line for line in lines)
    assert not any("File " in line or "site-packages" in line for line in lines)

    def untouched(*args):
        raise NotImplementedError("# YOUR CODE: replace this line with your solution")

    lines = _error(labs.check_dpo_loss, untouched)._render_traceback_()
    assert len(lines) <= 3 and "exercise 1a is not done yet" in lines[0]


def test_render_traceback_of_a_crash_shows_the_students_line_only():
    def crashing(pc, pr, rc, rr, beta):
        h = _margin(pc, pr, rc, rr)
        return h / 0 + undefined_name  # noqa: F821

    lines = _error(labs.check_dpo_loss, crashing)._render_traceback_()
    assert "raised NameError" in lines[0]
    assert any("in crashing: return h / 0 + undefined_name" in line for line in lines)
    assert not any("prefopt_toy/labs" in line for line in lines)
    assert len(lines) <= MAX_RENDERED_LINES


def test_ipython_shows_the_rendered_lines():
    """IPython uses ``_render_traceback_`` (the installed version; see LabCheckError's docstring)."""
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    shown = []
    shell._showtraceback = lambda etype, evalue, stb: shown.append(stb)
    try:
        shell.run_cell(
            "from prefopt_toy import labs\n"
            "labs.check_dpo_loss(lambda pc, pr, rc, rr, b: -(pc - pr) * 0)\n"
        )
    finally:
        interactiveshell.InteractiveShell.clear_instance()
    assert len(shown) == 1 and len(shown[0]) <= MAX_RENDERED_LINES
    assert "LabCheckError" in shown[0][0] and "exercise 1a" in shown[0][0]


def test_a_warning_in_a_correct_answer_goes_to_stdout_not_stderr(capsys):
    """nbgrader scores a test cell that writes to stderr 0: a warning must not cost the points."""
    import warnings

    def dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta):
        warnings.warn("a harmless warning from the student's code", UserWarning, stacklevel=1)
        h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
        return -torch.nn.functional.logsigmoid(beta * h)

    labs.check_dpo_loss(dpo_loss)
    labs.grading.grade_dpo_loss(dpo_loss)
    out, err = capsys.readouterr()
    assert err == ""
    assert "note: your" in out and "UserWarning: a harmless warning" in out
