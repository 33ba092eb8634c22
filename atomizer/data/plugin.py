"""Default plugin: registers the built-in datasets (see :mod:`atomizer.data.registry`)."""

from __future__ import annotations

from atomizer.plugins.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    """Register ``indian-pines``, ``bigearthnet``, ``eurosat`` and ``earthlib``."""
    from atomizer.data.registry import builtin_datasets

    for name, factory in builtin_datasets().items():
        register(name, factory)
