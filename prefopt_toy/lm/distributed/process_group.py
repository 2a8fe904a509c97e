"""Where a process stands in a data-parallel run, and joining or leaving its ``torch.distributed`` group.

``DistributedContext`` holds this process's rank, the world size, the local rank and the
rendezvous address, read from the environment ``torchrun`` and ``accelerate launch`` set
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; without them: a single
process); ``init_process_group`` / ``destroy_process_group`` join and leave the group (gloo on CPU,
NCCL on GPU). The collectives live in ``prefopt_toy.lm.distributed.collectives``, the per-rank generators in
``prefopt_toy.lm.distributed.seeding``; ``prefopt_toy.lm.distributed`` re-exports all of them.

References: as :mod:`prefopt_toy.lm.distributed`, the module this one was split from.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

__all__ = ["DistributedContext", "destroy_process_group", "init_process_group"]


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
            raise ValueError(
                f"rank must satisfy 0 <= rank < world_size={self.world_size}, got {self.rank}"
            )
        if self.local_rank < 0:
            raise ValueError(f"local_rank must be >= 0, got {self.local_rank}")
        if self.world_size > 1:
            if not self.master_addr:
                raise ValueError("master_addr (MASTER_ADDR) is required when world_size > 1")
            if self.master_port is None or not 0 < self.master_port < 65536:
                raise ValueError(
                    f"master_port (MASTER_PORT) must be in 1..65535 when world_size > 1, got {self.master_port}"
                )

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
                raise ValueError(
                    f"RANK={rank} is set but WORLD_SIZE is not: set both (as torchrun does)"
                )
            return cls()
        rank = 0 if rank is None else rank
        local_rank = _env_int(env, "LOCAL_RANK", rank)
        addr = env.get("MASTER_ADDR") or None
        port = _env_int(env, "MASTER_PORT", None)
        return cls(
            rank=rank,
            world_size=world_size,
            local_rank=local_rank,
            master_addr=addr,
            master_port=port,
        )


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
        raise ValueError(
            f"backend must be a non-empty string such as 'gloo' or 'nccl', got {backend!r}"
        )
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
            raise RuntimeError(
                f"world_size={ctx.world_size} but no process group exists: call init_process_group(ctx) first"
            )
    return ctx
