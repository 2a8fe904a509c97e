r"""The headless demo: reference solutions of the named games, as printed tables and one figure.

For each game of ``games.named.NAMED_GAMES`` the demo lists, side by side, where each objective puts
its optimum and how exploitable that point is:

- the reference policy ``mu`` (the ``tau -> infinity`` limit of everything below);
- the RLHF/DPO optimum ``mu * exp(r/beta)`` with the BT reward ``r`` fitted on pairs from
  ``nu = mu``, at ``beta = tau`` (same KL weight as IPO and Nash-MD);
- the offline IPO optimum ``mu * exp(P @ mu / tau)`` (``nu = mu``);
- the regularised Nash equilibrium, the fixed point of ``mu * exp(P @ pi / tau)``;
- the unregularised Nash equilibrium (linear program, ``tau = 0``);
- the Condorcet winner, when there is one (a pure Nash equilibrium).

Exploitability is ``max_y (P @ pi)_y - 1/2``: how much a best response beats ``pi`` by; 0 exactly
at a Nash equilibrium. All numbers come from the library's solvers; ``solutions.reference`` builds
the tables and this file prints them.
``run_demo`` (``make demo``, ``python -m prefopt_toy demo``) prints the tables and writes
``reference_solutions.png`` and ``.pdf``; the command line's ``demo`` also writes every figure of
the exact dynamics (``plots.figures.FIGURES``, listed in ``figures/README.md``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from prefopt_toy.games.named import NAMED_GAMES, NamedGame
from prefopt_toy.solutions.reference import _game, format_table

__all__ = ["run_demo"]


def run_demo(
    out_dir: str | Path = "figures",
    *,
    games: Iterable[NamedGame | str] | None = None,
    stream: TextIO | None = None,
    figures: Sequence[str] = ("reference_solutions",),
    quick: bool = False,
) -> list[Path]:
    """Print the reference table of every named game and write figures (by default the reference one).

    Parameters
    ----------
    out_dir : str or Path
        Folder for the figure files, ``<name>.png`` and ``<name>.pdf`` (created if needed).
    games : iterable of NamedGame or str, optional
        Games to tabulate and draw in ``reference_solutions`` (default: all of ``NAMED_GAMES``, in
        registry order). The other figures take their games from their experiment configs.
    stream : text stream, optional
        Where the tables go (default ``sys.stdout``).
    figures : sequence of str
        Names of ``plots.figures.FIGURES`` to write, in order. The default writes only
        ``reference_solutions``; ``python -m prefopt_toy demo`` (``make demo``) writes them all.
    quick : bool
        Smoke mode for the dynamics figures (fewer steps; see ``plots.experiments``).

    Returns
    -------
    list of Path
        The files written, PNG then PDF for each figure.
    """
    from prefopt_toy.plots.draw import save_figure
    from prefopt_toy.plots.figures import reference_solutions_figure

    from ._paths import check_out_folder

    out = sys.stdout if stream is None else stream
    check_out_folder(out_dir, "out_dir")
    chosen = [_game(g) for g in (NAMED_GAMES.values() if games is None else games)]
    for g in chosen:
        print(format_table(g), end="\n\n", file=out)
    paths: list[Path] = []
    for name in figures:
        if name == "reference_solutions":
            fig = reference_solutions_figure(chosen)
            written = save_figure(
                fig, Path(out_dir) / "reference_solutions", configs=[g.name for g in chosen]
            )
            for path in written:
                print(f"wrote {path}", file=out)
        else:
            from prefopt_toy.plots.figures import (
                write_figures,  # imports the dynamics engine: only here
            )

            written = write_figures(out_dir, only=[name], quick=quick, stream=out)
        paths += written
    return paths
