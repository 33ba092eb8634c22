"""A small reader of ENVI spectral libraries (``.sli`` + ``.hdr``) with numpy.

Header keys used: ``samples`` (channels per spectrum), ``lines`` (spectra), ``bands`` (1),
``header offset``, ``data type``, ``byte order``, ``interleave``, ``wavelength``, ``wavelength
units``, optional ``fwhm`` and ``spectra names``. The header may sit beside the data as
``NAME.hdr`` or ``NAME.sli.hdr``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atomizer.errors import DatasetError
from atomizer.simulate.spectral import SpectralTable

#: ENVI ``data type`` codes -> numpy dtypes (byte order applied separately).
ENVI_DTYPES = {
    1: "u1",
    2: "i2",
    3: "i4",
    4: "f4",
    5: "f8",
    12: "u2",
    13: "u4",
    14: "i8",
    15: "u8",
}
#: Wavelength unit names -> nanometres per unit.
UNIT_TO_NM = {
    "nanometers": 1.0,
    "nanometer": 1.0,
    "nm": 1.0,
    "micrometers": 1000.0,
    "micrometer": 1000.0,
    "microns": 1000.0,
    "micron": 1000.0,
    "um": 1000.0,
    "\u00b5m": 1000.0,
}
#: Allowed values of the integer header keys.
INT_RANGES = {"samples": (1, 10**6), "lines": (1, 10**9), "bands": (1, 10**6),
              "header offset": (0, 2**40), "data type": (0, 100), "byte order": (0, 1)}
#: Without units, wavelengths below this are taken as micrometres.
MAX_MICROMETRE_VALUE = 100.0


@dataclass(frozen=True, eq=False)
class SpectralLibrary:
    """``spectra`` (M, C) float32 at ``wavelength_nm`` (C,); ``fwhm_nm`` when the header has it."""

    spectra: np.ndarray
    wavelength_nm: np.ndarray
    fwhm_nm: np.ndarray | None
    names: tuple[str, ...]
    path: Path

    def __len__(self) -> int:
        return int(self.spectra.shape[0])

    def table(self, source_id: str | None = None) -> SpectralTable:
        """The library's band table (channel width = sampling step when the header has no FWHM)."""
        return SpectralTable.from_wavelengths(
            self.wavelength_nm,
            self.fwhm_nm,
            source_id=source_id or self.path.stem,
            names=[f"{w:g}nm" for w in self.wavelength_nm],
        )


def find_header(path: str | Path) -> tuple[Path, Path]:
    """``(header, data)`` paths for a library given as its data file or its header."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".hdr":
        header = path
        stem = path.with_suffix("")
        candidates = [stem, stem.with_suffix(".sli")]
    else:
        header = next(
            (p for p in (Path(f"{path}.hdr"), path.with_suffix(".hdr")) if p.is_file()), None
        )
        candidates = [path]
        if header is None:
            if not path.exists():
                raise DatasetError(f"spectral library not found at {path}: no such file")
            raise DatasetError(f"{path}: no ENVI header beside it ({path.name}.hdr or .hdr)")
    if not header.is_file():
        raise DatasetError(f"spectral library header not found at {header}: no such file")
    data = next((p for p in candidates if p.is_file() and p != header), None)
    if data is None:
        raise DatasetError(f"{header}: the data file beside it ({candidates[-1].name}) is missing")
    return header, data


def read_header(path: str | Path) -> dict[str, str | list[str]]:
    """Keys (lower-case) -> value; ``{a, b, c}`` values (which may span lines) become lists of
    stripped strings. Read within the YAML size limit, line by line (linear time)."""
    from atomizer.documents import read_bytes

    path = Path(path)
    text = read_bytes(path, limit_name="yaml_bytes", what="ENVI header", error=DatasetError).decode(
        "utf-8", errors="replace"
    )
    if not text.lstrip().startswith("ENVI"):
        raise DatasetError(f"{path}: not an ENVI header (it must start with 'ENVI')")
    out: dict[str, str | list[str]] = {}
    lines = iter(text.splitlines())
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if value.startswith("{"):
            parts = [value]
            while "}" not in parts[-1]:
                nxt = next(lines, None)
                if nxt is None:
                    raise DatasetError(f"{path}: the value of '{key.strip()}' opens '{{' but never closes it")
                parts.append(nxt)
            body = " ".join(parts)
            body = body[1 : body.index("}")]
            out[key.strip().lower()] = [v.strip() for v in body.split(",")]
        else:
            out[key.strip().lower()] = value
    return out


def _int(header: dict, key: str, path: Path, default: int | None = None) -> int:
    if key not in header:
        if default is not None:
            return default
        raise DatasetError(f"{path}: ENVI header has no '{key}'")
    try:
        value = int(str(header[key]))
    except ValueError:
        raise DatasetError(
            f"{path}: ENVI header '{key}' is not an integer: {str(header[key])[:40]!r}"
        ) from None
    lo, hi = INT_RANGES.get(key, (-(2**31), 2**31))
    if not lo <= value <= hi:
        raise DatasetError(f"{path}: ENVI header '{key}' is {value}, outside {lo}..{hi}")
    return value


def _floats(header: dict, key: str, path: Path) -> np.ndarray:
    try:
        return np.array([float(v) for v in header[key] if v != ""], dtype=np.float64)
    except (ValueError, TypeError):
        raise DatasetError(f"{path}: ENVI header '{key}' must be a list of numbers") from None


def read_envi_library(path: str | Path) -> SpectralLibrary:
    """Read an ENVI spectral library (give the ``.sli`` or its header)."""
    header_path, data_path = find_header(path)
    h = read_header(header_path)
    samples = _int(h, "samples", header_path)
    lines = _int(h, "lines", header_path)
    bands = _int(h, "bands", header_path, default=1)
    offset = _int(h, "header offset", header_path, default=0)
    code = _int(h, "data type", header_path)
    order = _int(h, "byte order", header_path, default=0)
    if bands != 1:
        raise DatasetError(f"{header_path}: a spectral library has bands = 1, got {bands}")
    if code not in ENVI_DTYPES:
        raise DatasetError(f"{header_path}: unsupported ENVI data type {code}")
    dtype = np.dtype(ENVI_DTYPES[code]).newbyteorder(">" if order == 1 else "<")
    count = samples * lines
    raw = np.fromfile(data_path, dtype=dtype, count=count, offset=offset)
    if raw.size != count:
        raise DatasetError(
            f"{data_path}: expected {count} values ({lines} spectra x {samples} channels), found "
            f"{raw.size}; the file is truncated or the header is wrong"
        )
    spectra = raw.reshape(lines, samples).astype(np.float32)
    if "wavelength" not in h:
        raise DatasetError(f"{header_path}: ENVI header has no 'wavelength' list")
    wl = _floats(h, "wavelength", header_path)
    if wl.size != samples:
        raise DatasetError(f"{header_path}: {wl.size} wavelengths for {samples} channels")
    units = str(h.get("wavelength units", "")).strip().lower()
    if units in UNIT_TO_NM:
        factor = UNIT_TO_NM[units]
    else:
        factor = 1000.0 if wl.max() < MAX_MICROMETRE_VALUE else 1.0
    from atomizer.sensors.spec import RESPONSE_RANGE_NM

    lo, hi = RESPONSE_RANGE_NM
    if not (np.isfinite(wl).all() and wl.min() * factor >= lo and wl.max() * factor <= hi):
        raise DatasetError(
            f"{header_path}: wavelengths must be finite and lie within {lo:g}-{hi:g} nm; got "
            f"{wl.min() * factor:g}-{wl.max() * factor:g} nm"
        )
    fwhm = _floats(h, "fwhm", header_path) * factor if "fwhm" in h else None
    if fwhm is not None and fwhm.size != samples:
        raise DatasetError(f"{header_path}: {fwhm.size} FWHM values for {samples} channels")
    names = h.get("spectra names")
    names = (
        tuple(names)
        if isinstance(names, list) and len(names) == lines
        else tuple(f"spectrum{i}" for i in range(lines))
    )
    return SpectralLibrary(spectra, wl * factor, fwhm, names, data_path)
