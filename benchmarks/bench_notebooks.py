"""Time every notebook, lecture and lab source notebook top to bottom, in smoke mode (CI) and in full mode.

Each notebook runs in a fresh kernel (nbclient, the engine nbmake uses), once with
``PREFOPT_SMOKE=1`` and once without; the wall time includes the kernel start. The table feeds the
README's "Notebooks" section (runtime column) and checks the issue's budget: all notebooks together
under 10 minutes on 2 cores in CI.

Kernels run with ``--threads`` torch intra-op threads (``OMP_NUM_THREADS`` in the kernel's
environment): 1 by default, what ``make lab`` and ``make test`` give them; ``--threads 0`` leaves
torch's own default (one per core), to measure what a student got before.

Usage: ``python benchmarks/bench_notebooks.py [--smoke-only] [--threads N] [--only NAME ...]
[--out benchmarks/results_notebooks.md]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def notebooks() -> list[Path]:
    """The notebooks ``make test`` executes: notebooks/*.ipynb, gpt2/, lectures/ and the lab sources."""
    found = [
        p
        for pattern in ("notebooks/*.ipynb", "notebooks/gpt2/*.ipynb", "notebooks/lectures/*.ipynb")
        for p in sorted(ROOT.glob(pattern))
    ]
    found += sorted(ROOT.glob("course/source/*/*.ipynb"))  # the labs, with their solutions
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


def run(path: Path, smoke: bool) -> float:
    """Wall seconds to execute ``path`` from a clean kernel (outputs discarded)."""
    nb = nbformat.read(path, as_version=4)
    previous = os.environ.get("PREFOPT_SMOKE")
    os.environ["PREFOPT_SMOKE"] = "1" if smoke else "0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        start = time.perf_counter()
        NotebookClient(
            nb,
            timeout=1800,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
        return time.perf_counter() - start
    finally:
        if previous is None:
            os.environ.pop("PREFOPT_SMOKE", None)
        else:
            os.environ["PREFOPT_SMOKE"] = previous


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-only", action="store_true", help="skip the full-mode runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_notebooks.md")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in each kernel (OMP_NUM_THREADS; 0: torch's default)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        help="time only notebooks whose path contains this text (repeatable)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    else:
        os.environ.pop("OMP_NUM_THREADS", None)
    threads = (
        f"{args.threads} thread{'s' if args.threads != 1 else ''}"
        if args.threads
        else "torch's default threads"
    )
    rows, smoke_total, full_total = [], 0.0, 0.0
    chosen = [
        p for p in notebooks() if args.only is None or any(o in p.as_posix() for o in args.only)
    ]
    for path in chosen:
        smoke = run(path, smoke=True)
        full = None if args.smoke_only else run(path, smoke=False)
        smoke_total += smoke
        full_total += full or 0.0
        rel = path.relative_to(ROOT).as_posix()
        rows.append(f"| `{rel}` | {smoke:.1f} | {'-' if full is None else f'{full:.1f}'} |")
        print(rows[-1], flush=True)
    lines = [
        "# Notebook runtimes",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, {date.today().isoformat()}, {threads} in each kernel. Each notebook "
        "from a fresh kernel (nbclient), kernel start included; smoke mode is what CI runs "
        "(`PREFOPT_SMOKE=1`).",
        "",
        "| notebook | smoke (s) | full (s) |",
        "|---|---|---|",
        *rows,
        f"| **total** | **{smoke_total:.0f}** | **{'-' if args.smoke_only else f'{full_total:.0f}'}** |",
        "",
        f"Budget (issue 4): all notebooks together under 600 s in CI; smoke total {smoke_total:.0f} s.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
