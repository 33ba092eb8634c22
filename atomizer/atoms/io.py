"""The ``.atoms`` file: safetensors arrays + a versioned JSON header.

Layout: tensors ``value`` (float32), ``band`` (int16), ``x``, ``y`` (float32), optionally
``tokens`` or any other named extra arrays; the safetensors metadata key ``atomizer`` holds JSON
``{"format": "atomizer.atoms", "version": 1, "scene": {...}, "bands": [...]}``. safetensors files
are memory-mapped, so :func:`open_atoms` reads only the arrays asked for. Writes are atomic.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.errors import AtomizerError, AtomsFormatError
from atomizer.io import atomic_path
from atomizer.limits import clip_text
from atomizer.sensors.spec import Band

FORMAT_NAME = "atomizer.atoms"
FORMAT_VERSION = 1
SUFFIX = ".atoms"
ATOM_ARRAYS = ("value", "band", "x", "y")
#: The safetensors dtype of each array, as the writer stores it.
STORED_DTYPES = {"value": "F32", "band": "I16", "x": "F32", "y": "F32"}
#: Atom positions are metres from the footprint centre: beyond this (half the Earth's
#: circumference) a position is corrupt, and drawing it would ask for an absurd raster.
MAX_ABS_POSITION_M = 2.0e7


class SceneHeader(BaseModel):
    """The ``scene`` object of an ``.atoms`` header (strict: a lon written as text is refused)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    sensor_id: str = Field(min_length=1)
    datetime: str | None = Field(default=None, description="ISO 8601.")
    lon: float | None = Field(default=None, ge=-180.0, le=180.0, description="Degrees east.")
    lat: float | None = Field(default=None, ge=-90.0, le=90.0, description="Degrees north.")
    crs: str | None = None
    source_id: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("datetime")
    @classmethod
    def _iso(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                dt.datetime.fromisoformat(v)
            except ValueError as exc:
                raise ValueError(f"not an ISO 8601 date-time ({exc})") from None
        return v


class AtomsHeader(BaseModel):
    """The JSON header of an ``.atoms`` file (format and version are checked before)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    n_atoms: int = Field(ge=0)
    scene: SceneHeader
    bands: list[Band]


def _header(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """The parsed JSON header of ``path``'s safetensors metadata (bounded, finite numbers)."""
    from atomizer.documents import parse_json

    if "atomizer" not in meta:
        raise AtomsFormatError(
            f"{path}: a safetensors file but not an .atoms file (no atomizer header)"
        )
    header = parse_json(meta["atomizer"], origin=f"{path}: .atoms header", error=AtomsFormatError)
    if not isinstance(header, dict):
        raise AtomsFormatError(f"{path}: corrupt .atoms header (not a JSON object); re-tokenize")
    return header


def validate_header(header: dict[str, Any], path: Path) -> AtomsHeader:
    """The header as a model; every problem is one line naming the key."""
    from atomizer.config import render_errors
    from atomizer.documents import YamlDocument

    try:
        return AtomsHeader.model_validate(header)
    except ValidationError as exc:
        doc = YamlDocument(data=header, node=None, origin=f"{path}: corrupt .atoms header")
        lines = render_errors(exc, doc, model=AtomsHeader)
        raise AtomsFormatError("\n".join(f"{line}; re-tokenize" for line in lines)) from None


def header_of(atoms: AtomSet) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "n_atoms": len(atoms),
        "scene": atoms.scene.to_json(),
        "bands": [b.model_dump(mode="json", exclude_none=True) for b in atoms.bands],
    }


def save_atoms(
    atoms: AtomSet, path: str | Path, *, extra: Mapping[str, np.ndarray] | None = None
) -> Path:
    """Write ``atoms`` (and optional extra arrays such as token features) to ``path`` atomically."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = {name: np.ascontiguousarray(getattr(atoms, name)) for name in ATOM_ARRAYS}
    for name, arr in (extra or {}).items():
        if name in tensors:
            raise AtomsFormatError(f"extra array name {name!r} clashes with an atom array")
        tensors[name] = np.ascontiguousarray(arr)
    try:
        meta = {"atomizer": json.dumps(header_of(atoms), allow_nan=False)}
    except ValueError:
        raise AtomsFormatError(
            "the scene metadata holds a NaN or infinite number; it cannot be written"
        ) from None
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


class AtomsFile:
    """An open ``.atoms`` file: the header is parsed, arrays are read on demand (memory-mapped)."""

    def __init__(self, path: str | Path) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = Path(path)
        if not self.path.is_file():
            raise AtomsFormatError(f"{self.path}: no such file")
        try:
            self._handle = safe_open(str(self.path), framework="numpy")
            meta = self._handle.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise AtomsFormatError(
                f"{self.path}: not a readable .atoms file (truncated or corrupt?): {exc}"
            ) from None
        self.header = _header(meta, self.path)
        if self.header.get("format") != FORMAT_NAME:
            raise AtomsFormatError(
                f"{self.path}: unknown format {clip_text(repr(self.header.get('format')), max_chars=60)}"
            )
        version = self.header.get("version")
        if version != FORMAT_VERSION:
            raise AtomsFormatError(
                f"{self.path}: .atoms format version {clip_text(version, max_chars=40)} is not supported by this atomizer "
                f"(reads version {FORMAT_VERSION}); upgrade atomizer or re-tokenize"
            )
        names = set(self._handle.keys())
        missing = [n for n in ATOM_ARRAYS if n not in names]
        if missing:
            raise AtomsFormatError(f"{self.path}: missing arrays {', '.join(missing)}")
        valid = validate_header(self.header, self.path)
        self.scene = SceneMeta.from_json(valid.scene.model_dump())
        self.bands = tuple(valid.bands)
        n_atoms = valid.n_atoms
        shapes = {name: self._handle.get_slice(name).get_shape() for name in ATOM_ARRAYS}
        if any(shape != [n_atoms] for shape in shapes.values()):
            raise AtomsFormatError(
                f"{self.path}: the header announces {n_atoms} atoms but the arrays have shapes "
                f"{shapes}; the file is corrupt: re-tokenize"
            )
        for name in ATOM_ARRAYS:  # exactly what the writer stores: a cast would wrap or round
            got = str(self._handle.get_slice(name).get_dtype())
            if got != STORED_DTYPES[name]:
                raise AtomsFormatError(
                    f"{self.path}: array {name!r} is stored as {got}, not {STORED_DTYPES[name]}; "
                    "the file is corrupt: re-tokenize"
                )

    @property
    def n_atoms(self) -> int:
        return int(self.header["n_atoms"])

    def keys(self) -> list[str]:
        return list(self._handle.keys())

    def array(self, name: str) -> np.ndarray:
        try:
            return self._handle.get_tensor(name)
        except Exception as exc:  # noqa: BLE001 - safetensors raises several kinds
            raise AtomsFormatError(f"{self.path}: cannot read array {name!r}: {exc}") from None

    def close(self) -> None:
        """Release the memory map (arrays already returned stay valid: they are copies)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None and hasattr(handle, "__exit__"):
            handle.__exit__(None, None, None)

    def __enter__(self) -> AtomsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of array ``name`` without reading it."""
        try:
            return tuple(self._handle.get_slice(name).get_shape())
        except Exception as exc:  # noqa: BLE001
            raise AtomsFormatError(f"{self.path}: no array {name!r} ({exc})") from None

    def load(self) -> AtomSet:
        """The atoms; non-finite values or positions, and positions beyond
        :data:`MAX_ABS_POSITION_M`, mean a corrupt file."""
        arrays = {name: self.array(name) for name in ATOM_ARRAYS}
        for name in ("value", "x", "y"):
            a = arrays[name]
            if a.dtype.kind != "f":
                raise AtomsFormatError(f"{self.path}: array {name!r} is {a.dtype}, not float")
            bad = ~np.isfinite(a)
            if name != "value":
                bad |= np.abs(a) > MAX_ABS_POSITION_M
            if bad.any():
                what = "non-finite" if name == "value" else "non-finite or absurd (beyond " \
                    f"{MAX_ABS_POSITION_M:g} m)"
                raise AtomsFormatError(
                    f"{self.path}: {int(bad.sum()):,} atom(s) have {what} {name!r}; the file is "
                    "corrupt: re-tokenize"
                )
        try:
            return AtomSet(**arrays, bands=self.bands, scene=self.scene)
        except AtomizerError as exc:
            raise AtomsFormatError(f"{self.path}: {exc}; the file is corrupt: re-tokenize") from None


def open_atoms(path: str | Path) -> AtomsFile:
    return AtomsFile(path)


def load_atoms(path: str | Path) -> AtomSet:
    """Read a whole ``.atoms`` file into an :class:`AtomSet`."""
    with AtomsFile(path) as f:
        return f.load()
