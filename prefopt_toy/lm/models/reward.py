r"""A Bradley-Terry reward model on GPT-2: the policy's transformer with a scalar head.

RLHF's first stage (Ouyang et al., arXiv:2203.02155, Sec. 3.5) fits a scalar reward
:math:`r_\phi(x, y)` to preference pairs with the Bradley-Terry loss (``prefopt_toy.lm.train.rlhf``);
this module holds the model and how it reads a sequence.

- :func:`reward_model`: a ``GPT2ForSequenceClassification`` with ``num_labels = 1`` built from a
  policy (its transformer weights copied, so the reward model starts from what the policy knows,
  as in InstructGPT, where it starts from the SFT model), from a ``GPT2Config`` (fresh weights) or
  from anything ``load_model`` loads. The scalar head ``score`` (no bias) is initialised from
  ``seed`` as transformers does (normal, std ``initializer_range``).
- :func:`reward_scores`: the reward of each row of a padded batch, the head applied to the last
  hidden state at the **last real token** (the last 1 of ``attention_mask``), left or right
  padding, position ids from the mask.
- :func:`score_texts`: the reward of ``prompt + completion``, each completion tokenised as the
  preference data is (``ids(prompt) + ids(completion) + [EOS]``, as ``data.tokenize_pairs``), so
  training and scoring see the same sequences.

**Pooling, against transformers.** ``GPT2ForSequenceClassification.forward`` pools at the rightmost
token that is not ``pad_token_id``. GPT-2 pads with EOS, so when a sequence ends with the EOS
that closes its completion, transformers skips that EOS and scores the token before it, and a
left-padded batch is pooled correctly only because padding precedes the text. Here the position
comes from ``attention_mask``, so the trailing EOS is the token scored. On a right-padded batch
whose last real token is not ``pad_token_id`` the two agree exactly (tested).

References
----------
Ouyang et al., arXiv:2203.02155, Sec. 3.5 and Eq. (1) (the reward model); Stiennon et al.,
arXiv:2009.01325, Sec. 3.4 (a scalar head on the language model); TRL
https://github.com/huggingface/trl v1.13.0 (``RewardTrainer``: ``AutoModelForSequenceClassification``
with ``num_labels=1``); Radford et al. 2019 (GPT-2).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int
from prefopt_toy.lm.data import (
    build_batch,
    check_model_inputs,
    check_tokenizer,
    model_device,
    to_device,
    validate_texts,
)

__all__ = ["reward_model", "reward_scores", "score_texts"]


def reward_model(source: Any, *, seed: int = 0):
    """A GPT-2 reward model: ``GPT2ForSequenceClassification`` with one output (``num_labels = 1``).

    Parameters
    ----------
    source : GPT2LMHeadModel, GPT2Config, str or path
        A policy (its ``transformer`` weights are copied; the policy is not modified), a
        configuration (fresh transformer weights from ``seed``), or a name for
        ``prefopt_toy.lm.models.gpt2.load_model`` (``"tiny"``, ``"small"``, a directory, a hub
        name), whose transformer is then copied.
    seed : int
        Initialises the scalar head (and the transformer for a configuration), inside
        ``torch.random.fork_rng``: the global generator is left as it was.

    Returns
    -------
    transformers.GPT2ForSequenceClassification
        In eval mode (dropout off), on the source model's device and dtype (the CPU and float32
        for a configuration); ``config.pad_token_id`` set (the EOS id when the source had none).

    Raises
    ------
    ValueError
        ``source`` is none of the above (a model without a GPT-2 ``transformer``), or ``seed`` is
        not an integer.

    References
    ----------
    Ouyang et al., arXiv:2203.02155, Sec. 3.5; TRL v1.13.0 ``RewardTrainer`` (``num_labels=1``).

    Examples
    --------
    >>> from transformers import GPT2Config
    >>> cfg = GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=11, n_positions=16,
    ...                  bos_token_id=0, eos_token_id=0)
    >>> rm = reward_model(cfg)
    >>> rm.config.num_labels, tuple(rm.score.weight.shape)
    (1, (1, 8))
    """
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2Model

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    base = None
    if isinstance(source, GPT2Config):
        config = copy.deepcopy(source)
    elif isinstance(source, (str, os.PathLike)):
        from .gpt2 import load_model

        base = load_model(source)
        config = copy.deepcopy(base.config)
    elif isinstance(source, torch.nn.Module):
        if not isinstance(getattr(source, "transformer", None), GPT2Model) or not isinstance(
            getattr(source, "config", None), GPT2Config
        ):
            raise ValueError(
                f"source must be a GPT-2 model with a `transformer` (GPT2LMHeadModel), got "
                f"{type(source).__name__}"
            )
        base = source
        config = copy.deepcopy(source.config)
    else:
        raise ValueError(
            f"source must be a GPT2LMHeadModel, a GPT2Config or a model name/path, got "
            f"{type(source).__name__}"
        )
    config.num_labels = 1
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2ForSequenceClassification(config)
    if base is not None:
        param = next(base.parameters())
        model = model.to(device=param.device, dtype=param.dtype)
        model.transformer.load_state_dict(base.transformer.state_dict())
    return model.eval()


def _check_reward_model(model: Any) -> None:
    if not isinstance(model, torch.nn.Module) or not all(
        isinstance(getattr(model, a, None), torch.nn.Module) for a in ("transformer", "score")
    ):
        raise ValueError(
            "reward_model must be a GPT-2 reward model with `transformer` and `score` "
            f"(reward_model(...), GPT2ForSequenceClassification), got {type(model).__name__}"
        )
    n = getattr(getattr(model, "config", None), "num_labels", 1)
    if n != 1:
        raise ValueError(f"reward_model must have one output (num_labels = 1), got num_labels={n}")


def reward_scores(reward_model, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    r"""The scalar reward :math:`r_\phi(x, y)` of each row, read at its last real token.

    Parameters
    ----------
    reward_model : GPT2ForSequenceClassification (``num_labels = 1``)
    input_ids : Tensor, shape (B, T), int64
        Prompt + completion (+ EOS) + padding, left or right padded.
    attention_mask : Tensor, shape (B, T)
        0/1, 1 on real tokens, at least one per row; position ids are ``cumsum - 1`` of it.

    Returns
    -------
    Tensor, shape (B,), on the model's device
        ``score(h[b, t_b])`` with ``t_b`` the last position where ``attention_mask[b] = 1``;
        differentiable with respect to the model's parameters.

    Raises
    ------
    ValueError
        Not a reward model, malformed tensors (named), an empty row, token ids outside the
        vocabulary or rows longer than the positions (``data.check_model_inputs``).

    References
    ----------
    Ouyang et al., arXiv:2203.02155, Sec. 3.5; Stiennon et al., arXiv:2009.01325, Sec. 3.4.
    """
    _check_reward_model(reward_model)
    if (
        not isinstance(input_ids, Tensor)
        or input_ids.ndim != 2
        or input_ids.dtype not in (torch.int64, torch.int32)
        or 0 in input_ids.shape
    ):
        raise ValueError(
            "input_ids must be a non-empty (B, T) integer tensor, got "
            f"{getattr(input_ids, 'shape', type(input_ids).__name__)}"
        )
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must be a tensor of the shape of input_ids {tuple(input_ids.shape)}, got "
            f"{getattr(attention_mask, 'shape', type(attention_mask).__name__)}"
        )
    if attention_mask.is_floating_point() or bool(
        ((attention_mask != 0) & (attention_mask != 1)).any()
    ):
        raise ValueError("attention_mask must hold only 0 and 1 (integer or bool)")
    mask = attention_mask.to(torch.int64)
    empty = (mask.sum(dim=1) == 0).nonzero().flatten()
    if empty.numel():
        raise ValueError(f"attention_mask has no real token in row(s) {empty.tolist()}")
    input_ids, mask = to_device((input_ids.long(), mask), model_device(reward_model))
    check_model_inputs(reward_model, input_ids, mask, model_name="reward_model")
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0) * mask  # (B, T)
    hidden = reward_model.transformer(
        input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False
    ).last_hidden_state  # (B, T, H)
    T = mask.shape[1]
    last = (torch.arange(T, device=mask.device) * mask).argmax(dim=-1)  # (B,) last real token
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
    return reward_model.score(pooled).squeeze(-1)  # (B,)


def score_texts(
    reward_model,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    batch_size: int = 64,
) -> Tensor:
    """Rewards of ``prompt + completion`` texts, tokenised as the preference data is.

    Each row is ``ids(prompt) + ids(completion) + [EOS]`` (``data.tokenize_pairs``' layout; an
    empty completion is its EOS alone), right-padded, scored by :func:`reward_scores` in chunks
    of ``batch_size``. Gradients flow when called outside ``torch.no_grad``.

    Parameters
    ----------
    reward_model : GPT2ForSequenceClassification (``num_labels = 1``)
    tokenizer : GPT-2 tokenizer
    prompts, completions : sequences of str, same length
        Non-empty prompts; completions may be empty.
    batch_size : int >= 1

    Returns
    -------
    Tensor, shape (N,), on the model's device

    References
    ----------
    Ouyang et al., arXiv:2203.02155, Sec. 3.5; TRL v1.13.0 (EOS appended to completions).
    """
    _check_reward_model(reward_model)
    eos, pad = check_tokenizer(tokenizer)
    prompts = validate_texts(prompts, "prompts")
    completions = validate_texts(completions, "completions", allow_blank=True)
    if len(prompts) != len(completions):
        raise ValueError(
            f"prompts and completions must have the same length, got {len(prompts)} and "
            f"{len(completions)}"
        )
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    p_ids = [list(tokenizer(p).input_ids) for p in prompts]
    for i, p in enumerate(p_ids):
        if not p:
            raise ValueError(f"prompts[{i}] tokenises to no tokens: {prompts[i]!r}")
    c_ids = [list(tokenizer(c).input_ids) + [eos] for c in completions]
    out = []
    for start in range(0, len(p_ids), batch_size):
        sl = slice(start, start + batch_size)
        batch = build_batch(p_ids[sl], c_ids[sl], pad_token_id=pad, padding_side="right")
        out.append(reward_scores(reward_model, batch["input_ids"], batch["attention_mask"]))
    return torch.cat(out)
