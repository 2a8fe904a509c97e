r"""Properties of a preference matrix: Condorcet winner and transitivity.

These answer the first questions to ask of a game before running an algorithm on it: is there an
action that beats every other one (then the Nash equilibrium is that action, while RLHF/DPO may
still prefer another)? Is the majority relation transitive? Whether ``P`` is a Bradley-Terry matrix
(then RLHF, DPO and the BT-based methods see the whole game), and if not, how far the best BT fit
is, needs the fit: ``is_bradley_terry``, ``bt_fit_gap`` and ``bt_fit_kl`` are in ``solutions.bt``.
"""

from __future__ import annotations

from typing import Any

import torch

from prefopt_toy._validate import DTYPE, _detached, as_preference_matrix

__all__ = ["condorcet_winner", "is_transitive"]


def condorcet_winner(P: Any) -> int | None:
    r"""The action that beats every other action with probability strictly above 1/2, if any.

    .. math:: y^\star \text{ with } P[y^\star, y] > \tfrac12 \text{ for all } y \ne y^\star

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.

    Returns
    -------
    int or None
        The Condorcet winner's index, or None when there is none. At most one exists (two would
        each beat the other). With K = 1 the single action wins vacuously and 0 is returned.

    Raises
    ------
    ValueError
        If ``P`` is not a preference matrix.

    Notes
    -----
    The comparison is exact (no tolerance): a tie ``P[y, y'] = 1/2`` disqualifies both. When a
    Condorcet winner exists it is the unique unregularised Nash equilibrium (as a pure policy).

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3 (Nash vs. RLHF solutions).

    Examples
    --------
    >>> condorcet_winner([[0.5, 0.6, 0.9], [0.4, 0.5, 0.8], [0.1, 0.2, 0.5]])
    0
    """
    P_t = as_preference_matrix(_detached(P), "P")
    wins = (P_t > 0.5).sum(dim=1)  # diagonal is 1/2, so it never counts
    winners = torch.nonzero(wins == P_t.shape[0] - 1).flatten()
    return int(winners[0]) if winners.numel() else None


def is_transitive(P: Any) -> bool:
    r"""Whether ``P`` is weakly stochastically transitive (its majority relation is transitive).

    .. math::
        P[i, j] \ge \tfrac12 \text{ and } P[j, k] \ge \tfrac12
        \;\Rightarrow\; P[i, k] \ge \tfrac12 \quad \text{for all } i, j, k.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.

    Returns
    -------
    bool
        True when there is no majority cycle. Every Bradley-Terry matrix is transitive;
        rock-paper-scissors (strength > 0) and ``three_voter_types`` are not.

    Raises
    ------
    ValueError
        If ``P`` is not a preference matrix.

    Notes
    -----
    Exact comparisons with 1/2 (ties count as "at least as good" both ways). Without ties this is
    the same as "no 3-cycle i > j > k > i". Costs one K x K boolean matrix product.

    References
    ----------
    Tversky (1969), Psychological Review 76(1) (weak stochastic transitivity and its violations).

    Examples
    --------
    >>> is_transitive([[0.5, 0.6, 0.9], [0.4, 0.5, 0.8], [0.1, 0.2, 0.5]])
    True
    """
    P_t = as_preference_matrix(_detached(P), "P")
    weak = (P_t >= 0.5).to(DTYPE)  # (K, K), weak majority relation, reflexive
    two_steps = (weak @ weak) > 0  # i reaches k through some j (j = i or k included)
    return not bool((two_steps & (weak == 0)).any())
