"""``atomizer export``: a trained checkpoint as a self-describing model package folder.

The folder holds:

- ``model.safetensors`` + ``model.json``: the weights and their record in the one checkpoint format
  (:mod:`atomizer.training.checkpoint`; no optimiser or RNG state), the record extended with a
  ``package`` section: class names, training modalities, the value normalisation the model expects;
- ``item.json``: a STAC Item with the Machine Learning Model (MLM) extension describing the model;
- ``README.md``: a model card (what it was trained on, its measured results, how to run it).

``predict``, ``embed`` and ``evaluate`` accept the folder wherever they accept a checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from atomizer import __version__
from atomizer.errors import CheckpointError, OutputError
from atomizer.inference.loading import (
    PACKAGE_RECORD,
    PRETRAIN_KIND,
    build_with_weights,
    class_names_of,
    record_path,
)

PACKAGE_FORMAT = "atomizer-model-package"
#: Bump when the package layout changes incompatibly.
PACKAGE_VERSION = 1
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
    from atomizer.training.checkpoint import load_checkpoint, save_checkpoint

    out = Path(output)
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists; choose another folder or pass --overwrite to replace it")
    ckpt = load_checkpoint(record_path(checkpoint))
    meta = ckpt.meta
    if meta.get("kind") == PRETRAIN_KIND:
        raise CheckpointError(
            f"{checkpoint}: a pretraining checkpoint has no classifier to package; fine-tune it "
            "with `atomizer train` and export that checkpoint (embed reads it directly)"
        )
    cfg = meta.get("model_config")
    if meta.get("model_name") is None or cfg is None:
        raise CheckpointError(f"{checkpoint}: no model_name / model_config; it cannot be exported")
    model = build_with_weights(
        meta["model_name"], cfg, ckpt.model_state, host, Path(str(ckpt.path))
    )
    n = int(cfg.get("num_classes", 0))
    names = list(class_names) if class_names else list(class_names_of(meta.get("experiment"), n))
    if len(names) != n:
        raise CheckpointError(
            f"--classes names {len(names)} classes but the model has {n}; give one name per class"
        )
    record = _record(meta, names, model)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create {tmp}: {exc.strerror or exc}; choose another folder"
        ) from None
    try:
        save_checkpoint(tmp / Path(PACKAGE_RECORD).stem, model_state=ckpt.model_state, meta=record)
        item = mlm_item(record, sum(p.numel() for p in model.parameters()))
        (tmp / "item.json").write_text(json.dumps(item, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(record), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _record(meta: dict[str, Any], names: list[str], model: Any) -> dict[str, Any]:
    keep = (
        "model_name",
        "model_config",
        "model_label",
        "experiment",
        "seed",
        "epoch",
        "global_step",
        "history",
        "finished",
    )
    experiment = meta.get("experiment") or {}
    record = {k: meta[k] for k in keep if k in meta}
    record["class_names"] = names
    record["package"] = {
        "format": PACKAGE_FORMAT,
        "version": PACKAGE_VERSION,
        "exported_with": __version__,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint_id": meta.get("checkpoint_id"),
        "task": meta["model_config"].get("task"),
        "train_modalities": experiment.get("train_modalities", []),
        "dataset": (experiment.get("data") or {}).get("dataset"),
        "normalisation": {
            "values": VALUE_CONVENTION,
            "data_options": (experiment.get("data") or {}).get("options", {}),
            "model_value_encoding": (meta["model_config"].get("tokenizer") or {}).get("value"),
        },
        "tokenizer": meta["model_config"].get("tokenizer"),
        "feature_dim": getattr(model, "feature_dim", None),
        "metrics": last_metrics(meta.get("history") or []),
    }
    return record


def last_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
    """The last epoch's validation metrics (and training loss) recorded in a checkpoint."""
    last = history[-1] if history else {}
    return {k: v for k, v in last.items() if k.startswith("val/") or k == "train_loss"}


def mlm_item(record: dict[str, Any], n_params: int) -> dict[str, Any]:
    """The package's STAC Item (MLM extension) as a JSON dict."""
    import torch

    pkg = record["package"]
    names = record["class_names"]
    label = record.get("model_label") or record["model_name"]
    task = "classification"
    properties = {
        "datetime": pkg["exported_at"],
        "description": f"{label}: an atomizer {record['model_name']} classifier ({pkg['task']}) "
        f"trained on {pkg['dataset']}",
        "mlm:name": label,
        "mlm:architecture": _architecture(record["model_name"]),
        "mlm:tasks": [task, "scene-classification"],
        "mlm:framework": "pytorch",
        "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:total_parameters": int(n_params),
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
        "mlm:hyperparameters": {"model_config": record["model_config"]},
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
                "title": "model, tokenizer and training config; class names; normalisation",
                "roles": ["mlm:model-config", "metadata"],
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


def model_card(record: dict[str, Any]) -> str:
    """The package's README.md."""
    pkg = record["package"]
    label = record.get("model_label") or record["model_name"]
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
    classes = ", ".join(record["class_names"])
    return f"""# {label}

An atomizer `{record["model_name"]}` model ({pkg["task"]} classification,
{len(record["class_names"])} classes),
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

Files: `model.safetensors` (weights), `model.json` (model, tokenizer and training config, class
names, normalisation), `item.json` (STAC Item, MLM extension).
"""
