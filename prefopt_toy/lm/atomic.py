"""Atomic file writes: a file is either its old self or completely the new one, never half written.

The run log's rewrite on resume and the bridge run folders write through here: the content goes to
a temporary sibling, is flushed and ``fsync``-ed, then ``os.replace``-d over the target (atomic on
POSIX within one file system); an exception on the way removes the temporary file and leaves the
target as it was. Checkpoints (``checkpoint.save_checkpoint``) do the same for a whole folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["write_atomically"]


def write_atomically(
    target: str | os.PathLike[str], write: Callable[[IO[Any]], None], *, binary: bool = False
) -> Path:
    """Call ``write(f)`` on a temporary file beside ``target``, then move it over ``target``.

    Parameters
    ----------
    target : path
        The file to create or replace; its folder must exist.
    write : callable
        Writes the whole content to the open file it is given (text, UTF-8; bytes with ``binary``).
    binary : bool, default False
        Open the temporary file in binary mode.

    Returns
    -------
    Path
        ``target``.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=target.suffix, dir=target.parent)
    try:
        with os.fdopen(
            fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})
        ) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
