r"""Unlearning losses on summed sequence log-probs: gradient ascent, NPO, AltPO and the retain NLL.

Each function is elementwise and does not reduce: the output has the shape of its inputs, and the
caller averages over a batch (GPT-2) or sums over contexts (the exact toy). Inputs are summed
sequence log-probabilities :math:`\log\pi(y\mid x)` of equal shape (nothing is broadcast); the
references are the frozen model *before* unlearning.

Sign conventions: every function is a quantity to **minimise**.

- ``gradient_ascent_loss`` is :math:`\log\pi(y_f)`: minimising it ascends the forget NLL;
- ``npo_loss`` is :math:`-\tfrac{2}{\beta}\log\sigma\bigl(-\beta(\log\pi(y_f) - \log\mu(y_f))\bigr)`,
  decreasing as the forget answer's log-ratio falls, with slope
  :math:`2\sigma(\beta x) \in (0, 2)` in :math:`x = \log\pi(y_f)/\mu(y_f)`, so it tends to gradient
  ascent's slope 1 as :math:`\beta \to 0` at every fixed x (error :math:`\tanh(\beta x/2)`);
- ``altpo_loss`` is DPO's loss, scaled by :math:`2/\beta`, with an alternate answer preferred over
  the forget answer; with the alternate's log-ratio fixed at 0 it is ``npo_loss``;
- ``retain_nll`` is :math:`-\log\pi(y)`, the negative log-likelihood on retained data.

Dtypes follow ``prefopt_toy.losses.pairwise``: lists, numbers and numpy arrays become float64;
tensors keep their dtype, except that float16 input gives a float32 loss, and half precision
(float16, bfloat16) is computed in float32 and rounded once. Every loss is finite in value and
gradient for finite input (``-log sigma`` as a softplus); NaN or inf input raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_hyper

from .pairwise import _HALF, _as_margin, _loss_dtype, _neg_logsigmoid

__all__ = ["altpo_loss", "gradient_ascent_loss", "npo_loss", "retain_nll"]


def _logps(named: dict[str, Any]) -> tuple[list[Tensor], torch.dtype]:
    """Validated log-prob tensors of one shape (the first one's) and the dtype to compute in."""
    tensors = [_as_margin(value, name) for name, value in named.items()]
    first_name = next(iter(named))
    for name, t in zip(named, tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"{name} must have the shape of {first_name} {tuple(tensors[0].shape)}, "
                f"got {tuple(t.shape)}"
            )
    common = tensors[0].dtype
    for t in tensors[1:]:
        common = torch.promote_types(common, t.dtype)
    return tensors, common


def _compute(kernel: Any, tensors: list[Tensor], common: torch.dtype, *args: Any) -> Tensor:
    """``kernel(*tensors, *args)`` in ``common``; half precision in float32, rounded once."""
    if common in _HALF:
        wide = [t.to(torch.float32) for t in tensors]
        return kernel(*wide, *args).to(_loss_dtype(common))
    return kernel(*[t.to(common) for t in tensors], *args)


def gradient_ascent_loss(policy_logps: Any) -> Tensor:
    r"""Per-example gradient-ascent (GA) unlearning loss: the forget answer's log-prob itself.

    .. math:: \ell = \log\pi(y_f\mid x)

    Minimising it is gradient *ascent* on the forget answer's negative log-likelihood: it pushes
    :math:`\log\pi(y_f)` **down** without limit (its slope is 1 everywhere, so nothing stops it).
    On a softmax over answers each step changes the logits by :math:`-\eta(e_f - \pi)`: every other
    answer's logit rises in proportion to its current probability, so the freed mass goes mostly
    to the mode (the "squeezing effect" of Ren & Sutherland).

    Parameters
    ----------
    policy_logps : Tensor or array-like, shape (...)
        Summed log-probs :math:`\log\pi(y_f\mid x)` of the forget answers.

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses (a float32 tensor for float16 input, otherwise the input's dtype; float64
        for non-tensor input).

    Raises
    ------
    ValueError
        If ``policy_logps`` is not finite or not real.

    References
    ----------
    Maini et al., arXiv:2401.06121v1, Sec. 5 (TOFU's gradient-ascent baseline);
    Zhang et al., arXiv:2404.05868v2, Sec. 3 (gradient ascent as the forget loss);
    Ren & Sutherland, arXiv:2407.10490, Sec. 3.3 and 4 (the squeezing effect of negative gradients).

    Examples
    --------
    >>> gradient_ascent_loss([-1.0, -2.5])
    tensor([-1.0000, -2.5000], dtype=torch.float64)
    """
    tensors, common = _logps({"policy_logps": policy_logps})
    return _compute(_ga_value, tensors, common)


def _ga_value(policy: Tensor) -> Tensor:
    return policy * 1.0  # a new tensor (never the caller's), differentiable


def retain_nll(policy_logps: Any) -> Tensor:
    r"""Per-example negative log-likelihood on retained data: :math:`-\log\pi(y\mid x)`.

    The retain term of GradDiff (gradient ascent plus retain NLL), NPO+RT and AltPO; it pushes the
    retained answer's log-prob **up**. The caller weights it (AltPO's ``retain_wt``, 1 in the
    official recipe) and adds it to the forget term.

    Parameters
    ----------
    policy_logps : Tensor or array-like, shape (...)
        Summed log-probs of the retained answers.

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses (dtype as ``gradient_ascent_loss``).

    Raises
    ------
    ValueError
        If ``policy_logps`` is not finite or not real.

    References
    ----------
    Maini et al., arXiv:2401.06121v1, Sec. 5 (gradient difference: GA on forget, NLL on retain);
    Mekala et al., arXiv:2409.13474v1, Sec. 3 (AltPO's retain term).

    Examples
    --------
    >>> retain_nll([-0.5])
    tensor([0.5000], dtype=torch.float64)
    """
    tensors, common = _logps({"policy_logps": policy_logps})
    return _compute(_nll_value, tensors, common)


def _nll_value(policy: Tensor) -> Tensor:
    return -policy


def npo_loss(policy_logps: Any, reference_logps: Any, beta: float = 0.1) -> Tensor:
    r"""Per-example NPO (negative preference optimisation) loss on a forget answer.

    .. math::
        \ell = -\frac{2}{\beta}\log\sigma\bigl(-\beta x\bigr), \qquad
        x = \log\pi(y_f\mid x) - \log\mu(y_f\mid x)

    It pushes the forget answer's log-ratio x **down**, like gradient ascent, but with the slope
    :math:`\partial\ell/\partial x = 2\sigma(\beta x)`: 1 at the reference (x = 0), falling to 0 as
    :math:`x \to -\infty` (the step saturates once the answer is forgotten) and rising to 2 as
    :math:`x \to +\infty`.

    **The gradient-ascent limit.** For every fixed x, :math:`2\sigma(\beta x) \to 1` as
    :math:`\beta \to 0`, with error :math:`|2\sigma(\beta x) - 1| = |\tanh(\beta x/2)| \le \beta|x|/2`:
    NPO's gradient tends to ``gradient_ascent_loss``'s, with the same step size (no rescaling).
    The value itself diverges, :math:`\ell = 2\log 2/\beta + x + O(\beta x^2)`: a constant that
    does not move the policy.

    Parameters
    ----------
    policy_logps, reference_logps : Tensor or array-like, shape (...)
        Summed log-probs of the forget answers under the policy and under the frozen model before
        unlearning.
    beta : float > 0, default 0.1
        Inverse temperature (0.1 in the NPO paper's TOFU runs and in AltPO's code).

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses; float64 for non-tensor input, float32 for float16 input, else the
        promoted dtype of the inputs.

    Raises
    ------
    ValueError
        Non-finite input, shapes that differ, ``beta <= 0``.

    References
    ----------
    Zhang et al., arXiv:2404.05868v2, Sec. 3 (the NPO loss L_NPO, its gradient and the gradient-ascent
    limit as beta -> 0).

    Examples
    --------
    >>> round(float(npo_loss(-3.0, -3.0, beta=0.1)), 6)  # at the reference: (2 / beta) log 2
    13.862944
    """
    tensors, common = _logps({"policy_logps": policy_logps, "reference_logps": reference_logps})
    return _compute(_npo_value, tensors, common, as_hyper(beta, "beta"))


def _npo_value(policy: Tensor, reference: Tensor, beta: Any) -> Tensor:
    return (2.0 / beta) * _neg_logsigmoid(-beta * (policy - reference))


def altpo_loss(
    policy_alternate_logps: Any,
    reference_alternate_logps: Any,
    policy_forget_logps: Any,
    reference_forget_logps: Any,
    beta: float = 0.1,
) -> Tensor:
    r"""Per-pair AltPO preference term: an alternate answer preferred over the forget answer.

    .. math::
        \ell = -\frac{2}{\beta}\log\sigma\Bigl(\beta\bigl[(\log\pi(\tilde y) - \log\mu(\tilde y))
               - (\log\pi(y_f) - \log\mu(y_f))\bigr]\Bigr)

    DPO's loss (Rafailov et al. Eq. 7) times :math:`2/\beta`, with the alternate :math:`\tilde y`
    as the chosen and the forget answer :math:`y_f` as the rejected response. It pushes the
    alternate's log-ratio **up** and the forget answer's **down**. The official code forms one
    pair per alternate (``augment_k = 5``) and adds ``retain_wt * NLL(retain)``; this function is
    the pair term only (add ``retain_nll`` yourself).

    **Reduction to NPO.** With the alternate term absent, i.e. its log-ratio fixed at 0
    (``policy_alternate_logps == reference_alternate_logps``), the argument is
    :math:`-\beta(\log\pi(y_f) - \log\mu(y_f))` and the loss is exactly ``npo_loss`` (Mekala et al.
    Sec. 3 state the same).

    Parameters
    ----------
    policy_alternate_logps, reference_alternate_logps : Tensor or array-like, shape (...)
        Summed log-probs of the alternate answers (policy; frozen model before unlearning).
    policy_forget_logps, reference_forget_logps : Tensor or array-like, shape (...)
        Summed log-probs of the forget answers, paired entry by entry with the alternates.
    beta : float > 0, default 0.1
        Inverse temperature (0.1 in the official recipe).

    Returns
    -------
    Tensor, shape (...)
        Unreduced losses (dtype as ``npo_loss``).

    Raises
    ------
    ValueError
        Non-finite input, shapes that differ, ``beta <= 0``.

    References
    ----------
    Mekala et al., arXiv:2409.13474v1, Sec. 3 (the AltPO objective);
    official code ``molereddy/Alternate-Preference-Optimization`` (``forget_loss=subdpo``,
    ``augment_k = 5``, beta 0.1, retain_wt 1);
    Zhang et al., arXiv:2404.05868v2, Sec. 3 (NPO, the alternate-free case).

    Examples
    --------
    >>> round(float(altpo_loss(-2.0, -2.0, -3.0, -3.0, beta=0.1)), 6)  # equal log-ratios
    13.862944
    """
    tensors, common = _logps(
        {
            "policy_alternate_logps": policy_alternate_logps,
            "reference_alternate_logps": reference_alternate_logps,
            "policy_forget_logps": policy_forget_logps,
            "reference_forget_logps": reference_forget_logps,
        }
    )
    return _compute(_altpo_value, tensors, common, as_hyper(beta, "beta"))


def _altpo_value(pa: Tensor, ra: Tensor, pf: Tensor, rf: Tensor, beta: Any) -> Tensor:
    h = (pa - ra) - (pf - rf)
    return (2.0 / beta) * _neg_logsigmoid(beta * h)
