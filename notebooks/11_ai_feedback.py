# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11 · AI feedback: an order-biased judge, exactly
#
# **What this notebook teaches.** An LLM judge is shown two answers *in an order* and asked
# whether the first is better; it favours a slot (position bias). We take such a judge apart
# exactly: its order-free part and its bias, checked numerically; why pairs drawn from one
# distribution cannot see the bias at all (a sum over ordered pairs); which algorithms do see it
# (Nash-MD, Nash-MD-PG: the policy's answer always first; offline data whose two slots come from
# different distributions), with every fixed point under the raw and the symmetrised judge; a
# non-transitive judge with two bias models; and self-rewarding iterative DPO, where the policy
# judges its own answers, round by round.
#
# **Equations covered.** A judge $J[i, j] = \Pr(\text{first shown wins} \mid i \text{ first}, j
# \text{ second})$ splits as $J = P_{\mathrm{sym}} + \tfrac12 B$ with
# $P_{\mathrm{sym}} = \tfrac12(J + 1 - J^\top)$ (both orders averaged; Lee et al.,
# arXiv:2309.00267v3, Sec. 2.1.2) and $B = J + J^\top - 1$ (position bias; Zheng et al.,
# arXiv:2306.05685v4, Sec. 3.3). Nash-MD's fixed point under $J$:
# $\pi \propto \mu \exp\big((J - \tfrac12)\,s(\pi)/\tau\big)$, $s(\pi) \propto \pi^{1-m}\mu^m$
# (Munos et al., arXiv:2312.00886v4, Eq. (8)-(9)). Self-rewarding rounds
# $\pi_{t+1} = \mathrm{ref}_t\,e^{\hat r_t/\beta}/Z$ with the policy as judge,
# $J_{\pi} = (1-w)J + w\,\sigma(s(\log\pi_i - \log\pi_j))$ (Yuan et al., arXiv:2401.10020v3).
#
# **Reading time:** about 30 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
ROUNDS = 4 if SMOKE else 8  # self-rewarding rounds
N_TAUS = 5 if SMOKE else 13  # points of the tau sweep
MU = [0.6, 0.3, 0.1]  # the reference (and the offline data)
TAU = 0.1
SHIFT = 1.0  # the judge's first-slot bonus, in nats of log-odds
MIXTURE = 0.5  # Nash-MD-PG's and IPO-MD's mixture

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.analysis.judges import (
    FIXED_POINT_ALGORITHMS,
    effective_preference,
    judge_fixed_points,
    self_rewarding_dpo,
    self_rewarding_residual,
)
from prefopt_toy.plots.draw import draw_simplex, plot_policy

pd.set_option("display.float_format", "{:.3f}".format)  # one format per table
P = pt.three_voter_types(0.1)  # an honest, cyclic game: 1 > 0 > 2 > 1
J = pt.logit_shift_judge(P, SHIFT)  # the same judge, with 1 nat of log-odds for the first slot
mu = torch.tensor(MU, dtype=torch.float64)

# %% [markdown]
# ## 1. A judge with position bias
#
# `J[i, j]` is the probability that the judge names the *first* shown answer, with `i` shown
# first. An honest judge has `J[i, j] + J[j, i] = 1`; ours adds one nat to the first slot's
# log-odds, so every answer wins more often when shown first. Asking in both orders and averaging
# gives $P_{\mathrm{sym}}$; what is left, $B$, is symmetric: the advantage the first slot gives
# either answer of a pair.

# %%
P_sym, B = pt.judge_decomposition(J)
frames = {"J (raw)": J, "P_sym": P_sym, "B = J + J^T - 1": B}
pd.concat({k: pd.DataFrame(v.numpy()) for k, v in frames.items()}, axis=1)

# %% [markdown]
# The checks, each against a formula written out here: $J = P_{\mathrm{sym}} + B/2$;
# $P_{\mathrm{sym}}$ is a preference matrix; $B$ is symmetric; averaging the two orders by hand,
# pair by pair, gives $P_{\mathrm{sym}}$; and the largest bias over distinct pairs.

# %%
by_hand = torch.tensor([[0.5 * (J[i, j] + 1 - J[j, i]) for j in range(3)] for i in range(3)])
checks = {
    "max |J - (P_sym + B/2)|": (J - (P_sym + B / 2)).abs().max(),
    "max |P_sym + P_sym^T - 1|": (P_sym + P_sym.T - 1).abs().max(),
    "max |B - B^T|": (B - B.T).abs().max(),
    "max |P_sym - both orders by hand|": (P_sym - by_hand).abs().max(),
    "max |P_sym - P| (the honest game)": (P_sym - P).abs().max(),
    "max position bias": pt.max_position_bias(J),
}
pd.Series({k: float(v) for k, v in checks.items()}).to_frame("value").style.format("{:.3g}")

# %% [markdown]
# The first four are zero to round-off. The fifth is not: a logit shift is not a lapse, and on a
# clear pair it moves both orders by different amounts, so even the averaged judge is not quite
# the honest game (it is a little less decided). The bias is 0.46 on a tie (the diagonal,
# tanh(1/2)), 0.44 at most over distinct pairs, and smaller on clearer pairs.
#
# ## 2. Pairs from one distribution cannot see the bias
#
# Offline DPO on `mu x mu`, online DPO / IPO on `pi x pi`, IPO-MD on the mixture: both answers of
# a pair come from one distribution `s`, and the pair is shown in the order drawn. For any loss of
# the margin $h(y, y') = -h(y', y)$ the expected loss is a sum over *ordered* pairs,
# $\sum_{y,y'} s_y s_{y'}[J_{yy'}\ell(h_{yy'}) + (1 - J_{yy'})\ell(h_{y'y})]$. Relabelling
# $(y, y') \to (y', y)$ in half of it turns the label $J_{yy'}$ into $P_{\mathrm{sym}}[y, y']$:
# the loss is the same function of the policy whatever $B$ is. We sum it out for DPO's loss at a
# random policy, once with the raw labels and once with the averaged ones, and once more with the
# first answer from `mu` and the second from the uniform policy (two slots).


# %%
def expected_dpo_loss(labels, first, second, log_ratio, beta=0.5):
    total = 0.0
    for y, y2 in np.ndindex(3, 3):  # ordered pairs: y shown first, y2 second
        h = beta * (log_ratio[y] - log_ratio[y2])  # DPO's margin, antisymmetric
        loss_y = -torch.nn.functional.logsigmoid(h)  # y called the winner
        loss_y2 = -torch.nn.functional.logsigmoid(-h)  # y2 called the winner
        total += first[y] * second[y2] * (labels[y, y2] * loss_y + (1 - labels[y, y2]) * loss_y2)
    return float(total)


# %%
log_ratio = torch.tensor([0.7, -0.2, -1.1], dtype=torch.float64)  # log pi/mu of some policy
uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
losses = {
    "one distribution (mu x mu)": [expected_dpo_loss(M, mu, mu, log_ratio) for M in (J, P_sym)],
    "two slots (mu first, uniform second)": [
        expected_dpo_loss(M, mu, uniform, log_ratio) for M in (J, P_sym)
    ],
}
pd.DataFrame(losses, index=["raw judge J", "symmetrised P_sym"]).T.style.format("{:.12f}")

# %% [markdown]
# With one distribution the two losses agree to the last digit; with two slots they do not: the
# first slot's answers collect the bias. `effective_preference` gives, per algorithm, the matrix
# its expected loss actually uses; how far it is from each candidate:

# %%
rows = {}
for name in ("dpo", "ipo", "online_dpo", "online_ipo", "ipo_md", "nash_md", "nash_md_pg", "kto"):
    M = effective_preference(J, name)
    rows[name] = {"max |M - P_sym|": float((M - P_sym).abs().max()), "max |M - J|": float((M - J).abs().max())}  # fmt: skip
pd.DataFrame(rows).T.style.format("{:.3g}")

# %% [markdown]
# Everything that compares two draws of one distribution sees $P_{\mathrm{sym}}$. Nash-MD,
# Nash-MD-PG and KTO compare the policy's answer against an *opponent's* (the mixture's, or a
# data sample for KTO), with the judged answer first: they see $J$ itself.
#
# ## 3. Every fixed point, under the raw and the symmetrised judge
#
# `judge_fixed_points` solves each algorithm's population fixed point twice: querying the raw
# judge in its own order, and querying $P_{\mathrm{sym}}$. For Nash-MD the raw game is no longer
# zero-sum ($B/2$ adds a coordination term); its fixed point is found by Newton from the
# symmetrised one and certified (`residual`). Two extra rows: offline DPO and IPO on two-slot data
# (first answer from `mu`, second from the uniform policy).

# %%
fps = judge_fixed_points(J, mu, TAU, FIXED_POINT_ALGORITHMS, mixture=MIXTURE)
two = judge_fixed_points(J, mu, TAU, ("dpo", "ipo"), mixture=MIXTURE, slots=(mu, uniform))
fps |= {f"{k} two-slot": v for k, v in two.items()}
fmt = lambda p: "(" + ", ".join(f"{x:.3f}" for x in p.tolist()) + ")"  # noqa: E731
table = pd.DataFrame(
    {
        k: {
            "raw J": fmt(f.raw),
            "P_sym": fmt(f.symmetrized),
            "TV": f"{f.distance:.3g}",
            "residual": f"{f.residual:.0e}",
        }
        for k, f in fps.items()
    }  # fmt: skip
).T
table

# %% [markdown]
# On the simplex (grey triangle, corners the three actions): open markers under $P_{\mathrm{sym}}$,
# filled under the raw judge; the pooled algorithms' raw and symmetrised points coincide.

# %%
fig, ax = plt.subplots(figsize=(5.5, 4.8))
draw_simplex(ax, gridlines=4)
plot_policy(ax, mu, color="0.4", marker="s", label="mu")
for (name, f), color in zip(fps.items(), plt.get_cmap("tab10").colors):
    plot_policy(ax, f.symmetrized, color=color, markerfacecolor="none", markersize=11)
    plot_policy(ax, f.raw, color=color, markersize=5, label=name)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.85, 1.0))
plt.show()

# %% [markdown]
# Nash-MD and Nash-MD-PG move by about 0.01-0.015 in TV; the two-slot DPO optimum jumps most of
# the way to action 0 (TV 0.34), since under these data action 0 sits in the favoured slot far
# more often than the others. How the shifts grow as tau falls:

# %%
taus = np.geomspace(0.03, 3.0, N_TAUS)
sweep = {}
for tau in taus:
    f = judge_fixed_points(J, mu, tau, ("nash_md", "nash_md_pg"), mixture=MIXTURE)
    f2 = judge_fixed_points(J, mu, tau, ("dpo",), slots=(mu, uniform))
    sweep[tau] = {"Nash-MD": f["nash_md"].distance, "Nash-MD-PG": f["nash_md_pg"].distance,
                  "DPO two-slot": f2["dpo"].distance}  # fmt: skip
ax = pd.DataFrame(sweep).T.plot(logx=True, logy=True, marker="o", figsize=(6, 3.4))
ax.set(xlabel="tau", ylabel="TV(raw, symmetrised)")
plt.show()

# %% [markdown]
# For large tau every shift falls like 1/tau (the fixed points approach `mu` under either
# judge); as tau falls Nash-MD's levels off at a few percent, while the two-slot DPO optimum
# heads for a vertex.
#
# ## 4. A non-transitive judge, two bias models
#
# Rock-paper-scissors, judged with a bias of 0.46 on a tie under two models: a *lapse* (with
# probability 0.46 the judge names the first slot whatever it sees: $B$ is the same constant for
# every pair) and the logit shift above (the same bias on a tie, less on clear pairs). A constant
# $B$ adds the same number to every payoff of Nash-MD, and the normalisation removes it: Nash-MD
# cannot tell a lapse from an honest, less decided judge. Only a bias that differs across pairs
# moves it.

# %%
rps = pt.rock_paper_scissors(0.8)
bias = float(np.tanh(SHIFT / 2))  # the logit shift's bias on a tie
judges = {"lapse": pt.lapse_judge(rps, bias), "logit shift": pt.logit_shift_judge(rps, SHIFT)}
rows = {}
for model, Jm in judges.items():
    f = judge_fixed_points(Jm, mu, TAU, ("nash_md", "nash_md_pg"), mixture=MIXTURE)
    Bm = pt.position_bias(Jm)
    rows[model] = {"B min": float(Bm.min()), "B max": float(Bm.max()),
                   "Nash-MD TV": f["nash_md"].distance, "Nash-MD raw": fmt(f["nash_md"].raw),
                   "Nash-MD sym": fmt(f["nash_md"].symmetrized)}  # fmt: skip
pd.DataFrame(rows).T

# %% [markdown]
# The lapse's bias is one constant, and Nash-MD's raw and symmetrised fixed points agree to
# round-off; the logit shift's bias ranges over pairs and moves the fixed point. (The lapse's
# symmetrised judge is rock-paper-scissors with $P - 1/2$ shrunk by $1 - b$: the same fixed point
# as the honest game at $\tau/(1 - b)$; exercise 1.)
#
# ## 5. Self-rewarding iterative DPO
#
# Now the policy judges its own pairs. With weight $w$ it answers as a Bradley-Terry judge of its
# own log-probabilities (sharpness $s = 2$), otherwise as the true judge: scores (0, 0.3, 0.6),
# a 1-nat first-slot bonus. Each round draws pairs from the current policy (one distribution:
# the bias cancels, section 2) and runs DPO to its population optimum, with the reference either
# the previous round's policy (Yuan et al.) or kept at $\mu$ (RLHFlow). We follow the total
# variation to the true judge's target `rlhf_optimum(P_sym, mu, beta)` and the largest mass.

# %%
J_true = pt.logit_shift_judge(pt.bradley_terry([0.0, 0.3, 0.6]), 1.0)
mu_sr = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
runs = {
    (ref, w): self_rewarding_dpo(
        J_true, mu_sr, 1.0, rounds=ROUNDS, weight=w, sharpness=2.0, reference=ref
    )
    for ref in ("previous", "initial")
    for w in (0.0, 0.25, 0.5)
}
fig, (ax_d, ax_m) = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
for (ref, w), run in runs.items():
    style = {"linestyle": "-" if ref == "previous" else "--", "marker": "o", "label": f"{ref}, w={w}"}  # fmt: skip
    ax_d.plot(run.distance.numpy(), **style)
    ax_m.plot(run.max_mass.numpy(), **style)
ax_d.set(xlabel="round", ylabel="TV to the true target")
ax_m.set(xlabel="round", ylabel="largest probability")
ax_m.legend(fontsize=8)
plt.show()

# %% [markdown]
# Round 1 is the same for both references (it starts from $\mu$), and at $w = 0$ it *is* the
# target. After that, with the reference updated every round (solid), each round is a further DPO
# step from the last policy (for an honest Bradley-Terry judge exactly
# $\pi_t \propto \mu e^{t r/\beta}$, exercise 4): without self-preference the policy overshoots
# the target towards the true best action (2); with it, the initial favourite (action 0)
# reinforces itself and takes over (all the mass by round 8 at $w = 0.5$). With the reference kept
# at $\mu$ (dashed) the rounds stop at a fixed point of the round map; how far from one each final
# policy is, and where they end:

# %%
ends = {}
for (ref, w), run in runs.items():
    res = self_rewarding_residual(J_true, mu_sr, 1.0, run.policies[-1], weight=w, sharpness=2.0)
    ends[f"{ref}, w={w}"] = {"final policy": fmt(run.policies[-1]), "TV to target": float(run.distance[-1]),
                             "entropy": float(run.entropy[-1]), "fixed-point residual (initial ref.)": res}  # fmt: skip
pd.DataFrame(ends).T.style.format({"fixed-point residual (initial ref.)": "{:.1e}"}, precision=3)

# %% [markdown]
# The "initial" runs close in on a fixed point (the residual shrinks geometrically: about 1e-4 or
# less by round 8, slowest at the largest $w$), the $w = 0$ one at the target (TV 4e-5: the
# biased judge's $P_{\mathrm{sym}}$ is not exactly Bradley-Terry, so the fit moves a little with
# the pairs' distribution), the others further from it as $w$ grows. The residual is
# the "initial" round map's, so for the "previous" runs it only says they are far from *that*
# map's fixed points.
#
# ## 6. Explore
#
# Move the bias (the first slot's advantage on a tie; negative favours the second slot), switch
# the bias model, tau or the game. Left: each algorithm's fixed point under the raw judge (bars,
# one colour per action) and under the symmetrised one (black ticks). Right: their total
# variation, log scale; the value is written above each bar. Watch which columns ever leave 0,
# and what a lapse does to Nash-MD.

# %%
widgets.judge_explorer(bias=round(bias, 2), tau=TAU, mu=MU, mixture=MIXTURE)

# %% [markdown]
# ## Summary
#
# - A judge splits uniquely as $J = P_{\mathrm{sym}} + B/2$: both orders averaged, and a
#   symmetric position bias.
# - Pairs drawn from one distribution and shown in the order drawn see exactly $P_{\mathrm{sym}}$,
#   for every loss and every policy: the bias is invisible to offline DPO/IPO on `mu x mu`,
#   online DPO/IPO, IPO-MD, iterative DPO.
# - Nash-MD, Nash-MD-PG and KTO show the judged answer first against an opponent's: they see $J$,
#   and their fixed point moves (about 0.015 TV here), unless the bias is the same constant for
#   every pair (a lapse), which cancels.
# - Offline data with a slot convention leak the bias where the two slots' distributions differ;
#   here the DPO optimum moves by 0.34 TV.
# - Self-rewarding iterative DPO drifts to a vertex with the reference updated every round (the
#   true best without self-preference, its own favourite with it); with the reference kept at
#   $\mu$ it stops at a fixed point, further from the target as self-preference grows.
#
# ## Exercises
#
# 1. For the lapse judge `pt.lapse_judge(rps, b)` show that $P_{\mathrm{sym}} = (1 - b)P + b/2$
#    and that Nash-MD's fixed point at tau is the honest game's regularised Nash equilibrium at
#    $\tau/(1 - b)$; check it for b = 0.3 and 0.6.
# 2. Show the pairs always with the lower action index first (`order="index"` in
#    `judge_fixed_points`). Which algorithms now see the bias? Compare DPO's TV with section 3.
# 3. Swap the two slots of the two-slot data (uniform first, `mu` second). Which way does the DPO
#    optimum move now, and why?
# 4. With an honest Bradley-Terry judge (no bias), $w = 0$ and the reference updated every round,
#    prove that $\pi_t \propto \mu\,e^{t r/\beta}$ and check it for five rounds.
