"""The unlearning loop: GA, GradDiff, NPO, NPO + retain and AltPO on the fact corpus, metrics on the way.

Every method starts from the "full" model (fine-tuned on every person) and uses it, frozen, as the
reference. One step takes ``batch_size`` forget questions (a seeded reshuffle every epoch) and,
for the methods with a retain term, ``retain_batch_size`` retain questions drawn with a seeded
generator; all rows go through the policy in one forward pass, and the per-example losses of
:mod:`prefopt_toy.losses.unlearning` (summed sequence log-probs, the ONE implementation shared with
the exact toy) are averaged over the batch:

============ ==================================================================================
method       loss
============ ==================================================================================
ga           ``mean gradient_ascent_loss(log pi(y_f))``  (TOFU's gradient ascent)
grad_diff    ga + ``retain_weight * mean retain_nll(log pi(y_r))``  (TOFU's gradient difference)
npo          ``mean npo_loss(log pi(y_f), log mu(y_f), beta)``
npo_retain   npo + ``retain_weight * mean retain_nll``  (NPO's "NPO-RT")
altpo        ``mean altpo_loss`` over the k (alternate, forget) pairs of each question
             + ``retain_weight * mean retain_nll``  (AltPO's ``subdpo`` with ``augment_k`` pairs)
============ ==================================================================================

The forget answer ``y_f`` is the original phrasing (TOFU's forget set holds the question/answer
pairs), the alternates are ``FactQuestion.alternates``. The reference log-probs are computed once
(the reference and the data are fixed). Optimiser: AdamW (``lr``, ``weight_decay``), no schedule.

References
----------
Maini et al., arXiv:2401.06121v1, section 5 (GA, GradDiff); Zhang et al., arXiv:2404.05868v2,
section 3 (NPO, NPO-RT); Mekala et al., arXiv:2409.13474v1, section 3 and the official code
``molereddy/Alternate-Preference-Optimization`` (beta 0.1, retain_wt 1, one pair per alternate);
Loshchilov & Hutter, arXiv:1711.05101 (AdamW).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from prefopt_toy.lm.data import tokenize_completions
from prefopt_toy.lm.logprobs import completion_logprobs
from prefopt_toy.losses.unlearning import altpo_loss, gradient_ascent_loss, npo_loss, retain_nll

from .corpus import FactCorpus
from .evaluation import _MAX_LENGTH, evaluate, question_ratios

__all__ = ["METHODS", "UnlearnConfig", "UnlearnRun", "unlearn"]

METHODS = ("ga", "grad_diff", "npo", "npo_retain", "altpo")
_WITH_RETAIN = ("grad_diff", "npo_retain", "altpo")


@dataclass(frozen=True)
class UnlearnConfig:
    """One unlearning run's settings.

    References
    ----------
    Mekala et al., arXiv:2409.13474v1, section 4 (beta 0.1, retain weight 1, batch 5).
    """

    method: str
    """One of ``METHODS``."""
    steps: int
    """AdamW steps."""
    lr: float
    """Learning rate (the official 7B recipe uses 1e-5; a small model needs more)."""
    eval_every: int
    """Evaluate at step 0, every ``eval_every`` steps and at the end."""
    batch_size: int = 5
    """Forget questions per step (the official batch is 5)."""
    retain_batch_size: int = 5
    """Retain questions per step (methods with a retain term)."""
    beta: float = 0.1
    """NPO / AltPO inverse temperature."""
    retain_weight: float = 1.0
    """Weight of the retain NLL (AltPO's ``retain_wt``)."""
    weight_decay: float = 0.01
    """AdamW weight decay (TOFU's fine-tuning value)."""
    seed: int = 0
    """Seed of the forget order and the retain draws."""


@dataclass
class UnlearnRun:
    """A run's recorded metrics.

    ``history[name]`` is the list of ``evaluate``'s ``name`` at the steps in ``steps``;
    ``losses`` holds the training loss of every step.
    """

    method: str
    steps: list[int] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    """Training time, evaluation excluded."""


def _check(config: UnlearnConfig) -> None:
    if not isinstance(config, UnlearnConfig):
        raise ValueError(f"config must be an UnlearnConfig, got {type(config).__name__}")
    if config.method not in METHODS:
        raise ValueError(f"config.method must be one of {METHODS}, got {config.method!r}")
    for name in ("steps", "eval_every", "batch_size", "retain_batch_size"):
        val = getattr(config, name)
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"config.{name} must be a positive integer, got {val!r}")
    for name in ("lr", "beta"):
        val = getattr(config, name)
        if not (isinstance(val, (int, float)) and math.isfinite(val) and val > 0):
            raise ValueError(f"config.{name} must be a positive finite number, got {val!r}")
    for name in ("retain_weight", "weight_decay"):
        val = getattr(config, name)
        if not (isinstance(val, (int, float)) and math.isfinite(val) and val >= 0):
            raise ValueError(f"config.{name} must be a finite number >= 0, got {val!r}")


def _summed_logps(model, tokenizer, prompts, completions):
    batch = tokenize_completions(tokenizer, prompts, completions, max_length=_MAX_LENGTH)
    return completion_logprobs(model, **batch, reduction="sum")  # (N,)


def unlearn(
    full_model,
    retain_model,
    tokenizer,
    corpus: FactCorpus,
    config: UnlearnConfig,
    *,
    retain_eval_questions=None,
    retain_ratios: np.ndarray | None = None,
    record: bool = True,
) -> tuple[torch.nn.Module, UnlearnRun]:
    """Unlearn ``corpus.forget`` from a copy of ``full_model`` with ``config.method``.

    Parameters
    ----------
    full_model : GPT-2 fine-tuned on every person
        Copied (``copy.deepcopy``) into the policy; the original is the frozen reference and is
        left unchanged.
    retain_model : GPT-2 fine-tuned on the retain people only
        The forget-quality target and fluency scorer (not trained).
    tokenizer : GPT-2 tokenizer
    corpus : FactCorpus
    config : UnlearnConfig
    retain_eval_questions : sequence of FactQuestion, optional
        Retain questions for model utility; default every 4th retain question, at most 40.
    retain_ratios : array, optional
        The retain model's truth ratios on the forget questions (computed if absent).
    record : bool, default True
        Evaluate at step 0, every ``config.eval_every`` steps and at the end; False records only
        the training losses (``run.history`` stays empty).

    Returns
    -------
    policy : the unlearned model (eval mode)
    run : UnlearnRun

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 5; Zhang et al., arXiv:2404.05868v2, section 3;
    Mekala et al., arXiv:2409.13474v1, section 3.
    """
    _check(config)
    if not isinstance(corpus, FactCorpus):
        raise ValueError(f"corpus must be a FactCorpus, got {type(corpus).__name__}")
    forget, retain = corpus.forget, corpus.retain
    if config.method == "altpo" and not forget[0].alternates:
        raise ValueError("config.method='altpo' needs a corpus with n_alternates >= 1")
    if retain_eval_questions is None:
        retain_eval_questions = retain[::4][:40]
    if record and retain_ratios is None:
        retain_ratios = question_ratios(retain_model, tokenizer, forget)
    k = len(forget[0].alternates)
    with torch.no_grad():
        ref_f = _summed_logps(
            full_model, tokenizer, [q.prompt for q in forget], [q.answer for q in forget]
        )
        ref_alt = (
            _summed_logps(
                full_model,
                tokenizer,
                [q.prompt for q in forget for _ in range(k)],
                [a for q in forget for a in q.alternates],
            ).reshape(len(forget), k)
            if config.method == "altpo"
            else None
        )
    policy = copy.deepcopy(full_model)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    order, cursor = torch.randperm(len(forget), generator=gen), 0
    run = UnlearnRun(method=config.method)

    def checkpoint(step: int) -> None:
        if not record:
            return
        policy.eval()
        metrics = evaluate(
            policy,
            tokenizer,
            corpus,
            retain_model=retain_model,
            retain_ratios=retain_ratios,
            retain_questions=retain_eval_questions,
        )
        policy.train()
        run.steps.append(step)
        for name, val in metrics.items():
            run.history.setdefault(name, []).append(val)

    checkpoint(0)
    for step in range(1, config.steps + 1):
        t0 = time.perf_counter()
        if cursor + config.batch_size > len(forget):
            order, cursor = torch.randperm(len(forget), generator=gen), 0
        idx = order[cursor : cursor + config.batch_size].tolist()
        cursor += config.batch_size
        prompts = [forget[i].prompt for i in idx]
        comps = [forget[i].answer for i in idx]
        if config.method == "altpo":
            prompts += [forget[i].prompt for i in idx for _ in range(k)]
            comps += [a for i in idx for a in forget[i].alternates]
        n_forget_rows = len(prompts)
        if config.method in _WITH_RETAIN:
            ridx = torch.randint(len(retain), (config.retain_batch_size,), generator=gen).tolist()
            prompts += [retain[i].prompt for i in ridx]
            comps += [retain[i].answer for i in ridx]
        logps = _summed_logps(policy, tokenizer, prompts, comps)  # (N,) one forward pass
        lp_f = logps[: len(idx)]
        rf = ref_f[idx]
        if config.method in ("ga", "grad_diff"):
            loss = gradient_ascent_loss(lp_f).mean()
        elif config.method in ("npo", "npo_retain"):
            loss = npo_loss(lp_f, rf, beta=config.beta).mean()
        else:  # altpo: one pair per alternate
            lp_alt = logps[len(idx) : n_forget_rows].reshape(len(idx), k)
            loss = altpo_loss(
                lp_alt,
                ref_alt[idx],
                lp_f.unsqueeze(1).expand(-1, k),
                rf.unsqueeze(1).expand(-1, k),
                beta=config.beta,
            ).mean()
        if config.method in _WITH_RETAIN:
            loss = loss + config.retain_weight * retain_nll(logps[n_forget_rows:]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.losses.append(float(loss.detach()))
        run.wall_seconds += time.perf_counter() - t0
        if step % config.eval_every == 0 or step == config.steps:
            checkpoint(step)
    policy.eval()
    return policy, run
