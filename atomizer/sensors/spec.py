"""Pydantic models of a sensor: :class:`Band` and :class:`SensorSpec`.

Units live in the field names: wavelengths in nanometres, ground sampling distance in metres.
The models are strict (unknown keys are rejected) and frozen (a spec never changes once loaded).
Validation is physical as well as structural: it catches the usual unit slips (micrometres written
where nanometres belong, a FWHM wider than its centre, a common name that disagrees with the centre).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from atomizer.config import StrictModel

#: Valid centre wavelengths, in nm. Anything below is almost certainly micrometres (0.665) and
#: anything above is outside the optical / thermal range this toolkit models.
MIN_CENTER_NM = 300.0
MAX_CENTER_NM = 15000.0

#: STAC ``eo`` common names and the wavelength range (nm) they stand for (STAC eo extension v2 /
#: STAC 1.1 band common-name table). A spec band whose centre is outside its common name's range
#: (beyond :data:`COMMON_NAME_TOLERANCE_NM`) is rejected.
COMMON_NAME_RANGES_NM: dict[str, tuple[float, float]] = {
    "pan": (400.0, 1000.0),
    "coastal": (400.0, 450.0),
    "blue": (450.0, 530.0),
    "green": (510.0, 600.0),
    "yellow": (580.0, 620.0),
    "red": (620.0, 690.0),
    "rededge": (690.0, 790.0),
    "rededge071": (690.0, 730.0),
    "rededge075": (730.0, 760.0),
    "rededge078": (760.0, 800.0),
    "nir": (750.0, 1000.0),
    "nir08": (750.0, 900.0),
    "nir09": (850.0, 1050.0),
    "cirrus": (1350.0, 1400.0),
    "swir12": (1190.0, 1260.0),
    "swir16": (1550.0, 1750.0),
    "swir22": (2080.0, 2350.0),
    "lwir": (10400.0, 12500.0),
    "lwir11": (10400.0, 11500.0),
    "lwir12": (11500.0, 12510.0),
}
COMMON_NAME_TOLERANCE_NM = 15.0

#: Physical ranges of the other numbers a spec (or a STAC item, or a raster's metadata) may give.
#: NaN and infinity are refused everywhere (a no-data marker excepted); these bounds catch the
#: absurd rest (a GSD of 1e-300 m, a scale of 1e39 that overflows float32 values).
GSD_RANGE_M = (0.01, 100_000.0)
MIN_FWHM_NM = 0.01
#: ``|scale|`` range: DN * scale + offset must stay well inside float32.
SCALE_RANGE = (1e-12, 1e6)
#: ``|offset|`` and ``|stats.mean|`` at most this (physical units).
MAX_ABS_OFFSET = 1e9

Modality = Literal["optical", "thermal", "sar"]


def check_scale(v: float | None) -> float | None:
    """``v`` when it is a usable scale (``SCALE_RANGE`` in absolute value), else ValueError."""
    if v is not None and not (SCALE_RANGE[0] <= abs(v) <= SCALE_RANGE[1]):
        raise ValueError(
            f"scale {v:g} is outside {SCALE_RANGE[0]:g}..{SCALE_RANGE[1]:g} in absolute value; "
            "physical = DN * scale + offset"
        )
    return v


def check_offset(v: float | None) -> float | None:
    """``v`` when it is a usable offset (at most ``MAX_ABS_OFFSET`` in absolute value)."""
    if v is not None and not (math.isfinite(v) and abs(v) <= MAX_ABS_OFFSET):
        raise ValueError(f"offset {v:g} is beyond +-{MAX_ABS_OFFSET:g}; check the units")
    return v


def check_gsd_m(v: float) -> float:
    """``v`` when it is a plausible ground sampling distance (``GSD_RANGE_M``), else ValueError."""
    lo, hi = GSD_RANGE_M
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"GSD {v:g} m is outside the physical range {lo:g}-{hi:g} m")
    return v


#: Where a tabulated response may lie (band centres' range, with room for the tails).
RESPONSE_RANGE_NM = (MIN_CENTER_NM / 2, MAX_CENTER_NM * 2)
#: Largest relative response value accepted (responses are relative; peak 1 is usual).
MAX_RELATIVE_RESPONSE = 1e6


class SpectralResponse(StrictModel):
    """A tabulated relative spectral response: ``value[i]`` at ``wavelength_nm[i]`` (ascending)."""

    wavelength_nm: list[float] = Field(
        min_length=2, description="Ascending finite wavelengths in nanometres."
    )
    value: list[float] = Field(min_length=2, description="Relative response, finite and >= 0.")

    @model_validator(mode="after")
    def _check(self) -> SpectralResponse:
        if len(self.wavelength_nm) != len(self.value):
            raise ValueError(
                f"wavelength_nm has {len(self.wavelength_nm)} entries but value has "
                f"{len(self.value)}; give one response value per wavelength"
            )
        if any(b <= a for a, b in zip(self.wavelength_nm, self.wavelength_nm[1:])):
            raise ValueError("wavelength_nm must be strictly increasing")
        lo, hi = RESPONSE_RANGE_NM
        if self.wavelength_nm[0] < lo or self.wavelength_nm[-1] > hi:
            raise ValueError(
                f"wavelength_nm spans {self.wavelength_nm[0]:g}-{self.wavelength_nm[-1]:g} nm, "
                f"outside {lo:g}-{hi:g} nm; give the response in nanometres"
            )
        if any((not math.isfinite(v)) or v < 0 for v in self.value):
            raise ValueError("response values must be finite and >= 0")
        if max(self.value) > MAX_RELATIVE_RESPONSE:
            raise ValueError(
                f"response values reach {max(self.value):g}; give relative values (peak 1)"
            )
        if max(self.value) <= 0:
            raise ValueError("response is zero everywhere; give at least one positive value")
        return self


class BandStats(StrictModel):
    """Normalisation statistics of a band's physical values (after scale/offset)."""

    mean: float = Field(
        ge=-MAX_ABS_OFFSET, le=MAX_ABS_OFFSET, description="Finite mean of the physical values."
    )
    std: float = Field(gt=0, le=MAX_ABS_OFFSET, description="Finite standard deviation, > 0.")


class Band(StrictModel):
    """One spectral band of a sensor."""

    name: str = Field(min_length=1, description="Band name as the agency writes it, e.g. B04.")
    common_name: str | None = Field(
        default=None, description="STAC eo common name (blue, red, nir08, ...), if one applies."
    )
    description: str | None = None
    center_wavelength_nm: float = Field(description="Centre wavelength in nanometres.")
    fwhm_nm: float = Field(
        ge=MIN_FWHM_NM,
        description=f"Full width at half maximum in nanometres ({MIN_FWHM_NM:g} nm up to the centre).",
    )
    gsd_m: float = Field(
        gt=0,
        description=f"Native ground sampling distance in metres ({GSD_RANGE_M[0]:g}-"
        f"{GSD_RANGE_M[1]:g} m).",
    )
    response: SpectralResponse | None = None
    scale: float | None = Field(
        default=None,
        description=f"physical = DN * scale + offset; |scale| in {SCALE_RANGE[0]:g}..{SCALE_RANGE[1]:g}.",
    )
    offset: float | None = Field(
        default=None, description=f"Added after the scale; |offset| <= {MAX_ABS_OFFSET:g}."
    )
    nodata: float | None = Field(
        default=None,
        allow_inf_nan=True,
        description="Digital number that marks no data (NaN allowed: non-finite values are "
        "never atoms anyway).",
    )
    stats: BandStats | None = None
    asset_keys: list[str] = Field(
        default_factory=list, description="STAC asset keys that hold this band, most likely first."
    )

    @field_validator(
        "center_wavelength_nm", "fwhm_nm", "gsd_m", "scale", "offset", "nodata", mode="before"
    )
    @classmethod
    def _numbers_only(cls, v: object) -> object:
        # no silent coercion: YAML ``true`` is not 1 nm and the string "10" is not 10 m
        if isinstance(v, (bool, str)):
            raise ValueError(f"must be a number, not {type(v).__name__} {v!r}")
        return v

    @field_validator("gsd_m")
    @classmethod
    def _gsd_in_range(cls, v: float) -> float:
        return check_gsd_m(v)

    @field_validator("scale")
    @classmethod
    def _scale_in_range(cls, v: float | None) -> float | None:
        return check_scale(v)

    @field_validator("offset")
    @classmethod
    def _offset_in_range(cls, v: float | None) -> float | None:
        return check_offset(v)

    @field_validator("center_wavelength_nm")
    @classmethod
    def _center_in_range(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("center_wavelength_nm must be a finite number of nanometres")
        if v < MIN_CENTER_NM or v > MAX_CENTER_NM:
            hint = ""
            if 0.3 <= v <= 15.0:
                hint = f"; it looks like micrometres: write {v * 1000:g} (nm) instead of {v:g}"
            raise ValueError(
                f"centre wavelength {v:g} nm is outside {MIN_CENTER_NM:g}-{MAX_CENTER_NM:g} nm{hint}"
            )
        return v

    @field_validator("common_name")
    @classmethod
    def _known_common_name(cls, v: str | None) -> str | None:
        if v is not None and v not in COMMON_NAME_RANGES_NM:
            known = ", ".join(sorted(COMMON_NAME_RANGES_NM))
            raise ValueError(f"unknown STAC common name {v!r}; use one of: {known}, or leave it out")
        return v

    @model_validator(mode="after")
    def _physical(self) -> Band:
        if self.fwhm_nm >= self.center_wavelength_nm:
            raise ValueError(
                f"fwhm_nm {self.fwhm_nm:g} is not below the centre {self.center_wavelength_nm:g} nm; "
                "a band is narrower than its centre wavelength (check the units: both in nm)"
            )
        if self.common_name is not None:
            lo, hi = COMMON_NAME_RANGES_NM[self.common_name]
            c = self.center_wavelength_nm
            if not (lo - COMMON_NAME_TOLERANCE_NM <= c <= hi + COMMON_NAME_TOLERANCE_NM):
                raise ValueError(
                    f"common name {self.common_name!r} covers {lo:g}-{hi:g} nm but the centre is "
                    f"{c:g} nm; fix the centre or the common name"
                )
        if self.response is not None:
            wl = self.response.wavelength_nm
            if not (wl[0] <= self.center_wavelength_nm <= wl[-1]):
                raise ValueError(
                    f"the tabulated response spans {wl[0]:g}-{wl[-1]:g} nm, which does not contain "
                    f"the centre {self.center_wavelength_nm:g} nm"
                )
        return self

    @property
    def identity(self) -> tuple:
        """What makes two bands the same band: name, centre, FWHM, GSD and response.

        AtomSets and batches merge bands with equal identities into one band-table row.
        """
        resp = self.response
        table = None if resp is None else (tuple(resp.wavelength_nm), tuple(resp.value))
        return (self.name, self.center_wavelength_nm, self.fwhm_nm, self.gsd_m, table)

    @property
    def lower_nm(self) -> float:
        return self.center_wavelength_nm - self.fwhm_nm / 2

    @property
    def upper_nm(self) -> float:
        return self.center_wavelength_nm + self.fwhm_nm / 2


class StacHints(StrictModel):
    """Values of STAC item properties that identify items of this sensor (case-insensitive)."""

    platform: list[str] = Field(default_factory=list)
    constellation: list[str] = Field(default_factory=list)
    instruments: list[str] = Field(default_factory=list)


#: Names a quality mask may give its flags (``tokenize --mask cloud,shadow`` drops those atoms).
MASK_NAMES = ("nodata", "saturated", "cloud", "shadow", "cirrus", "snow", "water")


class QualityMask(StrictModel):
    """A product's quality layer: which asset holds it and which values mean what.

    ``encoding: classes``: each flag lists the layer's class values (Sentinel-2 L2A ``SCL``);
    ``encoding: bits``: each flag lists bit positions, any of them set (Landsat ``QA_PIXEL``).
    """

    asset_keys: list[str] = Field(min_length=1, description="Asset keys of the quality layer.")
    encoding: Literal["classes", "bits"]
    flags: dict[str, list[int]] = Field(min_length=1, description="Mask name -> classes or bits.")
    source: str | None = Field(default=None, description="The agency document of the values.")

    @model_validator(mode="after")
    def _flags(self) -> QualityMask:
        for name, values in self.flags.items():
            if name not in MASK_NAMES:
                raise ValueError(f"unknown mask name {name!r}; use {', '.join(MASK_NAMES)}")
            top = 63 if self.encoding == "bits" else 65535
            if not values or any(not 0 <= v <= top for v in values):
                raise ValueError(f"flags.{name}: give {self.encoding} from 0 to {top}")
        return self


class SensorSpec(StrictModel):
    """A sensor: identity, provenance, STAC matching hints and its band table.

    Build one from YAML through :func:`atomizer.sensors.resolve_sensor` or the registry; a spec
    that ``extends:`` another is resolved by the registry before it becomes a ``SensorSpec``.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Lower-case id, e.g. landsat8.")
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    platforms: list[str] = Field(default_factory=list)
    instrument: str | None = None
    modality: Modality = "optical"
    description: str | None = None
    sources: list[str] = Field(min_length=1, description="Agency documents the numbers come from.")
    notes: list[str] = Field(default_factory=list, description="Disagreements between sources, etc.")
    stac: StacHints = Field(default_factory=StacHints)
    extends: str | None = Field(default=None, description="Id of the spec this one was derived from.")
    bands: list[Band] = Field(min_length=1)
    quality: QualityMask | None = Field(default=None, description="The quality layer, if any.")

    @model_validator(mode="after")
    def _unique_bands(self) -> SensorSpec:
        seen: dict[str, str] = {}  # lower-case name -> name: band lookups ignore case
        keys: dict[str, str] = {}
        for band in self.bands:
            other = seen.get(band.name.lower())
            if other == band.name:
                raise ValueError(
                    f"duplicate band name {band.name!r}; every band needs its own name"
                )
            if other is not None:
                raise ValueError(
                    f"band names {other!r} and {band.name!r} differ only in case, and band names "
                    "are looked up ignoring case; rename one"
                )
            seen[band.name.lower()] = band.name
            for key in band.asset_keys:
                if key.lower() in keys:
                    raise ValueError(
                        f"asset key {key!r} is claimed by bands {keys[key.lower()]!r} and "
                        f"{band.name!r}; an asset key must name one band"
                    )
                keys[key.lower()] = band.name
        return self

    # --- conveniences ---------------------------------------------------------------------------
    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def gsds_m(self) -> list[float]:
        return sorted({b.gsd_m for b in self.bands})

    def band(self, name: str) -> Band:
        """The band called ``name`` (case-insensitive; also matches common names and asset keys)."""
        key = name.lower()
        for b in self.bands:
            if b.name.lower() == key:
                return b
        from atomizer.errors import BandMatchError

        for b in self.bands:
            if key in (k.lower() for k in b.asset_keys):
                return b
        by_common = [b for b in self.bands if (b.common_name or "").lower() == key]
        if len(by_common) == 1:
            return by_common[0]
        if len(by_common) > 1:
            raise BandMatchError(
                f"sensor {self.id!r} has several {name!r} bands "
                f"({', '.join(b.name for b in by_common)}); name the band instead"
            )

        raise BandMatchError(
            f"sensor {self.id!r} has no band {name!r}; its bands are {', '.join(self.band_names)}"
        )

    def select(self, names: list[str], *, new_id: str | None = None) -> SensorSpec:
        """A copy restricted to ``names`` (in that order)."""
        bands = [self.band(n) for n in names]
        update: dict = {"bands": bands}
        if new_id is not None:
            update.update(id=new_id, aliases=[], extends=self.id)
        return self.model_copy(update=update)

    def names(self) -> list[str]:
        """The id and every alias, lower-cased."""
        return [self.id.lower(), *(a.lower() for a in self.aliases)]
