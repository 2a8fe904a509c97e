"""Preference data in TRL's convention, and padded tensors with completion masks.

A *preference example* is a dict ``{"prompt": str, "chosen": str, "rejected": str}`` (TRL's
"standard" preference format); a *prompt-only example* is ``{"prompt": str}`` (TRL's format for
online trainers). Completions are tokenised separately from the prompt and appended to its ids, as
TRL does, then EOS is appended to every completion; write completions with a leading space
(``" an apple."``) so the BPE boundary falls where it would in the whole sentence.

Masks come from lengths, never from ``input_ids != pad_token_id``: GPT-2's pad id is its EOS id,
and the EOS that ends a completion is a real, scored token.

**Checks at the boundary.** ``validate_texts`` and ``validate_*_examples`` refuse a bare string
(it is iterable: it would become one prompt per character), bytes, a single dict, a generator and
an empty sequence, naming the argument; ``check_model_inputs`` refuses, where ids enter a model
(``logprobs.token_logprobs``, ``sampling.sample``), a token id outside the model's vocabulary and a
row longer than its positions (``model_limits``: ``n_positions`` or ``max_position_embeddings``),
naming the id or length and the limit, instead of torch's bare ``IndexError``.

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

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "ModelLimits",
    "build_batch",
    "check_model_inputs",
    "check_tokenizer",
    "model_device",
    "model_limits",
    "to_device",
    "tokenize_completions",
    "tokenize_pairs",
    "tokenize_prompts",
    "unpair_preference_examples",
    "validate_preference_examples",
    "validate_prompt_examples",
    "validate_texts",
    "validate_unpaired_examples",
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


class ModelLimits(NamedTuple):
    """What token ids a model can take: see :func:`model_limits`."""

    vocab_size: int | None
    """Number of rows of the input embedding (ids must lie in ``[0, vocab_size)``); None: unknown."""
    max_positions: int | None
    """Longest sequence the position embedding covers; None: unknown (no limit checked)."""
    positions_key: str | None
    """The config field ``max_positions`` came from (``n_positions`` or ``max_position_embeddings``)."""


def model_limits(model) -> ModelLimits:
    """The vocabulary size and the position limit of a causal LM, read from the model itself.

    The vocabulary is the row count of ``model.get_input_embeddings()`` (what an id indexes),
    else ``model.config.vocab_size``; the position limit is ``config.n_positions`` (GPT-2), else
    ``config.max_position_embeddings`` (most other architectures). A field that is missing is
    reported as None, and :func:`check_model_inputs` then skips that check.

    Parameters
    ----------
    model : causal LM (e.g. ``GPT2LMHeadModel``) or any ``torch.nn.Module``

    Returns
    -------
    ModelLimits
        ``(vocab_size, max_positions, positions_key)``.

    References
    ----------
    Hugging Face transformers 5 (``PretrainedConfig``, ``GPT2Config.n_positions``).

    Examples
    --------
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> with torch.random.fork_rng():
    ...     lm = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=11, n_positions=16))
    >>> model_limits(lm)
    ModelLimits(vocab_size=11, max_positions=16, positions_key='n_positions')
    """
    vocab = None
    get_emb = getattr(model, "get_input_embeddings", None)
    if callable(get_emb):
        try:
            vocab = int(get_emb().num_embeddings)
        except (AttributeError, NotImplementedError, TypeError):
            vocab = None
    config = getattr(model, "config", None)
    if vocab is None:
        vocab = _config_int(config, "vocab_size")
    for key in ("n_positions", "max_position_embeddings"):
        limit = _config_int(config, key)
        if limit is not None:
            return ModelLimits(vocab, limit, key)
    return ModelLimits(vocab, None, None)


def _config_int(config, key: str) -> int | None:
    value = getattr(config, key, None)
    return (
        int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None
    )


def check_model_inputs(
    model,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    new_tokens: int = 0,
    name: str = "input_ids",
    model_name: str = "model",
) -> None:
    """Raise ``ValueError`` unless ``model`` can take ``input_ids``.

    Every id must be in its vocabulary, and every row (its real tokens, plus ``new_tokens`` to be
    generated) within its positions.

    The one check where token ids enter a model (``logprobs.token_logprobs``, ``sampling.sample``):
    without it an id or a position out of range escapes from deep inside torch as a bare
    ``IndexError: index out of range in self``. Padding ids are checked too (they are fed to the
    model, masked). A row's length is its number of real tokens (``attention_mask`` row sum; the
    whole width without a mask), since positions are counted from the mask.

    Parameters
    ----------
    model : causal LM
        Its limits come from :func:`model_limits`; an unknown limit is not checked.
    input_ids : Tensor, shape (B, T), integer
    attention_mask : Tensor, shape (B, T), optional
    new_tokens : int >= 0
        Tokens still to be generated after the prompt (``max_new_tokens`` when sampling).
    name, model_name : str
        How the message names the ids and the model.

    Raises
    ------
    ValueError
        Naming ``name``, the offending id or length, its row and the model's limit.

    References
    ----------
    Radford et al. 2019 (GPT-2: learned absolute position embeddings, ``n_positions`` of them).

    Examples
    --------
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> with torch.random.fork_rng():
    ...     lm = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=11, n_positions=16))
    >>> check_model_inputs(lm, torch.tensor([[3, 12]]))
    Traceback (most recent call last):
    ...
    ValueError: input_ids holds token id 12 at [0, 1], outside model's vocabulary [0, 11) (vocab_size=11): were the ids made by a tokenizer for another model?
    """
    limits = model_limits(model)
    if limits.vocab_size is not None and input_ids.numel():
        bad = (input_ids < 0) | (input_ids >= limits.vocab_size)
        if bool(bad.any()):
            b, t = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name} holds token id {int(input_ids[b, t])} at [{b}, {t}], outside {model_name}'s vocabulary "
                f"[0, {limits.vocab_size}) (vocab_size={limits.vocab_size}): were the ids made by a tokenizer "
                "for another model?"
            )
    if limits.max_positions is not None and input_ids.numel():
        lengths = (
            attention_mask.to(torch.int64).sum(dim=1)
            if attention_mask is not None
            else torch.full((input_ids.shape[0],), input_ids.shape[1], dtype=torch.int64)
        )
        row = int(lengths.argmax())
        longest = int(lengths[row]) + new_tokens
        if longest > limits.max_positions:
            what = (
                f"{int(lengths[row])} prompt tokens + max_new_tokens={new_tokens} = {longest} positions"
                if new_tokens
                else f"{longest} tokens"
            )
            raise ValueError(
                f"{name}: row {row} needs {what}, more than {model_name}'s position limit "
                f"{limits.positions_key}={limits.max_positions} (shorten the text or use a model with more positions)"
            )


def check_tokenizer(tokenizer, *, name: str = "tokenizer") -> tuple[int, int]:
    """Check that ``tokenizer`` can be used here; return its ``(eos_token_id, pad_token_id)``.

    A tokenizer must be callable (``tokenizer(text).input_ids``) and define an integer
    ``eos_token_id``; ``pad_token_id`` may be None (EOS pads then, GPT-2's convention).

    Raises
    ------
    ValueError
        Naming ``name`` and what is missing.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (pad token = EOS convention for GPT-2).
    """
    if tokenizer is None or not callable(tokenizer):
        raise ValueError(
            f"{name} must be a tokenizer (callable, tokenizer(text).input_ids, e.g. "
            f"prefopt_toy.lm.models.tokenizer.gpt2_tokenizer()), got {type(tokenizer).__name__}"
        )
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, bool) or not isinstance(eos, numbers.Integral) or eos < 0:
        raise ValueError(f"{name} must define eos_token_id as an integer >= 0, got {eos!r}")
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = eos
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"{name}.pad_token_id must be None or an integer >= 0, got {pad!r}")
    return int(eos), int(pad)


def _as_list(x: Any, name: str, what: str) -> list:
    """``x`` as a list, refusing strings, bytes, mappings and anything that is not a sequence.

    A bare string would be read one character at a time; a generator could be exhausted or empty.
    """
    if isinstance(x, (str, bytes, bytearray, memoryview)):
        raise ValueError(
            f"{name} must be a list or tuple of {what}, not a single {type(x).__name__} (it would be read "
            "one character at a time); wrap a single one in a list: [...]"
        )
    if isinstance(x, Mapping) or not isinstance(x, Sequence):
        hint = (
            " (pass list(...) of it)"
            if isinstance(x, Iterable) and not isinstance(x, Mapping)
            else ""
        )
        raise ValueError(f"{name} must be a list or tuple of {what}, got {type(x).__name__}{hint}")
    return list(x)


def validate_texts(
    texts: Any, name: str = "texts", *, allow_empty: bool = False, allow_blank: bool = False
) -> list[str]:
    """Check a sequence of strings (prompts, completions); return it as a list.

    Parameters
    ----------
    texts : list or tuple of str
        A bare ``str`` (or bytes, a dict, a generator, a set) is refused: a string is iterable and
        would silently become one text per character.
    name : str
        How the messages name the argument (``"prompts"``, ``"list_a"``, ...).
    allow_empty : bool, default False
        Accept an empty sequence.
    allow_blank : bool, default False
        Accept empty or whitespace-only strings (a sampled completion may be empty; a prompt may not).

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        Naming ``name`` (and the index of a bad entry) and the constraint.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (prompt-only dataset format).

    Examples
    --------
    >>> validate_texts(["My favourite fruit is"], "prompts")
    ['My favourite fruit is']
    >>> validate_texts("My favourite fruit is", "prompts")
    Traceback (most recent call last):
    ...
    ValueError: prompts must be a list or tuple of str, not a single str (it would be read one character at a time); wrap a single one in a list: [...]
    """
    out = _as_list(texts, name, "str")
    if not out and not allow_empty:
        raise ValueError(f"{name} must not be empty: at least one text")
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{i}] must be a str, got {type(text).__name__}")
        if not allow_blank and not text.strip():
            raise ValueError(f"{name}[{i}] is an empty text")
    return out


def _encode(tokenizer, text: str, where: str) -> list[int]:
    """``tokenizer(text).input_ids`` as a list of int, refusing an empty encoding (naming ``where``)."""
    ids = list(tokenizer(text).input_ids)
    if not ids:
        raise ValueError(f"{where} tokenises to no tokens: {text!r}")
    return ids


def _check_examples(examples, keys: tuple[str, ...], name: str = "examples") -> list[dict]:
    items = _as_list(examples, name, f"dicts with keys {keys}")
    if len(items) == 0:
        raise ValueError(f"{name} must not be empty")
    for i, ex in enumerate(items):
        if not isinstance(ex, Mapping):
            raise ValueError(
                f"{name}[{i}] must be a dict with keys {keys}, got {type(ex).__name__}"
            )
        for k in keys:
            if k not in ex:
                raise ValueError(
                    f"{name}[{i}] is missing the key {k!r} (needs {keys}, has {tuple(ex)})"
                )
            if not isinstance(ex[k], str):
                raise ValueError(f"{name}[{i}][{k!r}] must be a string, got {type(ex[k]).__name__}")
            if not ex[k].strip():
                what = "prompt" if k == "prompt" else "completion"
                raise ValueError(f"{name}[{i}][{k!r}] is an empty {what}")
    return items


def validate_preference_examples(examples, name: str = "examples") -> list[dict]:
    """Check a list of ``{"prompt", "chosen", "rejected"}`` dicts (non-empty strings).

    Parameters
    ----------
    examples : list or tuple of dict
        Extra keys are allowed and ignored. A single dict, a string, a generator or an empty list
        is refused.
    name : str, default "examples"
        How the messages name the argument (the trainer passes ``"dataset"``).

    Returns
    -------
    list of dict

    Raises
    ------
    ValueError
        Naming ``name``, the example index and the key at fault.

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
    return _check_examples(examples, _PAIR_KEYS, name)


def validate_unpaired_examples(examples, name: str = "examples") -> list[dict]:
    """Check a list of unpaired ``{"prompt", "completion", "label"}`` dicts (KTO's data).

    ``prompt`` and ``completion`` are non-empty strings, ``label`` a bool (True: desirable), as in
    TRL's unpaired preference format. Extra keys are allowed and ignored.

    Raises
    ------
    ValueError
        Naming ``name``, the example index and the key at fault.

    References
    ----------
    Ethayarajh et al., arXiv:2402.01306 (KTO's binary signal); TRL
    https://github.com/huggingface/trl v1.13.0 (unpaired preference dataset format).

    Examples
    --------
    >>> validate_unpaired_examples([{"prompt": "Hi", "completion": " yes.", "label": 1}])
    Traceback (most recent call last):
    ...
    ValueError: examples[0]['label'] must be a bool (True: desirable), got int
    """
    items = _check_examples(examples, ("prompt", "completion"), name)
    for i, ex in enumerate(items):
        if "label" not in ex:
            raise ValueError(
                f"{name}[{i}] is missing the key 'label' (needs ('prompt', 'completion', 'label'), "
                f"has {tuple(ex)})"
            )
        if not isinstance(ex["label"], bool):
            raise ValueError(
                f"{name}[{i}]['label'] must be a bool (True: desirable), got "
                f"{type(ex['label']).__name__}"
            )
    return items


def unpair_preference_examples(examples, name: str = "examples") -> list[dict]:
    """Split each ``{"prompt", "chosen", "rejected"}`` pair into two unpaired examples.

    Pair ``i`` gives ``{"prompt", "completion": chosen, "label": True}`` then
    ``{"prompt", "completion": rejected, "label": False}`` (rows ``2i`` and ``2i + 1``), TRL's
    ``unpair_preference_dataset``.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (``trl.data_utils.unpair_preference_dataset``);
    Ethayarajh et al., arXiv:2402.01306.

    Examples
    --------
    >>> unpair_preference_examples([{"prompt": "Hi", "chosen": " yes.", "rejected": " no."}])[1]
    {'prompt': 'Hi', 'completion': ' no.', 'label': False}
    """
    out = []
    for ex in validate_preference_examples(examples, name):
        out.append({"prompt": ex["prompt"], "completion": ex["chosen"], "label": True})
        out.append({"prompt": ex["prompt"], "completion": ex["rejected"], "label": False})
    return out


def validate_prompt_examples(examples, name: str = "examples") -> list[dict]:
    """Check a list of prompt-only ``{"prompt": str}`` dicts (TRL's format for online training).

    As :func:`validate_preference_examples`, with the one key ``"prompt"``; ``name`` is how the
    messages name the argument.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (prompt-only dataset format).
    """
    return _check_examples(examples, ("prompt",), name)


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
        raise ValueError(
            f"prompt_ids and completion_ids must be non-empty and of equal length, got {len(prompt_ids)} and {len(completion_ids)}"
        )
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        if len(p) == 0:
            raise ValueError(
                f"prompt_ids[{i}] is empty: the first completion token needs a prompt token before it"
            )
        if len(c) == 0:
            raise ValueError(f"completion_ids[{i}] is empty (empty completion)")
    longest = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids))
    t = longest if length is None else length
    if t < longest:
        raise ValueError(
            f"length must be at least the longest row ({longest} tokens), got {length}"
        )
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
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "completion_mask": completion_mask,
    }


def tokenize_pairs(
    tokenizer,
    examples,
    *,
    max_length: int,
    padding_side: Literal["left", "right"] = "right",
    name: str = "examples",
) -> dict[str, Tensor]:
    """Tokenise preference examples into padded chosen and rejected batches with completion masks.

    Each row is ``ids(prompt) + ids(completion) + [eos]``; the completion mask covers the completion
    and its EOS, not the prompt nor padding. Chosen and rejected are padded to one common length T,
    so they can be concatenated along the batch for a single forward pass.

    Parameters
    ----------
    tokenizer : GPT-2 tokenizer (``prefopt_toy.lm.models.tokenizer.gpt2_tokenizer()``)
        Needs ``eos_token_id``; padding uses ``pad_token_id`` (or EOS when unset).
    examples : list of dict
        ``{"prompt", "chosen", "rejected"}`` strings (``validate_preference_examples``).
    max_length : int
        Longest allowed row (prompt + completion + EOS); a longer example raises ``ValueError``
        naming its index (nothing is truncated silently).
    padding_side : {"left", "right"}
    name : str, default "examples"
        How the messages name ``examples`` (the trainer passes ``"dataset"``).

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
    examples = validate_preference_examples(examples, name)
    if (
        isinstance(max_length, bool)
        or not isinstance(max_length, numbers.Integral)
        or max_length < 2
    ):
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    eos, pad = check_tokenizer(tokenizer)
    prompts = [
        _encode(tokenizer, ex["prompt"], f"{name}[{i}]['prompt']") for i, ex in enumerate(examples)
    ]
    sides: dict[str, list[list[int]]] = {}
    for key in ("chosen", "rejected"):
        sides[key] = [
            _encode(tokenizer, ex[key], f"{name}[{i}][{key!r}]") + [eos]
            for i, ex in enumerate(examples)
        ]
        for i, (p, c) in enumerate(zip(prompts, sides[key])):
            if len(p) + len(c) > max_length:
                raise ValueError(
                    f"{name}[{i}][{key!r}]: prompt + completion + EOS is {len(p) + len(c)} tokens, more than max_length={max_length}"
                )
    t = max(len(p) + len(c) for key in sides for p, c in zip(prompts, sides[key]))
    out: dict[str, Tensor] = {}
    for key in ("chosen", "rejected"):
        batch = build_batch(
            prompts, sides[key], pad_token_id=pad, padding_side=padding_side, length=t
        )
        out.update({f"{key}_{name}": v for name, v in batch.items()})
    return out


def tokenize_completions(
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    max_length: int,
    name: str = "examples",
) -> dict[str, Tensor]:
    """Tokenise (prompt, completion) rows into one right-padded batch with a completion mask.

    Each row is ``ids(prompt) + ids(completion) + [eos]`` as in :func:`tokenize_pairs` (the mask
    covers the completion and its EOS): KTO's matched rows, and its mismatched (KL) rows.

    Parameters
    ----------
    tokenizer : GPT-2 tokenizer
    prompts, completions : sequences of str, same length
    max_length : int >= 2
        Longest allowed row; a longer one raises ``ValueError`` naming its index.
    name : str
        How the messages name the rows.

    Returns
    -------
    dict of (N, T) int64 tensors: ``input_ids``, ``attention_mask``, ``completion_mask``.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (``KTOTrainer``: EOS appended to completions).
    """
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(
            f"{name}: prompts and completions must be non-empty and of one length, got "
            f"{len(prompts)} and {len(completions)}"
        )
    if (
        isinstance(max_length, bool)
        or not isinstance(max_length, numbers.Integral)
        or max_length < 2
    ):
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    eos, pad = check_tokenizer(tokenizer)
    p_ids = [_encode(tokenizer, p, f"{name}[{i}]['prompt']") for i, p in enumerate(prompts)]
    c_ids = [
        _encode(tokenizer, c, f"{name}[{i}]['completion']") + [eos]
        for i, c in enumerate(completions)
    ]
    for i, (p, c) in enumerate(zip(p_ids, c_ids)):
        if len(p) + len(c) > max_length:
            raise ValueError(
                f"{name}[{i}]: prompt + completion + EOS is {len(p) + len(c)} tokens, more than "
                f"max_length={max_length}"
            )
    return build_batch(p_ids, c_ids, pad_token_id=pad, padding_side="right")


def tokenize_prompts(
    tokenizer, examples, *, max_length: int, name: str = "examples"
) -> dict[str, Tensor]:
    """Left-padded prompt batch for generation (online training): ``input_ids``, ``attention_mask``.

    Parameters
    ----------
    tokenizer : GPT-2 tokenizer
    examples : list of ``{"prompt": str}`` dicts, or list of str
        Not a bare str (it would be one prompt per character): ``ValueError``.
    max_length : int
        Longest allowed prompt; a longer one raises ``ValueError`` naming its index.
    name : str, default "examples"
        How the messages name ``examples`` (the trainer passes ``"prompts"``).

    Returns
    -------
    dict of (B, T) int64 tensors, left-padded (the last column is every prompt's last token).

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (prompt-only format; left padding for generation).
    """
    if (
        isinstance(examples, Sequence)
        and not isinstance(examples, (str, bytes))
        and examples
        and all(isinstance(e, str) for e in examples)
    ):
        texts = validate_texts(examples, name)
        where = [f"{name}[{i}]" for i in range(len(texts))]
    else:
        texts = [ex["prompt"] for ex in validate_prompt_examples(examples, name)]
        where = [f"{name}[{i}]['prompt']" for i in range(len(texts))]
    if (
        isinstance(max_length, bool)
        or not isinstance(max_length, numbers.Integral)
        or max_length < 1
    ):
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    _, pad = check_tokenizer(tokenizer)
    ids = [_encode(tokenizer, text, at) for text, at in zip(texts, where)]
    for at, p in zip(where, ids):
        if len(p) > max_length:
            raise ValueError(f"{at} is {len(p)} tokens, more than max_length={max_length}")
    t = max(len(p) for p in ids)
    input_ids = torch.full((len(ids), t), pad, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(ids), t), dtype=torch.long)  # (B, T)
    for i, p in enumerate(ids):
        input_ids[i, t - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention_mask[i, t - len(p) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
