# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 1: the DPO and IPO losses
#
# **What this lab teaches.** You implement the two per-pair losses at the heart of offline
# preference optimisation, from the four log-probabilities a trainer has for each pair, and you
# meet their numerical pitfall: $\log\sigma(x)$ must never be computed as `log(sigmoid(x))`.
#
# **Equations.** For a pair where $y_w$ (chosen) beat $y_l$ (rejected), with policy $\pi$ and
# reference $\mu$, the log-ratio margin is
#
# $$h = \log\frac{\pi(y_w)}{\mu(y_w)} - \log\frac{\pi(y_l)}{\mu(y_l)}.$$
#
# - DPO (Rafailov et al., arXiv:2305.18290v3, Eq. 7): $\ell_\text{DPO}(h) = -\log\sigma(\beta h)$.
# - IPO (Azar et al., arXiv:2310.12036v2, Eq. 17): $\ell_\text{IPO}(h) = \left(h - \frac{1}{2\tau}\right)^2$.
#
# **How the lab works.** Each cell marked `# YOUR CODE` holds a function to fill in; the cell
# after it runs a checker from `prefopt_toy.labs` on several inputs. A wrong answer raises a
# `LabCheckError` that names the input, the value expected and the value you returned, often
# with a hint. The check cell is your self-check. Grading runs it again and then hidden tests on inputs you
# have not seen, which also fail an answer that just calls the library's own implementation
# (`pt.dpo_loss` and the like): write the formula yourself. Reading time: about
# 20 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
N_POINTS = 41 if SMOKE else 401  # margins on the plot at the end
BETA, TAU = 0.1, 0.1

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import prefopt_toy as pt
from prefopt_toy import labs

# %% [markdown]
# ## Exercise 1a: the DPO loss
#
# Write `dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta)`. The four inputs
# are float64 tensors of shape `(B,)`, one entry per pair (`logp_*` under the policy $\pi$,
# `ref_*` under the reference $\mu$). Return the unreduced losses, shape `(B,)`: do not average.
#
# Pitfall: $\sigma(-1000)$ is $e^{-1000} \approx 10^{-435}$, which is 0 in float64, so
# `torch.log(torch.sigmoid(x))` returns `-inf` there. `F.logsigmoid(x)` computes the same function
# stably. The checker includes margins of $\pm 10^3$ with $\beta = 1$.


# %% nbgrader={"grade": false, "grade_id": "ex1a_answer", "locked": false, "schema_version": 3, "solution": true}
def dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, beta):
    # YOUR CODE (exercise 1a): the margin h, then -log sigmoid(beta * h), one value per pair
    ### BEGIN SOLUTION
    h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return -F.logsigmoid(beta * h)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex1a", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_dpo_loss(dpo_loss)
### BEGIN HIDDEN TESTS
labs.grading.grade_dpo_loss(dpo_loss)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 1b: the IPO loss
#
# Same inputs, with `tau` in place of `beta`: return $\left(h - \frac{1}{2\tau}\right)^2$ per pair.
# Careful with Python's precedence: `1/2*tau` is $\tau/2$, not $\frac{1}{2\tau}$.


# %% nbgrader={"grade": false, "grade_id": "ex1b_answer", "locked": false, "schema_version": 3, "solution": true}
def ipo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, tau):
    # YOUR CODE (exercise 1b): the margin h, then (h - 1/(2 tau))^2, one value per pair
    ### BEGIN SOLUTION
    h = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return (h - 1.0 / (2.0 * tau)) ** 2
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex1b", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_ipo_loss(ipo_loss)
### BEGIN HIDDEN TESTS
labs.grading.grade_ipo_loss(ipo_loss)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: where each loss pushes the margin
#
# Both losses depend on the pair only through $h$. We put the margin in `logp_chosen` (the
# other three log-probs are 0) and plot your two functions. DPO's slope
# $-\beta\sigma(-\beta h)$ is negative for every $h$: it pushes the margin up forever. IPO's slope
# $2(h - \frac{1}{2\tau})$ vanishes at the target $h^* = \frac{1}{2\tau}$, so it stops there.

# %%
h = torch.linspace(-20.0, 30.0, N_POINTS, dtype=torch.float64)
zeros = torch.zeros_like(h)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(h, dpo_loss(h, zeros, zeros, zeros, BETA), label=f"DPO, beta={BETA}")
ax.plot(h, ipo_loss(h, zeros, zeros, zeros, TAU) / 100, label=f"IPO / 100, tau={TAU}")
ax.axvline(1 / (2 * TAU), color="gray", linestyle=":", label="IPO target 1/(2 tau)")
ax.set(xlabel="margin h", ylabel="loss", title="Per-pair losses as a function of the margin")
ax.legend()
plt.show()

# %% [markdown]
# A printed check of the claims above, with the library's own losses: DPO's loss keeps
# decreasing at the IPO target, IPO's derivative there is 0 (by autograd).

# %%
target = torch.tensor(1 / (2 * TAU), dtype=torch.float64, requires_grad=True)
(slope_ipo,) = torch.autograd.grad(pt.ipo_loss(target, TAU), target)
(slope_dpo,) = torch.autograd.grad(pt.dpo_loss(target, BETA), target)
print(
    f"at h = 1/(2 tau) = {1 / (2 * TAU):g}: IPO slope {float(slope_ipo):.3g}, DPO slope {float(slope_dpo):.4f}"
)

# %% [markdown]
# ## Summary and questions
#
# - Both losses see a pair only through the margin $h$; DPO wants $h \to +\infty$, IPO wants
#   $h = 1/(2\tau)$.
# - `-F.logsigmoid(x)` (equivalently `F.softplus(-x)`) is finite for every finite `x`;
#   `-torch.log(torch.sigmoid(x))` is not.
#
# Questions:
# 1. On a data set where a pair is only ever seen in one order, what happens to the DPO margin
#    during training? To the IPO margin?
# 2. Show that $\ell_\text{DPO}(h) - \ell_\text{DPO}(-h) = -\beta h$. Check it numerically with
#    your `dpo_loss`.
# 3. For which $\beta$ does `torch.log(torch.sigmoid(beta * h))` first return `-inf` at
#    $h = -1000$ in float64? In float32?
