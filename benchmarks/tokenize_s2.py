"""Benchmark: tokenize the full 60 m Sentinel-2 L2A tile against a bare rasterio read of its bands.

Run from the project root::

    python benchmarks/tokenize_s2.py [--repeats 3] [--out benchmarks/results/tokenize_s2.json]

A STAC item is generated for the tile (``../shared/data/s2_l2a_T29UNU_20221005_60m``, or the
folder in ``ATOMIZER_SHARED_DATA``, or ``--data``). Each measurement runs in a fresh subprocess,
alternating "floor" (``rasterio.open(band).read(1)`` for the 11 bands the item matches, one after
the other, GDAL's default decoding threads), "floor-1thread" (the same with ``GDAL_NUM_THREADS=1``,
the setting the reader decodes each file with; it decodes files in parallel instead),
"tokenize" (``StacReader().read(item)``, sensor detected among the plugin host's specs, as the CLI
does) and "tokenize-lean" (the same, with the built-in specs loaded without the plugin host, which
imports every plugin package). A child times only the work (wall and CPU time), after its imports
and set-up, and reports its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) and its RSS after
set-up.

Targets (issue 13): tokenize time (wall and CPU) <= 1.2 x floor time; tokenize peak RSS <= 1.5 x
AtomSet.nbytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
# benchmarks/ is on sys.path when a script runs as python benchmarks/NAME.py
from _measure import (
    cpu_seconds as _cpu_seconds,
    maxrss_bytes as _maxrss_bytes,
    shared_data,
)

TILE = "s2_l2a_T29UNU_20221005_60m"
#: Child runs, alternated: bare read, tokenize as the CLI does, tokenize without the plugin host.
KINDS = ("floor", "floor-1thread", "tokenize", "tokenize-lean")
TARGET_TIME_RATIO = 1.2
TARGET_RSS_RATIO = 1.5
KIB = 1024  # ru_maxrss is in KiB on Linux
MB = 1e6
PROFILE_ROWS = 15


# --- children: one measurement each, in a fresh interpreter ---------------------------------
def child_floor(item_path: str, *, threads: str | None = None) -> dict[str, Any]:
    """Read the item's 11 band files with rasterio, nothing else (``threads``: GDAL_NUM_THREADS)."""
    import contextlib

    import rasterio

    hrefs = json.loads(Path(item_path).with_suffix(".hrefs.json").read_text())
    env = rasterio.Env(GDAL_NUM_THREADS=threads) if threads else contextlib.nullcontext()
    setup_rss = _maxrss_bytes()
    cpu, start = _cpu_seconds(), time.perf_counter()
    with env:
        for href in hrefs:
            with rasterio.open(href) as ds:
                ds.read(1)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "setup_rss": setup_rss,
        "peak_rss": _maxrss_bytes(),
    }


def _builtin_specs() -> Any:
    """The built-in sensor specs, without the plugin host (which imports every plugin package)."""
    from atomizer.sensors.loader import read_raw_spec
    from atomizer.sensors.registry import SensorRegistry, builtin_sensor_files

    return SensorRegistry.from_raw([(read_raw_spec(p), "atomizer") for p in builtin_sensor_files()])


def child_tokenize(item_path: str, *, lean: bool = False) -> dict[str, Any]:
    """Tokenize the item; ``lean``: the specs come without the plugin host (and its imports)."""
    from atomizer.readers.stac import StacReader

    if lean:
        sensors = _builtin_specs()
    else:
        from atomizer.plugins.host import PluginHost

        sensors = PluginHost(load_entrypoints=False).sensors  # as the CLI does
    setup_rss = _maxrss_bytes()
    cpu, start = _cpu_seconds(), time.perf_counter()
    atoms, report = StacReader().read(item_path, sensors=sensors)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "setup_rss": setup_rss,
        "peak_rss": _maxrss_bytes(),
        "n_atoms": len(atoms),
        "nbytes": atoms.nbytes,
        "n_bands": atoms.n_bands,
        "n_nodata": report.n_nodata,
        "sensor": report.sensor_id,
        "torch_imported": "torch" in sys.modules,
    }


def child_profile(item_path: str) -> dict[str, Any]:
    """``tokenize-lean`` under cProfile: the functions that take the time (own time, CPU of the
    main thread; the JPEG 2000 decoder's worker threads are not seen, only the wait for them)."""
    import cProfile
    import pstats

    from atomizer.readers.stac import StacReader

    sensors = _builtin_specs()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    StacReader().read(item_path, sensors=sensors)
    profiler.disable()
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tottime, cumtime, ...)}
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:PROFILE_ROWS]
    return {
        "seconds": seconds,
        "stages_s": {  # cumulative, main thread: reading (decoding and reduction waited for, copies), copies
            name: sum(v[3] for (f, _, n), v in stats.items() if n == name and "pixels" in f)
            for name in ("read_atoms", "add")
        },
        "top": [
            {"function": f"{Path(f).name}:{line}({name})", "own_s": v[2], "calls": v[1]}
            for (f, line, name), v in rows
        ],
    }


def _run_child(kind: str, item_path: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, item_path],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- parent ---------------------------------------------------------------------------------
def make_item(data: Path, folder: Path) -> str:
    from atomizer.readers.stac import StacReader
    from atomizer.readers.stac_build import sentinel2_l2a_item

    path = folder / "item.json"
    sentinel2_l2a_item(data).save_object(dest_href=str(path), include_self_link=False)
    # the floor reads exactly the files the tokenizer matches (same 11 bands)
    from atomizer.readers import PixelWindow, ReadOptions

    _, report = StacReader().read(
        str(path), sensors=_builtin_specs(), options=ReadOptions(window=PixelWindow(0, 0, 1, 1))
    )
    path.with_suffix(".hrefs.json").write_text(json.dumps([b.href for b in report.bands]))
    return str(path)


def _side(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": [r["seconds"] for r in runs],
        "median_s": statistics.median(r["seconds"] for r in runs),
        "min_s": min(r["seconds"] for r in runs),
        "cpu_median_s": statistics.median(r["cpu_seconds"] for r in runs),
        "peak_rss": max(r["peak_rss"] for r in runs),
        "setup_rss": min(r["setup_rss"] for r in runs),
    }


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    floor = _side(runs["floor"])
    first = runs["tokenize"][0]
    nbytes = first["nbytes"]
    out: dict[str, Any] = {
        "n_atoms": first["n_atoms"],
        "n_bands": first["n_bands"],
        "sensor": first["sensor"],
        "n_nodata_dropped": first["n_nodata"],
        "atomset_nbytes": nbytes,
        "floor": floor,
        "floor-1thread": _side(runs["floor-1thread"]),
        "targets": {"time_ratio": TARGET_TIME_RATIO, "rss_ratio": TARGET_RSS_RATIO},
    }
    for kind in ("tokenize", "tokenize-lean"):
        side = _side(runs[kind])
        side.update(
            torch_imported=runs[kind][0]["torch_imported"],
            time_ratio=side["median_s"] / floor["median_s"],
            time_ratio_min=side["min_s"] / floor["min_s"],
            cpu_ratio=side["cpu_median_s"] / floor["cpu_median_s"],
            atoms_per_s=first["n_atoms"] / side["median_s"],
            rss_ratio=side["peak_rss"] / nbytes,
            rss_ratio_above_setup=(side["peak_rss"] - side["setup_rss"]) / nbytes,
        )
        out[kind] = side
    return out


def print_table(s: dict[str, Any]) -> None:
    f = s["floor"]
    print(
        f"atoms: {s['n_atoms']:,} ({s['n_bands']} bands, {s['n_nodata_dropped']:,} no-data dropped)"
    )
    print(f"AtomSet.nbytes: {s['atomset_nbytes'] / MB:.1f} MB")
    print(
        f"floor (bare read): median {f['median_s']:.2f} s wall, {f['cpu_median_s']:.2f} s CPU; "
        f"peak RSS {f['peak_rss'] / MB:.0f} MB"
    )
    f1 = s["floor-1thread"]
    print(
        f"floor-1thread (GDAL_NUM_THREADS=1): median {f1['median_s']:.2f} s wall, "
        f"{f1['cpu_median_s']:.2f} s CPU"
    )
    for kind, label in (
        ("tokenize", "plugin host, as the CLI"),
        ("tokenize-lean", "no plugin host"),
    ):
        t = s[kind]
        print(f"{kind} ({label}; torch imported: {t['torch_imported']}):")
        print(
            f"  median {t['median_s']:.2f} s wall, {t['cpu_median_s']:.2f} s CPU; ratio to floor "
            f"{t['time_ratio']:.2f} wall (best/best {t['time_ratio_min']:.2f}), "
            f"{t['cpu_ratio']:.2f} CPU (target <= {TARGET_TIME_RATIO}); "
            f"{t['atoms_per_s'] / 1e6:.1f} M atoms/s"
        )
        print(
            f"  peak RSS {t['peak_rss'] / MB:.0f} MB = {t['rss_ratio']:.2f} x nbytes "
            f"(target <= {TARGET_RSS_RATIO}); after set-up {t['setup_rss'] / MB:.0f} MB, "
            f"peak above it {t['rss_ratio_above_setup']:.2f} x nbytes"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="the tile folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "tokenize_s2.json"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile one tokenize-lean run instead of timing"
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ITEM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, item = args.child
        if kind.startswith("floor"):
            result = child_floor(item, threads="1" if kind == "floor-1thread" else None)
        elif kind == "profile":
            result = child_profile(item)
        else:
            result = child_tokenize(item, lean=kind == "tokenize-lean")
        print(json.dumps(result))
        return 0
    data = args.data or shared_data(TILE)
    if not data.is_dir():
        print(
            f"tile folder {data} not found; pass --data or set ATOMIZER_SHARED_DATA",
            file=sys.stderr,
        )
        return 1
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            result = _run_child("profile", make_item(data, Path(tmp)))
        print(f"tokenize-lean under cProfile: {result['seconds']:.2f} s wall")
        for name, seconds in result["stages_s"].items():
            print(f"  {name}: {seconds:.2f} s")
        print("| function | own s | calls |\n|---|---:|---:|")
        for row in result["top"]:
            print(f"| {row['function']} | {row['own_s']:.3f} | {row['calls']} |")
        return 0
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        item = make_item(data, Path(tmp))
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        for _ in range(args.repeats):
            for kind in KINDS:
                runs[kind].append(_run_child(kind, item))
    summary = summarise(runs)
    summary["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    print_table(summary)
    from atomizer.io import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(summary, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
