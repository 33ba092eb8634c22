"""The one table of token parts: which parts a token has and how each kind is computed.

A token is the concatenation of its parts (``value``, ``position``, ``spectral``, ``time``,
``location``, and any part a plugin adds). Every part has a :class:`PartRole` that says how its
encoder is called and how its features are shared between atoms:

==============  ===================================================  =============================
role            encoder call                                         shared by
==============  ===================================================  =============================
``value``       ``encoder(value, bands, band_index) -> (S, N, D)``   nothing (per atom)
``position``    ``encoder.encode_1d(coord_m) -> (U, D / 2)``         atoms with the same x (or y)
``spectral``    ``encoder(bands, dtype=, device=) -> (B, D)``        atoms of the same band
``scene``       ``encoder(scenes, dtype=, device=) -> (S, D)``       atoms of the same sample
==============  ===================================================  =============================

Each role computes its part both ways: factorised (:meth:`PartRole.factors`: per-atom features,
tables of rows plus an index, or per-sample rows, which the Atomizer projects without building the
token matrix) and per atom (:meth:`PartRole.per_atom`: the ``(S, N, D)`` reference).

**Adding a part is a registration.** Register an encoder (``register_encoders`` hook) that declares
``part = "<name>"`` and one of the roles above as ``role``; a tokenizer config then enables it with
``<name>: {name: <encoder>, ...}``. The tokenizer, the Atomizer's projection, the naive reference
model and the factorised projection all read parts from this table; none names a part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from atomizer.atoms.atomset import AtomSet
from atomizer.atoms.batch import AtomBatch


@dataclass(frozen=True)
class AtomView:
    """What encoders read of S samples padded to N atoms: ``(S, N)`` tensors and the tables."""

    value: Tensor
    band: Tensor
    x: Tensor
    y: Tensor
    bands: tuple
    scenes: Sequence[Any]

    @classmethod
    def of_batch(cls, batch: AtomBatch) -> AtomView:
        return cls(batch.value, batch.band, batch.x, batch.y, tuple(batch.bands), batch.scenes)

    @classmethod
    def of_atoms(cls, atoms: AtomSet, dtype: torch.dtype, device: Any) -> AtomView:
        """One AtomSet as a batch of one sample, at full precision of ``dtype``."""
        def tensor(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a).to(device=device, dtype=dtype)[None]

        band = torch.from_numpy(atoms.band.astype(np.int64)).to(device)[None]
        return cls(tensor(atoms.value), band, tensor(atoms.x), tensor(atoms.y),
                   tuple(atoms.bands), [atoms.scene])


@dataclass
class Factors:
    """One part (or its halves), factorised: per-atom tensors, row tables with their ``(S, N)``
    index, per-sample rows; each keyed by factor name (``position`` -> ``position_x``, ...)."""

    per_atom: dict[str, Tensor]
    per_row: dict[str, tuple[Tensor, Tensor]]
    per_sample: dict[str, Tensor]


class PartRole:
    """How a kind of token part is computed; subclasses are the rows of :data:`ROLES`."""

    name: str = ""

    def check(self, part: str, encoder: Any) -> str | None:
        """A problem with ``encoder`` filling ``part`` (``None``: it can)."""
        return None

    def factor_dims(self, part: str, width: int) -> dict[str, int]:
        """Factor names and widths of ``part`` (its factorised pieces, in token order)."""
        return {part: width}

    def factors(self, part: str, encoder: Any, view: AtomView, dtype: torch.dtype,
                width: int) -> Factors:
        raise NotImplementedError

    def per_atom(self, part: str, encoder: Any, view: AtomView, dtype: torch.dtype,
                 width: int) -> Tensor:
        """The part of every atom's token, ``(S, N, width)``, computed atom by atom."""
        raise NotImplementedError


class ValueRole(PartRole):
    name = "value"

    def _features(self, encoder: Any, view: AtomView, dtype: torch.dtype) -> Tensor:
        return encoder(view.value.to(dtype), view.bands, view.band).to(dtype)

    def factors(self, part, encoder, view, dtype, width):
        return Factors({part: self._features(encoder, view, dtype)}, {}, {})

    def per_atom(self, part, encoder, view, dtype, width):
        return self._features(encoder, view, dtype)


class PositionRole(PartRole):
    name = "position"

    def check(self, part, encoder):
        if not hasattr(encoder, "encode_1d"):
            return "has no encode_1d(coord_m) method"
        return None

    def factor_dims(self, part, width):
        return {f"{part}_x": width // 2, f"{part}_y": width // 2}

    def factors(self, part, encoder, view, dtype, width):
        rows = {}
        for axis, coord in (("x", view.x), ("y", view.y)):
            unique, index = torch.unique(coord, return_inverse=True)
            rows[f"{part}_{axis}"] = (encoder.encode_1d(unique.to(dtype)).to(dtype), index)
        return Factors({}, rows, {})

    def per_atom(self, part, encoder, view, dtype, width):
        return encoder(view.x.to(dtype), view.y.to(dtype)).to(dtype)


class SpectralRole(PartRole):
    """Features of each band of the band table (``band_index`` picks an atom's row)."""

    name = "spectral"

    def _table(self, encoder, view, dtype, width) -> Tensor:
        device = view.value.device
        if view.bands:
            return encoder(view.bands, dtype=dtype, device=device).to(dtype)
        # only padding: keep one row so that band index 0 stays valid
        return torch.zeros(1, width, dtype=dtype, device=device)

    def factors(self, part, encoder, view, dtype, width):
        return Factors({}, {part: (self._table(encoder, view, dtype, width), view.band)}, {})

    def per_atom(self, part, encoder, view, dtype, width):
        return self._table(encoder, view, dtype, width)[view.band]


class SceneRole(PartRole):
    """Features of each sample's scene (time, location, ...), shared by all its atoms."""

    name = "scene"

    def _rows(self, encoder, view, dtype) -> Tensor:
        return encoder(view.scenes, dtype=dtype, device=view.value.device).to(dtype)

    def factors(self, part, encoder, view, dtype, width):
        return Factors({}, {}, {part: self._rows(encoder, view, dtype)})

    def per_atom(self, part, encoder, view, dtype, width):
        rows = self._rows(encoder, view, dtype)
        s, n = view.value.shape
        return rows[:, None, :].expand(s, n, rows.shape[-1])


#: Every role, by the name an encoder declares as ``role``.
ROLES: Mapping[str, PartRole] = MappingProxyType(
    {r.name: r for r in (ValueRole(), PositionRole(), SpectralRole(), SceneRole())}
)


@dataclass(frozen=True)
class TokenPart:
    """One part of the token: its name (the tokenizer config key) and its role."""

    name: str
    role: str


#: The built-in parts, in token order. Parts declared by plugin encoders follow them.
BUILTIN_PARTS: tuple[TokenPart, ...] = (
    TokenPart("value", "value"),
    TokenPart("position", "position"),
    TokenPart("spectral", "spectral"),
    TokenPart("time", "scene"),
    TokenPart("location", "scene"),
)
#: The part every token has.
REQUIRED_PART = "value"


def builtin_part(name: str) -> TokenPart | None:
    return next((p for p in BUILTIN_PARTS if p.name == name), None)
