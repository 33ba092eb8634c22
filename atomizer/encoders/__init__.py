"""Token encoders (fixed feature maps) and the :class:`Tokenizer` that composes them.

Built-in encoders, chosen by name in a tokenizer config: ``fourier_value``, ``position``,
``spectral``, ``time``, ``location``. See :mod:`atomizer.encoders.tokenizer` for the token layout
and the factorised :class:`TokenParts` a model consumes, and :mod:`atomizer.encoders.parts` for the
table of parts (a plugin adds a part by registering an encoder that declares it).
"""

from __future__ import annotations

from atomizer._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_CONFIG": "config",
    "DEFAULT_LAYOUT_NM": "spectral",
    "EncoderSpec": "config",
    "FourierValueEncoder": "fourier",
    "LocationEncoder": "time_location",
    "BUILTIN_PARTS": "parts",
    "PART_NAMES": "config",
    "ROLES": "parts",
    "PositionEncoder": "position",
    "SpectralEncoder": "spectral",
    "TimeEncoder": "time_location",
    "TokenPart": "parts",
    "TokenParts": "tokenizer",
    "Tokenizer": "tokenizer",
    "TokenizerConfig": "config",
    "build_encoder": "config",
    "datetime_fields": "time_location",
    "default_config": "config",
    "fourier_features": "fourier",
    "fourier_frequencies": "fourier",
    "gaussian_layout": "spectral",
    "lonlat_to_xyz": "time_location",
    "max_factorisation_error": "tokenizer",
    "pixel_center_m": "position",
    "plot_spectral_basis": "plot",
    "project_parts": "tokenizer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
