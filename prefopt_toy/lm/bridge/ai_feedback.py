r"""AI feedback on the lifted fruit task: a language-model judge, its class-level game, the toy's prediction.

A :class:`~prefopt_toy.lm.model_judge.LanguageModelJudge` looks at the words, not only at the class,
so it is no lifted game. The bridge still applies approximately: the trainer sees, for a pair of
completions of classes :math:`i` and :math:`j`, the judge's probability averaged over the
completions of the two classes,

.. math:: R_{ij} = \mathbb E_{y \sim \mu(\cdot \mid i),\, y' \sim \mu(\cdot \mid j)}\, J(y, y'),

the **raw class matrix** (:func:`measure_judge_game`: the mean of J over sampled pairs, class
:math:`i` in position 1), and its **symmetrisation**
:math:`P = \tfrac12(R + 1 - R^\top)`, a preference matrix (``games.judges.symmetrize_judge``). The exact toy then
predicts the class distribution: online IPO's fixed point, the regularised Nash equilibrium
``regularized_nash(P, mu_class, tau)`` (Calandriello et al., arXiv:2403.08635v1, Prop. 4.1), and
online DPO's stationary point, the end of the exact ``online_dpo`` run (no closed form; ibid.,
App. F) (:func:`predict_ai_feedback`). Two approximations, both stated with the numbers: the
within-class distribution of the policy moves during training (``R`` is measured under
:math:`\mu`), and the judge's text-level preferences are averaged into class-level ones.

**The raw judge (order="first").** With pairs drawn i.i.d. from the policy, the online loss with
soft labels :math:`w = J(y, y')`,
:math:`\mathbb E_{y, y'}[J(y,y')\,\ell(h(y,y')) + (1 - J(y,y'))\,\ell(-h(y,y'))]`, equals the same
expectation with :math:`w = P(y, y') = \tfrac12(J(y,y') + 1 - J(y',y))` (exchange :math:`y`
and :math:`y'` in the second term, using :math:`h(y', y) = -h(y, y')`). So **in expectation the
online algorithm sees the symmetrised game**, and the raw judge leads to the same fixed point as
the averaged one; what differs is the variance of the labels (and, with hard labels, the game
itself, since :math:`1[J > 1/2]` does not average like :math:`J`). :func:`predict_ai_feedback`
gives one prediction for both orders for this reason.

**Self-rewarding** (:func:`self_rewarding`): rounds in which the judge is a frozen snapshot of the
current policy, ``LanguageModelJudge(copy.deepcopy(policy))``, and each round is a short online DPO
run through :func:`prefopt_toy.lm.train.trainer.train` (Yuan et al., arXiv:2401.10020v3, with a
pairwise judge in place of their 5-point score and pairs labelled online as in OAIF, Guo et al.,
arXiv:2402.04792v2). Each round reports the policy's class distribution at its start and end, the
snapshot judge's measured position bias and class matrix, and the toy's prediction for that round.

References
----------
Lee et al., arXiv:2309.00267v3, Sec. 2.1 (RLAIF, soft "1"/"2" labels, both orders averaged);
Zheng et al., arXiv:2306.05685v4, Sec. 3.3 (position bias); Yuan et al., arXiv:2401.10020v3
(self-rewarding LMs); Guo et al., arXiv:2402.04792v2 (OAIF); Calandriello et al.,
arXiv:2403.08635v1 (online IPO, Prop. 4.1; online DPO, App. F); Munos et al., arXiv:2312.00886v4
(regularised preference games).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float
from prefopt_toy.games.judges import symmetrize_judge
from prefopt_toy.lm.judges import Judge, LiftedGameJudge
from prefopt_toy.lm.model_judge import LanguageModelJudge, PositionBias
from prefopt_toy.lm.models.corpus import FRUIT_TASK, LiftedTask

from .class_estimate import ClassEstimate, class_estimate, sample_task_texts, total_variation
from .run import bridge_generator, lifted_judge, train_on_task

__all__ = [
    "AI_FEEDBACK_ALGORITHMS",
    "AIFeedbackResult",
    "ClassTrackingJudge",
    "JudgeGame",
    "SelfRewardingRound",
    "measure_judge_game",
    "predict_ai_feedback",
    "run_ai_feedback",
    "sample_completions",
    "self_rewarding",
]

AI_FEEDBACK_ALGORITHMS: dict[str, str] = {"online_ipo": "tau", "online_dpo": "beta"}
"""The online algorithms trained with an LM judge here, each with its KL-strength keyword."""


# --------------------------------------------------------------------------- the class game
@dataclass(frozen=True)
class JudgeGame:
    """A judge's class-level game measured on sampled completions (:func:`measure_judge_game`).

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1; Munos et al., arXiv:2312.00886v4 (preference games).
    """

    class_names: tuple[str, ...]
    """K class names then "other"."""
    raw: Tensor
    """(C, C) float64, mean raw J with class i in position 1 and class j in position 2."""
    P: Tensor
    """(C, C) float64, ``symmetrize_judge(raw)``: the game the online algorithms see."""
    counts: Tensor
    """(C,) int64, completions of each class used (a class with none keeps 1/2 in its row)."""
    position_bias: PositionBias
    """J(a,b) + J(b,a) - 1 over every unordered pair of the completions used."""
    token_mass: float
    """Mean next-token probability of the two answer tokens (how much the judge "answers")."""

    def as_dict(self) -> dict[str, Any]:
        """Plain Python values (for JSON)."""
        return {
            "class_names": list(self.class_names),
            "raw": self.raw.tolist(),
            "P": self.P.tolist(),
            "counts": self.counts.tolist(),
            "position_bias": self.position_bias.as_dict(),
            "token_mass": self.token_mass,
        }


def measure_judge_game(
    judge: LanguageModelJudge,
    texts: Any,
    class_ids: Any,
    n_classes: int,
    *,
    per_class: int = 8,
    class_names: Any = (),
) -> JudgeGame:
    r"""The judge's raw and symmetrised class matrices from sampled completions of known classes.

    The first ``per_class`` completions of each class (in the order given) are kept; the raw J of
    every ordered pair of two different kept completions is computed in **one** judge call, and
    :math:`R_{ij}` is its mean over the pairs with class ``i`` in position 1 and class ``j`` in
    position 2 (for :math:`i = j`, the pairs of two different completions). A class with no
    completion keeps 1/2 in its row and column (its policy mass is 0 in the predictions).

    Parameters
    ----------
    judge : LanguageModelJudge
        Its raw J is used, whatever its ``order``.
    texts : sequence of str
        Completions (e.g. reference samples).
    class_ids : array-like of int, shape (n,)
        The class of each text, in ``[0, n_classes)`` ("other" last).
    n_classes : int >= 2
    per_class : int >= 1
        Completions kept per class: :math:`(\sum_c m_c)^2 - \sum_c m_c` judge texts.
    class_names : sequence of str, optional

    Returns
    -------
    JudgeGame

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1; Zheng et al., arXiv:2306.05685v4, Sec. 3.3.
    """
    if not isinstance(judge, LanguageModelJudge):
        raise ValueError(f"judge must be a LanguageModelJudge, got {type(judge).__name__}")
    n_classes = as_int(n_classes, "n_classes", minimum=2)
    per_class = as_int(per_class, "per_class", minimum=1)
    texts = list(texts) if not isinstance(texts, str) else texts
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of str")
    ids = torch.as_tensor(class_ids)
    if ids.ndim != 1 or ids.numel() != len(texts):
        raise ValueError(
            f"class_ids must hold one class per text ({len(texts)}), got {tuple(ids.shape)}"
        )
    if ids.is_floating_point() or bool(((ids < 0) | (ids >= n_classes)).any()):
        raise ValueError(f"class_ids must be integers in [0, {n_classes - 1}]")
    kept: list[int] = []
    for c in range(n_classes):
        kept.extend((ids == c).nonzero().flatten()[:per_class].tolist())
    kept_classes = ids[kept].to(torch.int64)
    counts = torch.bincount(kept_classes, minlength=n_classes)
    M = len(kept)
    if M < 2:
        raise ValueError("texts must hold at least two completions to compare")
    s_idx, t_idx = zip(*[(s, t) for s in range(M) for t in range(M) if s != t])
    a = [texts[kept[s]] for s in s_idx]
    b = [texts[kept[t]] for t in t_idx]
    J = judge.raw_probs(a, b)  # (M (M - 1),) one call
    mass = judge.token_mass(a, b)
    Jm = torch.full((M, M), 0.5, dtype=torch.float64)
    Jm[torch.tensor(s_idx), torch.tensor(t_idx)] = J
    raw = torch.full((n_classes, n_classes), 0.5, dtype=torch.float64)
    off = ~torch.eye(M, dtype=torch.bool)
    for i in range(n_classes):
        for j in range(n_classes):
            sel = (kept_classes[:, None] == i) & (kept_classes[None, :] == j) & off
            if bool(sel.any()):
                raw[i, j] = Jm[sel].mean()
    upper = torch.triu_indices(M, M, offset=1)
    j_ab, j_ba = Jm[upper[0], upper[1]], Jm[upper[1], upper[0]]
    bias = j_ab + j_ba - 1.0
    pb = PositionBias(
        bias=bias,
        j_ab=j_ab,
        j_ba=j_ba,
        mean=float(bias.mean()),
        mean_abs=float(bias.abs().mean()),
        consistent=float(
            (((j_ab > 0.5) & (j_ba < 0.5)) | ((j_ab < 0.5) & (j_ba > 0.5))).double().mean()
        ),
        first_both=float(((j_ab > 0.5) & (j_ba > 0.5)).double().mean()),
        second_both=float(((j_ab < 0.5) & (j_ba < 0.5)).double().mean()),
    )
    return JudgeGame(
        class_names=tuple(class_names),
        raw=raw,
        P=symmetrize_judge(raw),
        counts=counts,
        position_bias=pb,
        token_mass=float(mass.mean()),
    )


def predict_ai_feedback(
    algorithm: str,
    P: Any,
    mu_class: Any,
    *,
    tau: Any = None,
    beta: Any = None,
    toy_steps: int = 20000,
) -> tuple[Tensor, float]:
    r"""The exact toy's end point for ``algorithm`` on the symmetrised class game.

    ``online_ipo``: ``regularized_nash(P, mu_class, tau)`` (Calandriello et al., arXiv:2403.08635v1,
    Prop. 4.1), returned with residual 0. ``online_dpo``: the last policy of the exact
    ``ALGORITHMS["online_dpo"](P, mu_class, beta=beta, steps=toy_steps)`` (its stationary point has no
    closed form, ibid. App. F), returned with the max-norm change of its last step (how far from
    stationary the run stopped). The same prediction holds for the raw judge with soft labels (the
    module docstring: in expectation the online loss sees the symmetrised game). Classes with
    ``mu_class = 0`` get 0 and the game is solved on the others (both fixed points are tilts of
    the reference).

    Returns
    -------
    prediction : Tensor, shape (C,), float64
    residual : float

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Prop. 4.1 and App. F.

    Examples
    --------
    >>> pred, res = predict_ai_feedback("online_ipo", [[0.5, 0.7], [0.3, 0.5]], [0.5, 0.5], tau=1.0)
    >>> bool(pred[0] > 0.5), res
    (True, 0.0)
    """
    import prefopt_toy as pt

    if algorithm not in AI_FEEDBACK_ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {list(AI_FEEDBACK_ALGORITHMS)}, got {algorithm!r}"
        )
    key = AI_FEEDBACK_ALGORITHMS[algorithm]
    other = "beta" if key == "tau" else "tau"
    if (tau if other == "tau" else beta) is not None:
        raise ValueError(f"algorithm {algorithm!r} takes {key}, not {other}")
    value = as_positive_float(tau if key == "tau" else beta, key)
    toy_steps = as_int(toy_steps, "toy_steps", minimum=1)
    P_t = pt.check_preference_matrix(P)
    mu_t = torch.as_tensor(mu_class, dtype=torch.float64)
    if mu_t.shape != (P_t.shape[0],):
        raise ValueError(f"mu_class must have shape ({P_t.shape[0]},), got {tuple(mu_t.shape)}")
    if not bool(torch.isfinite(mu_t).all()) or bool((mu_t < 0).any()) or not float(mu_t.sum()) > 0:
        raise ValueError("mu_class must be a probability vector (non-negative, not all 0)")
    # A class the reference never produced is in no pair and keeps probability 0 (both fixed
    # points are tilts mu exp(...) of the reference); the game is solved on the support.
    support = (mu_t > 0).nonzero().flatten()
    out = torch.zeros_like(mu_t)
    if support.numel() == 1:
        out[support] = 1.0
        return out, 0.0
    P_s, mu_s = P_t[support][:, support], mu_t[support] / mu_t[support].sum()
    if algorithm == "online_ipo":
        out[support] = pt.regularized_nash(P_s, mu_s, value)
        return out, 0.0
    traj = pt.ALGORITHMS["online_dpo"](P_s, mu_s, beta=value, steps=toy_steps).policies
    out[support] = traj[-1]
    return out, float((traj[-1] - traj[-2]).abs().max())


# --------------------------------------------------------------------------- GPT-2 helpers
class ClassTrackingJudge(Judge):
    """A judge that labels with one judge and classifies with a lifted one (for the trainer's log).

    ``probs`` is ``judge.probs``; ``class_distribution`` is ``lifted.class_distribution``, so the
    trainer's evaluation logs the policy's class distribution while the LM judge labels the pairs.

    References
    ----------
    Munos et al., arXiv:2312.00886v4 (lifted preference games).
    """

    def __init__(self, judge: Judge, lifted: LiftedGameJudge) -> None:
        if not isinstance(judge, Judge):
            raise ValueError(f"judge must be a Judge, got {type(judge).__name__}")
        if not isinstance(lifted, LiftedGameJudge):
            raise ValueError(f"lifted must be a LiftedGameJudge, got {type(lifted).__name__}")
        self.judge, self.lifted = judge, lifted

    def probs(self, list_a, list_b) -> Tensor:
        """``judge.probs(list_a, list_b)``."""
        return self.judge.probs(list_a, list_b)

    def class_distribution(self, texts) -> Tensor:
        """``lifted.class_distribution(texts)``, "other" last."""
        return self.lifted.class_distribution(texts)


@torch.no_grad()
def sample_completions(
    model,
    tokenizer,
    task: LiftedTask,
    lifted: LiftedGameJudge,
    *,
    n: int,
    generator: torch.Generator,
    max_new_tokens: int = 8,
    batch_size: int = 64,
) -> tuple[list[str], Tensor, ClassEstimate]:
    """``n`` completions of ``task``'s prompts (cycled) from ``model``, their classes and estimate.

    As :func:`~prefopt_toy.lm.bridge.class_estimate.estimate_class_distribution`, but the texts
    are returned too (the pool a judge game is measured on).

    References
    ----------
    Wilson, JASA 22 (1927) 209-212 (the intervals of the estimate).
    """
    n = as_int(n, "n", minimum=1)
    texts = sample_task_texts(
        model, tokenizer, task, n_samples=n, generator=generator, batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )  # fmt: skip
    ids = lifted.classify(texts)
    est = class_estimate(ids, lifted.P.shape[0] + 1, class_names=lifted.class_names)
    return texts, ids, est


def _train_online(
    algorithm: str,
    policy,
    ref,
    tokenizer,
    task: LiftedTask,
    judge: Judge,
    lifted: LiftedGameJudge,
    **config: Any,
) -> tuple[list[int], Tensor]:
    """``run.train_on_task`` online with ``judge``'s labels, ``lifted``'s classes logged."""
    _, steps, measured = train_on_task(
        algorithm, policy, ref, tokenizer, task, ClassTrackingJudge(judge, lifted), None,
        n_classes=len(lifted.class_names), **config,
    )  # fmt: skip
    return steps, measured


# --------------------------------------------------------------------------- online IPO / DPO
@dataclass
class AIFeedbackResult:
    """One GPT-2 run with an LM judge against the exact toy's prediction (:func:`run_ai_feedback`).

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1; Lee et al., arXiv:2309.00267v3.
    """

    algorithm: str
    order: str
    strength: dict[str, float]
    game: JudgeGame
    mu_class: ClassEstimate
    prediction: Tensor
    residual: float
    final: ClassEstimate
    tv: float
    """TV(final, prediction)."""
    tv_start: float
    """TV(mu_class, prediction): where training starts."""
    steps: list[int] = field(default_factory=list)
    measured: Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.float64))
    """(len(steps), K+1) the class distributions the run logged (``n_eval`` samples each)."""
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "algorithm": self.algorithm,
            "order": self.order,
            "strength": dict(self.strength),
            "game": self.game.as_dict(),
            "mu_class": self.mu_class.as_dict(),
            "prediction": self.prediction.tolist(),
            "residual": self.residual,
            "final": self.final.as_dict(),
            "tv": self.tv,
            "tv_start": self.tv_start,
            "steps": self.steps,
            "measured": self.measured.tolist(),
            "wall_s": self.wall_s,
        }


def run_ai_feedback(
    algorithm: str,
    policy,
    ref,
    tokenizer,
    judge: LanguageModelJudge,
    *,
    task: LiftedTask = FRUIT_TASK,
    tau: Any = None,
    beta: Any = None,
    steps: int = 40,
    lr: float = 5e-5,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    seed: int = 0,
    n_samples: int = 256,
    per_class: int = 8,
    eval_every: int = 10,
    n_eval: int = 32,
    game: JudgeGame | None = None,
    mu_class: ClassEstimate | None = None,
    toy_steps: int = 20000,
) -> AIFeedbackResult:
    r"""Measure the LM judge's class game, predict with the toy, train ``policy`` online, compare.

    1. ``n_samples`` reference completions (``bridge_generator(seed, "reference")``): ``mu_class``
       and the pool on which :func:`measure_judge_game` measures ``R`` and ``P`` (unless ``game``
       and ``mu_class`` are given, e.g. from an earlier run on the same reference and judge).
    2. :func:`predict_ai_feedback` on ``P`` and ``mu_class``.
    3. ``train`` with ``algorithm`` (soft labels from ``judge``, whose ``order`` is used as is),
       ``reduction="sum"``, a linear learning-rate decay; the class distribution is logged every
       ``eval_every`` steps on ``n_eval`` samples.
    4. ``n_samples`` completions of the trained policy (``"final"`` generator): TV to the prediction.

    ``policy`` is trained in place; ``ref`` and the judge's model are only read.

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1 (online IPO / DPO with a preference judge); Lee et al.,
    arXiv:2309.00267v3; Guo et al., arXiv:2402.04792v2 (online AI feedback).
    """
    if algorithm not in AI_FEEDBACK_ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {list(AI_FEEDBACK_ALGORITHMS)}, got {algorithm!r}"
        )
    if not isinstance(judge, LanguageModelJudge):
        raise ValueError(f"judge must be a LanguageModelJudge, got {type(judge).__name__}")
    if (game is None) != (mu_class is None):
        raise ValueError("game and mu_class must be given together")
    t0 = time.perf_counter()
    lifted = lifted_judge(task, [[0.5] * len(task.class_names)] * len(task.class_names))
    if game is None:
        texts, ids, mu_class = sample_completions(
            ref, tokenizer, task, lifted, n=n_samples,
            generator=bridge_generator(seed, "reference"), max_new_tokens=max_new_tokens,
        )  # fmt: skip
        game = measure_judge_game(
            judge, texts, ids, len(lifted.class_names), per_class=per_class,
            class_names=lifted.class_names,
        )  # fmt: skip
    prediction, residual = predict_ai_feedback(
        algorithm, game.P, mu_class.probs, tau=tau, beta=beta, toy_steps=toy_steps
    )
    key = AI_FEEDBACK_ALGORITHMS[algorithm]
    strength = float(tau if key == "tau" else beta)
    steps_logged, measured = _train_online(
        algorithm, policy, ref, tokenizer, task, judge, lifted,
        reduction="sum", **{key: strength}, lr=lr, lr_schedule="linear", steps=steps,
        batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed,
        eval_every=eval_every, n_eval=n_eval, show_progress=False,
    )  # fmt: skip
    _, _, final = sample_completions(
        policy, tokenizer, task, lifted, n=n_samples,
        generator=bridge_generator(seed, "final"), max_new_tokens=max_new_tokens,
    )  # fmt: skip
    return AIFeedbackResult(
        algorithm=algorithm,
        order=judge.order,
        strength={key: strength},
        game=game,
        mu_class=mu_class,
        prediction=prediction,
        residual=residual,
        final=final,
        tv=total_variation(final.probs, prediction),
        tv_start=total_variation(mu_class.probs, prediction),
        steps=steps_logged,
        measured=measured,
        wall_s=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- self-rewarding
@dataclass
class SelfRewardingRound:
    """One round of :func:`self_rewarding`.

    References
    ----------
    Yuan et al., arXiv:2401.10020v3, Sec. 2 (iterations M_t -> M_{t+1}).
    """

    round: int
    judge: LanguageModelJudge
    """The round's judge; its model is the frozen snapshot of the policy at the round's start."""
    start: ClassEstimate
    """The policy's class distribution at the round's start (the snapshot's)."""
    game: JudgeGame
    """The snapshot judge's class game, measured on the snapshot's own completions."""
    prediction: Tensor
    """The toy's online-DPO end point on ``game.P`` from the round's reference classes."""
    residual: float
    end: ClassEstimate
    """The policy's class distribution at the round's end."""
    tv: float
    """TV(end, prediction)."""
    tv_start: float
    """TV(start, prediction)."""
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the judge's model left out)."""
        return {
            "round": self.round,
            "start": self.start.as_dict(),
            "game": self.game.as_dict(),
            "prediction": self.prediction.tolist(),
            "residual": self.residual,
            "end": self.end.as_dict(),
            "tv": self.tv,
            "tv_start": self.tv_start,
            "wall_s": self.wall_s,
        }


def _frozen_copy(model):
    snapshot = copy.deepcopy(model).eval()
    for p in snapshot.parameters():
        p.requires_grad_(False)
    return snapshot


def self_rewarding(
    policy,
    ref,
    tokenizer,
    *,
    rounds: int = 2,
    task: LiftedTask = FRUIT_TASK,
    beta: float = 0.1,
    steps: int = 20,
    lr: float = 5e-5,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    seed: int = 0,
    n_samples: int = 128,
    per_class: int = 6,
    reference: str = "previous",
    judge_kwargs: dict[str, Any] | None = None,
    toy_steps: int = 20000,
) -> list[SelfRewardingRound]:
    r"""Self-rewarding rounds: the policy's frozen snapshot judges, a short online DPO run trains.

    Round ``r`` (0-based):

    1. ``snapshot = copy.deepcopy(policy)`` in eval mode with ``requires_grad`` off, and the judge
       ``LanguageModelJudge(snapshot, tokenizer, **judge_kwargs)`` (round 0's judge is the starting
       policy).
    2. ``n_samples`` completions of the snapshot (``bridge_generator(seed + r, "reference")``): its
       class distribution and the pool for :func:`measure_judge_game` (position bias, ``R``, ``P``).
    3. The reference of the round: the snapshot (``reference="previous"``, Yuan et al.'s
       :math:`M_t`) or ``ref`` throughout (``"initial"``); the toy's online-DPO end point on ``P``
       from the reference's class distribution is the round's prediction.
    4. ``steps`` steps of online DPO (``train``, soft labels from the snapshot judge, seed
       ``seed + r``), the policy trained in place; then ``n_samples`` completions
       (``bridge_generator(seed + r, "final")``) give the round's end distribution.

    Returns
    -------
    list of SelfRewardingRound, one per round

    References
    ----------
    Yuan et al., arXiv:2401.10020v3 (self-rewarding: the model judges its own samples, then DPO,
    iterated); Guo et al., arXiv:2402.04792v2 (online AI feedback); Calandriello et al.,
    arXiv:2403.08635v1, App. F (online DPO's stationary point).
    """
    rounds = as_int(rounds, "rounds", minimum=1)
    if reference not in ("previous", "initial"):
        raise ValueError(f"reference must be 'previous' or 'initial', got {reference!r}")
    if judge_kwargs is not None and not isinstance(judge_kwargs, dict):
        raise ValueError(f"judge_kwargs must be a dict or None, got {type(judge_kwargs).__name__}")
    kwargs = dict(judge_kwargs or {})
    kwargs.setdefault("prompt", task.prompt_templates[0])
    lifted = lifted_judge(task, [[0.5] * len(task.class_names)] * len(task.class_names))
    C = len(lifted.class_names)
    ref_start = None
    if reference == "initial":
        _, _, ref_start = sample_completions(
            ref, tokenizer, task, lifted, n=n_samples,
            generator=bridge_generator(seed, "reference"), max_new_tokens=max_new_tokens,
        )  # fmt: skip
    out: list[SelfRewardingRound] = []
    for r in range(rounds):
        t0 = time.perf_counter()
        snapshot = _frozen_copy(policy)
        judge = LanguageModelJudge(snapshot, tokenizer, **kwargs)
        texts, ids, start = sample_completions(
            snapshot, tokenizer, task, lifted, n=n_samples,
            generator=bridge_generator(seed + r, "reference"), max_new_tokens=max_new_tokens,
        )  # fmt: skip
        game = measure_judge_game(
            judge, texts, ids, C, per_class=per_class, class_names=lifted.class_names
        )
        round_ref = snapshot if reference == "previous" else ref
        mu_round = start if reference == "previous" else ref_start
        prediction, residual = predict_ai_feedback(
            "online_dpo", game.P, mu_round.probs, beta=beta, toy_steps=toy_steps
        )
        _train_online(
            "online_dpo", policy, round_ref, tokenizer, task, judge, lifted,
            reduction="sum", beta=beta, lr=lr, lr_schedule="linear", steps=steps,
            batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed + r,
            eval_every=0, show_progress=False,
        )  # fmt: skip
        _, _, end = sample_completions(
            policy, tokenizer, task, lifted, n=n_samples,
            generator=bridge_generator(seed + r, "final"), max_new_tokens=max_new_tokens,
        )  # fmt: skip
        out.append(
            SelfRewardingRound(
                round=r,
                judge=judge,
                start=start,
                game=game,
                prediction=prediction,
                residual=residual,
                end=end,
                tv=total_variation(end.probs, prediction),
                tv_start=total_variation(start.probs, prediction),
                wall_s=time.perf_counter() - t0,
            )
        )
    return out
