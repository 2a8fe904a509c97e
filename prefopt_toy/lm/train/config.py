"""The configuration of a GPT-2 preference-training run: ``TrainConfig``, its validation, ``ALGORITHMS``.

``ALGORITHMS`` maps each algorithm name (``dpo``, ``ipo``, ``slic``, ``offline``, ``online_dpo``,
``online_ipo``, ``online``, ``ipo_md``, ``nash_md_pg``) to its pair source and fixed per-pair loss;
``TrainConfig`` holds everything that determines a run (written to the run log's header and each
checkpoint) and checks it when built, so a bad value fails before any training step;
``TrainConfig.lr_at`` is the learning-rate schedule, a pure function of the step (``LR_SCHEDULES``).
The training loop that consumes it is ``prefopt_toy.lm.train.trainer``.

References: as :mod:`prefopt_toy.lm.train.trainer`, the module this one was split from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from prefopt_toy._validate import as_int, as_positive_float, as_unit_interval
from prefopt_toy.lm.objectives import LOSS_STRENGTH, LOSSES

from .online import LABEL_MODES

__all__ = ["ALGORITHMS", "LR_SCHEDULES", "TrainConfig"]

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
}

# the KL strength of each pair source that has no per-pair loss (the others take
# objectives.LOSS_STRENGTH[loss]); with ALGORITHMS, the single map from algorithm to hyperparameter
_SOURCE_STRENGTH = {"nash_md_pg": "tau"}


# pair sources that sample from the token-level mixture pi^(1-m) mu^m (the others need mixture = 0)
_MIXTURE_SOURCES = ("mixture", "nash_md_pg")


@dataclass
class TrainConfig:
    """Everything that determines a run (written to the run log's header and each checkpoint).

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
            if not isinstance(self.loss, str) or self.loss not in LOSSES:
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

    @property
    def strength_key(self) -> str:
        """``"beta"`` or ``"tau"``: the KL-strength field this algorithm (and its loss) takes."""
        source = ALGORITHMS[self.algorithm][0]
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
