"""Checkpoints resume a GPT-2 training run bitwise; saves are atomic; a non-finite loss stops the run.

The oracle of the resume tests is an uninterrupted run of the same hand-written training loop (a tiny
GPT-2, AdamW, a StepLR schedule, seeded generators drawing random token batches): the run that was
stopped after 4 steps, saved, rebuilt from fresh objects, restored and trained 6 more steps must end
with the same bits (``torch.equal``). A negative control shows the test can fail: without restoring
the generators the runs differ.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from _tiny_run import VOCAB, build, train  # tests/_tiny_run.py
from transformers import GPT2Config, GPT2LMHeadModel

import prefopt_toy.lm.train.checkpoint as ckpt
from prefopt_toy.lm.train.checkpoint import (
    NonFiniteLossError,
    check_finite,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def assert_same_run(a, b) -> None:
    (model_a, opt_a, sched_a, gens_a), (model_b, opt_b, sched_b, gens_b) = a, b
    for (name, pa), (_, pb) in zip(
        model_a.state_dict().items(), model_b.state_dict().items(), strict=True
    ):
        assert torch.equal(pa, pb), name
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for idx in sa["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][idx][key], sb["state"][idx][key]), (idx, key)
    assert sched_a.state_dict() == sched_b.state_dict()
    for name in gens_a:
        assert torch.equal(gens_a[name].get_state(), gens_b[name].get_state()), name


def test_resume_ends_where_an_uninterrupted_run_does(tmp_path):
    straight = build(init_seed=0, data_seed=7)
    train(*straight, 10)

    first = build(init_seed=0, data_seed=7)
    train(*first, 4)
    model, optimizer, scheduler, generators = first
    path = save_checkpoint(tmp_path, step=4, model=model, optimizer=optimizer, scheduler=scheduler,
                           generators=generators, extra={"cursor": 16, "note": "after 4 steps"})  # fmt: skip
    del first, model, optimizer, scheduler, generators

    # fresh objects with a different init and different seeds: everything must come from the file
    resumed = build(init_seed=123, data_seed=999)
    model, optimizer, scheduler, generators = resumed
    state = load_checkpoint(latest_checkpoint(tmp_path), model=model, optimizer=optimizer,
                            scheduler=scheduler, generators=generators)  # fmt: skip
    assert state.path == path and state.step == 4
    assert state.extra == {"cursor": 16, "note": "after 4 steps"}
    assert state.generators == ("data", "noise")
    train(*resumed, 6, start=state.step)
    assert_same_run(straight, resumed)


def test_resume_without_the_generators_diverges(tmp_path):
    """Negative control: the resume test above can fail."""
    straight = build(init_seed=0, data_seed=7)
    train(*straight, 10)
    first = build(init_seed=0, data_seed=7)
    train(*first, 4)
    save_checkpoint(
        tmp_path,
        step=4,
        model=first[0],
        optimizer=first[1],
        scheduler=first[2],
        generators=first[3],
    )
    resumed = build(init_seed=0, data_seed=7)  # generators restart from their seeds
    load_checkpoint(
        tmp_path / "step-000000004", model=resumed[0], optimizer=resumed[1], scheduler=resumed[2]
    )
    train(*resumed, 6, start=4)
    assert not torch.equal(straight[0].transformer.wte.weight, resumed[0].transformer.wte.weight)


def _dropout_run(run_dir, *, restore_global_rng: bool):
    # Dropout draws from the global CPU RNG; fork_rng keeps this test from changing it for others.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        straight = build(init_seed=0, data_seed=7, dropout=0.1)
        train(*straight, 6)

        torch.manual_seed(5)
        first = build(init_seed=0, data_seed=7, dropout=0.1)
        train(*first, 2)
        path = save_checkpoint(run_dir, step=2, model=first[0], optimizer=first[1], scheduler=first[2],
                               generators=first[3], include_global_rng=True)  # fmt: skip
        torch.manual_seed(77)  # a restart begins with some other global state
        resumed = build(init_seed=1, data_seed=8, dropout=0.1)
        load_checkpoint(path, model=resumed[0], optimizer=resumed[1], scheduler=resumed[2],
                        generators=resumed[3], restore_global_rng=restore_global_rng)  # fmt: skip
        train(*resumed, 4, start=2)
    return straight, resumed


def test_resume_with_dropout_needs_the_global_rng(tmp_path):
    straight, resumed = _dropout_run(tmp_path / "a", restore_global_rng=True)
    assert_same_run(straight, resumed)
    # negative control: without the global RNG state the dropout masks differ
    straight, resumed = _dropout_run(tmp_path / "b", restore_global_rng=False)
    assert not torch.equal(straight[0].transformer.wte.weight, resumed[0].transformer.wte.weight)


def test_tied_weights_stay_tied_after_loading(tmp_path):
    model = build(init_seed=0, data_seed=7)[0]
    save_checkpoint(tmp_path, step=0, model=model)
    fresh = build(init_seed=3, data_seed=7)[0]
    load_checkpoint(tmp_path / "step-000000000", model=fresh)
    assert fresh.lm_head.weight.data_ptr() == fresh.transformer.wte.weight.data_ptr()
    assert torch.equal(fresh.lm_head.weight, model.transformer.wte.weight)


def _safetensors_header(path: Path) -> dict:
    """Parse a safetensors header by hand: 8-byte little-endian length, then JSON."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length])


def test_a_checkpoint_holds_safetensors_and_json_only(tmp_path, monkeypatch):
    model, optimizer, scheduler, generators = build(init_seed=0, data_seed=7)
    train(model, optimizer, scheduler, generators, 2)
    path = save_checkpoint(tmp_path, step=2, model=model, optimizer=optimizer, scheduler=scheduler,
                           generators=generators, include_global_rng=True)  # fmt: skip
    assert sorted(p.name for p in path.iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
        "state.safetensors",
    ]
    for name in ("model.safetensors", "state.safetensors"):
        # the whole file is a safetensors layout: header length, JSON header, tensor bytes, nothing else
        raw = (path / name).read_bytes()
        header = _safetensors_header(path / name)
        data_end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
        assert len(raw) == 8 + struct.unpack("<Q", raw[:8])[0] + data_end
    state_header = _safetensors_header(path / "state.safetensors")
    assert state_header["generator/data"]["dtype"] == "U8"
    assert state_header["global_rng/cpu"]["dtype"] == "U8"
    assert sum(k.startswith("optimizer/") for k in state_header) == 3 * len(
        list(model.parameters())
    )
    model_header = _safetensors_header(path / "model.safetensors")
    assert len([k for k in model_header if k != "__metadata__"]) == len(
        list(model.parameters())
    )  # tied once
    manifest = json.loads((path / "checkpoint.json").read_text())
    assert manifest["step"] == 2 and manifest["optimizer"]["param_groups"][0]["lr"] == 1e-2

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    fresh = build(init_seed=1, data_seed=8)
    load_checkpoint(
        path, model=fresh[0], optimizer=fresh[1], scheduler=fresh[2], generators=fresh[3]
    )
    assert torch.equal(
        fresh[1].state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert isinstance(fresh[1].param_groups[0]["betas"], tuple)  # the tuple survived JSON


def _digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_an_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler, generators = build(init_seed=0, data_seed=7)
    train(model, optimizer, scheduler, generators, 4)
    good = save_checkpoint(
        tmp_path, step=4, model=model, optimizer=optimizer, generators=generators
    )
    before = _digest(good)
    weights_at_4 = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, optimizer, scheduler, generators, 2, start=4)

    real_save_file = ckpt.save_file

    def dies_halfway(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt, "save_file", dies_halfway)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, step=6, model=model, optimizer=optimizer, generators=generators)
    monkeypatch.setattr(ckpt, "save_file", real_save_file)

    assert [p.name for p in tmp_path.iterdir()] == ["step-000000004"]  # no step-6, no temp dir left
    # a killed process leaves a temp dir, and a step dir without its manifest: both are ignored
    (tmp_path / ".tmp-step-abc").mkdir()
    (tmp_path / ".tmp-step-abc" / "model.safetensors").write_bytes(b"junk")
    (tmp_path / "step-000000006").mkdir()
    assert latest_checkpoint(tmp_path) == good
    assert list_checkpoints(tmp_path) == [good]
    assert _digest(good) == before
    fresh = build(init_seed=1, data_seed=8)
    load_checkpoint(good, model=fresh[0], optimizer=fresh[1], generators=fresh[3])
    for name, value in fresh[0].state_dict().items():
        assert torch.equal(value, weights_at_4[name]), name


def test_keep_last_and_replacing_a_step(tmp_path):
    model = build(init_seed=0, data_seed=7)[0]
    for step in (1, 2, 3, 4, 5):
        save_checkpoint(tmp_path, step=step, model=model, keep_last=2, extra={"s": step})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000004", "step-000000005"]
    save_checkpoint(tmp_path, step=5, model=model, extra={"s": "again"})
    assert load_checkpoint(latest_checkpoint(tmp_path), model=model).extra == {"s": "again"}
    # an older step saved with keep_last never deletes the later checkpoints
    save_checkpoint(tmp_path, step=3, model=model, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-000000003",
        "step-000000004",
        "step-000000005",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000000003",
        "step-000000004",
        "step-000000005",
    ]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    model, optimizer, scheduler, generators = build(init_seed=0, data_seed=7)
    with pytest.raises(NonFiniteLossError) as info:
        train(
            model,
            optimizer,
            scheduler,
            generators,
            10,
            inject_nan_at=7,
            run_dir=tmp_path,
            save_every=2,
        )
    err = info.value
    last_good = tmp_path / "step-000000006"
    assert err.step == 7 and err.last_good == last_good
    assert str(err.value) == "nan"
    message = str(err)
    assert "loss became nan at step 7" in message
    assert str(last_good) in message and "learning rate" in message
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"step-00000000{s}" for s in (2, 4, 6)]
    # the NaN never reached the weights, and step 6 resumes into the same weights
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    fresh = build(init_seed=1, data_seed=8)
    load_checkpoint(
        last_good, model=fresh[0], optimizer=fresh[1], scheduler=fresh[2], generators=fresh[3]
    )
    for name, value in fresh[0].state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


@pytest.mark.parametrize(
    ("loss", "shown"),
    [
        (float("inf"), "inf"),
        (torch.tensor([0.5, float("-inf")]), "-inf"),
        (torch.tensor(float("nan"), dtype=torch.bfloat16), "nan"),
    ],
)
def test_check_finite_reports_the_value_and_says_when_there_is_no_checkpoint(loss, shown):
    with pytest.raises(
        NonFiniteLossError, match=f"loss became {shown} at step 3; there is no checkpoint yet"
    ):
        check_finite(loss, step=3, last_good=None)
    check_finite(torch.tensor([0.1, -2.0]), step=3, last_good=None)  # finite: no error
    check_finite(1, step=0, last_good=None)


# ----------------------------------------------------------------------------- bad input


class _Opaque:
    def state_dict(self):
        return {"fn": object()}


def test_bad_input(tmp_path):
    model, optimizer, _, generators = build(init_seed=0, data_seed=7)
    with pytest.raises(ValueError, match="step must be >= 0"):
        save_checkpoint(tmp_path, step=-1, model=model)
    with pytest.raises(ValueError, match="step must be an integer"):
        save_checkpoint(tmp_path, step=1.5, model=model)
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        save_checkpoint(tmp_path, step=1, model={"w": 1})
    with pytest.raises(ValueError, match="must be a torch.Generator"):
        save_checkpoint(tmp_path, step=1, model=model, generators={"data": 3})
    with pytest.raises(ValueError, match="extra must be JSON-serialisable"):
        save_checkpoint(tmp_path, step=1, model=model, extra={"x": float("nan")})
    with pytest.raises(ValueError, match="extra must be JSON-serialisable"):
        save_checkpoint(tmp_path, step=1, model=model, extra={"x": {1, 2}})
    with pytest.raises(ValueError, match="keep_last must be >= 1"):
        save_checkpoint(tmp_path, step=1, model=model, keep_last=0)
    with pytest.raises(
        ValueError, match=r"scheduler\['fn'\] is a object, which cannot be stored without pickle"
    ):
        save_checkpoint(tmp_path, step=1, model=model, scheduler=_Opaque())
    assert list(tmp_path.iterdir()) == []  # nothing half-written by the refused calls

    with pytest.raises(ValueError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path, model=model)
    path = save_checkpoint(tmp_path, step=1, model=model, generators={"data": generators["data"]})
    with pytest.raises(
        ValueError, match=r"generators must have exactly the saved names \['data'\]"
    ):
        load_checkpoint(path, model=model, generators=generators)
    with pytest.raises(ValueError, match="optimizer was given but the checkpoint"):
        load_checkpoint(path, model=model, optimizer=optimizer)
    with pytest.raises(ValueError, match="restore_global_rng=True but"):
        load_checkpoint(path, model=model, restore_global_rng=True)
    with torch.random.fork_rng(devices=[]):  # GPT-2's init draws from the global RNG
        other = GPT2LMHeadModel(
            GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=32)
        )
    with pytest.raises(ValueError, match="model does not match the weights"):
        load_checkpoint(path, model=other)
    with pytest.raises(ValueError, match="step must be >= 0"):
        check_finite(1.0, step=-2, last_good=None)
    with pytest.raises(ValueError, match="loss must be a tensor or a number"):
        check_finite("nan", step=1, last_good=None)
