r"""The bridge for RLHF: a reward model and RLOO on GPT-2 against the exact toy's ``rlhf_optimum``.

On a lifted game the judge depends only on the class :math:`c(y)` of a completion. The
Bradley-Terry reward fitted to pairs from the reference :math:`\mu` is then class-level in the
population, :math:`r(y) = \hat r_{c(y)}` with :math:`\hat r = \texttt{bt\_fit}(P_{ext},
\mu_{class})` (up to a constant), and the KL-regularised optimum (Rafailov et al.,
arXiv:2305.18290v3, Eq. (4))

.. math:: \pi^*(y) = \mu(y)\exp(r(y)/\beta)/Z

factorises as in :mod:`prefopt_toy.lm.bridge.run`: its class distribution is
:math:`\mu_{class}\exp(\hat r/\beta)/Z`, which is ``prefopt_toy.rlhf_optimum(P_ext, mu_class,
beta)`` (pairs from the reference, ``nu = mu_class``): :func:`rlhf_prediction`. It is the same
fixed point as offline DPO's (``predict("dpo", ...)``; Azar et al., arXiv:2310.12036v2, App. B
Prop. 4): RLHF and DPO aim at one policy, reached by different routes. For a *known* class
reward :math:`r` (no reward model), :func:`reward_tilt_prediction` gives
:math:`\mu_{class}\exp(r/\beta)/Z`.

:func:`run_rlhf_bridge` runs the two stages on GPT-2 and compares: measure ``mu_class``, sample the
DPO trainer's offline pairs (``run.preference_dataset``), fit the reward model
(``train.rlhf.train_reward_model``), run RLOO against it (``train.rlhf.rloo``), measure the
trained policy's class distribution, and report its total variation to the prediction with the
bootstrap sampling error of ``error.tv_sampling_error``. The learned reward only approximates the
population BT reward (finite pairs, a finite network), which adds to the gap; the result carries
the reward model's accuracy and its per-class rewards beside ``bt_fit``'s so that part can be seen.

References
----------
Ouyang et al., arXiv:2203.02155, Eq. (1)-(2); Ahmadian et al., arXiv:2402.14740 (RLOO);
Rafailov et al., arXiv:2305.18290v3, Eq. (4); Azar et al., arXiv:2310.12036v2, App. B Prop. 4;
Munos et al., arXiv:2312.00886v4 (lifted preference games).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float
from prefopt_toy.lm.models.corpus import FRUIT_TASK, LiftedTask

from .class_estimate import ClassEstimate, estimate_class_distribution, total_variation
from .error import TVError, tv_sampling_error
from .run import BridgeResult, bridge_generator, lifted_judge, reference_classes, reference_pairs

__all__ = [
    "RLHFBridgeResult",
    "reward_tilt_prediction",
    "rlhf_prediction",
    "run_rlhf_bridge",
]


def _mu(mu_class: Any, size: int | None = None) -> Tensor:
    if isinstance(mu_class, ClassEstimate):
        mu_class = mu_class.probs
    mu = torch.as_tensor(mu_class, dtype=torch.float64)
    if mu.ndim != 1 or (size is not None and mu.shape != (size,)):
        want = f"({size},)" if size is not None else "(K+1,)"
        raise ValueError(f"mu_class must have shape {want}, got {tuple(mu.shape)}")
    if (
        not bool(torch.isfinite(mu).all())
        or bool((mu < 0).any())
        or abs(float(mu.sum()) - 1) > 1e-9
    ):
        raise ValueError("mu_class must be a probability vector (non-negative, summing to 1)")
    return mu


def rlhf_prediction(P_ext: Any, mu_class: Any, *, beta: Any) -> Tensor:
    r"""The class distribution RLHF converges to on a lifted game: ``rlhf_optimum(P_ext, mu_class, beta)``.

    .. math:: \pi_{class} = \mu_{class}\exp(\hat r/\beta)/Z, \qquad
              \hat r = \texttt{bt\_fit}(P_{ext}, \mu_{class})

    (Rafailov et al., arXiv:2305.18290v3, Eq. (4), with the Bradley-Terry reward fitted on pairs
    from the reference, as ``train_reward_model`` is on ``preference_dataset``).

    Parameters
    ----------
    P_ext : array-like, shape (K+1, K+1)
        The class-level game, "other" last (``judge.P_ext``); use ``other_loses < 1``, else the
        BT fit has no finite maximiser and ``rlhf_optimum`` raises.
    mu_class : array-like of shape (K+1,) or ClassEstimate
        The reference's measured class distribution.
    beta : float > 0
        RLOO's KL strength.

    Returns
    -------
    Tensor, shape (K+1,), float64

    Raises
    ------
    ValueError
        Malformed inputs (named), ``beta <= 0``, no finite BT fit.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (4); Ouyang et al., arXiv:2203.02155, Eq. (1)-(2).

    Examples
    --------
    >>> p = rlhf_prediction([[0.5, 0.8], [0.2, 0.5]], [0.5, 0.5], beta=1.0)
    >>> [round(v, 4) for v in p.tolist()]
    [0.8, 0.2]
    """
    import prefopt_toy as pt

    P_t = pt.check_preference_matrix(P_ext)
    mu = _mu(mu_class, P_t.shape[0])
    return pt.rlhf_optimum(P_t, mu, as_positive_float(beta, "beta"))


def reward_tilt_prediction(mu_class: Any, rewards: Any, *, beta: Any) -> Tensor:
    r"""RLHF's optimum for a known class reward: :math:`\mu_{class}\exp(r/\beta)/Z`.

    Parameters
    ----------
    mu_class : array-like of shape (K+1,) or ClassEstimate
    rewards : array-like, shape (K+1,)
        The reward of each class ("other" last), finite.
    beta : float > 0

    Returns
    -------
    Tensor, shape (K+1,), float64

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (4).

    Examples
    --------
    >>> import math
    >>> p = reward_tilt_prediction([0.5, 0.5], [math.log(3.0), 0.0], beta=1.0)
    >>> [round(v, 4) for v in p.tolist()]
    [0.75, 0.25]
    """
    from prefopt_toy.solutions.optima import gibbs_policy

    mu = _mu(mu_class)
    r = torch.as_tensor(rewards, dtype=torch.float64)
    if r.shape != mu.shape or not bool(torch.isfinite(r).all()):
        raise ValueError(
            f"rewards must be {tuple(mu.shape)} finite numbers (one per class), got shape "
            f"{tuple(r.shape)}"
        )
    return gibbs_policy(mu, r, as_positive_float(beta, "beta"))


@dataclass
class RLHFBridgeResult:
    """What ``run_rlhf_bridge`` measured and predicted; distributions have K+1 entries, "other" last.

    References
    ----------
    See the module docstring.
    """

    class_names: tuple[str, ...]
    P_ext: Tensor
    beta: float
    mu_class: ClassEstimate
    """The reference's class distribution."""
    prediction: Tensor
    """(K+1,) ``rlhf_prediction(P_ext, mu_class.probs, beta=beta)``."""
    final: ClassEstimate
    """The RLOO-trained policy's class distribution."""
    tv: float
    """Total variation between ``final.probs`` and ``prediction``."""
    tv_error: TVError
    """Bootstrap interval and sampling floor of ``tv`` (``error.tv_sampling_error``)."""
    reward_accuracy: float
    """The reward model's pairwise accuracy on its training pairs."""
    class_rewards: Tensor
    """(K,) the reward model's mean reward of each class's corpus completions (centred)."""
    bt_rewards: Tensor
    """(K,) ``bt_fit(P_ext, mu_class)`` of the named classes (centred): what it should match."""
    reward_summary: dict[str, Any] = field(default_factory=dict)
    rloo_summary: dict[str, Any] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    """RLOO steps at which the class distribution was measured (``eval_every``; 0 the reference)."""
    measured: Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.float64))
    """(len(steps), K+1) class distributions measured at ``steps`` (``n_eval`` samples each); (0, K+1) without ``eval_every``."""
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (numbers only)."""
        return {
            "algorithm": "rlhf_rloo",
            "class_names": list(self.class_names),
            "beta": self.beta,
            "mu_class": self.mu_class.as_dict(),
            "prediction": self.prediction.tolist(),
            "final": self.final.as_dict(),
            "tv": self.tv,
            "tv_error": self.tv_error.as_dict(),
            "reward_accuracy": self.reward_accuracy,
            "class_rewards": self.class_rewards.tolist(),
            "bt_rewards": self.bt_rewards.tolist(),
            "wall_s": self.wall_s,
        }


def run_rlhf_bridge(
    *,
    P: Any,
    beta: float,
    size: str = "tiny",
    task: LiftedTask = FRUIT_TASK,
    other_loses: float = 0.9,
    n_pairs: int = 512,
    rm_steps: int = 200,
    rm_lr: float = 1e-3,
    rm_batch_size: int = 16,
    rl_steps: int = 100,
    rl_lr: float = 1e-4,
    k: int = 4,
    batch_size: int = 8,
    max_new_tokens: int = 16,
    n_eval_samples: int = 512,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    model=None,
    tokenizer=None,
    mu_class: ClassEstimate | None = None,
    eval_every: int = 0,
    n_eval: int = 128,
    show_progress: bool | None = False,
) -> RLHFBridgeResult:
    """Measure ``mu_class``, fit a reward model, run RLOO, and compare with ``rlhf_prediction``.

    1. Reference = ``default_model(size, cache_dir=, seed=)`` (or ``model``/``tokenizer``, not
       modified); the policy is a deep copy; the judge is ``lifted_judge(task, P, other_loses=)``.
    2. ``mu_class`` from ``n_eval_samples`` reference samples (or the given estimate).
    3. ``n_pairs`` offline pairs from the reference labelled by the judge (``preference_dataset``,
       the DPO bridge's data); a reward model from the reference (``models.reward.reward_model``)
       trained on them for ``rm_steps`` (``train_reward_model``).
    4. RLOO against the reward model for ``rl_steps`` (``rloo`` with ``beta``, ``k``,
       ``batch_size`` prompts per step, the task's prompts).
    5. The trained policy's class distribution from ``n_eval_samples`` fresh samples, its total
       variation to ``rlhf_prediction`` and the sampling error of that TV.

    Parameters
    ----------
    P : array-like, shape (K, K)
        The class game (``task``'s classes, in order).
    beta : float > 0
    other_loses : float in [0, 1)
        Pr(a class beats "other"); must be < 1 for a finite BT reward.
    size, task, n_pairs, rm_steps, rm_lr, rm_batch_size, rl_steps, rl_lr, k, batch_size,
    max_new_tokens, n_eval_samples, seed, cache_dir, model, tokenizer, show_progress
        As in ``run.run_bridge`` and ``train.rlhf``.
    n_boot, level : bootstrap draws and level of ``tv_error``.
    mu_class : ClassEstimate, optional
        Reused instead of sampled (as ``run_bridge``).
    eval_every, n_eval : int
        With ``eval_every >= 1``, the class distribution of ``n_eval`` fresh samples at step 0
        (the reference) and every ``eval_every`` RLOO steps (``result.steps``,
        ``result.measured``: the trajectory to draw beside DPO's). The samples use their own
        generator, so the trained policy is the same with or without them. 0 (default): none.

    Returns
    -------
    RLHFBridgeResult
        ``extra["policy"]`` and ``extra["reward_model"]`` hold the trained models.

    Raises
    ------
    ValueError
        A bad argument, named; ``other_loses >= 1``.

    References
    ----------
    Ouyang et al., arXiv:2203.02155; Ahmadian et al., arXiv:2402.14740; Rafailov et al.,
    arXiv:2305.18290v3, Eq. (4).
    """
    import prefopt_toy as pt
    from prefopt_toy.lm.models.gpt2 import default_model
    from prefopt_toy.lm.models.reward import reward_model, score_texts
    from prefopt_toy.lm.train.rlhf import rloo, train_reward_model

    beta = as_positive_float(beta, "beta")
    if isinstance(other_loses, bool) or not isinstance(other_loses, (int, float)):
        raise ValueError(f"other_loses must be a number in [0, 1), got {other_loses!r}")
    if not 0.0 <= float(other_loses) < 1.0:
        raise ValueError(
            f"other_loses must be in [0, 1) for RLHF (at 1 the BT reward of 'other' is -inf), "
            f"got {other_loses}"
        )
    if (model is None) != (tokenizer is None):
        raise ValueError("model and tokenizer must be given together")
    seed = as_int(seed, "seed", minimum=0)
    n_eval_samples = as_int(n_eval_samples, "n_eval_samples", minimum=1)
    eval_every = as_int(eval_every, "eval_every", minimum=0)
    n_eval = as_int(n_eval, "n_eval", minimum=1)
    t0 = time.perf_counter()
    judge = lifted_judge(task, P, other_loses=float(other_loses))
    if model is None:
        ref, tokenizer = default_model(size, cache_dir=cache_dir, seed=seed)
    else:
        ref = model
    mu_est = reference_classes(
        mu_class, ref, tokenizer, task, judge,
        n_samples=n_eval_samples, seed=seed, max_new_tokens=max_new_tokens, level=level,
    )  # fmt: skip
    prediction = rlhf_prediction(judge.P_ext, mu_est.probs, beta=beta)

    dataset = reference_pairs(
        ref, tokenizer, task, judge, n_pairs=n_pairs, seed=seed, max_new_tokens=max_new_tokens
    )
    rm = reward_model(ref, seed=seed)
    rm_out = train_reward_model(
        rm,
        tokenizer,
        dataset,
        steps=rm_steps,
        batch_size=rm_batch_size,
        lr=rm_lr,
        seed=seed,
        max_length=48 + max_new_tokens + 1,
        show_progress=show_progress,
    )
    policy = copy.deepcopy(ref)
    eval_gen = bridge_generator(seed, "trajectory")  # not the training's generators
    trajectory: list[tuple[int, list[float]]] = []

    def measure(step: int, _record: Any = None) -> None:
        if eval_every and step % eval_every == 0:
            est = estimate_class_distribution(
                policy, tokenizer, task, judge, n_samples=n_eval, generator=eval_gen,
                max_new_tokens=max_new_tokens, level=level,
            )  # fmt: skip
            trajectory.append((step, est.probs.tolist()))

    measure(0)
    rl_out = rloo(
        policy,
        ref,
        tokenizer,
        list(task.prompt_templates),
        rm,
        beta=beta,
        k=k,
        steps=rl_steps,
        batch_size=batch_size,
        lr=rl_lr,
        seed=seed,
        max_new_tokens=max_new_tokens,
        show_progress=show_progress,
        callback=measure if eval_every else None,
    )
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
    with torch.no_grad():
        per_class = []
        for name in task.class_names:
            comps = list(task.classes[name])
            prompts = [p for p in task.prompt_templates for _ in comps]
            per_class.append(
                float(
                    score_texts(rm, tokenizer, prompts, comps * len(task.prompt_templates)).mean()
                )
            )
    class_rewards = torch.tensor(per_class, dtype=torch.float64)
    class_rewards = class_rewards - class_rewards.mean()
    K = len(task.class_names)
    bt = pt.bt_fit(judge.P_ext, mu_est.probs)[:K].to(torch.float64)
    bt = bt - bt.mean()
    # The sampling error: the RLHF prediction is the DPO bridge's (rlhf_optimum with nu =
    # mu_class), so tv_sampling_error's resampled predictions are read from predict("dpo").
    as_bridge = BridgeResult(
        algorithm="dpo",
        class_names=judge.class_names,
        P_ext=judge.P_ext.clone(),
        hyper={"beta": beta, "mixture": 0.0},
        mu_class=mu_est,
        prediction=prediction,
        toy_trajectory=prediction[None],
        steps=[],
        measured=torch.zeros(0, K + 1, dtype=torch.float64),
        final=final,
        tv=total_variation(final.probs, prediction),
    )
    tv_err = tv_sampling_error(as_bridge, n_boot=n_boot, level=level, seed=seed)
    return RLHFBridgeResult(
        class_names=judge.class_names,
        P_ext=judge.P_ext.clone(),
        beta=beta,
        mu_class=mu_est,
        prediction=prediction,
        final=final,
        tv=as_bridge.tv,
        tv_error=tv_err,
        reward_accuracy=rm_out["train_accuracy"],
        class_rewards=class_rewards,
        bt_rewards=bt,
        reward_summary={k_: v for k_, v in rm_out.items() if k_ != "history"},
        rloo_summary={"history": rl_out["history"], "steps": rl_out["steps"]},
        steps=[st for st, _ in trajectory],
        measured=torch.tensor([d for _, d in trajectory], dtype=torch.float64).reshape(
            len(trajectory), K + 1
        ),
        wall_s=time.perf_counter() - t0,
        extra={"n_pairs": len(dataset), "policy": policy, "reward_model": rm},
    )
