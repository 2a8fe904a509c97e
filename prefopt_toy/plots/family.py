r"""Figures and tables of notebook 08: the rest of the DPO family on one three-action game.

Every function computes with the library (``dynamics.ALGORITHMS``, the solvers) and draws with
``plots.draw``; none touches pyplot's global state. Each figure keeps its text readable at the
size a notebook shows it (``style.small_texts``). The artists carry gids that the tests read:
paths ``"<name>"``, end markers ``"<name>:end"``, solver targets ``"mark:<label>"``, ``mu``
``"target:mu"``.

- :func:`family_runs`, :func:`family_figure`, :func:`family_table`: every family method beside DPO;
- :func:`paths_figure`: any runs with named marks on one simplex (sDPO, iterative DPO, RSO, ...);
- :func:`sample_reference_points`, :func:`kto_reference_figure`: KTO's z0, exact against sampled;
- :func:`simpo_margins`, :func:`simpo_gamma_figure`: SimPO's fitted margin as gamma moves;
- :func:`length_figure`: length exploitation (DPO, R-DPO, SimPO);
- :func:`mean_chosen_logprob`, :func:`displacement_figure`: likelihood displacement and DPOP;
- :func:`beta_dpo_figure`: beta-DPO's batch beta over training.

References: Ethayarajh et al. arXiv:2402.01306v4 (KTO); Meng et al. arXiv:2405.14734v3 (SimPO);
Hong et al. arXiv:2403.07691v2 (ORPO); Park et al. arXiv:2403.19159v3 (R-DPO); Pal et al.
arXiv:2402.13228v3 (DPOP); Wu et al. arXiv:2407.08639v2 (beta-DPO); Liu et al. arXiv:2309.06657v2
(RSO); Kim et al. arXiv:2403.19270v2 (sDPO); Xiong et al. arXiv:2312.11456v4 (iterative DPO).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from prefopt_toy._validate import as_int, as_policy, as_preference_matrix
from prefopt_toy.dynamics import (
    ALGORITHMS,
    FAMILY,
    FIXED_POINTS,
    Trajectory,
    kto_reference_point_distribution,
)
from prefopt_toy.solutions.optima import rlhf_optimum

from .draw import draw_simplex, plot_policy, plot_trajectory
from .style import log_indices, mark_target

__all__ = [
    "FAMILY_COLORS",
    "beta_dpo_figure",
    "displacement_figure",
    "family_figure",
    "family_runs",
    "family_settings",
    "family_table",
    "kto_reference_figure",
    "length_figure",
    "mean_chosen_logprob",
    "paths_figure",
    "sample_reference_points",
    "simplex_panel",
    "simpo_gamma_figure",
    "simpo_margins",
]

FAMILY_COLORS: dict[str, str] = {
    "dpo": "tab:blue",
    "kto": "tab:orange",
    "simpo": "tab:green",
    "orpo": "tab:red",
    "rdpo": "tab:purple",
    "dpop": "tab:brown",
    "beta_dpo": "tab:pink",
    "rso": "tab:olive",
    "sdpo": "tab:cyan",
    "iterative_dpo": "0.35",
}
"""One colour per method (DPO keeps the RLHF/DPO optimum's blue)."""

_MARK_STYLES = ("s", "D", "^", "v", "P", "h", "p", "<", ">", "*")


def _color(name: str, i: int) -> str:
    return FAMILY_COLORS.get(name, f"C{i % 10}")


def family_settings(
    beta: float, steps: int, lengths: Any = None, alpha: float = 0.0
) -> dict[str, dict[str, Any]]:
    """The keyword arguments :func:`family_runs` gives each method (DPO first, then ``FAMILY``).

    Every method runs ``steps`` updates in all (sDPO: 2 stages, iterative DPO: 5 rounds, sharing
    them); ORPO has no KL strength and runs at ``lam = beta`` (TRL's ``ORPOConfig.beta`` is lam).
    SimPO and R-DPO get ``lengths``; R-DPO ``alpha``.
    """
    steps = as_int(steps, "steps", minimum=2)
    common = {"beta": beta, "steps": steps}
    return {
        "dpo": common,
        "kto": common,
        "simpo": {**common, "lengths": lengths},
        "orpo": {"lam": beta, "steps": steps},
        "rdpo": {**common, "lengths": lengths, "alpha": alpha},
        "dpop": common,
        "beta_dpo": common,
        "rso": common,
        "sdpo": {"beta": beta, "stages": 2, "steps": steps},
        "iterative_dpo": {"beta": beta, "rounds": 5, "steps": steps},
    }


def family_runs(
    P: Any,
    mu: Any,
    *,
    beta: float,
    steps: int,
    lengths: Any = None,
    alpha: float = 0.0,
    names: Sequence[str] | None = None,
) -> dict[str, Trajectory]:
    r"""DPO and every ``FAMILY`` method from :math:`\pi_0 = \mu` (settings: :func:`family_settings`)."""
    settings = family_settings(beta, steps, lengths, alpha)
    names = ["dpo", *FAMILY] if names is None else list(names)
    unknown = [n for n in names if n not in settings]
    if unknown:
        raise ValueError(f"names must be dpo or FAMILY members, got unknown {unknown}")
    return {n: ALGORITHMS[n](P, mu, **settings[n]) for n in names}


def _registered_target(name: str, run: Trajectory) -> Tensor | None:
    target = FIXED_POINTS.get(name)
    return None if target is None else run.target(target)


def simplex_panel(
    ax: Axes,
    runs: Mapping[str, Trajectory],
    marks: Mapping[str, Any] | None = None,
    *,
    labels: Sequence[str] = ("y0", "y1", "y2"),
    points: int = 300,
    legend: bool = True,
    fontsize: float = 10.0,
    stage_ends: bool = False,
) -> dict[str, Any]:
    """Draw ``runs`` (paths and end dots) and ``marks`` (label -> policy) on one simplex.

    Returns the artists: ``"<name>"`` (path), ``"<name>:end"``, ``"mark:<label>"``,
    ``"target:mu"`` (each artist's gid is its key). With ``stage_ends`` the ends of each stage
    (``hyper["stage_ends"]``) get small dots (gid ``"<name>:stages"``).
    """
    if not runs:
        raise ValueError("runs must hold at least one Trajectory")
    first = next(iter(runs.values()))
    draw_simplex(ax, labels, gridlines=4, fontsize=fontsize)
    artists: dict[str, Any] = {}
    for i, (name, run) in enumerate(runs.items()):
        if run.batched or run.log_policies.shape[-1] != 3:
            raise ValueError(f"runs[{name!r}] must be an unbatched run on 3 actions")
        color = _color(name, i)
        path = run.policies[log_indices(run.steps, points)]
        artists[name] = plot_trajectory(
            ax, path, color=color, linewidth=1.5, alpha=0.8, zorder=3, label=name, gid=name
        )
        artists[f"{name}:end"] = plot_policy(
            ax, run.final, color=color, markeredgecolor="black", markersize=7, zorder=7,
            gid=f"{name}:end",
        )  # fmt: skip
        if stage_ends and "stage_ends" in run.hyper:
            ends = run.policies[list(run.hyper["stage_ends"])]
            artists[f"{name}:stages"] = plot_trajectory(
                ax, ends, color=color, marker="o", markersize=4, linestyle="none", zorder=5,
                gid=f"{name}:stages",
            )  # fmt: skip
    for j, (label, pi) in enumerate((marks or {}).items()):
        line = plot_policy(
            ax, as_policy(pi, "mark", size=3), marker=_MARK_STYLES[j % len(_MARK_STYLES)],
            markersize=11, markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.4,
            zorder=6, label=label, gid=f"mark:{label}",
        )  # fmt: skip
        artists[f"mark:{label}"] = line
    artists["target:mu"] = mark_target(ax, "reference mu", first.mu, "target:mu")
    if legend:
        handles = [artists[n] for n in runs] + [artists[f"mark:{m}"] for m in marks or {}]
        handles.append(
            Line2D([], [], linestyle="none", marker="X", color="tab:gray", label="reference mu")
        )
        handles.append(
            Line2D([], [], linestyle="none", marker="o", color="0.5", markeredgecolor="black",
                   label="end of a run")
        )  # fmt: skip
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            fontsize=fontsize,
            frameon=False,
        )
    return artists


def paths_figure(
    runs: Mapping[str, Trajectory],
    marks: Mapping[str, Any] | None = None,
    *,
    title: str = "",
    labels: Sequence[str] = ("y0", "y1", "y2"),
    stage_ends: bool = False,
) -> Figure:
    """One simplex with ``runs`` and ``marks`` (:func:`simplex_panel`), legend to the right."""
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    ax = fig.subplots()
    simplex_panel(ax, runs, marks, labels=labels, stage_ends=stage_ends)
    ax.set_title(title, fontsize=11)
    return fig


def family_figure(
    runs: Mapping[str, Trajectory],
    *,
    labels: Sequence[str] = ("y0", "y1", "y2"),
    title: str = "",
) -> Figure:
    """Every run's path and end beside DPO's optimum and each registered fixed point.

    Marks: ``"DPO optimum"`` (``rlhf_optimum`` at the DPO run's beta, pairs from mu) and, for each
    run with a registered fixed point other than DPO's, ``"<name> fixed point"``.
    """
    dpo = runs.get("dpo")
    first = next(iter(runs.values()))
    beta = (first if dpo is None else dpo).hyper["beta"]
    marks: dict[str, Tensor] = {"DPO optimum": rlhf_optimum(first.P, first.mu, float(beta))}
    for name, run in runs.items():
        if name == "dpo":
            continue
        target = _registered_target(name, run)
        if target is not None:
            marks[f"{name} fixed point"] = target
    return paths_figure(runs, marks, title=title, labels=labels)


def family_table(runs: Mapping[str, Trajectory]) -> Any:
    """One row per run: its end point, TV to DPO's optimum, TV to its own fixed point, last move.

    TV to its own fixed point is NaN where none is registered (``table_view`` prints a dash).
    """
    import pandas as pd

    first = next(iter(runs.values()))
    beta = float(runs["dpo"].hyper["beta"]) if "dpo" in runs else float(first.hyper["beta"])
    dpo_opt = rlhf_optimum(first.P, first.mu, beta)
    rows = []
    for name, run in runs.items():
        target = _registered_target(name, run)
        row: dict[str, Any] = {"method": name}
        for y, p in enumerate(run.final.tolist()):
            row[f"pi(y{y})"] = p
        row["TV to DPO optimum"] = 0.5 * float((run.final - dpo_opt).abs().sum())
        row["TV to own fixed point"] = (
            float("nan") if target is None else 0.5 * float((run.final - target).abs().sum())
        )
        row["last step moved"] = float((run.policies[-1] - run.policies[-2]).abs().max())
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


# --------------------------------------------------------------------------- KTO's reference point


def sample_reference_points(
    pi: Any,
    mu: Any,
    batch_size: int,
    samples: int,
    *,
    data: Any = None,
    clamp: bool = True,
    seed: int = 0,
) -> Tensor:
    r"""TRL's KTO estimate of z0 on ``samples`` minibatches: the (clamped) mean of ``b`` log-ratios.

    Each minibatch holds ``batch_size`` completions drawn from ``data`` (default ``mu``),
    :math:`z_0 = \max(0, \frac1b \sum_i \log\pi(y_i)/\mu(y_i))`. Returns (samples,).
    """
    b = as_int(batch_size, "batch_size", minimum=1)
    n = as_int(samples, "samples", minimum=1)
    mu_t = as_policy(mu, "mu", positive=True)
    pi_t = as_policy(pi, "pi", size=len(mu_t), positive=True)
    d = mu_t if data is None else as_policy(data, "data", size=len(mu_t))
    gen = torch.Generator().manual_seed(int(seed))
    draws = torch.multinomial(d.expand(n, -1), b, replacement=True, generator=gen)  # (n, b)
    z = (pi_t.log() - mu_t.log())[draws].mean(-1)
    return z.clamp_min(0.0) if clamp else z


def _atoms(values: Tensor, probs: Tensor, decimals: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Merge equal values of a discrete distribution: sorted support and total probabilities."""
    v = np.round(values.numpy(), decimals)
    support, inverse = np.unique(v, return_inverse=True)
    mass = np.zeros(len(support))
    np.add.at(mass, inverse, probs.numpy())
    return support, mass


def kto_reference_figure(
    pi: Any,
    mu: Any,
    batch_sizes: Sequence[int] = (1, 2, 4, 8),
    *,
    data: Any = None,
    samples: int = 4000,
    seed: int = 0,
) -> Figure:
    r"""KTO's reference point on minibatches: exact distribution, sampled histogram, the clamp.

    One panel per batch size b: stems (gid ``"exact:b=<b>"``) at the exact distribution of the
    *unclamped* minibatch mean (``kto_reference_point_distribution(..., clamp=False)``), dots
    (gid ``"sampled:b=<b>"``) for the frequencies of ``samples`` sampled minibatches on the same
    support, the mass the clamp moves to 0 shaded left of 0, and vertical lines at the paper's
    :math:`\mathrm{KL}(\pi\|\mu)` (gid ``"kl"``) and the clamped mean :math:`E[z_0]` (gid
    ``"mean_clamped"``).
    """
    mu_t = as_policy(mu, "mu", positive=True)
    pi_t = as_policy(pi, "pi", size=len(mu_t), positive=True)
    kl = float((pi_t * (pi_t.log() - mu_t.log())).sum())
    fig = Figure(figsize=(9.0, 2.9 * ((len(batch_sizes) + 1) // 2) + 0.6), layout="constrained")
    axes = fig.subplots((len(batch_sizes) + 1) // 2, 2, squeeze=False).flatten()
    for ax, b in zip(axes, batch_sizes):
        values, probs = kto_reference_point_distribution(pi_t, mu_t, b, data=data, clamp=False)
        support, mass = _atoms(values, probs)
        sampled = sample_reference_points(
            pi_t, mu_t, b, samples, data=data, clamp=False, seed=seed
        ).numpy()
        freq = np.array([np.mean(np.isclose(sampled, s, atol=1e-7)) for s in support])
        width = 0.6 * (np.min(np.diff(support)) if len(support) > 1 else 0.1)
        stems = ax.vlines(support, 0, mass, color="black", linewidth=1.5,
                          label="exact (before the clamp)")  # fmt: skip
        ax.plot(support, freq, linestyle="none", marker="o", markersize=5, color="tab:orange",
                label=f"sampled ({samples} minibatches)", gid=f"sampled:b={b}")  # fmt: skip
        stems.set_gid(f"exact:b={b}")
        negative = float(mass[support < 0].sum())
        clamped_mean = float((np.maximum(support, 0.0) * mass).sum())
        ax.axvspan(min(support.min(), 0.0) - width, 0.0, color="0.85", zorder=0)
        ax.axvline(kl, color="tab:blue", linestyle="--", label=r"paper: KL($\pi\|\mu$)", gid="kl")
        ax.axvline(clamped_mean, color="tab:red", linestyle=":", linewidth=2,
                   label=r"TRL: $E[\max(0, \bar r)]$", gid="mean_clamped")  # fmt: skip
        ax.set_title(f"b = {b}: P(clamped to 0) = {negative:.2f}", fontsize=11)
        ax.set_xlabel(r"minibatch mean of $\log \pi/\mu$", fontsize=10)
        ax.set_ylabel("probability", fontsize=10)
        ax.tick_params(labelsize=10)
    for ax in axes[len(batch_sizes) :]:
        ax.set_axis_off()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=10, frameon=False)
    return fig


# --------------------------------------------------------------------------------- SimPO's gamma


def simpo_margins(run: Trajectory, pair: tuple[int, int] = (0, 1)) -> Tensor:
    r"""The fitted SimPO reward margin :math:`\beta(\log\pi(y_w)/L_w - \log\pi(y_l)/L_l)` at the end.

    ``run`` a (batched) ``simpo`` trajectory; returns (B,) or a 0-d tensor.
    """
    w, lo = pair
    lp = run.log_policies[..., -1, :]
    L = run.hyper["lengths"]
    beta = torch.as_tensor(run.hyper["beta"], dtype=torch.float64)
    return beta * (lp[..., w] / L[..., w] - lp[..., lo] / L[..., lo])


def simpo_gamma_figure(
    P: Any,
    mu: Any,
    *,
    betas: Sequence[float] = (0.1, 2.0),
    gammas: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0),
    steps: int = 2000,
    pair: tuple[int, int] = (0, 1),
) -> tuple[Figure, dict[str, Tensor]]:
    r"""SimPO's fitted margin as gamma moves: gamma absolute (TRL) against gamma / beta (official).

    Left: the margin against ``gamma`` for each beta (``simpo(gamma=...)``); right: against the
    ratio ``gamma / beta`` (``simpo(gamma_beta_ratio=...)``). A dashed line marks
    :math:`\mathrm{logit}\,P(y_w \succ y_l)` (gid ``"logit"``), DPO's margin. Lines have gids
    ``"gamma:beta=<beta>"`` and ``"ratio:beta=<beta>"``. Returns the figure and the margins
    ``{"gamma:beta=..": (G,), "ratio:beta=..": (G,)}``.
    """
    P_t = as_preference_matrix(P, "P")
    g = [float(x) for x in gammas]
    out: dict[str, Tensor] = {}
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    ax_g, ax_r = fig.subplots(1, 2, sharey=True)
    for i, beta in enumerate(betas):
        for kind, ax in (("gamma", ax_g), ("ratio", ax_r)):
            key = "gamma" if kind == "gamma" else "gamma_beta_ratio"
            run = ALGORITHMS["simpo"](P_t, mu, steps=steps, beta=[beta] * len(g), **{key: g})
            m = simpo_margins(run, pair)
            out[f"{kind}:beta={beta:g}"] = m
            ax.plot(g, m.numpy(), marker="o", color=f"C{i}", label=f"β = {beta:g}",
                    gid=f"{kind}:beta={beta:g}")  # fmt: skip
    p = float(P_t[pair[0], pair[1]])
    logit = float(np.log(p / (1 - p)))
    for ax in (ax_g, ax_r):
        ax.axhline(logit, color="0.3", linestyle="--", gid="logit", label="logit P (DPO's margin)")
        ax.tick_params(labelsize=10)
    ax_g.set_xlabel(r"$\gamma$ (absolute: paper, TRL's simpo_gamma)", fontsize=10)
    ax_r.set_xlabel(r"$\gamma/\beta$ (official code's gamma_beta_ratio)", fontsize=10)
    ax_g.set_ylabel(f"fitted margin, y{pair[0]} over y{pair[1]}", fontsize=10)
    ax_g.set_title("same γ: same margin for every β", fontsize=11)
    ax_r.set_title("same γ/β: the margin grows with β", fontsize=11)
    ax_r.legend(fontsize=10, frameon=False)
    return fig, out


# ---------------------------------------------------------------------------- length exploitation


def length_figure(
    runs: Mapping[str, Trajectory], lengths: Any, quality_optimum: Any
) -> tuple[Figure, dict[str, float]]:
    """Final policies by action (bars) and the expected length over training, per run.

    ``quality_optimum`` is what a length-blind judge's labels would give DPO (gid
    ``"bars:quality optimum"``); bars have gids ``"bars:<name>"``, curves ``"length:<name>"``.
    Returns the figure and the final expected length of each run.
    """
    L = torch.as_tensor(np.asarray(lengths, dtype=float), dtype=torch.float64)
    q_opt = as_policy(quality_optimum, "quality_optimum", size=len(L))
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    ax_b, ax_l = fig.subplots(1, 2)
    items = [("quality optimum", q_opt)] + [(n, r.final) for n, r in runs.items()]
    width = 0.8 / len(items)
    x = np.arange(len(L))
    ends: dict[str, float] = {}
    for i, (name, pi) in enumerate(items):
        color = "0.6" if name == "quality optimum" else _color(name, i)
        ax_b.bar(x + (i - (len(items) - 1) / 2) * width, pi.numpy(), width=width, color=color,
                 label=name, gid=f"bars:{name}")  # fmt: skip
    for i, (name, run) in enumerate(runs.items()):
        expected = (run.policies * L).sum(-1)
        idx = log_indices(run.steps)
        ax_l.plot(np.array(idx) + 1, expected[idx].numpy(), color=_color(name, i + 1), label=name,
                  gid=f"length:{name}")  # fmt: skip
        ends[name] = float(expected[-1])
    first = next(iter(runs.values()))
    ax_l.axhline(float(q_opt @ L), color="0.6", linestyle="--", label="quality optimum")
    ax_l.axhline(float(first.mu @ L), color="tab:gray", linestyle=":", label="reference mu")
    ax_b.set_xticks(x, [f"y{i}\nL = {v:g}" for i, v in enumerate(L.tolist())], fontsize=10)
    ax_b.set_ylabel("final probability", fontsize=10)
    ax_b.legend(fontsize=10, frameon=False)
    ax_l.set_xscale("log")
    ax_l.set_xlabel("step + 1", fontsize=10)
    ax_l.set_ylabel("expected length", fontsize=10)
    ax_l.legend(fontsize=10, frameon=False)
    for ax in (ax_b, ax_l):
        ax.tick_params(labelsize=10)
    return fig, ends


# ------------------------------------------------------------------------ likelihood displacement


def mean_chosen_logprob(run: Trajectory) -> Tensor:
    r"""The mean log-probability of the chosen action over the run's (winner, loser) pairs, per step.

    Pairs from ``hyper["nu"]`` (default ``mu``), the winner labelled by ``P``:
    :math:`\sum_{w \ne l} \nu_w\nu_l P_{wl}\log\pi_t(w) / \sum_{w \ne l}\nu_w\nu_l P_{wl}`.
    Shape (steps + 1,).
    """
    nu = run.hyper.get("nu")
    nu = run.mu if nu is None else nu
    W = nu[:, None] * nu[None, :] * run.P * (1.0 - torch.eye(len(nu), dtype=torch.float64))
    chosen = W.sum(-1) / W.sum()  # how often each action is the chosen one
    return (run.log_policies * chosen).sum(-1)


def displacement_figure(runs: Mapping[str, Trajectory], middle: int = 1) -> Figure:
    r"""Likelihood displacement: the middle action's probability and the mean chosen log-prob.

    Left: :math:`\pi_t(y_{middle})` per run (gid ``"middle:<name>"``), with :math:`\mu` dotted;
    right: :func:`mean_chosen_logprob` (gid ``"chosen:<name>"``), its maximum marked (gid
    ``"chosen_max:<name>"``). Log-scaled steps.
    """
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    ax_m, ax_c = fig.subplots(1, 2)
    for i, (name, run) in enumerate(runs.items()):
        color = _color(name, i)
        idx = log_indices(run.steps)
        steps = np.array(idx) + 1
        ax_m.plot(steps, run.policies[idx, middle].numpy(), color=color, label=name,
                  gid=f"middle:{name}")  # fmt: skip
        chosen = mean_chosen_logprob(run)
        ax_c.plot(steps, chosen[idx].numpy(), color=color, label=name, gid=f"chosen:{name}")
        top = int(chosen.argmax())
        ax_c.plot([top + 1], [float(chosen[top])], marker="o", color=color,
                  markeredgecolor="black", gid=f"chosen_max:{name}")  # fmt: skip
    first = next(iter(runs.values()))
    ax_m.axhline(float(first.mu[middle]), color="tab:gray", linestyle=":", label="mu")
    ax_m.set_yscale("log")
    ax_m.set_title(f"the middle action y{middle} (chosen once, rejected once)", fontsize=11)
    ax_c.set_title("mean log-prob of the chosen action (dot: its maximum)", fontsize=11)
    ax_m.set_ylabel(f"π(y{middle})", fontsize=10)
    ax_c.set_ylabel("E[log π(chosen)]", fontsize=10)
    for ax in (ax_m, ax_c):
        ax.set_xscale("log")
        ax.set_xlabel("step + 1", fontsize=10)
        ax.tick_params(labelsize=10)
    ax_m.legend(fontsize=10, frameon=False)
    return fig


# ------------------------------------------------------------------------------------ beta-DPO


def beta_dpo_figure(runs: Mapping[str, Trajectory]) -> Figure:
    """beta-DPO's batch beta and running mean margin over training, one line per run.

    Gids ``"batch_beta:<name>"`` and ``"running_mean:<name>"``; the base beta dashed (gid
    ``"base_beta"``).
    """
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax_b, ax_m = fig.subplots(1, 2)
    for i, (name, run) in enumerate(runs.items()):
        steps = np.arange(1, run.steps + 1)
        style = {"color": f"C{i}", "label": name, "linewidth": 2.0 if i == 0 else 1.0,
                 "zorder": 3 if i == 0 else 2, "alpha": 1.0 if i == 0 else 0.6}  # fmt: skip
        ax_b.plot(steps, np.asarray(run.hyper["batch_beta"]), gid=f"batch_beta:{name}", **style)
        ax_m.plot(steps, np.asarray(run.hyper["running_mean"]), gid=f"running_mean:{name}", **style)
    first = next(iter(runs.values()))
    ax_b.axhline(float(first.hyper["beta"]), color="0.3", linestyle="--", gid="base_beta",
                 label="base β")  # fmt: skip
    ax_b.set_ylabel("batch β", fontsize=10)
    ax_m.set_ylabel("running mean of the margin M", fontsize=10)
    for ax in (ax_b, ax_m):
        ax.set_xscale("log")
        ax.set_xlabel("step", fontsize=10)
        ax.tick_params(labelsize=10)
    ax_b.legend(fontsize=10, frameon=False)
    return fig
