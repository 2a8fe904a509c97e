r"""Per-pair preference losses on the log-ratio margin, shared by the exact engine and GPT-2.

Every loss here is a pure, elementwise function of the margin

.. math:: h = \bigl(\log\pi(y_w) - \log\mu(y_w)\bigr) - \bigl(\log\pi(y_l) - \log\mu(y_l)\bigr)

(``margin`` in the code, h in Azar et al., rho in Tang et al.) and of its hyperparameters. None of
them reduces: the output has the shape of the margin, and the caller averages over a batch (GPT-2)
or weights by exact pair probabilities (``prefopt_toy.losses.population``).

Dtypes. Lists, numbers and numpy arrays become float64. Tensors keep their dtype (float64 in the
toy, float32 / bfloat16 on GPT-2), with one exception: a **float16** margin gives a **float32** loss.
Half-precision margins (float16, bfloat16) are computed in float32 and the result is rounded once:
to bfloat16, whose range is float32's, and not to float16, whose largest value 65504 is below
the IPO loss at ``|h| ~ 260`` (at ``h = -1e4`` it is ~1e8). The gradient reaching a half-precision
margin is in the margin's own dtype; every loss here keeps it within float16's range for
``|margin| <= 1e4`` and beta or tau in [0.1, 1] (it is at most ``2 |h - 1/(2 tau)|`` for IPO).

Every loss is finite, in value and gradient, far beyond ``|margin| = 1e4`` (tested: ``|margin| <= 1e4``,
beta or tau in {0.1, 1}, float16 / bfloat16 / float32 / float64), through stable forms:
``-log sigmoid(x)`` as a softplus, never ``log(sigmoid(x))``; the GPO exponential loss extended
linearly (``prefopt_toy.losses.gpo``); float32 arithmetic for half-precision margins.

Margin validation on the hot path: each loss checks ``torch.isfinite(margin).all()`` and raises a
``ValueError`` on NaN / inf. The check is one fused reduction; on a GPU it costs one host-device
synchronisation per call, which a training loop that logs or checks its loss pays anyway. A NaN
margin would otherwise turn into a NaN loss far from its cause.

The generalised family of Tang et al. (GPO; ``gpo_loss``) lives in ``prefopt_toy.losses.gpo``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt_toy._validate import as_hyper, as_tensor

__all__ = ["dpo_loss", "ipo_loss", "margin", "robust_dpo_loss", "slic_loss"]


def _as_margin(x: Any, name: str = "margin") -> Tensor:
    """A finite floating tensor: tensors keep their dtype (and autograd); anything else -> float64."""
    if isinstance(x, Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must be a real floating tensor, got dtype {x.dtype}")
        t = x if x.is_floating_point() else x.to(torch.float64)
    else:
        t = as_tensor(x, name)  # a float64 copy; never aliases the caller's array
    # One fused reduction (one device sync on GPU): a NaN margin fails here, not as a NaN loss later.
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, but it contains NaN or inf")
    return t


_HALF = (torch.float16, torch.bfloat16)


def _loss_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of a loss (or margin) computed from inputs of ``dtype``: float16 -> float32, else ``dtype``.

    Examples
    --------
    >>> _loss_dtype(torch.float16), _loss_dtype(torch.bfloat16)
    (torch.float32, torch.bfloat16)
    """
    return torch.float32 if dtype == torch.float16 else dtype


def _in_float32_if_half(kernel: Any, h: Tensor, *args: Any) -> Tensor:
    """``kernel(h, *args)``; for a float16 / bfloat16 ``h`` computed in float32, returned in ``_loss_dtype``.

    float16 overflows at 65504 (an IPO loss at |h| ~ 260 already) and bfloat16 keeps 8 bits: both
    are widened for the arithmetic, as torch.autocast does for losses, and rounded once at the end.
    The cast is differentiable, so the gradient still reaches ``h`` (in h's dtype).
    """
    if h.dtype not in _HALF:
        return kernel(h, *args)
    return kernel(h.to(torch.float32), *args).to(_loss_dtype(h.dtype))


def _companion(t: Tensor, h: Tensor) -> Tensor:
    """A second input of a kernel, in the dtype ``_in_float32_if_half`` computes ``h`` in."""
    return t.to(torch.float32 if h.dtype in _HALF else h.dtype)


# F.softplus returns its argument above this threshold. For z > 40, softplus(z) - z = log1p(e^{-z})
# < 4.3e-18, below float64 resolution at z; e^40 is finite in float32, bfloat16 and float64.
_SOFTPLUS_THRESHOLD = 40.0


def _neg_logsigmoid(x: Tensor) -> Tensor:
    """``-log sigmoid(x) = softplus(-x)``: finite (value and gradient) for every finite x."""
    # Not log(sigmoid(x)), which underflows to log 0 = -inf below x ~ -100 (float32). And softplus
    # rather than -F.logsigmoid: same value, but torch's CPU log_sigmoid kernel was measured at
    # milliseconds per call on tiny tensors with 2 intra-op threads (torch 2.13), softplus at
    # microseconds; the exact engine calls this thousands of times per trajectory.
    return F.softplus(-x, threshold=_SOFTPLUS_THRESHOLD)


def _label_smoothing(x: Any) -> float | Tensor:
    """The flip probability epsilon of cDPO / rDPO, in [0, 1/2) (a number, or a tensor of them)."""
    try:
        return as_hyper(x, "label_smoothing", positive=False, below=0.5)
    except ValueError:
        shown = (
            "a tensor with an entry outside" if isinstance(x, Tensor) and x.numel() > 1 else repr(x)
        )
        raise ValueError(
            f"label_smoothing must lie in [0, 0.5) (a label-flip probability), got {shown}"
        ) from None


def margin(
    logp_chosen: Any, logp_rejected: Any, logp_ref_chosen: Any, logp_ref_rejected: Any
) -> Tensor:
    r"""Log-ratio margin of a chosen over a rejected response.

    .. math:: h = \log\frac{\pi(y_w)}{\mu(y_w)} - \log\frac{\pi(y_l)}{\mu(y_l)}

    Parameters
    ----------
    logp_chosen, logp_rejected : Tensor or array-like, shape (...)
        Policy log-probabilities of the chosen (winner) and rejected (loser) responses. For a
        language model these are sums over completion tokens (see ``ipo_loss`` for sums vs means).
    logp_ref_chosen, logp_ref_rejected : Tensor or array-like, shape (...)
        Reference-policy log-probabilities of the same responses.

    Returns
    -------
    Tensor, shape (...)
        The margins, differentiable in all four inputs. The dtype follows torch type promotion
        (float64 for non-tensor inputs), except that float16 inputs give float32: differences of
        float16 log-probs overflow float16 (65504) long before float32. Half precision (float16,
        bfloat16) is subtracted in float32 and rounded once.

    Raises
    ------
    ValueError
        If an input is not finite, or if its shape differs from ``logp_chosen``'s (no broadcasting:
        a silently broadcast (B,) against (B, 1) would build a B x B matrix of wrong pairs).

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (7) (the argument of the sigmoid, divided by beta);
    Azar et al., arXiv:2310.12036v2, Sec. 5.1 (h_pi).

    Examples
    --------
    >>> margin([-1.0], [-3.0], [-2.0], [-2.0])
    tensor([2.], dtype=torch.float64)
    """
    chosen = _as_margin(logp_chosen, "logp_chosen")
    others = {
        "logp_rejected": _as_margin(logp_rejected, "logp_rejected"),
        "logp_ref_chosen": _as_margin(logp_ref_chosen, "logp_ref_chosen"),
        "logp_ref_rejected": _as_margin(logp_ref_rejected, "logp_ref_rejected"),
    }
    for name, t in others.items():
        if t.shape != chosen.shape:
            raise ValueError(
                f"{name} must have the shape of logp_chosen {tuple(chosen.shape)}, got {tuple(t.shape)}"
            )
    common = chosen.dtype
    for t in others.values():
        common = torch.promote_types(common, t.dtype)
    if common in _HALF:  # subtract in float32, round once (float16 -> float32, see _loss_dtype)
        logps = [t.to(torch.float32) for t in (chosen, *others.values())]
        return _margin_value(*logps).to(_loss_dtype(common))
    return _margin_value(chosen, *others.values())


def _margin_value(
    chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor
) -> Tensor:
    # h = log(pi_w / mu_w) - log(pi_l / mu_l)   (Azar et al. h_pi; DPO's pi_logratios - ref_logratios)
    logratio_chosen = chosen - ref_chosen
    logratio_rejected = rejected - ref_rejected
    return logratio_chosen - logratio_rejected


def dpo_loss(margin: Any, beta: float, label_smoothing: float = 0.0) -> Tensor:
    r"""Per-pair DPO loss; with ``label_smoothing > 0`` the conservative DPO (cDPO) loss.

    .. math::
        \ell(h) = -(1-\varepsilon)\,\log\sigma(\beta h) - \varepsilon\,\log\sigma(-\beta h)

    With :math:`\varepsilon = 0` (default) this is DPO: it pushes the margin **up** without limit,
    since :math:`\partial\ell/\partial h = -\beta\,\sigma(-\beta h) < 0` never vanishes; on a pair
    seen in one direction only, ``h -> +inf``. With :math:`0 < \varepsilon < 1/2` each label is
    treated as flipped with probability epsilon and the loss pulls the margin to the finite target
    :math:`h^* = \beta^{-1}\log\frac{1-\varepsilon}{\varepsilon}` (pushes up below it, down above).

    Parameters
    ----------
    margin : Tensor or array-like, shape (...)
        Chosen-minus-rejected log-ratio difference h (see ``margin``).
    beta : float > 0
        KL strength beta of Rafailov et al. (tau in Azar et al. Eq. (4); TRL's ``beta``).
    label_smoothing : float in [0, 0.5), default 0
        Label-flip probability epsilon of cDPO (TRL <= 0.28 ``label_smoothing`` of "sigmoid").

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses, same shape as ``margin``; its dtype (float32 for a float16 margin).

    Raises
    ------
    ValueError
        If ``margin`` is not finite, ``beta <= 0`` or ``label_smoothing`` is outside [0, 0.5).

    Notes
    -----
    ``-log sigma(z)`` is computed as ``softplus(-z)``, finite (value and gradient) for any finite
    z, where ``log(sigmoid(z))`` underflows to ``log 0 = -inf`` for z below about -100 (float32).
    DPO is PsiPO with :math:`\Psi = \mathrm{logit}` (Azar et al., Sec. 4.1, Prop. 1); in the
    population it is minimised by the RLHF optimum :math:`\mu\,e^{r/\beta}/Z` under Bradley-Terry.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (7) (DPO);
    Mitchell (2023), "A note on DPO with noisy preferences", Eq. (3) (cDPO);
    Azar et al., arXiv:2310.12036v2, Sec. 4.1 and Prop. 1 (DPO as PsiPO).

    Examples
    --------
    >>> round(float(dpo_loss(6.0, beta=0.1)), 6)
    0.437488
    """
    return _in_float32_if_half(
        _dpo_value, _as_margin(margin), as_hyper(beta, "beta"), _label_smoothing(label_smoothing)
    )


# Kernels: the formulas themselves, without validation (the exact engine validates once, then
# calls them at every step). Each value kernel has its derivative in the margin beside it.


def _dpo_value(h: Tensor, beta: Any, label_smoothing: Any = 0.0) -> Tensor:
    x = beta * h
    if isinstance(label_smoothing, float) and label_smoothing == 0.0:
        return _neg_logsigmoid(x)  # -log sigma(beta h): pushes h up
    # (1 - eps) on the observed order, eps on the flipped one (Mitchell's note, Eq. 3)
    return (1.0 - label_smoothing) * _neg_logsigmoid(x) + label_smoothing * _neg_logsigmoid(-x)


def _dpo_slope(h: Tensor, beta: Any, label_smoothing: Any = 0.0) -> Tensor:
    # d/dh [(1-eps) softplus(-x) + eps softplus(x)] = beta [eps sigma(x) - (1-eps) sigma(-x)], x = beta h
    if isinstance(label_smoothing, float) and label_smoothing == 0.0:
        return -beta * torch.sigmoid(-beta * h)
    x = beta * h
    return beta * (label_smoothing * torch.sigmoid(x) - (1.0 - label_smoothing) * torch.sigmoid(-x))


def robust_dpo_loss(margin: Any, beta: float, label_smoothing: float) -> Tensor:
    r"""Per-pair robust DPO (rDPO) loss: an unbiased estimate of the clean DPO loss under label noise.

    .. math::
        \ell(h) = \frac{(1-\varepsilon)\,\bigl(-\log\sigma(\beta h)\bigr)
                        - \varepsilon\,\bigl(-\log\sigma(-\beta h)\bigr)}{1 - 2\varepsilon}

    If each label is flipped with probability epsilon, then
    :math:`(1-\varepsilon)\,\ell(h) + \varepsilon\,\ell(-h) = -\log\sigma(\beta h)`: in expectation
    over the flip this is the DPO loss on the clean label. It pushes the margin **up**, harder than
    DPO: :math:`\partial\ell/\partial h \to -\beta\varepsilon/(1-2\varepsilon) < 0` as ``h -> +inf``.

    Parameters
    ----------
    margin : Tensor or array-like, shape (...)
        Chosen-minus-rejected log-ratio difference h.
    beta : float > 0
        KL strength beta (as in ``dpo_loss``).
    label_smoothing : float in [0, 0.5)
        Assumed flip probability epsilon. ``0`` gives ``dpo_loss``. No default: the estimator is only
        meaningful for the noise level the data really has.

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses, same shape as ``margin``; its dtype (float32 for a float16 margin).

    Raises
    ------
    ValueError
        If ``margin`` is not finite, ``beta <= 0`` or ``label_smoothing`` is outside [0, 0.5).

    Notes
    -----
    **Pitfall: unbounded below.** For ``h -> +inf`` the loss behaves like
    :math:`-\varepsilon\beta h / (1-2\varepsilon) \to -\infty`, so on a finite tabular data set in
    which a pair appears in one direction only, minimising rDPO diverges (it has no minimiser). It is
    finite (value and gradient) for every finite margin.

    References
    ----------
    Chowdhury et al., arXiv:2403.00409v2, Sec. 3, the de-biased rDPO loss (equation number not
    checked against the PDF); formula as in TRL ``loss_type="robust"``.

    Examples
    --------
    >>> round(float(robust_dpo_loss(0.0, beta=0.1, label_smoothing=0.1)), 6)
    0.693147
    """
    return _in_float32_if_half(
        _robust_dpo_value,
        _as_margin(margin),
        as_hyper(beta, "beta"),
        _label_smoothing(label_smoothing),
    )


def _robust_dpo_value(h: Tensor, beta: Any, label_smoothing: Any) -> Tensor:
    x, eps = beta * h, label_smoothing
    loss_clean = _neg_logsigmoid(x)  # -log sigma(beta h), the observed order
    loss_flipped = _neg_logsigmoid(-x)  # -log sigma(-beta h), the flipped order
    return ((1.0 - eps) * loss_clean - eps * loss_flipped) / (1.0 - 2.0 * eps)


def _robust_dpo_slope(h: Tensor, beta: Any, label_smoothing: Any) -> Tensor:
    x, eps = beta * h, label_smoothing
    return -beta * ((1.0 - eps) * torch.sigmoid(-x) + eps * torch.sigmoid(x)) / (1.0 - 2.0 * eps)


def ipo_loss(margin: Any, tau: float) -> Tensor:
    r"""Per-pair IPO loss; pulls the margin to the finite target 1 / (2 tau) from both sides.

    .. math:: \ell(h) = \left(h - \frac{1}{2\tau}\right)^2

    :math:`\partial\ell/\partial h = 2(h - 1/(2\tau))`: the loss pushes the margin up below the target
    and down above it, so even a pair seen in one direction only keeps a finite margin. IPO is PsiPO
    with :math:`\Psi` the identity; its population minimiser is :math:`\mu\,e^{(P\nu)/\tau}/Z`.

    Parameters
    ----------
    margin : Tensor or array-like, shape (...)
        Chosen-minus-rejected log-ratio difference h.
    tau : float > 0
        Regularisation strength tau of Azar et al. (TRL's ``beta`` for ``loss_type="ipo"``).

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses, same shape as ``margin``; its dtype (float32 for a float16 margin).

    Raises
    ------
    ValueError
        If ``margin`` is not finite or ``tau <= 0``.

    Notes
    -----
    **Sum or mean over tokens: this function is agnostic, the caller decides.** The theory (and the
    population minimiser above) uses the *sum* of completion-token log-probabilities in each term of
    h, as the official DPO code does for ``loss=ipo``. huggingface/trl's ``DPOTrainer`` averages per
    token for IPO (PR #1265, commit 29d439a), i.e. passes
    :math:`h_w/|y_w| - h_l/|y_l|`; that is a different loss, whose minimiser is not
    :math:`\mu e^{P\nu/\tau}` and whose effective target on the summed margin grows with length.
    TRL's ``OnlineDPOTrainer`` and ``XPOTrainer`` sum. The GPT-2 log-prob function therefore takes an
    explicit ``reduction`` with no default.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (17) (sampled IPO loss), Eq. (8)-(9) (Psi = identity).

    Examples
    --------
    >>> float(ipo_loss(6.0, tau=0.1))
    1.0
    """
    return _in_float32_if_half(_ipo_value, _as_margin(margin), as_hyper(tau, "tau"))


def _ipo_value(h: Tensor, tau: Any) -> Tensor:
    return (h - 1.0 / (2.0 * tau)) ** 2  # target tau^{-1} / 2, Azar et al. Eq. (17)


def _ipo_slope(h: Tensor, tau: Any) -> Tensor:
    return 2.0 * (h - 1.0 / (2.0 * tau))


def slic_loss(margin: Any, beta: float) -> Tensor:
    r"""Per-pair reference-normalised SLiC hinge loss; pushes the margin up until beta * h >= 1.

    .. math:: \ell(h) = \max(0,\ 1 - \beta h) = \beta\,\max(0,\ 1/\beta - h)

    :math:`\partial\ell/\partial h = -\beta` while :math:`\beta h < 1` and 0 beyond: once the margin
    :math:`1/\beta` is met the pair stops contributing, so on deterministic data every
    :math:`h \ge 1/\beta` is optimal (a set of minimisers, not a point).

    Parameters
    ----------
    margin : Tensor or array-like, shape (...)
        Chosen-minus-rejected log-ratio difference h.
    beta : float > 0
        Inverse hinge margin (TRL's ``beta`` for ``loss_type="hinge"``).

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses, same shape as ``margin``; its dtype (float32 for a float16 margin).

    Raises
    ------
    ValueError
        If ``margin`` is not finite or ``beta <= 0``.

    Notes
    -----
    SLiC-HF's rank-calibration loss is a hinge on *raw* sequence log-likelihoods with margin delta,
    plus a cross-entropy regulariser; this is the reference-normalised variant used in practice
    (TRL ``loss_type="hinge"``; the "hinge" case of GPO). At the kink ``beta * h = 1`` autograd
    returns the left derivative ``-beta`` (``torch.clamp_min`` passes the gradient at equality).

    References
    ----------
    Zhao et al., arXiv:2305.10425v1 (SLiC-HF, rank calibration loss, Sec. 2);
    Tang et al., arXiv:2402.05749v2, Sec. 2 (hinge case of GPO).

    Examples
    --------
    >>> round(float(slic_loss(6.0, beta=0.1)), 12)
    0.4
    """
    return _in_float32_if_half(_slic_value, _as_margin(margin), as_hyper(beta, "beta"))


def _slic_value(h: Tensor, beta: Any) -> Tensor:
    return torch.clamp_min(1.0 - beta * h, 0.0)


def _slic_slope(h: Tensor, beta: Any) -> Tensor:
    # torch.clamp_min passes the gradient at equality, so the kink beta h = 1 counts as active.
    return -beta * (beta * h <= 1.0).to(h.dtype)
