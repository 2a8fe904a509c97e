r"""The GPT-2 trainer's evaluation: KL estimate, win rate and class distribution on fresh samples.

``Evaluation`` is the mixin that ``prefopt_toy.lm.trainer.Trainer`` inherits ``evaluate`` from.
Every ``eval_every`` steps (and at step 0) rank 0 draws ``n_eval`` completions from the policy
``SG[pi]`` and ``n_eval`` from the reference ``SG[mu]`` for the evaluation prompts (cycled), and
reports ``eval/kl``, the estimator :math:`\frac1n\sum_i \sum_t [\log\pi(y_{i,t}) - \log\mu(y_{i,t})]`
of KL(pi || mu) on the policy's samples (weights after the step); ``win_rate``, the mean judge
probability that a policy sample beats a reference sample; and, for a lifted game,
``class_distribution`` (``judge.class_distribution`` of the policy's samples, "other" last). Its
generator is seeded from (seed, step), so evaluating never moves the training generators and a
resumed run evaluates exactly as an uninterrupted one. The mixin reads the trainer's ``config``,
``model``, ``ref_model``, ``tokenizer``, ``judge``, ``prompts`` and ``prompt_max``.

References: as :mod:`prefopt_toy.lm.trainer`, the module this one was split from.
"""

from __future__ import annotations

from typing import Any

import torch

from .data import tokenize_prompts
from .judges import judge_probs
from .online import sample_pairs
from .trainer_online import _sequence_logps, _trim

__all__ = ["Evaluation"]


class Evaluation:
    """The evaluation of ``Trainer`` (a mixin): ``evaluate`` on fresh policy and reference samples.

    References
    ----------
    See :mod:`prefopt_toy.lm.trainer` (TRL v1.13.0 metric names).
    """

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, Any]:
        """``eval/kl``, ``win_rate`` and ``class_distribution`` on fresh policy samples.

        The generator is seeded from (seed, step), so evaluation never moves the training generators.
        """
        cfg = self.config
        if not self.prompts:
            return {}
        gen = torch.Generator().manual_seed(1_000_003 * (cfg.seed + 1) + step)
        texts = [self.prompts[i % len(self.prompts)] for i in range(cfg.n_eval)]
        prompts = tokenize_prompts(self.tokenizer, texts, max_length=self.prompt_max)
        pairs = sample_pairs(self.model, self.ref_model, self.tokenizer, prompts, mixture_a=0.0, mixture_b=1.0,
                             max_new_tokens=cfg.max_new_tokens, generator=gen, temperature=cfg.temperature)
        n = len(texts)
        half = _trim({"input_ids": pairs.input_ids[:n], "attention_mask": pairs.attention_mask[:n],
                      "completion_mask": pairs.completion_mask[:n]})
        _, lp, _ = _sequence_logps(self.model, half, "sum")
        _, ref, _ = _sequence_logps(self.ref_model, half, "sum")
        out: dict[str, Any] = {"eval/kl": float((lp - ref).mean())}
        if self.judge is not None:
            out["win_rate"] = float(judge_probs(self.judge, pairs.texts_a, pairs.texts_b).mean())
            if hasattr(self.judge, "class_distribution"):
                out["class_distribution"] = self.judge.class_distribution(pairs.texts_a).tolist()
        return out
