r"""The token explorer of notebook 09: DPO, TDPO1 or TDPO2 on a token tree, its mass and its KL per prefix.

A token tree (``prefopt_toy.tokens.TokenTree``) enumerates every sequence of a small vocabulary
with an end token; the game is a judge that reads only the length,
:func:`length_game` (Bradley-Terry scores ``strength * (0, 1, ..., T - 1)`` on the length classes:
``strength > 0`` prefers long answers, ``< 0`` short ones). :func:`token_explorer_data`, a pure
function (no widgets), runs ``dynamics.token_preference_optimization`` from the reference and
returns what the explorer draws: the end's mass on every sequence beside the reference's and
sequence-level DPO's closed-form optimum :math:`\mu_{seq} e^{\hat r/\beta}/Z`, and per prefix
TDPO's KL :math:`KL(\mu(\cdot|s) \| \pi(\cdot|s))`, the visit-weighted reverse KL
:math:`d_\pi(s) KL(\pi(\cdot|s) \| \mu(\cdot|s))` (whose sum is the sequence KL, by the chain rule)
and the next-token entropy. :func:`token_explorer` is the thin ipywidgets layer over it (method,
beta, alpha, the game's strength). References: Zeng et al., arXiv:2404.11999v5, Sec. 4 (TDPO1,
TDPO2, the sequential KL); Rafailov et al., arXiv:2305.18290v3 (sequence-level DPO).
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

from prefopt_toy._validate import as_float, as_int, as_positive_float
from prefopt_toy.dynamics import TOKEN_ALGORITHMS, TokenTrajectory, token_preference_optimization
from prefopt_toy.games.constructors import bradley_terry
from prefopt_toy.tokens import TokenTree, lifted_game

from .handle import WidgetHandle, _connect, _fmt, _legend_below, _log_slider, _update

__all__ = [
    "TOKEN_ALPHA_RANGE",
    "TOKEN_BETA_RANGE",
    "TOKEN_COLORS",
    "TOKEN_STRENGTH_RANGE",
    "length_game",
    "prefix_labels",
    "sequence_labels",
    "token_explorer",
    "token_explorer_data",
    "token_summary",
]

TOKEN_BETA_RANGE = (0.1, 5.0)
"""The beta slider's range (log scale)."""
TOKEN_ALPHA_RANGE = (0.0, 2.0)
"""TDPO2's alpha slider's range (0: TDPO2 is DPO)."""
TOKEN_STRENGTH_RANGE = (-3.0, 3.0)
"""The length game's strength: the Bradley-Terry score gap between successive lengths."""
TOKEN_COLORS: dict[str, str] = {"dpo": "tab:blue", "tdpo1": "tab:orange", "tdpo2": "tab:green"}
"""One colour per method (DPO keeps the RLHF/DPO optimum's blue)."""
_MAX_BARS = 40  # sequences drawn as bars (V = 4, T = 3 has 40)
_KL_LIMITS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # the KL panel's y-range snaps to these
_EOS_MARK = "|"
_TOKEN_NAMES = "abcdefghijklmnopqrstuvwxyz"


def sequence_labels(tree: TokenTree) -> list[str]:
    """A short label per sequence, in ``tree.sequences`` order: content tokens as letters, EOS as ``|``.

    ``(2,)`` (stop at once) is ``"|"``, ``(0, 1, 2)`` is ``"ab|"``, a truncated ``(0, 0, 1)`` is ``"aab"``.
    """
    return [
        "".join(_EOS_MARK if t == tree.eos else _TOKEN_NAMES[t] for t in seq)
        for seq in tree.sequences
    ]


def prefix_labels(tree: TokenTree) -> list[str]:
    """A label per prefix (row of a policy table): ``"root"`` for the empty prefix, else its letters."""
    return ["root" if not p else "".join(_TOKEN_NAMES[t] for t in p) for p in tree.prefixes]


def length_game(tree: TokenTree, strength: Any) -> Tensor:
    r"""A judge that reads only the length: Bradley-Terry in ``strength * (length class)``, (N, N).

    ``lifted_game(tree, bradley_terry(strength * [0, 1, ..., T - 1]), "length")``: of two
    sequences, the one with more tokens (EOS counted; the truncated ones share the longest class)
    wins with probability :math:`\sigma(\text{strength} \cdot \Delta\text{class})`; sequences of
    one length tie. ``strength = 0`` is a coin flip everywhere.

    Raises
    ------
    ValueError
        If ``tree`` is not a TokenTree or ``strength`` is not a finite real number.
    """
    if not isinstance(tree, TokenTree):
        raise ValueError(f"tree must be a TokenTree, got {type(tree).__name__}")
    s = as_float(strength, "strength")
    scores = s * torch.arange(tree.max_length, dtype=torch.float64)
    return lifted_game(tree, bradley_terry(scores), "length")


def token_summary(run: TokenTrajectory) -> dict[str, float]:
    r"""The end of a token-tree run in scalars (the README's table of DPO, TDPO1, TDPO2).

    Keys: ``"mass by length k"`` for each length class k (EOS counted, from 1), ``"KL(pi_seq||mu_seq)"``
    (the sequence KL of RLHF), ``"E_pi SeqKL"`` (:math:`\sum_y \pi(y)\,\mathrm{SeqKL}(y)`, TDPO's
    reference-first KL summed along each response), ``"root KL(mu||pi)"``, ``"pi(stop at root)"``
    (EOS as the first token) and ``"entropy"`` (of the sequence distribution).
    """
    p = run.sequence_probs[-1]
    mass = run.class_mass("length")[-1]
    out = {f"mass by length {k + 1}": float(m) for k, m in enumerate(mass)}
    out["KL(pi_seq||mu_seq)"] = float(run.sequence_kl[-1])
    out["E_pi SeqKL"] = float((p * run.sequential_kl[-1]).sum())
    out["root KL(mu||pi)"] = float(run.prefix_kl[-1, 0])
    out["pi(stop at root)"] = float(run.log_tables[-1, 0, run.tree.eos].exp())
    out["entropy"] = float(run.entropy[-1])
    return out


def token_explorer_data(
    tree: TokenTree,
    mu: Any,
    method: str = "tdpo2",
    beta: float = 0.5,
    alpha: float = 0.5,
    strength: float = 1.0,
    steps: int = 300,
) -> dict[str, Any]:
    r"""Run one method on the length game and return what the token explorer draws; no widgets.

    Parameters
    ----------
    tree : TokenTree
    mu : array-like, shape (n_prefixes, V)
        The reference's next-token probabilities, every entry > 0 (also the start).
    method : one of ``TOKEN_ALGORITHMS`` ("dpo", "tdpo1", "tdpo2").
    beta : float > 0. alpha : float >= 0 (TDPO2's KL weight; the others ignore it).
    strength : float: the length game's score gap (:func:`length_game`).
    steps : int >= 1: gradient steps at the default learning rate ``3 / (beta^2 + beta / 10)``.

    Returns
    -------
    dict
        ``"method"``, ``"beta"``, ``"alpha"``, ``"strength"``, ``"steps"``; ``"log_table"``
        (n_prefixes, V) the end's next-token log-probabilities; ``"final"`` (N,) the end's
        sequence distribution, ``"mu_seq"`` (N,) the reference's, ``"dpo_optimum"`` (N,)
        sequence-level DPO's closed form; per prefix, (n_prefixes,): ``"prefix_kl"``
        (:math:`KL(\mu\|\pi)`, TDPO's), ``"prefix_kl_reverse"`` (:math:`KL(\pi\|\mu)`),
        ``"visits"`` (:math:`d_\pi(s)`), ``"weighted_kl"`` (:math:`d_\pi(s) KL(\pi\|\mu)(s)`),
        ``"prefix_entropy"``; ``"seqkl"`` (N,) TDPO's sequential KL of each sequence;
        ``"summary"`` (:func:`token_summary`).

    Raises
    ------
    ValueError
        Naming the argument: not a TokenTree, an unknown ``method``, ``beta <= 0``,
        ``alpha < 0``, a non-finite ``strength``, ``steps < 1``, a bad ``mu``.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4; Azar et al., arXiv:2310.12036v2, App. B (the closed
    form of DPO's optimum).
    """
    if method not in TOKEN_ALGORITHMS:
        raise ValueError(f"method must be one of {TOKEN_ALGORITHMS}, got {method!r}")
    n_steps = as_int(steps, "steps", minimum=1)
    P = length_game(tree, strength)
    run = token_preference_optimization(
        tree, P, mu, algorithm=method, beta=beta, alpha=alpha, steps=n_steps
    )
    visits = run.visits[-1]
    reverse = run.prefix_kl_reverse[-1]
    return {
        "method": method,
        "beta": float(beta),
        "alpha": float(alpha),
        "strength": float(strength),
        "steps": n_steps,
        "log_table": run.log_tables[-1],
        "final": run.sequence_probs[-1],
        "mu_seq": run.reference_sequence_probs,
        "dpo_optimum": run.sequence_optimum(),
        "prefix_kl": run.prefix_kl[-1],
        "prefix_kl_reverse": reverse,
        "visits": visits,
        "weighted_kl": visits * reverse,
        "prefix_entropy": run.prefix_entropy[-1],
        "seqkl": run.sequential_kl[-1],
        "summary": token_summary(run),
    }


def token_explorer(
    tree: TokenTree,
    mu: Any = None,
    method: str = "tdpo2",
    beta: float = 0.5,
    alpha: float = 0.5,
    strength: float = 1.0,
    steps: int = 200,
) -> WidgetHandle:
    r"""DPO, TDPO1 or TDPO2 on a token tree under a length judge, with live controls.

    Left: the end's probability of every sequence (bars, the method's colour) beside the
    reference's (grey outline) and sequence-level DPO's closed-form optimum (black ticks). Right,
    per prefix: TDPO's KL :math:`KL(\mu\|\pi)` and the visit-weighted :math:`d_\pi KL(\pi\|\mu)`,
    whose sum over prefixes is :math:`KL(\pi_{seq}\|\mu_{seq})` (the chain rule).

    Parameters
    ----------
    tree : TokenTree with at most 40 sequences (one bar each).
    mu : (n_prefixes, V) positive next-token table; default ``tree.uniform_table()``.
    method : one of ``TOKEN_ALGORITHMS``, default "tdpo2".
    beta : float in [0.1, 5] (log slider). alpha : float in [0, 2] (TDPO2 only).
    strength : float in [-3, 3]: the length game's score gap (> 0 prefers long sequences).
    steps : int >= 10: updates per run. On V = 3, T = 3 with the uniform reference, 200 steps
        end within 2e-3 of a 3000-step run's sequence distribution over the sliders' ranges, but
        for TDPO2 at beta = 0.1, alpha = 2 (a slow corner). A setting seen before is not rerun.

    Returns
    -------
    WidgetHandle
        ``controls``: ``"method"``, ``"beta"``, ``"alpha"``, ``"strength"``. ``data``:
        :func:`token_explorer_data`'s dict.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4 (TDPO1 and TDPO2); Rafailov et al.,
    arXiv:2305.18290v3 (DPO).
    """
    if not isinstance(tree, TokenTree):
        raise ValueError(f"tree must be a TokenTree, got {type(tree).__name__}")
    if tree.n_sequences > _MAX_BARS:
        raise ValueError(
            f"tree must have at most {_MAX_BARS} sequences (one bar each), got {tree.n_sequences}"
        )
    mu_t = tree.uniform_table() if mu is None else tree.probability_table(mu, "mu")
    if method not in TOKEN_ALGORITHMS:
        raise ValueError(f"method must be one of {TOKEN_ALGORITHMS}, got {method!r}")
    n_steps = as_int(steps, "steps", minimum=10)
    beta_f = as_positive_float(beta, "beta")
    for name, value, (low, high) in (
        ("alpha", alpha, TOKEN_ALPHA_RANGE),
        ("strength", strength, TOKEN_STRENGTH_RANGE),
    ):
        if not low <= as_float(value, name) <= high:
            raise ValueError(
                f"{name} must lie in [{low:g}, {high:g}] (the slider's range), got {value!r}"
            )
    slider = {"continuous_update": False, "style": {"description_width": "initial"}}
    controls = {
        "method": widgets.Dropdown(options=list(TOKEN_ALGORITHMS), value=method, description="method"),
        "beta": _log_slider("beta", beta_f, *TOKEN_BETA_RANGE),
        "alpha": widgets.FloatSlider(value=float(alpha), min=0.0, max=2.0, step=0.1, description="alpha", **slider),
        "strength": widgets.FloatSlider(value=float(strength), min=-3.0, max=3.0, step=0.25, description="strength", **slider),
    }  # fmt: skip
    h = WidgetHandle(controls, figsize=(10.0, 4.6))
    labels = (sequence_labels(tree), prefix_labels(tree))

    cache: dict[tuple[Any, ...], dict[str, Any]] = {}  # a setting seen before redraws at once

    def compute() -> dict[str, Any]:
        key = tuple(controls[name].value for name in ("method", "beta", "alpha", "strength"))
        if key not in cache:
            cache[key] = token_explorer_data(tree, mu_t, *key, steps=n_steps)
        return {**cache[key], "labels": labels}

    _connect(h, lambda: _update(h, compute, _kl_limit, _build, _refresh))
    return h


def _kl_limit(data: dict[str, Any]) -> float:
    """The KL panel's y-limit, snapped to coarse steps (the layout key: a new one redraws all).

    Coarse, so that switching the method or a small move keeps the layout (a rebuild costs
    several times a blitted move); the mass panel's range is [0, 1] throughout.
    """
    top = float(torch.cat([data["prefix_kl"], data["weighted_kl"]]).max())
    return next((lim for lim in _KL_LIMITS if top <= 0.95 * lim), math.ceil(top * 1.1))


def _refresh(artists: dict[str, Any], data: dict[str, Any]) -> list[Any]:
    """Move the bars and the ticks; retitle. Returns the artists that moved."""
    color = TOKEN_COLORS[data["method"]]
    for bar, height in zip(artists["bars"], data["final"].tolist()):
        bar.set_height(height)
        bar.set_color(color)
    ticks = np.repeat(data["dpo_optimum"].numpy(), 3)
    ticks[2::3] = np.nan  # the NaN between two ticks
    artists["dpo_optimum"].set_ydata(ticks)
    for bar, height in zip(artists["kl_bars"], data["prefix_kl"].tolist()):
        bar.set_height(height)
        bar.set_color(color)
    for bar, height in zip(artists["weighted_bars"], data["weighted_kl"].tolist()):
        bar.set_height(height)
    knobs = f"β = {_fmt(data['beta'])}"
    if data["method"] == "tdpo2":
        knobs += f", α = {_fmt(data['alpha'])}"
    s = data["summary"]
    artists["title"].set_text(
        f"{data['method']}: {knobs}, length strength {_fmt(data['strength'])}; "
        f"π(stop at root) = {s['pi(stop at root)']:.3f}"
    )
    artists["kl_title"].set_text(
        f"KL(π_seq‖μ_seq) = {s['KL(pi_seq||mu_seq)']:.3f}, E_π SeqKL = {s['E_pi SeqKL']:.3f}"
    )
    return [
        *artists["bars"],
        *artists["mu_bars"],
        artists["dpo_optimum"],
        *artists["kl_bars"],
        *artists["weighted_bars"],
        artists["title"],
        artists["kl_title"],
    ]


def _build(fig: Figure, data: dict[str, Any]) -> dict[str, Any]:
    """Draw the whole figure; returns the artists ``_refresh`` moves."""
    seq_labels, pre_labels = data["labels"]
    ax, ax_k = fig.subplots(1, 2, width_ratios=(1.6, 1.0))
    fig.subplots_adjust(left=0.06, right=0.99, top=0.9, bottom=0.3, wspace=0.18)
    n = len(seq_labels)
    x = np.arange(n)
    bars = ax.bar(x, data["final"].numpy(), width=0.7, gid="bars:final")
    mu_bars = ax.bar(
        x, data["mu_seq"].numpy(), width=0.7, fill=False, edgecolor="0.45", linewidth=1.2,
        zorder=4, gid="bars:mu",
    )  # fmt: skip
    # one short horizontal tick per sequence (x - 0.4 .. x + 0.4), NaN-separated, one artist
    tick_x = np.column_stack([x - 0.4, x + 0.4, x]).ravel().astype(float)
    tick_x[2::3] = np.nan
    ticks_y = np.repeat(data["dpo_optimum"].numpy(), 3)
    ticks_y[2::3] = np.nan
    (dpo,) = ax.plot(tick_x, ticks_y, color="black", linewidth=2.0, zorder=5, gid="dpo_optimum")
    ax.set_xticks(x, seq_labels, rotation=90, fontsize=9, family="monospace")
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("probability of the sequence", fontsize=10)
    ax.tick_params(axis="y", labelsize=9)
    title = ax.set_title("", fontsize=10)
    k = np.arange(len(pre_labels))
    kl_bars = ax_k.bar(k - 0.2, data["prefix_kl"].numpy(), width=0.4, gid="bars:prefix_kl")
    weighted = ax_k.bar(
        k + 0.2, data["weighted_kl"].numpy(), width=0.4, color="0.55", gid="bars:weighted_kl"
    )
    ax_k.set_xticks(k, pre_labels, rotation=90, fontsize=9, family="monospace")
    ax_k.set_ylim(0.0, _kl_limit(data))
    ax_k.set_ylabel("KL at the prefix", fontsize=10)
    ax_k.tick_params(axis="y", labelsize=9)
    kl_title = ax_k.set_title("", fontsize=10)
    handles = [
        Patch(color="0.3", label="the method's end π (left); TDPO's KL(μ‖π) per prefix (right)"),
        Patch(fill=False, edgecolor="0.45", label="reference μ_seq"),
        Line2D([], [], color="black", linewidth=2.0, label="sequence DPO's optimum μ e^(r/β)/Z"),
        Patch(color="0.55", label="d_π(s) KL(π‖μ)(s): sums to KL(π_seq‖μ_seq)"),
    ]
    _legend_below(fig, handles, 2)
    return {
        "bars": list(bars),
        "mu_bars": list(mu_bars),  # fixed, but drawn over the moving bars: blitted with them
        "dpo_optimum": dpo,
        "kl_bars": list(kl_bars),
        "weighted_bars": list(weighted),
        "title": title,
        "kl_title": kl_title,
    }
