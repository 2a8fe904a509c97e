"""The command line refuses a value it cannot use with one line on stderr and exit status 2, before
any work starts (README, "Reliability rules"), and sets torch's thread count as documented.

The checks run through ``main`` in-process and once through a real subprocess, the way a user
meets them (``python -m prefopt_toy ...``): no traceback, one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefopt_toy.__main__ import main
from prefopt_toy._paths import check_out_folder
from prefopt_toy.lm.bridge.demo import run_bridge_demo
from prefopt_toy.plots.figures import write_figures


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("keep me\n", encoding="utf-8")
    return path


def _bad_outs(a_file: Path) -> dict[str, tuple[Path, str]]:
    return {
        "existing file": (a_file, "exists and is not a folder"),
        "under a file": (a_file / "figures", "is a file, not a folder"),
        "deep under a file": (a_file / "a" / "b", "is a file, not a folder"),
    }


@pytest.mark.parametrize("command", ["demo", "figures", "bridge"])
@pytest.mark.parametrize("case", ["existing file", "under a file", "deep under a file"])
def test_bad_out_is_one_line_and_status_2(command, case, a_file, capsys):
    out, fragment = _bad_outs(a_file)[case]
    assert main([command, "--quick", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"python -m prefopt_toy {command}: error: --out {out}: ")
    assert fragment in captured.err
    assert a_file.read_text(encoding="utf-8") == "keep me\n"  # the user's file is untouched
    assert not (a_file.parent / "reference_solutions.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["figures", "--out", str(locked / "new")]) == 2
    assert "not writable" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["figures", "--threads", "0"], "--threads must be >= 1, got 0"),
        (["table", "--threads", "-2"], "--threads must be >= 1, got -2"),
        (["bridge", "--steps", "-1"], "--steps must be >= 1, got -1"),
    ],
)
def test_bad_numbers_are_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_subprocess_prints_no_traceback(a_file):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "prefopt_toy", "figures", "--out", str(a_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        f"python -m prefopt_toy figures: error: --out {a_file}: exists and is not a folder"
    ]


def test_library_entry_points_check_their_folder_first(a_file):
    with pytest.raises(ValueError, match=r"out_dir .*exists and is not a folder"):
        write_figures(a_file, only=["reference_solutions"], quick=True)
    with pytest.raises(ValueError, match=r"out_dir .*is a file, not a folder"):
        run_bridge_demo(a_file / "sub", quick=True)
    with pytest.raises(ValueError, match=r"out_dir must be a folder path"):
        check_out_folder(3, "out_dir")


def test_creatable_folder_is_accepted(tmp_path):
    new = tmp_path / "a" / "b"
    assert check_out_folder(new, "--out") == new
    assert not new.exists()  # checking creates nothing


@pytest.mark.parametrize(
    "threads, env, expected",
    [
        (None, None, None),  # the default: torch's own setting stands
        (2, None, 2),  # --threads wins
        (1, "3", 1),  # also over OMP_NUM_THREADS
    ],
)
def test_threads(threads, env, expected, monkeypatch, capsys):
    before = torch.get_num_threads()
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    torch.set_num_threads(5)
    try:
        argv = ["table", "--game", "transitive"] + (
            [] if threads is None else ["--threads", str(threads)]
        )
        assert main(argv) == 0
        assert torch.get_num_threads() == (5 if expected is None else expected)
    finally:
        torch.set_num_threads(before)
    assert "== transitive" in capsys.readouterr().out
