r"""Divergence: a run whose arithmetic leaves float64 raises, naming the caller's argument to change.

Every exact algorithm iterates logits in float64. Two things can go wrong with a step size or a
strength that is too extreme, and both are *arithmetic* failures, not answers:

- **overflow**: a log-probability, a gradient or the recorded loss becomes ``inf`` or ``NaN``
  (an unstable step size makes the iterates oscillate with growing amplitude; an extreme strength
  makes the loss overflow already at the start, e.g. IPO's target margin ``1 / (2 tau)`` squared);
- **overflow of precision**: the update throws the logits so far that float64 can no longer
  resolve the loss's own variable. The losses see the margins in units of their strength
  (:math:`\beta h` for DPO-family losses, :math:`\tau h` for IPO, :math:`\tau\log(\pi/\mu)` in the
  KL terms), and have all their structure within a few units of 0. On any run that converges, even
  one heading for a vertex (DPO on deterministic preferences: :math:`\beta h` grows like
  :math:`\log t`), the scaled log-ratio :math:`\min(s, 1)\,\max_y|\log\pi_t(y)/\pi_0(y)|` stays
  O(1)..O(100). At :math:`2^{52}` one unit of it is below float64's resolution: the iterate is
  rounding noise around a vertex the arithmetic jumped to. (The ``min(s, 1)``: for a strength
  ``s >= 1`` the bound applies to the log-ratio itself, so that a huge strength, whose margins are
  below rounding anyway, never trips it.)

A *legitimate* vertex is neither: its log-probabilities are very negative but finite, the loss
finite, and the scaled log-ratio modest; it is returned as the answer.

:func:`check_run` is the one check, used by the shared loop (``loop.run``, every algorithm, batched
or not, ``dataset_run`` included) and by the fused widget redraw. It finds the first step and the
batch rows where a run left float64 and raises :class:`DivergenceError` naming the argument the
caller can change, described by a :class:`Blame`: the step size (``lr``, Nash-MD's ``eta``) when an
update overflowed, the strength (``tau`` / ``beta``) when the loss is already non-finite at the
reference policy; and when the step size is a default derived from the strength, the strength the
caller passed, with the derived value (a run given only ``tau`` is never told about an ``lr`` it
did not pass).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "PRECISION_LIMIT",
    "Blame",
    "DivergenceError",
    "Knob",
    "check_run",
    "derived_default",
    "lr_blame",
]

PRECISION_LIMIT = 2.0**52
"""Bound on the scaled log-ratio ``min(strength, 1) * max_y |log(pi_t / pi_0)|`` (see the module doc)."""

# Elements checked per pass: the temporaries stay in cache and a large batch needs little extra memory.
_CHUNK_ELEMENTS = 1 << 18


class DivergenceError(FloatingPointError, ValueError):
    """A run's arithmetic left float64 (inf, NaN, or beyond its precision).

    The message names the step, the batch row and the caller's argument to change.

    It is a ``FloatingPointError`` because that is what happened (Python's class for a failed
    floating-point operation, the one numpy raises under ``errstate(over="raise")``), and a
    ``ValueError`` because the cause is an argument's value (a step size or strength outside the
    range float64 can run), so code that follows the suite's rule "bad input raises ValueError"
    (the widgets show a ValueError's message and keep the last picture) handles it too.

    Attributes
    ----------
    algorithm : str
    step : int
        Index of the first bad iterate (``traj.log_policies[..., step, :]``); 0 means the loss or
        gradient at the start (``pi_0 = mu``, before any update) is already not finite.
    rows : tuple of int
        Every batch row that diverged (the message describes the first, at the earliest step).
    argument : str
        The caller's argument the message asks to change (``"lr"``, ``"eta"``, ``"tau"``, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        algorithm: str = "",
        step: int = -1,
        rows: tuple[int, ...] = (),
        argument: str = "",
    ):
        super().__init__(message)
        self.algorithm, self.step, self.rows, self.argument = algorithm, step, rows, argument


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row(value: Any, i: int) -> float:
    """Entry ``i`` of a number or per-row sequence (a scalar serves every row)."""
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    return float(t[i] if t.numel() > 1 else t[0])


@dataclass(frozen=True)
class Knob:
    """One argument of the caller's, as a divergence message names it.

    ``derived`` describes a default computed from it (``"the default lr = 0.2 tau / (1 + tau)"``)
    with its per-row ``derived_value``; ``advice`` says what to do instead.
    """

    name: str
    """The argument as the caller spelled it (``"lr"``, ``"eta"``, ``"tau"``, ``"beta"``, ``"loss"``)."""
    value: Any = None
    """Its value: a number or a per-row sequence; None for a non-numeric argument."""
    derived: str | Sequence[str] | None = None
    """A default derived from it that the run used, in words with its formula (or one per row, for
    rows that derive different defaults); None if none."""
    derived_value: Any = None
    """That default's value, a number or per-row sequence."""
    advice: str = ""
    """What to change it to (a range, the default)."""
    why: str | None = None
    """What it does wrong, when not the default wording ("is too large a step for this problem")."""

    def describe(self, i: int) -> str:
        """``"name = value"`` for row ``i``, with the derived default when there is one."""
        text = self.name if self.value is None else f"{self.name} = {_row(self.value, i):.6g}"
        if self.derived is not None:
            derived = self.derived if isinstance(self.derived, str) else self.derived[i]
            if re.search(
                rf"\b{re.escape(self.name)}\b", derived
            ):  # "the default lr = 0.2 * tau / (1 + tau)"
                text += f", and {derived} = {_row(self.derived_value, i):.6g} derived from it,"
            else:  # a constant default (offline IPO's lr = 0.2)
                text += f", with {derived},"
        return text


@dataclass(frozen=True)
class Blame:
    """Which caller argument a divergence message names, by cause.

    ``step`` when an update overflowed (the step size, or the strength its default came from);
    ``start`` when the loss or gradient is already non-finite at the reference policy, before any
    update (a strength too extreme for float64; None: blame ``step``). ``scale`` is the loss's
    strength per row for the precision check (None: only inf/NaN are checked, e.g. a custom loss
    whose natural scale is unknown).
    """

    step: Knob
    start: Knob | None = None
    scale: Any = None
    scale_name: str = "strength"
    """The name of ``scale`` in messages (``"tau"``, ``"beta"``)."""


def derived_default(value: Any, *, knob: Knob, algorithm: str, formula: str) -> Any:
    """Check a default derived from the caller's ``knob`` (e.g. ``lr`` from ``tau``).

    Every entry must be a positive finite float64, else a ValueError names the caller's argument
    and the formula.
    """
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    bad = ~(torch.isfinite(t) & (t > 0))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        got = float(t[i])
        what = (
            "overflows float64" if math.isinf(got) or math.isnan(got) else "underflows float64 to 0"
        )
        raise ValueError(
            f"{algorithm}: {knob.describe(i)} gives a default {formula} = {got:.6g}, which {what}; "
            f"{knob.advice or 'pass the step size explicitly'}"
        )
    return value


def check_run(
    log_policies: Tensor,
    losses: Tensor | None,
    blame: Blame,
    *,
    algorithm: str,
    batched: bool,
    action_axis: int = -1,
    start_gradient_ok: Tensor | None = None,
    row_names: Sequence[str] | None = None,
) -> None:
    """Raise :class:`DivergenceError` if any iterate, loss or start gradient left float64.

    Parameters
    ----------
    log_policies : Tensor, (steps + 1, B, K), or (steps + 1, K, B) with ``action_axis=0``
        The iterates as the loop stored them (row 0 the start).
    losses : Tensor (B, steps) or None
        The loss at each iterate before its update.
    blame : Blame
        Which argument to name, and the precision scale.
    algorithm : str
        For the message.
    batched : bool
        Whether the caller passed a batch (the message then names the row).
    action_axis : {-1, 0}
        The layout of ``log_policies``.
    start_gradient_ok : Tensor of bool (B,), optional
        Whether the first gradient (or update) was finite in each row.
    row_names : sequence of str, optional
        Names for the rows (the fused redraw's algorithms) instead of numbers.

    Raises
    ------
    DivergenceError
        At the first bad step, naming the first bad row there, every bad row, and the argument.
    """
    k_axis = 1 if action_axis == 0 else 2
    n_iterates, b = log_policies.shape[0], log_policies.shape[2 if action_axis == 0 else 1]
    scale = None
    if blame.scale is not None:
        scale = (
            torch.as_tensor(blame.scale, dtype=log_policies.dtype)
            .reshape(-1)
            .clamp(max=1.0)
            .expand(b)
        )
        scale = scale[None, :]
    chunk = max(1, _CHUNK_ELEMENTS // max(1, log_policies[0].numel()))
    parts = []
    for lo in range(0, n_iterates, chunk):
        moved = _moved(log_policies[lo : lo + chunk], log_policies[0:1], k_axis)  # (c, B)
        # NaN compares False: "not below the limit" flags inf, NaN and a lost precision at once.
        parts.append(
            ~torch.isfinite(moved) if scale is None else ~(moved * scale < PRECISION_LIMIT)
        )
    bad_iterate = torch.cat(parts)  # (steps + 1, B)
    bad = bad_iterate.clone()
    bad_loss = None
    if losses is not None and losses.numel():
        bad_loss = ~torch.isfinite(losses).T  # (steps, B): the loss at iterate t
        bad[: bad_loss.shape[0]] |= bad_loss
    if start_gradient_ok is not None:
        bad[0] |= ~start_gradient_ok
    if not bool(bad.any()):
        return
    step = int(bad.any(1).nonzero()[0])
    rows = tuple(int(r) for r in bad.any(0).nonzero()[:, 0])
    row = int(bad[step].nonzero()[0])
    if step == 0:  # the start pi_0 = mu is finite: the loss or the first gradient is not
        in_loss = bad_loss is not None and bool(bad_loss[0, row])
        what = f"the {'loss' if in_loss else 'first update'} at the start (pi_0 = mu) is not finite"
        if blame.start is not None:
            knob, change = blame.start, "is too extreme for float64 with this loss"
        else:
            knob, change = blame.step, "overflows float64 in the first update"
    else:
        knob = blame.step
        change = knob.why or "is too large a step for this problem"
        iterate = log_policies[step, :, row] if action_axis == 0 else log_policies[step, row]
        value = float(
            _moved(
                iterate[None, :],
                log_policies[0, :, row][None, :]
                if action_axis == 0
                else log_policies[0, row][None, :],
                1,
            )[0]
        )
        if not math.isfinite(value):
            kind = "NaN" if bool(torch.isnan(iterate).any()) else "inf"
            what = f"the iterate overflowed float64 (a log-probability is {kind})"
        elif not bool(bad_iterate[step, row]):
            assert losses is not None
            what = f"the loss at that iterate is {float(losses[row, step])} (float64 overflowed)"
            if blame.start is not None and blame.start.name != knob.name:
                change += (
                    f" (or {blame.start.describe(row)} is too extreme for float64 with this loss)"
                )
        else:
            s = float(scale[0, row])  # type: ignore[index]
            what = (
                f"the updates moved a log-probability by |log(pi_t / pi_0)| = {value:.3g}, and "
                f"min({blame.scale_name}, 1) x {value:.3g} = {s * value:.3g} >= 2**52: the loss's margin is "
                f"beyond float64's resolution (the steps overflowed its precision)"
            )
    if row_names is not None:
        where = f" in the {row_names[row]} row"
    elif batched:
        where = f" in batch row {row}" + (
            f" (rows {list(rows)} of {b} diverged)" if len(rows) > 1 else ""
        )
    else:
        where = ""
    message = (
        f"{algorithm}: the run diverged at step {step}{where}: {what}. "
        f"Change {knob.name}: {knob.describe(row)} {change}. {knob.advice}"
    ).rstrip()
    raise DivergenceError(message, algorithm=algorithm, step=step, rows=rows, argument=knob.name)


def _moved(log_policies: Tensor, start: Tensor, k_axis: int) -> Tensor:
    """``max_y |log pi_t(y) - log pi_0(y)|`` over the action axis: inf for an infinite entry, NaN for a NaN."""
    return (log_policies - start).abs_().amax(k_axis)


def lr_blame(
    lr: Any,
    default: Callable[[], Any],
    *,
    strength: tuple[str, Any],
    formula: str,
    algorithm: str,
    optimizer: str = "gd",
) -> tuple[Any, Blame]:
    """The step size to run with, and whom a divergence blames.

    ``default()`` computes the default step size from the strength, ``strength = (name as the
    caller spelled it, value)``; ``formula`` writes it in that name (``"0.2 tau / (1 + tau)"``).
    With ``lr=None`` the default is used, checked to be a positive finite float64 (else a
    ValueError names the strength), and a divergence names the strength with the default derived
    from it. With an explicit ``lr`` a divergence names ``lr``, and suggests the default (sized
    for gradient descent; with ``optimizer="adam"`` it says that Adam moves a logit by ~lr a step).
    """
    name, value = strength
    start = Knob(name, value, advice=f"Use a {name} nearer 1.")
    if lr is None:
        lr_value = derived_default(
            default(),
            algorithm=algorithm,
            formula=f"lr = {formula}",
            knob=Knob(name, value, advice=f"pass lr explicitly, or use a {name} nearer 1."),
        )
        step = Knob(
            name,
            value,
            derived=f"the default lr = {formula}",
            derived_value=lr_value,
            advice=f"Use a {name} nearer 1, or pass a smaller lr explicitly.",
        )
        return lr_value, Blame(step, start, value, name)
    d = torch.as_tensor(default(), dtype=torch.float64).reshape(-1)
    hint = " (Adam moves each logit by about lr per step)" if optimizer == "adam" else ""
    if optimizer == "gd" and bool((torch.isfinite(d) & (d > 0)).all()):
        shown = (
            f"{float(d[0]):.3g}"
            if bool((d == d[0]).all())
            else str([float(f"{x:.3g}") for x in d.tolist()])
        )
        if not _is_number(formula):
            shown += f" = {formula}"
        hint = f" (lr=None gives {shown} here, sized to be stable for this algorithm)"
    return lr, Blame(Knob("lr", lr, advice=f"Use a smaller lr{hint}."), start, value, name)
