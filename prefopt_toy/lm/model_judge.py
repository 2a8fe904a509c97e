r"""A pairwise judge made of a language model: the next-token odds of "1" against "2" (RLAIF).

:class:`LanguageModelJudge` shows a causal LM (any GPT-2: the small default model, or the policy
being trained) a prompt and two completions labelled 1 and 2, asks which is better, and reads the
model's next-token distribution after the template. The **raw judge** is

.. math:: J(a, b) = \frac{p(\texttt{"1"} \mid t(a, b))}{p(\texttt{"1"} \mid t(a, b)) + p(\texttt{"2"} \mid t(a, b))}
          = \sigma\big(\ell_{1} - \ell_{2}\big),

where :math:`t(a, b)` is the template with ``a`` in position 1 and ``b`` in position 2 and
:math:`\ell_1, \ell_2` are the two tokens' logits. **Renormalisation:** the probability is taken
over the two answer tokens only (Lee et al.'s soft preference from the judge's "1" vs "2"
probabilities); the softmax normaliser over the whole vocabulary cancels, so only the logit gap
matters. How much next-token mass the two tokens get at all is reported separately
(:meth:`LanguageModelJudge.token_mass`): a model that was never taught the template puts little
mass there, and its J is then a weak signal.

**Position bias.** A judge need not satisfy :math:`J(a, b) + J(b, a) = 1`; the gap
:math:`J(a, b) + J(b, a) - 1` (positive: the first position is favoured) is measured by
:meth:`LanguageModelJudge.position_bias`. With ``order="both"`` (default) the judge averages the
two orders,

.. math:: P(a \succ b) = \tfrac12\big(J(a, b) + 1 - J(b, a)\big),

which is antisymmetric: :math:`P(a \succ b) + P(b \succ a) = 1` (exactly, bit for bit, within one
call: see below). ``order="first"`` returns the raw :math:`J(a, b)`.

**Determinism and exactness.** Each call formats the judge texts, removes duplicates (so
:math:`J(a, b)` is computed once even when both orders of a pair, or a pair and its swap, are in
the call), runs them through the model in left-padded batches of ``batch_size`` under
``torch.no_grad`` with the model in eval mode (its mode is restored afterwards), and computes the
probabilities in float64 from the two logits. ``order="both"`` is computed from the gap
:math:`d = J(a, b) - J(b, a)` as :math:`\tfrac12 + \tfrac d2` for :math:`d \ge 0` and
:math:`1 - (\tfrac12 - \tfrac d2)` otherwise, so a pair and its swap in one call sum to 1 exactly.
Across calls with different batch compositions the float32 forward passes agree to round-off
(about 1e-6), not bit for bit.

**The prompt.** The Judge interface passes completions only; the question the completions answer is
``prompt`` (fixed at construction), or per pair through ``probs(..., prompts=[...])``.

References
----------
Lee et al., arXiv:2309.00267v3, Sec. 2.1 (RLAIF: preference labels from an LLM's probabilities of
the tokens "1" and "2", renormalised over the two; position bias and averaging both orders, Sec.
2.1.1); Zheng et al., arXiv:2306.05685v4, Sec. 3.3 (LLM-as-a-judge position bias: swap the
positions and call it consistent only when the verdict agrees); Yuan et al., arXiv:2401.10020v3
(self-rewarding: the policy judges itself); Guo et al., arXiv:2402.04792v2 (online AI feedback);
Radford et al. 2019 (GPT-2).
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefopt_toy._validate import as_int

from .data import check_model_inputs, check_tokenizer, model_device, to_device
from .judges import Judge, _as_pair_lists, _as_texts
from .logprobs import position_ids_from_mask

__all__ = ["DEFAULT_TEMPLATE", "JUDGE_ORDERS", "LanguageModelJudge", "PositionBias"]

DEFAULT_TEMPLATE = (
    "Which answer completes the sentence better?\n"
    "Sentence: {prompt} ...\n"
    "Answer {token1}:{first}\n"
    "Answer {token2}:{second}\n"
    "Preferred answer="
)
"""The default judge template: ``{prompt}``, ``{first}`` (position 1), ``{second}`` (position 2),
and the position labels ``{token1}``, ``{token2}`` (the answer tokens, stripped of spaces).

Completions start with a space (``" an apple."``), so ``"Answer {token1}:{first}"`` reads
``"Answer 1: an apple."``; the template ends where the answer token ("1" or "2") comes next, as
Lee et al.'s "Preferred Summary=" does."""

JUDGE_ORDERS = ("both", "first")
"""``"both"``: average both orders, :math:`(J(a,b) + 1 - J(b,a))/2`; ``"first"``: the raw J."""

_FIELDS = {"prompt", "first", "second", "token1", "token2"}


@dataclass(frozen=True)
class PositionBias:
    r"""A judge's measured position bias on n pairs (:meth:`LanguageModelJudge.position_bias`).

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1.1; Zheng et al., arXiv:2306.05685v4, Sec. 3.3.
    """

    bias: Tensor
    r"""(n,) float64, :math:`J(a_i, b_i) + J(b_i, a_i) - 1` (> 0: position 1 favoured)."""
    j_ab: Tensor
    """(n,) float64, the raw J with ``a`` first."""
    j_ba: Tensor
    """(n,) float64, the raw J with ``b`` first."""
    mean: float
    """Mean of ``bias``."""
    mean_abs: float
    """Mean of ``|bias|``."""
    consistent: float
    """Fraction of pairs whose verdict is the same in both orders (Zheng et al.'s consistency):
    ``a`` wins both (``J(a,b) > 1/2`` and ``J(b,a) < 1/2``) or ``b`` wins both."""
    first_both: float
    """Fraction of pairs where position 1 wins in both orders (``J(a,b) > 1/2`` and ``J(b,a) > 1/2``)."""
    second_both: float
    """Fraction of pairs where position 2 wins in both orders."""

    def as_dict(self) -> dict[str, float]:
        """The summaries as plain floats (for JSON)."""
        return {
            "n": int(self.bias.numel()),
            "mean": self.mean,
            "mean_abs": self.mean_abs,
            "consistent": self.consistent,
            "first_both": self.first_both,
            "second_both": self.second_both,
        }


def _check_template(template: Any) -> str:
    if not isinstance(template, str) or not template:
        raise ValueError(f"template must be a non-empty str, got {type(template).__name__}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ValueError(f"template is not a valid format string: {err}") from None
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise ValueError(
            "template may only use the fields {prompt}, {first}, {second}, {token1} and {token2}, "
            f"got {unknown}"
        )
    for f in ("first", "second"):
        if fields.count(f) != 1:
            raise ValueError(
                f"template must contain {{{f}}} exactly once (the completion in position "
                f"{1 if f == 'first' else 2}), found it {fields.count(f)} times"
            )
    return template


class LanguageModelJudge(Judge):
    r"""A causal LM as a pairwise judge: :math:`\Pr(a \succ b)` from its "1" vs "2" next-token odds.

    Parameters
    ----------
    model : causal LM (``transformers`` GPT-2, or any ``torch.nn.Module`` returning ``.logits``)
        Read only (never trained here). Pass a frozen copy (``copy.deepcopy``) to judge with a
        snapshot of a policy that is being trained, as the self-rewarding loop does.
    tokenizer : GPT-2 tokenizer
        Encodes the judge texts; EOS pads (left padding, masks from lengths).
    template : str, default :data:`DEFAULT_TEMPLATE`
        A ``str.format`` template with ``{first}`` and ``{second}`` exactly once each and
        optionally ``{prompt}`` and the position labels ``{token1}``, ``{token2}`` (the two
        tokens without surrounding spaces); the answer token must come right after it.
    tokens : (str, str), default ("1", "2")
        The answer tokens for position 1 and position 2; each must encode to exactly one token,
        and the two must differ.
    order : {"both", "first"}, default "both"
        ``"both"``: :math:`(J(a,b) + 1 - J(b,a))/2`, antisymmetric; ``"first"``: the raw J.
    prompt : str, default ""
        The question the completions answer (the ``{prompt}`` field), when ``probs`` gets none.
    batch_size : int >= 1, default 64
        Judge texts per forward pass.

    Raises
    ------
    ValueError
        A model that is not a ``torch.nn.Module``, a tokenizer without EOS, a template without
        its fields (or with unknown ones), tokens that are not two distinct single tokens, an
        unknown ``order``, a bad ``batch_size``; from :meth:`probs`: bad texts, a judge text
        longer than the model's positions.

    Notes
    -----
    The judge texts are encoded whole (template, prompt and completions in one string), so BPE
    merges across the boundaries exactly as in running text.

    References
    ----------
    Lee et al., arXiv:2309.00267v3, Sec. 2.1 (soft labels from the "1"/"2" token probabilities,
    both orders averaged); Zheng et al., arXiv:2306.05685v4, Sec. 3.3 (position bias).

    Examples
    --------
    >>> from prefopt_toy.lm.models import default_model
    >>> model, tok = default_model("tiny")  # doctest: +SKIP
    >>> judge = LanguageModelJudge(model, tok, prompt="My favourite fruit is")  # doctest: +SKIP
    >>> p = judge.probs([" an apple.", " a cherry."], [" a cherry.", " an apple."])  # doctest: +SKIP
    >>> float(p[0] + p[1])  # doctest: +SKIP
    1.0
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: str = DEFAULT_TEMPLATE,
        tokens: Sequence[str] = ("1", "2"),
        *,
        order: str = "both",
        prompt: str = "",
        batch_size: int = 64,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"model must be a causal LM (a torch.nn.Module such as GPT2LMHeadModel), got "
                f"{type(model).__name__}"
            )
        eos, pad = check_tokenizer(tokenizer)
        self.template = _check_template(template)
        if (
            isinstance(tokens, (str, bytes))
            or not isinstance(tokens, Sequence)
            or len(tokens) != 2
            or not all(isinstance(t, str) and t for t in tokens)
        ):
            raise ValueError(
                f"tokens must be two non-empty str (position 1, position 2), got {tokens!r}"
            )
        ids = []
        for t in tokens:
            enc = list(tokenizer(t).input_ids)
            if len(enc) != 1:
                raise ValueError(
                    f"tokens must each encode to exactly one token, got {t!r} -> {len(enc)} tokens {enc}"
                )
            ids.append(int(enc[0]))
        if ids[0] == ids[1]:
            raise ValueError(f"tokens must be two different tokens, got {tokens!r}")
        if order not in JUDGE_ORDERS:
            raise ValueError(f"order must be one of {JUDGE_ORDERS}, got {order!r}")
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.tokens = (str(tokens[0]), str(tokens[1]))
        self.token_ids = (ids[0], ids[1])
        self.order = order
        self.prompt = prompt
        self.batch_size = as_int(batch_size, "batch_size", minimum=1)
        self._pad = pad if pad is not None else eos
        try:  # transformers' causal LMs can skip the LM head on every position but the last
            keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            keep = False
        self._keep_last = {"logits_to_keep": 1} if keep else {}

    # ------------------------------------------------------------------ texts
    def judge_text(self, first: str, second: str, prompt: str | None = None) -> str:
        """The text the model reads for ``first`` in position 1 and ``second`` in position 2."""
        return self.template.format(
            prompt=self.prompt if prompt is None else prompt,
            first=first,
            second=second,
            token1=self.tokens[0].strip(),
            token2=self.tokens[1].strip(),
        )

    def _prompts(self, prompts: Any, n: int) -> list[str]:
        if prompts is None:
            return [self.prompt] * n
        out = _as_texts(prompts, "prompts")
        if len(out) != n:
            raise ValueError(f"prompts must hold one prompt per pair ({n}), got {len(out)}")
        return out

    # ------------------------------------------------------------------ the forward pass
    @torch.no_grad()
    def _answer_logits(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """(n, 2) float64 logits of the two answer tokens and (n,) their next-token mass."""
        encoded = [list(self.tokenizer(t).input_ids) for t in texts]
        for i, ids in enumerate(encoded):
            if not ids:
                raise ValueError(f"the judge text of pair {i} encodes to no token")
        device = model_device(self.model)
        was_training = self.model.training
        self.model.eval()
        logits_out, mass_out = [], []
        try:
            for start in range(0, len(encoded), self.batch_size):
                rows = encoded[start : start + self.batch_size]
                T = max(len(r) for r in rows)
                input_ids = torch.full((len(rows), T), self._pad, dtype=torch.long)  # (B, T)
                attn = torch.zeros((len(rows), T), dtype=torch.long)  # (B, T)
                for b, r in enumerate(rows):  # left padding: the last position is the last token
                    input_ids[b, T - len(r) :] = torch.tensor(r, dtype=torch.long)
                    attn[b, T - len(r) :] = 1
                check_model_inputs(self.model, input_ids, attn, name="judge texts")
                input_ids, attn = to_device((input_ids, attn), device)
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=attn,
                    position_ids=position_ids_from_mask(attn),
                    use_cache=False,
                    **self._keep_last,
                )
                last = out.logits[:, -1, :].to(torch.float64)  # (B, V)
                logits_out.append(last[:, list(self.token_ids)].cpu())  # (B, 2)
                mass_out.append(
                    torch.softmax(last, dim=-1)[:, list(self.token_ids)].sum(dim=-1).cpu()
                )  # (B,)
        finally:
            self.model.train(was_training)
        return torch.cat(logits_out), torch.cat(mass_out)

    def _raw(
        self, list_a: Any, list_b: Any, prompts: Any, both: bool
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """J(a, b) (and J(b, a) when ``both``) with the token masses, from deduplicated texts."""
        a, b = _as_pair_lists(list_a, list_b)
        pr = self._prompts(prompts, len(a))
        forward = [self.judge_text(x, y, p) for x, y, p in zip(a, b, pr)]
        swapped = [self.judge_text(y, x, p) for x, y, p in zip(a, b, pr)] if both else []
        unique = list(dict.fromkeys(forward + swapped))  # first-seen order, deterministic
        if not unique:
            empty = torch.zeros(0, dtype=torch.float64)
            return empty, (empty if both else None), empty, (empty if both else None)
        index = {t: i for i, t in enumerate(unique)}
        logits, mass = self._answer_logits(unique)
        J = torch.sigmoid(logits[:, 0] - logits[:, 1])  # p1 / (p1 + p2), float64
        fwd = torch.tensor([index[t] for t in forward], dtype=torch.long)
        if not both:
            return J[fwd], None, mass[fwd], None
        swp = torch.tensor([index[t] for t in swapped], dtype=torch.long)
        return J[fwd], J[swp], mass[fwd], mass[swp]

    # ------------------------------------------------------------------ the Judge interface
    def raw_probs(self, list_a: Sequence[str], list_b: Sequence[str], *, prompts=None) -> Tensor:
        r"""The raw :math:`J(a_i, b_i)`, ``a_i`` in position 1; float64, shape (n,)."""
        return self._raw(list_a, list_b, prompts, both=False)[0]

    def probs(self, list_a: Sequence[str], list_b: Sequence[str], *, prompts=None) -> Tensor:
        r"""Pr(``list_a[i]`` beats ``list_b[i]``): both orders averaged, or the raw J; (n,) float64.

        Parameters
        ----------
        list_a, list_b : sequence of str, length n
            The completions (empty ones allowed: a sampled completion can be empty).
        prompts : sequence of str, length n, optional
            One prompt per pair for the ``{prompt}`` field; default ``self.prompt`` for all.

        Returns
        -------
        Tensor, shape (n,), float64, on the CPU
            ``order="both"``: :math:`\tfrac12(J(a,b) + 1 - J(b,a))`; a pair and its swap in one
            call sum to 1 exactly. ``order="first"``: :math:`J(a,b)`.

        References
        ----------
        Lee et al., arXiv:2309.00267v3, Sec. 2.1.1 (averaging both orders).
        """
        if self.order == "first":
            return self.raw_probs(list_a, list_b, prompts=prompts)
        j_ab, j_ba, _, _ = self._raw(list_a, list_b, prompts, both=True)
        d = j_ab - j_ba  # d(b, a) == -d(a, b) bit for bit
        half = 0.5 * d.abs()
        # 1/2 + |d|/2 on the winning side, and its exact complement on the other
        return torch.where(d >= 0, 0.5 + half, 1.0 - (0.5 + half))

    def token_mass(self, list_a: Sequence[str], list_b: Sequence[str], *, prompts=None) -> Tensor:
        r"""The next-token mass of the two answer tokens after :math:`t(a_i, b_i)`; (n,) float64.

        :math:`p(t_1) + p(t_2)`: how much of the model's next-token distribution the two answers
        hold (near 0: the model does not "answer" the template, and J is a weak signal).
        """
        return self._raw(list_a, list_b, prompts, both=False)[2]

    def position_bias(
        self, texts_a: Sequence[str], texts_b: Sequence[str], *, prompts=None
    ) -> PositionBias:
        r"""The measured position bias :math:`J(a_i, b_i) + J(b_i, a_i) - 1` of each pair, and summaries.

        Parameters
        ----------
        texts_a, texts_b : sequence of str, length n >= 1
        prompts : sequence of str, optional

        Returns
        -------
        PositionBias
            ``bias`` (n,) float64 (> 0: position 1 favoured; 0 for a judge with
            :math:`J + J^T = 1`), the two raw judgements, their mean, mean absolute value, the
            fraction of consistent verdicts and of pairs where one position wins both orders.

        References
        ----------
        Lee et al., arXiv:2309.00267v3, Sec. 2.1.1; Zheng et al., arXiv:2306.05685v4, Sec. 3.3.
        """
        j_ab, j_ba, _, _ = self._raw(texts_a, texts_b, prompts, both=True)
        if j_ab.numel() == 0:
            raise ValueError("texts_a and texts_b must hold at least one pair")
        bias = j_ab + j_ba - 1.0
        a_wins = (j_ab > 0.5) & (j_ba < 0.5)
        b_wins = (j_ab < 0.5) & (j_ba > 0.5)
        return PositionBias(
            bias=bias,
            j_ab=j_ab,
            j_ba=j_ba,
            mean=float(bias.mean()),
            mean_abs=float(bias.abs().mean()),
            consistent=float((a_wins | b_wins).double().mean()),
            first_both=float(((j_ab > 0.5) & (j_ba > 0.5)).double().mean()),
            second_both=float(((j_ab < 0.5) & (j_ba < 0.5)).double().mean()),
        )
