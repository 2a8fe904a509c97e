"""Batched, functional optimisers on logits: gradient descent and Adam.

State lives in explicit tensors returned by each call (no hidden globals), so the shared loop can
run any optimiser and a trajectory is reproducible from its inputs.
"""

from __future__ import annotations

import math
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

    def update(
        self, theta: Tensor, grad: Tensor, state: tuple[Tensor, ...], t: int
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step; ``t`` counts from 0."""
        return theta - self.lr[:, None] * grad, state


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba, arXiv:1412.6980v9, Algorithm 1) with bias correction, batched.

    The second moment is kept as its square root, updated with ``hypot``:
    ``sqrt(v_t) = hypot(sqrt(b2) sqrt(v_{t-1}), sqrt(1 - b2) g_t)``, the same number as
    ``sqrt(b2 v_{t-1} + (1 - b2) g_t**2)`` without forming ``g**2``. Squaring a gradient above
    ~1e154 overflows to inf and makes the step silently 0 (a large gradient would stop the run),
    and below ~1e-154 underflows; ``hypot`` does neither: every finite gradient gives a finite step.
    """

    lr: Tensor
    """Learning rates, shape (B,)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Decay rates of the first and second moment estimates."""
    eps: float = 1e-8
    """Added to the square root of the second moment (Optax and torch defaults)."""

    def init(self, theta: Tensor) -> tuple[Tensor, ...]:
        """Zero first moment and zero root of the second moment."""
        return torch.zeros_like(theta), torch.zeros_like(theta)

    def update(
        self, theta: Tensor, grad: Tensor, state: tuple[Tensor, ...], t: int
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One Adam step at iteration ``t`` (from 0); the state is ``(m, sqrt(v))``."""
        b1, b2 = self.betas
        m, root_v = state
        m = b1 * m + (1.0 - b1) * grad
        root_v = torch.hypot(math.sqrt(b2) * root_v, math.sqrt(1.0 - b2) * grad)
        m_hat = m / (1.0 - b1 ** (t + 1))
        root_v_hat = root_v / math.sqrt(1.0 - b2 ** (t + 1))
        return theta - self.lr[:, None] * m_hat / (root_v_hat + self.eps), (m, root_v)


@dataclass(frozen=True)
class Assign:
    """No optimiser: the step function returns the new (unnormalised) logits themselves.

    Used by closed-form rules (Nash-MD's mirror step), whose step size is part of the rule.
    """

    def init(self, theta: Tensor) -> tuple[Tensor, ...]:
        """No state."""
        return ()

    def update(
        self, theta: Tensor, new: Tensor, state: tuple[Tensor, ...], t: int
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
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
