"""Run logs: JSON lines read back exactly, resumable without duplicated steps, strict JSON only.

Expected records are written out by hand here; the raw file is also parsed line by line with
``json.loads`` set to reject NaN/Infinity tokens, independently of the module's reader.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch

from prefopt_toy.lm.train.runlog import (
    RunLogger,
    progress,
    read_run_header,
    read_run_log,
    run_log_frame,
)

CONFIG = {"algorithm": "online_ipo", "tau": 0.1, "model": "tiny", "classes": ["a", "b", "c"]}


def strict_lines(path) -> list[dict]:
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def metrics(step: int) -> dict:
    return {"loss": 1.0 / step, "rewards/margins": step * 0.5}


def test_round_trip(tmp_path):
    path = tmp_path / "logs" / "run.jsonl"  # the directory is created
    logger = RunLogger(path, config=CONFIG)
    logger.log(1, {
        "loss": torch.tensor(0.75, dtype=torch.float32),
        "rewards/chosen": torch.tensor(-0.5, dtype=torch.bfloat16),
        "rewards/margins": np.float64(0.125),
        "rewards/accuracies": 1,
        "kl": float("nan"),
        "win_rate": float("inf"),
        "class_distribution": torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64),
        "phase": "warmup",
    })  # fmt: skip
    logger.log(
        3, {"loss": 0.5, "class_distribution": [0.5, float("nan"), np.float32(0.5)], "kl": None}
    )
    expected = [
        {"step": 1, "loss": 0.75, "rewards/chosen": -0.5, "rewards/margins": 0.125, "rewards/accuracies": 1,
         "kl": None, "win_rate": None, "class_distribution": [0.25, 0.5, 0.25], "phase": "warmup"},
        {"step": 3, "loss": 0.5, "class_distribution": [0.5, None, 0.5], "kl": None},
    ]  # fmt: skip
    assert read_run_log(path) == expected
    raw = strict_lines(path)
    assert raw[0] == {
        "kind": "header",
        "format": "prefopt_toy.runlog",
        "version": 1,
        "config": CONFIG,
    }
    assert [r["kind"] for r in raw] == ["header", "step", "step"]
    assert type(raw[1]["loss"]) is float and type(raw[1]["rewards/accuracies"]) is int
    assert read_run_header(path) == CONFIG


def test_float32_values_are_written_exactly(tmp_path):
    path = tmp_path / "run.jsonl"
    value = torch.tensor(0.1, dtype=torch.float32)  # not 0.1 in binary
    RunLogger(path).log(0, {"loss": value})
    assert read_run_log(path)[0]["loss"] == float(np.float32(0.1))


def test_frame(tmp_path):
    path = tmp_path / "run.jsonl"
    logger = RunLogger(path, config=CONFIG)
    logger.log(2, {"loss": 0.5, "kl": float("nan"), "class_distribution": [1.0, 0.0]})
    logger.log(4, {"loss": 0.25, "kl": 0.125, "class_distribution": [0.5, 0.5]})
    frame = run_log_frame(path)
    assert list(frame.index) == [2, 4] and frame.index.name == "step"
    assert frame["loss"].tolist() == [0.5, 0.25]
    assert math.isnan(frame["kl"].iloc[0]) and frame["kl"].iloc[1] == 0.125
    assert frame["class_distribution"].tolist() == [[1.0, 0.0], [0.5, 0.5]]
    empty = tmp_path / "empty.jsonl"
    RunLogger(empty)
    assert run_log_frame(empty).empty


def test_resume_truncates_later_steps_and_continues_the_same_file(tmp_path):
    path = tmp_path / "run.jsonl"
    logger = RunLogger(path, config=CONFIG)
    for step in range(1, 7):  # the run got to step 6, its last checkpoint was at step 4
        logger.log(step, metrics(step))
    with open(path, "a") as f:
        f.write('{"kind": "step", "step": 7, "lo')  # killed in the middle of a write

    resumed = RunLogger(path, config={**CONFIG, "lr": 1e-5}, resume_from_step=4)
    with pytest.raises(ValueError, match="step must increase: got 4 after 4"):
        resumed.log(4, metrics(4))
    for step in range(5, 8):
        resumed.log(step, metrics(step))
    assert read_run_log(path) == [{"step": s, **metrics(s)} for s in range(1, 8)]
    raw = strict_lines(path)  # the partial line is gone: every line parses
    assert [r["kind"] for r in raw] == ["header"] + ["step"] * 4 + ["resume"] + ["step"] * 3
    assert raw[5] == {"kind": "resume", "step": 4, "config": {**CONFIG, "lr": 1e-5}}
    assert read_run_header(path) == CONFIG  # the original header stays first

    # a second restart from an earlier checkpoint drops the later resume record too
    RunLogger(path, resume_from_step=2)
    assert [r.get("step") for r in strict_lines(path)] == [None, 1, 2, 2]
    assert read_run_log(path) == [{"step": s, **metrics(s)} for s in (1, 2)]


def test_resume_of_a_missing_file_starts_one(tmp_path):
    path = tmp_path / "run.jsonl"
    RunLogger(path, config=CONFIG, resume_from_step=10).log(11, {"loss": 0.5})
    assert read_run_header(path) == CONFIG
    assert read_run_log(path) == [{"step": 11, "loss": 0.5}]


def test_reader_ignores_a_cut_last_line(tmp_path):
    path = tmp_path / "run.jsonl"
    RunLogger(path).log(1, {"loss": 0.5})
    with open(path, "a") as f:
        f.write('{"kind": "st')
    assert read_run_log(path) == [{"step": 1, "loss": 0.5}]


def test_an_existing_log_needs_resume_or_overwrite(tmp_path):
    path = tmp_path / "run.jsonl"
    RunLogger(path, config=CONFIG).log(1, {"loss": 0.5})
    with pytest.raises(ValueError, match="already holds a run log"):
        RunLogger(path, config=CONFIG)
    assert read_run_log(path) == [{"step": 1, "loss": 0.5}]  # untouched by the refusal
    RunLogger(path, config={"fresh": True}, overwrite=True)
    assert read_run_log(path) == [] and read_run_header(path) == {"fresh": True}


def test_bad_input(tmp_path):
    path = tmp_path / "run.jsonl"
    logger = RunLogger(path)
    logger.log(2, {"loss": 0.5})
    with pytest.raises(ValueError, match="step must increase: got 1 after 2"):
        logger.log(1, {"loss": 0.5})
    with pytest.raises(ValueError, match="step must be >= 0"):
        RunLogger(tmp_path / "other.jsonl").log(-1, {})
    with pytest.raises(ValueError, match="reserved key 'step'"):
        logger.log(3, {"step": 3})
    with pytest.raises(ValueError, match="metrics keys must be non-empty strings"):
        logger.log(3, {1: 0.5})
    with pytest.raises(ValueError, match=r"metrics\['x'\] must be a number"):
        logger.log(3, {"x": {"nested": 1}})
    with pytest.raises(ValueError, match=r"metrics\['x'\]\[1\] must be a number"):
        logger.log(3, {"x": [1.0, object()]})
    with pytest.raises(ValueError, match="metrics must be a dict"):
        logger.log(3, [("loss", 0.5)])
    assert read_run_log(path) == [{"step": 2, "loss": 0.5}]  # refused lines were not written
    logger.log(3, {"loss": 0.25})  # and the logger still works

    with pytest.raises(ValueError, match="config must be JSON-serialisable"):
        RunLogger(tmp_path / "c.jsonl", config={"tau": float("nan")})
    with pytest.raises(ValueError, match="config must be a dict"):
        RunLogger(tmp_path / "c.jsonl", config=[1, 2])
    with pytest.raises(ValueError, match="resume_from_step must be >= 0"):
        RunLogger(path, resume_from_step=-1)
    with pytest.raises(ValueError, match="overwrite and resume_from_step"):
        RunLogger(path, resume_from_step=1, overwrite=True)
    with pytest.raises(ValueError, match="does not exist"):
        read_run_log(tmp_path / "missing.jsonl")

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"kind": "header", "config": {}}\nnot json\n{"kind": "step", "step": 1}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_run_log(broken)
    headless = tmp_path / "headless.jsonl"
    headless.write_text('{"kind": "step", "step": 1}\n')
    with pytest.raises(ValueError, match="not a run log"):
        RunLogger(headless, resume_from_step=0)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_quiet_unless_a_terminal_watches(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert list(progress(range(3), desc="train")) == [0, 1, 2]
    assert "train" in terminal.getvalue() and "3/3" in terminal.getvalue()

    monkeypatch.setenv("CI", "true")
    quiet = _Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    assert list(progress(range(3))) == [0, 1, 2]
    assert list(progress(iter("ab"), enabled=False)) == ["a", "b"]
    assert quiet.getvalue() == ""
    forced = _Terminal()
    monkeypatch.setattr("sys.stderr", forced)
    assert list(progress(range(2), enabled=True, total=2)) == [0, 1]
    assert "2/2" in forced.getvalue()
