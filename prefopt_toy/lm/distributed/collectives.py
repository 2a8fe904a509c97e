r"""Data-parallel collectives: shard a global batch, average gradients and metrics, broadcast weights.

Each rank keeps its contiguous, equal-size slice of the global batch (``shard``), back-propagates
its shard-mean loss, and the ranks average their gradients (``all_reduce_gradients``); since the
global mean loss is the average of the equal-size shard means, the averaged gradient is the
single-process one (the proof is in the docstring of ``prefopt_toy.lm.distributed``), and
``all_reduce_metrics`` likewise gives the global-batch mean of mean-type metrics.
``broadcast_module`` starts every rank from rank 0's weights. For a single process every function
here is the identity.

Unequal shards (a global batch not divisible by the world size): ``shard_bounds`` gives rank ``r``
its rows, ``n_r`` of them; a rank that scales its shard-mean loss by ``W n_r / B`` makes the
averaged gradient the single-process one again, and ``all_reduce_metrics(..., weight=n_r)`` gives
the global mean of mean-type metrics. ``any_rank`` and ``same_on_all_ranks`` let the ranks stop
together and check that they agree (``seeding.all_gather_generator_states`` gathers every rank's
random streams for a checkpoint).

References: as :mod:`prefopt_toy.lm.distributed`, the module this one was split from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from .process_group import DistributedContext, _check_ctx

__all__ = [
    "all_reduce_gradients",
    "all_reduce_metrics",
    "any_rank",
    "broadcast_module",
    "same_on_all_ranks",
    "shard",
    "shard_bounds",
]


def shard(batch: Mapping[str, Tensor], ctx: DistributedContext) -> dict[str, Tensor]:
    """Rows ``[rank * n, (rank + 1) * n)`` of a global batch, ``n = B / W``: this rank's slice.

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
        raise ValueError(
            "batch must be a non-empty dict of tensors sharing their leading (batch) size"
        )
    sizes = {}
    for k, v in batch.items():
        if not isinstance(v, Tensor) or v.ndim == 0:
            raise ValueError(
                f"batch[{k!r}] must be a tensor with a leading batch dimension, got {getattr(v, 'shape', type(v).__name__)}"
            )
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


def shard_bounds(size: int, ctx: DistributedContext) -> tuple[int, int]:
    r"""Rows ``[lo, hi)`` of this rank in a global batch of ``size`` rows, as equal as possible.

    The first ``size % W`` ranks take :math:`\lceil B / W \rceil` rows, the others
    :math:`\lfloor B / W \rfloor` (NumPy's ``array_split`` convention); the slices are contiguous
    and in rank order, so concatenating them gives the global batch. For equal shards this is
    ``shard``'s split. With unequal shards the shard-mean losses and metrics must be weighted by
    the shard sizes (see the module docstring).

    Parameters
    ----------
    size : int >= world_size
        The global batch size B (every rank needs at least one row).
    ctx : DistributedContext

    Returns
    -------
    (int, int)

    Raises
    ------
    ValueError
        ``size`` not an integer or smaller than ``world_size``.

    References
    ----------
    NumPy ``array_split`` (sizes of near-equal splits); Li et al. 2020, VLDB 13(12).

    Examples
    --------
    >>> two = [DistributedContext(rank=r, world_size=2, master_addr="h", master_port=1) for r in (0, 1)]
    >>> [shard_bounds(5, c) for c in two]
    [(0, 3), (3, 5)]
    """
    if not isinstance(ctx, DistributedContext):
        raise ValueError(f"ctx must be a DistributedContext, got {type(ctx).__name__}")
    if isinstance(size, bool) or not isinstance(size, int) or size < ctx.world_size:
        raise ValueError(
            f"size (the global batch) must be an integer >= world_size ({ctx.world_size}) so that "
            f"every rank gets a row, got {size!r}"
        )
    base, extra = divmod(size, ctx.world_size)
    lo = ctx.rank * base + min(ctx.rank, extra)
    return lo, lo + base + (1 if ctx.rank < extra else 0)


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
    has = torch.tensor(
        [p.grad is not None for p in params], dtype=torch.int64, device=params[0].device
    )  # (P,)
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


def all_reduce_metrics(
    metrics: Mapping[str, Tensor | float], ctx: DistributedContext, *, weight: float | None = None
) -> dict[str, Tensor]:
    r"""Average scalar metrics across ranks (the global-batch mean of per-shard means).

    With equal shards, the average of the ranks' batch means is the mean over the global batch
    (``preference_metrics``' ``rewards/*``, ``logps/*``, and the mean loss). With unequal shards,
    pass each rank's shard size as ``weight``: the result is the weighted mean
    :math:`\sum_r w_r m_r / \sum_r w_r`, again the global-batch mean. Every rank must pass the
    same keys; they are reduced in sorted order in one collective, in float64.

    Parameters
    ----------
    metrics : dict of str to 0-d Tensor or float
    ctx : DistributedContext
    weight : float > 0, optional
        This rank's weight (its shard size). None: all ranks weigh the same.

    Returns
    -------
    dict of str to Tensor
        Detached 0-d CPU tensors (float64 for Python numbers, else the input's floating dtype), the
        same values as the input for a single process.

    Raises
    ------
    ValueError
        A value that is not a real scalar, or a ``weight`` that is not a positive finite number.

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
    if weight is not None and (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or weight <= 0
    ):
        raise ValueError(
            f"weight must be a positive finite number (this rank's shard size), got {weight!r}"
        )
    keys = sorted(metrics)
    values, dtypes = [], {}
    for k in keys:
        v = metrics[k]
        if isinstance(v, Tensor):
            if v.numel() != 1 or v.is_complex():
                raise ValueError(
                    f"metrics[{k!r}] must be a real scalar, got a tensor of shape {tuple(v.shape)}"
                )
            dtypes[k] = v.dtype if v.is_floating_point() else torch.float64
            values.append(float(v.detach().cpu().reshape(())))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            dtypes[k] = torch.float64
            values.append(float(v))
        else:
            raise ValueError(
                f"metrics[{k!r}] must be a real scalar (0-d tensor or number), got {type(v).__name__}"
            )
    stacked = torch.tensor(values, dtype=torch.float64)  # (K,)
    if ctx.is_distributed and keys:
        if weight is None:
            stacked = _all_reduce_sum(stacked) / ctx.world_size
        else:  # sum_r w_r m_r and sum_r w_r in one collective
            w = float(weight)
            total = _all_reduce_sum(
                torch.cat([stacked * w, torch.tensor([w], dtype=torch.float64)])
            )  # (K+1,)
            stacked = total[:-1] / total[-1]
    return {k: stacked[i].to(dtypes[k]) for i, k in enumerate(keys)}


def _all_reduce_sum(t: Tensor, op: str = "SUM") -> Tensor:
    """All-reduce a CPU tensor (moved to the GPU and back under NCCL); returns the reduced copy."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        t = t.to(torch.device("cuda", torch.cuda.current_device()))
    else:
        t = t.clone()
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return t.cpu()


def any_rank(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank when ``flag`` is true on at least one (a logical OR across ranks).

    Lets all ranks stop together when one of them must (a non-finite loss on its shard), instead
    of the others waiting in the next collective until it times out. Every rank must call it.

    References
    ----------
    PyTorch ``torch.distributed.all_reduce`` (``ReduceOp.MAX``).

    Examples
    --------
    >>> any_rank(True, DistributedContext())
    True
    """
    ctx = _check_ctx(ctx)
    if not isinstance(flag, bool):
        raise ValueError(f"flag must be a bool, got {type(flag).__name__}")
    if not ctx.is_distributed:
        return flag
    return bool(_all_reduce_sum(torch.tensor([int(flag)], dtype=torch.int64), "MAX").item())


def same_on_all_ranks(value: int, ctx: DistributedContext) -> bool:
    """True on every rank when every rank passed the same integer ``value`` (e.g. a resumed step).

    References
    ----------
    PyTorch ``torch.distributed.all_reduce`` (``ReduceOp.MAX`` of ``(v, -v)``: max = min).

    Examples
    --------
    >>> same_on_all_ranks(3, DistributedContext())
    True
    """
    ctx = _check_ctx(ctx)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"value must be an integer, got {type(value).__name__}")
    if not ctx.is_distributed:
        return True
    top = _all_reduce_sum(torch.tensor([value, -value], dtype=torch.int64), "MAX")  # (max, -min)
    return int(top[0]) == -int(top[1])


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
