"""Default plugin: registers the ``atoms`` dataset (a folder built by ``atomizer dataset build``)."""

from __future__ import annotations

from atomizer.plugins.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    """Register ``atoms``: ``data: {dataset: atoms, path: DIR}`` in an experiment config."""
    from atomizer.data.registry import dataset_class
    from atomizer.datasets.dataset import AtomsDataset

    register("atoms", dataset_class(
        AtomsDataset, path="required",
        description="a dataset folder built by atomizer dataset build (your own items and labels)",
    ))
