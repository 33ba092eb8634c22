"""``atomizer dataset build``: shard tasks run on Dask, then stats, errors and the manifest (last).

One task per item (or per ``shard_chips`` labels of one item) reads its chips and writes its shard
atomically. Tasks run on a local Dask cluster of ``workers`` processes, or on a running
``dask.distributed`` cluster given by its scheduler address (the same code, the same bytes), or in
this process with ``workers=0``. A shard already on disk whose header carries the task's key is
kept, so an interrupted build resumes where it stopped; killing one loses at most the shards in
flight. An item that cannot be read is recorded in ``errors.jsonl`` and skipped; when more than
``max_failures`` of the tasks fail the build stops without writing a manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomizer.cluster import TaskRunner
from atomizer.datasets.chips import describe_failure, read_item_chips
from atomizer.datasets.manifest import MANIFEST, write_outputs
from atomizer.datasets.plan import BuildPlan, ShardTask, plan_build, shard_dir
from atomizer.datasets.shards import read_shard_header, save_shard
from atomizer.datasets.spec import DatasetSpec
from atomizer.datasets.stats import atom_stats
from atomizer.errors import AtomizerError, AtomsFormatError, DatasetError
from atomizer.io import ensure_dir

#: ``progress(done, total)``: called as shard tasks finish.
BuildProgress = Callable[[int, int], None]


@dataclass
class BuildResult:
    out: Path
    n_tasks: int
    n_reused: int
    n_built: int
    n_failed: int
    n_chips: int
    n_errors: int


def run_task(task: ShardTask, out: str) -> str:
    """Read one task's chips and write its shard; returns ``{"header": ...}`` or ``{"error": ...}``
    as JSON text.

    Runs on a Dask worker: everything it needs is in ``task``; it never raises for bad input. The
    result is text because a worker measures every result it holds (``dask.sizeof``), which walks
    a nested header (100 chips' rows) at a few percent of a build's time, and pickles it to send
    it; text is measured and sent as it is. It is also what a reused shard's header is (JSON with
    sorted keys), so a resumed build writes the same manifest as a fresh one.
    """
    from atomizer.readers.remote import gdal_env

    req = task.request
    try:
        with gdal_env():
            got = read_item_chips(req)
        stats = {req.sensor.id: {b: st.to_json() for b, st in _shard_stats(got.chips).items()}}
        header = save_shard(Path(out) / task.name, got.chips, got.rows, task=task.key, stats=stats,
                            skipped=got.skipped)
        result: dict[str, Any] = {"header": header}
    except Exception as exc:  # noqa: BLE001 - any failure of one item is recorded, never fatal
        result = {"error": describe_failure(exc), "item_id": str(req.item.get("id")),
                  "labels": len(req.labels)}
    return json.dumps(result, sort_keys=True, separators=(",", ":"))  # as the shard's header


def _shard_stats(chips: list[Any]) -> dict[str, Any]:
    """Band statistics of all chips of one shard, computed once per band table."""
    import numpy as np

    from atomizer.datasets.stats import BandStats

    total: dict[str, BandStats] = {}
    tables: dict[tuple, list[Any]] = {}
    for atoms in chips:
        tables.setdefault(tuple(b.name for b in atoms.bands), []).append(atoms)
    for names, group in tables.items():
        value = np.concatenate([a.value for a in group])
        band = np.concatenate([a.band for a in group])
        for name, st in atom_stats(value, band, list(names)).items():
            total.setdefault(name, BandStats()).merge(st)
    return total


def _reusable(task: ShardTask, folder: Path) -> dict[str, Any] | None:
    path = folder / task.name
    if not path.is_file():
        return None
    try:
        header = read_shard_header(path)
    except AtomsFormatError:
        return None
    return header if header.get("task") == task.key else None


def build_dataset(spec: DatasetSpec, out: str | Path, *, workers: int = 1,
                  scheduler: str | None = None, max_failures: float = 0.5,
                  progress: BuildProgress | None = None, host: Any = None) -> BuildResult:
    """Build (or resume) the dataset of ``spec`` in ``out``; see the module docstring."""
    if not 0 <= max_failures <= 1:
        raise DatasetError(f"max_failures is a fraction from 0 to 1, got {max_failures:g}")
    if workers < 0:
        raise DatasetError(f"workers must be >= 0, got {workers}")
    _require("geopandas", "shapely", *(("distributed",) if workers or scheduler else ()))
    out = Path(out)
    plan = plan_build(spec, host=host)
    folder = ensure_dir(shard_dir(out))
    # the folder stops being a finished dataset now: a build that fails or is killed from here on
    # must not leave the old manifest describing shards it is about to replace
    (out / MANIFEST).unlink(missing_ok=True)
    headers: dict[str, dict[str, Any]] = {}
    todo = []
    for task in plan.tasks:
        header = _reusable(task, folder)
        if header is None:
            todo.append(task)
        else:
            headers[task.name] = header
    n_reused = len(headers)
    failures = _execute(plan, todo, folder, headers, workers, scheduler, max_failures, progress, out)
    if not any(h.get("chips") for h in headers.values()):
        _write_errors(out, plan.errors + failures + [e for h in headers.values()
                                                     for e in h.get("skipped", [])])
        raise DatasetError(
            f"no chip was built from {len(plan.labels)} labels and {plan.n_items} items (every "
            f"label was skipped or failed); see {out / 'errors.jsonl'} for why"
        )
    n_chips, n_errors = write_outputs(plan, headers, failures, out)
    return BuildResult(out, len(plan.tasks), n_reused, len(todo) - len(failures), len(failures),
                       n_chips, n_errors)


def _execute(plan: BuildPlan, todo: list[ShardTask], folder: Path, headers: dict[str, Any],
             workers: int, scheduler: str | None, max_failures: float,
             progress: BuildProgress | None, out: Path) -> list[dict[str, Any]]:
    failures: list[dict[str, Any]] = []
    total = len(plan.tasks)
    done = total - len(todo)
    if progress is not None:
        progress(done, total)
    if not todo:
        return failures
    with TaskRunner(workers, scheduler, error=DatasetError) as runner:
        for task, text in runner.run(run_task, todo, str(folder), key=lambda t: f"shard-{t.key}"):
            result = json.loads(text)
            done += 1
            if "error" in result:
                failures.append({k: result[k] for k in ("item_id", "error")} | {"shard": task.name})
                if len(failures) > max_failures * total:
                    _write_errors(out, plan.errors + failures)
                    raise DatasetError(
                        f"{len(failures)} of {total} shard tasks failed (more than --max-failures "
                        f"{max_failures:g}); first: item {failures[0]['item_id']}: "
                        f"{failures[0]['error']}; see {out / 'errors.jsonl'}"
                    )
            else:
                headers[task.name] = result["header"]
            if progress is not None:
                progress(done, total)
    return failures


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DatasetError(
            f"building a dataset needs {', '.join(missing)}: pip install 'atomizer[datasets]'"
        )


def _write_errors(out: Path, errors: list[dict[str, Any]]) -> None:
    from atomizer.io import atomic_write_text

    atomic_write_text(out / "errors.jsonl", "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors))


__all__ = ["BuildResult", "build_dataset", "run_task", "AtomizerError"]
