# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 4: when RLHF and the Nash equilibrium disagree
#
# **What this lab teaches.** RLHF (and DPO) summarise the preferences by a Bradley-Terry reward
# and then maximise it; Nash learning from human feedback (Munos et al., arXiv:2312.00886v4,
# Sec. 3) plays the equilibrium of the preference game itself. When the preferences are not
# Bradley-Terry the two can pick different actions. You build such games by hand.
#
# **Equations.** The BT reward fitted on pairs from $\nu\otimes\nu$ (in this lab $\nu = \mu$: the
# pairs are drawn from the reference policy, `pt.rlhf_optimum(P, mu, beta, nu=mu)`),
# $\hat r = \arg\max_r \sum_{y,y'}\nu(y)\nu(y')P[y,y']\log\sigma(r_y - r_{y'})$, and the RLHF
# optimum $\pi_\text{RLHF}(y) \propto \mu(y)\exp(\hat r(y)/\beta)$ (Azar et al.,
# arXiv:2310.12036v2, Eq. 3 and App. B Prop. 4: DPO has the same optimum). The Nash equilibrium
# $\pi^*$ satisfies $\max_y (P\pi^*)_y \le 1/2$: no action beats it on average. A *Condorcet
# winner* $c$ beats every other action ($P[c, y] > 1/2$); then $\pi^* = \delta_c$.
#
# **How the lab works.** Each exercise asks for a function returning a game `(P, mu)`; the checker
# validates it and explains what it computed; grading recomputes the same claims independently
# (hidden tests). Reading time: about 20 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
BETAS = [1.0, 0.1, 0.01] if SMOKE else [10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01]

# %%
import prefopt_toy as pt
from prefopt_toy import labs

# %% [markdown]
# ## Exercise 4a: a Condorcet winner that RLHF does not pick
#
# Return a 3 x 3 preference matrix `P` (with $P + P^\top = 1$, so the diagonal is 1/2) and a
# full-support `mu` such that some action is a Condorcet winner, yet the RLHF optimum at
# $\beta = 0.01$ puts most of its mass on another action.
#
# Hint: with pairs from $\mu$ the BT fit ranks the actions roughly like their win rate against
# $\mu$, $\sum_{y'}\mu(y') P[y, y']$ (the average win rate when $\mu$ is uniform). A winner that
# wins every duel narrowly can have a lower average than an action that crushes a weak third one.


# %% nbgrader={"grade": false, "grade_id": "ex4a_answer", "locked": false, "schema_version": 3, "solution": true}
def condorcet_game():
    # YOUR CODE (exercise 4a): return P (3 x 3) and mu (3,)
    ### BEGIN SOLUTION
    # y0 beats y1 and y2 narrowly (0.55); y1 crushes y2 (0.95). Average win rates (uniform mu):
    # y0 0.533, y1 0.633, y2 0.333, so the BT fit ranks y1 first although y0 is the Condorcet winner.
    P = [[0.50, 0.55, 0.55], [0.45, 0.50, 0.95], [0.45, 0.05, 0.50]]
    mu = [1 / 3, 1 / 3, 1 / 3]
    return P, mu
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex4a", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_condorcet_disagreement(condorcet_game)
### BEGIN HIDDEN TESTS
labs.grading.grade_condorcet_disagreement(condorcet_game)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4b: a cycle where RLHF is (almost) deterministic
#
# Now a game with *no* Condorcet winner (a cycle $y_0 \prec y_1 \prec y_2 \prec y_0$ in the
# majority relation, say), so the Nash equilibrium mixes, but the RLHF optimum at $\beta = 0.01$
# puts at least 0.9 on one action $a$, which the Nash equilibrium plays with probability at most
# 1/2.


# %% nbgrader={"grade": false, "grade_id": "ex4b_answer", "locked": false, "schema_version": 3, "solution": true}
def cyclic_game():
    # YOUR CODE (exercise 4b): return P (3 x 3) and mu (3,)
    ### BEGIN SOLUTION
    # y1 beats y0 (0.6), y2 beats y1 (0.6), y0 beats y2 (0.8): a cycle, unbalanced so that y0
    # has the highest win rate against mu: 0.5 * 0.2 + 0.4 * 0.4 + 0.8 * 0.4 = 0.58 (y1, y2: 0.48).
    P = [[0.5, 0.4, 0.8], [0.6, 0.5, 0.4], [0.2, 0.6, 0.5]]
    mu = [0.2, 0.4, 0.4]
    return P, mu
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex4b", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_cycle_disagreement(cyclic_game)
### BEGIN HIDDEN TESTS
labs.grading.grade_cycle_disagreement(cyclic_game)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: RLHF as $\beta$ shrinks, against the Nash equilibrium
#
# On your game from exercise 4a, RLHF moves from $\mu$ (large $\beta$) to the BT winner (small
# $\beta$); the exploitability $\max_y (P\pi)_y - 1/2$ says how much the best reply beats it. The
# Nash equilibrium has exploitability 0.

# %%
P, mu = condorcet_game()
print(
    "Nash equilibrium:",
    pt.nash_equilibrium(P).tolist(),
    f"exploitability {pt.exploitability(P, pt.nash_equilibrium(P)):.1e}",
)
for beta in BETAS:
    pi = pt.rlhf_optimum(P, mu, beta, nu=mu)
    print(
        f"beta={beta:<5g} RLHF = {[round(p, 4) for p in pi.tolist()]}  "
        f"exploitability {pt.exploitability(P, pi):.4f}"
    )

# %% [markdown]
# ## Summary and questions
#
# - The BT fit compresses $P$ into one number per action, essentially an average win rate; the
#   Nash equilibrium looks at every duel. They agree on Bradley-Terry games and can disagree on
#   all others.
# - In a cycle, RLHF with small $\beta$ commits to one action, which some other action beats
#   more often than not; the Nash equilibrium cannot be beaten.
#
# Questions:
# 1. Show that on a Bradley-Terry game (`pt.bradley_terry(scores)`) the RLHF winner at small
#    $\beta$ is always the Condorcet winner. Which check of exercise 4a fails then?
# 2. In exercise 4a, change $\nu$ (`pt.rlhf_optimum(P, mu, beta, nu=...)`). Can you make RLHF
#    agree with the Nash equilibrium again?
# 3. What does `pt.regularized_nash(P, mu, tau)` give on your 4a game for small $\tau$?
