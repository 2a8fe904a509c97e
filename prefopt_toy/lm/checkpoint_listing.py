"""Finding the complete checkpoints of a run directory, oldest step first, and the latest one.

A checkpoint directory is ``<run_dir>/step-<step:09d>``; it is complete once ``checkpoint.json`` is
in it (written last). Temporary directories of an interrupted save and ``step-*`` directories
without ``checkpoint.json`` are skipped, so a run resumes from the last good checkpoint.

References: as :mod:`prefopt_toy.lm.checkpoint`, the module this one was split from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .state_io import MANIFEST

__all__ = ["latest_checkpoint", "list_checkpoints"]

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / MANIFEST).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The complete checkpoints in ``run_dir``, oldest step first.

    Temporary directories of an interrupted save and ``step-*`` directories without
    ``checkpoint.json`` are skipped. A missing ``run_dir`` has none.

    References
    ----------
    DESIGN.md "Reliability rules".
    """
    return [p for _, p in _complete_checkpoints(Path(run_dir))]


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint with the highest step in ``run_dir``, or None if there is none.

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
