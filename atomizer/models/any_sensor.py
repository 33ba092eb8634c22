"""Common part of the wavelength-conditioned any-sensor baselines: DOFA, Panopticon, Copernicus-FM.

Unlike the fixed-layout baselines (:mod:`atomizer.models.baselines`), these read ONLY the bands an
input has: the batch's band table becomes the raster's channels (one channel per distinct band
name and centre; no zero-filled slots), rasterised by the project's one rasteriser
(:class:`~atomizer.models.rasterize.RasterLayout`, exact-centre matching). Samples of one batch may
carry different band sets (a batch that mixes training modalities): each model embeds every
sample from its own channels only (:func:`channel_groups`), so a sample's output never depends on
which other samples share its batch. The spectral description each model reads comes from the one
adapter, :mod:`atomizer.models.spectral_inputs`.

The trunk is the ViT every one of the three papers uses after its patch embedding: a class token,
positional embeddings (fixed 2-D sin-cos or learned), pre-norm transformer layers, and a pooled
output (mean of the patch tokens, or the class token) read by a linear head.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from atomizer.atoms.batch import AtomBatch
from atomizer.config import StrictModel
from atomizer.models.baselines import transformer_stack
from atomizer.models.config import ModelConfig, make_config
from atomizer.models.rasterize import Raster, RasterLayout, layout_for_bands
from atomizer.sensors.spec import Band

#: Wavelength base of the sin-cos encodings (the Transformer / MAE constant).
SINCOS_BASE = 10000.0


class RasterGridConfig(StrictModel):
    """The raster grid of an any-sensor model (its channels are the input's own bands)."""

    size_px: int = Field(default=8, ge=1, description="Raster side in pixels.")
    grid: Literal["fit", "fixed"] = Field(
        default="fit",
        description="fit: the raster spans each sample's footprint; fixed: gsd_m metres a pixel.",
    )
    gsd_m: float | None = Field(default=None, gt=0, description="Pixel size of the fixed grid.")

    @model_validator(mode="after")
    def _fixed_needs_gsd(self) -> RasterGridConfig:
        if self.grid == "fixed" and self.gsd_m is None:
            raise ValueError("grid 'fixed' needs gsd_m (metres per pixel)")
        return self


class AnySensorConfig(ModelConfig):
    """Fields the three any-sensor models share: the raster grid and the ViT trunk."""

    raster: RasterGridConfig = Field(default_factory=RasterGridConfig)
    patch_size: int = Field(default=2, ge=1, description="Patch side in raster pixels.")
    dim: int = Field(default=64, ge=1, description="Width of the ViT tokens.")
    depth: int = Field(default=2, ge=1)
    heads: int = Field(default=2, ge=1)
    dim_head: int = Field(default=32, ge=1)
    ff_mult: int = Field(default=4, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _shapes(self) -> AnySensorConfig:
        if self.raster.size_px % self.patch_size:
            raise ValueError(
                f"raster.size_px {self.raster.size_px} is not a multiple of patch_size "
                f"{self.patch_size}"
            )
        if self.dim % 4:
            raise ValueError(f"dim {self.dim} must be a multiple of 4 (2-D sin-cos positions)")
        return self


def sincos(pos: Tensor, dim: int, *, base: float = SINCOS_BASE) -> Tensor:
    """``(...,)`` -> ``(..., dim)``: ``[sin(pos w_k), cos(pos w_k)]``, ``w_k = base^(-2k/dim)``."""
    k = torch.arange(dim // 2, dtype=torch.float32, device=pos.device)
    angles = pos[..., None].to(torch.float32) * base ** (-2.0 * k / dim)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def sincos_2d(grid: int, dim: int) -> Tensor:
    """Fixed 2-D sin-cos positions of a ``grid x grid`` patch grid, ``(grid*grid, dim)``
    (MAE's: half the width encodes the row, half the column)."""
    idx = torch.arange(grid, dtype=torch.float32)
    rows = sincos(idx, dim // 2)[:, None, :].expand(grid, grid, -1)
    cols = sincos(idx, dim // 2)[None, :, :].expand(grid, grid, -1)
    return torch.cat([rows, cols], dim=-1).reshape(grid * grid, dim)


def channel_groups(present: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Samples that share one channel set: ``[(sample indices, channel indices), ...]``."""
    groups: dict[tuple[bool, ...], list[int]] = {}
    for i, row in enumerate(present.cpu().tolist()):
        groups.setdefault(tuple(row), []).append(i)
    device = present.device
    return [
        (
            torch.tensor(samples, dtype=torch.long, device=device),
            torch.tensor([c for c, on in enumerate(key) if on], dtype=torch.long, device=device),
        )
        for key, samples in groups.items()
    ]


def raster_channels(bands: tuple[Band, ...]) -> tuple[Band, ...]:
    """One channel per distinct (name, centre) of a batch's band table, in table order (the same
    band at two GSDs is one channel: the rasteriser keeps each atom's own footprint)."""
    seen: dict[tuple[str, float], Band] = {}
    for band in bands:
        seen.setdefault((band.name.lower(), band.center_wavelength_nm), band)
    return tuple(seen.values())


class AnySensorModel(nn.Module):
    """Base: raster of the input's own bands -> :meth:`embed_group` per band set -> ViT -> head."""

    config_cls: type[AnySensorConfig] = AnySensorConfig
    #: ``mean``: mean of the patch tokens (DOFA, Copernicus-FM); ``cls``: the class token.
    pool: Literal["mean", "cls"] = "mean"
    #: ``sincos``: fixed 2-D sin-cos positions (DOFA, Copernicus-FM); ``learned`` (Panopticon).
    positions: Literal["sincos", "learned"] = "sincos"

    def __init__(self, *, config: Any = None, host: Any = None, **params: Any) -> None:
        super().__init__()
        self.config = make_config(self.config_cls, config, params)
        c = self.config
        self.grid = c.raster.size_px // c.patch_size
        self._layouts: dict[tuple, RasterLayout] = {}
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.positions == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, c.dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            fixed = torch.cat([torch.zeros(1, c.dim), sincos_2d(self.grid, c.dim)])[None]
            self.register_buffer("pos_embed", fixed, persistent=False)
        self.layers = transformer_stack(c)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_classes)

    @property
    def feature_dim(self) -> int:
        return int(self.head.in_features)

    # --- input --------------------------------------------------------------------------------
    def layout_for(self, channels: tuple[Band, ...]) -> RasterLayout:
        """The rasteriser of one channel table (built once per distinct table)."""
        key = tuple(b.identity for b in channels)
        if key not in self._layouts:
            r = self.config.raster
            self._layouts[key] = layout_for_bands(
                channels, size_px=r.size_px, grid=r.grid, gsd_m=r.gsd_m, wavelength_tolerance_nm=0.0
            )
        return self._layouts[key]

    def raster(self, batch: AtomBatch) -> tuple[Raster, tuple[Band, ...]]:
        """The batch's raster over its own bands (no gradient: the input is data)."""
        channels = raster_channels(batch.bands) or batch.bands
        with torch.no_grad():
            return self.layout_for(channels).rasterize(batch), channels

    # --- model ----------------------------------------------------------------------------------
    def embed_group(self, values: Tensor, channels: tuple[Band, ...]) -> Tensor:
        """Patch tokens ``(S, P, dim)`` of rasters ``values (S, C, H, W)`` whose channels are
        ``channels`` (every sample has all of them)."""
        raise NotImplementedError

    def metadata(self, batch: AtomBatch, raster: Raster) -> Tensor | None:
        """An embedding ``(S, 1, dim)`` added to every token, or None (Copernicus-FM's)."""
        return None

    def patch_tokens(self, batch: AtomBatch) -> tuple[Tensor, Raster]:
        raster, channels = self.raster(batch)
        S = raster.values.shape[0]
        out = raster.values.new_zeros(S, self.grid * self.grid, self.config.dim)
        for samples, chans in channel_groups(raster.present):
            if chans.numel() == 0:  # a sample without atoms: positions only
                continue
            sub = raster.values[samples][:, chans]
            tokens = self.embed_group(sub, tuple(channels[i] for i in chans.tolist()))
            out = out.index_copy(0, samples, tokens.to(out.dtype))
        return out, raster

    def encode(self, batch: AtomBatch) -> Tensor:
        """Pooled embedding ``(S, dim)`` (before the head)."""
        x, raster = self.patch_tokens(batch)
        pos = self.pos_embed
        meta = self.metadata(batch, raster)
        if meta is not None:
            pos = pos + meta
        x = x + pos[:, 1:]
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        x = self.layers(torch.cat([cls, x], dim=1))
        if self.pool == "cls":
            return self.norm(x)[:, 0]
        return self.norm(x[:, 1:].mean(dim=1))

    def forward(self, batch: AtomBatch) -> Tensor:
        """Logits ``(S, num_classes)``."""
        return self.head(self.encode(batch))
