"""Smoke-size runs of the shipped experiments, end to end through ``atomizer run``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import needs_package, shared_data_path

from atomizer.cli.main import build_cli
from atomizer.errors import OutputError
from atomizer.plugins.host import PluginHost
from atomizer.training.config import load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
BASELINES = ["resnet", "vit", "scalemae", "perceiver", "dofa", "panopticon", "copernicusfm"]


def host_for(tmp: Path) -> PluginHost:
    return PluginHost(load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(tmp / "xdg")})


def run(tmp: Path, config: Path, *overrides: str, extra: tuple[str, ...] = ()):
    args = ["run", str(config), "--output", str(tmp / "out"), *extra]
    for o in overrides:
        args += ["--set", o]
    return CliRunner().invoke(build_cli(host_for(tmp)), args)


@pytest.mark.parametrize("name", ["indian-pines-cross-sensor", "bigearthnet-modality-disjoint"])
def test_shipped_experiments_are_valid(name, tmp_path):
    host = host_for(tmp_path)
    cfg = load_config(EXPERIMENTS / f"{name}.yaml", known_models=host.models.names())
    assert len(cfg.models) == 8 and len(cfg.seeds) >= 3
    rows = [m.name for m in cfg.models]
    assert rows[0].startswith("atomizer") and set(BASELINES) <= set(rows)
    # the paper's Tables 2 and 3: a GSD sweep and a size sweep of at least four values each
    assert {n: s.x for n, s in cfg.sweeps.items()} == {"gsd": "gsd_m", "size": "size_px"}
    assert all(len(s.points) >= 4 for s in cfg.sweeps.values())


def test_indian_pines_smoke_run(tmp_path):
    needs_package("tensorly")  # Indian Pines is read from the tensorly wheel
    overrides = (
        "epochs=1",
        "optimizer.warmup_epochs=0",
        "seeds=[0, 1]",
        "data.options.stride_px=9",
    )
    result = run(tmp_path, EXPERIMENTS / "indian-pines-cross-sensor.yaml", *overrides)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for f in ("results.md", "results.json", "results.png"):
        assert (out / f).stat().st_size > 0
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "results.json").read_text())
    table = report["table"]
    assert list(table) == ["atomizer", *BASELINES]
    columns = ["Landsat8 30m", "WorldView3 24m", "MODIS 60m", "PlanetScope 25m", "mean"]
    for model, cells in table.items():
        assert list(cells) == columns
        for column in columns:
            assert cells[column]["n_seeds"] == 2 and 0.0 <= cells[column]["mean"] <= 100.0
        per_seed = report["per_seed"][model]["Landsat8 30m"]
        values = [per_seed[s][report["main_metric"]] for s in ("0", "1")]
        assert cells["Landsat8 30m"]["mean"] == pytest.approx(sum(values) / 2)
    # the printed table: one row per model, a column per unseen modality plus the mean
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("|")]
    assert lines[0].split("|")[2:-1] == [f" {c} " for c in columns]
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == list(table)
    assert all("±" in cell for ln in lines[2:] for cell in ln.split("|")[2:-1])
    # running again reuses the finished runs: same numbers, nothing retrained
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("ckpt-*.safetensors")}
    again = run(
        tmp_path, EXPERIMENTS / "indian-pines-cross-sensor.yaml", *overrides, extra=("--json",)
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["table"] == table
    assert {p: p.stat().st_mtime_ns for p in out.rglob("ckpt-*.safetensors")} == stamps
    # the GSD sweep (the paper's Table 2) tests the same trained runs: one command, no retraining
    sweep = run(
        tmp_path,
        EXPERIMENTS / "indian-pines-cross-sensor.yaml",
        *overrides,
        extra=("--sweep", "gsd"),
    )
    assert sweep.exit_code == 0, sweep.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("ckpt-*.safetensors")} == stamps
    swept = json.loads((out / "sweep-gsd" / "results.json").read_text())
    assert swept["x"] == "gsd_m" and swept["x_values"] == [20, 26.6667, 32, 40, 53.3333, 80]
    assert list(swept["table"]) == ["atomizer", *BASELINES]
    labels = ["20 m", "26.7 m", "32 m", "40 m", "53.3 m", "80 m"]
    for cells in swept["table"].values():
        assert list(cells) == [*labels, "mean"]
        assert all(cells[c]["n_seeds"] == 2 for c in labels)
    assert (out / "sweep-gsd" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = next(ln for ln in sweep.stdout.splitlines() if ln.startswith("| model"))
    assert header.split("|")[2].strip() == "20 m (train)"  # the in-distribution point is marked
    unknown = run(tmp_path, EXPERIMENTS / "indian-pines-cross-sensor.yaml", extra=("--sweep", "x"))
    assert unknown.exit_code == 1
    assert [ln for ln in unknown.output.splitlines() if ln.startswith("error:")] == [
        "error: experiment 'indian-pines-cross-sensor' has no sweep 'x' (its sweeps: gsd, size); "
        "add it under 'sweeps:' in the config"
    ]


def test_sweep_points_must_set_the_swept_axis(tmp_path):
    from atomizer.errors import ConfigError

    config = tmp_path / "bad.yaml"
    text = (EXPERIMENTS / "indian-pines-cross-sensor.yaml").read_text()
    config.write_text(text.replace("- {gsd_m: 32, size_px: 5}", "- {size_px: 5}"))
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: sweeps.gsd: every point must set gsd_m"):
        load_config(config)


@pytest.mark.data
def test_bigearthnet_smoke_run_on_real_patches(tmp_path):
    data = shared_data_path("bigearthnet_s2_examples")
    result = run(
        tmp_path,
        EXPERIMENTS / "bigearthnet-modality-disjoint.yaml",
        f"data.path={data}",
        "data.num_workers=0",
        "epochs=1",
        "optimizer.warmup_epochs=0",
        "batch_size=4",
        "seeds=[0]",
        "models=[{name: atomizer-tiny, label: atomizer}]",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["main_metric"] == "map_macro" and list(report["table"]) == ["atomizer"]
    cells = report["table"]["atomizer"]
    assert len(cells) == 7 and all(0.0 <= c["mean"] <= 100.0 for c in cells.values())
    assert report["notes"] == {}


def test_run_refuses_a_missing_dataset_before_training(tmp_path):
    result = run(
        tmp_path,
        EXPERIMENTS / "bigearthnet-modality-disjoint.yaml",
        f"data.path={tmp_path / 'none'}",
    )
    assert result.exit_code == 1
    assert [ln for ln in result.output.splitlines() if ln.startswith("error:")] == [
        (
            f"error: data.path: {tmp_path / 'none'} does not exist; "
            "give the folder of the bigearthnet dataset"
        )
    ]
    assert not (tmp_path / "out").exists()


def test_report_table_statistics_by_hand(tmp_path):
    """Cells: mean ± sample std over seeds; the mean column averages modalities per seed first."""
    from atomizer.training.config import ExperimentConfig
    from atomizer.training.report import markdown, table, write_report
    from atomizer.training.runner import RunResults

    def mod(name, gsd):
        return {"name": name, "sensor": "landsat8", "gsd_m": gsd, "size_px": 4}

    cfg = ExperimentConfig.model_validate(
        {
            "name": "t",
            "data": {"dataset": "indian-pines"},
            "task": {"type": "multiclass", "num_classes": 3},
            "train_modalities": [mod("tr", 20)],
            "test_modalities": [mod("A", 30), mod("B", 40)],
            "models": [{"name": "atomizer"}, {"name": "resnet"}],
            "epochs": 1,
            "batch_size": 2,
            "seeds": [0, 1],
            "metrics": ["map_macro"],
        }
    )
    nan = float("nan")
    results = RunResults(cfg)
    results.scores = {
        "atomizer": {
            "A": {0: {"map_macro": 10.0}, 1: {"map_macro": 20.0}},
            "B": {0: {"map_macro": 30.0}, 1: {"map_macro": 50.0}},
        },
        "resnet": {
            "A": {0: {"map_macro": 40.0}, 1: {"map_macro": 40.0}},
            "B": {0: {"map_macro": nan}, 1: {"map_macro": nan}},
        },
    }
    columns, rows = table(results)
    assert columns == ["A", "B", "mean"]
    assert (rows["atomizer"]["A"].mean, rows["atomizer"]["A"].std) == pytest.approx(
        (15.0, 7.0710678)
    )
    # per-seed means 20 and 35 -> 27.5 ± 10.6066
    assert (rows["atomizer"]["mean"].mean, rows["atomizer"]["mean"].std) == pytest.approx(
        (27.5, 10.6066017)
    )
    assert rows["resnet"]["B"].n == 0 and rows["resnet"]["mean"].mean == 40.0
    text = markdown(results)
    assert "| atomizer | 15.0 ± 7.1 | **40.0 ± 14.1** | 27.5 ± 10.6 |" in text
    assert "| resnet | **40.0 ± 0.0** | n/a | **40.0 ± 0.0** |" in text
    paths = write_report(results, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["table"]["resnet"]["A"]["n_seeds"] == 2
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutputError, match="cannot create folder .*a-file/report"):
        write_report(results, tmp_path / "a-file" / "report")  # not a raw NotADirectoryError


def test_runs_side_by_side_on_dask_give_the_same_results(tmp_path):
    # each (model, seed) run is seeded by its own seed alone: training the runs on two Dask
    # worker processes gives the table (and the weights) of training them one after the other
    needs_package("tensorly")
    needs_package("distributed")
    overrides = ("epochs=1", "optimizer.warmup_epochs=0", "seeds=[0, 1]",
                 "data.options.stride_px=9")
    config = EXPERIMENTS / "indian-pines-cross-sensor.yaml"
    here = run(tmp_path / "here", config, *overrides, extra=("--workers", "0"))
    assert here.exit_code == 0, here.output
    assert "local workers" not in here.stderr
    dask = run(tmp_path / "dask", config, *overrides, extra=("--workers", "2"))
    assert dask.exit_code == 0, dask.output
    assert "16 runs (models x seeds) on 2 local workers" in dask.stderr
    tables = [json.loads((tmp_path / w / "out" / "results.json").read_text()) for w in ("here", "dask")]
    assert tables[0]["per_seed"] == tables[1]["per_seed"]
    from safetensors.numpy import load_file

    for ckpt in (tmp_path / "here" / "out").rglob("ckpt-*.safetensors"):
        twin = tmp_path / "dask" / "out" / ckpt.relative_to(tmp_path / "here" / "out")
        a, b = load_file(ckpt), load_file(twin)
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), ckpt


def test_an_unreachable_scheduler_stops_the_run_before_training(tmp_path, monkeypatch):
    from atomizer import cluster

    needs_package("distributed")
    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", 1)
    result = run(tmp_path, EXPERIMENTS / "indian-pines-cross-sensor.yaml", "epochs=1",
                 "optimizer.warmup_epochs=0", "data.options.stride_px=9",
                 extra=("--scheduler", "tcp://127.0.0.1:9"))
    assert result.exit_code == 1
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:9" in result.output
    assert not list(tmp_path.rglob("ckpt-*"))
