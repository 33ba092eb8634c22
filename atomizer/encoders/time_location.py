"""Per-scene encoders: acquisition ``time`` and footprint ``location``.

Both take the scenes' metadata (``SceneMeta``: one row per scene, never per atom) and return
``(S, D)``. A scene without a datetime (or lon/lat) gets zeros plus a ``missing`` indicator of 1;
nothing crashes on missing metadata.

- ``time``: ``[sin, cos](2 pi day-of-year fraction), [sin, cos](2 pi time-of-day fraction),
  (decimal year - reference_year) / year_scale, missing`` (6 values). Naive datetimes are UTC.
- ``location``: the unit vector ``(x, y, z)`` of (lon, lat) on the sphere, optionally Fourier
  features of each of x, y, z (``3 * 2L`` values), then ``missing`` (``3 + 6L + 1`` values).
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Sequence

import torch
from torch import nn

from atomizer.atoms.atomset import SceneMeta
from atomizer.encoders.fourier import check_fourier_params, fourier_features, fourier_frequencies
from atomizer.errors import EncoderError

SECONDS_PER_DAY = 86400.0
#: Default year origin and scale: (decimal year - 2000) / 25 puts 1975-2025 in [-1, 1].
DEFAULT_REFERENCE_YEAR = 2000.0
DEFAULT_YEAR_SCALE = 25.0


def datetime_fields(times: Sequence[dt.datetime | dt.date | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S, 3)`` float64 ``[year fraction, day fraction, decimal year]`` and ``(S,)`` presence.

    The year fraction is ``(day of year - 1 + day fraction) / days in that year``. Missing
    datetimes give a row of zeros and ``present = False``.
    """
    rows, present = [], []
    for when in times:
        if when is None:
            rows.append((0.0, 0.0, 0.0))
            present.append(False)
            continue
        if not isinstance(when, dt.datetime):  # a bare date: midnight UTC
            when = dt.datetime(when.year, when.month, when.day)
        if when.tzinfo is not None:
            when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
        seconds = when.hour * 3600 + when.minute * 60 + when.second + when.microsecond / 1e6
        day = seconds / SECONDS_PER_DAY
        days_in_year = 366.0 if calendar.isleap(when.year) else 365.0
        year_frac = (when.timetuple().tm_yday - 1 + day) / days_in_year
        rows.append((year_frac, day, when.year + year_frac))
        present.append(True)
    return (torch.tensor(rows, dtype=torch.float64).reshape(-1, 3),
            torch.tensor(present, dtype=torch.bool))


class TimeEncoder(nn.Module):
    """``time``: cyclic day of year and time of day plus a scaled year; 6 values per scene.

    :param reference_year: the year that maps to 0.
    :param year_scale: years per unit of the scaled year.
    """

    role = "scene"
    out_dim = 6

    def __init__(self, *, reference_year: float = DEFAULT_REFERENCE_YEAR,
                 year_scale: float = DEFAULT_YEAR_SCALE) -> None:
        super().__init__()
        if not (isinstance(year_scale, (int, float)) and math.isfinite(year_scale) and year_scale > 0):
            raise EncoderError(f"time: year_scale must be a positive number of years, got {year_scale!r}")
        if not (isinstance(reference_year, (int, float)) and math.isfinite(reference_year)):
            raise EncoderError(f"time: reference_year must be a number, got {reference_year!r}")
        self.reference_year = float(reference_year)
        self.year_scale = float(year_scale)

    def encode_fields(self, fields: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``(S, 3)`` fields of :func:`datetime_fields` and ``(S,)`` presence -> ``(S, 6)``."""
        year_angle = 2 * math.pi * fields[..., 0]
        day_angle = 2 * math.pi * fields[..., 1]
        year = (fields[..., 2] - self.reference_year) / self.year_scale
        out = torch.stack([torch.sin(year_angle), torch.cos(year_angle), torch.sin(day_angle),
                           torch.cos(day_angle), year], dim=-1)
        keep = present.to(out.dtype).unsqueeze(-1)
        return torch.cat([out * keep, 1.0 - keep], dim=-1)

    def forward(self, scenes: Sequence[SceneMeta], *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
        """``S`` scenes -> ``(S, 6)``."""
        fields, present = datetime_fields([s.datetime for s in scenes])
        return self.encode_fields(fields, present).to(dtype=dtype, device=device)

    def extra_repr(self) -> str:
        return f"reference_year={self.reference_year}, year_scale={self.year_scale}"


def lonlat_to_xyz(lon_deg: torch.Tensor, lat_deg: torch.Tensor) -> torch.Tensor:
    """``(...,)`` degrees -> ``(..., 3)`` unit vectors (x towards lon 0 lat 0, z north)."""
    lon, lat = torch.deg2rad(lon_deg), torch.deg2rad(lat_deg)
    return torch.stack([torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon),
                        torch.sin(lat)], dim=-1)


class LocationEncoder(nn.Module):
    """``location``: the footprint centroid on the unit sphere, optionally with Fourier features.

    :param num_bands: L frequencies per coordinate (0 for the bare unit vector).
    :param max_freq: f_max of the Fourier features (frequencies in ``[1, max_freq]``).
    """

    role = "scene"

    def __init__(self, *, num_bands: int = 4, max_freq: float = 8.0) -> None:
        super().__init__()
        if num_bands != 0:
            check_fourier_params("location", num_bands, max_freq)
        self.num_bands = int(num_bands)
        self.max_freq = float(max_freq)
        freqs = fourier_frequencies(self.num_bands, max_freq) if self.num_bands else torch.zeros(0)
        self.frequencies = freqs.to(torch.float64)  # not a buffer: never cast to half precision

    @property
    def out_dim(self) -> int:
        return 3 + 6 * self.num_bands + 1

    def encode_lonlat(self, lon_deg: torch.Tensor, lat_deg: torch.Tensor,
                      present: torch.Tensor | None = None) -> torch.Tensor:
        """``(S,)`` lon/lat in degrees (and presence) -> ``(S, out_dim)``."""
        if present is None:
            present = torch.isfinite(lon_deg) & torch.isfinite(lat_deg)
        present = present & torch.isfinite(lon_deg) & torch.isfinite(lat_deg)
        lon = torch.where(present, lon_deg, torch.zeros_like(lon_deg))
        lat = torch.where(present, lat_deg, torch.zeros_like(lat_deg))
        xyz = lonlat_to_xyz(lon, lat)
        parts = [xyz]
        if self.num_bands:
            ff = fourier_features(xyz, self.frequencies, include_input=False)  # (S, 3, 2L)
            parts.append(ff.flatten(-2))
        keep = present.to(xyz.dtype).unsqueeze(-1)
        return torch.cat([torch.cat(parts, dim=-1) * keep, 1.0 - keep], dim=-1)

    def forward(self, scenes: Sequence[SceneMeta], *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
        """``S`` scenes -> ``(S, out_dim)``."""
        nan = float("nan")
        lon = torch.tensor([nan if s.lon is None else float(s.lon) for s in scenes], dtype=torch.float64)
        lat = torch.tensor([nan if s.lat is None else float(s.lat) for s in scenes], dtype=torch.float64)
        return self.encode_lonlat(lon, lat).to(dtype=dtype, device=device)

    def extra_repr(self) -> str:
        return f"num_bands={self.num_bands}, max_freq={self.max_freq}, out_dim={self.out_dim}"
