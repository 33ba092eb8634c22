"""Checkpoints: tensors in safetensors, everything else in JSON. Never pickle.

A checkpoint is a pair of files with one stem, e.g. ``checkpoints/ckpt-e0003-s00000120``:

- ``.safetensors``: model weights (``model.*``), optimiser state tensors (``optim.<param>.<key>``)
  and RNG state tensors (``rng.*``);
- ``.json``: format name and version, atomizer version, the experiment config, the model name and
  resolved model config, seed, epoch, step, scheduler state, optimiser hyper-parameters, the
  non-tensor RNG states and the metrics so far.

Both files are written atomically, the tensors first; the JSON is the commit record (a checkpoint
without its JSON does not exist), and a random ``checkpoint_id`` stored in both catches a pair
that does not belong together.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from atomizer import __version__
from atomizer.errors import CheckpointError
from atomizer.io import atomic_path, atomic_write_text

CHECKPOINT_FORMAT = "atomizer-checkpoint"
#: Bump when the layout changes incompatibly; checkpoints of another version are refused.
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_WEIGHTS_SUFFIX = ".safetensors"
_META_SUFFIX = ".json"


@dataclass
class Checkpoint:
    """A loaded checkpoint: its JSON record and its tensors, grouped by owner."""

    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    rng_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None

    @property
    def epoch(self) -> int:
        """Epochs fully completed."""
        return int(self.meta["epoch"])

    @property
    def global_step(self) -> int:
        return int(self.meta["global_step"])

    def optimizer_state_dict(self) -> dict[str, Any] | None:
        """The optimiser ``state_dict`` rebuilt from tensors + JSON (``None`` when not saved)."""
        groups = self.meta.get("optimizer")
        if groups is None:
            return None
        state: dict[int, dict[str, Any]] = {}
        for key, tensor in self.optimizer_tensors.items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = tensor
        for index, values in (self.meta.get("optimizer_scalars") or {}).items():
            state.setdefault(int(index), {}).update(values)
        groups = [  # JSON has no tuples: hyper-parameters such as betas were tuples
            {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
            for g in groups
        ]
        return {"state": state, "param_groups": groups}


def checkpoint_stem(epoch: int, global_step: int) -> str:
    """File stem of the checkpoint taken after ``global_step`` optimiser steps in ``epoch``."""
    return f"ckpt-e{epoch:04d}-s{global_step:09d}"


def _split_optimizer(state_dict: dict[str, Any]) -> tuple[dict, dict, list]:
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [dict(g) for g in state_dict["param_groups"]]
    for g in groups:
        for k, v in list(g.items()):
            if isinstance(v, torch.Tensor):
                g[k] = v.item()
            elif isinstance(v, tuple):
                g[k] = list(v)
    return tensors, scalars, groups


def save_checkpoint(
    path_stem: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    rng_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``<stem>.safetensors`` then ``<stem>.json`` atomically; return the JSON path.

    ``meta`` must be JSON-serialisable; the format fields, version and ids are added here.
    """
    stem = Path(path_stem)
    weights_path = stem.with_name(stem.name + _WEIGHTS_SUFFIX)
    meta_path = stem.with_name(stem.name + _META_SUFFIX)
    checkpoint_id = uuid.uuid4().hex
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model_state.items():
        tensors[f"model.{name}"] = t.detach().to("cpu", copy=True).contiguous()
    record = dict(meta)
    if optimizer_state is not None:
        opt_tensors, scalars, groups = _split_optimizer(optimizer_state)
        for name, t in opt_tensors.items():
            tensors[name] = t.detach().to("cpu", copy=True).contiguous()
        record["optimizer"] = groups
        record["optimizer_scalars"] = scalars
    for name, t in (rng_tensors or {}).items():
        tensors[f"rng.{name}"] = t.detach().to("cpu", copy=True).contiguous()
    record.update(
        format=CHECKPOINT_FORMAT,
        format_version=FORMAT_VERSION,
        atomizer_version=__version__,
        checkpoint_id=checkpoint_id,
        weights_file=weights_path.name,
    )
    try:
        text = json.dumps(record, indent=2, sort_keys=True, allow_nan=True)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {exc}") from None
    header = {"format": CHECKPOINT_FORMAT, "checkpoint_id": checkpoint_id}
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    atomic_write_text(meta_path, text + "\n")
    return meta_path


def _meta_path(path: Path) -> Path:
    """The JSON record for ``path`` (.json, .safetensors, a checkpoints folder or a run folder)."""
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(
                f"{path} holds no checkpoint (no {CHECKPOINT_DIR}/ckpt-*.json); train first or "
                "give "
                "the checkpoint's .json file"
            )
        return latest
    if path.suffix == _WEIGHTS_SUFFIX:
        return path.with_suffix(_META_SUFFIX)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON record of a checkpoint, checked for format and version."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; check the path")
    meta_path = _meta_path(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{meta_path}: missing; a checkpoint is a .safetensors file plus its .json record"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError, OSError):
        raise CheckpointError(
            f"{meta_path}: not an atomizer checkpoint (not a JSON record); give the .json or "
            ".safetensors file written by `atomizer train`"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{meta_path}: not an atomizer checkpoint (no 'format: {CHECKPOINT_FORMAT}' field)"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: checkpoint format version {version} (written by atomizer "
            f"{meta.get('atomizer_version', '?')}) is incompatible with this atomizer "
            f"{__version__}, which reads format version {FORMAT_VERSION}; use the matching "
            "atomizer version or retrain"
        )
    meta["_path"] = str(meta_path)
    return meta


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (.json / .safetensors file, or a run or checkpoints folder: the latest)."""
    meta = read_meta(path)
    meta_path = Path(meta.pop("_path"))
    weights_path = meta_path.with_name(meta["weights_file"])
    model, optim, rng = {}, {}, {}
    try:
        with safe_open(str(weights_path), framework="pt", device=str(map_location)) as f:
            header = f.metadata() or {}
            if header.get("checkpoint_id") != meta["checkpoint_id"]:
                raise CheckpointError(
                    f"{weights_path} does not belong to {meta_path} (checkpoint ids differ); the "
                    "checkpoint was only partly written: resume from an older one"
                )
            for key in f.keys():
                owner, name = key.split(".", 1)
                target = {"model": model, "optim": optim, "rng": rng}.get(owner)
                if target is None:
                    raise CheckpointError(f"{weights_path}: unexpected tensor {key!r}")
                target[name] = f.get_tensor(key)
    except FileNotFoundError:
        raise CheckpointError(
            f"{weights_path}: missing; the record {meta_path.name} needs its weights file beside it"
        ) from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    return Checkpoint(meta, model, optim, rng, path=meta_path)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The JSON records under ``run_dir`` (or ``run_dir/checkpoints``), oldest first."""
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_DIR if (run_dir / CHECKPOINT_DIR).is_dir() else run_dir
    return sorted(folder.glob("ckpt-e*-s*" + _META_SUFFIX))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint record under ``run_dir``, or ``None``."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (record first, then weights); return them."""
    found = list_checkpoints(run_dir)
    removed = []
    for meta_path in found[: max(0, len(found) - keep)]:
        meta_path.unlink(missing_ok=True)
        meta_path.with_suffix(_WEIGHTS_SUFFIX).unlink(missing_ok=True)
        removed.append(meta_path)
    return removed
