"""AdamW with the linear scaling rule, linear warmup, then cosine decay (stepped every batch).

lr(step) = peak * step / warmup_steps during warmup, then
lr(step) = peak * (r + (1 - r) * (1 + cos(pi * t)) / 2) with t the fraction of the decay done and
r = ``min_lr_ratio``. The schedule's whole state is its step counter, so it serialises as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from atomizer.training.config import OptimizerConfig

#: Parameters with fewer dimensions than this (biases, norm scales, latent offsets) get no decay.
_MIN_DECAY_NDIM = 2


def parameter_groups(
    model: nn.Module, weight_decay: float, *, no_decay_prefixes: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Two AdamW groups: weight matrices with ``weight_decay``, biases and norms without.

    Parameters whose name starts with one of ``no_decay_prefixes`` (e.g. ``"temperature."``, a
    learnable contrastive temperature) get no decay whatever their shape.
    """
    prefixes = tuple(no_decay_prefixes)
    decay, no_decay = [], []
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if not p.requires_grad:
            continue
        spared = p.ndim < _MIN_DECAY_NDIM or (bool(prefixes) and name.startswith(prefixes))
        (no_decay if spared else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, config: OptimizerConfig, lr: float) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters at peak learning rate ``lr``."""
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=lr,
        betas=tuple(config.betas),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


class WarmupCosineSchedule:
    """Sets every param group's lr from the step count: linear warmup, then cosine to ``min_lr``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        peak_lr: float,
        warmup_steps: int,
        total_steps: int,
        min_lr_ratio: float = 0.0,
    ) -> None:
        if total_steps < 1:
            raise ValueError("total_steps must be >= 1")
        self.optimizer = optimizer
        self.peak_lr = peak_lr
        self.warmup_steps = max(0, min(warmup_steps, total_steps))
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        """The learning rate used for optimiser step number ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / decay_steps)
        r = self.min_lr_ratio
        return self.peak_lr * (r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * t)))

    @property
    def lr(self) -> float:
        return self.lr_at(self.step_count)

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        """Advance one optimiser step and set the next learning rate."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "min_lr_ratio": self.min_lr_ratio,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.peak_lr = float(state["peak_lr"])
        self.warmup_steps = int(state["warmup_steps"])
        self.total_steps = int(state["total_steps"])
        self.min_lr_ratio = float(state["min_lr_ratio"])
        self._apply()
