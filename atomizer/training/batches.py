"""From dataset items to batches: targets, collation, the loss, per-epoch loaders.

Items are ``(AtomSet, label)`` pairs; a label is a class index (multi-class) or a multi-hot vector
(multi-label). Batches are padded :class:`~atomizer.atoms.AtomBatch` es plus a target tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from atomizer.atoms.batch import AtomBatch, collate_atoms
from atomizer.errors import DatasetError
from atomizer.evaluation.metrics import TaskType


def targets_tensor(labels: Sequence[Any], task: TaskType, num_classes: int) -> torch.Tensor:
    """Class indices (multi-class, shape (S,)) or 0/1 rows (multi-label, (S, C)) as a tensor."""
    if task == "multiclass":
        out = torch.as_tensor(np.asarray([int(np.asarray(y)) for y in labels]), dtype=torch.long)
        bad = out[(out < 0) | (out >= num_classes)]
        if bad.numel():
            raise DatasetError(
                f"label {int(bad[0])} is outside 0..{num_classes - 1}; check task.num_classes"
            )
        return out
    rows = np.stack([np.asarray(y, dtype=np.int64).reshape(-1) for y in labels])
    if rows.shape[1] != num_classes:
        raise DatasetError(
            f"multi-label targets have {rows.shape[1]} classes but task.num_classes is "
            f"{num_classes}"
        )
    return torch.from_numpy(rows)


def collate_labelled(
    items: Sequence[tuple[Any, Any]], *, task: TaskType, num_classes: int
) -> tuple[AtomBatch, torch.Tensor]:
    """(AtomSet, label) pairs -> (padded :class:`AtomBatch`, targets)."""
    sets = [item[0] for item in items]
    return collate_atoms(sets), targets_tensor([item[1] for item in items], task, num_classes)


def loss_sum(logits: torch.Tensor, target: torch.Tensor, task: TaskType) -> torch.Tensor:
    """Summed over samples: cross-entropy (multi-class) or class-averaged BCE (multi-label)."""
    logits = logits.float()
    if task == "multiclass":
        return nn.functional.cross_entropy(logits, target, reduction="sum")
    per = nn.functional.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    return per.mean(dim=1).sum()


def set_epoch(dataset: Any, epoch: int) -> None:
    """Tell a dataset (and those inside a Concat / Subset) which epoch starts (for random crops)."""
    if isinstance(dataset, ConcatDataset):
        for d in dataset.datasets:
            set_epoch(d, epoch)
    elif isinstance(dataset, Subset):
        set_epoch(dataset.dataset, epoch)
    elif hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def make_loader(
    dataset: Dataset, batches: list[list[int]], collate: Callable, workers: int, seed: int
) -> DataLoader:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers, generator=gen
    )
