# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # GPT-2 · 02 · Online IPO, IPO-MD and Nash-MD-PG on a non-transitive game
#
# **What this notebook teaches.** When preferences cycle (apple beats banana beats cherry beats
# apple), no reward model explains them and the target of alignment is a game solution: the
# regularised Nash equilibrium. Notebooks 04 and 05 reach it exactly on the toy. Here GPT-2 plays
# the same game, *lifted* to text (a completion is judged only by the fruit it names), and is
# trained online with three algorithms, each against the exact class distribution the toy predicts
# for it. You will read the run logs as curves and see where each algorithm heads.
#
# **Equations covered** (on the class game $P_\text{ext}$, reference $\mu_\text{class}$):
#
# - online IPO, pairs from the current policy (stop-gradient), soft labels $P(y \succ y')$: fixed
#   point the regularised Nash equilibrium $\pi^*_\tau \propto \mu\, e^{(P\pi^*_\tau)/\tau}$
#   (Calandriello et al., arXiv:2403.08635v1, Prop. 4.1; Munos et al., arXiv:2312.00886v4);
# - IPO-MD, both completions from the geometric mixture $\pi_m \propto \pi^{1-m}\mu^{m}$: fixed
#   point $\pi \propto \mu\, e^{(P\pi_m)/\tau}$ (Calandriello et al., Sec. 5);
# - Nash-MD-PG, the policy gradient of $P(\pi \succ \pi_m) - \tau\,KL(\pi\|\mu)$ against the
#   mixture (Munos et al., Sec. 7): stationary at the same point as IPO-MD.
#
# The GPT-2 trainers mix **per token**, not per sequence, so for $m > 0$ the class-level prediction
# is an approximation (exact at $m = 0$; `prefopt_toy.lm.bridge`'s docstring).
#
# **Model.** `PREFOPT_GPT2_MODEL`: `tiny` (smoke mode) or `small` (default) are trained offline
# and cached; `gpt2` loads GPT-2 124M with `prefopt_toy.lm.models.load_model`, which needs the
# weights in the local Hugging Face cache (`HF_HUB_OFFLINE=1` is set below unless you set it);
# the training code runs on the CPU, where 124M is slow.
#
# **Smoke mode is not converged**: a few steps on the tiny model show the pipeline, not the limit.
#
# **Reading time:** about 20 minutes.

# %% tags=["parameters"]
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network unless asked to
SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
MODEL = os.environ.get("PREFOPT_GPT2_MODEL", "tiny" if SMOKE else "small")
STEPS = 3 if SMOKE else 40  # GPT-2 training steps per algorithm
SIZES = {  # run_bridge's sample sizes: class estimates, logged evaluations, batches
    "steps": STEPS,
    "n_eval_samples": 32 if SMOKE else 256,
    "n_eval": 8 if SMOKE else 32,
    "eval_every": 1 if SMOKE else 5,
    "batch_size": 4 if SMOKE else 8,
    "max_new_tokens": 8 if SMOKE else 10,
    "toy_steps": 200 if SMOKE else 500,
    "lr": 1e-3 if SMOKE else 1e-4,
}
RUN_ROOT = os.environ.get(
    "PREFOPT_RUN_DIR"
)  # where run logs go (None: a temporary folder, deleted at the end)

# %%
import tempfile
from pathlib import Path

import torch

import prefopt_toy as pt
from prefopt_toy.lm.bridge import class_curves, lifted_judge, predict, run_bridge
from prefopt_toy.lm.bridge.demo import BRIDGE_MIXTURE, BRIDGE_P, BRIDGE_TAU, format_bridge_summary
from prefopt_toy.lm.models import FRUIT_TASK, gpt2_tokenizer, load_model
from prefopt_toy.lm.train import run_log_curves

scratch = tempfile.TemporaryDirectory(prefix="prefopt_gpt2_02_")  # deleted when the kernel stops
runs = Path(RUN_ROOT or scratch.name) / "02_online_nash"

# %%
# "tiny" / "small": trained offline on the project's corpus on first use, then cached;
# "gpt2" (GPT-2 124M) and larger: from the local Hugging Face cache
ref, tok = load_model(MODEL), gpt2_tokenizer()

# %% [markdown]
# ## 1. The game and the reference's class distribution
#
# `BRIDGE_P` is the fruit cycle, each win with probability 0.9; "other" (a completion naming no
# fruit) loses to every fruit. The reference model's class distribution $\mu_\text{class}$ is
# estimated from samples, with a Wilson interval per class.

# %%
from prefopt_toy.lm.bridge.class_estimate import estimate_class_distribution

P = [list(row) for row in BRIDGE_P]
judge = lifted_judge(FRUIT_TASK, P)
mu = estimate_class_distribution(
    ref,
    tok,
    FRUIT_TASK,
    judge,
    n_samples=SIZES["n_eval_samples"],
    generator=torch.Generator().manual_seed(1),
    max_new_tokens=SIZES["max_new_tokens"],
)
for name, p, lo, hi in zip(judge.class_names, mu.probs, mu.lower, mu.upper):
    print(f"{name:7s} mu_class = {float(p):.3f}  [{float(lo):.3f}, {float(hi):.3f}]")

# %% [markdown]
# ## 2. The exact predictions
#
# For this $\mu_\text{class}$ the toy solves each algorithm's fixed point exactly (`predict`). The
# regularised Nash sits between $\mu_\text{class}$ and the uniform Nash equilibrium of the cycle;
# the mixture pulls IPO-MD and Nash-MD-PG's target back towards $\mu_\text{class}$.

# %%
algorithms = {
    "online_ipo": {"tau": BRIDGE_TAU},
    "ipo_md": {"tau": BRIDGE_TAU, "mixture": BRIDGE_MIXTURE},
    "nash_md_pg": {"tau": BRIDGE_TAU, "mixture": BRIDGE_MIXTURE},
}
for name, hyper in algorithms.items():
    prediction, _ = predict(name, judge.P_ext, mu.probs, **hyper)
    print(f"{name:10s} {hyper}: prediction {prediction.numpy().round(3)}")
print("unregularised Nash of P_ext:", pt.nash_equilibrium(judge.P_ext).numpy().round(3))
print("exploitability of mu_class: ", round(pt.exploitability(judge.P_ext, mu.probs), 3))

# %% [markdown]
# ## 3. Train GPT-2 online with each algorithm
#
# `run_bridge` samples completions from the policy (or the per-token mixture), labels each pair
# with the judge's probability (soft labels), minimises the toy's loss on sequence-level margins,
# logs every step, and finally estimates the trained policy's class distribution.

# %%
results = {
    name: run_bridge(name, P=P, model=ref, tokenizer=tok, run_dir=runs / name, **hyper, **SIZES)
    for name, hyper in algorithms.items()
}
for result in results.values():
    print(format_bridge_summary(result), end="\n\n")

# %% [markdown]
# In smoke mode the total variations are large: a handful of steps has barely moved the policy.
# With the default settings (`PREFOPT_SMOKE` unset) compare each total variation with the
# largest Wilson half-width printed below it.
#
# ## 4. The run logs as curves
#
# Left: the loss. Middle: the KL estimate to the reference on fresh policy samples (`eval/kl`).
# Right: the judge's win rate of policy samples against reference samples (`win_rate`).

# %%
run_log_curves(
    {name: r.log_path for name, r in results.items()},
    ["loss", "eval/kl", "win_rate"],
    titles=["loss", "eval/kl (nats)", "win rate against the reference"],
)

# %% [markdown]
# The class distribution logged during training, class by class, against each algorithm's
# prediction (dashed): each logged point is an estimate from `n_eval` samples, so expect noise of
# about $1/\sqrt{n_\text{eval}}$.

# %%
class_curves(results)

# %% [markdown]
# ## 5. Toy and GPT-2 on one simplex
#
# Saved beside their run logs (`save_bridge_run`), the runs go into the bridge explorer of
# notebook `03_bridge`: pick an algorithm to see the exact toy trajectory from $\mu_\text{class}$
# (blue), GPT-2's logged class distributions (orange, by step), the prediction (star) and the
# final estimate with its Wilson intervals, renormalised over the three fruits (the status line
# gives the "other" mass).

# %%
from prefopt_toy.lm.bridge.runs import save_bridge_run
from prefopt_toy.lm.bridge.widget import bridge_explorer

for name, result in results.items():
    save_bridge_run(result, runs / name)  # bridge.json beside the run log
bridge_explorer(runs)

# %% [markdown]
# ## Summary
#
# - On a cyclic game, online IPO targets the regularised Nash equilibrium, not a reward maximiser;
#   IPO-MD and Nash-MD-PG against the mixture target the IPO-MD fixed point.
# - The lifted game makes the exact toy a prediction for GPT-2: measure $\mu_\text{class}$, solve,
#   train, compare, with sampling error made explicit by Wilson intervals.
#
# ## Exercises
#
# 1. Set the mixture to 0 for IPO-MD. Which prediction does it share then, and does the GPT-2 run
#    agree (per-token and sequence mixtures coincide at $m = 0$)?
# 2. Lower $\tau$ to 0.1. How do the predictions move towards the uniform Nash equilibrium, and
#    how many more steps does GPT-2 need to follow?
# 3. Use `labels="hard"` in a `TrainConfig` (see `prefopt_toy.lm.trainer`). Does the fixed point
#    of online IPO change? (Compare with notebook 05's sampled labels.)
