r"""The unlearning explorer of notebook 10: one forget question's answers over training, and the cost.

An unlearning task (``prefopt_toy.unlearning.UnlearningTask``) has forget and retain questions
over one set of answers. :func:`unlearning_explorer_data`, a pure function (no widgets), runs
``dynamics.unlearn`` exactly from the reference and returns what the explorer draws: the answer
distribution of one forget question at every step (where the forgotten mass goes: to the
alternates, the refusal, the implausible answers) and, step by step, the mean probability of the
forgotten answers against the mean KL of the retain questions to the reference (forgetting
against utility). :func:`unlearning_explorer` is the thin ipywidgets layer over it (method, beta,
retain_weight, shared_bias, steps). References: Maini et al., arXiv:2401.06121v1, Sec. 2 and 5
(TOFU, gradient ascent, GradDiff, "I don't know"); Zhang et al., arXiv:2404.05868 (NPO);
Mekala et al., arXiv:2409.13474v1, Sec. 3 (AltPO).
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from prefopt_toy._validate import as_float, as_int, as_positive_float
from prefopt_toy.dynamics import UNLEARNING_METHODS, UnlearningTrajectory, unlearn
from prefopt_toy.unlearning import UnlearningTask

from .handle import WidgetHandle, _connect, _fmt, _legend_below, _log_slider, _update

__all__ = [
    "UNLEARNING_BETA_RANGE",
    "UNLEARNING_RETAIN_RANGE",
    "UNLEARNING_STEPS",
    "unlearning_explorer",
    "unlearning_explorer_data",
    "unlearning_summary",
    "where_mass_goes",
]

UNLEARNING_BETA_RANGE = (0.01, 1.0)
"""The beta slider's range (log scale); gradient ascent ignores beta."""
UNLEARNING_RETAIN_RANGE = (0.0, 2.0)
"""The retain_weight slider's range (0: no retain term)."""
UNLEARNING_STEPS = (25, 50, 100)
"""The steps menu (a run of 100 steps on the teaching task takes about 0.15 s)."""
_KL_LIMITS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)  # the x-range snaps to these
_MAX_ANSWERS = 12  # one line per answer


def _answer_names(task: UnlearningTask) -> list[str]:
    if task.answer_names is not None:
        return list(task.answer_names)
    return [f"answer {k}" for k in range(task.n_answers)]


def where_mass_goes(run: UnlearningTrajectory) -> dict[str, np.ndarray]:
    r"""Where a run puts each forget question's mass, step by step: means over the forget questions.

    Keys, each a (steps + 1,) numpy array: ``"forget answer"``, ``"alternates"``, ``"refusal"``,
    ``"implausible"`` (they sum to 1), ``"top alternate's share"`` (the largest alternate's
    probability divided by the alternates' total) and ``"TV to mu(.|alternates)"`` (total
    variation to the reference conditioned on the alternates, AltPO's claimed limit).
    """
    f = run.task.forget_contexts
    alt = run.task.alternate_mask[f]
    probs = run.policies[:, f]
    alt_probs = probs * alt
    share = alt_probs.max(-1).values / alt_probs.sum(-1)
    tv = 0.5 * (probs - run.task.alternate_conditional()).abs().sum(-1)
    return {
        "forget answer": run.forget_prob.mean(-1).numpy(),
        "alternates": run.alternate_mass.mean(-1).numpy(),
        "refusal": run.refusal_mass[:, f].mean(-1).numpy(),
        "implausible": run.implausible_mass[:, f].mean(-1).numpy(),
        "top alternate's share": share.mean(-1).numpy(),
        "TV to mu(.|alternates)": tv.mean(-1).numpy(),
    }


def unlearning_summary(run: UnlearningTrajectory) -> dict[str, float]:
    """The end of a run in scalars (the README's tables of the unlearning section).

    :func:`where_mass_goes` at the last step, with ``"retain log-likelihood"`` and
    ``"retain KL"`` (means over the retain questions; nan without retain questions).
    """
    out = {k: float(v[-1]) for k, v in where_mass_goes(run).items()}
    n_retain = run.task.retain_contexts.numel()
    out["retain log-likelihood"] = (
        float(run.retain_log_likelihood[-1].mean()) if n_retain else float("nan")
    )
    out["retain KL"] = float(run.retain_kl[-1].mean()) if n_retain else float("nan")
    return out


def unlearning_explorer_data(
    task: UnlearningTask,
    method: str = "altpo",
    beta: float = 0.1,
    retain_weight: float = 0.0,
    shared_bias: bool = False,
    steps: int = 100,
    question: int = 0,
) -> dict[str, Any]:
    r"""Run one unlearning method on ``task`` and return what the explorer draws; no widgets.

    Parameters
    ----------
    task : UnlearningTask
    method : one of ``UNLEARNING_METHODS`` ("ga", "npo", "dpo_refusal", "altpo").
    beta : float > 0 (ignored by "ga"). retain_weight : float >= 0.
    shared_bias : bool: one logit bias per answer shared by all questions (``dynamics.unlearn``).
    steps : int >= 1: gradient-descent steps at ``unlearn``'s default learning rate.
    question : int in [0, n_forget): which forget question's answers to return (its position
        in ``task.forget_contexts``).

    Returns
    -------
    dict
        ``"method"``, ``"beta"``, ``"retain_weight"``, ``"shared_bias"``, ``"steps"``,
        ``"question"``; ``"names"`` the K answer labels; ``"probs"`` (steps + 1, K) numpy, the
        chosen forget question's answer distribution at every step (row 0 the reference);
        ``"forget_prob"`` (steps + 1,) the mean over the forget questions of the forgotten
        answer's probability; ``"retain_kl"`` (steps + 1,) the mean over the retain questions of
        :math:`KL(\pi_t\|\mu)` (zeros without retain questions); ``"summary"``: the end's
        ``"pi(forget answer)"``, ``"alternates"``, ``"refusal"``, ``"implausible"`` (means over
        the forget questions) and ``"retain KL"``.

    Raises
    ------
    ValueError
        Naming the argument: not an UnlearningTask, ``steps < 1``, ``question`` out of range,
        and whatever ``dynamics.unlearn`` rejects (method, beta, retain_weight, shared_bias).

    References
    ----------
    Maini et al., arXiv:2401.06121v1, Sec. 2 (forget and retain sets); Zhang et al.,
    arXiv:2404.05868 (NPO); Mekala et al., arXiv:2409.13474v1, Sec. 3 (AltPO).
    """
    if not isinstance(task, UnlearningTask):
        raise ValueError(f"task must be an UnlearningTask, got {type(task).__name__}")
    n_steps = as_int(steps, "steps", minimum=1)
    forget = task.forget_contexts
    q = as_int(question, "question", minimum=0)
    if q >= forget.numel():
        raise ValueError(f"question must lie in [0, {forget.numel()}) (a forget question), got {q}")
    run = unlearn(
        task,
        method=method,
        steps=n_steps,
        beta=beta,
        retain_weight=retain_weight,
        shared_bias=shared_bias,
    )
    f_idx = task.forget_contexts
    retain = run.retain_kl
    retain_kl = retain.mean(-1) if retain.shape[-1] else retain.new_zeros(run.steps + 1)
    summary = {
        "pi(forget answer)": float(run.forget_prob[-1].mean()),
        "alternates": float(run.alternate_mass[-1].mean()),
        "refusal": float(run.refusal_mass[-1, f_idx].mean()),
        "implausible": float(run.implausible_mass[-1, f_idx].mean()),
        "retain KL": float(retain_kl[-1]),
    }
    return {
        "method": method,
        "beta": float(beta),
        "retain_weight": float(retain_weight),
        "shared_bias": bool(shared_bias),
        "steps": n_steps,
        "question": q,
        "names": _answer_names(task),
        "probs": run.policies[:, int(forget[q])].numpy(),
        "forget_prob": run.forget_prob.mean(-1).numpy(),
        "retain_kl": retain_kl.numpy(),
        "summary": summary,
    }


def unlearning_explorer(
    task: UnlearningTask,
    method: str = "altpo",
    beta: float = 0.1,
    retain_weight: float = 0.0,
    shared_bias: bool = True,
    steps: int = 100,
) -> WidgetHandle:
    r"""Gradient ascent, NPO, DPO to a refusal or AltPO on an unlearning task, with live controls.

    Left: the first forget question's probability of every answer over training (the forgotten
    true answer in black). Right: the mean probability of the forgotten answers against the mean
    retain KL, one point per step (forgetting against utility; a dot at the end).

    Parameters
    ----------
    task : UnlearningTask with at most 12 answers (one line each).
    method : one of ``UNLEARNING_METHODS``, default "altpo".
    beta : float in [0.01, 1] (log slider). retain_weight : float in [0, 2].
    shared_bias : bool, default True (without it a forget term never touches a retain question).
    steps : one of ``UNLEARNING_STEPS``. A setting seen before is not rerun.

    Returns
    -------
    WidgetHandle
        ``controls``: ``"method"``, ``"beta"``, ``"retain_weight"``, ``"shared_bias"``,
        ``"steps"``. ``data``: :func:`unlearning_explorer_data`'s dict.

    References
    ----------
    As :func:`unlearning_explorer_data`.
    """
    if not isinstance(task, UnlearningTask):
        raise ValueError(f"task must be an UnlearningTask, got {type(task).__name__}")
    if task.n_answers > _MAX_ANSWERS:
        raise ValueError(
            f"task must have at most {_MAX_ANSWERS} answers (one line each), got {task.n_answers}"
        )
    if method not in UNLEARNING_METHODS:
        raise ValueError(f"method must be one of {UNLEARNING_METHODS}, got {method!r}")
    beta_f = as_positive_float(beta, "beta")
    low, high = UNLEARNING_RETAIN_RANGE
    if not low <= as_float(retain_weight, "retain_weight") <= high:
        raise ValueError(
            f"retain_weight must lie in [{low:g}, {high:g}] (the slider's range), "
            f"got {retain_weight!r}"
        )
    if not isinstance(shared_bias, bool):
        raise ValueError(f"shared_bias must be True or False, got {shared_bias!r}")
    if steps not in UNLEARNING_STEPS:
        raise ValueError(f"steps must be one of {UNLEARNING_STEPS}, got {steps!r}")
    slider = {"continuous_update": False, "style": {"description_width": "initial"}}
    controls = {
        "method": widgets.Dropdown(options=list(UNLEARNING_METHODS), value=method, description="method"),
        "beta": _log_slider("beta", beta_f, *UNLEARNING_BETA_RANGE),
        "retain_weight": widgets.FloatSlider(value=float(retain_weight), min=low, max=high, step=0.1, description="retain_weight", **slider),
        "shared_bias": widgets.Checkbox(value=shared_bias, description="shared_bias"),
        "steps": widgets.Dropdown(options=list(UNLEARNING_STEPS), value=steps, description="steps"),
    }  # fmt: skip
    h = WidgetHandle(controls, figsize=(10.0, 4.4))
    names = ("method", "beta", "retain_weight", "shared_bias", "steps")
    cache: dict[tuple[Any, ...], dict[str, Any]] = {}  # a setting seen before redraws at once

    def compute() -> dict[str, Any]:
        key = tuple(controls[name].value for name in names)
        if key not in cache:
            cache[key] = unlearning_explorer_data(task, *key)
        return dict(cache[key])

    _connect(h, lambda: _update(h, compute, _layout, _build, _refresh))
    return h


def _layout(data: dict[str, Any]) -> tuple[int, float]:
    """The steps (x-range on the left) and the retain-KL range snapped to coarse steps."""
    top = float(np.max(data["retain_kl"]))
    lim = next((v for v in _KL_LIMITS if top <= 0.95 * v), math.ceil(top * 1.1))
    return data["steps"], lim


def _refresh(artists: dict[str, Any], data: dict[str, Any]) -> list[Any]:
    """Move the lines and the end dot; retitle. Returns the artists that moved."""
    steps = np.arange(data["probs"].shape[0])
    for line, column in zip(artists["answers"], data["probs"].T):
        line.set_data(steps, column)
    artists["curve"].set_data(data["retain_kl"], data["forget_prob"])
    artists["end"].set_data(data["retain_kl"][-1:], data["forget_prob"][-1:])
    knobs = "" if data["method"] == "ga" else f"β = {_fmt(data['beta'])}, "
    knobs += f"retain weight {_fmt(data['retain_weight'])}"
    knobs += ", shared bias" if data["shared_bias"] else ""
    s = data["summary"]
    artists["title"].set_text(
        f"{data['method']}: {knobs}\nend, forget questions: alternates {s['alternates']:.2f}, "
        f"refusal {s['refusal']:.2g}, implausible {s['implausible']:.2g}"
    )
    artists["curve_title"].set_text(
        f"end: π(forget) = {s['pi(forget answer)']:.2g},\nretain KL = {s['retain KL']:.3g}"
    )
    return [*artists["answers"], artists["curve"], artists["end"], artists["title"], artists["curve_title"]]  # fmt: skip


def _build(fig: Figure, data: dict[str, Any]) -> dict[str, Any]:
    """Draw the whole figure; returns the artists ``_refresh`` moves."""
    steps, kl_lim = _layout(data)
    ax, ax_c = fig.subplots(1, 2, width_ratios=(1.4, 1.0))
    fig.subplots_adjust(left=0.07, right=0.98, top=0.86, bottom=0.27, wspace=0.22)
    x = np.arange(steps + 1)
    lines = []
    for k, (name, column) in enumerate(zip(data["names"], data["probs"].T)):
        style = {"color": "black", "linewidth": 2.2} if k == 0 else {"color": f"C{k}"}
        (line,) = ax.plot(x, column, label=name, gid=f"answer:{k}", **style)
        lines.append(line)
    ax.set_xlim(0, steps)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("step", fontsize=10)
    ax.set_ylabel("π(answer | first forget question)", fontsize=10)
    ax.tick_params(labelsize=9)
    title = ax.set_title("", fontsize=10)
    (curve,) = ax_c.plot(data["retain_kl"], data["forget_prob"], color="teal", gid="curve")
    (end,) = ax_c.plot(
        data["retain_kl"][-1:], data["forget_prob"][-1:], "o", color="teal", gid="end"
    )
    ax_c.plot([0.0], [data["forget_prob"][0]], "s", color="0.4", gid="reference")
    ax_c.set_xlim(-0.02 * kl_lim, kl_lim)
    ax_c.set_ylim(0.0, 1.0)
    ax_c.set_xlabel("mean retain KL(π‖μ) (utility lost)", fontsize=10)
    ax_c.set_ylabel("mean π(forget answer)", fontsize=10)
    ax_c.tick_params(labelsize=9)
    curve_title = ax_c.set_title("", fontsize=10)
    handles = [
        *(Line2D([], [], color=ln.get_color(), label=ln.get_label()) for ln in lines),
        Line2D([], [], color="0.4", marker="s", linestyle="", label="reference μ"),
    ]
    _legend_below(fig, handles, 4)
    return {
        "answers": lines,
        "curve": curve,
        "end": end,
        "title": title,
        "curve_title": curve_title,
    }
