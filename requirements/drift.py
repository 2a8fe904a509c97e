"""Print what the running environment has against a lock file: the drift report of `make test-latest`.

Usage: ``python requirements/drift.py requirements/dev.lock``. Lists every locked package whose
installed version differs (newer, older or missing) and every installed package the lock does not
know, then the versions of the packages the project leans on hardest. It reads only package
metadata and never fails: the test run that follows is the verdict.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

KEY = (
    "torch",
    "transformers",
    "trl",
    "accelerate",
    "safetensors",
    "tokenizers",
    "numpy",
    "scipy",
    "sympy",
    "matplotlib",
    "pandas",
    "ipywidgets",
    "jupyterlab",
    "nbmake",
    "pytest",
    "hypothesis",
)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``{normalised name: version}`` of the ``name==version`` lines of a pip requirements lock."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    """``{normalised name: version}`` of the distributions importable in this interpreter."""
    return {
        _normalise(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if d.metadata["Name"]
    }


def main(argv: list[str]) -> int:
    lock_path = Path(argv[1] if len(argv) > 1 else "requirements/dev.lock")
    locked, have = read_lock(lock_path), installed()
    have.pop("prefopt-toy", None)
    moved = sorted(n for n in locked if have.get(n) != locked[n])
    new = sorted(set(have) - set(locked) - {"pip", "setuptools", "wheel"})
    print(
        f"== drift against {lock_path}: {len(moved)} of {len(locked)} locked packages moved, "
        f"{len(new)} not in the lock"
    )
    for name in moved:
        print(f"  {name:32s} {locked[name]:>16s} -> {have.get(name, 'not installed')}")
    for name in new:
        print(f"  {name:32s} {'(not locked)':>16s} -> {have[name]}")
    print("== versions under test: " + ", ".join(f"{n} {have[n]}" for n in KEY if n in have))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
