r"""The demo's GPT-2 bridge part: online and offline IPO on a non-transitive 3-class fruit game.

``python -m prefopt_toy bridge`` (and the last part of ``python -m prefopt_toy demo`` /
``make demo``) runs ``bridge.run_bridge`` for each of ``DEMO_RUNS`` (online IPO, then offline IPO)
with the small offline GPT-2 (``models.default_model("small")``, cached under ``$PREFOPT_CACHE`` or
``~/.cache/prefopt_toy``; trained on first use in about three minutes, nothing is downloaded) on the
rock-paper-scissors-like game ``BRIDGE_P`` over apple / banana / cherry at ``BRIDGE_TAU``. For each
run it prints the reference's class distribution ``mu_class`` with its Wilson intervals, the exact
prediction of the toy for that ``mu_class``, the trained policy's class distribution with its
intervals, their total variation with its sampling error (``error.tv_sampling_error``: a
bootstrap interval, and the floor a policy sitting exactly on the prediction would show) and the
wall time; it writes ``bridge_<algorithm>.png`` / ``.pdf`` (``bridge.bridge_figure``) with
``plots.draw.save_figure`` and every number to ``bridge_summary.json``.

These are the converged runs of the README's GPT-2 section (target: total variation at most 0.05).
``quick`` is the CI smoke mode: the tiny model and a few steps, far from converged.

References
----------
Munos et al., arXiv:2312.00886v4 (regularised preference games); Calandriello et al.,
arXiv:2403.08635v1 (online IPO, IPO-MD); Wilson, JASA 22 (1927) 209-212 (intervals).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .class_estimate import ClassEstimate, total_variation
from .error import TVError
from .run import BridgeResult

__all__ = [
    "BRIDGE_P",
    "BRIDGE_TAU",
    "BridgeDemoSettings",
    "DEMO_RUNS",
    "bridge_settings",
    "format_bridge_summary",
    "run_bridge_demo",
]

BRIDGE_P: tuple[tuple[float, ...], ...] = ((0.5, 0.9, 0.1), (0.1, 0.5, 0.9), (0.9, 0.1, 0.5))
"""Apple beats banana, banana beats cherry, cherry beats apple (each with probability 0.9)."""


BRIDGE_TAU = 0.25
"""KL strength (``beta`` for DPO)."""


BRIDGE_MIXTURE = 0.25
"""Weight of the reference in the geometric mixture of ``ipo_md`` and ``nash_md_pg``."""


DPO_OTHER_LOSES = 0.9
"""``other_loses`` for DPO (its Bradley-Terry fit has no finite optimum at 1)."""

# algorithm -> the exact solver behind its prediction (bridge.predict's table)
_SOLVER = {
    "dpo": "rlhf_optimum(P_ext, mu_class, beta, nu=mu_class)",
    "ipo": "ipo_optimum(P_ext, mu_class, tau, nu=mu_class)",
    "online_ipo": "regularized_nash(P_ext, mu_class, tau)",
    "nash_md_pg": "ipo_md_fixed_point(P_ext, mu_class, tau, mixture)",
    "ipo_md": "ipo_md_fixed_point(P_ext, mu_class, tau, mixture)",
}


DEMO_ALGORITHMS: tuple[str, ...] = tuple(_SOLVER)
"""Algorithms the bridge command can run (``run.TRAINABLE``)."""


@dataclass(frozen=True)
class BridgeDemoSettings:
    """Sizes of one demo run (arguments of ``run_bridge``).

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1 (online IPO); Azar et al., arXiv:2310.12036v2 (IPO).
    """

    size: str
    steps: int
    lr: float
    batch_size: int
    n_eval_samples: int
    n_eval: int
    eval_every: int
    max_new_tokens: int
    n_pairs: int
    toy_steps: int


DEMO_RUNS: tuple[str, ...] = ("online_ipo", "ipo")
"""What ``python -m prefopt_toy bridge`` runs by default: the two converged comparisons."""

# Measured on 2 cores (README, GPT-2 section): AdamW with a linear decay to 0. Online: lr 5e-5 (at
# 1e-4 the sampled pairs' noise leaves the class distribution wandering, TV 0.067; at 1e-3 it
# overshoots). Offline: lr 1e-4 (at 5e-5 the "other" class, in few pairs, is still falling after
# 80 steps: TV 0.052; 5e-5 for 140 steps lands where 1e-4 for 100 does, TV 0.025).
_CONVERGED = {
    "online_ipo": {"steps": 120, "batch_size": 16, "lr": 5e-5},
    "ipo": {"steps": 100, "batch_size": 32, "lr": 1e-4},
}


def bridge_settings(
    algorithm: str = "online_ipo", quick: bool = False, steps: int | None = None
) -> BridgeDemoSettings:
    """The run sizes of ``algorithm``: ``quick`` for the CI smoke mode; ``steps`` overrides the step count.

    The default sizes are the converged runs for ``online_ipo`` and ``ipo`` on the small model
    (``_CONVERGED``); the other algorithms get the online sizes (not tuned).

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1 (the online IPO run these sizes are for).
    """
    if algorithm not in _SOLVER:
        raise ValueError(f"algorithm must be one of {DEMO_ALGORITHMS}, got {algorithm!r}")
    if quick:
        s = BridgeDemoSettings(
            size="tiny",
            steps=4,
            lr=5e-4,
            batch_size=8,
            n_eval_samples=64,
            n_eval=16,
            eval_every=2,
            max_new_tokens=8,
            n_pairs=64,
            toy_steps=200,
        )
    else:
        c = _CONVERGED.get(algorithm, _CONVERGED["online_ipo"])
        s = BridgeDemoSettings(
            size="small",
            steps=c["steps"],
            lr=c["lr"],
            batch_size=c["batch_size"],
            n_eval_samples=2000,
            n_eval=128,
            eval_every=max(1, c["steps"] // 6),
            max_new_tokens=8,
            n_pairs=1024,
            toy_steps=400,
        )
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        s = BridgeDemoSettings(**{**s.__dict__, "steps": steps, "eval_every": max(1, steps // 4)})
    return s


def _cell(est, k: int) -> str:
    return (
        f"{float(est.probs[k]):.4f} [{float(est.lower[k]):.4f}, {float(est.upper[k]):.4f}] "
        f"({int(est.counts[k])}/{est.n})"
    )


def format_bridge_summary(
    result: BridgeResult, *, tv_error: TVError | None = None, note: str | None = None
) -> str:
    """A plain-text summary of a bridge run: ``mu_class``, prediction, final estimate, TV, time.

    Each class row reads ``name  mu_class [lo, hi] (count/n)  prediction  final [lo, hi] (count/n)``;
    ``mu_class`` is exactly ``count / n``, so the prediction can be recomputed from the text.
    ``tv_error`` (``error.tv_sampling_error``) adds the TV's bootstrap interval and sampling
    floor; ``note`` is printed last.

    References
    ----------
    Wilson, JASA 22 (1927) 209-212; Munos et al., arXiv:2312.00886v4.
    """
    if not isinstance(result, BridgeResult):
        raise ValueError(f"result must be a BridgeResult, got {type(result).__name__}")
    hyper = ", ".join(f"{k}={v:g}" for k, v in result.hyper.items())
    level = f"{100 * result.mu_class.level:g}%"
    rows = [
        [
            "class",
            f"mu_class [{level} Wilson] (count/n)",
            "prediction",
            f"final [{level} Wilson] (count/n)",
        ]
    ]
    for k, name in enumerate(result.class_names):
        rows.append(
            [
                name,
                _cell(result.mu_class, k),
                f"{float(result.prediction[k]):.4f}",
                _cell(result.final, k),
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    P = result.P_ext
    n_steps = result.n_steps
    half = float(((result.final.upper - result.final.lower) / 2).max())
    lines = [
        f"== GPT-2 bridge: {result.algorithm} ({hyper}) on a non-transitive fruit game ==",
        (
            "P_ext = "
            + "; ".join(" ".join(f"{x:.3f}" for x in row) for row in P.tolist())
            + f"  (rows/columns: {', '.join(result.class_names)})"
        ),
        (
            f"prediction = {_SOLVER.get(result.algorithm, result.algorithm)}, "
            f"exact; GPT-2 trained {n_steps} steps"
        ),
        "",
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [
        "",
        (
            f"total variation(final, prediction) = {result.tv:.4f} "
            f"(largest {level} half-width of the final estimate: {half:.4f}, n = {result.final.n})"
        ),
        (
            f"total variation(mu_class, prediction) = {total_variation(result.mu_class.probs, result.prediction):.4f} "
            "(where training starts)"
        ),
    ]
    if tv_error is not None:
        lines.append(
            f"sampling error: {100 * tv_error.level:g}% bootstrap interval of the TV "
            f"[{tv_error.interval[0]:.4f}, {tv_error.interval[1]:.4f}]; a policy exactly at the "
            f"prediction would show TV {tv_error.floor_mean:.4f} on average "
            f"({100 * tv_error.level:g}% quantile {tv_error.floor_upper:.4f})"
        )
    lines.append(f"wall time: {result.wall_s:.1f} s")
    if note:
        lines.append(f"note: {note}")
    return "\n".join(lines)


_QUICK_NOTE = (
    "a short smoke-sized run (tiny model, few steps), not the converged comparison; "
    "the README's GPT-2 section has that."
)


def run_bridge_demo(
    out_dir: str | Path = "figures",
    *,
    algorithms: Sequence[str] | None = None,
    steps: int | None = None,
    quick: bool = False,
    seed: int = 0,
    stream: TextIO | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[list[BridgeResult], list[Path]]:
    """Run the bridge for each algorithm, print the summaries, write the figures and a JSON summary.

    Parameters
    ----------
    out_dir : str or Path
        Folder of ``bridge_<algorithm>.png`` / ``.pdf`` and ``bridge_summary.json`` (created if needed).
    algorithms : sequence of str, optional
        From ``DEMO_ALGORITHMS`` (default ``DEMO_RUNS``: online IPO then offline IPO); ``dpo`` uses
        ``beta = BRIDGE_TAU`` and ``other_loses = DPO_OTHER_LOSES``, ``ipo_md`` / ``nash_md_pg``
        ``mixture = BRIDGE_MIXTURE``.
    steps : int, optional
        Training steps (default from ``bridge_settings``).
    quick : bool
        Smoke sizes (``bridge_settings(quick=True)``: the tiny model).
    seed : int
    stream : text stream, optional
        Where the summaries go (default ``sys.stdout``).
    cache_dir : path, optional
        Model cache (default ``$PREFOPT_CACHE`` or ``~/.cache/prefopt_toy``).

    Returns
    -------
    results : list of BridgeResult
    paths : list of Path
        The PNG and PDF files, then the JSON summary.

    References
    ----------
    Munos et al., arXiv:2312.00886v4; Calandriello et al., arXiv:2403.08635v1; Azar et al.,
    arXiv:2310.12036v2.
    """
    from prefopt_toy._paths import check_out_folder
    from prefopt_toy.plots.draw import save_figure

    from .error import tv_sampling_error
    from .figure import bridge_figure
    from .run import run_bridge

    algorithms = tuple(DEMO_RUNS if algorithms is None else algorithms)
    if not algorithms or any(a not in _SOLVER for a in algorithms):
        raise ValueError(
            f"algorithms must be a non-empty list from {DEMO_ALGORITHMS}, got {algorithms!r}"
        )
    out = sys.stdout if stream is None else stream
    out_dir = check_out_folder(out_dir, "out_dir")
    results: list[BridgeResult] = []
    # the reference's class estimate depends only on the model and the sample sizes (not on the game
    # or the algorithm): later runs with the same sizes reuse it instead of sampling it again
    mu_seen: dict[tuple, ClassEstimate] = {}
    paths: list[Path] = []
    summary: dict = {"game": [list(r) for r in BRIDGE_P], "quick": quick, "seed": seed, "runs": []}
    for algorithm in algorithms:
        s = bridge_settings(algorithm, quick, steps)
        sizes = (s.size, s.n_eval_samples, s.max_new_tokens)
        kwargs: dict = {"tau": BRIDGE_TAU}
        if algorithm == "dpo":
            kwargs = {"beta": BRIDGE_TAU, "other_loses": DPO_OTHER_LOSES}
        elif algorithm in ("ipo_md", "nash_md_pg"):
            kwargs["mixture"] = BRIDGE_MIXTURE
        print(
            f"GPT-2 bridge: training the {s.size} offline model ({algorithm}, {s.steps} steps, "
            f"batch {s.batch_size}, lr {s.lr:g}{', quick' if quick else ''})...",
            file=out,
            flush=True,
        )
        result = run_bridge(
            algorithm,
            P=[list(r) for r in BRIDGE_P],
            size=s.size,
            steps=s.steps,
            seed=seed,
            lr=s.lr,
            lr_schedule="linear",
            n_eval_samples=s.n_eval_samples,
            n_eval=s.n_eval,
            eval_every=s.eval_every,
            n_pairs=s.n_pairs,
            batch_size=s.batch_size,
            max_new_tokens=s.max_new_tokens,
            toy_steps=s.toy_steps,
            cache_dir=cache_dir,
            mu_class=mu_seen.get(sizes),
            **kwargs,
        )
        mu_seen.setdefault(sizes, result.mu_class)
        err = tv_sampling_error(result, seed=seed)
        print(
            format_bridge_summary(result, tv_error=err, note=_QUICK_NOTE if quick else None),
            file=out,
        )
        paths += save_figure(
            bridge_figure(result),
            out_dir / f"bridge_{algorithm}",
            configs=[f"bridge:{algorithm}", s.size],
        )
        results.append(result)
        summary["runs"].append(
            {
                **result.summary(),
                "settings": s.__dict__,
                "tv_error": err.as_dict(),
                "tv_mu_prediction": total_variation(result.mu_class.probs, result.prediction),
            }
        )
        print(file=out, flush=True)
    json_path = out_dir / "bridge_summary.json"
    json_path.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    paths.append(json_path)
    for path in paths:
        print(f"wrote {path}", file=out)
    return results, paths
