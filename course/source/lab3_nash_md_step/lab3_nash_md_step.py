# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 3: one Nash-MD step
#
# **What this lab teaches.** Nash-MD (Munos et al., arXiv:2312.00886v4, Sec. 6) finds the
# equilibrium of the KL-regularised preference game by mirror descent against a *geometric
# mixture* of the current policy and the reference. In the tabular case each step has a closed
# form; you write it, then iterate it and watch it reach the regularised Nash equilibrium.
#
# **Equations.** With current policy $\pi_t$, reference $\mu$, preference matrix $P$, KL strength
# $\tau$ and step size $\eta$ (with $\eta\tau \le 1$):
#
# $$\pi_t^\mu(y) = \frac{\pi_t(y)^{1-\eta\tau}\,\mu(y)^{\eta\tau}}{\sum_{y'}\pi_t(y')^{1-\eta\tau}\,\mu(y')^{\eta\tau}}
# \qquad \text{(Eq. 8: the geometric mixture)}$$
#
# $$\pi_{t+1} = \arg\max_\pi\; \eta\,P(\pi \succ \pi_t^\mu) - KL(\pi\|\pi_t^\mu)
# \quad\Longleftrightarrow\quad
# \pi_{t+1}(y) \propto \pi_t^\mu(y)\,\exp\big(\eta\,(P\pi_t^\mu)_y\big) \qquad \text{(Eq. 9)}.$$
#
# With $\eta_t = 2/(\tau(t+2))$ the iterates converge to the regularised Nash equilibrium
# $\pi^*_\tau$ (Theorem 1: $KL(\pi^*_\tau\|\pi_T) \le 8/(\tau^2(T+1))$).
#
# Reading time: about 20 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 50 if SMOKE else 2000
TAU = 0.1

# %%
import matplotlib.pyplot as plt
import torch

import prefopt_toy as pt
from prefopt_toy import labs
from prefopt_toy.plots.draw import draw_simplex, plot_policy, plot_trajectory

# %% [markdown]
# ## Exercise 3: `nash_md_step(pi, mu, P, tau, eta)`
#
# Inputs: `pi` and `mu` of shape `(K,)`, `P` of shape `(K, K)` (float64 tensors), floats `tau`
# and `eta`. Return $\pi_{t+1}$, shape `(K,)`.
#
# Two things to get right: the mixture puts weight $\eta\tau$ on $\mu$ (not on $\pi_t$), and both
# the starting point and the opponent of the step are the *normalised* mixture $\pi_t^\mu$.
# Working with logarithms ($\log\pi_t^\mu = (1-\eta\tau)\log\pi_t + \eta\tau\log\mu$, then a
# softmax) keeps it stable. The checker replays transitions of `pt.nash_md`.
# The check cell is your self-check. Grading runs it again and then hidden tests on inputs you
# have not seen, which also fail an answer that just calls the library's own implementation
# (`pt.nash_md`, `pt.ipo_optimum`; `pt.geometric_mixture` is fine): write the formula yourself.


# %% nbgrader={"grade": false, "grade_id": "ex3_answer", "locked": false, "schema_version": 3, "solution": true}
def nash_md_step(pi, mu, P, tau, eta):
    # YOUR CODE (exercise 3): the geometric mixture, then the mirror step against it
    ### BEGIN SOLUTION
    m = eta * tau
    mixture = torch.softmax((1 - m) * pi.log() + m * mu.log(), dim=-1)
    return torch.softmax(mixture.log() + eta * (P @ mixture), dim=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex3", "locked": true, "points": 4, "schema_version": 3, "solution": false}
labs.check_nash_md_step(nash_md_step)
### BEGIN HIDDEN TESTS
labs.grading.grade_nash_md_step(nash_md_step)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: iterate your step to the regularised Nash equilibrium
#
# Start at $\pi_0 = \mu$ and apply your step with the schedule $\eta_t = 2/(\tau(t+2))$ for
# `STEPS` steps. The library's `pt.regularized_nash` solves the fixed-point equation
# $\pi = \mu\exp(P\pi/\tau)/Z$ directly; the KL to it should fall below Theorem 1's bound.

# %%
P, mu = pt.three_voter_types(0.1), torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
policies = [mu]
for t in range(STEPS):
    policies.append(nash_md_step(policies[-1], mu, P, TAU, 2.0 / (TAU * (t + 2))))
target = pt.regularized_nash(P, mu, TAU)
print(f"regularised Nash equilibrium (tau={TAU}): {target.tolist()}")
print(
    f"after {STEPS} steps:  KL(target || pi_T) = {pt.kl(target, policies[-1]):.2e}"
    f"  (Theorem 1 bound: {8 / (TAU**2 * (STEPS + 1)):.2e})"
)
library = pt.nash_md(P, mu, tau=TAU, steps=STEPS).policies[-1]
print(
    f"largest difference from pt.nash_md after {STEPS} steps: {float((policies[-1] - library).abs().max()):.1e}"
)

# %%
fig, ax = plt.subplots(figsize=(4.5, 4))
draw_simplex(ax, gridlines=4)
plot_trajectory(ax, torch.stack(policies), color="tab:green", label="your Nash-MD iterates")
plot_policy(ax, mu, marker="s", color="gray", label="mu (start)")
plot_policy(ax, target, marker="*", markersize=12, color="tab:red", label="regularised Nash")
ax.set_title(f"Nash-MD on three voter types, tau={TAU}")
ax.legend(loc="upper right", fontsize=8)
plt.show()

# %% [markdown]
# ## Summary and questions
#
# - A Nash-MD step is a softmax of $\log\pi_t^\mu + \eta P\pi_t^\mu$: the mixture is both the
#   anchor and the opponent.
# - The decaying step $\eta_t = 2/(\tau(t+2))$ makes the *last* iterate converge; at $t = 0$,
#   $\eta_0\tau = 1$, so the first step is the IPO optimum with $\nu = \mu$ (check it with Lab 2).
#
# Questions:
# 1. Run your step with a constant $\eta$ (say $\eta\tau = 0.5$). Does it converge to
#    `pt.regularized_nash`? Compare with `pt.ipo_md_fixed_point(P, mu, TAU, mixture=0.5)`.
# 2. What happens to the mixture, and to the step, when $\eta\tau = 1$? When $\eta \to 0$?
# 3. On `pt.rock_paper_scissors(1.0)` with uniform $\mu$, where does Nash-MD go, and why?
