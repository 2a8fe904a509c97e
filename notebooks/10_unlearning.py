# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · Unlearning, exactly: gradient ascent, NPO, DPO to "I don't know", AltPO
#
# **What this notebook teaches.** To *unlearn* a fact is to lower the probability of a true
# answer the model was fine-tuned on, without damaging the answers it should keep. On a tabular
# task (a few questions over one set of answers) every method runs exactly, so we can see where
# the forgotten mass goes: onto plausible alternates, onto a refusal ("I don't know"), or onto
# gibberish. We run the four methods side by side, verify each one's exact mechanism numerically
# (gradient ascent's squeeze, NPO as slowed gradient ascent, AltPO's preserved proportions, DPO
# to a refusal moving two logits), then couple the questions through a shared bias and measure
# what forgetting costs the retained questions.
#
# **Equations covered.** The objective
# $\mathcal{L}(\pi) = \mathrm{mean}_{c\ \mathrm{forget}}\,\ell_c(\pi)
# + \lambda\,\mathrm{mean}_{c\ \mathrm{retain}}(-\log\pi(y_c\mid c))$, with
# $r(y) = \log\pi(y\mid c) - \log\mu(y\mid c)$ and $y_f$ the answer to forget:
# gradient ascent $\ell_c = \log\pi(y_f)$ (Maini et al., arXiv:2401.06121v1, Sec. 5; with the
# retain term: GradDiff); NPO $\ell_c = -\tfrac{2}{\beta}\log\sigma(-\beta r(y_f))$ (Zhang et
# al., arXiv:2404.05868); DPO to the refusal $-\log\sigma(\beta(r(y_{idk}) - r(y_f)))$; AltPO,
# the mean over alternates $\tilde y$ of $-\tfrac{2}{\beta}\log\sigma(\beta(r(\tilde y) -
# r(y_f)))$ (Mekala et al., arXiv:2409.13474v1, Sec. 3). The softmax gradient
# $\partial\log\pi(y)/\partial\theta = e_y - \pi$.
#
# **Reading time:** about 30 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 100 if SMOKE else 500  # gradient steps of each run of section 2
SHARED_STEPS = 60 if SMOKE else 100  # steps of the shared-bias runs of section 4
BETA = 0.1  # NPO's, DPO's and AltPO's beta (gradient ascent has none)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.unlearning import teaching_task
from prefopt_toy.widgets.unlearning_explorer import unlearning_summary, where_mass_goes

pd.set_option("display.float_format", "{:.3g}".format)  # one format per table
task = teaching_task()
METHODS = ("ga", "npo", "dpo_refusal", "altpo")

# %% [markdown]
# ## 1. The task
#
# Six questions over six answers: the true answer, three plausible alternates, "I don't know"
# (the refusal) and gibberish (implausible). The reference $\mu$ is the model after fine-tuning:
# 0.55 to 0.75 on the truth. Questions 0-2 are to be forgotten, 3-5 retained (their true answer
# should keep its probability).

# %%
table = pd.DataFrame(task.mu.numpy(), columns=task.answer_names)
table.insert(0, "role", task.roles)
table

# %% [markdown]
# ## 2. Four methods, exactly
#
# Each method takes `STEPS` exact gradient-descent steps (default learning rate: 1, or
# $2/\beta$ for DPO to the refusal) with no retain term and no coupling between questions, so the
# retain questions do not move at all. Where each method puts the forget questions' mass (means
# over the three forget questions):

# %%
runs = {m: pt.unlearn(task, method=m, steps=STEPS, beta=BETA) for m in METHODS}
start = pt.unlearn(task, method="ga", steps=0)  # zero steps: the reference itself
ends = {"reference": unlearning_summary(start)} | {
    m: unlearning_summary(r) for m, r in runs.items()
}
pd.DataFrame(ends).T.drop(columns=["retain log-likelihood", "retain KL"])

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True, layout="constrained")
for ax, (name, run) in zip(axes, runs.items()):
    mass = pd.DataFrame(where_mass_goes(run)).iloc[:, :5]
    mass.index = mass.index + 1  # step 0 at x = 1 on the log axis
    mass.plot(ax=ax, logx=True, title=name, xlabel="step + 1", ylim=(0, 1), legend=ax is axes[0])
axes[0].set_ylabel("mean over forget questions")
plt.show()

# %% [markdown]
# All four forget (the true answer's probability falls by many orders of magnitude). They differ
# in where the mass goes. Gradient ascent and NPO put it on the alternates, but not in $\mu$'s
# proportions: the top alternate's share grows from 0.45 to about 0.78. DPO to the refusal puts it
# all on "I don't know". AltPO puts it on the alternates and keeps the top alternate's share at
# exactly 0.452, $\mu$'s, at every step. The next section checks each mechanism.
#
# ## 3. The exact mechanisms
#
# **Gradient ascent squeezes.** One gradient-ascent step on a forget question moves its logits
# by $-\eta(e_f - \pi)/F$ ($F = 3$ forget questions share the mean): every other answer's logit
# rises by $\eta\pi(y)/F$, so $\log\pi(y)/\pi(y')$ grows by $\eta(\pi(y) - \pi(y'))/F$. The more
# likely alternate gains on the less likely one at every step. One step, question 0, alternate 1
# against alternates 2 and 3 and against gibberish:

# %%
one = pt.unlearn(task, method="ga", steps=1)
p0, p1 = one.policies[0, 0], one.policies[1, 0]
pairs = [(1, 2), (1, 3), (1, 5)]
pd.DataFrame(
    {
        "measured increment": [
            float((p1[a] / p1[b]).log() - (p0[a] / p0[b]).log()) for a, b in pairs
        ],
        "lr (pi(a) - pi(b)) / F": [float(p0[a] - p0[b]) / 3 for a, b in pairs],
    },
    index=[f"{task.answer_names[a]} / {task.answer_names[b]}" for a, b in pairs],
).style.format("{:.12f}")

# %% [markdown]
# **NPO is gradient ascent, slowed.** NPO's gradient is gradient ascent's times
# $2\sigma(\beta r(y_f))$, a factor in $(0, 2)$ that is 1 at $\mu$ and falls as $\pi(y_f)$
# does. From a point where the two have moved apart (gradient ascent's step 5), one step of each
# and the ratio of their log-ratio increments, per forget question:

# %%
mid = runs["ga"].log_policies[5]
ga1 = pt.unlearn(task, method="ga", steps=1, start=mid).log_policies
npo1 = pt.unlearn(task, method="npo", steps=1, beta=BETA, start=mid).log_policies
increment = lambda lp: (lp[1, :3, 1] - lp[1, :3, 5]) - (lp[0, :3, 1] - lp[0, :3, 5])  # noqa: E731
r = mid[:3, 0] - task.mu[:3, 0].log()
pd.DataFrame(
    {"NPO / GA increment": (increment(npo1) / increment(ga1)).numpy(),
     "2 sigma(beta r(y_f))": (2 * torch.sigmoid(BETA * r)).numpy()},
    index=["question 0", "question 1", "question 2"],
).style.format("{:.12f}")  # fmt: skip

# %% [markdown]
# **AltPO keeps $\mu$ inside the alternates.** Every pair pushes one alternate up against the
# forget answer by the same amount, so every alternate gets the same logit increment, and
# $\pi(a)/\pi(b) = \mu(a)/\mu(b)$ among the alternates at every step. **DPO to the refusal moves
# two logits.** Its gradient is zero outside the refusal and the forget answer, so every other
# answer keeps $\log\pi(y) - \log\mu(y)$ equal to the others'. The largest deviation over all
# steps and forget questions:

# %%
alt = runs["altpo"].policies[:, :3, 1:4]
mu_share = task.mu[:3, 1:4] / task.mu[:3, 1:4].sum(-1, keepdims=True)
dpo_r = runs["dpo_refusal"].log_policies[:, :3, [1, 2, 3, 5]] - task.mu[:3, [1, 2, 3, 5]].log()
print(
    "AltPO:  max |pi(a)/pi(A) - mu(a)/mu(A)| =",
    float((alt / alt.sum(-1, keepdims=True) - mu_share).abs().max()),
)
print(
    "GA:     max |pi(a)/pi(A) - mu(a)/mu(A)| =",
    float(
        (runs["ga"].policies[:, :3, 1:4] / runs["ga"].alternate_mass[..., None] - mu_share)
        .abs()
        .max()
    ),
)
print("DPO-idk: max spread of log pi/mu over the bystanders =", float((dpo_r.max(-1).values - dpo_r.min(-1).values).max()))  # fmt: skip

# %% [markdown]
# AltPO's shares stay $\mu$'s to round-off while gradient ascent's drift by up to 0.58; DPO to the
# refusal leaves the bystanders' proportions untouched. So AltPO's limit, $\mu$ conditioned on
# the alternates, holds inside the alternates from step 0; the refusal and gibberish vanish only
# polynomially (AltPO's loss has no finite minimiser).
#
# ## 4. Forgetting against utility: a shared bias
#
# Until now every question moved alone, so forgetting never hurt a retained question. A language
# model shares its weights across questions; `shared_bias=True` adds the simplest shared weight,
# one logit bias per answer for all questions. Pushing the true answer down on forget questions
# now pushes down its shared bias, and the true answer of the *retain* questions with it. The
# retain term ($\lambda$ = `retain_weight`) pushes back.

# %%
settings = {"GA": ("ga", 0.0), "GradDiff (GA + retain)": ("ga", 1.0), "NPO + retain": ("npo", 1.0),
            "AltPO": ("altpo", 0.0), "AltPO + retain": ("altpo", 1.0)}  # fmt: skip
shared = {
    name: pt.unlearn(task, method=m, steps=SHARED_STEPS, beta=BETA, retain_weight=w, shared_bias=True)
    for name, (m, w) in settings.items()
}  # fmt: skip
cols = ["forget answer", "retain log-likelihood", "retain KL", "TV to mu(.|alternates)"]
pd.DataFrame({n: unlearning_summary(r) for n, r in shared.items()}).T[cols]

# %% [markdown]
# The reference's retain log-likelihood is -0.358. Every forget term hurts the retain questions.
# Gradient ascent drives their true answer's log-probability to minus hundreds; GradDiff holds
# it near -1.4 but cannot stop the unbounded push; AltPO with its retain term moves the retain
# questions least. Forgetting (down) against utility lost (right), one curve per run (the
# x-axis is linear below 0.01, logarithmic above). AltPO with the retain term turns back: its
# retain KL peaks near 0.25 while the forget answers fall, then the retain term pulls it down
# to 0.12 once they are gone (full mode, 100 steps).

# %%
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
for name, run in shared.items():
    (line,) = ax.plot(run.retain_kl.mean(-1), run.forget_prob.mean(-1), label=name)
    ax.plot(run.retain_kl[-1].mean(), run.forget_prob[-1].mean(), "o", color=line.get_color())
ax.set(xlabel="mean retain KL(pi || mu)", ylabel="mean pi(forget answer)")
ax.set_xscale("symlog", linthresh=0.01)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 5. Explore
#
# Pick a method; move beta, the retain weight, the shared bias and the number of steps. Left:
# the first forget question's answers over training (black: the true answer being forgotten).
# Right: mean $\pi$(forget answer) against the mean retain KL, a point per step. Each move reruns
# the method exactly (a setting seen before is kept).

# %%
widgets.unlearning_explorer(
    task, method="altpo", beta=BETA, retain_weight=0.0, shared_bias=True, steps=100
)

# %% [markdown]
# ## Summary
#
# - Gradient ascent moves the logits by $-\eta(e_f - \pi)$: the remaining answers' log-ratios
#   grow by $\eta(\pi(y) - \pi(y'))$, so the freed mass piles onto the likeliest alternate.
# - NPO is gradient ascent times $2\sigma(\beta r(y_f))$: the same direction, slowed as the
#   forget answer falls.
# - AltPO keeps $\mu$'s proportions inside the alternates at every step; DPO to the refusal moves
#   only the refusal's and the forget answer's logits and ends on "I don't know".
# - With a weight shared across questions every forget term hurts the retain questions;
#   a retain term limits the damage, and AltPO with it moves them least.
#
# ## Exercises
#
# 1. Run DPO to the refusal with `shared_bias=True` for `SHARED_STEPS` steps, with
#    `retain_weight` 0 and 1. What happens to the retain questions' refusal mass and their true
#    answer? Why does it differ from gradient ascent's damage?
# 2. NPO tends to gradient ascent as beta -> 0. Run both for 100 steps (no shared bias) at
#    beta = 0.1, 0.01 and 0.001 and measure the largest gap between the forget questions'
#    distributions. How does the gap scale with beta?
# 3. Show that AltPO's gradient gives every alternate of a question the same logit increment.
#    Then run AltPO with `augment_k=1` (only the first alternate in the pairs): which answers keep
#    $\mu$'s proportions among themselves now, and where does the forgotten mass go?
