r"""Value and margin-derivative of a per-pair loss, for the exact engine's hot loop.

The engine needs :math:`\ell(h)` and :math:`\ell'(h)` on the (B, K, K) matrix of all pair margins at
every step. A library loss given as ``functools.partial(dpo_loss, beta=0.1)`` (and the like) is
validated once, by :func:`prepare`, and then evaluated through its unchecked kernels
(``losses.pairwise._dpo_value`` / ``_dpo_slope``, ...), which hold the formulas themselves: no
second copy of any loss lives here. Any other callable falls back to autograd on the margins.
``tests/dynamics/test_engine.py`` checks every slope kernel against autograd of the public loss.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from prefopt_toy.losses import gpo
from prefopt_toy.losses import pairwise as losses

PairLoss = Callable[[Tensor], Tensor]
ValueAndSlope = Callable[[Tensor], tuple[Tensor, Tensor]]

_KERNELS: dict[Callable[..., Tensor], tuple[Callable[..., Tensor], Callable[..., Tensor]]] = {
    losses.dpo_loss: (losses._dpo_value, losses._dpo_slope),
    losses.robust_dpo_loss: (losses._robust_dpo_value, losses._robust_dpo_slope),
    losses.ipo_loss: (losses._ipo_value, losses._ipo_slope),
    losses.slic_loss: (losses._slic_value, losses._slic_slope),
    gpo.gpo_loss: (gpo._gpo_value, gpo._gpo_slope),
}


def _kernels(loss: PairLoss) -> tuple[Callable[..., Tensor], Callable[..., Tensor], dict] | None:
    """The (value, slope) kernels and keywords of a library loss given as a keyword partial."""
    if isinstance(loss, functools.partial) and not loss.args and loss.func in _KERNELS:
        return (*_KERNELS[loss.func], loss.keywords)
    return None


def prepare(loss: PairLoss, probe: Tensor) -> ValueAndSlope:
    """Validate ``loss`` once on ``probe`` margins and return ``H -> (loss(H), loss'(H))``.

    For a library loss with keyword hyperparameters the returned function calls its kernels
    directly; otherwise it uses autograd on the margins.
    """
    _check_elementwise(loss(probe), probe)  # validates the hyperparameters (ValueError naming them)
    kernels = _kernels(loss)
    if kernels is None:
        return functools.partial(_autograd_value_and_slope, loss)
    value_kernel, slope_kernel, kw = kernels
    return lambda H: (value_kernel(H, **kw), slope_kernel(H, **kw))


def _check_elementwise(value: object, margins: Tensor) -> None:
    if not isinstance(value, Tensor) or value.shape != margins.shape:
        raise ValueError(
            "loss must map a margin tensor to a tensor of the same shape (no reduction)"
        )


def _autograd_value_and_slope(loss: PairLoss, margins: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        h = margins.detach().requires_grad_(True)
        value = loss(h)
        _check_elementwise(value, h)
        (slope,) = torch.autograd.grad(value.sum(), h)
    return value.detach(), slope


def value_and_derivative(loss: PairLoss, margins: Tensor) -> tuple[Tensor, Tensor]:
    """``loss(margins)`` and its elementwise derivative in the margin (validates on each call)."""
    kernels = _kernels(loss)
    if kernels is None:
        return _autograd_value_and_slope(loss, margins)
    value = loss(margins)  # the public loss: validated, computed once
    _check_elementwise(value, margins)
    return value, kernels[1](margins, **kernels[2])
