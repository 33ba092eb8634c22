"""Datasets that yield ``(AtomSet, label)`` pairs, modalities, and the transforms between them.

- :class:`IndianPines`: AVIRIS patches with spatially disjoint splits (any sensor by simulation).
- :class:`EarthlibSpectra`: labelled spectra (any sensor by simulation).
- :class:`BigEarthNet`: v1 and v2 (reBEN) layouts, 19-class multi-label.
- :class:`EuroSAT`: EuroSAT-MS class folders.
- :class:`Modality` and :func:`apply_modality`: sensor + bands + GSD + size from any sample.
"""

from atomizer.data.base import (
    SPLITS,
    AtomDataset,
    HyperspectralSample,
    RasterSample,
    SampleSource,
)
from atomizer.data.bigearthnet import BigEarthNet
from atomizer.data.earthlib import EarthlibSpectra
from atomizer.data.envi import SpectralLibrary, read_envi_library
from atomizer.data.eurosat import EuroSAT
from atomizer.data.indian_pines import IndianPines, IndianPinesScene
from atomizer.data.modality import Modality
from atomizer.data.splits import RegionIndex, block_regions, stratified_split
from atomizer.data.transforms import (
    apply_modality,
    atoms_to_rasters,
    change_gsd,
    crop,
    select_bands,
    simulate_sensor,
)

__all__ = [
    "SPLITS",
    "AtomDataset",
    "BigEarthNet",
    "EarthlibSpectra",
    "EuroSAT",
    "HyperspectralSample",
    "IndianPines",
    "IndianPinesScene",
    "Modality",
    "RasterSample",
    "RegionIndex",
    "SampleSource",
    "SpectralLibrary",
    "apply_modality",
    "atoms_to_rasters",
    "block_regions",
    "change_gsd",
    "crop",
    "read_envi_library",
    "select_bands",
    "simulate_sensor",
    "stratified_split",
]
