# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · The rest of the DPO family, exactly
#
# **What this notebook teaches.** KTO, SimPO, ORPO, R-DPO, DPOP, beta-DPO, RSO, sDPO and iterative
# DPO, each run exactly on a three-action bandit from the same start, and where each lands beside
# DPO's optimum. Then one picture per question users keep asking: KTO's reference point against
# TRL's minibatch estimate; SimPO's gamma against gamma / beta; length exploitation; why the
# chosen log-prob falls and what DPOP does about it; which way beta goes (sDPO's beta / T); which
# reference iterative DPO should keep; beta-DPO's batch beta; RSO's pairs.
#
# **Equations covered.** DPO's optimum $\mu e^{\hat r/\beta}/Z$; R-DPO's
# $\mu e^{(\hat r - \alpha L)/\beta}/Z$ (Park et al., arXiv:2403.19159v3); sDPO after $T$ stages
# $\mu e^{T\hat r/\beta}/Z$ (Kim et al., arXiv:2403.19270v2); SimPO's margin
# $\beta(\log\pi(y_w)/L_w - \log\pi(y_l)/L_l) - \gamma$ (Meng et al., arXiv:2405.14734v3);
# KTO's $z_0$ (Ethayarajh et al., arXiv:2402.01306v4).
#
# **Reading time:** about 30 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 150 if SMOKE else 1000  # steps of each exact run
LONG = 300 if SMOKE else 3000  # steps of the displacement runs
BETA = 1.0
LENGTHS = (1.0, 2.0, 3.0)  # one length per action (SimPO, R-DPO)

# %%
# %matplotlib inline
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.plots import family as fam
from prefopt_toy.plots.notebook import table_view

pd.set_option("display.float_format", "{:.3f}".format)  # one format per table
P = pt.bradley_terry([1.0, 0.5, 0.0])  # a Bradley-Terry game: y0 > y1 > y2
mu = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)

# %% [markdown]
# ## 1. Every method beside DPO
#
# `fam.family_runs` calls `pt.ALGORITHMS[name](P, mu, ...)` for DPO and every name of
# `pt.FAMILY`, with `beta = BETA` (ORPO has no KL strength: it runs at `lam = BETA`, which is what
# TRL's `ORPOConfig.beta` means), lengths `LENGTHS` for SimPO and R-DPO (R-DPO with `alpha = 0.2`).
# Hollow markers are the fixed points the theory gives in closed form (`pt.FIXED_POINTS`).

# %%
runs = fam.family_runs(P, mu, beta=BETA, steps=STEPS, lengths=LENGTHS, alpha=0.2)
fam.family_figure(runs, title=f"the DPO family on a BT game, beta = {BETA}, {STEPS} steps")

# %%
table_view(fam.family_table(runs), "{:.3f}")

# %% [markdown]
# Read it by row. **DPO, RSO and iterative DPO** end on DPO's optimum: with Bradley-Terry labels
# the optimum does not depend on where pairs come from. **R-DPO** lands on its own closed form
# (the length penalty moves mass to short actions), **sDPO** on DPO's optimum at $\beta/2$.
# **SimPO and ORPO** have no reference in their loss: only beta (and ORPO's SFT term) keeps them
# off a vertex. **DPOP** stays near $\mu$ here: every action is chosen in some pair, and the
# penalty forbids any chosen action to fall below $\mu$.
#
# **KTO against DPO (TRL #1387, #1927; axolotl #1200).** KTO learns from single examples labelled
# desirable or not, not from pairs, so its fixed point is not DPO's: actions labelled undesirable
# more often than desirable (weighted) go to 0. The weights decide which ones, and as beta goes to
# 0 KTO tends to $\pi \propto D(y)(\lambda_D d(y) - \lambda_U(1-d(y)))_+$. **ORPO's lambda (TRL
# #1676, #1539)**: as lam goes to 0 ORPO becomes SFT on how often each action is chosen,
# $\pi \propto \nu(y)(P\nu)_y$. The picture below runs both at several weights.

# %%
d = P @ mu  # KTO's default labels: the win rate against a data sample
variants = {
    "kto lambda_D = 1": pt.ALGORITHMS["kto"](P, mu, steps=STEPS, beta=0.1),
    "kto lambda_D = 3": pt.ALGORITHMS["kto"](P, mu, steps=STEPS, beta=0.1, desirable_weight=3.0),
    "orpo lam = 0.01": pt.ALGORITHMS["orpo"](P, mu, steps=STEPS, lam=0.01),
    "orpo lam = 2": pt.ALGORITHMS["orpo"](P, mu, steps=STEPS, lam=2.0),
}
marks = {
    "DPO optimum (beta 0.1)": pt.rlhf_optimum(P, mu, 0.1),
    "KTO beta -> 0 (lambda_D = 3)": (mu * (3 * d - (1 - d))).clamp_min(0)
    / (mu * (3 * d - (1 - d))).clamp_min(0).sum(),
    "ORPO lam -> 0: SFT on chosen": mu * d / (mu * d).sum(),
}
fam.paths_figure(variants, marks, title="KTO's weights and ORPO's lam")

# %% [markdown]
# With the default weights ($\lambda_D = \lambda_U = 1$) every action but the best one is labelled
# undesirable more often than desirable, so KTO empties y1 and y2; tripling $\lambda_D$ keeps both,
# near the beta -> 0 limit (the run uses beta = 0.1).
# ORPO's NLL keeps every chosen action away from 0. (What ORPO's NLL covers in a real model, the
# prompt as well as the completion, TRL PR #2527, has no counterpart on a bandit: there is no prompt.)
#
# ## 2. KTO's reference point: the paper's KL against TRL's estimate
#
# The paper's $z_0$ is $\mathrm{KL}(\pi\|\mu)$. TRL estimates it on minibatches of *data*
# completions $y'\sim D$ (here $D = \mu$, the SFT model's samples), averages $\log\pi/\mu$ over the
# b completions of a minibatch and clamps at 0 (TRL #1911, #2554, #1447; HALOs #4, #35). Its
# expectation before the clamp is $-\mathrm{KL}(\mu\|\pi) \le 0$, not $\mathrm{KL}(\pi\|\mu)$:
# the clamp is what keeps it from being negative, and larger batches push it to 0.
# `pt.dynamics.kto_reference_point_distribution` gives its exact distribution (black stems);
# the orange dots are the frequencies in 4000 sampled minibatches.

# %%
pi_mid = runs["kto"].policies[STEPS // 20]  # a policy partway through KTO's training
fam.kto_reference_figure(pi_mid, mu, batch_sizes=(1, 2, 4, 16), samples=4000, seed=0)

# %% [markdown]
# Grey: the mass the clamp moves to 0. With b = 1 (TRL needs more than one example per device to
# mismatch completions at all, #2554) the estimate is often large; as b grows it is 0 almost
# always, far below the paper's KL (dashed). Does it matter? On this game KTO empties y1 and y2
# whatever $z_0$ is, so we label examples with rates `DESIRABLE` instead (y0 and y1 desirable more
# often than not) and compare KTO's end point under each reference point:

# %%
DESIRABLE = [0.9, 0.6, 0.2]
choices = {
    "kl (paper)": {"reference_point": "kl"},
    "batch, b = 2 (TRL)": {"reference_point": "batch", "batch_size": 2},
    "data (infinite batch, TRL)": {"reference_point": "data"},
    "data, no clamp": {"reference_point": "data_unclamped"},
}
z_runs = {
    n: pt.ALGORITHMS["kto"](P, mu, steps=STEPS, beta=BETA, desirable=DESIRABLE, **kw)
    for n, kw in choices.items()
}
pd.DataFrame(
    {n: [*r.final.tolist(), float(r.hyper["reference_points"][-1])] for n, r in z_runs.items()},
    index=["pi(y0)", "pi(y1)", "pi(y2)", "final z0"],
).T

# %% [markdown]
# The reference point shifts every action's sigmoid by the same $z_0$, and it moves KTO's end
# point: y2 (desirable 20% of the time) goes to 0 under every choice, but the share y1 keeps
# depends on $z_0$. In full mode the paper's $z_0$ (the largest) keeps the least on y1, TRL's
# clamped estimates (b = 2, infinite batch) more, and the unclamped estimate (negative) the most.
#
# %% [markdown]
# ## 3. SimPO's gamma against gamma / beta
#
# TRL's `simpo_gamma` is an absolute margin (the paper's $\gamma$); the official code and HALOs
# take $\gamma/\beta$ (TRL PR #1725, PR #5071; SimPO #50; LLaMA-Factory #4414). SimPO's loss sees
# $\beta\Delta - \gamma$, so with $\gamma$ absolute the fitted reward margin $\beta\Delta$ is the
# same for every beta (left); with $\gamma/\beta$ fixed it grows with beta (right). TRL's defaults
# (beta 0.1, gamma 0.5) are a ratio of 5, ten times the official starting ratio of 0.5.

# %%
fig, margins = fam.simpo_gamma_figure(
    pt.bradley_terry([0.5, 0.0, -0.3]), mu, betas=(0.1, 2.0), steps=STEPS
)
fig

# %% [markdown]
# At $\gamma = 0$ every curve starts at $\mathrm{logit}\,P$, DPO's margin; any $\gamma > 0$
# inflates it.
#
# ## 4. Length exploitation
#
# A bandit with summed log-probs has no length bias of its own: it needs labels that like length
# (eric-mitchell DPO #35; TRL #2003; LLaMA-Factory #5321; SimPO #20). Here the labels are
# Bradley-Terry in $q(y) + \kappa L(y)$: quality prefers y0, the judge also likes longer answers.
# DPO learns the length bias. R-DPO with $\alpha = \kappa$ removes it exactly: it lands on
# $\mu e^{q/\beta}/Z$, what a length-blind judge would give. SimPO's length *normalisation* is not
# a penalty: it divides each log-prob by L, which rescales rather than removes the bias.

# %%
q, kappa, L = torch.tensor([1.0, 0.5, 0.0]), 1.0, torch.tensor(LENGTHS)
P_len = pt.bradley_terry(q + kappa * L)
length_runs = {
    "dpo": pt.ALGORITHMS["dpo"](P_len, mu, steps=STEPS, beta=BETA),
    "rdpo": pt.ALGORITHMS["rdpo"](P_len, mu, steps=STEPS, beta=BETA, alpha=kappa, lengths=L),
    "simpo": pt.ALGORITHMS["simpo"](P_len, mu, steps=STEPS, beta=2.0, lengths=L),
}
fig, expected_length = fam.length_figure(
    length_runs, L, pt.rlhf_optimum(pt.bradley_terry(q), mu, BETA)
)
print({k: round(v, 2) for k, v in expected_length.items()}, "mu:", float(mu @ L.double()))
fig

# %% [markdown]
# ## 5. Why does the chosen log-prob fall? Likelihood displacement and DPOP
#
# A total order with deterministic labels over three actions, every pair compared: y1 is chosen
# once (against y2) and rejected once (against y0). DPO empties it, and the mean chosen log-prob
# rises for a moment and then falls without bound (eric-mitchell DPO #8, #32, #36; TRL #800;
# OpenRLHF #1054; LLaMA-Factory #6153, #7643; SimPO #42). DPOP (Pal et al., arXiv:2402.13228v3)
# adds $\lambda\max(0, \log\mu(y_w) - \log\pi(y_w))$; where it goes matters (abacusai/smaug #2;
# LLaMA-Factory #2587). **Outside** the sigmoid it pins y1 near $\mu$ for good. **Inside** (the
# corrected paper) the penalty saturates with the sigmoid, so the loss can still fall to 0 along
# a path where y2 falls much faster than y1: what a finite run shows depends on its length.

# %%
P_order = torch.tensor([[0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
displacement = {
    "dpo": pt.ALGORITHMS["dpo"](P_order, mu, steps=LONG, beta=BETA),
    "dpop outside": pt.ALGORITHMS["dpop"](P_order, mu, steps=LONG, beta=BETA, placement="outside"),
    "dpop inside": pt.ALGORITHMS["dpop"](P_order, mu, steps=LONG, beta=BETA, placement="inside"),
}
fam.displacement_figure(displacement, middle=1)

# %%
pd.DataFrame({n: r.final.tolist() for n, r in displacement.items()}, index=["y0", "y1", "y2"]).T

# %% [markdown]
# Inside the sigmoid y1 hovers at $\mu(y_1) = 0.3$ for thousands of steps while y2 falls slowly
# towards 0 (and the loss with it); push `LONG` up and watch how long y1 holds.
#
# ## 6. Which way beta goes: sDPO's beta / T
#
# A smaller beta means a weaker KL: further from $\mu$, closer to the reward's argmax (smol-course
# PR #307; rasbt PR #818; eric-mitchell DPO #4). sDPO runs DPO in stages, each with the last
# stage's result as reference; after $T$ stages it lands on DPO's optimum at $\beta/T$: the
# effective KL strength shrinks with every stage.

# %%
sdpo_runs = {
    f"sdpo T = {T}": pt.ALGORITHMS["sdpo"](P, mu, stages=T, steps=T * STEPS, beta=BETA)
    for T in (1, 2, 4)
}
sdpo_marks = {f"DPO optimum at beta / {T}": pt.rlhf_optimum(P, mu, BETA / T) for T in (1, 2, 4)}
fam.paths_figure(sdpo_runs, sdpo_marks, title=f"sDPO: T stages at beta = {BETA}", stage_ends=True)

# %% [markdown]
# ## 7. Iterative DPO: which reference to keep
#
# Each round samples its pairs from the current policy. Keeping the reference at $\mu$ (RLHFlow's
# choice, RLHFlow #5) converges to online DPO's stationary point; updating it to the round's
# start (self-rewarding, TRL #1824) drifts towards a vertex, since every round is one more stage of
# sDPO. On a game that is not Bradley-Terry (three voter types), the two differ:

# %%
P_vt = pt.three_voter_types(0.1)
iter_runs = {
    f"reference = {ref}": pt.ALGORITHMS["iterative_dpo"](
        P_vt, mu, rounds=10, steps=2 * STEPS, beta=BETA, reference=ref
    )
    for ref in ("initial", "previous")
}
online = pt.ALGORITHMS["online_dpo"](P_vt, mu, steps=2 * STEPS, beta=BETA).final
fam.paths_figure(
    iter_runs,
    {
        "online DPO stationary point": online,
        "DPO optimum (pairs ~ mu)": pt.rlhf_optimum(P_vt, mu, BETA),
    },
    title="iterative DPO, 10 rounds",
    stage_ends=True,
)

# %% [markdown]
# ## 8. beta-DPO's batch beta over training
#
# beta-DPO (Wu et al., arXiv:2407.08639v2) sets each batch's beta from running statistics of the
# margin. Exactly (the infinite batch) the batch beta moves smoothly to its fixed point with the
# running mean; on sampled minibatches of 16 (the official algorithm) it jitters around it.

# %%
bdpo = {
    "exact (infinite batch)": pt.ALGORITHMS["beta_dpo"](P, mu, steps=STEPS, beta=BETA),
    "minibatches of 16": pt.ALGORITHMS["beta_dpo"](
        P, mu, steps=STEPS, beta=BETA, batch_size=16, seed=0
    ),
}
fam.beta_dpo_figure(bdpo)

# %% [markdown]
# ## 9. RSO: DPO unchanged, IPO moved
#
# RSO (Liu et al., arXiv:2309.06657v2) draws its pairs from the optimal policy of a fitted reward
# instead of from $\mu$. With Bradley-Terry labels DPO's optimum does not depend on the pairs, so
# RSO-DPO ends where DPO does (by another path); IPO's optimum $\mu e^{P\nu/\tau}/Z$ moves with
# the pairs $\nu$. RSO's pairs concentrate on the fitted reward's favourite, so rare pairs are
# learnt slowly: plain gradient descent needs many thousands of steps here, and the runs use
# Adam (`optimizer="adam"`) to reach their ends in `STEPS`.

# %%
P_rso, BETA_RSO = pt.bradley_terry([0.0, 2.0, -2.0]), 0.5
adam = {"steps": STEPS, "optimizer": "adam", "lr": 0.05}
rso_runs = {
    "dpo": pt.ALGORITHMS["dpo"](P_rso, mu, beta=BETA_RSO, **adam),
    "rso": pt.ALGORITHMS["rso"](P_rso, mu, beta=BETA_RSO, **adam),
    "ipo": pt.ALGORITHMS["ipo"](P_rso, mu, tau=BETA_RSO, **adam),
    "rso (ipo loss)": pt.ALGORITHMS["rso"](P_rso, mu, beta=BETA_RSO, loss="ipo", **adam),
}
rso_marks = {
    "DPO optimum": pt.rlhf_optimum(P_rso, mu, BETA_RSO),
    "IPO optimum, pairs ~ mu": pt.ipo_optimum(P_rso, mu, BETA_RSO),
    "IPO optimum, RSO's pairs": rso_runs["rso (ipo loss)"].target("ipo_optimum"),
}
fam.paths_figure(rso_runs, rso_marks, title="RSO's pairs: DPO's end stays, IPO's moves")

# %%
ends = {n: r.final for n, r in rso_runs.items()}
pd.DataFrame(
    {
        "TV(rso, dpo)": [0.5 * float((ends["rso"] - ends["dpo"]).abs().sum())],
        "TV(rso ipo, ipo)": [0.5 * float((ends["rso (ipo loss)"] - ends["ipo"]).abs().sum())],
    }
)

# %% [markdown]
# ## 10. Explore
#
# Pick a method, move beta (ORPO: lam), SimPO's gamma, R-DPO's alpha, or type three lengths.
# Each move reruns the method exactly (`STEPS`-sized runs; beta-DPO takes a few seconds).

# %%
widgets.family_explorer(P, mu, method="simpo", beta=1.0, steps=min(STEPS, 300))

# %% [markdown]
# ## Not on this bandit
#
# Two questions need more than a one-prompt bandit: TDPO's two variants (Vance0124 #7, #8) need a
# token tree, and unlearning's forget quality (open-unlearning #111) needs AltPO or NPO, which
# the engine does not have yet.
#
# ## Summary
#
# - DPO, RSO and iterative DPO (initial reference) agree on a Bradley-Terry game; R-DPO and sDPO
#   land on their closed forms; KTO, SimPO, ORPO, DPOP and beta-DPO each have a fixed point of
#   their own.
# - TRL's KTO reference point is a clamped minibatch estimate of
#   $\mathrm{KL}(D\|\mu) - \mathrm{KL}(D\|\pi)$ ($= -\mathrm{KL}(\mu\|\pi) \le 0$ for data from $\mu$), not
#   $\mathrm{KL}(\pi\|\mu)$, and mostly 0 for large batches.
# - SimPO's gamma is absolute in TRL and relative ($\gamma/\beta$) in the official code.
# - Length bias comes from the labels; R-DPO with $\alpha = \kappa$ removes it.
# - DPO empties an action that is both chosen and rejected; DPOP outside the sigmoid stops it.
#
# ## Exercises
#
# 1. Rerun section 2 with `data=` a policy other than `mu` (`kto_reference_point_distribution`
#    takes it). When is the unclamped mean positive? Compare with $\mathrm{KL}(D\|\mu) - \mathrm{KL}(D\|\pi)$.
# 2. In section 4, find the SimPO beta for which the expected length equals $\mu$'s. Is that a fix?
# 3. Set `LONG = 20000` and rerun section 5. When does DPOP inside the sigmoid let y1 fall?
# 4. Run `pt.ALGORITHMS["sdpo"]` with `nu=[easy, hard]`, two different pair distributions. Which
#    target does it reach now, and why is `traj.target("sdpo_optimum")` refused?
