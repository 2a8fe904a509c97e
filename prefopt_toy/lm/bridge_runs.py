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

The format constants, the :class:`BridgeRun` record and the validating reader
(:func:`load_bridge_run`, :func:`load_bridge_runs`) live in :mod:`prefopt_toy.lm.bridge_run_reader`
and are re-exported here.

References
----------
See ``prefopt_toy.lm.bridge`` (Munos et al., arXiv:2312.00886v4; Calandriello et al.,
arXiv:2403.08635v1; Wilson, JASA 22 (1927) 209-212); JSON Lines, https://jsonlines.org.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._validate import as_positive_float
from .atomic import write_atomically
from .bridge import TRAINABLE, BridgeResult
from .bridge_predict import BRIDGE_ALGORITHMS
from .bridge_run_reader import (
    BRIDGE_FILE,
    FORMAT,
    LOG_FILE,
    VERSION,
    BridgeRun,
    load_bridge_run,
    load_bridge_runs,
)

__all__ = ["BRIDGE_FILE", "LOG_FILE", "BridgeRun", "load_bridge_run", "load_bridge_runs", "run_bridge_grid",
           "run_name", "save_bridge_run"]


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
        raise ValueError(f"result must be a BridgeResult, got {type(result).__name__}")  # noqa: TRY004
    if result.log_path is None or not Path(result.log_path).is_file():
        raise ValueError(f"result has no run log (log_path={result.log_path!r}): call run_bridge with run_dir=")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / LOG_FILE
    source = Path(result.log_path)
    if not (log.exists() and log.resolve() == source.resolve()):
        if log.exists():
            raise ValueError(f"run_dir {str(run_dir)!r} already holds {LOG_FILE} of another run than "
                             f"result.log_path {str(source)!r}")
        _copy_atomically(source, log)
    record = {
        "format": FORMAT, "version": VERSION, "summary": result.summary(), "algorithm": result.algorithm,
        "class_names": list(result.class_names), "P_ext": result.P_ext.tolist(), "hyper": dict(result.hyper),
        "mu_class": result.mu_class.as_dict(), "prediction": result.prediction.tolist(),
        "toy_trajectory": result.toy_trajectory.tolist(), "steps": list(result.steps),
        "measured": result.measured.tolist(), "final": result.final.as_dict(), "tv": float(result.tv),
        "wall_s": float(result.wall_s), "log": LOG_FILE,
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
    return f"{algorithm}-{key}{float(strength):g}" + (f"-mix{float(mixture):g}" if uses_mixture else "")


def run_bridge_grid(root: str | os.PathLike[str], algorithms: Iterable[str], taus: Iterable[float], *,
                    mixture: float = 0.0, overwrite: bool = False, **run_bridge_kwargs: Any) -> list[BridgeRun]:
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
        Each one of ``bridge.TRAINABLE``.
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
    See ``prefopt_toy.lm.bridge.run_bridge``.
    """
    from .bridge import run_bridge
    from .models import default_model

    algorithms, taus = list(algorithms), [as_positive_float(t, "taus") for t in taus]
    bad = [a for a in algorithms if a not in TRAINABLE]
    if bad or not algorithms or not taus:
        raise ValueError(f"algorithms must be a non-empty list from {TRAINABLE} and taus non-empty, "
                         f"got {algorithms!r} and {taus!r}")
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
                    raise ValueError(f"{err} (a saved run of this grid; pass overwrite=True to rerun it)") from err
                if (run.algorithm, run.strength, run.mixture) != (algorithm, tau, m):
                    raise ValueError(f"{BRIDGE_FILE} {str(run_dir / BRIDGE_FILE)!r} holds {run.algorithm} with "
                                     f"{run.strength_name}={run.strength:g}, mixture={run.mixture:g}, not the "
                                     "requested run: pass overwrite=True or use another root")
                runs.append(run)
                continue
            (run_dir / BRIDGE_FILE).unlink(missing_ok=True)  # never leave a stale summary beside a new log
            if kwargs.get("model") is None:
                kwargs["model"], kwargs["tokenizer"] = default_model(
                    kwargs.get("size", "tiny"), cache_dir=kwargs.get("cache_dir"), seed=kwargs.get("seed", 0))
            strength = {key: tau} | ({"mixture": m} if uses_mixture else {})
            result = run_bridge(algorithm, run_dir=run_dir, **strength, **kwargs)
            save_bridge_run(result, run_dir)
            runs.append(load_bridge_run(run_dir))
    return runs
