"""Benchmark: ``atomizer dataset build`` against bare rasterio window reads; remote bytes; shard loader.

Run from the project root::

    python benchmarks/dataset_build.py [--repeats 7] [--chips 4800] [--out benchmarks/results/dataset_build.json]

Inputs are made at run time from ``../shared/data`` (or ``--data``) in a temporary folder: the 60 m
Sentinel-2 L2A tile T29UNU converted to Cloud-Optimized GeoTIFFs (256 px blocks, deflate), one STAC
item for them, and ``--chips`` point labels drawn from its scene classification layer; chips are
600 m (10 x 10 px of each of the 11 bands). Measured side by side, alternating, in one run:

1. **floor**: bare rasterio window reads of the same chip windows (each band file opened once per
   shard of ``--shard-chips`` chips, as the build does), no atoms made;
2. **build, in process** (``workers=0``) and **build on Dask** with 1 and 2 worker processes (each
   cluster, scheduler included, runs in a process of its own, started and warmed before timing and
   given by its scheduler address, as ``--scheduler`` is used; each build into a fresh folder):
   the cluster ``--workers N`` starts (``atomizer.cluster.local_cluster``), and a 1-worker
   cluster with Dask's default settings, as a user's own cluster may have;
3. **remote**: the same build with the COGs served by a local HTTP server with Range support;
   bytes served vs the bytes of the COG blocks the chip windows touch;
4. **loader**: samples/s reading every chip of a dataset built from the 14 BigEarthNet patches
   (each patch one item, one 1200 m chip = the whole patch) ``--passes`` times vs
   ``atomizer.data.BigEarthNet`` on the same folder, alternating, in ``--repeats`` rounds; and peak
   RSS of a process iterating a shard dataset 1x vs 8x as large.

Targets (issue 10): build <= 1.3 x the floor with one worker; two workers >= 1.7 x one worker;
remote bytes <= 2 x the touched blocks; shard loader >= 5 x the folder loader; loader memory flat.
Each round runs every kind once, starting one kind later than the round before; the build ratios
are the median of the rounds' own ratios (``ratio_of_medians`` beside them): on a machine whose
speed drifts in phases of seconds, the two builds of one round share a phase more often than the
medians of separate columns do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
# benchmarks/ is on sys.path when a script runs as python benchmarks/NAME.py
from _measure import (
    shared_data,
)

# the project, and its tests folder for the fixtures shared with the tests (inputs, HTTP server)
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

TILE = "s2_l2a_T29UNU_20221005_60m"
BEN = "bigearthnet_s2_examples"
CHIP_M = 600.0
KIB = 1024
#: Reported ratios: name -> (numerator kind, denominator kind) of the timed builds.
RATIOS = {
    "ratio_in_process_to_floor": ("in_process", "floor"),
    "ratio_dask_1_to_floor": ("dask_1", "floor"),
    "ratio_dask_1_dask_defaults_to_floor": ("dask_1_dask_defaults", "floor"),
    "speedup_dask_2_over_dask_1": ("dask_1", "dask_2"),
}


# --- inputs ----------------------------------------------------------------------------------------
def make_cogs(data: Path, out: Path) -> dict[str, Path]:
    import rasterio

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for src in sorted((data / TILE).glob("*_60m.jp2")):
        band = src.stem.split("_")[-2]
        with rasterio.open(src) as ds:
            profile = {"driver": "COG", "dtype": ds.dtypes[0], "count": 1, "width": ds.width,
                       "height": ds.height, "crs": ds.crs, "transform": ds.transform, "nodata": 0,
                       "blocksize": 256, "compress": "deflate"}
            arr = ds.read(1)
        paths[band] = out / f"{band}.tif"
        with rasterio.open(paths[band], "w", **profile) as dst:
            dst.write(arr, 1)
    return paths


def make_inputs(data: Path, tmp: Path, n_chips: int, shard_chips: int, base_url: str | None = None) -> Path:
    import datetime as dt

    from pystac import ItemCollection

    from atomizer.readers.stac_build import build_stac_item
    from dataset_toys import scl_points, write_points, write_spec

    cogs = {p.stem: p for p in sorted((tmp / "cogs").glob("*.tif")) if p.stem != "SCL"}
    item = build_stac_item("T29UNU-cog", cogs, datetime=dt.datetime(2022, 10, 5, tzinfo=dt.timezone.utc),
                           properties={"platform": "sentinel-2a", "constellation": "sentinel-2"})
    if base_url is not None:
        for key, asset in item.assets.items():
            asset.href = f"{base_url}/{key}.tif"
    folder = tmp / ("remote" if base_url else "local")
    folder.mkdir(exist_ok=True)
    ItemCollection([item]).save_object(str(folder / "items.json"))
    per_class = n_chips // 3
    points = scl_points(data / TILE / "T29UNU_20221005T115411_SCL_60m.jp2", per_class=per_class)
    write_points(folder / "labels.geojson", points)
    return write_spec(folder / "spec.yaml", items="items.json", sensor="sentinel2a-l2a",
                      labels={"path": "labels.geojson", "column": "landcover"}, chip_m=CHIP_M,
                      shard_chips=shard_chips)


# --- measurements ----------------------------------------------------------------------------------
def floor(spec_path: Path) -> float:
    """Seconds to read every chip window of every band with bare rasterio (files open per shard)."""
    import rasterio
    from rasterio.warp import transform
    from rasterio.windows import from_bounds

    from atomizer.datasets import load_dataset_spec
    from atomizer.datasets.plan import plan_build

    plan = plan_build(load_dataset_spec(spec_path))
    t0 = time.perf_counter()
    for task in plan.tasks:
        hrefs = [a["href"] for k, a in task.request.item["assets"].items()]
        handles = [rasterio.open(h) for h in hrefs]
        lbs = task.request.labels
        xs, ys = transform("EPSG:4326", handles[0].crs, [lb["lon"] for lb in lbs], [lb["lat"] for lb in lbs])
        for x, y in zip(xs, ys):
            for ds in handles:
                win = from_bounds(x - CHIP_M / 2, y - CHIP_M / 2, x + CHIP_M / 2, y + CHIP_M / 2, ds.transform)
                ds.read(1, window=win.round_offsets().round_lengths())
        for ds in handles:
            ds.close()
    return time.perf_counter() - t0


def build(spec_path: Path, out: Path, **kwargs: Any) -> tuple[float, int]:
    from atomizer.datasets import build_dataset, load_dataset_spec

    shutil.rmtree(out, ignore_errors=True)
    spec = load_dataset_spec(spec_path)
    t0 = time.perf_counter()
    result = build_dataset(spec, out, **kwargs)
    return time.perf_counter() - t0, result.n_chips


def remote_bytes(tmp: Path, data: Path, n_chips: int) -> dict[str, Any]:
    import threading
    from functools import partial
    from http.server import ThreadingHTTPServer

    import rasterio

    from test_dataset_remote import RangeHandler

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(tmp / "cogs")))
    server.sent, server.requests, server.lock = 0, [], threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = make_inputs(data, tmp, n_chips, 64, base_url=f"http://127.0.0.1:{server.server_address[1]}")
        seconds, chips = build(spec, tmp / "remote-out", workers=0)
    finally:
        server.shutdown()
        server.server_close()
    rows = json.loads((tmp / "remote-out" / "manifest.json").read_text())["chips"]
    from rasterio.warp import transform

    touched = 0
    whole = 0
    for path in sorted((tmp / "cogs").glob("*.tif")):
        if path.stem == "SCL":
            continue
        whole += path.stat().st_size
        with rasterio.open(path) as ds:
            bh, bw = ds.block_shapes[0]
            t = ds.transform
            blocks = set()
            xs, ys = transform("EPSG:4326", ds.crs, [r["lon"] for r in rows], [r["lat"] for r in rows])
            for x, y in zip(xs, ys):
                c0, c1 = int((x - CHIP_M / 2 - t.c) // t.a), int((x + CHIP_M / 2 - t.c) // t.a)
                r0, r1 = int((t.f - y - CHIP_M / 2) // -t.e), int((t.f - y + CHIP_M / 2) // -t.e)
                blocks |= {(r // bh, c // bw) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
            touched += sum(ds.block_size(1, i, j) for i, j in blocks)
    return {"chips": chips, "seconds": seconds, "bytes_served": server.sent, "requests": len(server.requests),
            "bytes_blocks_touched": touched, "bytes_whole_files": whole,
            "ratio_to_touched": server.sent / touched, "fraction_of_whole": server.sent / whole}


def ben_dataset(data: Path, tmp: Path) -> Path:
    import datetime as dt
    import re

    from pystac import ItemCollection
    from shapely.geometry import shape

    from atomizer.datasets import build_dataset, load_dataset_spec
    from atomizer.readers.stac_build import build_stac_item
    from dataset_toys import write_points, write_spec

    items, points = [], []
    for folder in sorted(p for p in (data / BEN).iterdir() if p.is_dir()):
        assets = {re.search(r"_(B\d[\dA])\.tif$", t.name).group(1): t for t in sorted(folder.glob("*.tif"))}
        meta = json.loads(next(folder.glob("*_labels_metadata.json")).read_text())
        when = dt.datetime.fromisoformat(meta["acquisition_date"]).replace(tzinfo=dt.timezone.utc)
        item = build_stac_item(folder.name, assets, datetime=when,
                               properties={"platform": "sentinel-2a", "constellation": "sentinel-2"})
        items.append(item)
        c = shape(item.geometry).centroid
        points.append((c.x, c.y, meta["labels"][0]))
    ben = tmp / "ben"
    ben.mkdir(exist_ok=True)
    ItemCollection(items).save_object(str(ben / "items.json"))
    write_points(ben / "labels.geojson", points)
    spec = write_spec(ben / "spec.yaml", items="items.json", sensor="sentinel2a-l2a",
                      bands=["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"],
                      labels={"path": "labels.geojson", "column": "landcover"}, chip_m=1200, shard_chips=64)
    build_dataset(load_dataset_spec(spec), ben / "out", workers=0)
    return ben / "out"


def loaders(data: Path, folder: Path, passes: int, repeats: int) -> dict[str, Any]:
    """Samples/s of the shard dataset and the BigEarthNet folder loader on the same chips: each of
    ``repeats`` rounds reads every chip ``passes`` times with each, alternating; the ratio is the
    median of the rounds' own ratios."""
    from atomizer.data import BigEarthNet
    from atomizer.datasets import AtomsDataset

    sets = {"shards": AtomsDataset(folder), "folders": BigEarthNet(data / BEN)}
    rates: dict[str, list[float]] = {name: [] for name in sets}
    for ds in sets.values():
        ds[0]
    for _ in range(repeats):
        for name, ds in sets.items():
            t0 = time.perf_counter()
            for _ in range(passes):
                for i in range(len(ds)):
                    ds[i]
            rates[name].append(passes * len(ds) / (time.perf_counter() - t0))
    out: dict[str, Any] = {name: {"samples_per_round": passes * len(ds), "samples_per_s": rates[name],
                                  "median_samples_per_s": statistics.median(rates[name]),
                                  "atoms_first": len(ds[0][0])} for name, ds in sets.items()}
    per_round = [a / b for a, b in zip(rates["shards"], rates["folders"])]
    out["per_round"] = per_round
    out["ratio"] = statistics.median(per_round)
    return out


def _rss_kib(field: str = "RssAnon") -> int:
    """Resident anonymous memory (KiB): the process's own memory, not the memory-mapped shard
    pages, which the kernel counts as file-backed (RssFile) and reclaims at will."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_memory(folder: str) -> None:
    """Iterate a dataset folder once; print the RSS (KiB) after the first chip and its maximum."""
    from atomizer.datasets import AtomsDataset

    ds = AtomsDataset(folder)
    ds[0]
    before = peak = _rss_kib()
    for i in range(len(ds)):
        ds[i]
        if i % 20 == 0:
            peak = max(peak, _rss_kib())
    peak = max(peak, _rss_kib())
    print(json.dumps({"chips": len(ds), "anon_rss_after_first_kib": before, "max_anon_rss_kib": peak,
                      "growth_kib": peak - before, "file_rss_kib_at_end": _rss_kib("RssFile")}))


def memory(spec_path: Path, tmp: Path) -> dict[str, Any]:
    from atomizer.datasets import build_dataset, load_dataset_spec

    out = {}
    for factor in (1, 8):
        labels = json.loads((spec_path.parent / "labels.geojson").read_text())
        labels["features"] = labels["features"] * factor
        (spec_path.parent / f"labels-x{factor}.geojson").write_text(json.dumps(labels))
        spec = load_dataset_spec(spec_path, [f"labels.path=labels-x{factor}.geojson"])
        build_dataset(spec, tmp / f"mem-x{factor}", workers=0)
        res = subprocess.run([sys.executable, __file__, "--child-memory", str(tmp / f"mem-x{factor}")],
                             capture_output=True, text=True, check=True)
        out[f"x{factor}"] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


@contextlib.contextmanager
def running_cluster(workers: int, project: bool = True) -> Iterator[str]:
    """A LocalCluster of ``workers`` single-threaded processes, scheduler included, in a process of
    its own (as a cluster started with ``dask scheduler`` / ``dask worker`` would be): its event
    loops never share this process's interpreter with the builds timed here. ``project``: the
    cluster ``--workers N`` starts (:func:`atomizer.cluster.local_cluster`, with its settings);
    else Dask's defaults, as a user's own cluster may have. Yields its address."""
    start = (f"from atomizer.cluster import local_cluster; c = local_cluster({workers})" if project else
             f"from distributed import LocalCluster; c = LocalCluster(n_workers={workers}, "
             "threads_per_worker=1, dashboard_address=':0')")
    code = f"import time; {start}; print(c.scheduler_address, flush=True); time.sleep(10**6)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    try:
        address = proc.stdout.readline().strip()
        if not address.startswith("tcp://"):
            raise RuntimeError(f"the Dask cluster did not start (got {address!r})")
        from distributed import Client

        with Client(address) as client:  # workers import the build's modules before any timing
            client.run(lambda: __import__("atomizer.datasets.build"))
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=shared_data())
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chips", type=int, default=4800)
    parser.add_argument("--shard-chips", type=int, default=100)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--dask-defaults", action="store_true",
                        help="also time a 1-worker cluster with Dask's default settings")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dataset_build.json"))
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        child_memory(args.child_memory)
        return
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        make_cogs(args.data, tmp / "cogs")
        spec = make_inputs(args.data, tmp, args.chips, args.shard_chips)
        kinds = ("floor", "in_process", "dask_1", "dask_2") + \
            (("dask_1_dask_defaults",) if args.dask_defaults else ())
        times: dict[str, list[float]] = {k: [] for k in kinds}
        with contextlib.ExitStack() as stack:
            one = stack.enter_context(running_cluster(1))
            two = stack.enter_context(running_cluster(2))
            # an idle cluster with Dask's defaults wakes its workers' profilers every 10 ms: only
            # alive when asked for, since it competes with the builds timed here
            plain = stack.enter_context(running_cluster(1, project=False)) if args.dask_defaults else None
            n_chips = build(spec, tmp / "warm", workers=0)[1]  # warms the page cache
            run = {"floor": lambda r: floor(spec),
                   "in_process": lambda r: build(spec, tmp / f"b0-{r}", workers=0)[0],
                   "dask_1": lambda r: build(spec, tmp / f"b1-{r}", scheduler=one)[0],
                   "dask_2": lambda r: build(spec, tmp / f"b2-{r}", scheduler=two)[0],
                   "dask_1_dask_defaults": lambda r: build(spec, tmp / f"bp-{r}", scheduler=plain)[0]}
            for r in range(args.repeats):
                # each round runs every kind once, starting one kind later than the round before,
                # so that no kind always follows the same one (a Dask build leaves its cluster busy
                # for a moment; this machine's speed drifts in phases of seconds)
                for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                    times[kind].append(run[kind](r))
        med = {k: statistics.median(v) for k, v in times.items()}
        paired = {name: [a / b for a, b in zip(times[num], times[den])]
                  for name, (num, den) in RATIOS.items() if num in times}
        results["build"] = {
            "chips": n_chips, "shards": -(-n_chips // args.shard_chips), "seconds": times, "median_s": med,
            "chips_per_s": {k: n_chips / v for k, v in med.items()},
            # the median of the rounds' own ratios (both builds of a ratio ran within seconds of
            # each other) beside the ratio of the medians: the machine's speed drifts in phases
            "per_round": paired,
            **{name: statistics.median(v) for name, v in paired.items()},
            "ratio_of_medians": {name: med[num] / med[den] for name, (num, den) in RATIOS.items()
                                 if num in times},
        }
        results["remote"] = remote_bytes(tmp, args.data, 60)
        results["loader"] = loaders(args.data, ben_dataset(args.data, tmp), args.passes, args.repeats)
        results["loader_memory"] = memory(spec, tmp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
