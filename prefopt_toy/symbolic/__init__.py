r"""Symbolic derivations (sympy) of the closed forms the suite relies on, verified twice.

Each public function here builds one :class:`Derivation`: a chain of steps (an explanation and a
sympy expression each), a final identity ``lhs == rhs``, and a few intermediate identities
(``lemmas``). A derivation is checked in two independent ways:

- **symbolically**: :meth:`Derivation.residual` reduces ``lhs - rhs`` (and each lemma's difference)
  with targeted sympy rewrites (``expand``, ``expand_log(force=True)``, ``cancel``; ``simplify``
  only as a last resort, on small expressions); :meth:`Derivation.verify` is True only if every entry is
  exactly 0;
- **numerically, against the library**: :meth:`Derivation.numeric_check` lambdifies both sides of
  the identity and evaluates them at fixed points where the expected value was computed by
  ``prefopt_toy`` itself (``dpo_loss``, ``ipo_optimum``, ``regularized_nash``, ``nash_md``, ...);
  it returns the largest absolute difference.

Where a claim is about a K-action policy, the sympy version uses K = 3 generic actions (every
probability, preference and reward a symbol), so the identity is checked for all 3-action games
at once, not at a few numbers. Symbols are declared positive or real so that the rewrites are
exact. No function here parses text: every expression is built from sympy objects.

``DERIVATIONS`` maps a short name to each builder. Builders are cached; a derivation is frozen,
so a changed variant is made with :func:`dataclasses.replace` (the tests build deliberately wrong
variants that way and check that both checks reject them).

References
----------
Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO / PsiPO);
Munos et al., arXiv:2312.00886v4 (Nash-MD); Calandriello et al., arXiv:2403.08635v1 (online IPO,
IPO-MD); Tang et al., arXiv:2402.05749v2 (GPO); Mitchell (2023), https://ericmitchell.ai/cdpo.pdf
(cDPO); Park et al., arXiv:2403.19159 (R-DPO); Meng et al., arXiv:2405.14734 (SimPO); Kim et
al., arXiv:2403.19270 (sDPO); Ethayarajh et al., arXiv:2402.01306 (KTO); Liu et al.,
arXiv:2309.06657 (RSO); Hong et al., arXiv:2403.07691 (ORPO); Pal et al., arXiv:2402.13228v3
(DPOP).
"""

from __future__ import annotations

from collections.abc import Callable

from .core import Derivation
from .dpo_ipo import (
    dpo_from_rlhf,
    ipo_bernoulli_labels,
    ipo_optimum_first_order,
    psipo_special_cases,
)
from .family import (
    dpop_outside_kink,
    kto_small_beta_limit,
    orpo_small_lambda_limit,
    rdpo_length_optimum,
    rso_pair_distribution,
    sdpo_stages,
    simpo_uniform_reference,
)
from .margins import cdpo_optimal_margin, gpo_optimal_margins
from .online import ipo_md_mixture, nash_md_step, online_ipo_fixed_point

__all__ = [
    "DERIVATIONS",
    "Derivation",
    "cdpo_optimal_margin",
    "dpo_from_rlhf",
    "dpop_outside_kink",
    "gpo_optimal_margins",
    "ipo_bernoulli_labels",
    "ipo_md_mixture",
    "ipo_optimum_first_order",
    "kto_small_beta_limit",
    "nash_md_step",
    "online_ipo_fixed_point",
    "orpo_small_lambda_limit",
    "psipo_special_cases",
    "rdpo_length_optimum",
    "rso_pair_distribution",
    "sdpo_stages",
    "simpo_uniform_reference",
]

DERIVATIONS: dict[str, Callable[[], Derivation]] = {
    "dpo": dpo_from_rlhf,
    "psipo": psipo_special_cases,
    "ipo_optimum": ipo_optimum_first_order,
    "ipo_labels": ipo_bernoulli_labels,
    "online_ipo": online_ipo_fixed_point,
    "nash_md": nash_md_step,
    "ipo_md": ipo_md_mixture,
    "cdpo": cdpo_optimal_margin,
    "gpo": gpo_optimal_margins,
    "rdpo": rdpo_length_optimum,
    "simpo_dpo": simpo_uniform_reference,
    "sdpo": sdpo_stages,
    "kto_limit": kto_small_beta_limit,
    "rso": rso_pair_distribution,
    "orpo_limit": orpo_small_lambda_limit,
    "dpop_kink": dpop_outside_kink,
}
"""Registry: short name -> builder of the :class:`Derivation` (each builder is cached)."""
