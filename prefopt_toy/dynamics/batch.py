"""Broadcasting a call's games, reference policies and hyperparameters into one batch.

Every algorithm accepts a single game ``P`` (K, K) or a batch (B, K, K), a single ``mu`` (K,) or a
batch (B, K), and hyperparameters that are numbers or sequences of length B. ``as_batch`` checks
each, broadcasts everything to the common batch size B and records whether the caller asked for a
batch, so results come back unbatched for unbatched input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from prefopt_toy._validate import DTYPE, as_policy, as_preference_matrix, as_tensor


@dataclass(frozen=True)
class Batch:
    """Validated, broadcast inputs of one call (all float64)."""

    P: Tensor
    """Preference matrices, shape (B, K, K)."""
    mu: Tensor
    """Reference policies, shape (B, K), strictly positive."""
    batched: bool
    """Whether any input carried a batch axis (results keep it only then)."""

    @property
    def size(self) -> int:
        """Batch size B."""
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        """Number of actions K."""
        return self.P.shape[-1]

    @property
    def log_mu(self) -> Tensor:
        """``log mu``, shape (B, K)."""
        return self.mu.log()


def preference_batch(P: Any, name: str = "P") -> Tensor:
    """A (K, K) or (B, K, K) stack of preference matrices, each validated like ``check_preference_matrix``."""
    return as_preference_matrix(P, name, batched=True).detach()


def policy_batch(pi: Any, name: str, k: int, *, positive: bool) -> Tensor:
    """A (K,) or (B, K) stack of probability vectors, renormalised exactly."""
    return as_policy(pi, name, size=k, positive=positive, batched=True).detach()


def _common_size(sizes: dict[str, int]) -> int:
    distinct = set(sizes.values())
    if len(distinct) > 1:
        raise ValueError(
            f"batch sizes disagree: {sizes} (each batched input needs the same leading size)"
        )
    return distinct.pop() if distinct else 1


def as_batch(
    P: Any, mu: Any, *, policies: dict[str, Any] | None = None, **hyper: Any
) -> tuple[Batch, dict[str, Tensor]]:
    """Validate and broadcast ``P``, ``mu``, extra ``policies`` and hyperparameters.

    Hyperparameters are numbers or length-B sequences; ``policies`` (e.g. ``{"nu": nu}``) are
    probability vectors (K,) or batches (B, K), zeros allowed. Returns the :class:`Batch` and a
    dict with each hyperparameter as a float64 tensor (B,) and each policy as (B, K); ``None``
    values are passed through as ``None``.
    """
    P_t = preference_batch(P)
    k = P_t.shape[-1]
    mu_t = policy_batch(mu, "mu", k, positive=True)
    sizes: dict[str, int] = {}
    if P_t.ndim == 3:
        sizes["P"] = P_t.shape[0]
    if mu_t.ndim == 2:
        sizes["mu"] = mu_t.shape[0]
    extra: dict[str, Tensor | None] = {}
    for key, value in (policies or {}).items():
        extra[key] = None if value is None else policy_batch(value, key, k, positive=False)
        if extra[key] is not None and extra[key].ndim == 2:  # type: ignore[union-attr]
            sizes[key] = extra[key].shape[0]  # type: ignore[union-attr]
    values: dict[str, Tensor | None] = {}
    for key, value in hyper.items():
        if value is None:
            values[key] = None
            continue
        v = as_tensor(value, key).detach()
        if v.ndim > 1:
            raise ValueError(
                f"{key} must be a number or a 1-D sequence (one value per batch row), got shape {tuple(v.shape)}"
            )
        if v.ndim == 1:
            sizes[key] = v.numel()
        values[key] = v
    size = _common_size(sizes)
    P_b = P_t.expand(size, k, k) if P_t.ndim == 2 else P_t
    mu_b = mu_t.expand(size, k) if mu_t.ndim == 1 else mu_t
    out = {
        key: (None if v is None else v.to(DTYPE).expand(size).clone()) for key, v in values.items()
    }
    for key, v in extra.items():
        out[key] = None if v is None else v.expand(size, k).clone()  # type: ignore[assignment]
    return Batch(P_b.clone(), mu_b.clone(), batched=bool(sizes)), out  # type: ignore[arg-type]


def positive(values: Tensor, name: str) -> Tensor:
    """Check that every entry is > 0 (a KL strength, a learning rate); ValueError naming it."""
    if bool((values <= 0).any()):
        raise ValueError(
            f"{name} must be > 0, got {values.tolist() if values.numel() < 8 else 'a non-positive entry'}"
        )
    return values


def unit_interval(values: Tensor, name: str) -> Tensor:
    """Check that every entry lies in [0, 1]; ValueError naming it."""
    if bool(((values < 0) | (values > 1)).any()):
        raise ValueError(
            f"{name} must lie in [0, 1], got {values.tolist() if values.numel() < 8 else 'an entry outside'}"
        )
    return values


def unbatch(x: Tensor, batch: Batch) -> Tensor:
    """Drop the batch axis of a result when the call was not batched."""
    return x if batch.batched else x[0]


__all__ = [
    "Batch",
    "as_batch",
    "preference_batch",
    "policy_batch",
    "positive",
    "unit_interval",
    "unbatch",
]
