r"""Named, frozen experiment configs: the settings behind every figure, shared with notebooks and tests.

Each figure of ``python -m prefopt_toy figures`` is built by one function of
``prefopt_toy.plots.figures`` from one config below, looked up by the figure's name in
``EXPERIMENTS``. A notebook that imports ``experiment("tau_path")`` and a test that checks the
tau path use the same numbers as the figure, so the three cannot drift. Every field is documented;
fields that have to be chosen have no default. The ``quick_*`` fields are the reduced sizes of
``--quick`` (CI smoke mode); everything else is the same in both modes.

This file imports no solver and no matplotlib: the command line reads the figure names from here
without paying for either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefopt_toy.games.named import NAMED_GAMES

__all__ = [
    "CORE_ALGORITHMS",
    "EXPERIMENTS",
    "IPO_TOY",
    "IpoToyConfig",
    "NASH_MD_CONVERGENCE",
    "NashMDConvergenceConfig",
    "REFERENCE_SOLUTIONS",
    "ReferenceSolutionsConfig",
    "TAU_PATH",
    "TRAJECTORIES",
    "TauPathConfig",
    "TrajectoriesConfig",
    "experiment",
]

CORE_ALGORITHMS: tuple[str, ...] = (
    "dpo",
    "ipo",
    "slic",
    "online_dpo",
    "online_ipo",
    "ipo_md",
    "nash_md",
    "nash_md_pg",
    "rlhf",
)
"""The algorithms every exact-dynamics figure covers (the nine core ones; README, "Algorithms")."""


@dataclass(frozen=True)
class ReferenceSolutionsConfig:
    """Where each objective puts its optimum on the named games (``reference_solutions_figure``)."""

    name: str
    """Figure name, also the file stem (``reference_solutions.png``)."""
    games: tuple[str, ...]
    """Named games (keys of ``NAMED_GAMES``), one panel each; ``--game`` narrows this list."""


@dataclass(frozen=True)
class TrajectoriesConfig:
    """Exact trajectories of every algorithm on the simplex, one panel per game and algorithm group."""

    name: str
    """Figure name, also the file stem."""
    games: tuple[str, ...]
    """Named games, one column each: a transitive game, cyclic games, a Condorcet-winner game."""
    algorithm_groups: tuple[tuple[str, ...], ...]
    """Rows of panels: each a tuple of keys of ``dynamics.ALGORITHMS`` drawn together."""
    tau: float
    """KL strength of every algorithm (DPO-family losses read it as ``beta``)."""
    steps: int
    """Exact steps per run: enough that every trajectory visibly reaches its end point."""
    quick_steps: int
    """Steps in ``--quick`` mode (the trajectories are cut short; the targets are exact)."""
    hyper: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    """Extra keyword arguments per algorithm, as ``(name, ((key, value), ...))`` pairs (a tuple
    keeps the config frozen); algorithms not listed run with their defaults (e.g. IPO-MD's
    mixture 0.125, Nash-MD's decaying step)."""
    background: tuple[str, ...]
    """Algorithms drawn thinner, underneath the others (a long spiral would hide them)."""

    def hyper_for(self, algorithm: str) -> dict[str, Any]:
        """The extra keyword arguments of ``algorithm`` as a dict (empty when it has none)."""
        return dict(dict(self.hyper).get(algorithm, ()))


@dataclass(frozen=True)
class TauPathConfig:
    """The regularised Nash equilibrium and the RLHF/DPO optimum as tau runs from large to small."""

    name: str
    """Figure name, also the file stem."""
    games: tuple[str, ...]
    """Named games, one column each."""
    tau_max: float
    """Largest tau of the log grid (the policies start near ``mu``)."""
    tau_min: float
    """Smallest tau (near the unregularised limits: Nash equilibrium and BT argmax)."""
    points: int
    """Number of log-spaced taus on the grid, ``tau_max`` and ``tau_min`` included."""
    quick_points: int
    """Number of taus in ``--quick`` mode (the end points stay the same)."""
    marked_taus: tuple[float, ...]
    """Taus marked (and labelled) along both paths on the simplex; must lie on the grid's range."""


@dataclass(frozen=True)
class NashMDConvergenceConfig:
    """Nash-MD's last-iterate KL to the regularised Nash against the number of steps, with its bound."""

    name: str
    """Figure name, also the file stem."""
    game: str
    """Named game the runs are on."""
    taus: tuple[float, ...]
    """KL strengths, one panel each (the bound 8 / (tau^2 (T + 1)) grows as tau shrinks)."""
    constant_eta_tau: tuple[float, ...]
    """Constant step sizes, given as the product ``eta * tau`` in (0, 1] (so ``eta = value / tau``):
    it is the mixture weight of the IPO-MD fixed point a constant step converges to instead."""
    steps: int
    """Number of Nash-MD steps T of the longest run."""
    quick_steps: int
    """T in ``--quick`` mode."""


@dataclass(frozen=True)
class IpoToyConfig:
    """The IPO paper's toy bandits (Azar et al., arXiv:2310.12036v2, Sec. 5.3.1 and 5.4): DPO vs IPO."""

    name: str
    """Figure name, also the file stem."""
    tau_min: float
    """Smallest tau of the curves (log grid)."""
    tau_max: float
    """Largest tau of the curves."""
    curve_points: int
    """Points on the closed-form curves."""
    two_action_P: tuple[tuple[float, ...], ...]
    """Preference matrix of the two-action case (Sec. 5.3.1): y1 always beats y2; mu = nu uniform."""
    run_taus: tuple[float, ...]
    """Taus of the exact-dynamics runs (markers), one batched call per loss and toy."""
    exact_steps: int
    """Steps of the exact runs: gradient descent (default step sizes of ``dynamics.dpo`` / ``ipo``)
    on the two-action game, and Adam on the full data-set gradient of D1. DPO only approaches its
    limit as this grows, slowest at large tau."""
    quick_exact_steps: int
    """Exact steps in ``--quick`` mode."""
    dataset: tuple[tuple[int, int], ...]
    """The data set of (winner, loser) pairs of the three-action toy: D1 = a > b, b > c, a > c."""
    dataset_exact_lr: float
    """Adam learning rate of the exact (full data set, no sampling noise) runs on D1."""
    sampled_taus: tuple[float, ...]
    """Taus of the sampled (minibatch) reproduction on D1; empty to skip it."""
    sampled_steps: int
    """Adam steps per sampled run (18,000 in the paper)."""
    sampled_seeds: int
    """Seeds per tau (10 in the paper); the markers are the mean with a 95% t-interval."""
    sampled_batch_size: int
    """Minibatch size (9 in arXiv v2; TRL reports 90 for the AISTATS version)."""
    sampled_lr: float
    """Adam learning rate (0.01 in the paper)."""
    quick_sampled_steps: int
    """Sampled steps in ``--quick`` mode."""
    quick_sampled_seeds: int
    """Seeds in ``--quick`` mode (at least 2, for an interval)."""


REFERENCE_SOLUTIONS = ReferenceSolutionsConfig(name="reference_solutions", games=tuple(NAMED_GAMES))

TRAJECTORIES = TrajectoriesConfig(
    name="trajectories",
    games=("transitive", "rock_paper_scissors", "three_voter_types", "condorcet_winner"),
    algorithm_groups=(
        CORE_ALGORITHMS,
        (
            "gpo_logistic",
            "gpo_hinge",
            "gpo_squared",
            "gpo_exponential",
            "gpo_truncated_quadratic",
            "gpo_savage",
        ),
    ),
    tau=0.1,
    steps=2000,
    quick_steps=100,
    # The hinge has no curvature, so the default step (0.4 / (beta^2 / 4) = 160 at beta = 0.1)
    # throws SLiC's iterates across the simplex at every step; lr = 1 lets them settle.
    hyper=(("slic", (("lr", 1.0),)), ("gpo_hinge", (("lr", 1.0),))),
    background=("online_dpo",),
)

TAU_PATH = TauPathConfig(
    name="tau_path",
    games=tuple(NAMED_GAMES),
    tau_max=10.0,
    tau_min=1e-3,
    points=121,
    quick_points=17,
    marked_taus=(10.0, 1.0, 0.1, 0.01, 0.001),
)

NASH_MD_CONVERGENCE = NashMDConvergenceConfig(
    name="nash_md_convergence",
    game="rock_paper_scissors",
    taus=(1.0, 0.1),
    constant_eta_tau=(0.1, 0.01),
    steps=10_000,
    quick_steps=300,
)

IPO_TOY = IpoToyConfig(
    name="ipo_toy",
    tau_min=0.01,
    tau_max=10.0,
    curve_points=121,
    two_action_P=((0.5, 1.0), (0.0, 0.5)),
    run_taus=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    exact_steps=6000,
    quick_exact_steps=200,
    dataset=((0, 1), (1, 2), (0, 2)),
    dataset_exact_lr=0.01,
    sampled_taus=(0.1, 0.5, 1.0),
    sampled_steps=18_000,
    sampled_seeds=10,
    sampled_batch_size=9,
    sampled_lr=0.01,
    quick_sampled_steps=300,
    quick_sampled_seeds=3,
)

EXPERIMENTS: dict[str, Any] = {
    config.name: config
    for config in (REFERENCE_SOLUTIONS, TRAJECTORIES, TAU_PATH, NASH_MD_CONVERGENCE, IPO_TOY)
}
"""Figure name -> its experiment config, in the order the figure command writes them."""


def experiment(name: str) -> Any:
    """The experiment config registered as ``name`` in ``EXPERIMENTS``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists the valid names.

    Examples
    --------
    >>> experiment("nash_md_convergence").taus
    (1.0, 0.1)
    """
    try:
        return EXPERIMENTS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown experiment {name!r}; valid names: {', '.join(EXPERIMENTS)}"
        ) from None
