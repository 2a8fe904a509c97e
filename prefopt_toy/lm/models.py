"""GPT-2 models: the published configurations, and small ones trained offline on the project's corpus.

Sizes (``SIZES``; all are ``GPT2Config`` / ``GPT2LMHeadModel``, the same architecture, with GPT-2's
50 257-token vocabulary so the real tokenizer works):

========== ======== ======= ====== =========== ================================================
size       n_layer  n_head  n_embd n_positions use
========== ======== ======= ====== =========== ================================================
tiny       2        2       64     128         tests (trained in seconds)
small      4        4       192    256         the CPU demo (trained in about a minute)
gpt2       12       12      768    1024        GPT-2 124M (``load_model("gpt2")`` on a GPU)
gpt2-medium 24      16      1024   1024        GPT-2 355M
gpt2-large 36       20      1280   1024        GPT-2 774M
========== ======== ======= ====== =========== ================================================

``default_model(size)`` needs nothing from the network: it builds the tiny or small configuration,
trains it briefly on ``prefopt_toy.lm.corpus.training_corpus`` and caches it as safetensors under
``$PREFOPT_CACHE/models/`` (default ``~/.cache/prefopt_toy/models/``); later calls load the cache.
The small configurations have no dropout (preference training usually turns it off; the published
GPT-2 configurations keep their 0.1, so call ``model.eval()`` or set the ``*_pdrop`` fields there).

``load_model(name_or_path)`` loads a hub name or a local directory with ``from_pretrained``. It looks
in the local cache first; with ``HF_HUB_OFFLINE=1`` and nothing cached it raises an ``OSError`` at
once that says what to do, instead of retrying the network.

References
----------
Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2; Table 2 gives
the 12/24/36-layer, 768/1024/1280-wide configurations).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .corpus import training_corpus
from .tokenizer import EOS_TOKEN_ID, VOCAB_SIZE, gpt2_tokenizer

__all__ = [
    "SIZES",
    "TRAINED_SIZES",
    "TrainingRecipe",
    "RECIPES",
    "gpt2_config",
    "default_cache_dir",
    "default_model",
    "train_lm",
    "load_model",
]

# GPT-2 configurations: (n_layer, n_head, n_embd, n_positions).
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (2, 2, 64, 128),
    "small": (4, 4, 192, 256),
    "gpt2": (12, 12, 768, 1024),
    "gpt2-medium": (24, 16, 1024, 1024),
    "gpt2-large": (36, 20, 1280, 1024),
}
TRAINED_SIZES = ("tiny", "small")  # the sizes default_model trains offline


@dataclass(frozen=True)
class TrainingRecipe:
    """How ``default_model`` trains a size: AdamW steps of next-token cross-entropy on the corpus.

    References
    ----------
    Loshchilov & Hutter, arXiv:1711.05101 (AdamW); Radford et al. 2019 (GPT-2).
    """

    steps: int
    batch_size: int
    lr: float
    n_lifted: int = 2000
    n_sentiment: int = 1000


RECIPES: dict[str, TrainingRecipe] = {
    "tiny": TrainingRecipe(steps=200, batch_size=16, lr=5e-3),
    "small": TrainingRecipe(steps=1200, batch_size=32, lr=1e-3),
}


def gpt2_config(size: str):
    """The ``GPT2Config`` of ``size`` (one of ``SIZES``), vocabulary 50 257.

    ``tiny`` and ``small`` have all dropout probabilities 0; the published sizes keep GPT-2's 0.1.

    References
    ----------
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", Table 2.

    Examples
    --------
    >>> cfg = gpt2_config("gpt2")
    >>> cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size
    (12, 12, 768, 50257)
    """
    from transformers import GPT2Config

    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    n_layer, n_head, n_embd, n_positions = SIZES[size]
    extra: dict[str, Any] = {}
    if size in TRAINED_SIZES:
        extra = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    return GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        n_positions=n_positions,
        bos_token_id=EOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID,
        pad_token_id=EOS_TOKEN_ID,
        **extra,
    )


def default_cache_dir() -> Path:
    """``$PREFOPT_CACHE`` if set, else ``~/.cache/prefopt_toy``: where trained default models live."""
    env = os.environ.get("PREFOPT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prefopt_toy"


def _encode_lines(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each line followed by EOS (the model learns to stop after a sentence)."""
    return [tokenizer(t).input_ids + [EOS_TOKEN_ID] for t in texts]


def _shared_unused_nll(h, targets_used, emb_used, emb_unused, n_unused: int):
    """Exact full-vocabulary next-token NLL when every unused token row equals ``emb_unused``.

    h: (N, C) final hidden states; targets_used: (N,) indices into the used-token table;
    emb_used: (U, C); emb_unused: (C,); n_unused = V - U tokens share the row ``emb_unused``.
    log Z = logsumexp(h @ emb_used.T, h @ emb_unused + log n_unused), equal to the logsumexp over
    all V logits of a model whose unused rows all equal ``emb_unused``.
    """
    logits_used = h @ emb_used.T  # (N, U)
    logit_unused = (h @ emb_unused + math.log(n_unused)).unsqueeze(-1)  # (N, 1)
    log_z = torch.logsumexp(torch.cat([logits_used, logit_unused], dim=-1), dim=-1)  # (N,)
    return log_z - logits_used.gather(-1, targets_used.unsqueeze(-1)).squeeze(-1)  # (N,)


def train_lm(model, tokenizer, texts: list[str], *, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Train a GPT-2 in place on ``texts`` (each line + EOS) by next-token cross-entropy; deterministic.

    Every line is one sequence starting at position 0, as prompts are at sampling time. Batches are
    drawn from a ``torch.Generator`` seeded with ``seed`` (epochs of random permutations); the
    optimiser is AdamW (no weight decay). Tokens that never occur in ``texts`` share one embedding
    row during training (initialised to zero), which makes the full 50 257-way softmax cheap to
    compute exactly: the unused tokens contribute ``n_unused * exp(h . e_unused)`` to every
    normaliser. After training the row is written to every unused token, so the result is an
    ordinary GPT-2 whose loss on ``texts`` is the full-vocabulary cross-entropy that was minimised.
    Dropout should be off (``tiny`` / ``small`` configurations): training then uses no global RNG.

    Parameters
    ----------
    model : transformers.GPT2LMHeadModel
        Tied input/output embeddings (GPT-2's default).
    tokenizer : GPT-2 tokenizer
    texts : list of str
        Training lines (non-empty).
    steps, batch_size : int
        Positive.
    lr : float
        AdamW learning rate.
    seed : int
        Seed of the batch sampler.

    Returns
    -------
    list of float
        The mean training loss (nats per token) of every step.

    References
    ----------
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2);
    Loshchilov & Hutter, arXiv:1711.05101 (AdamW).
    """
    for name, val in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not texts:
        raise ValueError("texts must not be empty")
    wte = model.transformer.wte.weight
    if model.lm_head.weight is not wte:
        raise ValueError("model must tie its input and output embeddings (GPT-2's default)")
    n_pos = model.config.n_positions
    seqs = _encode_lines(tokenizer, texts)
    longest = max(len(s) for s in seqs)
    if longest > n_pos:
        raise ValueError(f"texts hold a line of {longest} tokens, more than the model's n_positions={n_pos}")

    device, dtype = wte.device, wte.dtype
    used = sorted({t for s in seqs for t in s})
    remap = torch.full((wte.shape[0],), -1, dtype=torch.long)
    remap[torch.tensor(used)] = torch.arange(len(used))
    n_unused = wte.shape[0] - len(used)
    # All sequences padded to one (N_lines, L) table of used-token indices; lengths kept apart.
    lengths = torch.tensor([len(s) for s in seqs])
    table = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        table[i, : len(s)] = remap[torch.tensor(s)]

    emb_used = torch.nn.Parameter(wte.detach()[torch.tensor(used)].clone())  # (U, C)
    emb_unused = torch.nn.Parameter(torch.zeros(wte.shape[1], dtype=dtype, device=device))  # (C,)
    others = [p for n, p in model.named_parameters() if p is not wte]
    opt = torch.optim.AdamW([emb_used, emb_unused, *others], lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(len(seqs), generator=gen), 0
    losses: list[float] = []
    model.train()
    for _ in range(steps):
        if cursor + batch_size > len(seqs):
            order, cursor = torch.randperm(len(seqs), generator=gen), 0
        rows = order[cursor : cursor + batch_size]
        cursor += batch_size
        lens = lengths[rows]  # (B,)
        t_max = int(lens.max())
        ids = table[rows, :t_max].to(device)  # (B, T) used-token indices, right-padded
        mask = (torch.arange(t_max).unsqueeze(0) < lens.unsqueeze(1)).to(device)  # (B, T)
        pos = torch.arange(t_max, device=device).unsqueeze(0).expand_as(ids)  # (B, T)
        hidden = model.transformer(
            inputs_embeds=emb_used[ids], attention_mask=mask.long(), position_ids=pos, use_cache=False
        ).last_hidden_state  # (B, T, C)
        valid = mask[:, 1:]  # (B, T-1): position t predicts token t+1
        h = hidden[:, :-1][valid]  # (N, C)
        targets = ids[:, 1:][valid]  # (N,)
        loss = _shared_unused_nll(h, targets, emb_used, emb_unused, n_unused).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        wte.copy_(emb_unused.detach().unsqueeze(0).expand_as(wte))
        wte[torch.tensor(used, device=device)] = emb_used.detach()
    model.eval()
    return losses


def _recipe_key(size: str, seed: int, recipe: TrainingRecipe) -> str:
    """A short hash of everything that determines the trained weights (the cache key)."""
    cfg = gpt2_config(size).to_dict()
    for k in ("transformers_version", "_name_or_path", "dtype", "torch_dtype"):
        cfg.pop(k, None)
    texts = training_corpus(seed=seed, n_lifted=recipe.n_lifted, n_sentiment=recipe.n_sentiment)
    blob = json.dumps(
        {"config": cfg, "recipe": asdict(recipe), "seed": seed, "corpus": hashlib.sha256("\n".join(texts).encode()).hexdigest(), "v": 1},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_model(size: str = "tiny", *, cache_dir: str | os.PathLike | None = None, seed: int = 0):
    """The offline default: a small GPT-2 trained on the project's corpus, cached as safetensors.

    The first call for a (size, seed) builds ``gpt2_config(size)``, initialises it from ``seed``
    (inside ``torch.random.fork_rng``, so the global RNG is left as it was), trains it with
    ``train_lm`` and ``RECIPES[size]`` on ``training_corpus(seed=seed)`` and saves it with
    ``save_pretrained`` (safetensors) to ``<cache_dir>/models/gpt2-<size>-seed<seed>-<hash>/``; the
    hash covers the configuration, the recipe and the corpus, so a changed recipe never reuses a
    stale cache. Later calls load that directory. The tiny model trains in seconds on a CPU,
    the small one in about a minute.

    Parameters
    ----------
    size : {"tiny", "small"}
        For the published sizes use ``load_model("gpt2")`` etc.
    cache_dir : path, optional
        Default ``default_cache_dir()``: ``$PREFOPT_CACHE`` or ``~/.cache/prefopt_toy``.
    seed : int
        Initialisation and batch-order seed.

    Returns
    -------
    model : transformers.GPT2LMHeadModel
        float32, on the CPU, in eval mode.
    tokenizer : transformers.GPT2Tokenizer
        ``gpt2_tokenizer()``.

    References
    ----------
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2).
    """
    from transformers import GPT2LMHeadModel

    if size not in TRAINED_SIZES:
        raise ValueError(f"size must be one of {TRAINED_SIZES} (for {size!r} use load_model({size!r})), got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    recipe = RECIPES[size]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / "models" / f"gpt2-{size}-seed{seed}-{_recipe_key(size, seed, recipe)}"
    tokenizer = gpt2_tokenizer()
    if not (target / "model.safetensors").is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GPT2LMHeadModel(gpt2_config(size))
        texts = training_corpus(seed=seed, n_lifted=recipe.n_lifted, n_sentiment=recipe.n_sentiment)
        losses = train_lm(model, tokenizer, texts, steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, seed=seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            model.save_pretrained(tmp)  # safetensors (transformers 5 writes nothing else)
            meta = {"size": size, "seed": seed, "recipe": asdict(recipe), "first_loss": losses[0], "final_loss": losses[-1]}
            (tmp / "prefopt_training.json").write_text(json.dumps(meta, indent=1))
            try:
                tmp.rename(target)  # atomic: a concurrent builder either wins or finds the target
            except OSError:
                if not (target / "model.safetensors").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    model = GPT2LMHeadModel.from_pretrained(target, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def _offline() -> bool:
    """Whether HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set now (read at call time)."""
    import huggingface_hub.constants as hc

    truthy = {"1", "true", "yes", "on"}
    env = any(os.environ.get(k, "").strip().lower() in truthy for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(getattr(hc, "HF_HUB_OFFLINE", False))


def _how_to(name: str) -> str:
    return (
        f"To use {name!r}: (1) on a machine with network access run once without HF_HUB_OFFLINE "
        f"(or `hf download {name}`) so the weights land in the Hugging Face cache; or (2) pass a "
        f"local directory holding config.json and model.safetensors; or (3) use the offline default "
        f"that needs nothing: prefopt_toy.lm.models.default_model('tiny') or default_model('small')."
    )


def load_model(name_or_path: str | os.PathLike, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None):
    """Load a GPT-2 (causal LM) by hub name, local directory, or project size.

    Parameters
    ----------
    name_or_path : str or path
        ``"tiny"`` / ``"small"``: ``default_model(name)`` (trained offline, cached); a directory
        with ``config.json`` and weights; or a Hugging Face hub name (``"gpt2"``,
        ``"gpt2-medium"``, ``"openai-community/gpt2-large"``...).
    dtype : torch.dtype
        Parameter dtype (float32, bfloat16, float64...).
    device : str or torch.device
    cache_dir : path, optional
        Hugging Face cache directory for hub names (default: the hub's own, ``$HF_HOME/hub``).

    Returns
    -------
    transformers.PreTrainedModel
        In eval mode. The tokenizer of every GPT-2 is ``gpt2_tokenizer()``.

    Raises
    ------
    OSError
        At once, without network retries, when a hub name is not in the local cache and
        ``HF_HUB_OFFLINE=1`` (or the download fails); the message says how to proceed.
    ValueError
        For a path that does not exist or a directory without ``config.json``.

    References
    ----------
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2).
    """
    from transformers import AutoModelForCausalLM

    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch.dtype, got {dtype!r}")
    name = os.fspath(name_or_path)
    if name in TRAINED_SIZES:
        model, _ = default_model(name)
        return model.to(dtype=dtype, device=device)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"name_or_path {name!r} is a directory without config.json (save a model with save_pretrained)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        return model.to(device).eval()
    if name.startswith((".", "/", "~")) or os.sep in name and path.parent.exists() and not path.exists():
        raise ValueError(f"name_or_path {name!r} looks like a local path but does not exist")
    kwargs: dict[str, Any] = {"dtype": dtype, "cache_dir": os.fspath(cache_dir) if cache_dir is not None else None}
    try:  # the local cache first: no network, returns or fails at once
        model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError as err:
        if _offline():
            raise OSError(f"No weights for {name!r} in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading. {_how_to(name)}") from err
        try:
            model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        except OSError as err2:
            raise OSError(f"Could not download {name!r} from the Hugging Face hub and it is not cached locally. {_how_to(name)}") from err2
    return model.to(device).eval()
