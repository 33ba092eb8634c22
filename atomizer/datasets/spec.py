"""The dataset spec: which items, which labels, how chips are cut, matched, masked and split.

A YAML file the user writes, validated through the one config pipeline (:mod:`atomizer.config`), so
problems read ``spec.yaml:7: labels.column: ...; fix``. Example::

    items: items.json            # ItemCollection, Catalog/Collection, folder of items, .parquet
    sensor: sentinel2a-l2a       # optional: detected per item as tokenize does
    labels:
      path: points.geojson       # GeoJSON / GeoParquet / CSV (lon, lat columns)
      column: landcover          # a class name, or a list of names (multi-label)
    chip_m: 600
    match: {max_days: 30}
    bands: [B02, B03, B04, B8A]
    mask: [cloud, shadow]
    split: {blocks_m: 5000, fractions: {train: 0.7, validation: 0.15, test: 0.15}}
    shard_chips: 256

Relative paths are relative to the spec file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from atomizer.config import LocatedError, StrictModel, load_config
from atomizer.errors import DatasetError
from atomizer.sensors.spec import MASK_NAMES

SPLIT_NAMES = ("train", "validation", "test")


class LabelsSpec(StrictModel):
    """Where the labels are and which columns mean what."""

    path: str = Field(min_length=1, description="GeoJSON, GeoParquet (.parquet) or CSV file.")
    column: str = Field(min_length=1, description="Label column: a class name, or a list of them.")
    separator: str | None = Field(
        default=None, description="Split string labels on this to get multi-label lists."
    )
    lon_column: str = Field(default="lon", description="CSV only: longitude column (degrees).")
    lat_column: str = Field(default="lat", description="CSV only: latitude column (degrees).")
    datetime_column: str | None = Field(default=None, description="Acquisition date of the label.")
    item_id_column: str | None = Field(default=None, description="Pairs a label with one item id.")
    classes: list[str] | None = Field(
        default=None, description="Class names in index order (default: sorted distinct labels)."
    )

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("classes is empty; leave it out to use the labels' own classes")
        twice = sorted({c for c in v if v.count(c) > 1})
        if twice:
            raise ValueError(f"classes lists {twice} more than once; name each class once")
        if any(not c for c in v):
            raise ValueError("classes holds an empty name")
        return v


class MatchSpec(StrictModel):
    """Which (item, label) pairs become chips: the label inside the item's footprint, and at most
    ``max_days`` between the label's date and the acquisition when both are known."""

    max_days: float | None = Field(default=None, ge=0, description="Days between label and item.")


class SplitSpec(StrictModel):
    """How chips are split, so that no chip lies in two splits.

    ``column``: a label column holding train / validation / test. Otherwise each label goes to a
    split drawn (seeded) from ``fractions`` per spatial block of ``blocks_m`` metres, or per value
    of the ``group`` column: labels of one block or group share a split.
    """

    column: str | None = None
    blocks_m: float | None = Field(default=None, gt=0)
    group: str | None = None
    fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.7, "validation": 0.15, "test": 0.15}
    )
    seed: int = 0

    @model_validator(mode="after")
    def _one_rule(self) -> SplitSpec:
        rules = [k for k in ("column", "blocks_m", "group") if getattr(self, k) is not None]
        if len(rules) > 1:
            raise LocatedError(f"give one of column, blocks_m, group, not {rules}", loc=(rules[1],))
        problems: list[tuple[tuple[str, ...], str]] = []
        for name, frac in self.fractions.items():
            if name not in SPLIT_NAMES:
                problems.append((("fractions", name), f"unknown split; use {', '.join(SPLIT_NAMES)}"))
            elif not (math.isfinite(frac) and 0 <= frac <= 1):
                problems.append((("fractions", name), "a fraction is a number from 0 to 1"))
        if not problems and not math.isclose(sum(self.fractions.values()), 1.0, abs_tol=1e-6):
            problems.append((("fractions",), f"fractions add up to {sum(self.fractions.values()):g}; make them add up to 1"))
        if problems:
            raise LocatedError(problems)
        return self


class DatasetSpec(StrictModel):
    """A labelled dataset to build from STAC items (see the module docstring)."""

    items: str = Field(min_length=1, description="ItemCollection / Catalog / folder / .parquet.")
    sensor: str | None = Field(default=None, description="Sensor id or spec YAML for every item.")
    labels: LabelsSpec
    chip_m: float = Field(gt=0, description="Side of a chip in metres.")
    match: MatchSpec = Field(default_factory=MatchSpec)
    bands: list[str] | None = Field(default=None, description="Spec bands to read (default all).")
    mask: list[str] = Field(default_factory=list, description="Quality classes whose atoms drop.")
    split: SplitSpec = Field(default_factory=SplitSpec)
    shard_chips: int = Field(default=256, ge=1, le=100_000, description="Chips per shard at most.")
    min_atoms: int = Field(default=1, ge=1, description="Chips with fewer atoms are skipped.")

    @field_validator("mask")
    @classmethod
    def _mask_names(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in MASK_NAMES]
        if unknown:
            raise ValueError(f"unknown mask class(es) {unknown}; use {', '.join(MASK_NAMES)}")
        return v

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("bands is empty; leave it out to read every band")
        return v

    @property
    def chip_fields(self) -> dict[str, Any]:
        """What decides a chip's contents (a change invalidates existing shards)."""
        return {"chip_m": self.chip_m, "bands": self.bands, "mask": sorted(self.mask),
                "sensor": self.sensor, "min_atoms": self.min_atoms}


def _absolute_paths(base: Path) -> Any:
    def prepare(data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        for key in ("items", "sensor"):
            value = out.get(key)
            if isinstance(value, str) and _is_relative_file(value, key):
                out[key] = str((base / value).resolve())
        labels = out.get("labels")
        if isinstance(labels, dict) and isinstance(labels.get("path"), str):
            if _is_relative_file(labels["path"], "labels"):
                labels = {**labels, "path": str((base / labels["path"]).resolve())}
                out["labels"] = labels
        return out

    return prepare


def _is_relative_file(value: str, key: str) -> bool:
    if "://" in value or Path(value).is_absolute():
        return False
    if key == "sensor":  # an id, unless it names a YAML file
        return value.endswith((".yaml", ".yml"))
    return True


def load_dataset_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DatasetSpec:
    """Read and validate a dataset spec (relative paths resolved against its folder)."""
    path = Path(path)
    return load_config(DatasetSpec, path, overrides, error=DatasetError, what="dataset spec",
                       prepare=_absolute_paths(path.resolve().parent))


__all__ = ["DatasetSpec", "LabelsSpec", "MASK_NAMES", "MatchSpec", "SplitSpec", "load_dataset_spec"]
