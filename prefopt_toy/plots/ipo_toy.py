r"""The IPO paper's toy bandits reproduced: DPO against IPO across tau (figure ``ipo_toy``).

Azar et al., arXiv:2310.12036v2, Sec. 5.3.1 and 5.4 (closed forms derived for this suite):

- **Two actions, y1 always beats y2** (``P[y1, y2] = 1``, uniform ``mu = nu``). IPO's optimum is
  :math:`\pi(y_1) = \sigma(0.5/\tau)` (``ipo_optimum``); DPO/RLHF has no finite optimum and
  :math:`\pi(y_1) \to 1` for every tau. Exact population dynamics (``dynamics.ipo``/``dpo``).
- **Data set D1** = {(a, b), (b, c), (a, c)}, uniform ``mu``. IPO's minimiser is
  :math:`\pi \propto (e^{2/(3\tau)}, e^{1/(3\tau)}, 1)`; DPO's infimum is at :math:`(1, 0, 0)`.
  Exact data-set runs (``dataset_run(minibatch=False)``: the full-data gradient, Adam) and the
  paper's sampled protocol (Adam, minibatches of 9, 10 seeds, mean and 95% interval).

The closed-form D1 curve is ``ipo_optimum`` of the empirical game of D1 (``from_comparisons``):
with uniform ``mu = nu`` every unordered pair of actions carries the same weight
:math:`2\mu_y\mu_{y'}`, and D1 compares every pair exactly once, so the population IPO loss of that
game is :math:`\tfrac23` times D1's data-set loss plus a constant: same minimiser. The exact runs on
D1 check this independently.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from prefopt_toy.dynamics import dataset_run, dpo, ipo, seed_summary
from prefopt_toy.games.constructors import from_comparisons
from prefopt_toy.solutions.optima import ipo_optimum

from .draw import COLORS
from .experiments import IPO_TOY, IpoToyConfig
from .style import tau_grid

__all__ = ["ipo_toy_data", "ipo_toy_figure"]

ACTION_COLORS = ("#d95f02", "#7570b3", "#1b9e77")  # y_a, y_b, y_c (ColorBrewer Dark2)


ACTION_NAMES = ("a", "b", "c")


def ipo_toy_data(config: IpoToyConfig = IPO_TOY, quick: bool = False) -> dict[str, Tensor | None]:
    r"""The numbers of the ``ipo_toy`` figure.

    Returns a dict of float64 tensors: ``curve_taus`` (N,) ascending; ``two_action_ipo`` (N,) the
    closed-form :math:`\pi(y_1)`; ``run_taus`` (R,); ``two_action_ipo_run`` and ``two_action_dpo_run``
    (R,) the exact endpoints; ``d1_ipo`` (N, 3) the closed-form minimiser on D1; ``d1_ipo_run`` and
    ``d1_dpo_run`` (R, 3); ``sampled_taus`` (S,) and ``d1_{ipo,dpo}_sampled_{mean,half_width}``
    (S, 3), or None when ``config.sampled_taus`` is empty.
    """
    steps = config.quick_exact_steps if quick else config.exact_steps
    # Ascending: the shared grid runs from tau_max down, so read it backwards.
    curve_taus = tau_grid(config.tau_max, config.tau_min, config.curve_points).flip(0)
    run_taus = torch.tensor(config.run_taus, dtype=torch.float64)

    P2 = torch.tensor(config.two_action_P, dtype=torch.float64)
    mu2 = torch.full((2,), 0.5, dtype=torch.float64)
    k = 1 + max(max(pair) for pair in config.dataset)
    P_d1 = from_comparisons(list(config.dataset), k, prior=0.0)  # empirical game of D1
    mu3 = torch.full((k,), 1.0 / k, dtype=torch.float64)
    data: dict[str, Tensor | None] = {
        "curve_taus": curve_taus,
        "run_taus": run_taus,
        "two_action_ipo": torch.stack([ipo_optimum(P2, mu2, float(t))[0] for t in curve_taus]),
        "two_action_ipo_run": ipo(P2, mu2, tau=run_taus, steps=steps).final[:, 0],
        "two_action_dpo_run": dpo(P2, mu2, beta=run_taus, steps=steps).final[:, 0],
        "d1_ipo": torch.stack([ipo_optimum(P_d1, mu3, float(t)) for t in curve_taus]),
    }
    for loss in ("ipo", "dpo"):
        exact = dataset_run(
            mu3,
            config.dataset,
            loss=loss,
            tau=run_taus,
            steps=steps,
            optimizer="adam",
            lr=config.dataset_exact_lr,
            minibatch=False,
        )
        data[f"d1_{loss}_run"] = exact.final
    data["sampled_taus"] = None
    if config.sampled_taus:
        data["sampled_taus"] = torch.tensor(config.sampled_taus, dtype=torch.float64)
        for loss in ("ipo", "dpo"):
            sampled = dataset_run(
                mu3,
                config.dataset,
                loss=loss,
                tau=config.sampled_taus,
                steps=config.quick_sampled_steps if quick else config.sampled_steps,
                batch_size=config.sampled_batch_size,
                lr=config.sampled_lr,
                seeds=config.quick_sampled_seeds if quick else config.sampled_seeds,
            )
            summary = seed_summary(sampled, confidence=0.95)
            data[f"d1_{loss}_sampled_mean"] = summary.mean
            data[f"d1_{loss}_sampled_half_width"] = summary.half_width
    return data


def ipo_toy_figure(config: IpoToyConfig = IPO_TOY, quick: bool = False) -> Figure:
    r"""DPO against IPO on the IPO paper's toys, across tau: three panels.

    Left: two actions, :math:`\pi(y_1)` against tau: IPO's :math:`\sigma(0.5/\tau)` and its exact
    dynamics' endpoints, DPO's endpoints and its limit 1. Middle and right: D1, the three
    probabilities under IPO (closed-form minimiser) and DPO (limit (1, 0, 0)), with exact full-data
    runs (open circles) and the sampled protocol (filled, mean with a 95% interval over seeds).
    Artists carry gids (``"two_action_ipo"``, ``"d1_ipo:a"``, ...) for tests.
    """
    data = ipo_toy_data(config, quick)
    steps = config.quick_exact_steps if quick else config.exact_steps
    s_steps = config.quick_sampled_steps if quick else config.sampled_steps
    s_seeds = config.quick_sampled_seeds if quick else config.sampled_seeds
    taus, run_taus = data["curve_taus"].numpy(), data["run_taus"].numpy()
    fig = Figure(figsize=(11.0, 6.0), layout="constrained")
    ax2, ax_ipo, ax_dpo = fig.subplots(1, 3, sharex=True)

    ipo_color, dpo_color = COLORS["IPO optimum"], COLORS["RLHF/DPO optimum"]
    ax2.plot(
        taus,
        data["two_action_ipo"].numpy(),
        color=ipo_color,
        linewidth=2.0,
        gid="two_action_ipo",
        label=r"IPO optimum $\sigma(0.5/\tau)$",
    )
    ax2.plot(
        run_taus,
        data["two_action_ipo_run"].numpy(),
        "o",
        color=ipo_color,
        markerfacecolor="white",
        markersize=7,
        markeredgewidth=1.5,
        gid="two_action_ipo_run",
        label=f"IPO, exact GD, {steps} steps",
    )
    ax2.axhline(
        1.0, color=dpo_color, linestyle="--", linewidth=1.5, label=r"DPO limit: 1 for every $\tau$"
    )
    ax2.plot(
        run_taus,
        data["two_action_dpo_run"].numpy(),
        "s",
        color=dpo_color,
        markersize=6,
        gid="two_action_dpo_run",
        label=f"DPO, exact GD, {steps} steps",
    )
    ax2.set_ylim(0.2, 1.03)  # room for the legend under the curves
    ax2.set_ylabel(r"$\pi(y_1)$")
    ax2.set_title("Two actions, $y_1$ always beats $y_2$\n" + r"($\mu=\nu$ uniform)", fontsize=10)
    ax2.legend(fontsize=9, loc="lower left")

    for ax, loss in ((ax_ipo, "ipo"), (ax_dpo, "dpo")):
        for y, (name, color) in enumerate(zip(ACTION_NAMES, ACTION_COLORS)):
            if loss == "ipo":
                ax.plot(
                    taus,
                    data["d1_ipo"][:, y].numpy(),
                    color=color,
                    linewidth=2.0,
                    gid=f"d1_ipo:{name}",
                )
            else:
                # Offset dashes so the two limit lines at 0 (b and c) show both colours.
                ax.axhline(
                    1.0 if y == 0 else 0.0,
                    color=color,
                    linestyle=(4.0 * y, (4, 4)),
                    linewidth=1.5,
                    gid=f"d1_dpo_limit:{name}",
                )
            # Large open circles: a sampled diamond at the same tau shows inside when they agree.
            ax.plot(
                run_taus,
                data[f"d1_{loss}_run"][:, y].numpy(),
                "o",
                color=color,
                markerfacecolor="none",
                markersize=11,
                markeredgewidth=1.2,
                gid=f"d1_{loss}_run:{name}",
            )
            if data["sampled_taus"] is not None:
                mean = data[f"d1_{loss}_sampled_mean"][:, y].numpy()
                half = data[f"d1_{loss}_sampled_half_width"][:, y].numpy()
                bars = ax.errorbar(
                    data["sampled_taus"].numpy(),
                    mean,
                    yerr=half,
                    fmt="D",
                    color=color,
                    markersize=5,
                    capsize=4,
                    elinewidth=1.5,
                    zorder=5,
                )
                bars.lines[0].set_gid(f"d1_{loss}_sampled:{name}")  # the means
                bars.lines[2][0].set_gid(f"d1_{loss}_sampled_ci:{name}")  # the intervals
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel(r"$\pi(y)$")
    ax_ipo.set_title(
        "D1 = {(a, b), (b, c), (a, c)}: IPO\n" + r"$\pi \propto (e^{2/(3\tau)}, e^{1/(3\tau)}, 1)$",
        fontsize=10,
    )
    ax_dpo.set_title("D1: DPO tends to (1, 0, 0)\n" + r"for every $\tau$", fontsize=10)
    ax_dpo.annotate(
        f"large $\\tau$: still on its way\nafter {steps} steps",
        (run_taus[-1], 0.5),
        xytext=(-8, 0),
        textcoords="offset points",
        ha="right",
        va="center",
        fontsize=9,
        color="0.3",
    )
    for ax in (ax2, ax_ipo, ax_dpo):
        ax.set_xscale("log")
        ax.set_xlabel(r"KL strength $\tau$ ($\beta=\tau$ for DPO)", fontsize=10)
        ax.grid(True, which="major", color="0.9")

    handles = [
        Line2D([], [], color=c, linewidth=2.0, label=rf"$\pi(y_{n})$")
        for n, c in zip(ACTION_NAMES, ACTION_COLORS)
    ]
    handles += [
        Line2D([], [], color="0.3", linewidth=2.0, label="IPO minimiser (closed form)"),
        Line2D([], [], color="0.3", linewidth=1.5, linestyle="--", label="DPO limit"),
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            markerfacecolor="none",
            markersize=9,
            linestyle="none",
            label=f"exact full-data run (Adam, lr {config.dataset_exact_lr:g}, {steps} steps)",
        ),
    ]
    if data["sampled_taus"] is not None:
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="D",
                linestyle="-",
                linewidth=1.5,
                label=(
                    f"sampled: mean ± 95% CI, {s_seeds} seeds (Adam, lr {config.sampled_lr:g}, "
                    f"batch {config.sampled_batch_size}, {s_steps} steps)"
                ),
            )
        )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=3,
        fontsize=9,
        frameon=False,
        title="D1 panels",
        title_fontsize=9,
    )
    fig.suptitle(
        "The IPO paper's toy bandits (Azar et al., arXiv:2310.12036v2, Sec. 5.3.1 and 5.4):\n"
        "DPO runs to a deterministic policy, IPO stays regularised" + (" [quick]" if quick else ""),
        fontsize=11,
    )
    return fig
