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

from atomizer._lazy import lazy_exports

_EXPORTS = {
    "ExperimentConfig": "config",
    "load_config": "config",
    "apply_overrides": "overrides",
    "Trainer": "trainer",
    "TrainSettings": "trainer",
    "TrainResult": "trainer",
    "evaluate_model": "evaluate",
    "run_training": "loop",
    "LoopSettings": "loop",
    "Checkpoint": "checkpoint",
    "CheckpointRecord": "checkpoint",
    "read_record": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "WarmupCosineSchedule": "schedule",
    "build_optimizer": "schedule",
    "seed_everything": "seed",
    "Stream": "seed",
    "stream_rng": "seed",
    "DistContext": "distributed",
    "RunLogger": "logging",
    "train_one": "runner",
    "evaluate_checkpoint": "runner",
    "run_experiment": "runner",
    "write_report": "report",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
