"""Time a slider move of each notebook widget at K = 3, Python side: computation against drawing.

A move is what the browser triggers: ``h.controls[name].value = v`` on a built widget, which
recomputes, redraws and puts a new PNG into ``h.image``. Each control moves through a run of new
values (a key press at a time: 1.26x on a log slider, 0.005 on the mixture, 0.01 on a P entry),
so nothing is served from a cache. Drawing is the time spent building and updating the figure's
artists (the widget modules' ``_draw_*`` / ``_build_*`` / ``_update_*`` functions,
``Figure.clear``), rendering them (``Figure.savefig``, ``FigureCanvasAgg.draw``,
``Figure.draw_artist``, ``restore_region``) and encoding the PNG (pillow); computation is the
rest (library calls).

The browser adds the Output/Image round trip (comm message, PNG over the websocket, decode):
``tests/test_browser.py::test_widget_answers_a_key_press_at_once`` measures event to new image
there. ``benchmarks/widget_latency.md`` records both.

Usage: ``python benchmarks/bench_widgets.py [--repeats N]``. To time another tree of the package
(e.g. the widgets before a change: ``git archive <commit> prefopt_toy | tar -x -C /tmp/old``), put
it first on the path: ``PYTHONPATH=/tmp/old python benchmarks/bench_widgets.py``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import matplotlib.backends.backend_agg as agg
import matplotlib.figure as mfigure
import numpy as np
from PIL import PngImagePlugin

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.games.named import named_game
from prefopt_toy.unlearning import teaching_task

_drawing = {"seconds": 0.0, "depth": 0}


def _timed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a drawing function: its time counts once, however the calls nest."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _drawing["depth"] += 1
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _drawing["depth"] -= 1
            if _drawing["depth"] == 0:
                _drawing["seconds"] += time.perf_counter() - start

    return wrapper


def _instrument() -> None:
    import importlib

    for module_name in (
        "beta_explorer",
        "nash_learning",
        "preference_editor",
        "token_explorer",
        "unlearning_explorer",
        "judge_explorer",
    ):
        module = importlib.import_module(f"prefopt_toy.widgets.{module_name}")
        for attr in list(vars(module)):
            if attr.startswith(("_draw_", "_build_", "_update_")):
                setattr(module, attr, _timed(getattr(module, attr)))
    mfigure.Figure.clear = _timed(mfigure.Figure.clear)
    mfigure.Figure.savefig = _timed(mfigure.Figure.savefig)
    mfigure.Figure.draw_artist = _timed(mfigure.Figure.draw_artist)
    agg.FigureCanvasAgg.draw = _timed(agg.FigureCanvasAgg.draw)
    agg.FigureCanvasAgg.restore_region = _timed(agg.FigureCanvasAgg.restore_region)
    PngImagePlugin._save = _timed(PngImagePlugin._save)


def _cases() -> list[tuple[str, Callable[[], Any], str, list[Any]]]:
    rps = named_game("rock_paper_scissors")
    P_rps, mu_rps = rps.preference_matrix(), rps.reference_policy()
    P_cw = [[0.50, 0.55, 0.55], [0.45, 0.50, 0.95], [0.45, 0.05, 0.50]]
    log_steps = [10.0 ** (-1 + k / 10) for k in range(1, 9)]  # 0.13 ... 0.63: key presses up
    tree = pt.TokenTree(3, 3)
    return [
        (
            "beta_explorer",
            lambda: widgets.beta_explorer(P_cw, [1 / 3] * 3, beta=0.1),
            "beta",
            log_steps,
        ),
        (
            "nash_learning (1000 steps)",
            lambda: widgets.nash_learning(P_rps, mu_rps, tau=0.1, steps=1000),
            "tau",
            log_steps,
        ),
        (
            "nash_learning (1000 steps)",
            lambda: widgets.nash_learning(P_rps, mu_rps, tau=0.1, steps=1000),
            "mixture",
            [0.125 + 0.005 * k for k in range(1, 9)],
        ),
        (
            "nash_learning (1000 steps)",
            lambda: widgets.nash_learning(P_rps, mu_rps, tau=0.1, steps=1000),
            "eta",
            [10.0 ** (k / 10) for k in range(1, 9)],
        ),
        (
            "nash_learning (500 steps, the lecture)",
            lambda: widgets.nash_learning(P_rps, mu_rps, tau=0.1, steps=500),
            "tau",
            log_steps,
        ),
        (
            "preference_editor",
            lambda: widgets.preference_editor(P_cw),
            "p01",
            [round(0.55 - 0.01 * k, 2) for k in range(1, 9)],
        ),
        (  # notebook 09's widget: the 15-sequence token tree, 200 exact steps per setting
            "token_explorer (notebook 09)",
            lambda: widgets.token_explorer(tree, tree.uniform_table(), beta=0.5, steps=200),
            "strength",
            [1.0 + 0.25 * k for k in range(1, 9)],
        ),
        (  # notebook 10's widget: the teaching task, 100 steps
            "unlearning_explorer (notebook 10)",
            lambda: widgets.unlearning_explorer(teaching_task(), shared_bias=True, steps=100),
            "retain_weight",
            [round(0.1 * k, 1) for k in range(1, 9)],
        ),
        (  # notebook 11's widget: every algorithm's fixed point under the raw and averaged judge
            "judge_explorer (notebook 11)",
            lambda: widgets.judge_explorer(bias=0.9, tau=0.1, mu=[0.6, 0.3, 0.1], mixture=0.5),
            "bias",
            [round(0.9 - 0.05 * k, 2) for k in range(1, 9)],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="times through each run of values")
    args = parser.parse_args()
    _instrument()
    print(f"# Widget moves at K = 3, Python side ({datetime.date.today()})\n")
    print(
        f"prefopt_toy from `{os.path.dirname(pt.__file__)}`; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n"
    )
    print("| widget | control | moves | median move (ms) | computation (ms) | drawing (ms) |")
    print("|---|---|---|---|---|---|")
    for name, build, control, values in _cases():
        totals, drawings = [], []
        for _ in range(args.repeats):
            h = build()
            for value in values:
                _drawing["seconds"] = 0.0
                start = time.perf_counter()
                h.controls[control].value = value
                totals.append(time.perf_counter() - start)
                drawings.append(_drawing["seconds"])
        total, drawing = statistics.median(totals), statistics.median(drawings)
        compute = statistics.median(np.subtract(totals, drawings))
        print(
            f"| {name} | {control} | {len(totals)} | {1e3 * total:.0f} | {1e3 * compute:.0f} "
            f"| {1e3 * drawing:.0f} |"
        )


if __name__ == "__main__":
    main()
