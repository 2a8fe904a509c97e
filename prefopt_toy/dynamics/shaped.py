r"""DPO with a shaped margin, exactly: R-DPO (lengths) and DPOP (the chosen likelihood).

Offline: pairs from ``nu`` (default ``mu``), labels from ``P``, the population loss an exact sum
over ordered pairs of different actions (``objective.pair_weights``), its gradient by autograd.

- ``rdpo`` converges to ``rdpo_optimum``: :math:`\mu\exp((\hat r - \alpha L)/\beta)`, the RLHF
  optimum of the length-penalised reward.
- ``dpop`` has no closed form. Outside the sigmoid, on a game where DPO lets a chosen action fall
  (the middle of a total order), the penalty holds it at its reference probability; inside, the
  penalty saturates with the sigmoid, so the population loss can still fall to 0 along a path on
  which the chosen action falls too (slowly). The notebook shows both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy.losses.shaped import DPOP_PLACEMENTS, dpop_loss, rdpo_loss

from .divergence import lr_blame
from .lengths import as_lengths
from .objective import offline_pairs, rows_or_float, run_objective
from .preference import DEFAULT_STEPS, _strength
from .trajectory import Trajectory


def rdpo(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    alpha: Any = 0.0,
    lengths: Any = None,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Offline R-DPO: DPO with the length term :math:`\alpha(L(y_w) - L(y_l))` in the sigmoid.

    Converges to ``rdpo_optimum(P, mu, beta, alpha, lengths, nu)``,
    :math:`\mu\exp((\hat r - \alpha L)/\beta)/Z` with :math:`\hat r` = ``bt_fit(P, nu)``. With
    ``alpha = 0`` it is ``dpo`` step for step (the default step size is DPO's, ``1.6 / beta**2``).

    Parameters
    ----------
    P, mu : the game (K, K) and the reference (K,), or batches.
    beta : KL strength (``tau`` is accepted as its alias), number or length-B sequence.
    alpha : float >= 0, default 0
        Length weight (Park et al.'s alpha), number or length-B sequence.
    lengths : (K,) or (B, K), default all 1
        Length of each action.
    nu, labels, lr, optimizer, seed : as ``dpo``.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3 (R-DPO); Rafailov et al., arXiv:2305.18290v3, Eq. (7).
    """
    b, key = _strength(beta, tau, "rdpo")
    lr, blame = lr_blame(
        lr,
        lambda: rows_or_float(1.6 / (torch.as_tensor(b, dtype=torch.float64) ** 2)),
        strength=(key, b),
        formula=f"1.6 / {key}**2",
        algorithm="rdpo",
        optimizer=optimizer,
    )
    batch, h, weights = offline_pairs(
        P, mu, nu=nu, labels=labels, seed=seed, lr=lr, beta=b, alpha=alpha
    )
    if bool((h["alpha"] < 0).any()):
        raise ValueError("alpha must be >= 0 (the weight of the length penalty)")
    L = as_lengths(lengths, batch)
    beta_t, alpha_t = h["beta"][:, None, None], h["alpha"][:, None, None]
    log_mu = batch.log_mu

    def objective(lp: Tensor, t: int) -> Tensor:
        g = lp - log_mu
        H = g[:, :, None] - g[:, None, :]
        ell = rdpo_loss(H, beta_t, alpha_t, L[:, :, None].expand_as(H), L[:, None, :].expand_as(H))
        return (weights() * ell).sum((-1, -2))

    record = {**h, "lengths": L, "labels": labels}
    return run_objective(
        batch,
        objective,
        steps=steps,
        lr=h["lr"],
        optimizer=optimizer,
        name="rdpo",
        blame=blame,
        record=record,
    )


def dpop(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    lam: Any = 50.0,
    placement: str = "inside",
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Offline DPOP (DPO-Positive): DPO plus a penalty once a chosen action falls below its reference.

    The per-pair loss is ``dpop_loss(h, log pi(y_w) - log mu(y_w), beta, lam, placement)``.
    The penalty's subgradient has a kink at :math:`\pi(y_w) = \mu(y_w)`: a constant step hovers
    within about one step of it rather than converging to a point.

    Default step ``0.4 / (beta**2 (1 + lam)**2 / 4 + beta lam / 2)`` inside the sigmoid and
    ``0.4 / (beta**2 / 4 + lam / 2)`` outside (the curvature of the margin term plus the
    penalty's, whose slope in the logits is at most ``beta lam`` or ``lam``).

    Parameters
    ----------
    lam : float >= 0, default 50
        Penalty weight (the paper's lambda = 50).
    placement : {"inside", "outside"}, default "inside"
        Where the penalty sits (``dpop_loss``).
    P, mu, beta, tau, nu, labels, lr, optimizer, seed : as ``dpo``.

    References
    ----------
    Pal et al., arXiv:2402.13228v3, Sec. 3 (DPOP).
    """
    if placement not in DPOP_PLACEMENTS:
        raise ValueError(f"placement must be one of {DPOP_PLACEMENTS}, got {placement!r}")
    b, key = _strength(beta, tau, "dpop")
    bt = torch.as_tensor(b, dtype=torch.float64)
    lam_t = torch.as_tensor(lam, dtype=torch.float64)
    if placement == "inside":
        formula = f"0.4 / ({key}**2 (1 + lam)**2 / 4 + {key} lam / 2)"

        def default() -> Any:
            return rows_or_float(0.4 / (bt**2 * (1 + lam_t) ** 2 / 4 + bt * lam_t / 2))
    else:
        formula = f"0.4 / ({key}**2 / 4 + lam / 2)"

        def default() -> Any:
            return rows_or_float(0.4 / (bt**2 / 4 + lam_t / 2))

    lr, blame = lr_blame(
        lr, default, strength=(key, b), formula=formula, algorithm="dpop", optimizer=optimizer
    )
    batch, h, weights = offline_pairs(
        P, mu, nu=nu, labels=labels, seed=seed, lr=lr, beta=b, lam=lam
    )
    if bool((h["lam"] < 0).any()):
        raise ValueError("lam must be >= 0 (the weight of the DPOP penalty)")
    beta_t, lam_b = h["beta"][:, None, None], h["lam"][:, None, None]
    log_mu = batch.log_mu

    def objective(lp: Tensor, t: int) -> Tensor:
        g = lp - log_mu
        H = g[:, :, None] - g[:, None, :]
        chosen = g[:, :, None].expand_as(H)  # the row action is the winner
        ell = dpop_loss(H, chosen, beta_t, lam_b, placement)
        return (weights() * ell).sum((-1, -2))

    record = {**h, "placement": placement, "labels": labels}
    return run_objective(
        batch,
        objective,
        steps=steps,
        lr=h["lr"],
        optimizer=optimizer,
        name="dpop",
        blame=blame,
        record=record,
    )
