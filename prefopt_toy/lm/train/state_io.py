"""The on-disk format of a checkpoint: file names, the state-dict codec, integrity records, file reads.

An optimizer or scheduler state dict is split into its tensors, written to ``state.safetensors``
under keys ``"<prefix>/<n>"``, and the rest of its structure (hyper-parameters, parameter groups),
written to ``checkpoint.json`` with each tensor replaced by a reference; tuples, non-string keys and
non-finite floats are tagged so that decoding gives back an equal tree, without pickle.

Integrity (format version 2). ``checkpoint.json`` records the size and SHA-256 of
``model.safetensors`` and ``state.safetensors`` (``"files"``) and the SHA-256 of its own content
(``"manifest_sha256"``, over the canonical JSON of every other key). A load therefore detects a
truncated file, garbage bytes anywhere in a file (also inside the tensor data, which safetensors
itself cannot see), a deleted file and an edited ``checkpoint.json``, and names the file.
Version 1 checkpoints (no integrity records) still load, with the structural checks only.

Every problem with the files is a :class:`CheckpointError` naming the checkpoint directory, the
file and what is wrong. This module also holds the JSON writer and the check of the named
``torch.Generator`` objects whose states are stored. ``prefopt_toy.lm.train.checkpoint`` writes and reads
whole checkpoints with them.

References: as :mod:`prefopt_toy.lm.train.checkpoint`, the module this one was split from; SHA-256,
FIPS 180-4; safetensors, https://github.com/huggingface/safetensors.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from torch import Tensor

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "FORMAT",
    "MANIFEST",
    "MODEL_FILE",
    "REFERENCE_FILE",
    "STATE_FILE",
    "VERSION",
]

FORMAT = "prefopt_toy.checkpoint"


VERSION = 2
"""The version written; 1 (without integrity records) is still read."""


READABLE_VERSIONS = (1, 2)


MANIFEST = "checkpoint.json"


MODEL_FILE = "model.safetensors"


STATE_FILE = "state.safetensors"


DATA_FILES = (MODEL_FILE, STATE_FILE)


REFERENCE_FILE = "reference.safetensors"
"""Optional: the reference model's weights, for a trainer whose reference changes during the run
(sDPO replaces it by a copy of the policy at the end of each stage; Kim et al., arXiv:2403.19270).
Recorded in ``checkpoint.json``'s ``files`` like the data files when present."""


_STEP_DIR = re.compile(r"^step-(\d+)$")


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: a file is missing, damaged, or does not fit what it is loaded into.

    The message names the checkpoint directory, the file and what is wrong (``is missing``, ``is
    truncated``, ``is not valid JSON``, ``has no 'step'``, ``does not match its recorded
    SHA-256``, a tensor of the wrong shape or dtype for the model, a step that disagrees with the
    directory name...). It is a ``ValueError``, so code that caught ``ValueError`` still does.
    :func:`prefopt_toy.lm.train.checkpoint.load_latest_checkpoint` falls back to an older checkpoint on
    this error (and only on this one).

    Attributes
    ----------
    checkpoint : Path
        The checkpoint directory (for "no checkpoint loads", the run directory).
    file : str or None
        The file at fault (``checkpoint.json``, ``model.safetensors``, ``state.safetensors``), or
        None when the fault is not one file's.
    reason : str
        What is wrong, without the location.
    tried : tuple of CheckpointError
        For "no checkpoint of the run loads": the error of each checkpoint tried, newest first.

    References
    ----------
    README, "Reliability rules"; safetensors, https://github.com/huggingface/safetensors.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        file: str | None,
        reason: str,
        tried: tuple[CheckpointError, ...] = (),
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.file = file
        self.reason = reason
        self.tried = tuple(tried)
        where = f"checkpoint {str(self.checkpoint)!r}" + (f": {file}" if file else "")
        super().__init__(f"{where} {reason}")

    def __reduce__(self):  # picklable like a plain exception (multiprocessing, pytest-xdist)
        return (type(self), (self.checkpoint, self.file, self.reason, self.tried))


class CheckpointWarning(UserWarning):
    """A resume skipped a damaged checkpoint and continued from an older one (the message names both).

    References
    ----------
    README, "Reliability rules" (resume from the last good checkpoint).
    """


# ----------------------------------------------------------------------------- state-dict codec
# An optimizer or scheduler state dict is a tree of dicts (with int keys), lists, tuples, numbers,
# strings and tensors. Tensors go to safetensors under the keys "<prefix>/<n>"; the rest becomes
# JSON with tagged nodes for what JSON cannot say (tuples, non-string keys, non-finite floats), so
# that decoding gives back an equal tree (tuples stay tuples, 0 stays int, 1e-3 stays 1e-3 exactly:
# Python's json writes floats with repr, which round-trips).


def _encode(obj: Any, tensors: dict[str, Tensor], prefix: str, where: str) -> Any:
    if isinstance(obj, Tensor):
        key = f"{prefix}/{len(tensors)}"
        # clone: safetensors refuses tensors that share memory, and the copy is what we write
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}  # 'nan', 'inf', '-inf'
    if isinstance(obj, tuple):
        return {
            "__tuple__": [_encode(v, tensors, prefix, f"{where}[{i}]") for i, v in enumerate(obj)]
        }
    if isinstance(obj, list):
        return [_encode(v, tensors, prefix, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, prefix, f"{where}[{k!r}]") for k, v in obj.items()}
        return {
            "__items__": [
                [
                    _encode(k, tensors, prefix, f"{where} key"),
                    _encode(v, tensors, prefix, f"{where}[{k!r}]"),
                ]
                for k, v in obj.items()
            ]
        }
    raise ValueError(
        f"{where} is a {type(obj).__name__}, which cannot be stored without pickle; "
        "checkpoints hold tensors, numbers, strings, None, lists, tuples and dicts only"
    )


class _MissingTensor(KeyError):
    """A ``{"__tensor__": key}`` reference to a key that ``state.safetensors`` does not hold."""


def _decode(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    """The tree :func:`_encode` encoded.

    ``_MissingTensor`` for a reference to an absent tensor, ``ValueError`` for a malformed tagged
    node.
    """
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tensor__"}:
        if obj["__tensor__"] not in tensors:
            raise _MissingTensor(obj["__tensor__"])
        return tensors[obj["__tensor__"]]
    if set(obj) == {"__float__"}:
        if obj["__float__"] not in ("nan", "inf", "-inf"):
            raise ValueError(
                f"a tagged float must be 'nan', 'inf' or '-inf', got {obj['__float__']!r}"
            )
        return float(obj["__float__"])
    if set(obj) == {"__tuple__"}:
        if not isinstance(obj["__tuple__"], list):
            raise ValueError("a tagged tuple must hold a list")
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if set(obj) == {"__items__"}:
        items = obj["__items__"]
        if not isinstance(items, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in items
        ):
            raise ValueError("a tagged mapping must hold a list of [key, value] pairs")
        out = {}
        for k, v in items:
            key = _decode(k, tensors)
            if isinstance(key, (list, dict)):
                raise ValueError(f"a tagged mapping has an unhashable key {key!r}")
            out[key] = _decode(v, tensors)
        return out
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")


def _check_generators(generators: Any, name: str = "generators") -> dict[str, torch.Generator]:
    if generators is None:
        return {}
    if not isinstance(generators, Mapping):
        raise ValueError(
            f"{name} must be a dict of name -> torch.Generator, got {type(generators).__name__}"
        )
    for key, gen in generators.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"{name} keys must be non-empty strings without '/', got {key!r}")
        if not isinstance(gen, torch.Generator):
            raise ValueError(f"{name}[{key!r}] must be a torch.Generator, got {type(gen).__name__}")
    return dict(generators)


# ----------------------------------------------------------------------------- integrity records


def _file_record(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``manifest`` without its ``manifest_sha256`` key."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _sign(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` (JSON-round-tripped, so the digest is of what a reader parses) with its digest."""
    body = json.loads(json.dumps(manifest, allow_nan=False))
    body["manifest_sha256"] = _manifest_digest(body)
    return body


# ----------------------------------------------------------------------------- reading


def _reject_constant(token: str) -> None:
    raise ValueError(f"the non-standard JSON token {token}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_manifest(ckpt: Path) -> dict[str, Any]:
    """``checkpoint.json`` of ``ckpt``, parsed and checked key by key (and against its digest).

    Raises :class:`CheckpointError` naming the file and what is wrong.
    """
    if not ckpt.is_dir():
        raise CheckpointError(ckpt, None, "is not a directory (not a complete checkpoint)")
    path = ckpt / MANIFEST
    if not path.is_file():
        raise CheckpointError(
            ckpt, MANIFEST, "is missing: the directory is not a complete checkpoint"
        )

    def bad(reason: str) -> CheckpointError:
        return CheckpointError(ckpt, MANIFEST, reason)

    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        raise bad(f"is not UTF-8 text (damaged): {err}") from err
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise bad(f"is not valid JSON (truncated or damaged): {err}") from err
    if not isinstance(manifest, dict):
        raise bad(f"holds a JSON {type(manifest).__name__} where an object is expected")
    if manifest.get("format") != FORMAT:
        raise bad(f"is not a {FORMAT} file: its 'format' is {manifest.get('format')!r}")
    version = manifest.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise bad(f"has version {version!r}; this code reads versions {list(READABLE_VERSIONS)}")
    required: dict[str, tuple[Any, str]] = {
        "step": (_is_count, "an integer >= 0"),
        "extra": (lambda v: isinstance(v, dict), "an object"),
        "optimizer": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "scheduler": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "generators": (
            lambda v: (
                isinstance(v, dict)
                and all(
                    isinstance(g, dict) and isinstance(g.get("device"), str) for g in v.values()
                )
            ),
            'an object of name -> {"device": str}',
        ),
        "global_rng": (lambda v: isinstance(v, bool), "true or false"),
    }
    if version >= 2:
        required["files"] = (
            lambda v: (
                isinstance(v, dict)
                and all(
                    isinstance(v.get(n), dict)
                    and _is_count(v[n].get("bytes"))
                    and isinstance(v[n].get("sha256"), str)
                    and _HEX64.match(v[n]["sha256"])
                    for n in DATA_FILES
                )
            ),
            f'an object with {{"bytes", "sha256"}} for {" and ".join(DATA_FILES)}',
        )
        required["manifest_sha256"] = (
            lambda v: isinstance(v, str) and _HEX64.match(v),
            "a SHA-256 hex digest",
        )
    for key, (ok, what) in required.items():
        if key not in manifest:
            raise bad(f"has no {key!r} (a missing key: damaged, or edited by hand)")
        if not ok(manifest[key]):
            raise bad(f"has a {key!r} that is not {what}: {manifest[key]!r:.200}")
    match = _STEP_DIR.match(ckpt.name)
    if match and int(match.group(1)) != manifest["step"]:
        raise bad(
            f"says step {manifest['step']}, but the directory is {ckpt.name} (a mismatched step: "
            "damaged, or copied under another name)"
        )
    if version >= 2 and _manifest_digest(manifest) != manifest["manifest_sha256"]:
        raise bad(
            "does not match its recorded SHA-256: it was changed or damaged after it was written"
        )
    return manifest


def _read_tensors(ckpt: Path, name: str, manifest: Mapping[str, Any]) -> dict[str, Tensor]:
    """Every tensor of data file ``name``, on the CPU, in private memory.

    The file is read once; its size and SHA-256 are checked against ``checkpoint.json`` (version 2)
    and the same bytes are parsed, so what is loaded is what was checked. The tensors do not map the
    file (``safetensors.torch.load_file`` would), so damage done to it later cannot reach them.
    Raises :class:`CheckpointError` naming the file: missing, truncated, longer than recorded,
    overwritten, or not a valid safetensors file.
    """
    path = ckpt / name
    if not path.is_file():
        raise CheckpointError(
            ckpt, name, "is missing (deleted, or the checkpoint was copied incompletely)"
        )
    data = path.read_bytes()
    record = manifest.get("files", {}).get(name) if manifest["version"] >= 2 else None
    if record is not None:
        if len(data) < record["bytes"]:
            raise CheckpointError(
                ckpt,
                name,
                f"is truncated: {len(data)} bytes of the {record['bytes']} recorded in {MANIFEST}",
            )
        if len(data) > record["bytes"]:
            raise CheckpointError(
                ckpt,
                name,
                f"is damaged: {len(data)} bytes, longer than the "
                f"{record['bytes']} recorded in {MANIFEST}",
            )
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise CheckpointError(
                ckpt,
                name,
                f"is damaged: its content does not match the SHA-256 recorded "
                f"in {MANIFEST} (bytes were overwritten)",
            )
    try:
        return load_tensors(data)
    except Exception as err:
        raise CheckpointError(
            ckpt, name, f"is not a valid safetensors file (truncated or damaged): {err}"
        ) from err
