"""Batched, functional optimisers on logits: gradient descent and Adam.

State lives in explicit tensors returned by each call (no hidden globals), so the shared loop can
run any optimiser and a trajectory is reproducible from its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GradientDescent:
    """Plain gradient descent ``theta <- theta - lr * g`` (lr per batch row)."""

    lr: Tensor
    """Learning rates, shape (B,)."""

    def init(self, theta: Tensor) -> tuple[Tensor, ...]:
        """No state."""
        return ()

    def update(self, theta: Tensor, grad: Tensor, state: tuple[Tensor, ...], t: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step; ``t`` counts from 0."""
        return theta - self.lr[:, None] * grad, state


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba, arXiv:1412.6980v9, Algorithm 1) with bias correction, batched."""

    lr: Tensor
    """Learning rates, shape (B,)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Decay rates of the first and second moment estimates."""
    eps: float = 1e-8
    """Added to the square root of the second moment (Optax and torch defaults)."""

    def init(self, theta: Tensor) -> tuple[Tensor, ...]:
        """Zero first and second moments."""
        return torch.zeros_like(theta), torch.zeros_like(theta)

    def update(self, theta: Tensor, grad: Tensor, state: tuple[Tensor, ...], t: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One Adam step at iteration ``t`` (from 0)."""
        b1, b2 = self.betas
        m, v = state
        m = b1 * m + (1.0 - b1) * grad
        v = b2 * v + (1.0 - b2) * grad * grad
        m_hat = m / (1.0 - b1 ** (t + 1))
        v_hat = v / (1.0 - b2 ** (t + 1))
        return theta - self.lr[:, None] * m_hat / (v_hat.sqrt() + self.eps), (m, v)


@dataclass(frozen=True)
class Assign:
    """No optimiser: the step function returns the new (unnormalised) logits themselves.

    Used by closed-form rules (Nash-MD's mirror step), whose step size is part of the rule.
    """

    def init(self, theta: Tensor) -> tuple[Tensor, ...]:
        """No state."""
        return ()

    def update(self, theta: Tensor, new: Tensor, state: tuple[Tensor, ...], t: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The step's output is the next iterate."""
        return new, state


Optimizer = GradientDescent | Adam | Assign


def make_optimizer(name: str, lr: Tensor) -> Optimizer:
    """``"gd"`` or ``"adam"`` with per-row learning rates ``lr`` (B,)."""
    if name == "gd":
        return GradientDescent(lr)
    if name == "adam":
        return Adam(lr)
    raise ValueError(f"optimizer must be 'gd' or 'adam', got {name!r}")
