"""Benchmark the exact learning dynamics (issue 3 targets), all ratios measured in one run.

1. A widget redraw: K = 3, every registered algorithm, 1000 exact steps each (target < 100 ms).
2. 10,000 games of K = 3 x 1000 Nash-MD steps in one batched call (target < 2 s).
3. The exact engine's cost per step against a plain per-pair Python loop computing the same
   expected gradient, and against the closed forms (the fixed point computed directly).
4. How the cost per step grows with K (K = 3 ... 1000).

Usage: ``python benchmarks/bench_dynamics.py [--quick] [--out benchmarks/results_dynamics.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch

import prefopt_toy as pt
from prefopt_toy.dynamics import ALGORITHMS, CORE, nash_md, online_ipo, redraw
from prefopt_toy.dynamics.pairs import expected_loss_and_gradient


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {datetime.date.today().isoformat()}"
    )


def python_loop_gradient(
    P: torch.Tensor, mu: torch.Tensor, pi: torch.Tensor, tau: float
) -> list[float]:
    """The online-IPO expected gradient by a plain double loop over ordered pairs (the peer)."""
    k = len(mu)
    log_ratio = [math.log(pi[i]) - math.log(mu[i]) for i in range(k)]
    grad = [0.0] * k
    target = 1.0 / (2.0 * tau)
    for y in range(k):
        for z in range(k):
            w = 2.0 * pi[y] * pi[z] * P[y][z]
            slope = 2.0 * (log_ratio[y] - log_ratio[z] - target)
            grad[y] += w * slope
            grad[z] -= w * slope
    return grad


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_dynamics.md")))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    reps = 2 if args.quick else 5
    lines = [
        "# Exact dynamics benchmarks",
        "",
        f"Machine: {machine()}.",
        "",
        "Medians of several runs after a warm-up; every ratio is measured in this one run.",
        "",
    ]

    # 1. Widget redraw.
    P3, mu3 = pt.three_voter_types(0.1), torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    per_algo = {
        name: timed(lambda n=name: ALGORITHMS[n](P3, mu3, steps=1000, tau=0.1), reps)
        for name in ALGORITHMS
    }
    core_total = sum(per_algo[n] for n in CORE)
    all_total = sum(per_algo.values())
    lines += [
        "## 1. Widget redraw (K = 3, 1000 exact steps per algorithm)",
        "",
        "| algorithm | ms | us / step |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {1e3 * t:.1f} | {1e3 * t:.0f} |" for n, t in per_algo.items()]
    fused = timed(lambda: redraw(P3, mu3, tau=0.1, steps=1000), reps)
    lines += [
        "",
        f"One by one: {1e3 * core_total:.0f} ms for the 9 core algorithms, {1e3 * all_total:.0f} ms "
        f"for all {len(per_algo)} registered.",
        f"`dynamics.redraw` (the 9 core algorithms as rows of one batch, same trajectories): "
        f"**{1e3 * fused:.0f} ms** ({core_total / fused:.1f}x faster; target: < 100 ms).",
        "",
    ]

    # 2. 10,000 games x 1000 Nash-MD steps.
    n_games = 2000 if args.quick else 10_000
    games = torch.stack([pt.random_game(3, seed=i) for i in range(n_games)])
    mu_u = torch.full((3,), 1 / 3, dtype=torch.float64)
    t_batch = timed(lambda: nash_md(games, mu_u, tau=0.1, steps=1000), 1 if args.quick else 3)
    lines += [
        "## 2. Batched Nash-MD",
        "",
        f"{n_games} games of K = 3 x 1000 steps in one call: **{t_batch:.2f} s** (target: < 2 s for 10,000).",
        "",
    ]

    # 3. Engine per step against a Python loop and against the closed form.
    rows = [
        "## 3. Cost per step: engine, per-pair Python loop, closed form",
        "",
        "| K | engine (us / step) | Python loop (us / step) | loop / engine | closed form regularized_nash (ms) | steps to 1e-8 | dynamics to 1e-8 / closed form |",
        "|---|---|---|---|---|---|---|",
    ]
    sizes = (3, 10, 30) if args.quick else (3, 10, 30, 100)
    for k in sizes:
        P = pt.random_game(k, seed=k)
        mu = torch.full((k,), 1 / k, dtype=torch.float64)
        log_pi, log_mu = mu.log()[None], mu.log()[None]
        loss = partial(pt.ipo_loss, tau=0.1)
        engine = timed(
            lambda log_pi=log_pi, log_mu=log_mu, P=P, loss=loss: expected_loss_and_gradient(
                log_pi, log_mu, log_pi, P[None], loss
            ),
            50 * reps,
        )
        Pl, mul, pil = P.tolist(), mu.tolist(), mu.tolist()
        loop = timed(
            lambda Pl=Pl, mul=mul, pil=pil: python_loop_gradient(Pl, mul, pil, 0.1), 5 * reps
        )
        closed = timed(lambda P=P, mu=mu: pt.regularized_nash(P, mu, 0.1), reps)
        traj = online_ipo(P, mu, steps=20000, tau=0.1)
        dist = (traj.policies - pt.regularized_nash(P, mu, 0.1)).abs().amax(-1)
        reached = int((dist > 1e-8).nonzero().max()) + 1 if bool((dist > 1e-8).any()) else 0
        per_step = timed(lambda P=P, mu=mu: online_ipo(P, mu, steps=200, tau=0.1), reps) / 200
        rows.append(
            f"| {k} | {1e6 * engine:.0f} | {1e6 * loop:.0f} | {loop / engine:.1f} | {1e3 * closed:.2f} | "
            f"{reached} | {reached * per_step / closed:.0f} |"
        )
    lines += rows + [""]

    # 4. Growth with K of one full online-IPO step (engine + loop bookkeeping).
    lines += [
        "## 4. Growth with K (online IPO, one exact step, B = 1)",
        "",
        "| K | us / step | pairs K^2 |",
        "|---|---|---|",
    ]
    for k in (3, 10, 100) if args.quick else (3, 10, 30, 100, 300, 1000):
        P = pt.random_game(k, seed=k)
        mu = torch.full((k,), 1 / k, dtype=torch.float64)
        steps = 20 if k >= 300 else 100
        t = (
            timed(lambda P=P, mu=mu, steps=steps: online_ipo(P, mu, steps=steps, tau=0.1), reps)
            / steps
        )
        lines.append(f"| {k} | {1e6 * t:.0f} | {k * k} |")
    lines += [
        "",
        "The engine enumerates all K^2 ordered pairs with (B, K, K) tensor operations, so a step costs "
        "O(K^2) arithmetic plus a fixed per-operation overhead (~3 us per torch call on tiny tensors), "
        "which dominates below K ~ 30.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
