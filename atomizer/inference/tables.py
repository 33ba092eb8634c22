"""Per-chip tables: every chip of a dataset folder through a model, written as GeoParquet.

``atomizer embed`` (one embedding per chip) and ``atomizer predict`` over a dataset folder (class
probabilities per chip) share the walk over the folder's chips (:func:`dataset_chip_records`) and
the writer (:func:`write_chip_table`): one row per chip with its lon/lat footprint, chip id, item
id, sensor, datetime, label and split, plus the model's columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atomizer.errors import AtomizerError, OutputError

#: ``columns(chips)``: the model's columns for each chip of a batch (``None``: a chip with no atom).
ChipColumns = Callable[[list[Any]], Sequence[dict[str, Any] | None]]


def is_dataset_folder(source: str | Path) -> bool:
    """Whether ``source`` is a dataset folder built by ``atomizer dataset build``."""
    return Path(source).is_dir() and (Path(source) / "manifest.json").is_file()


def lonlat_footprint(bounds: Sequence[float], to_lonlat: Callable[..., Any]) -> Any:
    """A chip's ``(xmin, ymin, xmax, ymax)`` square in its CRS as a lon/lat polygon (each side
    densified to 8 segments, so the reprojected outline follows the curved edges)."""
    import shapely
    from shapely.geometry import box

    poly = box(*bounds)
    poly = poly.segmentize((bounds[2] - bounds[0]) / 8)
    return shapely.transform(poly, lambda x, y: to_lonlat(x, y), interleaved=False)


def dataset_chip_records(
    folder: str | Path,
    columns: ChipColumns,
    *,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One record per chip with atoms of a dataset folder (its chips as built: native grids)."""
    from pyproj import Transformer

    from atomizer.datasets import open_dataset

    dataset = open_dataset(folder)
    to_lonlat: dict[str, Any] = {}
    records = []
    for start in range(0, len(dataset), batch_size):
        index = list(range(start, min(start + batch_size, len(dataset))))
        chips = [dataset.source(i) for i in index]
        for i, chip, extra in zip(index, chips, columns(chips)):
            if extra is None:
                continue
            scene, row = chip.scene, dataset.row(i)
            cx, cy = scene.extra["reference_centre_m"]
            half = float(scene.extra["chip_m"]) / 2.0
            if scene.crs not in to_lonlat:
                to_lonlat[scene.crs] = Transformer.from_crs(
                    scene.crs, "EPSG:4326", always_xy=True
                ).transform
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
                    **extra,
                    "geometry": lonlat_footprint((cx - half, cy - half, cx + half, cy + half),
                                                 to_lonlat[scene.crs]),
                }
            )
        if progress is not None:
            progress(len(index))
    return records


def require_table_packages(command: str) -> None:
    """One clear line when geopandas / pyarrow (the ``inference`` extra) are missing."""
    import importlib.util

    missing = [m for m in ("geopandas", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        raise AtomizerError(
            f"{command} writes GeoParquet, which needs {' and '.join(missing)}; install them with "
            "pip install 'atomizer[inference]'"
        )


def write_chip_table(
    records: list[dict[str, Any]],
    output: str | Path,
    *,
    model_source: str,
    list_columns: Sequence[str] = (),
) -> Path:
    """``records`` as GeoParquet at ``output`` (EPSG:4326 geometry), written atomically;
    ``list_columns`` hold a float32 list per row."""
    import geopandas as gpd
    import pandas as pd
    import pyarrow as pa

    from atomizer.io import atomic_path

    if not records:
        raise AtomizerError("no chip holds any atom (all no-data?); nothing to write")
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "geometry"} for r in records])
    frame["datetime"] = pd.to_datetime(frame["datetime"], utc=True)
    for name in list_columns:
        frame[name] = pd.Series(
            pa.array([r[name] for r in records], type=pa.list_(pa.float32())).to_pylist()
        )
    table = gpd.GeoDataFrame(frame, geometry=[r["geometry"] for r in records], crs="EPSG:4326")
    table.attrs["atomizer_model"] = model_source
    output = Path(output)
    with atomic_path(output) as tmp:
        try:
            table.to_parquet(tmp, schema_version="1.0.0", index=False)
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot write {output}: {exc}; choose another path") from None
    return output
