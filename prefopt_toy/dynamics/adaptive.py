r"""beta-DPO: a batch-level beta from running statistics of the margin, exactly and sampled.

The official code (``junkangwu/beta-DPO``, ``trainers.py``), per batch of pairs with raw log-ratio
margins :math:`A_i = h_i`:

1. update running means (EMA weight 0.9, both starting at 0) of the batch mean :math:`M` and the
   batch standard deviation :math:`S` of the margins, before the loss;
2. keep a fraction ``1 - mode_weight`` of the batch, sampled without replacement with weights
   :math:`\exp(-\tfrac12((A_i - M)/S)^2)`;
3. :math:`\beta_b = \beta\,(1 + a(\bar A_{kept} - M))`, clamped at 1e-3 and detached;
4. the loss is the mean of :math:`-\log\sigma(\beta_b h_i)` over the kept pairs.

``beta_dpo`` runs this exactly in the infinite-batch limit (``batch_size=None``): the batch mean
and standard deviation become the population ones under the (winner, loser) distribution, and the
weighted sampling of a fraction f keeps each pair with probability :math:`1 - e^{-\lambda w}`, with
:math:`\lambda` set so that a fraction f is kept (successive sampling's large-population limit,
Rosén 1997). With an integer ``batch_size`` it either takes the exact expectation over every
minibatch of that size and every draw of the kept pairs (``minibatches="exact"``, small b), or runs
the official algorithm on seeded random minibatches (``"sampled"``): the estimator beside the
exact one. At the start every margin is 0, so
:math:`S = 0`; the weights are then taken as 1 (the limit of equal margins).

The state (M, S) is part of the fixed point: ``hyper`` records M, S and :math:`\beta_b` per step.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_generator, as_int
from prefopt_toy.losses.pairwise import dpo_loss

from .batch import unit_interval
from .objective import offline_pairs, run_objective, stack_series
from .preference import DEFAULT_STEPS, _smooth_lr, _strength
from .trajectory import Trajectory

EMA = 0.9
"""The official code's running-average weight (``gamma=0.9``)."""
BETA_FLOOR = 1e-3
"""The official code's clamp of the batch beta."""


def keep_probabilities(
    log_weights: Tensor, probs: Tensor, fraction: Tensor, start: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Inclusion probabilities :math:`1 - e^{-\lambda w}` whose ``probs``-mean is ``fraction``.

    ``log_weights`` (log w, -inf for a weight of 0) and ``probs`` (B, N) (probs summing to 1 per
    row), ``fraction`` (B,) in (0, 1]. :math:`\lambda` solves the kept mean
    :math:`f(\lambda) = \sum_i p_i (1 - e^{-\lambda w_i})` = ``fraction`` by Newton's method in
    :math:`\lambda` (f is increasing and concave: from below the root the iterates rise to it
    without overshooting), taken in log space (:math:`u = \log \lambda`,
    :math:`u \leftarrow u + \log(1 + (F - f) / (\lambda f'))`; above the root, where that step
    can pass :math:`\lambda = 0`, Newton's step in u) inside a bisection bracket wide
    enough for the weights given; a step that leaves the bracket is replaced by the midpoint, so
    the search converges as bisection at worst and quadratically near the root. A weight of
    1e-320 is still kept where the fraction needs it. A fraction of 1 keeps everything; a fraction the positive
    weights cannot reach keeps all of them.

    Returns the probabilities (B, N) and u (B,); ``start`` (B,), a previous u, warm-starts the
    search (a trajectory's u moves little from step to step: two or three Newton steps).
    """
    finite = torch.isfinite(log_weights) & (probs > 0)
    spread = torch.where(finite, log_weights.abs(), 0.0).amax(-1)
    lo = -(spread + 60.0)
    hi = spread + 60.0
    u = torch.zeros_like(lo) if start is None else torch.minimum(torch.maximum(start, lo), hi)
    eps = 4 * torch.finfo(lo.dtype).eps
    for _ in range(220):  # bisection alone shrinks the bracket below 1e-60 of its width
        x = torch.exp(u[:, None] + log_weights)  # lambda w, 0 for a weight of 0
        f = (-torch.expm1(-x) * probs).sum(-1) - fraction
        lo = torch.where(f < 0, u, lo)
        hi = torch.where(f < 0, hi, u)
        slope = (probs * x * torch.exp(-x)).sum(-1)
        # below the root Newton's step in lambda = e^u (taken in log space) rises without
        # overshooting; above it that step can pass lambda = 0, so Newton's step in u is taken
        step = torch.where(f > 0, u - f / slope, u + torch.log1p(-f / slope))
        inside = torch.isfinite(step) & (step >= lo) & (step <= hi)
        new = torch.where(inside, step, (lo + hi) / 2)
        scale = torch.maximum(torch.maximum(lo.abs(), hi.abs()), torch.ones_like(lo))
        done = ((new - u).abs() <= eps * scale) | (hi - lo <= eps * scale)
        u = new
        if bool(done.all()):
            break
    p = -torch.expm1(-torch.exp(u[:, None] + log_weights))
    return torch.where(fraction[:, None] >= 1.0, torch.ones_like(p), p), u


MAX_TERMS = 2_000_000
"""The largest enumeration (batches x ordered selections x kept pairs) ``minibatches="exact"`` runs."""


def _ordered_batches(n_cells: int, b: int) -> Tensor:
    """Every ordered batch of ``b`` cells out of ``n_cells``: indices (n_cells**b, b)."""
    return torch.tensor(list(itertools.product(range(n_cells), repeat=b)), dtype=torch.long)


def _ordered_selections(b: int, m: int) -> Tensor:
    """Every ordered draw of ``m`` distinct positions out of ``b``: (b! / (b - m)!, m)."""
    return torch.tensor(list(itertools.permutations(range(b), m)), dtype=torch.long)


def selection_probabilities(weights: Tensor, selections: Tensor) -> Tensor:
    r"""Probability of each ordered draw without replacement (``torch.multinomial``'s scheme).

    ``weights`` (..., b), ``selections`` (Q, m): :math:`\prod_k w_{i_k} / (W - \sum_{j<k} w_{i_j})`,
    shape (..., Q). Weights that underflowed to 0 count as the smallest normal float.
    """
    # a weight that underflowed to 0 is drawn last (torch.multinomial refuses to draw it at all)
    w = weights.clamp_min(torch.finfo(weights.dtype).tiny)
    b = w.shape[-1]
    q, m = selections.shape
    # not_yet[q, k, j]: position j is still in the urn at the k-th draw of selection q; the
    # remaining weight is summed directly (no total minus drawn: that cancels to 0 or below)
    drawn = torch.zeros(q, m, b, dtype=w.dtype)
    for k in range(1, m):
        drawn[:, k] = drawn[:, k - 1]
        drawn[torch.arange(q), k, selections[:, k - 1]] = 1.0
    remaining = w[..., None, None, :].mul(1.0 - drawn).sum(-1)  # (..., Q, m)
    return (w[..., selections] / remaining).prod(-1)


def beta_dpo(
    P: Any,
    mu: Any,
    *,
    steps: int = DEFAULT_STEPS,
    beta: Any = None,
    tau: Any = None,
    a: Any = 0.6,
    mode_weight: Any = 0.2,
    batch_size: int | None = None,
    minibatches: str | None = None,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    seed: Any = None,
) -> Trajectory:
    r"""beta-DPO from :math:`\pi_0 = \mu`, exact (infinite batch) or on sampled minibatches.

    Parameters
    ----------
    beta : the base strength :math:`\beta_0` (``tau`` accepted as its alias).
    a : float >= 0, default 0.6
        Scaling of the batch beta (the README's example; the shipped config's ``a = 0`` is DPO).
    mode_weight : float in [0, 1), default 0.2
        The fraction of each batch dropped by the Gaussian filter.
    batch_size : int >= 2, optional
        None: the exact infinite-batch dynamics. An int: minibatches of that size drawn from the
        (winner, loser) distribution, see ``minibatches``.
    minibatches : {"exact", "sampled"}, optional
        With ``batch_size`` (default: "sampled" when a ``seed`` is given, else "exact"): "exact" takes the expectation of each step's loss over every ordered
        minibatch and every ordered draw of the kept pairs, by enumeration (small b only: at most
        ``MAX_TERMS`` terms), with the running statistics updated by the expected batch mean and
        standard deviation (a mean-field state); "sampled" runs the official algorithm on seeded
        random minibatches (needs ``seed``), the estimator a real run sees.
    P, mu, nu, labels, lr, optimizer, seed : as ``dpo`` (default step ``1.6 / beta**2``).

    Returns
    -------
    Trajectory
        ``hyper["running_mean"]``, ``hyper["running_std"]``, ``hyper["batch_beta"]``: (B, steps).

    References
    ----------
    Wu et al., arXiv:2407.08639v2, Sec. 4 (dynamic beta calibration and beta-guided filtering);
    official code ``junkangwu/beta-DPO`` ``trainers.py::preference_loss``.
    """
    b, key = _strength(beta, tau, "beta_dpo")
    lr, blame = _smooth_lr(b, key, 0.25, False, "beta_dpo", lr, optimizer)
    batch, h, weights = offline_pairs(
        P, mu, nu=nu, labels=labels, seed=None, lr=lr, beta=b, a=a, mode_weight=mode_weight
    )
    if bool((h["a"] < 0).any()):
        raise ValueError("a must be >= 0 (the scaling of the batch beta)")
    drop = unit_interval(h["mode_weight"], "mode_weight")
    if bool((drop >= 1).any()):
        raise ValueError("mode_weight must be < 1 (the fraction of each batch dropped)")
    W = weights()
    one_action = batch.n_actions == 1  # no pair of different actions, nothing to learn
    W_total = W.sum((-1, -2), keepdim=True)
    Wn = (W / torch.where(W_total > 0, W_total, 1.0)).flatten(1)  # (B, K*K) over (winner, loser)
    bsz = None if batch_size is None else as_int(batch_size, "batch_size", minimum=2)
    if minibatches is None:
        minibatches = "exact" if seed is None else "sampled"
    if minibatches not in ("exact", "sampled"):
        raise ValueError(f"minibatches must be 'exact' or 'sampled', got {minibatches!r}")
    sampled = bsz is not None and minibatches == "sampled"
    if sampled and seed is None:
        raise ValueError("minibatches='sampled' needs a seed: pass seed=...")
    exact_small = bsz is not None and not sampled
    if exact_small:
        k = batch.n_actions
        cells = torch.tensor(
            [w * k + lo for w in range(k) for lo in range(k) if w != lo], dtype=torch.long
        )
        m_keep = {int(bsz * (1 - float(x))) for x in drop}
        if len(m_keep) != 1:
            raise ValueError("minibatches='exact' needs one mode_weight for every batch row")
        m = max(m_keep.pop(), 1)
        n_batches = len(cells) ** bsz
        n_sel = math.perm(bsz, m)
        terms = n_batches * n_sel * m
        if terms > MAX_TERMS:
            raise ValueError(
                f"batch_size = {bsz} needs {terms} terms per step for minibatches='exact' "
                f"(at most {MAX_TERMS}); use a smaller batch_size or minibatches='sampled'"
            )
        batches = _ordered_batches(len(cells), bsz)  # (S, b) indices into cells
        selections = _ordered_selections(bsz, m)  # (Q, m)
        Wc = Wn[:, cells]  # (B, N)
        batch_prob = Wc[:, batches].prod(-1)  # (B, S)
    gen = None if seed is None else as_generator(seed)
    log_mu = batch.log_mu
    n_rows = batch.size
    state = {
        "M": torch.zeros(n_rows, dtype=torch.float64),
        "S": torch.zeros(n_rows, dtype=torch.float64),
        "u": torch.zeros(n_rows, dtype=torch.float64),  # log lambda of the last kept fraction
    }
    hist: dict[str, list[Tensor]] = {"M": [], "S": [], "beta": []}

    def update(A: Tensor, probs: Tensor) -> None:
        mean = (probs * A).sum(-1)
        std = ((probs * (A - mean[:, None]) ** 2).sum(-1)).sqrt()
        state["M"] = EMA * state["M"] + (1 - EMA) * mean
        state["S"] = EMA * state["S"] + (1 - EMA) * std

    def log_gauss_at(A: Tensor, M: Tensor, S: Tensor, present: Tensor | None = None) -> Tensor:
        # log of the Gaussian weights, shifted so the largest present one is exactly 0: sampling
        # without replacement (and the kept fraction's lambda) is unchanged by scaling every
        # weight of a batch alike, and no weight underflows to 0 far from the running mean.
        z2 = torch.where(S > 0, (A - M) / torch.where(S > 0, S, 1.0), 0.0) ** 2
        z2_present = z2 if present is None else torch.where(present, z2, float("inf"))
        return -0.5 * (z2 - z2_present.min(-1, keepdim=True).values)

    def gauss(A: Tensor) -> Tensor:  # sampled batches: weights, the smallest normal float at least
        w = log_gauss_at(A, state["M"][:, None], state["S"][:, None]).exp()
        return w.clamp_min(torch.finfo(w.dtype).tiny)

    def log_gauss_cells(A: Tensor) -> Tensor:  # every (winner, loser) cell; weight-0 ones absent
        return log_gauss_at(A, state["M"][:, None], state["S"][:, None], Wn > 0)

    def gauss_b(A: Tensor) -> Tensor:
        return log_gauss_at(A, state["M"][:, None, None], state["S"][:, None, None]).exp()

    def objective(lp: Tensor, t: int) -> Tensor:
        if one_action:
            return 0.0 * lp.sum(-1)
        g = lp - log_mu
        H = (g[:, :, None] - g[:, None, :]).flatten(1)  # (B, K*K)
        A = H.detach()
        if exact_small:
            Ab = A[:, cells][:, batches]  # (B, S, b)
            Hb = H[:, cells][:, batches]
            state["M"] = EMA * state["M"] + (1 - EMA) * (batch_prob * Ab.mean(-1)).sum(-1)
            state["S"] = EMA * state["S"] + (1 - EMA) * (batch_prob * Ab.std(-1)).sum(-1)
            sel_p = selection_probabilities(gauss_b(Ab), selections)  # (B, S, Q)
            A_sel = Ab[..., selections].mean(-1)  # (B, S, Q): mean kept margin of each draw
            beta_sel = (
                h["beta"][:, None, None]
                * (1 + h["a"][:, None, None] * (A_sel - state["M"][:, None, None]))
            ).clamp_min(BETA_FLOOR)
            H_sel = Hb[..., selections]  # (B, S, Q, m)
            loss_sel = dpo_loss(H_sel, beta_sel[..., None]).mean(-1)
            weight = batch_prob[:, :, None] * sel_p
            hist["M"].append(state["M"])
            hist["S"].append(state["S"])
            hist["beta"].append((weight * beta_sel).sum((-1, -2)))
            return (weight * loss_sel).sum((-1, -2))
        if bsz is None:
            update(A, Wn)
            keep, state["u"] = keep_probabilities(log_gauss_cells(A), Wn, 1 - drop, state["u"])
            keep = keep * Wn  # (B, N), detached
            kept = keep / keep.sum(-1, keepdim=True)
            A_used = (kept * A).sum(-1)
        else:
            idx = torch.multinomial(Wn, bsz, replacement=True, generator=gen)  # (B, b)
            A_b = A.gather(1, idx)
            mean, std = A_b.mean(-1), A_b.std(-1)  # torch's unbiased std, as the official code
            state["M"] = EMA * state["M"] + (1 - EMA) * mean
            state["S"] = EMA * state["S"] + (1 - EMA) * std
            n_keep = (bsz * (1 - drop)).long().clamp_min(1)  # int(b (1 - mode_weight))
            wts = gauss(A_b)
            kept_mask = torch.zeros_like(A_b)
            for i in range(n_rows):
                sel = torch.multinomial(wts[i], int(n_keep[i]), replacement=False, generator=gen)
                kept_mask[i, sel] = 1.0
            A_used = (kept_mask * A_b).sum(-1) / kept_mask.sum(-1)
            kept = torch.zeros_like(H).scatter_add(1, idx, kept_mask)
            kept = kept / kept.sum(-1, keepdim=True)
        beta_b = (h["beta"] * (1 + h["a"] * (A_used - state["M"]))).clamp_min(BETA_FLOOR)
        hist["M"].append(state["M"])
        hist["S"].append(state["S"])
        hist["beta"].append(beta_b)
        return (kept * dpo_loss(H, beta_b[:, None])).sum(-1)

    record = {**h, "batch_size": batch_size, "minibatches": minibatches, "labels": labels}
    traj = run_objective(
        batch,
        objective,
        steps=steps,
        lr=h["lr"],
        optimizer=optimizer,
        name="beta_dpo",
        blame=blame,
        record=record,
    )
    for key_h, name in (("M", "running_mean"), ("S", "running_std"), ("beta", "batch_beta")):
        traj.hyper[name] = stack_series(hist[key_h], batch)
    return traj
