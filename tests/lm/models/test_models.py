"""Tokenizer, GPT-2 configurations, the offline default model and ``load_model``.

Oracles: GPT-2's published token ids and parameter counts; a full-vocabulary log-softmax written
here; weights compared tensor by tensor.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from prefopt_toy.lm.models import gpt2 as models
from prefopt_toy.lm.models import pretrain
from prefopt_toy.lm.models.corpus import FRUIT_TASK, training_corpus
from prefopt_toy.lm.models.gpt2 import default_model, gpt2_config, load_model, train_lm
from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer


def test_tokenizer_is_gpt2():
    tok = gpt2_tokenizer()
    # Ids from GPT-2's encoder.json as documented by transformers' GPT2Tokenizer example
    # ("Hello world" -> [15496, 995]; " Hello world" -> [18435, 995]).
    assert tok("Hello world").input_ids == [15496, 995]
    assert tok(" Hello world").input_ids == [18435, 995]
    assert len(tok) == 50257
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 50256
    assert tok.pad_token_id == tok.eos_token_id and tok.padding_side == "left"
    assert tok.decode([15496, 995]) == "Hello world"
    assert gpt2_tokenizer() is tok  # cached


def _n_params(size):
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(gpt2_config(size))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "size, expected",
    # Parameter counts of the Hugging Face checkpoints gpt2 / gpt2-medium / gpt2-large (model cards).
    [("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080)],
)
def test_published_configs_have_gpt2_parameter_counts(size, expected):
    assert _n_params(size) == expected


def test_small_configs_and_bad_size():
    for size in ("tiny", "small"):
        cfg = gpt2_config(size)
        assert (
            cfg.vocab_size == 50257 and cfg.resid_pdrop == cfg.embd_pdrop == cfg.attn_pdrop == 0.0
        )
    with pytest.raises(ValueError, match="size"):
        gpt2_config("huge")
    with pytest.raises(ValueError, match="load_model"):
        default_model("gpt2")


def test_shared_unused_nll_equals_full_softmax():
    g = torch.Generator().manual_seed(0)
    v, c, used = 40, 6, torch.tensor([0, 3, 7, 11, 39])
    emb_used = torch.randn(len(used), c, generator=g, dtype=torch.float64)
    emb_unused = torch.randn(c, generator=g, dtype=torch.float64)
    full = emb_unused.repeat(v, 1)
    full[used] = emb_used
    h = torch.randn(9, c, generator=g, dtype=torch.float64)
    targets_used = torch.randint(0, len(used), (9,), generator=g)
    expected = F.cross_entropy(
        h @ full.T, used[targets_used], reduction="none"
    )  # full 40-way softmax
    got = pretrain._shared_unused_nll(h, targets_used, emb_used, emb_unused, v - len(used))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def _fresh_tiny(seed):
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(gpt2_config("tiny"))


def test_train_lm_is_deterministic_and_leaves_global_rng():
    tok = gpt2_tokenizer()
    texts = training_corpus(seed=0, n_lifted=40, n_sentiment=20)
    state = torch.get_rng_state()
    a, b, c = _fresh_tiny(0), _fresh_tiny(0), _fresh_tiny(0)
    train_lm(a, tok, texts, steps=3, batch_size=8, lr=1e-3, seed=1)
    train_lm(b, tok, texts, steps=3, batch_size=8, lr=1e-3, seed=1)
    train_lm(c, tok, texts, steps=3, batch_size=8, lr=1e-3, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    with pytest.raises(ValueError, match="steps"):
        train_lm(a, tok, texts, steps=0, batch_size=8, lr=1e-3, seed=0)


def _sequence_logprob(model, tok, prompt, completion):
    """log p(completion + EOS | prompt) with a plain forward pass and a full log-softmax."""
    p = tok(prompt).input_ids
    ids = p + tok(completion).input_ids + [tok.eos_token_id]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)  # (T, V)
    return sum(float(logp[t - 1, ids[t]]) for t in range(len(p), len(ids)))


def test_default_model_learned_the_corpus(tiny_lm):
    model, tok = tiny_lm
    assert not model.training and model.dtype == torch.float32
    texts = training_corpus(seed=0, n_lifted=60, n_sentiment=30)
    # Full-vocabulary next-token cross-entropy, from scratch: far below log(50257) = 10.8 nats.
    nll, n = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tok(text).input_ids + [tok.eos_token_id]
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            nll -= sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)))
            n += len(ids) - 1
    assert nll / n < 1.5 < math.log(50257)
    # Class probability mass under the model follows the corpus' skew apple > banana > cherry.
    prompt = FRUIT_TASK.prompt_templates[0]
    mass = {
        c: sum(math.exp(_sequence_logprob(model, tok, prompt, y)) for y in ys)
        for c, ys in FRUIT_TASK.classes.items()
    }
    assert mass["apple"] > mass["banana"] > mass["cherry"] > 0.02
    assert sum(mass.values()) > 0.5


def test_default_model_unused_tokens_share_one_row(tiny_lm):
    model, tok = tiny_lm
    wte = model.transformer.wte.weight
    used = {t for text in training_corpus(seed=0) for t in tok(text).input_ids} | {tok.eos_token_id}
    unused = torch.tensor(sorted(set(range(50257)) - used))
    assert torch.equal(wte[unused], wte[unused[:1]].expand(len(unused), -1))
    assert model.lm_head.weight is wte


def test_default_model_is_cached_as_safetensors(tiny_lm, tiny_cache, monkeypatch):
    (directory,) = list((tiny_cache / "models").iterdir())
    assert (directory / "model.safetensors").is_file()
    assert not list(directory.glob("*.bin"))

    def no_training(*args, **kwargs):
        raise AssertionError("default_model retrained instead of loading its cache")

    monkeypatch.setattr(models, "train_lm", no_training)
    again, _ = default_model("tiny", cache_dir=tiny_cache, seed=0)
    first = tiny_lm[0].state_dict()
    assert all(torch.equal(first[k], v) for k, v in again.state_dict().items())


def test_load_model_offline_without_weights_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(OSError, match="HF_HUB_OFFLINE") as info:
        load_model("gpt2", cache_dir=tmp_path / "hub")
    assert "default_model" in str(info.value) and "local directory" in str(info.value)


def test_load_model_local_directory(tmp_path):
    model = _fresh_tiny(3)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m", dtype=torch.float64)
    assert loaded.dtype == torch.float64 and not loaded.training
    ref = model.state_dict()
    assert all(torch.equal(ref[k].double(), v) for k, v in loaded.state_dict().items())


def test_load_model_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        load_model(tmp_path, dtype="float32")
