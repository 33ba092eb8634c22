"""The Tokenizer: configs (YAML / dict / defaults), whole tokens, factorised parts, projections."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch
import yaml

from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.batch import collate_atoms
from atomizer.encoders import (
    DEFAULT_CONFIG,
    PART_NAMES,
    Tokenizer,
    TokenizerConfig,
    default_config,
    max_factorisation_error,
    project_parts,
)
from atomizer.errors import EncoderError
from atomizer.plugins.hookspecs import hookimpl
from atomizer.plugins.host import PluginHost
from atomizer.sensors.spec import Band, SensorSpec

ALL_PARTS = {
    "value": {"name": "fourier_value", "num_bands": 4, "max_freq": 8.0},
    "position": {"name": "position", "num_bands": 3, "max_freq": 16.0, "reference_m": 100.0},
    "spectral": {"name": "spectral"},
    "time": {"name": "time"},
    "location": {"name": "location", "num_bands": 2},
}


def small_spec() -> SensorSpec:
    return SensorSpec(
        id="tiny", name="Tiny", sources=["test"],
        bands=[
            Band(name="B2", center_wavelength_nm=490, fwhm_nm=65, gsd_m=10),
            Band(name="B5", center_wavelength_nm=705, fwhm_nm=15, gsd_m=20),
            Band(name="B11", center_wavelength_nm=1610, fwhm_nm=90, gsd_m=20),
        ],
    )


def small_atoms(seed: int = 0, scene: SceneMeta | None = None) -> AtomSet:
    rng = np.random.default_rng(seed)
    spec = small_spec()
    ten = AtomSet.from_array(rng.random((1, 4, 4)), spec, bands=["B2"])
    twenty = AtomSet.from_array(rng.random((2, 2, 2)), spec, bands=["B5", "B11"])
    scene = scene or SceneMeta("tiny", datetime=dt.datetime(2021, 5, 3, 10, 30), lon=5.0, lat=45.0)
    return AtomSet.concat([ten, twenty], scene=scene)


@pytest.fixture(scope="module", autouse=True)
def one_intra_op_thread():
    """Tiny tensors: on a shared, busy machine torch's intra-op threads only add spin-wait
    overhead (50 ms per small matmul measured with 2 threads vs 6 us with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tokenizer(host) -> Tokenizer:
    return Tokenizer.from_config(ALL_PARTS, host=host)


# --- configs ----------------------------------------------------------------------------------------
def test_default_config_is_read_only_and_builds(host):
    with pytest.raises(TypeError):
        DEFAULT_CONFIG["value"] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        DEFAULT_CONFIG["value"]["num_bands"] = 1  # type: ignore[index]
    fresh = default_config()
    fresh["value"]["num_bands"] = 1
    assert default_config()["value"]["num_bands"] == DEFAULT_CONFIG["value"]["num_bands"]
    tok = Tokenizer.from_config(None, host=host)
    assert list(tok.dims) == ["value", "position", "spectral"]
    assert tok.dims == {"value": 65, "position": 130, "spectral": 80}
    assert tok.dim == 275


def test_config_from_yaml_file_round_trips(tmp_path, host):
    path = tmp_path / "tok.yaml"
    path.write_text(yaml.safe_dump({**ALL_PARTS, "dtype": "float64"}))
    tok = Tokenizer.from_config(path, host=host)
    assert list(tok.dims) == list(PART_NAMES)
    assert tok.dims["value"] == 9 and tok.dims["position"] == 14 and tok.dims["location"] == 16
    assert tok.dtype == torch.float64
    cfg = TokenizerConfig.load(path)
    assert TokenizerConfig.load(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "config, match",
    [
        ({**ALL_PARTS, "colour": {"name": "spectral"}}, r"colour: not a token part \(built-in parts: value, position"),
        ({**ALL_PARTS, "colour": 5}, r"colour: Input should be a valid dictionary"),
        ({"position": ALL_PARTS["position"]}, r"value: required key 'value' is missing; add it"),
        ({"value": {"name": "fourier_valeu"}}, r"value: unknown encoder 'fourier_valeu'; closest: fourier_value"),
        ({"value": {"name": "fourier_value", "num_band": 3}}, r"no parameter 'num_band'; it accepts: num_bands"),
        ({"value": {"name": "fourier_value", "num_bands": 0}}, r"value: fourier_value: num_bands"),
        ({"value": {"name": "spectral"}}, r"'spectral' is a spectral encoder and cannot fill the 'value'"),
        ({"value": ALL_PARTS["value"], "dtype": "float16"}, r"dtype"),
    ],
)
def test_bad_configs_raise_encoder_error(host, config, match):
    with pytest.raises(EncoderError, match=match):
        Tokenizer.from_config(config, host=host)


def test_bad_config_files(tmp_path, host):
    with pytest.raises(EncoderError, match="no such tokenizer config"):
        Tokenizer.from_config(tmp_path / "missing.yaml", host=host)
    broken = tmp_path / "broken.yaml"
    broken.write_text("value: {name: fourier_value\n")
    with pytest.raises(EncoderError, match=r"broken.yaml:\d+: invalid YAML"):
        Tokenizer.from_config(broken, host=host)
    listing = tmp_path / "list.yaml"
    listing.write_text("- value\n")
    with pytest.raises(EncoderError, match="mapping of parts"):
        Tokenizer.from_config(listing, host=host)


def test_third_party_encoder_resolves_through_the_host():
    class Squares(torch.nn.Module):
        role = "value"

        def __init__(self, *, power: int = 2) -> None:
            super().__init__()
            self.power = power

        out_dim = 1

        def forward(self, value, bands=None, band_index=None):
            return value.unsqueeze(-1) ** self.power

    class Plugin:
        @hookimpl
        def register_encoders(self, register):
            register("squares", Squares)

    host = PluginHost(load_entrypoints=False, extra_plugins=(Plugin(),))
    tok = Tokenizer.from_config({"value": {"name": "squares", "power": 3}}, host=host)
    atoms = small_atoms()
    assert torch.allclose(tok.tokens(atoms)[:, 0], torch.from_numpy(atoms.value) ** 3)


# --- tokens and parts ---------------------------------------------------------------------------------
def test_tokens_layout_matches_each_encoder(tokenizer):
    atoms = small_atoms()
    tokens = tokenizer.tokens(atoms)
    assert tokens.shape == (len(atoms), tokenizer.dim) and tokens.dtype == torch.float32
    cols = {}
    start = 0
    for part, width in tokenizer.dims.items():
        cols[part] = slice(start, start + width)
        start += width
    value = torch.from_numpy(atoms.value)
    assert torch.allclose(tokens[:, cols["value"]], tokenizer.encoder("value")(value))
    x, y = torch.from_numpy(atoms.x), torch.from_numpy(atoms.y)
    assert torch.allclose(tokens[:, cols["position"]], tokenizer.encoder("position")(x, y))
    spectral = tokenizer.encoder("spectral")(atoms.bands)
    assert torch.allclose(tokens[:, cols["spectral"]], spectral[torch.from_numpy(atoms.band.astype(np.int64))])
    for part in ("time", "location"):
        row = tokenizer.encoder(part)([atoms.scene])
        assert torch.allclose(tokens[:, cols[part]], row.expand(len(atoms), -1))


def test_parts_shapes_and_unique_coordinates(tokenizer):
    sets = [small_atoms(0), small_atoms(1).take(np.arange(5)), small_atoms(2, scene=SceneMeta("tiny"))]
    batch = collate_atoms(sets)
    parts = tokenizer.parts(batch)
    S, N = batch.value.shape
    B = len(batch.bands)
    d = tokenizer.dims
    assert parts.value.shape == (S, N, d["value"])
    assert parts.table("spectral").shape == (B, d["spectral"])
    assert torch.equal(parts.per_row["spectral"][1], batch.band)
    ux = torch.unique(batch.x).numel()
    (pos_x, x_index), (pos_y, y_index) = parts.per_row["position_x"], parts.per_row["position_y"]
    assert pos_x.shape == (ux, d["position"] // 2)
    assert pos_y.shape[1] == d["position"] // 2
    assert x_index.shape == (S, N) and y_index.shape == (S, N)
    assert torch.allclose(pos_x[x_index][..., -1] * 100.0, batch.x)  # raw x / G
    time, location = parts.per_sample["time"], parts.per_sample["location"]
    assert time.shape == (S, d["time"]) and location.shape == (S, d["location"])
    assert time[2, -1] == 1 and location[2, -1] == 1  # scene 2 has no metadata
    assert parts.dims == tokenizer.factor_dims and parts.dim == tokenizer.dim
    assert list(parts.dims) == ["value", "position_x", "position_y", "spectral", "time", "location"]


def test_assembled_parts_equal_tokens_for_every_real_atom(tokenizer):
    sets = [small_atoms(0), small_atoms(1).take(np.arange(7)), small_atoms(3)]
    parts = tokenizer.parts(collate_atoms(sets))
    full = parts.assemble()
    for i, atoms in enumerate(sets):
        assert torch.allclose(full[i, : len(atoms)], tokenizer.tokens(atoms), atol=1e-6)


def test_projected_parts_equal_a_linear_layer_on_tokens(tokenizer):
    sets = [small_atoms(0), small_atoms(4).take(np.arange(9))]
    batch = collate_atoms(sets)
    parts = tokenizer.parts(batch)
    linear = torch.nn.Linear(tokenizer.dim, 24)
    generator = torch.Generator().manual_seed(200)
    with torch.no_grad():
        bound = tokenizer.dim ** -0.5  # nn.Linear's own init range, drawn from a seeded generator
        linear.weight.copy_(torch.rand(24, tokenizer.dim, generator=generator) * 2 * bound - bound)
        linear.bias.copy_(torch.rand(24, generator=generator) * 2 * bound - bound)
        projected = project_parts(parts, linear.weight, linear.bias)
        assert projected.shape == (2, batch.value.shape[1], 24)
        for i, atoms in enumerate(sets):
            expected = linear(tokenizer.tokens(atoms))
            assert torch.allclose(projected[i, : len(atoms)], expected, atol=1e-4)
        assert max_factorisation_error(parts, linear.weight, linear.bias) < 1e-4
    with pytest.raises(EncoderError, match="input columns"):
        project_parts(parts, torch.zeros(3, tokenizer.dim + 1))


def test_float64_config_and_override(host):
    tok = Tokenizer.from_config({**ALL_PARTS, "dtype": "float64"}, host=host)
    atoms = small_atoms()
    t64 = tok.tokens(atoms)
    assert t64.dtype == torch.float64
    t32 = tok.tokens(atoms, dtype=torch.float32)
    assert t32.dtype == torch.float32
    assert torch.allclose(t32.double(), t64, atol=1e-4)
    parts = tok.parts(collate_atoms([atoms]))
    assert parts.value.dtype == parts.table("spectral").dtype == torch.float64
    assert parts.table("position_x").dtype == torch.float64


def test_empty_atom_set_gives_no_tokens(tokenizer):
    empty = small_atoms().take(np.zeros(len(small_atoms()), dtype=bool))
    assert tokenizer.tokens(empty).shape == (0, tokenizer.dim)
    parts = tokenizer.parts(collate_atoms([empty]))
    assert not parts.mask.any()
    assert max_factorisation_error(parts, torch.ones(2, tokenizer.dim)) == 0.0


def test_value_normalisation_uses_each_atoms_band_stats(host):
    from atomizer.sensors.spec import BandStats

    spec = small_spec()
    stats = BandStats(mean=0.5, std=0.25)
    bands = list(spec.bands)
    bands[1] = bands[1].model_copy(update={"stats": stats})
    atoms = AtomSet(value=[0.5, 0.75, 0.75], band=[0, 1, 2], x=[0, 0, 0], y=[0, 0, 0],
                    bands=tuple(bands), scene=SceneMeta("tiny"))
    tok = Tokenizer.from_config({"value": {"name": "fourier_value", "normalise": True}}, host=host)
    raw = tok.tokens(atoms)[:, -1]  # the value itself, after normalisation
    assert torch.allclose(raw, torch.tensor([0.5, 1.0, 0.75]))
    parts = tok.parts(collate_atoms([atoms]))
    assert torch.allclose(parts.value[0, :, -1], raw)


@pytest.fixture(scope="module")
def sensor_host(tmp_path_factory) -> PluginHost:
    """One host for the module (loading every sensor spec takes a second)."""
    return PluginHost(load_entrypoints=False,
                      environ={"XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("xdg"))})


def _registered_sensor_ids() -> list[str]:
    """The built-in registry's sensor ids (read at collection: listing specs does not import torch models)."""
    return PluginHost(load_entrypoints=False, environ={}).sensors.ids()


REGISTERED_SENSOR_IDS = _registered_sensor_ids()
#: (extending spec, its base): L2A/C2L2 products restate the base sensor's bands (other scale/offset).
SHARED_BAND_PAIRS = (("sentinel2a-l2a", "sentinel2a"), ("landsat8-c2l2", "landsat8"))


def _spectral_columns(tok: Tokenizer) -> slice:
    """The columns of ``tok.tokens`` that hold the spectral part (parts are concatenated in dims order)."""
    start = 0
    for part, width in tok.dims.items():
        if part == "spectral":
            return slice(start, start + width)
        start += width
    raise AssertionError("the tokenizer has no spectral part")


@pytest.fixture(scope="module")
def default_tokenizer(sensor_host) -> Tokenizer:
    return Tokenizer.from_config(None, host=sensor_host)


def test_the_registry_lists_the_builtin_sensors():
    assert {"sentinel2a", "sentinel2a-l2a", "landsat8"} <= set(REGISTERED_SENSOR_IDS)


@pytest.mark.parametrize("sensor_id", REGISTERED_SENSOR_IDS)
def test_every_registered_sensor_tokenizes(sensor_host, default_tokenizer, sensor_id):
    """Parametrised over the registry: a new sensor YAML gets this check for free."""
    spec = sensor_host.sensors.get(sensor_id)
    tok = default_tokenizer
    atoms = AtomSet.from_array(np.random.default_rng(7).random((spec.n_bands, 2, 2)), spec, gsd_m=30.0)
    tokens = tok.tokens(atoms)
    assert tokens.shape == (spec.n_bands * 4, tok.dim)
    assert torch.isfinite(tokens).all()
    spectral = tok.encoder("spectral")(spec.bands, dtype=torch.float64)
    assert torch.allclose(spectral.norm(dim=-1), torch.ones(spec.n_bands, dtype=torch.float64))


@pytest.mark.parametrize(("derived_id", "base_id"), SHARED_BAND_PAIRS)
def test_bands_shared_by_two_real_specs_encode_identically(sensor_host, default_tokenizer, derived_id, base_id):
    """Same name, centre, width and response in two specs (scale/offset/no-data differ): same spectral part."""
    derived, base = sensor_host.sensors.get(derived_id), sensor_host.sensors.get(base_id)
    shared = [
        b.name for b in derived.bands
        if b.name in base.band_names
        and (b.center_wavelength_nm, b.fwhm_nm, b.response)
        == (base.band(b.name).center_wavelength_nm, base.band(b.name).fwhm_nm, base.band(b.name).response)
    ]
    assert len(shared) >= 7, f"{derived_id} and {base_id} share only {shared}"
    cube = np.random.default_rng(11).uniform(1.0, 2.0, size=(len(shared), 3, 3))
    columns = _spectral_columns(default_tokenizer)
    derived_tokens = default_tokenizer.tokens(AtomSet.from_array(cube, derived, gsd_m=30.0, bands=shared))
    base_tokens = default_tokenizer.tokens(AtomSet.from_array(cube, base, gsd_m=30.0, bands=shared))
    assert torch.equal(derived_tokens[:, columns], base_tokens[:, columns])
    # and the whole token agrees too: nothing else of the band (scale, no-data) reaches the encoders
    assert torch.equal(derived_tokens, base_tokens)


def test_projected_parts_give_the_same_gradients_as_the_dense_layer(tokenizer):
    parts = tokenizer.parts(collate_atoms([small_atoms(0), small_atoms(5).take(np.arange(6))]))
    generator = torch.Generator().manual_seed(274)
    weight = torch.randn(5, tokenizer.dim, dtype=torch.float64, generator=generator).requires_grad_()
    bias = torch.randn(5, dtype=torch.float64, generator=generator).requires_grad_()
    mask = parts.mask[..., None].double()
    (project_parts(parts, weight, bias) * mask).square().sum().backward()
    factorised = weight.grad.clone(), bias.grad.clone()
    weight.grad = bias.grad = None
    dense = torch.nn.functional.linear(parts.assemble().double(), weight, bias)
    (dense * mask).square().sum().backward()
    assert torch.allclose(factorised[0], weight.grad, atol=1e-8)
    assert torch.allclose(factorised[1], bias.grad, atol=1e-8)


def test_value_only_tokens_project_without_tables(host):
    tok = Tokenizer.from_config({"value": {"name": "fourier_value", "num_bands": 2}}, host=host)
    parts = tok.parts(collate_atoms([small_atoms()]))
    assert not parts.per_row and not parts.per_sample and list(parts.per_atom) == ["value"]
    weight = torch.randn(3, tok.dim, generator=torch.Generator().manual_seed(292))
    assert max_factorisation_error(parts, weight, torch.ones(3)) < 1e-5
