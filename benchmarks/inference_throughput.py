"""Benchmark: inference throughput (atoms/s) and memory of the paper-size Atomizer on CPU.

Run from the project root::

    python benchmarks/inference_throughput.py [--budget-mib 2048] [--rounds 2] [--out FILE]

Model: ``atomizer-paper`` in eval mode, gradients off (what ``predict``, ``embed`` and
``evaluate`` run), in float32 and under bf16 autocast. Inputs: synthetic 12-band Sentinel-2 L2A
images on one 10 m grid (random reflectances) of about 80,000, 500,000 and 2,000,000 atoms each.
For each size the batch size is chosen by :func:`atomizer.models.inference.inference_batch_size`
to the memory budget; a fresh child process per (size, precision) builds the batch, runs one
warm-up forward pass (``--warmup``) and times ``--reps`` more: CPU and wall seconds, peak RSS and the RSS before
the first pass (set-up: interpreter, torch, model, batch). *Forward memory* = peak - set-up +
the batch tensors, what the budget covers; it should stay under the budget whatever the image
size (memory flat in atoms). Children of every kind alternate, round after round, so a change of
the machine's load hits all kinds alike; figures are medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
# benchmarks/ is on sys.path when a script runs as python benchmarks/NAME.py
from _measure import (
    cpu_seconds as _cpu_seconds,
    maxrss_bytes as _maxrss_bytes,
    rss_bytes as _rss_bytes,
)

SIZES = (80_000, 500_000, 2_000_000)
PRECISIONS = ("fp32", "bf16")
BANDS = 12
GSD_M = 10.0
MIB = 2**20
KIB = 1024


def side_px(atoms: int) -> int:
    """Side of a square 12-band image with about ``atoms`` atoms."""
    return max(1, round((atoms / BANDS) ** 0.5))


def child(
    atoms: int, precision: str, budget_mib: int, reps: int, warmup: int, threads: int
) -> dict[str, Any]:
    import numpy as np
    import torch

    from atomizer.atoms.atomset import AtomSet
    from atomizer.atoms.batch import collate_atoms
    from atomizer.models import build_model
    from atomizer.models.inference import inference_batch_size
    from atomizer.plugins.host import PluginHost
    from atomizer.training.evaluate import autocast

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("atomizer-paper", {"num_classes": 19}).eval()
    side = side_px(atoms)
    n_atoms = BANDS * side * side
    batch_size = inference_batch_size(model, n_atoms, budget_mib * MIB)
    spec = PluginHost(load_entrypoints=False).sensors.get("sentinel2a-l2a")
    rng = np.random.default_rng(0)
    cube = rng.uniform(0.0, 0.6, (BANDS, side, side)).astype(np.float32)
    one = AtomSet.from_array(cube, spec, gsd_m=GSD_M)
    batch = collate_atoms([one] * batch_size)
    del one, cube
    tensors = (batch.value, batch.band, batch.x, batch.y, batch.mask)
    batch_bytes = sum(t.numel() * t.element_size() for t in tensors)
    setup_rss = _rss_bytes()
    device = torch.device("cpu")

    def forward() -> None:
        with torch.no_grad(), autocast(device, precision):
            model(batch)

    for _ in range(warmup):
        forward()
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = _cpu_seconds(), time.perf_counter()
        forward()
        cpu.append(_cpu_seconds() - c0)
        wall.append(time.perf_counter() - w0)
    return {
        "atoms_per_image": n_atoms,
        "precision": precision,
        "batch_size": batch_size,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "setup_rss": setup_rss,
        "peak_rss": _maxrss_bytes(),
        "batch_bytes": batch_bytes,
    }


def _run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(results: list[dict[str, Any]], budget_mib: int) -> list[dict[str, Any]]:
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["atoms_per_image"], r["precision"]), []).append(r)
    rows = []
    for (atoms, precision), runs in sorted(groups.items()):
        cpu = statistics.median([c for r in runs for c in r["cpu_seconds"]])
        peak = statistics.median([r["peak_rss"] for r in runs])
        setup = statistics.median([r["setup_rss"] for r in runs])
        forward = peak - setup + runs[0]["batch_bytes"]
        n = atoms * runs[0]["batch_size"]
        rows.append(
            {
                "atoms_per_image": atoms,
                "precision": precision,
                "batch_size": runs[0]["batch_size"],
                "cpu_s_per_batch": cpu,
                "wall_s_per_batch": statistics.median([w for r in runs for w in r["wall_seconds"]]),
                "atoms_per_cpu_s": n / cpu,
                "peak_rss_mib": peak / MIB,
                "forward_mib": forward / MIB,
                "forward_bytes_per_atom": forward / n,
                "within_budget": forward <= budget_mib * MIB,
            }
        )
    for row in rows:
        fp32 = next(
            (
                x
                for x in rows
                if x["atoms_per_image"] == row["atoms_per_image"] and x["precision"] == "fp32"
            ),
            None,
        )
        if fp32 is not None:
            row["speedup_vs_fp32"] = row["atoms_per_cpu_s"] / fp32["atoms_per_cpu_s"]
    return rows


def print_report(rows: list[dict[str, Any]], budget_mib: int, threads: int) -> None:
    print(
        f"\nAtomizer paper size, eval, no grad, CPU, {threads} thread(s), "
        f"memory budget {budget_mib} MiB"
    )
    print(
        "| atoms/image | precision | batch | CPU s/batch | wall s/batch | atoms/s (CPU) | "
        "vs fp32 | peak RSS MiB | forward MiB | forward bytes/atom | within budget |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['atoms_per_image']:,} | {r['precision']} | {r['batch_size']} | "
            f"{r['cpu_s_per_batch']:.2f} | {r['wall_s_per_batch']:.2f} | "
            f"{r['atoms_per_cpu_s'] / 1e6:.2f} M | {r.get('speedup_vs_fp32', float('nan')):.2f}x | "
            f"{r['peak_rss_mib']:.0f} | {r['forward_mib']:.0f} | "
            f"{r['forward_bytes_per_atom']:.0f} | {'yes' if r['within_budget'] else 'NO'} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mib", type=int, default=2048, help="memory budget per pass")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reps", type=int, default=1, help="timed passes per child")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per child first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="atoms per image")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--out", type=Path, default=None, help="write all figures as JSON here")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        atoms, precision, budget, reps, warmup = (int(x) if x.isdigit() else x for x in args.child)
        print(json.dumps(child(atoms, precision, budget, reps, warmup, args.threads)))
        return 0
    started = time.perf_counter()
    results = []
    for round_ in range(args.rounds):
        for atoms in args.sizes.split(","):
            for precision in args.precisions.split(","):
                print(f"round {round_ + 1}: {atoms} / {precision} ...", file=sys.stderr, flush=True)
                results.append(
                    _run_child(
                        ["--threads", str(args.threads), "--child", atoms, precision]
                        + [str(args.budget_mib), str(args.reps), str(args.warmup)]
                    )
                )
    rows = summarise(results, args.budget_mib)
    print_report(rows, args.budget_mib, args.threads)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")
    if args.out:
        from atomizer.io import atomic_write_text

        payload = {"budget_mib": args.budget_mib, "rows": rows, "raw": results}
        atomic_write_text(args.out, json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
