"""Tests for prefopt_toy.lm.sampling: KV-cached sampling of the policy, reference and mixture.

Oracles: an uncached loop written here that recomputes the full forward pass at every step;
``log_softmax(m * ref_logits + (1 - m) * policy_logits)`` computed here from full-sequence logits;
TRL 1.13's ``GeometricMixtureWrapper`` (test-only peer).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from prefopt_toy.lm.sampling import draw_tokens, geometric_mixture_logprobs, sample

VOCAB = 23
EOS = 2
PAD = 0


def tiny_gpt2(seed: int, dtype: torch.dtype = torch.float32) -> GPT2LMHeadModel:
    """A 2-layer GPT-2 with random weights, seeded without touching the global RNG."""
    config = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        vocab_size=VOCAB,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=EOS,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        # larger weights than GPT-2's 0.02 init, so the next-token distributions are far from uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.data.normal_(0.0, 0.3)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def models() -> dict[str, GPT2LMHeadModel]:
    return {
        "policy": tiny_gpt2(0),
        "ref": tiny_gpt2(1),
        "policy64": tiny_gpt2(0, torch.float64),
        "ref64": tiny_gpt2(1, torch.float64),
    }


def left_padded(prompts: list[list[int]], pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (T - len(p)) + p for p in prompts], dtype=torch.int64)
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], dtype=torch.int64)
    return ids, mask


PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]


def seeded_sample(policy, ids, mask, *, n, seed, eos=None, **kwargs):
    """``sample``: ``n`` new tokens, a fresh generator seeded ``seed``, no EOS unless given."""
    gen = torch.Generator().manual_seed(seed)
    return sample(policy, ids, mask, max_new_tokens=n, generator=gen, eos_token_id=eos, **kwargs)


def extend(ids, mask, completion):
    """The prompts followed by their completions, and the mask of both (completions unmasked)."""
    seq = torch.cat([ids, completion], dim=1)
    return seq, torch.cat([mask, torch.ones_like(completion)], dim=1)


def token_logps(logp: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The entries of ``logp`` (B, N, V) at ``tokens`` (B, N), shape (B, N)."""
    return logp.gather(-1, tokens[..., None]).squeeze(-1)


def full_logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits of a whole (left-padded) sequence in one uncached pass, shape (B, L, V)."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits


def uncached_sample(policy, ref, ids, mask, *, n, seed, m, temperature, eos=None, pad=PAD):
    """Reference sampler: full forward pass at every step, mixture in float64 from the raw logits."""
    gen = torch.Generator().manual_seed(seed)
    seq, am = ids, mask
    finished = torch.zeros(ids.shape[0], dtype=torch.bool)
    out = []
    for _ in range(n):
        z_pi = full_logits(policy, seq, am)[:, -1].double()  # (B, V)
        z_mu = full_logits(ref, seq, am)[:, -1].double()  # (B, V)
        probs = torch.softmax((m * z_mu + (1 - m) * z_pi) / temperature, dim=-1)
        u = torch.rand(
            probs.shape[0], 1, generator=gen, dtype=torch.float64
        )  # the sampler's uniforms
        cdf = probs.to(torch.float64).cumsum(-1)
        token = (cdf <= u * cdf[:, -1:]).sum(
            -1
        )  # (B,) count of CDF values at or below u (inversion)
        token = torch.where(finished, torch.full_like(token, pad), token)
        out.append(token)
        if eos is not None:
            finished = finished | (token == eos)
            if bool(finished.all()):
                break
        seq = torch.cat([seq, token[:, None]], dim=1)
        am = torch.cat([am, torch.ones_like(am[:, :1])], dim=1)
    return torch.stack(out, dim=1)


def teacher_forced_mixture_logps(policy, ref, ids, mask, completion, m, temperature=1.0):
    """log-prob of each completion token under softmax((m z_ref + (1-m) z_pi) / T), shape (B, N)."""
    seq, am = extend(ids, mask, completion)
    T = ids.shape[1]
    z_pi = full_logits(policy, seq, am)[:, T - 1 : -1].double()  # (B, N, V)
    z_mu = full_logits(ref, seq, am)[:, T - 1 : -1].double()  # (B, N, V)
    logp = F.log_softmax((m * z_mu + (1 - m) * z_pi) / temperature, dim=-1)
    return token_logps(logp, completion)


# (a) the cached sampler draws exactly the tokens of the uncached loop


@pytest.mark.parametrize("m", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cached_sampler_matches_uncached_loop(models, m, temperature):
    ids, mask = left_padded(PROMPTS)
    got = seeded_sample(
        models["policy64"],
        ids,
        mask,
        n=12,
        seed=7,
        temperature=temperature,
        ref_model=models["ref64"],
        mixture=m,
    )
    want = uncached_sample(
        models["policy64"], models["ref64"], ids, mask, n=12, seed=7, m=m, temperature=temperature
    )
    assert torch.equal(got.completion_ids, want)
    assert torch.equal(got.completion_mask, torch.ones_like(want))
    # the draws are not degenerate: several distinct tokens were sampled
    assert len(torch.unique(want)) > 4


# (b) the per-token log-probs are those of log_softmax(m * z_ref + (1 - m) * z_pi)


@pytest.mark.parametrize("m", [0.0, 0.25, 0.5, 1.0])
def test_logps_are_the_geometric_mixture(models, m):
    ids, mask = left_padded(PROMPTS)
    got = seeded_sample(
        models["policy"], ids, mask, n=10, seed=3, ref_model=models["ref"], mixture=m
    )
    want = teacher_forced_mixture_logps(
        models["policy"], models["ref"], ids, mask, got.completion_ids, m
    )
    torch.testing.assert_close(got.logps.double(), want, atol=2e-5, rtol=0)


def test_mixture_endpoints_are_policy_and_reference(models):
    ids, mask = left_padded(PROMPTS)
    for m, name in [(0.0, "policy"), (1.0, "ref")]:
        got = seeded_sample(
            models["policy"], ids, mask, n=8, seed=5, ref_model=models["ref"], mixture=m
        )
        seq, am = extend(ids, mask, got.completion_ids)
        logp = F.log_softmax(full_logits(models[name], seq, am)[:, ids.shape[1] - 1 : -1], dim=-1)
        want = token_logps(logp, got.completion_ids)
        torch.testing.assert_close(got.logps, want, atol=2e-5, rtol=0)


def test_geometric_mixture_logprobs_formula():
    gen = torch.Generator().manual_seed(0)
    z_pi = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    z_mu = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    m = 0.3
    got = geometric_mixture_logprobs(z_pi, z_mu, m)
    # normalised pi^(1-m) mu^m, from the two softmaxes, one vocabulary entry at a time
    pi, mu = torch.softmax(z_pi, -1), torch.softmax(z_mu, -1)
    unnorm = pi ** (1 - m) * mu**m
    torch.testing.assert_close(
        got, torch.log(unnorm / unnorm.sum(-1, keepdim=True)), atol=1e-12, rtol=0
    )
    # bf16 logits are upcast before mixing
    assert geometric_mixture_logprobs(z_pi.bfloat16(), z_mu.bfloat16(), m).dtype == torch.float32


# (c) peer: TRL 1.13's GeometricMixtureWrapper gives the same next-token distribution


# importing trl.experimental warns that the API is experimental; the import is the point here
@pytest.mark.filterwarnings("ignore:You are importing from 'trl.experimental'")
@pytest.mark.parametrize("m", [0.2, 0.5, 0.9])
def test_matches_trl_geometric_mixture_wrapper(models, m):
    from transformers import GenerationConfig
    from trl.experimental.nash_md.nash_md_trainer import GeometricMixtureWrapper

    wrapper = GeometricMixtureWrapper(
        models["policy"],
        models["ref"],
        GenerationConfig(do_sample=True),
        mixture_coef=m,
        device=torch.device("cpu"),
    )
    ids, mask = left_padded(PROMPTS)
    got = seeded_sample(
        models["policy"], ids, mask, n=10, seed=11, ref_model=models["ref"], mixture=m
    )
    seq, am = extend(ids, mask, got.completion_ids)
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    trl_logp = wrapper(
        input_ids=seq, attention_mask=am, position_ids=pos, use_cache=False
    ).logits  # (B, L, V)
    # the whole next-token distribution, at every position
    z_pi, z_mu = full_logits(models["policy"], seq, am), full_logits(models["ref"], seq, am)
    torch.testing.assert_close(
        geometric_mixture_logprobs(z_pi, z_mu, m), trl_logp.clone(), atol=1e-5, rtol=0
    )
    # and the sampler's log-probs of its own tokens
    T = ids.shape[1]
    trl_tok = token_logps(trl_logp[:, T - 1 : -1], got.completion_ids)
    torch.testing.assert_close(got.logps, trl_tok.clone(), atol=2e-5, rtol=0)


# (d) EOS: tokens after the first EOS are masked and padded


def test_eos_masks_the_rest():
    policy, ref = tiny_gpt2(0, torch.float64), tiny_gpt2(1, torch.float64)
    ids, mask = left_padded(PROMPTS)
    n = 16
    free = seeded_sample(policy, ids, mask, n=n, seed=2, ref_model=ref, mixture=0.5)
    # pick as "EOS" a token that row 0 draws at step 3 and that is not drawn earlier in row 0
    row0 = free.completion_ids[0].tolist()
    eos = next(t for j, t in enumerate(row0) if j >= 3 and t not in row0[:j])
    pad = VOCAB - 1
    got = seeded_sample(
        policy, ids, mask, n=n, seed=2, eos=eos, pad_token_id=pad, ref_model=ref, mixture=0.5
    )
    # expected, by hand from the EOS-free run (same draws up to each row's first EOS)
    first = [row.index(eos) if eos in row else None for row in free.completion_ids.tolist()]
    N = n if any(f is None for f in first) else max(first) + 1
    assert got.completion_ids.shape == (len(PROMPTS), N)
    for b, f in enumerate(first):
        keep = N if f is None else f + 1
        assert got.completion_ids[b, :keep].tolist() == free.completion_ids[b, :keep].tolist()
        assert got.completion_ids[b, keep:].tolist() == [pad] * (N - keep)
        assert got.completion_mask[b].tolist() == [1] * keep + [0] * (N - keep)
        assert got.logps[b, keep:].tolist() == [0.0] * (N - keep)
        torch.testing.assert_close(got.logps[b, :keep], free.logps[b, :keep], atol=1e-12, rtol=0)
    assert first[0] is not None and first[0] >= 3


def test_stops_when_every_row_has_ended():
    policy = tiny_gpt2(0)
    ids, mask = left_padded([[5, 6, 7]])
    free = seeded_sample(policy, ids, mask, n=10, seed=4)
    eos = free.completion_ids[0, 4].item()
    j = free.completion_ids[0].tolist().index(eos)
    got = seeded_sample(policy, ids, mask, n=10, seed=4, eos=eos)
    assert got.completion_ids[0].tolist() == free.completion_ids[0, : j + 1].tolist()
    assert got.completion_mask.tolist() == [[1] * (j + 1)]


# (e) left padding


def test_left_padded_batch_gives_each_prompts_completion():
    # a tiny temperature makes sampling an argmax, so batch and single runs can be compared token
    # for token (a batch draws different uniforms per row than a single-row run)
    policy, ref = tiny_gpt2(0, torch.float64), tiny_gpt2(1, torch.float64)
    ids, mask = left_padded(PROMPTS)
    kwargs = {
        "max_new_tokens": 10,
        "eos_token_id": None,
        "temperature": 1e-6,
        "ref_model": ref,
        "mixture": 0.4,
    }
    batch = sample(policy, ids, mask, generator=torch.Generator().manual_seed(0), **kwargs)
    for b, prompt in enumerate(PROMPTS):
        alone = sample(
            policy,
            torch.tensor([prompt]),
            torch.ones(1, len(prompt), dtype=torch.int64),
            generator=torch.Generator().manual_seed(99),
            **kwargs,
        )
        assert batch.completion_ids[b].tolist() == alone.completion_ids[0].tolist()
    assert len({tuple(r) for r in batch.completion_ids.tolist()}) == len(PROMPTS)


def test_left_padded_batch_samples_each_prompts_distribution(models):
    # at temperature 1: the batch's tokens, teacher-forced through each prompt alone (no padding),
    # have the log-probs the sampler reports
    ids, mask = left_padded(PROMPTS, pad=17)
    got = seeded_sample(
        models["policy"], ids, mask, n=8, seed=1, ref_model=models["ref"], mixture=0.5
    )
    for b, prompt in enumerate(PROMPTS):
        p = torch.tensor([prompt])
        want = teacher_forced_mixture_logps(
            models["policy"],
            models["ref"],
            p,
            torch.ones_like(p),
            got.completion_ids[b : b + 1],
            0.5,
        )
        torch.testing.assert_close(got.logps[b : b + 1].double(), want, atol=2e-5, rtol=0)
    # the padding token's value is irrelevant
    ids2, _ = left_padded(PROMPTS, pad=3)
    again = seeded_sample(
        models["policy"], ids2, mask, n=8, seed=1, ref_model=models["ref"], mixture=0.5
    )
    assert torch.equal(again.completion_ids, got.completion_ids)


def test_training_flag_restored_and_dropout_off():
    policy = tiny_gpt2(0)
    ids, mask = left_padded(PROMPTS)
    kw = {"max_new_tokens": 6, "eos_token_id": None}
    evald = sample(policy, ids, mask, generator=torch.Generator().manual_seed(8), **kw)
    policy.train()
    trained = sample(policy, ids, mask, generator=torch.Generator().manual_seed(8), **kw)
    assert policy.training and all(mod.training for mod in policy.modules())
    assert torch.equal(evald.completion_ids, trained.completion_ids)
    torch.testing.assert_close(evald.logps, trained.logps, atol=0, rtol=0)


def test_bad_input(models):
    ids, mask = left_padded(PROMPTS)
    gen = torch.Generator().manual_seed(0)
    pol, ref = models["policy"], models["ref"]
    base = {"max_new_tokens": 4, "generator": gen, "eos_token_id": EOS}
    with pytest.raises(ValueError, match="mixture"):
        sample(pol, ids, mask, mixture=0.5, **base)
    with pytest.raises(ValueError, match="mixture"):
        sample(pol, ids, mask, mixture=1.5, ref_model=ref, **base)
    with pytest.raises(ValueError, match="temperature"):
        sample(pol, ids, mask, temperature=0.0, **base)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(pol, ids, mask, max_new_tokens=0, generator=gen, eos_token_id=EOS)
    with pytest.raises(ValueError, match="generator"):
        sample(pol, ids, mask, max_new_tokens=4, generator=0, eos_token_id=EOS)
    with pytest.raises(ValueError, match="left-padded"):
        sample(pol, ids, mask.flip(-1), **base)
    with pytest.raises(ValueError, match="attention_mask"):
        sample(pol, ids, mask[:, 1:], **base)
    with pytest.raises(ValueError, match="input_ids"):
        sample(pol, ids.float(), mask, **base)
    with pytest.raises(ValueError, match="same shape"):
        geometric_mixture_logprobs(torch.zeros(2, 5), torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="mixture"):
        geometric_mixture_logprobs(torch.zeros(5), torch.zeros(5), -0.1)


# importing trl.experimental warns that the API is experimental; the import is the point here
@pytest.mark.filterwarnings("ignore:You are importing from 'trl.experimental'")
def test_matches_trl_wrapper_greedy_generation():
    # TRL's greedy generation from the mixture against ours at a vanishing temperature (an argmax),
    # on unpadded prompts of one length (the wrapper's generate passes no position ids)
    from transformers import GenerationConfig
    from trl.experimental.nash_md.nash_md_trainer import GeometricMixtureWrapper

    policy, ref = tiny_gpt2(0, torch.float64), tiny_gpt2(1, torch.float64)
    # use_cache=False: with transformers 5.23 generate() otherwise feeds only the last token
    config = GenerationConfig(
        use_cache=False, do_sample=False, max_new_tokens=8, pad_token_id=PAD, eos_token_id=None
    )
    wrapper = GeometricMixtureWrapper(
        policy, ref, config, mixture_coef=0.6, device=torch.device("cpu")
    )
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        trl_out = wrapper.generate(input_ids=ids, attention_mask=mask, generation_config=config)[
            :, ids.shape[1] :
        ]
    ours = seeded_sample(
        policy, ids, mask, n=8, seed=0, temperature=1e-6, ref_model=ref, mixture=0.6
    )
    assert torch.equal(ours.completion_ids, trl_out)


# (f) the token draw: inversion of the float64 CDF


def test_draw_tokens_inverts_the_cdf_with_the_generators_uniforms():
    logp = torch.log_softmax(
        torch.randn(64, 300, generator=torch.Generator().manual_seed(0)) * 3, dim=-1
    )
    got = draw_tokens(logp, torch.Generator().manual_seed(5))
    u = torch.rand(64, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    p = logp.double().exp()
    # oracle: a per-row Python scan for the first index whose running sum exceeds u * total
    for b in range(64):
        target, run = float(u[b]) * float(p[b].sum()), 0.0
        idx = next(i for i, x in enumerate(p[b].tolist()) if (run := run + x) > target)
        assert int(got[b]) == idx


def test_draw_tokens_follows_the_law_and_never_draws_probability_zero():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05, 0.0])
    n = 200_000
    logp = probs.log().expand(n, -1)
    tokens = draw_tokens(logp, torch.Generator().manual_seed(1)).squeeze(-1)
    counts = torch.bincount(tokens, minlength=6).double()
    assert counts[1] == 0 and counts[5] == 0
    sd = (n * probs * (1 - probs)).sqrt()
    assert bool(((counts - n * probs).abs() <= 5 * sd + 1e-9).all()), counts.tolist()
