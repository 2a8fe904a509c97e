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
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# Re-exports: the checkers live in checking (machinery), losses (labs 1-2) and games (labs 3-4).
from .checking import ATOL, RTOL, CheckPassed, LabCheckError  # noqa: F401
from .games import (
    check_condorcet_disagreement,
    check_cycle_disagreement,
    check_nash_md_step,
)
from .losses import check_dpo_loss, check_ipo_loss, check_ipo_optimum

__all__ = [
    "BEGIN_SOLUTION",
    "CheckPassed",
    "END_SOLUTION",
    "LabCheckError",
    "build_student_notebooks",
    "check_condorcet_disagreement",
    "check_cycle_disagreement",
    "check_dpo_loss",
    "check_ipo_loss",
    "check_ipo_optimum",
    "check_nash_md_step",
    "student_version",
]

BEGIN_SOLUTION = "# BEGIN SOLUTION"


END_SOLUTION = "# END SOLUTION"


PLACEHOLDER = 'raise NotImplementedError("# YOUR CODE: replace this line with your solution")'


# ---------------------------------------------------------------- student versions and build


def student_version(solution_text: str) -> str:
    r"""The student version of a solution notebook's py:percent text.

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
    >>> text = "def f(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\n"
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
                raise ValueError(
                    f"solution_text: line {number} opens a solution region inside the one opened "
                    f"at line {begin_line} (regions must not nest)"
                )
            begin_line = number
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{PLACEHOLDER}\n")
        elif marker == END_SOLUTION:
            if begin_line is None:
                raise ValueError(
                    f"solution_text: line {number} closes a solution region that was never opened"
                )
            begin_line = None
            regions += 1
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise ValueError(
            f"solution_text: the solution region opened at line {begin_line} is never closed"
        )
    if regions == 0:
        raise ValueError(f"solution_text: no '{BEGIN_SOLUTION}' ... '{END_SOLUTION}' region found")
    return "".join(out)


def labs_dir() -> Path:
    """``notebooks/labs`` of the source checkout this package is imported from.

    References
    ----------
    See :func:`student_version`.
    """
    return Path(__file__).resolve().parents[2] / "notebooks" / "labs"


def _jupytext_sync(paths: Sequence[Path]) -> None:
    # The CLI (not the Python API) so that notebooks/jupytext.toml decides the pairing.
    subprocess.run(
        [sys.executable, "-m", "jupytext", "--sync", "--quiet", *map(str, paths)], check=True
    )


def build_student_notebooks(
    root: Path | str | None = None, *, check: bool = False, sync: bool = True
) -> list[Path]:
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
    parser.add_argument(
        "--check", action="store_true", help="only report student files that are out of date"
    )
    parser.add_argument(
        "--root", default=None, help="labs folder (default: notebooks/labs of this checkout)"
    )
    args = parser.parse_args(argv)
    paths = build_student_notebooks(args.root, check=args.check)
    if args.check:
        for path in paths:
            print(f"out of date: {path}")
        return 1 if paths else 0
    for path in paths:
        print(f"wrote {path}")
    return 0
