"""Fine-tuning the full and retain models (tiny, cached) and one short NPO run on them (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefopt_toy.lm.unlearning import (
    FinetuneRecipe,
    UnlearnConfig,
    answer_losses,
    fact_corpus,
    finetuned_model,
    unlearn,
)


@pytest.mark.slow
def test_full_and_retain_models_cache_and_unlearning(tiny_lm, tiny_cache):
    corpus = fact_corpus(6, forget_fraction=0.1, n_perturbed=2, n_alternates=2, seed=1)
    recipe = FinetuneRecipe(steps=80, batch_size=16, lr=3e-3)
    full, tok = finetuned_model(corpus, "full", size="tiny", recipe=recipe, cache_dir=tiny_cache)
    retain, _ = finetuned_model(corpus, "retain", size="tiny", recipe=recipe, cache_dir=tiny_cache)
    forget = corpus.forget
    prompts, answers = [q.prompt for q in forget], [q.answer for q in forget]
    # Only the full model was trained on the forget people: their answers are likelier under it.
    loss_full = answer_losses(full, tok, prompts, answers)
    loss_retain = answer_losses(retain, tok, prompts, answers)
    assert loss_full.mean() < loss_retain.mean() - 0.1
    # Cached: a second call loads the same weights and adds no directory.
    dirs = sorted((tiny_cache / "models").iterdir())
    again, _ = finetuned_model(corpus, "full", size="tiny", recipe=recipe, cache_dir=tiny_cache)
    assert sorted((tiny_cache / "models").iterdir()) == dirs
    assert all(
        torch.equal(a, b) for a, b in zip(full.state_dict().values(), again.state_dict().values())
    )
    # A changed recipe is a new cache entry.
    other = FinetuneRecipe(steps=2, batch_size=4, lr=1e-3)
    finetuned_model(corpus, "retain", size="tiny", recipe=other, cache_dir=tiny_cache)
    assert len(list((tiny_cache / "models").iterdir())) == len(dirs) + 1
    # Three NPO steps raise the forget answers' loss.
    cfg = UnlearnConfig(method="npo", steps=3, lr=3e-3, eval_every=3, batch_size=5)
    rq = corpus.retain[:3]
    policy, run = unlearn(full, retain, tok, corpus, cfg, retain_eval_questions=rq)
    assert len(run.losses) == 3 and run.steps == [0, 3]
    for name, values in run.history.items():
        assert len(values) == 2 and all(np.isfinite(values)), name
    assert 0.0 <= min(run.history["forget_quality"]) <= max(run.history["forget_quality"]) <= 1.0
    # step 0 is the full model itself: its forget probability is the loop's exp(-loss) mean
    assert run.history["forget_prob"][0] == pytest.approx(
        float(np.mean(np.exp(-loss_full))), rel=1e-4
    )
    assert answer_losses(policy, tok, prompts, answers).mean() > loss_full.mean()
    assert np.all(np.isfinite(run.losses))
