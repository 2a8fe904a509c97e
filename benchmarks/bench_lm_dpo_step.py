"""Time one offline DPO training step: ``prefopt_toy.lm.Trainer`` against TRL 1.13's ``DPOTrainer``.

Both sides train the same randomly initialised GPT-2 (GPT-2's 50257-token vocabulary; the
project's ``tiny`` and ``small`` configurations from ``prefopt_toy.lm.models.gpt2.SIZES``, and ``gpt2``
(124M) with ``--size gpt2``) on the same batch with the same settings:

- data: ``--pairs`` preference pairs (default 8) of the fruit task (``corpus.FRUIT_TASK``): prompts
  from its templates, chosen from one class, rejected from another, ``--sentences`` sentences per
  completion (default 1; more gives longer rows); EOS appended to every completion (both sides do
  so). The batch size equals the number of pairs, so **every step of both trainers sees the whole
  dataset**: the same rows (in a different order, which leaves the mean loss unchanged);
- model: policy initialised with seed 0, reference with seed 1 (a different network, so that the
  loss on the first step is not the trivial ``log 2``); each trainer gets its own copy of both;
  dropout off on both sides (ours runs in ``eval()`` mode, TRL's ``disable_dropout=True``);
- loss: DPO sigmoid, beta = 0.1, summed completion log-probs (``reduction="sum"``, TRL's DPO);
- reference log-probs **precomputed on both sides** (ours: ``Trainer.ref_cache``, computed in the
  constructor; TRL: ``precompute_ref_log_probs=True``, a pass over the dataset in the
  constructor); neither step runs the reference model;
- optimiser: AdamW, lr 1e-4, betas (0.9, 0.999), eps 1e-8, no weight decay, constant learning rate
  (TRL: ``lr_scheduler_type="constant"``), gradient norm clipped at 1.0 on both sides (ours:
  ``max_grad_norm=1.0``; TRL's default). TRL uses its default AdamW implementation
  (``optim="adamw_torch_fused"`` under torch >= 2.8), ours ``torch.optim.AdamW``'s default;
- the same arithmetic: parameters and activations in ``--dtype`` on both sides, no autocast
  (TRL's ``DPOConfig`` defaults to ``bf16=True``, mixed-precision autocast even on a CPU; the
  benchmark sets ``bf16=False``; with ``--dtype bfloat16`` both sides hold bf16 weights);
- no gradient checkpointing on either side (TRL's ``DPOConfig`` turns it on by default, which would
  recompute the forward pass and slow TRL down for a reason that has nothing to do with the step);
  no logging and no checkpoint saving inside the timed window.

**Timing method.** Wall clock (``time.perf_counter``, after ``torch.cuda.synchronize`` on a GPU).
Ours: each ``Trainer.train_step()`` call (batch assembly from the pre-tokenised tensors, forward,
DPO loss, metrics, backward, clipping, AdamW step). TRL: its real training loop,
``DPOTrainer.train()`` with ``max_steps``, timed by a ``TrainerCallback`` from ``on_step_begin`` to
``on_step_end`` (``training_step``: forward, loss, metrics, backward; then clipping, optimiser step,
scheduler step, ``zero_grad``). The collation of TRL's batch (python lists -> padded tensors) happens
before ``on_step_begin`` and is **not** counted (ours has no collation: its dataset is tokenised and
padded once in the constructor); the median time between TRL's steps (collation of the next batch
and the loop's bookkeeping) is reported separately as "TRL between steps" for completeness. The measurement is interleaved in ``--rounds`` rounds (each: ``--steps`` steps of
ours, then one ``train()`` call of ``--steps + 1`` steps of TRL whose first step is discarded as a
warm-up, since each ``train()`` call rebuilds TRL's optimiser), after ``--warmup`` untimed steps of
ours; the table gives the median over all timed steps. Tokens per step: the real (non-padding)
tokens of the 2 x pairs rows, the same for both.

**Same computation, checked.** Before timing, the script checks that both sides build the same
token ids (TRL's collated batch against ours), that both compute the same loss on that batch at
initialisation, and that after one optimiser step from the same weights both compute the same loss
again (same lr, clipping and AdamW); it prints the three numbers and the differences, and stops
with an error when a loss differs by more than ``--tol`` (default 1e-5).

Usage::

    python benchmarks/bench_lm_dpo_step.py --threads 1                  # tiny and small (~2-4 min on 2 cores)
    python benchmarks/bench_lm_dpo_step.py --quick                      # tiny only, few steps
    python benchmarks/bench_lm_dpo_step.py --threads 1 --out benchmarks/results_lm_dpo_step.md
    python benchmarks/bench_lm_dpo_step.py --size gpt2 --device cuda --dtype bfloat16

References: Rafailov et al., arXiv:2305.18290v3 (DPO); TRL https://github.com/huggingface/trl
v1.13.0 (``DPOTrainer``, ``DPOConfig``); Radford et al. 2019 (GPT-2).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the Hub
os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's reference pass draws a progress bar otherwise

import torch

from prefopt_toy.lm.models.corpus import FRUIT_TASK
from prefopt_toy.lm.models.gpt2 import SIZES, gpt2_config
from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer

BETA = 0.1
LR = 1e-4
MAX_GRAD_NORM = 1.0
MAX_LENGTH = 256


def fruit_pairs(n_pairs: int, sentences: int) -> list[dict[str, str]]:
    """``n_pairs`` deterministic preference pairs of the fruit task, ``sentences`` per completion."""
    names = FRUIT_TASK.class_names
    prompts = FRUIT_TASK.prompt_templates
    out = []
    for i in range(n_pairs):
        good = FRUIT_TASK.classes[names[i % len(names)]]
        bad = FRUIT_TASK.classes[names[(i + 1) % len(names)]]
        chosen = "".join(good[(i + k) % len(good)] for k in range(sentences))
        rejected = "".join(bad[(i + 2 * k) % len(bad)] for k in range(sentences))
        out.append({"prompt": prompts[i % len(prompts)], "chosen": chosen, "rejected": rejected})
    return out


def build_model(size: str, seed: int, dtype: torch.dtype, device: str):
    """A randomly initialised GPT-2 of ``size`` (``gpt2_config``), global RNG left untouched."""
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(gpt2_config(size))
    return model.to(device=device, dtype=dtype)


def ours_trainer(policy, ref, tokenizer, dataset, steps: int) -> Trainer:
    config = TrainConfig(
        algorithm="dpo",
        reduction="sum",
        beta=BETA,
        lr=LR,
        steps=steps,
        batch_size=len(dataset),
        max_length=MAX_LENGTH,
        max_grad_norm=MAX_GRAD_NORM,
        show_progress=False,
    )
    return Trainer(config, policy, ref, tokenizer, dataset=dataset)


def trl_trainer(policy, ref, tokenizer, dataset, out_dir: str, device: str, callbacks=()):
    import datasets
    import trl

    args = trl.DPOConfig(
        output_dir=out_dir,
        report_to=[],
        use_cpu=device == "cpu",
        per_device_train_batch_size=len(dataset),
        max_steps=1,  # set before each train() call
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM,
        loss_type="sigmoid",
        beta=BETA,
        precompute_ref_log_probs=True,
        max_length=MAX_LENGTH,
        gradient_checkpointing=False,
        bf16=False,  # DPOConfig defaults to bf16 autocast (also on a CPU); both sides run in --dtype
        fp16=False,
        logging_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    from transformers.trainer_callback import PrinterCallback

    ds = datasets.Dataset.from_list(dataset)
    trainer = trl.DPOTrainer(
        model=policy,
        ref_model=ref,
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # it prints train()'s summary after every call
    return trainer


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_step_timer(device: str):
    """A TrainerCallback recording on_step_begin -> on_step_end durations (and the gaps between steps)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[float] = []
            self.gaps: list[
                float
            ] = []  # on_step_end -> next on_step_begin: collation of the next batch
            self._t0 = self._end = None

        def on_train_begin(self, args, state, control, **kw):
            self._end = None

        def on_step_begin(self, args, state, control, **kw):
            _sync(device)
            self._t0 = time.perf_counter()
            if self._end is not None:
                self.gaps.append(self._t0 - self._end)

        def on_step_end(self, args, state, control, **kw):
            _sync(device)
            self._end = time.perf_counter()
            self.steps.append(self._end - self._t0)

    return StepTimer()


def trl_batch_in_order(trainer) -> dict[str, torch.Tensor]:
    """TRL's collated batch of the whole (precomputed) dataset in dataset order."""
    ds = trainer.train_dataset
    return trainer.data_collator([ds[i] for i in range(len(ds))])


def trl_loss(trainer, batch, device: str) -> float:
    model = trainer.model
    was_training = model.training
    model.train()  # TRL computes its training loss in train mode (dropout is disabled anyway)
    with torch.no_grad():
        loss = trainer.compute_loss(model, {k: v.to(device) for k, v in batch.items()})
    model.train(was_training)
    return float(loss)


def ours_loss(trainer: Trainer) -> float:
    with torch.no_grad():
        loss, _ = trainer.offline_loss(list(range(trainer.n_items)))
    return float(loss)


def check_same_step(size, dtype, device, tokenizer, dataset, tol: float) -> dict[str, float]:
    """Same ids, same loss at init, same loss after one optimiser step; raise if not."""
    policy, ref = build_model(size, 0, dtype, device), build_model(size, 1, dtype, device)
    ours = ours_trainer(copy.deepcopy(policy), copy.deepcopy(ref), tokenizer, dataset, steps=1)
    with tempfile.TemporaryDirectory() as tmp:
        theirs = trl_trainer(policy, ref, tokenizer, dataset, tmp, device)
        batch = trl_batch_in_order(theirs)
        mine = ours._pair_batch(torch.arange(ours.n_items))
        for key in ("input_ids", "attention_mask", "completion_mask"):
            if not torch.equal(batch[key].cpu(), mine[key].cpu()):
                raise SystemExit(
                    f"{size}: TRL's and our {key} differ: the two setups do not see the same batch"
                )
        init_ours, init_trl = ours_loss(ours), trl_loss(theirs, batch, device)
        first = ours.train_step()["loss"]  # the first training step's loss (rows in a random order)
        theirs.args.max_steps = 1
        theirs.train()
        after_ours, after_trl = ours_loss(ours), trl_loss(theirs, batch, device)
    res = {
        "init_ours": init_ours,
        "init_trl": init_trl,
        "first_step_ours": first,
        "after1_ours": after_ours,
        "after1_trl": after_trl,
        "d_init": abs(init_ours - init_trl),
        "d_after1": abs(after_ours - after_trl),
        "tokens": int(mine["attention_mask"].sum()),
        "T": int(mine["input_ids"].shape[1]),
    }
    print(
        f"[{size}] loss at init: ours {init_ours:.8f}  TRL {init_trl:.8f}  |diff| {res['d_init']:.2e}; "
        f"ours' first train_step loss {first:.8f}"
    )
    print(
        f"[{size}] loss after one AdamW step: ours {after_ours:.8f}  TRL {after_trl:.8f}  |diff| {res['d_after1']:.2e}"
    )
    if max(res["d_init"], res["d_after1"], abs(first - init_ours)) > tol:
        raise SystemExit(
            f"{size}: the two setups do not compute the same loss (tolerance {tol}); not comparable"
        )
    return res


def time_size(
    size, dtype, device, tokenizer, dataset, *, warmup: int, steps: int, rounds: int
) -> dict[str, float]:
    """Median ms per step of ours and TRL, interleaved in rounds."""
    policy, ref = build_model(size, 0, dtype, device), build_model(size, 1, dtype, device)
    ours = ours_trainer(
        copy.deepcopy(policy), copy.deepcopy(ref), tokenizer, dataset, steps=warmup + steps * rounds
    )
    timer = make_step_timer(device)
    ours_times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        theirs = trl_trainer(policy, ref, tokenizer, dataset, tmp, device, callbacks=[timer])
        for _ in range(warmup):
            ours.train_step()
        for _ in range(rounds):
            for _ in range(steps):
                _sync(device)
                t0 = time.perf_counter()
                ours.train_step()
                _sync(device)
                ours_times.append(time.perf_counter() - t0)
            n_before = len(timer.steps)
            theirs.args.max_steps = steps + 1
            theirs.train()
            del timer.steps[
                n_before
            ]  # the first step of each train() call: optimiser state created
    return {
        "ours_ms": 1e3 * statistics.median(ours_times),
        "trl_ms": 1e3 * statistics.median(timer.steps),
        "trl_collate_ms": 1e3 * statistics.median(timer.gaps) if timer.gaps else float("nan"),
        "n_ours": len(ours_times),
        "n_trl": len(timer.steps),
    }


def machine_info(device: str) -> str:
    import transformers
    import trl

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    return (
        f"{os.cpu_count()} CPUs ({cpu}){gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, trl {trl.__version__}, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--size",
        action="append",
        choices=list(SIZES),
        help="model size (repeatable); default tiny and small (tiny only with --quick)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    p.add_argument("--pairs", type=int, default=8, help="preference pairs = batch size (default 8)")
    p.add_argument(
        "--sentences", type=int, default=1, help="sentences per completion (longer rows)"
    )
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round and side")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny only (unless --size), 1 warm-up, 2 rounds of 3 steps",
    )
    p.add_argument("--tol", type=float, default=1e-5, help="largest accepted loss difference")
    p.add_argument("--out", help="write the markdown report here")
    a = p.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.warmup, a.steps, a.rounds = 1, 3, 2
    sizes = a.size or (["tiny"] if a.quick else ["tiny", "small"])
    dtype = getattr(torch, a.dtype)
    if a.dtype != "float32" and a.tol == 1e-5:
        a.tol = 1e-2 if a.dtype == "bfloat16" else 1e-10
    # TRL 1.13 reads transformers' deprecated gradient-checkpointing attribute names (FutureWarning)
    warnings.filterwarnings(
        "ignore", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning
    )
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()

    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    tokenizer = gpt2_tokenizer()
    dataset = fruit_pairs(a.pairs, a.sentences)
    rows = []
    for size in sizes:
        check = check_same_step(size, dtype, a.device, tokenizer, dataset, a.tol)
        t = time_size(
            size,
            dtype,
            a.device,
            tokenizer,
            dataset,
            warmup=a.warmup,
            steps=a.steps,
            rounds=a.rounds,
        )
        rows.append((size, check, t))
        print(
            f"[{size}] ours {t['ours_ms']:.1f} ms/step ({t['n_ours']} steps), TRL {t['trl_ms']:.1f} ms/step "
            f"({t['n_trl']} steps), TRL/ours {t['trl_ms'] / t['ours_ms']:.2f}",
            flush=True,
        )
    load_end = os.getloadavg()

    header = (
        "| size | (n_layer, n_head, n_embd) | batch (pairs x T) | tokens/step | ours ms/step | TRL ms/step "
        "| TRL / ours | ours tokens/s | TRL tokens/s | TRL between steps ms | loss at init (ours / TRL, diff) "
        "| loss after 1 step diff |"
    )
    lines = [
        header,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for size, c, t in rows:
        nl, nh, ne, _ = SIZES[size]
        lines.append(
            f"| {size} | ({nl}, {nh}, {ne}) | {a.pairs} x {c['T']} | {c['tokens']} | {t['ours_ms']:.1f} "
            f"| {t['trl_ms']:.1f} | {t['trl_ms'] / t['ours_ms']:.2f} | {c['tokens'] / t['ours_ms'] * 1e3:,.0f} "
            f"| {c['tokens'] / t['trl_ms'] * 1e3:,.0f} | {t['trl_collate_ms']:.1f} "
            f"| {c['init_ours']:.6f} / {c['init_trl']:.6f}, {c['d_init']:.1e} | {c['d_after1']:.1e} |"
        )
    table = "\n".join(lines)
    settings = (
        f"device {a.device}, dtype {a.dtype}, threads {torch.get_num_threads()}"
        f"{' (--threads)' if a.threads is not None else ' (torch default)'}; {a.pairs} fruit-task pairs, "
        f"{a.sentences} sentence(s) per completion; DPO sigmoid, beta {BETA}, sum of log-probs; reference "
        f"log-probs precomputed on both sides; AdamW lr {LR}, constant, clip {MAX_GRAD_NORM}; "
        f"median of {rows[0][2]['n_ours']} (ours) / {rows[0][2]['n_trl']} (TRL) steps after warm-up, "
        f"{a.rounds} interleaved rounds"
    )
    load = (
        f"load average (1, 5, 15 min) at start {tuple(round(x, 2) for x in load_start)}, "
        f"at end {tuple(round(x, 2) for x in load_end)}"
    )
    print()
    print(table)
    print()
    print(settings)
    print(load)
    if a.out:
        report = "\n".join(
            [
                "# DPO training step: prefopt_toy `Trainer.train_step()` vs TRL 1.13 `DPOTrainer`",
                "",
                f"Date: {started:%Y-%m-%d %H:%M} UTC. Machine: {machine_info(a.device)}.",
                "",
                f"Command: `python benchmarks/bench_lm_dpo_step.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
                "",
                (
                    f"Settings: {settings}. Method: see the script's docstring (TRL timed inside its own `train()` loop "
                    "from `on_step_begin` to `on_step_end`; the time between its steps (collation), reported apart, "
                    "is not counted)."
                ),
                "",
                f"Load: {load}. TRL / ours > 1 means ours is faster.",
                "",
                table,
                "",
            ]
        )
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(report)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
