r"""A lifted game whose classes are completion lengths: the R-DPO bridge with a length-loving judge.

R-DPO (Park et al., arXiv:2403.19159v3, Sec. 3, the length-regularised DPO loss)

.. math:: \ell = -\log\sigma\Bigl(\beta\log\frac{\pi(y_w)}{\mu(y_w)}
          - \beta\log\frac{\pi(y_l)}{\mu(y_l)} + \alpha(|y_w| - |y_l|)\Bigr)

adds :math:`\alpha(|y_w| - |y_l|)` inside DPO's sigmoid; its population optimum is :math:`\pi(y) \propto \mu(y)\exp((\hat r(y) - \alpha|y|)/\beta)`
(``prefopt_toy.rdpo_optimum``). On a *keyword* game (``FRUIT_TASK``) a class holds completions of
several lengths, so the length term acts inside each class as much as between classes, and the
class-level prediction needs the effective lengths of ``family.effective_lengths``; the fruit
classes' effective lengths are within 0.7 token of each other, so R-DPO's and DPO's predictions
are hardly apart there.

``LengthTask`` keeps the default models and their training corpus (the ``FRUIT_TASK`` prompts, so
no model is retrained) and only changes what a class *is*: the number of GPT-2 BPE tokens of the
completion ("3 tokens" ... "7 tokens"; the fruit phrasings are 3 to 7 tokens long), with "other"
for every other count (a completion cut at ``max_new_tokens``, an empty one, a longer one). Then

* every completion of a class has the same trainer length :math:`L_c` (its tokens plus EOS, the
  collator's completion mask), so :math:`L^{\mathrm{eff}}_c = L_c` exactly, and the length term
  acts between classes only: R-DPO's class-level optimum is ``rdpo_optimum(P_ext, mu_class, beta,
  alpha, L)`` with no within-class approximation;
* a judge that prefers longer completions is a class game, e.g. Bradley-Terry in
  :math:`\kappa L` (``length_game``): :math:`P_{ij} = \sigma(\kappa(L_i - L_j))`. Its BT reward
  is :math:`\kappa L`, so DPO's optimum tilts :math:`\mu` by :math:`e^{\kappa L/\beta}` and
  R-DPO's by :math:`e^{(\kappa - \alpha)L/\beta}`: with :math:`\alpha > \kappa` the two move
  :math:`\mu` in opposite directions, far apart, and the GPT-2 run tells them apart.

``LengthJudge`` is the ``LiftedGameJudge`` of such a task (the same ``P_ext``, ``probs``,
``class_distribution`` and ``sample_labels``); only ``classify`` counts tokens instead of finding
keywords.

References
----------
Park et al., arXiv:2403.19159v3, Sec. 3 (the R-DPO loss) (R-DPO); Rafailov et al., arXiv:2305.18290v3
(DPO); Munos et al., arXiv:2312.00886v4 (preference games over responses); Bradley & Terry,
Biometrika 39 (1952).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_positive_float, as_unit_interval
from prefopt_toy.lm.judges import LiftedGameJudge
from prefopt_toy.lm.models.corpus import FRUIT_TASK, OTHER

__all__ = ["LENGTH_TASK", "LengthJudge", "LengthTask", "length_game", "length_judge"]


def _token_count(text: str) -> int:
    """GPT-2 BPE tokens of ``text`` (the tokenizer every default model uses)."""
    from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer

    return len(gpt2_tokenizer()(text).input_ids)


@dataclass(frozen=True)
class LengthTask:
    r"""A lifted game over the completions of a few prompts whose classes are token counts.

    Class ``f"{n} tokens"`` holds the completions of exactly ``n`` GPT-2 BPE tokens, for ``n`` in
    ``token_counts``; every other completion is ``"other"``. Why by length: R-DPO (Park et al.,
    arXiv:2403.19159v3, Sec. 3) penalises length, and its class-level optimum is the completion
    level's summed over each class; when a class fixes the length, the sum is exact with the
    class's own length, :math:`L^{\mathrm{eff}}_c = L_c` (tokens plus EOS, as the trainer counts),
    and a judge that prefers longer completions is a plain class game (``length_game``). See the
    module docstring.

    Duck-types ``LiftedTask`` where the bridge needs it (``name``, ``prompt_templates``,
    ``class_names``, ``classify``); ``length_judge`` gives its judge.

    Parameters
    ----------
    name : str
        Short identifier.
    prompt_templates : tuple of str
        Prompts (default: ``FRUIT_TASK``'s, so the default models fit it unchanged).
    token_counts : tuple of int
        Distinct positive token counts, increasing; one class each.

    Raises
    ------
    ValueError
        Empty ``name`` or ``prompt_templates``, fewer than 2 counts, counts not positive
        integers or not increasing.

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3 (the R-DPO loss).

    Examples
    --------
    >>> LENGTH_TASK.class_names
    ('3 tokens', '4 tokens', '5 tokens', '6 tokens', '7 tokens')
    >>> LENGTH_TASK.classify(" an apple."), LENGTH_TASK.classify(" apples, without a doubt.")
    ('3 tokens', '6 tokens')
    >>> LENGTH_TASK.class_lengths  # trainer lengths: tokens + EOS
    (4, 5, 6, 7, 8)
    """

    name: str
    prompt_templates: tuple[str, ...]
    token_counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        if (
            isinstance(self.prompt_templates, str)
            or not self.prompt_templates
            or not all(isinstance(p, str) and p.strip() for p in self.prompt_templates)
        ):
            raise ValueError("prompt_templates must be a non-empty tuple of non-empty strings")
        counts = tuple(self.token_counts)
        if len(counts) < 2:
            raise ValueError(f"token_counts must hold at least 2 counts, got {counts!r}")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
            raise ValueError(f"token_counts must be positive integers, got {counts!r}")
        if any(b <= a for a, b in zip(counts, counts[1:])):
            raise ValueError(f"token_counts must be strictly increasing, got {counts!r}")
        object.__setattr__(self, "prompt_templates", tuple(self.prompt_templates))
        object.__setattr__(self, "token_counts", counts)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The K class names, ``"n tokens"``, in the order of ``token_counts``."""
        return tuple(f"{n} tokens" for n in self.token_counts)

    @property
    def class_lengths(self) -> tuple[int, ...]:
        """Each class's trainer length: its token count plus the EOS (R-DPO's :math:`|y|`)."""
        return tuple(n + 1 for n in self.token_counts)

    def class_index(self, text: str) -> int:
        """Index of ``text``'s class (0..K-1), or K for ``"other"``."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        n = _token_count(text)
        return self.token_counts.index(n) if n in self.token_counts else len(self.token_counts)

    def classify(self, text: str) -> str:
        """The class of ``text``: ``"n tokens"`` when it has ``n`` tokens in ``token_counts``, else ``"other"``."""
        i = self.class_index(text)
        return OTHER if i == len(self.token_counts) else self.class_names[i]


LENGTH_TASK = LengthTask(
    name="fruit_length",
    prompt_templates=FRUIT_TASK.prompt_templates,
    token_counts=(3, 4, 5, 6, 7),
)
"""The fruit prompts, classes by completion length 3 to 7 tokens (trainer lengths 4 to 8)."""


def length_game(task: LengthTask, kappa: float) -> Tensor:
    r"""Bradley-Terry in :math:`\kappa L` on the classes of ``task``: :math:`P_{ij} = \sigma(\kappa(L_i - L_j))`.

    A judge that prefers the longer completion (``kappa > 0``); its BT reward is
    :math:`\kappa L` up to a constant.

    Parameters
    ----------
    task : LengthTask
    kappa : float >= 0
        Log-odds per token.

    Returns
    -------
    Tensor, shape (K, K), float64.

    References
    ----------
    Bradley & Terry, Biometrika 39 (1952); Park et al., arXiv:2403.19159v3, Sec. 3 (verbosity).

    Examples
    --------
    >>> round(float(length_game(LENGTH_TASK, 0.5)[1, 0]), 4)  # 4 tokens over 3
    0.6225
    """
    if not isinstance(task, LengthTask):
        raise ValueError(f"task must be a LengthTask, got {type(task).__name__}")
    kappa = as_positive_float(kappa, "kappa", allow_zero=True)
    L = torch.tensor(task.class_lengths, dtype=torch.float64)
    return torch.sigmoid(kappa * (L[:, None] - L[None, :]))


class LengthJudge(LiftedGameJudge):
    r"""The ``LiftedGameJudge`` of a ``LengthTask``: classes by token count, not by keyword.

    ``P_ext``, ``class_names``, ``probs``, ``class_distribution`` and ``sample_labels`` are
    ``LiftedGameJudge``'s (``P`` bordered by "other" with ``other_loses``); ``classify`` counts
    GPT-2 tokens with ``LengthTask.class_index``.

    Parameters
    ----------
    task : LengthTask
    P : array-like, shape (K, K)
        The class game (``length_game`` for a judge that likes length).
    other_loses : float in [0, 1]
        Probability that any class beats "other".

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 2; Park et al., arXiv:2403.19159v3, Sec. 3.
    """

    def __init__(self, task: LengthTask, P: Any, *, other_loses: float = 1.0) -> None:
        if not isinstance(task, LengthTask):
            raise ValueError(f"task must be a LengthTask, got {type(task).__name__}")
        other_loses = as_unit_interval(other_loses, "other_loses")
        # The keyword machinery is not used (classify is overridden); the names stand in for it.
        super().__init__(P, {c: (c,) for c in task.class_names}, OTHER, other_loses=other_loses)
        self.task = task

    def classify(self, texts: Sequence[str]) -> Tensor:
        """Class index of each text: 0..K-1 by token count, K for "other". Shape (n,), int64."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of str, got a single str")
        return torch.tensor([self.task.class_index(t) for t in texts], dtype=torch.int64)


def length_judge(task: LengthTask, P: Any, *, other_loses: float = 1.0) -> LengthJudge:
    """``LengthJudge(task, P, other_loses=)``: the judge of a ``LengthTask`` (as ``run.lifted_judge``).

    References
    ----------
    Park et al., arXiv:2403.19159v3, Sec. 3.
    """
    return LengthJudge(task, P, other_loses=other_loses)
