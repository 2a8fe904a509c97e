r"""All the core algorithms on one game in one vectorised loop: the widget redraw.

A widget that shows every algorithm's trajectory recomputes them all whenever a slider moves. Run
one by one, each costs ~35 small torch operations per step; :func:`redraw` runs them as the rows of
a single batch instead, so a step costs about as much as one algorithm's. Every row is an existing
algorithm expressed through the shared building blocks, with that algorithm's default
hyperparameters:

- preference losses (``dpo``, ``ipo``, ``slic``, ``online_dpo``, ``online_ipo``, ``ipo_md``): the
  exact expected gradient ``pairs.expected_loss_and_gradient``, pairs from
  :math:`\mathrm{normalise}(a\log\pi + b\log\nu)` per row, each row's loss kernel selected by a mask;
- ``nash_md_pg`` and ``rlhf``: the natural policy gradient ``nash_md.policy_gradient_direction``
  (payoff :math:`P s`, or the fitted BT reward);
- ``nash_md``: the same natural step with the schedule's step :math:`\eta_t = 2/(\tau(t+2))` and
  mixture :math:`\eta_t\tau`, which is exactly the closed-form mirror step (Munos et al.,
  arXiv:2312.00886v4, Eq. (9)): :math:`\theta - \eta(\tau\log(\pi/\mu) - P\pi^\mu) + c`.

``tests/test_dynamics_fused.py`` checks that every row equals the registry's own call.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from .._validate import as_int, as_policy, as_positive_float, as_preference_matrix, as_unit_interval
from ..bt import bt_fit
from ..losses import dpo_loss, ipo_loss, slic_loss
from .derivatives import prepare
from .loop import run
from .nash_md import _pg_lr, policy_gradient_direction
from .optimizers import Assign
from .pairs import expected_loss_and_gradient, mixture_log_weights
from .preference import _beta2, _default_lr, _hinge_lr
from .trajectory import Trajectory

CORE = ("dpo", "ipo", "slic", "online_dpo", "online_ipo", "ipo_md", "nash_md", "nash_md_pg", "rlhf")
"""The algorithms :func:`redraw` runs (the registry without the GPO variants)."""

# name -> (sampler, loss); sampler "fixed" = pairs from mu, "online", "mixture" (IPO-MD),
# "schedule" (Nash-MD's decaying mixture), "self" (Nash-MD-PG's mixture), None (RLHF).
_ROWS: dict[str, tuple[str | None, Any]] = {
    "dpo": ("fixed", dpo_loss),
    "ipo": ("fixed", ipo_loss),
    "slic": ("fixed", slic_loss),
    "online_dpo": ("online", dpo_loss),
    "online_ipo": ("online", ipo_loss),
    "ipo_md": ("mixture", ipo_loss),
    "nash_md": ("schedule", None),
    "nash_md_pg": ("self", None),
    "rlhf": (None, None),
}


def _lr(name: str, tau: float) -> float:
    """Each algorithm's own default step size (the functions its registry entry uses)."""
    if name in ("dpo", "online_dpo"):
        return float(_default_lr(_beta2(tau) / 4, tau, name == "online_dpo"))
    if name in ("ipo", "online_ipo", "ipo_md"):
        return float(_default_lr(2.0, tau, name != "ipo"))
    if name == "slic":
        return float(_hinge_lr(tau))
    return float(_pg_lr(torch.tensor(tau, dtype=torch.float64), "natural"))  # nash_md_pg, rlhf


def redraw(P: Any, mu: Any, *, tau: Any = 0.1, steps: int = 1000, mixture: Any = 0.125,
           names: tuple[str, ...] = CORE) -> dict[str, Trajectory]:
    r"""Run the ``names`` algorithms on one game together; returns ``{name: Trajectory}``.

    Each trajectory equals ``ALGORITHMS[name](P, mu, steps=steps, tau=tau)`` (with
    ``mixture=mixture`` for ``ipo_md``) up to round-off: same defaults (learning rates, soft labels,
    pairs from ``mu``, natural policy gradients, Nash-MD's decaying schedule).

    Raises
    ------
    ValueError
        Malformed ``P`` / ``mu``, ``tau <= 0``, ``mixture`` outside [0, 1], an unknown name.

    References
    ----------
    As for each algorithm (``ALGORITHMS``); Nash-MD's step is Munos et al., arXiv:2312.00886v4,
    Eq. (9), written as a natural-gradient step with :math:`\eta_t = 2/(\tau(t+2))`.
    """
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    mu_t = as_policy(mu, "mu", size=k, positive=True)
    tau_f = as_positive_float(tau, "tau")
    m_md = as_unit_interval(mixture, "mixture")
    steps = as_int(steps, "steps", minimum=0)
    unknown = [n for n in names if n not in _ROWS]
    if unknown or not names:
        raise ValueError(f"names must be a non-empty subset of {CORE}, got unknown {unknown}")
    b = len(names)
    f64 = dict(dtype=torch.float64)
    log_mu = mu_t.log().expand(b, k).clone()
    # Every row's pairs (or opponent) come from the mixture pi^(1-m) mu^m: m = 1 is "pairs from mu",
    # m = 0 "online" / self-play; Nash-MD's m = eta_t tau changes every step.
    weight_mu = torch.zeros(b, 1, **f64)
    lr = torch.empty(b, 1, **f64)
    for i, name in enumerate(names):
        weight_mu[i] = {"fixed": 1.0, "mixture": m_md}.get(_ROWS[name][0], 0.0)  # type: ignore[arg-type]
        lr[i] = _lr(name, tau_f)
    schedule = torch.tensor([_ROWS[n][0] == "schedule" for n in names])[:, None]  # (B, 1)
    pair_rows = torch.tensor([_ROWS[n][1] is not None for n in names])[:, None]
    reward_rows = torch.tensor([n == "rlhf" for n in names])[:, None]
    reward = bt_fit(P_t, mu_t).expand(b, k) if "rlhf" in names else torch.zeros(b, k, **f64)
    strength = torch.full((b, 1), tau_f, **f64)
    P_b, labels = P_t.expand(b, k, k), P_t.expand(b, k, k)
    value_and_slope = _mixed_kernels(names, tau_f, b, k)

    # Per-step coefficients, precomputed: Nash-MD's mixture weight eta_t tau = 2 / (t + 2) and its
    # step eta_t; the other rows keep theirs.
    m_all = 2.0 / (torch.arange(max(steps, 1), **f64) + 2.0)[:, None, None]  # (T, 1, 1)
    weight_mu_t = torch.where(schedule, m_all, weight_mu)  # (T, B, 1)
    step_size_t = torch.where(schedule, m_all / tau_f, lr)

    def step(log_pi: Tensor, t: int) -> tuple[Tensor, Tensor]:
        log_s = mixture_log_weights(log_pi, log_mu, weight_mu_t[t])
        pair_value, pair_grad = expected_loss_and_gradient(log_pi, log_mu, log_s, labels,
                                                           value_and_slope=value_and_slope)
        payoff = torch.where(reward_rows, reward, (P_b @ log_s.exp()[:, :, None])[:, :, 0])
        pg_value, pg_direction = policy_gradient_direction(log_pi, log_mu, payoff, strength, "natural")
        direction = torch.where(pair_rows, pair_grad, pg_direction)
        loss = torch.where(pair_rows[:, 0], pair_value, pg_value)
        return loss, log_pi - step_size_t[t] * direction

    log_policies, losses = run(log_mu.clone(), step, Assign(), steps)
    return {name: _trajectory(name, i, log_policies, losses, P_t, mu_t, tau_f, m_md, float(lr[i]), reward)
            for i, name in enumerate(names)}


def _mixed_kernels(names: tuple[str, ...], tau: float, b: int, k: int) -> Any:
    """One ``H -> (value, slope)`` for the batch: each loss's kernel, masked to its rows."""
    groups = []
    for loss in (dpo_loss, ipo_loss, slic_loss):
        rows = torch.tensor([_ROWS[n][1] is loss for n in names], dtype=torch.float64)[:, None, None]
        if bool(rows.any()):
            keyword = "tau" if loss is ipo_loss else "beta"
            groups.append((rows, prepare(functools.partial(loss, **{keyword: tau}), torch.zeros(b, k, k,
                                                                                              dtype=torch.float64))))

    def value_and_slope(H: Tensor) -> tuple[Tensor, Tensor]:
        value, slope = None, None
        for rows, kernel in groups:
            v, s = kernel(H)
            value = rows * v if value is None else value + rows * v
            slope = rows * s if slope is None else slope + rows * s
        if value is None:  # no preference-loss row: the pair part is unused
            return torch.zeros_like(H), torch.zeros_like(H)
        return value, slope

    return value_and_slope


def _trajectory(name: str, i: int, log_policies: Tensor, losses: Tensor | None, P: Tensor, mu: Tensor,
                tau: float, mixture: float, lr: float, reward: Tensor) -> Trajectory:
    """Row ``i`` as the Trajectory its registry call would return (targets need the same hyper)."""
    hyper: dict[str, Any] = {"tau": tau}
    if name in ("dpo", "slic", "online_dpo", "rlhf"):
        hyper = {"beta": tau}
    if _ROWS[name][0] == "fixed" or name == "rlhf":
        hyper["nu"] = mu
    if name == "ipo_md":
        hyper["mixture"] = mixture
    if name == "nash_md_pg":
        hyper["mixture"] = 0.0
    if name == "rlhf":
        hyper["reward"] = reward[i]
    if name != "nash_md":
        hyper["lr"] = lr
    row_losses = None if (losses is None or name == "nash_md") else losses[i]
    return Trajectory(log_policies[i], row_losses, name, P, mu, hyper)
