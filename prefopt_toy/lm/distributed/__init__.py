r"""Data-parallel training over several processes with ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Every process (rank) holds a full copy of the model. A training step takes one *global* batch,
the same on every rank; each rank keeps its contiguous slice (``shard``), computes the mean loss
over that slice, back-propagates, and the ranks average their gradients (``all_reduce_gradients``)
before the optimizer step. The ranks start from rank 0's weights (``broadcast_module``), see the
same averaged gradient and run the same optimizer, so their weights stay equal step after step.

Why averaging gives the single-process gradient. Let the global batch hold ``B`` pairs with
per-pair losses :math:`\ell_i`, split into ``W`` shards :math:`S_r` of equal size ``n = B / W``.
Rank ``r`` differentiates its shard mean :math:`L_r = \frac1n \sum_{i \in S_r} \ell_i`. The
single-process loss is the global mean

.. math:: L = \frac1B \sum_{i=1}^{B} \ell_i = \frac1W \sum_{r=1}^{W} \frac1n \sum_{i \in S_r} \ell_i
          = \frac1W \sum_{r=1}^{W} L_r ,

so :math:`\nabla L = \frac1W \sum_r \nabla L_r`: the *average* of the per-rank gradients (a sum
all-reduce divided by ``W``). This holds because the shards have equal size, which ``shard``
enforces; with unequal shards the plain average would weight the pairs of a small shard more.
Unequal shards of sizes :math:`n_r` (``shard_bounds``, :math:`\sum_r n_r = B`) are made exact
again by scaling: rank ``r`` differentiates :math:`\frac{W n_r}{B} L_r`, and
:math:`\frac1W \sum_r \frac{W n_r}{B} \nabla L_r = \frac1B \sum_r \sum_{i \in S_r} \nabla\ell_i
= \nabla L`; the metrics are averaged with weights :math:`n_r` (``all_reduce_metrics(...,
weight=n_r)``). ``prefopt_toy.lm.train.trainer`` does both. It also
holds for any per-pair loss, as long as each pair's loss depends on that pair only (true of every
loss in ``prefopt_toy.lm.objectives``: the reference log-probs are per pair, and nothing is
normalised over the batch). The same argument makes ``all_reduce_metrics`` (the average of
per-shard batch means) equal the global batch mean of a mean-type metric.

Randomness. ``seed_generators`` derives generators from ``(seed, name)`` for streams that must
agree across ranks (the data order: every rank must permute the global dataset identically before
sharding it) and from ``(seed, rank, name)`` for per-rank streams (online sampling of completions
and of labels). Online sampling therefore differs from rank to rank **by design**: ``W`` ranks
draw ``W`` independent sets of completions per step, as ``W`` times more samples would. A
distributed online run is thus not the same random run as a single-process one (the exact-gradient
property above holds for a fixed global batch, as in offline training: a 2-process online step
equals a single-process step on the union of the pairs the two ranks drew). The GPT-2 trainer's
streams are ``trainer_generators``: the shared data order keeps the single-process seed, so a
W-process offline run sees the single-process run's global batches.

The environment is the one ``torchrun`` and ``accelerate launch`` set for each process: ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without them the context is a
single process, and every function here is the identity (no process group is needed).

References
----------
PyTorch ``torch.distributed`` (https://pytorch.org/docs/stable/distributed.html: ``all_reduce``,
``broadcast``, the ``env://`` variables set by ``torchrun``); Li et al. 2020, "PyTorch
Distributed: Experiences on Accelerating Data Parallel Training", VLDB 13(12) (gradient averaging
in DDP); Hugging Face accelerate v1.15 (``accelerate launch`` sets the same variables); TRL
https://github.com/huggingface/trl v1.13.0 (its trainers average metrics across processes).
"""

from __future__ import annotations

from .collectives import (
    all_reduce_gradients,
    all_reduce_metrics,
    any_rank,
    broadcast_module,
    same_on_all_ranks,
    shard,
    shard_bounds,
)
from .process_group import (
    DistributedContext,
    destroy_process_group,
    init_process_group,
)
from .seeding import all_gather_generator_states, rank_seed, seed_generators, trainer_generators

__all__ = [
    "DistributedContext",
    "all_gather_generator_states",
    "all_reduce_gradients",
    "all_reduce_metrics",
    "any_rank",
    "broadcast_module",
    "destroy_process_group",
    "init_process_group",
    "rank_seed",
    "same_on_all_ranks",
    "seed_generators",
    "shard",
    "shard_bounds",
    "trainer_generators",
]
