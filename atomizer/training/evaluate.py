"""Devices, mixed precision, CPU threads, progress bars, and evaluating a model on a dataset."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.data import Dataset

from atomizer.errors import ConfigError, DatasetError
from atomizer.evaluation.metrics import MetricAccumulator, TaskType, compute_metrics
from atomizer.training.batches import collate_labelled, make_loader
from atomizer.training.distributed import DistContext, unwrap


def resolve_device(name: str, dist: DistContext | None = None) -> torch.device:
    """``auto`` -> CUDA when visible, else CPU; ``cuda`` without a GPU is a :class:`ConfigError`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda was asked for but no GPU is visible; use auto or cpu")
        return torch.device("cuda", dist.local_rank if dist else torch.cuda.current_device())
    return torch.device(name)


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (unchanged when ``None``), then restore them."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: torch.device, precision: str):
    """The context a forward pass runs in for ``precision`` (``ExperimentConfig.precision``).

    ``fp32``: none (float32, the reference path). ``bf16``: bf16 autocast on CPU and CUDA (matmuls
    and linear layers in bf16, reductions and the factorised cross-attention in float32).
    ``auto``: bf16 on CUDA, float32 on CPU.
    """
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision not in ("fp32", "auto"):
        raise ConfigError(f"precision {precision!r} is unknown; use auto, fp32 or bf16")
    return nullcontext()


def progress_bar(enabled: bool):
    """A rich progress bar on stderr (disabled: a silent stand-in with the same methods)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}", markup=False),  # names from files are no markup
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    task: TaskType,
    num_classes: int,
    metrics: Sequence[str],
    batch_size: int,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    dist: DistContext | None = None,
    progress: bool = False,
    description: str = "evaluate",
) -> dict[str, float]:
    """The ``metrics`` of ``model`` on ``dataset`` (in eval mode; sharded across DDP ranks)."""
    dist = dist or DistContext()
    device = torch.device(device)
    n = len(dataset)
    if n == 0:
        raise DatasetError(f"the {description} set is empty; check the split and modality")
    net = unwrap(model)
    was_training = net.training
    net.eval()
    mine = list(range(dist.rank, n, dist.world_size))
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    collate = functools.partial(collate_labelled, task=task, num_classes=num_classes)
    acc = MetricAccumulator(task, num_classes, metrics)
    with progress_bar(progress and dist.is_main) as bar:
        job = bar.add_task(description, total=len(batches))
        for batch, target in make_loader(dataset, batches, collate, 0, 0):
            with autocast(device, precision):
                logits = net(batch.to(device))
            acc.update(logits.float(), target)
            bar.advance(job)
    net.train(was_training)
    probs, targets = acc.tensors()
    probs, targets = dist.gather_tensor_rows(probs), dist.gather_tensor_rows(targets)
    return compute_metrics(probs, targets, task=task, num_classes=num_classes, names=metrics)
