"""The tokenizer's configuration: which encoder fills each part, and with which parameters.

A config is a mapping (or a YAML file holding one) with one entry per part; each entry names a
registered encoder and gives its parameters inline, or is ``null`` to leave the part out::

    value: {name: fourier_value, num_bands: 32, max_freq: 32.0}
    position: {name: position, num_bands: 32, max_freq: 64.0, reference_m: 600.0}
    spectral: {name: spectral}
    time: null
    location: null
    dtype: float32

A key that is not a built-in part names a part added by a plugin (:mod:`atomizer.encoders.parts`):
the tokenizer accepts it when its encoder declares that part, and rejects it otherwise. Unknown
encoder parameters are rejected when the encoder is built (with the list of parameters it accepts).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from atomizer.config import LocatedError, StrictModel, validate_config
from atomizer.documents import YamlDocument, read_yaml
from atomizer.encoders.parts import BUILTIN_PARTS
from atomizer.encoders.spectral import DEFAULT_LAYOUT_NM
from atomizer.errors import EncoderError

#: The built-in parts of a token, in the order they are concatenated (plugin parts follow).
PART_NAMES: tuple[str, ...] = tuple(p.name for p in BUILTIN_PARTS)

#: Paper-like defaults (Atomizer section 3.1): value and position Fourier features, the spectral
#: Gaussian basis; time and location off. Read-only; :func:`default_config` gives a mutable copy.
DEFAULT_CONFIG: Mapping[str, Any] = MappingProxyType({
    "value": MappingProxyType({"name": "fourier_value", "num_bands": 32, "max_freq": 32.0}),
    "position": MappingProxyType(
        {"name": "position", "num_bands": 32, "max_freq": 64.0, "reference_m": 600.0}
    ),
    "spectral": MappingProxyType(
        {"name": "spectral", "layout": DEFAULT_LAYOUT_NM, "sigma_scale": 1.0, "use_response": True}
    ),
    "time": None,
    "location": None,
    "dtype": "float32",
})


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return copy.deepcopy(obj)


def default_config() -> dict[str, Any]:
    """A fresh, mutable copy of :data:`DEFAULT_CONFIG`."""
    return _plain(DEFAULT_CONFIG)


class EncoderSpec(BaseModel):
    """One part's encoder: a registered ``name`` plus its parameters inline."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TokenizerConfig(StrictModel):
    """Encoders of each token part (``None`` leaves a part out) and the output dtype.

    Keys besides the built-in parts and ``dtype`` are parts added by plugins (checked against the
    encoders' declared parts when the tokenizer is built).
    """

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)

    value: EncoderSpec
    position: EncoderSpec | None = None
    spectral: EncoderSpec | None = None
    time: EncoderSpec | None = None
    location: EncoderSpec | None = None
    dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _extra_parts_are_encoder_specs(self) -> TokenizerConfig:
        extra = self.__pydantic_extra__ or {}
        for key, value in extra.items():
            try:
                extra[key] = None if value is None else EncoderSpec.model_validate(value)
            except ValidationError as exc:
                raise LocatedError(
                    [((key, *e["loc"]), f"{e['msg']} (a part's encoder, or null)")
                     for e in exc.errors(include_url=False)]
                ) from None
        return self

    @property
    def parts(self) -> dict[str, EncoderSpec | None]:
        """Every part's encoder (``None``: left out): built-in parts first, then added ones."""
        out: dict[str, EncoderSpec | None] = {name: getattr(self, name) for name in PART_NAMES}
        out.update(self.__pydantic_extra__ or {})
        return out

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any] | TokenizerConfig | None) -> TokenizerConfig:
        """From a YAML path, a mapping, or a config (``None``: :data:`DEFAULT_CONFIG`)."""
        if isinstance(source, TokenizerConfig):
            return source
        doc: YamlDocument | None = None
        if source is None:
            data: Any = default_config()
        elif isinstance(source, Mapping):
            data = _plain(source)
        else:
            doc = read_yaml(Path(source), what="tokenizer config file", error=EncoderError)
            data = doc.data
            if not isinstance(data, Mapping):
                raise EncoderError(
                    f"{doc.origin}:1: a tokenizer config is a mapping of parts "
                    f"({', '.join(PART_NAMES)}) to encoders; this file holds something else"
                )
        return validate_config(cls, data, doc, origin=None if doc else "tokenizer config",
                               error=EncoderError, what="tokenizer config")

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-ready dict that :meth:`load` reads back into an equal config."""
        out: dict[str, Any] = {}
        for part, spec in self.parts.items():
            out[part] = None if spec is None else {"name": spec.name, **spec.params}
        out["dtype"] = self.dtype
        return out


def build_encoder(part: str, spec: EncoderSpec, registry: Any) -> Any:
    """Instantiate ``spec`` from ``registry`` (name -> factory); errors become :class:`EncoderError`."""
    from atomizer.errors import PluginError

    try:
        factory = registry.get(spec.name)
    except PluginError as exc:
        raise EncoderError(f"{part}: {exc}") from None
    params = spec.params
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    ):
        accepted = [n for n, p in signature.parameters.items()
                    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise EncoderError(
                f"{part}: encoder {spec.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"it accepts: {', '.join(accepted) or 'none'}"
            )
    try:
        return factory(**params)
    except EncoderError as exc:
        raise EncoderError(f"{part}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise EncoderError(f"{part}: encoder {spec.name!r} rejected its parameters: {exc}") from None
