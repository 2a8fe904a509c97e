r"""Exact unlearning dynamics on a tabular task: gradient ascent, NPO, DPO to a refusal and AltPO.

The policy is a table of answer logits per context (``prefopt_toy.unlearning.UnlearningTask``),
started at the reference ``mu``. The objective is exact (no sampling):

.. math::
    \mathcal{L}(\pi) = \operatorname*{mean}_{c\ \mathrm{forget}} \ell_c(\pi)
        \;+\; \lambda\,\operatorname*{mean}_{c\ \mathrm{retain}} \bigl(-\log\pi(y_c\mid c)\bigr)

with :math:`\lambda` = ``retain_weight`` and the forget term of the method, :math:`y_f` the forget
context's true answer and :math:`r(y) = \log\pi(y\mid c) - \log\mu(y\mid c)`:

- ``"ga"``: :math:`\ell_c = \log\pi(y_f)` (gradient ascent; with a retain term, GradDiff);
- ``"npo"``: :math:`\ell_c = -\tfrac{2}{\beta}\log\sigma(-\beta r(y_f))` (NPO);
- ``"dpo_refusal"``: :math:`\ell_c = -\log\sigma(\beta(r(y_{idk}) - r(y_f)))`, DPO with the
  refusal preferred over the forget answer (TOFU's "IDK" preference baseline);
- ``"altpo"``: the mean over the context's first ``augment_k`` alternates :math:`\tilde y` of
  :math:`-\tfrac{2}{\beta}\log\sigma(\beta(r(\tilde y) - r(y_f)))`, each alternate a separate
  pair, as the official code builds its batch.

What the tabular policy makes exact (proved in ``tests/unlearning``'s docstrings and tested):

- **GA / NPO squeeze.** A GA step moves the logits by :math:`-\eta(e_f - \pi)`: every other
  answer's logit rises by :math:`\eta\pi(y)`, so :math:`\log\pi(y)/\pi(y')` among the other answers
  grows by :math:`\eta(\pi(y) - \pi(y'))` a step: the ratios are *not* kept; the freed mass
  concentrates on the most likely remaining answer. NPO's step is the same vector times
  :math:`2\sigma(\beta r(y_f)) \in (0, 2)`: under gradient flow it traces GA's path, slower.
- **Pair methods keep the bystanders' proportions.** For DPO to a refusal and AltPO the gradient
  in the logits is zero on every answer outside the pairs, so those answers keep ``mu``'s ratios
  among themselves exactly; AltPO raises all alternates' logits by the same amount each step, so
  inside the alternates :math:`\pi \propto \mu` exactly, and :math:`\pi \to \mu(\cdot\mid A)` only
  as :math:`t \to \infty` (no finite minimiser).

Trajectories run through the shared loop (``loop.run``) on the table flattened to one row of
C * K logits, as ``token_tree`` does: the loop's whole-row renormalisation shifts every logit by
one constant, which leaves every context's softmax unchanged. With ``shared_bias=True`` the row
also holds a per-answer bias shared by all contexts (K more entries; the shift moves each logit
by twice the constant, again without changing a softmax): the only coupling between contexts, so
that a forget term can damage retained answers and a retain term can protect them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_hyper, as_int, as_tensor
from prefopt_toy.losses.pairwise import _dpo_value
from prefopt_toy.losses.unlearning import _altpo_value, _npo_value
from prefopt_toy.policies import normalize_log
from prefopt_toy.unlearning import UnlearningTask

from .divergence import lr_blame
from .loop import run
from .objective import autograd_step
from .optimizers import make_optimizer

__all__ = ["UNLEARNING_METHODS", "UnlearningTrajectory", "unlearn", "unlearning_objective"]

UNLEARNING_METHODS = ("ga", "npo", "dpo_refusal", "altpo")
"""The forget terms of ``unlearn``: gradient ascent, NPO, DPO to the refusal, AltPO."""


@dataclass(frozen=True)
class _Setup:
    task: UnlearningTask
    method: str
    beta: float
    retain_weight: float
    augment_k: int | None
    log_mu: Tensor  # (C, K)
    forget: Tensor  # (F,) long
    retain: Tensor  # (R,) long
    f_answer: Tensor  # (F,) long: the forget contexts' true answers
    r_answer: Tensor  # (R,) long
    alts: Tensor  # (F, m) long: the first augment_k alternates of each forget context


def _setup(task: Any, method: Any, beta: Any, retain_weight: Any, augment_k: Any) -> _Setup:
    if not isinstance(task, UnlearningTask):
        raise ValueError(f"task must be an UnlearningTask, got {type(task).__name__}")
    if method not in UNLEARNING_METHODS:
        raise ValueError(f"method must be one of {UNLEARNING_METHODS}, got {method!r}")
    b = float(as_hyper(beta, "beta"))
    w = float(as_hyper(retain_weight, "retain_weight", positive=False))
    forget = task.forget_contexts
    retain = task.retain_contexts
    if w > 0 and retain.numel() == 0:
        raise ValueError("retain_weight must be 0 for a task without retain contexts")
    if method == "dpo_refusal" and task.refusal is None:
        raise ValueError("method 'dpo_refusal' needs a task with a refusal answer")
    k = None if augment_k is None else as_int(augment_k, "augment_k", minimum=1)
    if method == "altpo":
        shortest = min(len(task.alternates[c]) for c in forget.tolist())
        if k is not None and k > shortest:
            raise ValueError(
                f"augment_k must be <= {shortest} (the fewest alternates of a forget context), "
                f"got {k}"
            )
        m = shortest if k is None else k
        if k is None and any(len(task.alternates[c]) != m for c in forget.tolist()):
            raise ValueError(
                "the forget contexts have different numbers of alternates: give augment_k "
                f"(<= {shortest}) to use the first augment_k of each"
            )
        alts = torch.tensor([task.alternates[c][:m] for c in forget.tolist()], dtype=torch.long)
    else:
        alts = torch.empty(forget.numel(), 0, dtype=torch.long)
    true = task.true_index
    return _Setup(
        task, method, b, w, k, task.mu.log(), forget, retain, true[forget], true[retain], alts
    )


def _value(s: _Setup, log_pi: Tensor) -> Tensor:
    """The objective at per-context log-probabilities ``log_pi`` (..., C, K); shape (...)."""
    lp_f = log_pi[..., s.forget, :]  # (..., F, K)
    mu_f = s.log_mu[s.forget]  # (F, K)
    pf = lp_f.gather(-1, s.f_answer.expand(*lp_f.shape[:-2], -1)[..., None])[..., 0]  # (..., F)
    rf = mu_f.gather(-1, s.f_answer[:, None])[:, 0]  # (F,)
    if s.method == "ga":
        per = pf
    elif s.method == "npo":
        per = _npo_value(pf, rf, s.beta)
    elif s.method == "dpo_refusal":
        refusal = s.task.refusal
        h = (lp_f[..., refusal] - mu_f[:, refusal]) - (pf - rf)
        per = _dpo_value(h, s.beta)
    else:  # altpo: one pair per alternate, averaged over the context's pairs
        idx = s.alts.expand(*lp_f.shape[:-2], -1, -1)
        pa = lp_f.gather(-1, idx)  # (..., F, m)
        ra = mu_f.gather(-1, s.alts)  # (F, m)
        per = _altpo_value(pa, ra, pf[..., None], rf[:, None], s.beta).mean(-1)
    value = per.mean(-1)
    if s.retain_weight > 0:
        lp_r = log_pi[..., s.retain, :]
        nll = -lp_r.gather(-1, s.r_answer.expand(*lp_r.shape[:-2], -1)[..., None])[..., 0]
        value = value + s.retain_weight * nll.mean(-1)
    return value


def unlearning_objective(
    task: UnlearningTask,
    logits: Any,
    *,
    method: str,
    beta: Any = 0.1,
    retain_weight: Any = 0.0,
    augment_k: Any = None,
) -> Tensor:
    r"""The exact unlearning objective at a policy table of logits (C, K): a 0-d tensor.

    Forget term of ``method`` (``UNLEARNING_METHODS``) averaged over the forget contexts, plus
    ``retain_weight`` times the mean retain NLL (see the module docstring for the formulas).

    Parameters
    ----------
    task : UnlearningTask
    logits : Tensor or array-like, shape (C, K)
        Policy logits per context (softmax per row); autograd is kept when it requires grad.
    method : {"ga", "npo", "dpo_refusal", "altpo"}
    beta : float > 0, default 0.1
        NPO's, DPO's and AltPO's beta (ignored by ``"ga"``).
    retain_weight : float >= 0, default 0
        Weight of the retain NLL (AltPO's ``retain_wt``, 1 in its official recipe).
    augment_k : int >= 1, optional
        AltPO: use the first ``augment_k`` alternates of each forget context (default all, which
        must then be equally many in every forget context).

    Returns
    -------
    Tensor, 0-d, float64

    Raises
    ------
    ValueError
        Naming the argument: ``task`` not an UnlearningTask, an unknown ``method``, ``beta <= 0``,
        ``retain_weight < 0`` (or > 0 without retain contexts), ``"dpo_refusal"`` without a
        refusal, ``augment_k`` out of range, ``logits`` not finite or not (C, K).

    References
    ----------
    Maini et al., arXiv:2401.06121v1, Sec. 5 (GA, GradDiff, the "I don't know" preference);
    Zhang et al., arXiv:2404.05868v2, Sec. 3 (NPO); Mekala et al., arXiv:2409.13474v1, Sec. 3
    (AltPO); Rafailov et al., arXiv:2305.18290v3, Eq. (7) (DPO).
    """
    s = _setup(task, method, beta, retain_weight, augment_k)
    return _value(s, normalize_log(_table(task, logits, "logits")))


def _table(task: UnlearningTask, x: Any, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) and x.dtype == torch.float64 else as_tensor(x, name)
    if tuple(t.shape) != (task.n_contexts, task.n_answers):
        raise ValueError(
            f"{name} must have shape ({task.n_contexts}, {task.n_answers}), got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} must be finite")
    return t


def _masked_mass(log_pi: Tensor, mask: Tensor) -> Tensor:
    return (log_pi.exp() * mask).sum(-1)


@dataclass(frozen=True)
class UnlearningTrajectory:
    """Iterates of an unlearning run on a tabular task, and the metrics they imply.

    Every metric is a (steps + 1, ...) tensor, row 0 the reference. Forget-context metrics are
    in the order of ``task.forget_contexts``, retain ones in that of ``task.retain_contexts``.

    References
    ----------
    Maini et al., arXiv:2401.06121v1, Sec. 2 (TOFU's forget / retain split);
    Mekala et al., arXiv:2409.13474v1 (AltPO; plausible alternates vs gibberish).
    """

    task: UnlearningTask
    """The task run on."""
    log_policies: Tensor
    """Per-context log-probabilities, (steps + 1, C, K)."""
    losses: Tensor
    """The objective at each iterate before its update, (steps,)."""
    method: str
    """One of ``UNLEARNING_METHODS``."""
    hyper: dict[str, Any] = field(default_factory=dict)
    """beta, retain_weight, augment_k, lr, optimizer as run."""

    @property
    def steps(self) -> int:
        """Number of updates."""
        return self.log_policies.shape[0] - 1

    @property
    def policies(self) -> Tensor:
        """Per-context answer distributions, (steps + 1, C, K)."""
        return self.log_policies.exp()

    @property
    def forget_prob(self) -> Tensor:
        """Each forget context's true (forgotten) answer's probability, (steps + 1, n_forget)."""
        f = self.task.forget_contexts
        lp = self.log_policies[:, f, :]
        return lp.gather(-1, self.task.true_index[f].expand(lp.shape[0], -1)[..., None])[
            ..., 0
        ].exp()

    @property
    def retain_log_likelihood(self) -> Tensor:
        """``log pi(true answer)`` on each retain context, (steps + 1, n_retain)."""
        r = self.task.retain_contexts
        lp = self.log_policies[:, r, :]
        return lp.gather(-1, self.task.true_index[r].expand(lp.shape[0], -1)[..., None])[..., 0]

    @property
    def kl(self) -> Tensor:
        r""":math:`KL(\pi_t(\cdot\mid c) \| \mu(\cdot\mid c))` per context, (steps + 1, C)."""
        lp = self.log_policies
        # >= 0 exactly; the clamp removes round-off of order 1e-15 where pi = mu
        return (lp.exp() * (lp - self.task.mu.log())).sum(-1).clamp_min(0.0)

    @property
    def retain_kl(self) -> Tensor:
        """``kl`` on the retain contexts, (steps + 1, n_retain)."""
        return self.kl[:, self.task.retain_contexts]

    @property
    def implausible_mass(self) -> Tensor:
        """Mass on implausible answers (neither true, alternate nor refusal), (steps + 1, C)."""
        return _masked_mass(self.log_policies, self.task.implausible_mask)

    @property
    def alternate_mass(self) -> Tensor:
        """Mass on each forget context's alternates, (steps + 1, n_forget)."""
        f = self.task.forget_contexts
        return _masked_mass(self.log_policies[:, f, :], self.task.alternate_mask[f])

    @property
    def refusal_mass(self) -> Tensor:
        """Mass on the refusal answer per context, (steps + 1, C) (zeros without a refusal)."""
        return _masked_mass(self.log_policies, self.task.refusal_mask)


def unlearn(
    task: UnlearningTask,
    *,
    method: str,
    steps: int,
    beta: Any = 0.1,
    retain_weight: Any = 0.0,
    augment_k: Any = None,
    lr: Any = None,
    optimizer: str = "gd",
    start: Any = None,
    shared_bias: bool = False,
) -> UnlearningTrajectory:
    r"""Run an unlearning method on a tabular task from ``start`` (default ``log mu``).

    Each step moves the (C, K) logit table by the exact gradient of ``unlearning_objective`` with
    gradient descent or Adam. ``lr=None`` is 1, or ``2 / beta`` for ``"dpo_refusal"``: AltPO's
    pair loss is DPO's times ``2 / beta``, so at these defaults DPO to the refusal steps exactly as
    AltPO would with the refusal as its one alternate. ``retain_weight > 0`` with ``"ga"`` is
    GradDiff.

    Parameters
    ----------
    task : UnlearningTask
    method : {"ga", "npo", "dpo_refusal", "altpo"}
    steps : int >= 0
    beta, retain_weight, augment_k
        As ``unlearning_objective``.
    lr : float > 0, optional
    optimizer : {"gd", "adam"}, default "gd"
    start : array-like (C, K), optional
        Starting logits (default ``log mu``).
    shared_bias : bool, default False
        Parametrise the logits as :math:`\theta[c, y] = \phi[c, y] + \psi[y]`, with a per-answer
        bias :math:`\psi` shared by all contexts (starting at 0, :math:`\phi` at ``start``): the
        one coupling between contexts, a caricature of the shared weights of a language model.
        Without it every context moves alone, so a forget term never touches a retain context
        and a retain term never touches a forget context.

    Returns
    -------
    UnlearningTrajectory

    Raises
    ------
    ValueError
        As ``unlearning_objective``; ``steps`` not a non-negative integer; ``lr`` not one number
        > 0; an unknown ``optimizer``; ``shared_bias`` not a bool.
    DivergenceError
        If the run leaves float64, naming the step and ``lr`` (or ``beta``, whose default it is).

    References
    ----------
    As ``unlearning_objective``; Ren & Sutherland, arXiv:2407.10490 (the squeezing effect of
    negative gradients on a softmax).

    Examples
    --------
    >>> from prefopt_toy.unlearning import teaching_task
    >>> run = unlearn(teaching_task(), method="altpo", steps=200)
    >>> bool(run.forget_prob[-1].max() < run.forget_prob[0].min())
    True
    """
    s = _setup(task, method, beta, retain_weight, augment_k)
    n_steps = as_int(steps, "steps", minimum=0)
    dpo = method == "dpo_refusal"
    lr_value, blame = lr_blame(
        lr,
        lambda: 2.0 / s.beta if dpo else 1.0,
        strength=("beta", s.beta),
        formula="2 / beta" if dpo else "1",
        algorithm=method,
        optimizer=optimizer,
    )
    lr_t = as_tensor(lr_value, "lr").reshape(-1)
    if lr_t.numel() != 1 or not bool(torch.isfinite(lr_t).all()) or float(lr_t[0]) <= 0:
        raise ValueError(f"lr must be one number > 0, got {lr_t.tolist()}")
    if not isinstance(shared_bias, bool):
        raise ValueError(f"shared_bias must be True or False, got {shared_bias!r}")
    theta0 = s.log_mu if start is None else _table(task, start, "start").detach()
    shape = (task.n_contexts, task.n_answers)
    n_table = task.n_contexts * task.n_answers
    params0 = theta0.reshape(1, -1)
    if shared_bias:  # [phi (C * K), psi (K)]; psi starts at 0
        params0 = torch.cat([params0, torch.zeros(1, task.n_answers, dtype=torch.float64)], -1)

    def logits(flat: Tensor) -> Tensor:  # (..., C * K [+ K]) -> (..., C, K)
        table = flat[..., :n_table].reshape(*flat.shape[:-1], *shape)
        return table + flat[..., None, n_table:] if shared_bias else table

    def objective(lp: Tensor, t: int) -> Tensor:  # lp (1, n_params), normalised over the row
        return _value(s, normalize_log(logits(lp)))

    flat, losses = run(
        params0.clone(),
        autograd_step(objective),
        make_optimizer(optimizer, lr_t),
        n_steps,
        blame=blame,
        algorithm=method,
        batched=False,
    )
    log_policies = normalize_log(logits(flat[0]))
    hyper = {
        "beta": None if method == "ga" else s.beta,
        "retain_weight": s.retain_weight,
        "augment_k": s.alts.shape[1] if method == "altpo" else None,
        "lr": float(lr_t[0]),
        "optimizer": optimizer,
        "shared_bias": shared_bias,
    }
    return UnlearningTrajectory(
        task,
        log_policies,
        torch.empty(0, dtype=torch.float64) if losses is None else losses[0],
        method,
        hyper,
    )
