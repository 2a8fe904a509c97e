r"""Likelihood displacement in DPO, computed exactly on a log-linear policy.

Training DPO on a pair (chosen :math:`y^+`, rejected :math:`y^-`) only asks the *margin*

.. math:: h = \log\frac{\pi(y^+)}{\mu(y^+)} - \log\frac{\pi(y^-)}{\mu(y^-)}

to grow. With more than two responses nothing forces :math:`\log\pi(y^+)` up: both log-probabilities
can fall while ``h`` grows, the mass moving to a third response. Razin et al. ("Unintentional
Unalignment: Likelihood Displacement in Direct Preference Optimization", arXiv:2410.08847) call
this *likelihood displacement* and trace it to similar embeddings of the chosen and rejected
responses; Pal et al. ("Smaug", arXiv:2402.13228) observe the chosen likelihood falling on pairs
that differ in few tokens and add a penalty (DPOP) against it.

In a plain tabular softmax with one pair it cannot happen: the DPO gradient moves only the logits
of :math:`y^+` (up) and :math:`y^-` (down), so :math:`\pi(y^+)` rises. It needs shared
parameters. Here the policy is log-linear,

.. math:: \pi_w(y) = \frac{\exp(\phi(y)\cdot w)}{\sum_{y'}\exp(\phi(y')\cdot w)},

with a feature (embedding) vector :math:`\phi(y) \in \mathbb R^d` per response (``features``,
shape (K, d); the identity matrix gives back the tabular softmax), and the reference policy is
:math:`\mu = \pi_{w_\text{ref}}`. The DPO loss of one pair, :math:`-\log\sigma(\beta h)`, has the
exact gradient

.. math:: \nabla_w \ell = -\beta\,\sigma(-\beta h)\,\big(\phi(y^+) - \phi(y^-)\big),

so gradient descent from ``w0`` moves ``w`` along the single direction
:math:`\delta = \phi(y^+) - \phi(y^-)`: :math:`w_t = w_0 + s_t\delta` with :math:`s_t` increasing.
Along that ray, with :math:`a = \Phi\delta` (the score of each response along the direction),

.. math:: \frac{d}{ds}\log\pi(y) = a_y - E_{\pi}[a], \qquad \frac{d}{ds}E_{\pi}[a] = \mathrm{Var}_{\pi}(a) \ge 0.

Hence (``displacement_criterion``, from :mod:`prefopt_toy.displacement_criterion`): if
:math:`a_{y^+} < E_{\pi_{w_0}}[a]` the chosen log-probability falls at *every* step, and if some
response has :math:`a_z > a_{y^+}` it falls eventually (the policy concentrates on
:math:`\arg\max_y a_y`). In the tabular case :math:`a_{y^+} = 1` is the largest score, so the
chosen response only gains. Everything is float64 with closed-form gradients,
deterministic, no sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._validate import as_int, as_positive_float
from .displacement_criterion import DisplacementCriterion, displacement_criterion
from .displacement_examples import (
    EXAMPLES,
    DisplacementExample,
    displacement_example,
    plot_displacement,
)
from .displacement_inputs import _features, _pairs, _weights
from .policies import normalize_log

__all__ = [
    "EXAMPLES",
    "DisplacementCriterion",
    "DisplacementExample",
    "DisplacementRun",
    "displacement_criterion",
    "displacement_example",
    "displacement_run",
    "dpo_loss_and_gradient",
    "log_linear_policy",
    "log_prob_velocity",
    "plot_displacement",
]

# --------------------------------------------------------------------------- exact maths


def log_linear_policy(features: Any, w: Any) -> Tensor:
    r"""Log-probabilities :math:`\log\pi_w(y) = \phi(y)\cdot w - \log\sum_{y'} e^{\phi(y')\cdot w}`.

    Parameters
    ----------
    features : array-like, shape (K, d)
        One feature (embedding) vector per response; the identity gives the tabular softmax.
    w : array-like, shape (d,)
        Parameters.

    Returns
    -------
    Tensor, shape (K,), float64.

    References
    ----------
    Razin et al., arXiv:2410.08847 (the policy's log-probabilities as embeddings times
    parameters, their model of the last layer).

    Examples
    --------
    >>> log_linear_policy([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]).exp()
    tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    phi = _features(features)
    return normalize_log(phi @ _weights(w, "w", phi.shape[1]))


def _loss_grad(phi: Tensor, pairs: Tensor, w: Tensor, log_mu: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Log-policy, margins, mean DPO loss and its exact gradient in ``w`` (no validation)."""
    log_pi = normalize_log(phi @ w)
    ratio = log_pi - log_mu
    h = ratio[..., pairs[:, 0]] - ratio[..., pairs[:, 1]]  # DPO margins (m,)
    loss = torch.nn.functional.softplus(-beta * h).mean()  # -log sigma(beta h), finite for any h
    slope = -beta * torch.sigmoid(-beta * h) / pairs.shape[0]  # d loss / d h_i
    delta = phi[pairs[:, 0]] - phi[pairs[:, 1]]  # (m, d): d h_i / d w (the normaliser cancels)
    return log_pi, h, loss, slope @ delta


def _checked(features: Any, chosen: Any, rejected: Any, w: Any, w_ref: Any, beta: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """Validated ``(phi, pairs, w, log_mu, beta)``: the arguments of ``_loss_grad``."""
    phi = _features(features)
    pairs, _ = _pairs(phi, chosen, rejected)
    d = phi.shape[1]
    w_t, ref = _weights(w, "w", d), _weights(w_ref, "w_ref", d)
    return phi, pairs, w_t, normalize_log(phi @ ref), as_positive_float(beta, "beta")


def dpo_loss_and_gradient(features: Any, chosen: Any, rejected: Any, w: Any, w_ref: Any, beta: Any) -> tuple[float, Tensor]:
    r"""Mean DPO loss of the pairs under :math:`\pi_w` with reference :math:`\mu = \pi_{w_\text{ref}}`, and its exact gradient.

    .. math:: L(w) = \frac1m\sum_i -\log\sigma(\beta h_i), \qquad
              \nabla L = -\frac{\beta}{m}\sum_i \sigma(-\beta h_i)\,(\phi(y_i^+) - \phi(y_i^-)),

    with :math:`h_i = (\phi(y_i^+) - \phi(y_i^-))\cdot(w - w_\text{ref})` the DPO margin (the
    log-normalisers cancel in it).

    Parameters
    ----------
    features : array-like, shape (K, d)
    chosen, rejected : int or sequence of int
        The preferred and dispreferred response of each pair.
    w, w_ref : array-like, shape (d,)
        Current and reference parameters.
    beta : float > 0
        DPO's KL strength.

    Returns
    -------
    (float, Tensor of shape (d,))

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3, Eq. (7); Razin et al., arXiv:2410.08847.

    Examples
    --------
    >>> loss, grad = dpo_loss_and_gradient([[1.0], [0.0]], 0, 1, [0.0], [0.0], beta=1.0)
    >>> round(loss, 6), grad.tolist()  # log 2 and -beta * sigmoid(0) * (1 - 0)
    (0.693147, [-0.5])
    """
    _, _, loss, grad = _loss_grad(*_checked(features, chosen, rejected, w, w_ref, beta))
    return float(loss), grad


def log_prob_velocity(features: Any, chosen: Any, rejected: Any, w: Any, w_ref: Any, beta: Any) -> Tensor:
    r"""First-order change of every :math:`\log\pi_w(y)` per unit step of gradient descent on the DPO loss.

    .. math:: v_y = \big(\phi(y) - E_{\pi_w}[\phi]\big)\cdot(-\nabla L(w)),

    so one step of size ``lr`` changes :math:`\log\pi(y)` by :math:`\text{lr}\,v_y + O(\text{lr}^2)`.
    A negative :math:`v_{y^+}` is likelihood displacement of the chosen response at ``w``.

    Returns
    -------
    Tensor, shape (K,), float64.

    References
    ----------
    Razin et al., arXiv:2410.08847 (the first-order analysis of the chosen log-probability).

    Examples
    --------
    >>> log_prob_velocity([[1.0, 0.0], [0.0, 1.0]], 0, 1, [0.0, 0.0], [0.0, 0.0], beta=1.0)
    tensor([ 0.5000, -0.5000], dtype=torch.float64)
    """
    phi, pairs, w_t, log_mu, beta_f = _checked(features, chosen, rejected, w, w_ref, beta)
    log_pi, _, _, grad = _loss_grad(phi, pairs, w_t, log_mu, beta_f)
    centred = phi - log_pi.exp() @ phi
    return centred @ (-grad)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class DisplacementRun:
    """Every iterate of gradient descent on the DPO loss of a log-linear policy.

    References
    ----------
    Razin et al., arXiv:2410.08847; Rafailov et al., arXiv:2305.18290v3, Eq. (7).
    """

    features: Tensor
    """(K, d) feature vectors."""
    pairs: Tensor
    """(m, 2) int64 rows (chosen, rejected)."""
    single: bool
    """Whether one pair was given as two indices (then the per-pair arrays drop their pair axis)."""
    beta: float
    lr: float
    weights: Tensor
    """(steps + 1, d) parameters; row 0 is ``w0``."""
    log_policies: Tensor
    """(steps + 1, K) log-probabilities of every response."""
    margins: Tensor
    """(steps + 1, m) DPO margins h of each pair."""
    losses: Tensor
    """(steps + 1,) mean DPO loss at each iterate."""

    @property
    def steps(self) -> int:
        """Number of gradient steps."""
        return self.weights.shape[0] - 1

    @property
    def policies(self) -> Tensor:
        """(steps + 1, K) probabilities."""
        return self.log_policies.exp()

    def _per_pair(self, x: Tensor) -> Tensor:
        return x[:, 0] if self.single else x

    @property
    def logp_chosen(self) -> Tensor:
        """log pi(chosen) per step: (steps + 1,) for one pair, else (steps + 1, m)."""
        return self._per_pair(self.log_policies[:, self.pairs[:, 0]])

    @property
    def logp_rejected(self) -> Tensor:
        """log pi(rejected) per step, shaped like ``logp_chosen``."""
        return self._per_pair(self.log_policies[:, self.pairs[:, 1]])

    @property
    def margin(self) -> Tensor:
        """The margin h per step, shaped like ``logp_chosen``."""
        return self._per_pair(self.margins)


def displacement_run(
    features: Any,
    chosen: Any,
    rejected: Any,
    *,
    w0: Any = None,
    w_ref: Any = None,
    beta: Any = 0.1,
    lr: Any = 1.0,
    steps: Any = 100,
) -> DisplacementRun:
    r"""Gradient descent on the DPO loss of one or a few pairs for the log-linear policy :math:`\pi_w`.

    :math:`w_{t+1} = w_t - \text{lr}\,\nabla L(w_t)` with the exact gradient of
    ``dpo_loss_and_gradient``, reference :math:`\mu = \pi_{w_\text{ref}}`. Deterministic, float64.

    Parameters
    ----------
    features : array-like, shape (K, d)
        Feature (embedding) vector of each response; ``torch.eye(K)`` is the tabular softmax.
    chosen, rejected : int, or sequences of int of equal length
        The pair(s) (chosen beats rejected). Their feature rows must differ.
    w0 : array-like, shape (d,), optional
        Starting parameters; zeros (for the identity features: uniform) by default.
    w_ref : array-like, shape (d,), optional
        Reference parameters; ``w0`` by default (DPO starts from the reference model).
    beta : float > 0
        DPO's KL strength.
    lr : float > 0
        Step size.
    steps : int >= 0
        Number of steps.

    Returns
    -------
    DisplacementRun

    Raises
    ------
    ValueError
        Malformed ``features``, an index out of range, ``chosen == rejected`` or equal feature
        rows for a pair, ``w0``/``w_ref`` of the wrong length, ``beta <= 0``, ``lr <= 0``,
        ``steps < 0``.

    References
    ----------
    Razin et al., arXiv:2410.08847; Pal et al., arXiv:2402.13228; Rafailov et al.,
    arXiv:2305.18290v3, Eq. (7).

    Examples
    --------
    >>> run = displacement_run(torch.eye(3), 0, 1, beta=1.0, lr=1.0, steps=1)
    >>> run.policies[1]  # tabular: one step moves theta_0 up and theta_1 down by sigmoid(0) = 0.5
    tensor([0.5065, 0.1863, 0.3072], dtype=torch.float64)
    """
    phi = _features(features)
    pairs, single = _pairs(phi, chosen, rejected)
    d = phi.shape[1]
    w = torch.zeros(d, dtype=torch.float64) if w0 is None else _weights(w0, "w0", d)
    ref = w if w_ref is None else _weights(w_ref, "w_ref", d)
    beta_f = as_positive_float(beta, "beta")
    lr_f = as_positive_float(lr, "lr")
    n = as_int(steps, "steps", minimum=0)
    log_mu = normalize_log(phi @ ref)
    k, m = phi.shape[0], pairs.shape[0]
    weights = torch.empty(n + 1, d, dtype=torch.float64)
    log_policies = torch.empty(n + 1, k, dtype=torch.float64)
    margins = torch.empty(n + 1, m, dtype=torch.float64)
    losses = torch.empty(n + 1, dtype=torch.float64)
    for t in range(n + 1):
        log_pi, h, loss, grad = _loss_grad(phi, pairs, w, log_mu, beta_f)
        weights[t], log_policies[t], margins[t], losses[t] = w, log_pi, h, loss
        w = w - lr_f * grad
    if not bool(torch.isfinite(log_policies).all()):
        raise RuntimeError("the log-probabilities overflowed: lower lr or steps")
    return DisplacementRun(phi, pairs, single, beta_f, lr_f, weights, log_policies, margins, losses)
