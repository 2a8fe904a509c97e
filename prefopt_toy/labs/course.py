r"""The teacher's side of the labs: release them and grade a folder of submissions, with nbgrader.

The labs are nbgrader source notebooks in ``course/source/<lab>/<lab>.ipynb`` (solution regions,
autograded test cells with points, hidden tests from :mod:`prefopt_toy.labs.grading`). This
module drives nbgrader's own command line in a subprocess, with the course folder as its working
directory (so ``course/nbgrader_config.py`` and the gradebook ``course/gradebook.db`` are the ones
used):

- :func:`release` runs ``nbgrader generate_assignment`` for every lab (the student versions land in
  ``course/release/<lab>/``, the lab and its grade cells in the gradebook), copies each student
  notebook to ``notebooks/labs/`` and writes ``dist/prefopt_toy-labs.zip`` (the notebooks and the
  students' README), what a student downloads;
- :func:`grade` copies ``SUBMITTED/<student>/<lab>/<lab>.ipynb`` into ``course/submitted/`` when
  the submissions are elsewhere, runs ``nbgrader autograde`` on every lab that has submissions,
  then ``nbgrader export`` with :class:`ExerciseCsvExport`, which writes one CSV row per student,
  lab and exercise (``course/grades.csv``).

``python -m prefopt_toy.labs release`` and ``python -m prefopt_toy.labs grade [SUBMITTED]`` call
them (``make release``, ``make grade``). nbgrader is the ``course`` extra; this module imports it
only when the exporter is used, so the package imports without it.

References
----------
nbgrader (Jupyter Development Team), https://nbgrader.readthedocs.io: ``generate_assignment``,
``autograde``, ``export`` and export plugins; the exercises cite arXiv:2305.18290v3,
arXiv:2310.12036v2 and arXiv:2312.00886v4.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

__all__ = [
    "CSV_COLUMNS",
    "course_dir",
    "grade",
    "labs_dir",
    "lab_names",
    "release",
]

# The columns of the grades CSV: one row per student, lab and exercise (autograded cell).
CSV_COLUMNS = ("student_id", "assignment", "exercise", "score", "max_score", "submitted")

ARCHIVE_NAME = "prefopt_toy-labs.zip"

# The environment of nbgrader and of the kernels it starts (they inherit it): one torch thread
# (2-core machines stall with two), no Hugging Face downloads, smoke mode for the demos after the
# checks (the checks and hidden tests do not depend on it), a non-interactive matplotlib.
KERNEL_ENV = {
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "PREFOPT_SMOKE": "1",
    "MPLBACKEND": "Agg",
}


def _root() -> Path:
    return Path(__file__).resolve().parents[2]


def course_dir() -> Path:
    """``course/`` of the source checkout this package is imported from (the nbgrader course).

    References
    ----------
    See :mod:`prefopt_toy.labs.course`.
    """
    return _root() / "course"


def labs_dir() -> Path:
    """``notebooks/labs/`` of the source checkout: the student release students open.

    References
    ----------
    See :mod:`prefopt_toy.labs.course`.
    """
    return _root() / "notebooks" / "labs"


def lab_names(course: Path | str | None = None) -> list[str]:
    """The labs of a course folder: every ``source/<lab>/<lab>.ipynb``, sorted.

    Parameters
    ----------
    course : path, optional
        The course folder (default :func:`course_dir`).

    Returns
    -------
    list of str

    References
    ----------
    See :mod:`prefopt_toy.labs.course`.
    """
    source = Path(course or course_dir()) / "source"
    return sorted(p.parent.name for p in source.glob("*/*.ipynb") if p.stem == p.parent.name)


def _nbgrader(course: Path, *args: str, timeout: float = 1800.0) -> None:
    # nbgrader runs `alembic` (its database migrations) from PATH: this interpreter's bin first.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, **KERNEL_ENV, "PATH": path}
    subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=env,
        check=True,
        timeout=timeout,
    )


def release(
    course: Path | str | None = None,
    labs: Path | str | None = None,
    archive: Path | str | None = None,
) -> Path:
    """Generate the student version of every lab with nbgrader; refresh ``labs``; write the archive.

    Parameters
    ----------
    course : path, optional
        The course folder (default :func:`course_dir`).
    labs : path, optional
        Where the student notebooks are copied (default :func:`labs_dir`); its ``README.md`` goes
        into the archive beside them.
    archive : path, optional
        The zip file written (default ``dist/prefopt_toy-labs.zip`` of the checkout).

    Returns
    -------
    Path
        The archive.

    Raises
    ------
    ValueError
        If the course folder has no lab.
    subprocess.CalledProcessError
        If nbgrader fails (its message is on stderr).

    References
    ----------
    ``nbgrader generate_assignment`` (https://nbgrader.readthedocs.io).
    """
    course = Path(course or course_dir()).resolve()
    labs = Path(labs or labs_dir())
    archive = Path(archive or _root() / "dist" / ARCHIVE_NAME)
    names = lab_names(course)
    if not names:
        raise ValueError(f"course: no source/<lab>/<lab>.ipynb under {course}")
    # One nbgrader run for every lab ('*' is matched against source/<lab>/ by nbgrader).
    _nbgrader(course, "generate_assignment", "*", "--force", "--log-level=WARN")
    labs.mkdir(parents=True, exist_ok=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            notebook = course / "release" / name / f"{name}.ipynb"
            shutil.copyfile(notebook, labs / notebook.name)
            zf.write(notebook, f"prefopt_toy-labs/{notebook.name}")
        readme = labs / "README.md"
        if readme.exists():
            zf.write(readme, "prefopt_toy-labs/README.md")
    return archive


def grade(
    submitted: Path | str | None = None,
    course: Path | str | None = None,
    out: Path | str | None = None,
    force: bool = False,
) -> Path:
    """Autograde every submission with nbgrader and export the points per exercise to a CSV.

    Parameters
    ----------
    submitted : path, optional
        A folder ``<student>/<lab>/<lab>.ipynb``; copied into ``course/submitted/`` first when it
        is another folder (default: ``course/submitted/`` itself).
    course : path, optional
        The course folder (default :func:`course_dir`). Labs missing from its gradebook are
        generated first (``nbgrader generate_assignment``).
    out : path, optional
        The CSV written (default ``course/grades.csv``), columns :data:`CSV_COLUMNS`.
    force : bool
        Autograde again submissions that were already graded (nbgrader skips them otherwise).

    Returns
    -------
    Path
        The CSV.

    Raises
    ------
    ValueError
        If ``course`` is not an nbgrader course folder, ``submitted`` is not a folder, or there
        are no submissions (nothing is copied then).
    subprocess.CalledProcessError
        If nbgrader fails (its message is on stderr).

    References
    ----------
    ``nbgrader autograde`` and ``nbgrader export`` (https://nbgrader.readthedocs.io).
    """
    course = Path(course or course_dir()).resolve()
    out = Path(out or course / "grades.csv").resolve()
    if not (course / "nbgrader_config.py").is_file():
        raise ValueError(
            f"course: {course} is not an nbgrader course folder (no nbgrader_config.py)"
        )
    target = course / "submitted"
    if submitted is not None and Path(submitted).resolve() != target.resolve():
        source = Path(submitted)
        if not source.is_dir():
            raise ValueError(f"submitted: {source} is not a folder")
        found = [n for n in lab_names(course) if any(source.glob(f"*/{n}/*.ipynb"))]
        if not found:
            raise ValueError(
                f"submitted: no <student>/<lab>/<lab>.ipynb under {source} "
                f"(labs: {', '.join(lab_names(course))})"
            )
        shutil.copytree(source, target, dirs_exist_ok=True)
    names = [n for n in lab_names(course) if any(target.glob(f"*/{n}/*.ipynb"))]
    if not names:
        raise ValueError(f"submitted: no <student>/<lab>/<lab>.ipynb under {target}")
    gradebook_labs = _gradebook_labs(course)
    for name in names:
        if name not in gradebook_labs:  # never released from this course folder
            _nbgrader(course, "generate_assignment", name, "--force", "--log-level=WARN")
    # One nbgrader run for every lab and student (a fresh kernel per notebook).
    args = ["autograde", "*", "--create", "--log-level=WARN"]
    _nbgrader(course, *args, *(["--force"] if force else []))
    _nbgrader(
        course,
        "export",
        f"--exporter={__name__}.ExerciseCsvExport",
        f"--to={out}",
        "--log-level=WARN",
    )
    return out


def _gradebook_labs(course: Path) -> set[str]:
    if not (course / "gradebook.db").exists():
        return set()
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {a.name for a in gb.assignments}


def _export_rows(gradebook: Any, students: list[str], labs: list[str]) -> list[dict[str, Any]]:
    """One row per student, lab and autograded cell: points, or 0 when nothing was submitted."""
    from nbgrader.api import MissingEntry

    rows = []
    for student in sorted(s.id for s in gradebook.students):
        if students and student not in students:
            continue
        for assignment in sorted(gradebook.assignments, key=lambda a: a.name):
            if labs and assignment.name not in labs:
                continue
            for notebook in assignment.notebooks:
                for cell in sorted(notebook.grade_cells, key=lambda c: c.name):
                    if cell.cell_type != "code":
                        continue
                    try:
                        found = gradebook.find_grade(
                            cell.name, notebook.name, assignment.name, student
                        )
                        score, submitted = found.score, True
                    except MissingEntry:
                        score, submitted = 0.0, False
                    rows.append(
                        {
                            "student_id": student,
                            "assignment": assignment.name,
                            "exercise": cell.name,
                            "score": f"{float(score or 0.0):g}",
                            "max_score": f"{float(cell.max_score):g}",
                            "submitted": "yes" if submitted else "no",
                        }
                    )
    return rows


def _write_csv(rows: list[dict[str, Any]], dest: Path) -> None:
    with open(dest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _exporter_class() -> type:
    from nbgrader.plugins import ExportPlugin

    class ExerciseCsvExport(ExportPlugin):
        """nbgrader export plugin: points per student, lab and exercise (:data:`CSV_COLUMNS`)."""

        def export(self, gradebook: Any) -> None:
            dest = Path(self.to or "grades.csv")
            rows = _export_rows(
                gradebook, [str(s) for s in self.student], [str(a) for a in self.assignment]
            )
            _write_csv(rows, dest)
            self.log.info("Wrote %d rows to %s", len(rows), dest)

    ExerciseCsvExport.__module__ = __name__
    return ExerciseCsvExport


def __getattr__(name: str) -> Any:
    # The exporter subclasses nbgrader's ExportPlugin, so it is built on first use: the package
    # imports without nbgrader, and `nbgrader export --exporter=...ExerciseCsvExport` finds it.
    if name == "ExerciseCsvExport":
        cls = _exporter_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
