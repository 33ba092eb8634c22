"""Baselines of the paper: ResNet, ViT, a Scale-MAE-style ViT and a plain Perceiver.

As in the paper, they read rasters in a FIXED band layout (missing bands zero-filled): each one
takes an :class:`~atomizer.atoms.AtomBatch` like the Atomizer and rasterises it internally with
:class:`~atomizer.models.rasterize.RasterLayout` (the ``layout`` section of its config). The layout
is expanded to explicit bands when the model is built, so ``model.config`` alone rebuilds it.

- :class:`ResNetModel`: basic-block ResNet, global average pooling.
- :class:`ViTModel`: patch embedding, learned positions, class token.
- :class:`ScaleMAEModel`: a ViT whose 2-D sin-cos positional encoding is scaled by the ground
  distance each patch covers (Scale-MAE's GSD positional encoding): patch ``p`` of a sample at
  ``gsd`` metres per pixel sits at ``p * gsd / reference_gsd_m``.
- :class:`PerceiverBaselineModel`: the Perceiver core over raster pixels, each pixel a token of its
  raw (normalised) channel values plus Fourier features of its position; no spectral metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from atomizer.atoms.batch import AtomBatch
from atomizer.encoders.fourier import fourier_features, fourier_frequencies
from atomizer.models.attention import TransformerLayer
from atomizer.models.config import (
    PerceiverBaselineConfig,
    RasterModelConfig,
    ResNetConfig,
    ScaleMAEConfig,
    ViTConfig,
    make_config,
)
from atomizer.models.perceiver import DenseAtomSource, PerceiverCore
from atomizer.models.rasterize import Raster, RasterLayout

#: Wavelength base of the sin-cos positional encodings (the Transformer / MAE constant).
SINCOS_BASE = 10000.0


class RasterModel(nn.Module):
    """Common part of the baselines: layout, rasterisation, ``encode`` / ``forward``."""

    config_cls: type[RasterModelConfig] = RasterModelConfig

    def __init__(self, *, config: Any = None, host: Any = None, **params: Any) -> None:
        super().__init__()
        cfg = make_config(self.config_cls, config, params)
        self.layout = RasterLayout(cfg.layout, host=host)
        self.config = cfg.model_copy(update={"layout": self.layout.config})

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`encode`'s output (what the head reads)."""
        head = self.core.head if hasattr(self, "core") else self.head
        return int(head.in_features)

    def raster(self, batch: AtomBatch) -> Raster:
        with torch.no_grad():
            return self.layout.rasterize(batch)

    def features(self, raster: Raster) -> Tensor:
        """Pooled features ``(S, D)`` of a raster."""
        raise NotImplementedError

    def encode(self, batch: AtomBatch) -> Tensor:
        """Pooled embedding ``(S, D)`` (before the head)."""
        return self.features(self.raster(batch))

    def forward(self, batch: AtomBatch) -> Tensor:
        """Logits ``(S, num_classes)``."""
        return self.head(self.encode(batch))


# --- ResNet -------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetModel(RasterModel):
    """A ResNet of basic blocks on the rasterised input."""

    config_cls = ResNetConfig

    def __init__(
        self,
        *,
        config: ResNetConfig | Mapping[str, Any] | None = None,
        host: Any = None,
        **params: Any,
    ) -> None:
        super().__init__(config=config, host=host, **params)
        c: ResNetConfig = self.config
        self.stem = nn.Sequential(
            nn.Conv2d(self.layout.num_channels, c.stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(c.stem_width),
            nn.ReLU(),
        )
        stages, width = [], c.stem_width
        for i, (w, n) in enumerate(zip(c.widths, c.blocks_per_stage)):
            blocks = [BasicBlock(width, w, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(w, w, stride=1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            width = w
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(width, c.num_classes)

    def features(self, raster: Raster) -> Tensor:
        return self.stages(self.stem(raster.values)).mean(dim=(2, 3))


# --- ViT ----------------------------------------------------------------------------------------
class ViTModel(RasterModel):
    """A ViT: patches -> tokens (+ positions), transformer layers, class-token output."""

    config_cls = ViTConfig

    def __init__(
        self,
        *,
        config: ViTConfig | Mapping[str, Any] | None = None,
        host: Any = None,
        **params: Any,
    ) -> None:
        super().__init__(config=config, host=host, **params)
        c: ViTConfig = self.config
        self.grid = c.layout.size_px // c.patch_size
        self.patch = nn.Conv2d(self.layout.num_channels, c.dim, c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.init_positions(c)
        self.layers = transformer_stack(c)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_classes)

    def init_positions(self, c: ViTConfig) -> None:
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, c.dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def positions(self, raster: Raster) -> Tensor:
        """Positional embeddings ``(1 or S, patches, dim)``."""
        return self.pos_embed

    def features(self, raster: Raster) -> Tensor:
        x = rearrange(self.patch(raster.values), "s d h w -> s (h w) d") + self.positions(raster)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(self.layers(x))[:, 0]


def transformer_stack(c: Any) -> nn.Sequential:
    """``c.depth`` transformer layers of width ``c.dim`` (``c.heads``, ``c.dim_head``, ``c.ff_mult``,
    ``c.dropout``): the trunk of the ViT and of the any-sensor baselines."""
    return nn.Sequential(
        *(
            TransformerLayer(
                c.dim, heads=c.heads, dim_head=c.dim_head, ff_mult=c.ff_mult, dropout=c.dropout
            )
            for _ in range(c.depth)
        )
    )


def sincos_1d(pos: Tensor, dim: int) -> Tensor:
    """``(...,)`` positions -> ``(..., dim)``: ``[sin(pos w_k), cos(pos w_k)]``,
    ``w_k = base^(-2k/dim)``."""
    k = torch.arange(dim // 2, dtype=torch.float32, device=pos.device)
    omega = SINCOS_BASE ** (-2.0 * k / dim)
    angles = pos[..., None].to(torch.float32) * omega
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class ScaleMAEModel(ViTModel):
    """ViT with Scale-MAE's GSD-scaled 2-D sin-cos positional encoding (no learned positions)."""

    config_cls = ScaleMAEConfig

    def init_positions(self, c: ViTConfig) -> None:
        self.pos_embed = None

    def positions(self, raster: Raster) -> Tensor:
        c: ScaleMAEConfig = self.config
        idx = torch.arange(self.grid, dtype=torch.float32, device=raster.values.device)
        scale = (raster.gsd_m.to(idx.device) / c.reference_gsd_m)[:, None]  # (S, 1)
        pos = idx[None, :] * scale  # (S, grid): patch index in reference-GSD patches
        ey = sincos_1d(pos, c.dim // 2)  # (S, grid, dim/2)
        ex = sincos_1d(pos, c.dim // 2)
        grid = torch.cat(
            [
                ey[:, :, None, :].expand(-1, -1, self.grid, -1),
                ex[:, None, :, :].expand(-1, self.grid, -1, -1),
            ],
            dim=-1,
        )
        return rearrange(grid, "s h w d -> s (h w) d")


# --- plain Perceiver ----------------------------------------------------------------------------
class PerceiverBaselineModel(RasterModel):
    """The Perceiver core over pixels: ``[channel values | Fourier(x) | Fourier(y)]`` tokens."""

    config_cls = PerceiverBaselineConfig

    def __init__(
        self,
        *,
        config: PerceiverBaselineConfig | Mapping[str, Any] | None = None,
        host: Any = None,
        **params: Any,
    ) -> None:
        super().__init__(config=config, host=host, **params)
        c: PerceiverBaselineConfig = self.config
        self.register_buffer(
            "frequencies",
            fourier_frequencies(c.fourier_bands, c.max_freq, dtype=torch.float32),
            persistent=False,
        )
        self.token_dim = self.layout.num_channels + 2 * (2 * c.fourier_bands + 1)
        self.core = PerceiverCore(c, atom_dim=self.token_dim)

    def pixel_tokens(self, raster: Raster) -> Tensor:
        """``(S, H*W, C + 2 (2L+1))`` tokens; positions in [-1, 1] across the raster."""
        S, _, H, W = raster.values.shape
        coord = (
            torch.arange(H, dtype=torch.float32, device=raster.values.device) + 0.5
        ) / H * 2 - 1
        fx = fourier_features(coord, self.frequencies)  # (W, 2L+1)
        pos = torch.cat(
            [fx[None, :, :].expand(H, -1, -1), fx.flip(0)[:, None, :].expand(-1, W, -1)], dim=-1
        )  # (H, W, 2(2L+1)); row 0 is north (y = +1)
        values = rearrange(raster.values, "s c h w -> s (h w) c")
        return torch.cat([values, pos.reshape(1, H * W, -1).expand(S, -1, -1)], dim=-1)

    def features(self, raster: Raster) -> Tensor:
        tokens = self.pixel_tokens(raster)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return self.core.encode(DenseAtomSource(tokens, mask))

    def forward(self, batch: AtomBatch) -> Tensor:
        return self.core.head(self.encode(batch))
