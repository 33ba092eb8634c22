"""A modality: a sensor (spec id or YAML file), an optional band subset, a GSD and a size in pixels.

    Modality(sensor="sentinel2a", bands=["B02", "B03", "B04", "B08"], gsd_m=20, size_px=9)

``gsd_m`` is the pixel size of every band that is not natively coarser (a band is never upsampled:
a 60 m band stays at 60 m in a 20 m modality); ``None`` keeps every band's native GSD (or, for a
simulated sensor, the target band's native GSD). ``size_px`` is the side of the square footprint in
pixels of ``gsd_m`` (or of the finest band when ``gsd_m`` is ``None``); ``None`` keeps the whole
sample.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from atomizer.config import StrictModel
from atomizer.errors import ModalityError
from atomizer.limits import exceeded, limit
from atomizer.sensors.spec import SensorSpec, check_gsd_m


class Modality(StrictModel):
    """Sensor + bands + GSD + size: what a model sees (strict, frozen)."""

    model_config = ConfigDict(strict=True)

    sensor: str = Field(
        min_length=1, description="Sensor spec id / alias, or a path to a YAML spec."
    )
    bands: tuple[str, ...] | None = Field(
        default=None, description="Band names (default: every band the source can provide)."
    )
    gsd_m: float | None = Field(
        default=None, gt=0, description="Pixel size in metres (0.01-100000, finite)."
    )
    size_px: int | None = Field(
        default=None,
        gt=0,
        description="Side of the square, in pixels (its square at most the patch_pixels limit).",
    )
    name: str | None = Field(default=None, description="A label for tables and logs.")

    @field_validator("gsd_m")
    @classmethod
    def _gsd_in_range(cls, v: float | None) -> float | None:
        return None if v is None else check_gsd_m(v)

    @field_validator("size_px")
    @classmethod
    def _size_bounded(cls, v: int | None) -> int | None:
        if v is not None and v * v > limit("patch_pixels"):
            raise ValueError(str(exceeded("patch_pixels", v * v, subject=f"size_px {v:,}")))
        return v

    @field_validator("bands", mode="before")
    @classmethod
    def _bands_as_tuple(cls, v: Any) -> Any:
        if isinstance(v, list):
            return tuple(v)
        return v

    @field_validator("bands")
    @classmethod
    def _bands_unique(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("bands is empty; leave it out to use every band")
        lowered = [b.lower() for b in v]
        dupes = sorted({b for b in lowered if lowered.count(b) > 1})
        if dupes:
            raise ValueError(f"bands lists {', '.join(dupes)} more than once")
        return v

    @property
    def label(self) -> str:
        """``name``, or e.g. ``sentinel2a[B02,B03]@20m/9px``."""
        if self.name:
            return self.name
        text = self.sensor
        if self.bands:
            text += "[" + ",".join(self.bands) + "]"
        if self.gsd_m is not None:
            text += f"@{self.gsd_m:g}m"
        if self.size_px is not None:
            text += f"/{self.size_px}px"
        return text

    def spec(self, host: Any = None) -> SensorSpec:
        """The sensor spec, resolved by id / alias or read from the YAML file."""
        from atomizer.plugins.host import sensor_spec

        return sensor_spec(self.sensor, host)

    def band_names(self, spec: SensorSpec) -> list[str]:
        """The modality's bands as the spec names them (checked against the spec)."""
        if self.bands is None:
            return spec.band_names
        from atomizer.errors import BandMatchError

        try:
            return [spec.band(b).name for b in self.bands]
        except BandMatchError as exc:
            raise ModalityError(f"modality {self.label}: {exc}") from None

    def footprint_m(self, finest_gsd_m: float) -> float | None:
        """Side of the footprint in metres (``None`` when ``size_px`` is not set)."""
        if self.size_px is None:
            return None
        return self.size_px * (self.gsd_m if self.gsd_m is not None else finest_gsd_m)
