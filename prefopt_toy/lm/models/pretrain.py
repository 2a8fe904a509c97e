"""Training a GPT-2 from scratch on a list of lines: ``train_lm`` and the recipes ``default_model`` uses.

``train_lm`` trains a tied-embedding GPT-2 in place by next-token cross-entropy over the full
50 257-token vocabulary, computed exactly and cheaply by letting the tokens absent from the corpus
share one embedding row; ``TrainingRecipe`` / ``RECIPES`` give the AdamW step counts, batch sizes
and learning rates with which ``prefopt_toy.lm.models.gpt2.default_model`` trains the tiny and small
sizes.

References: as :mod:`prefopt_toy.lm.models.gpt2`, the module this one was split from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .tokenizer import EOS_TOKEN_ID

__all__ = ["RECIPES", "TrainingRecipe", "train_lm"]


@dataclass(frozen=True)
class TrainingRecipe:
    """How ``default_model`` trains a size: AdamW steps of next-token cross-entropy on the corpus.

    References
    ----------
    Loshchilov & Hutter, arXiv:1711.05101 (AdamW); Radford et al. 2019 (GPT-2).
    """

    steps: int
    batch_size: int
    lr: float
    n_lifted: int = 2000
    n_sentiment: int = 1000


RECIPES: dict[str, TrainingRecipe] = {
    "tiny": TrainingRecipe(steps=200, batch_size=16, lr=5e-3),
    "small": TrainingRecipe(steps=1200, batch_size=32, lr=1e-3),
}


def _encode_lines(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each line followed by EOS (the model learns to stop after a sentence)."""
    return [tokenizer(t).input_ids + [EOS_TOKEN_ID] for t in texts]


def _shared_unused_nll(h, targets_used, emb_used, emb_unused, n_unused: int):
    """Exact full-vocabulary next-token NLL when every unused token row equals ``emb_unused``.

    h: (N, C) final hidden states; targets_used: (N,) indices into the used-token table;
    emb_used: (U, C); emb_unused: (C,); n_unused = V - U tokens share the row ``emb_unused``.
    log Z = logsumexp(h @ emb_used.T, h @ emb_unused + log n_unused), equal to the logsumexp over
    all V logits of a model whose unused rows all equal ``emb_unused``.
    """
    logits_used = h @ emb_used.T  # (N, U)
    logit_unused = (h @ emb_unused + math.log(n_unused)).unsqueeze(-1)  # (N, 1)
    log_z = torch.logsumexp(torch.cat([logits_used, logit_unused], dim=-1), dim=-1)  # (N,)
    return log_z - logits_used.gather(-1, targets_used.unsqueeze(-1)).squeeze(-1)  # (N,)


def train_lm(
    model, tokenizer, texts: list[str], *, steps: int, batch_size: int, lr: float, seed: int
) -> list[float]:
    """Train a GPT-2 in place on ``texts`` (each line + EOS) by next-token cross-entropy; deterministic.

    Every line is one sequence starting at position 0, as prompts are at sampling time. Batches are
    drawn from a ``torch.Generator`` seeded with ``seed`` (epochs of random permutations); the
    optimiser is AdamW (no weight decay). Tokens that never occur in ``texts`` share one embedding
    row during training (initialised to zero), which makes the full 50 257-way softmax cheap to
    compute exactly: the unused tokens contribute ``n_unused * exp(h . e_unused)`` to every
    normaliser. After training the row is written to every unused token, so the result is an
    ordinary GPT-2 whose loss on ``texts`` is the full-vocabulary cross-entropy that was minimised.
    Dropout should be off (``tiny`` / ``small`` configurations): training then uses no global RNG.

    Parameters
    ----------
    model : transformers.GPT2LMHeadModel
        Tied input/output embeddings (GPT-2's default).
    tokenizer : GPT-2 tokenizer
    texts : list of str
        Training lines (non-empty).
    steps, batch_size : int
        Positive.
    lr : float
        AdamW learning rate.
    seed : int
        Seed of the batch sampler.

    Returns
    -------
    list of float
        The mean training loss (nats per token) of every step.

    References
    ----------
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2);
    Loshchilov & Hutter, arXiv:1711.05101 (AdamW).
    """
    for name, val in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not texts:
        raise ValueError("texts must not be empty")
    wte = model.transformer.wte.weight
    if model.lm_head.weight is not wte:
        raise ValueError("model must tie its input and output embeddings (GPT-2's default)")
    n_pos = model.config.n_positions
    seqs = _encode_lines(tokenizer, texts)
    longest = max(len(s) for s in seqs)
    if longest > n_pos:
        raise ValueError(
            f"texts hold a line of {longest} tokens, more than the model's n_positions={n_pos}"
        )

    device, dtype = wte.device, wte.dtype
    used = sorted({t for s in seqs for t in s})
    remap = torch.full((wte.shape[0],), -1, dtype=torch.long)
    remap[torch.tensor(used)] = torch.arange(len(used))
    n_unused = wte.shape[0] - len(used)
    # All sequences padded to one (N_lines, L) table of used-token indices; lengths kept apart.
    lengths = torch.tensor([len(s) for s in seqs])
    table = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        table[i, : len(s)] = remap[torch.tensor(s)]

    emb_used = torch.nn.Parameter(wte.detach()[torch.tensor(used)].clone())  # (U, C)
    emb_unused = torch.nn.Parameter(torch.zeros(wte.shape[1], dtype=dtype, device=device))  # (C,)
    others = [p for n, p in model.named_parameters() if p is not wte]
    opt = torch.optim.AdamW([emb_used, emb_unused, *others], lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(len(seqs), generator=gen), 0
    losses: list[float] = []
    model.train()
    for _ in range(steps):
        if cursor + batch_size > len(seqs):
            order, cursor = torch.randperm(len(seqs), generator=gen), 0
        rows = order[cursor : cursor + batch_size]
        cursor += batch_size
        lens = lengths[rows]  # (B,)
        t_max = int(lens.max())
        ids = table[rows, :t_max].to(device)  # (B, T) used-token indices, right-padded
        mask = (torch.arange(t_max).unsqueeze(0) < lens.unsqueeze(1)).to(device)  # (B, T)
        pos = torch.arange(t_max, device=device).unsqueeze(0).expand_as(ids)  # (B, T)
        hidden = model.transformer(
            inputs_embeds=emb_used[ids],
            attention_mask=mask.long(),
            position_ids=pos,
            use_cache=False,
        ).last_hidden_state  # (B, T, C)
        valid = mask[:, 1:]  # (B, T-1): position t predicts token t+1
        h = hidden[:, :-1][valid]  # (N, C)
        targets = ids[:, 1:][valid]  # (N,)
        loss = _shared_unused_nll(h, targets, emb_used, emb_unused, n_unused).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        wte.copy_(emb_unused.detach().unsqueeze(0).expand_as(wte))
        wte[torch.tensor(used, device=device)] = emb_used.detach()
    model.eval()
    return losses
