"""Lazy package exports: ``from atomizer.encoders import Tokenizer`` imports torch only then.

The one mechanism for names a package re-exports from submodules it does not import eagerly
(``atomizer.atoms``, ``encoders``, ``models``, ``readers``, ``training``).

Importing a package's plugin module (as the plugin host does for every built-in) imports the
package first; keeping package ``__init__`` files lazy keeps ``atomizer --help`` and
``atomizer sensors list`` fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose names live in submodules.

    ``exports`` maps each public name to the submodule (relative to ``package``) defining it.
    """

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted({*exports, *vars(sys.modules[package])})

    return __getattr__, __dir__
