"""Pretraining checkpoints: safetensors weights + a JSON sidecar (never pickle), written atomically.

``<stem>.safetensors`` holds the state dict of the
:class:`~atomizer.pretrain.pretrainer.SatMIPModel`;
``<stem>.json`` holds the format tag and version, the method, the full pretraining config, the
image encoder's registry name and resolved config (enough to rebuild it), its feature width, the
training history and measurements. The JSON is written last, so its presence means the pair is
complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from atomizer.errors import CheckpointError
from atomizer.io import atomic_path, atomic_write_text
from atomizer.pretrain.config import ComponentConfig, PretrainConfig
from atomizer.pretrain.losses import parse_method_label
from atomizer.pretrain.pretrainer import PretrainResult, SatMIPModel, build_satmip_model

CHECKPOINT_FORMAT = "atomizer-satmip-checkpoint"
CHECKPOINT_VERSION = 1


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
    json_path, st_path = checkpoint_paths(path)
    model = result.model
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(st_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    info = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "method": result.objective.label,
        "weights": st_path.name,
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
    atomic_write_text(json_path, json.dumps(info, indent=2, sort_keys=False) + "\n")
    return json_path


@dataclass
class LoadedCheckpoint:
    model: SatMIPModel
    config: PretrainConfig
    info: dict[str, Any]


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint, checked for format and version."""
    json_path, _ = checkpoint_paths(path)
    try:
        info = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {json_path} not found; give the .json or .safetensors written by "
            "'atomizer pretrain'"
        ) from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{json_path}: not a checkpoint (invalid JSON: {exc.msg})") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{json_path}: not an atomizer pretraining checkpoint")
    if info.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{json_path}: checkpoint version {info.get('version')} is not supported (this "
            f"atomizer reads version {CHECKPOINT_VERSION}); retrain or use a matching atomizer"
        )
    return info


def load_checkpoint(path: str | os.PathLike, *, host: Any) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint and load its weights (strictly)."""
    json_path, st_path = checkpoint_paths(path)
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
    weights = json_path.with_name(info.get("weights", st_path.name))
    try:
        state = load_file(str(weights))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read the weights {weights}: {exc}") from None
    with torch.random.fork_rng(devices=[]):
        model = build_satmip_model(config, objective, host, image_dim=int(enc["feature_dim"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match the model it describes (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}); the file may belong to another checkpoint"
        )
    model.eval()
    return LoadedCheckpoint(model=model, config=config, info=info)
