r"""Input checks of the log-linear displacement model: feature matrix, (chosen, rejected) pairs, weights.

``prefopt_toy.displacement`` runs DPO on a log-linear policy :math:`\pi_w(y) \propto \exp(\phi(y)\cdot w)`
with one feature row per response; these helpers turn user input into float64 tensors and reject
what the exact maths cannot use: a features array that is not a (K, d) matrix with K >= 2, indices
out of range or not integers, a pair with ``chosen == rejected`` or with equal feature rows (its
margin is 0 for every ``w``), chosen and rejected sequences of different lengths, and weights of the
wrong length. References: Razin et al., arXiv:2410.08847 (likelihood displacement, embeddings of
chosen and rejected); Rafailov et al., arXiv:2305.18290v3, Eq. (7).
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor

from ._validate import as_tensor, as_vector

# --------------------------------------------------------------------------- validation


def _features(features: Any) -> Tensor:
    phi = as_tensor(features, "features")
    if phi.ndim != 2:
        raise ValueError(f"features must be a matrix of shape (K, d) (one row per response), got shape {tuple(phi.shape)}")
    if phi.shape[0] < 2 or phi.shape[1] < 1:
        raise ValueError(f"features must have at least 2 responses (rows) and 1 column, got shape {tuple(phi.shape)}")
    return phi.detach()


def _index(x: Any, name: str, k: int) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise ValueError(f"{name} must hold integer response indices, got {type(x).__name__}")  # noqa: TRY004
    i = int(x)
    if not 0 <= i < k:
        raise ValueError(f"{name} must hold indices in [0, {k - 1}] (one per row of features), got {i}")
    return i


def _pairs(features: Tensor, chosen: Any, rejected: Any) -> tuple[Tensor, bool]:
    """``(m, 2)`` int64 rows ``(chosen, rejected)`` and whether a single pair was given as scalars."""
    k = features.shape[0]
    chosen = chosen.item() if isinstance(chosen, Tensor) and chosen.ndim == 0 else chosen
    rejected = rejected.item() if isinstance(rejected, Tensor) and rejected.ndim == 0 else rejected
    single = not isinstance(chosen, (list, tuple, Tensor)) and not hasattr(chosen, "__len__")
    if single != (not isinstance(rejected, (list, tuple, Tensor)) and not hasattr(rejected, "__len__")):
        raise ValueError("chosen and rejected must both be indices or both be sequences of the same length")
    if isinstance(chosen, Tensor):
        chosen = chosen.tolist()
    if isinstance(rejected, Tensor):
        rejected = rejected.tolist()
    c_list = [chosen] if single else list(chosen)
    r_list = [rejected] if single else list(rejected)
    if len(c_list) == 0:
        raise ValueError("chosen must hold at least one response index")
    if len(c_list) != len(r_list):
        raise ValueError(f"chosen and rejected must have the same length, got {len(c_list)} and {len(r_list)}")
    rows = []
    for n, (c, r) in enumerate(zip(c_list, r_list)):
        ci, ri = _index(c, "chosen", k), _index(r, "rejected", k)
        if ci == ri:
            raise ValueError(f"chosen and rejected must differ, but pair {n} is ({ci}, {ri})")
        if bool(torch.equal(features[ci], features[ri])):
            raise ValueError(
                f"features of chosen {ci} and rejected {ri} must differ: with equal rows the margin "
                "of that pair is 0 for every w and its DPO loss is the constant log 2"
            )
        rows.append((ci, ri))
    return torch.tensor(rows, dtype=torch.int64), single


def _weights(w: Any, name: str, d: int) -> Tensor:
    return as_vector(w, name, size=d).detach()
