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
from collections.abc import Callable, Sequence
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

    References
    ----------
    The exercises follow Rafailov et al., arXiv:2305.18290v3; Azar et al., arXiv:2310.12036v2;
    Munos et al., arXiv:2312.00886v4.
    """


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


def _fmt(x: Any) -> str:
    """Numbers for messages: 6 significant digits, vectors in parentheses."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().tolist()
    if isinstance(x, (list, tuple)):
        return "(" + ", ".join(_fmt(v) for v in x) + ")"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.6g}" if isinstance(x, float) else str(x)


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
        return fn(*[a.clone() if isinstance(a, Tensor) else a for a in args])
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


def _as_result(exercise: str, what: str, value: Any, shape: tuple[int, ...], where: str) -> Tensor:
    """The student's answer as a float64 tensor of the expected shape, or a LabCheckError."""
    if isinstance(value, Tensor):
        t = value.detach().to(DTYPE)
    else:
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
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
    return t


def _answer(
    exercise: str, what: str, fn: Any, args: Sequence[Any], shape: tuple[int, ...], where: str
) -> Tensor:
    """The student's function called on ``args`` (:func:`_call`), its answer checked (:func:`_as_result`)."""
    return _as_result(exercise, what, _call(exercise, what, fn, args, where), shape, where)


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


def _mismatch(exercise: str, call: str, expected: Tensor, got: Tensor, hint: str) -> LabCheckError:
    if expected.ndim and expected.numel() > 1:
        bad = int(
            ((got - expected).abs() - RTOL * expected.abs()).nan_to_num(float("inf")).argmax()
        )
        detail = f" (first difference at index {bad}: expected {_fmt(float(expected[bad]))}, got {_fmt(float(got[bad]))})"
    else:
        detail = ""
    return LabCheckError(
        f"exercise {exercise}: {call}: expected {_fmt(expected)}, got {_fmt(got)}{detail}"
        + (f" ({hint})" if hint else "")
    )
