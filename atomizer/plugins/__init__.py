"""Plugin system: hook specifications and the plugin host (see :mod:`atomizer.plugins.host`)."""

from atomizer.plugins.hookspecs import hookimpl, hookspec
from atomizer.plugins.host import PluginHost, default_host

__all__ = ["PluginHost", "default_host", "hookimpl", "hookspec"]
