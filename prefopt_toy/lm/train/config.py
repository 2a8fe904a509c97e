"""The configuration of a GPT-2 preference-training run: ``TrainConfig``, its validation, ``ALGORITHMS``.

``ALGORITHMS`` maps each algorithm name (``dpo``, ``ipo``, ``slic``, ``offline``, ``online_dpo``,
``online_ipo``, ``online``, ``ipo_md``, ``nash_md_pg``, and the offline family ``kto``, ``orpo``,
``simpo``, ``rdpo``, ``dpop``, ``sdpo``, and ``beta_dpo``, ``rso``, ``iterative_dpo``, ``tdpo``) to its pair source and fixed per-pair loss;
``TrainConfig`` holds everything that determines a run (written to the run log's header and each
checkpoint) and checks it when built, so a bad value fails before any training step;
``TrainConfig.lr_at`` is the learning-rate schedule, a pure function of the step (``LR_SCHEDULES``).
The training loop that consumes it is ``prefopt_toy.lm.train.trainer``.

References: as :mod:`prefopt_toy.lm.train.trainer`, the module this one was split from; for the
family: Ethayarajh et al., arXiv:2402.01306 (KTO); Hong et al., arXiv:2403.07691 (ORPO); Meng et
al., arXiv:2405.14734 (SimPO); Park et al., arXiv:2403.19159 (R-DPO); Pal et al.,
arXiv:2402.13228v3 (DPOP); Kim et al., arXiv:2403.19270 (sDPO); Wu et al., arXiv:2407.08639v2
(beta-DPO); Liu et al., arXiv:2309.06657v2 (RSO); Xiong et al., arXiv:2312.11456v4 and Yuan et al.,
arXiv:2401.10020v3 (iterative DPO); Zeng et al., arXiv:2404.11999v5 (TDPO).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

from prefopt_toy._validate import as_int, as_positive_float, as_unit_interval
from prefopt_toy.lm.family import KTO_REFERENCE_POINTS, NLL_REDUCTIONS, NLL_TOKENS
from prefopt_toy.lm.objectives import LOSS_STRENGTH, LOSSES
from prefopt_toy.losses.token import TDPO_VARIANTS

from .online import LABEL_MODES

__all__ = [
    "ALGORITHMS",
    "FAMILY_ALGORITHMS",
    "ITERATIVE_REFERENCES",
    "LR_SCHEDULES",
    "RSO_LOSSES",
    "TrainConfig",
]

LR_SCHEDULES = ("constant", "linear")
"""Learning-rate schedules of ``TrainConfig.lr_schedule`` (see ``TrainConfig.lr_at``)."""

# seeds are combined arithmetically (4 seed + k, 1_000_003 (seed + 1) + step) into 64-bit ones
_MAX_SEED = 2**32

# name -> (pair source, fixed loss or None when config.loss chooses)
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "dpo": ("offline", "dpo"),
    "ipo": ("offline", "ipo"),
    "slic": ("offline", "slic"),
    "offline": ("offline", None),
    "online_dpo": ("online", "dpo"),
    "online_ipo": ("online", "ipo"),
    "online": ("online", None),
    "ipo_md": ("mixture", "ipo"),
    "nash_md_pg": ("nash_md_pg", None),
    "kto": ("offline", "kto"),
    "orpo": ("offline", "orpo"),
    "simpo": ("offline", "simpo"),
    "rdpo": ("offline", "rdpo"),
    "dpop": ("offline", "dpop"),
    "sdpo": ("offline", "dpo"),
    "beta_dpo": ("offline", "dpo"),
    "rso": ("rso", None),
    "iterative_dpo": ("iterative", "dpo"),
    "tdpo": ("offline", "tdpo"),
}

RSO_LOSSES: tuple[str, ...] = ("dpo", "ipo", "slic")
"""The losses ``rso`` fits (``TrainConfig.loss``; SLiC's is the hinge), as the toy's ``rso``."""

ITERATIVE_REFERENCES: tuple[str, ...] = ("initial", "previous")
"""``iterative_dpo``'s references: the initial model throughout, or each round's starting policy."""

FAMILY_ALGORITHMS: dict[str, str] = {
    "kto": "sum",
    "orpo": "mean",
    "simpo": "mean",
    "rdpo": "sum",
    "dpop": "sum",
    "tdpo": "sum",
}
"""The offline algorithms whose loss is in ``prefopt_toy.lm.family`` (not ``objectives.LOSSES``),
each with the sequence reduction its loss is defined on (KTO, R-DPO, DPOP: summed log-probs; ORPO,
SimPO: per-token means, TRL's ``average_log_prob``; TDPO's, ``objectives.tdpo_preference_loss``
with ``losses.token.tdpo_loss``, is on summed log-probs and sequential KLs). Their KL strength / loss weight is ``beta``.
``sdpo`` is DPO (``objectives``) run in stages."""

# algorithm -> {field: default}: the fields only that algorithm uses (None elsewhere)
_ALGORITHM_FIELDS: dict[str, dict[str, Any]] = {
    "kto": {"kto_reference_point": "trl", "desirable_weight": 1.0, "undesirable_weight": 1.0},
    "orpo": {"nll_tokens": "prompt_and_completion", "nll_reduction": "batch_token_mean"},
    "simpo": {"cpo_alpha": 0.0, "simpo_gamma": 0.5},
    "rdpo": {"rdpo_alpha": None},
    "dpop": {"dpop_lambda": 50.0, "dpop_placement": "inside"},
    "sdpo": {"sdpo_stages": 2, "sdpo_split": None},
    "beta_dpo": {"beta_dpo_a": 0.6, "beta_dpo_mode_weight": 0.2},
    "rso": {"rso_beta": None, "rso_candidates": 8},
    "iterative_dpo": {"iterative_rounds": 2, "iterative_reference": "initial"},
    "tdpo": {"tdpo_variant": "tdpo2", "tdpo_alpha": 0.5},
}

# the KL strength of each pair source that has no per-pair loss (the others take
# objectives.LOSS_STRENGTH[loss]); with ALGORITHMS, the single map from algorithm to hyperparameter
_SOURCE_STRENGTH = {"nash_md_pg": "tau"}


# pair sources that sample from the token-level mixture pi^(1-m) mu^m (the others need mixture = 0)
_MIXTURE_SOURCES = ("mixture", "nash_md_pg")


@dataclass
class TrainConfig:
    r"""Everything that determines a run (written to the run log's header and each checkpoint).

    Parameters
    ----------
    algorithm : str
        One of ``ALGORITHMS``.
    reduction : {"sum", "mean"}
        Required: sequence log-probs as token sums (the theory) or per-token means (TRL's IPO).
    loss : str, optional
        For ``offline`` / ``online``: one of ``objectives.LOSSES``. The named algorithms fix it
        (passing another raises ``ValueError``).
    beta : float > 0, optional
        KL weight of the DPO-like losses (``dpo``, ``slic``, ``robust_dpo``, ``gpo_*``; see
        ``objectives.LOSS_STRENGTH``). Required for them, refused for the others.
    tau : float > 0, optional
        IPO's tau, and Nash-MD-PG's KL weight. Required for them, refused for the others.
    mixture : float in [0, 1]
        Weight m on the reference of the token-level mixture (IPO-MD, Nash-MD-PG's opponent);
        must be 0 for the other algorithms.
    labels : {"dataset", "soft", "hard", "sampled"}, optional
        Default ``"dataset"`` offline, ``"soft"`` online.
    n_label_samples : int >= 1
        Draws per pair for ``labels="sampled"`` (must stay 1 with the other label modes).
    lr, steps, batch_size : AdamW learning rate (no weight decay), steps, pairs per step.
        With several processes ``batch_size`` is the **global** batch, split across the ranks.
    lr_schedule : {"constant", "linear"}
        ``"constant"`` (default): ``lr`` at every step. ``"linear"``: decays linearly to
        ``lr / (steps - warmup_steps)`` at the last update (see :meth:`lr_at`).
    warmup_steps : int >= 0, < steps
        Updates over which the rate ramps linearly up to ``lr`` (0: none).
    max_new_tokens, temperature : sampling of online completions.
    max_length : int > max_new_tokens
        Longest prompt + completion in tokens (offline rows; online prompts get
        ``max_length - max_new_tokens``). The trainer also requires it to fit the model's
        positions (``n_positions`` for GPT-2).
    max_grad_norm : float, optional
        Clip the gradient norm when given.
    seed : int in [0, 2**32)
    checkpoint_every : int
        Save every so many steps (0: only at the end); needs ``run_dir``.
    run_dir : str, optional
        Checkpoints (``step-*``) and the log ``run.jsonl``. None: nothing written.
    log_every, eval_every, n_eval : int
        Log every so many steps; evaluate (``eval/kl``, ``win_rate``, ``class_distribution``) every
        ``eval_every`` steps (0: never) on ``n_eval`` policy samples.
    show_progress : bool, optional
        tqdm bar (None: only on a terminal, see ``runlog.progress``).
    kto_reference_point : {"trl", "unclamped"} or float, optional
        ``kto`` only (default ``"trl"``): KTO's :math:`z_0`, ``family.kto_batch_loss``'s
        ``reference_point`` (TRL's clamped batch estimate on mismatched completions built by
        ``family.kto_mismatched_completions``; needs ``batch_size >= 2``).
    desirable_weight, undesirable_weight : float > 0, optional
        ``kto`` only (default 1, TRL's): the weights of desirable / undesirable examples.
    nll_tokens, nll_reduction : str, optional
        ``orpo`` only: the SFT term's tokens and averaging (``family.sft_nll_from_logits``);
        default TRL 1.13's ``"prompt_and_completion"`` / ``"batch_token_mean"`` (the paper's is
        ``"completion"`` / ``"per_example_mean"``). ``beta`` is ORPO's lambda.
    cpo_alpha : float >= 0, optional
        ``simpo`` only: weight of the chosen completion's NLL (``family.cpo_batch_loss``,
        ``loss_type="simpo"``). Default **0 here** (pure SimPO), where TRL's ``CPOConfig`` defaults
        to 1 (CPO-SimPO).
    simpo_gamma : float >= 0, optional
        ``simpo`` only: SimPO's absolute margin gamma (default 0.5, TRL's).
    rdpo_alpha : float >= 0, optional
        ``rdpo`` only, required: R-DPO's length weight alpha (lengths in tokens,
        completion plus EOS, as the collator's completion mask counts them).
    dpop_lambda : float >= 0, optional
        ``dpop`` only (default 50, the paper's): DPOP's penalty weight.
    dpop_placement : {"inside", "outside"}, optional
        ``dpop`` only (default ``"inside"``, the corrected paper v3).
    sdpo_stages : int >= 1, optional
        ``sdpo`` only (default 2): the number T of stages; at the end of each stage the reference
        becomes a copy of the policy.
    sdpo_split : sequence of float > 0, optional
        ``sdpo`` only: the fraction of the dataset (in dataset order) and of ``steps`` of each
        stage, T numbers summing to 1; None: equal split. Stage t trains on its own contiguous
        chunk of the dataset for its share of the steps.
    beta_dpo_a : float >= 0, optional
        ``beta_dpo`` only (default 0.6, the toy's): the scaling ``a`` of the batch beta
        :math:`\beta_b = \beta (1 + a (\bar h_{kept} - M))` (Wu et al., arXiv:2407.08639v2,
        Eq. 7; 0 with ``beta_dpo_mode_weight=0`` is DPO).
    beta_dpo_mode_weight : float in [0, 1), optional
        ``beta_dpo`` only (default 0.2, the toy's): the fraction of each batch dropped by the
        Gaussian filter (the official code's ``mode_weight``; ``int(B (1 - mode_weight))`` pairs
        kept, at least one). Needs ``batch_size >= 2`` (the batch standard deviation).
    rso_beta : float > 0, optional
        ``rso`` only: :math:`\beta_{rso}` of the sampled policy :math:`\mu e^{r/\beta_{rso}}/Z`
        (Liu et al., arXiv:2309.06657v2, Algorithm 1); None: the loss's strength (the toy's default).
    rso_candidates : int >= 2, optional
        ``rso`` only (default 8): completions drawn from the reference per prompt, out of which
        rejection sampling accepts two (one pair per prompt).
    iterative_rounds : int >= 1, <= steps, optional
        ``iterative_dpo`` only (default 2): rounds; ``steps`` is the total, split as the toy's
        ``iterative_dpo`` splits it (the first ``steps % rounds`` rounds one step longer).
    iterative_reference : {"initial", "previous"}, optional
        ``iterative_dpo`` only (default ``"initial"``, the toy's): the reference of every round.
    tdpo_variant : {"tdpo1", "tdpo2"}, optional
        ``tdpo`` only (default ``"tdpo2"``, the official ``tdpo_loss``'s ``if_tdpo2=True``; its
        ``config/loss/tdpo.yaml`` sets TDPO1): ``losses.token.TDPO_VARIANTS``.
    tdpo_alpha : float >= 0, optional
        ``tdpo`` only (default 0.5, the official): TDPO2's weight of the KL difference (TDPO1
        ignores it). ``beta`` is TDPO's KL strength (0.1 in the official config).

    Every field is checked when the config is built (:meth:`validate`): numbers must be finite
    real numbers (a string such as ``'0.1'``, a bool, NaN or inf raises ``ValueError`` naming the
    field).

    References
    ----------
    TRL https://github.com/huggingface/trl v1.13.0 (``DPOConfig``, ``OnlineDPOConfig``).
    """

    algorithm: str
    reduction: str | None = None
    loss: str | None = None
    beta: float | None = None
    tau: float | None = None
    mixture: float = 0.0
    labels: str | None = None
    n_label_samples: int = 1
    lr: float = 1e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    steps: int = 10
    batch_size: int = 4
    max_new_tokens: int = 16
    temperature: float = 1.0
    max_length: int = 64
    max_grad_norm: float | None = None
    seed: int = 0
    checkpoint_every: int = 0
    run_dir: str | None = None
    log_every: int = 1
    eval_every: int = 0
    n_eval: int = 16
    show_progress: bool | None = field(default=None)
    kto_reference_point: str | float | None = None
    desirable_weight: float | None = None
    undesirable_weight: float | None = None
    nll_tokens: str | None = None
    nll_reduction: str | None = None
    cpo_alpha: float | None = None
    simpo_gamma: float | None = None
    rdpo_alpha: float | None = None
    dpop_lambda: float | None = None
    dpop_placement: str | None = None
    sdpo_stages: int | None = None
    sdpo_split: list[float] | None = None
    beta_dpo_a: float | None = None
    beta_dpo_mode_weight: float | None = None
    rso_beta: float | None = None
    rso_candidates: int | None = None
    iterative_rounds: int | None = None
    iterative_reference: str | None = None
    tdpo_variant: str | None = None
    tdpo_alpha: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field (and normalise: numbers to ``float`` / ``int``, ``labels`` defaulted).

        Called when the config is built, and again by the trainer, so a field changed afterwards
        is checked too. Which of ``beta`` / ``tau`` an algorithm needs comes from ``ALGORITHMS``
        and ``objectives.LOSS_STRENGTH`` (Nash-MD-PG: ``tau``), the one map from algorithm to
        hyperparameter: that one is required and ``> 0``, the other must be None.

        Raises
        ------
        ValueError
            Naming the field and its constraint: an unknown ``algorithm``, ``loss``, ``reduction``,
            ``labels`` or ``lr_schedule``; a missing or unused ``beta`` / ``tau``; a number that is
            not a finite real (strings, bools, NaN, inf) or out of range (``lr``, ``temperature``,
            ``max_grad_norm`` > 0; ``mixture`` in [0, 1] and 0 where no mixture is sampled;
            ``steps``, ``batch_size``, ``max_new_tokens``, ``log_every``, ``n_eval``,
            ``n_label_samples`` >= 1; ``seed``, ``checkpoint_every``, ``eval_every``,
            ``warmup_steps`` >= 0; ``warmup_steps < steps``; ``max_length > max_new_tokens``);
            ``n_label_samples`` other than 1 without ``labels="sampled"``; ``checkpoint_every``
            without ``run_dir``; ``run_dir`` not a path; ``show_progress`` not None or a bool.
        """
        if not isinstance(self.algorithm, str) or self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {list(ALGORITHMS)}, got {self.algorithm!r}")
        if not isinstance(self.reduction, str) or self.reduction not in ("sum", "mean"):
            raise ValueError(
                f"reduction is required and must be 'sum' or 'mean', got {self.reduction!r}"
            )
        source, fixed = ALGORITHMS[self.algorithm]
        if source in _SOURCE_STRENGTH:
            if self.loss is not None:
                raise ValueError(
                    f"loss is not used by {self.algorithm} (it has its own policy-gradient surrogate), "
                    f"got loss={self.loss!r}"
                )
        else:
            if fixed is not None and self.loss not in (None, fixed):
                raise ValueError(
                    f"algorithm {self.algorithm!r} uses loss {fixed!r}, got loss={self.loss!r}"
                )
            if fixed is not None:
                self.loss = fixed
            if self.algorithm == "rso":
                if self.loss is None:
                    self.loss = "dpo"  # the toy's default
                if self.loss not in RSO_LOSSES:
                    raise ValueError(
                        f"loss must be one of {list(RSO_LOSSES)} for algorithm 'rso', got "
                        f"{self.loss!r}"
                    )
            if self.algorithm in FAMILY_ALGORITHMS:
                pass  # the loss is the family's (prefopt_toy.lm.family), not objectives.LOSSES
            elif not isinstance(self.loss, str) or self.loss not in LOSSES:
                raise ValueError(
                    f"loss must be one of {list(LOSSES)} for algorithm {self.algorithm!r}, got {self.loss!r}"
                )
        key = self.strength_key
        other = "beta" if key == "tau" else "tau"
        what = f"algorithm {self.algorithm!r}" + (
            f" (loss {self.loss!r})" if self.loss is not None else ""
        )
        if getattr(self, other) is not None:
            raise ValueError(
                f"{other} is not used by {what}: it takes {key}; got {other}={getattr(self, other)!r}"
            )
        if getattr(self, key) is None:
            raise ValueError(f"{key} is required for {what} (its KL strength, a real number > 0)")
        setattr(self, key, as_positive_float(getattr(self, key), key))

        default_labels = "dataset" if source == "offline" else "soft"
        self.labels = default_labels if self.labels is None else self.labels
        allowed = ("dataset",) if source == "offline" else LABEL_MODES
        if not isinstance(self.labels, str) or self.labels not in allowed:
            raise ValueError(
                f"labels must be one of {allowed} for algorithm {self.algorithm!r}, got {self.labels!r}"
            )
        self.n_label_samples = as_int(self.n_label_samples, "n_label_samples", minimum=1)
        if self.n_label_samples != 1 and self.labels != "sampled":
            raise ValueError(
                f"n_label_samples is only used with labels='sampled', got n_label_samples="
                f"{self.n_label_samples} with labels={self.labels!r}"
            )
        self.mixture = as_unit_interval(self.mixture, "mixture")
        if source not in _MIXTURE_SOURCES and self.mixture != 0.0:
            hint = (
                "use ipo_md to sample from the mixture"
                if source == "online"
                else "offline pairs come from the dataset"
            )
            raise ValueError(
                f"mixture must be 0 for {self.algorithm!r} ({hint}), got {self.mixture!r}"
            )
        for name in ("steps", "batch_size", "max_new_tokens", "max_length", "log_every", "n_eval"):
            setattr(self, name, as_int(getattr(self, name), name, minimum=1))
        for name in ("checkpoint_every", "eval_every", "seed", "warmup_steps"):
            setattr(self, name, as_int(getattr(self, name), name, minimum=0))
        if self.seed >= _MAX_SEED:
            raise ValueError(f"seed must be < 2**32, got {self.seed}")
        if self.max_length <= self.max_new_tokens:
            raise ValueError(
                f"max_length ({self.max_length}) must exceed max_new_tokens ({self.max_new_tokens}): "
                "prompts get max_length - max_new_tokens tokens"
            )
        self.lr = as_positive_float(self.lr, "lr")
        if not isinstance(self.lr_schedule, str) or self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.warmup_steps >= self.steps and self.warmup_steps > 0:
            raise ValueError(
                f"warmup_steps must be < steps ({self.steps}), got {self.warmup_steps}"
            )
        self.temperature = as_positive_float(self.temperature, "temperature")
        if self.max_grad_norm is not None:
            self.max_grad_norm = as_positive_float(self.max_grad_norm, "max_grad_norm")
        if self.run_dir is not None:
            if not isinstance(self.run_dir, (str, os.PathLike)) or not os.fspath(self.run_dir):
                raise ValueError(
                    f"run_dir must be None or a non-empty path (str or os.PathLike), got {self.run_dir!r}"
                )
            self.run_dir = str(os.fspath(self.run_dir))
        if self.checkpoint_every and self.run_dir is None:
            raise ValueError("checkpoint_every > 0 needs run_dir")
        if self.show_progress is not None and not isinstance(self.show_progress, bool):
            raise ValueError(f"show_progress must be None or a bool, got {self.show_progress!r}")
        self._validate_family()

    def _validate_family(self) -> None:
        """The family's fields: defaulted for their algorithm, refused (not None) for the others."""
        mine = _ALGORITHM_FIELDS.get(self.algorithm, {})
        for alg, fields in _ALGORITHM_FIELDS.items():
            for name in fields:
                if name not in mine and getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} is only used by algorithm {alg!r}, got {name}="
                        f"{getattr(self, name)!r} with algorithm {self.algorithm!r}"
                    )
        for name, default in mine.items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        need = FAMILY_ALGORITHMS.get(self.algorithm)
        if need is not None and self.reduction != need:
            raise ValueError(
                f"reduction must be {need!r} for algorithm {self.algorithm!r} (its loss is defined "
                f"on {'summed' if need == 'sum' else 'per-token mean'} log-probs), got "
                f"{self.reduction!r}"
            )
        alg = self.algorithm
        if alg == "kto":
            z0 = self.kto_reference_point
            if isinstance(z0, str):
                if z0 not in KTO_REFERENCE_POINTS:
                    raise ValueError(
                        f"kto_reference_point must be one of {list(KTO_REFERENCE_POINTS)} or a "
                        f"finite number, got {z0!r}"
                    )
            elif (
                isinstance(z0, bool)
                or not isinstance(z0, numbers.Real)
                or not math.isfinite(float(z0))
            ):
                raise ValueError(
                    f"kto_reference_point must be one of {list(KTO_REFERENCE_POINTS)} or a finite "
                    f"number, got {z0!r}"
                )
            else:
                self.kto_reference_point = float(z0)
            if isinstance(self.kto_reference_point, str) and self.batch_size < 2:
                raise ValueError(
                    f"batch_size must be >= 2 for kto with kto_reference_point="
                    f"{self.kto_reference_point!r} (a batch of one has no mismatched completion), "
                    f"got {self.batch_size}"
                )
            for name in ("desirable_weight", "undesirable_weight"):
                setattr(self, name, as_positive_float(getattr(self, name), name))
        elif alg == "orpo":
            for name, options in (("nll_tokens", NLL_TOKENS), ("nll_reduction", NLL_REDUCTIONS)):
                value = getattr(self, name)
                if not isinstance(value, str) or value not in options:
                    raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
        elif alg == "simpo":
            for name in ("cpo_alpha", "simpo_gamma"):
                setattr(self, name, as_positive_float(getattr(self, name), name, allow_zero=True))
        elif alg == "rdpo":
            if self.rdpo_alpha is None:
                raise ValueError("rdpo_alpha is required for algorithm 'rdpo' (a real number >= 0)")
            self.rdpo_alpha = as_positive_float(self.rdpo_alpha, "rdpo_alpha", allow_zero=True)
        elif alg == "dpop":
            self.dpop_lambda = as_positive_float(self.dpop_lambda, "dpop_lambda", allow_zero=True)
            if self.dpop_placement not in ("inside", "outside"):
                raise ValueError(
                    f"dpop_placement must be 'inside' or 'outside', got {self.dpop_placement!r}"
                )
        elif alg == "sdpo":
            self.sdpo_stages = as_int(self.sdpo_stages, "sdpo_stages", minimum=1)
            if self.sdpo_stages > self.steps:
                raise ValueError(
                    f"sdpo_stages ({self.sdpo_stages}) must be <= steps ({self.steps}): every "
                    "stage needs a step"
                )
            if self.sdpo_split is not None:
                split = self.sdpo_split
                if isinstance(split, (str, bytes)) or not hasattr(split, "__len__"):
                    raise ValueError(
                        f"sdpo_split must be None or a sequence of sdpo_stages fractions, got {split!r}"
                    )
                if len(split) != self.sdpo_stages:
                    raise ValueError(
                        f"sdpo_split must hold sdpo_stages={self.sdpo_stages} fractions, got "
                        f"{len(split)}"
                    )
                values = tuple(as_positive_float(v, "sdpo_split") for v in split)
                if abs(sum(values) - 1.0) > 1e-9:
                    raise ValueError(f"sdpo_split must sum to 1, got {sum(values)!r}")
                self.sdpo_split = list(values)
            bounds = self.sdpo_step_bounds()
            if any(b <= a for a, b in zip((0, *bounds[:-1]), bounds)):
                raise ValueError(
                    f"sdpo_split gives a stage no step with steps={self.steps}: stage ends {bounds}"
                )

        elif alg == "beta_dpo":
            self.beta_dpo_a = as_positive_float(self.beta_dpo_a, "beta_dpo_a", allow_zero=True)
            self.beta_dpo_mode_weight = as_unit_interval(
                self.beta_dpo_mode_weight, "beta_dpo_mode_weight"
            )
            if self.beta_dpo_mode_weight >= 1.0:
                raise ValueError(
                    f"beta_dpo_mode_weight must be < 1 (the fraction of each batch dropped), got "
                    f"{self.beta_dpo_mode_weight!r}"
                )
            if self.batch_size < 2:
                raise ValueError(
                    f"batch_size must be >= 2 for beta_dpo (the batch standard deviation of the "
                    f"margins), got {self.batch_size}"
                )
        elif alg == "rso":
            if self.rso_beta is not None:
                self.rso_beta = as_positive_float(self.rso_beta, "rso_beta")
            self.rso_candidates = as_int(self.rso_candidates, "rso_candidates", minimum=2)
        elif alg == "tdpo":
            if not isinstance(self.tdpo_variant, str) or self.tdpo_variant not in TDPO_VARIANTS:
                raise ValueError(
                    f"tdpo_variant must be one of {list(TDPO_VARIANTS)}, got {self.tdpo_variant!r}"
                )
            self.tdpo_alpha = as_positive_float(self.tdpo_alpha, "tdpo_alpha", allow_zero=True)
        elif alg == "iterative_dpo":
            self.iterative_rounds = as_int(self.iterative_rounds, "iterative_rounds", minimum=1)
            if self.iterative_rounds > self.steps:
                raise ValueError(
                    f"iterative_rounds ({self.iterative_rounds}) must be <= steps ({self.steps}): "
                    "every round needs a step"
                )
            ref = self.iterative_reference
            if not isinstance(ref, str) or ref not in ITERATIVE_REFERENCES:
                raise ValueError(
                    f"iterative_reference must be one of {list(ITERATIVE_REFERENCES)}, got {ref!r}"
                )

    def iterative_round_ends(self) -> list[int]:
        """The step at which each ``iterative_dpo`` round ends (the last is ``steps``).

        ``steps`` split as the toy's ``dynamics.staged._split``: as evenly as possible, the first
        ``steps % iterative_rounds`` rounds one step longer.
        """
        R = self.iterative_rounds
        lengths = [self.steps // R + (1 if t < self.steps % R else 0) for t in range(R)]
        return [sum(lengths[: t + 1]) for t in range(R)]

    def iterative_round(self, step: int) -> int:
        """The 0-based ``iterative_dpo`` round of the update at ``step`` (0-based)."""
        return sum(1 for b in self.iterative_round_ends()[:-1] if step >= b)

    def sdpo_fractions(self) -> list[float]:
        """The stage fractions of sDPO: ``sdpo_split`` or T equal ones."""
        T = self.sdpo_stages
        return list(self.sdpo_split) if self.sdpo_split is not None else [1.0 / T] * T

    def sdpo_step_bounds(self) -> list[int]:
        """The step at which each sDPO stage ends (cumulative, rounded; the last is ``steps``)."""
        out, acc = [], 0.0
        for f in self.sdpo_fractions():
            acc += f
            out.append(round(self.steps * acc))
        out[-1] = self.steps
        return out

    def sdpo_stage(self, step: int) -> int:
        """The 0-based sDPO stage of the update at ``step`` (0-based)."""
        return sum(1 for b in self.sdpo_step_bounds()[:-1] if step >= b)

    @property
    def strength_key(self) -> str:
        """``"beta"`` or ``"tau"``: the KL-strength field this algorithm (and its loss) takes."""
        source = ALGORITHMS[self.algorithm][0]
        if self.algorithm in FAMILY_ALGORITHMS:
            return "beta"
        return _SOURCE_STRENGTH.get(source) or LOSS_STRENGTH[self.loss]

    @property
    def source(self) -> str:
        """The pair source: ``offline``, ``online``, ``mixture`` or ``nash_md_pg``."""
        return ALGORITHMS[self.algorithm][0]

    def lr_at(self, step: int) -> float:
        r"""The learning rate of the update at ``step`` (0-based: the ``step + 1``-th update).

        With :math:`t` = ``step``, :math:`T` = ``steps``, :math:`w` = ``warmup_steps`` and
        :math:`\eta` = ``lr``:

        .. math:: \eta_t = \eta \cdot \underbrace{\min\!\Big(1, \frac{t + 1}{w}\Big)}_{\text{warmup}}
                  \cdot \begin{cases} 1 & \text{constant} \\
                  1 - \dfrac{\max(t - w, 0)}{T - w} & \text{linear} \end{cases}

        (the warmup factor is 1 when :math:`w = 0`). Without warmup the linear schedule is
        :math:`\eta (1 - t / T)`, so the last update (:math:`t = T - 1`) has :math:`\eta / T`;
        the last warmup update (:math:`t = w - 1`) has :math:`\eta`. A pure function of the step,
        so a resumed run uses the rates an uninterrupted one does (as long as ``steps`` is the
        same: the linear schedule depends on it).

        Parameters
        ----------
        step : int >= 0
            The number of updates already taken.

        Returns
        -------
        float

        Raises
        ------
        ValueError
            ``step`` not an integer >= 0, or ``step >= steps`` with the linear schedule (past
            its end the rate would be <= 0).

        References
        ----------
        Goyal et al., arXiv:1706.02677v2, Sec. 2.2 (gradual warmup); Hugging Face transformers
        ``get_linear_schedule_with_warmup`` (linear decay to 0, which TRL's trainers use by
        default; here the first update already has a non-zero rate).

        Examples
        --------
        >>> cfg = TrainConfig("dpo", reduction="sum", beta=0.1, lr=1.0, steps=4, lr_schedule="linear")
        >>> [cfg.lr_at(t) for t in range(4)]
        [1.0, 0.75, 0.5, 0.25]
        """
        t = as_int(step, "step", minimum=0)
        if self.lr_schedule == "linear" and t >= self.steps:
            raise ValueError(
                f"step must be < steps ({self.steps}) with lr_schedule='linear', got {t}"
            )
        w = self.warmup_steps
        rate = self.lr
        if t < w:
            rate = rate * ((t + 1) / w)
        if self.lr_schedule == "linear" and t >= w:
            rate = rate * (1 - (t - w) / (self.steps - w))
        return rate

    def loss_kwargs(self) -> dict[str, Any]:
        """``preference_loss`` keywords: ``loss``, ``reduction`` and ``beta`` or ``tau``."""
        key = LOSS_STRENGTH[self.loss]
        value = getattr(self, key)
        if value is None:
            raise ValueError(f"{key} is required for loss={self.loss!r}")
        return {"loss": self.loss, "reduction": self.reduction, key: value}
