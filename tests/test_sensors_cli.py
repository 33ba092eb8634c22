"""`atomizer sensors list | show | validate | plot` and `atomizer plugins`, through click's runner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from atomizer.cli.main import build_cli
from atomizer.plugins.host import PluginHost

USER_SPEC = """\
id: mysat
name: My Sat
aliases: [MYSAT-1]
sources: [https://example.org/mysat.pdf]
bands:
  - {name: B1, common_name: green, center_wavelength_nm: 560, fwhm_nm: 40, gsd_m: 3}
  - {name: B2, common_name: nir, center_wavelength_nm: 850, fwhm_nm: 40, gsd_m: 3}
"""

BAD_SPECS = {
    "micrometres.yaml": (
        "id: um\nname: U\nsources: [https://x.org]\nbands:\n"
        "  - {name: B1, center_wavelength_nm: 0.665, fwhm_nm: 0.03, gsd_m: 10}\n",
        "write 665 (nm)",
    ),
    "wide.yaml": (
        "id: wide\nname: W\nsources: [https://x.org]\nbands:\n"
        "  - {name: B1, center_wavelength_nm: 500, fwhm_nm: 600, gsd_m: 10}\n",
        "fwhm_nm 600 is not below the centre 500",
    ),
    "duplicate.yaml": (
        "id: dup\nname: D\nsources: [https://x.org]\nbands:\n"
        "  - {name: B1, center_wavelength_nm: 500, fwhm_nm: 60, gsd_m: 10}\n"
        "  - {name: B1, center_wavelength_nm: 560, fwhm_nm: 60, gsd_m: 10}\n",
        "duplicate band name 'B1'",
    ),
    "unknown_key.yaml": (
        "id: uk\nname: K\nsources: [https://x.org]\nwavelength_unit: nm\nbands:\n"
        "  - {name: B1, center_wavelength_nm: 500, fwhm_nm: 60, gsd_m: 10}\n",
        "unknown key 'wavelength_unit'",
    ),
}


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    folder.mkdir()
    monkeypatch.setenv("ATOMIZER_SENSOR_PATH", str(folder))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return folder


def cli():
    return build_cli(PluginHost(load_entrypoints=False))


def test_help_everywhere(runner):
    root = cli()
    assert runner.invoke(root, ["--help"]).exit_code == 0
    for name, command in root.commands.items():
        result = runner.invoke(root, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        for sub in getattr(command, "commands", {}):
            result = runner.invoke(root, [name, sub, "--help"])
            assert result.exit_code == 0 and "Usage" in result.output, (name, sub, result.output)


def test_yaml_dropped_in_sensor_path_appears_without_code(runner, user_dir):
    (user_dir / "mysat.yaml").write_text(USER_SPEC)
    result = runner.invoke(cli(), ["sensors", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.output)}
    assert rows["mysat"]["n_bands"] == 2 and rows["mysat"]["name"] == "My Sat"
    table = runner.invoke(cli(), ["sensors", "list"])
    assert "mysat" in table.output
    shown = runner.invoke(cli(), ["sensors", "show", "mysat-1", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["id"] == "mysat"
    assert [b["name"] for b in data["bands"]] == ["B1", "B2"]
    assert set(data["bands"][0]) >= {"name", "common_name", "center_wavelength_nm", "fwhm_nm", "gsd_m"}
    assert "560" in runner.invoke(cli(), ["sensors", "show", "mysat"]).output


def test_show_unknown_sensor_is_one_line(runner, user_dir):
    (user_dir / "mysat.yaml").write_text(USER_SPEC)
    result = runner.invoke(cli(), ["sensors", "show", "mysatt"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "closest known: mysat" in lines[0]
    assert "Traceback" not in result.output


def test_validate_good_and_bad(runner, user_dir, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(USER_SPEC.replace("mysat", "goodsat").replace("MYSAT-1", "GS"))
    ok = runner.invoke(cli(), ["sensors", "validate", str(good)])
    assert ok.exit_code == 0 and "ok (goodsat, 2 bands)" in ok.output
    paths = []
    for name, (text, _) in BAD_SPECS.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    result = runner.invoke(cli(), ["sensors", "validate", str(good), *paths])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    problem_lines = [ln for ln in result.stderr.splitlines() if ".yaml:" in ln]
    assert len(problem_lines) == len(BAD_SPECS), result.stderr
    for name, (_, needle) in BAD_SPECS.items():
        matching = [ln for ln in problem_lines if name in ln]
        assert len(matching) == 1 and needle in matching[0], (name, problem_lines)
        # error: file:line: key: message
        assert matching[0].startswith("error: ")
        assert matching[0].removeprefix("error: ").split(":")[1].isdigit()


def test_validate_never_tracebacks_on_garbage(runner, tmp_path, user_dir):
    (tmp_path / "garbage.yaml").write_bytes(b"\x00\xff\xfe{{{")
    (tmp_path / "empty.yaml").write_text("")
    result = runner.invoke(
        cli(), ["sensors", "validate", str(tmp_path / "garbage.yaml"), str(tmp_path / "empty.yaml"),
                str(tmp_path / "missing.yaml")]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_plot(runner, user_dir, tmp_path):
    (user_dir / "mysat.yaml").write_text(USER_SPEC)
    out = tmp_path / "fig.png"
    result = runner.invoke(cli(), ["sensors", "plot", "mysat", "mysat-1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(cli(), ["sensors", "plot", "mysat", "-o", str(tmp_path / "nope" / "f.png")])
    assert bad.exit_code == 1 and "does not exist" in bad.output


def test_plugins_command_lists_builtins(runner, user_dir):
    result = runner.invoke(cli(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["atomizer.sensors.plugin"]["kind"] == "builtin"


def test_plot_refuses_unknown_image_formats(runner, user_dir, tmp_path):
    (user_dir / "mysat.yaml").write_text(USER_SPEC)
    result = runner.invoke(cli(), ["sensors", "plot", "mysat", "-o", str(tmp_path / "fig.xyz")])
    assert result.exit_code == 1 and "unknown image format '.xyz'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "fig.xyz").exists()
