r"""One GPT-2 training loop for every preference algorithm: pair source x labels x per-pair loss.

Composed like the exact toy (``prefopt_toy.dynamics``), with the toy's registry names:

================  ==========================================  ====================  ===============
algorithm         pairs                                        labels                loss
================  ==========================================  ====================  ===============
``dpo``           the dataset's (chosen, rejected)             the dataset's         ``dpo``
``ipo``           the dataset's                                the dataset's         ``ipo`` (tau)
``slic``          the dataset's                                the dataset's         ``slic``
``offline``       the dataset's                                the dataset's         ``config.loss``
``online_dpo``    2 completions per prompt from SG[pi]         soft / hard / sampled ``dpo``
``online_ipo``    2 completions per prompt from SG[pi]         soft / hard / sampled ``ipo`` (tau)
``online``        from SG[pi]                                  soft / hard / sampled ``config.loss``
``ipo_md``        both from SG[pi^(1-m) mu^m] (per token)      soft / hard / sampled ``ipo`` (tau)
``nash_md_pg``    y ~ SG[pi], y' ~ SG[pi^(1-m) mu^m]           P(y beats y') (or h/s) PG surrogate
``kto``           the dataset's unpaired (prompt, completion)  the dataset's label   KTO (beta)
``orpo``          the dataset's                                the dataset's         ORPO (beta=lam)
``simpo``         the dataset's                                the dataset's         SimPO (CPO)
``rdpo``          the dataset's                                the dataset's         R-DPO
``dpop``          the dataset's                                the dataset's         DPOP
``sdpo``          the dataset's, one chunk per stage           the dataset's         ``dpo``
``beta_dpo``      the dataset's, Gaussian-filtered             the dataset's         ``dpo``, beta_b
``rso``           2 accepted of N from SG[mu] by rejection     soft / hard / sampled ``dpo/ipo/slic``
``iterative_dpo`` 2 per prompt from SG[pi], fixed per round    soft / hard / sampled ``dpo``
``tdpo``          the dataset's                                the dataset's         TDPO1 / TDPO2
================  ==========================================  ====================  ===============

**The rest of the DPO family** (losses from ``prefopt_toy.lm.family``, metrics with TRL's names):

- ``kto``: TRL's unpaired format ``{"prompt", "completion", "label"}``
  (``data.validate_unpaired_examples``; ``data.unpair_preference_examples`` splits pairs). With ``kto_reference_point``
  ``"trl"`` (default) or ``"unclamped"`` the reference point is the batch mean log-ratio of the
  mismatched completions, built once in dataset order by ``family.kto_mismatched_completions``
  (TRL's), whose reference log-probs are cached with the others and whose policy log-probs are
  computed each step under no_grad (as TRL does); a number is a fixed :math:`z_0`. With several
  processes the KL sum and count are all-reduced before the mean (TRL gathers the KL term across
  processes; here the global mean also for unequal shards), and the per-side metrics are global
  sums over counts. Metrics: ``kl``, ``rewards/{chosen,rejected,margins}``, ``logps/{chosen,rejected}``.
- ``orpo``, ``simpo``: reference-free (the reference is used by the evaluation only, and no
  reference log-probs are computed). Per-token mean log-probs; the SFT term from the chosen rows'
  logits (``family.sft_nll_from_logits``: ORPO's TRL default over prompt and completion, or the
  paper's; SimPO's ``cpo_alpha`` weight, **0 by default here** where TRL's ``CPOConfig`` has 1).
- ``rdpo``: the lengths are the completion masks' sums (completion tokens and EOS).
- ``dpop``: ``dpop_lambda`` and ``dpop_placement`` (inside the sigmoid by default, paper v3).
- ``sdpo``: ``sdpo_stages`` stages over contiguous chunks of the dataset (``sdpo_split``, equal by
  default) and the same shares of ``steps``; when a stage ends the reference is overwritten by the
  policy's weights and its log-probs recomputed once; AdamW and the learning-rate schedule carry
  on. The stage and (past stage 0) the reference's weights are in every checkpoint
  (``reference.safetensors``), so a resumed run ends bitwise where an uninterrupted one does.
- ``beta_dpo`` (Wu et al., arXiv:2407.08639v2): per batch, ``family.beta_dpo_batch`` updates the
  running mean and standard deviation (M, S) of the margins (EMA 0.9 from 0, before the loss, as
  the toy's ``dynamics.beta_dpo``), keeps ``int(B (1 - beta_dpo_mode_weight))`` pairs drawn with
  the Gaussian weights (``labels`` generator) and sets
  :math:`\beta_b = \max(10^{-3}, \beta(1 + a(\bar h_{kept} - M)))`; the loss is ``dpo`` with
  :math:`\beta_b` on the kept pairs. (M, S) are in every checkpoint. Metrics: ``beta_batch``,
  ``beta_dpo/{running_mean,running_std,margin_mean,margin_std,kept_fraction}``. One process.
- ``rso`` (Liu et al., arXiv:2309.06657v2): before the first step, ``rso_candidates`` completions
  per prompt from the reference, scored by ``reward`` (or the judge's mean win probability
  against the other candidates), two accepted by ``family.rso_rejection_sample`` (Algorithm 1,
  :math:`\beta_{rso}`), labelled by the judge; then ``loss`` (dpo / ipo / slic) on these fixed
  pairs. Metric: ``rso/acceptance_rate``. One process.
- ``iterative_dpo`` (Xiong et al., arXiv:2312.11456v4; Yuan et al., arXiv:2401.10020v3):
  ``iterative_rounds`` rounds splitting ``steps`` as the toy does; each round draws two completions
  per prompt from the policy at its start, labelled by the judge, and runs DPO on them with the
  reference ``"initial"`` or ``"previous"`` (the round's starting policy). The round, its pairs
  and (``"previous"``) the reference are in every checkpoint. Metric: ``round``. One process.
- ``tdpo`` (Zeng et al., arXiv:2404.11999v5): the sequential KL needs the reference's full
  next-token distribution at every completion position, so the reference model runs on each
  step's batch (under ``torch.no_grad``, as the official code does) instead of a cached log-prob;
  ``logprobs.tdpo_statistics_from_logits`` gives the summed log-ratios and the sequential KLs
  without a further (B, T, V) tensor, and ``objectives.tdpo_preference_loss`` applies the one
  kernel ``losses.token.tdpo_loss`` (``tdpo_variant``: TDPO2 by default, ``tdpo_alpha`` 0.5).
  Metrics: TRL's six and ``seqkl/chosen``, ``seqkl/rejected`` (batch means). The reference is
  fixed, so a resumed run recomputes exactly the same reference logits.

Offline, the reference log-probs of the whole dataset are computed once, at the start, under
``torch.no_grad`` (``Trainer.ref_cache``), and never again. Online, they are computed on each
step's sampled completions under ``torch.no_grad`` (the online step, ``Trainer.draw_online`` and
``Trainer.online_pairs_loss``). The per-pair losses are
``prefopt_toy.lm.objectives.preference_loss`` (any of ``LOSSES``), the same functions as the toy's.

Metrics (one JSON line per step through ``RunLogger``): ``loss``, ``grad_norm``, ``learning_rate``
(the rate of the step's update; TRL's name), TRL's ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins``, ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected`` (online pairs are
ordered so that "chosen" is the favoured completion, :math:`w \ge 1/2`; the loss
:math:`w\ell(h) + (1-w)\ell(-h)` is unchanged by the swap); ``labels/weight`` (mean
:math:`\max(w, 1-w)`); for Nash-MD-PG ``rewards/probabilities`` (mean :math:`P(y \succ y')`, TRL's
name) and ``logps/chosen`` (of ``y``). ``kl`` is the **estimator**
:math:`\frac1n\sum_i \sum_t [\log\pi(y_{i,t}) - \log\mu(y_{i,t})]` of KL(pi || mu) on completions
sampled from the policy: on the step's own samples where they come from the policy (online DPO/IPO
with m = 0, Nash-MD-PG's ``y``), unbiased but noisy. Every ``eval_every`` steps (and at step 0),
on ``n_eval`` fresh policy samples of the evaluation prompts: ``eval/kl`` (the same estimator,
weights after the step), ``win_rate`` (mean judge probability that a policy sample beats a
reference sample) and, for a lifted game, ``class_distribution`` (``judge.class_distribution``,
"other" last), by ``Trainer.evaluate``.

Determinism: all randomness comes from ``torch.Generator`` objects seeded from ``config.seed``
(``sampling``, ``labels``, ``minibatch``; the evaluation generator is re-seeded from (seed, step));
they are checkpointed with the weights and the AdamW state, and the learning rate is a pure
function of the step (``TrainConfig.lr_at``: constant or linear, with optional warmup), so an
interrupted and resumed run ends bitwise where an uninterrupted one does. The policy is run in
``eval()`` mode: dropout off for every GPT-2 size (TRL's ``disable_dropout=True`` default), so no
global RNG is ever drawn.

Devices: the trainer follows the model's device (``next(model.parameters()).device``; the policy
and the reference must share it, else ``ValueError``). Tokenised batches, prompts and the judge's
label weights are built on the CPU and moved to that device right before each forward pass or loss
(``data.to_device``); every ``torch.Generator`` stays on the CPU (uniforms are drawn there and
moved), so the random draws do not depend on the device; the reference cache lives on the model's
device; metrics are returned as Python floats. On the CPU every move is a no-op. The CUDA path is
written but was not run on a GPU here.

Several processes (``ctx``, a ``prefopt_toy.lm.distributed.DistributedContext``; None: one
process, exactly as before): ``batch_size`` is the **global** batch, each rank trains on its slice
and the gradients and metrics are averaged so that a step equals the single-process step on the
same global batch; only rank 0 evaluates and writes; details in ``prefopt_toy.lm.train.parallel``.
Launch one copy of a script that calls ``train(..., ctx=init_process_group())`` per process::

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 train_dpo.py
    OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 train_dpo.py

(``accelerate launch --multi_gpu`` starts the processes through torchrun's launcher, also on a
machine without a GPU: the trainer joins a gloo group on the CPU. ``accelerate launch --cpu
--num_processes 2`` starts only one process unless MPI is set up.)

The module holds, in order:

- ``OnlineDraw``, one online draw, and the batch helpers ``_sequence_logps`` and ``_trim``;
- ``Trainer``: the reference cache and the offline step; the online step: ``draw_online`` (two
  completions per prompt from ``SG[pi]`` or ``SG[pi^(1-m) mu^m]`` with the ``sampling`` generator,
  the judge's probabilities and the label weights from the ``labels`` generator),
  ``online_pairs_loss`` (the per-pair loss on a draw: online DPO/IPO, IPO-MD or the Nash-MD-PG
  surrogate, each pair ordered so that "chosen" is favoured) and ``online_loss`` (both); the
  evaluation, ``evaluate``: rank 0 draws ``n_eval`` completions from the policy and ``n_eval`` from
  the reference for the evaluation prompts (cycled) with a generator seeded from (seed, step), so
  evaluating never moves the training generators and a resumed run evaluates exactly as an
  uninterrupted one; the training step, checkpoints and resume;
- ``train``, which builds a ``Trainer`` and runs it.

The configuration (``TrainConfig``, ``ALGORITHMS``, ``LR_SCHEDULES``) is in
``prefopt_toy.lm.train.config`` and re-exported here.

References
----------
Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO); Zhao et al.,
arXiv:2305.10425 (SLiC); Ethayarajh et al., arXiv:2402.01306 (KTO); Hong et al., arXiv:2403.07691
(ORPO); Meng et al., arXiv:2405.14734 (SimPO); Park et al., arXiv:2403.19159 (R-DPO); Pal et al.,
arXiv:2402.13228v3 (DPOP); Kim et al., arXiv:2403.19270 (sDPO); Wu et al., arXiv:2407.08639v2
(beta-DPO); Liu et al., arXiv:2309.06657v2 (RSO); Xiong et al., arXiv:2312.11456v4 and Yuan et al.,
arXiv:2401.10020v3 (iterative DPO); Zeng et al., arXiv:2404.11999v5 (TDPO); Calandriello et al.,
arXiv:2403.08635v1 (online IPO, IPO-MD); Munos et al., arXiv:2312.00886v4 (Nash-MD-PG); TRL
https://github.com/huggingface/trl v1.13.0 (metric names, ``OnlineDPOTrainer``, ``NashMDTrainer``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from prefopt_toy.lm.data import (
    check_model_inputs,
    check_tokenizer,
    model_device,
    model_limits,
    to_device,
    tokenize_completions,
    tokenize_pairs,
    tokenize_prompts,
    validate_preference_examples,
    validate_texts,
    validate_unpaired_examples,
)
from prefopt_toy.lm.distributed.collectives import (
    _all_reduce_sum,
    all_reduce_gradients,
    all_reduce_metrics,
    any_rank,
    broadcast_module,
    same_on_all_ranks,
)
from prefopt_toy.lm.distributed.process_group import DistributedContext, _check_ctx
from prefopt_toy.lm.distributed.seeding import trainer_generators
from prefopt_toy.lm.family import (
    beta_dpo_batch,
    cpo_batch_loss,
    dpop_batch_loss,
    kto_batch_loss,
    kto_mismatched_completions,
    orpo_batch_loss,
    rdpo_batch_loss,
    rso_rejection_sample,
    sft_nll_from_logits,
)
from prefopt_toy.lm.judges import as_judge, judge_probs
from prefopt_toy.lm.logprobs import (
    _TDPO_CHUNK_ELEMENTS,
    _check_batch,
    _tdpo_statistics,
    position_ids_from_mask,
    token_logprobs,
    token_logprobs_from_logits,
)
from prefopt_toy.lm.objectives import preference_loss, tdpo_preference_loss
from prefopt_toy.losses.pairwise import margin
from prefopt_toy.losses.unpaired import kto_reference_point

from .checkpoint import check_finite, load_latest_checkpoint, save_checkpoint
from .config import ALGORITHMS, FAMILY_ALGORITHMS, LR_SCHEDULES, TrainConfig
from .online import SampledPairs, label_weights, nash_md_pg_surrogate, sample_pairs
from .parallel import (
    _extra,
    checkpoint_generators,
    local_rows,
    loss_scale,
    raise_together,
    restore_generators,
    save_trainer,
)
from .runlog import RunLogger, progress

__all__ = [
    "ALGORITHMS",
    "FAMILY_ALGORITHMS",
    "LR_SCHEDULES",
    "OnlineDraw",
    "TrainConfig",
    "Trainer",
    "train",
]


@dataclass(frozen=True)
class OnlineDraw:
    """One step's online pairs on this rank: what ``Trainer.draw_online`` returns.

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 4 (soft labels from preference probabilities).
    """

    pairs: SampledPairs
    """Two completions per prompt: rows ``[:B]`` are ``a``, rows ``[B:]`` are ``b``."""
    probs: Tensor
    """(B,) float64, the judge's Pr(a beats b)."""
    weights: Tensor
    """(B,) float64, the label weight w of "a wins" (``online.label_weights``)."""


def _sequence_logps(
    model, batch: dict[str, Tensor], reduction: str
) -> tuple[Tensor, Tensor, Tensor]:
    """(reduced log-probs (N,), summed log-probs (N,), lengths (N,)) of a right-padded batch.

    All three are on the model's device (the batch is moved there first).
    """
    batch = to_device(batch, model_device(model))
    tok = token_logprobs(
        model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    )  # (N, T)
    summed = tok.sum(dim=1)  # (N,)  zero outside the completion
    lengths = batch["completion_mask"].sum(dim=1).to(summed.dtype)  # (N,)
    return (summed if reduction == "sum" else summed / lengths), summed, lengths


def _sequence_logps_and_logits(model, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(summed completion log-probs (N,), lengths (N,), logits (N, T, V)) of a right-padded batch.

    The forward pass of ``logprobs.token_logprobs``, keeping the logits for an SFT term (ORPO's,
    CPO's NLL: ``family.sft_nll_from_logits``).
    """
    batch = to_device(batch, model_device(model))
    ids = batch["input_ids"]
    attn, comp = _check_batch(ids, batch["attention_mask"], batch["completion_mask"])
    check_model_inputs(model, ids, attn)
    logits = model(
        input_ids=ids,
        attention_mask=attn.long(),
        position_ids=position_ids_from_mask(attn),
        use_cache=False,
    ).logits
    tok = token_logprobs_from_logits(logits, ids, comp)  # (N, T)
    summed = tok.sum(dim=1)
    return summed, comp.sum(dim=1).to(summed.dtype), logits


def _draw_rows(draw: OnlineDraw, rows: list[int]) -> OnlineDraw:
    """The pairs ``rows`` of a draw (rows ``[:B]`` are ``a``, ``[B:]`` ``b``), as a draw."""
    p, B = draw.pairs, len(draw.pairs.texts_a)
    idx = torch.tensor(rows, dtype=torch.long)
    both = torch.cat([idx, idx + B])
    pairs = SampledPairs(
        input_ids=p.input_ids[both],
        attention_mask=p.attention_mask[both],
        completion_mask=p.completion_mask[both],
        texts_a=[p.texts_a[i] for i in rows],
        texts_b=[p.texts_b[i] for i in rows],
        mixture_a=p.mixture_a,
        mixture_b=p.mixture_b,
    )
    return OnlineDraw(pairs, draw.probs[idx], draw.weights[idx])


def _trim(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop trailing columns that are padding in every row (right-padded batches)."""
    t = int(batch["attention_mask"].sum(dim=1).max())
    return {k: v[:, :t] for k, v in batch.items()}


def _check_model_fits(config: TrainConfig, tokenizer, **models) -> None:
    """The tokenizer's EOS and padding ids are in each model's vocabulary (else ``ValueError`` naming both).

    ``max_length`` may exceed a model's positions (it is a cap, not a length): the rows themselves
    are checked against the positions where they meet the model, offline at construction (the
    reference log-probs of every pair) and online before the first sampling step.
    """
    eos, pad = check_tokenizer(tokenizer)
    for name, lm in models.items():
        limits = model_limits(lm)
        if limits.vocab_size is not None:
            for key, value in (("eos_token_id", eos), ("pad_token_id", pad)):
                if value >= limits.vocab_size:
                    raise ValueError(
                        f"tokenizer's {key} ({value}) is outside {name}'s vocabulary "
                        f"[0, {limits.vocab_size}): the tokenizer is not the model's"
                    )


def _check_prompt_lengths(tokenizer, prompts: list[str], config: TrainConfig, where: str) -> None:
    """Every prompt leaves room for ``max_new_tokens`` within ``max_length`` (``ValueError`` naming it)."""
    room = config.max_length - config.max_new_tokens
    for i, text in enumerate(prompts):
        n = len(tokenizer(text).input_ids)
        if n > room:
            raise ValueError(
                f"{where}[{i}] is {n} tokens, more than max_length - max_new_tokens = "
                f"{config.max_length} - {config.max_new_tokens} = {room} (the room a prompt has "
                "before its completion): raise max_length or shorten the prompt"
            )


class Trainer:
    """The training loop of :func:`train`, exposed step by step for tests and notebooks.

    Parameters
    ----------
    config : TrainConfig
    model : causal LM
        The policy, trained in place (in ``eval()`` mode: dropout off).
    ref_model : causal LM
        The frozen reference (never given gradients).
    tokenizer : GPT-2 tokenizer
    dataset : list of ``{"prompt", "chosen", "rejected"}`` dicts
        Offline algorithms (refused by the online ones); ``kto`` takes unpaired
        ``{"prompt", "completion", "label"}`` dicts instead.
    prompts : list of str
        Online algorithms, and evaluation prompts (default: the dataset's prompts). A bare str
        is refused (it would be one prompt per character).
    judge : ``prefopt_toy.lm.judges.Judge`` or callable
        Online algorithms (labels) and evaluation (win rate, class distribution). A plain callable
        ``fn(a, b) -> Pr(a beats b)`` is wrapped in a ``CallableJudge`` (``judges.as_judge``).
    ctx : DistributedContext, optional
        This process's place in a data-parallel run (its process group initialised); None: one
        process. See the module docstring.
    reward : callable, optional
        ``rso`` only: ``reward(texts) -> scores`` (one finite number per completion text), the
        reward model RSO samples with (e.g. ``models.reward.score_texts`` of a BT reward model).
        None: the judge's mean win probability against the prompt's other candidates.

    Raises
    ------
    ValueError
        A bad argument, named; ``config.batch_size`` smaller than ``ctx.world_size``; a policy and
        a reference on different devices (both named); ``config.max_length`` beyond a model's
        positions, or a tokenizer's EOS / padding id outside its vocabulary (the limit named); a
        prompt longer than ``max_length - max_new_tokens``.
    RuntimeError
        ``ctx.world_size > 1`` without an initialised process group.

    References
    ----------
    See the module docstring.
    """

    def __init__(
        self,
        config: TrainConfig,
        model,
        ref_model,
        tokenizer,
        *,
        dataset=None,
        prompts=None,
        judge=None,
        ctx: DistributedContext | None = None,
        reward=None,
    ):
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        config.validate()  # again: a field may have been changed since the config was built
        for name, lm in (("model", model), ("ref_model", ref_model)):
            if not isinstance(lm, torch.nn.Module):
                raise ValueError(
                    f"{name} must be a causal LM (a torch.nn.Module such as GPT2LMHeadModel), "
                    f"got {type(lm).__name__}"
                )
        if model is ref_model:
            raise ValueError(
                "model and ref_model must be different objects (copy.deepcopy the policy)"
            )
        if model_device(model) != model_device(ref_model):
            raise ValueError(
                f"model and ref_model must be on one device, got model on {model_device(model)} and "
                f"ref_model on {model_device(ref_model)} (move both with .to(device))"
            )
        if ctx is not None and not isinstance(ctx, DistributedContext):
            raise ValueError(f"ctx must be a DistributedContext or None, got {type(ctx).__name__}")
        self.ctx = DistributedContext() if ctx is None else ctx
        if config.batch_size < self.ctx.world_size:
            raise ValueError(
                f"batch_size (the global batch, {config.batch_size}) must be >= world_size "
                f"({self.ctx.world_size}): every rank needs at least one pair per step"
            )
        _check_ctx(self.ctx)  # a RuntimeError when world_size > 1 and no process group exists
        _check_model_fits(config, tokenizer, model=model, ref_model=ref_model)
        src = config.source
        if src == "offline":
            if dataset is None:
                raise ValueError(f"dataset is required for algorithm {config.algorithm!r}")
        else:
            if dataset is not None:
                raise ValueError(
                    f"dataset is only used by the offline algorithms; {config.algorithm!r} samples its "
                    "pairs from prompts (pass prompts=[...] instead, e.g. the dataset's prompts)"
                )
            if prompts is None:
                raise ValueError(
                    f"prompts (a non-empty list of str) are required for algorithm {config.algorithm!r}"
                )
            if judge is None:
                raise ValueError(f"judge is required for algorithm {config.algorithm!r}")
        if prompts is not None:  # a bare str would be one prompt per character
            prompts = validate_texts(prompts, "prompts", allow_empty=src == "offline")
        judge = None if judge is None else as_judge(judge, "judge")
        if reward is not None and (config.algorithm != "rso" or not callable(reward)):
            raise ValueError(
                "reward is only used by algorithm 'rso' and must be a callable texts -> scores "
                f"(e.g. lambda t: models.reward.score_texts(rm, tokenizer, t)), got "
                f"{type(reward).__name__} with algorithm {config.algorithm!r}"
            )
        self.reward = reward
        if self.ctx.is_distributed:  # every rank starts from rank 0's weights
            broadcast_module(model, self.ctx)
            broadcast_module(ref_model, self.ctx)
        self.config, self.model, self.ref_model, self.tokenizer, self.judge = (
            config,
            model,
            ref_model,
            tokenizer,
            judge,
        )
        if config.algorithm in ("beta_dpo", "rso", "iterative_dpo") and self.ctx.is_distributed:
            raise ValueError(
                f"algorithm {config.algorithm!r} runs in one process here (its batch statistics, "
                f"sampled pairs and rounds are not sharded); got world_size={self.ctx.world_size}"
            )
        if config.algorithm == "kto":
            self.dataset = validate_unpaired_examples(dataset, "dataset")
            self._setup_kto(tokenizer, config)
            self.n_items = len(self.dataset)
        elif src == "offline":
            self.dataset = validate_preference_examples(dataset, "dataset")
            self.pairs = tokenize_pairs(
                tokenizer, self.dataset, max_length=config.max_length, name="dataset"
            )
            self.n_items = len(self.dataset)
            if config.algorithm == "sdpo":
                self.sdpo_chunks = self._sdpo_chunks(self.n_items)
        else:
            self.n_items = len(prompts)
        where = "prompts"
        if prompts is None and dataset is not None:
            prompts, where = (
                list(dict.fromkeys(ex["prompt"] for ex in self.dataset)),
                "the dataset's prompts",
            )
        self.prompts = list(prompts) if prompts else []
        self.prompt_max = config.max_length - config.max_new_tokens  # >= 1 (TrainConfig checks it)
        if src != "offline" or config.eval_every:  # the prompts will be sampled from: they must fit
            _check_prompt_lengths(tokenizer, self.prompts, config, where)
        self.generators = trainer_generators(config.seed, self.ctx)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
        self.step = 0
        self.order: list[int] = []
        self.cursor = 0
        self.last_checkpoint: Path | None = None
        self.model.eval()  # dropout off (see the module docstring); gradients still flow
        self.ref_model.eval()
        self.ref_cache: tuple[Tensor, Tensor] | None = None
        self.stage = 0  # sDPO: the stage whose reference is loaded (0: the initial reference)
        self.beta_dpo_state = (0.0, 0.0)  # beta-DPO's running (M, S), both starting at 0
        self.round = -1  # iterative DPO: the round whose pairs are drawn (-1: none yet)
        self.round_draw: OnlineDraw | None = None
        if src == "rso":
            self.rso_draw, self.rso_acceptance = self._rso_pairs()
        if config.algorithm in ("orpo", "simpo"):
            pass  # reference-free: ref_model is only used by the evaluation
        elif config.algorithm == "tdpo":
            pass  # the reference's full distributions are computed on each step's batch
        elif src == "offline":
            self.ref_cache = self._reference_cache()

    # ------------------------------------------------------------ KTO and sDPO data
    def _setup_kto(self, tokenizer, config: TrainConfig) -> None:
        """Tokenise KTO's rows and, with a batch reference point, its mismatched (KL) rows.

        The mismatched completions are TRL's: ``family.kto_mismatched_completions`` over the
        dataset in its order, in chunks of ``batch_size`` (TRL builds them once, before shuffling).
        """
        prompts = [ex["prompt"] for ex in self.dataset]
        completions = [ex["completion"] for ex in self.dataset]
        self.labels = torch.tensor([ex["label"] for ex in self.dataset], dtype=torch.bool)
        self.rows = tokenize_completions(
            tokenizer, prompts, completions, max_length=config.max_length, name="dataset"
        )
        self.kl_rows = None
        if isinstance(config.kto_reference_point, str):
            try:
                kl = kto_mismatched_completions(completions, batch_size=config.batch_size)
            except ValueError as err:
                raise ValueError(f"dataset (kto's mismatched KL completions): {err}") from err
            self.kl_rows = tokenize_completions(
                tokenizer, prompts, kl, max_length=config.max_length, name="dataset (KL rows)"
            )

    def _sdpo_chunks(self, n: int) -> list[tuple[int, int]]:
        """The data chunks of sDPO: stage t trains on dataset rows ``[a_t, b_t)`` (``sdpo_split``)."""
        out, acc, start = [], 0.0, 0
        fractions = self.config.sdpo_fractions()
        for t, f in enumerate(fractions):
            acc += f
            end = n if t == len(fractions) - 1 else round(n * acc)
            if end <= start:
                raise ValueError(
                    f"sdpo_split {fractions} leaves stage {t} no dataset row with {n} rows: give "
                    "more rows or fewer stages"
                )
            out.append((start, end))
            start = end
        return out

    def _sdpo_advance(self) -> None:
        """Enter the stage of ``self.step``: the reference becomes a copy of the policy.

        Kim et al., arXiv:2403.19270, Sec. 3: the aligned model of stage t is the reference (and
        the initial policy) of stage t + 1. The reference log-probs are recomputed once, and the
        data order restarts on the new stage's chunk. AdamW's state and the learning-rate
        schedule (a function of the global step) carry on.
        """
        target = self.config.sdpo_stage(self.step)
        if target == self.stage:
            return
        with torch.no_grad():
            self.ref_model.load_state_dict(self.model.state_dict())
        self.stage = target
        self.ref_cache = self._reference_cache()
        self.order, self.cursor = [], 0

    # ------------------------------------------------------------------ data
    @torch.no_grad()
    def _reference_cache(self) -> tuple[Tensor, Tensor]:
        """Reference log-probs (chosen (N,), rejected (N,)) of the whole dataset.

        In the config's reduction: one pass, in dataset order, chunks of ``batch_size`` pairs.
        """
        out: dict[str, list[Tensor]] = {"chosen": [], "rejected": []}
        bs = self.config.batch_size
        if self.config.algorithm == "kto":  # (matched rows, mismatched KL rows), summed
            for key, rows in (("chosen", self.rows), ("rejected", self.kl_rows)):
                if rows is None:
                    continue
                for start in range(0, self.n_items, bs):
                    sl = _trim({k: v[start : start + bs] for k, v in rows.items()})
                    out[key].append(_sequence_logps(self.ref_model, sl, "sum")[0])
            if not out["rejected"]:
                return torch.cat(out["chosen"]), None
            return torch.cat(out["chosen"]), torch.cat(out["rejected"])
        for start in range(0, self.n_items, bs):
            rows = torch.arange(start, min(start + bs, self.n_items))
            batch = self._pair_batch(rows)
            lp, _, _ = _sequence_logps(self.ref_model, batch, self.config.reduction)
            out["chosen"].append(lp[: len(rows)])
            out["rejected"].append(lp[len(rows) :])
        return torch.cat(out["chosen"]), torch.cat(out["rejected"])

    def _pair_batch(self, rows: Tensor) -> dict[str, Tensor]:
        """Chosen rows then rejected rows, one right-padded (2B, T) batch."""
        cat = {
            name: torch.cat(
                [self.pairs[f"chosen_{name}"][rows], self.pairs[f"rejected_{name}"][rows]]
            )
            for name in ("input_ids", "attention_mask", "completion_mask")
        }
        return _trim(cat)

    def next_indices(self) -> list[int]:
        """The next ``batch_size`` item indices: epochs of random permutations from ``minibatch``."""
        out = []
        lo, hi = (
            self.sdpo_chunks[self.stage] if self.config.algorithm == "sdpo" else (0, self.n_items)
        )
        while len(out) < self.config.batch_size:
            if self.cursor >= len(self.order):
                self.order = (
                    lo + torch.randperm(hi - lo, generator=self.generators["minibatch"])
                ).tolist()
                self.cursor = 0
            out.append(self.order[self.cursor])
            self.cursor += 1
        return out

    # ------------------------------------------------------------------ losses
    def offline_loss(self, rows: list[int]) -> tuple[Tensor, dict[str, Any]]:
        """Mean per-pair loss and metrics on dataset rows (reference log-probs from the cache)."""
        cfg, idx = self.config, torch.tensor(rows)
        B = len(rows)
        if cfg.algorithm == "kto":
            return self._kto_loss(idx)
        if cfg.algorithm in ("orpo", "simpo"):
            return self._reference_free_loss(idx)
        if cfg.algorithm == "tdpo":
            return self._tdpo_loss(idx)
        lp, _, lengths = _sequence_logps(self.model, self._pair_batch(idx), cfg.reduction)
        check_finite(
            lp.detach(), step=self.step + 1, last_good=self.last_checkpoint, name="policy log-probs"
        )
        ref_idx = to_device(idx, self.ref_cache[0].device)
        ref_c, ref_r = self.ref_cache[0][ref_idx], self.ref_cache[1][ref_idx]
        extra = (
            {"chosen_lengths": lengths[:B], "rejected_lengths": lengths[B:]}
            if cfg.reduction == "mean"
            else {}
        )
        if cfg.algorithm == "beta_dpo":
            return self._beta_dpo_loss(lp, ref_c, ref_r, lengths, B)
        if cfg.algorithm == "rdpo":
            losses, metrics = rdpo_batch_loss(
                lp[:B],
                lp[B:],
                ref_c,
                ref_r,
                beta=cfg.beta,
                alpha=cfg.rdpo_alpha,
                chosen_lengths=lengths[:B],
                rejected_lengths=lengths[B:],
            )
        elif cfg.algorithm == "dpop":
            losses, metrics = dpop_batch_loss(
                lp[:B],
                lp[B:],
                ref_c,
                ref_r,
                beta=cfg.beta,
                lam=cfg.dpop_lambda,
                placement=cfg.dpop_placement,
            )
        else:
            losses, metrics = preference_loss(
                lp[:B], lp[B:], ref_c, ref_r, **cfg.loss_kwargs(), **extra
            )
        metrics = dict(metrics)
        if cfg.algorithm == "sdpo":
            metrics["sdpo/stage"] = torch.tensor(float(self.stage))
        return losses.mean(), metrics

    def _beta_dpo_loss(
        self, lp: Tensor, ref_c: Tensor, ref_r: Tensor, lengths: Tensor, B: int
    ) -> tuple[Tensor, dict[str, Any]]:
        r"""beta-DPO (Wu et al., arXiv:2407.08639v2, Sec. 4): DPO with the batch beta on the kept pairs.

        ``family.beta_dpo_batch`` updates the running (M, S) from the batch's margins (before the
        loss, the toy's and the official code's order), draws the kept pairs with the ``labels``
        generator (unused by the other offline algorithms, checkpointed) and returns
        :math:`\beta_b`; the loss is ``objectives.preference_loss`` (``dpo``) with that beta on
        the kept pairs, so its metrics are the kept pairs' with scale :math:`\beta_b`.
        """
        cfg = self.config
        with torch.no_grad():
            h = margin(lp[:B].detach(), lp[B:].detach(), ref_c, ref_r)  # (B,)
        M, S = self.beta_dpo_state
        bb = beta_dpo_batch(
            h,
            M,
            S,
            beta=cfg.beta,
            a=cfg.beta_dpo_a,
            mode_weight=cfg.beta_dpo_mode_weight,
            generator=self.generators["labels"],
        )
        self.beta_dpo_state = (bb.running_mean, bb.running_std)
        keep = to_device(bb.keep, lp.device)
        extra = (
            {"chosen_lengths": lengths[:B][keep], "rejected_lengths": lengths[B:][keep]}
            if cfg.reduction == "mean"
            else {}
        )
        losses, metrics = preference_loss(
            lp[:B][keep],
            lp[B:][keep],
            ref_c[keep],
            ref_r[keep],
            loss="dpo",
            reduction=cfg.reduction,
            beta=bb.beta,
            **extra,
        )
        metrics = dict(metrics)
        metrics.update(
            {
                "beta_batch": bb.beta,
                "beta_dpo/running_mean": bb.running_mean,
                "beta_dpo/running_std": bb.running_std,
                "beta_dpo/margin_mean": bb.margin_mean,
                "beta_dpo/margin_std": bb.margin_std,
                "beta_dpo/kept_fraction": len(bb.keep) / B,
            }
        )
        return losses.mean(), metrics

    def _kto_loss(self, idx: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """KTO on the rows ``idx``: ``family.kto_batch_loss`` (Ethayarajh et al., arXiv:2402.01306).

        The mismatched (KL) rows' policy log-probs are computed under no_grad, as TRL does.
        """
        cfg = self.config
        batch = _trim({k: v[idx] for k, v in self.rows.items()})
        lp, _, _ = _sequence_logps(self.model, batch, "sum")
        check_finite(
            lp.detach(), step=self.step + 1, last_good=self.last_checkpoint, name="policy log-probs"
        )
        ref_idx = to_device(idx, self.ref_cache[0].device)
        pol_kl = ref_kl = None
        z0: Any = cfg.kto_reference_point
        if self.kl_rows is not None:
            with torch.no_grad():
                kl_batch = _trim({k: v[idx] for k, v in self.kl_rows.items()})
                pol_kl = _sequence_logps(self.model, kl_batch, "sum")[0]
            ref_kl = self.ref_cache[1][ref_idx]
            if self.ctx.is_distributed:
                z0 = self._kto_global_reference_point(pol_kl - ref_kl)
                pol_kl = ref_kl = None
        losses, metrics = kto_batch_loss(
            lp,
            self.ref_cache[0][ref_idx],
            pol_kl,
            ref_kl,
            to_device(self.labels[idx], lp.device),
            beta=cfg.beta,
            desirable_weight=cfg.desirable_weight,
            undesirable_weight=cfg.undesirable_weight,
            reference_point=z0,
        )
        if self.ctx.is_distributed:
            metrics = self._kto_global_metrics(lp, self.ref_cache[0][ref_idx], idx, metrics)
        return losses.mean(), dict(metrics)

    def _kto_global_reference_point(self, logratios: Tensor) -> Tensor:
        """KTO's :math:`z_0` over the **global** batch (several processes).

        The KL sum and count are all-reduced, then the mean is clamped at 0 for ``"trl"``
        (``losses.kto_reference_point`` on it).

        TRL v1.13.0 (``KTOTrainer._compute_loss``) gathers each process's mean KL and averages those
        (``accelerator.gather_for_metrics(kl).mean().clamp(min=0)``); the sum and count give the
        global mean also with unequal shards, and the same value with equal ones.
        """
        d = logratios.detach().to("cpu", torch.float64)
        total = _all_reduce_sum(
            torch.stack([d.sum(), torch.tensor(float(d.numel()), dtype=d.dtype)])
        )
        mean = (total[0] / total[1]).reshape(1)
        clamp = self.config.kto_reference_point == "trl"
        return kto_reference_point(mean, clamp=clamp).to(logratios.dtype)

    def _kto_global_metrics(
        self, lp: Tensor, ref: Tensor, idx: Tensor, metrics: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """TRL's per-side KTO metrics over the global batch (sums and counts all-reduced).

        A side may be absent from one rank's shard, so each rank's side means cannot be averaged;
        every rank returns the global values (``all_reduce_metrics`` then averages equal numbers).
        """
        labels = self.labels[idx]
        r = (self.config.beta * (lp.detach() - ref.detach())).to("cpu", torch.float64)
        p = lp.detach().to("cpu", torch.float64)
        parts = []
        for mask in (labels, ~labels):
            parts += [r[mask].sum(), p[mask].sum(), mask.sum().to(torch.float64)]
        total = _all_reduce_sum(torch.stack(parts))
        out = {"kl": metrics["kl"]}
        for k, side in enumerate(("chosen", "rejected")):
            n = float(total[3 * k + 2])
            if n > 0:
                out[f"rewards/{side}"] = total[3 * k] / n
                out[f"logps/{side}"] = total[3 * k + 1] / n
        if "rewards/chosen" in out and "rewards/rejected" in out:
            out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
        return out

    def _reference_free_loss(self, idx: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """ORPO (Hong et al., arXiv:2403.07691) or SimPO (Meng et al., arXiv:2405.14734) on pairs.

        Per-token mean completion log-probs; the SFT term from the chosen rows' logits
        (``family.sft_nll_from_logits``: ORPO's ``nll_tokens`` / ``nll_reduction``, CPO's
        completion tokens averaged over the batch for SimPO with ``cpo_alpha > 0``).
        """
        cfg, B = self.config, len(idx)
        batch = self._pair_batch(idx)
        summed, lengths, logits = _sequence_logps_and_logits(self.model, batch)
        mean = summed / lengths
        check_finite(
            mean.detach(),
            step=self.step + 1,
            last_good=self.last_checkpoint,
            name="policy log-probs",
        )
        chosen = to_device({k: v[:B] for k, v in batch.items()}, logits.device)
        args = (chosen["input_ids"], chosen["attention_mask"], chosen["completion_mask"])
        if cfg.algorithm == "orpo":
            nll = sft_nll_from_logits(
                logits[:B], *args, tokens=cfg.nll_tokens, reduction=cfg.nll_reduction
            )
            losses, metrics = orpo_batch_loss(mean[:B], mean[B:], nll, lam=cfg.beta)
        else:
            nll = (
                sft_nll_from_logits(
                    logits[:B], *args, tokens="completion", reduction="batch_token_mean"
                )
                if cfg.cpo_alpha > 0
                else None
            )
            losses, metrics = cpo_batch_loss(
                mean[:B],
                mean[B:],
                nll,
                loss_type="simpo",
                beta=cfg.beta,
                cpo_alpha=cfg.cpo_alpha,
                simpo_gamma=cfg.simpo_gamma,
            )
        return losses.mean(), dict(metrics)

    def _tdpo_loss(self, idx: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """TDPO1 / TDPO2 (Zeng et al., arXiv:2404.11999v5, Sec. 4) on dataset rows ``idx``.

        One forward pass of the reference (no_grad) and one of the policy on the (2B, T) pair
        batch; ``logprobs.tdpo_statistics_from_logits``'s statistics (summed log-ratios, sequential
        KLs over the full vocabulary at every completion position, EOS included) into
        ``objectives.tdpo_preference_loss``, i.e. ``losses.token.tdpo_loss``.
        """
        cfg, B = self.config, len(idx)
        batch = to_device(self._pair_batch(idx), model_device(self.model))
        ids = batch["input_ids"]
        attn, comp = _check_batch(ids, batch["attention_mask"], batch["completion_mask"])
        check_model_inputs(self.model, ids, attn)
        inputs = dict(
            input_ids=ids,
            attention_mask=attn.long(),
            position_ids=position_ids_from_mask(attn),
            use_cache=False,
        )
        with torch.no_grad():
            ref_logits = self.ref_model(**inputs).logits
        logits = self.model(**inputs).logits
        stats = _tdpo_statistics(logits, ref_logits, ids, comp, _TDPO_CHUNK_ELEMENTS)
        for name, t in (
            ("policy log-probs", stats.policy_logps),
            ("reference log-probs", stats.ref_logps),
            ("sequential KL", stats.seqkl),
        ):
            check_finite(t.detach(), step=self.step + 1, last_good=self.last_checkpoint, name=name)
        pol, ref, kl = stats.policy_logps, stats.ref_logps, stats.seqkl
        losses, metrics = tdpo_preference_loss(
            pol[:B],
            pol[B:],
            ref[:B],
            ref[B:],
            kl[:B],
            kl[B:],
            beta=cfg.beta,
            alpha=cfg.tdpo_alpha,
            variant=cfg.tdpo_variant,
        )
        return losses.mean(), dict(metrics)

    # ------------------------------------------------------------ RSO and iterative DPO
    def _rso_pairs(self) -> tuple[OnlineDraw, float]:
        r"""RSO's pairs (Liu et al., arXiv:2309.06657v2, Sec. 3): one per prompt, drawn once.

        For every prompt, ``rso_candidates`` completions are sampled from the reference
        (``sampling`` generator, before any step); their rewards are the ``reward`` callable's
        scores or, without one, each candidate's mean judge probability of beating the prompt's
        other candidates (a pointwise score from the pairwise judge, as the paper turns its
        pairwise ranking model into one by a tournament); ``family.rso_rejection_sample`` accepts
        two of them with :math:`\beta_{rso}` (``rso_beta`` or the loss's strength), and the judge
        labels the pair as the online algorithms do (``labels``, ``labels`` generator). A resumed
        run rebuilds the same pairs (the reference and the fresh generators are the same).

        Returns the pairs and the acceptance rate (accepted / candidates tried).
        """
        cfg = self.config
        N, P = cfg.rso_candidates, len(self.prompts)
        gen = self.generators["sampling"]
        beta_rso = cfg.rso_beta if cfg.rso_beta is not None else getattr(cfg, cfg.strength_key)
        reps = (N + 1) // 2
        texts_in = [self.prompts[i] for _ in range(reps) for i in range(P)]  # (reps * P,)
        prompts = tokenize_prompts(self.tokenizer, texts_in, max_length=self.prompt_max)
        cand = sample_pairs(
            self.ref_model,
            self.ref_model,
            self.tokenizer,
            prompts,
            mixture_a=0.0,
            mixture_b=0.0,
            max_new_tokens=cfg.max_new_tokens,
            generator=gen,
            temperature=cfg.temperature,
        )  # rows [: reps P] then [reps P :], prompt i at rows j P + i
        texts = cand.texts_a + cand.texts_b
        rows_a, rows_b, tried = [], [], 0
        for i in range(P):
            rows = [j * P + i for j in range(2 * reps)][:N]
            cands = [texts[j] for j in rows]
            if self.reward is not None:
                r = torch.as_tensor(
                    [float(v) for v in self.reward(cands)], dtype=torch.float64
                ).reshape(-1)
                if r.numel() != N or not bool(torch.isfinite(r).all()):
                    raise ValueError(
                        f"reward must return {N} finite scores for {N} texts, got {r.tolist()!r}"
                    )
            else:
                a = [cands[x] for x in range(N) for y in range(N) if x != y]
                b = [cands[y] for x in range(N) for y in range(N) if x != y]
                pr = judge_probs(self.judge, a, b).reshape(N, N - 1)
                r = pr.mean(dim=1)
            acc, n_tried = rso_rejection_sample(r, 2, beta=beta_rso, generator=gen)
            tried += n_tried
            rows_a.append(rows[acc[0]])
            rows_b.append(rows[acc[1]])
        pick = rows_a + rows_b
        pairs = SampledPairs(
            input_ids=cand.input_ids[pick],
            attention_mask=cand.attention_mask[pick],
            completion_mask=cand.completion_mask[pick],
            texts_a=[texts[j] for j in rows_a],
            texts_b=[texts[j] for j in rows_b],
            mixture_a=1.0,
            mixture_b=1.0,
        )
        probs = judge_probs(self.judge, pairs.texts_a, pairs.texts_b)
        w = label_weights(
            probs,
            cfg.labels,
            judge=self.judge,
            texts_a=pairs.texts_a,
            texts_b=pairs.texts_b,
            generator=self.generators["labels"],
            n_samples=cfg.n_label_samples,
        )
        return OnlineDraw(pairs, probs, w), 2 * P / tried

    def _iterative_advance(self) -> None:
        """Enter the round of ``self.step``: draw its pairs from the current policy.

        Iterative DPO (Xiong et al., arXiv:2312.11456v4, Algorithm 2; Yuan et al.,
        arXiv:2401.10020v3): two completions for every prompt from the policy at the round's
        start (``sampling`` generator), labelled by the judge (``labels``), fixed for the round;
        with ``iterative_reference="previous"`` the reference becomes a copy of that policy.
        AdamW and the learning-rate schedule carry on; the data order restarts.
        """
        target = self.config.iterative_round(self.step)
        if target == self.round:
            return
        if self.config.iterative_reference == "previous":
            with torch.no_grad():
                self.ref_model.load_state_dict(self.model.state_dict())
        self.round = target
        self.round_draw = self.draw_online(list(range(self.n_items)))
        self.order, self.cursor = [], 0

    def fixed_pairs_loss(self, rows: list[int]) -> tuple[Tensor, dict[str, Any]]:
        """The loss on the rows ``rows`` of RSO's pairs or of this round's (``online_pairs_loss``)."""
        cfg = self.config
        draw = self.rso_draw if cfg.source == "rso" else self.round_draw
        loss, metrics = self.online_pairs_loss(_draw_rows(draw, rows))
        if cfg.source == "rso":
            metrics["rso/acceptance_rate"] = self.rso_acceptance
        else:
            metrics["round"] = float(self.round)
        return loss, metrics

    # ------------------------------------------------------------ the online step
    def online_loss(self, rows: list[int]) -> tuple[Tensor, dict[str, Any]]:
        """Sample pairs for the prompts ``rows``, label them with the judge, and return the loss."""
        return self.online_pairs_loss(self.draw_online(rows))

    def draw_online(self, rows: list[int]) -> OnlineDraw:
        """Two completions for each prompt of ``rows`` (``sampling`` generator) and their labels."""
        cfg = self.config
        prompts = tokenize_prompts(
            self.tokenizer, [self.prompts[i] for i in rows], max_length=self.prompt_max
        )
        m_a = cfg.mixture if cfg.source == "mixture" else 0.0
        m_b = 0.0 if cfg.source == "online" else cfg.mixture
        pairs = sample_pairs(
            self.model,
            self.ref_model,
            self.tokenizer,
            prompts,
            mixture_a=m_a,
            mixture_b=m_b,
            max_new_tokens=cfg.max_new_tokens,
            generator=self.generators["sampling"],
            temperature=cfg.temperature,
        )
        self.last_pairs = pairs
        probs = judge_probs(
            self.judge, pairs.texts_a, pairs.texts_b
        )  # (B,) float64, checked in [0, 1]
        w = label_weights(
            probs,
            cfg.labels,
            judge=self.judge,
            texts_a=pairs.texts_a,
            texts_b=pairs.texts_b,
            generator=self.generators["labels"],
            n_samples=cfg.n_label_samples,
        )
        self.last_label_weights = w
        return OnlineDraw(pairs, probs, w)

    def online_pairs_loss(self, draw: OnlineDraw) -> tuple[Tensor, dict[str, Any]]:
        """Mean loss and metrics on drawn pairs (reference log-probs computed here, no gradient)."""
        cfg, pairs, probs, w = self.config, draw.pairs, draw.probs, draw.weights
        B = len(pairs.texts_a)
        batch = _trim(
            {
                "input_ids": pairs.input_ids,
                "attention_mask": pairs.attention_mask,
                "completion_mask": pairs.completion_mask,
            }
        )
        metrics: dict[str, Any] = {}
        if cfg.source == "nash_md_pg":  # only y (rows [:B]) needs the policy's gradient
            half = _trim({k: v[:B] for k, v in batch.items()})
            lp, summed, _ = _sequence_logps(self.model, half, cfg.reduction)
            check_finite(
                lp.detach(),
                step=self.step + 1,
                last_good=self.last_checkpoint,
                name="policy log-probs",
            )
            with torch.no_grad():
                ref, ref_summed, _ = _sequence_logps(self.ref_model, half, cfg.reduction)
            loss = nash_md_pg_surrogate(lp, ref, w, tau=cfg.tau).mean()
            metrics.update(
                {
                    "rewards/probabilities": probs.mean(),
                    "logps/chosen": summed.detach().mean(),
                    "kl": (summed.detach() - ref_summed).mean(),
                }
            )
            return loss, metrics
        lp, summed, lengths = _sequence_logps(self.model, batch, cfg.reduction)
        check_finite(
            lp.detach(), step=self.step + 1, last_good=self.last_checkpoint, name="policy log-probs"
        )
        with torch.no_grad():
            ref, ref_summed, _ = _sequence_logps(self.ref_model, batch, cfg.reduction)
        # order each pair so that "chosen" is favoured (w >= 1/2): w l(h) + (1-w) l(-h) is unchanged
        w = to_device(w, lp.device)  # the judge's weights (CPU, float64) on the loss's device
        swap = w < 0.5
        perm = torch.arange(2 * B, device=lp.device)
        perm = torch.where(torch.cat([swap, swap]), (perm + B) % (2 * B), perm)
        lp, ref, lengths = lp[perm], ref[perm], lengths[perm]
        weight = torch.maximum(w, 1.0 - w).to(lp.dtype)
        extra = (
            {"chosen_lengths": lengths[:B], "rejected_lengths": lengths[B:]}
            if cfg.reduction == "mean"
            else {}
        )
        losses, pm = preference_loss(
            lp[:B], lp[B:], ref[:B], ref[B:], **cfg.loss_kwargs(), label_weight=weight, **extra
        )
        metrics.update(pm)
        metrics["labels/weight"] = weight.mean()
        if cfg.source == "online":  # both completions from the policy: an unbiased KL estimate
            metrics["kl"] = (summed.detach() - ref_summed).mean()
        return losses.mean(), metrics

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, Any]:
        """``eval/kl``, ``win_rate`` and ``class_distribution`` on fresh policy samples.

        The generator is seeded from (seed, step), so evaluation never moves the training generators.
        """
        cfg = self.config
        if not self.prompts:
            return {}
        gen = torch.Generator().manual_seed(1_000_003 * (cfg.seed + 1) + step)
        texts = [self.prompts[i % len(self.prompts)] for i in range(cfg.n_eval)]
        prompts = tokenize_prompts(self.tokenizer, texts, max_length=self.prompt_max)
        pairs = sample_pairs(
            self.model,
            self.ref_model,
            self.tokenizer,
            prompts,
            mixture_a=0.0,
            mixture_b=1.0,
            max_new_tokens=cfg.max_new_tokens,
            generator=gen,
            temperature=cfg.temperature,
        )
        n = len(texts)
        half = _trim(
            {
                "input_ids": pairs.input_ids[:n],
                "attention_mask": pairs.attention_mask[:n],
                "completion_mask": pairs.completion_mask[:n],
            }
        )
        _, lp, _ = _sequence_logps(self.model, half, "sum")
        _, ref, _ = _sequence_logps(self.ref_model, half, "sum")
        out: dict[str, Any] = {"eval/kl": float((lp - ref).mean())}
        if self.judge is not None:
            out["win_rate"] = float(judge_probs(self.judge, pairs.texts_a, pairs.texts_b).mean())
            if hasattr(self.judge, "class_distribution"):
                out["class_distribution"] = self.judge.class_distribution(pairs.texts_a).tolist()
        return out

    # ------------------------------------------------------------------ the loop
    def train_step(self) -> dict[str, Any]:
        """One optimizer step; returns its metrics (floats, global-batch means on every rank).

        Raises ``NonFiniteLossError`` (on every rank) before a bad step reaches the weights.
        """
        cfg, ctx = self.config, self.ctx
        if cfg.algorithm == "sdpo":
            self._sdpo_advance()  # a new stage: the reference becomes the policy
        if cfg.algorithm == "iterative_dpo":
            self._iterative_advance()  # a new round: fresh pairs (and maybe reference)
        rows = self.next_indices()  # the global batch, the same on every rank
        compute = {
            "offline": self.offline_loss,
            "rso": self.fixed_pairs_loss,
            "iterative": self.fixed_pairs_loss,
        }.get(cfg.source, self.online_loss)
        if ctx.is_distributed:
            rows = local_rows(rows, ctx)
            error = None
            try:
                loss, metrics = compute(rows)
                check_finite(loss, step=self.step + 1, last_good=self.last_checkpoint)
            except Exception as err:
                error = err
            raise_together(error, ctx, step=self.step + 1, last_good=self.last_checkpoint)
        else:
            loss, metrics = compute(rows)
            check_finite(loss, step=self.step + 1, last_good=self.last_checkpoint)
        self.optimizer.zero_grad(set_to_none=True)
        if ctx.is_distributed:  # average of the scaled shard gradients = the global-batch gradient
            (loss * loss_scale(len(rows), cfg.batch_size, ctx)).backward()
            all_reduce_gradients(self.model, ctx)
        else:
            loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(
            params, cfg.max_grad_norm if cfg.max_grad_norm else math.inf
        )
        check_finite(norm, step=self.step + 1, last_good=self.last_checkpoint, name="gradient norm")
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step += 1
        values = {"loss": loss.detach(), **metrics}
        if ctx.is_distributed:
            values = all_reduce_metrics(values, ctx, weight=float(len(rows)))
        out = {"loss": float(values["loss"]), "grad_norm": float(norm), "learning_rate": lr}
        out.update({k: float(values[k]) for k in metrics})
        return out

    def save(self) -> Path:
        """Checkpoint the weights, AdamW state, generators and data cursor at ``self.step``.

        With several processes every rank must call it: the generator states are gathered, rank 0
        writes, and every rank returns once the checkpoint is complete (``save_trainer``).
        """
        alg = self.config.algorithm
        if alg == "sdpo":
            self.last_checkpoint = self._save_staged(
                {"sdpo_stage": self.stage}, self.ref_model if self.stage > 0 else None
            )
        elif alg == "beta_dpo":
            self.last_checkpoint = self._save_staged(
                {"beta_dpo_state": list(self.beta_dpo_state)}, None
            )
        elif alg == "iterative_dpo":
            extra: dict[str, Any] = {"iterative_round": self.round}
            if self.round_draw is not None:
                d = self.round_draw
                extra["iterative_draw"] = {  # JSON: token ids, and floats that repr round-trips
                    "input_ids": d.pairs.input_ids.tolist(),
                    "attention_mask": d.pairs.attention_mask.tolist(),
                    "completion_mask": d.pairs.completion_mask.tolist(),
                    "texts_a": list(d.pairs.texts_a),
                    "texts_b": list(d.pairs.texts_b),
                    "probs": d.probs.tolist(),
                    "weights": d.weights.tolist(),
                    "dtypes": [str(d.probs.dtype), str(d.weights.dtype)],
                }
            previous = self.config.iterative_reference == "previous" and self.round >= 0
            self.last_checkpoint = self._save_staged(extra, self.ref_model if previous else None)
        else:
            self.last_checkpoint = save_trainer(self)
        return self.last_checkpoint

    def _save_staged(self, state: dict[str, Any], reference) -> Path:
        """``save_trainer`` plus an algorithm's ``state`` (in the JSON) and a changed reference.

        sDPO: its stage and, past stage 0, its reference's weights; beta-DPO: the running
        (M, S); iterative DPO: the round, its pairs and (``"previous"``) its reference.
        """
        ctx = self.ctx
        generators = checkpoint_generators(self.generators, ctx)  # collective
        kw = {
            "step": self.step,
            "model": self.model,
            "optimizer": self.optimizer,
            "generators": generators,
            "extra": {**_extra(self), **state},
            "reference": reference,
        }
        if not ctx.is_distributed:
            return save_checkpoint(self.config.run_dir, **kw)
        path, error = Path(self.config.run_dir) / f"step-{self.step:09d}", None
        if ctx.is_main:
            try:
                path = save_checkpoint(self.config.run_dir, **kw)
            except Exception as err:
                error = err
        if any_rank(error is not None, ctx):
            raise (
                error
                if error is not None
                else RuntimeError(f"rank 0 failed to write the checkpoint {path}")
            )
        return path

    def resume(self) -> int:
        """Restore from the newest checkpoint of ``run_dir`` that loads; return the step reached (0: none).

        ``checkpoint.load_latest_checkpoint``: a damaged newer checkpoint is skipped with a
        ``CheckpointWarning`` that names it, the file and why; a failed load changes nothing; when no
        checkpoint loads, a ``CheckpointError`` lists them all. The checkpoint must carry this
        trainer's world size and a data order and cursor in range. Every rank restores the same
        checkpoint and its own per-rank generators (``restore_generators``).
        """
        ctx, run_dir, n_items = self.ctx, self.config.run_dir, self.n_items
        alg = self.config.algorithm
        staged = alg == "sdpo"
        iterative = alg == "iterative_dpo"

        def check_extra(extra: dict[str, Any]) -> None:  # refuses the checkpoint (CheckpointError)
            saved = extra.get("world_size", 1)
            if saved != ctx.world_size:
                raise ValueError(
                    f"it was written by {saved} process(es): resume it with world_size={saved}, "
                    f"got world_size={ctx.world_size}"
                )
            order, cursor = extra.get("order"), extra.get("cursor")
            if not (
                isinstance(order, list)
                and all(type(i) is int and 0 <= i < n_items for i in order)
                and type(cursor) is int
                and 0 <= cursor <= len(order)
            ):
                raise ValueError(
                    f"its data 'order' and 'cursor' are missing or out of range for {n_items} items"
                )
            if staged:
                stage = extra.get("sdpo_stage")
                if type(stage) is not int or not 0 <= stage < self.config.sdpo_stages:
                    raise ValueError(
                        f"its 'sdpo_stage' is missing or out of range for sdpo_stages="
                        f"{self.config.sdpo_stages}: {stage!r}"
                    )
            if alg == "beta_dpo":
                ms = extra.get("beta_dpo_state")
                if not (
                    isinstance(ms, list)
                    and len(ms) == 2
                    and all(type(v) in (int, float) and math.isfinite(v) for v in ms)
                ):
                    raise ValueError(f"its 'beta_dpo_state' (M, S) is missing or malformed: {ms!r}")
            if iterative:
                rnd = extra.get("iterative_round")
                if type(rnd) is not int or not -1 <= rnd < self.config.iterative_rounds:
                    raise ValueError(
                        f"its 'iterative_round' is missing or out of range for iterative_rounds="
                        f"{self.config.iterative_rounds}: {rnd!r}"
                    )
                draw = extra.get("iterative_draw")
                keys = {"input_ids", "attention_mask", "completion_mask", "texts_a", "texts_b"}
                if rnd >= 0 and not (
                    isinstance(draw, dict)
                    and keys | {"probs", "weights", "dtypes"} <= draw.keys()
                    and len(draw["texts_a"]) == n_items
                    and all(t in ("torch.float32", "torch.float64") for t in draw["dtypes"])
                ):
                    raise ValueError(f"its 'iterative_draw' is missing or not {n_items} pairs")

        state, error = None, None
        try:
            state = (
                None
                if not run_dir
                else load_latest_checkpoint(
                    run_dir,
                    model=self.model,
                    optimizer=self.optimizer,
                    generators=restore_generators(self.generators, ctx),
                    check_extra=check_extra,
                    reference=self.ref_model
                    if staged or (iterative and self.config.iterative_reference == "previous")
                    else None,
                )
            )
        except Exception as err:
            error = err
        if any_rank(error is not None, ctx):
            raise (
                error
                if error is not None
                else RuntimeError(
                    f"another rank could not resume from run_dir {run_dir!r}: see that rank's message"
                )
            )
        if not same_on_all_ranks(-1 if state is None else state.step, ctx):
            raise ValueError(
                f"the ranks resumed from different checkpoints of run_dir {run_dir!r}: it must be "
                "one directory that every rank can read"
            )
        if state is None:
            return 0
        if staged:
            stage = state.extra["sdpo_stage"]
            if stage > 0 and not state.reference:
                raise ValueError(
                    f"the checkpoint {str(state.path)!r} is at sDPO stage {stage} but holds no "
                    "reference weights (reference.safetensors)"
                )
            if stage != self.stage:
                self.stage = stage
                self.ref_cache = self._reference_cache()
        if alg == "beta_dpo":
            M, S = state.extra["beta_dpo_state"]
            self.beta_dpo_state = (float(M), float(S))
        if iterative:
            self.round = state.extra["iterative_round"]
            d = state.extra.get("iterative_draw")
            if self.round >= 0:
                if self.config.iterative_reference == "previous" and not state.reference:
                    raise ValueError(
                        f"the checkpoint {str(state.path)!r} is an iterative DPO run with "
                        "iterative_reference='previous' but holds no reference weights"
                    )
                ids = {
                    k: torch.tensor(d[k], dtype=torch.long)
                    for k in ("input_ids", "attention_mask", "completion_mask")
                }
                pairs = SampledPairs(
                    **ids,
                    texts_a=list(d["texts_a"]),
                    texts_b=list(d["texts_b"]),
                    mixture_a=0.0,
                    mixture_b=0.0,
                )
                dp, dw = (getattr(torch, name.removeprefix("torch.")) for name in d["dtypes"])
                self.round_draw = OnlineDraw(
                    pairs, torch.tensor(d["probs"], dtype=dp), torch.tensor(d["weights"], dtype=dw)
                )
        self.step, self.order, self.cursor = (
            state.step,
            list(state.extra["order"]),
            state.extra["cursor"],
        )
        self.last_checkpoint = state.path
        return self.step

    def run(self, *, resume: bool = False) -> dict[str, Any]:
        """Train up to ``config.steps`` steps; see :func:`train`."""
        cfg, main = self.config, self.ctx.is_main
        log = None
        resumed = self.resume() if resume else 0
        if cfg.run_dir is not None and main:  # only rank 0 writes the log
            log_path = Path(cfg.run_dir) / "run.jsonl"
            header = asdict(cfg)
            if resume and resumed and log_path.is_file():
                log = RunLogger(log_path, config=header, resume_from_step=resumed)
            else:  # a fresh start (also a resume that found no checkpoint): a fresh log
                log = RunLogger(log_path, config=header, overwrite=True)
        history: list[dict[str, Any]] = []
        if self.step == 0 and cfg.eval_every and main:  # the weights agree: rank 0 evaluates
            record = self.evaluate(0)
            history.append({"step": 0, **record})
            if log is not None:
                log.log(0, record)
        for _ in progress(
            range(self.step, cfg.steps),
            enabled=cfg.show_progress if main else False,
            total=cfg.steps - self.step,
            desc=cfg.algorithm,
        ):
            record = self.train_step()
            if cfg.eval_every and self.step % cfg.eval_every == 0 and main:
                record.update(self.evaluate(self.step))
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                history.append({"step": self.step, **record})
                if log is not None:
                    log.log(self.step, record)
            if cfg.run_dir is not None and (
                (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0)
                or self.step == cfg.steps
            ):
                self.save()
        return {
            "steps": self.step,
            "resumed_from": resumed,
            "run_dir": cfg.run_dir,
            "log": None if log is None else str(log.path),
            "last_checkpoint": None if self.last_checkpoint is None else str(self.last_checkpoint),
            "history": history,
            "final": history[-1] if history else {},
        }


def train(
    config: TrainConfig,
    model,
    ref_model,
    tokenizer,
    *,
    dataset=None,
    prompts=None,
    judge=None,
    task=None,
    resume: bool = False,
    ctx: DistributedContext | None = None,
    reward=None,
) -> dict[str, Any]:
    """Train ``model`` in place with ``config.algorithm``; log, checkpoint, return a run summary.

    Parameters
    ----------
    config : TrainConfig
    model, ref_model : causal LMs (policy, trained in place; frozen reference)
    tokenizer : GPT-2 tokenizer
    dataset : list of ``{"prompt", "chosen", "rejected"}``, optional
        Offline algorithms (``kto``: unpaired ``{"prompt", "completion", "label"}``).
    prompts : list of str, optional
        Online algorithms and evaluation; default ``task.prompt_templates`` when ``task`` is given.
    judge : Judge or callable, optional
        Labels (online) and evaluation metrics. A plain callable ``fn(a, b) -> Pr(a beats b)``
        (two completion texts, one probability in [0, 1]) is wrapped in a ``CallableJudge``.
    task : ``corpus.LiftedTask`` or ``corpus.SentimentTask``, optional
        Supplies default prompts.
    resume : bool
        Continue from the newest checkpoint of ``config.run_dir`` that loads (weights, AdamW,
        generators, data cursor; a damaged newer one is skipped with a ``CheckpointWarning``) and
        continue its log; without a checkpoint, start fresh.
    ctx : DistributedContext, optional
        Several processes (call it on every rank with its context, after ``init_process_group``);
        None: one process. See the module docstring.
    reward : callable, optional
        ``rso`` only: see :class:`Trainer`.

    Returns
    -------
    dict
        ``steps``, ``resumed_from``, ``run_dir``, ``log`` (path of ``run.jsonl``; None except on
        rank 0), ``last_checkpoint``, ``history`` (this call's logged records: ``loss``,
        ``grad_norm``, ``learning_rate``, the metrics; evaluations on rank 0 only) and ``final``.

    Raises
    ------
    ValueError
        A bad argument, named, before any step: see :class:`Trainer` (a bare str as ``prompts``, a
        dataset record without its keys or with an empty completion, a judge that is neither a
        ``Judge`` nor a callable, a ``max_length`` beyond the model's positions...), and during
        training a judge returning something other than one probability in [0, 1] per pair.
    prefopt_toy.lm.train.checkpoint.NonFiniteLossError
        When the policy log-probs, the loss or the gradient norm become NaN/inf; the step is named
        and the last good checkpoint is left as it was.

    References
    ----------
    See the module docstring (DPO arXiv:2305.18290v3, IPO arXiv:2310.12036v2, online IPO / IPO-MD
    arXiv:2403.08635v1, Nash-MD arXiv:2312.00886v4, TRL v1.13.0).
    """
    if not isinstance(resume, bool):
        raise ValueError(f"resume must be a bool, got {type(resume).__name__}")
    if prompts is None and task is not None:
        templates = getattr(task, "prompt_templates", None) or getattr(task, "prompts", None)
        if templates is None:
            raise ValueError(
                f"task must have prompt_templates or prompts (a corpus.LiftedTask or SentimentTask), "
                f"got {type(task).__name__}"
            )
        prompts = validate_texts(templates, "task.prompt_templates")
    return Trainer(
        config,
        model,
        ref_model,
        tokenizer,
        dataset=dataset,
        prompts=prompts,
        judge=judge,
        ctx=ctx,
        reward=reward,
    ).run(resume=resume)
