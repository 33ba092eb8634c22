"""Benchmark: forward + backward of the paper-size Atomizer on CPU, factorised vs naive input path.

Run from the project root::

    python benchmarks/model_forward_backward.py [--quick] [--threads 1] [--out results.json]

Model: ``atomizer-paper`` (4 cross-attention blocks x 4 self-attention layers, 128 latents x 512,
atom drop p = 0.5, default tokenizer: 275-wide tokens), batch 8, training mode, loss = sum of the
logits. Inputs: synthetic Sentinel-2 L2A patches (random reflectances: values do not change the
cost) at BigEarthNet scale:

- ``native``: every band on its own grid, 120 x 120 px at 10 m, 60 x 60 at 20 m, 20 x 20 at 60 m:
  80,000 atoms per image;
- ``full``: the 12 bands resampled to 120 x 120 (10 m): 172,800 atoms per image.

Implementations (same parameters, same outputs):

- ``factorised``: :class:`atomizer.models.AtomizerModel` as configured by default (factorised keys
  and values computed per sample inside a fused cross-attention, recomputed in the backward pass);
- ``factorised-unfused``: the same with ``fused_attention: false`` (keys and values of the kept
  atoms stored for the backward pass, attention by SDPA);
- ``naive``: :class:`atomizer.models.NaiveAtomizerModel`, the reference code's approach: every
  atom's full token built per atom, the ``(S, N, 275)`` matrix projected by one Linear.

Each (case, implementation) runs in a fresh subprocess that times only the training steps, after a
warm-up step: CPU seconds of the process (``getrusage``: robust when other jobs share the cores) and
wall seconds, plus its peak RSS (``ru_maxrss``) and the RSS before the first step ("set-up": Python,
torch, model, batch). A last subprocess runs the factorised model on several input sizes and fits
``cpu_seconds = a + b * atoms`` (the intercept is the atom-independent latent transformer).

Targets (issue 4): factorised >= 2x faster (images/s) and >= 3x less peak memory than naive.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BATCH = 8
CASES = ("native", "full")
IMPLS = ("factorised", "factorised-unfused", "naive")
TARGET_SPEEDUP = 2.0
TARGET_MEMORY_RATIO = 3.0
PATCH_SIDE_M = 1200.0  # a BigEarthNet patch: 120 px x 10 m
FULL_GSD_M = 10.0
SWEEP_SIDES_PX = (40, 60, 80, 100, 120)  # full-grid patches: 12 * side^2 atoms
QUICK_SWEEP_SIDES_PX = (40, 80, 120)
KIB = 1024
MIB = 2**20


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
        1 if sys.platform == "darwin" else KIB
    )


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- inputs -------------------------------------------------------------------------------------
def make_batch(case: str, *, side_px: int = 120, seed: int = 0):
    """``BATCH`` synthetic Sentinel-2 L2A patches of ``case`` (native grids, or one grid)."""
    import numpy as np

    from atomizer.atoms.atomset import AtomSet
    from atomizer.atoms.batch import collate_atoms
    from atomizer.plugins.host import PluginHost

    spec = PluginHost(load_entrypoints=False).sensors.get("sentinel2a-l2a")
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(BATCH):
        if case == "native":
            parts = []
            for band in spec.bands:
                n = round(PATCH_SIDE_M / band.gsd_m)
                plane = rng.uniform(0.0, 0.6, (1, n, n)).astype(np.float32)
                parts.append(AtomSet.from_array(plane, spec, bands=[band.name]))
            sets.append(AtomSet.concat(parts))
        else:
            cube = rng.uniform(0.0, 0.6, (len(spec.bands), side_px, side_px)).astype(np.float32)
            sets.append(AtomSet.from_array(cube, spec, gsd_m=FULL_GSD_M))
    return collate_atoms(sets)


def make_model(impl: str):
    import torch

    from atomizer.models import NaiveAtomizerModel, build_model

    torch.manual_seed(0)
    model = build_model(
        "atomizer-paper", {"num_classes": 19, "fused_attention": impl == "factorised"}
    )
    if impl == "naive":
        naive = NaiveAtomizerModel(config=model.config)
        naive.load_state_dict(model.state_dict())
        model = naive
    return model.train()


def _step(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    model(batch).sum().backward()


# --- children -----------------------------------------------------------------------------------
def child_case(case: str, impl: str, reps: int, warmup: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    batch = make_batch(case)
    model = make_model(impl)
    setup_rss = _rss_bytes()
    for _ in range(warmup):
        _step(model, batch)
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = _cpu_seconds(), time.perf_counter()
        _step(model, batch)
        cpu.append(_cpu_seconds() - c0)
        wall.append(time.perf_counter() - w0)
    return {
        "case": case,
        "impl": impl,
        "atoms_per_image": int(batch.mask.sum()) // BATCH,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "setup_rss": setup_rss,
        "peak_rss": _maxrss_bytes(),
    }


def child_sweep(impl: str, sides: list[int], reps: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    model = make_model(impl)
    rows = []
    for side in sides:
        batch = make_batch("full", side_px=side)
        _step(model, batch)  # warm-up at this size
        cpu = []
        for _ in range(reps):
            c0 = _cpu_seconds()
            _step(model, batch)
            cpu.append(_cpu_seconds() - c0)
        rows.append(
            {
                "side_px": side,
                "atoms_per_image": int(batch.mask.sum()) // BATCH,
                "cpu_seconds": statistics.median(cpu),
                "peak_rss_so_far": _maxrss_bytes(),
            }
        )
    return {"impl": impl, "rows": rows}


def _run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- report -------------------------------------------------------------------------------------
def linear_fit(x: list[float], y: list[float]) -> dict[str, float]:
    """Least-squares ``y = a + b x`` with R^2 and the largest relative residual."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((xi - mx) ** 2 for xi in x)
    b = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx
    a = my - b * mx
    ss_res = sum((yi - (a + b * xi)) ** 2 for xi, yi in zip(x, y))
    ss_tot = sum((yi - my) ** 2 for yi in y)
    worst = max(abs(yi - (a + b * xi)) / yi for xi, yi in zip(x, y))
    return {
        "intercept_s": a,
        "slope_s_per_atom": b,
        "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
        "max_rel_residual": worst,
    }


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        cpu = statistics.median(r["cpu_seconds"])
        rows.append(
            {
                "case": r["case"],
                "impl": r["impl"],
                "atoms_per_image": r["atoms_per_image"],
                "cpu_s_per_step": cpu,
                "wall_s_per_step": statistics.median(r["wall_seconds"]),
                "images_per_s": BATCH / cpu,
                "peak_rss_mib": r["peak_rss"] / MIB,
                "step_rss_mib": (r["peak_rss"] - r["setup_rss"]) / MIB,
            }
        )
    for row in rows:
        naive = next((x for x in rows if x["case"] == row["case"] and x["impl"] == "naive"), None)
        if naive is not None:
            row["speedup_vs_naive"] = naive["cpu_s_per_step"] / row["cpu_s_per_step"]
            row["peak_memory_ratio_vs_naive"] = naive["peak_rss_mib"] / row["peak_rss_mib"]
            row["step_memory_ratio_vs_naive"] = naive["step_rss_mib"] / row["step_rss_mib"]
    return rows


def print_report(rows: list[dict[str, Any]], sweeps: list[dict[str, Any]], threads: int) -> None:
    print(
        f"\nAtomizer paper size (4 x 4), batch {BATCH}, forward + backward, CPU, "
        f"{threads} thread(s)"
    )
    print(
        "| case | implementation | atoms/image | CPU s/step | wall s/step | images/s (CPU) | "
        "peak RSS MiB | step RSS MiB | speed-up | peak-memory ratio | step-memory ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['impl']} | {r['atoms_per_image']:,} | {r['cpu_s_per_step']:.2f} | "
            f"{r['wall_s_per_step']:.2f} | {r['images_per_s']:.3f} | {r['peak_rss_mib']:.0f} | "
            f"{r['step_rss_mib']:.0f} | {r.get('speedup_vs_naive', float('nan')):.2f}x | "
            f"{r.get('peak_memory_ratio_vs_naive', float('nan')):.2f}x | "
            f"{r.get('step_memory_ratio_vs_naive', float('nan')):.2f}x |"
        )
    for impl in ("factorised", "factorised-unfused"):
        for r in (x for x in rows if x["impl"] == impl and "speedup_vs_naive" in x):
            ok_t = r.get("speedup_vs_naive", 0) >= TARGET_SPEEDUP
            ok_m = r.get("peak_memory_ratio_vs_naive", 0) >= TARGET_MEMORY_RATIO
            print(
                f"target {r['case']} {impl}: speed-up >= {TARGET_SPEEDUP}x "
                f"{'MET' if ok_t else 'NOT MET'}; peak memory >= {TARGET_MEMORY_RATIO}x less "
                f"{'MET' if ok_m else 'NOT MET'}"
            )
    for sweep in sweeps:
        pts = sweep["rows"]
        fit = sweep["fit"]
        print(
            f"\nLinearity ({sweep['impl']}, full-grid patches, "
            "CPU seconds per step vs atoms/image):"
        )
        print("| atoms/image | CPU s/step | fit a + b*atoms | peak RSS so far MiB |")
        print("|---:|---:|---:|---:|")
        for p in pts:
            pred = fit["intercept_s"] + fit["slope_s_per_atom"] * p["atoms_per_image"]
            print(
                f"| {p['atoms_per_image']:,} | {p['cpu_seconds']:.2f} | {pred:.2f} | "
                f"{p['peak_rss_so_far'] / MIB:.0f} |"
            )
        print(
            f"fit: a = {fit['intercept_s']:.2f} s, b = {fit['slope_s_per_atom'] * 1e5:.3f} s per "
            f"100k atoms/image, R^2 = {fit['r2']:.4f}, max relative residual "
            f"{fit['max_rel_residual']:.1%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one timed step per case (after one warm-up), 3 sweep sizes, no unfused variant",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument(
        "--impls", default=None, help=f"comma-separated subset of {', '.join(IMPLS)}"
    )
    parser.add_argument("--no-sweep", action="store_true", help="skip the linearity sweep")
    parser.add_argument("--out", type=Path, default=None, help="write all figures as JSON here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "case":
            case, impl, reps, warmup = rest
            out = child_case(case, impl, int(reps), int(warmup), args.threads)
        else:
            impl, reps, *sides = rest
            out = child_sweep(impl, [int(s) for s in sides], int(reps), args.threads)
        print(json.dumps(out))
        return 0

    reps, warmup = (1, 1) if args.quick else (2, 1)
    impls = (
        args.impls.split(",")
        if args.impls
        else (["factorised", "naive"] if args.quick else list(IMPLS))
    )
    started = time.perf_counter()
    results = []
    for case in args.cases.split(","):
        for impl in impls:
            print(f"running {case} / {impl} ...", file=sys.stderr, flush=True)
            results.append(
                _run_child(
                    [
                        "--threads",
                        str(args.threads),
                        "--child",
                        "case",
                        case,
                        impl,
                        str(reps),
                        str(warmup),
                    ]
                )
            )
    sweeps = []
    if not args.no_sweep:
        sides = QUICK_SWEEP_SIDES_PX if args.quick else SWEEP_SIDES_PX
        print("running linearity sweep ...", file=sys.stderr, flush=True)
        sweep = _run_child(
            [
                "--threads",
                str(args.threads),
                "--child",
                "sweep",
                "factorised",
                "1",
                *map(str, sides),
            ]
        )
        sweep["fit"] = linear_fit(
            [p["atoms_per_image"] for p in sweep["rows"]], [p["cpu_seconds"] for p in sweep["rows"]]
        )
        sweeps.append(sweep)
    rows = summarise(results)
    print_report(rows, sweeps, args.threads)
    print(
        f"\ntotal wall time {time.perf_counter() - started:.0f} s; "
        f"{platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}"
    )
    if args.out:
        from atomizer.io import atomic_write_text

        atomic_write_text(
            args.out,
            json.dumps(
                {
                    "batch": BATCH,
                    "threads": args.threads,
                    "quick": args.quick,
                    "rows": rows,
                    "sweeps": sweeps,
                    "raw": results,
                },
                indent=2,
            ),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
