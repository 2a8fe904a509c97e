"""Damaged checkpoints are named, skipped on resume, and never half-loaded; saves never half-overwrite.

Fault injection: a tiny run saves checkpoints at steps 2, 4 and 6; each file of the newest one is
then damaged in turn (cut in half, bytes overwritten in the header or in the tensor data, deleted,
replaced by other valid content, JSON edited). The oracles: the message names the directory and the
file; ``load_latest_checkpoint`` warns and falls back to step 4; and the run resumed from there
ends bit for bit where an uninterrupted 8-step run of the same hand-written loop ends (the
checkpoint tests' oracle). "Unchanged" is checked against clones taken before the failed load.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from _tiny_run import build, train  # tests/_tiny_run.py
from safetensors.torch import load_file, save_file, save_model
from transformers import GPT2LMHeadModel

from prefopt_toy.lm.train.checkpoint import (
    CheckpointError,
    CheckpointWarning,
    latest_checkpoint,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)

FILES = ("model.safetensors", "state.safetensors", "checkpoint.json")


def snapshot(model, optimizer, scheduler, generators) -> dict:
    """Deep clones of everything a load may change."""
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "scheduler": copy.deepcopy(scheduler.state_dict()),
        "generators": {k: g.get_state().clone() for k, g in generators.items()},
        "global_rng": torch.get_rng_state().clone(),
    }


def _tree_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(_tree_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b) and len(a) == len(b) and all(_tree_equal(x, y) for x, y in zip(a, b))
        )
    return a == b


def assert_unchanged(before: dict, objects) -> None:
    after = snapshot(*objects)
    for part in before:
        assert _tree_equal(before[part], after[part]), f"the failed load changed the {part}"
    model = objects[0]
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # still tied


def assert_same_run(a, b) -> None:
    assert _tree_equal(snapshot(*a) | {"global_rng": None}, snapshot(*b) | {"global_rng": None})


def used_objects(seed: int):
    """Fresh objects (other seeds than the run's) that have trained a step: non-trivial state."""
    objects = build(init_seed=seed, data_seed=seed + 100)
    train(*objects, 1)
    return objects


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run directory with checkpoints at steps 2, 4, 6, and the uninterrupted 8-step run."""
    root = tmp_path_factory.mktemp("faults") / "run"
    train(*build(init_seed=0, data_seed=7), 6, run_dir=root, save_every=2)
    straight = build(init_seed=0, data_seed=7)
    train(*straight, 8)
    return root, straight


def _copy(saved_run, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(saved_run[0], run)
    return run


# ----------------------------------------------------------------------------- damage
def _edit_json(path: Path, edit) -> None:
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _overwrite(path: Path, at: float, n: int = 16) -> None:
    raw = bytearray(path.read_bytes())
    i = int(len(raw) * at)
    raw[i : i + n] = bytes((b ^ 0xA5) for b in raw[i : i + n])
    path.write_bytes(bytes(raw))


def _foreign_model(path: Path) -> None:  # a valid safetensors file of another architecture
    save_model(build(init_seed=5, data_seed=0, n_embd=8)[0], str(path))


def _foreign_state(path: Path) -> None:  # valid safetensors, other content
    tensors = load_file(str(path))
    save_file({k: torch.zeros_like(v) for k, v in tensors.items()}, str(path))


DAMAGES = {
    "truncated": (
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        r"truncated|not valid JSON",
    ),
    "empty": (lambda p: p.write_bytes(b""), r"truncated|not valid JSON"),
    "garbage header": (lambda p: _overwrite(p, 0.0), r"damaged|not valid JSON|not UTF-8"),
    "garbage data": (lambda p: _overwrite(p, 0.7), r"damaged|not valid JSON|not UTF-8|SHA-256"),
    "deleted": (lambda p: p.unlink(), r"missing"),
}
CASES = [(f, d) for f in FILES for d in DAMAGES] + [
    ("model.safetensors", "other valid weights"),
    ("state.safetensors", "other valid state"),
    ("checkpoint.json", "a JSON list"),
    ("checkpoint.json", "missing key"),
    ("checkpoint.json", "wrong type"),
    ("checkpoint.json", "mismatched step"),
    ("checkpoint.json", "edited value"),
]
EXTRA_DAMAGES = {
    "other valid weights": (_foreign_model, r"(truncated|damaged|longer)"),
    "other valid state": (_foreign_state, r"SHA-256|truncated|longer"),
    "a JSON list": (
        lambda p: p.write_text("[1, 2]"),
        r"holds a JSON list where an object is expected",
    ),
    "missing key": (
        lambda p: _edit_json(p, lambda m: m.pop("step")),
        r"has no 'step' \(a missing key",
    ),
    "wrong type": (
        lambda p: _edit_json(p, lambda m: m.update(extra=[1])),
        r"has a 'extra' that is not an object",
    ),
    "mismatched step": (
        lambda p: _edit_json(p, lambda m: m.update(step=5)),
        r"says step 5, but the directory is step-000000006",
    ),
    "edited value": (
        lambda p: _edit_json(p, lambda m: m["extra"].update(cursor=0)),
        r"does not match its recorded SHA-256",
    ),
}


def damage(path: Path, how: str) -> str:
    """Damage ``path``; return a regex of the reason the load must give."""
    action, reason = (DAMAGES | EXTRA_DAMAGES)[how]
    action(path)
    return reason


@pytest.mark.parametrize(("file", "how"), CASES, ids=[f"{f}-{d}" for f, d in CASES])
def test_a_damaged_file_is_named_changes_nothing_and_resume_falls_back(
    saved_run, tmp_path, file, how
):
    run = _copy(saved_run, tmp_path)
    newest = run / "step-000000006"
    reason = damage(newest / file, how)

    # a direct load names the checkpoint and the file, and changes nothing
    objects = used_objects(seed=11)
    before = snapshot(*objects)
    model, optimizer, scheduler, generators = objects
    with pytest.raises(CheckpointError, match=reason) as info:
        load_checkpoint(
            newest, model=model, optimizer=optimizer, scheduler=scheduler, generators=generators
        )
    err = info.value
    assert isinstance(err, ValueError) and err.checkpoint == newest and err.file == file
    assert str(newest) in str(err) and file in str(err)
    assert_unchanged(before, objects)

    # resume: warns naming the skipped folder and file, loads step 4, ends where the straight run does
    pattern = re.escape(str(newest)) + r".*" + re.escape(file)
    with pytest.warns(CheckpointWarning, match=pattern) as caught:
        state = load_latest_checkpoint(
            run, model=model, optimizer=optimizer, scheduler=scheduler, generators=generators
        )
    assert len(caught) == 1 and re.search(reason, str(caught[0].message))
    assert (
        state.step == 4 and state.path == run / "step-000000004" and state.extra == {"cursor": 16}
    )
    assert [e.file for e in state.skipped] == [file]
    train(*objects, 4, start=state.step)
    assert_same_run(saved_run[1], objects)


def test_the_normal_resume_emits_no_warning(saved_run, tmp_path, recwarn):
    run = _copy(saved_run, tmp_path)
    objects = used_objects(seed=12)
    state = load_latest_checkpoint(
        run, model=objects[0], optimizer=objects[1], scheduler=objects[2], generators=objects[3]
    )
    assert state.step == 6 and state.skipped == () and len(recwarn) == 0
    train(*objects, 2, start=6)
    assert_same_run(saved_run[1], objects)
    assert (
        load_latest_checkpoint(tmp_path / "nothing here", model=objects[0]) is None
    )  # a fresh start


def test_a_step_directory_without_its_manifest_is_skipped_with_a_warning(saved_run, tmp_path):
    run = _copy(saved_run, tmp_path)
    (run / "step-000000008").mkdir()  # e.g. a manifest deleted by hand; a save never leaves one
    objects = used_objects(seed=13)
    with pytest.warns(CheckpointWarning, match=r"step-000000008.*checkpoint\.json is missing"):
        state = load_latest_checkpoint(
            run, model=objects[0], optimizer=objects[1], scheduler=objects[2], generators=objects[3]
        )
    assert state.step == 6


def test_no_loadable_checkpoint_lists_every_one_tried_and_changes_nothing(saved_run, tmp_path):
    run = _copy(saved_run, tmp_path)
    damage(run / "step-000000006" / "model.safetensors", "truncated")
    damage(run / "step-000000004" / "checkpoint.json", "missing key")
    damage(run / "step-000000002" / "state.safetensors", "deleted")
    objects = used_objects(seed=14)
    before = snapshot(*objects)
    with pytest.raises(CheckpointError, match="has no checkpoint that loads") as info:
        load_latest_checkpoint(
            run, model=objects[0], optimizer=objects[1], scheduler=objects[2], generators=objects[3]
        )
    message = str(info.value)
    for step, file in ((6, "model.safetensors"), (4, "checkpoint.json"), (2, "state.safetensors")):
        assert f"step-00000000{step}': {file}" in message
    assert [(e.checkpoint.name, e.file) for e in info.value.tried] == [
        ("step-000000006", "model.safetensors"),
        ("step-000000004", "checkpoint.json"),
        ("step-000000002", "state.safetensors"),
    ]
    assert_unchanged(before, objects)


# ----------------------------------------------------------------------------- fit to the objects
def test_weights_of_another_shape_or_dtype_name_the_tensor_and_change_nothing(saved_run, tmp_path):
    path = saved_run[0] / "step-000000004"
    wider = build(init_seed=1, data_seed=1, n_embd=32)[0]
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors does not fit: model does not match the "
        r"weights: 'lm_head\.weight' has shape \(64, 16\), the model's is \(64, 32\); .* and \d+ more",
    ):
        load_checkpoint(path, model=wider)
    deeper = build(init_seed=1, data_seed=1, n_layer=2)[0]
    with pytest.raises(
        CheckpointError,
        match=r"the model's 'transformer\.h\.1\.ln_1\.weight', .* and 7 more are not in it "
        r"\(a checkpoint of another architecture\?\)",
    ):
        load_checkpoint(path, model=deeper)

    objects = used_objects(seed=15)
    objects[0].double()  # float64 weights: the float32 checkpoint must not be cast silently
    before = snapshot(*objects)
    with pytest.raises(
        CheckpointError,
        match=r"'lm_head\.weight' is torch\.float32, the model's is "
        r"torch\.float64",
    ):
        load_checkpoint(
            path,
            model=objects[0],
            optimizer=objects[1],
            scheduler=objects[2],
            generators=objects[3],
        )
    assert_unchanged(before, objects)


def test_a_state_that_does_not_fit_the_optimizer_or_scheduler_changes_nothing(saved_run):
    path = saved_run[0] / "step-000000004"
    objects = used_objects(seed=16)
    model, optimizer, _, generators = objects
    before = snapshot(*objects)
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.5, total_iters=4)
    before = snapshot(*objects)
    with pytest.raises(
        CheckpointError,
        match=r"does not fit the scheduler: its scheduler state has no "
        r"'end_factor'",
    ):
        load_checkpoint(
            path, model=model, optimizer=optimizer, scheduler=linear, generators=generators
        )
    assert_unchanged(before, objects)

    two_groups = torch.optim.AdamW(
        [{"params": list(model.parameters())[:2]}, {"params": list(model.parameters())[2:]}],
        lr=1e-2,
    )
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        CheckpointError, match=r"does not fit the optimizer: it has parameter groups of sizes"
    ):
        load_checkpoint(path, model=model, optimizer=two_groups)
    assert _tree_equal(weights, dict(model.state_dict()))


class _RefusingScheduler:
    """A scheduler whose state fits but whose own load refuses (the last step that can still fail)."""

    def __init__(self, inner):
        self.inner = inner

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        raise RuntimeError("this scheduler refuses")


def test_a_load_refused_while_applying_restores_the_optimizer(saved_run):
    path = saved_run[0] / "step-000000004"
    objects = used_objects(seed=17)
    model, optimizer, scheduler, generators = objects
    before = snapshot(*objects)
    with pytest.raises(
        CheckpointError, match=r"could not be applied \(RuntimeError: this scheduler refuses\)"
    ):
        load_checkpoint(
            path,
            model=model,
            optimizer=optimizer,
            scheduler=_RefusingScheduler(scheduler),
            generators=generators,
        )
    assert_unchanged(before, objects)
    train(*objects, 1)  # the restored optimizer still steps


# ----------------------------------------------------------------------------- version 1 files
def _as_version_1(path: Path) -> None:
    """Strip the integrity records: a checkpoint as written before they existed."""

    def edit(m):
        m.update(version=1)
        m.pop("files")
        m.pop("manifest_sha256")

    _edit_json(path / "checkpoint.json", edit)


def test_version_1_checkpoints_load_and_their_damage_is_named_by_the_parser(saved_run, tmp_path):
    run = _copy(saved_run, tmp_path)
    path = run / "step-000000004"
    _as_version_1(path)
    objects = build(init_seed=3, data_seed=3)
    assert (
        load_checkpoint(
            path,
            model=objects[0],
            optimizer=objects[1],
            scheduler=objects[2],
            generators=objects[3],
        ).step
        == 4
    )
    damage(path / "model.safetensors", "truncated")
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors is not a valid safetensors file \(truncated "
        r"or damaged\): .*not fully covered",
    ):
        load_checkpoint(path, model=objects[0])

    path = run / "step-000000006"
    _as_version_1(path)
    state = load_file(str(path / "state.safetensors"))
    state["generator/data"] = state["generator/data"][:100]
    del state["optimizer/3"]
    save_file(state, str(path / "state.safetensors"))
    with pytest.raises(
        CheckpointError,
        match=r"state\.safetensors has no tensor 'optimizer/3', which the "
        r"optimizer state in checkpoint\.json refers to",
    ):
        load_checkpoint(path, model=objects[0], optimizer=objects[1])
    before = snapshot(*objects)
    with pytest.raises(
        CheckpointError,
        match=r"state\.safetensors holds 'generator/data' as torch\.uint8 "
        r"\(100,\), but generator 'data' has a uint8",
    ):
        load_checkpoint(path, model=objects[0], generators=objects[3])
    assert_unchanged(before, objects)


def test_caller_mismatches_are_plain_value_errors_and_not_skipped(saved_run):
    model, optimizer, _, generators = build(init_seed=3, data_seed=3)
    with pytest.raises(ValueError, match=r"generators must have exactly the saved names") as info:
        load_latest_checkpoint(saved_run[0], model=model, generators={"data": generators["data"]})
    assert not isinstance(info.value, CheckpointError)
    with pytest.raises(ValueError, match="check_extra must be callable"):
        load_checkpoint(saved_run[0] / "step-000000004", model=model, check_extra=3)


def test_check_extra_refuses_a_checkpoint_and_resume_falls_back(saved_run):
    model, optimizer, scheduler, generators = build(init_seed=3, data_seed=3)

    def cursor_at_most_16(extra):
        if extra["cursor"] > 16:
            raise ValueError(f"cursor {extra['cursor']} is past the data")

    with pytest.warns(CheckpointWarning, match=r"step-000000006.*cursor 24 is past the data"):
        state = load_latest_checkpoint(
            saved_run[0],
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            generators=generators,
            check_extra=cursor_at_most_16,
        )
    assert state.step == 4


# ----------------------------------------------------------------------------- saving
def test_a_failed_replace_puts_the_previous_checkpoint_back(saved_run, tmp_path, monkeypatch):
    run = _copy(saved_run, tmp_path)
    path = run / "step-000000006"
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    model, optimizer, scheduler, generators = build(init_seed=4, data_seed=4)
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".tmp-step-"):  # the new checkpoint cannot be moved into place
            raise OSError("I/O error")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="I/O error"):
        save_checkpoint(run, step=6, model=model, optimizer=optimizer, generators=generators)
    monkeypatch.setattr(os, "rename", real_rename)
    assert sorted(p.name for p in run.iterdir()) == [
        "step-000000002",
        "step-000000004",
        "step-000000006",
    ]
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert latest_checkpoint(run) == path
    load_checkpoint(
        path, model=model, optimizer=optimizer, scheduler=scheduler, generators=generators
    )


def test_the_manifest_records_sizes_and_digests(saved_run):
    import hashlib

    path = saved_run[0] / "step-000000002"
    manifest = json.loads((path / "checkpoint.json").read_text())
    assert manifest["version"] == 2
    for name in ("model.safetensors", "state.safetensors"):
        raw = (path / name).read_bytes()
        assert manifest["files"][name] == {
            "bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert manifest["manifest_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()


# ----------------------------------------------------------------------------- the trainer
DATASET = [
    {"prompt": "My favourite fruit is", "chosen": " a cherry.", "rejected": " an apple."},
    {"prompt": "The best fruit is", "chosen": " a ripe banana.", "rejected": " a secret."},
    {"prompt": "I would like", "chosen": " a green apple.", "rejected": " nothing at all."},
    {"prompt": "Pick a fruit:", "chosen": " bananas.", "rejected": " hard to choose."},
]


@pytest.fixture(scope="module")
def tiny_gpt2():
    from prefopt_toy.lm.models.gpt2 import gpt2_config
    from prefopt_toy.lm.models.tokenizer import gpt2_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(gpt2_config("tiny"))  # untrained: the resume is what is tested
    return model.eval(), gpt2_tokenizer()


def _trainer_run(tiny_gpt2, run_dir, *, resume: bool = False):
    from prefopt_toy.lm.train.trainer import TrainConfig
    from prefopt_toy.lm.train.trainer import train as train_run

    base, tok = tiny_gpt2
    policy = copy.deepcopy(base)  # a fresh process: the initial weights
    config = TrainConfig(
        "dpo",
        beta=0.1,
        reduction="sum",
        batch_size=2,
        lr=1e-3,
        steps=4,
        max_length=32,
        max_new_tokens=4,
        seed=3,
        checkpoint_every=2,
        eval_every=2,
        n_eval=2,
        run_dir=str(run_dir),
    )
    summary = train_run(config, policy, base, tok, dataset=DATASET, resume=resume)
    return policy, summary


def test_train_resume_skips_a_damaged_checkpoint_and_ends_where_the_straight_run_does(
    tiny_gpt2, tmp_path
):
    from prefopt_toy.lm.train.runlog import read_run_log

    straight, _ = _trainer_run(tiny_gpt2, tmp_path / "a")
    _trainer_run(tiny_gpt2, tmp_path / "b")  # ran to step 4; its step-4 checkpoint is then damaged
    damage(tmp_path / "b" / "step-000000004" / "state.safetensors", "truncated")
    with pytest.warns(CheckpointWarning, match=r"step-000000004': state\.safetensors is truncated"):
        resumed, summary = _trainer_run(tiny_gpt2, tmp_path / "b", resume=True)
    assert summary["resumed_from"] == 2
    assert _tree_equal(dict(straight.state_dict()), dict(resumed.state_dict()))
    assert read_run_log(tmp_path / "b" / "run.jsonl") == read_run_log(tmp_path / "a" / "run.jsonl")
    # the damaged checkpoint was saved over when the run reached step 4 again
    load_checkpoint(tmp_path / "b" / "step-000000004", model=copy.deepcopy(resumed))

    # a log without any checkpoint (a crash before the first save): the resume starts a fresh log
    shutil.rmtree(tmp_path / "b" / "step-000000002")
    shutil.rmtree(tmp_path / "b" / "step-000000004")
    again, summary = _trainer_run(tiny_gpt2, tmp_path / "b", resume=True)
    assert summary["resumed_from"] == 0
    assert [r["step"] for r in read_run_log(tmp_path / "b" / "run.jsonl")] == [0, 1, 2, 3, 4]
    assert _tree_equal(dict(straight.state_dict()), dict(again.state_dict()))


def test_train_resume_with_no_loadable_checkpoint_says_what_was_tried(tiny_gpt2, tmp_path):
    _trainer_run(tiny_gpt2, tmp_path)
    damage(tmp_path / "step-000000004" / "model.safetensors", "garbage data")
    damage(tmp_path / "step-000000002" / "checkpoint.json", "truncated")
    with pytest.raises(
        CheckpointError,
        match=r"has no checkpoint that loads; tried, newest first:\n"
        r".*step-000000004': model\.safetensors is damaged.*\n"
        r".*step-000000002': checkpoint\.json is not valid JSON",
    ):
        _trainer_run(tiny_gpt2, tmp_path, resume=True)


# ----------------------------------------------------------------------------- the model cache
def _fake_training(
    model, tokenizer, texts, **kwargs
):  # the cache logic is tested, not the training
    return [1.0, 0.5]


def test_a_damaged_default_model_cache_is_named_and_retrained(tmp_path, monkeypatch, recwarn):
    from prefopt_toy.lm.models import gpt2 as models

    monkeypatch.setattr(models, "train_lm", _fake_training)
    first, _ = models.default_model("tiny", cache_dir=tmp_path, seed=0)
    (target,) = (tmp_path / "models").iterdir()
    again, _ = models.default_model("tiny", cache_dir=tmp_path, seed=0)
    assert len(recwarn) == 0 and _tree_equal(dict(first.state_dict()), dict(again.state_dict()))
    meta = json.loads((target / "prefopt_training.json").read_text())
    assert len(meta["model_sha256"]) == 64

    for file, how, reason in [
        ("model.safetensors", "truncated", r"is not a valid safetensors file"),
        (
            "model.safetensors",
            "garbage data",
            r"is damaged: its content does not match the SHA-256 recorded",
        ),
        ("config.json", "truncated", r"is not valid JSON"),
        ("model.safetensors", "deleted", r"is missing"),
    ]:
        damage(target / file, how)
        pattern = re.escape(str(target)) + r"' is damaged: " + re.escape(file) + " " + reason
        with pytest.warns(models.ModelCacheWarning, match=pattern):
            model, _ = models.default_model("tiny", cache_dir=tmp_path, seed=0)
        assert _tree_equal(dict(first.state_dict()), dict(model.state_dict())), (file, how)
        assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
            target.name
        ]  # nothing left aside


def test_load_model_names_a_damaged_file(tmp_path, monkeypatch):
    from prefopt_toy.lm.models.gpt2 import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build(init_seed=0, data_seed=0)[0]
    model.save_pretrained(tmp_path / "m")
    damage(tmp_path / "m" / "model.safetensors", "truncated")
    with pytest.raises(
        ValueError,
        match=re.escape(str(tmp_path / "m" / "model.safetensors"))
        + r"' is not a valid safetensors file \(truncated or damaged\)",
    ):
        load_model(tmp_path / "m")
    model.save_pretrained(tmp_path / "m")
    damage(tmp_path / "m" / "config.json", "truncated")
    with pytest.raises(ValueError, match=r"config\.json' is not valid JSON"):
        load_model(tmp_path / "m")

    # the same files in a Hugging Face cache layout, under a hub name
    snapshot = tmp_path / "hub" / "models--someone--tiny" / "snapshots" / ("0" * 40)
    model.save_pretrained(snapshot)
    (tmp_path / "hub" / "models--someone--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny" / "refs" / "main").write_text("0" * 40)
    assert _tree_equal(
        dict(load_model("someone/tiny", cache_dir=tmp_path / "hub").state_dict()),
        dict(model.state_dict()),
    )
    damage(snapshot / "model.safetensors", "garbage header")
    with pytest.raises(
        OSError,
        match=r"The Hugging Face cache of 'someone/tiny' is damaged: .*model\.safetensors' "
        r"is not a valid safetensors file",
    ):
        load_model("someone/tiny", cache_dir=tmp_path / "hub")


def test_non_finite_weights_are_never_saved_over_the_last_good_checkpoint(saved_run, tmp_path):
    from prefopt_toy.lm.train.checkpoint import NonFiniteLossError

    run = _copy(saved_run, tmp_path)
    model, optimizer, scheduler, generators = build(init_seed=4, data_seed=4)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("inf")
    with pytest.raises(
        NonFiniteLossError,
        match=r"model weight 'transformer\.h\.0\.mlp\.c_fc\.weight' holds inf "
        r"at step 8, so the checkpoint was not written; the last good "
        r"checkpoint is .*step-000000006",
    ) as info:
        save_checkpoint(run, step=8, model=model, optimizer=optimizer, generators=generators)
    assert info.value.last_good == run / "step-000000006"
    assert sorted(p.name for p in run.iterdir()) == [
        "step-000000002",
        "step-000000004",
        "step-000000006",
    ]
