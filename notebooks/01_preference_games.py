# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Preference games: Bradley-Terry, Condorcet cycles and Condorcet winners
#
# **What this notebook teaches.** Preference optimisation starts from a *preference matrix*
# $P[i, j] = \Pr(y_i \succ y_j)$ over a finite set of answers. RLHF and DPO assume that $P$ comes
# from a Bradley-Terry (BT) model, a single score per answer. Here you will see when that holds, what
# a Condorcet cycle and a Condorcet winner are, and how badly the best BT fit can miss a game that
# is not BT, to the point of ranking first an answer that loses to another one head to head.
#
# **Equations covered.**
#
# - a preference matrix: $P + P^\top = \mathbf 1 \mathbf 1^\top$, $P[i, i] = \tfrac12$;
# - Bradley-Terry: $P[i, j] = \sigma(r_i - r_j)$, and its maximum-likelihood fit
#   $\hat r = \arg\max_r \sum_{i, j} \nu_i \nu_j P[i, j] \log \sigma(r_i - r_j)$ (Azar et al.,
#   arXiv:2310.12036v2, Eq. (1)-(2));
# - Condorcet winner: $y^\star$ with $P[y^\star, y] > \tfrac12$ for every $y \neq y^\star$;
# - Nash equilibrium of the preference game: $\pi^\star = \arg\max_\pi \min_{\pi'} \pi^\top P \pi'$
#   (Munos et al., arXiv:2312.00886v4, Sec. 3);
# - the BT fit gap $\max_{i, j} |P[i, j] - \sigma(\hat r_i - \hat r_j)|$.
#
# **Reading time:** about 20 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
N_RANDOM_GAMES = 200 if SMOKE else 2000  # random 3-action games in the census of section 5
EPSILON = 0.1  # three_voter_types(epsilon), Munos et al. Sec. 3.2

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.games.named import NAMED_GAMES, named_game
from prefopt_toy.plots.figures import reference_solutions_figure

torch.set_printoptions(precision=4)

# %% [markdown]
# ## 1. A preference matrix
#
# Each entry is the probability that a rater prefers the row's answer to the column's. Only the
# upper triangle is free: $P[j, i] = 1 - P[i, j]$, and an answer ties with itself. The library
# ships four named three-answer games; here is the one that will matter most below.

# %%
game = named_game("condorcet_winner")
P = game.preference_matrix()
print(game.description)
print(P)
print("P + P.T == 1 everywhere:", bool(torch.equal(P + P.T, torch.ones(3, 3, dtype=P.dtype))))
print("pt.check_preference_matrix accepts it:", pt.check_preference_matrix(P).shape)

# %% [markdown]
# ## 2. Bradley-Terry games
#
# In a BT game every answer has a score $r_y$ and $P[i, j] = \sigma(r_i - r_j)$: one number per
# answer explains every comparison. Then the order of the scores is the order of preference, the
# game is transitive, and the BT fit recovers the scores (up to a common shift: only differences
# matter).

# %%
scores = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
P_bt = pt.bradley_terry(scores)
fit = pt.bt_fit(P_bt)
print("true scores  :", scores.numpy().round(4))
print("fitted scores:", fit.numpy().round(4), "(shifted by a constant)")
print("score differences recovered to", float(((fit - fit[2]) - scores).abs().max()))
print(
    "is BT:",
    pt.is_bradley_terry(P_bt),
    "| transitive:",
    pt.is_transitive(P_bt),
    "| BT fit gap:",
    pt.bt_fit_gap(P_bt),
)
print(
    "Condorcet winner:",
    pt.condorcet_winner(P_bt),
    "| Nash equilibrium:",
    pt.nash_equilibrium(P_bt).numpy().round(4),
)

# %% [markdown]
# On a BT game everybody agrees: the top score, the Condorcet winner and the Nash equilibrium (a
# pure policy on that answer) are the same answer `y0`.
#
# ## 3. Condorcet cycles: no winner, and no score can explain the game
#
# Rock-paper-scissors is the pure cycle: paper beats rock, scissors beat paper, rock beats scissors.
# Munos et al. (Sec. 3.2) build a subtler cycle from three *types* of voters, each with a strict
# preference on one pair and indifference elsewhere: the population as a whole prefers
# $y_1 \succ y_0$, $y_0 \succ y_2$ and $y_2 \succ y_1$ (by margins between 0.1 and 0.2).

# %%
P_rps = pt.rock_paper_scissors(0.8)
P_voters = pt.three_voter_types(EPSILON)
for name, G in [("rock-paper-scissors", P_rps), (f"three voter types, eps={EPSILON}", P_voters)]:
    print(
        f"{name}: transitive={pt.is_transitive(G)}, Condorcet winner={pt.condorcet_winner(G)}, "
        f"BT={pt.is_bradley_terry(G)}"
    )
    print("   Nash equilibrium:", pt.nash_equilibrium(G).numpy().round(4))
    print(
        "   BT fit scores (pairs uniform):",
        pt.bt_fit(G).numpy().round(4),
        f" BT fit gap {pt.bt_fit_gap(G):.4f}",
    )

# %% [markdown]
# Two lessons:
#
# - **With a cycle there is no Condorcet winner, and the Nash equilibrium mixes.** For
#   rock-paper-scissors it is uniform; for the three voter types it is
#   $(\tfrac13 + \tfrac\varepsilon2, \tfrac13 + \tfrac\varepsilon2, \tfrac13 - \varepsilon)$ (Munos
#   et al., Sec. 3.2), checked next.
# - **A BT fit still exists, and says something misleading.** Fitted on uniform pairs
#   (`pt.bt_fit(G)`, every pair compared equally often), rock-paper-scissors gives every answer the
#   same score, as if every comparison were a coin flip, while in fact every comparison is decided
#   90 / 10. The fit gap is that whole margin. (On a game that is not BT the fit also depends on
#   *which* pairs were compared: section 4 comes back to this.)

# %%
third = 1.0 / 3.0
paper = torch.tensor(
    [third + EPSILON / 2, third + EPSILON / 2, third - EPSILON], dtype=torch.float64
)
print(
    "three voter types, |Nash - paper's closed form| =",
    float((pt.nash_equilibrium(P_voters) - paper).abs().max()),
)
print(
    "rock-paper-scissors: exploitability of uniform play =",
    pt.exploitability(P_rps, torch.full((3,), third, dtype=torch.float64)),
)

# %% [markdown]
# ### How badly can a BT fit miss?
#
# Make the cycle sharper: rock-paper-scissors with strength $s$ has $P = \tfrac12 \pm \tfrac s2$
# off the diagonal. By symmetry the best BT fit gives every answer the same score, so it predicts
# $\tfrac12$ for every pair and misses each one by $s/2$: up to a full half of probability.

# %%
strengths = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
gaps = torch.tensor(
    [pt.bt_fit_gap(pt.rock_paper_scissors(float(s))) for s in strengths], dtype=torch.float64
)
kls = torch.tensor(
    [pt.bt_fit_kl(pt.rock_paper_scissors(float(s))) for s in strengths], dtype=torch.float64
)
print("max |gap - s/2| over the sweep:", float((gaps - strengths / 2).abs().max()))
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(strengths, gaps, "o-", label="BT fit gap  max|P - P_BT| (pairs uniform)")
ax.plot(strengths, kls, "s--", label="BT fit KL (nats, pairs uniform)")
ax.set_xlabel("cycle strength s of rock_paper_scissors(s)")
ax.legend()
ax.set_title("The best BT fit of a pure cycle predicts coin flips")
plt.show()

# %% [markdown]
# ## 4. A Condorcet winner that Bradley-Terry does not rank first
#
# Back to the game of section 1. `y0` beats each other answer, narrowly (0.55). But `y1` crushes
# `y2` (0.95), so on average `y1` wins more comparisons, and the BT fit, which must explain all
# three pairs with two score differences, puts `y1` on top. The Nash equilibrium does not average:
# it is the Condorcet winner.

# %%
mu = game.reference_policy()  # uniform here, so pairs from mu are uniform pairs
fit = pt.bt_fit(P, mu)
print("BT scores (pairs ~ mu):", fit.numpy().round(4), f"-> BT argmax: y{int(fit.argmax()):d}")
print(f"Condorcet winner: y{pt.condorcet_winner(P):d}")
print("Nash equilibrium:", pt.nash_equilibrium(P).numpy().round(4))
print(
    f"transitive: {pt.is_transitive(P)}, BT: {pt.is_bradley_terry(P)}, BT fit gap {pt.bt_fit_gap(P):.4f}"
)
print(
    "BT fit predicts P(y0 > y1) =",
    float(pt.bradley_terry(fit)[0, 1]),
    "but P(y0 > y1) =",
    float(P[0, 1]),
)

# %% [markdown]
# This game is even transitive ($y_0 \succ y_1 \succ y_2$ by majority), yet not BT: transitivity is
# not enough. The consequence for training is large. RLHF and DPO optimise the BT reward fitted on
# the pairs they are trained on, drawn from the reference policy $\mu$ (`pt.rlhf_optimum(P, mu,
# beta)` fits on pairs from `mu` by default, as offline DPO samples them), so as the KL strength
# $\beta$ shrinks they put all the mass on `y1`; a method that targets the Nash equilibrium
# (Nash-MD, online IPO; notebook 04) moves to `y0`.

# %%
for beta in [1.0, 0.1, 0.01]:
    print(
        f"beta = {beta:5}: RLHF/DPO optimum (BT fit, pairs ~ mu) {pt.rlhf_optimum(P, mu, beta).numpy().round(6)}"
    )

# %% [markdown]
# The library's reference figure shows every solution concept on the four named games: the RLHF/DPO
# optimum (blue) runs to the BT argmax while the regularised Nash (green) runs to the Nash
# equilibrium (red star) as the KL strength shrinks. Every optimum there is fitted on pairs from the
# game's own $\mu$ (the legend says so). Look at rock-paper-scissors: its $\mu = (0.6, 0.3, 0.1)$ is
# skewed, paper wins most comparisons against answers drawn from it, and the BT fit on those pairs
# ranks paper first, so the RLHF/DPO curve runs to the paper vertex, although with uniform pairs
# (section 3) every answer got the same score. On a game that is not BT the fitted reward depends on
# the pairs; the Nash equilibrium does not.

# %%
reference_solutions_figure()

# %% [markdown]
# The numbers behind the rock-paper-scissors panel, with the uniform-pairs fit as a contrast:

# %%
rps = named_game("rock_paper_scissors")
P_r, mu_r = rps.preference_matrix(), rps.reference_policy()
uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
print("mu =", mu_r.numpy(), "  win rates against mu, P @ mu =", (P_r @ mu_r).numpy().round(4))
print("BT fit scores, pairs uniform:", pt.bt_fit(P_r).numpy().round(4))
print("BT fit scores, pairs ~ mu   :", pt.bt_fit(P_r, mu_r).numpy().round(4))
for beta in [1.0, 0.1]:
    print(
        f"beta = {beta}: RLHF/DPO optimum (pairs ~ mu) {pt.rlhf_optimum(P_r, mu_r, beta).numpy().round(4)}, "
        f"(pairs uniform) {pt.rlhf_optimum(P_r, mu_r, beta, nu=uniform).numpy().round(4)}"
    )

# %% [markdown]
# ## 5. A census of random games
#
# How common are these situations? Draw random three-answer games (upper triangle uniform on
# $[0, 1]$) and count. The majority relation of such a game is a uniform random tournament, so a
# cycle has probability $2/8 = 1/4$; every transitive tournament has a Condorcet winner.

# %%
rows = []
for seed in range(N_RANDOM_GAMES):
    G = pt.random_game(3, seed)
    winner = pt.condorcet_winner(G)
    rows.append(
        {
            "cycle": not pt.is_transitive(G),
            "winner": winner,
            "bt_argmax": int(pt.bt_fit(G).argmax()),
            "gap": pt.bt_fit_gap(G),
        }
    )
census = pd.DataFrame(rows)
has_winner = census["winner"].notna()
print(
    f"{N_RANDOM_GAMES} games: cycles {census['cycle'].mean():.3f} (theory 0.25), "
    f"with a Condorcet winner {has_winner.mean():.3f}"
)
print(
    "BT argmax != Condorcet winner in",
    f"{(census.loc[has_winner, 'bt_argmax'] != census.loc[has_winner, 'winner']).mean():.3f} of games with a winner",
)
print(f"median BT fit gap {census['gap'].median():.3f}, max {census['gap'].max():.3f}")

# %% [markdown]
# ## 6. Try it: the preference editor
#
# Type the three free entries of $P$ (`p01` = $P(y_0 \succ y_1)$, and so on). The left panel shows
# the BT fit (on uniform pairs: the editor has no $\mu$) as a policy (softmax of the fitted
# scores), the Nash equilibrium and the Condorcet winner when there is one; the right panel
# compares each pair's probability with the BT fit's.
# An entry outside $[0, 1]$ is refused with a message and the last valid drawing stays.
#
# Things to try: make a cycle (`p01 = 0.3`, `p02 = 0.7`, `p12 = 0.3`); find entries where the
# Condorcet winner is not the BT argmax; make the game BT ($P = \sigma(r_i - r_j)$ for scores of
# your choice) and watch the gap drop to zero.

# %%
editor = widgets.preference_editor(P)
editor

# %% [markdown]
# ## Summary
#
# - A preference matrix is determined by its upper triangle; BT games are the special case
#   $P[i, j] = \sigma(r_i - r_j)$, where one score per answer explains every comparison.
# - Cycles (rock-paper-scissors, the three voter types) have no Condorcet winner; their Nash
#   equilibrium mixes, and a BT fit can miss every pair by a wide margin.
# - Even a transitive game can be far from BT, and then the BT argmax (what RLHF/DPO converge to as
#   $\beta \to 0$) can differ from the Condorcet winner (what the Nash equilibrium picks).
#
# ## Exercises
#
# 1. For `three_voter_types(eps)`, plot the BT argmax and the Nash equilibrium as `eps` runs from
#    -0.2 to 0.2. Where does the BT argmax jump? (Munos et al. Sec. 3.2 discuss this jump.)
# 2. Using the editor, find the smallest change to the game of section 1 that makes the BT argmax
#    agree with the Condorcet winner. Which entry did you move, and why that one?
# 3. Prove that if $P$ is BT with scores $r$, then $y^\star = \arg\max r$ is a Condorcet winner.
#    Is the converse true (does a Condorcet winner always have the top BT score)? Section 4 answers.
# 4. In the census, how does the fraction "BT argmax != Condorcet winner" change if you weight the
#    BT fit by a skewed `nu` (`pt.bt_fit(G, nu)`)?
