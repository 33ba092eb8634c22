"""The example third-party plugin in plugins/, installed for real and seen end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "atomizer-example-plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """pip-install the plugin (no dependencies) into a private folder."""
    target = tmp_path_factory.mktemp("plugin-site")
    # build from a copy: pip builds in place and would leave build/ and *.egg-info in the repository
    source = tmp_path_factory.mktemp("plugin-src") / PLUGIN.name
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    return target


def run_atomizer(site, *args, env_extra=None, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env.pop("ATOMIZER_SENSOR_PATH", None)
    env.pop("ATOMIZER_PLUGINS", None)
    env.update(env_extra or {})
    code = "import sys; from atomizer.cli.main import main; sys.argv[0] = 'atomizer'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_plugin_adds_a_sensor_and_a_command(plugin_site, tmp_path):
    listed = run_atomizer(plugin_site, "sensors", "list", "--json", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert rows["spot6"]["n_bands"] == 5 and rows["spot6"]["provider"] == "example"

    plugins = run_atomizer(plugin_site, "plugins", "--json", tmp_path=tmp_path)
    assert plugins.returncode == 0, plugins.stderr
    records = {r["name"]: r for r in json.loads(plugins.stdout)}
    assert records["example"]["registered"]["register_sensors"] == ["spot6"]

    helped = run_atomizer(plugin_site, "--help", tmp_path=tmp_path)
    assert "ndvi" in helped.stdout

    # the command does real work on a real .atoms file
    import numpy as np

    from atomizer.atoms import AtomSet, save_atoms
    from atomizer.sensors import SensorSpec
    from atomizer.sensors.loader import read_raw_spec, validate_raw

    spec = validate_raw(read_raw_spec(PLUGIN / "src" / "atomizer_example_plugin" / "spot6.yaml"))
    assert isinstance(spec, SensorSpec)
    red = np.full((2, 2), 0.1, np.float32)
    nir = np.full((2, 2), 0.5, np.float32)
    atoms = AtomSet.from_array(np.stack([red, nir]), spec, bands=["B2", "B3"])
    path = tmp_path / "scene.atoms"
    save_atoms(atoms, path)
    result = run_atomizer(plugin_site, "ndvi", str(path), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "NDVI over 4 pixels: mean 0.667" in result.stdout


def test_plugins_can_be_switched_off(plugin_site, tmp_path):
    listed = run_atomizer(
        plugin_site, "sensors", "list", "--json", env_extra={"ATOMIZER_PLUGINS": ""}, tmp_path=tmp_path
    )
    assert listed.returncode == 0, listed.stderr
    assert "spot6" not in {r["id"] for r in json.loads(listed.stdout)}
