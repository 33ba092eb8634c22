"""The experiment schema: one strict pydantic model per YAML experiment file.

An experiment names a dataset, the modalities it is trained, validated and tested on (test
modalities must be disjoint from the training ones), the models to compare (by registry name, with
config overrides), the optimiser (AdamW, linear warmup then cosine), epochs, batch size, seeds,
metrics and where to write results. Unknown keys and impossible values are rejected with one
:class:`~atomizer.errors.ConfigError` line per problem: ``FILE:LINE: key.path: what; how to fix``.

``--set key.path=value`` overrides (:func:`atomizer.training.overrides.apply_overrides`, re-exported
here) edit the raw YAML before validation, so a smoke run of a paper-size experiment needs no
second file.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from atomizer import config as config_pipeline
from atomizer.config import LocatedError, StrictModel
from atomizer.data.modality import Modality
from atomizer.documents import YamlDocument, read_yaml
from atomizer.errors import ConfigError
from atomizer.evaluation.metrics import METRIC_NAMES
from atomizer.sensors.resolve import is_spec_path
from atomizer.training.overrides import (  # parse_override is re-exported for callers
    apply_overrides,
    parse_override,  # noqa: F401
)
from atomizer.training.sweep_config import SweepConfig

#: Largest base learning rate accepted (a huge finite one overflowed AdamW's step).
MAX_BASE_LR = 100.0
#: The reference batch size of the linear learning-rate scaling rule lr = base_lr * batch / 256.
LR_REFERENCE_BATCH = 256
#: Numeric precision of training and evaluation (see ``ExperimentConfig.precision``).
Precision = Literal["auto", "fp32", "bf16"]


class DataConfig(StrictModel):
    """Which dataset, where it lives, and loader options passed through to it."""

    dataset: str = Field(
        min_length=1,
        description="A registered dataset: indian-pines, bigearthnet, eurosat, earthlib or a "
        "plugin's (atomizer plugins lists them).",
    )
    path: str | None = Field(
        default=None, description="Dataset root (relative paths are relative to the config file)."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Dataset-specific options.")
    train_split: str = "train"
    val_split: str = "validation"
    test_split: str = "test"
    modality_assignment: Literal["all", "partition"] = Field(
        default="all",
        description="all: every training sample is seen in every training modality each epoch; "
        "partition: sample i is seen only in training modality i mod M.",
    )
    num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes.")


def modality_key(m: Modality) -> tuple:
    """What makes two modalities the same: sensor, band set, GSD and size."""
    bands = tuple(sorted(b.lower() for b in m.bands)) if m.bands else None
    gsd = None if m.gsd_m is None else round(m.gsd_m, 6)
    return (m.sensor.lower(), bands, gsd, m.size_px)


class ModelEntry(StrictModel):
    """One model to train: a registry name plus overrides of its config."""

    name: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                              description="Row label in tables and the run's folder name "
                                          "(default: name).")

    @property
    def row(self) -> str:
        return self.label or self.name


class OptimizerConfig(StrictModel):
    """AdamW with lr = base_lr * batch_size / 256, linear warmup, then cosine decay."""

    base_lr: float = Field(default=1e-3, gt=0, le=MAX_BASE_LR,
                           description="Learning rate at batch size 256.")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    warmup_epochs: float = Field(default=0.0, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="Final lr / peak lr.")
    grad_clip_norm: float | None = Field(default=None, gt=0)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"betas must both lie in [0, 1), got {list(v)}")
        return v


class TaskConfig(StrictModel):
    """The prediction task: multi-label (BigEarthNet) or multi-class (Indian Pines, EuroSAT)."""

    type: Literal["multilabel", "multiclass"]
    num_classes: int = Field(ge=2)


class ExperimentConfig(StrictModel):
    """One experiment: data, modalities, models and training settings."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_amp(cls, data: Any) -> Any:
        """``amp: true | false`` (configs and checkpoints written before ``precision``) is
        ``precision: auto | fp32``."""
        if not isinstance(data, Mapping) or "amp" not in data:
            return data
        if "precision" in data:
            raise ValueError("give precision (auto, fp32 or bf16) and drop the older amp key")
        data = dict(data)
        amp = data.pop("amp")
        if not isinstance(amp, bool):
            raise ValueError(f"amp must be true or false, got {amp!r}; better, use precision")
        data["precision"] = "auto" if amp else "fp32"
        return data

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str | None = None
    data: DataConfig
    task: TaskConfig
    train_modalities: list[Modality] = Field(min_length=1)
    val_modalities: list[Modality] = Field(default_factory=list)
    test_modalities: list[Modality] = Field(default_factory=list)
    models: list[ModelEntry] = Field(min_length=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="Global batch size (all processes together).")
    eval_batch_size: int | None = Field(default=None, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    metrics: list[str] = Field(
        default_factory=lambda: ["overall_accuracy", "f1_macro", "map_macro"]
    )
    primary_metric: str | None = Field(
        default=None, description="Metric of the comparison table (default: the first metric)."
    )
    output_dir: str = Field(default="runs", description="Relative to the current directory.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads while this experiment runs (default: torch's choice). One "
        "thread avoids OpenMP spin-wait slow-downs of small models on a busy machine.",
    )
    workers: int = Field(
        default=0,
        ge=0,
        description="Runs (model x seed) trained side by side on a local Dask cluster of this many "
        "worker processes (0: one after the other in this process); `atomizer run --workers N` or "
        "`--scheduler ADDRESS` (a running dask.distributed cluster) override it. The results do not "
        "depend on it.",
    )
    precision: Precision = Field(
        default="auto",
        description="fp32: float32 everywhere (the reference path; bit-exact resume); bf16: bf16 "
        "autocast on CPU and CUDA for training and evaluation; auto: bf16 on CUDA, fp32 on CPU.",
    )
    deterministic: bool = True
    checkpoint_every_steps: int | None = Field(default=None, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    sweeps: dict[str, SweepConfig] = Field(
        default_factory=dict,
        description="Named test sweeps over GSD or size (atomizer run CONFIG --sweep NAME).",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds {v} repeat a value; list each seed once")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"list at least one metric of: {', '.join(METRIC_NAMES)}")
        bad = [m for m in v if m not in METRIC_NAMES]
        if bad:
            raise ValueError(
                f"unknown metric(s) {', '.join(map(repr, bad))}; use: {', '.join(METRIC_NAMES)}"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        problems: list[tuple[tuple, str]] = []
        if self.optimizer.warmup_epochs > self.epochs:
            problems.append(
                (
                    ("optimizer", "warmup_epochs"),
                    (
                        f"{self.optimizer.warmup_epochs:g} warmup epochs exceed the {self.epochs} "
                        "training "
                        "epochs; warm up for fewer epochs than you train"
                    ),
                )
            )
        if self.primary_metric is not None and self.primary_metric not in self.metrics:
            problems.append(
                (
                    ("primary_metric",),
                    (f"{self.primary_metric!r} is not in metrics {self.metrics}; add it there"),
                )
            )
        train = {modality_key(m): i for i, m in enumerate(self.train_modalities)}
        for j, m in enumerate(self.test_modalities):
            if modality_key(m) in train:
                problems.append(
                    (
                        ("test_modalities", j),
                        (
                            f"{m.label} is also train_modalities[{train[modality_key(m)]}]; "
                            "test modalities must "
                            "be unseen in training: change its bands, GSD or size"
                        ),
                    )
                )
        for field_name in ("train_modalities", "val_modalities", "test_modalities"):
            labels = [m.label for m in getattr(self, field_name)]
            for j, label in enumerate(labels):
                if label in labels[:j]:
                    problems.append(
                        (
                            (field_name, j),
                            (
                                f"label {label!r} is used twice (also [{labels.index(label)}]); "
                                "give one "
                                "of them another name"
                            ),
                        )
                    )
        rows = [m.row for m in self.models]
        for j, row in enumerate(rows):
            if row in rows[:j]:
                problems.append(
                    (
                        ("models", j),
                        (
                            f"{row!r} is listed twice (also models[{rows.index(row)}]); "
                            "give one of "
                            "them a label"
                        ),
                    )
                )
        if problems:
            raise LocatedError(problems)
        return self

    # --- derived values ---------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The peak learning rate: base_lr * batch_size / 256."""
        return self.optimizer.base_lr * self.batch_size / LR_REFERENCE_BATCH

    @property
    def main_metric(self) -> str:
        return self.primary_metric or self.metrics[0]

    def model(self, name: str) -> ModelEntry:
        """The model entry whose label or name is ``name``."""
        for m in self.models:
            if m.row == name:
                return m
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.row for m in self.models)
        raise ConfigError(f"model {name!r} is not in experiment {self.name!r} (it has: {known})")

    def fingerprint(self, entry: ModelEntry | None = None) -> str:
        """A short hash of what decides the trained weights of ``entry`` (all models if None).

        Test modalities, seeds, metrics, output and checkpoint settings are left out: changing them
        (or adding a model) keeps finished runs reusable.
        """
        ignored = {
            "output_dir",
            "description",
            "test_modalities",
            "seeds",
            "metrics",
            "primary_metric",
            "eval_batch_size",
            "keep_checkpoints",
            "checkpoint_every_steps",
            "sweeps",
            "workers",
        }
        data = self.model_dump(mode="json", exclude=ignored)
        data["data"].pop("num_workers", None)
        if data["precision"] != "bf16":  # the older amp key: runs from before keep their hash
            data["amp"] = data.pop("precision") == "auto"
        if entry is not None:
            data["models"] = [entry.model_dump(mode="json", exclude={"label"})]
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- loading --------------------------------------------------------------------------------------
def validate_config(
    data: Any, *, origin: str | None = None, doc: YamlDocument | None = None
) -> ExperimentConfig:
    """Validate a raw mapping into an :class:`ExperimentConfig` (else a :class:`ConfigError`)."""
    return config_pipeline.validate_config(
        ExperimentConfig, data, doc, origin=origin, error=ConfigError, what="an experiment config"
    )


def _absolute(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str((base / Path(value).expanduser()).resolve())
    return value


def resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """``raw`` with a relative ``data.path`` and spec-file sensors made absolute (from ``base``)."""
    out = copy.deepcopy(raw)
    data = out.get("data")
    if isinstance(data, dict) and data.get("path") is not None:
        data["path"] = _absolute(data["path"], base)
    for key in ("train_modalities", "val_modalities", "test_modalities"):
        modalities = out.get(key)
        for m in modalities if isinstance(modalities, list) else []:  # others: validation says
            if (
                isinstance(m, dict)
                and isinstance(m.get("sensor"), str)
                and is_spec_path(m["sensor"])
            ):
                m["sensor"] = _absolute(m["sensor"], base)
    return out


def load_config(
    path: str | Path,
    overrides: Iterable[str] = (),
    *,
    known_models: Iterable[str] | None = None,
    known_datasets: Iterable[str] | None = None,
) -> ExperimentConfig:
    """Read, override, validate and check an experiment YAML file.

    ``known_models`` / ``known_datasets`` (the registries' names) make unknown model names and an
    unknown ``data.dataset`` an error located in the file.
    Relative paths written in the file are relative to the file; those given in overrides are
    relative to the current directory.
    """
    path = Path(path)
    doc = read_yaml(path, what="config file", error=ConfigError)
    raw = doc.data
    if isinstance(raw, dict):
        raw = resolve_paths(raw, path.resolve().parent)
        # overrides are relative to the working folder; line numbers still match the file
        raw = resolve_paths(apply_overrides(raw, overrides), Path.cwd())
    config = validate_config(raw, doc=doc)
    if known_models is not None:
        check_model_names(config, known_models, doc=doc)
    if known_datasets is not None:
        check_dataset_name(config, known_datasets, doc=doc)
    return config


def check_model_names(
    config: ExperimentConfig,
    known: Iterable[str],
    *,
    doc: YamlDocument | None = None,
) -> None:
    """Raise :class:`ConfigError` naming every model entry the registry does not know."""
    names = sorted(n.lower() for n in known)
    problems = []
    for i, m in enumerate(config.models):
        if m.name.lower() not in names:
            where = doc.where(("models", i, "name")) if doc is not None else "<config>"
            hint = _did_you_mean(m.name, names)
            problems.append(f"{where}: models[{i}].name: unknown model {m.name!r}; {hint}")
    if problems:
        raise ConfigError("\n".join(problems))


def check_dataset_name(
    config: ExperimentConfig, known: Iterable[str], *, doc: YamlDocument | None = None
) -> None:
    """Raise :class:`ConfigError` when no registered dataset has the name ``data.dataset``."""
    names = sorted(n.lower() for n in known)
    if config.data.dataset.lower() not in names:
        where = doc.where(("data", "dataset")) if doc is not None else "<config>"
        raise ConfigError(
            f"{where}: data.dataset: unknown dataset {config.data.dataset!r}; "
            f"{_did_you_mean(config.data.dataset, names)}"
        )


def _did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(names) or 'none'}"
