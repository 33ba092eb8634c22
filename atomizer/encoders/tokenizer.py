"""The :class:`Tokenizer`: atoms -> token features, whole or factorised.

A token is the concatenation, in this order, of the parts that the config enables (the table of
parts and their roles is :mod:`atomizer.encoders.parts`)::

    token = [ value (Dv) | position (Dp = 2 * Dp1) | spectral (Ds) | time (Dt) | location (Dl) ...]

``position`` is itself ``[phi_1d(x) (Dp1) | phi_1d(y) (Dp1)]``; parts added by plugins come last.
``Tokenizer.dims`` gives each enabled part's width (in that order), ``Tokenizer.dim`` the total D.

Two ways to get them:

- ``tokens(atoms) -> (N, D)``: the full matrix for one AtomSet (small inputs, export, baselines);
  ``per_atom_tokens(batch) -> (S, N, D)`` the same for a batch, every part encoded per atom.
- ``parts(batch) -> TokenParts``: the factorised parts of an :class:`~atomizer.atoms.AtomBatch`
  of S samples padded to N atoms over a merged table of B bands, keyed by *factor* name (a part,
  or ``position_x`` / ``position_y`` for the halves of ``position``):

  ==============  ==========================  ====================================================
  field           shape                       holds
  ==============  ==========================  ====================================================
  ``per_atom``    name -> (S, N, D)           per-atom features (``value``; padding: value 0)
  ``per_row``     name -> ((R, D), (S, N))    a table and each atom's row: ``position_x`` (one
                                              row per unique x), ``position_y``, ``spectral``
                                              (one row per band of ``batch.bands``)
  ``per_sample``  name -> (S, D)              per-scene features (``time``, ``location``)
  ``mask``        (S, N) bool                 True for real atoms (``batch.mask``)
  ==============  ==========================  ====================================================

  Because a model's first layer is linear,
  ``W . token = W_v phi_v + W_px phi_x[x_index] + W_py phi_y[y_index] + W_s phi_s[band] + ...``:
  :func:`project_parts` computes this without ever building the (S, N, D) token tensor; the
  projections of positions, bands and scenes are computed once per unique coordinate, band and scene.
  ``TokenParts.assemble()`` builds the full (S, N, D) tensor (reference / small inputs only).

Encoders from plugins (``register_encoders``) fill a part by duck typing; each exposes ``out_dim``
(an int) and may declare ``role`` (checked against the part; the roles and their call signatures
are in :mod:`atomizer.encoders.parts`). An encoder that declares ``part = "<name>"`` adds a part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from atomizer.atoms.atomset import AtomSet
from atomizer.atoms.batch import AtomBatch
from atomizer.encoders.config import TokenizerConfig, build_encoder
from atomizer.encoders.parts import REQUIRED_PART, ROLES, AtomView, TokenPart, builtin_part
from atomizer.errors import EncoderError

_DTYPES: Mapping[str, torch.dtype] = MappingProxyType({"float32": torch.float32, "float64": torch.float64})


@dataclass
class TokenParts:
    """The factorised token features of an :class:`AtomBatch` (see the module docstring).

    ``dims`` holds each factor's width in token order; ``per_row`` maps a factor to its
    ``(table, index)``.
    """

    mask: torch.Tensor
    dims: dict[str, int] = field(default_factory=dict)
    per_atom: dict[str, torch.Tensor] = field(default_factory=dict)
    per_row: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    per_sample: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def value(self) -> torch.Tensor:
        """The per-atom value features ``(S, N, Dv)`` (every token has them)."""
        return self.per_atom[REQUIRED_PART]

    def table(self, name: str) -> torch.Tensor | None:
        """The row table of factor ``name`` (``None`` when the factor is not a table or absent)."""
        return self.per_row[name][0] if name in self.per_row else None

    @property
    def dim(self) -> int:
        return sum(self.dims.values())

    def slices(self) -> dict[str, slice]:
        """Columns of each factor in the full token (``W[:, slices['spectral']]`` is ``W_s``)."""
        out, start = {}, 0
        for name, width in self.dims.items():
            out[name] = slice(start, start + width)
            start += width
        return out

    def per_atom_part(self, name: str) -> torch.Tensor:
        """Factor ``name`` expanded to ``(S, N, width)`` (reference; builds a per-atom tensor)."""
        s, n = self.mask.shape
        if name in self.per_atom:
            return self.per_atom[name]
        if name in self.per_row:
            table, index = self.per_row[name]
            return table[index]
        if name in self.per_sample:
            rows = self.per_sample[name]
            return rows[:, None, :].expand(s, n, rows.shape[-1])
        raise KeyError(name)

    def assemble(self) -> torch.Tensor:
        """The full ``(S, N, D)`` token tensor (only for small inputs and tests)."""
        return torch.cat([self.per_atom_part(name) for name in self.dims], dim=-1)

    def to(self, device: torch.device | str) -> TokenParts:
        return TokenParts(
            self.mask.to(device),
            dict(self.dims),
            {k: v.to(device) for k, v in self.per_atom.items()},
            {k: (t.to(device), i.to(device)) for k, (t, i) in self.per_row.items()},
            {k: v.to(device) for k, v in self.per_sample.items()},
        )


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
    scene_index = torch.arange(s, device=parts.mask.device)[:, None].expand(s, n)
    for name in parts.dims:  # token order
        if name in parts.per_row:
            features, index = parts.per_row[name]
        elif name in parts.per_sample:
            features, index = parts.per_sample[name], scene_index
        else:
            continue
        w = weight[:, cols[name]]
        tables.append(features.to(w.dtype) @ w.T)
        indices.append(index.reshape(s, n) + offset)
        offset += features.shape[0]
    per_atom = [
        (parts.per_atom[name].to(weight.dtype).reshape(s * n, -1), weight[:, cols[name]].T)
        for name in parts.dims
        if name in parts.per_atom
    ]
    if tables:
        bags = torch.stack(indices, dim=-1).reshape(s * n, len(indices))
        out = torch.nn.functional.embedding_bag(bags, torch.cat(tables), mode="sum")
    else:
        out = weight.new_zeros(s * n, d_out)
    for features, w_t in per_atom:
        out = out.addmm_(features, w_t)
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

    Build with :meth:`from_config`; encoder names resolve through ``host.encoders``, and so do
    parts added by plugins (an encoder that declares ``part``).
    """

    def __init__(self, config: TokenizerConfig, *, host: Any = None) -> None:
        super().__init__()
        if host is None:
            from atomizer.plugins.host import builtin_host

            host = builtin_host()
        self.config = config
        self.dtype = _DTYPES[config.dtype]
        self._encoders: dict[str, Any] = {}
        self._parts: dict[str, TokenPart] = {}
        self._dims: dict[str, int] = {}
        for name, spec in config.parts.items():
            if spec is None:
                continue
            encoder = build_encoder(name, spec, host.encoders)
            part = _token_part(name, spec.name, encoder)
            width = getattr(encoder, "out_dim", None)
            if not isinstance(width, int) or width < 1:
                raise EncoderError(f"{name}: encoder {spec.name!r} must expose out_dim (an int >= 1)")
            self._encoders[name], self._parts[name], self._dims[name] = encoder, part, width
            if isinstance(encoder, nn.Module):
                self.add_module(f"{name}_encoder", encoder)

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
    def factor_dims(self) -> dict[str, int]:
        """Width of each factor (parts, with ``position`` split into its x and y halves)."""
        out: dict[str, int] = {}
        for name, width in self._dims.items():
            out.update(ROLES[self._parts[name].role].factor_dims(name, width))
        return out

    @property
    def dim(self) -> int:
        """Total token width D."""
        return sum(self._dims.values())

    def encoder(self, part: str) -> Any:
        """The encoder filling ``part`` (KeyError when the part is disabled)."""
        return self._encoders[part]

    # --- whole tokens ---------------------------------------------------------------------------------
    def _per_atom(self, view: AtomView, dtype: torch.dtype) -> torch.Tensor:
        feats = [
            ROLES[part.role].per_atom(name, self._encoders[name], view, dtype, self._dims[name])
            for name, part in self._parts.items()
        ]
        return torch.cat([f.to(dtype) for f in feats], dim=-1)

    def tokens(self, atoms: AtomSet, *, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """``(N, D)`` token features of one AtomSet, row i for atom i."""
        dtype = dtype or self.dtype
        return self._per_atom(AtomView.of_atoms(atoms, dtype, device), dtype)[0]

    def per_atom_tokens(
        self, batch: AtomBatch, *, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """``(S, N, D)`` tokens of a batch, every part encoded atom by atom (the reference way)."""
        dtype = dtype or self.dtype
        return self._per_atom(AtomView.of_batch(batch), dtype)

    # --- factorised parts -----------------------------------------------------------------------------
    def parts(self, batch: AtomBatch, *, dtype: torch.dtype | None = None) -> TokenParts:
        """The factorised :class:`TokenParts` of ``batch`` (on the batch's device)."""
        dtype = dtype or self.dtype
        view = AtomView.of_batch(batch)
        out = TokenParts(mask=batch.mask, dims=self.factor_dims)
        for name, part in self._parts.items():
            f = ROLES[part.role].factors(name, self._encoders[name], view, dtype, self._dims[name])
            out.per_atom.update(f.per_atom)
            out.per_row.update(f.per_row)
            out.per_sample.update(f.per_sample)
        return out

    def extra_repr(self) -> str:
        return f"dims={self.dims}, dim={self.dim}, dtype={self.config.dtype}"


def _token_part(name: str, encoder_name: str, encoder: Any) -> TokenPart:
    """The part ``name`` that ``encoder`` fills: a built-in part, or one the encoder declares."""
    role = getattr(encoder, "role", None)
    part = builtin_part(name)
    if part is None:
        declared = getattr(encoder, "part", None)
        if declared != name:
            from atomizer.encoders.config import PART_NAMES

            says = f"declares part {declared!r}" if declared else "declares no part"
            raise EncoderError(
                f"{name}: not a token part (built-in parts: {', '.join(PART_NAMES)}); encoder "
                f"{encoder_name!r} {says}: fix the key, or give an encoder that declares "
                f"part = {name!r}"
            )
        if role not in ROLES:
            raise EncoderError(
                f"{name}: encoder {encoder_name!r} adds a part but declares role {role!r}; "
                f"declare one of {', '.join(ROLES)}"
            )
        part = TokenPart(name, role)
    elif role is not None and role != part.role:
        raise EncoderError(
            f"{name}: encoder {encoder_name!r} is a {role} encoder and cannot fill the {name!r} "
            f"part; choose a {part.role} encoder"
        )
    problem = ROLES[part.role].check(name, encoder)
    if problem is not None:
        raise EncoderError(f"{name}: encoder {encoder_name!r} {problem}")
    return part
