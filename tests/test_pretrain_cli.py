"""End to end: ``atomizer pretrain`` on a smoke-size experiment, then ``atomizer probe``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import shared_data_path

from atomizer.cli.main import build_cli

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "satmip-cpu.yaml"
METHODS = ("simclr", "satmip", "satmips-coupled", "satmips-uncoupled")

#: Shrinks experiments/satmip-cpu.yaml to a few seconds: tiny chips, one epoch, one seed.
SMOKE = [
    "data.sources=[{kind: s2_tile, path: s2_l2a_T29UNU_20221005_60m, chip_px: 4,"
    " gsd_factors: [1, 2],"
    " max_chips_per_class: 6, min_chips_per_class: 3, bands: [B02, B04, B8A, B11]}]",
    "optim.epochs=1",
    "optim.batch_size=16",
    "augment.max_atoms=64",
    "probe.seeds=[0, 1]",
    "probe.knn_k=[1, 5]",
    "threads=1",
]


def _cli():
    from atomizer.plugins.host import PluginHost

    return build_cli(PluginHost(load_entrypoints=False, environ={}))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    data = shared_data_path()
    out = tmp_path_factory.mktemp("satmip")
    args = ["pretrain", str(EXPERIMENT), "--out", str(out), "--set", f"data.root={data}"]
    for s in SMOKE:
        args += ["--set", s]
    before = torch.get_num_threads()
    result = CliRunner().invoke(_cli(), args)
    assert torch.get_num_threads() == before  # the run restores the thread count
    return result, out


@pytest.mark.data
def test_pretrain_compares_every_method(smoke_run) -> None:
    result, out = smoke_run
    assert result.exit_code == 0, result.output
    table = (out / "comparison.md").read_text()
    assert table in result.output
    for m in METHODS:
        assert f"| {m} |" in table
        assert (out / f"{m}.safetensors").is_file() and (out / f"{m}.json").is_file()
    report = json.loads((out / "comparison.json").read_text())
    rows = {r["method"]: r for r in report["rows"]}
    assert {"band-means (no encoder)", "random-init encoder", *METHODS} == set(rows)
    assert rows["simclr"]["relative_to_simclr"] == {"time": 1.0, "memory": 1.0}
    # one image view fewer: coupled SatMIPS holds less memory than uncoupled
    assert (
        rows["satmips-coupled"]["peak_memory_bytes"]
        < rows["satmips-uncoupled"]["peak_memory_bytes"]
    )
    assert rows["satmips-uncoupled"]["views_per_step"] == 3
    for m in METHODS:
        probes = rows[m]["probes"]
        assert set(probes) == {"knn@1", "knn@5", "linear", "bimodal"}
        assert all(
            0.0 <= probes[k]["mean"] <= 1.0 and len(probes[k]["values"]) == 2 for k in probes
        )
    ckpt = json.loads((out / "satmips-coupled.json").read_text())
    assert ckpt["method"] == "satmips-coupled" and ckpt["image_encoder"]["name"] == "atomizer-tiny"


@pytest.mark.data
def test_probe_a_checkpoint(smoke_run, tmp_path) -> None:
    _, out = smoke_run
    dest = tmp_path / "probe.json"
    result = CliRunner().invoke(
        _cli(),
        [
            "probe",
            str(out / "satmip.safetensors"),
            "--method",
            "knn",
            "--method",
            "bimodal",
            "--seeds",
            "3",
            "--metadata-features",
            "learned",
            "--json",
            str(dest),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| satmip |" in result.output
    payload = json.loads(dest.read_text())
    assert payload["seeds"] == [3] and set(payload["results"]) == {"knn@1", "knn@5", "bimodal"}


def test_cli_errors_are_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nimage_encoder: {name: atomizer-tiny}\nepochz: 3\n"
        "data: {sources: [{kind: s2_tile, path: t}]}\n"
    )
    result = CliRunner().invoke(_cli(), ["pretrain", str(bad)])
    assert result.exit_code == 1 and "error:" in result.output and "epochz" in result.output
    result = CliRunner().invoke(_cli(), ["pretrain", str(bad), "--set", "epochz"])
    assert result.exit_code == 1 and "KEY.PATH=VALUE" in result.output
    result = CliRunner().invoke(_cli(), ["pretrain", str(bad), "--set", "optim.epochs=["])
    assert result.exit_code == 1 and "error:" in result.output and "optim.epochs" in result.output
    assert isinstance(result.exception, SystemExit)  # a one-line error, not a YAML traceback
    (tmp_path / "a-file").write_text("")
    good = tmp_path / "good.yaml"
    good.write_text(bad.read_text().replace("epochz", "seed"))
    out = tmp_path / "a-file" / "run"
    result = CliRunner().invoke(_cli(), ["pretrain", str(good), "--out", str(out)])
    assert result.exit_code == 1 and f"error: cannot create folder {out}" in result.output
    result = CliRunner().invoke(_cli(), ["probe", str(tmp_path / "none.json")])
    assert result.exit_code == 1 and "no such checkpoint" in result.output
    result = CliRunner().invoke(_cli(), ["probe", str(tmp_path / "x.json"), "--seeds", "a"])
    assert result.exit_code == 1
