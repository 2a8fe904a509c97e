"""prefopt_toy: exact tabular preference optimisation, for teaching and analysis.

The names in ``__all__`` are the teaching API (a contract: notebooks, labs and outside checks
import them from here). Inputs accept lists, numpy arrays or torch tensors; results are float64
torch tensors or Python floats. See the README for a tour and the notation table.
"""

from prefopt_toy.games.constructors import (
    bradley_terry,
    check_preference_matrix,
    from_comparisons,
    from_win_counts,
    random_game,
    rock_paper_scissors,
    three_voter_types,
)
from prefopt_toy.games.judges import (
    check_judge_matrix,
    judge_decomposition,
    lapse_judge,
    logit_shift_judge,
    max_position_bias,
    position_bias,
    symmetrize_judge,
)
from prefopt_toy.games.properties import condorcet_winner, is_transitive
from prefopt_toy.losses.gpo import GPO_FUNCTIONS, gpo_loss, gpo_optimal_margin
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, margin, robust_dpo_loss, slic_loss
from prefopt_toy.losses.population import dataset_loss, hard_labels, pair_margins, population_loss
from prefopt_toy.losses.reference_free import log_odds, odds_ratio_loss, orpo_loss, simpo_loss
from prefopt_toy.losses.shaped import dpop_loss, rdpo_loss
from prefopt_toy.losses.token import tdpo_loss
from prefopt_toy.losses.unlearning import altpo_loss, gradient_ascent_loss, npo_loss, retain_nll
from prefopt_toy.losses.unpaired import kto_loss, kto_reference_point
from prefopt_toy.solutions.bt import (
    bt_fit,
    bt_fit_gap,
    bt_fit_kl,
    bt_log_likelihood,
    is_bradley_terry,
)
from prefopt_toy.solutions.nash import exploitability, nash_equilibrium
from prefopt_toy.solutions.optima import ipo_optimum, rdpo_optimum, rlhf_optimum
from prefopt_toy.solutions.regularized import FixedPointReport, ipo_md_fixed_point, regularized_nash

from .dynamics import (
    ALGORITHMS,
    FAMILY,
    FIXED_POINTS,
    TOKEN_ALGORITHMS,
    UNLEARNING_METHODS,
    DivergenceError,
    TokenTrajectory,
    Trajectory,
    UnlearningTrajectory,
    dataset_run,
    nash_md,
    seed_summary,
    unlearn,
)
from .papers import PAPERS, cite
from .policies import entropy, geometric_mixture, kl, log_softmax, softmax, win_rate, win_rates
from .tokens import TokenTree
from .unlearning import UnlearningTask

__version__ = "0.1.0"

__all__ = [
    # games and their properties
    "check_preference_matrix",
    "bradley_terry",
    "rock_paper_scissors",
    "three_voter_types",
    "from_win_counts",
    "from_comparisons",
    "random_game",
    "condorcet_winner",
    "is_transitive",
    "is_bradley_terry",
    "bt_fit_gap",
    "bt_fit_kl",
    # judges that read an ordered pair (position bias) and their symmetrisation
    "check_judge_matrix",
    "symmetrize_judge",
    "position_bias",
    "max_position_bias",
    "judge_decomposition",
    "lapse_judge",
    "logit_shift_judge",
    # policies
    "softmax",
    "log_softmax",
    "kl",
    "entropy",
    "geometric_mixture",
    "win_rate",
    "win_rates",
    # reference solutions
    "bt_fit",
    "bt_log_likelihood",
    "rlhf_optimum",
    "ipo_optimum",
    "rdpo_optimum",
    "regularized_nash",
    "ipo_md_fixed_point",
    "FixedPointReport",
    "nash_equilibrium",
    "exploitability",
    # per-pair losses
    "margin",
    "dpo_loss",
    "robust_dpo_loss",
    "ipo_loss",
    "slic_loss",
    "gpo_loss",
    "gpo_optimal_margin",
    "GPO_FUNCTIONS",
    "kto_loss",
    "kto_reference_point",
    "simpo_loss",
    "orpo_loss",
    "odds_ratio_loss",
    "log_odds",
    "rdpo_loss",
    "dpop_loss",
    "tdpo_loss",
    "gradient_ascent_loss",
    "npo_loss",
    "altpo_loss",
    "retain_nll",
    # exact population objective
    "population_loss",
    "pair_margins",
    "hard_labels",
    "dataset_loss",
    # exact learning dynamics
    "ALGORITHMS",
    "FIXED_POINTS",
    "FAMILY",
    "Trajectory",
    "DivergenceError",
    "nash_md",
    "dataset_run",
    "seed_summary",
    # the token tree (sequences of tokens) and its dynamics
    "TokenTree",
    "TOKEN_ALGORITHMS",
    "TokenTrajectory",
    # unlearning: forget and retain questions, alternates, and its exact dynamics
    "UnlearningTask",
    "UNLEARNING_METHODS",
    "UnlearningTrajectory",
    "unlearn",
    # sources
    "PAPERS",
    "cite",
]

# Teaching modules with heavier imports (sympy, ipywidgets) load on first use, so that
# ``import prefopt_toy`` stays fast: ``pt.symbolic``, ``pt.widgets``, ``pt.labs``, ``pt.analysis``, ``pt.plots``
_LAZY_MODULES = ("symbolic", "widgets", "labs", "analysis", "plots")


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
