"""Command line: ``python -m prefopt_toy {demo,table,figures,bridge}`` (also installed as ``prefopt-toy``).

- ``demo [--out DIR] [--game NAME ...] [--quick] [--no-bridge]``: print the reference tables, write
  every figure, then run the GPT-2 bridge (``bridge`` below: online and offline IPO on the small
  model; its quick form on the tiny model with ``--quick``) (what ``make demo`` runs).
- ``table [--game NAME ...]``: print the reference tables only (no matplotlib needed).
- ``figures [--out DIR] [--only FIGURE ...] [--quick] [--game NAME ...]``: write the figures only
  (what ``make figures`` runs); ``--only`` picks figures by name, ``--quick`` is the CI smoke mode
  (fewer steps and seeds), ``--game`` narrows the panels of ``reference_solutions``.
- ``bridge [--quick] [--algorithm NAME ...] [--steps N] [--out DIR]``: the GPT-2 bridge on a
  non-transitive 3-class fruit game with the small offline model
  (``lm.bridge.demo.run_bridge_demo``; default: online IPO then offline IPO, the README's converged
  runs; ``--quick``: the tiny model, a few steps): prints ``mu_class``, the exact prediction, the
  measured distribution, their total variation and its sampling error, and writes
  ``bridge_<algorithm>.png`` / ``.pdf`` and ``bridge_summary.json``. Needs torch and
  transformers; downloads nothing.

Every command also takes ``--threads N``: torch's intra-op threads. Without it torch's own default
stands (one thread per core, or ``OMP_NUM_THREADS``): these commands run alone, where that is the
fast setting (the small GPT-2 bridge: 201 s on both cores of a quiet 2-core machine, 450 s on
one). On a busy machine torch's second thread stalls whenever the other core is busy; ``--threads
1`` avoids it. A bad ``--out`` (an existing file, a path under a file, a
folder that cannot be created) or ``--threads``/``--steps`` value ends with one line on stderr and
exit status 2, before any work starts.

The figures, their functions and configs are listed in ``figures/README.md``
(``plots.figures.FIGURES``, ``plots.experiments.EXPERIMENTS``). They are drawn with matplotlib's Agg
backend, headless, whatever the environment asks for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._paths import check_out_folder

PROG = "python -m prefopt_toy"


class UsageError(Exception):
    """A command-line value that cannot be used: reported as one line, exit status 2."""


def _set_threads(threads: int | None) -> None:
    """torch's intra-op threads: ``threads``; None leaves torch's default (or ``OMP_NUM_THREADS``)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _threads_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch intra-op threads (default: torch's own, one per core, or OMP_NUM_THREADS)",
    )


def _parser() -> argparse.ArgumentParser:
    # Names only: importing these two modules pulls in neither the solvers nor matplotlib.
    from prefopt_toy.games.named import NAMED_GAMES
    from prefopt_toy.plots.experiments import EXPERIMENTS

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Exact tabular preference optimisation: demo, reference tables and figures.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    game_help = (
        "a named game of the reference-solutions figure and tables (repeatable; default all: "
        f"{', '.join(NAMED_GAMES)})"
    )
    for name, help_text, has_out in [
        ("demo", "print the reference tables and write every figure", True),
        ("table", "print the reference tables", False),
        ("figures", "write the figures", True),
    ]:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _threads_option(sub)
        sub.add_argument("--game", action="append", choices=list(NAMED_GAMES), help=game_help)
        if has_out:
            sub.add_argument(
                "--out",
                default="figures",
                metavar="DIR",
                help="folder for the figure files (default: figures)",
            )
            sub.add_argument(
                "--quick",
                action="store_true",
                help="smoke mode: fewer steps, points and seeds (what the tests run)",
            )
        if name == "demo":
            sub.add_argument(
                "--no-bridge",
                action="store_true",
                help="skip the GPT-2 bridge runs at the end",
            )
        if name == "figures":
            sub.add_argument(
                "--only",
                action="append",
                choices=list(EXPERIMENTS),
                metavar="FIGURE",
                help=f"write only this figure (repeatable; one of: {', '.join(EXPERIMENTS)})",
            )
    bridge_help = (
        "the GPT-2 bridge on a non-transitive fruit game (default: online and offline IPO on the "
        "small model, about 8 minutes on 2 cores), with figures and a JSON summary"
    )
    bridge = commands.add_parser("bridge", help=bridge_help, description=bridge_help)
    _threads_option(bridge)
    bridge.add_argument("--quick", action="store_true", help="smoke mode: fewer steps and samples")
    bridge.add_argument(
        "--algorithm",
        action="append",
        choices=["dpo", "ipo", "online_ipo", "nash_md_pg", "ipo_md"],
        help="a GPT-2 trainer to run (repeatable; default: online_ipo and ipo)",
    )
    bridge.add_argument("--steps", type=int, default=None, metavar="N", help="training steps")
    bridge.add_argument(
        "--out",
        default="figures",
        metavar="DIR",
        help="folder for the figure files (default: figures)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    A value that cannot be used (``UsageError``) is printed as one line on stderr, status 2.
    """
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    games = getattr(args, "game", None)  # None means every named game
    out = None
    if getattr(args, "out", None) is not None:
        try:
            out = check_out_folder(args.out, "--out")
        except ValueError as err:
            raise UsageError(str(err)) from None
    if getattr(args, "steps", None) is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.command == "bridge" or (args.command == "demo" and not args.no_bridge):
        from ._extras import lm_missing, lm_missing_message

        missing = lm_missing()
        if missing:
            hint = "; or run `demo --no-bridge`" if args.command == "demo" else ""
            raise UsageError(lm_missing_message(missing) + hint)
    _set_threads(args.threads)

    if args.command == "table":
        from prefopt_toy.games.named import NAMED_GAMES
        from prefopt_toy.solutions.reference import format_table

        for name in games or list(NAMED_GAMES):
            print(format_table(name), end="\n\n")
        return 0

    import matplotlib

    # Headless and reproducible: the files must not depend on a display or a user's backend.
    matplotlib.use("Agg")
    from prefopt_toy.plots.experiments import EXPERIMENTS

    if args.command == "demo":
        from .demo import run_demo

        run_demo(out, games=games, figures=tuple(EXPERIMENTS), quick=args.quick)
        if not args.no_bridge:
            from prefopt_toy.lm.bridge.demo import run_bridge_demo

            print(flush=True)
            run_bridge_demo(out, quick=args.quick)
        return 0

    if args.command == "bridge":
        from prefopt_toy.lm.bridge.demo import run_bridge_demo

        run_bridge_demo(out, algorithms=args.algorithm, steps=args.steps, quick=args.quick)
        return 0

    from prefopt_toy.plots.figures import write_figures

    write_figures(out, only=args.only, quick=args.quick, games=games)
    return 0


if __name__ == "__main__":
    sys.exit(main())
