"""Exact learning dynamics on tabular preference games (expectations by enumeration, exact gradients).

Every algorithm returns a :class:`Trajectory` and is batched over games, reference policies and
hyperparameters. ``ALGORITHMS`` maps names to them.
"""

from .adaptive import beta_dpo
from .divergence import DivergenceError
from .fused import CORE, redraw
from .mirror_descent import nash_md, nash_md_pg
from .preference import (
    dpo,
    gpo,
    ipo,
    ipo_md,
    online_dpo,
    online_ipo,
    preference_optimization,
    rso,
    slic,
)
from .reference_free import log1m_softmax, orpo, simpo
from .registry import ALGORITHMS, FAMILY, FIXED_POINTS, run_algorithm
from .rlhf import rlhf
from .sampled import DATASET_LOSSES, dataset_run
from .seeds import SeedSummary, seed_summary
from .shaped import dpop, rdpo
from .staged import iterative_dpo, sdpo
from .token_tree import (
    TOKEN_ALGORITHMS,
    TokenTrajectory,
    tdpo,
    token_dpo,
    token_population_loss,
    token_preference_optimization,
    token_update_field,
)
from .trajectory import TARGETS, Trajectory
from .unlearning import UNLEARNING_METHODS, UnlearningTrajectory, unlearn, unlearning_objective
from .unpaired import REFERENCE_POINTS, kto, kto_reference_point_distribution

__all__ = [
    "ALGORITHMS",
    "FAMILY",
    "REFERENCE_POINTS",
    "beta_dpo",
    "dpop",
    "iterative_dpo",
    "kto",
    "kto_reference_point_distribution",
    "log1m_softmax",
    "orpo",
    "rdpo",
    "rso",
    "sdpo",
    "simpo",
    "CORE",
    "redraw",
    "DATASET_LOSSES",
    "DivergenceError",
    "SeedSummary",
    "dataset_run",
    "seed_summary",
    "FIXED_POINTS",
    "TARGETS",
    "Trajectory",
    "dpo",
    "gpo",
    "ipo",
    "ipo_md",
    "nash_md",
    "nash_md_pg",
    "online_dpo",
    "online_ipo",
    "preference_optimization",
    "rlhf",
    "run_algorithm",
    "slic",
    "TOKEN_ALGORITHMS",
    "TokenTrajectory",
    "tdpo",
    "token_dpo",
    "token_population_loss",
    "token_preference_optimization",
    "token_update_field",
    "UNLEARNING_METHODS",
    "UnlearningTrajectory",
    "unlearn",
    "unlearning_objective",
]
