r"""Sampled mode: minibatches of (winner, loser) pairs from a finite data set, as in the IPO paper.

Azar et al., arXiv:2310.12036v2, Sec. 5.4 train a softmax policy over 3 actions, logits initialised
at 0 (so :math:`\pi = \mu` uniform), with Adam (lr 0.01) on minibatches of 9 pairs drawn uniformly
*with replacement* from a data set :math:`D` of (winner, loser) pairs, for 18,000 steps and 10
seeds, and report the mean and a 95% confidence interval over seeds. :func:`dataset_run` is that
protocol, vectorised: every (strength, seed) combination is one row of a batch, so one call runs all
of them through the shared loop (``dynamics.loop.run``) and the shared ``Adam``. (TRL's
``paper_index.md`` says the AISTATS version, Sec. C.1, used minibatches of 90; the default here is
9, as printed in arXiv v2.)

The per-step objective is the minibatch mean of a per-pair loss of the margin,

.. math:: \hat{\mathcal L}_{b}(\theta) = \frac1M \sum_{m=1}^{M} \ell\bigl(h_\theta(w_{bm}, l_{bm})\bigr),
          \qquad h_\theta(w, l) = (\theta_w - \theta_l) - (\log\mu_w - \log\mu_l)

(Azar et al. Eq. (17) for IPO, Eq. (4) for DPO). The softmax normaliser cancels in ``h``, so
:math:`\partial h/\partial\theta_k = [k = w] - [k = l]` and the gradient is exact without autograd:
scatter-add :math:`+\ell'(h)` at the winner and :math:`-\ell'(h)` at the loser, divided by ``M``.
With ``minibatch=False`` the minibatch is the whole data set (the expectation of the sampled
gradient): deterministic, and the run converges to the minimiser of ``population.dataset_loss``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prefopt_toy._validate import (
    DTYPE,
    as_generator,
    as_index_pairs,
    as_int,
    as_policy,
    as_positive_float,
    as_tensor,
)
from prefopt_toy.games.constructors import from_comparisons
from prefopt_toy.losses.gpo import GPO_FUNCTIONS, gpo_loss
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, slic_loss

from .derivatives import PairLoss, prepare, value_and_derivative
from .divergence import Blame, Knob
from .loop import run
from .optimizers import Adam, make_optimizer
from .trajectory import Trajectory

__all__ = ["DATASET_LOSSES", "dataset_run", "minibatch_loss_and_gradient"]

# Named losses: the library function and the keyword its KL strength goes to. tau and beta are both
# accepted by dataset_run (Azar et al. Eq. (4) write DPO with tau; TRL calls IPO's tau beta).
DATASET_LOSSES: dict[str, tuple[Callable[..., Tensor], str, dict[str, Any]]] = {
    "dpo": (dpo_loss, "beta", {}),
    "ipo": (ipo_loss, "tau", {}),
    "slic": (slic_loss, "beta", {}),
    **{f"gpo_{f}": (gpo_loss, "beta", {"f": f}) for f in GPO_FUNCTIONS},
}
"""Loss name -> (per-pair loss, name of its strength keyword, fixed keywords)."""

# Minibatch indices are drawn per seed in blocks of _BLOCK_ENTRIES // batch_size steps (_PairStream).
_BLOCK_ENTRIES = 1 << 16


def minibatch_loss_and_gradient(
    log_pi: Tensor, log_mu: Tensor, pairs: Tensor, index: Tensor, loss: PairLoss
) -> tuple[Tensor, Tensor]:
    r"""Minibatch-mean loss (B,) and its exact gradient in the logits (B, K).

    .. math:: \frac{\partial \hat{\mathcal L}_b}{\partial\theta_k}
              = \frac1M \sum_{m} \ell'(h_{bm})\,\bigl([k = w_{bm}] - [k = l_{bm}]\bigr)

    Parameters
    ----------
    log_pi : Tensor, shape (B, K)
        Current log-policies (``theta`` up to a constant per row).
    log_mu : Tensor, shape (K,) or (B, K)
        Reference log-policy.
    pairs : Tensor of int64, shape (N, 2)
        The data set, rows ``(winner, loser)``.
    index : Tensor of int64, shape (B, M)
        Row ``b`` holds the data-set rows of its minibatch (repeats allowed).
    loss : callable
        Per-pair loss of the margin, elementwise on (B, M) (hyperparameters broadcast as (B, 1)).

    Returns
    -------
    tuple of Tensor
        The loss (B,) and the gradient (B, K); each gradient row sums to 0.

    Notes
    -----
    An engine function: ``pairs`` and ``index`` are not validated (``dataset_run`` does that).

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (17) and Sec. 5.4 (sampled loss and protocol).
    """
    winners, losers = pairs[:, 0][index], pairs[:, 1][index]  # (B, M)
    ratio = log_pi - log_mu  # (B, K) log(pi / mu); the softmax normaliser cancels in h
    value, slope = value_and_derivative(loss, _margins(ratio, winners, losers))
    return value.mean(-1), _gradient(log_pi, winners, losers, slope)


def _margins(ratio: Tensor, winners: Tensor, losers: Tensor) -> Tensor:
    """Margins ``h(y_w, y_l)`` (..., M) from log-ratios ``log(pi / mu)`` (..., K), indices (..., M)."""
    return ratio.gather(-1, winners) - ratio.gather(-1, losers)


def _gradient(like: Tensor, winners: Tensor, losers: Tensor, slope: Tensor) -> Tensor:
    """Mean over the M columns of ``slope * (e_w - e_l)``, shaped like ``like`` (..., K)."""
    grad = torch.zeros_like(like)  # a fresh tensor: the in-place scatters touch no input
    # dh(w, l)/dtheta_k = [k = w] - [k = l]: +l'(h) at the winner, -l'(h) at the loser.
    grad.scatter_add_(-1, winners, slope).scatter_add_(-1, losers, -slope)
    return grad / slope.shape[-1]


class _PairStream:
    """Minibatch winners and losers per seed, drawn block by block; ``rows(t)`` gives step t's.

    Seed ``s`` draws its data-set rows with its own generator as ``torch.randint(N, (block, M))``,
    block after block (one RNG call per block, not per step; on CPU a block draw equals the same
    draws made step by step). Blocks are always drawn whole and their size depends only on M, so a
    seed's minibatches do not depend on ``steps`` or on the other rows of the call.
    """

    def __init__(self, generators: list[torch.Generator], pairs: Tensor, batch_size: int):
        self.generators = generators
        self.pairs = pairs  # (N, 2)
        self.size = (max(1, _BLOCK_ENTRIES // batch_size), batch_size)  # (block, M)
        self.block_id = -1
        self.winners = self.losers = torch.empty(0, dtype=torch.long)

    def rows(self, t: int) -> tuple[Tensor, Tensor]:
        """Winners and losers of step ``t``, each of shape (S, M)."""
        block = self.size[0]
        if t // block != self.block_id:  # the loop calls t = 0, 1, 2, ...: each block is drawn once
            n = self.pairs.shape[0]
            index = torch.stack(
                [torch.randint(n, self.size, generator=g) for g in self.generators], dim=1
            )
            # Step-major (block, S, M), so that each step's slice is contiguous.
            self.winners, self.losers = self.pairs[:, 0][index], self.pairs[:, 1][index]
            self.block_id = t // block
        return self.winners[t % block], self.losers[t % block]


def _resolve_loss(
    loss: Any, tau: Any, beta: Any
) -> tuple[str, Callable[..., Tensor], str | None, Any]:
    """(name, loss function, strength keyword or None, strength values or None)."""
    if tau is not None and beta is not None:
        raise ValueError("give tau or beta (the KL strength; either name is accepted), not both")
    strength = tau if tau is not None else beta
    if isinstance(loss, str):
        if loss not in DATASET_LOSSES:
            raise ValueError(
                f"loss must be one of {sorted(DATASET_LOSSES)} or a callable, got {loss!r}"
            )
        fn, key, fixed = DATASET_LOSSES[loss]
        if strength is None:
            raise ValueError(f"loss {loss!r} needs its KL strength: pass tau=... (or beta=...)")
        return loss, functools.partial(fn, **fixed), key, strength
    if not callable(loss):
        raise ValueError(
            f"loss must be a name in {sorted(DATASET_LOSSES)} or a callable, got {type(loss).__name__}"
        )
    name = getattr(loss, "__name__", "custom")
    name = "custom" if name.startswith("<") else name  # a lambda
    if strength is None:
        return name, loss, None, None
    return name, loss, ("tau" if tau is not None else "beta"), strength


def _strengths(values: Any, name: str) -> tuple[Tensor, bool]:
    """Strengths as a (G,) float64 tensor, each > 0, and whether a sequence was given."""
    v = as_tensor(values, name)
    if v.ndim > 1 or v.numel() == 0:
        raise ValueError(
            f"{name} must be a number or a non-empty 1-D sequence, got shape {tuple(v.shape)}"
        )
    if bool((v <= 0).any()):
        raise ValueError(f"{name} must be > 0, got {v.tolist()}")
    return v.reshape(-1), v.ndim == 1


def _generators(seeds: Any) -> tuple[list[torch.Generator], list[int]]:
    """One generator per seed row and the seeds on record (-1 for a caller's generator)."""
    if isinstance(seeds, torch.Generator):
        return [seeds], [-1]
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        n = as_int(seeds, "seeds", minimum=1)
        entries: list[Any] = list(range(n))
    elif isinstance(seeds, (np.ndarray, Tensor)) and seeds.ndim == 1:
        entries = seeds.tolist()
    elif isinstance(seeds, Sequence) and not isinstance(seeds, str):
        entries = list(seeds)
    else:
        raise ValueError(
            f"seeds must be a count, a sequence of ints or a torch.Generator, got {type(seeds).__name__}"
        )
    if not entries:
        raise ValueError("seeds must be a count >= 1, a non-empty sequence of ints, or a generator")
    gens = [as_generator(s, "seeds") for s in entries]  # ints >= 0 or generators; else ValueError
    return gens, [-1 if isinstance(s, torch.Generator) else int(s) for s in entries]


def dataset_run(
    mu: Any,
    pairs: Any,
    *,
    loss: str | Callable[..., Tensor],
    tau: Any = None,
    beta: Any = None,
    steps: int = 18_000,
    batch_size: int = 9,
    lr: float = 0.01,
    optimizer: str = "adam",
    seeds: Any = None,
    minibatch: bool = True,
) -> Trajectory:
    r"""Train a softmax policy on a finite data set of (winner, loser) pairs, sampled or exact.

    The IPO paper's toy protocol (Azar et al., arXiv:2310.12036v2, Sec. 5.4): logits start at
    :math:`\log\mu` (:math:`\pi_0 = \mu`); each step draws, per run, ``batch_size`` rows of ``pairs``
    uniformly with replacement and takes an optimiser step on the minibatch mean of
    :math:`\ell(h(y_w, y_l))` with its exact gradient (``minibatch_loss_and_gradient``).

    .. math:: \theta_{t+1} = \mathrm{Adam}\Bigl(\theta_t,\
              \nabla_\theta \tfrac1M \textstyle\sum_{m} \ell\bigl(h_{\theta_t}(w_{tm}, l_{tm})\bigr)\Bigr)

    Parameters
    ----------
    mu : array-like, shape (K,)
        Reference policy, strictly positive (the start and the KL anchor in the margins).
    pairs : array-like of int, shape (N, 2)
        The data set D, rows ``(winner, loser)`` with indices in ``[0, K)``; e.g. the paper's
        D1 = ``[(0, 1), (1, 2), (0, 2)]``.
    loss : str or callable
        A name in ``DATASET_LOSSES`` (``"dpo"``, ``"ipo"``, ``"slic"``, ``"gpo_<f>"``), or a per-pair
        loss of the margin. A callable gets the strength as the keyword it was given under
        (``loss(h, tau=...)`` or ``loss(h, beta=...)``), or nothing when neither is given.
    tau, beta : float or sequence of float > 0
        KL strength (for named losses either name works). A sequence of G values runs G groups.
    steps : int >= 0, default 18000
    batch_size : int >= 1, default 9
        Minibatch size M (9 in arXiv v2; 90 in the AISTATS version according to TRL).
    lr : float > 0, default 0.01
    optimizer : {"adam", "gd"}, default "adam"
        Adam uses (beta1, beta2, eps) = (0.9, 0.999, 1e-8), the paper's Optax defaults.
    seeds : int, sequence of int, or torch.Generator, optional
        Minibatch mode only. A count S runs seeds ``0 .. S-1`` (default 10); a sequence runs those
        seeds (a ``torch.Generator`` may stand for a seed); a generator runs one row drawing from it.
        Each seed has its own ``torch.Generator``, so a seed's row does not depend on which other
        seeds or strengths share the call, and every strength sees the same minibatches of a seed.
    minibatch : bool, default True
        ``False``: the exact full-data-set gradient (the expectation of the minibatch gradient);
        deterministic, no seeds.

    Returns
    -------
    Trajectory
        Minibatch mode: batched, B = G * S rows, strength-major (row ``g * S + s`` is strength
        ``g``, seed ``s``). Exact mode: one row per strength, unbatched for a scalar strength.
        ``losses`` is the full data-set loss (``population.dataset_loss``) at each iterate, not the
        noisy minibatch loss. ``P`` is the empirical preference matrix of D (win fractions, 1/2 for
        pairs never compared); ``traj.target(...)`` solutions assume pairs from ``nu x nu`` and are
        *not* the minimisers of this data-set loss. ``hyper`` records the protocol (``tau`` or
        ``beta`` and ``seed`` per row, ``lr``, ``optimizer``, ``batch_size``, ``steps``,
        ``minibatch``, ``pairs``, ``n_seeds``, ``loss``, Adam's ``betas`` and ``eps``).

    Raises
    ------
    ValueError
        On a bad ``mu``; ``pairs`` empty, non-integer or out of range; ``batch_size < 1``;
        ``steps < 0``; ``lr <= 0``; an unknown ``loss`` or ``optimizer``; a missing or non-positive
        strength; bad ``seeds``, or ``seeds`` given with ``minibatch=False``.
    DivergenceError
        (a ValueError and a FloatingPointError) if the run leaves float64 (an ``lr`` far too large,
        a strength too extreme for the loss): the message names the step, the row and the argument.

    Notes
    -----
    On D1 the DPO infimum is at infinite margins (:math:`\pi \to (1, 0, 0)`), while IPO has the
    least-squares minimiser :math:`\pi \propto (e^{2/(3\tau)}, e^{1/(3\tau)}, 1)` (derived for this
    suite: :math:`h_{ab} = h_{bc} = 1/(3\tau)` in Eq. (17)). The data set printed as
    D3 = ``[(0, 1), (1, 0)]`` gives action 2 no gradient.

    The paper starts from logits 0, i.e. :math:`\pi_0 = \mu` for its uniform ``mu``; starting at
    :math:`\log\mu` keeps :math:`\pi_0 = \mu` for any ``mu``. Minibatch rows are drawn per seed
    as ``torch.randint(len(pairs), (block, batch_size), generator=g_seed)`` (see ``_PairStream``).
    The recorded loss adds one evaluation of the N data-set margins per step, cheap for the toys.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Sec. 5.4 (protocol), Eq. (4) (DPO), Eq. (17) (sampled IPO).
    Kingma & Ba, arXiv:1412.6980v9, Algorithm 1 (Adam).

    Examples
    --------
    Exact IPO on the paper's D1 reaches :math:`\pi \propto (e^{2/3}, e^{1/3}, 1)` for tau = 1:

    >>> D1 = [(0, 1), (1, 2), (0, 2)]
    >>> exact = dataset_run([1/3, 1/3, 1/3], D1, loss="ipo", tau=1.0, steps=100, optimizer="gd",
    ...                     lr=0.5, minibatch=False)
    >>> [round(x, 4) for x in exact.final.tolist()]
    [0.4484, 0.3213, 0.2302]

    The sampled protocol, 3 seeds x 2 strengths, rows strength-major:

    >>> traj = dataset_run([1/3, 1/3, 1/3], D1, loss="dpo", tau=[0.1, 1.0], steps=100, seeds=3)
    >>> traj.log_policies.shape, traj.hyper["seed"].tolist()
    (torch.Size([6, 101, 3]), [0, 1, 2, 0, 1, 2])
    """
    mu_t = as_policy(mu, "mu", positive=True)
    k = mu_t.shape[-1]
    pairs_t = torch.as_tensor(as_index_pairs(pairs, "pairs", k), dtype=torch.long)  # (N, 2)
    steps = as_int(steps, "steps", minimum=0)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    lr_value = as_positive_float(lr, "lr")
    if not isinstance(minibatch, bool):
        raise ValueError(f"minibatch must be True or False, got {minibatch!r}")
    name, fn, key, strength = _resolve_loss(loss, tau, beta)
    if key is not None:
        values, grouped = _strengths(strength, "tau" if tau is not None else "beta")
    else:
        values, grouped = torch.ones(1, dtype=DTYPE), False
    g = values.numel()

    if minibatch:
        generators, seed_list = _generators(10 if seeds is None else seeds)
    elif seeds is not None:
        raise ValueError("seeds: the exact mode (minibatch=False) is deterministic; pass no seeds")
    else:
        generators, seed_list = [], []
    s = max(1, len(generators))
    b = g * s
    row_strength = values.repeat_interleave(s)  # (B,) strength-major rows
    pair_loss = fn if key is None else functools.partial(fn, **{key: row_strength[:, None]})
    log_mu = mu_t.log().expand(b, k)
    n = pairs_t.shape[0]
    whole_w, whole_l = pairs_t[:, 0].expand(b, n), pairs_t[:, 1].expand(b, n)  # (B, N)
    stream = _PairStream(generators, pairs_t, batch_size) if minibatch else None
    m = batch_size if minibatch else 0
    # Validate the loss and its hyperparameters once; the loop then calls its unchecked kernels.
    value_and_slope = prepare(pair_loss, torch.zeros(b, m + n, dtype=DTYPE))
    opt = make_optimizer(optimizer, torch.full((b,), lr_value, dtype=DTYPE))

    def step(log_pi: Tensor, t: int) -> tuple[Tensor, Tensor]:
        ratio = log_pi - log_mu  # (B, K)
        h_whole = _margins(ratio, whole_w, whole_l)  # (B, N)
        if stream is None:
            value, slope = value_and_slope(h_whole)
            return value.mean(-1), _gradient(ratio, whole_w, whole_l, slope)
        # Rows are strength-major, (G, S) = (strength, seed): every strength of a seed shares its
        # minibatches (common random numbers), through expanded views rather than copies.
        w, lo = (x.expand(g, s, m) for x in stream.rows(t))  # (G, S, M)
        ratio_gs = ratio.view(g, s, k)
        # One loss call on [minibatch | whole data set]: the gradient from the first M columns, the
        # recorded loss (the data-set loss at this iterate) from the last N.
        h = torch.cat([_margins(ratio_gs, w, lo).view(b, m), h_whole], dim=-1)  # (B, M + N)
        value, slope = value_and_slope(h)
        grad = _gradient(ratio_gs, w, lo, slope[:, :m].view(g, s, m))
        return value[:, m:].mean(-1), grad.view(b, k)

    theta0 = log_mu.clone()
    strength_name = "tau" if tau is not None else "beta"
    step_advice = (
        "Use a smaller lr (Adam moves each logit by about lr per step; the paper's and the "
        "default lr is 0.01)."
        if optimizer == "adam"
        else "Use a smaller lr."
    )
    blame = Blame(
        Knob("lr", lr_value, advice=step_advice),
        Knob(strength_name, row_strength, advice=f"Use a {strength_name} nearer 1.")
        if key is not None
        else Knob(
            "loss", advice="Check the loss: it is not finite at margin 0 or its slope is not."
        ),
        row_strength
        if key is not None
        else None,  # a custom loss's own scale is unknown: inf/NaN only
        strength_name,
    )
    log_policies, losses = run(
        theta0,
        step,
        opt,
        steps,
        blame=blame,
        algorithm=f"dataset_run ({name})",
        batched=minibatch or grouped,
    )

    batched = minibatch or grouped
    hyper: dict[str, Any] = {
        "lr": lr_value,
        "optimizer": optimizer,
        "steps": steps,
        "minibatch": minibatch,
        "batch_size": batch_size if minibatch else None,
        # A tuple, not a tensor: Trajectory.__getitem__ would slice an (N, 2) tensor when N == B.
        "pairs": tuple((int(w), int(lo)) for w, lo in pairs_t.tolist()),
        "n_seeds": len(generators) if minibatch else 0,
        "loss": name,
        "protocol": "Azar et al., arXiv:2310.12036v2, Sec. 5.4",
    }
    if isinstance(opt, Adam):
        hyper.update(betas=opt.betas, eps=opt.eps)
    if key is not None:
        hyper[key] = row_strength if batched else float(row_strength[0])
    if minibatch:
        hyper["seed"] = torch.tensor(seed_list * g, dtype=torch.long)
    P = from_comparisons(pairs_t.numpy(), k, prior=0.0)  # empirical win fractions of D
    if batched:
        return Trajectory(
            log_policies,
            losses,
            f"dataset_{name}",
            P.expand(b, k, k).clone(),
            mu_t.expand(b, k).clone(),
            hyper,
        )
    return Trajectory(
        log_policies[0], None if losses is None else losses[0], f"dataset_{name}", P, mu_t, hyper
    )
