r"""The preference-matrix editor of notebook 01: edit a 3 x 3 ``P`` and see its Bradley-Terry fit.

:func:`preference_editor` shows, for the matrix typed in, the Bradley-Terry fit as a policy, the
Nash equilibrium, the Condorcet winner (when there is one) and how far the BT fit misses each pair;
every number comes from library calls (``bt_fit``, ``nash_equilibrium``, ``games.properties``,
``solutions.bt``).
References: Bradley & Terry (1952), Biometrika 39; Azar et al., arXiv:2310.12036v2; Munos et al.,
arXiv:2312.00886v4, Sec. 3.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from prefopt_toy._validate import as_preference_matrix
from prefopt_toy.games.constructors import bradley_terry, check_preference_matrix
from prefopt_toy.games.named import named_game
from prefopt_toy.games.properties import condorcet_winner, is_transitive
from prefopt_toy.plots.draw import COLORS, draw_simplex, plot_policy
from prefopt_toy.policies import softmax
from prefopt_toy.simplex import barycentric_to_cartesian
from prefopt_toy.solutions.bt import bt_fit, bt_fit_gap, bt_fit_kl, is_bradley_terry
from prefopt_toy.solutions.nash import nash_equilibrium

from .handle import _ACTIONS, WidgetHandle, _connect, _legend_below, _ranking, _update, _vertex

__all__ = ["preference_editor"]

_PAIRS = (("p01", 0, 1), ("p02", 0, 2), ("p12", 1, 2))


def preference_editor(P: Any = None) -> WidgetHandle:
    r"""Edit a 3 x 3 preference matrix and see its Bradley-Terry fit, Nash equilibrium and Condorcet winner.

    Three number boxes ``p01``, ``p02``, ``p12`` hold the upper triangle :math:`P[i, j] =
    \Pr(y_i \succ y_j)`; the lower triangle is ``1 - upper`` and the diagonal 1/2. Each entry is
    validated as typed: one outside [0, 1], or a matrix the library rejects (no finite BT fit),
    leaves the last drawing in place and says why in ``h.status``.

    Drawn: on the simplex, the BT fit as a policy (softmax of the fitted scores
    :math:`\hat r = \texttt{bt\_fit}(P)`), the Nash equilibrium and the Condorcet winner when
    there is one; beside it, each pair's ``P`` against the BT fit's :math:`\sigma(\hat r_i -
    \hat r_j)`. The text says whether ``P`` is transitive and Bradley-Terry, gives the fit gap and
    the BT ranking, with ``=`` between scores equal up to round-off (1e-9): a game whose fit ties
    every action (rock-paper-scissors) reads "BT ranking: all tied (y0 = y1 = y2)".

    Parameters
    ----------
    P : array-like, shape (3, 3), optional
        Starting matrix; default the named game ``condorcet_winner`` (BT argmax y1, Condorcet
        winner y0).

    Returns
    -------
    WidgetHandle
        ``controls``: ``"p01"``, ``"p02"``, ``"p12"``. ``data``: ``"P"``, ``"bt_scores"``,
        ``"bt_policy"``, ``"bt_P"``, ``"nash"``, ``"condorcet_winner"`` (int or None),
        ``"transitive"``, ``"bradley_terry"``, ``"bt_fit_gap"``, ``"bt_fit_kl"``,
        ``"bt_ranking"`` (e.g. ``"y1 > y0 > y2"``, ``"all tied (y0 = y1 = y2)"``).
        ``h.summary`` (HTML) states the properties in words.

    Raises
    ------
    ValueError
        If ``P`` is not a 3 x 3 preference matrix.

    References
    ----------
    Bradley & Terry (1952), Biometrika 39; Azar et al., arXiv:2310.12036v2, Eq. (1)-(2);
    Munos et al., arXiv:2312.00886v4, Sec. 3 (Condorcet cycles, Nash vs. BT).
    """
    P_t = (
        named_game("condorcet_winner").preference_matrix()
        if P is None
        else as_preference_matrix(P, "P")
    )
    if P_t.shape != (3, 3):
        raise ValueError(
            f"P must be 3 x 3 (three actions, drawn on the simplex), got {tuple(P_t.shape)}"
        )
    controls = {
        name: widgets.FloatText(
            value=float(P_t[i, j]),
            step=0.01,
            description=name,
            layout=widgets.Layout(width="150px"),
            style={"description_width": "initial"},
        )
        for name, i, j in _PAIRS
    }
    explain = widgets.HTML(
        "p01 = P(y0 beats y1), p02 = P(y0 beats y2), p12 = P(y1 beats y2); "
        "the other entries follow from P[j, i] = 1 - P[i, j]."
    )
    summary = widgets.HTML("")
    summary.add_class("prefopt-summary")
    h = WidgetHandle(controls, figsize=(9.0, 4.4), header=[explain])
    h.widget.children = (*h.widget.children[:3], summary, h.image)
    h.summary = summary  # type: ignore[attr-defined]

    def compute() -> dict[str, Any]:
        upper = {name: controls[name].value for name, _, _ in _PAIRS}
        for name, value in upper.items():
            if not 0.0 <= value <= 1.0:  # also catches NaN
                raise ValueError(
                    f"{name} = {value:g} is outside [0, 1]: it is a probability, "
                    f"P(y{name[1]} beats y{name[2]}); the drawing shows the last valid matrix"
                )
        p01, p02, p12 = upper["p01"], upper["p02"], upper["p12"]
        matrix = check_preference_matrix(
            [[0.5, p01, p02], [1.0 - p01, 0.5, p12], [1.0 - p02, 1.0 - p12, 0.5]]
        )
        return _game_summary(matrix)

    def update(artists: dict[str, Any], data: dict[str, Any]) -> list[Any]:
        summary.value = html.escape(data["text"])
        return _update_editor(artists, data)

    # One layout: every artist is built once (the Condorcet winner's marker hidden when there is
    # none), so an edit only moves markers and bars.
    _connect(h, lambda: _update(h, compute, lambda _data: "editor", _build_editor, update))
    return h


def _game_summary(P: Tensor) -> dict[str, Any]:
    """The numbers the P editor draws, all from the library (``bt_fit`` may raise ValueError)."""
    scores = bt_fit(P)
    bt_policy = softmax(scores)
    winner = condorcet_winner(P)
    data = {
        "P": P,
        "bt_scores": scores,
        "bt_policy": bt_policy,
        "bt_P": bradley_terry(scores),
        "nash": nash_equilibrium(P),
        "condorcet_winner": winner,
        "transitive": is_transitive(P),
        "bradley_terry": is_bradley_terry(P),
        "bt_fit_gap": bt_fit_gap(P),
        "bt_fit_kl": bt_fit_kl(P),
    }
    data["bt_ranking"] = _ranking(scores)
    data["text"] = (
        f"transitive: {'yes' if data['transitive'] else 'no (a Condorcet cycle)'}; "
        f"Bradley-Terry: {'yes' if data['bradley_terry'] else 'no'}; "
        f"BT fit gap max|P - P_BT| = {data['bt_fit_gap']:.4f}, BT fit KL = {data['bt_fit_kl']:.2e} nats; "
        f"BT ranking: {data['bt_ranking']}; "
        f"Condorcet winner: {'none' if winner is None else f'y{winner}'}; "
        f"Nash equilibrium = ({', '.join(f'{p:.3f}' for p in data['nash'].tolist())})."
    )
    return data


def _xy(pi: Tensor) -> np.ndarray:
    return barycentric_to_cartesian(pi).numpy().reshape(2, 1)


def _update_editor(artists: dict[str, Any], data: dict[str, Any]) -> list[Any]:
    """Move the markers and bars to ``data``, retitle; returns the artists that moved."""
    artists["bt_policy"].set_data(*_xy(data["bt_policy"]))
    artists["nash"].set_data(*_xy(data["nash"]))
    winner = data["condorcet_winner"]
    artists["condorcet_winner"].set_visible(winner is not None)
    artists["condorcet_winner"].set_data(*_xy(_vertex(0 if winner is None else winner)))
    moved = [artists["condorcet_winner"], artists["bt_policy"], artists["nash"]]
    for key, matrix in (("bars:P", data["P"]), ("bars:bt", data["bt_P"])):
        for bar, (_, i, j) in zip(artists[key], _PAIRS):
            bar.set_height(float(matrix[i, j]))
        moved += artists[key]
    artists["title"].set_text(f"each pair: P against its BT fit (gap {data['bt_fit_gap']:.3f})")
    winner = "none" if data["condorcet_winner"] is None else f"y{data['condorcet_winner']}"
    artists["suptitle"].set_text(
        f"transitive: {'yes' if data['transitive'] else 'no'}, "
        f"Bradley-Terry: {'yes' if data['bradley_terry'] else 'no'}, Condorcet winner: {winner}"
    )
    return [*moved, artists["title"], artists["suptitle"]]


def _build_editor(fig: Figure, data: dict[str, Any]) -> dict[str, Any]:
    """Draw the whole figure; returns the artists ``_update_editor`` moves."""
    artists: dict[str, Any] = {}
    ax_s, ax_b = fig.subplots(1, 2, width_ratios=(1.0, 1.1))
    fig.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.2, wspace=0.15)
    draw_simplex(ax_s, _ACTIONS, gridlines=4)
    artists["bt_policy"] = plot_policy(
        ax_s,
        data["bt_policy"],
        marker="s",
        color=COLORS["RLHF/DPO optimum"],
        markersize=10,
        markeredgecolor="black",
        zorder=4,
        gid="bt_policy",
    )
    artists["nash"] = plot_policy(
        ax_s,
        data["nash"],
        marker="*",
        color=COLORS["Nash equilibrium"],
        markersize=16,
        markeredgecolor="white",
        zorder=5,
        gid="nash",
    )
    # Built once; _update_editor moves it to the winner, or hides it when there is none.
    artists["condorcet_winner"] = plot_policy(
        ax_s,
        _vertex(0),
        marker="s",
        markersize=17,
        markerfacecolor="none",
        markeredgecolor=COLORS["Condorcet winner"],
        markeredgewidth=1.6,
        zorder=4,
        gid="condorcet_winner",
    )
    ax_s.set_title("on the simplex", fontsize=10)
    P, bt_P = data["P"], data["bt_P"]
    labels = [f"P(y{i} > y{j})" for _, i, j in _PAIRS]
    x = np.arange(len(_PAIRS))
    bars_P = ax_b.bar(
        x - 0.2,
        [float(P[i, j]) for _, i, j in _PAIRS],
        width=0.4,
        color="0.35",
        label="P (as entered)",
        gid="bars:P",
    )
    bars_bt = ax_b.bar(
        x + 0.2,
        [float(bt_P[i, j]) for _, i, j in _PAIRS],
        width=0.4,
        color=COLORS["RLHF/DPO optimum"],
        label="best BT fit",
        gid="bars:bt",
    )
    ax_b.axhline(0.5, color="0.6", linewidth=0.8, linestyle="--")
    ax_b.set_xticks(x, labels, fontsize=9)
    ax_b.set_ylim(0.0, 1.0)
    ax_b.set_ylabel("probability")
    artists["title"] = ax_b.set_title("", fontsize=10)
    artists["bars:P"], artists["bars:bt"] = list(bars_P), list(bars_bt)
    handles = [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="s",
            color=COLORS["RLHF/DPO optimum"],
            markeredgecolor="black",
            label="BT fit: softmax of the BT scores",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="*",
            markersize=12,
            color=COLORS["Nash equilibrium"],
            label="Nash equilibrium",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="s",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor=COLORS["Condorcet winner"],
            label="Condorcet winner",
        ),
        bars_P,
        bars_bt,
    ]
    _legend_below(fig, handles, 3)
    artists["suptitle"] = fig.suptitle("", fontsize=11)
    return artists
