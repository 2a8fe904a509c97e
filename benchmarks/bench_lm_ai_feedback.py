"""AI feedback on GPT-2: an LM judge's class game, the exact toy's prediction, online IPO / DPO, self-rewarding.

Writes ``benchmarks/results_lm_ai_feedback.md`` (and ``results_lm_ai_feedback.json``). Small default
model (``default_model("small", seed=0)``, cached), one torch thread, CPU. Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_lm_ai_feedback.py

References: Lee et al., arXiv:2309.00267v3 (RLAIF); Zheng et al., arXiv:2306.05685v4 (position
bias); Yuan et al., arXiv:2401.10020v3 (self-rewarding); Guo et al., arXiv:2402.04792v2 (OAIF);
Calandriello et al., arXiv:2403.08635v1 (online IPO / DPO).
"""

from __future__ import annotations

import copy
import json
import platform
import time
from pathlib import Path

import torch

from prefopt_toy.lm.bridge.ai_feedback import (
    measure_judge_game,
    run_ai_feedback,
    sample_completions,
    self_rewarding,
)
from prefopt_toy.lm.bridge.class_estimate import total_variation
from prefopt_toy.lm.bridge.run import bridge_generator, lifted_judge
from prefopt_toy.lm.model_judge import LanguageModelJudge
from prefopt_toy.lm.models import FRUIT_TASK, default_model

HERE = Path(__file__).resolve().parent
SEED = 0
N_SAMPLES = 256
PER_CLASS = 6
STEPS = 40
TAU = 0.05
BETA = 0.05
LR = 5e-5
BATCH = 16
TOKENS = (" sweet", " dark")
PROMPT = FRUIT_TASK.prompt_templates[0]


def fmt(v) -> str:
    return ", ".join(f"{x:.3f}" for x in v)


def main() -> None:
    torch.set_num_threads(1)
    t_all = time.perf_counter()
    ref, tok = default_model("small", seed=SEED)
    lifted = lifted_judge(FRUIT_TASK, [[0.5] * 3] * 3)
    names = lifted.class_names
    texts, ids, mu = sample_completions(
        ref, tok, FRUIT_TASK, lifted, n=N_SAMPLES, generator=bridge_generator(SEED, "reference"),
        max_new_tokens=8,
    )  # fmt: skip
    out: dict = {"mu_class": mu.as_dict(), "judges": {}, "runs": {}, "self_rewarding": []}
    lines = [
        "# AI feedback on GPT-2: an LM judge, its class game and the exact toy's prediction",
        "",
    ]
    lines += [
        f"`benchmarks/bench_lm_ai_feedback.py`, {time.strftime('%Y-%m-%d')}, CPU ({platform.machine()}), "
        "one torch thread, small default GPT-2 (`default_model('small', seed=0)`), task `FRUIT_TASK`, "
        "8 new tokens. The machine's 2 cores were shared with other jobs: wall times are loose.",
        "",
        f"mu_class (reference, {N_SAMPLES} samples; {', '.join(names)}): {fmt(mu.probs)}",
        "",
        "## 1. The judge's class game for three choices of answer tokens",
        "",
        f"Raw class matrix R (mean J, class i in position 1) and P = (R + 1 - R^T)/2, on {PER_CLASS} "
        "reference completions per class (every ordered pair of two of them); position bias "
        "J(a,b) + J(b,a) - 1 over every unordered pair; token mass = p(t1) + p(t2) after the template.",
        "",
        "| tokens | token mass | bias mean | mean abs | consistent | first wins both | second wins both | max abs(P - 1/2) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    games = {}
    for tokens in (("1", "2"), (" red", " green"), TOKENS):
        judge = LanguageModelJudge(ref, tok, tokens=tokens, prompt=PROMPT)
        t0 = time.perf_counter()
        g = measure_judge_game(
            judge, texts, ids, len(names), per_class=PER_CLASS, class_names=names
        )
        games[tokens] = g
        print(tokens, g.P.tolist(), flush=True)
        pb = g.position_bias
        out["judges"][repr(tokens)] = {**g.as_dict(), "wall_s": time.perf_counter() - t0}
        lines.append(
            f"| {tokens!r} | {g.token_mass:.2e} | {pb.mean:+.3f} | {pb.mean_abs:.3f} | {pb.consistent:.3f} | "
            f"{pb.first_both:.3f} | {pb.second_both:.3f} | {float((g.P - 0.5).abs().max()):.4f} |"
        )
    g = games[TOKENS]
    lines += ["", f"The judge used below, tokens {TOKENS!r}:", "", "R =", "", "```"]
    lines += [" ".join(f"{x:.3f}" for x in row) for row in g.raw.tolist()] + [
        "```",
        "",
        "P =",
        "",
        "```",
    ]
    lines += [" ".join(f"{x:.3f}" for x in row) for row in g.P.tolist()] + ["```", ""]

    lines += [
        "## 2. Online IPO and online DPO with the frozen LM judge",
        "",
        f"{STEPS} steps of {BATCH} pairs, AdamW lr {LR} decaying linearly, soft labels, summed "
        f"log-probs; tau = {TAU} (IPO), beta = {BETA} (DPO); final class distribution on {N_SAMPLES} "
        "samples. Prediction: online IPO `regularized_nash(P, mu_class, tau)`, online DPO the end of "
        "the exact `online_dpo` run (20000 steps; its last-step change is the residual).",
        "",
        "| run | judge order | prediction | GPT-2 final | TV(final, pred) | TV(mu, pred) | TV(final, mu) | residual | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for alg, order, kw in (
        ("online_ipo", "both", {"tau": TAU}),
        ("online_ipo", "first", {"tau": TAU}),
        ("online_dpo", "both", {"beta": BETA}),
    ):
        judge = LanguageModelJudge(ref, tok, tokens=TOKENS, prompt=PROMPT, order=order)
        policy = copy.deepcopy(ref)
        res = run_ai_feedback(
            alg, policy, ref, tok, judge, steps=STEPS, lr=LR, batch_size=BATCH, seed=SEED,
            n_samples=N_SAMPLES, per_class=PER_CLASS, game=g, mu_class=mu, eval_every=20, n_eval=16, **kw,
        )  # fmt: skip
        out["runs"][f"{alg}/{order}"] = res.summary()
        lines.append(
            f"| {alg} | {order} | {fmt(res.prediction)} | {fmt(res.final.probs)} | **{res.tv:.3f}** | "
            f"{res.tv_start:.3f} | {total_variation(res.final.probs, mu.probs):.3f} | {res.residual:.1e} | {res.wall_s:.0f} |"
        )
        print(lines[-1], flush=True)

    lines += [
        "",
        "## 3. Self-rewarding: the judge is a frozen snapshot of the current policy",
        "",
        f"3 rounds of {STEPS // 3} online DPO steps (beta = {BETA}, lr {LR}, batch {BATCH}); the "
        "reference of each round is the snapshot (Yuan et al.'s M_t); class distributions on 128 "
        f"samples; the snapshot judge's game on {PER_CLASS} of its own completions per class.",
        "",
        "| round | start | bias mean | consistent | max abs(P - 1/2) | prediction | end | TV(end, pred) | TV(start, pred) | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    policy = copy.deepcopy(ref)
    rounds = self_rewarding(
        policy, ref, tok, rounds=3, beta=BETA, steps=STEPS // 3, lr=LR, batch_size=BATCH,
        seed=SEED, n_samples=128, per_class=PER_CLASS, judge_kwargs={"tokens": TOKENS},
    )  # fmt: skip
    for rd in rounds:
        out["self_rewarding"].append(rd.summary())
        pb = rd.game.position_bias
        lines.append(
            f"| {rd.round} | {fmt(rd.start.probs)} | {pb.mean:+.3f} | {pb.consistent:.3f} | "
            f"{float((rd.game.P - 0.5).abs().max()):.4f} | {fmt(rd.prediction)} | {fmt(rd.end.probs)} | "
            f"**{rd.tv:.3f}** | {rd.tv_start:.3f} | {rd.wall_s:.0f} |"
        )
        print(lines[-1], flush=True)
    lines += ["", f"Total wall time: {time.perf_counter() - t_all:.0f} s.", ""]
    (HERE / "results_lm_ai_feedback.json").write_text(json.dumps(out, indent=1))
    (HERE / "results_lm_ai_feedback.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
