r"""Log-probabilities of completions under a causal LM, prompt and padding masked, reduction explicit.

A batch is three aligned ``(B, T)`` tensors: ``input_ids`` (prompt, completion and padding, left or
right), ``attention_mask`` (1 on real tokens) and ``completion_mask`` (1 on the completion tokens
that are scored, 0 on prompt and padding). Position ``t`` of the model's output predicts token
``t + 1``; here every per-token tensor is aligned with ``input_ids``: entry ``[b, t]`` is
``log p(input_ids[b, t] | input_ids[b, :t])``, so the same ``completion_mask`` selects it. Position
0 has no prediction and is never part of a completion. An EOS token that ends a completion is
scored like any other token when ``completion_mask`` covers it (``prefopt_toy.lm.data`` does so).

**The reduction is part of the loss, so it has no default.** The sequence log-ratio of the theory
(DPO, IPO, Nash-MD, the exact toy) is the *sum* of token log-probs, ``log pi(y | x)``. TRL's
``DPOTrainer`` with ``loss_type="ipo"`` uses the per-token *mean* instead (TRL PR #1265), whose
optimum is not Azar et al.'s ``mu exp(p / tau)`` (arXiv:2310.12036v2, Eq. (17) sums); TRL's
online trainers sum. ``prefopt_toy.analysis.token_reduction`` works out what the mean does to tau.

Position ids are computed from the attention mask (``cumsum - 1``), so GPT-2's absolute position
embeddings see the same positions whatever the padding side: left and right padding give the same
log-probs (tested).

**Devices.** ``token_logprobs`` and ``completion_logprobs`` move the batch to the model's device
(``data.to_device(batch, data.model_device(model))``) right before the forward pass, and return
on that device; on the CPU the move is a no-op. The CUDA path is written but was not run on a GPU
here.

References
----------
Rafailov et al., arXiv:2305.18290v3 (DPO: summed sequence log-probs); Azar et al.,
arXiv:2310.12036v2 (IPO); TRL https://github.com/huggingface/trl v1.13.0 (``DPOTrainer``
averages for IPO); Radford et al. 2019 (GPT-2).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from .data import check_model_inputs, model_device, to_device

__all__ = [
    "position_ids_from_mask",
    "token_logprobs_from_logits",
    "token_logprobs",
    "reduce_logprobs",
    "completion_logprobs_from_logits",
    "completion_logprobs",
    "TDPOStatistics",
    "tdpo_statistics_from_logits",
]

_REQUIRED = object()  # sentinel: ``reduction`` has no default value


def _check_reduction(reduction) -> str:
    if reduction is _REQUIRED:
        raise ValueError(
            "reduction is required and has no default: pass reduction='sum' (log pi(y|x), the "
            "theory's sequence log-prob) or reduction='mean' (per-token average, TRL's DPOTrainer for IPO)"
        )
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return reduction


def _as_mask(m, name: str, shape: torch.Size) -> Tensor:
    if not isinstance(m, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, T), got {type(m).__name__}")
    if tuple(m.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have the shape of input_ids {tuple(shape)}, got {tuple(m.shape)}"
        )
    if m.dtype != torch.bool:
        if m.is_floating_point() or m.is_complex():
            raise ValueError(f"{name} must be a bool or integer 0/1 tensor, got dtype {m.dtype}")
        if bool(((m != 0) & (m != 1)).any()):
            raise ValueError(f"{name} must hold only 0 and 1")
        m = m != 0
    return m


def _check_batch(input_ids, attention_mask, completion_mask) -> tuple[Tensor, Tensor]:
    """Validate the three (B, T) tensors; return the masks as bool."""
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2:
        raise ValueError(
            f"input_ids must be a 2-D (B, T) tensor, got {getattr(input_ids, 'shape', type(input_ids).__name__)}"
        )
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"input_ids must hold integer token ids (int64), got dtype {input_ids.dtype}"
        )
    if input_ids.shape[0] == 0 or input_ids.shape[1] < 2:
        raise ValueError(
            f"input_ids must have B >= 1 rows and T >= 2 positions, got {tuple(input_ids.shape)}"
        )
    attn = (
        _as_mask(attention_mask, "attention_mask", input_ids.shape)
        if attention_mask is not None
        else None
    )
    comp = _as_mask(completion_mask, "completion_mask", input_ids.shape)
    empty = (~comp.any(dim=1)).nonzero().flatten()
    if empty.numel():
        raise ValueError(
            f"completion_mask is empty (empty completion) in row(s) {empty.tolist()}: every sequence needs >= 1 completion token"
        )
    if bool(comp[:, 0].any()):
        raise ValueError(
            "completion_mask must be 0 at position 0: the first token has no prediction (the prompt must be non-empty)"
        )
    if attn is not None:
        if bool((comp & ~attn).any()):
            raise ValueError(
                "completion_mask must be 0 wherever attention_mask is 0 (a completion token cannot be padding)"
            )
        # The token before each completion token must be real (a prompt or completion token).
        if bool((comp[:, 1:] & ~attn[:, :-1]).any()):
            raise ValueError(
                "completion_mask: every completion token must follow a real token (a non-empty prompt)"
            )
    return attn, comp


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """GPT-2 position ids from a (B, T) attention mask: 0, 1, ... over the real tokens of each row.

    Padding positions get 0 (their outputs are masked anyway). With them, a left-padded row sees
    the positions a right-padded one does.

    References
    ----------
    Radford et al. 2019 (GPT-2: learned absolute position embeddings).

    Examples
    --------
    >>> position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])).tolist()
    [[0, 0, 0, 1, 2], [0, 1, 2, 0, 0]]
    """
    m = attention_mask.long()
    return (m.cumsum(dim=-1) - 1).clamp(min=0) * m  # (B, T)


def _gather_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log_softmax(logits)[..., target] without materialising the (B, T, V) log-softmax.

    logits: (B, T, V); targets: (B, T) -> (B, T) in float32 (float64 stays float64). Low-precision
    logits (bf16/fp16) are upcast one row at a time, so the normaliser is accurate.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        rows = [
            _gather_logprobs(row.float().unsqueeze(0), t.unsqueeze(0))
            for row, t in zip(logits, targets)
        ]
        return torch.cat(rows, dim=0)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(logits, dim=-1)  # (B, T)


def token_logprobs_from_logits(
    logits: Tensor, input_ids: Tensor, completion_mask: Tensor
) -> Tensor:
    """Per-token completion log-probs from a model's logits, aligned with ``input_ids``.

    Parameters
    ----------
    logits : Tensor, shape (B, T, V)
        The model's output for ``input_ids`` (``logits[:, t]`` predicts ``input_ids[:, t + 1]``).
    input_ids : Tensor, shape (B, T)
    completion_mask : Tensor, shape (B, T)
        1 on the scored completion tokens (never at position 0).

    Returns
    -------
    Tensor, shape (B, T)
        ``log p(input_ids[b, t] | input_ids[b, :t])`` where ``completion_mask`` is 1, exactly 0
        elsewhere (also where padding gave non-finite logits). float32 for float32 / bf16 / fp16
        logits, float64 for float64 logits; differentiable.

    References
    ----------
    Radford et al. 2019 (GPT-2 next-token factorisation); Rafailov et al., arXiv:2305.18290v3.
    """
    _, comp = _check_batch(input_ids, None, completion_mask)
    if (
        not isinstance(logits, Tensor)
        or logits.ndim != 3
        or tuple(logits.shape[:2]) != tuple(input_ids.shape)
    ):
        raise ValueError(
            f"logits must have shape (B, T, V) with (B, T) = {tuple(input_ids.shape)}, got {getattr(logits, 'shape', None)}"
        )
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    vocab = logits.shape[-1]
    bad = (input_ids[:, 1:] < 0) | (
        input_ids[:, 1:] >= vocab
    )  # the scored targets index the logits
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"input_ids holds token id {int(input_ids[b, t + 1])} at [{b}, {t + 1}], outside the "
            f"logits' vocabulary [0, {vocab}) (V = logits.shape[-1] = {vocab})"
        )
    lp = _gather_logprobs(logits[:, :-1], input_ids[:, 1:].long())  # (B, T-1): token t+1 given <= t
    lp = torch.cat([torch.zeros_like(lp[:, :1]), lp], dim=1)  # (B, T), aligned with input_ids
    return torch.where(comp, lp, torch.zeros_like(lp))  # where, not *: padding rows may hold NaN


def token_logprobs(
    model, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor
) -> Tensor:
    """Per-token completion log-probs ``(B, T)`` under ``model`` (one forward pass).

    Parameters
    ----------
    model : transformers causal LM (GPT-2)
    input_ids, attention_mask, completion_mask : Tensor, shape (B, T)
        Left or right padding; position ids are derived from ``attention_mask``. Moved to the
        model's device first.

    Returns
    -------
    Tensor, shape (B, T), on the model's device
        As ``token_logprobs_from_logits``: zero outside ``completion_mask``.

    Raises
    ------
    ValueError
        A malformed batch (see ``completion_logprobs``); a token id outside the model's vocabulary
        or a row with more real tokens than the model's positions (``n_positions`` for GPT-2),
        both named with the model's limit (``data.check_model_inputs``).

    References
    ----------
    Radford et al. 2019 (GPT-2); Rafailov et al., arXiv:2305.18290v3.
    """
    if not callable(model):
        raise ValueError(
            f"model must be a causal LM (a torch.nn.Module returning .logits), got {type(model).__name__}"
        )
    if attention_mask is None:
        raise ValueError("attention_mask is required: a (B, T) 0/1 tensor, 1 on real tokens")
    input_ids, attention_mask, completion_mask = to_device(
        (input_ids, attention_mask, completion_mask), model_device(model)
    )
    attn, comp = _check_batch(input_ids, attention_mask, completion_mask)
    check_model_inputs(model, input_ids, attn)  # ids in the vocabulary, rows within the positions
    out = model(
        input_ids=input_ids,
        attention_mask=attn.long(),
        position_ids=position_ids_from_mask(attn),
        use_cache=False,
    )
    return token_logprobs_from_logits(out.logits, input_ids, comp)  # (B, T)


def reduce_logprobs(token_lp: Tensor, completion_mask: Tensor, *, reduction=_REQUIRED) -> Tensor:
    """Per-sequence log-prob from per-token ones: sum or mean over the completion tokens.

    Parameters
    ----------
    token_lp : Tensor, shape (B, T)
    completion_mask : Tensor, shape (B, T)
    reduction : {"sum", "mean"}
        Required, no default (see the module docstring: the theory sums, TRL's DPOTrainer
        averages for IPO).

    Returns
    -------
    Tensor, shape (B,)

    References
    ----------
    Azar et al., arXiv:2310.12036v2; TRL https://github.com/huggingface/trl v1.13.0 (PR #1265).

    Examples
    --------
    >>> lp = torch.tensor([[0.0, -1.0, -2.0], [0.0, 0.0, -3.0]])
    >>> m = torch.tensor([[0, 1, 1], [0, 0, 1]])
    >>> reduce_logprobs(lp, m, reduction="sum").tolist(), reduce_logprobs(lp, m, reduction="mean").tolist()
    ([-3.0, -3.0], [-1.5, -3.0])
    """
    reduction = _check_reduction(reduction)
    if not isinstance(token_lp, Tensor) or token_lp.ndim != 2:
        raise ValueError(
            f"token_lp must be a (B, T) tensor, got {getattr(token_lp, 'shape', None)}"
        )
    comp = _as_mask(completion_mask, "completion_mask", token_lp.shape)
    counts = comp.sum(dim=1)  # (B,)
    if bool((counts == 0).any()):
        raise ValueError(
            f"completion_mask is empty (empty completion) in row(s) {(counts == 0).nonzero().flatten().tolist()}"
        )
    total = torch.where(comp, token_lp, torch.zeros_like(token_lp)).sum(dim=1)  # (B,)
    return total if reduction == "sum" else total / counts.to(total.dtype)


def completion_logprobs_from_logits(
    logits: Tensor, input_ids: Tensor, completion_mask: Tensor, *, reduction=_REQUIRED
) -> Tensor:
    """Per-sequence completion log-probs ``(B,)`` from precomputed logits ``(B, T, V)``.

    Use it to score the reference model once (under ``torch.no_grad()``) and cache the result.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3; Azar et al., arXiv:2310.12036v2.
    """
    reduction = _check_reduction(reduction)
    return reduce_logprobs(
        token_logprobs_from_logits(logits, input_ids, completion_mask),
        completion_mask,
        reduction=reduction,
    )


def completion_logprobs(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    *,
    reduction: Literal["sum", "mean"] = _REQUIRED,  # type: ignore[assignment]
) -> Tensor:
    """Log-probability of each sequence's completion under ``model``, prompt and padding masked.

    Parameters
    ----------
    model : transformers causal LM (GPT-2)
    input_ids : Tensor, shape (B, T)
        Prompt + completion (+ EOS) + padding, left or right padded.
    attention_mask : Tensor, shape (B, T)
        1 on real tokens.
    completion_mask : Tensor, shape (B, T)
        1 on the completion tokens to score, including a final EOS when it belongs to the
        completion; 0 on the prompt and padding. Every row needs at least one completion token.
    reduction : {"sum", "mean"}
        **Required, no default.** ``"sum"`` gives ``log pi(y | x)``, the quantity of the theory
        (DPO's reference code, the exact toy, TRL's online trainers); ``"mean"`` divides by the
        number of completion tokens, as TRL's ``DPOTrainer`` does for ``loss_type="ipo"`` (PR #1265;
        see ``prefopt_toy.analysis.token_reduction``), which changes the optimum. Anything else
        raises ``ValueError``.

    Returns
    -------
    Tensor, shape (B,), on the model's device (the batch is moved there first)
        Differentiable with respect to the model's parameters.

    Raises
    ------
    ValueError
        Missing or unknown ``reduction``; shape mismatch; non-0/1 masks; an empty completion;
        a completion token at position 0 or on padding; a token id outside the model's vocabulary
        or a row longer than the model's positions.

    References
    ----------
    Rafailov et al., arXiv:2305.18290v3 (DPO); Azar et al., arXiv:2310.12036v2 (IPO); TRL
    https://github.com/huggingface/trl v1.13.0; Radford et al. 2019 (GPT-2).
    """
    reduction = _check_reduction(reduction)
    input_ids, attention_mask, completion_mask = to_device(
        (input_ids, attention_mask, completion_mask), model_device(model)
    )
    _, comp = _check_batch(input_ids, attention_mask, completion_mask)
    return reduce_logprobs(
        token_logprobs(model, input_ids, attention_mask, comp), comp, reduction=reduction
    )  # (B,)


# ----------------------------------------------------------------------------- TDPO statistics

_TDPO_CHUNK_ELEMENTS = 1 << 20
"""Elements (positions x vocabulary) of the float32 temporaries of one chunk of TDPO statistics."""


class TDPOStatistics(NamedTuple):
    """Per-sequence statistics of TDPO (``tdpo_statistics_from_logits``), each of shape (B,)."""

    logratio: Tensor
    """:math:`\\sum_t [\\log\\pi(y_t|s_t) - \\log\\mu(y_t|s_t)]` (differentiable in the policy)."""
    seqkl: Tensor
    """:math:`\\sum_t KL(\\mu(\\cdot|s_t) \\| \\pi(\\cdot|s_t))` (differentiable in the policy)."""
    policy_logps: Tensor
    """:math:`\\log\\pi(y|x)`, summed over the completion (differentiable)."""
    ref_logps: Tensor
    """:math:`\\log\\mu(y|x)`, summed over the completion (no gradient)."""


def _chunks(state: Tensor, rows: int):
    """(b, t0, t1) chunks of positions that hold at least one scored state."""
    B, L = state.shape
    scored = state.cpu()  # one transfer, not one synchronisation per chunk on a GPU
    for b in range(B):
        for t0 in range(0, L, rows):
            t1 = min(t0 + rows, L)
            if bool(scored[b, t0:t1].any()):
                yield b, t0, t1


class _TDPOTokenStats(torch.autograd.Function):
    r"""Per-position log pi(y), log mu(y) and KL(mu || pi) over the full vocabulary, chunked.

    forward(logits (B, L, V), ref_logits (B, L, V), targets (B, L), state (B, L) bool, rows int)
    -> (lp_pi, lp_mu, kl), each (B, L), zero where ``state`` is False. Position t holds the
    distributions of state ``s_t`` (the logits at t) and the target ``targets[:, t]``.

    Memory: the forward pass allocates only (B, L) outputs and float64 temporaries of ``rows``
    positions; it saves the two logits tensors themselves (no copy). The backward pass allocates
    the one (B, L, V) gradient of the logits (the output autograd needs) and chunk temporaries;
    both softmaxes are recomputed per chunk. With p = softmax(z), mu = softmax(r), the gradient at
    a scored position is ``g_lp (e_y - p) + g_kl (p - mu)``.

    Precision: every chunk is computed in float64 (one ``log_softmax`` formula for both models, so
    equal logits give a log-ratio and a KL of exactly 0; in float32 the KL of two near-equal
    distributions over 50k tokens would be rounding noise), and the outputs are cast to float32
    for float32 / bf16 / fp16 logits.
    """

    @staticmethod
    def forward(ctx, logits, ref_logits, targets, state, rows):
        B, L, _ = logits.shape
        lp_pi = torch.zeros(B, L, dtype=torch.float64, device=logits.device)
        lp_mu = torch.zeros_like(lp_pi)
        kl = torch.zeros_like(lp_pi)
        for b, t0, t1 in _chunks(state, rows):
            log_pi = torch.log_softmax(logits[b, t0:t1].double(), dim=-1)  # (n, V) chunk
            log_mu = torch.log_softmax(ref_logits[b, t0:t1].double(), dim=-1)
            y = targets[b, t0:t1].unsqueeze(-1)  # (n, 1)
            keep = state[b, t0:t1]  # (n,)
            mu = log_mu.exp()
            # sum_v mu_v (log mu_v - log pi_v); mu_v = 0 terms are exactly 0
            k = torch.where(mu > 0, mu * (log_mu - log_pi), torch.zeros_like(mu)).sum(dim=-1)
            zero = torch.zeros_like(k)
            lp_pi[b, t0:t1] = torch.where(keep, log_pi.gather(-1, y).squeeze(-1), zero)
            lp_mu[b, t0:t1] = torch.where(keep, log_mu.gather(-1, y).squeeze(-1), zero)
            kl[b, t0:t1] = torch.where(keep, k, zero)
        ctx.save_for_backward(logits, ref_logits, targets, state)
        ctx.rows = rows
        out = torch.float64 if logits.dtype == torch.float64 else torch.float32
        lp_pi, lp_mu, kl = lp_pi.to(out), lp_mu.to(out), kl.to(out)
        ctx.mark_non_differentiable(lp_mu)
        return lp_pi, lp_mu, kl

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lp, _g_mu, g_kl):
        logits, ref_logits, targets, state = ctx.saved_tensors
        grad = torch.zeros_like(logits)  # the one (B, L, V) allocation: the gradient itself
        zeros = torch.zeros(state.shape, dtype=torch.float64, device=logits.device)
        g_lp = zeros if g_lp is None else g_lp.double()
        g_kl = zeros if g_kl is None else g_kl.double()
        for b, t0, t1 in _chunks(state, ctx.rows):
            keep = state[b, t0:t1].unsqueeze(-1)  # (n, 1)
            gl = torch.where(keep, g_lp[b, t0:t1].unsqueeze(-1), 0.0)  # (n, 1)
            gk = torch.where(keep, g_kl[b, t0:t1].unsqueeze(-1), 0.0)
            p = torch.softmax(logits[b, t0:t1].double(), dim=-1)  # (n, V) chunk
            mu = torch.softmax(ref_logits[b, t0:t1].double(), dim=-1)
            g = (gk - gl) * p - gk * mu  # g_lp (-p) + g_kl (p - mu)
            g.scatter_add_(-1, targets[b, t0:t1].unsqueeze(-1), gl)  # + g_lp e_y
            grad[b, t0:t1] = torch.where(keep, g, torch.zeros_like(g)).to(grad.dtype)
        return grad, None, None, None, None


def tdpo_statistics_from_logits(
    logits: Tensor,
    ref_logits: Tensor,
    input_ids: Tensor,
    completion_mask: Tensor,
    *,
    chunk_elements: int = _TDPO_CHUNK_ELEMENTS,
) -> TDPOStatistics:
    r"""TDPO's per-sequence statistics: summed log-ratio and sequential KL over the full vocabulary.

    For each row, with the states :math:`s_t = (x, y_{<t})` of the completion tokens ``y_t``
    (``completion_mask``, an EOS included when the mask covers it):

    .. math::
        \mathrm{logratio}(y) = \sum_t \bigl[\log\pi(y_t|s_t) - \log\mu(y_t|s_t)\bigr], \qquad
        \mathrm{SeqKL}(y) = \sum_t \sum_{v \in V} \mu(v|s_t)
            \bigl[\log\mu(v|s_t) - \log\pi(v|s_t)\bigr]

    (reference first, as the official ``_tdpo_get_batch_logps``), which ``losses.token.tdpo_loss``
    takes.

    **Memory.** The direct formula (``log_softmax`` of both models, then ``mu * (log mu - log
    pi)``) forms several more (B, L, V) tensors and keeps some for the backward pass. Here nothing
    of size (B, L, V) is allocated beyond the two logits tensors the caller already holds, except
    the gradient of ``logits`` in the backward pass: positions are processed in chunks of about
    ``chunk_elements / V`` (one row's positions at a time), so the temporaries (the chunk's
    log-softmaxes, in float64) are ``chunk_elements``-sized; autograd saves ``logits`` and
    ``ref_logits`` themselves (no copies), and the backward pass recomputes the chunk's softmaxes.
    Chunks without a completion position (prompt, padding) are skipped. (``tests/lm/test_tdpo.py``
    records every tensor the forward and backward passes allocate and every tensor autograd
    saves, with the direct formula as a positive control.)

    Parameters
    ----------
    logits : Tensor, shape (B, T, V)
        The policy's output for ``input_ids`` (``logits[:, t]`` predicts ``input_ids[:, t + 1]``);
        gradients flow into it (in its dtype).
    ref_logits : Tensor, shape (B, T, V)
        The reference model's output for the same batch (no gradient: detached here).
    input_ids, completion_mask : Tensor, shape (B, T)
        As ``token_logprobs_from_logits``: the scored tokens, never at position 0.
    chunk_elements : int >= 1
        Upper bound on positions x V of one chunk (at least one position per chunk).

    Returns
    -------
    TDPOStatistics
        ``(logratio, seqkl, policy_logps, ref_logps)``, each (B,); float32 for float32 / bf16 /
        fp16 logits, float64 for float64 (computed in float64 either way, so equal logits give
        exactly 0).

    Raises
    ------
    ValueError
        A malformed batch (as ``token_logprobs_from_logits``); ``ref_logits`` not of the shape of
        ``logits`` or not floating; a non-finite logit at a scored position; ``chunk_elements < 1``.

    References
    ----------
    Zeng et al., "Token-level Direct Preference Optimization", arXiv:2404.11999v5, Sec. 4 (the
    sequential KL); official code Vance0124/Token-level-Direct-Preference-Optimization @ 2a736ec,
    ``trainers.py::_tdpo_get_batch_logps`` (per-position KL over the vocabulary, labels != -100).

    Examples
    --------
    >>> z = torch.zeros(1, 2, 3)
    >>> s = tdpo_statistics_from_logits(z, z, torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    >>> float(s.logratio[0]), float(s.seqkl[0])
    (0.0, 0.0)
    """
    _, comp = _check_batch(input_ids, None, completion_mask)
    for name, t in (("logits", logits), ("ref_logits", ref_logits)):
        if not isinstance(t, Tensor) or t.ndim != 3 or tuple(t.shape[:2]) != tuple(input_ids.shape):
            raise ValueError(
                f"{name} must have shape (B, T, V) with (B, T) = {tuple(input_ids.shape)}, got "
                f"{getattr(t, 'shape', None)}"
            )
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    if ref_logits.shape != logits.shape:
        raise ValueError(
            f"ref_logits must have the shape of logits {tuple(logits.shape)}, got "
            f"{tuple(ref_logits.shape)}"
        )
    if ref_logits.device != logits.device:
        raise ValueError(
            f"ref_logits must be on the device of logits ({logits.device}), got {ref_logits.device}"
        )
    if (
        isinstance(chunk_elements, bool)
        or not isinstance(chunk_elements, int)
        or chunk_elements < 1
    ):
        raise ValueError(f"chunk_elements must be an int >= 1, got {chunk_elements!r}")
    vocab = logits.shape[-1]
    targets = input_ids[:, 1:].long()
    bad = (targets < 0) | (targets >= vocab)
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"input_ids holds token id {int(input_ids[b, t + 1])} at [{b}, {t + 1}], outside the "
            f"logits' vocabulary [0, {vocab}) (V = logits.shape[-1] = {vocab})"
        )
    stats = _tdpo_statistics(logits, ref_logits, input_ids, comp, chunk_elements)
    with torch.no_grad():
        for name, t in (("logits", stats.policy_logps), ("ref_logits", stats.ref_logps)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(
                    f"{name} must be finite at the scored positions (a completion token's state), "
                    "but the log-probs hold NaN or inf"
                )
        if not bool(torch.isfinite(stats.seqkl).all()):
            raise ValueError(
                "logits and ref_logits must be finite at the scored positions, but the sequential "
                "KL holds NaN or inf"
            )
    return stats


def _tdpo_statistics(
    logits: Tensor, ref_logits: Tensor, input_ids: Tensor, comp: Tensor, chunk_elements: int
) -> TDPOStatistics:
    """``tdpo_statistics_from_logits`` on a validated batch (bool ``comp``), unchecked output."""
    # state t (the logits at t) is scored when token t + 1 is a completion token
    state = torch.cat([comp[:, 1:], torch.zeros_like(comp[:, :1])], dim=1)  # (B, T)
    targets = input_ids[:, 1:].long()
    targets = torch.cat([targets, torch.zeros_like(targets[:, :1])], dim=1)  # (B, T)
    rows = max(1, chunk_elements // logits.shape[-1])
    lp_pi, lp_mu, kl = _TDPOTokenStats.apply(logits, ref_logits.detach(), targets, state, rows)
    policy, ref = lp_pi.sum(dim=1), lp_mu.sum(dim=1)  # (B,)
    return TDPOStatistics(policy - ref, kl.sum(dim=1), policy, ref)
