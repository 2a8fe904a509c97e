"""The on-disk format of a checkpoint's state: optimizer/scheduler state dicts as safetensors + JSON.

An optimizer or scheduler state dict is split into its tensors, written to ``state.safetensors``
under keys ``"<prefix>/<n>"``, and the rest of its structure (hyper-parameters, parameter groups),
written to ``checkpoint.json`` with each tensor replaced by a reference; tuples, non-string keys and
non-finite floats are tagged so that decoding gives back an equal tree, without pickle. This module
also holds the file names and format version of a checkpoint directory, the JSON writer, and the
check of the named ``torch.Generator`` objects whose states are stored. ``prefopt_toy.lm.checkpoint``
writes and reads whole checkpoints with them.

References: as :mod:`prefopt_toy.lm.checkpoint`, the module this one was split from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["FORMAT", "MANIFEST", "MODEL_FILE", "STATE_FILE", "VERSION"]

FORMAT = "prefopt_toy.checkpoint"
VERSION = 1
MANIFEST = "checkpoint.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"


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


def _decode(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tensor__"}:
        return tensors[obj["__tensor__"]]
    if set(obj) == {"__float__"}:
        return float(obj["__float__"])
    if set(obj) == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if set(obj) == {"__items__"}:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")


def _check_generators(generators: Any, name: str = "generators") -> dict[str, torch.Generator]:
    if generators is None:
        return {}
    if not isinstance(generators, Mapping):
        raise ValueError(  # noqa: TRY004
            f"{name} must be a dict of name -> torch.Generator, got {type(generators).__name__}"
        )
    for key, gen in generators.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"{name} keys must be non-empty strings without '/', got {key!r}")
        if not isinstance(gen, torch.Generator):
            raise ValueError(f"{name}[{key!r}] must be a torch.Generator, got {type(gen).__name__}")  # noqa: TRY004
    return dict(generators)
