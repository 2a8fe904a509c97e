r"""Lab checker machinery: the failure and success types and the helpers every checker shares.

A checker of ``notebooks/labs/`` calls the student's function (:func:`_call` turns an untouched
exercise's ``NotImplementedError`` or a crash into a readable :class:`LabCheckError`), coerces its
answer to a float64 tensor of the expected shape (:func:`_answer` does both), compares it with the
library's own solver at ``RTOL`` / ``ATOL``, and on a mismatch names the first known mistake whose
result matches the answer (:func:`_diagnose`; for a policy, :func:`_policy_hint` first rules out
one that is not finite or does not sum to 1); on success it prints and returns a
:class:`CheckPassed` message. The checkers themselves live in ``labs.losses`` (labs 1-2) and
``labs.games`` (labs 3-4); all are re-exported from ``prefopt_toy.labs``.

References: as :mod:`prefopt_toy.labs`, the module this one was split from.
"""

from __future__ import annotations

import math
import textwrap
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE

__all__ = ["ATOL", "CheckPassed", "LabCheckError", "RTOL"]

# Agreement required with the library. Loose enough for any sensible float64 formula (the
# library works in log space, a student may not), tight enough to catch every real mistake.
RTOL = 1e-8


ATOL = 1e-12


class LabCheckError(AssertionError):
    """A lab exercise gave a wrong (or no) answer; the message says on which input and why.

    The message opens with one line that names the exercise and, when the answer matches a known
    mistake, the hint; the lines below give the input, the expected and the returned values. In
    Jupyter, :meth:`_render_traceback_` shows just that message (and, when the student's own code
    crashed, the lines of it that failed) instead of a traceback through the checker's files, so
    the hint is the first thing on the screen.

    References
    ----------
    The exercises follow Rafailov et al., arXiv:2305.18290v3; Azar et al., arXiv:2310.12036v2;
    Munos et al., arXiv:2312.00886v4. IPython calls ``_render_traceback_`` on an exception that
    has one (``IPython.core.interactiveshell.InteractiveShell.showtraceback``).
    """

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows for this error: the message, then the student's failing code.

        Returns
        -------
        list of str
            At most :data:`MAX_RENDERED_LINES` lines, the first one ``LabCheckError: exercise ...``
            in red (ANSI), long lines wrapped at 100 characters.
        """
        text = str(self)
        first, *rest = text.splitlines() or [""]
        lines = [f"{_RED}{type(self).__name__}{_RESET}: {first}"]
        for line in rest:
            lines += _wrap(line)
        lines += _student_frames(self.__cause__)
        if len(lines) > MAX_RENDERED_LINES:
            lines = [*lines[: MAX_RENDERED_LINES - 1], "  ..."]
        return lines


_RED, _RESET = "\x1b[0;31m", "\x1b[0m"


# What a failed check shows in Jupyter at most (one screen, hint first).
MAX_RENDERED_LINES = 12


def _wrap(line: str, width: int = 100) -> list[str]:
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(line, width, subsequent_indent=indent + "  ", break_long_words=False) or [
        line
    ]


def _student_frames(cause: BaseException | None, keep: int = 3) -> list[str]:
    """The last ``keep`` frames of a crash in the student's code (none inside this package)."""
    if cause is None or cause.__traceback__ is None:
        return []
    package = str(Path(__file__).resolve().parents[1])
    frames = [
        f
        for f in traceback.extract_tb(cause.__traceback__)
        if not str(Path(f.filename).resolve()).startswith(package)
    ][-keep:]
    out = ["  in your code:"] if frames else []
    for f in frames:
        where = "a notebook cell" if f.filename.startswith(("<", "/tmp/ipykernel")) else f.filename
        out.append(f"    {where}, line {f.lineno}, in {f.name}: {(f.line or '').strip()}")
    return out


class CheckPassed(str):
    """The success message of a checker (a ``str``), already printed by the checker.

    In Jupyter, displaying it again as the cell's value would repeat it, so its IPython display
    hook shows nothing.

    References
    ----------
    See :class:`LabCheckError`.
    """

    def _ipython_display_(self) -> None:
        return None


# ---------------------------------------------------------------------------------- helpers


def _fmt(x: Any, digits: int = 6) -> str:
    """Numbers for messages: ``digits`` significant digits, vectors in parentheses."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().tolist()
    if isinstance(x, (list, tuple)):
        return "(" + ", ".join(_fmt(v, digits) for v in x) + ")"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _fmt_pair(expected: Any, got: Any) -> tuple[str, str]:
    """Both formatted with the fewest digits (6 to 17) at which they read differently."""
    for digits in (6, 9, 12, 17):
        shown = _fmt(expected, digits), _fmt(got, digits)
        if shown[0] != shown[1]:
            break
    return shown


def _passed(exercise: str, n_checks: int, extra: str = "") -> CheckPassed:
    message = f"exercise {exercise}: passed {n_checks} checks." + (f"\n{extra}" if extra else "")
    print(message)
    return CheckPassed(message)


def _call(exercise: str, what: str, fn: Any, args: Sequence[Any], where: str) -> Any:
    """Call the student's function; NotImplementedError and crashes become LabCheckError."""
    if not callable(fn):
        raise LabCheckError(
            f"exercise {exercise}: pass your function itself to the checker (e.g. check(my_function), "
            f"without calling it), got a {type(fn).__name__}"
        )
    try:
        # Clones: a function that modifies its inputs in place must not corrupt the next check.
        # Warnings are shown on stdout: nbgrader scores a test cell that writes to stderr 0, and
        # a warning (a deprecation, a float32 cast) does not make an answer wrong.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn(*[a.clone() if isinstance(a, Tensor) else a for a in args])
        for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
            print(f"exercise {exercise}: note: your {what} warned on {where}: {message}")
        return result
    except NotImplementedError:
        raise LabCheckError(
            f"exercise {exercise} is not done yet: fill in the cell marked # YOUR CODE "
            f"(exercise {exercise}), run it, then run this check again."
        ) from None
    except LabCheckError:
        raise
    except Exception as err:  # the student's code crashed: say where, keep the traceback
        raise LabCheckError(
            f"exercise {exercise}: your {what} raised {type(err).__name__} on {where}: {err}"
        ) from err


def _as_result(
    exercise: str, what: str, value: Any, shape: tuple[int, ...], where: str
) -> tuple[Tensor, str]:
    """The student's answer as a float64 tensor of the expected shape, and its own dtype's name."""
    if isinstance(value, Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        t = value.detach().to(DTYPE)
    else:
        try:
            array = np.asarray(value)
            dtype = str(array.dtype)
            t = torch.as_tensor(array.astype(np.float64))
        except (TypeError, ValueError):
            raise LabCheckError(
                f"exercise {exercise}: your {what} should return a tensor (or array) of shape "
                f"{shape} on {where}, got {type(value).__name__}"
            ) from None
    if tuple(t.shape) != shape:
        hint = ""
        if t.numel() == 1 and t.ndim < len(shape):
            hint = " (return one value per pair; do not average or sum over the batch)"
        raise LabCheckError(
            f"exercise {exercise}: your {what} should return shape {shape} on {where}, "
            f"got shape {tuple(t.shape)}{hint}"
        )
    return t, dtype


# Dtypes whose round-off (float32: ~6e-8 relative) the checkers' RTOL cannot absorb.
LOW_PRECISION = ("float32", "float16", "bfloat16")


def _answer(
    exercise: str, what: str, fn: Any, args: Sequence[Any], shape: tuple[int, ...], where: str
) -> tuple[Tensor, str]:
    """The student's function called on ``args`` (:func:`_call`), its answer checked (:func:`_as_result`)."""
    return _as_result(exercise, what, _call(exercise, what, fn, args, where), shape, where)


def _precision_hint(got: Tensor, dtype: str, expected: Tensor) -> str:
    """The hint for a right answer computed in too low a precision (float32), else ``""``."""
    if dtype in LOW_PRECISION and torch.allclose(got, expected, rtol=1e-3, atol=1e-6):
        return (
            f"your answer is {dtype} (the dtype of what you returned), so it is right to only ~7 "
            "digits; the inputs are float64: keep float64 throughout (no .float(), no "
            "dtype=torch.float32)"
        )
    return ""


def _close(got: Tensor, expected: Tensor, atol: float = ATOL) -> bool:
    return bool(torch.isfinite(got).all()) and torch.allclose(got, expected, rtol=RTOL, atol=atol)


def _diagnose(
    got: Tensor, variants: Sequence[tuple[str, Callable[[], Tensor]]], atol: float = ATOL
) -> str:
    """The hint of the first known mistake whose result matches the student's answer."""
    for hint, compute in variants:
        try:
            wrong = compute()
        except (ValueError, ZeroDivisionError, RuntimeError):
            continue
        if wrong.shape == got.shape and _close(got, wrong, atol):
            return hint
    return ""


def _policy_hint(
    got: Tensor,
    not_finite: str,
    normalise: str,
    variants: Sequence[tuple[str, Callable[[], Tensor]]],
    atol: float = ATOL,
) -> str:
    """The hint for a wrong policy: ``not_finite``, a sum other than 1 (then ``normalise``), or a known mistake."""
    if not bool(torch.isfinite(got).all()):
        return not_finite
    if abs(float(got.sum()) - 1.0) > 1e-8:
        return f"your policy sums to {float(got.sum()):.6g}, not 1: {normalise}"
    return _diagnose(got, variants, atol)


def _mismatch(
    exercise: str, call: str, expected: Tensor, got: Tensor, hint: str, dtype: str = "float64"
) -> LabCheckError:
    """The error of a wrong value: the hint first, then the call, the expected and the returned values."""
    hint = _precision_hint(got, dtype, expected) or hint
    shown_expected, shown_got = _fmt_pair(expected, got)
    lines = [
        f"exercise {exercise}: {hint}" if hint else f"exercise {exercise}: wrong value",
        f"  {call}",
        f"  expected {shown_expected}",
        f"  got      {shown_got}" + (f" ({dtype})" if dtype != "float64" else ""),
    ]
    if expected.ndim and expected.numel() > 1:
        bad = int(
            ((got - expected).abs() - RTOL * expected.abs()).nan_to_num(float("inf")).argmax()
        )
        e, g = _fmt_pair(float(expected[bad]), float(got[bad]))
        lines.append(f"  first difference at index {bad}: expected {e}, got {g}")
    return LabCheckError("\n".join(lines))
