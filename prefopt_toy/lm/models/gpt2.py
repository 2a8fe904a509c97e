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
trains it briefly on ``prefopt_toy.lm.models.corpus.training_corpus`` and caches it as safetensors under
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
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .corpus import training_corpus
from .pretrain import RECIPES, TrainingRecipe, train_lm
from .tokenizer import EOS_TOKEN_ID, VOCAB_SIZE, gpt2_tokenizer

__all__ = [
    "ModelCacheWarning",
    "RECIPES",
    "SIZES",
    "TRAINED_SIZES",
    "TrainingRecipe",
    "default_cache_dir",
    "default_model",
    "gpt2_config",
    "load_model",
    "train_lm",
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


def _recipe_key(size: str, seed: int, recipe: TrainingRecipe) -> str:
    """A short hash of everything that determines the trained weights (the cache key)."""
    cfg = gpt2_config(size).to_dict()
    for k in ("transformers_version", "_name_or_path", "dtype", "torch_dtype"):
        cfg.pop(k, None)
    texts = training_corpus(seed=seed, n_lifted=recipe.n_lifted, n_sentiment=recipe.n_sentiment)
    blob = json.dumps(
        {
            "config": cfg,
            "recipe": asdict(recipe),
            "seed": seed,
            "corpus": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            "v": 1,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class ModelCacheWarning(UserWarning):
    """``default_model`` found its cached model damaged and retrains it; the message names the file.

    References
    ----------
    safetensors, https://github.com/huggingface/safetensors.
    """


_META = "prefopt_training.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _damaged_file(directory: Path, *, own_cache: bool = False) -> tuple[str, str] | None:
    """``(file, what is wrong)`` for the first damaged file of a saved model directory, else None.

    Every ``*.json`` must parse and every ``*.safetensors`` must have a valid header covering the
    whole file (``safetensors.safe_open``). For the project's own cache (``own_cache``) the
    directory must also hold ``config.json``, ``model.safetensors`` and ``prefopt_training.json``,
    and ``model.safetensors`` must match the SHA-256 recorded there (caches written before the
    digest was recorded are checked structurally only).
    """
    from safetensors import safe_open

    required = ("config.json", "model.safetensors", _META) if own_cache else ()
    for name in required:
        if not (directory / name).is_file():
            return name, "is missing"
    for path in sorted(directory.glob("*.json")):
        try:
            json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            return path.name, f"is not valid JSON (truncated or damaged): {err}"
    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                list(f.keys())
        except Exception as err:
            return path.name, f"is not a valid safetensors file (truncated or damaged): {err}"
    if own_cache:
        meta = json.loads((directory / _META).read_text(encoding="utf-8"))
        recorded = meta.get("model_sha256") if isinstance(meta, dict) else None
        if recorded is not None and _sha256(directory / "model.safetensors") != recorded:
            return (
                "model.safetensors",
                f"is damaged: its content does not match the SHA-256 recorded in {_META}",
            )
    return None


def _discard(target: Path) -> None:
    """Move a damaged cache directory aside and delete it (a concurrent caller may have done it)."""
    aside = Path(tempfile.mkdtemp(prefix=target.name + ".damaged-", dir=target.parent))
    try:
        os.rename(target, aside / target.name)
    except FileNotFoundError:
        pass
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def default_model(size: str = "tiny", *, cache_dir: str | os.PathLike | None = None, seed: int = 0):
    """The offline default: a small GPT-2 trained on the project's corpus, cached as safetensors.

    The first call for a (size, seed) builds ``gpt2_config(size)``, initialises it from ``seed``
    (inside ``torch.random.fork_rng``, so the global RNG is left as it was), trains it with
    ``train_lm`` and ``RECIPES[size]`` on ``training_corpus(seed=seed)`` and saves it with
    ``save_pretrained`` (safetensors) to ``<cache_dir>/models/gpt2-<size>-seed<seed>-<hash>/``; the
    hash covers the configuration, the recipe and the corpus, so a changed recipe never reuses a
    stale cache. Later calls load that directory. The tiny model trains in seconds on a CPU,
    the small one in about a minute.

    The cache is checked before it is used: ``prefopt_training.json`` records the SHA-256 of
    ``model.safetensors``, and every JSON and safetensors file must parse. A damaged cache (a
    truncated or overwritten file, a deleted one) is not an error: a :class:`ModelCacheWarning`
    names the file and what is wrong, the directory is deleted and the model trained again.

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

    Warns
    -----
    ModelCacheWarning
        When the cached model was damaged and is retrained (the message names the file).

    References
    ----------
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2).
    """
    from transformers import GPT2LMHeadModel

    if size not in TRAINED_SIZES:
        raise ValueError(
            f"size must be one of {TRAINED_SIZES} (for {size!r} use load_model({size!r})), got {size!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    recipe = RECIPES[size]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / "models" / f"gpt2-{size}-seed{seed}-{_recipe_key(size, seed, recipe)}"
    tokenizer = gpt2_tokenizer()

    def build():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GPT2LMHeadModel(gpt2_config(size))
        texts = training_corpus(seed=seed, n_lifted=recipe.n_lifted, n_sentiment=recipe.n_sentiment)
        losses = train_lm(
            model,
            tokenizer,
            texts,
            steps=recipe.steps,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            seed=seed,
        )
        meta = {"size": size, "seed": seed, "recipe": asdict(recipe)}
        return model, {**meta, "first_loss": losses[0], "final_loss": losses[-1]}

    return cached_model(target, build, what="default model"), tokenizer


def cached_model(target: Path, build: Callable[[], tuple[Any, dict]], *, what: str):
    """The model cached in ``target``, or ``build()``'s model, saved there first.

    ``build()`` returns ``(model, meta)``; the model is saved with ``save_pretrained``
    (safetensors) into a fresh directory beside ``target`` with ``meta`` and the SHA-256 of
    ``model.safetensors`` in ``prefopt_training.json``, then renamed to ``target`` (atomic: a
    concurrent builder either wins or finds the target). A cache that fails the checks of
    ``_damaged_file`` or does not load is named in a :class:`ModelCacheWarning` (``what`` says
    which model), deleted and built again. The model returned is always the one read back from
    ``target``: float32, on the CPU, in eval mode, its weights copied out of the file.
    """
    from transformers import GPT2LMHeadModel

    if target.exists():
        problem = _damaged_file(target, own_cache=True)
        if problem is None:
            try:
                model = GPT2LMHeadModel.from_pretrained(target, dtype=torch.float32)
            except Exception as err:
                problem = ("model.safetensors", f"does not load ({type(err).__name__}: {err})")
            else:
                return _private(model)
        warnings.warn(
            f"the cached {what} {str(target)!r} is damaged: {problem[0]} {problem[1]}; "
            "it is deleted and trained again",
            ModelCacheWarning,
            stacklevel=3,
        )
        _discard(target)
    if not (target / "model.safetensors").is_file():
        model, meta = build()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        try:
            model.save_pretrained(tmp)  # safetensors (transformers 5 writes nothing else)
            meta = {**meta, "model_sha256": _sha256(tmp / "model.safetensors")}
            (tmp / _META).write_text(json.dumps(meta, indent=1))
            try:
                tmp.rename(target)
            except OSError:
                if not (target / "model.safetensors").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _private(GPT2LMHeadModel.from_pretrained(target, dtype=torch.float32))


def _private(model):
    """``model`` in eval mode, its weights copied out of the memory-mapped cache file.

    So the file being damaged or replaced later cannot reach a model in use; tied weights stay tied.
    """
    with torch.no_grad():
        for param in model.parameters():
            param.data = param.data.clone()
    return model.eval()


def _offline() -> bool:
    """Whether HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set now (read at call time)."""
    import huggingface_hub.constants as hc

    truthy = {"1", "true", "yes", "on"}
    env = any(
        os.environ.get(k, "").strip().lower() in truthy
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return env or bool(getattr(hc, "HF_HUB_OFFLINE", False))


def _how_to(name: str) -> str:
    return (
        f"To use {name!r}: (1) on a machine with network access run once without HF_HUB_OFFLINE "
        f"(or `hf download {name}`) so the weights land in the Hugging Face cache; or (2) pass a "
        f"local directory holding config.json and model.safetensors; or (3) use the offline default "
        f"that needs nothing: prefopt_toy.lm.models.gpt2.default_model('tiny') or default_model('small')."
    )


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
):
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
        ``HF_HUB_OFFLINE=1`` (or the download fails), or its cached files are damaged (the file
        named); the message says how to proceed.
    ValueError
        For a path that does not exist, a directory without ``config.json``, or a directory with a
        damaged file (a JSON file that does not parse, a truncated or overwritten safetensors
        file): the file is named. ``"tiny"`` / ``"small"`` retrain a damaged cache instead
        (:func:`default_model`).

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
            raise ValueError(
                f"name_or_path {name!r} is a directory without config.json (save a model with save_pretrained)"
            )
        problem = _damaged_file(path)
        if problem is not None:
            raise ValueError(
                f"name_or_path {name!r}: {str(path / problem[0])!r} {problem[1]}; save the model "
                "again (save_pretrained) or copy it again"
            )
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        return model.to(device).eval()
    if (
        name.startswith((".", "/", "~"))
        or os.sep in name
        and path.parent.exists()
        and not path.exists()
    ):
        raise ValueError(f"name_or_path {name!r} looks like a local path but does not exist")
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "cache_dir": os.fspath(cache_dir) if cache_dir is not None else None,
    }
    try:  # the local cache first: no network, returns or fails at once
        model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError as err:
        if _offline():
            raise OSError(
                f"No weights for {name!r} in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading. {_how_to(name)}"
            ) from err
        try:
            model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        except OSError as err2:
            raise OSError(
                f"Could not download {name!r} from the Hugging Face hub and it is not cached locally. {_how_to(name)}"
            ) from err2
        except Exception as err2:
            damaged = _damaged_hub_cache(name, cache_dir)
            if damaged is None:
                raise
            raise damaged from err2
    except Exception as err:
        damaged = _damaged_hub_cache(name, cache_dir)
        if damaged is None:
            raise
        raise damaged from err
    return model.to(device).eval()


def _damaged_hub_cache(name: str, cache_dir: str | os.PathLike | None) -> OSError | None:
    """An ``OSError`` naming the damaged file of ``name`` in the Hugging Face cache, or None.

    None when no file of the cached snapshot is found damaged (another kind of failure).
    """
    from huggingface_hub import try_to_load_from_cache

    for filename in ("config.json", "model.safetensors"):
        cached = try_to_load_from_cache(name, filename, cache_dir=cache_dir)
        if isinstance(cached, str):
            problem = _damaged_file(Path(cached).parent)
            if problem is not None:
                where = Path(cached).parent / problem[0]
                return OSError(
                    f"The Hugging Face cache of {name!r} is damaged: {str(where)!r} {problem[1]}. Delete "
                    f"it and download it again (`hf download {name} --force-download`). {_how_to(name)}"
                )
    return None
