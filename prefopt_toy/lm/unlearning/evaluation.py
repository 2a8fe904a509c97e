"""Run the models on the fact questions and compute TOFU's metrics (``metrics``) from the outputs.

``answer_losses`` gives length-normalised losses (mean token NLL of the completion and its EOS,
``completion_logprobs(..., reduction="mean")`` negated), the quantity TOFU's truth ratio and
probability use; ``generate_answers`` decodes greedily (``lm.sampling.sample`` at a temperature of
1e-4, which puts all mass on the arg-max token) for ROUGE-L and fluency; ``evaluate`` combines them
into one record per checkpoint.

References
----------
Maini et al., arXiv:2401.06121v1 (TOFU, section 2.2); Mekala et al., arXiv:2409.13474v1 (AltPO,
section 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from prefopt_toy.lm.data import tokenize_completions, tokenize_prompts
from prefopt_toy.lm.logprobs import completion_logprobs
from prefopt_toy.lm.sampling import sample

from .corpus import FactCorpus, FactQuestion
from .metrics import (
    answer_probability,
    forget_quality,
    harmonic_mean,
    rouge_l_recall,
    truth_ratio,
    truth_ratio_score,
    value_accuracy,
    well_formed_fraction,
)

__all__ = ["answer_losses", "evaluate", "generate_answers", "question_ratios"]

_MAX_LENGTH = 64
_GREEDY_TEMPERATURE = 1e-4


@torch.no_grad()
def answer_losses(
    model, tokenizer, prompts: Sequence[str], completions: Sequence[str], *, batch_size: int = 32
) -> np.ndarray:
    """Length-normalised loss ``-(1/|a|) log P(a | q)`` of each (prompt, completion); shape (N,).

    ``|a|`` counts the completion's tokens and its EOS (``tokenize_completions`` appends it).

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 2.2.1 (normalised probability ``P(a|q)^{1/|a|}``).
    """
    out = []
    for i in range(0, len(prompts), batch_size):
        batch = tokenize_completions(
            tokenizer,
            list(prompts[i : i + batch_size]),
            list(completions[i : i + batch_size]),
            max_length=_MAX_LENGTH,
        )
        lp = completion_logprobs(model, **batch, reduction="mean")  # (b,)
        out.append(-lp.double().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def generate_answers(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 16, batch_size: int = 64
) -> tuple[list[str], np.ndarray]:
    """Greedy answers to ``prompts`` (text up to EOS) and their token counts.

    Greedy: ``sample`` at temperature 1e-4 with a fixed generator (the arg-max token has all the
    mass, so the seed does not matter).
    """
    texts: list[str] = []
    for i in range(0, len(prompts), batch_size):
        batch = tokenize_prompts(
            tokenizer, list(prompts[i : i + batch_size]), max_length=_MAX_LENGTH
        )
        out = sample(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            generator=torch.Generator().manual_seed(0),
            eos_token_id=tokenizer.eos_token_id,
            temperature=_GREEDY_TEMPERATURE,
        )
        for ids, mask in zip(out.completion_ids.tolist(), out.completion_mask.tolist()):
            kept = [t for t, m in zip(ids, mask) if m and t != tokenizer.eos_token_id]
            texts.append(tokenizer.decode(kept))
    return texts, np.array([max(1, len(tokenizer(t).input_ids)) for t in texts])


def question_ratios(model, tokenizer, questions: Sequence[FactQuestion]) -> np.ndarray:
    """TOFU's truth ratio of each question under ``model``; shape (Q,).

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 2.2.2; see ``metrics.truth_ratio``.
    """
    k = len(questions[0].perturbed)
    prompts = [q.prompt for q in questions for _ in range(1 + k)]
    comps = [a for q in questions for a in (q.paraphrase, *q.perturbed)]
    loss = answer_losses(model, tokenizer, prompts, comps).reshape(len(questions), 1 + k)
    return truth_ratio(loss[:, 0], loss[:, 1:]).numpy()


def evaluate(
    model,
    tokenizer,
    corpus: FactCorpus,
    *,
    retain_model,
    retain_ratios: np.ndarray,
    retain_questions: Sequence[FactQuestion],
) -> dict[str, float]:
    """One checkpoint's metrics on the forget questions and on ``retain_questions``.

    Parameters
    ----------
    model : the model evaluated
    tokenizer : GPT-2 tokenizer
    corpus : FactCorpus
    retain_model : the model fine-tuned on the retain people only (fluency's scorer)
    retain_ratios : array, shape (Q_forget,)
        ``question_ratios(retain_model, tokenizer, corpus.forget)`` (computed once by the caller).
    retain_questions : sequence of FactQuestion
        The retain questions scored for model utility (a subset keeps evaluation cheap).

    Returns
    -------
    dict
        ``forget_quality`` (KS p-value), ``ks_statistic``, ``forget_truth_ratio`` (median ``R``
        on the forget set), ``forget_tr_score`` (``mean min(R, 1/R)``), ``forget_prob``,
        ``forget_rouge``, ``forget_value_accuracy`` (share of generations naming the true value),
        ``model_utility`` (harmonic mean of the next three), ``retain_prob``,
        ``retain_rouge``, ``retain_tr_score``, ``retain_value_accuracy``, ``fluency_well_formed`` and
        ``fluency_retain_logp`` (mean per-token log-prob of the forget-set generations under
        ``retain_model``).

    References
    ----------
    Maini et al., arXiv:2401.06121v1, sections 2.2-2.5; Mekala et al., arXiv:2409.13474v1,
    section 4.
    """
    forget = corpus.forget
    ratios_f = question_ratios(model, tokenizer, forget)
    fq, ks = forget_quality(ratios_f, retain_ratios)
    loss_f = answer_losses(model, tokenizer, [q.prompt for q in forget], [q.answer for q in forget])
    gen_f, _ = generate_answers(model, tokenizer, [q.prompt for q in forget])
    rouge_f = float(np.mean([rouge_l_recall(g, q.answer) for g, q in zip(gen_f, forget)]))
    # Fluency stand-ins: the grammar, and the retain model's per-token log-prob of the answers.
    fluent = well_formed_fraction(gen_f, corpus.is_well_formed)
    scored = [(q.prompt, g) for q, g in zip(forget, gen_f) if g.strip()]
    if scored:
        logp_retain = -float(
            np.mean(
                answer_losses(
                    retain_model,
                    tokenizer,
                    [p for p, _ in scored],
                    [" " + g.strip() for _, g in scored],
                )
            )
        )
    else:
        logp_retain = float("-1e9")  # every generation empty: as bad as it gets, but finite
    ratios_r = question_ratios(model, tokenizer, retain_questions)
    loss_r = answer_losses(
        model, tokenizer, [q.prompt for q in retain_questions], [q.answer for q in retain_questions]
    )
    gen_r, _ = generate_answers(model, tokenizer, [q.prompt for q in retain_questions])
    rouge_r = float(np.mean([rouge_l_recall(g, q.answer) for g, q in zip(gen_r, retain_questions)]))
    prob_r = answer_probability(loss_r)
    tr_r = truth_ratio_score(ratios_r, forget=False)
    return {
        "forget_quality": fq,
        "ks_statistic": ks,
        "forget_truth_ratio": float(np.median(ratios_f)),
        "forget_tr_score": truth_ratio_score(ratios_f, forget=True),
        "forget_prob": answer_probability(loss_f),
        "forget_rouge": rouge_f,
        "forget_value_accuracy": value_accuracy(gen_f, [q.value for q in forget]),
        "model_utility": harmonic_mean([prob_r, rouge_r, tr_r]),
        "retain_prob": prob_r,
        "retain_rouge": rouge_r,
        "retain_tr_score": tr_r,
        "retain_value_accuracy": value_accuracy(gen_r, [q.value for q in retain_questions]),
        "fluency_well_formed": fluent,
        "fluency_retain_logp": logp_retain,
    }
