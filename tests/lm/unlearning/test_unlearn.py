"""The unlearning loop, the evaluation and the figure on the tiny model, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prefopt_toy.lm.unlearning import (
    METHODS,
    UnlearnConfig,
    UnlearnRun,
    answer_losses,
    evaluate,
    fact_corpus,
    question_ratios,
    tradeoff_figure,
    unlearn,
)


@pytest.fixture(scope="module")
def corpus():
    return fact_corpus(6, forget_fraction=0.1, n_perturbed=2, n_alternates=2, seed=0)


def _manual_losses(model, tok, prompts, completions):
    """Mean token NLL of each completion (+ EOS), one sequence at a time from the raw logits."""
    out = []
    for p, c in zip(prompts, completions):
        p_ids, c_ids = tok(p).input_ids, tok(c).input_ids + [tok.eos_token_id]
        ids = torch.tensor([p_ids + c_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        nll = [-logp[len(p_ids) + j - 1, t].item() for j, t in enumerate(c_ids)]
        out.append(sum(nll) / len(nll))
    return np.array(out)


def test_answer_losses_match_a_per_sequence_loop(tiny_lm, corpus):
    model, tok = tiny_lm
    qs = corpus.questions[:4]
    prompts = [q.prompt for q in qs] * 2
    comps = [q.answer for q in qs] + [q.perturbed[0] for q in qs]
    got = answer_losses(model, tok, prompts, comps, batch_size=3)
    np.testing.assert_allclose(got, _manual_losses(model, tok, prompts, comps), rtol=1e-4)


def test_question_ratios_from_the_loop(tiny_lm, corpus):
    model, tok = tiny_lm
    qs = corpus.forget
    ratios = question_ratios(model, tok, qs)
    for q, r in zip(qs, ratios):
        para = _manual_losses(model, tok, [q.prompt], [q.paraphrase])[0]
        pert = _manual_losses(model, tok, [q.prompt] * 2, list(q.perturbed))
        assert r == pytest.approx(math.exp(pert.mean() - para), rel=1e-4)


def _config(method, **kw):
    base = dict(method=method, steps=1, lr=1e-3, eval_every=1, batch_size=5, retain_batch_size=2)
    base.update(kw)
    return UnlearnConfig(**base)


@pytest.mark.parametrize(
    ("method", "kw"),
    [("npo", {}), ("altpo", {"retain_weight": 0.0}), ("ga", {})],
)
def test_first_step_loss_closed_form(tiny_lm, corpus, method, kw):
    model, tok = tiny_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rq = corpus.retain[:3]
    policy, run = unlearn(
        model, model, tok, corpus, _config(method, **kw), retain_eval_questions=rq, record=False
    )
    forget = corpus.forget
    assert len(forget) == 5  # one forget person, every forget question in the first batch
    if method == "ga":
        # mean summed log-prob of the forget answers under the starting model, by the loop
        mean_nll = _manual_losses(
            model, tok, [q.prompt for q in forget], [q.answer for q in forget]
        )
        n_tok = [len(tok(q.answer).input_ids) + 1 for q in forget]
        want = -float(np.mean(mean_nll * np.array(n_tok)))
        assert run.losses[0] == pytest.approx(want, rel=1e-4)
    else:
        # policy = reference at step 1: every log-ratio is 0 and the loss is (2/beta) log 2
        assert run.losses[0] == pytest.approx(2 / 0.1 * math.log(2), rel=1e-5)
    # the reference model is untouched, the policy moved
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
    assert run.history == {} and run.steps == [] and len(run.losses) == 1


def test_evaluate_against_itself_is_a_perfect_match(tiny_lm, corpus):
    model, tok = tiny_lm
    ratios = question_ratios(model, tok, corpus.forget)
    rec = evaluate(
        model,
        tok,
        corpus,
        retain_model=model,
        retain_ratios=ratios,
        retain_questions=corpus.retain[:3],
    )
    # the model is its own retain model: identical truth-ratio samples, KS p-value 1
    assert rec["forget_quality"] == 1.0 and rec["ks_statistic"] == 0.0
    u = [rec["retain_prob"], rec["retain_rouge"], rec["retain_tr_score"]]
    want = 0.0 if min(u) == 0 else 3 / sum(1 / x for x in u)
    assert rec["model_utility"] == pytest.approx(want)


def test_figure_lines_carry_the_recorded_numbers():
    runs = [
        UnlearnRun(
            "npo",
            steps=[0, 5],
            history={"model_utility": [0.5, 0.4], "forget_quality": [1e-4, 0.2]},
        ),
        UnlearnRun(
            "altpo",
            steps=[0, 5],
            history={"model_utility": [0.5, 0.45], "forget_quality": [1e-4, 0.6]},
        ),
    ]
    fig = tradeoff_figure(runs, retain_point=(0.55, 1.0))
    lines = fig.axes[0].lines
    assert [ln.get_label() for ln in lines] == ["npo", "altpo"]
    for ln, r in zip(lines, runs):
        np.testing.assert_array_equal(ln.get_xdata(), r.history["model_utility"])
        np.testing.assert_array_equal(ln.get_ydata(), r.history["forget_quality"])
    assert fig.axes[0].get_yscale() == "log"
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.parametrize(
    "kw",
    [
        {"method": "dpo"},
        {"steps": 0},
        {"lr": -1.0},
        {"beta": 0.0},
        {"retain_weight": -1.0},
        {"eval_every": 0},
    ],
)
def test_bad_config_raises(tiny_lm, corpus, kw):
    model, tok = tiny_lm
    cfg = _config(kw.pop("method", "npo"), **kw)
    with pytest.raises(ValueError):
        unlearn(model, model, tok, corpus, cfg, record=False)


def test_methods_listed():
    assert METHODS == ("ga", "grad_diff", "npo", "npo_retain", "altpo")


def test_figure_bad_input():
    with pytest.raises(ValueError):
        tradeoff_figure([])
