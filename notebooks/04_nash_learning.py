# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Nash learning: Nash-MD, its step-size schedule, and IPO-MD
#
# **What this notebook teaches.** When preferences are not Bradley-Terry (notebook 01), the target
# of Nash learning from human feedback is the Nash equilibrium of the preference game, regularised
# towards the reference policy $\mu$. Nash-MD (Munos et al., arXiv:2312.00886v4) reaches it by
# mirror descent against a geometric mixture of the current policy and $\mu$. You will run it
# exactly, check its convergence bound, and see the most common mistake: with a *constant* step
# size it converges, but to the wrong point, the fixed point of IPO-MD (Calandriello et al.,
# arXiv:2403.08635v1).
#
# **Equations covered.**
#
# - the regularised Nash equilibrium $\pi^*_\tau$:
#   $\pi^*_\tau(y) \propto \mu(y) \exp\big((P \pi^*_\tau)_y / \tau\big)$;
# - Nash-MD: $\pi_t^\mu \propto \pi_t^{1 - \eta_t\tau} \mu^{\eta_t\tau}$, then
#   $\pi_{t+1} \propto \pi_t^\mu \exp\big(\eta_t (P \pi_t^\mu)\big)$ (Eq. (8)-(9));
# - the schedule $\eta_t = 2 / (\tau (t + 2))$ and Theorem 1:
#   $KL(\pi^*_\tau \| \pi_T) \le 8 / (\tau^2 (T + 1))$;
# - a constant $\eta$: the limit solves $\pi \propto \mu \exp\big(P \pi_m / \tau\big)$ with
#   $\pi_m \propto \pi^{1-m} \mu^m$, $m = \eta\tau$: the IPO-MD fixed point with mixture $m$.
#
# **Reading time:** about 25 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
GAME = "rock_paper_scissors"  # a named game (prefopt_toy.games.named): skewed mu, uniform Nash
TAU = 0.1
STEPS = 300 if SMOKE else 3000  # Nash-MD steps in sections 2-4
WIDGET_STEPS = 300 if SMOKE else 1000

# %%
import matplotlib.pyplot as plt

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.games.named import named_game
from prefopt_toy.plots.draw import draw_simplex, plot_policy, plot_trajectory
from prefopt_toy.plots.experiments import experiment
from prefopt_toy.plots.figures import nash_md_convergence_figure

game = named_game(GAME)
P, mu = game.preference_matrix(), game.reference_policy()
print(game.description)

# %% [markdown]
# ## 1. The target: the regularised Nash equilibrium
#
# Nash learning asks for the policy that no other policy beats, with a KL penalty to $\mu$ of
# strength $\tau$ on both players. The equilibrium is unique and solves the fixed-point equation
# above: the best response to itself. The library solves it by Newton's method and certifies it.

# %%
star, report = pt.regularized_nash(P, mu, TAU, return_report=True)
print("pi*_tau =", star.numpy().round(4))
print("fixed-point residual:", report.residual)
print("unregularised Nash equilibrium:", pt.nash_equilibrium(P).numpy().round(4))
rlhf = pt.rlhf_optimum(P, mu, TAU)  # BT reward fitted on pairs from mu (nu = mu, the default)
print("win rates against mu, P @ mu          :", (P @ mu).numpy().round(4))
print("BT fit scores (pairs ~ mu)            :", pt.bt_fit(P, mu).numpy().round(4))
print("RLHF/DPO optimum (beta = tau, pairs ~ mu):", rlhf.numpy().round(4))
print(
    f"exploitability: RLHF/DPO {pt.exploitability(P, rlhf):.4f}, "
    f"regularised Nash {pt.exploitability(P, star):.4f}"
)
uniform = [1 / 3] * 3  # a contrast: the same BT fit on uniform pairs
print(
    "RLHF/DPO optimum (beta = tau, pairs uniform):", pt.rlhf_optimum(P, mu, TAU, nu=uniform).numpy()
)

# %% [markdown]
# On rock-paper-scissors the unregularised equilibrium is uniform whatever $\mu$ is. The regularised
# one is not: the KL term anchors it to $\mu = (0.6, 0.3, 0.1)$ (for large $\tau$ it is close to
# $\mu$), and at $\tau = 0.1$ it favours paper, the answer that beats $\mu$'s favourite, rock,
# while keeping every answer in play.
#
# RLHF/DPO goes much further. Its Bradley-Terry reward is fitted on the pairs offline DPO sees,
# drawn from $\mu$ (the library's default, `nu = mu`). Against those pairs paper wins 70% of its
# comparisons, rock 42% and scissors 38%, and the fit reproduces these win rates, so it ranks paper
# first; at $\beta = \tau = 0.1$ the optimum is the paper vertex, which scissors beat 90% of the
# time (exploitability 0.4, against 0.067 for $\pi^*_\tau$). Fitted on *uniform* pairs instead,
# the same game gives every answer the same score and the optimum is $\mu$ itself (last line): on
# a game that is not Bradley-Terry, which pairs the reward model saw decides where RLHF goes.
#
# ## 2. Nash-MD with the decaying schedule
#
# Each step mixes the current policy with $\mu$ (weight $\eta_t\tau$ on $\mu$), then takes a mirror
# step against that mixture. With $\eta_t = 2/(\tau(t+2))$ the first mixture weight is
# $\eta_0\tau = 1$: the first step ignores $\pi_0$ and lands exactly on the offline IPO optimum with
# data from $\mu$ (put $\eta_0\tau = 1$ in Munos et al., arXiv:2312.00886v4, Eq. (8)-(9)).

# %%
run = pt.nash_md(P, mu, tau=TAU, steps=STEPS)
kl_path = run.kl_to(star)
print(
    "pi_1 - IPO optimum (nu = mu):",
    float((run.policies[1] - pt.ipo_optimum(P, mu, TAU)).abs().max()),
)
for T in [1, 10, 100, STEPS]:
    print(
        f"T = {T:5d}: KL(pi* || pi_T) = {float(kl_path[T]):.3e}   bound 8/(tau^2 (T+1)) = "
        f"{widgets.nash_md_bound(TAU, T):.3e}"
    )

# %% [markdown]
# The bound holds at every step, and it is loose: the actual KL is orders of magnitude smaller
# (Theorem 1 of Munos et al., arXiv:2312.00886v4, is only an upper bound). Checked over the run:

# %%
bound = widgets.nash_md_bound(TAU, range(STEPS + 1))
print(
    "bound holds at every T:",
    bool((kl_path.numpy() <= bound).all()),
    "| smallest ratio bound / KL:",
    float((bound[1:] / kl_path.numpy()[1:]).min()),
)

# %% [markdown]
# ## 3. A constant step converges, but not to $\pi^*_\tau$
#
# Replace the schedule with a constant $\eta$ (it needs $\eta\tau \le 1$: $\eta\tau$ is a mixture
# weight). The iteration still converges, fast. Its limit solves the equation of the IPO-MD fixed
# point with mixture $m = \eta\tau$, not the regularised Nash equation. The larger the step, the
# further away.

# %%
for eta in [0.1, 1.0, 5.0]:
    constant = pt.nash_md(P, mu, tau=TAU, steps=STEPS, eta=eta)
    limit = pt.ipo_md_fixed_point(P, mu, TAU, eta * TAU)
    print(
        f"eta = {eta:4}: |pi_T - IPO-MD fixed point (m = {eta * TAU:.2f})| = "
        f"{float((constant.final - limit).abs().max()):.1e},  KL(pi* || pi_T) = {pt.kl(star, constant.final):.2e}"
    )

# %% [markdown]
# Here are the three kinds of run on the simplex: the decaying schedule spirals in to $\pi^*_\tau$
# (green star), the constant step $\eta = 5$ stops at its own fixed point (orange triangle).

# %%
constant = pt.nash_md(P, mu, tau=TAU, steps=STEPS, eta=5.0)
fig, ax = plt.subplots(figsize=(7.5, 4.2))
draw_simplex(ax, game.actions, gridlines=4)
plot_trajectory(ax, run.policies, color="tab:green", label="decaying step")
plot_trajectory(ax, constant.policies, color="tab:orange", label=r"constant $\eta$ = 5")
plot_policy(
    ax,
    star,
    marker="*",
    markersize=16,
    color="tab:green",
    markeredgecolor="black",
    label=r"$\pi^*_\tau$",
)
plot_policy(
    ax,
    pt.ipo_md_fixed_point(P, mu, TAU, 0.5),
    marker="v",
    markersize=10,
    color="tab:orange",
    markeredgecolor="black",
    label="IPO-MD fixed point, m = 0.5",
)
plot_policy(ax, mu, marker="X", markersize=10, color="gray", label=r"$\mu$")
ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
plt.show()

# %% [markdown]
# ## 4. The convergence figure
#
# The library's figure `nash_md_convergence` (config `experiments.nash_md_convergence`) puts it all
# on log-log axes for two values of $\tau$: the decaying schedule's KL falls like the bound's
# $1/T$ or faster, each constant step levels off at the KL between $\pi^*_\tau$ and its IPO-MD
# fixed point (dashed). Note how the bound grows as $\tau$ shrinks ($1/\tau^2$).

# %%
nash_md_convergence_figure(experiment("nash_md_convergence"), quick=SMOKE)

# %% [markdown]
# ## 5. IPO-MD: a mixture on purpose
#
# IPO-MD samples both completions of each pair from the mixture $\pi^{1-m}\mu^m$ and minimises
# the IPO loss on them. Its fixed point is the one the constant-step Nash-MD found; $m = 0$ (online
# IPO) gives back $\pi^*_\tau$. The library's exact IPO-MD run converges to it:

# %%
for m in [0.0, 0.125, 0.5]:
    traj = pt.ALGORITHMS["ipo_md"](P, mu, steps=STEPS, tau=TAU, mixture=m)
    target = pt.ipo_md_fixed_point(P, mu, TAU, m)
    print(
        f"mixture {m:5}: |pi_T - fixed point| = {float((traj.final - target).abs().max()):.1e}, "
        f"KL(pi* || fixed point) = {pt.kl(star, target):.2e}"
    )

# %% [markdown]
# ## 6. Try it: Nash learning live
#
# The sliders set $\tau$, the constant step $\eta$ (used by the constant-step run), IPO-MD's mixture
# and the number of steps; `schedule` chooses which Nash-MD runs are drawn. Left: the trajectories
# from $\mu$ with $\pi^*_\tau$ (star), the IPO-MD fixed point at the mixture (triangle) and the
# constant step's limit (orange triangle). Right: $KL(\pi^*_\tau \| \pi_t)$ against $t$ with the
# bound. An $\eta$ with $\eta\tau > 1$ is refused with a message.
#
# Things to try: make $\eta\tau$ small and watch the orange limit approach the star; set the mixture
# to $\eta\tau$ and watch the purple and orange limits coincide; shrink $\tau$ and watch the bound
# (and the spirals) grow.

# %%
learning = widgets.nash_learning(P, mu, tau=TAU, steps=WIDGET_STEPS)
learning

# %% [markdown]
# ## Summary
#
# - Nash-MD's target is the regularised Nash equilibrium $\pi^*_\tau$, the fixed point of
#   $\mu \exp(P\pi/\tau)$; the decaying step $\eta_t = 2/(\tau(t+2))$ reaches it with
#   $KL(\pi^*_\tau\|\pi_T) \le 8/(\tau^2(T+1))$, a loose bound.
# - The first step of that schedule lands on the offline IPO optimum.
# - A constant step converges to the IPO-MD fixed point with mixture $\eta\tau$, not to
#   $\pi^*_\tau$: use the schedule for an exact Nash, or read the constant step as IPO-MD.
#
# ## Exercises
#
# 1. Find (with the widget, or a loop over `pt.nash_md`) the largest constant $\eta$ whose limit is
#    within KL $10^{-3}$ of $\pi^*_\tau$, for $\tau = 0.1$ and $\tau = 1$. How does it scale?
# 2. Check Calandriello et al.'s Prop. 5.2 numerically: at the IPO-MD fixed point $\pi$ with
#    mixture $m$, the mixture $\pi_m$ is the regularised Nash at temperature $\tau/(1-m)$.
# 3. Run Nash-MD on `three_voter_types` and on the `condorcet_winner` game for $\tau$ from 1 to
#    0.01. Where does $\pi^*_\tau$ go as $\tau \to 0$, and how does that differ from where
#    RLHF/DPO go (notebook 01; pairs from $\mu$, `pt.rlhf_optimum(P, mu, tau)`)?
# 4. `pt.nash_md` always starts from $\mu$. Explain why, with the decaying schedule, the starting
#    policy would not matter at all after one step (hint: $\eta_0\tau = 1$).
