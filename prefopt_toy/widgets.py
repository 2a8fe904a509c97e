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
- :func:`bridge_explorer` (notebook gpt2/03): the exact toy trajectory and GPT-2's class trajectory
  (read from run logs) on one simplex; it lives in ``prefopt_toy.lm.bridge_widget`` and is
  imported on first use, so this module does not load ``transformers``.
"""

from __future__ import annotations

from .widget_beta_explorer import BETA_RANGE, beta_explorer  # noqa: F401  (re-exported: BETA_RANGE)
from .widget_handle import WidgetHandle
from .widget_nash_learning import (  # noqa: F401  (re-exported: the slider ranges and schedules)
    ETA_RANGE,
    SCHEDULES,
    TAU_RANGE,
    nash_learning,
    nash_md_bound,
)
from .widget_preference_editor import preference_editor

__all__ = ["WidgetHandle", "beta_explorer", "bridge_explorer", "nash_learning", "nash_md_bound", "preference_editor"]


def __getattr__(name: str):
    """``bridge_explorer`` on first use (the GPT-2 side is imported only when asked for)."""
    if name == "bridge_explorer":
        from .lm.bridge_widget import bridge_explorer

        return bridge_explorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
