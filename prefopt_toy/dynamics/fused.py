r"""All the core algorithms on one game in one vectorised loop: the widget redraw.

A widget that shows every algorithm's trajectory recomputes them all whenever a slider moves. Run
one by one, each costs ~35 small torch operations per step; :func:`redraw` runs them as the rows of
a single batch instead, so a step costs about as much as one algorithm's. Every row is an existing
algorithm expressed through the shared building blocks, with that algorithm's default
hyperparameters:

- preference losses (``dpo``, ``ipo``, ``slic``, ``online_dpo``, ``online_ipo``, ``ipo_md``): the
  exact expected gradient ``pairs.expected_loss_and_gradient``, pairs from
  :math:`\mathrm{normalise}(a\log\pi + b\log\nu)` per row, each row's loss kernel selected by a mask;
- ``nash_md_pg`` and ``rlhf``: the natural policy gradient
  ``mirror_descent.policy_gradient_direction`` (payoff :math:`P s`, or the fitted BT reward);
- ``nash_md``: the same natural step with the schedule's step :math:`\eta_t = 2/(\tau(t+2))` and
  mixture :math:`\eta_t\tau`, which is exactly the closed-form mirror step (Munos et al.,
  arXiv:2312.00886v4, Eq. (9)): :math:`\theta - \eta(\tau\log(\pi/\mu) - P\pi^\mu) + c`.

``tests/dynamics/test_fused.py`` checks that every row equals the registry's own call.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import (
    as_int,
    as_policy,
    as_positive_float,
    as_preference_matrix,
    as_unit_interval,
)
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, slic_loss
from prefopt_toy.solutions.bt import bt_fit

from .derivatives import _kernels, prepare
from .divergence import Blame, Knob, check_run, derived_default
from .mirror_descent import _pg_lr, _pg_lr_formula, centred_advantage
from .pairs import expected_loss_and_gradient, mixture_log_weights
from .preference import hinge_default, smooth_default, squared_default
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


def _lr(name: str, tau: float) -> tuple[float, str]:
    """Each algorithm's own default step size and its formula.

    The step size comes from the functions its registry entry uses and is checked to be a positive
    finite float64 (else a ValueError naming ``tau``).
    """
    if name in ("dpo", "online_dpo"):
        default, formula = smooth_default(tau, "tau", 0.25, name == "online_dpo")
    elif name in ("ipo", "online_ipo", "ipo_md"):
        default, formula = squared_default(tau, name != "ipo")
    elif name == "slic":
        default, formula = hinge_default(tau, "tau")
    elif name == "nash_md":  # the schedule's first step; later steps are smaller
        default, formula = (lambda: 1.0 / tau), "eta_0 = 1 / tau"
    else:  # nash_md_pg, rlhf
        default = lambda: _pg_lr(torch.tensor(tau, dtype=torch.float64), "natural")  # noqa: E731
        formula = _pg_lr_formula("tau", "natural")
    knob = Knob("tau", tau, advice="use a tau nearer 1.")
    value = derived_default(
        default(),
        knob=knob,
        algorithm=f"redraw ({name} row)",
        formula=formula if name == "nash_md" else f"lr = {formula}",
    )
    return float(value), formula


def redraw(
    P: Any,
    mu: Any,
    *,
    tau: Any = 0.1,
    steps: int = 1000,
    mixture: Any = 0.125,
    names: tuple[str, ...] = CORE,
) -> dict[str, Trajectory]:
    r"""Run the ``names`` algorithms on one game together; returns ``{name: Trajectory}``.

    Each trajectory equals ``ALGORITHMS[name](P, mu, steps=steps, tau=tau)`` (with
    ``mixture=mixture`` for ``ipo_md``) up to round-off: same defaults (learning rates, soft labels,
    pairs from ``mu``, natural policy gradients, Nash-MD's decaying schedule).

    Raises
    ------
    ValueError
        Malformed ``P`` / ``mu``, ``tau <= 0``, ``mixture`` outside [0, 1], an unknown name, a
        ``tau`` whose default step sizes are not positive finite float64 numbers.
    DivergenceError
        (a ValueError and a FloatingPointError) if a row leaves float64; names the row and ``tau``.

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
    # Rows sorted by kind so that each kind acts on one contiguous slice of the batch: the pair
    # losses grouped by kernel, then the policy-gradient rows (payoff P s first, reward last).
    rows = [n for n in _ORDER if n in names]
    b, n_pair = len(rows), sum(_ROWS[n][1] is not None for n in rows)
    n_payoff = sum(n in ("nash_md", "nash_md_pg") for n in rows)
    f64 = dict(dtype=torch.float64)
    log_mu = mu_t.log().expand(b, k)
    defaults = [_lr(n, tau_f) for n in rows]
    lr = torch.tensor([[value] for value, _ in defaults], **f64)  # (B, 1); Nash-MD's row: eta_0
    # A divergence names tau (redraw takes no step size), with the default each row derives from it.
    blame = Blame(
        Knob(
            "tau",
            tau_f,
            derived=[
                ("Nash-MD's first step " if n == "nash_md" else "the default lr = ") + formula
                for n, (_, formula) in zip(rows, defaults)
            ],
            derived_value=lr[:, 0],
            advice="Use a tau nearer 1.",
        ),
        Knob("tau", tau_f, advice="Use a tau nearer 1."),
        tau_f,
        "tau",
    )
    reward = bt_fit(P_t, mu_t) if "rlhf" in rows else None

    # Every row's pairs (or opponent) come from the mixture pi^(1-m) mu^m: m = 1 is "pairs from mu",
    # m = 0 "online" / self-play; Nash-MD's m = eta_t tau = 2 / (t + 2) and step eta_t change every
    # step. Precomputed per step as (B, 1) columns.
    weight_mu = torch.tensor(
        [[{"fixed": 1.0, "mixture": m_md}.get(_ROWS[n][0], 0.0)] for n in rows], **f64
    )
    schedule = torch.tensor([[_ROWS[n][0] == "schedule"] for n in rows])
    m_all = 2.0 / (torch.arange(max(steps, 1), **f64) + 2.0)[:, None, None]  # (T, 1, 1)
    weight_mu_t = torch.where(schedule, m_all, weight_mu).unbind(0)
    step_size_t = torch.where(schedule, m_all / tau_f, lr).unbind(0)

    slopes = [
        (slice(i, i + len(group)), _slope_kernel(loss, tau_f)) for i, group, loss in _groups(rows)
    ]
    # Inference mode: no autograd bookkeeping per call (~20% of a call's cost here); the loop's
    # inference tensors stay inside, the stored iterates are copied out as ordinary tensors.
    with torch.inference_mode():
        log_policies = _iterate(
            log_mu,
            weight_mu_t,
            step_size_t,
            slopes,
            2.0 * P_t,
            P_t.T.contiguous(),
            reward,
            tau_f,
            n_pair,
            n_payoff,
            steps,
        )
    log_policies = log_policies.transpose(
        0, 1
    ).contiguous()  # (B, steps + 1, K), outside inference mode
    losses = _losses(rows, log_policies[:, :steps], log_mu[0], P_t, tau_f, m_md, reward)
    # The check of every run (``loop.run``): iterates and losses (rows without one: a finite stand-in).
    stacked = torch.stack([torch.zeros(steps, **f64) if x is None else x for x in losses])
    check_run(
        log_policies.transpose(0, 1),
        stacked,
        blame,
        algorithm="redraw",
        batched=True,
        row_names=rows,
    )
    out = {}
    for name in names:
        i = rows.index(name)
        out[name] = _trajectory(
            name, log_policies[i], losses[i], P_t, mu_t, tau_f, m_md, float(lr[i]), reward
        )
    return out


def _iterate(
    log_mu: Tensor,
    weight_mu_t: tuple[Tensor, ...],
    step_size_t: tuple[Tensor, ...],
    slopes: list,
    labels2: Tensor,
    P_T: Tensor,
    reward: Tensor | None,
    strength: float,
    n_pair: int,
    n_payoff: int,
    steps: int,
) -> Tensor:
    """The fused loop: log-policies (steps + 1, B, K).

    ``labels2 = 2 P`` (W = 2 s s^T P weighs the (winner, loser) pairs under soft labels).

    One step is ~40 torch calls on tiny tensors whatever the batch, so every call counts (the widget
    budget is 100 ms for 1000 steps): the mixture needs no max-shift (both terms are log-probabilities:
    every entry is <= 0 and the largest >= log(1/K) + min log mu), nor does the renormalisation (the
    logits move by lr * direction from a log-policy), and the natural policy gradient's baseline
    E_pi A is dropped because the renormalisation removes a constant per row.
    """
    b, k = log_mu.shape
    log_policies = torch.empty(steps + 1, b, k, dtype=log_mu.dtype)
    log_pi = log_policies[0] = log_mu
    reward_row = None if reward is None else reward[None, :]
    for t in range(steps):
        log_ratio = log_pi - log_mu
        s = torch.lerp(log_pi, log_mu, weight_mu_t[t]).exp()
        s = s / s.sum(-1, keepdim=True)
        direction = []
        if n_pair:
            sp, d = s[:n_pair], log_ratio[:n_pair]
            W = sp[:, :, None] * sp[:, None, :] * labels2
            H = d[:, :, None] - d[:, None, :]
            G = W * torch.cat([kernel(H[rows_]) for rows_, kernel in slopes])
            direction.append(G.sum(-1) - G.sum(-2))  # dh(y, y')/dtheta = e_y - e_y'
        if b > n_pair:
            payoff = [s[n_pair : n_pair + n_payoff] @ P_T] if n_payoff else []
            if reward_row is not None:
                payoff.append(reward_row)
            direction.append(strength * log_ratio[n_pair:] - torch.cat(payoff))
        theta = torch.addcmul(log_pi, step_size_t[t], torch.cat(direction), value=-1.0)
        log_pi = torch.sub(theta, theta.exp().sum(-1, keepdim=True).log(), out=log_policies[t + 1])
    return log_policies


_ORDER = (
    "dpo",
    "online_dpo",
    "ipo",
    "online_ipo",
    "ipo_md",
    "slic",
    "nash_md",
    "nash_md_pg",
    "rlhf",
)


def _groups(rows: list[str]) -> list[tuple[int, list[str], Any]]:
    """The pair rows as (first row, names, loss) runs of one loss each, in ``rows`` order."""
    out: list[tuple[int, list[str], Any]] = []
    for i, name in enumerate(rows):
        loss = _ROWS[name][1]
        if loss is None:
            break
        if out and out[-1][2] is loss:
            out[-1][1].append(name)
        else:
            out.append((i, [name], loss))
    return out


def _bound(loss: Any, tau: float) -> Any:
    return functools.partial(loss, **{"tau" if loss is ipo_loss else "beta": tau})


def _slope_kernel(loss: Any, tau: float) -> Any:
    """``H -> loss'(H)``: the loss library's own slope kernel (validated once by ``prepare``)."""
    bound = _bound(loss, tau)
    prepare(bound, torch.zeros(1, 2, 2, dtype=torch.float64))
    _, slope, kw = _kernels(bound)
    return lambda H: slope(H, **kw)


def _losses(
    rows: list[str],
    log_pi: Tensor,
    log_mu: Tensor,
    P: Tensor,
    tau: float,
    mixture: float,
    reward: Tensor | None,
) -> list[Tensor | None]:
    """Each row's loss at every iterate, from the stored policies (B, T, K) in one vectorised pass.

    The pair rows' expected loss (``pairs.expected_loss_and_gradient``), the policy-gradient rows'
    negated objective (``mirror_descent.centred_advantage``); Nash-MD has none.
    """
    b, t, k = log_pi.shape
    out: list[Tensor | None] = [None] * b
    if t == 0:
        return out  # no step taken: no loss recorded, as in ``loop.run``
    for first, group, loss in _groups(rows):
        flat = log_pi[first : first + len(group)].reshape(-1, k)
        weight = torch.tensor(
            [{"fixed": 1.0, "mixture": mixture}.get(_ROWS[n][0], 0.0) for n in group],
            dtype=torch.float64,
        ).repeat_interleave(t)[:, None]
        mu_flat = log_mu.expand_as(flat)
        value, _ = expected_loss_and_gradient(
            flat,
            mu_flat,
            mixture_log_weights(flat, mu_flat, weight),
            P.expand(flat.shape[0], k, k),
            value_and_slope=prepare(_bound(loss, tau), torch.zeros(1, 2, 2, dtype=torch.float64)),
        )
        for j in range(len(group)):
            out[first + j] = value.view(len(group), t)[j]
    for i, name in enumerate(rows):
        if name in ("nash_md_pg", "rlhf"):
            payoff = reward.expand(t, k) if name == "rlhf" else log_pi[i].exp() @ P.T
            objective, _ = centred_advantage(
                log_pi[i], log_mu.expand(t, k), payoff, torch.full((t, 1), tau, dtype=torch.float64)
            )
            out[i] = -objective
    return out


def _trajectory(
    name: str,
    log_policies: Tensor,
    losses: Tensor | None,
    P: Tensor,
    mu: Tensor,
    tau: float,
    mixture: float,
    lr: float,
    reward: Tensor | None,
) -> Trajectory:
    """One row as the Trajectory its registry call would return (targets need the same hyper)."""
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
        hyper["reward"] = reward
    if name != "nash_md":
        hyper["lr"] = lr
    return Trajectory(log_policies, losses, name, P, mu, hyper)
