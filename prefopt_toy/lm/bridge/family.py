r"""The bridge for sDPO and R-DPO: GPT-2's class distribution against the toy's class-level optimum.

**sDPO** (Kim et al., arXiv:2403.19270) runs DPO in T stages; at the end of each stage the
reference becomes the current policy. On a lifted game with offline pairs from the *initial*
reference, every stage fits the same Bradley-Terry reward :math:`\hat r` (pairs from
:math:`\mu`, labels from ``P``), so stage t gives :math:`\pi_t \propto \pi_{t-1} e^{\hat r/\beta}`
and after T stages :math:`\pi_T \propto \mu e^{T\hat r/\beta}`:
``rlhf_optimum(P_ext, mu_class, beta / T)``. (The trainer's stages each see their own chunk of
the dataset; all chunks come from the same reference, so the fitted reward is the same.)

**R-DPO** (Park et al., arXiv:2403.19159v3, Sec. 3) adds :math:`\alpha(|y_w| - |y_l|)` inside
DPO's sigmoid. Its population optimum at the completion level is
:math:`\pi(y) \propto \mu(y)\exp((\hat r_{c(y)} - \alpha |y|)/\beta)` (``rdpo_optimum``: the loss
sees :math:`\beta\log(\pi/\mu) + \alpha|y|` only through differences, fitted to the class-level
BT reward because the judge is class-level). Summing over the completions of a class,

.. math:: \pi_{\mathrm{class}}(c) \propto \mu_c\,
          \mathbb E_\mu\bigl[e^{-\alpha|y|/\beta} \mid c\bigr]\, e^{\hat r_c/\beta}
          = \texttt{rdpo\_optimum}(P, \mu_{\mathrm{class}}, \beta, \alpha, L^{\mathrm{eff}}),
   \qquad L^{\mathrm{eff}}_c = -\frac{\beta}{\alpha}\log
          \mathbb E_\mu\bigl[e^{-\alpha|y|/\beta} \mid c\bigr].

When every completion of a class has one length :math:`L_c`, :math:`L^{\mathrm{eff}}_c = L_c` and
the class-level prediction is ``rdpo_optimum(P_class, mu_class, beta, alpha, lengths_class)``.
The fruit corpus's classes do **not** fix the length (" an apple." is 4 tokens with EOS,
" apples, without a doubt." 7), so the prediction here uses :math:`L^{\mathrm{eff}}`, measured
from the same reference samples as :math:`\mu_{\mathrm{class}}`; it is exact for any within-class
length distribution, and the class mean length would not be (Jensen). Lengths are the trainer's:
completion tokens plus EOS (the collator's completion mask). The judge favours the class with the
longest completions (cherry), so length is correlated with the label and the length term pulls
against the judge.

On the fruit game R-DPO's and DPO's predictions are only about 0.05 apart. The R-DPO bridge
therefore runs on ``length_game.LENGTH_TASK`` (``task=LENGTH_TASK``): the same prompts and model,
classes by completion length ("3 tokens" ... "7 tokens"), so :math:`L^{\mathrm{eff}}_c = L_c`
exactly, judged by Bradley-Terry in :math:`\kappa L` (``length_game.length_game``); there DPO
tilts :math:`\mu` by :math:`e^{\kappa L/\beta}` and R-DPO by :math:`e^{(\kappa-\alpha)L/\beta}`
(Park et al., arXiv:2403.19159v3, Sec. 3), far apart for :math:`\alpha > \kappa`.

References
----------
Kim et al., arXiv:2403.19270 (sDPO); Park et al., arXiv:2403.19159v3 (R-DPO); Rafailov et al.,
arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2, App. B Prop. 4 (the DPO population
optimum under ``nu``).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float
from prefopt_toy.lm.judges import LiftedGameJudge
from prefopt_toy.lm.models.corpus import FRUIT_TASK, LiftedTask

from .class_estimate import ClassEstimate, class_estimate, sample_task_texts, total_variation
from .length_game import LengthTask, length_judge
from .run import BridgeResult, bridge_generator, lifted_judge, reference_pairs, train_on_task

__all__ = [
    "FAMILY_BRIDGE",
    "effective_lengths",
    "predict_family",
    "run_family_bridge",
    "sample_classes_and_lengths",
]

FAMILY_BRIDGE = ("sdpo", "rdpo")
"""Algorithms ``run_family_bridge`` trains and predicts."""


@torch.no_grad()
def sample_classes_and_lengths(
    model,
    tokenizer,
    task: LiftedTask | LengthTask,
    judge: LiftedGameJudge,
    *,
    n_samples: int,
    generator: torch.Generator,
    batch_size: int = 64,
    max_new_tokens: int = 16,
    max_prompt_length: int = 48,
) -> tuple[Tensor, Tensor]:
    """Class ids (N,) and trainer lengths (N,) of ``n_samples`` completions of ``model``.

    Prompts and sampling as ``class_estimate.estimate_class_distribution``; a completion's
    length is ``len(tokenizer(text).input_ids) + 1`` (its tokens and EOS), what the trainer's
    completion mask counts for that text.

    References
    ----------
    Park et al., arXiv:2403.19159v3 (lengths in tokens).
    """
    texts = sample_task_texts(
        model, tokenizer, task, n_samples=n_samples, generator=generator, batch_size=batch_size,
        max_new_tokens=max_new_tokens, max_prompt_length=max_prompt_length,
    )  # fmt: skip
    lengths = [len(tokenizer(t).input_ids) + 1 for t in texts]
    return judge.classify(texts), torch.tensor(lengths, dtype=torch.float64)


def sampled_classes(
    model,
    tokenizer,
    task: LiftedTask | LengthTask,
    judge: LiftedGameJudge,
    *,
    n_samples: int,
    seed: int,
    purpose: str,
    max_new_tokens: int,
    level: float,
) -> tuple[ClassEstimate, Tensor, Tensor]:
    """Class estimate, class ids and lengths of ``n_samples`` completions of ``model``.

    The completions are drawn by ``sample_classes_and_lengths`` with ``bridge_generator(seed,
    purpose)``. The bridge drivers measure the reference (``purpose="reference"``) and the trained policy
    (``"final"``) this way, so both draws are reproducible from ``seed`` alone.
    """
    ids, lengths = sample_classes_and_lengths(
        model,
        tokenizer,
        task,
        judge,
        n_samples=n_samples,
        generator=bridge_generator(seed, purpose),
        max_new_tokens=max_new_tokens,
    )
    estimate = class_estimate(ids, judge.P.shape[0] + 1, level=level, class_names=judge.class_names)
    return estimate, ids, lengths


def effective_lengths(
    class_ids: Any, lengths: Any, n_classes: int, *, beta: float, alpha: float
) -> Tensor:
    r""":math:`L^{\mathrm{eff}}_c = -(\beta/\alpha)\log\mathbb E[e^{-\alpha L/\beta} \mid c]` per class.

    A class with no sample gets its plain mean over all samples (it has :math:`\mu_c = 0` and no
    weight in the prediction). ``alpha = 0`` gives the class means (the limit). A class whose
    samples have one length gets exactly that length (no rounding), as on
    ``length_game.LENGTH_TASK``.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3 (R-DPO); see the module docstring.

    Examples
    --------
    >>> effective_lengths([0, 0, 1], [2.0, 2.0, 5.0], 2, beta=1.0, alpha=0.5).tolist()
    [2.0, 5.0]
    """
    beta = as_positive_float(beta, "beta")
    alpha = as_positive_float(alpha, "alpha", allow_zero=True)
    ids = torch.as_tensor(class_ids, dtype=torch.long)
    L = torch.as_tensor(lengths, dtype=torch.float64)
    out = torch.empty(n_classes, dtype=torch.float64)
    for c in range(n_classes):
        Lc = L[ids == c]
        if Lc.numel() == 0:
            out[c] = L.mean()
        elif alpha == 0.0:
            out[c] = Lc.mean()
        elif bool((Lc == Lc[0]).all()):
            out[c] = Lc[0]  # one length (a class of ``LengthTask``): exactly that length
        else:
            s = -alpha / beta
            out[c] = (torch.logsumexp(s * Lc, 0) - math.log(Lc.numel())) / s
    return out


def predict_family(
    algorithm: str,
    P_ext: Any,
    mu_class: Any,
    *,
    beta: float,
    stages: int | None = None,
    alpha: float | None = None,
    lengths: Any = None,
) -> Tensor:
    """The class distribution sDPO / R-DPO converge to on a lifted game (offline pairs from mu).

    ``sdpo``: ``rlhf_optimum(P_ext, mu_class, beta / stages)``; ``rdpo``:
    ``rdpo_optimum(P_ext, mu_class, beta, alpha, lengths)`` with ``lengths`` the per-class
    effective lengths (``effective_lengths``; the class lengths when each class fixes it).

    References
    ----------
    Kim et al., arXiv:2403.19270; Park et al., arXiv:2403.19159v3.
    """
    import prefopt_toy as pt

    beta = as_positive_float(beta, "beta")
    if algorithm == "sdpo":
        T = as_int(stages, "stages", minimum=1)
        return pt.rlhf_optimum(P_ext, mu_class, beta / T)
    if algorithm == "rdpo":
        if alpha is None or lengths is None:
            raise ValueError("alpha and lengths are required for algorithm 'rdpo'")
        return pt.rdpo_optimum(P_ext, mu_class, beta, alpha, lengths)
    raise ValueError(f"algorithm must be one of {FAMILY_BRIDGE}, got {algorithm!r}")


def run_family_bridge(
    algorithm: str,
    *,
    P: Any,
    beta: float,
    stages: int = 2,
    alpha: float = 0.0,
    size: str = "small",
    steps: int = 100,
    lr: float = 1e-4,
    lr_schedule: str = "linear",
    batch_size: int = 32,
    n_pairs: int = 1024,
    n_eval_samples: int = 2000,
    n_eval: int = 64,
    eval_every: int = 25,
    max_new_tokens: int = 8,
    other_loses: float = 0.8,
    seed: int = 0,
    task: LiftedTask | LengthTask = FRUIT_TASK,
    level: float = 0.95,
    model=None,
    tokenizer=None,
    cache_dir=None,
    show_progress: bool | None = False,
) -> BridgeResult:
    """Measure the reference, predict, train sDPO or R-DPO on GPT-2 offline, and compare.

    As ``run.run_bridge`` (offline pairs from ``preference_dataset``, ``reduction="sum"``), with
    the prediction of ``predict_family``. ``stages`` is sDPO's T (equal data and step split);
    ``alpha`` R-DPO's length weight. ``task`` is a ``LiftedTask`` (judge ``run.lifted_judge``)
    or a ``length_game.LengthTask`` (judge ``length_game.length_judge``: classes by completion
    length, ``P`` e.g. ``length_game.length_game(task, kappa)``). The result's ``extra`` holds
    ``effective_lengths`` (R-DPO), ``stages`` / ``alpha`` and ``predictor``, the prediction as a
    function of ``mu_class`` (for ``error.tv_sampling_error``).

    References
    ----------
    Kim et al., arXiv:2403.19270; Park et al., arXiv:2403.19159v3, Sec. 3.
    """
    from prefopt_toy.lm.models.gpt2 import default_model

    if algorithm not in FAMILY_BRIDGE:
        raise ValueError(f"algorithm must be one of {FAMILY_BRIDGE}, got {algorithm!r}")
    t0 = time.perf_counter()
    if isinstance(task, LengthTask):
        judge = length_judge(task, P, other_loses=other_loses)
    else:
        judge = lifted_judge(task, P, other_loses=other_loses)
    if model is None:
        ref, tokenizer = default_model(size, cache_dir=cache_dir, seed=seed)
    else:
        ref = model
    policy = copy.deepcopy(ref)
    ref_for_training = copy.deepcopy(ref)  # sDPO overwrites its reference in place
    K1 = judge.P.shape[0] + 1
    mu_est, ids, lengths = sampled_classes(
        ref, tokenizer, task, judge, n_samples=n_eval_samples, seed=seed, purpose="reference",
        max_new_tokens=max_new_tokens, level=level,
    )  # fmt: skip
    L_eff = None
    if algorithm == "rdpo":
        L_eff = effective_lengths(ids, lengths, K1, beta=beta, alpha=alpha)

    def predictor(mu: Tensor) -> Tensor:
        return predict_family(
            algorithm, judge.P_ext, mu, beta=beta, stages=stages, alpha=alpha, lengths=L_eff
        )

    prediction = predictor(mu_est.probs)
    dataset = reference_pairs(
        ref, tokenizer, task, judge, n_pairs=n_pairs, seed=seed, max_new_tokens=max_new_tokens
    )
    extra_cfg: dict[str, Any] = (
        {"sdpo_stages": stages} if algorithm == "sdpo" else {"rdpo_alpha": alpha}
    )
    summary, logged_steps, measured = train_on_task(
        algorithm, policy, ref_for_training, tokenizer, task, judge, dataset,
        reduction="sum", beta=beta, lr=lr, steps=steps, batch_size=batch_size,
        max_new_tokens=max_new_tokens, seed=seed, lr_schedule=lr_schedule,
        eval_every=eval_every, n_eval=n_eval, show_progress=show_progress, **extra_cfg,
    )  # fmt: skip
    final, _, _ = sampled_classes(
        policy, tokenizer, task, judge, n_samples=n_eval_samples, seed=seed, purpose="final",
        max_new_tokens=max_new_tokens, level=level,
    )  # fmt: skip
    hyper = {"beta": float(beta), "mixture": 0.0}
    return BridgeResult(
        algorithm=algorithm,
        class_names=judge.class_names,
        P_ext=judge.P_ext.clone(),
        hyper=hyper,
        mu_class=mu_est,
        prediction=prediction,
        toy_trajectory=prediction.unsqueeze(0),
        steps=logged_steps,
        measured=measured,
        final=final,
        tv=total_variation(final.probs, prediction),
        wall_s=time.perf_counter() - t0,
        train_steps=summary["steps"],
        extra={
            "n_pairs": len(dataset),
            "policy": policy,
            "stages": stages if algorithm == "sdpo" else None,
            "alpha": alpha if algorithm == "rdpo" else None,
            "effective_lengths": None if L_eff is None else L_eff.tolist(),
            "predictor": predictor,
        },
    )
