"""The jobs behind ``atomizer train``, ``atomizer evaluate`` and ``atomizer run``.

- :func:`train_one`: one model, one seed, into ``output_dir/<model>/seed-<n>`` (resumable);
- :func:`evaluate_checkpoint`: a trained model on any modality, including one whose sensor spec was
  written after training (an id on ``ATOMIZER_SENSOR_PATH`` or a YAML file);
- :func:`run_experiment`: every model x every seed, every test modality, then the comparison table
  (:mod:`atomizer.training.report`).

Model configs get ``num_classes`` and ``task`` from the experiment; a baseline without a ``layout``
reads the union of the training modalities' bands (the paper's fixed band layout with missing bands
zero-filled), on a raster as large as the largest training modality; an any-sensor baseline
(DOFA, Panopticon, Copernicus-FM) reads the input's own bands on a raster of that size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atomizer.data.modality import Modality
from atomizer.errors import CheckpointError, ConfigError, ModalityError, OutputError
from atomizer.models.registry import ModelPlan, build_planned, plan_model
from atomizer.training.checkpoint import (
    CheckpointContent,
    CheckpointRecord,
    RecordFile,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    read_record,
)
from atomizer.training.config import ExperimentConfig, ModelEntry, validate_config
from atomizer.training.datasets import DatasetBuilder, modality_bands
from atomizer.training.distributed import DistContext
from atomizer.training.evaluate import cpu_threads, evaluate_model, resolve_device
from atomizer.training.trainer import Trainer, TrainResult, TrainSettings


# --- models ---------------------------------------------------------------------------------------
def _config_fields(name: str, host: Any) -> set[str] | None:
    factory = host.models.get(name)
    cls = getattr(factory, "config_cls", None)
    return set(cls.model_fields) if cls is not None else None


def default_layout(config: ExperimentConfig, host: Any) -> dict[str, Any]:
    """A raster layout over the union of the training modalities' bands (first sensor's spec)."""
    from atomizer.plugins.host import sensor_spec

    first = config.train_modalities[0]
    spec = sensor_spec(first.sensor, host)
    wanted: list[str] = []
    for m in config.train_modalities:
        other = sensor_spec(m.sensor, host)
        for name in m.band_names(other):
            band = other.band(name)
            try:
                mine = spec.band(band.name).name
            except Exception:  # noqa: BLE001 - a band of another sensor: no layout slot by name
                continue
            if mine not in wanted:
                wanted.append(mine)
    ordered = [b for b in spec.band_names if b in wanted]
    return {"sensor": spec.id, "sensor_bands": ordered, "size_px": default_size_px(config)}


def default_size_px(config: ExperimentConfig) -> int:
    """Raster side of a baseline without one: the largest training modality's size (else 32)."""
    sizes = [m.size_px for m in config.train_modalities if m.size_px]
    return max(sizes) if sizes else 32


def model_params(entry: ModelEntry, config: ExperimentConfig, host: Any) -> dict[str, Any]:
    """The model's config: the entry's overrides plus the task, and a default raster layout."""
    params = dict(entry.config)
    fields = _config_fields(entry.name, host)
    for key, value in (("num_classes", config.task.num_classes), ("task", config.task.type)):
        if key in params and params[key] != value:
            raise ConfigError(
                f"models[{entry.row}].config.{key}: {params[key]!r} contradicts task ({value!r}); "
                "leave it out, the task sets it"
            )
        if fields is None or key in fields:
            params[key] = value
    if fields is not None and "layout" in fields and "layout" not in params:
        params["layout"] = default_layout(config, host)
    if fields is not None and "raster" in fields and "raster" not in params:  # any-sensor models
        params["raster"] = {"size_px": default_size_px(config)}
    return params


def build(name: str, params: Mapping[str, Any], host: Any) -> nn.Module:
    from atomizer.models import build_model

    return build_model(name, dict(params), host=host)


def plan_entry(entry: ModelEntry, config: ExperimentConfig, host: Any) -> ModelPlan:
    """The validated, sized (not built) model of ``entry`` under ``config``'s task."""
    return plan_model(entry.name, model_params(entry, config, host), host=host)


def check_readable(
    model: nn.Module, bands: Iterable[Any], *, model_name: str, modality: str
) -> None:
    """:class:`ModalityError` when ``model`` has a fixed band layout none of ``bands`` fills."""
    layout = getattr(model, "layout", None)
    match = getattr(layout, "match", None)
    if match is None:
        return
    bands = tuple(bands)
    if bands and all(i < 0 for i in match(bands)):
        names = ", ".join(b.name for b in getattr(layout, "bands", ()))
        have = ", ".join(f"{b.name} ({b.center_wavelength_nm:g} nm)" for b in bands)
        raise ModalityError(
            f"model {model_name!r} reads a fixed band layout ({names}); none of the bands of "
            f"modality {modality} ({have}) falls within its wavelength tolerance, so it would see "
            "only zeros: evaluate a model that reads atoms (atomizer) or pick overlapping bands"
        )


# --- training -------------------------------------------------------------------------------------
def run_dir_for(output_dir: str | Path, entry: ModelEntry, seed: int) -> Path:
    return Path(output_dir) / entry.row / f"seed-{seed}"


def _run_content(config: ExperimentConfig, entry: ModelEntry, plan: ModelPlan):
    return CheckpointContent(
        experiment=config.model_dump(mode="json"),
        experiment_fingerprint=config.fingerprint(entry),
        model_label=entry.row,
        model_name=plan.name,
        model_params=plan.config,
    )


def _finished_run(ref: RecordFile, host: Any) -> TrainResult:
    """The result of a finished run, rebuilt from its last checkpoint."""
    model, ckpt = load_model(ref.path, host=host)
    rec = ckpt.record
    return TrainResult(ref.path.parent.parent, ref.path, rec.epoch, rec.global_step,
                       list(rec.history), True, model.train())


def train_one(
    config: ExperimentConfig,
    entry: ModelEntry,
    seed: int,
    *,
    host: Any,
    run_dir: str | Path | None = None,
    resume: bool | str = False,
    builder: DatasetBuilder | None = None,
    plan: ModelPlan | None = None,
    dist: DistContext | None = None,
    progress: bool = False,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train ``entry`` with ``seed``; ``resume="auto"`` resumes a partial run, skips a done one.

    The model is built once, by the trainer right after seeding (``plan``, when given, is its
    validated config); ``builder`` builds each dataset once and may be shared between runs.
    """
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(config.output_dir, entry, seed)
    plan = plan or plan_entry(entry, config, host)  # the model config, before any data work
    content = _run_content(config, entry, plan)
    existing = latest_checkpoint(run_dir)
    if existing is not None:
        old = read_record(existing)
        if old.record.experiment_fingerprint != content.experiment_fingerprint:
            raise OutputError(
                f"{run_dir} holds a run of another config (fingerprint "
                f"{old.record.experiment_fingerprint} != {content.experiment_fingerprint}); "
                "choose another output folder or delete that run"
            )
        if resume == "auto" and old.record.finished:
            return _finished_run(old, host)
    builder = builder or DatasetBuilder(config.data, config.task, host=host)
    train_set = builder.training_set(config.data.train_split, config.train_modalities)
    val_sets = {m.label: builder.build(config.data.val_split, m) for m in config.val_modalities}
    trainer = Trainer(
        model_factory=lambda: build_planned(plan, host=host),
        train_set=train_set,
        val_sets=val_sets,
        settings=replace(
            TrainSettings.from_config(config, seed),
            class_names=tuple(builder.class_names) if builder.class_names else None,
        ),
        run_dir=run_dir,
        content=content,
        dist=dist,
        progress=progress,
    )
    go_on = (existing is not None) if resume == "auto" else bool(resume)
    with cpu_threads(config.threads):
        return trainer.fit(resume=go_on, stop_after_steps=stop_after_steps)


# --- evaluation -----------------------------------------------------------------------------------
def experiment_of(record: CheckpointRecord, path: Any) -> ExperimentConfig:
    """The experiment config stored in a checkpoint record."""
    if record.experiment is None:
        raise CheckpointError(f"{path}: the checkpoint records no experiment config; pass --config")
    return validate_config(record.experiment, origin=f"{path} (experiment)")


def load_model(
    checkpoint: str | Path, *, host: Any, device: torch.device | str = "cpu"
) -> tuple[nn.Module, RecordFile]:
    """The model of a checkpoint, weights loaded, in eval mode, and the checkpoint's record."""
    ckpt = load_checkpoint(checkpoint)
    name, cfg = ckpt.record.model_name, ckpt.record.model_params
    if name is None or cfg is None:
        raise CheckpointError(
            f"{ckpt.path}: no model_name / model_config; it cannot be rebuilt (a pretraining "
            "checkpoint? probe it with `atomizer probe`)"
        )
    model = build(name, cfg, host)
    load_weights(model, ckpt.model_state, origin=ckpt.path, model_name=name)
    model.to(device).eval()
    return model, RecordFile(ckpt.path, ckpt.record)


def split_dataset(builder: DatasetBuilder, split: str, modality: Modality) -> Any:
    """The dataset of ``split`` in ``modality`` (built once by ``builder``), first item checked."""
    dataset = builder.build(split, modality)
    if len(dataset) > 0:
        dataset[0]  # a modality the samples cannot provide fails here, not mid-evaluation
    return dataset


def evaluate_on(
    model: nn.Module,
    config: ExperimentConfig,
    modality: Modality,
    *,
    host: Any,
    model_name: str,
    builder: DatasetBuilder | None = None,
    split: str | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """The experiment's metrics of ``model`` on ``modality`` (test split by default).

    Raises :class:`ModalityError` when the model cannot read the modality's bands at all.
    """
    builder = builder or DatasetBuilder(config.data, config.task, host=host)
    dataset = split_dataset(builder, split or config.data.test_split, modality)
    check_readable(model, modality_bands(dataset), model_name=model_name, modality=modality.label)
    return evaluate_model(
        model,
        dataset,
        task=config.task.type,
        num_classes=config.task.num_classes,
        metrics=config.metrics,
        batch_size=config.eval_batch_size or config.batch_size,
        device=device,
        precision=config.precision,
        progress=progress,
        description=f"test {modality.label}",
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    modality: Modality,
    *,
    host: Any,
    config: ExperimentConfig | None = None,
    split: str | None = None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint and evaluate it on ``modality``; returns metrics and provenance."""
    ref = read_record(checkpoint)
    config = config or experiment_of(ref.record, ref.path)
    target = resolve_device(device or config.device)
    task = ref.record.task
    builder = DatasetBuilder(config.data, config.task, host=host,  # data errors before model work
                             expect_classes=task.class_names if task is not None else None)
    model, ref = load_model(checkpoint, host=host, device=target)
    rec = ref.record
    with cpu_threads(config.threads):
        metrics = evaluate_on(
            model,
            config,
            modality,
            host=host,
            model_name=rec.model_name or "model",
            builder=builder,
            split=split,
            device=target,
            progress=progress,
        )
    trained_on = [
        m.get("name") or Modality.model_validate(m).label
        for m in (rec.experiment or {}).get("train_modalities", [])
    ]
    return {
        "checkpoint": str(ref.path),
        "model": rec.model_label or rec.model_name,
        "seed": rec.seed,
        "modality": modality.label,
        "split": split or config.data.test_split,
        "trained_on": trained_on,
        "metrics": metrics,
    }


# --- the whole experiment -------------------------------------------------------------------------
@dataclass
class RunResults:
    """Per model, per test modality, per seed: every metric; plus timings."""

    config: ExperimentConfig
    scores: dict[str, dict[str, dict[int, dict[str, float]]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedRun:
    """One task of an experiment: train ``row`` with ``seed`` (or reuse it), test every modality."""

    row: str
    seed: int


@dataclass
class SeedResult:
    scores: dict[str, dict[str, float]]  # test modality -> metric -> value
    notes: dict[str, str]  # test modality -> why it is n/a
    seconds: float


#: Per worker process: the dataset builder of the experiment it last ran (datasets built once).
_WORKER_BUILDER: dict[str, DatasetBuilder] = {}


def _builder_for(config: ExperimentConfig, host: Any) -> DatasetBuilder:
    key = json.dumps([config.data.model_dump(mode="json"), config.task.model_dump(mode="json")],
                     sort_keys=True)
    if key not in _WORKER_BUILDER:
        _WORKER_BUILDER.clear()
        _WORKER_BUILDER[key] = DatasetBuilder(config.data, config.task, host=host)
    return _WORKER_BUILDER[key]


def train_and_test(
    run: SeedRun,
    config: ExperimentConfig,
    host: Any,
    *,
    builder: DatasetBuilder | None = None,
    plan: ModelPlan | None = None,
    progress: bool = False,
) -> SeedResult:
    """One experiment task, here or on a Dask worker (everything it needs is in its arguments;
    on a worker the datasets are built once per process)."""
    started = time.perf_counter()
    entry = config.model(run.row)
    builder = builder or _builder_for(config, host)
    device = resolve_device(config.device)
    trained = train_one(
        config, entry, run.seed, host=host, resume="auto", builder=builder,
        plan=plan or plan_entry(entry, config, host), progress=progress,
    )
    model = trained.model.to(device).eval()
    scores: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    for m in config.test_modalities:
        dataset = builder.build(config.data.test_split, m)
        try:
            check_readable(model, modality_bands(dataset), model_name=entry.name, modality=m.label)
        except ModalityError as exc:  # reported as n/a: the model sees only zeros
            notes[m.label] = str(exc)
            scores[m.label] = {k: float("nan") for k in config.metrics}
            continue
        with cpu_threads(config.threads):
            scores[m.label] = evaluate_on(
                model, config, m, host=host, model_name=entry.name, builder=builder,
                device=device, progress=progress,
            )
    return SeedResult(scores, notes, time.perf_counter() - started)


def run_experiment(
    config: ExperimentConfig,
    *,
    host: Any,
    progress: bool = False,
    log: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> RunResults:
    """Train every model with every seed (resuming / reusing finished runs), test every modality.

    Each (model, seed) is one task of :class:`~atomizer.cluster.TaskRunner`: in this process, one
    after the other (``workers`` 0), side by side on a local Dask cluster of ``workers``
    processes, or on the running cluster at ``scheduler``. Every task is seeded by its own seed
    alone, so the results do not depend on where or in which order tasks ran. ``workers``
    defaults to the config's ``workers``.
    """
    from atomizer.cluster import TaskRunner

    say = log or (lambda message: None)
    workers = config.workers if workers is None else workers
    plans = {entry.row: plan_entry(entry, config, host) for entry in config.models}
    builder = DatasetBuilder(config.data, config.task, host=host)
    for m in config.test_modalities:  # data errors surface before hours of training
        split_dataset(builder, config.data.test_split, m)
    for m in [*config.train_modalities, *config.val_modalities]:
        split = config.data.val_split if m in config.val_modalities else config.data.train_split
        split_dataset(builder, split, m)
    runs = [SeedRun(entry.row, seed) for entry in config.models for seed in config.seeds]
    done: dict[SeedRun, SeedResult] = {}
    with TaskRunner(workers, scheduler, error=ConfigError) as runner:
        if not runner.local:
            say(f"{len(runs)} runs (models x seeds) on {scheduler or f'{workers} local workers'}")
        for run, result in _tasks(runner, runs, config, host, builder, plans, progress, say):
            done[run] = result
            say(f"[{len(done)}/{len(runs)}] {run.row} (seed {run.seed}): {result.seconds:.1f} s")
    results = RunResults(config)
    for entry in config.models:
        mine = [(seed, done[SeedRun(entry.row, seed)]) for seed in config.seeds]
        results.scores[entry.row] = {
            m.label: {seed: r.scores[m.label] for seed, r in mine} for m in config.test_modalities
        }
        for _, r in mine:
            if r.notes:
                results.notes.setdefault(entry.row, {}).update(r.notes)
        results.seconds[entry.row] = round(sum(r.seconds for _, r in mine), 2)
    return results


def _tasks(runner: Any, runs: list[SeedRun], config: ExperimentConfig, host: Any,
           builder: DatasetBuilder, plans: Mapping[str, ModelPlan], progress: bool,
           say: Any) -> Iterable[tuple[SeedRun, SeedResult]]:
    if runner.local:  # this process: one builder for every run, each model planned once
        for run in runs:
            say(f"training {run.row} (seed {run.seed})")
            yield run, train_and_test(run, config, host, builder=builder, plan=plans[run.row],
                                      progress=progress)
        return
    yield from runner.run(train_and_test, runs, config, host,
                          key=lambda r: f"train-{r.row}-seed-{r.seed}")
