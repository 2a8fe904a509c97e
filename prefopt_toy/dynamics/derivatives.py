r"""Value and margin-derivative of a per-pair loss, for the exact engine's hot loop.

The engine needs :math:`\ell(h)` and :math:`\ell'(h)` on the (B, K, K) matrix of all pair margins at
every step. For the library's own losses (given as ``functools.partial(dpo_loss, beta=0.1)`` and the
like) the derivative is written out below, which is several times faster than a backward pass on
these tiny tensors; any other callable falls back to autograd on the margins. ``tests/test_dynamics_engine.py``
checks every analytic derivative against autograd of the library loss itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..gpo import GPO_FUNCTIONS, exponential_threshold, gpo_loss
from ..losses import dpo_loss, ipo_loss, robust_dpo_loss, slic_loss

PairLoss = Callable[[Tensor], Tensor]


def _dpo(h: Tensor, beta: Any, label_smoothing: Any = 0.0) -> Tensor:
    x = beta * h
    # d/dh [(1-eps) softplus(-x) + eps softplus(x)] = beta [-(1-eps) sigma(-x) + eps sigma(x)]
    return beta * (label_smoothing * torch.sigmoid(x) - (1.0 - label_smoothing) * torch.sigmoid(-x))


def _robust_dpo(h: Tensor, beta: Any, label_smoothing: Any) -> Tensor:
    x = beta * h
    eps = label_smoothing
    return -beta * ((1.0 - eps) * torch.sigmoid(-x) + eps * torch.sigmoid(x)) / (1.0 - 2.0 * eps)


def _ipo(h: Tensor, tau: Any) -> Tensor:
    return 2.0 * (h - 1.0 / (2.0 * tau))


def _slic(h: Tensor, beta: Any) -> Tensor:
    # torch.clamp_min passes the gradient at equality, so the kink beta * h = 1 counts as active.
    return -beta * (beta * h <= 1.0).to(h.dtype)


def _gpo_prime(x: Tensor, f: str) -> Tensor:
    """f'(x) for the GPO surrogates (same conventions at kinks as autograd of ``GPO_FUNCTIONS``)."""
    if f == "logistic":
        return -torch.sigmoid(-x)
    if f == "hinge":
        return -(x <= 1.0).to(x.dtype)
    if f == "squared":
        return 2.0 * (x - 1.0)
    if f == "exponential":
        return -torch.exp(-torch.clamp_min(x, exponential_threshold(x.dtype)))
    if f == "truncated_quadratic":
        return -2.0 * torch.clamp_min(1.0 - x, 0.0)
    if f == "savage":
        s = torch.sigmoid(-x)
        return -2.0 * s * s * torch.sigmoid(x)
    raise ValueError(f"f must be one of {sorted(GPO_FUNCTIONS)}, got {f!r}")


def _gpo(h: Tensor, beta: Any, f: str) -> Tensor:
    return beta * _gpo_prime(beta * h, f)


_DERIVATIVES: dict[Callable[..., Tensor], Callable[..., Tensor]] = {
    dpo_loss: _dpo,
    robust_dpo_loss: _robust_dpo,
    ipo_loss: _ipo,
    slic_loss: _slic,
    gpo_loss: _gpo,
}


def analytic_derivative(loss: PairLoss) -> Callable[[Tensor], Tensor] | None:
    """The closed-form ``h -> loss'(h)`` when ``loss`` is a library loss with keyword arguments."""
    if isinstance(loss, functools.partial) and not loss.args and loss.func in _DERIVATIVES:
        return functools.partial(_DERIVATIVES[loss.func], **loss.keywords)
    return None


def value_and_derivative(loss: PairLoss, margins: Tensor) -> tuple[Tensor, Tensor]:
    """``loss(margins)`` and its elementwise derivative in the margin, both shaped like ``margins``."""
    derivative = analytic_derivative(loss)
    if derivative is not None:
        return loss(margins), derivative(margins)
    with torch.enable_grad():
        h = margins.detach().requires_grad_(True)
        value = loss(h)
        if not isinstance(value, Tensor) or value.shape != h.shape:
            raise ValueError("loss must map a margin tensor to a tensor of the same shape (no reduction)")
        (grad,) = torch.autograd.grad(value.sum(), h)
    return value.detach(), grad
