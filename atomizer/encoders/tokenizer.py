"""The :class:`Tokenizer`: atoms -> token features, whole or factorised.

A token is the concatenation, in this order, of the parts that the config enables::

    token = [ value (Dv) | position (Dp = 2 * Dp1) | spectral (Ds) | time (Dt) | location (Dl) ]

``position`` is itself ``[phi_1d(x) (Dp1) | phi_1d(y) (Dp1)]``. ``Tokenizer.dims`` gives each
enabled part's width (in that order), ``Tokenizer.dim`` the total D.

Two ways to get them:

- ``tokens(atoms) -> (N, D)``: the full matrix for one AtomSet (small inputs, export, baselines).
- ``parts(batch) -> TokenParts``: the factorised parts of an :class:`~atomizer.atoms.AtomBatch`
  of S samples padded to N atoms over a merged table of B bands:

  ==============  ============  =================================================================
  field           shape         meaning
  ==============  ============  =================================================================
  ``value``       (S, N, Dv)    per-atom value features (padding rows: features of value 0)
  ``mask``        (S, N) bool   True for real atoms (``batch.mask``)
  ``band``        (S, N) int64  row of ``spectral`` for each atom (``batch.band``)
  ``spectral``    (B, Ds)       per-band spectral features for ``batch.bands`` (>= 1 row)
  ``position_x``  (Ux, Dp1)     features of the Ux unique x coordinates of the batch
  ``x_index``     (S, N) int64  row of ``position_x`` for each atom
  ``position_y``  (Uy, Dp1)     features of the Uy unique y coordinates
  ``y_index``     (S, N) int64  row of ``position_y`` for each atom
  ``time``        (S, Dt)       per-scene time features
  ``location``    (S, Dl)       per-scene location features
  ==============  ============  =================================================================

  Disabled parts are ``None``. Because a model's first layer is linear,
  ``W . token = W_v phi_v + W_px phi_x[x_index] + W_py phi_y[y_index] + W_s phi_s[band] + ...``:
  :func:`project_parts` computes this without ever building the (S, N, D) token tensor; the
  projections of positions, bands and scenes are computed once per unique coordinate, band and scene.
  ``TokenParts.assemble()`` builds the full (S, N, D) tensor (reference / small inputs only).

Encoders from plugins (``register_encoders``) fill a part by duck typing; each exposes ``out_dim``
(an int) and may declare ``role`` (checked against the part):

- ``value`` (role ``value``): ``encoder(value, bands, band_index) -> (..., out_dim)``, ``value`` and
  ``band_index`` of one shape, ``bands`` the band table.
- ``position`` (role ``position``): ``encoder(x_m, y_m) -> (..., out_dim)`` equal to
  ``cat([encoder.encode_1d(x_m), encoder.encode_1d(y_m)], -1)``.
- ``spectral`` (role ``spectral``): ``encoder(bands, dtype=, device=) -> (B, out_dim)``.
- ``time`` / ``location`` (role ``scene``): ``encoder(scenes, dtype=, device=) -> (S, out_dim)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from atomizer.atoms.atomset import AtomSet
from atomizer.atoms.batch import AtomBatch
from atomizer.encoders.config import PART_NAMES, TokenizerConfig, build_encoder
from atomizer.errors import EncoderError

#: The ``role`` an encoder must declare (when it declares one) to fill each part.
PART_ROLES: Mapping[str, str] = MappingProxyType({
    "value": "value", "position": "position", "spectral": "spectral", "time": "scene",
    "location": "scene",
})
_DTYPES: Mapping[str, torch.dtype] = MappingProxyType({"float32": torch.float32, "float64": torch.float64})


@dataclass
class TokenParts:
    """The factorised token features of an :class:`AtomBatch` (shapes in the module docstring)."""

    value: torch.Tensor
    mask: torch.Tensor
    band: torch.Tensor
    dims: dict[str, int] = field(default_factory=dict)
    spectral: torch.Tensor | None = None
    position_x: torch.Tensor | None = None
    x_index: torch.Tensor | None = None
    position_y: torch.Tensor | None = None
    y_index: torch.Tensor | None = None
    time: torch.Tensor | None = None
    location: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return sum(self.dims.values())

    def slices(self) -> dict[str, slice]:
        """Columns of each part in the full token (``W[:, slices['spectral']]`` is ``W_s``)."""
        out, start = {}, 0
        for part, width in self.dims.items():
            out[part] = slice(start, start + width)
            start += width
        return out

    def per_atom(self, part: str) -> torch.Tensor:
        """One part expanded to ``(S, N, width)`` (reference; builds a per-atom tensor)."""
        s, n = self.mask.shape
        if part == "value":
            return self.value
        if part == "position":
            return torch.cat([self.position_x[self.x_index], self.position_y[self.y_index]], dim=-1)
        if part == "spectral":
            return self.spectral[self.band]
        if part in ("time", "location"):
            scene = getattr(self, part)
            return scene[:, None, :].expand(s, n, scene.shape[-1])
        raise KeyError(part)

    def assemble(self) -> torch.Tensor:
        """The full ``(S, N, D)`` token tensor (only for small inputs and tests)."""
        return torch.cat([self.per_atom(part) for part in self.dims], dim=-1)

    def to(self, device: torch.device | str) -> TokenParts:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return TokenParts(**moved)


def project_parts(parts: TokenParts, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(parts.assemble(), weight, bias)`` without building the ``(S, N, D)`` tokens.

    ``weight`` is ``(D_out, D)`` over the full token layout. Positions, bands and scenes are
    projected once per unique coordinate / band / scene into one small table; each atom then sums
    its rows of that table in a single fused pass (``embedding_bag``), and the per-atom value term
    is accumulated into the same buffer (``addmm_``): ``(S, N, D_out)``, two passes over it.
    """
    if weight.shape[-1] != parts.dim:
        raise EncoderError(f"weight has {weight.shape[-1]} input columns but tokens have {parts.dim}")
    cols = parts.slices()
    s, n = parts.mask.shape
    d_out = weight.shape[0]
    tables, indices, offset = [], [], 0

    def add_rows(features: torch.Tensor, w: torch.Tensor, index: torch.Tensor) -> None:
        nonlocal offset
        tables.append(features.to(w.dtype) @ w.T)
        indices.append(index.reshape(s, n) + offset)
        offset += features.shape[0]

    if parts.position_x is not None:
        w = weight[:, cols["position"]]
        half = parts.position_x.shape[-1]
        add_rows(parts.position_x, w[:, :half], parts.x_index)
        add_rows(parts.position_y, w[:, half:], parts.y_index)
    if parts.spectral is not None:
        add_rows(parts.spectral, weight[:, cols["spectral"]], parts.band)
    scene_index = torch.arange(s, device=parts.mask.device)[:, None].expand(s, n)
    for part in ("time", "location"):
        scene = getattr(parts, part)
        if scene is not None:
            add_rows(scene, weight[:, cols[part]], scene_index)
    value = parts.value.to(weight.dtype).reshape(s * n, -1)
    if tables:
        bags = torch.stack(indices, dim=-1).reshape(s * n, len(indices))
        out = torch.nn.functional.embedding_bag(bags, torch.cat(tables), mode="sum")
        out = out.addmm_(value, weight[:, cols["value"]].T)
    else:
        out = value @ weight[:, cols["value"]].T
    if bias is not None:
        out = out.add_(bias)
    return out.reshape(s, n, d_out)


def max_factorisation_error(parts: TokenParts, weight: torch.Tensor,
                            bias: torch.Tensor | None = None) -> float:
    """Largest ``|project_parts - linear(assemble)|`` over real atoms (a reference check)."""
    full = torch.nn.functional.linear(parts.assemble(), weight, bias)
    diff = (project_parts(parts, weight, bias) - full)[parts.mask]
    return float(diff.abs().max()) if diff.numel() else 0.0


class Tokenizer(nn.Module):
    """Composes the configured encoders into token features (no trainable parameters).

    Build with :meth:`from_config`; encoder names resolve through ``host.encoders``.
    """

    def __init__(self, config: TokenizerConfig, *, host: Any = None) -> None:
        super().__init__()
        if host is None:
            from atomizer.plugins.host import builtin_host

            host = builtin_host()
        self.config = config
        self.dtype = _DTYPES[config.dtype]
        self._encoders: dict[str, Any] = {}
        self._dims: dict[str, int] = {}
        registry = host.encoders
        for part in PART_NAMES:
            spec = getattr(config, part)
            if spec is None:
                continue
            encoder = build_encoder(part, spec, registry)
            role = getattr(encoder, "role", None)
            if role is not None and role != PART_ROLES[part]:
                raise EncoderError(
                    f"{part}: encoder {spec.name!r} is a {role} encoder and cannot fill the {part!r} "
                    f"part; choose a {PART_ROLES[part]} encoder"
                )
            if part == "position" and not hasattr(encoder, "encode_1d"):
                raise EncoderError(f"position: encoder {spec.name!r} has no encode_1d(coord_m) method")
            width = getattr(encoder, "out_dim", None)
            if not isinstance(width, int) or width < 1:
                raise EncoderError(f"{part}: encoder {spec.name!r} must expose out_dim (an int >= 1)")
            self._encoders[part] = encoder
            self._dims[part] = width
            if isinstance(encoder, nn.Module):
                self.add_module(f"{part}_encoder", encoder)

    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any] | TokenizerConfig | None = None,
                    host: Any = None) -> Tokenizer:
        """A tokenizer from a YAML path, a mapping or a config (``None``: the default config)."""
        return cls(TokenizerConfig.load(config), host=host)

    @property
    def dims(self) -> dict[str, int]:
        """Width of each enabled part, in token order."""
        return dict(self._dims)

    @property
    def dim(self) -> int:
        """Total token width D."""
        return sum(self._dims.values())

    def encoder(self, part: str) -> Any:
        """The encoder filling ``part`` (KeyError when the part is disabled)."""
        return self._encoders[part]

    # --- whole tokens ---------------------------------------------------------------------------------
    def tokens(self, atoms: AtomSet, *, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """``(N, D)`` token features of one AtomSet, row i for atom i."""
        dtype = dtype or self.dtype
        band = torch.from_numpy(atoms.band.astype(np.int64)).to(device)
        feats = [self._encoders["value"](torch.from_numpy(atoms.value).to(device=device, dtype=dtype),
                                         atoms.bands, band)]
        if "position" in self._encoders:
            x = torch.from_numpy(atoms.x).to(device=device, dtype=dtype)
            y = torch.from_numpy(atoms.y).to(device=device, dtype=dtype)
            feats.append(self._encoders["position"](x, y))
        if "spectral" in self._encoders:
            table = self._encoders["spectral"](atoms.bands, dtype=dtype, device=device)
            feats.append(table[band] if len(atoms.bands) else
                         torch.zeros(len(atoms), self._dims["spectral"], dtype=dtype, device=device))
        for part in ("time", "location"):
            if part in self._encoders:
                row = self._encoders[part]([atoms.scene], dtype=dtype, device=device)
                feats.append(row.expand(len(atoms), row.shape[-1]))
        return torch.cat([f.to(dtype) for f in feats], dim=-1)

    # --- factorised parts -----------------------------------------------------------------------------
    def parts(self, batch: AtomBatch, *, dtype: torch.dtype | None = None) -> TokenParts:
        """The factorised :class:`TokenParts` of ``batch`` (on the batch's device)."""
        dtype = dtype or self.dtype
        device = batch.value.device
        out = TokenParts(
            value=self._encoders["value"](batch.value.to(dtype), batch.bands, batch.band).to(dtype),
            mask=batch.mask, band=batch.band, dims=self.dims,
        )
        if "position" in self._encoders:
            enc = self._encoders["position"]
            xs, out.x_index = torch.unique(batch.x, return_inverse=True)
            ys, out.y_index = torch.unique(batch.y, return_inverse=True)
            out.position_x = enc.encode_1d(xs.to(dtype)).to(dtype)
            out.position_y = enc.encode_1d(ys.to(dtype)).to(dtype)
        if "spectral" in self._encoders:
            if batch.bands:
                out.spectral = self._encoders["spectral"](batch.bands, dtype=dtype, device=device)
            else:  # only padding: keep one row so that band index 0 stays valid
                out.spectral = torch.zeros(1, self._dims["spectral"], dtype=dtype, device=device)
        for part in ("time", "location"):
            if part in self._encoders:
                setattr(out, part, self._encoders[part](batch.scenes, dtype=dtype, device=device))
        return out

    def extra_repr(self) -> str:
        return f"dims={self.dims}, dim={self.dim}, dtype={self.config.dtype}"
