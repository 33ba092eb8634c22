"""Panopticon baseline, written from its paper: Waldmann et al. 2025, "Panopticon: Advancing
Any-Sensor Foundation Models for Earth Observation" (arXiv:2503.10845), trained from scratch here.

Parts, and the part of the paper each follows (its Method: the spectral patch embedding that makes
a ViT read any channels, then the ViT):

- **Per-channel patch tokens** (Method, "patch embedding"): every channel is cut into ``k x k``
  patches and projected by ONE shared linear map (a 1-channel convolution), so a patch location
  has as many tokens as the input has channels.
- **Spectral embeddings** (Method, "channel / spectral embedding"): each channel's token gets an
  embedding of its spectral response, modelled as a Gaussian with the band's centre (nm) and
  sigma from its FWHM (:func:`~atomizer.models.spectral_inputs.panopticon_channels`): the
  expectation of the sin-cos wavelength encoding under that Gaussian,
  ``sin(w mu) exp(-(w sigma)^2 / 2)`` and ``cos(...)`` (the paper's integrated positional
  encoding of the full spectral response; its main text uses the centre only).
- **Channel fusion by cross-attention** (Method, "channel attention"): per patch location one
  learned query (not projected) attends over that location's channel tokens (keys and values
  projected, multi-head), masked to the channels the input has; a linear map to the ViT width.
- **ViT** (the DINOv2 backbone's layout): learned positions, a class token, transformer layers,
  the normalised class token as the embedding.

Deviations: small widths for the CPU budget; the project's pre-norm transformer layers; the SAR
channel embeddings of the paper are left out (optical sensors only here). No pretraining.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from pydantic import Field, model_validator
from torch import Tensor, nn

from atomizer.models.any_sensor import SINCOS_BASE, AnySensorConfig, AnySensorModel
from atomizer.models.attention import key_padding_sdpa
from atomizer.models.spectral_inputs import panopticon_channels
from atomizer.sensors.spec import Band


class PanopticonConfig(AnySensorConfig):
    """Panopticon: per-channel tokens + spectral embeddings, fused by cross-attention; a ViT."""

    attn_dim: int = Field(default=64, ge=2, description="Width of the channel tokens.")
    attn_heads: int = Field(default=4, ge=1, description="Heads of the channel cross-attention.")

    @model_validator(mode="after")
    def _attn_shape(self) -> PanopticonConfig:
        if self.attn_dim % 2 or self.attn_dim % self.attn_heads:
            raise ValueError(
                f"attn_dim {self.attn_dim} must be even (sin-cos spectral embedding) and "
                f"divisible by attn_heads {self.attn_heads}"
            )
        return self


def integrated_sincos(mu_nm: Tensor, sigma_nm: Tensor, dim: int) -> Tensor:
    """``E[sincos(lambda)]`` for ``lambda ~ N(mu, sigma^2)``: ``(C,) -> (C, dim)``."""
    k = torch.arange(dim // 2, dtype=torch.float32, device=mu_nm.device)
    omega = SINCOS_BASE ** (-2.0 * k / dim)
    angles = mu_nm[:, None] * omega
    damp = torch.exp(-0.5 * (sigma_nm[:, None] * omega) ** 2)
    return torch.cat([torch.sin(angles) * damp, torch.cos(angles) * damp], dim=-1)


class ChannelAttention(nn.Module):
    """One learned query per patch location attends over its channel tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Parameter(torch.randn(1, 1, dim))
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``tokens (N, C, dim)``, ``mask (N, C)`` (True: a channel present) -> ``(N, dim)``."""
        N = tokens.shape[0]
        q = rearrange(self.query.expand(N, -1, -1), "n q (h d) -> n h q d", h=self.heads)
        k = rearrange(self.to_k(tokens), "n c (h d) -> n h c d", h=self.heads)
        v = rearrange(self.to_v(tokens), "n c (h d) -> n h c d", h=self.heads)
        return rearrange(key_padding_sdpa(q, k, v, mask), "n h q d -> n q (h d)")[:, 0]


class PanopticonModel(AnySensorModel):
    """Panopticon: spectral patch embedding with channel cross-attention + ViT (module doc)."""

    config_cls = PanopticonConfig
    pool = "cls"
    positions = "learned"

    def __init__(self, *, config: Any = None, host: Any = None, **params: Any) -> None:
        super().__init__(config=config, host=host, **params)
        c: PanopticonConfig = self.config
        self.patchify = nn.Conv2d(1, c.attn_dim, c.patch_size, stride=c.patch_size)
        self.fuse = ChannelAttention(c.attn_dim, c.attn_heads)
        self.proj = nn.Linear(c.attn_dim, c.dim)

    def embed_group(self, values: Tensor, channels: tuple[Band, ...]) -> Tensor:
        S, C = values.shape[:2]
        spectral = panopticon_channels(channels).to(values.device)
        emb = integrated_sincos(spectral[:, 0], spectral[:, 1], self.config.attn_dim)  # (C, A)
        tokens = self.patchify(values.reshape(S * C, 1, *values.shape[2:]))  # (S*C, A, h, w)
        tokens = rearrange(tokens, "(s c) a h w -> (s h w) c a", s=S) + emb
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=values.device)
        fused = self.fuse(tokens, mask)  # (S*P, A)
        return self.proj(fused).reshape(S, -1, self.config.dim)
