# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # GPT-2 · 01 · Offline DPO and IPO on a language model, with the toy's own losses
#
# **What this notebook teaches.** The losses of notebooks 02 and 03 are not re-implemented for the
# language model: `prefopt_toy.lm.objectives` computes four sequence log-probabilities per pair,
# forms the margin and calls *the same* `prefopt_toy.dpo_loss` / `prefopt_toy.ipo_loss` the exact
# toy uses. You will check that on one batch by hand, train GPT-2 offline with DPO and with IPO on
# a *lifted* game (a completion is judged only by the fruit it names), read the run log with TRL's
# metric names, and compare the class distribution GPT-2 reaches with the exact toy's prediction.
#
# **Equations covered.**
#
# - the margin $h = \big(\log\pi(y_w) - \log\mu(y_w)\big) - \big(\log\pi(y_l) - \log\mu(y_l)\big)$,
#   log-probs **summed** over completion tokens (the theory's convention);
# - DPO: $\ell(h) = -\log\sigma(\beta h)$ (Rafailov et al., arXiv:2305.18290v3, Eq. (7));
#   IPO: $\ell(h) = \big(h - \tfrac{1}{2\tau}\big)^2$ (Azar et al., arXiv:2310.12036v2, Eq. (17));
# - their population optima with pairs from $\mu$: DPO $\pi \propto \mu\, e^{r/\beta}$ with $r$ the
#   Bradley-Terry fit of $P$ (`rlhf_optimum`), IPO $\pi \propto \mu\, e^{(P\mu)/\tau}$
#   (`ipo_optimum`), both applied to the *class* game (notebook `03_bridge` explains why that is
#   allowed).
#
# **Model.** `PREFOPT_GPT2_MODEL` picks it: `tiny` (smoke mode, CI) and `small` (the default
# otherwise) are GPT-2 configurations the project trains offline in seconds / about a minute and
# caches; `gpt2` is GPT-2 124M through `prefopt_toy.lm.models.gpt2.load_model`, which needs its weights
# in the local Hugging Face cache (nothing is downloaded while `HF_HUB_OFFLINE=1`; run once with
# `HF_HUB_OFFLINE=0` on a machine with a network). The training code runs on the CPU; 124M works
# there but slowly, so keep `STEPS` small or use a large machine.
#
# **Smoke mode is not converged.** With `PREFOPT_SMOKE=1` every run takes a handful of steps on
# the tiny model: the numbers show the pipeline working, not GPT-2 reaching the prediction.
#
# **Reading time:** about 20 minutes.

# %% tags=["parameters"]
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network unless asked to
SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
MODEL = os.environ.get("PREFOPT_GPT2_MODEL", "tiny" if SMOKE else "small")
STEPS = 3 if SMOKE else 40  # GPT-2 training steps per algorithm
SIZES = {  # run_bridge's sample sizes: class estimates, logged evaluations, batches, dataset
    "steps": STEPS,
    "n_eval_samples": 32 if SMOKE else 256,
    "n_eval": 8 if SMOKE else 32,
    "eval_every": 1 if SMOKE else 5,
    "batch_size": 4 if SMOKE else 8,
    "max_new_tokens": 8 if SMOKE else 10,
    "n_pairs": 32 if SMOKE else 256,
    "toy_steps": 200 if SMOKE else 500,
    "lr": 1e-3 if SMOKE else 1e-4,
}
BETA = 0.25  # DPO's KL strength
TAU = 0.25  # IPO's KL strength
RUN_ROOT = os.environ.get(
    "PREFOPT_RUN_DIR"
)  # where run logs go (None: a temporary folder, deleted at the end)

# %%
import tempfile
from pathlib import Path

import torch

import prefopt_toy as pt
from prefopt_toy.lm import objectives
from prefopt_toy.lm.bridge import lifted_judge, preference_dataset, run_bridge
from prefopt_toy.lm.bridge.demo import BRIDGE_P, DPO_OTHER_LOSES, format_bridge_summary
from prefopt_toy.lm.models import FRUIT_TASK, gpt2_tokenizer, load_model
from prefopt_toy.lm.train import run_log_curves, run_log_frame

scratch = tempfile.TemporaryDirectory(prefix="prefopt_gpt2_01_")  # deleted when the kernel stops
runs = Path(RUN_ROOT or scratch.name) / "01_offline_dpo_ipo"

# %%
# "tiny" / "small": trained offline on the project's corpus on first use, then cached;
# "gpt2" (GPT-2 124M) and larger: from the local Hugging Face cache
ref, tok = load_model(MODEL), gpt2_tokenizer()
print(MODEL, f"{sum(p.numel() for p in ref.parameters()) / 1e6:.1f}M parameters")

# %% [markdown]
# ## 1. The lifted game
#
# The prompts ask for a favourite fruit. The judge reads the completion, finds its class (apple,
# banana, cherry, or "other" when it names none) and returns $P[c(y), c(y')]$ from a $3\times 3$
# game, here a rock-paper-scissors cycle: apple beats banana, banana beats cherry, cherry beats
# apple, each with probability 0.9. "Other" loses to every fruit with probability `other_loses`;
# DPO needs it below 1, or its Bradley-Terry fit has no finite optimum.

# %%
P = [list(row) for row in BRIDGE_P]
judge = lifted_judge(FRUIT_TASK, P, other_loses=DPO_OTHER_LOSES)
print("classes:", judge.class_names)
print("P_ext =\n", judge.P_ext.numpy().round(3))
for a, b in [
    (" an apple.", " a banana."),
    (" a cherry.", " an apple."),
    (" a secret.", " a banana."),
]:
    print(f"Pr({a!r} beats {b!r}) = {judge.prob(a, b):.2f}")

# %% [markdown]
# ## 2. Offline data in TRL's format
#
# Offline DPO and IPO learn from a fixed dataset: two completions per prompt sampled from the
# reference $\mu$, labelled by a Bernoulli draw from the judge. The rows are TRL's
# `{"prompt", "chosen", "rejected"}`.

# %%
data = preference_dataset(
    ref,
    tok,
    FRUIT_TASK,
    judge,
    n_pairs=32,
    generator=torch.Generator().manual_seed(0),
    max_new_tokens=SIZES["max_new_tokens"],
)
for row in data[:4]:
    print(row)

# %% [markdown]
# ## 3. The same loss objects as the toy
#
# `lm.objectives` does not define its own DPO or IPO: it imports the toy's functions.

# %%
print("objectives.dpo_loss is pt.dpo_loss:", objectives.dpo_loss is pt.dpo_loss)
print("objectives.ipo_loss is pt.ipo_loss:", objectives.ipo_loss is pt.ipo_loss)

# %% [markdown]
# A check on numbers: take one training step of DPO with the trainer (so the policy differs from
# the reference), then compute the loss of the next batch twice, once through the trainer and once
# by hand: sequence log-probs with `completion_logprobs(..., reduction="sum")`, the margin with
# `pt.margin`, and `pt.dpo_loss` / `pt.ipo_loss`.

# %%
import copy

from prefopt_toy.lm.train import TrainConfig, Trainer

policy = copy.deepcopy(ref)
cfg = TrainConfig(
    algorithm="dpo",
    reduction="sum",
    beta=BETA,
    lr=1e-3,
    steps=2,
    batch_size=8,
    max_length=48 + SIZES["max_new_tokens"],
)
trainer = Trainer(cfg, policy, ref, tok, dataset=data)
print("step 1:", {k: round(v, 4) for k, v in trainer.train_step().items()})
rows = trainer.next_indices()
trainer_loss, trainer_metrics = trainer.offline_loss(rows)
trainer_loss = trainer_loss.detach()

# %%
from prefopt_toy.lm.data import tokenize_pairs
from prefopt_toy.lm.logprobs import completion_logprobs

batch = tokenize_pairs(tok, [data[i] for i in rows], max_length=cfg.max_length)
with torch.no_grad():
    logp = {
        (who, side): completion_logprobs(
            model,
            batch[f"{side}_input_ids"],
            batch[f"{side}_attention_mask"],
            batch[f"{side}_completion_mask"],
            reduction="sum",
        )
        for who, model in (("policy", policy), ("ref", ref))
        for side in ("chosen", "rejected")
    }
h = pt.margin(
    logp["policy", "chosen"],
    logp["policy", "rejected"],
    logp["ref", "chosen"],
    logp["ref", "rejected"],
)
print("margins h:", h.numpy().round(3))
print(
    f"DPO loss: trainer {float(trainer_loss):.6f}   by hand {float(pt.dpo_loss(h, BETA).mean()):.6f}"
)
print(
    f"TRL's rewards/margins = beta * mean(h): trainer {float(trainer_metrics['rewards/margins']):.6f}   "
    f"by hand {BETA * float(h.mean()):.6f}"
)
print(f"IPO loss on the same pairs (tau = {TAU}): {float(pt.ipo_loss(h, TAU).mean()):.6f}")

# %% [markdown]
# The two agree to float32 round-off: the language model's objective *is* the toy's loss applied
# to sequence-level margins. (TRL's `DPOTrainer` averages token log-probs for `loss_type="ipo"`;
# here the reduction is explicit and the bridge uses sums, the theory's form.)
#
# ## 4. Train DPO and IPO, and compare with the exact prediction
#
# `run_bridge` does the whole experiment: measure the reference's class distribution
# $\mu_\text{class}$ from samples (with Wilson intervals), solve the toy exactly for that
# $\mu_\text{class}$, build an offline dataset from $\mu$, train with `lm.trainer`, and estimate
# the trained policy's class distribution from fresh samples.

# %%
results = {
    "dpo": run_bridge(
        "dpo",
        P=P,
        beta=BETA,
        other_loses=DPO_OTHER_LOSES,
        model=ref,
        tokenizer=tok,
        run_dir=runs / "dpo",
        **SIZES,
    ),
    "ipo": run_bridge(
        "ipo",
        P=P,
        tau=TAU,
        other_loses=DPO_OTHER_LOSES,
        model=ref,
        tokenizer=tok,
        run_dir=runs / "ipo",
        **SIZES,
    ),
}
for result in results.values():
    print(format_bridge_summary(result), end="\n\n")

# %% [markdown]
# Read the table row by row: `mu_class` is the class distribution *before* training, `final` the
# one *after*, `prediction` where the exact toy says offline training on this data must end up.
# The total variation between `final` and `prediction` is the bridge's test. In smoke mode (a few
# steps on the tiny model) it is far from zero: the run has barely started.
#
# ## 5. The run log, with TRL's metric names
#
# Each step is one JSON line in `run.jsonl`; `run_log_frame` reads it into pandas. The names are
# TRL's: `rewards/chosen` is $\beta(\log\pi(y_w) - \log\mu(y_w))$, `rewards/margins` their
# difference, `rewards/accuracies` the fraction of pairs with a positive margin.

# %%
frame = run_log_frame(results["dpo"].log_path).dropna(subset=["loss"])  # step 0: evaluation only
columns = [
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
]
frame[columns].round(4)

# %%
run_log_curves(
    {name: r.log_path for name, r in results.items()},
    ["loss", "rewards/margins", "win_rate"],
    titles=["loss", "rewards/margins", "win rate against the reference (judge)"],
)

# %% [markdown]
# ## 6. Before, after and predicted, on the simplex
#
# Saved beside their run logs (`save_bridge_run`), the two runs go into the bridge explorer of
# notebook `03_bridge`: the exact toy trajectory from $\mu_\text{class}$ (blue), the class
# distributions logged during training (orange, by step), $\mu_\text{class}$ (before), the
# prediction (star) and the final estimate (after, with per-class Wilson intervals). The simplex
# renormalises over the three fruits; the status line gives the "other" mass.

# %%
from prefopt_toy.lm.bridge import bridge_explorer, save_bridge_run

for name, result in results.items():
    save_bridge_run(result, runs / name)  # bridge.json beside the run log
bridge_explorer(runs)

# %% [markdown]
# ## Summary
#
# - `lm.objectives` applies the toy's `dpo_loss` and `ipo_loss` to sequence-level margins: the same
#   function objects, checked on a batch by hand.
# - Offline DPO and IPO on a lifted game have exact class-level targets: `rlhf_optimum` and
#   `ipo_optimum` of the class game at $\mu_\text{class}$, with pairs drawn from $\mu$.
# - The run log uses TRL's metric names, so curves read like TRL's.
#
# ## Exercises
#
# 1. Run with `PREFOPT_SMOKE` unset (more steps, the small model). How does the total variation to
#    the prediction compare with the largest Wilson half-width of the final estimate? (Neither run
#    has converged at this size: which one is closer, and why is DPO slower?)
# 2. Set `other_loses = 1.0` for DPO. Why does `rlhf_optimum` refuse, and what does DPO on GPT-2 do
#    with the "other" completions instead?
# 3. Repeat the hand check of section 3 with `reduction="mean"` (TRL's IPO convention). Which
#    margin does the IPO loss see, and why does its minimiser change?
