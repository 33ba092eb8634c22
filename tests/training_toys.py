"""Tiny, fast stand-ins for a model and a dataset, used by the training / CLI tests.

``ToyModel`` follows the model contract (``forward(AtomBatch) -> (S, C)`` logits, ``encode`` ->
``(S, D)``, a ``config`` with ``model_dump``); ``ToyAtomDataset`` yields ``(AtomSet, label)`` pairs
whose label is learnable from the atoms (the class is the bucket of the sample's mean value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from atomizer.atoms import AtomBatch, AtomSet, SceneMeta
from atomizer.plugins.hookspecs import hookimpl
from atomizer.sensors.spec import Band


class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_classes: int = 3
    task: str = "multiclass"
    width: int = 16
    drop_p: float = 0.0


class ToyModel(nn.Module):
    """Per-atom MLP over (value, wavelength, GSD), masked mean pooling, linear head."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Linear(3, config.width)
        self.head = nn.Linear(config.width, config.num_classes)

    def encode(self, batch: AtomBatch) -> torch.Tensor:
        wl = batch.center_wavelength_nm.to(batch.value.device)[batch.band] / 1000.0
        gsd = batch.gsd_m.to(batch.value.device)[batch.band] / 100.0
        h = torch.relu(self.embed(torch.stack([batch.value, wl, gsd], dim=-1)))
        mask = batch.mask.float()
        if self.training and self.config.drop_p > 0:  # consumes the global RNG, like atom dropping
            mask = mask * (torch.rand(mask.shape, device=mask.device) >= self.config.drop_p).float()
        mask = mask.unsqueeze(-1)
        return (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, batch: AtomBatch) -> torch.Tensor:
        return self.head(self.encode(batch))


def build_toy(config: dict[str, Any] | None = None) -> ToyModel:
    return ToyModel(ToyConfig(**(config or {})))


class ToyModelsPlugin:
    """A plugin registering ``toy`` (pass it to ``PluginHost(extra_plugins=...)``)."""

    __name__ = "toy-models"

    @staticmethod
    @hookimpl
    def register_models(register):
        register("toy", lambda **cfg: build_toy(cfg))


BANDS = (
    Band(name="b1", center_wavelength_nm=490.0, fwhm_nm=60.0, gsd_m=10.0),
    Band(name="b2", center_wavelength_nm=665.0, fwhm_nm=30.0, gsd_m=10.0),
    Band(name="b3", center_wavelength_nm=842.0, fwhm_nm=110.0, gsd_m=20.0),
)


class ToyAtomDataset(torch.utils.data.Dataset):
    """``n`` samples of ``size x size`` pixels on the toy bands; label = bucket of the mean."""

    def __init__(
        self,
        n: int = 24,
        *,
        num_classes: int = 3,
        size: int = 3,
        seed: int = 0,
        multilabel: bool = False,
        bands: tuple[Band, ...] = BANDS,
    ) -> None:
        self.n, self.num_classes, self.size, self.seed = n, num_classes, size, seed
        self.multilabel = multilabel
        self.bands = bands

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i])
        label = i % self.num_classes
        npx = self.size * self.size
        values = rng.normal(loc=label, scale=0.3, size=(len(self.bands), npx)).astype(np.float32)
        band = np.repeat(np.arange(len(self.bands)), npx)
        xs = np.tile(np.arange(npx) % self.size, len(self.bands)).astype(np.float32)
        ys = np.tile(np.arange(npx) // self.size, len(self.bands)).astype(np.float32)
        atoms = AtomSet(values.reshape(-1), band, xs, ys, self.bands, SceneMeta(sensor_id="toy"))
        if self.multilabel:
            target = np.zeros(self.num_classes, dtype=np.int64)
            target[label] = 1
            target[(label + 1) % self.num_classes] = int(rng.random() < 0.5)
            return atoms, target
        return atoms, label
