r"""The handle every notebook widget returns, and the shared wiring and drawing helpers of the widgets.

A :class:`WidgetHandle` holds the root ipywidgets widget, the controls by name, the
``matplotlib.figure.Figure`` drawn (Agg canvas, no pyplot global state), the ``ipywidgets.Image``
showing it as PNG, the numbers last drawn (``data``) and a status line; the private helpers connect
controls to a redraw (keeping the last drawing on a ValueError), build log sliders, validate a
three-action game and place a legend under a figure. References: Munos et al., arXiv:2312.00886v4, and Azar et al., arXiv:2310.12036v2 (the solutions
the widgets draw).

How a redraw stays fast (``benchmarks/widget_latency.md``): a widget builds its figure once and,
on a control's change, only updates the artists that move (``set_data``, ``set_height``,
``set_text``): the *dynamic* artists. The rest (triangle, grid, labels, legend, axes) is drawn once
into a background bitmap; a redraw restores that bitmap, draws the dynamic artists on top (Agg
blitting) and encodes the canvas as PNG itself (pillow, fast compression). The figure is rebuilt
and redrawn in full only when its layout changes (a widget's ``layout key``: which runs are shown,
the axis limits). Drawing everything from scratch cost ~0.15 s a move; blitting costs ~10 ms.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import traitlets
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image as _PILImage  # pillow: a dependency of matplotlib
from torch import Tensor

from prefopt_toy._validate import as_policy, as_preference_matrix

__all__ = ["WidgetHandle"]

_DPI = 90
_PNG_COMPRESS_LEVEL = 1  # zlib level: 1 encodes ~2x faster than 6 and the PNG is no larger here

_TIE_ATOL = 1e-9
"""Bradley-Terry scores closer than this count as tied (a tie computed in float64 carries ~1e-15)."""


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
        self._layout_key: Hashable = None
        self._artists: dict[str, Any] = {}
        self._background: Any = None
        for name, control in controls.items():
            control.add_class(f"prefopt-{name}")
        row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([*(header or []), row, self.status, self.image])

    def render(self) -> None:
        """Draw ``figure`` in full and put it as PNG into ``image.value`` (same figure, same bytes).

        For a figure drawn from scratch (``figure.clear()`` then drawing calls); the widgets of
        this package redraw through :meth:`_blit` instead, which draws only what moved.
        """
        self._background = None
        self._layout_key = None
        for artist in self.figure.findobj(lambda a: a.get_animated()):
            artist.set_animated(False)  # a full draw skips animated artists
        self.figure.canvas.draw()
        self.image.value = self._png()

    def _blit(self, dynamic: Sequence[Artist]) -> None:
        """Draw the background (cached) and the ``dynamic`` artists, then encode the PNG.

        The first call after a (re)build marks ``dynamic`` as animated, draws the figure without
        them and keeps that bitmap; every call restores it and draws ``dynamic`` on top, in order.
        """
        canvas = self.figure.canvas
        if self._background is None:
            for artist in dynamic:
                artist.set_animated(True)
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        else:
            canvas.restore_region(self._background)
        for artist in dynamic:
            self.figure.draw_artist(artist)
        self.image.value = self._png()

    def _png(self) -> bytes:
        """The canvas as PNG bytes (RGB, no metadata, so the same pixels give the same bytes)."""
        rgb = np.asarray(self.figure.canvas.buffer_rgba())[..., :3]
        buffer = io.BytesIO()
        _PILImage.fromarray(np.ascontiguousarray(rgb)).save(
            buffer, format="png", compress_level=_PNG_COMPRESS_LEVEL
        )
        return buffer.getvalue()

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
    layout_key: Callable[[dict[str, Any]], Hashable],
    build: Callable[[Figure, dict[str, Any]], dict[str, Any]],
    update: Callable[[dict[str, Any], dict[str, Any]], list[Artist]],
) -> None:
    """Recompute, then update the figure in place; on a ValueError keep the last drawing.

    ``build(figure, data)`` draws the whole figure and returns its artists by name; it runs when
    ``layout_key(data)`` differs from the last one. ``update(artists, data)`` sets the data of
    the artists that move and returns them (the dynamic artists, in drawing order); the handle
    blits them over the cached background. A ValueError of ``compute`` leaves the drawing and
    ``h.data`` as they were and says why in ``h.status``.
    """
    try:
        data = compute()
    except ValueError as err:
        h.show_message(str(err))
        return
    key = layout_key(data)
    if key != h._layout_key or not h._artists:
        h.figure.clear()
        h._artists = build(h.figure, data)
        h._layout_key = key
        h._background = None
    dynamic = update(h._artists, data)
    h.data = data
    h._blit(dynamic)
    h.show_message(data.pop("message", ""))


def _fmt(value: float) -> str:
    """A slider value as its readout shows it: at most three significant digits, no exponent."""
    return f"{float(f'{value:.3g}'):g}" if 1e-4 <= abs(value) < 1e6 else f"{value:.3g}"


_LOG_STEP = 0.1
"""Log sliders move by 10**0.1 ~ 1.26 a key press: ten presses a decade."""


class _RoundLogSlider(widgets.FloatLogSlider):
    """A FloatLogSlider whose value is rounded to two significant digits.

    The slider moves on a grid of ten steps a decade (``step=0.1``), whose points ``10**(k/10)``
    are irrational; the value is rounded, so a key press moves tau from 0.1 to 0.13, 0.16, 0.2,
    0.25, 0.32, 0.4, 0.5, 0.63, 0.79, 1 (the Renard R10 series, the "preferred numbers"), and the
    readout, the figure and ``h.data`` show the same number. A value set from code is rounded too.

    ``readout_format`` is d3-format's ``".3~g"`` (``~``: no trailing zeros, so 1 reads "1", not
    "1.00"), which the browser understands but ipywidgets' Python-side check predates.
    """

    readout_format = traitlets.Unicode(".3~g", help="d3-format of the readout").tag(sync=True)

    @traitlets.validate("value")
    def _validate_value(self, proposal: Any) -> float:
        value = super()._validate_value(proposal)
        return float(f"{value:.2g}")


def _log_slider(name: str, value: float, low: float, high: float) -> widgets.FloatLogSlider:
    """A base-10 log slider on [low, high], ten steps a decade, values of two significant digits.

    ``continuous_update=False``: a drag recomputes once, on release (a computation takes up to
    ~0.2 s, and a drag would queue one per pixel); each arrow-key press recomputes once. ``value``
    is checked to lie in the range, then rounded like every later value (:class:`_RoundLogSlider`).
    """
    if not low <= value <= high:
        raise ValueError(
            f"{name} must lie in [{low:g}, {high:g}] (the slider's range), got {value:g}"
        )
    return _RoundLogSlider(
        value=value,
        base=10.0,
        min=math.log10(low),
        max=math.log10(high),
        step=_LOG_STEP,
        description=name,
        continuous_update=False,
        readout_format=".3~g",  # d3-format: 0.13, 2, 100 (no trailing zeros, no exponent here)
        style={"description_width": "initial"},
    )


def _ranking(scores: Tensor, prefix: str = "y") -> str:
    """Actions by decreasing score, ``=`` between scores within ``_TIE_ATOL`` (round-off) of each other.

    ``"y1 > y0 > y2"``, ``"y0 = y2 > y1"``; ``"all tied (y0 = y1 = y2)"`` when every score ties.
    """
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    groups = [[order[0]]]
    for previous, current in zip(order, order[1:]):
        if float(scores[previous] - scores[current]) <= _TIE_ATOL:
            groups[-1].append(current)
        else:
            groups.append([current])
    text = " > ".join(" = ".join(f"{prefix}{i}" for i in sorted(g)) for g in groups)
    return f"all tied ({text})" if len(groups) == 1 and len(order) > 1 else text


def _top(scores: Tensor) -> list[int]:
    """The actions whose score is within ``_TIE_ATOL`` of the best."""
    return torch.nonzero(scores >= scores.max() - _TIE_ATOL).flatten().tolist()


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
