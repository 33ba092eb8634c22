"""Pretraining checkpoints, in the one checkpoint format of :mod:`atomizer.training.checkpoint`.

``<stem>.safetensors`` holds the state dict of the
:class:`~atomizer.pretrain.pretrainer.SatMIPModel`; ``<stem>.json`` (the commit record, written
last) holds, besides the common format fields, ``kind: satmip-pretraining``, the method, the full
pretraining config, the image encoder's registry name and resolved config (enough to rebuild it),
its feature width, the training history and measurements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atomizer.errors import CheckpointError
from atomizer.pretrain.config import ComponentConfig, PretrainConfig
from atomizer.pretrain.losses import parse_method_label
from atomizer.pretrain.pretrainer import (
    PretrainResult,
    SatMIPModel,
    build_satmip_model,
    encoder_record,
)
from atomizer.training import checkpoint as common
from atomizer.training.checkpoint_record import PRETRAINING_KIND, CheckpointRecord

#: The ``kind`` of a pretraining checkpoint record.
CHECKPOINT_KIND = PRETRAINING_KIND


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(json, safetensors)`` paths of a checkpoint given either file or their common stem."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


def save_checkpoint(
    result: PretrainResult,
    config: PretrainConfig,
    path: str | os.PathLike,
    *,
    data_root: str | None = None,
    chips: dict[str, Any] | None = None,
) -> Path:
    """Write ``<stem>.safetensors`` then ``<stem>.json``; returns the JSON path."""
    json_path, _ = checkpoint_paths(path)
    model = result.model
    content = common.CheckpointContent(
        kind=PRETRAINING_KIND,
        method=result.objective.label,
        image_encoder=encoder_record(model, config),
        config=config.model_dump(mode="json"),
        training=result.summary(),
        history=result.history,
        global_step=result.steps,
        epoch=len(result.history),
        finished=True,
        seed=config.seed,
        data_root=data_root,
        chips=chips,
    )
    stem = json_path.with_suffix("")
    return common.save_checkpoint(stem, content, model_state=model.state_dict())


@dataclass
class LoadedCheckpoint:
    model: SatMIPModel
    config: PretrainConfig
    record: CheckpointRecord


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointRecord:
    """The validated record of a pretraining checkpoint (format, version and kind checked)."""
    json_path, _ = checkpoint_paths(path)
    record = common.read_record(json_path).record
    if record.kind != PRETRAINING_KIND:
        raise CheckpointError(
            f"{json_path}: a training checkpoint, not a pretraining one; give a checkpoint "
            "written by 'atomizer pretrain' (or use 'atomizer evaluate' for this one)"
        )
    if record.method is None or record.config is None or record.image_encoder is None:
        raise CheckpointError(
            f"{json_path}: a pretraining record needs method, config and image_encoder; the "
            "file is incomplete"
        )
    return record


def load_checkpoint(path: str | os.PathLike, *, host: Any) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint and load its weights (strictly)."""
    json_path, _ = checkpoint_paths(path)
    record = read_checkpoint_info(json_path)
    enc = record.image_encoder
    try:
        config = PretrainConfig.model_validate(record.config)
        objective = parse_method_label(record.method)
    except ValueError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{json_path}: invalid pretraining config or method in the record: "
            f"{' '.join(first[:3])}"
        ) from None
    config = config.model_copy(
        update={"image_encoder": ComponentConfig(name=enc.name, params=enc.config)}
    )
    state = common.load_checkpoint(json_path).model_state
    with torch.random.fork_rng(devices=[]):
        model = build_satmip_model(config, objective, host, image_dim=enc.feature_dim)
    common.load_weights(model, state, origin=json_path, model_name=enc.name)
    model.eval()
    return LoadedCheckpoint(model=model, config=config, record=record)
