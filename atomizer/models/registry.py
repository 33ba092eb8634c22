"""Model variants as rows over a few implementations (timm style), and :func:`build_model`.

A variant is a :class:`ModelFactory`: a model class plus a preset (config values that differ from
the class defaults). ``factory(**params)`` validates ``{**preset, **params}`` against the class's
config and builds the model; the model's ``config`` then holds every value, so
``build_model(name, model.config.model_dump(mode="json"))`` rebuilds the same architecture (that is
how checkpoints record it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from atomizer.errors import ConfigError, PluginError
from atomizer.limits import check
from atomizer.models.config import validate_config


@dataclass(frozen=True)
class ModelFactory:
    """Builds one model variant: ``model_cls`` with ``preset`` under the caller's params."""

    model_cls: type[nn.Module]
    preset: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset", MappingProxyType(dict(self.preset)))

    @property
    def config_cls(self) -> type:
        return self.model_cls.config_cls  # type: ignore[attr-defined]

    def config(self, **params: Any) -> Any:
        """The validated config of this variant under ``params``."""
        return validate_config(self.config_cls, {**_plain(self.preset), **params})

    def __call__(self, *, host: Any = None, **params: Any) -> nn.Module:
        # the size check lives in plan_model (build_model and checkpoints go through it)
        return self.model_cls(config=self.config(**params), host=host)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


@dataclass(frozen=True)
class ModelPlan:
    """A validated model that is not built yet: its name, full config and parameter count."""

    name: str
    config: dict[str, Any]
    parameters: int


def _construct(name: str, params: dict[str, Any], host: Any) -> nn.Module:
    factory = host.models.get(name)
    if isinstance(factory, ModelFactory):
        return factory(host=host, **params)
    try:
        model = factory(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {name!r} rejected its config: {exc}") from None
    if not isinstance(model, nn.Module):
        raise PluginError(
            f"model factory {name!r} returned {type(model).__name__}, not a torch module"
        )
    return model


def _config_of(model: nn.Module, params: Mapping[str, Any]) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    return cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else dict(params)


def plan_model(name: str, config: Mapping[str, Any] | None = None, *, host: Any) -> ModelPlan:
    """Validate ``config`` and count the model's parameters without allocating them.

    The model is built on torch's ``meta`` device (shapes only, no memory), so a config asking for
    terabytes (``latent_dim: 1000000``) is refused with a :class:`~atomizer.errors.LimitError`
    naming the ``model_parameters`` limit before anything is allocated. A plugin model that cannot
    be built on the meta device is built for real and counted afterwards.
    """
    params = dict(config or {})
    try:
        with torch.device("meta"):
            model = _construct(name, params, host)
    except (NotImplementedError, RuntimeError):  # a constructor that reads tensor values
        model = _construct(name, params, host)
    count = sum(p.numel() for p in model.parameters())
    check("model_parameters", count, subject=f"model {name!r}")
    return ModelPlan(name, _config_of(model, params), count)


def build_planned(plan: ModelPlan, *, host: Any) -> nn.Module:
    """The model of a :func:`plan_model` result (already validated and sized: built once)."""
    return _construct(plan.name, dict(plan.config), host)


def build_model(
    name: str, config: Mapping[str, Any] | None = None, *, host: Any = None
) -> nn.Module:
    """The model registered as ``name`` (Atomizer or baseline), configured by ``config``.

    Unknown names raise :class:`~atomizer.errors.PluginError` (with the closest known names); bad
    configs raise :class:`~atomizer.errors.ConfigError` listing every problem; a model over the
    ``model_parameters`` limit raises :class:`~atomizer.errors.LimitError` before allocating.
    """
    from atomizer.plugins.host import host_or_builtin

    host = host_or_builtin(host)  # None: atomizer's own models only, whatever the environment
    plan_model(name, config, host=host)
    return _construct(name, dict(config or {}), host)
