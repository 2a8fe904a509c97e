"""A tiny, deterministic GPT-2 training run shared by the checkpoint tests (not a test module).

``build`` makes the model, AdamW, a StepLR schedule and two training generators from seeds;
``train`` runs random token batches through a weighted LM loss and checkpoints every
``save_every`` steps, so that a resumed run can be compared bit for bit with a straight one.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from prefopt_toy.lm.train.checkpoint import check_finite, latest_checkpoint, save_checkpoint

VOCAB, BATCH, SEQ = 64, 4, 12


def build(
    *, init_seed: int, data_seed: int, n_embd: int = 16, n_layer: int = 1, dropout: float = 0.0
):
    """A tiny GPT-2 (training mode), its optimizer and scheduler, and the training generators."""
    config = GPT2Config(
        n_layer=n_layer, n_head=2, n_embd=n_embd, vocab_size=VOCAB, n_positions=32,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    # GPT-2's initialisation draws from the global RNG; fork_rng restores it afterwards
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = GPT2LMHeadModel(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    generators = {
        "data": torch.Generator().manual_seed(data_seed),
        "noise": torch.Generator().manual_seed(data_seed + 1),
    }
    return model, optimizer, scheduler, generators


def train(model, optimizer, scheduler, generators, n_steps: int, *, start: int = 0, run_dir=None,
          save_every: int | None = None, inject_nan_at: int | None = None) -> None:  # fmt: skip
    """Random token batches, a weighted LM loss, AdamW and StepLR; checkpoints every ``save_every``.

    With ``run_dir`` every loss goes through ``check_finite`` (``inject_nan_at`` makes one NaN); each
    checkpoint's ``extra`` is ``{"cursor": step * BATCH}``.
    """
    for step in range(start + 1, start + n_steps + 1):
        tokens = torch.randint(0, VOCAB, (BATCH, SEQ), generator=generators["data"])  # (B, T)
        # a second generator, as a sampler would use: a random per-sequence loss weight
        weights = torch.rand(BATCH, generator=generators["noise"])  # (B,)
        logits = model(input_ids=tokens).logits[:, :-1]  # (B, T-1, V)
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1), reduction="none"
        ).reshape(BATCH, SEQ - 1)  # (B, T-1)
        loss = (weights[:, None] * nll).mean()
        if step == inject_nan_at:
            loss = loss * float("nan")
        if run_dir is not None:
            check_finite(loss, step=step, last_good=latest_checkpoint(run_dir))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if run_dir is not None and save_every and step % save_every == 0:
            save_checkpoint(
                run_dir,
                step=step,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                generators=generators,
                extra={"cursor": step * BATCH},
            )
