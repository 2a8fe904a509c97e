"""The teaching assistants' answer keys (course/answer_keys/): complete, and every block runs.

Each notebook under notebooks/ (NN_name.py) and notebooks/gpt2/ (NN_name.py) that ends with an
"Exercises" section has a key, course/answer_keys/<name>.md (gpt2_<name>.md for the GPT-2 ones),
with one "## Exercise N" heading per numbered exercise. Every python block of a key runs, in file
order and in one namespace (like a notebook), in a fresh interpreter per key with
OMP_NUM_THREADS=1 and HF_HUB_OFFLINE=1; the exact keys also turn warnings into errors. The GPT-2
keys load the tiny model (trained offline into the model cache on first use) and are marked slow.

The graded labs (course/source/<lab>/<lab>.py) are autograded; the labs in KEYED_LABS also have a
key, course/answer_keys/<lab>.md, with one "## Exercise 5a" heading per autograded cell (grade_id
ex5a), checked and run the same way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _readme import python_blocks

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT / "course" / "answer_keys"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")) + sorted(
    (ROOT / "notebooks" / "gpt2").glob("[0-9][0-9]_*.py")
)

# The exercises section: a "## Exercises" heading or a bold "**Exercises.**" paragraph, then
# numbered items "# 1. ..." in the notebook's markdown comment lines.
_EXERCISES = re.compile(r"^# (?:#+ Exercises\b|\*\*Exercises\.?\*\*)", flags=re.M)
_ITEM = re.compile(r"^# (\d+)\. \S", flags=re.M)
_KEY_HEADING = re.compile(r"^## Exercise (\d+)\s*$", flags=re.M)

# The graded labs with an answer key (labs 1-4 predate the keys of the labs).
LABS = sorted((ROOT / "course" / "source").glob("lab*/lab*.py"))
KEYED_LABS = ["lab5_kto", "lab6_length_rdpo", "lab7_sequential_kl"]
_LAB_HEADING = re.compile(r"^## Exercise (\d+[a-z]?)\s*$", flags=re.M)
_GRADE_ID = re.compile(r'"grade": true, "grade_id": "ex(\w+)"')


def key_name(notebook: Path) -> str:
    """``00_tour.md`` for notebooks/00_tour.py, ``gpt2_01_offline_dpo_ipo.md`` for the GPT-2 ones."""
    prefix = "gpt2_" if notebook.parent.name == "gpt2" else ""
    return f"{prefix}{notebook.stem}.md"


def exercise_numbers(notebook: Path) -> list[int]:
    """The numbers of the notebook's exercises, in order ([] when it has no Exercises section)."""
    text = notebook.read_text(encoding="utf-8")
    match = _EXERCISES.search(text)
    if match is None:
        return []
    section = text[match.end() :]
    cell = re.search(r"^# %%", section, flags=re.M)  # the section ends at the next cell
    if cell is not None:
        section = section[: cell.start()]
    return [int(n) for n in _ITEM.findall(section)]


def key_numbers(key: Path) -> list[int]:
    return [int(n) for n in _KEY_HEADING.findall(key.read_text(encoding="utf-8"))]


def _sections(key: Path, heading_re: re.Pattern = _KEY_HEADING) -> dict:
    """The text under each "## Exercise N" heading, up to the next level-2 heading."""
    text = key.read_text(encoding="utf-8")
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    out = {}
    for heading, body in zip(parts[1::2], parts[2::2]):
        match = heading_re.match(heading)
        if match:
            out[match.group(1)] = body
    return out


def _check_sections(key: Path, sections: dict) -> None:
    for n, body in sections.items():
        body = " ".join(body.split())  # the markers may wrap across lines
        assert "*Restated:*" in body, f"{key.name}, exercise {n}: no one-line restatement"
        assert "**Full credit:**" in body, f"{key.name}, exercise {n}: no full-credit criteria"
        assert "**Common wrong answers:**" in body, f"{key.name}, exercise {n}: no wrong answers"
    assert python_blocks(key), f"{key.name} has no python block"


def test_every_notebook_with_exercises_is_found():
    with_exercises = [nb for nb in NOTEBOOKS if exercise_numbers(nb)]
    assert len(with_exercises) >= 11, [nb.name for nb in with_exercises]
    for nb in with_exercises:
        numbers = exercise_numbers(nb)
        assert numbers == list(range(1, len(numbers) + 1)), (nb.name, numbers)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: key_name(p)[:-3])
def test_key_answers_every_exercise(notebook):
    numbers = exercise_numbers(notebook)
    if not numbers:
        pytest.skip(f"{notebook.name} has no Exercises section")
    key = KEYS / key_name(notebook)
    assert key.is_file(), f"{notebook.relative_to(ROOT)} has exercises but no key {key.name}"
    assert key_numbers(key) == numbers, (
        f"{key.name}: headings 'Exercise N' {key_numbers(key)} do not match the "
        f"exercises {numbers} of {notebook.relative_to(ROOT)}"
    )
    _check_sections(key, _sections(key))


@pytest.mark.parametrize("lab", KEYED_LABS)
def test_lab_key_answers_every_graded_exercise(lab):
    source = ROOT / "course" / "source" / lab / f"{lab}.py"
    assert source in LABS, f"{lab}: no course/source/{lab}/{lab}.py"
    exercises = _GRADE_ID.findall(source.read_text(encoding="utf-8"))
    key = KEYS / f"{lab}.md"
    assert key.is_file(), f"{lab} has no key {key.name}"
    headings = _LAB_HEADING.findall(key.read_text(encoding="utf-8"))
    assert exercises and headings == exercises, (
        f"{key.name}: headings {headings} do not match the autograded cells {exercises}"
    )
    _check_sections(key, _sections(key, _LAB_HEADING))


def test_no_orphan_keys():
    expected = {key_name(nb) for nb in NOTEBOOKS if exercise_numbers(nb)} | {"README.md"}
    expected |= {f"{lab}.md" for lab in KEYED_LABS}
    present = {p.name for p in KEYS.glob("*.md")}
    assert present == expected, f"unexpected: {present - expected}, missing: {expected - present}"


# Runs in the child interpreter: the blocks arrive as JSON on stdin.
_RUNNER = """
import json, sys, traceback
blocks = json.load(sys.stdin)
ns = {"__name__": "__answer_key__"}
for i, (section, line, code) in enumerate(blocks, 1):
    try:
        exec(compile(code, f"{sys.argv[1]} block {i} (line {line})", "exec"), ns)
    except BaseException:
        traceback.print_exc()
        print(f"ANSWER KEY FAILED: {sys.argv[1]}, block {i} (line {line}, {section!r})", file=sys.stderr)
        sys.exit(1)
"""


def run_key(key: Path, *, warnings_are_errors: bool, timeout: float) -> None:
    blocks = python_blocks(key)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    flags = ["-W", "error"] if warnings_are_errors else []
    proc = subprocess.run(
        [sys.executable, *flags, "-c", _RUNNER, key.name],
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{key.name}:\n{proc.stderr[-6000:]}"


EXACT_KEYS = [nb for nb in NOTEBOOKS if nb.parent.name != "gpt2" and exercise_numbers(nb)]
GPT2_KEYS = [nb for nb in NOTEBOOKS if nb.parent.name == "gpt2" and exercise_numbers(nb)]


@pytest.mark.parametrize("notebook", EXACT_KEYS, ids=lambda p: key_name(p)[:-3])
def test_exact_key_blocks_run(notebook):
    run_key(KEYS / key_name(notebook), warnings_are_errors=True, timeout=300)


@pytest.mark.parametrize("lab", KEYED_LABS)
def test_lab_key_blocks_run(lab):
    run_key(KEYS / f"{lab}.md", warnings_are_errors=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", GPT2_KEYS, ids=lambda p: key_name(p)[:-3])
def test_gpt2_key_blocks_run(notebook):
    run_key(KEYS / key_name(notebook), warnings_are_errors=False, timeout=600)
