# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Online IPO and IPO-MD: the same loss on different pairs reaches a different point
#
# **What this notebook teaches.** Calandriello et al. (arXiv:2403.08635v1) keep IPO's loss and change
# only *where the compared pairs come from*. Offline IPO draws them from a fixed $\nu$; **online IPO**
# from the current policy (stop-gradient) and lands on the **regularised Nash equilibrium**;
# **IPO-MD** from the geometric mixture $\pi^{1-m}\mu^m$ and lands on a fixed point whose mixture is
# the regularised Nash at $\tau/(1-m)$. **Online DPO**, the same change applied to DPO, does *not*
# find the Nash on a cyclic game, but does reproduce RLHF on a Bradley-Terry game.
#
# **Equations covered.**
#
# - Online IPO: $\mathbb E_{y,y'\sim \mathrm{sg}[\pi]}\big[(h_\pi(y^+,y^-) - \tfrac{1}{2\tau})^2\big]$, fixed point
#   $\pi = \mu\,e^{P\pi/\tau}/Z$ (Prop. 4.1).
# - IPO-MD: pairs from $\pi_m = \pi^{1-m}\mu^m/Z$; fixed point $\pi \propto \mu\,e^{P\pi_m/\tau}$, and
#   $\pi_m$ is the regularised Nash at $\tau/(1-m)$ (Prop. 5.2).
# - Nash-MD: $\log\pi_{t+1} = (1-\eta\tau)\log\pi_t + \eta\tau\log\mu + \eta P\pi_t^{\mu} + c$.
#
# **Reading time:** about 15 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 1500 if SMOKE else 6000  # exact steps; online IPO settles to round-off in ~1000
TAU = 0.1
MIXTURE = 0.125  # m, IPO-MD's weight of mu (the paper's beta; Calandriello et al.'s choice)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy.plots import notebook as notebook_plots

P = pt.three_voter_types(0.1)  # a Condorcet cycle (Munos et al. Sec. 3.2)
mu = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)

# %% [markdown]
# ## 1. Online IPO lands on the regularised Nash
#
# `Trajectory.distance_to(name)` is the total-variation distance from each iterate to a reference
# solution computed by the solvers; we print it at the last step.

# %%
online = pt.ALGORITHMS["online_ipo"](P, mu, steps=STEPS, tau=TAU)
offline = pt.ALGORITHMS["ipo"](P, mu, steps=STEPS, tau=TAU)
print(
    "online IPO  -> regularised Nash:", f"{float(online.distance_to('regularized_nash')[-1]):.1e}"
)
print(
    "offline IPO -> its own optimum mu exp(P mu / tau):",
    f"{float(offline.distance_to('ipo_optimum')[-1]):.1e}",
)
print(
    "offline IPO -> regularised Nash:",
    f"{float(offline.distance_to('regularized_nash')[-1]):.3f}  (a different point)",
)

# %% [markdown]
# The regularised Nash is a fixed point of the map $\pi \mapsto \mu e^{P\pi/\tau}/Z$: online IPO
# re-fits IPO against its *own* pairs until the two agree. Its exploitability is lower than that of
# the offline optimum:

# %%
print("exploitability, online IPO end :", round(pt.exploitability(P, online.final), 4))
print("exploitability, offline IPO end:", round(pt.exploitability(P, offline.final), 4))

# %% [markdown]
# ## 2. IPO-MD and Prop. 5.2
#
# IPO-MD samples pairs from the mixture $\pi^{1-m}\mu^m$. Its fixed point solves
# $\pi \propto \mu\,e^{P\pi_m/\tau}$ (`ipo_md_fixed_point`, solved directly). Prop. 5.2 says the
# *mixture* at that point is the regularised Nash at the higher temperature $\tau/(1-m)$. The
# solver does not use this identity, so the check below is a real one.

# %%
md = pt.ALGORITHMS["ipo_md"](P, mu, steps=STEPS, tau=TAU, mixture=MIXTURE)
fixed = pt.ipo_md_fixed_point(P, mu, TAU, MIXTURE)
mix = pt.geometric_mixture(fixed, mu, MIXTURE)
hot_nash = pt.regularized_nash(P, mu, TAU / (1 - MIXTURE))
print("IPO-MD run -> IPO-MD fixed point:", f"{float(md.distance_to('ipo_md_fixed_point')[-1]):.1e}")
print(
    "mixture at the fixed point vs regularised Nash at tau/(1-m):",
    f"{float((mix - hot_nash).abs().max()):.1e}",
)

# %% [markdown]
# ## 3. Nash-MD: the same targets by mirror descent
#
# Nash-MD plays against the mixture of its current policy and `mu`. With the decaying step
# $\eta_t = 2/(\tau(t+2))$ it converges to the regularised Nash (KL at most $8/(\tau^2(T+1))$);
# with a constant $\eta$ it converges instead to the IPO-MD fixed point with $m = \eta\tau$.

# %%
decaying = pt.nash_md(P, mu, tau=TAU, steps=STEPS)
bound = 8 / (TAU**2 * (STEPS + 1))
print(
    f"Nash-MD (decaying eta): KL to regularised Nash {float(decaying.kl_to('regularized_nash')[-1]):.1e} <= bound {bound:.1e}"
)
eta = MIXTURE / TAU
constant = pt.nash_md(P, mu, tau=TAU, steps=STEPS, eta=eta)
gap = 0.5 * float((constant.final - pt.ipo_md_fixed_point(P, mu, TAU, eta * TAU)).abs().sum())
print(f"Nash-MD (constant eta = {eta:g}): TV to IPO-MD fixed point with m = eta tau: {gap:.1e}")

# %% [markdown]
# ## 4. Online DPO: a different stationary point
#
# Online DPO is DPO on pairs from the current policy. At a stationary point the policy is the RLHF
# optimum of the BT reward fitted on **its own pairs** ($\nu = \pi$). On a cyclic game this
# self-consistent point is not the regularised Nash.

# %%
odpo = pt.ALGORITHMS["online_dpo"](P, mu, steps=STEPS, tau=TAU)
self_consistent = pt.rlhf_optimum(P, mu, TAU, nu=odpo.final)
print("online DPO end               :", odpo.final.numpy().round(4))
print(
    "TV to rlhf_optimum(nu = end) :",
    f"{0.5 * float((odpo.final - self_consistent).abs().sum()):.1e}  (self-consistent)",
)
print(
    "TV to regularised Nash       :",
    f"{float(odpo.distance_to('regularized_nash', tau=TAU)[-1]):.3f}  (not the Nash)",
)

# %% [markdown]
# On a Bradley-Terry game the BT fit is exact whatever the pairs, so the stationary point is the
# plain RLHF optimum (Calandriello et al., Theorem F.7). We use tau = 1 here: at tau = 0.1 the
# RLHF optimum gives y2 a probability of ~2e-5, online sampling then almost never draws y2, and
# the run needs tens of thousands of steps to settle (try it: a real weakness of pure online
# sampling).

# %%
P_bt, tau_bt = pt.bradley_terry([1.0, 0.5, 0.0]), 1.0
odpo_bt = pt.ALGORITHMS["online_dpo"](P_bt, mu, steps=STEPS, tau=tau_bt)
bt_optimum = pt.rlhf_optimum(P_bt, mu, tau_bt, nu=mu)  # pairs ~ mu; on a BT game any pairs agree
print(
    "BT game: online DPO -> RLHF optimum (pairs ~ mu):",
    f"{0.5 * float((odpo_bt.final - bt_optimum).abs().sum()):.1e}",
)
print(
    "BT game: online DPO -> regularised Nash:",
    f"{float(odpo_bt.distance_to('regularized_nash', tau=tau_bt)[-1]):.3f}",
)

# %% [markdown]
# ## 5. All of them on the triangle
#
# Five runs and three targets sit within a few hundredths of each other, so the inset zooms in on
# the crowd (the grey box on the triangle). There the regularised Nash (star) and the IPO-MD
# fixed point (triangle) are two points: IPO-MD's mixture is the Nash at $\tau/(1-m)$, its policy is
# not. Every run ends on a dot; online IPO and Nash-MD end on the same spot, the star, so the second
# gets a ring and the note under the triangle says so (the theory gives both the regularised Nash).

# %%
runs = {"ipo": offline, "online_ipo": online, "ipo_md": md, "nash_md": decaying, "online_dpo": odpo}
fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
notebook_plots.draw_trajectories(
    ax, runs, targets=("ipo_optimum", "regularized_nash", "ipo_md_fixed_point")
)
ax.set_title(f"Three voter types, tau = {TAU}, IPO-MD mixture m = {MIXTURE}")
plt.show()

# %% [markdown]
# ## Summary
#
# - Same IPO loss, different pairs: offline ($\nu$ fixed) gives $\mu e^{P\nu/\tau}$, online gives the
#   regularised Nash, mixture sampling gives the IPO-MD point (whose mixture is the Nash at
#   $\tau/(1-m)$).
# - Nash-MD reaches the same points by mirror descent: decaying step -> regularised Nash, constant
#   step -> IPO-MD with $m = \eta\tau$.
# - Online DPO is self-consistent RLHF: right on BT games, not the Nash on cyclic ones.
#
# ## Exercises
#
# 1. Vary `MIXTURE` from 0 to 1. Which two known points does the IPO-MD fixed point interpolate?
# 2. Try `pt.rock_paper_scissors(0.8)` with `mu = [0.6, 0.3, 0.1]`. Where does online DPO end? Check
#    that the last steps no longer move: if they do, lower `lr` (why can a constant step circle on a
#    cyclic game instead of converging?).
# 3. Run online IPO with `labels="hard"`. Is the fixed point still the regularised Nash of `P`? Of which matrix?
