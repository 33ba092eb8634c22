"""The plugin host: a pluggy manager built by a factory, plus the registries it fills.

Built-in sensors, readers, encoders and models are *default plugins*: modules registered through the
same hooks a third-party package uses. Third-party plugins are found through the ``atomizer``
entry-point group, loaded lazily and once per host. ``ATOMIZER_PLUGINS`` (comma-separated
entry-point names) restricts which of them load; set it to an empty string to load none. A plugin
that fails to import or to register is reported once (a :class:`PluginLoadWarning`) and skipped.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import pluggy

from atomizer.errors import AtomizerError, PluginError
from atomizer.plugins import hookspecs

ENTRY_POINT_GROUP = "atomizer"
PLUGINS_ENV = "ATOMIZER_PLUGINS"

#: Modules of atomizer itself that implement hooks, registered before any third-party plugin.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "atomizer.sensors.plugin",
    "atomizer.readers.plugin",
    "atomizer.encoders.plugin",
    "atomizer.models.plugin",
    "atomizer.pretrain.plugin",
    "atomizer.data.plugin",
)

T = TypeVar("T")


class PluginLoadWarning(UserWarning):
    """A plugin failed to load or register and was skipped."""


@dataclass
class PluginRecord:
    """What the host knows about one plugin."""

    name: str
    kind: str  # "builtin" or "entrypoint"
    module: str
    registered: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class ComponentRegistry(Generic[T]):
    """Named factories of one kind (encoders, readers, models, ...), with helpful lookup errors.

    An item may be registered as an import string ``"package.module:attribute"``; it is imported on
    first ``get`` only, so plugins stay cheap to load (no torch import just to list commands).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._providers: dict[str, str] = {}

    def add(self, name: str, item: T, *, provider: str = "python") -> None:
        key = name.lower()
        if key in self._items:
            raise PluginError(
                f"{self.kind} {name!r} is registered by both {self._providers[key]!r} and "
                f"{provider!r}; one of them must use another name"
            )
        self._items[key] = item
        self._providers[key] = provider

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key not in self._items:
            close = difflib.get_close_matches(key, list(self._items), n=3, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise PluginError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        item = self._items[key]
        if isinstance(item, str) and ":" in item:
            module_name, _, attr = item.partition(":")
            try:
                item = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise PluginError(
                    f"{self.kind} {name!r} of plugin {self._providers[key]!r} points at {item!r}, "
                    f"which cannot be imported: {exc}"
                ) from None
            self._items[key] = item
        return item

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def provider(self, name: str) -> str:
        return self._providers[name.lower()]


class PluginHost:
    """One plugin manager and the registries filled from its hooks.

    Build one per process or per CLI invocation (:func:`default_host` caches one for library use).
    """

    def __init__(
        self,
        *,
        load_entrypoints: bool = True,
        environ: Mapping[str, str] | None = None,
        extra_plugins: tuple[Any, ...] = (),
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self._load_entrypoints = load_entrypoints
        self._entrypoints_loaded = False
        for modname in BUILTIN_PLUGINS:
            module = importlib.import_module(modname)
            self.pm.register(module, name=modname)
            self.records[modname] = PluginRecord(modname, "builtin", modname)
        for plugin in extra_plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self.pm.register(plugin, name=name)
            self.records[name] = PluginRecord(name, "extra", name)
        self._cache: dict[str, Any] = {}

    # --- loading ------------------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        warnings.warn(message, PluginLoadWarning, stacklevel=3)

    def load_entrypoints(self) -> None:
        """Load the ``atomizer`` entry-point group, once. Failures are reported and skipped."""
        if self._entrypoints_loaded or not self._load_entrypoints:
            return
        self._entrypoints_loaded = True
        allowed = self.environ.get(PLUGINS_ENV)
        allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if allow is not None and ep.name not in allow:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            record = PluginRecord(ep.name, "entrypoint", ep.value)
            self.records[ep.name] = record
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must never be fatal
                msg = f"plugin {ep.name!r} ({ep.value}) failed to load and was skipped: {exc}"
                record.errors.append(msg)
                self._warn(msg)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self._warn(f"a plugin implements an unknown hook and was partly ignored: {exc}")

    def _ordered_impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        self.load_entrypoints()
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        builtin = [i for i in impls if i.plugin_name in BUILTIN_PLUGINS]
        builtin.sort(key=lambda i: BUILTIN_PLUGINS.index(i.plugin_name))
        others = [i for i in impls if i.plugin_name not in BUILTIN_PLUGINS]
        return builtin + others

    def call_register_hook(
        self, hook_name: str, on_register: Callable[[str, tuple, dict], None]
    ) -> None:
        """Call every implementation of ``hook_name`` with a ``register`` bound to its plugin."""
        for impl in self._ordered_impls(hook_name):
            record = self.records.setdefault(
                impl.plugin_name, PluginRecord(impl.plugin_name, "extra", impl.plugin_name)
            )

            def register(*args: Any, _plugin: str = impl.plugin_name, **kwargs: Any) -> None:
                on_register(_plugin, args, kwargs)

            try:
                impl.function(register=register)
            except AtomizerError:
                raise
            except Exception as exc:  # noqa: BLE001
                msg = f"plugin {impl.plugin_name!r} failed in {hook_name} and was skipped: {exc}"
                record.errors.append(msg)
                self._warn(msg)

    def _note(self, plugin: str, hook: str, what: str) -> None:
        rec = self.records.setdefault(plugin, PluginRecord(plugin, "extra", plugin))
        rec.registered.setdefault(hook, []).append(what)

    def _components(self, hook_name: str, kind: str) -> ComponentRegistry:
        if hook_name in self._cache:
            return self._cache[hook_name]
        registry: ComponentRegistry = ComponentRegistry(kind)

        def on_register(plugin: str, args: tuple, kwargs: dict) -> None:
            name, item = (*args, *kwargs.values())[:2]
            try:
                registry.add(name, item, provider=plugin)
            except PluginError as exc:
                if plugin in BUILTIN_PLUGINS:
                    raise
                # a third-party plugin must never break the built-ins: skip its clashing item
                msg = f"plugin {plugin!r}: {exc}; its {kind} {name!r} was skipped"
                self.records.setdefault(plugin, PluginRecord(plugin, "extra", plugin)).errors.append(msg)
                self._warn(msg)
                return
            self._note(plugin, hook_name, name)

        self.call_register_hook(hook_name, on_register)
        self._cache[hook_name] = registry
        return registry

    # --- registries ---------------------------------------------------------------------------------
    def _sensor_sources(self) -> tuple[list, list[str]]:
        """Raw specs from every source, in order (collected once per host), and read problems."""
        if "sensor_sources" in self._cache:
            return self._cache["sensor_sources"]
        from atomizer.errors import SpecError
        from atomizer.sensors.loader import read_raw_spec
        from atomizer.sensors.registry import raw_from_registration, spec_files_in, user_sensor_dirs

        builtin: list = []
        plugins: list = []
        problems: list[str] = []

        def on_register(plugin: str, args: tuple, kwargs: dict) -> None:
            item = (*args, *kwargs.values())[0]
            target = builtin if plugin in BUILTIN_PLUGINS else plugins
            provider = "atomizer" if plugin in BUILTIN_PLUGINS else plugin
            try:
                raws = raw_from_registration(item, provider=provider)
            except SpecError as exc:
                problems.extend(exc.problems)
                return
            for raw in raws:
                target.append((raw, provider))
                self._note(plugin, "register_sensors", raw.id or raw.origin)

        self.call_register_hook("register_sensors", on_register)
        user: list = []
        for folder in user_sensor_dirs(self.environ):
            for path in spec_files_in(folder):
                try:
                    user.append((read_raw_spec(path), f"user:{folder}"))
                except SpecError as exc:
                    problems.extend(exc.problems)
        self._cache["sensor_sources"] = ([*builtin, *user, *plugins], problems)
        return self._cache["sensor_sources"]

    def sensor_registry(self, *, strict: bool = True):
        """All sensor specs: built-ins, ``ATOMIZER_SENSOR_PATH``, the XDG folder, then plugins.

        ``strict`` raises on the first bad spec; otherwise bad specs are skipped and listed in
        ``registry.problems``.
        """
        key = f"sensors:{strict}"
        if key in self._cache:
            return self._cache[key]
        import copy

        from atomizer.errors import SpecError
        from atomizer.sensors.registry import SensorRegistry

        raws, problems = self._sensor_sources()
        if strict and problems:
            raise SpecError(problems)
        # resolution caches its result on each raw spec: give each registry its own copies
        fresh = [(copy.copy(raw), provider) for raw, provider in raws]
        for raw, _ in fresh:
            raw.resolved = None
        registry = SensorRegistry.from_raw(fresh, strict=strict)
        registry.problems[:0] = problems
        self._cache[key] = registry
        return registry

    @property
    def sensors(self):
        return self.sensor_registry(strict=True)

    @property
    def readers(self) -> ComponentRegistry:
        return self._components("register_readers", "reader")

    @property
    def encoders(self) -> ComponentRegistry:
        return self._components("register_encoders", "encoder")

    @property
    def models(self) -> ComponentRegistry:
        return self._components("register_models", "model")

    @property
    def datasets(self) -> ComponentRegistry:
        return self._components("register_datasets", "dataset")

    @property
    def metadata_encoders(self) -> ComponentRegistry:
        return self._components("register_metadata_encoders", "metadata encoder")

    def add_commands(self, cli: Any) -> None:
        """Let plugins add commands to the CLI group ``cli``."""
        for impl in self._ordered_impls("register_commands"):
            before = set(getattr(cli, "commands", {}))
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001
                msg = f"plugin {impl.plugin_name!r} failed in register_commands and was skipped: {exc}"
                self.records.setdefault(
                    impl.plugin_name, PluginRecord(impl.plugin_name, "extra", impl.plugin_name)
                ).errors.append(msg)
                self._warn(msg)
                continue
            for name in sorted(set(getattr(cli, "commands", {})) - before):
                self._note(impl.plugin_name, "register_commands", name)

    def plugins(self) -> list[PluginRecord]:
        """Every plugin and what it registered (fills all registries first)."""
        self.load_entrypoints()
        self.sensor_registry(strict=False)
        for prop in ("readers", "encoders", "models", "metadata_encoders", "datasets"):
            getattr(self, prop)
        return list(self.records.values())


#: Environment variables that change what a host loads; :func:`default_host` is keyed on them.
HOST_ENVIRONMENT = (PLUGINS_ENV, "ATOMIZER_SENSOR_PATH", "XDG_CONFIG_HOME")


def default_host() -> PluginHost:
    """The host library calls use when they are not handed one (the CLI always hands one).

    Hosts are cached per value of :data:`HOST_ENVIRONMENT`, so changing ``ATOMIZER_SENSOR_PATH``
    or ``ATOMIZER_PLUGINS`` in a running process is seen by the next call; pass ``host=`` to
    control this fully.
    """
    return _host_for(tuple(os.environ.get(name) for name in HOST_ENVIRONMENT))


@functools.lru_cache(maxsize=4)
def _host_for(environment: tuple[str | None, ...]) -> PluginHost:
    del environment  # the cache key; PluginHost reads os.environ itself
    return PluginHost()
