"""Tests for prefopt_toy.lm.bridge.run: the exact toy's prediction of GPT-2's class distribution.

Oracles: draws from a known categorical (``torch.multinomial`` with a seeded generator) for the
coverage of the Wilson intervals, and the closed-form Wilson end ``z^2 / (n + z^2)`` at zero
successes; the exact solvers called directly (``rlhf_optimum``, ``ipo_optimum``,
``regularized_nash``, ``ipo_md_fixed_point``, ``ALGORITHMS``) for ``predict``; a response-level
game built here by expanding ``P`` by class for the factorisation; direct ``sampling.sample`` calls
with the same generator and ``LiftedTask.classify`` for the estimate; barycentric coordinates
computed here from the triangle's corners for the figure.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge import (
    BridgeResult,
    bridge_figure,
    class_estimate,
    estimate_class_distribution,
    lifted_judge,
    predict,
    preference_dataset,
    run_bridge,
    total_variation,
)
from prefopt_toy.lm.bridge.class_estimate import task_text_batches, wilson_interval
from prefopt_toy.lm.data import tokenize_prompts
from prefopt_toy.lm.models.corpus import FRUIT_TASK, OTHER
from prefopt_toy.lm.sampling import sample
from prefopt_toy.lm.train.runlog import read_run_log

# A non-transitive game on apple / banana / cherry.
P_CYCLE = [[0.5, 0.8, 0.1], [0.2, 0.5, 0.9], [0.9, 0.1, 0.5]]


# ----------------------------------------------------------------------------- intervals
def test_wilson_zero_successes_hand_value():
    # Wilson's upper end at 0 successes is z^2 / (n + z^2); z = 1.959964 at 95 %.
    z = 1.959963984540054
    lo, hi = wilson_interval([0, 10], 10, 0.95)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(z * z / (10 + z * z), abs=1e-12)
    assert hi[1] == 1.0 and lo[1] == pytest.approx(10 / (10 + z * z), abs=1e-12)


def test_wilson_coverage_matches_level():
    # Known categorical, independent draws: each class's interval should cover the truth in about
    # `level` of the repeats. 1500 repeats: Monte Carlo s.d. of a coverage frequency <= 0.011; the
    # Wilson interval's own coverage oscillates around the level by a few points for a discrete
    # binomial (Brown, Cai & DasGupta 2001, Fig. 4), hence 0.06 per class and 0.03 on average.
    truth = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    gen = torch.Generator().manual_seed(123)
    n, repeats = 200, 1500
    for level in (0.8, 0.95):
        covered = torch.zeros(4)
        for _ in range(repeats):
            ids = torch.multinomial(truth, n, replacement=True, generator=gen)
            est = class_estimate(ids, 4, level=level)
            covered += ((est.lower <= truth) & (truth <= est.upper)).float()
        freq = covered / repeats
        assert bool((freq - level).abs().max() < 0.06), (level, freq)
        assert abs(float(freq.mean()) - level) < 0.03, (level, freq)


def test_class_estimate_counts_and_bad_input():
    est = class_estimate(torch.tensor([0, 3, 3, 1, 3]), 4)
    assert est.counts.tolist() == [1, 1, 0, 3] and est.n == 5
    assert est.probs.tolist() == [0.2, 0.2, 0.0, 0.6]
    assert bool((est.lower <= est.probs).all() and (est.probs <= est.upper).all())
    with pytest.raises(ValueError, match="class_ids"):
        class_estimate([0, 4], 4)
    with pytest.raises(ValueError, match="level"):
        wilson_interval([1], 3, level=1.0)
    with pytest.raises(ValueError, match="counts"):
        wilson_interval([4], 3)


def test_total_variation():
    assert total_variation([0.2, 0.8], [0.5, 0.5]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="same shape"):
        total_variation([1.0], [0.5, 0.5])


# ----------------------------------------------------------------------------- predict
def _p_ext(other_loses=0.8):
    return lifted_judge(FRUIT_TASK, P_CYCLE, other_loses=other_loses).P_ext


MU = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)


def test_predict_equals_the_solvers():
    P = _p_ext()
    cases = [
        ("dpo", {"beta": 0.3}, pt.rlhf_optimum(P, MU, 0.3, nu=MU)),
        ("ipo", {"tau": 0.3}, pt.ipo_optimum(P, MU, 0.3, nu=MU)),
        ("online_ipo", {"tau": 0.3}, pt.regularized_nash(P, MU, 0.3)),
        ("nash_md", {"tau": 0.3}, pt.regularized_nash(P, MU, 0.3)),
        ("nash_md_pg", {"tau": 0.3}, pt.regularized_nash(P, MU, 0.3)),
        ("nash_md_pg", {"tau": 0.3, "mixture": 0.25}, pt.ipo_md_fixed_point(P, MU, 0.3, 0.25)),
        ("ipo_md", {"tau": 0.3, "mixture": 0.25}, pt.ipo_md_fixed_point(P, MU, 0.3, 0.25)),
    ]
    for name, hyper, expected in cases:
        pred, traj = predict(name, P, MU, toy_steps=30, **hyper)
        assert torch.equal(pred, expected), name
        toy_kwargs = dict(hyper, steps=30)
        if name in ("dpo", "ipo"):
            toy_kwargs["nu"] = MU
        assert torch.equal(traj, pt.ALGORITHMS[name](P, MU, **toy_kwargs).policies), name
        assert traj.shape == (31, 4)
    assert predict("online_ipo", P, MU, tau=0.3)[1] is None


def test_predict_offline_uses_the_reference_pairs_even_when_a_class_was_never_sampled():
    """The offline data are reference pairs (nu = mu_class, ``preference_dataset``). A class the
    reference never produced is in no pair: its predicted probability is 0, and the other classes
    get the optimum of the game restricted to them (solved directly on the 3 x 3 sub-game)."""
    P = _p_ext()
    mu = torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64)  # "other" never sampled
    for name, hyper, solver in (
        ("dpo", {"beta": 0.3}, pt.rlhf_optimum),
        ("ipo", {"tau": 0.3}, pt.ipo_optimum),
    ):
        pred, _ = predict(name, P, mu, **hyper)
        assert float(pred[3]) == 0.0, name
        sub = solver(P[:3, :3], mu[:3], 0.3, nu=mu[:3])
        torch.testing.assert_close(pred[:3], sub, rtol=0, atol=1e-12)
    # With full support the prediction is the solver with nu = mu_class.
    torch.testing.assert_close(
        predict("dpo", P, MU, beta=0.3)[0], pt.rlhf_optimum(P, MU, 0.3, nu=MU), rtol=0, atol=0
    )


def test_predict_bad_input():
    P = _p_ext()
    with pytest.raises(ValueError, match="algorithm"):
        predict("slic", P, MU, beta=0.1)
    with pytest.raises(ValueError, match="tau is required"):
        predict("online_ipo", P, MU)
    with pytest.raises(ValueError, match="takes beta, not tau"):
        predict("dpo", P, MU, tau=0.1)
    with pytest.raises(ValueError, match="mixture must be 0"):
        predict("online_ipo", P, MU, tau=0.1, mixture=0.5)
    with pytest.raises(ValueError, match="mu_class"):
        predict("online_ipo", P, MU[:3], tau=0.1)


def test_factorisation_on_an_expanded_game():
    # Response level: 2, 3, 1 and 2 responses in the four classes (the last is "other"); the
    # judge sees only the class, so the response game is P_ext expanded by class, and the reference
    # is mu_class(c) * mu(y | c). Each KL-regularised optimum must be mu(y | c) * (class solution).
    P = _p_ext()
    sizes = [2, 3, 1, 2]
    cls = torch.tensor([c for c, k in enumerate(sizes) for _ in range(k)])  # (8,)
    within = torch.tensor(
        [0.3, 0.7, 0.5, 0.2, 0.3, 1.0, 0.9, 0.1], dtype=torch.float64
    )  # mu(y | c)
    mu_y = MU[cls] * within
    P_y = P[cls][:, cls]  # (8, 8)
    assert torch.allclose(P_y + P_y.T, torch.ones(8, 8, dtype=torch.float64))
    tau = 0.2
    pairs = [
        (pt.regularized_nash(P_y, mu_y, tau), pt.regularized_nash(P, MU, tau)),
        (pt.ipo_optimum(P_y, mu_y, tau, nu=mu_y), pt.ipo_optimum(P, MU, tau, nu=MU)),
        (pt.rlhf_optimum(P_y, mu_y, tau, nu=mu_y), pt.rlhf_optimum(P, MU, tau, nu=MU)),
        (pt.ipo_md_fixed_point(P_y, mu_y, tau, 0.3), pt.ipo_md_fixed_point(P, MU, tau, 0.3)),
    ]
    for response_level, class_level in pairs:
        assert torch.allclose(response_level, within * class_level[cls], atol=1e-9, rtol=0)
    # and the solution is not trivially mu itself
    assert total_variation(pt.regularized_nash(P, MU, tau), MU) > 0.05


# ----------------------------------------------------------------------------- the judge
def test_lifted_judge_agrees_with_the_task_on_every_completion():
    judge = lifted_judge(FRUIT_TASK, P_CYCLE)
    names = judge.class_names
    assert names == (*FRUIT_TASK.class_names, OTHER)
    texts = [t for c in FRUIT_TASK.class_names for t in FRUIT_TASK.classes[c]] + list(
        FRUIT_TASK.other
    )
    assert [names[i] for i in judge.classify(texts).tolist()] == [
        FRUIT_TASK.classify(t) for t in texts
    ]


# ----------------------------------------------------------------------------- with the tiny model
def test_estimate_class_distribution_matches_direct_sampling(tiny_lm):
    model, tok = tiny_lm
    judge = lifted_judge(FRUIT_TASK, P_CYCLE)
    est = estimate_class_distribution(
        model,
        tok,
        FRUIT_TASK,
        judge,
        n_samples=24,
        batch_size=12,
        generator=torch.Generator().manual_seed(5),
        max_new_tokens=10,
    )
    # the same draws by hand: two batches of 12 prompts cycling over the templates, one generator
    gen = torch.Generator().manual_seed(5)
    labels = []
    for start in (0, 12):
        prompts = [FRUIT_TASK.prompt_templates[i % 4] for i in range(start, start + 12)]
        b = tokenize_prompts(tok, prompts, max_length=48)
        s = sample(
            model,
            b["input_ids"],
            b["attention_mask"],
            max_new_tokens=10,
            generator=gen,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        for row, m in zip(s.completion_ids, s.completion_mask):
            labels.append(
                FRUIT_TASK.classify(tok.decode(row[m.bool()].tolist(), skip_special_tokens=True))
            )
    names = judge.class_names
    assert est.n == 24
    assert est.counts.tolist() == [labels.count(c) for c in names]
    assert float(est.probs.sum()) == pytest.approx(1.0)


def test_task_text_batches_repeat_layout_and_draws_between_batches(tiny_lm):
    """``repeat=2``: each batch's prompts twice in one ``sample`` call, copy by copy; the caller's
    draws between batches come from the same generator (what ``preference_dataset`` does)."""
    model, tok = tiny_lm
    gen = torch.Generator().manual_seed(11)
    got, between = [], []
    for prompts, texts in task_text_batches(
        model, tok, FRUIT_TASK, n_samples=7, generator=gen, batch_size=4, max_new_tokens=5,
        repeat=2,
    ):  # fmt: skip
        got.append((prompts, texts))
        between.append(torch.rand(2, generator=gen))
    # by hand: prompts 0-3 then 4-6 (cycled over 4 templates), each doubled, a draw after each
    hand = torch.Generator().manual_seed(11)
    T = FRUIT_TASK.prompt_templates
    for (prompts, texts), r, idx in zip(got, between, ([0, 1, 2, 3], [4, 5, 6])):
        want_prompts = [T[i % len(T)] for i in idx]
        assert prompts == want_prompts and len(texts) == 2 * len(idx)
        b = tokenize_prompts(tok, want_prompts + want_prompts, max_length=48)
        s = sample(
            model, b["input_ids"], b["attention_mask"], max_new_tokens=5, generator=hand,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        rows = [row[m.bool()].tolist() for row, m in zip(s.completion_ids, s.completion_mask)]
        assert texts == tok.batch_decode(rows, skip_special_tokens=True)
        assert torch.equal(r, torch.rand(2, generator=hand))
    with pytest.raises(ValueError, match="repeat"):  # at the call, before any batch is drawn
        task_text_batches(model, tok, FRUIT_TASK, n_samples=2, generator=gen, repeat=0)
    with pytest.raises(ValueError, match="n_samples"):
        task_text_batches(model, tok, FRUIT_TASK, n_samples=0, generator=gen)


def test_preference_dataset_is_trl_shaped_and_labelled_by_the_judge(tiny_lm):
    model, tok = tiny_lm
    judge = lifted_judge(
        FRUIT_TASK, [[0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]], other_loses=1.0
    )
    data = preference_dataset(
        model,
        tok,
        FRUIT_TASK,
        judge,
        n_pairs=16,
        batch_size=16,
        generator=torch.Generator().manual_seed(0),
        max_new_tokens=10,
    )
    assert 0 < len(data) <= 16
    order = {"apple": 0, "banana": 1, "cherry": 2, OTHER: 3}
    for ex in data:
        assert (
            set(ex) == {"prompt", "chosen", "rejected"}
            and ex["prompt"] in FRUIT_TASK.prompt_templates
        )
        # a deterministic transitive judge: the chosen class never ranks below the rejected one
        assert (
            order[FRUIT_TASK.classify(ex["chosen"])] <= order[FRUIT_TASK.classify(ex["rejected"])]
        )


def _xy(p):
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]])
    q = np.asarray(p, dtype=float)[..., :3]
    return (q / q.sum(axis=-1, keepdims=True)) @ corners


def test_run_bridge_smoke_and_figure(tiny_lm, tmp_path):
    model, tok = tiny_lm
    run_dir = tmp_path / "run"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = run_bridge(
        "online_ipo",
        P=P_CYCLE,
        tau=0.5,
        steps=2,
        eval_every=1,
        n_eval=8,
        n_eval_samples=24,
        batch_size=4,
        max_new_tokens=8,
        toy_steps=20,
        run_dir=run_dir,
        model=model,
        tokenizer=tok,
    )
    assert isinstance(res, BridgeResult)
    assert res.class_names == ("apple", "banana", "cherry", OTHER)
    assert res.prediction.shape == (4,) and res.toy_trajectory.shape == (21, 4)
    assert res.mu_class.n == 24 and res.final.n == 24
    # the reference is not trained: the policy moved, the reference model did not
    assert all(torch.equal(a, before[k]) for k, a in model.state_dict().items())
    assert not all(
        torch.equal(a, b) for a, b in zip(res.extra["policy"].parameters(), model.parameters())
    )
    # the prediction is the solver's output for the measured mu_class
    assert torch.equal(res.prediction, pt.regularized_nash(res.P_ext, res.mu_class.probs, 0.5))
    assert res.tv == pytest.approx(0.5 * float((res.final.probs - res.prediction).abs().sum()))
    # the measured trajectory is the run log's
    log = [r for r in read_run_log(run_dir / "run.jsonl") if "class_distribution" in r]
    assert res.steps == [r["step"] for r in log] == [0, 1, 2]
    assert torch.equal(
        res.measured, torch.tensor([r["class_distribution"] for r in log], dtype=torch.float64)
    )
    assert torch.allclose(res.measured.sum(dim=1), torch.ones(3, dtype=torch.float64))

    fig = bridge_figure(res)
    ax, ax_other = fig.axes[:2]
    lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
    np.testing.assert_allclose(
        lines["toy"].get_xydata(), _xy(res.toy_trajectory.numpy()), atol=1e-12
    )
    np.testing.assert_allclose(lines["gpt2"].get_xydata(), _xy(res.measured.numpy()), atol=1e-12)
    np.testing.assert_allclose(
        lines["prediction"].get_xydata(), _xy(res.prediction.numpy())[None], atol=1e-12
    )
    other = {line.get_gid(): line for line in ax_other.get_lines() if line.get_gid()}
    np.testing.assert_allclose(other["gpt2_other"].get_ydata(), res.measured[:, 3].numpy())
    np.testing.assert_allclose(other["gpt2_other"].get_xdata(), [0, 1, 2])
    assert other["prediction_other"].get_ydata()[0] == pytest.approx(float(res.prediction[3]))


def test_run_bridge_bad_input():
    with pytest.raises(ValueError, match="algorithm"):
        run_bridge("nash_md", P=P_CYCLE, tau=0.5)
    with pytest.raises(ValueError, match="together"):
        run_bridge("online_ipo", P=P_CYCLE, tau=0.5, model=object())


def test_bridge_figure_leaves_all_other_rows_off_the_simplex():
    # a run that collapsed onto "other" at step 2 and at the end: no simplex point, no crash
    P_ext = torch.tensor(
        [[0.5, 0.9, 0.1, 1.0], [0.1, 0.5, 0.9, 1.0], [0.9, 0.1, 0.5, 1.0], [0.0, 0.0, 0.0, 0.5]],
        dtype=torch.float64,
    )
    mu = class_estimate(
        torch.tensor([0, 0, 1, 2, 3]), 4, class_names=("apple", "banana", "cherry", OTHER)
    )
    final = class_estimate(torch.tensor([3, 3, 3]), 4, class_names=mu.class_names)
    pred, traj = predict("online_ipo", P_ext, mu.probs, tau=0.5, toy_steps=5)
    measured = torch.tensor(
        [[0.4, 0.2, 0.2, 0.2], [0.5, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
    )
    res = BridgeResult(
        algorithm="online_ipo",
        class_names=mu.class_names,
        P_ext=P_ext,
        hyper={"tau": 0.5, "mixture": 0.0},
        mu_class=mu,
        prediction=pred,
        toy_trajectory=traj,
        steps=[0, 1, 2],
        measured=measured,
        final=final,
        tv=0.5 * float((final.probs - pred).abs().sum()),
    )
    fig = bridge_figure(res)
    ax, ax_other = fig.axes[:2]
    lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
    np.testing.assert_allclose(lines["gpt2"].get_xydata(), _xy(measured[:2].numpy()), atol=1e-12)
    assert "final" not in lines
    other = {line.get_gid(): line for line in ax_other.get_lines() if line.get_gid()}
    np.testing.assert_allclose(other["gpt2_other"].get_ydata(), [0.2, 0.5, 1.0])


def test_run_bridge_reuses_a_given_mu_class_instead_of_sampling_it(tiny_lm, monkeypatch):
    import prefopt_toy.lm.bridge.run as bridge_mod

    model, tok = tiny_lm
    given = class_estimate(
        torch.tensor([0] * 5 + [1] * 3 + [2] * 2 + [3]),
        4,
        class_names=("apple", "banana", "cherry", OTHER),
    )
    calls = []
    real = bridge_mod.estimate_class_distribution
    monkeypatch.setattr(
        bridge_mod, "estimate_class_distribution", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    res = run_bridge(
        "online_ipo",
        P=P_CYCLE,
        tau=0.5,
        steps=1,
        eval_every=1,
        n_eval=4,
        n_eval_samples=16,
        batch_size=2,
        max_new_tokens=6,
        toy_steps=5,
        model=model,
        tokenizer=tok,
        mu_class=given,
    )
    assert res.mu_class is given and len(calls) == 1  # only the final estimate was sampled
    assert torch.equal(res.prediction, pt.regularized_nash(res.P_ext, given.probs, 0.5))
    with pytest.raises(ValueError, match="mu_class must be a ClassEstimate over the classes"):
        run_bridge(
            "online_ipo",
            P=P_CYCLE,
            tau=0.5,
            steps=1,
            model=model,
            tokenizer=tok,
            mu_class=class_estimate(torch.tensor([0, 1, 2]), 3),
        )
