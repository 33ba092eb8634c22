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
from atomizer.pretrain.pretrainer import PretrainResult, SatMIPModel, build_satmip_model
from atomizer.training import checkpoint as common

#: The ``kind`` of a pretraining checkpoint record (training checkpoints have none).
CHECKPOINT_KIND = "satmip-pretraining"


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(json, safetensors)`` paths of a checkpoint given either file or their common stem."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


def _encoder_config(model: SatMIPModel, fallback: ComponentConfig) -> dict[str, Any]:
    cfg = getattr(model.image_encoder, "config", None)
    if cfg is not None and hasattr(cfg, "model_dump"):
        return cfg.model_dump(mode="json")
    return dict(fallback.params)


def save_checkpoint(
    result: PretrainResult,
    config: PretrainConfig,
    path: str | os.PathLike,
    *,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<stem>.safetensors`` then ``<stem>.json``; returns the JSON path."""
    json_path, _ = checkpoint_paths(path)
    model = result.model
    meta = {
        "kind": CHECKPOINT_KIND,
        "method": result.objective.label,
        "image_encoder": {
            "name": config.image_encoder.name,
            "config": _encoder_config(model, config.image_encoder),
            "feature_dim": model.image_dim,
        },
        "config": config.model_dump(mode="json"),
        "training": result.summary(),
        "history": result.history,
        **(extra or {}),
    }
    return common.save_checkpoint(json_path.with_suffix(""), model_state=model.state_dict(), meta=meta)


@dataclass
class LoadedCheckpoint:
    model: SatMIPModel
    config: PretrainConfig
    info: dict[str, Any]


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON record of a pretraining checkpoint, checked for format, version and kind."""
    json_path, _ = checkpoint_paths(path)
    info = common.read_meta(json_path)
    info.pop("_path", None)
    if info.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(
            f"{json_path}: a training checkpoint, not a pretraining one; give a checkpoint "
            "written by 'atomizer pretrain' (or use 'atomizer evaluate' for this one)"
        )
    return info


def load_checkpoint(path: str | os.PathLike, *, host: Any) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint and load its weights (strictly)."""
    json_path, _ = checkpoint_paths(path)
    info = read_checkpoint_info(json_path)
    try:
        config = PretrainConfig.model_validate(info["config"])
        objective = parse_method_label(info["method"])
        enc = info["image_encoder"]
        config = config.model_copy(
            update={"image_encoder": ComponentConfig(name=enc["name"], params=enc["config"])}
        )
    except (KeyError, ValueError) as exc:
        raise CheckpointError(
            f"{json_path}: incomplete or invalid checkpoint metadata: {exc}"
        ) from None
    state = common.load_checkpoint(json_path).model_state
    with torch.random.fork_rng(devices=[]):
        model = build_satmip_model(config, objective, host, image_dim=int(enc["feature_dim"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{json_path} does not match the model it describes (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}); the file may belong to another checkpoint"
        )
    model.eval()
    return LoadedCheckpoint(model=model, config=config, info=info)
