"""The GPT-2 trainer over 2 CPU processes (gloo on 127.0.0.1) equals the single-process trainer.

One launch of two worker processes (set up as ``torchrun`` would: ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``) runs six 2-process jobs on a randomly initialised tiny GPT-2 in
float64; each rank starts from a *different* initialisation, so the runs also show that rank 0's
weights are broadcast. The parent process then runs the oracles single-process (``ctx=None``):

- offline DPO, global batch 4 (2 + 2 pairs), 3 steps, gradients clipped: the final weights and
  every logged metric equal the single-process run's to 1e-12;
- offline DPO, global batch 3 (2 + 1 pairs: unequal shards), linear lr schedule: the same;
- offline TDPO2, global batch 3 (unequal shards; the reference's full next-token distributions
  on each rank's own rows, the sequential KLs in the metrics): the same;
- online IPO, global batch 3: each rank samples its own prompts' completions; a single-process
  step on the union of the two ranks' sampled pairs (fed to ``draw_online``) gives the same
  metrics and weights, step after step;
- online IPO with warmup + linear decay, interrupted after its step-2 checkpoint and resumed in
  fresh trainers: bitwise the uninterrupted 2-process run (weights on both ranks, run log), and
  the checkpoint holds both ranks' generator states;
- offline DPO whose loss is NaN on rank 1 only, at step 2: both ranks stop with
  ``NonFiniteLossError`` at step 2 and the step-1 checkpoint is the last one.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from _gloo import launch  # tests/_gloo.py

ROOT = Path(__file__).resolve().parents[3]
WORLD = 2
INIT_SEED, REF_SEED = 5, 6
DATASET = [
    {"prompt": "My favourite fruit is", "chosen": " a cherry.", "rejected": " an apple."},
    {"prompt": "For dessert I want", "chosen": " a ripe yellow banana.", "rejected": " a secret."},
    {
        "prompt": "In the basket there is",
        "chosen": " a green apple.",
        "rejected": " a bowl of cherries.",
    },
    {
        "prompt": "The best snack is",
        "chosen": " bananas, without a doubt.",
        "rejected": " hard to choose.",
    },
    {"prompt": "My favourite fruit is", "chosen": " a sweet red cherry.", "rejected": " a banana."},
    {
        "prompt": "In the basket there is",
        "chosen": " an apple.",
        "rejected": " whatever is in season.",
    },
]
PROMPTS = [
    "My favourite fruit is",
    "For dessert I want",
    "In the basket there is",
    "The best snack is",
    "Today I ate",
]

# name -> TrainConfig keywords (run_dir added by the worker where needed)
JOBS = {
    "even": dict(
        algorithm="dpo",
        reduction="sum",
        beta=0.1,
        batch_size=4,
        steps=3,
        lr=1e-3,
        max_length=40,
        seed=3,
        max_grad_norm=0.5,
    ),
    "uneven": dict(
        algorithm="dpo",
        reduction="mean",
        beta=0.5,
        batch_size=3,
        steps=3,
        lr=1e-3,
        max_length=40,
        seed=4,
        lr_schedule="linear",
    ),
    "tdpo": dict(
        algorithm="tdpo",
        tdpo_variant="tdpo2",
        tdpo_alpha=0.5,
        reduction="sum",
        beta=0.5,
        batch_size=3,
        steps=3,
        lr=1e-3,
        max_length=40,
        seed=8,
    ),
    "online": dict(
        algorithm="online_ipo",
        reduction="sum",
        tau=0.5,
        batch_size=3,
        steps=2,
        lr=1e-3,
        max_new_tokens=5,
        max_length=24,
        seed=5,
    ),
    "nan": dict(
        algorithm="dpo",
        reduction="sum",
        beta=0.1,
        batch_size=2,
        steps=3,
        lr=1e-3,
        max_length=40,
        checkpoint_every=1,
    ),
    "resume": dict(
        algorithm="online_ipo",
        reduction="sum",
        tau=0.5,
        batch_size=4,
        steps=4,
        lr=1e-3,
        max_new_tokens=5,
        max_length=24,
        seed=6,
        lr_schedule="linear",
        warmup_steps=1,
        checkpoint_every=2,
        eval_every=2,
        n_eval=4,
    ),
}


def judge_fn(a: str, b: str) -> float:
    """A smooth, deterministic Pr(a beats b): longer completions win."""
    return 1.0 / (1.0 + math.exp((len(b) - len(a)) / 4.0))


def make_model(seed: int):
    """A randomly initialised tiny GPT-2 in float64, without touching the global RNG."""
    from transformers import GPT2LMHeadModel

    from prefopt_toy.lm.models.gpt2 import gpt2_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(gpt2_config("tiny"))
    return model.to(torch.float64).eval()


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# Run in each worker process: ``python -c WORKER <out_dir> <tests_dir>``.
WORKER = r"""
import json, sys
from pathlib import Path
import torch
from safetensors.torch import save_file
sys.path[:0] = [sys.argv[2], str(Path(sys.argv[2]) / "lm" / "train")]
from test_parallel import DATASET, INIT_SEED, JOBS, PROMPTS, REF_SEED, judge_fn, make_model, weights
from prefopt_toy.lm import distributed as D
from prefopt_toy.lm.judges import CallableJudge
from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer, train

out = Path(sys.argv[1])
ctx = D.init_process_group(D.DistributedContext.from_env(), backend="gloo", timeout=120)
tok, judge, r = gpt2_tokenizer(), CallableJudge(judge_fn), ctx.rank
result = {}

def models():  # a different start on each rank: the trainer broadcasts rank 0's
    return make_model(INIT_SEED + 100 * r), make_model(REF_SEED + 100 * r)

for name in ("even", "uneven", "tdpo"):
    policy, ref = models()
    result[name] = train(TrainConfig(**JOBS[name]), policy, ref, tok, dataset=DATASET, ctx=ctx)["history"]
    save_file(weights(policy), str(out / f"{name}-rank{r}.safetensors"))

policy, ref = models()
trainer = Trainer(TrainConfig(**JOBS["online"]), policy, ref, tok, prompts=PROMPTS, judge=judge, ctx=ctx)
draws, draw = [], trainer.draw_online
def recording(rows):  # the pairs this rank drew, for the parent's union step
    d = draw(rows)
    draws.append(d)
    return d
trainer.draw_online = recording
result["online"] = trainer.run()["history"]
save_file(weights(policy), str(out / f"online-rank{r}.safetensors"))
for t, d in enumerate(draws):
    p = d.pairs
    save_file({"input_ids": p.input_ids, "attention_mask": p.attention_mask, "completion_mask": p.completion_mask,
               "probs": d.probs.clone(), "weights": d.weights.clone()}, str(out / f"draw{t}-rank{r}.safetensors"))
    result[f"draw{t}"] = {"texts_a": p.texts_a, "texts_b": p.texts_b}

class Interrupted(Exception):
    pass

cfg = dict(JOBS["resume"])
policy, ref = models()
train(TrainConfig(**cfg, run_dir=str(out / "straight")), policy, ref, tok, prompts=PROMPTS, judge=judge, ctx=ctx)
save_file(weights(policy), str(out / f"straight-rank{r}.safetensors"))
policy, ref = models()
trainer = Trainer(TrainConfig(**cfg, run_dir=str(out / "resumed")), policy, ref, tok, prompts=PROMPTS, judge=judge,
                  ctx=ctx)
save = trainer.save
def save_then_stop():  # a crash right after the step-2 checkpoint
    path = save()
    if trainer.step == 2:
        raise Interrupted
    return path
trainer.save = save_then_stop
try:
    trainer.run()
    raise AssertionError("the run was not interrupted")
except Interrupted:
    pass
policy, ref = models()  # fresh objects, as in a new process
summary = train(TrainConfig(**cfg, run_dir=str(out / "resumed")), policy, ref, tok, prompts=PROMPTS, judge=judge,
                ctx=ctx, resume=True)
result["resumed_from"], result["log"] = summary["resumed_from"], summary["log"]
save_file(weights(policy), str(out / f"resumed-rank{r}.safetensors"))

import prefopt_toy.lm.train.trainer as T
from prefopt_toy.lm.train.checkpoint import NonFiniteLossError
real, calls = T.preference_loss, []
def poisoned(*args, **kwargs):  # rank 1's loss is NaN at step 2; rank 0's is fine
    losses, metrics = real(*args, **kwargs)
    calls.append(1)
    return (losses * float("nan") if r == 1 and len(calls) == 2 else losses), metrics
T.preference_loss = poisoned
policy, ref = models()
try:
    train(TrainConfig(**JOBS["nan"], run_dir=str(out / "nan")), policy, ref, tok, dataset=DATASET, ctx=ctx)
    result["nan"] = None
except NonFiniteLossError as err:
    result["nan"] = {"step": err.step, "message": str(err), "last_good": str(err.last_good)}
T.preference_loss = real
(out / f"result-rank{r}.json").write_text(json.dumps(result))
D.destroy_process_group(ctx)
"""


def _launch(out: Path) -> None:
    launch(WORKER, out, world=WORLD, timeout=300)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The two workers' outputs: (out_dir, [result dict of rank 0, of rank 1])."""
    out = tmp_path_factory.mktemp("two_ranks")
    _launch(out)
    return out, [json.loads((out / f"result-rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def tok():
    from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer

    return gpt2_tokenizer()


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _assert_records_close(got: list[dict], want: list[dict], what: str) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want], what
    for g, w in zip(got, want):
        assert g.keys() == w.keys(), what
        for k in w:
            assert g[k] == pytest.approx(w[k], rel=0, abs=1e-12), f"{what} step {w['step']} {k}"


def _assert_weights_close(got: dict[str, torch.Tensor], model, what: str) -> None:
    want = weights(model)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-12, msg=f"{what}: {k}")


@pytest.mark.parametrize("name", ["even", "uneven", "tdpo"])
def test_offline_dpo_on_two_processes_equals_one_process(ranks, tok, name):
    from prefopt_toy.lm.train.trainer import TrainConfig, train

    out, results = ranks
    policy = make_model(INIT_SEED)  # rank 0's initialisation, which the workers broadcast
    history = train(TrainConfig(**JOBS[name]), policy, make_model(REF_SEED), tok, dataset=DATASET)[
        "history"
    ]
    assert not all(
        torch.equal(a, b)
        for a, b in zip(weights(policy).values(), weights(make_model(INIT_SEED)).values())
    )
    for r in range(WORLD):
        _assert_records_close(results[r][name], history, f"{name} rank {r}")
        _assert_weights_close(
            _load(out / f"{name}-rank{r}.safetensors"), policy, f"{name} rank {r}"
        )
    if name == "even":  # the clip acted, on the all-reduced (global) gradient
        assert all(rec["grad_norm"] > JOBS[name]["max_grad_norm"] for rec in history)
    elif name == "uneven":  # the linear schedule: lr (1 - t / 3)
        assert [rec["learning_rate"] for rec in history] == [1e-3 * (1 - t / 3) for t in range(3)]
    else:  # TDPO2 (shards of 2 and 1): the sequential KLs are logged, positive (pi != mu)
        assert all("seqkl/chosen" in rec and "seqkl/rejected" in rec for rec in history)
        assert history[0]["seqkl/chosen"] > 0 and history[-1]["seqkl/rejected"] > 0


def _union_draw(out: Path, results: list[dict], t: int, pad_id: int):
    """The two ranks' step-t draws as one: pairs a of rank 0 then rank 1, then pairs b likewise."""
    from prefopt_toy.lm.train.online import SampledPairs
    from prefopt_toy.lm.train.trainer import OnlineDraw

    parts = [_load(out / f"draw{t}-rank{r}.safetensors") for r in range(WORLD)]
    T = max(p["input_ids"].shape[1] for p in parts)

    def side(key: str, half: int) -> torch.Tensor:
        rows = []
        for p in parts:
            B = p["probs"].shape[0]
            x = p[key][half * B : (half + 1) * B]
            fill = pad_id if key == "input_ids" else 0
            rows.append(
                torch.nn.functional.pad(x, (0, T - x.shape[1]), value=fill)
            )  # right padding
        return torch.cat(rows)

    cols = {
        k: torch.cat([side(k, 0), side(k, 1)])
        for k in ("input_ids", "attention_mask", "completion_mask")
    }
    texts_a = [x for r in range(WORLD) for x in results[r][f"draw{t}"]["texts_a"]]
    texts_b = [x for r in range(WORLD) for x in results[r][f"draw{t}"]["texts_b"]]
    pairs = SampledPairs(
        cols["input_ids"],
        cols["attention_mask"],
        cols["completion_mask"],
        texts_a,
        texts_b,
        0.0,
        0.0,
    )
    return OnlineDraw(
        pairs, torch.cat([p["probs"] for p in parts]), torch.cat([p["weights"] for p in parts])
    )


def test_online_ipo_step_on_two_processes_equals_one_process_on_the_union_of_their_pairs(
    ranks, tok
):
    from prefopt_toy.lm.judges import CallableJudge
    from prefopt_toy.lm.train.trainer import TrainConfig, Trainer

    out, results = ranks
    judge = CallableJudge(judge_fn)
    draws = [_union_draw(out, results, t, tok.eos_token_id) for t in range(JOBS["online"]["steps"])]
    for d in draws:  # 2 + 1 prompts per step, each rank its own completions, labelled by the judge
        assert len(d.pairs.texts_a) == 3 and d.pairs.input_ids.shape[0] == 6
        assert d.weights.tolist() == [
            judge_fn(a, b) for a, b in zip(d.pairs.texts_a, d.pairs.texts_b)
        ]
    policy = make_model(INIT_SEED)
    trainer = Trainer(
        TrainConfig(**JOBS["online"]),
        policy,
        make_model(REF_SEED),
        tok,
        prompts=PROMPTS,
        judge=judge,
    )
    trainer.draw_online = lambda rows: draws[trainer.step]
    history = [{"step": t + 1, **trainer.train_step()} for t in range(len(draws))]
    for r in range(WORLD):
        _assert_records_close(results[r]["online"], history, f"online rank {r}")
        _assert_weights_close(
            _load(out / f"online-rank{r}.safetensors"), policy, f"online rank {r}"
        )
    assert history[0]["loss"] != history[1]["loss"]


def test_two_process_run_resumed_from_its_checkpoint_ends_bitwise_where_the_uninterrupted_one_does(
    ranks,
):
    from prefopt_toy.lm.train.checkpoint import list_checkpoints
    from prefopt_toy.lm.train.runlog import read_run_log

    out, results = ranks
    assert [res["resumed_from"] for res in results] == [2, 2]
    final = {
        (kind, r): _load(out / f"{kind}-rank{r}.safetensors")
        for kind in ("straight", "resumed")
        for r in range(WORLD)
    }
    for r in range(WORLD):
        for k, v in final["straight", r].items():
            assert torch.equal(final["resumed", r][k], v), f"rank {r}: {k}"
            assert torch.equal(final["straight", 0][k], v), f"ranks disagree: {k}"
    straight, resumed = (
        read_run_log(out / "straight" / "run.jsonl"),
        read_run_log(out / "resumed" / "run.jsonl"),
    )
    assert [rec["step"] for rec in resumed] == [0, 1, 2, 3, 4]
    assert straight == resumed
    assert [rec["learning_rate"] for rec in resumed[1:]] == [
        1e-3,
        1e-3,
        1e-3 * (1 - 1 / 3),
        1e-3 * (1 - 2 / 3),
    ]
    assert "win_rate" in resumed[2] and "eval/kl" in resumed[4]  # rank 0 evaluated
    # one checkpoint holds both ranks' streams (different: each rank samples its own completions)
    ckpt = list_checkpoints(out / "resumed")[0]
    manifest = json.loads((ckpt / "checkpoint.json").read_text())
    assert sorted(manifest["generators"]) == [
        "labels.rank0",
        "labels.rank1",
        "minibatch",
        "sampling.rank0",
        "sampling.rank1",
    ]
    assert manifest["extra"]["world_size"] == 2
    state = _load(ckpt / "state.safetensors")
    assert not torch.equal(state["generator/sampling.rank0"], state["generator/sampling.rank1"])


def test_a_non_finite_loss_on_one_rank_stops_both_and_keeps_the_last_good_checkpoint(ranks):
    from prefopt_toy.lm.train.checkpoint import list_checkpoints

    out, results = ranks
    good = out / "nan" / "step-000000001"
    assert [p.name for p in list_checkpoints(out / "nan")] == [good.name]
    for res in results:
        assert (
            res["nan"] is not None
            and res["nan"]["step"] == 2
            and res["nan"]["last_good"] == str(good)
        )
    assert results[1]["nan"]["message"].startswith(
        "loss became nan at step 2"
    )  # the rank that met it
    assert results[0]["nan"]["message"].startswith("another rank met a non-finite value at step 2")
    # only rank 0 wrote a run log
    assert results[0]["log"] == str(out / "resumed" / "run.jsonl") and results[1]["log"] is None


def test_trainer_rejects_a_global_batch_smaller_than_the_world_and_a_foreign_ctx(tok):
    from prefopt_toy.lm.distributed import DistributedContext
    from prefopt_toy.lm.train.trainer import TrainConfig, Trainer

    model = make_model(INIT_SEED)
    two = DistributedContext(rank=0, world_size=2, master_addr="127.0.0.1", master_port=29511)
    cfg = TrainConfig("dpo", reduction="sum", beta=0.1, batch_size=1, max_length=40)
    with pytest.raises(
        ValueError, match=r"batch_size \(the global batch, 1\) must be >= world_size \(2\)"
    ):
        Trainer(cfg, model, copy.deepcopy(model), tok, dataset=DATASET, ctx=two)
    with pytest.raises(ValueError, match="ctx must be a DistributedContext"):
        Trainer(cfg, model, copy.deepcopy(model), tok, dataset=DATASET, ctx={"rank": 0})
    with pytest.raises(
        RuntimeError, match="init_process_group"
    ):  # no process group in this process
        Trainer(
            TrainConfig("dpo", reduction="sum", beta=0.1, batch_size=2, max_length=40),
            model,
            copy.deepcopy(model),
            tok,
            dataset=DATASET,
            ctx=two,
        )
