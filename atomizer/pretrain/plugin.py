"""Default plugin: registers the built-in metadata encoders ``tabular`` and ``text``."""

from __future__ import annotations

from atomizer.plugins.hookspecs import hookimpl


@hookimpl
def register_metadata_encoders(register):
    from atomizer.pretrain.metadata_encoders import METADATA_ENCODERS

    for name, cls in METADATA_ENCODERS.items():
        register(name, cls)
