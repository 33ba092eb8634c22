"""Shards: many chips in one safetensors file, memory-mapped, each chip a slice.

The arrays of :mod:`atomizer.atoms.io` (``value``, ``band``, ``x``, ``y``) hold every chip's atoms
one after the other; ``offsets`` (int64, chips + 1) says where each chip starts. The safetensors
metadata key ``atomizer`` holds JSON ``{"format": "atomizer.shard", "version": 1, "task": KEY,
"band_tables": [[band, ...], ...], "chips": [{"scene", "table", "row"}, ...]}``: ``band`` indices of
a chip refer to its band table. The uint8 array ``build`` holds the JSON ``{"stats", "skipped"}``
(what the build merges into stats.json and errors.jsonl), read only when asked for. (One metadata
key only: safetensors writes several in no fixed order, and shards must be the same bytes.) Reading one chip reads
only its slices.

Shards are written atomically and never changed: the file's ``task`` key names the inputs it was
built from, so a second build keeps a shard whose key still matches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.io import ATOM_ARRAYS
from atomizer.documents import check_format
from atomizer.errors import AtomsFormatError
from atomizer.io import atomic_path
from atomizer.sensors.spec import Band

SHARD_FORMAT = "atomizer.shard"
SHARD_VERSION = 1
SHARD_SUFFIX = ".atoms"
BUILD_KEY = "build"
_DTYPES = {"value": np.float32, "band": np.int16, "x": np.float32, "y": np.float32}


def save_shard(path: str | Path, chips: Sequence[AtomSet], rows: Sequence[dict[str, Any]], *,
               task: str, stats: dict[str, Any], skipped: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write ``chips`` (with their manifest ``rows``) as one shard, atomically; returns its header."""
    from safetensors.numpy import save_file

    tables: list[list[dict[str, Any]]] = []
    table_of: dict[int, int] = {}  # id of a chip's bands tuple -> its table (chips of one item share it)
    chip_meta = []
    for atoms, row in zip(chips, rows):
        index = table_of.get(id(atoms.bands))
        if index is None:
            table = [b.model_dump(mode="json", exclude_none=True) for b in atoms.bands]
            if table not in tables:
                tables.append(table)
            index = table_of[id(atoms.bands)] = tables.index(table)
        chip_meta.append({"scene": atoms.scene.to_json(), "table": index, "row": row})
    sizes = [len(a) for a in chips]
    offsets = np.zeros(len(chips) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(sizes)
    tensors = {"offsets": offsets}
    for name in ATOM_ARRAYS:
        parts = [np.asarray(getattr(a, name), dtype=_DTYPES[name]) for a in chips]
        tensors[name] = np.concatenate(parts) if parts else np.zeros(0, dtype=_DTYPES[name])
    header = {"format": SHARD_FORMAT, "version": SHARD_VERSION, "task": task,
              "n_chips": len(chips), "n_atoms": int(offsets[-1]), "band_tables": tables,
              "chips": chip_meta}
    build = {"stats": stats, "skipped": list(skipped)}
    record = json.dumps(build, sort_keys=True, separators=(",", ":")).encode()
    tensors[BUILD_KEY] = np.frombuffer(record, dtype=np.uint8).copy()
    meta = {"atomizer": json.dumps(header, sort_keys=True, separators=(",", ":"))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return header | build


def read_shard_header(path: str | Path) -> dict[str, Any]:
    """The header of a shard with its build record (stats, skipped chips); arrays are not read.
    A corrupt file is an AtomsFormatError."""
    with ShardFile(path) as shard:
        return shard.header | shard.build_record()


class ShardFile:
    """An open shard: the header is parsed and checked, chips are read on demand (memory-mapped)."""

    def __init__(self, path: str | Path) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = Path(path)
        try:
            self._handle = safe_open(str(self.path), framework="numpy")
            meta = self._handle.metadata() or {}
            self.header = json.loads(meta["atomizer"])
        except (SafetensorError, OSError, ValueError, KeyError) as exc:
            raise AtomsFormatError(
                f"{self.path}: not a readable shard (truncated or corrupt?): {exc}; rebuild the dataset"
            ) from None
        h = check_format(
            self.header,
            str(self.path),
            format_id=SHARD_FORMAT,
            version=SHARD_VERSION,
            what="an atomizer shard",
            kind="shard format",
            fix="rebuild the dataset or upgrade atomizer",
            error=AtomsFormatError,
        )
        try:
            self.n_chips = int(h["n_chips"])
            self._offsets = self._handle.get_tensor("offsets")
            shapes = {n: self._handle.get_slice(n).get_shape() for n in ATOM_ARRAYS}
            self._tables = [tuple(Band.model_validate(b) for b in t) for t in h["band_tables"]]
        except Exception as exc:  # noqa: BLE001 - safetensors / pydantic raise several kinds
            raise AtomsFormatError(f"{self.path}: corrupt shard ({str(exc).splitlines()[0]})") from None
        n_atoms = int(h["n_atoms"])
        if (self._offsets.shape != (self.n_chips + 1,) or int(self._offsets[-1]) != n_atoms
                or any(s != [n_atoms] for s in shapes.values()) or len(h["chips"]) != self.n_chips):
            raise AtomsFormatError(f"{self.path}: the shard's arrays disagree with its header; rebuild it")

    def build_record(self) -> dict[str, Any]:
        """``{"stats", "skipped"}`` as the build wrote them."""
        try:
            record = json.loads(self._handle.get_tensor(BUILD_KEY).tobytes())
            record["stats"], record["skipped"]  # noqa: B018 - presence check
        except Exception:  # noqa: BLE001 - safetensors raises its own error for a missing array
            raise AtomsFormatError(f"{self.path}: the shard has no build record; rebuild it") from None
        return record

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [c["row"] for c in self.header["chips"]]

    def chip(self, i: int) -> AtomSet:
        """Chip ``i`` as an AtomSet (reads only its slices of the arrays)."""
        n = len(self.header["chips"])
        if not 0 <= i < n:
            raise AtomsFormatError(f"{self.path}: no chip {i} in this shard (it holds {n}); the "
                                   "manifest does not match its shards: rebuild the dataset")
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        meta = self.header["chips"][i]
        if b > a:
            arrays = {n: self._handle.get_slice(n)[a:b] for n in ATOM_ARRAYS}
        else:  # safetensors cannot slice an empty range
            arrays = {n: np.zeros(0, dtype=_DTYPES[n]) for n in ATOM_ARRAYS}
        return AtomSet(bands=self._tables[meta["table"]], scene=SceneMeta.from_json(meta["scene"]),
                       **arrays)

    def close(self) -> None:
        self._handle = None

    def __enter__(self) -> ShardFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
