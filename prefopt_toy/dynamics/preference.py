r"""Preference-optimisation algorithms as compositions: pair sampler x label model x per-pair loss.

Offline DPO / IPO / SLiC / GPO draw pairs from a fixed ``nu`` (default ``mu``); online DPO / IPO
(Calandriello et al., arXiv:2403.08635v1, Sec. 4) draw them from the current policy with
stop-gradient; IPO-MD (ibid., Sec. 5) from the geometric mixture :math:`\pi^{1-m}\mu^m`. Each
algorithm below is one line on top of :func:`preference_optimization`, which runs the exact
expected gradient (``pairs.expected_loss_and_gradient``) through the shared loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_generator, as_int, as_tensor
from prefopt_toy.losses.gpo import GPO_FUNCTIONS, gpo_loss
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, slic_loss
from prefopt_toy.losses.population import hard_label_kernel
from prefopt_toy.solutions.bt import bt_fit

from .batch import Batch, as_batch, positive, unbatch, unit_interval
from .derivatives import prepare
from .divergence import Blame, Knob, lr_blame
from .loop import run
from .optimizers import make_optimizer
from .pairs import (
    Sampler,
    expected_loss_and_gradient,
    fixed_sampler,
    mixture_sampler,
    online_sampler,
    sampled_label_matrix,
)
from .trajectory import Trajectory

DEFAULT_STEPS = 2000


def _strength(beta: Any, tau: Any, name: str) -> tuple[Any, str]:
    """DPO-family losses take ``beta``; ``tau`` is accepted as its alias.

    Azar et al. Eq. (4) writes DPO with tau, so ``ALGORITHMS[name](P, mu, steps=..., tau=0.1)``
    works for every algorithm.

    Returns the value and the name the caller gave it under (errors name that one).
    """
    if beta is not None and tau is not None:
        raise ValueError(f"{name}: give beta or tau (its alias), not both")
    value = beta if beta is not None else tau
    if value is None:
        raise ValueError(f"{name} needs beta (the KL strength; tau is accepted as an alias)")
    key = "beta" if beta is not None else "tau"
    return _checked(value, key), key


def _checked(value: Any, name: str) -> Any:
    """A KL strength (number or sequence), checked finite and > 0 before anything uses it."""
    positive(as_tensor(value, name).detach(), name)
    return value


def _labels(batch: Batch, labels: Any, generator: torch.Generator | None) -> Callable[[], Tensor]:
    """The label model: a function returning the (B, K, K) winner probabilities for one step."""
    if isinstance(labels, str) and labels == "soft":
        soft = batch.P
        return lambda: soft
    if isinstance(labels, str) and labels == "hard":
        hard = hard_label_kernel(batch.P)
        return lambda: hard
    if isinstance(labels, int) and not isinstance(labels, bool):
        n = as_int(labels, "labels", minimum=1)
        if generator is None:
            raise ValueError("labels=n (sampled labels) needs a seed or generator: pass seed=...")
        return lambda: sampled_label_matrix(batch.P, n, generator)
    raise ValueError(
        f"labels must be 'soft', 'hard' or a positive int (labels sampled per pair per step), got {labels!r}"
    )


def preference_optimization(
    P: Any,
    mu: Any,
    *,
    loss: Callable[..., Tensor],
    loss_kwargs: dict[str, Any],
    sampler: str,
    steps: int,
    lr: Any,
    nu: Any = None,
    mixture: Any = None,
    labels: Any = "soft",
    optimizer: str = "gd",
    seed: Any = None,
    name: str = "preference_optimization",
    blame: Blame | None = None,
) -> Trajectory:
    """Exact dynamics of one sampler x labels x loss composition (batched over games and hyperparameters).

    ``loss`` is a library loss (``dpo_loss``, ``ipo_loss``, ``slic_loss``, ``gpo_loss``, or any
    per-pair callable accepting the keywords of ``loss_kwargs``); each keyword may be a number or a
    length-B sequence. ``sampler`` is ``"fixed"`` (pairs from ``nu``, default ``mu``), ``"online"``
    (from the current policy, stop-gradient) or ``"mixture"`` (from ``pi^(1-m) mu^m``).

    ``blame`` says which of the caller's arguments a divergence names (``divergence.lr_blame``
    builds it for the registry entries, whose default ``lr`` derives from the strength); by default
    ``lr`` for a diverging update and the ``beta`` / ``tau`` keyword of ``loss_kwargs`` for a loss
    that is not finite at the start.

    Raises
    ------
    ValueError
        Malformed input (naming the argument).
    DivergenceError
        (a ValueError and a FloatingPointError) if the run leaves float64: see ``divergence``.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (10) (the population loss with a fixed ``nu``);
    Calandriello et al., arXiv:2403.08635v1, Eq. (11) (online sampling) and Sec. 5 (IPO-MD).
    """
    steps = as_int(steps, "steps", minimum=0)
    numeric = {k: v for k, v in loss_kwargs.items() if not isinstance(v, str)}
    batch, hyper = as_batch(P, mu, policies={"nu": nu}, lr=lr, mixture=mixture, **numeric)
    positive(hyper["lr"], "lr")
    b, k = batch.size, batch.n_actions
    if sampler == "fixed":
        nu_t = batch.mu if nu is None else hyper["nu"]
        smp: Sampler = fixed_sampler(nu_t.log())
    elif sampler == "online":
        smp = online_sampler(b, k)
    elif sampler == "mixture":
        if hyper["mixture"] is None:
            raise ValueError(f"{name} needs mixture (the weight of mu in the sampling mixture)")
        smp = mixture_sampler(batch.log_mu, unit_interval(hyper["mixture"], "mixture"))
    else:
        raise ValueError(f"sampler must be 'fixed', 'online' or 'mixture', got {sampler!r}")
    generator = None if seed is None else as_generator(seed)
    label_fn = _labels(batch, labels, generator)
    kwargs = {
        key: (hyper[key][:, None, None] if key in numeric else value)
        for key, value in loss_kwargs.items()
    }
    pair_loss = functools.partial(loss, **kwargs)
    log_mu = batch.log_mu
    value_and_slope = prepare(pair_loss, torch.zeros(b, k, k, dtype=torch.float64))

    def step(log_pi: Tensor, t: int) -> tuple[Tensor, Tensor]:
        return expected_loss_and_gradient(
            log_pi, log_mu, smp.log_weights(log_pi), label_fn(), value_and_slope=value_and_slope
        )

    if blame is None:
        key = next((key for key in ("beta", "tau") if key in numeric), None)
        strength = None if key is None else numeric[key]
        blame = Blame(
            Knob("lr", lr, advice="Use a smaller lr."),
            None if key is None else Knob(key, strength, advice=f"Use a {key} nearer 1."),
            strength,
            key or "strength",
        )
    log_policies, losses = run(
        batch.log_mu.clone(),
        step,
        make_optimizer(optimizer, hyper["lr"]),
        steps,
        blame=blame,
        algorithm=name,
        batched=batch.batched,
    )
    record: dict[str, Any] = {
        key: unbatch(v, batch) for key, v in hyper.items() if v is not None and key != "nu"
    }
    record.update({key: v for key, v in loss_kwargs.items() if isinstance(v, str)})
    if sampler == "fixed":
        record["nu"] = unbatch(nu_t, batch)  # the targets (rlhf_optimum, ipo_optimum) need it
    record.update(labels=labels, optimizer=optimizer, sampler=sampler)
    return Trajectory(
        unbatch(log_policies, batch),
        None if losses is None else unbatch(losses, batch),
        name,
        unbatch(batch.P, batch),
        unbatch(batch.mu, batch),
        record,
    )


# ---------------------------------------------------------------------------------------------
# Default learning rates: gradient descent is stable when lr * (largest curvature) < 2. For the
# squared (IPO) loss the Hessian in the logits is 4 (diag(s) - s s^T) <= 4 I offline; online and
# mixture sampling add a rotational part of size ~ 1 / tau (Calandriello et al. Prop. 4.2), so the
# step shrinks by tau / (1 + tau) (measured: converges from K = 3 to 10, tau = 0.05 to 10). The
# logistic (DPO) loss has curvature at most beta^2 / 4 per pair.


def _default_lr(curvature: Any, strength: Any, online: bool) -> Any:
    """``0.4 / curvature``, times ``strength / (1 + strength)`` for online or mixture sampling."""
    c = torch.as_tensor(curvature, dtype=torch.float64)
    lr = 0.4 / c
    if online:
        s = torch.as_tensor(strength, dtype=torch.float64)
        lr = lr * (s / (1.0 + s))
    return lr if lr.ndim else float(lr)


def _online_factor(name: str, online: bool) -> str:
    return f" * {name} / (1 + {name})" if online else ""


def smooth_default(b: Any, name: str, f2: float, online: bool) -> tuple[Callable[[], Any], str]:
    """Default step ``0.4 / (f2 beta**2)`` of a loss ``f(beta h)`` with ``|f''| <= f2``.

    Returned as a function and as a formula in the caller's name for the strength.
    """
    formula = f"{0.4 / f2:g} / {name}**2" + _online_factor(name, online)
    return (lambda: _default_lr(_beta2(b) * f2, b, online)), formula


def squared_default(tau: Any, online: bool) -> tuple[Callable[[], Any], str]:
    """Default step of the IPO (squared) loss, curvature 2 in the margin: ``0.2`` offline."""
    return (lambda: _default_lr(2.0, tau, online)), "0.2" + _online_factor("tau", online)


def hinge_default(b: Any, name: str) -> tuple[Callable[[], Any], str]:
    """Default step of the hinge, ``1 / beta`` (``_hinge_lr``)."""
    return (lambda: _hinge_lr(b)), f"1 / {name}"


def _hinge_lr(beta: Any) -> Any:
    """The hinge's default step ``lr = 1 / beta`` (the hinge has no curvature to size a step by).

    ``lr = 1 / beta`` moves each margin by at most ``2 s s' <= 1/2`` per step (the gradient of
    ``max(0, 1 - beta h)`` is ``-beta``), a fraction of the hinge's width ``1 / beta``. A
    subgradient step of constant size does not converge to a point: the iterates end hovering
    within about one step of the kink (a set of minimisers anyway).
    """
    b = torch.as_tensor(beta, dtype=torch.float64)
    lr = 1.0 / b
    return lr if lr.ndim else float(lr)


def _beta2(beta: Any) -> Tensor:
    b = torch.as_tensor(beta, dtype=torch.float64)
    return b * b


def _smooth_lr(
    b: Any, name: str, f2: float, online: bool, algorithm: str, lr: Any, optimizer: str
) -> tuple[Any, Blame]:
    default, formula = smooth_default(b, name, f2, online)
    return lr_blame(
        lr, default, strength=(name, b), formula=formula, algorithm=algorithm, optimizer=optimizer
    )


def _squared_lr(
    tau: Any, online: bool, algorithm: str, lr: Any, optimizer: str
) -> tuple[Any, Blame]:
    default, formula = squared_default(tau, online)
    return lr_blame(
        lr,
        default,
        strength=("tau", tau),
        formula=formula,
        algorithm=algorithm,
        optimizer=optimizer,
    )


def _hinge_blame(b: Any, name: str, algorithm: str, lr: Any, optimizer: str) -> tuple[Any, Blame]:
    default, formula = hinge_default(b, name)
    return lr_blame(
        lr, default, strength=(name, b), formula=formula, algorithm=algorithm, optimizer=optimizer
    )


def dpo(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    label_smoothing: Any = 0.0,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Offline DPO: pairs from ``nu`` (default ``mu``), converges to ``rlhf_optimum(P, mu, beta, nu)``.

    Population loss of Azar et al., arXiv:2310.12036v2, Eq. (5) with the DPO loss of Rafailov et
    al., arXiv:2305.18290v3, Eq. (7); minimiser by Azar et al. App. B Prop. 4.
    """
    b, key = _strength(beta, tau, "dpo")
    lr, blame = _smooth_lr(b, key, 0.25, False, "dpo", lr, optimizer)
    return preference_optimization(
        P,
        mu,
        loss=dpo_loss,
        loss_kwargs={"beta": b, "label_smoothing": label_smoothing},
        sampler="fixed",
        steps=steps,
        lr=lr,
        nu=nu,
        labels=labels,
        optimizer=optimizer,
        seed=seed,
        name="dpo",
        blame=blame,
    )


def ipo(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    tau: Any = 0.1,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Offline IPO: pairs from ``nu`` (default ``mu``), converges to ``ipo_optimum(P, mu, tau, nu)``.

    Azar et al., arXiv:2310.12036v2, Eq. (13)/(17); unique minimiser by Theorem 2.
    """
    lr, blame = _squared_lr(_checked(tau, "tau"), False, "ipo", lr, optimizer)
    return preference_optimization(
        P,
        mu,
        loss=ipo_loss,
        loss_kwargs={"tau": tau},
        sampler="fixed",
        steps=steps,
        lr=lr,
        nu=nu,
        labels=labels,
        optimizer=optimizer,
        seed=seed,
        name="ipo",
        blame=blame,
    )


def slic(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Offline reference-normalised SLiC (hinge ``max(0, 1 - beta h)``), pairs from ``nu``.

    Zhao et al., arXiv:2305.10425v1 (SLiC-HF); TRL ``loss_type="hinge"``. The minimiser is in
    general a set (any margin beyond ``1/beta`` on deterministic pairs), not a point.
    """
    b, key = _strength(beta, tau, "slic")
    lr, blame = _hinge_blame(b, key, "slic", lr, optimizer)
    return preference_optimization(
        P,
        mu,
        loss=slic_loss,
        loss_kwargs={"beta": b},
        sampler="fixed",
        steps=steps,
        lr=lr,
        nu=nu,
        labels=labels,
        optimizer=optimizer,
        seed=seed,
        name="slic",
        blame=blame,
    )


def gpo(
    P: Any,
    mu: Any,
    *,
    f: str,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Offline GPO with convex surrogate ``f`` (a key of ``GPO_FUNCTIONS``), loss ``f(beta h)``.

    Tang et al., arXiv:2402.05749v2, Sec. 2.
    """
    if f not in GPO_FUNCTIONS:
        raise ValueError(f"f must be one of {sorted(GPO_FUNCTIONS)}, got {f!r}")
    b, key = _strength(beta, tau, f"gpo_{f}")
    # f'' is 2 for the squared and truncated quadratic surrogates, at most 1/4 for the smooth others;
    # the hinge has none (see _hinge_lr).
    if f == "hinge":
        lr, blame = _hinge_blame(b, key, f"gpo_{f}", lr, optimizer)
    else:
        f2 = 2.0 if f in ("squared", "truncated_quadratic") else 0.25
        lr, blame = _smooth_lr(b, key, f2, False, f"gpo_{f}", lr, optimizer)
    return preference_optimization(
        P,
        mu,
        loss=gpo_loss,
        loss_kwargs={"beta": b, "f": f},
        sampler="fixed",
        steps=steps,
        lr=lr,
        nu=nu,
        labels=labels,
        optimizer=optimizer,
        seed=seed,
        name=f"gpo_{f}",
        blame=blame,
    )


def online_dpo(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Online DPO: both completions from the current policy (stop-gradient), labels soft / hard / sampled.

    Calandriello et al., arXiv:2403.08635v1, Sec. 6 (online DPO baseline); its stationary point is
    not the Nash equilibrium in general (ibid., App. F), but is the RLHF optimum on a BT game
    (Theorem F.7).
    """
    b, key = _strength(beta, tau, "online_dpo")
    lr, blame = _smooth_lr(b, key, 0.25, True, "online_dpo", lr, optimizer)
    return preference_optimization(
        P,
        mu,
        loss=dpo_loss,
        loss_kwargs={"beta": b},
        sampler="online",
        steps=steps,
        lr=lr,
        labels=labels,
        optimizer=optimizer,
        seed=seed,
        name="online_dpo",
        blame=blame,
    )


def online_ipo(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    tau: Any = 0.1,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""Online IPO: pairs from the current policy (stop-gradient); converges to ``regularized_nash``.

    Calandriello et al., arXiv:2403.08635v1, Eq. (11) and Prop. 4.1 (fixed point = regularised Nash).
    """
    lr, blame = _squared_lr(_checked(tau, "tau"), True, "online_ipo", lr, optimizer)
    return preference_optimization(
        P,
        mu,
        loss=ipo_loss,
        loss_kwargs={"tau": tau},
        sampler="online",
        steps=steps,
        lr=lr,
        labels=labels,
        optimizer=optimizer,
        seed=seed,
        name="online_ipo",
        blame=blame,
    )


def ipo_md(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    tau: Any = 0.1,
    mixture: Any = 0.125,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""IPO-MD: both completions from the mixture ``pi^(1-m) mu^m`` (stop-gradient).

    Converges to ``ipo_md_fixed_point(P, mu, tau, mixture)``.

    Calandriello et al., arXiv:2403.08635v1, Sec. 5 (default mixture 0.125, their Sec. 7 choice).
    """
    lr, blame = _squared_lr(_checked(tau, "tau"), True, "ipo_md", lr, optimizer)
    return preference_optimization(
        P,
        mu,
        loss=ipo_loss,
        loss_kwargs={"tau": tau},
        sampler="mixture",
        steps=steps,
        lr=lr,
        mixture=mixture,
        labels=labels,
        optimizer=optimizer,
        seed=seed,
        name="ipo_md",
        blame=blame,
    )


RSO_LOSSES = ("dpo", "ipo", "slic")
"""The losses ``rso`` fits with: sigmoid-norm (DPO), IPO, hinge-norm (SLiC)."""


def rso(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    loss: str = "dpo",
    reward: Any = None,
    sampling_beta: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""RSO: pairs drawn from the optimal policy of a reward model, then DPO, IPO or SLiC on them.

    Statistical rejection sampling from :math:`\mu` with acceptance
    :math:`\exp((r(y) - r_{max})/\beta_s)` draws exactly from
    :math:`\pi_r = \mu\,e^{r/\beta_s}/Z`; on the bandit the pairs come from :math:`\pi_r` directly
    (``nu = pi_r``). ``reward`` defaults to ``bt_fit(P, mu)`` (a reward model fitted on pairs from
    ``mu``), ``sampling_beta`` to the loss's strength. With BT labels the DPO optimum does not
    depend on the pairs (``rlhf_optimum`` with any full-support ``nu``), so RSO changes where
    DPO's trajectory goes through, not where it ends; IPO's optimum :math:`\mu e^{P\nu/\tau}/Z`
    moves with ``nu``.

    Parameters
    ----------
    loss : {"dpo", "ipo", "slic"}, default "dpo"
        The fitting loss; its strength is ``beta`` (``tau`` accepted as its alias).
    reward : (K,) or (B, K), optional
        The reward model's scores.
    sampling_beta : float > 0, optional
        :math:`\beta_s` of the sampling policy; default the loss's strength.
    P, mu, labels, lr, optimizer, seed : as ``dpo``.

    References
    ----------
    Liu et al., arXiv:2309.06657v2, Sec. 3 (statistical rejection sampling, Algorithm 1) and
    Sec. 3.2 (sigmoid-norm and hinge-norm losses).
    """
    if loss not in RSO_LOSSES:
        raise ValueError(f"loss must be one of {RSO_LOSSES}, got {loss!r}")
    b, key = _strength(beta, tau, "rso")
    batch, hyper = as_batch(P, mu, beta=b, sampling_beta=sampling_beta)
    if reward is None:
        r = torch.stack([bt_fit(batch.P[i], batch.mu[i]) for i in range(batch.size)])
    else:
        r = as_tensor(reward, "reward").detach().expand(batch.size, batch.n_actions).clone()
    beta_s = hyper["beta"] if hyper["sampling_beta"] is None else hyper["sampling_beta"]
    positive(beta_s, "sampling_beta")
    log_nu = batch.log_mu + r / beta_s[:, None]
    nu = (log_nu - log_nu.logsumexp(-1, keepdim=True)).exp()
    nu_arg = unbatch(nu, batch)
    if loss == "dpo":
        lr, blame = _smooth_lr(b, key, 0.25, False, "rso", lr, optimizer)
        loss_fn, kwargs = dpo_loss, {"beta": b}
    elif loss == "ipo":
        lr, blame = _squared_lr(b, False, "rso", lr, optimizer)
        loss_fn, kwargs = ipo_loss, {"tau": b}
    else:
        lr, blame = _hinge_blame(b, key, "rso", lr, optimizer)
        loss_fn, kwargs = slic_loss, {"beta": b}
    traj = preference_optimization(
        P,
        mu,
        loss=loss_fn,
        loss_kwargs=kwargs,
        sampler="fixed",
        steps=steps,
        lr=lr,
        nu=nu_arg,
        labels=labels,
        optimizer=optimizer,
        seed=seed,
        name="rso",
        blame=blame,
    )
    traj.hyper.update(loss=loss, reward=unbatch(r, batch), sampling_beta=unbatch(beta_s, batch))
    return traj
