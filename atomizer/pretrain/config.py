"""The pretraining config: one strict pydantic model per YAML file (``atomizer pretrain CONFIG``).

The file goes through the one config pipeline (:mod:`atomizer.config`): unknown keys and impossible
values are rejected with one :class:`~atomizer.errors.ConfigError` line per problem
(``FILE:LINE: key.path: what; how to fix``). ``--set key.path=value`` overrides edit the raw YAML
before validation, exactly as for ``atomizer run``, so a smoke run needs no second file.

Data paths are relative to ``data.root``; ``data.root`` is relative to the config file, and the
``ATOMIZER_SHARED_DATA`` environment variable (the shared real-data folder) replaces it when set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from atomizer import config as config_pipeline
from atomizer.config import StrictModel
from atomizer.errors import ConfigError
from atomizer.evaluation.knn import KNN_KS, KNN_TEMPERATURE
from atomizer.evaluation.probe import LINEAR_MAX_ITER
from atomizer.pretrain.augment import AugmentConfig
from atomizer.pretrain.losses import INIT_TEMPERATURE, SATMIPS_LAMBDA, SIMCLR_TEMPERATURE
from atomizer.training.config import LR_REFERENCE_BATCH, MAX_BASE_LR
from atomizer.training.overrides import apply_overrides  # noqa: F401 - re-exported

#: Method labels a config may list (see :func:`atomizer.pretrain.losses.parse_method_label`).
METHOD_LABELS = ("simclr", "satmip", "satmips", "satmips-coupled", "satmips-uncoupled")
SHARED_DATA_ENV = "ATOMIZER_SHARED_DATA"


class ChipSourceConfig(StrictModel):
    """One source of image chips (see :mod:`atomizer.pretrain.chips`)."""

    kind: Literal["s2_tile", "bigearthnet"]
    path: str = Field(description="Folder, relative to data.root.")
    sensor: str | None = Field(
        None,
        description="Sensor spec id (default: sentinel2a-l2a for s2_tile, "
        "sentinel2a/b-l2a from the tile source for bigearthnet).",
    )
    bands: list[str] | None = Field(
        None, description="Read only these bands (default: every band the source and spec share)."
    )
    chip_px: int = Field(8, ge=1, description="Chip side in output pixels (s2_tile).")
    gsd_factors: list[int] = Field(
        default_factory=lambda: [1], description="Block-mean aggregation factors (GSD x factor)."
    )
    max_chips_per_class: int = Field(50, ge=1, description="Per class and factor (s2_tile).")
    min_chips_per_class: int = Field(10, ge=1, description="Rarer classes are left out (s2_tile).")
    use: Literal["pretrain", "probe", "both"] = "both"

    @field_validator("gsd_factors")
    @classmethod
    def _factors(cls, v: list[int]) -> list[int]:
        if not v or any(f < 1 for f in v):
            raise ValueError("gsd_factors must be a non-empty list of integers >= 1")
        return sorted(set(v))


class DataConfig(StrictModel):
    root: str = Field("../../shared/data", description="Relative to the config file.")
    sources: list[ChipSourceConfig] = Field(min_length=1)
    seed: int = Field(0, ge=0)


class ComponentConfig(StrictModel):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class OptimConfig(StrictModel):
    """AdamW (0.9, 0.98), eps 1e-8; linear warmup then cosine decay; lr = base_lr * batch / 256."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    base_lr: float = Field(1e-3, gt=0, le=MAX_BASE_LR)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-8, gt=0)
    warmup_epochs: float = Field(1.0, ge=0)
    grad_clip_norm: float | None = Field(None, gt=0)

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / LR_REFERENCE_BATCH


class ProbeConfig(StrictModel):
    methods: list[Literal["knn", "linear", "bimodal"]] = Field(
        default_factory=lambda: ["knn", "linear", "bimodal"]
    )
    knn_k: list[int] = Field(default_factory=lambda: list(KNN_KS))
    knn_temperature: float = Field(KNN_TEMPERATURE, gt=0)
    linear_max_iter: int = Field(LINEAR_MAX_ITER, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    test_fraction: float = Field(0.3, gt=0, lt=1)
    batch_size: int = Field(128, ge=1, description="Chips per feature-extraction batch.")
    metadata_features: Literal["fixed", "learned"] = Field(
        "fixed",
        description="Metadata half of the bimodal probe: fixed hand-made encodings (the same for "
        "every method) or the method's learned metadata encoder (fixed when it has none).",
    )
    baselines: bool = Field(
        True, description="Also probe band-mean features and a randomly initialised encoder."
    )


class PretrainConfig(StrictModel):
    """A SatMIP / SatMIPS / SimCLR pretraining run (or a comparison of several methods)."""

    name: str = Field(min_length=1)
    seed: int = Field(0, ge=0)
    methods: list[str] = Field(default_factory=lambda: ["satmips-coupled"], min_length=1)
    lambda_simclr: float = Field(SATMIPS_LAMBDA, ge=0)
    simclr_temperature: float = Field(SIMCLR_TEMPERATURE, gt=0)
    init_temperature: float = Field(INIT_TEMPERATURE, gt=0)
    embed_dim: int = Field(64, ge=2, description="Output of the projection heads.")
    projection_hidden: int = Field(128, ge=2)
    image_encoder: ComponentConfig
    metadata_encoder: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="tabular")
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    threads: int | None = Field(None, ge=1, description="torch.set_num_threads during the run.")
    output_dir: str = Field("runs/satmip", description="Relative to the working directory.")

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m.lower() not in METHOD_LABELS]
        if bad:
            raise ValueError(f"unknown methods {bad}; use {', '.join(METHOD_LABELS)}")
        out = [m.lower() if m.lower() != "satmips" else "satmips-coupled" for m in v]
        if len(set(out)) != len(out):
            raise ValueError(f"methods are listed twice: {v}")
        return out

    @model_validator(mode="after")
    def _has_training_data(self) -> PretrainConfig:
        if not any(s.use in ("pretrain", "both") for s in self.data.sources):
            raise ValueError("no data source has use: pretrain or both; nothing to train on")
        return self


def parse_config(raw: Mapping[str, Any], *, where: str = "<config>") -> PretrainConfig:
    """Validate a raw mapping; every problem becomes one line of a :class:`ConfigError`."""
    return config_pipeline.validate_config(
        PretrainConfig, raw, origin=where, error=ConfigError, what="pretraining config"
    )


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Read, override and validate a pretraining YAML file (``FILE:LINE`` errors)."""
    return config_pipeline.load_config(
        PretrainConfig, Path(path), overrides, error=ConfigError, what="pretraining config"
    )


def resolve_data_root(config: PretrainConfig, config_dir: str | os.PathLike | None) -> Path:
    """``$ATOMIZER_SHARED_DATA`` when set, else ``data.root`` relative to the config's folder."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env)
    root = Path(config.data.root)
    if not root.is_absolute() and config_dir is not None:
        root = Path(config_dir) / root
    return root
