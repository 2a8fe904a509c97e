# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 2: the IPO optimum in closed form
#
# **What this lab teaches.** IPO does not need a reward model: its population optimum is an
# explicit exponential tilt of the reference policy by the *win rate* against the data policy.
# You compute it, stably, for any game, and see how $\tau$ moves it between $\mu$ and the action
# with the best win rate.
#
# **Equation** (Azar et al., arXiv:2310.12036v2, Eq. 8-9 with $\Psi$ = identity). With a
# preference matrix $P[y, y'] = \Pr(y \succ y')$, reference $\mu$, pairs drawn from
# $\nu \otimes \nu$ and strength $\tau > 0$, IPO maximises $P(\pi \succ \nu) - \tau\,KL(\pi\|\mu)$,
# whose maximiser is
#
# $$\pi^*(y) = \frac{\mu(y)\exp\big((P\nu)_y/\tau\big)}{Z}, \qquad (P\nu)_y = \sum_{y'} P[y, y']\,\nu(y').$$
#
# **How the lab works.** Fill in the cell marked `# YOUR CODE`; the next cell checks your
# function on six games, one with $\mu$ entries of $10^{-300}$ and one with $\tau = 0.001$.
# The check cell is your self-check. Grading runs it again and then hidden tests on inputs you
# have not seen, which also fail an answer that just calls the library's own implementation
# (`pt.ipo_optimum` and the like): write the formula yourself. Reading time: about
# 15 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
TAUS = [0.03, 0.1, 1.0] if SMOKE else [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]

# %%
import matplotlib.pyplot as plt
import torch

import prefopt_toy as pt
from prefopt_toy import labs
from prefopt_toy.plots.draw import draw_simplex, plot_policy

# %% [markdown]
# ## Exercise 2: `ipo_optimum(P, mu, nu, tau)`
#
# Inputs: `P` of shape `(K, K)`, `mu` and `nu` of shape `(K,)` (float64 tensors), `tau` a float.
# Return $\pi^*$, shape `(K,)`, summing to 1.
#
# Pitfall: with $\tau = 0.001$ the exponent $(P\nu)_y/\tau$ reaches 800 and $e^{800}$ is `inf`
# in float64. Work with logits $\log\mu(y) + (P\nu)_y/\tau$ and let `torch.softmax` normalise
# them (it subtracts the largest logit first). Do not clamp or smooth tiny $\mu$ entries.


# %% nbgrader={"grade": false, "grade_id": "ex2_answer", "locked": false, "schema_version": 3, "solution": true}
def ipo_optimum(P, mu, nu, tau):
    # YOUR CODE (exercise 2): logits log(mu) + (P @ nu) / tau, normalised
    ### BEGIN SOLUTION
    return torch.softmax(mu.log() + (P @ nu) / tau, dim=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex2", "locked": true, "points": 4, "schema_version": 3, "solution": false}
labs.check_ipo_optimum(ipo_optimum)
### BEGIN HIDDEN TESTS
labs.grading.grade_ipo_optimum(ipo_optimum)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: the IPO optimum as $\tau$ varies
#
# On the three-voter-types game of Munos et al. (arXiv:2312.00886v4, Sec. 3.2), with pairs from
# $\nu = \mu$: large $\tau$ keeps $\pi^*$ near $\mu$; small $\tau$ moves it towards the action
# with the highest win rate against $\mu$ (here $y_1$), reached as $\tau \to 0$. Your function draws the path; the printed table compares it
# with the library at each $\tau$.

# %%
P, mu = pt.three_voter_types(0.1), torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
print("win rates against mu:", pt.win_rates(P, mu))
for tau in TAUS:
    mine = ipo_optimum(P, mu, mu, tau)
    gap = float((mine - pt.ipo_optimum(P, mu, tau)).abs().max())
    print(
        f"tau={tau:<5g} pi* = {[round(p, 4) for p in mine.tolist()]}  |yours - library| = {gap:.1e}"
    )

# %%
fig, ax = plt.subplots(figsize=(4.5, 4))
draw_simplex(ax, gridlines=4)
for tau in TAUS:
    plot_policy(ax, ipo_optimum(P, mu, mu, tau), label=f"tau={tau:g}")
plot_policy(ax, mu, marker="s", color="gray", label="mu")
ax.set_title("IPO optimum for several tau (three voter types)")
ax.legend(loc="upper left", fontsize=8)
plt.show()

# %% [markdown]
# ## Summary and questions
#
# - The IPO optimum is $\mu$ tilted by $\exp(\text{win rate against }\nu / \tau)$: no reward
#   model, and it stays finite even for deterministic preferences (unlike DPO's optimum).
# - Computing it through logits and a softmax keeps it exact for tiny $\mu$ and tiny $\tau$.
#
# Questions:
# 1. For two actions with $P[0, 1] = 1$ and uniform $\mu = \nu$, show that $\pi^*(y_0) = \sigma(1/(2\tau))$.
#    Check it with your function at $\tau = 0.5$ (Azar et al., Sec. 5.3.1, give 0.731059).
# 2. What does $\pi^*$ become as $\tau \to 0$? As $\tau \to \infty$?
# 3. Change $\nu$ (the pair distribution) while keeping $\mu$: can the ranking of the actions in
#    $\pi^*$ change? Find an example on the three-voter-types game.
