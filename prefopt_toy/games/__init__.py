"""Preference games: the matrix ``P`` with ``P[i, j] = Pr(y_i beats y_j)`` and ``P + P.T = 1``.

- ``constructors``: the check of a preference matrix and the games built from parameters
  (Bradley-Terry, rock-paper-scissors, three voter types, random games);
- ``comparisons``: games estimated from comparison data (win counts, lists of comparisons);
- ``named``: the named games of the demo, the figures and the notebooks (``NAMED_GAMES``);
- ``properties``: what a game is before any algorithm runs (Condorcet winner, transitivity);
- ``judges``: raw ordered judges (a language model asked "is the first answer better?"), their
  position bias and their symmetrisation into a game.

Whether a game is Bradley-Terry, and how far from it, needs the BT fit: ``solutions.bt``.
"""

from .comparisons import from_comparisons, from_win_counts
from .constructors import (
    bradley_terry,
    check_preference_matrix,
    random_game,
    rock_paper_scissors,
    three_voter_types,
)
from .judges import (
    check_judge_matrix,
    judge_decomposition,
    lapse_judge,
    logit_shift_judge,
    max_position_bias,
    position_bias,
    symmetrize_judge,
)
from .named import NAMED_GAMES, NamedGame, named_game
from .properties import condorcet_winner, is_transitive

__all__ = [
    "NAMED_GAMES",
    "NamedGame",
    "bradley_terry",
    "check_judge_matrix",
    "check_preference_matrix",
    "condorcet_winner",
    "from_comparisons",
    "from_win_counts",
    "is_transitive",
    "judge_decomposition",
    "lapse_judge",
    "logit_shift_judge",
    "max_position_bias",
    "named_game",
    "position_bias",
    "random_game",
    "rock_paper_scissors",
    "symmetrize_judge",
    "three_voter_types",
]
