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

Hence (``displacement_criterion``): if
:math:`a_{y^+} < E_{\pi_{w_0}}[a]` the chosen log-probability falls at *every* step, and if some
response has :math:`a_z > a_{y^+}` it falls eventually (the policy concentrates on
:math:`\arg\max_y a_y`). In the tabular case :math:`a_{y^+} = 1` is the largest score, so the
chosen response only gains. Everything is float64 with closed-form gradients,
deterministic, no sampling.

The module holds:

- the criterion: :func:`displacement_criterion` reads the outcome off the scores alone, with no
  run (:class:`DisplacementCriterion`);
- the exact maths and the run: :func:`log_linear_policy`, :func:`dpo_loss_and_gradient`,
  :func:`log_prob_velocity`, and :func:`displacement_run`, every iterate of gradient descent on the
  DPO loss of one or several pairs (:class:`DisplacementRun`);
- named examples: ``EXAMPLES`` / :func:`displacement_example`, frozen settings shared by the
  notebook and the tests (``shared_features``: preferring "No" over "Never" pushes the mass onto
  "Yes"; ``tabular``: identity features, no displacement; ``shared_responses``: three tabular
  pairs, the IPO paper's data set D1), and :func:`plot_displacement`, which draws a run;
- the input checks: a features array that is not a (K, d) matrix with K >= 2, indices out of range
  or not integers, a pair with ``chosen == rejected`` or with equal feature rows (its margin is 0
  for every ``w``), chosen and rejected sequences of different lengths and weights of the wrong
  length are refused.

References
----------
Razin et al., arXiv:2410.08847 (likelihood displacement, embeddings of chosen and rejected); Pal et
al., arXiv:2402.13228 (Smaug / DPOP); Rafailov et al., arXiv:2305.18290v3, Eq. (7); Azar et al.,
arXiv:2310.12036v2, Sec. 5.4.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float, as_tensor, as_vector
from prefopt_toy.policies import normalize_log

__all__ = [
    "DisplacementCriterion",
    "DisplacementExample",
    "DisplacementRun",
    "EXAMPLES",
    "displacement_criterion",
    "displacement_example",
    "displacement_run",
    "dpo_loss_and_gradient",
    "log_linear_policy",
    "log_prob_velocity",
    "plot_displacement",
]


@dataclass(frozen=True)
class DisplacementCriterion:
    """Whether one DPO pair displaces its chosen response, read off the scores ``a = features @ delta``.

    References
    ----------
    Razin et al., arXiv:2410.08847 (displacement through similar embeddings of chosen and rejected).
    """

    scores: Tensor
    r"""``a_y = phi(y) . (phi(chosen) - phi(rejected))``, shape (K,)."""
    mean_score: float
    r""":math:`E_{\pi_{w_0}}[a]`, the score averaged under the starting policy."""
    chosen_rate: float
    r""":math:`a_{y^+} - E_{\pi_{w_0}}[a]`: d log pi(chosen) / ds at the start (ds = lr beta sigma(-beta h) per step)."""
    rejected_rate: float
    r""":math:`a_{y^-} - E_{\pi_{w_0}}[a]`, the same for the rejected response."""
    chosen_falls_from_start: bool
    """``chosen_rate < 0``: log pi(chosen) falls at every step of the run, not just the first."""
    chosen_falls_eventually: bool
    """Some response scores above the chosen one: log pi(chosen) falls once the run is long enough."""
    winner: int
    """``argmax_y a_y``: the response the policy concentrates on as the margin grows."""


def displacement_criterion(
    features: Any, chosen: int, rejected: int, w0: Any = None
) -> DisplacementCriterion:
    r"""Predict, in closed form, whether DPO on one pair lowers :math:`\log\pi(y^+)`, starting from ``w0``.

    Gradient descent keeps :math:`w_t = w_0 + s_t\delta` on a ray (see the module docstring) with
    :math:`s_t` increasing, and :math:`\frac{d}{ds}\log\pi(y) = a_y - E_\pi[a]` where
    :math:`E_\pi[a]` increases in ``s`` (its derivative is a variance). So ``chosen_rate < 0``
    means the chosen log-probability falls at every step; ``a_chosen < max(a)`` means it falls
    eventually. The same holds for the rejected response with ``rejected_rate``.

    Parameters
    ----------
    features : array-like, shape (K, d)
    chosen, rejected : int
        One pair (the ray argument needs a single pair).
    w0 : array-like, shape (d,), optional
        Starting parameters; zeros by default. The reference does not matter for the criterion.

    References
    ----------
    Razin et al., arXiv:2410.08847; Pal et al., arXiv:2402.13228 (the chosen likelihood falls on
    pairs with small edit distance, i.e. similar chosen and rejected).

    Examples
    --------
    >>> c = displacement_criterion([[1.0, 0.2], [1.0, -0.2], [-1.0, 1.0]], 0, 1)
    >>> c.chosen_falls_from_start, c.winner
    (True, 2)
    """
    phi = _features(features)
    pairs, single = _pairs(phi, chosen, rejected)
    if not single:
        raise ValueError(
            "chosen and rejected must be single indices: the criterion is for one pair"
        )
    c, r = int(pairs[0, 0]), int(pairs[0, 1])
    w = (
        torch.zeros(phi.shape[1], dtype=torch.float64)
        if w0 is None
        else _weights(w0, "w0", phi.shape[1])
    )
    a = phi @ (phi[c] - phi[r])
    mean = float(normalize_log(phi @ w).exp() @ a)
    top = float(a.max())
    return DisplacementCriterion(
        scores=a,
        mean_score=mean,
        chosen_rate=float(a[c]) - mean,
        rejected_rate=float(a[r]) - mean,
        chosen_falls_from_start=float(a[c]) < mean,
        chosen_falls_eventually=float(a[c]) < top,
        winner=int(a.argmax()),
    )


# --------------------------------------------------------------------------- named examples


@dataclass(frozen=True)
class DisplacementExample:
    """A named, frozen setting of ``displacement_run`` (shared by the notebook and the tests).

    References
    ----------
    Razin et al., arXiv:2410.08847 (the "No" / "Never" / "Yes" story of their introduction).
    """

    name: str
    """Key in ``EXAMPLES``."""
    title: str
    """One-line description."""
    responses: tuple[str, ...]
    """Names of the K responses, for plots."""
    features: tuple[tuple[float, ...], ...]
    """(K, d) feature vectors."""
    chosen: int | tuple[int, ...]
    """Chosen response(s)."""
    rejected: int | tuple[int, ...]
    """Rejected response(s)."""
    beta: float
    """DPO's KL strength."""
    lr: float
    """Step size of gradient descent."""
    steps: int
    """Steps of the full run."""
    quick_steps: int
    """Steps in smoke mode (the monotone facts already show)."""

    def run(self, quick: bool = False, **override: Any) -> DisplacementRun:
        """``displacement_run`` with this example's settings (``w0 = w_ref = 0``); keywords override them."""
        kwargs: dict[str, Any] = {
            "beta": self.beta,
            "lr": self.lr,
            "steps": self.quick_steps if quick else self.steps,
        }
        kwargs.update(override)
        return displacement_run(
            torch.tensor(self.features, dtype=torch.float64), self.chosen, self.rejected, **kwargs
        )


EXAMPLES: dict[str, DisplacementExample] = {
    ex.name: ex
    for ex in (
        DisplacementExample(
            name="shared_features",
            title='Log-linear policy: preferring "No" over "Never" pushes the mass onto "Yes"',
            responses=("No", "Never", "Yes"),
            # "No" and "Never" share their first coordinate (both refuse) and differ a little in the
            # second; the difference delta = (0, 0.4) points where "Yes" scores highest:
            # a = features @ delta = (0.08, -0.08, 0.4), E_mu[a] = 0.4 / 3 > 0.08 = a_No.
            features=((1.0, 0.2), (1.0, -0.2), (-1.0, 1.0)),
            chosen=0,
            rejected=1,
            beta=0.1,
            lr=5.0,
            steps=400,
            quick_steps=60,
        ),
        DisplacementExample(
            name="tabular",
            title="Tabular softmax (identity features): the chosen response only gains",
            responses=("No", "Never", "Yes"),
            features=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
            chosen=0,
            rejected=1,
            beta=0.1,
            lr=5.0,
            steps=400,
            quick_steps=60,
        ),
        DisplacementExample(
            name="shared_responses",
            title="Tabular softmax, pairs a > b, b > c, a > c: b falls although it wins b > c",
            responses=("a", "b", "c"),
            features=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
            chosen=(0, 1, 0),
            rejected=(1, 2, 2),
            beta=0.1,
            lr=5.0,
            steps=400,
            quick_steps=60,
        ),
    )
}
"""Named displacement settings: ``shared_features`` (displacement), ``tabular`` (none),
``shared_responses`` (the IPO paper's data set D1, Azar et al., arXiv:2310.12036v2, Sec. 5.4)."""


def displacement_example(name: str) -> DisplacementExample:
    """The example registered as ``name`` in ``EXAMPLES``.

    Raises
    ------
    ValueError
        Unknown ``name``; the message lists the valid names.

    References
    ----------
    Razin et al., arXiv:2410.08847.

    Examples
    --------
    >>> displacement_example("shared_features").responses
    ('No', 'Never', 'Yes')
    """
    try:
        return EXAMPLES[name]
    except (KeyError, TypeError):
        raise ValueError(f"name must be one of {', '.join(EXAMPLES)}, got {name!r}") from None


# --------------------------------------------------------------------------- plotting


def plot_displacement(axes: Any, run: DisplacementRun, responses: Any = None) -> list[Any]:
    r"""Draw a run on two axes: :math:`\log\pi(y)` of every response per step, and the margin(s) h.

    Parameters
    ----------
    axes : two matplotlib Axes
        Left: log-probabilities (chosen solid, rejected dashed, others dotted); right: the DPO
        margin of each pair and the loss.
    run : DisplacementRun
    responses : sequence of K str, optional
        Response names (default ``y0, y1, ...``).

    Returns
    -------
    list of Line2D

    References
    ----------
    Razin et al., arXiv:2410.08847 (their figures plot both log-probabilities against training steps).
    """
    if len(axes) != 2:
        raise ValueError(f"axes must be two Axes (log-probabilities, margin), got {len(axes)}")
    k = run.features.shape[0]
    names = [f"y{i}" for i in range(k)] if responses is None else [str(r) for r in responses]
    if len(names) != k:
        raise ValueError(f"responses must name the {k} responses, got {len(names)} names")
    steps = torch.arange(run.steps + 1).numpy()
    chosen = set(run.pairs[:, 0].tolist())
    rejected = set(run.pairs[:, 1].tolist())
    ax_lp, ax_h = axes
    lines = []
    for y in range(k):
        role = ("chosen" if y in chosen else "") + ("/" if y in chosen and y in rejected else "")
        role += "rejected" if y in rejected else ""
        style = "-" if y in chosen else ("--" if y in rejected else ":")
        label = f"{names[y]} ({role})" if role else f"{names[y]} (neither)"
        (line,) = ax_lp.plot(
            steps, run.log_policies[:, y].numpy(), style, linewidth=2.0, label=label
        )
        lines.append(line)
    ax_lp.set_xlabel("gradient step t")
    ax_lp.set_ylabel(r"$\log \pi_t(y)$")
    ax_lp.set_title("log-probability of each response")
    ax_lp.legend(fontsize=8)
    for i in range(run.pairs.shape[0]):
        c, r = (int(x) for x in run.pairs[i])
        (line,) = ax_h.plot(
            steps,
            run.margins[:, i].numpy(),
            linewidth=2.0,
            label=f"margin h({names[c]} > {names[r]})",
        )
        lines.append(line)
    (line,) = ax_h.plot(
        steps,
        run.losses.numpy(),
        color="0.4",
        linewidth=1.2,
        linestyle="--",
        label="DPO loss (mean)",
    )
    lines.append(line)
    ax_h.set_xlabel("gradient step t")
    ax_h.set_title(rf"DPO margin and loss ($\beta$ = {run.beta:g})")
    ax_h.legend(fontsize=8)
    return lines


# --------------------------------------------------------------------------- validation


def _features(features: Any) -> Tensor:
    phi = as_tensor(features, "features")
    if phi.ndim != 2:
        raise ValueError(
            f"features must be a matrix of shape (K, d) (one row per response), got shape {tuple(phi.shape)}"
        )
    if phi.shape[0] < 2 or phi.shape[1] < 1:
        raise ValueError(
            f"features must have at least 2 responses (rows) and 1 column, got shape {tuple(phi.shape)}"
        )
    return phi.detach()


def _index(x: Any, name: str, k: int) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise ValueError(f"{name} must hold integer response indices, got {type(x).__name__}")
    i = int(x)
    if not 0 <= i < k:
        raise ValueError(
            f"{name} must hold indices in [0, {k - 1}] (one per row of features), got {i}"
        )
    return i


def _pairs(features: Tensor, chosen: Any, rejected: Any) -> tuple[Tensor, bool]:
    """``(m, 2)`` int64 rows ``(chosen, rejected)`` and whether a single pair was given as scalars."""
    k = features.shape[0]
    chosen = chosen.item() if isinstance(chosen, Tensor) and chosen.ndim == 0 else chosen
    rejected = rejected.item() if isinstance(rejected, Tensor) and rejected.ndim == 0 else rejected
    single = not isinstance(chosen, (list, tuple, Tensor)) and not hasattr(chosen, "__len__")
    if single != (
        not isinstance(rejected, (list, tuple, Tensor)) and not hasattr(rejected, "__len__")
    ):
        raise ValueError(
            "chosen and rejected must both be indices or both be sequences of the same length"
        )
    if isinstance(chosen, Tensor):
        chosen = chosen.tolist()
    if isinstance(rejected, Tensor):
        rejected = rejected.tolist()
    c_list = [chosen] if single else list(chosen)
    r_list = [rejected] if single else list(rejected)
    if len(c_list) == 0:
        raise ValueError("chosen must hold at least one response index")
    if len(c_list) != len(r_list):
        raise ValueError(
            f"chosen and rejected must have the same length, got {len(c_list)} and {len(r_list)}"
        )
    rows = []
    for n, (c, r) in enumerate(zip(c_list, r_list)):
        ci, ri = _index(c, "chosen", k), _index(r, "rejected", k)
        if ci == ri:
            raise ValueError(f"chosen and rejected must differ, but pair {n} is ({ci}, {ri})")
        if bool(torch.equal(features[ci], features[ri])):
            raise ValueError(
                f"features of chosen {ci} and rejected {ri} must differ: with equal rows the margin "
                "of that pair is 0 for every w and its DPO loss is the constant log 2"
            )
        rows.append((ci, ri))
    return torch.tensor(rows, dtype=torch.int64), single


def _weights(w: Any, name: str, d: int) -> Tensor:
    return as_vector(w, name, size=d).detach()


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


def _loss_grad(
    phi: Tensor, pairs: Tensor, w: Tensor, log_mu: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Log-policy, margins, mean DPO loss and its exact gradient in ``w`` (no validation)."""
    log_pi = normalize_log(phi @ w)
    ratio = log_pi - log_mu
    h = ratio[..., pairs[:, 0]] - ratio[..., pairs[:, 1]]  # DPO margins (m,)
    loss = torch.nn.functional.softplus(-beta * h).mean()  # -log sigma(beta h), finite for any h
    slope = -beta * torch.sigmoid(-beta * h) / pairs.shape[0]  # d loss / d h_i
    delta = phi[pairs[:, 0]] - phi[pairs[:, 1]]  # (m, d): d h_i / d w (the normaliser cancels)
    return log_pi, h, loss, slope @ delta


def _checked(
    features: Any, chosen: Any, rejected: Any, w: Any, w_ref: Any, beta: Any
) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """Validated ``(phi, pairs, w, log_mu, beta)``: the arguments of ``_loss_grad``."""
    phi = _features(features)
    pairs, _ = _pairs(phi, chosen, rejected)
    d = phi.shape[1]
    w_t, ref = _weights(w, "w", d), _weights(w_ref, "w_ref", d)
    return phi, pairs, w_t, normalize_log(phi @ ref), as_positive_float(beta, "beta")


def dpo_loss_and_gradient(
    features: Any, chosen: Any, rejected: Any, w: Any, w_ref: Any, beta: Any
) -> tuple[float, Tensor]:
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


def log_prob_velocity(
    features: Any, chosen: Any, rejected: Any, w: Any, w_ref: Any, beta: Any
) -> Tensor:
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
        """Log pi(chosen) per step: (steps + 1,) for one pair, else (steps + 1, m)."""
        return self._per_pair(self.log_policies[:, self.pairs[:, 0]])

    @property
    def logp_rejected(self) -> Tensor:
        """Log pi(rejected) per step, shaped like ``logp_chosen``."""
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
