"""Weighted k-nearest-neighbour classification of frozen features (cosine similarity).

As in SatMIP's evaluation (after Wu et al. 2018 / DINO): features are L2-normalised, the ``k`` most
similar training samples vote for their class with weight ``exp(similarity / T)``, and the class
with the largest total wins (ties go to the smallest class index). ``k`` is evaluated in
:data:`KNN_KS`; a ``k`` larger than the training set is capped at its size (reported as such).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: The k of the paper's kNN evaluation.
KNN_KS: tuple[int, ...] = (1, 5, 20, 100)
#: Temperature of the vote weights exp(cos / T).
KNN_TEMPERATURE = 0.07
#: Test samples scored at once (bounds the memory of the similarity matrix).
KNN_CHUNK = 1024


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.to(torch.float64 if t.dtype == torch.float64 else torch.float32)


def knn_votes(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | Sequence[int],
    test_features: np.ndarray | torch.Tensor,
    *,
    k: int,
    temperature: float = KNN_TEMPERATURE,
    n_classes: int | None = None,
) -> np.ndarray:
    """``(n_test, n_classes)`` summed vote weights of the ``min(k, n_train)`` nearest neighbours."""
    train = F.normalize(_as_tensor(train_features), dim=-1)
    test = F.normalize(_as_tensor(test_features), dim=-1).to(train.dtype)
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(
            f"features must be (n, d) with the same d; got train {tuple(train.shape)}, "
            f"test {tuple(test.shape)}"
        )
    if labels.shape[0] != train.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {train.shape[0]} training samples")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    c = int(n_classes if n_classes is not None else (int(labels.max()) + 1 if len(labels) else 0))
    k_eff = min(k, train.shape[0])
    out = torch.zeros(test.shape[0], c, dtype=train.dtype)
    for start in range(0, test.shape[0], KNN_CHUNK):
        sim = test[start : start + KNN_CHUNK] @ train.t()
        top_sim, top_idx = sim.topk(k_eff, dim=1)
        weights = (top_sim / temperature).exp()
        out[start : start + KNN_CHUNK].scatter_add_(1, labels[top_idx], weights)
    return out.numpy()


def knn_predict(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | Sequence[int],
    test_features: np.ndarray | torch.Tensor,
    *,
    k: int,
    temperature: float = KNN_TEMPERATURE,
    n_classes: int | None = None,
) -> np.ndarray:
    """Predicted class of every test sample (weighted vote of its ``k`` nearest neighbours)."""
    votes = knn_votes(
        train_features,
        train_labels,
        test_features,
        k=k,
        temperature=temperature,
        n_classes=n_classes,
    )
    return votes.argmax(axis=1)


def knn_accuracy(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | Sequence[int],
    test_features: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | Sequence[int],
    *,
    ks: Sequence[int] = KNN_KS,
    temperature: float = KNN_TEMPERATURE,
) -> dict[int, float]:
    """Top-1 accuracy (fraction in [0, 1]) for each ``k`` in ``ks``."""
    test_y = np.asarray(test_labels)
    train_y = np.asarray(train_labels)
    n_classes = int(max(train_y.max(initial=-1), test_y.max(initial=-1)) + 1)
    out = {}
    for k in ks:
        pred = knn_predict(
            train_features,
            train_y,
            test_features,
            k=k,
            temperature=temperature,
            n_classes=n_classes,
        )
        out[int(k)] = float((pred == test_y).mean()) if len(test_y) else float("nan")
    return out
