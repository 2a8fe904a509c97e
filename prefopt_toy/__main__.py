"""Command line: ``python -m prefopt_toy {demo,table,figures}`` (also installed as ``prefopt-toy``).

- ``demo [--out DIR] [--game NAME ...]``: print the reference tables and write the figures
  (what ``make demo`` runs).
- ``table [--game NAME ...]``: print the reference tables only (no matplotlib needed).
- ``figures [--out DIR] [--game NAME ...]``: write the figures only (what ``make figures`` runs).

Figures are drawn with matplotlib's Agg backend, headless, whatever the environment asks for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    from .named_games import NAMED_GAMES

    parser = argparse.ArgumentParser(
        prog="python -m prefopt_toy",
        description="Exact tabular preference optimisation: demo, reference tables and figures.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    game_help = f"a named game to include (repeatable; default all: {', '.join(NAMED_GAMES)})"
    for name, help_text, has_out in [
        ("demo", "print the reference tables and write the figures", True),
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

    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.out, games=games)
        return 0

    from .named_games import NAMED_GAMES
    from .plotting import reference_solutions_figure, save_figure

    chosen = games or list(NAMED_GAMES)
    fig = reference_solutions_figure(chosen)
    for path in save_figure(fig, f"{args.out}/reference_solutions", configs=chosen):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
