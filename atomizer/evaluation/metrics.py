"""Classification metrics through torchmetrics, for multi-label and multi-class tasks.

Names (as written in experiment configs):

- ``map_macro``: mean over classes of the average precision (area under the precision-recall
  curve, torchmetrics' step-wise definition, the same as scikit-learn's). Classes with no positive
  sample in the evaluated set have no defined AP and are left out of the mean.
- ``map_micro``: average precision of all (sample, class) decisions pooled together; for a
  multi-class task the targets are one-hot encoded first.
- ``overall_accuracy``: multi-class: fraction of samples whose arg-max class is right; multi-label:
  fraction of (sample, class) decisions right at a probability threshold of 0.5.
- ``f1_macro``: F1 per class (arg-max for multi-class, threshold 0.5 for multi-label) averaged over
  classes.

Every value is returned in percent (0-100), as the paper reports them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Literal

import torch

TaskType = Literal["multilabel", "multiclass"]
METRIC_NAMES = ("map_macro", "map_micro", "overall_accuracy", "f1_macro")
#: Probability above which a multi-label class counts as predicted present.
MULTILABEL_THRESHOLD = 0.5
PERCENT = 100.0


def probabilities(logits: torch.Tensor, task: TaskType) -> torch.Tensor:
    """Sigmoid (multi-label) or softmax (multi-class) of ``(S, C)`` logits, in float32.

    The one implementation of this switch (:func:`atomizer.models.predict_proba` re-exports it).
    """
    logits = logits.float()
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=-1)


def _check(probs: torch.Tensor, target: torch.Tensor, task: TaskType, num_classes: int) -> None:
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(
            f"expected predictions of shape (S, {num_classes}), got {tuple(probs.shape)}"
        )
    want = (probs.shape[0], num_classes) if task == "multilabel" else (probs.shape[0],)
    if tuple(target.shape) != want:
        raise ValueError(f"expected {task} targets of shape {want}, got {tuple(target.shape)}")


def compute_metrics(
    probs: torch.Tensor,
    target: torch.Tensor,
    *,
    task: TaskType,
    num_classes: int,
    names: Sequence[str] = METRIC_NAMES,
) -> dict[str, float]:
    """The metrics ``names`` of class probabilities ``probs`` (S, C) against ``target``.

    ``target`` is (S, C) of 0/1 for multi-label and (S,) of class indices for multi-class.
    """
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRIC_NAMES)}")
    probs = probs.detach().float().cpu()
    target = target.detach().long().cpu()
    _check(probs, target, task, num_classes)
    if probs.shape[0] == 0:
        return {n: float("nan") for n in names}
    out: dict[str, float] = {}
    with warnings.catch_warnings():  # torchmetrics warns about classes absent from the set
        warnings.simplefilter("ignore", UserWarning)
        for name in names:
            out[name] = PERCENT * float(_metric(name, probs, target, task, num_classes))
    return out


def _metric(
    name: str, probs: torch.Tensor, target: torch.Tensor, task: TaskType, num_classes: int
) -> torch.Tensor:
    # imported here: torchmetrics takes ~1 s to import, and importing this module (for
    # METRIC_NAMES or probabilities) must stay cheap for configs and models
    from torchmetrics.functional.classification import (
        binary_average_precision,
        multiclass_accuracy,
        multiclass_average_precision,
        multiclass_f1_score,
        multilabel_accuracy,
        multilabel_average_precision,
        multilabel_f1_score,
    )

    onehot = target if task == "multilabel" else torch.nn.functional.one_hot(target, num_classes)
    if name == "map_macro":
        if task == "multilabel":
            per_class = multilabel_average_precision(
                probs, target, num_labels=num_classes, average="none"
            )
        else:
            per_class = multiclass_average_precision(
                probs, target, num_classes=num_classes, average="none"
            )
        present = onehot.sum(dim=0) > 0
        return per_class[present].mean() if present.any() else torch.tensor(float("nan"))
    if name == "map_micro":
        if onehot.sum() == 0:
            return torch.tensor(float("nan"))
        return binary_average_precision(probs.reshape(-1), onehot.reshape(-1))
    if name == "overall_accuracy":
        if task == "multilabel":
            return multilabel_accuracy(
                probs,
                target,
                num_labels=num_classes,
                threshold=MULTILABEL_THRESHOLD,
                average="micro",
            )
        return multiclass_accuracy(probs, target, num_classes=num_classes, average="micro")
    if name == "f1_macro":
        if task == "multilabel":
            return multilabel_f1_score(
                probs,
                target,
                num_labels=num_classes,
                threshold=MULTILABEL_THRESHOLD,
                average="macro",
            )
        return multiclass_f1_score(probs, target, num_classes=num_classes, average="macro")
    raise ValueError(f"unknown metric {name!r}")  # pragma: no cover - names are checked above


class MetricAccumulator:
    """Collects predictions batch by batch, then computes every metric at once.

    Predictions are kept (S x C floats), so the ranking metrics are exact rather than binned.
    """

    def __init__(
        self, task: TaskType, num_classes: int, names: Iterable[str] = METRIC_NAMES
    ) -> None:
        self.task = task
        self.num_classes = num_classes
        self.names = tuple(names)
        self._probs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of ``(S, C)`` logits and their targets."""
        self._probs.append(probabilities(logits.detach(), self.task).cpu())
        self._targets.append(target.detach().long().cpu())

    @property
    def n_samples(self) -> int:
        return sum(int(p.shape[0]) for p in self._probs)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All probabilities and targets so far, concatenated."""
        if not self._probs:
            shape = (0, self.num_classes)
            tgt = torch.zeros(shape if self.task == "multilabel" else (0,), dtype=torch.long)
            return torch.zeros(shape), tgt
        return torch.cat(self._probs), torch.cat(self._targets)

    def compute(self) -> dict[str, float]:
        probs, target = self.tensors()
        return compute_metrics(
            probs, target, task=self.task, num_classes=self.num_classes, names=self.names
        )

    def reset(self) -> None:
        self._probs.clear()
        self._targets.clear()
