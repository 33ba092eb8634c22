"""Experiment data: the dataset named in a config, built for one split and one modality.

Names: ``indian-pines``, ``bigearthnet``, ``eurosat``, ``earthlib`` (see :mod:`atomizer.data`).
``data.options`` are passed to the dataset class as keyword arguments (unknown ones are a
:class:`~atomizer.errors.ConfigError` that lists the accepted ones). Datasets of one experiment
share what is expensive to load (the Indian Pines scene and its simulated cubes).

Training on several modalities: with ``modality_assignment: all`` every training sample appears
once per training modality each epoch; with ``partition`` sample ``i`` is seen only through
training modality ``i mod M`` (the same number of samples per epoch as one modality).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from atomizer.data.modality import Modality
from atomizer.errors import ConfigError, DatasetError, ModalityError, SimulationError
from atomizer.training.config import DataConfig, TaskConfig

#: Options the builder sets itself; a config may not give them.
_RESERVED = ("split", "modality", "host", "root", "scene")


def _classes() -> dict[str, Callable[..., Any]]:
    from atomizer.data import BigEarthNet, EarthlibSpectra, EuroSAT, IndianPines

    return {
        "indian-pines": IndianPines,
        "bigearthnet": BigEarthNet,
        "eurosat": EuroSAT,
        "earthlib": EarthlibSpectra,
    }


DATASET_NAMES = ("indian-pines", "bigearthnet", "eurosat", "earthlib")
#: Datasets read from a folder the user must give (the others default to a packaged copy).
_NEEDS_PATH = ("bigearthnet", "eurosat")


class DatasetBuilder:
    """Builds the datasets of one experiment; loaded scenes are shared by splits and modalities."""

    def __init__(
        self, data: DataConfig, task: TaskConfig | None = None, *, host: Any = None
    ) -> None:
        self.data = data
        self.task = task
        self.host = host
        name = data.dataset.lower()
        if name not in DATASET_NAMES:
            raise ConfigError(
                f"data.dataset: unknown dataset {data.dataset!r}; use one of "
                f"{', '.join(DATASET_NAMES)}"
            )
        self.name = name
        self.cls = _classes()[name]
        self._check_options()
        if data.path is not None and not Path(data.path).expanduser().exists():
            raise DatasetError(
                f"data.path: {data.path} does not exist; give the folder of the {name} dataset"
            )
        if name in _NEEDS_PATH and data.path is None:
            raise ConfigError(f"data.path: the {name} dataset needs the path of its folder")
        self._scene: Any = None
        self._built: dict[str, Any] = {}

    def _check_options(self) -> None:
        params = inspect.signature(self.cls.__init__).parameters
        accepted = [p for p in params if p not in ("self", *_RESERVED)]
        for key in self.data.options:
            if key in _RESERVED:
                raise ConfigError(f"data.options.{key}: set by the experiment itself; remove it")
            if key not in accepted:
                raise ConfigError(
                    f"data.options.{key}: not an option of dataset {self.name!r}; accepted: "
                    f"{', '.join(accepted)}"
                )

    def _shared_scene(self) -> Any:
        if self._scene is None:
            from atomizer.data import IndianPinesScene

            opts = self.data.options
            kwargs = {k: opts[k] for k in ("spec", "normalization") if k in opts}
            self._scene = IndianPinesScene.load(self.data.path, host=self.host, **kwargs)
        return self._scene

    def build(self, split: str, modality: Modality | None) -> Any:
        """The dataset of ``split`` seen through ``modality``, built once per builder."""
        key = f"{split}:{modality.model_dump_json() if modality is not None else 'raw'}"
        if key not in self._built:
            self._built[key] = self._build(split, modality)
        return self._built[key]

    def _build(self, split: str, modality: Modality | None) -> Any:
        opts = dict(self.data.options)
        try:
            if self.name == "indian-pines":
                opts.pop("spec", None), opts.pop("normalization", None)
                ds = self.cls(
                    split, modality=modality, scene=self._shared_scene(), host=self.host, **opts
                )
            elif self.name == "earthlib":
                ds = self.cls(split, modality=modality, root=self.data.path, host=self.host, **opts)
            else:
                ds = self.cls(
                    self.data.path, split=split, modality=modality, host=self.host, **opts
                )
        except SimulationError as exc:
            label = modality.label if modality is not None else "raw"
            raise ModalityError(f"modality {label}: {exc}") from None
        self._check_task(ds)
        return ds

    def _check_task(self, ds: Any) -> None:
        if self.task is None:
            return
        task_type = getattr(ds, "task", None)
        if task_type is not None and task_type != self.task.type:
            raise ConfigError(
                f"task.type: {self.name} is a {task_type} dataset, not {self.task.type}; "
                "fix task.type"
            )
        n = len(getattr(ds, "class_names", ()) or ())
        if n and n != self.task.num_classes:
            raise ConfigError(
                f"task.num_classes: {self.name} has {n} classes, not {self.task.num_classes}; "
                "write "
                f"num_classes: {n}"
            )

    def training_set(self, split: str, modalities: Sequence[Modality]) -> Dataset:
        """One dataset over every training modality (see ``data.modality_assignment``)."""
        parts = [self.build(split, m) for m in modalities]
        if self.data.modality_assignment == "partition" and len(parts) > 1:
            m = len(parts)
            parts = [Subset(p, list(range(i, len(p), m))) for i, p in enumerate(parts)]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def modality_bands(dataset: Any) -> tuple:
    """The band table a dataset's samples carry (from its first sample when it does not say)."""
    bands = getattr(dataset, "bands", None)
    if bands and all(hasattr(b, "center_wavelength_nm") for b in bands):
        return tuple(bands)
    if len(dataset) == 0:
        return ()
    return tuple(dataset[0][0].bands)
