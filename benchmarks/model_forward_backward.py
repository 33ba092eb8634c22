"""Benchmark: a training step of the paper-size Atomizer on CPU: factorised vs naive, fp32 vs bf16.

Run from the project root::

    python benchmarks/model_forward_backward.py [--rounds 2] [--variants ...] [--out FILE]
    python benchmarks/model_forward_backward.py --profile native:factorised:bf16

Model: ``atomizer-paper`` (4 cross-attention blocks x 4 self-attention layers, 128 latents x 512,
atom drop p = 0.5, default tokenizer: 275-wide tokens), batch 8, training mode, loss = sum of the
logits. Inputs: synthetic Sentinel-2 L2A patches (random reflectances: values do not change the
cost) at BigEarthNet scale:

- ``native``: every band on its own grid, 120 x 120 px at 10 m, 60 x 60 at 20 m, 20 x 20 at 60 m:
  80,000 atoms per image;
- ``full``: the 12 bands resampled to 120 x 120 (10 m): 172,800 atoms per image.

Variants ``IMPL:PRECISION`` (same parameters, same outputs), precision ``fp32`` or ``bf16`` (bf16
autocast, as ``precision: bf16`` in an experiment):

- ``factorised``: :class:`atomizer.models.AtomizerModel` as configured by default (factorised keys
  and values computed per sample inside a fused cross-attention, recomputed in the backward pass);
- ``factorised-unfused``: the same with ``fused_attention: false`` (keys and values of the kept
  atoms stored for the backward pass, attention by SDPA);
- ``naive``: :class:`atomizer.models.NaiveAtomizerModel`, the reference code's approach: every
  atom's full token built per atom, the ``(S, N, 275)`` matrix projected by one Linear.

Each (case, variant) runs in a fresh subprocess that times only the training steps, after a
warm-up step: CPU seconds of the process (``getrusage``: robust when other jobs share the cores) and
wall seconds, plus its peak RSS (``ru_maxrss``) and the RSS before the first step ("set-up": Python,
torch, model, batch). ``--rounds`` repeats the list of children in order (A, B, A, B, ...); the
report gives medians and ratios against ``naive:fp32`` of the same case. ``--sweep`` adds a
subprocess that runs the factorised model on several input sizes and fits
``cpu_seconds = a + b * atoms``. ``--profile CASE:VARIANT`` prints torch.profiler's costliest
operators of one step instead.

Targets: issue 4: factorised >= 2x faster (images/s) and >= 3x less peak memory than naive;
issue 13: >= 3x faster than naive at an equal 172,800 atoms.
"""

from __future__ import annotations

import argparse
import json
import platform
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

BATCH = 8
CASES = ("native", "full")
IMPLS = ("factorised", "factorised-unfused", "naive")
TARGET_SPEEDUP = 2.0
TARGET_MEMORY_RATIO = 3.0
TARGET_EQUAL_TOKEN_SPEEDUP = 3.0  # issue 13: at an equal 172,800 tokens
DEFAULT_VARIANTS = ("factorised:fp32", "factorised:bf16", "naive:fp32")
PATCH_SIDE_M = 1200.0  # a BigEarthNet patch: 120 px x 10 m
FULL_GSD_M = 10.0
SWEEP_SIDES_PX = (40, 60, 80, 100, 120)  # full-grid patches: 12 * side^2 atoms
QUICK_SWEEP_SIDES_PX = (40, 80, 120)
KIB = 1024
PROFILE_ROWS = 15
MIB = 2**20


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


def _step(model, batch, precision: str = "fp32") -> None:
    import torch

    from atomizer.training.evaluate import autocast

    model.zero_grad(set_to_none=True)
    with autocast(torch.device("cpu"), precision):
        logits = model(batch)
    logits.float().sum().backward()


def split_variant(variant: str) -> tuple[str, str]:
    """``impl[:precision]`` -> (impl, precision); precision fp32 unless given."""
    impl, _, precision = variant.partition(":")
    if impl not in IMPLS or precision not in ("", "fp32", "bf16"):
        raise SystemExit(f"unknown variant {variant!r}: use IMPL[:fp32|bf16], IMPL in {IMPLS}")
    return impl, precision or "fp32"


# --- children -----------------------------------------------------------------------------------
def child_case(case: str, variant: str, reps: int, warmup: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    impl, precision = split_variant(variant)
    batch = make_batch(case)
    model = make_model(impl)
    setup_rss = _rss_bytes()
    for _ in range(warmup):
        _step(model, batch, precision)
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = _cpu_seconds(), time.perf_counter()
        _step(model, batch, precision)
        cpu.append(_cpu_seconds() - c0)
        wall.append(time.perf_counter() - w0)
    return {
        "case": case,
        "impl": impl,
        "precision": precision,
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
    """One row per (case, implementation, precision): medians over every round's children."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["case"], r["impl"], r["precision"]), []).append(r)
    rows = []
    for (case, impl, precision), runs in groups.items():
        cpu = statistics.median([c for r in runs for c in r["cpu_seconds"]])
        peak = statistics.median([r["peak_rss"] for r in runs])
        setup = statistics.median([r["setup_rss"] for r in runs])
        rows.append(
            {
                "case": case,
                "impl": impl,
                "precision": precision,
                "children": len(runs),
                "atoms_per_image": runs[0]["atoms_per_image"],
                "cpu_s_per_step": cpu,
                "wall_s_per_step": statistics.median([w for r in runs for w in r["wall_seconds"]]),
                "images_per_s": BATCH / cpu,
                "peak_rss_mib": peak / MIB,
                "step_rss_mib": (peak - setup) / MIB,
            }
        )
    for row in rows:
        ref = _row(rows, row["case"], "naive", "fp32")
        if ref is not None:
            row["speedup_vs_naive"] = ref["cpu_s_per_step"] / row["cpu_s_per_step"]
            row["peak_memory_ratio_vs_naive"] = ref["peak_rss_mib"] / row["peak_rss_mib"]
            row["step_memory_ratio_vs_naive"] = ref["step_rss_mib"] / row["step_rss_mib"]
        fp32 = _row(rows, row["case"], row["impl"], "fp32")
        if fp32 is not None:
            row["speedup_vs_fp32"] = fp32["cpu_s_per_step"] / row["cpu_s_per_step"]
    return rows


def _row(rows, case, impl, precision):
    return next(
        (x for x in rows if (x["case"], x["impl"], x["precision"]) == (case, impl, precision)),
        None,
    )


def print_report(rows: list[dict[str, Any]], sweeps: list[dict[str, Any]], threads: int) -> None:
    nan = float("nan")
    print(
        f"\nAtomizer paper size (4 x 4), batch {BATCH}, forward + backward, CPU, "
        f"{threads} thread(s); ratios against naive fp32 of the same case"
    )
    print(
        "| case | implementation | precision | atoms/image | CPU s/step | wall s/step | images/s | "
        "peak RSS MiB | step RSS MiB | vs naive: speed | vs naive: peak memory | "
        "vs naive: step memory | vs own fp32: speed |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['impl']} | {r['precision']} | {r['atoms_per_image']:,} | "
            f"{r['cpu_s_per_step']:.2f} | {r['wall_s_per_step']:.2f} | {r['images_per_s']:.3f} | "
            f"{r['peak_rss_mib']:.0f} | {r['step_rss_mib']:.0f} | "
            f"{r.get('speedup_vs_naive', nan):.2f}x | "
            f"{r.get('peak_memory_ratio_vs_naive', nan):.2f}x | "
            f"{r.get('step_memory_ratio_vs_naive', nan):.2f}x | "
            f"{r.get('speedup_vs_fp32', nan):.2f}x |"
        )
    for r in rows:
        if r["impl"] == "naive" or "speedup_vs_naive" not in r:
            continue
        ok_t = r["speedup_vs_naive"] >= TARGET_SPEEDUP
        ok_m = r["peak_memory_ratio_vs_naive"] >= TARGET_MEMORY_RATIO
        line = (
            f"target {r['case']} {r['impl']} {r['precision']}: speed-up >= {TARGET_SPEEDUP}x "
            f"{'MET' if ok_t else 'NOT MET'}; peak memory >= {TARGET_MEMORY_RATIO}x less "
            f"{'MET' if ok_m else 'NOT MET'}"
        )
        if r["case"] == "full":
            ok = r["speedup_vs_naive"] >= TARGET_EQUAL_TOKEN_SPEEDUP
            line += f"; >= {TARGET_EQUAL_TOKEN_SPEEDUP}x at 172,800 {'MET' if ok else 'NOT MET'}"
        print(line)
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


def child_profile(case: str, variant: str, threads: int) -> dict[str, Any]:
    """torch.profiler over one training step (after a warm-up): the costliest operators."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    impl, precision = split_variant(variant)
    batch = make_batch(case)
    model = make_model(impl)
    _step(model, batch, precision)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _step(model, batch, precision)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:PROFILE_ROWS]
    spans = {e.key: e.cpu_time_total for e in events if e.key.startswith("FactorisedCross")}
    return {
        "case": case,
        "variant": variant,
        "total_self_cpu_s": total / 1e6,
        "top": [
            {"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6, "calls": e.count}
            for e in top
        ],
        "fused_cross_attention_s": {k: v / 1e6 for k, v in spans.items()},
    }


def print_profile(p: dict[str, Any]) -> None:
    total = p["total_self_cpu_s"]
    print(f"\nProfile: {p['case']} / {p['variant']}, one step, {total:.2f} CPU s (profiled)")
    print("| operator | self CPU s | share | calls |")
    print("|---|---:|---:|---:|")
    for row in p["top"]:
        print(
            f"| {row['op']} | {row['self_cpu_s']:.2f} | {row['self_cpu_s'] / total:.1%} | "
            f"{row['calls']} |"
        )
    for name, seconds in p["fused_cross_attention_s"].items():
        print(f"{name} (inclusive): {seconds:.2f} s = {seconds / total:.1%}")


def _write(path: Path, payload: dict[str, Any]) -> None:
    from atomizer.io import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of fresh children")
    parser.add_argument("--reps", type=int, default=1, help="timed steps per child")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per child first")
    parser.add_argument("--quick", action="store_true", help="one round, native case only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated IMPL[:fp32|bf16], IMPL in {', '.join(IMPLS)}",
    )
    parser.add_argument("--sweep", action="store_true", help="also run the linearity sweep")
    parser.add_argument(
        "--profile", default=None, metavar="CASE:VARIANT", help="profile one step, e.g. "
        "native:factorised:bf16, instead of timing"
    )
    parser.add_argument("--out", type=Path, default=None, help="write all figures as JSON here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    threads = ["--threads", str(args.threads)]

    if args.child:
        kind, *rest = args.child
        if kind == "case":
            case, variant, reps, warmup = rest
            out = child_case(case, variant, int(reps), int(warmup), args.threads)
        elif kind == "profile":
            out = child_profile(rest[0], rest[1], args.threads)
        else:
            impl, reps, *sides = rest
            out = child_sweep(impl, [int(s) for s in sides], int(reps), args.threads)
        print(json.dumps(out))
        return 0

    if args.profile:
        case, variant = args.profile.split(":", 1)
        split_variant(variant)
        print_profile(_run_child([*threads, "--child", "profile", case, variant]))
        return 0

    variants = args.variants.split(",")
    for v in variants:
        split_variant(v)
    cases = ["native"] if args.quick else args.cases.split(",")
    rounds = 1 if args.quick else args.rounds
    started = time.perf_counter()
    results = []
    for round_ in range(rounds):  # A, B, C, A, B, C, ...: slow drifts of the load hit all alike
        for case in cases:
            for variant in variants:
                print(f"round {round_ + 1}: {case} / {variant} ...", file=sys.stderr, flush=True)
                results.append(
                    _run_child(
                        [*threads, "--child", "case", case, variant]
                        + [str(args.reps), str(args.warmup)]
                    )
                )
                if args.out:  # partial figures survive a later child's failure
                    _write(args.out, {"threads": args.threads, "partial": True, "raw": results})
    sweeps = []
    if args.sweep:
        sides = QUICK_SWEEP_SIDES_PX if args.quick else SWEEP_SIDES_PX
        print("running linearity sweep ...", file=sys.stderr, flush=True)
        sweep = _run_child([*threads, "--child", "sweep", "factorised", "1", *map(str, sides)])
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
        payload = {"batch": BATCH, "threads": args.threads, "rounds": rounds, "rows": rows}
        _write(args.out, {**payload, "sweeps": sweeps, "raw": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
