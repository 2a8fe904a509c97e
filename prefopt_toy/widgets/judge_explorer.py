r"""The judge explorer of notebook 11: each algorithm's fixed point under a raw, order-biased judge.

A judge ``J`` (``games.judges``) says whether the FIRST shown answer wins; its position bias is
:math:`B = J + J^\top - 1` and both orders averaged give :math:`P_{\mathrm{sym}} = (J + 1 - J^\top)/2`.
:func:`judge_explorer_data`, a pure function (no widgets), builds a biased judge from a named
three-action game (:func:`judge_game`) with one of two bias models (:func:`biased_judge`: a lapse
rate or a first-slot bonus in the log-odds) and returns, per algorithm, the population fixed point
under the raw judge and under :math:`P_{\mathrm{sym}}` with their total variation
(``analysis.judges.judge_fixed_points``): zero for every algorithm whose pairs come from one
distribution, not for Nash-MD / Nash-MD-PG (which see ``J`` itself) nor for offline data whose
first slot comes from another distribution than the second ("two-slot"). :func:`judge_explorer`
is the thin ipywidgets layer over it (bias, bias model, tau, game). References: Zheng et al.,
arXiv:2306.05685v4, Sec. 3.3 (position bias); Lee et al., arXiv:2309.00267v3, Sec. 2.1.2 (both
orders averaged); Munos et al., arXiv:2312.00886v4, Sec. 4 and 7 (Nash-MD, Nash-MD-PG).
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from torch import Tensor

from prefopt_toy._validate import DTYPE, _detached, as_float, as_policy, as_unit_interval
from prefopt_toy.analysis.judges import judge_fixed_points
from prefopt_toy.games.constructors import bradley_terry, rock_paper_scissors, three_voter_types
from prefopt_toy.games.judges import (
    lapse_judge,
    logit_shift_judge,
    max_position_bias,
    position_bias,
    symmetrize_judge,
)

from .handle import WidgetHandle, _connect, _fmt, _legend_below, _log_slider, _update

__all__ = [
    "JUDGE_BIAS_RANGE",
    "JUDGE_COLUMNS",
    "JUDGE_GAMES",
    "JUDGE_MODELS",
    "JUDGE_TAU_RANGE",
    "biased_judge",
    "judge_explorer",
    "judge_explorer_data",
    "judge_game",
]

JUDGE_GAMES: tuple[str, ...] = ("three voter types", "rock-paper-scissors", "bradley-terry")
"""The named games: ``three_voter_types(0.1)``, ``rock_paper_scissors(0.8)``,
``bradley_terry([0, 0.3, 0.6])``."""
JUDGE_MODELS: tuple[str, ...] = ("logit shift", "lapse")
"""The bias models: ``logit_shift_judge`` (a first-slot bonus in the log-odds, largest on
near-ties) and ``lapse_judge`` (a fixed rate of slot-picking, a uniform ``B``)."""
JUDGE_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("dpo", "DPO", False),
    ("ipo", "IPO", False),
    ("online_ipo", "online IPO", False),
    ("ipo_md", "IPO-MD", False),
    ("nash_md", "Nash-MD", False),
    ("nash_md_pg", "Nash-MD-PG", False),
    ("dpo", "DPO two-slot", True),
    ("ipo", "IPO two-slot", True),
)
"""The explorer's columns: (algorithm, label, two-slot data). Two-slot: the first shown answer
drawn from ``mu``, the second from the uniform policy (``judge_fixed_points(..., slots=...)``)."""
JUDGE_BIAS_RANGE = (-0.95, 0.95)
"""The bias slider: ``B`` on a tie (the judge's first-slot advantage when the answers are equal)."""
JUDGE_TAU_RANGE = (0.05, 2.0)
"""The tau slider's range (log scale)."""
_ACTION_COLORS = ("tab:blue", "tab:orange", "tab:green")
_TV_FLOOR = 1e-4  # the TV panel is logarithmic, from 1e-4 to 1; a smaller TV shows no bar


def judge_game(game: str) -> Tensor:
    """The preference matrix (3, 3) of a named game of ``JUDGE_GAMES``.

    Raises
    ------
    ValueError
        If ``game`` is not in ``JUDGE_GAMES``.
    """
    if game == "three voter types":
        return three_voter_types(0.1)
    if game == "rock-paper-scissors":
        return rock_paper_scissors(0.8)
    if game == "bradley-terry":
        return bradley_terry([0.0, 0.3, 0.6])
    raise ValueError(f"game must be one of {JUDGE_GAMES}, got {game!r}")


def biased_judge(P: Any, model: str, bias: Any) -> Tensor:
    r"""A raw judge of ``P`` whose position bias on a tie is ``bias``, under one of two models.

    ``"lapse"``: ``lapse_judge(P, bias)`` (:math:`B = b` everywhere). ``"logit shift"``:
    ``logit_shift_judge(P, 2 atanh(bias))``, whose :math:`B` on a tie is
    :math:`\tanh(\text{shift}/2) = b` and smaller on clear pairs. One slider thus means the same
    thing (the first slot's advantage between equal answers) for both models.

    Parameters
    ----------
    P : array-like, shape (K, K)
        The honest preference matrix.
    model : one of ``JUDGE_MODELS``.
    bias : float in (-1, 1)

    Raises
    ------
    ValueError
        Naming the argument: an unknown ``model``, ``bias`` outside (-1, 1), a bad ``P``.

    References
    ----------
    Zheng et al., arXiv:2306.05685v4, Sec. 3.3 (position bias of LLM judges).
    """
    if model not in JUDGE_MODELS:
        raise ValueError(f"model must be one of {JUDGE_MODELS}, got {model!r}")
    b = as_float(bias, "bias")
    if not -1.0 < b < 1.0:
        raise ValueError(f"bias must lie in (-1, 1) (the position bias on a tie), got {b!r}")
    if model == "lapse":
        return lapse_judge(P, b)
    return logit_shift_judge(P, 2.0 * math.atanh(b))


def judge_explorer_data(
    game: str = "three voter types",
    model: str = "logit shift",
    bias: float = 0.5,
    tau: float = 0.1,
    mu: Any = (0.6, 0.3, 0.1),
    mixture: float = 0.5,
) -> dict[str, Any]:
    r"""Each algorithm's fixed point under a biased judge and under its symmetrisation; no widgets.

    Parameters
    ----------
    game : one of ``JUDGE_GAMES``. model : one of ``JUDGE_MODELS``.
    bias : float in (-1, 1): the position bias on a tie (:func:`biased_judge`).
    tau : float > 0: the KL strength (DPO's beta).
    mu : (3,) positive reference (also the offline data and the first slot of the two-slot data).
    mixture : float in [0, 1): IPO-MD's and Nash-MD-PG's mixture weight.

    Returns
    -------
    dict
        ``"game"``, ``"model"``, ``"bias"``, ``"tau"``, ``"mixture"``; ``"P"`` the honest game,
        ``"J"`` the raw judge, ``"P_sym"``, ``"B"`` (3, 3); ``"max_bias"``
        (``max_position_bias``); ``"mu"`` (3,); ``"labels"`` the column labels of
        ``JUDGE_COLUMNS``; ``"raw"`` and ``"symmetrized"`` (n_columns, 3) the fixed points;
        ``"distance"`` (n_columns,) their total variation; ``"residual"`` (n_columns,) the raw
        fixed point's certificate (0 for a closed form).

    Raises
    ------
    ValueError
        A bad argument (named), or a raw fixed point that cannot be certified: a bias large
        against tau can fold the branch followed from the symmetrised judge. No slider setting
        does: the extremes are tested, and every setting on a grid of 0.05 in bias by 9 values
        of tau (2106 in all) was checked once.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 4 (Nash-MD); Lee et al., arXiv:2309.00267v3,
    Sec. 2.1.2; Azar et al., arXiv:2310.12036v2, Eq. (8) (the offline optima).
    """
    P = judge_game(game)
    J = biased_judge(P, model, bias)
    mu_t = as_policy(_detached(mu), "mu", size=3, positive=True)
    m = as_unit_interval(mixture, "mixture")
    pooled = judge_fixed_points(
        J, mu_t, tau, [a for a, _, two in JUDGE_COLUMNS if not two], mixture=m
    )
    slots = (mu_t, torch.full((3,), 1.0 / 3.0, dtype=DTYPE))
    two_slot = judge_fixed_points(
        J, mu_t, tau, [a for a, _, two in JUDGE_COLUMNS if two], mixture=m, slots=slots
    )
    fps = [(two_slot if two else pooled)[a] for a, _, two in JUDGE_COLUMNS]
    return {
        "game": game,
        "model": model,
        "bias": float(bias),
        "tau": float(tau),
        "mixture": m,
        "P": P,
        "J": J,
        "P_sym": symmetrize_judge(J),
        "B": position_bias(J),
        "max_bias": max_position_bias(J),
        "mu": mu_t,
        "labels": [label for _, label, _ in JUDGE_COLUMNS],
        "raw": torch.stack([f.raw for f in fps]),
        "symmetrized": torch.stack([f.symmetrized for f in fps]),
        "distance": torch.tensor([f.distance for f in fps], dtype=DTYPE),
        "residual": torch.tensor([f.residual for f in fps], dtype=DTYPE),
    }


def judge_explorer(
    game: str = "three voter types",
    model: str = "logit shift",
    bias: float = 0.5,
    tau: float = 0.1,
    mu: Any = (0.6, 0.3, 0.1),
    mixture: float = 0.5,
) -> WidgetHandle:
    r"""Every algorithm's fixed point under a position-biased judge beside the symmetrised one, live.

    Left: per algorithm (``JUDGE_COLUMNS``), three bars, the raw judge's fixed point (one colour
    per action), with black ticks at the symmetrised judge's. Right: their total variation (log scale from 1e-4, the value written above each bar). Only
    Nash-MD, Nash-MD-PG and the two-slot offline data move off zero.

    Parameters
    ----------
    game : one of ``JUDGE_GAMES``. model : one of ``JUDGE_MODELS``.
    bias : float in [-0.95, 0.95]: the position bias on a tie (slider).
    tau : float in [0.05, 2] (log slider).
    mu : (3,) positive reference. mixture : float in [0, 1), fixed (Nash-MD-PG, IPO-MD).

    Returns
    -------
    WidgetHandle
        ``controls``: ``"bias"``, ``"model"``, ``"tau"``, ``"game"``. ``data``:
        :func:`judge_explorer_data`'s dict.

    References
    ----------
    Zheng et al., arXiv:2306.05685v4, Sec. 3.3; Munos et al., arXiv:2312.00886v4, Sec. 4 and 7.
    """
    if game not in JUDGE_GAMES:
        raise ValueError(f"game must be one of {JUDGE_GAMES}, got {game!r}")
    if model not in JUDGE_MODELS:
        raise ValueError(f"model must be one of {JUDGE_MODELS}, got {model!r}")
    low, high = JUDGE_BIAS_RANGE
    if not low <= as_float(bias, "bias") <= high:
        raise ValueError(f"bias must lie in [{low:g}, {high:g}] (the slider's range), got {bias!r}")
    mu_t = as_policy(_detached(mu), "mu", size=3, positive=True)
    m = as_unit_interval(mixture, "mixture")
    slider = {"continuous_update": False, "style": {"description_width": "initial"}}
    controls = {
        "bias": widgets.FloatSlider(value=float(bias), min=low, max=high, step=0.05, description="bias", **slider),
        "model": widgets.Dropdown(options=list(JUDGE_MODELS), value=model, description="model"),
        "tau": _log_slider("tau", float(tau), *JUDGE_TAU_RANGE),
        "game": widgets.Dropdown(options=list(JUDGE_GAMES), value=game, description="game"),
    }  # fmt: skip
    h = WidgetHandle(controls, figsize=(10.0, 4.2))

    cache: dict[tuple[Any, ...], dict[str, Any]] = {}  # a setting seen before redraws at once

    def compute() -> dict[str, Any]:
        key = tuple(controls[name].value for name in ("game", "model", "bias", "tau"))
        if key not in cache:
            cache[key] = judge_explorer_data(*key, mu=mu_t, mixture=m)
        return dict(cache[key])

    _connect(h, lambda: _update(h, compute, _layout, _build, _refresh))
    return h


def _layout(data: dict[str, Any]) -> str:
    """The layout key: one layout for every setting (fixed axes), so a move never rebuilds."""
    return "fixed"


def _tv_heights(distance: Tensor) -> list[float]:
    """Bar heights above the log axis' floor: a bar from ``_TV_FLOOR`` up to the TV (0 if below)."""
    return [max(d - _TV_FLOOR, 0.0) for d in distance.tolist()]


def _tick_y(points: Tensor) -> np.ndarray:
    """Tick heights, three per bar, NaN between ticks (one Line2D for all of them)."""
    y = np.repeat(points.reshape(-1).numpy(), 3)
    y[2::3] = np.nan
    return y


def _refresh(artists: dict[str, Any], data: dict[str, Any]) -> list[Any]:
    """Move the bars and the ticks; retitle. Returns the artists that moved."""
    for bar, height in zip(artists["bars"], data["raw"].reshape(-1).tolist()):
        bar.set_height(height)
    artists["sym"].set_ydata(_tick_y(data["symmetrized"]))
    for bar, height in zip(artists["tv_bars"], _tv_heights(data["distance"])):
        bar.set_height(height)
    for text, d in zip(artists["tv_texts"], data["distance"].tolist()):
        text.set_text("0" if d < 1e-12 else f"{d:.2g}")  # round-off of a zero: 0
        text.set_y(max(d, _TV_FLOOR) * 1.3)
    artists["title"].set_text(
        f"{data['game']}, {data['model']} judge, bias on a tie {_fmt(data['bias'])} "
        f"(max |B| = {data['max_bias']:.2f}), τ = {_fmt(data['tau'])}"
    )
    artists["tv_title"].set_text(f"largest TV {float(data['distance'].max()):.3f}")
    return [*artists["bars"], artists["sym"], *artists["tv_bars"], *artists["tv_texts"], artists["title"], artists["tv_title"]]  # fmt: skip


def _build(fig: Figure, data: dict[str, Any]) -> dict[str, Any]:
    """Draw the whole figure; returns the artists ``_refresh`` moves."""
    labels = data["labels"]
    ax, ax_tv = fig.subplots(1, 2, width_ratios=(2.4, 1.0))
    fig.subplots_adjust(left=0.06, right=0.99, top=0.9, bottom=0.27, wspace=0.15)
    n = len(labels)
    width = 0.26
    x = (np.arange(n)[:, None] + width * (np.arange(3)[None, :] - 1)).ravel()
    colors = [_ACTION_COLORS[k] for _ in range(n) for k in range(3)]
    bars = ax.bar(x, data["raw"].reshape(-1).numpy(), width=width, color=colors, gid="bars:raw")
    tick_x = np.column_stack([x - width / 2, x + width / 2, x]).ravel()
    tick_x[2::3] = np.nan
    (sym,) = ax.plot(
        tick_x, _tick_y(data["symmetrized"]), color="black", linewidth=2.0, zorder=5,
        gid="symmetrized",
    )  # fmt: skip
    ax.set_xticks(np.arange(n), labels, rotation=35, ha="right", fontsize=9)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("fixed point π(y)", fontsize=10)
    ax.tick_params(axis="y", labelsize=9)
    title = ax.set_title("", fontsize=10)
    tv_bars = ax_tv.bar(
        np.arange(n), _tv_heights(data["distance"]), bottom=_TV_FLOOR, color="0.45", gid="bars:tv"
    )
    texts = [ax_tv.text(i, 1.0, "", ha="center", va="bottom", fontsize=8) for i in range(n)]
    ax_tv.set_xticks(np.arange(n), labels, rotation=35, ha="right", fontsize=8)
    ax_tv.set_yscale("log")
    ax_tv.set_ylim(_TV_FLOOR, 3.0)
    ax_tv.set_ylabel("TV(raw, symmetrised)", fontsize=10)
    ax_tv.tick_params(axis="y", labelsize=9)
    tv_title = ax_tv.set_title("", fontsize=10)
    handles = [
        *(Patch(color=c, label=f"y{k} under the raw judge") for k, c in enumerate(_ACTION_COLORS)),
        Line2D([], [], color="black", linewidth=2.0, label="under the symmetrised judge"),
    ]
    _legend_below(fig, handles, 4)
    return {
        "bars": list(bars),
        "sym": sym,
        "tv_bars": list(tv_bars),
        "tv_texts": texts,
        "title": title,
        "tv_title": tv_title,
    }
