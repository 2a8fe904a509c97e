"""Device placement on the GPT-2 side: ``data.to_device`` / ``data.model_device`` and the checks.

No GPU is used here (none on the development machine): the CUDA path of the samplers and the
trainer is written but was not run on a GPU. PyTorch's ``meta`` device stands in for "another
device": tensors really move there (shape and dtype only, no data), so a CPU generator feeding
logits on another device, and judge weights (CPU) meeting a loss on another device, are exercised.
The bitwise-unchanged CPU behaviour is checked by the trainer, sampling and bridge tests (their
oracles are unchanged) and by a before/after run of the whole trainer.
"""

from __future__ import annotations

import copy
from collections import namedtuple

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from prefopt_toy.lm.bridge.run import run_bridge
from prefopt_toy.lm.data import model_device, to_device
from prefopt_toy.lm.judges import CallableJudge
from prefopt_toy.lm.sampling import draw_tokens, sample
from prefopt_toy.lm.train.online import nash_md_pg_surrogate
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer

META = torch.device("meta")


def _tiny_lm(seed: int = 0) -> GPT2LMHeadModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPT2LMHeadModel(
            GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=11, n_positions=32)
        )


# ----------------------------------------------------------------------------- to_device


def test_to_device_moves_every_tensor_of_a_nested_batch_and_keeps_dtypes():
    Pair = namedtuple("Pair", "a b")
    batch = {
        "input_ids": torch.tensor([[1, 2]]),
        "mask": torch.tensor([[True, False]]),
        "w": torch.tensor([0.25], dtype=torch.float64),
        "nested": [torch.zeros(2), (torch.ones(1, dtype=torch.float16), "x")],
        "pair": Pair(torch.zeros(1), 3),
    }
    out = to_device(batch, META)
    assert list(out) == list(batch)
    for key in ("input_ids", "mask", "w"):
        assert (
            out[key].device == META
            and out[key].dtype == batch[key].dtype
            and out[key].shape == batch[key].shape
        )
    assert isinstance(out["nested"], list) and out["nested"][0].device == META
    assert isinstance(out["nested"][1], tuple) and out["nested"][1][0].device == META
    assert out["nested"][1][0].dtype == torch.float16 and out["nested"][1][1] == "x"
    assert isinstance(out["pair"], Pair) and out["pair"].a.device == META and out["pair"].b == 3
    assert batch["input_ids"].device.type == "cpu"  # the input is not modified


def test_to_device_on_the_same_device_returns_the_very_same_tensors():
    t = torch.arange(3)
    assert to_device(t, "cpu") is t
    assert to_device(t, torch.device("cpu")) is t
    a, b = to_device((t, t), "cpu")
    assert a is t and b is t
    assert to_device({"x": t}, "cpu")["x"] is t


@pytest.mark.parametrize("obj", [None, 3, 2.5, "text", ["a", "b"], b"raw"])
def test_to_device_leaves_non_tensors_alone(obj):
    assert to_device(obj, META) == obj
    if not isinstance(obj, list):
        assert to_device(obj, META) is obj


def test_model_device():
    lin = torch.nn.Linear(2, 1)
    assert model_device(lin) == torch.device("cpu")
    assert model_device(copy.deepcopy(lin).to(META)) == META
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters
    assert model_device(object()) == torch.device("cpu")  # not a module


# ----------------------------------------------------------------------------- generators stay on the CPU


def test_draw_tokens_uses_a_cpu_generator_for_logits_on_another_device():
    logp = torch.randn(4, 7, generator=torch.Generator().manual_seed(1)).log_softmax(-1)
    gen = torch.Generator().manual_seed(0)
    token = draw_tokens(logp.to(META), gen)
    assert token.device == META and token.shape == (4, 1) and token.dtype == torch.int64
    # one uniform per row was drawn on the CPU generator, as on the CPU path
    a, b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    draw_tokens(logp, a)
    torch.rand(4, 1, generator=b, dtype=torch.float64)
    assert torch.equal(gen.get_state(), a.get_state()) and torch.equal(a.get_state(), b.get_state())


def test_nash_md_pg_surrogate_moves_the_judge_weights_to_the_loss_device():
    lp = torch.zeros(3, device=META)
    out = nash_md_pg_surrogate(
        lp, torch.zeros(3, device=META), torch.ones(3, dtype=torch.float64), tau=0.1
    )
    assert out.device == META and out.dtype == lp.dtype and out.shape == (3,)


# ----------------------------------------------------------------------------- mismatched devices


def test_trainer_rejects_a_policy_and_a_reference_on_different_devices():
    policy = _tiny_lm()
    ref = copy.deepcopy(policy).to(META)
    judge = CallableJudge(lambda a, b: 0.5)
    cfg = TrainConfig(
        "online_ipo", reduction="sum", tau=0.5, batch_size=2, max_new_tokens=4, max_length=16
    )
    with pytest.raises(ValueError, match=r"model on cpu.*ref_model on meta"):
        Trainer(cfg, policy, ref, tokenizer=None, prompts=["a"], judge=judge)


def test_sample_rejects_a_mixture_of_models_on_different_devices():
    policy = _tiny_lm()
    ref = copy.deepcopy(policy).to(META)
    ids, mask = torch.tensor([[3, 4]]), torch.ones(1, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match="cpu and meta"):
        sample(
            policy,
            ids,
            mask,
            max_new_tokens=2,
            generator=torch.Generator().manual_seed(0),
            eos_token_id=None,
            ref_model=ref,
            mixture=0.5,
        )
    # a single model (mixture 0) never looks at the reference's device
    out = sample(
        policy,
        ids,
        mask,
        max_new_tokens=2,
        generator=torch.Generator().manual_seed(0),
        eos_token_id=None,
        ref_model=ref,
        mixture=0.0,
    )
    assert out.completion_ids.shape == (1, 2) and out.completion_ids.device.type == "cpu"


def test_run_bridge_rejects_a_device_that_is_not_the_given_models():
    model = _tiny_lm()
    with pytest.raises(ValueError, match="device='meta' but the given model is on cpu"):
        run_bridge(
            "online_ipo",
            P=[[0.5, 0.7, 0.2], [0.3, 0.5, 0.8], [0.8, 0.2, 0.5]],
            tau=0.5,
            model=model,
            tokenizer=object(),
            device="meta",
        )
