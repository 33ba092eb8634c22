"""One way to get a model for inference: a checkpoint, a pretraining checkpoint or a package.

``MODEL`` may be a checkpoint record (``.json`` / ``.safetensors``), a run folder (its latest
checkpoint), a pretraining checkpoint (``atomizer pretrain``: its image encoder, no class head) or a
model package folder written by ``atomizer export`` (:mod:`atomizer.inference.package`).
:func:`load_inference_model` is the only place here that touches the checkpoint API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomizer.errors import CheckpointError

#: The checkpoint record inside a model package folder (the one checkpoint format).
PACKAGE_RECORD = "model.json"
#: What the package adds to the checkpoint: class names, modalities, normalisation, its version.
PACKAGE_META = "package.json"
PACKAGE_FORMAT = "atomizer-model-package"
#: Bump when the package layout changes incompatibly; packages of another version are refused.
PACKAGE_VERSION = 1
#: Prefix of the image encoder's tensors inside a pretraining checkpoint's model state.
ENCODER_PREFIX = "image_encoder."


@dataclass
class InferenceModel:
    """A model ready for inference (eval mode, on its device) and what is known about it."""

    model: Any  # torch.nn.Module
    name: str
    source: str
    task: str | None  # "multiclass" / "multilabel"; None for an encoder without a head
    class_names: tuple[str, ...] = ()
    record: Any = None  # the checkpoint's CheckpointRecord
    package: dict[str, Any] = field(default_factory=dict)  # package.json of a package, else {}

    @property
    def has_head(self) -> bool:
        return self.task is not None

    @property
    def feature_dim(self) -> int | None:
        return getattr(self.model, "feature_dim", None)


def record_path(path: str | Path) -> Path:
    """``path`` itself, or the checkpoint record of the model package folder ``path``."""
    path = Path(path)
    if path.is_dir() and not (path / "checkpoints").is_dir() and not any(path.glob("ckpt-*.json")):
        record = path / PACKAGE_RECORD
        if not record.is_file():
            raise CheckpointError(
                f"{path}: not a model package (no {PACKAGE_RECORD}) nor a run folder (no "
                "checkpoints/); give a folder written by `atomizer export`, a run folder or a "
                "checkpoint .json file"
            )
        return record
    return path


def read_package(record: Path) -> dict[str, Any]:
    """The ``package.json`` beside a package's checkpoint record (``{}`` for a plain checkpoint)."""
    from atomizer.documents import check_format, read_json

    meta_path = record.parent / PACKAGE_META
    if record.name != PACKAGE_RECORD or not meta_path.exists():
        return {}
    meta = read_json(meta_path, what="model package metadata", error=CheckpointError)
    exported_with = str(meta.get("exported_with", "?"))[:20] if isinstance(meta, dict) else "?"
    check_format(
        meta,
        str(meta_path),
        format_id=PACKAGE_FORMAT,
        version=PACKAGE_VERSION,
        what=f"an {PACKAGE_FORMAT} file",
        kind="model package",
        detail=f" (exported with atomizer {exported_with})",
        fix="export the checkpoint again with this version",
        error=CheckpointError,
    )
    return meta


def load_inference_model(
    path: str | Path, *, host: Any, device: Any = "cpu", need_head: bool = False
) -> InferenceModel:
    """Load ``path`` (see the module docstring) in eval mode on ``device``.

    ``need_head``: refuse a model without a classification head (a pretraining checkpoint).
    The only function here that uses the checkpoint API.
    """
    from atomizer.training.checkpoint import load_checkpoint, load_weights, read_record
    from atomizer.training.checkpoint_record import PRETRAINING_KIND

    ref = read_record(record_path(path))
    package = read_package(ref.path)
    rec = ref.record
    if rec.kind == PRETRAINING_KIND:
        if need_head:
            raise CheckpointError(
                f"{path}: a pretraining checkpoint has an image encoder but no classification "
                "head, so it cannot predict classes; use `atomizer embed`, or fine-tune it with "
                "`atomizer train` first"
            )
        if rec.image_encoder is None:
            raise CheckpointError(f"{ref.path}: no image_encoder; it cannot be rebuilt")
        name, cfg, prefix = rec.image_encoder.name, rec.image_encoder.config, ENCODER_PREFIX
    else:
        name, cfg, prefix = rec.model_name, rec.model_params, ""
        if name is None or cfg is None:
            raise CheckpointError(f"{ref.path}: no model_name / model_config; it cannot be rebuilt")
    state = load_checkpoint(ref.path).model_state
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    from atomizer.models import build_model

    model = build_model(name, dict(cfg), host=host)
    load_weights(model, state, origin=ref.path, model_name=name)
    if rec.kind == PRETRAINING_KIND:
        return InferenceModel(model.to(device).eval(), name, str(ref.path), None, (), rec, package)
    task = cfg.get("task") or (rec.task.type if rec.task is not None else None)
    n_classes = int(cfg.get("num_classes", 0))
    if package.get("class_names") is not None:
        names = check_class_names(package["class_names"], n_classes, f"{ref.path.parent / PACKAGE_META}")
    elif rec.task is not None and rec.task.class_names and len(rec.task.class_names) == n_classes:
        names = tuple(rec.task.class_names)
    else:
        names = class_names_of(rec.experiment, n_classes)
    return InferenceModel(model.to(device).eval(), name, str(ref.path), task, names, rec, package)


def check_class_names(names: Any, n_classes: int, origin: str) -> tuple[str, ...]:
    """``names`` as a tuple of ``n_classes`` distinct non-empty names; else one CheckpointError."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
        raise CheckpointError(f"{origin}: class_names must be a list of texts")
    if len(names) != n_classes:
        raise CheckpointError(
            f"{origin}: {len(names)} class names for a model of {n_classes} classes; give one "
            "name per class"
        )
    if any(not c.strip() for c in names):
        raise CheckpointError(f"{origin}: a class name is empty; name every class")
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise CheckpointError(f"{origin}: class names {twice} appear more than once; name each once")
    return tuple(names)


def class_names_of(experiment: dict[str, Any] | None, num_classes: int) -> tuple[str, ...]:
    """The class names of an experiment's dataset when the dataset names them, else class_<i>."""
    names: tuple[str, ...] = ()
    data = (experiment or {}).get("data") or {}
    dataset = str(data.get("dataset", "")).lower()
    if dataset == "indian-pines":
        from atomizer.data.indian_pines import CLASS_NAMES

        names = tuple(CLASS_NAMES)
    elif dataset == "bigearthnet":
        from atomizer.data import bigearthnet_labels as nomen

        n43 = (data.get("options") or {}).get("nomenclature") == 43
        names = tuple(nomen.LABELS_43 if n43 else nomen.LABELS_19)
    if len(names) != num_classes:
        names = tuple(f"class_{i}" for i in range(num_classes))
    return names
