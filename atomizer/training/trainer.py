"""Supervised training: a :class:`~atomizer.training.loop.TrainingJob` over labelled atom sets.

:class:`Trainer` says how batches become a classification loss and what an epoch's history row
holds (training loss, learning rate, validation metrics); the loop of :mod:`atomizer.training.loop`
does seeding, resume, DDP and checkpoints, exactly as for pretraining. Sample order, DataLoader
seeds and random crops come from named streams of :mod:`atomizer.training.seed`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from atomizer.evaluation.metrics import TaskType
from atomizer.training.batches import collate_labelled, loss_sum, make_loader, set_epoch
from atomizer.training.checkpoint import CHECKPOINT_DIR, CheckpointContent
from atomizer.training.checkpoint_record import TaskRecord
from atomizer.training.config import ExperimentConfig, OptimizerConfig
from atomizer.training.distributed import DistContext
from atomizer.training.evaluate import autocast, evaluate_model, resolve_device
from atomizer.training.loop import LoopSettings, StepOutput, no_scope, run_training
from atomizer.training.schedule import WarmupCosineSchedule, build_optimizer
from atomizer.training.seed import Stream, epoch_permutation, stream_seed


@dataclass(frozen=True)
class TrainSettings:
    """Everything the loop needs besides the model and the data."""

    task: TaskType
    num_classes: int
    epochs: int
    batch_size: int
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr: float = 1e-3
    seed: int = 0
    metrics: tuple[str, ...] = ("overall_accuracy",)
    eval_batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    deterministic: bool = True
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 2
    num_workers: int = 0
    class_names: tuple[str, ...] | None = None  # recorded in checkpoints, checked on evaluation

    @classmethod
    def from_config(cls, config: ExperimentConfig, seed: int) -> TrainSettings:
        return cls(
            task=config.task.type,
            num_classes=config.task.num_classes,
            epochs=config.epochs,
            batch_size=config.batch_size,
            optimizer=config.optimizer,
            lr=config.lr,
            seed=seed,
            metrics=tuple(config.metrics),
            eval_batch_size=config.eval_batch_size,
            device=config.device,
            precision=config.precision,
            deterministic=config.deterministic,
            checkpoint_every_steps=config.checkpoint_every_steps,
            keep_checkpoints=config.keep_checkpoints,
            num_workers=config.data.num_workers,
        )


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    run_dir: Path
    checkpoint: Path | None
    epochs_done: int
    global_step: int
    history: list[dict[str, Any]]
    finished: bool
    model: nn.Module


class Trainer:
    """Trains one model on one dataset with one seed, writing into ``run_dir``.

    ``model_factory`` is called right after seeding, so initial weights are a function of the seed.
    ``content`` says what was trained (experiment, model name and config); every checkpoint
    records it.
    """

    def __init__(
        self,
        *,
        model_factory: Callable[[], nn.Module],
        train_set: Dataset,
        val_sets: Mapping[str, Dataset],
        settings: TrainSettings,
        run_dir: str | Path,
        content: CheckpointContent | None = None,
        dist: DistContext | None = None,
        progress: bool = False,
        tensorboard: bool = True,
    ) -> None:
        self.model_factory = model_factory
        self.train_set = train_set
        self.val_sets = dict(val_sets)
        self.s = settings
        self.run_dir = Path(run_dir)
        self._content = (content or CheckpointContent()).model_copy(
            update={"task": TaskRecord(
                type=settings.task, num_classes=settings.num_classes,
                class_names=list(settings.class_names) if settings.class_names else None,
            )}
        )
        self.dist = dist or DistContext()
        self.progress = progress
        self.tensorboard = tensorboard
        self.device = resolve_device(settings.device, self.dist)
        self.collate = functools.partial(
            collate_labelled, task=settings.task, num_classes=settings.num_classes
        )

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR

    def fit(self, *, resume: bool = False, stop_after_steps: int | None = None) -> TrainResult:
        """Train (or continue) to ``settings.epochs``; ``stop_after_steps`` stops early (tests)."""
        s = self.s
        loop = LoopSettings(
            epochs=s.epochs,
            seed=s.seed,
            deterministic=s.deterministic,
            grad_clip_norm=s.optimizer.grad_clip_norm,
            checkpoint_every_steps=s.checkpoint_every_steps,
            keep_checkpoints=s.keep_checkpoints,
            tensorboard=self.tensorboard,
            progress=self.progress,
        )
        out = run_training(
            self, loop, run_dir=self.run_dir, dist=self.dist, device=self.device, resume=resume,
            stop_after_steps=stop_after_steps,
        )
        return TrainResult(self.run_dir, out.checkpoint, out.epochs_done, out.global_step,
                           out.history, out.finished, out.model)

    # --- the job the loop runs -------------------------------------------------------------------
    def content(self) -> CheckpointContent:
        return self._content

    def build_model(self) -> nn.Module:
        return self.model_factory()

    def build_optimizer(self, model: nn.Module, steps_per_epoch: int):
        s = self.s
        optimizer = build_optimizer(model, s.optimizer, s.lr)
        schedule = WarmupCosineSchedule(
            optimizer,
            peak_lr=s.lr,
            warmup_steps=round(s.optimizer.warmup_epochs * steps_per_epoch),
            total_steps=s.epochs * steps_per_epoch,
            min_lr_ratio=s.optimizer.min_lr_ratio,
        )
        return optimizer, schedule

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch`` (sample indices), a function of (seed, epoch)."""
        order = epoch_permutation(len(self.train_set), self.s.seed, epoch).tolist()
        bs = self.s.batch_size
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        if batches and len(batches[-1]) < self.dist.world_size:
            batches.pop()  # every rank needs at least one sample of every batch
        return batches

    def steps_per_epoch(self) -> int:
        return len(self.global_batches(0))

    def inputs(self, epoch: int, batches: Sequence[Sequence[int]], first: int):
        set_epoch(self.train_set, epoch)
        seed = stream_seed(self.s.seed, Stream.DATA_LOADER, epoch)
        return make_loader(
            self.train_set, [list(b) for b in batches], self.collate, self.s.num_workers, seed
        )

    def step(self, net: nn.Module, item: Any, n_global: int, epoch: int, index: int) -> StepOutput:
        """The loss of this rank's share of a global batch of ``n_global`` samples."""
        batch, target = item
        batch, target = batch.to(self.device), target.to(self.device)
        with autocast(self.device, self.s.precision):
            logits = net(batch)
        total = loss_sum(logits, target, self.s.task)
        value, n = float(total.detach()), len(target)
        # DDP averages gradients over ranks: scale so the result is the mean over the global batch.
        return StepOutput(
            total * (self.dist.world_size / n_global),
            {"loss_sum": value, "samples": float(n)},
            {"train/loss_step": value / max(n, 1)},
        )

    def step_scope(self):
        return no_scope()

    def epoch_row(self, net, epoch, step, sums, lr, seconds) -> dict[str, Any]:
        parts = self.dist.gather_objects((sums.get("loss_sum", 0.0), sums.get("samples", 0.0)))
        loss_total, count = sum(a for a, _ in parts), sum(b for _, b in parts)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "global_step": step,
            "train_loss": loss_total / count if count else math.nan,
            "lr": lr,
            "epoch_seconds": round(seconds, 3),
        }
        means: dict[str, list[float]] = {}
        for name, dataset in self.val_sets.items():
            values = evaluate_model(
                net,
                dataset,
                task=self.s.task,
                num_classes=self.s.num_classes,
                metrics=self.s.metrics,
                batch_size=self.s.eval_batch_size or self.s.batch_size,
                device=self.device,
                precision=self.s.precision,
                dist=self.dist,
                progress=False,
                description=f"val {name}",
            )
            for metric, value in values.items():
                row[f"val/{name}/{metric}"] = value
                means.setdefault(metric, []).append(value)
        for metric, values in means.items():
            row[f"val/mean/{metric}"] = float(np.nanmean(values)) if values else math.nan
        return row
