r"""The token-tree bandit: every sequence of a small vocabulary, enumerated, with exact probabilities.

An autoregressive policy over a vocabulary of ``V`` tokens, the last of which (index ``V - 1``) is
the end token EOS, generates one token at a time from the empty prefix. A sequence ends when it
emits EOS or when it holds ``max_length`` tokens (it is then *truncated*: no EOS, as a language
model cut off at its maximum generation length). So the sequences are

- ``(a_1, ..., a_k, EOS)`` for ``0 <= k < max_length`` non-end tokens ``a_i``, and
- ``(a_1, ..., a_T)`` with ``T = max_length`` non-end tokens,

``N = sum_{k<T} (V-1)^k + (V-1)^T`` of them (15 for ``V = 3, T = 3``). A *prefix* (a state
:math:`s_t = (x, y_{<t})` of Zeng et al.) is a string of non-end tokens of length ``< T``: the places
where the policy chooses a next token. There are ``sum_{k<T} (V-1)^k`` of them (7 for
``V = 3, T = 3``). A policy is a table of shape ``(n_prefixes, V)``: row ``s`` is the next-token
distribution :math:`\pi(\cdot \mid s)` as logits (any real row; normalised by a log-softmax per
row) or log-probabilities.

Convention (why no row at depth ``T``): a prefix of ``T`` tokens has no choice left, so it has no
row, contributes no log-probability and no KL. The alternative, a row at depth ``T`` with EOS
forced, gives the same sequence probabilities and the same sums (its log-probability and KL are
0), but carries parameters that never move. Without those rows the map from tables to sequence
distributions is a bijection between tables (up to a constant per row) and full-support
distributions over the ``N`` sequences (``n_prefixes * (V - 1) = N - 1`` free parameters on each
side): the tree parametrisation represents every sequence distribution
(:meth:`TokenTree.table_from_sequences` is the inverse).

Everything is by enumeration and vectorised: the log-probability of each sequence is a gather of
the table along its path, summed (``path_prefix``, ``path_token``, ``path_mask``).

References
----------
Zeng et al., "Token-level Direct Preference Optimization", arXiv:2404.11999v5 (ICML 2024), Sec. 3
(states :math:`s_t`, the per-token forward KL and the sequential KL); official code
Vance0124/Token-level-Direct-Preference-Optimization @ 2a736ec, ``trainers.py::_tdpo_get_batch_logps``
(KL at every labelled completion position, EOS included).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE, as_int, as_policy, as_tensor
from prefopt_toy.policies import normalize_log

__all__ = ["MAX_SEQUENCES", "TokenTree", "prefix_entropy", "prefix_kl"]

MAX_SEQUENCES = 4096
"""Largest number of sequences a tree may have (the engine enumerates all N^2 ordered pairs)."""


def _count(vocab_size: int, max_length: int) -> int:
    content = vocab_size - 1
    return sum(content**k for k in range(max_length)) + content**max_length


@dataclass(frozen=True)
class TokenTree:
    """All sequences and prefixes of a vocabulary with an end token and a maximum length.

    Build it with ``TokenTree(vocab_size, max_length)``; every other field is computed.

    Examples
    --------
    >>> tree = TokenTree(3, 2)
    >>> tree.n_sequences, tree.n_prefixes
    (7, 3)
    >>> tree.sequences[:3]
    ((2,), (0, 2), (0, 0))

    References
    ----------
    Zeng et al., arXiv:2404.11999 (TDPO): the states s_t = (x, y_<t) are this tree's prefixes,
    and a policy is a next-token distribution at each of them.
    """

    vocab_size: int
    """V, the number of tokens including the end token (index V - 1); at least 2."""
    max_length: int
    """T, the most tokens a sequence holds (EOS counted when it is emitted); at least 1."""
    prefixes: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    """The prefixes (decision states), by depth then lexicographically; ``prefixes[0] == ()``."""
    sequences: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    """The sequences in a fixed order: for each prefix in order, its EOS child, then at depth T - 1
    the truncated children of the prefix."""
    path_prefix: Tensor = field(init=False, repr=False, compare=False)
    """(N, T) long: index of the prefix at each position of each sequence (0 past its end)."""
    path_token: Tensor = field(init=False, repr=False, compare=False)
    """(N, T) long: the token emitted at each position (0 past the end)."""
    path_mask: Tensor = field(init=False, repr=False, compare=False)
    """(N, T) float64: 1 at a position of the sequence, 0 past its end."""
    prefix_path_prefix: Tensor = field(init=False, repr=False, compare=False)
    """(n_prefixes, T) long: the prefixes a prefix is reached through (0 past its depth)."""
    prefix_path_token: Tensor = field(init=False, repr=False, compare=False)
    """(n_prefixes, T) long: the tokens that lead to it."""
    prefix_path_mask: Tensor = field(init=False, repr=False, compare=False)
    """(n_prefixes, T) float64: 1 for the first ``depth`` positions."""
    lengths: Tensor = field(init=False, repr=False, compare=False)
    """(N,) long: the number of tokens of each sequence (EOS counted)."""

    def __post_init__(self) -> None:
        v = as_int(self.vocab_size, "vocab_size", minimum=2)
        t = as_int(self.max_length, "max_length", minimum=1)
        n = _count(v, t)
        if n > MAX_SEQUENCES:
            raise ValueError(
                f"vocab_size = {v} and max_length = {t} give {n} sequences; the exact engine "
                f"enumerates all pairs, so at most {MAX_SEQUENCES} are allowed (choose a smaller tree)"
            )
        eos = v - 1
        prefixes = [p for k in range(t) for p in itertools.product(range(eos), repeat=k)]
        index = {p: i for i, p in enumerate(prefixes)}
        sequences: list[tuple[int, ...]] = []
        for p in prefixes:
            sequences.append((*p, eos))
            if len(p) == t - 1:
                sequences.extend((*p, a) for a in range(eos))

        def paths(items: list[tuple[int, ...]]) -> tuple[Tensor, Tensor, Tensor]:
            pre = torch.zeros(len(items), t, dtype=torch.long)
            tok = torch.zeros(len(items), t, dtype=torch.long)
            mask = torch.zeros(len(items), t, dtype=DTYPE)
            for i, seq in enumerate(items):
                for pos, token in enumerate(seq):
                    pre[i, pos] = index[seq[:pos]]
                    tok[i, pos] = token
                    mask[i, pos] = 1.0
            return pre, tok, mask

        seq_paths = paths(sequences)
        prefix_paths = paths(prefixes)
        set_ = object.__setattr__  # a frozen dataclass: the derived fields are set once, here
        set_(self, "vocab_size", v)
        set_(self, "max_length", t)
        set_(self, "prefixes", tuple(prefixes))
        set_(self, "sequences", tuple(sequences))
        set_(self, "path_prefix", seq_paths[0])
        set_(self, "path_token", seq_paths[1])
        set_(self, "path_mask", seq_paths[2])
        set_(self, "prefix_path_prefix", prefix_paths[0])
        set_(self, "prefix_path_token", prefix_paths[1])
        set_(self, "prefix_path_mask", prefix_paths[2])
        set_(self, "lengths", torch.tensor([len(s) for s in sequences], dtype=torch.long))

    # ------------------------------------------------------------------ sizes

    @property
    def eos(self) -> int:
        """The end token, ``vocab_size - 1``."""
        return self.vocab_size - 1

    @property
    def n_prefixes(self) -> int:
        """Number of prefixes (rows of a policy table)."""
        return len(self.prefixes)

    @property
    def n_sequences(self) -> int:
        """N, the number of sequences."""
        return len(self.sequences)

    @property
    def table_shape(self) -> tuple[int, int]:
        """``(n_prefixes, vocab_size)``, the shape of a policy table."""
        return (self.n_prefixes, self.vocab_size)

    def uniform_table(self) -> Tensor:
        """The uniform next-token distribution at every prefix, as probabilities (n_prefixes, V)."""
        return torch.full(self.table_shape, 1.0 / self.vocab_size, dtype=DTYPE)

    # ------------------------------------------------------------------ validation

    def log_table(self, logits: Any, name: str = "logits") -> Tensor:
        """Validate a table of logits (..., n_prefixes, V) and return its per-row log-softmax.

        Keeps autograd. ValueError naming ``name`` on a wrong shape or a non-finite entry.
        """
        t = as_tensor(logits, name)
        if t.ndim < 2 or tuple(t.shape[-2:]) != self.table_shape:
            raise ValueError(
                f"{name} must have shape (..., {self.n_prefixes}, {self.vocab_size}) "
                f"(one row of next-token logits per prefix), got {tuple(t.shape)}"
            )
        return normalize_log(t)

    def probability_table(self, table: Any, name: str = "mu", *, positive: bool = True) -> Tensor:
        """Validate a table of next-token probabilities (n_prefixes, V); each row on the simplex.

        ``positive=True`` (a reference table, whose log appears in every KL) also requires every
        entry > 0. Returns a float64 copy with each row renormalised.
        """
        t = as_tensor(table, name)
        if tuple(t.shape) != self.table_shape:
            raise ValueError(
                f"{name} must have shape ({self.n_prefixes}, {self.vocab_size}) "
                f"(one next-token distribution per prefix), got {tuple(t.shape)}"
            )
        return as_policy(t, name, positive=positive, batched=True)

    def sequence_distribution(self, p: Any, name: str = "p", *, positive: bool = False) -> Tensor:
        """Validate a probability vector over the N sequences."""
        t = as_tensor(p, name)
        if tuple(t.shape) != (self.n_sequences,):
            raise ValueError(
                f"{name} must have shape ({self.n_sequences},) (one entry per sequence), "
                f"got {tuple(t.shape)}"
            )
        return as_policy(t, name, positive=positive)

    # ------------------------------------------------------------------ exact quantities

    def sequence_log_probs(self, logits: Any) -> Tensor:
        r""":math:`\log\pi(y) = \sum_t \log\pi(y_t \mid y_{<t})` for every sequence, shape (..., N).

        A gather of the log-softmaxed table along each sequence's path, summed over positions.
        """
        return self._sequence_log_probs(self.log_table(logits))

    def sequence_probs(self, logits: Any) -> Tensor:
        """The distribution over sequences the table induces, shape (..., N); it sums to 1."""
        return self.sequence_log_probs(logits).exp()

    def visit_probabilities(self, logits: Any) -> Tensor:
        r"""Probability that generation passes through each prefix, shape (..., n_prefixes).

        :math:`d_\pi(s) = \prod_{t < |s|} \pi(s_t \mid s_{<t})`; ``d(()) = 1``, and the visits of
        the prefixes at each depth sum to the probability of not having stopped before it.
        """
        return self._prefix_log_visits(self.log_table(logits)).exp()

    def sequential_kl(self, ref_logits: Any, logits: Any) -> Tensor:
        r"""Sequential KL of every sequence, reference first, shape (..., N).

        .. math:: \mathrm{SeqKL}(y) = \sum_{t=1}^{|y|} KL\bigl(\mu(\cdot \mid s_t) \,\|\, \pi(\cdot \mid s_t)\bigr)

        summed over every position of ``y``, the one that emits EOS included (a truncated sequence
        has ``T`` positions and no EOS).

        References
        ----------
        Zeng et al., arXiv:2404.11999v5, Sec. 4 (sequential KL, the forward direction); official
        code ``trainers.py::_tdpo_get_batch_logps`` (``per_position_kl``) @ 2a736ec.
        """
        log_ref = self.log_table(ref_logits, "ref_logits")
        log_pi = self.log_table(logits)
        return self._sequential_kl(prefix_kl_kernel(log_ref, log_pi))

    def sequence_kl(self, logits: Any, ref_logits: Any) -> Tensor:
        r""":math:`KL(\pi_{seq} \| \mu_{seq})` between the sequence distributions, shape (...).

        By the chain rule it equals :math:`\sum_s d_\pi(s)\,KL(\pi(\cdot|s) \| \mu(\cdot|s))`; here
        it is computed from the sequence probabilities directly.
        """
        log_pi = self._sequence_log_probs(self.log_table(logits))
        log_mu = self._sequence_log_probs(self.log_table(ref_logits, "ref_logits"))
        return (log_pi.exp() * (log_pi - log_mu)).sum(-1)

    def sequence_entropy(self, logits: Any) -> Tensor:
        r"""Entropy of the sequence distribution, :math:`-\sum_y \pi(y)\log\pi(y)`, shape (...)."""
        log_p = self._sequence_log_probs(self.log_table(logits))
        return -(log_p.exp() * log_p).sum(-1)

    def table_from_sequences(self, p: Any) -> Tensor:
        r"""The log-probability table whose sequence distribution is ``p`` (the inverse map), (n_prefixes, V).

        :math:`\pi(v \mid s) = m(s v) / m(s)`, with :math:`m(s)` the mass of the sequences that
        start with ``s``. ``p`` needs full support on the sequences (a prefix of zero mass has no
        next-token distribution); then ``sequence_log_probs(table_from_sequences(p)) == log p``.
        """
        q = self.sequence_distribution(p, positive=True)
        mass = self._child_mass(
            q
        )  # (n_prefixes, V): m(s v), 0 for a truncated child's EOS-free rows
        return mass.log() - mass.sum(-1, keepdim=True).log()

    def classes(self, by: str) -> Tensor:
        """A map sequence -> class, (N,) long: ``"length"`` (tokens, EOS counted, minus 1) or ``"first_token"``.

        ``"length"`` gives classes ``0 .. T - 1`` (class ``T - 1`` holds both the sequences of
        ``T - 1`` content tokens plus EOS and the truncated ones); ``"first_token"`` gives the first
        token, ``V - 1`` for the empty sequence ``(EOS,)``.
        """
        if by == "length":
            return self.lengths - 1
        if by == "first_token":
            return torch.tensor([s[0] for s in self.sequences], dtype=torch.long)
        raise ValueError(f"by must be 'length' or 'first_token', got {by!r}")

    # ------------------------------------------------------------------ kernels (no validation)

    def _sequence_log_probs(self, log_table: Tensor) -> Tensor:
        # log pi(y) = sum_t log pi(y_t | s_t): gather row path_prefix, column path_token; mask the pad.
        picked = log_table[..., self.path_prefix, self.path_token]  # (..., N, T)
        return (picked * self.path_mask).sum(-1)  # (..., N)

    def _prefix_log_visits(self, log_table: Tensor) -> Tensor:
        picked = log_table[..., self.prefix_path_prefix, self.prefix_path_token]  # (..., n, T)
        return (picked * self.prefix_path_mask).sum(-1)  # (..., n_prefixes)

    def _sequential_kl(self, kl_per_prefix: Tensor) -> Tensor:
        # SeqKL(y) = sum over y's positions of the KL at the prefix there (Zeng et al. Sec. 4)
        return (kl_per_prefix[..., self.path_prefix] * self.path_mask).sum(-1)  # (..., N)

    def _child_mass(self, q: Tensor) -> Tensor:
        mass = torch.zeros(self.table_shape, dtype=q.dtype)
        last = self.lengths - 1  # (N,) the position of each sequence's last token
        rows = self.path_prefix.gather(1, last[:, None])[:, 0]
        cols = self.path_token.gather(1, last[:, None])[:, 0]
        mass = mass.index_put((rows, cols), q, accumulate=True)  # m(s v) for leaves s v
        # propagate up: the mass of child s v (non-EOS, not a leaf) is the whole mass under s v
        index = {p: i for i, p in enumerate(self.prefixes)}
        for i in range(self.n_prefixes - 1, 0, -1):  # deepest first; the root has no parent
            p = self.prefixes[i]
            total = mass[i].sum()
            mass[index[p[:-1]], p[-1]] = mass[index[p[:-1]], p[-1]] + total
        return mass


def prefix_kl_kernel(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``KL(p(.|s) || q(.|s))`` per row of two log-probability tables (..., n, V), no validation."""
    # p log(p / q) with p > 0 everywhere in use (the reference has full support); finite for finite q.
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def prefix_kl(tree: TokenTree, first_logits: Any, second_logits: Any) -> Tensor:
    r"""Per-prefix KL of the first table to the second, :math:`KL(p(\cdot|s) \| q(\cdot|s))`, (..., n_prefixes).

    TDPO's KL is ``prefix_kl(tree, log_mu, log_pi)`` (reference first); the KL-regularised RLHF
    objective's chain rule uses ``prefix_kl(tree, log_pi, log_mu)``.
    """
    return prefix_kl_kernel(
        tree.log_table(first_logits, "first_logits"), tree.log_table(second_logits, "second_logits")
    )


def prefix_entropy(tree: TokenTree, logits: Any) -> Tensor:
    """Entropy of the next-token distribution at every prefix, (..., n_prefixes)."""
    log_p = tree.log_table(logits)
    return -(log_p.exp() * log_p).sum(-1)
