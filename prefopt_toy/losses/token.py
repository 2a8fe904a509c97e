r"""TDPO: DPO with the sequential KL at every token (Zeng et al., arXiv:2404.11999v5), one per-pair kernel.

For a response y with states :math:`s_t = (x, y_{<t})`,

.. math::
    u = \log\frac{\pi(y_w)}{\mu(y_w)} - \log\frac{\pi(y_l)}{\mu(y_l)}, \qquad
    \mathrm{SeqKL}(y) = \sum_t KL\bigl(\mu(\cdot \mid s_t) \,\|\, \pi(\cdot \mid s_t)\bigr)

(``margin`` is u, the DPO margin; the KL is reference first). The exact token-tree engine
(``prefopt_toy.dynamics.token_tree``) and the GPT-2 trainers call the same kernel. Dtypes and
stability follow ``prefopt_toy.losses.pairwise``: tensors keep their dtype, half precision is
computed in float32 (float16 in gives float32 out), ``-log sigma`` is a softplus.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from prefopt_toy._validate import as_hyper

from .pairwise import _HALF, _as_margin, _loss_dtype, _neg_logsigmoid

__all__ = ["TDPO_VARIANTS", "tdpo_loss"]

TDPO_VARIANTS = ("tdpo1", "tdpo2")


def tdpo_loss(
    margin: Any,
    seqkl_chosen: Any,
    seqkl_rejected: Any,
    beta: Any,
    alpha: Any = 0.5,
    variant: Literal["tdpo1", "tdpo2"] = "tdpo2",
) -> Tensor:
    r"""Per-pair TDPO1 / TDPO2 loss of the margin and the two sequential KLs.

    .. math::
        \ell_{1} &= -\log\sigma\Bigl(\beta\bigl[u - (\mathrm{SeqKL}(y_l) - \mathrm{SeqKL}(y_w))\bigr]\Bigr)

        \ell_{2} &= -\log\sigma\Bigl(\beta\bigl[u - \alpha\,(\mathrm{SeqKL}(y_l)
                    - \mathrm{sg}[\mathrm{SeqKL}(y_w)])\bigr]\Bigr)

    ``sg`` is the stop-gradient (``.detach()``): TDPO2's value is :math:`\ell_2`, but no gradient
    flows through the chosen response's KL, so TDPO2's update is *not* the gradient of one scalar
    function of the policy. Directions: both push the margin u **up** (as DPO) and the rejected
    response's sequential KL **down**; TDPO1 also pushes the chosen response's KL **up** (the price
    of the symmetric form), which TDPO2's stop-gradient removes.

    Parameters
    ----------
    margin : Tensor or array-like, shape (...)
        u, the chosen-minus-rejected log-ratio difference (``prefopt_toy.losses.margin``; summed
        over completion tokens).
    seqkl_chosen, seqkl_rejected : Tensor or array-like, shape (...)
        Sequential KLs :math:`\sum_t KL(\mu(\cdot|s_t) \| \pi(\cdot|s_t))` of the chosen and the
        rejected response (sums over completion positions, EOS included), same shape as ``margin``.
    beta : float > 0 (or a tensor of them broadcastable to the margins)
        KL strength beta (0.1 in the official config).
    alpha : float >= 0, default 0.5
        Weight of the KL difference in TDPO2 (the official default). Ignored by TDPO1, whose weight
        is 1.
    variant : {"tdpo1", "tdpo2"}, default "tdpo2"
        The official ``tdpo_loss`` defaults to TDPO2 (``if_tdpo2=True``); its ``config/loss/tdpo.yaml``
        sets ``if_tdpo2: false``. Chosen explicitly, one name each.

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses; the common dtype of the inputs (float32 for float16 inputs).

    Raises
    ------
    ValueError
        If an input is not finite, the shapes differ (no broadcasting), ``beta <= 0``,
        ``alpha < 0`` or ``variant`` is not one of ``TDPO_VARIANTS``.

    Notes
    -----
    Where the two sequential KLs are equal, TDPO1 is DPO: :math:`\ell_1 = -\log\sigma(\beta u)`
    (on a tree of depth 1 this holds for every policy, since every response has the one position
    at the root). TDPO2 is not, even there: the gradient through :math:`\mathrm{SeqKL}(y_l)` remains.

    References
    ----------
    Zeng et al., "Token-level Direct Preference Optimization", arXiv:2404.11999v5 (ICML 2024),
    Sec. 4 (TDPO1 and TDPO2 objectives; equation numbers not pinned); official code
    Vance0124/Token-level-Direct-Preference-Optimization @ 2a736ec, ``trainers.py::tdpo_loss``
    (``logits = chosen_rejected_logps_margin - alpha * (rejected_position_kl -
    chosen_position_kl.detach())``, ``losses = -F.logsigmoid(beta * logits)``).

    Examples
    --------
    >>> round(float(tdpo_loss(1.0, 0.2, 0.6, beta=0.1, variant="tdpo1")), 6)
    0.663597
    """
    if variant not in TDPO_VARIANTS:
        raise ValueError(f"variant must be one of {TDPO_VARIANTS}, got {variant!r}")
    h = _as_margin(margin)
    kl_w = _as_margin(seqkl_chosen, "seqkl_chosen")
    kl_l = _as_margin(seqkl_rejected, "seqkl_rejected")
    for name, t in (("seqkl_chosen", kl_w), ("seqkl_rejected", kl_l)):
        if t.shape != h.shape:
            raise ValueError(
                f"{name} must have the shape of margin {tuple(h.shape)}, got {tuple(t.shape)}"
            )
    b = as_hyper(beta, "beta")
    a = as_hyper(alpha, "alpha", positive=False)
    common = torch.promote_types(torch.promote_types(h.dtype, kl_w.dtype), kl_l.dtype)
    if common in _HALF:  # computed in float32, rounded once (float16 -> float32, see pairwise)
        value = tdpo_kernel(h.float(), kl_w.float(), kl_l.float(), b, a, variant)
        return value.to(_loss_dtype(common))
    return tdpo_kernel(h.to(common), kl_w.to(common), kl_l.to(common), b, a, variant)


def tdpo_kernel(
    h: Tensor, kl_w: Tensor, kl_l: Tensor, beta: Any, alpha: Any, variant: str
) -> Tensor:
    """``tdpo_loss`` without validation (the exact engine validates once, then calls it every step)."""
    if variant == "tdpo1":
        z = h - (kl_l - kl_w)  # official: logits = margin - (rejected_kl - chosen_kl)
    else:
        # sg[SeqKL(y_w)]: the value counts, the gradient does not (official .detach())
        z = h - alpha * (kl_l - kl_w.detach())
    return _neg_logsigmoid(beta * z)  # -log sigma(beta z): pushes z up
