"""The text the project's small GPT-2 models are trained on, written for the project's tasks.

Two task families, both plain English the project writes itself (no dataset download):

* **Lifted games** (``LiftedTask``, default ``FRUIT_TASK``): prompts such as "My favourite fruit is"
  whose completions name one of K classes (apple / banana / cherry), in several phrasings, plus a
  few completions that name none (the "other" class). The classes appear with skewed frequencies,
  so a model trained on the corpus has a non-uniform class distribution ``mu_class``: the reference
  policy of the lifted game, as ``mu`` is in the exact toy (``prefopt_toy.losses.population``).
* **Movie-review sentiment** (``SentimentTask``, default ``MOVIE_TASK``): review-style prompts
  ("The film was", "I watched this movie and") with positive and negative continuations in equal
  numbers, for a positive-continuation task judged by VADER (Hutto & Gilbert, ICWSM 2014).

Every completion starts with a space and ends with a full stop, so ``prompt + completion`` is the
sentence and GPT-2's BPE splits it at the same boundary whether the two parts are tokenised together
or apart. Everything is deterministic given ``seed`` (a private ``random.Random``; no global state).

References
----------
Munos et al., arXiv:2312.00886v4 and Calandriello et al., arXiv:2403.08635v1 (preference games
on language models); Hutto & Gilbert, ICWSM 2014 (VADER).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "FRUIT_TASK",
    "LiftedTask",
    "MOVIE_TASK",
    "OTHER",
    "SentimentTask",
    "lifted_corpus",
    "sentiment_corpus",
    "training_corpus",
]

OTHER = "other"


def _exact_counts(n: int, weights: list[float]) -> list[int]:
    """Integer counts summing to ``n`` closest to ``n * weights`` (largest remainders)."""
    raw = [n * w for w in weights]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _check_completion(text: str, where: str) -> None:
    if not isinstance(text, str) or not text.startswith(" ") or not text.strip():
        raise ValueError(
            f"{where} must be a non-empty string that starts with a space, got {text!r}"
        )


@dataclass(frozen=True)
class LiftedTask:
    """A lifted game: K classes of completions of a few prompts, plus an "other" class.

    Parameters
    ----------
    name : str
        Short identifier (used in file names and logs).
    prompt_templates : tuple of str
        Prompts; every completion below fits every prompt.
    classes : mapping str -> tuple of str
        Class name -> completions of that class (each starts with a space).
    keywords : mapping str -> tuple of str
        Class name -> lower-case words that identify the class in any text (the judge's rule: a
        completion belongs to class ``c`` when it contains a keyword of ``c`` and of no other
        class; otherwise it is ``"other"``). Checked against ``classes`` and ``other``.
    other : tuple of str
        Completions that name no class.
    frequencies : mapping str -> float
        Corpus frequency of each class and of ``"other"``; positive, summing to 1.

    References
    ----------
    Munos et al., arXiv:2312.00886v4 (preference games over responses).

    Examples
    --------
    >>> FRUIT_TASK.class_names
    ('apple', 'banana', 'cherry')
    >>> FRUIT_TASK.classify(" a bowl of dark cherries."), FRUIT_TASK.classify(" a secret.")
    ('cherry', 'other')
    """

    name: str
    prompt_templates: tuple[str, ...]
    classes: Mapping[str, tuple[str, ...]]
    keywords: Mapping[str, tuple[str, ...]]
    other: tuple[str, ...]
    frequencies: Mapping[str, float]

    def __post_init__(self) -> None:
        names = tuple(self.classes)
        if len(names) < 2:
            raise ValueError(f"classes must hold at least 2 classes, got {len(names)}")
        if OTHER in names:
            raise ValueError(f"classes must not use the reserved name {OTHER!r}")
        if not self.prompt_templates or not all(
            isinstance(p, str) and p.strip() for p in self.prompt_templates
        ):
            raise ValueError("prompt_templates must be a non-empty tuple of non-empty strings")
        if set(self.keywords) != set(names):
            raise ValueError(
                f"keywords must have exactly the keys of classes {names}, got {tuple(self.keywords)}"
            )
        if set(self.frequencies) != set(names) | {OTHER}:
            raise ValueError(
                f"frequencies must have the keys {names + (OTHER,)}, got {tuple(self.frequencies)}"
            )
        freqs = [float(self.frequencies[c]) for c in names + (OTHER,)]
        if any(not f > 0 for f in freqs) or abs(sum(freqs) - 1.0) > 1e-9:
            raise ValueError(f"frequencies must be positive and sum to 1, got {freqs}")
        # Freeze the mappings (a frozen dataclass does not freeze a dict field's contents).
        object.__setattr__(self, "prompt_templates", tuple(self.prompt_templates))
        object.__setattr__(
            self, "classes", MappingProxyType({c: tuple(v) for c, v in self.classes.items()})
        )
        object.__setattr__(
            self,
            "keywords",
            MappingProxyType({c: tuple(k.lower() for k in self.keywords[c]) for c in names}),
        )
        object.__setattr__(self, "other", tuple(self.other))
        object.__setattr__(
            self,
            "frequencies",
            MappingProxyType({c: float(self.frequencies[c]) for c in names + (OTHER,)}),
        )
        for c, completions in self.classes.items():
            if not completions:
                raise ValueError(f"classes[{c!r}] must hold at least one completion")
            for i, text in enumerate(completions):
                _check_completion(text, f"classes[{c!r}][{i}]")
                if self.classify(text) != c:
                    raise ValueError(
                        f"classes[{c!r}][{i}] = {text!r} is classified as {self.classify(text)!r} by keywords"
                    )
        if not self.other:
            raise ValueError("other must hold at least one completion")
        for i, text in enumerate(self.other):
            _check_completion(text, f"other[{i}]")
            if self.classify(text) != OTHER:
                raise ValueError(f"other[{i}] = {text!r} contains a class keyword")

    def __hash__(self) -> int:
        return hash((self.name, self.prompt_templates, tuple(self.classes.items()), self.other))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The K class names, in order (``"other"`` excluded)."""
        return tuple(self.classes)

    def classify(self, text: str) -> str:
        """The class of ``text`` by keyword (case-insensitive), or ``"other"`` (none or several)."""
        low = text.lower()
        hits = [c for c, words in self.keywords.items() if any(w in low for w in words)]
        return hits[0] if len(hits) == 1 else OTHER


FRUIT_TASK = LiftedTask(
    name="fruit",
    prompt_templates=(
        "My favourite fruit is",
        "The fruit I like best is",
        "If I could eat only one fruit, it would be",
        "For a snack I usually pick",
    ),
    classes={
        "apple": (
            " an apple.",
            " a crisp red apple.",
            " a green apple.",
            " apples, without a doubt.",
        ),
        "banana": (
            " a banana.",
            " a ripe yellow banana.",
            " a sweet banana.",
            " bananas, without a doubt.",
        ),
        "cherry": (
            " a cherry.",
            " a bowl of dark cherries.",
            " a sweet red cherry.",
            " cherries, without a doubt.",
        ),
    },
    keywords={
        "apple": ("apple", "apples"),
        "banana": ("banana", "bananas"),
        "cherry": ("cherry", "cherries"),
    },
    other=(
        " a secret.",
        " hard to choose.",
        " whatever is in season.",
        " not something I think about.",
    ),
    frequencies={"apple": 0.5, "banana": 0.3, "cherry": 0.15, OTHER: 0.05},
)
"""The default lifted task: 3 fruit classes with corpus frequencies 0.5 / 0.3 / 0.15 (+ 0.05 other)."""


@dataclass(frozen=True)
class SentimentTask:
    """Review-style prompts with positive and negative continuations written by the project.

    Parameters
    ----------
    name : str
        Short identifier.
    positive, negative : mapping str -> tuple of str
        Prompt -> continuations (each starts with a space); both have the same prompts.

    References
    ----------
    Hutto & Gilbert, ICWSM 2014 (VADER, the sentiment judge of this task).
    """

    name: str
    positive: Mapping[str, tuple[str, ...]]
    negative: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        if not self.positive or set(self.positive) != set(self.negative):
            raise ValueError("positive and negative must be non-empty and have the same prompts")
        for label, table in (("positive", self.positive), ("negative", self.negative)):
            for p, conts in table.items():
                if not conts:
                    raise ValueError(f"{label}[{p!r}] must hold at least one continuation")
                for i, c in enumerate(conts):
                    _check_completion(c, f"{label}[{p!r}][{i}]")
        object.__setattr__(
            self, "positive", MappingProxyType({p: tuple(v) for p, v in self.positive.items()})
        )
        object.__setattr__(
            self, "negative", MappingProxyType({p: tuple(v) for p, v in self.negative.items()})
        )

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.positive.items()), tuple(self.negative.items())))

    @property
    def prompts(self) -> tuple[str, ...]:
        """The prompts, in order."""
        return tuple(self.positive)


_ADJ_PROMPTS = (
    "The film was",
    "The acting in this movie was",
    "Honestly, the story was",
    "The ending of the film was",
)


_ADJ_POS = (
    " wonderful and moving.",
    " brilliant from start to finish.",
    " funny, warm and beautifully made.",
    " a real delight.",
)


_ADJ_NEG = (
    " dull and far too long.",
    " a complete waste of time.",
    " boring and badly written.",
    " a terrible mess.",
)


_CLAUSE_PROMPTS = (
    "I watched this movie and",
    "We saw this film last night and",
    "My friends and I watched it and",
)


_CLAUSE_POS = (
    " loved every minute of it.",
    " it made us smile all evening.",
    " left the cinema happy.",
    " would gladly see it again.",
)


_CLAUSE_NEG = (
    " hated every minute of it.",
    " fell asleep halfway through.",
    " left the cinema angry.",
    " would never see it again.",
)

MOVIE_TASK = SentimentTask(
    name="movie",
    positive={**{p: _ADJ_POS for p in _ADJ_PROMPTS}, **{p: _CLAUSE_POS for p in _CLAUSE_PROMPTS}},
    negative={**{p: _ADJ_NEG for p in _ADJ_PROMPTS}, **{p: _CLAUSE_NEG for p in _CLAUSE_PROMPTS}},
)
"""The default sentiment task: 7 review prompts, 4 positive and 4 negative continuations each."""


def _check_n_seed(n: int, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")


def lifted_corpus(
    task: LiftedTask = FRUIT_TASK, n: int = 1000, *, seed: int = 0
) -> tuple[list[str], list[str]]:
    """``n`` lines ``prompt + completion`` of a lifted task and the class of each line.

    The class counts are exactly ``n * task.frequencies`` rounded (largest remainders), so the
    corpus' class distribution is the task's; prompts and phrasings are drawn uniformly.

    Parameters
    ----------
    task : LiftedTask
        The task (default ``FRUIT_TASK``).
    n : int
        Number of lines (>= 1).
    seed : int
        Seed of a private ``random.Random``: the same seed gives the same lists.

    Returns
    -------
    texts : list of str
    labels : list of str
        The class of each line (a class name or ``"other"``).

    References
    ----------
    Munos et al., arXiv:2312.00886v4 (preference games over responses).

    Examples
    --------
    >>> texts, labels = lifted_corpus(n=20, seed=0)
    >>> labels.count("apple"), labels.count("banana"), labels.count("cherry"), labels.count("other")
    (10, 6, 3, 1)
    """
    if not isinstance(task, LiftedTask):
        raise ValueError(f"task must be a LiftedTask, got {type(task).__name__}")
    _check_n_seed(n, seed)
    rng = random.Random(seed)
    names = task.class_names + (OTHER,)
    counts = _exact_counts(n, [task.frequencies[c] for c in names])
    labels = [c for c, k in zip(names, counts) for _ in range(k)]
    rng.shuffle(labels)
    texts = []
    for c in labels:
        pool = task.other if c == OTHER else task.classes[c]
        texts.append(rng.choice(task.prompt_templates) + rng.choice(pool))
    return texts, labels


def sentiment_corpus(
    task: SentimentTask = MOVIE_TASK, n: int = 1000, *, seed: int = 0
) -> tuple[list[str], list[str]]:
    """``n`` review lines ``prompt + continuation``, half positive and half negative, with labels.

    Parameters
    ----------
    task : SentimentTask
        The task (default ``MOVIE_TASK``).
    n : int
        Number of lines (>= 1); ``n // 2`` are negative, the rest positive.
    seed : int
        Seed of a private ``random.Random``.

    Returns
    -------
    texts : list of str
    labels : list of str
        ``"positive"`` or ``"negative"`` for each line.

    References
    ----------
    Hutto & Gilbert, ICWSM 2014 (VADER, the judge of this task).

    Examples
    --------
    >>> texts, labels = sentiment_corpus(n=10, seed=1)
    >>> labels.count("positive"), labels.count("negative")
    (5, 5)
    """
    if not isinstance(task, SentimentTask):
        raise ValueError(f"task must be a SentimentTask, got {type(task).__name__}")
    _check_n_seed(n, seed)
    rng = random.Random(seed)
    labels = ["positive"] * (n - n // 2) + ["negative"] * (n // 2)
    rng.shuffle(labels)
    texts = []
    for lab in labels:
        prompt = rng.choice(task.prompts)
        table = task.positive if lab == "positive" else task.negative
        texts.append(prompt + rng.choice(table[prompt]))
    return texts, labels


def training_corpus(*, seed: int = 0, n_lifted: int = 2000, n_sentiment: int = 1000) -> list[str]:
    """The default models' training text: ``FRUIT_TASK`` and ``MOVIE_TASK`` lines, shuffled.

    References
    ----------
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (next-token training).

    Examples
    --------
    >>> len(training_corpus(seed=0, n_lifted=30, n_sentiment=10))
    40
    """
    lifted, _ = lifted_corpus(FRUIT_TASK, n_lifted, seed=seed)
    movie, _ = sentiment_corpus(MOVIE_TASK, n_sentiment, seed=seed + 1)
    texts = lifted + movie
    random.Random(seed + 2).shuffle(texts)
    return texts
