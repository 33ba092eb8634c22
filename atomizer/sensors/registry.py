"""The sensor registry: every known :class:`SensorSpec`, looked up by id or alias.

Sources, in order: the built-in YAML files shipped in the package, the folders in
``ATOMIZER_SENSOR_PATH`` (``os.pathsep``-separated), ``$XDG_CONFIG_HOME/atomizer/sensors``
(default ``~/.config/atomizer/sensors``), then whatever plugins register through
``register_sensors``. ``extends:`` may point across sources (a user spec may extend a built-in).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from atomizer.errors import DuplicateSensorError, SpecError, UnknownSensorError
from atomizer.sensors.loader import RawSpec, merge_extends, read_raw_spec, spec_to_dict, validate_raw
from atomizer.sensors.spec import SensorSpec

SENSOR_PATH_ENV = "ATOMIZER_SENSOR_PATH"
SPEC_SUFFIXES = (".yaml", ".yml")


def builtin_sensor_dir() -> Path:
    """Where the built-in YAML specs live.

    Installed, they are the package data ``atomizer.builtin_sensors`` (the project's top-level
    ``sensors/`` folder, mapped in pyproject.toml). When ``atomizer`` is imported straight from a
    source checkout (``python -m pytest`` at the project root), that mapping is not in effect and
    the checkout's ``sensors/`` folder is used.
    """
    try:
        return Path(str(resources.files("atomizer.builtin_sensors")))
    except ModuleNotFoundError:
        import atomizer

        checkout = Path(atomizer.__file__).resolve().parent.parent / "sensors"
        if checkout.is_dir():
            return checkout
        raise


def builtin_sensor_files() -> list[Path]:
    """The YAML specs shipped with the package."""
    return spec_files_in(builtin_sensor_dir())


def user_sensor_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Folders named by ``ATOMIZER_SENSOR_PATH``, then the XDG config folder."""
    env = os.environ if environ is None else environ
    dirs = [Path(p).expanduser() for p in env.get(SENSOR_PATH_ENV, "").split(os.pathsep) if p]
    xdg = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    dirs.append(Path(xdg) / "atomizer" / "sensors")
    return dirs


def spec_files_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file())


class SensorRegistry:
    """Validated sensor specs by id, with case-insensitive lookup by id or alias."""

    def __init__(self) -> None:
        self._specs: dict[str, SensorSpec] = {}
        self._origins: dict[str, str] = {}
        self._providers: dict[str, str] = {}
        self._names: dict[str, str] = {}  # lower-cased id or alias -> id
        self.problems: list[str] = []  # filled when built with strict=False

    # --- building ---------------------------------------------------------------------------------
    def add(self, spec: SensorSpec, *, origin: str = "<python>", provider: str = "python") -> None:
        for name in spec.names():
            if name in self._names:
                other = self._names[name]
                raise DuplicateSensorError(
                    f"sensor id or alias {name!r} is claimed by both {self._origins[other]} "
                    f"(sensor {other!r}) and {origin} (sensor {spec.id!r}); rename one of them"
                )
        self._specs[spec.id] = spec
        self._origins[spec.id] = origin
        self._providers[spec.id] = provider
        for name in spec.names():
            self._names[name] = spec.id

    @classmethod
    def from_raw(cls, raws: Iterable[tuple[RawSpec, str]], *, strict: bool = True) -> SensorRegistry:
        """Resolve ``extends:`` across all raw specs, validate them, and index them.

        ``raws`` are ``(raw_spec, provider)`` pairs. With ``strict=False`` a bad spec is recorded
        in ``registry.problems`` and skipped instead of raising.
        """
        reg = cls()
        entries = list(raws)
        by_id: dict[str, tuple[RawSpec, str]] = {}
        for raw, provider in entries:
            # a spec without an id is still validated (and reported) under its own key
            rid = raw.id.lower() or f"<no id>:{raw.origin}"
            if rid in by_id:
                first = by_id[rid][0].origin
                err = DuplicateSensorError(
                    f"two sensor specs claim the id {raw.id!r}: {first} and {raw.origin}; "
                    "rename one of them (or use 'extends:' to derive a variant)"
                )
                if strict:
                    raise err
                reg.problems.append(str(err))
                continue
            by_id[rid] = (raw, provider)

        def resolve(raw: RawSpec, chain: tuple[str, ...]) -> dict[str, Any]:
            if raw.resolved is not None:
                return raw.resolved
            parent_id = raw.data.get("extends")
            if parent_id is None:
                raw.resolved = dict(raw.data)
                return raw.resolved
            key = str(parent_id).lower()
            if key in chain:
                raise SpecError(
                    f"{raw.origin}: extends: circular 'extends' chain "
                    f"{' -> '.join((*chain, key))}; break the cycle",
                    source=raw.origin,
                )
            target = by_id.get(key) or next(
                (v for v in by_id.values() if key in [str(a).lower() for a in v[0].data.get("aliases", []) or []]),
                None,
            )
            if target is None:
                close = difflib.get_close_matches(key, list(by_id), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise SpecError(
                    f"{raw.origin}: extends: unknown sensor {parent_id!r}{hint}", source=raw.origin
                )
            parent = resolve(target[0], (*chain, key))
            raw.resolved = merge_extends(raw, parent)
            return raw.resolved

        for rid, (raw, provider) in by_id.items():
            try:
                data = resolve(raw, (rid,))
                spec = validate_raw(raw, data)
                reg.add(spec, origin=raw.origin, provider=provider)
            except (SpecError, DuplicateSensorError) as exc:
                if strict:
                    raise
                reg.problems.extend(str(exc).splitlines())
        return reg

    # --- lookup -----------------------------------------------------------------------------------
    def get(self, name: str) -> SensorSpec:
        """The spec whose id or alias is ``name`` (case-insensitive)."""
        key = str(name).strip().lower()
        if key in self._names:
            return self._specs[self._names[key]]
        close = difflib.get_close_matches(key, list(self._names), n=3, cutoff=0.4)
        close_ids = list(dict.fromkeys(self._names[c] for c in close))
        hint = f"; closest known: {', '.join(close_ids)}" if close_ids else ""
        raise UnknownSensorError(
            f"unknown sensor {name!r}{hint} (see `atomizer sensors list`, or add a YAML spec to a "
            f"folder on {SENSOR_PATH_ENV})"
        )

    def __getitem__(self, name: str) -> SensorSpec:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._names

    def __iter__(self) -> Iterator[SensorSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.id))

    def __len__(self) -> int:
        return len(self._specs)

    def ids(self) -> list[str]:
        return sorted(self._specs)

    def origin(self, sensor_id: str) -> str:
        return self._origins[self.get(sensor_id).id]

    def provider(self, sensor_id: str) -> str:
        return self._providers[self.get(sensor_id).id]


def raw_from_registration(item: Any, *, provider: str) -> list[RawSpec]:
    """Turn what a plugin hands to ``register(...)`` into raw specs.

    A plugin may register a :class:`SensorSpec`, a dict, a path to a YAML file, or a folder of them.
    """
    if isinstance(item, SensorSpec):
        return [RawSpec(data=spec_to_dict(item), origin=f"<plugin {provider}>")]
    if isinstance(item, Mapping):
        return [RawSpec(data=dict(item), origin=f"<plugin {provider}>")]
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if path.is_dir():
            return [read_raw_spec(p) for p in spec_files_in(path)]
        return [read_raw_spec(path)]
    if hasattr(item, "iterdir"):  # importlib.resources Traversable
        return [read_raw_spec(Path(str(p))) for p in item.iterdir() if p.name.endswith(SPEC_SUFFIXES)]
    raise SpecError(
        f"plugin {provider!r} registered a {type(item).__name__}; register a SensorSpec, a dict, "
        "or the path of a YAML file or folder"
    )
