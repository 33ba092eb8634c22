"""The same build on a dask.distributed cluster given by its scheduler address: the same bytes."""

from __future__ import annotations

import pytest

from atomizer.datasets import build_dataset, load_dataset_spec
from conftest import shared_data_path
from dataset_toys import S2_FOLDER, tile_spec


@pytest.mark.slow
def test_scheduler_address_build_equals_the_in_process_build(tmp_path):
    from distributed import LocalCluster

    spec = load_dataset_spec(tile_spec(tmp_path, shared_data_path(*S2_FOLDER), per_class=2))
    local = build_dataset(spec, tmp_path / "local", workers=0)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        remote = build_dataset(spec, tmp_path / "remote", scheduler=cluster.scheduler_address)
    assert remote.n_chips == local.n_chips == 6
    names = sorted(p.name for p in (tmp_path / "local" / "shards").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "remote" / "shards").iterdir())
    for name in names:
        a = (tmp_path / "local" / "shards" / name).read_bytes()
        assert a == (tmp_path / "remote" / "shards" / name).read_bytes(), name
    for name in ("manifest.json", "stats.json", "errors.jsonl"):
        assert (tmp_path / "local" / name).read_text() == (tmp_path / "remote" / name).read_text()


def test_an_unreachable_scheduler_is_one_error(tmp_path, monkeypatch):
    from atomizer import cluster
    from atomizer.errors import DatasetError

    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", 1)
    spec = load_dataset_spec(tile_spec(tmp_path, shared_data_path(*S2_FOLDER), per_class=1))
    with pytest.raises(DatasetError, match="cannot reach the Dask scheduler"):
        build_dataset(spec, tmp_path / "out", scheduler="tcp://127.0.0.1:9")
