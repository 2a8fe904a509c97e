r"""Coursework labs: the students' self-checks, the hidden tests, and the nbgrader course around them.

The labs are nbgrader source notebooks in ``course/source/`` (the teacher's side); their student
versions, made by ``nbgrader generate_assignment``, are in ``notebooks/labs/``. Each asks the
student to write a function in a cell marked ``# YOUR CODE``; the autograded cell after it calls a
checker from this module, e.g. ``labs.check_dpo_loss(dpo_loss)``, the student's self-check. A
checker runs the student's function on several named inputs and compares the result with the
library:

- on success it prints and returns a short "passed N checks" message;
- on failure it raises :class:`LabCheckError` (an ``AssertionError``) whose first line names the
  exercise and, when the answer matches a common mistake (sign flipped, ``beta`` missing or outside
  the log-sigmoid, ``log(sigmoid(x))`` overflowing, no IPO target, a per-token margin, a float32
  answer, an arithmetic mixture, ...), the hint; the lines below give the input, the expected and
  the returned values. In Jupyter that message is all that shows (no traceback through the
  library's files);
- an exercise left untouched raises ``NotImplementedError`` inside the student's code, which the
  checker turns into a readable "exercise N is not done yet" message.

In the source notebooks the same cell then runs the hidden tests of :mod:`.grading` (fresh
inputs, a numpy oracle, a guard against calling the library's own implementation), which
``nbgrader generate_assignment`` strips from the student version and ``nbgrader autograde``
restores. :mod:`.course` drives nbgrader: ``python -m prefopt_toy.labs release`` and
``python -m prefopt_toy.labs grade [SUBMITTED]``.

References
----------
Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO);
Munos et al., arXiv:2312.00886v4 (Nash-MD, RLHF vs. Nash); Ethayarajh et al., arXiv:2402.01306v4
(KTO); Park et al., arXiv:2403.19159v3 (R-DPO); Zeng et al., arXiv:2404.11999v5 (TDPO, the
sequential KL); nbgrader,
https://nbgrader.readthedocs.io.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from . import grading  # noqa: F401  (labs.grading.* in the hidden tests of course/source/)

# Re-exports: the checkers live in checking (machinery), losses (labs 1-2), games (labs 3-4),
# kto (lab 5), lengths (lab 6) and token_kl (lab 7).
from .checking import ATOL, RTOL, CheckPassed, LabCheckError  # noqa: F401
from .games import (
    check_condorcet_disagreement,
    check_cycle_disagreement,
    check_nash_md_step,
)
from .kto import (
    check_kl_reference_point,
    check_kto_dropped,
    check_kto_loss,
    check_trl_reference_point,
)
from .lengths import (
    check_debiasing_alpha,
    check_dpo_length_optimum,
    check_length_biased_preferences,
    check_rdpo_loss,
    check_rdpo_optimum,
)
from .losses import check_dpo_loss, check_ipo_loss, check_ipo_optimum
from .token_kl import (
    check_expected_sequential_kl,
    check_prefix_kl,
    check_sequence_probability,
    check_sequential_kl,
    check_tdpo1_loss,
    check_tdpo2_loss,
    next_token_tables,
)

__all__ = [
    "CheckPassed",
    "LabCheckError",
    "check_condorcet_disagreement",
    "check_cycle_disagreement",
    "check_debiasing_alpha",
    "check_dpo_length_optimum",
    "check_dpo_loss",
    "check_expected_sequential_kl",
    "check_ipo_loss",
    "check_ipo_optimum",
    "check_kl_reference_point",
    "check_kto_dropped",
    "check_kto_loss",
    "check_length_biased_preferences",
    "check_nash_md_step",
    "check_prefix_kl",
    "check_rdpo_loss",
    "check_rdpo_optimum",
    "check_sequence_probability",
    "check_sequential_kl",
    "check_tdpo1_loss",
    "check_tdpo2_loss",
    "check_trl_reference_point",
    "main",
    "next_token_tables",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m prefopt_toy.labs {release,grade}``: release the labs, or grade submissions.

    ``release`` runs ``nbgrader generate_assignment`` for every lab of ``course/source/``, refreshes
    ``notebooks/labs/*.ipynb`` and writes ``dist/prefopt_toy-labs.zip``; ``grade [SUBMITTED]``
    autogrades ``SUBMITTED/<student>/<lab>/<lab>.ipynb`` (default ``course/submitted/``) and
    exports the points per exercise to ``course/grades.csv`` (:mod:`prefopt_toy.labs.course`).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.

    References
    ----------
    nbgrader, https://nbgrader.readthedocs.io.
    """
    from . import course

    parser = argparse.ArgumentParser(
        prog="python -m prefopt_toy.labs",
        description="Release the labs (nbgrader generate_assignment) or grade submissions "
        "(nbgrader autograde and export); see course/README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rel = commands.add_parser("release", help="generate the student notebooks and the archive")
    rel.add_argument("--course", default=None, help="the nbgrader course folder (default: course/)")
    rel.add_argument("--archive", default=None, help="the zip written (default: dist/)")
    gra = commands.add_parser("grade", help="autograde submissions, export grades.csv")
    gra.add_argument("submitted", nargs="?", default=None, help="<student>/<lab>/<lab>.ipynb")
    gra.add_argument("--course", default=None, help="the nbgrader course folder (default: course/)")
    gra.add_argument("--out", default=None, help="the CSV written (default: course/grades.csv)")
    gra.add_argument("--force", action="store_true", help="autograde graded submissions again")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            archive = course.release(args.course, archive=args.archive)
            print(f"student notebooks in {course.labs_dir()}; archive {archive}")
        else:
            out = course.grade(args.submitted, args.course, args.out, force=args.force)
            print(f"grades (points per student, lab and exercise): {out}")
    except ValueError as err:  # a path or folder that cannot be used: one line, status 2
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:  # nbgrader printed its own message above
        command = " ".join(str(a) for a in err.cmd[2:])
        print(f"{parser.prog} {args.command}: error: {command} failed", file=sys.stderr)
        return 1
    return 0
