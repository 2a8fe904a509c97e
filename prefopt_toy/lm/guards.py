"""The guard against a non-finite training loss: stop before the bad step reaches weights or checkpoints.

``check_finite`` raises ``NonFiniteLossError`` when a loss (or a gradient norm) holds a NaN or an
infinity, with a message that names the step, the last good checkpoint to resume from and what to
change; calling it before ``backward()`` and before saving keeps the last good checkpoint intact.

References: as :mod:`prefopt_toy.lm.checkpoint`, the module this one was split from.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import Tensor

from prefopt_toy._validate import as_int

__all__ = ["NonFiniteLossError", "check_finite"]


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the message names the step and the checkpoint.

    Attributes
    ----------
    step : int
        The step at which the loss was non-finite.
    value : float
        The offending value (nan, inf or -inf).
    last_good : Path or None
        The last checkpoint written before it, to resume from.

    References
    ----------
    DESIGN.md "Reliability rules" (stop with a clear message, keep the last good checkpoint).
    """

    def __init__(self, message: str, *, step: int, value: float, last_good: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.value = value
        self.last_good = last_good


def check_finite(
    loss: Tensor | float, *, step: int, last_good: str | os.PathLike[str] | None, name: str = "loss"
) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` holds a NaN or an infinity; otherwise do nothing.

    Call it on the loss before ``backward()`` / ``optimizer.step()`` and before saving, so that a
    bad step never reaches the weights or a checkpoint, and the last good checkpoint stays intact.

    Parameters
    ----------
    loss : Tensor or float
        The loss (any shape; all entries are checked). On a GPU this synchronises.
    step : int, >= 0
        The current step, for the message.
    last_good : path or None
        The last checkpoint written (e.g. ``latest_checkpoint(run_dir)``); None if there is none.
    name : str
        What is checked, for the message (``"loss"``, ``"grad norm"``...).

    Raises
    ------
    NonFiniteLossError
        With the step, the value, the checkpoint to resume from and what to change.
    ValueError
        If ``loss`` is not a number or tensor, or ``step`` is not an integer >= 0.

    References
    ----------
    DESIGN.md "Reliability rules"; Rafailov et al., arXiv:2305.18290v3 (DPO) and Azar et al.,
    arXiv:2310.12036v2 (IPO) for the beta / tau the message suggests changing.

    Examples
    --------
    >>> check_finite(0.69, step=3, last_good=None)
    >>> check_finite(float("nan"), step=17, last_good=None)
    Traceback (most recent call last):
    ...
    prefopt_toy.lm.guards.NonFiniteLossError: loss became nan at step 17; ...
    """
    step = as_int(step, "step", minimum=0)
    if isinstance(loss, Tensor):
        values = loss.detach().reshape(-1)
        if values.is_complex():
            raise ValueError("loss must be real, got a complex tensor")
        bad = ~torch.isfinite(values)
        if not bool(bad.any()):
            return
        value = float(values[bad][0].item())
    elif isinstance(loss, (int, float)) and not isinstance(loss, bool):
        value = float(loss)
        if math.isfinite(value):
            return
    else:
        raise ValueError(f"loss must be a tensor or a number, got {type(loss).__name__}")  # noqa: TRY004
    if last_good is None:
        where = "there is no checkpoint yet, so the run must restart from the beginning"
        resume = "restart"
    else:
        where = f"the last good checkpoint is {str(Path(last_good))!r}"
        resume = "resume from it with load_checkpoint"
    message = (
        f"{name} became {value} at step {step}; {where}. The run was stopped before this step "
        f"reached the weights or a checkpoint. To continue, {resume} and lower the learning rate, "
        "clip gradients, raise beta/tau, or train in float32 instead of bfloat16."
    )
    raise NonFiniteLossError(
        message, step=step, value=value, last_good=None if last_good is None else Path(last_good)
    )
