r"""The GPT-2 trainer's online step: pairs sampled from the policy or the mixture, labels, the loss.

``OnlineSteps`` is the mixin that ``prefopt_toy.lm.trainer.Trainer`` inherits its online step from:
``draw_online`` (two completions per prompt from ``SG[pi]`` or ``SG[pi^(1-m) mu^m]``, the ``sampling``
generator, then the judge's probabilities and the label weights from the ``labels`` generator, an
``OnlineDraw``), ``online_pairs_loss`` (the per-pair loss on a draw: online DPO/IPO, IPO-MD, or the
Nash-MD-PG surrogate, the reference log-probs computed under ``torch.no_grad``, each pair ordered
so that "chosen" is favoured) and ``online_loss`` (both). It also holds the two batch helpers both
halves use, ``_sequence_logps`` and ``_trim``. The mixin reads the trainer's ``config``, ``model``,
``ref_model``, ``tokenizer``, ``judge``, ``prompts``, ``prompt_max``, ``generators``, ``step`` and
``last_checkpoint``, and sets ``last_pairs`` and ``last_label_weights``. Every name here is also
importable from ``prefopt_toy.lm.trainer``.

Devices: pairs and label weights are built on the CPU; ``_sequence_logps`` moves each batch to the
model's device (``data.to_device``) right before its forward pass, and the label weights are moved
to the loss's device. The CUDA path is written but was not run on a GPU here.

References: as :mod:`prefopt_toy.lm.trainer`, the module this one was split from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .checkpoint import check_finite
from .data import model_device, to_device, tokenize_prompts
from .judges import judge_probs
from .logprobs import token_logprobs
from .objectives import preference_loss
from .online import SampledPairs, label_weights, nash_md_pg_surrogate, sample_pairs

__all__ = ["OnlineDraw", "OnlineSteps"]


@dataclass(frozen=True)
class OnlineDraw:
    """One step's online pairs on this rank: what ``Trainer.draw_online`` returns.

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 4 (soft labels from preference probabilities).
    """

    pairs: SampledPairs
    """Two completions per prompt: rows ``[:B]`` are ``a``, rows ``[B:]`` are ``b``."""
    probs: Tensor
    """(B,) float64, the judge's Pr(a beats b)."""
    weights: Tensor
    """(B,) float64, the label weight w of "a wins" (``online.label_weights``)."""


def _sequence_logps(model, batch: dict[str, Tensor], reduction: str) -> tuple[Tensor, Tensor, Tensor]:
    """(reduced log-probs (N,), summed log-probs (N,), lengths (N,)) of a right-padded batch, all
    three on the model's device (the batch is moved there first)."""
    batch = to_device(batch, model_device(model))
    tok = token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])  # (N, T)
    summed = tok.sum(dim=1)  # (N,)  zero outside the completion
    lengths = batch["completion_mask"].sum(dim=1).to(summed.dtype)  # (N,)
    return (summed if reduction == "sum" else summed / lengths), summed, lengths


def _trim(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop trailing columns that are padding in every row (right-padded batches)."""
    t = int(batch["attention_mask"].sum(dim=1).max())
    return {k: v[:, :t] for k, v in batch.items()}


class OnlineSteps:
    """The online step of ``Trainer`` (a mixin): draw pairs, label them, and their loss.

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1 (online IPO, IPO-MD); Munos et al., arXiv:2312.00886v4
    (Nash-MD-PG); TRL v1.13.0 (``OnlineDPOTrainer``, ``NashMDTrainer``, metric names).
    """

    def online_loss(self, rows: list[int]) -> tuple[Tensor, dict[str, Any]]:
        """Sample pairs for the prompts ``rows``, label them with the judge, and return the loss."""
        return self.online_pairs_loss(self.draw_online(rows))

    def draw_online(self, rows: list[int]) -> OnlineDraw:
        """Two completions for each prompt of ``rows`` (``sampling`` generator) and their labels."""
        cfg = self.config
        prompts = tokenize_prompts(self.tokenizer, [self.prompts[i] for i in rows], max_length=self.prompt_max)
        m_a = cfg.mixture if cfg.source == "mixture" else 0.0
        m_b = 0.0 if cfg.source == "online" else cfg.mixture
        pairs = sample_pairs(self.model, self.ref_model, self.tokenizer, prompts, mixture_a=m_a, mixture_b=m_b,
                             max_new_tokens=cfg.max_new_tokens, generator=self.generators["sampling"],
                             temperature=cfg.temperature)
        self.last_pairs = pairs
        probs = judge_probs(self.judge, pairs.texts_a, pairs.texts_b)  # (B,) float64, checked in [0, 1]
        w = label_weights(probs, cfg.labels, judge=self.judge, texts_a=pairs.texts_a, texts_b=pairs.texts_b,
                          generator=self.generators["labels"], n_samples=cfg.n_label_samples)
        self.last_label_weights = w
        return OnlineDraw(pairs, probs, w)

    def online_pairs_loss(self, draw: OnlineDraw) -> tuple[Tensor, dict[str, Any]]:
        """Mean loss and metrics on drawn pairs (reference log-probs computed here, no gradient)."""
        cfg, pairs, probs, w = self.config, draw.pairs, draw.probs, draw.weights
        B = len(pairs.texts_a)
        batch = _trim({"input_ids": pairs.input_ids, "attention_mask": pairs.attention_mask,
                       "completion_mask": pairs.completion_mask})
        metrics: dict[str, Any] = {}
        if cfg.source == "nash_md_pg":  # only y (rows [:B]) needs the policy's gradient
            half = _trim({k: v[:B] for k, v in batch.items()})
            lp, summed, _ = _sequence_logps(self.model, half, cfg.reduction)
            check_finite(lp.detach(), step=self.step + 1, last_good=self.last_checkpoint, name="policy log-probs")
            with torch.no_grad():
                ref, ref_summed, _ = _sequence_logps(self.ref_model, half, cfg.reduction)
            loss = nash_md_pg_surrogate(lp, ref, w, tau=cfg.tau).mean()
            metrics.update({"rewards/probabilities": probs.mean(), "logps/chosen": summed.detach().mean(),
                            "kl": (summed.detach() - ref_summed).mean()})
            return loss, metrics
        lp, summed, lengths = _sequence_logps(self.model, batch, cfg.reduction)
        check_finite(lp.detach(), step=self.step + 1, last_good=self.last_checkpoint, name="policy log-probs")
        with torch.no_grad():
            ref, ref_summed, _ = _sequence_logps(self.ref_model, batch, cfg.reduction)
        # order each pair so that "chosen" is favoured (w >= 1/2): w l(h) + (1-w) l(-h) is unchanged
        w = to_device(w, lp.device)  # the judge's weights (CPU, float64) on the loss's device
        swap = w < 0.5
        perm = torch.arange(2 * B, device=lp.device)
        perm = torch.where(torch.cat([swap, swap]), (perm + B) % (2 * B), perm)
        lp, ref, lengths = lp[perm], ref[perm], lengths[perm]
        weight = torch.maximum(w, 1.0 - w).to(lp.dtype)
        extra = {"chosen_lengths": lengths[:B], "rejected_lengths": lengths[B:]} if cfg.reduction == "mean" else {}
        losses, pm = preference_loss(lp[:B], lp[B:], ref[:B], ref[B:], **cfg.loss_kwargs(), label_weight=weight, **extra)
        metrics.update(pm)
        metrics["labels/weight"] = weight.mean()
        if cfg.source == "online":  # both completions from the policy: an unbiased KL estimate
            metrics["kl"] = (summed.detach() - ref_summed).mean()
        return losses.mean(), metrics
