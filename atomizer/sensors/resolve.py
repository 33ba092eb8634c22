"""The one place that turns "a sensor" into a :class:`SensorSpec`.

A sensor reference is a registry id or alias (``"landsat8"``, ``"S2A"``), the path of a YAML spec
(decided by the suffix alone: ``.yaml`` / ``.yml``, any case), an inline spec mapping, or a
:class:`SensorSpec`. A spec that ``extends:`` another is resolved here, by :func:`resolve_extends`,
whether it sits in the registry or in a file of the user's.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, Union

from atomizer.errors import SpecError
from atomizer.sensors.loader import (
    RawSpec,
    merge_extends,
    read_raw_spec,
    spec_to_dict,
    validate_raw,
)
from atomizer.sensors.spec import SensorSpec

#: File suffixes of a YAML sensor spec (compared case-insensitively).
SPEC_SUFFIXES = (".yaml", ".yml")

SensorRef = Union[str, "os.PathLike[str]", Mapping[str, Any], SensorSpec]


class SensorLookup(Protocol):
    """What resolution needs of a registry (:class:`~atomizer.sensors.registry.SensorRegistry`)."""

    def __contains__(self, name: object) -> bool: ...
    def get(self, name: str) -> SensorSpec: ...
    def origin(self, sensor_id: str) -> str: ...
    def ids(self) -> list[str]: ...


def is_spec_path(ref: object) -> bool:
    """Whether a sensor reference names a YAML spec file rather than a registry id or alias.

    Decided by the suffix alone (``.yaml`` / ``.yml``, any case), so a sensor id never turns into a
    file because a file of that name happens to exist in the working folder.
    """
    return isinstance(ref, (str, os.PathLike)) and os.fspath(ref).lower().endswith(SPEC_SUFFIXES)


#: Longest ``extends:`` chain (each link is one recursion; real chains are 1-3 deep).
MAX_EXTENDS_DEPTH = 32


def resolve_extends(
    raw: RawSpec,
    find: Callable[[str], RawSpec | None],
    known: Callable[[], Iterable[str]],
    chain: tuple[str, ...] = (),
    top: RawSpec | None = None,
) -> dict[str, Any]:
    """``raw``'s data with its ``extends:`` chain merged in (cached on ``raw.resolved``).

    ``find(key)`` returns the raw spec whose lower-cased id or alias is ``key`` (``None`` when there
    is none); ``known()`` lists ids for the "did you mean" hint. Unknown parents and cycles are
    :class:`SpecError` lines naming the file (a cycle: the file being resolved).
    """
    if raw.resolved is not None:
        return raw.resolved
    parent_id = raw.data.get("extends")
    if parent_id is None:
        raw.resolved = dict(raw.data)
        return raw.resolved
    key = str(parent_id).strip().lower()
    chain = chain or ((raw.id.lower(),) if raw.id else ())
    top = top or raw
    if key in chain:
        raise SpecError(
            f"{top.origin}: extends: circular 'extends' chain {' -> '.join((*chain, key))}; "
            "break the cycle",
            source=top.origin,
        )
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise SpecError(
            f"{top.origin}: extends: the chain is more than {MAX_EXTENDS_DEPTH} specs deep "
            f"({' -> '.join(chain[:3])} -> ...); extend the base spec more directly",
            source=top.origin,
        )
    parent = find(key)
    if parent is None:
        close = difflib.get_close_matches(key, list(known()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(
            f"{raw.origin}: extends: unknown sensor {parent_id!r}{hint}", source=raw.origin
        )
    raw.resolved = merge_extends(raw, resolve_extends(parent, find, known, (*chain, key), top))
    return raw.resolved


def validate_against(raw: RawSpec, registry: SensorLookup) -> SensorSpec:
    """Validate a spec from outside the registry; its ``extends:`` may name any registered
    sensor."""

    def find(key: str) -> RawSpec | None:
        if key not in registry:
            return None
        parent = registry.get(key)
        data = spec_to_dict(parent)
        return RawSpec(data=data, origin=registry.origin(parent.id), resolved=data)

    return validate_raw(raw, resolve_extends(raw, find, registry.ids))


def resolve_sensor(ref: SensorRef, registry: SensorLookup) -> SensorSpec:
    """The :class:`SensorSpec` that ``ref`` stands for.

    ``ref`` is a spec (returned as is), an inline mapping in the YAML schema, the path of a YAML
    spec file, or an id / alias looked up (case-insensitively) in ``registry``. ``extends:`` in a
    mapping or file is resolved against ``registry``.
    """
    if isinstance(ref, SensorSpec):
        return ref
    if isinstance(ref, Mapping):
        return validate_against(RawSpec(data=dict(ref), origin="<inline sensor spec>"), registry)
    if is_spec_path(ref):
        return validate_against(read_raw_spec(os.fspath(ref)), registry)
    return registry.get(os.fspath(ref) if isinstance(ref, os.PathLike) else str(ref))


__all__ = [
    "SPEC_SUFFIXES",
    "SensorLookup",
    "SensorRef",
    "is_spec_path",
    "resolve_extends",
    "resolve_sensor",
    "validate_against",
]
