"""The rest of the DPO family in the GPT-2 trainer: KTO, ORPO, SimPO, R-DPO, DPOP and sDPO.

Oracles: a hand-written per-example forward pass (``log_softmax`` and a loop over the completion
tokens, as in ``test_trainer.py``) fed to the loss library's own functions
(``prefopt_toy.losses``: ``kto_loss``, ``orpo_loss``, ``simpo_loss``, ``rdpo_loss``,
``dpop_loss``), written independently of the trainer's batching; TRL's rotation of the KL
completions written out by hand; an uninterrupted run for the resumed one (bitwise); the policy's
own weights for sDPO's new reference.
"""

from __future__ import annotations

import copy
import math
import shutil

import pytest
import torch

from prefopt_toy.lm.data import (
    tokenize_completions,
    unpair_preference_examples,
    validate_unpaired_examples,
)
from prefopt_toy.lm.models.corpus import FRUIT_TASK
from prefopt_toy.lm.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from prefopt_toy.lm.train.runlog import read_run_log
from prefopt_toy.lm.train.trainer import TrainConfig, Trainer, train
from prefopt_toy.losses.reference_free import orpo_loss, simpo_loss
from prefopt_toy.losses.shaped import dpop_loss, rdpo_loss
from prefopt_toy.losses.unpaired import kto_loss

PROMPTS = list(FRUIT_TASK.prompt_templates)
DATASET = [
    {"prompt": PROMPTS[0], "chosen": " a cherry.", "rejected": " an apple."},
    {"prompt": PROMPTS[1], "chosen": " a ripe yellow banana.", "rejected": " a secret."},
    {"prompt": PROMPTS[2], "chosen": " a green apple.", "rejected": " a bowl of dark cherries."},
    {"prompt": PROMPTS[3], "chosen": " bananas, without a doubt.", "rejected": " hard to choose."},
    {"prompt": PROMPTS[0], "chosen": " a sweet red cherry.", "rejected": " a banana."},
    {"prompt": PROMPTS[2], "chosen": " an apple.", "rejected": " whatever is in season."},
]
UNPAIRED = unpair_preference_examples(DATASET)  # 12 rows: chosen True, rejected False


def _weights_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _hand(model, tok, prompt: str, completion: str, *, grad: bool):
    """(summed log-prob, length, per-token NLL terms) of completion + EOS after prompt, unpadded."""
    p_ids = tok(prompt).input_ids
    c_ids = tok(completion).input_ids + [tok.eos_token_id]
    ids = torch.tensor([p_ids + c_ids])
    with torch.set_grad_enabled(grad):
        logp = torch.log_softmax(
            model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0], dim=-1
        )
        terms = [logp[j - 1, int(ids[0, j])] for j in range(1, ids.shape[1])]  # every token
        comp = terms[len(p_ids) - 1 :]
    return sum(comp), len(c_ids), terms, comp


def _cfg(algorithm, **kw):
    reduction = "mean" if algorithm in ("orpo", "simpo") else "sum"
    base = dict(reduction=reduction, beta=0.5, batch_size=4, max_length=40, seed=5)
    return TrainConfig(algorithm, **{**base, **kw})


# ----------------------------------------------------------------------------- losses at step 0


@pytest.mark.parametrize(
    "algorithm, kw",
    [
        ("rdpo", {"rdpo_alpha": 0.3}),
        ("dpop", {"dpop_lambda": 2.0}),
        ("dpop", {"dpop_lambda": 2.0, "dpop_placement": "outside"}),
        ("orpo", {}),
        ("orpo", {"nll_tokens": "completion", "nll_reduction": "per_example_mean"}),
        ("simpo", {}),
        ("simpo", {"cpo_alpha": 1.0, "simpo_gamma": 0.2}),
        ("sdpo", {"sdpo_stages": 2}),
    ],
)
def test_pair_losses_at_step_0_match_the_loss_library_on_hand_log_probs(tiny_lm, algorithm, kw):
    model, tok = tiny_lm
    model = copy.deepcopy(model).double()
    trainer = Trainer(_cfg(algorithm, **kw), copy.deepcopy(model), model, tok, dataset=DATASET)
    cfg = trainer.config
    rows = trainer.next_indices()
    loss, metrics = trainer.offline_loss(rows)

    pcs, prs, lws, lls, all_terms, comp_terms = [], [], [], [], [], []
    for i in rows:
        ex = DATASET[i]
        pc, lw, terms, comp = _hand(model, tok, ex["prompt"], ex["chosen"], grad=False)
        pr, ll, _, _ = _hand(model, tok, ex["prompt"], ex["rejected"], grad=False)
        pcs.append(pc)
        prs.append(pr)
        lws.append(lw)
        lls.append(ll)
        all_terms += terms
        comp_terms.append(torch.stack(comp))
    pc, pr = torch.stack(pcs), torch.stack(prs)
    lw = torch.tensor(lws, dtype=torch.float64)
    ll = torch.tensor(lls, dtype=torch.float64)
    h = (pc - pc) - (pr - pr)  # policy == reference at step 0: every margin is 0
    if algorithm == "rdpo":
        expected = rdpo_loss(h, cfg.beta, cfg.rdpo_alpha, lw, ll)
    elif algorithm == "dpop":
        expected = dpop_loss(h, pc - pc, cfg.beta, cfg.dpop_lambda, cfg.dpop_placement)
    elif algorithm == "sdpo":
        expected = -torch.nn.functional.logsigmoid(cfg.beta * h)
    elif algorithm == "orpo":
        if cfg.nll_tokens == "prompt_and_completion":
            nll = -torch.stack(all_terms).mean()  # TRL: every scored token of the batch
        else:
            nll = torch.stack([-c.mean() for c in comp_terms])
        expected = orpo_loss(pc / lw, pr / ll, cfg.beta, nll)
    else:
        expected = simpo_loss(pc / lw, pr / ll, cfg.beta, cfg.simpo_gamma)
        if cfg.cpo_alpha:
            expected = expected + cfg.cpo_alpha * (-torch.cat(comp_terms).mean())
    assert float(loss.detach()) == pytest.approx(float(expected.mean()), rel=1e-9)
    assert "rewards/margins" in metrics
    if algorithm in ("orpo", "simpo"):
        assert "nll_loss" in metrics


def test_kto_step_0_matches_kto_loss_with_trls_mismatched_completions(tiny_lm):
    model, tok = tiny_lm
    model = copy.deepcopy(model).double()
    trainer = Trainer(_cfg("kto"), copy.deepcopy(model), model, tok, dataset=UNPAIRED)
    # TRL's rotation within chunks of batch_size, in dataset order (written out here)
    comps = [ex["completion"] for ex in UNPAIRED]
    rotated = []
    for s in range(0, len(comps), 4):
        chunk = comps[s : s + 4]
        rotated += chunk[-1:] + chunk[:-1]
    expect_kl = tokenize_completions(tok, [ex["prompt"] for ex in UNPAIRED], rotated, max_length=40)
    assert all(torch.equal(trainer.kl_rows[k], expect_kl[k]) for k in expect_kl)

    rows = trainer.next_indices()
    loss, metrics = trainer.offline_loss(rows)
    # policy == reference at step 0: every implied reward is 0, z0 = max(0, mean 0) = 0
    labels = torch.tensor([UNPAIRED[i]["label"] for i in rows])
    zeros = torch.zeros(len(rows), dtype=torch.float64)
    expected = kto_loss(zeros, torch.tensor(0.0, dtype=torch.float64), labels, 0.5, 1.0, 1.0)
    assert float(loss.detach()) == pytest.approx(float(expected.mean()), abs=1e-9)
    assert float(metrics["kl"]) == pytest.approx(0.0, abs=1e-9)
    # and the cached reference log-probs are the hand computation's
    i = rows[0]
    hand, _, _, _ = _hand(model, tok, UNPAIRED[i]["prompt"], UNPAIRED[i]["completion"], grad=False)
    assert float(trainer.ref_cache[0][i]) == pytest.approx(float(hand), rel=1e-10)


def test_kto_refuses_a_trailing_chunk_of_one_and_non_bool_labels(tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(ValueError, match="dataset .*mismatched"):
        Trainer(_cfg("kto", batch_size=5), copy.deepcopy(model), model, tok, dataset=UNPAIRED[:11])
    bad = [dict(UNPAIRED[0], label=1)] + UNPAIRED[1:]
    with pytest.raises(ValueError, match=r"dataset\[0\]\['label'\] must be a bool"):
        Trainer(_cfg("kto"), copy.deepcopy(model), model, tok, dataset=bad)
    # a numeric reference point needs no mismatched completions
    t = Trainer(
        _cfg("kto", batch_size=1, kto_reference_point=0.0),
        copy.deepcopy(model),
        model,
        tok,
        dataset=UNPAIRED[:3],
    )
    assert t.kl_rows is None


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "algorithm, kwargs, match",
    [
        ("rdpo", {}, "rdpo_alpha is required"),
        ("rdpo", {"rdpo_alpha": -1.0}, "rdpo_alpha must be >= 0"),
        ("dpo", {"rdpo_alpha": 0.1}, "rdpo_alpha is only used by algorithm 'rdpo'"),
        ("kto", {"reduction": "mean"}, "reduction must be 'sum' for algorithm 'kto'"),
        ("orpo", {"reduction": "sum"}, "reduction must be 'mean' for algorithm 'orpo'"),
        ("kto", {"kto_reference_point": "paper"}, "kto_reference_point must be one of"),
        ("kto", {"kto_reference_point": float("nan")}, "kto_reference_point must be one of"),
        ("kto", {"batch_size": 1}, "batch_size must be >= 2 for kto"),
        ("kto", {"desirable_weight": 0.0}, "desirable_weight must be > 0"),
        ("orpo", {"nll_tokens": "all"}, "nll_tokens must be one of"),
        ("simpo", {"cpo_alpha": -0.5}, "cpo_alpha must be >= 0"),
        ("simpo", {"simpo_gamma": "0.5"}, "simpo_gamma"),
        ("dpop", {"dpop_placement": "middle"}, "dpop_placement must be"),
        ("dpop", {"dpop_lambda": -1.0}, "dpop_lambda must be >= 0"),
        ("sdpo", {"sdpo_stages": 0}, "sdpo_stages"),
        ("sdpo", {"sdpo_stages": 20, "steps": 10}, "sdpo_stages .* must be <= steps"),
        ("sdpo", {"sdpo_split": [0.5, 0.6]}, "sdpo_split must sum to 1"),
        ("sdpo", {"sdpo_split": [1.0]}, "sdpo_split must hold sdpo_stages=2"),
        ("sdpo", {"sdpo_split": "ab"}, "sdpo_split must be None or a sequence"),
        ("ipo", {"sdpo_stages": 2, "tau": 0.1, "beta": None}, "sdpo_stages is only used"),
        ("kto", {"loss": "dpo"}, "uses loss 'kto'"),
        ("kto", {"tau": 0.1}, "tau is not used"),
    ],
)
def test_bad_family_config_raises_value_error_naming_the_field(algorithm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _cfg(algorithm, **kwargs)


def test_family_defaults():
    assert _cfg("kto").kto_reference_point == "trl"
    assert (_cfg("kto").desirable_weight, _cfg("kto").undesirable_weight) == (1.0, 1.0)
    assert _cfg("simpo").cpo_alpha == 0.0  # pure SimPO (TRL's CPOConfig defaults to 1)
    assert _cfg("simpo").simpo_gamma == 0.5
    assert (_cfg("orpo").nll_tokens, _cfg("orpo").nll_reduction) == (
        "prompt_and_completion",
        "batch_token_mean",
    )
    assert (_cfg("dpop").dpop_lambda, _cfg("dpop").dpop_placement) == (50.0, "inside")
    cfg = _cfg("sdpo", steps=10, sdpo_stages=3)
    assert cfg.sdpo_step_bounds() == [3, 7, 10]
    assert [cfg.sdpo_stage(t) for t in range(10)] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert _cfg("sdpo", steps=10, sdpo_split=[0.2, 0.8]).sdpo_step_bounds() == [2, 10]


# ----------------------------------------------------------------------------- sDPO


def test_sdpo_replaces_the_reference_by_the_policy_at_each_stage(tiny_lm):
    model, tok = tiny_lm
    ref = copy.deepcopy(model)
    trainer = Trainer(
        _cfg("sdpo", sdpo_stages=2, steps=4, batch_size=2, lr=1e-3),
        copy.deepcopy(model),
        ref,
        tok,
        dataset=DATASET,
    )
    assert trainer.sdpo_chunks == [(0, 3), (3, 6)]
    seen = []
    for _ in range(2):
        trainer.train_step()
        seen += trainer.order
    assert set(seen) <= {0, 1, 2}  # stage 0 trains on its chunk
    assert _weights_equal(ref, model)  # stage 0's reference is the initial model
    after_stage_0 = copy.deepcopy(trainer.model)
    trainer.train_step()  # enters stage 1 first
    assert trainer.stage == 1
    assert _weights_equal(trainer.ref_model, after_stage_0)
    assert set(trainer.order) == {3, 4, 5}
    # the reference cache is the new reference's
    fresh = trainer._reference_cache()
    assert torch.equal(fresh[0], trainer.ref_cache[0])


def _resume_from(model, tok, src, dst, step: int, common):
    """Copy run ``src`` to ``dst`` keeping checkpoints up to ``step``, and resume it to the end."""
    shutil.copytree(src, dst)
    for path in dst.glob("step-*"):
        if int(path.name.split("-")[1]) > step:
            shutil.rmtree(path)
    (dst / "run.jsonl").unlink()
    resumed, ref = copy.deepcopy(model), copy.deepcopy(model)
    summary = train(
        _cfg("sdpo", steps=6, run_dir=str(dst), **common),
        resumed,
        ref,
        tok,
        dataset=DATASET,
        resume=True,
    )
    return summary, resumed, ref


def test_sdpo_resumed_across_a_stage_ends_bitwise_where_the_uninterrupted_run_does(
    tiny_lm, tmp_path
):
    model, tok = tiny_lm
    common = dict(sdpo_stages=2, batch_size=2, lr=1e-3, checkpoint_every=1, seed=3)
    straight = copy.deepcopy(model)
    train(
        _cfg("sdpo", steps=6, run_dir=str(tmp_path / "a"), **common),
        straight,
        copy.deepcopy(model),
        tok,
        dataset=DATASET,
    )
    # stage 1 starts with step 4: checkpoint 3 is still stage 0, checkpoint 4 carries a reference
    assert not (tmp_path / "a" / "step-000000003" / "reference.safetensors").exists()
    assert (tmp_path / "a" / "step-000000004" / "reference.safetensors").is_file()

    summary, resumed, ref = _resume_from(model, tok, tmp_path / "a", tmp_path / "b", 3, common)
    assert summary["resumed_from"] == 3
    assert _weights_equal(straight, resumed)

    summary, resumed, ref = _resume_from(model, tok, tmp_path / "a", tmp_path / "c", 4, common)
    assert summary["resumed_from"] == 4
    assert _weights_equal(straight, resumed)
    assert not _weights_equal(ref, model)  # stage 1's reference, restored from the checkpoint


def test_checkpoint_reference_round_trip_and_damage_is_named(tmp_path):
    net, ref = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    path = save_checkpoint(tmp_path, step=1, model=net, reference=ref)
    other = torch.nn.Linear(2, 1)
    state = load_checkpoint(path, model=torch.nn.Linear(2, 1), reference=other)
    assert state.reference and _weights_equal(other, ref)
    plain = save_checkpoint(tmp_path, step=2, model=net)
    keep = torch.nn.Linear(2, 1)
    before = copy.deepcopy(keep)
    assert not load_checkpoint(plain, model=torch.nn.Linear(2, 1), reference=keep).reference
    assert _weights_equal(keep, before)
    (path / "reference.safetensors").write_bytes(b"cut")
    with pytest.raises(CheckpointError, match="reference.safetensors"):
        load_checkpoint(path, model=torch.nn.Linear(2, 1), reference=other)


# ----------------------------------------------------------------------------- run log


@pytest.mark.parametrize(
    "algorithm, kw, names",
    [
        ("kto", {}, ("kl", "rewards/chosen", "logps/rejected", "rewards/margins")),
        ("orpo", {}, ("nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/accuracies")),
        ("simpo", {}, ("nll_loss", "rewards/margins", "logps/chosen")),
        ("rdpo", {"rdpo_alpha": 0.1}, ("rewards/margins", "rewards/accuracies")),
        ("dpop", {}, ("rewards/margins", "logps/chosen")),
        ("sdpo", {}, ("rewards/margins", "sdpo/stage")),
    ],
)
def test_run_log_has_trls_metric_names(tiny_lm, tmp_path, algorithm, kw, names):
    model, tok = tiny_lm
    data = UNPAIRED if algorithm == "kto" else DATASET
    summary = train(
        _cfg(algorithm, steps=2, lr=1e-3, run_dir=str(tmp_path), **kw),
        copy.deepcopy(model),
        copy.deepcopy(model),
        tok,
        dataset=data,
    )
    log = read_run_log(summary["log"])
    assert [r["step"] for r in log] == [1, 2]
    for name in (*names, "loss", "grad_norm", "learning_rate"):
        assert name in log[-1] and math.isfinite(log[-1][name]), name


# ----------------------------------------------------------------------------- data


def test_unpaired_data_helpers(tiny_lm):
    _, tok = tiny_lm
    rows = unpair_preference_examples(DATASET[:1])
    assert rows == [
        {"prompt": PROMPTS[0], "completion": " a cherry.", "label": True},
        {"prompt": PROMPTS[0], "completion": " an apple.", "label": False},
    ]
    assert validate_unpaired_examples(rows) == rows
    with pytest.raises(ValueError, match=r"examples\[0\] is missing the key 'label'"):
        validate_unpaired_examples([{"prompt": "a", "completion": " b"}])
    batch = tokenize_completions(tok, ["a b"], [" c"], max_length=10)
    n_prompt, n_comp = len(tok("a b").input_ids), len(tok(" c").input_ids) + 1
    assert batch["completion_mask"].tolist() == [[0] * n_prompt + [1] * n_comp]
    with pytest.raises(ValueError, match=r"examples\[0\]: prompt \+ completion \+ EOS"):
        tokenize_completions(tok, ["a b"], [" c"], max_length=2)
