"""Seeds and ``torch.Generator`` objects for a data-parallel run: per-rank streams and shared ones.

``rank_seed`` derives a seed from ``(seed, rank, name)`` (``rank=None``: shared by all ranks)
through NumPy's ``SeedSequence``; ``seed_generators`` builds the named generators of one rank.
Streams all ranks must agree on (the data order, permuted before ``shard`` splits it) are shared;
online sampling of completions and labels is per rank and so differs across ranks **by design**.
``trainer_generators`` are the GPT-2 trainer's three streams (single-process seeds unchanged; the
shared data order equal to the single-process one), and ``all_gather_generator_states`` collects
every rank's states so that one checkpoint can resume every rank.

References: as :mod:`prefopt_toy.lm.distributed`, the module this one was split from.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from .collectives import same_on_all_ranks
from .process_group import DistributedContext, _check_ctx

__all__ = ["all_gather_generator_states", "rank_seed", "seed_generators", "trainer_generators"]

TRAINER_STREAMS = ("sampling", "labels", "minibatch")
"""The GPT-2 trainer's generators: per-rank ``sampling`` and ``labels``, shared ``minibatch``."""


def rank_seed(seed: int, rank: int | None, name: str) -> int:
    """A 63-bit seed derived from ``(seed, rank, name)`` (``rank=None``: shared by all ranks).

    Uses ``numpy.random.SeedSequence``, whose hashing makes nearby inputs give unrelated seeds.

    References
    ----------
    O'Neill 2015 / NumPy ``SeedSequence`` (entropy mixing for independent streams).

    Examples
    --------
    >>> rank_seed(0, 0, "sampling") == rank_seed(0, 0, "sampling") != rank_seed(0, 1, "sampling")
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise ValueError(f"rank must be a non-negative integer or None, got {rank!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    # distinct entropy for "shared" (rank=None) and each rank; the name enters through a CRC.
    entropy = [seed, 0 if rank is None else rank + 1, zlib.crc32(name.encode("utf-8"))]
    words = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])  # < 2**63


def seed_generators(
    seed: int,
    ctx: DistributedContext,
    *,
    per_rank: Iterable[str] = ("sampling", "labels"),
    shared: Iterable[str] = ("minibatch",),
    device: str | torch.device = "cpu",
) -> dict[str, torch.Generator]:
    """Named ``torch.Generator`` objects for one rank: per-rank streams and streams shared by all.

    ``per_rank`` generators are seeded from ``(seed, rank, name)``: online sampling of completions
    and labels then **differs across ranks by design** (the ranks draw independent samples, like a
    larger batch). ``shared`` generators are seeded from ``(seed, name)`` only, identical on every
    rank: use them for anything all ranks must agree on, such as the permutation of the dataset
    that is then split by ``shard``.

    Parameters
    ----------
    seed : int >= 0
    ctx : DistributedContext
    per_rank, shared : iterables of str
        Generator names; the two sets must be disjoint.
    device : str or torch.device, default "cpu"

    Returns
    -------
    dict of str to torch.Generator

    References
    ----------
    PyTorch ``torch.Generator``; NumPy ``SeedSequence`` (independent streams from one seed).

    Examples
    --------
    >>> two = DistributedContext(rank=1, world_size=2, master_addr="127.0.0.1", master_port=29500)
    >>> g0, g1 = seed_generators(7, DistributedContext()), seed_generators(7, two)
    >>> g0["minibatch"].initial_seed() == g1["minibatch"].initial_seed()
    True
    >>> g0["sampling"].initial_seed() == g1["sampling"].initial_seed()
    False
    """
    if not isinstance(ctx, DistributedContext):
        raise ValueError(f"ctx must be a DistributedContext, got {type(ctx).__name__}")
    per_rank, shared = list(per_rank), list(shared)
    both = set(per_rank) & set(shared)
    if both:
        raise ValueError(f"per_rank and shared must be disjoint, both contain {sorted(both)}")
    out: dict[str, torch.Generator] = {}
    for name in per_rank:
        out[name] = torch.Generator(device=device).manual_seed(rank_seed(seed, ctx.rank, name))
    for name in shared:
        out[name] = torch.Generator(device=device).manual_seed(rank_seed(seed, None, name))
    return out


def trainer_generators(
    seed: int, ctx: DistributedContext | None = None
) -> dict[str, torch.Generator]:
    """The GPT-2 trainer's ``sampling``, ``labels`` and ``minibatch`` generators for one rank.

    A single process (``ctx`` None or ``world_size == 1``) seeds them ``4 seed + k`` (k = 0, 1, 2),
    as the trainer always has. With several processes ``minibatch`` keeps that seed on every rank
    (shared: all ranks draw the same global order, the single-process one, before each takes its
    shard), while ``sampling`` and ``labels`` are per rank, seeded by ``rank_seed(seed, rank, name)``
    (each rank samples its own prompts' completions independently).

    Parameters
    ----------
    seed : int >= 0
    ctx : DistributedContext, optional

    Returns
    -------
    dict of str to torch.Generator
        Keys ``TRAINER_STREAMS``, in that order.

    References
    ----------
    PyTorch ``torch.Generator``; NumPy ``SeedSequence`` (through ``rank_seed``).

    Examples
    --------
    >>> gens = trainer_generators(3)
    >>> [g.initial_seed() for g in gens.values()]
    [12, 13, 14]
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if ctx is not None and not isinstance(ctx, DistributedContext):
        raise ValueError(f"ctx must be a DistributedContext or None, got {type(ctx).__name__}")
    out = {
        name: torch.Generator().manual_seed(4 * seed + k) for k, name in enumerate(TRAINER_STREAMS)
    }
    if ctx is not None and ctx.is_distributed:
        for name in ("sampling", "labels"):
            out[name] = torch.Generator().manual_seed(rank_seed(seed, ctx.rank, name))
    return out


def all_gather_generator_states(
    generators: Mapping[str, torch.Generator], ctx: DistributedContext
) -> list[dict[str, Tensor]]:
    """Every rank's ``torch.Generator`` states, on every rank: element ``r`` is rank ``r``'s.

    Per-rank random streams (online sampling) differ across ranks, so a checkpoint written by rank
    0 must hold all of them for each rank to resume its own. Every rank must pass the same names,
    with states of the same size (generators on the same kind of device).

    Parameters
    ----------
    generators : dict of str to torch.Generator
    ctx : DistributedContext

    Returns
    -------
    list of dict of str to Tensor
        ``world_size`` dicts of ``uint8`` CPU state tensors (``Generator.get_state()``), in rank
        order.

    Raises
    ------
    ValueError
        A value that is not a ``torch.Generator``, or states whose sizes differ across ranks.

    References
    ----------
    PyTorch ``torch.Generator.get_state``, ``torch.distributed.all_gather``.
    """
    ctx = _check_ctx(ctx)
    if not isinstance(generators, Mapping):
        raise ValueError(
            f"generators must be a dict of str to torch.Generator, got {type(generators).__name__}"
        )
    names = sorted(generators)
    for k in names:
        if not isinstance(generators[k], torch.Generator):
            raise ValueError(
                f"generators[{k!r}] must be a torch.Generator, got {type(generators[k]).__name__}"
            )
    states = [generators[k].get_state() for k in names]  # uint8, on the CPU
    if not ctx.is_distributed:
        return [dict(zip(names, states))]
    import torch.distributed as dist

    sizes = [s.numel() for s in states]
    if not (same_on_all_ranks(len(sizes), ctx) and same_on_all_ranks(sum(sizes), ctx)):
        raise ValueError("generators must have the same names and state sizes on every rank")
    flat = torch.cat(states) if states else torch.zeros(0, dtype=torch.uint8)  # (sum of sizes,)
    nccl = dist.get_backend() == "nccl"
    if nccl:  # NCCL gathers CUDA tensors only
        flat = flat.to(torch.device("cuda", torch.cuda.current_device()))
    out = [torch.empty_like(flat) for _ in range(ctx.world_size)]
    dist.all_gather(out, flat)
    gathered = []
    for t in out:
        parts = torch.split(t.cpu(), sizes) if sizes else []
        gathered.append({k: p.clone() for k, p in zip(names, parts)})
    return gathered
