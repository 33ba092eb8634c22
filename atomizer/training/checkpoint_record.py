"""The JSON record of a checkpoint, as a validated model (the boundary between a file and the code).

A checkpoint is ``<stem>.safetensors`` (tensors) plus ``<stem>.json``, the record described here:
the format envelope (name, version, ids, the weights file beside it), where the run stands (epoch,
step, schedule, random states, running sums, history) and what was trained (the experiment and the
model of a supervised run, or the method, config and image encoder of a pretraining run). Every
record read from disk is parsed into :class:`CheckpointRecord` first, so the rest of the code never
sees a missing key, a wrong type or a weights file outside the checkpoint's folder.

Format versions: 2 (this one) and 1 (atomizer 0.1.0: ``train_loss_accum: [loss, samples]`` instead
of ``running``), which is read and converted in memory; the next save writes version 2.
"""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator

from atomizer import __version__

CHECKPOINT_FORMAT = "atomizer-checkpoint"
#: The version this atomizer writes; bump when the layout changes incompatibly.
FORMAT_VERSION = 2
#: Versions this atomizer reads (older ones are converted in memory by :func:`upgrade`).
READABLE_VERSIONS = (1, 2)
WEIGHTS_SUFFIX = ".safetensors"
#: The ``kind`` of each record; version-1 training records have none.
TRAINING_KIND = "training"
PRETRAINING_KIND = "satmip-pretraining"

JsonScalar = str | int | float | bool | None


class Record(BaseModel):
    """Base of the record's parts: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class NumpyRngState(Record):
    kind: Literal["MT19937"]
    pos: NonNegativeInt
    has_gauss: Literal[0, 1]
    cached: float


class PythonRngState(Record):
    version: int
    state: list[int] = Field(max_length=1000)
    gauss_next: float | None


class RngState(Record):
    """The non-tensor part of one rank's generators (the tensors live in the weights file)."""

    numpy: NumpyRngState
    python: PythonRngState


class ScheduleState(Record):
    """:class:`~atomizer.training.schedule.WarmupCosineSchedule`'s state."""

    step_count: NonNegativeInt
    peak_lr: float = Field(ge=0, allow_inf_nan=False)
    warmup_steps: NonNegativeInt
    total_steps: NonNegativeInt
    min_lr_ratio: float = Field(ge=0, le=1, allow_inf_nan=False)


class TaskRecord(Record):
    type: Literal["multiclass", "multilabel"]
    num_classes: PositiveInt
    #: The training data's class names in output order, where the data names them.
    class_names: list[str] | None = None


class ImageEncoderRecord(Record):
    """A pretrained image encoder: registry name, resolved config and feature width."""

    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any]
    feature_dim: PositiveInt


class CheckpointContent(Record):
    """Everything a writer says about a checkpoint (the envelope is added when saving)."""

    kind: Literal["training", "satmip-pretraining"] = TRAINING_KIND
    # --- where the run stands (written by the training core) ---
    seed: NonNegativeInt | None = None
    epoch: NonNegativeInt = 0
    step_in_epoch: NonNegativeInt = 0
    global_step: NonNegativeInt = 0
    finished: bool = False
    world_size: PositiveInt = 1
    scheduler: ScheduleState | None = None
    rng: list[RngState] = Field(default_factory=list)
    running: dict[str, float] = Field(default_factory=dict)
    history: list[dict[str, JsonScalar]] = Field(default_factory=list)
    optimizer: list[dict[str, JsonScalar | list[JsonScalar]]] | None = None
    optimizer_scalars: dict[str, dict[str, JsonScalar]] | None = None
    # --- what was trained: a supervised run ---
    task: TaskRecord | None = None
    experiment: dict[str, Any] | None = None
    experiment_fingerprint: str | None = Field(None, max_length=200)
    model_label: str | None = Field(None, max_length=1000)
    model_name: str | None = Field(None, max_length=200)
    model_params: dict[str, Any] | None = Field(None, alias="model_config")
    # --- what was trained: a pretraining run ---
    method: str | None = Field(None, max_length=200)
    image_encoder: ImageEncoderRecord | None = None
    config: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    data_root: str | None = None
    chips: dict[str, Any] | None = None

    model_config = ConfigDict(
        extra="forbid", frozen=True, protected_namespaces=(), populate_by_name=True
    )

    def to_json(self) -> dict[str, Any]:
        """The record as JSON values; top-level fields that are ``None`` are left out."""
        data = self.model_dump(mode="json", by_alias=True)
        return {k: v for k, v in data.items() if v is not None}


class CheckpointRecord(CheckpointContent):
    """A checkpoint's whole JSON record: the content plus the format envelope."""

    format: Literal["atomizer-checkpoint"]
    format_version: Literal[2]
    atomizer_version: str = Field(max_length=100)
    checkpoint_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    weights_file: str

    @field_validator("weights_file")
    @classmethod
    def _beside_the_record(cls, v: str) -> str:
        """The weights file is a plain file name in the record's folder, never a path."""
        plain = PurePosixPath(v).name == v and PureWindowsPath(v).name == v
        if not plain or v in ("", ".", "..") or not v.endswith(WEIGHTS_SUFFIX):
            raise ValueError(
                f"must be the name of a {WEIGHTS_SUFFIX} file beside the record (no folders, "
                f"no '..'), got {v[:80]!r}"
            )
        return v

    @classmethod
    def envelope(cls, content: CheckpointContent, checkpoint_id: str, weights_file: str):
        return cls.model_validate(
            {
                **content.to_json(),
                "format": CHECKPOINT_FORMAT,
                "format_version": FORMAT_VERSION,
                "atomizer_version": __version__,
                "checkpoint_id": checkpoint_id,
                "weights_file": weights_file,
            }
        )


def version_problem(data: Any) -> str | None:
    """Why ``data`` is not a record of a readable format version (``None``: it is one)."""
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        return f"not an atomizer checkpoint (no 'format: {CHECKPOINT_FORMAT}' field)"
    version = data.get("format_version")
    if version in READABLE_VERSIONS and not isinstance(version, bool):
        return None
    written_by = str(data.get("atomizer_version", "?"))[:40]
    return (
        f"checkpoint format version {str(version)[:40]} (written by atomizer {written_by}) is "
        f"incompatible with this atomizer {__version__}, which reads format versions "
        f"{', '.join(map(str, READABLE_VERSIONS))}; load it with the atomizer version that wrote "
        "it, or retrain"
    )


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A record of any readable version as a version-2 record (version 1: ``train_loss_accum``)."""
    if data.get("format_version") != 1:
        return data
    out = {**data, "format_version": 2}
    accum = out.pop("train_loss_accum", None)
    if isinstance(accum, list) and len(accum) == 2:
        out["running"] = {"loss_sum": accum[0], "samples": accum[1]}
    elif accum is not None:
        out["running"] = accum  # malformed: validation names the field
    return out

