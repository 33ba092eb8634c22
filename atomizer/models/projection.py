"""The factorised input projection: ``W . concat(parts)`` without the ``(S, N, D)`` token matrix.

The first layer of the Atomizer is linear, so for a token ``t = concat(phi_1, ..., phi_T)``

    e = W t + b = sum_i W_i phi_i + b.

Each part is one of three kinds (:class:`AtomFactors`):

- *per atom* ``(S, N, D_i)``: features that really differ atom by atom (the value encoding);
- *per row* ``(R, D_i)`` + ``index (S, N)``: features shared by many atoms, one row per band, per
  unique x, per unique y or per pixel; projected once per row, then gathered;
- *per sample* ``(S, D_i)``: per-scene features (time, location), projected once per sample.

Keys and values of a cross-attention are ``to_kv(e) = W_kv e + b_kv``, also linear, so
:class:`FactorisedAtomSource` folds ``W_kv`` into every term:
``kv = sum_atom (W_kv W_i) phi_i + sum_row (T_i W_i^T W_kv^T)[index] + per-sample + bias``. The only
per-atom work is one small matmul of the per-atom features (``D_value x 2*inner``) and a few row
gathers of width ``2*inner``, for the kept atoms of one block at a time; neither the ``(S, N,
D_token)`` token matrix nor the ``(S, N, atom_dim)`` embedding is ever built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atomizer.models.fused import fused_cross_attention, fused_cross_attention_parts


@dataclass
class RowTerm:
    """A token part stored once per row: ``table (R, D)``; atom ``(s, n)`` reads ``index[s, n]``."""

    table: Tensor
    index: Tensor


@dataclass
class AtomFactors:
    """Every atom's token, factorised. ``order`` is the concatenation order of the full token."""

    mask: Tensor
    per_atom: dict[str, Tensor] = field(default_factory=dict)
    per_row: dict[str, RowTerm] = field(default_factory=dict)
    per_sample: dict[str, Tensor] = field(default_factory=dict)
    order: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [*self.per_atom, *self.per_row, *self.per_sample]
        if len(set(names)) != len(names):
            raise ValueError(f"a token part name is used twice: {names}")
        if not self.order:
            self.order = tuple(names)
        elif sorted(self.order) != sorted(names):
            raise ValueError(f"order {self.order} does not list exactly the parts {names}")

    @property
    def dims(self) -> dict[str, int]:
        """Width of each part, in ``order``."""
        out = {}
        for name in self.order:
            if name in self.per_atom:
                out[name] = int(self.per_atom[name].shape[-1])
            elif name in self.per_row:
                out[name] = int(self.per_row[name].table.shape[-1])
            else:
                out[name] = int(self.per_sample[name].shape[-1])
        return out

    def part(self, name: str) -> Tensor:
        """Part ``name`` of every atom's token, materialised ``(S, N, D)`` (tests and naive)."""
        S, N = self.mask.shape
        if name in self.per_atom:
            return self.per_atom[name]
        if name in self.per_row:
            term = self.per_row[name]
            return F.embedding(term.index, term.table)
        return self.per_sample[name][:, None, :].expand(S, N, -1)

    def materialise(self) -> Tensor:
        """The full ``(S, N, D_token)`` token matrix in ``order`` (what factorising avoids)."""
        return torch.cat([self.part(n) for n in self.order], dim=-1)


class FactorisedProjection(nn.Module):
    """``e = sum_i W_i phi_i + b``: one bias-free linear map per token part plus one bias.

    Mathematically ``nn.Linear(sum(D_i), out_dim)`` on the concatenated token, with its weight split
    by columns (:meth:`dense_weight` puts it back together).
    """

    def __init__(self, part_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__()
        if not part_dims:
            raise ValueError("a factorised projection needs at least one token part")
        self.part_dims = dict(part_dims)
        self.out_dim = out_dim
        self.parts = nn.ModuleDict(
            {n: nn.Linear(d, out_dim, bias=False) for n, d in part_dims.items()}
        )
        self.bias = nn.Parameter(torch.zeros(out_dim))
        fan_in = sum(part_dims.values())
        bound = fan_in**-0.5  # nn.Linear's default init for the concatenated input
        for lin in self.parts.values():
            nn.init.uniform_(lin.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def check(self, factors: AtomFactors) -> None:
        dims = factors.dims
        if dims != self.part_dims:
            raise ValueError(
                f"token parts {dims} do not match the projection's parts {self.part_dims}; the "
                "tokenizer config changed since the model was built"
            )

    def dense_weight(self, order: tuple[str, ...]) -> Tensor:
        """``(out_dim, sum D_i)``: the weight of the equivalent ``Linear`` on ``order`` tokens."""
        return torch.cat([self.parts[n].weight for n in order], dim=1)

    def embed(self, factors: AtomFactors) -> Tensor:
        """The materialised embedding ``(S, N, out_dim)`` (tests and the naive path only)."""
        return F.linear(factors.materialise(), self.dense_weight(factors.order), self.bias)

    def source(self, factors: AtomFactors) -> FactorisedAtomSource:
        self.check(factors)
        return FactorisedAtomSource(self, factors)


class FactorisedAtomSource:
    """An :class:`~atomizer.models.perceiver.AtomSource` computing ``to_kv(e)`` term by term.

    The per-row parts are merged first: each atom's tuple of row indices (band, x, y, ...) maps
    to one row of a combined table (one row per distinct tuple in the batch), so a block gathers
    ONE row per kept atom and adds the per-atom matmul to it. :meth:`fused_attend` does this
    inside the attention, one tile of atoms at a time, and stores nothing per atom (see
    :mod:`atomizer.models.fused`); :meth:`kv` returns stored keys and values for the SDPA
    fallback. With gradients off :meth:`fused_attend` skips the merge: each tile gathers one row
    from each per-part table (a few hundred rows each) and sums them, because for one large
    image the combined table has a row per atom.
    """

    def __init__(self, projection: FactorisedProjection, factors: AtomFactors) -> None:
        self.projection = projection
        self.factors = factors
        S, N = factors.mask.shape
        self._offsets = (torch.arange(S, device=factors.mask.device) * N)[:, None]
        self._merged: tuple[Tensor, dict[str, Tensor]] | None = None
        self._per_atom = {n: t.reshape(S * N, t.shape[-1]) for n, t in factors.per_atom.items()}
        self._prepared: dict[int, _Prepared] = {}
        self._prepared_parts: dict[int, tuple[Tensor, ...]] = {}

    @property
    def mask(self) -> Tensor:
        return self.factors.mask

    def _merge(self) -> tuple[Tensor, dict[str, Tensor]]:
        """The combined row of each atom ``(S*N,)`` and each term's row of every combined row
        (built on first use: the inference path of :meth:`fused_attend` never needs them)."""
        if self._merged is None:
            S, N = self.factors.mask.shape
            row_index, row_parts = _merge_rows(self.factors.per_row)
            if row_index is None:  # no per-row part: every atom reads the single bias row
                row_index = torch.zeros(S, N, dtype=torch.int64, device=self.factors.mask.device)
            self._merged = row_index.reshape(S * N), row_parts
        return self._merged

    @property
    def row_index(self) -> Tensor:
        return self._merge()[0]

    @property
    def row_parts(self) -> dict[str, Tensor]:
        return self._merge()[1]

    def prepare(self, linear: nn.Linear) -> None:
        """Fold ``linear`` now when training; with gradients off each path folds what it uses on
        first use (the fused inference path never builds the combined table)."""
        if torch.is_grad_enabled():
            self._prepare(linear)

    def _prepare(self, linear: nn.Linear) -> _Prepared:
        """Fold ``linear`` into every term (once per linear per batch: shared blocks reuse it).

        Always in float32, also under bf16 autocast: the folded weights and tables are small, and
        rounding a product of two weight matrices to bf16 would add error no layer of the
        unfactorised model has.
        """
        key = id(linear)
        if key not in self._prepared:
            with torch.autocast(linear.weight.device.type, enabled=False):
                self._prepared[key] = self._fold(linear)
        return self._prepared[key]

    def _fold(self, linear: nn.Linear) -> _Prepared:
        """The :class:`_Prepared` terms of ``linear`` (see :meth:`_prepare`)."""
        proj, f = self.projection, self.factors
        w_kv = linear.weight  # (2 * inner, atom_dim): keys then values
        composed = {n: w_kv @ proj.parts[n].weight for n in proj.part_dims}  # (2 * inner, D_i)
        bias = w_kv @ proj.bias
        if linear.bias is not None:
            bias = bias + linear.bias
        table = bias[None, :]
        for n, t in f.per_row.items():  # (U, 2 * inner): one row per distinct index tuple
            table = table + (t.table @ composed[n].T).index_select(0, self.row_parts[n])
        per_sample = None
        for n, t in f.per_sample.items():
            term = t @ composed[n].T
            per_sample = term if per_sample is None else per_sample + term
        return _Prepared(composed, table, per_sample)

    def _kv(
        self, linear: nn.Linear, flat: Tensor | None, start: int, stop: int
    ) -> tuple[Tensor, Tensor]:
        """Keys and values of the atoms at flat rows ``flat`` (or of columns ``start:stop``)."""
        prep, f = self._prepare(linear), self.factors
        S, N = f.mask.shape
        if flat is not None:
            n_kept = flat.numel() // S
            rows = self.row_index.index_select(0, flat)
            phis = {n: phi.index_select(0, flat) for n, phi in self._per_atom.items()}
        elif (start, stop) == (0, N):
            n_kept, rows, phis = N, self.row_index, self._per_atom
        else:
            n_kept = stop - start
            rows = self.row_index.view(S, N)[:, start:stop].reshape(-1)
            phis = {n: t[:, start:stop].reshape(S * n_kept, -1) for n, t in f.per_atom.items()}
        kv = prep.table.index_select(0, rows)
        for n, phi in phis.items():
            kv = torch.addmm(kv, phi, prep.composed[n].T)
        kv = kv.view(S, n_kept, -1)
        if prep.per_sample is not None:
            kv = kv + prep.per_sample[:, None, :]
        inner = kv.shape[-1] // 2
        return kv[..., :inner], kv[..., inner:]

    def kv(self, linear: nn.Linear, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if index is None:
            return self._kv(linear, None, 0, self.factors.mask.shape[1])
        return self._kv(linear, (index + self._offsets).reshape(-1), 0, 0)

    def kv_range(self, linear: nn.Linear, start: int, stop: int) -> tuple[Tensor, Tensor]:
        return self._kv(linear, None, start, stop)

    def fused_attend(
        self, linear: nn.Linear, index: Tensor | None, kept: Tensor
    ) -> Callable[[Tensor], Tensor] | None:
        """:class:`~atomizer.models.fused.FactorisedCrossAttention` over the atoms at ``index``
        (all when None); None unless there is exactly one per-atom part."""
        if len(self._per_atom) != 1:
            return None
        ((name, phi),) = self._per_atom.items()
        idx = None if index is None else (index + self._offsets).reshape(-1)
        if not torch.is_grad_enabled() and self.factors.per_row:
            return self._fused_parts(linear, name, phi, idx, kept)
        prep = self._prepare(linear)
        rows = self.row_index if idx is None else self.row_index.index_select(0, idx)
        return lambda q: fused_cross_attention(
            q, rows, idx, phi, prep.table, prep.composed[name], prep.per_sample, kept
        )


    def _fused_parts(
        self, linear: nn.Linear, name: str, phi: Tensor, idx: Tensor | None, kept: Tensor
    ) -> Callable[[Tensor], Tensor]:
        """The inference path of :meth:`fused_attend`: per-part row tables gathered and summed
        tile by tile, so nothing ``2*inner`` wide exists per atom or per distinct row tuple."""
        key = id(linear)
        if key not in self._prepared_parts:
            with torch.autocast(linear.weight.device.type, enabled=False):
                self._prepared_parts[key] = self._fold_parts(linear)
        tables = self._prepared_parts[key]
        composed = linear.weight @ self.projection.parts[name].weight
        per_sample = self._per_sample(linear)
        rows = []
        for term in self.factors.per_row.values():
            flat = term.index.reshape(-1)
            rows.append(flat if idx is None else flat.index_select(0, idx))
        return lambda q: fused_cross_attention_parts(
            q, tuple(rows), idx, phi, tables, composed, per_sample, kept
        )

    def _fold_parts(self, linear: nn.Linear) -> tuple[Tensor, ...]:
        """One table ``(R_i, 2*inner)`` per per-row part, the bias folded into the first."""
        proj, w_kv = self.projection, linear.weight
        bias = w_kv @ proj.bias
        if linear.bias is not None:
            bias = bias + linear.bias
        per_row = self.factors.per_row.items()
        tables = [t.table @ (w_kv @ proj.parts[n].weight).T for n, t in per_row]
        tables[0] = tables[0] + bias
        return tuple(tables)

    def _per_sample(self, linear: nn.Linear) -> Tensor | None:
        per_sample = None
        for n, t in self.factors.per_sample.items():
            term = t @ (linear.weight @ self.projection.parts[n].weight).T
            per_sample = term if per_sample is None else per_sample + term
        return per_sample


#: Largest combined key before the merge compresses it with ``unique`` (well inside int64).
_KEY_LIMIT = 2**62

_Digit = tuple[str | dict[str, Tensor], int]


def _merge_rows(per_row: Mapping[str, RowTerm]) -> tuple[Tensor | None, dict[str, Tensor]]:
    """One combined row per distinct tuple of row indices in the batch.

    Returns ``index (S, N)`` into the combined rows and, for each term, its row of every combined
    row ``(U,)``. The tuple is read as a mixed-radix number; when that number could overflow int64
    the digits so far are compressed with ``unique`` first.
    """
    if not per_row:
        return None, {}
    key: Tensor | None = None
    digits: list[_Digit] = []
    space = 1
    for name, term in per_row.items():
        size = max(int(term.table.shape[0]), 1)
        index = term.index.to(torch.int64)
        if key is not None and space * size >= _KEY_LIMIT:
            key, rows = _decode(key, digits)
            digits, space = [(rows, int(key.max()) + 1)], int(key.max()) + 1
        key = index if key is None else key * size + index
        digits.append((name, size))
        space *= size
    assert key is not None
    return _decode(key, digits)


def _decode(key: Tensor, digits: list[_Digit]) -> tuple[Tensor, dict[str, Tensor]]:
    uniq, inverse = torch.unique(key, return_inverse=True)
    rows: dict[str, Tensor] = {}
    rest = uniq
    for digit, size in reversed(digits):
        d = rest % size
        rest = torch.div(rest, size, rounding_mode="floor")
        if isinstance(digit, str):
            rows[digit] = d
        else:  # a group compressed earlier: map through its rows
            rows.update({m: r.index_select(0, d) for m, r in digit.items()})
    return inverse, rows


@dataclass
class _Prepared:
    """One linear folded into the terms: composed weights ``(2*inner, D_i)``, the combined row
    table ``(U, 2*inner)`` (bias included) and the per-sample term ``(S, 2*inner)`` or None."""

    composed: dict[str, Tensor]
    table: Tensor
    per_sample: Tensor | None
