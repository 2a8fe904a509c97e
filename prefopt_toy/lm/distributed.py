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
enforces; with unequal shards the average would weight the pairs of a small shard more. It also
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
property above holds for a fixed global batch, as in offline training).

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

import datetime
import os
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DistributedContext",
    "init_process_group",
    "destroy_process_group",
    "shard",
    "all_reduce_gradients",
    "all_reduce_metrics",
    "broadcast_module",
    "rank_seed",
    "seed_generators",
]

_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _env_int(env: Mapping[str, str], key: str, default: int | None) -> int | None:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {key} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run: its rank among ``world_size`` processes.

    Attributes
    ----------
    rank : int
        This process's index, ``0 <= rank < world_size``.
    world_size : int
        Number of processes (1: a single process, no communication).
    local_rank : int
        Index on this machine (selects the GPU with several per machine).
    master_addr, master_port : str or None, int or None
        Rendezvous address of rank 0 (required when ``world_size > 1``).

    References
    ----------
    PyTorch ``torch.distributed`` (``torchrun``'s environment variables); Hugging Face
    accelerate v1.15 (``accelerate launch`` sets the same ones).

    Examples
    --------
    >>> ctx = DistributedContext.from_env({})
    >>> ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed
    (0, 1, True, False)
    >>> env = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    >>> DistributedContext.from_env(env).is_main
    False
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    def __post_init__(self) -> None:
        for name in ("rank", "world_size", "local_rank"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an integer, got {type(v).__name__}")
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must satisfy 0 <= rank < world_size={self.world_size}, got {self.rank}")
        if self.local_rank < 0:
            raise ValueError(f"local_rank must be >= 0, got {self.local_rank}")
        if self.world_size > 1:
            if not self.master_addr:
                raise ValueError("master_addr (MASTER_ADDR) is required when world_size > 1")
            if self.master_port is None or not 0 < self.master_port < 65536:
                raise ValueError(f"master_port (MASTER_PORT) must be in 1..65535 when world_size > 1, got {self.master_port}")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs, checkpoints and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when ``world_size > 1`` (collectives communicate)."""
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistributedContext:
        """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``.

        Parameters
        ----------
        env : mapping, optional
            The environment to read (default ``os.environ``). Without ``WORLD_SIZE`` (a plain
            ``python`` run) the result is the single-process context ``rank=0, world_size=1``.

        Raises
        ------
        ValueError
            A variable that is not an integer, ``RANK`` outside ``[0, WORLD_SIZE)``, ``RANK``
            without ``WORLD_SIZE``, or a missing ``MASTER_ADDR`` / ``MASTER_PORT`` with
            ``WORLD_SIZE > 1``.

        References
        ----------
        PyTorch ``torchrun`` (environment variables of each worker).
        """
        env = os.environ if env is None else env
        world_size = _env_int(env, "WORLD_SIZE", None)
        rank = _env_int(env, "RANK", None)
        if world_size is None:
            if rank not in (None, 0):
                raise ValueError(f"RANK={rank} is set but WORLD_SIZE is not: set both (as torchrun does)")
            return cls()
        rank = 0 if rank is None else rank
        local_rank = _env_int(env, "LOCAL_RANK", rank)
        addr = env.get("MASTER_ADDR") or None
        port = _env_int(env, "MASTER_PORT", None)
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, master_addr=addr, master_port=port)


def init_process_group(
    ctx: DistributedContext | None = None,
    *,
    backend: str = "gloo",
    timeout: float = 300.0,
) -> DistributedContext:
    """Join the process group of ``ctx`` (default ``DistributedContext.from_env()``).

    A single-process context needs no group and returns at once. Rendezvous is by TCP at
    ``master_addr:master_port``. If a default group already exists (e.g. created by
    ``accelerate``), it is reused after checking its rank and world size agree with ``ctx``.

    Parameters
    ----------
    ctx : DistributedContext, optional
    backend : str, default "gloo"
        ``"gloo"`` on CPU, ``"nccl"`` for CUDA tensors.
    timeout : float > 0, default 300
        Seconds a collective waits for the other ranks before failing (not hanging forever).

    Returns
    -------
    DistributedContext
        The context used.

    References
    ----------
    PyTorch ``torch.distributed.init_process_group``.
    """
    import torch.distributed as dist

    ctx = DistributedContext.from_env() if ctx is None else ctx
    if not isinstance(ctx, DistributedContext):
        raise ValueError(f"ctx must be a DistributedContext, got {type(ctx).__name__}")
    if not isinstance(backend, str) or not backend:
        raise ValueError(f"backend must be a non-empty string such as 'gloo' or 'nccl', got {backend!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not ctx.is_distributed:
        return ctx
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this build of torch")
    if dist.is_initialized():
        if dist.get_rank() != ctx.rank or dist.get_world_size() != ctx.world_size:
            raise ValueError(
                f"a process group already exists with rank {dist.get_rank()} of {dist.get_world_size()}, "
                f"but ctx says rank {ctx.rank} of {ctx.world_size}"
            )
        return ctx
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)  # one GPU per process on each machine
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{ctx.master_addr}:{ctx.master_port}",
        rank=ctx.rank,
        world_size=ctx.world_size,
        timeout=datetime.timedelta(seconds=float(timeout)),
    )
    return ctx


def destroy_process_group(ctx: DistributedContext) -> None:
    """Leave the process group (no-op for a single process or when none exists).

    References
    ----------
    PyTorch ``torch.distributed.destroy_process_group``.
    """
    import torch.distributed as dist

    if ctx.is_distributed and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _check_ctx(ctx) -> DistributedContext:
    if not isinstance(ctx, DistributedContext):
        raise ValueError(f"ctx must be a DistributedContext, got {type(ctx).__name__}")
    if ctx.is_distributed:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"world_size={ctx.world_size} but no process group exists: call init_process_group(ctx) first")
    return ctx


def shard(batch: Mapping[str, Tensor], ctx: DistributedContext) -> dict[str, Tensor]:
    """This rank's contiguous slice of a global batch: rows ``[rank * n, (rank + 1) * n)``, ``n = B / W``.

    Parameters
    ----------
    batch : dict of str to Tensor
        Every tensor has the same leading (batch) size ``B``, e.g. the output of
        ``prefopt_toy.lm.data.tokenize_pairs``.
    ctx : DistributedContext

    Returns
    -------
    dict of str to Tensor
        Views of the rows of this rank (the whole batch for a single process).

    Raises
    ------
    ValueError
        An empty batch, a non-tensor value, unequal leading sizes, or ``B`` not divisible by
        ``world_size`` (equal shards are what makes gradient averaging exact; see the module
        docstring).

    References
    ----------
    Li et al. 2020, VLDB 13(12) (data parallelism over equal shards).

    Examples
    --------
    >>> b = {"x": torch.arange(6).reshape(6, 1)}
    >>> ctx = DistributedContext(rank=1, world_size=3, master_addr="127.0.0.1", master_port=29500)
    >>> shard(b, ctx)["x"].flatten().tolist()
    [2, 3]
    """
    if not isinstance(ctx, DistributedContext):
        raise ValueError(f"ctx must be a DistributedContext, got {type(ctx).__name__}")
    if not isinstance(batch, Mapping) or len(batch) == 0:
        raise ValueError("batch must be a non-empty dict of tensors sharing their leading (batch) size")
    sizes = {}
    for k, v in batch.items():
        if not isinstance(v, Tensor) or v.ndim == 0:
            raise ValueError(f"batch[{k!r}] must be a tensor with a leading batch dimension, got {getattr(v, 'shape', type(v).__name__)}")
        sizes[k] = v.shape[0]
    if len(set(sizes.values())) != 1:
        raise ValueError(f"batch tensors must share their leading (batch) size, got {sizes}")
    b = next(iter(sizes.values()))
    if b == 0 or b % ctx.world_size != 0:
        raise ValueError(
            f"the global batch size ({b}) must be a positive multiple of world_size ({ctx.world_size}): "
            "equal shards make the averaged gradient equal the single-process one"
        )
    n = b // ctx.world_size
    lo = ctx.rank * n
    return {k: v[lo : lo + n] for k, v in batch.items()}


def _trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [p for p in model.parameters() if p.requires_grad]  # shared (tied) weights appear once


def all_reduce_gradients(model: torch.nn.Module, ctx: DistributedContext) -> None:
    r"""Average ``.grad`` of every trainable parameter across ranks, in place.

    After the call every rank holds :math:`\frac1W \sum_r \nabla L_r`, which equals the
    single-process gradient of the mean loss over the global batch when each rank's loss is the
    mean over its equal-size shard (see the module docstring for the one-line proof). Call it
    after ``backward()`` and before ``optimizer.step()`` (and before gradient clipping, so every
    rank clips the same vector). For a single process it does nothing.

    Gradients are flattened into one buffer per dtype, so a step costs a few collectives, not one
    per tensor. A parameter whose ``.grad`` is ``None`` on some ranks (unused there) counts as a
    zero gradient on those ranks; a parameter with no gradient on any rank keeps ``None``.

    Parameters
    ----------
    model : torch.nn.Module
        The same architecture on every rank (parameters in the same order).
    ctx : DistributedContext
        Its process group must be initialised when ``world_size > 1``.

    References
    ----------
    Li et al. 2020, "PyTorch Distributed", VLDB 13(12) (gradient averaging, bucketing);
    PyTorch ``torch.distributed.all_reduce``.
    """
    ctx = _check_ctx(ctx)
    params = _trainable(model)
    if not ctx.is_distributed or not params:
        return
    import torch.distributed as dist

    # 1. Which parameters have a gradient on at least one rank (same order everywhere).
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int64, device=params[0].device)  # (P,)
    dist.all_reduce(has, op=dist.ReduceOp.SUM)
    used = [p for p, h in zip(params, has.tolist()) if h > 0]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    # 2. One flat buffer per (dtype, device), in a fixed order; sum, then divide by W.
    groups: dict[tuple[str, str], list[torch.nn.Parameter]] = {}
    for p in used:
        groups.setdefault((str(p.grad.dtype), str(p.grad.device)), []).append(p)
    for key in sorted(groups):
        grads = [p.grad for p in groups[key]]
        flat = torch.cat([g.reshape(-1) for g in grads])  # (sum of numels,)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(ctx.world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def all_reduce_metrics(metrics: Mapping[str, Tensor | float], ctx: DistributedContext) -> dict[str, Tensor]:
    """Average scalar metrics across ranks (the global-batch mean of per-shard means).

    With equal shards, the average of the ranks' batch means is the mean over the global batch
    (``preference_metrics``' ``rewards/*``, ``logps/*``, and the mean loss). Every rank must pass
    the same keys; they are reduced in sorted order in one collective, in float64.

    Parameters
    ----------
    metrics : dict of str to 0-d Tensor or float
    ctx : DistributedContext

    Returns
    -------
    dict of str to Tensor
        Detached 0-d CPU tensors (float64 for Python numbers, else the input's floating dtype), the
        same values as the input for a single process.

    Raises
    ------
    ValueError
        A value that is not a real scalar.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (metrics gathered across processes and
    averaged); PyTorch ``torch.distributed.all_reduce``.

    Examples
    --------
    >>> all_reduce_metrics({"loss": 0.5}, DistributedContext())["loss"].item()
    0.5
    """
    ctx = _check_ctx(ctx)
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a dict of str to scalar, got {type(metrics).__name__}")
    keys = sorted(metrics)
    values, dtypes = [], {}
    for k in keys:
        v = metrics[k]
        if isinstance(v, Tensor):
            if v.numel() != 1 or v.is_complex():
                raise ValueError(f"metrics[{k!r}] must be a real scalar, got a tensor of shape {tuple(v.shape)}")
            dtypes[k] = v.dtype if v.is_floating_point() else torch.float64
            values.append(float(v.detach().cpu().reshape(())))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            dtypes[k] = torch.float64
            values.append(float(v))
        else:
            raise ValueError(f"metrics[{k!r}] must be a real scalar (0-d tensor or number), got {type(v).__name__}")
    stacked = torch.tensor(values, dtype=torch.float64)  # (K,)
    if ctx.is_distributed and keys:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
            stacked = stacked.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked = stacked.cpu() / ctx.world_size
    return {k: stacked[i].to(dtypes[k]) for i, k in enumerate(keys)}


def broadcast_module(model: torch.nn.Module, ctx: DistributedContext, *, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``model``, in place.

    Call it once after building the model (and before creating the optimizer is fine too), so
    every rank starts from the same weights whatever its local initialisation was. For a single
    process it does nothing.

    Parameters
    ----------
    model : torch.nn.Module
        The same architecture on every rank.
    ctx : DistributedContext
    src : int, default 0
        The rank whose weights win.

    References
    ----------
    PyTorch ``torch.distributed.broadcast``; Li et al. 2020, VLDB 13(12) (DDP broadcasts the
    initial state from rank 0).
    """
    ctx = _check_ctx(ctx)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < ctx.world_size:
        raise ValueError(f"src must be a rank in [0, {ctx.world_size}), got {src!r}")
    if not ctx.is_distributed:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=src)


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
