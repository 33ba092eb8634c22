"""The Perceiver core shared by the Atomizer and the plain-Perceiver baseline.

``L`` learnable latents go through ``num_blocks`` blocks; each block is a cross-attention (latents
attend to the atoms) followed by ``self_per_block`` self-attention layers over the latents. With
``share_weights`` every block after the first uses ONE shared set of weights (the paper's weight
sharing): the module of block 2 *is* the module of blocks 3, 4, ... Before EACH cross-attention, in
training mode only, a fraction ``atom_drop_p`` of each sample's real atoms is dropped at random and
the kept atoms are gathered, so the cost of the cross-attention really falls. An attention pooling
over the latents gives the embedding (:meth:`PerceiverCore.encode`), and a linear head the logits.

Atoms reach the core through an :class:`AtomSource`: something that, given a cross-attention's
``to_kv`` linear layer, returns the keys and values of a subset of atoms. :class:`DenseAtomSource`
applies it to materialised embeddings; the Atomizer's factorised source computes the same numbers
without ever building the ``(S, N, D)`` embedding matrix (see :mod:`atomizer.models.projection`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atomizer.models.attention import AttentionPooling, CrossAttention, TransformerLayer
from atomizer.models.config import PerceiverConfig


class AtomSource(Protocol):
    """Atoms of one batch as the cross-attention sees them."""

    @property
    def mask(self) -> Tensor:
        """``(S, N)`` bool, True for real atoms."""

    def prepare(self, linear: nn.Linear) -> None:
        """Precompute whatever :meth:`kv` needs for ``linear`` (shared blocks reuse it)."""

    def kv(self, linear: nn.Linear, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Keys and values ``linear(embedding).chunk(2, -1)`` of the atoms at ``index (S, K)`` (all
        atoms if None), each ``(S, K, out / 2)``."""

    def kv_range(self, linear: nn.Linear, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """Keys and values of atoms ``start:stop`` of each sample, each ``(S, stop-start, o/2)``."""

    def fused_attend(
        self, linear: nn.Linear, index: Tensor | None, kept: Tensor
    ) -> Callable[[Tensor], Tensor] | None:
        """A function ``q (S,h,L,d) -> attention output`` that never stores the keys and values,
        or None when this source has no such path."""


def gather_atoms(t: Tensor, index: Tensor) -> Tensor:
    """Rows ``index (S, K)`` of ``t (S, N, ...)`` along dimension 1."""
    if t.dim() == 2:
        return torch.gather(t, 1, index)
    flat = t.reshape(t.shape[0], t.shape[1], -1)
    out = torch.gather(flat, 1, index.unsqueeze(-1).expand(-1, -1, flat.shape[-1]))
    return out.reshape(index.shape[0], index.shape[1], *t.shape[2:])


class DenseAtomSource:
    """Atoms given as materialised embeddings ``(S, N, D)`` (the naive path, and pixel tokens)."""

    def __init__(self, embeddings: Tensor, mask: Tensor) -> None:
        self.embeddings = embeddings
        self._mask = mask

    @property
    def mask(self) -> Tensor:
        return self._mask

    def prepare(self, linear: nn.Linear) -> None:
        return None

    def kv(self, linear: nn.Linear, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        e = self.embeddings if index is None else gather_atoms(self.embeddings, index)
        return _split_linear(linear, e)

    def kv_range(self, linear: nn.Linear, start: int, stop: int) -> tuple[Tensor, Tensor]:
        return _split_linear(linear, self.embeddings[:, start:stop])

    def fused_attend(self, linear: nn.Linear, index: Tensor | None, kept: Tensor) -> None:
        return None


def _split_linear(linear: nn.Linear, e: Tensor) -> tuple[Tensor, Tensor]:
    """``linear(e).chunk(2, -1)`` computed as two contiguous outputs."""
    wk, wv = linear.weight.chunk(2, dim=0)
    bk, bv = (None, None) if linear.bias is None else linear.bias.chunk(2)
    return F.linear(e, wk, bk), F.linear(e, wv, bv)


def drop_atoms(
    mask: Tensor, p: float, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Pick the atoms kept when a fraction ``p`` of each sample's real atoms is dropped.

    Sample ``s`` with ``n_s`` real atoms keeps ``n_s - floor(p * n_s)`` of them (at least one when
    ``n_s > 0``), uniformly at random; padding is never picked. Returns ``index (S, K)`` into the
    atom axis (ascending, for memory locality) and ``kept_mask (S, K)``, with ``K`` the largest
    number kept.
    """
    S, N = mask.shape
    n = mask.sum(dim=1)
    keep = n - torch.floor(n.to(torch.float64) * p).to(n.dtype)
    k_max = max(int(keep.max()), 1) if S else 1
    scores = torch.rand(S, N, generator=generator, device=mask.device)
    scores = scores.masked_fill(~mask, 2.0)  # real atoms draw from [0, 1): they always come first
    if bool((keep == k_max).all()):  # the usual case: every sample keeps K real atoms
        index = scores.topk(k_max, dim=1, largest=False, sorted=False).indices
        index = index.sort(dim=1).values
        return index, torch.ones(S, k_max, dtype=torch.bool, device=mask.device)
    index = scores.topk(k_max, dim=1, largest=False, sorted=True).indices
    kept_mask = torch.arange(k_max, device=mask.device)[None, :] < keep[:, None]
    index, order = index.sort(dim=1)
    return index, kept_mask.gather(1, order)


class PerceiverBlock(nn.Module):
    """One cross-attention followed by ``self_per_block`` latent self-attention layers."""

    def __init__(self, config: PerceiverConfig, *, atom_dim: int) -> None:
        super().__init__()
        c = config
        self.cross = CrossAttention(
            c.latent_dim,
            atom_dim,
            heads=c.cross_heads,
            dim_head=c.cross_dim_head,
            ff_mult=c.ff_mult,
            dropout=c.dropout,
        )
        self.layers = nn.ModuleList(
            TransformerLayer(
                c.latent_dim,
                heads=c.latent_heads,
                dim_head=c.latent_dim_head,
                ff_mult=c.ff_mult,
                dropout=c.dropout,
            )
            for _ in range(c.self_per_block)
        )
        self.fused = c.fused_attention

    def forward(
        self, latents: Tensor, source: AtomSource, *, drop_p: float, chunk_size: int | None
    ) -> Tensor:
        mask = source.mask
        cross = self.cross
        source.prepare(cross.to_kv)
        dropping = self.training and drop_p > 0
        if chunk_size is not None and not torch.is_grad_enabled() and not dropping:
            attend = cross.chunked(
                lambda a, b: source.kv_range(cross.to_kv, a, b), mask, chunk_size
            )
        else:
            index, kept = drop_atoms(mask, drop_p) if dropping else (None, mask)
            attend = None
            if self.fused and not (self.training and cross.dropout > 0):
                attend = source.fused_attend(cross.to_kv, index, kept)
            if attend is None:
                attend = cross.sdpa(source.kv(cross.to_kv, index), kept)
        latents = cross(latents, attend)
        for layer in self.layers:
            latents = layer(latents)
        return latents


class PerceiverCore(nn.Module):
    """Latents, (shared) blocks, attention pooling, head; ``atom_dim``: width ``to_kv`` reads."""

    def __init__(self, config: PerceiverConfig, *, atom_dim: int) -> None:
        super().__init__()
        c = config
        self.num_blocks = c.num_blocks
        self.drop_p = c.atom_drop_p
        self.chunk_size = c.chunk_size
        self.latents = nn.Parameter(torch.empty(c.num_latents, c.latent_dim))
        nn.init.trunc_normal_(self.latents, std=0.02, a=-2.0, b=2.0)
        n_modules = min(c.num_blocks, 2) if c.share_weights else c.num_blocks
        self.blocks = nn.ModuleList(PerceiverBlock(c, atom_dim=atom_dim) for _ in range(n_modules))
        self.pool = AttentionPooling(c.latent_dim, heads=c.pool_heads, dropout=c.dropout)
        self.norm = nn.LayerNorm(c.latent_dim)
        self.head = nn.Linear(c.latent_dim, c.num_classes)

    def block(self, i: int) -> PerceiverBlock:
        """The module that runs block ``i`` (blocks >= 1 are one module when weights are shared)."""
        if not 0 <= i < self.num_blocks:
            raise IndexError(f"block {i} out of range (the model has {self.num_blocks} blocks)")
        return self.blocks[min(i, len(self.blocks) - 1)]

    def latent_states(self, source: AtomSource) -> Tensor:
        """The latents after every block: ``(S, L, latent_dim)``."""
        S = source.mask.shape[0]
        x = self.latents.unsqueeze(0).expand(S, -1, -1)
        for i in range(self.num_blocks):
            x = self.block(i)(x, source, drop_p=self.drop_p, chunk_size=self.chunk_size)
        return x

    def encode(self, source: AtomSource) -> Tensor:
        """The pooled embedding ``(S, latent_dim)`` (before the head)."""
        return self.norm(self.pool(self.latent_states(source)))

    def forward(self, source: AtomSource) -> Tensor:
        return self.head(self.encode(source))
