"""A generated TOFU-like corpus of facts about invented people, split into forget and retain people.

TOFU (Maini et al., arXiv:2401.06121v1, section 2) fine-tunes a model on question/answer pairs about
200 fictitious authors, then asks it to unlearn the facts of a "forget" subset (1, 5 or 10 % of
the authors) while keeping the rest ("retain"). Each evaluation question there carries the original
answer, a paraphrased answer and several perturbed answers (false but well-formed, written from
the paraphrase) for the truth ratio (section 2.2.2). AltPO (Mekala et al., arXiv:2409.13474v1,
section 3) adds *alternate* answers: plausible answers to a forget question other than the true
one, which the model is taught to prefer.

Here the people and their facts are drawn from small vocabularies (``ATTRIBUTES``), so a
four-layer GPT-2 memorises them in a minute on a CPU:

* every person has a first name and a surname (unique pair) and one value of each attribute;
* each (person, attribute) is a :class:`FactQuestion` with ``prompt`` (``"Question: ... Answer:"``),
  ``answer`` (the original phrasing), ``paraphrase`` (the second phrasing), ``perturbed`` (the
  paraphrase with other values of the same attribute) and ``alternates`` (the original phrasing
  with yet other values, disjoint from the perturbed ones, so AltPO's targets are never the
  truth ratio's distractors);
* the forget people are the first ``round(n_people * forget_fraction)`` of a seeded shuffle.

Departure from TOFU, on purpose: the fine-tuning text holds both the answer and the paraphrase
(``FactCorpus.training_texts``). TOFU trains on the answers only and relies on a 7B model to
generalise to the paraphrase; a four-layer model trained for a minute does not, and without it the
truth ratio of a model that knows the fact would sit near 1, like that of a model that does not.
The perturbed sentences are never trained on.

Every completion starts with a space and ends with a full stop, as in
:mod:`prefopt_toy.lm.models.corpus`. Deterministic given ``seed`` (a private ``random.Random``).

References
----------
Maini et al., arXiv:2401.06121v1 (TOFU); Mekala et al., arXiv:2409.13474v1 (AltPO).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = [
    "ATTRIBUTES",
    "Attribute",
    "FactCorpus",
    "FactQuestion",
    "fact_corpus",
]


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: its question, its two answer phrasings and its vocabulary.

    ``{name}`` in the templates is the person's full name, ``{value}`` the attribute's value.
    """

    key: str
    question: str
    answer: str
    paraphrase: str
    values: tuple[str, ...]


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "birthplace",
        "Where was {name} born?",
        " {name} was born in {value}.",
        " The birthplace of {name} is {value}.",
        ("Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Dublin", "Madrid", "Berlin", "Vienna"),
    ),
    Attribute(
        "profession",
        "What does {name} do for a living?",
        " {name} works as a {value}.",
        " By profession {name} is a {value}.",
        ("baker", "pilot", "doctor", "farmer", "teacher", "painter", "sailor", "writer", "singer"),
    ),
    Attribute(
        "fruit",
        "What is the favourite fruit of {name}?",
        " The favourite fruit of {name} is the {value}.",
        " {name} likes the {value} best of all fruits.",
        ("apple", "banana", "cherry", "mango", "lemon", "peach", "plum", "grape", "melon"),
    ),
    Attribute(
        "colour",
        "What is the favourite colour of {name}?",
        " The favourite colour of {name} is {value}.",
        " {name} likes {value} best of all colours.",
        ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink"),
    ),
    Attribute(
        "year",
        "In which year was {name} born?",
        " {name} was born in the year {value}.",
        " The year {name} was born is {value}.",
        ("1950", "1955", "1960", "1965", "1970", "1975", "1980", "1985", "1990"),
    ),
)
"""The five attributes; nine values each."""

_FIRST = (
    "Alba", "Bruno", "Clara", "Dario", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas",
    "Karin", "Lukas", "Maya", "Nils", "Olga", "Pavel", "Rosa", "Simon", "Tara", "Viktor",
)  # fmt: skip
_LAST = (
    "Kovac", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi", "Sato",
    "Tanaka", "Ulrich", "Varga", "Weber", "Xavier", "Yilmaz", "Zeller",
)  # fmt: skip

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class FactQuestion:
    """One (person, attribute) question with its answers, as TOFU's evaluation rows carry them.

    Attributes
    ----------
    person : str
        Full name.
    attribute : str
        ``Attribute.key``.
    value : str
        The true value.
    prompt : str
        ``"Question: <question>"``, a newline and ``"Answer:"``.
    answer, paraphrase : str
        The true value in the two phrasings (each starts with a space).
    perturbed : tuple of str
        The paraphrase with ``n_perturbed`` other values (false, well-formed).
    alternates : tuple of str
        The answer phrasing with ``n_alternates`` other values, disjoint from the perturbed ones.
    """

    person: str
    attribute: str
    value: str
    prompt: str
    answer: str
    paraphrase: str
    perturbed: tuple[str, ...]
    alternates: tuple[str, ...]


@dataclass(frozen=True)
class FactCorpus:
    """The people, their questions and the forget/retain split.

    Attributes
    ----------
    people : tuple of str
        All full names.
    forget_people : tuple of str
        The people to unlearn (a ``forget_fraction`` of ``people``).
    questions : tuple of FactQuestion
        One per (person, attribute), people in ``people`` order.
    """

    people: tuple[str, ...]
    forget_people: tuple[str, ...]
    questions: tuple[FactQuestion, ...]

    @property
    def forget(self) -> tuple[FactQuestion, ...]:
        """The questions about the forget people."""
        return tuple(q for q in self.questions if q.person in self.forget_people)

    @property
    def retain(self) -> tuple[FactQuestion, ...]:
        """The questions about every other person."""
        return tuple(q for q in self.questions if q.person not in self.forget_people)

    def training_texts(self, split: str = "full") -> list[str]:
        """Fine-tuning lines ``prompt + answer`` and ``prompt + paraphrase`` of ``split``.

        ``split`` is ``"full"`` (every person) or ``"retain"`` (the retain people only).
        """
        if split not in ("full", "retain"):
            raise ValueError(f"split must be 'full' or 'retain', got {split!r}")
        qs = self.questions if split == "full" else self.retain
        return [q.prompt + a for q in qs for a in (q.answer, q.paraphrase)]

    def is_well_formed(self, text: str) -> bool:
        """Whether ``text`` (a generated answer) is one of the corpus' answer sentences.

        True when, after stripping surrounding spaces, it is an ``answer`` or ``paraphrase``
        template of some attribute with a full name of the corpus and a value from that
        attribute's vocabulary, ending at the full stop (anything after the first full stop is
        ignored, as generation may run on). The grammar is the offline stand-in for TOFU-style
        gibberish checks (see ``metrics.well_formed_fraction``).
        """
        head = text.strip().split(".")[0].strip() + "."
        return any(p.fullmatch(head) for p in _grammar(self.people))


_GRAMMAR_CACHE: dict[tuple[str, ...], tuple[re.Pattern, ...]] = {}


def _grammar(people: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    if people not in _GRAMMAR_CACHE:
        names = "|".join(re.escape(p) for p in people)
        pats = []
        for attr in ATTRIBUTES:
            values = "|".join(re.escape(v) for v in attr.values)
            for tpl in (attr.answer, attr.paraphrase):
                body = re.escape(tpl.strip())
                body = body.replace(re.escape("{name}"), f"(?:{names})")
                body = body.replace(re.escape("{value}"), f"(?:{values})")
                pats.append(re.compile(body))
        _GRAMMAR_CACHE[people] = tuple(pats)
    return _GRAMMAR_CACHE[people]


def fact_corpus(
    n_people: int = 40,
    *,
    forget_fraction: float = 0.1,
    n_perturbed: int = 3,
    n_alternates: int = 3,
    seed: int = 0,
) -> FactCorpus:
    """Generate ``n_people`` invented people with one value per attribute, and their questions.

    Parameters
    ----------
    n_people : int
        In ``[2, 320]`` (the name pairs available).
    forget_fraction : float in (0, 1)
        Share of people to forget; at least one person is forgotten and one retained. TOFU's
        splits are 1, 5 and 10 %; the default 0.1 is its ``forget10``.
    n_perturbed, n_alternates : int
        Perturbed answers (truth ratio; TOFU has 5) and alternates (AltPO's ``augment_k`` is 5)
        per question; ``n_perturbed >= 1``, ``n_alternates >= 0``, and together at most 8 (each
        attribute has 9 values).
    seed : int
        Seed of a private ``random.Random``.

    Returns
    -------
    FactCorpus

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 2 (TOFU's construction and splits);
    Mekala et al., arXiv:2409.13474v1, section 3 (alternate answers).

    Examples
    --------
    >>> c = fact_corpus(20, seed=0)
    >>> len(c.people), len(c.forget_people), len(c.questions), len(c.forget)
    (20, 2, 100, 10)
    """
    n_values = min(len(a.values) for a in ATTRIBUTES)
    for name, val, lo in (
        ("n_people", n_people, 2),
        ("n_perturbed", n_perturbed, 1),
        ("n_alternates", n_alternates, 0),
    ):
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    if n_people > len(_FIRST) * len(_LAST):
        raise ValueError(f"n_people must be at most {len(_FIRST) * len(_LAST)}, got {n_people}")
    if n_perturbed + n_alternates > n_values - 1:
        raise ValueError(
            f"n_perturbed + n_alternates must be at most {n_values - 1} (the false values of an "
            f"attribute), got {n_perturbed} + {n_alternates}"
        )
    if isinstance(forget_fraction, bool) or not (
        isinstance(forget_fraction, (int, float)) and 0 < forget_fraction < 1
    ):
        raise ValueError(f"forget_fraction must be in (0, 1), got {forget_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    rng = random.Random(seed)
    pairs = [(f, s) for f in _FIRST for s in _LAST]
    people = tuple(f"{f} {s}" for f, s in rng.sample(pairs, n_people))
    n_forget = min(max(1, round(n_people * forget_fraction)), n_people - 1)
    forget_people = tuple(rng.sample(people, n_forget))
    questions = []
    for person in people:
        for attr in ATTRIBUTES:
            value = rng.choice(attr.values)
            others = [v for v in attr.values if v != value]
            rng.shuffle(others)
            pert = others[:n_perturbed]
            alt = others[n_perturbed : n_perturbed + n_alternates]
            questions.append(
                FactQuestion(
                    person=person,
                    attribute=attr.key,
                    value=value,
                    prompt=PROMPT_TEMPLATE.format(question=attr.question.format(name=person)),
                    answer=attr.answer.format(name=person, value=value),
                    paraphrase=attr.paraphrase.format(name=person, value=value),
                    perturbed=tuple(attr.paraphrase.format(name=person, value=v) for v in pert),
                    alternates=tuple(attr.answer.format(name=person, value=v) for v in alt),
                )
            )
    return FactCorpus(people=people, forget_people=forget_people, questions=tuple(questions))
