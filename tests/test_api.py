"""The teaching API is a contract (README): names, signatures, float64 results, sourced docstrings.

Notebooks, labs and outside checks import these names from ``prefopt_toy`` itself, so this file
does too. It also runs every docstring example of every module of the package (the doctests), so
``make test`` checks the examples students copy.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import math
import pkgutil
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch

import prefopt_toy as pt

# ----------------------------------------------------------------------------- names exist


def test_all_names_exist_and_are_unique():
    missing = [name for name in pt.__all__ if not hasattr(pt, name)]
    assert not missing, f"names in prefopt_toy.__all__ that do not exist: {missing}"
    duplicates = sorted({name for name in pt.__all__ if pt.__all__.count(name) > 1})
    assert not duplicates, f"names listed twice in __all__: {duplicates}"


def test_star_import_gives_exactly_all():
    namespace: dict[str, Any] = {}
    exec("from prefopt_toy import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(pt.__all__)


# ------------------------------------------------------------------ docstrings cite a source

SOURCE = re.compile(r"arXiv:|References|Bradley|Zermelo|Ford")

# Public objects with no paper behind them: generic probability helpers and bookkeeping. Keep small.
NO_SOURCE_NEEDED = {
    "softmax": "textbook softmax, no paper",
    "log_softmax": "textbook log-softmax, no paper",
    "kl": "textbook KL divergence, no paper",
    "entropy": "textbook Shannon entropy, no paper",
    "cite": "returns citations; it is the bibliography itself",
    "FixedPointReport": "a result record; the solvers that return it cite their sources",
    "DivergenceError": "an exception type; the algorithms that raise it cite their sources",
}

# Docstrings that should cite a source but do not yet (reported to the owners). Strict: adding the
# citation makes the test XPASS and fail, and the entry must then be removed from here.
MISSING_SOURCE: dict[str, str] = {}

PUBLIC_CALLABLES = sorted(n for n in pt.__all__ if callable(getattr(pt, n, None)))


def _docstring_param(name: str):
    marks = []
    if name in MISSING_SOURCE:
        marks.append(pytest.mark.xfail(strict=True, reason=MISSING_SOURCE[name]))
    return pytest.param(name, id=name, marks=marks)


@pytest.mark.parametrize("name", [_docstring_param(n) for n in PUBLIC_CALLABLES])
def test_public_docstring_cites_a_source(name):
    doc = inspect.getdoc(getattr(pt, name)) or ""
    assert doc.strip(), f"{name} has no docstring"
    if name in NO_SOURCE_NEEDED:
        return
    assert SOURCE.search(doc), (
        f"{name}'s docstring cites no source (needs 'arXiv:' or a References section, "
        f"README, 'The teaching API (a contract)'); first line: {doc.splitlines()[0]!r}"
    )


def test_every_public_docstring_is_non_empty():
    offenders = [n for n in PUBLIC_CALLABLES if not (inspect.getdoc(getattr(pt, n)) or "").strip()]
    assert not offenders, f"public callables without a docstring: {offenders}"


def test_source_allowlists_are_current():
    """The allowlists name only public callables, and the 'no source needed' one stays small."""
    stale = (set(NO_SOURCE_NEEDED) | set(MISSING_SOURCE)) - set(PUBLIC_CALLABLES)
    assert not stale, f"allowlist entries that are no longer public callables: {sorted(stale)}"
    assert len(NO_SOURCE_NEEDED) <= 8
    cited_anyway = [
        n for n in NO_SOURCE_NEEDED if SOURCE.search(inspect.getdoc(getattr(pt, n)) or "")
    ]
    assert not cited_anyway, (
        f"these now cite a source; drop them from NO_SOURCE_NEEDED: {cited_anyway}"
    )


# --------------------------------------------------------------------- contract signatures

REQUIRED = inspect.Parameter.empty

# README, "The teaching API (a contract)": leading positional parameters and their defaults.
CONTRACT: dict[str, list[tuple[str, Any]]] = {
    "check_preference_matrix": [("P", REQUIRED)],
    "bradley_terry": [("scores", REQUIRED)],
    "win_rate": [("P", REQUIRED), ("pi", REQUIRED), ("pi_other", REQUIRED)],
    "geometric_mixture": [("pi", REQUIRED), ("mu", REQUIRED), ("mixture", REQUIRED)],
    "bt_fit": [("P", REQUIRED), ("nu", None)],
    "rlhf_optimum": [("P", REQUIRED), ("mu", REQUIRED), ("beta", REQUIRED), ("nu", None)],
    "ipo_optimum": [("P", REQUIRED), ("mu", REQUIRED), ("tau", REQUIRED), ("nu", None)],
    "regularized_nash": [("P", REQUIRED), ("mu", REQUIRED), ("tau", REQUIRED)],
    "ipo_md_fixed_point": [
        ("P", REQUIRED),
        ("mu", REQUIRED),
        ("tau", REQUIRED),
        ("mixture", REQUIRED),
    ],
    "nash_equilibrium": [("P", REQUIRED)],
    "exploitability": [("P", REQUIRED), ("pi", REQUIRED)],
    "dpo_loss": [("margin", REQUIRED), ("beta", REQUIRED), ("label_smoothing", 0.0)],
    "ipo_loss": [("margin", REQUIRED), ("tau", REQUIRED)],
    "slic_loss": [("margin", REQUIRED), ("beta", REQUIRED)],
}

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_signature(name):
    assert name in pt.__all__, f"{name} is part of the teaching-API contract but not in __all__"
    params = list(inspect.signature(getattr(pt, name)).parameters.values())
    expected = CONTRACT[name]
    got = [(p.name, p.default) for p in params[: len(expected)]]
    assert got == expected, f"{name}: leading parameters {got}, contract says {expected}"
    assert all(p.kind in POSITIONAL for p in params[: len(expected)]), (
        f"{name}: contract parameters must be passable by position"
    )
    # Anything beyond the contract must be optional, so the contract's call still works.
    extra_required = [
        p.name
        for p in params[len(expected) :]
        if p.default is REQUIRED and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    assert not extra_required, (
        f"{name}: parameters beyond the contract without defaults: {extra_required}"
    )


# ------------------------------------------------------- float64 results for every input form

P3 = pt.random_game(3, seed=7).tolist()
MU3 = [0.5, 0.3, 0.2]
PI3 = [0.2, 0.2, 0.6]
NU3 = [0.25, 0.25, 0.5]
H4 = [-2.0, -0.5, 0.0, 3.0]


def _ipo(h: torch.Tensor) -> torch.Tensor:
    return pt.ipo_loss(h, tau=0.5)


# name -> call on a converter ``c`` that turns a nested list into the input form under test.
TENSOR_RESULTS: dict[str, Callable[[Callable[[Any], Any]], Any]] = {
    "check_preference_matrix": lambda c: pt.check_preference_matrix(c(P3)),
    "bradley_terry": lambda c: pt.bradley_terry(c([0.0, 1.0, -1.0])),
    "from_win_counts": lambda c: pt.from_win_counts(c([[0.0, 3.0], [1.0, 0.0]])),
    "softmax": lambda c: pt.softmax(c([0.0, 1.0, 2.0])),
    "log_softmax": lambda c: pt.log_softmax(c([0.0, 1.0, 2.0])),
    "geometric_mixture": lambda c: pt.geometric_mixture(c(PI3), c(MU3), 0.5),
    "win_rates": lambda c: pt.win_rates(c(P3), c(PI3)),
    "bt_fit": lambda c: pt.bt_fit(c(P3), c(NU3)),
    "rlhf_optimum": lambda c: pt.rlhf_optimum(c(P3), c(MU3), 0.5, c(NU3)),
    "ipo_optimum": lambda c: pt.ipo_optimum(c(P3), c(MU3), 0.5, c(NU3)),
    "regularized_nash": lambda c: pt.regularized_nash(c(P3), c(MU3), 0.1),
    "ipo_md_fixed_point": lambda c: pt.ipo_md_fixed_point(c(P3), c(MU3), 0.1, 0.5),
    "nash_equilibrium": lambda c: pt.nash_equilibrium(c(P3)),
    "margin": lambda c: pt.margin(c(H4), c([0.0] * 4), c([1.0] * 4), c([0.5] * 4)),
    "dpo_loss": lambda c: pt.dpo_loss(c(H4), 0.1),
    "robust_dpo_loss": lambda c: pt.robust_dpo_loss(c(H4), 0.1, 0.1),
    "ipo_loss": lambda c: pt.ipo_loss(c(H4), 0.1),
    "slic_loss": lambda c: pt.slic_loss(c(H4), 0.1),
    "gpo_loss": lambda c: pt.gpo_loss(c(H4), 0.1, "savage"),
    "gpo_optimal_margin": lambda c: pt.gpo_optimal_margin(c([0.2, 0.7]), 0.1, "exponential"),
    "kto_loss": lambda c: pt.kto_loss(c(H4), 0.1, c([1.0, 0.0, 1.0, 0.5]), 0.1),
    "kto_reference_point": lambda c: pt.kto_reference_point(c(H4)),
    "simpo_loss": lambda c: pt.simpo_loss(c([-1.0, -2.0]), c([-3.0, -0.5]), 2.0, 0.5),
    "orpo_loss": lambda c: pt.orpo_loss(c([-1.0, -2.0]), c([-3.0, -0.5]), 0.1),
    "odds_ratio_loss": lambda c: pt.odds_ratio_loss(c([1.0, -2.0]), c([-3.0, 0.5])),
    "log_odds": lambda c: pt.log_odds(c([-1.0, -0.01])),
    "rdpo_loss": lambda c: pt.rdpo_loss(c(H4), 0.1, 0.5, c([1.0, 2, 3, 4]), c([2.0, 2, 2, 2])),
    "dpop_loss": lambda c: pt.dpop_loss(c(H4), c([0.5, -0.5, 0.0, -2.0]), 0.1, 5.0),
    "tdpo_loss": lambda c: pt.tdpo_loss(
        c(H4), c([0.1, 0.2, 0.0, 1.0]), c([0.3, 0.0, 0.5, 2.0]), 0.1
    ),
    "gradient_ascent_loss": lambda c: pt.gradient_ascent_loss(c([-1.0, -2.0])),
    "retain_nll": lambda c: pt.retain_nll(c([-1.0, -2.0])),
    "npo_loss": lambda c: pt.npo_loss(c([-1.0, -2.0]), c([-1.5, -1.0]), 0.1),
    "altpo_loss": lambda c: pt.altpo_loss(
        c([-2.0, -3.0]), c([-2.5, -2.0]), c([-1.0, -2.0]), c([-1.5, -1.0]), 0.1
    ),
    "check_judge_matrix": lambda c: pt.check_judge_matrix(c([[0.6, 0.9], [0.3, 0.6]])),
    "symmetrize_judge": lambda c: pt.symmetrize_judge(c([[0.6, 0.9], [0.3, 0.6]])),
    "position_bias": lambda c: pt.position_bias(c([[0.6, 0.9], [0.3, 0.6]])),
    "lapse_judge": lambda c: pt.lapse_judge(c(P3), 0.3),
    "logit_shift_judge": lambda c: pt.logit_shift_judge(c(P3), 0.7),
    "rdpo_optimum": lambda c: pt.rdpo_optimum(c(P3), c(MU3), 0.5, 0.3, c([1.0, 2.0, 3.0])),
    "pair_margins": lambda c: pt.pair_margins(c([0.0, 1.0, 2.0]), c(MU3)),
    "hard_labels": lambda c: pt.hard_labels(c(P3)),
    "population_loss": lambda c: pt.population_loss(c([0.0, 1.0, 2.0]), c(P3), c(MU3), _ipo),
    "dataset_loss": lambda c: pt.dataset_loss(c([0.0, 1.0, 2.0]), c(MU3), [(0, 1), (2, 1)], _ipo),
}
FLOAT_RESULTS: dict[str, Callable[[Callable[[Any], Any]], Any]] = {
    "win_rate": lambda c: pt.win_rate(c(P3), c(PI3), c(MU3)),
    "exploitability": lambda c: pt.exploitability(c(P3), c(PI3)),
    "kl": lambda c: pt.kl(c(PI3), c(MU3)),
    "entropy": lambda c: pt.entropy(c(PI3)),
    "bt_log_likelihood": lambda c: pt.bt_log_likelihood(c(P3), c([0.0, 1.0, -1.0]), c(NU3)),
    "bt_fit_gap": lambda c: pt.bt_fit_gap(c(P3), c(NU3)),
    "bt_fit_kl": lambda c: pt.bt_fit_kl(c(P3), c(NU3)),
    "max_position_bias": lambda c: pt.max_position_bias(c([[0.6, 0.9], [0.3, 0.6]])),
}

CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "list": lambda x: x,
    "numpy": lambda x: np.asarray(x, dtype=np.float64),
    "tensor": lambda x: torch.tensor(x, dtype=torch.float64),
}


@pytest.mark.parametrize("form", sorted(CONVERTERS))
@pytest.mark.parametrize("name", sorted(TENSOR_RESULTS))
def test_tensor_results_are_float64(name, form):
    result = TENSOR_RESULTS[name](CONVERTERS[form])
    assert isinstance(result, torch.Tensor), f"{name} returned {type(result).__name__}"
    assert result.dtype == torch.float64, f"{name}({form}) returned {result.dtype}"
    assert bool(torch.isfinite(result).all())


@pytest.mark.parametrize("name", sorted(TENSOR_RESULTS))
def test_tensor_results_agree_across_input_forms(name):
    results = [TENSOR_RESULTS[name](c).detach() for c in CONVERTERS.values()]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=0.0, atol=0.0)


@pytest.mark.parametrize("form", sorted(CONVERTERS))
@pytest.mark.parametrize("name", sorted(FLOAT_RESULTS))
def test_scalar_results_are_python_floats(name, form):
    result = FLOAT_RESULTS[name](CONVERTERS[form])
    assert type(result) is float, f"{name}({form}) returned {type(result).__name__}"
    assert math.isfinite(result)


def test_result_tables_cover_the_public_functions():
    other = {
        # constructors without array inputs, predicates with non-float results, and non-callables
        "rock_paper_scissors",
        "three_voter_types",
        "random_game",
        "from_comparisons",
        "condorcet_winner",
        "is_transitive",
        "is_bradley_terry",
        "cite",
        "FixedPointReport",
        "PAPERS",
        "GPO_FUNCTIONS",
        # the dynamics return Trajectory objects (tests/dynamics/test_trajectory.py checks them)
        "ALGORITHMS",
        "FIXED_POINTS",
        "FAMILY",
        "Trajectory",
        "nash_md",
        "dataset_run",
        "seed_summary",
        "DivergenceError",  # an exception type (tests/dynamics/test_finite.py raises it)
        # the token tree: a class, its dynamics' table and result type (tests/tokens checks them)
        "TokenTree",
        "TOKEN_ALGORITHMS",
        "TokenTrajectory",
        # a pair of tensors (tests/games/test_judges.py checks both)
        "judge_decomposition",
        # unlearning: a task class, the methods' table, the runner and its result type
        # (tests/unlearning checks them)
        "UnlearningTask",
        "UNLEARNING_METHODS",
        "UnlearningTrajectory",
        "unlearn",
    }
    missing = set(pt.__all__) - other - set(TENSOR_RESULTS) - set(FLOAT_RESULTS)
    assert not missing, (
        f"add these public functions to TENSOR_RESULTS or FLOAT_RESULTS: {sorted(missing)}"
    )


def test_constructors_and_predicates_return_documented_types():
    for P in (
        pt.rock_paper_scissors(0.5),
        pt.three_voter_types(0.1),
        pt.random_game(4, seed=0),
        pt.from_comparisons([(0, 1)], n_actions=2),
    ):
        assert isinstance(P, torch.Tensor) and P.dtype == torch.float64
    assert pt.condorcet_winner(P3) in (None, 0, 1, 2)
    assert type(pt.is_transitive(P3)) is bool
    assert type(pt.is_bradley_terry(P3)) is bool
    pi, report = pt.regularized_nash(P3, MU3, 0.1, return_report=True)
    assert pi.dtype == torch.float64 and isinstance(report, pt.FixedPointReport)
    assert report.residual <= 1e-12


def test_float32_tensor_inputs_are_accepted():
    """A float32 policy (e.g. a GPT-2 class distribution) sums to 1 only within ~1e-7; it is
    accepted, and the result is float64 all the same."""
    P32 = torch.tensor(P3, dtype=torch.float32)
    mu32 = torch.tensor([1 / 3, 1 / 3, 1 / 3], dtype=torch.float32)
    assert float(mu32.double().sum()) != 1.0  # the case under test: off by ~3e-8
    pi = pt.regularized_nash(P32, mu32, 0.1)
    assert pi.dtype == torch.float64
    # Same answer as the float64 game up to the float32 rounding of the inputs.
    torch.testing.assert_close(pi, pt.regularized_nash(P3, [1 / 3] * 3, 0.1), rtol=0.0, atol=1e-5)
    assert pt.nash_equilibrium(P32).dtype == torch.float64
    assert type(pt.exploitability(P32, mu32)) is float


def test_float32_tolerance_is_not_a_loophole():
    """The widened float32 tolerance still rejects genuinely wrong float32 inputs."""
    with pytest.raises(ValueError, match="mu"):
        pt.regularized_nash(P3, torch.tensor([0.5, 0.3, 0.1], dtype=torch.float32), 0.1)
    with pytest.raises(ValueError, match="P"):
        pt.check_preference_matrix(torch.tensor([[0.5, 0.6], [0.6, 0.5]], dtype=torch.float32))


# ----------------------------------------------------------------------------------- doctests


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(pt.__path__, prefix="prefopt_toy."))


def test_doctests_exist():
    """Most public functions carry an example (README's teaching API); the package has many."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    count = sum(
        len(t.examples)
        for name in _modules()
        for t in finder.find(importlib.import_module(name), name)
    )
    assert count >= 20, f"only {count} doctest examples in the package"


@pytest.mark.parametrize("module_name", _modules())
def test_doctests(module_name):
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:  # an optional extra (e.g. transformers for lm/) is missing
        if err.name and not err.name.startswith("prefopt_toy"):
            pytest.skip(f"{module_name} needs {err.name}")
        raise
    finder = doctest.DocTestFinder(exclude_empty=True)
    # ELLIPSIS, as `pytest --doctest-modules` uses by default; whitespace is compared exactly.
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    failed = 0
    for test in finder.find(module, module_name):
        failed += runner.run(test, out=report.append).failed
    assert failed == 0, f"{failed} doctest example(s) failed in {module_name}:\n" + "".join(report)


def test_public_examples_run_through_the_package_namespace():
    """A doctest example that is copied into a notebook works with ``import prefopt_toy as pt``."""
    assert float(pt.ipo_loss(6.0, tau=0.1)) == 1.0
    assert pt.exploitability([[0.5, 0.9], [0.1, 0.5]], [0.0, 1.0]) == pytest.approx(0.4, abs=1e-15)
    loss = partial(pt.dpo_loss, beta=0.1)
    value = pt.population_loss([0.0, 0.0], [[0.5, 0.8], [0.2, 0.5]], [0.5, 0.5], loss)
    assert float(value) == pytest.approx(math.log(2.0), abs=1e-15)
