"""GDAL errors raised on GDAL's own worker threads, made visible to the reader.

rasterio turns a GDAL error into an exception only when it happens on the thread that called
GDAL. Drivers that decode with a pool of their own (JPEG 2000 through OpenJPEG, and GeoTIFF, when
``GDAL_NUM_THREADS`` is above one) report a failed decode on a worker thread: GDAL's default
handler prints it to stderr, and the read returns zeros as if nothing had happened. A truncated
file would become a scene of zeros.

:func:`watcher` installs one process-wide GDAL error handler (``CPLSetErrorHandler``, through
ctypes on the GDAL library rasterio loaded) that counts failures from every thread. A reader takes
:meth:`Watcher.count` before a read and compares after: a change means some decode failed during
the read, and the reader verifies the read on one thread, where GDAL's error reaches rasterio as
an exception naming the file. Where the GDAL library cannot be found (a platform whose loader
does not expose it), :func:`watcher` returns ``None`` and readers decode on one thread, which is
slower but just as strict.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: GDAL's error classes (``CPLErr``): failures are counted, warnings only logged.
CE_WARNING, CE_FAILURE, CE_FATAL = 2, 3, 4

_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p)


class Watcher:
    """Counts GDAL failures on every thread since it was installed."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._library = library
        self._handler = _HANDLER_TYPE(self._on_error)  # kept alive as long as the watcher
        library.CPLSetErrorHandler.restype = ctypes.c_void_p
        library.CPLSetErrorHandler.argtypes = [ctypes.c_void_p]
        self._previous = library.CPLSetErrorHandler(ctypes.cast(self._handler, ctypes.c_void_p))
        atexit.register(self.uninstall)

    def _on_error(self, err_class: int, err_no: int, message: bytes | None) -> None:
        text = (message or b"").decode("utf-8", "replace").strip()
        if err_class >= CE_FAILURE:
            with self._lock:
                self._count += 1
        log.debug("GDAL (class %d, number %d): %s", err_class, err_no, text)

    def count(self) -> int:
        """Failures seen so far, on any thread."""
        with self._lock:
            return self._count

    def uninstall(self) -> None:
        """Give GDAL its previous handler back (at exit, before the callback's memory goes)."""
        if self._handler is not None:
            self._library.CPLSetErrorHandler(self._previous)
            self._handler = None


def _gdal_library() -> ctypes.CDLL | None:
    """The GDAL library rasterio loaded, found among this process's mapped files."""
    import rasterio._base  # noqa: F401  (maps GDAL into the process)

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    paths = {line.split()[-1] for line in maps.splitlines() if "libgdal" in line.rsplit("/", 1)[-1]}
    candidates: list[str | None] = sorted(paths) or [None]  # None: symbols loaded globally
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
            library.CPLSetErrorHandler  # noqa: B018  (raises AttributeError when absent)
        except (OSError, AttributeError):
            continue
        return library
    return None


@functools.cache
def watcher() -> Watcher | None:
    """The process's GDAL failure watcher, installed on first use; ``None`` where unavailable."""
    library = _gdal_library()
    if library is None:
        log.debug("GDAL library not found: readers decode on one thread")
        return None
    return Watcher(library)
