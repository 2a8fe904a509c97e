r"""KTO on unpaired binary feedback, exactly, with each of its reference points.

The data model: an example is an action :math:`y \sim D` (default ``mu``, the SFT model's own
samples), labelled desirable with probability :math:`d(y)` (default :math:`(PD)_y`, its win rate
against a data sample). The expected KTO loss is

.. math:: \mathcal L(\pi) = \sum_y D(y)\,\Bigl[d(y)\lambda_D\,\sigma\bigl(-\beta(r_y - z_0)\bigr)
          + (1 - d(y))\lambda_U\,\sigma\bigl(\beta(r_y - z_0)\bigr)\Bigr], \quad r_y = \log\frac{\pi(y)}{\mu(y)},

with :math:`z_0` held constant in the gradient. ``reference_point`` picks :math:`z_0`:

- ``"kl"``: the paper's :math:`\mathrm{KL}(\pi\|\mu)`, exact;
- ``"data"``: TRL's estimator in the infinite-batch limit, :math:`\max(0, \sum_y D(y) r_y)`
  :math:`= \max(0, \mathrm{KL}(D\|\mu) - \mathrm{KL}(D\|\pi))` (its mismatched completions are
  data completions, not samples of :math:`\pi`); ``"data_unclamped"`` without the clamp;
- ``"batch"``: TRL's estimator on minibatches of ``batch_size`` b: :math:`z_0` is the clamped mean
  of b independent data completions (TRL builds each example's mismatched completion from another
  example), and the expected loss is the exact expectation over the :math:`\binom{b+K-1}{K-1}`
  compositions of those b completions;
- a number: a fixed :math:`z_0`.

Known results: actions labelled undesirable more often than desirable (weighted,
:math:`\lambda_U(1-d) > \lambda_D d`) go to 0; as beta -> 0 the rest approach
:math:`\pi \propto D(y)(\lambda_D d(y) - \lambda_U(1 - d(y)))_+`, whatever mu and z0.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_tensor
from prefopt_toy.losses.unpaired import kto_loss

from .batch import as_batch, policy_batch, positive, unit_interval
from .divergence import lr_blame
from .objective import rows_or_float, run_objective, stack_series
from .preference import DEFAULT_STEPS, _strength
from .trajectory import Trajectory

REFERENCE_POINTS = ("kl", "data", "data_unclamped", "batch")
"""The named choices of KTO's ``reference_point`` (a number is a fixed z0)."""


def compositions(b: int, k: int) -> Tensor:
    """Every way to put ``b`` draws in ``k`` boxes: counts (C, k), C = binom(b + k - 1, k - 1)."""
    rows = []
    for bars in itertools.combinations(range(b + k - 1), k - 1):
        edges = (-1, *bars, b + k - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(k)])
    return torch.tensor(rows, dtype=torch.float64)


def multinomial_log_weights(counts: Tensor, log_p: Tensor) -> Tensor:
    """``log Multinomial(counts; n, p)`` for counts (C, K) and log-probabilities (B, K): (B, C).

    Entries with a zero count and zero probability contribute 0 (``0 * log 0 = 0``).
    """
    n = counts.sum(-1)
    log_coef = torch.lgamma(n + 1) - torch.lgamma(counts + 1).sum(-1)  # (C,)
    terms = torch.where(counts[None] > 0, counts[None] * log_p[:, None, :], 0.0)
    return log_coef[None] + terms.sum(-1)


def kto_reference_point_distribution(
    pi: Any, mu: Any, batch_size: int, data: Any = None, clamp: bool = True
) -> tuple[Tensor, Tensor]:
    r"""The exact distribution of TRL's KTO reference point on minibatches of ``batch_size``.

    :math:`z_0 = \max(0, \frac1b\sum_{i\le b} r(y'_i))`, :math:`y'_i \sim D` independent,
    :math:`r = \log\pi/\mu`. Returns ``(values, probabilities)``, each of shape (C,), one entry per
    composition of the b completions (values repeat where compositions tie).

    Parameters
    ----------
    pi, mu : (K,) policies (``mu`` > 0).
    batch_size : int >= 1.
    data : (K,), default ``mu``: the distribution of data completions.
    clamp : bool, default True (TRL's ``clamp(min=0)``).

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4.1; TRL v1.13.0 ``KTOTrainer`` (the KL dataset).
    """
    b = as_int(batch_size, "batch_size", minimum=1)
    mu_t = policy_batch(mu, "mu", len(as_tensor(mu, "mu")), positive=True)
    k = mu_t.shape[-1]
    pi_t = policy_batch(pi, "pi", k, positive=False)
    d_t = mu_t if data is None else policy_batch(data, "data", k, positive=False)
    if mu_t.ndim != 1 or pi_t.ndim != 1 or d_t.ndim != 1:
        raise ValueError("pi, mu and data must be single policies of shape (K,)")
    counts = compositions(b, k)
    r = torch.where(pi_t > 0, pi_t.log() - mu_t.log(), float("-inf"))
    support = d_t > 0
    # completions come from supp(D) only: compositions with a count outside it have probability 0
    terms = torch.where(counts > 0, counts * torch.where(support, r, 0.0), 0.0)
    values = terms.sum(-1) / b
    if bool(((counts > 0) & ~support).any(-1).all()):
        raise ValueError("data must put mass on some action")
    probs = multinomial_log_weights(counts, d_t.log()[None])[0].exp()
    if bool((~torch.isfinite(values) & (probs > 0)).any()):
        raise ValueError(
            "pi puts probability 0 on an action the data completions can contain (log-ratio -inf)"
        )
    values = torch.where(probs > 0, values, 0.0)
    return (values.clamp_min(0.0) if clamp else values), probs


def kto(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    desirable: Any = None,
    data: Any = None,
    desirable_weight: Any = 1.0,
    undesirable_weight: Any = 1.0,
    reference_point: Any = "kl",
    batch_size: int | None = None,
    lr: Any = None,
    optimizer: str = "gd",
) -> Trajectory:
    r"""Exact KTO dynamics on unpaired binary feedback, from :math:`\pi_0 = \mu`.

    Parameters
    ----------
    P, mu : the game (K, K) and reference (K,), or batches. ``P`` gives the default labels.
    beta : KL strength (``tau`` accepted as its alias); TRL's default is 0.1.
    desirable : (K,) or (B, K) in [0, 1], optional
        Probability that an example of action y is labelled desirable; default ``P @ data``.
    data : (K,) or (B, K), optional
        Distribution of the examples' actions; default ``mu``.
    desirable_weight, undesirable_weight : float > 0, default 1
        :math:`\lambda_D`, :math:`\lambda_U`.
    reference_point : "kl", "data", "data_unclamped", "batch" or a number, default "kl"
        :math:`z_0` (see the module docstring).
    batch_size : int, required with ``reference_point="batch"``.
    lr, optimizer : the step size (default ``0.4 / (max(lambda) (beta**2 + beta) / 4)``) and
        ``"gd"`` / ``"adam"``.

    Returns
    -------
    Trajectory
        ``hyper`` records the inputs and ``reference_points``, z0 at each step (B, steps) (the
        expected z0 over minibatches for "batch").

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4 (KTO); TRL v1.13.0 ``KTOTrainer``.
    """
    b, key = _strength(beta, tau, "kto")
    named = isinstance(reference_point, str)
    if named and reference_point not in REFERENCE_POINTS:
        raise ValueError(
            f"reference_point must be one of {REFERENCE_POINTS} or a number, got {reference_point!r}"
        )
    if (reference_point == "batch") != (batch_size is not None):
        raise ValueError(
            "batch_size is needed with reference_point='batch' (the minibatch size of TRL's "
            "estimator) and only then"
        )
    bt = torch.as_tensor(b, dtype=torch.float64)
    lam_max = torch.maximum(
        torch.as_tensor(desirable_weight, dtype=torch.float64),
        torch.as_tensor(undesirable_weight, dtype=torch.float64),
    )
    lr, blame = lr_blame(
        lr,
        lambda: rows_or_float(0.4 / (lam_max * (bt**2 + bt) / 4)),
        strength=(key, b),
        formula=f"0.4 / (max(lambda) ({key}**2 + {key}) / 4)",
        algorithm="kto",
        optimizer=optimizer,
    )
    z_fixed = None if named else reference_point
    batch, h = as_batch(
        P,
        mu,
        policies={"data": data},
        lr=lr,
        beta=b,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        z0=z_fixed,
    )
    positive(h["lr"], "lr")
    positive(h["desirable_weight"], "desirable_weight")
    positive(h["undesirable_weight"], "undesirable_weight")
    D = batch.mu if h["data"] is None else h["data"]
    h["data"] = D
    if desirable is None:
        d = (batch.P @ D[:, :, None])[..., 0]  # win rate against a data sample
    else:
        d = as_tensor(desirable, "desirable").detach()
        if d.shape[-1] != batch.n_actions or d.ndim not in (1, 2):
            raise ValueError(
                f"desirable must have shape ({batch.n_actions},) or (B, {batch.n_actions}), got {tuple(d.shape)}"
            )
        d = unit_interval(d, "desirable").expand(batch.size, -1).clone()
    h["desirable"] = d
    beta_c = h["beta"][:, None]
    w_d, w_u = h["desirable_weight"][:, None], h["undesirable_weight"][:, None]
    log_mu = batch.log_mu
    history: list[Tensor] = []

    if reference_point == "batch":
        n = as_int(batch_size, "batch_size", minimum=1)
        counts = compositions(n, batch.n_actions)  # (C, K)
        log_w = multinomial_log_weights(counts, torch.where(D > 0, D.log(), float("-inf")))
        comp_w = log_w.exp()  # (B, C)

    def objective(lp: Tensor, t: int) -> Tensor:
        r = lp - log_mu  # (B, K)
        rd = r.detach()
        if reference_point == "batch":
            z = (counts[None] * torch.where(D[:, None, :] > 0, rd[:, None, :], 0.0)).sum(-1) / n
            z = z.clamp_min(0.0)  # (B, C)
            ell = kto_loss(
                r[:, None, :].expand(-1, z.shape[1], -1),
                z[:, :, None],
                d[:, None, :].expand(-1, z.shape[1], -1),
                beta_c[:, :, None],
                w_d[:, :, None],
                w_u[:, :, None],
            )  # (B, C, K)
            history.append((comp_w * z).sum(-1))
            return (comp_w * (ell * D[:, None, :]).sum(-1)).sum(-1)
        if reference_point == "kl":
            z0 = (lp.detach().exp() * rd).sum(-1, keepdim=True)
        elif reference_point in ("data", "data_unclamped"):
            z0 = (D * torch.where(D > 0, rd, 0.0)).sum(-1, keepdim=True)
            if reference_point == "data":
                z0 = z0.clamp_min(0.0)
        else:
            z0 = h["z0"][:, None]
        history.append(z0[:, 0])
        ell = kto_loss(r, z0.expand_as(r), d, beta_c, w_d, w_u)
        return (D * ell).sum(-1)

    record: dict[str, Any] = {**h, "reference_point": reference_point, "batch_size": batch_size}
    traj = run_objective(
        batch,
        objective,
        steps=steps,
        lr=h["lr"],
        optimizer=optimizer,
        name="kto",
        blame=blame,
        record=record,
    )
    traj.hyper["reference_points"] = stack_series(history, batch)
    return traj
