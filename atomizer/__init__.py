"""atomizer: any optical sensor's image as a set of scalars ("atoms") one encoder can read.

Importing the package does no work: registries and plugins are built on first use.
"""

from __future__ import annotations

from atomizer.errors import AtomizerError
from atomizer.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["AtomizerError", "__version__", "hookimpl"]
