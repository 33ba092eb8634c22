"""The plugin host: a pluggy manager built by a factory, plus the registries it fills.

Built-in sensors, readers, encoders and models are *default plugins*: modules registered through the
same hooks a third-party package uses. Third-party plugins are found through the ``atomizer``
entry-point group, loaded lazily and once per host. ``ATOMIZER_PLUGINS`` (comma-separated
entry-point names) restricts which of them load; set it to an empty string to load none. A plugin
that fails to import or to register is reported once (a :class:`PluginLoadWarning`) and skipped.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from atomizer.errors import AtomizerError, PluginError
from atomizer.limits import clip_text, safe_repr
from atomizer.plugins import hookspecs
from atomizer.plugins.components import ComponentRegistry

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
    "atomizer.datasets.plugin",
)

#: What a third-party plugin may raise at import or in a hook without taking atomizer down: any
#: exception, SystemExit / KeyboardInterrupt raised by its own code (``sys.exit()``), and any
#: other BaseException subclass it defines.
PLUGIN_FAILURES = (BaseException,)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "it raised KeyboardInterrupt"
    return clip_text(str(exc) or type(exc).__name__)


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


class PluginHost:
    """One plugin manager and the registries filled from its hooks.

    The CLI builds one per invocation and hands it to every command; library functions take a
    host or registry as an argument, never a hidden global one.
    """

    def __init__(
        self,
        *,
        load_entrypoints: bool = True,
        environ: Mapping[str, str] | None = None,
        extra_plugins: tuple[Any, ...] = (),
        user_sensors: bool = True,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self._user_sensors = user_sensors
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
            except PLUGIN_FAILURES as exc:  # a broken plugin must never be fatal
                self._fail(ep.name, f"plugin {ep.name!r} ({ep.value}) failed to load and was "
                                    f"skipped: {_reason(exc)}")
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

            def register(*args: Any, _plugin: str = impl.plugin_name, **kwargs: Any) -> None:
                on_register(_plugin, args, kwargs)

            try:
                impl.function(register=register)
            except PLUGIN_FAILURES as exc:
                if impl.plugin_name in BUILTIN_PLUGINS and isinstance(exc, AtomizerError):
                    raise
                self._fail(impl.plugin_name, f"plugin {impl.plugin_name!r} failed in {hook_name} "
                                             f"and was skipped: {_reason(exc)}")

    def _fail(self, plugin: str, message: str) -> None:
        """Record and report (once) what went wrong with ``plugin``'s contribution."""
        record = self.records.setdefault(plugin, PluginRecord(plugin, "extra", plugin))
        if message not in record.errors:
            record.errors.append(message)
            self._warn(message)

    def _bad_registration(self, plugin: str, hook: str, expected: str, values: tuple) -> None:
        got = ", ".join(clip_text(safe_repr(v), max_chars=60) for v in values) or "nothing"
        message = (f"plugin {plugin!r} called register({got}) in {hook}; it takes {expected}; "
                   "skipped")
        if plugin in BUILTIN_PLUGINS:
            raise PluginError(message)
        self._fail(plugin, message)

    def _note(self, plugin: str, hook: str, what: str) -> None:
        rec = self.records.setdefault(plugin, PluginRecord(plugin, "extra", plugin))
        rec.registered.setdefault(hook, []).append(what)

    def _components(self, hook_name: str, kind: str) -> ComponentRegistry:
        if hook_name in self._cache:
            return self._cache[hook_name]
        registry: ComponentRegistry = ComponentRegistry(kind, on_failure=self._fail)

        def on_register(plugin: str, args: tuple, kwargs: dict) -> None:
            values = (*args, *kwargs.values())
            if len(values) != 2 or not isinstance(values[0], str) or not values[0].strip():
                self._bad_registration(plugin, hook_name, f"a name and a {kind}", values)
                return
            name, item = values
            try:
                registry.add(name, item, provider=plugin)
            except PluginError as exc:
                if plugin in BUILTIN_PLUGINS:
                    raise
                # a third-party plugin must never break the built-ins: skip its clashing item
                self._fail(plugin, f"plugin {plugin!r}: {exc}; its {kind} {name!r} was skipped")
                return
            self._note(plugin, hook_name, name)

        self.call_register_hook(hook_name, on_register)
        self._cache[hook_name] = registry
        return registry

    # --- registries ---------------------------------------------------------------------------------
    def _sensor_registrations(self) -> tuple[list, list]:
        """What the ``register_sensors`` hooks handed over: ``(item, plugin)`` pairs of built-in
        plugins, then of third-party ones (collected once per host; nothing is read yet)."""
        if "sensor_registrations" not in self._cache:
            builtin: list = []
            plugins: list = []

            def on_register(plugin: str, args: tuple, kwargs: dict) -> None:
                values = (*args, *kwargs.values())
                if len(values) != 1:
                    self._bad_registration(plugin, "register_sensors", "one sensor spec", values)
                    return
                (builtin if plugin in BUILTIN_PLUGINS else plugins).append((values[0], plugin))

            self.call_register_hook("register_sensors", on_register)
            self._cache["sensor_registrations"] = (builtin, plugins)
        return self._cache["sensor_registrations"]

    def sensor_registry(self, *, strict: bool = False):
        """All sensor specs: built-ins, ``ATOMIZER_SENSOR_PATH``, the XDG folder, then plugins.

        A broken contribution is skipped, reported once (a :class:`PluginLoadWarning`) and listed
        in ``registry.problems`` and in its plugin's record; ``strict`` raises on the first one
        instead (for checking a collection of specs).
        """
        key = f"sensors:{strict}"
        if key in self._cache:
            return self._cache[key]
        from atomizer.sensors.registry import build_registry, user_sensor_dirs

        builtin, plugins = self._sensor_registrations()
        folders = user_sensor_dirs(self.environ) if self._user_sensors else []
        registry = build_registry(builtin, plugins, user_dirs=folders, strict=strict)
        if not strict:  # the lenient registry is built once per host: note and report once
            for spec in registry:
                if registry.registrant(spec.id) in self.records:
                    self._note(registry.registrant(spec.id), "register_sensors", spec.id)
            for source, lines in registry.problems_by_provider.items():
                if source in self.records:
                    record, label = self.records[source], f"plugin {source!r}"
                else:  # a folder of the user's specs
                    folder = source.removeprefix("user:")
                    record = self.records.setdefault(
                        source, PluginRecord(source, "sensor-path", folder)
                    )
                    label = f"sensor folder {folder}"
                for line in lines:
                    self._fail(record.name, f"{label}: sensor spec skipped: {line}")
        self._cache[key] = registry
        return registry

    @property
    def sensors(self):
        """The sensor registry commands use: broken contributions skipped and reported once."""
        return self.sensor_registry(strict=False)

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
        """Let plugins add commands to the CLI group ``cli``; a command named like one that is
        already there (a built-in, or an earlier plugin's) is refused and reported."""
        for impl in self._ordered_impls("register_commands"):
            commands = cli.commands
            before = dict(commands)
            try:
                impl.function(cli=cli)
            except PLUGIN_FAILURES as exc:
                self._fail(impl.plugin_name, f"plugin {impl.plugin_name!r} failed in "
                                             f"register_commands and was skipped: {_reason(exc)}")
            for name, command in before.items():
                if commands.get(name) is not command:  # replaced or removed: put it back
                    commands[name] = command
                    self._fail(impl.plugin_name, f"plugin {impl.plugin_name!r} registered a "
                                                 f"command {name!r}, a name already taken; its "
                                                 "command was skipped: choose another name")
            for name in sorted(set(commands) - set(before)):
                self._note(impl.plugin_name, "register_commands", name)

    def plugins(self) -> list[PluginRecord]:
        """Every plugin and what it registered (fills all registries first)."""
        self.load_entrypoints()
        self.sensor_registry(strict=False)
        for prop in ("readers", "encoders", "models", "metadata_encoders", "datasets"):
            getattr(self, prop)
        return list(self.records.values())


@functools.lru_cache(maxsize=1)
def builtin_host() -> PluginHost:
    """A host with atomizer's own sensors, readers, encoders and models only: no entry-point
    plugins, no user sensor folders, nothing read from the environment.

    Library functions use it when a caller passes no host, so their result never depends on the
    environment; it is built once (its contents depend on the installed package alone). The CLI
    builds its own host and passes it everywhere.
    """
    return PluginHost(load_entrypoints=False, user_sensors=False)


def host_or_builtin(host: PluginHost | None) -> PluginHost:
    """``host``, or :func:`builtin_host` when none is given."""
    return builtin_host() if host is None else host


def sensor_spec(ref: Any, host: PluginHost | None = None) -> Any:
    """:func:`atomizer.sensors.resolve_sensor` among ``host``'s sensors (the built-in ones when
    ``host`` is None): the one call library code makes to turn a sensor reference into a spec."""
    from atomizer.sensors.resolve import resolve_sensor

    return resolve_sensor(ref, host_or_builtin(host).sensors)
