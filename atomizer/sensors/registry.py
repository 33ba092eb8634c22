"""The sensor registry: every known :class:`SensorSpec`, looked up by id or alias.

Sources, in order: the built-in YAML files shipped in the package, the folders in
``ATOMIZER_SENSOR_PATH`` (``os.pathsep``-separated), ``$XDG_CONFIG_HOME/atomizer/sensors``
(default ``~/.config/atomizer/sensors``), then whatever plugins register through
``register_sensors`` (the plugin host collects those and hands them to :func:`build_registry`).
``extends:`` may point across sources (a user spec may extend a built-in).

A broken contribution (an unreadable or invalid spec, a cycle, an id or alias that is already
taken, a plugin registering something that is not a spec) is skipped and listed in
``registry.problems`` under the file or plugin it came from; every other sensor stays usable, and
the first registration of an id or alias wins, so a built-in is never shadowed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from atomizer.errors import DuplicateSensorError, SpecError, UnknownSensorError
from atomizer.limits import clip_text, safe_repr
from atomizer.sensors.loader import RawSpec, read_raw_spec, spec_to_dict, validate_raw
from atomizer.sensors.resolve import is_spec_path, resolve_extends
from atomizer.sensors.spec import SensorSpec

SENSOR_PATH_ENV = "ATOMIZER_SENSOR_PATH"
#: The provider name of the specs shipped with atomizer.
BUILTIN_PROVIDER = "atomizer"


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
    return sorted(p for p in folder.iterdir() if is_spec_path(p) and p.is_file())


class SensorRegistry:
    """Validated sensor specs by id, with case-insensitive lookup by id or alias."""

    def __init__(self) -> None:
        self._specs: dict[str, SensorSpec] = {}
        self._origins: dict[str, str] = {}
        self._providers: dict[str, str] = {}
        self._registrants: dict[str, str] = {}
        self._names: dict[str, str] = {}  # lower-cased id or alias -> id
        self._skipped: dict[str, str] = {}  # lower-cased id of a skipped spec -> why
        self.problems: list[str] = []  # one line per problem
        self.problems_by_provider: dict[str, list[str]] = {}  # one entry per skipped contribution

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

    def skip(self, provider: str, lines: Iterable[str], sensor_id: str = "") -> None:
        """Record a contribution of ``provider`` (a plugin, a folder) that was left out, and why."""
        lines = list(lines)
        self.problems.extend(lines)
        self.problems_by_provider.setdefault(provider, []).append("; ".join(lines))
        if sensor_id and lines:
            self._skipped.setdefault(sensor_id.strip().lower(), lines[0])

    @classmethod
    def from_raw(cls, raws: Iterable[tuple[RawSpec, str]], *, strict: bool = True) -> SensorRegistry:
        """Resolve ``extends:`` across all raw specs, validate them, and index them.

        ``raws`` are ``(raw_spec, provider)`` pairs, earlier ones first. With ``strict=False`` a bad
        spec is recorded in ``registry.problems`` and skipped instead of raising.
        """
        reg = cls()
        by_id: dict[str, tuple[RawSpec, str]] = {}
        by_alias: dict[str, RawSpec] = {}
        for raw, provider in raws:
            # a spec without an id is still validated (and reported) under its own key
            rid = raw.id.lower() or f"<no id>:{raw.origin}"
            if rid in by_id:
                err = DuplicateSensorError(
                    f"two sensor specs claim the id {raw.id!r}: {by_id[rid][0].origin} and "
                    f"{raw.origin}; rename one of them (or use 'extends:' to derive a variant)"
                )
                if strict:
                    raise err
                reg.skip(raw.registrant or provider, [str(err)])
                continue
            by_id[rid] = (raw, provider)
            aliases = raw.data.get("aliases")
            for alias in aliases if isinstance(aliases, list) else []:
                by_alias.setdefault(str(alias).lower(), raw)

        def find(key: str) -> RawSpec | None:
            return by_id[key][0] if key in by_id else by_alias.get(key)

        for raw, provider in by_id.values():
            try:
                spec = validate_raw(raw, resolve_extends(raw, find, by_id.keys))
                reg.add(spec, origin=raw.origin, provider=provider)
                reg._registrants[spec.id] = raw.registrant or provider
            except (SpecError, DuplicateSensorError) as exc:
                if strict:
                    raise
                reg.skip(raw.registrant or provider, str(exc).splitlines(), raw.id)
        return reg

    # --- lookup -----------------------------------------------------------------------------------
    def get(self, name: str) -> SensorSpec:
        """The spec whose id or alias is ``name`` (case-insensitive)."""
        key = str(name).strip().lower()
        if key in self._names:
            return self._specs[self._names[key]]
        if key in self._skipped:
            raise UnknownSensorError(
                f"sensor {clip_text(repr(name), max_chars=80)} is not available: its spec was skipped ({self._skipped[key]})"
            )
        close = difflib.get_close_matches(key, list(self._names), n=3, cutoff=0.4)
        close_ids = list(dict.fromkeys(self._names[c] for c in close))
        hint = f"; closest known: {', '.join(close_ids)}" if close_ids else ""
        raise UnknownSensorError(
            f"unknown sensor {clip_text(repr(name), max_chars=80)}{hint} (see `atomizer sensors list`, or add a YAML spec to a "
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

    def registrant(self, sensor_id: str) -> str:
        """The plugin (or folder) that contributed the spec."""
        return self._registrants[self.get(sensor_id).id]


def _spec_paths(item: Any) -> list[Path] | None:
    """The YAML files a registered path, folder or package resource stands for (``None``: it is
    not a path)."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        return spec_files_in(path) if path.is_dir() else [path]
    if hasattr(item, "iterdir"):  # importlib.resources Traversable
        return [Path(str(p)) for p in item.iterdir() if is_spec_path(p.name)]
    return None


def raw_from_registration(item: Any, *, provider: str) -> list[RawSpec]:
    """Turn what a plugin hands to ``register(...)`` into raw specs.

    A plugin may register a :class:`SensorSpec`, a dict, a path to a YAML file, or a folder of them.
    """
    if isinstance(item, SensorSpec):
        return [RawSpec(data=spec_to_dict(item), origin=f"<plugin {provider}>")]
    if isinstance(item, Mapping):
        return [RawSpec(data=dict(item), origin=f"<plugin {provider}>")]
    paths = _spec_paths(item)
    if paths is None:
        raise SpecError(
            f"plugin {provider!r} registered {clip_text(safe_repr(item), max_chars=60)}, which is not a "
            "sensor spec; register a SensorSpec, a dict, or the path of a YAML file or folder"
        )
    return [read_raw_spec(p) for p in paths]


def build_registry(
    builtin: Iterable[tuple[Any, str]],
    plugins: Iterable[tuple[Any, str]] = (),
    *,
    user_dirs: Iterable[Path] | None = None,
    strict: bool = False,
) -> SensorRegistry:
    """Every sensor: ``builtin`` registrations, then the user's folders, then ``plugins`` (both
    ``(item, plugin name)`` pairs; built-in specs are listed under the provider ``atomizer``).

    ``user_dirs`` defaults to :func:`user_sensor_dirs` of the environment. With ``strict`` the first
    problem raises; otherwise broken contributions are skipped and listed in ``registry.problems``
    and ``problems_by_provider``."""
    raws: list[tuple[RawSpec, str]] = []
    read_problems: list[tuple[str, list[str]]] = []

    def collect(item: Any, provider: str, registrant: str) -> None:
        paths = None if isinstance(item, (SensorSpec, Mapping)) else _spec_paths(item)
        found: list[RawSpec] = []
        try:
            if paths is None:
                found = raw_from_registration(item, provider=registrant)
        except SpecError as exc:
            read_problems.append((registrant, exc.problems))
        for path in paths or []:  # one unreadable file never hides its neighbours
            try:
                found.append(read_raw_spec(path))
            except SpecError as exc:
                read_problems.append((registrant, exc.problems))
        for raw in found:
            raw.registrant = registrant
            raws.append((raw, provider))

    for item, plugin in builtin:
        collect(item, BUILTIN_PROVIDER, plugin)
    for folder in user_sensor_dirs() if user_dirs is None else user_dirs:
        for path in spec_files_in(folder):
            collect(path, f"user:{folder}", f"user:{folder}")
    for item, plugin in plugins:
        collect(item, plugin, plugin)
    if strict and read_problems:
        raise SpecError([line for _, lines in read_problems for line in lines])
    registry = SensorRegistry.from_raw(raws, strict=strict)
    validation_problems, registry.problems = registry.problems, []
    for provider, lines in read_problems:
        registry.skip(provider, lines)
    registry.problems.extend(validation_problems)
    return registry
