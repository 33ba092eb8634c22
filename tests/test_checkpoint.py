"""Checkpoints: safetensors + JSON, atomic, exact round trips, clear refusals of bad files."""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest
import torch

from atomizer.errors import OutputError, CheckpointError
from atomizer.training import checkpoint as ckpt_mod
from atomizer.training.checkpoint import (
    FORMAT_VERSION,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    read_record,
    save_checkpoint,
)
from atomizer.training.checkpoint_record import CheckpointContent, RngState
from atomizer.training.seed import capture_rng_state, restore_rng_state


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.98))
    for _ in range(2):
        loss = model(torch.randn(5, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def _save(tmp_path, name="ckpt-e0001-s000000002", **meta):
    model, opt = _model_and_optimizer()
    tensors, rng_meta = capture_rng_state()
    content = CheckpointContent(
        epoch=1, global_step=2, rng=[RngState.model_validate(rng_meta)], **meta
    )
    path = save_checkpoint(
        tmp_path / name,
        content,
        model_state=model.state_dict(),
        optimizer_state=opt.state_dict(),
        rng_tensors=tensors,
    )
    return path, model, opt


def test_round_trip_restores_weights_optimizer_and_continues_identically(tmp_path):
    path, model, opt = _save(tmp_path, experiment={"name": "x"})
    assert path.suffix == ".json" and path.with_suffix(".safetensors").exists()
    ck = load_checkpoint(path)
    assert ck.epoch == 1 and ck.global_step == 2 and ck.record.experiment == {"name": "x"}
    assert ck.record.format_version == FORMAT_VERSION
    model2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model2.load_state_dict(ck.model_state)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=5.0)
    opt2.load_state_dict(ck.optimizer_state_dict())
    assert opt2.param_groups[0]["lr"] == 1e-2 and opt2.param_groups[0]["betas"] == (0.9, 0.98)
    x = torch.randn(3, 4)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_files_are_json_and_safetensors_never_pickle(tmp_path):
    path, _, _ = _save(tmp_path)
    json.loads(path.read_text())  # plain JSON
    raw = path.with_suffix(".safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "atomizer-checkpoint"
    assert not raw.startswith(b"\x80")  # no pickle protocol marker
    assert any(k.startswith("optim.") for k in header) and any(k.startswith("rng.") for k in header)


def test_rng_state_round_trip():
    tensors, meta = capture_rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(tensors, json.loads(json.dumps(meta)))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    good, _, _ = _save(tmp_path, name="ckpt-e0001-s000000002")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod, "save_file", broken)
    with pytest.raises(OutputError, match="disk full; nothing was written"):
        _save(tmp_path, name="ckpt-e0002-s000000004")
    assert latest_checkpoint(tmp_path) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        good.name,
        good.with_suffix(".safetensors").name,
    ]


def test_latest_and_prune(tmp_path):
    for step in (2, 4, 6):
        _save(tmp_path, name=f"ckpt-e0001-s{step:09d}")
    assert latest_checkpoint(tmp_path).name == "ckpt-e0001-s000000006.json"
    removed = prune_checkpoints(tmp_path, keep=1)
    assert len(removed) == 2 and len(list_checkpoints(tmp_path)) == 1
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    # a folder resolves to its newest checkpoint
    assert load_checkpoint(tmp_path).path.name == "ckpt-e0001-s000000006.json"


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\x00\x01garbage", "invalid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"hello": 1}', "not an atomizer checkpoint"),
        (b"[1, 2]", "not an atomizer checkpoint"),
    ],
)
def test_not_a_checkpoint(tmp_path, content, match):
    path = tmp_path / "model.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_incompatible_version_and_mismatched_pair(tmp_path):
    path, _, _ = _save(tmp_path)
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(CheckpointError, match="incompatible"):
        read_record(path)
    path.write_text(json.dumps({**meta, "checkpoint_id": "0" * 32}))
    with pytest.raises(CheckpointError, match="does not belong"):
        load_checkpoint(path)
    path.write_text(json.dumps(meta))
    path.with_suffix(".safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)
    path.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


def test_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.json")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "w.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "w.safetensors")
