"""Padded batches of AtomSets for models: :class:`AtomBatch` and :func:`collate_atoms`.

AtomSets of different sizes and different band tables are padded to the longest one; ``mask`` marks
real atoms. The band tables are merged into one batch-level table (identical bands share a row), so
per-band features (spectral encodings) are computed once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.sensors.spec import Band


@dataclass
class AtomBatch:
    """``S`` samples padded to ``N`` atoms over a merged table of ``B`` bands."""

    value: torch.Tensor  # (S, N) float32, physical values (0 where padded)
    band: torch.Tensor  # (S, N) int64 index into ``bands`` (0 where padded)
    x: torch.Tensor  # (S, N) float32 metres east of each sample's centre
    y: torch.Tensor  # (S, N) float32 metres north
    mask: torch.Tensor  # (S, N) bool, True for real atoms
    bands: tuple[Band, ...]
    scenes: tuple[SceneMeta, ...]

    @property
    def batch_size(self) -> int:
        return int(self.value.shape[0])

    @property
    def center_wavelength_nm(self) -> torch.Tensor:
        return torch.tensor([b.center_wavelength_nm for b in self.bands], dtype=torch.float32)

    @property
    def fwhm_nm(self) -> torch.Tensor:
        return torch.tensor([b.fwhm_nm for b in self.bands], dtype=torch.float32)

    @property
    def gsd_m(self) -> torch.Tensor:
        return torch.tensor([b.gsd_m for b in self.bands], dtype=torch.float32)

    def to(self, device: torch.device | str) -> AtomBatch:
        return AtomBatch(
            value=self.value.to(device),
            band=self.band.to(device),
            x=self.x.to(device),
            y=self.y.to(device),
            mask=self.mask.to(device),
            bands=self.bands,
            scenes=self.scenes,
        )


def collate_atoms(sets: Sequence[AtomSet], *, pad_to_multiple: int = 1) -> AtomBatch:
    """Pad ``sets`` into one :class:`AtomBatch` (band tables merged)."""
    if not sets:
        raise ValueError("cannot collate an empty list of AtomSets")
    table: list[Band] = []
    keys: dict[tuple, int] = {}
    n_max = max(len(s) for s in sets)
    if pad_to_multiple > 1:
        n_max = -(-n_max // pad_to_multiple) * pad_to_multiple
    n_max = max(n_max, 1)
    S = len(sets)
    value = np.zeros((S, n_max), np.float32)
    band = np.zeros((S, n_max), np.int64)
    x = np.zeros((S, n_max), np.float32)
    y = np.zeros((S, n_max), np.float32)
    mask = np.zeros((S, n_max), bool)
    for i, s in enumerate(sets):
        remap = np.empty(max(s.n_bands, 1), np.int64)
        for j, b in enumerate(s.bands):
            k = b.identity
            if k not in keys:
                keys[k] = len(table)
                table.append(b)
            remap[j] = keys[k]
        n = len(s)
        value[i, :n] = s.value
        band[i, :n] = remap[s.band.astype(np.int64)] if n else 0
        x[i, :n] = s.x
        y[i, :n] = s.y
        mask[i, :n] = True
    return AtomBatch(
        value=torch.from_numpy(value),
        band=torch.from_numpy(band),
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        mask=torch.from_numpy(mask),
        bands=tuple(table),
        scenes=tuple(s.scene for s in sets),
    )
