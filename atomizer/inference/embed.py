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

from atomizer.errors import AtomizerError, OutputError
from atomizer.inference.loading import InferenceModel
from atomizer.inference.windows import (
    bounded_gdal_cache,
    forward_chips,
    iter_window_rows,
    scene_geometry,
    window_grid,
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
    from shapely.geometry import box
    from shapely.ops import transform as shp_transform

    geo = scene_geometry(source, sensor=sensor, host=host, reader=reader)
    if output is not None:
        from atomizer.io import check_output

        check_output(output, inputs=geo.hrefs, overwrite=True)  # an asset is no output either
    rows = window_grid(geo, chip_m=chip_m, stride_m=stride_m or chip_m)
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
            poly = box(*w.bounds).segmentize(w.size_px * geo.gsd_m / 8)
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
                    "geometry": shp_transform(to_lonlat, poly),
                }
            )
        if progress is not None:
            progress(len(windows))
    return records


def is_dataset_folder(source: str | Path) -> bool:
    """Whether ``source`` is a dataset folder built by ``atomizer dataset build``."""
    return Path(source).is_dir() and (Path(source) / "manifest.json").is_file()


def embed_dataset(
    model: InferenceModel,
    folder: str | Path,
    *,
    batch_size: int = 16,
    device: Any = "cpu",
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One record per chip of a dataset folder (its chips as built: native grids, no modality)."""
    from pyproj import Transformer
    from shapely.geometry import box
    from shapely.ops import transform as shp_transform

    from atomizer.datasets import open_dataset

    dataset = open_dataset(folder)
    to_lonlat: dict[str, Any] = {}
    records = []
    for start in range(0, len(dataset), batch_size):
        index = list(range(start, min(start + batch_size, len(dataset))))
        chips = [dataset.source(i) for i in index]
        for i, chip, f in zip(index, chips, _encode(model, chips, batch_size, device)):
            if f is None:
                continue
            scene, row = chip.scene, dataset.row(i)
            cx, cy = scene.extra["reference_centre_m"]
            half = float(scene.extra["chip_m"]) / 2.0
            if scene.crs not in to_lonlat:
                to_lonlat[scene.crs] = Transformer.from_crs(
                    scene.crs, "EPSG:4326", always_xy=True
                ).transform
            poly = box(cx - half, cy - half, cx + half, cy + half).segmentize(half / 4)
            records.append(
                {
                    "chip_id": f"{Path(folder).name}:{i}",
                    "item_id": scene.source_id,
                    "sensor": scene.sensor_id,
                    "datetime": scene.datetime.isoformat() if scene.datetime else None,
                    "source": str(folder),
                    "crs": scene.crs,
                    "xmin": cx - half,
                    "ymin": cy - half,
                    "xmax": cx + half,
                    "ymax": cy + half,
                    "n_atoms": len(chip),
                    "label": str(row.get("label")),
                    "split": row.get("split"),
                    EMBEDDING_COLUMN: f,
                    "geometry": shp_transform(to_lonlat[scene.crs], poly),
                }
            )
        if progress is not None:
            progress(len(index))
    return records


def write_embeddings(
    records: list[dict[str, Any]], output: str | Path, *, model: InferenceModel
) -> Path:
    """``records`` as GeoParquet at ``output`` (EPSG:4326 geometry), written atomically."""
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa

    from atomizer.io import atomic_path

    if not records:
        raise AtomizerError("no chip holds any atom (all no-data?); nothing to write")
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "geometry"} for r in records])
    frame["datetime"] = pd.to_datetime(frame["datetime"], utc=True)
    frame[EMBEDDING_COLUMN] = pd.Series(
        pa.array([r[EMBEDDING_COLUMN] for r in records], type=pa.list_(pa.float32())).to_pylist()
    )
    table = gpd.GeoDataFrame(frame, geometry=[r["geometry"] for r in records], crs="EPSG:4326")
    table.attrs["atomizer_model"] = model.source
    output = Path(output)
    with atomic_path(output) as tmp:
        try:
            table.to_parquet(tmp, schema_version="1.0.0", index=False)
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot write {output}: {exc}; choose another path") from None
    return output


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
    import importlib.util

    missing = [m for m in ("geopandas", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        raise AtomizerError(
            f"embed writes GeoParquet, which needs {' and '.join(missing)}; install them with "
            "pip install 'atomizer[inference]'"
        )
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
