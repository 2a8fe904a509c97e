r"""Preference matrices ``P``: validation and constructors.

A preference matrix on K actions holds ``P[i, j] = Pr(action i beats action j)``, so
``P + P.T = 1`` and the diagonal is 1/2 (README, "Notation"). Every constructor here returns a
float64 tensor that is complementary *exactly* in floating point: each pair is computed once (the
entry at most 1/2 where accuracy matters) and its partner is set to ``1 - entry``, which makes
``P[i, j] + P[j, i] == 1`` hold bit for bit (for ``a`` in [0, 1], ``a + fl(1 - a)`` rounds to 1).

Games estimated from comparison data (``from_win_counts``, ``from_comparisons``) live in
``games/comparisons.py`` and are re-exported here. Named games from the papers live in
``games/named.py``; the properties of a game (Condorcet winner, transitivity) in
``games/properties.py``; whether it is Bradley-Terry, and the Bradley-Terry fit, in
``solutions/bt.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import (
    DTYPE,
    PROB_ATOL,
    as_float,
    as_generator,
    as_int,
    as_positive_float,
    as_preference_matrix,
    as_unit_interval,
    as_vector,
)

from .comparisons import from_comparisons, from_win_counts  # re-exported

__all__ = [
    "bradley_terry",
    "check_preference_matrix",
    "from_comparisons",
    "from_win_counts",
    "random_game",
    "rock_paper_scissors",
    "three_voter_types",
]


def _complete_from_upper(upper: Tensor) -> Tensor:
    """A preference matrix from its strict upper triangle: lower = 1 - upper, diagonal = 1/2.

    Only ``upper[i, j]`` with ``i < j`` is read. No validation (callers build valid entries).
    """
    k = upper.shape[0]
    mask = torch.ones(k, k, dtype=torch.bool).triu(1)
    u = torch.where(mask, upper, torch.zeros((), dtype=DTYPE))
    # 1 - u computed once per pair, so P[i, j] + P[j, i] == 1 exactly (see the module docstring).
    lower = torch.where(mask, 1.0 - u, torch.zeros((), dtype=DTYPE)).T
    return u + lower + 0.5 * torch.eye(k, dtype=DTYPE)


def check_preference_matrix(P: Any, *, atol: float = PROB_ATOL) -> Tensor:
    r"""Validate a preference matrix and return it as a float64 tensor.

    A preference matrix on K actions holds :math:`P[i, j] = \Pr(y_i \succ y_j)`, so

    .. math:: P + P^\top = \mathbf{1}\mathbf{1}^\top, \qquad P[i, i] = \tfrac12 .

    Parameters
    ----------
    P : array-like, shape (K, K)
        Candidate matrix (list, numpy array or tensor), K >= 1.
    atol : float, default 1e-9
        Tolerance on ``P + P.T == 1`` and on the range [0, 1]; entries within ``atol`` outside
        [0, 1] are clipped. For float32, float16 or bfloat16 input the rounding of the two entries
        in that dtype is added (``_validate.preference_tolerance``: about 0.016 for bfloat16,
        2.4e-7 for float32), whatever the size of ``P``; a pair that is wrong by more is refused.

    Returns
    -------
    Tensor, shape (K, K), float64
        A copy of ``P`` (never a view of the caller's array), exactly complementary in float64:
        ``P + P.T == 1`` entry for entry and a diagonal of exactly 1/2 (an input within the
        tolerance is projected there, ``(P + 1 - P.T) / 2``).

    Raises
    ------
    ValueError
        Naming ``P`` and the broken constraint: not numeric, NaN or inf, not square, empty,
        entries outside [0, 1], or ``P[i, j] + P[j, i] != 1`` (the worst pair is named).

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Sec. 3 (``p*(y > y')``); Munos et al., arXiv:2312.00886v4,
    Sec. 2 (the preference model ``P(y > y')``).

    Examples
    --------
    >>> check_preference_matrix([[0.5, 0.9], [0.1, 0.5]])
    tensor([[0.5000, 0.9000],
            [0.1000, 0.5000]], dtype=torch.float64)
    """
    return as_preference_matrix(P, "P", atol=as_positive_float(atol, "atol", allow_zero=True))


def bradley_terry(scores: Any) -> Tensor:
    r"""The Bradley-Terry matrix of ``scores``: ``P[i, j] = sigmoid(scores[i] - scores[j])``.

    .. math:: P[i, j] = \sigma(s_i - s_j) = \frac{e^{s_i}}{e^{s_i} + e^{s_j}}

    Parameters
    ----------
    scores : array-like, shape (K,)
        Finite real scores (rewards, Elo-like log-strengths); only differences matter.

    Returns
    -------
    Tensor, shape (K, K), float64
        ``P`` with ``P + P.T == 1`` exactly and diagonal 1/2.

    Raises
    ------
    ValueError
        If ``scores`` is not a non-empty finite vector.

    Notes
    -----
    For each pair the smaller probability is computed as ``sigmoid(-|s_i - s_j|)``, which keeps full
    relative accuracy down to about 1e-308 (score gaps up to ~709), and the larger one as
    ``1 - smaller``. Gaps beyond ~745 give exact 0 / 1 entries.

    References
    ----------
    Bradley & Terry (1952), Biometrika 39; Azar et al., arXiv:2310.12036v2, Eq. (1).

    Examples
    --------
    >>> import math
    >>> bradley_terry([0.0, math.log(3.0)])  # P[1, 0] = 3 / (1 + 3)
    tensor([[0.5000, 0.2500],
            [0.7500, 0.5000]], dtype=torch.float64)
    """
    s = as_vector(scores, "scores")
    gap = s[:, None] - s[None, :]  # (K, K), antisymmetric bit for bit: fl(a - b) == -fl(b - a)
    smaller = torch.sigmoid(-gap.abs())  # accurate in relative terms even when tiny
    return torch.where(gap > 0, 1.0 - smaller, smaller)


def rock_paper_scissors(strength: float = 1.0) -> Tensor:
    r"""Rock-paper-scissors: the cyclic 3-action game ``P = 1/2 + strength/2 * C``.

    Actions are 0 = rock, 1 = paper, 2 = scissors. Paper beats rock, scissors beats paper, rock
    beats scissors: action ``(i + 1) % 3`` beats action ``i``, each with probability
    ``(1 + strength) / 2``.

    .. math::
        P = \tfrac12 \mathbf{1}\mathbf{1}^\top + \tfrac{\text{strength}}{2} C, \qquad
        C = \begin{pmatrix} 0 & -1 & 1 \\ 1 & 0 & -1 \\ -1 & 1 & 0 \end{pmatrix}

    Parameters
    ----------
    strength : float in [0, 1], default 1.0
        1 is the deterministic game, 0 the all-ties game ``P = 1/2``.

    Returns
    -------
    Tensor, shape (3, 3), float64

    Raises
    ------
    ValueError
        If ``strength`` is not a real number in [0, 1].

    Notes
    -----
    For ``strength > 0`` there is no Condorcet winner, the unique Nash equilibrium is uniform
    (``P @ (1/3, 1/3, 1/3) = 1/2``) and no finite Bradley-Terry scores reproduce ``P``.
    ``three_voter_types(0.0)`` equals ``rock_paper_scissors(1/3)``.

    Examples
    --------
    >>> rock_paper_scissors(0.5)[1, 0]  # paper beats rock
    tensor(0.7500, dtype=torch.float64)
    """
    s = as_unit_interval(strength, "strength")
    upper = torch.zeros(3, 3, dtype=DTYPE)
    upper[0, 1] = 0.5 - 0.5 * s  # rock vs paper: paper wins
    upper[0, 2] = 0.5 + 0.5 * s  # rock vs scissors: rock wins
    upper[1, 2] = 0.5 - 0.5 * s  # paper vs scissors: scissors wins
    return _complete_from_upper(upper)


def three_voter_types(epsilon: float) -> Tensor:
    r"""The three-voter-types Condorcet cycle of Munos et al. (Nash-MD paper, Sec. 3.2).

    A population of three voter types (0-based actions here; the paper's ``y_1, y_2, y_3`` are
    actions 0, 1, 2):

    - type 1, with probability :math:`\alpha_1 = 1/3 - \epsilon`, strictly prefers action 1 to 0;
    - type 2, with probability :math:`\alpha_2 = 1/3 + \epsilon/2`, strictly prefers action 0 to 2;
    - type 3, with probability :math:`\alpha_3 = 1/3 + \epsilon/2`, strictly prefers action 2 to 1;

    and every other comparison is a tie (probability 1/2 each way). Hence

    .. math::
        P[1, 0] = \tfrac12 + \tfrac{\alpha_1}{2}, \quad
        P[0, 2] = \tfrac12 + \tfrac{\alpha_2}{2}, \quad
        P[2, 1] = \tfrac12 + \tfrac{\alpha_3}{2},

    a Condorcet cycle 1 > 0 > 2 > 1 whose unregularised Nash equilibrium is
    :math:`\pi^* = (\alpha_3, \alpha_2, \alpha_1)` (it already sums to 1), while the Bradley-Terry
    fit under a uniform ``nu`` ranks action 0 first for ``epsilon > 0``.

    Parameters
    ----------
    epsilon : float in [-2/3, 1/3]
        Imbalance between the voter types; the range keeps every ``alpha`` in [0, 1].

    Returns
    -------
    Tensor, shape (3, 3), float64

    Raises
    ------
    ValueError
        If ``epsilon`` is not a real number in [-2/3, 1/3].

    Notes
    -----
    The paper describes the voters in words; the matrix is reconstructed for this suite from that
    description (Sec. 3.2), and its equilibrium matches the paper's stated one.
    ``epsilon = 0`` gives ``rock_paper_scissors(1/3)``.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 3.2.

    Examples
    --------
    >>> three_voter_types(0.0)[1, 0]  # 1/2 + (1/3)/2
    tensor(0.6667, dtype=torch.float64)
    """
    eps = as_float(epsilon, "epsilon")
    if not -2.0 / 3.0 <= eps <= 1.0 / 3.0:
        raise ValueError(
            "epsilon must lie in [-2/3, 1/3] so that alpha1 = 1/3 - epsilon and "
            f"alpha2 = alpha3 = 1/3 + epsilon/2 lie in [0, 1], got {eps!r}"
        )
    alpha1 = 1.0 / 3.0 - eps
    alpha2 = alpha3 = 1.0 / 3.0 + eps / 2.0
    upper = torch.zeros(3, 3, dtype=DTYPE)
    upper[0, 1] = 0.5 - alpha1 / 2.0  # P[1, 0] = 1/2 + alpha1/2 (type 1: action 1 over 0)
    upper[0, 2] = 0.5 + alpha2 / 2.0  # type 2: action 0 over 2
    upper[1, 2] = 0.5 - alpha3 / 2.0  # P[2, 1] = 1/2 + alpha3/2 (type 3: action 2 over 1)
    return _complete_from_upper(upper)


def random_game(
    n_actions: int, seed: Any, *, transitive: bool = False, scale: float | None = None
) -> Tensor:
    r"""A random preference matrix, reproducible from ``seed``.

    - ``transitive=True``: a Bradley-Terry game ``bradley_terry(scale * z)`` with
      ``z ~ N(0, I_K)``; strongly stochastically transitive, and BT by construction.
    - ``transitive=False``: a generic game, with the strict upper triangle i.i.d. Uniform(0, 1)
      and ``P[j, i] = 1 - P[i, j]``. Almost surely not Bradley-Terry for ``K >= 3``; its majority
      relation is a uniform random tournament, so it may still be transitive by chance (for
      K = 3 the majority relation is a 3-cycle with probability 1/4).

    Parameters
    ----------
    n_actions : int >= 1
        Number of actions K.
    seed : int >= 0 or torch.Generator
        Source of randomness (required). The same int gives the same game; a generator is advanced.
    transitive : bool, default False
        Which family to draw from (see above).
    scale : float > 0, optional
        Standard deviation of the BT scores, default 1.0; larger is more deterministic. Only for
        ``transitive=True``: passing it with ``transitive=False`` is an error, not silently ignored.

    Returns
    -------
    Tensor, shape (n_actions, n_actions), float64

    Raises
    ------
    ValueError
        If ``n_actions < 1``, ``seed`` is neither a non-negative int nor a generator,
        ``scale <= 0``, or ``scale`` is given with ``transitive=False``.

    Examples
    --------
    >>> bool((random_game(4, seed=0) == random_game(4, seed=0)).all())
    True
    """
    k = as_int(n_actions, "n_actions", minimum=1)
    gen = as_generator(seed, "seed")
    if not isinstance(transitive, bool):
        raise ValueError(f"transitive must be a bool, got {type(transitive).__name__}")
    if scale is not None and not transitive:
        raise ValueError("scale applies only to transitive=True (the std of the BT scores)")
    sigma = 1.0 if scale is None else as_positive_float(scale, "scale")
    if transitive:
        z = torch.randn(k, generator=gen, dtype=DTYPE)
        return bradley_terry(sigma * z)
    upper = torch.rand(k, k, generator=gen, dtype=DTYPE)
    return _complete_from_upper(upper)
