"""The one loss library, shared by the exact toy and the GPT-2 trainers.

- ``pairwise``: per-pair losses of the log-ratio margin ``h`` (DPO, cDPO/rDPO, IPO, SLiC), no
  reduction;
- ``gpo``: the GPO family ``f(beta * h)`` and its optimal margins;
- ``population``: the exact population objective, an enumeration over all ordered pairs, and the
  loss of a finite data set.
"""

from .gpo import GPO_FUNCTIONS, gpo_loss, gpo_optimal_margin
from .pairwise import dpo_loss, ipo_loss, margin, robust_dpo_loss, slic_loss
from .population import dataset_loss, hard_labels, pair_margins, population_loss

__all__ = [
    "GPO_FUNCTIONS",
    "dataset_loss",
    "dpo_loss",
    "gpo_loss",
    "gpo_optimal_margin",
    "hard_labels",
    "ipo_loss",
    "margin",
    "pair_margins",
    "population_loss",
    "robust_dpo_loss",
    "slic_loss",
]
