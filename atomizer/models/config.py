"""Strict pydantic configs of every model: enough, as JSON, to rebuild the model.

A model's ``config`` attribute is one of these; ``build_model(name, config.model_dump(mode=
"json"))`` rebuilds it (that is how checkpoints record their architecture). Unknown keys and
impossible values are rejected; :func:`validate_config` reports every problem with its key path
through the one config pipeline (:mod:`atomizer.config`), as one
:class:`~atomizer.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, model_validator

from atomizer import config as config_pipeline
from atomizer.config import StrictModel
from atomizer.errors import ConfigError

Task = Literal["multilabel", "multiclass"]

#: Default tolerance (nm) when a raster layout band is matched to an input band by its centre.
DEFAULT_WAVELENGTH_TOLERANCE_NM = 25.0


class ModelConfig(StrictModel):
    """Fields every model shares: the output head."""

    num_classes: int = Field(ge=1, description="Outputs of the head (logits).")
    task: Task = Field(
        default="multilabel",
        description="multilabel: independent sigmoids (BCE-with-logits); multiclass: one softmax.",
    )


class PerceiverConfig(ModelConfig):
    """The Perceiver core shared by the Atomizer and the plain-Perceiver baseline."""

    num_latents: int = Field(default=32, ge=1, description="L, learnable latent vectors.")
    latent_dim: int = Field(default=128, ge=1, description="Width of each latent.")
    cross_heads: int = Field(default=1, ge=1)
    cross_dim_head: int = Field(default=64, ge=1, description="Width of one cross-attention head.")
    latent_heads: int = Field(default=4, ge=1)
    latent_dim_head: int = Field(default=32, ge=1, description="Width of one self-attention head.")
    num_blocks: int = Field(default=2, ge=1, description="Cross-attention blocks.")
    self_per_block: int = Field(default=1, ge=0, description="Self-attention layers per block.")
    ff_mult: int = Field(default=4, ge=1, description="Feed-forward hidden width / latent_dim.")
    share_weights: bool = Field(
        default=True,
        description="Blocks after the first share one set of weights (cross- and self-attention).",
    )
    atom_drop_p: float = Field(
        default=0.5,
        ge=0.0,
        lt=1.0,
        description="Fraction of each sample's atoms dropped before EACH cross-attention "
        "(training only).",
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout (training only).")
    pool_heads: int = Field(default=1, ge=1, description="Heads of the attention pooling.")
    chunk_size: int | None = Field(
        default=None,
        ge=1,
        description="Atoms per chunk of the cross-attention when gradients are off "
        "(bounded memory).",
    )
    fused_attention: bool = Field(
        default=True,
        description="Compute the atoms' keys and values tile by tile inside the cross-attention "
        "and recompute them in the backward pass instead of storing them (factorised atoms only; "
        "not with attention dropout in training): training memory independent of the atom count.",
    )

    @model_validator(mode="after")
    def _divisible(self) -> PerceiverConfig:
        if self.latent_dim % self.pool_heads:
            raise ValueError(
                f"latent_dim {self.latent_dim} is not divisible by pool_heads {self.pool_heads}; "
                "pick pool_heads that divides latent_dim"
            )
        return self


class AtomizerConfig(PerceiverConfig):
    """The Atomizer: token encoders (the ``tokenizer`` section) + a Perceiver over atoms."""

    tokenizer: dict[str, Any] = Field(
        default_factory=dict,
        description="Token encoding config passed to atomizer.encoders.Tokenizer.from_config.",
    )
    atom_dim: int = Field(
        default=128, ge=1, description="Width of the (never materialised) projected atom embedding."
    )


class RasterBandConfig(StrictModel):
    """One channel of a raster layout: the reference band an input band must match."""

    name: str = Field(min_length=1)
    common_name: str | None = None
    center_wavelength_nm: float = Field(gt=0)
    mean: float = Field(default=0.0, description="Channel normalisation: (value - mean) / std.")
    std: float = Field(default=1.0, gt=0)


class RasterLayoutConfig(StrictModel):
    """A fixed band layout + grid: how the baselines see an AtomSet.

    Give ``bands`` explicitly, or ``sensor`` (a registry id, optionally with ``sensor_bands``),
    which the model expands into explicit ``bands`` when it is built, so that a saved config is
    self-contained.
    """

    bands: list[RasterBandConfig] | None = None
    sensor: str | None = Field(default=None, description="Registry id whose bands form the layout.")
    sensor_bands: list[str] | None = Field(
        default=None, description="Subset of the sensor's bands."
    )
    size_px: int = Field(default=32, ge=1, description="Raster side in pixels.")
    grid: Literal["fit", "fixed"] = Field(
        default="fit",
        description="fit: the raster spans each sample's footprint (like resizing an image); "
        "fixed: pixels of gsd_m metres around the footprint centre.",
    )
    gsd_m: float | None = Field(default=None, gt=0, description="Pixel size of the fixed grid.")
    wavelength_tolerance_nm: float = Field(default=DEFAULT_WAVELENGTH_TOLERANCE_NM, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> RasterLayoutConfig:
        if (self.bands is None) == (self.sensor is None):
            raise ValueError("give exactly one of 'bands' (a list of reference bands) or 'sensor'")
        if self.bands is not None and not self.bands:
            raise ValueError("'bands' is empty; list at least one reference band")
        if self.sensor_bands is not None and self.sensor is None:
            raise ValueError("'sensor_bands' needs 'sensor'")
        if self.grid == "fixed" and self.gsd_m is None:
            raise ValueError("grid 'fixed' needs gsd_m (metres per pixel)")
        if self.bands is not None:
            names = [b.name.lower() for b in self.bands]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"layout band(s) {', '.join(dup)} listed twice")
        return self


class RasterModelConfig(ModelConfig):
    """Fields of every baseline: the raster layout it reads."""

    layout: RasterLayoutConfig


class ResNetConfig(RasterModelConfig):
    """A ResNet of basic blocks (one stage per entry of ``widths``)."""

    stem_width: int = Field(default=32, ge=1)
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    blocks_per_stage: list[int] = Field(default_factory=lambda: [1, 1, 1], min_length=1)

    @model_validator(mode="after")
    def _stages(self) -> ResNetConfig:
        if len(self.widths) != len(self.blocks_per_stage):
            raise ValueError(
                f"widths has {len(self.widths)} stages but blocks_per_stage has "
                f"{len(self.blocks_per_stage)}; give one block count per stage"
            )
        if any(w < 1 for w in self.widths) or any(b < 1 for b in self.blocks_per_stage):
            raise ValueError("every stage needs a width >= 1 and at least one block")
        return self


class ViTConfig(RasterModelConfig):
    """A ViT over square patches of the raster."""

    patch_size: int = Field(default=8, ge=1, description="Patch side in raster pixels.")
    dim: int = Field(default=128, ge=1)
    depth: int = Field(default=4, ge=1)
    heads: int = Field(default=4, ge=1)
    dim_head: int = Field(default=32, ge=1)
    ff_mult: int = Field(default=4, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _patches(self) -> ViTConfig:
        if self.layout.size_px % self.patch_size:
            raise ValueError(
                f"layout.size_px {self.layout.size_px} is not a multiple of patch_size "
                f"{self.patch_size}"
            )
        return self


class ScaleMAEConfig(ViTConfig):
    """A ViT whose sin-cos positional encoding is scaled by the GSD (Scale-MAE style)."""

    reference_gsd_m: float = Field(
        default=10.0, gt=0, description="GSD at which positions are encoded unscaled."
    )

    @model_validator(mode="after")
    def _even(self) -> ScaleMAEConfig:
        if self.dim % 4:
            raise ValueError(f"dim {self.dim} must be a multiple of 4 for the 2-D sin-cos encoding")
        return self


class PerceiverBaselineConfig(PerceiverConfig, RasterModelConfig):
    """A plain Perceiver on raster pixels: raw channel values + Fourier positions."""

    fourier_bands: int = Field(default=16, ge=1, description="Frequencies per axis.")
    max_freq: float = Field(
        default=32.0, ge=1.0, description="Highest frequency (per unit extent)."
    )
    atom_drop_p: float = Field(default=0.0, ge=0.0, lt=1.0)


C = TypeVar("C", bound=StrictModel)


def validate_config(cls: type[C], data: Any, *, what: str = "model config") -> C:
    """``cls.model_validate(data)`` with every problem in one :class:`ConfigError`."""
    if isinstance(data, cls):
        return data
    if isinstance(data, BaseModel):
        data = data.model_dump()
    return config_pipeline.validate_config(cls, data, origin=what, error=ConfigError, what=what)


def make_config(cls: type[C], config: Any, params: Mapping[str, Any]) -> C:
    """A validated ``cls`` from ``config`` (a config or a mapping) or from keyword ``params``
    (what a model's keyword-only constructor receives)."""
    if config is not None and params:
        raise ConfigError(
            f"{cls.__name__}: give either config= or keyword parameters, not both "
            f"(got config and {', '.join(sorted(params))})"
        )
    return validate_config(cls, config if config is not None else dict(params))
