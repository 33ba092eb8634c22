"""The hooks atomizer calls. A plugin implements any of them with ``@atomizer.hookimpl``.

Every hook receives a ``register`` callback (or the CLI group) and returns nothing; built-in
sensors, readers, encoders, models and datasets are registered through these same hooks.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("atomizer")
hookimpl = pluggy.HookimplMarker("atomizer")


@hookspec
def register_sensors(register):
    """Register sensor specs.

    :param register: call ``register(item)`` with a ``SensorSpec``, a dict in the YAML schema,
        or the path of a YAML spec file or of a folder of them.
    """


@hookspec
def register_readers(register):
    """Register readers that turn an image source into an ``AtomSet``.

    :param register: call ``register(name, reader)``; ``reader`` follows ``atomizer.readers.Reader``.
    """


@hookspec
def register_encoders(register):
    """Register token encoders, chosen by name in YAML encoding configs.

    :param register: call ``register(name, factory)``; ``factory(**params)`` returns an encoder.
    """


@hookspec
def register_models(register):
    """Register model variants (the Atomizer and baselines).

    :param register: call ``register(name, factory)``; ``factory(**params)`` returns a model.
    """


@hookspec
def register_datasets(register):
    """Register datasets, chosen by name in experiment configs (``data: {dataset: NAME}``).

    :param register: call ``register(name, factory)``; ``factory`` is a
        ``atomizer.data.registry.DatasetFactory`` or any callable
        ``factory(data, *, split, modality, host, cache)`` returning a dataset of
        ``(AtomSet, label)`` pairs.
    """


@hookspec
def register_metadata_encoders(register):
    """Register metadata encoders used by SatMIP pretraining.

    :param register: call ``register(name, factory)``; ``factory(**params)`` returns a module.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``atomizer`` command line.

    :param cli: the top-level ``click.Group``; call ``cli.command()`` / ``cli.add_command``.
    """
