"""Malformed run logs are named: file, line number and what is wrong, by every reader.

Each case writes a good log with ``RunLogger`` and then puts one bad line in the middle (written
out by hand here); every reader (``read_run_log``, ``read_run_header``, ``run_log_frame``, the
resuming ``RunLogger``, the bridge reader ``load_bridge_run``) must raise ``RunLogError`` (a
``ValueError``) that names the file, the line and the fault, never a bare ``KeyError`` or
``TypeError``. A last line cut short (the crash artefact) is skipped, as documented, and the
writer never leaves a half line.
"""

from __future__ import annotations

import errno
import json
import os
import re
import warnings
from pathlib import Path

import pytest

from prefopt_toy.lm.bridge.runs import BRIDGE_FILE, FORMAT, LOG_FILE, VERSION, load_bridge_run
from prefopt_toy.lm.train import runlog
from prefopt_toy.lm.train.runlog import (
    RunLogError,
    RunLogger,
    progress,
    read_run_header,
    read_run_log,
    run_log_frame,
)

CONFIG = {"algorithm": "online_ipo", "tau": 0.25}
DIST = [[0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [0.125, 0.5, 0.375]]


def good_log(path: Path) -> list[str]:
    """A log of 3 steps with class distributions; returns its lines."""
    logger = RunLogger(path, config=CONFIG)
    for i, step in enumerate((0, 2, 4)):
        logger.log(step, {"loss": 0.5 / (step + 1), "class_distribution": DIST[i]})
    return path.read_text().splitlines()


# (the bad line put in as line 3, the reason the readers must give)
BAD_LINES = {
    "not JSON": ('{"kind": "step", "step": 3, "loss": }', r"is not JSON"),
    "invalid UTF-8": (b'{"kind": "step", "step": 3, "loss": "\xff\xfe"}', r"is not JSON"),
    "a JSON list": ("[1, 2, 3]", r"is JSON but not an object \(a list\)"),
    "a JSON string": ('"step 3"', r"is JSON but not an object \(a str\)"),
    "a JSON number": ("17", r"is JSON but not an object \(a int\)"),
    "no kind": ('{"step": 3, "loss": 0.1}', r"is not a run-log record \(no 'kind'\)"),
    "unknown kind": ('{"kind": "epoch", "step": 3}', r"has an unknown 'kind' 'epoch'"),
    "unhashable kind": ('{"kind": ["step"], "step": 3}', r"has an unknown 'kind' \['step'\]"),
    "step without step": ('{"kind": "step", "loss": 0.1}', r"is a step record without 'step'"),
    "step as a string": (
        '{"kind": "step", "step": "3"}',
        r"has a 'step' that is not an integer >= 0: '3'",
    ),
    "step as a float": (
        '{"kind": "step", "step": 3.0}',
        r"has a 'step' that is not an integer >= 0: 3\.0",
    ),
    "step as a bool": (
        '{"kind": "step", "step": true}',
        r"has a 'step' that is not an integer >= 0: True",
    ),
    "negative step": (
        '{"kind": "step", "step": -1}',
        r"has a 'step' that is not an integer >= 0: -1",
    ),
    "repeated step": (
        '{"kind": "step", "step": 0, "loss": 0.1}',
        r"has step 0, which does not increase on the "
        r"previous step 0",
    ),
    "metric object": (
        '{"kind": "step", "step": 3, "loss": {"mean": 0.1}}',
        r"has a metric 'loss' that is not a "
        r"number, string, null or list",
    ),
    "resume without config": (
        '{"kind": "resume", "step": 2}',
        r"is a resume record without 'config'",
    ),
    "resume config a list": (
        '{"kind": "resume", "step": 2, "config": [1]}',
        r"has a 'config' that is a list",
    ),
    "second header": ('{"kind": "header", "config": {}}', r"is a second header"),
}


def _with_bad_line(path: Path, bad: str | bytes) -> None:
    good_log(path)
    _insert_bad_line(path, bad)


def _insert_bad_line(path: Path, bad: str | bytes) -> None:
    lines = path.read_bytes().splitlines()
    bad = bad if isinstance(bad, bytes) else bad.encode()
    path.write_bytes(
        b"\n".join(lines[:2] + [bad] + lines[2:]) + b"\n"
    )  # header, step 0, BAD, step 2...


def _readers(path: Path):
    return {
        "read_run_log": lambda: read_run_log(path),
        "read_run_header": lambda: read_run_header(path),
        "run_log_frame": lambda: run_log_frame(path),
        "RunLogger resume": lambda: RunLogger(path, resume_from_step=2),
    }


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_malformed_middle_line_is_named_by_every_reader(tmp_path, case):
    path = tmp_path / "run.jsonl"
    bad, reason = BAD_LINES[case]
    _with_bad_line(path, bad)
    before = path.read_bytes()
    for name, read in _readers(path).items():
        with pytest.raises(
            RunLogError, match=re.escape(f"path {str(path)!r} line 3 ") + reason
        ) as info:
            read()
        err = info.value
        assert isinstance(err, ValueError) and err.path == path and err.line == 3, name
    assert path.read_bytes() == before  # the refused resume rewrote nothing


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (
            '{"kind": "step", "step": 0}',
            r"line 1 is not a header \('kind' is 'step'\): the file is not a run log",
        ),
        ('{"kind": "header"}', r"line 1 is a header record without 'config'"),
        (
            '{"kind": "header", "config": "tau=0.1"}',
            r"line 1 has a 'config' that is a str, not an object",
        ),
        (
            '{"kind": "header", "format": "other", "config": {}}',
            r"line 1 is a header of format 'other'",
        ),
        ('{"kind": "header", "version": 9, "config": {}}', r"line 1 is a header of version 9"),
    ],
)
def test_a_bad_header_is_named(tmp_path, first, reason):
    path = tmp_path / "run.jsonl"
    path.write_text(first + '\n{"kind": "step", "step": 1, "loss": 0.5}\n')
    for read in _readers(path).values():
        with pytest.raises(RunLogError, match=reason):
            read()


def test_a_cut_last_line_is_skipped_silently_and_a_complete_one_kept(tmp_path, recwarn):
    path = tmp_path / "run.jsonl"
    good_log(path)
    with open(path, "ab") as f:
        f.write(b'{"kind": "step", "step": 6, "class_distribution": [0.2')  # killed mid-write
    assert [r["step"] for r in read_run_log(path)] == [0, 2, 4]
    assert list(run_log_frame(path).index) == [0, 2, 4] and read_run_header(path) == CONFIG

    garbage = tmp_path / "nul.jsonl"  # the zero-filled tail a power loss can leave
    good_log(garbage)
    with open(garbage, "ab") as f:
        f.write(b"\x00" * 64)
    assert [r["step"] for r in read_run_log(garbage)] == [0, 2, 4]

    whole = tmp_path / "whole.jsonl"  # only the newline was lost: the record is complete, kept
    good_log(whole)
    with open(whole, "ab") as f:
        f.write(b'{"kind": "step", "step": 6, "loss": 0.25}')
    assert read_run_log(whole)[-1] == {"step": 6, "loss": 0.25}

    only = tmp_path / "only.jsonl"  # even the header was cut: no records, and a resume starts over
    only.write_text('{"kind": "head')
    assert read_run_log(only) == []
    with pytest.raises(RunLogError, match="is empty: no header"):
        read_run_header(only)
    RunLogger(only, config=CONFIG, resume_from_step=0).log(1, {"loss": 0.5})
    assert read_run_header(only) == CONFIG and read_run_log(only) == [{"step": 1, "loss": 0.5}]
    assert len(recwarn) == 0  # the documented choice: skipped without a warning

    # a cut line that is not the last one is an error
    middle = tmp_path / "middle.jsonl"
    lines = good_log(middle)
    middle.write_text("\n".join(lines[:2] + ['{"kind": "step", "step": 1, "lo'] + lines[2:]) + "\n")
    with pytest.raises(RunLogError, match=r"line 3 is not JSON"):
        read_run_log(middle)


def test_a_write_that_fails_half_way_leaves_no_half_line(tmp_path, monkeypatch):
    path = tmp_path / "run.jsonl"
    logger = RunLogger(path, config=CONFIG)
    logger.log(1, {"loss": 0.5})
    real_write = os.write

    def short_then_full_disk(fd, data):
        real_write(fd, bytes(data[:7]))  # part of the line reaches the file...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(runlog.os, "write", short_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        logger.log(2, {"loss": 0.25})
    monkeypatch.setattr(runlog.os, "write", real_write)
    assert path.read_text().endswith("\n") and read_run_log(path) == [{"step": 1, "loss": 0.5}]
    logger.log(2, {"loss": 0.25})  # the logger goes on; the refused step can be logged again
    assert read_run_log(path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]


def test_progress_names_a_bad_argument():
    with pytest.raises(ValueError, match="iterable must be iterable, got int"):
        progress(5)
    with pytest.raises(ValueError, match="total must be >= 0"):
        progress([], total=-1)
    with pytest.raises(ValueError, match="total must be an integer"):
        progress([], total="3")
    with pytest.raises(ValueError, match="enabled must be True, False or None"):
        progress([], enabled="yes")
    with pytest.raises(ValueError, match="desc must be a string"):
        progress([], desc=3)


# ----------------------------------------------------------------------------- the bridge reader
def _estimate(probs: list[float], n: int = 8) -> dict:
    counts = [p * n for p in probs]
    return {
        "probs": probs,
        "lower": [max(0.0, p - 0.1) for p in probs],
        "upper": [min(1.0, p + 0.1) for p in probs],
        "counts": counts,
        "n": n,
        "level": 0.95,
        "class_names": ["apple", "banana", "other"],
    }


def bridge_dir(path: Path) -> Path:
    """A run directory with a hand-written ``bridge.json`` that agrees with its ``run.jsonl``."""
    path.mkdir()
    good_log(path / LOG_FILE)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "algorithm": "online_ipo",
        "hyper": {"tau": 0.25},
        "class_names": ["apple", "banana", "other"],
        "P_ext": [[0.5, 0.7, 0.5], [0.3, 0.5, 0.5], [0.5, 0.5, 0.5]],
        "mu_class": _estimate(DIST[0]),
        "prediction": [0.5, 0.25, 0.25],
        "toy_trajectory": [DIST[0], DIST[1]],
        "steps": [0, 2, 4],
        "measured": DIST,
        "final": _estimate(DIST[2]),
        "tv": 0.125,
        "wall_s": 1.5,
    }
    (path / BRIDGE_FILE).write_text(json.dumps(record))
    return path


def test_the_bridge_reader_names_a_malformed_run_log_line(tmp_path):
    run = bridge_dir(tmp_path / "ok")
    assert load_bridge_run(run).steps == (0, 2, 4)  # the hand-written run reads back

    for case in ("no kind", "step as a string", "a JSON list", "metric object"):
        run = bridge_dir(tmp_path / case.replace(" ", "_"))
        _insert_bad_line(run / LOG_FILE, BAD_LINES[case][0])
        with pytest.raises(
            RunLogError, match=re.escape(f"{str(run / LOG_FILE)!r} line 3 ") + BAD_LINES[case][1]
        ):
            load_bridge_run(run)

    run = bridge_dir(tmp_path / "short")
    lines = (run / LOG_FILE).read_text().splitlines()
    record = json.loads(lines[2])
    record["class_distribution"] = [0.5, 0.5]
    lines[2] = json.dumps(record)
    (run / LOG_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ValueError,
        match=r"run\.jsonl .* the 'class_distribution' of step 2 must be a list of 3 "
        r"numbers",
    ):
        load_bridge_run(run)

    run = bridge_dir(tmp_path / "cut")  # a cut bridge.json is named as such
    (run / BRIDGE_FILE).write_bytes((run / BRIDGE_FILE).read_bytes()[:50])
    with pytest.raises(ValueError, match=r"bridge\.json .* is not JSON \(truncated or damaged\?\)"):
        load_bridge_run(run)
    run = bridge_dir(tmp_path / "wall")
    record = json.loads((run / BRIDGE_FILE).read_text())
    record["wall_s"] = "1.5 s"
    (run / BRIDGE_FILE).write_text(json.dumps(record))
    with pytest.raises(
        ValueError, match=r"bridge\.json .*: 'wall_s' must be a finite number, got '1\.5 s'"
    ):
        load_bridge_run(run)


def test_readers_emit_no_warning_on_a_good_log(tmp_path):
    path = tmp_path / "run.jsonl"
    good_log(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_run_log(path)) == 3 and read_run_header(path) == CONFIG
        assert list(run_log_frame(path).index) == [0, 2, 4]
