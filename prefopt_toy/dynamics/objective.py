r"""Exact dynamics of any population objective, differentiated by autograd.

The DPO/IPO/SLiC engine (``pairs``) differentiates by hand because those losses depend on the
logits only through the margin. The rest of the family does not: SimPO divides each log-prob by a
length, ORPO takes log-odds, DPOP penalises the chosen log-prob, KTO scores single actions against
a reference point. Their population objectives are still finite sums over actions or ordered
pairs, so the exact gradient is autograd of that sum, one backward pass per step.

``pair_weights`` is the distribution of a compared (winner, loser) pair: both drawn from ``s``
(held fixed), the winner chosen by the label model; pairs of identical actions carry no preference
and are dropped (weight 0). For a loss of the margin alone that changes the loss by a constant and
the gradient not at all, so ``rdpo(alpha=0)`` follows ``dpo`` step for step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_generator

from .batch import Batch, as_batch, positive, unbatch
from .divergence import Blame
from .loop import run
from .optimizers import make_optimizer
from .preference import _labels
from .trajectory import Trajectory

Objective = Callable[[Tensor, int], Tensor]
"""``objective(log_pi, t) -> (B,)``: the expected loss at log-policy ``log_pi`` (B, K), with grad."""


def rows_or_float(value: Tensor) -> Any:
    """A default step size: a float for one run, the (B,) tensor for per-row values."""
    return value if value.ndim else float(value)


def stack_series(values: list[Tensor], batch: Batch) -> Tensor:
    """A per-step record (one (B,) tensor a step) as (B, steps), or (steps,) for an unbatched call."""
    series = torch.stack(values, -1) if values else torch.empty(batch.size, 0, dtype=torch.float64)
    return unbatch(series, batch)


def pair_weights(s: Tensor, labels: Tensor) -> Tensor:
    r"""``W[b, w, l] = 2 s_w s_l L[w, l]`` off the diagonal, 0 on it: the (winner, loser) distribution.

    ``s`` (B, K) is the pair distribution, ``labels`` (B, K, K) the probability that the row action
    is labelled the winner (``L + L^T = 1``). ``W`` sums to :math:`1 - \sum_y s_y^2`, the chance of
    drawing two different actions (Azar et al., arXiv:2310.12036v2, Eq. (10), without the ties).
    """
    W = 2.0 * s[:, :, None] * s[:, None, :] * labels
    return W * (1.0 - torch.eye(s.shape[-1], dtype=s.dtype))


def autograd_step(objective: Objective) -> Callable[[Tensor, int], tuple[Tensor, Tensor]]:
    """A ``loop.run`` step: the objective at the current iterate and its gradient in the logits."""

    def step(log_pi: Tensor, t: int) -> tuple[Tensor, Tensor]:
        # A row that has left float64 (a diverged run) is evaluated at the uniform policy and its
        # outputs set to NaN: the loop's divergence check then names the step and the argument,
        # instead of a loss function refusing a NaN margin mid-run.
        bad = ~torch.isfinite(log_pi).all(-1)
        x = torch.where(bad[:, None], 0.0, log_pi.detach()) if bool(bad.any()) else log_pi.detach()
        with torch.enable_grad():
            theta = x.requires_grad_(True)
            lp = theta - theta.logsumexp(-1, keepdim=True)
            value = objective(lp, t)
            (grad,) = torch.autograd.grad(value.sum(), theta)
        if bool(bad.any()):
            value = torch.where(bad, float("nan"), value)
            grad = torch.where(bad[:, None], float("nan"), grad)
        return value.detach(), grad

    return step


def run_objective(
    batch: Batch,
    objective: Objective,
    *,
    steps: int,
    lr: Tensor,
    optimizer: str,
    name: str,
    blame: Blame,
    record: dict[str, Any],
    start: Tensor | None = None,
) -> Trajectory:
    """Run ``objective`` from ``start`` (default ``mu``) through the shared loop; a :class:`Trajectory`.

    ``record`` holds the hyperparameters as (B,) / (B, K) tensors or plain values; tensors are
    unbatched with the run.
    """
    theta0 = (batch.log_mu if start is None else start).clone()
    log_policies, losses = run(
        theta0,
        autograd_step(objective),
        make_optimizer(optimizer, lr),
        steps,
        blame=blame,
        algorithm=name,
        batched=batch.batched,
    )
    hyper = {
        key: (unbatch(v, batch) if isinstance(v, Tensor) and v.ndim >= 1 else v)
        for key, v in record.items()
    }
    hyper["optimizer"] = optimizer
    return Trajectory(
        unbatch(log_policies, batch),
        None if losses is None else unbatch(losses, batch),
        name,
        unbatch(batch.P, batch),
        unbatch(batch.mu, batch),
        hyper,
    )


def offline_pairs(
    P: Any,
    mu: Any,
    *,
    nu: Any,
    labels: Any,
    seed: Any,
    lr: Any,
    policies: dict[str, Any] | None = None,
    **hyper: Any,
) -> tuple[Batch, dict[str, Tensor], Callable[[], Tensor]]:
    """Validate a pair-based run: the batch, its hyperparameters (B,) and the per-step weights ``W``.

    Pairs come from ``nu`` (default ``mu``), labels from ``labels`` ("soft", "hard" or a number of
    sampled labels per pair and step, with ``seed``). ``hyper`` values are numbers or length-B
    sequences; ``policies`` extra (K,) / (B, K) probability vectors.
    """
    batch, h = as_batch(P, mu, policies={"nu": nu, **(policies or {})}, lr=lr, **hyper)
    positive(h["lr"], "lr")
    nu_t = batch.mu if h["nu"] is None else h["nu"]
    h["nu"] = nu_t
    label_fn = _labels(batch, labels, None if seed is None else as_generator(seed))

    def weights() -> Tensor:
        return pair_weights(nu_t, label_fn())

    return batch, h, weights
