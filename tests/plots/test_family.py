"""Notebook 08's figures (``plots.family``): the right artists, at positions computed here.

The oracles are written in numpy from the closed forms (the Gibbs form of DPO's optimum, R-DPO's
length-penalised tilt, sDPO's beta / T, KTO's minibatch mean enumerated tuple by tuple, SimPO's
two-action stationarity condition), not read back from the code under test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.plots import family as fam
from prefopt_toy.plots.style import small_texts
from prefopt_toy.simplex import barycentric_to_cartesian

SCORES = np.array([1.0, 0.5, 0.0])
MU = np.array([0.5, 0.3, 0.2])
LENGTHS = np.array([1.0, 2.0, 3.0])


def gibbs(mu, reward, beta):
    w = np.asarray(mu) * np.exp((np.asarray(reward) - np.max(reward)) / beta)
    return w / w.sum()


def xy(pi):
    return barycentric_to_cartesian(torch.as_tensor(np.asarray(pi), dtype=torch.float64)).numpy()


def lines(fig, gid):
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, f"expected one line {gid!r}, found {len(found)}"
    return found[0]


def artist(fig, gid):
    found = fig.findobj(lambda a: a.get_gid() == gid)
    assert found, f"no artist with gid {gid!r}"
    return found


@pytest.fixture(scope="module")
def runs():
    P = pt.bradley_terry(SCORES)
    names = ["dpo", "kto", "rdpo", "sdpo", "rso"]
    return fam.family_runs(P, MU, beta=1.0, steps=400, lengths=LENGTHS, alpha=0.3, names=names)


def test_family_figure_marks_the_closed_form_fixed_points(runs):
    fig = fam.family_figure(runs, title="family")
    expected = {
        "mark:DPO optimum": gibbs(MU, SCORES, 1.0),
        "mark:rdpo fixed point": gibbs(MU, SCORES - 0.3 * LENGTHS, 1.0),
        "mark:sdpo fixed point": gibbs(MU, SCORES, 0.5),  # two stages: beta / 2
        "mark:rso fixed point": gibbs(MU, SCORES, 1.0),  # BT labels: pairs do not matter
    }
    for gid, pi in expected.items():
        np.testing.assert_allclose(lines(fig, gid).get_xydata()[0], xy(pi), atol=1e-9)
    # KTO has no registered fixed point: no mark; every run has a path and an end marker.
    assert not fig.findobj(lambda a: a.get_gid() == "mark:kto fixed point")
    for name, run in runs.items():
        np.testing.assert_allclose(lines(fig, f"{name}:end").get_xydata()[0], xy(run.final))
        assert lines(fig, name).get_xydata().shape[0] > 10
    np.testing.assert_allclose(lines(fig, "target:mu").get_xydata()[0], xy(MU))
    # The runs reach them: R-DPO and DPO converge at beta = 1.
    np.testing.assert_allclose(
        runs["rdpo"].final, gibbs(MU, SCORES - 0.3 * LENGTHS, 1.0), atol=1e-6
    )
    assert small_texts(fig) == []


def test_family_table_rows(runs):
    table = fam.family_table(runs)
    assert list(table.index) == list(runs)
    dpo_opt = gibbs(MU, SCORES, 1.0)
    tv = 0.5 * np.abs(runs["kto"].final.numpy() - dpo_opt).sum()
    assert table.loc["kto", "TV to DPO optimum"] == pytest.approx(tv, abs=1e-12)
    assert math.isnan(table.loc["kto", "TV to own fixed point"])
    assert table.loc["rdpo", "TV to own fixed point"] < 1e-6
    np.testing.assert_allclose(table.loc["dpo", ["pi(y0)", "pi(y1)", "pi(y2)"]], runs["dpo"].final)


def test_family_runs_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown"):
        fam.family_runs(pt.bradley_terry(SCORES), MU, beta=1.0, steps=10, names=["nash_md"])


def _minibatch_means(pi, mu, b):
    """Every b-tuple of completions from mu, enumerated: (mean log-ratio, probability)."""
    r = np.log(pi / mu)
    out = {}
    for tup in itertools.product(range(3), repeat=b):
        v = round(float(np.mean(r[list(tup)])), 9)
        out[v] = out.get(v, 0.0) + float(np.prod(mu[list(tup)]))
    return out


def test_kto_reference_figure_draws_the_exact_distribution_and_the_clamp():
    pi = np.array([0.7, 0.2, 0.1])
    fig = fam.kto_reference_figure(pi, MU, batch_sizes=(1, 3), samples=500, seed=1)
    for b in (1, 3):
        exact = _minibatch_means(pi, MU, b)
        (stems,) = artist(fig, f"exact:b={b}")
        segs = np.array([s[1] for s in stems.get_segments()])  # top of each stem: (value, prob)
        got = dict(zip(np.round(segs[:, 0], 9), segs[:, 1]))
        assert set(got) == set(exact)
        for v, p in exact.items():
            assert got[v] == pytest.approx(p, abs=1e-12)
        negative = sum(p for v, p in exact.items() if v < 0)
        assert any(f"P(clamped to 0) = {negative:.2f}" in ax.get_title() for ax in fig.axes)
        sampled = lines(fig, f"sampled:b={b}").get_xydata()  # one dot per value of the support
        assert len(sampled) == len(exact)
        for v, f in sampled:
            assert f == pytest.approx(exact[round(float(v), 9)], abs=0.08)  # 500 minibatches
    kl = float(np.sum(pi * np.log(pi / MU)))
    kl_lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "kl"]
    assert len(kl_lines) == 2 and all(ln.get_xdata()[0] == pytest.approx(kl) for ln in kl_lines)
    assert small_texts(fig) == []


def test_sampled_reference_points_match_the_exact_mean():
    pi = np.array([0.6, 0.3, 0.1])
    z = fam.sample_reference_points(pi, MU, 4, 20000, clamp=False, seed=0)
    exact = float(np.sum(MU * np.log(pi / MU)))  # -KL(mu || pi): data completions from mu
    assert float(z.mean()) == pytest.approx(exact, abs=0.02)
    assert exact < 0  # the unclamped estimate is negative on average ...
    clamped = fam.sample_reference_points(pi, MU, 4, 2000, seed=0)
    assert float(clamped.min()) >= 0.0  # ... and the clamp holds it at 0


def _simpo_two_action_margin(p, gamma):
    """m solving p sigma(gamma - m) = (1 - p) sigma(m + gamma) (bisection)."""
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    lo, hi = -20.0, 20.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if p * sig(gamma - mid) - (1 - p) * sig(mid + gamma) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_simpo_gamma_figure_margins_solve_the_stationarity_condition():
    P = pt.bradley_terry([0.4, 0.0])
    p = float(P[0, 1])
    gammas = (0.0, 0.5, 1.0)
    fig, margins = fam.simpo_gamma_figure(P, [0.6, 0.4], betas=(0.5, 2.0), gammas=gammas, steps=800)
    for beta in (0.5, 2.0):
        for g, m in zip(gammas, margins[f"gamma:beta={beta:g}"].tolist()):
            assert m == pytest.approx(_simpo_two_action_margin(p, g), abs=1e-4)
        for g, m in zip(gammas, margins[f"ratio:beta={beta:g}"].tolist()):
            assert m == pytest.approx(_simpo_two_action_margin(p, g * beta), abs=1e-4)
        np.testing.assert_allclose(
            lines(fig, f"gamma:beta={beta:g}").get_ydata(), margins[f"gamma:beta={beta:g}"]
        )
    logit = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "logit"]
    assert [ln.get_ydata()[0] for ln in logit] == pytest.approx([0.4, 0.4])  # logit P for BT
    assert margins["gamma:beta=0.5"][0] == pytest.approx(0.4, abs=1e-4)  # gamma 0: DPO's margin
    assert small_texts(fig) == []


def test_length_figure_bars_and_expected_lengths():
    q, kappa = np.array([1.0, 0.5, 0.0]), 1.0
    P = pt.bradley_terry(q + kappa * LENGTHS)
    runs = {
        "dpo": pt.ALGORITHMS["dpo"](P, MU, steps=400, beta=1.0),
        "rdpo": pt.ALGORITHMS["rdpo"](P, MU, steps=400, beta=1.0, alpha=kappa, lengths=LENGTHS),
    }
    quality = gibbs(MU, q, 1.0)
    fig, ends = fam.length_figure(runs, LENGTHS, quality)
    bars = artist(fig, "bars:quality optimum")
    np.testing.assert_allclose([r.get_height() for r in bars], quality)
    np.testing.assert_allclose(runs["rdpo"].final, quality, atol=1e-6)  # alpha = kappa
    assert ends["dpo"] == pytest.approx(
        float(gibbs(MU, q + kappa * LENGTHS, 1.0) @ LENGTHS), abs=1e-5
    )
    assert ends["dpo"] > float(MU @ LENGTHS) > ends["rdpo"]
    assert small_texts(fig) == []


def test_displacement_figure_follows_the_middle_action_and_the_chosen_logprob():
    P = torch.tensor([[0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    run = pt.ALGORITHMS["dpo"](P, MU, steps=300, beta=1.0)
    chosen = fam.mean_chosen_logprob(run).numpy()
    # Numpy: winners weighted by nu_w nu_l P[w, l] over pairs of different actions.
    logp = run.log_policies.numpy()
    W = np.outer(MU, MU) * P.numpy() * (1 - np.eye(3))
    expected = logp @ (W.sum(1) / W.sum())
    np.testing.assert_allclose(chosen, expected, atol=1e-12)
    assert chosen.argmax() > 0 and chosen[-1] < chosen[0]  # rises, then falls below its start
    fig = fam.displacement_figure({"dpo": run})
    top = lines(fig, "chosen_max:dpo").get_xydata()[0]
    assert top == pytest.approx([chosen.argmax() + 1, chosen.max()])
    middle = lines(fig, "middle:dpo").get_ydata()
    assert middle[0] == pytest.approx(MU[1]) and middle[-1] < 1e-2
    assert small_texts(fig) == []


def test_beta_dpo_figure_draws_the_recorded_batch_beta():
    run = pt.ALGORITHMS["beta_dpo"](pt.bradley_terry(SCORES), MU, steps=30, beta=0.5)
    fig = fam.beta_dpo_figure({"exact": run})
    np.testing.assert_allclose(lines(fig, "batch_beta:exact").get_ydata(), run.hyper["batch_beta"])
    np.testing.assert_allclose(
        lines(fig, "running_mean:exact").get_ydata(), run.hyper["running_mean"]
    )
    assert lines(fig, "base_beta").get_ydata()[0] == pytest.approx(0.5)
    assert small_texts(fig) == []


def test_paths_figure_marks_stage_ends():
    run = pt.ALGORITHMS["sdpo"](pt.bradley_terry(SCORES), MU, stages=3, steps=150, beta=1.0)
    fig = fam.paths_figure({"sdpo": run}, {"beta / 3": gibbs(MU, SCORES, 1.0 / 3)}, stage_ends=True)
    stages = lines(fig, "sdpo:stages").get_xydata()
    np.testing.assert_allclose(stages, xy(run.policies[[50, 100, 150]].numpy()), atol=1e-12)
    np.testing.assert_allclose(
        lines(fig, "mark:beta / 3").get_xydata()[0], xy(gibbs(MU, SCORES, 1 / 3))
    )
    assert small_texts(fig) == []
