r"""The LM side of a lifted game: its judge, and offline preference pairs sampled from the reference.

``lifted_judge`` builds the ``LiftedGameJudge`` of a ``LiftedTask``; ``preference_dataset`` samples
two completions per prompt from the reference and labels them with that judge, the offline data of
``dpo`` and ``ipo`` in ``run_bridge``. Re-exported by :mod:`prefopt_toy.lm.bridge`.

References: as :mod:`prefopt_toy.lm.bridge`, the module this one was split from.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validate import as_int
from .class_estimate import _decode
from .corpus import OTHER, LiftedTask
from .data import tokenize_prompts
from .judges import LiftedGameJudge
from .sampling import sample

__all__ = ["lifted_judge", "preference_dataset"]


# --------------------------------------------------------------------------- judge
def lifted_judge(task: LiftedTask, P: Any, *, other_loses: float = 1.0) -> LiftedGameJudge:
    """The ``LiftedGameJudge`` of a task: its classes recognised by the task's own keywords.

    ``LiftedGameJudge`` matches whole words, ``LiftedTask.classify`` substrings, so a task lists
    every word form its completions use (``FRUIT_TASK`` has "apples" beside "apple"); the tests
    check that the judge agrees with ``task.classify`` on every completion of the corpus.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 2 (a preference model over responses).
    """
    if not isinstance(task, LiftedTask):
        raise ValueError(f"task must be a LiftedTask, got {type(task).__name__}")  # noqa: TRY004
    classes = {c: tuple(task.keywords[c]) for c in task.class_names}
    return LiftedGameJudge(P, classes, OTHER, other_loses=other_loses)


# --------------------------------------------------------------------------- offline data
@torch.no_grad()
def preference_dataset(model, tokenizer, task: LiftedTask, judge: LiftedGameJudge, *, n_pairs: int,
                       generator: torch.Generator, batch_size: int = 64, max_new_tokens: int = 16,
                       max_prompt_length: int = 48) -> list[dict[str, str]]:
    """Offline preference data from the reference: two completions per prompt, labelled by the judge.

    For pair ``i`` (prompt ``task.prompt_templates[i % len]``) two completions ``a``, ``b`` are
    sampled from ``model``; a label ``a wins`` is drawn as Bernoulli(``judge.probs(a, b)``) from
    ``generator`` (``judge.sample_labels``); the winner is ``chosen``. Empty completions (EOS first)
    are dropped. Sampling runs on the model's device (keep ``generator`` on the CPU; the CUDA
    path is written but was not run on a GPU here); the result is plain strings. So the pairs come from ``mu x mu`` and the labels from ``P``: the population the
    toy's offline algorithms use with ``nu = mu``.

    Returns
    -------
    list of ``{"prompt", "chosen", "rejected"}`` (TRL's convention), at most ``n_pairs``.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (preference dataset format); Azar et al.,
    arXiv:2310.12036v2, Eq. (5) (pairs from nu, labels from P).
    """
    n_pairs = as_int(n_pairs, "n_pairs", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    templates = task.prompt_templates
    out: list[dict[str, str]] = []
    for start in range(0, n_pairs, batch_size):
        prompts = [templates[i % len(templates)] for i in range(start, min(start + batch_size, n_pairs))]
        B = len(prompts)
        batch = tokenize_prompts(tokenizer, prompts + prompts, max_length=max_prompt_length)
        s = sample(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=max_new_tokens,
                   generator=generator, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        texts = _decode(tokenizer, s)
        a, b = texts[:B], texts[B:]
        wins = judge.sample_labels(a, b, generator)  # (B,) 1 when a wins
        for prompt, ta, tb, w in zip(prompts, a, b, wins.tolist()):
            if not ta.strip() or not tb.strip():
                continue
            chosen, rejected = (ta, tb) if w == 1 else (tb, ta)
            out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    if not out:
        raise ValueError("preference_dataset: every sampled completion was empty")
    return out
