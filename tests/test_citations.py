"""What the project cites exists in the project: every file a doc, docstring or notebook names.

A reader who follows "see ALGORITHMS.md" into a file the repository does not have is stranded, so
every path-like name of a text file (``*.md``, ``*.ipynb``, ``*.yml``, ``*.toml``, ``*.lock``,
``*.cfg``) in the tracked ``.py``, ``.md`` and ``.ipynb`` files must resolve: as a path from the
repository root, from the citing file's folder, or as the name of a file the repository holds.
Links (``http...``) are not checked here; the few names that belong to other projects or are
patterns are listed in ``EXTERNAL`` with the reason. The maths the project relies on is cited to
the papers themselves (arXiv id, version, equation).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (citing file, name) -> why the name need not exist in this repository.
EXTERNAL = {
    ("notebooks/README.md", "NN_name.ipynb"): "a pattern for the notebooks' names",
    ("prefopt_toy/dynamics/sampled.py", "paper_index.md"): "a page of TRL's documentation",
}

_NAME = re.compile(r"(?<![\w/.:-])((?:[\w-]+/)*[\w-]+\.(?:md|ipynb|yml|toml|lock|cfg))\b")


def _files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the project's files cannot be listed")
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return sorted(f for f in set(listing) if f and (ROOT / f).is_file())


def _cited_names(text: str) -> list[str]:
    """Path-like names of text files in ``text``, skipping those inside a URL."""
    out = []
    for match in _NAME.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        before = text[line_start : match.start()]
        url = before.rfind("http")
        if url >= 0 and not re.search(r"\s", before[url:]):
            continue
        out.append(match.group(1))
    return out


def test_cited_names_are_found():
    """The scanner itself: it finds names, and skips URLs."""
    text = "see ALGORITHMS.md and notebooks/00_tour.ipynb; https://x.org/a/README.md is a link"
    assert _cited_names(text) == ["ALGORITHMS.md", "notebooks/00_tour.ipynb"]


def test_every_cited_file_exists_in_the_repository():
    files = _files()
    names = {Path(f).name for f in files}
    missing = []
    for f in files:
        if not f.endswith((".py", ".md", ".ipynb")) or f == "tests/test_citations.py":
            continue
        for name in _cited_names((ROOT / f).read_text(encoding="utf-8", errors="replace")):
            if (f, name) in EXTERNAL:
                continue
            if (
                name in files
                or (ROOT / Path(f).parent / name).is_file()
                or Path(name).name in names
            ):
                continue
            missing.append(f"{f}: {name}")
    assert not missing, "cited but not in the repository:\n" + "\n".join(sorted(set(missing)))


def test_external_entries_are_still_needed():
    """An EXTERNAL entry whose file no longer cites the name is dead weight: remove it."""
    for (f, name), _reason in EXTERNAL.items():
        path = ROOT / f
        assert path.is_file() and name in _cited_names(path.read_text(encoding="utf-8")), (f, name)
