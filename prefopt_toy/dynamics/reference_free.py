r"""Reference-free methods, exactly: SimPO (lengths) and ORPO (odds ratio plus SFT).

``mu`` is only where the run starts (the SFT policy) and, by default, where pairs come from; no
loss term pulls the policy back to it. Offline: pairs from ``nu`` (default ``mu``), labels from
``P``, the exact population loss over ordered pairs of different actions, autograd gradients.

- ``simpo``: with equal lengths L and gamma = 0 it is DPO with a *uniform* reference at strength
  beta / L, and converges to ``rlhf_optimum(P, uniform, beta / L, nu)``; longer actions are
  pushed down (their log-prob is divided by more); gamma > 0 inflates every margin.
- ``orpo``: the NLL of the chosen action keeps every action that is ever chosen away from 0;
  never-chosen actions go to 0; as lam -> 0 it tends to SFT on how often each action is chosen.
  Pairs of two identical actions are not in a data set and are dropped here, so that limit is
  :math:`\pi(y) \propto \nu(y)\bigl((P\nu)_y - \nu(y)/2\bigr)`; with ties counted (the sympy
  derivation ``orpo_limit``) it is :math:`\nu(y)(P\nu)_y`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_tensor
from prefopt_toy.losses.reference_free import orpo_loss, simpo_loss

from .divergence import lr_blame
from .lengths import as_lengths
from .objective import offline_pairs, rows_or_float, run_objective
from .preference import DEFAULT_STEPS, _strength
from .trajectory import Trajectory


def simpo(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    gamma: Any = None,
    gamma_beta_ratio: Any = None,
    lengths: Any = None,
    label_smoothing: float = 0.0,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Offline SimPO from :math:`\pi_0 = \mu`: ``simpo_loss(log pi(y_w)/L(y_w), log pi(y_l)/L(y_l))``.

    Default step ``0.4 / (beta**2 / Lmin**2 + beta / (2 Lmin))``: the logistic curvature of the
    scaled gap plus the curvature of :math:`\log\pi / L` (at most ``1 / (2 L)`` in the logits).

    Parameters
    ----------
    beta : reward scale (``tau`` accepted as its alias; SimPO has no KL term).
    gamma, gamma_beta_ratio : the target margin, absolute (paper, TRL's ``simpo_gamma``) or as
        gamma / beta (official code); at most one, default 0. Numbers or length-B sequences.
    lengths : (K,) or (B, K), default all 1.
    label_smoothing : float in [0, 0.5).
    P, mu, nu, labels, lr, optimizer, seed : as ``dpo``.

    References
    ----------
    Meng et al., arXiv:2405.14734v3, Eq. (6).
    """
    b, key = _strength(beta, tau, "simpo")
    if gamma is not None and gamma_beta_ratio is not None:
        raise ValueError("give gamma or gamma_beta_ratio, not both")
    bt = torch.as_tensor(b, dtype=torch.float64)
    lengths_min = 1.0
    if lengths is not None:
        lengths_min = float(as_tensor(lengths, "lengths").min())
        if not lengths_min > 0:
            raise ValueError("lengths must be finite and > 0 (a length per action)")
    formula = f"0.4 / ({key}**2 / Lmin**2 + {key} / (2 Lmin)), Lmin = {lengths_min:g}"
    lr, blame = lr_blame(
        lr,
        lambda: rows_or_float(0.4 / (bt**2 / lengths_min**2 + bt / (2 * lengths_min))),
        strength=(key, b),
        formula=formula,
        algorithm="simpo",
        optimizer=optimizer,
    )
    ratio = gamma_beta_ratio is not None
    batch, h, weights = offline_pairs(
        P,
        mu,
        nu=nu,
        labels=labels,
        seed=seed,
        lr=lr,
        beta=b,
        gamma=gamma_beta_ratio if ratio else (0.0 if gamma is None else gamma),
    )
    L = as_lengths(lengths, batch)
    beta_t, gamma_t = h["beta"][:, None, None], h["gamma"][:, None, None]
    margin = {"gamma_beta_ratio": gamma_t} if ratio else {"gamma": gamma_t}

    def objective(lp: Tensor, t: int) -> Tensor:
        a = lp / L
        w, lo = a[:, :, None].expand(-1, -1, a.shape[-1]), a[:, None, :].expand(-1, a.shape[-1], -1)
        ell = simpo_loss(w, lo, beta_t, label_smoothing=label_smoothing, **margin)
        return (weights() * ell).sum((-1, -2))

    record = {**h, "lengths": L, "labels": labels, "label_smoothing": label_smoothing}
    if ratio:
        record["gamma_beta_ratio"] = record.pop("gamma")
    return run_objective(
        batch,
        objective,
        steps=steps,
        lr=h["lr"],
        optimizer=optimizer,
        name="simpo",
        blame=blame,
        record=record,
    )


def log1m_softmax(lp: Tensor) -> Tensor:
    r""":math:`\log(1 - \pi_y)` for every action, from log-probabilities (B, K), exactly.

    :math:`1 - \pi_y = \sum_{j \ne y}\pi_j`, so it is a logsumexp of the *other* log-probabilities:
    no cancellation where :math:`\pi_y` is near 1 (where ``1 - exp(log pi)`` would round to 0).
    """
    k = lp.shape[-1]
    off = torch.where(torch.eye(k, dtype=torch.bool), float("-inf"), 0.0).to(lp.dtype)
    return (lp[..., None, :] + off).logsumexp(-1)


def orpo(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    lam: Any = 0.1,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Offline ORPO from :math:`\pi_0 = \mu`: the chosen action's NLL plus lam times the odds-ratio loss.

    On the bandit :math:`p(y) = \pi(y)` and :math:`\log\mathrm{odds}(y) = \log\pi(y) - \log(1-\pi(y))`,
    the second term a logsumexp of the other actions (``log1m_softmax``). Default step
    ``0.4 / (1/2 + 2 lam)`` (the NLL's curvature in the logits is at most 1/2, the odds term's 2).

    Parameters
    ----------
    lam : float > 0, default 0.1
        The odds-ratio weight (TRL's ``ORPOConfig.beta``, default 0.1). Number or length-B sequence.
    P, mu, nu, labels, lr, optimizer, seed : as ``dpo``.

    References
    ----------
    Hong et al., arXiv:2403.07691v2, Eq. (6)-(7).
    """
    lam_t = torch.as_tensor(lam, dtype=torch.float64)
    lr, blame = lr_blame(
        lr,
        lambda: rows_or_float(0.4 / (0.5 + 2.0 * lam_t)),
        strength=("lam", lam),
        formula="0.4 / (1/2 + 2 lam)",
        algorithm="orpo",
        optimizer=optimizer,
    )
    batch, h, weights = offline_pairs(P, mu, nu=nu, labels=labels, seed=seed, lr=lr, lam=lam)
    if bool((h["lam"] <= 0).any()):
        raise ValueError("lam must be > 0 (the weight of the odds-ratio term)")
    lam_b = h["lam"][:, None, None]
    k = batch.n_actions

    def objective(lp: Tensor, t: int) -> Tensor:
        if k == 1:  # one action: no pair of different actions, nothing to learn
            return 0.0 * lp.sum(-1)
        l1m = log1m_softmax(lp)
        w, lo = lp[:, :, None].expand(-1, -1, k), lp[:, None, :].expand(-1, k, -1)
        ell = orpo_loss(
            w,
            lo,
            lam_b,
            log1mp_chosen=l1m[:, :, None].expand(-1, -1, k),
            log1mp_rejected=l1m[:, None, :].expand(-1, k, -1),
        )
        return (weights() * ell).sum((-1, -2))

    return run_objective(
        batch,
        objective,
        steps=steps,
        lr=h["lr"],
        optimizer=optimizer,
        name="orpo",
        blame=blame,
        record={**h, "labels": labels},
    )
