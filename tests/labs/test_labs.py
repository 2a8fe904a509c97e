"""Lab checkers (prefopt_toy.labs), the student/solution notebook pairs, and running the labs.

Each checker must accept a correct answer and reject realistic wrong ones with a message that
names the input and the expected value. The expected values asserted on here are computed in this
file from the formulas themselves (math / numpy), independently of the library the checkers use.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import prefopt_toy as pt
from prefopt_toy import labs
from prefopt_toy.labs.games import _nash_md_cases

LABS = Path(__file__).resolve().parents[2] / "notebooks" / "labs"
SOLUTIONS = sorted((LABS / "solutions").glob("lab*.py"))
NAMES = [p.stem for p in SOLUTIONS]


def _margin(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


def _failure(check, answer) -> str:
    with pytest.raises(labs.LabCheckError) as info:
        check(answer)
    return str(info.value)


def test_there_are_at_least_four_labs():
    assert len(SOLUTIONS) >= 4, NAMES


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


# ------------------------------------------------------- one source of truth for the notebooks


def test_student_version_replaces_regions_keeping_indentation():
    text = (
        "x = 1\n# BEGIN SOLUTION\ny = 2\n# END SOLUTION\n"
        "def f():\n    # YOUR CODE\n    # BEGIN SOLUTION\n    return 3\n    # END SOLUTION\n"
    )
    assert labs.student_version(text) == (
        "x = 1\n" + labs.PLACEHOLDER + "\ndef f():\n    # YOUR CODE\n    " + labs.PLACEHOLDER + "\n"
    )
    for bad, where in [
        ("# BEGIN SOLUTION\nx\n", "line 1 is never closed"),
        ("x\n# END SOLUTION\n", "line 2 closes"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "line 2 opens"),
        ("x = 1\n", "no '# BEGIN SOLUTION'"),
    ]:
        with pytest.raises(ValueError, match=where.replace("(", r"\(")):
            labs.student_version(bad)


@pytest.mark.parametrize("name", NAMES)
def test_student_py_is_generated_from_the_solution(name):
    solution = (LABS / "solutions" / f"{name}.py").read_text(encoding="utf-8")
    student = (LABS / f"{name}.py").read_text(encoding="utf-8")
    assert student == labs.student_version(solution), (
        f"run: python -m prefopt_toy.labs build ({name})"
    )
    assert labs.BEGIN_SOLUTION not in student and "# YOUR CODE" in student
    assert student.count("labs.check_") >= 1


def test_build_check_reports_nothing_out_of_date():
    assert labs.build_student_notebooks(LABS, check=True) == []


@pytest.mark.parametrize(
    "path",
    [LABS / f"{n}.py" for n in NAMES] + SOLUTIONS,
    ids=lambda p: p.parent.name + "/" + p.stem,
)
def test_ipynb_pair_in_sync_and_without_outputs(path):
    jupytext = pytest.importorskip("jupytext")
    py, ipynb = jupytext.read(path), jupytext.read(path.with_suffix(".ipynb"))
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert cells(py) == cells(ipynb), f"run: .venv/bin/jupytext --sync {path}"
    assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code")
    assert ipynb.metadata["kernelspec"]["name"] == "python3"
    params = [c for c in py.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "PREFOPT_SMOKE" in params[0].source


# --------------------------------------------------------------------- executing the notebooks

# Kernels start in seconds and mostly wait on imports, so the 2 x len(NAMES) notebooks run
# concurrently (at most CONCURRENT kernels at once), once per test session.
CONCURRENT = 4


async def _run(path: Path, gate) -> tuple[object, BaseException | None]:
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(path.parent)}}
    )
    async with gate:
        try:
            await client.async_execute()
        except nbclient.exceptions.CellExecutionError as err:
            return nb, err
    return nb, None


@pytest.fixture(scope="module")
def executed():
    """{(kind, name): (executed notebook, CellExecutionError or None)}, in smoke mode."""
    pytest.importorskip("nbclient")
    import asyncio

    paths = {("student", n): LABS / f"{n}.ipynb" for n in NAMES}
    paths |= {("solution", n): LABS / "solutions" / f"{n}.ipynb" for n in NAMES}

    async def run_all():
        gate = asyncio.Semaphore(CONCURRENT)
        results = await asyncio.gather(*(_run(p, gate) for p in paths.values()))
        return dict(zip(paths, results))

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFOPT_SMOKE", "1")
        patch.setenv("MPLBACKEND", "Agg")
        return asyncio.run(run_all())


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NAMES)
def test_untouched_student_notebook_stops_at_the_first_check(name, executed):
    nb, error = executed["student", name]
    assert error is not None, f"the untouched student notebook {name} ran to the end"
    assert error.ename == "LabCheckError"
    assert "is not done yet: fill in the cell marked # YOUR CODE" in error.evalue
    failed = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    first_check = next(
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "labs.check_" in c.source
    )
    assert failed == [first_check]


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NAMES)
def test_solution_notebook_runs(name, executed):
    nb, error = executed["solution", name]
    assert error is None, f"{name}: {error}"
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    n_checks = sum("labs.check_" in c.source for c in nb.cells if c.cell_type == "code")
    assert printed.count(": passed ") == n_checks >= 1
