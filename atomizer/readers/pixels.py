"""Pixels to atom arrays, with one output allocation and no full-scene temporaries.

:func:`read_atoms` reads each band (on background threads, each file closed after its last band
so GDAL's block cache never holds the whole scene) and reduces it at once to its valid values
(raw integers when a DN -> value lookup table applies, else float32) plus a bit-packed validity
mask and per-row counts; the calling thread copies each band into the four atom arrays as soon as
it is read: values through the lookup table (in chunks), x from a per-column table, y from a
per-row table repeated by the row counts.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomizer.atoms.atomset import BAND_DTYPE, COORD_DTYPE, VALUE_DTYPE
from atomizer.errors import ReaderError
from atomizer.readers.base import BandReading, ProgressCallback
from atomizer.readers.gdal_errors import watcher
from atomizer.readers.plan import BandPlan
from atomizer.readers.remote import gdal_env, is_remote

#: Elements converted at a time (bounds the float64 and index temporaries).
CHUNK_ELEMENTS = 1 << 20


@dataclass
class Piece:
    """One band's valid pixels, compact: raw DNs (with ``lut``) or float32 values."""

    values: np.ndarray
    lut: np.ndarray | None  # float32 value of every possible DN (indexed by the unsigned view)
    packed_mask: np.ndarray | None  # np.packbits of the (rows, cols) validity mask; None: all valid
    row_counts: np.ndarray | None  # valid pixels per row (None: all valid)
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
    valid, n_nodata, n_nonfinite = _valid(plane, nodata)
    return (np.ones(plane.shape, dtype=bool) if valid is None else valid), n_nodata, n_nonfinite


def _valid(plane: np.ndarray, nodata: Sequence[float]) -> tuple[np.ndarray | None, int, int]:
    """:func:`valid_mask`, with None for "every pixel" (no mask made)."""
    n_nonfinite = 0
    valid = None
    kind = plane.dtype.kind
    if kind in "fc":
        valid = np.isfinite(plane)
        n_nonfinite = int(valid.size - np.count_nonzero(valid))
    for nd in nodata:
        if not math.isfinite(nd):
            continue  # NaN / inf no-data is already dropped as non-finite
        if kind in "ui":
            lo, hi = _int_range(plane.dtype)
            if nd != int(nd) or not lo <= nd <= hi:
                continue  # cannot occur in this data type
            nd_value = plane.dtype.type(int(nd))
        else:
            nd_value = plane.dtype.type(nd)
        if valid is None:
            valid = plane != nd_value
        else:
            valid &= plane != nd_value
    if valid is None:
        return None, 0, 0
    n_dropped = valid.size - int(np.count_nonzero(valid))
    return valid, n_dropped - n_nonfinite, n_nonfinite


_INT_RANGES: dict[np.dtype, tuple[int, int]] = {}


def _int_range(dtype: np.dtype) -> tuple[int, int]:
    got = _INT_RANGES.get(dtype)
    if got is None:
        info = np.iinfo(dtype)
        got = _INT_RANGES[dtype] = (int(info.min), int(info.max))
    return got


def _unsigned(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"uint{dtype.itemsize * 8}")


def lookup_table(dtype: np.dtype, scale: float, offset: float) -> np.ndarray:
    """float32 ``DN * scale + offset`` (computed in float64) for every DN of a <= 16-bit type."""
    unsigned = _unsigned(dtype)
    codes = np.arange(np.iinfo(unsigned).max + 1, dtype=np.int64).astype(unsigned)
    with np.errstate(over="ignore", invalid="ignore"):  # past float32's range: inf, dropped later
        return (codes.view(dtype).astype(np.float64) * scale + offset).astype(VALUE_DTYPE)


def physical(raw: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """float32 ``raw * scale + offset`` computed in float64, in chunks; values past float32's range
    become inf (callers drop them as non-finite)."""
    with np.errstate(over="ignore", invalid="ignore"):  # past float32's range: inf, dropped by callers
        if raw.size <= CHUNK_ELEMENTS:
            return (raw.astype(np.float64) * scale + offset).astype(VALUE_DTYPE)
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
    """Reading threads: one where GDAL decodes each file on every core (its copies into the output
    overlap the next file's decoding, and one file's decoding buffers are in memory at a time);
    else, decoding on one thread per file, as many files at once as there are CPUs."""
    if watcher() is not None:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(n_files, cpus or 1))


def _decode_threads() -> int | str:
    """GDAL decoding threads per file: GDAL's pool when its failures can be seen, else one."""
    return "ALL_CPUS" if watcher() is not None else 1


def read_atoms(
    plans: Sequence[BandPlan],
    progress: ProgressCallback | None,
    cx: float,
    cy: float,
    open_files: dict[str, Any] | None = None,
    *,
    report: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], list[BandReading]]:
    """Read every band (in its window) into the atom arrays ``value, band, x, y``.

    Files are read on background threads (rasterio releases the GIL): one thread where
    :func:`~atomizer.readers.gdal_errors.watcher` can see failures on GDAL's own decoding threads
    (GDAL decodes each file on every core), else one file per CPU, each decoded on one thread (see
    :func:`_decode_workers`). The calling thread copies each band into the output as soon as it and
    the bands before it are read, so at most a few bands' compact pieces are held at once; the
    output arrays are views of buffers sized for every pixel of every window, whose pages past
    the valid atoms are never touched (never resident).

    ``open_files`` (href -> open rasterio dataset): datasets to reuse and to leave open, for a
    caller that reads many small windows of one scene (the caller closes them). Those reads stay
    on the calling thread, inside the caller's :func:`single_thread_decoding` (entered once for
    all its windows). ``report=False``: no :class:`BandReading` is made (an empty list comes back).
    """
    readings = [_reading(p) for p in plans] if report else None
    sizes = [(p.window[1] - p.window[0]) * (p.window[3] - p.window[2]) for p in plans]
    total = sum(sizes)
    out = _Output(total)
    if open_files is not None:  # reads stay on the calling thread
        for i, plan in enumerate(plans):
            _report(progress, sizes, i, plans)
            reading = None if readings is None else readings[i]
            out.add(plan, i, _read_band(plan, reading, open_files, verify=False), cx, cy)
    else:
        groups = _file_groups(plans)
        slots: list[Future[Piece | None]] = [Future() for _ in plans]
        workers = _decode_workers(len(groups))
        with ThreadPoolExecutor(workers, thread_name_prefix="atomizer-read") as pool:
            jobs = [pool.submit(_read_file, plans, g, readings, slots) for g in groups]
            try:
                for i, plan in enumerate(plans):  # in band order, on the calling thread
                    _report(progress, sizes, i, plans)
                    piece = slots[i].result()
                    slots[i] = Future()  # drop the reference: the piece is freed once copied
                    out.add(plan, i, piece, cx, cy)
            finally:
                for job in jobs:
                    job.cancel()
                for slot in slots:  # a failed read: the other files' threads stop soon
                    slot.cancel()
    if progress is not None:
        progress(total, total, "")
    return out.arrays(), readings or []


def single_thread_decoding() -> Any:
    """The rasterio environment for many small windows read on the calling thread: GDAL decodes
    on this thread only (a window of a few blocks gains nothing from GDAL's pool, and a build
    runs one such reader per core), where a failed decode raises, naming the file."""
    import rasterio

    return rasterio.Env(GDAL_NUM_THREADS=1)


def _report(
    progress: ProgressCallback | None, sizes: list[int], i: int, plans: Sequence[BandPlan]
) -> None:
    if progress is not None:
        progress(sum(sizes[:i]), sum(sizes), plans[i].source.band.name)


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
    readings: list[BandReading] | None,
    slots: list[Future[Piece | None]],
) -> None:
    """Read the bands ``indices`` (all of one file) into ``slots``, one file opened and closed
    here; a failure goes to every remaining slot of the file."""
    files: dict[str, Any] = {}
    remote = any(is_remote(plans[i].source.href) for i in indices)
    try:
        with _decode_env(remote):  # rasterio's settings are per thread
            _read_group(plans, indices, readings, slots, files)
    finally:
        _close(files)


def _read_group(
    plans: Sequence[BandPlan],
    indices: Sequence[int],
    readings: list[BandReading] | None,
    slots: list[Future[Piece | None]],
    files: dict[str, Any],
) -> None:
    """:func:`_read_file`'s loop: each band's piece (or the failure) into its slot, in order."""
    for n, i in enumerate(indices):
        if slots[i].cancelled():
            return
        try:
            piece = _read_band(plans[i], None if readings is None else readings[i], files)
        except BaseException as exc:
            for j in indices[n:]:
                if slots[j].set_running_or_notify_cancel():
                    slots[j].set_exception(exc)
            return
        if slots[i].set_running_or_notify_cancel():
            slots[i].set_result(piece)


def _close(files: dict[str, Any]) -> None:
    for ds in files.values():
        ds.close()


def _read_band(
    plan: BandPlan,
    reading: BandReading | None,
    open_files: dict[str, Any] | None,
    *,
    verify: bool = True,
) -> Piece | None:
    """One band's window as a :class:`Piece`, inside the caller's rasterio environment; the file
    is opened into ``open_files`` (when given, else opened and closed here). With ``verify`` a
    decode failure on GDAL's worker threads is verified on one thread, whose error names the
    file (``verify=False``: the caller decodes on one thread, where failures raise anyway)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    r0, r1, c0, c1 = plan.window
    if not (r1 > r0 and c1 > c0):
        return None
    href = plan.source.href
    seen = watcher() if verify else None
    ds = None if open_files is None else open_files.get(href)
    owned = ds is None and open_files is None
    try:
        before = seen.count() if seen is not None else 0
        if ds is None:
            with warnings.catch_warnings():  # planning already warned
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(href)
            if open_files is not None:
                open_files[href] = ds
        plane, mask = _read_window(ds, plan)
        if seen is not None and seen.count() != before:
            plane, mask = _read_verified(href, plan)
    except RasterioError as exc:
        src = plan.source
        raise ReaderError(
            f"asset {src.asset!r}: reading band {src.asset_band} of {href} failed "
            f"({rasterio_message(exc)}); the file is corrupt or truncated: download it again"
        ) from None
    finally:
        if owned and ds is not None:
            ds.close()
    return _reduce(plane, mask, plan, reading)


def _decode_env(remote: bool = False) -> Any:
    """The rasterio environment of a read: GDAL's decoding threads (see :func:`_decode_threads`),
    and for a remote file the project's HTTP settings (timeouts, retries: a stalled server is an
    error, not a hang). Entered once per read or per reading thread, not per band (entering one
    costs ~0.1 ms)."""
    import rasterio

    if remote:
        return gdal_env(GDAL_NUM_THREADS=_decode_threads())
    return rasterio.Env(GDAL_NUM_THREADS=_decode_threads())


def _read_verified(href: str, plan: BandPlan) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``plan``'s window again from a fresh dataset (GDAL's block cache may hold the failed
    blocks as zeros) on one decoding thread, where a failed decode raises."""
    import rasterio

    with rasterio.Env(GDAL_NUM_THREADS=1), rasterio.open(href) as ds:
        return _read_window(ds, plan)


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
    plane: np.ndarray, mask: np.ndarray | None, plan: BandPlan, reading: BandReading | None
) -> Piece:
    """One band's plane reduced to its valid values; ``reading`` (when given) gets the counts
    and the value range."""
    valid, n_nodata, n_nonfinite = _valid(plane, plan.nodata)
    if mask is not None:
        ok = mask != 0
        if valid is None:
            valid = ok
            n_nodata += valid.size - int(np.count_nonzero(valid))
        else:
            before = int(np.count_nonzero(valid))
            valid &= ok
            n_nodata += before - int(np.count_nonzero(valid))
    if valid is not None and n_nodata + n_nonfinite == 0:
        valid = None  # every pixel an atom (most chips): no mask to keep
    picked = plane.reshape(-1) if valid is None else plane[valid]
    lut = None
    dtype = plane.dtype
    # <= 16-bit integers: a DN -> value lookup table; it pays off only when the plane has more pixels than the table has entries
    if dtype.kind in "ui" and dtype.itemsize <= 2 and plane.size >= 1 << (8 * dtype.itemsize):
        lut = lookup_table(dtype, plan.scale, plan.offset)
        values = picked
        lut_bad = ~np.isfinite(lut)
        if lut_bad.any():  # DN * scale + offset past float32's range for some DNs
            bad = lut_bad[values.view(_unsigned(values.dtype))]
            if bad.any():
                values, valid = _drop(values, bad, valid, plane.shape)
                n_nonfinite += int(np.count_nonzero(bad))
        if reading is not None and values.size:
            ends = lut[values.view(_unsigned(values.dtype))[[values.argmin(), values.argmax()]]]
            reading.min, reading.max = float(ends.min()), float(ends.max())
    else:
        values = physical(picked, plan.scale, plan.offset)
        bad = ~np.isfinite(values)  # finite pixels whose value overflows float32
        if bad.any():
            values, valid = _drop(values, bad, valid, plane.shape)
            n_nonfinite += int(np.count_nonzero(bad))
        if reading is not None and values.size:
            reading.min, reading.max = float(values.min()), float(values.max())
    if reading is not None:
        reading.n_atoms = int(values.size)
        reading.n_nodata = n_nodata
        reading.n_nonfinite = n_nonfinite
    if valid is None:
        return Piece(values, lut, None, None, plane.shape)
    return Piece(
        values, lut, np.packbits(valid, axis=None), np.count_nonzero(valid, axis=1), valid.shape
    )


def _drop(values: np.ndarray, bad: np.ndarray, valid: np.ndarray | None,
          shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``values`` without the ``bad`` ones, and the validity mask without their pixels."""
    mask = np.ones(shape, dtype=bool) if valid is None else valid.copy()
    mask.flat[np.flatnonzero(mask)[bad]] = False
    return values[~bad], mask


class _Output:
    """The four atom arrays, filled band by band in order.

    Each array is a view of a buffer sized for ``capacity`` atoms (every pixel of every window);
    pages past the last valid atom are never written, so they never become resident.
    """

    def __init__(self, capacity: int) -> None:
        self.value = np.empty(capacity, dtype=VALUE_DTYPE)
        self.band = np.empty(capacity, dtype=BAND_DTYPE)
        self.x = np.empty(capacity, dtype=COORD_DTYPE)
        self.y = np.empty(capacity, dtype=COORD_DTYPE)
        self.n = 0

    def add(self, plan: BandPlan, i: int, piece: Piece | None, cx: float, cy: float) -> None:
        """Append band ``i``'s atoms: values through the lookup table (in chunks), x from a
        per-column table, y from a per-row table repeated by the per-row counts."""
        if piece is None or piece.values.size == 0:
            return
        start, stop = self.n, self.n + piece.values.size
        if piece.lut is not None:
            codes = piece.values.view(_unsigned(piece.values.dtype))
            for k in range(0, codes.size, CHUNK_ELEMENTS):
                part = codes[k : k + CHUNK_ELEMENTS]
                np.take(piece.lut, part, out=self.value[start + k : start + k + part.size])
        else:
            self.value[start:stop] = piece.values
        self.band[start:stop] = i
        r0, r1, c0, c1 = plan.window
        g = plan.grid
        xs = (g.col_centres[c0:c1] - cx).astype(COORD_DTYPE)  # the window lies inside the grid
        ys = (g.row_centres[r0:r1] - cy).astype(COORD_DTYPE)
        rows, cols = piece.shape
        if piece.packed_mask is None:  # every pixel: rows of the column table, in row order
            self.x[start:stop].reshape(rows, cols)[:] = xs
            self.y[start:stop].reshape(rows, cols)[:] = ys[:, None]
        else:
            packed, counts = piece.packed_mask, piece.row_counts
            mask = np.unpackbits(packed, count=rows * cols).view(bool).reshape(rows, cols)
            self.x[start:stop] = np.broadcast_to(xs, (rows, cols))[mask]  # no full-size copy
            self.y[start:stop] = np.repeat(ys, counts)
        self.n = stop

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = self.n
        return self.value[:n], self.band[:n], self.x[:n], self.y[:n]
