r"""Judges: who wins between two completions, as a probability and as sampled 0/1 labels.

A judge returns :math:`\Pr(a \succ b)` for two completion texts. The online algorithms (online
IPO, IPO-MD, Nash-MD) only ever see a judge through three methods:

- ``prob(a, b) -> float``, one pair;
- ``probs(list_a, list_b) -> Tensor (n,)``, float64, vectorised over pairs;
- ``sample_labels(list_a, list_b, generator) -> Tensor (n,)``, int64 labels, 1 when ``a`` wins,
  drawn as Bernoulli(``probs``) from an explicit ``torch.Generator``.

Three judges are provided:

- :class:`LiftedGameJudge` lifts a K x K preference matrix ``P`` (any matrix, non-transitive ones
  included) to text: each completion is mapped to one of K classes by keywords, plus an "other"
  class for completions naming none of them. This is the bridge between the exact toy and GPT-2.
- :class:`SentimentJudge` is a Bradley-Terry judge on VADER's compound sentiment score, for a
  positive-continuation task.
- :class:`CallableJudge` wraps any callable ``(a, b) -> probability``.

Wherever a judge is taken (the trainer, :func:`as_judge`), a plain callable ``fn(a, b) -> Pr(a beats
b)`` is accepted and wrapped in a :class:`CallableJudge`; anything else that is not a
:class:`Judge` is refused with a ``ValueError`` saying what a judge must be. Every probability a
judge returns is checked (:func:`judge_probs`: one finite value in [0, 1] per pair), and a bad one
raises a ``ValueError`` naming the judge.

References
----------
Munos et al., arXiv:2312.00886v4, Sec. 2 (the preference model ``P(y > y')``); Calandriello et al.,
arXiv:2403.08635v1, Sec. 3 (online IPO with a preference judge); Hutto & Gilbert, "VADER: A
Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text", ICWSM 2014.
"""

from __future__ import annotations

import inspect
import numbers
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_positive_float, as_unit_interval
from prefopt_toy.games.constructors import check_preference_matrix

from .data import validate_texts

__all__ = ["CallableJudge", "Judge", "LiftedGameJudge", "SentimentJudge", "as_judge", "judge_probs"]


def _short(text: str, limit: int = 60) -> str:
    """``repr`` of a text, cut to ``limit`` characters for error messages."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (for a repr in an error message)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_texts(texts: Any, name: str) -> list[str]:
    """A list of strings, possibly empty ones (a sampled completion can be empty).

    A single ``str``, bytes, a dict or a generator is refused (``data.validate_texts``).
    """
    return validate_texts(texts, name, allow_empty=True, allow_blank=True)


def _as_pair_lists(list_a: Any, list_b: Any) -> tuple[list[str], list[str]]:
    a = _as_texts(list_a, "list_a")
    b = _as_texts(list_b, "list_b")
    if len(a) != len(b):
        raise ValueError(f"list_a and list_b must have the same length, got {len(a)} and {len(b)}")
    return a, b


class Judge(ABC):
    r"""Base class of judges: :math:`\Pr(a \succ b)` for completion texts, and sampled labels.

    Subclasses implement :meth:`probs`; :meth:`prob` and :meth:`sample_labels` follow from it.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 2 (the preference model ``P(y > y')``).
    """

    @abstractmethod
    def probs(self, list_a: Sequence[str], list_b: Sequence[str]) -> Tensor:
        r"""Pr(``list_a[i]`` beats ``list_b[i]``) for each i; float64 tensor of shape (n,)."""

    def prob(self, a: str, b: str) -> float:
        r"""Pr(``a`` beats ``b``), a float in [0, 1]."""
        if not isinstance(a, str) or not isinstance(b, str):
            raise ValueError(f"a and b must be str, got {type(a).__name__} and {type(b).__name__}")
        return float(judge_probs(self, [a], [b])[0])

    def sample_labels(
        self, list_a: Sequence[str], list_b: Sequence[str], generator: torch.Generator
    ) -> Tensor:
        r"""Sampled preference labels, 1 when ``list_a[i]`` wins, drawn as Bernoulli(``probs``).

        Parameters
        ----------
        list_a, list_b : sequence of str, length n
            The compared completions.
        generator : torch.Generator
            The only source of randomness (CPU generator); one uniform draw per pair.

        Returns
        -------
        Tensor, shape (n,), int64
            ``1[u_i < p_i]`` with ``u_i ~ U[0, 1)`` from ``generator``.

        Raises
        ------
        ValueError
            Bad texts, no generator, or probabilities that are not n finite values in [0, 1]
            (:func:`judge_probs`).
        """
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        p = judge_probs(self, list_a, list_b)  # (n,)
        u = torch.rand(p.shape, generator=generator, dtype=torch.float64, device=generator.device)
        return (u < p.to(u.device)).to(torch.int64)


class LiftedGameJudge(Judge):
    r"""A K x K preference matrix lifted to text through K keyword classes and an "other" class.

    Each text is given a class by its keywords; the judge's probability is the matrix entry of the
    two classes,

    .. math:: \Pr(a \succ b) = P_{\mathrm{ext}}[c(a), c(b)],

    where :math:`P_{\mathrm{ext}}` is ``P`` bordered by the "other" class (index K):
    ``P_ext[K, k] = 1 - other_loses`` and ``P_ext[k, K] = other_loses`` for every class k, and
    ``P_ext[K, K] = 1/2``. So ``P_ext + P_ext.T == 1`` and the game is still antisymmetric.

    Parameters
    ----------
    P : array-like, shape (K, K)
        Preference matrix on the K classes, ``P[i, j] = Pr(class i beats class j)``; any matrix
        accepted by :func:`prefopt_toy.check_preference_matrix`, non-transitive ones included.
    classes : mapping str -> sequence of str
        Class name -> keywords, K entries in the order of ``P``'s rows. Keywords match whole words
        (or whole phrases), case-insensitively; a keyword may belong to one class only.
    other : str, default "other"
        Name of the class of texts naming no keyword; must differ from the class names.
    other_loses : float in [0, 1], default 1.0
        Probability that any class beats "other".

    Notes
    -----
    Classification rule: the class of the keyword that occurs *first* in the text (smallest start
    offset; at equal offsets the longest keyword). "My favourite fruit is cherry, not apple" is
    therefore a cherry. A text with no keyword is "other".

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 2 (any preference model, not necessarily transitive);
    Azar et al., arXiv:2310.12036v2, Sec. 3.

    Examples
    --------
    >>> rps = [[0.5, 0.1, 0.9], [0.9, 0.5, 0.1], [0.1, 0.9, 0.5]]
    >>> judge = LiftedGameJudge(rps, {"rock": ("rock",), "paper": ("paper",), "scissors": ("scissors",)})
    >>> judge.prob("Paper, of course.", "a rock")
    0.9
    >>> judge.prob("a pebble", "scissors")
    0.0
    >>> judge.classify(["ROCK on", "paper", "nothing"]).tolist()
    [0, 1, 3]
    """

    def __init__(
        self,
        P: Any,
        classes: Mapping[str, Sequence[str]],
        other: str = "other",
        *,
        other_loses: float = 1.0,
    ) -> None:
        P = check_preference_matrix(P)
        if not isinstance(classes, Mapping) or len(classes) == 0:
            raise ValueError("classes must be a non-empty mapping from class name to keywords")
        K = P.shape[0]
        if len(classes) != K:
            raise ValueError(f"classes must have one entry per row of P ({K}), got {len(classes)}")
        if not isinstance(other, str) or other in classes:
            raise ValueError(f"other must be a str different from the class names, got {other!r}")
        other_loses = as_unit_interval(other_loses, "other_loses")

        keyword_class: dict[str, int] = {}
        for k, (name, keywords) in enumerate(classes.items()):
            if not isinstance(name, str):
                raise ValueError(f"classes keys must be str, got {type(name).__name__}")
            words = _as_texts(keywords, f"classes[{name!r}]")
            if not words:
                raise ValueError(f"classes[{name!r}] must list at least one keyword")
            for word in words:
                key = word.strip().casefold()
                if not key:
                    raise ValueError(f"classes[{name!r}] has an empty keyword")
                if key in keyword_class and keyword_class[key] != k:
                    raise ValueError(f"keyword {word!r} is in two classes of classes")
                keyword_class[key] = k
        # longest first, so that at one start offset the regex prefers "apple pie" over "apple"
        ordered = sorted(keyword_class, key=len, reverse=True)
        # \b only where the keyword starts/ends with a word character, so "c++" still matches
        parts = [
            (r"\b" if w[0].isalnum() or w[0] == "_" else "")
            + re.escape(w)
            + (r"\b" if w[-1].isalnum() or w[-1] == "_" else "")
            for w in ordered
        ]
        self._pattern = re.compile("|".join(f"({p})" for p in parts), flags=re.IGNORECASE)
        self._group_class = [keyword_class[w] for w in ordered]

        self.P = P  # (K, K) float64
        self.classes: dict[str, tuple[str, ...]] = {n: tuple(v) for n, v in classes.items()}
        self.other = other
        self.other_loses = other_loses
        P_ext = torch.full((K + 1, K + 1), 0.5, dtype=torch.float64)
        P_ext[:K, :K] = P
        P_ext[:K, K] = other_loses
        P_ext[K, :K] = 1.0 - other_loses
        self.P_ext = P_ext  # (K + 1, K + 1) float64

    @property
    def class_names(self) -> tuple[str, ...]:
        """The K class names followed by the "other" name (K + 1 entries, the order of ``P_ext``)."""
        return (*self.classes, self.other)

    def classify(self, texts: Sequence[str]) -> Tensor:
        """Class index of each text: 0..K-1 for the first keyword's class, K for "other".

        Returns
        -------
        Tensor, shape (n,), int64
        """
        texts = _as_texts(texts, "texts")
        K = self.P.shape[0]
        out = []
        for text in texts:
            match = self._pattern.search(text)
            out.append(K if match is None else self._group_class[match.lastindex - 1])
        return torch.tensor(out, dtype=torch.int64)

    def class_distribution(self, texts: Sequence[str]) -> Tensor:
        """Empirical class frequencies of ``texts``, shape (K + 1,), float64, "other" last."""
        texts = _as_texts(texts, "texts")
        if not texts:
            raise ValueError("texts must hold at least one text")
        counts = torch.bincount(self.classify(texts), minlength=self.P.shape[0] + 1)
        return counts.to(torch.float64) / len(texts)

    def probs(self, list_a: Sequence[str], list_b: Sequence[str]) -> Tensor:
        """Pr(``list_a[i]`` beats ``list_b[i]``) = ``P_ext[class(a_i), class(b_i)]``, shape (n,)."""
        a, b = _as_pair_lists(list_a, list_b)
        return self.P_ext[self.classify(a), self.classify(b)]


class SentimentJudge(Judge):
    r"""Bradley-Terry judge on VADER's compound sentiment: the more positive text wins.

    .. math:: \Pr(a \succ b) = \sigma\!\left(\frac{s(a) - s(b)}{T}\right),

    with :math:`s \in [-1, 1]` VADER's compound score and :math:`T` = ``temperature``.

    Parameters
    ----------
    temperature : float > 0, default 0.25
        With the default, a compound gap of 0.5 (e.g. neutral against mildly positive) gives
        Pr ~ 0.88 and the largest gap, 2, gives Pr ~ 0.9997.

    Notes
    -----
    VADER is rule-based and runs offline (lexicon shipped with ``vaderSentiment``). The score of
    the empty text is 0.

    References
    ----------
    Hutto & Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media
    Text", ICWSM 2014 (the compound score); Bradley & Terry, Biometrika 39 (1952) (the sigmoid link).

    Examples
    --------
    >>> judge = SentimentJudge()
    >>> judge.prob("a wonderful, moving film", "a dull and boring film") > 0.99
    True
    """

    def __init__(self, temperature: float = 0.25) -> None:
        self.temperature = as_positive_float(temperature, "temperature")
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def scores(self, texts: Sequence[str]) -> Tensor:
        """VADER compound score of each text, shape (n,), float64 in [-1, 1]."""
        texts = _as_texts(texts, "texts")
        return torch.tensor(
            [self._analyzer.polarity_scores(t)["compound"] for t in texts], dtype=torch.float64
        )

    def probs(self, list_a: Sequence[str], list_b: Sequence[str]) -> Tensor:
        """``sigmoid((s(a_i) - s(b_i)) / temperature)``, shape (n,), float64."""
        a, b = _as_pair_lists(list_a, list_b)
        return torch.sigmoid((self.scores(a) - self.scores(b)) / self.temperature)


class CallableJudge(Judge):
    """A judge from any callable ``fn(a, b) -> Pr(a beats b)``.

    Parameters
    ----------
    fn : callable (str, str) -> float
        Called once per pair with the two completion texts; must return a finite real number in
        [0, 1] (a Python or numpy number, or a one-element tensor).
    name : str, default "fn"
        How error messages name ``fn`` (``as_judge`` passes ``"judge"``).

    Raises
    ------
    ValueError
        ``fn`` not callable, or not callable with two positional arguments; from :meth:`probs`
        when ``fn`` returns something that is not a real number in [0, 1] (the message names
        ``fn`` and the two texts).

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 2 (a general preference model).

    Examples
    --------
    >>> judge = CallableJudge(lambda a, b: 0.5 + 0.5 * ((len(a) > len(b)) - (len(a) < len(b))))
    >>> judge.probs(["long text", "a"], ["short", "a"]).tolist()
    [1.0, 0.5]
    """

    def __init__(self, fn: Callable[[str, str], float], *, name: str = "fn") -> None:
        if not callable(fn):
            raise ValueError(f"{name} must be callable, got {type(fn).__name__}")
        _check_two_texts_signature(fn, name)
        self.fn = fn
        self.name = name

    def probs(self, list_a: Sequence[str], list_b: Sequence[str]) -> Tensor:
        """``fn(a_i, b_i)`` for each pair, validated, shape (n,), float64."""
        a, b = _as_pair_lists(list_a, list_b)
        out = []
        for x, y in zip(a, b):
            value = self.fn(x, y)
            if isinstance(value, Tensor) and value.numel() == 1:
                value = value.item()
            elif (
                hasattr(value, "item") and getattr(value, "size", None) == 1
            ):  # numpy scalars and arrays
                value = value.item()
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not (0.0 <= value <= 1.0)
            ):
                # NaN fails the range test too
                raise ValueError(
                    f"{self.name}({_short(x)}, {_short(y)}) must return a probability in [0, 1] "
                    f"(Pr(a beats b)), got {_clip(repr(value))}"
                )
            out.append(float(value))
        return torch.tensor(out, dtype=torch.float64)


def _check_two_texts_signature(fn: Callable, name: str) -> None:
    """Refuse a callable that cannot be called as ``fn(a, b)`` (its signature, when Python knows it)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        return
    try:
        signature.bind("a", "b")
    except TypeError:
        raise ValueError(
            f"{name} must be callable as {name}(a, b) with two completion texts, returning Pr(a beats b) "
            f"in [0, 1]; {getattr(fn, '__qualname__', type(fn).__name__)}{signature} cannot be"
        ) from None


_JUDGE_DOC = (
    "a prefopt_toy.lm.judges.Judge (LiftedGameJudge, SentimentJudge, CallableJudge or a subclass "
    "implementing probs(list_a, list_b)) or a plain callable fn(a, b) -> Pr(a beats b) in [0, 1]"
)


def as_judge(judge: Any, name: str = "judge") -> Judge:
    """A :class:`Judge` from what a user passed: a judge as is, a plain callable wrapped.

    Parameters
    ----------
    judge : Judge or callable
        A :class:`Judge` is returned unchanged. A plain callable ``fn(a, b) -> Pr(a beats b)``
        (two completion texts in, one probability in [0, 1] out, called once per pair) becomes
        ``CallableJudge(fn, name=name)``.
    name : str, default "judge"
        How messages name the argument.

    Returns
    -------
    Judge

    Raises
    ------
    ValueError
        ``judge`` is neither (None, a number, a string, an object without ``probs``...), or a
        callable that cannot be called with two texts; the message says what a judge must be.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 2 (the preference model ``P(y > y')``).

    Examples
    --------
    >>> judge = as_judge(lambda a, b: 1.0 if "cherry" in a else 0.0)
    >>> judge.probs(["a cherry", "an apple"], ["an apple", "a cherry"]).tolist()
    [1.0, 0.0]
    >>> as_judge(0.5)
    Traceback (most recent call last):
    ...
    ValueError: judge must be a prefopt_toy.lm.judges.Judge (LiftedGameJudge, SentimentJudge, CallableJudge or a subclass implementing probs(list_a, list_b)) or a plain callable fn(a, b) -> Pr(a beats b) in [0, 1], got float
    """
    if isinstance(judge, Judge):
        return judge
    if callable(judge) and not isinstance(judge, type):
        return CallableJudge(judge, name=name)
    raise ValueError(f"{name} must be {_JUDGE_DOC}, got {type(judge).__name__}")


def judge_probs(
    judge: Judge, list_a: Sequence[str], list_b: Sequence[str], *, name: str = "judge"
) -> Tensor:
    r"""``judge.probs(list_a, list_b)``, checked: one finite probability in [0, 1] per pair.

    Every probability the trainer, the evaluation and the label samplers use goes through here, so
    a judge that returns the wrong shape, NaN or a value outside [0, 1] fails at once with a
    message naming it, instead of a silently wrong label weight.

    Parameters
    ----------
    judge : Judge
    list_a, list_b : sequence of str, length n
    name : str, default "judge"
        How the message names the judge (its class is added).

    Returns
    -------
    Tensor, shape (n,), float64, on the device ``judge.probs`` returned it on

    Raises
    ------
    ValueError
        Bad texts, or the judge's output is not n finite real values in [0, 1].

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 2 (``P(y > y')`` is a probability).

    Examples
    --------
    >>> class Broken(Judge):
    ...     def probs(self, list_a, list_b):
    ...         return torch.full((len(list_a),), 1.5, dtype=torch.float64)
    >>> judge_probs(Broken(), ["a"], ["b"])
    Traceback (most recent call last):
    ...
    ValueError: judge (Broken).probs must return probabilities in [0, 1] (Pr(list_a[i] beats list_b[i])), got 1.5 at index 0
    """
    a, b = _as_pair_lists(list_a, list_b)
    raw = judge.probs(a, b)
    label = f"{name} ({type(judge).__name__})"
    try:
        p = raw.detach() if isinstance(raw, Tensor) else torch.as_tensor(raw, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{label}.probs must return a (n,) tensor of probabilities, got {type(raw).__name__}"
        ) from err
    if (
        p.is_complex()
        or p.dtype == torch.bool
        or not (p.is_floating_point() or p.dtype in (torch.int32, torch.int64))
    ):
        raise ValueError(f"{label}.probs must return real probabilities, got dtype {p.dtype}")
    p = p.to(torch.float64)
    if p.shape != (len(a),):
        raise ValueError(
            f"{label}.probs must return shape ({len(a)},), one probability per pair, got {tuple(p.shape)}"
        )
    bad = ~torch.isfinite(p) | (p < 0) | (p > 1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{label}.probs must return probabilities in [0, 1] (Pr(list_a[i] beats list_b[i])), "
            f"got {float(p[i])!r} at index {i}"
        )
    return p
