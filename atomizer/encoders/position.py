"""``position``: GSD-aware positional Fourier features (paper section 3.1).

The paper scales a pixel coordinate as ``x_scaled = (x_pixel - w/2) * g / G`` (g the GSD in metres,
G a reference length); atoms already carry ``x`` and ``y`` in metres from the footprint centre, so
this is simply ``x_m / G``. Because only metres enter, the encoding is GSD-equivariant: the same
physical extent spans the same normalised range whatever the pixel size, and a point on the ground
gets the same features from a 10 m and a 60 m band.

Layout of ``forward(x_m, y_m)`` (``4L + 2`` values): ``[encode_1d(x) | encode_1d(y)]`` where
``encode_1d(c) = [sin(pi f_i c/G) (L), cos(pi f_i c/G) (L), c/G]`` (``2L + 1`` values). A model
can therefore compute features once per unique column and once per unique row.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from atomizer.encoders.fourier import check_fourier_params, fourier_features, fourier_frequencies
from atomizer.errors import EncoderError

#: Default reference length G in metres: half the side of a BigEarthNet patch (120 px x 10 m), so
#: the patches the paper trains on span about [-1, 1].
DEFAULT_REFERENCE_M = 600.0


def pixel_center_m(index: torch.Tensor, size: int, gsd_m: float) -> torch.Tensor:
    """Metres from the centre of a ``size``-pixel axis to the centre of pixel ``index``.

    The paper's ``(x_pixel - w/2) * g`` at pixel centres (``x_pixel = index + 0.5``), as AtomSet
    positions are measured.
    """
    return (index + 0.5 - size / 2.0) * gsd_m


class PositionEncoder(nn.Module):
    """``position``: Fourier features of x and y in units of ``reference_m``.

    :param num_bands: L, frequencies per axis.
    :param max_freq: f_max; a coordinate is resolved down to about ``reference_m / max_freq`` metres.
    :param reference_m: G, the reference length in metres (the paper's constant).
    :param include_input: append the scaled coordinate itself to each axis (the paper does).
    """

    role = "position"

    def __init__(self, *, num_bands: int = 32, max_freq: float = 64.0,
                 reference_m: float = DEFAULT_REFERENCE_M, include_input: bool = True) -> None:
        super().__init__()
        check_fourier_params("position", num_bands, max_freq)
        if not isinstance(reference_m, (int, float)) or not math.isfinite(reference_m) or reference_m <= 0:
            raise EncoderError(f"position: reference_m must be a positive length in metres, got {reference_m!r}")
        self.num_bands = num_bands
        self.max_freq = float(max_freq)
        self.reference_m = float(reference_m)
        self.include_input = bool(include_input)
        self.frequencies = fourier_frequencies(num_bands, max_freq)  # float64 (not a buffer)

    @property
    def out_dim_1d(self) -> int:
        """Features per axis: ``2L + 1`` (``2L`` without the input)."""
        return 2 * self.num_bands + int(self.include_input)

    @property
    def out_dim(self) -> int:
        """Features per atom: ``4L + 2`` (both axes)."""
        return 2 * self.out_dim_1d

    def scale(self, coord_m: torch.Tensor) -> torch.Tensor:
        """The normalised coordinate ``coord_m / reference_m``."""
        if not torch.is_floating_point(coord_m):
            coord_m = coord_m.to(torch.float32)
        return coord_m / self.reference_m

    def encode_1d(self, coord_m: torch.Tensor) -> torch.Tensor:
        """``(...,)`` metres along one axis -> ``(..., 2L + 1)``."""
        return fourier_features(self.scale(coord_m), self.frequencies, include_input=self.include_input)

    def forward(self, x_m: torch.Tensor, y_m: torch.Tensor) -> torch.Tensor:
        """``(...,)`` x and y in metres -> ``(..., 4L + 2)`` as ``[encode_1d(x) | encode_1d(y)]``."""
        return torch.cat([self.encode_1d(x_m), self.encode_1d(y_m)], dim=-1)

    def extra_repr(self) -> str:
        return (f"num_bands={self.num_bands}, max_freq={self.max_freq}, "
                f"reference_m={self.reference_m}, out_dim={self.out_dim}")
