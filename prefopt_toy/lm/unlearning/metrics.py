r"""TOFU's unlearning metrics on per-question numbers: truth ratio, forget quality, model utility.

Everything here is a pure function of numbers the evaluation has already computed (length-normalised
losses, generated strings); :mod:`prefopt_toy.lm.unlearning.evaluation` runs the models. The
definitions follow the official TOFU code (``locuslab/tofu``, ``aggregate_eval_stat.py``), which
AltPO's code (``molereddy/Alternate-Preference-Optimization``, ``utils.py``) reuses:

* **Length-normalised loss** of an answer ``a``: ``L(a) = -(1/|a|) log P(a | q)``, the mean token
  NLL, so ``exp(-L(a)) = P(a | q)^{1/|a|}``.
* **Truth ratio** of a question (the code's ``curr_stat_1``):
  ``R = exp( mean_k L(perturbed_k) - L(paraphrase) )``. With ``P^{1/|a|} = exp(-L)`` this is the
  normalised probability of the paraphrase over the geometric mean of those of the perturbed
  answers, i.e. the *reciprocal* of the paper's Eq. (1) ``R_truth`` (perturbed over paraphrased,
  with an arithmetic mean; Maini et al., arXiv:2401.06121v1, section 2.2.2). Large ``R``: the
  model prefers the true answer; ``R`` near 1: it cannot tell true from false.
* **Forget quality**: the p-value of the two-sided two-sample Kolmogorov-Smirnov test
  (``scipy.stats.ks_2samp``) between the truth ratios on the forget questions of the unlearned
  model and of the retain model (never trained on the forget people); arXiv:2401.06121v1,
  section 2.5. It is high when the two *distributions match*, not when the ratio is pushed as low
  as it goes (open-unlearning issue #111).
* **Truth-ratio score** (model utility's ingredient): ``mean(max(0, 1 - 1/R))`` on retain
  questions; on forget questions the code reports ``mean(min(R, 1/R))``.
* **Answer probability** on retain questions: ``mean(exp(-L(answer)))``.
* **ROUGE-L recall** of a generated answer against the original answer: longest common
  subsequence of words over the number of reference words (Lin 2004, "ROUGE", section 3.1,
  ``R_lcs``); TOFU calls ``rouge_score`` with ``rougeL`` and keeps the recall. Words here are
  lower-cased runs of ``[a-z0-9]``, as ``rouge_score``'s default tokenizer (no stemming) makes
  them.
* **Model utility**: the harmonic mean of those numbers. TOFU takes it over nine (three each on
  the retain set, real authors and world facts); this corpus has only the retain set, so it is the
  harmonic mean of three. The harmonic mean is 0 as soon as one number is 0.
* **Fluency** (substitute): AltPO's code scores forget-set generations with a downloaded gibberish
  classifier (``madhurjindal/autonlp-Gibberish-Detector-492513457``). Offline, this module offers
  :func:`well_formed_fraction`: the share of generated answers that parse as a corpus answer
  sentence (any name, any value of the right vocabulary); the evaluation adds the mean per-token
  log-prob of the generations under the retain model. Both are stand-ins, not the paper's metric.

References
----------
Maini et al., arXiv:2401.06121v1 (TOFU, sections 2.2-2.5); Mekala et al., arXiv:2409.13474v1
(AltPO, section 4); Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries", ACL
workshop (ROUGE-L); open-unlearning issue #111 (forget quality means matching the retain model).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

__all__ = [
    "answer_probability",
    "forget_quality",
    "harmonic_mean",
    "rouge_l_recall",
    "truth_ratio",
    "truth_ratio_score",
    "value_accuracy",
    "well_formed_fraction",
]


_MAX_EXPONENT = 708.0


def _losses(x, name: str, ndim: int, what: str = "losses", *, loss: bool = False) -> np.ndarray:
    arr = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
    if arr.ndim != ndim or arr.shape[0] == 0 or (ndim == 2 and arr.shape[1] == 0):
        raise ValueError(
            f"{name} must be a non-empty {ndim}-D array of {what}, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold finite numbers")
    if loss and np.any(arr < 0):
        raise ValueError(
            f"{name} must be non-negative (mean token negative log-likelihoods, nats), got min "
            f"{arr.min():.6g}: log-probabilities passed instead of losses?"
        )
    return arr


def truth_ratio(paraphrased_loss, perturbed_losses) -> Tensor:
    """TOFU's per-question truth ratio ``R = exp(mean_k L(perturbed_k) - L(paraphrase))``.

    Parameters
    ----------
    paraphrased_loss : array-like, shape (Q,)
        Length-normalised loss (mean token NLL, nats) of each question's paraphrased answer.
    perturbed_losses : array-like, shape (Q, K)
        Length-normalised losses of its K perturbed answers.

    Returns
    -------
    Tensor, shape (Q,), float64
        ``R > 1``: the paraphrase is more likely (per token) than the perturbed answers.

    Raises
    ------
    ValueError
        Shapes that do not match, a loss that is not finite or is negative (log-probabilities
        given instead), or a question whose ratio is outside float64 (``|exponent| > 708``,
        usually summed rather than length-normalised losses): refused, never clipped.

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 2.2.2, Eq. (1) (the paper writes the reciprocal,
    perturbed over paraphrased); ``locuslab/tofu`` ``aggregate_eval_stat.py`` (``curr_stat_1``).

    Examples
    --------
    >>> truth_ratio([1.0], [[2.0, 3.0]]).tolist()  # exp(2.5 - 1)
    [4.4816890703380645]
    """
    para = _losses(paraphrased_loss, "paraphrased_loss", 1, loss=True)
    pert = _losses(perturbed_losses, "perturbed_losses", 2, loss=True)
    if pert.shape[0] != para.shape[0]:
        raise ValueError(
            f"perturbed_losses must have one row per question ({para.shape[0]}), got {pert.shape[0]}"
        )
    # Mean as a sum of x / K: finite for every finite input (a plain sum can overflow).
    exponent = (pert / pert.shape[1]).sum(axis=1) - para
    # exp is finite and non-zero in float64 for |exponent| <= 708; beyond, R is not representable.
    out = np.flatnonzero(np.abs(exponent) > _MAX_EXPONENT)
    if out.size:
        i = int(out[0])
        raise ValueError(
            f"truth_ratio: question {i} has exp(mean perturbed loss - paraphrased loss) = "
            f"exp({exponent[i]:.6g}), outside float64's range (|exponent| <= {_MAX_EXPONENT:g}); "
            "the losses must be length-normalised (mean token NLL), not summed"
        )
    return torch.from_numpy(np.exp(exponent))


def truth_ratio_score(ratios, *, forget: bool) -> float:
    """TOFU's summary of truth ratios: ``mean(max(0, 1 - 1/R))`` (retain) or ``mean(min(R, 1/R))``.

    References
    ----------
    ``locuslab/tofu`` ``aggregate_eval_stat.py`` (``paraphrased_perturb_ratio``); Maini et al.,
    arXiv:2401.06121v1, section 2.2.2.
    """
    r = _losses(ratios, "ratios", 1, "truth ratios")
    if np.any(r <= 0):
        raise ValueError("ratios must be positive")
    if forget:
        return float(np.mean(np.minimum(r, 1.0 / r)))
    return float(np.mean(np.maximum(0.0, 1.0 - 1.0 / r)))


def forget_quality(ratios_unlearned, ratios_retain) -> tuple[float, float]:
    """TOFU's forget quality: the two-sided KS-test p-value between two truth-ratio samples.

    Parameters
    ----------
    ratios_unlearned : array-like, shape (Q,)
        Truth ratios on the forget questions of the model being evaluated.
    ratios_retain : array-like, shape (Q',)
        Truth ratios on the same questions of the retain model (the target to match).

    Returns
    -------
    p_value : float
        ``scipy.stats.ks_2samp(..., alternative="two-sided").pvalue``: 1 for identical samples,
        small when the distributions differ. High is good.
    statistic : float
        The KS statistic ``sup_x |F_1(x) - F_2(x)|`` of the two empirical CDFs.

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 2.5 (forget quality); Mekala et al.,
    arXiv:2409.13474v1, section 4; open-unlearning issue #111.
    """
    a = _losses(ratios_unlearned, "ratios_unlearned", 1, "truth ratios")
    b = _losses(ratios_retain, "ratios_retain", 1, "truth ratios")
    res = stats.ks_2samp(a, b, alternative="two-sided")
    return float(res.pvalue), float(res.statistic)


def answer_probability(answer_loss) -> float:
    """Mean over questions of ``exp(-L(answer)) = P(answer | q)^{1/|answer|}`` (TOFU's "Prob.").

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 2.2.1; ``locuslab/tofu`` ``aggregate_eval_stat.py``.
    """
    loss = _losses(answer_loss, "answer_loss", 1, loss=True)
    return float(np.mean(np.exp(-loss)))


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rouge_l_recall(candidate: str, reference: str) -> float:
    """ROUGE-L recall: LCS(candidate words, reference words) / number of reference words.

    Words are lower-cased runs of ``[a-z0-9]``. An empty reference gives 0.

    References
    ----------
    Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries", section 3.1 (``R_lcs``);
    Maini et al., arXiv:2401.06121v1, section 2.2.1 (TOFU reports the recall).

    Examples
    --------
    >>> rouge_l_recall("the cat sat", "the cat sat on the mat")
    0.5
    """
    if not isinstance(candidate, str) or not isinstance(reference, str):
        raise ValueError("candidate and reference must be strings")
    c, r = _words(candidate), _words(reference)
    if not r or not c:
        return 0.0
    # Dynamic programme over prefixes: prev[j] = LCS(c[:i-1], r[:j]).
    prev = [0] * (len(r) + 1)
    for wc in c:
        cur = [0] * (len(r) + 1)
        for j, wr in enumerate(r, start=1):
            cur[j] = prev[j - 1] + 1 if wc == wr else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1] / len(r)


def value_accuracy(generated: Sequence[str], values: Sequence[str]) -> float:
    """Share of generated answers that contain the true value as a word (exact match on the fact).

    ROUGE-L recall and the length-normalised probability score a whole sentence, in which the
    fact is one word of about ten: a model that keeps the sentence and changes the value still
    scores high. This counts the fact itself (words as in :func:`rouge_l_recall`). It is the
    project's addition, not a TOFU metric; it is not part of model utility.

    Examples
    --------
    >>> value_accuracy(["Alba was born in Lima.", "Alba was born in Oslo."], ["Lima", "Lima"])
    0.5
    """
    if isinstance(generated, str) or isinstance(values, str) or len(generated) != len(values):
        raise ValueError("generated and values must be sequences of strings of one length")
    if not len(generated):
        raise ValueError("generated must not be empty")
    hits = [set(_words(v)) <= set(_words(g)) for g, v in zip(generated, values)]
    return sum(hits) / len(hits)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean of non-negative numbers; 0 if any is 0 (TOFU's model-utility aggregate).

    References
    ----------
    Maini et al., arXiv:2401.06121v1, section 2.5 (model utility); ``scipy.stats.hmean``.
    """
    v = _losses(list(values), "values", 1, "numbers")
    if np.any(v < 0):
        raise ValueError("values must be non-negative")
    if np.any(v == 0):
        return 0.0
    return float(len(v) / np.sum(1.0 / v))


def well_formed_fraction(texts: Sequence[str], is_well_formed: Callable[[str], bool]) -> float:
    """The share of ``texts`` that ``is_well_formed`` accepts: the offline fluency stand-in.

    With ``FactCorpus.is_well_formed`` it counts generated answers that are corpus sentences (a
    name, an answer template, a value of the attribute's vocabulary). It replaces the gibberish
    classifier of AltPO's code (``madhurjindal/autonlp-Gibberish-Detector-492513457``), which cannot
    be downloaded here; it is stricter (a fluent sentence outside the grammar counts as not well
    formed) and says nothing about text outside the corpus' world.

    References
    ----------
    Mekala et al., arXiv:2409.13474v1, section 4 (generation-quality metrics).
    """
    if isinstance(texts, str) or not len(texts):
        raise ValueError("texts must be a non-empty sequence of strings")
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must hold strings only")
    if not callable(is_well_formed):
        raise ValueError(
            f"is_well_formed must be a callable taking a string, got {type(is_well_formed).__name__}"
        )
    return sum(bool(is_well_formed(t)) for t in texts) / len(texts)
