"""The "full" and "retain" models of the unlearning experiment: fine-tuned once, cached like default_model.

TOFU's protocol (Maini et al., arXiv:2401.06121v1, section 3) needs two fine-tuned models: one on
every person (the model to unlearn, and the frozen reference of NPO and AltPO) and one on the
retain people only (never saw the forget people: the target that forget quality compares
against). Here both start from ``default_model(size, seed=seed)`` and are trained with
:func:`prefopt_toy.lm.models.pretrain.train_lm` on ``FactCorpus.training_texts(split)`` with the
same :class:`FinetuneRecipe`, so they differ only in the forget people's lines.

The results are cached as safetensors under ``<cache_dir>/models/unlearning-<size>-<split>-seed<seed>-<hash>/``
(``cache_dir`` defaults to ``default_cache_dir()``, as for ``default_model``); the hash covers the
base model's weights, the recipe and the training text, so a changed corpus or recipe never reuses
a stale model.

References
----------
Maini et al., arXiv:2401.06121v1 (TOFU, section 3: fine-tuned and retain models); Loshchilov &
Hutter, arXiv:1711.05101 (AdamW).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from prefopt_toy.lm.models import default_cache_dir, default_model
from prefopt_toy.lm.models.gpt2 import cached_model
from prefopt_toy.lm.models.pretrain import train_lm

from .corpus import FactCorpus

__all__ = ["FINETUNE_RECIPES", "FinetuneRecipe", "finetuned_model"]


@dataclass(frozen=True)
class FinetuneRecipe:
    """AdamW fine-tuning of the default model on the fact lines (``train_lm``'s arguments).

    References
    ----------
    Loshchilov & Hutter, arXiv:1711.05101 (AdamW).
    """

    steps: int
    """AdamW steps."""
    batch_size: int
    """Lines per step."""
    lr: float
    """Learning rate."""


FINETUNE_RECIPES: dict[str, FinetuneRecipe] = {
    "tiny": FinetuneRecipe(steps=150, batch_size=16, lr=3e-3),
    "small": FinetuneRecipe(steps=300, batch_size=32, lr=1e-3),
}


def _weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def finetuned_model(
    corpus: FactCorpus,
    split: str,
    *,
    size: str = "small",
    seed: int = 0,
    recipe: FinetuneRecipe | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """The default model of ``size`` fine-tuned on ``corpus.training_texts(split)``; cached.

    Parameters
    ----------
    corpus : FactCorpus
    split : {"full", "retain"}
        ``"full"``: every person (TOFU's fine-tuned model); ``"retain"``: the retain people only.
    size : {"tiny", "small"}
    seed : int
        Seed of the base model and of the batch order.
    recipe : FinetuneRecipe, optional
        Default ``FINETUNE_RECIPES[size]``.
    cache_dir : path, optional
        Default ``default_cache_dir()``.

    Returns
    -------
    model : transformers.GPT2LMHeadModel
        float32, CPU, eval mode.
    tokenizer : transformers.GPT2Tokenizer

    Warns
    -----
    ModelCacheWarning
        When the cached model is damaged (the message names the file); it is trained again
        (``models.gpt2.cached_model``, the cache of ``default_model``).

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 3.
    """
    if not isinstance(corpus, FactCorpus):
        raise ValueError(f"corpus must be a FactCorpus, got {type(corpus).__name__}")
    if split not in ("full", "retain"):
        raise ValueError(f"split must be 'full' or 'retain', got {split!r}")
    if size not in FINETUNE_RECIPES:
        raise ValueError(f"size must be one of {tuple(FINETUNE_RECIPES)}, got {size!r}")
    if recipe is None:
        recipe = FINETUNE_RECIPES[size]
    if not isinstance(recipe, FinetuneRecipe):
        raise ValueError(f"recipe must be a FinetuneRecipe, got {type(recipe).__name__}")
    model, tokenizer = default_model(size, cache_dir=cache_dir, seed=seed)
    texts = corpus.training_texts(split)
    blob = json.dumps(
        {
            "base": _weights_digest(model),
            "recipe": asdict(recipe),
            "seed": seed,
            "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            "v": 2,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / "models" / f"unlearning-{size}-{split}-seed{seed}-{key}"

    def build():
        losses = train_lm(
            model,
            tokenizer,
            texts,
            steps=recipe.steps,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            seed=seed,
        )
        return model, {"split": split, "recipe": asdict(recipe), "losses": losses[-5:]}

    return cached_model(target, build, what=f"{split} fine-tuned model"), tokenizer
