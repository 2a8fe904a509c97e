"""Preference data in TRL's convention, and padded tensors with completion masks.

A *preference example* is a dict ``{"prompt": str, "chosen": str, "rejected": str}`` (TRL's
"standard" preference format); a *prompt-only example* is ``{"prompt": str}`` (TRL's format for
online trainers). Completions are tokenised separately from the prompt and appended to its ids, as
TRL does, then EOS is appended to every completion; write completions with a leading space
(``" an apple."``) so the BPE boundary falls where it would in the whole sentence.

Masks come from lengths, never from ``input_ids != pad_token_id``: GPT-2's pad id is its EOS id,
and the EOS that ends a completion is a real, scored token.

**Devices.** Batches are built on the CPU. ``model_device(model)`` is the device of a model's
parameters and ``to_device(batch, device)`` moves a batch there; the samplers and the log-prob
functions call the two right before each forward pass, so a model loaded with
``load_model(..., device="cuda")`` is fed on its own device. On the CPU ``to_device`` returns the
very same tensors (``Tensor.to`` to the tensor's own device is a no-op), so CPU runs are unchanged
bit for bit. The CUDA path is written but was not run on a GPU when it was added (no GPU on the
development machine).

References
----------
TRL https://github.com/huggingface/trl v1.13.0 (dataset formats; ``DPOTrainer`` tokenisation);
Rafailov et al., arXiv:2305.18290v3 (DPO data: prompt, preferred and dispreferred completions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "build_batch",
    "model_device",
    "to_device",
    "tokenize_pairs",
    "tokenize_prompts",
    "validate_preference_examples",
    "validate_prompt_examples",
]

_PAIR_KEYS = ("prompt", "chosen", "rejected")


def model_device(model) -> torch.device:
    """The device of ``model``'s parameters (``next(model.parameters()).device``).

    A model without parameters, or an object without ``parameters()``, is taken to be on the CPU.
    The policy and the reference are assumed to share one device (``Trainer`` checks it).

    Examples
    --------
    >>> model_device(torch.nn.Linear(2, 1))
    device(type='cpu')
    """
    params = getattr(model, "parameters", None)
    if params is None:
        return torch.device("cpu")
    try:
        return next(iter(params())).device
    except StopIteration:
        return torch.device("cpu")


def to_device(obj, device: torch.device | str):
    """``obj`` with every tensor in it moved to ``device``; anything else is returned unchanged.

    Tensors are moved with ``Tensor.to(device)``, which returns the tensor itself when it is
    already there (so on the CPU nothing is copied and nothing changes). Dicts (as plain dicts,
    same keys and order), lists, tuples and namedtuples are rebuilt around their moved values; strings, numbers, ``None``
    and other objects are left alone. Dtypes are never changed. The one helper the GPT-2 side uses
    to put batches on the model's device (``model_device``) right before a forward pass; the CUDA
    path is written but was not run on a GPU here.

    Parameters
    ----------
    obj : Tensor, dict, list, tuple or anything
    device : torch.device or str

    Returns
    -------
    The same structure, its tensors on ``device``.

    Examples
    --------
    >>> b = {"input_ids": torch.tensor([[1, 2]]), "texts": ["hi"], "n": 1}
    >>> out = to_device(b, "cpu")
    >>> out["input_ids"] is b["input_ids"], out["texts"], out["n"]
    (True, ['hi'], 1)
    """
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(to_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def _check_examples(examples, keys: tuple[str, ...]) -> list[dict]:
    if isinstance(examples, (str, bytes, dict)) or not isinstance(examples, Sequence):
        raise ValueError(f"examples must be a list of dicts with keys {keys}, got {type(examples).__name__}")
    if len(examples) == 0:
        raise ValueError("examples must not be empty")
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise ValueError(f"examples[{i}] must be a dict with keys {keys}, got {type(ex).__name__}")
        for k in keys:
            if k not in ex:
                raise ValueError(f"examples[{i}] is missing the key {k!r} (needs {keys})")
            if not isinstance(ex[k], str):
                raise ValueError(f"examples[{i}][{k!r}] must be a string, got {type(ex[k]).__name__}")
            if not ex[k].strip():
                what = "prompt" if k == "prompt" else "completion"
                raise ValueError(f"examples[{i}][{k!r}] is an empty {what}")
    return list(examples)


def validate_preference_examples(examples) -> list[dict]:
    """Check a list of ``{"prompt", "chosen", "rejected"}`` dicts (non-empty strings).

    Raises ``ValueError`` naming the example index and the key at fault.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (preference dataset format).

    Examples
    --------
    >>> validate_preference_examples([{"prompt": "Hi", "chosen": " yes.", "rejected": ""}])
    Traceback (most recent call last):
    ...
    ValueError: examples[0]['rejected'] is an empty completion
    """
    return _check_examples(examples, _PAIR_KEYS)


def validate_prompt_examples(examples) -> list[dict]:
    """Check a list of prompt-only ``{"prompt": str}`` dicts (TRL's format for online training).

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (prompt-only dataset format).
    """
    return _check_examples(examples, ("prompt",))


def build_batch(
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    padding_side: Literal["left", "right"] = "right",
    length: int | None = None,
) -> dict[str, Tensor]:
    """Pad ``prompt + completion`` id lists into ``input_ids``, ``attention_mask``, ``completion_mask``.

    Parameters
    ----------
    prompt_ids, completion_ids : sequences of int sequences
        Same length B; each prompt and each completion non-empty. Nothing is appended here
        (``tokenize_pairs`` appends EOS to completions before calling this).
    pad_token_id : int
    padding_side : {"left", "right"}
    length : int, optional
        Pad to this T (at least the longest row); default the longest row.

    Returns
    -------
    dict of (B, T) tensors
        ``input_ids`` (int64), ``attention_mask`` and ``completion_mask`` (int64 0/1).

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (prompt and completion concatenated, masks).

    Examples
    --------
    >>> b = build_batch([[1, 2], [3]], [[4], [5, 6]], pad_token_id=0, padding_side="left")
    >>> b["input_ids"].tolist(), b["completion_mask"].tolist()
    ([[1, 2, 4], [3, 5, 6]], [[0, 0, 1], [0, 1, 1]])
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if len(prompt_ids) != len(completion_ids) or len(prompt_ids) == 0:
        raise ValueError(f"prompt_ids and completion_ids must be non-empty and of equal length, got {len(prompt_ids)} and {len(completion_ids)}")
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        if len(p) == 0:
            raise ValueError(f"prompt_ids[{i}] is empty: the first completion token needs a prompt token before it")
        if len(c) == 0:
            raise ValueError(f"completion_ids[{i}] is empty (empty completion)")
    longest = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids))
    t = longest if length is None else length
    if t < longest:
        raise ValueError(f"length must be at least the longest row ({longest} tokens), got {length}")
    b = len(prompt_ids)
    input_ids = torch.full((b, t), pad_token_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((b, t), dtype=torch.long)  # (B, T)
    completion_mask = torch.zeros((b, t), dtype=torch.long)  # (B, T)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        n = len(p) + len(c)
        start = 0 if padding_side == "right" else t - n
        input_ids[i, start : start + n] = torch.tensor(list(p) + list(c), dtype=torch.long)
        attention_mask[i, start : start + n] = 1
        completion_mask[i, start + len(p) : start + n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


def tokenize_pairs(
    tokenizer,
    examples,
    *,
    max_length: int,
    padding_side: Literal["left", "right"] = "right",
) -> dict[str, Tensor]:
    """Tokenise preference examples into padded chosen and rejected batches with completion masks.

    Each row is ``ids(prompt) + ids(completion) + [eos]``; the completion mask covers the completion
    and its EOS, not the prompt nor padding. Chosen and rejected are padded to one common length T,
    so they can be concatenated along the batch for a single forward pass.

    Parameters
    ----------
    tokenizer : GPT-2 tokenizer (``prefopt_toy.lm.tokenizer.gpt2_tokenizer()``)
        Needs ``eos_token_id``; padding uses ``pad_token_id`` (or EOS when unset).
    examples : list of dict
        ``{"prompt", "chosen", "rejected"}`` strings (``validate_preference_examples``).
    max_length : int
        Longest allowed row (prompt + completion + EOS); a longer example raises ``ValueError``
        naming its index (nothing is truncated silently).
    padding_side : {"left", "right"}

    Returns
    -------
    dict of (B, T) int64 tensors
        ``chosen_input_ids``, ``chosen_attention_mask``, ``chosen_completion_mask`` and the same
        three for ``rejected``.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (``DPOTrainer``: EOS appended to completions);
    Rafailov et al., arXiv:2305.18290v3.
    """
    examples = validate_preference_examples(examples)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer must define eos_token_id")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    prompts = [tokenizer(ex["prompt"]).input_ids for ex in examples]
    sides: dict[str, list[list[int]]] = {}
    for key in ("chosen", "rejected"):
        sides[key] = [tokenizer(ex[key]).input_ids + [eos] for ex in examples]
        for i, (p, c) in enumerate(zip(prompts, sides[key])):
            if len(p) + len(c) > max_length:
                raise ValueError(f"examples[{i}][{key!r}]: prompt + completion + EOS is {len(p) + len(c)} tokens, more than max_length={max_length}")
    t = max(len(p) + len(c) for key in sides for p, c in zip(prompts, sides[key]))
    out: dict[str, Tensor] = {}
    for key in ("chosen", "rejected"):
        batch = build_batch(prompts, sides[key], pad_token_id=pad, padding_side=padding_side, length=t)
        out.update({f"{key}_{name}": v for name, v in batch.items()})
    return out


def tokenize_prompts(tokenizer, examples, *, max_length: int) -> dict[str, Tensor]:
    """Left-padded prompt batch for generation (online training): ``input_ids``, ``attention_mask``.

    Parameters
    ----------
    tokenizer : GPT-2 tokenizer
    examples : list of ``{"prompt": str}`` dicts, or list of str
    max_length : int
        Longest allowed prompt; a longer one raises ``ValueError`` naming its index.

    Returns
    -------
    dict of (B, T) int64 tensors, left-padded (the last column is every prompt's last token).

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (prompt-only format; left padding for generation).
    """
    if isinstance(examples, Sequence) and not isinstance(examples, str) and examples and all(isinstance(e, str) for e in examples):
        examples = [{"prompt": e} for e in examples]
    examples = validate_prompt_examples(examples)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    ids = [tokenizer(ex["prompt"]).input_ids for ex in examples]
    for i, p in enumerate(ids):
        if len(p) > max_length:
            raise ValueError(f"examples[{i}]['prompt'] is {len(p)} tokens, more than max_length={max_length}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    t = max(len(p) for p in ids)
    input_ids = torch.full((len(ids), t), pad, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(ids), t), dtype=torch.long)  # (B, T)
    for i, p in enumerate(ids):
        input_ids[i, t - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention_mask[i, t - len(p) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
