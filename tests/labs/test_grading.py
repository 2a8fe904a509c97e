"""Hidden tests (prefopt_toy.labs.grading): fresh inputs, a numpy oracle, the library-call guard.

A correct answer written from the formula passes every hidden test; an answer that calls the
library's own implementation (through ``pt.``, a name imported before the test, or a wrapper)
fails it, although it passes the self-check; so do zeros. The correct answers here are numpy.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import prefopt_toy as pt
from prefopt_toy import labs
from prefopt_toy.labs import grading
from prefopt_toy.labs.losses import _LOSS_CASES
from prefopt_toy.losses import dpo_loss as library_dpo_loss


def _margin(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


def np_dpo(pc, pr, rc, rr, beta):
    return np.logaddexp(0.0, -beta * _margin(pc, pr, rc, rr).numpy())


def np_ipo(pc, pr, rc, rr, tau):
    return (_margin(pc, pr, rc, rr).numpy() - 1 / (2 * tau)) ** 2


def np_optimum(P, mu, nu, tau):
    z = np.log(mu.numpy()) + P.numpy() @ nu.numpy() / tau
    w = np.exp(z - z.max())
    return w / w.sum()


def np_step(pi, mu, P, tau, eta):
    m = eta * tau
    z = (1 - m) * np.log(pi.numpy()) + m * np.log(mu.numpy())
    mix = np.exp(z - z.max())
    mix /= mix.sum()
    z = np.log(mix) + eta * (P.numpy() @ mix)
    new = np.exp(z - z.max())
    return new / new.sum()


CONDORCET_GAME = ([[0.5, 0.55, 0.55], [0.45, 0.5, 0.95], [0.45, 0.05, 0.5]], [1 / 3] * 3)
CYCLE_GAME = ([[0.5, 0.4, 0.8], [0.6, 0.5, 0.4], [0.2, 0.6, 0.5]], [0.2, 0.4, 0.4])


def _hidden_failure(grade, answer) -> str:
    with pytest.raises(labs.LabCheckError) as info:
        grade(answer)
    return str(info.value)


@pytest.mark.parametrize(
    ("grade", "answer"),
    [
        (grading.grade_dpo_loss, np_dpo),
        (
            grading.grade_dpo_loss,
            lambda pc, pr, rc, rr, b: F.softplus(-b * _margin(pc, pr, rc, rr)),
        ),
        (grading.grade_ipo_loss, np_ipo),
        (grading.grade_ipo_optimum, np_optimum),
        (grading.grade_nash_md_step, np_step),
        # The generic helpers of prefopt_toy.policies are allowed.
        (
            grading.grade_nash_md_step,
            lambda pi, mu, P, tau, eta: (
                lambda mix: pt.softmax(mix.log() + eta * pt.win_rates(P, mix))
            )(pt.geometric_mixture(pi, mu, eta * tau)),
        ),
        (grading.grade_condorcet_disagreement, lambda: CONDORCET_GAME),
        (grading.grade_cycle_disagreement, lambda: CYCLE_GAME),
        (grading.grade_cycle_disagreement, lambda: (pt.three_voter_types(0.1), [1 / 3] * 3)),
    ],
    ids=["dpo", "dpo-torch", "ipo", "optimum", "step", "step-helpers", "condorcet", "cycle", "tvt"],
)
def test_correct_answers_pass_the_hidden_tests(grade, answer):
    assert grade(answer) is None  # None: nbgrader must not read the cell's value as a score


def test_hidden_inputs_are_not_the_self_check_inputs():
    seen = {tuple(np.round(v, 12)) for _, *logps, _ in _LOSS_CASES for v in logps}
    for _, logps, hyper in grading._pair_cases():
        assert all(tuple(np.round(v, 12)) not in seen for v in logps)
        assert hyper not in {case[-1] for case in _LOSS_CASES}
    assert {c[-1] for c in grading._optimum_cases()}.isdisjoint({0.1, 0.5, 1.0, 0.05, 0.01, 0.001})


# An answer that calls the library passes the self-check but not the hidden test.
LIBRARY_ANSWERS = [
    (
        labs.check_dpo_loss,
        grading.grade_dpo_loss,
        lambda pc, pr, rc, rr, b: pt.dpo_loss(pt.margin(pc, pr, rc, rr), b),
        "prefopt_toy.losses.pairwise.",
    ),
    (  # a name bound before the test, without pt.
        labs.check_dpo_loss,
        grading.grade_dpo_loss,
        lambda pc, pr, rc, rr, b: library_dpo_loss(_margin(pc, pr, rc, rr), b),
        "prefopt_toy.losses.pairwise.dpo_loss",
    ),
    (  # a wrapper
        labs.check_ipo_loss,
        grading.grade_ipo_loss,
        lambda pc, pr, rc, rr, t: functools.partial(pt.ipo_loss, tau=t)(_margin(pc, pr, rc, rr)),
        "prefopt_toy.losses.pairwise.ipo_loss",
    ),
    (
        labs.check_ipo_optimum,
        grading.grade_ipo_optimum,
        lambda P, mu, nu, tau: pt.ipo_optimum(P, mu, tau, nu=nu),
        "prefopt_toy.solutions.optima.",
    ),
    (  # the mirror step is an IPO optimum with nu = mu = the mixture and tau = 1 / eta
        labs.check_nash_md_step,
        grading.grade_nash_md_step,
        lambda pi, mu, P, tau, eta: (lambda mix: pt.ipo_optimum(P, mix, 1 / eta, nu=mix))(
            pt.geometric_mixture(pi, mu, eta * tau)
        ),
        "prefopt_toy.solutions.optima.",
    ),
]


@pytest.mark.parametrize(
    ("check", "grade", "answer", "named"),
    LIBRARY_ANSWERS,
    ids=["pt.dpo_loss", "bound-import", "partial", "pt.ipo_optimum", "step-as-optimum"],
)
def test_calling_the_library_passes_the_self_check_but_fails_the_hidden_test(
    check, grade, answer, named
):
    check(answer)
    message = _hidden_failure(grade, answer)
    assert "calls the library's own implementation" in message and named in message


def test_the_guard_restores_the_previous_profiler():
    events = []

    def outer(frame, event, arg):
        events.append(event)

    sys.setprofile(outer)
    try:
        _, entered = grading.library_calls(lambda: pt.dpo_loss(torch.tensor([1.0]), 0.1))
        assert sys.getprofile() is outer
    finally:
        sys.setprofile(None)
    assert entered[0] == "prefopt_toy.losses.pairwise.dpo_loss"


@pytest.mark.parametrize(
    ("grade", "zeros"),
    [
        (grading.grade_dpo_loss, lambda pc, pr, rc, rr, b: torch.zeros_like(pc)),
        (grading.grade_ipo_loss, lambda pc, pr, rc, rr, t: torch.zeros_like(pc)),
        (grading.grade_ipo_optimum, lambda P, mu, nu, tau: torch.zeros_like(mu)),
        (grading.grade_nash_md_step, lambda pi, mu, P, tau, eta: torch.zeros_like(mu)),
    ],
    ids=["dpo", "ipo", "optimum", "step"],
)
def test_zeros_fail_the_hidden_tests(grade, zeros):
    assert "wrong on a hidden test" in _hidden_failure(grade, zeros)


def test_hidden_tests_reject_float32_and_wrong_games():
    message = _hidden_failure(
        grading.grade_dpo_loss,
        lambda pc, pr, rc, rr, b: F.softplus(-b * _margin(pc, pr, rc, rr)).float(),
    )
    assert "float32" in message
    message = _hidden_failure(
        grading.grade_condorcet_disagreement,
        lambda: (pt.bradley_terry([0.0, 1.0, 2.0]).tolist(), [1 / 3] * 3),
    )
    assert "no disagreement" in message
    message = _hidden_failure(grading.grade_cycle_disagreement, lambda: CONDORCET_GAME)
    assert "does not confirm" in message


def test_numpy_bt_fit_agrees_with_the_library():
    """The hidden tests' own BT fit (Newton in numpy) is the library's bt_fit, for nu = mu."""
    P, mu = np.array(CYCLE_GAME[0]), np.array(CYCLE_GAME[1])
    expected = pt.bt_fit(P, nu=mu).numpy()
    np.testing.assert_allclose(grading._np_bt_fit(P, mu), expected, atol=1e-10)


# ------------------------------------------------------------------------ labs 5 and 6


def np_kto(r, z0, d, beta, wd, wu):
    x = beta * (r.numpy() - z0)
    return np.where(d.numpy(), wd / (1 + np.exp(x)), wu / (1 + np.exp(-x)))


def np_kl(pi, mu):
    p, q = pi.numpy(), mu.numpy()
    s = p > 0
    return np.array((p[s] * np.log(p[s] / q[s])).sum())


def np_dropped(P, mu, wd, wu):
    d = P.numpy() @ mu.numpy()
    return wu * (1 - d) > wd * d


def np_softmax(z):
    w = np.exp(z - z.max())
    return w / w.sum()


NEW_CORRECT = [
    (grading.grade_kto_loss, np_kto),
    (grading.grade_kl_reference_point, np_kl),
    (grading.grade_trl_reference_point, lambda x: max(0.0, float(x.numpy().mean()))),
    (grading.grade_kto_dropped, np_dropped),
    (
        grading.grade_length_biased_preferences,
        lambda q, L, k: 1 / (1 + np.exp(-((q + k * L)[:, None] - (q + k * L)[None, :]).numpy())),
    ),
    (
        grading.grade_dpo_length_optimum,
        lambda q, L, k, mu, b: np_softmax(np.log(mu.numpy()) + ((q + k * L) / b).numpy()),
    ),
    (
        grading.grade_rdpo_loss,
        lambda pc, pr, rc, rr, lw, ll, b, a: F.softplus(
            -(b * _margin(pc, pr, rc, rr) + a * (lw - ll))
        ),
    ),
    (
        grading.grade_rdpo_optimum,
        lambda r, mu, L, b, a: torch.softmax(mu.log() + (r - a * L) / b, -1),
    ),
    (grading.grade_debiasing_alpha, lambda kappa, beta: kappa),
]
NEW_IDS = ["kto", "kl", "trl", "dropped", "judge", "dpo-length", "rdpo", "rdpo-optimum", "alpha"]


@pytest.mark.parametrize(("grade", "answer"), NEW_CORRECT, ids=NEW_IDS)
def test_new_labs_correct_answers_pass_the_hidden_tests(grade, answer):
    assert grade(answer) is None


@pytest.mark.parametrize(
    ("check", "grade", "answer", "named"),
    [
        (
            labs.check_kto_loss,
            grading.grade_kto_loss,
            lambda r, z0, d, b, wd, wu: pt.kto_loss(r, z0, d, b, wd, wu),
            "prefopt_toy.losses.unpaired.kto_loss",
        ),
        (  # pt.kl is a generic helper elsewhere, but it is what exercise 5b asks
            labs.check_kl_reference_point,
            grading.grade_kl_reference_point,
            lambda pi, mu: pt.kl(pi, mu),
            "prefopt_toy.policies.kl",
        ),
        (
            labs.check_trl_reference_point,
            grading.grade_trl_reference_point,
            lambda x: pt.kto_reference_point(x),
            "prefopt_toy.losses.unpaired.kto_reference_point",
        ),
        (
            labs.check_rdpo_loss,
            grading.grade_rdpo_loss,
            lambda pc, pr, rc, rr, lw, ll, b, a: pt.rdpo_loss(
                _margin(pc, pr, rc, rr), b, a, lw, ll
            ),
            "prefopt_toy.losses.shaped.rdpo_loss",
        ),
        (
            labs.check_rdpo_optimum,
            grading.grade_rdpo_optimum,
            lambda r, mu, L, b, a: pt.rdpo_optimum(pt.bradley_terry(r), mu, b, a, L, nu=mu),
            "prefopt_toy.solutions.optima.",
        ),
    ],
    ids=["pt.kto_loss", "pt.kl", "pt.kto_reference_point", "pt.rdpo_loss", "pt.rdpo_optimum"],
)
def test_new_labs_calling_the_library_fails_the_hidden_test(check, grade, answer, named):
    if check is not labs.check_rdpo_optimum:  # the BT fit is accurate to ~1e-8 only
        check(answer)
    message = _hidden_failure(grade, answer)
    assert "calls the library's own implementation" in message and named in message


@pytest.mark.parametrize(
    ("grade", "zeros"),
    [
        (grading.grade_kto_loss, lambda r, z0, d, b, wd, wu: torch.zeros_like(r)),
        (grading.grade_kl_reference_point, lambda pi, mu: torch.zeros((), dtype=torch.float64)),
        (grading.grade_kto_dropped, lambda P, mu, wd, wu: torch.zeros_like(mu)),
        (
            grading.grade_length_biased_preferences,
            lambda q, L, k: torch.zeros(len(q), len(q), dtype=torch.float64),
        ),
        (grading.grade_dpo_length_optimum, lambda q, L, k, mu, b: torch.zeros_like(mu)),
        (grading.grade_rdpo_loss, lambda pc, pr, rc, rr, lw, ll, b, a: torch.zeros_like(pc)),
        (grading.grade_rdpo_optimum, lambda r, mu, L, b, a: torch.zeros_like(mu)),
        (grading.grade_debiasing_alpha, lambda kappa, beta: 0.0),
    ],
    ids=["kto", "kl", "dropped", "judge", "dpo-length", "rdpo", "rdpo-optimum", "alpha"],
)
def test_new_labs_zeros_fail_the_hidden_tests(grade, zeros):
    assert "wrong on a hidden test" in _hidden_failure(grade, zeros)


def test_new_labs_hidden_inputs_differ_from_the_self_checks():
    from prefopt_toy.labs import kto, lengths

    assert {c[4] for c in kto._KTO_CASES}.isdisjoint({0.07, 1.7, 4.0, 3.0})
    assert {k for k, _ in lengths._ALPHA_CASES}.isdisjoint({0.17, 2.0, 0.004, 0.6})


# ------------------------------------------------------------------------------- lab 7


def _seq_prob(nxt, y):
    """The product along the path, written here from the definition."""
    p = torch.ones((), dtype=torch.float64)
    for t, token in enumerate(y):
        p = p * nxt[y[:t]][token]
    return p


def _kl_np(m, p):
    m, p = np.asarray(m), np.asarray(p)
    return np.array((m * (np.log(m) - np.log(p))).sum())


def _seqkl(mu, pi, y):
    return sum(float(_kl_np(mu[y[:t]], pi[y[:t]])) for t in range(len(y)))


def _tdpo_torch(pc, pr, rc, rr, kw, kl, b, a, stop):
    """TDPO from the formula with torch ops (autograd kept); ``stop`` detaches SeqKL(y_w)."""
    z = _margin(pc, pr, rc, rr) - a * (kl - (kw.detach() if stop else kw))
    return F.softplus(-b * z)


LAB7_CORRECT = [
    (grading.grade_sequence_probability, _seq_prob),
    (grading.grade_prefix_kl, _kl_np),
    (grading.grade_sequential_kl, _seqkl),
    (
        grading.grade_tdpo1_loss,
        lambda pc, pr, rc, rr, kw, kl, b: _tdpo_torch(pc, pr, rc, rr, kw, kl, b, 1.0, False),
    ),
    (
        grading.grade_tdpo2_loss,
        lambda pc, pr, rc, rr, kw, kl, b, a: _tdpo_torch(pc, pr, rc, rr, kw, kl, b, a, True),
    ),
    (
        grading.grade_expected_sequential_kl,
        lambda mu, pi, seqs: sum(float(_seq_prob(pi, y)) * _seqkl(mu, pi, y) for y in seqs),
    ),
]
LAB7_IDS = ["seq-prob", "prefix-kl", "seqkl", "tdpo1", "tdpo2", "expected-seqkl"]


@pytest.mark.parametrize(("grade", "answer"), LAB7_CORRECT, ids=LAB7_IDS)
def test_lab7_correct_answers_pass_the_hidden_tests(grade, answer):
    assert grade(answer) is None


def _lib_tree(nxt):
    """The TokenTree of a dictionary of tables (V from a row, T from the longest prefix + 1)."""
    v = len(next(iter(nxt.values())))
    return pt.TokenTree(v, max(len(p) for p in nxt) + 1)


def _lib_table(tree, nxt):
    return torch.stack([nxt[p] for p in tree.prefixes])


@pytest.mark.parametrize(
    ("check", "grade", "answer", "named"),
    [
        (
            labs.check_sequence_probability,
            grading.grade_sequence_probability,
            lambda nxt, y: (
                lambda tree: tree.sequence_probs(_lib_table(tree, nxt).log())[
                    tree.sequences.index(y)
                ]
            )(_lib_tree(nxt)),
            "prefopt_toy.tokens.tree.",
        ),
        (
            labs.check_prefix_kl,
            grading.grade_prefix_kl,
            lambda m, p: pt.tokens.prefix_kl(pt.TokenTree(len(m), 1), m.log()[None], p.log()[None])[
                0
            ],
            "prefopt_toy.tokens.tree.",
        ),
        (
            labs.check_prefix_kl,
            grading.grade_prefix_kl,
            lambda m, p: torch.tensor(float(pt.kl(m, p)), dtype=torch.float64),
            "prefopt_toy.policies.kl",
        ),
        (
            labs.check_tdpo1_loss,
            grading.grade_tdpo1_loss,
            lambda pc, pr, rc, rr, kw, kl, b: pt.tdpo_loss(
                _margin(pc, pr, rc, rr), kw, kl, b, variant="tdpo1"
            ),
            "prefopt_toy.losses.token.tdpo_loss",
        ),
        (
            labs.check_tdpo2_loss,
            grading.grade_tdpo2_loss,
            functools.partial(
                lambda pc, pr, rc, rr, kw, kl, b, a, fn: fn(_margin(pc, pr, rc, rr), kw, kl, b, a),
                fn=pt.tdpo_loss,
            ),
            "prefopt_toy.losses.token.tdpo_loss",
        ),
    ],
    ids=["tree.sequence_probs", "tokens.prefix_kl", "pt.kl", "pt.tdpo_loss-1", "partial-tdpo2"],
)
def test_lab7_calling_the_library_fails_the_hidden_test(check, grade, answer, named):
    check(answer)  # the self-check accepts it
    message = _hidden_failure(grade, answer)
    assert "calls the library's own implementation" in message and named in message


@pytest.mark.parametrize(
    ("grade", "wrong", "what"),
    [
        (
            grading.grade_sequence_probability,
            lambda nxt, y: torch.zeros((), dtype=torch.float64),
            "wrong",
        ),
        (grading.grade_prefix_kl, lambda m, p: torch.zeros((), dtype=torch.float64), "wrong"),
        (
            grading.grade_sequential_kl,
            lambda mu, pi, y: torch.zeros((), dtype=torch.float64),
            "wrong",
        ),
        (
            grading.grade_tdpo1_loss,
            lambda pc, pr, rc, rr, kw, kl, b: torch.zeros_like(pc),
            "wrong",
        ),
        (  # the right value without the stop-gradient: only the gradient tells
            grading.grade_tdpo2_loss,
            lambda pc, pr, rc, rr, kw, kl, b, a: _tdpo_torch(pc, pr, rc, rr, kw, kl, b, a, False),
            "gradient in seqkl_chosen is wrong",
        ),
        (  # TDPO1 with the stop-gradient: the right value again, the wrong gradient
            grading.grade_tdpo1_loss,
            lambda pc, pr, rc, rr, kw, kl, b: _tdpo_torch(pc, pr, rc, rr, kw, kl, b, 1.0, True),
            "gradient in seqkl_chosen is wrong",
        ),
        (  # a numpy answer has the value and no gradient
            grading.grade_tdpo2_loss,
            lambda pc, pr, rc, rr, kw, kl, b, a: np.logaddexp(
                0.0, -b * (_margin(pc, pr, rc, rr) - a * (kl - kw)).detach().numpy()
            ),
            "carries no gradient",
        ),
        (grading.grade_expected_sequential_kl, lambda mu, pi, seqs: 0.0, "wrong"),
    ],
    ids=[
        "seq-prob",
        "prefix-kl",
        "seqkl",
        "tdpo1",
        "tdpo2-no-sg",
        "tdpo1-sg",
        "tdpo2-numpy",
        "expected",
    ],
)
def test_lab7_wrong_answers_fail_the_hidden_tests(grade, wrong, what):
    assert what in _hidden_failure(grade, wrong)


def test_lab7_hidden_trees_differ_from_the_self_checks():
    from prefopt_toy.labs import token_kl

    checked = {(t.vocab_size, t.max_length): pi for _, t, _, pi in token_kl._tree_cases()}
    hidden = {
        (len(mu[()]), max(len(p) for p in mu) + 1): pi for _, _, _, mu, pi in grading._token_cases()
    }
    assert len(set(hidden) - set(checked)) >= 2, (hidden.keys(), checked.keys())
    for shape in set(hidden) & set(checked):  # a shared shape gets other tables
        tree = pt.TokenTree(*shape)
        table = torch.stack([torch.as_tensor(hidden[shape][p]) for p in tree.prefixes])
        assert not torch.allclose(table, checked[shape], atol=1e-3)
