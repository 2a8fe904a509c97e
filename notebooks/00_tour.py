# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · A ten-minute tour of preference optimisation, exactly
#
# **What this notebook teaches.** The whole story of the suite on one small game: a *preference
# game* and its Bradley-Terry (BT) fit; the RLHF/DPO optimum against the Nash equilibrium and the
# *regularised* Nash equilibrium; and every algorithm's exact trajectory on one triangle. Every
# number is exact (float64, expectations by enumeration), so when two things agree they agree to
# round-off, and when they disagree it is the maths, not noise.
#
# **Equations covered.**
#
# - Preference matrix: $P[i, j] = \Pr(y_i \succ y_j)$, $P + P^\top = 1$.
# - RLHF / DPO optimum: $\pi^*(y) \propto \mu(y)\exp(\hat r(y)/\beta)$, with $\hat r$ the BT reward.
# - Regularised Nash: $\pi^*_\tau(y) \propto \mu(y)\exp\big((P\pi^*_\tau)_y/\tau\big)$.
#
# **Reading time:** about 10 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 300 if SMOKE else 3000  # exact steps of every algorithm
TAU = 0.1  # KL strength used by every algorithm (beta = tau for the DPO family)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy.plots import notebook as notebook_plots

pd.set_option("display.float_format", "{:.4f}".format)  # one format: 4 decimals

# %% [markdown]
# ## 1. A preference game
#
# Munos et al. (2023, Sec. 3.2) describe three types of voters who rank three answers differently.
# Aggregated, the answers beat each other in a **cycle**: no answer beats both others. `mu` is the
# reference policy (the SFT model), the anchor of every KL penalty.

# %%
P = pt.three_voter_types(0.1)
mu = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
print(pd.DataFrame(P.numpy(), index=["y0", "y1", "y2"], columns=["y0", "y1", "y2"]))
print("Condorcet winner (beats every other answer):", pt.condorcet_winner(P))
print("transitive:", pt.is_transitive(P))

# %% [markdown]
# RLHF and DPO assume the Bradley-Terry model $P[i,j] = \sigma(r_i - r_j)$. We can always *fit*
# one (`bt_fit`, a maximum-likelihood fit), but on a cyclic game the fit is poor: the largest
# entry-wise error `bt_fit_gap` is far from 0, and the fitted reward ranks the answers in an order
# the voters never agreed on.

# %%
reward = pt.bt_fit(P)
print("BT reward:", reward.numpy().round(4))
print("worst error of the BT fit over all pairs:", round(pt.bt_fit_gap(P), 4))

# %% [markdown]
# ## 2. Three answers to "what is the best policy?"
#
# - **RLHF / DPO**: maximise the fitted reward minus $\beta\,KL(\pi\|\mu)$. Closed form. The BT
#   reward is fitted on the pairs the data come from; here, as in DPO's dynamics below, pairs
#   $\sim\mu$ (on a non-BT game another pair distribution gives another reward and optimum).
# - **Nash equilibrium**: the policy no other policy beats more than half the time (a linear
#   program). It ignores `mu`.
# - **Regularised Nash** (`regularized_nash`): the Nash equilibrium of the game with a KL penalty
#   $\tau\,KL(\pi\|\mu)$ on both players. This is where Nash-MD and online IPO converge.
#
# *Exploitability* $\max_y (P\pi)_y - 1/2$ measures how much the best answer beats the policy: 0
# only at the Nash equilibrium.
#
# Which exploitability does the regularised Nash minimise? Not this one. It is the Nash
# equilibrium of the **KL-regularised game**, where a policy $\pi'$ scores
# $P(\pi'\succ\pi) - \tau KL(\pi'\|\mu) + \tau KL(\pi\|\mu)$ against $\pi$. Its exploitability
# there, $\tau\log\sum_y\mu(y)e^{(P\pi)_y/\tau} + \tau KL(\pi\|\mu) - \tfrac12$ (column
# "exploitability, KL game"), is 0 at the regularised Nash and positive everywhere else, `mu`
# and the Nash equilibrium included. In the raw game the regularised Nash may even be *more*
# exploitable than `mu`: it trades some raw exploitability for staying close to `mu`.

# %%
table = notebook_plots.solution_table(P, mu, TAU)
table

# %% [markdown]
# The regularised Nash is *certified*: the solver returns only once the fixed-point equation holds
# to 1e-12. As $\tau \to 0$ it tends to the Nash equilibrium, while the RLHF optimum tends to the
# BT argmax instead (see notebook 04 and the `tau_path` figure).

# %%
pi_star, report = pt.regularized_nash(P, mu, tau=TAU, return_report=True)
print("fixed-point residual max|pi - mu exp(P pi / tau) / Z| =", f"{report.residual:.1e}")
for tau in (0.1, 0.01, 0.001):
    gap = 0.5 * float((pt.regularized_nash(P, mu, tau) - pt.nash_equilibrium(P)).abs().sum())
    print(f"tau = {tau:<6} TV distance of regularised Nash to the Nash equilibrium: {gap:.4f}")

# %% [markdown]
# ## 3. Every algorithm on one triangle
#
# A policy on three answers is a point of a triangle (corners = deterministic policies). Each
# algorithm starts at `mu` and follows the *expected* gradient exactly. `dynamics.redraw` runs the
# nine core algorithms together. Offline methods (dashed) use pairs from `mu`; online methods
# (solid) sample pairs from the current policy.
# DPO's target is the RLHF optimum for the BT reward fitted on *its own pairs* (pairs ~ `mu`), the
# same point as the table's row: `Trajectory.target` always uses the run's own pair distribution.
#
# How to read it: every run ends on a marker (a dot); runs that end on the same spot get rings
# around it, and the note under the triangle names them (they coincide on purpose: their theory
# gives them the same fixed point). The inset zooms in where the end points crowd: the
# regularised Nash (star) and IPO-MD's own fixed point (triangle) are distinct points.

# %%
runs = pt.dynamics.redraw(P, mu, tau=TAU, steps=STEPS)
fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
notebook_plots.draw_trajectories(
    ax, runs, targets=("rlhf_optimum", "ipo_optimum", "regularized_nash", "ipo_md_fixed_point")
)
ax.set_title(f"Exact trajectories from mu, {STEPS} steps, tau = {TAU}")
plt.show()

# %% [markdown]
# Where did each one end? `zoo_table` gives the last iterate and the total-variation distance to
# the fixed point the theory predicts for it (`FIXED_POINTS`). DPO and RLHF land on the RLHF
# optimum, IPO on the IPO optimum, online IPO and Nash-MD on the regularised Nash, IPO-MD on its
# own fixed point. SLiC and online DPO have no closed-form target: their "last step moved" shows
# whether they have settled. Nash-MD's decaying step converges at rate $O(1/T)$, so its distance is
# small but not round-off.

# %%
# one format here too (distances are tiny); "—": no fixed point registered
notebook_plots.table_view(notebook_plots.zoo_table(runs), "{:.2e}")

# %% [markdown]
# ## 4. Where to go next
#
# | notebook | what it covers |
# |---|---|
# | `01_preference_games` | preference matrices, BT fits, Condorcet and Borda winners, cycles |
# | `02_rlhf_to_dpo` | the RLHF objective, its closed form and the DPO loss that reaches it |
# | `03_psipo_ipo` | PsiPO and IPO, the IPO paper's toys, TRL's per-token averaging |
# | `04_nash_learning` | Nash equilibria, the regularised Nash, Nash-MD and its convergence bound |
# | `05_online_ipo_ipo_md` | online IPO, IPO-MD and online DPO: which fixed point each reaches |
# | `06_symbolic_derivations` | the closed forms derived with sympy |
# | `07_algorithm_zoo` | every registered algorithm side by side, and the notation across papers and TRL |
# | `labs/` | coursework: widgets and auto-checked exercises |

# %% [markdown]
# ## Summary
#
# - A preference game need not be transitive; a BT fit then throws information away.
# - RLHF/DPO optimise the fitted reward; Nash methods play the game itself. With a KL penalty the
#   game has a unique regularised Nash equilibrium, which online IPO and Nash-MD reach.
# - Every algorithm's exact path ends on the point its theory predicts (the table above).
#
# ## Exercises
#
# 1. Replace the game with `pt.bradley_terry([1.0, 0.5, 0.0])`. Which targets now coincide, and why?
# 2. Rerun section 3 with `TAU = 1.0` and `TAU = 0.01`. How do the targets move relative to `mu`?
# 3. Using `pt.exploitability`, find the largest tau (with `beta = tau`, the reward fitted on pairs
#    from `mu`) below which the RLHF optimum is beaten by some answer more than 60% of the time.
