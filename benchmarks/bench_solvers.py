"""Time the exact solvers against their peers, in one run, on the same random games.

- ``regularized_nash`` (certified Newton) for K in {3, 10, 100, 1000}, tau in {1e-3, 1e-2, 1, 1e3},
  with ``mu`` uniform and a ``mu`` with tiny entries (1e-12): median time, the certified residual
  and the Newton iterations from its report, and an independent residual recomputed here.
- ``nash_equilibrium`` (HiGHS LP with tight tolerances, then a polish on the support) against
  nashpy's ``Game(P - 0.5).linear_program()`` (two LPs, one per player) and scipy's
  ``linprog(method="highs")`` called directly on the same maximin LP with default options; for each,
  the median time, the ratio ours / peer and the exploitability of the returned policy.

Games come from ``prefopt_toy.random_game(K, seed)``, with the first seed >= K whose game has a
majority cycle and no Condorcet winner (generic, non-transitive). Every solver is
warmed up once on a small game before anything is timed (the first LAPACK / HiGHS call pays for
loading and thread start-up). Times are wall clock (``time.perf_counter``), median of repeats; the LP solvers are timed round-robin (each
repeat calls every solver once), so a change of load during a run does not bias their ratios.

Usage::

    python benchmarks/bench_solvers.py            # full run, writes benchmarks/results_solvers.md
    python benchmarks/bench_solvers.py --quick    # K <= 100, few repeats, prints only
    python benchmarks/bench_solvers.py --out PATH # write the markdown table to PATH

Targets: regularised Nash for K = 1000 to residual 1e-12 well under a second on 2 CPU
cores; the unregularised Nash no slower than nashpy's linear program on the same games.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import torch
from scipy.optimize import linprog

import prefopt_toy as pt

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results_solvers.md"

KS_FULL = (3, 10, 100, 1000)
KS_QUICK = (3, 10, 100)
TAUS = (1e-3, 1e-2, 1.0, 1e3)
TINY = 1e-12
TARGET_SECONDS = 1.0  # "well under a second" for regularized_nash at K = 1000


# --------------------------------------------------------------------------- timing helpers


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls (seconds) and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _fmt_sci(x: float) -> str:
    return "0" if x == 0 else f"{x:.1e}"


# ---------------------------------------------------------------------------- inputs


def game_seed(k: int) -> int:
    """The first seed from K whose game is non-transitive (a majority cycle, no Condorcet winner).

    For K >= 10 that is almost surely K itself; for K = 3 only a quarter of the games cycle.
    """
    seed = k
    while True:
        P = pt.random_game(k, seed=seed)
        if not pt.is_transitive(P) and pt.condorcet_winner(P) is None:
            return seed
        seed += 1


def game(k: int) -> torch.Tensor:
    """The benchmark game for K actions: generic, non-transitive, reproducible."""
    return pt.random_game(k, seed=game_seed(k))


def reference_policies(k: int) -> dict[str, torch.Tensor]:
    """``uniform`` and ``tiny``: every other action (from action 0) gets mass 1e-12 before
    normalising, so the solver must resolve probabilities twelve orders below the rest."""
    uniform = torch.full((k,), 1.0 / k, dtype=torch.float64)
    tiny = torch.ones(k, dtype=torch.float64)
    tiny[::2] = TINY
    return {"uniform": uniform, "tiny 1e-12": tiny / tiny.sum()}


def fixed_point_residual(P: torch.Tensor, mu: torch.Tensor, tau: float, pi: torch.Tensor) -> float:
    """Independent check of the certificate: ``max_y |pi_y - T(pi)_y|`` with
    ``T(pi) = mu * exp(P pi / tau) / Z`` computed here in log space (not the solver's code)."""
    z = mu.log() + (P @ pi) / tau
    return float((pi - torch.softmax(z, 0)).abs().max())


# ------------------------------------------------------------------------- LP solvers


def maximin_lp(P: np.ndarray) -> dict[str, Any]:
    """The maximin LP of the symmetric game: max v s.t. (P^T pi)_y >= v, sum pi = 1, pi >= 0."""
    k = P.shape[0]
    c = np.zeros(k + 1)
    c[-1] = -1.0
    return {
        "c": c,
        "A_ub": np.hstack([-P.T, np.ones((k, 1))]),
        "b_ub": np.zeros(k),
        "A_eq": np.hstack([np.ones((1, k)), np.zeros((1, 1))]),
        "b_eq": [1.0],
        "bounds": [(0.0, None)] * k + [(None, None)],
    }


def scipy_highs(P: np.ndarray, method: str = "highs") -> np.ndarray:
    """scipy ``linprog(method=method)`` with default options, no polish."""
    result = linprog(method=method, **maximin_lp(P))
    if result.status != 0:
        raise RuntimeError(result.message)
    return result.x[:-1]


def scipy_highs_ipm(P: np.ndarray) -> np.ndarray:
    """HiGHS's interior-point method (with its default crossover) instead of the dual simplex
    that ``method="highs"`` picks for these dense LPs; default options, no polish."""
    return scipy_highs(P, "highs-ipm")


def nashpy_lp(P: np.ndarray) -> np.ndarray:
    """nashpy's linear program on the zero-sum game ``A = P - 1/2`` (solves two LPs); row strategy."""
    import nashpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nashpy / scipy deprecation chatter is not the benchmark
        row, _column = nashpy.Game(P - 0.5).linear_program()
    return np.asarray(row, dtype=np.float64).ravel()


def ours_lp(P: np.ndarray) -> np.ndarray:
    return pt.nash_equilibrium(P).numpy()


def _our_lp_method() -> str:
    """How ``nash_equilibrium`` picks its HiGHS method, for the report (reads a private constant;
    falls back to a generic phrase if it moves)."""
    threshold = getattr(importlib.import_module("prefopt_toy.solutions.nash"), "_IPM_FROM", None)
    if isinstance(threshold, int):
        return f"dual simplex below K = {threshold}, interior point with crossover from K = {threshold}"
    return "the HiGHS method nash_equilibrium picks for K"


def lp_exploitability(P: np.ndarray, pi: np.ndarray) -> float:
    """``max_y (P pi)_y - 1/2`` after clipping negatives and renormalising (a policy, as a user
    would use it). Signed: a tiny negative value is round-off below the game value 1/2."""
    p = np.clip(np.asarray(pi, dtype=np.float64), 0.0, None)
    p = p / p.sum()
    return float((P @ p).max() - 0.5)


LP_SOLVERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ours": ours_lp,
    "nashpy": nashpy_lp,
    "scipy": scipy_highs,
    "scipy-ipm": scipy_highs_ipm,
}


# ---------------------------------------------------------------------------- benchmark


@dataclass
class RegRow:
    k: int
    mu: str
    tau: float
    seconds: float
    residual: float
    independent: float
    iterations: int
    stages: int
    method: str
    error: str = ""


@dataclass
class LPRow:
    k: int
    seconds: dict[str, float] = field(default_factory=dict)
    exploitability: dict[str, float] = field(default_factory=dict)
    support: int = 0


def warm_up() -> None:
    """One untimed call of every solver on a small game (LAPACK, OpenMP and HiGHS start-up)."""
    P = game(10)
    for mu in reference_policies(10).values():
        pt.regularized_nash(P, mu, 0.1)
    for solver in LP_SOLVERS.values():
        solver(P.numpy())


def bench_regularized(ks: tuple[int, ...], repeats: dict[int, int]) -> list[RegRow]:
    rows = []
    for k in ks:
        P = game(k)
        for mu_name, mu in reference_policies(k).items():
            for tau in TAUS:
                try:
                    seconds, (pi, report) = _median_time(
                        partial(pt.regularized_nash, P, mu, tau, return_report=True), repeats[k]
                    )
                except RuntimeError as err:  # not certified: record it, do not hide it
                    rows.append(
                        RegRow(
                            k,
                            mu_name,
                            tau,
                            float("nan"),
                            float("nan"),
                            float("nan"),
                            0,
                            0,
                            "-",
                            error=str(err),
                        )
                    )
                    continue
                rows.append(
                    RegRow(
                        k,
                        mu_name,
                        tau,
                        seconds,
                        report.residual,
                        fixed_point_residual(P, mu, tau, pi),
                        report.iterations,
                        report.stages,
                        report.method,
                    )
                )
                print(
                    f"  regularized_nash K={k:5d} mu={mu_name:11s} tau={tau:g}: "
                    f"{_fmt_time(seconds)}, residual {report.residual:.1e}, "
                    f"{report.iterations} Newton iterations",
                    flush=True,
                )
    return rows


def bench_lp(ks: tuple[int, ...], repeats: dict[int, int]) -> list[LPRow]:
    """Round-robin: each repeat calls every solver once, so a change of machine load during the
    (long, K = 1000) run hits all solvers alike instead of biasing the ratios."""
    rows = []
    for k in ks:
        P = game(k).numpy()
        row = LPRow(k)
        times: dict[str, list[float]] = {name: [] for name in LP_SOLVERS}
        for _ in range(repeats[k]):
            for name, solver in LP_SOLVERS.items():
                seconds, pi = _median_time(partial(solver, P), 1)
                times[name].append(seconds)
                row.exploitability[name] = lp_exploitability(P, pi)
                if name == "ours":
                    row.support = int((pi > 1e-9).sum())
        for name in LP_SOLVERS:
            row.seconds[name] = statistics.median(times[name])
            print(
                f"  LP K={k:5d} {name:9s}: {_fmt_time(row.seconds[name])}, exploitability "
                f"{row.exploitability[name]:.1e}",
                flush=True,
            )
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------- report


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:
        return "not installed"


def machine(load_start: tuple[float, ...], load_end: tuple[float, ...]) -> list[str]:
    def load(values: tuple[float, ...]) -> str:
        return " / ".join(f"{x:.2f}" for x in values)

    return [
        f"- Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        (
            f"- CPU: {_cpu_model()}, {os.cpu_count()} cores visible, torch intra-op threads "
            f"{torch.get_num_threads()}"
        ),
        (
            f"- Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
            f"scipy {scipy.__version__}, nashpy {_version('nashpy')}, prefopt_toy {pt.__version__}"
        ),
        f"- Load average (1 / 5 / 15 min) at start: {load(load_start)}; at end: {load(load_end)}",
        (
            "- **A 2-core shared machine**: other developers' test suites may run at the same time, so "
            "absolute times are noisy (up to several times slower under load). Ratios are measured in "
            "the same run, on the same game, one solver right after the other, and are the more "
            "reliable numbers."
        ),
    ]


def render(
    reg: list[RegRow],
    lp: list[LPRow],
    repeats: dict[str, dict[int, int]],
    header: list[str],
    quick: bool,
) -> str:
    out = [
        "# Solver benchmarks" + (" (quick run)" if quick else ""),
        "",
        "Generated by `python benchmarks/bench_solvers.py"
        + (" --quick" if quick else "")
        + "` (`make bench`). Do not edit by hand.",
        "",
        "## Machine",
        "",
        *header,
        "",
        "Games: `prefopt_toy.random_game(K, seed)` (upper triangle i.i.d. Uniform(0, 1)), with the "
        "first seed >= K whose game is non-transitive (a majority cycle, no Condorcet winner): "
        + ", ".join(f"seed {game_seed(k)} for K={k}" for k in repeats["reg"])
        + ". Times are medians of "
        + ", ".join(f"{r} (K={k})" for k, r in repeats["reg"].items())
        + " calls for `regularized_nash` and of "
        + ", ".join(f"{r} (K={k})" for k, r in repeats["lp"].items())
        + " calls for each LP solver (round-robin: each repeat calls every solver once), after one "
        "warm-up call of every solver.",
        "",
    ]

    # -------------------------------------------------------------------- targets
    big = [r for r in reg if r.k == max(r.k for r in reg)]
    out += ["## Targets", ""]
    if big:
        k_big = big[0].k
        worst = max(big, key=lambda r: r.seconds if not r.error else float("inf"))
        under = [
            r for r in big if not r.error and r.seconds < TARGET_SECONDS and r.residual <= 1e-12
        ]
        verdict = "met" if len(under) == len(big) else "not met"
        scope = (
            ""
            if k_big == 1000
            else f" (the target is stated for K = 1000; this run stops at K = {k_big})"
        )
        out.append(
            f"- Regularised Nash, K = {k_big}, residual <= 1e-12 in under {TARGET_SECONDS:g} s: "
            f"**{verdict}**{scope}: {len(under)} of {len(big)} (tau, mu) settings; "
            f"slowest: tau = {worst.tau:g}, mu {worst.mu}, {_fmt_time(worst.seconds)} "
            f"({worst.iterations} Newton iterations)."
        )
    if lp:
        for row in lp:
            ratio = row.seconds["ours"] / row.seconds["nashpy"]
            out.append(
                f"- Unregularised Nash no slower than nashpy's LP, K = {row.k}: ours / nashpy = "
                f"{ratio:.2f} (**{'met' if ratio <= 1.0 else 'not met'}**)."
            )
    out.append("")

    # -------------------------------------------------------------------- regularized
    out += [
        "## `regularized_nash` (certified damped Newton)",
        "",
        (
            "Residual = the report's certified `max_y |pi_y - T(pi)_y|`; independent = the same "
            "quantity recomputed by the benchmark from `mu * exp(P pi / tau)`; iterations = Newton "
            "iterations over all continuation stages (stages > 1: tau-continuation was used)."
        ),
        "",
        "| K | mu | tau | time (median) | residual | independent | Newton iterations | stages |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reg:
        if r.error:
            out.append(f"| {r.k} | {r.mu} | {r.tau:g} | FAILED | - | - | - | {r.error} |")
            continue
        out.append(
            f"| {r.k} | {r.mu} | {r.tau:g} | {_fmt_time(r.seconds)} | {_fmt_sci(r.residual)} | "
            f"{_fmt_sci(r.independent)} | {r.iterations} | {r.stages} |"
        )
    out.append("")

    # -------------------------------------------------------------------- LP
    out += [
        "## `nash_equilibrium` against nashpy and raw scipy",
        "",
        (
            "- ours: `prefopt_toy.nash_equilibrium(P)`: one HiGHS LP with feasibility tolerances "
            f"1e-10 ({_our_lp_method()}), then a least-squares polish of the indifference "
            "equations on the support."
        ),
        (
            "- nashpy: `nashpy.Game(P - 0.5).linear_program()`: two HiGHS LPs (row and column player), "
            "default tolerances; the row strategy is scored."
        ),
        (
            '- scipy: `scipy.optimize.linprog(method="highs")` on the same maximin LP, default '
            "options, no polish."
        ),
        (
            '- scipy-ipm: the same call with `method="highs-ipm"` (HiGHS\'s interior-point method '
            'with crossover; `"highs"` picks the dual simplex for these dense LPs), default '
            "options, no polish: the LP that ours runs for large K, without the tight tolerances "
            "and the polish."
        ),
        "",
        (
            "Ratios are ours / peer (below 1: ours is faster). Exploitability is "
            "`max_y (P pi)_y - 1/2` of the returned policy (negatives clipped, renormalised); exactly 0 "
            "at a Nash equilibrium, so it measures how well each solution is solved."
        ),
        "",
        (
            "| K | support | ours | nashpy | scipy | scipy-ipm | ours / nashpy | ours / scipy | "
            "ours / scipy-ipm |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in lp:
        s = row.seconds
        out.append(
            f"| {row.k} | {row.support} | {_fmt_time(s['ours'])} | {_fmt_time(s['nashpy'])} | "
            f"{_fmt_time(s['scipy'])} | {_fmt_time(s['scipy-ipm'])} | {s['ours'] / s['nashpy']:.2f} | "
            f"{s['ours'] / s['scipy']:.2f} | {s['ours'] / s['scipy-ipm']:.2f} |"
        )
    out += [
        "",
        "Exploitability of each returned policy (the polish is what takes ours to round-off):",
        "",
        "| K | ours | nashpy | scipy | scipy-ipm |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in lp:
        e = row.exploitability
        out.append(
            f"| {row.k} | {_fmt_sci(e['ours'])} | {_fmt_sci(e['nashpy'])} | {_fmt_sci(e['scipy'])} | "
            f"{_fmt_sci(e['scipy-ipm'])} |"
        )
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="K in {3, 10, 100} and few repeats; prints only unless --out is given",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown output (default: {DEFAULT_OUT.relative_to(ROOT)} for a full run)",
    )
    args = parser.parse_args(argv)

    ks = KS_QUICK if args.quick else KS_FULL
    reg_repeats = {k: (3 if args.quick else (5 if k >= 1000 else 9)) for k in ks}
    lp_repeats = {k: (1 if args.quick else (3 if k >= 1000 else 7 if k >= 100 else 9)) for k in ks}
    out_path = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)

    load_start = os.getloadavg()
    print(f"warming up (load average {load_start[0]:.2f}) ...", flush=True)
    warm_up()
    print("regularized_nash:", flush=True)
    reg = bench_regularized(ks, reg_repeats)
    print("unregularised Nash (LP):", flush=True)
    lp = bench_lp(ks, lp_repeats)
    load_end = os.getloadavg()

    text = render(
        reg, lp, {"reg": reg_repeats, "lp": lp_repeats}, machine(load_start, load_end), args.quick
    )
    print()
    print(text)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text)
        print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
