r"""The bridge: the exact toy predicts the class distribution GPT-2 converges to on a lifted game.

A lifted game (``corpus.LiftedTask`` + ``judges.LiftedGameJudge``) judges a completion only by its
class. For every KL-regularised objective of the suite the optimum then factorises,

.. math:: \pi(y) = \mu(y \mid c(y))\, \pi_{\mathrm{class}}(c(y)),

because the optimum is a Gibbs tilt :math:`\mu(y)\exp(f_{c(y)}/\tau)` of the reference by a payoff
``f`` that is constant on each class (``P @ nu``, ``P @ pi``, ``P @ pi_m`` or a BT reward, all
class-level when the judge is). Summing over the completions of a class, :math:`\pi_{\mathrm{class}}`
is the *same* solver applied to the class-level game with the reference's class distribution
:math:`\mu_{\mathrm{class}}`. So: measure :math:`\mu_{\mathrm{class}}` from the reference model,
solve the toy exactly, train GPT-2, compare.

**The "other" class.** Completions that name no class are a (K+1)-th action. The toy game is the
judge's bordered matrix ``judge.P_ext`` (``P`` plus a row/column where every class beats "other"
with probability ``other_loses``), and every distribution here has K+1 entries, "other" last. With
the judge's default ``other_loses = 1`` the Bradley-Terry fit behind offline DPO has no finite
maximiser (``rlhf_optimum`` raises); use ``other_loses < 1`` for DPO.

**Fixed points used** (``predict``):

============== ===================================================== ==========================
algorithm      prediction                                            exact toy trajectory
============== ===================================================== ==========================
``dpo``        ``rlhf_optimum(P_ext, mu_class, beta, nu=mu_class)``  ``ALGORITHMS["dpo"]``
``ipo``        ``ipo_optimum(P_ext, mu_class, tau, nu=mu_class)``    ``ALGORITHMS["ipo"]``
``online_ipo`` ``regularized_nash(P_ext, mu_class, tau)``            ``ALGORITHMS["online_ipo"]``
``nash_md``    ``regularized_nash(P_ext, mu_class, tau)``            ``ALGORITHMS["nash_md"]``
``nash_md_pg`` ``regularized_nash`` (mixture 0), else                ``ALGORITHMS["nash_md_pg"]``
               ``ipo_md_fixed_point(P_ext, mu_class, tau, mixture)``
``ipo_md``     ``ipo_md_fixed_point(P_ext, mu_class, tau, mixture)`` ``ALGORITHMS["ipo_md"]``
============== ===================================================== ==========================

Offline pairs are drawn from the reference, so ``nu = mu_class``. Nash-MD-PG against the mixture
``pi^(1-m) mu^m`` (the GPT-2 trainer's ``nash_md_pg``) is stationary where
``pi ~ mu exp(P pi_m / tau)``, the IPO-MD fixed point (``dynamics.registry.FIXED_POINTS``). The GPT-2
trainers mix *per token*, which is not the sequence-level geometric mixture; for ``mixture > 0``
the factorisation is then an approximation (exact for ``mixture = 0``).

**Sampling error.** Class frequencies are estimated from ``n`` independent completions; each class
gets a Wilson score interval at ``level`` (default 0.95, per class, not simultaneous).

References
----------
Munos et al., arXiv:2312.00886v4 (regularised preference games, Nash-MD, Nash-MD-PG);
Calandriello et al., arXiv:2403.08635v1 (online IPO, IPO-MD, Prop. 4.1 and 5.2); Azar et al.,
arXiv:2310.12036v2 (IPO, Thm. 2); Rafailov et al., arXiv:2305.18290v3 (DPO); Wilson, "Probable
inference, the law of succession, and statistical inference", JASA 22 (1927) 209-212.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validate import as_int, as_positive_float, as_unit_interval
from .corpus import FRUIT_TASK, OTHER, LiftedTask
from .data import tokenize_prompts
from .judges import LiftedGameJudge
from .sampling import sample

__all__ = [
    "BRIDGE_ALGORITHMS",
    "BridgeResult",
    "ClassEstimate",
    "bridge_figure",
    "class_estimate",
    "estimate_class_distribution",
    "lifted_judge",
    "predict",
    "preference_dataset",
    "run_bridge",
    "total_variation",
    "wilson_interval",
]

# name -> (hyperparameter the strength is read from, uses mixture)
BRIDGE_ALGORITHMS: dict[str, tuple[str, bool]] = {
    "dpo": ("beta", False),
    "ipo": ("tau", False),
    "online_ipo": ("tau", False),
    "nash_md": ("tau", False),
    "nash_md_pg": ("tau", True),
    "ipo_md": ("tau", True),
}
"""Algorithms ``predict`` knows: name -> (KL-strength keyword, whether ``mixture`` is used)."""

TRAINABLE = ("dpo", "ipo", "online_ipo", "nash_md_pg", "ipo_md")
"""Algorithms ``run_bridge`` can train on GPT-2 (``nash_md``'s closed-form step has no LM analogue)."""


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
        return {"probs": self.probs.tolist(), "lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "counts": self.counts.tolist(), "n": self.n, "level": self.level, "class_names": list(self.class_names)}


def class_estimate(class_ids: Any, n_classes: int, *, level: float = 0.95,
                   class_names: Sequence[str] = ()) -> ClassEstimate:
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
    return ClassEstimate(counts.to(torch.float64) / n, lower, upper, counts, n, float(level), tuple(class_names))


def lifted_judge(task: LiftedTask, P: Any, *, other_loses: float = 1.0) -> LiftedGameJudge:
    """The ``LiftedGameJudge`` of a task: its keywords plus their plurals (``word + "s"``).

    ``LiftedGameJudge`` matches whole words, while ``LiftedTask.classify`` matches substrings; the
    task's completions include plurals ("apples, without a doubt."), which the bare keyword would
    leave in "other". Adding ``word + "s"`` makes the judge agree with the task on every completion
    of the corpus (checked by the tests).

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 2 (a preference model over responses).
    """
    if not isinstance(task, LiftedTask):
        raise ValueError(f"task must be a LiftedTask, got {type(task).__name__}")  # noqa: TRY004
    classes = {}
    for c in task.class_names:
        words = list(task.keywords[c])
        classes[c] = tuple(dict.fromkeys(words + [w + "s" for w in words if not w.endswith("s")]))
    return LiftedGameJudge(P, classes, OTHER, other_loses=other_loses)


def _decode(tokenizer, samples) -> list[str]:
    rows = [r[m.bool()].tolist() for r, m in zip(samples.completion_ids, samples.completion_mask)]
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


@torch.no_grad()
def estimate_class_distribution(model, tokenizer, task: LiftedTask, judge: LiftedGameJudge, *, n_samples: int,
                                generator: torch.Generator, batch_size: int = 64, max_new_tokens: int = 16,
                                temperature: float = 1.0, level: float = 0.95, max_prompt_length: int = 48,
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
        The only randomness.
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
        raise ValueError(f"task must be a LiftedTask, got {type(task).__name__}")  # noqa: TRY004
    if not isinstance(judge, LiftedGameJudge):
        raise ValueError(f"judge must be a LiftedGameJudge, got {type(judge).__name__}")  # noqa: TRY004
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")  # noqa: TRY004
    n_samples = as_int(n_samples, "n_samples", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    ids: list[Tensor] = []
    templates = task.prompt_templates
    for start in range(0, n_samples, batch_size):
        prompts = [templates[i % len(templates)] for i in range(start, min(start + batch_size, n_samples))]
        batch = tokenize_prompts(tokenizer, prompts, max_length=max_prompt_length)
        out = sample(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=max_new_tokens,
                     generator=generator, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                     temperature=temperature)
        ids.append(judge.classify(_decode(tokenizer, out)))
    return class_estimate(torch.cat(ids), judge.P.shape[0] + 1, level=level, class_names=judge.class_names)


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
        raise ValueError(f"p and q must have the same shape, got {tuple(p_t.shape)} and {tuple(q_t.shape)}")
    return 0.5 * float((p_t - q_t).abs().sum())


# --------------------------------------------------------------------------- prediction
def _strength(algorithm: str, beta: Any, tau: Any) -> tuple[str, float]:
    key, _ = BRIDGE_ALGORITHMS[algorithm]
    other = "tau" if key == "beta" else "beta"
    if (beta if other == "beta" else tau) is not None:
        raise ValueError(f"algorithm {algorithm!r} takes {key}, not {other}")
    value = beta if key == "beta" else tau
    if value is None:
        raise ValueError(f"{key} is required for algorithm {algorithm!r}")
    return key, as_positive_float(value, key)


def predict(algorithm: str, P_ext: Any, mu_class: Any, *, beta: Any = None, tau: Any = None, mixture: Any = 0.0,
            toy_steps: int = 0, toy_lr: Any = None) -> tuple[Tensor, Tensor | None]:
    """The exact class distribution ``algorithm`` converges to, and optionally the toy's trajectory.

    Parameters
    ----------
    algorithm : str
        One of ``BRIDGE_ALGORITHMS`` (see the module docstring's table).
    P_ext : array-like, shape (K+1, K+1)
        The class-level game, "other" included (``judge.P_ext``).
    mu_class : array-like, shape (K+1,)
        The reference's class distribution (``ClassEstimate.probs``).
    beta : float > 0
        KL strength of ``dpo``.
    tau : float > 0
        KL strength of every other algorithm.
    mixture : float in [0, 1]
        Weight of ``mu`` in the geometric mixture (``ipo_md``, ``nash_md_pg``); must be 0 elsewhere.
    toy_steps : int >= 0
        When positive, also run ``prefopt_toy.ALGORITHMS[algorithm](P_ext, mu_class, steps=toy_steps,
        ...)`` with the same hyperparameters (and ``nu = mu_class`` offline) and return its policies.
    toy_lr : float, optional
        Step size of the toy run (its default when None; ignored by ``nash_md``).

    Returns
    -------
    prediction : Tensor, shape (K+1,), float64
    trajectory : Tensor, shape (toy_steps + 1, K+1), float64, or None when ``toy_steps == 0``

    Raises
    ------
    ValueError
        Unknown algorithm, missing/extra strength, ``mixture`` where it is not used, malformed
        inputs (from the solvers).

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO, Thm. 2);
    Munos et al., arXiv:2312.00886v4 (Nash-MD, Nash-MD-PG); Calandriello et al.,
    arXiv:2403.08635v1 (online IPO Prop. 4.1, IPO-MD Sec. 5).

    Examples
    --------
    >>> pred, _ = predict("online_ipo", [[0.5, 0.9], [0.1, 0.5]], [0.5, 0.5], tau=1.0)
    >>> bool(pred[0] > 0.5)
    True
    """
    import prefopt_toy as pt

    if algorithm not in BRIDGE_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(BRIDGE_ALGORITHMS)}, got {algorithm!r}")
    key, strength = _strength(algorithm, beta, tau)
    m = as_unit_interval(mixture, "mixture")
    uses_mixture = BRIDGE_ALGORITHMS[algorithm][1]
    if not uses_mixture and m != 0.0:
        raise ValueError(f"mixture must be 0 for algorithm {algorithm!r}, got {m}")
    toy_steps = as_int(toy_steps, "toy_steps", minimum=0)
    P_t = pt.check_preference_matrix(P_ext)
    mu_t = torch.as_tensor(mu_class, dtype=torch.float64)
    if mu_t.shape != (P_t.shape[0],):
        raise ValueError(f"mu_class must have shape ({P_t.shape[0]},) like P_ext's rows, got {tuple(mu_t.shape)}")

    if algorithm == "dpo":
        pred = pt.rlhf_optimum(P_t, mu_t, strength, nu=mu_t)
    elif algorithm == "ipo":
        pred = pt.ipo_optimum(P_t, mu_t, strength, nu=mu_t)
    elif algorithm in ("online_ipo", "nash_md") or m == 0.0:
        pred = pt.regularized_nash(P_t, mu_t, strength)
    else:  # ipo_md, nash_md_pg with a mixture
        pred = pt.ipo_md_fixed_point(P_t, mu_t, strength, m)

    traj = None
    if toy_steps:
        kwargs: dict[str, Any] = {"steps": toy_steps, key: strength}
        if uses_mixture:
            kwargs["mixture"] = m
        if algorithm in ("dpo", "ipo"):
            kwargs["nu"] = mu_t
        if toy_lr is not None and algorithm != "nash_md":
            kwargs["lr"] = toy_lr
        traj = pt.ALGORITHMS[algorithm](P_t, mu_t, **kwargs).policies
    return pred, traj


# --------------------------------------------------------------------------- offline data
@torch.no_grad()
def preference_dataset(model, tokenizer, task: LiftedTask, judge: LiftedGameJudge, *, n_pairs: int,
                       generator: torch.Generator, batch_size: int = 64, max_new_tokens: int = 16,
                       max_prompt_length: int = 48) -> list[dict[str, str]]:
    """Offline preference data from the reference: two completions per prompt, labelled by the judge.

    For pair ``i`` (prompt ``task.prompt_templates[i % len]``) two completions ``a``, ``b`` are
    sampled from ``model``; a label ``a wins`` is drawn as Bernoulli(``judge.probs(a, b)``) from
    ``generator`` (``judge.sample_labels``); the winner is ``chosen``. Empty completions (EOS first)
    are dropped. So the pairs come from ``mu x mu`` and the labels from ``P``: the population the
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


# --------------------------------------------------------------------------- the run
@dataclass
class BridgeResult:
    """What ``run_bridge`` measured and predicted; every distribution has K+1 entries, "other" last.

    References
    ----------
    See the module docstring.
    """

    algorithm: str
    class_names: tuple[str, ...]
    P_ext: Tensor
    """(K+1, K+1) the class-level game."""
    hyper: dict[str, float]
    """``beta`` or ``tau``, and ``mixture``."""
    mu_class: ClassEstimate
    """The reference's class distribution and its intervals."""
    prediction: Tensor
    """(K+1,) the exact fixed point for ``mu_class.probs``."""
    toy_trajectory: Tensor
    """(toy_steps + 1, K+1) the exact toy run from ``mu_class.probs``."""
    steps: list[int]
    """GPT-2 steps at which the run log holds a class distribution."""
    measured: Tensor
    """(len(steps), K+1) class distributions read from the run log (``n_eval`` samples each)."""
    final: ClassEstimate
    """The trained policy's class distribution on ``n_eval_samples`` fresh samples."""
    tv: float
    """Total variation between ``final.probs`` and ``prediction``."""
    log_path: str | None = None
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (numbers only)."""
        return {"algorithm": self.algorithm, "class_names": list(self.class_names), "hyper": dict(self.hyper),
                "mu_class": self.mu_class.as_dict(), "prediction": self.prediction.tolist(),
                "final": self.final.as_dict(), "tv": self.tv, "steps": self.steps[-1] if self.steps else 0,
                "wall_s": self.wall_s}


def run_bridge(algorithm: str, *, P: Any, size: str = "tiny", tau: Any = None, beta: Any = None,
               mixture: float = 0.0, steps: int = 100, seed: int = 0, run_dir: str | Path | None = None,
               n_eval_samples: int = 512, n_eval: int = 64, eval_every: int = 10, n_pairs: int = 512,
               lr: float = 1e-3, batch_size: int = 16, max_new_tokens: int = 16, toy_steps: int = 500,
               task: LiftedTask = FRUIT_TASK, other_loses: float = 1.0, level: float = 0.95,
               cache_dir: str | Path | None = None, model=None, tokenizer=None,
               show_progress: bool | None = False) -> BridgeResult:
    """Measure ``mu_class``, predict, train GPT-2 on the lifted game, and compare.

    1. Reference = ``default_model(size, cache_dir=, seed=)`` (or ``model``/``tokenizer``); the
       policy is a deep copy. The judge is ``lifted_judge(task, P, other_loses=)``.
    2. ``mu_class`` from ``n_eval_samples`` reference samples (``estimate_class_distribution``).
    3. ``predict(algorithm, judge.P_ext, mu_class.probs, ...)`` and the toy trajectory.
    4. Training with ``trainer.train`` (``reduction="sum"``, the theory's sequence log-probs; soft
       labels online); offline algorithms get ``preference_dataset`` with ``n_pairs`` reference
       pairs. The run log records ``class_distribution`` every ``eval_every`` steps on ``n_eval``
       samples: the measured trajectory.
    5. The trained policy's class distribution from ``n_eval_samples`` fresh samples, and its total
       variation to the prediction.

    Parameters
    ----------
    algorithm : str
        One of ``TRAINABLE``: ``dpo``, ``ipo``, ``online_ipo``, ``nash_md_pg``, ``ipo_md``.
    P : array-like, shape (K, K)
        The class game (``task``'s classes, in order).
    size : {"tiny", "small"}
    tau, beta, mixture : as in ``predict``.
    steps, seed, lr, batch_size, max_new_tokens : training (``TrainConfig``).
    run_dir : path, optional
        Run log and final checkpoint; None writes nothing (the measured trajectory then comes from
        the in-memory history, which holds the same records).
    n_eval_samples : int
        Samples for ``mu_class`` and for the final estimate.
    n_eval, eval_every : int
        Samples and period of the logged class distributions.
    n_pairs : int
        Offline dataset size.
    toy_steps : int
        Steps of the exact toy trajectory.
    task : LiftedTask
    other_loses : float in [0, 1]
        See ``LiftedGameJudge``; < 1 for DPO.
    level : float
        Wilson interval level.
    cache_dir : path, optional
        Where the default model is cached.
    model, tokenizer : optional
        A reference model to use instead of ``default_model`` (not modified).

    Returns
    -------
    BridgeResult

    References
    ----------
    Munos et al., arXiv:2312.00886v4; Calandriello et al., arXiv:2403.08635v1; Azar et al.,
    arXiv:2310.12036v2; Rafailov et al., arXiv:2305.18290v3.
    """
    from .models import default_model
    from .runlog import read_run_log
    from .trainer import TrainConfig, train

    if algorithm not in TRAINABLE:
        raise ValueError(f"algorithm must be one of {TRAINABLE}, got {algorithm!r}")
    if (model is None) != (tokenizer is None):
        raise ValueError("model and tokenizer must be given together")
    eval_every = as_int(eval_every, "eval_every", minimum=1)
    t0 = time.perf_counter()
    judge = lifted_judge(task, P, other_loses=other_loses)
    if model is None:
        ref, tokenizer = default_model(size, cache_dir=cache_dir, seed=seed)
    else:
        ref = model
    policy = copy.deepcopy(ref)  # trained in place; ``ref`` is only read (under no_grad)

    mu_est = estimate_class_distribution(ref, tokenizer, task, judge, n_samples=n_eval_samples,
                                         generator=torch.Generator().manual_seed(7919 * seed + 1),
                                         max_new_tokens=max_new_tokens, level=level)
    prediction, traj = predict(algorithm, judge.P_ext, mu_est.probs, beta=beta, tau=tau, mixture=mixture,
                               toy_steps=max(1, toy_steps))
    hyper = {("beta" if algorithm == "dpo" else "tau"): float(beta if algorithm == "dpo" else tau),
             "mixture": float(mixture)}

    dataset = None
    if algorithm in ("dpo", "ipo"):
        dataset = preference_dataset(ref, tokenizer, task, judge, n_pairs=n_pairs,
                                     generator=torch.Generator().manual_seed(7919 * seed + 2),
                                     max_new_tokens=max_new_tokens)
    cfg = TrainConfig(algorithm=algorithm, reduction="sum", beta=beta, tau=tau,
                      mixture=mixture if algorithm in ("ipo_md", "nash_md_pg") else 0.0, lr=lr, steps=steps,
                      batch_size=batch_size, max_new_tokens=max_new_tokens, max_length=48 + max_new_tokens,
                      seed=seed, run_dir=None if run_dir is None else str(run_dir), eval_every=eval_every,
                      n_eval=n_eval, show_progress=show_progress)
    summary = train(cfg, policy, ref, tokenizer, dataset=dataset, prompts=list(task.prompt_templates), judge=judge)
    records = read_run_log(summary["log"]) if summary["log"] is not None else summary["history"]
    rows = [(r["step"], r["class_distribution"]) for r in records if r.get("class_distribution") is not None]
    measured = torch.tensor([d for _, d in rows], dtype=torch.float64).reshape(len(rows), judge.P.shape[0] + 1)

    final = estimate_class_distribution(policy, tokenizer, task, judge, n_samples=n_eval_samples,
                                        generator=torch.Generator().manual_seed(7919 * seed + 3),
                                        max_new_tokens=max_new_tokens, level=level)
    return BridgeResult(algorithm=algorithm, class_names=judge.class_names, P_ext=judge.P_ext.clone(), hyper=hyper,
                        mu_class=mu_est, prediction=prediction, toy_trajectory=traj, steps=[s for s, _ in rows],
                        measured=measured, final=final, tv=total_variation(final.probs, prediction),
                        log_path=summary["log"], wall_s=time.perf_counter() - t0,
                        extra={"n_pairs": None if dataset is None else len(dataset), "policy": policy})


# --------------------------------------------------------------------------- figure
def _renormalised(dists: Tensor) -> Tensor:
    """The K = 3 classes of (…, 4) distributions renormalised to sum to 1 ("other" dropped)."""
    head = dists[..., :3]
    return head / head.sum(dim=-1, keepdim=True)


def bridge_figure(result: BridgeResult, *, figsize: tuple[float, float] = (9.0, 4.0)):
    """The toy trajectory and the GPT-2 class trajectory on one simplex, plus the "other" mass.

    Left: the simplex of the K = 3 classes, each distribution **renormalised over the three
    classes** (the "other" mass dropped): the exact toy trajectory (line, ``gid="toy"``), the GPT-2
    class distributions read from the run log (markers, ``gid="gpt2"``), the prediction (star,
    ``gid="prediction"``), ``mu_class`` (cross, ``gid="mu_class"``) and the final estimate
    (``gid="final"``). Right: the "other" mass against the step: GPT-2's logged values
    (``gid="gpt2_other"``), the prediction (horizontal line, ``gid="prediction_other"``) and the
    final estimate with its Wilson interval. The figure is a ``matplotlib.figure.Figure`` built
    without pyplot.

    Parameters
    ----------
    result : BridgeResult
        With K = 3 classes (4 entries with "other").

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Munos et al., arXiv:2312.00886v4 (the regularised game drawn on the simplex).
    """
    from matplotlib.figure import Figure

    from ..plotting import draw_simplex, plot_policy, plot_trajectory

    if not isinstance(result, BridgeResult):
        raise ValueError(f"result must be a BridgeResult, got {type(result).__name__}")  # noqa: TRY004
    if result.prediction.shape[0] != 4:
        raise ValueError(f"bridge_figure draws K = 3 classes plus other; result has {result.prediction.shape[0]} entries")
    fig = Figure(figsize=figsize, layout="constrained")
    ax, ax_other = fig.subplots(1, 2, width_ratios=[1.4, 1.0])
    draw_simplex(ax, result.class_names[:3], gridlines=4)
    hyper = ", ".join(f"{k}={v:g}" for k, v in result.hyper.items())
    plot_trajectory(ax, _renormalised(result.toy_trajectory), color="tab:blue", linewidth=1.5,
                    label="exact toy", gid="toy")
    if len(result.steps):
        plot_trajectory(ax, _renormalised(result.measured), color="tab:orange", marker="o", markersize=4,
                        linewidth=0.8, alpha=0.8, label="GPT-2 (run log)", gid="gpt2")
    plot_policy(ax, _renormalised(result.mu_class.probs), marker="X", markersize=9, color="tab:gray",
                label="mu_class", gid="mu_class")
    plot_policy(ax, _renormalised(result.prediction), marker="*", markersize=14, color="tab:green",
                markeredgecolor="white", label="prediction", gid="prediction", zorder=5)
    plot_policy(ax, _renormalised(result.final.probs), marker="s", markersize=7, color="tab:red",
                label=f"GPT-2 final (n={result.final.n})", gid="final", zorder=5)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(f"{result.algorithm} ({hyper}); TV = {result.tv:.3f}", fontsize=10)

    steps = np.asarray(result.steps, dtype=float)
    if len(result.steps):
        ax_other.plot(steps, result.measured[:, 3].numpy(), "o-", color="tab:orange", markersize=3,
                      label="GPT-2 (run log)", gid="gpt2_other")
    last = float(steps[-1]) if len(steps) else 1.0
    ax_other.axhline(float(result.prediction[3]), color="tab:green", linestyle="--", label="prediction",
                     gid="prediction_other")
    f = result.final
    ax_other.errorbar([last], [float(f.probs[3])],
                      yerr=[[float(f.probs[3] - f.lower[3])], [float(f.upper[3] - f.probs[3])]],
                      fmt="s", color="tab:red", capsize=3, label=f"final, {100 * f.level:g}% Wilson", gid="final_other")
    ax_other.set_xlabel("GPT-2 step")
    ax_other.set_ylabel(f"Pr({result.class_names[3]})")
    ax_other.set_ylim(bottom=0.0)
    ax_other.legend(fontsize=8, frameon=False)
    return fig
