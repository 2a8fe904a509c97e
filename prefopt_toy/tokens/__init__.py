"""The token-tree bandit: an exact autoregressive toy for token-level preference optimisation.

- ``tree``: :class:`TokenTree`, every sequence and prefix of a small vocabulary with an end token
  and a maximum length; sequence probabilities, prefix visits, per-prefix and sequential KL,
  entropies by enumeration;
- ``games``: preference games on sequences, given directly or lifted from classes.

The losses (``prefopt_toy.losses.tdpo_loss``) and the exact dynamics of DPO, TDPO1 and TDPO2 on a
tree (``prefopt_toy.dynamics.token_tree``) build on it.
"""

from .games import lifted_game, sequence_game
from .tree import MAX_SEQUENCES, TokenTree, prefix_entropy, prefix_kl

__all__ = [
    "MAX_SEQUENCES",
    "TokenTree",
    "lifted_game",
    "prefix_entropy",
    "prefix_kl",
    "sequence_game",
]
