"""Checkpoints: tensors in safetensors, the record in JSON. Never pickle.

A checkpoint is a pair of files with one stem, e.g. ``checkpoints/ckpt-e0003-s00000120``:

- ``.safetensors``: model weights (``model.*``), optimiser state tensors (``optim.<param>.<key>``)
  and RNG state tensors (``rng.*``);
- ``.json``: the record, a :class:`~atomizer.training.checkpoint_record.CheckpointRecord` (format
  and version, ids, where the run stands, what was trained).

Both files are written atomically, the tensors first; the JSON is the commit record (a checkpoint
without its JSON does not exist), and a random ``checkpoint_id`` stored in both catches a pair
that does not belong together. Reading validates the record at the boundary (bounded JSON, typed
fields, a weights file beside the record) and :func:`load_weights` checks every tensor's name and
shape against the model before loading any.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from atomizer.config import validate_config
from atomizer.documents import read_json
from atomizer.errors import CheckpointError, DocumentError
from atomizer.io import atomic_path, atomic_write_text
from atomizer.training.checkpoint_record import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    WEIGHTS_SUFFIX,
    CheckpointContent,
    CheckpointRecord,
    upgrade,
    version_problem,
)

__all__ = [
    "CHECKPOINT_DIR",
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointContent",
    "CheckpointRecord",
    "RecordFile",
    "checkpoint_stem",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "prune_checkpoints",
    "read_record",
    "save_checkpoint",
]

CHECKPOINT_DIR = "checkpoints"
_META_SUFFIX = ".json"


@dataclass(frozen=True)
class RecordFile:
    """A checkpoint's validated record and the path of its JSON file."""

    path: Path
    record: CheckpointRecord

    @property
    def epoch(self) -> int:
        """Epochs fully completed."""
        return self.record.epoch

    @property
    def global_step(self) -> int:
        return self.record.global_step

    @property
    def weights_path(self) -> Path:
        return self.path.with_name(self.record.weights_file)


@dataclass(frozen=True)
class Checkpoint(RecordFile):
    """A loaded checkpoint: its record and its tensors, grouped by owner."""

    model_state: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    rng_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def optimizer_state_dict(self) -> dict[str, Any] | None:
        """The optimiser ``state_dict`` rebuilt from tensors + JSON (``None`` when not saved)."""
        groups = self.record.optimizer
        if groups is None:
            return None
        state: dict[int, dict[str, Any]] = {}
        for key, tensor in self.optimizer_tensors.items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = tensor
        for index, values in (self.record.optimizer_scalars or {}).items():
            state.setdefault(int(index), {}).update(values)
        groups = [  # JSON has no tuples: hyper-parameters such as betas were tuples
            {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
            for g in groups
        ]
        return {"state": state, "param_groups": groups}

    def rank_rng_tensors(self, rank: int) -> dict[str, torch.Tensor]:
        """The RNG state tensors of ``rank`` (empty when the checkpoint has none for it)."""
        prefix = f"r{rank}."
        return {k[len(prefix) :]: v for k, v in self.rng_tensors.items() if k.startswith(prefix)}


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
    content: CheckpointContent,
    *,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None = None,
    rng_tensors: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``<stem>.safetensors`` then ``<stem>.json`` atomically; return the JSON path.

    The optimiser's hyper-parameters and the format envelope (version, ids, weights file) are
    added to ``content`` here.
    """
    stem = Path(path_stem)
    weights_path = stem.with_name(stem.name + WEIGHTS_SUFFIX)
    meta_path = stem.with_name(stem.name + _META_SUFFIX)
    checkpoint_id = uuid.uuid4().hex
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model_state.items():
        tensors[f"model.{name}"] = t.detach().to("cpu", copy=True).contiguous()
    if optimizer_state is not None:
        opt_tensors, scalars, groups = _split_optimizer(optimizer_state)
        for name, t in opt_tensors.items():
            tensors[name] = t.detach().to("cpu", copy=True).contiguous()
        content = content.model_copy(update={"optimizer": groups, "optimizer_scalars": scalars})
    for name, t in (rng_tensors or {}).items():
        tensors[f"rng.{name}"] = t.detach().to("cpu", copy=True).contiguous()
    record = CheckpointRecord.envelope(content, checkpoint_id, weights_path.name)
    text = json.dumps(record.to_json(), indent=2, sort_keys=True, allow_nan=True)
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
                "give the checkpoint's .json file"
            )
        return latest
    if path.suffix == WEIGHTS_SUFFIX:
        return path.with_suffix(_META_SUFFIX)
    return path


def read_record(path: str | Path) -> RecordFile:
    """The validated JSON record of a checkpoint (.json / .safetensors file, or a run or
    checkpoints folder: the latest), converted to the current format version."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; check the path")
    meta_path = _meta_path(path)
    if not meta_path.exists():
        raise CheckpointError(
            f"{meta_path}: missing; a checkpoint is a .safetensors file plus its .json record"
        )
    try:
        data = read_json(meta_path, what="checkpoint record", allow_nan=True)
    except DocumentError as exc:  # size and depth limits stay LimitErrors
        raise CheckpointError(
            f"{exc}; not an atomizer checkpoint: give the .json or .safetensors file written by "
            "`atomizer train` or `atomizer pretrain`"
        ) from None
    problem = version_problem(data)
    if problem is not None:
        raise CheckpointError(f"{meta_path}: {problem}")
    record = validate_config(
        CheckpointRecord, upgrade(data), origin=str(meta_path), error=CheckpointError,
        what="a checkpoint record",
    )
    return RecordFile(meta_path, record)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (.json / .safetensors file, or a run or checkpoints folder: the latest)."""
    ref = read_record(path)
    weights_path = ref.weights_path
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "rng": {}}
    try:
        with safe_open(str(weights_path), framework="pt", device=str(map_location)) as f:
            header = f.metadata() or {}
            if header.get("checkpoint_id") != ref.record.checkpoint_id:
                raise CheckpointError(
                    f"{weights_path} does not belong to {ref.path} (checkpoint ids differ); the "
                    "checkpoint was only partly written: resume from an older one"
                )
            for key in f.keys():
                owner, _, name = key.partition(".")
                if owner not in groups or not name:
                    raise CheckpointError(f"{weights_path}: unexpected tensor {key[:200]!r}")
                groups[owner][name] = f.get_tensor(key)
    except FileNotFoundError:
        raise CheckpointError(
            f"{weights_path}: missing; the record {ref.path.name} needs its weights file beside it"
        ) from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    return Checkpoint(ref.path, ref.record, groups["model"], groups["optim"], groups["rng"])


def _shape(t: Any) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], *, origin: Any,
                 model_name: str) -> None:
    """Load ``state`` into ``model`` strictly, after checking every name and shape.

    A mismatch is one :class:`CheckpointError` that names the first tensor that does not fit, its
    shape and the shape the model expects, and counts the others.
    """
    expected = model.state_dict()
    problems = []
    for name, want in expected.items():  # in the model's order
        if name not in state:
            problems.append(
                f"the model's tensor {name} {_shape(want)} is missing from the checkpoint"
            )
        elif tuple(state[name].shape) != tuple(want.shape):
            problems.append(
                f"tensor {name} has shape {_shape(state[name])} but the model expects "
                f"{_shape(want)}"
            )
        elif state[name].dtype != want.dtype:
            problems.append(
                f"tensor {name} is {str(state[name].dtype).removeprefix('torch.')} but the model "
                f"expects {str(want.dtype).removeprefix('torch.')}"
            )
    problems += [f"tensor {n} {_shape(t)} is not in the model"
                 for n, t in state.items() if n not in expected]
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise CheckpointError(
            f"{origin}: weights do not fit model {model_name!r}: {problems[0]}{more}; the "
            "record's model config must describe the model the weights came from"
        )
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{origin}: tensor {name} holds NaN or inf values: the run diverged or the file "
                "is damaged; use an earlier checkpoint of the run"
            )
    model.load_state_dict(dict(state))


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
        meta_path.with_suffix(WEIGHTS_SUFFIX).unlink(missing_ok=True)
        removed.append(meta_path)
    return removed
