r"""The handle every notebook widget returns, and the shared wiring and drawing helpers of the widgets.

A :class:`WidgetHandle` holds the root ipywidgets widget, the controls by name, the
``matplotlib.figure.Figure`` drawn (Agg canvas, no pyplot global state), the ``ipywidgets.Image``
showing it as PNG, the numbers last drawn (``data``) and a status line; the private helpers connect
controls to a redraw (keeping the last drawing on a ValueError), build log sliders, validate a
three-action game and place a legend under a figure. References: Munos et al., arXiv:2312.00886v4, and Azar et al., arXiv:2310.12036v2 (the solutions
the widgets draw).
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from prefopt_toy._validate import as_policy, as_preference_matrix

__all__ = ["WidgetHandle"]

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
