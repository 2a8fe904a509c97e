"""Input conversion and validation at the public boundary (private).

Every public function of the exact core passes its arguments through these helpers. They turn lists,
numpy arrays and tensors into float64 torch tensors, check shapes and constraints, and raise a
``ValueError`` that names the argument and the broken constraint. Nothing is broadcast silently and
nothing is modified in place: ``torch.as_tensor`` shares memory with a float64 numpy array, so the
helpers copy before any normalisation.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

DTYPE = torch.float64

# Tolerance on P + P.T == 1 and on sum(pi) == 1: loose enough for matrices read from text files
# with ~12 significant digits, tight enough to reject genuinely wrong inputs.
PROB_ATOL = 1e-9


def as_tensor(x: Any, name: str, *, dtype: torch.dtype = DTYPE) -> Tensor:
    """Convert ``x`` (list, numpy array, tensor, number) to a tensor of ``dtype`` (a copy when needed).

    Raises ``ValueError`` naming ``name`` if ``x`` is not numeric or holds NaN / inf.
    """
    if x is None:
        raise ValueError(f"{name} must be numeric (list, numpy array or tensor), got None")
    if isinstance(x, Tensor):
        t = x.detach() if not x.requires_grad else x
        if t.is_complex():
            raise ValueError(f"{name} must be real, got a complex tensor")
        t = t.to(dtype)
    else:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be numeric (list, numpy array or tensor), got {type(x).__name__}") from err
        t = torch.tensor(arr, dtype=dtype)  # torch.tensor copies: never aliases the caller's array
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} must be finite, but it contains NaN or inf")
    return t


def as_vector(x: Any, name: str, *, size: int | None = None) -> Tensor:
    """A finite float64 vector, of length ``size`` when given."""
    t = as_tensor(x, name)
    if t.ndim != 1:
        raise ValueError(f"{name} must be a vector (1-D), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if size is not None and t.numel() != size:
        raise ValueError(f"{name} must have length {size} (one entry per action), got {t.numel()}")
    return t


def as_square(x: Any, name: str) -> Tensor:
    """A finite float64 square matrix with at least one row."""
    t = as_tensor(x, name)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} must have at least one action, got shape {tuple(t.shape)}")
    return t


def input_tolerance(x: Any, atol: float = PROB_ATOL) -> float:
    """``atol``, widened for low-precision input: a float32 policy sums to 1 only within ~1e-7.

    The tolerance is ``max(atol, 16 * eps * sqrt(n))`` with ``eps`` the machine epsilon of the
    caller's floating dtype (float64 when ``x`` is a list), ``n`` the number of entries.
    """
    dtype = getattr(x, "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        eps = torch.finfo(dtype).eps
    elif isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.floating):
        eps = float(np.finfo(dtype).eps)
    else:
        eps = float(np.finfo(np.float64).eps)
    n = int(np.prod(getattr(x, "shape", (1,)))) or 1
    return max(atol, 16.0 * eps * math.sqrt(n))


def as_preference_matrix(P: Any, name: str = "P", *, atol: float = PROB_ATOL, batched: bool = False) -> Tensor:
    """Validate a preference matrix: square, finite, entries in [0, 1], ``P + P.T == 1``.

    The diagonal must therefore be 1/2. Returns a float64 copy. The tolerance widens for float32
    or bfloat16 input (see ``input_tolerance``). ``batched=True`` also accepts a stack (B, K, K),
    each matrix checked alike.
    """
    atol = input_tolerance(P, atol)
    if batched:
        t = as_tensor(P, name)
        if t.ndim not in (2, 3) or t.shape[-1] != t.shape[-2] or t.shape[-1] == 0:
            raise ValueError(f"{name} must be a square matrix (K, K) or a batch (B, K, K), got shape {tuple(t.shape)}")
    else:
        t = as_square(P, name)
    d = t.detach()  # checks read values only; the result keeps autograd
    lo, hi = float(d.min()), float(d.max())
    if lo < -atol or hi > 1 + atol:
        raise ValueError(f"{name} entries must lie in [0, 1] (probabilities), got min {lo:.6g}, max {hi:.6g}")
    gap = (d + d.transpose(-1, -2) - 1).abs()
    worst = float(gap.max())
    if worst > atol:
        *batch, i, j = (int(x) for x in np.unravel_index(int(gap.argmax()), tuple(d.shape)))
        where = f" (matrix {batch[0]} of the batch)" if batch else ""
        pair_sum = float(d[(*batch, i, j)] + d[(*batch, j, i)])
        raise ValueError(
            f"{name} must satisfy P + P.T = 1 (P[i, j] = Pr(i beats j)); "
            f"P[{i}, {j}] + P[{j}, {i}] = {pair_sum:.12g}{where} (tolerance {atol:g})"
        )
    return t.clamp(0.0, 1.0)


def as_policy(
    pi: Any,
    name: str,
    *,
    size: int | None = None,
    positive: bool = False,
    atol: float = PROB_ATOL,
    batched: bool = False,
) -> Tensor:
    """Validate a probability vector: finite, non-negative, sums to 1 within ``atol``.

    ``positive=True`` additionally requires every entry to be > 0 (a full-support reference
    policy, needed wherever ``log mu`` appears). Returns a float64 copy renormalised to sum to 1
    exactly (in floating point), so round-off in the input does not propagate. The tolerance
    widens for float32 or bfloat16 input (see ``input_tolerance``). ``batched=True`` also accepts
    a stack (B, K) of policies, each checked alike.
    """
    atol = input_tolerance(pi, atol)
    if batched:
        t = as_tensor(pi, name)
        if t.ndim not in (1, 2) or t.shape[-1] == 0 or (size is not None and t.shape[-1] != size):
            want = f"({size},) or (B, {size})" if size is not None else "(K,) or (B, K)"
            raise ValueError(f"{name} must have shape {want} (one entry per action), got {tuple(t.shape)}")
    else:
        t = as_vector(pi, name, size=size)
    d = t.detach()
    if float(d.min()) < 0:
        raise ValueError(f"{name} must be non-negative (a probability vector), min entry is {float(d.min()):.6g}")
    totals = d.sum(-1)
    worst = int((totals - 1.0).abs().argmax()) if totals.ndim else 0
    total = float(totals.reshape(-1)[worst])
    if abs(total - 1.0) > atol:
        raise ValueError(f"{name} must sum to 1 (a probability vector), sums to {total:.12g}")
    if positive and float(d.min()) <= 0:
        k = int(d.argmin()) % d.shape[-1]
        raise ValueError(f"{name} must be strictly positive (full support), but {name}[{k}] = 0")
    return t / t.sum(-1, keepdim=True)


def as_positive_float(x: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with ``allow_zero``)."""
    value = as_float(x, name)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def as_hyper(x: Any, name: str, *, positive: bool = True, below: float | None = None) -> float | Tensor:
    """A loss hyperparameter: a number, or a tensor of per-row values for batched use.

    Numbers are checked like ``as_positive_float`` (``> 0``; or ``>= 0`` with ``positive=False``)
    and, with ``below``, ``< below``. A tensor (shape broadcastable to the margins, e.g. (B, 1, 1)
    in the exact engine) gets the same checks on every entry and is returned as is.
    """
    if isinstance(x, Tensor) and x.numel() != 1:
        d = x.detach()
        if not bool(torch.isfinite(d).all()):
            raise ValueError(f"{name} must be finite")
        if bool((d <= 0).any()) if positive else bool((d < 0).any()):
            raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} in every entry")
        if below is not None and bool((d >= below).any()):
            raise ValueError(f"{name} must be < {below} in every entry")
        return x
    value = as_positive_float(x, name, allow_zero=not positive)
    if below is not None and value >= below:
        raise ValueError(f"{name} must lie in [0, {below}), got {value!r}")
    return value


def as_float(x: Any, name: str) -> float:
    """A finite real scalar (Python number, 0-d array or 0-d tensor)."""
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(x.shape)}")
        x = x.item()
    elif isinstance(x, np.ndarray):
        if x.size != 1:
            raise ValueError(f"{name} must be a scalar, got an array of shape {x.shape}")
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(x).__name__}")
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def as_unit_interval(x: Any, name: str, *, closed_right: bool = True, closed_left: bool = True) -> float:
    """A real number in [0, 1] (ends open or closed as asked)."""
    value = as_float(x, name)
    lo_ok = value >= 0 if closed_left else value > 0
    hi_ok = value <= 1 if closed_right else value < 1
    if not (lo_ok and hi_ok):
        left = "[" if closed_left else "("
        right = "]" if closed_right else ")"
        raise ValueError(f"{name} must lie in {left}0, 1{right}, got {value!r}")
    return value


def as_int(x: Any, name: str, *, minimum: int | None = None) -> int:
    """An integer (not a bool), at least ``minimum`` when given."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {type(x).__name__}")
    value = int(x)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_generator(seed: Any, name: str = "seed") -> torch.Generator:
    """A ``torch.Generator`` from an explicit seed (int) or an existing generator.

    There is no default: randomness enters the library only through an explicit seed or generator.
    """
    if isinstance(seed, torch.Generator):
        return seed
    value = as_int(seed, name, minimum=0)
    gen = torch.Generator()
    gen.manual_seed(value)
    return gen


def as_index_pairs(pairs: Any, name: str, n_actions: int, *, allow_empty: bool = False) -> np.ndarray:
    """``(winner, loser)`` rows as an int64 array of shape (m, 2), indices in ``[0, n_actions)``.

    Raises ``ValueError`` naming ``name`` for ragged or non-integer input, a wrong shape, an index
    out of range, or a row with winner == loser.
    """
    if isinstance(pairs, Tensor):
        pairs = pairs.detach().cpu().numpy()
    try:
        arr = np.asarray(pairs)
    except (TypeError, ValueError) as err:  # ragged lists: numpy's own error names nothing
        raise ValueError(f"{name} must be an integer array of (winner, loser) rows") from err
    if arr.size == 0 and allow_empty:
        arr = arr.reshape(0, 2)
    if arr.ndim == 2 and arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} must be non-empty: at least one (winner, loser) row")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (m, 2) of (winner, loser) rows, got shape {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{name} must hold integer action indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_actions)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise ValueError(
            f"{name} must hold indices in [0, n_actions) = [0, {n_actions}), i.e. indices in "
            f"[0, {n_actions - 1}], but row {row} is {tuple(int(x) for x in arr[row])}"
        )
    same = arr[:, 0] == arr[:, 1]
    if same.any():
        row = int(np.argmax(same))
        raise ValueError(f"{name} must have winner != loser, but row {row} is {tuple(int(x) for x in arr[row])}")
    return arr
