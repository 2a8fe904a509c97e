r"""The Nash-learning widget of notebook 04: Nash-MD and IPO-MD live, against Nash-MD's convergence bound.

:func:`nash_learning` runs Nash-MD (decaying and constant step) and IPO-MD from ``mu`` on the
simplex and plots the KL to the regularised Nash against :func:`nash_md_bound`, Theorem 1's
closed form, the one formula drawn here that the solvers do not provide. References: Munos et
al., arXiv:2312.00886v4, Sec. 6 and Theorem 1; Calandriello et al., arXiv:2403.08635v1, Sec. 5.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float, as_unit_interval
from prefopt_toy.dynamics import nash_md, redraw
from prefopt_toy.plots.draw import draw_simplex, plot_policy, plot_trajectory
from prefopt_toy.plots.style import ALGORITHM_STYLE, mark_target, target_handles
from prefopt_toy.policies import kl
from prefopt_toy.simplex import barycentric_to_cartesian
from prefopt_toy.solutions.regularized import ipo_md_fixed_point, regularized_nash

from .handle import (
    _ACTIONS,
    WidgetHandle,
    _connect,
    _fmt,
    _legend_below,
    _log_slider,
    _three_action_game,
    _update,
)

__all__ = ["ETA_RANGE", "SCHEDULES", "TAU_RANGE", "nash_learning", "nash_md_bound"]

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
        "label": "IPO-MD at the mixture m",
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

    A control's change recomputes only what depends on it (moving the mixture reruns IPO-MD
    alone; moving tau reruns the decaying Nash-MD and IPO-MD as one batch of
    ``dynamics.redraw``); results are kept for the settings seen last, so moving back is instant.

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
    cache: dict[Hashable, Any] = {}

    def compute() -> dict[str, Any]:
        values = {name: c.value for name, c in controls.items()}
        controls["eta"].disabled = values["schedule"] == "decaying"
        return _nash_learning_data(P_t, mu_t, **values, cache=cache)

    _connect(
        h, lambda: _update(h, compute, _layout_key, _build_nash_learning, _update_nash_learning)
    )
    return h


_CACHE_SIZE = 64  # entries (a run at 2000 steps is 50 kB): the last few settings of each control


def _nash_learning_data(
    P: Tensor,
    mu: Tensor,
    tau: float,
    eta: float,
    schedule: str,
    mixture: float,
    steps: int,
    cache: dict[Hashable, Any] | None = None,
) -> dict[str, Any]:
    """Every number ``nash_learning`` draws, from library calls only.

    ``cache`` keeps each library result under the settings it depends on, so that a control's
    change recomputes only what depends on that control.
    """
    memo: dict[Hashable, Any] = {} if cache is None else cache
    if len(memo) > _CACHE_SIZE:
        memo.clear()

    def get(key: Hashable, make: Callable[[], Any]) -> Any:
        if key not in memo:
            memo[key] = make()
        return memo[key]

    star = get(("regularized_nash", tau), lambda: regularized_nash(P, mu, tau))

    def with_kl(run: Any) -> tuple[Tensor, Tensor]:
        return run.policies, run.kl_to(star)

    keys = {"decaying": ("decaying", tau, steps), "ipo_md": ("ipo_md", tau, steps, mixture)}
    if schedule in ("both", "decaying") and not (
        keys["decaying"] in memo or keys["ipo_md"] in memo
    ):
        # Both depend on tau: one batch, one loop (dynamics.redraw's rows equal the registry's calls).
        both = redraw(P, mu, tau=tau, steps=steps, mixture=mixture, names=("nash_md", "ipo_md"))
        memo[keys["decaying"]], memo[keys["ipo_md"]] = map(
            with_kl, (both["nash_md"], both["ipo_md"])
        )
    runs: dict[str, tuple[Tensor, Tensor]] = {}
    message = ""
    if schedule in ("both", "decaying"):
        runs["decaying"] = get(
            keys["decaying"], lambda: with_kl(nash_md(P, mu, tau=tau, steps=steps))
        )
    constant_limit = None
    if schedule in ("both", "constant"):
        if eta * tau > 1.0:
            message = (
                f"constant step left out: eta * tau = {eta:.3g} * {tau:.3g} = {eta * tau:.3g} > 1, "
                "but eta * tau is the weight of mu in Nash-MD's mixture and must be <= 1; "
                "lower eta or tau"
            )
        else:
            runs["constant"] = get(
                ("constant", tau, eta, steps),
                lambda: with_kl(nash_md(P, mu, tau=tau, steps=steps, eta=eta)),
            )
            constant_limit = get(
                ("fixed_point", tau, eta * tau), lambda: ipo_md_fixed_point(P, mu, tau, eta * tau)
            )
    runs["ipo_md"] = get(
        keys["ipo_md"],
        lambda: with_kl(
            redraw(P, mu, tau=tau, steps=steps, mixture=mixture, names=("ipo_md",))["ipo_md"]
        ),
    )
    fixed_point = get(
        ("fixed_point", tau, mixture), lambda: ipo_md_fixed_point(P, mu, tau, mixture)
    )
    kls = {name: run[1] for name, run in runs.items()}
    return {
        "tau": tau,
        "eta": eta,
        "schedule": schedule,
        "mixture": mixture,
        "steps": steps,
        "trajectories": {name: run[0] for name, run in runs.items()},
        "kl": kls,
        "final_kl": {name: float(v[-1]) for name, v in kls.items()},
        "bound": nash_md_bound(tau, steps),
        "mu": mu,
        "regularized_nash": star,
        "ipo_md_fixed_point": fixed_point,
        "constant_limit": constant_limit,
        "plateaus": {
            "ipo_md": kl(star, fixed_point),
            **({"constant": kl(star, constant_limit)} if constant_limit is not None else {}),
        },
        "message": message,
    }


def _kl_limits(data: dict[str, Any]) -> tuple[float, float]:
    """The KL panel's y range: the decades around the KL curves, their limits and the bound's end.

    Snapped to powers of ten, the bottom to a multiple of three decades and the top to a multiple
    of two, so that most moves keep the axes (and the cached background: a new range costs a
    full draw, ~60 ms). The
    bound enters from a tenth of the steps on (its last decade): at t = 1 it is 4 / tau^2 (4e4 at
    tau = 0.01), which would squash the curves; its early part leaves the top of the panel.
    """
    values = [np.array([float(nash_md_bound(data["tau"], max(1, data["steps"] // 10)))])]
    values += [v[1:].numpy() for v in data["kl"].values()]
    values += [np.array([float(p)]) for p in data["plateaus"].values()]
    every = np.concatenate(values)
    positive = every[(every > 0) & np.isfinite(every)]
    low = max(1e-16, float(positive.min())) if positive.size else 1e-16
    high = max(float(positive.max()), low * 10.0) if positive.size else 1.0
    return 10.0 ** (3 * math.floor(math.log10(low) / 3)), 10.0 ** (
        2 * math.ceil(math.log10(high) / 2)
    )


def _layout_key(data: dict[str, Any]) -> Hashable:
    """What the static part of the figure depends on: the runs shown, the steps, the KL range."""
    return (tuple(data["trajectories"]), data["constant_limit"] is not None, data["steps"]) + (
        _kl_limits(data)
    )


def _xy(pi: Tensor) -> np.ndarray:
    """Cartesian coordinates, shape (2, N), of a policy (3,) or policies (N, 3), for set_data."""
    return barycentric_to_cartesian(pi).numpy().reshape(-1, 2).T


def _update_nash_learning(artists: dict[str, Any], data: dict[str, Any]) -> list[Any]:
    """Set every moving artist from ``data``; returns them in drawing order."""
    moved = []
    for name, policies in data["trajectories"].items():
        artists[f"trajectory:{name}"].set_data(*_xy(policies))
        moved.append(artists[f"trajectory:{name}"])
    targets = [("regularized_nash", data["regularized_nash"])]
    targets.append(("ipo_md_fixed_point", data["ipo_md_fixed_point"]))
    if data["constant_limit"] is not None:
        targets.append(("constant_limit", data["constant_limit"]))
    for gid, pi in targets:
        artists[gid].set_data(*_xy(pi))
        moved.append(artists[gid])
    moved.append(artists["mu"])  # unchanged, but drawn over the trajectories
    t = np.arange(1, data["steps"] + 1, dtype=float)
    artists["bound"].set_data(t, nash_md_bound(data["tau"], t))
    moved.append(artists["bound"])
    for name, values in data["kl"].items():
        y = values[1:].numpy()
        artists[f"kl:{name}"].set_data(t, np.where(y > 0, y, np.nan))
        moved.append(artists[f"kl:{name}"])
    for name, value in data["plateaus"].items():
        artists[f"plateau:{name}"].set_ydata([float(value)] * 2)
        moved.append(artists[f"plateau:{name}"])
    step = ""
    if "constant" in data["trajectories"]:
        step = f"constant η = {_fmt(data['eta'])} (ητ = {_fmt(data['eta'] * data['tau'])}), "
    artists["title"].set_text(
        f"from π₀ = μ, {data['steps']} steps, τ = {_fmt(data['tau'])}\n"
        f"{step}IPO-MD mixture m = {_fmt(data['mixture'])}"
    )
    moved.append(artists["title"])
    return moved


def _build_nash_learning(fig: Figure, data: dict[str, Any]) -> dict[str, Any]:
    """Draw the whole figure for ``data``'s layout; returns the artists by name (gid)."""
    ax, ax_k = fig.subplots(1, 2, width_ratios=(1.0, 1.15))
    fig.subplots_adjust(left=0.01, right=0.98, top=0.88, bottom=0.3, wspace=0.15)
    draw_simplex(ax, _ACTIONS, gridlines=4)
    artists: dict[str, Any] = {}
    for name, policies in data["trajectories"].items():
        style = _RUN_STYLE[name]
        artists[f"trajectory:{name}"] = plot_trajectory(
            ax,
            policies,
            zorder=3,
            gid=f"trajectory:{name}",
            **{k: v for k, v in style.items() if k != "label"},
        )
    for name, gid in (
        ("regularized Nash", "regularized_nash"),
        ("IPO-MD fixed point", "ipo_md_fixed_point"),
    ):
        artists[gid] = mark_target(ax, name, data[gid], gid)
    if data["constant_limit"] is not None:
        artists["constant_limit"] = plot_policy(
            ax,
            data["constant_limit"],
            markeredgecolor="black",
            markeredgewidth=0.8,
            zorder=6,
            gid="constant_limit",
            **_LIMIT_STYLE,
        )
    artists["mu"] = mark_target(ax, "reference mu", data["mu"], "mu")
    artists["title"] = ax.set_title("", fontsize=9.5)

    t = np.arange(1, data["steps"] + 1, dtype=float)
    (artists["bound"],) = ax_k.plot(
        t,
        nash_md_bound(data["tau"], t),
        color="0.45",
        linestyle=(0, (1, 1.5)),
        linewidth=1.6,
        gid="bound",
        label=r"bound $8/(\tau^2(t+1))$ (Munos et al., Thm. 1)",
    )
    for name in data["kl"]:
        style = _RUN_STYLE[name]
        (artists[f"kl:{name}"],) = ax_k.plot(t, np.full_like(t, np.nan), gid=f"kl:{name}", **style)
    for name in data["plateaus"]:
        artists[f"plateau:{name}"] = ax_k.axhline(
            1.0,
            color=_RUN_STYLE[name]["color"],
            linestyle="--",
            linewidth=0.9,
            gid=f"plateau:{name}",
        )
    ax_k.set_xscale("log")
    ax_k.set_yscale("log")
    ax_k.minorticks_off()  # log minor ticks are a third of a full draw's cost
    ax_k.set_xlim(1, max(data["steps"], 2))
    ax_k.set_ylim(*_kl_limits(data))
    ax_k.grid(True, which="major", color="0.9")
    ax_k.set_xlabel("step t")
    ax_k.set_ylabel(r"$KL(\pi^*_\tau \,\|\, \pi_t)$ (nats)")
    ax_k.set_title("distance to the regularized Nash (dashed: each run's limit)", fontsize=10)
    handles = [
        Line2D([], [], **style)
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
    handles.append(artists["bound"])  # the dotted grey curve of the right panel
    _legend_below(fig, handles, 3)
    return artists
