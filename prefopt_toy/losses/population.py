r"""The exact population objective of a per-pair loss on a K-armed bandit, by enumeration.

One algorithm of the exact engine = a pair sampler x a label model x a per-pair loss:

- pair sampler ``s``: a fixed distribution ``nu`` (offline; default ``mu``), or a callable evaluated
  on the current policy with stop-gradient (online: ``lambda p: p``; IPO-MD:
  ``lambda p: geometric_mixture(p, mu, m)``);
- label model ``L[y, y']``, the probability that y is labelled the winner over y': soft labels
  ``L = P`` (default) or hard labels (``hard_labels(P)``);
- per-pair loss: any callable of the margin tensor, e.g. ``functools.partial(dpo_loss, beta=0.1)``.

``population_loss`` sums over all K^2 ordered pairs, so its value and its autograd gradient are exact
expectations, not sampled estimates. ``dataset_loss`` is the empirical loss on a finite list of
(winner, loser) pairs, for the sampled toys of Azar et al. Sec. 5.4.

Shapes: only logits ``theta`` of shape (K,) are supported, but every operation is on the last axes,
so a leading batch axis can be added later without rewriting the maths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_index_pairs, as_policy, as_preference_matrix, as_vector
from prefopt_toy.policies import normalize_log

__all__ = ["dataset_loss", "hard_labels", "pair_margins", "population_loss"]

PairLoss = Callable[[Tensor], Tensor]


def _log_pi(theta: Any, k: int) -> Tensor:
    """``log softmax(theta)`` for logits of shape (K,); differentiable in ``theta``."""
    theta_t = as_vector(theta, "theta", size=k)  # keeps autograd when theta requires grad
    return normalize_log(theta_t)  # (K,); theta_t is already checked, so not log_softmax again


def margin_matrix(log_ratio: Tensor) -> Tensor:
    # h[y, y'] = log(pi/mu)(y) - log(pi/mu)(y'): row = first (winner) action, column = second.
    return log_ratio[..., :, None] - log_ratio[..., None, :]  # (K, K)


def _check_loss(loss: Any) -> PairLoss:
    if not callable(loss):
        raise ValueError(
            f"loss must be a callable of the margin tensor (e.g. functools.partial(dpo_loss, beta=0.1)), "
            f"got {type(loss).__name__}"
        )
    return loss


def _apply_loss(loss: PairLoss, h: Tensor) -> Tensor:
    values = loss(h)
    if not isinstance(values, Tensor) or values.shape != h.shape:
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(
            f"loss must map the margin tensor of shape {tuple(h.shape)} elementwise to a tensor of the "
            f"same shape (no reduction), got {shape}"
        )
    return values


def pair_margins(theta: Any, mu: Any) -> Tensor:
    r"""Matrix of log-ratio margins of all ordered pairs of actions.

    .. math:: h[y, y'] = \log\frac{\pi(y)}{\mu(y)} - \log\frac{\pi(y')}{\mu(y')},
              \qquad \pi = \mathrm{softmax}(\theta)

    Parameters
    ----------
    theta : Tensor or array-like, shape (K,)
        Logits of the policy (autograd is kept when ``theta`` requires grad).
    mu : array-like, shape (K,)
        Reference policy, strictly positive.

    Returns
    -------
    Tensor, shape (K, K), float64
        Antisymmetric; ``h[y, y']`` is the margin of y (chosen) over y' (rejected).

    Raises
    ------
    ValueError
        If ``mu`` is not a strictly positive probability vector or ``theta`` has the wrong length.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Sec. 5.1 (h_pi).

    Examples
    --------
    >>> pair_margins([0.0, 0.0], [0.75, 0.25])
    tensor([[ 0.0000, -1.0986],
            [ 1.0986,  0.0000]], dtype=torch.float64)
    """
    mu_t = as_policy(mu, "mu", positive=True)
    return margin_matrix(_log_pi(theta, mu_t.shape[-1]) - mu_t.log())


def hard_labels(P: Any) -> Tensor:
    r"""Hard (majority) labels of a preference matrix: 1 where P > 1/2, 1/2 on ties, 0 elsewhere.

    .. math:: L[y, y'] = \mathbb{1}[P_{yy'} > \tfrac12] + \tfrac12\,\mathbb{1}[P_{yy'} = \tfrac12]

    The comparison is made on :math:`P - P^\top` so that ``L + L.T == 1`` holds exactly even when
    ``P`` is complementary only up to round-off.

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 6 (online DPO/IPO with preference-model labels);
    TRL's OnlineDPOTrainer labels the higher-scored completion as chosen (huggingface/trl,
    ``trl/experimental/online_dpo/online_dpo_trainer.py``).

    Examples
    --------
    >>> hard_labels([[0.5, 0.7], [0.3, 0.5]])
    tensor([[0.5000, 1.0000],
            [0.0000, 0.5000]], dtype=torch.float64)
    """
    return hard_label_kernel(as_preference_matrix(P))


def hard_label_kernel(P: Tensor) -> Tensor:
    """``hard_labels`` without validation, for (..., K, K) stacks (the exact engine's label model)."""
    lead = P - P.transpose(-1, -2)  # antisymmetric: its sign decides both orders consistently
    return (lead > 0).to(P.dtype) + 0.5 * (lead == 0).to(P.dtype)


def _labels(labels: Any, P_t: Tensor) -> Tensor:
    if labels is None or (isinstance(labels, str) and labels == "soft"):
        return P_t
    if isinstance(labels, str):
        if labels == "hard":
            return hard_label_kernel(P_t)  # P_t is already validated
        raise ValueError(f"labels must be 'soft', 'hard' or a K x K matrix, got {labels!r}")
    L = as_preference_matrix(labels, "labels")
    if L.shape != P_t.shape:
        raise ValueError(
            f"labels must have the shape of P {tuple(P_t.shape)}, got {tuple(L.shape)}"
        )
    return L


def _pair_distribution(nu: Any, log_pi: Tensor, mu_t: Tensor) -> Tensor:
    k = mu_t.shape[-1]
    if nu is None:
        return mu_t
    if callable(nu):
        out = nu(log_pi.detach().exp())
        if isinstance(out, Tensor):
            out = out.detach()  # stop-gradient: the sampler is data, not part of the model
        return as_policy(out, "nu(pi)", size=k)
    return as_policy(nu, "nu", size=k)


def population_loss(
    theta: Any,
    P: Any,
    mu: Any,
    loss: PairLoss,
    *,
    nu: Any = None,
    labels: Any = None,
) -> Tensor:
    r"""Exact expected per-pair loss over pairs from ``s x s`` and labels from ``L``.

    One comparison draws :math:`(Y, Y') \sim s \otimes s` and labels :math:`Y` the winner with
    probability :math:`L[Y, Y']` (else :math:`Y'`); the loss is paid on the margin of winner over
    loser. Summing both orders and using :math:`L + L^\top = 1`,

    .. math::
        \mathcal{L}(\theta)
        = \sum_{y,y'} s_y s_{y'} \bigl(L_{yy'}\,\ell(h_{yy'}) + L_{y'y}\,\ell(h_{y'y})\bigr)
        = 2 \sum_{y,y'} s_y\, s_{y'}\, L_{yy'}\, \ell(h_{yy'}),

    with :math:`h` from ``pair_margins`` and :math:`\pi = \mathrm{softmax}(\theta)`. This is the
    expected loss of *one* comparison: at :math:`\pi = \mu` (all margins 0) it equals
    :math:`\ell(0)`, e.g. :math:`\ln 2` for DPO and :math:`1/(4\tau^2)` for IPO. (Azar et al. write
    the same sum without the factor 2; it changes no minimiser.)

    Parameters
    ----------
    theta : Tensor, shape (K,)
        Logits of the policy; the result is differentiable in ``theta`` when it requires grad.
    P : array-like, shape (K, K)
        Preference matrix, ``P[y, y'] = Pr(y beats y')``, ``P + P.T == 1``.
    mu : array-like, shape (K,)
        Reference policy (the KL anchor in the margins), strictly positive.
    loss : callable
        Per-pair loss, elementwise on a margin tensor of shape (K, K) and returning that shape, e.g.
        ``functools.partial(dpo_loss, beta=0.1)``, ``functools.partial(ipo_loss, tau=0.1)``,
        ``functools.partial(gpo_loss, beta=1.0, f="exponential")``.
    nu : None, array-like of shape (K,), or callable, optional
        Pair distribution ``s``. ``None``: ``mu``. A vector: that fixed distribution (zeros allowed).
        A callable: ``s = nu(pi.detach())``, a probability vector evaluated on the current policy
        with stop-gradient; ``lambda p: p`` is online sampling (online IPO / online DPO), and
        ``lambda p: geometric_mixture(p, mu, m)`` is IPO-MD's mixture sampling.
    labels : None, "soft", "hard" or array-like of shape (K, K), optional
        Label model ``L[y, y']`` = probability that y is labelled the winner over y'. ``None`` or
        ``"soft"``: ``P``. ``"hard"``: ``hard_labels(P)``. A matrix must satisfy ``L + L.T == 1``.

    Returns
    -------
    Tensor, shape (), float64

    Raises
    ------
    ValueError
        On a bad ``P``; ``mu`` not strictly positive; ``theta``, ``nu`` or ``labels`` of the wrong
        size; ``nu`` or ``nu(pi)`` not a probability vector; ``labels`` not complementary;
        ``loss`` not callable or not elementwise.

    Notes
    -----
    The stop-gradient on ``s`` makes the gradient of an online objective the *expected sampled
    gradient* (Calandriello et al.), not the gradient of the objective as a function of the sampler.
    Pairs with ``s_y s_y' L = 0`` contribute ``0 * loss``; every loss in ``prefopt_toy.losses.pairwise`` and
    ``prefopt_toy.losses.gpo`` is finite for finite margins, so this is 0.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (10), (13), (16) (offline population losses);
    Calandriello et al., arXiv:2403.08635v1, Eq. (10)-(11) (offline and online IPO, label sampler).

    Examples
    --------
    >>> from functools import partial
    >>> from prefopt_toy.losses.pairwise import dpo_loss
    >>> P = [[0.5, 0.8], [0.2, 0.5]]
    >>> round(float(population_loss([0.0, 0.0], P, [0.5, 0.5], partial(dpo_loss, beta=0.1))), 6)
    0.693147
    """
    P_t = as_preference_matrix(P)
    k = P_t.shape[0]
    mu_t = as_policy(mu, "mu", size=k, positive=True)
    loss_fn = _check_loss(loss)
    L = _labels(labels, P_t)
    log_pi = _log_pi(theta, k)  # (K,)
    s = _pair_distribution(nu, log_pi, mu_t)  # (K,), no gradient
    log_ratio = log_pi - mu_t.log()  # log(pi/mu); mu > 0 was checked
    h = margin_matrix(log_ratio)  # (K, K)
    values = _apply_loss(loss_fn, h)
    # 2 s_y s_y' L[y, y']: the two orders of one unordered draw, merged with L + L.T = 1.
    weights = 2.0 * s[..., :, None] * s[..., None, :] * L  # (K, K)
    return (weights * values).sum(dim=(-2, -1))


def _as_pairs(pairs: Any, k: int) -> Tensor:
    return torch.as_tensor(as_index_pairs(pairs, "pairs", k), dtype=torch.long)


def dataset_loss(theta: Any, mu: Any, pairs: Any, loss: PairLoss) -> Tensor:
    r"""Empirical loss on a finite data set of (winner, loser) pairs: the mean of ``loss(h)``.

    .. math:: \hat{\mathcal{L}}(\theta) = \frac1N \sum_{n=1}^{N} \ell\bigl(h(y_w^{(n)}, y_l^{(n)})\bigr)

    This is the expectation of the sampled loss under uniform sampling from the data set (hard labels
    as listed), e.g. the IPO paper's D1 = ``[(0, 1), (1, 2), (0, 2)]``.

    Parameters
    ----------
    theta : Tensor or array-like, shape (K,)
        Logits of the policy (autograd kept).
    mu : array-like, shape (K,)
        Reference policy, strictly positive.
    pairs : array-like of int, shape (N, 2)
        Rows ``(winner, loser)``; repeated rows count repeatedly.
    loss : callable
        Per-pair loss of a margin tensor (as in ``population_loss``).

    Returns
    -------
    Tensor, shape (), float64

    Raises
    ------
    ValueError
        If ``mu`` is not strictly positive, ``theta`` has the wrong length, ``pairs`` is empty, not
        integer or out of range, or ``loss`` is not an elementwise callable.

    References
    ----------
    Azar et al., arXiv:2310.12036v2, Eq. (17) and Sec. 5.4 (sampled losses on D1).

    Examples
    --------
    >>> from functools import partial
    >>> from prefopt_toy.losses.pairwise import ipo_loss
    >>> float(dataset_loss([0.0, 0.0, 0.0], [1/3, 1/3, 1/3], [(0, 1), (1, 2)], partial(ipo_loss, tau=0.5)))
    1.0
    """
    mu_t = as_policy(mu, "mu", positive=True)
    k = mu_t.shape[-1]
    loss_fn = _check_loss(loss)
    idx = _as_pairs(pairs, k)  # (N, 2)
    log_ratio = _log_pi(theta, k) - mu_t.log()  # (K,)
    h = log_ratio[..., idx[:, 0]] - log_ratio[..., idx[:, 1]]  # (N,)
    return _apply_loss(loss_fn, h).mean(dim=-1)
