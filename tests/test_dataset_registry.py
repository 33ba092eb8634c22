"""Datasets through the ``register_datasets`` hook: built-ins, lookups, options, a plugin's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from training_toys import ToyModelsPlugin

from atomizer.atoms import SceneMeta
from atomizer.cli.main import build_cli
from atomizer.data import AtomDataset, IndianPines
from atomizer.data.modality import Modality
from atomizer.data.registry import DatasetFactory, as_factory, keyword_options
from atomizer.errors import ConfigError, DatasetError
from atomizer.plugins.hookspecs import hookimpl
from atomizer.plugins.host import PluginHost
from atomizer.simulate.api import BandRasters
from atomizer.training.config import DataConfig
from atomizer.training.datasets import DatasetBuilder

BUILTIN = ("bigearthnet", "earthlib", "eurosat", "indian-pines")

TOYSAT = {
    "id": "toysat",
    "name": "Toy imager of the dataset-plugin test",
    "sources": ["made up for this test"],
    "bands": [
        {"name": "T1", "center_wavelength_nm": 560.0, "fwhm_nm": 40.0, "gsd_m": 10.0},
        {"name": "T2", "center_wavelength_nm": 840.0, "fwhm_nm": 60.0, "gsd_m": 20.0},
    ],
}


class ToyPatches(AtomDataset):
    """``n`` 4 x 4 patches of toysat (T2 on its native 20 m grid); the class is the mean level."""

    def __init__(self, *, split, modality=None, host=None, n: int = 12, num_classes: int = 2):
        super().__init__(modality=modality, host=host)
        self.split, self.n = split, n
        self.class_names = tuple(f"level{i}" for i in range(num_classes))
        self.spec = host.sensors.get("toysat")

    def __len__(self) -> int:
        return self.n

    def label(self, index: int) -> int:
        return index % self.n_classes

    def source(self, index: int) -> BandRasters:
        rng = np.random.default_rng([7, index])
        level = float(self.label(index))
        planes = [
            (level + 0.1 * rng.standard_normal((4, 4))).astype(np.float32),
            (level + 0.1 * rng.standard_normal((2, 2))).astype(np.float32),
        ]
        return BandRasters(planes, self.spec.bands, SceneMeta(sensor_id="toysat"))


def build_toy_patches(data, *, split, modality, host, cache):
    """Toy patches of the plugin test (a bare factory function, the hook's signature)."""
    del cache
    return ToyPatches(split=split, modality=modality, host=host, **data.options)


class ToyDatasetPlugin:
    """A third-party plugin: one sensor and one dataset."""

    @staticmethod
    @hookimpl
    def register_sensors(register):
        register(TOYSAT)

    @staticmethod
    @hookimpl
    def register_datasets(register):
        register("toy-patches", build_toy_patches)


def make_host(tmp_path, *plugins) -> PluginHost:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    return PluginHost(load_entrypoints=False, environ=env, extra_plugins=plugins)


def invoke(host, args):
    return CliRunner().invoke(build_cli(host), [str(a) for a in args])


def test_builtin_datasets_are_registered_with_one_signature(host):
    assert set(BUILTIN) <= set(host.datasets.names())
    for name in BUILTIN:
        factory = host.datasets.get(name)
        assert isinstance(factory, DatasetFactory) and factory.description
        assert host.datasets.provider(name) == "atomizer.data.plugin"
    host.plugins()
    registered = host.records["atomizer.data.plugin"].registered["register_datasets"]
    assert sorted(registered) == sorted(BUILTIN)


def test_unknown_dataset_names_the_closest(host):
    match = r"data\.dataset: unknown dataset 'indian-pine'.*indian-pines"
    with pytest.raises(ConfigError, match=match):
        DatasetBuilder(DataConfig(dataset="indian-pine"), host=host)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"dataset": "eurosat", "path": "."}, None),
        ({"dataset": "eurosat"}, r"data\.path: the eurosat dataset needs the path"),
        ({"dataset": "eurosat", "path": "does/not/exist"}, r"data\.path: does/not/exist does not"),
        ({"dataset": "eurosat", "path": ".", "options": {"bogus": 1}},
         r"data\.options\.bogus: not an option of dataset 'eurosat'; accepted: .*band_order"),
        ({"dataset": "earthlib", "options": {"split": "train"}},
         r"data\.options\.split: set by the experiment itself"),
    ],
)
def test_config_errors_come_before_any_data_is_read(host, data, match):
    if match is None:
        assert DatasetBuilder(DataConfig(**data), host=host).name == "eurosat"
        return
    with pytest.raises((ConfigError, DatasetError), match=match):
        DatasetBuilder(DataConfig(**data), host=host)


def test_indian_pines_options_are_its_constructor_keywords(host):
    accepted = host.datasets.get("indian-pines").options
    assert accepted == keyword_options(IndianPines)
    assert {"stride_px", "spec", "normalization"} <= set(accepted)
    assert not set(accepted) & {"split", "modality", "host", "scene", "root"}


def test_a_bare_callable_is_a_factory_and_other_things_are_refused():
    factory = as_factory(build_toy_patches, "toy")
    assert factory.options is None and factory.description.startswith("Toy patches")
    with pytest.raises(DatasetError, match="registered as int, not a dataset factory"):
        as_factory(3, "three")


def test_a_plugin_dataset_is_listed_built_and_trained_through_the_cli(tmp_path):
    host = make_host(tmp_path, ToyDatasetPlugin, ToyModelsPlugin)
    listed = json.loads(invoke(host, ["plugins", "--json"]).stdout)
    by_name = {r["name"]: r for r in listed}
    assert by_name["ToyDatasetPlugin"]["registered"]["register_datasets"] == ["toy-patches"]
    assert set(BUILTIN) <= set(by_name["atomizer.data.plugin"]["registered"]["register_datasets"])

    modality = {"sensor": "toysat", "gsd_m": 20, "size_px": 2}
    config = {
        "name": "toy-plugin",
        "data": {"dataset": "toy-patches", "options": {"n": 8}},
        "task": {"type": "multiclass", "num_classes": 2},
        "train_modalities": [modality],
        "val_modalities": [modality],
        "models": [{"name": "toy"}],
        "epochs": 1,
        "batch_size": 4,
        "device": "cpu",
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = invoke(host, ["train", path, "--output", tmp_path / "run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["finished"] and summary["epochs"] == 1

    # the dataset's own atoms: T1 at 10 m aggregated to 20 m, T2 native; 2 x 2 pixels each
    built = DatasetBuilder(DataConfig(**config["data"]), host=host)
    atoms, label = built.build("train", Modality(**modality))[1]
    assert label == 1 and atoms.n_atoms == 8 and set(atoms.band_names) == {"T1", "T2"}
    np.testing.assert_allclose(atoms.value.mean(), 1.0, atol=0.2)


def test_unknown_plugin_dataset_is_one_error_line(tmp_path):
    host = make_host(tmp_path, ToyDatasetPlugin, ToyModelsPlugin)
    config = {
        "name": "typo",
        "data": {"dataset": "toy-patch"},
        "task": {"type": "multiclass", "num_classes": 2},
        "train_modalities": [{"sensor": "toysat"}],
        "models": [{"name": "toy"}],
        "epochs": 1,
        "batch_size": 4,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = invoke(host, ["train", path, "--output", tmp_path / "run"])
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert lines[0] == (
        f"error: {path}:3: data.dataset: unknown dataset 'toy-patch'; did you mean 'toy-patches'?"
    )
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"stride_px": "abc"}, "data.options.stride_px: input should be a valid integer"),
    ({"stride_px": "1e9"}, "data.options.stride_px"),
    ({"patch_size_px": 2.5}, "fractional part"),
    ({"fractions": {"train": 2}}, "data.options.fractions"),
    ({"seed": "abc"}, "data.options.seed"),
])
def test_dataset_options_of_the_wrong_type_are_one_config_error(options, message):
    from atomizer.errors import ConfigError
    from atomizer.training.config import DataConfig
    from atomizer.training.datasets import DatasetBuilder

    with pytest.raises(ConfigError, match=message):
        DatasetBuilder(DataConfig(dataset="indian-pines", options=options))


def test_dataset_options_of_the_right_type_pass_the_check():
    from atomizer.training.config import DataConfig
    from atomizer.training.datasets import DatasetBuilder

    DatasetBuilder(DataConfig(dataset="indian-pines",
                              options={"stride_px": 2, "blocks": [4, 4], "fractions": [0.5, 0.2, 0.3]}))
