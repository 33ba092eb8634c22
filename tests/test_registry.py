"""The sensor registry: search path order, aliases, extends, duplicates, helpful errors."""

from __future__ import annotations

import textwrap

import pytest

from atomizer.errors import DuplicateSensorError, SpecError, UnknownSensorError
from atomizer.plugins.host import PluginHost, PluginLoadWarning

SPEC = textwrap.dedent(
    """\
    id: {id}
    name: {name}
    aliases: [{alias}]
    sources: [https://example.org/doc.pdf]
    bands:
      - {{name: B1, common_name: blue, center_wavelength_nm: 490, fwhm_nm: 60, gsd_m: 10}}
      - {{name: B2, common_name: red, center_wavelength_nm: 665, fwhm_nm: 30, gsd_m: 20}}
    """
)


def write_spec(folder, sid, alias="", name=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sid}.yaml"
    path.write_text(SPEC.format(id=sid, alias=alias, name=name or sid.title()))
    return path


def make_host(monkeypatch, tmp_path, *paths):
    import os

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("ATOMIZER_SENSOR_PATH", os.pathsep.join(str(p) for p in paths))
    return PluginHost(load_entrypoints=False)


def test_sensor_path_folders_and_xdg(monkeypatch, tmp_path):
    write_spec(tmp_path / "a", "alpha", alias="ALPHA-1")
    write_spec(tmp_path / "b", "beta")
    write_spec(tmp_path / "xdg" / "atomizer" / "sensors", "gamma")
    host = make_host(monkeypatch, tmp_path, tmp_path / "a", tmp_path / "b")
    reg = host.sensors
    for sid in ("alpha", "beta", "gamma"):
        assert sid in reg
    assert reg.get("alpha-1").id == "alpha"  # alias, case-insensitive
    assert reg.get("  BETA ").id == "beta"
    assert reg.provider("gamma").startswith("user:")


def test_unknown_sensor_lists_closest(monkeypatch, tmp_path):
    write_spec(tmp_path / "a", "landsatx")
    reg = make_host(monkeypatch, tmp_path, tmp_path / "a").sensors
    with pytest.raises(UnknownSensorError) as info:
        reg.get("landsat")
    assert "closest known: landsatx" in str(info.value)


def test_duplicate_ids_name_both_files(monkeypatch, tmp_path):
    a = write_spec(tmp_path / "a", "twin")
    b = write_spec(tmp_path / "b", "twin")
    host = make_host(monkeypatch, tmp_path, tmp_path / "a", tmp_path / "b")
    with pytest.raises(DuplicateSensorError) as info:
        host.sensor_registry(strict=True)
    assert str(a) in str(info.value) and str(b) in str(info.value)
    with pytest.warns(PluginLoadWarning, match="claim the id 'twin'") as caught:
        reg = host.sensors  # what commands use: the first one wins, the second is reported once
    assert reg.origin("twin") == str(a) and len(caught) == 1


def test_alias_clash_is_an_error(monkeypatch, tmp_path):
    write_spec(tmp_path / "a", "one", alias="shared")
    write_spec(tmp_path / "a", "two", alias="shared")
    host = make_host(monkeypatch, tmp_path, tmp_path / "a")
    with pytest.raises(DuplicateSensorError, match="'shared'"):
        host.sensor_registry(strict=True)
    with pytest.warns(PluginLoadWarning, match="'shared'"):
        reg = host.sensors
    assert "one" in reg and "two" not in reg and "landsat8" in reg
    with pytest.raises(UnknownSensorError, match="'two' is not available: its spec was skipped"):
        reg.get("two")


def test_extends_across_sources(monkeypatch, tmp_path):
    write_spec(tmp_path / "a", "base", alias="base-alias")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "derived.yaml").write_text(
        "id: derived\nname: Derived\nextends: base-alias\nselect_bands: [B2]\n"
        "band_overrides: {B2: {gsd_m: 30}}\n"
        "bands:\n  - {name: B3, common_name: nir, center_wavelength_nm: 842, fwhm_nm: 115, gsd_m: 30}\n"
    )
    reg = make_host(monkeypatch, tmp_path, tmp_path / "a", tmp_path / "b").sensors
    d = reg.get("derived")
    assert d.band_names == ["B2", "B3"]
    assert d.band("B2").gsd_m == 30 and d.extends == "base-alias"
    assert d.aliases == []  # aliases are never inherited
    assert d.sources == reg.get("base").sources


def strict(monkeypatch, tmp_path, *paths):
    return make_host(monkeypatch, tmp_path, *paths).sensor_registry(strict=True)


def test_extends_errors(monkeypatch, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "orphan.yaml").write_text("id: orphan\nname: O\nextends: nowhere\n")
    with pytest.raises(SpecError, match="extends: unknown sensor 'nowhere'"):
        strict(monkeypatch, tmp_path, tmp_path / "a")
    (tmp_path / "a" / "orphan.yaml").unlink()
    write_spec(tmp_path / "a", "base")
    (tmp_path / "a" / "bad.yaml").write_text(
        "id: bad\nname: B\nextends: base\ndrop_bands: [B9]\n"
    )
    with pytest.raises(SpecError, match="drop_bands: 'base' has no band 'B9'"):
        strict(monkeypatch, tmp_path, tmp_path / "a")
    (tmp_path / "a" / "bad.yaml").write_text("id: bad\nname: B\nextends: bad2\n")
    (tmp_path / "a" / "bad2.yaml").write_text("id: bad2\nname: B\nextends: bad\n")
    with pytest.raises(SpecError, match="circular"):
        strict(monkeypatch, tmp_path, tmp_path / "a")


def test_lenient_registry_collects_problems(monkeypatch, tmp_path):
    write_spec(tmp_path / "a", "fine")
    (tmp_path / "a" / "broken.yaml").write_text("id: broken\nname: B\nsources: [x]\nbands: []\n")
    host = make_host(monkeypatch, tmp_path, tmp_path / "a")
    reg = host.sensor_registry(strict=False)
    assert "fine" in reg and "broken" not in reg
    assert any("broken.yaml" in p for p in reg.problems)


def test_band_defaults_and_additive_provenance(monkeypatch, tmp_path):
    write_spec(tmp_path / "a", "base")
    (tmp_path / "a" / "l2.yaml").write_text(
        "id: base-l2\nname: L2\nextends: base\nsources: [https://example.org/l2.pdf]\n"
        "notes: [scaled]\nband_defaults: {scale: 0.0001, nodata: 0}\n"
        "band_overrides: {B2: {nodata: 65535}}\n"
    )
    reg = make_host(monkeypatch, tmp_path, tmp_path / "a").sensors
    spec = reg.get("base-l2")
    assert [b.scale for b in spec.bands] == [0.0001, 0.0001]
    assert [b.nodata for b in spec.bands] == [0, 65535]  # overrides win over defaults
    assert spec.sources == ["https://example.org/doc.pdf", "https://example.org/l2.pdf"]
    assert spec.notes == ["scaled"]


@pytest.mark.parametrize(
    "derivation",
    ["band_overrides: [B1]", "band_overrides: {B1: 5}", "drop_bands: [{a: 1}]", "band_defaults: [1]"],
)
def test_malformed_derivation_keys_are_spec_errors(monkeypatch, tmp_path, derivation):
    write_spec(tmp_path / "a", "base")
    (tmp_path / "a" / "child.yaml").write_text(f"id: child\nname: C\nextends: base\n{derivation}\n")
    host = make_host(monkeypatch, tmp_path, tmp_path / "a")
    with pytest.raises(SpecError, match=r"child.yaml:4: (band_overrides|drop_bands|band_defaults): must"):
        host.sensor_registry(strict=True)
    with pytest.warns(PluginLoadWarning, match="child.yaml:4"):
        lenient = host.sensors  # never a traceback, even leniently
    assert "base" in lenient and "child" not in lenient


def test_specs_without_an_id_are_each_reported(monkeypatch, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.yaml").write_text("name: One\nsources: [x]\nbands: []\n")
    (tmp_path / "a" / "two.yaml").write_text("name: Two\nsources: [x]\nbands: []\n")
    reg = make_host(monkeypatch, tmp_path, tmp_path / "a").sensor_registry(strict=False)
    assert any("one.yaml" in p for p in reg.problems) and any("two.yaml" in p for p in reg.problems)


def test_an_absurdly_long_unknown_id_is_clipped_in_the_message():
    from atomizer.errors import UnknownSensorError
    from atomizer.plugins.host import builtin_host

    with pytest.raises(UnknownSensorError) as info:
        builtin_host().sensors.get("x" * 100_000)
    assert len(str(info.value)) < 400 and "(100,002 characters)" in str(info.value)
