"""Plugin system: hook specifications and the plugin host (see :mod:`atomizer.plugins.host`)."""

from atomizer.plugins.hookspecs import hookimpl, hookspec
from atomizer.plugins.host import PluginHost, builtin_host

__all__ = ["PluginHost", "builtin_host", "hookimpl", "hookspec"]
