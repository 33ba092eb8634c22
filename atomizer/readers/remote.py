"""GDAL settings for reading imagery over HTTP(S) and object stores, applied by the project.

Remote Cloud-Optimized GeoTIFFs are read through GDAL's ``/vsicurl/`` with windowed range requests.
These options are set through :class:`rasterio.Env` around every read of a remote file, by dataset
builds, ``tokenize``, ``predict`` and ``embed`` alike (they override whatever the user's
environment says, for the duration of the read only):

- ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``: opening a file never lists its folder (one request
  instead of hundreds on a bucket);
- ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS``: only raster files are probed;
- ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY``: transient HTTP errors are retried;
- ``VSI_CACHE`` / ``VSI_CACHE_SIZE``: blocks already fetched are kept per open file;
- ``GDAL_HTTP_MERGE_CONSECUTIVE_RANGES``: adjacent block requests become one range request.
"""

from __future__ import annotations

from typing import Any

#: The options (name -> value), in one place.
CLOUD_GDAL_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2,.vrt",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "30",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(32 * 1024 * 1024),
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
}


#: Words of GDAL's messages for a request that failed on the network (a refused connection, a
#: timeout, an HTTP error status), not on the file's content, and what to check then.
NETWORK_FAILURES = ("CURL error", "HTTP response code", "HTTP error code")
NETWORK_ADVICE = "check the URL, the network and that the server answers"


def network_failure(href: str, message: str) -> bool:
    """Whether reading the remote ``href`` failed on the network, going by GDAL's ``message``."""
    return is_remote(href) and any(mark in message for mark in NETWORK_FAILURES)


def gdal_env(**extra: Any) -> Any:
    """A :class:`rasterio.Env` with :data:`CLOUD_GDAL_OPTIONS` and ``extra`` (a context manager)."""
    import rasterio

    return rasterio.Env(**CLOUD_GDAL_OPTIONS, **extra)


def is_remote(href: str) -> bool:
    """Whether ``href`` is read over a network (``http(s)://``, ``s3://``, ``/vsicurl/``...)."""
    text = str(href)
    return "://" in text or text.startswith("/vsi") and not text.startswith("/vsimem/")
