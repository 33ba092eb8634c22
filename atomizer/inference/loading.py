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
#: ``kind`` of a pretraining checkpoint record (see :mod:`atomizer.pretrain.checkpoint`).
PRETRAIN_KIND = "satmip-pretraining"
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
    meta: dict[str, Any] = field(default_factory=dict)

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


def load_inference_model(
    path: str | Path, *, host: Any, device: Any = "cpu", need_head: bool = False
) -> InferenceModel:
    """Load ``path`` (see the module docstring) in eval mode on ``device``.

    ``need_head``: refuse a model without a classification head (a pretraining checkpoint).
    """
    from atomizer.training.checkpoint import load_checkpoint, read_meta

    record = record_path(path)
    meta = read_meta(record)
    meta.pop("_path", None)
    check_package(meta, record)
    if meta.get("kind") == PRETRAIN_KIND:
        if need_head:
            raise CheckpointError(
                f"{path}: a pretraining checkpoint has an image encoder but no classification "
                "head, so it cannot predict classes; use `atomizer embed`, or fine-tune it with "
                "`atomizer train` first"
            )
        enc = meta.get("image_encoder") or {}
        if "name" not in enc or "config" not in enc:
            raise CheckpointError(f"{record}: no image_encoder name / config; it cannot be rebuilt")
        state = load_checkpoint(record).model_state
        state = {
            k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)
        }
        model = build_with_weights(enc["name"], enc["config"], state, host, record)
        return InferenceModel(model.to(device).eval(), enc["name"], str(record), None, (), meta)
    name, cfg = meta.get("model_name"), meta.get("model_config")
    if name is None or cfg is None:
        raise CheckpointError(f"{record}: no model_name / model_config; it cannot be rebuilt")
    model = build_with_weights(name, cfg, load_checkpoint(record).model_state, host, record)
    task = cfg.get("task") or (meta.get("experiment") or {}).get("task", {}).get("type")
    n_classes = int(cfg.get("num_classes", 0))
    names = tuple(meta.get("class_names") or class_names_of(meta.get("experiment"), n_classes))
    return InferenceModel(model.to(device).eval(), name, str(record), task, names, meta)


def check_package(meta: dict[str, Any], record: Path) -> None:
    """:class:`CheckpointError` for a package record of another package format version."""
    from atomizer.inference.package import PACKAGE_FORMAT, PACKAGE_VERSION

    pkg = meta.get("package")
    if pkg is None:
        return
    if not isinstance(pkg, dict) or pkg.get("format") != PACKAGE_FORMAT:
        raise CheckpointError(f"{record}: the package section is not an {PACKAGE_FORMAT} record")
    if pkg.get("version") != PACKAGE_VERSION:
        raise CheckpointError(
            f"{record}: model package version {pkg.get('version')} (exported with atomizer "
            f"{pkg.get('exported_with', '?')}) is not the version {PACKAGE_VERSION} this atomizer "
            "reads; export the checkpoint again with this version"
        )


def build_with_weights(
    name: str, cfg: dict[str, Any], state: dict[str, Any], host: Any, record: Path
) -> Any:
    from atomizer.models import build_model

    model = build_model(name, dict(cfg), host=host)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{record}: weights do not fit model {name!r}: {first}") from None
    return model


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
