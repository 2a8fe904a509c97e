"""Lengths per action: the bandit's stand-in for a completion's number of tokens.

SimPO and R-DPO use ``|y|``; on a bandit each action ``y`` gets a length ``L(y) >= 1`` (not
necessarily an integer). ``as_lengths`` validates them: (K,) or (B, K), finite and > 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_tensor

from .batch import Batch


def as_lengths(lengths: Any, batch: Batch, name: str = "lengths") -> Tensor:
    """Per-action lengths broadcast to (B, K); ``None`` means every action has length 1."""
    b, k = batch.size, batch.n_actions
    if lengths is None:
        return torch.ones(b, k, dtype=torch.float64)
    t = as_tensor(lengths, name).detach()
    if t.ndim not in (1, 2) or t.shape[-1] != k or (t.ndim == 2 and t.shape[0] not in (1, b)):
        raise ValueError(
            f"{name} must have shape ({k},) or ({b}, {k}) (one length per action), got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError(f"{name} must be finite and > 0 (a length per action)")
    return t.expand(b, k).clone()
