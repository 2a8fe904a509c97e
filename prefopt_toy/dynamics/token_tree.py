r"""Exact sequence-level DPO, TDPO1 and TDPO2 on a token tree: population objectives and trajectories.

The policy is a table of next-token logits per prefix (``prefopt_toy.tokens.TokenTree``), the
reference ``mu`` a table of next-token probabilities. Pairs of *sequences* are drawn from
``nu x nu`` (``nu`` defaults to the reference's sequence distribution :math:`\mu_{seq}`), the
winner labelled by the game ``P`` over sequences (soft labels: the winner is the row sequence with
probability ``P``; hard: the majority), pairs of one sequence dropped, as in the bandit engine
(``objective.pair_weights``). The per-pair loss is

- ``"dpo"``: sequence-level DPO, ``dpo_loss(u, beta)`` with u the margin of the summed log-ratios,
  a function of the sequence distribution alone;
- ``"tdpo1"`` / ``"tdpo2"``: ``tdpo_loss(u, SeqKL(y_w), SeqKL(y_l), beta, alpha, variant)``, the
  sequential KL with the full next-token distribution at every visited prefix.

The population objective is the exact sum over all N^2 ordered pairs; its autograd gradient in the
logits is the exact expected update. For TDPO2 the stop-gradient sits inside the kernel, so the
autograd "gradient" of the TDPO2 value is the TDPO2 *update field* (the official implementation's
update, in expectation), which is not the gradient of any one scalar function: its fixed points are
where that field vanishes (``token_update_field``), not minima of the reported loss.

Trajectories run through the shared loop (``loop.run``: float64, every iterate recorded, divergence
raised naming the step and the argument) on the table flattened to (1, n_prefixes * V). The loop
renormalises a row with one log-sum-exp over all its entries; that subtracts one constant from every
logit, which leaves each prefix's softmax unchanged, so the flat layout runs the per-prefix policy
exactly, and each recorded iterate is renormalised per prefix afterwards.

One tree, one game, one set of hyperparameters per call (no batch axis: N is a few dozen and a
sweep is a loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_hyper, as_int, as_tensor
from prefopt_toy.losses.pairwise import _dpo_value
from prefopt_toy.losses.population import hard_label_kernel
from prefopt_toy.losses.token import tdpo_kernel
from prefopt_toy.policies import normalize_log
from prefopt_toy.solutions.optima import rlhf_optimum
from prefopt_toy.tokens.games import sequence_game
from prefopt_toy.tokens.tree import TokenTree, prefix_kl_kernel

from .divergence import lr_blame
from .loop import run
from .objective import autograd_step, pair_weights
from .optimizers import make_optimizer

__all__ = [
    "TOKEN_ALGORITHMS",
    "TokenTrajectory",
    "tdpo",
    "token_dpo",
    "token_population_loss",
    "token_preference_optimization",
    "token_update_field",
]

TOKEN_ALGORITHMS = ("dpo", "tdpo1", "tdpo2")


@dataclass(frozen=True)
class _Setup:
    """A validated call: the tree, the game, the reference table and the pair weights."""

    tree: TokenTree
    P: Tensor  # (N, N)
    mu: Tensor  # (n_prefixes, V) probabilities
    log_mu: Tensor  # (n_prefixes, V)
    log_mu_seq: Tensor  # (N,)
    nu: Tensor  # (N,) the pair distribution
    W: Tensor  # (N, N) winner-loser weights, zero diagonal
    algorithm: str
    beta: float
    alpha: float


def _setup(
    tree: Any, P: Any, mu: Any, *, algorithm: str, beta: Any, alpha: Any, nu: Any, labels: Any
) -> _Setup:
    if not isinstance(tree, TokenTree):
        raise ValueError(f"tree must be a TokenTree, got {type(tree).__name__}")
    if algorithm not in TOKEN_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {TOKEN_ALGORITHMS}, got {algorithm!r}")
    P_t = sequence_game(tree, P)
    mu_t = tree.probability_table(mu, "mu", positive=True)
    log_mu = mu_t.log()
    log_mu_seq = tree._sequence_log_probs(log_mu)
    nu_t = log_mu_seq.exp() if nu is None else tree.sequence_distribution(nu, "nu")
    if isinstance(labels, str) and labels == "soft":
        L = P_t
    elif isinstance(labels, str) and labels == "hard":
        L = hard_label_kernel(P_t)
    else:
        raise ValueError(f"labels must be 'soft' or 'hard', got {labels!r}")
    b = float(as_hyper(beta, "beta"))
    a = float(as_hyper(alpha, "alpha", positive=False))
    W = pair_weights(nu_t[None, :], L[None])[0]
    return _Setup(tree, P_t, mu_t, log_mu, log_mu_seq, nu_t, W, algorithm, b, a)


def _value(s: _Setup, log_pi: Tensor) -> Tensor:
    """The expected loss at per-prefix log-probabilities ``log_pi`` (..., n, V); shape (...)."""
    r = s.tree._sequence_log_probs(log_pi) - s.log_mu_seq  # (..., N): log pi(y)/mu(y), summed
    h = r[..., :, None] - r[..., None, :]  # (..., N, N): row = chosen y_w, column = rejected y_l
    if s.algorithm == "dpo":
        per_pair = _dpo_value(h, s.beta)
    else:
        seqkl = s.tree._sequential_kl(prefix_kl_kernel(s.log_mu, log_pi))  # (..., N), mu first
        kl_w = seqkl[..., :, None].expand_as(h)
        kl_l = seqkl[..., None, :].expand_as(h)
        per_pair = tdpo_kernel(h, kl_w, kl_l, s.beta, s.alpha, s.algorithm)
    return (s.W * per_pair).sum((-1, -2))


def token_population_loss(
    tree: TokenTree,
    P: Any,
    mu: Any,
    logits: Any,
    *,
    algorithm: str,
    beta: Any,
    alpha: Any = 0.5,
    nu: Any = None,
    labels: Any = "soft",
) -> Tensor:
    r"""The exact expected per-pair loss of DPO, TDPO1 or TDPO2 at a policy table, a 0-d tensor.

    .. math::
        \mathcal{L}(\pi) = \sum_{y_w \ne y_l} 2\,\nu(y_w)\,\nu(y_l)\,L[y_w, y_l]\;
            \ell(y_w, y_l; \pi)

    with ``L = P`` (soft labels) or the majority labels, and :math:`\ell` the DPO or TDPO loss.

    Parameters
    ----------
    tree : TokenTree
    P : array-like, shape (N, N)
        Preference matrix over ``tree.sequences``.
    mu : array-like, shape (n_prefixes, V)
        Reference next-token probabilities, every entry > 0.
    logits : Tensor or array-like, shape (n_prefixes, V)
        Policy logits; autograd is kept when it requires grad. For ``"tdpo2"`` the gradient of the
        returned value is the TDPO2 update field (the stop-gradient), not the value's gradient.
    algorithm : {"dpo", "tdpo1", "tdpo2"}
    beta : float > 0
    alpha : float >= 0, default 0.5
        TDPO2's KL weight (ignored by DPO and TDPO1).
    nu : array-like, shape (N,), optional
        Distribution the compared sequences are drawn from; default the reference's, :math:`\mu_{seq}`.
    labels : {"soft", "hard"}, default "soft"

    Returns
    -------
    Tensor, 0-d, float64

    Raises
    ------
    ValueError
        Naming the argument: a wrong shape, a ``P`` that is not a preference matrix, a ``mu`` with a
        zero or a row off the simplex, ``beta <= 0``, ``alpha < 0``, an unknown ``algorithm``.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (5) (the population form); Zeng et al., arXiv:2404.11999v5,
    Sec. 4 (TDPO1, TDPO2).
    """
    s = _setup(tree, P, mu, algorithm=algorithm, beta=beta, alpha=alpha, nu=nu, labels=labels)
    return _value(s, tree.log_table(logits))


def token_update_field(
    tree: TokenTree,
    P: Any,
    mu: Any,
    logits: Any,
    *,
    algorithm: str,
    beta: Any,
    alpha: Any = 0.5,
    nu: Any = None,
    labels: Any = "soft",
) -> Tensor:
    """The expected update direction in the logits, shape (n_prefixes, V): a step is ``-lr * field``.

    For DPO and TDPO1 the gradient of ``token_population_loss``; for TDPO2 the gradient with
    ``SeqKL(y_w)`` held fixed (the stop-gradient), whose zeros are TDPO2's fixed points. Arguments
    as ``token_population_loss``.
    """
    s = _setup(tree, P, mu, algorithm=algorithm, beta=beta, alpha=alpha, nu=nu, labels=labels)
    x = tree.log_table(logits).detach()
    with torch.enable_grad():
        theta = x.requires_grad_(True)
        (grad,) = torch.autograd.grad(_value(s, normalize_log(theta)), theta)
    return grad


@dataclass(frozen=True)
class TokenTrajectory:
    """Iterates of DPO / TDPO on a token tree: the table at every step and what it implies.

    References
    ----------
    Zeng et al., arXiv:2404.11999 (TDPO: the sequential KL, per prefix, of ``prefix_kl``);
    Rafailov et al., arXiv:2305.18290v3 (sequence-level DPO).
    """

    tree: TokenTree
    """The tree the policy lives on."""
    log_tables: Tensor
    """Per-prefix next-token log-probabilities, (steps + 1, n_prefixes, V); row 0 the start."""
    losses: Tensor
    """Expected loss at each iterate before its update, (steps,)."""
    algorithm: str
    """``"dpo"``, ``"tdpo1"`` or ``"tdpo2"``."""
    P: Tensor
    """The game over sequences, (N, N)."""
    mu: Tensor
    """The reference table (probabilities), (n_prefixes, V)."""
    hyper: dict[str, Any] = field(default_factory=dict)
    """beta, alpha, lr, optimizer, labels, nu as run."""

    @property
    def steps(self) -> int:
        """Number of updates."""
        return self.log_tables.shape[0] - 1

    @property
    def log_mu(self) -> Tensor:
        """``log mu``, (n_prefixes, V)."""
        return self.mu.log()

    @property
    def sequence_log_probs(self) -> Tensor:
        """``log pi_t(y)`` for every sequence and step, (steps + 1, N)."""
        return self.tree._sequence_log_probs(self.log_tables)

    @property
    def sequence_probs(self) -> Tensor:
        """The sequence distribution at every step, (steps + 1, N); each row sums to 1."""
        return self.sequence_log_probs.exp()

    @property
    def reference_sequence_probs(self) -> Tensor:
        """The reference's sequence distribution, (N,)."""
        return self.tree._sequence_log_probs(self.log_mu).exp()

    @property
    def visits(self) -> Tensor:
        """Probability of passing through each prefix, (steps + 1, n_prefixes)."""
        return self.tree._prefix_log_visits(self.log_tables).exp()

    @property
    def prefix_kl(self) -> Tensor:
        r"""TDPO's per-prefix KL, :math:`KL(\mu(\cdot|s) \| \pi_t(\cdot|s))`, (steps + 1, n_prefixes)."""
        return prefix_kl_kernel(self.log_mu, self.log_tables)

    @property
    def prefix_kl_reverse(self) -> Tensor:
        r""":math:`KL(\pi_t(\cdot|s) \| \mu(\cdot|s))` per prefix, (steps + 1, n_prefixes)."""
        return prefix_kl_kernel(self.log_tables, self.log_mu)

    @property
    def sequential_kl(self) -> Tensor:
        """SeqKL(y) of every sequence at every step, (steps + 1, N) (reference first)."""
        return self.tree._sequential_kl(self.prefix_kl)

    @property
    def sequence_kl(self) -> Tensor:
        r""":math:`KL(\pi_{t,seq} \| \mu_{seq})`, the KL of sequence-level RLHF, (steps + 1,)."""
        log_p = self.sequence_log_probs
        return (log_p.exp() * (log_p - self.tree._sequence_log_probs(self.log_mu))).sum(-1)

    @property
    def entropy(self) -> Tensor:
        """Entropy of the sequence distribution, (steps + 1,)."""
        log_p = self.sequence_log_probs
        return -(log_p.exp() * log_p).sum(-1)

    @property
    def prefix_entropy(self) -> Tensor:
        """Entropy of the next-token distribution at every prefix, (steps + 1, n_prefixes)."""
        return -(self.log_tables.exp() * self.log_tables).sum(-1)

    def class_mass(self, classes: Any) -> Tensor:
        """Mass of each class at every step, (steps + 1, K): ``classes`` as in ``lifted_game``."""
        c = (
            self.tree.classes(classes)
            if isinstance(classes, str)
            else as_tensor(classes, "classes").to(torch.long)
        )
        if tuple(c.shape) != (self.tree.n_sequences,) or bool((c < 0).any()):
            raise ValueError(
                f"classes must be {self.tree.n_sequences} non-negative integers (one per sequence)"
            )
        k = int(c.max()) + 1
        onehot = torch.zeros(self.tree.n_sequences, k, dtype=self.log_tables.dtype)
        onehot[torch.arange(self.tree.n_sequences), c] = 1.0
        return self.sequence_probs @ onehot

    def sequence_optimum(self) -> Tensor:
        r"""Sequence-level DPO's population optimum, :math:`\mu_{seq} e^{\hat r/\beta} / Z`, (N,).

        ``rlhf_optimum`` on the sequence game, with the BT fit under this run's pair distribution
        (Azar et al., arXiv:2310.12036v2, App. B Prop. 4). The tree represents every full-support
        sequence distribution, so sequence-level DPO on the tree converges to it; TDPO has no closed
        form (its KL term moves the answer away from it).
        """
        return rlhf_optimum(
            self.P, self.reference_sequence_probs, float(self.hyper["beta"]), self.hyper["nu"]
        )


def token_preference_optimization(
    tree: TokenTree,
    P: Any,
    mu: Any,
    *,
    algorithm: str,
    beta: Any,
    steps: int,
    alpha: Any = 0.5,
    nu: Any = None,
    labels: Any = "soft",
    lr: Any = None,
    optimizer: str = "gd",
    start: Any = None,
) -> TokenTrajectory:
    r"""Run DPO, TDPO1 or TDPO2 on a token tree from ``start`` (default ``mu``): a :class:`TokenTrajectory`.

    Each step moves the logit table by the exact expected update (``token_update_field``) with
    gradient descent or Adam. ``lr=None`` is ``3 / (beta^2 + beta / 10)``: the margin term's curvature in
    the logits grows like ``beta^2`` and the KL term's (TDPO) like ``beta``. Measured, not proved:
    on a V = 3, T = 3 tree with a random BT game, gradient descent was stable up to ~10 / beta^2
    (beta = 1) and ~1000 (beta = 0.1) for all three algorithms.

    Raises
    ------
    ValueError
        Naming the argument, as ``token_population_loss``; ``steps`` not a non-negative integer;
        ``start`` not an (n_prefixes, V) table of finite logits.
    DivergenceError
        If the run leaves float64, naming the step and ``lr`` (or ``beta`` whose default it is).
    """
    s = _setup(tree, P, mu, algorithm=algorithm, beta=beta, alpha=alpha, nu=nu, labels=labels)
    n_steps = as_int(steps, "steps", minimum=0)
    lr_value, blame = lr_blame(
        lr,
        lambda: 3.0 / (s.beta**2 + s.beta / 10.0),
        strength=("beta", s.beta),
        formula="3 / (beta^2 + beta / 10)",
        algorithm=algorithm,
        optimizer=optimizer,
    )
    lr_t = as_tensor(lr_value, "lr").reshape(-1)
    if lr_t.numel() != 1 or float(lr_t[0]) <= 0:
        raise ValueError(f"lr must be one number > 0, got {lr_t.tolist()}")
    theta0 = s.log_mu if start is None else tree.log_table(start, "start").detach()
    shape = tree.table_shape

    def objective(lp: Tensor, t: int) -> Tensor:  # lp (1, n * V), normalised over the whole row
        return _value(s, normalize_log(lp.reshape(1, *shape)))

    flat, losses = run(
        theta0.reshape(1, -1).clone(),
        autograd_step(objective),
        make_optimizer(optimizer, lr_t),
        n_steps,
        blame=blame,
        algorithm=algorithm,
        batched=False,
    )
    log_tables = normalize_log(flat[0].reshape(n_steps + 1, *shape))
    hyper = {
        "beta": s.beta,
        "alpha": s.alpha if algorithm == "tdpo2" else None,
        "lr": float(lr_t[0]),
        "optimizer": optimizer,
        "labels": labels,
        "nu": None if nu is None else s.nu,
    }
    return TokenTrajectory(
        tree,
        log_tables,
        torch.empty(0, dtype=torch.float64) if losses is None else losses[0],
        algorithm,
        s.P,
        s.mu,
        hyper,
    )


def token_dpo(
    tree: TokenTree, P: Any, mu: Any, *, beta: Any, steps: int, **kwargs: Any
) -> TokenTrajectory:
    """Sequence-level DPO on a token tree (``token_preference_optimization`` with ``"dpo"``).

    Rafailov et al., arXiv:2305.18290v3, Eq. (7), with the sequence log-probabilities summed over
    tokens; converges to ``TokenTrajectory.sequence_optimum()``.
    """
    return token_preference_optimization(
        tree, P, mu, algorithm="dpo", beta=beta, steps=steps, **kwargs
    )


def tdpo(
    tree: TokenTree,
    P: Any,
    mu: Any,
    *,
    beta: Any,
    steps: int,
    variant: str = "tdpo2",
    alpha: Any = 0.5,
    **kwargs: Any,
) -> TokenTrajectory:
    """TDPO1 or TDPO2 on a token tree (Zeng et al., arXiv:2404.11999v5, Sec. 4; ``tdpo_loss``)."""
    if variant not in ("tdpo1", "tdpo2"):
        raise ValueError(f"variant must be 'tdpo1' or 'tdpo2', got {variant!r}")
    return token_preference_optimization(
        tree, P, mu, algorithm=variant, beta=beta, alpha=alpha, steps=steps, **kwargs
    )
