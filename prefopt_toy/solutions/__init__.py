"""Reference solutions of a preference game, in closed form or by certified solvers.

- ``bt``: the Bradley-Terry reward fit (maximum likelihood on pairs from ``nu``), and how far a
  game is from Bradley-Terry (``is_bradley_terry``, ``bt_fit_gap``, ``bt_fit_kl``);
- ``optima``: the RLHF/DPO optimum ``mu exp(r / beta)`` and the PsiPO/IPO optimum;
- ``regularized``: the regularised Nash equilibrium and the IPO-MD fixed point, certified;
- ``nash``: the unregularised Nash equilibrium (linear program, certified) and exploitability;
- ``reference``: every solution of a named game side by side (the demo's tables and figure).
"""

from .bt import bt_fit, bt_fit_gap, bt_fit_kl, bt_log_likelihood, is_bradley_terry
from .nash import exploitability, nash_equilibrium
from .optima import gibbs_policy, ipo_optimum, rdpo_optimum, rlhf_optimum
from .reference import ReferenceRow, format_table, reference_paths, reference_table
from .regularized import FixedPointReport, ipo_md_fixed_point, regularized_nash

__all__ = [
    "FixedPointReport",
    "ReferenceRow",
    "bt_fit",
    "bt_fit_gap",
    "bt_fit_kl",
    "bt_log_likelihood",
    "exploitability",
    "format_table",
    "gibbs_policy",
    "ipo_md_fixed_point",
    "ipo_optimum",
    "is_bradley_terry",
    "nash_equilibrium",
    "reference_paths",
    "reference_table",
    "regularized_nash",
    "rlhf_optimum",
    "rdpo_optimum",
]
