"""The one shared loop: iterate a batched update on logits and record every iterate.

Every algorithm of the suite is a ``step(log_pi, t) -> (loss, direction)`` rule plus an optimiser;
this loop owns the bookkeeping (recording, non-finite checks), so algorithms stay pure functions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..policies import normalize_log
from .optimizers import Optimizer

StepFn = Callable[[Tensor, int], tuple[Tensor | None, Tensor]]


def run(theta0: Tensor, step: StepFn, optimizer: Optimizer, steps: int) -> tuple[Tensor, Tensor | None]:
    """Run ``steps`` updates from logits ``theta0`` (B, K).

    ``step(log_pi, t)`` returns the expected loss (B,) (or None) and the gradient (B, K) at the
    current iterate; ``optimizer`` turns it into new logits. Returns the log-policies
    (B, steps + 1, K) and the losses (B, steps) (or None).

    Raises ``RuntimeError`` if an iterate becomes non-finite (a learning rate too large for the
    problem), naming the step.
    """
    b, k = theta0.shape
    log_policies = torch.empty(b, steps + 1, k, dtype=theta0.dtype)
    losses: Tensor | None = None
    theta = theta0
    log_pi = normalize_log(theta)
    log_policies[:, 0] = log_pi
    state = optimizer.init(theta)
    for t in range(steps):
        value, grad = step(log_pi, t)
        if value is not None:
            if losses is None:
                losses = torch.empty(b, steps, dtype=theta0.dtype)
            losses[:, t] = value
        theta, state = optimizer.update(theta, grad, state, t)
        # Keep the logits normalised (theta = log pi): they cannot drift, and a mirror step that
        # mixes theta with log mu (Nash-MD) reads them as log-probabilities.
        theta = log_pi = normalize_log(theta)
        log_policies[:, t + 1] = log_pi
    _check_not_nan(log_policies)
    return log_policies, losses


def _check_not_nan(log_policies: Tensor) -> None:
    bad = torch.isnan(log_policies).any(-1).any(0)  # (steps + 1,)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise RuntimeError(f"the iterates became NaN at step {first}: lower the learning rate (lr)")
