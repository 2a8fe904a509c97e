"""Input conversion and validation at the public boundary (private).

Every public function of the exact core passes its arguments through these helpers. They turn lists,
numpy arrays and tensors into float64 torch tensors, check shapes and constraints, and raise a
``ValueError`` that names the argument and the broken constraint. Nothing is broadcast silently and
nothing is modified in place: ``torch.as_tensor`` shares memory with a float64 numpy array, so the
helpers copy before any normalisation.

Numbers are numbers: strings and bytes (also inside lists and numpy string or object arrays),
booleans outside tensors, complex values of any kind, and integers too large for float64 raise a
``ValueError`` naming the argument; they are never parsed, truncated to their real part or left to
escape as ``OverflowError``.

Low-precision input (float32, float16, bfloat16) is checked against the rounding its own dtype
allows (see ``preference_tolerance`` and ``input_tolerance``), not against a loose size-dependent
slack, and what comes back satisfies its invariant in float64: a preference matrix is exactly
complementary, a policy is renormalised.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

DTYPE = torch.float64

# Tolerance on P + P.T == 1 and on sum(pi) == 1 for exact (float64) input: loose enough for matrices
# read from text files with ~12 significant digits, tight enough to reject genuinely wrong inputs.
# Low-precision input adds the rounding allowance of its dtype on top (ENTRY_ULPS, input_tolerance).
PROB_ATOL = 1e-9

# How far (in ulps of itself, in the caller's dtype) one entry of a low-precision input may be from
# the exact value it stands for: half an ulp from rounding into the dtype, plus the error of
# computing it there with one elementwise function (torch's float32 sigmoid / exp / division are
# within ~1.5 ulp; float32 BT matrices built with torch.sigmoid were measured at 1.4 ulp per entry).
ENTRY_ULPS = 2.0

_EPS64 = float(torch.finfo(torch.float64).eps)
_NUMERIC = "must be numeric (real numbers: a list, numpy array or tensor)"


# ---------------------------------------------------------------------------------------------
# numbers


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _object_to_float64(arr: np.ndarray, name: str) -> np.ndarray:
    """An object array of Python / numpy numbers -> float64, rejecting anything that is not real."""
    out = np.empty(arr.shape, dtype=np.float64)
    for index, item in np.ndenumerate(arr):
        if isinstance(item, Tensor):
            if item.numel() != 1 or item.is_complex() or item.dtype == torch.bool:
                raise ValueError(f"{name} {_NUMERIC}, got an entry {_short(item)}")
            item = item.item()
        if isinstance(item, (str, bytes, bytearray)):
            raise ValueError(
                f"{name} {_NUMERIC}, got the string {_short(item)} (strings are not parsed)"
            )
        if isinstance(item, (bool, np.bool_)):
            raise ValueError(f"{name} {_NUMERIC}, got a boolean entry (use 0.0 / 1.0)")
        if isinstance(item, numbers.Complex) and not isinstance(item, numbers.Real):
            raise ValueError(f"{name} must be real (not complex), got the entry {_short(item)}")
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                out[index] = float(item)
        except OverflowError:
            raise ValueError(
                f"{name} must be finite, but an entry is too large for float64: {_short(item)}"
            ) from None
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} {_NUMERIC}, got an entry of type {type(item).__name__}"
            ) from None
    return out


def _real_array(x: Any, name: str) -> np.ndarray:
    """``x`` (not a tensor) as a real numeric numpy array: integer or floating dtype, no copy forced."""
    if isinstance(x, (str, bytes, bytearray)):
        raise ValueError(f"{name} {_NUMERIC}, got the string {_short(x)} (strings are not parsed)")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:  # ragged nested lists: numpy's message names nothing
        raise ValueError(
            f"{name} {_NUMERIC} of one rectangular shape, got {type(x).__name__}"
        ) from err
    kind = arr.dtype.kind
    if kind in "iuf":
        return arr
    if kind == "O":
        return _object_to_float64(arr, name)
    if kind in "USa":
        raise ValueError(
            f"{name} {_NUMERIC}, got strings (dtype {arr.dtype}; strings are not parsed)"
        )
    if kind == "c":
        raise ValueError(f"{name} must be real (not complex), got dtype {arr.dtype}")
    if kind == "b":
        raise ValueError(f"{name} {_NUMERIC}, got booleans (convert to 0.0 / 1.0 if that is meant)")
    raise ValueError(f"{name} {_NUMERIC}, got dtype {arr.dtype}")


def _precision(dtype: Any) -> tuple[float, float]:
    """``(eps, u_acc)`` of an input dtype (torch or numpy).

    ``eps``: machine epsilon of the dtype, never below float64's (a float64 image is what is
    checked; integers and float128 are exact or rounded to float64). ``u_acc``: unit roundoff of the
    precision its sums are accumulated in, the wider of the dtype and float32 (torch sums float16 /
    bfloat16 in float32; float64 input in float64).
    """
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        eps = float(torch.finfo(dtype).eps)
        u_acc = float(torch.finfo(torch.promote_types(dtype, torch.float32)).eps) / 2
    elif isinstance(dtype, np.dtype) and dtype.kind == "f":
        eps = float(np.finfo(dtype).eps)
        u_acc = float(np.finfo(np.promote_types(dtype, np.float32)).eps) / 2
    else:
        eps, u_acc = _EPS64, _EPS64 / 2
    return max(eps, _EPS64), max(u_acc, _EPS64 / 2)


def _convert(x: Any, name: str, dtype: torch.dtype) -> tuple[Tensor, Any]:
    """``x`` as a finite tensor of ``dtype`` (a copy unless it already is one) and its source dtype."""
    if x is None:
        raise ValueError(f"{name} must be numeric (list, numpy array or tensor), got None")
    if isinstance(x, Tensor):
        t = x.detach() if not x.requires_grad else x
        if t.is_complex():
            raise ValueError(f"{name} must be real, got a complex tensor")
        source = x.dtype
        t = t.to(dtype)
    else:
        arr = _real_array(x, name)
        source = arr.dtype
        with np.errstate(over="ignore"):  # float128 beyond float64's range -> inf, reported below
            arr = arr.astype(np.float64, copy=False)
        t = torch.tensor(arr, dtype=dtype)  # torch.tensor copies: never aliases the caller's array
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} must be finite, but it contains NaN or inf")
    return t, source


def as_tensor(x: Any, name: str, *, dtype: torch.dtype = DTYPE) -> Tensor:
    """Convert ``x`` (list, numpy array, tensor, number) to a tensor of ``dtype`` (a copy when needed).

    Raises ``ValueError`` naming ``name`` if ``x`` is not numeric (strings, bytes, booleans outside
    a tensor, ragged lists), complex, or holds NaN / inf or an integer too large for float64.
    Boolean and integer tensors are converted (0 / 1 for booleans). Object arrays of real numbers
    (``int``, ``float``, ``Fraction``, numpy scalars) are accepted.
    """
    return _convert(x, name, dtype)[0]


def _check_vector(t: Tensor, name: str, size: int | None) -> Tensor:
    if t.ndim != 1:
        raise ValueError(f"{name} must be a vector (1-D), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if size is not None and t.numel() != size:
        raise ValueError(f"{name} must have length {size} (one entry per action), got {t.numel()}")
    return t


def _check_square(t: Tensor, name: str) -> Tensor:
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} must have at least one action, got shape {tuple(t.shape)}")
    return t


def as_vector(x: Any, name: str, *, size: int | None = None) -> Tensor:
    """A finite float64 vector, of length ``size`` when given."""
    return _check_vector(as_tensor(x, name), name, size)


def as_square(x: Any, name: str) -> Tensor:
    """A finite float64 square matrix with at least one row."""
    return _check_square(as_tensor(x, name), name)


# ---------------------------------------------------------------------------------------------
# probabilities: tolerances from the caller's dtype


def preference_tolerance(P: Tensor, eps: float, atol: float = PROB_ATOL) -> Tensor:
    r"""Per-pair tolerance on ``P[i, j] + P[j, i] == 1`` for a matrix given in a dtype with epsilon eps.

    .. math:: |a + b - 1| \le \mathrm{atol} + \mathrm{ENTRY\_ULPS}\cdot\varepsilon\,(|a| + |b|),
              \qquad a = P[i, j],\ b = P[j, i]

    Why: the caller's matrix stands for an exact one with :math:`a^* + b^* = 1` (within ``atol``,
    the float64 tolerance for values typed or read from text). Each entry it holds is within
    ``ENTRY_ULPS`` ulps of its exact value (half an ulp of rounding into the dtype, the rest from
    computing it there, e.g. ``torch.sigmoid`` in float32), and one ulp of x is at most
    :math:`\varepsilon|x|`. The float64 evaluation of ``a + b - 1`` (exact images of a and b) adds
    at most :math:`\varepsilon_{64}(|a| + |b|)`, covered because ``eps`` is never below float64's.
    So the slack follows the rounding of the two entries in the caller's dtype and nothing else: about
    ``atol + 2 * eps`` for a pair (0.0156 for bfloat16, 2.4e-7 for float32, ``atol`` for float64),
    independent of the size of the matrix.

    Parameters
    ----------
    P : Tensor, shape (..., K, K), float64
        The float64 image of the caller's matrix (exact for float32 / float16 / bfloat16).
    eps : float
        Machine epsilon of the caller's dtype, at least float64's.
    atol : float
        Tolerance for exact input.

    Returns
    -------
    Tensor, shape (..., K, K)
        The tolerance of each pair (symmetric).
    """
    scale = P.abs()
    return atol + ENTRY_ULPS * eps * (scale + scale.transpose(-1, -2))


def policy_tolerance(pi: Tensor, eps: float, u_acc: float, atol: float = PROB_ATOL) -> Tensor:
    r"""Tolerance on ``sum(pi) == 1`` for a probability vector (or a stack, per row) given in a dtype.

    .. math:: \Bigl|\sum_k x_k - 1\Bigr| \le \mathrm{atol}
              + \bigl(\mathrm{ENTRY\_ULPS}\cdot\varepsilon + n\,u_{\mathrm{acc}}\bigr)\sum_k |x_k|

    Why: each entry is within ``ENTRY_ULPS`` ulps (at most :math:`\varepsilon|x_k|` each) of the
    exact value it stands for; the sum of those allowances is ``ENTRY_ULPS * eps * sum|x|`` (about
    ``eps/2 * sum|x|`` per half ulp). A low-precision policy was also *normalised* in low precision,
    by a sum of its n entries, and that sum carries a relative error up to
    :math:`\gamma_n \approx n\,u_{\mathrm{acc}}` (Higham 2002, Sec. 4.2), common to all entries:
    ``torch.softmax`` in float32 was measured to sum to 1 only within ~10 u (K = 1000) and ~70 u
    (K = 10,000), beyond any per-entry bound. ``u_acc`` is the unit roundoff of the accumulation
    precision: float32 for float32 / float16 / bfloat16 input (torch accumulates half types in
    float32; a half-precision vector normalised *in* half precision is not accepted), float64 for
    float64 input, where the term also covers the float64 summation of this check. Examples: a
    bfloat16 vector of 3 entries summing to about 1 gets ``atol + 0.0156 + 1.8e-7``; a float32
    vector of 1000 entries ``atol + 2.4e-7 + 6.0e-5``; float64 input ``atol`` plus round-off.

    Parameters
    ----------
    pi : Tensor, shape (..., n), float64
        The float64 image of the caller's vector(s).
    eps : float
        Machine epsilon of the caller's dtype, at least float64's.
    u_acc : float
        Unit roundoff of the accumulation precision (see ``_precision``).
    atol : float
        Tolerance for exact input.

    Returns
    -------
    Tensor, shape (...)
        The tolerance of each row.
    """
    n = pi.shape[-1]
    return atol + (ENTRY_ULPS * eps + n * u_acc) * pi.abs().sum(-1)


def input_tolerance(x: Any, atol: float = PROB_ATOL) -> float:
    """Tolerance on ``sum(x) == 1`` for ``x`` in the caller's dtype (``policy_tolerance`` of all entries).

    Kept for callers that want one number; ``as_policy`` and ``as_preference_matrix`` use the
    per-row and per-pair forms directly.
    """
    t, source = _convert(x, "x", DTYPE)
    eps, u_acc = _precision(source)
    return float(policy_tolerance(t.detach().reshape(-1), eps, u_acc, atol))


def _exactly_complementary(P: Tensor, pair_gap: Tensor) -> Tensor:
    """The nearest matrix with ``P + P.T == 1`` exactly in float64 (entries of P in [0, 1]).

    ``pair_gap`` is ``fl(fl(P + P.T) - 1)`` (symmetric; of the matrix before clipping). The upper
    triangle is moved by half its pair's gap, ``a' = a - (a + b - 1) / 2 = (a + 1 - b) / 2`` (the
    orthogonal projection onto ``P + P.T = 1``; ``a`` unchanged where the pair already summed to 1)
    and clipped to [0, 1] (which matters only where the gap was measured before clipping); the
    lower triangle is computed once from it, ``P[j, i] = 1 - a'``. For ``a'`` in [0, 1],
    ``fl(a' + fl(1 - a')) == 1`` exactly (Sterbenz for a' >= 1/2; otherwise the rounding error of
    ``1 - a'`` is at most 2^-54 and the sum rounds back to 1). On the diagonal ``a - (2a - 1) / 2``
    is exactly 1/2 for a in [1/4, 1].
    """
    k = P.shape[-1]
    upper = torch.ones(k, k, dtype=torch.bool, device=P.device).triu(1)
    a = (P - 0.5 * pair_gap).clamp(0.0, 1.0)  # (..., K, K), used on and above the diagonal
    return torch.where(upper, a, 1.0 - a.transpose(-1, -2))


def as_preference_matrix(
    P: Any, name: str = "P", *, atol: float = PROB_ATOL, batched: bool = False
) -> Tensor:
    """Validate a preference matrix: square, finite, entries in [0, 1], ``P + P.T == 1``.

    The diagonal must therefore be 1/2. The tolerance on each pair sum is ``atol`` plus the rounding
    of the two entries in the caller's dtype (``preference_tolerance``); entries may lie outside
    [0, 1] by ``atol`` plus their own rounding allowance and are clipped. Returns a float64 copy that
    is exactly complementary in float64 (``P + P.T == 1`` evaluates to all True; a matrix that
    already was comes back unchanged, any other is projected, see ``_exactly_complementary``), so
    round-off of a float32 or bfloat16 input does not propagate. ``batched=True`` also accepts a
    stack (B, K, K), each matrix checked alike.
    """
    t, source = _convert(P, name, DTYPE)
    if batched:
        if t.ndim not in (2, 3) or t.shape[-1] != t.shape[-2] or t.shape[-1] == 0:
            raise ValueError(
                f"{name} must be a square matrix (K, K) or a batch (B, K, K), got shape {tuple(t.shape)}"
            )
    else:
        _check_square(t, name)
    eps, _ = _precision(source)
    d = t.detach()  # checks read values only; the result keeps autograd
    # Range: x >= -(atol + r eps |x|) is monotone in x, so the extreme entries decide (r = ENTRY_ULPS).
    lo, hi = float(d.min()), float(d.max())
    if lo < -(atol + ENTRY_ULPS * eps * abs(lo)) or hi > 1.0 + atol + ENTRY_ULPS * eps * abs(hi):
        raise ValueError(
            f"{name} entries must lie in [0, 1] (probabilities), got min {lo:.6g}, max {hi:.6g}"
        )
    pair_gap = d + d.transpose(-1, -2) - 1.0
    worst = max(float(pair_gap.max()), -float(pair_gap.min()))  # max |gap|, without a temporary
    # Fast path (one reduction): |a| + |b| >= a + b >= 1 - worst for every pair, so worst within
    # atol + r eps (1 - worst) satisfies every pair's own tolerance.
    if worst > atol + ENTRY_ULPS * eps * (1.0 - worst):
        tol = preference_tolerance(d, eps, atol)
        excess = pair_gap.abs() - tol
        if bool((excess > 0).any()):
            *batch, i, j = (int(x) for x in np.unravel_index(int(excess.argmax()), tuple(d.shape)))
            where = f" (matrix {batch[0]} of the batch)" if batch else ""
            pair_sum = float(d[(*batch, i, j)] + d[(*batch, j, i)])
            raise ValueError(
                f"{name} must satisfy P + P.T = 1 (P[i, j] = Pr(i beats j)); "
                f"P[{i}, {j}] + P[{j}, {i}] = {pair_sum:.12g}{where} "
                f"(tolerance {float(tol[(*batch, i, j)]):.3g} for {source} input)"
            )
    out = t.clamp(0.0, 1.0)  # a copy: never the caller's tensor
    if worst == 0.0:
        return out  # already exactly complementary
    return _exactly_complementary(out, pair_gap)


def as_policy(
    pi: Any,
    name: str,
    *,
    size: int | None = None,
    positive: bool = False,
    atol: float = PROB_ATOL,
    batched: bool = False,
) -> Tensor:
    """Validate a probability vector: finite, non-negative, sums to 1 within tolerance.

    The tolerance is ``atol`` plus the rounding the caller's dtype allows (``policy_tolerance``):
    float64 input within about ``atol``, float32 / float16 / bfloat16 within their own entries'
    rounding and one low-precision normalisation. ``positive=True`` additionally requires every entry
    to be > 0 (a full-support reference policy, needed wherever ``log mu`` appears). Returns a
    float64 copy renormalised to sum to 1 (to float64 round-off), so round-off in the input does not
    propagate. ``batched=True`` also accepts a stack (B, K) of policies, each checked alike.
    """
    t, source = _convert(pi, name, DTYPE)
    if batched:
        if t.ndim not in (1, 2) or t.shape[-1] == 0 or (size is not None and t.shape[-1] != size):
            want = f"({size},) or (B, {size})" if size is not None else "(K,) or (B, K)"
            raise ValueError(
                f"{name} must have shape {want} (one entry per action), got {tuple(t.shape)}"
            )
    else:
        _check_vector(t, name, size)
    d = t.detach()
    if float(d.min()) < 0:
        raise ValueError(
            f"{name} must be non-negative (a probability vector), min entry is {float(d.min()):.6g}"
        )
    eps, u_acc = _precision(source)
    tol = policy_tolerance(d, eps, u_acc, atol)
    totals = d.sum(-1)
    excess = ((totals - 1.0).abs() - tol).reshape(-1)
    worst = int(excess.argmax())
    if float(excess[worst]) > 0:
        total = float(totals.reshape(-1)[worst])
        raise ValueError(
            f"{name} must sum to 1 (a probability vector), sums to {total:.12g} "
            f"(tolerance {float(tol.reshape(-1)[worst]):.3g} for {source} input)"
        )
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


def as_hyper(
    x: Any, name: str, *, positive: bool = True, below: float | None = None
) -> float | Tensor:
    """A loss hyperparameter: a number, or a tensor of per-row values for batched use.

    Numbers are checked like ``as_positive_float`` (``> 0``; or ``>= 0`` with ``positive=False``)
    and, with ``below``, ``< below``. A tensor (shape broadcastable to the margins, e.g. (B, 1, 1)
    in the exact engine) gets the same checks on every entry and is returned as is.
    """
    if isinstance(x, Tensor) and x.numel() != 1:
        d = x.detach()
        if d.is_complex() or d.dtype == torch.bool:
            raise ValueError(
                f"{name} must be a real number in every entry, got a tensor of dtype {d.dtype}"
            )
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
    """A finite real scalar (Python number, 0-d array or 0-d tensor).

    Strings, booleans and complex numbers (also as 0-d arrays or tensors) raise ``ValueError``
    ("must be a real number"), as do NaN, inf and integers too large for float64 ("must be finite").
    """
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(x.shape)}")
        x = x.item()
    elif isinstance(x, np.ndarray):
        if x.size != 1:
            raise ValueError(f"{name} must be a scalar, got an array of shape {x.shape}")
        x = x.item()
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(x).__name__}")
    try:
        with np.errstate(
            over="ignore"
        ):  # a float128 beyond float64's range becomes inf, reported below
            value = float(x)
    except OverflowError:  # a Python int beyond float64's range
        raise ValueError(
            f"{name} must be finite, got an integer too large for float64 ({_short(x)})"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def as_unit_interval(
    x: Any, name: str, *, closed_right: bool = True, closed_left: bool = True
) -> float:
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


def as_index_pairs(
    pairs: Any, name: str, n_actions: int, *, allow_empty: bool = False
) -> np.ndarray:
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
        raise ValueError(
            f"{name} must have shape (m, 2) of (winner, loser) rows, got shape {arr.shape}"
        )
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
        raise ValueError(
            f"{name} must have winner != loser, but row {row} is {tuple(int(x) for x in arr[row])}"
        )
    return arr


def _detached(x: Any) -> Any:
    """``x`` without autograd history, on the CPU (for the non-differentiable solvers and checks)."""
    return x.detach().cpu() if isinstance(x, Tensor) else x
