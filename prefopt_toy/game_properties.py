r"""Properties of a preference matrix: Condorcet winner, transitivity, distance from Bradley-Terry.

These answer the first questions to ask of a game before running an algorithm on it: is there an
action that beats every other one (then the Nash equilibrium is that action, while RLHF/DPO may
still prefer another)? Is the majority relation transitive? Is ``P`` a Bradley-Terry matrix (then
RLHF, DPO and the BT-based methods see the whole game), and if not, how far is the best BT fit?
"""

from __future__ import annotations

from typing import Any

import torch

from ._validate import DTYPE, as_positive_float, as_preference_matrix
from .bt import _detached, _fit
from .bt import _validate as _bt_inputs
from .games import bradley_terry
from .losses import _neg_logsigmoid

__all__ = ["bt_fit_gap", "bt_fit_kl", "condorcet_winner", "is_bradley_terry", "is_transitive"]


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


def is_bradley_terry(P: Any, atol: float = 1e-9) -> bool:
    r"""Whether finite scores ``s`` reproduce ``P`` as ``bradley_terry(s)`` to within ``atol``.

    A matrix is Bradley-Terry iff its log-odds are differences of scores,
    :math:`\log(P[i, j] / P[j, i]) = s_i - s_j`, i.e. the cycle condition
    :math:`\mathrm{logit} P[i, j] + \mathrm{logit} P[j, k] = \mathrm{logit} P[i, k]`. We take the
    least-squares scores :math:`s_i = \frac1K \sum_j \log(P[i, j] / P[j, i])` (exact when ``P`` is
    BT) and test :math:`\max_{i,j} |P[i, j] - \sigma(s_i - s_j)| \le` ``atol``.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.
    atol : float >= 0, default 1e-9
        Tolerance on the probabilities (absolute).

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        If ``P`` is not a preference matrix or ``atol`` is negative.

    Notes
    -----
    A matrix with an off-diagonal entry exactly 0 (so its partner is 1) is a *limit* of BT
    matrices at best (scores at infinity) and has no finite scores, so the answer is False for
    it, however close the BT approximation. An entry that is 1 only by rounding, next to a
    partner > 0 (e.g. ``bradley_terry([0, 40])``: 1 - 4e-18 rounds to 1), is fine: the log-odds
    use both entries of a pair, as ``bt_fit`` does. Every 1 x 1 matrix and every 2 x 2 matrix
    with entries in (0, 1) is BT.
    Near the boundary (a non-BT perturbation of size ~``atol``) the answer depends on the choice
    of least-squares scores; far from it, it does not.

    References
    ----------
    Bradley & Terry (1952), Biometrika 39; Azar et al., arXiv:2310.12036v2, Eq. (1).

    Examples
    --------
    >>> is_bradley_terry([[0.5, 0.75], [0.25, 0.5]])
    True
    """
    P_t = as_preference_matrix(_detached(P), "P")
    tol = as_positive_float(atol, "atol", allow_zero=True)
    off_diag = ~torch.eye(P_t.shape[0], dtype=torch.bool)
    if bool((P_t[off_diag] == 0).any()):
        return False
    logp = P_t.log()  # both entries of a pair enter the log-odds: finite since neither is 0
    scores = (logp - logp.T).mean(dim=1)  # least-squares fit of s_i - s_j to the log-odds
    return float((P_t - bradley_terry(scores)).abs().max()) <= tol


def bt_fit_gap(P: Any, nu: Any = None) -> float:
    r"""How far ``P`` is from its best Bradley-Terry fit: the largest error of any pair.

    .. math::
        \max_{y, y'} \bigl| P[y, y'] - \sigma(\hat r_y - \hat r_{y'}) \bigr|, \qquad
        \hat r = \texttt{bt\_fit}(P, \nu)

    Zero (up to round-off, ~1e-15) exactly when ``P`` is Bradley-Terry; the fit depends on ``nu``
    when it is not, and so does the gap.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.
    nu : array-like, shape (K,), optional
        Full-support pair distribution of the fit; uniform when None.

    Returns
    -------
    float in [0, 1)

    Raises
    ------
    ValueError
        As ``bt_fit``: invalid ``P`` or ``nu``, or no finite BT maximiser.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (1)-(2).

    Examples
    --------
    >>> round(bt_fit_gap([[0.5, 0.9], [0.1, 0.5]]), 12)  # every 2 x 2 game is BT
    0.0
    """
    P_t, nu_t = _bt_inputs(P, nu)  # validated once, here, not again inside bt_fit
    return float((P_t - bradley_terry(_fit(P_t, nu_t))).abs().max())


def bt_fit_kl(P: Any, nu: Any = None) -> float:
    r"""The ``nu x nu``-weighted KL divergence from ``P`` to its best Bradley-Terry fit, in nats.

    .. math::
        \sum_{y, y'} \nu_y \nu_{y'} \, P[y, y']
            \log \frac{P[y, y']}{\sigma(\hat r_y - \hat r_{y'})},
        \qquad \hat r = \texttt{bt\_fit}(P, \nu)

    (``0 log 0 = 0``). Summed over ordered pairs, this is the expected KL between the Bernoulli
    label distributions of ``P`` and of the fit for a pair drawn from ``nu x nu``, and equals the
    log-likelihood gap between the saturated model (``P`` itself) and the BT maximum; it is the
    minimum over all BT matrices, since ``bt_fit`` maximises that likelihood.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix.
    nu : array-like, shape (K,), optional
        Full-support pair distribution; uniform when None.

    Returns
    -------
    float >= 0
        Zero (up to round-off) exactly when ``P`` is Bradley-Terry.

    Raises
    ------
    ValueError
        As ``bt_fit``.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (2) (the BT log-likelihood).
    """
    P_t, nu_t = _bt_inputs(P, nu)  # validated once, here, not again inside bt_fit
    r = _fit(P_t, nu_t)
    gap = r[:, None] - r[None, :]
    # log sigma as -softplus(-gap): finite where the fitted probability is ~1e-300.
    log_ratio = torch.where(P_t > 0, P_t.log() + _neg_logsigmoid(gap), 0.0)
    # Every term is finite (P > 0 where log P is taken, finite rewards), so only round-off can
    # make the sum negative.
    return max(float((nu_t[:, None] * nu_t[None, :] * P_t * log_ratio).sum()), 0.0)
