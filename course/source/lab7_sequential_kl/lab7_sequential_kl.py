# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 7: the sequential KL on the token tree (TDPO)
#
# **What this lab teaches.** A language model writes one token at a time, so a policy is a
# next-token distribution at every prefix. TDPO (Zeng et al., arXiv:2404.11999v5) adds to DPO's
# margin a KL computed *at every token*: the sequential KL. On an exact token tree (every sequence
# of a tiny vocabulary enumerated) you compute a sequence's probability from the per-prefix tables,
# the per-prefix KL and the sequential KL, write TDPO1 and TDPO2 (with TDPO2's stop-gradient),
# then measure what the token-level KL changes against sequence-level DPO.
#
# **Equations.** A sequence $y$ passes through the prefixes $s_t = y_{<t}$, $t = 1 .. |y|$; the
# last token of a sequence that stops is the end token EOS.
#
# - $\pi(y) = \prod_{t=1}^{|y|} \pi(y_t \mid s_t)$, and $u = \log\frac{\pi(y_w)}{\mu(y_w)} - \log\frac{\pi(y_l)}{\mu(y_l)}$ is DPO's margin.
# - $\mathrm{SeqKL}(y) = \sum_{t=1}^{|y|} KL\bigl(\mu(\cdot \mid s_t) \,\|\, \pi(\cdot \mid s_t)\bigr)$, reference first
#   (the official code's order), at every position, the one that emits EOS included.
# - TDPO1: $-\log\sigma\bigl(\beta[u - (\mathrm{SeqKL}(y_l) - \mathrm{SeqKL}(y_w))]\bigr)$; TDPO2:
#   $-\log\sigma\bigl(\beta[u - \alpha(\mathrm{SeqKL}(y_l) - \mathrm{sg}[\mathrm{SeqKL}(y_w)])]\bigr)$, with
#   $\mathrm{sg}$ the stop-gradient.
#
# **How the lab works.** As in the other labs: fill in each cell marked `# YOUR CODE`, run the
# check after it. Grading adds hidden tests on other trees and pairs, which fail an answer that
# calls the library's own implementation (`pt.TokenTree` methods, `prefopt_toy.tokens.prefix_kl`,
# `pt.tdpo_loss`, `pt.kl`, the token dynamics). Reading time: about 30 minutes.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
STEPS = 400 if SMOKE else 1500  # exact DPO / TDPO2 steps (both have converged by 400)
BETA, ALPHA = 0.5, 0.5

# %%
import torch
import torch.nn.functional as F

import prefopt_toy as pt
from prefopt_toy import labs
from prefopt_toy.dynamics import tdpo, token_dpo
from prefopt_toy.tokens import lifted_game

tree = pt.TokenTree(3, 3)  # tokens 0 and 1, EOS = 2; at most 3 tokens: 15 sequences, 7 prefixes
mu = tree.uniform_table()  # the reference: uniform next-token distribution at every prefix
pi = torch.softmax(
    torch.randn(tree.table_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
    -1,
)
mu_next, pi_next = labs.next_token_tables(tree, mu), labs.next_token_tables(tree, pi)
print("prefixes:", tree.prefixes)
print("sequences:", tree.sequences)

# %% [markdown]
# A policy is a dictionary `{prefix: next-token probabilities}`: `pi_next[(0,)]` is
# $\pi(\cdot \mid 0)$, a tensor of 3 probabilities (token 0, token 1, EOS), and `pi_next[()]` the
# distribution of the first token. A sequence is a tuple: `(2,)` stops at once, `(0, 1, 2)` writes
# two tokens then EOS, `(0, 1, 1)` is cut at the maximum length (no EOS).
#
# ## Exercise 7a: the probability of a sequence
#
# Write `sequence_probability(next_token, y)`: $\pi(y) = \prod_t \pi(y_t \mid y_{<t})$, the
# product of `next_token[y[:t]][y[t]]` over the positions of `y` (a 0-d float64 tensor).


# %% nbgrader={"grade": false, "grade_id": "ex7a_answer", "locked": false, "schema_version": 3, "solution": true}
def sequence_probability(next_token, y):
    # YOUR CODE (exercise 7a): multiply next_token[y[:t]][y[t]] over the positions t of y
    ### BEGIN SOLUTION
    p = torch.ones((), dtype=torch.float64)
    for t, token in enumerate(y):
        p = p * next_token[y[:t]][token]
    return p
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex7a", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_sequence_probability(sequence_probability)
### BEGIN HIDDEN TESTS
labs.grading.grade_sequence_probability(sequence_probability)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: a distribution over sequences
#
# The tables define a distribution over the 15 sequences: the probabilities sum to 1. Under the
# uniform reference the sequence that stops at once has $1/3$, each long one $1/27$.

# %%
for name, nxt in [("mu", mu_next), ("pi", pi_next)]:
    probs = torch.stack([sequence_probability(nxt, y) for y in tree.sequences])
    print(f"{name}: {[round(p, 4) for p in probs.tolist()]}  sum {float(probs.sum()):.12f}")

# %% [markdown]
# ## Exercise 7b: the KL at one prefix
#
# Write `prefix_kl(mu_s, pi_s)`: $KL(\mu(\cdot|s) \,\|\, \pi(\cdot|s)) = \sum_v \mu(v|s)\log\frac{\mu(v|s)}{\pi(v|s)}$
# for two next-token distributions of one prefix. The reference comes first, as in TDPO's code.


# %% nbgrader={"grade": false, "grade_id": "ex7b_answer", "locked": false, "schema_version": 3, "solution": true}
def prefix_kl(mu_s, pi_s):
    # YOUR CODE (exercise 7b): sum over tokens of mu_s * log(mu_s / pi_s)
    ### BEGIN SOLUTION
    return (mu_s * (mu_s.log() - pi_s.log())).sum()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex7b", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_prefix_kl(prefix_kl)
### BEGIN HIDDEN TESTS
labs.grading.grade_prefix_kl(prefix_kl)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7c: the sequential KL
#
# Write `sequential_kl(mu_next, pi_next, y)`: $\mathrm{SeqKL}(y) = \sum_{t} KL(\mu(\cdot|y_{<t}) \,\|\, \pi(\cdot|y_{<t}))$,
# your `prefix_kl` at every prefix on the path of `y`, from the root `()` to the prefix that emits
# the last token (EOS included).


# %% nbgrader={"grade": false, "grade_id": "ex7c_answer", "locked": false, "schema_version": 3, "solution": true}
def sequential_kl(mu_next, pi_next, y):
    # YOUR CODE (exercise 7c): add prefix_kl at the prefixes y[:t], t = 0 .. len(y) - 1
    ### BEGIN SOLUTION
    return sum(prefix_kl(mu_next[y[:t]], pi_next[y[:t]]) for t in range(len(y)))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex7c", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_sequential_kl(sequential_kl)
### BEGIN HIDDEN TESTS
labs.grading.grade_sequential_kl(sequential_kl)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: every sequence pays the KL at the root
#
# `(2,)` pays only the root's KL; a longer sequence adds the KL of each prefix it passes through.
# Two sequences that share a prefix share its KL: only the rest of their paths can make their
# sequential KLs differ, which is all that TDPO's KL term sees (`(0, 1, 2)` and `(0, 1, 1)` pass
# through the same prefixes, so theirs are equal).

# %%
for y in [(2,), (0, 2), (0, 1, 2), (0, 1, 1), (1, 1, 1)]:
    print(f"y={str(y):<10} SeqKL {float(sequential_kl(mu_next, pi_next, y)):.4f}")
print(f"KL at the root {float(prefix_kl(mu_next[()], pi_next[()])):.4f}")

# %% [markdown]
# ## Exercise 7d: the TDPO1 loss
#
# Write `tdpo1_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, seqkl_chosen,
# seqkl_rejected, beta)`: $-\log\sigma\bigl(\beta[u - (\mathrm{SeqKL}(y_l) - \mathrm{SeqKL}(y_w))]\bigr)$
# per pair, shape `(B,)`, with $u = (\log\pi(y_w) - \log\mu(y_w)) - (\log\pi(y_l) - \log\mu(y_l))$.
# Use `F.logsigmoid` (the check has margins of $\pm 10^3$) and torch operations only: the check
# also differentiates your loss in both sequential KLs.


# %% nbgrader={"grade": false, "grade_id": "ex7d_answer", "locked": false, "schema_version": 3, "solution": true}
def tdpo1_loss(
    logp_chosen, logp_rejected, ref_chosen, ref_rejected, seqkl_chosen, seqkl_rejected, beta
):
    # YOUR CODE (exercise 7d): the margin u, then -log sigmoid(beta [u - (SeqKL_l - SeqKL_w)])
    ### BEGIN SOLUTION
    u = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return -F.logsigmoid(beta * (u - (seqkl_rejected - seqkl_chosen)))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex7d", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_tdpo1_loss(tdpo1_loss)
### BEGIN HIDDEN TESTS
labs.grading.grade_tdpo1_loss(tdpo1_loss)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 7e: the TDPO2 loss and its stop-gradient
#
# Write `tdpo2_loss(..., beta, alpha)` (the arguments of 7d, then `alpha`):
# $-\log\sigma\bigl(\beta[u - \alpha(\mathrm{SeqKL}(y_l) - \mathrm{sg}[\mathrm{SeqKL}(y_w)])]\bigr)$.
# The stop-gradient $\mathrm{sg}$ is `.detach()`: the chosen response's KL counts in the value, but
# no gradient flows through it.


# %% nbgrader={"grade": false, "grade_id": "ex7e_answer", "locked": false, "schema_version": 3, "solution": true}
def tdpo2_loss(
    logp_chosen, logp_rejected, ref_chosen, ref_rejected, seqkl_chosen, seqkl_rejected, beta, alpha
):
    # YOUR CODE (exercise 7e): as 7d with alpha on the KL difference and seqkl_chosen detached
    ### BEGIN SOLUTION
    u = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)
    return -F.logsigmoid(beta * (u - alpha * (seqkl_rejected - seqkl_chosen.detach())))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex7e", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_tdpo2_loss(tdpo2_loss)
### BEGIN HIDDEN TESTS
labs.grading.grade_tdpo2_loss(tdpo2_loss)
### END HIDDEN TESTS

# %% [markdown]
# ## Look: the same value, another gradient
#
# With $\alpha = 1$ TDPO2's value *is* TDPO1's, but its gradient is not: TDPO1 raises the chosen
# response's KL (its gradient in $\mathrm{SeqKL}(y_w)$ is negative, so a descent step increases
# it), TDPO2 leaves it alone. TDPO2's update is therefore not the gradient of any one loss.

# %%
pair = [torch.tensor([x], dtype=torch.float64) for x in (-1.0, -3.0, -1.5, -2.0)]
kl_w = torch.tensor([0.2], dtype=torch.float64, requires_grad=True)
kl_l = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)
for name, loss in [
    ("TDPO1", tdpo1_loss(*pair, kl_w, kl_l, 0.1)),
    ("TDPO2, alpha=1", tdpo2_loss(*pair, kl_w, kl_l, 0.1, 1.0)),
]:
    g_w, g_l = torch.autograd.grad(loss.sum(), [kl_w, kl_l], materialize_grads=True)
    print(
        f"{name:<15} loss {float(loss.detach()):.6f}  d/dSeqKL(y_w) {float(g_w):+.5f}  d/dSeqKL(y_l) {float(g_l):+.5f}"
    )

# %% [markdown]
# ## Look: DPO and TDPO2 on a judge that likes length
#
# The judge compares only lengths: Bradley-Terry with class scores 0, 1, 2 for 1, 2, 3 tokens, so
# longer wins. Exact sequence-level DPO and exact TDPO2 ($\beta = 0.5$, $\alpha = 0.5$) from the
# uniform reference, pairs from $\mu$; at the end, the mass per length and, with your `prefix_kl`,
# the KL at the root.

# %%
P = lifted_game(tree, pt.bradley_terry([0.0, 1.0, 2.0]), "length")
runs = {
    "DPO": token_dpo(tree, P, mu, beta=BETA, steps=STEPS),
    "TDPO2": tdpo(tree, P, mu, beta=BETA, steps=STEPS, variant="tdpo2", alpha=ALPHA),
}
ends = {name: labs.next_token_tables(tree, run.log_tables[-1].exp()) for name, run in runs.items()}
for name, end in ends.items():
    mass = runs[name].class_mass("length")[-1]
    print(
        f"{name:<6} mass by length 1/2/3 {[round(m, 3) for m in mass.tolist()]}  "
        f"root KL {float(prefix_kl(mu_next[()], end[()])):.4f}  pi(EOS | root) {float(end[()][2]):.4f}"
    )

# %% [markdown]
# ## Exercise 7f: what TDPO2 holds back
#
# DPO follows the judge: almost all the mass goes to the longest sequences, and the first token's
# distribution moves far from the reference. Write `expected_sequential_kl(mu_next, pi_next,
# sequences)`: $E_{y \sim \pi}\mathrm{SeqKL}(y) = \sum_y \pi(y)\,\mathrm{SeqKL}(y)$ over `sequences`,
# with your 7a and 7c. The check runs it on both end points above and prints the comparison; the
# cell after it answers the question: by what factor does TDPO2 cut the expected sequential KL?


# %% nbgrader={"grade": false, "grade_id": "ex7f_answer", "locked": false, "schema_version": 3, "solution": true}
def expected_sequential_kl(mu_next, pi_next, sequences):
    # YOUR CODE (exercise 7f): sum over y of sequence_probability(pi_next, y) * sequential_kl(...)
    ### BEGIN SOLUTION
    total = torch.zeros((), dtype=torch.float64)
    for y in sequences:
        total = total + sequence_probability(pi_next, y) * sequential_kl(mu_next, pi_next, y)
    return total
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ex7f", "locked": true, "points": 2, "schema_version": 3, "solution": false}
labs.check_expected_sequential_kl(expected_sequential_kl)
### BEGIN HIDDEN TESTS
labs.grading.grade_expected_sequential_kl(expected_sequential_kl)
### END HIDDEN TESTS

# %%
expected = {
    name: float(expected_sequential_kl(mu_next, end, tree.sequences)) for name, end in ends.items()
}
print(f"E_pi SeqKL: DPO {expected['DPO']:.4f}, TDPO2 {expected['TDPO2']:.4f}")
print(f"TDPO2 cuts it by a factor {expected['DPO'] / expected['TDPO2']:.2f}")

# %% [markdown]
# ## Summary and questions
#
# - A policy on a tree is a table per prefix; a sequence's probability is the product along its
#   path, EOS included, and its sequential KL the sum of the per-prefix KLs along the same path.
# - TDPO puts $\mathrm{SeqKL}(y_l) - \mathrm{SeqKL}(y_w)$ inside DPO's sigmoid; TDPO2 weights it by
#   $\alpha$ and stops the gradient through the chosen response's KL.
# - On a judge that likes length, DPO moves almost all the mass to the longest sequences; TDPO2
#   keeps about 5 times as much on stopping at once, and less than half of DPO's KL at the root
#   and in expectation.
#
# Questions:
# 1. Show that $E_{y\sim\pi}\mathrm{SeqKL}(y) = \sum_s d_\pi(s)\,KL(\mu(\cdot|s) \| \pi(\cdot|s))$,
#    with $d_\pi(s)$ the probability that generation passes through $s$
#    (`tree.visit_probabilities`). Which prefix has $d_\pi = 1$, and why does TDPO act there first?
# 2. On a tree with `max_length = 1`, why is TDPO1 exactly DPO (Zeng et al., Sec. 4)? Is TDPO2?
# 3. Sequence-level DPO reaches $\mu_{seq}\exp(\hat r/\beta)/Z$ whatever the tables. Why does
#    TDPO2's end point have no such closed form? (Think of the Look after 7e.)
