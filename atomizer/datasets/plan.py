"""Planning a build: the spec's items and labels become shard tasks, each with a key that names its
inputs (so a second build keeps every shard whose key still matches)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomizer.datasets.chips import ChipRequest, describe_failure
from atomizer.datasets.shards import SHARD_SUFFIX, SHARD_VERSION
from atomizer.datasets.sources import (
    ItemRef,
    Label,
    assign_splits,
    class_names,
    load_items,
    load_labels,
    pair_labels,
)
from atomizer.datasets.spec import DatasetSpec
from atomizer.errors import AtomizerError
from atomizer.plugins.host import host_or_builtin, sensor_spec
from atomizer.sensors.spec import SensorSpec


@dataclass
class ShardTask:
    """One shard to write: up to ``shard_chips`` labels of one item."""

    name: str
    key: str
    request: ChipRequest


@dataclass
class BuildPlan:
    spec: DatasetSpec
    tasks: list[ShardTask]
    labels: list[Label]
    classes: list[str]
    multilabel: bool
    sensors: dict[str, SensorSpec]
    errors: list[dict[str, Any]] = field(default_factory=list)  # found while planning
    n_items: int = 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60] or "item"


def _key(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _item_sensor(item: ItemRef, fixed: SensorSpec | None, host: Any) -> SensorSpec:
    if fixed is not None:
        return fixed
    import pystac

    from atomizer.readers.detect import detect_sensor
    from atomizer.readers.stac import asset_infos

    pi = pystac.Item.from_dict(item.data, preserve_dict=True)
    sensor, _ = detect_sensor(pi.properties, asset_infos(pi), host.sensors, source="items",
                              item_id=item.id)
    return sensor


def _label_json(lb: Label) -> dict[str, Any]:
    value = list(lb.value) if isinstance(lb.value, tuple) else lb.value
    return {"index": lb.index, "lon": lb.lon, "lat": lb.lat, "value": value,
            "datetime": lb.datetime.isoformat() if lb.datetime else None}


def plan_build(spec: DatasetSpec, *, host: Any = None) -> BuildPlan:
    """Read items and labels, pair them, split them and cut the work into shard tasks."""
    host = host_or_builtin(host)  # None: atomizer's own sensors only, whatever the environment
    items = load_items(spec.items)
    labels = load_labels(spec)
    classes, multilabel = class_names(labels, spec)
    assign_splits(labels, spec)
    pairing = pair_labels(items, labels, spec)
    fixed = None
    if spec.sensor is not None:
        fixed = sensor_spec(spec.sensor, host)
    plan = BuildPlan(spec, [], labels, classes, multilabel, {}, n_items=len(items))
    for lb, why in pairing.unmatched:
        plan.errors.append({"label_index": lb.index, "error": f"label {lb.index} skipped: {why}"})
    for k in sorted(pairing.by_item):
        item = items[k]
        try:
            sensor = _item_sensor(item, fixed, host)
        except AtomizerError as exc:
            plan.errors.append({"item_id": item.id, "error": describe_failure(exc)})
            continue
        plan.sensors[sensor.id] = sensor
        group = sorted(pairing.by_item[k], key=lambda lb: lb.index)
        for part, start in enumerate(range(0, len(group), spec.shard_chips)):
            chunk = [_label_json(lb) for lb in group[start : start + spec.shard_chips]]
            req = ChipRequest(
                item=item.data, sensor=sensor, labels=chunk, chip_m=spec.chip_m,
                bands=tuple(spec.bands) if spec.bands else None,
                skip_other_assets=fixed is not None, mask=tuple(spec.mask),
                min_atoms=spec.min_atoms,
            )
            key = _key({"version": SHARD_VERSION, "item": item.data, "labels": chunk,
                        "chip": spec.chip_fields, "sensor": sensor.model_dump(mode="json")})
            name = f"{k:06d}-{_slug(item.id)}-{part:04d}{SHARD_SUFFIX}"
            plan.tasks.append(ShardTask(name, key, req))
    return plan


def shard_dir(out: str | Path) -> Path:
    return Path(out) / "shards"
