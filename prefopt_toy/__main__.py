"""Command line: ``python -m prefopt_toy {demo,table,figures}`` (also installed as ``prefopt-toy``).

- ``demo [--out DIR] [--game NAME ...] [--quick]``: print the reference tables and write every
  figure (what ``make demo`` runs).
- ``table [--game NAME ...]``: print the reference tables only (no matplotlib needed).
- ``figures [--out DIR] [--only FIGURE ...] [--quick] [--game NAME ...]``: write the figures only
  (what ``make figures`` runs); ``--only`` picks figures by name, ``--quick`` is the CI smoke mode
  (fewer steps and seeds), ``--game`` narrows the panels of ``reference_solutions``.

The figures, their functions and configs are listed in ``figures/README.md``
(``dynamics_figures.FIGURES``, ``experiments.EXPERIMENTS``). They are drawn with matplotlib's Agg
backend, headless, whatever the environment asks for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    # Names only: importing these two modules pulls in neither the solvers nor matplotlib.
    from .experiments import EXPERIMENTS
    from .named_games import NAMED_GAMES

    parser = argparse.ArgumentParser(
        prog="python -m prefopt_toy",
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
        if name == "figures":
            sub.add_argument(
                "--only",
                action="append",
                choices=list(EXPERIMENTS),
                metavar="FIGURE",
                help=f"write only this figure (repeatable; one of: {', '.join(EXPERIMENTS)})",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    games = args.game  # None means every named game

    if args.command == "table":
        from .demo import format_table
        from .named_games import NAMED_GAMES

        for name in games or list(NAMED_GAMES):
            print(format_table(name), end="\n\n")
        return 0

    import matplotlib

    # Headless and reproducible: the files must not depend on a display or a user's backend.
    matplotlib.use("Agg")
    from .experiments import EXPERIMENTS

    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.out, games=games, figures=tuple(EXPERIMENTS), quick=args.quick)
        return 0

    from .dynamics_figures import write_figures

    write_figures(args.out, only=args.only, quick=args.quick, games=games)
    return 0


if __name__ == "__main__":
    sys.exit(main())
