"""Datasets by name: the one signature every dataset is built through.

A dataset is registered (hook ``register_datasets``) as a :class:`DatasetFactory`, or as any
callable with the same signature::

    factory(data, *, split, modality, host, cache) -> dataset

``data`` is the experiment's :class:`~atomizer.training.config.DataConfig` (``path``,
``options``), ``split`` one of ``train`` / ``validation`` / ``test`` (or what the config names),
``modality`` a :class:`~atomizer.data.Modality` or ``None`` (the samples' own atoms), ``host`` the
plugin host (sensor lookup), and ``cache`` a dict shared by every dataset one experiment builds, so
splits and modalities can share what is expensive to load. The dataset yields ``(AtomSet, label)``
pairs (see :class:`~atomizer.data.AtomDataset`) and may carry ``task`` and ``class_names``.

:func:`dataset_class` turns a dataset class whose constructor takes ``split``, ``modality``,
``host`` and its options as keywords into a factory; its keyword parameters are the accepted
``data.options``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomizer.errors import ConfigError, DatasetError
from atomizer.limits import clip_text

#: Keywords the experiment sets itself; ``data.options`` may not give them.
RESERVED_OPTIONS = ("split", "modality", "host", "root", "scene", "cache")


def keyword_options(target: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword parameters of ``target`` (a class: of its constructor) a config may set."""
    params = inspect.signature(target).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in kinds and p.name not in RESERVED_OPTIONS)


@dataclass(frozen=True)
class DatasetFactory:
    """Builds one registered dataset for one split and modality from an experiment's ``data``.

    ``options``: the ``data.options`` keys the dataset accepts (``None``: anything, the dataset
    checks them itself). ``path``: ``"required"`` when ``data.path`` must name the dataset's
    folder, ``"optional"`` when the dataset has a default copy, ``"unused"`` when it reads none.
    """

    build: Callable[..., Any]
    description: str = ""
    options: tuple[str, ...] | None = None
    path: str = "optional"
    #: The callable (a class: its constructor) whose annotations type the options, if any.
    typed_by: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if self.path not in ("required", "optional", "unused"):
            raise DatasetError(
                f"DatasetFactory.path must be 'required', 'optional' or 'unused', not {self.path!r}"
            )

    def check(self, name: str, data: Any) -> None:
        """Config errors (unknown options, missing or absent path) before any data is read."""
        for key in data.options:
            if key in RESERVED_OPTIONS:
                raise ConfigError(f"data.options.{key}: set by the experiment itself; remove it")
            if self.options is not None and key not in self.options:
                raise ConfigError(
                    f"data.options.{key}: not an option of dataset {name!r}; accepted: "
                    f"{', '.join(self.options) or 'none'}"
                )
        if self.typed_by is not None:
            _check_option_types(self.typed_by, data.options)
        if data.path is None:
            if self.path == "required":
                raise ConfigError(f"data.path: the {name} dataset needs the path of its folder")
            return
        if self.path == "unused":
            raise ConfigError(f"data.path: the {name} dataset reads no folder; remove data.path")
        if not Path(data.path).expanduser().exists():
            raise DatasetError(
                f"data.path: {data.path} does not exist; give the folder of the {name} dataset"
            )

    def __call__(
        self, data: Any, *, split: str, modality: Any, host: Any, cache: dict[str, Any]
    ) -> Any:
        return self.build(data, split=split, modality=modality, host=host, cache=cache)


def _check_option_types(target: Callable[..., Any], options: dict[str, Any]) -> None:
    """Each option against its parameter's annotation in ``target``: a wrong type is one
    ConfigError naming the option (not a TypeError deep in the dataset)."""
    import typing

    from pydantic import TypeAdapter, ValidationError

    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # noqa: BLE001 - annotations that cannot be resolved are not checked
        return
    for key, value in options.items():
        hint = hints.get(key)
        if hint is None or hint is typing.Any:
            continue
        try:
            adapter = TypeAdapter(hint)
        except Exception:  # noqa: BLE001 - a type pydantic cannot check
            continue
        try:
            adapter.validate_python(value)
            if isinstance(value, str):  # text where a number is meant ("1e9" read as text)
                adapter.validate_python(value, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(
                f"data.options.{key}: {first['msg'].lower()} (got "
                f"{clip_text(repr(value), max_chars=60)})"
            ) from None


def as_factory(item: Any, name: str) -> DatasetFactory:
    """A registered dataset as a :class:`DatasetFactory` (a bare callable is wrapped)."""
    if isinstance(item, DatasetFactory):
        return item
    if not callable(item):
        raise DatasetError(
            f"dataset {name!r} is registered as {type(item).__name__}, not a dataset factory; "
            "register a DatasetFactory or a callable factory(data, *, split, modality, host, cache)"
        )
    return DatasetFactory(build=item, description=(inspect.getdoc(item) or "").split("\n")[0])


def dataset_class(
    cls: type, *, description: str = "", path: str = "optional"
) -> DatasetFactory:
    """A factory calling ``cls(root=data.path, split=, modality=, host=, **data.options)``.

    With ``path="unused"`` no ``root`` is passed.
    """

    def build(data: Any, *, split: str, modality: Any, host: Any, cache: dict[str, Any]) -> Any:
        del cache
        where = {} if path == "unused" else {"root": data.path}
        return cls(**where, split=split, modality=modality, host=host, **data.options)

    doc = description or (inspect.getdoc(cls) or "").split("\n")[0]
    return DatasetFactory(build, doc, keyword_options(cls), path, typed_by=cls)


# --- the built-in datasets ------------------------------------------------------------------------
#: Options of Indian Pines that configure the scene (shared by every split and modality).
_SCENE_OPTIONS = ("spec", "normalization")


def _indian_pines(
    data: Any, *, split: str, modality: Any, host: Any, cache: dict[str, Any]
) -> Any:
    from atomizer.data.indian_pines import IndianPines, IndianPinesScene

    opts = dict(data.options)
    scene_opts = {k: opts.pop(k) for k in _SCENE_OPTIONS if k in opts}
    key = "indian-pines:" + json.dumps([data.path, scene_opts], sort_keys=True, default=str)
    if key not in cache:
        cache[key] = IndianPinesScene.load(data.path, host=host, **scene_opts)
    return IndianPines(split, modality=modality, scene=cache[key], host=host, **opts)


def builtin_datasets() -> dict[str, DatasetFactory]:
    """Name -> factory of each built-in dataset (a new dict)."""
    from atomizer.data import BigEarthNet, EarthlibSpectra, EuroSAT, IndianPines

    return {
        "indian-pines": DatasetFactory(
            _indian_pines,
            "Indian Pines AVIRIS patches, spatially disjoint splits (any sensor by simulation)",
            keyword_options(IndianPines),
            "optional",
            typed_by=IndianPines,
        ),
        "bigearthnet": dataset_class(
            BigEarthNet, description="BigEarthNet v1 / v2 folders, 19-class multi-label",
            path="required",
        ),
        "eurosat": dataset_class(
            EuroSAT, description="EuroSAT-MS class folders", path="required"
        ),
        "earthlib": dataset_class(
            EarthlibSpectra,
            description="earthlib labelled spectra (any sensor by simulation)",
        ),
    }

