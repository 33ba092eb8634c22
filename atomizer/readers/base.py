"""The reader interface: an image source (STAC item, GeoTIFF, ...) becomes an AtomSet plus a report.

A reader is any object with a ``name``, the ``suffixes`` it claims, ``can_read(source)`` and
``read(source, *, sensor, sensors, options) -> Reading``. Readers are registered through the
``register_readers`` hook (``register("stac", StacReader())``); :func:`reader_for` picks one by
source. Readers never print: they report through :class:`ReadReport`, warn through
:class:`ReaderWarning` and report progress through the :data:`ProgressCallback` they are handed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from atomizer.errors import AtomizerError, ReaderError, WindowError
from atomizer.limits import clip_text

if TYPE_CHECKING:
    from atomizer.atoms.atomset import AtomSet
    from atomizer.sensors.spec import SensorSpec

#: ``progress(pixels_done, pixels_total, band_name)``: called before each band is read (pixels of
#: all bands' windows together) and once at the end with ``pixels_done == pixels_total``.
ProgressCallback = Callable[[int, int, str], None]

#: Valid longitudes / latitudes of a ``bbox`` (degrees).
LON_RANGE_DEG = (-180.0, 180.0)
LAT_RANGE_DEG = (-90.0, 90.0)


class ReaderWarning(UserWarning):
    """Something in a source looks off but atoms could still be made (the CLI prints these)."""


class BandMetadataWarning(ReaderWarning):
    """A source's own band metadata (wavelength, width) disagrees with the sensor spec."""


@dataclass(frozen=True)
class PixelWindow:
    """A pixel window: ``width`` x ``height`` pixels from column ``col_off``, row ``row_off``.

    In a source whose bands have several grids, the window is on the finest grid.
    """

    col_off: int
    row_off: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise WindowError(
                f"pixel window {self.width}x{self.height} is empty; width and height must be > 0"
            )
        if self.col_off < 0 or self.row_off < 0:
            raise WindowError(
                f"pixel window starts at column {self.col_off}, row {self.row_off}; offsets must "
                "be >= 0"
            )

    @classmethod
    def parse(cls, text: str) -> PixelWindow:
        """``"COL,ROW,WIDTH,HEIGHT"`` -> window."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            col, row, width, height = (int(p) for p in parts)
        except ValueError:
            raise WindowError(
                f"pixel window {text!r} is not four integers COL,ROW,WIDTH,HEIGHT "
                "(e.g. 0,0,256,256)"
            ) from None
        return cls(col, row, width, height)


@dataclass(frozen=True)
class LonLatBBox:
    """A bounding box in longitude / latitude (degrees, WGS84): west, south, east, north."""

    west: float
    south: float
    east: float
    north: float

    def __post_init__(self) -> None:
        vals = (self.west, self.south, self.east, self.north)
        if not all(math.isfinite(v) for v in vals):
            raise WindowError(f"bbox {vals} has non-finite numbers")
        lo, hi = LON_RANGE_DEG
        if not (lo <= self.west <= hi and lo <= self.east <= hi):
            raise WindowError(
                f"bbox longitudes {self.west:g}, {self.east:g} are outside {lo:g}..{hi:g}; "
                "give W,S,E,N in degrees (longitude first)"
            )
        lo, hi = LAT_RANGE_DEG
        if not (lo <= self.south <= hi and lo <= self.north <= hi):
            raise WindowError(
                f"bbox latitudes {self.south:g}, {self.north:g} are outside {lo:g}..{hi:g}; "
                "give W,S,E,N in degrees (longitude first)"
            )
        if not (self.east > self.west and self.north > self.south):
            raise WindowError(
                f"bbox W={self.west:g} S={self.south:g} E={self.east:g} N={self.north:g} is empty; "
                "give W,S,E,N with W < E and S < N"
            )

    @classmethod
    def parse(cls, text: str) -> LonLatBBox:
        """``"W,S,E,N"`` (degrees) -> bbox."""
        try:
            vals = [float(p) for p in str(text).split(",")]
        except ValueError:
            vals = []
        if len(vals) != 4:
            raise WindowError(
                f"bbox {text!r} is not four numbers W,S,E,N in degrees (e.g. -8.9,52.3,-8.8,52.4)"
            )
        return cls(*vals)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)


@dataclass(frozen=True)
class ReadOptions:
    """What to read: an optional window (one of ``bbox`` / ``window``) and a band selection.

    ``bands``: for a STAC item, the spec bands to read (others are ignored); for a GeoTIFF, the
    spec band held by each file band, in file order (``"-"`` skips a file band).
    """

    bbox: LonLatBBox | None = None
    window: PixelWindow | None = None
    bands: tuple[str, ...] | None = None
    progress: ProgressCallback | None = None

    def __post_init__(self) -> None:
        if self.bbox is not None and self.window is not None:
            raise WindowError("give either a bbox or a pixel window, not both")
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(self.bands))
            if not self.bands:
                raise ReaderError("an empty band list was given; name at least one band")


@dataclass
class BandReading:
    """How one band was read: where from, how it was scaled, what was kept and dropped."""

    band: str
    asset: str
    asset_band: int  # 1-based band index inside the file
    href: str
    matched_by: str
    gsd_m: float
    shape: tuple[int, int]  # rows, columns actually read
    scale: float
    offset: float
    scale_from: str
    nodata: list[float]
    n_atoms: int = 0
    n_nodata: int = 0
    n_nonfinite: int = 0
    min: float | None = None
    max: float | None = None
    center_wavelength_nm: float | None = None
    fwhm_nm: float | None = None


@dataclass
class ReadReport:
    """Everything a reader can tell about a read (what ``atomizer tokenize`` prints)."""

    source: str
    reader: str
    sensor_id: str
    sensor_from: str  # "given", "detected from item properties", "item band metadata"
    crs: str | None = None
    reference_centre_m: tuple[float, float] | None = None
    window: dict[str, Any] | None = None
    bands: list[BandReading] = field(default_factory=list)
    ignored_assets: dict[str, str] = field(default_factory=dict)
    missing_bands: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_atoms: int = 0
    nbytes: int = 0

    @property
    def n_nodata(self) -> int:
        return sum(b.n_nodata for b in self.bands)

    @property
    def n_nonfinite(self) -> int:
        return sum(b.n_nonfinite for b in self.bands)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["n_nodata"] = self.n_nodata
        out["n_nonfinite"] = self.n_nonfinite
        return out


class Reading(NamedTuple):
    """What a reader returns."""

    atoms: AtomSet
    report: ReadReport


@runtime_checkable
class Reader(Protocol):
    """The interface every reader follows (built-in or from a plugin)."""

    name: str
    suffixes: tuple[str, ...]

    def can_read(self, source: str) -> bool:
        """Whether ``source`` (a path or URL) looks like something this reader reads."""

    def read(
        self,
        source: str | Path,
        *,
        sensor: SensorSpec | None = None,
        sensors: Iterable[SensorSpec] | None = None,
        options: ReadOptions | None = None,
    ) -> Reading:
        """Read ``source`` into atoms.

        :param sensor: the sensor spec to use; ``None`` lets the reader detect it among ``sensors``.
        :param sensors: candidate specs for detection (e.g. a registry).
        :param options: window, band selection, progress callback.
        """


def source_suffix(source: str | Path) -> str:
    """The lower-cased suffix of a path or URL, ignoring any ``?query``."""
    text = str(source).split("?", 1)[0].split("#", 1)[0]
    return Path(text).suffix.lower()


def _accepts(readers: Any, name: str, source: str) -> bool:
    """Whether reader ``name`` claims ``source``; a plugin reader that cannot even answer (its
    ``can_read`` raises, its import fails) is disabled in ``readers`` and reported, not fatal."""
    try:
        return bool(readers.get(name).can_read(source))
    except Exception as exc:  # noqa: BLE001 - a plugin's bug must not break every read
        disable = getattr(readers, "disable", None)
        if disable is None:
            raise
        disable(name, f"asking it whether it reads {source} raised {type(exc).__name__}: {exc}")
        return False


def reader_for(source: str | Path, readers: Any, *, name: str | None = None) -> Reader:
    """The reader for ``source``: ``name`` if given, else the one whose ``can_read`` accepts it.

    ``readers`` is a registry (``names()`` and ``get(name)``) such as ``PluginHost.readers``.
    When several readers accept a source, built-in readers win over later ones.
    """
    if name is not None:
        return _guarded(name, readers.get(name))
    accepting = [n for n in readers.names() if _accepts(readers, n, str(source))]
    if not accepting:
        claims = (
            ", ".join(f"{n} ({' '.join(readers.get(n).suffixes)})" for n in readers.names())
            or "none registered"
        )
        raise ReaderError(
            f"no reader accepts {source}: the suffix {source_suffix(source) or '(none)'!r} is not "
            f"claimed by any reader ({claims}); rename the file or choose a reader with --reader"
        )
    for preferred in ("stac", "geotiff"):
        if preferred in accepting:
            return readers.get(preferred)
    return _guarded(accepting[0], readers.get(accepting[0]))


def _guarded(name: str, reader: Any) -> Any:
    """``reader``, or for a third-party one a wrapper whose failures are one ReaderError naming
    the plugin's reader (a plugin's bug must not end in a traceback); a registered object without
    a ``read`` method is refused."""
    if not callable(getattr(reader, "read", None)):
        raise ReaderError(
            f"reader {name!r} is a {type(reader).__name__}, not a reader (it has no read method); "
            "fix or uninstall the plugin that registered it"
        )
    if type(reader).__module__.split(".")[0] == "atomizer":
        return reader
    return _PluginReader(name, reader)


class _PluginReader:
    """A third-party reader whose ``read`` failures become one :class:`ReaderError`."""

    def __init__(self, name: str, reader: Any) -> None:
        self._name, self._reader = name, reader

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._reader, attr)

    def read(self, source: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._reader.read(source, *args, **kwargs)
        except AtomizerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any bug of a plugin's reader
            raise ReaderError(
                f"reader {self._name!r} (a plugin) failed on {source}: {type(exc).__name__}: "
                f"{clip_text(str(exc), max_chars=200)}; report it to the plugin's authors"
            ) from None


_DIGITS = re.compile(r"0*(\d+)")


def normalise_band_name(name: str) -> str:
    """A band name folded for comparison: lower case, alphanumerics only, no leading zeros.

    ``"B04"``, ``"b4"`` and ``"B_4"`` all become ``"b4"``; ``"B8A"`` becomes ``"b8a"``.
    """
    text = re.sub(r"[^0-9a-z]", "", str(name).lower())
    return _DIGITS.sub(lambda m: m.group(1), text)


def parse_band_list(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"B04,B03,B02"`` -> ``("B04", "B03", "B02")``; ``None`` stays ``None``."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(p.strip() for p in parts)
    if not names or any(not n for n in names):
        raise ReaderError(f"band list {text!r} has an empty entry; write names like B04,B03,B02")
    return names
