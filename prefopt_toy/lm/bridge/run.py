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

**Where things live.** This module holds the LM side of a lifted game and the run:
``lifted_judge`` builds the ``LiftedGameJudge`` of a ``LiftedTask``; ``preference_dataset`` samples
two completions per prompt from the reference and labels them with that judge (the offline data of
``dpo`` and ``ipo``); ``run_bridge`` trains and measures, and returns a ``BridgeResult``.
``predict`` and ``BRIDGE_ALGORITHMS`` are in :mod:`prefopt_toy.lm.bridge.predict`, the class
estimates in :mod:`prefopt_toy.lm.bridge.class_estimate`; both are re-exported here.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int
from prefopt_toy.lm.data import model_device
from prefopt_toy.lm.judges import LiftedGameJudge
from prefopt_toy.lm.models.corpus import FRUIT_TASK, OTHER, LiftedTask

from .class_estimate import (
    ClassEstimate,
    class_estimate,
    estimate_class_distribution,
    task_text_batches,
    total_variation,
    wilson_interval,
)
from .predict import BRIDGE_ALGORITHMS, _strength, predict

__all__ = [
    "BRIDGE_ALGORITHMS",
    "BridgeResult",
    "ClassEstimate",
    "class_estimate",
    "estimate_class_distribution",
    "lifted_judge",
    "predict",
    "preference_dataset",
    "run_bridge",
    "total_variation",
    "wilson_interval",
]


# --------------------------------------------------------------------------- shared by the drivers
_SEED_OFFSETS = {"reference": 1, "pairs": 2, "final": 3, "trajectory": 4}


def bridge_generator(seed: int, purpose: str) -> torch.Generator:
    """The generator of one sampling purpose of a bridge run: ``7919 * seed + k``.

    ``purpose`` is ``"reference"`` (k = 1: the ``mu_class`` samples), ``"pairs"`` (2: the offline
    pairs), ``"final"`` (3: the trained policy's class samples) or ``"trajectory"`` (4: class
    samples during training, where a driver takes them itself). Every driver (DPO / IPO, the
    family, RLHF, the reference-free methods) draws from these, so runs with one seed measure the
    same ``mu_class`` and train on the same pairs.
    """
    if purpose not in _SEED_OFFSETS:
        raise ValueError(f"purpose must be one of {list(_SEED_OFFSETS)}, got {purpose!r}")
    return torch.Generator().manual_seed(7919 * seed + _SEED_OFFSETS[purpose])


def reference_pairs(
    ref: Any, tokenizer: Any, task: Any, judge: Any, *, n_pairs: int, seed: int, max_new_tokens: int
) -> list[dict[str, Any]]:
    """The bridge's offline pairs: ``preference_dataset`` from ``ref`` with the ``"pairs"`` generator."""
    return preference_dataset(
        ref,
        tokenizer,
        task,
        judge,
        n_pairs=n_pairs,
        generator=bridge_generator(seed, "pairs"),
        max_new_tokens=max_new_tokens,
    )


def logged_classes(records: Any, n_classes: int) -> tuple[list[int], Tensor]:
    """The steps and (len(steps), n_classes) class distributions a run log recorded."""
    rows = [
        (r["step"], r["class_distribution"])
        for r in records
        if r.get("class_distribution") is not None
    ]
    measured = torch.tensor([d for _, d in rows], dtype=torch.float64)
    return [step for step, _ in rows], measured.reshape(len(rows), n_classes)


def train_on_task(
    algorithm: str,
    policy: Any,
    ref: Any,
    tokenizer: Any,
    task: Any,
    judge: Any,
    dataset: Any,
    *,
    n_classes: int | None = None,
    **config: Any,
) -> tuple[dict[str, Any], list[int], Tensor]:
    """Train ``policy`` with the GPT-2 trainer on a lifted task; the summary and logged classes.

    ``TrainConfig(algorithm, max_length=48 + max_new_tokens, **config)`` (``config`` holds every
    other field: ``reduction``, ``beta``, ``lr``, ``steps``, ``max_new_tokens``, ...), trained
    on ``dataset`` (None for the online algorithms) with the task's prompts and the judge; the
    class distributions come from the run log when ``run_dir`` is set, else from the history.
    ``n_classes`` is the length of a logged class distribution (None: ``judge.P``'s size plus
    "other"; give it for a judge without a class game, such as ``ai_feedback``'s
    ``ClassTrackingJudge``).
    """
    from prefopt_toy.lm.train.runlog import read_run_log
    from prefopt_toy.lm.train.trainer import TrainConfig, train

    cfg = TrainConfig(algorithm=algorithm, max_length=48 + config["max_new_tokens"], **config)
    summary = train(
        cfg,
        policy,
        ref,
        tokenizer,
        dataset=dataset,
        prompts=list(task.prompt_templates),
        judge=judge,
    )
    records = read_run_log(summary["log"]) if summary["log"] is not None else summary["history"]
    if n_classes is None:
        n_classes = judge.P.shape[0] + 1
    steps, measured = logged_classes(records, n_classes)
    return summary, steps, measured


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
        raise ValueError(f"task must be a LiftedTask, got {type(task).__name__}")
    classes = {c: tuple(task.keywords[c]) for c in task.class_names}
    return LiftedGameJudge(P, classes, OTHER, other_loses=other_loses)


# --------------------------------------------------------------------------- offline data
@torch.no_grad()
def preference_dataset(
    model,
    tokenizer,
    task: LiftedTask,
    judge: LiftedGameJudge,
    *,
    n_pairs: int,
    generator: torch.Generator,
    batch_size: int = 64,
    max_new_tokens: int = 16,
    max_prompt_length: int = 48,
) -> list[dict[str, str]]:
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
    out: list[dict[str, str]] = []
    for prompts, texts in task_text_batches(
        model, tokenizer, task, n_samples=n_pairs, generator=generator, batch_size=batch_size,
        max_new_tokens=max_new_tokens, max_prompt_length=max_prompt_length, repeat=2,
    ):  # fmt: skip
        B = len(prompts)
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


TRAINABLE = ("dpo", "ipo", "online_ipo", "nash_md_pg", "ipo_md")
"""Algorithms ``run_bridge`` can train on GPT-2 (``nash_md``'s closed-form step has no LM analogue)."""


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
    train_steps: int | None = None
    """Optimizer steps taken (None: the last logged step, ``steps[-1]``)."""

    @property
    def n_steps(self) -> int:
        """Optimizer steps taken (``train_steps``, else the last logged step)."""
        if self.train_steps is not None:
            return self.train_steps
        return self.steps[-1] if self.steps else 0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (numbers only)."""
        return {
            "algorithm": self.algorithm,
            "class_names": list(self.class_names),
            "hyper": dict(self.hyper),
            "mu_class": self.mu_class.as_dict(),
            "prediction": self.prediction.tolist(),
            "final": self.final.as_dict(),
            "tv": self.tv,
            "steps": self.n_steps,
            "wall_s": self.wall_s,
        }


def run_bridge(
    algorithm: str,
    *,
    P: Any,
    size: str = "tiny",
    tau: Any = None,
    beta: Any = None,
    mixture: float = 0.0,
    steps: int = 100,
    seed: int = 0,
    run_dir: str | Path | None = None,
    n_eval_samples: int = 512,
    n_eval: int = 64,
    eval_every: int = 10,
    n_pairs: int = 512,
    lr: float = 5e-5,
    lr_schedule: str = "linear",
    batch_size: int = 16,
    max_new_tokens: int = 16,
    toy_steps: int = 500,
    task: LiftedTask = FRUIT_TASK,
    other_loses: float = 1.0,
    level: float = 0.95,
    cache_dir: str | Path | None = None,
    model=None,
    tokenizer=None,
    show_progress: bool | None = False,
    device: str | torch.device | None = None,
    mu_class: ClassEstimate | None = None,
) -> BridgeResult:
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
    steps, seed, lr, lr_schedule, batch_size, max_new_tokens : training (``TrainConfig``). The
        defaults (AdamW at 5e-5 decaying linearly to 0) are the converged runs of the README on the
        small model; rates of 1e-3 and above overshoot there (losses in the hundreds).
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
    device : str or torch.device, optional
        Where the models run. None: ``model``'s own device, or the CPU for the default model. A
        value moves the default model there; with ``model`` given it must be ``model``'s device
        (move the model yourself: it is not modified here), else ``ValueError``. Generators stay
        on the CPU and the result is on the CPU whatever the device. The CUDA path is written
        but was not run on a GPU here.
    mu_class : ClassEstimate, optional
        The reference's class estimate from an earlier ``run_bridge`` on the same reference, task,
        ``n_eval_samples``, ``max_new_tokens`` and ``seed`` (it does not depend on the game or the
        algorithm), reused instead of sampled again. None: estimated here (step 2).

    Returns
    -------
    BridgeResult

    References
    ----------
    Munos et al., arXiv:2312.00886v4; Calandriello et al., arXiv:2403.08635v1; Azar et al.,
    arXiv:2310.12036v2; Rafailov et al., arXiv:2305.18290v3.
    """
    from prefopt_toy.lm.models.gpt2 import default_model

    if algorithm not in TRAINABLE:
        raise ValueError(f"algorithm must be one of {TRAINABLE}, got {algorithm!r}")
    if (model is None) != (tokenizer is None):
        raise ValueError("model and tokenizer must be given together")
    if device is not None:
        device = torch.device(device)
        if device.type != "cpu" and device.index is None:  # "cuda" -> "cuda:0" (the current one)
            device = torch.empty(0, device=device).device
        if model is not None and model_device(model) != device:
            raise ValueError(
                f"device={str(device)!r} but the given model is on {model_device(model)}: move the model "
                f"there first (run_bridge does not modify it) or pass device=None"
            )
    eval_every = as_int(eval_every, "eval_every", minimum=1)
    t0 = time.perf_counter()
    judge = lifted_judge(task, P, other_loses=other_loses)
    if model is None:
        ref, tokenizer = default_model(size, cache_dir=cache_dir, seed=seed)
        if device is not None:
            ref = ref.to(device)
    else:
        ref = model
    policy = copy.deepcopy(ref)  # trained in place; ``ref`` is only read (under no_grad)

    mu_est = reference_classes(
        mu_class, ref, tokenizer, task, judge,
        n_samples=n_eval_samples, seed=seed, max_new_tokens=max_new_tokens, level=level,
    )  # fmt: skip
    prediction, traj = predict(
        algorithm,
        judge.P_ext,
        mu_est.probs,
        beta=beta,
        tau=tau,
        mixture=mixture,
        toy_steps=max(1, toy_steps),
    )
    key, strength = _strength(algorithm, beta, tau)
    hyper = {key: strength, "mixture": float(mixture)}

    dataset = None
    if algorithm in ("dpo", "ipo"):
        dataset = reference_pairs(
            ref, tokenizer, task, judge, n_pairs=n_pairs, seed=seed, max_new_tokens=max_new_tokens
        )
    summary, logged_steps, measured = train_on_task(
        algorithm, policy, ref, tokenizer, task, judge, dataset,
        reduction="sum", beta=beta, tau=tau,
        mixture=mixture if algorithm in ("ipo_md", "nash_md_pg") else 0.0,
        lr=lr, steps=steps, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed,
        lr_schedule=lr_schedule, run_dir=None if run_dir is None else str(run_dir),
        eval_every=eval_every, n_eval=n_eval, show_progress=show_progress,
    )  # fmt: skip

    final = estimate_class_distribution(
        policy,
        tokenizer,
        task,
        judge,
        n_samples=n_eval_samples,
        generator=bridge_generator(seed, "final"),
        max_new_tokens=max_new_tokens,
        level=level,
    )
    return BridgeResult(
        algorithm=algorithm,
        class_names=judge.class_names,
        P_ext=judge.P_ext.clone(),
        hyper=hyper,
        mu_class=mu_est,
        prediction=prediction,
        toy_trajectory=traj,
        steps=logged_steps,
        measured=measured,
        final=final,
        tv=total_variation(final.probs, prediction),
        log_path=summary["log"],
        wall_s=time.perf_counter() - t0,
        train_steps=summary["steps"],
        extra={"n_pairs": None if dataset is None else len(dataset), "policy": policy},
    )


def reference_classes(
    mu_class: Any,
    ref: Any,
    tokenizer: Any,
    task: Any,
    judge: Any,
    *,
    n_samples: int,
    seed: int,
    max_new_tokens: int,
    level: float,
) -> ClassEstimate:
    """``mu_class`` as given (checked to be over the judge's classes), or measured from ``ref``.

    The measurement samples ``n_samples`` completions of the reference with the bridge's seed
    ``bridge_generator(seed, "reference")``, so every bridge run with the same seed measures the same ``mu_class``.
    """
    if mu_class is None:
        return estimate_class_distribution(
            ref,
            tokenizer,
            task,
            judge,
            n_samples=n_samples,
            generator=bridge_generator(seed, "reference"),
            max_new_tokens=max_new_tokens,
            level=level,
        )
    if not isinstance(mu_class, ClassEstimate) or mu_class.class_names != judge.class_names:
        raise ValueError(f"mu_class must be a ClassEstimate over the classes {judge.class_names}")
    return mu_class
