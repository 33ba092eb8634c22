"""``run_experiment`` builds each model once per training run and each dataset once."""

from __future__ import annotations

from collections import Counter

import torch
from test_dataset_registry import ToyDatasetPlugin, build_toy_patches
from training_toys import build_toy

from atomizer.plugins.hookspecs import hookimpl
from atomizer.plugins.host import PluginHost
from atomizer.training.config import validate_config
from atomizer.training.runner import run_experiment


class CountingPlugin:
    """A model and a dataset that count how often they are built (and where)."""

    def __init__(self) -> None:
        self.models: Counter[str] = Counter()
        self.datasets: Counter[tuple[str, str]] = Counter()

    @hookimpl
    def register_models(self, register):
        def factory(**cfg):
            self.models[torch.empty(0).device.type] += 1  # "meta" while only sizing the model
            return build_toy(cfg)

        register("counted", factory)

    @hookimpl
    def register_datasets(self, register):
        def factory(data, *, split, modality, host, cache):
            self.datasets[(split, modality.label)] += 1
            return build_toy_patches(data, split=split, modality=modality, host=host, cache=cache)

        register("counted-patches", factory)


def test_each_model_and_dataset_is_built_once(tmp_path):
    counting = CountingPlugin()
    host = PluginHost(
        load_entrypoints=False,
        environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")},
        extra_plugins=(ToyDatasetPlugin(), counting),
    )
    modality = {"sensor": "toysat", "gsd_m": 20, "size_px": 2}
    config = validate_config(
        {
            "name": "counted",
            "data": {"dataset": "counted-patches", "options": {"n": 8}},
            "task": {"type": "multiclass", "num_classes": 2},
            "train_modalities": [modality],
            "val_modalities": [{**modality, "gsd_m": 40, "size_px": 1}],
            "test_modalities": [{**modality, "gsd_m": 40, "size_px": 1}, {**modality, "size_px": 1}],
            "models": [{"name": "counted"}],
            "seeds": [0, 1],
            "epochs": 1,
            "batch_size": 4,
            "device": "cpu",
            "output_dir": str(tmp_path / "runs"),
        },
        origin="test",
    )
    results = run_experiment(config, host=host)
    assert set(results.scores["counted"]) == {m.label for m in config.test_modalities}
    assert counting.models == {"meta": 1, "cpu": 2}  # sized once, built once per seed
    assert set(counting.datasets.values()) == {1}  # train, val, and each test set once
    assert len(counting.datasets) == 4
