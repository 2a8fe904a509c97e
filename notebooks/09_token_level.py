# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Token-level preference optimisation: DPO, TDPO1 and TDPO2 on a token tree
#
# **What this notebook teaches.** A language model is a next-token table over prefixes, not a
# distribution over answers; on a tree small enough to enumerate every answer, we compute exactly
# what changes when the KL is taken token by token. The tree and its sequence probabilities; the
# chain rule that turns per-prefix KLs into the sequence KL, and what TDPO's sequential KL is
# instead; DPO, TDPO1 and TDPO2 run exactly on one tree, side by side (nobody had seen TDPO1
# against TDPO2 on a tree: Vance0124 #7, #8); when TDPO1 is DPO; and TDPO2's stop-gradient, whose
# update vanishes where the gradient of its loss does not.
#
# **Equations covered.** Sequence probability $\pi(y) = \prod_t \pi(y_t \mid s_t)$,
# $s_t = (x, y_{<t})$. The chain rule
# $\mathrm{KL}(\pi_{seq}\|\mu_{seq}) = \sum_s d_\pi(s)\,\mathrm{KL}(\pi(\cdot|s)\|\mu(\cdot|s))$,
# $d_\pi(s)$ the probability that generation passes through $s$. TDPO's sequential KL
# $\mathrm{SeqKL}(y) = \sum_t \mathrm{KL}(\mu(\cdot|s_t)\|\pi(\cdot|s_t))$ (reference first). With
# $u = \log\frac{\pi(y_w)}{\mu(y_w)} - \log\frac{\pi(y_l)}{\mu(y_l)}$: TDPO1
# $-\log\sigma(\beta[u - (\mathrm{SeqKL}(y_l) - \mathrm{SeqKL}(y_w))])$ and TDPO2
# $-\log\sigma(\beta[u - \alpha(\mathrm{SeqKL}(y_l) - \mathrm{sg}[\mathrm{SeqKL}(y_w)])])$
# (Zeng et al., arXiv:2404.11999v5, Sec. 4; official code `trainers.py::tdpo_loss` @ 2a736ec).
#
# **Reading time:** about 30 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 150 if SMOKE else 1000  # gradient steps of each exact run
VOCAB, MAX_LENGTH = 3, 3  # two content tokens (a, b) and the end token; at most 3 tokens
BETA = 0.5
ALPHA = 0.5  # TDPO2's KL weight (the official default)
STRENGTH = 1.0  # the length judge: Bradley-Terry scores STRENGTH * (0, 1, 2) by length

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.dynamics import tdpo, token_dpo, token_population_loss, token_update_field
from prefopt_toy.tokens import lifted_game
from prefopt_toy.widgets.token_explorer import (
    length_game,
    prefix_labels,
    sequence_labels,
    token_summary,
)

pd.set_option("display.float_format", "{:.3f}".format)  # one format per table
tree = pt.TokenTree(VOCAB, MAX_LENGTH)
mu = tree.uniform_table()  # the reference: every next token equally likely at every prefix

# %% [markdown]
# ## 1. The tree and its sequence probabilities
#
# With tokens `a`, `b` and the end token (written `|`), an answer stops when it emits `|` or when
# it holds 3 tokens (it is then truncated, as a model cut off at its maximum length). There are 15
# answers and 7 *prefixes*, the places where the policy chooses a next token: the root, `a`, `b`,
# `aa`, `ab`, `ba`, `bb`. A policy is a table of 7 rows of next-token probabilities, and an
# answer's probability is the product along its path. A uniform table is **not** uniform over
# answers: stopping at once has probability 1/3, each 3-token answer 1/27.

# %%
mu_seq = tree.sequence_probs(mu.log())
answers = pd.DataFrame(
    {"tokens (EOS counted)": tree.lengths.numpy(), "mu(y)": mu_seq.numpy()},
    index=sequence_labels(tree),
)
answers.T.style.format("{:.3g}")

# %% [markdown]
# The map from tables to answer distributions is a bijection (up to a constant per row): the 7
# rows have 7 x 2 = 14 free numbers, the 15 answers 14 as well. `tree.table_from_sequences`
# inverts it; from any full-support answer distribution it finds the one table that produces it.

# %%
rng = np.random.default_rng(0)
target = torch.tensor(rng.dirichlet(np.ones(tree.n_sequences)), dtype=torch.float64)
table = tree.table_from_sequences(target)
print("max |pi_seq(table) - target| =", float((tree.sequence_probs(table) - target).abs().max()))

# %% [markdown]
# ## 2. Per-prefix KL against the sequence KL
#
# RLHF's KL is between answer distributions, $\mathrm{KL}(\pi_{seq}\|\mu_{seq})$. By the chain
# rule it is a sum over prefixes: the KL of the next-token distributions at $s$, weighted by how
# often $\pi$ passes through $s$. TDPO's KL is a different object: for one answer it sums the
# *reference-first* KL $\mathrm{KL}(\mu(\cdot|s_t)\|\pi(\cdot|s_t))$ at every prefix along that
# answer (EOS's position included), unweighted. Averaged over answers from $\mu$ it is the other
# sequence KL, $\mathrm{KL}(\mu_{seq}\|\pi_{seq})$ (the chain rule again, from $\mu$'s side);
# averaged over answers from $\pi$ it is neither. We check all three numerically, at the random
# table above, against a plain enumeration over the 15 answers.

# %%
p, q = tree.sequence_probs(table), mu_seq
seqkl = tree.sequential_kl(mu.log(), table)  # SeqKL(y) of each answer, reference first
checks = {
    "KL(pi_seq||mu_seq), enumerated": float((p * (p / q).log()).sum()),
    "sum_s d_pi(s) KL(pi||mu)(s)": float(
        (tree.visit_probabilities(table) * pt.tokens.prefix_kl(tree, table, mu.log())).sum()
    ),
    "KL(mu_seq||pi_seq), enumerated": float((q * (q / p).log()).sum()),
    "E_{y~mu} SeqKL(y)": float((q * seqkl).sum()),
    "E_{y~pi} SeqKL(y)": float((p * seqkl).sum()),
}
pd.Series(checks).to_frame("value")

# %% [markdown]
# The first two agree, and so do the next two, to round-off; the last is a third number. So
# TDPO's KL term is not the RLHF KL with another name: it is reference-first, and it counts a
# prefix once per answer through it, however rarely $\pi$ goes there. A prefix that $\pi$ almost
# never visits weighs nothing in $\mathrm{KL}(\pi_{seq}\|\mu_{seq})$ but counts fully in the
# SeqKL of every answer through it.
#
# ## 3. DPO, TDPO1 and TDPO2 on one tree
#
# The judge reads only the length: of two answers the longer wins with probability
# $\sigma(\text{STRENGTH}\cdot\Delta\text{length})$ (`length_game`, a `lifted_game` on the
# length classes). Pairs are drawn from $\mu_{seq}$, labels are soft, and each method takes the
# exact expected gradient step (`pt.dynamics.token_dpo`, `tdpo`). Sequence-level DPO has a closed
# form, $\mu_{seq}e^{\hat r/\beta}/Z$ (`run.sequence_optimum()`); TDPO has none.

# %%
P = length_game(tree, STRENGTH)
runs = {
    "dpo": token_dpo(tree, P, mu, beta=BETA, steps=STEPS),
    "tdpo1": tdpo(tree, P, mu, beta=BETA, steps=STEPS, variant="tdpo1"),
    "tdpo2": tdpo(tree, P, mu, beta=BETA, steps=STEPS, variant="tdpo2", alpha=ALPHA),
}
start = token_dpo(tree, P, mu, beta=BETA, steps=0)  # zero steps: the reference itself
summary = pd.DataFrame(
    {"reference": token_summary(start)} | {n: token_summary(r) for n, r in runs.items()}
)
summary.T

# %% [markdown]
# Where the mass goes, step by step (log scale in steps), by length:

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True, layout="constrained")
for ax, (name, run) in zip(axes, runs.items()):
    mass = pd.DataFrame(run.class_mass("length").numpy(), columns=["1 token", "2", "3"])
    mass.index = mass.index + 1  # step 0 at x = 1 on the log axis
    mass.plot(ax=ax, logx=True, title=name, xlabel="step + 1", ylim=(0, 1))
axes[0].set_ylabel("mass by length")
plt.show()

# %% [markdown]
# All three move mass to long answers. DPO lands on its closed form (checked below); TDPO1 ends
# close to it; TDPO2 keeps about five times DPO's mass on stopping at once and about half its
# sequence KL (full mode: 0.063 against 0.013, and 0.283 against 0.557). Per prefix, against the
# reference (left: TDPO's KL; right: the next-token entropy, $\log 3 \approx 1.099$ where the
# policy did not move):

# %%
print(
    "DPO's end - closed form:",
    float((runs["dpo"].sequence_probs[-1] - runs["dpo"].sequence_optimum()).abs().max()),
)
fig, (ax_kl, ax_h) = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
kl = pd.DataFrame({n: r.prefix_kl[-1].numpy() for n, r in runs.items()}, index=prefix_labels(tree))
kl.clip(lower=0).plot.bar(ax=ax_kl, ylabel="KL(mu(.|s) || pi(.|s))", rot=0)
ent = pd.DataFrame(
    {n: r.prefix_entropy[-1].numpy() for n, r in runs.items()}, index=prefix_labels(tree)
)
ent.plot.bar(ax=ax_h, ylabel="entropy of pi(.|s)", rot=0, ylim=(0.6, 1.15))
plt.show()

# %% [markdown]
# The judge only reads length, so every answer of 3 tokens ties: the depth-2 prefixes (`aa` ...
# `bb`) keep the reference's next-token distribution under all three methods (KL 0, entropy
# $\log 3$). All the movement is at the root (stop or go on) and at `a` and `b`; TDPO1 differs
# visibly from DPO at the root only. In TDPO1's difference $\mathrm{SeqKL}(y_l) - \mathrm{SeqKL}(y_w)$
# the root's KL cancels (every answer passes through the root once), so TDPO1 never charges for
# moving the root. TDPO2 differentiates $\mathrm{SeqKL}(y_l)$ alone, where it does not cancel:
# every pair charges for moving the root, and TDPO2 moves it least.
#
# ## 4. TDPO1 is DPO where the sequential KLs are equal
#
# TDPO1's margin is $u - (\mathrm{SeqKL}(y_l) - \mathrm{SeqKL}(y_w))$: where every answer has the
# same SeqKL it is DPO's $u$. That happens when the policy differs from $\mu$ at the root only
# (every answer passes through the root once). There the two losses *and* their gradients agree
# (the gradient of $\mathrm{KL}(\mu\|\pi)$ at a row where $\pi = \mu$ is 0); change a deeper row
# and they part.

# %%
root_only = mu.log().clone()
root_only[0] = torch.tensor([0.3, 0.1, -0.4])  # a new root row; the other rows stay mu's
deeper = root_only.clone()
deeper[1] = torch.tensor([0.5, 0.0, 0.0])  # and a new row at prefix "a"
rows = {}
for name, x in (("root only", root_only), ("root and 'a'", deeper)):
    loss = {
        f"{a} loss": float(token_population_loss(tree, P, mu, x, algorithm=a, beta=BETA))
        for a in ("dpo", "tdpo1")
    }
    field = {
        a: token_update_field(tree, P, mu, x, algorithm=a, beta=BETA) for a in ("dpo", "tdpo1")
    }
    rows[name] = {
        **loss,
        "max |field difference|": float((field["dpo"] - field["tdpo1"]).abs().max()),
    }
pd.DataFrame(rows).T.style.format("{:.6g}")

# %% [markdown]
# The runs of section 3 start at $\mu$, where every SeqKL is 0 and every KL gradient too: the
# first step of TDPO1 is DPO's. From the second step the deeper rows have moved, the SeqKLs differ
# and the runs part (the largest gap between the two answer distributions, by step):

# %%
gap = (runs["tdpo1"].sequence_probs - runs["dpo"].sequence_probs).abs().max(-1).values
steps_shown = [s for s in (0, 1, 2, 5, 20, 100, STEPS) if s <= STEPS]
pd.Series(
    gap[steps_shown].numpy(), index=steps_shown, name="max_y |tdpo1 - dpo|"
).to_frame().T.style.format("{:.1e}")

# %% [markdown]
# ## 5. TDPO2's stop-gradient: its update vanishes, its loss's gradient does not
#
# TDPO2 detaches $\mathrm{SeqKL}(y_w)$: the value counts it, the gradient does not. So TDPO2's
# update is not the gradient of the loss it reports, and its end point is where the *update
# field* vanishes (`token_update_field`), not a minimum of that loss. At TDPO2's end we compare
# the field with the true gradient of the reported value, by central finite differences:

# %%
end = runs["tdpo2"].log_tables[-1]
settings = {"algorithm": "tdpo2", "beta": BETA, "alpha": ALPHA}
field = token_update_field(tree, P, mu, end, **settings)
value = lambda x: float(token_population_loss(tree, P, mu, x, **settings))  # noqa: E731
grad = torch.zeros_like(end)
for i, j in np.ndindex(*end.shape):
    step = torch.zeros_like(end)
    step[i, j] = 1e-6
    grad[i, j] = (value(end + step) - value(end - step)) / 2e-6
print(
    f"|update field| = {float(field.norm()):.1e}, |gradient of the value| = {float(grad.norm()):.1e}"
)
print(
    f"value at the end {value(end):.6f}; one step down its gradient {value(end - 5.0 * grad):.6f}"
)

# %% [markdown]
# The field is zero to round-off while the value's gradient is not, and a step down
# that gradient lowers the reported loss: TDPO2 stops at a point its own loss would leave. The
# missing term is the gradient of $\alpha\,\mathrm{SeqKL}(y_w)$ inside the sigmoid: the
# official code (`chosen_position_kl.detach()`) drops it, so the chosen answer is not pushed away
# from the reference, which is what TDPO1's symmetric form does.
#
# ## 6. Explore
#
# Pick a method, move beta, TDPO2's alpha, or the judge's strength (negative: shorter answers
# win). Left: the end's probability of every answer (grey outline: the reference; black ticks:
# sequence-level DPO's closed form). Right, per prefix: TDPO's KL and the visit-weighted reverse
# KL, whose bars sum to $\mathrm{KL}(\pi_{seq}\|\mu_{seq})$. Each move reruns the method exactly
# (200 steps; a setting seen before is kept).

# %%
widgets.token_explorer(
    tree, mu, method="tdpo2", beta=BETA, alpha=ALPHA, strength=STRENGTH, steps=200
)

# %% [markdown]
# ## Summary
#
# - A tree of next-token tables represents every full-support distribution over answers; a
#   uniform table is not uniform over answers.
# - Chain rule: $\mathrm{KL}(\pi_{seq}\|\mu_{seq}) = \sum_s d_\pi(s)\mathrm{KL}(\pi\|\mu)(s)$.
#   TDPO's SeqKL is reference-first and unweighted along one answer; its $\mu$-average is
#   $\mathrm{KL}(\mu_{seq}\|\pi_{seq})$, its $\pi$-average neither sequence KL.
# - On a length judge, DPO reaches $\mu_{seq}e^{\hat r/\beta}/Z$; TDPO1 ends near it; TDPO2 stays
#   nearer the reference (about 5x DPO's mass on stopping at once, half the sequence KL, higher
#   next-token entropy at the prefixes that move).
# - TDPO1 is DPO where every SeqKL is equal (a policy that moved only at the root), value and
#   gradient; from $\mu$ the first step is DPO's.
# - TDPO2's update field vanishes at its end point; the gradient of its reported loss does not.
#
# ## Exercises
#
# 1. Set `STRENGTH = -1.0` (short answers win) and rerun sections 3 and 4. Which method keeps the
#    most mass on 3-token answers now, and which prefix carries TDPO's KL?
# 2. Sweep TDPO2's `alpha` over 0, 0.5, 1 and 2. What is TDPO2 at `alpha = 0`? How do
#    `pi(stop at root)` and `KL(pi_seq||mu_seq)` move with alpha?
# 3. Prove that $\mathbb{E}_{y\sim\mu}\mathrm{SeqKL}(y) = \mathrm{KL}(\mu_{seq}\|\pi_{seq})$ for
#    every table, and check it on five random tables.
# 4. Use a judge that reads only the first token,
#    `lifted_game(tree, pt.bradley_terry([1.0, 0.0, 0.5]), "first_token")`. Run DPO and TDPO1:
#    why do they agree step for step? Does TDPO2 agree with them too?
