r"""Reference-free pair losses: SimPO (length-normalised log-probs) and ORPO (odds ratio plus SFT).

Neither loss has a reference policy in its margin. SimPO compares per-token *mean* log-probs
:math:`\log\pi(y)/|y|`; ORPO compares log-odds :math:`\log\frac{p(y)}{1 - p(y)}` of the per-token
geometric mean probability and adds the negative log-likelihood of the chosen response. Only
their hyperparameters (and, on a language model, early stopping) keep the policy off the simplex's
vertices: the exact toy shows where each one lands.

Sign conventions: both losses are decreasing in the chosen response's log-prob and increasing in
the rejected one's (they push chosen **up** and rejected **down**).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_hyper

from .pairwise import (
    _as_margin,
    _companion,
    _in_float32_if_half,
    _label_smoothing,
    _neg_logsigmoid,
)

__all__ = ["log_odds", "odds_ratio_loss", "orpo_loss", "simpo_loss"]


def _same_shape(first: Tensor, first_name: str, other: Tensor, name: str) -> None:
    if other.shape != first.shape:
        raise ValueError(
            f"{name} must have the shape of {first_name} {tuple(first.shape)}, got {tuple(other.shape)}"
        )


def simpo_loss(
    avg_logp_chosen: Any,
    avg_logp_rejected: Any,
    beta: float,
    gamma: float | None = None,
    *,
    gamma_beta_ratio: float | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Per-pair SimPO loss on per-token mean log-probabilities.

    .. math::
        \ell = -(1-\varepsilon)\log\sigma(z) - \varepsilon\log\sigma(-z), \qquad
        z = \beta\Bigl(\tfrac{\log\pi(y_w)}{|y_w|} - \tfrac{\log\pi(y_l)}{|y_l|}\Bigr) - \gamma

    It pushes the chosen mean log-prob **up** and the rejected one **down** until the scaled gap
    passes the target margin :math:`\gamma`; with :math:`\varepsilon = 0` it never stops.

    **Two names for the margin.** The paper's :math:`\gamma` (Eq. 6) is an absolute margin on the
    scaled gap; TRL's ``CPOConfig.simpo_gamma`` is the same :math:`\gamma` (TRL computes
    ``-logsigmoid(beta * (gap - simpo_gamma / beta))``). The official code and HALOs take the ratio
    :math:`\gamma/\beta` (``gamma_beta_ratio``, 0.5 in the official recipes with beta 2 to 2.5).
    Give exactly one of ``gamma`` and ``gamma_beta_ratio``; ``gamma=None`` with no ratio means 0.
    TRL's defaults (beta 0.1, simpo_gamma 0.5) are a ratio of 5, ten times the official one.

    Parameters
    ----------
    avg_logp_chosen, avg_logp_rejected : Tensor or array-like, shape (...)
        :math:`\log\pi(y)/|y|`, the mean over completion tokens (on the bandit, log pi(y) / L(y)).
    beta : float > 0
        Reward scale (the paper's beta; TRL ``CPOConfig.beta``).
    gamma : float >= 0, optional
        Absolute target margin (paper's gamma, TRL's ``simpo_gamma``).
    gamma_beta_ratio : float >= 0, optional
        The margin as gamma / beta (official code, HALOs).
    label_smoothing : float in [0, 0.5), default 0
        Label-flip probability (TRL ``CPOConfig.label_smoothing``).

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses.

    Raises
    ------
    ValueError
        Non-finite input, shapes that differ, ``beta <= 0``, a negative margin, both margins given,
        ``label_smoothing`` outside [0, 0.5).

    References
    ----------
    Meng et al., arXiv:2405.14734v3, Eq. (6) (SimPO objective, Sec. 2.2 the target margin);
    TRL v1.13.0 ``trl.experimental.cpo.CPOTrainer.cpo_loss`` (``loss_type="simpo"``);
    ``princeton-nlp/SimPO`` ``simpo_trainer.py`` (``gamma_beta_ratio``).

    Examples
    --------
    >>> round(float(simpo_loss(-1.0, -2.0, beta=2.0, gamma_beta_ratio=0.5)), 6)  # z = 2 - 1
    0.313262
    """
    w = _as_margin(avg_logp_chosen, "avg_logp_chosen")
    lo = _as_margin(avg_logp_rejected, "avg_logp_rejected")
    _same_shape(w, "avg_logp_chosen", lo, "avg_logp_rejected")
    b = as_hyper(beta, "beta")
    if gamma is not None and gamma_beta_ratio is not None:
        raise ValueError(
            "give gamma (the absolute margin, TRL's simpo_gamma) or gamma_beta_ratio (gamma / beta, "
            "the official code's), not both"
        )
    if gamma_beta_ratio is not None:
        g = as_hyper(gamma_beta_ratio, "gamma_beta_ratio", positive=False) * b
    else:
        g = 0.0 if gamma is None else as_hyper(gamma, "gamma", positive=False)
    eps = _label_smoothing(label_smoothing)
    return _in_float32_if_half(_simpo_value, w, _companion(lo, w), b, g, eps)


def _simpo_value(w: Tensor, lo: Tensor, beta: Any, gamma: Any, eps: Any) -> Tensor:
    z = beta * (w - lo) - gamma
    if isinstance(eps, float) and eps == 0.0:
        return _neg_logsigmoid(z)
    return (1.0 - eps) * _neg_logsigmoid(z) + eps * _neg_logsigmoid(-z)


def log_odds(logp: Any) -> Tensor:
    r"""Log-odds :math:`\log\frac{p}{1-p}` from :math:`\log p < 0`, without forming :math:`1 - p`.

    :math:`\log(1 - p) = \log(-\mathrm{expm1}(\log p))` near :math:`p = 1` and
    :math:`\mathrm{log1p}(-p)` elsewhere (Maechler's log1mexp), accurate to float precision on both
    sides. ``logp = 0`` (p = 1) has infinite odds and is refused.

    Parameters
    ----------
    logp : Tensor or array-like, shape (...)
        Log-probabilities, each < 0 (on GPT-2 the per-token mean, as ORPO and TRL take it).

    Returns
    -------
    Tensor, shape (...)

    Raises
    ------
    ValueError
        If an entry is not finite or not < 0.

    References
    ----------
    Maechler (2012), "Accurately computing log(1 - exp(-|a|))", the R package Rmpfr vignette.

    Examples
    --------
    >>> round(float(log_odds(torch.tensor(0.5).log())), 12)
    0.0
    """
    lp = _as_margin(logp, "logp")
    if bool((lp >= 0).any()):
        raise ValueError(
            "logp must be < 0 in every entry (a probability below 1; p = 1 has infinite odds)"
        )
    return _in_float32_if_half(_log_odds_value, lp)


def _log1mexp(x: Tensor) -> Tensor:
    # log(1 - e^x) for x < 0: expm1 where e^x is near 1, log1p where it is small.
    return torch.where(
        x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x))
    )


def _log_odds_value(lp: Tensor) -> Tensor:
    return lp - _log1mexp(lp)


def odds_ratio_loss(log_odds_chosen: Any, log_odds_rejected: Any) -> Tensor:
    r"""ORPO's odds-ratio term :math:`-\log\sigma\bigl(\log\mathrm{odds}(y_w) - \log\mathrm{odds}(y_l)\bigr)`.

    Takes log-odds (``log_odds``; the exact toy computes :math:`\log(1 - \pi(y))` as a logsumexp of
    the other logits instead, exact even where :math:`\pi(y)` rounds to 1). Pushes the chosen
    odds **up** and the rejected odds **down**, without limit.

    Parameters
    ----------
    log_odds_chosen, log_odds_rejected : Tensor or array-like, shape (...)

    Returns
    -------
    Tensor, shape (...)

    References
    ----------
    Hong et al., arXiv:2403.07691v2, Eq. (7) (:math:`\mathcal L_{OR}`).

    Examples
    --------
    >>> round(float(odds_ratio_loss(0.0, 0.0)), 6)
    0.693147
    """
    w = _as_margin(log_odds_chosen, "log_odds_chosen")
    lo = _as_margin(log_odds_rejected, "log_odds_rejected")
    _same_shape(w, "log_odds_chosen", lo, "log_odds_rejected")
    return _in_float32_if_half(_odds_ratio_value, w, _companion(lo, w))


def _odds_ratio_value(w: Tensor, lo: Tensor) -> Tensor:
    return _neg_logsigmoid(w - lo)


def orpo_loss(
    logp_chosen: Any,
    logp_rejected: Any,
    lam: float,
    nll: Any = None,
    *,
    log1mp_chosen: Any = None,
    log1mp_rejected: Any = None,
) -> Tensor:
    r"""Per-pair ORPO loss: the chosen response's NLL plus lambda times the odds-ratio term.

    .. math::
        \ell = \mathrm{NLL}(y_w) - \lambda\,\log\sigma\Bigl(\log\frac{\mathrm{odds}(y_w)}{\mathrm{odds}(y_l)}\Bigr),
        \qquad \mathrm{odds}(y) = \frac{p(y)}{1 - p(y)}, \quad p(y) = e^{\text{logp}}

    The NLL pulls the chosen probability **up** (its gradient grows as p falls, so a chosen action
    never reaches 0); the odds term pushes the chosen odds up and the rejected ones down.

    **What the NLL covers.** By default ``nll = -logp_chosen`` (the same form as ``logp_chosen``).
    TRL's ``trl.experimental.orpo`` takes the cross-entropy over the chosen **prompt and
    completion** tokens, averaged over the batch's tokens (TRL PR #2527, on purpose); pass that as
    ``nll`` to match it.

    Parameters
    ----------
    logp_chosen, logp_rejected : Tensor or array-like, shape (...)
        Log-probabilities < 0: per-token means on a language model (ORPO and TRL), log pi(y) on
        the bandit.
    lam : float > 0
        :math:`\lambda`, the odds-ratio weight (TRL ``ORPOConfig.beta``, default 0.1).
    nll : Tensor or array-like, shape (...) or (), optional
        The SFT term; default ``-logp_chosen``.
    log1mp_chosen, log1mp_rejected : Tensor or array-like, shape (...), optional
        :math:`\log(1 - p)` where the caller has it exactly (the bandit: a logsumexp of the other
        logits, exact even where p rounds to 1); by default computed from ``logp`` (``log_odds``).

    Returns
    -------
    Tensor, shape (...)

    References
    ----------
    Hong et al., arXiv:2403.07691v2, Eq. (6)-(7) (:math:`\mathcal L_{ORPO} = \mathcal L_{SFT} +
    \lambda\mathcal L_{OR}`); TRL v1.13.0 ``trl.experimental.orpo.ORPOTrainer.odds_ratio_loss``.

    Examples
    --------
    >>> round(float(orpo_loss(torch.tensor(0.5).log(), torch.tensor(0.5).log(), lam=1.0)), 6)
    1.386294
    """
    w = _as_margin(logp_chosen, "logp_chosen")
    lo = _as_margin(logp_rejected, "logp_rejected")
    _same_shape(w, "logp_chosen", lo, "logp_rejected")
    lam_v = as_hyper(lam, "lam")
    if log1mp_chosen is None or log1mp_rejected is None:
        if log1mp_chosen is not None or log1mp_rejected is not None:
            raise ValueError("give both log1mp_chosen and log1mp_rejected, or neither")
        odds_w, odds_l = log_odds(w), log_odds(lo)
    else:
        odds_w = w - _as_margin(log1mp_chosen, "log1mp_chosen")
        odds_l = lo - _as_margin(log1mp_rejected, "log1mp_rejected")
    term = odds_ratio_loss(odds_w, odds_l)
    sft = -w if nll is None else _as_margin(nll, "nll")
    return sft.to(term.dtype) + lam_v * term
