# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Symbolic derivations, checked by sympy and by the library
#
# **What this notebook teaches.** The closed forms used all over this suite (DPO's loss, the IPO
# optimum, the regularised Nash fixed point, the Nash-MD step, ...) are short derivations. Here each
# one is written out step by step with `sympy`, then checked twice:
#
# 1. **symbolically**: the difference between what the steps derive and the claimed closed form is
#    reduced by exact sympy rewrites; it must be *exactly* `0`, for every value of the symbols
#    (policies and preference matrices of 3-action games are fully symbolic);
# 2. **numerically**: both sides are turned into numpy functions (`sympy.lambdify`) and compared
#    with the library (`pt.dpo_loss`, `pt.ipo_optimum`, `pt.regularized_nash`, `pt.nash_md`, ...)
#    at fixed points; the largest difference should be round-off, about `1e-15`.
#
# **Equations covered.** DPO from the RLHF closed form $\pi^* = \mu e^{r/\beta}/Z$;
# $\Psi$PO with $\Psi = \mathrm{logit}$ (RLHF/DPO) and $\Psi = \mathrm{id}$ (IPO);
# $\pi_{IPO} \propto \mu\, e^{P\nu/\tau}$; IPO's Bernoulli-label loss (Azar et al. Prop. 3);
# online IPO $\to \pi \propto \mu\, e^{P\pi/\tau}$; the Nash-MD step; IPO-MD's mixture at
# $\tau/(1-m)$ ($m$ the mixture weight); the cDPO margin $\log\frac{1-\varepsilon}{\varepsilon}/\beta$; GPO's per-pair margins.
#
# **Reading time:** about 25 minutes. All code lives in `prefopt_toy.symbolic`; read its source
# next to this notebook.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
# Every derivation builds and checks in well under a second, so smoke mode runs everything.
SHOW_STEPS = True  # set False to print only the verdicts

# %%
import sympy as sp

from prefopt_toy import symbolic

print(len(symbolic.DERIVATIONS), "derivations:", ", ".join(symbolic.DERIVATIONS))

# %% [markdown]
# ## How to read a derivation
#
# A `Derivation` holds `steps` (an explanation and the sympy expression it produces), `lemmas`
# (intermediate identities that are also checked) and the final `claim`, `lhs == rhs`:
# `lhs` is what the steps *derive*, `rhs` the closed form the paper states.
# `d.verify()` is `True` only when every entry of `d.residual()` is exactly 0;
# `d.numeric_check()` is the largest absolute difference from the library.
#
# `d.show()` typesets the steps in the papers' symbols ($\ell'(h)$, $\pi_{t+1}$,
# $\mathbb{E}_{y\sim\nu}$, ...), long sums wrapped over lines. Most claims hold for *generic*
# 3-action games, so their sympy form runs to hundreds of operations: `show()` then prints the claim
# as the paper states it and says that sympy reduced the difference to 0; `d.lhs` and `d.rhs` hold
# the full expressions if you want to look (`sp.count_ops(d.lhs)` tells you how big they are).
#
# One letter changes meaning between papers: the weight of $\mu$ in IPO-MD's and Nash-MD's
# geometric mixture $\pi^{1-m}\mu^m$ is $\beta$ in Calandriello et al. and Munos et al., but
# $\beta$ is DPO's KL strength everywhere else here. Like the library (`mixture`), this notebook
# calls it $m$.
#
# ## 1. DPO from the RLHF closed form
#
# RLHF's optimum is a Gibbs policy. Solving it for the reward gives
# $r(y) = \beta\log\frac{\pi(y)}{\mu(y)} + \beta\log Z$, and in the Bradley–Terry probability only
# reward *differences* appear, so the intractable partition function $Z$ cancels. The negative
# log-likelihood of a preference is then DPO's loss $-\log\sigma(\beta h)$.

# %%
d = symbolic.dpo_from_rlhf()
if SHOW_STEPS:
    d.show()
print(d.report())

# %% [markdown]
# ## 2. ΨPO: the logit gives RLHF/DPO, the identity gives IPO
#
# The ΨPO optimum is $\pi \propto \mu\exp(g/\tau)$ with $g(y) = \mathbb{E}_{y'\sim\nu}\Psi(P(y\succ y'))$.
# Under Bradley–Terry, $\mathrm{logit}\,\sigma(r_y - r_{y'}) = r_y - r_{y'}$, so $g = r - \mathbb{E}_\nu r$, and
# the constant disappears when normalising. With $\Psi$ the identity, $g = P\nu$: IPO. The numeric
# check compares with `pt.rlhf_optimum(pt.bradley_terry(r), ...)` and `pt.ipo_optimum`.

# %%
d = symbolic.psipo_special_cases()
if SHOW_STEPS:
    d.show()
print(d.report())

# %% [markdown]
# ## 3. IPO's optimum from the first-order condition
#
# The objective $\sum_y \pi(y)p(y) - \tau\,KL(\pi\|\mu)$ is strictly concave on the simplex (look at
# the Hessian in step 5), so the stationary point of the Lagrangian is the unique maximiser. Note
# that the multiplier $\lambda$ never needs to be found: it is a common factor that normalisation
# removes (the numeric check even evaluates the unsimplified expression at arbitrary $\lambda$).

# %%
d = symbolic.ipo_optimum_first_order()
if SHOW_STEPS:
    d.show()
print(d.report())

# %% [markdown]
# ## 4. IPO's loss with Bernoulli labels differs from Eq. (13) by a constant
#
# Azar et al. minimise a squared loss whose target uses the unknown win rates $p(y) = (P\nu)_y$
# (Eq. 13). In practice one only sees sampled labels $I$ (Eq. 16). Expanding the squares, the
# quadratic terms agree, and the linear terms agree *after averaging over* $\nu\otimes\nu$ (the
# lemma), so the two losses differ by a constant $C$ that does not depend on the policy: same
# minimiser. The library's own form (`pt.population_loss` with `pt.ipo_loss`, target $1/(2\tau)$,
# both orders of each pair) is lower by a further $1/(4\tau^2)$.

# %%
d = symbolic.ipo_bernoulli_labels()
if SHOW_STEPS:
    d.show()
print(d.report())

# %% [markdown]
# ## 5. Online IPO's stationary point is the regularised Nash equilibrium
#
# Online IPO draws its pairs from the current policy, with a stop-gradient. Differentiating the exact
# 3-action loss gives $\partial L/\partial a_k = 4 s_k[a_k - \mathbb{E}_s a - ((Ps)_k - \tfrac12)/\tau]$, which
# vanishes exactly when $\log\frac{\pi}{\mu} = P\pi/\tau + \text{const}$: the fixed-point equation
# of the regularised Nash equilibrium. The numeric check compares the formula with the library's
# autograd gradient, including at `pt.regularized_nash`, where both are zero.

# %%
d = symbolic.online_ipo_fixed_point()
if SHOW_STEPS:
    d.show()
print(d.report())

# %% [markdown]
# ## 6. The Nash-MD step in closed form
#
# Each Nash-MD step maximises $\eta\,\pi^\top P\pi_t^{\mu} - KL(\pi\|\pi_t^{\mu})$ against the geometric
# mixture $\pi_t^{\mu} \propto \pi_t^{1-m}\mu^m$ of the current iterate and the reference, with
# mixture weight $m = \eta\tau$. The Lagrange condition gives a Gibbs policy;
# in logs, $\log\pi_{t+1} = (1-\eta\tau)\log\pi_t + \eta\tau\log\mu + \eta P\pi_t^{\mu} + c$. The
# numeric check takes iterate 1 of `pt.nash_md` and compares the formula with iterate 2.

# %%
d = symbolic.nash_md_step()
if SHOW_STEPS:
    d.show()
print(d.report())

# %% [markdown]
# ## 7. IPO-MD's mixture is the regularised Nash at $\tau/(1-m)$
#
# IPO-MD samples from $q \propto \pi^{1-m}\mu^m$, with $m$ the mixture weight (`mixture` in
# `pt.ipo_md`; the paper's $\beta$). Raising $\pi \propto \mu e^{Pq/\tau}$ to the power $1-m$
# scales the exponent: $q \propto \mu\, e^{(1-m)Pq/\tau}$. The numeric check takes the mixture of
# `pt.ipo_md_fixed_point(P, mu, tau, m)` and compares with `pt.regularized_nash` at $\tau/(1-m)$,
# two independent solves.

# %%
d = symbolic.ipo_md_mixture()
if SHOW_STEPS:
    d.show()
print(d.report())

# %% [markdown]
# ## 8. Conservative DPO has a finite optimal margin
#
# With label smoothing $\varepsilon$ the per-pair loss is strictly convex and its derivative is
# $\beta(\sigma(\beta h) - (1-\varepsilon))$, so $h^* = \log\frac{1-\varepsilon}{\varepsilon}/\beta$.
# The library side is a numerical minimisation of `pt.dpo_loss(h, beta, label_smoothing=eps)`
# (scipy's `brentq` on its autograd derivative).

# %%
d = symbolic.cdpo_optimal_margin()
if SHOW_STEPS:
    d.show()
print(d.report())
h_star = sp.lambdify(d.arguments, d.rhs)
print(f"eps = 0.1, beta = 0.1: h* = {h_star(0.1, 0.1):.6f}   (plain DPO: h* = +inf)")

# %% [markdown]
# ## 9. GPO: per-pair optimal margins
#
# For a pair whose first response wins with probability $p$, the expected loss is
# $p f(\beta h) + (1-p) f(-\beta h)$. The logistic loss (DPO) targets $\mathrm{logit}(p)/\beta$,
# the squared loss (IPO with $\beta = 2\tau$) targets $(2p-1)/\beta$, which stays finite at $p = 1$,
# and the exponential loss targets $\mathrm{logit}(p)/(2\beta)$. The library's
# `pt.gpo_optimal_margin` returns the same margins $h^*$ (already divided by $\beta$).

# %%
d = symbolic.gpo_optimal_margins()
if SHOW_STEPS:
    d.show()
print(d.report())

# %% [markdown]
# ## Summary
#
# All sixteen closed forms reduce to an exact symbolic 0 and agree with the library to round-off:

# %%
for build in symbolic.DERIVATIONS.values():
    print(build().report())

# %% [markdown]
# **Exercises.**
#
# 1. Break a derivation on purpose: `dataclasses.replace(d, rhs=...)` with a sign flipped or a factor
#    dropped, then call `verify()` and `numeric_check()`. Which of the two catches which mistake?
# 2. In section 4, write the constant $C$ for a 2-action game by hand and compare it with
#    `sp.factor` of the sympy expression (substitute $\nu_2 = 1 - \nu_1$).
# 3. In section 6, set $\eta\tau = 1$: what does the mixture become, and why is the first Nash-MD
#    iterate then the offline IPO optimum with $\nu = \mu$?
# 4. Robust DPO (`pt.robust_dpo_loss`) has no finite optimal margin on a deterministic pair. Differentiate
#    it with sympy, as in section 8, and find the sign of the derivative as $h \to \infty$.
