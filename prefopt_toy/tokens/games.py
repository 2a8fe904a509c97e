r"""Preference games on the sequences of a token tree: given directly, or lifted from classes.

A game on sequences is an (N, N) preference matrix ``P[i, j] = Pr(sequence i beats sequence j)``
over ``tree.sequences``, with ``P + P.T = 1``. A *lifted* game compares only the classes of two
sequences (a judge that reads the length, or the first token): ``P[i, j] = P_class[c(i), c(j)]``,
so two sequences of one class tie at 1/2. This is the lifted-game construction of the GPT-2 bridge
(the design's "lifted games") on a tree small enough to enumerate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_preference_matrix, as_tensor

from .tree import TokenTree

__all__ = ["lifted_game", "sequence_game"]


def sequence_game(tree: TokenTree, P: Any) -> Tensor:
    """Validate a preference matrix over the tree's N sequences; a float64 (N, N) copy.

    Raises
    ------
    ValueError
        If ``P`` is not a preference matrix (square, entries in [0, 1], ``P + P.T = 1``) or not
        (N, N) for this tree.
    """
    P_t = as_preference_matrix(P, "P")
    if P_t.shape[0] != tree.n_sequences:
        raise ValueError(
            f"P must be ({tree.n_sequences}, {tree.n_sequences}) (one row per sequence of the tree), "
            f"got {tuple(P_t.shape)}"
        )
    return P_t


def lifted_game(tree: TokenTree, P_class: Any, classes: Any) -> Tensor:
    r"""The sequence game of a class game: ``P[i, j] = P_class[classes[i], classes[j]]``, (N, N).

    Parameters
    ----------
    tree : TokenTree
    P_class : array-like, shape (K, K)
        A preference matrix over K classes.
    classes : array-like of int, shape (N,), or ``"length"`` / ``"first_token"``
        The class of each sequence, in ``0 .. K - 1`` (``tree.classes(by)`` for a name).

    Returns
    -------
    Tensor, shape (N, N), float64
        A preference matrix; sequences of one class tie (1/2).

    Raises
    ------
    ValueError
        If ``P_class`` is not a preference matrix, or ``classes`` is not N integers in [0, K).

    Examples
    --------
    >>> tree = TokenTree(2, 2)  # sequences (EOS,), (0, EOS), (0, 0)
    >>> lifted_game(tree, [[0.5, 0.2], [0.8, 0.5]], "length")[0]
    tensor([0.5000, 0.2000, 0.2000], dtype=torch.float64)
    """
    P_c = as_preference_matrix(P_class, "P_class")
    k = P_c.shape[0]
    c = tree.classes(classes) if isinstance(classes, str) else as_tensor(classes, "classes")
    if tuple(c.shape) != (tree.n_sequences,):
        raise ValueError(
            f"classes must have shape ({tree.n_sequences},) (one class per sequence), got {tuple(c.shape)}"
        )
    if bool((c != c.round()).any()) or bool(((c < 0) | (c >= k)).any()):
        raise ValueError(
            f"classes must be integers in [0, {k}) (rows of P_class), got {c.tolist()}"
        )
    idx = c.to(torch.long)
    return P_c[idx[:, None], idx[None, :]].clone()
