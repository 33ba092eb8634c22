"""The ``.atoms`` file: safetensors arrays + a versioned JSON header.

Layout: tensors ``value`` (float32), ``band`` (int16), ``x``, ``y`` (float32), optionally
``tokens`` or any other named extra arrays; the safetensors metadata key ``atomizer`` holds JSON
``{"format": "atomizer.atoms", "version": 1, "scene": {...}, "bands": [...]}``. safetensors files
are memory-mapped, so :func:`open_atoms` reads only the arrays asked for. Writes are atomic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.errors import AtomsFormatError
from atomizer.io import atomic_path
from atomizer.sensors.spec import Band

FORMAT_NAME = "atomizer.atoms"
FORMAT_VERSION = 1
SUFFIX = ".atoms"
ATOM_ARRAYS = ("value", "band", "x", "y")


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
    meta = {"atomizer": json.dumps(header_of(atoms))}
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
        try:
            self.header = json.loads(meta["atomizer"])
        except (KeyError, json.JSONDecodeError):
            raise AtomsFormatError(
                f"{self.path}: a safetensors file but not an .atoms file (no atomizer header)"
            ) from None
        if not isinstance(self.header, dict):
            raise AtomsFormatError(f"{self.path}: corrupt .atoms header (not a JSON object); re-tokenize")
        if self.header.get("format") != FORMAT_NAME:
            raise AtomsFormatError(f"{self.path}: unknown format {self.header.get('format')!r}")
        version = self.header.get("version")
        if version != FORMAT_VERSION:
            raise AtomsFormatError(
                f"{self.path}: .atoms format version {version} is not supported by this atomizer "
                f"(reads version {FORMAT_VERSION}); upgrade atomizer or re-tokenize"
            )
        names = set(self._handle.keys())
        missing = [n for n in ATOM_ARRAYS if n not in names]
        if missing:
            raise AtomsFormatError(f"{self.path}: missing arrays {', '.join(missing)}")
        try:
            self.scene = SceneMeta.from_json(self.header["scene"])
            self.bands = tuple(Band.model_validate(b) for b in self.header["bands"])
            n_atoms = int(self.header["n_atoms"])
        except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            first = str(exc).splitlines()[0]
            raise AtomsFormatError(f"{self.path}: corrupt .atoms header ({first}); re-tokenize") from None
        shapes = {name: self._handle.get_slice(name).get_shape() for name in ATOM_ARRAYS}
        if any(shape != [n_atoms] for shape in shapes.values()):
            raise AtomsFormatError(
                f"{self.path}: the header announces {n_atoms} atoms but the arrays have shapes "
                f"{shapes}; the file is corrupt: re-tokenize"
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
        return AtomSet(
            value=self.array("value"),
            band=self.array("band"),
            x=self.array("x"),
            y=self.array("y"),
            bands=self.bands,
            scene=self.scene,
        )


def open_atoms(path: str | Path) -> AtomsFile:
    return AtomsFile(path)


def load_atoms(path: str | Path) -> AtomSet:
    """Read a whole ``.atoms`` file into an :class:`AtomSet`."""
    with AtomsFile(path) as f:
        return f.load()
