"""Copernicus-FM baseline, written from its paper: Wang et al. 2025, "Towards a Unified Copernicus
Foundation Model for Earth Vision" (arXiv:2503.11849), trained from scratch here.

Parts, and the part of the paper each follows (its model section: DOFA's dynamic hypernetwork
extended to wavelength AND bandwidth, plus metadata encodings, on a ViT):

- **Spectral Fourier features** ("extended dynamic hypernetwork", spectral branch): each band's
  centre wavelength and bandwidth, both in nanometres
  (:func:`~atomizer.models.spectral_inputs.copernicus_spectral`), are expanded with Fourier
  features on log-spaced wavelengths (centre: 100 nm to 1 m, bandwidth: 1 nm to 1 m, the
  published ranges) and summed.
- **Hypernetwork patch embedding** (same part, inherited from DOFA): a residual layer and the
  transformer weight generator of :mod:`atomizer.models.dofa` turn each band's features into its
  ``k x k x dim`` kernel; the kernels of the bands present form a strided convolution.
- **Metadata encodings** ("metadata encoding"): longitude / latitude (degrees), the ground area of
  one patch token (km², from the raster's GSD: this is how the model knows the resolution) and
  the acquisition time (days since 1970-01-01) are each expanded with Fourier features and a
  linear layer; a metadata field a sample lacks is replaced by a learned "missing" embedding. The
  sum is added to every token, like the positional embedding.
- **ViT**: fixed 2-D sin-cos positions, a class token, transformer layers, global average pooling
  of the patch tokens, linear head.

Deviations: small widths for the CPU budget; the project's pre-norm transformer layers; the
"variable" (language-embedding) hypernetwork for non-spectral variables and the FlexiViT kernel
resizing are left out (every input here is spectral, rasterised to one patch size). No pretraining.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import torch
from torch import Tensor, nn

from atomizer.atoms.batch import AtomBatch
from atomizer.models.any_sensor import AnySensorModel
from atomizer.models.dofa import DOFAConfig, DynamicPatchEmbed
from atomizer.models.rasterize import Raster
from atomizer.models.spectral_inputs import copernicus_spectral
from atomizer.sensors.spec import Band

#: Fourier ranges of the published model: (shortest, longest) wavelength of the expansion.
CENTRE_RANGE_NM = (100.0, 1e9)
BANDWIDTH_RANGE_NM = (1.0, 1e9)
COORD_RANGE_DEG = (1e-4, 720.0)
AREA_RANGE_KM2 = (1e-3, 5.1e8)
TIME_RANGE_DAYS = (1.0, 365.25)
M2_PER_KM2 = 1e6
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class CopernicusFMConfig(DOFAConfig):
    """Copernicus-FM: wavelength + bandwidth hypernetwork, metadata encodings, ViT."""


def fourier_expansion(x: Tensor, dim: int, lower: float, upper: float) -> Tensor:
    """``(...,) -> (..., dim)``: ``[sin(2 pi x / l_j), cos(2 pi x / l_j)]``, ``l_j`` log-spaced
    in ``[lower, upper]`` (computed in float64: the ranges span up to 12 decades)."""
    lengths = torch.logspace(
        math.log10(lower), math.log10(upper), dim // 2, dtype=torch.float64, device=x.device
    )
    prod = x.to(torch.float64)[..., None] * (2 * math.pi / lengths)
    return torch.cat([torch.sin(prod), torch.cos(prod)], dim=-1).to(torch.float32)


class MetadataEncoder(nn.Module):
    """Location, token area and time -> one ``(S, 1, dim)`` embedding (learned when missing)."""

    FIELDS = ("coord", "area", "time")

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.fc = nn.ModuleDict({f: nn.Linear(dim, dim) for f in self.FIELDS})
        self.missing = nn.ParameterDict({f: nn.Parameter(torch.zeros(1, dim)) for f in self.FIELDS})

    def forward(self, lon: Tensor, lat: Tensor, area_km2: Tensor, days: Tensor) -> Tensor:
        """Each input ``(S,)``, NaN where unknown."""
        half = self.dim // 2
        coord = torch.cat(
            [
                fourier_expansion(torch.nan_to_num(lon) + 180, half, *COORD_RANGE_DEG),
                fourier_expansion(torch.nan_to_num(lat) + 90, half, *COORD_RANGE_DEG),
            ],
            dim=-1,
        )
        parts = {
            "coord": (coord, lon.isnan() | lat.isnan()),
            "area": (
                fourier_expansion(torch.nan_to_num(area_km2), self.dim, *AREA_RANGE_KM2),
                area_km2.isnan(),
            ),
            "time": (
                fourier_expansion(torch.nan_to_num(days), self.dim, *TIME_RANGE_DAYS),
                days.isnan(),
            ),
        }
        total = 0
        for name, (encoded, missing) in parts.items():
            chosen = torch.where(missing[:, None], self.missing[name], encoded)
            total = total + self.fc[name](chosen)
        return total[:, None, :]


def scene_metadata(batch: AtomBatch) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample: longitude, latitude (degrees) and days since 1970-01-01; NaN where unknown."""
    nan = float("nan")
    lon = [s.lon if s.lon is not None else nan for s in batch.scenes]
    lat = [s.lat if s.lat is not None else nan for s in batch.scenes]
    days = []
    for s in batch.scenes:
        if s.datetime is None:
            days.append(nan)
            continue
        when = s.datetime if s.datetime.tzinfo else s.datetime.replace(tzinfo=dt.timezone.utc)
        days.append((when - _EPOCH).total_seconds() / 86400.0)
    device = batch.value.device
    return tuple(torch.tensor(v, dtype=torch.float64, device=device) for v in (lon, lat, days))


class CopernicusFMModel(AnySensorModel):
    """Copernicus-FM: spectral hypernetwork patch embedding + metadata + ViT (module doc)."""

    config_cls = CopernicusFMConfig
    pool = "mean"
    positions = "sincos"

    def __init__(self, *, config: Any = None, host: Any = None, **params: Any) -> None:
        super().__init__(config=config, host=host, **params)
        self.patch_embed = DynamicPatchEmbed(self.config)
        self.meta = MetadataEncoder(self.config.dim)

    def embed_group(self, values: Tensor, channels: tuple[Band, ...]) -> Tensor:
        wavelength_nm, bandwidth_nm = copernicus_spectral(channels)
        d = self.config.wv_dim
        waves = fourier_expansion(wavelength_nm.to(values.device), d, *CENTRE_RANGE_NM)
        waves = waves + fourier_expansion(bandwidth_nm.to(values.device), d, *BANDWIDTH_RANGE_NM)
        return self.patch_embed(values, waves)

    def metadata(self, batch: AtomBatch, raster: Raster) -> Tensor:
        lon, lat, days = scene_metadata(batch)
        token_m = raster.gsd_m.to(torch.float64) * self.config.patch_size
        return self.meta(lon, lat, token_m**2 / M2_PER_KM2, days)
