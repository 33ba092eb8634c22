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
not supported here (the caller falls back to SDPA when it is on). Under autocast (bf16 on CPU or
CUDA) :func:`fused_cross_attention` runs it in float32: the running softmax statistics need the
range, and its tile matmuls (latents x one head x a tile of atoms) are too small to gain from bf16
on CPU.
"""

from __future__ import annotations

import math

import torch

#: Keys per tile of the fused attention on CPU: a tile's scores (latents x tile floats per head)
#: stay cache-sized (1,024 was the fastest of 1k-16k in benchmarks/model_forward_backward.py), and
#: the memory a sample needs is bounded whatever its number of atoms.
TILE_ATOMS = 1024
#: Keys per tile on accelerators, where each tile costs kernel launches rather than cache misses.
ACCELERATOR_TILE_ATOMS = 32768


def _tile_size(device: torch.device) -> int:
    return TILE_ATOMS if device.type == "cpu" else ACCELERATOR_TILE_ATOMS


def _tile_kv(start, stop, rows, idx, phi, table, a, per_sample):
    """Keys and values ``(stop - start, 2 * inner)`` of flat kept atoms ``start:stop`` and their
    gathered per-atom features."""
    kept = phi[start:stop] if idx is None else phi.index_select(0, idx[start:stop])
    kv = torch.addmm(table.index_select(0, rows[start:stop]), kept, a.T)
    if per_sample is not None:
        kv += per_sample
    return kv, kept


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


class FactorisedCrossAttention(torch.autograd.Function):
    """``softmax(q k^T / sqrt(d)) v`` with factorised ``k, v`` recomputed tile by tile.

    Inputs: ``q (S,h,L,d)``; ``rows (S*K,)`` combined-table row of each kept atom; ``idx (S*K,)``
    flat row of each kept atom in ``phi`` (None: ``phi`` already holds the kept atoms in order);
    ``phi (P, Dv)`` per-atom features (no gradient); ``table (U, 2*h*d)`` (keys then values);
    ``a (2*h*d, Dv)``; ``per_sample (S, 2*h*d)`` or None; ``mask (S, K)`` kept atoms that are
    real. Output ``(S,h,L,d)``; samples with no real atom give zeros. The forward pass is an
    online softmax over tiles of keys (:data:`TILE_ATOMS` on CPU); the backward pass recomputes
    each tile.
    """

    @staticmethod
    def forward(ctx, q, rows, idx, phi, table, a, per_sample, mask):  # type: ignore[override]
        S, h, L, d = q.shape
        n_kept = mask.shape[1]
        scale = 1.0 / math.sqrt(d)
        out = q.new_zeros(S, h, L, d)
        lse = q.new_zeros(S, h, L, 1)
        tile = _tile_size(q.device)
        for s in range(S):
            ps = None if per_sample is None else per_sample[s]
            top = total = acc = None
            for start, stop, valid in _tiles(mask[s], n_kept, s, tile):
                k, v = _heads(_tile_kv(start, stop, rows, idx, phi, table, a, ps)[0], h, d)
                scores = torch.matmul(q[s], k.transpose(-1, -2)).mul_(scale)  # (h, L, tile)
                if valid is not None:
                    scores.masked_fill_(~valid, -math.inf)
                tile_top = scores.amax(dim=-1, keepdim=True)
                new_top = tile_top if top is None else torch.maximum(top, tile_top)
                weights = scores.sub_(new_top).exp_()
                if top is None:
                    total, acc = weights.sum(dim=-1, keepdim=True), torch.matmul(weights, v)
                else:
                    correction = torch.exp(top - new_top)
                    total = total.mul_(correction).add_(weights.sum(dim=-1, keepdim=True))
                    acc = acc.mul_(correction).add_(torch.matmul(weights, v))
                top = new_top
            if top is not None:
                out[s] = acc.div_(total)
                lse[s] = top + total.log()
        ctx.save_for_backward(q, rows, idx, phi, table, a, per_sample, mask, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        with torch.autocast(grad_out.device.type, enabled=False):
            return _backward(ctx, grad_out)


def _backward(ctx, grad_out):
    """The backward pass of :class:`FactorisedCrossAttention`: each tile recomputed."""
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
    tile = _tile_size(q.device)
    g_kv = q.new_empty(min(n_kept, tile), 2 * inner)
    for s in range(S):
        ps = None if per_sample is None else per_sample[s]
        for start, stop, valid in _tiles(mask[s], n_kept, s, tile):
            kv, kept = _tile_kv(start, stop, rows, idx, phi, table, a, ps)
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
            g = g_kv[: stop - start]
            g[:, :inner] = g_k.transpose(0, 1).reshape(stop - start, inner)
            g[:, inner:] = g_v.transpose(0, 1).reshape(stop - start, inner)
            g_table.index_add_(0, rows[start:stop], g)
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


def fused_cross_attention(q, rows, idx, phi, table, a, per_sample, mask):
    """:class:`FactorisedCrossAttention` (same arguments), in float32 whatever the autocast state.

    Under autocast the queries arrive in bf16; they are cast to float32 here (their gradient goes
    back in bf16) and autocast is off inside, so the online softmax keeps float32 statistics.
    """
    device_type = q.device.type
    if not torch.is_autocast_enabled(device_type):
        return FactorisedCrossAttention.apply(q, rows, idx, phi, table, a, per_sample, mask)
    ps = None if per_sample is None else per_sample.float()
    with torch.autocast(device_type, enabled=False):
        return FactorisedCrossAttention.apply(
            q.float(), rows, idx, phi.float(), table.float(), a.float(), ps, mask
        )
