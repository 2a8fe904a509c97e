"""Malformed inputs to the public API raise a ValueError that names the argument, and no public
function modifies its inputs in place (README, "Reliability rules").

Everything is imported from ``prefopt_toy`` itself: this is the contract notebooks and outside
checks rely on, not the private helpers behind it.

Each row of ``BAD_INPUTS`` is one separate test: ``(id, call, argument, constraint)``. The error
message must name ``argument`` as a word (``pytest.raises(match=...)``) and contain ``constraint``
(a fragment of the broken rule), so a message that merely mentions the argument somewhere for a
different reason does not pass.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch

import prefopt_toy as pt

NAN = math.nan
RPS = [[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]]  # deterministic rock-paper-scissors
UNIFORM3 = [1 / 3, 1 / 3, 1 / 3]
P2 = [[0.5, 0.8], [0.2, 0.5]]
# Action 0 beats 1 and 2 with certainty: no path back to 0, so the BT rewards diverge.
DOMINATED = [[0.5, 1.0, 1.0], [0.0, 0.5, 0.6], [0.0, 0.4, 0.5]]


def _ipo(h: torch.Tensor) -> torch.Tensor:
    return pt.ipo_loss(h, tau=0.5)


def _judges():
    """``prefopt_toy.analysis.judges`` (the analysis modules load on first use)."""
    return importlib.import_module("prefopt_toy.analysis.judges")


# (id, thunk, argument the message must name, fragment of the constraint it must state)
BAD_INPUTS: list[tuple[str, Callable[[], Any], str, str]] = [
    # ---- preference matrices
    ("P_non_square", lambda: pt.check_preference_matrix(np.full((2, 3), 0.5)), "P", "square"),
    ("P_1d", lambda: pt.nash_equilibrium([0.5, 0.5]), "P", "square"),
    (
        "P_non_complementary",
        lambda: pt.check_preference_matrix([[0.5, 0.6], [0.6, 0.5]]),
        "P",
        "P + P.T",
    ),
    (
        "P_diagonal_not_half",
        lambda: pt.exploitability([[0.4, 0.5], [0.5, 0.4]], [0.5, 0.5]),
        "P",
        "P + P.T",
    ),
    (
        "P_nan",
        lambda: pt.regularized_nash([[0.5, NAN], [NAN, 0.5]], [0.5, 0.5], 1.0),
        "P",
        "finite",
    ),
    ("P_inf", lambda: pt.bt_fit([[0.5, math.inf], [-math.inf, 0.5]]), "P", "finite"),
    (
        "P_above_one",
        lambda: pt.ipo_optimum([[0.5, 1.5], [-0.5, 0.5]], [0.5, 0.5], 1.0),
        "P",
        "[0, 1]",
    ),
    (
        "P_list_of_strings",
        lambda: pt.check_preference_matrix([["a", "b"], ["c", "d"]]),
        "P",
        "numeric",
    ),
    ("P_empty", lambda: pt.check_preference_matrix(np.zeros((0, 0))), "P", "at least one action"),
    ("P_empty_list", lambda: pt.nash_equilibrium([]), "P", "square"),
    (
        "P_complex",
        lambda: pt.win_rates(torch.full((2, 2), 0.5, dtype=torch.complex128)),
        "P",
        "real",
    ),
    ("P_of_hard_labels", lambda: pt.hard_labels([[0.5, 0.7], [0.7, 0.5]]), "P", "P + P.T"),
    ("P_of_condorcet", lambda: pt.condorcet_winner([[0.5, 2.0], [-1.0, 0.5]]), "P", "[0, 1]"),
    (
        "labels_non_complementary",
        lambda: pt.population_loss(
            [0.0, 0.0], P2, [0.5, 0.5], _ipo, labels=[[0.5, 0.9], [0.9, 0.5]]
        ),
        "labels",
        "P + P.T",
    ),
    # ---- policies: mu, nu, pi, pi_other, p, q
    ("mu_negative", lambda: pt.regularized_nash(RPS, [1.2, -0.2, 0.0], 1.0), "mu", "non-negative"),
    (
        "mu_not_normalised",
        lambda: pt.ipo_md_fixed_point(RPS, [0.5, 0.3, 0.1], 1.0, 0.5),
        "mu",
        "sum to 1",
    ),
    ("mu_wrong_length", lambda: pt.regularized_nash(RPS, [0.5, 0.5], 1.0), "mu", "length 3"),
    ("mu_matrix", lambda: pt.rlhf_optimum(P2, [[0.5, 0.5]], 1.0), "mu", "vector"),
    (
        "mu_zero_in_margins",
        lambda: pt.pair_margins([0.0, 0.0], [1.0, 0.0]),
        "mu",
        "strictly positive",
    ),
    (
        "mu_zero_in_population_loss",
        lambda: pt.population_loss([0.0, 0.0], P2, [1.0, 0.0], _ipo),
        "mu",
        "strictly positive",
    ),
    (
        "nu_not_normalised",
        lambda: pt.ipo_optimum(RPS, UNIFORM3, 1.0, nu=[0.2, 0.2, 0.2]),
        "nu",
        "sum to 1",
    ),
    ("nu_zero_in_bt_fit", lambda: pt.bt_fit(P2, nu=[1.0, 0.0]), "nu", "strictly positive"),
    (
        "nu_zero_in_rlhf",
        lambda: pt.rlhf_optimum(P2, [0.5, 0.5], 1.0, nu=[0.0, 1.0]),
        "nu",
        "strictly positive",
    ),
    ("pi_negative", lambda: pt.exploitability(RPS, [1.5, -0.5, 0.0]), "pi", "non-negative"),
    ("pi_wrong_length", lambda: pt.win_rates(RPS, [0.5, 0.5]), "pi", "length 3"),
    (
        "pi_not_normalised",
        lambda: pt.geometric_mixture([0.5, 0.6], [0.5, 0.5], 0.5),
        "pi",
        "sum to 1",
    ),
    (
        "pi_other_not_normalised",
        lambda: pt.win_rate(P2, [0.5, 0.5], [0.9, 0.9]),
        "pi_other",
        "sum to 1",
    ),
    ("q_wrong_length", lambda: pt.kl([0.5, 0.5], UNIFORM3), "q", "length 2"),
    ("p_negative_entropy", lambda: pt.entropy([1.1, -0.1]), "p", "non-negative"),
    ("p_outside_unit_interval", lambda: pt.gpo_optimal_margin(1.5, 1.0, "logistic"), "p", "[0, 1]"),
    # ---- strengths and other scalars
    ("tau_zero", lambda: pt.regularized_nash(RPS, UNIFORM3, 0.0), "tau", "> 0"),
    ("tau_negative", lambda: pt.ipo_optimum(RPS, UNIFORM3, -1.0), "tau", "> 0"),
    ("tau_inf", lambda: pt.ipo_md_fixed_point(RPS, UNIFORM3, math.inf, 0.5), "tau", "finite"),
    ("tau_vector", lambda: pt.regularized_nash(RPS, UNIFORM3, torch.ones(2)), "tau", "scalar"),
    ("tau_bool", lambda: pt.ipo_loss([1.0], True), "tau", "real number"),
    ("tau_zero_in_ipo_loss", lambda: pt.ipo_loss([1.0], 0.0), "tau", "> 0"),
    ("tol_zero", lambda: pt.regularized_nash(RPS, UNIFORM3, 1.0, tol=0.0), "tol", "> 0"),
    ("beta_zero", lambda: pt.rlhf_optimum(P2, [0.5, 0.5], 0.0), "beta", "> 0"),
    ("beta_negative_dpo", lambda: pt.dpo_loss([1.0], -0.1), "beta", "> 0"),
    ("beta_zero_slic", lambda: pt.slic_loss([1.0], 0.0), "beta", "> 0"),
    ("beta_string_gpo", lambda: pt.gpo_loss([1.0], "0.1", "logistic"), "beta", "real number"),
    (
        "mixture_above_one",
        lambda: pt.geometric_mixture([0.5, 0.5], [0.5, 0.5], 1.5),
        "mixture",
        "[0, 1]",
    ),
    (
        "mixture_negative",
        lambda: pt.ipo_md_fixed_point(RPS, UNIFORM3, 1.0, -0.1),
        "mixture",
        "[0, 1]",
    ),
    (
        "label_smoothing_half",
        lambda: pt.dpo_loss([1.0], 0.1, label_smoothing=0.5),
        "label_smoothing",
        "[0, 0.5)",
    ),
    (
        "label_smoothing_robust",
        lambda: pt.robust_dpo_loss([1.0], 0.1, 0.7),
        "label_smoothing",
        "[0, 0.5)",
    ),
    (
        "label_smoothing_negative",
        lambda: pt.dpo_loss([1.0], 0.1, -0.1),
        "label_smoothing",
        "[0, 0.5)",
    ),
    ("strength_above_one", lambda: pt.rock_paper_scissors(2.0), "strength", "[0, 1]"),
    ("epsilon_out_of_range", lambda: pt.three_voter_types(1.0), "epsilon", "[-2/3, 1/3]"),
    ("atol_negative", lambda: pt.is_bradley_terry(P2, atol=-1.0), "atol", ">= 0"),
    ("n_actions_zero", lambda: pt.random_game(0, seed=0), "n_actions", ">= 1"),
    ("seed_negative", lambda: pt.random_game(3, seed=-1), "seed", ">= 0"),
    (
        "scale_without_transitive",
        lambda: pt.random_game(3, seed=0, scale=2.0),
        "scale",
        "transitive",
    ),
    # ---- losses and margins
    ("gpo_unknown_f", lambda: pt.gpo_loss([1.0], 0.1, "logistics"), "f", "must be one of"),
    (
        "gpo_optimal_margin_unknown_f",
        lambda: pt.gpo_optimal_margin(0.7, 0.1, "hinges"),
        "f",
        "must be one of",
    ),
    (
        "margin_shape_mismatch",
        lambda: pt.margin([0.0, 1.0], [0.0], [0.0, 0.0], [0.0, 0.0]),
        "logp_rejected",
        "shape",
    ),
    (
        "margin_no_broadcast",
        lambda: pt.margin(torch.zeros(3), torch.zeros(3), torch.zeros(3, 1), torch.zeros(3)),
        "logp_ref_chosen",
        "shape",
    ),
    ("margin_nan", lambda: pt.dpo_loss(torch.tensor([0.0, NAN]), 0.1), "margin", "finite"),
    ("margin_bool", lambda: pt.slic_loss(torch.tensor([True]), 0.1), "margin", "real floating"),
    (
        "loss_not_callable",
        lambda: pt.population_loss([0.0, 0.0], P2, [0.5, 0.5], "dpo"),
        "loss",
        "callable",
    ),
    (
        "loss_reduces",
        lambda: pt.population_loss([0.0, 0.0], P2, [0.5, 0.5], lambda h: h.sum()),
        "loss",
        "same shape",
    ),
    (
        "theta_wrong_length",
        lambda: pt.pair_margins([0.0, 0.0, 0.0], [0.5, 0.5]),
        "theta",
        "length 2",
    ),
    ("theta_scalar", lambda: pt.softmax(1.0), "theta", "last axis"),
    # ---- Bradley-Terry
    ("bt_fit_no_path_back", lambda: pt.bt_fit(DOMINATED), "P", "Pairs responsible: (0, 1), (0, 2)"),
    (
        "rlhf_no_path_back",
        lambda: pt.rlhf_optimum(DOMINATED, UNIFORM3, 1.0),
        "P",
        "Pairs responsible",
    ),
    (
        "rewards_wrong_length",
        lambda: pt.bt_log_likelihood(P2, [0.0, 0.0, 0.0]),
        "rewards",
        "length 2",
    ),
    ("scores_matrix", lambda: pt.bradley_terry([[0.0, 1.0]]), "scores", "vector"),
    # ---- data: win counts, comparisons, pairs
    ("wins_negative", lambda: pt.from_win_counts([[0, -1], [2, 0]]), "wins", "non-negative"),
    ("wins_non_square", lambda: pt.from_win_counts([[0, 1, 2]]), "wins", "square"),
    ("prior_negative", lambda: pt.from_win_counts([[0, 1], [2, 0]], prior=-1.0), "prior", ">= 0"),
    (
        "comparison_index_out_of_range",
        lambda: pt.from_comparisons([(0, 1), (0, 3)], n_actions=3),
        "comparisons",
        "[0, n_actions)",
    ),
    (
        "comparison_negative_index",
        lambda: pt.from_comparisons([(-1, 0)], n_actions=3),
        "comparisons",
        "[0, n_actions)",
    ),
    (
        "comparison_self",
        lambda: pt.from_comparisons([(1, 1)], n_actions=3),
        "comparisons",
        "winner != loser",
    ),
    (
        "comparison_float_indices",
        lambda: pt.from_comparisons([(0.0, 1.0)], n_actions=2),
        "comparisons",
        "integer",
    ),
    (
        "comparison_wrong_shape",
        lambda: pt.from_comparisons([(0, 1, 2)], n_actions=3),
        "comparisons",
        "shape (m, 2)",
    ),
    (
        "pairs_out_of_range",
        lambda: pt.dataset_loss([0.0, 0.0], [0.5, 0.5], [(0, 2)], _ipo),
        "pairs",
        "indices in [0, 1]",
    ),
    (
        "pairs_empty",
        lambda: pt.dataset_loss([0.0, 0.0], [0.5, 0.5], np.zeros((0, 2), dtype=int), _ipo),
        "pairs",
        "non-empty",
    ),
    (
        "pairs_self",
        lambda: pt.dataset_loss([0.0, 0.0], [0.5, 0.5], [(1, 1)], _ipo),
        "pairs",
        "winner != loser",
    ),
    (
        "pairs_ragged",
        lambda: pt.dataset_loss([0.0, 0.0], [0.5, 0.5], [(0, 1), (1,)], _ipo),
        "pairs",
        "(winner, loser)",
    ),
    ("P_none", lambda: pt.check_preference_matrix(None), "P", "numeric"),
    ("mu_none", lambda: pt.regularized_nash(RPS, None, 1.0), "mu", "numeric"),
    ("cite_unknown_key", lambda: pt.cite("dpo2"), "key", "must be one of"),
    # ---- numbers are numbers; low precision is checked against its own rounding
    ("margin_string", lambda: pt.dpo_loss("1.0", 0.1), "margin", "numeric"),
    ("margin_strings_in_list", lambda: pt.ipo_loss(["1.0", 2.0], 0.1), "margin", "numeric"),
    ("margin_complex_numpy", lambda: pt.slic_loss(np.array([1.0 + 2j]), 0.1), "margin", "real"),
    ("margin_python_complex", lambda: pt.gpo_loss(1.0 + 0j, 0.1, "hinge"), "margin", "real"),
    ("margin_huge_int", lambda: pt.dpo_loss(10**400, 0.1), "margin", "finite"),
    ("margin_list_of_bools", lambda: pt.dpo_loss([True, False], 0.1), "margin", "numeric"),
    ("tau_huge_int", lambda: pt.ipo_optimum(RPS, UNIFORM3, 10**400), "tau", "finite"),
    ("tau_complex", lambda: pt.regularized_nash(RPS, UNIFORM3, 1.0 + 0j), "tau", "real number"),
    (
        "P_numpy_strings",
        lambda: pt.nash_equilibrium(np.array([["0.5", "0.5"], ["0.5", "0.5"]])),
        "P",
        "numeric",
    ),
    (
        "P_bfloat16_non_complementary",
        lambda: pt.check_preference_matrix(
            torch.tensor([[0.5, 0.6], [0.6, 0.5]], dtype=torch.bfloat16)
        ),
        "P",
        "P + P.T",
    ),
    (
        "mu_bfloat16_sums_to_two",
        lambda: pt.regularized_nash(RPS, torch.full((3,), 2 / 3, dtype=torch.bfloat16), 1.0),
        "mu",
        "sum to 1",
    ),
    (
        "mu_float16_sums_to_1.01",
        lambda: pt.ipo_optimum(RPS, torch.tensor([0.34, 0.34, 0.33], dtype=torch.float16), 1.0),
        "mu",
        "sum to 1",
    ),
    (
        "pi_object_array_with_string",
        lambda: pt.exploitability(RPS, np.array([0.5, "0.25", 0.25], dtype=object)),
        "pi",
        "numeric",
    ),
    # ---- ordered judges (position bias) and what they do to the algorithms
    ("J_out_of_range", lambda: pt.check_judge_matrix([[0.5, 1.2], [0.3, 0.5]]), "J", "[0, 1]"),
    ("J_non_square", lambda: pt.symmetrize_judge(np.full((2, 3), 0.5)), "J", "square"),
    ("lapse_bias_range", lambda: pt.lapse_judge(P2, 1.5), "bias", "[-1, 1]"),
    ("logit_shift_bias_inf", lambda: pt.logit_shift_judge(P2, math.inf), "bias", "finite"),
    (
        "judge_order",
        lambda: _judges().effective_preference(P2, "dpo", "random"),
        "order",
        "one of",
    ),
    (
        "judge_slots_online",
        lambda: _judges().effective_preference(P2, "online_ipo", slots=([0.5, 0.5], [0.5, 0.5])),
        "slots",
        "offline",
    ),
    (
        "judge_mixture_one",
        lambda: _judges().raw_regularized_fixed_point(P2, [0.5, 0.5], 0.5, 1.0),
        "mixture",
        "< 1",
    ),
    (
        "self_reward_weight",
        lambda: _judges().self_rewarding_dpo(P2, [0.5, 0.5], 1.0, weight=1.5),
        "weight",
        "[0, 1]",
    ),
    (
        "self_reward_reference",
        lambda: _judges().self_rewarding_dpo(P2, [0.5, 0.5], 1.0, reference="last"),
        "reference",
        "one of",
    ),
    # ---- unlearning losses, tasks and runs
    ("npo_policy_nan", lambda: pt.npo_loss([math.nan], [-1.0]), "policy_logps", "finite"),
    (
        "npo_shape",
        lambda: pt.npo_loss([-1.0], [-1.0, -2.0]),
        "reference_logps",
        "must have the shape",
    ),
    ("npo_beta_zero", lambda: pt.npo_loss([-1.0], [-1.0], beta=0.0), "beta", "> 0"),
    (
        "altpo_forget_shape",
        lambda: pt.altpo_loss([-1.0], [-1.0], [-1.0], [[-1.0]]),
        "reference_forget_logps",
        "must have the shape",
    ),
    ("ga_string", lambda: pt.gradient_ascent_loss(["-1.0"]), "policy_logps", "numeric"),
    ("retain_nll_inf", lambda: pt.retain_nll([math.inf]), "policy_logps", "finite"),
    (
        "task_mu_zero",
        lambda: pt.UnlearningTask(
            mu=[[0.5, 0.5, 0.0]], roles=("forget",), true_answers=(0,), alternates=((1,),)
        ),
        "mu",
        "strictly positive",
    ),
    (
        "task_alternate_is_true",
        lambda: pt.UnlearningTask(
            mu=[[0.5, 0.3, 0.2]], roles=("forget",), true_answers=(0,), alternates=((0, 1),)
        ),
        "alternates",
        "must not contain the true answer",
    ),
    (
        "unlearn_method",
        lambda: pt.unlearn(pt.unlearning.teaching_task(), method="sgd", steps=1),
        "method",
        "must be one of",
    ),
    (
        "unlearn_augment_k",
        lambda: pt.unlearn(pt.unlearning.teaching_task(), method="altpo", steps=1, augment_k=4),
        "augment_k",
        "<= 3",
    ),
    (
        "unlearn_retain_weight",
        lambda: pt.unlearn(pt.unlearning.teaching_task(), method="ga", steps=1, retain_weight=-1.0),
        "retain_weight",
        ">= 0",
    ),
    (
        "unlearn_shared_bias",
        lambda: pt.unlearn(pt.unlearning.teaching_task(), method="ga", steps=1, shared_bias=1),
        "shared_bias",
        "True or False",
    ),
]

# Known library bugs: id -> reason. Strict, so a fix turns the case into a failure to clean up.
# (Empty: the three found while writing this file, None as P / mu and ragged pairs, are fixed.)
XFAIL: dict[str, str] = {}


@pytest.mark.parametrize(
    ("call", "argument", "constraint"),
    [
        pytest.param(
            call,
            arg,
            rule,
            id=case_id,
            marks=[pytest.mark.xfail(strict=True, reason=XFAIL[case_id])]
            if case_id in XFAIL
            else [],
        )
        for case_id, call, arg, rule in BAD_INPUTS
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, argument, constraint):
    with pytest.raises(ValueError, match=rf"(?<![\w.]){re.escape(argument)}(?!\w)") as info:
        call()
    assert constraint in str(info.value), f"message does not state {constraint!r}: {info.value}"


def test_bad_input_table_is_large_and_ids_unique():
    ids = [row[0] for row in BAD_INPUTS]
    assert len(ids) == len(set(ids))
    assert set(XFAIL) <= set(ids)
    assert len(ids) - len(XFAIL) >= 20


# ------------------------------------------------------------------ inputs are never modified

K = 4


def _arrays() -> dict[str, np.ndarray]:
    """Valid float64 inputs as numpy arrays, the case where torch.as_tensor would alias them."""
    P = pt.random_game(K, seed=3).numpy().copy()
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(K))
    mu = rng.dirichlet(np.ones(K))
    nu = rng.dirichlet(np.ones(K))
    theta = rng.normal(size=K)
    margins = rng.normal(size=5)
    return {
        "P": P,
        "pi": pi,
        "mu": mu,
        "nu": nu,
        "theta": theta,
        "h": margins,
        "scores": rng.normal(size=K),
        "wins": rng.integers(0, 5, size=(K, K)).astype(np.float64),
        "logp": rng.normal(size=(4, 5)),
        "p": rng.uniform(0.05, 0.95, size=5),
        "det": np.array(DOMINATED),
    }


# name -> how to call it on the inputs (every public function that takes array arguments)
CALLS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "check_preference_matrix": lambda a: pt.check_preference_matrix(a["P"]),
    "bradley_terry": lambda a: pt.bradley_terry(a["scores"]),
    "from_win_counts": lambda a: pt.from_win_counts(a["wins"]),
    "condorcet_winner": lambda a: pt.condorcet_winner(a["P"]),
    "is_transitive": lambda a: pt.is_transitive(a["P"]),
    "is_bradley_terry": lambda a: pt.is_bradley_terry(a["P"]),
    "bt_fit_gap": lambda a: pt.bt_fit_gap(a["P"], a["nu"]),
    "bt_fit_kl": lambda a: pt.bt_fit_kl(a["P"], a["nu"]),
    "softmax": lambda a: pt.softmax(a["theta"]),
    "log_softmax": lambda a: pt.log_softmax(a["theta"]),
    "kl": lambda a: pt.kl(a["pi"], a["mu"]),
    "entropy": lambda a: pt.entropy(a["pi"]),
    "geometric_mixture": lambda a: pt.geometric_mixture(a["pi"], a["mu"], 0.3),
    "win_rate": lambda a: pt.win_rate(a["P"], a["pi"], a["mu"]),
    "win_rates": lambda a: pt.win_rates(a["P"], a["pi"]),
    "bt_fit": lambda a: pt.bt_fit(a["P"], a["nu"]),
    "bt_fit_deterministic": lambda a: pytest.raises(ValueError, pt.bt_fit, a["det"]),
    "bt_log_likelihood": lambda a: pt.bt_log_likelihood(a["P"], a["scores"], a["nu"]),
    "rlhf_optimum": lambda a: pt.rlhf_optimum(a["P"], a["mu"], 0.5, a["nu"]),
    "ipo_optimum": lambda a: pt.ipo_optimum(a["P"], a["mu"], 0.5, a["nu"]),
    "regularized_nash": lambda a: pt.regularized_nash(a["P"], a["mu"], 0.1),
    "ipo_md_fixed_point": lambda a: pt.ipo_md_fixed_point(a["P"], a["mu"], 0.1, 0.5),
    "nash_equilibrium": lambda a: pt.nash_equilibrium(a["P"]),
    "exploitability": lambda a: pt.exploitability(a["P"], a["pi"]),
    "margin": lambda a: pt.margin(a["logp"][0], a["logp"][1], a["logp"][2], a["logp"][3]),
    "dpo_loss": lambda a: pt.dpo_loss(a["h"], 0.1, 0.1),
    "robust_dpo_loss": lambda a: pt.robust_dpo_loss(a["h"], 0.1, 0.1),
    "ipo_loss": lambda a: pt.ipo_loss(a["h"], 0.1),
    "kto_loss": lambda a: pt.kto_loss(a["h"], 0.1, [1.0] * len(a["h"]), 0.1),
    "kto_reference_point": lambda a: pt.kto_reference_point(a["h"]),
    "simpo_loss": lambda a: pt.simpo_loss(a["h"], a["h"], 2.0, 0.5),
    "orpo_loss": lambda a: pt.orpo_loss(-abs(a["logp"][0]) - 0.1, -abs(a["logp"][1]) - 0.1, 0.1),
    "odds_ratio_loss": lambda a: pt.odds_ratio_loss(a["h"], a["h"]),
    "log_odds": lambda a: pt.log_odds(-abs(a["logp"][0]) - 0.1),
    "rdpo_loss": lambda a: pt.rdpo_loss(a["h"], 0.1, 0.5, 2.0, 1.0),
    "dpop_loss": lambda a: pt.dpop_loss(a["h"], a["h"], 0.1, 5.0),
    "tdpo_loss": lambda a: pt.tdpo_loss(a["h"], a["h"], a["h"], 0.1),
    "gradient_ascent_loss": lambda a: pt.gradient_ascent_loss(a["logp"][0]),
    "retain_nll": lambda a: pt.retain_nll(a["logp"][0]),
    "npo_loss": lambda a: pt.npo_loss(a["logp"][0], a["logp"][1], 0.1),
    "altpo_loss": lambda a: pt.altpo_loss(
        a["logp"][0], a["logp"][1], a["logp"][2], a["logp"][3], 0.1
    ),
    "check_judge_matrix": lambda a: pt.check_judge_matrix(a["P"]),
    "symmetrize_judge": lambda a: pt.symmetrize_judge(a["P"]),
    "position_bias": lambda a: pt.position_bias(a["P"]),
    "max_position_bias": lambda a: pt.max_position_bias(a["P"]),
    "judge_decomposition": lambda a: pt.judge_decomposition(a["P"]),
    "lapse_judge": lambda a: pt.lapse_judge(a["P"], 0.3),
    "logit_shift_judge": lambda a: pt.logit_shift_judge(a["P"], 0.7),
    "rdpo_optimum": lambda a: pt.rdpo_optimum(a["P"], a["mu"], 0.5, 0.3, [1.0] * len(a["mu"])),
    "slic_loss": lambda a: pt.slic_loss(a["h"], 0.1),
    "gpo_loss": lambda a: pt.gpo_loss(a["h"], 0.1, "exponential"),
    "gpo_optimal_margin": lambda a: pt.gpo_optimal_margin(a["p"], 0.1, "logistic"),
    "population_loss": lambda a: pt.population_loss(a["theta"], a["P"], a["mu"], _ipo, nu=a["nu"]),
    "population_loss_online": lambda a: pt.population_loss(
        a["theta"],
        a["P"],
        a["mu"],
        partial(pt.dpo_loss, beta=0.1),
        nu=lambda p: pt.geometric_mixture(p, a["mu"], 0.5),
        labels="hard",
    ),
    "pair_margins": lambda a: pt.pair_margins(a["theta"], a["mu"]),
    "hard_labels": lambda a: pt.hard_labels(a["P"]),
    "dataset_loss": lambda a: pt.dataset_loss(a["theta"], a["mu"], [(0, 1), (2, 3)], _ipo),
    "nash_md": lambda a: pt.nash_md(a["P"], a["mu"], 0.5, 3),
    "ALGORITHMS": lambda a: [
        pt.ALGORITHMS[n](a["P"], a["mu"], steps=3, **{"lam" if n == "orpo" else "tau": 0.5})
        for n in pt.ALGORITHMS
    ],
    "dataset_run": lambda a: pt.dataset_run(
        a["mu"], [(0, 1), (2, 3)], loss="ipo", tau=0.5, steps=3, seeds=2
    ),
}


def _as_backend(arrays: dict[str, np.ndarray], backend: str) -> dict[str, Any]:
    if backend == "numpy":
        return arrays
    if backend == "torch":
        # torch.from_numpy shares memory with nothing we keep; the tensors are the caller's inputs.
        return {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    if backend == "torch_requires_grad":
        return {
            k: torch.from_numpy(v.copy()).requires_grad_(k in ("theta", "h", "logp"))
            for k, v in arrays.items()
        }
    raise AssertionError(backend)


def _snapshot(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        k: (v.detach().clone().numpy() if isinstance(v, torch.Tensor) else np.array(v, copy=True))
        for k, v in inputs.items()
    }


def _tensors_in(result: Any) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, tuple):
        return [t for item in result for t in _tensors_in(item)]
    return []


def test_public_calls_cover_every_array_function():
    """Every public function that takes arrays appears in CALLS (so a new one is not forgotten)."""
    no_array_arguments = {
        "rock_paper_scissors",
        "three_voter_types",
        "random_game",
        "from_comparisons",
        "cite",
        "FixedPointReport",
        "PAPERS",
        "GPO_FUNCTIONS",
        # a class, a table, and a summary of a Trajectory (covered through ALGORITHMS / dataset_run)
        "Trajectory",
        "FIXED_POINTS",
        "FAMILY",
        "seed_summary",
        # an exception type (tests/dynamics/test_finite.py: every algorithm raises it on divergence)
        "DivergenceError",
        # the token tree: a class built from two sizes, its dynamics' table and result type
        # (tests/tokens: bad sizes, tables and games are refused with the argument named)
        "TokenTree",
        "TOKEN_ALGORITHMS",
        "TokenTrajectory",
        # unlearning: a task class (validated field by field), the methods' table, the runner
        # and its result type (tests/unlearning: bad tasks, methods and weights are refused)
        "UnlearningTask",
        "UNLEARNING_METHODS",
        "UnlearningTrajectory",
        "unlearn",
    }
    missing = set(pt.__all__) - no_array_arguments - set(CALLS)
    assert not missing, f"add these public functions to CALLS: {sorted(missing)}"


@pytest.mark.parametrize("backend", ["numpy", "torch", "torch_requires_grad"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_public_functions_do_not_modify_their_inputs(name, backend):
    inputs = _as_backend(_arrays(), backend)
    before = _snapshot(inputs)
    result = CALLS[name](inputs)
    # Modify every returned tensor in place: if one aliased an input, the input changes too.
    with torch.no_grad():
        for t in _tensors_in(result):
            t.add_(1.0)
    after = _snapshot(inputs)
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert not changed, f"{name} modified (or returned a view of) its inputs {changed} ({backend})"


def test_from_comparisons_does_not_modify_its_input():
    comparisons = np.array([[0, 1], [1, 2], [0, 2]])
    before = comparisons.copy()
    pt.from_comparisons(comparisons, n_actions=3)
    pt.from_comparisons(torch.from_numpy(comparisons), n_actions=3)
    assert np.array_equal(comparisons, before)
