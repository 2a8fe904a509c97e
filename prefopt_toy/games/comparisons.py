r"""Preference matrices estimated from comparison data: win counts and (winner, loser) lists.

``P[i, j] = (W[i, j] + a) / (W[i, j] + W[j, i] + 2a)``: the posterior mean of a Beta(a, a) prior
(Laplace's rule of succession for ``a = 1``), so no entry is exactly 0 or 1 unless ``prior=0`` is
asked. The result is complementary bit for bit, like every constructor of ``games/constructors.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE, as_index_pairs, as_int, as_positive_float, as_square

__all__ = ["from_comparisons", "from_win_counts"]


def from_win_counts(wins: Any, prior: float = 1.0) -> Tensor:
    r"""Preference matrix estimated from a matrix of win counts, with a symmetric Beta prior.

    .. math:: P[i, j] = \frac{W[i, j] + a}{W[i, j] + W[j, i] + 2a}, \qquad a = \text{prior}

    This is the posterior mean of ``Pr(i beats j)`` under a Beta(a, a) prior on each pair;
    ``prior = 1`` is Laplace's rule of succession. With ``prior > 0`` no entry is 0 or 1 (in
    float64 too, unless ``prior`` is below ~1e-16 times the counts, where ``1 - P`` rounds away),
    so a Bradley-Terry fit of the result exists.

    Parameters
    ----------
    wins : array-like, shape (K, K)
        ``wins[i, j]`` = number of times action i beat action j. Non-negative and finite; need not
        be integers (weighted counts are fine). The diagonal is ignored.
    prior : float >= 0, default 1.0
        Pseudo-count added to each side of every pair. With ``prior = 0`` the result is the raw
        frequency, and a pair that was never compared gets 1/2.

    Returns
    -------
    Tensor, shape (K, K), float64, with ``P + P.T == 1`` exactly.

    Raises
    ------
    ValueError
        If ``wins`` is not a finite non-empty square matrix or has a negative entry, or ``prior``
        is negative or not finite.

    References
    ----------
    Laplace (1774), Mémoires ... par divers savans 6 (the rule of succession, ``prior = 1``);
    Bradley & Terry (1952), Biometrika 39 (paired-comparison data, fitted by ``bt_fit``).

    Examples
    --------
    >>> from_win_counts([[0, 3], [1, 0]])  # (3 + 1) / (3 + 1 + 2)
    tensor([[0.5000, 0.6667],
            [0.3333, 0.5000]], dtype=torch.float64)
    """
    W = as_square(wins, "wins")
    a = as_positive_float(prior, "prior", allow_zero=True)
    off_diag = ~torch.eye(W.shape[0], dtype=torch.bool)
    if bool((W[off_diag] < 0).any()):
        worst = int(torch.where(off_diag, W, torch.zeros((), dtype=DTYPE)).argmin())
        i, j = divmod(worst, W.shape[0])
        raise ValueError(
            f"wins must be non-negative (counts), but wins[{i}, {j}] = {float(W[i, j]):.6g}"
        )
    total = W + W.T + 2.0 * a  # (K, K), symmetric bit for bit
    compared = total > 0
    Q = (W + a) / torch.where(compared, total, torch.ones((), dtype=DTYPE))  # (K, K)
    # Keep the smaller side of each pair as computed (full relative accuracy when it is tiny) and
    # set its partner to 1 - smaller. Equal sides get exactly 1/2: that covers the diagonal
    # (Q[i, i] == Q.T[i, i]) and the pairs never compared (possible only with prior = 0, no
    # information), where both sides are 0 / 1 = 0.
    return torch.where(Q < Q.T, Q, torch.where(Q > Q.T, 1.0 - Q.T, 0.5))


def from_comparisons(comparisons: Any, n_actions: int, prior: float = 1.0) -> Tensor:
    r"""Preference matrix estimated from a list of ``(winner, loser)`` comparisons.

    Counts ``W[i, j]`` = number of rows equal to ``(i, j)`` and returns
    ``from_win_counts(W, prior)``:

    .. math:: P[i, j] = \frac{W[i, j] + a}{W[i, j] + W[j, i] + 2a}

    Parameters
    ----------
    comparisons : array-like of int, shape (m, 2)
        Row ``(w, l)`` records that action ``w`` beat action ``l``; ``0 <= w, l < n_actions`` and
        ``w != l``. ``m = 0`` (an empty list) is allowed.
    n_actions : int >= 1
        Number of actions K.
    prior : float >= 0, default 1.0
        Pseudo-count per side of every pair (see ``from_win_counts``).

    Returns
    -------
    Tensor, shape (n_actions, n_actions), float64

    Raises
    ------
    ValueError
        If ``comparisons`` is not an integer array of shape (m, 2), holds an index outside
        ``[0, n_actions)`` or a row with winner == loser; if ``n_actions < 1``; if ``prior < 0``.

    References
    ----------
    Laplace (1774), Mémoires ... par divers savans 6 (the rule of succession, ``prior = 1``);
    Bradley & Terry (1952), Biometrika 39 (paired-comparison data, fitted by ``bt_fit``).

    Examples
    --------
    >>> from_comparisons([(0, 1), (0, 1), (1, 0)], n_actions=2, prior=0.0)
    tensor([[0.5000, 0.6667],
            [0.3333, 0.5000]], dtype=torch.float64)
    """
    k = as_int(n_actions, "n_actions", minimum=1)
    arr = as_index_pairs(comparisons, "comparisons", k, allow_empty=True)
    counts = np.zeros((k, k), dtype=np.float64)
    np.add.at(counts, (arr[:, 0], arr[:, 1]), 1.0)
    return from_win_counts(counts, prior)
