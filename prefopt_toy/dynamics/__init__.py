"""Exact learning dynamics on tabular preference games (expectations by enumeration, exact gradients).

Every algorithm returns a :class:`Trajectory` and is batched over games, reference policies and
hyperparameters. ``ALGORITHMS`` maps names to them.
"""

from .divergence import DivergenceError
from .fused import CORE, redraw
from .mirror_descent import nash_md, nash_md_pg
from .preference import dpo, gpo, ipo, ipo_md, online_dpo, online_ipo, preference_optimization, slic
from .registry import ALGORITHMS, FIXED_POINTS, run_algorithm
from .rlhf import rlhf
from .sampled import DATASET_LOSSES, dataset_run
from .seeds import SeedSummary, seed_summary
from .trajectory import TARGETS, Trajectory

__all__ = [
    "ALGORITHMS",
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
]
