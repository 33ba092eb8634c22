"""Frozen-feature probes (linear: logistic regression by L-BFGS; kNN; bimodal), mean +/- std.

- :func:`linear_probe_accuracy`: multinomial logistic regression on standardised features, fitted
  by full-batch L-BFGS (``torch.optim.LBFGS``, strong-Wolfe line search) for at most
  :data:`LINEAR_MAX_ITER` iterations, no regularisation (SatMIP's protocol).
- bimodal: image features and metadata features, each standardised, concatenated, then the linear
  probe.
- :func:`evaluate_probes`: one random train/test split per seed (stratified by class, or by group
  when samples share a ``group``, e.g. overlapping chips of one place), every requested probe on
  each split, summarised as :class:`MeanStd`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from atomizer.evaluation.knn import KNN_KS, KNN_TEMPERATURE, knn_accuracy
from atomizer.evaluation.stats import mean_std

#: The paper's linear probe: L-BFGS, 200 iterations, no regularisation.
LINEAR_MAX_ITER = 200
#: Floor of a feature's standard deviation when standardising (constant features stay 0).
STD_FLOOR = 1e-8
PROBE_METHODS: tuple[str, ...] = ("knn", "linear", "bimodal")


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Features minus the training mean, over the training std (per column)."""
    mean = train.mean(axis=0, keepdims=True)
    std = np.maximum(train.std(axis=0, keepdims=True), STD_FLOOR)
    return [(a - mean) / std for a in (train, *others)]


def fit_logistic_regression(
    features: np.ndarray, labels: np.ndarray, n_classes: int, *, max_iter: int = LINEAR_MAX_ITER
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight (d, C), bias (C,))`` minimising the mean cross-entropy, no regularisation."""
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y)
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach(), bias.detach()


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    max_iter: int = LINEAR_MAX_ITER,
    standardise: bool = True,
) -> float:
    """Test accuracy (fraction) of a logistic regression fitted on the training features."""
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    if standardise:
        train_x, test_x = standardize(train_x, test_x)
    n_classes = int(max(np.max(train_y), np.max(test_y)) + 1)
    w, b = fit_logistic_regression(train_x, np.asarray(train_y), n_classes, max_iter=max_iter)
    pred = (torch.as_tensor(test_x) @ w + b).argmax(1).numpy()
    return float((pred == np.asarray(test_y)).mean())


def split_indices(
    labels: np.ndarray,
    *,
    test_fraction: float,
    seed: int,
    groups: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` index arrays of one random split.

    Without ``groups``: stratified, ``round(test_fraction * n_c)`` of each class to test (at least
    one sample of a class stays in training). With ``groups``: whole groups go to test, in random
    order, until ``test_fraction`` of the samples are there (no group is on both sides).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    if groups is None:
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            n_test = min(int(round(test_fraction * len(idx))), len(idx) - 1)
            test[idx[:n_test]] = True
    else:
        groups = np.asarray(groups)
        uniq = np.unique(groups)
        target = test_fraction * len(labels)
        for g in uniq[rng.permutation(len(uniq))]:
            if test.sum() >= target:
                break
            test[groups == g] = True
    return np.flatnonzero(~test), np.flatnonzero(test)


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (``ddof = 1``) of a metric over seeds."""

    mean: float
    std: float
    values: tuple[float, ...] = field(default=())

    @classmethod
    def of(cls, values: Sequence[float]) -> MeanStd:
        """Summary of ``values`` by :func:`atomizer.evaluation.stats.mean_std` (values kept)."""
        mean, std, _ = mean_std(values)
        return cls(mean, std, tuple(float(a) for a in values))

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}"

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std, "values": list(self.values)}


def evaluate_probes(
    image_features: np.ndarray,
    labels: np.ndarray,
    *,
    metadata_features: np.ndarray | None = None,
    methods: Sequence[str] = PROBE_METHODS,
    seeds: Sequence[int] = (0, 1, 2),
    test_fraction: float = 0.3,
    groups: Sequence[str] | None = None,
    ks: Sequence[int] = KNN_KS,
    knn_temperature: float = KNN_TEMPERATURE,
    max_iter: int = LINEAR_MAX_ITER,
) -> dict[str, MeanStd]:
    """Accuracy (fraction) of each probe, mean +/- std over ``seeds``.

    Keys: ``knn@k`` for each ``k``, ``linear``, ``bimodal`` (needs ``metadata_features``).
    """
    unknown = [m for m in methods if m not in PROBE_METHODS]
    if unknown:
        raise ValueError(f"unknown probe methods {unknown}; use {', '.join(PROBE_METHODS)}")
    if "bimodal" in methods and metadata_features is None:
        raise ValueError("the bimodal probe needs metadata_features")
    x = np.asarray(image_features, np.float64)
    y = np.asarray(labels)
    runs: dict[str, list[float]] = {}
    for seed in seeds:
        tr, te = split_indices(y, test_fraction=test_fraction, seed=int(seed), groups=groups)
        if "knn" in methods:
            accs = knn_accuracy(x[tr], y[tr], x[te], y[te], ks=ks, temperature=knn_temperature)
            for k, acc in accs.items():
                runs.setdefault(f"knn@{k}", []).append(acc)
        if "linear" in methods:
            runs.setdefault("linear", []).append(
                linear_probe_accuracy(x[tr], y[tr], x[te], y[te], max_iter=max_iter)
            )
        if "bimodal" in methods:
            m = np.asarray(metadata_features, np.float64)
            xi_tr, xi_te = standardize(x[tr], x[te])
            xm_tr, xm_te = standardize(m[tr], m[te])
            runs.setdefault("bimodal", []).append(
                linear_probe_accuracy(
                    np.concatenate([xi_tr, xm_tr], 1),
                    y[tr],
                    np.concatenate([xi_te, xm_te], 1),
                    y[te],
                    max_iter=max_iter,
                    standardise=False,
                )
            )
    return {name: MeanStd.of(v) for name, v in runs.items()}
