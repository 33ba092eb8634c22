"""Training and evaluation from a built dataset folder, through the CLI (no code)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from atomizer.cli.main import build_cli
from atomizer.datasets import AtomsDataset, build_dataset, load_dataset_spec
from atomizer.data.modality import Modality
from conftest import shared_data_path
from dataset_toys import S2_FOLDER, tile_spec, write_spec

UNSEEN = """
id: tile-3band
name: Three bands of Sentinel-2A L2A under a new sensor id
extends: sentinel2a-l2a
select_bands: [B04, B8A, B11]
sources: [https://sentiwiki.copernicus.eu/web/s2-products]
"""


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    folder = shared_data_path(*S2_FOLDER)
    tmp = tmp_path_factory.mktemp("train")
    spec = tile_spec(tmp, folder, per_class=4, split={"blocks_m": 10000, "seed": 1})
    build_dataset(load_dataset_spec(spec), tmp / "seen", workers=0)
    (tmp / "tile-3band.yaml").write_text(UNSEEN)
    unseen = load_dataset_spec(spec, ["sensor=tile-3band.yaml"])
    build_dataset(unseen, tmp / "unseen", workers=0)
    return tmp


def test_modalities_apply_to_chips_and_a_bandless_modality_keeps_each_chips_sensor(datasets):
    ds = AtomsDataset(datasets / "unseen", modality=Modality(sensor="sentinel2a-l2a", gsd_m=120))
    atoms, _ = ds[0]
    assert atoms.scene.sensor_id == "tile-3band" and atoms.band_names == ["B04", "B8A", "B11"]
    assert set(atoms.gsd_m.tolist()) == {120.0}
    sub = AtomsDataset(datasets / "seen", modality=Modality(sensor="sentinel2a-l2a", bands=("B04", "B8A")))
    assert sub[0][0].band_names == ["B04", "B8A"]


def test_train_on_a_dataset_folder_and_evaluate_on_an_unseen_sensor(datasets, host):
    tmp = datasets
    config = write_spec(
        tmp / "exp.yaml", name="own", data={"dataset": "atoms", "path": "seen"},
        task={"type": "multiclass", "num_classes": 3},
        train_modalities=[{"sensor": "sentinel2a-l2a"}], models=[{"name": "atomizer-tiny"}],
        optimizer={"warmup_epochs": 0}, epochs=1, batch_size=4, metrics=["overall_accuracy"],
        output_dir=str(tmp / "runs"), device="cpu", threads=1,
    )
    cli = build_cli(host)
    res = CliRunner().invoke(cli, ["train", str(config), "--json"])
    assert res.exit_code == 0, res.output
    run_dir = tmp / "runs" / "atomizer-tiny" / "seed-0"
    res = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--data", str(tmp / "unseen"), "--modality",
                                   str(tmp / "tile-3band.yaml"), "--split", "train", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["split"] == "train" and out["modality"] == "tile-3band"
    n = len(AtomsDataset(tmp / "unseen", split="train"))
    accuracy = out["metrics"]["overall_accuracy"]
    assert n > 0 and any(accuracy == pytest.approx(100.0 * k / n) for k in range(n + 1))


def test_evaluating_on_a_dataset_with_other_class_names_is_refused(datasets, host):
    """Same number of classes, other names: the model's outputs would mean other classes."""
    tmp = datasets
    run_dir = tmp / "runs" / "atomizer-tiny" / "seed-0"
    if not run_dir.exists():  # trained by the test above, unless this one runs alone
        test_train_on_a_dataset_folder_and_evaluate_on_an_unseen_sensor(datasets, host)
    record = json.loads(sorted((run_dir / "checkpoints").glob("*.json"))[-1].read_text())
    trained = record["task"]["class_names"]
    assert trained == list(AtomsDataset(tmp / "seen").class_names)
    renamed = tmp / "renamed"
    import shutil

    shutil.copytree(tmp / "seen", renamed, dirs_exist_ok=True)
    manifest = json.loads((renamed / "manifest.json").read_text())
    names = {c: f"x-{c}" for c in manifest["classes"]}
    manifest["classes"] = [names[c] for c in manifest["classes"]]
    for row in manifest["chips"]:
        row["label"] = names[row["label"]]
    (renamed / "manifest.json").write_text(json.dumps(manifest))
    res = CliRunner().invoke(build_cli(host), ["evaluate", str(run_dir), "--data", str(renamed),
                                               "--modality", "sentinel2a-l2a"])
    assert res.exit_code == 1 and "but the model was trained on" in res.output, res.output
    assert "Traceback" not in res.output
