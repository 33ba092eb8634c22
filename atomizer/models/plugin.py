"""Default plugin: registers the Atomizer variants and the baselines.

| name             | what                                                                        |
|------------------|-----------------------------------------------------------------------------|
| ``atomizer``     | small default (32 latents x 128 wide, 2 blocks x 1 self-attention layer)    |
| ``atomizer-tiny``| smaller still, for smoke runs (16 latents x 64, 1 block x 1 layer)          |
| ``atomizer-paper``| the paper's depth: 4 cross-attention blocks x 4 self-attention layers      |
| ``resnet``       | ResNet baseline on a fixed-layout raster                                    |
| ``vit``          | ViT baseline                                                                |
| ``scalemae``     | ViT with Scale-MAE's GSD-scaled positional encoding                         |
| ``perceiver``    | plain Perceiver on raster pixels (values + Fourier positions)              |
| ``dofa``         | DOFA: wavelength -> patch-kernel hypernetwork, ViT (only the bands present) |
| ``panopticon``   | Panopticon: per-channel tokens fused by spectral cross-attention, ViT       |
| ``copernicusfm`` | Copernicus-FM: wavelength + bandwidth hypernetwork, metadata, ViT           |

The paper gives the depth (4 x 4) and the atom-drop fraction (0.5); the widths of ``atomizer-paper``
(128 latents x 512, one 64-wide cross-attention head, 8 self-attention heads of 64) are the usual
Perceiver ones, our choice where the paper summary in DESIGN.md is silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from atomizer.plugins.hookspecs import hookimpl

#: Preset of ``atomizer-paper`` (paper section 4: 4 cross-attention blocks x 4 self-attention
#: layers).
PAPER_PRESET: Mapping[str, Any] = MappingProxyType(
    {
        "num_latents": 128,
        "latent_dim": 512,
        "atom_dim": 256,
        "cross_heads": 1,
        "cross_dim_head": 64,
        "latent_heads": 8,
        "latent_dim_head": 64,
        "num_blocks": 4,
        "self_per_block": 4,
        "atom_drop_p": 0.5,
    }
)

#: Preset of ``atomizer-tiny``: smoke runs and CI.
TINY_PRESET: Mapping[str, Any] = MappingProxyType(
    {
        "num_latents": 16,
        "latent_dim": 64,
        "atom_dim": 64,
        "cross_dim_head": 32,
        "latent_heads": 2,
        "latent_dim_head": 32,
        "num_blocks": 1,
        "self_per_block": 1,
        "tokenizer": {
            "value": {"name": "fourier_value", "num_bands": 8, "max_freq": 16.0},
            "position": {"name": "position", "num_bands": 8, "max_freq": 32.0},
            "spectral": {"name": "spectral"},
        },
    }
)


def builtin_variants() -> dict[str, Any]:
    """Name -> :class:`~atomizer.models.registry.ModelFactory` of each built-in model (new dict)."""
    from atomizer.models.atomizer_model import AtomizerModel
    from atomizer.models.baselines import (
        PerceiverBaselineModel,
        ResNetModel,
        ScaleMAEModel,
        ViTModel,
    )
    from atomizer.models.copernicusfm import CopernicusFMModel
    from atomizer.models.dofa import DOFAModel
    from atomizer.models.panopticon import PanopticonModel
    from atomizer.models.registry import ModelFactory

    return {
        "atomizer": ModelFactory(AtomizerModel, {}, "Atomizer, small default"),
        "atomizer-tiny": ModelFactory(AtomizerModel, TINY_PRESET, "Atomizer, smoke-run size"),
        "atomizer-paper": ModelFactory(AtomizerModel, PAPER_PRESET, "Atomizer, paper depth 4 x 4"),
        "resnet": ModelFactory(ResNetModel, {}, "ResNet on a fixed-layout raster"),
        "vit": ModelFactory(ViTModel, {}, "ViT on a fixed-layout raster"),
        "scalemae": ModelFactory(ScaleMAEModel, {}, "ViT with GSD-scaled positions (Scale-MAE)"),
        "perceiver": ModelFactory(PerceiverBaselineModel, {}, "plain Perceiver on raster pixels"),
        "dofa": ModelFactory(DOFAModel, {}, "DOFA: wavelength-conditioned patch embedding, ViT"),
        "panopticon": ModelFactory(PanopticonModel, {}, "Panopticon: spectral channel attention"),
        "copernicusfm": ModelFactory(CopernicusFMModel, {}, "Copernicus-FM: spectral + metadata"),
    }


@hookimpl
def register_models(register):
    for name, factory in builtin_variants().items():
        register(name, factory)
