"""Time mixture generation with KV caches against TRL's GeometricMixtureWrapper, in one run.

Both sample 64 new tokens from the token-level geometric mixture
``log_softmax(m * ref_logits + (1 - m) * policy_logits)`` (m = 0.5) of two GPT-2 models of the same
shape, on the same left-padded prompts:

- ours: ``prefopt_toy.lm.sampling.sample(..., ref_model=ref, mixture=0.5)``, one KV cache per model,
  one new-token forward pass per model and step;
- TRL 1.13: ``GeometricMixtureWrapper(policy, ref, generation_config, mixture_coef=0.5).generate``,
  which turns the cache off and recomputes both models over the whole sequence at every step
  (its GenerationConfig must say ``use_cache=False`` as well: see the comment in ``main``).

No EOS (both generate exactly 64 tokens). Models are randomly initialised GPT-2 configurations with
GPT-2's vocabulary (50257 tokens): "tiny" (2 layers, 2 heads, width 64) and "small" (4 layers, 4
heads, width 128). Times are wall clock (``time.perf_counter``), median of repeats timed
round-robin (each repeat runs both samplers), after one untimed warm-up call of each. The script
prints a table and the ratio TRL / ours (> 1 means ours is faster); it writes no file.

Usage::

    python benchmarks/bench_lm_sampling.py            # tiny and small, 3 repeats
    python benchmarks/bench_lm_sampling.py --quick    # tiny only, 2 repeats

References: Munos et al., arXiv:2312.00886v4, App. F.1; TRL v1.13.0
``trl/experimental/nash_md/nash_md_trainer.py`` (``GeometricMixtureWrapper``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# TRL warns on every import of trl.experimental; the benchmark knows it is experimental
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

from prefopt_toy.lm.sampling import sample

SIZES = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64},
    "small": {"n_layer": 4, "n_head": 4, "n_embd": 128},
}
VOCAB = 50257
NEW_TOKENS = 64
MIXTURE = 0.5
BATCH = 8


def build(size: str, seed: int) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=VOCAB, n_positions=128, **SIZES[size])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config).eval()


def prompts(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BATCH left-padded prompts of 8 to 16 random tokens."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, 17, (BATCH,), generator=gen).tolist()
    T = max(lengths)
    ids = torch.zeros(BATCH, T, dtype=torch.int64)
    mask = torch.zeros(BATCH, T, dtype=torch.int64)
    for b, n in enumerate(lengths):
        ids[b, T - n :] = torch.randint(0, VOCAB, (n,), generator=gen)
        mask[b, T - n :] = 1
    return ids, mask


def time_size(size: str, repeats: int) -> None:
    """Time both samplers on one model size and print a table row."""
    from trl.experimental.nash_md.nash_md_trainer import GeometricMixtureWrapper

    policy, ref = build(size, 0), build(size, 1)
    ids, mask = prompts(0)
    # use_cache=False here too: with transformers 5.23, generate() otherwise feeds the wrapper only
    # the last token at each step while the wrapper turns the cache off (no context at all)
    gen_config = GenerationConfig(
        use_cache=False,
        max_new_tokens=NEW_TOKENS,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        pad_token_id=0,
        eos_token_id=None,
    )
    wrapper = GeometricMixtureWrapper(
        policy, ref, gen_config, mixture_coef=MIXTURE, device=torch.device("cpu")
    )

    def ours() -> int:
        out = sample(
            policy,
            ids,
            mask,
            max_new_tokens=NEW_TOKENS,
            generator=torch.Generator().manual_seed(0),
            eos_token_id=None,
            ref_model=ref,
            mixture=MIXTURE,
        )
        return out.completion_ids.shape[1]

    def trl() -> int:
        with torch.no_grad():
            out = wrapper.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config)
        return out.shape[1] - ids.shape[1]

    assert ours() == NEW_TOKENS and trl() == NEW_TOKENS  # warm-up, and both generate 64 tokens
    t_ours, t_trl = [], []
    for _ in range(repeats):
        for fn, times in ((ours, t_ours), (trl, t_trl)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    a, b = statistics.median(t_ours), statistics.median(t_trl)
    n_params = sum(p.numel() for p in policy.parameters())
    print(
        f"| {size} | {n_params / 1e6:.2f}M | {a:.3f} | {b:.3f} | {b / a:.1f} | {BATCH * NEW_TOKENS / a:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model only, 2 repeats")
    args = parser.parse_args()

    sizes = ["tiny"] if args.quick else ["tiny", "small"]
    repeats = 2 if args.quick else 3
    print(f"# mixture generation, {NEW_TOKENS} new tokens, batch {BATCH}, mixture {MIXTURE}")
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print("| model | params | ours (s) | TRL wrapper (s) | TRL / ours | ours tokens/s |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        time_size(size, repeats)


if __name__ == "__main__":
    main()
