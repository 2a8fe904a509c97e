r"""The demo's GPT-2 bridge part: a short run on a non-transitive 3-class fruit game, printed and drawn.

``python -m prefopt_toy bridge`` (and the last part of ``python -m prefopt_toy demo`` /
``make demo``) runs ``bridge.run_bridge`` with the tiny offline GPT-2 (``models.default_model``,
cached under ``$PREFOPT_CACHE`` or ``~/.cache/prefopt_toy``; trained on first use in seconds, nothing
is downloaded) on the rock-paper-scissors-like game ``BRIDGE_P`` over apple / banana / cherry at
``BRIDGE_TAU``, prints the reference's class distribution ``mu_class`` with its Wilson intervals, the
exact prediction of the toy for that ``mu_class``, the trained policy's class distribution with its
intervals, their total variation and the wall time, and writes ``bridge.png`` / ``bridge.pdf``
(``bridge.bridge_figure``) with ``plotting.save_figure`` (deterministic metadata).

The run is sized for a demo (about a minute on two CPU cores; ``quick`` about 20 s), far from the
converged comparison of the README: the measured distribution is not expected to sit within the
issue's total-variation target after so few steps.

References
----------
Munos et al., arXiv:2312.00886v4 (regularised preference games); Calandriello et al.,
arXiv:2403.08635v1 (online IPO, IPO-MD); Wilson, JASA 22 (1927) 209-212 (intervals).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .bridge import BridgeResult

__all__ = [
    "BRIDGE_P",
    "BRIDGE_TAU",
    "BridgeDemoSettings",
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
"""Algorithms the bridge command can run (``bridge.TRAINABLE``)."""


@dataclass(frozen=True)
class BridgeDemoSettings:
    """Sizes of the demo run (arguments of ``run_bridge``)."""

    steps: int
    n_eval_samples: int
    n_eval: int
    eval_every: int
    batch_size: int
    max_new_tokens: int
    n_pairs: int
    toy_steps: int


def bridge_settings(quick: bool = False, steps: int | None = None) -> BridgeDemoSettings:
    """The demo's run sizes: ``quick`` for the CI smoke mode; ``steps`` overrides the step count.

    Measured on 2 cores with ``OMP_NUM_THREADS=1`` (tiny model already cached): the default about
    a minute (measured 65 s), ``quick`` about 17 s.

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1 (the online IPO run these sizes are for).
    """
    if quick:
        s = BridgeDemoSettings(steps=4, n_eval_samples=64, n_eval=16, eval_every=2, batch_size=8,
                               max_new_tokens=8, n_pairs=64, toy_steps=200)
    else:
        s = BridgeDemoSettings(steps=24, n_eval_samples=256, n_eval=32, eval_every=6, batch_size=16,
                               max_new_tokens=10, n_pairs=256, toy_steps=300)
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        s = BridgeDemoSettings(**{**s.__dict__, "steps": steps, "eval_every": max(1, steps // 4)})
    return s


def _cell(est, k: int) -> str:
    return (f"{float(est.probs[k]):.4f} [{float(est.lower[k]):.4f}, {float(est.upper[k]):.4f}] "
            f"({int(est.counts[k])}/{est.n})")


def format_bridge_summary(result: BridgeResult) -> str:
    """A plain-text summary of a bridge run: ``mu_class``, prediction, final estimate, TV, time.

    Each class row reads ``name  mu_class [lo, hi] (count/n)  prediction  final [lo, hi] (count/n)``;
    ``mu_class`` is exactly ``count / n``, so the prediction can be recomputed from the text.

    References
    ----------
    Wilson, JASA 22 (1927) 209-212; Munos et al., arXiv:2312.00886v4.
    """
    if not isinstance(result, BridgeResult):
        raise ValueError(f"result must be a BridgeResult, got {type(result).__name__}")  # noqa: TRY004
    hyper = ", ".join(f"{k}={v:g}" for k, v in result.hyper.items())
    level = f"{100 * result.mu_class.level:g}%"
    rows = [["class", f"mu_class [{level} Wilson] (count/n)", "prediction", f"final [{level} Wilson] (count/n)"]]
    for k, name in enumerate(result.class_names):
        rows.append([name, _cell(result.mu_class, k), f"{float(result.prediction[k]):.4f}",
                     _cell(result.final, k)])
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    P = result.P_ext
    n_steps = result.steps[-1] if result.steps else 0
    half = float(((result.final.upper - result.final.lower) / 2).max())
    lines = [
        f"== GPT-2 bridge: {result.algorithm} ({hyper}) on a non-transitive fruit game ==",
        ("P_ext = " + "; ".join(" ".join(f"{x:.3f}" for x in row) for row in P.tolist())
         + f"  (rows/columns: {', '.join(result.class_names)})"),
        (f"prediction = {_SOLVER.get(result.algorithm, result.algorithm)}, "
         f"exact; GPT-2 trained {n_steps} steps"),
        "",
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [
        "",
        (f"total variation(final, prediction) = {result.tv:.4f} "
         f"(largest {level} half-width of the final estimate: {half:.4f}, n = {result.final.n})"),
        f"wall time: {result.wall_s:.1f} s",
        ("note: a short smoke-sized run (tiny model, few steps), not the converged comparison; "
         "the README's GPT-2 section has that."),
    ]
    return "\n".join(lines)


def run_bridge_demo(out_dir: str | Path = "figures", *, algorithm: str = "online_ipo", steps: int | None = None,
                    quick: bool = False, seed: int = 0, stream: TextIO | None = None,
                    cache_dir: str | Path | None = None) -> tuple[BridgeResult, list[Path]]:
    """Run the short bridge, print its summary and write ``bridge.png`` / ``bridge.pdf``.

    Parameters
    ----------
    out_dir : str or Path
        Folder of the figure files (created if needed).
    algorithm : str
        One of ``DEMO_ALGORITHMS``; ``dpo`` uses ``beta = BRIDGE_TAU`` and
        ``other_loses = DPO_OTHER_LOSES``, ``ipo_md`` / ``nash_md_pg`` ``mixture = BRIDGE_MIXTURE``.
    steps : int, optional
        Training steps (default from ``bridge_settings``).
    quick : bool
        Smoke sizes (``bridge_settings(quick=True)``).
    seed : int
    stream : text stream, optional
        Where the summary goes (default ``sys.stdout``).
    cache_dir : path, optional
        Model cache (default ``$PREFOPT_CACHE`` or ``~/.cache/prefopt_toy``).

    Returns
    -------
    result : BridgeResult
    paths : list of Path
        The PNG and PDF written.

    References
    ----------
    Munos et al., arXiv:2312.00886v4; Calandriello et al., arXiv:2403.08635v1.
    """
    from ..plotting import save_figure
    from .bridge import bridge_figure, run_bridge

    if algorithm not in _SOLVER:
        raise ValueError(f"algorithm must be one of {DEMO_ALGORITHMS}, got {algorithm!r}")
    out = sys.stdout if stream is None else stream
    s = bridge_settings(quick, steps)
    kwargs: dict = {"tau": BRIDGE_TAU}
    if algorithm == "dpo":
        kwargs = {"beta": BRIDGE_TAU, "other_loses": DPO_OTHER_LOSES}
    elif algorithm in ("ipo_md", "nash_md_pg"):
        kwargs["mixture"] = BRIDGE_MIXTURE
    print(f"GPT-2 bridge: training the tiny offline model ({algorithm}, {s.steps} steps"
          f"{', quick' if quick else ''})...", file=out, flush=True)
    result = run_bridge(algorithm, P=[list(r) for r in BRIDGE_P], size="tiny", steps=s.steps, seed=seed,
                        n_eval_samples=s.n_eval_samples, n_eval=s.n_eval, eval_every=s.eval_every,
                        n_pairs=s.n_pairs, batch_size=s.batch_size, max_new_tokens=s.max_new_tokens,
                        toy_steps=s.toy_steps, cache_dir=cache_dir, **kwargs)
    print(format_bridge_summary(result), file=out)
    fig = bridge_figure(result)
    paths = save_figure(fig, Path(out_dir) / "bridge", configs=[f"bridge:{algorithm}", "tiny"])
    for path in paths:
        print(f"wrote {path}", file=out)
    return result, paths
