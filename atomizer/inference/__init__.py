"""Using a trained model: maps of whole scenes, chip embeddings, and model packages.

- :mod:`~atomizer.inference.loading`: one loader for checkpoints, pretraining checkpoints, packages;
- :mod:`~atomizer.inference.windows`: sliding windows read block by block on native grids;
- :mod:`~atomizer.inference.predict`: blended class maps as Cloud-Optimized GeoTIFFs;
- :mod:`~atomizer.inference.embed`: per-chip embeddings as GeoParquet, nearest chips;
- :mod:`~atomizer.inference.package`: ``atomizer export`` (safetensors + config + STAC MLM item).

Names are imported lazily (importing this package imports neither torch nor rasterio).
"""

from __future__ import annotations

from atomizer._lazy import lazy_exports

_EXPORTS = {
    "InferenceModel": "loading",
    "load_inference_model": "loading",
    "predict_scene": "predict",
    "embed_sources": "embed",
    "nearest_chips": "embed",
    "export_package": "package",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
