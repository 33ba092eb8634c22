"""``atomizer train | evaluate`` end to end on real Indian Pines patches; all kinds of bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import needs_package

from atomizer.cli.main import build_cli
from atomizer.data.modality import Modality
from atomizer.plugins.host import PluginHost
from atomizer.training.checkpoint import latest_checkpoint, load_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _tensorly() -> None:
    """Indian Pines is read from the tensorly wheel (atomizer[data]): a required dev dependency."""
    needs_package("tensorly")


S2_RGBN = {
    "name": "s2",
    "sensor": "sentinel2a",
    "bands": ["B02", "B03", "B04", "B08"],
    "gsd_m": 20,
    "size_px": 4,
}
CONFIG = {
    "name": "cli-test",
    "data": {"dataset": "indian-pines", "options": {"stride_px": 9, "blocks": [4, 4], "seed": 1}},
    "task": {"type": "multiclass", "num_classes": 16},
    "train_modalities": [S2_RGBN],
    "val_modalities": [S2_RGBN],
    "test_modalities": [
        {"sensor": "landsat8", "bands": ["B2", "B3", "B4", "B5"], "gsd_m": 40, "size_px": 2}
    ],
    "models": [
        {"name": "atomizer-tiny", "label": "atomizer"},
        {"name": "resnet", "config": {"stem_width": 4, "widths": [4], "blocks_per_stage": [1]}},
    ],
    "optimizer": {"base_lr": 0.01},
    "epochs": 1,
    "batch_size": 32,
    "seeds": [0],
    "device": "cpu",
}
# A sensor nobody shipped: written after training, found through ATOMIZER_SENSOR_PATH.
NEW_SENSOR = {
    "id": "futuresat",
    "name": "FutureSat imager",
    "sources": ["made up for this test"],
    "bands": [
        {"name": "F1", "center_wavelength_nm": 510.0, "fwhm_nm": 40.0, "gsd_m": 25.0},
        {"name": "F2", "center_wavelength_nm": 640.0, "fwhm_nm": 30.0, "gsd_m": 25.0},
        {"name": "F3", "center_wavelength_nm": 870.0, "fwhm_nm": 50.0, "gsd_m": 25.0},
        {"name": "F4", "center_wavelength_nm": 1650.0, "fwhm_nm": 80.0, "gsd_m": 25.0},
    ],
}


def make_host(tmp: Path, sensor_path: Path | None = None) -> PluginHost:
    env = {"XDG_CONFIG_HOME": str(tmp / "xdg")}
    if sensor_path is not None:
        env["ATOMIZER_SENSOR_PATH"] = str(sensor_path)
    return PluginHost(load_entrypoints=False, environ=env)


def invoke(host: PluginHost, args: list[str]):
    return CliRunner().invoke(build_cli(host), [str(a) for a in args])


def errors(result) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.startswith("error:")]


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained tiny Atomizer and one tiny ResNet (1 epoch each), shared by the tests."""
    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "exp.yaml"
    config.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    host = make_host(tmp)
    runs = {}
    for label in ("atomizer", "resnet"):
        out = tmp / "runs" / label
        result = invoke(host, ["train", config, "--model", label, "--output", out, "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["finished"] and summary["epochs"] == 1
        runs[label] = out
    return {"tmp": tmp, "config": config, **runs}


def test_train_writes_checkpoint_logs_and_resumes(trained):
    run = trained["atomizer"]
    assert (run / "metrics.csv").exists() and (run / "tensorboard").is_dir()
    records = sorted((run / "checkpoints").glob("*.json"))
    meta = json.loads(records[-1].read_text())
    assert meta["model_name"] == "atomizer-tiny" and meta["experiment"]["name"] == "cli-test"
    assert meta["model_config"]["num_classes"] == 16 and meta["seed"] == 0
    host = make_host(trained["tmp"])
    before = digest(run)
    again = invoke(host, ["train", trained["config"], "--model", "atomizer", "--output", run])
    assert again.exit_code == 1 and "--resume" in errors(again)[0]
    assert digest(run) == before  # nothing overwritten
    done = invoke(
        host, ["train", trained["config"], "--model", "atomizer", "--output", run, "--resume"]
    )
    assert done.exit_code == 0, done.output  # already finished: resume is a no-op


def test_evaluate_on_a_sensor_written_after_training(trained, tmp_path):
    folder = tmp_path / "my-sensors"
    folder.mkdir()
    (folder / "futuresat.yaml").write_text(yaml.safe_dump(NEW_SENSOR, sort_keys=False))
    host = make_host(tmp_path, sensor_path=folder)
    result = invoke(
        host,
        [
            "evaluate",
            trained["atomizer"],
            "--modality",
            "futuresat",
            "--gsd",
            25,
            "--size",
            4,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["modality"] == "futuresat@25m/4px" and out["trained_on"] == ["s2"]
    assert set(out["metrics"]) == {"overall_accuracy", "f1_macro", "map_macro"}
    assert out["metrics"] == python_api_metrics(
        host, trained["atomizer"], Modality(sensor="futuresat", gsd_m=25, size_px=4)
    )
    # the same spec as a file path, with a band subset, in text form
    text = invoke(
        make_host(tmp_path),
        [
            "evaluate",
            trained["atomizer"],
            "--modality",
            folder / "futuresat.yaml",
            "--bands",
            "F1,F3",
            "--gsd",
            40,
            "--size",
            3,
        ],
    )
    assert text.exit_code == 0, text.output
    assert "futuresat[F1,F3]@40m/3px" in text.output and "overall_accuracy" in text.output


def python_api_metrics(host: PluginHost, run: Path, modality) -> dict[str, float]:
    """The checkpoint's model evaluated on ``modality``'s test split through the Python API."""
    from atomizer.models import build_model
    from atomizer.training.config import validate_config
    from atomizer.training.datasets import DatasetBuilder
    from atomizer.training.evaluate import evaluate_model

    ckpt = load_checkpoint(latest_checkpoint(run))
    cfg = validate_config(ckpt.record.experiment, origin="test")
    model = build_model(ckpt.record.model_name, ckpt.record.model_params, host=host)
    model.load_state_dict(ckpt.model_state)
    dataset = DatasetBuilder(cfg.data, cfg.task, host=host).build(cfg.data.test_split, modality)
    assert len(dataset) > 0
    return evaluate_model(
        model,
        dataset,
        task=cfg.task.type,
        num_classes=cfg.task.num_classes,
        metrics=cfg.metrics,
        batch_size=cfg.eval_batch_size or cfg.batch_size,
    )


def test_evaluate_rejects_what_is_not_a_checkpoint(trained, tmp_path):
    host = make_host(tmp_path)
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"\x00garbage")
    (tmp_path / "model.json").write_text("{not json")
    result = invoke(host, ["evaluate", junk, "--modality", "landsat8"])
    assert result.exit_code == 1 and len(errors(result)) == 1
    assert "not an atomizer checkpoint" in errors(result)[0]


def test_evaluate_rejects_an_incompatible_checkpoint(trained, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained["atomizer"], run)
    record = max((run / "checkpoints").glob("*.json"))
    meta = json.loads(record.read_text())
    record.write_text(json.dumps({**meta, "format_version": 99, "atomizer_version": "9.0.0"}))
    result = invoke(
        make_host(tmp_path), ["evaluate", run, "--modality", "landsat8", "--bands", "B2,B3,B4"]
    )
    assert result.exit_code == 1 and len(errors(result)) == 1
    assert "incompatible" in errors(result)[0] and "9.0.0" in errors(result)[0]


@pytest.mark.parametrize(
    "args, match",
    [
        # the ResNet reads B02 B03 B04 B08: Landsat's SWIR bands fill none of its channels
        (
            ["--model-run", "resnet", "--modality", "landsat8", "--bands", "B6,B7"],
            "fixed band layout",
        ),
        # thermal bands lie outside the AVIRIS source range: they cannot be simulated
        (["--model-run", "atomizer", "--modality", "landsat8", "--bands", "B10"], "B10"),
        (["--model-run", "atomizer", "--modality", "no-such-sensor"], "unknown sensor"),
        (["--model-run", "atomizer", "--modality", "landsat8", "--bands", "B99"], "B99"),
        (["--model-run", "atomizer", "--modality", "landsat8", "--gsd", "-5"], "gsd_m"),
        (["--model-run", "atomizer", "--modality", "landsat8", "--gsd", "10"], "simulated"),
    ],
)
def test_evaluate_rejects_unusable_modalities(trained, tmp_path, args, match):
    run = trained[args[1]]
    before = digest(run)
    result = invoke(make_host(tmp_path), ["evaluate", run, *args[2:]])
    assert result.exit_code == 1, result.output
    assert len(errors(result)) == 1 and match.lower() in errors(result)[0].lower(), result.output
    assert digest(run) == before


def test_evaluate_with_another_config_and_missing_data(trained, tmp_path):
    host = make_host(tmp_path)
    missing = {**CONFIG, "data": {**CONFIG["data"], "path": str(tmp_path / "nowhere")}}
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(missing))
    result = invoke(
        host, ["evaluate", trained["atomizer"], "--modality", "landsat8", "--config", path]
    )
    assert result.exit_code == 1 and len(errors(result)) == 1
    assert "does not exist" in errors(result)[0] and "nowhere" in errors(result)[0]
    result = invoke(
        host,
        [
            "evaluate",
            trained["atomizer"],
            "--modality",
            "landsat8",
            "--set",
            "data.path=/no/such/dir",
        ],
    )
    assert result.exit_code == 1 and "/no/such/dir" in errors(result)[0]
    unknown = {**CONFIG, "test_modalites": []}  # misspelt key
    path.write_text(yaml.safe_dump(unknown))
    result = invoke(
        host, ["evaluate", trained["atomizer"], "--modality", "landsat8", "--config", path]
    )
    assert result.exit_code == 1 and len(errors(result)) == 1
    assert (
        "test_modalites: unknown key" in errors(result)[0]
        and "'test_modalities'" in errors(result)[0]
    )


def test_train_rejects_bad_configs_before_writing(tmp_path):
    host = make_host(tmp_path)
    out = tmp_path / "out"
    bad = {**CONFIG, "epochz": 2, "batch_size": 0}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    result = invoke(host, ["train", path, "--model", "atomizer", "--output", out])
    assert result.exit_code == 1
    lines = errors(result)
    assert any(f"{path}:" in ln and "epochz" in ln for ln in lines)
    assert any("batch_size" in ln for ln in lines)
    missing = {**CONFIG, "data": {**CONFIG["data"], "path": str(tmp_path / "nowhere")}}
    path.write_text(yaml.safe_dump(missing))
    result = invoke(host, ["train", path, "--model", "atomizer", "--output", out])
    assert result.exit_code == 1 and len(errors(result)) == 1 and "nowhere" in errors(result)[0]
    result = invoke(host, ["train", path, "--output", out])  # two models, none chosen
    assert result.exit_code == 1 and "--model" in errors(result)[0]
    unknown = {**CONFIG, "models": [{"name": "atomiser"}]}
    path.write_text(yaml.safe_dump(unknown))
    result = invoke(host, ["train", path, "--output", out])
    assert result.exit_code == 1 and "did you mean 'atomizer" in errors(result)[0]
    options = {**CONFIG, "data": {**CONFIG["data"], "options": {"strides": 2}}}
    path.write_text(yaml.safe_dump(options))
    result = invoke(host, ["train", path, "--model", "atomizer", "--output", out])
    assert result.exit_code == 1 and "data.options.strides" in errors(result)[0]
    assert not out.exists()  # nothing written by any failed command


def test_train_into_an_unusable_output_folder_is_one_error_line(tmp_path):
    host = make_host(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "run"  # its parent is a file: mkdir raises NotADirectoryError
    result = invoke(host, ["train", path, "--model", "atomizer", "--output", out])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(errors(result)) == 1 and f"cannot create folder {out}" in errors(result)[0]


#: Batches of 8 make epochs of several steps, so a checkpoint every 3 steps lands mid epoch.
RESUME_SETTINGS = ("epochs=2", "batch_size=8", "checkpoint_every_steps=3")
#: Stop after step 5: step 4 and 5 are lost as in a crash, the run resumes from step 3.
STOP_AFTER_STEPS = 5
RESUME_FROM_STEP = 3


def test_train_stops_and_resumes_mid_epoch_through_the_cli(trained, tmp_path):
    host = make_host(tmp_path)
    settings = [a for kv in RESUME_SETTINGS for a in ("--set", kv)]

    def train(out: Path, *extra):
        args = ["train", trained["config"], "--model", "atomizer", "--output", out]
        result = invoke(host, [*args, *settings, "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    out = tmp_path / "run"
    assert train(out, "--stop-after-steps", STOP_AFTER_STEPS)["finished"] is False
    partial = load_checkpoint(latest_checkpoint(out))
    assert partial.global_step == RESUME_FROM_STEP and not partial.record.finished
    assert partial.epoch == 0 and 0 < partial.record.step_in_epoch == RESUME_FROM_STEP
    a = train(out, "--resume")
    b = train(tmp_path / "full")
    assert a["finished"] and b["finished"] and a["global_step"] == b["global_step"]
    assert b["global_step"] > 2 * RESUME_FROM_STEP  # more than 3 steps per epoch: mid-epoch resume
    keys = [k for k in b["last_epoch"] if k.startswith("val/")]
    assert keys and all(a["last_epoch"][k] == b["last_epoch"][k] for k in keys)
    resumed = load_checkpoint(latest_checkpoint(out)).model_state
    full = load_checkpoint(latest_checkpoint(tmp_path / "full")).model_state
    assert resumed.keys() == full.keys() and resumed
    for name, tensor in full.items():
        assert torch.equal(resumed[name], tensor), name
