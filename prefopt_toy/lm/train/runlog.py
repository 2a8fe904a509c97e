"""Run logs as JSON lines, read back by notebooks and widgets; a tqdm progress bar that stays quiet in CI.

A run log is a text file with one JSON object per line:

- the first line is the header, ``{"kind": "header", "format": "prefopt_toy.runlog", "version": 1,
  "config": {...}}``, with the run's configuration;
- each training step appends ``{"kind": "step", "step": 17, "loss": 0.69, "rewards/chosen": ...}``,
  with TRL's metric names (``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
  ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``) plus ``loss``, ``kl``,
  ``win_rate`` and, for lifted games, ``class_distribution`` as a list;
- a resumed run writes ``{"kind": "resume", "step": k, "config": {...}}`` where it continued, so a
  changed configuration (say, a lower learning rate after a NaN) stays on record.

Each line is appended with a single ``write`` and flushed, so a notebook can read a run that is
still going; a write that fails half-way is cut back off, so a log never holds a half line in the
middle.

**Damaged logs.** Every reader checks every line and raises :class:`RunLogError` (a ``ValueError``)
naming the file, the line number and what is wrong: not JSON, JSON that is not an object, a missing
or unknown ``kind``, a missing or mistyped ``step`` or ``config``, a step that does not increase, a
metric that is an object, a second header. One exception, by design: a **last line without its
newline** is what a writer killed in the middle of a line leaves (and, on file systems where appends
are not atomic, what a reader may see of a line being written). It never held a complete record,
so the readers skip it, silently, and keep everything before it; ``RunLogger(...,
resume_from_step=k)`` drops it when it rewrites the log. A last line without its newline that parses
as a complete record (only its newline was lost) is kept.

**Non-finite values.** Strict JSON has no NaN or infinity. ``nan``, ``inf`` and ``-inf`` are all
written as ``null``: :func:`read_run_log` returns them as ``None`` and :func:`run_log_frame` as NaN.
The sign of an infinity is lost; a metric that can legitimately be infinite should be logged in a
transformed form (e.g. its log).

**Curves.** ``run_log_curves`` draws chosen metrics of several runs (one panel per metric, one line
per run, ``gid`` ``"<run>:<metric>"``), read with :func:`run_log_frame`, on a
``matplotlib.figure.Figure`` built without pyplot.

References
----------
JSON Lines, https://jsonlines.org; TRL v1.13.0 metric names (``trl/trainer/dpo_trainer.py``),
https://github.com/huggingface/trl; tqdm, https://github.com/tqdm/tqdm.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from torch import Tensor

from prefopt_toy._validate import as_int
from prefopt_toy.lm.atomic import write_atomically

__all__ = [
    "RunLogError",
    "RunLogger",
    "progress",
    "read_run_header",
    "read_run_log",
    "run_log_curves",
    "run_log_frame",
]


def run_log_curves(
    logs: Mapping[str, str | os.PathLike[str]],
    keys: Sequence[str],
    *,
    titles: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
):
    """One panel per metric ``key``, one line per run, against the step (missing values skipped).

    Parameters
    ----------
    logs : mapping name -> path of a ``run.jsonl``
    keys : sequence of str
        Logged metrics (e.g. ``"loss"``, ``"rewards/margins"``, ``"win_rate"``, ``"eval/kl"``).
    titles : sequence of str, optional
        Panel titles (default: the keys).
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        No runs or keys, titles of the wrong length, or a key no run logged.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (the metric names).
    """
    from matplotlib.figure import Figure

    if not logs:
        raise ValueError("logs must name at least one run log")
    keys = list(keys)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"keys must be a non-empty list of metric names, got {keys!r}")
    titles = keys if titles is None else list(titles)
    if len(titles) != len(keys):
        raise ValueError(f"titles must have one entry per key ({len(keys)}), got {len(titles)}")
    frames = {name: run_log_frame(path) for name, path in logs.items()}
    for key in keys:
        if not any(key in f.columns for f in frames.values()):
            raise ValueError(
                f"key {key!r} is in no run log (logged: {sorted(set().union(*(f.columns for f in frames.values())))})"
            )
    fig = Figure(figsize=figsize or (4.0 * len(keys), 3.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key, title in zip(axes, keys, titles):
        for name, frame in frames.items():
            if key in frame.columns:
                series = frame[key].dropna()
                ax.plot(
                    series.index,
                    series.to_numpy(dtype=float),
                    marker=".",
                    label=name,
                    gid=f"{name}:{key}",
                )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    return fig


FORMAT = "prefopt_toy.runlog"


VERSION = 1


_RESERVED = ("kind", "step")


T = TypeVar("T")


def _plain(value: Any, where: str) -> Any:
    """A JSON-ready copy of a metric value: floats, ints, bools, strings, None and lists of them."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Tensor):
        if value.is_complex():
            raise ValueError(f"{where} must be real, got a complex tensor")
        # tolist() gives Python floats (doubles), which hold float32/bf16 values exactly; integer
        # and bool tensors stay ints and bools; a 0-d tensor gives a scalar
        return _plain(value.detach().cpu().tolist(), where)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        x = float(value)
        return x if math.isfinite(x) else None  # documented rule: nan/inf -> null
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(
        f"{where} must be a number, a tensor, a string, None or a list of them, got {type(value).__name__}"
    )


class RunLogError(ValueError):
    """A run log that cannot be read: the message names the file, the line and what is wrong.

    Attributes
    ----------
    path : Path
        The run log.
    line : int or None
        The 1-based line number at fault, None when the fault is the whole file's.

    References
    ----------
    JSON Lines, https://jsonlines.org.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"path {str(self.path)!r}" + (f" line {line}" if line is not None else "")
        super().__init__(f"{where} {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.line, self.reason))


_KINDS = ("header", "step", "resume")


def _is_step(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _metric_ok(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, list) and all(_metric_ok(v) for v in value)


def _check_record(record: Any, path: Path, number: int, first: bool, last_step: int | None) -> None:
    """Raise :class:`RunLogError` unless ``record`` (line ``number``) is a well-formed run-log record."""
    if not isinstance(record, dict):
        raise RunLogError(
            path,
            number,
            f"is JSON but not an object (a {type(record).__name__}): not a run-log record",
        )
    kind = record.get("kind")
    if "kind" not in record:
        raise RunLogError(path, number, "is not a run-log record (no 'kind')")
    if kind not in _KINDS:
        raise RunLogError(
            path, number, f"has an unknown 'kind' {kind!r}; expected one of {list(_KINDS)}"
        )
    if first and kind != "header":
        raise RunLogError(
            path, number, f"is not a header ('kind' is {kind!r}): the file is not a run log"
        )
    if kind == "header":
        if not first:
            raise RunLogError(path, number, "is a second header (two runs written into one file?)")
        if "format" in record and record["format"] != FORMAT:
            raise RunLogError(
                path, number, f"is a header of format {record['format']!r}, not {FORMAT!r}"
            )
        if "version" in record and record["version"] != VERSION:
            raise RunLogError(
                path,
                number,
                f"is a header of version {record['version']!r}; this code reads {VERSION}",
            )
    if kind in ("header", "resume"):
        if "config" not in record:
            raise RunLogError(path, number, f"is a {kind} record without 'config'")
        if not isinstance(record["config"], dict):
            raise RunLogError(
                path,
                number,
                f"has a 'config' that is a {type(record['config']).__name__}, not an object",
            )
    if kind in ("step", "resume"):
        if "step" not in record:
            raise RunLogError(path, number, f"is a {kind} record without 'step'")
        if not _is_step(record["step"]):
            raise RunLogError(
                path, number, f"has a 'step' that is not an integer >= 0: {record['step']!r}"
            )
    if kind == "step":
        if last_step is not None and record["step"] <= last_step:
            raise RunLogError(
                path,
                number,
                f"has step {record['step']}, which does not increase on the "
                f"previous step {last_step}",
            )
        for key, value in record.items():
            if key not in _RESERVED and not _metric_ok(value):
                raise RunLogError(
                    path,
                    number,
                    f"has a metric {key!r} that is not a number, string, null or "
                    f"list of them: {value!r:.80}",
                )


def _read_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a run log, each checked (:func:`_check_record`); see the module docstring.

    A last line without its newline (a write cut short) is dropped unless it is a complete record.
    A :class:`RunLogError` if ``path`` is not an existing file or a line is not a run-log record.
    """
    path = Path(path)
    if not path.is_file():
        raise RunLogError(path, None, "does not exist")
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    # data ends with "\n" when complete, so the last piece is "" or a partial line
    tail, complete = lines[-1], lines[:-1]
    records: list[dict[str, Any]] = []
    last_step: int | None = None
    for number, raw in enumerate([*complete, tail], start=1):
        is_tail = number == len(lines)
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if is_tail:
                break  # a line cut short by an interrupted write: skipped (module docstring)
            raise RunLogError(path, number, f"is not JSON: {err}") from err
        if is_tail and not isinstance(record, dict):
            break  # a cut line that happens to parse (e.g. a number cut short): skipped likewise
        _check_record(record, path, number, not records, last_step)
        if record["kind"] == "step":
            last_step = record["step"]
        records.append(record)
    return records


class RunLogger:
    """Append one JSON line per training step to a run log; resumable without duplicated steps.

    Parameters
    ----------
    path : path
        The ``.jsonl`` file (its directory is created if missing).
    config : dict, optional
        JSON-serialisable run configuration, written in the header (or, when resuming, in a
        ``resume`` record).
    resume_from_step : int >= 0, optional
        Continue an existing log after a restart from the checkpoint at this step: lines with a
        step above it (written after the checkpoint, before the interruption) are removed, and
        logging continues in the same file. If the file does not exist it is created.
    overwrite : bool
        Start a fresh log even if ``path`` already holds one. Without it (and without
        ``resume_from_step``) an existing non-empty file is an error, so that a second run never
        mixes its steps into the first one's log.

    Raises
    ------
    ValueError
        If ``config`` is not JSON-serialisable, ``path`` exists and neither ``overwrite`` nor
        ``resume_from_step`` is given, ``resume_from_step`` is negative, both are given, or the
        existing file is not a run log.

    Notes
    -----
    The file is opened, appended to (one ``write`` of the whole line) and closed at each
    :meth:`log`, so nothing is lost if the process dies between steps and no file handle is left
    open; a write that fails part-way is cut back off. Truncation on resume rewrites the file
    atomically (temporary file, ``fsync``, ``os.replace``); it also drops a last line cut short by
    a crash.

    References
    ----------
    JSON Lines, https://jsonlines.org; TRL v1.13.0 metric names, https://github.com/huggingface/trl.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> with tempfile.TemporaryDirectory() as run:
    ...     path = os.path.join(run, "run.jsonl")
    ...     logger = RunLogger(path, config={"algorithm": "online_ipo", "tau": 0.1})
    ...     logger.log(1, {"loss": torch.tensor(0.5), "rewards/margins": 0.25, "kl": float("nan")})
    ...     print(read_run_log(path))
    [{'step': 1, 'loss': 0.5, 'rewards/margins': 0.25, 'kl': None}]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        config: Mapping[str, Any] | None = None,
        resume_from_step: int | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        config_json = self._check_config(config)
        if resume_from_step is not None:
            resume_from_step = as_int(resume_from_step, "resume_from_step", minimum=0)
            if overwrite:
                raise ValueError("overwrite and resume_from_step cannot both be given")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        exists = self.path.is_file() and self.path.stat().st_size > 0
        header = {"kind": "header", "format": FORMAT, "version": VERSION, "config": config_json}

        if resume_from_step is None or not exists:
            if exists and not overwrite:
                raise ValueError(
                    f"path {str(self.path)!r} already holds a run log; pass resume_from_step=k to "
                    "continue it after a restart, or overwrite=True to start over"
                )
            self._rewrite(
                [header]
                if resume_from_step is None
                else [header, self._resume(resume_from_step, config_json)]
            )
            self.last_step: int | None = None
            return

        # records are checked by _read_lines: the first is the header, every "step" an int >= 0;
        # a file whose only line was cut short holds none, and gets a fresh header
        kept = [r for r in _read_lines(self.path) if r.get("step", -1) <= resume_from_step] or [
            header
        ]
        kept.append(self._resume(resume_from_step, config_json))
        self._rewrite(kept)
        steps = [r["step"] for r in kept if r["kind"] == "step"]
        self.last_step = max(steps) if steps else None

    @staticmethod
    def _check_config(config: Any) -> dict[str, Any]:
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        try:
            return json.loads(json.dumps(dict(config), allow_nan=False))
        except (TypeError, ValueError) as err:
            raise ValueError(f"config must be JSON-serialisable without NaN/inf: {err}") from err

    @staticmethod
    def _resume(step: int, config: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "resume", "step": step, "config": config}

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        write_atomically(
            self.path,
            lambda f: f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in records),
        )

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append the metrics of one step as a JSON line and flush it.

        Parameters
        ----------
        step : int >= 0
            Strictly greater than the previous logged step (and than ``resume_from_step``'s kept
            lines), so a step is never logged twice.
        metrics : dict of str -> value
            Numbers, 0-d or n-d tensors, numpy arrays, strings, None or lists; tensors and arrays
            become (nested) lists of floats, 0-d ones plain floats. NaN and infinities become null.
            The keys ``"kind"`` and ``"step"`` are reserved.

        Raises
        ------
        ValueError
            On a step that does not increase, a non-string or reserved key, or a value of another
            type (a dict, an object).

        References
        ----------
        JSON Lines, https://jsonlines.org.
        """
        step = as_int(step, "step", minimum=0)
        if self.last_step is not None and step <= self.last_step:
            raise ValueError(f"step must increase: got {step} after {self.last_step}")
        if not isinstance(metrics, Mapping):
            raise ValueError(
                f"metrics must be a dict of name -> value, got {type(metrics).__name__}"
            )
        record: dict[str, Any] = {"kind": "step", "step": step}
        for key, value in metrics.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"metrics keys must be non-empty strings, got {key!r}")
            if key in _RESERVED:
                raise ValueError(f"metrics must not use the reserved key {key!r}")
            record[key] = _plain(value, f"metrics[{key!r}]")
        self._append((json.dumps(record, allow_nan=False) + "\n").encode("utf-8"))
        self.last_step = step

    def _append(self, line: bytes) -> None:
        """Append ``line`` with one ``write`` call (looping only on a short write).

        If the write fails part-way (a full disk), cut the file back to where it was, so no half
        line stays behind.
        """
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


def read_run_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The step records of a run log, in file order, each ``{"step": ..., <metric>: ...}``.

    Header and resume records are left out (see :func:`read_run_header`). Non-finite values were
    written as null and come back as None. A last line cut short by an interrupted write is skipped
    (see the module docstring).

    Raises
    ------
    RunLogError
        (a ``ValueError``) if ``path`` does not exist or a line is not a well-formed run-log record:
        the message names the file, the line number and what is wrong.

    References
    ----------
    JSON Lines, https://jsonlines.org.
    """
    return [
        {k: v for k, v in r.items() if k != "kind"}
        for r in _read_lines(path)
        if r["kind"] == "step"
    ]


def read_run_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The configuration in a run log's header line.

    Raises
    ------
    RunLogError
        (a ``ValueError``) if ``path`` does not exist, holds no header, or a line is not a
        well-formed run-log record (named as in :func:`read_run_log`).

    References
    ----------
    JSON Lines, https://jsonlines.org.
    """
    path = Path(path)
    records = _read_lines(path)
    if not records:
        raise RunLogError(path, None, "is empty: no header")
    return dict(records[0]["config"])


def run_log_frame(path: str | os.PathLike[str]) -> Any:
    """The step records as a pandas DataFrame indexed by ``step`` (null -> NaN).

    List-valued metrics (``class_distribution``) stay lists in one column.

    Raises
    ------
    RunLogError
        As :func:`read_run_log`.

    References
    ----------
    JSON Lines, https://jsonlines.org; pandas, https://pandas.pydata.org.
    """
    import pandas as pd  # at the edge only: the training code does not need pandas

    records = read_run_log(path)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(index=pd.Index([], name="step", dtype="int64"))
    return frame.set_index("step")  # pandas turns None into NaN in numeric columns


def progress(
    iterable: Iterable[T],
    *,
    enabled: bool | None = None,
    total: int | None = None,
    desc: str | None = None,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar, shown only where a person is watching.

    Parameters
    ----------
    iterable : iterable
        What the training loop iterates over.
    enabled : bool, optional
        Force the bar on or off. None (default): on only when standard error is a terminal and the
        ``CI`` environment variable is unset, so tests, CI logs and redirected output stay clean.
    total : int >= 0, optional
        Passed to tqdm (default: ``len(iterable)`` where it has one).
    desc : str, optional
        Passed to tqdm.

    Returns
    -------
    iterator
        Yields the same items as ``iterable``.

    Raises
    ------
    ValueError
        Naming the argument: ``iterable`` not iterable, ``enabled`` not a bool or None, ``total``
        not an integer >= 0, ``desc`` not a string.

    References
    ----------
    tqdm, https://github.com/tqdm/tqdm.

    Examples
    --------
    >>> list(progress(range(3), enabled=False))
    [0, 1, 2]
    """
    from tqdm.auto import tqdm

    try:
        iter(iterable)
    except TypeError:
        raise ValueError(f"iterable must be iterable, got {type(iterable).__name__}") from None
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True, False or None, got {enabled!r}")
    if total is not None:
        total = as_int(total, "total", minimum=0)
    if desc is not None and not isinstance(desc, str):
        raise ValueError(f"desc must be a string or None, got {type(desc).__name__}")
    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)()) and not os.environ.get("CI")
    return iter(tqdm(iterable, total=total, desc=desc, disable=not enabled))
