"""Fused cross-attention over factorised atoms: keys and values are never stored.

For one block, the keys of the kept atoms are ``k = T_k[rows] + phi[idx] A_k^T (+ per-sample)``
(same for ``v``; see :mod:`atomizer.models.projection`). :class:`FactorisedCrossAttention`
computes them one tile of atoms at a time inside the attention (online softmax, like flash
attention), keeps only the attention output and its log-sum-exp, and in the backward pass
recomputes them (one gather and one small matmul per tile) instead of reading them back from
memory. The memory a block keeps is then independent of the number of atoms (apart from the
indices), at the cost of recomputing the cheap factorised projection.

The attention itself is exact softmax attention (same result as
:func:`torch.nn.functional.scaled_dot_product_attention` up to float rounding); attention dropout is
not supported here (the caller falls back to SDPA when it is on). Two tile kernels compute it:

- forward on CPU: PyTorch's own flash-attention kernel (the one SDPA dispatches to on CPU), which
  returns the log-sum-exp the tiles are merged with; in bf16 (under autocast) it uses the CPU's
  bf16 matrix units, about 2x the float32 speed for 128 queries;
- elsewhere, on CPU when :data:`CPU_KERNEL` is False (tests), and for every backward pass: the same
  online softmax written with ``matmul`` and ``exp``, in the dtype of the inputs.

Keys and values are always computed in float32 (the folded tables are float32); under bf16
autocast, :func:`fused_cross_attention` hands the CPU kernel bf16 queries, keys and values and
merges the tiles in float32; the backward pass recomputes everything in float32.
"""

from __future__ import annotations

import math

import torch

#: Keys per tile of the fused attention on CPU with PyTorch's flash kernel, which blocks the
#: keys itself: a tile only bounds the memory of one sample's keys and values (8,192 atoms x
#: 2 x inner floats), and larger tiles change nothing measurable.
TILE_ATOMS = 8192
#: Keys per tile of the hand-written online softmax (scores stay cache-sized).
MATH_TILE_ATOMS = 1024
#: Keys per tile on accelerators, where each tile costs kernel launches rather than cache misses.
ACCELERATOR_TILE_ATOMS = 32768
#: Use PyTorch's CPU flash-attention kernel per tile on CPU (False: the hand-written math).
CPU_KERNEL = True


def _cpu_kernel(device: torch.device) -> bool:
    return device.type == "cpu" and CPU_KERNEL


def _tile_size(device: torch.device) -> int:
    if device.type != "cpu":
        return ACCELERATOR_TILE_ATOMS
    return TILE_ATOMS if CPU_KERNEL else MATH_TILE_ATOMS


def _tile_kv(start, stop, rows, idx, phi, table, a, per_sample, valid=None):
    """Keys and values ``(n, 2 * inner)`` of flat kept atoms ``start:stop`` (only those where
    ``valid``, when given), their per-atom features and their table rows.

    ``table`` and ``rows`` are one table and its row per kept atom, or (inference) a tuple of
    per-part tables and a tuple of their rows per kept atom, gathered and summed per tile."""
    tile_idx = None if idx is None else idx[start:stop]
    parts = isinstance(table, tuple)
    tile_rows = tuple(r[start:stop] for r in rows) if parts else rows[start:stop]
    if valid is not None:
        sel = valid.nonzero().squeeze(1)
        if parts:
            tile_rows = tuple(r.index_select(0, sel) for r in tile_rows)
        else:
            tile_rows = tile_rows.index_select(0, sel)
        tile_idx = sel + start if tile_idx is None else tile_idx.index_select(0, sel)
    if tile_idx is None:
        kept = phi[start:stop]
    else:
        kept = phi.index_select(0, tile_idx)
    if parts:
        base = table[0].index_select(0, tile_rows[0])
        for t, r in zip(table[1:], tile_rows[1:], strict=True):
            base += t.index_select(0, r)
    else:
        base = table.index_select(0, tile_rows)
    kv = torch.addmm(base, kept, a.T)
    if per_sample is not None:
        kv += per_sample
    return kv, kept, tile_rows


def _heads(kv, h, d):
    """``(n, 2*h*d)`` -> keys and values ``(h, n, d)`` (views)."""
    n, inner = kv.shape[0], h * d
    return (
        kv[:, :inner].view(n, h, d).transpose(0, 1),
        kv[:, inner:].view(n, h, d).transpose(0, 1),
    )


def _tiles(mask_row, n_kept, s, tile):
    """``(flat start, flat stop, tile mask or None when all valid)`` of each non-empty tile of
    sample ``s``."""
    for a in range(0, n_kept, tile):
        b = min(a + tile, n_kept)
        valid = mask_row[a:b]
        if bool(valid.all()):
            yield s * n_kept + a, s * n_kept + b, None
        elif bool(valid.any()):
            yield s * n_kept + a, s * n_kept + b, valid


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the CPU kernel's log-sum-exp for inputs of ``dtype``."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _flash_tile(q_s, k, v, scale, dtype):
    """PyTorch's CPU flash kernel on one sample's tile: output ``(h, L, d)`` (float32 for bf16
    inputs) and log-sum-exp ``(h, L, 1)``."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q_s.to(dtype)[None], k.to(dtype)[None], v.to(dtype)[None], scale=scale
    )
    acc = _accumulate_dtype(dtype)
    return out[0].to(acc), lse[0].unsqueeze(-1)


def _math_tile(q_s, k, v, scale, valid):
    """The same with ``matmul`` and ``exp`` (masked keys at -inf)."""
    scores = torch.matmul(q_s, k.transpose(-1, -2)).mul_(scale)  # (h, L, tile)
    if valid is not None:
        scores.masked_fill_(~valid, -math.inf)
    top = scores.amax(dim=-1, keepdim=True)
    weights = scores.sub_(top).exp_()
    total = weights.sum(dim=-1, keepdim=True)
    return torch.matmul(weights, v).div_(total), top + total.log()


class FactorisedCrossAttention(torch.autograd.Function):
    """``softmax(q k^T / sqrt(d)) v`` with factorised ``k, v`` recomputed tile by tile.

    Inputs: ``q (S,h,L,d)``; ``rows (S*K,)`` combined-table row of each kept atom; ``idx (S*K,)``
    flat row of each kept atom in ``phi`` (None: ``phi`` already holds the kept atoms in order);
    ``phi (P, Dv)`` per-atom features (no gradient); ``table (U, 2*h*d)`` (keys then values);
    ``a (2*h*d, Dv)``; ``per_sample (S, 2*h*d)`` or None; ``mask (S, K)`` kept atoms that are
    real; ``dtype``: the dtype the CPU kernel multiplies in (None: that of ``q``). Output
    ``(S,h,L,d)`` in ``q``'s dtype; samples with no real atom give zeros. The forward pass merges
    the tiles' outputs by their log-sum-exp; the backward pass recomputes each tile.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, q, rows, idx, phi, table, a, per_sample, mask, dtype=None
    ):
        out, lse = _forward(q, rows, idx, phi, table, a, per_sample, mask, dtype)
        ctx.save_for_backward(q, rows, idx, phi, table, a, per_sample, mask, out, lse)
        ctx.scale, ctx.dtype = 1.0 / math.sqrt(q.shape[-1]), dtype or q.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        with torch.autocast(grad_out.device.type, enabled=False):
            return (*_backward(ctx, grad_out), None)


def _forward(q, rows, idx, phi, table, a, per_sample, mask, dtype=None):
    """Output and log-sum-exp of :class:`FactorisedCrossAttention` (same arguments; ``table`` and
    ``rows`` may also be tuples of per-part tables and rows, see :func:`_tile_kv`)."""
    S, h, L, d = q.shape
    n_kept = mask.shape[1]
    scale = 1.0 / math.sqrt(d)
    kernel, dtype = _cpu_kernel(q.device), dtype or q.dtype
    out = q.new_zeros(S, h, L, d)
    lse = q.new_zeros(S, h, L, 1)
    tile = _tile_size(q.device)
    for s in range(S):
        ps = None if per_sample is None else per_sample[s]
        acc = top = None
        for start, stop, valid in _tiles(mask[s], n_kept, s, tile):
            if kernel:
                kv = _tile_kv(start, stop, rows, idx, phi, table, a, ps, valid)[0]
                o, m = _flash_tile(q[s], *_heads(kv, h, d), scale, dtype)
            else:
                kv = _tile_kv(start, stop, rows, idx, phi, table, a, ps)[0]
                o, m = _math_tile(q[s], *_heads(kv, h, d), scale, valid)
            if acc is None:
                acc, top = o, m
            else:  # merge two normalised partial results by their log-sum-exp
                new_top = torch.logaddexp(top, m)
                acc = acc.mul_(torch.exp(top - new_top)).add_(o.mul_(torch.exp(m - new_top)))
                top = new_top
        if acc is not None:
            out[s], lse[s] = acc, top
    return out, lse


def _backward(ctx, grad_out):
    """The backward pass of :class:`FactorisedCrossAttention`: each tile's keys, values and
    probabilities recomputed (in the inputs' dtype: float32 under autocast) from the saved output
    and log-sum-exp. Hand-written: PyTorch's CPU flash backward kernel measured no faster for 128
    queries against long key tiles, and slower in bf16."""
    q, rows, idx, phi, table, a, per_sample, mask, out, lse = ctx.saved_tensors
    S, h, _, d = q.shape
    inner = h * d
    n_kept = mask.shape[1]
    scale = ctx.scale
    need = ctx.needs_input_grad
    grad_out = grad_out.contiguous()
    delta = (grad_out * out).sum(dim=-1, keepdim=True)  # (S, h, L, 1)
    g_q = torch.zeros_like(q)
    g_table, g_a = torch.zeros_like(table), torch.zeros_like(a)
    g_ps = None if per_sample is None else torch.zeros_like(per_sample)
    tile = MATH_TILE_ATOMS if q.device.type == "cpu" else ACCELERATOR_TILE_ATOMS
    for s in range(S):
        ps = None if per_sample is None else per_sample[s]
        for start, stop, valid in _tiles(mask[s], n_kept, s, tile):
            kv, kept, tile_rows = _tile_kv(start, stop, rows, idx, phi, table, a, ps)
            k, v = _heads(kv, h, d)
            scores = torch.matmul(q[s], k.transpose(-1, -2)).mul_(scale)
            if valid is not None:
                scores.masked_fill_(~valid, -math.inf)
            probs = scores.sub_(lse[s]).exp_()  # (h, L, tile)
            g_v = torch.matmul(probs.transpose(-1, -2), grad_out[s])  # (h, tile, d)
            g_scores = torch.matmul(grad_out[s], v.transpose(-1, -2))
            g_scores = g_scores.sub_(delta[s]).mul_(probs).mul_(scale)
            g_q[s] += torch.matmul(g_scores, k)
            g_k = torch.matmul(g_scores.transpose(-1, -2), q[s])  # (h, tile, d)
            n = kv.shape[0]
            g = torch.cat(
                [g_k.transpose(0, 1).reshape(n, inner), g_v.transpose(0, 1).reshape(n, inner)],
                dim=1,
            ).to(table.dtype)
            g_table.index_add_(0, tile_rows, g)
            g_a.addmm_(g.T, kept)
            if g_ps is not None:
                g_ps[s] += g.sum(dim=0)
    return (
        g_q if need[0] else None,
        None,
        None,
        None,
        g_table if need[4] else None,
        g_a if need[5] else None,
        g_ps if need[6] else None,
        None,
    )


def fused_cross_attention_parts(q, rows, idx, phi, tables, a, per_sample, mask):
    """Inference only (no gradient): the output of :func:`fused_cross_attention` with the row term
    given as per-part ``tables`` (a tuple, the bias folded into the first) and ``rows`` (a tuple of
    each kept atom's row in each), summed tile by tile: no table with a row per atom or per
    distinct (band, x, y) exists. Autocast as in :func:`fused_cross_attention`."""
    device_type = q.device.type
    dtype = None
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        q, phi, a = q.float(), phi.float(), a.float()
        tables = tuple(t.float() for t in tables)
        per_sample = None if per_sample is None else per_sample.float()
    with torch.no_grad(), torch.autocast(device_type, enabled=False):
        return _forward(q, tuple(rows), idx, phi, tuple(tables), a, per_sample, mask, dtype)[0]


def fused_cross_attention(q, rows, idx, phi, table, a, per_sample, mask):
    """:class:`FactorisedCrossAttention` (same arguments), autocast-aware.

    Under autocast the queries arrive in bf16: keys and values are still computed in float32 and
    the tiles merged in float32 (autocast is off inside), and the CPU kernel multiplies in the
    autocast dtype. The output is float32; the queries' gradient goes back in their dtype.
    """
    device_type = q.device.type
    if not torch.is_autocast_enabled(device_type):
        return FactorisedCrossAttention.apply(q, rows, idx, phi, table, a, per_sample, mask)
    dtype = torch.get_autocast_dtype(device_type)
    ps = None if per_sample is None else per_sample.float()
    with torch.autocast(device_type, enabled=False):
        return FactorisedCrossAttention.apply(
            q.float(), rows, idx, phi.float(), table.float(), a.float(), ps, mask, dtype
        )
