r"""KTO over 2 CPU processes (gloo on 127.0.0.1) equals KTO in one process on the global batch.

KTO's reference point :math:`z_0` is a statistic of the whole batch (TRL's estimate on the
mismatched completions, Ethayarajh et al., arXiv:2402.01306v4, Sec. 4.1); with several processes
the trainer all-reduces the KL sum and count before the mean. Two worker processes (set up as
``torchrun`` would) build a KTO ``Trainer`` on a float64 tiny GPT-2 whose policy and reference
differ (so :math:`z_0 \ne 0`), with a global batch of 3 (shards of 2 and 1: the mean of the ranks'
means would differ from the global mean), and

- take one step's loss on their shard, back-propagate the scaled loss and all-reduce the gradient;
- run 2 training steps (``train``) and save the weights and the logged metrics.

The parent process runs the same in one process (``ctx=None``) on the same global batch: the
:math:`z_0` (``kl``), the global mean loss, the gradient, the per-side metrics, the final weights
and every logged number agree to 1e-12.
"""

from __future__ import annotations

import json

import pytest
import torch
from _gloo import launch  # tests/_gloo.py

WORLD = 2
INIT_SEED, REF_SEED = 11, 12
PAIRS = [
    {"prompt": "My favourite fruit is", "chosen": " a cherry.", "rejected": " an apple."},
    {"prompt": "For dessert I want", "chosen": " a ripe yellow banana.", "rejected": " a secret."},
    {"prompt": "In the basket there is", "chosen": " a green apple.", "rejected": " cherries."},
]
JOB = dict(
    algorithm="kto",
    reduction="sum",
    beta=0.5,
    batch_size=3,
    steps=2,
    lr=1e-3,
    max_length=40,
    seed=7,
    kto_reference_point="unclamped",
)


def make_model(seed: int):
    """A randomly initialised tiny GPT-2 in float64, without touching the global RNG."""
    from transformers import GPT2LMHeadModel

    from prefopt_toy.lm.models.gpt2 import gpt2_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(gpt2_config("tiny"))
    return model.to(torch.float64).eval()


WORKER = r"""
import json, sys
from pathlib import Path
import torch
from safetensors.torch import save_file
sys.path[:0] = [sys.argv[2], str(Path(sys.argv[2]) / "lm" / "train")]
from test_kto_parallel import INIT_SEED, JOB, PAIRS, REF_SEED, make_model
from prefopt_toy.lm import distributed as D
from prefopt_toy.lm.data import unpair_preference_examples
from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer
from prefopt_toy.lm.train.parallel import local_rows, loss_scale
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer, train

out = Path(sys.argv[1])
ctx = D.init_process_group(D.DistributedContext.from_env(), backend="gloo", timeout=120)
tok, r = gpt2_tokenizer(), ctx.rank
data = unpair_preference_examples(PAIRS)
result = {}
policy, ref = make_model(INIT_SEED + 100 * r), make_model(REF_SEED + 100 * r)
trainer = Trainer(TrainConfig(**JOB), policy, ref, tok, dataset=data, ctx=ctx)
rows = trainer.next_indices()
mine = local_rows(rows, ctx)
loss, metrics = trainer.offline_loss(mine)
(loss * loss_scale(len(mine), JOB["batch_size"], ctx)).backward()
D.all_reduce_gradients(trainer.model, ctx)
save_file({k: p.grad.clone() for k, p in trainer.model.named_parameters()}, str(out / f"grad-rank{r}.safetensors"))
m = D.all_reduce_metrics({"loss": loss.detach(), **metrics}, ctx, weight=float(len(mine)))
result["rows"], result["step0"] = rows, {k: float(v) for k, v in m.items()}
policy, ref = make_model(INIT_SEED + 100 * r), make_model(REF_SEED + 100 * r)
result["history"] = train(TrainConfig(**JOB), policy, ref, tok, dataset=data, ctx=ctx)["history"]
save_file({k: v.detach().clone() for k, v in policy.state_dict().items()}, str(out / f"weights-rank{r}.safetensors"))
(out / f"result-rank{r}.json").write_text(json.dumps(result))
D.destroy_process_group(ctx)
"""


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("kto_two_ranks")
    launch(WORKER, out, world=WORLD, timeout=300)
    return out, [json.loads((out / f"result-rank{r}.json").read_text()) for r in range(WORLD)]


def test_two_process_kto_equals_one_process_on_the_global_batch(ranks):
    from safetensors.torch import load_file

    from prefopt_toy.lm.data import unpair_preference_examples
    from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer
    from prefopt_toy.lm.train.trainer import TrainConfig, Trainer, train

    out, results = ranks
    tok, data = gpt2_tokenizer(), unpair_preference_examples(PAIRS)
    trainer = Trainer(
        TrainConfig(**JOB), make_model(INIT_SEED), make_model(REF_SEED), tok, dataset=data
    )
    rows = trainer.next_indices()
    assert results[0]["rows"] == results[1]["rows"] == rows
    loss, metrics = trainer.offline_loss(rows)
    loss.backward()
    want = {"loss": float(loss.detach()), **{k: float(v) for k, v in metrics.items()}}
    assert abs(want["kl"]) > 1e-3  # the policy is not the reference: z0 is not trivially 0
    # TRL's mean of the per-process means would differ with shards of 2 and 1
    for r in range(WORLD):
        got = results[r]["step0"]
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=0, abs=1e-12), (r, k)
        grads = load_file(str(out / f"grad-rank{r}.safetensors"))
        for name, p in trainer.model.named_parameters():
            torch.testing.assert_close(grads[name], p.grad, rtol=0, atol=1e-12, msg=name)

    policy = make_model(INIT_SEED)
    history = train(TrainConfig(**JOB), policy, make_model(REF_SEED), tok, dataset=data)["history"]
    for r in range(WORLD):
        got = results[r]["history"]
        assert [g["step"] for g in got] == [h["step"] for h in history] == [1, 2]
        for g, h in zip(got, history):
            assert g.keys() == h.keys()
            for k in h:
                assert g[k] == pytest.approx(h[k], rel=0, abs=1e-12), (r, h["step"], k)
        weights = load_file(str(out / f"weights-rank{r}.safetensors"))
        for k, v in policy.state_dict().items():
            torch.testing.assert_close(weights[k], v, rtol=0, atol=1e-12, msg=k)


def test_the_global_z0_is_not_the_mean_of_the_shard_means(ranks):
    """The oracle's z0 is the mean over the 3 rows; with shards of 2 and 1, TRL's mean of means differs."""
    from prefopt_toy.lm.data import unpair_preference_examples
    from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer
    from prefopt_toy.lm.train.trainer import TrainConfig, Trainer

    _, results = ranks
    tok, data = gpt2_tokenizer(), unpair_preference_examples(PAIRS)
    trainer = Trainer(
        TrainConfig(**JOB), make_model(INIT_SEED), make_model(REF_SEED), tok, dataset=data
    )
    rows = trainer.next_indices()
    shard_z0 = [float(trainer.offline_loss(part)[1]["kl"]) for part in (rows[:2], rows[2:])]
    full = float(trainer.offline_loss(rows)[1]["kl"])
    assert full == pytest.approx((2 * shard_z0[0] + shard_z0[1]) / 3, abs=1e-12)
    assert abs(full - sum(shard_z0) / 2) > 1e-6  # TRL's gather-of-means estimate
    assert results[0]["step0"]["kl"] == pytest.approx(full, abs=1e-12)
