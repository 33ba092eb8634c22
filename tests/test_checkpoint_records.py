"""Checkpoint records are validated at the boundary: old versions load, hostile ones fail in a line.

Fixtures in ``fixtures/checkpoint-v1`` were written by atomizer 0.1.0 (format version 1): a
mid-epoch checkpoint of the toy trainer of ``test_trainer.py`` and a pretraining checkpoint of the
tiny encoder of ``test_pretrain.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from training_toys import ToyModelsPlugin, build_toy

from atomizer.cli.main import build_cli
from atomizer.errors import CheckpointError, LimitError
from atomizer.models.registry import plan_model
from atomizer.plugins.host import PluginHost
from atomizer.training.checkpoint import (
    CheckpointContent,
    load_checkpoint,
    load_weights,
    read_record,
    save_checkpoint,
)
from atomizer.training.runner import load_model

V1 = Path(__file__).parent / "fixtures" / "checkpoint-v1"


@pytest.fixture
def toy_host(tmp_path) -> PluginHost:
    return PluginHost(
        load_entrypoints=False,
        environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")},
        extra_plugins=(ToyModelsPlugin(),),
    )


def _toy_checkpoint(tmp_path: Path, **config) -> Path:
    model = build_toy(config)
    content = CheckpointContent(model_name="toy", model_params=model.config.model_dump())
    return save_checkpoint(tmp_path / "ckpt", content, model_state=model.state_dict())


def _rewrite(path: Path, **changes) -> None:
    record = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DROP:
            record.pop(key)
        else:
            record[key] = value
    path.write_text(json.dumps(record))


_DROP = object()


# --- old checkpoints ------------------------------------------------------------------------------
def test_a_version_1_training_checkpoint_loads_and_resumes(tmp_path):
    from test_trainer import make_trainer

    ref = read_record(V1 / "training.json")
    assert ref.record.format_version == 2 and ref.record.step_in_epoch == 2
    assert set(ref.record.running) == {"loss_sum", "samples"}
    assert ref.record.running["samples"] == 16
    ckpt = load_checkpoint(V1 / "training.json")
    load_weights(build_toy({"drop_p": 0.2}), ckpt.model_state, origin="v1", model_name="toy")
    # resume the old run to its end with this atomizer: it continues from step 2, writes version 2
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    shutil.copy(V1 / "training.json", folder / "ckpt-e0000-s000000002.json")
    shutil.copy(V1 / "training.safetensors", folder / "training.safetensors")
    result = make_trainer(tmp_path / "run", epochs=2, every=2).fit(resume=True)
    assert result.finished and result.global_step == 10
    assert read_record(result.checkpoint).record.format_version == 2


def test_a_version_1_pretraining_checkpoint_loads(tmp_path):
    from test_pretrain import TinyPlugin

    from atomizer.pretrain.checkpoint import load_checkpoint as load_pretrained

    host = PluginHost(load_entrypoints=False, environ={}, extra_plugins=(TinyPlugin(),))
    loaded = load_pretrained(V1 / "pretraining.json", host=host)
    assert loaded.record.method == "satmips-coupled"
    assert loaded.record.image_encoder.feature_dim == 8
    assert not loaded.model.training


# --- hostile records: one clear line each --------------------------------------------------------
@pytest.mark.parametrize(
    "changes, match",
    [
        ({"checkpoint_id": _DROP}, "checkpoint_id: required key 'checkpoint_id' is missing"),
        ({"epoch": "three"}, "epoch: Input should be a valid integer"),
        ({"global_step": -5}, "global_step: Input should be greater than or equal to 0"),
        ({"history": 5}, "history: Input should be a valid list"),
        ({"model_config": [1, 2]}, "model_config: Input should be a valid dictionary"),
        ({"weights_file": "../../x.safetensors"}, "weights_file: must be the name of a"),
        ({"weights_file": "/etc/passwd"}, "weights_file: must be the name of a"),
        ({"weights_file": "ckpt.json"}, "weights_file: must be the name of a"),
        ({"task": {"type": "regression", "num_classes": 3}}, "task.type: Input should be"),
        ({"checkpoint_id": "x" * 100_000}, "checkpoint_id: String should match pattern"),
        ({"format_version": True}, "format version True .* reads format versions 1, 2"),
        ({"format_version": 3}, "format version 3 .*load it with the atomizer version"),
        ({"surprise": 1}, "surprise: unknown key"),
    ],
)
def test_malformed_records_are_one_line_checkpoint_errors(tmp_path, changes, match):
    path = _toy_checkpoint(tmp_path)
    _rewrite(path, **changes)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(path) in message and len(message) < 600


def test_absurdly_deep_json_is_a_limit_error(tmp_path):
    path = tmp_path / "ckpt-e0000-s000000001.json"
    path.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(LimitError, match="nesting_depth|levels"):
        read_record(path)


def test_weights_that_do_not_fit_name_the_tensor_and_both_shapes(tmp_path, toy_host):
    path = _toy_checkpoint(tmp_path, width=16)
    record = json.loads(path.read_text())
    record["model_config"]["width"] = 8
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError) as info:
        load_model(path, host=toy_host)
    message = str(info.value)
    assert "tensor embed.weight has shape (16, 3) but the model expects (8, 3)" in message
    assert "(and 2 more mismatches)" in message and len(message.splitlines()) == 1


def test_missing_and_unexpected_tensors_are_named():
    model = build_toy({})
    state = dict(model.state_dict())
    state["extra.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"tensor extra.weight \(2\) is not in the model"):
        load_weights(model, state, origin="x", model_name="toy")
    state = dict(model.state_dict())
    del state["head.bias"]
    with pytest.raises(CheckpointError, match=r"tensor head.bias \(3\) is missing from the"):
        load_weights(model, state, origin="x", model_name="toy")


def test_a_huge_model_config_is_refused_before_allocating(tmp_path):
    host = PluginHost(load_entrypoints=False, environ={})
    with pytest.raises(LimitError, match="ATOMIZER_MAX_MODEL_PARAMETERS"):
        plan_model("atomizer-tiny", {"num_classes": 3, "latent_dim": 1_000_000}, host=host)
    # a checkpoint saying so fails the same way, before reading its (here absent) weights
    path = _toy_checkpoint(tmp_path)
    _rewrite(path, model_name="atomizer-tiny", model_config={"num_classes": 3, "latent_dim": 10**6})
    with pytest.raises(LimitError, match="model 'atomizer-tiny': .* parameters exceeds the limit"):
        load_model(path, host=host)


def test_the_parameter_limit_is_configurable(monkeypatch):
    host = PluginHost(load_entrypoints=False, environ={})
    plan = plan_model("atomizer-tiny", {"num_classes": 3}, host=host)
    assert plan.parameters > 1000 and plan.config["num_classes"] == 3
    monkeypatch.setenv("ATOMIZER_MAX_MODEL_PARAMETERS", "1000")
    with pytest.raises(LimitError, match="exceeds the limit of 1,000 parameters"):
        plan_model("atomizer-tiny", {"num_classes": 3}, host=host)


@pytest.mark.parametrize(
    "changes",
    [{"weights_file": "../../x.safetensors"}, {"method": 5}, {"format_version": 99}],
)
def test_probe_cli_reports_a_hostile_record_in_one_error_line(tmp_path, changes):
    shutil.copy(V1 / "pretraining.json", tmp_path / "p.json")
    shutil.copy(V1 / "pretraining.safetensors", tmp_path / "pretraining.safetensors")
    _rewrite(tmp_path / "p.json", **changes)
    host = PluginHost(load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(tmp_path / "x")})
    result = CliRunner().invoke(build_cli(host), ["probe", str(tmp_path / "p.json")])
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output
