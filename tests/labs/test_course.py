"""The nbgrader course (course/): source notebooks, the student release, and grading in bulk.

Fast checks read the files: each source notebook's cells (solution, autograded test with points,
hidden tests), its py:percent pair, and the committed student release in notebooks/labs/, which
holds no solution line and no hidden test. The slow test runs the whole cycle with nbgrader in a
temporary copy of the course: generate_assignment (the release must equal the committed one),
made-up submissions (correct, half done, zeros with the checks commented out, calling the
library), autograde, export; and asserts the exported points exactly.
"""

from __future__ import annotations

import asyncio
import csv
import re
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest

from prefopt_toy.labs import course
from prefopt_toy.labs.checking import MAX_RENDERED_LINES

ROOT = Path(__file__).resolve().parents[2]
COURSE = ROOT / "course"
LABS = ROOT / "notebooks" / "labs"
NAMES = course.lab_names(COURSE)

# Points of each autograded cell (grade_id), as the source notebooks set them.
POINTS = {
    "ex1a": 2,
    "ex1b": 2,
    "ex2": 4,
    "ex3": 4,
    "ex4a": 2,
    "ex4b": 2,
    "ex5a": 2,
    "ex5b": 2,
    "ex5c": 2,
    "ex5d": 2,
    "ex6a": 2,
    "ex6b": 2,
    "ex6c": 2,
    "ex6d": 2,
    "ex6e": 2,
    **{f"ex7{x}": 2 for x in "abcdef"},
}
LAB_OF = {
    "ex1a": "lab1_dpo_ipo_losses",
    "ex1b": "lab1_dpo_ipo_losses",
    "ex2": "lab2_ipo_optimum",
    "ex3": "lab3_nash_md_step",
    "ex4a": "lab4_rlhf_vs_nash",
    "ex4b": "lab4_rlhf_vs_nash",
    **{f"ex5{x}": "lab5_kto" for x in "abcd"},
    **{f"ex6{x}": "lab6_length_rdpo" for x in "abcde"},
    **{f"ex7{x}": "lab7_sequential_kl" for x in "abcdef"},
}

MARKERS = re.compile(r"^\s*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$")


def _source(name: str):
    return nbformat.read(COURSE / "source" / name / f"{name}.ipynb", as_version=4)


def _release(name: str, folder: Path = LABS):
    return nbformat.read(folder / f"{name}.ipynb", as_version=4)


def _nbgrader(cell) -> dict:
    return dict(cell.metadata.get("nbgrader", {}))


def _regions(source: str, kind: str) -> list[list[str]]:
    """The lines inside each ``### BEGIN <kind>`` ... ``### END <kind>`` region."""
    regions, current = [], None
    for line in source.splitlines():
        if line.strip() == f"### BEGIN {kind}":
            current = []
        elif line.strip() == f"### END {kind}":
            regions.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return regions


def test_there_are_seven_labs_each_released():
    assert NAMES == sorted(set(LAB_OF.values())), NAMES
    assert sorted(p.stem for p in LABS.glob("lab*.ipynb")) == NAMES
    assert not (LABS / "solutions").exists(), "solutions must not be in the students' folder"


@pytest.mark.parametrize("name", NAMES)
def test_source_notebook_structure(name):
    nb = _source(name)
    cells = [(i, _nbgrader(c)) for i, c in enumerate(nb.cells) if _nbgrader(c)]
    ids = [meta["grade_id"] for _, meta in cells]
    assert len(ids) == len(set(ids)), ids
    answers = [(i, m) for i, m in cells if m.get("solution")]
    tests = [(i, m) for i, m in cells if m.get("grade")]
    assert answers and len(answers) == len(tests)
    for (i, answer), (j, test) in zip(answers, tests):
        assert j == i + 1, f"{name}: the autograded cell must follow the answer cell {i}"
        assert answer == {
            "grade": False,
            "grade_id": f"{test['grade_id']}_answer",
            "locked": False,
            "schema_version": 3,
            "solution": True,
        }
        assert test["locked"] and not test["solution"] and test["schema_version"] == 3
        assert test["points"] == POINTS[test["grade_id"]] and LAB_OF[test["grade_id"]] == name
        source = nb.cells[j].source
        visible = source.split("### BEGIN HIDDEN TESTS")[0].strip()
        assert re.fullmatch(r"labs\.check_\w+\(\w+\)", visible), visible
        (hidden,) = _regions(source, "HIDDEN TESTS")
        assert 1 <= len(hidden) <= 2 and all("labs.grading.grade_" in h for h in hidden)
        assert len(_regions(nb.cells[i].source, "SOLUTION")) == 1


@pytest.mark.parametrize("name", NAMES)
def test_source_pair_in_sync(name):
    """The .py (reviewable) and the .ipynb (what nbgrader reads) say the same, metadata included."""
    jupytext = pytest.importorskip("jupytext")
    folder = COURSE / "source" / name
    py, ipynb = jupytext.read(folder / f"{name}.py"), jupytext.read(folder / f"{name}.ipynb")

    def cells(nb):
        return [(c.cell_type, c.source.strip(), c.metadata.get("nbgrader")) for c in nb.cells]

    assert cells(py) == cells(ipynb), f"run: .venv/bin/jupytext --sync {folder / name}.py"
    assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", NAMES)
def test_release_has_no_solution_and_no_hidden_test(name):
    source, release = _source(name), _release(name)
    text = "\n".join(c.source for c in release.cells)
    for kind in ("SOLUTION", "HIDDEN TESTS"):
        assert f"BEGIN {kind}" not in text and f"END {kind}" not in text
        for region in (r for c in source.cells for r in _regions(c.source, kind)):
            for line in region:
                if line.strip() and not line.strip().startswith("#"):
                    assert line.strip() not in text, f"{name}: {kind} line in the release: {line}"
                elif line.strip():  # the solution's comments too
                    assert line.strip() not in text, f"{name}: {kind} comment in the release"
    assert "labs.grading" not in text
    answers = [c for c in release.cells if _nbgrader(c).get("solution")]
    assert all("raise NotImplementedError" in c.source for c in answers)


# ----------------------------------------------------------- the untouched student notebooks


async def _execute(path: Path, gate):
    import nbclient

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
def untouched():
    """{name: (executed student notebook, CellExecutionError or None)}, in smoke mode."""
    pytest.importorskip("nbclient")

    async def run_all():
        gate = asyncio.Semaphore(2)
        results = await asyncio.gather(*(_execute(LABS / f"{n}.ipynb", gate) for n in NAMES))
        return dict(zip(NAMES, results))

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFOPT_SMOKE", "1")
        patch.setenv("MPLBACKEND", "Agg")
        return asyncio.run(run_all())


@pytest.mark.notebooks
@pytest.mark.parametrize("name", NAMES)
def test_untouched_student_notebook_stops_at_the_first_check_on_one_screen(name, untouched):
    nb, error = untouched[name]
    assert error is not None, f"the untouched student notebook {name} ran to the end"
    assert error.ename == "LabCheckError"
    assert "is not done yet: fill in the cell marked # YOUR CODE" in error.evalue
    failed = [
        (i, o)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    first_check = next(
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "labs.check_" in c.source
    )
    assert [i for i, _ in failed] == [first_check]
    # What the student sees: the message first, a few lines, no traceback through the library.
    lines = failed[0][1]["traceback"]
    assert len(lines) <= MAX_RENDERED_LINES and "is not done yet" in lines[0]
    assert not any("site-packages" in line or "prefopt_toy/labs" in line for line in lines)


# ----------------------------------------------------------------- the whole nbgrader cycle


def _solved(source: str) -> str:
    """A solution cell of the source as a student who solved it would write it."""
    return "\n".join(line for line in source.splitlines() if not MARKERS.match(line))


def _zeros(source: str) -> str:
    """The release's answer cell with the placeholder replaced by a zeros answer."""
    head = source.split("):")[0] + "):"  # def f(a, b, ...):, over one line or several
    first_arg = head.split("(")[1].split(",")[0].strip()
    return f"{head}\n    return torch.zeros_like(torch.as_tensor({first_arg}, dtype=torch.float64))"


LIBRARY = {
    "ex1a_answer": (
        "def dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta):\n"
        "    h = pt.margin(logp_chosen, logp_rejected, ref_chosen, ref_rejected)\n"
        "    return pt.dpo_loss(h, beta)"
    ),
    "ex1b_answer": (
        "from prefopt_toy.losses import ipo_loss as library_ipo_loss\n\n\n"
        "def ipo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, tau):\n"
        "    h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)\n"
        "    return library_ipo_loss(h, tau)"
    ),
    "ex5a_answer": (
        "def kto_loss(logratio, reference_point, desirable, beta, desirable_weight, undesirable_weight):\n"
        "    return pt.kto_loss(logratio, reference_point, desirable, beta, desirable_weight, "
        "undesirable_weight)"
    ),
    "ex5b_answer": "def kl_reference_point(pi, mu):\n    return torch.tensor(pt.kl(pi, mu))",
    "ex6c_answer": (
        "def rdpo_loss(pc, pr, rc, rr, length_chosen, length_rejected, beta, alpha):\n"
        "    return pt.rdpo_loss(pt.margin(pc, pr, rc, rr), beta, alpha, length_chosen, length_rejected)"
    ),
    "ex7e_answer": (
        "def tdpo2_loss(pc, pr, rc, rr, seqkl_chosen, seqkl_rejected, beta, alpha):\n"
        "    u = pt.margin(pc, pr, rc, rr)\n"
        "    return pt.tdpo_loss(u, seqkl_chosen, seqkl_rejected, beta, alpha, 'tdpo2')"
    ),
}

# student -> {lab: which answers are solved, and how}. Sixteen notebooks (a kernel each): every
# lab correct, and a representative set of the other cases (test_grading.py covers the library
# guard and zeros on every exercise without nbgrader). "library": the answers of LIBRARY call the
# library, the lab's other answers are solved.
SUBMISSIONS = {
    "correct": {n: "all" for n in NAMES},
    "half": {
        "lab1_dpo_ipo_losses": {"ex1a_answer"},
        "lab4_rlhf_vs_nash": {"ex4a_answer"},
        "lab5_kto": {"ex5a_answer", "ex5c_answer"},
    },
    "zeros": {"lab1_dpo_ipo_losses": "zeros", "lab6_length_rdpo": "zeros"},
    "library": {
        "lab1_dpo_ipo_losses": "library",
        "lab5_kto": "library",
        "lab6_length_rdpo": "library",
        "lab7_sequential_kl": "library",
    },
}

# student -> exercise -> points, by hand from SUBMISSIONS and POINTS; 0 where not submitted.
EXPECTED = {
    "correct": dict(POINTS),
    "half": {
        **dict.fromkeys(POINTS, 0),
        **{"ex1a": 2, "ex4a": 2, "ex5a": 2, "ex5c": 2},
    },
    "zeros": dict.fromkeys(POINTS, 0),
    "library": {
        **dict.fromkeys(POINTS, 0),
        **{"ex5c": 2, "ex5d": 2, "ex6a": 2, "ex6b": 2, "ex6d": 2, "ex6e": 2},
        **{f"ex7{x}": 2 for x in "abcdf"},  # ex7e calls pt.tdpo_loss
    },
}


def _submission(name: str, release, how) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(release)
    source = {_nbgrader(c).get("grade_id"): c.source for c in _source(name).cells}
    for cell in nb.cells:
        meta = _nbgrader(cell)
        gid = meta.get("grade_id")
        if meta.get("solution"):
            if how == "all" or (isinstance(how, set) and gid in how):
                cell.source = _solved(source[gid])
            elif how == "zeros":
                cell.source = _zeros(cell.source)
            elif how == "library":
                cell.source = LIBRARY.get(gid, _solved(source[gid]))
        elif meta.get("grade") and how == "zeros":  # the checks commented out
            cell.source = "\n".join(f"# {line}" for line in cell.source.splitlines())
    return nb


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    """A temporary course: released, four students' made-up submissions graded; the CSV rows."""
    pytest.importorskip("nbgrader")
    import time

    tmp = tmp_path_factory.mktemp("course")
    work = tmp / "course"
    (work / "source").mkdir(parents=True)
    shutil.copy(COURSE / "nbgrader_config.py", work)
    for name in NAMES:
        shutil.copytree(COURSE / "source" / name, work / "source" / name)
    labs = tmp / "labs"
    labs.mkdir()
    shutil.copy(LABS / "README.md", labs)
    started = time.perf_counter()
    archive = course.release(work, labs=labs, archive=tmp / "dist" / "labs.zip")
    released = time.perf_counter()
    inbox = tmp / "inbox"
    for student, labs_done in SUBMISSIONS.items():
        for name, how in labs_done.items():
            folder = inbox / student / name
            folder.mkdir(parents=True)
            nb = _submission(name, _release(name, labs), how)
            nbformat.write(nb, folder / f"{name}.ipynb")
    out = course.grade(inbox, work)
    graded = time.perf_counter()
    print(f"release {released - started:.1f} s, grade {graded - released:.1f} s")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {"labs": labs, "archive": archive, "rows": rows, "course": work}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_committed_release_is_what_nbgrader_generates(name, cycle):
    fresh, committed = _release(name, cycle["labs"]), _release(name)

    def view(nb):
        return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]

    assert view(fresh) == view(committed), "run: python -m prefopt_toy.labs release"
    assert fresh.metadata == committed.metadata


@pytest.mark.slow
def test_release_archive_holds_the_student_notebooks_and_readme(cycle):
    with zipfile.ZipFile(cycle["archive"]) as zf:
        names = sorted(zf.namelist())
        text = "".join(zf.read(n).decode() for n in names)
    assert names == sorted(
        [f"prefopt_toy-labs/{n}.ipynb" for n in NAMES] + ["prefopt_toy-labs/README.md"]
    )
    assert "BEGIN SOLUTION" not in text and "labs.grading" not in text


@pytest.mark.slow
def test_exported_points_per_student_and_exercise(cycle):
    rows = cycle["rows"]
    assert list(rows[0]) == list(course.CSV_COLUMNS)
    got = {(r["student_id"], r["exercise"]): float(r["score"]) for r in rows}
    expected = {
        (student, exercise): float(points)
        for student, points_of in EXPECTED.items()
        for exercise, points in points_of.items()
    }
    assert got == expected
    assert all(float(r["max_score"]) == POINTS[r["exercise"]] for r in rows)
    assert all(r["assignment"] == LAB_OF[r["exercise"]] for r in rows)
    submitted = {(r["student_id"], r["assignment"]) for r in rows if r["submitted"] == "yes"}
    assert submitted == {(s, n) for s, done in SUBMISSIONS.items() for n in done}
    # Half done is half the points of each lab it touched.
    half = {
        n: sum(
            float(r["score"]) for r in rows if r["student_id"] == "half" and r["assignment"] == n
        )
        for n in SUBMISSIONS["half"]
    }
    assert half == {n: sum(p for e, p in POINTS.items() if LAB_OF[e] == n) / 2 for n in half}
    # The gradebook is nbgrader's sqlite database, in the course folder.
    assert (cycle["course"] / "gradebook.db").exists()


def test_grade_refuses_bad_folders_in_one_line_before_copying(tmp_path, capsys):
    from prefopt_toy.labs import main

    missing = tmp_path / "nowhere"
    assert main(["grade", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "submitted:" in err and "is not a folder" in err

    empty = tmp_path / "empty"
    (empty / "alice" / "lab9").mkdir(parents=True)
    before = sorted(p.name for p in (course.course_dir() / "submitted").glob("*"))
    assert main(["grade", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no <student>/<lab>/<lab>.ipynb" in err and "lab1_dpo_ipo_losses" in err
    after = sorted(p.name for p in (course.course_dir() / "submitted").glob("*"))
    assert after == before, "nothing may be copied into the course when there is nothing to grade"

    assert main(["grade", "--course", str(tmp_path)]) == 2
    assert "not an nbgrader course folder" in capsys.readouterr().err
