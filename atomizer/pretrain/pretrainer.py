"""SatMIP / SatMIPS / SimCLR pretraining of an image encoder on chips with metadata.

:class:`SatMIPModel` holds the image encoder (any registered model with ``encode(AtomBatch) -> (S,
D)``: the Atomizer, or the ResNet / ViT baselines), the projection heads, the metadata encoder and
the learnable temperature that the objective needs. :func:`pretrain` trains it with AdamW (betas
0.9 / 0.98, eps 1e-8), ``lr = base_lr * batch_size / 256``, linear warmup then cosine decay (the
supervised trainer's :mod:`atomizer.training.schedule`) in the one training loop
(:mod:`atomizer.training.loop`), and measures training time and memory
(:mod:`atomizer.pretrain.memory`).

Under ``torch.distributed`` (a process group already initialised by the caller) the loop wraps the
model in DistributedDataParallel, every rank takes its share of each global batch and the losses
gather embeddings across ranks (:mod:`atomizer.pretrain.losses`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atomizer.atoms.batch import AtomBatch, collate_atoms
from atomizer.errors import ConfigError, PluginError
from atomizer.pretrain.augment import Augmenter
from atomizer.pretrain.chips import Chip
from atomizer.pretrain.config import ComponentConfig, PretrainConfig
from atomizer.pretrain.losses import (
    INIT_TEMPERATURE,
    LearnableTemperature,
    LossParts,
    PretrainObjective,
    parse_method_label,
)
from atomizer.pretrain.memory import MemoryReport, SavedTensorTracker, state_bytes
from atomizer.pretrain.metadata import MetadataRecord
from atomizer.training.checkpoint import CheckpointContent
from atomizer.training.checkpoint_record import PRETRAINING_KIND, ImageEncoderRecord
from atomizer.training.distributed import DistContext
from atomizer.training.evaluate import cpu_threads
from atomizer.training.loop import LoopSettings, StepOutput, optimizer_step, run_training
from atomizer.training.schedule import WarmupCosineSchedule, parameter_groups
from atomizer.training.seed import Stream, epoch_permutation, stream_rng


class ProjectionHead(nn.Sequential):
    """SimCLR / CLIP-style two-layer MLP projection ``d_in -> hidden -> d_out``."""

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


def build_image_encoder(cfg: ComponentConfig, host: Any) -> nn.Module:
    """The registered model ``cfg.name``; its classification head (if any) is left unused."""
    from atomizer.models.registry import build_model

    factory = host.models.get(cfg.name)
    params = dict(cfg.params)
    fields = getattr(getattr(factory, "config_cls", None), "model_fields", {})
    if "num_classes" in fields and "num_classes" not in params:
        params["num_classes"] = 1
    model = build_model(cfg.name, params, host=host)
    if not callable(getattr(model, "encode", None)):
        raise PluginError(
            f"model {cfg.name!r} has no encode(batch) method; it cannot be pretrained"
        )
    return model


def build_metadata_encoder(cfg: ComponentConfig, host: Any) -> nn.Module:
    factory = host.metadata_encoders.get(cfg.name)
    return factory(**cfg.params)


@torch.no_grad()
def infer_feature_dim(encoder: nn.Module, batch: AtomBatch) -> int:
    """Width of ``encoder.encode``'s output, from one forward pass in eval mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        return int(encoder.encode(batch).shape[-1])
    finally:
        encoder.train(was_training)


class SatMIPModel(nn.Module):
    """Image encoder + heads of one objective (SimCLR head, SatMIP image/metadata heads)."""

    def __init__(
        self,
        image_encoder: nn.Module,
        image_dim: int,
        objective: PretrainObjective,
        *,
        metadata_encoder: nn.Module | None = None,
        embed_dim: int = 64,
        hidden_dim: int = 128,
        init_temperature: float = INIT_TEMPERATURE,
    ) -> None:
        super().__init__()
        self.objective = objective
        self.image_encoder = image_encoder
        self.image_dim = image_dim
        self.simclr_head = (
            ProjectionHead(image_dim, hidden_dim, embed_dim) if objective.uses_simclr else None
        )
        self.metadata_encoder = self.image_head = self.metadata_head = self.temperature = None
        if objective.uses_metadata:
            if metadata_encoder is None:
                raise ConfigError(f"{objective.label} needs a metadata encoder")
            self.metadata_encoder = metadata_encoder
            self.image_head = ProjectionHead(image_dim, hidden_dim, embed_dim)
            self.metadata_head = nn.Linear(int(metadata_encoder.out_dim), embed_dim)
            self.temperature = LearnableTemperature(init_temperature)

    def forward(
        self, views: Sequence[AtomBatch], records: Sequence[MetadataRecord]
    ) -> dict[str, Any]:
        """Projected embeddings for the objective: keys ``simclr``, ``satmip``, ``logit_scale``."""
        if len(views) != self.objective.n_views:
            raise ValueError(
                f"{self.objective.label} takes {self.objective.n_views} views, got {len(views)}"
            )
        feats = [self.image_encoder.encode(v) for v in views]
        out: dict[str, Any] = {}
        if self.simclr_head is not None:
            out["simclr"] = (self.simclr_head(feats[0]), self.simclr_head(feats[1]))
        if self.metadata_encoder is not None:
            img = self.image_head(feats[self.objective.satmip_view])
            meta = self.metadata_head(self.metadata_encoder(records))
            out["satmip"] = (img, meta)
            out["logit_scale"] = self.temperature()
        return out


def build_satmip_model(
    config: PretrainConfig,
    objective: PretrainObjective,
    host: Any,
    *,
    example: AtomBatch | None = None,
    image_dim: int | None = None,
) -> SatMIPModel:
    """A fresh model; ``image_dim`` (or a dry run on ``example``) gives the encoder's width."""
    encoder = build_image_encoder(config.image_encoder, host)
    if image_dim is None:
        if example is None:
            raise ValueError("give image_dim or an example batch")
        image_dim = infer_feature_dim(encoder, example)
    meta = (
        build_metadata_encoder(config.metadata_encoder, host) if objective.uses_metadata else None
    )
    return SatMIPModel(
        encoder,
        image_dim,
        objective,
        metadata_encoder=meta,
        embed_dim=config.embed_dim,
        hidden_dim=config.projection_hidden,
        init_temperature=config.init_temperature,
    )


#: Parameters spared from weight decay whatever their shape (CLIP: the temperature).
NO_DECAY_PREFIXES = ("temperature.",)


def make_views(
    chips: Sequence[Chip],
    objective: PretrainObjective,
    augmenter: Augmenter,
    rng: np.random.Generator,
) -> tuple[list[AtomBatch], list[MetadataRecord]]:
    """``n_views`` augmented batches of ``chips``, and the metadata of the SatMIP view.

    The SatMIP view's records have their GSD scaled by the view's GSD-jitter factor, so the
    metadata describes the image the encoder actually sees.
    """
    views, factors = [], []
    for _ in range(objective.n_views):
        out = [augmenter(c.atoms, rng) for c in chips]
        views.append(collate_atoms([a for a, _ in out]))
        factors.append([f for _, f in out])
    jitter = factors[objective.satmip_view]
    records = [
        c.metadata.with_gsd(c.metadata.gsd_m * f) if c.metadata.gsd_m is not None else c.metadata
        for c, f in zip(chips, jitter, strict=True)
    ]
    return views, records


def train_step(
    model: nn.Module,
    objective: PretrainObjective,
    views: Sequence[AtomBatch],
    records: Sequence[MetadataRecord],
    optimizer: torch.optim.Optimizer,
    *,
    grad_clip_norm: float | None = None,
) -> LossParts:
    """One optimisation step (``model`` may be DDP-wrapped). Returns the loss terms."""
    parts = objective(**model(views, records))
    optimizer_step(model, optimizer, parts.total, grad_clip_norm=grad_clip_norm)
    return parts


@dataclass
class PretrainResult:
    """A trained model and what its training measured."""

    model: SatMIPModel
    objective: PretrainObjective
    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0
    steps: int = 0
    memory: MemoryReport | None = None
    step_wall_s: list[float] = field(default_factory=list)
    step_cpu_s: list[float] = field(default_factory=list)

    @property
    def median_step_cpu_s(self) -> float:
        """Median CPU time of one step (augmentation + forward + backward + update), all threads.

        CPU time is what this process computed, so it barely moves when other processes share the
        cores; the median drops the first steps' one-off allocations.
        """
        return float(np.median(self.step_cpu_s)) if self.step_cpu_s else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.objective.label,
            "views_per_step": self.objective.n_views,
            "steps": self.steps,
            "train_time_s": self.train_time_s,
            "cpu_time_s": float(np.sum(self.step_cpu_s)),
            "median_step_cpu_s": self.median_step_cpu_s,
            "median_step_wall_s": float(np.median(self.step_wall_s)) if self.step_wall_s else None,
            "memory_bytes": self.memory.to_json() if self.memory else None,
            "final": self.history[-1] if self.history else None,
        }


class PretrainJob:
    """Pretraining as a :class:`~atomizer.training.loop.TrainingJob` of the one training loop.

    Each global batch is ``batch_size`` chips of a seeded permutation (the last partial batch is
    dropped); each rank augments its share with the :attr:`~atomizer.training.seed.Stream.AUGMENT`
    stream at (epoch, step, rank), so views do not depend on where a run was resumed.
    """

    def __init__(self, config: PretrainConfig, chips: Sequence[Chip], objective: PretrainObjective,
                 host: Any, dist: DistContext, log: Callable[[str], None] | None) -> None:
        self.config, self.chips, self.objective, self.host = config, chips, objective, host
        self.dist, self.log = dist, log
        self.augmenter = Augmenter(config.augment)
        self.model: SatMIPModel | None = None
        self.tracker = SavedTensorTracker()
        self.elapsed_s = 0.0

    def build_model(self) -> SatMIPModel:
        example = collate_atoms([c.atoms for c in self.chips[:2]])
        self.model = build_satmip_model(self.config, self.objective, self.host, example=example)
        self.tracker = SavedTensorTracker(exclude=self.model)
        return self.model

    def build_optimizer(self, model: nn.Module, steps_per_epoch: int):
        opt = self.config.optim
        optimizer = torch.optim.AdamW(
            parameter_groups(model, opt.weight_decay, no_decay_prefixes=NO_DECAY_PREFIXES),
            lr=opt.lr,
            betas=opt.betas,
            eps=opt.eps,
            weight_decay=opt.weight_decay,
        )
        schedule = WarmupCosineSchedule(
            optimizer,
            peak_lr=opt.lr,
            warmup_steps=round(opt.warmup_epochs * steps_per_epoch),
            total_steps=steps_per_epoch * opt.epochs,
        )
        return optimizer, schedule

    def global_batches(self, epoch: int) -> list[list[int]]:
        bs = self.config.optim.batch_size
        order = epoch_permutation(len(self.chips), self.config.seed, epoch).tolist()
        return [order[i * bs : (i + 1) * bs] for i in range(len(self.chips) // bs)]

    def inputs(self, epoch: int, batches: Sequence[Sequence[int]], first: int):
        for i, idx in enumerate(batches, start=first):
            rng = stream_rng(self.config.seed, Stream.AUGMENT, epoch, i, self.dist.rank)
            yield make_views([self.chips[j] for j in idx], self.objective, self.augmenter, rng)

    def step(self, net: nn.Module, item: Any, n_global: int, epoch: int, index: int) -> StepOutput:
        """The objective on this rank's views (its losses gather embeddings across ranks)."""
        views, records = item
        parts = self.objective(**net(views, records))
        return StepOutput(parts.total, {**parts.as_floats(), "steps": 1.0})

    def step_scope(self):
        return self.tracker.track()

    def epoch_row(self, net, epoch, step, sums, lr, seconds) -> dict[str, Any]:
        self.elapsed_s += seconds
        n = sums.get("steps", 1.0)
        row: dict[str, Any] = {k: v / n for k, v in sums.items() if k != "steps"}
        row.update(epoch=epoch + 1, lr=lr, time_s=self.elapsed_s)
        if self.model is not None and self.model.temperature is not None:
            row["logit_scale"] = float(self.model.temperature().detach())
        if self.log is not None and self.dist.is_main:
            terms = ", ".join(f"{k} {row[k]:.4f}" for k in ("loss", "satmip", "simclr") if k in row)
            progress = f"epoch {epoch + 1}/{self.config.optim.epochs}"
            self.log(f"{self.objective.label} {progress}: {terms} ({self.elapsed_s:.1f} s)")
        return row

    def content(self) -> CheckpointContent:
        model = self.model
        return CheckpointContent(
            kind=PRETRAINING_KIND,
            method=self.objective.label,
            config=self.config.model_dump(mode="json"),
            image_encoder=None if model is None else encoder_record(model, self.config),
        )


def encoder_record(model: SatMIPModel, config: PretrainConfig) -> ImageEncoderRecord:
    """What rebuilds ``model``'s image encoder: registry name, resolved config, feature width."""
    cfg = getattr(model.image_encoder, "config", None)
    dumped = cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else None
    return ImageEncoderRecord(
        name=config.image_encoder.name,
        config=dumped if dumped is not None else dict(config.image_encoder.params),
        feature_dim=model.image_dim,
    )


def pretrain(
    config: PretrainConfig,
    chips: Sequence[Chip],
    *,
    method: str | PretrainObjective,
    host: Any,
    log: Callable[[str], None] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
) -> PretrainResult:
    """Train ``config.image_encoder`` with ``method`` on ``chips`` (see the module docstring).

    The loop is :func:`~atomizer.training.loop.run_training`, the supervised trainer's: with
    ``run_dir``, checkpoints go there each epoch and ``resume`` continues the latest one.
    """
    objective = method if isinstance(method, PretrainObjective) else parse_method_label(method)
    objective = PretrainObjective(
        objective.method,
        coupled=objective.coupled,
        lambda_simclr=config.lambda_simclr,
        simclr_temperature=config.simclr_temperature,
    )
    dist = DistContext.from_process_group()
    opt_cfg = config.optim
    if opt_cfg.batch_size % dist.world_size:
        raise ConfigError(
            f"optim.batch_size {opt_cfg.batch_size} is not divisible by {dist.world_size} processes"
        )
    if len(chips) // opt_cfg.batch_size == 0:
        raise ConfigError(
            f"{len(chips)} training chips are fewer than optim.batch_size {opt_cfg.batch_size}; "
            "lower the batch size or add data"
        )
    job = PretrainJob(config, chips, objective, host, dist, log)
    settings = LoopSettings(
        epochs=opt_cfg.epochs,
        seed=config.seed,
        grad_clip_norm=opt_cfg.grad_clip_norm,
        find_unused_parameters=True,
        tensorboard=False,
    )
    with cpu_threads(config.threads):
        out = run_training(job, settings, run_dir=run_dir, dist=dist, resume=resume)
    model = out.model
    sb = state_bytes(model, out.optimizer)
    cuda = next(model.parameters()).is_cuda
    memory = MemoryReport(
        params=sb["params"],
        grads=sb["grads"],
        optimizer=sb["optimizer"],
        peak_activations=job.tracker.peak_bytes,
        cuda_peak=int(torch.cuda.max_memory_allocated()) if cuda else None,
    )
    model.eval()
    return PretrainResult(model, objective, out.history, job.elapsed_s, out.global_step, memory,
                          out.step_wall_s, out.step_cpu_s)


@torch.no_grad()
def extract_features(
    model: SatMIPModel, chips: Sequence[Chip], *, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frozen ``(image features, metadata features or None)`` of ``chips``, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    img, meta = [], []
    try:
        for start in range(0, len(chips), batch_size):
            part = chips[start : start + batch_size]
            batch = collate_atoms([c.atoms for c in part]).to(device)
            img.append(model.image_encoder.encode(batch).float().cpu().numpy())
            if model.metadata_encoder is not None:
                meta.append(
                    model.metadata_encoder([c.metadata for c in part]).float().cpu().numpy()
                )
    finally:
        model.train(was_training)
    return np.concatenate(img), (np.concatenate(meta) if meta else None)
