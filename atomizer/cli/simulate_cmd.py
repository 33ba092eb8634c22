"""``atomizer simulate``: any sensor from a hyperspectral cube or a spectral library."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from atomizer.cli.output import echo_json
from atomizer.io import check_output
from atomizer.errors import DatasetError, OutputError, SimulationError

BUILTIN_SOURCES = ("indian-pines",)
CUBE_SUFFIXES = (".atoms", ".tif", ".tiff")
LIBRARY_SUFFIXES = (".atoms", ".csv")


def _split_bands(values: tuple[str, ...]) -> list[str] | None:
    names = [b.strip() for v in values for b in v.split(",") if b.strip()]
    return names or None


def _load_source(source: str, source_sensor: str | None, host: Any) -> dict[str, Any]:
    """``{"kind": "cube"|"library", "values", "table", "scene", ...}`` for the SOURCE argument."""
    from atomizer.atoms.atomset import SceneMeta
    from atomizer.plugins.host import sensor_spec
    from atomizer.simulate.spectral import SpectralTable

    if source.lower() in BUILTIN_SOURCES:
        from atomizer.data.indian_pines import ACQUISITION_DATE, IndianPinesScene

        scene = IndianPinesScene.load(host=host)
        meta = SceneMeta(
            sensor_id=scene.spec.id, datetime=ACQUISITION_DATE, source_id="indian-pines"
        )
        return {"kind": "cube", "values": scene.cube, "table": scene.table, "scene": meta}
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(
            f"simulation source {source!r} not found: give {', '.join(BUILTIN_SOURCES)}, a .npy "
            "cube with --source-sensor, or an ENVI spectral library (.sli / .hdr)"
        )
    if path.suffix.lower() == ".npy":
        if source_sensor is None:
            raise SimulationError(f"{path}: a .npy source needs --source-sensor (its band table)")
        values = _read_npy(path)
        table = SpectralTable.from_spec(sensor_spec(source_sensor, host))
        if values.ndim not in (2, 3):
            raise SimulationError(
                f"{path}: expected a (height, width, channels) cube or an (n, channels) library, "
                f"got shape {values.shape}"
            )
        kind = "cube" if values.ndim == 3 else "library"
        if kind == "library":  # spectra are point measurements: no GSD to respect
            table = SpectralTable(
                table.center_nm, table.fwhm_nm, table.names, gsd_m=None, source_id=table.source_id
            )
        names = tuple(f"spectrum{i}" for i in range(values.shape[0])) if kind == "library" else ()
        meta = SceneMeta(sensor_id=table.source_id, source_id=path.stem)
        return {
            "kind": kind,
            "values": values.astype(np.float32),
            "table": table,
            "scene": meta,
            "names": names,
        }
    if path.suffix.lower() in (".sli", ".hdr") or Path(f"{path}.hdr").is_file():
        from atomizer.data.envi import read_envi_library

        lib = read_envi_library(path)
        meta = SceneMeta(sensor_id=path.stem, source_id=path.stem)
        return {
            "kind": "library",
            "values": lib.spectra,
            "table": lib.table(),
            "scene": meta,
            "names": lib.names,
        }
    raise DatasetError(
        f"{path}: unknown source type {path.suffix!r}; give a .npy cube or an ENVI library"
    )


#: The first bytes of every .npy file (numpy's format).
NPY_MAGIC = b"\x93NUMPY"


def _read_npy(path: Path) -> np.ndarray:
    """A numeric .npy array, its size checked against the read_pixels limit before reading."""
    from atomizer.limits import check

    try:
        with open(path, "rb") as fh:
            if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise DatasetError(
                    f"{path}: not a .npy file (it does not start with numpy's magic bytes); save "
                    "the cube with numpy.save"
                )
            fh.seek(0)
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(fh)
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise DatasetError(f"{path}: corrupt .npy header ({exc})") from None
    if dtype.kind not in "iuf" or dtype.hasobject:
        raise DatasetError(f"{path}: holds {dtype} values; a cube holds numbers (int or float)")
    check("read_pixels", int(np.prod(shape, dtype=np.float64)), subject=f"{path} (shape {shape})")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; the file is truncated or corrupt") from None


def _write_library_csv(
    path: Path, names: tuple[str, ...], values: np.ndarray, bands: tuple
) -> None:
    import csv
    import io

    from atomizer.io import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["name", *(b.name for b in bands)])
    for name, row in zip(names, values):
        writer.writerow([name, *(f"{v:.6g}" for v in row)])
    atomic_write_text(path, buf.getvalue())


@click.command("simulate")
@click.argument("source")
@click.option(
    "--sensor", "-s", "sensor", required=True, help="Target sensor: id, alias or YAML file."
)
@click.option("--bands", "-b", multiple=True, help="Target bands (comma-separated or repeated).")
@click.option(
    "--gsd", type=float, default=None, help="Output GSD in metres (default: each band's own)."
)
@click.option(
    "--source-sensor", default=None, help="Band table of a .npy source (sensor id / YAML)."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="OUT.atoms, OUT.tif (+ OUT.json STAC item) or, for a library, OUT.csv.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the output even when it is a symbolic link."
)
@click.option(
    "--strict/--skip-unsupported",
    "strict",
    default=None,
    help="Refuse / skip bands the source cannot simulate (default: skip unless --bands).",
)
@click.option(
    "--min-coverage",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Fraction of a band's response that must lie inside the source's range (0.9).",
)
@click.option("--datetime", "when", default=None, help="Acquisition time (ISO) for the STAC item.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def simulate(
    obj, source, sensor, bands, gsd, source_sensor, output, overwrite, strict, min_coverage, when,
    as_json,
) -> None:
    """Simulate SENSOR from SOURCE: 'indian-pines', a .npy cube or an ENVI spectral library.

    'indian-pines' is the 200-band AVIRIS scene (from the tensorly wheel) as bright-reference
    relative reflectance (see atomizer.data.indian_pines).

    Each target band is the source spectrum integrated under the band's response; a coarser --gsd
    is made by area-weighted aggregation. Bands outside the source's spectral range, or finer than
    its GSD, are skipped with a warning (refused with --strict or when named in --bands).
    """
    from atomizer.simulate.api import (
        SimulationWarning,
        Simulator,
        atoms_from_planes,
    )
    from atomizer.sensors import resolve_sensor
    from atomizer.simulate.spectral import MIN_RESPONSE_COVERAGE

    suffix = output.suffix.lower()
    if suffix not in (*CUBE_SUFFIXES, *LIBRARY_SUFFIXES):
        raise OutputError(f"output {output}: use a .atoms, .tif or .csv file name")
    for path in (output, output.with_suffix(".json")) if suffix in (".tif", ".tiff") else (output,):
        check_output(path, inputs=[source, sensor, source_sensor], overwrite=overwrite)
    acquired = None
    if when is not None:
        try:
            acquired = dt.datetime.fromisoformat(when)
        except ValueError:
            raise click.BadParameter(
                f"{when!r} is not an ISO date / time", param_hint="--datetime"
            ) from None
    names = _split_bands(bands)
    target = resolve_sensor(sensor, obj.host.sensors)
    src = _load_source(source, source_sensor, obj.host)
    allowed = CUBE_SUFFIXES if src["kind"] == "cube" else LIBRARY_SUFFIXES
    if suffix not in allowed:
        raise OutputError(
            f"output {output}: a {src['kind']} source is written as {' or '.join(allowed)}"
        )
    skip = (names is None) if strict is None else not strict
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SimulationWarning)
        sim = Simulator(
            src["table"],
            target,
            bands=names,
            gsd_m=gsd,
            skip_unsupported=skip,
            min_coverage=min_coverage or MIN_RESPONSE_COVERAGE,
        )
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if src["kind"] == "cube" and suffix in (".tif", ".tiff"):  # one file per GSD: each is checked
        from atomizer.simulate.export import geotiff_paths

        for path in geotiff_paths(output, sorted({b.gsd_m for b in sim.bands})):
            check_output(path, inputs=[source, sensor, source_sensor], overwrite=overwrite)
    scene = src["scene"] if acquired is None else replace(src["scene"], datetime=acquired)
    written: list[Path] = []
    if src["kind"] == "cube":
        rasters = sim.rasters(src["values"], scene=scene)
        n_atoms = int(sum(np.isfinite(p).sum() for p in rasters.planes))
        if suffix == ".atoms":
            from atomizer.atoms.io import save_atoms

            written.append(save_atoms(rasters.to_atoms(), output))
        else:
            from atomizer.simulate.export import write_geotiff

            written.extend(write_geotiff(rasters, output, target=target))
    else:
        values = sim.spectra(src["values"])
        if suffix == ".csv":
            _write_library_csv(output, src["names"], values, sim.bands)
            written.append(output)
            n_atoms = int(np.isfinite(values).sum())
        else:
            from atomizer.atoms.io import save_atoms

            # One spectrum per pixel of a single row, west to east, in library order.
            meta = sim.scene(scene)
            atoms = atoms_from_planes(
                [values[:, k][None, :] for k in range(values.shape[1])], sim.bands, meta
            )
            n_atoms = len(atoms)
            written.append(save_atoms(atoms, output))
    if n_atoms == 0:
        for path in written:
            path.unlink(missing_ok=True)
        raise SimulationError(
            f"{source}: no valid value is left to write (every simulated value is NaN, no-data or "
            "past float32's range); check the source's values and units"
        )
    summary = {
        "source": source,
        "sensor": target.id,
        "bands": sim.band_names,
        "skipped": list(sim.skipped),
        "gsd_m": sorted({b.gsd_m for b in sim.bands}),
        "n_atoms": n_atoms,
        "written": [str(p) for p in written],
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"simulated {target.id} ({len(sim.bands)} bands: {', '.join(sim.band_names)}) from "
        f"{source}: {n_atoms} atoms at {', '.join(f'{g:g}' for g in summary['gsd_m'])} m"
    )
    for p in written:
        click.echo(f"wrote {p}")


COMMANDS = [simulate]
