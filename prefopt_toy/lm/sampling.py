r"""Sampling completions with KV caches: the policy, the reference, and their token-level mixture.

The online algorithms need completions from three distributions:

- the policy :math:`\pi_\theta` (online DPO/IPO, Nash-MD-PG),
- the reference :math:`\mu`,
- the token-level geometric mixture of the two (IPO-MD samples both completions from it, Nash-MD
  compares against it). Per token, with raw logits :math:`z`,

  .. math:: \log \hat\pi_m(\cdot \mid x, y_{<n})
            = \operatorname{log\_softmax}\big(m\, z_\mu + (1 - m)\, z_\theta\big),

  i.e. the normalised :math:`\pi_\theta^{1-m}\mu^m` at every step (Munos et al.,
  arXiv:2312.00886v4, App. F.1). ``mixture`` = m is the weight on the **reference**, as TRL's
  ``GeometricMixtureWrapper(mixture_coef=...)``; m = 0 is the policy, m = 1 the reference.

Each model keeps its own KV cache (a ``DynamicCache`` passed under the name the model's
``forward`` takes: ``cache`` from transformers 5.25, ``past_key_values`` before; see
``_cache_keyword``), so one step costs one new-token forward pass per model, where TRL's wrapper
recomputes the whole sequence (no cache).
Randomness comes only from an explicit ``torch.Generator`` (one uniform per row and step, turned
into a token by ``draw_tokens``: inversion of the float64 CDF), so a seed fixes the completions. Prompts are left-padded; position ids come from the attention mask.

Devices: the prompts are moved to the model's device (``data.model_device``, ``data.to_device``)
and the completions are returned there; the generator stays where it is (normally the CPU): the
uniforms are drawn on the generator's device and then moved to the logits' device, so the draws
are the same whatever device the model is on. The CUDA path is written but was not run on a GPU
here.

References
----------
Munos et al., arXiv:2312.00886v4, App. F.1; Calandriello et al., arXiv:2403.08635v1, Sec. 5
(IPO-MD); TRL v1.13.0 ``trl/experimental/nash_md/nash_md_trainer.py`` (``GeometricMixtureWrapper``),
https://github.com/huggingface/trl; Radford et al. 2019, "Language Models are Unsupervised
Multitask Learners" (GPT-2).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float, as_unit_interval

from .data import check_model_inputs, model_device, model_limits, to_device

__all__ = ["Samples", "draw_tokens", "geometric_mixture_logprobs", "sample"]


def draw_tokens(logp: Tensor, generator: torch.Generator) -> Tensor:
    r"""One token per row from ``softmax(logp)``, by inverting the CDF with one uniform per row.

    With :math:`F_i = \sum_{j \le i} p_j` (float64) and :math:`u \sim U[0, 1)` from ``generator``,
    the token is the smallest :math:`i` with :math:`F_i > u F_V`, so token :math:`i` is drawn with
    probability :math:`p_i / F_V` (tokens of probability 0 never). Same law as
    ``torch.multinomial(p, 1)``, about 5x faster on a 50 257-token vocabulary (measured on CPU:
    15 ms against 83 ms for 32 rows).

    Parameters
    ----------
    logp : Tensor, shape (B, V)
        Log-probabilities (normalised or not; ``-inf`` allowed, not in every entry of a row).
    generator : torch.Generator
        Usually on the CPU: the uniforms are drawn on its device, then moved to ``logp``'s
        device (the CUDA path is written but was not run on a GPU here).

    Returns
    -------
    Tensor, shape (B, 1), int64, on ``logp``'s device

    References
    ----------
    Devroye, *Non-Uniform Random Variate Generation* (1986), Sec. III.2 (sequential inversion).
    """
    cdf = (
        (logp.to(torch.float64) - logp.max(dim=-1, keepdim=True).values.to(torch.float64))
        .exp()
        .cumsum(-1)
    )
    total = cdf[:, -1:].contiguous()  # (B, 1)
    u = torch.rand(
        logp.shape[0], 1, generator=generator, dtype=torch.float64, device=generator.device
    )
    u = u.to(cdf.device)  # drawn where the generator lives, used where the logits are
    token = torch.searchsorted(cdf, u * total, right=True)  # (B, 1)
    # u * total may round up to total: fall back to the last token of positive probability
    last = torch.searchsorted(cdf, total, right=False)
    return torch.minimum(token, last)


def geometric_mixture_logprobs(policy_logits: Tensor, ref_logits: Tensor, mixture: float) -> Tensor:
    r"""Per-token log-probs of the geometric mixture :math:`\pi^{1-m}\mu^m`, normalised.

    .. math:: \operatorname{log\_softmax}\big(m\, z_\mu + (1 - m)\, z_\pi\big)

    Parameters
    ----------
    policy_logits, ref_logits : Tensor, shape (..., V)
        Raw next-token logits of the policy and the reference (same shape).
    mixture : float in [0, 1]
        Weight m on the **reference** (TRL's ``mixture_coef``; beta in Munos et al.).

    Returns
    -------
    Tensor, shape (..., V)
        Log-probabilities, in float32 at least (bf16/fp16 logits are upcast before mixing).

    Notes
    -----
    Mixing raw logits and normalising once is exact: the policy's and the reference's own
    log-normalisers are constant over the vocabulary and cancel in the final log-softmax.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, App. F.1; TRL v1.13.0 ``GeometricMixtureWrapper.forward``.

    Examples
    --------
    >>> z_pi, z_mu = torch.tensor([0.0, 2.0]), torch.tensor([2.0, 0.0])
    >>> geometric_mixture_logprobs(z_pi, z_mu, 0.5).exp()
    tensor([0.5000, 0.5000])
    """
    if not isinstance(policy_logits, Tensor) or not isinstance(ref_logits, Tensor):
        raise ValueError("policy_logits and ref_logits must be tensors")
    if policy_logits.shape != ref_logits.shape:
        raise ValueError(
            f"policy_logits and ref_logits must have the same shape, got {tuple(policy_logits.shape)} "
            f"and {tuple(ref_logits.shape)}"
        )
    m = as_unit_interval(mixture, "mixture")
    dtype = torch.promote_types(
        torch.promote_types(policy_logits.dtype, ref_logits.dtype), torch.float32
    )
    mixed = m * ref_logits.to(dtype) + (1.0 - m) * policy_logits.to(dtype)  # (..., V)
    return F.log_softmax(mixed, dim=-1)


@dataclass(frozen=True)
class Samples:
    """Completions drawn by :func:`sample`.

    All tensors have shape (B, N) with N <= ``max_new_tokens`` (generation stops once every row
    has produced EOS).
    """

    completion_ids: Tensor
    """(B, N) int64 sampled tokens; after a row's first EOS, ``pad_token_id``."""
    completion_mask: Tensor
    """(B, N) int64, 1 up to and including the first EOS, 0 after (TRL's ``truncate_right``)."""
    logps: Tensor
    """(B, N) float log-prob of each sampled token under the sampling distribution (mixture and
    temperature applied), 0 where the mask is 0. No gradient."""


def _cache_keyword(model: torch.nn.Module) -> str:
    """The keyword under which ``model.forward`` takes its KV cache.

    transformers 5.25 renamed ``past_key_values`` to ``cache`` (the old name warns until its removal
    in 5.40); a model written against either release, or a user's own module, is asked rather than
    assumed. Raises ``ValueError`` when ``forward`` takes neither name.
    """
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise ValueError(
        f"model: {type(model).__name__}.forward takes no KV cache (neither `cache` nor "
        "`past_key_values`); sample() needs a causal LM with a KV cache"
    )


def _output_cache(out: Any) -> Any:
    """The cache a forward pass returned, read without touching deprecated attribute names."""
    keys = out.keys() if hasattr(out, "keys") else ()
    return out["cache"] if "cache" in keys else out["past_key_values"]


@contextlib.contextmanager
def _eval_mode(*models: torch.nn.Module) -> Iterator[None]:
    """Switch models to eval (no dropout) for the block, then restore each module's flag."""
    flags = [[(mod, mod.training) for mod in model.modules()] for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for per_model in flags:
            for mod, was_training in per_model:
                mod.training = was_training


def _check_prompts(input_ids: Any, attention_mask: Any) -> None:
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.int64:
        raise ValueError("input_ids must be an int64 tensor of shape (B, T)")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be non-empty, got shape {tuple(input_ids.shape)}")
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must be a tensor of the shape of input_ids {tuple(input_ids.shape)}, got "
            f"{tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__}"
        )
    mask = attention_mask.to(torch.int64)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 and 1")
    if not bool((mask[:, -1] == 1).all()):
        raise ValueError(
            "attention_mask: every prompt must end with a real token (prompts are left-padded)"
        )
    if not bool((mask[:, 1:] >= mask[:, :-1]).all()):
        raise ValueError("attention_mask must be left-padded: no 0 after a 1 in a row")


def _check_runners(
    runners: list[Any],
    names: list[str],
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
) -> None:
    """Check that the models that will run can take the prompts.

    They must be modules with one vocabulary, the ids and special ids inside it, and every prompt
    plus ``max_new_tokens`` within their positions.
    """
    vocabs = []
    for lm, name in zip(runners, names):
        if not isinstance(lm, torch.nn.Module):
            raise ValueError(
                f"{name} must be a causal LM (a torch.nn.Module with a KV cache), got {type(lm).__name__}"
            )
        check_model_inputs(
            lm, input_ids, attention_mask, new_tokens=max_new_tokens, model_name=name
        )
        vocab = model_limits(lm).vocab_size
        vocabs.append(vocab)
        for key, value in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
            if vocab is not None and value is not None and value >= vocab:
                raise ValueError(
                    f"{key} = {value} is outside {name}'s vocabulary [0, {vocab}) "
                    f"(vocab_size={vocab}): was the tokenizer made for another model?"
                )
    if len(vocabs) == 2 and None not in vocabs and vocabs[0] != vocabs[1]:
        raise ValueError(
            f"model and ref_model must share one vocabulary to be mixed, got vocab_size "
            f"{vocabs[0]} and {vocabs[1]}"
        )


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    max_new_tokens: int,
    generator: torch.Generator,
    eos_token_id: int | None,
    pad_token_id: int | None = None,
    temperature: float = 1.0,
    ref_model: torch.nn.Module | None = None,
    mixture: float = 0.0,
) -> Samples:
    r"""Sample completions from the policy, or from its token-level mixture with a reference.

    At each step the next token is drawn from
    ``softmax(log_softmax(m * z_ref + (1 - m) * z_policy) / temperature)``, with one
    ``draw_tokens(logp, generator)`` call (CDF inversion) for the whole batch. Each model runs
    with its own KV cache, one new token per step.

    Parameters
    ----------
    model : transformers causal LM (e.g. ``GPT2LMHeadModel``)
        The policy. Used in eval mode for the call (dropout off); its training flag is restored.
    input_ids : Tensor, shape (B, T), int64
        Left-padded prompts, on any device: they are moved to the models' device
        (``next(model.parameters()).device``).
    attention_mask : Tensor, shape (B, T)
        1 on prompt tokens, 0 on left padding.
    max_new_tokens : int >= 1
        Most tokens generated per prompt.
    generator : torch.Generator
        The only randomness; keep it on the CPU (uniforms are drawn there and moved to the
        models' device, so a seed gives the same draws on every device).
    eos_token_id : int or None
        End of sequence; ``None`` generates exactly ``max_new_tokens`` tokens.
    pad_token_id : int, optional
        Written after a row's EOS; defaults to ``eos_token_id`` (or 0 when that is ``None``).
    temperature : float > 0, default 1.0
        Applied after mixing, as TRL applies its generation temperature to the wrapper's output.
    ref_model : causal LM, optional
        The reference; required when ``mixture > 0``.
    mixture : float in [0, 1], default 0.0
        Weight on the reference: 0 samples the policy (``ref_model`` unused), 1 the reference
        (``model`` unused).

    Returns
    -------
    Samples
        ``completion_ids``, ``completion_mask`` and ``logps``, each (B, N), N <= max_new_tokens,
        on the models' device.

    Raises
    ------
    ValueError
        Bad shapes, a mask that is not left padding, ``mixture`` outside [0, 1] or > 0 without
        ``ref_model``, non-positive ``temperature`` or ``max_new_tokens``, no generator, or a
        policy and a reference (both used) on different devices or with different vocabularies; a
        prompt token, ``eos_token_id`` or ``pad_token_id`` outside a used model's vocabulary; a
        prompt whose length plus ``max_new_tokens`` exceeds a used model's positions
        (``n_positions`` for GPT-2). Each message names the argument and the model's limit.

    Notes
    -----
    Position ids are ``cumsum(attention_mask) - 1``, so a left-padded prompt sees the same
    positions as when it is alone. Rows that have finished keep being fed (their tokens are
    replaced by ``pad_token_id`` and masked) so that every step draws the same amount of
    randomness, whatever the batch.

    References
    ----------
    Munos et al., arXiv:2312.00886v4, App. F.1 (the per-token geometric mixture); TRL v1.13.0
    ``GeometricMixtureWrapper`` (the same distribution, sampled there without a KV cache).

    Examples
    --------
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> with torch.random.fork_rng():
    ...     _ = torch.manual_seed(0)
    ...     lm = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=11, n_positions=16))
    >>> out = sample(lm, torch.tensor([[3, 4]]), torch.ones(1, 2, dtype=torch.int64), max_new_tokens=5,
    ...              generator=torch.Generator().manual_seed(0), eos_token_id=None)
    >>> tuple(out.completion_ids.shape), out.completion_mask.tolist()
    ((1, 5), [[1, 1, 1, 1, 1]])
    """
    _check_prompts(input_ids, attention_mask)
    max_new_tokens = as_int(max_new_tokens, "max_new_tokens", minimum=1)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if eos_token_id is not None:
        eos_token_id = as_int(eos_token_id, "eos_token_id", minimum=0)
    if pad_token_id is None:
        pad_token_id = 0 if eos_token_id is None else eos_token_id
    pad_token_id = as_int(pad_token_id, "pad_token_id", minimum=0)
    temperature = as_positive_float(temperature, "temperature")
    m = as_unit_interval(mixture, "mixture")
    if m > 0 and ref_model is None:
        raise ValueError(f"mixture = {m} > 0 needs a ref_model")
    # the model with weight 0 is not run at all
    runners = [model] if m == 0 else [ref_model] if m == 1 else [model, ref_model]
    names = ["model"] if m == 0 else ["ref_model"] if m == 1 else ["model", "ref_model"]
    _check_runners(
        runners,
        names,
        input_ids,
        attention_mask,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    device = model_device(runners[0])
    if len(runners) == 2 and model_device(runners[1]) != device:
        raise ValueError(
            f"model and ref_model must be on one device, got {device} and {model_device(runners[1])}"
        )
    input_ids, attention_mask = to_device(
        (input_ids, attention_mask), device
    )  # no-op when already there

    B = input_ids.shape[0]
    mask = attention_mask.to(torch.int64)  # (B, T)
    cache_keys = [_cache_keyword(lm) for lm in runners]
    caches: list[Any] = [None] * len(runners)
    step_ids = input_ids  # (B, T) then (B, 1)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
    finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    tokens, logps, masks = [], [], []
    with _eval_mode(*runners):
        for _ in range(max_new_tokens):
            logits = []
            for i, lm in enumerate(runners):
                out = lm(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=position_ids,
                    use_cache=True,
                    **{cache_keys[i]: caches[i]},
                )
                caches[i] = _output_cache(out)
                logits.append(out.logits[:, -1, :])  # (B, V)
            if len(runners) == 1:
                dtype = torch.promote_types(logits[0].dtype, torch.float32)
                logp_next = F.log_softmax(logits[0].to(dtype), dim=-1)  # (B, V)
            else:
                logp_next = geometric_mixture_logprobs(logits[0], logits[1], m)  # (B, V)
            # temperature after mixing: softmax(log_softmax(z) / T) == softmax(z / T)
            logp_next = F.log_softmax(logp_next / temperature, dim=-1)  # (B, V)
            token = draw_tokens(logp_next, generator)  # (B, 1)
            alive = ~finished  # (B,)
            logps.append(torch.where(alive, logp_next.gather(-1, token).squeeze(-1), 0.0))
            masks.append(alive.to(torch.int64))
            token = torch.where(alive[:, None], token, pad_token_id)  # (B, 1)
            tokens.append(token.squeeze(-1))
            if eos_token_id is not None:
                finished = finished | (token.squeeze(-1) == eos_token_id)
                if bool(finished.all()):
                    break
            step_ids = token
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (B, T + n)
            position_ids = position_ids[:, -1:] + 1  # (B, 1)
    return Samples(
        completion_ids=torch.stack(tokens, dim=1),
        completion_mask=torch.stack(masks, dim=1),
        logps=torch.stack(logps, dim=1),
    )
