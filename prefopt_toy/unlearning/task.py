r"""An unlearning task on a tabular bandit: contexts, answers, roles and the reference policy.

Each context :math:`c` (a question) has a distribution over the same K answers. The reference
:math:`\mu(\cdot\mid c)` is the model *after* fine-tuning on the true answers and *before*
unlearning: most of its mass sits on the true answer. A context is either

- **forget**: its true answer :math:`y_f` is to be unlearned; its *alternates* are plausible wrong
  answers (AltPO's generated alternates, Mekala et al. arXiv:2409.13474v1, Sec. 3);
- **retain**: its true answer should keep its probability (TOFU's retain set, Maini et al.
  arXiv:2401.06121v1, Sec. 2).

One answer index may be a **refusal** ("I don't know", the preferred response of DPO-style
unlearning in TOFU, Sec. 5). Every other answer of a context (neither true, alternate nor refusal)
is **implausible**, e.g. gibberish: the mass an unlearning method puts there is the damage it does
to fluency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_float, as_generator, as_int, as_policy

__all__ = ["ROLES", "UnlearningTask", "random_task", "teaching_task"]

ROLES = ("forget", "retain")
"""The role of a context: its true answer is to be unlearned, or kept."""


def _index(x: Any, name: str, k: int) -> int:
    value = as_int(x, name, minimum=0)
    if value >= k:
        raise ValueError(f"{name} must be an answer index in [0, {k}), got {value}")
    return value


@dataclass(frozen=True, eq=False)
class UnlearningTask:
    """C contexts over K answers: the reference, each context's role, true answer and alternates.

    Construct it with the fields below (lists are fine); everything is validated and converted
    (``mu`` to a float64 (C, K) tensor, the rest to tuples of ints).

    Raises
    ------
    ValueError
        Naming the field: ``mu`` not (C, K) with rows on the simplex and every entry > 0 (``log mu``
        enters every loss); ``roles`` not C entries of ``ROLES`` or without a forget context; an
        answer index out of range; a forget context without alternates, or with an alternate that
        repeats, is its true answer or is the refusal; a retain context with alternates; a refusal
        that is some context's true answer; ``answer_names`` not K strings.

    References
    ----------
    Maini et al., arXiv:2401.06121v1, Sec. 2 (TOFU: forget and retain sets, "I don't know");
    Mekala et al., arXiv:2409.13474v1, Sec. 3 (AltPO's alternate answers).
    """

    mu: Tensor
    """Reference policy per context, (C, K), every entry > 0, rows sum to 1."""
    roles: tuple[str, ...]
    """``"forget"`` or ``"retain"`` per context, length C."""
    true_answers: tuple[int, ...]
    """The true answer's index per context, length C."""
    alternates: tuple[tuple[int, ...], ...]
    """Plausible alternates per context: non-empty for a forget context, ``()`` for a retain one."""
    refusal: int | None = None
    """The refusal answer's index (one for all contexts), or None."""
    answer_names: tuple[str, ...] | None = None
    """Optional labels of the K answers (for tables and plots)."""

    def __post_init__(self) -> None:
        mu = as_policy(self.mu, "mu", batched=True, positive=True)
        if mu.ndim != 2:
            raise ValueError(
                f"mu must have shape (C, K) (one row per context), got {tuple(mu.shape)}"
            )
        c, k = mu.shape
        if k < 2:
            raise ValueError(f"mu must have at least 2 answers per context, got {k}")
        if isinstance(self.roles, str) or len(self.roles) != c:
            raise ValueError(f"roles must be {c} entries of {ROLES} (one per context)")
        roles = tuple(self.roles)
        for r in roles:
            if r not in ROLES:
                raise ValueError(f"roles must be entries of {ROLES}, got {r!r}")
        if "forget" not in roles:
            raise ValueError("roles must include at least one 'forget' context")
        if len(self.true_answers) != c:
            raise ValueError(f"true_answers must have {c} entries (one per context)")
        true = tuple(_index(a, f"true_answers[{i}]", k) for i, a in enumerate(self.true_answers))
        refusal = None if self.refusal is None else _index(self.refusal, "refusal", k)
        if refusal is not None and refusal in true:
            raise ValueError(f"refusal must not be a context's true answer, got {refusal}")
        if len(self.alternates) != c:
            raise ValueError(f"alternates must have {c} entries (one tuple per context)")
        alts: list[tuple[int, ...]] = []
        for i, (role, row) in enumerate(zip(roles, self.alternates)):
            row_t = tuple(_index(a, f"alternates[{i}]", k) for a in row)
            if role == "retain" and row_t:
                raise ValueError(f"alternates[{i}] must be empty: context {i} is a retain context")
            if role == "forget":
                if not row_t:
                    raise ValueError(f"alternates[{i}] must be non-empty (a forget context)")
                if len(set(row_t)) != len(row_t):
                    raise ValueError(f"alternates[{i}] must not repeat an answer, got {row_t}")
                if true[i] in row_t:
                    raise ValueError(f"alternates[{i}] must not contain the true answer {true[i]}")
                if refusal is not None and refusal in row_t:
                    raise ValueError(f"alternates[{i}] must not contain the refusal {refusal}")
            alts.append(row_t)
        names = self.answer_names
        if names is not None:
            if (
                isinstance(names, str)
                or len(names) != k
                or not all(isinstance(n, str) for n in names)
            ):
                raise ValueError(f"answer_names must be {k} strings (one per answer)")
            names = tuple(names)
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "true_answers", true)
        object.__setattr__(self, "alternates", tuple(alts))
        object.__setattr__(self, "refusal", refusal)
        object.__setattr__(self, "answer_names", names)

    @property
    def n_contexts(self) -> int:
        """C."""
        return self.mu.shape[0]

    @property
    def n_answers(self) -> int:
        """K."""
        return self.mu.shape[1]

    @property
    def forget_contexts(self) -> Tensor:
        """Indices of the forget contexts, (n_forget,) long."""
        return torch.tensor(
            [i for i, r in enumerate(self.roles) if r == "forget"], dtype=torch.long
        )

    @property
    def retain_contexts(self) -> Tensor:
        """Indices of the retain contexts, (n_retain,) long (may be empty)."""
        return torch.tensor(
            [i for i, r in enumerate(self.roles) if r == "retain"], dtype=torch.long
        )

    @property
    def true_index(self) -> Tensor:
        """The true answer per context, (C,) long."""
        return torch.tensor(self.true_answers, dtype=torch.long)

    @property
    def true_mask(self) -> Tensor:
        """``[c, y]`` is True where y is context c's true answer, (C, K) bool."""
        m = torch.zeros(self.n_contexts, self.n_answers, dtype=torch.bool)
        m[torch.arange(self.n_contexts), self.true_index] = True
        return m

    @property
    def alternate_mask(self) -> Tensor:
        """``[c, y]`` is True where y is an alternate of context c, (C, K) bool."""
        m = torch.zeros(self.n_contexts, self.n_answers, dtype=torch.bool)
        for i, row in enumerate(self.alternates):
            m[i, list(row)] = True
        return m

    @property
    def refusal_mask(self) -> Tensor:
        """``[c, y]`` is True where y is the refusal, (C, K) bool (all False without one)."""
        m = torch.zeros(self.n_contexts, self.n_answers, dtype=torch.bool)
        if self.refusal is not None:
            m[:, self.refusal] = True
        return m

    @property
    def implausible_mask(self) -> Tensor:
        """``[c, y]`` is True where y is neither true, an alternate nor the refusal, (C, K) bool.

        A retain context has no alternates, so there every answer but the true one and the
        refusal counts as implausible; the metric is meant for the forget contexts.
        """
        return ~(self.true_mask | self.alternate_mask | self.refusal_mask)

    def alternate_conditional(self, augment_k: int | None = None) -> Tensor:
        r"""The reference conditioned on each forget context's alternates, (n_forget, K).

        :math:`\mu(y\mid c, y \in A_c) = \mu(y\mid c)\,[y \in A_c] / \mu(A_c\mid c)`, with
        :math:`A_c` the first ``augment_k`` alternates (all by default): the limit of AltPO without
        the retain term on the tabular policy (``prefopt_toy.dynamics.unlearn``).
        """
        forget = self.forget_contexts
        rows = []
        for c in forget.tolist():
            alts = self.alternates[c] if augment_k is None else self.alternates[c][:augment_k]
            row = torch.zeros(self.n_answers, dtype=torch.float64)
            row[list(alts)] = self.mu[c, list(alts)]
            rows.append(row / row.sum())
        return torch.stack(rows)


def teaching_task() -> UnlearningTask:
    """The README's task: 6 questions (3 forget, 3 retain), 6 answers, ``mu`` fine-tuned on the truth.

    Answers: 0 the true answer, 1-3 three plausible alternates, 4 "I don't know" (the refusal),
    5 gibberish (implausible). The reference puts 0.55 to 0.75 on the true answer, little on the
    refusal and least on gibberish; the forget contexts differ so that the mode among the
    non-forget answers is not always the same alternate.

    Examples
    --------
    >>> t = teaching_task()
    >>> t.n_contexts, t.n_answers, t.forget_contexts.tolist(), t.refusal
    (6, 6, [0, 1, 2], 4)
    """
    mu = [
        [0.60, 0.20, 0.08, 0.05, 0.05, 0.02],
        [0.70, 0.06, 0.10, 0.08, 0.04, 0.02],
        [0.55, 0.12, 0.12, 0.12, 0.06, 0.03],
        [0.75, 0.08, 0.06, 0.05, 0.04, 0.02],
        [0.65, 0.10, 0.10, 0.08, 0.05, 0.02],
        [0.70, 0.09, 0.08, 0.06, 0.05, 0.02],
    ]
    return UnlearningTask(
        mu=mu,
        roles=("forget",) * 3 + ("retain",) * 3,
        true_answers=(0,) * 6,
        alternates=((1, 2, 3),) * 3 + ((),) * 3,
        refusal=4,
        answer_names=(
            "true",
            "alternate 1",
            "alternate 2",
            "alternate 3",
            "I don't know",
            "gibberish",
        ),
    )


def random_task(
    seed: Any,
    *,
    n_contexts: int = 6,
    n_answers: int = 6,
    n_forget: int = 3,
    n_alternates: int = 3,
    refusal: bool = True,
    true_boost: float = 2.0,
) -> UnlearningTask:
    """A random task: Gaussian reference logits, the true answer's raised by ``true_boost``.

    The first ``n_forget`` contexts are forget contexts. Each context's true answer is drawn
    uniformly (never the refusal, which is the last answer when ``refusal``); a forget context's
    alternates are ``n_alternates`` of the remaining answers, drawn uniformly; the rest are
    implausible.

    Raises
    ------
    ValueError
        ``seed`` not a non-negative integer or generator; ``n_forget`` outside [1, n_contexts];
        ``n_alternates < 1`` or too many to leave the true answer (and the refusal) out.
    """
    gen = as_generator(seed)
    c = as_int(n_contexts, "n_contexts", minimum=1)
    k = as_int(n_answers, "n_answers", minimum=2)
    f = as_int(n_forget, "n_forget", minimum=1)
    if f > c:
        raise ValueError(f"n_forget must be <= n_contexts = {c}, got {f}")
    m = as_int(n_alternates, "n_alternates", minimum=1)
    usable = k - 1 - (1 if refusal else 0)
    if m > usable:
        raise ValueError(
            f"n_alternates must be <= {usable} (the answers other than the true one"
            f"{' and the refusal' if refusal else ''}), got {m}"
        )
    boost = as_float(true_boost, "true_boost")
    refusal_index = k - 1 if refusal else None
    candidates = k - 1 if refusal else k
    logits = torch.randn(c, k, generator=gen, dtype=torch.float64)
    true = torch.randint(0, candidates, (c,), generator=gen).tolist()
    alternates: list[tuple[int, ...]] = []
    for i in range(c):
        logits[i, true[i]] += boost
        if i < f:
            pool = [y for y in range(candidates) if y != true[i]]
            order = torch.randperm(len(pool), generator=gen).tolist()
            alternates.append(tuple(sorted(pool[j] for j in order[:m])))
        else:
            alternates.append(())
    return UnlearningTask(
        mu=torch.softmax(logits, -1),
        roles=("forget",) * f + ("retain",) * (c - f),
        true_answers=tuple(true),
        alternates=tuple(alternates),
        refusal=refusal_index,
    )
