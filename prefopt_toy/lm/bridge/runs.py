r"""Bridge runs on disk: save a ``BridgeResult`` beside its run log, read a folder of runs back.

A bridge run directory holds the trainer's run log ``run.jsonl`` (``runlog.RunLogger``: the
measured class distributions, one JSON line per step) and ``bridge.json``, written by
:func:`save_bridge_run`: ``BridgeResult.summary()`` plus everything the exact side needs to be
redrawn without a model, namely the class game ``P_ext``, the hyperparameters, ``mu_class`` with
its Wilson intervals, the exact prediction and the exact toy trajectory, the final estimate, and a
copy of the measured steps and class distributions. :func:`load_bridge_runs` reads a folder of such
directories into :class:`BridgeRun` records; the measured GPT-2 trajectory of a record is read
**from run.jsonl** (``runlog.read_run_log``), and the copy in ``bridge.json`` must agree with it,
so a run log replaced after the fact is caught. :func:`run_bridge_grid` runs ``run_bridge`` over
algorithms x KL strengths into one folder and saves each run, skipping those already saved.

JSON holds Python floats as their shortest round-tripping decimal, so every float64 number comes
back bit for bit.

Reading back: the format constants (``BRIDGE_FILE``, ``LOG_FILE``, ``FORMAT``, ``VERSION``), the
:class:`BridgeRun` record and the validating reader. :func:`load_bridge_run` reads one run
directory, checking every field of ``bridge.json`` (format and version, algorithm and
hyperparameters, shapes, finite values, Wilson estimates whose counts sum to ``n``) and reading the
measured trajectory from ``run.jsonl``; :func:`load_bridge_runs` reads a folder of them. Every
error is a ``ValueError`` naming the file.

References
----------
See ``prefopt_toy.lm.bridge.run`` (Munos et al., arXiv:2312.00886v4; Calandriello et al.,
arXiv:2403.08635v1; Wilson, JASA 22 (1927) 209-212); JSON Lines, https://jsonlines.org.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_positive_float
from prefopt_toy.lm.atomic import write_atomically
from prefopt_toy.lm.train.runlog import read_run_header, read_run_log

from .class_estimate import ClassEstimate
from .predict import BRIDGE_ALGORITHMS
from .run import TRAINABLE, BridgeResult

__all__ = [
    "BRIDGE_FILE",
    "BridgeRun",
    "FORMAT",
    "LOG_FILE",
    "VERSION",
    "load_bridge_run",
    "load_bridge_runs",
    "run_bridge_grid",
    "run_name",
    "save_bridge_run",
]

BRIDGE_FILE = "bridge.json"
"""Name of the file :func:`~prefopt_toy.lm.bridge.runs.save_bridge_run` writes in a run directory."""


LOG_FILE = "run.jsonl"
"""Name of the trainer's run log in a run directory (``train.trainer.Trainer.run``)."""


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
    """One of ``run.TRAINABLE``."""
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
def _tensor(
    record: Mapping[str, Any], key: str, shape: tuple[int | None, ...], where: str
) -> Tensor:
    try:
        t = torch.tensor(record[key], dtype=torch.float64)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: {key!r} is missing or not a numeric array ({err})") from err
    ok = t.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, t.shape))
    if not ok or not bool(torch.isfinite(t).all()):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise ValueError(
            f"{where}: {key!r} must be a finite array of shape {want}, got shape {tuple(t.shape)}"
        )
    return t


def _estimate(record: Mapping[str, Any], key: str, size: int, where: str) -> ClassEstimate:
    est = record.get(key)
    if not isinstance(est, Mapping):
        raise ValueError(f"{where}: {key!r} is missing or not an object")
    w = f"{where} {key!r}"
    probs, lower, upper = (_tensor(est, k, (size,), w) for k in ("probs", "lower", "upper"))
    counts = _tensor(est, "counts", (size,), w)
    n, level, names = est.get("n"), est.get("level"), est.get("class_names", [])
    if (
        not isinstance(n, int)
        or isinstance(n, bool)
        or n < 1
        or isinstance(level, bool)
        or not isinstance(level, (int, float))
        or not math.isfinite(level)
    ):
        raise ValueError(f"{w}: 'n' must be an integer >= 1 and 'level' a finite number")
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise ValueError(f"{w}: 'class_names' must be a list of strings")
    if int(counts.sum()) != n or bool((counts != counts.round()).any()):
        raise ValueError(f"{w}: 'counts' must be integers summing to n = {n}")
    return ClassEstimate(probs, lower, upper, counts.to(torch.int64), n, float(level), tuple(names))


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
    if (
        not isinstance(record, dict)
        or record.get("format") != FORMAT
        or record.get("version") != VERSION
    ):
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
    rows = [
        (r["step"], r["class_distribution"])
        for r in read_run_log(log)
        if r.get("class_distribution") is not None
    ]
    for step, dist in rows:
        if not (
            isinstance(dist, list)
            and len(dist) == size
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in dist)
        ):
            raise ValueError(
                f"{log_where}: the 'class_distribution' of step {step} must be a list of {size} "
                f"numbers (one per class and 'other'), got {dist!r:.120}"
            )
    steps = tuple(int(s) for s, _ in rows)
    measured = _tensor(
        {"class_distribution": [d for _, d in rows]},
        "class_distribution",
        (len(rows), size),
        log_where,
    ).reshape(len(rows), size)
    if steps != tuple(stored_steps) or not torch.equal(measured, stored):
        raise ValueError(
            f"{LOG_FILE} {str(log)!r} disagrees with {where}: the run log's class distributions "
            "are not the ones saved with the run (a log from another run?)"
        )
    tv, wall_s = record.get("tv"), record.get("wall_s", 0.0)
    for key, value in (("tv", tv), ("wall_s", wall_s)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{where}: {key!r} must be a finite number, got {value!r:.80}")
    return BridgeRun(
        path=run_dir,
        algorithm=algorithm,
        strength_name=name,
        strength=strength,
        mixture=mixture,
        class_names=tuple(names),
        P_ext=_tensor(record, "P_ext", (size, size), where),
        mu_class=_estimate(record, "mu_class", size, where),
        prediction=_tensor(record, "prediction", (size,), where),
        toy_trajectory=_tensor(record, "toy_trajectory", (None, size), where),
        steps=steps,
        measured=measured,
        final=_estimate(record, "final", size, where),
        tv=float(tv),
        config=read_run_header(log),
        wall_s=float(wall_s),
    )


def load_bridge_runs(
    root: str | os.PathLike[str], *, skip_incomplete: bool = False
) -> list[BridgeRun]:
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
    candidates = [root] * holds_run(root) + sorted(
        p for p in root.iterdir() if p.is_dir() and holds_run(p)
    )
    runs = []
    for run_dir in candidates:
        if not (run_dir / BRIDGE_FILE).exists():
            if skip_incomplete:
                continue
            raise ValueError(
                f"{BRIDGE_FILE} {str(run_dir / BRIDGE_FILE)!r} does not exist beside "
                f"{LOG_FILE}: an unfinished run (rerun it, or pass skip_incomplete=True)"
            )
        runs.append(load_bridge_run(run_dir))
    if not runs:
        raise ValueError(
            f"root {str(root)!r} holds no bridge run (no {BRIDGE_FILE} in it or its subdirectories)"
        )
    return sorted(runs, key=lambda r: (r.algorithm, r.strength, r.mixture, str(r.path)))


# --------------------------------------------------------------------------- save
def save_bridge_run(result: BridgeResult, run_dir: str | os.PathLike[str]) -> Path:
    """Write ``bridge.json`` for ``result`` into ``run_dir``, next to the trainer's ``run.jsonl``.

    ``run_bridge(..., run_dir=run_dir)`` already wrote ``run_dir/run.jsonl``; when the result's log
    lives elsewhere it is copied to ``run_dir/run.jsonl``. ``bridge.json`` holds
    ``result.summary()`` under ``"summary"`` and, in full, ``P_ext``, ``hyper``, ``mu_class``,
    ``prediction``, ``toy_trajectory``, ``steps``, ``measured``, ``final``, ``tv`` and ``wall_s``.
    The writes are atomic (temporary file, ``fsync``, then ``os.replace``), the copy of the log too.

    Parameters
    ----------
    result : BridgeResult
        From ``bridge.run_bridge`` with a ``run_dir`` (a run without a log cannot be saved: the
        measured trajectory is read back from the log).
    run_dir : path
        The run directory (created if missing).

    Returns
    -------
    Path, the ``bridge.json`` written.

    Raises
    ------
    ValueError
        ``result`` is not a ``BridgeResult`` or has no run log (``log_path`` None or missing), or
        ``run_dir/run.jsonl`` exists and is another run's log.

    References
    ----------
    JSON, RFC 8259; see the module docstring for the bridge itself.
    """
    if not isinstance(result, BridgeResult):
        raise ValueError(f"result must be a BridgeResult, got {type(result).__name__}")
    if result.log_path is None or not Path(result.log_path).is_file():
        raise ValueError(
            f"result has no run log (log_path={result.log_path!r}): call run_bridge with run_dir="
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / LOG_FILE
    source = Path(result.log_path)
    if not (log.exists() and log.resolve() == source.resolve()):
        if log.exists():
            raise ValueError(
                f"run_dir {str(run_dir)!r} already holds {LOG_FILE} of another run than "
                f"result.log_path {str(source)!r}"
            )
        _copy_atomically(source, log)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "summary": result.summary(),
        "algorithm": result.algorithm,
        "class_names": list(result.class_names),
        "P_ext": result.P_ext.tolist(),
        "hyper": dict(result.hyper),
        "mu_class": result.mu_class.as_dict(),
        "prediction": result.prediction.tolist(),
        "toy_trajectory": result.toy_trajectory.tolist(),
        "steps": list(result.steps),
        "measured": result.measured.tolist(),
        "final": result.final.as_dict(),
        "tv": float(result.tv),
        "wall_s": float(result.wall_s),
        "log": LOG_FILE,
    }

    def dump(f) -> None:
        json.dump(record, f, allow_nan=False, indent=1)
        f.write("\n")

    return write_atomically(run_dir / BRIDGE_FILE, dump)


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` so that an interrupted copy never leaves a half-copied ``target``."""
    with open(source, "rb") as src:
        write_atomically(target, lambda out: shutil.copyfileobj(src, out), binary=True)


# --------------------------------------------------------------------------- grid
def run_name(algorithm: str, strength: float, mixture: float = 0.0) -> str:
    """The directory name of a grid run, e.g. ``"online_ipo-tau0.25"``, ``"ipo_md-tau0.25-mix0.25"``."""
    if algorithm not in BRIDGE_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(BRIDGE_ALGORITHMS)}, got {algorithm!r}")
    key, uses_mixture = BRIDGE_ALGORITHMS[algorithm]
    return f"{algorithm}-{key}{float(strength):g}" + (
        f"-mix{float(mixture):g}" if uses_mixture else ""
    )


def run_bridge_grid(
    root: str | os.PathLike[str],
    algorithms: Iterable[str],
    taus: Iterable[float],
    *,
    mixture: float = 0.0,
    overwrite: bool = False,
    **run_bridge_kwargs: Any,
) -> list[BridgeRun]:
    """Run ``run_bridge`` for every (algorithm, tau) into ``root/<run_name>`` and save each run.

    ``tau`` is passed as ``beta`` to ``dpo``; ``mixture`` only to the algorithms that use one
    (``ipo_md``, ``nash_md_pg``). A run whose ``bridge.json`` exists is skipped (and read back)
    unless ``overwrite``; it must then hold the requested algorithm and hyperparameters. Without a
    ``model`` in ``run_bridge_kwargs`` the default model (``size``, ``seed``, ``cache_dir``) is
    loaded once and shared, as ``run_bridge`` would load it for each run.

    Parameters
    ----------
    root : path
        Folder of the runs (created if missing).
    algorithms : iterable of str
        Each one of ``run.TRAINABLE``.
    taus : iterable of float > 0
        KL strengths (beta for ``dpo``).
    mixture : float in [0, 1]
        Weight of ``mu`` in the geometric mixture of ``ipo_md`` and ``nash_md_pg``.
    overwrite : bool
        Rerun and replace runs already saved.
    **run_bridge_kwargs
        Passed to ``run_bridge`` (``P`` is required; ``steps``, ``size``, ``seed``, ...). Not
        ``tau``, ``beta``, ``mixture`` or ``run_dir``, which the grid sets.

    Returns
    -------
    list of BridgeRun, one per (algorithm, tau), in the order given.

    Raises
    ------
    ValueError
        An unknown algorithm, an empty grid, a keyword the grid sets, a non-positive tau, a saved
        run with other hyperparameters, and whatever ``run_bridge`` raises.

    References
    ----------
    See ``prefopt_toy.lm.bridge.run.run_bridge``.
    """
    from prefopt_toy.lm.models.gpt2 import default_model

    from .run import run_bridge

    algorithms, taus = list(algorithms), [as_positive_float(t, "taus") for t in taus]
    bad = [a for a in algorithms if a not in TRAINABLE]
    if bad or not algorithms or not taus:
        raise ValueError(
            f"algorithms must be a non-empty list from {TRAINABLE} and taus non-empty, "
            f"got {algorithms!r} and {taus!r}"
        )
    clash = sorted({"tau", "beta", "mixture", "run_dir"} & set(run_bridge_kwargs))
    if clash:
        raise ValueError(f"run_bridge_kwargs must not set {clash}: the grid sets them")
    if "P" not in run_bridge_kwargs:
        raise ValueError("run_bridge_kwargs must include P, the class game")
    root = Path(root)
    kwargs = dict(run_bridge_kwargs)
    runs = []
    for algorithm in algorithms:
        key, uses_mixture = BRIDGE_ALGORITHMS[algorithm]
        m = float(mixture) if uses_mixture else 0.0
        for tau in taus:
            run_dir = root / run_name(algorithm, tau, m)
            if (run_dir / BRIDGE_FILE).exists() and not overwrite:
                try:
                    run = load_bridge_run(run_dir)
                except ValueError as err:  # names the damaged file; say how to get past it
                    raise ValueError(
                        f"{err} (a saved run of this grid; pass overwrite=True to rerun it)"
                    ) from err
                if (run.algorithm, run.strength, run.mixture) != (algorithm, tau, m):
                    raise ValueError(
                        f"{BRIDGE_FILE} {str(run_dir / BRIDGE_FILE)!r} holds {run.algorithm} with "
                        f"{run.strength_name}={run.strength:g}, mixture={run.mixture:g}, not the "
                        "requested run: pass overwrite=True or use another root"
                    )
                runs.append(run)
                continue
            (run_dir / BRIDGE_FILE).unlink(
                missing_ok=True
            )  # never leave a stale summary beside a new log
            if kwargs.get("model") is None:
                kwargs["model"], kwargs["tokenizer"] = default_model(
                    kwargs.get("size", "tiny"),
                    cache_dir=kwargs.get("cache_dir"),
                    seed=kwargs.get("seed", 0),
                )
            strength = {key: tau} | ({"mixture": m} if uses_mixture else {})
            result = run_bridge(algorithm, run_dir=run_dir, **strength, **kwargs)
            save_bridge_run(result, run_dir)
            runs.append(load_bridge_run(run_dir))
    return runs
