"""Unlearning on the small GPT-2: GA, GradDiff, NPO, NPO + retain and AltPO with TOFU's metrics.

A TOFU-like corpus of invented people (``prefopt_toy.lm.unlearning.corpus``) is learnt by the
small default model twice: on every person ("full") and on the retain people only ("retain", the
target of forget quality). Each method then unlearns the forget people (a tenth) from the full
model, with the full model as the frozen reference, and is evaluated every few steps: forget
quality (KS-test p-value of the forget-set truth ratios against the retain model's), model
utility (harmonic mean of answer probability, ROUGE-L recall and truth-ratio score on retain
questions), and two offline fluency stand-ins for the forget-set generations (share of corpus-
grammar sentences; mean per-token log-prob under the retain model).

Writes ``benchmarks/results_lm_unlearning.md`` and ``benchmarks/results_lm_unlearning.png``
(forget quality against model utility, one curve per method). The fine-tuned models are cached
(``$PREFOPT_CACHE``), so a second run only unlearns.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_lm_unlearning.py
    OMP_NUM_THREADS=1 python benchmarks/bench_lm_unlearning.py --quick   # tiny model, few steps

References: Maini et al., arXiv:2401.06121v1 (TOFU); Zhang et al., arXiv:2404.05868v2 (NPO);
Mekala et al., arXiv:2409.13474v1 (AltPO).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import matplotlib

matplotlib.use("Agg")

import torch

from prefopt_toy.lm.unlearning import (
    METHODS,
    UnlearnConfig,
    evaluate,
    fact_corpus,
    finetuned_model,
    question_ratios,
    tradeoff_figure,
    unlearn,
)

HERE = Path(__file__).resolve().parent
COLUMNS = (
    ("forget_quality", "forget quality", "{:.3g}"),
    ("model_utility", "utility", "{:.3f}"),
    ("forget_truth_ratio", "median R (forget)", "{:.3f}"),
    ("forget_prob", "P(forget ans)", "{:.3f}"),
    ("forget_rouge", "ROUGE-L (forget)", "{:.2f}"),
    ("forget_value_accuracy", "value acc. (forget)", "{:.2f}"),
    ("retain_prob", "P(retain ans)", "{:.3f}"),
    ("retain_rouge", "ROUGE-L (retain)", "{:.2f}"),
    ("retain_value_accuracy", "value acc. (retain)", "{:.2f}"),
    ("fluency_well_formed", "well-formed", "{:.2f}"),
    ("fluency_retain_logp", "logp under retain", "{:.2f}"),
)


def _row(label: str, rec: dict) -> str:
    return "| " + label + " | " + " | ".join(fmt.format(rec[k]) for k, _, fmt in COLUMNS) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny model, 10 people, 4 steps")
    args = parser.parse_args()
    size = "tiny" if args.quick else "small"
    n_people = 10 if args.quick else 20
    steps, eval_every, lr = (4, 2, 1e-4) if args.quick else (24, 4, 1e-4)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.perf_counter()
    load = os.getloadavg()[0]

    corpus = fact_corpus(n_people, forget_fraction=0.1, n_perturbed=3, n_alternates=3, seed=0)
    t0 = time.perf_counter()
    full, tok = finetuned_model(corpus, "full", size=size, seed=0)
    t_full = time.perf_counter() - t0
    t0 = time.perf_counter()
    retain, _ = finetuned_model(corpus, "retain", size=size, seed=0)
    t_retain = time.perf_counter() - t0
    rq = corpus.retain[::3][:15]
    retain_ratios = question_ratios(retain, tok, corpus.forget)
    base_retain = evaluate(
        retain, tok, corpus, retain_model=retain, retain_ratios=retain_ratios, retain_questions=rq
    )
    base_full = evaluate(
        full, tok, corpus, retain_model=retain, retain_ratios=retain_ratios, retain_questions=rq
    )

    runs, walls = [], {}
    for method in METHODS:
        cfg = UnlearnConfig(method=method, steps=steps, lr=lr, eval_every=eval_every, seed=0)
        t0 = time.perf_counter()
        _, run = unlearn(
            full, retain, tok, corpus, cfg, retain_eval_questions=rq, retain_ratios=retain_ratios
        )
        walls[method] = (run.wall_seconds, time.perf_counter() - t0)
        runs.append(run)
        print(method, {k: round(v[-1], 4) for k, v in run.history.items()}, flush=True)

    fig = tradeoff_figure(
        runs,
        retain_point=(base_retain["model_utility"], base_retain["forget_quality"]),
        full_point=(base_full["model_utility"], base_full["forget_quality"]),
    )
    suffix = "_quick" if args.quick else ""
    fig_path = HERE / f"results_lm_unlearning{suffix}.png"
    fig.savefig(fig_path, dpi=110, bbox_inches="tight")
    total = time.perf_counter() - start

    header = "| model / step | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    rule = "|" + "---|" * (len(COLUMNS) + 1)
    lines = [
        "# Unlearning on the small GPT-2: GA, GradDiff, NPO, NPO + retain, AltPO (TOFU metrics)",
        "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load average at start {load:.1f} "
        f"(machine shared). Command: `OMP_NUM_THREADS=1 python benchmarks/bench_lm_unlearning.py"
        f"{' --quick' if args.quick else ''}`. torch {torch.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} thread(s).",
        "",
        f"Corpus: `fact_corpus({n_people}, forget_fraction=0.1, n_perturbed=3, n_alternates=3, seed=0)`: "
        f"{len(corpus.people)} people x 5 attributes, forget {len(corpus.forget_people)} people "
        f"({len(corpus.forget)} questions); model utility on {len(rq)} retain questions. Model size "
        f"`{size}`; fine-tuning (`finetuned_model`, cached): full {t_full:.1f} s, retain "
        f"{t_retain:.1f} s in this run (a cached model loads in about a second).",
        "",
        f"Unlearning: AdamW lr {lr}, weight decay 0.01, {steps} steps, 5 forget questions per step, "
        "5 retain questions per step for the methods with a retain term (weight 1), beta 0.1 "
        "(NPO, AltPO), 3 alternates per forget question for AltPO (one pair each). Metrics every "
        f"{eval_every} steps.",
        "",
        "## Reference points",
        "",
        header,
        rule,
        _row("retain model (target)", base_retain),
        _row("full model (before unlearning)", base_full),
        "",
        "## Each method over training",
        "",
    ]
    for run in runs:
        lines += [f"### {run.method}", "", header, rule]
        for i, step in enumerate(run.steps):
            lines.append(_row(f"step {step}", {k: v[i] for k, v in run.history.items()}))
        train_s, all_s = walls[run.method]
        lines += ["", f"Wall time: {train_s:.1f} s training, {all_s:.1f} s with evaluation.", ""]
    lines += [
        "## Summary (last checkpoint)",
        "",
        "| method | forget quality | best forget quality (step) | utility | value acc. forget / retain "
        "| well-formed | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        fq = run.history["forget_quality"]
        best = max(range(len(fq)), key=fq.__getitem__)
        lines.append(
            f"| {run.method} | {fq[-1]:.3g} | {fq[best]:.3g} ({run.steps[best]}) | "
            f"{run.history['model_utility'][-1]:.3f} | "
            f"{run.history['forget_value_accuracy'][-1]:.2f} / {run.history['retain_value_accuracy'][-1]:.2f} | "
            f"{run.history['fluency_well_formed'][-1]:.2f} | "
            f"{walls[run.method][0]:.1f} |"
        )
    lines += [
        "",
        f"Figure: `benchmarks/{fig_path.name}`. Total wall time {total:.0f} s.",
        "",
        "Fluency here is an offline stand-in (AltPO's code uses a downloaded gibberish classifier): "
        "the share of forget-set generations that parse as corpus sentences, and their mean "
        "per-token log-prob under the retain model.",
        "",
    ]
    out = HERE / f"results_lm_unlearning{suffix}.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out} and {fig_path} in {total:.0f} s")


if __name__ == "__main__":
    main()
