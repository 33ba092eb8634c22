"""``atomizer export``: a trained checkpoint as a self-describing model package folder.

The folder holds:

- ``model.safetensors`` + ``model.json``: the weights and their record in the one checkpoint format
  (:mod:`atomizer.training.checkpoint`; no optimiser or RNG state);
- ``package.json``: class names, training modalities, the value normalisation the model expects,
  the measured metrics, the package format version;
- ``item.json``: a STAC Item with the Machine Learning Model (MLM) extension describing the model;
- ``README.md``: a model card (what it was trained on, its measured results, how to run it).

``predict``, ``embed`` and ``evaluate`` accept the folder wherever they accept a checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

from atomizer import __version__
from atomizer.errors import CheckpointError, OutputError
from atomizer.inference.loading import (
    PACKAGE_FORMAT,
    PACKAGE_META,
    PACKAGE_RECORD,
    PACKAGE_VERSION,
    check_class_names,
    class_names_of,
    record_path,
)

#: Record fields a package keeps (what was trained and how far; no optimiser or RNG state).
KEPT_FIELDS = (
    "kind",
    "seed",
    "epoch",
    "global_step",
    "finished",
    "task",
    "experiment",
    "experiment_fingerprint",
    "model_label",
    "model_name",
    "model_config",
    "history",
)

#: The MLM extension version the item follows.
MLM_SCHEMA_URI = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
CLASSIFICATION_SCHEMA_URI = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
#: What ``mlm:input`` says the model reads.
INPUT_DESCRIPTION = (
    "any optical sensor described by an atomizer sensor spec: a set of atoms, one scalar per band "
    "per pixel on each band's native grid, each with its band's centre wavelength and FWHM (nm), "
    "its GSD (m) and its position (m from the window centre)"
)
#: The value convention every atomizer reader follows (what the model was trained on).
VALUE_CONVENTION = (
    "physical units after the sensor spec's scale and offset (surface reflectance 0..1 for "
    "optical L2A products); no per-band standardisation: the model encodes raw values itself"
)


def export_package(
    checkpoint: str | Path,
    output: str | Path,
    *,
    host: Any,
    class_names: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the package of ``checkpoint`` into the folder ``output``; returns the folder."""
    from atomizer.models import build_model
    from atomizer.training.checkpoint import (
        CheckpointContent,
        load_checkpoint,
        load_weights,
        save_checkpoint,
    )
    from atomizer.training.checkpoint_record import PRETRAINING_KIND

    if not str(output).strip():
        raise OutputError("the output folder is empty; give the package folder to write")
    out = Path(output)
    if os.path.lexists(out) and not overwrite:
        raise OutputError(f"{out} exists; choose another folder or pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is not a folder; choose another output folder")
    source = record_path(checkpoint)
    _check_replaceable(out, source)
    ckpt = load_checkpoint(source)
    rec = ckpt.record
    if rec.kind == PRETRAINING_KIND:
        raise CheckpointError(
            f"{checkpoint}: a pretraining checkpoint has no classifier to package; fine-tune it "
            "with `atomizer train` and export that checkpoint (embed reads it directly)"
        )
    if rec.model_name is None or rec.model_params is None:
        raise CheckpointError(f"{checkpoint}: no model_name / model_config; it cannot be exported")
    model = build_model(rec.model_name, dict(rec.model_params), host=host)
    load_weights(model, ckpt.model_state, origin=ckpt.path, model_name=rec.model_name)
    n = int(rec.model_params.get("num_classes", 0))
    if class_names:
        names = list(check_class_names(list(class_names), n, "--classes"))
    elif rec.task is not None and rec.task.class_names and len(rec.task.class_names) == n:
        names = list(rec.task.class_names)
    else:
        names = list(class_names_of(rec.experiment, n))
    kept = {k: v for k, v in rec.to_json().items() if k in KEPT_FIELDS}
    content = CheckpointContent.model_validate(kept)
    package = package_meta(kept, names, model, rec.checkpoint_id)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create {tmp}: {exc.strerror or exc}; choose another folder"
        ) from None
    try:
        save_checkpoint(tmp / Path(PACKAGE_RECORD).stem, content, model_state=ckpt.model_state)
        (tmp / PACKAGE_META).write_text(json.dumps(package, indent=2) + "\n", encoding="utf-8")
        item = mlm_item(package)
        (tmp / "item.json").write_text(json.dumps(item, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(package, kept), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_replaceable(out: Path, source: Path) -> None:
    """Refuse an output folder that holds the checkpoint being exported, and an existing folder
    that is not an atomizer package (``--overwrite`` replaces a package, never other files)."""
    real_out = Path(os.path.realpath(out))
    if Path(os.path.realpath(source)).is_relative_to(real_out):
        raise OutputError(f"{out} holds the checkpoint being exported ({source}); replacing it "
                          "would delete the model: choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not (
        (out / PACKAGE_META).is_file() and (out / PACKAGE_RECORD).is_file()
    ):
        raise OutputError(f"{out} is a folder that is not an atomizer model package; --overwrite "
                          "replaces only a package: choose another output folder")


def package_meta(
    record: dict[str, Any], names: list[str], model: Any, checkpoint_id: str
) -> dict[str, Any]:
    """``package.json``: what a user of the package needs besides the weights and config."""
    experiment = record.get("experiment") or {}
    cfg = record["model_config"]
    return {
        "format": PACKAGE_FORMAT,
        "version": PACKAGE_VERSION,
        "exported_with": __version__,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint_id": checkpoint_id,
        "model_name": record["model_name"],
        "model_label": record.get("model_label") or record["model_name"],
        "task": cfg.get("task"),
        "class_names": names,
        "train_modalities": experiment.get("train_modalities", []),
        "dataset": (experiment.get("data") or {}).get("dataset"),
        "normalisation": {
            "values": VALUE_CONVENTION,
            "data_options": (experiment.get("data") or {}).get("options", {}),
            "model_value_encoding": (cfg.get("tokenizer") or {}).get("value"),
        },
        "tokenizer": cfg.get("tokenizer"),
        "model_config": cfg,
        "feature_dim": getattr(model, "feature_dim", None),
        "total_parameters": int(sum(p.numel() for p in model.parameters())),
        "metrics": last_metrics(record.get("history") or []),
    }


def last_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
    """The last epoch's validation metrics (and training loss) recorded in a checkpoint."""
    last = history[-1] if history else {}
    return {
        k: float(v)
        for k, v in last.items()
        if (k.startswith("val/") or k == "train_loss") and isinstance(v, (int, float))
    }


def mlm_item(pkg: dict[str, Any]) -> dict[str, Any]:
    """The package's STAC Item (MLM extension) as a JSON dict."""
    import torch

    names = pkg["class_names"]
    label = pkg["model_label"]
    task = "classification"
    properties = {
        "datetime": pkg["exported_at"],
        "description": f"{label}: an atomizer {pkg['model_name']} classifier ({pkg['task']}) "
        f"trained on {pkg['dataset']}",
        "mlm:name": label,
        "mlm:architecture": _architecture(pkg["model_name"]),
        "mlm:tasks": [task, "scene-classification"],
        "mlm:framework": "pytorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:total_parameters": pkg["total_parameters"],
        "mlm:pretrained": False,
        "mlm:batch_size_suggestion": 16,
        "mlm:input": [
            {
                "name": "atoms",
                "description": INPUT_DESCRIPTION,
                "bands": [],
                "input": {
                    "shape": [-1, -1],
                    "dim_order": ["batch", "atoms"],
                    "data_type": "float32",
                },
                "value_scaling": None,
                "pre_processing_function": None,
            }
        ],
        "mlm:output": [
            {
                "name": "class-probabilities",
                "description": "softmax" if pkg["task"] == "multiclass" else "independent sigmoids",
                "tasks": [task],
                "result": {
                    "shape": [-1, len(names)],
                    "dim_order": ["batch", "class"],
                    "data_type": "float32",
                },
                "classification:classes": [
                    {"value": i, "name": n, "description": n} for i, n in enumerate(names)
                ],
                "post_processing_function": None,
            }
        ],
        "mlm:hyperparameters": {"model_config": pkg["model_config"]},
        "atomizer:train_modalities": pkg["train_modalities"],
        "atomizer:normalisation": pkg["normalisation"],
    }
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [MLM_SCHEMA_URI, CLASSIFICATION_SCHEMA_URI],
        "id": str(label),
        "geometry": None,
        "properties": properties,
        "links": [],
        "assets": {
            "weights": {
                "href": "./model.safetensors",
                "type": "application/octet-stream; application=safetensors",
                "title": "model weights (safetensors)",
                "roles": ["mlm:model", "mlm:weights"],
                "mlm:artifact_type": "safetensors",
            },
            "config": {
                "href": f"./{PACKAGE_RECORD}",
                "type": "application/json",
                "title": "checkpoint record: model, tokenizer and training config",
                "roles": ["mlm:model-config", "metadata"],
            },
            "package": {
                "href": f"./{PACKAGE_META}",
                "type": "application/json",
                "title": "class names, training modalities, normalisation, metrics",
                "roles": ["metadata"],
            },
            "model-card": {
                "href": "./README.md",
                "type": "text/markdown",
                "title": "model card",
                "roles": ["metadata", "documentation"],
            },
        },
    }


def _architecture(model_name: str) -> str:
    if model_name.startswith("atomizer"):
        return (
            "Atomizer: Perceiver over atoms with wavelength, bandwidth, GSD and position encodings"
        )
    return model_name


def model_card(pkg: dict[str, Any], record: dict[str, Any]) -> str:
    """The package's README.md."""
    label = pkg["model_label"]
    mods = (
        "\n".join(
            f"- {m.get('name') or m.get('sensor')}: sensor `{m.get('sensor')}`, bands "
            f"{', '.join(m.get('bands') or []) or 'all'}, GSD {m.get('gsd_m') or 'native'} m, "
            f"{m.get('size_px') or 'full'} px"
            for m in pkg["train_modalities"]
        )
        or "- (not recorded)"
    )
    metrics = "\n".join(f"| {k} | {v:.4g} |" for k, v in pkg["metrics"].items())
    results = (
        f"| metric | value |\n|---|---|\n{metrics}"
        if metrics
        else "No validation metrics were recorded."
    )
    classes = ", ".join(pkg["class_names"])
    return f"""# {label}

An atomizer `{pkg["model_name"]}` model ({pkg["task"]} classification,
{len(pkg["class_names"])} classes),
exported by atomizer {pkg["exported_with"]} on {pkg["exported_at"]}.
It reads {INPUT_DESCRIPTION}.

## Training

Dataset: `{pkg["dataset"]}`; epochs completed: {record.get("epoch", "?")}, optimiser steps:
{record.get("global_step", "?")}, seed {record.get("seed", "?")}. Training modalities:

{mods}

Input values: {VALUE_CONVENTION}.

Classes: {classes}.

## Measured results (last epoch, from the checkpoint)

{results}

## How to run it

```
atomizer predict THIS_FOLDER scene.json -o map.tif --chip-m 1920 --stride-m 960
atomizer predict THIS_FOLDER image.tif --sensor my_sensor.yaml -o map.tif --chip-m 1920
atomizer embed THIS_FOLDER scene.json -o embeddings.parquet --chip-m 1920
atomizer evaluate THIS_FOLDER --modality sentinel2a --bands B02,B03,B04,B08
```

Files: `model.safetensors` (weights), `model.json` (checkpoint record: model, tokenizer and
training config), `package.json` (class names, modalities, normalisation, metrics), `item.json`
(STAC Item, MLM extension).
"""
