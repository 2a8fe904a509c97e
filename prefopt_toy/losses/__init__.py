"""The one loss library, shared by the exact toy and the GPT-2 trainers.

- ``pairwise``: per-pair losses of the log-ratio margin ``h`` (DPO, cDPO/rDPO, IPO, SLiC), no
  reduction;
- ``gpo``: the GPO family ``f(beta * h)`` and its optimal margins;
- ``unpaired``: KTO, one example with a desirable / undesirable label, against a reference point;
- ``reference_free``: SimPO (length-normalised) and ORPO (odds ratio plus SFT), no reference in
  the margin;
- ``shaped``: DPO with one added term, R-DPO (lengths) and DPOP (the chosen likelihood);
- ``token``: TDPO1 / TDPO2, DPO plus the sequential KL of each response (token level);
- ``unlearning``: gradient ascent, NPO, AltPO's pair term and the retain NLL (forgetting), no
  reduction;
- ``population``: the exact population objective, an enumeration over all ordered pairs, and the
  loss of a finite data set.
"""

from .gpo import GPO_FUNCTIONS, gpo_loss, gpo_optimal_margin
from .pairwise import dpo_loss, ipo_loss, margin, robust_dpo_loss, slic_loss
from .population import dataset_loss, hard_labels, pair_margins, population_loss
from .reference_free import log_odds, odds_ratio_loss, orpo_loss, simpo_loss
from .shaped import DPOP_PLACEMENTS, dpop_loss, rdpo_loss
from .token import TDPO_VARIANTS, tdpo_loss
from .unlearning import altpo_loss, gradient_ascent_loss, npo_loss, retain_nll
from .unpaired import kto_loss, kto_reference_point

__all__ = [
    "altpo_loss",
    "gradient_ascent_loss",
    "npo_loss",
    "retain_nll",
    "DPOP_PLACEMENTS",
    "GPO_FUNCTIONS",
    "dpop_loss",
    "kto_loss",
    "kto_reference_point",
    "log_odds",
    "odds_ratio_loss",
    "orpo_loss",
    "rdpo_loss",
    "simpo_loss",
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
    "TDPO_VARIANTS",
    "tdpo_loss",
]
