# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · PsiPO and IPO: why DPO overfits deterministic preferences, and what TRL's averaging does to tau
#
# **What this notebook teaches.** Azar et al. (arXiv:2310.12036v2) write RLHF and DPO as one member
# of a family, PsiPO, and pick another member, IPO, whose optimum stays regularised even when
# preferences are deterministic. We reproduce the paper's toy bandits exactly and with its sampled
# protocol. Then we look at a convention that changes IPO in practice: TRL's `DPOTrainer` averages
# token log-probs for `loss_type="ipo"`, which silently rescales tau (equal lengths) or changes the
# objective altogether (unequal lengths).
#
# **Equations covered.**
#
# - PsiPO: $\max_\pi\ \mathbb E_{y\sim\pi,\,y'\sim\nu}[\Psi(P[y,y'])] - \tau\,KL(\pi\|\mu)$, optimum
#   $\pi^*(y) \propto \mu(y)\exp\big(\mathbb E_{y'\sim\nu}\Psi(P[y,y'])/\tau\big)$.
# - IPO ($\Psi$ = identity): $\pi^*(y) \propto \mu(y)\exp\big((P\nu)_y/\tau\big)$, and the loss
#   $\big(h_\pi(y_w, y_l) - \tfrac{1}{2\tau}\big)^2$.
# - DPO ($\Psi = \operatorname{logit}$): $\Psi(1) = \infty$, so a deterministic preference has no finite optimum.
# - TRL's averaged IPO: $\big(\tfrac{r_w}{L_w} - \tfrac{r_l}{L_l} - \tfrac{1}{2\tau}\big)^2$; with equal
#   lengths, the summed loss at $\tau_{\rm eff} = \tau/L$.
#
# **Reading time:** about 20 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
QUICK = SMOKE  # the ipo_toy experiment's quick mode: fewer steps and seeds
SAMPLED_STEPS = 300 if SMOKE else 18_000  # the paper's protocol: Adam, batch 9, 18k steps
SAMPLED_SEEDS = 3 if SMOKE else 10

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy.analysis import conventions
from prefopt_toy.plots.experiments import experiment
from prefopt_toy.plots.ipo_toy import ipo_toy_figure

pd.set_option("display.precision", 4)
config = experiment("ipo_toy")  # the settings of the paper's toys, by name

# %% [markdown]
# ## 1. Two actions, one always wins
#
# $P[y_1, y_2] = 1$, uniform $\mu = \nu$. The win rates against $\nu$ are $3/4$ and $1/4$, so
# IPO's optimum is $\pi(y_1) = \sigma(0.5/\tau)$: close to 1 for small tau, close to $\mu$ for
# large tau. DPO's BT reward difference is infinite: for *every* tau it drives $\pi(y_1) \to 1$.

# %%
P2 = torch.tensor(config.two_action_P, dtype=torch.float64)
mu2 = torch.tensor([0.5, 0.5], dtype=torch.float64)
for tau in (0.1, 0.5, 1.0, 10.0):
    closed = float(pt.ipo_optimum(P2, mu2, tau)[0])
    sigmoid = float(torch.sigmoid(torch.tensor(0.5 / tau)))
    print(f"tau = {tau:<5} IPO pi(y1) = {closed:.6f}   sigma(0.5/tau) = {sigmoid:.6f}")

# %% [markdown]
# The exact dynamics agree. After the same number of steps, IPO has settled on $\sigma(0.5/\tau)$
# while DPO is still climbing towards 1 (it never stops: the gradient only vanishes at infinity).

# %%
taus = [0.1, 1.0, 10.0]
steps = 200 if SMOKE else 6000
ipo_run = pt.ALGORITHMS["ipo"](P2, mu2, steps=steps, tau=taus)
dpo_run = pt.ALGORITHMS["dpo"](P2, mu2, steps=steps, tau=taus)
pd.DataFrame(
    {
        "tau": taus,
        "IPO pi(y1)": ipo_run.final[:, 0],
        "IPO optimum": [float(pt.ipo_optimum(P2, mu2, t)[0]) for t in taus],
        "DPO pi(y1)": dpo_run.final[:, 0],
    }
)

# %% [markdown]
# ## 2. The paper's data set D1 and its sampled protocol
#
# D1 = {(a, b), (b, c), (a, c)}: a total order, each pair seen once. IPO's exact minimiser is
# $\pi \propto (e^{2/(3\tau)}, e^{1/(3\tau)}, 1)$; DPO's infimum is the vertex $(1, 0, 0)$.
# `ipo_toy_figure` draws both, with exact full-data runs (open circles) and the paper's sampled
# protocol (Adam, minibatches of 9, mean and 95% interval over seeds).

# %%
fig = ipo_toy_figure(config, quick=QUICK)
fig

# %% [markdown]
# The same protocol by hand, at tau = 0.1, with `dataset_run` and `seed_summary`. The IPO mean
# should sit within seed noise of the closed form (to ~0.003 with the full 18k steps and 10 seeds;
# the smoke run is shorter), and DPO's $\pi(a)$ should approach 1.

# %%
D1 = list(config.dataset)
mu3 = torch.full((3,), 1 / 3, dtype=torch.float64)
summaries = {}
for loss in ("ipo", "dpo"):
    run = pt.dataset_run(
        mu3,
        D1,
        loss=loss,
        tau=0.1,
        steps=SAMPLED_STEPS,
        seeds=SAMPLED_SEEDS,
        batch_size=config.sampled_batch_size,
        lr=config.sampled_lr,
    )
    summaries[loss] = pt.seed_summary(run, confidence=0.95)  # one tau: row 0
closed = pt.ipo_optimum(pt.from_comparisons(D1, 3, prior=0.0), mu3, 0.1)
print("IPO closed form        ", closed.numpy().round(4))
print(
    "IPO sampled mean       ",
    summaries["ipo"].mean[0].numpy().round(4),
    "+-",
    summaries["ipo"].half_width[0].numpy().round(4),
)
print("DPO sampled mean       ", summaries["dpo"].mean[0].numpy().round(4))
print("max |IPO mean - closed|", f"{float((summaries['ipo'].mean[0] - closed).abs().max()):.4f}")

# %% [markdown]
# ## 3. Sum versus mean over tokens: what TRL's averaging does to tau
#
# For a language model, "action" $y$ is a completion of $L(y)$ tokens and
# $r(y) = \log\pi(y)/\mu(y)$ is a **sum** over its tokens. The theory above uses sums. TRL's
# `DPOTrainer` with `loss_type="ipo"` divides each $r$ by its length (huggingface/trl PR #1265).
#
# **Equal lengths.** $\big(\tfrac{h}{L} - \tfrac{1}{2\tau}\big)^2 = \tfrac{1}{L^2}\big(h - \tfrac{L}{2\tau}\big)^2$:
# the summed loss with $\tau_{\rm eff} = \tau/L$. With 100-token answers, TRL's `beta=0.1`
# regularises like $\tau = 0.001$ in the paper.

# %%
print("tau_eff for beta = 0.1 and 100 tokens:", conventions.effective_tau(0.1, 100))
h = torch.linspace(-5, 30, 8, dtype=torch.float64)
L = 20
averaged = conventions.averaged_ipo_loss(h, torch.zeros_like(h), L, L, tau=0.1)
rescaled = pt.ipo_loss(h, tau=conventions.effective_tau(0.1, L)) / L**2
print("max |averaged - summed(tau/L) / L^2| =", f"{float((averaged - rescaled).abs().max()):.1e}")

# %% [markdown]
# On a bandit whose three answers all have $L$ tokens, the exact minimiser of the averaged
# population loss (`averaged_ipo_optimum`, Newton on the enumerated loss) is the IPO optimum at
# $\tau/L$:

# %%
P, mu = pt.three_voter_types(0.1), torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
tau = 1.0
for L in (1, 5, 20):
    avg = conventions.averaged_ipo_optimum(P, mu, tau, [L, L, L])
    gap = float((avg - pt.ipo_optimum(P, mu, tau / L)).abs().max())
    print(
        f"L = {L:>2}: averaged optimum {avg.numpy().round(4)}, max gap to ipo_optimum(tau / L) = {gap:.1e}"
    )

# %% [markdown]
# **Unequal lengths.** Now no single tau works. The averaged log-ratios $r(y)/L(y)$ solve IPO's
# least squares, so $\log(\pi/\mu)(y) = L(y)\big((P\nu)_y/\tau + c\big)$: each answer gets its own
# temperature $\tau/L(y)$ plus a length term. `best_effective_tau` searches for the summed tau
# whose optimum comes closest; with unequal lengths a gap remains.

# %%
rows = []
for lengths in ([10, 10, 10], [5, 10, 20], [20, 10, 5], [3, 10, 30]):
    avg = conventions.averaged_ipo_optimum(P, mu, tau, lengths)
    t_best, tv = conventions.best_effective_tau(P, mu, tau, lengths)
    rows.append(
        {
            "lengths": lengths,
            "averaged optimum": avg.numpy().round(4),
            "best summed tau": t_best,
            "TV gap at best tau": tv,
        }
    )
pd.DataFrame(rows)

# %% [markdown]
# With equal lengths the best summed tau is exactly $\tau/L = 0.1$ and the gap is round-off; with
# unequal lengths the gap is a real difference between the two objectives, and which answer gains
# depends on the lengths, not only on the preferences.

# %% [markdown]
# ## Summary
#
# - PsiPO with $\Psi$ = logit is RLHF/DPO: deterministic preferences push it to a vertex whatever
#   tau is. IPO ($\Psi$ = identity) keeps $\pi^* \propto \mu\,e^{P\nu/\tau}$, finite and regularised.
# - The sampled protocol of the paper reproduces the exact minimiser within seed noise.
# - TRL averages token log-probs for IPO: with equal lengths this is $\tau_{\rm eff} = \tau/L$; with
#   unequal lengths it is a different objective. To match the theory, sum the log-probs.
#
# ## Exercises
#
# 1. For the two-action game, find tau such that IPO's optimum gives $\pi(y_1) = 0.9$. Check it with `pt.ipo_optimum`.
# 2. Run `pt.dataset_run` on D1 with `loss="slic"`. Where does it end, and why is the answer not unique?
# 3. Which answer gains probability when its completion gets longer under TRL's averaging? Vary
#    one length in section 3 and explain the sign using the formula for $\log(\pi/\mu)$.
