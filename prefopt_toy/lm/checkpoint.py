"""Checkpoints a GPT-2 training run resumes from exactly, and the guard against a non-finite loss.

A checkpoint is a directory ``<run_dir>/step-000000017/`` holding three files and no pickle:

- ``model.safetensors``: the weights (``safetensors.torch.save_model``, which stores GPT-2's tied
  ``lm_head``/``wte`` weight once);
- ``state.safetensors``: every other tensor, as plain tensors: the optimizer's moments and step
  counts, the learning-rate scheduler's tensors if any, and the RNG states (``uint8`` tensors from
  ``torch.Generator.get_state()``);
- ``checkpoint.json``: the step, the JSON trainer state the caller passes as ``extra`` (a data
  cursor, the config...), and the non-tensor structure of the optimizer and scheduler state dicts
  (hyper-parameters, parameter groups), with each tensor replaced by a reference into
  ``state.safetensors``. It is written last, so it marks a complete checkpoint.

Restoring weights, optimizer state and generator states bitwise makes a resumed run continue the
same trajectory: ``tests/test_lm_checkpoint.py`` runs 10 steps straight and 4 + 6 steps with a
restart in between and finds the same bits.

Writes are atomic: the files go to a temporary directory beside the target, are flushed to disk
(``fsync``), and the directory is renamed into place. An interruption (an exception, a killed
process, a full disk) therefore never leaves a half-written ``step-*`` directory;
:func:`latest_checkpoint` ignores temporary directories and directories without
``checkpoint.json``.

References
----------
DESIGN.md "Reliability rules" (no pickle from outside; stop on a non-finite loss and keep the last
good checkpoint; an interrupted and resumed run ends where an uninterrupted one does). safetensors
format: https://github.com/huggingface/safetensors. TRL v1.13.0 (https://github.com/huggingface/trl)
resumes through ``transformers.Trainer`` checkpoints, which pickle the optimizer and RNG state
(``torch.save``); this module keeps the same information in safetensors + JSON instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor

from prefopt_toy._validate import as_int

from .checkpoint_listing import (  # noqa: F401  (_STEP_DIR: re-exported for existing callers)
    _STEP_DIR,
    _complete_checkpoints,
    latest_checkpoint,
    list_checkpoints,
)
from .guards import NonFiniteLossError, check_finite
from .state_io import (
    FORMAT,
    MANIFEST,
    MODEL_FILE,
    STATE_FILE,
    VERSION,
    _check_generators,
    _decode,
    _encode,
    _write_json,
)

__all__ = [
    "CheckpointState",
    "NonFiniteLossError",
    "check_finite",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]


@dataclass(frozen=True)
class CheckpointState:
    """What :func:`load_checkpoint` read besides the tensors it copied into place.

    Attributes
    ----------
    path : Path
        The checkpoint directory.
    step : int
        The step counter saved with it (the number of optimizer steps taken).
    extra : dict
        The JSON trainer state passed to :func:`save_checkpoint` as ``extra``.
    generators : tuple of str
        Names of the ``torch.Generator`` states restored.

    References
    ----------
    DESIGN.md "Reliability rules"; safetensors, https://github.com/huggingface/safetensors.
    """

    path: Path
    step: int
    extra: dict[str, Any] = field(default_factory=dict)
    generators: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- files


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes a rename durable on POSIX; directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    generators: Mapping[str, torch.Generator] | None = None,
    extra: Mapping[str, Any] | None = None,
    include_global_rng: bool = False,
    keep_last: int | None = None,
) -> Path:
    """Write a complete checkpoint of a training run to ``<run_dir>/step-<step>`` atomically.

    Parameters
    ----------
    run_dir : path
        Directory that holds the run's checkpoints (created if missing).
    step : int, >= 0
        The step counter: the number of optimizer steps taken so far.
    model : torch.nn.Module
        The trained model (unwrapped: not a DDP or accelerate wrapper). Weights go to
        ``model.safetensors``; tied weights are stored once.
    optimizer : torch.optim.Optimizer, optional
        Its ``state_dict()``: tensors to ``state.safetensors``, structure and hyper-parameters to
        ``checkpoint.json``.
    scheduler : object with ``state_dict()``, optional
        A learning-rate scheduler, stored like the optimizer.
    generators : dict of str -> torch.Generator, optional
        The training generators (sampling, minibatch order...); their states are stored as
        ``uint8`` tensors.
    extra : dict, optional
        JSON-serialisable trainer state (data cursor, config...). NaN and infinities are refused.
    include_global_rng : bool
        Also store the global torch CPU RNG state. Only needed when the training step draws from it,
        e.g. GPT-2 dropout in train mode (``attn_pdrop``, ``resid_pdrop``, ``embd_pdrop`` > 0).
    keep_last : int >= 1, optional
        After the write, delete older checkpoints (lower steps) so that at most ``keep_last`` remain
        up to this one. Checkpoints with a higher step than ``step`` are never deleted.

    Returns
    -------
    Path
        The checkpoint directory, ``<run_dir>/step-<step:09d>``.

    Raises
    ------
    ValueError
        On a negative or non-integer ``step``, a ``model`` that is not a module, an ``extra`` that
        is not JSON-serialisable, a ``generators`` entry that is not a ``torch.Generator``, an
        optimizer or scheduler state holding objects other than tensors, numbers, strings and
        containers, or ``keep_last < 1``.

    Notes
    -----
    The write goes to a temporary sibling directory (``.tmp-step-*``), is fsynced and renamed into
    place; an exception during the write removes the temporary directory and leaves existing
    checkpoints untouched. Saving a step that already exists replaces it (the old directory is
    moved aside first and deleted after the new one is in place). If you resume from a checkpoint
    older than the latest one, delete the later ones or use a fresh ``run_dir``, otherwise
    :func:`latest_checkpoint` still returns the later ones. With several processes, call it on one
    process only (rank 0) after the others have finished the step.

    References
    ----------
    DESIGN.md "Reliability rules"; safetensors, https://github.com/huggingface/safetensors.

    Examples
    --------
    >>> import tempfile, torch
    >>> from prefopt_toy.lm.checkpoint import save_checkpoint, load_checkpoint
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> with tempfile.TemporaryDirectory() as run:
    ...     path = save_checkpoint(run, step=3, model=net, optimizer=opt, extra={"cursor": 12})
    ...     print(path.name, load_checkpoint(path, model=torch.nn.Linear(2, 1)).extra)
    step-000000003 {'cursor': 12}
    """
    step = as_int(step, "step", minimum=0)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")  # noqa: TRY004
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(
            f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
        )
    if scheduler is not None and not callable(getattr(scheduler, "state_dict", None)):
        raise ValueError(
            f"scheduler must have a state_dict() method, got {type(scheduler).__name__}"
        )
    gens = _check_generators(generators)
    extra = {} if extra is None else extra
    if not isinstance(extra, Mapping):
        raise ValueError(f"extra must be a dict, got {type(extra).__name__}")  # noqa: TRY004
    try:
        extra_json = json.loads(json.dumps(dict(extra), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"extra must be JSON-serialisable without NaN/inf: {err}") from err
    if keep_last is not None:
        keep_last = as_int(keep_last, "keep_last", minimum=1)

    tensors: dict[str, Tensor] = {}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "extra": extra_json,
        "optimizer": None
        if optimizer is None
        else _encode(optimizer.state_dict(), tensors, "optimizer", "optimizer"),
        "scheduler": None
        if scheduler is None
        else _encode(scheduler.state_dict(), tensors, "scheduler", "scheduler"),
        "generators": {name: {"device": str(gen.device)} for name, gen in gens.items()},
        "global_rng": bool(include_global_rng),
        "torch_version": torch.__version__,
    }
    for name, gen in gens.items():
        tensors[f"generator/{name}"] = gen.get_state()  # uint8, on CPU even for a CUDA generator
    if include_global_rng:
        tensors["global_rng/cpu"] = torch.get_rng_state()

    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:09d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-step-", dir=root))
    try:
        save_model(model, str(tmp / MODEL_FILE))
        save_file(tensors, str(tmp / STATE_FILE))
        _write_json(tmp / MANIFEST, manifest)  # last: its presence marks a complete checkpoint
        for name in (MODEL_FILE, STATE_FILE, MANIFEST):
            _fsync_file(tmp / name)
        _fsync_dir(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-step-", dir=root))
            os.rename(final, old / final.name)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    if keep_last is not None:
        older = [p for s, p in _complete_checkpoints(root) if s < step]
        for path in older[: max(0, len(older) - (keep_last - 1))]:
            shutil.rmtree(path)
    return final


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    generators: Mapping[str, torch.Generator] | None = None,
    restore_global_rng: bool = False,
) -> CheckpointState:
    """Restore a checkpoint written by :func:`save_checkpoint` into freshly built objects, in place.

    Parameters
    ----------
    path : path
        A checkpoint directory (``<run_dir>/step-*``), e.g. from :func:`latest_checkpoint`.
    model : torch.nn.Module
        A model of the same architecture; its weights are overwritten (strict key match).
    optimizer : torch.optim.Optimizer, optional
        Built over ``model.parameters()`` like the saved one; its state is overwritten. Pass None to
        load the weights only (evaluation).
    scheduler : object with ``load_state_dict()``, optional
        Restored when given; the checkpoint must contain one.
    generators : dict of str -> torch.Generator, optional
        Generators whose states are overwritten. When given, its names must be exactly the saved
        ones, so that no training generator is silently left unrestored. None skips them.
    restore_global_rng : bool
        Also restore the global torch CPU RNG state (this changes global state, which is why it is
        off by default); the checkpoint must have been saved with ``include_global_rng=True``.

    Returns
    -------
    CheckpointState
        The step, the ``extra`` trainer state and the restored generator names.

    Raises
    ------
    ValueError
        If ``path`` is not a complete checkpoint of this format, if the weights do not match
        ``model``, if an optimizer, scheduler or global RNG state is asked for but was not saved,
        or if the generator names or devices differ from the saved ones.

    Notes
    -----
    Only safetensors and JSON are read: no pickle, no ``torch.load``.

    References
    ----------
    DESIGN.md "Reliability rules"; safetensors, https://github.com/huggingface/safetensors.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"path {str(path)!r} is not a complete checkpoint: it has no {MANIFEST}")
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or manifest.get("version") != VERSION
    ):
        raise ValueError(f"path {str(path)!r} is not a {FORMAT} version {VERSION} checkpoint")
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")  # noqa: TRY004
    gens = _check_generators(generators)
    saved_gens: dict[str, dict[str, str]] = manifest["generators"]
    if generators is not None:
        if set(gens) != set(saved_gens):
            raise ValueError(
                f"generators must have exactly the saved names {sorted(saved_gens)}, got {sorted(gens)}"
            )
        for name, gen in gens.items():
            if str(gen.device) != saved_gens[name]["device"]:
                raise ValueError(
                    f"generators[{name!r}] is on {gen.device}, but the saved state is for {saved_gens[name]['device']}"
                )
    if optimizer is not None and manifest["optimizer"] is None:
        raise ValueError(
            f"optimizer was given but the checkpoint {str(path)!r} has no optimizer state"
        )
    if scheduler is not None and manifest["scheduler"] is None:
        raise ValueError(
            f"scheduler was given but the checkpoint {str(path)!r} has no scheduler state"
        )
    if restore_global_rng and not manifest["global_rng"]:
        raise ValueError(
            f"restore_global_rng=True but the checkpoint {str(path)!r} was saved without include_global_rng"
        )

    try:
        load_model(model, str(path / MODEL_FILE), strict=True)
    except RuntimeError as err:
        raise ValueError(f"model does not match the weights in {str(path)!r}: {err}") from err
    tensors = load_file(str(path / STATE_FILE))
    if optimizer is not None:
        optimizer.load_state_dict(_decode(manifest["optimizer"], tensors))
    if scheduler is not None:
        scheduler.load_state_dict(_decode(manifest["scheduler"], tensors))
    for name, gen in gens.items():
        gen.set_state(tensors[f"generator/{name}"])
    if restore_global_rng:
        torch.set_rng_state(tensors["global_rng/cpu"])
    return CheckpointState(
        path=path,
        step=int(manifest["step"]),
        extra=manifest["extra"],
        generators=tuple(sorted(gens)),
    )
