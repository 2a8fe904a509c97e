r"""Losses on unpaired binary feedback: KTO, one example labelled desirable or undesirable.

KTO (Ethayarajh et al.) needs no pairs: each example is a completion ``y`` with a label "desirable"
or "undesirable", and its implied reward :math:`r(y) = \log\pi(y)/\mu(y)` is compared with a
reference point :math:`z_0` through a sigmoid value function,

.. math::
    \ell_D(r) = \lambda_D\,\bigl(1 - \sigma(\beta (r - z_0))\bigr), \qquad
    \ell_U(r) = \lambda_U\,\bigl(1 - \sigma(\beta (z_0 - r))\bigr).

A desirable example pushes its reward **up** (towards and past :math:`z_0`), an undesirable one
pushes it **down**; both saturate, so an example far on the right side of :math:`z_0` stops
contributing. :math:`z_0` is treated as a constant (no gradient), as in the paper and in TRL.

Two reference points are in use, and they are different quantities:

- the paper's, :math:`z_0 = \mathrm{KL}(\pi\,\|\,\mu)`, an expectation under the **policy**;
- TRL's (and HALOs'), the batch mean of :math:`\log\pi(y')/\mu(y')` over *mismatched* completions
  (each completion paired with another example's prompt), detached and clamped at 0
  (``kto_reference_point``). In a one-prompt bandit whose data are drawn from ``D`` its population
  value is :math:`\mathrm{KL}(D\|\mu) - \mathrm{KL}(D\|\pi)`, which is not :math:`\mathrm{KL}(\pi\|\mu)` and
  can be negative before the clamp.

The exact engine (``prefopt_toy.dynamics``) computes either one exactly, and the minibatch
version by enumeration.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from prefopt_toy._validate import as_hyper

from .pairwise import _as_margin, _companion, _in_float32_if_half

__all__ = ["kto_loss", "kto_reference_point"]


def _desirable(x: Any, like: Tensor) -> Tensor:
    """Labels as floats in [0, 1]: a bool tensor, 0/1 values, or probabilities of 'desirable'."""
    if isinstance(x, Tensor) and x.dtype == torch.bool:
        d = x.to(like.dtype)
    elif isinstance(x, bool) or (
        isinstance(x, (list, tuple, np.ndarray)) and np.asarray(x).dtype == np.bool_
    ):
        d = torch.as_tensor(np.asarray(x, dtype=np.float64))
    else:
        d = _as_margin(x, "desirable")
    if bool(((d < 0) | (d > 1)).any()):
        raise ValueError(
            "desirable must lie in [0, 1] (a label, or the probability that the example is "
            "labelled desirable)"
        )
    if d.shape != like.shape and d.numel() != 1:
        raise ValueError(
            f"desirable must have the shape of logratio {tuple(like.shape)}, got {tuple(d.shape)}"
        )
    return d


def kto_loss(
    logratio: Any,
    reference_point: Any,
    desirable: Any,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Tensor:
    r"""Per-example KTO loss of an implied reward against a reference point.

    .. math::
        \ell(r) = d\,\lambda_D\,\sigma\bigl(-\beta(r - z_0)\bigr)
                + (1 - d)\,\lambda_U\,\sigma\bigl(-\beta(z_0 - r)\bigr)

    (``1 - sigma(x) = sigma(-x)``). With ``d = 1`` (desirable) it pushes ``r`` **up**, with
    ``d = 0`` (undesirable) **down**; a ``d`` in (0, 1) is the expected loss of an example labelled
    desirable with probability ``d`` (the exact toy's unpaired data model). The slope in ``r`` is
    bounded by :math:`\beta\max(\lambda_D, \lambda_U)/4`, and it vanishes as ``|r - z0|`` grows:
    the loss saturates.

    Parameters
    ----------
    logratio : Tensor or array-like, shape (...)
        Implied rewards :math:`r = \log\pi(y) - \log\mu(y)` (summed token log-probs on GPT-2).
    reference_point : float or Tensor, shape () or (...)
        :math:`z_0`. Not detached here: pass a constant (``kto_reference_point`` returns one);
        the paper and TRL give it no gradient.
    desirable : bool Tensor, or floats in [0, 1], shape (...) or ()
        The label, or the probability of "desirable".
    beta : float > 0
        KL strength (TRL ``KTOConfig.beta``, default 0.1).
    desirable_weight, undesirable_weight : float > 0, default 1
        :math:`\lambda_D` and :math:`\lambda_U` (TRL's names). The paper recommends
        :math:`\lambda_D n_D / (\lambda_U n_U) \in [1, 4/3]`.

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses (float32 for float16 input).

    Raises
    ------
    ValueError
        If an input is not finite, ``desirable`` is outside [0, 1] or misshapen, or a weight or
        ``beta`` is not > 0.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4 (the KTO loss, its value function and
    :math:`z_0 = \mathrm{KL}(\pi_\theta\|\pi_{ref})`); TRL v1.13.0 ``KTOTrainer.kto_loss``.

    Examples
    --------
    >>> round(float(kto_loss(0.0, 0.0, True, beta=0.1)), 6)  # lambda_D (1 - sigma(0))
    0.5
    """
    r = _as_margin(logratio, "logratio")
    z0 = _as_margin(reference_point, "reference_point")
    d = _desirable(desirable, r)
    b = as_hyper(beta, "beta")
    w_d = as_hyper(desirable_weight, "desirable_weight")
    w_u = as_hyper(undesirable_weight, "undesirable_weight")
    return _in_float32_if_half(_kto_value, r, _companion(z0, r), _companion(d, r), b, w_d, w_u)


def _kto_value(r: Tensor, z0: Any, d: Any, beta: Any, w_d: Any, w_u: Any) -> Tensor:
    x = beta * (r - z0)
    # desirable: lambda_D (1 - sigma(x)) pushes r up; undesirable: lambda_U (1 - sigma(-x)) down
    return d * w_d * torch.sigmoid(-x) + (1.0 - d) * w_u * torch.sigmoid(x)


def kto_reference_point(mismatched_logratios: Any, clamp: bool = True) -> Tensor:
    r"""TRL's KTO reference point: the detached batch mean of mismatched log-ratios, clamped at 0.

    .. math:: z_0 = \max\Bigl(0,\ \tfrac1n \textstyle\sum_i \log\frac{\pi(y'_i\mid x_i)}{\mu(y'_i\mid x_i)}\Bigr)

    where :math:`y'_i` is a completion of *another* example (TRL shifts the completions by one
    within the batch). This estimates :math:`\mathrm{KL}(\pi\|\mu)` only if the completions were
    sampled from :math:`\pi`; with data completions its population value is
    :math:`\mathrm{KL}(D\|\mu) - \mathrm{KL}(D\|\pi)`, and the clamp hides its negative values.

    Parameters
    ----------
    mismatched_logratios : Tensor or array-like, shape (n,), n >= 1
        Policy-minus-reference log-probabilities of the mismatched completions.
    clamp : bool, default True
        Clamp at 0 (TRL, HALOs). ``False`` returns the raw mean.

    Returns
    -------
    Tensor, shape ()
        The detached reference point.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4.1 (the batch estimate of the KL term);
    TRL v1.13.0 ``KTOTrainer`` (``kl_logps``, ``.clamp(min=0)``, detached).

    Examples
    --------
    >>> float(kto_reference_point([-0.3, 0.1]))
    0.0
    """
    t = _as_margin(mismatched_logratios, "mismatched_logratios").detach()
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(
            f"mismatched_logratios must be a non-empty vector, got shape {tuple(t.shape)}"
        )
    z0 = t.mean()
    return z0.clamp_min(0.0) if clamp else z0
