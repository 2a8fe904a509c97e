r"""Nash-MD (closed-form mirror step) and Nash-MD-PG (exact expected policy gradient).

Nash-MD (Munos et al., arXiv:2312.00886v4, Sec. 6, Eq. (8)-(9)): with the geometric mixture
:math:`\pi_t^\mu \propto \pi_t^{1-\eta_t\tau}\mu^{\eta_t\tau}`,

.. math:: \pi_{t+1} = \arg\max_\pi\, \eta_t P(\pi \succ \pi_t^\mu) - KL(\pi\|\pi_t^\mu)
          \iff \log\pi_{t+1} = (1-\eta_t\tau)\log\pi_t + \eta_t\tau\log\mu + \eta_t P\pi_t^\mu + c.

With :math:`\eta_t = 2/(\tau(t+2))` the last iterate satisfies
:math:`KL(\pi^*_\tau\|\pi_T) \le 8/(\tau^2(T+1))` (Theorem 1). A constant step instead converges
to the IPO-MD fixed point with mixture :math:`\eta\tau` (set :math:`\pi_{t+1} = \pi_t` above:
:math:`\pi \propto \mu\exp(P\pi^\mu/\tau)`, Calandriello et al., arXiv:2403.08635v1, Sec. 5).

Nash-MD-PG (ibid., Sec. 7 and App. F): ascend
:math:`E_{y\sim\pi}[\nabla\log\pi(y)\,(P(y \succ y') - 1/2 - \tau\log(\pi(y)/\mu(y)))]` with
:math:`y' \sim \pi^{1-m}\mu^m` (stop-gradient); in the logits its exact expectation is
:math:`\pi \odot (A - E_\pi A)`, :math:`A = P s - \tau\log(\pi/\mu)`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int
from prefopt_toy.policies import normalize_log_finite

from .batch import as_batch, positive, unbatch, unit_interval
from .divergence import Blame, Knob, lr_blame
from .loop import run
from .optimizers import Assign, GradientDescent
from .pairs import mixture_log_weights
from .preference import DEFAULT_STEPS
from .trajectory import Trajectory


def nash_md(
    P: Any, mu: Any, tau: Any = 0.1, steps: int = DEFAULT_STEPS, eta: Any = None, *, lr: Any = None
) -> Trajectory:
    r"""Nash-MD from :math:`\pi_0 = \mu`, exact (closed-form) mirror steps, batched.

    Parameters
    ----------
    P : array-like, (K, K) or (B, K, K)
        Preference matrix (or a batch).
    mu : array-like, (K,) or (B, K)
        Reference policy, strictly positive.
    tau : float or sequence, > 0
        KL strength (tau in Munos et al.).
    steps : int >= 0
        Number of mirror steps T.
    eta : None, float or sequence
        ``None``: the schedule :math:`\eta_t = 2/(\tau(t+2))` of Theorem 1 (t from 0, so
        :math:`\eta_0\tau = 1` and the first iterate is the IPO optimum with ``nu = mu``). A number:
        a constant step, with ``eta * tau <= 1`` required (the mixture weight must lie in [0, 1]).
    lr : None, float or sequence
        An alias of ``eta`` (Nash-MD's step size is its learning rate), so that every entry of
        ``ALGORITHMS`` takes its step size as ``lr``; give one of the two. Errors name the one given.

    Returns
    -------
    Trajectory
        ``log_policies`` of shape (steps + 1, K) (or batched); ``losses`` is None.

    Raises
    ------
    ValueError
        Malformed ``P`` / ``mu``, ``tau <= 0``, ``eta <= 0`` or ``eta * tau > 1``, both ``eta``
        and ``lr``.
    DivergenceError
        (a ValueError and a FloatingPointError) if the steps overflow float64, e.g. a ``tau`` so
        small that the schedule's first step ``1 / tau`` is inf; it names ``tau`` (or ``eta``).

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 6 (Nash-MD, Eq. (8)-(9)) and Theorem 1.
    """
    steps = as_int(steps, "steps", minimum=0)
    if eta is not None and lr is not None:
        raise ValueError("nash_md: give eta or lr (its alias), not both")
    step_name = "lr" if lr is not None else "eta"
    eta = lr if lr is not None else eta
    batch, hyper = as_batch(P, mu, tau=tau, **{step_name: eta})
    hyper["eta"] = hyper.pop(step_name)
    tau_t = positive(hyper["tau"], "tau")[:, None]  # (B, 1)
    eta_t = hyper["eta"]
    if eta_t is not None:
        positive(eta_t, step_name)
        over = eta_t * tau_t[:, 0] > 1.0
        if bool(over.any()):
            i = int(over.nonzero()[0])
            raise ValueError(
                f"nash_md: {step_name} * tau must be <= 1 (it is the weight of mu in the mixture), got "
                f"{step_name} = {float(eta_t[i]):.6g} and tau = {float(tau_t[i, 0]):.6g}"
                + (f" in batch row {i}" if batch.batched else "")
            )
        eta_t = eta_t[:, None]
        blame = Blame(
            Knob(
                step_name,
                eta,
                advice=f"Use a smaller {step_name}, or {step_name}=None for the "
                "schedule 2 / (tau (t + 2)).",
            ),
            None,
            hyper["tau"],
            "tau",
        )
    else:
        blame = Blame(
            Knob(
                "tau",
                tau,
                derived="Nash-MD's first step eta_0 = 1 / tau (schedule 2 / (tau (t + 2)))",
                derived_value=1.0 / hyper["tau"],
                advice="Use a tau nearer 1, or pass a constant eta.",
            ),
            None,
            hyper["tau"],
            "tau",
        )
    # Actions-first layout (K, B): every reduction runs over a short leading axis, vectorised
    # along the batch; 10,000 games x 1000 steps is one call (see benchmarks/).
    log_mu = batch.log_mu.T.contiguous()  # (K, B)
    P_t = batch.P.permute(1, 2, 0).contiguous()  # (K, K, B): P_t[y, y', b]
    tau_kb = tau_t.T  # (1, B)
    eta_kb = None if eta_t is None else eta_t.T

    def step(log_pi: Tensor, t: int) -> tuple[None, Tensor]:
        eta_now = 2.0 / (tau_kb * (t + 2)) if eta_kb is None else eta_kb  # (1, B)
        m = eta_now * tau_kb
        # The mixture's logits (1 - eta tau) log pi + eta tau log mu are also the first two terms
        # of the mirror step, so one linear combination serves both.
        z = (1.0 - m) * log_pi + m * log_mu  # (K, B)
        payoff = (P_t * normalize_log_finite(z, 0).exp()[None]).sum(1)  # (K, B): (P pi_t^mu)_y
        return None, z + eta_now * payoff  # next logits, normalised by the loop

    log_policies, _ = run(
        log_mu.clone(),
        step,
        Assign(),
        steps,
        action_axis=0,
        blame=blame,
        algorithm="nash_md",
        batched=batch.batched,
    )
    record: dict[str, Any] = {"tau": unbatch(hyper["tau"], batch)}
    record["eta"] = None if eta is None else unbatch(hyper["eta"], batch)
    if eta is not None:
        record["mixture"] = unbatch(hyper["eta"] * hyper["tau"], batch)
    return Trajectory(
        unbatch(log_policies, batch),
        None,
        "nash_md",
        unbatch(batch.P, batch),
        unbatch(batch.mu, batch),
        record,
    )


def regularized_advantage(
    log_pi: Tensor, log_mu: Tensor, payoff: Tensor, strength: Tensor
) -> tuple[Tensor, Tensor]:
    r"""Exact policy gradient of :math:`E_\pi[\text{payoff}] - \text{strength}\,KL(\pi\|\mu)` in the logits.

    Returns the objective (B,) and the *descent* direction (B, K),
    :math:`-\pi \odot (A - E_\pi A)` with :math:`A = \text{payoff} - \text{strength}\log(\pi/\mu)`
    (the score-function identity :math:`\nabla_\theta\log\pi(y) = e_y - \pi`).
    """
    objective, advantage = centred_advantage(log_pi, log_mu, payoff, strength)
    return objective, -log_pi.exp() * advantage


def centred_advantage(
    log_pi: Tensor, log_mu: Tensor, payoff: Tensor, strength: Tensor
) -> tuple[Tensor, Tensor]:
    r"""The objective (B,) and the centred advantage :math:`A - E_\pi A` (B, K).

    The centred advantage is the *natural* policy gradient of the objective for a tabular softmax
    policy (the Fisher matrix :math:`\mathrm{diag}\,\pi - \pi\pi^\top` maps it to the vanilla
    gradient; Kakade, NeurIPS 2001): ascending it is a mirror step that moves every action at the
    same rate, where the vanilla gradient slows down in proportion to :math:`\pi(y)`.
    """
    pi = log_pi.exp()
    log_ratio = log_pi - log_mu
    A = payoff - strength * log_ratio
    baseline = (pi * A).sum(-1, keepdim=True)
    kl = (pi * log_ratio).sum(-1)
    objective = (pi * payoff).sum(-1) - strength[:, 0] * kl
    return objective, A - baseline


def policy_gradient_direction(
    log_pi: Tensor, log_mu: Tensor, payoff: Tensor, strength: Tensor, gradient: str
) -> tuple[Tensor, Tensor]:
    """``-objective`` and the descent direction: vanilla (``"vanilla"``) or natural (``"natural"``)."""
    if gradient == "vanilla":
        objective, direction = regularized_advantage(log_pi, log_mu, payoff, strength)
    else:
        objective, advantage = centred_advantage(log_pi, log_mu, payoff, strength)
        direction = -advantage
    return -objective, direction


def _pg_lr(strength: Tensor, gradient: str) -> Tensor:
    # Linearised at the fixed point the update has a damping part ~ strength (times pi for the
    # vanilla gradient) and a rotation ~ 1/2 (|P - 1/2| <= 1/2). lr = strength / (strength + 1/2)^2
    # keeps lr |lambda|^2 < 2 Re(lambda); the vanilla gradient tolerates 4x that (its eigenvalues
    # carry a factor pi <= 1), measured stable from K = 3 to 10, tau = 0.05 to 10.
    base = strength / (strength + 0.5) ** 2
    # For strength > ~1e154 the square overflows (inf -> lr 0); the same number, written
    # 1 / (strength + 1 + 1/(4 strength)), stays representable there.
    base = torch.where(strength < 1e150, base, 1.0 / (strength + 1.0 + 0.25 / strength))
    return 4.0 * base if gradient == "vanilla" else base


def _pg_lr_formula(name: str, gradient: str) -> str:
    return ("4 * " if gradient == "vanilla" else "") + f"{name} / ({name} + 0.5)**2"


def _pg_blame(
    lr: Any, strength: Tensor, name: str, value: Any, gradient: str, algorithm: str
) -> tuple[Tensor, Blame]:
    """The policy-gradient step size (``lr`` or ``_pg_lr`` of the strength) and its blame."""
    lr_t, blame = lr_blame(
        lr,
        lambda: _pg_lr(strength, gradient),
        strength=(name, value),
        formula=_pg_lr_formula(name, gradient),
        algorithm=algorithm,
    )
    return (lr_t if lr is None else positive(lr_t, "lr")), blame


def _gradient_kind(gradient: str) -> str:
    if gradient not in ("natural", "vanilla"):
        raise ValueError(f"gradient must be 'natural' or 'vanilla', got {gradient!r}")
    return gradient


def nash_md_pg(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    tau: Any = 0.1,
    mixture: Any = 0.0,
    lr: Any = None,
    gradient: str = "natural",
) -> Trajectory:
    r"""Nash-MD-PG with exact expected gradients.

    Ascent on :math:`P(\pi \succ s) - \tau KL(\pi\|\mu)` with the opponent
    :math:`s = \pi^{1-m}\mu^m` held fixed (stop-gradient) at each step.

    Converges to ``ipo_md_fixed_point(P, mu, tau, mixture)``; ``mixture = 0`` (self-play) gives
    ``regularized_nash``. ``gradient="vanilla"`` ascends the exact expected policy gradient in the
    logits, :math:`\pi\odot(A - E_\pi A)`; ``"natural"`` (default) its natural-gradient form
    :math:`A - E_\pi A`, which has the same fixed points and converges at a rate independent of
    the smallest probability (vanilla needs ~1e5 steps where the fixed point has entries ~1e-3).
    ``losses`` records the negated objective.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 7 (Nash-MD-PG) and App. F; Calandriello et al.,
    arXiv:2403.08635v1, Prop. 4.2 (online IPO's gradient is a positive multiple of the vanilla one at
    m = 0); Kakade (2001), "A Natural Policy Gradient", NeurIPS.
    """
    steps = as_int(steps, "steps", minimum=0)
    kind = _gradient_kind(gradient)
    batch, hyper = as_batch(P, mu, tau=tau, mixture=mixture, lr=lr)
    tau_t = positive(hyper["tau"], "tau")[:, None]
    m = unit_interval(hyper["mixture"], "mixture")[:, None]
    lr_t, blame = _pg_blame(hyper["lr"], hyper["tau"], "tau", tau, kind, "nash_md_pg")
    log_mu, P_b = batch.log_mu, batch.P

    def step(log_pi: Tensor, t: int) -> tuple[Tensor, Tensor]:
        s = mixture_log_weights(log_pi, log_mu, m).exp()
        payoff = (P_b @ s[:, :, None])[:, :, 0]  # (B, K): P(y > s)
        return policy_gradient_direction(log_pi, log_mu, payoff, tau_t, kind)

    log_policies, losses = run(
        log_mu.clone(),
        step,
        GradientDescent(lr_t),
        steps,
        blame=blame,
        algorithm="nash_md_pg",
        batched=batch.batched,
    )
    record = {
        "tau": unbatch(hyper["tau"], batch),
        "mixture": unbatch(hyper["mixture"], batch),
        "lr": unbatch(lr_t, batch),
        "gradient": kind,
    }
    return Trajectory(
        unbatch(log_policies, batch),
        None if losses is None else unbatch(losses, batch),
        "nash_md_pg",
        unbatch(batch.P, batch),
        unbatch(batch.mu, batch),
        record,
    )
