r"""Interactive widgets of the notebooks: a preference-matrix editor, a beta explorer, Nash learning.

Every builder returns a :class:`WidgetHandle`: the root ipywidgets widget, the controls by name,
the ``matplotlib.figure.Figure`` drawn (Agg canvas, no pyplot global state), the
``ipywidgets.Image`` showing it as PNG, the numbers last drawn (``data``, for tests) and a status
line for messages. Setting ``h.controls[name].value`` (from Python or from the browser) redraws
synchronously: the callback recomputes with library calls (``prefopt_toy`` solvers and
``dynamics``), updates the artists that move in a figure built once with ``plots.draw``, blits
them over the cached rest and encodes the PNG, and updates ``h.data`` (a move at K = 3 takes tens
of milliseconds besides the computation; ``benchmarks/widget_latency.md``). Log sliders move ten
steps a decade through values of two significant digits (0.1, 0.13, 0.16, 0.2, ...).
No formula lives in a callback; the one closed form drawn here that the solvers do not provide,
Nash-MD's convergence bound, is :func:`nash_md_bound`.

The same code runs headless (tests build a widget, set ``.value`` and read ``h.data``) and in
JupyterLab (the handle as the last expression of a cell displays the widget).

- :func:`preference_editor` (notebook 01): edit a 3 x 3 ``P``; see its Bradley-Terry fit, Nash
  equilibrium, Condorcet winner and how far BT misses.
- :func:`beta_explorer` (notebook 02): the RLHF/DPO optimum as beta moves, on the simplex.
- :func:`family_explorer` (notebook 08): one DPO-family method's exact run beside DPO's optimum
  (method, beta, SimPO's gamma, R-DPO's alpha, lengths).
- :func:`token_explorer` (notebook 09): DPO, TDPO1 or TDPO2 on a token tree under a length
  judge (method, beta, alpha, the judge's strength): the mass on every sequence and the KL per
  prefix.
- :func:`unlearning_explorer` (notebook 10): gradient ascent, NPO, DPO to a refusal or AltPO on
  the exact unlearning task (method, beta, retain weight, shared bias, steps): one forget
  question's answers over training, and forgetting against the retain KL.
- :func:`judge_explorer` (notebook 11): each algorithm's fixed point under an order-biased judge
  and under its symmetrisation (bias, bias model, tau, game), with their total variation.
- :func:`nash_learning` (notebook 04): Nash-MD (decaying and constant step) and IPO-MD live, with
  the KL to the regularised Nash against Theorem 1's bound.

The GPT-2 side's widget, ``bridge_explorer`` (notebook gpt2/03: the exact toy trajectory and
GPT-2's class trajectory on one simplex), is built on :class:`WidgetHandle` in
``prefopt_toy.lm.bridge.widget``: the exact core never imports ``prefopt_toy.lm``.
"""

from __future__ import annotations

from .beta_explorer import beta_explorer
from .family_explorer import family_explorer
from .handle import WidgetHandle
from .judge_explorer import judge_explorer
from .nash_learning import nash_learning, nash_md_bound
from .preference_editor import preference_editor
from .token_explorer import token_explorer
from .unlearning_explorer import unlearning_explorer

__all__ = [
    "WidgetHandle",
    "beta_explorer",
    "family_explorer",
    "judge_explorer",
    "nash_learning",
    "nash_md_bound",
    "preference_editor",
    "token_explorer",
    "unlearning_explorer",
]
