"""Lab checkers (prefopt_toy.labs): the students' self-check, its hints and how a failure shows.

Each checker must accept a correct answer and reject realistic wrong ones with a message that
names the input and the expected value, hint first. The expected values asserted on here are
computed in this file from the formulas themselves (math / numpy), independently of the library
the checkers use. The hidden tests are in test_grading.py, the nbgrader course in test_course.py.
"""

from __future__ import annotations

import functools
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


# ------------------------------------------------------------------------------- lab 5


def _np_kto(r, z0, d, beta, wd, wu):
    """d lambda_D sigma(-beta (r - z0)) + (1 - d) lambda_U sigma(beta (r - z0)), in numpy."""
    x = beta * (np.asarray(r) - z0)
    return np.where(np.asarray(d), wd / (1 + np.exp(x)), wu / (1 + np.exp(-x)))


def test_kto_checker_passes_an_independent_answer():
    assert "passed 4 checks" in labs.check_kto_loss(_np_kto)


# First input of the 5a checker: r = (0.5, -1, 2, -0.3), z0 = 0.2, desirable (T, F, T, F),
# beta = 0.5, lambda_D = 1, lambda_U = 1.5; expected first entry sigma(-0.15) = 0.462570 (by hand).
@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (
            lambda r, z0, d, b, wd, wu: torch.where(
                d, wd * torch.sigmoid(-b * (r - z0)), wu * torch.sigmoid(-b * (r - z0))
            ),
            "an undesirable example pushes its reward down",
        ),
        (
            lambda r, z0, d, b, wd, wu: torch.where(
                d, wd * torch.sigmoid(b * (r - z0)), wu * torch.sigmoid(-b * (r - z0))
            ),
            "the labels are the wrong way round",
        ),
        (lambda r, z0, d, b, wd, wu: _np_kto(r, z0, d, b, wu, wd), "the weights are swapped"),
        (lambda r, z0, d, b, wd, wu: _np_kto(r, 0.0, d, b, wd, wu), "z0 is missing"),
        (lambda r, z0, d, b, wd, wu: _np_kto(r, z0, d, 1.0, wd, wu), "beta seems to be missing"),
        (
            lambda r, z0, d, b, wd, wu: torch.where(
                d, -wd * F.logsigmoid(b * (r - z0)), -wu * F.logsigmoid(-b * (r - z0))
            ),
            "not -lambda log sigma",
        ),
    ],
    ids=[
        "undesirable-sign",
        "labels-swapped",
        "weights-swapped",
        "no-z0",
        "no-beta",
        "log-sigmoid",
    ],
)
def test_kto_checker_hints(wrong, hint):
    message = _failure(labs.check_kto_loss, wrong)
    assert "input '4 examples, 2 desirable'" in message and "z0=0.2, beta=0.5" in message
    assert f"expected ({1 / (1 + math.exp(0.15)):.6g}," in message
    assert hint in message


def _np_kl(p, q):
    p, q = np.asarray(p), np.asarray(q)
    s = p > 0
    return float((p[s] * np.log(p[s] / q[s])).sum())


def test_kl_reference_point_checker():
    assert "passed 4 checks" in labs.check_kl_reference_point(_np_kl)
    # First pair: pi = (0.6, 0.3, 0.1), mu = (0.2, 0.3, 0.5).
    pi, mu = [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]
    expected = 0.6 * math.log(3.0) + 0.1 * math.log(0.2)  # 0.498227 by hand
    for wrong, hint in [
        (lambda p, m: _np_kl(m, p), "KL in the wrong direction"),
        (lambda p, m: float((m * (p.log() - m.log())).sum()), "the expectation under mu"),
        (lambda p, m: float((p.log() - m.log()).sum()), "not weighted"),
    ]:
        message = _failure(labs.check_kl_reference_point, wrong)
        assert "pi=(0.6, 0.3, 0.1), mu=(0.2, 0.3, 0.5)" in message and hint in message
        assert f"expected {expected:.6g}" in message
    assert _np_kl(pi, mu) == pytest.approx(expected)
    # 0 log 0 computed naively is nan on the pair with a zero entry.
    message = _failure(labs.check_kl_reference_point, lambda p, m: (p * (p / m).log()).sum())
    assert "with a zero entry" in message and "0 log 0 is 0" in message


def test_trl_reference_point_checker():
    assert "passed 5 checks" in labs.check_trl_reference_point(
        lambda x: max(0.0, float(np.mean(x.detach().numpy())))
    )
    # (-0.5, 0.2, -0.3): mean -0.2, clamped to 0.
    message = _failure(labs.check_trl_reference_point, lambda x: x.detach().mean())
    assert "negative mean" in message and "the clamp is missing" in message
    assert "expected 0" in message and "got -0.2" in message
    message = _failure(labs.check_trl_reference_point, lambda x: x.detach().clamp_min(0).mean())
    assert "clamp the mean, not each log-ratio" in message
    message = _failure(labs.check_trl_reference_point, lambda x: x.mean().clamp_min(0.0))
    assert "detach it" in message and "requires grad" in message


def _np_dropped(P, mu, wd, wu):
    d = np.asarray(P) @ np.asarray(mu)
    return wu * (1 - d) > wd * d


def test_kto_dropped_checker():
    message = labs.check_kto_dropped(_np_dropped)
    assert "passed 3 checks" in message and "Exact KTO" in message
    for wrong, hint in [
        (lambda P, mu, wd, wu: ~_np_dropped(P, mu, wd, wu), "these are the actions KTO keeps"),
        (lambda P, mu, wd, wu: _np_dropped(P, mu, wu, wd), "the weights are swapped"),
        (lambda P, mu, wd, wu: (P @ mu) < 0.5, "the weights are missing"),
        (lambda P, mu, wd, wu: _np_dropped(P.T, mu, wd, wu), "or P is transposed"),
        (
            lambda P, mu, wd, wu: _np_dropped(P, torch.full_like(mu, 1 / len(mu)), wd, wu),
            "the data are drawn from mu",
        ),
    ]:
        assert hint in _failure(labs.check_kto_dropped, wrong)


def test_kto_dropped_rule_is_what_the_exact_dynamics_do():
    """On the checker's first game the dropped actions fall, the others stay away from 0."""
    from prefopt_toy.labs.kto import _dropped_cases

    _, P, mu, wd, wu = _dropped_cases()[0]
    run = pt.ALGORITHMS["kto"](
        P, mu, beta=0.5, steps=1500, desirable_weight=wd, undesirable_weight=wu
    )
    dropped = _np_dropped(P, mu, wd, wu)
    assert dropped.any() and not dropped.all()
    half, end = run.policies[750].numpy(), run.final.numpy()
    assert (end[dropped] < 1e-3).all() and (end[dropped] < half[dropped]).all()
    assert (end[~dropped] > 0.05).all()


# ------------------------------------------------------------------------------- lab 6


def _np_bt(s):
    s = np.asarray(s)
    return 1 / (1 + np.exp(-(s[:, None] - s[None, :])))


def _np_gibbs(mu, reward, beta):
    z = np.log(np.asarray(mu)) + np.asarray(reward) / beta
    w = np.exp(z - z.max())
    return w / w.sum()


def test_length_judge_checker():
    assert "passed 3 checks" in labs.check_length_biased_preferences(
        lambda q, L, k: _np_bt(q + k * L)
    )
    for wrong, hint in [
        (lambda q, L, k: _np_bt(q - k * L), "the sign of the length term"),
        (lambda q, L, k: _np_bt(q + k * L).T, "P is transposed"),
        (lambda q, L, k: _np_bt(q), "the length term is missing"),
    ]:
        message = _failure(labs.check_length_biased_preferences, wrong)
        assert "q=(1, 0.5, 0), L=(1, 4, 2), kappa=0.3" in message and hint in message


def test_dpo_length_optimum_checker():
    assert "passed 3 checks" in labs.check_dpo_length_optimum(
        lambda q, L, k, mu, b: _np_gibbs(mu, q + k * L, b)
    )
    # First input: q = (1, 0.5, 0, -0.2), L = (1, 4, 2, 8), kappa = 0.3, uniform mu, beta = 1.
    expected = _np_gibbs([0.25] * 4, np.array([1.3, 1.7, 0.6, 2.2]), 1.0)
    for wrong, hint in [
        (lambda q, L, k, mu, b: _np_gibbs(mu, q, b), "that is the length-free optimum"),
        (lambda q, L, k, mu, b: _np_gibbs(mu, q - k * L, b), "the sign of the length term"),
    ]:
        message = _failure(labs.check_dpo_length_optimum, wrong)
        assert hint in message
        assert "expected (" + ", ".join(f"{v:.6g}" for v in expected) + ")" in message
    # beta r instead of r / beta: seen on the second input (beta = 0.2).
    message = _failure(
        labs.check_dpo_length_optimum, lambda q, L, k, mu, b: _np_gibbs(mu, b * b * (q + k * L), b)
    )
    assert "beta multiplies the reward" in message and "beta=0.2" in message
    message = _failure(
        labs.check_dpo_length_optimum,
        lambda q, L, k, mu, b: (lambda w: w / w.sum())(mu * torch.exp((q + k * L) / b)),
    )
    assert "small beta=0.001" in message and "torch.softmax" in message


def _np_rdpo(pc, pr, rc, rr, lw, ll, beta, alpha):
    h = (pc - rc) - (pr - rr)
    return np.logaddexp(0.0, -(beta * h + alpha * (lw - ll)).numpy())


def test_rdpo_loss_checker():
    assert "passed 3 checks" in labs.check_rdpo_loss(_np_rdpo)
    # First pair: h = 1.5, |y_w| = 5, |y_l| = 2, beta = 0.1, alpha = 0.2: -log sigma(0.15 + 0.6).
    expected = math.log1p(math.exp(-0.75))
    cases = [
        (
            lambda pc, pr, rc, rr, lw, ll, b, a: _np_rdpo(pc, pr, rc, rr, ll, lw, b, a),
            "the sign of the length term",
        ),
        (
            lambda pc, pr, rc, rr, lw, ll, b, a: _np_rdpo(pc, pr, rc, rr, b * lw, b * ll, b, a),
            "alpha is multiplied by beta",
        ),
        (
            lambda pc, pr, rc, rr, lw, ll, b, a: _np_rdpo(pc, pr, rc, rr, lw, ll, b, 0.0),
            "the length term is missing",
        ),
    ]
    for wrong, hint in cases:
        message = _failure(labs.check_rdpo_loss, wrong)
        assert "input 'one pair'" in message and "beta=0.1, alpha=0.2" in message
        assert f"expected ({expected:.6g})" in message and hint in message
    message = _failure(
        labs.check_rdpo_loss,
        lambda pc, pr, rc, rr, lw, ll, b, a: (
            -torch.log(torch.sigmoid(b * _margin(pc, pr, rc, rr) + a * (lw - ll)))
        ),
    )
    assert "margins +-1e3" in message and "logsigmoid" in message


def test_rdpo_optimum_checker():
    assert "passed 3 checks" in labs.check_rdpo_optimum(
        lambda r, mu, L, b, a: _np_gibbs(mu, r - a * L, b)
    )
    for wrong, hint in [
        (lambda r, mu, L, b, a: _np_gibbs(mu, r + a * L, b), "the sign of the length term"),
        (
            lambda r, mu, L, b, a: _np_gibbs(mu, b * b * (r - a * L), b),
            "beta multiplies the reward",
        ),
        (lambda r, mu, L, b, a: _np_gibbs(mu, r - b * a * L, b), "alpha L is divided by beta too"),
        (lambda r, mu, L, b, a: _np_gibbs(mu, r, b), "the length term is missing"),
    ]:
        message = _failure(labs.check_rdpo_optimum, wrong)
        assert "r=(1, 0.5, 0), mu=(0.5, 0.3, 0.2)" in message and hint in message


def test_debiasing_alpha_checker():
    message = labs.check_debiasing_alpha(lambda kappa, beta: kappa)
    assert "passed 4 checks" in message and "Exact R-DPO" in message
    for wrong, hint in [
        (lambda k, b: b * k, "not beta * kappa"),
        (lambda k, b: k / b, "not kappa / beta"),
        (lambda k, b: -k, "alpha = +kappa"),
        (lambda k, b: 0.0, "plain DPO"),
    ]:
        message = _failure(labs.check_debiasing_alpha, wrong)
        assert "kappa=0.3, beta=0.5" in message and "expected 0.3" in message and hint in message


def test_new_labs_not_done_is_readable():
    def untouched(*args):
        raise NotImplementedError("# YOUR CODE: replace this line with your solution")

    for exercise, check in [
        ("5a", labs.check_kto_loss),
        ("5b", labs.check_kl_reference_point),
        ("5c", labs.check_trl_reference_point),
        ("5d", labs.check_kto_dropped),
        ("6a", labs.check_length_biased_preferences),
        ("6b", labs.check_dpo_length_optimum),
        ("6c", labs.check_rdpo_loss),
        ("6d", labs.check_rdpo_optimum),
        ("6e", labs.check_debiasing_alpha),
    ]:
        assert _failure(check, untouched).startswith(f"exercise {exercise} is not done yet")


# ------------------------------------------------------------------------------- lab 7


def _path_prob(nxt, y):
    p = torch.ones((), dtype=torch.float64)
    for t, token in enumerate(y):
        p = p * nxt[y[:t]][token]
    return p


def _kl7(m, p):
    return (m * (m.log() - p.log())).sum()


def _seqkl7(mu, pi, y):
    return sum(_kl7(mu[y[:t]], pi[y[:t]]) for t in range(len(y)))


def _tdpo7(pc, pr, rc, rr, kw, kl, b, a, stop):
    z = _margin(pc, pr, rc, rr) - a * (kl - (kw.detach() if stop else kw))
    return F.softplus(-b * z)


def test_next_token_tables_is_the_table_by_prefix():
    tree = pt.TokenTree(3, 2)
    table = torch.tensor([[0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.3, 0.5, 0.2]], dtype=torch.float64)
    nxt = labs.next_token_tables(tree, table)
    assert list(nxt) == [(), (0,), (1,)]
    assert torch.equal(nxt[(1,)], table[2])
    with pytest.raises(ValueError, match="table must have shape"):
        labs.next_token_tables(tree, table[:2])
    with pytest.raises(ValueError, match="tree must be a TokenTree"):
        labs.next_token_tables("tree", table)


def test_sequence_probability_checker():
    assert "passed 3 checks" in labs.check_sequence_probability(_path_prob)
    # First tree: V=3, T=2, pi rows () (0.2, 0.2, 0.6), (0,) (0.7, 0.2, 0.1), (1,) (0.3, 0.5, 0.2);
    # sequences (2,), (0, 2), (0, 0), ...: pi = 0.6, 0.2 * 0.1 = 0.02, 0.2 * 0.7 = 0.14 (by hand).
    eos = 2
    for wrong, hint in [
        (lambda n, y: _path_prob(n, y[:-1] if y[-1] == eos else y), "the end token is missing"),
        (lambda n, y: _path_prob(n, y).log(), "that is log pi(y)"),
        (lambda n, y: _path_prob({p: n[()] for p in n}, y), "read from the root's row"),
        (
            lambda n, y: sum(n[y[:t]][tok] for t, tok in enumerate(y)),
            "multiply (chain rule), they do not add",
        ),
    ]:
        message = _failure(labs.check_sequence_probability, wrong)
        assert "V=3, T=2 (7 sequences)" in message and "expected (0.6, 0.02, 0.14," in message
        assert hint in message


def test_prefix_kl_checker():
    assert "passed 4 checks" in labs.check_prefix_kl(_kl7)
    # First pair: mu = (0.5, 0.3, 0.2), pi = (0.2, 0.2, 0.6).
    expected = 0.5 * math.log(2.5) + 0.3 * math.log(1.5) + 0.2 * math.log(1 / 3)
    for wrong, hint in [
        (lambda m, p: _kl7(p, m), "the KL in the wrong direction"),
        (lambda m, p: -_kl7(m, p), "the sign"),
        (lambda m, p: (m.log() - p.log()).sum(), "not weighted"),
    ]:
        message = _failure(labs.check_prefix_kl, wrong)
        assert "mu=(0.5, 0.3, 0.2), pi=(0.2, 0.2, 0.6)" in message and hint in message
        assert f"expected {expected:.6g}" in message


def test_sequential_kl_checker():
    assert "passed 3 checks" in labs.check_sequential_kl(_seqkl7)
    # First tree: mu rows () (0.5, 0.3, 0.2), (0,) (0.1, 0.6, 0.3); SeqKL((2,)) = KL at the root,
    # SeqKL((0, 2)) = KL at the root + KL at (0,).
    mu0, pi0 = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.2, 0.6])
    mu1, pi1 = np.array([0.1, 0.6, 0.3]), np.array([0.7, 0.2, 0.1])
    root = float((mu0 * np.log(mu0 / pi0)).sum())
    second = root + float((mu1 * np.log(mu1 / pi1)).sum())
    eos = 2
    for wrong, hint in [
        (
            lambda m, p, y: _seqkl7(m, p, y[:-1]) if y[-1] == eos else _seqkl7(m, p, y),
            "the position that emits EOS is missing",
        ),
        (lambda m, p, y: _seqkl7(p, m, y), "the KL in the wrong direction"),
        (lambda m, p, y: _kl7(m[()], p[()]), "the KL at the root only"),
        (lambda m, p, y: sum(_kl7(m[s], p[s]) for s in m), "every prefix of the tree"),
    ]:
        message = _failure(labs.check_sequential_kl, wrong)
        assert "V=3, T=2 (7 sequences)" in message and hint in message
        assert f"expected ({root:.6g}, {second:.6g}," in message


def test_tdpo1_loss_checker():
    good = functools.partial(_tdpo7, a=1.0, stop=False)
    assert "passed 6 checks" in labs.check_tdpo1_loss(
        lambda pc, pr, rc, rr, kw, kl, b: good(pc, pr, rc, rr, kw, kl, b)
    )
    # First pair: u = 1.5, SeqKL_w = 0.2, SeqKL_l = 0.6, beta = 0.1: z = 1.1 (by hand).
    expected = math.log1p(math.exp(-0.11))
    for wrong, hint in [
        (
            lambda pc, pr, rc, rr, kw, kl, b: good(pc, pr, rc, rr, kl, kw, b),
            "the sign of the KL term",
        ),
        (
            lambda pc, pr, rc, rr, kw, kl, b: good(pc, pr, rc, rr, kw / b, kl / b, b),
            "outside beta",
        ),
        (lambda pc, pr, rc, rr, kw, kl, b: good(pc, pr, rc, rr, kw, kw, b), "that is the DPO loss"),
    ]:
        message = _failure(labs.check_tdpo1_loss, wrong)
        assert "input 'one pair'" in message and f"expected ({expected:.6g})" in message
        assert hint in message
    # The right value with TDPO2's stop-gradient: the gradient in SeqKL(y_w) gives it away,
    # expected -beta sigma(-beta z) = -0.1 sigma(-0.11).
    message = _failure(
        labs.check_tdpo1_loss,
        lambda pc, pr, rc, rr, kw, kl, b: _tdpo7(pc, pr, rc, rr, kw, kl, b, 1.0, True),
    )
    assert "the gradient in SeqKL(y_w)" in message and "TDPO1 has no stop-gradient" in message
    assert f"expected ({-0.1 / (1 + math.exp(0.11)):.6g})" in message
    message = _failure(
        labs.check_tdpo1_loss,
        lambda pc, pr, rc, rr, kw, kl, b: (
            -torch.log(torch.sigmoid(b * (_margin(pc, pr, rc, rr) - (kl - kw))))
        ),
    )
    assert "margins +-1e3" in message and "logsigmoid" in message


def test_tdpo2_loss_checker():
    assert "passed 6 checks" in labs.check_tdpo2_loss(
        lambda pc, pr, rc, rr, kw, kl, b, a: _tdpo7(pc, pr, rc, rr, kw, kl, b, a, True)
    )
    # First pair, alpha = 0.5: z = 1.5 - 0.5 (0.6 - 0.2) = 1.3 (by hand).
    expected = math.log1p(math.exp(-0.13))
    for wrong, hint in [
        (
            lambda pc, pr, rc, rr, kw, kl, b, a: _tdpo7(pc, pr, rc, rr, kw, kl, b, 1.0, True),
            "alpha is missing",
        ),
        (
            lambda pc, pr, rc, rr, kw, kl, b, a: _tdpo7(pc, pr, rc, rr, kl, kw, b, a, True),
            "the sign of the KL term",
        ),
    ]:
        message = _failure(labs.check_tdpo2_loss, wrong)
        assert "alpha=0.5" in message and f"expected ({expected:.6g})" in message
        assert hint in message
    message = _failure(
        labs.check_tdpo2_loss,
        lambda pc, pr, rc, rr, kw, kl, b, a: _tdpo7(pc, pr, rc, rr, kw, kl, b, a, False),
    )
    assert "gradient through SeqKL(y_w) is not zero" in message and "expected (0)" in message
    message = _failure(
        labs.check_tdpo2_loss,
        lambda *args: _tdpo7(*args, True).detach(),
    )
    assert "carries no gradient" in message


def test_expected_sequential_kl_checker():
    def expected_seqkl(mu, pi, seqs):
        return sum(_path_prob(pi, y) * _seqkl7(mu, pi, y) for y in seqs)

    message = labs.check_expected_sequential_kl(expected_seqkl)
    assert "passed 4 checks" in message and "DPO " in message and "TDPO2" in message
    for wrong, hint in [
        (
            lambda mu, pi, seqs: sum(_path_prob(mu, y) * _seqkl7(mu, pi, y) for y in seqs),
            "not from the reference",
        ),
        (
            lambda mu, pi, seqs: sum(
                _path_prob(pi, y) * (_path_prob(pi, y) / _path_prob(mu, y)).log() for y in seqs
            ),
            "KL(pi_seq || mu_seq)",
        ),
        (lambda mu, pi, seqs: sum(_seqkl7(mu, pi, y) for y in seqs), "not weighted"),
    ]:
        assert hint in _failure(labs.check_expected_sequential_kl, wrong)


def test_lab7_run_numbers_against_the_chain_rule():
    """The runs the 7f message reports: E_pi SeqKL = sum_s d_pi(s) KL_s (a second computation)."""
    from prefopt_toy.labs.token_kl import lab_runs

    for run, low, high in zip(lab_runs(), (1.1, 0.38), (1.2, 0.44)):
        tree, end = run.tree, run.log_tables[-1].exp()
        mu, pi = labs.next_token_tables(tree, run.mu), labs.next_token_tables(tree, end)
        by_sequence = sum(_path_prob(pi, y) * _seqkl7(mu, pi, y) for y in tree.sequences)
        visits = {p: _path_prob(pi, p) for p in tree.prefixes}  # d_pi(s): the path to s
        by_prefix = sum(visits[s] * _kl7(mu[s], pi[s]) for s in tree.prefixes)
        assert float(by_sequence) == pytest.approx(float(by_prefix), rel=1e-12)
        assert low < float(by_sequence) < high  # DPO 1.1499, TDPO2 0.4096 (README table)


def test_lab7_not_done_is_readable():
    def untouched(*args):
        raise NotImplementedError("# YOUR CODE: replace this line with your solution")

    for exercise, check in [
        ("7a", labs.check_sequence_probability),
        ("7b", labs.check_prefix_kl),
        ("7c", labs.check_sequential_kl),
        ("7d", labs.check_tdpo1_loss),
        ("7e", labs.check_tdpo2_loss),
        ("7f", labs.check_expected_sequential_kl),
    ]:
        assert _failure(check, untouched).startswith(f"exercise {exercise} is not done yet")
