"""The training loop: seeded, resumable to the bit, DDP-aware, logged, checkpointed each epoch.

Reproducibility contract (on CPU, same machine and thread count):

- the model is built by a factory right after :func:`~atomizer.training.seed.seed_everything`;
- the sample order of epoch ``e`` is :func:`~atomizer.training.seed.epoch_permutation` of
  (seed, e), so it does not depend on the global random streams;
- a checkpoint holds weights, optimiser state, schedule step, every RNG state (per rank), the
  epoch, the batches done within it and the running training loss; resuming skips the batches
  already done and restores all of it, so the resumed run ends with the same weights and metrics
  as an uninterrupted one (with ``num_workers = 0``, the default).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from atomizer.atoms.batch import AtomBatch
from atomizer.errors import CheckpointError, DatasetError, OutputError
from atomizer.evaluation.metrics import TaskType
from atomizer.io import ensure_dir
from atomizer.training.batches import collate_labelled, loss_sum, make_loader, set_epoch
from atomizer.training.checkpoint import (
    CHECKPOINT_DIR,
    checkpoint_stem,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from atomizer.training.config import ExperimentConfig, OptimizerConfig
from atomizer.training.distributed import DistContext, unwrap
from atomizer.training.evaluate import (
    autocast,
    evaluate_model,
    progress_bar,
    resolve_device,
)
from atomizer.training.logging import RunLogger
from atomizer.training.schedule import WarmupCosineSchedule, build_optimizer
from atomizer.training.seed import (
    capture_rng_state,
    epoch_permutation,
    restore_rng_state,
    seed_everything,
)

_LOADER_SEED_STREAM = 104_729  # seeds the DataLoader's own generator, per epoch


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
    ``meta`` (JSON) is stored in every checkpoint: the experiment config, model name and config.
    """

    def __init__(
        self,
        *,
        model_factory: Callable[[], nn.Module],
        train_set: Dataset,
        val_sets: Mapping[str, Dataset],
        settings: TrainSettings,
        run_dir: str | Path,
        meta: Mapping[str, Any] | None = None,
        dist: DistContext | None = None,
        progress: bool = False,
        tensorboard: bool = True,
    ) -> None:
        self.model_factory = model_factory
        self.train_set = train_set
        self.val_sets = dict(val_sets)
        self.s = settings
        self.run_dir = Path(run_dir)
        self.meta = dict(meta or {})
        self.dist = dist or DistContext()
        self.progress = progress
        self.tensorboard = tensorboard
        self.device = resolve_device(settings.device, self.dist)
        self.collate = functools.partial(
            collate_labelled, task=settings.task, num_classes=settings.num_classes
        )

    # --- data order -------------------------------------------------------------------------------
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

    # --- checkpoints ------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR

    def _save(
        self, model, optimizer, schedule, epoch, step_in_epoch, step, loss_acc, history, done
    ):
        rng = self.dist.gather_objects(capture_rng_state())
        if not self.dist.is_main:
            return None
        rng_tensors = {
            f"r{r}.{k}": v for r, (tensors, _) in enumerate(rng) for k, v in tensors.items()
        }
        meta = {
            **self.meta,
            "seed": self.s.seed,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": step,
            "scheduler": schedule.state_dict(),
            "rng": [m for _, m in rng],
            "train_loss_accum": list(loss_acc),
            "history": history,
            "finished": done,
            "world_size": self.dist.world_size,
            "task": {"type": self.s.task, "num_classes": self.s.num_classes},
        }
        path = save_checkpoint(
            self.checkpoint_dir / checkpoint_stem(epoch, step),
            model_state=unwrap(model).state_dict(),
            optimizer_state=optimizer.state_dict(),
            rng_tensors=rng_tensors,
            meta=meta,
        )
        prune_checkpoints(self.run_dir, self.s.keep_checkpoints)
        return path

    def _check_resumable(self, meta: Mapping[str, Any], path: Path) -> None:
        for key in ("experiment_fingerprint", "model_name", "seed"):
            mine = self.s.seed if key == "seed" else self.meta.get(key)
            if key in meta and mine is not None and meta[key] != mine:
                raise CheckpointError(
                    f"{path}: written with {key} {meta[key]!r}, but this run has {mine!r}; resume "
                    "with the same config, model and seed, or train into another --output folder"
                )

    # --- the loop ---------------------------------------------------------------------------------
    def fit(self, *, resume: bool = False, stop_after_steps: int | None = None) -> TrainResult:
        """Train (or continue) to ``settings.epochs``; ``stop_after_steps`` stops early (tests)."""
        s, dist = self.s, self.dist
        existing = latest_checkpoint(self.run_dir)
        if existing is not None and not resume:
            raise OutputError(
                f"{self.run_dir} already holds checkpoints; pass --resume to continue that run, or "
                "--output to train into another folder"
            )
        seed_everything(s.seed, deterministic=s.deterministic, device_type=self.device.type)
        model = self.model_factory().to(self.device)
        optimizer = build_optimizer(model, s.optimizer, s.lr)
        steps_per_epoch = self.steps_per_epoch()
        if steps_per_epoch == 0:
            raise DatasetError("the training set is empty; check the split and the modalities")
        schedule = WarmupCosineSchedule(
            optimizer,
            peak_lr=s.lr,
            warmup_steps=round(s.optimizer.warmup_epochs * steps_per_epoch),
            total_steps=s.epochs * steps_per_epoch,
            min_lr_ratio=s.optimizer.min_lr_ratio,
        )
        start_epoch, skip, step, history = 0, 0, 0, []
        loss_acc = [0.0, 0]
        if resume and existing is not None:
            ckpt = load_checkpoint(existing, map_location=self.device)
            self._check_resumable(ckpt.meta, existing)
            model.load_state_dict(ckpt.model_state)
            optim_state = ckpt.optimizer_state_dict()
            if optim_state is not None:
                optimizer.load_state_dict(optim_state)
            schedule.load_state_dict(ckpt.meta["scheduler"])
            start_epoch, skip = ckpt.epoch, int(ckpt.meta["step_in_epoch"])
            step, history = ckpt.global_step, list(ckpt.meta.get("history", []))
            loss_acc = list(ckpt.meta.get("train_loss_accum", [0.0, 0]))
            prefix = f"r{dist.rank}."
            mine = {
                k[len(prefix) :]: v for k, v in ckpt.rng_tensors.items() if k.startswith(prefix)
            }
            metas = ckpt.meta.get("rng") or []
            if mine and dist.rank < len(metas):
                restore_rng_state(mine, metas[dist.rank])
        elif resume and existing is None:
            raise CheckpointError(f"nothing to resume: {self.run_dir} holds no checkpoint")
        ensure_dir(self.run_dir)
        ensure_dir(self.checkpoint_dir)
        logger = (
            RunLogger(
                self.run_dir, resume_step=step if resume else None, tensorboard=self.tensorboard
            )
            if dist.is_main
            else None
        )
        net = dist.wrap(model, self.device)
        last_path = existing if resume else None
        try:
            with progress_bar(self.progress and dist.is_main) as bar:
                for epoch in range(start_epoch, s.epochs):
                    net.train()
                    set_epoch(self.train_set, epoch)
                    batches = self.global_batches(epoch)
                    my_batches = [b[dist.rank :: dist.world_size] for b in batches]
                    sizes = [len(b) for b in batches]
                    job = bar.add_task(
                        f"epoch {epoch + 1}/{s.epochs}", total=len(batches), completed=skip
                    )
                    loader = make_loader(
                        self.train_set,
                        my_batches[skip:],
                        self.collate,
                        s.num_workers,
                        s.seed * 1_000_003 + epoch + _LOADER_SEED_STREAM,
                    )
                    started = time.perf_counter()
                    for i, (batch, target) in enumerate(loader, start=skip):
                        loss = self._step(net, optimizer, schedule, batch, target, sizes[i])
                        loss_acc[0] += loss
                        loss_acc[1] += len(target)
                        step += 1
                        bar.advance(job)
                        if logger is not None:
                            logger.scalar("train/loss_step", loss / max(len(target), 1), step)
                            logger.scalar("train/lr", schedule.lr_at(step - 1), step)
                        every = s.checkpoint_every_steps
                        if every and step % every == 0 and i + 1 < len(batches):
                            last_path = (
                                self._save(
                                    net,
                                    optimizer,
                                    schedule,
                                    epoch,
                                    i + 1,
                                    step,
                                    loss_acc,
                                    history,
                                    False,
                                )
                                or last_path
                            )
                        if stop_after_steps is not None and step >= stop_after_steps:
                            return TrainResult(
                                self.run_dir, last_path, epoch, step, history, False, unwrap(net)
                            )
                    bar.remove_task(job)
                    skip = 0
                    row = self._epoch_row(net, epoch, step, loss_acc, schedule, started, bar)
                    history.append(row)
                    if logger is not None:
                        logger.log_epoch(row)
                    loss_acc = [0.0, 0]
                    done = epoch + 1 == s.epochs
                    last_path = (
                        self._save(
                            net, optimizer, schedule, epoch + 1, 0, step, loss_acc, history, done
                        )
                        or last_path
                    )
                    dist.barrier()
        finally:
            if logger is not None:
                logger.close()
        return TrainResult(self.run_dir, last_path, s.epochs, step, history, True, unwrap(net))

    def _step(
        self, net, optimizer, schedule, batch: AtomBatch, target: torch.Tensor, n_global: int
    ) -> float:
        """One optimiser step on this rank's share of a global batch of ``n_global`` samples."""
        batch, target = batch.to(self.device), target.to(self.device)
        with autocast(self.device, self.s.precision):
            logits = net(batch)
        total = loss_sum(logits, target, self.s.task)
        if not torch.isfinite(total):
            raise DatasetError(
                f"the training loss became {float(total)} at step {schedule.step_count + 1}; "
                "lower optimizer.base_lr or check the data for extreme values"
            )
        # DDP averages gradients over ranks: scale so the result is the mean over the global batch.
        (total * (self.dist.world_size / n_global)).backward()
        if self.s.optimizer.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(net.parameters(), self.s.optimizer.grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        return float(total.detach())

    def _epoch_row(self, net, epoch, step, loss_acc, schedule, started, bar) -> dict[str, Any]:
        sums = self.dist.gather_objects(tuple(loss_acc))
        loss_total, count = sum(a for a, _ in sums), sum(b for _, b in sums)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "global_step": step,
            "train_loss": loss_total / count if count else math.nan,
            "lr": schedule.lr_at(max(step - 1, 0)),
            "epoch_seconds": round(time.perf_counter() - started, 3),
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
