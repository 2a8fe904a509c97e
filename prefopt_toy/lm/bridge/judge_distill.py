r"""A distilled judge: a GPT-2 fine-tuned to read a KNOWN raw class judge off its "1"/"2" odds.

An untrained language model is no judge of the fruit task: the small default model never saw a
judge prompt, and "1"/"2" never occur in its corpus (they share one embedding row, so
:math:`J = 1/2` exactly; ``benchmarks/results_lm_ai_feedback.md``). So the exact toy cannot
predict an RLAIF run with it. Here the judge is **taught** a designed game instead: a copy of the
model is fine-tuned on judge prompts whose soft labels come from a known raw class judge

.. math:: J = \sigma\big(\operatorname{logit} P_{\mathrm{ext}} + b\big)

(``games.judges.logit_shift_judge``: a preference matrix on the classes, bordered by "other",
with a first-position bonus of ``b`` nats), and then :func:`measure_judge_game` on the distilled
judge should give back :math:`R \approx J` at the class level, its position bias
:math:`R + R^\top - 1 \approx J + J^\top - 1`, and so a class game the toy can predict from.

**The data** (:func:`distillation_pairs`). A pool of completions of known classes (reference
samples, or the task's own corpus phrases); each example is an ordered pair :math:`(a, b)` of two
different pool entries (``balanced=False``: ``a`` uniform, ``b`` uniform among the others;
``balanced=True``, :func:`distill_judge`'s default: each class equally likely in each position,
so a rare class is seen as often as a common one), shown in that one order (``a`` in position
1), with target

.. math:: y = J[c(a), c(b)] = \Pr(\text{"1" is the answer}).

``labels="soft"`` (default) trains on :math:`y` itself; ``labels="hard"`` draws the answer token,
"1" with probability :math:`y` (a Bernoulli label, as an annotator would give). The two have the
same expected loss; soft labels have less variance. Since pairs come in both orders at random,
the model sees :math:`J[i, j]` and :math:`J[j, i]` separately, so it can learn the bias, not only
the symmetrised game.

**The loss** (:func:`judge_distill_loss`) is the 2-way cross-entropy on the two answer tokens'
logits at the answer position,

.. math:: \ell = -\,y \log \sigma(\ell_1 - \ell_2) - (1 - y) \log \sigma(\ell_2 - \ell_1),

i.e. the cross-entropy of the judge's renormalised :math:`\hat J = p_1 / (p_1 + p_2)` (exactly
what ``LanguageModelJudge`` reads) against :math:`y`; it is minimised, for each judge text, at
:math:`\hat J = y`, and it is :math:`\mathrm{KL}(y \,\|\, \hat J)` plus the entropy of :math:`y`.
The choice against the alternative, a next-token cross-entropy over the whole vocabulary with
target :math:`y` on "1" and :math:`1 - y` on "2": that one also has :math:`\hat J = y` at its
optimum, but it spends most of its gradient on pushing the two tokens' total mass from
:math:`\approx 10^{-6}` to 1 (the rest of the vocabulary's logits move too), which the judge does
not use (it renormalises over the two tokens); the 2-way loss trains only the quantity that is
read, and leaves ``token_mass`` free (it is reported, not trained). Only the logits at the last
position enter the loss; the rest of the template is not a language-model target.

**Training** (:func:`distill_judge`): AdamW (no weight decay) on all of the model's parameters,
``steps`` steps of ``batch_size`` fresh pairs each (drawn from the pool with one generator seeded
by ``seed``: no epochs, the pool is resampled), the judge texts encoded whole and left-padded as
``LanguageModelJudge`` does, so the training forward pass is the reading forward pass. The model is
trained in place (pass a ``copy.deepcopy``).

**How close** (:func:`judge_recovery`): the class-level errors of a measured
:class:`~prefopt_toy.lm.bridge.ai_feedback.JudgeGame` against the design: raw ``R - J``, the
symmetrised ``P - sym(J)`` and the bias ``(R + R^T) - (J + J^T)`` over the classes with
completions, and the measured mean pair bias against the one the design gives to the same pairs
(:func:`designed_pair_bias`).

References
----------
Lee et al., arXiv:2309.00267v3, Sec. 2.1 (soft labels from the "1"/"2" probabilities,
renormalised); Hinton et al., arXiv:1503.02531v1 (distillation on soft targets); Zheng et al.,
arXiv:2306.05685v4, Sec. 3.3 (position bias); Munos et al., arXiv:2312.00886v4 (lifted games);
Calandriello et al., arXiv:2403.08635v1 (online IPO / DPO).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float
from prefopt_toy.games.judges import check_judge_matrix, symmetrize_judge
from prefopt_toy.lm.data import check_model_inputs, check_tokenizer, model_device, to_device
from prefopt_toy.lm.logprobs import position_ids_from_mask
from prefopt_toy.lm.model_judge import DEFAULT_TEMPLATE, JUDGE_ORDERS, LanguageModelJudge

from .ai_feedback import JudgeGame

__all__ = [
    "DISTILL_LABELS",
    "DistillPairs",
    "DistilledJudge",
    "designed_pair_bias",
    "distill_judge",
    "distillation_pairs",
    "judge_distill_loss",
    "judge_recovery",
]

DISTILL_LABELS = ("soft", "hard")
"""``"soft"``: the target is :math:`J[c(a), c(b)]`; ``"hard"``: a Bernoulli draw of it."""


@dataclass(frozen=True)
class DistillPairs:
    """Ordered judge pairs with their class-judge targets (:func:`distillation_pairs`).

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1; Hinton et al., arXiv:1503.02531v1.
    """

    first: list[str]
    """The completions shown in position 1."""
    second: list[str]
    """The completions shown in position 2."""
    class_first: Tensor
    """(n,) int64, the class of each first completion."""
    class_second: Tensor
    """(n,) int64, the class of each second completion."""
    target: Tensor
    """(n,) float64, :math:`J[c(a), c(b)]`: the probability that "1" (position 1) is the answer."""
    label: Tensor
    """(n,) float64, what is trained on: ``target`` (soft) or a 0/1 draw of it (hard)."""


def _check_pool(texts: Any, class_ids: Any, n_classes: int) -> tuple[list[str], Tensor]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError("texts must be a list of str")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of str")
    if len(texts) < 2:
        raise ValueError(f"texts must hold at least two completions to pair, got {len(texts)}")
    ids = torch.as_tensor(class_ids)
    if ids.ndim != 1 or ids.numel() != len(texts):
        raise ValueError(
            f"class_ids must hold one class per text ({len(texts)}), got {tuple(ids.shape)}"
        )
    if ids.is_floating_point() or bool(((ids < 0) | (ids >= n_classes)).any()):
        raise ValueError(
            f"class_ids must be integers in [0, {n_classes - 1}] (J is {n_classes} x {n_classes})"
        )
    return texts, ids.to(torch.int64)


def distillation_pairs(
    texts: Any,
    class_ids: Any,
    J: Any,
    *,
    n_pairs: int,
    generator: torch.Generator,
    labels: str = "soft",
    balanced: bool = False,
) -> DistillPairs:
    r"""``n_pairs`` ordered pairs of two different pool entries, with targets :math:`J[c(a), c(b)]`.

    For each pair, ``s`` is uniform on the pool indices and ``t = (s + u) mod M`` with ``u``
    uniform on ``1..M-1`` (so ``t`` is uniform on the other indices); ``texts[s]`` goes in
    position 1. The two indices are drawn with ``torch.randint`` from ``generator`` (first all
    ``s``, then all ``u``), and for ``labels="hard"`` the labels with ``torch.bernoulli`` from the
    same generator after them.

    ``balanced=True`` draws every entry with weight :math:`w_k = 1/n_{c(k)}` (``n_c`` the pool's
    entries of class ``c``), so each class present is equally likely in position 1: ``s`` with
    probability :math:`w_s / W`, then ``t`` with probability :math:`w_t / (W - w_s)` among the
    others (``torch.multinomial``). A class that is rare in the pool ("other": 4% of the small
    model's samples) is then trained on as often as the others; the game taught is the same.

    Parameters
    ----------
    texts : sequence of str, length M >= 2
        The pool (completions; the same string may occur more than once).
    class_ids : array-like of int, shape (M,)
        Their classes, in ``[0, C)`` ("other" last, as ``LiftedGameJudge.classify`` numbers them).
    J : array-like, shape (C, C)
        The raw class judge (``games.judges.check_judge_matrix``): ``J[i, j]`` = probability that
        position 1 wins when it holds class ``i`` and position 2 class ``j``.
    n_pairs : int >= 1
    generator : torch.Generator
    labels : {"soft", "hard"}
    balanced : bool, default False
        Class-balanced draws instead of uniform ones.

    Returns
    -------
    DistillPairs

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1; Hinton et al., arXiv:1503.02531v1 (soft targets).
    """
    J_t = check_judge_matrix(J)
    texts, ids = _check_pool(texts, class_ids, J_t.shape[0])
    n_pairs = as_int(n_pairs, "n_pairs", minimum=1)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if labels not in DISTILL_LABELS:
        raise ValueError(f"labels must be one of {DISTILL_LABELS}, got {labels!r}")
    if not isinstance(balanced, bool):
        raise ValueError(f"balanced must be a bool, got {balanced!r}")
    M = len(texts)
    if balanced:
        w = 1.0 / torch.bincount(ids, minlength=J_t.shape[0]).to(torch.float64)[ids]  # (M,)
        s = torch.multinomial(w, n_pairs, replacement=True, generator=generator)  # (n,)
        w_t = w.expand(n_pairs, M).clone()  # (n, M)
        w_t[torch.arange(n_pairs), s] = 0.0
        t = torch.multinomial(w_t, 1, generator=generator).squeeze(1)  # (n,)
    else:
        s = torch.randint(0, M, (n_pairs,), generator=generator)
        u = torch.randint(1, M, (n_pairs,), generator=generator)
        t = (s + u) % M
    cs, ct = ids[s], ids[t]
    target = J_t[cs, ct]
    label = target.clone() if labels == "soft" else torch.bernoulli(target, generator=generator)
    return DistillPairs(
        first=[texts[i] for i in s.tolist()],
        second=[texts[i] for i in t.tolist()],
        class_first=cs,
        class_second=ct,
        target=target,
        label=label,
    )


def _logits_to_keep(model: Any) -> dict[str, int]:
    try:  # transformers' causal LMs can skip the LM head on every position but the last
        keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        keep = False
    return {"logits_to_keep": 1} if keep else {}


def _answer_logit_gap(judge: LanguageModelJudge, texts: list[str]) -> Tensor:
    r"""(n,) float64 :math:`\ell_1 - \ell_2` at the answer position, with the graph kept.

    One left-padded batch, as ``LanguageModelJudge`` reads it (the model's mode is left alone).
    """
    _, pad = check_tokenizer(judge.tokenizer)
    encoded = [list(judge.tokenizer(t).input_ids) for t in texts]
    T = max(len(r) for r in encoded)
    input_ids = torch.full((len(encoded), T), pad, dtype=torch.long)  # (B, T)
    attn = torch.zeros((len(encoded), T), dtype=torch.long)  # (B, T)
    for b, r in enumerate(encoded):
        input_ids[b, T - len(r) :] = torch.tensor(r, dtype=torch.long)
        attn[b, T - len(r) :] = 1
    check_model_inputs(judge.model, input_ids, attn, name="judge texts")
    input_ids, attn = to_device((input_ids, attn), model_device(judge.model))
    out = judge.model(
        input_ids=input_ids,
        attention_mask=attn,
        position_ids=position_ids_from_mask(attn),
        use_cache=False,
        **_logits_to_keep(judge.model),
    )
    last = out.logits[:, -1, :]  # (B, V)
    t1, t2 = judge.token_ids
    return (last[:, t1] - last[:, t2]).to(torch.float64)  # (B,)


def judge_distill_loss(
    judge: LanguageModelJudge, first: Sequence[str], second: Sequence[str], label: Any
) -> Tensor:
    r"""Mean 2-way cross-entropy of the judge's :math:`\hat J(a_i, b_i)` against ``label``; with grad.

    :math:`-\tfrac1n \sum_i \big[y_i \log \sigma(d_i) + (1 - y_i) \log \sigma(-d_i)\big]`, with
    :math:`d_i = \ell_1 - \ell_2` the gap of the two answer tokens' logits after
    ``judge.judge_text(first[i], second[i])`` (the judge's fixed prompt). A 0-dim float64 tensor
    whose graph reaches the judge's model; the model's train/eval mode is not changed.

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1 (the renormalised "1"/"2" probability); Hinton et
    al., arXiv:1503.02531v1 (cross-entropy on soft targets).
    """
    if not isinstance(judge, LanguageModelJudge):
        raise ValueError(f"judge must be a LanguageModelJudge, got {type(judge).__name__}")
    if isinstance(first, str) or isinstance(second, str):
        raise ValueError("first and second must be lists of str")
    first, second = list(first), list(second)
    if len(first) != len(second) or not first:
        raise ValueError(
            f"first and second must be non-empty and of one length, got {len(first)} and {len(second)}"
        )
    y = torch.as_tensor(label, dtype=torch.float64)
    if y.shape != (len(first),):
        raise ValueError(f"label must have shape ({len(first)},), got {tuple(y.shape)}")
    if not bool(torch.isfinite(y).all()) or bool(((y < 0) | (y > 1)).any()):
        raise ValueError("label must hold probabilities in [0, 1]")
    texts = [judge.judge_text(a, b) for a, b in zip(first, second)]
    d = _answer_logit_gap(judge, texts)
    y = y.to(d.device)
    return -(
        y * torch.nn.functional.logsigmoid(d) + (1 - y) * torch.nn.functional.logsigmoid(-d)
    ).mean()


@dataclass
class DistilledJudge:
    """A fine-tuned LM judge and its training record (:func:`distill_judge`).

    References
    ----------
    Lee et al., arXiv:2309.00267v3; Hinton et al., arXiv:1503.02531v1.
    """

    judge: LanguageModelJudge
    """The judge on the trained model (``order`` as asked)."""
    J: Tensor
    """(C, C) float64, the raw class judge it was taught."""
    losses: list[float] = field(default_factory=list)
    """Mean 2-way cross-entropy of every step."""
    kl: list[float] = field(default_factory=list)
    """The same minus the mean entropy of the step's labels (soft labels: the mean KL, >= 0)."""


def distill_judge(
    model: Any,
    tokenizer: Any,
    texts: Any,
    class_ids: Any,
    J: Any,
    *,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 3e-4,
    seed: int = 0,
    labels: str = "soft",
    balanced: bool = True,
    template: str = DEFAULT_TEMPLATE,
    tokens: Sequence[str] = ("1", "2"),
    prompt: str = "",
    order: str = "both",
) -> DistilledJudge:
    r"""Fine-tune ``model`` in place into a judge of the raw class game ``J`` (module docstring).

    Each of ``steps`` AdamW steps (no weight decay, all parameters) draws ``batch_size`` pairs
    with :func:`distillation_pairs` from one ``torch.Generator`` seeded with ``seed`` and takes
    a gradient step on :func:`judge_distill_loss`. The model is in train mode during the loop and
    in eval mode after it (the small default models have no dropout).

    Parameters
    ----------
    model : causal LM (GPT-2)
        Trained in place: pass ``copy.deepcopy(ref)``.
    tokenizer : GPT-2 tokenizer
    texts, class_ids : the pool (:func:`distillation_pairs`)
    J : array-like, shape (C, C)
        The raw class judge to teach, e.g. ``logit_shift_judge(lifted.P, b)``.
    steps, batch_size : int >= 1
    lr : float > 0
    seed : int
    labels : {"soft", "hard"}
    balanced : bool, default True
        Class-balanced pairs (:func:`distillation_pairs`). The default because uniform pairs
        leave a rare class unlearned: on the small model a class with 3.5% of the pool kept a
        verdict of the wrong sign (``benchmarks/results_lm_judge_distill.md``).
    template, tokens, prompt, order
        As :class:`~prefopt_toy.lm.model_judge.LanguageModelJudge`; the judge returned reads
        exactly these texts.

    Returns
    -------
    DistilledJudge

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1; Hinton et al., arXiv:1503.02531v1; Loshchilov &
    Hutter, arXiv:1711.05101 (AdamW).
    """
    judge = LanguageModelJudge(model, tokenizer, template, tokens, order=order, prompt=prompt)
    J_t = check_judge_matrix(J)
    pool, ids = _check_pool(texts, class_ids, J_t.shape[0])
    steps = as_int(steps, "steps", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    lr = as_positive_float(lr, "lr")
    seed = as_int(seed, "seed")
    if labels not in DISTILL_LABELS:
        raise ValueError(f"labels must be one of {DISTILL_LABELS}, got {labels!r}")
    if order not in JUDGE_ORDERS:
        raise ValueError(f"order must be one of {JUDGE_ORDERS}, got {order!r}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0
    )
    losses, kls = [], []
    model.train()
    try:
        for _ in range(steps):
            batch = distillation_pairs(
                pool, ids, J_t, n_pairs=batch_size, generator=gen, labels=labels,
                balanced=balanced,
            )  # fmt: skip
            loss = judge_distill_loss(judge, batch.first, batch.second, batch.label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            y = batch.label
            ent = -(torch.xlogy(y, y) + torch.xlogy(1 - y, 1 - y)).mean()
            losses.append(float(loss.detach()))
            kls.append(float(loss.detach()) - float(ent))
    finally:
        model.eval()
    return DistilledJudge(judge=judge, J=J_t, losses=losses, kl=kls)


def designed_pair_bias(J: Any, counts: Any) -> float:
    r"""The mean position bias the design gives to :func:`measure_judge_game`'s pairs.

    ``measure_judge_game`` averages :math:`J(a, b) + J(b, a) - 1` over every unordered pair of
    the kept completions, ``counts[c]`` of class ``c``; for a class judge that is

    .. math:: \frac{\sum_{i < j} m_i m_j B_{ij} + \sum_i \binom{m_i}{2} B_{ii}}{\binom{M}{2}},
              \qquad B = J + J^\top - 1,\ M = \textstyle\sum_i m_i.

    References
    ----------
    Zheng et al., arXiv:2306.05685v4, Sec. 3.3.

    Examples
    --------
    >>> # B = [[0.4, 0.2], [0.2, 0.0]]; two class-0 completions and one class-1: (0.4 + 2 * 0.2) / 3
    >>> round(designed_pair_bias([[0.7, 0.9], [0.3, 0.5]], [2, 1]), 12)
    0.266666666667
    """
    J_t = check_judge_matrix(J)
    m = torch.as_tensor(counts)
    if m.shape != (J_t.shape[0],) or m.is_floating_point() or bool((m < 0).any()):
        raise ValueError(f"counts must hold {J_t.shape[0]} non-negative integers, got {counts!r}")
    m = m.to(torch.float64)
    M = float(m.sum())
    if M < 2:
        raise ValueError("counts must add up to at least 2 (one pair)")
    B = (J_t + J_t.T) - 1.0
    pairs = torch.outer(m, m)
    pairs.diagonal().copy_(m * (m - 1))
    # sum over ordered (i, j) of pairs / 2 counts each unordered pair of completions once
    return float((pairs * B).sum() / 2.0 / (M * (M - 1) / 2.0))


def judge_recovery(game: JudgeGame, J: Any) -> dict[str, float]:
    r"""How close a measured class game is to the designed raw judge ``J`` (module docstring).

    Over the classes with at least one kept completion (``game.counts > 0``; a pair of classes
    needs two completions when it is one class): the max and mean absolute errors of the raw
    ``R - J``, of ``P - symmetrize_judge(J)`` (off the diagonal) and of the position-bias matrices
    ``(R + R^T - 1) - (J + J^T - 1)``; the measured mean pair bias and the designed one
    (:func:`designed_pair_bias`); and the same raw error of a judge that says 1/2 everywhere (the
    untrained "1"/"2" judge), as a scale.

    References
    ----------
    Zheng et al., arXiv:2306.05685v4, Sec. 3.3; Lee et al., arXiv:2309.00267v3, Sec. 2.1.
    """
    if not isinstance(game, JudgeGame):
        raise ValueError(f"game must be a JudgeGame, got {type(game).__name__}")
    J_t = check_judge_matrix(J)
    C = J_t.shape[0]
    if game.raw.shape != (C, C):
        raise ValueError(f"J must have the game's shape {tuple(game.raw.shape)}, got {(C, C)}")
    m = game.counts
    valid = (m[:, None] > 0) & (m[None, :] > 0)
    valid &= ~torch.eye(C, dtype=torch.bool) | (m[:, None] > 1)
    off = valid & ~torch.eye(C, dtype=torch.bool)
    if not bool(off.any()):
        raise ValueError("game must have completions of at least two classes")
    R = game.raw
    err_raw = (R - J_t).abs()[valid]
    err_P = (game.P - symmetrize_judge(J_t)).abs()[off]
    err_B = ((R + R.T) - (J_t + J_t.T)).abs()[valid]
    half = (0.5 - J_t).abs()[valid]
    return {
        "raw_max": float(err_raw.max()),
        "raw_mean": float(err_raw.mean()),
        "P_max": float(err_P.max()),
        "P_mean": float(err_P.mean()),
        "bias_max": float(err_B.max()),
        "bias_mean": float(err_B.mean()),
        "pair_bias": float(game.position_bias.mean),
        "pair_bias_designed": designed_pair_bias(J_t, m),
        "raw_max_uniform": float(half.max()),
        "raw_mean_uniform": float(half.mean()),
        "n_entries": int(valid.sum()),
        "token_mass": float(game.token_mass),
    }
