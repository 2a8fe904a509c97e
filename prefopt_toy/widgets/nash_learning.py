r"""The Nash-learning widget of notebook 04: Nash-MD and IPO-MD live, against Nash-MD's convergence bound.

:func:`nash_learning` runs Nash-MD (decaying and constant step) and IPO-MD from ``mu`` on the
simplex and plots the KL to the regularised Nash against :func:`nash_md_bound`, Theorem 1's
closed form, the one formula drawn here that the solvers do not provide. References: Munos et
al., arXiv:2312.00886v4, Sec. 6 and Theorem 1; Calandriello et al., arXiv:2403.08635v1, Sec. 5.
"""

from __future__ import annotations

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
from prefopt_toy.solutions.regularized import ipo_md_fixed_point, regularized_nash

from .handle import (
    _ACTIONS,
    WidgetHandle,
    _connect,
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
