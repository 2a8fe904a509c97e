r"""RLHF on GPT-2: a Bradley-Terry reward model, then a KL-regularised policy gradient (RLOO) against it.

**Stage 1, the reward model** (:func:`train_reward_model`). On the same ``{"prompt", "chosen",
"rejected"}`` pairs the DPO trainer uses, a scalar reward model
(``prefopt_toy.lm.models.reward.reward_model``) minimises the Bradley-Terry loss

.. math:: \mathcal L(\phi) = -\,\mathbb E\,\log\sigma\big(r_\phi(x, y_w) - r_\phi(x, y_l)\big)

(Ouyang et al., arXiv:2203.02155, Eq. (1), one pair per prompt rather than all
:math:`\binom{K}{2}` of a ranking). The per-pair loss is the project's DPO loss at unit strength,
``prefopt_toy.losses.pairwise.dpo_loss(r_w - r_l, beta=1.0)`` (:func:`reward_model_loss`): one
formula for the bandit, DPO on GPT-2 and the reward model.

**Stage 2, RLOO** (:func:`rloo`). For each prompt ``k`` completions are sampled from the policy;
each gets the KL-penalised reward

.. math:: R_i = r_\phi(x, y_i) - \beta\,\big(\log\pi_\theta(y_i \mid x) - \log\mu(y_i \mid x)\big)

(the sequence log-ratio, a single-sample estimate of :math:`\mathrm{KL}(\pi_\theta\,\|\,\mu)`),
and the leave-one-out advantage

.. math:: A_i = R_i - \frac{1}{k-1}\sum_{j \ne i} R_j

(:func:`rloo_advantages`); the loss :math:`-\frac{1}{Bk}\sum_i A_i \log\pi_\theta(y_i \mid x)`
(advantages held fixed) has the REINFORCE gradient of
:math:`J(\theta) = \mathbb E_{\pi_\theta}[r] - \beta\,\mathrm{KL}(\pi_\theta\|\mu)`, whose maximiser is
:math:`\pi^*(y \mid x) \propto \mu(y \mid x)\exp(r(x, y)/\beta)` (Rafailov et al.,
arXiv:2305.18290v3, Eq. (4)). This is Ahmadian et al. (arXiv:2402.14740, Sec. 3.3 and Eq. (4))
and TRL 1.13's ``RLOOTrainer`` with ``beta > 0``: sequence-level KL penalty in the reward (TRL:
``rewards - beta * kl`` with ``kl`` the summed per-token log-ratio), the leave-one-out baseline
over the ``k`` completions of a prompt, no advantage normalisation (TRL's default
``normalize_advantages=False``), one gradient step per batch (TRL's clipped ratio is 1 then, and
its gradient is this one). TRL's default loss aggregation averages per token; here the sequence
log-prob is summed and averaged over sequences, the estimator of the gradient of ``J``.

Randomness comes from ``torch.Generator`` objects seeded from ``seed`` (minibatches, sampling),
and the models run in ``eval()`` mode (dropout off), as in ``prefopt_toy.lm.train.trainer``; the
AdamW state and learning rate are constant in the step. Run logs (optional, ``run_dir``) are
``runlog.RunLogger`` JSON lines.

References
----------
Ouyang et al., arXiv:2203.02155, Sec. 3.5 and Eq. (1) (reward model), Eq. (2) (KL-penalised RL);
Ahmadian et al., arXiv:2402.14740, Sec. 3.3 (RLOO); Kool et al., "Buy 4 REINFORCE samples, get a
baseline for free!" (ICLR 2019 workshop); Rafailov et al., arXiv:2305.18290v3, Eq. (4) (the
KL-regularised optimum); TRL https://github.com/huggingface/trl v1.13.0 (``RewardTrainer``,
``RLOOTrainer``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float
from prefopt_toy.lm.data import (
    build_batch,
    check_tokenizer,
    model_device,
    tokenize_pairs,
    tokenize_prompts,
    validate_preference_examples,
    validate_texts,
)
from prefopt_toy.lm.logprobs import token_logprobs
from prefopt_toy.lm.models.reward import _check_reward_model, reward_scores, score_texts
from prefopt_toy.lm.sampling import sample
from prefopt_toy.losses.pairwise import dpo_loss

from .runlog import RunLogger, progress

__all__ = [
    "REWARD_METRIC_NAMES",
    "reward_accuracy",
    "reward_model_loss",
    "rloo",
    "rloo_advantages",
    "rloo_loss",
    "train_reward_model",
]

REWARD_METRIC_NAMES = ("accuracy", "margin", "min_reward", "mean_reward", "max_reward")
"""Metrics of :func:`reward_model_loss`, TRL 1.13 ``RewardTrainer``'s names."""


def _rewards(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty (B,) tensor, got {getattr(x, 'shape', type(x).__name__)}"
        )
    if x.is_complex() or not x.is_floating_point():
        raise ValueError(f"{name} must be a real floating tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} must be finite")
    return x


def reward_model_loss(
    rewards_chosen: Tensor, rewards_rejected: Tensor, *, margin: Any = None
) -> tuple[Tensor, dict[str, float]]:
    r"""Per-pair Bradley-Terry reward-model loss :math:`-\log\sigma(r_w - r_l - m)` and TRL's metrics.

    Computed as ``dpo_loss(r_w - r_l - m, beta=1.0)`` (``prefopt_toy.losses.pairwise``), DPO's loss
    with the reward difference as the margin.

    Parameters
    ----------
    rewards_chosen, rewards_rejected : Tensor, shape (B,)
        :math:`r_\phi(x, y_w)` and :math:`r_\phi(x, y_l)`, finite, same shape.
    margin : float or Tensor of shape (B,), optional
        TRL's optional per-pair ``margin`` column (Touvron et al., arXiv:2307.09288, Eq. (2));
        None or 0 is the plain Bradley-Terry loss.

    Returns
    -------
    losses : Tensor, shape (B,)
        Unreduced; ``losses.mean()`` is TRL 1.13 ``RewardTrainer.compute_loss`` with its defaults.
    metrics : dict
        ``REWARD_METRIC_NAMES``: ``accuracy`` (fraction with :math:`r_w > r_l`), ``margin`` (mean
        :math:`r_w - r_l`), ``min_reward``, ``mean_reward``, ``max_reward`` (over both sides).

    Raises
    ------
    ValueError
        Non-tensor, non-(B,), non-finite or mismatched rewards; a margin of the wrong shape or not
        finite.

    Notes
    -----
    TRL's ``RewardConfig.center_rewards_coefficient`` (default None) adds
    :math:`c\,\mathbb E[(r_w + r_l)^2]` (Eisenstein et al., arXiv:2312.09244) to pin the reward's
    free constant; it is not applied here (the Bradley-Terry reward is defined up to a constant,
    and RLOO's leave-one-out baseline removes it). TRL also reduces with ``.mean()`` inside; here
    the caller reduces.

    References
    ----------
    Ouyang et al., arXiv:2203.02155, Eq. (1); Bradley & Terry, Biometrika 39 (1952); TRL v1.13.0
    ``RewardTrainer.compute_loss``.

    Examples
    --------
    >>> losses, m = reward_model_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    >>> [round(v, 4) for v in losses.tolist()], m["accuracy"]
    ([0.3133, 0.6931], 0.5)
    """
    rw = _rewards(rewards_chosen, "rewards_chosen")
    rl = _rewards(rewards_rejected, "rewards_rejected")
    if rw.shape != rl.shape:
        raise ValueError(
            f"rewards_chosen and rewards_rejected must have the same shape, got "
            f"{tuple(rw.shape)} and {tuple(rl.shape)}"
        )
    diff = rw - rl  # (B,)
    if margin is not None:
        m = torch.as_tensor(margin, dtype=diff.dtype, device=diff.device)
        if m.ndim not in (0, 1) or (m.ndim == 1 and m.shape != diff.shape):
            raise ValueError(
                f"margin must be a number or a (B,) tensor with B = {diff.shape[0]}, got shape "
                f"{tuple(m.shape)}"
            )
        if not bool(torch.isfinite(m).all()):
            raise ValueError("margin must be finite")
        diff = diff - m
    losses = dpo_loss(diff, beta=1.0)  # -log sigma(r_w - r_l - m)
    with torch.no_grad():
        both = torch.cat([rw.detach(), rl.detach()])
        metrics = {
            "accuracy": float((rw > rl).double().mean()),
            "margin": float((rw - rl).double().mean()),
            "min_reward": float(both.min()),
            "mean_reward": float(both.double().mean()),
            "max_reward": float(both.max()),
        }
    return losses, metrics


def _pair_rewards(reward_model, pairs: dict[str, Tensor], rows: Tensor) -> tuple[Tensor, Tensor]:
    """Rewards of the chosen and rejected rows ``rows`` in one forward pass."""
    ids = torch.cat([pairs["chosen_input_ids"][rows], pairs["rejected_input_ids"][rows]])
    mask = torch.cat([pairs["chosen_attention_mask"][rows], pairs["rejected_attention_mask"][rows]])
    t = int(mask.sum(dim=1).max())  # right padding: drop the all-padding tail
    r = reward_scores(reward_model, ids[:, :t], mask[:, :t])  # (2B,)
    return r[: len(rows)], r[len(rows) :]


@torch.no_grad()
def reward_accuracy(
    reward_model, tokenizer, dataset, *, max_length: int = 64, batch_size: int = 64
) -> float:
    """Fraction of pairs the reward model orders as labelled (:math:`r_w > r_l`), as TRL's ``accuracy``.

    Parameters
    ----------
    reward_model : GPT2ForSequenceClassification (``num_labels = 1``)
    tokenizer : GPT-2 tokenizer
    dataset : list of ``{"prompt", "chosen", "rejected"}``
    max_length : int
        Longest row (prompt + completion + EOS), as ``data.tokenize_pairs``.
    batch_size : int >= 1

    Returns
    -------
    float in [0, 1]

    References
    ----------
    TRL v1.13.0 ``RewardTrainer`` (``accuracy`` metric).
    """
    dataset = validate_preference_examples(dataset, "dataset")
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    pairs = tokenize_pairs(tokenizer, dataset, max_length=max_length, name="dataset")
    right = 0
    for start in range(0, len(dataset), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(dataset)))
        rw, rl = _pair_rewards(reward_model, pairs, rows)
        right += int((rw > rl).sum())
    return right / len(dataset)


def _logger(run_dir: Any, config: dict[str, Any]) -> RunLogger | None:
    if run_dir is None:
        return None
    if not isinstance(run_dir, (str, Path)):
        raise ValueError(f"run_dir must be a path or None, got {type(run_dir).__name__}")
    return RunLogger(Path(run_dir) / "run.jsonl", config=config)


def _optimizer_step(model, optimizer, loss: Tensor, max_grad_norm: float | None) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm or math.inf)
    optimizer.step()
    return float(norm)


def train_reward_model(
    reward_model,
    tokenizer,
    dataset,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-4,
    seed: int = 0,
    max_length: int = 64,
    max_grad_norm: float | None = 1.0,
    eval_dataset=None,
    run_dir: str | Path | None = None,
    show_progress: bool | None = False,
) -> dict[str, Any]:
    """Fit a reward model to preference pairs with the Bradley-Terry loss (in place).

    Each step draws ``batch_size`` pairs (epochs of random permutations from a generator seeded
    with ``seed``), scores chosen and rejected in one forward pass (:func:`reward_scores` at the
    last real token), takes the mean of :func:`reward_model_loss` and one AdamW step (weight
    decay 0, constant ``lr``, gradients clipped to ``max_grad_norm``).

    Parameters
    ----------
    reward_model : GPT2ForSequenceClassification (``num_labels = 1``)
        ``prefopt_toy.lm.models.reward.reward_model(policy)``; trained in place, in eval mode.
    tokenizer : GPT-2 tokenizer
    dataset : list of ``{"prompt", "chosen", "rejected"}``
        The DPO trainer's data (``bridge.preference_dataset`` on a lifted game).
    steps : int >= 1
    batch_size : int >= 1
    lr : float > 0
    seed : int >= 0
    max_length : int
        Longest row (prompt + completion + EOS); longer examples raise ``ValueError``.
    max_grad_norm : float > 0 or None
    eval_dataset : list of pairs, optional
        Held-out pairs; ``eval_accuracy`` is measured on them at the end.
    run_dir : path, optional
        Writes ``run_dir/run.jsonl`` (one line per step: ``loss``, ``grad_norm``, the
        ``REWARD_METRIC_NAMES``).
    show_progress : bool or None
        A progress bar (``runlog.progress``; None: only on a terminal).

    Returns
    -------
    dict
        ``history`` (the per-step records), ``steps``, ``train_accuracy`` (on ``dataset`` after
        training), ``eval_accuracy`` (None without ``eval_dataset``), ``log`` (path or None).

    Raises
    ------
    ValueError
        A bad argument, named.

    References
    ----------
    Ouyang et al., arXiv:2203.02155, Sec. 3.5 and Eq. (1); TRL v1.13.0 ``RewardTrainer``.
    """
    _check_reward_model(reward_model)
    dataset = validate_preference_examples(dataset, "dataset")
    if eval_dataset is not None:
        eval_dataset = validate_preference_examples(eval_dataset, "eval_dataset")
    steps = as_int(steps, "steps", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    lr = as_positive_float(lr, "lr")
    seed = as_int(seed, "seed", minimum=0)
    max_length = as_int(max_length, "max_length", minimum=2)
    if max_grad_norm is not None:
        max_grad_norm = as_positive_float(max_grad_norm, "max_grad_norm")
    check_tokenizer(tokenizer)
    pairs = tokenize_pairs(tokenizer, dataset, max_length=max_length, name="dataset")
    config = {
        "algorithm": "reward_model",
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "max_length": max_length,
        "max_grad_norm": max_grad_norm,
        "n_pairs": len(dataset),
    }
    logger = _logger(run_dir, config)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(reward_model.parameters(), lr=lr, weight_decay=0.0)
    reward_model.eval()  # dropout off; gradients still flow
    order: list[int] = []
    history: list[dict[str, Any]] = []
    for step in progress(range(1, steps + 1), enabled=show_progress, desc="reward model"):
        rows: list[int] = []
        while len(rows) < batch_size:
            if not order:
                order = torch.randperm(len(dataset), generator=gen).tolist()
            rows.append(order.pop(0))
        rw, rl = _pair_rewards(reward_model, pairs, torch.tensor(rows))
        losses, metrics = reward_model_loss(rw, rl)
        loss = losses.mean()
        if not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(f"reward-model loss is not finite at step {step}")
        norm = _optimizer_step(reward_model, optimizer, loss, max_grad_norm)
        record = {"step": step, "loss": float(loss.detach()), "grad_norm": norm, **metrics}
        history.append(record)
        if logger is not None:
            logger.log(step, {k: v for k, v in record.items() if k != "step"})
    kw = {"max_length": max_length}
    return {
        "history": history,
        "steps": steps,
        "train_accuracy": reward_accuracy(reward_model, tokenizer, dataset, **kw),
        "eval_accuracy": None
        if eval_dataset is None
        else reward_accuracy(reward_model, tokenizer, eval_dataset, **kw),
        "log": None if logger is None else str(logger.path),
    }


def rloo_advantages(rewards: Tensor) -> Tensor:
    r"""Leave-one-out advantages :math:`A_{b,i} = R_{b,i} - \frac{1}{k-1}\sum_{j \ne i} R_{b,j}`.

    Parameters
    ----------
    rewards : Tensor, shape (B, k), k >= 2
        Row ``b`` holds the (KL-penalised) rewards of the ``k`` completions of prompt ``b``.

    Returns
    -------
    Tensor, shape (B, k)
        Detached. Equivalently :math:`\frac{k}{k-1}(R_{b,i} - \bar R_b)`; each row sums to 0.

    Raises
    ------
    ValueError
        Not a real floating (B, k) tensor with k >= 2, or not finite.

    References
    ----------
    Ahmadian et al., arXiv:2402.14740, Sec. 3.3 (RLOO estimator); Kool et al. (ICLR 2019
    workshop); TRL v1.13.0 ``RLOOTrainer`` (``(sum - r) / (k - 1)``).

    Examples
    --------
    >>> rloo_advantages(torch.tensor([[1.0, 2.0, 6.0]])).tolist()
    [[-3.0, -1.5, 4.5]]
    """
    if not isinstance(rewards, Tensor) or rewards.ndim != 2:
        raise ValueError(
            f"rewards must be a (B, k) tensor, got {getattr(rewards, 'shape', type(rewards).__name__)}"
        )
    if rewards.shape[0] == 0 or rewards.shape[1] < 2:
        raise ValueError(
            f"rewards must have B >= 1 rows and k >= 2 completions per prompt (the baseline "
            f"leaves one out), got shape {tuple(rewards.shape)}"
        )
    if rewards.is_complex() or not rewards.is_floating_point():
        raise ValueError(f"rewards must be a real floating tensor, got dtype {rewards.dtype}")
    r = rewards.detach()
    if not bool(torch.isfinite(r).all()):
        raise ValueError("rewards must be finite")
    k = r.shape[1]
    baseline = (r.sum(dim=1, keepdim=True) - r) / (k - 1)  # (B, k)
    return r - baseline


def rloo_loss(logps: Tensor, advantages: Tensor) -> Tensor:
    r"""The RLOO surrogate :math:`-\frac{1}{Bk}\sum_{b,i} A_{b,i}\,\log\pi_\theta(y_{b,i} \mid x_b)`.

    Parameters
    ----------
    logps : Tensor, shape (B, k)
        Sequence log-probs (summed over completion tokens), with gradient.
    advantages : Tensor, shape (B, k)
        :func:`rloo_advantages` (held fixed: detached here).

    Returns
    -------
    Tensor, scalar
        Its gradient is minus the RLOO policy-gradient estimate.

    References
    ----------
    Ahmadian et al., arXiv:2402.14740, Sec. 3.3; Williams, Machine Learning 8 (1992) (REINFORCE).

    Examples
    --------
    >>> lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    >>> rloo_loss(lp, torch.tensor([[1.0, -1.0]])).backward()
    >>> lp.grad.tolist()
    [[-0.5, 0.5]]
    """
    for name, t in (("logps", logps), ("advantages", advantages)):
        if not isinstance(t, Tensor) or t.ndim != 2:
            raise ValueError(
                f"{name} must be a (B, k) tensor, got {getattr(t, 'shape', type(t).__name__)}"
            )
    if logps.shape != advantages.shape:
        raise ValueError(
            f"logps and advantages must have the same shape, got {tuple(logps.shape)} and "
            f"{tuple(advantages.shape)}"
        )
    a = advantages.detach().to(device=logps.device, dtype=logps.dtype)
    if not bool(torch.isfinite(a).all()):
        raise ValueError("advantages must be finite")
    return -(a * logps).mean()


RewardFn = Callable[[list[str], list[str]], Any]
"""A known reward: ``fn(prompts, completions) -> (N,)`` rewards (TRL's reward-function form)."""


def _reward_values(reward, tokenizer, prompts: list[str], texts: list[str]) -> Tensor:
    """(N,) float64 CPU rewards from a reward model (scored on the texts) or a callable."""
    if isinstance(reward, torch.nn.Module):
        with torch.no_grad():
            r = score_texts(reward, tokenizer, prompts, texts)
    else:
        r = reward(list(prompts), list(texts))
    r = torch.as_tensor(r).detach().to(device="cpu", dtype=torch.float64)
    if r.shape != (len(texts),) or not bool(torch.isfinite(r).all()):
        raise ValueError(
            f"reward must return {len(texts)} finite rewards (one per completion), got shape "
            f"{tuple(r.shape)}"
        )
    return r


def rloo(
    policy,
    ref_model,
    tokenizer,
    prompts: Sequence[str],
    reward: Any,
    *,
    beta: float,
    k: int = 4,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-5,
    seed: int = 0,
    max_new_tokens: int = 16,
    max_prompt_length: int = 48,
    max_grad_norm: float | None = 1.0,
    temperature: float = 1.0,
    run_dir: str | Path | None = None,
    show_progress: bool | None = False,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    r"""REINFORCE leave-one-out (RLOO) with a sequence-level KL penalty: RLHF's policy stage, in place.

    Each step takes ``batch_size`` prompts (epochs of random permutations), samples ``k``
    completions of each from the policy (``sampling.sample``, the ``sampling`` generator), and
    computes per completion the reward :math:`r` (``reward``), the sequence log-ratio
    :math:`\log\pi_\theta(y) - \log\mu(y)` (summed token log-probs, ``logprobs.token_logprobs``; the
    reference under ``no_grad``), the penalised reward :math:`R = r - \beta \log(\pi_\theta/\mu)`,
    the leave-one-out advantage (:func:`rloo_advantages`) and the loss (:func:`rloo_loss`); then one
    AdamW step (weight decay 0, constant ``lr``, clipping at ``max_grad_norm``).

    Parameters
    ----------
    policy : causal LM (GPT2LMHeadModel)
        Trained in place (eval mode: dropout off).
    ref_model : causal LM
        The frozen reference :math:`\mu` (the KL anchor); a different object on the same device.
    tokenizer : GPT-2 tokenizer
    prompts : list of str
    reward : reward model or callable
        A ``GPT2ForSequenceClassification`` from ``models.reward.reward_model`` (scored on the
        decoded completion text with ``score_texts``, the way it was trained), or
        ``fn(prompts, completions) -> (N,)`` rewards for a known reward.
    beta : float > 0
        KL strength (TRL's ``beta``; :math:`\beta` of Rafailov et al. Eq. (4)).
    k : int >= 2
        Completions per prompt (TRL's ``num_generations``).
    steps, batch_size : int >= 1
        Optimizer steps; prompts per step (``batch_size * k`` completions).
    lr : float > 0
    seed : int >= 0
        Seeds the ``minibatch`` and ``sampling`` generators (CPU).
    max_new_tokens, max_prompt_length : int >= 1
    max_grad_norm : float > 0 or None
    temperature : float > 0
        Sampling temperature (1: the policy itself, which the theory assumes).
    run_dir : path, optional
        Writes ``run_dir/run.jsonl`` (``runlog.RunLogger``).
    show_progress : bool or None
    callback : callable, optional
        ``callback(step, record)`` after each step (e.g. to measure the class distribution).

    Returns
    -------
    dict
        ``history``: per-step records with ``loss``, ``grad_norm``, ``reward`` (mean :math:`r`),
        ``kl`` (mean sequence log-ratio on the step's samples, an unbiased estimate of
        :math:`\mathrm{KL}(\pi_\theta\|\mu)` before the step), ``rlhf_reward`` (mean :math:`R`),
        ``advantage_abs`` (mean :math:`|A|`); ``steps``; ``log`` (path or None).

    Raises
    ------
    ValueError
        A bad argument, named; a reward callable that returns the wrong number of values or
        non-finite ones.

    References
    ----------
    Ahmadian et al., arXiv:2402.14740, Sec. 3.3; Ouyang et al., arXiv:2203.02155, Eq. (2) (the
    KL-penalised objective); Rafailov et al., arXiv:2305.18290v3, Eq. (4) (its optimum); TRL
    v1.13.0 ``RLOOTrainer``.
    """
    for name, lm in (("policy", policy), ("ref_model", ref_model)):
        if not isinstance(lm, torch.nn.Module):
            raise ValueError(
                f"{name} must be a causal LM (torch.nn.Module), got {type(lm).__name__}"
            )
    if policy is ref_model:
        raise ValueError(
            "policy and ref_model must be different objects (copy.deepcopy the policy)"
        )
    if model_device(policy) != model_device(ref_model):
        raise ValueError(
            f"policy and ref_model must be on one device, got {model_device(policy)} and "
            f"{model_device(ref_model)}"
        )
    eos, pad = check_tokenizer(tokenizer)
    prompts = validate_texts(prompts, "prompts")
    if not (isinstance(reward, torch.nn.Module) or callable(reward)):
        raise ValueError(
            f"reward must be a reward model or a callable fn(prompts, completions), got "
            f"{type(reward).__name__}"
        )
    beta = as_positive_float(beta, "beta")
    k = as_int(k, "k", minimum=2)
    steps = as_int(steps, "steps", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    lr = as_positive_float(lr, "lr")
    seed = as_int(seed, "seed", minimum=0)
    max_new_tokens = as_int(max_new_tokens, "max_new_tokens", minimum=1)
    max_prompt_length = as_int(max_prompt_length, "max_prompt_length", minimum=1)
    temperature = as_positive_float(temperature, "temperature")
    if max_grad_norm is not None:
        max_grad_norm = as_positive_float(max_grad_norm, "max_grad_norm")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {type(callback).__name__}")
    tokenize_prompts(tokenizer, prompts, max_length=max_prompt_length, name="prompts")  # lengths
    config = {
        "algorithm": "rloo",
        "beta": beta,
        "k": k,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "max_grad_norm": max_grad_norm,
    }
    logger = _logger(run_dir, config)
    minibatch = torch.Generator().manual_seed(seed)
    sampling = torch.Generator().manual_seed(seed + 1_000_003)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    policy.eval()
    ref_model.eval()
    order: list[int] = []
    history: list[dict[str, Any]] = []
    for step in progress(range(1, steps + 1), enabled=show_progress, desc="rloo"):
        rows: list[int] = []
        while len(rows) < batch_size:
            if not order:
                order = torch.randperm(len(prompts), generator=minibatch).tolist()
            rows.append(order.pop(0))
        texts_p = [prompts[i] for i in rows for _ in range(k)]  # k consecutive rows per prompt
        pb = tokenize_prompts(tokenizer, texts_p, max_length=max_prompt_length, name="prompts")
        s = sample(
            policy,
            pb["input_ids"],
            pb["attention_mask"],
            max_new_tokens=max_new_tokens,
            generator=sampling,
            eos_token_id=eos,
            pad_token_id=pad,
            temperature=temperature,
        )
        p_ids = [row[m.bool()].tolist() for row, m in zip(pb["input_ids"], pb["attention_mask"])]
        c_ids = [
            row[m.bool()].tolist()
            for row, m in zip(s.completion_ids.cpu(), s.completion_mask.cpu())
        ]
        completions = tokenizer.batch_decode(c_ids, skip_special_tokens=True)
        batch = build_batch(p_ids, c_ids, pad_token_id=pad, padding_side="right")
        args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        logps = token_logprobs(policy, *args).sum(dim=1)  # (Bk,) log pi(y | x)
        with torch.no_grad():
            ref_logps = token_logprobs(ref_model, *args).sum(dim=1)  # (Bk,) log mu(y | x)
        r = _reward_values(reward, tokenizer, texts_p, completions)  # (Bk,) float64, CPU
        log_ratio = (logps.detach() - ref_logps).to(device="cpu", dtype=torch.float64)
        total = r - beta * log_ratio  # (Bk,) the KL-penalised reward
        adv = rloo_advantages(total.view(batch_size, k))  # (B, k)
        loss = rloo_loss(logps.view(batch_size, k), adv)
        if not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(f"RLOO loss is not finite at step {step}")
        norm = _optimizer_step(policy, optimizer, loss, max_grad_norm)
        record = {
            "step": step,
            "loss": float(loss.detach()),
            "grad_norm": norm,
            "reward": float(r.mean()),
            "kl": float(log_ratio.mean()),
            "rlhf_reward": float(total.mean()),
            "advantage_abs": float(adv.abs().mean()),
        }
        history.append(record)
        if logger is not None:
            logger.log(step, {key: v for key, v in record.items() if key != "step"})
        if callback is not None:
            callback(step, record)
    return {"history": history, "steps": steps, "log": None if logger is None else str(logger.path)}
