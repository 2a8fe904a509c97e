# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · The algorithm zoo: every registered algorithm on one game, and one notation for all papers
#
# **What this notebook teaches.** `pt.ALGORITHMS` holds every exact learning dynamic of the suite:
# DPO, IPO, SLiC, the six GPO surrogates, online DPO and online IPO, IPO-MD, Nash-MD, Nash-MD-PG and
# two-stage RLHF. We run them all from the same start on the same game, see where each ends, and
# compare each end point with the fixed point its paper predicts (`pt.FIXED_POINTS`). Then a table
# translates this library's knob names into each paper's symbols and TRL's argument names.
#
# **Equations covered.** Fixed points: DPO/RLHF $\mu e^{\hat r/\beta}/Z$; IPO $\mu e^{P\nu/\tau}/Z$;
# online IPO and Nash-MD the regularised Nash $\mu e^{P\pi/\tau}/Z$; IPO-MD and Nash-MD-PG
# $\mu e^{P\pi_m/\tau}/Z$ with $\pi_m = \pi^{1-m}\mu^m/Z$. GPO: loss $f(\beta h)$ with $f$ convex.
#
# **Reading time:** about 15 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 500 if SMOKE else 3000
TAU = 0.1
GAME = "three_voter_types"  # any name of prefopt_toy.games.named.NAMED_GAMES

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd

import prefopt_toy as pt
from prefopt_toy.analysis import conventions
from prefopt_toy.games.named import named_game
from prefopt_toy.plots import notebook as notebook_plots

pd.set_option("display.float_format", "{:.2e}".format)  # one format per table
pd.set_option("display.max_colwidth", 60)
game = named_game(GAME)
P, mu = game.preference_matrix(), game.reference_policy()
print(game.title, "-", game.description)

# %% [markdown]
# ## 1. Run every algorithm
#
# `zoo_runs` calls `pt.ALGORITHMS[name](P, mu, steps=..., tau=...)` for each registered name, with
# each algorithm's defaults (and `lr = 1` for the two hinge losses, whose default step bounces).
# DPO-family entries read `tau` as their `beta`.

# %%
print(len(pt.ALGORITHMS), "registered algorithms:", ", ".join(pt.ALGORITHMS))
runs = notebook_plots.zoo_runs(P, mu, tau=TAU, steps=STEPS)

# %% [markdown]
# ## 2. Small multiples
#
# One triangle per algorithm: its path from `mu` (grey cross), its end (dot, drawn on top) and,
# where the theory gives one, its fixed point (coloured marker), with the total-variation (TV)
# distance in the title. DPO's and RLHF's fixed point is the RLHF/DPO optimum of the BT reward
# fitted on their own pairs, drawn from `mu` (the legend says "pairs ~ mu").

# %%
fig = notebook_plots.zoo_figure(
    runs,
    labels=game.actions,
    title=f"{game.title}: every algorithm, {STEPS} exact steps, tau = {TAU}",
)
fig

# %% [markdown]
# ## 3. Where each one ends
#
# Read the table by column:
#
# - **TV to fixed point** is round-off (~1e-15) for the algorithms whose fixed point has a closed
#   form or a certified solver. Nash-MD's decaying step converges at rate $O(1/T)$, so it is small
#   but larger.
# - **none registered**: online DPO (its stationary point is self-consistent RLHF, notebook
#   05) and the smooth GPO losses (each pair has its own target margin $f$-dependent, and the
#   triangle of targets is inconsistent, so the optimum solves a small convex problem; `gpo_logistic` is DPO, see below).
# - **none (a set)**: the hinge losses (SLiC, `gpo_hinge`) stop moving once every margin passes
#   $1/\beta$; any such policy is optimal. **last step moved** tells you whether a run has settled.
#
# Notice the identities: `gpo_logistic` *is* DPO and `gpo_hinge` *is* SLiC (same end points), and
# `gpo_squared` is IPO at a different strength ($\beta_{\rm GPO} = 2\tau$), so it lands on IPO's
# optimum at `tau / 2`, not at `tau`.

# %%
table = notebook_plots.zoo_table(runs)
notebook_plots.table_view(table, "{:.2e}")  # "—": no fixed point registered


# %%
def tv(a, b):
    return 0.5 * float((runs[a].final - runs[b].final).abs().sum())


print("TV(gpo_logistic, dpo) =", f"{tv('gpo_logistic', 'dpo'):.1e}")
print("TV(gpo_hinge, slic)   =", f"{tv('gpo_hinge', 'slic'):.1e}")
print("TV(gpo_squared, ipo)  =", f"{tv('gpo_squared', 'ipo'):.3f}")
# (beta h - 1)^2 = beta^2 (h - 1/beta)^2: the IPO target 1/(2 tau') with tau' = beta / 2.
half = 0.5 * float((runs["gpo_squared"].final - pt.ipo_optimum(P, mu, TAU / 2)).abs().sum())
print("TV(gpo_squared, ipo_optimum(tau / 2)) =", f"{half:.1e}")

# %% [markdown]
# ## 4. One notation, many papers
#
# The papers use different letters for the same thing, and sometimes the same letter for different
# things: DPO's $\beta$ is a KL strength, Nash-MD's and IPO-MD's $\beta$ is the mixture weight; IPO's
# $\mu$ is the pair distribution, Nash-MD's $\mu$ is the reference policy. TRL calls every KL
# strength `beta`. The table below is `prefopt_toy.analysis.conventions.KNOBS`; the README's Notation table
# shows the same rows and a test keeps the two identical.

# %%
conventions.convention_table(
    columns=["meaning", "dpo", "ipo", "nash_md", "ipo_md", "gpo", "slic", "trl"]
)

# %% [markdown]
# Notes on the cells that are easy to misread:

# %%
for knob in conventions.KNOBS:
    if knob.note:
        print(f"{knob.code.strip('`'):>16}: {knob.note.replace('`', '')}")

# %% [markdown]
# One convention changes results, not just names: TRL's `DPOTrainer` averages token log-probs for
# `loss_type="ipo"`, so its `beta` acts like $\tau/L$ for completions of $L$ tokens:

# %%
for length in (1, 10, 100):
    print(
        f"TRL beta = 0.1 on {length:>3}-token answers behaves like the paper's tau = {conventions.effective_tau(0.1, length):g}"
    )

# %% [markdown]
# ## Summary
#
# - Every registered algorithm, run exactly, ends on the point its theory predicts, or settles in
#   the set of minimisers (hinge), or on a self-consistent point (online DPO, GPO).
# - GPO contains DPO (logistic) and SLiC (hinge) exactly, and IPO (squared) up to $\beta = 2\tau$.
# - Map names through the convention table before comparing a paper's hyperparameters with TRL's.
#
# ## Exercises
#
# 1. Set `GAME = "transitive"`. Which end points now coincide, and why (BT holds exactly)?
# 2. Run `pt.ALGORITHMS["gpo_squared"](P, mu, steps=STEPS, beta=2 * TAU)`. Which IPO optimum
#    does it land on? Check with `pt.ipo_optimum` and explain with the identity
#    $(\beta h - 1)^2 = \beta^2 (h - 1/\beta)^2$.
# 3. Which algorithms' end points depend on `mu` only through the KL anchor, and which also through
#    the pairs they are trained on?
