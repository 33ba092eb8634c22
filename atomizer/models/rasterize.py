"""Atoms -> fixed-layout rasters, for the baselines (ResNet, ViT, Scale-MAE, plain Perceiver).

As in the paper, a baseline reads a raster with a FIXED band layout: input bands are matched to the
layout's reference bands and the layout bands the input lacks are zero-filled. Matching, per input
band: among the layout bands whose centre wavelength is within ``wavelength_tolerance_nm``, the one
with the same name, else the same STAC common name, else the nearest centre. Input bands that match
no layout band are ignored.

Spatially, every atom covers its band's footprint (its GSD, centred on its position); each raster
pixel takes the mean of the atoms whose footprint contains the pixel centre (a coarse atom fills all
the finer pixels it covers; an atom smaller than a pixel and covering no pixel centre goes to the
pixel that contains it). Values are then normalised per channel, ``(v - mean) / std``; pixels no
atom reaches and missing channels are 0. The grid is either ``fit`` (``size_px`` pixels spanning
each sample's footprint, like resizing an image: the effective GSD varies per sample) or ``fixed``
(``size_px`` pixels of ``gsd_m`` metres around the footprint centre).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from atomizer.atoms.batch import AtomBatch
from atomizer.errors import ModalityError
from atomizer.models.config import RasterBandConfig, RasterLayoutConfig
from atomizer.sensors.spec import Band

#: Pixel boundaries are compared with this slack (in pixels) so that float rounding of positions
#: that fall exactly on a pixel centre does not flip a pixel in or out of a footprint.
_EDGE_EPS_PX = 1e-4


@dataclass(frozen=True)
class Raster:
    """A batch of rasters: ``values (S, C, H, W)``, ``present (S, C)`` (channels the input had) and
    ``gsd_m (S,)`` (metres per pixel of each sample's grid)."""

    values: Tensor
    present: Tensor
    gsd_m: Tensor


def resolve_layout(config: RasterLayoutConfig, *, host=None) -> RasterLayoutConfig:
    """``config`` with a ``sensor`` reference expanded into explicit ``bands`` (self-contained).

    Each band's normalisation comes from the spec's ``stats`` when it has them (else mean 0, std 1).
    """
    if config.bands is not None:
        return config
    from atomizer.plugins.host import sensor_spec

    spec = sensor_spec(config.sensor, host)
    names = config.sensor_bands or spec.band_names
    bands = []
    for name in names:
        try:
            b = spec.band(name)
        except Exception as exc:  # the spec's own error type varies; ours names the band
            raise ModalityError(
                f"raster layout: sensor {spec.id!r} has no band {name!r} "
                f"(it has {', '.join(spec.band_names)})"
            ) from exc
        bands.append(
            RasterBandConfig(
                name=b.name,
                common_name=b.common_name,
                center_wavelength_nm=b.center_wavelength_nm,
                mean=b.stats.mean if b.stats else 0.0,
                std=b.stats.std if b.stats else 1.0,
            )
        )
    data = config.model_dump()
    data.update(bands=[b.model_dump() for b in bands], sensor=None, sensor_bands=None)
    return RasterLayoutConfig.model_validate(data)


class RasterLayout:
    """A resolved :class:`RasterLayoutConfig`: turns an AtomBatch into a :class:`Raster`."""

    def __init__(self, config: RasterLayoutConfig, *, host=None) -> None:
        self.config = resolve_layout(config, host=host)
        self.bands: tuple[RasterBandConfig, ...] = tuple(self.config.bands or ())
        self.size_px = self.config.size_px
        self._mean = torch.tensor([b.mean for b in self.bands], dtype=torch.float32)
        self._std = torch.tensor([b.std for b in self.bands], dtype=torch.float32)

    @property
    def num_channels(self) -> int:
        return len(self.bands)

    def match(self, bands: Sequence[Band]) -> list[int]:
        """For each input band, the index of the layout band it fills, or -1 when none matches."""
        tol = self.config.wavelength_tolerance_nm
        out = []
        for band in bands:
            near = [
                (abs(ref.center_wavelength_nm - band.center_wavelength_nm), i)
                for i, ref in enumerate(self.bands)
                if abs(ref.center_wavelength_nm - band.center_wavelength_nm) <= tol
            ]
            if not near:
                out.append(-1)
                continue
            by_name = [i for _, i in near if self.bands[i].name.lower() == band.name.lower()]
            by_common = [
                i
                for _, i in sorted(near)
                if band.common_name is not None and self.bands[i].common_name == band.common_name
            ]
            out.append(by_name[0] if by_name else by_common[0] if by_common else min(near)[1])
        return out

    def grid_gsd_m(self, batch: AtomBatch) -> Tensor:
        """Metres per pixel of each sample's grid ``(S,)``."""
        S = batch.batch_size
        if self.config.grid == "fixed":
            return torch.full((S,), float(self.config.gsd_m), dtype=torch.float32)
        half_gsd = batch.gsd_m.to(batch.x.device)[batch.band] / 2  # (S, N)
        reach = torch.maximum(batch.x.abs(), batch.y.abs()) + half_gsd
        half_extent = torch.where(batch.mask, reach, torch.zeros_like(reach)).amax(dim=1)
        gsd = 2 * half_extent / self.size_px
        return torch.where(gsd > 0, gsd, torch.ones_like(gsd))

    def __call__(self, batch: AtomBatch) -> Raster:
        return self.rasterize(batch)

    def rasterize(self, batch: AtomBatch) -> Raster:
        """The rasters of ``batch`` in this layout (no gradient: the input is data)."""
        S, C, H = batch.batch_size, self.num_channels, self.size_px
        W = H
        device = batch.value.device
        channel_of_band = torch.tensor(
            self.match(batch.bands) or [-1], dtype=torch.long, device=device
        )
        channel = channel_of_band[batch.band]  # (S, N)
        use = batch.mask & (channel >= 0)
        grid = self.grid_gsd_m(batch).to(device)
        s_idx = torch.arange(S, device=device)[:, None].expand_as(batch.band)[use]
        ch = channel[use]
        G = grid[s_idx].to(torch.float64)
        g = batch.gsd_m.to(device).to(torch.float64)[batch.band[use]]
        x = batch.x[use].to(torch.float64)
        y = batch.y[use].to(torch.float64)
        col_lo, col_hi = _covered(x / G + W / 2, g / G, W)
        row_lo, row_hi = _covered(-y / G + H / 2, g / G, H)
        nx = (col_hi - col_lo + 1).clamp_min(0)
        ny = (row_hi - row_lo + 1).clamp_min(0)
        count = nx * ny
        atom = torch.repeat_interleave(torch.arange(count.numel(), device=device), count)
        local = torch.arange(atom.numel(), device=device) - (torch.cumsum(count, 0) - count)[atom]
        col = col_lo[atom] + local % nx[atom]
        row = row_lo[atom] + torch.div(local, nx[atom], rounding_mode="floor")
        flat = ((s_idx[atom] * C + ch[atom]) * H + row) * W + col
        sums = torch.zeros(S * C * H * W, dtype=torch.float64, device=device)
        hits = torch.zeros(S * C * H * W, dtype=torch.float64, device=device)
        sums.index_add_(0, flat, batch.value[use].to(torch.float64)[atom])
        hits.index_add_(0, flat, torch.ones_like(flat, dtype=torch.float64))
        mean = (sums / hits.clamp_min(1)).view(S, C, H, W).to(torch.float32)
        filled = hits.view(S, C, H, W) > 0
        norm = (mean - self._mean.to(device)[None, :, None, None]) / self._std.to(device)[
            None, :, None, None
        ]
        values = torch.where(filled, norm, torch.zeros_like(norm))
        present = torch.zeros(S, C, dtype=torch.bool, device=device)
        present[s_idx, ch] = True
        return Raster(values=values, present=present, gsd_m=grid)


def _covered(centre_px: Tensor, size_px: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """First and last pixel (clipped to ``[0, n-1]``) whose centre lies in each footprint.

    ``centre_px`` is the footprint centre in pixel units (pixel ``j`` spans ``[j, j+1)``) and
    ``size_px`` its width. A footprint that contains no pixel centre maps to the pixel holding its
    centre. The result is empty (``hi < lo``) when the footprint lies outside the grid.
    """
    lo = torch.ceil(centre_px - size_px / 2 - 0.5 - _EDGE_EPS_PX)
    hi = torch.ceil(centre_px + size_px / 2 - 0.5 - _EDGE_EPS_PX) - 1
    inside = torch.floor(centre_px)
    empty = lo > hi
    lo = torch.where(empty, inside, lo)
    hi = torch.where(empty, inside, hi)
    return lo.clamp(min=0).long(), hi.clamp(max=n - 1).long()


def layout_for_bands(
    bands: Sequence[Band],
    *,
    size_px: int,
    grid: str = "fit",
    gsd_m: float | None = None,
    wavelength_tolerance_nm: float | None = None,
) -> RasterLayout:
    """A layout whose reference bands are ``bands`` (normalised by their ``stats`` when present)."""
    refs = [
        RasterBandConfig(
            name=b.name,
            common_name=b.common_name,
            center_wavelength_nm=b.center_wavelength_nm,
            mean=b.stats.mean if b.stats else 0.0,
            std=b.stats.std if b.stats else 1.0,
        )
        for b in bands
    ]
    extra = (
        {}
        if wavelength_tolerance_nm is None
        else {"wavelength_tolerance_nm": wavelength_tolerance_nm}
    )
    cfg = RasterLayoutConfig(bands=refs, size_px=size_px, grid=grid, gsd_m=gsd_m, **extra)
    return RasterLayout(cfg)
