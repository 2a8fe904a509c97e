r"""Interactive widgets of the notebooks: a preference-matrix editor, a beta explorer, Nash learning.

Every builder returns a :class:`WidgetHandle`: the root ipywidgets widget, the controls by name,
the ``matplotlib.figure.Figure`` drawn (Agg canvas, no pyplot global state), the
``ipywidgets.Image`` showing it as PNG, the numbers last drawn (``data``, for tests) and a status
line for messages. Setting ``h.controls[name].value`` (from Python or from the browser) redraws
synchronously: the callback recomputes with library calls (``prefopt_toy`` solvers and
``dynamics``), redraws the figure with ``plotting``, re-renders the PNG and updates ``h.data``.
No formula lives in a callback; the one closed form drawn here that the solvers do not provide,
Nash-MD's convergence bound, is :func:`nash_md_bound`.

The same code runs headless (tests build a widget, set ``.value`` and read ``h.data``) and in
JupyterLab (the handle as the last expression of a cell displays the widget).

- :func:`preference_editor` (notebook 01): edit a 3 x 3 ``P``; see its Bradley-Terry fit, Nash
  equilibrium, Condorcet winner and how far BT misses.
- :func:`beta_explorer` (notebook 02): the RLHF/DPO optimum as beta moves, on the simplex.
- :func:`nash_learning` (notebook 04): Nash-MD (decaying and constant step) and IPO-MD live, with
  the KL to the regularised Nash against Theorem 1's bound.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from ._validate import as_int, as_policy, as_positive_float, as_preference_matrix, as_unit_interval
from .bt import bt_fit
from .dynamics import nash_md, redraw
from .figure_style import ALGORITHM_STYLE, mark_target, target_handles
from .game_properties import (
    bt_fit_gap,
    bt_fit_kl,
    condorcet_winner,
    is_bradley_terry,
    is_transitive,
)
from .games import bradley_terry, check_preference_matrix
from .named_games import named_game
from .nash import nash_equilibrium
from .optima import rlhf_optimum
from .plotting import COLORS, draw_simplex, plot_policy, plot_trajectory
from .policies import kl, softmax
from .regularized import ipo_md_fixed_point, regularized_nash

__all__ = ["WidgetHandle", "beta_explorer", "nash_learning", "nash_md_bound", "preference_editor"]

_DPI = 90
_ACTIONS = ("y0", "y1", "y2")


# ------------------------------------------------------------------------------------ handle


class WidgetHandle:
    """What every builder returns: the widget, its controls, the figure, the image and the data.

    Attributes
    ----------
    widget : ipywidgets.Widget
        The root widget. A handle left as the last expression of a cell displays it.
    controls : dict of str -> ipywidgets control
        The controls by name (``"beta"``, ``"tau"``, ...). Each has ``description=<name>`` and the
        CSS class ``prefopt-<name>``.
    figure : matplotlib.figure.Figure
        The figure drawn, with an Agg canvas (no pyplot).
    image : ipywidgets.Image
        The figure as PNG (CSS class ``prefopt-figure``), re-rendered on every redraw.
    data : dict
        The numbers last drawn (policies, trajectories, ...), for tests and for the curious.
    status : ipywidgets.HTML
        The last message (an invalid entry, an invalid combination); ``""`` when all is well.

    References
    ----------
    The widgets draw the solutions of Munos et al., arXiv:2312.00886v4, and Azar et al.,
    arXiv:2310.12036v2; the handle itself follows ipywidgets' ``interactive`` (a widget plus its
    controls and result).
    """

    def __init__(
        self,
        controls: dict[str, widgets.Widget],
        figsize: tuple[float, float],
        header: list[widgets.Widget] | None = None,
    ) -> None:
        self.controls = controls
        # A fixed layout (each draw function sets its margins): constrained layout would double
        # the cost of a redraw (~0.1 s), which a slider feels.
        self.figure = Figure(figsize=figsize, dpi=_DPI)
        FigureCanvasAgg(self.figure)  # attaches itself as figure.canvas
        self.image = widgets.Image(format="png")
        self.image.add_class("prefopt-figure")
        self.status = widgets.HTML("")
        self.status.add_class("prefopt-status")
        self.data: dict[str, Any] = {}
        for name, control in controls.items():
            control.add_class(f"prefopt-{name}")
        row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([*(header or []), row, self.status, self.image])

    def render(self) -> None:
        """Render ``figure`` to PNG bytes into ``image.value`` (no timestamp: same figure, same bytes)."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
        self.image.value = buffer.getvalue()

    def show_message(self, message: str) -> None:
        """Put ``message`` (plain text) in ``status``, in red; ``""`` clears it."""
        self.status.value = (
            f'<span style="color:#b00020">{html.escape(message)}</span>' if message else ""
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _connect(h: WidgetHandle, refresh: Callable[[], None]) -> None:
    """Call ``refresh`` on every change of a control's value, then once now."""
    for control in h.controls.values():
        control.observe(lambda _change: refresh(), names="value")
    refresh()


def _update(
    h: WidgetHandle,
    compute: Callable[[], dict[str, Any]],
    draw: Callable[[Figure, dict[str, Any]], None],
) -> None:
    """Recompute; on a ValueError keep the last drawing and say why in ``h.status``."""
    try:
        data = compute()
    except ValueError as err:
        h.show_message(str(err))
        return
    h.figure.clear()
    draw(h.figure, data)
    h.data = data
    h.render()
    h.show_message(data.pop("message", ""))


def _log_slider(name: str, value: float, low: float, high: float) -> widgets.FloatLogSlider:
    """A base-10 log slider on [low, high] (``continuous_update=False``), ``value`` checked inside."""
    if not low <= value <= high:
        raise ValueError(
            f"{name} must lie in [{low:g}, {high:g}] (the slider's range), got {value:g}"
        )
    return widgets.FloatLogSlider(
        value=value,
        base=10.0,
        min=math.log10(low),
        max=math.log10(high),
        step=0.01,
        description=name,
        continuous_update=False,
        readout_format=".3g",
        style={"description_width": "initial"},
    )


def _three_action_game(P: Any, mu: Any) -> tuple[Tensor, Tensor]:
    P_t = as_preference_matrix(P, "P")
    if P_t.shape != (3, 3):
        raise ValueError(
            f"P must be 3 x 3 (three actions, drawn on the simplex), got {tuple(P_t.shape)}"
        )
    return P_t, as_policy(mu, "mu", size=3, positive=True)


def _vertex(i: int) -> Tensor:
    return torch.eye(3, dtype=torch.float64)[i]


def _legend_below(fig: Figure, handles: list[Any], ncols: int) -> None:
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=ncols,
        fontsize=8,
        frameon=False,
    )


# --------------------------------------------------------------------------- P editor (01)

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
    \hat r_j)`. The text says whether ``P`` is transitive and Bradley-Terry and gives the fit gap.

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
        ``"transitive"``, ``"bradley_terry"``, ``"bt_fit_gap"``, ``"bt_fit_kl"``.
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

    def draw(fig: Figure, data: dict[str, Any]) -> None:
        _draw_editor(fig, data)
        summary.value = html.escape(data["text"])

    _connect(h, lambda: _update(h, compute, draw))
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
    order = torch.argsort(scores, descending=True).tolist()
    ranking = " > ".join(f"y{i}" for i in order)
    data["text"] = (
        f"transitive: {'yes' if data['transitive'] else 'no (a Condorcet cycle)'}; "
        f"Bradley-Terry: {'yes' if data['bradley_terry'] else 'no'}; "
        f"BT fit gap max|P - P_BT| = {data['bt_fit_gap']:.4f}, BT fit KL = {data['bt_fit_kl']:.2e} nats; "
        f"BT ranking {ranking}; "
        f"Condorcet winner: {'none' if winner is None else f'y{winner}'}; "
        f"Nash equilibrium = ({', '.join(f'{p:.3f}' for p in data['nash'].tolist())})."
    )
    return data


def _draw_editor(fig: Figure, data: dict[str, Any]) -> None:
    ax_s, ax_b = fig.subplots(1, 2, width_ratios=(1.0, 1.1))
    fig.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.2, wspace=0.15)
    draw_simplex(ax_s, _ACTIONS, gridlines=4)
    plot_policy(
        ax_s,
        data["bt_policy"],
        marker="s",
        color=COLORS["RLHF/DPO optimum"],
        markersize=10,
        markeredgecolor="black",
        zorder=4,
        gid="bt_policy",
    )
    plot_policy(
        ax_s,
        data["nash"],
        marker="*",
        color=COLORS["Nash equilibrium"],
        markersize=16,
        markeredgecolor="white",
        zorder=5,
        gid="nash",
    )
    if data["condorcet_winner"] is not None:
        plot_policy(
            ax_s,
            _vertex(data["condorcet_winner"]),
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
    ax_b.set_title(f"each pair: P against its BT fit (gap {data['bt_fit_gap']:.3f})", fontsize=10)
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
    winner = "none" if data["condorcet_winner"] is None else f"y{data['condorcet_winner']}"
    fig.suptitle(
        f"transitive: {'yes' if data['transitive'] else 'no'}, "
        f"Bradley-Terry: {'yes' if data['bradley_terry'] else 'no'}, Condorcet winner: {winner}",
        fontsize=11,
    )


# ------------------------------------------------------------------------ beta explorer (02)

_TIE_ATOL = 1e-9  # BT scores closer than this count as tied (they carry round-off ~1e-16)

BETA_RANGE = (1e-2, 1e2)
"""The beta slider's range (log scale)."""


def beta_explorer(P: Any, mu: Any, beta: float = 1.0) -> WidgetHandle:
    r"""The RLHF/DPO optimum :math:`\pi_\beta \propto \mu\exp(\hat r/\beta)` on the simplex as beta moves.

    A log-scale slider ``beta`` (1e-2 to 1e2) moves the optimum ``rlhf_optimum(P, mu, beta)``
    (``hat r = bt_fit(P)``, pairs uniform). The whole path over the slider's range is drawn
    faintly, with its two ends labelled: small beta (weak KL) goes to the vertex of the
    Bradley-Terry argmax, large beta (strong KL) back to ``mu``. A bar panel compares the
    optimum with ``mu`` action by action.

    Parameters
    ----------
    P : array-like, shape (3, 3)
        Preference matrix.
    mu : array-like, shape (3,)
        Reference policy, strictly positive.
    beta : float in [0.01, 100], default 1.0
        Starting KL strength.

    Returns
    -------
    WidgetHandle
        ``controls``: ``"beta"``. ``data``: ``"beta"``, ``"optimum"`` (= ``rlhf_optimum(P, mu,
        beta)``), ``"path_betas"`` (N,), ``"path"`` (N, 3), ``"bt_scores"``, ``"bt_argmax"``
        (vertex; None on a tie for the top score), ``"mu"``.

    Raises
    ------
    ValueError
        ``P`` not a 3 x 3 preference matrix, ``mu`` not a positive policy on 3 actions, ``beta``
        outside the slider's range.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (4); Azar et al., arXiv:2310.12036v2, Eq. (3).
    """
    P_t, mu_t = _three_action_game(P, mu)
    beta_f = as_positive_float(beta, "beta")
    controls = {"beta": _log_slider("beta", beta_f, *BETA_RANGE)}
    h = WidgetHandle(controls, figsize=(9.0, 4.2))
    # The path does not depend on the slider: computed once, one library call per beta.
    path_betas = torch.logspace(
        math.log10(BETA_RANGE[0]), math.log10(BETA_RANGE[1]), 81, dtype=torch.float64
    )
    path = torch.stack([rlhf_optimum(P_t, mu_t, float(b)) for b in path_betas])
    scores = bt_fit(P_t)
    # A tie for the top BT score (e.g. rock-paper-scissors, all scores 0) has no single vertex.
    top = torch.nonzero(scores >= scores.max() - _TIE_ATOL).flatten()
    fixed = {
        "path_betas": path_betas,
        "path": path,
        "bt_scores": scores,
        "bt_argmax": _vertex(int(top[0])) if len(top) == 1 else None,
        "mu": mu_t,
    }

    def compute() -> dict[str, Any]:
        b = float(controls["beta"].value)
        return {**fixed, "beta": b, "optimum": rlhf_optimum(P_t, mu_t, b)}

    _connect(h, lambda: _update(h, compute, _draw_beta))
    return h


def _draw_beta(fig: Figure, data: dict[str, Any]) -> None:
    ax, ax_b = fig.subplots(1, 2, width_ratios=(1.3, 1.0))
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.22, wspace=0.12)
    draw_simplex(ax, _ACTIONS, gridlines=4)
    color = COLORS["RLHF/DPO optimum"]
    plot_trajectory(ax, data["path"], color=color, alpha=0.3, linewidth=3.0, zorder=2, gid="path")
    small, large = data["path"][0], data["path"][-1]
    where = "BT argmax" if data["bt_argmax"] is not None else "mu on the tied top BT scores"
    _annotate_end(
        ax,
        small,
        rf"small $\beta$ (weak KL) $\to$ {where}" + f"\n(β = {data['path_betas'][0]:g})",
        outward=True,
    )
    _annotate_end(
        ax,
        large,
        r"large $\beta$ (strong KL) $\to \mu$" + f"\n(β = {data['path_betas'][-1]:g})",
        outward=False,
    )
    mark_target(ax, "reference mu", data["mu"], "mu")
    if data["bt_argmax"] is not None:
        plot_policy(
            ax,
            data["bt_argmax"],
            marker="o",
            markersize=14,
            markerfacecolor="none",
            markeredgecolor=color,
            markeredgewidth=1.5,
            zorder=4,
            gid="bt_argmax",
        )
    plot_policy(
        ax,
        data["optimum"],
        marker="o",
        markersize=11,
        color=color,
        markeredgecolor="black",
        zorder=6,
        gid="optimum",
    )
    ax.set_title(rf"RLHF/DPO optimum at $\beta$ = {data['beta']:.3g}", fontsize=11)
    x = np.arange(3)
    ax_b.bar(
        x - 0.2,
        data["optimum"].numpy(),
        width=0.4,
        color=color,
        label=r"$\pi_\beta$",
        gid="bars:optimum",
    )
    ax_b.bar(
        x + 0.2,
        data["mu"].numpy(),
        width=0.4,
        color=COLORS["reference mu"],
        label=r"$\mu$",
        gid="bars:mu",
    )
    ax_b.set_xticks(
        x,
        [f"{a}\n(BT score {s:+.2f})" for a, s in zip(_ACTIONS, data["bt_scores"].tolist())],
        fontsize=8,
    )
    ax_b.set_ylim(0.0, 1.0)
    ax_b.set_ylabel("probability")
    ax_b.legend(fontsize=9)
    ax_b.set_title(r"$\pi_\beta(y) \propto \mu(y)\, e^{\hat r(y)/\beta}$", fontsize=11)
    handles = [
        Line2D(
            [],
            [],
            color=color,
            alpha=0.3,
            linewidth=3.0,
            label=r"path over $\beta$ from 0.01 to 100",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            color=color,
            markeredgecolor="black",
            label=r"optimum at the slider's $\beta$",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            markeredgecolor=color,
            markersize=11,
            label="BT argmax (vertex)",
        ),
        *target_handles(["reference mu"]),
    ]
    _legend_below(fig, handles, 4)


def _annotate_end(ax: Axes, pi: Tensor, text: str, outward: bool) -> None:
    """An arrow to the policy ``pi`` on the simplex from a label beside it: under the triangle for a
    point near the bottom edge, to the right for one higher up (``outward``, an end of the path
    near the boundary), or straight above (a point inside)."""
    line = plot_policy(ax, pi, marker=".", color="0.4", markersize=4)
    x, y = line.get_xydata()[0]
    offset, ha = (0.0, 55.0), "center"
    if outward:
        if y < 0.3:
            offset, ha = (0.0, -34.0), "left" if x < 0.5 else "right"
        else:
            offset, ha = (25.0, 0.0), "left"
    ax.annotate(
        text,
        xy=(x, y),
        xytext=offset,
        textcoords="offset points",
        fontsize=8,
        ha=ha,
        va="center",
        annotation_clip=False,
        arrowprops={"arrowstyle": "->", "color": "0.3", "linewidth": 0.8},
    )


# ------------------------------------------------------------------------ Nash learning (04)

TAU_RANGE = (1e-2, 1e1)
"""The tau slider's range (log scale)."""
ETA_RANGE = (1e-2, 1e2)
"""The constant-step slider's range (log scale)."""
SCHEDULES = ("both", "decaying", "constant")
"""Which Nash-MD runs ``nash_learning`` draws: both, only the decaying step, only the constant one."""


def nash_md_bound(tau: float, T: Any) -> Any:
    r"""Nash-MD's last-iterate bound :math:`KL(\pi^*_\tau\|\pi_T) \le 8/(\tau^2(T+1))`.

    Valid for the decaying step :math:`\eta_t = 2/(\tau(t+2))` from any :math:`\pi_0` with full
    support; it does not depend on :math:`\min\mu`. A constant step has no such bound (it converges
    elsewhere).

    Parameters
    ----------
    tau : float > 0
        KL strength.
    T : int, float or numpy array
        Number of steps.

    Returns
    -------
    float or numpy array, like ``T``.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Theorem 1.

    Examples
    --------
    >>> nash_md_bound(0.5, 31)  # 8 / (0.25 * 32)
    1.0
    """
    tau_f = as_positive_float(tau, "tau")
    return (
        8.0 / (tau_f**2 * (np.asarray(T, dtype=float) + 1.0))
        if np.ndim(T)
        else 8.0 / (tau_f**2 * (T + 1.0))
    )


_RUN_STYLE = {
    "decaying": {
        "color": ALGORITHM_STYLE["nash_md"][0],
        "linewidth": 2.0,
        "label": r"Nash-MD, decaying $\eta_t = 2/(\tau(t+2))$",
    },
    "constant": {"color": "tab:orange", "linewidth": 1.6, "label": r"Nash-MD, constant $\eta$"},
    "ipo_md": {
        "color": ALGORITHM_STYLE["ipo_md"][0],
        "linewidth": 1.4,
        "linestyle": (0, (4, 2)),
        "label": "IPO-MD at the mixture",
    },
}
_LIMIT_STYLE = {"marker": "v", "color": "tab:orange", "markersize": 10}


def nash_learning(
    P: Any,
    mu: Any,
    tau: float = 0.1,
    *,
    eta: float = 1.0,
    mixture: float = 0.125,
    steps: int = 1000,
    schedule: str = "both",
) -> WidgetHandle:
    r"""Nash-MD and IPO-MD live on the simplex, with the KL to the regularised Nash against Theorem 1's bound.

    Controls: ``tau`` (log slider, 0.01 to 10), ``eta`` (the constant step, log slider, 0.01 to
    100), ``schedule`` (which Nash-MD runs to draw: ``"both"``, ``"decaying"`` for
    :math:`\eta_t = 2/(\tau(t+2))`, ``"constant"`` for the slider's eta), ``mixture`` (IPO-MD's
    weight of mu) and ``steps``. Drawn: the trajectories from :math:`\pi_0 = \mu`
    (``nash_md`` with and without ``eta``; IPO-MD through ``dynamics.redraw``); the regularised Nash
    :math:`\pi^*_\tau`, the IPO-MD fixed point at the mixture, and the limit of the constant step
    (the IPO-MD fixed point with mixture :math:`\eta\tau`); and, on log-log axes,
    :math:`KL(\pi^*_\tau\|\pi_t)` against t beside the bound :math:`8/(\tau^2(t+1))`.

    A constant step needs :math:`\eta\tau \le 1`; otherwise its run is left out and ``h.status``
    says so (nothing raises).

    Parameters
    ----------
    P : array-like, shape (3, 3)
        Preference matrix.
    mu : array-like, shape (3,)
        Reference policy (and start), strictly positive.
    tau : float in [0.01, 10], default 0.1
        KL strength.
    eta : float in [0.01, 100], default 1.0
        Constant step of the constant-step run.
    mixture : float in [0, 1], default 0.125
        IPO-MD's weight of mu in the sampling mixture.
    steps : int >= 1, default 1000
        Number of steps of every run.
    schedule : {"both", "decaying", "constant"}
        Which Nash-MD runs to draw.

    Returns
    -------
    WidgetHandle
        ``controls``: ``"tau"``, ``"eta"``, ``"schedule"``, ``"mixture"``, ``"steps"``. ``data``:
        the settings; ``"trajectories"`` (name -> (steps + 1, 3) policies, names among
        ``"decaying"``, ``"constant"``, ``"ipo_md"``); ``"kl"`` (name -> (steps + 1,)
        :math:`KL(\pi^*_\tau\|\pi_t)`); ``"final_kl"`` (name -> float); ``"bound"`` (the bound at
        ``steps``); ``"regularized_nash"``, ``"ipo_md_fixed_point"``, ``"constant_limit"``
        (None when left out).

    Raises
    ------
    ValueError
        Malformed ``P`` / ``mu``, a value outside its slider's range, an unknown ``schedule``.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 6 (Nash-MD) and Theorem 1; Calandriello et al.,
    arXiv:2403.08635v1, Sec. 5 (IPO-MD and its fixed point).
    """
    P_t, mu_t = _three_action_game(P, mu)
    tau_f, eta_f = as_positive_float(tau, "tau"), as_positive_float(eta, "eta")
    mixture_f = as_unit_interval(mixture, "mixture")
    steps_i = as_int(steps, "steps", minimum=1)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    controls = {
        "tau": _log_slider("tau", tau_f, *TAU_RANGE),
        "eta": _log_slider("eta", eta_f, *ETA_RANGE),
        "schedule": widgets.ToggleButtons(
            options=SCHEDULES,
            value=schedule,
            description="schedule",
            style={"button_width": "80px"},
        ),
        "mixture": widgets.FloatSlider(
            value=mixture_f,
            min=0.0,
            max=1.0,
            step=0.005,
            description="mixture",
            continuous_update=False,
            readout_format=".3f",
        ),
        "steps": widgets.IntSlider(
            value=steps_i,
            min=1,
            max=max(2000, steps_i),
            step=1,
            description="steps",
            continuous_update=False,
        ),
    }
    h = WidgetHandle(controls, figsize=(10.0, 4.6))

    def compute() -> dict[str, Any]:
        values = {name: c.value for name, c in controls.items()}
        controls["eta"].disabled = values["schedule"] == "decaying"
        return _nash_learning_data(P_t, mu_t, **values)

    _connect(h, lambda: _update(h, compute, _draw_nash_learning))
    return h


def _nash_learning_data(
    P: Tensor, mu: Tensor, tau: float, eta: float, schedule: str, mixture: float, steps: int
) -> dict[str, Any]:
    """Every number ``nash_learning`` draws, from library calls only."""
    star = regularized_nash(P, mu, tau)
    runs = {}
    message = ""
    if schedule in ("both", "decaying"):
        runs["decaying"] = nash_md(P, mu, tau=tau, steps=steps)
    constant_limit = None
    if schedule in ("both", "constant"):
        if eta * tau > 1.0:
            message = (
                f"constant step left out: eta * tau = {eta:.3g} * {tau:.3g} = {eta * tau:.3g} > 1, "
                "but eta * tau is the weight of mu in Nash-MD's mixture and must be <= 1; "
                "lower eta or tau"
            )
        else:
            runs["constant"] = nash_md(P, mu, tau=tau, steps=steps, eta=eta)
            constant_limit = ipo_md_fixed_point(P, mu, tau, eta * tau)
    runs["ipo_md"] = redraw(P, mu, tau=tau, steps=steps, mixture=mixture, names=("ipo_md",))[
        "ipo_md"
    ]
    kls = {name: run.kl_to(star) for name, run in runs.items()}
    return {
        "tau": tau,
        "eta": eta,
        "schedule": schedule,
        "mixture": mixture,
        "steps": steps,
        "trajectories": {name: run.policies for name, run in runs.items()},
        "kl": kls,
        "final_kl": {name: float(v[-1]) for name, v in kls.items()},
        "bound": nash_md_bound(tau, steps),
        "mu": mu,
        "regularized_nash": star,
        "ipo_md_fixed_point": ipo_md_fixed_point(P, mu, tau, mixture),
        "constant_limit": constant_limit,
        "plateaus": {
            "ipo_md": kl(star, ipo_md_fixed_point(P, mu, tau, mixture)),
            **({"constant": kl(star, constant_limit)} if constant_limit is not None else {}),
        },
        "message": message,
    }


def _draw_nash_learning(fig: Figure, data: dict[str, Any]) -> None:
    ax, ax_k = fig.subplots(1, 2, width_ratios=(1.0, 1.15))
    fig.subplots_adjust(left=0.01, right=0.98, top=0.92, bottom=0.3, wspace=0.15)
    draw_simplex(ax, _ACTIONS, gridlines=4)
    for name, policies in data["trajectories"].items():
        style = _RUN_STYLE[name]
        plot_trajectory(
            ax,
            policies,
            zorder=3,
            gid=f"trajectory:{name}",
            **{k: v for k, v in style.items() if k != "label"},
        )
    mark_target(ax, "regularized Nash", data["regularized_nash"], "regularized_nash")
    mark_target(ax, "IPO-MD fixed point", data["ipo_md_fixed_point"], "ipo_md_fixed_point")
    if data["constant_limit"] is not None:
        plot_policy(
            ax,
            data["constant_limit"],
            markeredgecolor="black",
            markeredgewidth=0.8,
            zorder=6,
            gid="constant_limit",
            **_LIMIT_STYLE,
        )
    mark_target(ax, "reference mu", data["mu"], "mu")
    ax.set_title(
        rf"from $\pi_0 = \mu$, {data['steps']} steps, $\tau$ = {data['tau']:.3g}", fontsize=10
    )

    t = np.arange(1, data["steps"] + 1, dtype=float)
    (bound_line,) = ax_k.plot(
        t,
        nash_md_bound(data["tau"], t),
        color="0.45",
        linestyle=(0, (1, 1.5)),
        linewidth=1.6,
        gid="bound",
        label=r"bound $8/(\tau^2(t+1))$ (Munos et al., Thm. 1)",
    )
    for name, values in data["kl"].items():
        style = _RUN_STYLE[name]
        y = values[1:].numpy()
        ax_k.plot(t, np.where(y > 0, y, np.nan), gid=f"kl:{name}", **style)
        if name in data["plateaus"]:
            ax_k.axhline(
                data["plateaus"][name],
                color=style["color"],
                linestyle="--",
                linewidth=0.9,
                gid=f"plateau:{name}",
            )
    ax_k.set_xscale("log")
    ax_k.set_yscale("log")
    ax_k.minorticks_off()  # log minor ticks are a third of a redraw's cost
    ax_k.set_xlim(1, max(data["steps"], 2))
    ax_k.set_ylim(bottom=max(1e-16, ax_k.get_ylim()[0]))
    ax_k.grid(True, which="major", color="0.9")
    ax_k.set_xlabel("step t")
    ax_k.set_ylabel(r"$KL(\pi^*_\tau \,\|\, \pi_t)$ (nats)")
    ax_k.set_title("distance to the regularized Nash (dashed: each run's limit)", fontsize=10)
    labels = {
        "decaying": "",
        "constant": rf" ($\eta$ = {data['eta']:.3g}, $\eta\tau$ = {data['eta'] * data['tau']:.3g})",
        "ipo_md": f" {data['mixture']:.3g}",
    }
    handles = [
        Line2D([], [], **{**style, "label": style["label"] + labels[name]})
        for name, style in _RUN_STYLE.items()
        if name in data["trajectories"]
    ]
    handles += target_handles(["regularized Nash", "IPO-MD fixed point"])
    if data["constant_limit"] is not None:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                markeredgecolor="black",
                label=r"constant step's limit: IPO-MD fixed point, mixture $\eta\tau$",
                **_LIMIT_STYLE,
            )
        )
    handles += target_handles(["reference mu"])
    handles.append(bound_line)  # the dotted grey curve of the right panel
    _legend_below(fig, handles, 3)
