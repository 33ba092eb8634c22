"""Evaluation: classification metrics (and, from other modules, frozen-feature kNN and probes)."""

from atomizer.evaluation.metrics import (
    METRIC_NAMES,
    MetricAccumulator,
    compute_metrics,
    probabilities,
)

__all__ = ["METRIC_NAMES", "MetricAccumulator", "compute_metrics", "probabilities"]
