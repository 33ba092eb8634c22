"""Fourier features and the reflectance (value) encoder ``fourier_value``.

gamma(v; L, f_max) = [sin(pi f_1 v) .. sin(pi f_L v), cos(pi f_1 v) .. cos(pi f_L v), v] with the
f_i linearly spaced in [1, f_max]: ``2L + 1`` values per scalar (``2L`` without the input itself).

Encoders keep their constants (frequencies, Gaussian centres) as float64 CPU tensors rather than
buffers, so that casting a model to half precision never rounds them; each call moves them to the
input's device and dtype (a few dozen numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from atomizer.errors import EncoderError
from atomizer.sensors.spec import Band


def check_fourier_params(owner: str, num_bands: int, max_freq: float) -> None:
    """Raise :class:`EncoderError` unless ``num_bands >= 1`` and ``max_freq >= 1``."""
    if isinstance(num_bands, bool) or not isinstance(num_bands, int) or num_bands < 1:
        raise EncoderError(f"{owner}: num_bands must be an integer >= 1, got {num_bands!r}")
    if not isinstance(max_freq, (int, float)) or not math.isfinite(max_freq) or max_freq < 1:
        raise EncoderError(
            f"{owner}: max_freq must be a finite number >= 1 (frequencies span [1, max_freq]), "
            f"got {max_freq!r}"
        )


def fourier_frequencies(num_bands: int, max_freq: float, *, dtype: torch.dtype = torch.float64,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """The ``num_bands`` frequencies f_i, linearly spaced in ``[1, max_freq]`` (just 1 when L = 1)."""
    return torch.linspace(1.0, float(max_freq), num_bands, dtype=dtype, device=device)


def fourier_features(x: torch.Tensor, frequencies: torch.Tensor, *, include_input: bool = True) -> torch.Tensor:
    """gamma(x): ``(...,)`` -> ``(..., 2L [+1])`` as ``[sin(pi f x), cos(pi f x)(, x)]``.

    Computed in ``x``'s floating dtype (integers are promoted to float32).
    """
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    freqs = frequencies.to(dtype=x.dtype, device=x.device)
    angles = x.unsqueeze(-1) * (math.pi * freqs)
    parts = [torch.sin(angles), torch.cos(angles)]
    if include_input:
        parts.append(x.unsqueeze(-1))
    return torch.cat(parts, dim=-1)


class FourierValueEncoder(nn.Module):
    """``fourier_value``: Fourier features of each atom's physical value (e.g. reflectance).

    :param num_bands: L, the number of frequencies.
    :param max_freq: f_max; frequencies are linearly spaced in ``[1, max_freq]``. A value v is
        resolved down to about ``1 / max_freq`` (half the finest period, in the value's units).
    :param normalise: standardise each value by its band's ``stats`` (``(v - mean) / std``) first;
        bands without ``stats`` are left as they are.
    :param include_input: append v itself (``2L + 1`` features; ``2L`` without).

    No trainable parameters: a fixed feature map.
    """

    role = "value"

    def __init__(self, *, num_bands: int = 32, max_freq: float = 32.0, normalise: bool = False,
                 include_input: bool = True) -> None:
        super().__init__()
        check_fourier_params("fourier_value", num_bands, max_freq)
        self.num_bands = num_bands
        self.max_freq = float(max_freq)
        self.normalise = bool(normalise)
        self.include_input = bool(include_input)
        self.frequencies = fourier_frequencies(num_bands, max_freq)  # float64, CPU; see module doc

    @property
    def out_dim(self) -> int:
        return 2 * self.num_bands + int(self.include_input)

    def band_stats(self, bands: Sequence[Band], *, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-band ``(mean, std)``, each ``(B,)``; mean 0 and std 1 for bands without stats."""
        mean = [b.stats.mean if b.stats is not None else 0.0 for b in bands]
        std = [b.stats.std if b.stats is not None else 1.0 for b in bands]
        return (torch.tensor(mean, dtype=dtype, device=device),
                torch.tensor(std, dtype=dtype, device=device))

    def forward(self, value: torch.Tensor, bands: Sequence[Band] | None = None,
                band_index: torch.Tensor | None = None) -> torch.Tensor:
        """``(...,)`` values -> ``(..., out_dim)``; ``bands`` and ``band_index`` (same shape as
        ``value``) are needed only with ``normalise``."""
        if not torch.is_floating_point(value):
            value = value.to(torch.float32)
        if self.normalise:
            if bands is None or band_index is None:
                raise EncoderError(
                    "fourier_value with normalise: true needs the band table and each atom's band "
                    "index; pass bands= and band_index=, or set normalise: false"
                )
            mean, std = self.band_stats(bands, dtype=value.dtype, device=value.device)
            if len(bands):
                value = (value - mean[band_index]) / std[band_index]
        return fourier_features(value, self.frequencies, include_input=self.include_input)

    def extra_repr(self) -> str:
        return (f"num_bands={self.num_bands}, max_freq={self.max_freq}, normalise={self.normalise}, "
                f"out_dim={self.out_dim}")
