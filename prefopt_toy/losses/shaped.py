r"""DPO with a shaped margin: R-DPO (a length term) and DPOP (a penalty on the chosen likelihood).

Both keep DPO's log-ratio margin :math:`h` (``prefopt_toy.margin``) and add one term:

- **R-DPO** adds :math:`\alpha(|y_w| - |y_l|)` inside the sigmoid: DPO for the length-penalised
  reward :math:`r - \alpha|y|`, so a longer chosen response needs a smaller margin;
- **DPOP** subtracts :math:`\lambda\max(0, \log\mu(y_w) - \log\pi(y_w))`, active only once the chosen
  response's probability has fallen below the reference's. Where the penalty sits is contested:
  the authors' corrected paper puts it **inside** the sigmoid (scaled by beta, saturating); many
  ports put it **outside** (neither scaled nor saturating). ``dpop_loss`` takes both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_hyper

from .pairwise import _as_margin, _companion, _in_float32_if_half, _neg_logsigmoid

__all__ = ["DPOP_PLACEMENTS", "dpop_loss", "rdpo_loss"]

DPOP_PLACEMENTS = ("inside", "outside")
"""Where ``dpop_loss`` puts the penalty: in the sigmoid's argument (paper v3) or added to the loss."""


def _lengths(x: Any, name: str, like: Tensor) -> Tensor:
    t = _as_margin(x, name)
    if bool((t <= 0).any()):
        raise ValueError(f"{name} must be > 0 (a length in tokens)")
    if t.numel() != 1 and t.shape != like.shape:
        raise ValueError(
            f"{name} must be a number or have the margin's shape {tuple(like.shape)}, got {tuple(t.shape)}"
        )
    return t


def rdpo_loss(
    margin: Any, beta: float, alpha: float, length_chosen: Any, length_rejected: Any
) -> Tensor:
    r"""Per-pair R-DPO loss: DPO with a length term in the sigmoid.

    .. math:: \ell = -\log\sigma\bigl(\beta h + \alpha(|y_w| - |y_l|)\bigr)

    It pushes the margin **up** like DPO; a chosen response longer than the rejected one starts
    with a head start :math:`\alpha(|y_w| - |y_l|)`, so the learned implicit reward
    :math:`\beta\log\pi/\mu` is the label's reward *minus* :math:`\alpha|y|`. Its population optimum
    on a bandit is :math:`\pi \propto \mu\exp((\hat r - \alpha L)/\beta)`, with :math:`\hat r` the
    Bradley-Terry fit of the labels.

    Parameters
    ----------
    margin : Tensor or array-like, shape (...)
        Log-ratio margin h (summed token log-probs).
    beta : float > 0
        KL strength.
    alpha : float >= 0
        Length weight; 0 gives ``dpo_loss``.
    length_chosen, length_rejected : number or Tensor of the margin's shape, > 0
        :math:`|y_w|` and :math:`|y_l|` in tokens (per action L(y) on the bandit).

    Returns
    -------
    Tensor, shape (...)

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3 (the length-regularised DPO objective).

    Examples
    --------
    >>> round(float(rdpo_loss(0.0, beta=0.1, alpha=0.5, length_chosen=3, length_rejected=1)), 6)
    0.313262
    """
    h = _as_margin(margin)
    b = as_hyper(beta, "beta")
    a = as_hyper(alpha, "alpha", positive=False)
    dl = _lengths(length_chosen, "length_chosen", h) - _lengths(
        length_rejected, "length_rejected", h
    )
    return _in_float32_if_half(_rdpo_value, h, b, a, _companion(dl, h))


def _rdpo_value(h: Tensor, beta: Any, alpha: Any, dl: Any) -> Tensor:
    return _neg_logsigmoid(beta * h + alpha * dl)


def dpop_loss(
    margin: Any, chosen_logratio: Any, beta: float, lam: float, placement: str = "inside"
) -> Tensor:
    r"""Per-pair DPOP (DPO-Positive) loss, the penalty inside or outside the sigmoid.

    .. math::
        \text{inside:}\ \ -\log\sigma\bigl(\beta\,(h - \lambda\,p)\bigr), \qquad
        \text{outside:}\ \ -\log\sigma(\beta h) + \lambda\,p, \qquad
        p = \max\bigl(0,\ \log\mu(y_w) - \log\pi(y_w)\bigr)

    The penalty :math:`p` is zero while the chosen response keeps at least its reference
    probability and grows as it falls below: it pushes :math:`\log\pi(y_w)` **up** towards
    :math:`\log\mu(y_w)`. Outside the sigmoid its slope is :math:`\lambda` whatever the margin, so
    once the DPO term has saturated a chosen action is held at the kink :math:`\pi(y_w)=\mu(y_w)`;
    inside, the slope is :math:`\beta\lambda\sigma(-\beta(h-\lambda p))`, which saturates with the
    rest of the loss.

    Parameters
    ----------
    margin : Tensor or array-like, shape (...)
        Log-ratio margin h.
    chosen_logratio : Tensor or array-like, shape (...)
        :math:`\log\pi(y_w) - \log\mu(y_w)`.
    beta : float > 0
        KL strength.
    lam : float >= 0
        Penalty weight :math:`\lambda` (50 in the paper, results insensitive in [5, 500]).
    placement : {"inside", "outside"}, default "inside"
        "inside": the authors' corrected paper (v3); "outside": the form of many ports.

    Returns
    -------
    Tensor, shape (...)

    References
    ----------
    Pal et al., arXiv:2402.13228v3, Sec. 3 (the DPOP loss, penalty in the sigmoid, lambda = 50).

    Examples
    --------
    >>> round(float(dpop_loss(0.0, -1.0, beta=1.0, lam=1.0, placement="outside")), 6)
    1.693147
    """
    if placement not in DPOP_PLACEMENTS:
        raise ValueError(f"placement must be one of {DPOP_PLACEMENTS}, got {placement!r}")
    h = _as_margin(margin)
    c = _as_margin(chosen_logratio, "chosen_logratio")
    if c.shape != h.shape:
        raise ValueError(
            f"chosen_logratio must have the margin's shape {tuple(h.shape)}, got {tuple(c.shape)}"
        )
    b = as_hyper(beta, "beta")
    lam_v = as_hyper(lam, "lam", positive=False)
    kernel = _dpop_inside if placement == "inside" else _dpop_outside
    return _in_float32_if_half(kernel, h, _companion(c, h), b, lam_v)


def _penalty(c: Tensor) -> Tensor:
    # max(0, log mu(y_w) - log pi(y_w)), active only once pi(y_w) < mu(y_w): at the kink itself the
    # slope is 0 (where the subgradient set [-lam, 0] holds 0), so pi = mu can be stationary
    return torch.where(c < 0, -c, torch.zeros_like(c))


def _dpop_inside(h: Tensor, c: Tensor, beta: Any, lam: Any) -> Tensor:
    return _neg_logsigmoid(beta * (h - lam * _penalty(c)))


def _dpop_outside(h: Tensor, c: Tensor, beta: Any, lam: Any) -> Tensor:
    return _neg_logsigmoid(beta * h) + lam * _penalty(c)
