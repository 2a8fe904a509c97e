r"""The rest of the preference family on GPT-2: KTO, ORPO, CPO / SimPO, R-DPO and DPOP.

Also the per-batch pieces of beta-DPO (``beta_dpo_batch``: the batch beta and the Gaussian
filter, Wu et al., arXiv:2407.08639v2) and RSO's rejection sampler (``rso_rejection_sample``, Liu
et al., arXiv:2309.06657v2, Algorithm 1), whose losses are ``objectives``' DPO / IPO / SLiC.

Like ``prefopt_toy.lm.objectives`` for the DPO family, this module turns sequence log-prob
tensors of shape (B,) into per-example losses and a metrics dict with TRL 1.13's names. Every
formula is the loss library's (``prefopt_toy.losses.unpaired``, ``.reference_free``, ``.shaped``,
``.pairwise``), the one the exact toy uses: nothing here re-derives a loss, it only composes the
library's functions from a batch and computes TRL's logged means.

Where TRL 1.13 and the papers part ways, the caller states which convention it wants:

- **KTO's reference point** :math:`z_0`. The paper's quantity is :math:`\mathrm{KL}(\pi\|\mu)`;
  TRL (and the paper's own implementation) estimate it by the batch mean of log-ratios of
  *mismatched* completions (each completion rotated onto the previous example's prompt), detached
  and clamped at 0. ``reference_point="trl"`` is that estimator, ``"unclamped"`` drops the clamp,
  a number is an exact KL (or any constant) supplied by the caller.
- **ORPO's NLL**. The paper's :math:`\mathcal L_{SFT}` is the chosen *response*'s per-token NLL;
  TRL (PR #2527) takes the cross-entropy over the chosen **prompt and completion** tokens,
  averaged over all the batch's tokens: one number for the batch. ``sft_nll_from_logits``
  computes either; ``orpo_batch_loss`` takes whichever the caller passes.
- **CPO / SimPO**. TRL's ``CPOConfig.cpo_alpha`` defaults to 1, which silently *adds* the chosen
  NLL (CPO-SimPO): pure SimPO needs ``cpo_alpha=0``. SimPO's margin is the absolute
  :math:`\gamma` in TRL (``simpo_gamma``), the ratio :math:`\gamma/\beta` in the official code.
  TRL's ``loss_type="sigmoid"`` (CPO proper) uses **summed** completion log-probs, its
  ``"simpo"`` per-token **means**; CPO's NLL covers the completion tokens only (ORPO's covers the
  prompt too).

Metrics are one process's batch (``float()`` them to log); TRL gathers over processes first.
TRL's ``logits/*``, ``entropy`` and ``num_tokens`` need the logits and are not reproduced here.

References
----------
Ethayarajh et al., arXiv:2402.01306v4 (KTO); Hong et al., arXiv:2403.07691v2 (ORPO); Xu et al.,
arXiv:2401.08417v4 (CPO); Meng et al., arXiv:2405.14734v3 (SimPO); Park et al., arXiv:2403.19159v3
(R-DPO); Pal et al., arXiv:2402.13228v3 (DPOP); TRL https://github.com/huggingface/trl v1.13.0
(``trl/trainer/kto_trainer.py``, ``trl/experimental/orpo/orpo_trainer.py``,
``trl/experimental/cpo/cpo_trainer.py``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from prefopt_toy._validate import as_positive_float
from prefopt_toy.losses.pairwise import dpo_loss, margin
from prefopt_toy.losses.reference_free import log_odds, odds_ratio_loss, orpo_loss, simpo_loss
from prefopt_toy.losses.shaped import DPOP_PLACEMENTS, dpop_loss, rdpo_loss
from prefopt_toy.losses.unpaired import kto_loss, kto_reference_point

from .logprobs import _check_batch, token_logprobs_from_logits
from .objectives import _check_shapes, _lengths, _logps, preference_metrics

__all__ = [
    "BETA_DPO_EMA",
    "BETA_DPO_FLOOR",
    "BetaDPOBatch",
    "CPO_LOSS_TYPES",
    "CPO_METRIC_NAMES",
    "KTO_METRIC_NAMES",
    "KTO_REFERENCE_POINTS",
    "NLL_REDUCTIONS",
    "NLL_TOKENS",
    "ORPO_METRIC_NAMES",
    "cpo_batch_loss",
    "dpop_batch_loss",
    "kto_batch_loss",
    "kto_mismatched_completions",
    "orpo_batch_loss",
    "rdpo_batch_loss",
    "beta_dpo_batch",
    "rso_rejection_sample",
    "sft_nll_from_logits",
]

KTO_REFERENCE_POINTS: tuple[str, ...] = ("trl", "unclamped")
"""The named reference points of ``kto_batch_loss``; a number is the third option."""

KTO_METRIC_NAMES: tuple[str, ...] = (
    "kl",
    "rewards/chosen",
    "logps/chosen",
    "rewards/rejected",
    "logps/rejected",
    "rewards/margins",
)
"""TRL ``KTOTrainer``'s loss metrics (``logits/*``, ``entropy``, ``num_tokens`` need the logits)."""

ORPO_METRIC_NAMES: tuple[str, ...] = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/rejected",
    "logps/chosen",
    "nll_loss",
    "log_odds_ratio",
    "log_odds_chosen",
)
"""TRL ``ORPOTrainer``'s metrics but ``logits/*``."""

CPO_METRIC_NAMES: tuple[str, ...] = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/rejected",
    "logps/chosen",
    "nll_loss",
)
"""TRL ``CPOTrainer``'s metrics but ``logits/*``."""

CPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "simpo")
"""TRL ``CPOConfig.loss_type`` values supported by ``cpo_batch_loss``."""

NLL_TOKENS: tuple[str, ...] = ("prompt_and_completion", "completion")
"""What ``sft_nll_from_logits`` scores: TRL ORPO's tokens, or the response only (paper, TRL CPO)."""

NLL_REDUCTIONS: tuple[str, ...] = ("batch_token_mean", "per_example_mean")
"""How ``sft_nll_from_logits`` averages: over all the batch's tokens (TRL), or per row (paper)."""

_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------
# input checks


def _choice(x: Any, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(x, str) or x not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {x!r}")
    return x


def _strictly_negative(t: Tensor, name: str) -> Tensor:
    """Log-probs < 0 (ORPO's odds are infinite at p = 1)."""
    if bool((t.detach() >= 0).any()):
        raise ValueError(
            f"{name} must be < 0 in every entry (a probability below 1: ORPO's odds are infinite "
            "at log p = 0)"
        )
    return t


def _nll(x: Any, name: str, like: Tensor) -> Tensor:
    """An NLL: a finite number >= 0, as a 0-d tensor, or a (B,) tensor of them; autograd kept."""
    if isinstance(x, Tensor):
        if x.is_complex() or not x.is_floating_point():
            raise ValueError(f"{name} must be a real floating tensor, got dtype {x.dtype}")
        t = x
    else:
        try:
            t = torch.tensor(x, dtype=like.dtype, device=like.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"{name} must be a number or a (B,) tensor, got {type(x).__name__}"
            ) from err
        if t.is_complex() or not t.is_floating_point():
            raise ValueError(f"{name} must be real numbers, got dtype {t.dtype}")
    if t.ndim != 0 and t.shape != like.shape:
        raise ValueError(
            f"{name} must be a number (TRL's batch token mean) or have shape {tuple(like.shape)}, "
            f"got {tuple(t.shape)}"
        )
    d = t.detach()
    if not bool(torch.isfinite(d).all()):
        raise ValueError(f"{name} must be finite, but it contains NaN or inf")
    if bool((d < 0).any()):
        raise ValueError(f"{name} must be >= 0 (a negative log-likelihood)")
    return t


def _hard_labels(x: Any, like: Tensor) -> Tensor:
    """KTO labels: a (B,) bool tensor or 0/1 values -> bool tensor on ``like``'s device."""
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"desirable must be a (B,) vector of bool labels, got {type(x).__name__}"
            ) from err
    if t.is_complex():
        raise ValueError(f"desirable must hold bool or 0/1 labels, got dtype {t.dtype}")
    if t.shape != like.shape:
        raise ValueError(
            f"desirable must have the shape of policy_logps {tuple(like.shape)}, got {tuple(t.shape)}"
        )
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(
                "desirable must hold only labels: True / 1 (desirable) or False / 0 (undesirable)"
            )
        t = t != 0
    return t.to(like.device)


def _finite_float(x: numbers.Real) -> float:
    try:
        return float(x)
    except OverflowError:
        return math.inf  # refused as non-finite by the caller


def _mean_or_none(x: Tensor, mask: Tensor) -> Tensor | None:
    return x[mask].mean() if bool(mask.any()) else None


# ---------------------------------------------------------------------------------------------
# KTO


def kto_mismatched_completions(completions: Sequence[_T], *, batch_size: int) -> list[_T]:
    r"""TRL's mismatched (KL) completions: each batch's completions rotated by one.

    Within each consecutive chunk of ``batch_size`` examples,
    :math:`(x_1, y_1), \dots, (x_n, y_n) \mapsto (x_1, y_n), (x_2, y_1), \dots, (x_n, y_{n-1})`:
    example i gets the completion of example i - 1 (the first gets the last). The KL term is then
    estimated on these pairs (``kto_batch_loss``'s ``policy_kl_logps``).

    A chunk of one example would be paired with its *own* completion, so its "KL" estimate is its
    implied reward (TRL issue #2554): refused here. TRL refuses ``per_device_train_batch_size=1``
    but still rotates a trailing partial chunk of one onto itself; here every chunk, the last one
    included, must hold at least two examples.

    Parameters
    ----------
    completions : sequence, length N
        Completions in batch order (token-id lists, strings, anything).
    batch_size : int >= 2
        TRL's ``per_device_train_batch_size`` (the rotation runs within each chunk, as TRL's
        ``dataset.map(..., batched=True, batch_size=per_device_train_batch_size)`` does).

    Returns
    -------
    list, length N
        ``out[i]`` is the completion paired with prompt ``i``.

    Raises
    ------
    ValueError
        ``batch_size`` not an integer >= 2, fewer than 2 completions, or a trailing chunk of one.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4.1 (mismatched pairs for the KL estimate); TRL
    v1.13.0 ``KTOTrainer._prepare_dataset`` (``add_kl_completion_ids``) and the ``calculate_kl``
    batch-size check; https://github.com/huggingface/trl/issues/2554.

    Examples
    --------
    >>> kto_mismatched_completions(["a", "b", "c", "d"], batch_size=2)
    ['b', 'a', 'd', 'c']
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(
            f"batch_size must be an integer >= 2: with one example per batch its mismatched "
            f"completion is its own and the KL estimate is its implied reward (TRL issue #2554), "
            f"got {batch_size!r}"
        )
    items = list(completions)
    if len(items) < 2:
        raise ValueError(
            f"completions must hold at least 2 completions (a batch of one has no mismatched "
            f"completion, TRL issue #2554), got {len(items)}"
        )
    if len(items) % batch_size == 1:
        raise ValueError(
            f"completions: the last chunk of batch_size={batch_size} holds one example "
            f"({len(items)} completions), which would be paired with its own completion (TRL rotates "
            "it onto itself; TRL issue #2554). Drop it or change the batch size"
        )
    out: list[_T] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        out.extend(chunk[-1:] + chunk[:-1])
    return out


def kto_batch_loss(
    policy_logps: Any,
    ref_logps: Any,
    policy_kl_logps: Any,
    ref_kl_logps: Any,
    desirable: Any,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    reference_point: str | float = "trl",
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Per-example KTO losses of a batch of summed log-probs, and TRL ``KTOTrainer``'s metrics.

    With implied rewards :math:`r_i = \log\pi(y_i|x_i) - \log\mu(y_i|x_i)` (the reference
    detached) and the reference point :math:`z_0` (no gradient),

    .. math::
        \ell_i = \lambda_D\,\bigl(1 - \sigma(\beta(r_i - z_0))\bigr) \text{ if } y_i \text{ desirable},
        \qquad \lambda_U\,\bigl(1 - \sigma(\beta(z_0 - r_i))\bigr) \text{ otherwise}

    (``prefopt_toy.losses.kto_loss``). TRL's loss is ``losses.mean()``.

    Parameters
    ----------
    policy_logps, ref_logps : Tensor, shape (B,)
        Summed completion log-probs of the matched pairs (TRL's ``completion_logps`` and
        ``ref_logps``). Gradients flow into ``policy_logps`` only.
    policy_kl_logps, ref_kl_logps : Tensor, shape (n,), or None
        Summed log-probs of the mismatched pairs (``kto_mismatched_completions``; TRL's
        ``KL_logps`` / ``ref_KL_logps``). Required by ``reference_point="trl"`` / ``"unclamped"``;
        must be None with a numeric reference point. Detached: TRL computes them under no_grad.
    desirable : bool Tensor or 0/1 values, shape (B,)
        TRL's ``label``: True for a desirable example.
    beta : float > 0
        TRL ``KTOConfig.beta`` (default 0.1).
    desirable_weight, undesirable_weight : float > 0, default 1
        :math:`\lambda_D`, :math:`\lambda_U` (TRL's names and defaults).
    reference_point : "trl", "unclamped" or float, default "trl"
        ``"trl"``: :math:`z_0 = \max(0, \overline{\log\pi(y'|x) - \log\mu(y'|x)})` over the
        mismatched pairs (``kto_reference_point``, TRL and the paper's implementation);
        ``"unclamped"``: the same mean without the clamp; a number: that :math:`z_0`, e.g. the
        exact :math:`\mathrm{KL}(\pi\|\mu)` of the paper's definition, when the caller has it.

    Returns
    -------
    losses : Tensor, shape (B,)
        In batch order (TRL concatenates the desirable then the undesirable ones; the mean is
        the same).
    metrics : dict of str to Tensor
        ``KTO_METRIC_NAMES``, detached 0-d tensors, TRL's definitions: ``kl`` the :math:`z_0`
        used; ``rewards/chosen`` / ``rewards/rejected`` the mean :math:`\beta r` over the
        desirable / undesirable examples; ``logps/chosen`` / ``logps/rejected`` the mean policy
        log-prob over them; ``rewards/margins`` the difference of the two reward means. As in
        TRL, a side absent from the batch has no ``rewards/``/``logps/`` entry, and
        ``rewards/margins`` needs both.

    Raises
    ------
    ValueError
        Log-probs not finite (B,) vectors of values <= 0 or of different shapes; labels not 0/1
        or misshapen; ``beta`` or a weight not > 0; an unknown or non-finite ``reference_point``;
        KL log-probs missing for ``"trl"`` / ``"unclamped"`` or given with a number.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306v4, Sec. 4 (the KTO loss, "Eqn (7)" in TRL's citation; the
    value function with :math:`z_0 = \mathrm{KL}(\pi_\theta\|\pi_{ref})`) and Sec. 4.1 (its
    estimate from mismatched pairs, clamped at 0); TRL v1.13.0 ``trl/trainer/kto_trainer.py``,
    ``KTOTrainer._compute_loss``
    (``loss_type="kto"``; the loss and the metrics).

    Examples
    --------
    >>> losses, m = kto_batch_loss([-1.0, -2.0], [-1.0, -1.0], None, None, [True, False], beta=1.0,
    ...                            reference_point=0.0)
    >>> [round(float(v), 6) for v in losses], float(m["rewards/margins"])  # r = (0, -1), z0 = 0
    ([0.5, 0.268941], 1.0)
    """
    pol = _logps(policy_logps, "policy_logps")
    ref = _logps(ref_logps, "ref_logps")
    _check_shapes(pol, "policy_logps", ref_logps=ref)
    labels = _hard_labels(desirable, pol)
    b = as_positive_float(beta, "beta")
    w_d = as_positive_float(desirable_weight, "desirable_weight")
    w_u = as_positive_float(undesirable_weight, "undesirable_weight")

    if isinstance(reference_point, str):
        clamp = _choice(reference_point, "reference_point", KTO_REFERENCE_POINTS) == "trl"
        if policy_kl_logps is None or ref_kl_logps is None:
            raise ValueError(
                f"policy_kl_logps and ref_kl_logps are required with reference_point="
                f"{reference_point!r} (the mismatched pairs, kto_mismatched_completions)"
            )
        pkl = _logps(policy_kl_logps, "policy_kl_logps").detach()
        rkl = _logps(ref_kl_logps, "ref_kl_logps").detach()
        _check_shapes(pkl, "policy_kl_logps", ref_kl_logps=rkl)
        z0 = kto_reference_point(pkl - rkl, clamp=clamp).to(pol.dtype)  # detached, ()
    else:
        if isinstance(reference_point, bool) or not isinstance(
            reference_point, (numbers.Real, Tensor)
        ):
            raise ValueError(
                f"reference_point must be one of {list(KTO_REFERENCE_POINTS)} or a number, "
                f"got {reference_point!r}"
            )
        if policy_kl_logps is not None or ref_kl_logps is not None:
            raise ValueError(
                "policy_kl_logps / ref_kl_logps are only used with reference_point='trl' or "
                "'unclamped'; got them with a numeric reference_point"
            )
        z = (
            reference_point.detach()
            if isinstance(reference_point, Tensor)
            else torch.tensor(_finite_float(reference_point), dtype=torch.float64)
        )
        if z.numel() != 1 or not bool(torch.isfinite(z.double()).all()):
            raise ValueError(f"reference_point must be a finite number, got {reference_point!r}")
        z0 = z.reshape(()).to(dtype=pol.dtype, device=pol.device)

    logratio = pol - ref.detach()  # (B,) implied rewards
    losses = kto_loss(logratio, z0, labels, b, w_d, w_u)  # (B,)

    with torch.no_grad():
        rewards = b * logratio.detach()  # (B,)
        metrics: dict[str, Tensor] = {"kl": z0.detach().to(losses.dtype)}
        for side, mask in (("chosen", labels), ("rejected", ~labels)):
            r_mean = _mean_or_none(rewards, mask)
            if r_mean is not None:
                metrics[f"rewards/{side}"] = r_mean
                metrics[f"logps/{side}"] = _mean_or_none(pol.detach(), mask)
        if "rewards/chosen" in metrics and "rewards/rejected" in metrics:
            metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    return losses, metrics


# ---------------------------------------------------------------------------------------------
# ORPO and its NLL


def sft_nll_from_logits(
    logits: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    *,
    tokens: str,
    reduction: str,
) -> Tensor:
    r"""The SFT term of ORPO / CPO: the chosen sequences' negative log-likelihood, two conventions.

    ``tokens`` chooses what is scored, ``reduction`` how it is averaged; neither has a default.

    ===========================  ======================  ======================================
    ``tokens``                   ``reduction``           who
    ===========================  ======================  ======================================
    ``"prompt_and_completion"``  ``"batch_token_mean"``  TRL 1.13 ``ORPOTrainer`` (PR #2527)
    ``"completion"``             ``"batch_token_mean"``  TRL 1.13 ``CPOTrainer`` (``cpo_alpha``)
    ``"completion"``             ``"per_example_mean"``  ORPO paper, Sec. 3: the response's
                                                         per-token NLL per example, which is
                                                         ``-chosen_avg_logps``
    ===========================  ======================  ======================================

    ``"batch_token_mean"`` is ``torch.nn.CrossEntropyLoss`` over every scored token of the batch,
    one number (a long sequence weighs more); ``"per_example_mean"`` is one mean per row.

    "prompt_and_completion" scores every real token that follows a real token: with right padding
    (TRL's collators) that is TRL's ``labels = where(attention_mask == 1, input_ids, -100)``
    shifted by one; with left padding TRL would also score each row's first real token from a pad
    position, which has no meaningful prediction and is left out here.

    Parameters
    ----------
    logits : Tensor, shape (B, T, V)
        The model's output on the chosen sequences (``logits[:, t]`` predicts ``input_ids[:, t+1]``).
    input_ids, attention_mask, completion_mask : Tensor, shape (B, T)
        As ``prefopt_toy.lm.logprobs`` takes them.
    tokens : {"prompt_and_completion", "completion"}
    reduction : {"batch_token_mean", "per_example_mean"}

    Returns
    -------
    Tensor, shape () for ``"batch_token_mean"``, (B,) for ``"per_example_mean"``
        Differentiable; float32 for float32 / half logits, float64 for float64.

    Raises
    ------
    ValueError
        An unknown ``tokens`` / ``reduction``; a malformed batch (``prefopt_toy.lm.logprobs``).

    References
    ----------
    Hong et al., arXiv:2403.07691v2, Sec. 3 (:math:`\mathcal L_{SFT}`, the response's per-token
    NLL); TRL v1.13.0
    ``ORPOTrainer.concatenated_forward`` ("orpo chosen nll loss is computed over the full prompt
    and response", PR #2527) and ``CPOTrainer.concatenated_forward`` (labels: completion only).
    """
    tokens = _choice(tokens, "tokens", NLL_TOKENS)
    reduction = _choice(reduction, "reduction", NLL_REDUCTIONS)
    if attention_mask is None:
        raise ValueError("attention_mask is required: a (B, T) 0/1 tensor, 1 on real tokens")
    attn, comp = _check_batch(input_ids, attention_mask, completion_mask)
    if tokens == "completion":
        scored = comp
    else:
        scored = torch.zeros_like(attn)
        scored[:, 1:] = attn[:, 1:] & attn[:, :-1]  # a real token predicted from a real token
    lp = token_logprobs_from_logits(logits, input_ids, scored)  # (B, T), 0 off `scored`
    mask = scored
    if reduction == "batch_token_mean":
        return -lp.sum() / mask.sum().to(lp.dtype)
    return -lp.sum(dim=1) / mask.sum(dim=1).to(lp.dtype)


def orpo_batch_loss(
    chosen_avg_logps: Any,
    rejected_avg_logps: Any,
    chosen_nll: Any,
    *,
    lam: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Per-pair ORPO losses of per-token mean log-probs, and TRL ``ORPOTrainer``'s metrics.

    .. math::
        \ell_i = \mathrm{NLL} + \lambda\,\bigl(-\log\sigma(\log\mathrm{odds}(y_w) -
        \log\mathrm{odds}(y_l))\bigr), \qquad \mathrm{odds}(y) = \frac{p}{1-p},\ \log p =
        \tfrac{1}{|y|}\log\pi(y|x)

    (``prefopt_toy.losses.orpo_loss``). TRL's loss is ``losses.mean()``.

    **The NLL is the caller's.** ``chosen_nll=None`` uses the paper's per-example
    :math:`-\log p(y_w)` (the chosen response's per-token NLL, the paper's
    :math:`\mathcal L_{SFT}`). TRL 1.13 uses one batch number, the cross-entropy over the chosen
    prompt **and** completion tokens averaged over all of them (PR #2527): ``sft_nll_from_logits(..., tokens="prompt_and_completion",
    reduction="batch_token_mean")``. They are different losses with different gradients.

    Parameters
    ----------
    chosen_avg_logps, rejected_avg_logps : Tensor, shape (B,)
        Per-token mean completion log-probs, each < 0 (TRL's ``average_log_prob=True``).
    chosen_nll : None, number, Tensor of shape () or (B,)
        The SFT term, >= 0 (see above). A tensor keeps its gradient.
    lam : float > 0
        :math:`\lambda` (TRL ``ORPOConfig.beta``, default 0.1).

    Returns
    -------
    losses : Tensor, shape (B,)
    metrics : dict of str to Tensor
        ``ORPO_METRIC_NAMES``, detached 0-d tensors, TRL's definitions: ``rewards/*`` are
        :math:`\lambda` times the mean log-probs (TRL logs ``beta * logps``), ``rewards/accuracies``
        the fraction with chosen > rejected, ``nll_loss`` the mean NLL, ``log_odds_chosen`` the
        mean log odds *ratio* :math:`\log\mathrm{odds}(y_w) - \log\mathrm{odds}(y_l)` and
        ``log_odds_ratio`` the mean of its log-sigmoid (TRL's names, swapped in meaning).

    Raises
    ------
    ValueError
        Log-probs not finite (B,) vectors of values < 0 or of different shapes; ``chosen_nll``
        negative, non-finite or misshapen; ``lam`` not > 0.

    References
    ----------
    Hong et al., arXiv:2403.07691v2, Sec. 3 and Eq. (6)-(7) (:math:`\mathcal L_{ORPO} =
    \mathcal L_{SFT} + \lambda \mathcal L_{OR}`); TRL v1.13.0
    ``trl/experimental/orpo/orpo_trainer.py``, ``ORPOTrainer.odds_ratio_loss`` and
    ``get_batch_loss_metrics`` (TRL computes the odds term in float32).

    Examples
    --------
    >>> half = -0.6931471805599453  # log 1/2
    >>> losses, m = orpo_batch_loss([half], [half], None, lam=1.0)
    >>> round(float(losses[0]), 6), round(float(m["log_odds_ratio"]), 6)  # ln 2 + ln 2, -ln 2
    (1.386294, -0.693147)
    """
    w = _strictly_negative(_logps(chosen_avg_logps, "chosen_avg_logps"), "chosen_avg_logps")
    lo = _strictly_negative(_logps(rejected_avg_logps, "rejected_avg_logps"), "rejected_avg_logps")
    _check_shapes(w, "chosen_avg_logps", rejected_avg_logps=lo)
    lam_v = as_positive_float(lam, "lam")
    nll = None if chosen_nll is None else _nll(chosen_nll, "chosen_nll", w)
    losses = orpo_loss(w, lo, lam_v, nll)  # (B,): a 0-d nll broadcasts

    with torch.no_grad():
        wd, ld = w.detach(), lo.detach()
        lo_ratio = log_odds(wd) - log_odds(ld)  # (B,)
        nll_value = -wd if nll is None else nll.detach()
        metrics = _reward_metrics(wd, ld, lam_v)
        metrics["nll_loss"] = nll_value.to(losses.dtype).mean()
        metrics["log_odds_ratio"] = -odds_ratio_loss(lo_ratio, torch.zeros_like(lo_ratio)).mean()
        metrics["log_odds_chosen"] = lo_ratio.mean()
    return losses, metrics


def _reward_metrics(w: Tensor, lo: Tensor, scale: float) -> dict[str, Tensor]:
    """TRL ORPO / CPO's ``rewards/*`` and ``logps/*``: rewards are ``scale * logps`` (no reference)."""
    rw, rl = scale * w, scale * lo
    return {
        "rewards/chosen": rw.mean(),
        "rewards/rejected": rl.mean(),
        "rewards/accuracies": (rw > rl).to(rw.dtype).mean(),
        "rewards/margins": (rw - rl).mean(),
        "logps/rejected": lo.mean(),
        "logps/chosen": w.mean(),
    }


# ---------------------------------------------------------------------------------------------
# CPO and SimPO


def cpo_batch_loss(
    chosen_logps: Any,
    rejected_logps: Any,
    chosen_nll: Any,
    *,
    loss_type: str,
    beta: float,
    cpo_alpha: float,
    simpo_gamma: float | None = None,
    gamma_beta_ratio: float | None = None,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Per-pair CPO / SimPO losses as TRL ``CPOTrainer`` composes them, and its metrics.

    .. math::
        \ell_i = \ell_{\text{pref}}(s_w, s_l) + \alpha_{\text{CPO}}\,\mathrm{NLL}

    with the preference term

    - ``loss_type="sigmoid"`` (CPO's preference term, "Equation 3" in TRL's citation):
      ``dpo_loss(s_w - s_l, beta,
      label_smoothing)``, DPO with a uniform reference, on **summed** log-probs as TRL feeds it;
    - ``loss_type="simpo"`` (SimPO, Meng et al. Eq. 6): ``simpo_loss(s_w, s_l, beta, gamma,
      label_smoothing=...)``, :math:`-\log\sigma(\beta(s_w - s_l) - \gamma)` on per-token
      **means** as TRL feeds it.

    **The NLL term.** TRL's ``cpo_alpha`` defaults to **1**: ``loss_type="simpo"`` with TRL's
    defaults is CPO-SimPO (SimPO plus the chosen completion's NLL), not SimPO; pure SimPO needs
    ``cpo_alpha=0``. Here ``cpo_alpha`` has no default. TRL's NLL is the cross-entropy over the
    chosen **completion** tokens, averaged over the batch's tokens
    (``sft_nll_from_logits(..., tokens="completion", reduction="batch_token_mean")``).

    **SimPO's margin.** ``simpo_gamma`` is the paper's absolute :math:`\gamma` (TRL's
    ``simpo_gamma``, default 0.5 there); ``gamma_beta_ratio`` the official code's
    :math:`\gamma/\beta` (0.5 with beta 2 to 2.5). Give exactly one with ``"simpo"``; the two agree
    when ``simpo_gamma = gamma_beta_ratio * beta``.

    Parameters
    ----------
    chosen_logps, rejected_logps : Tensor, shape (B,)
        Policy completion log-probs :math:`s_w, s_l`: sums for ``"sigmoid"``, per-token means for
        ``"simpo"`` (TRL's ``average_log_prob = loss_type in ["ipo", "simpo"]``).
    chosen_nll : None, number, Tensor of shape () or (B,)
        The SFT term (>= 0). Required when ``cpo_alpha > 0``; ignored (TRL logs ``nll_loss = 0``)
        and may be None when ``cpo_alpha == 0``.
    loss_type : {"sigmoid", "simpo"}
    beta : float > 0
        TRL ``CPOConfig.beta`` (default 0.1).
    cpo_alpha : float >= 0
        Weight of the NLL term (TRL default 1; 0 for pure SimPO / pure CPO preference term).
    simpo_gamma, gamma_beta_ratio : float >= 0, optional
        SimPO's margin, one of the two (``"simpo"`` only).
    label_smoothing : float in [0, 0.5), default 0
        TRL ``CPOConfig.label_smoothing`` (both loss types).

    Returns
    -------
    losses : Tensor, shape (B,)
        TRL's loss is ``losses.mean()`` (= mean preference term + ``cpo_alpha`` * NLL).
    metrics : dict of str to Tensor
        ``CPO_METRIC_NAMES``, detached 0-d tensors: ``rewards/*`` are ``beta`` times the given
        log-probs (sums or means, as given), ``nll_loss`` the mean NLL (0 when ``cpo_alpha == 0``).

    Raises
    ------
    ValueError
        Log-probs not finite (B,) vectors of values <= 0 or of different shapes; an unknown
        ``loss_type``; ``beta <= 0``; ``cpo_alpha < 0``; ``chosen_nll`` missing with
        ``cpo_alpha > 0``, negative or misshapen; SimPO margins missing, both given, negative, or
        given with ``"sigmoid"``; ``label_smoothing`` outside [0, 0.5).

    References
    ----------
    Xu et al., arXiv:2401.08417v4, Sec. 3 (CPO: the reference-free preference term plus the NLL
    of the preferred response); Meng et al., arXiv:2405.14734v3, Eq. (6) (SimPO); TRL v1.13.0
    ``trl/experimental/cpo/cpo_trainer.py``, ``CPOTrainer.cpo_loss``, ``concatenated_forward`` and
    ``get_batch_loss_metrics``; ``princeton-nlp/SimPO`` (``gamma_beta_ratio``).

    Examples
    --------
    >>> losses, _ = cpo_batch_loss([-1.0], [-2.0], None, loss_type="simpo", beta=2.0,
    ...                            cpo_alpha=0.0, gamma_beta_ratio=0.5)
    >>> round(float(losses[0]), 6)  # -log sigma(2 * 1 - 1)
    0.313262
    """
    loss_type = _choice(loss_type, "loss_type", CPO_LOSS_TYPES)
    w = _logps(chosen_logps, "chosen_logps")
    lo = _logps(rejected_logps, "rejected_logps")
    _check_shapes(w, "chosen_logps", rejected_logps=lo)
    b = as_positive_float(beta, "beta")
    alpha = as_positive_float(cpo_alpha, "cpo_alpha", allow_zero=True)

    if simpo_gamma is not None:
        simpo_gamma = as_positive_float(simpo_gamma, "simpo_gamma", allow_zero=True)
    if gamma_beta_ratio is not None:
        gamma_beta_ratio = as_positive_float(gamma_beta_ratio, "gamma_beta_ratio", allow_zero=True)
    if loss_type == "simpo":
        if simpo_gamma is None and gamma_beta_ratio is None:
            raise ValueError(
                "simpo_gamma (the absolute margin, TRL's simpo_gamma, default 0.5 there) or "
                "gamma_beta_ratio (gamma / beta, the official code's) is required with "
                "loss_type='simpo'; pass 0 for no margin"
            )
        pref = simpo_loss(
            w,
            lo,
            b,
            simpo_gamma,
            gamma_beta_ratio=gamma_beta_ratio,
            label_smoothing=label_smoothing,
        )
    else:
        if simpo_gamma is not None or gamma_beta_ratio is not None:
            raise ValueError(
                "simpo_gamma / gamma_beta_ratio are only used with loss_type='simpo', got one "
                "with loss_type='sigmoid'"
            )
        pref = dpo_loss(w - lo, b, label_smoothing)  # CPO: DPO with a uniform reference

    if alpha == 0.0:
        nll = None
        if chosen_nll is not None:
            _nll(chosen_nll, "chosen_nll", w)  # still a well-formed NLL
        losses = pref
    else:
        if chosen_nll is None:
            raise ValueError(
                f"chosen_nll is required with cpo_alpha={alpha} > 0 (TRL's NLL is the chosen "
                "completion's cross-entropy over the batch's tokens: sft_nll_from_logits(..., "
                "tokens='completion', reduction='batch_token_mean')); pass cpo_alpha=0 for pure "
                "SimPO / CPO without it"
            )
        nll = _nll(chosen_nll, "chosen_nll", w)
        losses = pref + alpha * nll.to(pref.dtype)

    with torch.no_grad():
        metrics = _reward_metrics(w.detach(), lo.detach(), b)
        metrics["nll_loss"] = (
            torch.zeros((), dtype=losses.dtype, device=losses.device)
            if nll is None
            else nll.detach().to(losses.dtype).mean()
        )
    return losses, metrics


# ---------------------------------------------------------------------------------------------
# R-DPO and DPOP


def rdpo_batch_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    *,
    beta: float,
    alpha: float,
    chosen_lengths: Any,
    rejected_lengths: Any,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Per-pair R-DPO losses of summed log-probs, and DPO's TRL metrics.

    .. math:: \ell = -\log\sigma\bigl(\beta h + \alpha(|y_w| - |y_l|)\bigr)

    (``prefopt_toy.losses.rdpo_loss`` on the margin :math:`h`, the reference detached). TRL 1.13
    has no R-DPO; the metrics are ``preference_metrics`` with scale ``beta``.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps : Tensor, shape (B,)
        Summed completion log-probs.
    beta : float > 0
    alpha : float >= 0
        Length weight (0 gives DPO).
    chosen_lengths, rejected_lengths : array-like, shape (B,)
        Completion lengths in tokens (>= 1).

    Returns
    -------
    losses : Tensor, shape (B,)
    metrics : dict of str to Tensor
        ``prefopt_toy.lm.objectives.METRIC_NAMES``.

    Raises
    ------
    ValueError
        Bad log-probs, shapes, lengths, ``beta <= 0`` or ``alpha < 0``.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3 (length-regularised DPO).

    Examples
    --------
    >>> losses, _ = rdpo_batch_loss([-2.0], [-2.0], [-2.0], [-2.0], beta=0.1, alpha=0.5,
    ...                             chosen_lengths=[3], rejected_lengths=[1])
    >>> round(float(losses[0]), 6)  # -log sigma(0.5 * 2)
    0.313262
    """
    beta = as_positive_float(beta, "beta")
    metrics = preference_metrics(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, scale=beta
    )
    pc = _logps(policy_chosen_logps, "policy_chosen_logps")
    pr = _logps(policy_rejected_logps, "policy_rejected_logps")
    rc = _logps(ref_chosen_logps, "ref_chosen_logps").detach()
    rr = _logps(ref_rejected_logps, "ref_rejected_logps").detach()
    len_w = _lengths(chosen_lengths, "chosen_lengths", pc)
    len_l = _lengths(rejected_lengths, "rejected_lengths", pc)
    h = margin(pc, pr, rc, rr)  # (B,)
    return rdpo_loss(h, beta, alpha, len_w, len_l), metrics


def dpop_batch_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    *,
    beta: float,
    lam: float,
    placement: str = "inside",
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Per-pair DPOP (DPO-Positive) losses of summed log-probs, and DPO's TRL metrics.

    .. math::
        \text{inside: } -\log\sigma\bigl(\beta(h - \lambda p)\bigr), \quad
        \text{outside: } -\log\sigma(\beta h) + \lambda p, \qquad
        p = \max(0, \log\mu(y_w) - \log\pi(y_w))

    (``prefopt_toy.losses.dpop_loss``; the reference detached). TRL 1.13 has no DPOP.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps : Tensor, shape (B,)
        Summed completion log-probs.
    beta : float > 0
    lam : float >= 0
        Penalty weight (50 in the paper).
    placement : {"inside", "outside"}, default "inside"
        The authors' corrected paper (v3) puts the penalty inside the sigmoid; many ports outside.

    Returns
    -------
    losses : Tensor, shape (B,)
    metrics : dict of str to Tensor
        ``prefopt_toy.lm.objectives.METRIC_NAMES``, scale ``beta``.

    Raises
    ------
    ValueError
        Bad log-probs or shapes, ``beta <= 0``, ``lam < 0``, unknown ``placement``.

    References
    ----------
    Pal et al., arXiv:2402.13228v3, Sec. 3 (DPOP).

    Examples
    --------
    >>> losses, _ = dpop_batch_loss([-3.0], [-2.0], [-2.0], [-2.0], beta=1.0, lam=1.0,
    ...                             placement="outside")
    >>> round(float(losses[0]), 6)  # softplus(1) + 1
    2.313262
    """
    _choice(placement, "placement", DPOP_PLACEMENTS)
    beta = as_positive_float(beta, "beta")
    metrics = preference_metrics(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, scale=beta
    )
    pc = _logps(policy_chosen_logps, "policy_chosen_logps")
    pr = _logps(policy_rejected_logps, "policy_rejected_logps")
    rc = _logps(ref_chosen_logps, "ref_chosen_logps").detach()
    rr = _logps(ref_rejected_logps, "ref_rejected_logps").detach()
    h = margin(pc, pr, rc, rr)  # (B,)
    return dpop_loss(h, pc - rc, beta, lam, placement), metrics


# ---------------------------------------------------------------------------------------------
# beta-DPO's batch beta and filter, RSO's rejection sampler

BETA_DPO_EMA: float = 0.9
"""beta-DPO's running-average weight (the official code's ``gamma=0.9``; the toy's ``EMA``)."""
BETA_DPO_FLOOR: float = 1e-3
"""beta-DPO's clamp of the batch beta (the official code's; the toy's ``BETA_FLOOR``)."""


@dataclass(frozen=True)
class BetaDPOBatch:
    """One batch of beta-DPO: what ``beta_dpo_batch`` returns."""

    beta: float
    """The batch beta :math:`\\beta_b` (detached, clamped at ``BETA_DPO_FLOOR``)."""
    keep: Tensor
    """(m,) int64, the kept pairs' positions in the batch, increasing."""
    running_mean: float
    """:math:`M` after this batch's update."""
    running_std: float
    """:math:`S` after this batch's update."""
    margin_mean: float
    """The batch mean of the margins (all pairs)."""
    margin_std: float
    """The batch's unbiased standard deviation of the margins (all pairs, ``torch.std``)."""


def beta_dpo_batch(
    margins: Any,
    running_mean: float,
    running_std: float,
    *,
    beta: float,
    a: float,
    mode_weight: float,
    generator: torch.Generator | None = None,
) -> BetaDPOBatch:
    r"""beta-DPO's batch-level beta and data filter on one batch of margins (no gradient).

    The toy's sampled minibatch step (``prefopt_toy.dynamics.beta_dpo``, ``minibatches="sampled"``),
    which follows the official code (``junkangwu/beta-DPO``, ``trainers.py``):

    1. :math:`M \leftarrow 0.9 M + 0.1\,\bar h`, :math:`S \leftarrow 0.9 S + 0.1\,s_h` (the batch
       mean and unbiased standard deviation of the margins :math:`h_i`; both start at 0), **before**
       the loss;
    2. keep :math:`m = \max(1, \lfloor B (1 - \text{mode\_weight}) \rfloor)` pairs drawn without
       replacement (``torch.multinomial``) with weights :math:`\exp(-\frac12((h_i - M)/S)^2)`
       (all 1 while :math:`S = 0`; shifted so the largest is 1, none below the smallest normal
       float); with :math:`m = B` every pair is kept and nothing is drawn;
    3. :math:`\beta_b = \max(10^{-3}, \beta (1 + a (\bar h_{kept} - M)))`.

    The loss is then DPO with :math:`\beta_b` on the kept pairs (the caller's, through
    ``objectives.preference_loss``). With ``a = 0`` and ``mode_weight = 0`` it is DPO exactly.

    Parameters
    ----------
    margins : Tensor, shape (B,), B >= 2
        The log-ratio margins :math:`h_i` (detached here).
    running_mean, running_std : float
        :math:`M`, :math:`S` before this batch.
    beta : float > 0
        :math:`\beta_0`.
    a : float >= 0
        The scaling of the batch beta (Wu et al.'s :math:`\alpha`).
    mode_weight : float in [0, 1)
        The fraction of the batch dropped (the official code's name).
    generator : torch.Generator, optional
        Draws the kept pairs; required when some pair is dropped.

    Returns
    -------
    BetaDPOBatch

    Raises
    ------
    ValueError
        Margins not a finite vector of at least 2; a bad ``beta``, ``a`` or ``mode_weight``; no
        ``generator`` when pairs are dropped.

    References
    ----------
    Wu et al., arXiv:2407.08639v2, Sec. 4.1, Eq. (7) (dynamic beta calibration,
    :math:`\beta_{batch} = [1 + \alpha(\mathbb E_{i\sim batch}[M_i] - M_0)]\beta_0`, :math:`M_0` a
    moving average) and Sec. 4.2 (beta-guided data filtering by the Gaussian weights
    :math:`p(M_i) \propto \exp(-\frac12((M_i - M_0)/\sigma)^2)`); official code
    ``junkangwu/beta-DPO`` ``trainers.py::preference_loss``.
    """
    h = _logps_like(margins, "margins")
    if h.numel() < 2:
        raise ValueError(
            f"margins must hold at least 2 values (a standard deviation), got {h.numel()}"
        )
    b = as_positive_float(beta, "beta")
    a = as_positive_float(a, "a", allow_zero=True)
    drop = float(mode_weight)
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"mode_weight must be in [0, 1), got {mode_weight!r}")
    h = h.detach().to("cpu", torch.float64)
    mean, std = float(h.mean()), float(h.std())
    M = BETA_DPO_EMA * float(running_mean) + (1 - BETA_DPO_EMA) * mean
    S = BETA_DPO_EMA * float(running_std) + (1 - BETA_DPO_EMA) * std
    B = h.numel()
    n_keep = max(int(B * (1 - drop)), 1)
    if n_keep >= B:
        keep = torch.arange(B)
        used = mean
    else:
        if generator is None:
            raise ValueError("generator is required when mode_weight drops pairs")
        z2 = ((h - M) / S) ** 2 if S > 0 else torch.zeros_like(h)
        w = (-0.5 * (z2 - z2.min())).exp().clamp_min(torch.finfo(h.dtype).tiny)
        keep = torch.multinomial(w, n_keep, replacement=False, generator=generator).sort().values
        mask = torch.zeros_like(h)
        mask[keep] = 1.0
        used = float((mask * h).sum() / mask.sum())  # the toy's kept mean
    beta_b = max(b * (1 + a * (used - M)), BETA_DPO_FLOOR)
    return BetaDPOBatch(beta_b, keep, M, S, mean, std)


def _logps_like(x: Any, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=torch.float64)
    if t.ndim != 1 or t.is_complex() or not t.is_floating_point():
        raise ValueError(f"{name} must be a real (B,) vector, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} must be finite, but it contains NaN or inf")
    return t


def rso_rejection_sample(
    rewards: Any, n_accept: int, *, beta: float, generator: torch.Generator
) -> tuple[list[int], int]:
    r"""Statistical rejection sampling (RSO's Algorithm 1): accept ``n_accept`` of the candidates.

    The candidates are draws from the reference :math:`\mu`; the accepted ones are (approximately,
    exactly as the candidates grow) draws from :math:`\pi_r \propto \mu\,e^{r/\beta}`. Algorithm 1
    as the paper's Python listing writes it: repeat passes over the remaining candidates (in their
    order); in a pass, with :math:`r_{max}` the largest remaining reward, accept each candidate with
    probability :math:`\exp((r - r_{max})/\beta)` (one uniform each, from ``generator``), stop
    once ``n_accept`` are accepted, and remove the accepted ones before the next pass.

    Parameters
    ----------
    rewards : (N,) real, N >= n_accept
        The reward model's scores of the candidates.
    n_accept : int >= 1
    beta : float > 0
        :math:`\beta` of :math:`\pi_r` (the paper's :math:`\beta`; large: accepts everything).
    generator : torch.Generator

    Returns
    -------
    accepted : list of int
        The accepted candidates' indices, in the order accepted.
    tried : int
        The candidates examined (accepted or not): ``n_accept / tried`` is the acceptance rate.

    Raises
    ------
    ValueError
        Rewards not a finite vector with at least ``n_accept`` entries, ``n_accept < 1``,
        ``beta <= 0``.

    References
    ----------
    Liu et al., arXiv:2309.06657v2, Sec. 3.1 and Algorithm 1 (``conduct_rejection_sampling``).

    Examples
    --------
    >>> gen = torch.Generator().manual_seed(0)
    >>> rso_rejection_sample([0.0, 1.0, 2.0], 3, beta=1e12, generator=gen)
    ([0, 1, 2], 3)
    """
    r = _logps_like(rewards, "rewards").detach().to("cpu", torch.float64)
    if isinstance(n_accept, bool) or not isinstance(n_accept, int) or n_accept < 1:
        raise ValueError(f"n_accept must be an integer >= 1, got {n_accept!r}")
    if n_accept > r.numel():
        raise ValueError(
            f"rewards must hold at least n_accept={n_accept} candidates, got {r.numel()}"
        )
    b = as_positive_float(beta, "beta")
    remaining = list(range(r.numel()))
    accepted: list[int] = []
    tried = 0
    while len(accepted) < n_accept:
        r_max = float(r[remaining].max())
        taken = []
        u = torch.rand(len(remaining), generator=generator, dtype=torch.float64)
        for j, i in enumerate(remaining):
            tried += 1
            if float(u[j]) >= math.exp((float(r[i]) - r_max) / b):
                continue
            accepted.append(i)
            taken.append(i)
            if len(accepted) == n_accept:
                break
        remaining = [i for i in remaining if i not in taken]
    return accepted, tried
