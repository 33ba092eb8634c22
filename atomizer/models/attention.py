"""Attention building blocks: key-padding SDPA, chunked (online-softmax) attention, layers.

Shapes use ``S`` samples, ``h`` heads, ``L`` latents (queries), ``K`` keys (atoms or pixels) and
``d`` the width of one head. Every attention goes through
:func:`torch.nn.functional.scaled_dot_product_attention`, except the chunked path, which computes
exactly the same softmax one chunk of keys at a time (flash-attention style running max and sum) so
that memory stays bounded however many atoms there are.

Every layer returns its input plus its update (pre-norm residual blocks). Dropout is active only in
training mode: attention dropout is passed to SDPA as ``dropout_p`` only when ``self.training``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def latent_sdpa(q: Tensor, k: Tensor, v: Tensor, *, dropout_p: float = 0.0) -> Tensor:
    """SDPA of the latent self-attention and the pooling (short sequences, no mask).

    On CPU, bf16 inputs (from autocast) are attended in float32 with autocast off: for 128
    latents PyTorch's CPU flash kernel takes about 3x longer forward + backward in bf16 than in
    float32 (benchmarks/README.md), and these attentions are a small share of the FLOPs.
    """
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), dropout_p=dropout_p
            )
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def key_padding_sdpa(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *, dropout_p: float = 0.0
) -> Tensor:
    """SDPA of ``q (S,h,Lq,d)`` over ``k, v (S,h,K,d)``, ignoring keys where ``mask (S,K)`` is
    False.

    A sample with no valid key at all gets a zero output (instead of SDPA's NaN).
    """
    if mask is None or bool(mask.all()):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    empty = ~mask.any(dim=1)
    has_empty = bool(empty.any())
    if has_empty:  # attend to a padding key, then zero the result: finite values and gradients
        mask = mask.clone()
        mask[empty, 0] = True
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask[:, None, None, :], dropout_p=dropout_p
    )
    if has_empty:
        out = out.masked_fill(empty[:, None, None, None], 0.0)
    return out


def chunked_attention(
    q: Tensor,
    kv_chunk: Callable[[int, int], tuple[Tensor, Tensor]],
    mask: Tensor,
    *,
    chunk_size: int,
) -> Tensor:
    """Softmax attention of ``q (S,h,Lq,d)`` over ``K = mask.shape[1]`` keys, ``chunk_size`` at a
    time.

    ``kv_chunk(start, stop)`` returns the keys and values of atoms ``start:stop`` as
    ``(S,h,stop-start,d)`` tensors; only one chunk is alive at a time. Same result as
    :func:`key_padding_sdpa` up to float rounding (online softmax with a running maximum).
    """
    S, h, Lq, d = q.shape
    n_keys = mask.shape[1]
    scale = 1.0 / math.sqrt(d)
    running_max = q.new_full((S, h, Lq, 1), -math.inf)
    running_sum = q.new_zeros((S, h, Lq, 1))
    acc: Tensor | None = None
    for start in range(0, n_keys, chunk_size):
        stop = min(start + chunk_size, n_keys)
        k, v = kv_chunk(start, stop)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~mask[:, None, None, start:stop], -math.inf)
        new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
        safe_max = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
        weights = torch.exp(scores - safe_max)
        correction = torch.exp(running_max - safe_max)
        running_sum = running_sum * correction + weights.sum(dim=-1, keepdim=True)
        update = torch.matmul(weights, v)
        acc = update if acc is None else acc * correction + update
        running_max = new_max
    if acc is None:
        return q.new_zeros(q.shape)
    return torch.where(running_sum > 0, acc / running_sum.clamp_min(1e-30), torch.zeros_like(acc))


class FeedForward(nn.Module):
    """Pre-norm MLP with a residual: ``x + W2 GELU(W1 LN(x))``."""

    def __init__(self, dim: int, *, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(self.norm(x))


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention with a residual (no mask: used on latents and patches)."""

    def __init__(self, dim: int, *, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dropout = dropout
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(
            self.to_qkv(self.norm(x)), "s n (t h d) -> t s h n d", t=3, h=self.heads
        )
        p = self.dropout if self.training else 0.0
        out = latent_sdpa(q, k, v, dropout_p=p)
        return x + self.to_out(rearrange(out, "s h n d -> s n (h d)"))


class TransformerLayer(nn.Module):
    """Self-attention then feed-forward, both pre-norm residual."""

    def __init__(
        self, dim: int, *, heads: int, dim_head: int, ff_mult: int, dropout: float
    ) -> None:
        super().__init__()
        self.attn = SelfAttention(dim, heads=heads, dim_head=dim_head, dropout=dropout)
        self.ff = FeedForward(dim, mult=ff_mult, dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.ff(self.attn(x))


class CrossAttention(nn.Module):
    """Latents attend to atoms: ``latents + W_o softmax(Q K^T / sqrt d) V``, then a feed-forward.

    The atoms' keys and values are ``to_kv`` applied to their embeddings (first half of its
    outputs: keys, second half: values); *how* it is applied is up to the caller (``attend``, see
    :meth:`sdpa`, :meth:`chunked`), which is what lets the Atomizer compute them from factorised
    parts.
    """

    def __init__(
        self,
        latent_dim: int,
        atom_dim: int,
        *,
        heads: int,
        dim_head: int,
        ff_mult: int,
        dropout: float,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.dropout = dropout
        self.norm = nn.LayerNorm(latent_dim)
        self.to_q = nn.Linear(latent_dim, inner, bias=False)
        self.to_kv = nn.Linear(atom_dim, 2 * inner)
        self.to_out = nn.Sequential(nn.Linear(inner, latent_dim), nn.Dropout(dropout))
        self.ff = FeedForward(latent_dim, mult=ff_mult, dropout=dropout)

    def split_heads(self, kv: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Keys and values ``(S,K,inner)`` -> ``(S,h,K,d)`` (views, no copy)."""
        k, v = kv
        S, K, _ = k.shape
        if self.heads == 1:  # a plain view: its gradient needs no transposed copy
            return k.unsqueeze(1), v.unsqueeze(1)
        return (
            k.view(S, K, self.heads, self.dim_head).transpose(1, 2),
            v.view(S, K, self.heads, self.dim_head).transpose(1, 2),
        )

    def sdpa(self, kv: tuple[Tensor, Tensor], mask: Tensor) -> Callable[[Tensor], Tensor]:
        """Attention over stored keys and values (each ``(S,K,inner)``), key padding ``mask``."""
        k, v = self.split_heads(kv)
        p = self.dropout if self.training else 0.0
        return lambda q: key_padding_sdpa(q, k, v, mask, dropout_p=p)

    def chunked(
        self, kv_chunk: Callable[[int, int], tuple[Tensor, Tensor]], mask: Tensor, chunk_size: int
    ) -> Callable[[Tensor], Tensor]:
        """Online-softmax attention over ``kv_chunk(start, stop)``, ``chunk_size`` atoms a time."""
        return lambda q: chunked_attention(
            q, lambda a, b: self.split_heads(kv_chunk(a, b)), mask, chunk_size=chunk_size
        )

    def forward(self, latents: Tensor, attend: Callable[[Tensor], Tensor]) -> Tensor:
        """``latents (S,L,D)``; ``attend`` maps the queries ``(S,h,L,d)`` to the attention output
        (:meth:`sdpa`, :meth:`chunked`, or a fused path of the atom source)."""
        q = rearrange(self.to_q(self.norm(latents)), "s l (h d) -> s h l d", h=self.heads)
        out = attend(q)
        latents = latents + self.to_out(rearrange(out, "s h l d -> s l (h d)"))
        return self.ff(latents)


class AttentionPooling(nn.Module):
    """One learned query attends over the latents: ``(S,L,D) -> (S,D)``."""

    def __init__(self, dim: int, *, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, latents: Tensor) -> Tensor:
        S = latents.shape[0]
        q = rearrange(self.to_q(self.query), "o l (h d) -> o h l d", h=self.heads).expand(
            S, -1, -1, -1
        )
        k, v = rearrange(
            self.to_kv(self.norm(latents)), "s l (t h d) -> t s h l d", t=2, h=self.heads
        )
        p = self.dropout if self.training else 0.0
        out = latent_sdpa(q, k, v, dropout_p=p)
        return self.to_out(rearrange(out, "s h l d -> s (l h d)"))
