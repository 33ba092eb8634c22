"""Pixels to atom arrays, with one allocation of the output and no full-scene temporaries.

Stage 1 (:func:`read_pieces`): each band is read (files in parallel, one per thread, each closed
after its last band so GDAL's block cache never holds the whole scene), and reduced at once to its
valid values (raw integers when a DN -> value lookup table applies, else float32) plus a bit-packed
validity mask and per-row counts. Stage 2 (:func:`assemble`): the four atom arrays are allocated
once and filled band by band: values through the lookup table (in chunks), x from a per-column
table, y from a per-row table repeated by the row counts.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomizer.atoms.atomset import BAND_DTYPE, COORD_DTYPE, VALUE_DTYPE
from atomizer.errors import ReaderError
from atomizer.readers.base import BandReading, ProgressCallback
from atomizer.readers.plan import BandPlan

#: Integer raster types whose every possible value fits a lookup table (DN -> physical value).
LUT_DTYPES = ("uint8", "int8", "uint16", "int16")
#: GDAL decoding threads (1: decoding errors surface as errors, see :func:`read_pieces`).
DECODE_THREADS = 1
#: Elements converted at a time (bounds the float64 and index temporaries).
CHUNK_ELEMENTS = 1 << 20


@dataclass
class Piece:
    """One band's valid pixels, compact: raw DNs (with ``lut``) or float32 values."""

    values: np.ndarray
    lut: np.ndarray | None  # float32 value of every possible DN (indexed by the unsigned view)
    packed_mask: np.ndarray  # np.packbits of the (rows, cols) validity mask
    row_counts: np.ndarray  # valid pixels per row
    shape: tuple[int, int]


def rasterio_message(exc: BaseException) -> str:
    """An exception's text plus its cause's (rasterio puts GDAL's words in the cause)."""
    parts = [str(exc)]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in parts[0]:
        if "See previous exception" in parts[0]:  # rasterio's pointer to GDAL's words
            parts = []
        parts.append(str(cause))
    return ": ".join(parts)


def valid_mask(plane: np.ndarray, nodata: Sequence[float]) -> tuple[np.ndarray, int, int]:
    """Mask of pixels that become atoms, the number dropped as no-data and as non-finite."""
    valid = np.ones(plane.shape, dtype=bool)
    n_nonfinite = 0
    if plane.dtype.kind in "fc":
        np.isfinite(plane, out=valid)
        n_nonfinite = int(valid.size - np.count_nonzero(valid))
    before = int(np.count_nonzero(valid))
    for nd in nodata:
        if not math.isfinite(nd):
            continue  # NaN / inf no-data is already dropped as non-finite
        if plane.dtype.kind in "ui":
            info = np.iinfo(plane.dtype)
            if nd != int(nd) or not info.min <= nd <= info.max:
                continue  # cannot occur in this data type
            nd_value = plane.dtype.type(int(nd))
        else:
            nd_value = plane.dtype.type(nd)
        valid &= plane != nd_value
    return valid, before - int(np.count_nonzero(valid)), n_nonfinite


def _unsigned(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"uint{dtype.itemsize * 8}")


def lookup_table(dtype: np.dtype, scale: float, offset: float) -> np.ndarray:
    """float32 ``DN * scale + offset`` (computed in float64) for every DN of a <= 16-bit type."""
    unsigned = _unsigned(dtype)
    codes = np.arange(np.iinfo(unsigned).max + 1, dtype=np.int64).astype(unsigned)
    return (codes.view(dtype).astype(np.float64) * scale + offset).astype(VALUE_DTYPE)


def physical(raw: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """float32 ``raw * scale + offset`` computed in float64, in chunks."""
    out = np.empty(raw.shape, dtype=VALUE_DTYPE)
    for start in range(0, raw.size, CHUNK_ELEMENTS):
        part = raw[start : start + CHUNK_ELEMENTS].astype(np.float64)
        out[start : start + CHUNK_ELEMENTS] = part * scale + offset
    return out


def _file_groups(plans: Sequence[BandPlan]) -> list[list[int]]:
    """Plan indices grouped by the file they read, in order of first use."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(plans):
        groups.setdefault(p.source.href, []).append(i)
    return list(groups.values())


def _decode_workers(n_files: int) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(n_files, cpus or 1))


def read_pieces(
    plans: Sequence[BandPlan],
    progress: ProgressCallback | None,
    open_files: dict[str, Any] | None = None,
) -> tuple[list[Piece | None], list[BandReading]]:
    """Stage 1: read every band (in its window) into a compact :class:`Piece`.

    Files are decoded in parallel, one file per thread (rasterio releases the GIL), each with one
    GDAL decoding thread: GDAL reports a failed decode (a truncated JPEG 2000) as an error only
    when it happens on the thread that reads; in GDAL's own worker threads it is printed and read
    as zeros. ``open_files`` (href -> open rasterio dataset): datasets to reuse and to leave open,
    for a caller that reads many windows of one scene (the caller closes them); those reads stay
    on the calling thread, one file after the other.
    """
    readings = [_reading(p) for p in plans]
    pieces: list[Piece | None] = [None] * len(plans)
    sizes = [(p.window[1] - p.window[0]) * (p.window[3] - p.window[2]) for p in plans]
    total = sum(sizes)
    groups = _file_groups(plans)
    workers = 1 if open_files is not None else _decode_workers(len(groups))

    def report(i: int) -> None:
        if progress is not None:
            progress(sum(sizes[:i]), total, plans[i].source.band.name)

    if workers == 1:
        for group in groups:
            _read_file(plans, group, readings, pieces, open_files, report)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="atomizer-read") as pool:
            futures = {
                g[0]: pool.submit(_read_file, plans, g, readings, pieces, None, None)
                for g in groups
            }
            try:
                for group in groups:  # progress in band order, on the calling thread
                    for i in group:
                        report(i)
                    futures[group[0]].result()
            finally:
                for future in futures.values():
                    future.cancel()
    if progress is not None:
        progress(total, total, "")
    return pieces, readings


def _reading(plan: BandPlan) -> BandReading:
    src = plan.source
    r0, r1, c0, c1 = plan.window
    return BandReading(
        band=src.band.name,
        asset=src.asset,
        asset_band=src.asset_band,
        href=src.href,
        matched_by=src.matched_by,
        gsd_m=plan.grid.pixel_m,
        shape=(r1 - r0, c1 - c0),
        scale=plan.scale,
        offset=plan.offset,
        scale_from=plan.scale_from,
        nodata=list(plan.nodata),
        center_wavelength_nm=src.center_wavelength_nm,
        fwhm_nm=src.fwhm_nm,
    )


def _read_file(
    plans: Sequence[BandPlan],
    indices: Sequence[int],
    readings: list[BandReading],
    pieces: list[Piece | None],
    open_files: dict[str, Any] | None,
    before_band: Callable[[int], None] | None,
) -> None:
    """Read the bands ``indices`` (all of one file) into ``pieces``; the file is opened here and
    closed after its last band unless it comes from (and stays in) ``open_files``."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    href = plans[indices[0]].source.href
    with rasterio.Env(GDAL_NUM_THREADS=DECODE_THREADS):  # rasterio's settings are per thread
        ds = None if open_files is None else open_files.get(href)
        owned = ds is None
        try:
            for i in indices:
                if before_band is not None:
                    before_band(i)
                plan = plans[i]
                r0, r1, c0, c1 = plan.window
                if not (r1 > r0 and c1 > c0):
                    continue
                try:
                    if ds is None:
                        with warnings.catch_warnings():  # planning already warned
                            warnings.simplefilter("ignore", NotGeoreferencedWarning)
                            ds = rasterio.open(href)
                        if open_files is not None:
                            open_files[href] = ds
                            owned = False
                    plane, mask = _read_window(ds, plan)
                except RasterioError as exc:
                    src = plan.source
                    raise ReaderError(
                        f"asset {src.asset!r}: reading band {src.asset_band} of {href} failed "
                        f"({rasterio_message(exc)}); the file is corrupt or truncated: download "
                        "it again"
                    ) from None
                pieces[i] = _reduce(plane, mask, plan, readings[i])
        finally:
            if owned and ds is not None:
                ds.close()


def _read_window(ds: Any, plan: BandPlan) -> tuple[np.ndarray, np.ndarray | None]:
    from rasterio.windows import Window

    r0, r1, c0, c1 = plan.window
    band = plan.source.asset_band
    full = (r0, r1, c0, c1) == (0, ds.height, 0, ds.width)
    win = None if full else Window(c0, r0, c1 - c0, r1 - r0)
    plane = ds.read(band, window=win)
    mask = ds.read_masks(band, window=win) if plan.use_mask else None
    return plane, mask


def _reduce(
    plane: np.ndarray, mask: np.ndarray | None, plan: BandPlan, reading: BandReading
) -> Piece:
    valid, n_nodata, n_nonfinite = valid_mask(plane, plan.nodata)
    if mask is not None:
        before = int(np.count_nonzero(valid))
        valid &= mask != 0
        n_nodata += before - int(np.count_nonzero(valid))
    lut = None
    # a lookup table pays off only when the plane has more pixels than the table has entries
    if plane.dtype.name in LUT_DTYPES and plane.size >= 1 << (8 * plane.dtype.itemsize):
        lut = lookup_table(plane.dtype, plan.scale, plan.offset)
        values = plane[valid]
        if values.size:
            ends = lut[values.view(_unsigned(values.dtype))[[values.argmin(), values.argmax()]]]
            reading.min, reading.max = float(ends.min()), float(ends.max())
    else:
        values = physical(plane[valid], plan.scale, plan.offset)
        if values.size:
            reading.min, reading.max = float(values.min()), float(values.max())
    reading.n_atoms = int(values.size)
    reading.n_nodata = n_nodata
    reading.n_nonfinite = n_nonfinite
    return Piece(
        values, lut, np.packbits(valid, axis=None), np.count_nonzero(valid, axis=1), valid.shape
    )


def assemble(
    plans: Sequence[BandPlan], pieces: list[Piece | None], cx: float, cy: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stage 2: allocate ``value, band, x, y`` once, fill them band by band (frees the pieces)."""
    n = sum(p.values.size for p in pieces if p is not None)
    value = np.empty(n, dtype=VALUE_DTYPE)
    band = np.empty(n, dtype=BAND_DTYPE)
    x = np.empty(n, dtype=COORD_DTYPE)
    y = np.empty(n, dtype=COORD_DTYPE)
    start = 0
    for i, plan in enumerate(plans):
        piece = pieces[i]
        pieces[i] = None  # free each band's piece as soon as it is copied
        if piece is None or piece.values.size == 0:
            continue
        stop = start + piece.values.size
        if piece.lut is not None:
            codes = piece.values.view(_unsigned(piece.values.dtype))
            for k in range(0, codes.size, CHUNK_ELEMENTS):
                part = codes[k : k + CHUNK_ELEMENTS]
                np.take(piece.lut, part, out=value[start + k : start + k + part.size])
        else:
            value[start:stop] = piece.values
        band[start:stop] = i
        r0, r1, c0, c1 = plan.window
        g = plan.grid
        xs = ((g.x0 + (np.arange(c0, c1, dtype=np.float64) + 0.5) * g.dx) - cx).astype(COORD_DTYPE)
        ys = ((g.y0 + (np.arange(r0, r1, dtype=np.float64) + 0.5) * g.dy) - cy).astype(COORD_DTYPE)
        rows, cols = piece.shape
        mask = np.unpackbits(piece.packed_mask, count=rows * cols).view(bool).reshape(rows, cols)
        x[start:stop] = np.broadcast_to(xs, (rows, cols))[mask]  # no full-size copy of the table
        y[start:stop] = np.repeat(ys, piece.row_counts)
        start = stop
    return value, band, x, y
