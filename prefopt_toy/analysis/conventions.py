r"""Conventions: this library's knobs against the papers' symbols and TRL's, and IPO's tau in TRL.

The module maps each knob to each paper's symbol and TRL's argument name, and shows what TRL's
per-token averaging of log-probs does to IPO's tau. Two things that trip students moving between
papers, this code and TRL:

1. **Names.** The same quantity has a different letter in every paper (the reference policy is
   ``pi_ref`` in DPO and IPO, ``mu`` in Nash-MD; the mixture weight is ``beta`` in Nash-MD and
   IPO-MD, where ``beta`` is the KL strength in DPO), and TRL calls every KL strength ``beta``.
   ``KNOBS`` is the table as data; ``convention_table()`` returns it as a pandas DataFrame. The
   README's "Notation" table shows the same rows; ``tests/analysis/test_conventions.py`` parses it and checks
   that every cell agrees with ``KNOBS``.

2. **Sum versus mean over tokens.** In the theory the log-probability of a completion is a *sum*
   over its tokens. TRL's ``DPOTrainer`` with ``loss_type="ipo"`` *averages* them (huggingface/trl
   PR #1265), so its per-pair loss is

   .. math:: \Bigl(\frac{r(y_w)}{L(y_w)} - \frac{r(y_l)}{L(y_l)} - \frac{1}{2\tau}\Bigr)^2,
             \qquad r(y) = \log\frac{\pi(y)}{\mu(y)},

   with :math:`L(y)` the number of completion tokens. With equal lengths :math:`L` this is
   :math:`L^{-2}(h - L/(2\tau))^2`: the summed IPO loss at :math:`\tau_{\rm eff} = \tau/L`
   (``effective_tau``). With unequal lengths it is no reparametrisation of tau at all
   (``averaged_ipo_optimum``, ``best_effective_tau``).

References
----------
Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO, Eq. (17));
Munos et al., arXiv:2312.00886v4 (Nash-MD); Calandriello et al., arXiv:2403.08635v1 (online IPO,
IPO-MD); Tang et al., arXiv:2402.05749v2 (GPO); Zhao et al., arXiv:2305.10425v1 (SLiC-HF);
huggingface/trl PR #1265 ("[DPO] average_log_prob when loss is IPO", commit 29d439a).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .token_reduction import (
    averaged_ipo_loss,
    averaged_ipo_optimum,
    averaged_ipo_population_loss,
    best_effective_tau,
    effective_tau,
)

__all__ = [
    "KNOBS",
    "Knob",
    "PAPER_COLUMNS",
    "averaged_ipo_loss",
    "averaged_ipo_optimum",
    "averaged_ipo_population_loss",
    "best_effective_tau",
    "convention_table",
    "effective_tau",
]


@dataclass(frozen=True)
class Knob:
    """One knob of this library and its name in each paper and in TRL.

    Cells are Markdown, exactly as in the README's "Notation" table (``—`` where the paper has no
    such quantity). ``note`` explains a cell that is easy to misread.

    References
    ----------
    The papers of ``PAPER_COLUMNS`` (arXiv ids in ``prefopt_toy.papers.PAPERS``).
    """

    code: str
    """The name in this library's code (``P``, ``tau``, ...)."""
    meaning: str
    """What it is."""
    dpo: str
    """Symbol in Rafailov et al., arXiv:2305.18290v3."""
    ipo: str
    """Symbol in Azar et al., arXiv:2310.12036v2."""
    nash_md: str
    """Symbol in Munos et al., arXiv:2312.00886v4."""
    ipo_md: str
    """Symbol in Calandriello et al., arXiv:2403.08635v1 (online IPO, IPO-MD)."""
    gpo: str
    """Symbol in Tang et al., arXiv:2402.05749v2."""
    slic: str
    """Symbol in Zhao et al., arXiv:2305.10425v1 (SLiC-HF)."""
    trl: str
    """Argument or object name in huggingface/trl (commit f2cd577)."""
    note: str = ""
    """A caveat, where one cell needs it."""


PAPER_COLUMNS: dict[str, str] = {
    "code": "code",
    "meaning": "meaning",
    "dpo": "DPO (Rafailov et al.)",
    "ipo": "IPO (Azar et al.)",
    "nash_md": "Nash-MD (Munos et al.)",
    "ipo_md": "IPO-MD (Calandriello et al.)",
    "gpo": "GPO (Tang et al.)",
    "slic": "SLiC-HF (Zhao et al.)",
    "trl": "TRL",
    "note": "note",
}
"""Field of :class:`Knob` -> column header (the README's header where the README has the column)."""

_NONE = "—"

KNOBS: tuple[Knob, ...] = (
    Knob(
        "`P`",
        "`P[i, j] = Pr(y_i beats y_j)`, `P + P.T = 1`",
        "p* (BT)",
        "p*",
        "P",
        "p",
        "p* (BT)",
        "(human / reward-model ranking)",
        "judge / reward model",
        "DPO and GPO assume a Bradley-Terry p*; IPO, Nash-MD and IPO-MD take any preference.",
    ),
    Knob("`pi`", "current policy, shape (K,)", "π_θ", "π", "π", "π_θ", "π_θ", "π_θ", "model"),
    Knob(
        "`mu`",
        "reference policy, the KL anchor",
        "π_ref",
        "π_ref",
        "μ",
        "π_ref",
        "π_ref",
        "π_SFT (cross-entropy target, no KL)",
        "`ref_model`",
        "IPO and Nash-MD write μ for different things: IPO's μ is the pair distribution (`nu`).",
    ),
    Knob(
        "`nu`",
        "distribution the compared pairs come from",
        "(data)",
        "μ",
        "π and its mixture (online)",
        "μ / online π",
        "(data)",
        "(data)",
        "dataset",
        "Default `mu` wherever a function also takes `mu` (`rlhf_optimum`, `ipo_optimum`, "
        "`population_loss`, the offline dynamics `dpo`, `ipo`, `slic`, `gpo_*`, `rlhf`): pairs "
        "from the reference, as offline DPO samples them, so `rlhf_optimum(P, mu, beta)` is the "
        "fixed point of `ALGORITHMS['dpo'](P, mu, beta=beta)`. `bt_fit(P)`, `bt_fit_gap(P)` and "
        "`bt_fit_kl(P)` have no `mu` and fit on uniform pairs. Nash-MD samples its pairs from the "
        "policy and its geometric mixture with μ, not a dataset.",
    ),
    Knob(
        "`beta`",
        "KL strength of DPO-family losses",
        "β",
        "τ (in Eq. 4)",
        _NONE,
        _NONE,
        "β",
        "1/δ (hinge margin δ)",
        "`beta`",
        "GPO's squared loss equals IPO at β = 2τ; TRL's hinge is max(0, 1 - β h), margin δ = 1/β.",
    ),
    Knob(
        "`tau`",
        "KL strength of IPO, Nash-MD, IPO-MD",
        _NONE,
        "τ",
        "τ",
        "τ",
        _NONE,
        _NONE,
        "`beta`",
        "TRL's single `beta` is IPO's τ for loss_type='ipo' (TRL averages log-probs there: "
        "see effective_tau).",
    ),
    Knob(
        "`mixture`",
        "weight of `mu` in `pi^(1-m) mu^m`",
        _NONE,
        _NONE,
        "β",
        "β",
        _NONE,
        _NONE,
        "`mixture_coef`",
        "Not DPO's β: Nash-MD's mixture weight, equal to η τ in its mirror step.",
    ),
    Knob(
        "`eta`",
        "Nash-MD's mirror step on the policy",
        _NONE,
        _NONE,
        "η",
        _NONE,
        _NONE,
        _NONE,
        "none (`mixture_coef` = η τ)",
        "TRL has no mirror step: its learning_rate is the optimiser step on the network weights "
        "(this library's `lr`); the step shows up only through mixture_coef = η τ.",
    ),
    Knob(
        "`margin`",
        "`(logp_c - logp_ref_c) - (logp_r - logp_ref_r)`",
        "(inside Eq. 7)",
        "h_π",
        _NONE,
        "h",
        "ρ_θ",
        "(log π(y+) - log π(y-), no reference)",
        "`chosen - rejected` logratios",
    ),
    Knob(
        "`label_smoothing`",
        "flip probability ε of cDPO / rDPO",
        _NONE,
        _NONE,
        _NONE,
        _NONE,
        _NONE,
        _NONE,
        "`label_smoothing`",
        "Mitchell's cDPO note (ericmitchell.ai/cdpo.pdf) and Chowdhury et al. arXiv:2403.00409v2.",
    ),
    Knob(
        "`lr`",
        "step size of the gradient dynamics (`ALGORITHMS[name](..., lr=)`)",
        "(Adam / RMSprop rate)",
        "(Adam rate, 0.01 in Sec. 5.4)",
        "(policy-gradient rate)",
        "(AdaFactor rate)",
        "(optimiser rate)",
        "(optimiser rate)",
        "`learning_rate`",
    ),
    Knob(
        "`labels`",
        "label model: soft `P`, hard (the likelier winner) or n samples",
        "(sampled human labels)",
        "I(y, y') ~ Bernoulli(p*)",
        _NONE,
        "λ_p (label sampler)",
        "(sampled labels)",
        "(sampled labels)",
        "judge / reward model winner (hard)",
        "TRL's online trainers label each pair by the larger reward: hard labels.",
    ),
    Knob(
        "`f`",
        "GPO convex surrogate, loss f(beta * margin)",
        "logistic",
        "squared (Ψ = identity)",
        _NONE,
        "squared",
        "f",
        "hinge",
        "`loss_type`",
        "TRL loss_type: 'sigmoid' = logistic (DPO), 'ipo' = squared, 'hinge' = SLiC.",
    ),
)
"""The convention table, one :class:`Knob` per row (README "Notation" rows first, then extras)."""


def convention_table(*, markdown: bool = False, columns: Any = None) -> Any:
    """The convention table as a pandas DataFrame, one row per knob of this library.

    Parameters
    ----------
    markdown : bool, default False
        Keep the Markdown backticks of the cells (as in the README); by default they are removed
        for display.
    columns : sequence of str, optional
        Fields of :class:`Knob` to keep (e.g. ``["code", "ipo", "trl"]``); default all.

    Returns
    -------
    pandas.DataFrame
        Indexed by the code name, with the column headers of ``PAPER_COLUMNS``.

    Raises
    ------
    ValueError
        If ``columns`` names a field that :class:`Knob` does not have.

    References
    ----------
    The papers of ``PAPER_COLUMNS``: DPO arXiv:2305.18290v3, IPO arXiv:2310.12036v2, Nash-MD
    arXiv:2312.00886v4, online IPO / IPO-MD arXiv:2403.08635v1, GPO arXiv:2402.05749v2, SLiC-HF
    arXiv:2305.10425v1; TRL at commit f2cd577.

    Examples
    --------
    >>> table = convention_table()
    >>> table.loc["tau", "TRL"]
    'beta'
    >>> table.loc["mixture", "Nash-MD (Munos et al.)"]
    'β'
    """
    import pandas as pd

    names = [f.name for f in fields(Knob)]
    if columns is None:
        keep = names
    else:
        keep = list(columns)
        unknown = [c for c in keep if c not in names]
        if unknown:
            raise ValueError(f"columns must be fields of Knob {names}, got unknown {unknown}")
        if "code" not in keep:
            keep = ["code", *keep]

    def clean(cell: str) -> str:
        return cell if markdown else cell.replace("`", "")

    rows = [{PAPER_COLUMNS[c]: clean(getattr(k, c)) for c in keep} for k in KNOBS]
    return pd.DataFrame(rows).set_index("code")
