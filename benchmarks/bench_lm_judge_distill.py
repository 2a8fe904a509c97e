"""A distilled judge on GPT-2: teach the small model a known raw class judge, measure it, train with it.

Writes ``benchmarks/results_lm_judge_distill.md`` (and ``results_lm_judge_distill.json``). Small
default model (``default_model("small", seed=0)``, cached), one torch thread, CPU (or the first
CUDA device with ``--device cuda``). Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lm_judge_distill.py --parts ab
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lm_judge_distill.py --parts abc
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lm_judge_distill.py --parts abcd

(a) distil: a copy of the small model is fine-tuned (``bridge.judge_distill.distill_judge``, soft
    labels, answer tokens "1"/"2") on judge prompts built from 256 reference completions (a pool
    drawn with its own generator, not the evaluation pool), labelled by the designed raw judge
    ``J = logit_shift_judge(P_ext, log 2)``; the model is cached (``cached_model``) under the
    model cache, keyed by everything that determines it.
(b) measure: the distilled judge's class game on the evaluation pool (the 2000 reference samples of
    ``bridge_generator(0, "reference")``, mu_class from all of them, the game from the first 6 of
    each class: the same completions as the first 256 of ``bench_lm_ai_feedback.py``'s pool), raw
    against J and symmetrised against ``symmetrize_judge(J)``, with ``judge_recovery``; the
    untrained "1"/"2" judge for scale; the online-IPO predictions from the measured and from the
    designed game.
(c) online IPO with the distilled judge (order "both" and "first"), ``run_ai_feedback`` with the
    measured game, compared with ``predict_ai_feedback``; final class estimates on 2000 samples.
    Slow on a CPU (minutes per run).
(d) online DPO with the distilled judge (order "both", beta 0.5, 200 steps), against the exact
    online DPO run's stationary point.

Distillation pairs are class-balanced by default (``balanced=True``); ``--uniform`` gives the first
run's uniform pairs, which leave the rare "other" class unlearned.

References: Lee et al., arXiv:2309.00267v3 (RLAIF); Hinton et al., arXiv:1503.02531v1
(distillation); Zheng et al., arXiv:2306.05685v4 (position bias); Calandriello et al.,
arXiv:2403.08635v1 (online IPO); Guo et al., arXiv:2402.04792v2 (online DPO).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import platform
import time
from pathlib import Path

import torch

from prefopt_toy.games.judges import logit_shift_judge, symmetrize_judge
from prefopt_toy.lm.bridge.ai_feedback import (
    measure_judge_game,
    predict_ai_feedback,
    run_ai_feedback,
    sample_completions,
)
from prefopt_toy.lm.bridge.class_estimate import total_variation
from prefopt_toy.lm.bridge.judge_distill import distill_judge, judge_recovery
from prefopt_toy.lm.bridge.run import bridge_generator, lifted_judge
from prefopt_toy.lm.model_judge import LanguageModelJudge
from prefopt_toy.lm.models import FRUIT_TASK, default_model
from prefopt_toy.lm.models.gpt2 import cached_model, default_cache_dir

HERE = Path(__file__).resolve().parent
OUT = HERE  # where the results go (--smoke: a temporary directory)
SIZE = "small"
CACHE = None  # the model cache (None: default_cache_dir(); --smoke: a temporary directory)
SEED = 0
N_SAMPLES = 256  # the distillation pool
N_EVAL = 2000  # the evaluation pool (mu_class) and the final class estimates
PER_CLASS = 6
PROMPT = FRUIT_TASK.prompt_templates[0]
# the design: cherry > banana > apple (the reverse of the corpus frequencies), every class beats
# "other" with 0.8, and a first-position bonus of log 2 nats (J = 2/3 on a tie)
P_DESIGN = [[0.5, 0.3, 0.2], [0.7, 0.5, 0.35], [0.8, 0.65, 0.5]]
OTHER_LOSES = 0.8
BIAS = math.log(2.0)
# distillation
POOL_SEED = 104729  # the training pool's own generator (the evaluation pool is bridge_generator)
DISTILL = {
    "steps": 200,
    "batch_size": 32,
    "lr": 5e-4,
    "seed": SEED,
    "labels": "soft",
    "balanced": True,
}
# online IPO
TAU = 0.2
DPO_BETA = 0.5  # online DPO (part d): its prediction is TV 0.35 from mu_class, away from IPO's
DPO_STEPS = 200  # it has further to go than online IPO (80 steps moved it 0.26 of the 0.35)
STEPS = 80
LR = 5e-5
BATCH = 16


def fmt(v) -> str:
    return ", ".join(f"{x:.3f}" for x in v)


def matrix(M) -> list[str]:
    return ["```"] + [" ".join(f"{x:.3f}" for x in row) for row in M.tolist()] + ["```", ""]


def fruit_errors(g, J) -> tuple[float, float]:
    """Mean and max abs(R - J) over the K fruit classes only ("other" left out)."""
    K = J.shape[0] - 1
    E = (g.raw[:K, :K] - J[:K, :K]).abs()
    return float(E.mean()), float(E.max())


def distilled_model(ref, tok, J, device):
    """The distilled judge's model, trained once and cached (``cached_model``)."""
    key = json.dumps(
        {
            "base": f"default_model({SIZE}, seed=0)",
            "P": P_DESIGN,
            "other_loses": OTHER_LOSES,
            "bias": BIAS,
            "pool_seed": POOL_SEED,
            "n_pool": N_SAMPLES,
            "prompt": PROMPT,
            "distill": DISTILL,
            "v": 1,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    root = default_cache_dir() if CACHE is None else CACHE
    target = root / "models" / f"judge-distill-{SIZE}-seed{SEED}-{digest}"

    def build():
        lifted = lifted_judge(FRUIT_TASK, P_DESIGN, other_loses=OTHER_LOSES)
        texts, ids, pool = sample_completions(
            ref, tok, FRUIT_TASK, lifted, n=N_SAMPLES,
            generator=torch.Generator().manual_seed(POOL_SEED), max_new_tokens=8,
        )  # fmt: skip
        student = copy.deepcopy(ref).to(device)
        t0 = time.perf_counter()
        dj = distill_judge(student, tok, texts, ids, J, prompt=PROMPT, **DISTILL)
        meta = {
            "pool": pool.as_dict(),
            "kl_first": dj.kl[0],
            "kl_last20": sum(dj.kl[-20:]) / 20,
            "loss_last20": sum(dj.losses[-20:]) / 20,
            "kl": dj.kl,
            "train_s": time.perf_counter() - t0,
            "device": str(device),
        }
        return student.cpu(), meta

    t0 = time.perf_counter()
    model = cached_model(target, build, what="distilled judge")
    meta = json.loads((target / "prefopt_training.json").read_text())  # cached_model's record
    meta["wall_s_this_run"] = time.perf_counter() - t0
    return model.to(device), meta, target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="ab", choices=["ab", "abc", "abcd"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--uniform",
        action="store_true",
        help="uniform distillation pairs (the default is class-balanced: the rare 'other' class is not learned otherwise)",
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a seconds-long check of every part on the tiny model (results and cache in a temp dir)",
    )
    args = ap.parse_args()
    if args.smoke:
        global OUT, SIZE, CACHE, N_SAMPLES, N_EVAL, STEPS, DPO_STEPS
        import tempfile

        OUT = CACHE = Path(tempfile.mkdtemp(prefix="bench_judge_distill_smoke-"))
        SIZE, N_SAMPLES, N_EVAL, STEPS, DPO_STEPS = "tiny", 64, 64, 2, 2
        DISTILL["steps"] = 10
    if args.uniform:
        DISTILL.pop("balanced")  # the first run's settings (and its cache key)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    t_all = time.perf_counter()
    ref, tok = default_model(SIZE, seed=SEED)
    ref = ref.to(device)
    lifted = lifted_judge(FRUIT_TASK, P_DESIGN, other_loses=OTHER_LOSES)
    names = lifted.class_names
    J = logit_shift_judge(lifted.P_ext, BIAS)
    S = symmetrize_judge(J)
    out: dict = {"J": J.tolist(), "P_sym": S.tolist(), "distill": DISTILL, "runs": {}}

    # (a) distil (or load the cached distilled model)
    student, meta, target = distilled_model(ref, tok, J, device)
    out["distill_meta"] = {k: v for k, v in meta.items() if k != "kl"}
    print("distilled:", target.name, out["distill_meta"], flush=True)

    # (b) measure on the evaluation pool
    texts, ids, mu = sample_completions(
        ref, tok, FRUIT_TASK, lifted, n=N_EVAL, generator=bridge_generator(SEED, "reference"),
        max_new_tokens=8,
    )  # fmt: skip
    games, recs = {}, {}
    for name, model in (("untrained", ref), ("distilled", student)):
        judge = LanguageModelJudge(model, tok, prompt=PROMPT)
        t0 = time.perf_counter()
        g = measure_judge_game(
            judge, texts, ids, len(names), per_class=PER_CLASS, class_names=names
        )
        games[name], recs[name] = g, judge_recovery(g, J)
        recs[name]["fruit_mean"], recs[name]["fruit_max"] = fruit_errors(g, J)
        out[name] = {**g.as_dict(), "recovery": recs[name], "wall_s": time.perf_counter() - t0}
        print(name, recs[name], flush=True)
    # the task's own 16 corpus phrases (4 per class, "other" included), the same measurement
    corpus = [t for c in FRUIT_TASK.class_names for t in FRUIT_TASK.classes[c]]
    corpus += list(FRUIT_TASK.other)
    name = "distilled, corpus phrases"
    games[name] = measure_judge_game(
        LanguageModelJudge(student, tok, prompt=PROMPT), corpus, lifted.classify(corpus),
        len(names), per_class=4, class_names=names,
    )  # fmt: skip
    recs[name] = judge_recovery(games[name], J)
    recs[name]["fruit_mean"], recs[name]["fruit_max"] = fruit_errors(games[name], J)
    out["distilled_corpus"] = {**games[name].as_dict(), "recovery": recs[name]}
    g = games["distilled"]
    pred_measured, _ = predict_ai_feedback("online_ipo", g.P, mu.probs, tau=TAU)
    pred_design, _ = predict_ai_feedback("online_ipo", S, mu.probs, tau=TAU)
    out["prediction"] = {"measured": pred_measured.tolist(), "design": pred_design.tolist()}

    lines = [
        "# A distilled judge on GPT-2: the small model taught a known raw class judge",
        "",
        f"`benchmarks/bench_lm_judge_distill.py --parts {args.parts}{' --uniform' if args.uniform else ''}`, {time.strftime('%Y-%m-%d')}, "
        f"{args.device} ({platform.machine()}), one torch thread, small default GPT-2 "
        "(`default_model('small', seed=0)`), task `FRUIT_TASK`, 8 new tokens, judge prompt "
        f"{PROMPT!r}, answer tokens '1' / '2'. Wall times are loose (shared machine).",
        "",
        f"Design: P on ({', '.join(names[:-1])}) = {P_DESIGN}, every class beats 'other' with "
        f"{OTHER_LOSES}; raw judge J = logit_shift_judge(P_ext, log 2) (first-position bonus "
        f"{BIAS:.4f} nats, J = 2/3 on a tie).",
        "",
        "J =",
        "",
        *matrix(J),
        "symmetrize_judge(J) =",
        "",
        *matrix(S),
        "## (a) Distillation",
        "",
        f"Pool: {N_SAMPLES} reference completions drawn with their own generator (seed {POOL_SEED}); "
        f"class shares {fmt(meta['pool']['probs'])}. {DISTILL['steps']} AdamW steps of "
        f"{DISTILL['batch_size']} fresh pairs "
        f"({'class-balanced' if DISTILL.get('balanced') else 'uniform'} draws), lr {DISTILL['lr']}, "
        "soft labels, 2-way cross-entropy "
        f"on the '1'/'2' logits. Mean KL(label || judge) of the first step {meta['kl_first']:.4f}, "
        f"of the last 20 steps {meta['kl_last20']:.4f}; training took {meta['train_s']:.0f} s "
        f"(on {meta['device']}; this run {'loaded it from the cache' if meta['wall_s_this_run'] < 0.5 * meta['train_s'] else 'trained it'}).",
        "",
        "## (b) The distilled judge's class game against the design",
        "",
        f"Evaluation pool: the {N_EVAL} reference samples of `bridge_generator(0, 'reference')` "
        f"(mu_class {fmt(mu.probs)}), the first {PER_CLASS} completions of each class, every ordered pair of two "
        "of them (`measure_judge_game`). Errors over the class entries with completions "
        "(`judge_recovery`). Third row: the same distilled judge on the task's 16 corpus phrases "
        "(4 per class; every one occurs in the training pool's phrasings).",
        "",
        "| judge (pool) | token mass | max abs(R - J) | mean abs(R - J) | mean, max abs(R - J) on the fruit classes | max abs(P - sym J) | mean abs(P - sym J) | max abs(B_R - B_J) | mean pair bias (measured) | (designed) | consistent |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("untrained", "distilled", "distilled, corpus phrases"):
        r, pb = recs[name], games[name].position_bias
        lines.append(
            f"| {name} | {r['token_mass']:.2e} | {r['raw_max']:.3f} | {r['raw_mean']:.3f} | "
            f"{r['fruit_mean']:.3f}, {r['fruit_max']:.3f} | "
            f"{r['P_max']:.3f} | {r['P_mean']:.3f} | {r['bias_max']:.3f} | {r['pair_bias']:+.3f} | "
            f"{r['pair_bias_designed']:+.3f} | {pb.consistent:.3f} |"
        )
    lines += ["", "Distilled R (raw, class i in position 1) =", "", *matrix(g.raw)]
    lines += ["Distilled P = symmetrize_judge(R) =", "", *matrix(g.P)]
    lines += [
        f"Online IPO prediction at tau = {TAU} (`regularized_nash`) from mu_class: with the "
        f"measured P {fmt(pred_measured)}; with the designed sym(J) {fmt(pred_design)}; "
        f"TV between the two {total_variation(pred_measured, pred_design):.4f}; "
        f"TV(mu_class, prediction from measured P) {total_variation(mu.probs, pred_measured):.3f}.",
        "",
        "## (c) Online IPO with the distilled judge",
        "",
    ]

    if "c" in args.parts:
        lines += [
            f"{STEPS} steps of {BATCH} pairs, AdamW lr {LR} decaying linearly, soft labels from the "
            f"distilled judge, summed log-probs, tau = {TAU}; final class distribution on "
            f"{N_EVAL} samples; prediction `regularized_nash(P_measured, mu_class, tau)`.",
            "",
            "| judge order | prediction | GPT-2 final | TV(final, pred) | TV(mu, pred) | TV(final, mu) | wall s |",
            "|---|---|---|---|---|---|---|",
        ]
        for order in ("both", "first"):
            judge = LanguageModelJudge(student, tok, prompt=PROMPT, order=order)
            policy = copy.deepcopy(ref)
            res = run_ai_feedback(
                "online_ipo", policy, ref, tok, judge, tau=TAU, steps=STEPS, lr=LR,
                batch_size=BATCH, seed=SEED, n_samples=N_EVAL, per_class=PER_CLASS, game=g,
                mu_class=mu, eval_every=20, n_eval=16,
            )  # fmt: skip
            out["runs"][order] = res.summary()
            lines.append(
                f"| {order} | {fmt(res.prediction)} | {fmt(res.final.probs)} | **{res.tv:.3f}** | "
                f"{res.tv_start:.3f} | {total_variation(res.final.probs, mu.probs):.3f} | {res.wall_s:.0f} |"
            )
            print(lines[-1], flush=True)
    else:
        lines += [
            "**Not run** (`--parts ab`): the online IPO runs (orders 'both' and 'first', "
            f"{STEPS} steps, tau = {TAU}) take several minutes each on a CPU. Run "
            "`benchmarks/bench_lm_judge_distill.py --parts abc` to fill this section.",
        ]
    lines += ["", "## (d) Online DPO with the distilled judge", ""]
    if "d" in args.parts:
        pred_dpo, res_dpo = predict_ai_feedback("online_dpo", g.P, mu.probs, beta=DPO_BETA)
        judge = LanguageModelJudge(student, tok, prompt=PROMPT, order="both")
        res = run_ai_feedback(
            "online_dpo", copy.deepcopy(ref), ref, tok, judge, beta=DPO_BETA, steps=DPO_STEPS, lr=LR,
            batch_size=BATCH, seed=SEED, n_samples=N_EVAL, per_class=PER_CLASS, game=g,
            mu_class=mu, eval_every=40, n_eval=16,
        )  # fmt: skip
        out["runs"]["online_dpo"] = res.summary()
        lines += [
            f"As (c) with online DPO at beta = {DPO_BETA} and {DPO_STEPS} steps (judge order 'both'); prediction: the "
            "stationary point of the exact online DPO run from mu_class on the measured P "
            f"(`predict_ai_feedback('online_dpo', ...)`, residual {res_dpo:.1e}); online IPO's "
            f"prediction for comparison: {fmt(pred_measured)}.",
            "",
            "| judge order | prediction | GPT-2 final | TV(final, pred) | TV(mu, pred) | TV(final, mu) | TV(final, online IPO's pred.) | wall s |",
            "|---|---|---|---|---|---|---|---|",
            f"| both | {fmt(res.prediction)} | {fmt(res.final.probs)} | **{res.tv:.3f}** | "
            f"{res.tv_start:.3f} | {total_variation(res.final.probs, mu.probs):.3f} | "
            f"{total_variation(res.final.probs, pred_measured):.3f} | {res.wall_s:.0f} |",
        ]
        print(lines[-1], flush=True)
    else:
        lines.append(
            "**Not run**: `--parts abcd` adds an online DPO run (several minutes on a CPU)."
        )
    lines += ["", f"Total wall time: {time.perf_counter() - t_all:.0f} s.", ""]
    (OUT / "results_lm_judge_distill.json").write_text(json.dumps(out, indent=1))
    (OUT / "results_lm_judge_distill.md").write_text("\n".join(lines))
    print("written to", OUT)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
