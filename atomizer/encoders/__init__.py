"""Token encoders (fixed feature maps) and the :class:`Tokenizer` that composes them.

Built-in encoders, chosen by name in a tokenizer config: ``fourier_value``, ``position``,
``spectral``, ``time``, ``location``. See :mod:`atomizer.encoders.tokenizer` for the token layout
and the factorised :class:`TokenParts` a model consumes.
"""

from __future__ import annotations

from atomizer.encoders.config import (
    DEFAULT_CONFIG,
    PART_NAMES,
    EncoderSpec,
    TokenizerConfig,
    build_encoder,
    default_config,
)
from atomizer.encoders.fourier import FourierValueEncoder, fourier_features, fourier_frequencies
from atomizer.encoders.plot import plot_spectral_basis
from atomizer.encoders.position import PositionEncoder, pixel_center_m
from atomizer.encoders.spectral import DEFAULT_LAYOUT_NM, SpectralEncoder, gaussian_layout
from atomizer.encoders.time_location import (
    LocationEncoder,
    TimeEncoder,
    datetime_fields,
    lonlat_to_xyz,
)
from atomizer.encoders.tokenizer import TokenParts, Tokenizer, max_factorisation_error, project_parts

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_LAYOUT_NM",
    "PART_NAMES",
    "EncoderSpec",
    "FourierValueEncoder",
    "LocationEncoder",
    "PositionEncoder",
    "SpectralEncoder",
    "TimeEncoder",
    "TokenParts",
    "Tokenizer",
    "TokenizerConfig",
    "build_encoder",
    "datetime_fields",
    "default_config",
    "fourier_features",
    "fourier_frequencies",
    "gaussian_layout",
    "lonlat_to_xyz",
    "max_factorisation_error",
    "pixel_center_m",
    "plot_spectral_basis",
    "project_parts",
]
