"""Weighted kNN against a brute-force reference; linear / bimodal probes; seeded splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.evaluation.knn import KNN_KS, knn_accuracy, knn_predict, knn_votes
from atomizer.evaluation.probe import (
    MeanStd,
    evaluate_probes,
    linear_probe_accuracy,
    split_indices,
    standardize,
)
from atomizer.evaluation.stats import mean_std


def knn_brute_force(train, train_y, test, k, temperature, n_classes):
    """Sort every training sample by cosine similarity, one test sample at a time."""
    preds = []
    for q in test:
        sims = []
        for j, t in enumerate(train):
            cos = float(q @ t) / (math.sqrt(float(q @ q)) * math.sqrt(float(t @ t)))
            sims.append((cos, j))
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * n_classes
        for cos, j in sims[: min(k, len(train))]:
            votes[int(train_y[j])] += math.exp(cos / temperature)
        preds.append(max(range(n_classes), key=lambda c: (votes[c], -c)))
    return np.array(preds)


@settings(max_examples=30, deadline=None)
@given(
    n_train=st.integers(1, 30),
    n_test=st.integers(1, 10),
    n_classes=st.integers(2, 4),
    k=st.sampled_from([1, 3, 5, 20, 100]),
    temperature=st.sampled_from([0.07, 0.5, 2.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_knn_matches_brute_force(n_train, n_test, n_classes, k, temperature, seed) -> None:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, 5))
    test = rng.normal(size=(n_test, 5))
    train_y = rng.integers(0, n_classes, n_train)
    got = knn_predict(train, train_y, test, k=k, temperature=temperature, n_classes=n_classes)
    want = knn_brute_force(train, train_y, test, k, temperature, n_classes)
    np.testing.assert_array_equal(got, want)


def test_knn_votes_are_temperature_weighted() -> None:
    train = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    votes = knn_votes(train, [0, 1, 1], np.array([[1.0, 0.0]]), k=3, temperature=0.5, n_classes=2)
    assert votes[0, 0] == pytest.approx(math.exp(1.0 / 0.5))
    assert votes[0, 1] == pytest.approx(math.exp(0.0) + math.exp(0.6 / 0.5))
    # with k = 1 only the nearest (class 0) votes
    assert knn_predict(train, [0, 1, 1], np.array([[0.9, 0.1]]), k=1).tolist() == [0]
    # ... with k = 3 the two class-1 neighbours outvote it at a high temperature
    assert knn_predict(
        train, [0, 1, 1], np.array([[0.9, 0.1]]), k=3, temperature=10.0
    ).tolist() == [1]


def test_knn_accuracy_on_separated_clusters_and_errors() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    x = np.concatenate([c + rng.normal(size=(20, 3)) for c in centres])
    y = np.repeat(np.arange(3), 20)
    accs = knn_accuracy(x[::2], y[::2], x[1::2], y[1::2])
    assert set(accs) == set(KNN_KS)
    assert accs[1] == 1.0 and accs[5] == 1.0
    with pytest.raises(ValueError, match="k must be"):
        knn_votes(x, y, x, k=0)
    with pytest.raises(ValueError, match="labels"):
        knn_votes(x, y[:-1], x, k=1)


def test_linear_probe_agrees_with_sklearn() -> None:
    LogisticRegression = pytest.importorskip("sklearn.linear_model").LogisticRegression

    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 3))
    x = rng.normal(size=(200, 6))
    y = (x @ w + rng.normal(scale=1.5, size=(200, 3))).argmax(1)
    xtr, xte = standardize(x[:140], x[140:])
    ref = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=200).fit(xtr, y[:140])
    ref_acc = float((ref.predict(xte) == y[140:]).mean())
    acc = linear_probe_accuracy(x[:140], y[:140], x[140:], y[140:], max_iter=200)
    assert acc == pytest.approx(ref_acc, abs=0.04)
    assert acc > 0.6


def test_linear_probe_separable_is_perfect() -> None:
    x = np.array([[0.0, 0.0], [0.1, 0.2], [3.0, 3.0], [3.2, 2.9], [0.2, 0.1], [2.9, 3.1]])
    y = np.array([0, 0, 1, 1, 0, 1])
    assert linear_probe_accuracy(x[:4], y[:4], x[4:], y[4:]) == 1.0


def test_split_indices_grouped_and_stratified() -> None:
    labels = np.repeat([0, 1, 2], 10)
    groups = [f"g{i // 3}" for i in range(30)]
    tr, te = split_indices(labels, test_fraction=0.3, seed=1, groups=groups)
    assert set(tr).isdisjoint(te) and len(tr) + len(te) == 30
    assert {groups[i] for i in tr}.isdisjoint({groups[i] for i in te})
    tr2, te2 = split_indices(labels, test_fraction=0.3, seed=1, groups=groups)
    np.testing.assert_array_equal(te, te2)
    tr, te = split_indices(labels, test_fraction=0.3, seed=0)
    assert len(te) == 9 and all((labels[tr] == c).sum() == 7 for c in range(3))
    with pytest.raises(ValueError):
        split_indices(labels, test_fraction=1.0, seed=0)


def test_evaluate_probes_bimodal_uses_metadata() -> None:
    """Noise image features + metadata that carries the label: only the bimodal probe is right."""
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 40)
    image = rng.normal(size=(80, 8))
    metadata = np.stack([y + 0.05 * rng.normal(size=80), rng.normal(size=80)], 1)
    res = evaluate_probes(image, y, metadata_features=metadata, seeds=(0, 1, 2), ks=(1, 5))
    assert set(res) == {"knn@1", "knn@5", "linear", "bimodal"}
    assert res["bimodal"].mean == 1.0
    assert res["linear"].mean < 0.8
    assert len(res["linear"].values) == 3
    assert str(MeanStd.of([0.5, 0.7])) == "60.0 ± 14.1"  # sample std (ddof 1) over seeds
    with pytest.raises(ValueError, match="bimodal"):
        evaluate_probes(image, y, methods=("bimodal",))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=8))
def test_mean_std_is_the_sample_std_over_seeds(values):
    """Property: the probe summary and the training report use the same sample std."""
    import statistics

    from atomizer.training.report import _stats

    mean, std, n = mean_std([*values, float("nan")])  # a NaN run is left out
    assert n == len(values) and mean == pytest.approx(statistics.fmean(values), abs=1e-9)
    want = statistics.stdev(values) if len(values) > 1 else 0.0
    assert std == pytest.approx(want, rel=1e-9, abs=1e-9)
    probe = MeanStd.of(values)
    cell = _stats(values)
    assert (probe.mean, probe.std) == (cell.mean, cell.std) == (mean, std)
    assert mean_std([])[2] == 0 and math.isnan(mean_std([float("nan")])[0])
