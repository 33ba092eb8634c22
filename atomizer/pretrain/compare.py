"""One command, several methods: pretrain each on the same chips and budget, probe, tabulate.

:func:`run_pretraining` builds the chips once, trains every method of ``config.methods`` from the
same seed for the same epochs, saves a checkpoint per method, probes the frozen features (kNN,
linear, bimodal; mean +/- std over seeds) and writes ``comparison.json`` and ``comparison.md``:
the columns of SatMIP's Table 6 (accuracy, training time and peak memory relative to SimCLR).
Reference rows (``probe.baselines``): per-band mean values of each chip (no encoder) and the
image encoder at random initialisation (no training).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomizer.atoms.batch import collate_atoms
from atomizer.evaluation.probe import MeanStd, evaluate_probes
from atomizer.io import atomic_write_text, ensure_dir
from atomizer.pretrain.checkpoint import save_checkpoint
from atomizer.training.seed import isolated_rng, seed_everything
from atomizer.pretrain.chips import Chip, ChipSet, build_chips
from atomizer.pretrain.config import PretrainConfig, resolve_data_root
from atomizer.pretrain.losses import PretrainObjective
from atomizer.pretrain.metadata_encoders import fixed_metadata_features
from atomizer.pretrain.pretrainer import (
    SatMIPModel,
    build_image_encoder,
    extract_features,
    infer_feature_dim,
    pretrain,
)
from atomizer.training.evaluate import cpu_threads

MIB = 2**20


def band_mean_features(chips: Sequence[Chip]) -> np.ndarray:
    """Mean value of each band of each chip, bands matched by name across chips (0 if absent)."""
    names = sorted({b.name for c in chips for b in c.atoms.bands})
    col = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(chips), len(names)))
    for i, c in enumerate(chips):
        sums = np.bincount(
            c.atoms.band.astype(np.int64), weights=c.atoms.value, minlength=c.atoms.n_bands
        )
        counts = np.maximum(c.atoms.band_counts(), 1)
        for j, b in enumerate(c.atoms.bands):
            out[i, col[b.name]] = sums[j] / counts[j]
    return out


@dataclass
class MethodRow:
    """One line of the comparison."""

    method: str
    views_per_step: int | None
    probes: dict[str, MeanStd]
    train_time_s: float | None = None
    step_cpu_s: float | None = None
    peak_memory_bytes: int | None = None
    checkpoint: str | None = None
    final_loss: dict[str, float] | None = None
    relative: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "views_per_step": self.views_per_step,
            "probes": {k: v.to_json() for k, v in self.probes.items()},
            "train_time_s": self.train_time_s,
            "median_step_cpu_s": self.step_cpu_s,
            "peak_memory_bytes": self.peak_memory_bytes,
            "relative_to_simclr": self.relative,
            "checkpoint": self.checkpoint,
            "final_loss": self.final_loss,
        }


def _relative(rows: list[MethodRow]) -> None:
    ref = next((r for r in rows if r.method == "simclr"), None)
    if ref is None or not ref.step_cpu_s or not ref.peak_memory_bytes:
        return
    for r in rows:
        if r.step_cpu_s is not None and r.peak_memory_bytes is not None:
            r.relative = {
                "time": r.step_cpu_s / ref.step_cpu_s,
                "memory": r.peak_memory_bytes / ref.peak_memory_bytes,
            }


def format_markdown(rows: Sequence[MethodRow], *, title: str, notes: Sequence[str] = ()) -> str:
    """The comparison as a Markdown table (accuracy in %, mean ± std over seeds)."""
    probe_keys: list[str] = []
    for r in rows:
        probe_keys.extend(k for k in r.probes if k not in probe_keys)
    head = [
        "method",
        "views/step",
        *probe_keys,
        "wall time (s)",
        "CPU ms/step",
        "time vs SimCLR",
        "peak memory (MiB)",
        "memory vs SimCLR",
    ]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.method, "-" if r.views_per_step is None else str(r.views_per_step)]
        cells += [str(r.probes[k]) if k in r.probes else "-" for k in probe_keys]
        cells += [
            "-" if r.train_time_s is None else f"{r.train_time_s:.1f}",
            "-" if r.step_cpu_s is None else f"{1000 * r.step_cpu_s:.0f}",
            f"{r.relative['time']:.2f}x" if "time" in r.relative else "-",
            "-" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / MIB:.1f}",
            f"{r.relative['memory']:.2f}x" if "memory" in r.relative else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


@dataclass
class ComparisonReport:
    rows: list[MethodRow]
    chips: dict[str, Any]
    json_path: Path
    markdown_path: Path
    markdown: str


def _probe(
    config: PretrainConfig,
    image: np.ndarray,
    labels: np.ndarray,
    groups: list[str],
    metadata: np.ndarray | None,
) -> dict[str, MeanStd]:
    p = config.probe
    methods = [m for m in p.methods if m != "bimodal" or metadata is not None]
    return evaluate_probes(
        image,
        labels,
        metadata_features=metadata,
        methods=methods,
        seeds=p.seeds,
        test_fraction=p.test_fraction,
        groups=groups,
        ks=p.knn_k,
        knn_temperature=p.knn_temperature,
        max_iter=p.linear_max_iter,
    )


def run_pretraining(
    config: PretrainConfig,
    *,
    host: Any,
    out_dir: str | os.PathLike,
    config_dir: str | os.PathLike | None = None,
    chips: ChipSet | None = None,
    log: Callable[[str], None] | None = None,
) -> ComparisonReport:
    """Pretrain every method of ``config.methods``, probe, write the comparison (see module)."""
    out = ensure_dir(out_dir)
    say = log or (lambda _msg: None)
    chips = chips or build_chips(config, host=host, config_dir=config_dir)
    summary = chips.summary()
    say(
        f"chips: {summary['n_pretrain']} for pretraining, {summary['n_probe']} labelled for "
        f"probing ({len(chips.class_names)} classes), {summary['mean_atoms']:.0f} atoms on average"
    )
    train_chips, probe_chips = chips.pretrain_chips, chips.probe_chips
    labels = chips.probe_labels()
    groups = [c.group for c in probe_chips]
    fixed_meta = fixed_metadata_features([c.metadata for c in probe_chips]) if probe_chips else None
    do_probe = bool(probe_chips) and len(chips.class_names) >= 2 and bool(config.probe.methods)
    rows: list[MethodRow] = []
    cuda_memory = False
    with cpu_threads(config.threads):
        if do_probe and config.probe.baselines:
            rows.append(
                MethodRow(
                    "band-means (no encoder)",
                    None,
                    _probe(config, band_mean_features(probe_chips), labels, groups, fixed_meta),
                )
            )
            with isolated_rng():  # the same initial weights as the pretrained runs start from
                seed_everything(config.seed)
                encoder = build_image_encoder(config.image_encoder, host)
            dim = infer_feature_dim(encoder, collate_atoms([c.atoms for c in probe_chips[:2]]))
            random_model = SatMIPModel(encoder, dim, PretrainObjective("simclr"))
            img, _ = extract_features(random_model, probe_chips, batch_size=config.probe.batch_size)
            rows.append(
                MethodRow(
                    "random-init encoder", None, _probe(config, img, labels, groups, fixed_meta)
                )
            )
        for label in config.methods:
            opt = config.optim
            say(f"pretraining {label} ({opt.epochs} epochs, batch {opt.batch_size})")
            result = pretrain(config, train_chips, method=label, host=host, log=say)
            ckpt = save_checkpoint(
                result,
                config,
                out / label,
                data_root=str(resolve_data_root(config, config_dir).resolve()),
                chips=summary,
            )
            cuda_memory = cuda_memory or (
                result.memory is not None and result.memory.cuda_peak is not None
            )
            probes: dict[str, MeanStd] = {}
            if do_probe:
                img, meta = extract_features(
                    result.model, probe_chips, batch_size=config.probe.batch_size
                )
                use_meta = (
                    fixed_meta
                    if config.probe.metadata_features == "fixed" or meta is None
                    else meta
                )
                probes = _probe(config, img, labels, groups, use_meta)
            rows.append(
                MethodRow(
                    label,
                    result.objective.n_views,
                    probes,
                    result.train_time_s,
                    result.median_step_cpu_s,
                    result.memory.total if result.memory else None,
                    ckpt.name,
                    {
                        k: v
                        for k, v in result.history[-1].items()
                        if k in ("loss", "satmip", "simclr")
                    },
                )
            )
    _relative(rows)
    memory_kind = (
        "CUDA max allocated"
        if cuda_memory
        else "parameters + gradients + AdamW state + peak saved activations"
    )
    threads = config.threads or torch.get_num_threads()
    notes = [
        f"accuracy in % on {summary['n_probe']} labelled chips ({len(chips.class_names)} classes: "
        f"{', '.join(chips.class_names)}), mean ± std over seeds {list(config.probe.seeds)} "
        f"(grouped {1 - config.probe.test_fraction:.0%}/{config.probe.test_fraction:.0%} splits)",
        f"{config.optim.epochs} epochs of {summary['n_pretrain']} chips, "
        f"batch {config.optim.batch_size}, image encoder {config.image_encoder.name}, "
        f"metadata encoder {config.metadata_encoder.name}",
        f"peak memory = {memory_kind}; time vs SimCLR = ratio of the median CPU time per step "
        "(augmentation + forward + backward + update; robust to other processes sharing the "
        f"cores); wall time = whole training loop ({threads} torch threads, "
        f"{os.cpu_count()} cores, {platform.machine()})",
        f"bimodal probe metadata features: {config.probe.metadata_features}",
    ]
    markdown = format_markdown(rows, title=f"{config.name}: pretraining comparison", notes=notes)
    payload = {
        "name": config.name,
        "chips": summary,
        "class_names": chips.class_names,
        "rows": [r.to_json() for r in rows],
        "notes": notes,
        "config": config.model_dump(mode="json"),
    }
    json_path, md_path = out / "comparison.json", out / "comparison.md"
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(md_path, markdown)
    return ComparisonReport(rows, summary, json_path, md_path, markdown)
