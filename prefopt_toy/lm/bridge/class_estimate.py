"""Class distributions of a language model on a lifted game, with per-class Wilson intervals.

The bridge compares the exact toy with GPT-2 through the distribution of the class (one of K
keywords, or "other" last) that a model's completions name. ``estimate_class_distribution``
samples ``n`` completions and classifies them with the judge; ``class_estimate`` turns class
indices into empirical frequencies with a Wilson score interval per class at ``level`` (per class,
not simultaneous), computed by ``wilson_interval``; ``total_variation`` measures the gap between two
distributions. References: Wilson, "Probable inference, the law of succession, and statistical
inference", JASA 22 (1927) 209-212; Munos et al., arXiv:2312.00886v4 (lifted preference games).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int
from prefopt_toy.lm.data import tokenize_prompts
from prefopt_toy.lm.judges import LiftedGameJudge
from prefopt_toy.lm.models.corpus import LiftedTask
from prefopt_toy.lm.sampling import sample


# --------------------------------------------------------------------------- estimates
def wilson_interval(counts: Any, n: int, level: float = 0.95) -> tuple[Tensor, Tensor]:
    r"""Wilson score interval of each binomial proportion ``counts[k] / n``.

    .. math:: \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}
                   {1 + z^2/n}, \qquad z = \Phi^{-1}\big(\tfrac{1 + \text{level}}{2}\big).

    Parameters
    ----------
    counts : array-like of int, shape (C,)
        Successes per class, each in [0, n].
    n : int >= 1
        Trials.
    level : float in (0, 1)
        Two-sided confidence level.

    Returns
    -------
    lower, upper : Tensor, shape (C,), float64, inside [0, 1].

    References
    ----------
    Wilson, JASA 22 (1927) 209-212; Brown, Cai & DasGupta, Statistical Science 16 (2001) 101-133
    (coverage close to nominal even for small n or p near 0, unlike the normal approximation).

    Examples
    --------
    >>> lo, hi = wilson_interval([0], 10)
    >>> round(float(lo[0]), 6), round(float(hi[0]), 4)  # upper = z^2 / (n + z^2)
    (0.0, 0.2775)
    """
    n = as_int(n, "n", minimum=1)
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.ndim != 1 or bool((c < 0).any()) or bool((c > n).any()) or bool((c != c.round()).any()):
        raise ValueError(f"counts must be a 1-d array of integers in [0, n={n}], got {c.tolist()}")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = c / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * torch.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends at the boundaries (the formula gives 0 and 1 there up to round-off)
    lower = torch.where(c == 0, 0.0, (centre - half).clamp(0.0, 1.0))
    upper = torch.where(c == n, 1.0, (centre + half).clamp(0.0, 1.0))
    return lower.to(torch.float64), upper.to(torch.float64)


@dataclass(frozen=True)
class ClassEstimate:
    """An estimated class distribution with per-class Wilson intervals.

    References
    ----------
    Wilson, JASA 22 (1927) 209-212.
    """

    probs: Tensor
    """(K+1,) float64 empirical frequencies, "other" last."""
    lower: Tensor
    """(K+1,) float64 lower ends of the intervals."""
    upper: Tensor
    """(K+1,) float64 upper ends."""
    counts: Tensor
    """(K+1,) int64 counts."""
    n: int
    """Number of samples."""
    level: float
    """Confidence level of each interval."""
    class_names: tuple[str, ...] = ()
    """K class names then the "other" name (may be empty)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain Python lists (for JSON)."""
        return {
            "probs": self.probs.tolist(),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "counts": self.counts.tolist(),
            "n": self.n,
            "level": self.level,
            "class_names": list(self.class_names),
        }


def class_estimate(
    class_ids: Any, n_classes: int, *, level: float = 0.95, class_names: Sequence[str] = ()
) -> ClassEstimate:
    """Frequencies and Wilson intervals from class indices (0..n_classes-1, "other" = n_classes-1).

    Parameters
    ----------
    class_ids : array-like of int, shape (n,)
        One class index per sample (e.g. ``judge.classify(texts)``).
    n_classes : int >= 2
        K + 1.
    level : float in (0, 1)
    class_names : sequence of str, optional

    Returns
    -------
    ClassEstimate

    References
    ----------
    Wilson, JASA 22 (1927) 209-212.

    Examples
    --------
    >>> est = class_estimate([0, 0, 1, 2], 3)
    >>> est.probs.tolist(), est.n
    ([0.5, 0.25, 0.25], 4)
    """
    n_classes = as_int(n_classes, "n_classes", minimum=2)
    ids = torch.as_tensor(class_ids)
    if ids.ndim != 1 or ids.numel() == 0:
        raise ValueError(f"class_ids must be a non-empty 1-d array, got shape {tuple(ids.shape)}")
    if ids.is_floating_point() or bool((ids < 0).any()) or bool((ids >= n_classes).any()):
        raise ValueError(f"class_ids must be integers in [0, {n_classes - 1}]")
    counts = torch.bincount(ids.to(torch.int64), minlength=n_classes)  # (K+1,)
    n = int(ids.numel())
    lower, upper = wilson_interval(counts, n, level)
    return ClassEstimate(
        counts.to(torch.float64) / n, lower, upper, counts, n, float(level), tuple(class_names)
    )


def _decode(tokenizer, samples) -> list[str]:
    rows = [r[m.bool()].tolist() for r, m in zip(samples.completion_ids, samples.completion_mask)]
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


def task_text_batches(
    model,
    tokenizer,
    task: Any,
    *,
    n_samples: int,
    generator: torch.Generator,
    batch_size: int = 64,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    max_prompt_length: int = 48,
    repeat: int = 1,
) -> Iterator[tuple[list[str], list[str]]]:
    """Completions to ``task``'s prompts (cycled), one batch at a time: ``(prompts, texts)``.

    Prompt ``i`` is ``task.prompt_templates[i % len]`` (as the trainer's evaluation); each batch
    of up to ``batch_size`` prompts is sampled ``repeat`` times in one call of
    ``sampling.sample`` with the one ``generator`` (``texts`` holds ``repeat * len(prompts)``
    completions, copy by copy: ``texts[r * B + i]`` answers ``prompts[i]``) and decoded without
    special tokens. The batches are drawn lazily, so a caller may draw from ``generator`` between
    them (``run.preference_dataset`` labels each batch of pairs before the next is sampled); the
    counts are checked at the call, before any batch is drawn.

    References
    ----------
    Munos et al., arXiv:2312.00886v4 (lifted preference games: completions of the task's prompts).
    """
    n_samples = as_int(n_samples, "n_samples", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    repeat = as_int(repeat, "repeat", minimum=1)
    return _text_batches(
        model, tokenizer, task.prompt_templates, n_samples, generator, batch_size,
        max_new_tokens, temperature, max_prompt_length, repeat,
    )  # fmt: skip


@torch.no_grad()
def _text_batches(
    model, tokenizer, templates, n_samples, generator, batch_size, max_new_tokens, temperature,
    max_prompt_length, repeat,
) -> Iterator[tuple[list[str], list[str]]]:  # fmt: skip
    for start in range(0, n_samples, batch_size):
        prompts = [
            templates[i % len(templates)] for i in range(start, min(start + batch_size, n_samples))
        ]
        batch = tokenize_prompts(tokenizer, prompts * repeat, max_length=max_prompt_length)
        out = sample(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            generator=generator,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            temperature=temperature,
        )
        yield prompts, _decode(tokenizer, out)


def sample_task_texts(
    model,
    tokenizer,
    task: Any,
    *,
    n_samples: int,
    generator: torch.Generator,
    batch_size: int = 64,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    max_prompt_length: int = 48,
) -> list[str]:
    """``n_samples`` decoded completions of ``model`` to ``task``'s prompts, cycled.

    The batches of :func:`task_text_batches`, joined. Every sampling driver of the bridge draws
    through here, so the same seed gives the same texts wherever they are classified.

    References
    ----------
    Munos et al., arXiv:2312.00886v4 (lifted preference games: completions of the task's prompts).
    """
    texts: list[str] = []
    for _, batch in task_text_batches(
        model, tokenizer, task, n_samples=n_samples, generator=generator, batch_size=batch_size,
        max_new_tokens=max_new_tokens, temperature=temperature,
        max_prompt_length=max_prompt_length,
    ):  # fmt: skip
        texts.extend(batch)
    return texts


@torch.no_grad()
def estimate_class_distribution(
    model,
    tokenizer,
    task: LiftedTask,
    judge: LiftedGameJudge,
    *,
    n_samples: int,
    generator: torch.Generator,
    batch_size: int = 64,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    level: float = 0.95,
    max_prompt_length: int = 48,
) -> ClassEstimate:
    """Sample ``n_samples`` completions from ``model`` and estimate their class distribution.

    Prompt ``i`` is ``task.prompt_templates[i % len]`` (as the trainer's evaluation); completions
    come from ``sampling.sample`` in batches of ``batch_size`` with one generator, are decoded
    without special tokens and classified by ``judge.classify`` ("other" last).

    Parameters
    ----------
    model : causal LM
    tokenizer : GPT-2 tokenizer
    task : LiftedTask
    judge : LiftedGameJudge
    n_samples, batch_size, max_new_tokens : int >= 1
    generator : torch.Generator
        The only randomness; keep it on the CPU. Completions are sampled on the model's device
        (``sampling.sample`` moves the prompts there; the CUDA path is written but was not run on
        a GPU here); the returned estimate is on the CPU.
    temperature : float > 0
    level : float in (0, 1)
        Level of the per-class Wilson intervals.
    max_prompt_length : int
        Longest prompt in tokens.

    Returns
    -------
    ClassEstimate
        ``probs`` (K+1,), ``lower``/``upper`` (K+1,), ``counts``, ``n = n_samples``.

    References
    ----------
    Wilson, JASA 22 (1927) 209-212; Munos et al., arXiv:2312.00886v4 (lifted preference games).
    """
    if not isinstance(task, LiftedTask):
        raise ValueError(f"task must be a LiftedTask, got {type(task).__name__}")
    if not isinstance(judge, LiftedGameJudge):
        raise ValueError(f"judge must be a LiftedGameJudge, got {type(judge).__name__}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    n_samples = as_int(n_samples, "n_samples", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    texts = sample_task_texts(
        model, tokenizer, task, n_samples=n_samples, generator=generator, batch_size=batch_size,
        max_new_tokens=max_new_tokens, temperature=temperature, max_prompt_length=max_prompt_length,
    )  # fmt: skip
    return class_estimate(
        judge.classify(texts), judge.P.shape[0] + 1, level=level, class_names=judge.class_names
    )


def total_variation(p: Any, q: Any) -> float:
    """``0.5 * sum |p - q|`` of two distributions of the same shape.

    References
    ----------
    Levin, Peres & Wilmer, "Markov Chains and Mixing Times", Prop. 4.2.

    Examples
    --------
    >>> total_variation([0.5, 0.5, 0.0], [0.25, 0.5, 0.25])
    0.25
    """
    p_t, q_t = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    if p_t.shape != q_t.shape:
        raise ValueError(
            f"p and q must have the same shape, got {tuple(p_t.shape)} and {tuple(q_t.shape)}"
        )
    return 0.5 * float((p_t - q_t).abs().sum())
