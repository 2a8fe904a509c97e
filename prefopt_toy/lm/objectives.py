r"""Sequence-level preference objectives: from completion log-probs to the project's per-pair losses.

The bridge between GPT-2 and the exact toy. A language model gives, for each pair, four sequence
log-probabilities (policy and reference, chosen and rejected); their log-ratio margin

.. math:: h = \bigl(\log\pi(y_w) - \log\mu(y_w)\bigr) - \bigl(\log\pi(y_l) - \log\mu(y_l)\bigr)

goes into the *same* loss functions the tabular engine uses (``prefopt_toy.losses.pairwise``,
``prefopt_toy.losses.gpo``), so "DPO on GPT-2" and "DPO on the bandit" are one formula. This module knows
nothing of models or tokenisers: its inputs are log-prob tensors of shape (B,).

Sums or per-token means. The theory (Rafailov et al.; Azar et al.) and the official DPO code use
the **sum** of completion-token log-probs. huggingface/trl's ``DPOTrainer`` sums for every loss
except ``loss_type="ipo"``, for which it divides each log-ratio by its completion length (TRL PR
#1265). ``preference_loss`` therefore takes ``reduction`` with no default: it states which form the
given log-probs are in, and the loss is applied to that form as given.

TRL's single ``beta`` is the KL weight: DPO's beta, SLiC's inverse hinge margin and IPO's tau.
Here DPO-like losses take ``beta`` and IPO takes ``tau`` (``TRL_LOSS_TYPES`` maps TRL's names).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_positive_float
from prefopt_toy.losses.gpo import GPO_FUNCTIONS, gpo_loss
from prefopt_toy.losses.pairwise import dpo_loss, ipo_loss, margin, robust_dpo_loss, slic_loss
from prefopt_toy.losses.token import tdpo_loss

__all__ = [
    "LOSSES",
    "LOSS_STRENGTH",
    "METRIC_NAMES",
    "TDPO_METRIC_NAMES",
    "TRL_LOSS_TYPES",
    "preference_loss",
    "preference_metrics",
    "tdpo_preference_loss",
]

LOSSES: tuple[str, ...] = ("dpo", "ipo", "slic", "robust_dpo") + tuple(
    f"gpo_{f}" for f in GPO_FUNCTIONS
)
"""Names accepted by ``preference_loss(loss=...)``; ``gpo_<f>`` is ``gpo_loss(h, beta, f)``."""

LOSS_STRENGTH: Mapping[str, str] = MappingProxyType(
    {name: ("tau" if name == "ipo" else "beta") for name in LOSSES}
)
"""Each loss's KL-strength keyword: ``"tau"`` for IPO, ``"beta"`` for the DPO-like losses. The one
place that says which hyperparameter a loss takes: ``preference_loss`` requires that keyword and
refuses the other, and ``TrainConfig`` validates its ``beta`` / ``tau`` from it."""

TRL_LOSS_TYPES: Mapping[str, str] = MappingProxyType(
    {"sigmoid": "dpo", "ipo": "ipo", "hinge": "slic", "robust": "robust_dpo"}
)
"""TRL 1.13 ``DPOConfig.loss_type`` -> the name here (TRL's ``beta`` is ``tau`` for ``"ipo"``)."""

METRIC_NAMES: tuple[str, ...] = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)
"""The keys of the metrics dict, TRL ``DPOTrainer``'s names (see ``preference_metrics``)."""

_REDUCTIONS = ("sum", "mean")
_SMOOTHED = ("dpo", "robust_dpo")  # the losses that take a label-flip probability


def _logps(x: Any, name: str) -> Tensor:
    """A finite, non-empty (B,) floating tensor of log-probabilities (<= 0); tensors keep dtype and autograd."""
    if isinstance(x, Tensor):
        if x.is_complex() or not x.is_floating_point():
            raise ValueError(
                f"{name} must be a real floating tensor of log-probabilities, got dtype {x.dtype}"
            )
        t = x
    else:
        try:
            t = torch.tensor(x, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"{name} must be a (B,) tensor of log-probabilities, got {type(x).__name__}"
            ) from err
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty (B,) vector, one entry per pair, got shape {tuple(t.shape)}"
        )
    d = t.detach()
    if not bool(torch.isfinite(d).all()):
        raise ValueError(f"{name} must be finite, but it contains NaN or inf")
    if bool((d > 0).any()):
        raise ValueError(
            f"{name} must be <= 0 (log-probabilities, not logits), got max {float(d.max()):.6g}"
        )
    return t


def _check_shapes(first: Tensor, first_name: str, **others: Tensor | None) -> None:
    for name, t in others.items():
        if t is not None and t.shape != first.shape:
            raise ValueError(
                f"{name} must have the shape of {first_name} {tuple(first.shape)}, got {tuple(t.shape)}"
            )


def _lengths(x: Any, name: str, like: Tensor) -> Tensor:
    """Completion lengths (B,) >= 1 in ``like``'s dtype and device."""
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(x)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold token counts, got dtype {t.dtype}")
    t = t.to(dtype=like.dtype, device=like.device)
    if t.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of policy_chosen_logps {tuple(like.shape)}, got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()) or bool((t < 1).any()):
        raise ValueError(f"{name} must be finite token counts >= 1 (a completion is never empty)")
    return t


def _label_weight(x: Any, like: Tensor) -> Tensor:
    """Soft labels: a number or a (B,) tensor in [0, 1], as a tensor in ``like``'s dtype and device."""
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(x, dtype=torch.float64)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"label_weight must be real probabilities, got dtype {t.dtype}")
    t = t.to(dtype=like.dtype, device=like.device)
    if t.ndim != 0 and t.shape != like.shape:
        raise ValueError(
            f"label_weight must be a number or have shape {tuple(like.shape)}, got {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()) or bool(((t < 0) | (t > 1)).any()):
        raise ValueError(
            "label_weight must lie in [0, 1] (the probability that the chosen response wins)"
        )
    return t


def preference_metrics(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    *,
    scale: float,
) -> dict[str, Tensor]:
    r"""Batch metrics with TRL ``DPOTrainer``'s names and definitions.

    With implicit rewards :math:`r_w = s\,(\log\pi(y_w) - \log\mu(y_w))` and
    :math:`r_l = s\,(\log\pi(y_l) - \log\mu(y_l))` (detached), each a mean over the batch:

    ======================  ===========================================
    ``rewards/chosen``      mean :math:`r_w`
    ``rewards/rejected``    mean :math:`r_l`
    ``rewards/margins``     mean :math:`r_w - r_l = s\,h`
    ``rewards/accuracies``  fraction of pairs with :math:`r_w > r_l` (ties count as wrong)
    ``logps/chosen``        mean :math:`\log\pi(y_w)`
    ``logps/rejected``      mean :math:`\log\pi(y_l)`
    ======================  ===========================================

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps : Tensor, shape (B,)
        Sequence log-probabilities. TRL reports these metrics on **summed** log-probs for every
        loss type, IPO included.
    scale : float > 0
        The reward scale s: TRL's ``beta`` (DPO's beta, IPO's tau).

    Returns
    -------
    dict of str to Tensor
        ``METRIC_NAMES`` -> detached 0-d tensors in the margin's dtype (``float()`` them to log).
        One process's batch: a distributed loop averages them over processes as TRL gathers.

    Raises
    ------
    ValueError
        On a shape mismatch, non-finite or positive log-probs, or ``scale <= 0``.

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0, ``trl/trainer/dpo_trainer.py``,
    ``DPOTrainer._compute_loss`` (metric names and definitions); Rafailov et al.,
    arXiv:2305.18290v3, Sec. 5 (the implicit reward :math:`\beta \log \pi / \pi_{ref}`).

    Examples
    --------
    >>> m = preference_metrics([-1.0, -2.0], [-3.0, -1.0], [-2.0, -2.0], [-2.0, -2.0], scale=0.5)
    >>> {k: round(float(v), 6) for k, v in m.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'rewards/chosen': 0.25, 'rewards/rejected': 0.0, 'rewards/margins': 0.25,
     'rewards/accuracies': 0.5, 'logps/chosen': -1.5, 'logps/rejected': -2.0}
    """
    pc, pr, rc, rr = _four_logps(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    return _metrics(pc, pr, rc, rr, as_positive_float(scale, "scale"))


def _four_logps(pc: Any, pr: Any, rc: Any, rr: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four sequence log-prob inputs, validated (finite, <= 0, 1-D) and of one shape."""
    out = (
        _logps(pc, "policy_chosen_logps"),
        _logps(pr, "policy_rejected_logps"),
        _logps(rc, "ref_chosen_logps"),
        _logps(rr, "ref_rejected_logps"),
    )
    _check_shapes(
        out[0],
        "policy_chosen_logps",
        policy_rejected_logps=out[1],
        ref_chosen_logps=out[2],
        ref_rejected_logps=out[3],
    )
    return out


def _metrics(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, scale: float) -> dict[str, Tensor]:
    with torch.no_grad():
        reward_chosen = scale * (pc - rc)  # (B,)
        reward_rejected = scale * (pr - rr)  # (B,)
        dtype = reward_chosen.dtype
        return {
            "rewards/chosen": reward_chosen.mean(),
            "rewards/rejected": reward_rejected.mean(),
            "rewards/margins": (reward_chosen - reward_rejected).mean(),
            "rewards/accuracies": (reward_chosen > reward_rejected).to(dtype).mean(),
            "logps/chosen": pc.detach().to(dtype).mean(),
            "logps/rejected": pr.detach().to(dtype).mean(),
        }


def preference_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    *,
    loss: str,
    reduction: str,
    beta: float | None = None,
    tau: float | None = None,
    label_smoothing: float = 0.0,
    label_weight: Any = None,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Per-pair preference losses of a batch of sequence log-probs, and TRL's batch metrics.

    Computes the margin :math:`h` (``prefopt_toy.margin``, with the reference log-probs detached)
    and applies the named per-pair loss of the exact toy to it:

    ================  ===============================================  ===============================
    ``loss``          per-pair loss                                    TRL 1.13 ``loss_type``
    ================  ===============================================  ===============================
    ``"dpo"``         ``dpo_loss(h, beta, label_smoothing)``           ``"sigmoid"`` (smoothing 0)
    ``"ipo"``         ``ipo_loss(h, tau)``                             ``"ipo"`` (beta = tau; means)
    ``"slic"``        ``slic_loss(h, beta)``                           ``"hinge"``
    ``"robust_dpo"``  ``robust_dpo_loss(h, beta, label_smoothing)``    ``"robust"``
    ``"gpo_<f>"``     ``gpo_loss(h, beta, f)``                         --
    ================  ===============================================  ===============================

    Soft labels (online IPO / online DPO with a preference probability): with ``label_weight``
    :math:`w \in [0, 1]`, the probability that the chosen response wins, the per-pair loss is
    :math:`w\,\ell(h) + (1 - w)\,\ell(-h)`, the pair seen in both orders. For IPO its minimiser is
    :math:`h^* = (2w - 1)/(2\tau)`, the online-IPO target of Calandriello et al.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps : Tensor, shape (B,)
        Policy log-probabilities of the chosen and rejected completions (gradients flow into them).
    ref_chosen_logps, ref_rejected_logps : Tensor, shape (B,)
        Reference log-probabilities of the same completions (detached here: no gradient).
    loss : str
        One of ``LOSSES`` (TRL's names map through ``TRL_LOSS_TYPES``).
    reduction : {"sum", "mean"}
        No default. Whether the four log-probs are **sums** over completion tokens (the theory, the
        official DPO code, TRL for every loss but IPO) or **per-token means** (TRL's
        ``loss_type="ipo"``: its margin is :math:`h_w/|y_w| - h_l/|y_l|`). The loss is applied to
        the margin of the given form; the two give different losses with different minimisers.
    beta : float > 0, optional
        KL strength of DPO, SLiC, robust DPO and GPO (TRL's ``beta``). Required for them, and not
        accepted for IPO.
    tau : float > 0, optional
        IPO's regularisation tau (TRL's ``beta`` for ``loss_type="ipo"``). Required for IPO only.
    label_smoothing : float in [0, 0.5), default 0
        Label-flip probability epsilon of cDPO (``"dpo"``) and rDPO (``"robust_dpo"``); must be 0
        for the other losses.
    label_weight : float or Tensor of shape (B,) in [0, 1], optional
        Soft labels w (see above). None: hard labels, the chosen response won (w = 1).
    chosen_lengths, rejected_lengths : Tensor or array-like of shape (B,), optional
        Completion lengths in tokens (>= 1). Required with ``reduction="mean"``, rejected with
        ``"sum"``: TRL reports ``rewards/*`` and ``logps/*`` on summed log-probs for every loss, so
        the metrics use ``mean * length``.

    Returns
    -------
    losses : Tensor, shape (B,)
        Unreduced per-pair losses in the margin's dtype; a loop takes ``losses.mean()`` (TRL does).
    metrics : dict of str to Tensor
        ``preference_metrics`` of the batch (on summed log-probs), reward scale ``beta`` (``tau``
        for IPO), as TRL reports it.

    Raises
    ------
    ValueError
        If a log-prob is not a finite (B,) vector of values <= 0 or the shapes differ; ``loss`` or
        ``reduction`` is unknown; ``beta`` / ``tau`` is missing, not accepted or not > 0;
        ``label_smoothing`` is outside [0, 0.5) or nonzero for a loss without one; ``label_weight``
        is outside [0, 1] or misshapen; lengths are missing, superfluous, misshapen or below 1.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (7) (DPO, summed log-probs);
    Azar et al., arXiv:2310.12036v2, Eq. (17) (IPO);
    Calandriello et al., arXiv:2403.08635v1, Sec. 4 (online IPO with preference probabilities);
    TRL https://github.com/huggingface/trl v1.13.0, ``DPOTrainer._compute_loss`` (loss types,
    IPO's per-token averaging, metric names).

    Examples
    --------
    >>> losses, metrics = preference_loss([-1.0], [-3.0], [-2.0], [-2.0], loss="ipo", tau=0.25,
    ...                                   reduction="sum")
    >>> float(losses[0]), float(metrics["rewards/margins"])  # (2 - 1/(2 tau))^2, tau * h
    (0.0, 0.5)
    """
    if not isinstance(loss, str) or loss not in LOSSES:
        hint = (
            f" (TRL's loss_type {loss!r} is {TRL_LOSS_TYPES[loss]!r} here)"
            if isinstance(loss, str) and loss in TRL_LOSS_TYPES
            else ""
        )
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}{hint}")
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be 'sum' or 'mean' (how the log-probs were reduced over tokens), got {reduction!r}"
        )
    key = LOSS_STRENGTH[loss]  # "tau" for IPO, "beta" for the others
    value, unused = (tau, beta) if key == "tau" else (beta, tau)
    trl = " (TRL's beta for loss_type='ipo')" if key == "tau" else ""
    if unused is not None:
        other = "beta" if key == "tau" else "tau"
        users = [name for name, k in LOSS_STRENGTH.items() if k == other]
        raise ValueError(
            f"{other} is not used by loss={loss!r}, which takes {key}{trl}; {other} is only "
            f"used by {users}"
        )
    if value is None:
        raise ValueError(f"{key} is required for loss={loss!r}{trl}")
    scale = as_positive_float(value, key)
    if loss not in _SMOOTHED and label_smoothing != 0.0:
        raise ValueError(
            f"label_smoothing must be 0 for loss={loss!r}; only {list(_SMOOTHED)} use it"
        )

    pc, pr, rc, rr = _four_logps(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    rc, rr = rc.detach(), rr.detach()  # the reference gets no gradient

    h = margin(pc, pr, rc, rr)  # (B,), in the form `reduction` says
    if loss == "dpo":

        def value(m: Tensor) -> Tensor:
            return dpo_loss(m, scale, label_smoothing)

    elif loss == "ipo":

        def value(m: Tensor) -> Tensor:
            return ipo_loss(m, scale)

    elif loss == "slic":

        def value(m: Tensor) -> Tensor:
            return slic_loss(m, scale)

    elif loss == "robust_dpo":

        def value(m: Tensor) -> Tensor:
            return robust_dpo_loss(m, scale, label_smoothing)

    else:

        def value(m: Tensor) -> Tensor:
            return gpo_loss(m, scale, loss.removeprefix("gpo_"))

    if label_weight is None:
        losses = value(h)  # (B,)
    else:
        w = _label_weight(label_weight, h)
        losses = w * value(h) + (1.0 - w) * value(-h)  # both orders of the pair (B,)

    if reduction == "mean":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(
                "chosen_lengths and rejected_lengths are required with reduction='mean' "
                "(the metrics are reported on summed log-probs, as TRL does)"
            )
        len_w = _lengths(chosen_lengths, "chosen_lengths", h)
        len_l = _lengths(rejected_lengths, "rejected_lengths", h)
        # back to sums for the metrics, as TRL reports them
        pc, pr = pc.detach() * len_w, pr.detach() * len_l
        rc, rr = rc * len_w, rr * len_l
    elif chosen_lengths is not None or rejected_lengths is not None:
        raise ValueError(
            "chosen_lengths / rejected_lengths are only used with reduction='mean'; got them with 'sum'"
        )

    return losses, _metrics(pc, pr, rc, rr, scale)


TDPO_METRIC_NAMES: tuple[str, ...] = METRIC_NAMES + ("seqkl/chosen", "seqkl/rejected")
"""The keys of ``tdpo_preference_loss``'s metrics: TRL's six and the mean sequential KLs."""


def tdpo_preference_loss(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    seqkl_chosen: Any,
    seqkl_rejected: Any,
    *,
    beta: float,
    alpha: float = 0.5,
    variant: str = "tdpo2",
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Per-pair TDPO1 / TDPO2 losses of a batch (the one kernel, ``losses.token.tdpo_loss``) and metrics.

    The margin is :math:`u = (\log\pi(y_w) - \log\mu(y_w)) - (\log\pi(y_l) - \log\mu(y_l))` of
    **summed** completion log-probs (the reference detached), and the sequential KLs are
    ``logprobs.tdpo_statistics_from_logits``'s; the loss is ``tdpo_loss(u, seqkl_chosen,
    seqkl_rejected, beta, alpha, variant)``, the function the exact token tree uses.

    Parameters
    ----------
    policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps : Tensor, shape (B,)
        Summed completion log-probs (as ``preference_loss`` with ``reduction="sum"``).
    seqkl_chosen, seqkl_rejected : Tensor, shape (B,)
        :math:`\sum_t KL(\mu(\cdot|s_t) \| \pi(\cdot|s_t))` of each response (finite).
    beta : float > 0
        KL strength (0.1 in the official config).
    alpha : float >= 0, default 0.5
        TDPO2's weight (the official default; unused by TDPO1).
    variant : {"tdpo1", "tdpo2"}, default "tdpo2"
        The official function's default (``if_tdpo2=True``).

    Returns
    -------
    losses : Tensor, shape (B,)
        Unreduced per-pair losses.
    metrics : dict of str to Tensor
        ``preference_metrics`` (reward scale ``beta``) plus ``seqkl/chosen`` and
        ``seqkl/rejected``, the batch means of the sequential KLs (detached 0-d tensors).

    Raises
    ------
    ValueError
        As ``preference_metrics`` for the log-probs; as ``tdpo_loss`` for the KLs (not finite,
        misshapen), ``beta``, ``alpha`` and ``variant``.

    References
    ----------
    Zeng et al., arXiv:2404.11999v5, Sec. 4 (TDPO1, TDPO2); official code
    Vance0124/Token-level-Direct-Preference-Optimization @ 2a736ec, ``trainers.py::tdpo_loss``.

    Examples
    --------
    >>> losses, m = tdpo_preference_loss([-1.0], [-2.0], [-1.5], [-1.5], [0.2], [0.6],
    ...                                  beta=0.1, variant="tdpo1")
    >>> round(float(losses[0]), 6), round(float(m["seqkl/rejected"]), 6)
    (0.663597, 0.6)
    """
    pc, pr, rc, rr = _four_logps(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    scale = as_positive_float(beta, "beta")
    rc, rr = rc.detach(), rr.detach()  # the reference gets no gradient
    h = margin(pc, pr, rc, rr)  # (B,)
    losses = tdpo_loss(h, seqkl_chosen, seqkl_rejected, scale, alpha, variant)
    metrics = _metrics(pc, pr, rc, rr, scale)
    with torch.no_grad():
        for key, kl in (("seqkl/chosen", seqkl_chosen), ("seqkl/rejected", seqkl_rejected)):
            kl = kl if isinstance(kl, Tensor) else torch.as_tensor(kl, dtype=torch.float64)
            metrics[key] = kl.detach().to(losses.dtype).mean()
    return losses, metrics
