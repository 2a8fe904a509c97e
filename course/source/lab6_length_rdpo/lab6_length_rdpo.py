# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 6: length exploitation and the R-DPO fix
#
# **What this lab teaches.** A judge that also likes *longer* answers teaches DPO to write
# longer answers. You build such a judge, predict how far DPO follows it, then write R-DPO
# (Park et al., arXiv:2403.19159v3), which puts a length term in DPO's sigmoid, and choose its
# weight so that the bias disappears. The exact dynamics confirm each step.
#
# **Equations.** Each action $y$ has a quality $q(y)$ and a length $L(y)$ (tokens). The judge is
# Bradley-Terry in $q + \kappa L$: $P[y, y'] = \sigma\bigl(q(y) + \kappa L(y) - q(y') - \kappa L(y')\bigr)$.
#
# - DPO with pairs from $\mu$ converges to $\pi \propto \mu\exp(\hat r/\beta)$ with $\hat r$ the BT
#   reward of the labels (Azar et al., arXiv:2310.12036v2, App. B Prop. 4), here $q + \kappa L$ up to a constant.
# - R-DPO: $\ell = -\log\sigma\bigl(\beta h + \alpha(|y_w| - |y_l|)\bigr)$, with $h$ DPO's log-ratio
#   margin. Its optimum is $\pi \propto \mu\exp\bigl((\hat r - \alpha L)/\beta\bigr)$.
#
# **How the lab works.** As in the other labs: fill in each cell marked `# YOUR CODE`, run the
# check after it. Grading adds hidden tests on other inputs, which fail an answer that calls the
# library's own implementation (`pt.rdpo_loss`, `pt.rdpo_optimum`, `pt.rlhf_optimum`,
# `pt.ALGORITHMS[...]`). Reading time: about 25 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 400 if SMOKE else 3000  # exact DPO / R-DPO steps in the looks
BETA, KAPPA = 1.0, 0.3

# %%
import torch
import torch.nn.functional as F

import prefopt_toy as pt
from prefopt_toy import labs

q = torch.tensor([1.0, 0.5, 0.0, -0.2], dtype=torch.float64)  # quality
L = torch.tensor([1.0, 4.0, 2.0, 8.0], dtype=torch.float64)  # length in tokens
mu = torch.full((4,), 0.25, dtype=torch.float64)
LONG = L >= 4  # the long answers

# %% [markdown]
# ## Exercise 6a: a judge that likes length
#
# Write `length_biased_preferences(q, lengths, kappa)`: the $K \times K$ matrix
# $P[i, j] = \sigma(s_i - s_j)$ with $s = q + \kappa L$ (float64). A longer answer wins more often.


# %% nbgrader={"grade": false, "grade_id": "ex6a_answer", "locked": false, "schema_version": 3, "solution": true}
def length_biased_preferences(q, lengths, kappa):
    # YOUR CODE (exercise 6a): scores s = q + kappa L, then P[i, j] = sigmoid(s_i - s_j)
    ### BEGIN SOLUTION
    s = q + kappa * lengths
    return torch.sigmoid(s[:, None] - s[None, :])
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex6a", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_length_biased_preferences(length_biased_preferences)
### BEGIN HIDDEN TESTS
labs.grading.grade_length_biased_preferences(length_biased_preferences)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6b: where DPO goes on this judge
#
# Write `dpo_length_optimum(q, lengths, kappa, mu, beta)`: DPO's optimum with pairs from `mu`
# labelled by your judge, $\mu\exp((q + \kappa L)/\beta)/Z$. Compute it in log space
# (`torch.softmax` of the logits): the check includes $\beta = 0.001$.


# %% nbgrader={"grade": false, "grade_id": "ex6b_answer", "locked": false, "schema_version": 3, "solution": true}
def dpo_length_optimum(q, lengths, kappa, mu, beta):
    # YOUR CODE (exercise 6b): softmax of log mu + (q + kappa L) / beta
    ### BEGIN SOLUTION
    return torch.softmax(mu.log() + (q + kappa * lengths) / beta, dim=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex6b", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_dpo_length_optimum(dpo_length_optimum)
### BEGIN HIDDEN TESTS
labs.grading.grade_dpo_length_optimum(dpo_length_optimum)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: exact DPO moves mass to the long answers
#
# The exact DPO dynamics on your judge, against your prediction and the length-free optimum
# $\mu\exp(q/\beta)/Z$ (what a judge with $\kappa = 0$ would teach).

# %%
P = length_biased_preferences(q, L, KAPPA)
run = pt.ALGORITHMS["dpo"](P, mu, beta=BETA, steps=STEPS)
free = torch.softmax(mu.log() + q / BETA, dim=-1)
predicted = dpo_length_optimum(q, L, KAPPA, mu, BETA)
for name, pi in [("exact DPO", run.final), ("6b prediction", predicted), ("length-free", free)]:
    print(
        f"{name:<14} {[round(p, 4) for p in pi.tolist()]}  mass on long answers {float(pi[LONG].sum()):.4f}"
    )
print(
    f"DPO moves {float(run.final[LONG].sum() - free[LONG].sum()):+.4f} of mass to the long answers"
)

# %% [markdown]
# ## Exercise 6c: the R-DPO loss
#
# Write `rdpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, length_chosen,
# length_rejected, beta, alpha)`: $-\log\sigma\bigl(\beta h + \alpha(|y_w| - |y_l|)\bigr)$ per pair,
# shape `(B,)`, with $h = (\log\pi(y_w) - \log\mu(y_w)) - (\log\pi(y_l) - \log\mu(y_l))$. Use
# `F.logsigmoid` (the check has margins of $\pm 10^3$).


# %% nbgrader={"grade": false, "grade_id": "ex6c_answer", "locked": false, "schema_version": 3, "solution": true}
def rdpo_loss(
    logp_chosen,
    logp_rejected,
    ref_chosen,
    ref_rejected,
    length_chosen,
    length_rejected,
    beta,
    alpha,
):
    # YOUR CODE (exercise 6c): the margin h, then -log sigmoid(beta h + alpha (|y_w| - |y_l|))
    ### BEGIN SOLUTION
    h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return -F.logsigmoid(beta * h + alpha * (length_chosen - length_rejected))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex6c", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_rdpo_loss(rdpo_loss)
### BEGIN HIDDEN TESTS
labs.grading.grade_rdpo_loss(rdpo_loss)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6d: the R-DPO optimum
#
# Write `rdpo_optimum(r, mu, lengths, beta, alpha)`: $\mu\exp\bigl((r - \alpha L)/\beta\bigr)/Z$, the
# policy R-DPO converges to when the labels are Bradley-Terry in $r$. Note what $\beta$ divides.


# %% nbgrader={"grade": false, "grade_id": "ex6d_answer", "locked": false, "schema_version": 3, "solution": true}
def rdpo_optimum(r, mu, lengths, beta, alpha):
    # YOUR CODE (exercise 6d): softmax of log mu + (r - alpha L) / beta
    ### BEGIN SOLUTION
    return torch.softmax(mu.log() + (r - alpha * lengths) / beta, dim=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex6d", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_rdpo_optimum(rdpo_optimum)
### BEGIN HIDDEN TESTS
labs.grading.grade_rdpo_optimum(rdpo_optimum)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 6e: the alpha that removes the bias
#
# On the judge $q + \kappa L$, R-DPO's optimum is $\mu\exp\bigl((q + \kappa L - \alpha L)/\beta\bigr)/Z$.
# Write `debiasing_alpha(kappa, beta)`: the $\alpha$ for which it is the length-free
# $\mu\exp(q/\beta)/Z$, for every $\beta$. The check then runs the exact R-DPO dynamics with it.


# %% nbgrader={"grade": false, "grade_id": "ex6e_answer", "locked": false, "schema_version": 3, "solution": true}
def debiasing_alpha(kappa, beta):
    # YOUR CODE (exercise 6e): return alpha (a number)
    ### BEGIN SOLUTION
    return kappa
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex6e", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_debiasing_alpha(debiasing_alpha)
### BEGIN HIDDEN TESTS
labs.grading.grade_debiasing_alpha(debiasing_alpha)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: R-DPO with your alpha, against DPO
#
# The same judge, the exact R-DPO dynamics with `alpha = debiasing_alpha(KAPPA, BETA)`: the mass
# on the long answers returns to the length-free value.

# %%
alpha = debiasing_alpha(KAPPA, BETA)
run_r = pt.ALGORITHMS["rdpo"](P, mu, beta=BETA, alpha=alpha, lengths=L, steps=STEPS)
for name, pi in [
    ("exact DPO", run.final),
    (f"exact R-DPO alpha={alpha:g}", run_r.final),
    ("length-free", free),
]:
    print(
        f"{name:<22} {[round(p, 4) for p in pi.tolist()]}  mass on long answers {float(pi[LONG].sum()):.4f}"
    )

# %% [markdown]
# ## Summary and questions
#
# - DPO learns the judge's reward, length preference included: the long answers gain
#   $\mu\exp(\kappa L/\beta)$-fold weight.
# - R-DPO subtracts $\alpha L$ from the learned reward; $\alpha = \kappa$ removes a length bias of
#   strength $\kappa$ whatever $\beta$.
#
# Questions:
# 1. With summed log-probs, does a bandit with a length-free judge ($\kappa = 0$) show any length
#    bias under DPO? What would have to change for it to?
# 2. What does R-DPO with $\alpha > \kappa$ do to the long answers? Check with `rdpo_optimum`.
# 3. SimPO divides each log-prob by its length instead. With equal lengths $L$ and $\gamma = 0$,
#    which DPO optimum does `pt.ALGORITHMS["simpo"]` reach (Meng et al., arXiv:2405.14734v3)?
