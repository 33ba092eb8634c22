"""The one training loop: seeding, restore, epochs, DDP, checkpoints; for every kind of training.

Supervised training (:mod:`atomizer.training.trainer`) and pretraining
(:mod:`atomizer.pretrain.pretrainer`) are :class:`TrainingJob` s: they say how to build the model
and the optimiser, which samples make each global batch, how one batch becomes a loss and what an
epoch's history row holds. :func:`run_training` does the rest, the same way for both.

Reproducibility contract (on CPU, same machine and thread count):

- the run's global generators are seeded by :func:`~atomizer.training.seed.seed_everything` right
  before the job builds its model, and the caller's generators are given back afterwards
  (:func:`~atomizer.training.seed.isolated_rng`);
- every other random draw (sample order, crops, augmentation) comes from a named stream of
  :mod:`atomizer.training.seed`, a pure function of (seed, epoch, ...);
- a checkpoint (when the run has a folder) holds weights, optimiser state, schedule step, every
  RNG state (per rank), the epoch, the batches done within it and the running sums; resuming skips
  the batches already done and restores all of it, so a resumed run ends with the same weights and
  history as an uninterrupted one.

Under torchrun every rank takes samples ``r, r + W, ...`` of each global batch; the job scales its
loss so that DistributedDataParallel's gradient average is the single-process gradient.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from atomizer.errors import CheckpointError, DatasetError, OutputError
from atomizer.io import ensure_dir
from atomizer.training.checkpoint import (
    CHECKPOINT_DIR,
    Checkpoint,
    CheckpointContent,
    checkpoint_stem,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    prune_checkpoints,
    save_checkpoint,
)
from atomizer.training.checkpoint_record import RngState, ScheduleState
from atomizer.training.distributed import DistContext, unwrap
from atomizer.training.evaluate import progress_bar
from atomizer.training.logging import RunLogger
from atomizer.training.schedule import WarmupCosineSchedule
from atomizer.training.seed import (
    capture_rng_state,
    isolated_rng,
    restore_rng_state,
    seed_everything,
)

#: Record fields that must agree between a checkpoint and the run resuming it.
_RESUME_KEYS = ("kind", "experiment_fingerprint", "model_name", "method", "seed")


@dataclass(frozen=True)
class LoopSettings:
    """What the loop itself needs to know (the job knows the rest)."""

    epochs: int
    seed: int = 0
    deterministic: bool = True
    grad_clip_norm: float | None = None
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 2
    find_unused_parameters: bool = False
    tensorboard: bool = True
    progress: bool = False


@dataclass
class StepOutput:
    """One batch's result: the loss to back-propagate, sums to accumulate over the epoch (summed
    into the history row and checkpointed mid-epoch) and scalars to log for this step."""

    loss: torch.Tensor
    sums: dict[str, float]
    scalars: dict[str, float] = field(default_factory=dict)


class TrainingJob(Protocol):
    """What one kind of training supplies to :func:`run_training`."""

    def build_model(self) -> nn.Module:
        """A fresh model (called right after seeding, so its weights are a function of it)."""

    def build_optimizer(
        self, model: nn.Module, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, WarmupCosineSchedule]: ...

    def global_batches(self, epoch: int) -> list[list[int]]:
        """The sample indices of every global batch of ``epoch``."""

    def inputs(self, epoch: int, batches: Sequence[Sequence[int]], first: int) -> Iterable[Any]:
        """This rank's share of ``batches`` (the epoch's batches from number ``first`` on), ready
        for :meth:`step`."""

    def step(self, net: nn.Module, item: Any, n_global: int, epoch: int, index: int) -> StepOutput:
        """The forward pass and loss of one batch (of ``n_global`` samples over all ranks)."""

    def epoch_row(
        self, net: nn.Module, epoch: int, step: int, sums: Mapping[str, float], lr: float,
        seconds: float,
    ) -> dict[str, Any]:
        """The history row of epoch ``epoch`` (0-based) ending at global step ``step``."""

    def content(self) -> CheckpointContent:
        """What a checkpoint records about the job (experiment and model, or method and config);
        asked after :meth:`build_model`."""

    def step_scope(self) -> contextlib.AbstractContextManager[Any]:
        """A context around each step's forward, backward and update (e.g. memory tracking)."""


@dataclass
class LoopResult:
    """What :func:`run_training` returns."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: list[dict[str, Any]]
    epochs_done: int
    global_step: int
    finished: bool
    checkpoint: Path | None = None
    step_wall_s: list[float] = field(default_factory=list)
    step_cpu_s: list[float] = field(default_factory=list)


@dataclass
class _State:
    epoch: int = 0
    skip: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=dict)


def _add(acc: dict[str, float], sums: Mapping[str, float]) -> None:
    for key, value in sums.items():
        acc[key] = acc.get(key, 0.0) + value


class _Run:
    """One call of :func:`run_training` (kept as an object so the loop reads in small steps)."""

    def __init__(self, job: TrainingJob, s: LoopSettings, run_dir: Path | None,
                 dist: DistContext, device: torch.device) -> None:
        self.job, self.s, self.run_dir, self.dist, self.device = job, s, run_dir, dist, device
        self.last_path: Path | None = None

    # --- checkpoints ------------------------------------------------------------------------------
    def save(self, net, optimizer, schedule, state: _State, step_in_epoch: int, done: bool):
        if self.run_dir is None:  # a run without a folder keeps no checkpoints (on every rank)
            return
        rng = self.dist.gather_objects(capture_rng_state())
        if not self.dist.is_main:
            return
        rng_tensors = {
            f"r{r}.{k}": v for r, (tensors, _) in enumerate(rng) for k, v in tensors.items()
        }
        content = self.job.content().model_copy(
            update={
                "seed": self.s.seed,
                "epoch": state.epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": state.step,
                "scheduler": ScheduleState(**schedule.state_dict()),
                "rng": [RngState.model_validate(m) for _, m in rng],
                "running": dict(state.running),
                "history": list(state.history),
                "finished": done,
                "world_size": self.dist.world_size,
            }
        )
        self.last_path = save_checkpoint(
            self.run_dir / CHECKPOINT_DIR / checkpoint_stem(state.epoch, state.step),
            content,
            model_state=unwrap(net).state_dict(),
            optimizer_state=optimizer.state_dict(),
            rng_tensors=rng_tensors,
        )
        prune_checkpoints(self.run_dir, self.s.keep_checkpoints)

    def restore(self, path: Path, model, optimizer, schedule) -> _State:
        ckpt: Checkpoint = load_checkpoint(path, map_location=self.device)
        rec, content = ckpt.record, self.job.content()
        for key in _RESUME_KEYS:
            theirs = getattr(rec, key)
            mine = self.s.seed if key == "seed" else getattr(content, key)
            if theirs is not None and mine is not None and theirs != mine:
                raise CheckpointError(
                    f"{path}: written with {key} {theirs!r}, but this run has {mine!r}; resume "
                    "with the same config, model and seed, or train into another --output folder"
                )
        if rec.scheduler is None:
            raise CheckpointError(f"{path}: records no schedule state; it cannot be resumed")
        load_weights(model, ckpt.model_state, origin=path, model_name=rec.model_name or "model")
        optim_state = ckpt.optimizer_state_dict()
        if optim_state is not None:
            try:
                optimizer.load_state_dict(optim_state)
            except (ValueError, KeyError) as exc:
                raise CheckpointError(
                    f"{path}: the optimiser state does not fit this model ({exc}); resume with "
                    "the same model config"
                ) from None
        schedule.load_state_dict(rec.scheduler.model_dump())
        mine = ckpt.rank_rng_tensors(self.dist.rank)
        if mine and self.dist.rank < len(rec.rng):
            restore_rng_state(mine, rec.rng[self.dist.rank].model_dump())
        return _State(rec.epoch, rec.step_in_epoch, rec.global_step, list(rec.history),
                      dict(rec.running))

    # --- the loop ---------------------------------------------------------------------------------
    def fit(self, resume: bool, stop_after_steps: int | None) -> LoopResult:
        s, dist, job = self.s, self.dist, self.job
        existing = latest_checkpoint(self.run_dir) if self.run_dir is not None else None
        if existing is not None and not resume:
            raise OutputError(
                f"{self.run_dir} already holds checkpoints; pass --resume to continue that run, or "
                "--output to train into another folder"
            )
        if resume and existing is None:
            raise CheckpointError(f"nothing to resume: {self.run_dir} holds no checkpoint")
        seed_everything(s.seed, deterministic=s.deterministic, device_type=self.device.type)
        model = job.build_model().to(self.device)
        steps_per_epoch = len(job.global_batches(0))
        if steps_per_epoch == 0:
            raise DatasetError("the training set is empty; check the split and the modalities")
        optimizer, schedule = job.build_optimizer(model, steps_per_epoch)
        state = _State()
        if existing is not None:
            state = self.restore(existing, model, optimizer, schedule)
            self.last_path = existing
        logger = None
        if self.run_dir is not None:
            ensure_dir(self.run_dir / CHECKPOINT_DIR)
            if dist.is_main:
                logger = RunLogger(self.run_dir, resume_step=state.step if resume else None,
                                   tensorboard=s.tensorboard)
        net = dist.wrap(model, self.device, find_unused_parameters=s.find_unused_parameters)
        result = LoopResult(model, optimizer, state.history, state.epoch, state.step, False)
        try:
            with progress_bar(s.progress and dist.is_main) as bar:
                for epoch in range(state.epoch, s.epochs):
                    state.epoch = epoch
                    if not self._epoch(net, optimizer, schedule, state, result, logger, bar,
                                       stop_after_steps):
                        return self._result(result, state, net, finished=False)
        finally:
            if logger is not None:
                logger.close()
        return self._result(result, state, net, finished=True)

    def _result(self, result: LoopResult, state: _State, net, *, finished: bool) -> LoopResult:
        result.model = unwrap(net)
        result.history = state.history
        result.epochs_done = self.s.epochs if finished else state.epoch
        result.global_step, result.finished = state.step, finished
        result.checkpoint = self.last_path
        return result

    def _epoch(self, net, optimizer, schedule, state: _State, result: LoopResult, logger, bar,
               stop_after_steps: int | None) -> bool:
        """Train epoch ``state.epoch`` from batch ``state.skip`` on; ``False``: stopped early."""
        s, dist, epoch = self.s, self.dist, state.epoch
        net.train()
        batches = self.job.global_batches(epoch)
        mine = [b[dist.rank :: dist.world_size] for b in batches]
        task = bar.add_task(f"epoch {epoch + 1}/{s.epochs}", total=len(batches),
                            completed=state.skip)
        started = time.perf_counter()
        items = iter(self.job.inputs(epoch, mine[state.skip :], state.skip))
        for i in range(state.skip, len(batches)):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            item = next(items)
            with self.job.step_scope():
                out = self.job.step(net, item, len(batches[i]), epoch, i)
                self._update(net, optimizer, schedule, out.loss)
            result.step_wall_s.append(time.perf_counter() - wall0)
            result.step_cpu_s.append(time.process_time() - cpu0)
            _add(state.running, out.sums)
            state.step += 1
            bar.advance(task)
            if logger is not None:
                for name, value in out.scalars.items():
                    logger.scalar(name, value, state.step)
                logger.scalar("train/lr", schedule.lr_at(state.step - 1), state.step)
            every = s.checkpoint_every_steps
            if every and state.step % every == 0 and i + 1 < len(batches):
                self.save(net, optimizer, schedule, state, i + 1, False)
            if stop_after_steps is not None and state.step >= stop_after_steps:
                return False
        bar.remove_task(task)
        state.skip = 0
        lr = schedule.lr_at(max(state.step - 1, 0))
        row = self.job.epoch_row(net, epoch, state.step, state.running, lr,
                                 time.perf_counter() - started)
        state.history.append(row)
        if logger is not None:
            logger.log_epoch(row)
        state.running = {}
        state.epoch = epoch + 1
        self.save(net, optimizer, schedule, state, 0, state.epoch == s.epochs)
        dist.barrier()
        return True

    def _update(self, net, optimizer, schedule, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise DatasetError(
                f"the training loss became {float(loss)} at step {schedule.step_count + 1}; "
                "lower optimizer.base_lr or check the data for extreme values"
            )
        optimizer_step(net, optimizer, loss, grad_clip_norm=self.s.grad_clip_norm)
        schedule.step()


def optimizer_step(net: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, *,
                   grad_clip_norm: float | None = None) -> None:
    """One update: gradients of ``loss`` (averaged over ranks by DDP), clipped, applied."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip_norm is not None:
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip_norm)
    optimizer.step()


def run_training(
    job: TrainingJob,
    settings: LoopSettings,
    *,
    run_dir: str | Path | None = None,
    dist: DistContext | None = None,
    device: torch.device | str = "cpu",
    resume: bool = False,
    stop_after_steps: int | None = None,
) -> LoopResult:
    """Train ``job`` to ``settings.epochs`` (see the module docstring).

    With ``run_dir``, checkpoints (each epoch, and every ``checkpoint_every_steps``) and logs go
    there, and ``resume`` continues the latest checkpoint; without it, nothing is written.
    ``stop_after_steps`` stops early (tests). The caller's random generators are left untouched.
    """
    run = _Run(job, settings, Path(run_dir) if run_dir is not None else None,
               dist or DistContext(), torch.device(device))
    with isolated_rng():
        return run.fit(resume, stop_after_steps)


@contextlib.contextmanager
def no_scope() -> Iterator[None]:
    """The default :meth:`TrainingJob.step_scope`: nothing around a step."""
    yield
