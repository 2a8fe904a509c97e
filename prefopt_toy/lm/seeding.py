"""Seeds and ``torch.Generator`` objects for a data-parallel run: per-rank streams and shared ones.

``rank_seed`` derives a seed from ``(seed, rank, name)`` (``rank=None``: shared by all ranks)
through NumPy's ``SeedSequence``; ``seed_generators`` builds the named generators of one rank.
Streams all ranks must agree on (the data order, permuted before ``shard`` splits it) are shared;
online sampling of completions and labels is per rank and so differs across ranks **by design**.

References: as :mod:`prefopt_toy.lm.distributed`, the module this one was split from.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
import torch

from .process_group import DistributedContext

__all__ = ["rank_seed", "seed_generators"]


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
