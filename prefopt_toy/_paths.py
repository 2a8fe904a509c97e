"""Output folders at the public boundary (private): checked before any work starts.

A figure command or a run that can only fail at its end, when it writes, wastes the user's time
and may leave half its files; so the folder is checked first: it exists and is a writable folder,
or it can be created under an existing, writable folder. No file is created here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["check_out_folder"]


def check_out_folder(value: Any, name: str) -> Path:
    """``value`` as a ``Path`` to a folder that exists or can be created.

    Raises ``ValueError`` naming ``name`` (e.g. ``"--out"`` or ``"out_dir"``) when ``value`` is not
    a path, is an existing file, lies under a file, or would be created in a folder that is not
    writable.
    """
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{name} must be a folder path (str or os.PathLike), got {value!r}")
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{name} {os.fspath(value)}: exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{name} {os.fspath(value)}: the folder is not writable")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {os.fspath(value)}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {os.fspath(value)}: cannot be created, {parent} is not writable")
    return path
