"""The plugin host: built-ins as default plugins, entry points loaded lazily, failures skipped."""

from __future__ import annotations

import textwrap
import warnings

import pytest

from atomizer.errors import PluginError
from atomizer.plugins.host import BUILTIN_PLUGINS, ComponentRegistry, PluginHost, PluginLoadWarning


def make_distribution(root, name, entry_points: dict[str, str], modules: dict[str, str]):
    """A minimal installed distribution (dist-info + modules) that importlib.metadata can find."""
    dist = root / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = ["[atomizer]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for mod, src in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(src))


GOOD = """
    import click
    from atomizer import hookimpl

    @hookimpl
    def register_sensors(register):
        register({"id": "plugsat", "name": "Plug Sat", "sources": ["https://example.org"],
                  "bands": [{"name": "B1", "center_wavelength_nm": 560, "fwhm_nm": 30, "gsd_m": 5}]})

    @hookimpl
    def register_encoders(register):
        register("plug-encoder", lambda **kw: kw)

    @hookimpl
    def register_commands(cli):
        @cli.command("plug-hello")
        def hello():
            click.echo("hello from plug")
"""

BROKEN = """
    raise ImportError("this plugin needs a library that is not installed")
"""


@pytest.fixture
def plugin_env(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "goodplug", {"good": "goodplug_mod"}, {"goodplug_mod": GOOD})
    make_distribution(site, "badplug", {"bad": "badplug_mod"}, {"badplug_mod": BROKEN})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ATOMIZER_SENSOR_PATH", raising=False)
    monkeypatch.delenv("ATOMIZER_PLUGINS", raising=False)
    return site


def test_builtins_are_default_plugins(host):
    names = [r.name for r in host.plugins()]
    assert names[: len(BUILTIN_PLUGINS)] == list(BUILTIN_PLUGINS)
    record = host.records["atomizer.sensors.plugin"]
    assert record.kind == "builtin"


def test_entry_point_plugin_registers_and_broken_one_is_skipped(plugin_env):
    host = PluginHost()
    with pytest.warns(PluginLoadWarning, match="'bad'.*failed to load and was skipped") as caught:
        sensors = host.sensors
    assert "plugsat" in sensors
    assert sensors.provider("plugsat") == "good"
    assert "plug-encoder" in host.encoders
    # reported once: loading again (another registry) does not warn again
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        host.encoders, host.models
    assert sum("bad" in str(w.message) for w in caught) == 1
    records = {r.name: r for r in host.plugins()}
    assert records["bad"].errors and records["good"].registered["register_sensors"] == ["plugsat"]


def test_env_var_restricts_plugins(plugin_env, monkeypatch):
    monkeypatch.setenv("ATOMIZER_PLUGINS", "good")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)  # bad is not even tried
        host = PluginHost()
        assert "plugsat" in host.sensors
    monkeypatch.setenv("ATOMIZER_PLUGINS", "")
    host = PluginHost()
    assert "plugsat" not in host.sensors


def test_plugin_commands_join_the_cli(plugin_env, monkeypatch):
    from click.testing import CliRunner

    from atomizer.cli.main import build_cli

    monkeypatch.setenv("ATOMIZER_PLUGINS", "good")
    cli = build_cli(PluginHost())
    result = CliRunner().invoke(cli, ["plug-hello"])
    assert result.exit_code == 0 and "hello from plug" in result.output


def test_misspelt_hook_is_reported(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "typo", {"typo": "typo_mod"}, {"typo_mod": """
        from atomizer import hookimpl

        @hookimpl
        def register_sensor(register):
            pass
    """})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ATOMIZER_PLUGINS", "typo")
    with pytest.warns(PluginLoadWarning, match="unknown hook"):
        PluginHost().load_entrypoints()


def test_plugin_raising_inside_a_hook_is_skipped():
    class Exploding:
        @staticmethod
        def register_encoders(register):
            raise RuntimeError("boom")

    from atomizer import hookimpl

    Exploding.register_encoders = hookimpl(Exploding.register_encoders)
    host = PluginHost(load_entrypoints=False, extra_plugins=(Exploding,))
    with pytest.warns(PluginLoadWarning, match="boom"):
        host.encoders


def test_component_registry_errors():
    reg: ComponentRegistry = ComponentRegistry("encoder")
    reg.add("fourier", object(), provider="a")
    with pytest.raises(PluginError, match="registered by both 'a' and 'b'"):
        reg.add("Fourier", object(), provider="b")
    with pytest.raises(PluginError, match="unknown encoder 'fourir'; closest: fourier"):
        reg.get("fourir")


def test_builtin_plugin_modules_exist():
    import importlib

    for name in BUILTIN_PLUGINS:
        importlib.import_module(name)


def test_no_work_at_import_time():
    import subprocess
    import sys

    code = (
        "import sys, atomizer, atomizer.plugins, atomizer.sensors;"
        "heavy = [m for m in ('torch', 'rasterio', 'matplotlib', 'pystac') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing atomizer pulled in {out.stdout.strip()}"


def test_import_strings_resolve_lazily():
    reg: ComponentRegistry = ComponentRegistry("model")
    reg.add("lazy", "atomizer.errors:ConfigError", provider="x")
    reg.add("broken", "atomizer.nothing_here:Thing", provider="x")
    from atomizer.errors import ConfigError

    assert reg.get("lazy") is ConfigError
    with pytest.raises(PluginError, match="'broken' of plugin 'x' points at 'atomizer.nothing_here:Thing'"):
        reg.get("broken")


def test_third_party_name_clash_is_skipped_not_fatal():
    from atomizer import hookimpl

    class Clashing:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("spectral", "atomizer.errors:ConfigError")  # a built-in's name
            register("clash-free", "atomizer.errors:ConfigError")

    host = PluginHost(load_entrypoints=False, extra_plugins=(Clashing,))
    with pytest.warns(PluginLoadWarning, match="'spectral' was skipped"):
        encoders = host.encoders
    assert encoders.provider("spectral") == "atomizer.encoders.plugin"
    assert "clash-free" in encoders


def test_library_default_is_the_builtin_host_whatever_the_environment(monkeypatch, tmp_path):
    from atomizer.plugins.host import builtin_host, sensor_spec

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "envsat.yaml").write_text(
        "id: envsat\nname: E\nsources: [x]\nbands:\n"
        "  - {name: B1, center_wavelength_nm: 560, fwhm_nm: 30, gsd_m: 5}\n"
    )
    monkeypatch.setenv("ATOMIZER_SENSOR_PATH", str(tmp_path / "a"))
    assert "envsat" not in builtin_host().sensors  # never read from the environment
    assert sensor_spec("landsat8").id == "landsat8"
    host = PluginHost(load_entrypoints=False)  # the CLI's host does read it
    assert sensor_spec("envsat", host).id == "envsat"


# --- isolation: one broken contribution never takes the rest down ---------------------------------
HOSTILE = """
    import click
    from atomizer import hookimpl

    BAND = {"name": "B1", "center_wavelength_nm": 560, "fwhm_nm": 30, "gsd_m": 5}

    @hookimpl
    def register_sensors(register):
        register({"id": "landsat8", "name": "Fake", "sources": ["x"], "bands": [BAND]})  # taken id
        register({"id": "aliased", "name": "A", "aliases": ["s2a"], "sources": ["x"], "bands": [BAND]})
        register({"id": "unitslip", "name": "U", "sources": ["x"],
                  "bands": [dict(BAND, center_wavelength_nm=0.56, fwhm_nm=0.03)]})
        register(42)
        register({"id": "fine", "name": "Fine", "sources": ["x"], "bands": [BAND]})

    @hookimpl
    def register_readers(register):
        class Raising:
            name = "raising"
            suffixes = (".tif",)

            def can_read(self, source):
                raise RuntimeError("can_read exploded")

        register("raising", Raising())
        register(42)

    @hookimpl
    def register_commands(cli):
        @cli.command("tokenize")
        def fake():
            click.echo("hijacked")

        @cli.command("hostile-hello")
        def hello():
            click.echo("hello")
"""

EXITS = "import sys\nsys.exit(3)\n"
INTERRUPTS = "raise KeyboardInterrupt\n"


@pytest.fixture
def hostile_env(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "hostile", {"hostile": "hostile_mod"}, {"hostile_mod": HOSTILE})
    make_distribution(site, "exits", {"exits": "exits_mod"}, {"exits_mod": EXITS})
    make_distribution(site, "interrupts", {"interrupts": "interrupts_mod"}, {"interrupts_mod": INTERRUPTS})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ATOMIZER_SENSOR_PATH", raising=False)
    monkeypatch.setenv("ATOMIZER_PLUGINS", "hostile,exits,interrupts")
    return site


def _messages(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, PluginLoadWarning)]


def test_bad_sensor_registrations_are_skipped_once_and_builtins_stay(hostile_env):
    host = PluginHost()
    with pytest.warns(PluginLoadWarning) as caught:
        sensors = host.sensors
        host.plugins()  # every registry built: every problem reported
    messages = _messages(caught)
    for needle in ("'landsat8'", "'s2a'", "write 560 (nm)", "registered 42, which is not a sensor spec"):
        hits = [m for m in messages if needle in m]
        assert len(hits) == 1 and "plugin 'hostile'" in hits[0], (needle, messages)
    assert sensors.get("landsat8").name != "Fake" and sensors.provider("landsat8") == "atomizer"
    assert sensors.get("s2a").id == "sentinel2a"  # a built-in alias is never shadowed
    assert "fine" in sensors and "unitslip" not in sensors
    with pytest.raises(Exception, match="'unitslip' is not available: its spec was skipped"):
        sensors.get("unitslip")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)  # reported once per host
        host.sensors, host.plugins()
    records = {r.name: r for r in host.plugins()}
    assert sum("'landsat8'" in e for e in records["hostile"].errors) == 1
    assert records["hostile"].registered["register_sensors"] == ["fine"]


def test_plugins_exiting_or_interrupting_at_import_are_skipped(hostile_env):
    host = PluginHost()
    with pytest.warns(PluginLoadWarning) as caught:
        host.load_entrypoints()
    messages = _messages(caught)
    assert any("'exits'" in m and "sys.exit(3)" in m for m in messages), messages
    assert any("'interrupts'" in m and "KeyboardInterrupt" in m for m in messages), messages
    assert "landsat8" in host.sensors


def test_plugin_command_cannot_shadow_a_builtin(hostile_env):
    from click.testing import CliRunner

    from atomizer.cli.main import build_cli

    host = PluginHost()
    with pytest.warns(PluginLoadWarning, match="command 'tokenize', a name already taken"):
        cli = build_cli(host)
    assert "hijacked" not in CliRunner().invoke(cli, ["tokenize", "--help"]).output
    assert CliRunner().invoke(cli, ["hostile-hello"]).output == "hello\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    import json

    errors = {r["name"]: r["errors"] for r in json.loads(result.output)}
    assert any("'tokenize'" in e for e in errors["hostile"])
    assert any("sys.exit" in e for e in errors["exits"])


def test_plugin_reader_whose_can_read_raises_is_disabled_once(hostile_env):
    from atomizer.readers import reader_for

    host = PluginHost()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        readers = host.readers
    with pytest.warns(PluginLoadWarning, match="reader 'raising' of plugin 'hostile' was disabled.*can_read exploded"):
        assert reader_for("scene.tif", readers).name == "geotiff"
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        assert reader_for("other.tif", readers).name == "geotiff"
    with pytest.raises(PluginError, match="was disabled"):
        readers.get("raising")
    assert any("register(42)" in e for e in host.records["hostile"].errors)


def test_broken_and_cyclic_user_specs_do_not_break_builtins(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from atomizer.cli.main import build_cli

    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")))
    (folder / "loop1.yaml").write_text("id: loop1\nname: L\nextends: loop2\n")
    (folder / "loop2.yaml").write_text("id: loop2\nname: L\nextends: loop1\n")
    (folder / "bands5.yaml").write_text("id: bands5\nname: B\nextends: landsat8\nbands: 5\n")
    monkeypatch.setenv("ATOMIZER_SENSOR_PATH", str(folder))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    host = PluginHost(load_entrypoints=False)
    with pytest.warns(PluginLoadWarning) as caught:
        result = CliRunner().invoke(build_cli(host), ["sensors", "show", "landsat8", "--json"])
    assert result.exit_code == 0, result.output
    messages = _messages(caught)
    for name in ("bomb.yaml", "loop1.yaml", "loop2.yaml", "bands5.yaml"):
        assert sum(name in m.split(": sensor spec skipped: ", 1)[1].split(":")[0] for m in messages) == 1, (
            name, messages)
    assert any("circular" in m for m in messages) and any("yaml_nodes" in m or "nodes" in m for m in messages)
    records = {r.name: r for r in host.plugins()}
    assert len(records[f"user:{folder}"].errors) == 4
