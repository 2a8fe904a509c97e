r"""What the GPT-2 trainer needs to run as one of several processes: shards, stops, per-rank streams.

``prefopt_toy.lm.train.trainer`` takes a ``DistributedContext``; with ``world_size`` W > 1 each rank
trains on its slice of every global batch (``local_rows``, with the loss scale ``loss_scale`` that
makes the averaged gradient the single-process one for unequal slices too), the ranks stop together
when one of them meets a non-finite value or an error (``raise_together``), and a checkpoint written by rank 0
holds every rank's random streams (``checkpoint_generators``) so that each rank resumes its own
(``restore_generators``); ``save_trainer`` writes a trainer's checkpoint that way, and
``Trainer.resume`` reads it back (``checkpoint.load_latest_checkpoint``, which falls back past a
damaged checkpoint). For a single process they do what the trainer always did.

The trainer with ``ctx`` (a ``DistributedContext``; None: one process, exactly as before).
``batch_size`` is the **global** batch. Every rank draws the same global order (the shared
``minibatch`` generator, seeded as in a single process), takes its contiguous slice (unequal slices
allowed, every rank needs one pair), and differentiates its shard-mean loss times :math:`W n_r / B`;
the gradients are averaged across ranks before clipping and the AdamW step, so they equal the
single-process gradient of the mean loss over the global batch, and the logged metrics are
shard-size-weighted means over the ranks (proofs in ``prefopt_toy.lm.distributed``). Both models are
broadcast from rank 0 at the start. Offline, every rank computes the reference log-probs of the
whole dataset once (the same cache everywhere). Online, each rank samples its own prompts'
completions and labels with per-rank generators (``seeding.trainer_generators``). Only rank 0
evaluates, shows progress, writes the run log and writes checkpoints; a checkpoint holds every
rank's generator states (below) and is resumed with the same world size, from a ``run_dir`` every
rank can read. Launch one script per process with ``torchrun`` (or ``accelerate launch``, which sets
the same variables)::

    # train_dpo.py
    from prefopt_toy.lm.distributed import destroy_process_group, init_process_group
    from .trainer import TrainConfig, train
    ctx = init_process_group()          # reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (gloo)
    ...                                 # build model, ref_model, tokenizer, dataset on every rank
    train(TrainConfig("dpo", reduction="sum", beta=0.1, batch_size=8, run_dir="runs/dpo"),
          model, ref_model, tokenizer, dataset=dataset, ctx=ctx)
    destroy_process_group(ctx)

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 train_dpo.py
    OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 train_dpo.py

The trainer builds its batches on the CPU, so a run uses the CPU and gloo (``init_process_group``'s
default backend); that is what ``tests/lm/train/test_parallel.py`` checks.

Checkpoint names. A single process saves its generators under their own names (``sampling``,
``labels``, ``minibatch``), as before. With W > 1 the shared ``minibatch`` stream keeps its name and
each per-rank stream is saved once per rank as ``<name>.rank<r>``; the run's world size is in the
checkpoint's JSON (``extra["world_size"]``), and a run resumes only with the same world size.

References: as :mod:`prefopt_toy.lm.train.trainer` and :mod:`prefopt_toy.lm.distributed`, the modules
this one serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from prefopt_toy.lm.distributed.collectives import any_rank, shard_bounds
from prefopt_toy.lm.distributed.process_group import DistributedContext
from prefopt_toy.lm.distributed.seeding import all_gather_generator_states

from .checkpoint import NonFiniteLossError, save_checkpoint

__all__ = [
    "checkpoint_generators",
    "local_rows",
    "loss_scale",
    "raise_together",
    "restore_generators",
    "save_trainer",
]

SHARED_STREAMS = ("minibatch",)
"""Generators identical on every rank (saved once, under their own name)."""


def local_rows(rows: list[int], ctx: DistributedContext) -> list[int]:
    """Contiguous slice of the global batch ``rows`` for this rank (``collectives.shard_bounds``).

    References
    ----------
    Li et al. 2020, "PyTorch Distributed", VLDB 13(12) (data parallelism).

    Examples
    --------
    >>> local_rows([7, 3, 5], DistributedContext(rank=1, world_size=2, master_addr="h", master_port=1))
    [5]
    """
    lo, hi = shard_bounds(len(rows), ctx)
    return list(rows[lo:hi])


def loss_scale(n_local: int, n_global: int, ctx: DistributedContext) -> float:
    r"""The factor :math:`W n_r / B` on rank ``r``'s shard-mean loss (1.0 for equal shards).

    After the gradient average :math:`\frac1W \sum_r`, the scaled shard means give the gradient of
    the mean loss over the global batch of ``B`` pairs (the proof is in
    ``prefopt_toy.lm.distributed``).

    References
    ----------
    See ``prefopt_toy.lm.distributed`` (module docstring).

    Examples
    --------
    >>> two = DistributedContext(rank=0, world_size=2, master_addr="h", master_port=1)
    >>> loss_scale(2, 3, two), loss_scale(2, 4, two)
    (1.3333333333333333, 1.0)
    """
    return ctx.world_size * n_local / n_global


def raise_together(
    error: BaseException | None, ctx: DistributedContext, *, step: int, last_good: Path | None
) -> None:
    """Raise on every rank when ``error`` is set on at least one; otherwise return.

    The rank that failed raises its own ``error``; the others raise a ``NonFiniteLossError`` (when
    the failure was a non-finite value) or a ``RuntimeError`` that says another rank stopped,
    instead of waiting in the next collective until it times out. Every rank must call it (one
    small collective, two when some rank failed).

    References
    ----------
    README, "Reliability rules" (stop with a clear message, keep the last good checkpoint).
    """
    if not any_rank(error is not None, ctx):
        return
    non_finite = any_rank(isinstance(error, NonFiniteLossError), ctx)
    if error is not None:
        raise error
    where = (
        f"at step {step}; every rank stopped before the step reached the weights (last good "
        f"checkpoint: {last_good}). See that rank's message"
    )
    if non_finite:
        raise NonFiniteLossError(
            f"another rank met a non-finite value {where}.",
            step=step,
            value=float("nan"),
            last_good=last_good,
        )
    raise RuntimeError(f"another rank failed {where}.")


def _rank_name(name: str, rank: int) -> str:
    return f"{name}.rank{rank}"


def checkpoint_generators(
    generators: Mapping[str, torch.Generator], ctx: DistributedContext
) -> dict[str, torch.Generator]:
    """The generators rank 0 saves: this rank's for one process; every rank's for several.

    Collective for W > 1 (every rank must call it): the states are gathered to all ranks with
    ``seeding.all_gather_generator_states`` and returned as fresh generators named
    ``<name>.rank<r>`` (``minibatch``, shared, once under its own name).

    References
    ----------
    PyTorch ``torch.Generator.get_state`` / ``set_state``.
    """
    if not ctx.is_distributed:
        return dict(generators)
    states = all_gather_generator_states(generators, ctx)
    out: dict[str, torch.Generator] = {}
    for rank, named in enumerate(states):
        for name, state in named.items():
            if name in SHARED_STREAMS:
                if rank == 0:
                    out[name] = torch.Generator().set_state(state)
            else:
                out[_rank_name(name, rank)] = torch.Generator().set_state(state)
    return out


def restore_generators(
    generators: Mapping[str, torch.Generator], ctx: DistributedContext
) -> dict[str, torch.Generator]:
    """The ``generators`` argument of ``load_checkpoint`` that restores this rank's own streams.

    Every saved name must be given to ``load_checkpoint``; this rank's names map to its own
    generators (restored in place), the other ranks' to throwaway ones.

    References
    ----------
    PyTorch ``torch.Generator.set_state``.
    """
    if not ctx.is_distributed:
        return dict(generators)
    out: dict[str, torch.Generator] = {}
    for name, gen in generators.items():
        if name in SHARED_STREAMS:
            out[name] = gen
            continue
        for rank in range(ctx.world_size):
            out[_rank_name(name, rank)] = gen if rank == ctx.rank else torch.Generator()
    return out


def _extra(trainer) -> dict[str, Any]:
    return {
        "order": trainer.order,
        "cursor": trainer.cursor,
        "config": asdict(trainer.config),
        "world_size": trainer.ctx.world_size,
    }


def save_trainer(trainer) -> Path:
    """Write ``trainer``'s checkpoint at ``trainer.step`` (weights, AdamW, generators, data cursor).

    Collective for W > 1: every rank calls it, rank 0 writes (with every rank's generator states),
    and every rank returns the checkpoint's path once it is complete; a failed write raises on
    every rank.

    Parameters
    ----------
    trainer : prefopt_toy.lm.train.trainer.Trainer

    Returns
    -------
    Path
        ``<run_dir>/step-<step:09d>``.

    References
    ----------
    README, "Reliability rules"; ``prefopt_toy.lm.train.checkpoint``.
    """
    ctx = trainer.ctx
    generators = checkpoint_generators(trainer.generators, ctx)  # every rank's streams (collective)
    kw = {
        "step": trainer.step,
        "model": trainer.model,
        "optimizer": trainer.optimizer,
        "generators": generators,
        "extra": _extra(trainer),
    }
    if not ctx.is_distributed:
        return save_checkpoint(trainer.config.run_dir, **kw)
    path, error = Path(trainer.config.run_dir) / f"step-{trainer.step:09d}", None
    if ctx.is_main:
        try:
            path = save_checkpoint(trainer.config.run_dir, **kw)
        except Exception as err:
            error = err
    if any_rank(error is not None, ctx):
        raise (
            error
            if error is not None
            else RuntimeError(f"rank 0 failed to write the checkpoint {path}")
        )
    return path
