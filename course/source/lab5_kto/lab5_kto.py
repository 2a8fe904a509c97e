# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 5: KTO and its reference point
#
# **What this lab teaches.** KTO (Ethayarajh et al., arXiv:2402.01306v4) learns from *unpaired*
# feedback: each example is one completion labelled desirable or undesirable. You write its loss,
# then its reference point $z_0$ twice, as the paper defines it and as TRL computes it, and see
# that they are different quantities. Last, you predict from the labels which actions the exact
# KTO dynamics drive to probability 0.
#
# **Equations.** The implied reward of a completion is $r(y) = \log\frac{\pi(y)}{\mu(y)}$. With
# strength $\beta$, weights $\lambda_D, \lambda_U$ and a reference point $z_0$ (a constant: no
# gradient flows through it), the per-example loss is (Sec. 4)
#
# $$\ell_D(r) = \lambda_D\bigl(1 - \sigma(\beta(r - z_0))\bigr), \qquad
#   \ell_U(r) = \lambda_U\bigl(1 - \sigma(\beta(z_0 - r))\bigr).$$
#
# - The paper's reference point: $z_0 = \mathrm{KL}(\pi\,\|\,\mu) = \sum_y \pi(y)\log\frac{\pi(y)}{\mu(y)}$.
# - TRL's: the batch mean of $\log\frac{\pi(y')}{\mu(y')}$ over *mismatched* completions $y'$
#   (each paired with another example's prompt), detached and clamped at 0. With completions drawn
#   from the data distribution $D$ (not from $\pi$) its population value is
#   $\max\bigl(0, \mathrm{KL}(D\|\mu) - \mathrm{KL}(D\|\pi)\bigr)$, not $\mathrm{KL}(\pi\|\mu)$.
#
# **How the lab works.** As in the other labs: fill in each cell marked `# YOUR CODE`, run the
# check after it. Grading adds hidden tests on other inputs, which fail an answer that calls the
# library's own implementation (`pt.kto_loss`, `pt.kto_reference_point`, `pt.kl`,
# `pt.ALGORITHMS["kto"]`). Reading time: about 20 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 300 if SMOKE else 3000  # exact KTO steps in the last look
N_SAMPLES = 2_000 if SMOKE else 200_000  # data completions for TRL's estimator
BETA = 0.5

# %%
import torch
import torch.nn.functional as F

import prefopt_toy as pt
from prefopt_toy import labs

# %% [markdown]
# ## Exercise 5a: the KTO loss
#
# Write `kto_loss(logratio, reference_point, desirable, beta, desirable_weight, undesirable_weight)`.
# `logratio` is a float64 tensor of shape `(B,)` (the rewards $r$), `reference_point` a float
# $z_0$, `desirable` a boolean tensor of shape `(B,)`, the weights are $\lambda_D$ and $\lambda_U$.
# Return the unreduced losses, shape `(B,)`. Note $1 - \sigma(x) = \sigma(-x)$; `torch.where`
# picks per example.


# %% nbgrader={"grade": false, "grade_id": "ex5a_answer", "locked": false, "schema_version": 3, "solution": true}
def kto_loss(logratio, reference_point, desirable, beta, desirable_weight, undesirable_weight):
    # YOUR CODE (exercise 5a): desirable lambda_D (1 - sigma(beta (r - z0))), undesirable lambda_U (1 - sigma(beta (z0 - r)))
    ### BEGIN SOLUTION
    x = beta * (logratio - reference_point)
    loss_desirable = desirable_weight * torch.sigmoid(-x)
    loss_undesirable = undesirable_weight * torch.sigmoid(x)
    return torch.where(desirable, loss_desirable, loss_undesirable)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex5a", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_kto_loss(kto_loss)
### BEGIN HIDDEN TESTS
labs.grading.grade_kto_loss(kto_loss)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 5b: the paper's reference point
#
# Write `kl_reference_point(pi, mu)`: $\mathrm{KL}(\pi\,\|\,\mu)$ in nats, a number (a 0-d tensor
# is fine). `pi` may have zero entries: $0\log 0 = 0$. Mind the direction: the expectation is
# under the *policy* $\pi$.


# %% nbgrader={"grade": false, "grade_id": "ex5b_answer", "locked": false, "schema_version": 3, "solution": true}
def kl_reference_point(pi, mu):
    # YOUR CODE (exercise 5b): sum over y of pi(y) log(pi(y) / mu(y)), with 0 log 0 = 0
    ### BEGIN SOLUTION
    terms = torch.where(pi > 0, pi * (pi.log() - mu.log()), torch.zeros_like(pi))
    return terms.sum()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex5b", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_kl_reference_point(kl_reference_point)
### BEGIN HIDDEN TESTS
labs.grading.grade_kl_reference_point(kl_reference_point)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 5c: TRL's reference point
#
# Write `trl_reference_point(mismatched_logratios)`: the mean of the vector, clamped at 0 (a
# negative mean gives 0), detached (the check also passes a tensor that requires grad).


# %% nbgrader={"grade": false, "grade_id": "ex5c_answer", "locked": false, "schema_version": 3, "solution": true}
def trl_reference_point(mismatched_logratios):
    # YOUR CODE (exercise 5c): max(0, mean of the log-ratios), with no gradient
    ### BEGIN SOLUTION
    return mismatched_logratios.detach().mean().clamp_min(0.0)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex5c", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_trl_reference_point(trl_reference_point)
### BEGIN HIDDEN TESTS
labs.grading.grade_trl_reference_point(trl_reference_point)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: the two reference points differ
#
# Take a policy $\pi$ and data completions drawn from $D = \mu$ (the SFT model's own samples, the
# usual case). TRL's estimator on a large batch approaches
# $\max(0, \mathrm{KL}(\mu\|\mu) - \mathrm{KL}(\mu\|\pi)) = \max(0, -\mathrm{KL}(\mu\|\pi)) = 0$,
# while the paper's $z_0 = \mathrm{KL}(\pi\|\mu)$ is positive as soon as $\pi \ne \mu$.

# %%
mu = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
pi = torch.tensor([0.1, 0.5, 0.3, 0.1], dtype=torch.float64)
generator = torch.Generator().manual_seed(0)
for name, data in [
    ("D = mu", mu),
    ("D = (0.05, 0.05, 0.2, 0.7)", torch.tensor([0.05, 0.05, 0.2, 0.7], dtype=torch.float64)),
]:
    samples = torch.multinomial(data, N_SAMPLES, replacement=True, generator=generator)
    estimate = trl_reference_point((pi.log() - mu.log())[samples])
    population = max(0.0, float(kl_reference_point(data, mu) - kl_reference_point(data, pi)))
    print(
        f"{name}: TRL's z0 on {N_SAMPLES} completions {float(estimate):.4f}, population "
        f"max(0, KL(D||mu) - KL(D||pi)) = {population:.4f}; paper's KL(pi||mu) = "
        f"{float(kl_reference_point(pi, mu)):.4f}"
    )

# %% [markdown]
# ## Exercise 5d: which actions does KTO drop?
#
# The exact data model of `pt.ALGORITHMS["kto"]`: an example is an action $y \sim \mu$, labelled
# desirable with probability $d(y) = (P\mu)_y$ (its win rate against a data sample). Each
# action's expected loss is $\mu(y)\bigl[\lambda_D d(y)(1 - s) + \lambda_U(1 - d(y))s\bigr]$ with
# $s = \sigma(\beta(r_y - z_0))$: when the undesirable weight wins, lowering $r_y$ always lowers
# the loss, and the action goes to 0.
#
# Write `kto_dropped(P, mu, desirable_weight, undesirable_weight)`: a boolean tensor of shape
# `(K,)`, True for the actions KTO drives to probability 0. The check's message then shows an
# exact KTO run.


# %% nbgrader={"grade": false, "grade_id": "ex5d_answer", "locked": false, "schema_version": 3, "solution": true}
def kto_dropped(P, mu, desirable_weight, undesirable_weight):
    # YOUR CODE (exercise 5d): the win rates d against mu; True where the weighted undesirable labels win
    ### BEGIN SOLUTION
    win_rate = P @ mu
    return undesirable_weight * (1 - win_rate) > desirable_weight * win_rate
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex5d", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_kto_dropped(kto_dropped)
### BEGIN HIDDEN TESTS
labs.grading.grade_kto_dropped(kto_dropped)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: the exact KTO dynamics
#
# On a random 4-action game, the dropped actions fall towards 0 (slowly: the sigmoid saturates),
# the others settle. With the paper's reference point and TRL's (`reference_point="data"`).

# %%
P = pt.random_game(4, seed=1)
print("dropped:", kto_dropped(P, mu, 1.0, 1.0).tolist())
for reference_point in ["kl", "data"]:
    run = pt.ALGORITHMS["kto"](P, mu, beta=BETA, steps=STEPS, reference_point=reference_point)
    print(
        f"z0 = {reference_point:<4} pi after {STEPS} steps: {[round(p, 4) for p in run.final.tolist()]}"
    )

# %% [markdown]
# ## Summary and questions
#
# - KTO's loss is a saturating sigmoid of $r - z_0$: a desirable example pushes its reward up, an
#   undesirable one down, and both stop once far on the right side of $z_0$.
# - The paper's $z_0 = \mathrm{KL}(\pi\|\mu)$ and TRL's clamped batch mean are different
#   quantities; with completions from $\mu$, TRL's is 0 in the population.
# - An action labelled undesirable more often than desirable (weighted) goes to 0.
#
# Questions:
# 1. Show that $\sum_y D(y)\log\frac{\pi(y)}{\mu(y)} = \mathrm{KL}(D\|\mu) - \mathrm{KL}(D\|\pi)$.
#    When is it positive?
# 2. The paper recommends $\lambda_D n_D / (\lambda_U n_U) \in [1, 4/3]$. On the game above, which
#    $\lambda_U$ keeps every action?
# 3. Why does the gradient of a dropped action's loss vanish as $\pi(y) \to 0$, and what does that
#    say about how fast it falls?
