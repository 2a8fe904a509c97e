"""TDPO1 and TDPO2 beside DPO on the small GPT-2: the sequential KL of chosen and rejected over training.

Setting (all three runs identical but for the loss):

- model: the cached ``small`` default model (``lm.models.gpt2.default_model("small")``, seed 0), as
  policy and (a frozen copy) as reference;
- data: ``--pairs`` offline pairs of the fruit task (``corpus.FRUIT_TASK``) drawn from the
  reference and labelled by its lifted judge (``bridge.run.reference_pairs``, the bridge's pairs;
  a Bradley-Terry class game with strengths (1, 0, -1) and ``other_loses = 0.8``), ``--max-new``
  tokens per completion, EOS labelled;
- training: ``Trainer`` with ``reduction="sum"``, beta 0.1 (the official TDPO config), AdamW lr
  ``--lr``, constant, ``--steps`` steps of ``--batch`` pairs, seed 0 (the same minibatches for every
  run); TDPO with alpha 0.5 (the official default), TDPO1 and TDPO2;
- probe: every ``--probe-every`` steps, on the first ``--probe`` pairs (fixed; part of the training
  data), under no_grad: the mean sequential KL
  :math:`\\mathrm{SeqKL}(y) = \\sum_t KL(\\mu(\\cdot|s_t) \\| \\pi(\\cdot|s_t))` of the chosen and of the
  rejected completions (``logprobs.tdpo_statistics_from_logits``, full vocabulary, EOS included),
  the mean DPO margin u and the fraction of pairs with u > 0. The same probe for DPO, which does not
  optimise SeqKL, shows how far it drifts without it.

Wall time is the training steps only (``Trainer.train_step``), the probes excluded.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_lm_tdpo.py --out benchmarks/results_lm_tdpo.md

References: Zeng et al., arXiv:2404.11999v5 (TDPO); official code
Vance0124/Token-level-Direct-Preference-Optimization @ 2a736ec (``tdpo_loss``: TDPO2, alpha 0.5
by default; ``config/loss/tdpo.yaml``: beta 0.1); Rafailov et al., arXiv:2305.18290v3 (DPO).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import time

import torch

from prefopt_toy.lm.bridge.run import lifted_judge, reference_pairs
from prefopt_toy.lm.data import tokenize_pairs
from prefopt_toy.lm.logprobs import position_ids_from_mask, tdpo_statistics_from_logits
from prefopt_toy.lm.models.corpus import FRUIT_TASK
from prefopt_toy.lm.models.gpt2 import default_model
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer

RUNS = (
    ("DPO", dict(algorithm="dpo")),
    ("TDPO1", dict(algorithm="tdpo", tdpo_variant="tdpo1")),
    ("TDPO2", dict(algorithm="tdpo", tdpo_variant="tdpo2", tdpo_alpha=0.5)),
)


def bt_game(strengths):
    s = torch.tensor(strengths, dtype=torch.float64)
    return torch.sigmoid(s[:, None] - s[None, :])


@torch.no_grad()
def probe(policy, ref, rows):
    """Mean SeqKL (chosen, rejected), mean margin u and accuracy on the probe pairs."""
    out = {}
    for side in ("chosen", "rejected"):
        ids = rows[f"{side}_input_ids"]
        attn = rows[f"{side}_attention_mask"].bool()
        kw = dict(
            input_ids=ids,
            attention_mask=attn.long(),
            position_ids=position_ids_from_mask(attn),
            use_cache=False,
        )
        out[side] = tdpo_statistics_from_logits(
            policy(**kw).logits, ref(**kw).logits, ids, rows[f"{side}_completion_mask"]
        )
    u = out["chosen"].logratio - out["rejected"].logratio
    return {
        "seqkl_chosen": float(out["chosen"].seqkl.mean()),
        "seqkl_rejected": float(out["rejected"].seqkl.mean()),
        "margin": float(u.mean()),
        "accuracy": float((u > 0).double().mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--probe", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--max-new", type=int, default=8)
    ap.add_argument("--probe-every", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    t0 = time.perf_counter()
    ref, tok = default_model("small", seed=0)
    judge = lifted_judge(FRUIT_TASK, bt_game([1.0, 0.0, -1.0]), other_loses=0.8)
    pairs = reference_pairs(
        ref, tok, FRUIT_TASK, judge, n_pairs=args.pairs, seed=0, max_new_tokens=args.max_new
    )
    max_length = 48 + args.max_new
    probe_rows = tokenize_pairs(tok, pairs[: args.probe], max_length=max_length)
    setup_s = time.perf_counter() - t0
    print(f"{len(pairs)} pairs in {setup_s:.1f} s")

    results = {}
    for name, kw in RUNS:
        alg = kw.pop("algorithm")
        cfg = TrainConfig(
            alg,
            reduction="sum",
            beta=args.beta,
            lr=args.lr,
            steps=args.steps,
            batch_size=args.batch,
            max_length=max_length,
            max_new_tokens=args.max_new,
            seed=0,
            show_progress=False,
            **kw,
        )
        policy, frozen = copy.deepcopy(ref), copy.deepcopy(ref)
        trainer = Trainer(cfg, policy, frozen, tok, dataset=pairs)
        trace = [{"step": 0, **probe(policy, frozen, probe_rows)}]
        logs, train_s = [], 0.0
        for step in range(1, args.steps + 1):
            t = time.perf_counter()
            logs.append(trainer.train_step())
            train_s += time.perf_counter() - t
            if step % args.probe_every == 0 or step == args.steps:
                trace.append({"step": step, **probe(policy, frozen, probe_rows)})
                last = trace[-1]
                print(
                    f"{name} step {step}: loss {logs[-1]['loss']:.4f} SeqKL chosen "
                    f"{last['seqkl_chosen']:.4f} rejected {last['seqkl_rejected']:.4f} "
                    f"u {last['margin']:.3f} acc {last['accuracy']:.2f}"
                )
        results[name] = {"trace": trace, "logs": logs, "train_s": train_s}
    total_s = time.perf_counter() - t0
    report = render(args, results, setup_s, total_s)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


def render(args, results, setup_s, total_s) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# TDPO1 / TDPO2 beside DPO on the small GPT-2: sequential KL over training",
        "",
        f"Date: {now}. Machine: {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} thread), Python {platform.python_version()}. "
        f"Load average at end: {os.getloadavg()[0]:.2f} (shared machine).",
        "",
        "Command: `OMP_NUM_THREADS=1 python benchmarks/bench_lm_tdpo.py "
        f"--out benchmarks/results_lm_tdpo.md` (pairs {args.pairs}, probe {args.probe}, steps "
        f"{args.steps}, batch {args.batch}, lr {args.lr:g}, beta {args.beta:g}, max new tokens "
        f"{args.max_new}).",
        "",
        "Setting: the cached `small` default model as policy and frozen reference; the bridge's "
        "fruit-task pairs drawn from the reference (BT class game, strengths (1, 0, -1), other "
        "loses 0.8); `reduction='sum'`, AdamW constant lr, the same minibatches for all runs; "
        "TDPO alpha 0.5. SeqKL = sum over completion positions (EOS included) of "
        "KL(mu(.|s_t) || pi(.|s_t)) over the full 50257-token vocabulary, mean over the probe "
        "pairs (the first pairs of the training data), under no_grad. u = the DPO margin "
        "(summed log-ratio of chosen minus rejected).",
        "",
        "## Probe over training",
        "",
        "| step | "
        + " | ".join(f"{n} SeqKL chosen | {n} SeqKL rejected | {n} u" for n in results)
        + " |",
        "|---:|" + "---:|" * (3 * len(results)),
    ]
    steps = [r["step"] for r in next(iter(results.values()))["trace"]]
    for i, step in enumerate(steps):
        cells = []
        for res in results.values():
            p = res["trace"][i]
            cells += [
                f"{p['seqkl_chosen']:.4f}",
                f"{p['seqkl_rejected']:.4f}",
                f"{p['margin']:.3f}",
            ]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## End of training",
        "",
        "| run | final training loss (last step) | mean loss, last 10 steps | probe accuracy "
        "(u > 0) | SeqKL rejected / chosen (probe) | train wall s | s/step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        logs, p = res["logs"], res["trace"][-1]
        tail = [r["loss"] for r in logs[-10:]]
        ratio = p["seqkl_rejected"] / p["seqkl_chosen"] if p["seqkl_chosen"] > 0 else float("nan")
        lines.append(
            f"| {name} | {logs[-1]['loss']:.4f} | {sum(tail) / len(tail):.4f} | "
            f"{p['accuracy']:.2f} | {ratio:.2f} | {res['train_s']:.1f} | "
            f"{res['train_s'] / len(logs):.2f} |"
        )
    tdpo_logged = {
        n: (r["logs"][-1].get("seqkl/chosen"), r["logs"][-1].get("seqkl/rejected"))
        for n, r in results.items()
        if "seqkl/chosen" in r["logs"][-1]
    }
    lines += [
        "",
        "Run log (`seqkl/chosen`, `seqkl/rejected` of the last training batch): "
        + ", ".join(f"{n} {c:.4f} / {r:.4f}" for n, (c, r) in tdpo_logged.items())
        + ".",
        "",
        f"Setup (model load, pair sampling) {setup_s:.1f} s; whole script {total_s:.1f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
