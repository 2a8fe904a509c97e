"""Checkpoints a GPT-2 training run resumes from exactly; a damaged one is named and skipped.

A checkpoint is a directory ``<run_dir>/step-000000017/`` holding three files and no pickle:

- ``model.safetensors``: the weights (``safetensors.torch.save_model``, which stores GPT-2's tied
  ``lm_head``/``wte`` weight once);
- ``state.safetensors``: every other tensor, as plain tensors: the optimizer's moments and step
  counts, the learning-rate scheduler's tensors if any, and the RNG states (``uint8`` tensors from
  ``torch.Generator.get_state()``);
- ``checkpoint.json``: the step, the JSON trainer state the caller passes as ``extra`` (a data
  cursor, the config...), the non-tensor structure of the optimizer and scheduler state dicts
  (hyper-parameters, parameter groups), with each tensor replaced by a reference into
  ``state.safetensors``, and the integrity records: the size and SHA-256 of the two other files and
  of its own content. It is written last, so it marks a complete checkpoint.

Restoring weights, optimizer state and generator states bitwise makes a resumed run continue the
same trajectory: ``tests/lm/train/test_checkpoint.py`` runs 10 steps straight and 4 + 6 steps with a
restart in between and finds the same bits.

Writes are atomic: the files go to a temporary directory beside the target, are flushed to disk
(``fsync``), and the directory is renamed into place. An interruption (an exception, a killed
process, a full disk) therefore never leaves a half-written ``step-*`` directory;
:func:`latest_checkpoint` ignores temporary directories and directories without
``checkpoint.json``, and a failed save never removes an existing checkpoint.

Loads check before they change anything: :func:`load_checkpoint` reads every file it needs, checks
sizes and digests, parses them, and checks each tensor's name, shape and dtype against the model,
the optimizer, the scheduler and the generators; only then does it copy into them. A failure raises
:class:`CheckpointError` (a ``ValueError``) naming the checkpoint, the file and what is wrong, and
leaves the caller's objects exactly as they were. :func:`load_latest_checkpoint` resumes from the
newest checkpoint that loads and warns (:class:`CheckpointWarning`) about each newer one it skipped.

Listing: :func:`list_checkpoints` and :func:`latest_checkpoint` find the complete checkpoints of a
run directory (oldest step first, and the newest) by their names only; that the files are intact is
checked when one is loaded.

The non-finite guard: :func:`check_finite` raises :class:`NonFiniteLossError` when a loss (or a
gradient norm) holds a NaN or an infinity, with a message naming the step, the last good checkpoint
to resume from and what to change; called before ``backward()`` and before saving, it keeps the
last good checkpoint intact. :func:`save_checkpoint` likewise refuses weights that are not finite.

The on-disk format (file names, the state-dict codec, the integrity records) is
:mod:`prefopt_toy.lm.train.state_io`.

References
----------
README, "Reliability rules" (no pickle from outside; stop on a non-finite loss and keep the last
good checkpoint; an interrupted and resumed run ends where an uninterrupted one does). safetensors
format: https://github.com/huggingface/safetensors. TRL v1.13.0 (https://github.com/huggingface/trl)
resumes through ``transformers.Trainer`` checkpoints, which pickle the optimizer and RNG state
(``torch.save``); this module keeps the same information in safetensors + JSON instead.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file, save_model
from torch import Tensor

from prefopt_toy._validate import as_int

from .state_io import (
    _STEP_DIR,
    DATA_FILES,
    FORMAT,
    MANIFEST,
    MODEL_FILE,
    REFERENCE_FILE,
    STATE_FILE,
    VERSION,
    CheckpointError,
    CheckpointWarning,
    _check_generators,
    _decode,
    _encode,
    _file_record,
    _MissingTensor,
    _read_manifest,
    _read_tensors,
    _sign,
    _write_json,
)

__all__ = [
    "CheckpointError",
    "CheckpointState",
    "CheckpointWarning",
    "NonFiniteLossError",
    "check_finite",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "save_checkpoint",
]


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Every ``step-*`` directory of ``root``, complete or not, sorted by step (the resume candidates)."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    return [(step, path) for step, path in _step_dirs(root) if (path / MANIFEST).is_file()]


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The complete checkpoints in ``run_dir``, oldest step first.

    Temporary directories of an interrupted save and ``step-*`` directories without
    ``checkpoint.json`` are skipped. A missing ``run_dir`` has none. The files are not read: a
    listed checkpoint can still be damaged (``load_checkpoint`` says so).

    References
    ----------
    README, "Reliability rules".
    """
    return [p for _, p in _complete_checkpoints(Path(run_dir))]


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint with the highest step in ``run_dir``, or None if there is none.

    Only names are looked at; to resume from the newest checkpoint that actually loads, use
    :func:`load_latest_checkpoint`.

    References
    ----------
    README, "Reliability rules" (resume from the last good checkpoint).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as run:
    ...     print(latest_checkpoint(run))
    None
    """
    found = _complete_checkpoints(Path(run_dir))
    return found[-1][1] if found else None


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the message names the step and the checkpoint.

    Attributes
    ----------
    step : int
        The step at which the loss was non-finite.
    value : float
        The offending value (nan, inf or -inf).
    last_good : Path or None
        The last checkpoint written before it, to resume from.

    References
    ----------
    README, "Reliability rules" (stop with a clear message, keep the last good checkpoint).
    """

    def __init__(self, message: str, *, step: int, value: float, last_good: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.value = value
        self.last_good = last_good


def check_finite(
    loss: Tensor | float, *, step: int, last_good: str | os.PathLike[str] | None, name: str = "loss"
) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` holds a NaN or an infinity; otherwise do nothing.

    Call it on the loss before ``backward()`` / ``optimizer.step()`` and before saving, so that a
    bad step never reaches the weights or a checkpoint, and the last good checkpoint stays intact.

    Parameters
    ----------
    loss : Tensor or float
        The loss (any shape; all entries are checked). On a GPU this synchronises.
    step : int, >= 0
        The current step, for the message.
    last_good : path or None
        The last checkpoint written (e.g. ``latest_checkpoint(run_dir)``); None if there is none.
    name : str
        What is checked, for the message (``"loss"``, ``"grad norm"``...).

    Raises
    ------
    NonFiniteLossError
        With the step, the value, the checkpoint to resume from and what to change.
    ValueError
        If ``loss`` is not a number or tensor, or ``step`` is not an integer >= 0.

    References
    ----------
    README, "Reliability rules"; Rafailov et al., arXiv:2305.18290v3 (DPO) and Azar et al.,
    arXiv:2310.12036v2 (IPO) for the beta / tau the message suggests changing.

    Examples
    --------
    >>> check_finite(0.69, step=3, last_good=None)
    >>> check_finite(float("nan"), step=17, last_good=None)
    Traceback (most recent call last):
    ...
    prefopt_toy.lm.train.checkpoint.NonFiniteLossError: loss became nan at step 17; ...
    """
    step = as_int(step, "step", minimum=0)
    if isinstance(loss, Tensor):
        values = loss.detach().reshape(-1)
        if values.is_complex():
            raise ValueError("loss must be real, got a complex tensor")
        bad = ~torch.isfinite(values)
        if not bool(bad.any()):
            return
        value = float(values[bad][0].item())
    elif isinstance(loss, (int, float)) and not isinstance(loss, bool):
        value = float(loss)
        if math.isfinite(value):
            return
    else:
        raise ValueError(f"loss must be a tensor or a number, got {type(loss).__name__}")
    if last_good is None:
        where = "there is no checkpoint yet, so the run must restart from the beginning"
        resume = "restart"
    else:
        where = f"the last good checkpoint is {str(Path(last_good))!r}"
        resume = "resume from it with load_checkpoint"
    message = (
        f"{name} became {value} at step {step}; {where}. The run was stopped before this step "
        f"reached the weights or a checkpoint. To continue, {resume} and lower the learning rate, "
        "clip gradients, raise beta/tau, or train in float32 instead of bfloat16."
    )
    raise NonFiniteLossError(
        message, step=step, value=value, last_good=None if last_good is None else Path(last_good)
    )


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
    skipped : tuple of CheckpointError
        From :func:`load_latest_checkpoint`: the newer checkpoints that did not load, newest first.
    reference : bool
        Whether a reference model's weights (``reference.safetensors``) were restored.

    References
    ----------
    README, "Reliability rules"; safetensors, https://github.com/huggingface/safetensors.
    """

    path: Path
    step: int
    extra: dict[str, Any] = field(default_factory=dict)
    generators: tuple[str, ...] = ()
    skipped: tuple[CheckpointError, ...] = ()
    reference: bool = False


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


def _refuse_non_finite_weights(model: torch.nn.Module, step: int, root: Path) -> None:
    """Raise :class:`NonFiniteLossError` before writing if a weight holds NaN or inf.

    Such a checkpoint would become the "last good" one that a resume starts from.
    """
    for name, param in model.named_parameters():
        if param.is_floating_point() and not bool(torch.isfinite(param.detach()).all()):
            value = float(param.detach()[~torch.isfinite(param.detach())][0].item())
            last = latest_checkpoint(root)
            where = (
                "there is no checkpoint yet"
                if last is None
                else f"the last good checkpoint is {str(last)!r}"
            )
            raise NonFiniteLossError(
                f"model weight {name!r} holds {value} at step {step}, so the checkpoint was not written; "
                f"{where}. Resume from it and lower the learning rate, clip gradients, or train in float32.",
                step=step,
                value=value,
                last_good=last,
            )


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
    reference: torch.nn.Module | None = None,
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
        up to this one. Checkpoints with a higher step than ``step`` are never deleted. With
        ``keep_last=1`` there is no older checkpoint to fall back to if this one is damaged later.
    reference : torch.nn.Module, optional
        A reference model whose weights change during the run (sDPO's, Kim et al.,
        arXiv:2403.19270): written to ``reference.safetensors`` and recorded like the other files.

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
    NonFiniteLossError
        When a model weight holds NaN or inf: nothing is written, so the last good checkpoint stays
        the latest (the message names the weight and that checkpoint).

    Notes
    -----
    The write goes to a temporary sibling directory (``.tmp-step-*``), is fsynced and renamed into
    place; an exception during the write removes the temporary directory and leaves existing
    checkpoints untouched. Saving a step that already exists replaces it: the old directory is
    moved aside (``.old-step-*``), the new one renamed in, and the old one deleted; if the rename
    fails the old one is moved back. (A process killed between those two renames leaves the old
    checkpoint in ``.old-step-*/``, from where it can be moved back by hand.) ``checkpoint.json``
    records the size and SHA-256 of the other two files and of itself, so that a load detects any
    later damage. If you resume from a checkpoint older than the latest one, delete the later ones
    or use a fresh ``run_dir``, otherwise :func:`latest_checkpoint` still returns the later ones.
    With several processes, call it on one process only (rank 0) after the others have finished
    the step.

    References
    ----------
    README, "Reliability rules"; safetensors, https://github.com/huggingface/safetensors.

    Examples
    --------
    >>> import tempfile, torch
    >>> from prefopt_toy.lm.train.checkpoint import save_checkpoint, load_checkpoint
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> with tempfile.TemporaryDirectory() as run:
    ...     path = save_checkpoint(run, step=3, model=net, optimizer=opt, extra={"cursor": 12})
    ...     print(path.name, load_checkpoint(path, model=torch.nn.Linear(2, 1)).extra)
    step-000000003 {'cursor': 12}
    """
    step = as_int(step, "step", minimum=0)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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
        raise ValueError(f"extra must be a dict, got {type(extra).__name__}")
    try:
        extra_json = json.loads(json.dumps(dict(extra), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"extra must be JSON-serialisable without NaN/inf: {err}") from err
    if keep_last is not None:
        keep_last = as_int(keep_last, "keep_last", minimum=1)
    if reference is not None and not isinstance(reference, torch.nn.Module):
        raise ValueError(
            f"reference must be a torch.nn.Module or None, got {type(reference).__name__}"
        )
    _refuse_non_finite_weights(model, step, Path(run_dir))
    if reference is not None:
        _refuse_non_finite_weights(reference, step, Path(run_dir))

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
    old: Path | None = None
    try:
        save_model(model, str(tmp / MODEL_FILE))
        save_file(tensors, str(tmp / STATE_FILE))
        written = DATA_FILES
        if reference is not None:
            save_model(reference, str(tmp / REFERENCE_FILE))
            written = (*DATA_FILES, REFERENCE_FILE)
        for name in written:
            _fsync_file(tmp / name)
        manifest["files"] = {name: _file_record(tmp / name) for name in written}
        _write_json(
            tmp / MANIFEST, _sign(manifest)
        )  # last: its presence marks a complete checkpoint
        _fsync_file(tmp / MANIFEST)
        _fsync_dir(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-step-", dir=root))
            os.rename(final, old / final.name)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        if old is not None:
            if not final.exists():  # the new one is not in place: put the previous one back
                with contextlib.suppress(OSError):
                    os.rename(old / final.name, final)
            if final.exists():  # else the previous checkpoint stays in .old-step-*, never deleted
                shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

    if keep_last is not None:
        older = [p for s, p in _complete_checkpoints(root) if s < step]
        for path in older[: max(0, len(older) - (keep_last - 1))]:
            shutil.rmtree(path)
    return final


# ----------------------------------------------------------------------------- load: check first


_ELEMENTWISE = frozenset(
    {
        "exp_avg",
        "exp_avg_sq",
        "max_exp_avg_sq",
        "momentum_buffer",
        "square_avg",
        "acc_delta",
        "sum",
        "grad_avg",
        "ax",
        "mu_product_state",
    }
)  # optimizer state kept per parameter entry (torch.optim's Adam(W), SGD, RMSprop, Adagrad, ...)


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _alias_key(t: Tensor) -> Any:
    try:
        return (
            str(t.device),
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            tuple(t.stride()),
            t.dtype,
        )
    except (RuntimeError, NotImplementedError):  # a tensor without plain storage: never an alias
        return id(t)


def _model_weights(
    model: torch.nn.Module, weights: Mapping[str, Tensor], ckpt: Path, file: str = MODEL_FILE
) -> dict[str, Tensor]:
    """The full state dict to load into ``model``: every tensor checked for name, shape and dtype.

    Tied tensors (one storage under several names, e.g. GPT-2's ``lm_head``/``wte``) are stored once
    by ``save_model``; each name of the group gets the stored tensor.
    """
    own = model.state_dict()
    groups: dict[Any, list[str]] = {}
    for name, t in own.items():
        groups.setdefault(_alias_key(t), []).append(name)
    missing = [names[0] for names in groups.values() if not any(n in weights for n in names)]
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        parts = ([f"the model's {_names(missing)} are not in it"] if missing else []) + (
            [f"it holds {_names(unexpected)}, which the model does not have"] if unexpected else []
        )
        raise CheckpointError(
            ckpt,
            file,
            "does not fit: model does not match the weights: "
            + "; ".join(parts)
            + " (a checkpoint of another architecture?)",
        )
    wrong = []
    for name, t in sorted(weights.items()):
        mine = own[name]
        if tuple(t.shape) != tuple(mine.shape):
            wrong.append(f"{name!r} has shape {tuple(t.shape)}, the model's is {tuple(mine.shape)}")
        elif t.dtype != mine.dtype:
            wrong.append(
                f"{name!r} is {t.dtype}, the model's is {mine.dtype} (convert the model first)"
            )
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise CheckpointError(
            ckpt,
            file,
            "does not fit: model does not match the weights: " + "; ".join(wrong[:3]) + more,
        )
    full: dict[str, Tensor] = {}
    for names in groups.values():
        stored = weights[next(n for n in names if n in weights)]
        for n in names:
            full[n] = stored
    return full


def _decode_state(tree: Any, tensors: Mapping[str, Tensor], ckpt: Path, what: str) -> Any:
    try:
        return _decode(tree, tensors)
    except _MissingTensor as err:
        raise CheckpointError(
            ckpt,
            STATE_FILE,
            f"has no tensor {err.args[0]!r}, which the {what} state in {MANIFEST} refers to",
        ) from err
    except (ValueError, TypeError) as err:
        raise CheckpointError(ckpt, MANIFEST, f"holds a malformed {what} state: {err}") from err


def _optimizer_state(
    optimizer: torch.optim.Optimizer,
    model: torch.nn.Module,
    tree: Any,
    tensors: Mapping[str, Tensor],
    ckpt: Path,
) -> dict[str, Any]:
    """The decoded optimizer state dict, checked against ``optimizer``'s parameter groups."""
    saved = _decode_state(tree, tensors, ckpt, "optimizer")

    def bad(reason: str, file: str = MANIFEST) -> CheckpointError:
        return CheckpointError(ckpt, file, f"does not fit the optimizer: {reason}")

    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("state"), dict)
        or not isinstance(groups, list)
        or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
    ):
        raise bad(
            "its optimizer state must hold 'state' (an object) and 'param_groups' (a list of "
            "objects with 'params')"
        )
    live = [len(g["params"]) for g in optimizer.param_groups]
    stored = [len(g["params"]) for g in groups]
    if live != stored:
        raise bad(f"it has parameter groups of sizes {stored}, the optimizer {live}")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    if len(set(ids)) != len(ids):
        raise bad("its parameter groups list a parameter twice")
    by_id = dict(zip(ids, params, strict=True))
    names = {id(p): n for n, p in model.named_parameters()}
    for key, entry in saved["state"].items():
        if key not in by_id:
            raise bad(f"its state refers to parameter {key!r}, which no parameter group lists")
        if not isinstance(entry, dict):
            raise bad(f"the state of parameter {key!r} is a {type(entry).__name__}, not an object")
        param = by_id[key]
        for slot, value in entry.items():
            if (
                isinstance(value, Tensor)
                and slot in _ELEMENTWISE
                and (tuple(value.shape) != tuple(param.shape) or not value.is_floating_point())
            ):
                pname = names.get(id(param), f"#{key}")
                raise bad(
                    f"the {slot!r} of parameter {pname!r} is {value.dtype} {tuple(value.shape)}, "
                    f"but the parameter is {param.dtype} {tuple(param.shape)}",
                    STATE_FILE,
                )
    return saved


def _scheduler_state(scheduler: Any, tree: Any, tensors: Mapping[str, Tensor], ckpt: Path) -> Any:
    saved = _decode_state(tree, tensors, ckpt, "scheduler")
    if not isinstance(saved, dict):
        raise CheckpointError(
            ckpt,
            MANIFEST,
            f"holds a scheduler state that is a {type(saved).__name__}, not an object",
        )
    live = scheduler.state_dict() if callable(getattr(scheduler, "state_dict", None)) else {}
    missing = sorted(k for k in live if k not in saved) if isinstance(live, dict) else []
    if missing:
        raise CheckpointError(
            ckpt,
            MANIFEST,
            f"does not fit the scheduler: its scheduler state has no "
            f"{_names(missing)} (missing keys)",
        )
    return saved


def _rng_state(
    tensors: Mapping[str, Tensor], key: str, like: Tensor, ckpt: Path, what: str
) -> Tensor:
    state = tensors.get(key)
    if state is None:
        raise CheckpointError(
            ckpt, STATE_FILE, f"has no {key!r}, the state of {what} that {MANIFEST} lists"
        )
    if state.dtype != torch.uint8 or tuple(state.shape) != tuple(like.shape):
        raise CheckpointError(
            ckpt,
            STATE_FILE,
            f"holds {key!r} as {state.dtype} {tuple(state.shape)}, but "
            f"{what} has a uint8 {tuple(like.shape)} state",
        )
    return state


def _check_callers(model: Any, optimizer: Any, scheduler: Any, check_extra: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(
            f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
        )
    if scheduler is not None and not callable(getattr(scheduler, "load_state_dict", None)):
        raise ValueError(
            f"scheduler must have a load_state_dict() method, got {type(scheduler).__name__}"
        )
    if check_extra is not None and not callable(check_extra):
        raise ValueError(f"check_extra must be callable or None, got {type(check_extra).__name__}")


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    generators: Mapping[str, torch.Generator] | None = None,
    restore_global_rng: bool = False,
    check_extra: Callable[[dict[str, Any]], None] | None = None,
    reference: torch.nn.Module | None = None,
) -> CheckpointState:
    """Restore a checkpoint written by :func:`save_checkpoint` into freshly built objects, in place.

    Everything is read and checked first; the caller's objects are changed only once the whole
    checkpoint is known to be intact and to fit them. A failed load leaves ``model``,
    ``optimizer``, ``scheduler``, ``generators`` and the global RNG exactly as they were.

    Parameters
    ----------
    path : path
        A checkpoint directory (``<run_dir>/step-*``), e.g. from :func:`latest_checkpoint`.
    model : torch.nn.Module
        A model of the same architecture and dtype; its weights are overwritten (strict key match,
        equal shapes and dtypes).
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
    check_extra : callable, optional
        Called with (a copy of) the saved ``extra`` before anything is changed; a ``ValueError`` it
        raises makes the checkpoint unusable (a :class:`CheckpointError` naming ``checkpoint.json``),
        e.g. a trainer's check of its data cursor.
    reference : torch.nn.Module, optional
        Restored from ``reference.safetensors`` when the checkpoint holds one (checked like the
        weights, applied with them); left as it is otherwise (``CheckpointState.reference`` says
        which).

    Returns
    -------
    CheckpointState
        The step, the ``extra`` trainer state and the restored generator names.

    Raises
    ------
    CheckpointError
        (a ``ValueError``) naming the checkpoint directory, the file and what is wrong: a missing
        file; a file shorter or longer than recorded or whose SHA-256 differs (damaged); a
        ``checkpoint.json`` that is not valid JSON, lacks a key, has a value of the wrong type, or
        whose step disagrees with the directory name; a safetensors file that does not parse;
        weights whose names, shapes or dtypes do not fit ``model``; optimizer, scheduler or
        generator states that do not fit those given; ``check_extra`` refusing ``extra``.
    ValueError
        A bad argument (``model`` not a module...); an optimizer, scheduler or global RNG state
        asked for but not saved; generator names or devices that differ from the saved ones. These
        are the caller's mismatch, not damage, so :func:`load_latest_checkpoint` does not skip them.

    Notes
    -----
    Only safetensors and JSON are read: no pickle, no ``torch.load``. The files needed are read
    whole (weights always; ``state.safetensors`` when an optimizer, scheduler, generator or global
    RNG state is restored), so memory briefly holds the checkpoint once more.

    References
    ----------
    README, "Reliability rules"; safetensors, https://github.com/huggingface/safetensors.
    """
    path = Path(path)
    _check_callers(model, optimizer, scheduler, check_extra)
    gens = _check_generators(generators)
    manifest = _read_manifest(path)
    if check_extra is not None:
        try:
            check_extra(copy.deepcopy(manifest["extra"]))
        except CheckpointError:
            raise
        except ValueError as err:
            raise CheckpointError(
                path, MANIFEST, f"holds trainer state ('extra') that cannot be resumed: {err}"
            ) from err
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

    # 1. read and check everything
    weights = _model_weights(model, _read_tensors(path, MODEL_FILE, manifest), path)
    if reference is not None and not isinstance(reference, torch.nn.Module):
        raise ValueError(
            f"reference must be a torch.nn.Module or None, got {type(reference).__name__}"
        )
    has_reference = (
        reference is not None
        and manifest["version"] >= 2
        and REFERENCE_FILE in manifest.get("files", {})
    )
    ref_weights = (
        _model_weights(
            reference, _read_tensors(path, REFERENCE_FILE, manifest), path, REFERENCE_FILE
        )
        if has_reference
        else None
    )
    needs_state = optimizer is not None or scheduler is not None or bool(gens) or restore_global_rng
    tensors = _read_tensors(path, STATE_FILE, manifest) if needs_state else {}
    opt_state = (
        None
        if optimizer is None
        else _optimizer_state(optimizer, model, manifest["optimizer"], tensors, path)
    )
    sched_state = (
        None
        if scheduler is None
        else _scheduler_state(scheduler, manifest["scheduler"], tensors, path)
    )
    gen_states = {
        name: _rng_state(tensors, f"generator/{name}", gen.get_state(), path, f"generator {name!r}")
        for name, gen in gens.items()
    }
    global_state = (
        _rng_state(tensors, "global_rng/cpu", torch.get_rng_state(), path, "the global CPU RNG")
        if restore_global_rng
        else None
    )

    # 2. apply. Only the optimizer and scheduler loads could still refuse (their own hooks); undo them if so
    applied: list[tuple[Any, Any]] = []  # (object, its state before), to undo
    try:
        if optimizer is not None:
            before = optimizer.state_dict()  # references to the current state: no copy needed
            optimizer.load_state_dict(opt_state)
            applied.append((optimizer, before))
        if scheduler is not None:
            before = copy.deepcopy(scheduler.state_dict())
            scheduler.load_state_dict(sched_state)
            applied.append((scheduler, before))
        with torch.no_grad():
            model.load_state_dict(weights, strict=True)  # names, shapes and dtypes checked above
            if ref_weights is not None:
                reference.load_state_dict(ref_weights, strict=True)
    except Exception as err:
        for obj, before in reversed(applied):
            with contextlib.suppress(Exception):
                obj.load_state_dict(before)
        raise CheckpointError(
            path,
            None,
            f"passed every check but could not be applied ({type(err).__name__}: "
            f"{err}); the optimizer and scheduler were restored",
        ) from err
    for name, gen in gens.items():
        gen.set_state(gen_states[name])
    if global_state is not None:
        torch.set_rng_state(global_state)
    return CheckpointState(
        path=path,
        step=int(manifest["step"]),
        extra=manifest["extra"],
        generators=tuple(sorted(gens)),
        reference=ref_weights is not None,
    )


def load_latest_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    generators: Mapping[str, torch.Generator] | None = None,
    restore_global_rng: bool = False,
    check_extra: Callable[[dict[str, Any]], None] | None = None,
    reference: torch.nn.Module | None = None,
) -> CheckpointState | None:
    """Resume from the newest checkpoint of ``run_dir`` that loads; warn about each newer one skipped.

    Every ``step-*`` directory is a candidate, newest first, including one without
    ``checkpoint.json`` (a save renames a checkpoint into place only once it is complete, so a
    ``step-*`` directory without it was damaged afterwards). Each is tried with
    :func:`load_checkpoint`; one that raises :class:`CheckpointError` is skipped, and since that
    load changed nothing, the next older one is tried on the same objects.

    Parameters
    ----------
    run_dir : path
        The run directory given to :func:`save_checkpoint`.
    model, optimizer, scheduler, generators, restore_global_rng, check_extra, reference
        As for :func:`load_checkpoint`.

    Returns
    -------
    CheckpointState or None
        The state of the checkpoint loaded (its ``skipped`` holds the errors of the newer ones), or
        None when ``run_dir`` holds no ``step-*`` directory (a fresh start).

    Warns
    -----
    CheckpointWarning
        Once per skipped checkpoint, naming its directory, the damaged file and why, and the
        checkpoint resumed from instead. Skipped checkpoints are left in place (a run that goes on
        saves over them when it reaches their steps again).

    Raises
    ------
    CheckpointError
        When no candidate loads: its message lists every checkpoint tried and why it failed
        (``.tried`` holds the errors).
    ValueError
        As :func:`load_checkpoint`, for the caller's mismatches (raised at once, nothing skipped).

    References
    ----------
    README, "Reliability rules" (keep the last good checkpoint; a resumed run ends where an
    uninterrupted one does).

    Examples
    --------
    >>> import tempfile, torch
    >>> net = torch.nn.Linear(2, 1)
    >>> with tempfile.TemporaryDirectory() as run:
    ...     for step in (1, 2):
    ...         _ = save_checkpoint(run, step=step, model=net)
    ...     _ = (Path(run) / "step-000000002" / "model.safetensors").write_bytes(b"cut")
    ...     with warnings.catch_warnings(record=True) as caught:
    ...         warnings.simplefilter("always")
    ...         state = load_latest_checkpoint(run, model=net)
    ...     print(state.step, caught[0].category.__name__)
    1 CheckpointWarning
    """
    root = Path(run_dir)
    _check_callers(model, optimizer, scheduler, check_extra)
    candidates = _step_dirs(root)
    if not candidates:
        return None
    skipped: list[CheckpointError] = []
    for _, path in reversed(candidates):
        try:
            state = load_checkpoint(
                path,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                generators=generators,
                restore_global_rng=restore_global_rng,
                check_extra=check_extra,
                reference=reference,
            )
        except CheckpointError as err:
            skipped.append(err)
            continue
        for err in skipped:
            warnings.warn(
                f"skipped the damaged {err}; resumed from the older checkpoint {str(path)!r} instead",
                CheckpointWarning,
                stacklevel=2,
            )
        return replace(state, skipped=tuple(skipped))
    listing = "\n".join(f"  - {err}" for err in skipped)
    raise CheckpointError(
        root,
        None,
        f"has no checkpoint that loads; tried, newest first:\n{listing}",
        tried=tuple(skipped),
    )
