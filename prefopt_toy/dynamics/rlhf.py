r"""RLHF: fit a Bradley-Terry reward on pairs from ``nu``, then maximise it under a KL penalty.

Stage 1 is ``bt_fit(P, nu)`` (the population reward-model fit). Stage 2 maximises
:math:`J(\pi) = E_\pi[\hat r] - \beta KL(\pi\|\mu)`, either in closed form
(:math:`\mu e^{\hat r/\beta}/Z`; Azar et al., arXiv:2310.12036v2, Eq. (3) and App. A.1) or by exact
policy-gradient ascent on the logits, whose gradient is :math:`\pi\odot(A - E_\pi A)` with
:math:`A = \hat r - \beta\log(\pi/\mu)` (the softmax score :math:`e_y - \pi` applied to :math:`J`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int
from prefopt_toy.policies import normalize_log_finite
from prefopt_toy.solutions.bt import bt_fit

from .batch import as_batch, positive, unbatch
from .divergence import Blame, Knob, check_run
from .loop import run
from .mirror_descent import _gradient_kind, _pg_blame, policy_gradient_direction
from .optimizers import GradientDescent
from .preference import DEFAULT_STEPS, _strength
from .trajectory import Trajectory


def rlhf(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    nu: Any = None,
    method: str = "policy_gradient",
    gradient: str = "natural",
    lr: Any = None,
) -> Trajectory:
    r"""Two-stage RLHF with exact quantities; converges to ``rlhf_optimum(P, mu, beta, nu)``.

    Parameters
    ----------
    P, mu
        Game(s) and reference policy (batched like every algorithm).
    steps : int
        Policy-gradient steps (with ``method="closed_form"`` every iterate after the first is the
        optimum itself).
    beta : float or sequence, > 0
        KL strength; ``tau`` is accepted as an alias.
    nu : array-like, optional
        Distribution of the pairs the reward model is fitted on; default ``mu`` (pairs sampled from
        the reference, as in offline DPO, so ``rlhf`` and ``dpo`` share their optimum by default).
    method : {"policy_gradient", "closed_form"}
    gradient : {"natural", "vanilla"}
        With ``method="policy_gradient"``: ascend the centred advantage (natural gradient, the
        default: every action converges at rate ``1 - lr beta``) or the exact vanilla gradient
        :math:`\pi\odot(A - E_\pi A)` (slow where the optimum has tiny probabilities).
    lr : float, optional
        Step size of the ascent (default ``beta / (beta + 1/2)^2``, four times that for vanilla).

    Returns
    -------
    Trajectory
        ``losses`` holds ``-J(pi_t)``; ``hyper["reward"]`` the fitted BT reward.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (1)-(3); Rafailov et al., arXiv:2305.18290v3, Eq. (3)-(4).
    """
    steps = as_int(steps, "steps", minimum=0)
    b_value, b_name = _strength(beta, tau, "rlhf")
    batch, hyper = as_batch(P, mu, policies={"nu": nu}, beta=b_value, lr=lr)
    beta_t = positive(hyper["beta"], "beta")[:, None]
    nu_b = batch.mu if nu is None else hyper["nu"]
    reward = torch.stack([bt_fit(batch.P[i], nu_b[i]) for i in range(batch.size)])  # (B, K)
    log_mu = batch.log_mu
    if method == "closed_form":
        # gibbs_policy in log space (mu > 0 here): log(mu exp(r / beta) / Z) stays finite where the
        # probability underflows to 0 (a small beta puts the optimum at a vertex); exact elsewhere.
        optimum = normalize_log_finite(log_mu + (reward - reward.amax(-1, keepdim=True)) / beta_t)
        log_policies = torch.cat([log_mu[:, None], optimum[:, None].expand(-1, steps, -1)], dim=1)
        losses: Tensor | None = None
        lr_t = None
        # The shared check: a subnormal beta overflows r / beta itself.
        check_run(
            log_policies.transpose(0, 1),
            None,
            Blame(
                Knob(
                    b_name,
                    b_value,
                    advice=f"Use a {b_name} nearer 1.",
                    why=f"overflows the closed form mu exp(r / {b_name})",
                ),
                None,
                b_value,
                b_name,
            ),
            algorithm="rlhf (closed form)",
            batched=batch.batched,
        )
    elif method == "policy_gradient":
        kind = _gradient_kind(gradient)
        lr_t, blame = _pg_blame(hyper["lr"], hyper["beta"], b_name, b_value, kind, "rlhf")

        def step(log_pi: Tensor, t: int) -> tuple[Tensor, Tensor]:
            return policy_gradient_direction(log_pi, log_mu, reward, beta_t, kind)

        log_policies, losses = run(
            log_mu.clone(),
            step,
            GradientDescent(lr_t),
            steps,
            blame=blame,
            algorithm="rlhf",
            batched=batch.batched,
        )
    else:
        raise ValueError(f"method must be 'policy_gradient' or 'closed_form', got {method!r}")
    record: dict[str, Any] = {
        "beta": unbatch(hyper["beta"], batch),
        "method": method,
        "gradient": gradient,
        "reward": unbatch(reward, batch),
    }
    if lr_t is not None:
        record["lr"] = unbatch(lr_t, batch)
    record["nu"] = unbatch(nu_b, batch)
    return Trajectory(
        unbatch(log_policies, batch),
        None if losses is None else unbatch(losses, batch),
        "rlhf",
        unbatch(batch.P, batch),
        unbatch(batch.mu, batch),
        record,
    )
