r"""Named three-action games: shared configs behind the demo table, the reference figure, tests.

Each entry of ``NAMED_GAMES`` is a frozen ``NamedGame`` config: how to build the preference matrix
``P`` (a constructor of ``games/constructors.py`` and its arguments), the reference policy ``mu``
and the KL strengths ``tau`` to tabulate. Notebooks, figures and tests fetch a game by name with
``named_game(name)``, so the three cannot drift apart.

The four games show the four ways the solutions can relate:

- ``transitive``: Bradley-Terry holds exactly; every method ranks the actions the same way.
- ``rock_paper_scissors``: a pure cycle; the Nash equilibrium is uniform whatever ``mu`` is, while
  the offline optima (data drawn from a skewed ``mu``) run off towards a vertex.
- ``three_voter_types``: Munos et al. (2023), Sec. 3.2: a population of three voter types makes a
  Condorcet cycle; BT/RLHF ranks ``y0`` first, the Nash equilibrium mixes.
- ``condorcet_winner``: ``y0`` beats each other action narrowly, yet ``y1`` has the top Borda score,
  so BT/RLHF/DPO and offline IPO favour ``y1`` while the regularised Nash tends to ``y0`` as
  ``tau -> 0`` (a game constructed for this suite).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import DTYPE, as_policy, as_preference_matrix

__all__ = ["NAMED_GAMES", "NamedGame", "named_game"]


@dataclass(frozen=True)
class NamedGame:
    """A named three-action preference game with its reference policy and tabulated KL strengths."""

    name: str
    """Registry key, a Python identifier (``"rock_paper_scissors"``); also the name on the CLI."""
    title: str
    """Short human-readable title for figure panels (``"Rock-paper-scissors"``)."""
    description: str
    """One or two sentences for the printed table: what the game is and what it teaches."""
    constructor: str
    """Name of the function of ``prefopt_toy.games.constructors`` that builds ``P`` (``"bradley_terry"``)."""
    arguments: tuple[tuple[str, Any], ...]
    """Keyword arguments of ``constructor`` as ``(name, value)`` pairs (a tuple keeps it frozen)."""
    source: str
    """Where the game comes from: a paper key of ``prefopt_toy.papers`` and section, or a note."""
    mu: tuple[float, ...] | None = None
    """Reference policy ``mu``, the KL anchor and the data policy ``nu`` of the offline methods.
    None means uniform."""
    taus: tuple[float, ...] = (1.0, 0.1, 0.01)
    """KL strengths tabulated by the demo and marked in the figure; RLHF/DPO uses ``beta = tau``."""
    actions: tuple[str, ...] = ("y0", "y1", "y2")
    """Action labels for table columns and triangle corners."""

    def preference_matrix(self) -> Tensor:
        """The preference matrix ``P``, shape (K, K), float64, built by ``constructor``."""
        from prefopt_toy.games import (
            constructors as games,  # lazily: importing the registry needs no solver module
        )

        build = getattr(games, self.constructor)
        return as_preference_matrix(build(**dict(self.arguments)), f"{self.name}.P")

    def reference_policy(self) -> Tensor:
        """The reference policy ``mu``, shape (K,), float64 (uniform when ``mu`` is None)."""
        k = len(self.actions)
        if self.mu is None:
            return torch.full((k,), 1.0 / k, dtype=DTYPE)
        return as_policy(self.mu, f"{self.name}.mu", size=k, positive=True)


# P[i, j] = Pr(y_i beats y_j). y0 beats y1 and y2 by 0.55 each, so y0 is the Condorcet winner; but
# y1 crushes y2 (0.95), so y1 has the highest Borda score (mean win rate 0.633 against 0.533 for y0)
# and the highest BT reward: BT/RLHF/DPO and offline IPO favour y1, the Nash equilibrium is y0.
_CONDORCET_P = (
    (0.50, 0.55, 0.55),
    (0.45, 0.50, 0.95),
    (0.45, 0.05, 0.50),
)

NAMED_GAMES: dict[str, NamedGame] = {
    game.name: game
    for game in [
        NamedGame(
            name="transitive",
            title="Transitive (Bradley-Terry)",
            description=(
                "Bradley-Terry game with scores (1, 0.5, 0): preferences are transitive and BT "
                "holds exactly, so RLHF/DPO, IPO and Nash all rank y0 > y1 > y2."
            ),
            constructor="bradley_terry",
            arguments=(("scores", (1.0, 0.5, 0.0)),),
            source="bt: Bradley & Terry (1952)",
        ),
        NamedGame(
            name="rock_paper_scissors",
            title="Rock-paper-scissors, skewed mu",
            description=(
                "Cyclic game with strength 0.8 (paper beats rock, scissors beats paper, rock "
                "beats scissors, each with probability 0.9) and a skewed reference "
                "mu = (0.6, 0.3, 0.1): the Nash equilibrium is uniform, the offline optima "
                "fitted on data from mu are not."
            ),
            constructor="rock_paper_scissors",
            arguments=(("strength", 0.8),),
            source="classic cyclic game (no paper)",
            mu=(0.6, 0.3, 0.1),
            actions=("rock", "paper", "scissors"),
        ),
        NamedGame(
            name="three_voter_types",
            title="Three voter types (NLHF Sec. 3.2)",
            description=(
                "Munos et al. (2023), Sec. 3.2, epsilon = 0.1: three voter types form a Condorcet "
                "cycle; BT/RLHF ranks y0 first while the Nash equilibrium mixes all three."
            ),
            constructor="three_voter_types",
            arguments=(("epsilon", 0.1),),
            source="nlhf: Munos et al., arXiv:2312.00886v4, Sec. 3.2",
        ),
        NamedGame(
            name="condorcet_winner",
            title="Condorcet winner y0, Borda winner y1",
            description=(
                "y0 beats y1 and y2 with probability 0.55 (Condorcet winner) but y1 beats y2 with "
                "0.95 (top Borda score): BT/RLHF/DPO and offline IPO favour y1, Nash picks y0."
            ),
            constructor="check_preference_matrix",
            arguments=(("P", _CONDORCET_P),),
            source="constructed for this suite (a Condorcet winner that BT/RLHF ranks second)",
        ),
    ]
}


def named_game(name: str) -> NamedGame:
    """The named game ``name`` from ``NAMED_GAMES``.

    Raises
    ------
    ValueError
        If ``name`` is not a registered game; the message lists the valid names.

    Examples
    --------
    >>> named_game("rock_paper_scissors").taus
    (1.0, 0.1, 0.01)
    """
    try:
        return NAMED_GAMES[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(NAMED_GAMES))
        raise ValueError(f"unknown game {name!r}; valid names: {valid}") from None
