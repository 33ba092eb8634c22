"""Training: experiments as config, the resumable / DDP-aware trainer, checkpoints, the ``run`` job.

- :mod:`~atomizer.training.config`: the strict experiment schema (:func:`load_config`);
- :mod:`~atomizer.training.overrides`: ``--set KEY.PATH=VALUE`` overrides (every job's loader);
- :mod:`~atomizer.training.loop`: the one training loop (seeding, resume, DDP, checkpoints) that
  supervised training and pretraining both run;
- :mod:`~atomizer.training.trainer`: :class:`Trainer` (seeded, checkpointed, exactly resumable);
- :mod:`~atomizer.training.seed`: named random streams, RNG capture / restore;
- :mod:`~atomizer.training.checkpoint`: safetensors + JSON checkpoints (a validated
  :class:`~atomizer.training.checkpoint_record.CheckpointRecord`), never pickle;
- :mod:`~atomizer.training.schedule`: AdamW, linear warmup then cosine;
- :mod:`~atomizer.training.distributed`: torchrun / DistributedDataParallel;
- :mod:`~atomizer.training.logging`: CSV + TensorBoard logs;
- :mod:`~atomizer.training.runner` and :mod:`~atomizer.training.report`: ``atomizer run``.

Names are imported lazily (importing this package does not import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExperimentConfig": "atomizer.training.config",
    "load_config": "atomizer.training.config",
    "apply_overrides": "atomizer.training.overrides",
    "Trainer": "atomizer.training.trainer",
    "TrainSettings": "atomizer.training.trainer",
    "TrainResult": "atomizer.training.trainer",
    "evaluate_model": "atomizer.training.evaluate",
    "run_training": "atomizer.training.loop",
    "LoopSettings": "atomizer.training.loop",
    "Checkpoint": "atomizer.training.checkpoint",
    "CheckpointRecord": "atomizer.training.checkpoint",
    "read_record": "atomizer.training.checkpoint",
    "load_checkpoint": "atomizer.training.checkpoint",
    "save_checkpoint": "atomizer.training.checkpoint",
    "WarmupCosineSchedule": "atomizer.training.schedule",
    "build_optimizer": "atomizer.training.schedule",
    "seed_everything": "atomizer.training.seed",
    "Stream": "atomizer.training.seed",
    "stream_rng": "atomizer.training.seed",
    "DistContext": "atomizer.training.distributed",
    "RunLogger": "atomizer.training.logging",
    "train_one": "atomizer.training.runner",
    "evaluate_checkpoint": "atomizer.training.runner",
    "run_experiment": "atomizer.training.runner",
    "write_report": "atomizer.training.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'atomizer.training' has no attribute {name!r}")
