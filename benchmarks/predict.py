"""Benchmark: ``atomizer predict`` over the full 60 m Sentinel-2 tile and crops of it, vs evaluate.

Run from the project root::

    python benchmarks/predict.py [--out benchmarks/results/predict.json]

The parent writes square crops of the tile (``../shared/data/s2_l2a_T29UNU_20221005_60m``, or the
folder in ``ATOMIZER_SHARED_DATA``, or ``--data``) as tiled GeoTIFFs, one per band, each wrapped in
a STAC item (the full tile too, so that every size is read the same way), and a randomly initialised
``atomizer-tiny`` checkpoint (prediction cost does not depend on the weights). Each measurement runs
in a fresh subprocess (one torch thread), which times only its work and reports its peak RSS:

- ``predict`` at three sizes (1/16, 1/4 and the whole tile): wall / CPU time, km²/s, atoms/s;
- ``evaluate`` on the quarter: the same windows' atoms, read beforehand into memory, through
  :func:`atomizer.training.evaluate.evaluate_model` with the same batch size; alternated with
  predictions of the quarter ``--repeats`` times, and the medians compared (one pair varies by
  up to 1.3 x on a machine shared with other jobs).

Targets (issue 11): time linear in area; peak RSS of the quarter and the whole tile within 20%;
predict's cost <= 1.3 x evaluate's on the same atoms.
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
SIDES_PX = (458, 915, 1830)  # 1/16, 1/4 and all of the 1830 x 1830 tile
CHIP_M = STRIDE_M = 1920.0  # 32 px windows at 60 m, side by side
BATCH = 16
KIB = 1024


def make_inputs(data: Path, tmp: Path) -> dict[str, Any]:
    """A STAC item per size (crops from the tile's top-left corner) and a model checkpoint."""
    import rasterio
    import torch

    from atomizer.models import build_model
    from atomizer.plugins.host import PluginHost
    from atomizer.readers.stac_build import sentinel2_l2a_item
    from atomizer.training.checkpoint import CheckpointContent, save_checkpoint

    items = {}
    for side in SIDES_PX:
        item = sentinel2_l2a_item(data)
        folder = tmp / f"crop{side}"
        folder.mkdir()
        window = rasterio.windows.Window(0, 0, side, side)
        for key, asset in list(item.assets.items()):
            with rasterio.open(asset.href) as src:
                arr = src.read(1, window=window)
                profile = {
                    **src.profile,
                    "driver": "GTiff",
                    "width": side,
                    "height": side,
                    "transform": src.window_transform(window),
                    "tiled": True,
                    "blockxsize": 256,
                    "blockysize": 256,
                }
            profile.pop("compress", None)
            path = folder / f"{key}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(arr, 1)
            asset.href = str(path)
            asset.extra_fields.pop("proj:shape", None)
            asset.extra_fields.pop("proj:transform", None)
        items[side] = str(folder / "item.json")
        item.save_object(dest_href=items[side], include_self_link=False)
    torch.manual_seed(0)
    model = build_model(
        "atomizer-tiny",
        {"num_classes": 10, "task": "multiclass"},
        host=PluginHost(load_entrypoints=False),
    )
    content = CheckpointContent(
        model_name="atomizer-tiny", model_config=model.config.model_dump(mode="json")
    )
    ckpt = save_checkpoint(tmp / "model", content, model_state=model.state_dict())
    return {"items": items, "checkpoint": str(ckpt)}


# --- children ------------------------------------------------------------------------------
def child(kind: str, item: str, checkpoint: str, out_dir: str) -> dict[str, Any]:
    import torch

    from atomizer.inference.loading import load_inference_model
    from atomizer.plugins.host import PluginHost

    torch.set_num_threads(1)
    host = PluginHost(load_entrypoints=False)
    model = load_inference_model(checkpoint, host=host)
    if kind == "predict":
        from atomizer.inference.predict import predict_scene

        rss0 = _maxrss_bytes()
        c0, t0 = _cpu_seconds(), time.perf_counter()
        report = predict_scene(
            model,
            item,
            Path(out_dir) / "map.tif",
            sensor=None,
            host=host,
            chip_m=CHIP_M,
            stride_m=STRIDE_M,
            batch_size=BATCH,
        )
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        return {
            "kind": kind,
            "wall_s": wall,
            "cpu_s": cpu,
            "n_atoms": report.n_atoms,
            "n_windows": report.n_windows,
            "area_km2": report.area_km2,
            "model_s": report.model_seconds,
            "rss_after_setup": rss0,
            "peak_rss": _maxrss_bytes(),
        }
    from atomizer.inference.windows import iter_window_rows, scene_geometry, window_grid
    from atomizer.training.evaluate import evaluate_model

    geo = scene_geometry(item, sensor=None, host=host)
    rows = window_grid(geo, chip_m=CHIP_M, stride_m=STRIDE_M)
    chips = [c for _, cs in iter_window_rows(item, geo, rows, sensor=None, host=host) for c in cs]
    dataset = [(c, 0) for c in chips if len(c)]
    c0, t0 = _cpu_seconds(), time.perf_counter()
    evaluate_model(
        model.model,
        dataset,
        task="multiclass",
        num_classes=10,
        metrics=["overall_accuracy"],
        batch_size=BATCH,
    )
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return {
        "kind": kind,
        "wall_s": wall,
        "cpu_s": cpu,
        "n_atoms": sum(len(c) for c, _ in dataset),
        "n_windows": len(chips),
        "peak_rss": _maxrss_bytes(),
    }


def run_child(kind: str, item: str, checkpoint: str, tmp: Path) -> dict[str, Any]:
    out = tempfile.mkdtemp(dir=tmp)
    cmd = [sys.executable, __file__, "--child", kind, item, checkpoint, out]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_data(TILE))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predict.json"))
    parser.add_argument("--repeats", type=int, default=3,
                        help="Quarter-tile predict / evaluate pairs (medians are compared).")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        inputs = make_inputs(args.data, tmp)
        runs = {}
        for side in SIDES_PX:
            runs[f"predict-{side}"] = run_child(
                "predict", inputs["items"][side], inputs["checkpoint"], tmp
            )
            print(side, runs[f"predict-{side}"], file=sys.stderr)
        # predict vs evaluate on the quarter: alternated, --repeats times each, medians compared
        pairs = []
        for r in range(args.repeats):
            ev = run_child("evaluate", inputs["items"][915], inputs["checkpoint"], tmp)
            pr = runs["predict-915"] if r == 0 else run_child(
                "predict", inputs["items"][915], inputs["checkpoint"], tmp
            )
            pairs.append((pr, ev))
            print("pair", r, pr["cpu_s"], ev["cpu_s"], file=sys.stderr)
        runs["evaluate-915"] = sorted((e for _, e in pairs), key=lambda e: e["cpu_s"])[
            len(pairs) // 2
        ]
        runs["pairs-915"] = [{"predict_cpu_s": p["cpu_s"], "evaluate_cpu_s": e["cpu_s"],
                              "predict_wall_s": p["wall_s"], "evaluate_wall_s": e["wall_s"]}
                             for p, e in pairs]
    summary = summarise(runs)
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "torch_threads": 1,
        },
        "chip_m": CHIP_M,
        "stride_m": STRIDE_M,
        "batch_size": BATCH,
        "runs": runs,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def summarise(runs: dict[str, Any]) -> dict[str, Any]:
    """Ratios; CPU-time figures too, since wall time on a shared machine includes waiting."""
    full, quarter = runs["predict-1830"], runs["predict-915"]
    pred = {k: r for k, r in runs.items() if k.startswith("predict")}
    pairs = runs["pairs-915"]

    def median(key: str) -> float:
        return statistics.median(p[key] for p in pairs)

    wall_per_km2 = {k: r["wall_s"] / r["area_km2"] for k, r in pred.items()}
    cpu_per_km2 = {k: r["cpu_s"] / r["area_km2"] for k, r in pred.items()}
    return {
        "full_tile_km2_per_s": full["area_km2"] / full["wall_s"],
        "full_tile_atoms_per_s": full["n_atoms"] / full["wall_s"],
        "full_tile_km2_per_cpu_s": full["area_km2"] / full["cpu_s"],
        "full_tile_atoms_per_cpu_s": full["n_atoms"] / full["cpu_s"],
        "wall_s_per_km2": wall_per_km2,
        "cpu_s_per_km2": cpu_per_km2,
        "cpu_s_per_km2_ratio_full_to_smallest": cpu_per_km2["predict-1830"]
        / cpu_per_km2["predict-458"],
        # the tile is ~40% no-data (no atoms, no model work): per atom is the fair unit of work
        "cpu_us_per_atom": {k: 1e6 * r["cpu_s"] / r["n_atoms"] for k, r in pred.items()},
        "cpu_per_atom_ratio_full_to_smallest": (full["cpu_s"] / full["n_atoms"])
        / (runs["predict-458"]["cpu_s"] / runs["predict-458"]["n_atoms"]),
        "peak_rss_mb": {k: r["peak_rss"] / 1e6 for k, r in runs.items() if k != "pairs-915"},
        "peak_rss_ratio_full_to_quarter": full["peak_rss"] / quarter["peak_rss"],
        "predict_over_evaluate_wall": median("predict_wall_s") / median("evaluate_wall_s"),
        "predict_over_evaluate_cpu": median("predict_cpu_s") / median("evaluate_cpu_s"),
        "predict_over_evaluate_cpu_per_pair": [
            p["predict_cpu_s"] / p["evaluate_cpu_s"] for p in pairs
        ],
    }


if __name__ == "__main__":
    main()
