# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # GPT-2 · 05 · A language model as the judge: distil one, measure it, train with it
#
# **What this notebook teaches.** Notebook 11 showed exactly what an order-biased judge $J$ does
# to every algorithm: pairs drawn from one distribution see only its symmetrised game
# $P_{\mathrm{sym}} = \tfrac12(J + 1 - J^\top)$ (Lee et al., arXiv:2309.00267v3, Sec. 2.1.2), so
# online IPO's fixed point is `regularized_nash(P_sym, mu, tau)` whichever order the judge reads
# the pair in (Calandriello et al., arXiv:2403.08635v1). Here the judge is a GPT-2:
#
# 1. **An untrained model is no judge.** `LanguageModelJudge` reads the odds of "1" against "2"
#    after a judge prompt; the small model never saw either token, so every verdict is a tie.
# 2. **Distil a judge whose game we know.** `distill_judge` fine-tunes a copy of the model on judge
#    prompts labelled by a designed raw judge $J$ = `logit_shift_judge(P_ext, log 2)` (cherry >
#    banana > apple, a first-slot bonus of log 2 nats), with a 2-way cross-entropy on the two
#    answer tokens (soft labels, as in distillation: Hinton et al., arXiv:1503.02531v1).
# 3. **Measure how much of $J$ came through** (`measure_judge_game`, `judge_recovery`): the raw
#    class matrix $R$ against $J$, its position bias against the design's (Zheng et al.,
#    arXiv:2306.05685v4, Sec. 3.3), on reference samples the distillation never saw.
# 4. **Train GPT-2 online against it** and compare with the toy's prediction from the *measured*
#    game, with the judge reading both orders and only the order drawn.
#
# **Model.** `PREFOPT_GPT2_MODEL`: `tiny` (smoke mode) or `small` (default), trained offline and
# cached. **Smoke mode teaches nothing numerically**: 10 distillation steps and 2 training steps
# on the tiny model, enough to run every cell. Full mode takes about 10 minutes on one CPU core;
# the README's numbers come from `benchmarks/bench_lm_judge_distill.py` (same settings, 2000
# evaluation samples).
#
# **Reading time:** about 20 minutes (plus the full-mode runs).

# %% tags=["parameters"]
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network unless asked to
SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
MODEL = os.environ.get("PREFOPT_GPT2_MODEL", "tiny" if SMOKE else "small")
P_DESIGN = [[0.5, 0.3, 0.2], [0.7, 0.5, 0.35], [0.8, 0.65, 0.5]]  # cherry > banana > apple
OTHER_LOSES = 0.8  # every fruit beats "other" with 0.8
N_POOL = 64 if SMOKE else 256  # the distillation pool (its own generator)
N_EVAL = 64 if SMOKE else 1000  # the evaluation pool and the final estimates
PER_CLASS = 2 if SMOKE else 6  # completions per class in the measured game
DISTILL = {"steps": 10 if SMOKE else 200, "batch_size": 8 if SMOKE else 32, "lr": 5e-4}
TAU = 0.2  # online IPO's regularisation
IPO = {"steps": 2 if SMOKE else 80, "batch_size": 2 if SMOKE else 16, "lr": 5e-5}

# %%
# %matplotlib inline
import copy
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge import distill_judge, judge_recovery, lifted_judge, total_variation
from prefopt_toy.lm.bridge.ai_feedback import (
    measure_judge_game,
    predict_ai_feedback,
    run_ai_feedback,
    sample_completions,
)
from prefopt_toy.lm.bridge.run import bridge_generator
from prefopt_toy.lm.model_judge import LanguageModelJudge
from prefopt_toy.lm.models import FRUIT_TASK, default_model

# %% [markdown]
# ## 1. The design, and an untrained judge
#
# The lifted judge classifies a completion by the fruit it names ("other" if none). The designed
# raw judge gives the first slot log 2 nats of log-odds, so a tie reads 2/3. Its symmetrised game
# is close to the honest $P_\text{ext}$ but not equal to it: averaging both orders gives
# $\tfrac12(\sigma(l + b) + \sigma(l - b))$ with $l = \operatorname{logit} P$, exactly 1/2 on the
# diagonal and a little closer to 1/2 elsewhere (0.319 where $P$ has 0.3).

# %%
torch.set_num_threads(1)
pd.set_option("display.float_format", "{:.3f}".format)
ref, tok = default_model(MODEL, seed=0)
PROMPT = FRUIT_TASK.prompt_templates[0]  # the question the judge is told was asked
lifted = lifted_judge(FRUIT_TASK, P_DESIGN, other_loses=OTHER_LOSES)
names = list(lifted.class_names)
J = pt.logit_shift_judge(lifted.P_ext, math.log(2.0))
S = pt.symmetrize_judge(J)
texts, ids, mu = sample_completions(
    ref, tok, FRUIT_TASK, lifted, n=N_EVAL, generator=bridge_generator(0, "reference"),
    max_new_tokens=8,
)  # fmt: skip
pd.concat(
    {"J (raw)": pd.DataFrame(J.numpy(), names, names), "symmetrised": pd.DataFrame(S.numpy(), names, names)},
    axis=1,
)  # fmt: skip

# %%
untrained = LanguageModelJudge(ref, tok, prompt=PROMPT)
g0 = measure_judge_game(untrained, texts, ids, len(names), per_class=PER_CLASS, class_names=names)
print("mu_class:", [round(x, 3) for x in mu.probs.tolist()])
print("untrained judge, max |R - 1/2|:", float((g0.raw - 0.5).abs().max()))

# %% [markdown]
# ## 2. Distil the design into a copy of the model
#
# Each step draws fresh pairs of pool completions, *class-balanced* (each class equally often in
# each slot; with uniform pairs the rare "other" class is barely seen and not learned), shows
# each pair in the order drawn, and labels it with $J[c(a), c(b)]$. The loss is the
# cross-entropy between that label and the judge's renormalised "1"/"2" odds; we record the KL
# between them (the loss minus the label's entropy), which reaches 0 only at the design.

# %%
pool_texts, pool_ids, pool = sample_completions(
    ref, tok, FRUIT_TASK, lifted, n=N_POOL, generator=torch.Generator().manual_seed(104729),
    max_new_tokens=8,
)  # fmt: skip
student = copy.deepcopy(ref)  # distill_judge trains in place; ref stays the policy's reference
dj = distill_judge(student, tok, pool_texts, pool_ids, J, prompt=PROMPT, balanced=True, **DISTILL)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(dj.kl)
ax.set(xlabel="distillation step", ylabel="mean KL(label || judge)", yscale="log")
plt.show()

# %% [markdown]
# ## 3. How much of the design came through
#
# Measured on the evaluation pool (reference samples the distillation never saw): every ordered
# pair of the first `PER_CLASS` completions of each class, both orders. Errors are over the
# class entries with completions; the last column is an untrained judge's error for scale.

# %%
g = measure_judge_game(
    dj.judge, texts, ids, len(names), per_class=PER_CLASS, class_names=names
)  # fmt: skip
rec = pd.DataFrame({"untrained": judge_recovery(g0, J), "distilled": judge_recovery(g, J)})
rec.loc[["raw_mean", "raw_max", "P_mean", "P_max", "pair_bias", "pair_bias_designed"]]

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
panels = (
    ("design J", J, 0.0, 1.0),
    ("distilled R", g.raw, 0.0, 1.0),
    ("R - J", g.raw - J, -0.5, 0.5),
)
for k, (ax, (title, M, lo, hi)) in enumerate(zip(axes, panels)):
    im = ax.imshow(M.numpy(), cmap="RdBu_r", vmin=lo, vmax=hi)
    for (i, j), v in np.ndenumerate(M.numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set(title=title, xticks=range(4), yticks=range(4), xlabel="second shown")
    ax.set_xticklabels(names, rotation=30)
    ax.set_yticklabels(names if k == 0 else [])
    fig.colorbar(im, ax=ax, shrink=0.8)
axes[0].set_ylabel("first shown")
plt.show()

# %% [markdown]
# ## 4. Online IPO with the distilled judge, against the toy
#
# The prediction uses the **measured** symmetrised game $P$ = `g.P` and the measured
# $\mu_\text{class}$; pairs come from the policy, so (notebook 11, section 2) the judge reading
# only the order drawn (`order="first"`, its raw $R$) and both orders averaged have the same
# prediction. `run_ai_feedback` trains a fresh copy of the reference each time.

# %%
prediction, _ = predict_ai_feedback("online_ipo", g.P, mu.probs, tau=TAU)
runs = {}
for order in ("both", "first"):
    judge = LanguageModelJudge(student, tok, prompt=PROMPT, order=order)
    runs[order] = run_ai_feedback(
        "online_ipo", copy.deepcopy(ref), ref, tok, judge, tau=TAU, seed=0, n_samples=N_EVAL,
        per_class=PER_CLASS, game=g, mu_class=mu, eval_every=max(1, IPO["steps"] // 4),
        n_eval=8 if SMOKE else 32, **IPO,
    )  # fmt: skip
rows = {"mu_class": mu.probs, "prediction": prediction}
rows |= {f"GPT-2, order={o}": r.final.probs for o, r in runs.items()}
table = pd.DataFrame({k: v.numpy() for k, v in rows.items()}, index=names).T
table["TV to prediction"] = [total_variation(v, prediction) for v in rows.values()]
table

# %%
fig, ax = plt.subplots(figsize=(7, 3))
x = np.arange(len(names))
for k, (label, v) in enumerate(rows.items()):
    ax.bar(x + (k - 1.5) * 0.2, v.numpy(), width=0.2, label=label)
ax.set(xticks=x, xticklabels=names, ylabel="class probability")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# What the benchmark gave on the small model (`benchmarks/results_lm_judge_distill.md`, these
# settings, estimates on 2000 samples): the distilled judge is within 0.018 of $J$ on the fruit
# classes on average (0.192 for the untrained one), its mean pair bias +0.281 against the
# design's +0.266; online IPO ends TV 0.036 (both orders) and 0.050 (the order drawn only) from
# the toy's prediction, having started 0.228 from it, and the two orders end 0.023 apart. With
# the same judge, online DPO (beta 0.5, 200 steps) lands TV 0.024 from *its* prediction, the
# exact `online_dpo` stationary point, 0.149 away from online IPO's.
# Full mode here uses 1000 samples, so expect differences of a few hundredths.
#
# ## Summary
#
# - An untrained language model is not a judge: tokens it never saw give exact ties.
# - Distillation with soft labels on the two answer tokens teaches a known raw game, position
#   bias included; class-balanced pairs are needed for a rare class.
# - With a judge that carries a class-level game, the exact toy predicts where online IPO takes
#   GPT-2, and, as the toy says, reading the pair in one order or both changes the label noise,
#   not the destination.
#
# ## Exercises
#
# 1. Distil with `balanced=False`. Which class's verdicts suffer, and why does its share of the
#    pool explain it? (Compare `judge_recovery` and the "other" row of `g.raw`.)
# 2. Change the bias to a lapse: `J = pt.lapse_judge(lifted.P_ext, 0.3)`. What does the toy
#    predict for online IPO now, and for Nash-MD (notebook 11)? Which of the two would the
#    distilled judge's bias move?
# 3. Predict online DPO with the same judge: `predict_ai_feedback("online_dpo", g.P, mu.probs,
#    beta=0.5)`. Why is it further from `mu_class` than online IPO's prediction at tau = 0.2?
#    (Compare the exponents: $\log(\pi/\mu)$ of each prediction.) Then train it with
#    `run_ai_feedback("online_dpo", ..., beta=0.5)` and compare.
