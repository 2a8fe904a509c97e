"""The GPT-2 side: the same per-pair losses and online algorithms on a language model.

- ``tokenizer``, ``models``, ``corpus``: GPT-2's BPE tokenizer offline, the GPT-2 sizes, ``load_model``
  and the offline default model trained on the project's generated corpus (cached as safetensors).
- ``logprobs``, ``data``: completion log-probs with the prompt masked and the reduction explicit
  (``"sum"`` or ``"mean"``, no default); preference data in TRL's convention.
- ``objectives``: sequence log-probs to the shared per-pair losses, metrics with TRL's names.
- ``judges``, ``sampling``: lifted-game, sentiment and callable judges; KV-cache sampling from the
  policy, the reference and the token-level geometric mixture.
- ``checkpoint``, ``runlog``: safetensors checkpoints with exact resume, JSON-lines run logs.
- ``trainer``, ``online``: one training loop composed like the toy (pair source x labels x loss):
  offline DPO/IPO/SLiC or any loss, online DPO/IPO, IPO-MD, Nash-MD-PG.
- ``bridge``: lifted games: the reference class distribution with Wilson intervals, the exact toy
  prediction per algorithm, a training run compared with it, and its figure.
- ``distributed``: data parallelism over processes (torchrun / accelerate environment, gloo or
  NCCL): sharding, gradient and metric averaging, per-rank generators.

Submodules import transformers; importing ``prefopt_toy`` itself does not.

References
----------
Munos et al., arXiv:2312.00886v4, App. F.1 (the token-level geometric mixture); Calandriello et
al., arXiv:2403.08635v1 (online IPO, IPO-MD); Rafailov et al., arXiv:2305.18290v3 (DPO).
"""
