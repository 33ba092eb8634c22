"""Models: the Atomizer (a Perceiver over atoms) and the paper's baselines.

Every model is an ``nn.Module`` with ``forward(batch: AtomBatch) -> logits (S, num_classes)``,
``encode(batch) -> (S, D)`` (the pooled embedding before the head), a keyword-only constructor and a
strict pydantic ``config``; :func:`build_model` rebuilds one from its registry name and config.
"""

from __future__ import annotations

from atomizer._lazy import lazy_exports

_EXPORTS = {
    "AtomizerConfig": "config",
    "AtomizerModel": "atomizer_model",
    "ModelConfig": "config",
    "ModelFactory": "registry",
    "NaiveAtomizerModel": "naive",
    "PerceiverBaselineConfig": "config",
    "PerceiverBaselineModel": "baselines",
    "PerceiverConfig": "config",
    "Raster": "rasterize",
    "RasterBandConfig": "config",
    "RasterLayout": "rasterize",
    "RasterLayoutConfig": "config",
    "ResNetConfig": "config",
    "ResNetModel": "baselines",
    "ScaleMAEConfig": "config",
    "ScaleMAEModel": "baselines",
    "ViTConfig": "config",
    "ViTModel": "baselines",
    "build_model": "registry",
    "layout_for_bands": "rasterize",
    "predict_proba": "atomizer_model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
