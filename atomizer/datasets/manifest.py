"""A dataset folder's index: ``manifest.json`` (written last, atomically), ``stats.json`` and
``errors.jsonl``.

``manifest.json``::

    {"format": "atomizer.dataset", "version": 1,
     "spec": {...the dataset spec...},
     "sensors": {"sentinel2a-l2a": {...the full sensor spec...}},   # readable without the YAML
     "classes": [...], "task": "multiclass" | "multilabel",
     "chips": [{"shard", "offset", "label", "split", "item_id", "sensor", "datetime",
                "lon", "lat", "atoms", "label_index", "masked"}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atomizer.datasets.shards import ShardFile
from atomizer.datasets.stats import merged, stats_json
from atomizer.errors import DatasetError
from atomizer.io import atomic_write_text
from atomizer.sensors.spec import SensorSpec

if TYPE_CHECKING:
    from atomizer.datasets.plan import BuildPlan

MANIFEST_FORMAT = "atomizer.dataset"
MANIFEST_VERSION = 1
MANIFEST = "manifest.json"
STATS = "stats.json"
ERRORS = "errors.jsonl"


def _dump(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def write_outputs(plan: BuildPlan, headers: Mapping[str, dict[str, Any]],
                  failures: list[dict[str, Any]], out: Path) -> tuple[int, int]:
    """stats.json, errors.jsonl, then manifest.json; returns (chips, errors)."""
    from atomizer.sensors.loader import spec_to_dict

    split_of = {lb.index: lb.split for lb in plan.labels}
    rows, errors, parts = [], list(plan.errors), []
    for task in plan.tasks:  # plan order: the manifest does not depend on completion order
        header = headers.get(task.name)
        if header is None:
            continue
        for offset, chip in enumerate(header["chips"]):
            row = {"shard": task.name, "offset": offset, **chip["row"]}
            row["split"] = split_of.get(row["label_index"])
            rows.append(row)
        errors.extend(header["skipped"])
        parts.extend(header["stats"].items())
    errors.extend(failures)
    atomic_write_text(out / STATS, _dump(stats_json(merged(parts))))
    atomic_write_text(out / ERRORS, "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors))
    used = {r["sensor"] for r in rows}
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "spec": plan.spec.model_dump(mode="json"),
        "sensors": {sid: spec_to_dict(s) for sid, s in sorted(plan.sensors.items()) if sid in used},
        "classes": plan.classes, "task": "multilabel" if plan.multilabel else "multiclass",
        "n_items": plan.n_items, "chips": rows,
    }
    atomic_write_text(out / MANIFEST, _dump(manifest))
    return len(rows), len(errors)


@dataclass
class Manifest:
    """A dataset folder's manifest, checked."""

    path: Path
    data: dict[str, Any]
    sensors: dict[str, SensorSpec]

    @property
    def chips(self) -> list[dict[str, Any]]:
        return self.data["chips"]

    @property
    def classes(self) -> list[str]:
        return list(self.data["classes"])

    @property
    def task(self) -> str:
        return self.data["task"]

    def shard_path(self, name: str) -> Path:
        return self.path / "shards" / name


def read_manifest(folder: str | Path) -> Manifest:
    """The manifest of dataset folder ``folder``; an absent, unfinished or incompatible one is a
    :class:`DatasetError` saying what to do."""
    from atomizer.documents import check_format, read_json

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such dataset folder; build one with atomizer dataset build")
    path = folder / MANIFEST
    if not path.is_file():
        raise DatasetError(
            f"{folder}: no {MANIFEST} (the build did not finish, or this is not a dataset folder); "
            "run atomizer dataset build again to finish it"
        )
    data = read_json(path, what="dataset manifest", error=DatasetError)
    check_format(
        data,
        str(path),
        format_id=MANIFEST_FORMAT,
        version=MANIFEST_VERSION,
        what="an atomizer dataset manifest",
        kind="dataset format",
        fix="rebuild the dataset with this atomizer",
        error=DatasetError,
    )
    try:
        _check_structure(data)
        sensors = {k: SensorSpec.model_validate(v) for k, v in data["sensors"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: corrupt manifest ({str(exc).splitlines()[0]}); rebuild it") from None
    return Manifest(folder, data, sensors)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_structure(data: dict[str, Any]) -> None:
    """Every field a reader of the folder relies on, with its type; a ValueError names the first
    that is wrong (a manifest edited by hand or damaged on disk)."""
    from atomizer.datasets.spec import SPLIT_NAMES

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)

    need(isinstance(data.get("spec"), dict), "'spec' is not an object")
    sensors = data.get("sensors")
    need(isinstance(sensors, dict) and all(isinstance(v, dict) for v in sensors.values()),
         "'sensors' is not an object of sensor specs")
    classes = data.get("classes")
    need(isinstance(classes, list) and all(isinstance(c, str) for c in classes),
         "'classes' is not a list of names")
    need(len(set(classes)) == len(classes), "'classes' names a class twice")
    need(data.get("task") in ("multiclass", "multilabel"), "'task' is not multiclass or multilabel")
    chips = data.get("chips")
    need(isinstance(chips, list), "'chips' is not a list")
    known, multilabel = set(classes), data["task"] == "multilabel"
    for i, row in enumerate(chips):
        where = f"chip row {i}"
        need(isinstance(row, dict), f"{where} is not an object")
        shard = row.get("shard")
        need(isinstance(shard, str) and shard == Path(shard).name and shard not in ("", ".", ".."),
             f"{where}: 'shard' is not a file name in shards/")
        need(_is_int(row.get("offset")) and row["offset"] >= 0, f"{where}: 'offset' is not a count")
        need(row.get("sensor") in sensors, f"{where}: 'sensor' is not one of the manifest's sensors")
        need(_is_int(row.get("atoms")) and row["atoms"] >= 0, f"{where}: 'atoms' is not a count")
        need(row.get("split") is None or row.get("split") in SPLIT_NAMES,
             f"{where}: 'split' is not one of {', '.join(SPLIT_NAMES)}")
        label = row.get("label")
        if multilabel:
            need(isinstance(label, list) and all(isinstance(v, str) and v in known for v in label),
                 f"{where}: 'label' is not a list of the manifest's classes")
        else:
            need(isinstance(label, str) and label in known,
                 f"{where}: 'label' is not one of the manifest's classes")


def recompute_stats(folder: str | Path) -> dict[str, Any]:
    """Statistics re-read from the shards' atoms (what ``atomizer dataset stats`` writes)."""
    from atomizer.datasets.stats import atom_stats, merge_into

    man = read_manifest(folder)
    total: dict[str, Any] = {}
    by_shard: dict[str, list[dict[str, Any]]] = {}
    for row in man.chips:
        by_shard.setdefault(row["shard"], []).append(row)
    for name, rows in by_shard.items():
        with ShardFile(man.shard_path(name)) as shard:
            for row in rows:
                atoms = shard.chip(row["offset"])
                merge_into(total, row["sensor"], atom_stats(atoms.value, atoms.band, atoms.band_names))
    out = stats_json(total)
    atomic_write_text(man.path / STATS, _dump(out))
    return out


def summary(folder: str | Path) -> dict[str, Any]:
    """What ``atomizer dataset info`` prints."""
    man = read_manifest(folder)
    chips = man.chips
    splits: dict[str, int] = {}
    per_class: dict[str, int] = {}
    for row in chips:
        splits[str(row.get("split"))] = splits.get(str(row.get("split")), 0) + 1
        for v in row["label"] if isinstance(row["label"], list) else [row["label"]]:
            per_class[str(v)] = per_class.get(str(v), 0) + 1
    errors_path = man.path / ERRORS
    n_errors = sum(1 for _ in errors_path.open()) if errors_path.is_file() else 0
    return {
        "path": str(man.path), "version": man.data["version"], "task": man.task,
        "chips": len(chips), "shards": len({r["shard"] for r in chips}),
        "atoms": sum(int(r["atoms"]) for r in chips), "items": man.data.get("n_items"),
        "sensors": sorted(man.sensors), "classes": per_class, "splits": splits,
        "chip_m": man.data["spec"].get("chip_m"), "errors": n_errors,
    }
