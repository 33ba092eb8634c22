"""The boundary of a STAC Item: raw JSON -> a validated model, before anything else reads it.

Only the fields atomizer reads are modelled; every other field is kept as it is (STAC items carry
many extensions). What is modelled is strict: a ``common_name`` that is a number, ``roles: [1]``,
an asset ``type: 5``, ``platform: 5``, ``gsd: "ten metres"``, an unparseable ``start_datetime``, a
``raster:bands`` scale of NaN or 1e39 are each one error line naming the file and the key, never a
traceback further in. Numbers are finite (JSON ``NaN`` is refused when parsing) and within the
physical ranges of :mod:`atomizer.sensors.spec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from atomizer.config import render_errors
from atomizer.documents import YamlDocument
from atomizer.errors import ReaderError
from atomizer.sensors.spec import check_gsd_m, check_offset, check_scale

#: No-data written as text in STAC (``"nan"``, ``"inf"``, ``"-inf"``).
NODATA_WORDS = ("nan", "inf", "-inf")


class _Stac(BaseModel):
    """Strict on the fields it names (no coercion: ``"10"`` is not 10), silent on the others."""

    model_config = ConfigDict(
        extra="allow", frozen=True, strict=True, allow_inf_nan=False, populate_by_name=True
    )


def _parse_datetime(value: str | None) -> str | None:
    if value is None:
        return value
    from pystac.utils import str_to_datetime

    try:
        str_to_datetime(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(
            f"{value[:40]!r} is not an RFC 3339 date-time ({exc}); write e.g. "
            "2022-10-05T11:54:11Z"
        ) from None
    return value


class _Scaling(_Stac):
    """Scale / offset / no-data of one band (``raster:bands`` entry, or a STAC 1.1 band)."""

    nodata: float | Literal["nan", "inf", "-inf"] | None = Field(
        default=None, description="No-data value (a finite number, or 'nan' / 'inf' / '-inf')."
    )
    scale: float | None = Field(default=None, description="|scale| in 1e-12..1e6.")
    offset: float | None = Field(default=None, description="|offset| <= 1e9.")

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float | None) -> float | None:
        return check_scale(v)

    @field_validator("offset")
    @classmethod
    def _offset(cls, v: float | None) -> float | None:
        return check_offset(v)


class RasterBand(_Scaling):
    """An entry of an asset's ``raster:bands`` list."""


class EoBand(_Stac):
    """An entry of an asset's ``eo:bands`` list (wavelengths in micrometres)."""

    name: str | None = None
    common_name: str | None = None
    center_wavelength: float | None = Field(default=None, description="Micrometres.")
    full_width_half_max: float | None = Field(default=None, description="Micrometres.")


class Stac11Band(_Scaling):
    """An entry of a STAC 1.1 ``bands`` list (eo and raster fields side by side)."""

    name: str | None = None
    eo_common_name: str | None = Field(default=None, alias="eo:common_name")
    common_name: str | None = None
    eo_center_wavelength: float | None = Field(default=None, alias="eo:center_wavelength")
    eo_full_width_half_max: float | None = Field(default=None, alias="eo:full_width_half_max")
    raster_scale: float | None = Field(default=None, alias="raster:scale")
    raster_offset: float | None = Field(default=None, alias="raster:offset")

    @field_validator("raster_scale")
    @classmethod
    def _raster_scale(cls, v: float | None) -> float | None:
        return check_scale(v)

    @field_validator("raster_offset")
    @classmethod
    def _raster_offset(cls, v: float | None) -> float | None:
        return check_offset(v)


def _gsd(v: float | None) -> float | None:
    return None if v is None else check_gsd_m(v)


class StacAsset(_Stac):
    """One asset: where it is, what it is, the bands it declares."""

    href: str = Field(min_length=1)
    type: str | None = None
    roles: list[str] | None = None
    gsd: float | None = Field(default=None, description="Metres, 0.01-100000.")
    eo_bands: list[EoBand] | None = Field(default=None, alias="eo:bands")
    raster_bands: list[RasterBand] | None = Field(default=None, alias="raster:bands")
    bands: list[Stac11Band] | None = None

    @field_validator("gsd")
    @classmethod
    def _check_gsd(cls, v: float | None) -> float | None:
        return _gsd(v)


class StacProperties(_Stac):
    """The item properties atomizer reads."""

    datetime: str | None
    start_datetime: str | None = None
    end_datetime: str | None = None
    platform: str | None = None
    constellation: str | None = None
    instruments: list[str] | None = None
    gsd: float | None = Field(default=None, description="Metres, 0.01-100000.")

    @field_validator("gsd")
    @classmethod
    def _check_gsd(cls, v: float | None) -> float | None:
        return _gsd(v)

    @field_validator("datetime", "start_datetime", "end_datetime")
    @classmethod
    def _dates(cls, v: str | None) -> str | None:
        return _parse_datetime(v)

    @model_validator(mode="after")
    def _some_date(self) -> StacProperties:
        if self.datetime is None and self.start_datetime is None:
            raise ValueError(
                "datetime is null and there is no start_datetime; give one of them (STAC requires "
                "start_datetime and end_datetime when datetime is null)"
            )
        return self


class StacItem(_Stac):
    """A STAC Item as atomizer reads it."""

    type: Literal["Feature"]
    stac_version: str | None = None
    id: str = Field(min_length=1)
    geometry: dict[str, Any] | None
    bbox: list[float] | None = None
    properties: StacProperties
    assets: dict[str, StacAsset]
    links: list[dict[str, Any]] = Field(default_factory=list)


def validate_item(data: Any, origin: str) -> StacItem:
    """``data`` as a :class:`StacItem`; every problem is one ``origin: key.path: problem`` line."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a JSON {type(data).__name__}"
        kind = kind.replace("JSON list", "JSON array").replace("JSON dict", "JSON object")
        raise ReaderError(f"{origin}: the document is {kind}, not a STAC Item (a JSON object)")
    if data.get("type") != "Feature":
        from atomizer.limits import clip_text

        raise ReaderError(
            f"{origin}: type is {clip_text(repr(data.get('type')), max_chars=60)}, not 'Feature': "
            "not a STAC Item; give one item (a catalog or collection is not read whole)"
        )
    try:
        return StacItem.model_validate(data)
    except ValidationError as exc:
        doc = YamlDocument(data=data, node=None, origin=origin)  # names list items; no lines in JSON
        lines = render_errors(exc, doc, model=StacItem)
        raise ReaderError("\n".join(lines)) from None


def read_item_dict(source: str | Path) -> tuple[dict[str, Any], StacItem]:
    """The raw JSON of a STAC Item file or URL and its validated model."""
    from atomizer.documents import read_json

    text = str(source)
    if "://" in text:
        import pystac

        try:
            data = pystac.StacIO.default().read_json(text)
        except Exception as exc:  # noqa: BLE001 - network and parser errors of every kind
            raise ReaderError(f"{text}: cannot read the item ({exc})") from None
    else:
        data = read_json(text, what="STAC item", error=ReaderError)
    return data, validate_item(data, text)


__all__ = ["EoBand", "RasterBand", "Stac11Band", "StacAsset", "StacItem", "StacProperties",
           "read_item_dict", "validate_item"]
