"""Reference solutions of the named games: the tables that the demo prints, and the figure's paths.

For a game of ``games.named.NAMED_GAMES``, ``reference_table`` lists, side by side, where each
objective puts its optimum and how exploitable that point is:

- the reference policy ``mu`` (the ``tau -> infinity`` limit of everything below);
- the RLHF/DPO optimum ``mu * exp(r/beta)`` with the BT reward ``r`` fitted on pairs from
  ``nu = mu``, at ``beta = tau`` (same KL weight as IPO and Nash-MD);
- the offline IPO optimum ``mu * exp(P @ mu / tau)`` (``nu = mu``);
- the regularised Nash equilibrium, the fixed point of ``mu * exp(P @ pi / tau)``;
- the unregularised Nash equilibrium (linear program, ``tau = 0``);
- the Condorcet winner, when there is one (a pure Nash equilibrium).

Exploitability is ``max_y (P @ pi)_y - 1/2``: how much a best response beats ``pi`` by; 0 exactly
at a Nash equilibrium. All numbers come from the library's solvers; this module only arranges them.
``format_table`` renders a table as aligned plain text (``demo.run_demo`` and ``python -m
prefopt_toy demo`` print it). ``reference_paths`` gives the RLHF/DPO, IPO and regularised-Nash
solutions along ``PATH_TAUS``, the curves of ``plots.figures.reference_solutions_figure``.

References
----------
Azar et al., arXiv:2310.12036v2, Eq. (3) (RLHF closed form) and Eq. (9) with Psi = I (IPO);
Munos et al., arXiv:2312.00886v4, Sec. 3-4 (regularised and unregularised Nash).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from prefopt_toy._validate import as_positive_float
from prefopt_toy.games.named import NamedGame, named_game
from prefopt_toy.games.properties import condorcet_winner

from .bt import bt_fit
from .nash import exploitability, nash_equilibrium
from .optima import gibbs_policy, ipo_optimum
from .regularized import regularized_nash

__all__ = ["PATH_TAUS", "ReferenceRow", "format_table", "reference_paths", "reference_table"]

# Taus along which the figure draws each solution as a curve: from near mu (tau = 10) to near the
# unregularised limit (tau = 0.01), log-spaced so every decade gets the same number of points.
PATH_TAUS: tuple[float, ...] = tuple(
    float(t) for t in torch.logspace(1, -2, 91, dtype=torch.float64)
)

RLHF = "RLHF/DPO optimum"


IPO = "IPO optimum"


REG_NASH = "regularized Nash"


# What a printed row calls each solution: the optima fitted on pairs say which pairs (every named
# game draws them from its mu, the default of rlhf_optimum and ipo_optimum). The keys stay the
# ``ReferenceRow.solution`` names.
SHOWN: dict[str, str] = {
    RLHF: "RLHF/DPO optimum (BT fit, pairs ~ mu)",
    IPO: "IPO optimum (pairs ~ mu)",
}


@dataclass(frozen=True)
class ReferenceRow:
    """One line of a reference table: a solution concept at one KL strength."""

    solution: str
    """What the point is: ``"reference mu"``, ``"RLHF/DPO optimum"``, ``"IPO optimum"``,
    ``"regularized Nash"``, ``"Nash equilibrium"`` or ``"Condorcet winner"``."""
    tau: float | None
    """KL strength: ``tau`` (``beta`` for RLHF/DPO); ``inf`` for ``mu``, 0 for the unregularised
    Nash, None where no KL strength applies (the Condorcet winner)."""
    policy: tuple[float, ...] | None
    """The policy, one probability per action; None when it does not exist (no Condorcet winner)."""
    exploitability: float | None
    """``max_y (P @ policy)_y - 1/2``; None when ``policy`` is None."""


def _game(game: NamedGame | str) -> NamedGame:
    return game if isinstance(game, NamedGame) else named_game(game)


def reference_table(
    game: NamedGame | str,
    taus: Sequence[float] | None = None,
    beta: float | None = None,
) -> list[ReferenceRow]:
    r"""Reference solutions of one named game and their exploitability, as table rows.

    Parameters
    ----------
    game : NamedGame or str
        A config from ``NAMED_GAMES`` or its name.
    taus : sequence of float > 0, optional
        KL strengths for the IPO optimum and the regularised Nash (default ``game.taus``).
    beta : float > 0, optional
        KL strength of RLHF/DPO. None (default) uses ``beta = tau`` for each ``tau``, one RLHF row
        per ``tau``; a number gives a single RLHF row at that ``beta``.

    Returns
    -------
    list of ReferenceRow
        In order: ``mu``; RLHF/DPO, IPO and regularised Nash (each for every ``tau``, largest
        first); the unregularised Nash equilibrium; the Condorcet winner (``policy=None`` if none).

    Raises
    ------
    ValueError
        For an unknown game name or a ``tau`` or ``beta`` that is not > 0.

    Notes
    -----
    Offline methods fit on pairs from ``nu = mu`` (data from the reference policy), so for a
    skewed ``mu`` even a cyclic game gives them a non-uniform target.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (3) (RLHF closed form) and Eq. (9) with Psi = I (IPO);
    Munos et al., arXiv:2312.00886v4, Sec. 3-4 (regularised and unregularised Nash).
    """
    g = _game(game)
    P, mu = g.preference_matrix(), g.reference_policy()
    tau_list = g.taus if taus is None else tuple(as_positive_float(t, "tau") for t in taus)
    tau_list = tuple(sorted(tau_list, reverse=True))
    if not tau_list:
        raise ValueError("taus must name at least one KL strength")

    def row(solution: str, tau: float | None, pi: Tensor | None) -> ReferenceRow:
        if pi is None:
            return ReferenceRow(solution, tau, None, None)
        policy = tuple(float(p) for p in pi)
        return ReferenceRow(solution, tau, policy, float(exploitability(P, pi)))

    rows = [row("reference mu", math.inf, mu)]
    betas = tau_list if beta is None else (as_positive_float(beta, "beta"),)
    reward = bt_fit(P, mu)  # rlhf_optimum(P, mu, b, nu=mu) for every b, with one BT fit
    rows += [row(RLHF, b, gibbs_policy(mu, reward, b)) for b in betas]
    rows += [row(IPO, t, ipo_optimum(P, mu, t, nu=mu)) for t in tau_list]
    rows += [row(REG_NASH, t, regularized_nash(P, mu, t)) for t in tau_list]
    rows.append(row("Nash equilibrium", 0.0, nash_equilibrium(P)))
    winner = condorcet_winner(P)
    vertex = None
    if winner is not None:
        vertex = torch.zeros(P.shape[0], dtype=P.dtype)
        vertex[winner] = 1.0
    rows.append(row("Condorcet winner", None, vertex))
    return rows


def reference_paths(game: NamedGame | str, taus: Sequence[float] = PATH_TAUS) -> dict[str, Tensor]:
    """The RLHF/DPO (``beta = tau``), IPO and regularised-Nash solutions along ``taus``.

    Returns a dict mapping ``"RLHF/DPO optimum"``, ``"IPO optimum"`` and ``"regularized Nash"`` to
    tensors of shape ``(len(taus), K)``, row ``i`` at ``taus[i]``. The figure draws these as curves.
    """
    g = _game(game)
    P, mu = g.preference_matrix(), g.reference_policy()
    tau_list = [as_positive_float(t, "tau") for t in taus]
    # rlhf_optimum(P, mu, beta, nu) is gibbs_policy(mu, bt_fit(P, nu), beta): the BT reward does
    # not depend on beta, so fit it once for the whole path instead of once per point.
    reward = bt_fit(P, mu)
    return {
        RLHF: torch.stack([gibbs_policy(mu, reward, t) for t in tau_list]),
        IPO: torch.stack([ipo_optimum(P, mu, t, nu=mu) for t in tau_list]),
        REG_NASH: torch.stack([regularized_nash(P, mu, t) for t in tau_list]),
    }


def _format_tau(tau: float | None) -> str:
    if tau is None:
        return "-"
    if math.isinf(tau):
        return "inf"
    return f"{tau:g}"


def format_table(game: NamedGame | str, rows: Sequence[ReferenceRow] | None = None) -> str:
    """An aligned plain-text table of ``rows`` (computed with ``reference_table`` when None).

    The header names the game, its description, ``P`` and ``mu``; policies print with 4 decimals.
    The fitted optima say their pairs (``SHOWN``): "RLHF/DPO optimum (BT fit, pairs ~ mu)".

    Examples
    --------
    >>> rows = [ReferenceRow("Condorcet winner", None, None, None)]
    >>> print(format_table("three_voter_types", rows).splitlines()[-1])
    Condorcet winner  -    none    none    none    -
    """
    g = _game(game)
    if rows is None:
        rows = reference_table(g)
    P = g.preference_matrix()
    header = ["solution", "tau", *(f"pi({a})" for a in g.actions), "exploitability"]
    body = []
    for r in rows:
        probs = ["none"] * len(g.actions) if r.policy is None else [f"{p:.4f}" for p in r.policy]
        expl = "-" if r.exploitability is None else f"{r.exploitability:.4f}"
        body.append([SHOWN.get(r.solution, r.solution), _format_tau(r.tau), *probs, expl])
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    lines = [
        f"== {g.name}: {g.title} ==",
        g.description,
        "P = " + "; ".join(" ".join(f"{x:.3f}" for x in p_row) for p_row in P.tolist()),
        "mu = (" + ", ".join(f"{m:.4f}" for m in g.reference_policy().tolist()) + ")",
        "",
    ]
    for line in [header, *body]:
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        cells += [cell.ljust(w) for cell, w in zip(line[2:], widths[2:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
