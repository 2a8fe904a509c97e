"""The GPT-2 side: the same per-pair losses and online algorithms on a language model.

- ``models/``: GPT-2's BPE tokenizer offline (``tokenizer``), the GPT-2 sizes, ``load_model`` and
  the offline default model (``gpt2``), the project's generated corpus and lifted tasks
  (``corpus``) and the recipe that trains the small models on it (``pretrain``).
- ``data``, ``logprobs``: preference data in TRL's convention; completion log-probs with the prompt
  masked and the reduction explicit (``"sum"`` or ``"mean"``, no default).
- ``objectives``: sequence log-probs to the shared per-pair losses, metrics with TRL's names.
- ``judges``, ``sampling``: lifted-game, sentiment and callable judges; KV-cache sampling from the
  policy, the reference and the token-level geometric mixture.
- ``model_judge``: a language model as a pairwise judge (``LanguageModelJudge``): the next-token
  odds of "1" against "2" after a judge template, both orders averaged or raw, position bias.
- ``train/``: one training loop composed like the toy (pair source x labels x loss): the trainer
  (offline DPO/IPO/SLiC or any loss; online DPO/IPO, IPO-MD, Nash-MD-PG with ``online``), its
  ``config``, safetensors checkpoints (``checkpoint``) with exact resume (on-disk format in ``state_io``),
  JSON-lines run logs (``runlog``), and what it needs to run as one of several processes (``parallel``).
- ``distributed/``: data parallelism over processes (torchrun / accelerate environment, gloo or
  NCCL): process groups, sharding and averaging (``collectives``), per-rank generators
  (``seeding``).
- ``unlearning/``: unlearning on GPT-2 in TOFU's manner: a generated corpus of invented people
  (``corpus``), the full and retain fine-tuned models (``models``, cached), TOFU's metrics
  (``metrics``: truth ratio, forget quality as a KS p-value, model utility), their evaluation
  (``evaluation``), the GA / GradDiff / NPO / NPO + retain / AltPO loop (``unlearn``) and the
  forget-quality / utility figure (``figure``).
- ``bridge/``: lifted games: the reference class distribution with Wilson intervals
  (``class_estimate``), the exact toy prediction per algorithm (``predict``), a training run
  compared with it (``run``), saved runs and grids (``runs``), the sampling error of the gap
  (``error``), figures, the ``bridge_explorer`` widget and the command line's ``demo``.

Layers (import-linter, ``pyproject.toml``): ``bridge`` -> ``train`` -> ``distributed`` and the
modules here; ``models`` beside them. The GPT-2 side reaches the exact core through the loss
library, the games and the solutions; only ``bridge`` runs the exact dynamics.

Submodules import transformers; importing ``prefopt_toy`` itself does not.

References
----------
Munos et al., arXiv:2312.00886v4, App. F.1 (the token-level geometric mixture); Calandriello et
al., arXiv:2403.08635v1 (online IPO, IPO-MD); Rafailov et al., arXiv:2305.18290v3 (DPO).
"""

from prefopt_toy._extras import lm_missing, lm_missing_message

_missing = lm_missing()
if _missing:
    raise ModuleNotFoundError(lm_missing_message(_missing), name=_missing[0])
del _missing
