"""Data parallelism: 2 CPU processes (gloo on 127.0.0.1) give the single-process gradient.

The parent process computes, on the whole global batch of 4 preference pairs, the gradient of the
mean DPO loss of a tiny float64 GPT-2 with plain autograd (no ``prefopt_toy.lm.distributed``), and
one SGD step from it. Two worker processes (launched as ``torchrun`` would: ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` in the environment) each start from a *different*
random initialisation, take rank 0's weights through ``broadcast_module``, compute the mean loss on
their own shard, back-propagate and call ``all_reduce_gradients``; both write their gradients and
weights after one SGD step to safetensors files. No network beyond 127.0.0.1, nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _gloo import launch  # tests/_gloo.py

from prefopt_toy.lm.distributed import (
    DistributedContext,
    all_gather_generator_states,
    all_reduce_gradients,
    all_reduce_metrics,
    any_rank,
    broadcast_module,
    same_on_all_ranks,
    seed_generators,
    shard,
    shard_bounds,
    trainer_generators,
)

ROOT = Path(__file__).resolve().parents[3]
WORLD = 2
BETA = 0.1
LR = 0.5
POLICY_SEED = 11
REF_SEED = 23

PAIRS = [
    {"prompt": "The film was", "chosen": " a quiet delight.", "rejected": " dull."},
    {"prompt": "I ate", "chosen": " an apple.", "rejected": " a very ripe banana today."},
    {"prompt": "This movie", "chosen": " moved me deeply.", "rejected": " was too long and slow."},
    {"prompt": "My favourite fruit is", "chosen": " the cherry.", "rejected": " grapes."},
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _model(seed: int, vocab: int):
    """A tiny float64 GPT-2, initialised from ``seed`` without touching the global RNG."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=16,
        vocab_size=vocab,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    return model.to(torch.float64).eval()


def _dpo_mean_loss(policy, ref, batch):
    """Mean DPO loss (summed log-probs, beta 0.1) over the rows of ``batch``, and its metrics."""
    from prefopt_toy.lm.logprobs import completion_logprobs
    from prefopt_toy.lm.objectives import preference_loss

    def logps(model, side):
        return completion_logprobs(
            model,
            batch[f"{side}_input_ids"],
            batch[f"{side}_attention_mask"],
            batch[f"{side}_completion_mask"],
            reduction="sum",
        )  # (B,)

    with torch.no_grad():
        rc, rr = logps(ref, "chosen"), logps(ref, "rejected")
    losses, metrics = preference_loss(
        logps(policy, "chosen"),
        logps(policy, "rejected"),
        rc,
        rr,
        loss="dpo",
        reduction="sum",
        beta=BETA,
    )  # (B,)
    return losses.mean(), metrics


# Run in each worker process: ``python -c WORKER <out_dir> <tests_dir>``.
WORKER = r"""
import sys
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
sys.path[:0] = [sys.argv[2], str(Path(sys.argv[2]) / "lm" / "distributed")]
from test_distributed import LR, POLICY_SEED, REF_SEED, _dpo_mean_loss, _model
from prefopt_toy.lm import distributed as D

out = Path(sys.argv[1])
ctx = D.init_process_group(D.DistributedContext.from_env(), backend="gloo", timeout=60)
batch = load_file(out / "batch.safetensors")
vocab = int(batch.pop("vocab_size").item())
policy = _model(POLICY_SEED + 1000 * ctx.rank, vocab)  # a different start on each rank...
D.broadcast_module(policy, ctx)  # ...until rank 0's weights are broadcast
ref = _model(REF_SEED, vocab)
loss, metrics = _dpo_mean_loss(policy, ref, D.shard(batch, ctx))
loss.backward()
local = {"local/" + n: p.grad.detach().clone() for n, p in policy.named_parameters()}
D.all_reduce_gradients(policy, ctx)
grads = {"grad/" + n: p.grad.detach().clone() for n, p in policy.named_parameters()}
metrics = D.all_reduce_metrics({**metrics, "loss": loss.detach()}, ctx)
torch.optim.SGD(policy.parameters(), lr=LR).step()
weights = {"weight/" + n: p.detach().clone() for n, p in policy.named_parameters()}
save_file({**local, **grads, **weights, **{"metric/" + k: v.reshape(1) for k, v in metrics.items()}},
          str(out / f"rank{ctx.rank}.safetensors"))
D.destroy_process_group(ctx)
"""


def _launch(out: Path) -> None:
    launch(WORKER, out, world=WORLD, timeout=120)


def test_two_gloo_processes_match_the_single_process_gradient_and_step(tmp_path):
    from safetensors.torch import load_file, save_file

    from prefopt_toy.lm.data import tokenize_pairs
    from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    batch = tokenize_pairs(tok, PAIRS, max_length=32)  # (4, T) each
    save_file(
        {**batch, "vocab_size": torch.tensor([len(tok)])}, str(tmp_path / "batch.safetensors")
    )
    _launch(tmp_path)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(WORLD)]

    # Single process, whole global batch, plain autograd: the independent reference.
    policy, ref = _model(POLICY_SEED, len(tok)), _model(REF_SEED, len(tok))
    loss, metrics = _dpo_mean_loss(policy, ref, batch)
    loss.backward()
    names = [n for n, _ in policy.named_parameters()]
    global_grad = {n: p.grad.detach().clone() for n, p in policy.named_parameters()}
    # Rank 0's shard is the first two pairs: its own (pre-reduction) gradient, computed here.
    policy0 = _model(POLICY_SEED, len(tok))
    _dpo_mean_loss(policy0, ref, {k: v[:2] for k, v in batch.items()})[0].backward()
    torch.optim.SGD(policy.parameters(), lr=LR).step()

    assert len(names) > 5
    for n in names:
        for r, got in enumerate(ranks):
            torch.testing.assert_close(
                got[f"grad/{n}"], global_grad[n], rtol=1e-10, atol=1e-12, msg=f"rank {r} grad {n}"
            )
            torch.testing.assert_close(
                got[f"weight/{n}"],
                dict(policy.named_parameters())[n].detach(),
                rtol=1e-10,
                atol=1e-12,
                msg=f"rank {r} weight {n} after one SGD step",
            )
        torch.testing.assert_close(
            ranks[0][f"local/{n}"], dict(policy0.named_parameters())[n].grad, rtol=1e-10, atol=1e-12
        )
    # The reduction did something: rank 0's own shard gradient is not the global one.
    differs = max((ranks[0][f"local/{n}"] - global_grad[n]).abs().max().item() for n in names)
    assert differs > 1e-6
    # Averaged metrics equal the global batch's.
    for k, v in {**metrics, "loss": loss.detach()}.items():
        for got in ranks:
            torch.testing.assert_close(
                got[f"metric/{k}"].reshape(()), v.reshape(()), rtol=1e-10, atol=1e-12, msg=k
            )


def test_single_process_context_shard_and_identities():
    one = DistributedContext.from_env({})
    assert (one.rank, one.world_size, one.is_main, one.is_distributed) == (0, 1, True, False)
    env = {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29511",
    }
    two = DistributedContext.from_env(env)
    assert (two.rank, two.world_size, two.local_rank, two.master_port, two.is_main) == (
        1,
        2,
        1,
        29511,
        False,
    )
    with pytest.raises(ValueError, match="rank"):
        DistributedContext.from_env({**env, "RANK": "2"})
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        DistributedContext.from_env({k: v for k, v in env.items() if k != "MASTER_ADDR"})
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        DistributedContext.from_env({"RANK": "1"})

    # shard: rank r of W takes rows [r * B/W, (r + 1) * B/W), checked against explicit indices.
    batch = {"a": torch.arange(12).reshape(6, 2), "b": torch.arange(6) * 10}
    three = [
        DistributedContext(rank=r, world_size=3, master_addr="127.0.0.1", master_port=29511)
        for r in range(3)
    ]
    for r, ctx in enumerate(three):
        part = shard(batch, ctx)
        assert part["b"].tolist() == [10 * (2 * r), 10 * (2 * r + 1)]
        assert part["a"].tolist() == [[4 * r, 4 * r + 1], [4 * r + 2, 4 * r + 3]]
    assert shard(batch, one)["b"].tolist() == batch["b"].tolist()
    with pytest.raises(ValueError, match=r"global batch size \(6\).*world_size \(4\)"):
        shard(
            batch,
            DistributedContext(rank=0, world_size=4, master_addr="127.0.0.1", master_port=29511),
        )
    with pytest.raises(ValueError, match="leading"):
        shard({"a": torch.zeros(4, 2), "b": torch.zeros(2)}, one)

    # Single process: gradients, metrics and weights are untouched (no process group needed).
    model = torch.nn.Linear(3, 2, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=torch.float64))
        model.bias.zero_()
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    model(x).sum().backward()
    all_reduce_gradients(model, one)
    # d/dW sum(W x + b) = 1 x^T for each output row; d/db = 1.
    assert model.weight.grad.tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    assert model.bias.grad.tolist() == [1.0, 1.0]
    broadcast_module(model, one)
    assert model.weight.tolist() == [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]
    out = all_reduce_metrics({"x": torch.tensor(0.25, dtype=torch.float32), "y": 2}, one)
    assert out["x"].dtype == torch.float32 and out["x"].item() == 0.25 and out["y"].item() == 2.0
    with pytest.raises(ValueError, match=r"metrics\['v'\]"):
        all_reduce_metrics({"v": torch.zeros(3)}, one)
    # A world_size-2 context without a process group refuses to pretend.
    with pytest.raises(RuntimeError, match="init_process_group"):
        all_reduce_gradients(model, two)


def test_seed_generators_per_rank_and_shared_streams():
    ctxs = [
        DistributedContext(rank=r, world_size=2, master_addr="127.0.0.1", master_port=29511)
        for r in range(2)
    ]
    draws = [
        {k: torch.rand(4, generator=g).tolist() for k, g in seed_generators(5, c).items()}
        for c in ctxs
    ]
    again = {k: torch.rand(4, generator=g).tolist() for k, g in seed_generators(5, ctxs[0]).items()}
    assert draws[0] == again  # reproducible from (seed, rank)
    assert draws[0]["minibatch"] == draws[1]["minibatch"]  # the data order agrees across ranks
    assert draws[0]["sampling"] != draws[1]["sampling"]  # online sampling differs by design
    assert draws[0]["labels"] != draws[1]["labels"]
    assert draws[0]["sampling"] != draws[0]["labels"]
    other = {k: torch.rand(4, generator=g).tolist() for k, g in seed_generators(6, ctxs[0]).items()}
    assert other["minibatch"] != draws[0]["minibatch"]
    with pytest.raises(ValueError, match="disjoint"):
        seed_generators(5, ctxs[0], per_rank=("a",), shared=("a",))


def _ctx(rank: int, world: int) -> DistributedContext:
    return DistributedContext(
        rank=rank, world_size=world, master_addr="127.0.0.1", master_port=29511
    )


@pytest.mark.parametrize("size,world", [(4, 2), (3, 2), (7, 3), (5, 5), (9, 4)])
def test_shard_bounds_split_the_global_batch_into_contiguous_near_equal_slices(size, world):
    bounds = [shard_bounds(size, _ctx(r, world)) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == size
    assert all(
        bounds[r][1] == bounds[r + 1][0] for r in range(world - 1)
    )  # contiguous, in rank order
    sizes = [hi - lo for lo, hi in bounds]
    assert sizes == sorted(sizes, reverse=True) and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    if size % world == 0:  # the same split as shard's
        rows = {"x": torch.arange(size)}
        assert [shard(rows, _ctx(r, world))["x"].tolist() for r in range(world)] == [
            list(range(lo, hi)) for lo, hi in bounds
        ]


def test_shard_bounds_weighted_metrics_and_agreement_helpers_validate_and_are_identities_alone():
    one = DistributedContext()
    assert shard_bounds(5, one) == (0, 5)
    with pytest.raises(ValueError, match=r"size \(the global batch\).*world_size \(3\)"):
        shard_bounds(2, _ctx(0, 3))
    with pytest.raises(ValueError, match="size"):
        shard_bounds(2.0, one)
    # a single process: weighted means are the values themselves, bit for bit
    out = all_reduce_metrics({"m": torch.tensor(0.1, dtype=torch.float64)}, one, weight=3.0)
    assert out["m"].item() == 0.1
    for bad in (0.0, -1.0, float("nan"), True, "2"):
        with pytest.raises(ValueError, match="weight"):
            all_reduce_metrics({"m": 0.1}, one, weight=bad)
    assert any_rank(True, one) is True and any_rank(False, one) is False
    assert same_on_all_ranks(7, one) is True
    with pytest.raises(ValueError, match="flag"):
        any_rank(1, one)
    with pytest.raises(ValueError, match="value"):
        same_on_all_ranks(1.5, one)
    with pytest.raises(RuntimeError, match="init_process_group"):
        any_rank(True, _ctx(0, 2))


def test_trainer_generators_keep_the_single_process_seeds_and_share_the_data_order():
    alone = trainer_generators(3)
    assert [(k, g.initial_seed()) for k, g in alone.items()] == [
        ("sampling", 12),
        ("labels", 13),
        ("minibatch", 14),
    ]
    assert {
        k: g.initial_seed() for k, g in trainer_generators(3, DistributedContext()).items()
    } == {k: g.initial_seed() for k, g in alone.items()}
    two = [trainer_generators(3, _ctx(r, 2)) for r in range(2)]
    # the global order: the same on both ranks, and the single-process one
    assert two[0]["minibatch"].initial_seed() == two[1]["minibatch"].initial_seed() == 14
    for name in ("sampling", "labels"):  # per rank: independent streams
        seeds = {
            alone[name].initial_seed(),
            two[0][name].initial_seed(),
            two[1][name].initial_seed(),
        }
        assert len(seeds) == 3
    with pytest.raises(ValueError, match="seed"):
        trainer_generators(-1)
    with pytest.raises(ValueError, match="ctx"):
        trainer_generators(0, ctx="rank0")


def test_all_gather_generator_states_alone_returns_this_ranks_states():
    gens = {"b": torch.Generator().manual_seed(1), "a": torch.Generator().manual_seed(2)}
    torch.rand(3, generator=gens["a"])
    (states,) = all_gather_generator_states(gens, DistributedContext())
    assert sorted(states) == ["a", "b"]
    assert all(torch.equal(states[k], gens[k].get_state()) for k in gens)
    with pytest.raises(ValueError, match=r"generators\['x'\]"):
        all_gather_generator_states({"x": 3}, DistributedContext())
