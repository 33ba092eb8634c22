"""Experiment data: the dataset named in a config, built once per split and modality.

``data.dataset`` names a dataset registered through the ``register_datasets`` hook (built in:
``indian-pines``, ``bigearthnet``, ``eurosat``, ``earthlib``; plugins add more; see
:mod:`atomizer.data.registry` for the one factory signature). ``data.options`` are passed to the
dataset (unknown ones are a :class:`~atomizer.errors.ConfigError` that lists the accepted ones).
Datasets of one experiment share what is expensive to load through one cache (the Indian Pines
scene and its simulated cubes).

Training on several modalities: with ``modality_assignment: all`` every training sample appears
once per training modality each epoch; with ``partition`` sample ``i`` is seen only through
training modality ``i mod M`` (the same number of samples per epoch as one modality).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from atomizer.data.modality import Modality
from atomizer.data.registry import as_factory
from atomizer.errors import ConfigError, ModalityError, PluginError, SimulationError
from atomizer.training.config import DataConfig, TaskConfig


class DatasetBuilder:
    """Builds the datasets of one experiment; loaded scenes are shared by splits and modalities."""

    def __init__(
        self,
        data: DataConfig,
        task: TaskConfig | None = None,
        *,
        host: Any = None,
        expect_classes: Sequence[str] | None = None,
    ) -> None:
        """``expect_classes``: the class names a model was trained on (from its checkpoint); a
        dataset whose classes differ is refused (indices would mean other classes)."""
        from atomizer.plugins.host import host_or_builtin

        host = host_or_builtin(host)  # None: atomizer's own datasets and sensors only
        self.data = data
        self.task = task
        self.host = host
        self.expect_classes = None if expect_classes is None else [str(c) for c in expect_classes]
        #: The class names of the datasets built (None until one says).
        self.class_names: list[str] | None = None
        try:
            item = host.datasets.get(data.dataset)
        except PluginError as exc:
            raise ConfigError(f"data.dataset: {exc}") from None
        self.name = data.dataset.lower()
        self.factory = as_factory(item, self.name)
        self.factory.check(self.name, data)
        self.cache: dict[str, Any] = {}
        self._built: dict[str, Any] = {}

    def build(self, split: str, modality: Modality | None) -> Any:
        """The dataset of ``split`` seen through ``modality``, built once per builder."""
        key = f"{split}:{modality.model_dump_json() if modality is not None else 'raw'}"
        if key not in self._built:
            self._built[key] = self._build(split, modality)
        return self._built[key]

    def _build(self, split: str, modality: Modality | None) -> Any:
        try:
            ds = self.factory(
                self.data, split=split, modality=modality, host=self.host, cache=self.cache
            )
        except SimulationError as exc:
            label = modality.label if modality is not None else "raw"
            raise ModalityError(f"modality {label}: {exc}") from None
        self._check_task(ds)
        return ds

    def _check_task(self, ds: Any) -> None:
        names = getattr(ds, "class_names", None)
        if names:
            names = [str(c) for c in names]
            self.class_names = self.class_names or names
            if self.expect_classes is not None and names != self.expect_classes:
                raise ConfigError(
                    f"data: {self.name} has the classes {_short(names)}, but the model was trained "
                    f"on {_short(self.expect_classes)}; its outputs would mean other classes: "
                    "evaluate on data labelled with the model's classes, in its order"
                )
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


def _short(names: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(names[:most])
    return f"[{shown}{', ...' if len(names) > most else ''}] ({len(names)})"


def modality_bands(dataset: Any) -> tuple:
    """The band table a dataset's samples carry (from its first sample when it does not say)."""
    bands = getattr(dataset, "bands", None)
    if bands and all(hasattr(b, "center_wavelength_nm") for b in bands):
        return tuple(bands)
    if len(dataset) == 0:
        return ()
    return tuple(dataset[0][0].bands)
