"""``atomizer embed``: the encoder's pooled embedding of every chip of a grid over scenes, or of
every chip of a dataset folder (``atomizer dataset build``).

One row per chip: its footprint (a lon/lat polygon; the scene's own CRS and bounds are columns
too), a chip id, the item id, sensor, datetime, the number of atoms and the embedding (a list of
float32). Written as GeoParquet (geopandas + pyarrow), atomically. Works with any model that has
``encode(AtomBatch)``: a trained classifier, a package, or a pretraining checkpoint's encoder.

Nearest chips (cosine similarity), from Python::

    table = geopandas.read_parquet("embeddings.parquet")
    nearest_chips(table, "ITEM:r3:c7", k=10)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atomizer.errors import AtomizerError
from atomizer.inference.loading import InferenceModel
from atomizer.inference.windows import (
    bounded_gdal_cache,
    forward_chips,
    iter_window_rows,
    scene_geometry,
    window_grid,
)
from atomizer.inference.tables import (
    dataset_chip_records,
    is_dataset_folder,
    lonlat_footprint,
    require_table_packages,
    write_chip_table,
)

#: The embedding column of the table.
EMBEDDING_COLUMN = "embedding"


def _encode(model: InferenceModel, chips: list[Any], batch_size: int, device: Any) -> list[Any]:
    """The encoder's pooled float32 embedding of each chip (``None`` for a chip without atoms)."""
    return forward_chips(
        chips,
        lambda batch: model.model.encode(batch).float().cpu().numpy().astype(np.float32),
        batch_size=batch_size,
        device=device,
    )


def embed_scene(
    model: InferenceModel,
    source: str | Path,
    *,
    sensor: Any,
    host: Any,
    chip_m: float,
    stride_m: float | None = None,
    batch_size: int = 16,
    device: Any = "cpu",
    reader: str | None = None,
    progress: Callable[[int], None] | None = None,
    output: str | Path | None = None,
    mask: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """One record per chip of ``source`` with atoms (chips without atoms are left out)."""
    from pyproj import Transformer

    geo = scene_geometry(source, sensor=sensor, host=host, reader=reader)
    if output is not None:
        from atomizer.io import check_output

        check_output(output, inputs=geo.hrefs, overwrite=True)  # an asset is no output either
    rows = window_grid(geo, chip_m=chip_m, stride_m=chip_m if stride_m is None else stride_m)
    to_lonlat = Transformer.from_crs(geo.crs.to_wkt(), "EPSG:4326", always_xy=True).transform
    item = geo.source_id or Path(str(source)).stem
    when = geo.datetime.isoformat() if geo.datetime is not None else None
    records = []
    for windows, chips in iter_window_rows(
        source, geo, rows, sensor=sensor, host=host, reader=reader, mask=mask
    ):
        feats = _encode(model, chips, batch_size, device)
        for w, chip, f in zip(windows, chips, feats):
            if f is None:
                continue
            records.append(
                {
                    "chip_id": f"{item}:r{w.row_off}:c{w.col_off}",
                    "item_id": item,
                    "sensor": geo.sensor_id,
                    "datetime": when,
                    "source": str(source),
                    "crs": geo.crs.to_string(),
                    "xmin": w.bounds[0],
                    "ymin": w.bounds[1],
                    "xmax": w.bounds[2],
                    "ymax": w.bounds[3],
                    "n_atoms": len(chip),
                    EMBEDDING_COLUMN: f,
                    "geometry": lonlat_footprint(w.bounds, to_lonlat),
                }
            )
        if progress is not None:
            progress(len(windows))
    return records


def embed_dataset(
    model: InferenceModel,
    folder: str | Path,
    *,
    batch_size: int = 16,
    device: Any = "cpu",
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One record per chip of a dataset folder (its chips as built: native grids, no modality)."""

    def columns(chips: list[Any]) -> list[dict[str, Any] | None]:
        feats = _encode(model, chips, batch_size, device)
        return [None if f is None else {EMBEDDING_COLUMN: f} for f in feats]

    return dataset_chip_records(folder, columns, batch_size=batch_size, progress=progress)


def write_embeddings(
    records: list[dict[str, Any]], output: str | Path, *, model: InferenceModel
) -> Path:
    """``records`` as GeoParquet at ``output`` (EPSG:4326 geometry), written atomically."""
    return write_chip_table(records, output, model_source=model.source,
                            list_columns=(EMBEDDING_COLUMN,))


def nearest_chips(table: Any, chip_id: str, *, k: int = 10) -> Any:
    """The ``k`` chips of ``table`` (a GeoDataFrame read back) most similar to ``chip_id`` (cosine).

    Returns those rows with a ``similarity`` column, most similar first (the query itself excluded).
    """
    ids = list(table["chip_id"])
    if chip_id not in ids:
        raise AtomizerError(f"chip {chip_id!r} is not in the table; pick one of its chip_id values")
    emb = np.stack([np.asarray(e, np.float32) for e in table[EMBEDDING_COLUMN]])
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    q = ids.index(chip_id)
    sims = emb @ emb[q]
    order = [i for i in np.argsort(-sims, kind="stable") if i != q][:k]
    out = table.iloc[order].copy()
    out["similarity"] = sims[order]
    return out


def embed_sources(
    model: InferenceModel,
    sources: Sequence[str | Path],
    output: str | Path,
    *,
    sensor: Any,
    host: Any,
    chip_m: float,
    stride_m: float | None = None,
    batch_size: int = 16,
    device: Any = "cpu",
    reader: str | None = None,
    progress: Callable[[int], None] | None = None,
    mask: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Embed every chip of every source into one GeoParquet at ``output``; returns a summary."""
    if not hasattr(model.model, "encode"):
        raise AtomizerError(f"{model.source}: the model has no encode(); it cannot embed chips")
    require_table_packages("embed")
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    for src in sources:
        if is_dataset_folder(src):
            records += embed_dataset(
                model, src, batch_size=batch_size, device=device, progress=progress
            )
            continue
        with bounded_gdal_cache():
            records += embed_scene(
                model,
                src,
                sensor=sensor,
                host=host,
                chip_m=chip_m,
                stride_m=stride_m,
                batch_size=batch_size,
                device=device,
                reader=reader,
                progress=progress,
                output=output,
                mask=mask,
            )
    write_embeddings(records, output, model=model)
    dim = len(records[0][EMBEDDING_COLUMN])
    return {
        "output": str(output),
        "chips": len(records),
        "dim": dim,
        "sources": len(sources),
        "seconds": round(time.perf_counter() - started, 3),
    }
