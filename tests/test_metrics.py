"""Metrics against scikit-learn and hand-computed values, plus invariance properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from atomizer.evaluation.metrics import METRIC_NAMES, MetricAccumulator, compute_metrics


def _multilabel(seed: int, n: int = 40, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, c, generator=g)
    target = (torch.rand(n, c, generator=g) < 0.4).long()
    target[0], target[1] = 1, 0  # every class has positives and negatives
    return probs, target


def _multiclass(seed: int, n: int = 40, c: int = 4):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, c, generator=g), dim=1)
    target = torch.arange(n) % c
    return probs, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_matches_sklearn(seed):
    probs, target = _multilabel(seed)
    got = compute_metrics(probs, target, task="multilabel", num_classes=5)
    p, t = probs.numpy(), target.numpy()
    pred = (p > 0.5).astype(int)
    assert got["map_macro"] == pytest.approx(
        100 * average_precision_score(t, p, average="macro"), abs=1e-4
    )
    assert got["map_micro"] == pytest.approx(
        100 * average_precision_score(t, p, average="micro"), abs=1e-4
    )
    assert got["overall_accuracy"] == pytest.approx(100 * (pred == t).mean(), abs=1e-4)
    assert got["f1_macro"] == pytest.approx(100 * f1_score(t, pred, average="macro"), abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_sklearn(seed):
    probs, target = _multiclass(seed)
    got = compute_metrics(probs, target, task="multiclass", num_classes=4)
    p, t = probs.numpy(), target.numpy()
    onehot = np.eye(4)[t]
    pred = p.argmax(1)
    assert got["map_macro"] == pytest.approx(
        100 * average_precision_score(onehot, p, average="macro"), abs=1e-4
    )
    assert got["map_micro"] == pytest.approx(
        100 * average_precision_score(onehot, p, average="micro"), abs=1e-4
    )
    assert got["overall_accuracy"] == pytest.approx(100 * accuracy_score(t, pred), abs=1e-4)
    assert got["f1_macro"] == pytest.approx(
        100 * f1_score(t, pred, average="macro", labels=range(4)), abs=1e-4
    )


def test_hand_computed_multiclass():
    # 4 samples, 2 classes; scores for class 1: 0.9 (pos), 0.8 (neg), 0.3 (pos), 0.1 (neg)
    p1 = torch.tensor([0.9, 0.8, 0.3, 0.1])
    probs = torch.stack([1 - p1, p1], dim=1)
    target = torch.tensor([1, 0, 1, 0])
    got = compute_metrics(probs, target, task="multiclass", num_classes=2)
    # class 1: precision at each positive: 1/1, 2/3 -> AP = (1 + 2/3) / 2
    # class 0: scores 0.1(n) 0.2(p) 0.7(n) 0.9(p) -> ranked 0.9 p, 0.7 n, 0.2 p: AP = (1 + 2/3) / 2
    assert got["map_macro"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert got["overall_accuracy"] == pytest.approx(50.0)  # argmax right for samples 0 and 3
    # class 1: tp 1, fp 1, fn 1 -> F1 0.5; class 0: same -> 0.5
    assert got["f1_macro"] == pytest.approx(50.0)


def test_classes_absent_from_targets_are_left_out_of_macro_map():
    probs = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.7, 0.3, 0.6]])
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0]])  # class 2 never present
    got = compute_metrics(probs, target, task="multilabel", num_classes=3, names=["map_macro"])
    assert got["map_macro"] == pytest.approx(100.0)  # classes 0 and 1 are ranked perfectly


def test_accumulator_equals_one_shot_and_checks_shapes():
    probs, target = _multiclass(5)
    logits = torch.log(probs)
    acc = MetricAccumulator("multiclass", 4, METRIC_NAMES)
    for i in range(0, 40, 7):
        acc.update(logits[i : i + 7], target[i : i + 7])
    assert acc.n_samples == 40
    one = compute_metrics(torch.softmax(logits, 1), target, task="multiclass", num_classes=4)
    assert acc.compute() == pytest.approx(one)
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(probs, target[:-1], task="multiclass", num_classes=4)
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(probs, target, task="multiclass", num_classes=4, names=["auc"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.25, 3.0), perm_seed=st.integers(0, 2**16))
def test_multilabel_metrics_ignore_sample_order_and_logit_scale(seed, scale, perm_seed):
    """Ranking metrics depend on the ranking only; no metric depends on the sample order."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(20, 3, generator=g)
    target = (torch.rand(20, 3, generator=g) < 0.5).long()
    target[0] = 1
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(perm_seed))
    base = compute_metrics(torch.sigmoid(logits), target, task="multilabel", num_classes=3)
    permuted = compute_metrics(
        torch.sigmoid(logits[perm]), target[perm], task="multilabel", num_classes=3
    )
    scaled = compute_metrics(
        torch.sigmoid(logits * scale), target, task="multilabel", num_classes=3, names=["map_macro"]
    )
    assert permuted == pytest.approx(base)
    assert scaled["map_macro"] == pytest.approx(base["map_macro"], abs=1e-3)


def test_one_probability_switch_for_models_and_metrics():
    """``atomizer.models.predict_proba`` is the metrics' sigmoid / softmax switch, not a copy."""
    import atomizer.models
    from atomizer.evaluation.metrics import probabilities

    assert atomizer.models.predict_proba is probabilities
    logits = torch.tensor([[0.0, 2.0, -1.0]], dtype=torch.bfloat16)
    multilabel = probabilities(logits, "multilabel")
    assert multilabel.dtype == torch.float32
    torch.testing.assert_close(multilabel, torch.sigmoid(logits.float()))
    torch.testing.assert_close(probabilities(logits, "multiclass").sum(-1), torch.ones(1))


def test_importing_models_and_configs_does_not_import_torchmetrics():
    """torchmetrics (about a second to import) loads only when a metric is computed."""
    import subprocess
    import sys

    code = (
        "import sys, atomizer.models.atomizer_model, atomizer.training.config; "
        "sys.exit('torchmetrics' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
