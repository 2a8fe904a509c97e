r"""Lab checkers for lab 7: the sequential KL on the token tree, and the TDPO losses built from it.

The policies live on a :class:`~prefopt_toy.tokens.TokenTree`; the lab hands them to the student as
dictionaries ``{prefix: next-token probabilities (V,)}`` (:func:`next_token_tables`), so that an
answer is written from the definitions, not from the tree's index layout.

``check_sequence_probability`` (7a) compares the student's :math:`\pi(y) = \prod_t \pi(y_t \mid
y_{<t})` with ``TokenTree.sequence_probs`` on every sequence of three trees;
``check_prefix_kl`` (7b) the per-prefix :math:`KL(\mu(\cdot|s) \| \pi(\cdot|s))` (reference first)
with ``tokens.prefix_kl``; ``check_sequential_kl`` (7c) :math:`\mathrm{SeqKL}(y)`, the sum of the
per-prefix KLs along ``y`` (the position that emits EOS included), with
``TokenTree.sequential_kl``; ``check_tdpo1_loss`` (7d) and ``check_tdpo2_loss`` (7e) the per-pair
TDPO losses with ``tdpo_loss``, values and gradients in both sequential KLs (TDPO2's stop-gradient
on :math:`\mathrm{SeqKL}(y_w)`); ``check_expected_sequential_kl`` (7f)
:math:`E_{y \sim \pi}\mathrm{SeqKL}(y)` on random tables and on the end points of the exact DPO and
TDPO2 dynamics of the lab's length game, whose comparison it prints. The wrong formulas below
only phrase hints. All are re-exported from ``prefopt_toy.labs``.

References
----------
Zeng et al., "Token-level Direct Preference Optimization", arXiv:2404.11999v5 (ICML 2024), Sec. 3-4
(states, sequential KL, TDPO1 and TDPO2); official code
Vance0124/Token-level-Direct-Preference-Optimization @ 2a736ec, ``trainers.py::tdpo_loss`` and
``_tdpo_get_batch_logps``; Rafailov et al., arXiv:2305.18290v3, Eq. (7) (DPO).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE
from prefopt_toy.dynamics import tdpo, token_dpo
from prefopt_toy.games.constructors import bradley_terry
from prefopt_toy.losses.pairwise import dpo_loss
from prefopt_toy.losses.token import tdpo_loss
from prefopt_toy.tokens import TokenTree, lifted_game, prefix_kl

from .checking import (
    CheckPassed,
    LabCheckError,
    _answer,
    _call,
    _close,
    _diagnose,
    _fmt,
    _mismatch,
    _passed,
)

__all__ = [
    "check_expected_sequential_kl",
    "check_prefix_kl",
    "check_sequence_probability",
    "check_sequential_kl",
    "check_tdpo1_loss",
    "check_tdpo2_loss",
    "next_token_tables",
]


def next_token_tables(tree: TokenTree, table: Any) -> dict[tuple[int, ...], Tensor]:
    r"""A policy table as a dictionary ``{prefix: next-token probabilities}``, the lab's format.

    Parameters
    ----------
    tree : TokenTree
        The tree whose prefixes key the dictionary (``tree.prefixes``, the root ``()`` first).
    table : Tensor or array-like, shape (n_prefixes, V)
        Next-token probabilities, one row per prefix, each on the simplex.

    Returns
    -------
    dict
        ``{prefix (tuple of int): Tensor (V,) float64}``: :math:`\pi(\cdot \mid s)` for every
        prefix ``s`` (a string of non-end tokens shorter than ``tree.max_length``).

    Raises
    ------
    ValueError
        If ``tree`` is not a TokenTree, or ``table`` has the wrong shape or a row off the simplex.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 3 (the states :math:`s_t = (x, y_{<t})`).

    Examples
    --------
    >>> tree = TokenTree(2, 1)
    >>> next_token_tables(tree, [[0.25, 0.75]])
    {(): tensor([0.2500, 0.7500], dtype=torch.float64)}
    """
    if not isinstance(tree, TokenTree):
        raise ValueError(f"tree must be a TokenTree, got {type(tree).__name__}")
    t = tree.probability_table(table, "table", positive=False)
    return {p: t[i].clone() for i, p in enumerate(tree.prefixes)}


def _random_table(tree: TokenTree, seed: int, floor: float = 0.0) -> Tensor:
    """Rows drawn on the simplex from a fixed seed (entries > floor), (n_prefixes, V)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(tree.table_shape, generator=g, dtype=DTYPE) + 0.05 + floor
    return w / w.sum(-1, keepdim=True)


def _tilted(tree: TokenTree) -> Tensor:
    """A table far from uniform: EOS rare at the root, likely deeper; one entry of 1e-12."""
    rows = []
    for i, p in enumerate(tree.prefixes):
        w = torch.arange(1, tree.vocab_size + 1, dtype=DTYPE) ** (1 + len(p))
        w[-1] = 1e-12 if i == 0 else w[-1]
        rows.append(w / w.sum())
    return torch.stack(rows)


# Trees and policy tables of 7a and 7c: (name, tree, mu, pi).
def _tree_cases() -> list[tuple[str, TokenTree, Tensor, Tensor]]:
    small = TokenTree(3, 2)
    mu_small = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]], dtype=DTYPE)
    pi_small = torch.tensor([[0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.3, 0.5, 0.2]], dtype=DTYPE)
    lab = TokenTree(3, 3)
    wide = TokenTree(4, 2)
    return [
        ("V=3, T=2 (7 sequences), a hand-written table", small, mu_small, pi_small),
        (
            "V=3, T=3 (15 sequences), uniform mu, random pi",
            lab,
            lab.uniform_table(),
            _random_table(lab, 7),
        ),
        (
            "V=4, T=2 (13 sequences), random mu, a pi with EOS at the root 1e-12",
            wide,
            _random_table(wide, 11),
            _tilted(wide),
        ),
    ]


def _per_sequence(
    exercise: str,
    what: str,
    fn: Any,
    tree: TokenTree,
    head: list[Any],
    where: str,
) -> tuple[Tensor, str]:
    """The student's scalar answer ``fn(*head, y)`` for every sequence y of ``tree``, stacked (N,)."""
    values, dtype = [], "float64"
    for y in tree.sequences:
        got, d = _answer(exercise, what, fn, [*head, y], (), f"{where}, y={y}")
        values.append(got)
        dtype = d if d != "float64" else dtype
    return torch.stack(values), dtype


# ------------------------------------------------------------ 7a: the probability of a sequence


def _sequence_probability_mistakes(
    tree: TokenTree, log_pi: Tensor
) -> list[tuple[str, Callable[[], Tensor]]]:
    picked = log_pi[tree.path_prefix, tree.path_token] * tree.path_mask  # (N, T)
    ends_with_eos = torch.tensor([y[-1] == tree.eos for y in tree.sequences])
    last = tree.lengths - 1
    no_eos = picked.clone()
    no_eos[ends_with_eos, last[ends_with_eos]] = 0.0
    root_only = log_pi[0][tree.path_token] * tree.path_mask
    return [
        (
            "the end token is missing: a sequence that stops emits EOS at its last position, and "
            "pi(EOS | prefix) is a factor of its probability",
            lambda: no_eos.sum(-1).exp(),
        ),
        (
            "that is log pi(y): return the probability, exp of the sum of the logs",
            lambda: picked.sum(-1),
        ),
        (
            "every token is read from the root's row: the token at position t is drawn from "
            "next_token[y[:t]], the row of the prefix before it",
            lambda: root_only.sum(-1).exp(),
        ),
        (
            "the probabilities along the path multiply (chain rule), they do not add",
            lambda: (picked.exp() * tree.path_mask).sum(-1),
        ),
    ]


def check_sequence_probability(student_probability: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 7a: ``student_probability(next_token, y)``, the probability of a sequence.

    Expected: :math:`\pi(y) = \prod_{t=1}^{|y|} \pi(y_t \mid y_{<t})`, the product of the next-token
    probabilities along ``y``'s prefixes, the EOS it ends with included (a truncated sequence has
    ``T`` tokens and no EOS), equal to ``TokenTree.sequence_probs`` on every sequence of three trees.

    Parameters
    ----------
    student_probability : callable
        ``(next_token: dict prefix -> Tensor (V,), y: tuple of int) -> scalar``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing tree, with a hint (EOS missing, log-probability returned, the root's
        row used everywhere, a sum for a product).

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 3 (the autoregressive policy over states s_t).
    """
    for name, tree, _, pi in _tree_cases():
        nxt = next_token_tables(tree, pi)
        where = f"tree '{name}'"
        got, dtype = _per_sequence(
            "7a", "sequence_probability", student_probability, tree, [nxt], where
        )
        expected = tree.sequence_probs(pi.log())
        if _close(got, expected, 1e-300):
            continue
        hint = _diagnose(got, _sequence_probability_mistakes(tree, pi.log()), 1e-300)
        call = f"sequence_probability on every sequence of {where}, in tree.sequences order {tree.sequences[:4]} ..."
        raise _mismatch("7a", call, expected, got, hint, dtype)
    return _passed(
        "7a",
        len(_tree_cases()),
        "The probabilities of all the sequences of each tree sum to 1: every path ends in a leaf.",
    )


# ------------------------------------------------------------------ 7b: the per-prefix KL

_KL_CASES: list[tuple[str, list[float], list[float]]] = [
    ("mu=(0.5, 0.3, 0.2), pi=(0.2, 0.2, 0.6)", [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]),
    ("mu=(0.1, 0.6, 0.3), pi=(0.1, 0.6, 0.3) (equal)", [0.1, 0.6, 0.3], [0.1, 0.6, 0.3]),
    (
        "mu=(0.25, 0.25, 0.25, 0.25), pi=(0.97, 0.01, 0.01, 0.01)",
        [0.25] * 4,
        [0.97, 0.01, 0.01, 0.01],
    ),
    ("mu=(0.999, 1e-3), pi=(1e-9, 1 - 1e-9)", [0.999, 1e-3], [1e-9, 1.0 - 1e-9]),
]


def _kl_mistakes(mu: Tensor, pi: Tensor) -> list[tuple[str, Callable[[], Tensor]]]:
    return [
        (
            "the KL in the wrong direction: TDPO's per-prefix KL puts the reference first, "
            "KL(mu || pi) = sum_v mu(v) log(mu(v) / pi(v)) (the official code's order)",
            lambda: (pi * (pi.log() - mu.log())).sum(),
        ),
        (
            "the sign: KL(mu || pi) = sum_v mu(v) log(mu(v) / pi(v)) >= 0",
            lambda: (mu * (pi.log() - mu.log())).sum(),
        ),
        (
            "the log-ratios are not weighted: KL(mu || pi) = sum_v mu(v) log(mu(v) / pi(v))",
            lambda: (mu.log() - pi.log()).sum(),
        ),
        (
            "the expectation is under mu, the log-ratio is log(mu / pi): sum_v mu(v) log(mu(v) / pi(v))",
            lambda: (pi * (mu.log() - pi.log())).sum(),
        ),
    ]


def check_prefix_kl(student_kl: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 7b: ``student_kl(mu_s, pi_s)``, the KL of one prefix, reference first.

    Expected: :math:`KL(\mu(\cdot|s) \| \pi(\cdot|s)) = \sum_v \mu(v|s)\log(\mu(v|s)/\pi(v|s))`
    (``tokens.prefix_kl``), on four pairs of next-token distributions, one equal pair (KL 0) and one
    with a probability of 1e-9.

    Parameters
    ----------
    student_kl : callable
        ``(mu_s (V,), pi_s (V,)) -> scalar``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing pair, with a hint (the direction, the sign, no weights).

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4; official ``trainers.py::_tdpo_get_batch_logps``
    (``(ref_probs * (ref_logps - logps)).sum(-1)``).
    """
    for name, mu_v, pi_v in _KL_CASES:
        mu, pi = torch.tensor(mu_v, dtype=DTYPE), torch.tensor(pi_v, dtype=DTYPE)
        where = f"input '{name}'"
        got, dtype = _answer("7b", "prefix_kl", student_kl, [mu, pi], (), where)
        tree = TokenTree(len(mu_v), 1)  # one prefix, the root: the library's per-prefix KL
        expected = prefix_kl(tree, mu.log()[None], pi.log()[None])[0]
        if _close(got, expected):
            continue
        hint = _diagnose(got, _kl_mistakes(mu, pi))
        raise _mismatch("7b", f"prefix_kl on {where}", expected, got, hint, dtype)
    return _passed("7b", len(_KL_CASES))


# ---------------------------------------------------------------- 7c: the sequential KL


def _seqkl_mistakes(
    tree: TokenTree, mu: Tensor, pi: Tensor
) -> list[tuple[str, Callable[[], Tensor]]]:
    kl = (mu * (mu.log() - pi.log())).sum(-1)  # (n_prefixes,) reference first
    reverse = (pi * (pi.log() - mu.log())).sum(-1)
    along = kl[tree.path_prefix] * tree.path_mask  # (N, T)
    ends_with_eos = torch.tensor([y[-1] == tree.eos for y in tree.sequences])
    last = tree.lengths - 1
    no_eos = along.clone()
    no_eos[ends_with_eos, last[ends_with_eos]] = 0.0
    return [
        (
            "the position that emits EOS is missing: SeqKL sums the KL at every position of y, "
            "the last one (the prefix from which EOS is emitted) included, as the official code",
            lambda: no_eos.sum(-1),
        ),
        (
            "the KL in the wrong direction: the sequential KL is sum_t KL(mu(.|s_t) || pi(.|s_t)), "
            "reference first",
            lambda: (reverse[tree.path_prefix] * tree.path_mask).sum(-1),
        ),
        (
            "that sums the KL of every prefix of the tree; SeqKL(y) sums only the prefixes on y's path",
            lambda: kl.sum().expand(tree.n_sequences).clone(),
        ),
        (
            "that is the KL at the root only; add the KL at each prefix y[:t] for t = 0 .. len(y) - 1",
            lambda: kl[0].expand(tree.n_sequences).clone(),
        ),
    ]


def check_sequential_kl(student_seqkl: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 7c: ``student_seqkl(mu_next, pi_next, y)``, the sequential KL of a sequence.

    Expected: :math:`\mathrm{SeqKL}(y) = \sum_{t=1}^{|y|} KL(\mu(\cdot|s_t) \| \pi(\cdot|s_t))` with
    :math:`s_t = y_{<t}`: the per-prefix KL (reference first) at every position of ``y``, the one
    that emits EOS included (``TokenTree.sequential_kl``), on every sequence of three trees.

    Parameters
    ----------
    student_seqkl : callable
        ``(mu_next: dict, pi_next: dict, y: tuple of int) -> scalar``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing tree, with a hint (the EOS position missing, the direction, every
        prefix of the tree, the root only).

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4; official ``_tdpo_get_batch_logps`` @ 2a736ec (the KL
    summed over every labelled completion position, EOS included).
    """
    for name, tree, mu, pi in _tree_cases():
        mu_next, pi_next = next_token_tables(tree, mu), next_token_tables(tree, pi)
        where = f"tree '{name}'"
        got, dtype = _per_sequence(
            "7c", "sequential_kl", student_seqkl, tree, [mu_next, pi_next], where
        )
        expected = tree.sequential_kl(mu.log(), pi.log())
        if _close(got, expected):
            continue
        hint = _diagnose(got, _seqkl_mistakes(tree, mu, pi))
        call = f"sequential_kl on every sequence of {where}, in tree.sequences order {tree.sequences[:4]} ..."
        raise _mismatch("7c", call, expected, got, hint, dtype)
    return _passed("7c", len(_tree_cases()))


# ---------------------------------------------------------------- 7d, 7e: TDPO1 and TDPO2

# (name, logp_chosen, logp_rejected, ref_chosen, ref_rejected, seqkl_chosen, seqkl_rejected,
# beta, alpha). The first case has unequal KLs, beta != 1 and alpha != 1.
_TDPO_CASES: list[
    tuple[
        str,
        list[float],
        list[float],
        list[float],
        list[float],
        list[float],
        list[float],
        float,
        float,
    ]
] = [
    ("one pair", [-1.0], [-3.0], [-1.5], [-2.0], [0.2], [0.6], 0.1, 0.5),
    (
        "a batch of 3 pairs",
        [-0.5, -2.0, -4.0],
        [-1.0, -1.0, -0.5],
        [-0.7, -1.5, -3.0],
        [-1.2, -0.8, -1.0],
        [0.05, 1.3, 0.4],
        [0.9, 0.1, 0.4],
        2.0,
        0.3,
    ),
    (
        "margins +-1e3",
        [0.0, -1000.0],
        [-1000.0, 0.0],
        [-5.0, -5.0],
        [-5.0, -5.0],
        [0.1, 0.2],
        [0.3, 0.05],
        1.0,
        0.5,
    ),
]

_LOGSIG_HINT = (
    "log(sigmoid(x)) underflows to log 0 = -inf at x = -1000; use "
    "torch.nn.functional.logsigmoid(x), which stays finite"
)


def _tdpo_mistakes(
    h: Tensor, kl_w: Tensor, kl_l: Tensor, beta: float, alpha: float, variant: str
) -> list[tuple[str, Callable[[], Tensor]]]:
    a = 1.0 if variant == "tdpo1" else alpha
    out = [
        (
            "the sign of the KL term: TDPO subtracts (SeqKL(y_l) - SeqKL(y_w)) from the margin, "
            "beta [u - (SeqKL_l - SeqKL_w)], so lowering the rejected response's KL lowers the loss",
            lambda: dpo_loss(h + a * (kl_l - kl_w), beta),
        ),
        (
            "the KL term is outside beta: the argument is beta [u - (SeqKL_l - SeqKL_w)], "
            "not beta u - (SeqKL_l - SeqKL_w)",
            lambda: dpo_loss(h - a * (kl_l - kl_w) / beta, beta),
        ),
        ("the KL term is missing: that is the DPO loss", lambda: dpo_loss(h, beta)),
        (
            "did you flip the sign of the margin? u = (logp_chosen - ref_chosen) - "
            "(logp_rejected - ref_rejected)",
            lambda: dpo_loss(-h - a * (kl_l - kl_w), beta),
        ),
    ]
    if variant == "tdpo2":
        out.insert(
            0,
            (
                "alpha is missing: TDPO2 weights the KL difference, u - alpha (SeqKL_l - sg[SeqKL_w]); "
                "that is TDPO1",
                lambda: dpo_loss(h - (kl_l - kl_w), beta),
            ),
        )
        out.insert(
            1,
            (
                "alpha multiplies only one of the two KLs: u - alpha (SeqKL_l - SeqKL_w)",
                lambda: dpo_loss(h - (alpha * kl_l - kl_w), beta),
            ),
        )
    return out


def _expected_grads(
    h: Tensor, kl_w: Tensor, kl_l: Tensor, beta: float, alpha: float, variant: str
) -> tuple[Tensor, Tensor]:
    """The library's gradients of the summed loss in SeqKL(y_w) and SeqKL(y_l)."""
    w, lo = kl_w.clone().requires_grad_(True), kl_l.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = tdpo_loss(h, w, lo, beta, alpha, variant).sum()
        g_w, g_l = torch.autograd.grad(loss, [w, lo], materialize_grads=True)
    return g_w, g_l


def _student_grads(
    exercise: str, what: str, fn: Any, tensors: list[Tensor], hyper: list[float], where: str
) -> tuple[Tensor, Tensor] | str:
    """Gradients of the student's summed loss in the two KL inputs, or why there are none."""
    leaves = [t.clone().requires_grad_(i >= 4) for i, t in enumerate(tensors)]
    with torch.enable_grad():
        value = _call(exercise, what, fn, [*leaves, *hyper], where)
        if not isinstance(value, Tensor) or not value.requires_grad:
            return (
                "your loss carries no gradient: compute it with torch operations on the input "
                "tensors (no .item(), numpy or .detach() of everything), so that autograd can "
                "differentiate it"
            )
        g_w, g_l = torch.autograd.grad(
            value.sum(), leaves[4:6], allow_unused=True, materialize_grads=True
        )
    return g_w.detach(), g_l.detach()


def _check_tdpo(exercise: str, what: str, fn: Any, variant: str) -> CheckPassed:
    for name, *vectors, beta, alpha in _TDPO_CASES:
        tensors = [torch.tensor(v, dtype=DTYPE) for v in vectors]
        pc, pr, rc, rr, kl_w, kl_l = tensors
        h = (pc - rc) - (pr - rr)
        hyper = [beta] if variant == "tdpo1" else [beta, alpha]
        shown = f"alpha={alpha:g}" if variant == "tdpo2" else ""
        where = f"input '{name}'"
        got, dtype = _answer(exercise, what, fn, [*tensors, *hyper], tuple(h.shape), where)
        expected = tdpo_loss(h, kl_w, kl_l, beta, alpha, variant)
        call = (
            f"{what} on {where} (margin u = {_fmt(h)}, SeqKL(y_w) = {_fmt(kl_w)}, "
            f"SeqKL(y_l) = {_fmt(kl_l)}) with beta={beta:g}" + (f", {shown}" if shown else "")
        )
        if not _close(got, expected):
            if not bool(torch.isfinite(got).all()):
                hint = _LOGSIG_HINT if h.abs().max() >= 100 else "your loss is not finite"
            else:
                hint = _diagnose(got, _tdpo_mistakes(h, kl_w, kl_l, beta, alpha, variant))
            raise _mismatch(exercise, call, expected, got, hint, dtype)
        grads = _student_grads(exercise, what, fn, tensors, hyper, where)
        if isinstance(grads, str):
            raise LabCheckError(f"exercise {exercise}: {grads}\n  {call}")
        e_w, e_l = _expected_grads(h, kl_w, kl_l, beta, alpha, variant)
        for label, g, e in (("SeqKL(y_w)", grads[0], e_w), ("SeqKL(y_l)", grads[1], e_l)):
            if _close(g, e):
                continue
            if variant == "tdpo2" and label == "SeqKL(y_w)":
                hint = (
                    "the value is right but the gradient through SeqKL(y_w) is not zero: TDPO2 "
                    "stops it, u - alpha (SeqKL_l - sg[SeqKL_w]); use seqkl_chosen.detach()"
                )
            elif variant == "tdpo2":
                hint = (
                    "the value is right but no gradient flows through SeqKL(y_l): detach only "
                    "the chosen response's KL"
                )
            else:
                hint = (
                    f"the value is right but the gradient in {label} is not: TDPO1 has no "
                    "stop-gradient (that is TDPO2), both KLs carry gradient"
                )
            raise _mismatch(exercise, f"the gradient in {label} of {call}", e, g, hint)
    return _passed(exercise, 2 * len(_TDPO_CASES))


def check_tdpo1_loss(student_tdpo1_loss: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 7d: the per-pair TDPO1 loss, its value and its gradients in the two KLs.

    ``student_tdpo1_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, seqkl_chosen,
    seqkl_rejected, beta)``; expected
    :math:`-\log\sigma(\beta[u - (\mathrm{SeqKL}(y_l) - \mathrm{SeqKL}(y_w))])`, equal to
    ``pt.tdpo_loss(u, seqkl_chosen, seqkl_rejected, beta, variant="tdpo1")``, on three inputs (one
    with margins of +-1e3), and the autograd gradients of the summed loss in both KLs equal to the
    library's (both nonzero: TDPO1 has no stop-gradient).

    Parameters
    ----------
    student_tdpo1_loss : callable
        Six float64 tensors of shape (B,) and ``beta``; returns shape (B,).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint (the KL term's sign, outside beta, missing, the
        margin's sign, overflow, a detached KL, no gradient at all).

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4 (TDPO1); official ``trainers.py::tdpo_loss``.
    """
    return _check_tdpo("7d", "tdpo1_loss", student_tdpo1_loss, "tdpo1")


def check_tdpo2_loss(student_tdpo2_loss: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 7e: the per-pair TDPO2 loss, its value and its stop-gradient.

    ``student_tdpo2_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, seqkl_chosen,
    seqkl_rejected, beta, alpha)``; expected value
    :math:`-\log\sigma(\beta[u - \alpha(\mathrm{SeqKL}(y_l) - \mathrm{sg}[\mathrm{SeqKL}(y_w)])])`
    (``pt.tdpo_loss(..., variant="tdpo2")``) on three inputs, with a zero gradient in
    ``seqkl_chosen`` and the library's gradient in ``seqkl_rejected``.

    Parameters
    ----------
    student_tdpo2_loss : callable
        Six float64 tensors of shape (B,), ``beta`` and ``alpha``; returns shape (B,).

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint (alpha missing or on one KL only, the sign,
        outside beta, the stop-gradient missing or on the wrong KL).

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4 (TDPO2); official ``trainers.py::tdpo_loss``
    (``chosen_position_kl.detach()``).
    """
    return _check_tdpo("7e", "tdpo2_loss", student_tdpo2_loss, "tdpo2")


# -------------------------------------------------- 7f: the expected sequential KL of a policy

# The lab's game: V = 3, T = 3, uniform reference, a judge that reads the length (BT class
# scores 0, 1, 2: longer wins), beta = 0.5, TDPO2's alpha = 0.5. 400 steps reach the end points
# to 1e-12 (measured: the same numbers at 400 and 3000 steps).
LAB_BETA, LAB_ALPHA, LAB_STEPS = 0.5, 0.5, 400


@functools.lru_cache(maxsize=1)
def lab_runs() -> tuple[Any, Any]:
    """The exact DPO and TDPO2 runs of the lab's length game (cached): two ``TokenTrajectory``."""
    tree = TokenTree(3, 3)
    P = lifted_game(tree, bradley_terry(torch.tensor([0.0, 1.0, 2.0], dtype=DTYPE)), "length")
    mu = tree.uniform_table()
    dpo_run = token_dpo(tree, P, mu, beta=LAB_BETA, steps=LAB_STEPS)
    tdpo2_run = tdpo(tree, P, mu, beta=LAB_BETA, steps=LAB_STEPS, variant="tdpo2", alpha=LAB_ALPHA)
    return dpo_run, tdpo2_run


def _expected_seqkl_mistakes(
    tree: TokenTree, mu: Tensor, pi: Tensor
) -> list[tuple[str, Callable[[], Tensor]]]:
    log_pi, log_mu = tree.sequence_log_probs(pi.log()), tree.sequence_log_probs(mu.log())
    seqkl = tree.sequential_kl(mu.log(), pi.log())
    return [
        (
            "that is KL(pi_seq || mu_seq), the sequence-level KL of RLHF; TDPO's quantity is "
            "sum_y pi(y) SeqKL(y), the per-prefix KLs reference first along each sequence",
            lambda: (log_pi.exp() * (log_pi - log_mu)).sum(),
        ),
        (
            "the sequences are drawn from the policy pi, not from the reference: weight by pi(y)",
            lambda: (log_mu.exp() * seqkl).sum(),
        ),
        (
            "the sequences are not weighted: the expectation is sum_y pi(y) SeqKL(y)",
            lambda: seqkl.sum(),
        ),
        ("that is a plain average over sequences: weight each by pi(y)", lambda: seqkl.mean()),
    ]


def _expected_seqkl_cases() -> list[tuple[str, TokenTree, Tensor, Tensor]]:
    small = TokenTree(3, 2)
    dpo_run, tdpo2_run = lab_runs()
    tree = dpo_run.tree
    return [
        (
            "V=3, T=2, pi = mu (nothing moved)",
            small,
            _random_table(small, 3),
            _random_table(small, 3),
        ),
        ("V=3, T=2, random mu and pi", small, _random_table(small, 5), _random_table(small, 6)),
        (
            "the lab's tree, uniform mu, the end of exact DPO",
            tree,
            dpo_run.mu,
            dpo_run.log_tables[-1].exp(),
        ),
        (
            "the lab's tree, uniform mu, the end of exact TDPO2",
            tree,
            tdpo2_run.mu,
            tdpo2_run.log_tables[-1].exp(),
        ),
    ]


def check_expected_sequential_kl(student_expected: Callable[..., Any]) -> CheckPassed:
    r"""Check exercise 7f: ``student_expected(mu_next, pi_next, sequences)``, :math:`E_{y\sim\pi}\mathrm{SeqKL}(y)`.

    Expected: :math:`\sum_y \pi(y)\,\mathrm{SeqKL}(y)` over ``sequences`` (all of the tree's), from
    ``TokenTree.sequence_probs`` and ``TokenTree.sequential_kl``, on two random tables and on the
    end points of exact DPO and TDPO2 on the lab's length game (``lab_runs``). On success the
    message compares the two runs: the expected sequential KL, the root's KL and the mass on
    stopping at once, :math:`\pi(\mathrm{EOS} \mid \text{root})`.

    Parameters
    ----------
    student_expected : callable
        ``(mu_next: dict, pi_next: dict, sequences: tuple of tuples) -> scalar``.

    Returns
    -------
    CheckPassed

    Raises
    ------
    LabCheckError
        On the first failing input, with a hint (the sequence-level KL, weights from mu, no
        weights, a plain mean).

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4 (the sequential KL that TDPO controls).
    """
    cases = _expected_seqkl_cases()
    for name, tree, mu, pi in cases:
        where = f"input '{name}'"
        args = [next_token_tables(tree, mu), next_token_tables(tree, pi), tree.sequences]
        got, dtype = _answer("7f", "expected_sequential_kl", student_expected, args, (), where)
        expected = (tree.sequence_probs(pi.log()) * tree.sequential_kl(mu.log(), pi.log())).sum()
        if _close(got, expected):
            continue
        hint = _diagnose(got, _expected_seqkl_mistakes(tree, mu, pi))
        raise _mismatch("7f", f"expected_sequential_kl on {where}", expected, got, hint, dtype)
    dpo_run, tdpo2_run = lab_runs()
    lines = []
    for label, run in (("DPO  ", dpo_run), ("TDPO2", tdpo2_run)):
        end = run.log_tables[-1]
        seqkl = float((run.sequence_probs[-1] * run.sequential_kl[-1]).sum())
        lines.append(
            f"{label} E_pi SeqKL {seqkl:.4f}, KL at the root {float(run.prefix_kl[-1, 0]):.4f}, "
            f"pi(EOS | root) {float(end[0, -1].exp()):.4f}"
        )
    return _passed(
        "7f", len(cases), "The lab's runs (exact, at their end points):\n" + "\n".join(lines)
    )
