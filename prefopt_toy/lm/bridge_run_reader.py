r"""Reading bridge runs back: the ``bridge.json`` format, the :class:`BridgeRun` record, its checks.

:func:`load_bridge_run` reads one run directory written by ``run_bridge(..., run_dir=)`` and
:func:`~prefopt_toy.lm.bridge_runs.save_bridge_run` into a :class:`BridgeRun`, checking every field
of ``bridge.json`` (format and version, algorithm and hyperparameters, shapes, finite values,
Wilson estimates whose counts sum to ``n``) and reading the measured trajectory from ``run.jsonl``,
which must agree with the copy in ``bridge.json``. :func:`load_bridge_runs` reads a folder of such
directories. Every error is a ``ValueError`` naming the file. Re-exported by
:mod:`prefopt_toy.lm.bridge_runs`.

References: as :mod:`prefopt_toy.lm.bridge_runs`, the module this one was split from.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._validate import as_positive_float
from .bridge import TRAINABLE
from .bridge_predict import BRIDGE_ALGORITHMS
from .class_estimate import ClassEstimate
from .runlog import read_run_header, read_run_log

__all__ = ["BRIDGE_FILE", "FORMAT", "LOG_FILE", "VERSION", "BridgeRun", "load_bridge_run", "load_bridge_runs"]

BRIDGE_FILE = "bridge.json"
"""Name of the file :func:`~prefopt_toy.lm.bridge_runs.save_bridge_run` writes in a run directory."""
LOG_FILE = "run.jsonl"
"""Name of the trainer's run log in a run directory (``trainer.Trainer.run``)."""
FORMAT = "prefopt_toy.bridge_run"
VERSION = 1


@dataclass(frozen=True, eq=False)
class BridgeRun:
    """One saved bridge run, read back by :func:`load_bridge_run`; distributions have K+1 entries, "other" last.

    References
    ----------
    See the module docstring.
    """

    path: Path
    """The run directory (holds ``bridge.json`` and ``run.jsonl``)."""
    algorithm: str
    """One of ``bridge.TRAINABLE``."""
    strength_name: str
    """``"beta"`` (``dpo``) or ``"tau"`` (the others)."""
    strength: float
    """The KL strength, beta or tau."""
    mixture: float
    """Weight of ``mu`` in the geometric mixture (0 for algorithms without one)."""
    class_names: tuple[str, ...]
    """K class names then the "other" name."""
    P_ext: Tensor
    """(K+1, K+1) float64, the class-level game."""
    mu_class: ClassEstimate
    """The reference's class distribution with its Wilson intervals."""
    prediction: Tensor
    """(K+1,) float64, the exact fixed point for ``mu_class.probs``."""
    toy_trajectory: Tensor
    """(toy_steps + 1, K+1) float64, the exact toy run from ``mu_class.probs``."""
    steps: tuple[int, ...]
    """GPT-2 steps at which ``run.jsonl`` holds a class distribution."""
    measured: Tensor
    """(len(steps), K+1) float64, those class distributions, read from ``run.jsonl``."""
    final: ClassEstimate
    """The trained policy's class distribution with its Wilson intervals."""
    tv: float
    """Total variation between ``final.probs`` and ``prediction``."""
    config: dict[str, Any]
    """The run log's header: the trainer's configuration (steps, lr, n_eval, ...)."""
    wall_s: float = 0.0
    """Wall time of the run in seconds."""

    @property
    def tau(self) -> float | None:
        """``strength`` when it is tau, else None."""
        return self.strength if self.strength_name == "tau" else None

    @property
    def beta(self) -> float | None:
        """``strength`` when it is beta (``dpo``), else None."""
        return self.strength if self.strength_name == "beta" else None

    @property
    def log_path(self) -> Path:
        """``path / "run.jsonl"``."""
        return self.path / LOG_FILE



# --------------------------------------------------------------------------- load
def _tensor(record: Mapping[str, Any], key: str, shape: tuple[int | None, ...], where: str) -> Tensor:
    try:
        t = torch.tensor(record[key], dtype=torch.float64)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: {key!r} is missing or not a numeric array ({err})") from err
    ok = t.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, t.shape))
    if not ok or not bool(torch.isfinite(t).all()):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{where}: {key!r} must be a finite array of shape {want}, got shape {tuple(t.shape)}")
    return t


def _estimate(record: Mapping[str, Any], key: str, size: int, where: str) -> ClassEstimate:
    est = record.get(key)
    if not isinstance(est, Mapping):
        raise ValueError(f"{where}: {key!r} is missing or not an object")  # noqa: TRY004
    w = f"{where} {key!r}"
    probs, lower, upper = (_tensor(est, k, (size,), w) for k in ("probs", "lower", "upper"))
    counts = _tensor(est, "counts", (size,), w)
    n, level, names = est.get("n"), est.get("level"), est.get("class_names", [])
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or isinstance(level, bool) \
            or not isinstance(level, (int, float)) or not math.isfinite(level):
        raise ValueError(f"{w}: 'n' must be an integer >= 1 and 'level' a finite number")
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise ValueError(f"{w}: 'class_names' must be a list of strings")
    if int(counts.sum()) != n or bool((counts != counts.round()).any()):
        raise ValueError(f"{w}: 'counts' must be integers summing to n = {n}")
    return ClassEstimate(probs, lower, upper, counts.to(torch.int64), n, float(level),
                         tuple(names))


def load_bridge_run(run_dir: str | os.PathLike[str]) -> BridgeRun:
    """Read one run directory: ``bridge.json`` and the measured trajectory from ``run.jsonl``.

    Parameters
    ----------
    run_dir : path
        A directory written by ``run_bridge(..., run_dir=)`` and :func:`save_bridge_run`.

    Returns
    -------
    BridgeRun

    Raises
    ------
    ValueError
        Naming the file: ``bridge.json`` or ``run.jsonl`` missing, not JSON, of another format, a
        field missing or misshapen, or the measured distributions in ``bridge.json`` differing from
        the run log's.

    References
    ----------
    JSON Lines, https://jsonlines.org; see the module docstring.
    """
    run_dir = Path(run_dir)
    path = run_dir / BRIDGE_FILE
    where = f"{BRIDGE_FILE} {str(path)!r}"
    if not path.is_file():
        raise ValueError(f"{where} does not exist: save the run with save_bridge_run")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where} is not JSON (truncated or damaged?): {err}") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
        raise ValueError(f"{where} is not a {FORMAT} version {VERSION} file")
    algorithm, hyper = record.get("algorithm"), record.get("hyper")
    if algorithm not in TRAINABLE or not isinstance(hyper, dict):
        raise ValueError(f"{where}: 'algorithm' must be one of {TRAINABLE} and 'hyper' an object")
    name = BRIDGE_ALGORITHMS[algorithm][0]
    try:
        strength = as_positive_float(hyper.get(name), f"hyper[{name!r}]")
        mixture = float(hyper.get("mixture", 0.0))
        if not 0.0 <= mixture <= 1.0:
            raise ValueError(f"hyper['mixture'] must be in [0, 1], got {mixture}")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err
    names = record.get("class_names")
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(c, str) for c in names):
        raise ValueError(f"{where}: 'class_names' must list the K classes and 'other'")
    size = len(names)
    stored_steps = record.get("steps")
    if not isinstance(stored_steps, list) or not all(isinstance(s, int) for s in stored_steps):
        raise ValueError(f"{where}: 'steps' must be a list of integers")
    stored = _tensor(record, "measured", (len(stored_steps), size), where)

    log = run_dir / LOG_FILE
    log_where = f"{LOG_FILE} {str(log)!r}"
    # read_run_log checks every line (RunLogError naming the file and line): each record has an
    # integer step, and metric values are numbers, strings, nulls or lists of them
    rows = [(r["step"], r["class_distribution"]) for r in read_run_log(log)
            if r.get("class_distribution") is not None]
    for step, dist in rows:
        if not (isinstance(dist, list) and len(dist) == size
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in dist)):
            raise ValueError(f"{log_where}: the 'class_distribution' of step {step} must be a list of {size} "
                             f"numbers (one per class and 'other'), got {dist!r:.120}")
    steps = tuple(int(s) for s, _ in rows)
    measured = _tensor({"class_distribution": [d for _, d in rows]}, "class_distribution",
                       (len(rows), size), log_where).reshape(len(rows), size)
    if steps != tuple(stored_steps) or not torch.equal(measured, stored):
        raise ValueError(f"{LOG_FILE} {str(log)!r} disagrees with {where}: the run log's class distributions "
                         "are not the ones saved with the run (a log from another run?)")
    tv, wall_s = record.get("tv"), record.get("wall_s", 0.0)
    for key, value in (("tv", tv), ("wall_s", wall_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: {key!r} must be a finite number, got {value!r:.80}")
    return BridgeRun(
        path=run_dir, algorithm=algorithm, strength_name=name, strength=strength, mixture=mixture,
        class_names=tuple(names), P_ext=_tensor(record, "P_ext", (size, size), where),
        mu_class=_estimate(record, "mu_class", size, where), prediction=_tensor(record, "prediction", (size,), where),
        toy_trajectory=_tensor(record, "toy_trajectory", (None, size), where), steps=steps, measured=measured,
        final=_estimate(record, "final", size, where), tv=float(tv), config=read_run_header(log),
        wall_s=float(wall_s))


def load_bridge_runs(root: str | os.PathLike[str], *, skip_incomplete: bool = False) -> list[BridgeRun]:
    """Every bridge run under ``root`` (``root`` itself or its immediate subdirectories), sorted.

    Parameters
    ----------
    root : path
        A run directory, or a folder of run directories (as :func:`run_bridge_grid` writes).
    skip_incomplete : bool
        Leave out subdirectories that hold a ``run.jsonl`` but no ``bridge.json`` (a run still
        going, or interrupted). By default they raise.

    Returns
    -------
    list of BridgeRun, sorted by (algorithm, strength, mixture, path).

    Raises
    ------
    ValueError
        ``root`` is not a directory or holds no run; an incomplete run (unless skipped); any error
        of :func:`load_bridge_run`, naming the file.

    References
    ----------
    See the module docstring.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root {str(root)!r} is not a directory")
    holds_run = lambda p: (p / BRIDGE_FILE).exists() or (p / LOG_FILE).exists()  # noqa: E731
    candidates = [root] * holds_run(root) + sorted(p for p in root.iterdir() if p.is_dir() and holds_run(p))
    runs = []
    for run_dir in candidates:
        if not (run_dir / BRIDGE_FILE).exists():
            if skip_incomplete:
                continue
            raise ValueError(f"{BRIDGE_FILE} {str(run_dir / BRIDGE_FILE)!r} does not exist beside "
                             f"{LOG_FILE}: an unfinished run (rerun it, or pass skip_incomplete=True)")
        runs.append(load_bridge_run(run_dir))
    if not runs:
        raise ValueError(f"root {str(root)!r} holds no bridge run (no {BRIDGE_FILE} in it or its subdirectories)")
    return sorted(runs, key=lambda r: (r.algorithm, r.strength, r.mixture, str(r.path)))
