r"""The bridge for the reference-free methods: SimPO and ORPO on GPT-2 against the exact toy.

Neither loss has a reference term, so the KL-regularised factorisation of
:mod:`prefopt_toy.lm.bridge.run` does not apply: there is no Gibbs tilt of :math:`\mu` to solve
for. The reference is only where training starts and where the offline pairs come from. The
toy's prediction is therefore the *exact toy run itself*: ``ALGORITHMS["simpo"]`` or
``ALGORITHMS["orpo"]`` on the class game ``P_ext`` from :math:`\mu_{class}` (pairs from
:math:`\nu = \mu_{class}`, labels from ``P_ext``), run to its end point.

**SimPO** (Meng et al., arXiv:2405.14734, Eq. (6)) minimises

.. math:: -\mathbb E\log\sigma\Bigl(\frac{\beta}{|y_w|}\log\pi(y_w) - \frac{\beta}{|y_l|}
          \log\pi(y_l) - \gamma\Bigr)

on the per-token mean log-probability (the trainer's ``reduction="mean"``). With equal lengths
:math:`L` and :math:`\gamma = 0` this is DPO with a *uniform* reference at strength
:math:`\beta/L`, whose fixed point is ``rlhf_optimum(P, uniform, beta / L, nu=mu_class)``: the
start :math:`\mu_{class}` is forgotten, only the pair distribution :math:`\nu` and the game
matter, and a class that loses to every other ("other" here) goes to ~0. That is the collapse the
toy predicts: away from the reference, towards a vertex when one class beats the rest and towards
a tilted interior point of the classes for a cyclic game like ``BRIDGE_P``; :math:`\gamma > 0`
widens every margin and sharpens it.

**Lengths.** The toy gives each class one length :math:`L_c`; GPT-2's completions of a class vary
(" an apple." is 4 tokens with EOS, " apples, without a doubt." 7). We use the **class mean
length** of the reference's samples, measured like ``family.sample_classes_and_lengths`` (tokens
plus EOS, what the trainer's completion mask counts) and averaged per class by
``family.effective_lengths(..., alpha=0)``. No class statistic is exact: SimPO has no reference
and does not keep :math:`\mu(y \mid c)`, so the within-class distribution changes during training;
the mean is the first-order length the per-token normalisation sees for a class's typical pair,
and it is what R-DPO's statistic ``family.effective_lengths`` gives at :math:`\alpha = 0`.

**ORPO** (Hong et al., arXiv:2403.07691, Eq. (6)-(7)) minimises

.. math:: \mathbb E\bigl[-\log p(y_w)\bigr] - \lambda\,\mathbb E\log\sigma\Bigl(
          \log\frac{\mathrm{odds}(y_w)}{\mathrm{odds}(y_l)}\Bigr), \qquad
          \mathrm{odds}(y) = \frac{p(y)}{1 - p(y)}

(``lam`` is the trainer's ``beta``). The SFT term is the negative log-likelihood of the chosen
completions, so for small :math:`\lambda` the policy goes to the distribution of the *chosen*
completions, :math:`\pi_c \propto \nu_c((P\nu)_c - \nu_c/2)` on pairs of different classes: near
the data, no collapse; "other" keeps the mass with which it is chosen. The toy's odds use the
class probability, the trainer's the per-token mean probability (TRL); the bridge runs the SFT
term on the completion only, averaged per example (the paper's, ``nll_tokens="completion"``,
``nll_reduction="per_example_mean"``).

:func:`run_reference_free_bridge` runs the toy and GPT-2 on the same offline pairs as
``run_bridge`` (``preference_dataset`` with the lifted judge) and returns a ``BridgeResult``
whose ``prediction`` is the toy's end point and ``toy_trajectory`` the toy run;
:func:`reference_free_verdict` says whether GPT-2 went where the toy says (TV to the prediction
against TV to the start, and the "other" mass).

References
----------
Meng et al., arXiv:2405.14734 (SimPO), Eq. (6); Hong et al., arXiv:2403.07691 (ORPO), Eq. (6)-(7);
Rafailov et al., arXiv:2305.18290v3 (DPO, whose uniform-reference optimum is SimPO's at gamma 0);
Munos et al., arXiv:2312.00886v4 (lifted preference games).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float
from prefopt_toy.lm.models.corpus import FRUIT_TASK, LiftedTask

from .class_estimate import ClassEstimate, total_variation
from .family import effective_lengths, sampled_classes
from .run import BridgeResult, lifted_judge, reference_pairs, train_on_task

__all__ = [
    "REFERENCE_FREE_BRIDGE",
    "predict_reference_free",
    "reference_free_verdict",
    "run_reference_free_bridge",
    "simpo_uniform_optimum",
]

REFERENCE_FREE_BRIDGE = ("simpo", "orpo")
"""Algorithms ``run_reference_free_bridge`` trains and predicts."""


def _algorithm(algorithm: Any) -> str:
    if algorithm not in REFERENCE_FREE_BRIDGE:
        raise ValueError(f"algorithm must be one of {REFERENCE_FREE_BRIDGE}, got {algorithm!r}")
    return algorithm


def _probs(mu_class: Any, size: int) -> Tensor:
    if isinstance(mu_class, ClassEstimate):
        mu_class = mu_class.probs
    mu = torch.as_tensor(mu_class, dtype=torch.float64)
    if mu.shape != (size,):
        raise ValueError(f"mu_class must have shape ({size},), got {tuple(mu.shape)}")
    if (
        not bool(torch.isfinite(mu).all())
        or bool((mu < 0).any())
        or abs(float(mu.sum()) - 1) > 1e-9
    ):
        raise ValueError("mu_class must be a probability vector (non-negative, summing to 1)")
    return mu


def _lengths(lengths: Any, size: int) -> Tensor:
    L = torch.as_tensor(lengths, dtype=torch.float64)
    if L.shape != (size,) or not bool(torch.isfinite(L).all()) or bool((L <= 0).any()):
        raise ValueError(
            f"lengths must be {size} finite positive numbers (one per class), got {lengths!r}"
        )
    return L


def simpo_uniform_optimum(P_ext: Any, mu_class: Any, *, beta: Any, length: Any) -> Tensor:
    r"""SimPO's fixed point for equal lengths and :math:`\gamma = 0`: DPO with a uniform reference.

    With :math:`|y| = L` for every action the SimPO margin is
    :math:`(\beta/L)(\log\pi(y_w) - \log\pi(y_l)) = (\beta/L)(\log\frac{\pi(y_w)}{u} -
    \log\frac{\pi(y_l)}{u})` for the uniform :math:`u`, DPO's margin at strength :math:`\beta/L`
    (Meng et al., arXiv:2405.14734, Eq. (6); Rafailov et al., arXiv:2305.18290v3, Eq. (7)), so the
    population optimum with pairs from :math:`\nu = \mu_{class}` is
    ``rlhf_optimum(P_ext, uniform, beta / L, nu=mu_class)``.

    Parameters
    ----------
    P_ext : array-like, shape (K+1, K+1)
    mu_class : array-like of shape (K+1,) or ClassEstimate
        The pair distribution (the reference's class distribution).
    beta : float > 0
    length : float > 0

    Returns
    -------
    Tensor, shape (K+1,), float64

    Raises
    ------
    ValueError
        A bad argument, named.

    Examples
    --------
    >>> p = simpo_uniform_optimum([[0.5, 0.8], [0.2, 0.5]], [0.5, 0.5], beta=2.0, length=2.0)
    >>> [round(v, 4) for v in p.tolist()]
    [0.8, 0.2]
    """
    import prefopt_toy as pt

    P_t = pt.check_preference_matrix(P_ext)
    mu = _probs(mu_class, P_t.shape[0])
    beta = as_positive_float(beta, "beta")
    length = as_positive_float(length, "length")
    uniform = torch.full_like(mu, 1.0 / mu.numel())
    return pt.rlhf_optimum(P_t, uniform, beta / length, nu=mu)


def predict_reference_free(
    algorithm: str,
    P_ext: Any,
    mu_class: Any,
    *,
    beta: Any,
    gamma: Any = 0.0,
    lengths: Any = None,
    toy_steps: int = 5000,
    lr: Any = None,
) -> tuple[Tensor, Tensor]:
    r"""The exact toy's SimPO / ORPO run on the class game from ``mu_class`` (pairs from it).

    ``simpo``: ``ALGORITHMS["simpo"](P_ext, mu_class, beta=beta, gamma=gamma, lengths=lengths)``
    (Meng et al., arXiv:2405.14734, Eq. (6)); ``orpo``: ``ALGORITHMS["orpo"](P_ext, mu_class,
    lam=beta)`` (Hong et al., arXiv:2403.07691, Eq. (6)-(7)). Both offline with ``nu = mu_class``
    and soft labels (the population loss), at the toy's default step size.

    Parameters
    ----------
    algorithm : {"simpo", "orpo"}
    P_ext : array-like, shape (K+1, K+1)
        The class game, "other" last (``judge.P_ext``).
    mu_class : array-like of shape (K+1,) or ClassEstimate
    beta : float > 0
        SimPO's reward scale :math:`\beta`; ORPO's :math:`\lambda` (the trainer's ``beta``).
    gamma : float >= 0
        SimPO's margin :math:`\gamma` (TRL's ``simpo_gamma``); must be 0 for ORPO.
    lengths : array-like, shape (K+1,), optional
        SimPO's per-class lengths (default all 1); ORPO takes none.
    toy_steps : int >= 1
        Steps of the toy run; the prediction is its last policy.
    lr : float > 0, optional
        The toy's gradient step (None: the toy's default, conservative for SimPO; a few thousand
        steps converge on the bridge's games, check ``trajectory[-1] - trajectory[-2]``).

    Returns
    -------
    prediction : Tensor, shape (K+1,), float64
        The toy's end point.
    trajectory : Tensor, shape (toy_steps + 1, K+1), float64

    Raises
    ------
    ValueError
        A bad argument, named.

    Examples
    --------
    >>> pred, traj = predict_reference_free("orpo", [[0.5, 0.9], [0.1, 0.5]], [0.5, 0.5],
    ...                                     beta=0.1, toy_steps=500)
    >>> traj.shape, round(float(pred[0]), 2)
    (torch.Size([501, 2]), 0.88)
    """
    import prefopt_toy as pt

    algorithm = _algorithm(algorithm)
    P_t = pt.check_preference_matrix(P_ext)
    mu = _probs(mu_class, P_t.shape[0])
    beta = as_positive_float(beta, "beta")
    gamma = as_positive_float(gamma, "gamma", allow_zero=True)
    toy_steps = as_int(toy_steps, "toy_steps", minimum=1)
    lr = None if lr is None else as_positive_float(lr, "lr")
    if bool((mu <= 0).any()):
        raise ValueError(
            "mu_class must be strictly positive for the toy (full support); smooth an estimate "
            "with an unobserved class first (run_reference_free_bridge adds 1/2 to each count)"
        )
    if algorithm == "simpo":
        L = None if lengths is None else _lengths(lengths, P_t.shape[0])
        traj = pt.ALGORITHMS["simpo"](
            P_t, mu, beta=beta, gamma=gamma, lengths=L, steps=toy_steps, lr=lr
        )
    else:
        if gamma != 0.0:
            raise ValueError(f"gamma is SimPO's margin; orpo takes none, got gamma={gamma}")
        if lengths is not None:
            raise ValueError("lengths are SimPO's; orpo takes none (pass lengths=None)")
        traj = pt.ALGORITHMS["orpo"](P_t, mu, lam=beta, steps=toy_steps, lr=lr)
    policies = traj.policies.to(torch.float64)
    return policies[-1].clone(), policies


def reference_free_verdict(result: BridgeResult) -> dict[str, Any]:
    """Did GPT-2 go where the toy says? Distances and "other" masses of a reference-free bridge run.

    Returns
    -------
    dict
        ``tv_to_prediction`` (the toy's end point), ``tv_to_start`` (``mu_class``),
        ``toy_moved`` (TV between the toy's start and end), ``closer_to_prediction``
        (``tv_to_prediction < tv_to_start``), ``other_start`` / ``other_predicted`` /
        ``other_final`` (the "other" mass), ``top_predicted`` / ``top_final`` (the most likely
        class).

    Raises
    ------
    ValueError
        ``result`` is not a ``BridgeResult``.

    References
    ----------
    Meng et al., arXiv:2405.14734; Hong et al., arXiv:2403.07691.
    """
    if not isinstance(result, BridgeResult):
        raise ValueError(f"result must be a BridgeResult, got {type(result).__name__}")
    start, pred, final = result.mu_class.probs, result.prediction, result.final.probs
    names = result.class_names
    tv_pred, tv_start = total_variation(final, pred), total_variation(final, start)
    return {
        "algorithm": result.algorithm,
        "tv_to_prediction": tv_pred,
        "tv_to_start": tv_start,
        "toy_moved": total_variation(start, pred),
        "closer_to_prediction": tv_pred < tv_start,
        "other_start": float(start[-1]),
        "other_predicted": float(pred[-1]),
        "other_final": float(final[-1]),
        "top_predicted": names[int(pred.argmax())],
        "top_final": names[int(final.argmax())],
    }


def run_reference_free_bridge(
    algorithm: str,
    *,
    P: Any,
    beta: Any,
    gamma: Any = 0.5,
    size: str = "tiny",
    steps: int = 100,
    lr: float = 1e-4,
    lr_schedule: str = "linear",
    batch_size: int = 16,
    n_pairs: int = 512,
    n_eval_samples: int = 512,
    n_eval: int = 64,
    eval_every: int = 10,
    max_new_tokens: int = 8,
    toy_steps: int = 5000,
    toy_lr: Any = None,
    other_loses: float = 0.9,
    seed: int = 0,
    task: LiftedTask = FRUIT_TASK,
    level: float = 0.95,
    model=None,
    tokenizer=None,
    cache_dir=None,
    show_progress: bool | None = False,
) -> BridgeResult:
    """Measure the reference, run the toy, train SimPO or ORPO on GPT-2 offline, and compare.

    1. Reference = ``default_model(size)`` (or ``model``/``tokenizer``, not modified); judge
       ``lifted_judge(task, P, other_loses=)``.
    2. ``n_eval_samples`` reference samples give ``mu_class`` and, for SimPO, the class mean
       lengths (``family.sample_classes_and_lengths``, ``family.effective_lengths`` at alpha 0).
    3. The toy run ``predict_reference_free`` from ``mu_class``.
    4. ``n_pairs`` offline pairs from the reference labelled by the judge (``preference_dataset``,
       the DPO bridge's data); ``trainer.train`` with ``reduction="mean"`` (SimPO: ``beta``,
       ``simpo_gamma=gamma``, ``cpo_alpha=0``; ORPO: ``beta`` = lambda, the SFT term on the
       completion averaged per example), logging the class distribution every ``eval_every``
       steps on ``n_eval`` samples.
    5. The trained policy's class distribution on ``n_eval_samples`` fresh samples, and its total
       variation to the toy's end point.

    Parameters
    ----------
    algorithm : {"simpo", "orpo"}
    P : array-like, shape (K, K)
        The class game (``task``'s classes, in order).
    beta : float > 0
        SimPO's beta (Meng et al., arXiv:2405.14734, Eq. (6); the paper uses 2 to 10); ORPO's
        lambda (Hong et al., arXiv:2403.07691, Eq. (6); 0.1 in the paper and TRL).
    gamma : float >= 0
        SimPO's margin (default 0.5, TRL's ``simpo_gamma``); ignored by ORPO.
    size, steps, lr, lr_schedule, batch_size, n_pairs, n_eval_samples, n_eval, eval_every,
    max_new_tokens, other_loses, seed, task, level, model, tokenizer, cache_dir, show_progress
        As in ``run.run_bridge`` / ``family.run_family_bridge``.
    toy_steps, toy_lr
        Steps and step size of the exact toy run (``predict_reference_free``'s ``toy_steps``,
        ``lr``).

    Returns
    -------
    BridgeResult
        ``prediction`` is the toy's end point, ``toy_trajectory`` its run; ``hyper`` holds
        ``beta`` (or ``lam``) and ``gamma``; ``extra`` holds ``lengths`` (SimPO's class mean
        lengths, else None), ``toy_start`` (``mu_class``, or with 1/2 added to each count when a
        class was never sampled: the toy needs full support), ``toy_last_change`` (TV of the
        toy's last step: ~0 when it has converged), ``n_pairs``, ``policy`` and ``predictor``
        (the prediction as a function of ``mu_class``, for ``error.tv_sampling_error``).

    Raises
    ------
    ValueError
        A bad argument, named.

    References
    ----------
    Meng et al., arXiv:2405.14734, Eq. (6); Hong et al., arXiv:2403.07691, Eq. (6)-(7).
    """
    from prefopt_toy.lm.models.gpt2 import default_model

    algorithm = _algorithm(algorithm)
    beta = as_positive_float(beta, "beta")
    gamma = as_positive_float(gamma, "gamma", allow_zero=True)
    if (model is None) != (tokenizer is None):
        raise ValueError("model and tokenizer must be given together")
    n_eval_samples = as_int(n_eval_samples, "n_eval_samples", minimum=1)
    eval_every = as_int(eval_every, "eval_every", minimum=1)
    toy_steps = as_int(toy_steps, "toy_steps", minimum=1)
    seed = as_int(seed, "seed", minimum=0)
    t0 = time.perf_counter()
    judge = lifted_judge(task, P, other_loses=other_loses)
    if model is None:
        ref, tokenizer = default_model(size, cache_dir=cache_dir, seed=seed)
    else:
        ref = model
    policy = copy.deepcopy(ref)
    K1 = judge.P.shape[0] + 1
    mu_est, ids, lengths = sampled_classes(
        ref, tokenizer, task, judge, n_samples=n_eval_samples, seed=seed, purpose="reference",
        max_new_tokens=max_new_tokens, level=level,
    )  # fmt: skip
    L = effective_lengths(ids, lengths, K1, beta=1.0, alpha=0.0) if algorithm == "simpo" else None
    # the toy needs full support: a class no reference sample named starts at (0 + 1/2) / (n + K/2)
    counts = mu_est.counts.to(torch.float64)
    start = mu_est.probs if bool((counts > 0).all()) else (counts + 0.5) / (counts.sum() + K1 / 2)
    toy_gamma = gamma if algorithm == "simpo" else 0.0

    toy = {"beta": beta, "gamma": toy_gamma, "lengths": L, "toy_steps": toy_steps, "lr": toy_lr}

    def predictor(mu: Tensor) -> Tensor:  # smoothed as ``start`` when a class has mass 0
        mu = torch.as_tensor(mu, dtype=torch.float64)
        if bool((mu <= 0).any()):
            mu = (mu * n_eval_samples + 0.5) / (n_eval_samples + K1 / 2)
        return predict_reference_free(algorithm, judge.P_ext, mu, **toy)[0]

    prediction, traj = predict_reference_free(algorithm, judge.P_ext, start, **toy)
    dataset = reference_pairs(
        ref, tokenizer, task, judge, n_pairs=n_pairs, seed=seed, max_new_tokens=max_new_tokens
    )
    extra_cfg: dict[str, Any] = (
        {"simpo_gamma": gamma, "cpo_alpha": 0.0}
        if algorithm == "simpo"
        else {"nll_tokens": "completion", "nll_reduction": "per_example_mean"}
    )
    summary, logged_steps, measured = train_on_task(
        algorithm, policy, ref, tokenizer, task, judge, dataset,
        reduction="mean", beta=beta, lr=lr, steps=steps, batch_size=batch_size,
        max_new_tokens=max_new_tokens, seed=seed, lr_schedule=lr_schedule,
        eval_every=eval_every, n_eval=n_eval, show_progress=show_progress, **extra_cfg,
    )  # fmt: skip
    final, _, _ = sampled_classes(
        policy, tokenizer, task, judge, n_samples=n_eval_samples, seed=seed, purpose="final",
        max_new_tokens=max_new_tokens, level=level,
    )  # fmt: skip
    hyper = {"beta": beta, "gamma": gamma} if algorithm == "simpo" else {"lam": beta}
    return BridgeResult(
        algorithm=algorithm,
        class_names=judge.class_names,
        P_ext=judge.P_ext.clone(),
        hyper=hyper,
        mu_class=mu_est,
        prediction=prediction,
        toy_trajectory=traj,
        steps=logged_steps,
        measured=measured,
        final=final,
        tv=total_variation(final.probs, prediction),
        wall_s=time.perf_counter() - t0,
        train_steps=summary["steps"],
        extra={
            "n_pairs": len(dataset),
            "policy": policy,
            "lengths": None if L is None else L.tolist(),
            "toy_start": start.tolist(),
            "toy_last_change": total_variation(traj[-1], traj[-2]),
            "predictor": predictor,
        },
    )
