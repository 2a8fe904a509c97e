# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · From RLHF to DPO
#
# **What this notebook teaches.**
#
# 1. The KL-regularised RLHF objective has a closed-form optimum: a Gibbs tilt of the reference
#    policy $\mu$ by the Bradley-Terry reward.
# 2. DPO, trained on the exact population of preference pairs, converges to that same policy; we
#    run it and print the distance.
# 3. When preferences are deterministic (some $P[y, y'] = 1$), the Bradley-Terry fit has no finite
#    maximiser. DPO's margins then diverge and the policy collapses to a vertex whatever $\beta$
#    is (Azar et al., arXiv:2310.12036v2, Sec. 4).
# 4. Which way $\beta$ moves the optimum, with a slider.
# 5. *Likelihood displacement*: DPO can lower the probability of the response it is told to
#    prefer (Razin et al., arXiv:2410.08847; Pal et al., arXiv:2402.13228), computed exactly.
#
# **Equations covered.**
#
# $$\max_\pi\; \mathbb E_{y\sim\pi}[r(y)] - \beta\, \mathrm{KL}(\pi\,\|\,\mu)
#   \quad\Longrightarrow\quad \pi^*(y) = \frac{\mu(y)\, e^{r(y)/\beta}}{Z},$$
#
# $$\ell_\text{DPO}(y^+, y^-) = -\log\sigma(\beta h), \qquad
#   h = \log\frac{\pi(y^+)}{\mu(y^+)} - \log\frac{\pi(y^-)}{\mu(y^-)}.$$
#
# Notation: $P[y, y'] = \Pr(y \text{ beats } y')$, $\mu$ the reference policy (DPO's
# $\pi_\text{ref}$), $\hat r$ = `pt.bt_fit(P, mu)` the Bradley-Terry reward fitted on pairs drawn
# from $\mu$ (the pairs offline DPO trains on; the default of `pt.rlhf_optimum`), $h$ the DPO
# margin.
#
# **Reading time:** about 25 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
BETAS = (0.1, 1.0, 10.0)  # KL strengths compared throughout
DPO_STEPS = 300 if SMOKE else 2000  # exact DPO steps on the 3-action game
DETERMINISTIC_STEPS = 1_000 if SMOKE else 100_000  # DPO steps on the deterministic 2-action game

# %%
import dataclasses

import matplotlib.pyplot as plt
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.analysis import displacement
from prefopt_toy.games.named import named_game
from prefopt_toy.plots.draw import draw_simplex, plot_policy, plot_trajectory
from prefopt_toy.plots.experiments import experiment
from prefopt_toy.plots.ipo_toy import ipo_toy_figure

# %% [markdown]
# ## 1. The RLHF optimum in closed form
#
# RLHF first fits a reward to the preferences, then maximises it while staying close to $\mu$.
# With the Bradley-Terry reward $\hat r$ fitted to $P$ on pairs drawn from $\mu$, the objective
# $\mathbb E_\pi[\hat r] - \beta\,\mathrm{KL}(\pi\|\mu)$ is strictly concave in $\pi$ and its maximiser
# is the *Gibbs policy* $\pi^*_\beta \propto \mu\, e^{\hat r/\beta}$ (`pt.rlhf_optimum`).
#
# We use the game `condorcet_winner`: $y_0$ beats both others with probability 0.55, but $y_1$
# crushes $y_2$ (0.95), so Bradley-Terry gives $y_1$ the highest reward.

# %%
game = named_game("condorcet_winner")
P, mu = game.preference_matrix(), game.reference_policy()
print("P =\n", P.numpy())
print("mu =", mu.numpy(), "  BT reward r_hat (pairs ~ mu) =", pt.bt_fit(P, mu).numpy().round(4))
optima = pd.DataFrame(
    {beta: pt.rlhf_optimum(P, mu, beta).numpy() for beta in BETAS}, index=game.actions
).T.rename_axis("RLHF/DPO optimum (BT fit, pairs ~ mu), beta")
optima["KL(pi* || mu)"] = [pt.kl(pt.rlhf_optimum(P, mu, b), mu) for b in BETAS]
optima.round(4)

# %% [markdown]
# Small $\beta$ (weak KL penalty) lets the reward win: the optimum sits almost on $y_1$, the
# Bradley-Terry argmax, far from $\mu$ (large KL). Large $\beta$ keeps it near $\mu$ (KL near 0).
#
# ## 2. DPO's population optimum is the same policy
#
# DPO skips the reward model. It minimises the expected loss $-\log\sigma(\beta h)$ over pairs
# $(y, y') \sim \mu \times \mu$ with winner drawn from $P$. Rafailov et al. (arXiv:2305.18290v3,
# Sec. 4) and Azar et al. (arXiv:2310.12036v2, App. B, Prop. 4) show that its minimiser is exactly
# $\pi^*_\beta$, even when $P$ is not itself a Bradley-Terry matrix. Here `pt.ALGORITHMS["dpo"]`
# runs exact gradient descent on that expected loss (every pair enumerated, no sampling), one run
# per $\beta$ in a single batched call.

# %%
runs = pt.ALGORITHMS["dpo"](P, mu, steps=DPO_STEPS, tau=list(BETAS))
distance = runs.distance_to(
    "rlhf_optimum"
)  # total variation to pt.rlhf_optimum(P, mu, beta, nu=mu)
for i, beta in enumerate(BETAS):
    print(
        f"beta = {beta:5}: TV distance to the RLHF optimum after {DPO_STEPS} steps = "
        f"{float(distance[i, -1]):.1e}   (at the start: {float(distance[i, 0]):.3f})"
    )

# %%
fig, ax = plt.subplots(figsize=(5, 4.4))
draw_simplex(ax, game.actions, gridlines=4)
for i, beta in enumerate(BETAS):
    line = plot_trajectory(ax, runs[i].policies, linewidth=2, label=f"DPO, beta = {beta}")
    plot_policy(
        ax,
        pt.rlhf_optimum(P, mu, beta),
        marker="*",
        markersize=14,
        color=line.get_color(),
        markeredgecolor="k",
    )
plot_policy(ax, mu, marker="X", color="gray", markersize=10, label="reference mu")
ax.set_title("Exact DPO runs end on the RLHF optimum (stars; BT fit, pairs ~ mu)")
ax.legend(loc="upper left", fontsize=8)
# %% [markdown]
# Each path starts at $\mu$ (the cross) and ends on its star, the closed-form RLHF optimum for
# the same $\beta$: the printed distances are at round-off level.
#
# ## 3. Deterministic preferences: DPO loses its regularisation
#
# Suppose $y_1$ *always* beats $y_2$: $P[y_1, y_2] = 1$. The Bradley-Terry log-likelihood
# $\log\sigma(r_1 - r_2)$ keeps increasing as $r_1 - r_2 \to \infty$: there is no finite
# maximiser, and the formula $\mu e^{\hat r/\beta}/Z$ puts probability 1 on $y_1$ for *every*
# $\beta$. The library refuses to return a fake finite answer:

# %%
P_det = torch.tensor(experiment("ipo_toy").two_action_P)  # [[0.5, 1], [0, 0.5]]
mu2 = torch.tensor([0.5, 0.5], dtype=torch.float64)
try:
    pt.rlhf_optimum(P_det, mu2, beta=1.0)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# Near-deterministic preferences show the limit continuously. With $P[y_1, y_2] = 1 - \varepsilon$
# the Bradley-Terry gap is $\log\frac{1-\varepsilon}{\varepsilon} \to \infty$, so for any fixed
# $\beta$ the RLHF/DPO optimum $\pi(y_1)$ tends to 1. The KL term does not save it: the reward
# grows faster than any fixed penalty. IPO (notebook 03) optimises the win rate, which stays in
# $[0, 1]$, and keeps a finite answer, $\sigma(0.5/\tau)$ at $\varepsilon = 0$ (IPO paper, Sec. 5.3.1).

# %%
rows = []
for eps in (1e-1, 1e-2, 1e-4, 1e-8, 0.0):
    P_eps = torch.tensor([[0.5, 1 - eps], [eps, 0.5]], dtype=torch.float64)
    for beta in BETAS:
        dpo_pi = pt.rlhf_optimum(P_eps, mu2, beta)[0].item() if eps > 0 else float("nan")
        rows.append(
            {
                "epsilon": eps,
                "beta = tau": beta,
                "RLHF/DPO pi(y1) (pairs ~ mu)": dpo_pi,
                "IPO pi(y1) (pairs ~ mu)": pt.ipo_optimum(P_eps, mu2, beta)[0].item(),
            }
        )
pd.DataFrame(rows).pivot(index="epsilon", columns="beta = tau").sort_index(ascending=False).round(6)

# %% [markdown]
# Read the RLHF/DPO columns downwards: every $\beta$ heads to 1 (at $\varepsilon = 0$ the value is
# missing because no finite optimum exists), while the IPO columns stay put.
#
# What does DPO *do* on $\varepsilon = 0$? Its loss $-\log\sigma(\beta h)$ has a nonzero gradient
# for every finite margin $h$, so gradient descent pushes $h$ up forever. We run it for many steps
# (default step sizes) and look at $\pi(y_1)$ and at the margin $h$, which with a uniform $\mu$
# is the log-odds $\log \pi(y_1)/\pi(y_2)$:

# %%
long_runs = pt.ALGORITHMS["dpo"](P_det, mu2, steps=DETERMINISTIC_STEPS, tau=list(BETAS))
checkpoints = [t for t in (10, 100, 1_000, 10_000, 100_000) if t <= DETERMINISTIC_STEPS]
lp = long_runs.log_policies[:, checkpoints]  # (beta, checkpoint, action)
table = pd.DataFrame(
    {f"pi(y1), beta={b}": lp[i, :, 0].exp().numpy() for i, b in enumerate(BETAS)}
    | {f"h, beta={b}": (lp[i, :, 0] - lp[i, :, 1]).numpy() for i, b in enumerate(BETAS)},
    index=pd.Index(checkpoints, name="step"),
)
table.round(4)

# %% [markdown]
# The margin never stops growing, so $\pi(y_1)$ keeps creeping to 1 for every $\beta$; a larger
# $\beta$ only slows the march. (The default step size scales like $1/\beta^2$, so $\beta h$ is the
# same for every $\beta$: it grows by about $\log 10 \approx 2.30$ per tenfold of steps, i.e.
# $h \approx (\log t + c)/\beta$.) Whatever regularisation DPO shows here comes from stopping
# early, not from the KL term.
#
# The IPO paper's toy experiments show the same on three actions. Below, the left panel is the
# two-action game, the right panels the data set $D_1 = \{a \succ b, b \succ c, a \succ c\}$
# (every pair seen in one direction only): DPO goes to $(1, 0, 0)$ for every $\tau$, IPO follows its
# closed form. These are the exact runs of `prefopt_toy.plots.ipo_toy` (its sampled-minibatch
# markers are switched off here to keep the notebook fast).

# %%
toy_config = dataclasses.replace(experiment("ipo_toy"), sampled_taus=())
ipo_toy_figure(toy_config, quick=SMOKE)

# %% [markdown]
# ## 4. Which way does $\beta$ go? A slider
#
# Move $\beta$ (log scale, 0.01 to 100) and watch the RLHF/DPO optimum of the `condorcet_winner`
# game move along its path on the simplex:
#
# * **small $\beta$** (weak KL): far from $\mu$, towards the vertex of the Bradley-Terry argmax
#   ($y_1$ here);
# * **large $\beta$** (strong KL): it stays at $\mu$.
#
# The bar chart compares $\pi_\beta$ with $\mu$ action by action.

# %%
explorer = widgets.beta_explorer(P, mu, beta=1.0)
explorer

# %% [markdown]
# A check of both ends, setting the slider from code (the widget recomputes with
# `pt.rlhf_optimum`; we compare with a direct call):

# %%
vertex = explorer.data["bt_argmax"]
for beta in (0.01, 100.0):
    explorer.controls["beta"].value = beta
    pi = explorer.data["optimum"]
    print(
        f"beta = {beta:6}: pi = {pi.numpy().round(4)}, TV to BT-argmax vertex = "
        f"{0.5 * float((pi - vertex).abs().sum()):.4f}, TV to mu = {0.5 * float((pi - mu).abs().sum()):.4f}, "
        f"matches pt.rlhf_optimum: {torch.allclose(pi, pt.rlhf_optimum(P, mu, beta), atol=1e-12)}"
    )
explorer.controls["beta"].value = 1.0

# %% [markdown]
# ## 5. Likelihood displacement, exactly
#
# DPO only asks the *margin* $h$ to grow. With more than two responses, nothing forces
# $\log\pi(y^+)$ up: both $\log\pi(y^+)$ and $\log\pi(y^-)$ can fall, as long as $\log\pi(y^-)$
# falls faster, the probability moving to a third response. Razin et al. (arXiv:2410.08847) call
# this *likelihood displacement*; their opening example: training a model to prefer "No" over
# "Never" can sharply raise the probability of "Yes". Pal et al. (Smaug, arXiv:2402.13228) saw
# the chosen likelihood fall on pairs that differ in a few tokens, and added a penalty (DPOP).
#
# It cannot happen in a plain tabular softmax with one pair: the gradient raises the chosen logit
# and lowers the rejected one, nothing else. It needs **shared parameters**. Take a log-linear
# policy $\pi_w(y) \propto e^{\phi(y)\cdot w}$, a toy of a language model's last layer, where
# $\phi(y)$ is a response's embedding. The DPO gradient of one pair is
# $-\beta\sigma(-\beta h)\,\delta$ with $\delta = \phi(y^+) - \phi(y^-)$. So gradient descent walks
# along the ray $w_t = w_0 + s_t\delta$, and along it
#
# $$\frac{d}{ds}\log\pi(y) = a_y - \mathbb E_\pi[a], \qquad a = \Phi\,\delta .$$
#
# $\mathbb E_\pi[a]$ only grows along the ray (its derivative is a variance). So if the chosen
# response scores below the average at the start, $a_{y^+} < \mathbb E_{\mu}[a]$, its
# log-probability falls at every step (`displacement.displacement_criterion`).
#
# Our example: "No" $=(1, 0.2)$ and "Never" $=(1, -0.2)$ share their first coordinate (both
# refuse), "Yes" $=(-1, 1)$. The difference $\delta = (0, 0.4)$ points where "Yes" scores highest.

# %%
example = displacement.displacement_example("shared_features")
crit = displacement.displacement_criterion(example.features, example.chosen, example.rejected)
print(example.title)
print("scores a = Phi delta:", dict(zip(example.responses, crit.scores.numpy().round(3).tolist())))
print(
    f"E_mu[a] = {crit.mean_score:.4f} > a_chosen = {crit.scores[example.chosen]:.4f}:"
    f" chosen falls from the start: {crit.chosen_falls_from_start};"
    f" the mass goes to {example.responses[crit.winner]!r}"
)

# %%
run = example.run(quick=SMOKE)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
displacement.plot_displacement(axes, run, example.responses)
fig.suptitle(example.title)
print(
    f"after {run.steps} steps: log pi(No) {run.logp_chosen[0]:.3f} -> {run.logp_chosen[-1]:.3f}, "
    f"log pi(Never) {run.logp_rejected[0]:.3f} -> {run.logp_rejected[-1]:.3f}, "
    f"margin h {run.margin[0]:.2f} -> {run.margin[-1]:.2f}, pi(Yes) = {run.policies[-1, 2]:.6f}"
)

# %% [markdown]
# The loss went down and the margin up, exactly as DPO asks. Yet the chosen answer "No" lost
# probability at every step, and "Yes", which no pair mentions, took all the mass.
#
# The contrast: the same pair with one-hot features (a tabular softmax). Now the chosen response
# has the highest score ($a = (1, -1, 0)$), so it only gains.

# %%
tabular = displacement.displacement_example("tabular")
run_tab = tabular.run(quick=SMOKE)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
displacement.plot_displacement(axes, run_tab, tabular.responses)
fig.suptitle(tabular.title)
print(
    f"log pi(No) {run_tab.logp_chosen[0]:.3f} -> {run_tab.logp_chosen[-1]:.3g}; "
    f"criterion says chosen falls eventually: "
    f"{displacement.displacement_criterion(tabular.features, 0, 1).chosen_falls_eventually}"
)

# %% [markdown]
# Both runs on the simplex: the log-linear policy runs to the "Yes" corner, the tabular one to
# "No".

# %%
fig, ax = plt.subplots(figsize=(4.6, 4.2))
draw_simplex(ax, example.responses, gridlines=4)
plot_trajectory(ax, run.policies, linewidth=2, label="log-linear (shared features)")
plot_trajectory(ax, run_tab.policies, linewidth=2, linestyle="--", label="tabular softmax")
plot_policy(ax, run.policies[0], marker="X", color="gray", markersize=10, label="start = mu")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8)
# %% [markdown]
# Shared parameters are one route; **several pairs that share responses** are another, even in a
# tabular softmax. Take the IPO paper's data set $D_1 = \{a \succ b,\ b \succ c,\ a \succ c\}$.
# Response $b$ is chosen in $b \succ c$, and the margin of that pair grows, yet $\pi(b)$ falls:
# pair $a \succ b$ pushes it down as hard as $b \succ c$ pushes it up, while the normaliser grows.
# (By symmetry the margins of $a \succ b$ and $b \succ c$ are equal, so their two curves coincide
# on the right.)

# %%
shared = displacement.displacement_example("shared_responses")
run_d1 = shared.run(quick=SMOKE)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
displacement.plot_displacement(axes, run_d1, shared.responses)
fig.suptitle(shared.title)
print(
    f"log pi(b): {run_d1.log_policies[0, 1]:.3f} -> {run_d1.log_policies[-1, 1]:.3f};  "
    f"margin h(b > c): {run_d1.margins[0, 1]:.2f} -> {run_d1.margins[-1, 1]:.2f}"
)

# %% [markdown]
# ## Summary
#
# * The KL-regularised RLHF optimum is $\pi^*_\beta = \mu e^{\hat r/\beta}/Z$; exact DPO on the
#   population of pairs converges to the same policy (distances at round-off).
# * With deterministic preferences the Bradley-Terry reward is infinite. $\pi^*_\beta$ is then
#   a vertex for every $\beta$, and DPO's margin grows without bound: the KL term stops
#   regularising. IPO keeps a finite optimum.
# * Small $\beta$ moves the optimum towards the Bradley-Terry argmax, large $\beta$ keeps it at $\mu$.
# * DPO raises margins, not likelihoods. With shared parameters (similar embeddings of chosen and
#   rejected) or pairs that share responses, the chosen log-probability can fall at every step
#   while the loss improves.
#
# ## Exercises
#
# 1. In the `shared_features` example, move "Yes" to $(-1, 0.5)$. Compute $a$ and
#    $\mathbb E_\mu[a]$ by hand. Does "No" fall from the start? Does it fall eventually? Check with
#    `displacement.displacement_criterion` and `displacement.displacement_run`.
# 2. Make "No" and "Never" *less* similar, e.g. "Never" $=(0, -1)$. What happens to the chosen
#    log-probability, and why (compare $a_{y^+}$ with $\max_y a_y$)?
# 3. In the deterministic two-action table, $\pi(y_1) = \sigma(h)$. Using
#    $\beta h \approx \log t + c$ (read $c$ off the table), about how many steps would DPO with
#    $\beta = 10$ need to reach $\pi(y_1) = 0.99$? What does that say about $\beta$ as a regulariser?
# 4. Pal et al.'s DPOP adds $\lambda\max(0, \log\mu(y^+) - \log\pi(y^+))$ to the loss. In the
#    log-linear example, which direction does this penalty add to the gradient, and can it stop
#    the displacement?
