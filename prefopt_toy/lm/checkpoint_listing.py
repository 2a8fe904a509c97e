"""Finding the checkpoints of a run directory, oldest step first, and the latest one.

A checkpoint directory is ``<run_dir>/step-<step:09d>``; it is complete once ``checkpoint.json`` is
in it (written last, and the directory is renamed into place only after that). Temporary
directories of an interrupted save and ``step-*`` directories without ``checkpoint.json`` are
skipped by :func:`list_checkpoints` and :func:`latest_checkpoint`. These look at names only; that a
checkpoint's files are intact is checked when it is loaded
(:func:`prefopt_toy.lm.checkpoint.load_checkpoint`), and
:func:`prefopt_toy.lm.checkpoint.load_latest_checkpoint` falls back past damaged ones.

References: as :mod:`prefopt_toy.lm.checkpoint`, the module this one was split from.
"""

from __future__ import annotations

import os
from pathlib import Path

from .state_io import _STEP_DIR, MANIFEST

__all__ = ["latest_checkpoint", "list_checkpoints"]


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Every ``step-*`` directory of ``root``, complete or not, sorted by step (the resume candidates)."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    return [(step, path) for step, path in _step_dirs(root) if (path / MANIFEST).is_file()]


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The complete checkpoints in ``run_dir``, oldest step first.

    Temporary directories of an interrupted save and ``step-*`` directories without
    ``checkpoint.json`` are skipped. A missing ``run_dir`` has none. The files are not read: a
    listed checkpoint can still be damaged (``load_checkpoint`` says so).

    References
    ----------
    DESIGN.md "Reliability rules".
    """
    return [p for _, p in _complete_checkpoints(Path(run_dir))]


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint with the highest step in ``run_dir``, or None if there is none.

    Only names are looked at; to resume from the newest checkpoint that actually loads, use
    :func:`prefopt_toy.lm.checkpoint.load_latest_checkpoint`.

    References
    ----------
    DESIGN.md "Reliability rules" (resume from the last good checkpoint).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as run:
    ...     print(latest_checkpoint(run))
    None
    """
    found = _complete_checkpoints(Path(run_dir))
    return found[-1][1] if found else None
