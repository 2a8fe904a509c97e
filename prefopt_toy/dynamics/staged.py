r"""Runs in stages with a reference that changes between them: sDPO and iterative DPO.

Each stage (round) is an exact offline DPO run (pairs from a fixed distribution, labels from
``P``, ``objective.pair_weights``) from the policy the previous stage ended at; what changes
between stages is the **reference** and, for iterative DPO, where the pairs come from.

- ``sdpo`` (stepwise DPO): stage t uses the previous stage's policy as its reference. If every
  stage reaches its DPO optimum with the same Bradley-Terry fit, after T stages
  :math:`\pi_T \propto \mu\exp(T\hat r/\beta)`: the effective KL strength is beta / T
  (``sdpo_optimum``).
- ``iterative_dpo``: each round draws its pairs from the policy at the round's start; the reference
  is either kept at ``mu`` (``reference="initial"``, RLHFlow's choice), which converges to the
  online-DPO stationary point, or updated to the round's start (``reference="previous"``,
  self-rewarding's and sDPO's choice), which drifts to a vertex. Neither is the Nash equilibrium.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_policy
from prefopt_toy.losses.pairwise import dpo_loss
from prefopt_toy.policies import normalize_log_finite

from .batch import Batch, as_batch, positive, unbatch
from .divergence import lr_blame
from .objective import pair_weights, rows_or_float, run_objective
from .preference import DEFAULT_STEPS, _labels, _strength
from .trajectory import Trajectory

REFERENCES = ("initial", "previous")
"""``iterative_dpo``'s choices of reference: ``mu`` throughout, or each round's starting policy."""


def _dpo_stage(
    batch: Batch,
    log_ref: Tensor,
    start: Tensor,
    s: Tensor,
    labels: Tensor,
    beta: Tensor,
    *,
    steps: int,
    lr: Tensor,
    optimizer: str,
    name: str,
    blame: Any,
) -> Trajectory:
    """One exact offline DPO stage: reference ``log_ref``, start ``start``, pairs from ``s``."""
    W = pair_weights(s, labels)
    beta_t = beta[:, None, None]

    def objective(lp: Tensor, t: int) -> Tensor:
        g = lp - log_ref
        return (W * dpo_loss(g[:, :, None] - g[:, None, :], beta_t)).sum((-1, -2))

    stage = Batch(batch.P, log_ref.exp(), batch.batched)
    return run_objective(
        stage,
        objective,
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        name=name,
        blame=blame,
        record={},
        start=start,
    )


def _stages(batch: Batch, parts: list[Trajectory], name: str, record: dict[str, Any]) -> Trajectory:
    """Concatenate stage trajectories (each stage's first iterate is the previous one's last)."""
    logs = [p.log_policies if batch.batched else p.log_policies[None] for p in parts]
    losses = [p.losses if batch.batched or p.losses is None else p.losses[None] for p in parts]
    log_policies = torch.cat([logs[0]] + [x[:, 1:] for x in logs[1:]], dim=1)
    kept = [x for x in losses if x is not None]
    loss = torch.cat(kept, dim=1) if kept else None
    return Trajectory(
        unbatch(log_policies, batch),
        None if loss is None else unbatch(loss, batch),
        name,
        unbatch(batch.P, batch),
        unbatch(batch.mu, batch),
        {key: (unbatch(v, batch) if isinstance(v, Tensor) else v) for key, v in record.items()},
    )


def _split(steps: int, parts: int) -> list[int]:
    """``steps`` updates over ``parts`` stages, as evenly as possible (the first ones get one more)."""
    return [steps // parts + (1 if t < steps % parts else 0) for t in range(parts)]


def _dpo_lr(b: Any, key: str, lr: Any, name: str, optimizer: str) -> tuple[Any, Any]:
    bt = torch.as_tensor(b, dtype=torch.float64)
    return lr_blame(
        lr,
        lambda: rows_or_float(1.6 / bt**2),
        strength=(key, b),
        formula=f"1.6 / {key}**2",
        algorithm=name,
        optimizer=optimizer,
    )


def sdpo(
    P: Any,
    mu: Any,
    *,
    stages: int = 2,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
) -> Trajectory:
    r"""Stepwise DPO: ``stages`` DPO runs of ``steps`` each, stage t's reference = stage t-1's result.

    Parameters
    ----------
    stages : int >= 1, default 2
        T. One stage is ``dpo``.
    steps : int
        Updates in all, split evenly over the stages (like every ``ALGORITHMS`` entry, the
        trajectory has ``steps`` updates).
    nu : (K,), (B, K), or a list of T of them, optional
        Where each stage's pairs come from (the data split: easy pairs first, hard ones later);
        default ``mu`` for every stage.
    P, mu, beta, tau, labels, lr, optimizer : as ``dpo`` (labels "soft" or "hard").

    Returns
    -------
    Trajectory
        ``hyper["stage_ends"]`` lists the step index where each stage ends. If every stage
        converges it ends at ``traj.target("sdpo_optimum")`` = ``rlhf_optimum(P, mu, beta / T, nu)``
        (one ``nu`` for every stage).

    References
    ----------
    Kim et al., arXiv:2403.19270v2, Sec. 2 (stepwise reference updates).
    """
    T = as_int(stages, "stages", minimum=1)
    steps = as_int(steps, "steps", minimum=0)
    b, key = _strength(beta, tau, "sdpo")
    lr, blame = _dpo_lr(b, key, lr, "sdpo", optimizer)
    per_stage = isinstance(nu, (list, tuple)) and len(nu) > 0 and not isinstance(nu[0], float)
    if per_stage and len(nu) != T:
        raise ValueError(f"nu must be one policy or a list of stages = {T} policies, got {len(nu)}")
    nus = list(nu) if per_stage else [nu] * T
    batch, h = as_batch(P, mu, lr=lr, beta=b)
    positive(h["lr"], "lr")
    label_matrix = _labels(batch, labels, None)()
    k = batch.n_actions
    log_ref = batch.log_mu
    parts = []
    stage_nus = []
    lengths = _split(steps, T)
    for t in range(T):
        s = (
            batch.mu
            if nus[t] is None
            else as_policy(nus[t], f"nu[{t}]" if per_stage else "nu", size=k, batched=True)
            .detach()
            .expand(batch.size, k)
        )
        stage_nus.append(s)
        part = _dpo_stage(
            batch, log_ref, log_ref, s, label_matrix, h["beta"], steps=lengths[t], lr=h["lr"],
            optimizer=optimizer, name="sdpo", blame=blame,
        )  # fmt: skip
        parts.append(part)
        last = part.log_policies[..., -1, :]
        log_ref = normalize_log_finite(last if batch.batched else last[None])
    record: dict[str, Any] = {
        "beta": h["beta"],
        "lr": h["lr"],
        "stages": T,
        "stage_ends": list(itertools.accumulate(lengths)),
        "nu": stage_nus[0] if not per_stage else torch.stack(stage_nus, 1),
        "labels": labels,
        "optimizer": optimizer,
    }
    return _stages(batch, parts, "sdpo", record)


def iterative_dpo(
    P: Any,
    mu: Any,
    *,
    rounds: int = 10,
    steps: int = 5000,
    beta: Any = None,
    tau: Any = None,
    reference: str = "initial",
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
) -> Trajectory:
    r"""Iterative (online, round-based) DPO: each round samples its pairs from the current policy.

    Round t draws pairs from :math:`\pi_t` (the policy at the round's start, fixed during the round),
    labels them from ``P`` and runs ``steps`` exact DPO steps from :math:`\pi_t`, with reference
    ``mu`` (``reference="initial"``) or :math:`\pi_t` (``"previous"``).

    Parameters
    ----------
    rounds : int >= 1, default 10
    steps : int, default 5000
        DPO updates in all, split evenly over the rounds.
    reference : {"initial", "previous"}, default "initial"
    P, mu, beta, tau, labels, lr, optimizer : as ``dpo``.

    Returns
    -------
    Trajectory
        ``hyper["stage_ends"]`` lists where each round ends.

    References
    ----------
    Xiong et al., arXiv:2312.11456v4 (iterative DPO with the initial reference, Algorithm 2);
    Dong et al., arXiv:2405.07863v3 ("RLHF Workflow"); Yuan et al., arXiv:2401.10020v3
    (self-rewarding: the reference updated each round); Calandriello et al., arXiv:2403.08635v1,
    App. F (the online-DPO stationary point).
    """
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    R = as_int(rounds, "rounds", minimum=1)
    steps = as_int(steps, "steps", minimum=0)
    b, key = _strength(beta, tau, "iterative_dpo")
    lr, blame = _dpo_lr(b, key, lr, "iterative_dpo", optimizer)
    batch, h = as_batch(P, mu, lr=lr, beta=b)
    positive(h["lr"], "lr")
    label_matrix = _labels(batch, labels, None)()
    start = batch.log_mu
    parts = []
    lengths = _split(steps, R)
    for r in range(R):
        log_ref = batch.log_mu if reference == "initial" else start
        part = _dpo_stage(
            batch, log_ref, start, start.exp(), label_matrix, h["beta"], steps=lengths[r], lr=h["lr"],
            optimizer=optimizer, name="iterative_dpo", blame=blame,
        )  # fmt: skip
        parts.append(part)
        last = part.log_policies[..., -1, :]
        start = normalize_log_finite(last if batch.batched else last[None])
    record: dict[str, Any] = {
        "beta": h["beta"],
        "lr": h["lr"],
        "rounds": R,
        "reference": reference,
        "stage_ends": list(itertools.accumulate(lengths)),
        "labels": labels,
        "optimizer": optimizer,
    }
    return _stages(batch, parts, "iterative_dpo", record)
