"""DOFA baseline, written from its paper: Xiong et al. 2024, "Neural Plasticity-Inspired Multimodal
Foundation Model for Earth Observation" (arXiv:2403.15356), trained from scratch here.

Parts, and the part of the paper each follows (its Methods: the wavelength-conditioned dynamic
patch embedding, then the shared ViT):

- **Wavelength encoding** (Methods, "wavelength-conditioned dynamic patch embedding"): each band's
  centre wavelength, given in micrometres (DOFA's input unit, from
  :func:`~atomizer.models.spectral_inputs.dofa_wavelengths_um`), is encoded with 1-D sin-cos
  features of the wavelength in nanometres (the published code multiplies by 1000), then a
  fully-connected residual layer.
- **Dynamic weight generator** (same part, the hypernetwork): a transformer over learned weight
  tokens, the band tokens and a bias token; each band's output (plus its encoding) becomes that
  band's ``k x k x dim`` patch-embedding kernel, the bias token the embedding's bias; both scaled
  by 0.01 as published. The kernels of the bands an input HAS form a convolution of stride ``k``:
  one model reads any number of bands.
- **Shared ViT** (Methods, the shared backbone): fixed 2-D sin-cos positions, a class token,
  transformer layers, global average pooling of the patch tokens (the published classifier's
  ``global_pool``), linear head.

Deviations, for the CPU budget and clarity: widths are small (``wv_dim``, ``weight_tokens`` instead
of 128 and 128); the generator uses this project's pre-norm transformer layer; the generated
kernel is laid out per band (``(C, k, k, dim)``, as Copernicus-FM's revision of the same code
does), and the patch convolution has no padding (plain patchify). No pretraining: every model in
the comparison is trained from scratch on the same protocol.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from atomizer.models.any_sensor import AnySensorConfig, AnySensorModel, sincos
from atomizer.models.attention import TransformerLayer
from atomizer.models.spectral_inputs import NM_PER_UM, dofa_wavelengths_um
from atomizer.sensors.spec import Band

#: The published scale of the generated kernels and bias.
WEIGHT_SCALER = 0.01


class DOFAConfig(AnySensorConfig):
    """DOFA: a wavelength-to-kernel hypernetwork, then a ViT."""

    wv_dim: int = Field(default=32, ge=2, description="Width of the wavelength encoding.")
    weight_tokens: int = Field(default=16, ge=1, description="Learned tokens of the generator.")
    generator_heads: int = Field(default=4, ge=1)
    generator_layers: int = Field(default=1, ge=1)


class FCResLayer(nn.Module):
    """``x + ReLU(W2 ReLU(W1 x))``: the residual layer after the wavelength encoding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.relu(self.w2(torch.relu(self.w1(x))))


class WeightGenerator(nn.Module):
    """Band encodings ``(C, wv_dim)`` -> kernels ``(C, out_dim)`` and a bias ``(bias_dim,)``."""

    def __init__(
        self, wv_dim: int, out_dim: int, bias_dim: int, *, tokens: int, heads: int, layers: int
    ) -> None:
        super().__init__()
        self.weight_tokens = nn.Parameter(torch.randn(tokens, wv_dim) * 0.02)
        self.bias_token = nn.Parameter(torch.randn(1, wv_dim) * 0.02)
        head_dim = max(wv_dim // heads, 1)
        self.layers = nn.Sequential(
            *(
                TransformerLayer(wv_dim, heads=heads, dim_head=head_dim, ff_mult=4, dropout=0.0)
                for _ in range(layers)
            )
        )
        self.fc_weight = nn.Linear(wv_dim, out_dim)
        self.fc_bias = nn.Linear(wv_dim, bias_dim)
        for m in (self.fc_weight, self.fc_bias):
            nn.init.xavier_uniform_(m.weight)
            nn.init.constant_(m.bias, 0.01)

    def forward(self, waves: Tensor) -> tuple[Tensor, Tensor]:
        n = self.weight_tokens.shape[0]
        x = torch.cat([self.weight_tokens, waves, self.bias_token])[None]
        out = self.layers(x)[0]
        return self.fc_weight(out[n:-1] + waves), self.fc_bias(out[-1])


class DynamicPatchEmbed(nn.Module):
    """Per-band encodings -> generated ``k x k`` kernels -> a strided convolution."""

    def __init__(self, c: DOFAConfig) -> None:
        super().__init__()
        self.k, self.dim = c.patch_size, c.dim
        self.fc = FCResLayer(c.wv_dim)
        self.generator = WeightGenerator(
            c.wv_dim,
            c.patch_size * c.patch_size * c.dim,
            c.dim,
            tokens=c.weight_tokens,
            heads=c.generator_heads,
            layers=c.generator_layers,
        )

    def forward(self, values: Tensor, waves: Tensor) -> Tensor:
        """``values (S, C, H, W)`` and band encodings ``(C, wv_dim)`` -> ``(S, P, dim)``."""
        weight, bias = self.generator(self.fc(waves))
        C = waves.shape[0]
        kernel = weight.view(C, self.k, self.k, self.dim).permute(3, 0, 1, 2)
        out = F.conv2d(values, kernel * WEIGHT_SCALER, bias * WEIGHT_SCALER, stride=self.k)
        return out.flatten(2).transpose(1, 2)


class DOFAModel(AnySensorModel):
    """DOFA: wavelength-conditioned dynamic patch embedding + ViT (see the module docstring)."""

    config_cls = DOFAConfig
    pool = "mean"
    positions = "sincos"

    def __init__(self, *, config: Any = None, host: Any = None, **params: Any) -> None:
        super().__init__(config=config, host=host, **params)
        self.patch_embed = DynamicPatchEmbed(self.config)

    def embed_group(self, values: Tensor, channels: tuple[Band, ...]) -> Tensor:
        wavelength_um = dofa_wavelengths_um(channels).to(values.device)
        waves = sincos(wavelength_um * NM_PER_UM, self.config.wv_dim)
        return self.patch_embed(values, waves)
