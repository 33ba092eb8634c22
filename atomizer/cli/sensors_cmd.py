"""``atomizer sensors``: list, show, validate and plot sensor specs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from atomizer.cli.output import console, echo_json
from atomizer.io import check_output
from atomizer.errors import AtomizerError, SpecError


@click.group()
def sensors() -> None:
    """Sensor specs: list, show, validate and plot them."""


@sensors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def list_sensors(obj, as_json: bool) -> None:
    """List every registered sensor (built-ins, ATOMIZER_SENSOR_PATH, XDG folder, plugins)."""
    registry = obj.host.sensors
    rows = [
        {
            "id": s.id,
            "name": s.name,
            "n_bands": s.n_bands,
            "aliases": list(s.aliases),
            "gsd_m": s.gsds_m,
            "modality": s.modality,
            "extends": s.extends,
            "provider": registry.provider(s.id),
            "origin": registry.origin(s.id),
        }
        for s in registry
    ]
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} sensors", show_lines=False)
    for col in ("id", "name", "bands", "GSD (m)", "aliases", "from"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r["name"],
            str(r["n_bands"]),
            ", ".join(f"{g:g}" for g in r["gsd_m"]),
            ", ".join(r["aliases"]),
            r["provider"],
        )
    console().print(table)


@sensors.command("show")
@click.argument("sensor_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
@click.pass_obj
def show_sensor(obj, sensor_id: str, as_json: bool) -> None:
    """Show one sensor's band table (SENSOR_ID is an id, an alias or a YAML file)."""
    from atomizer.sensors import resolve_sensor

    spec = resolve_sensor(sensor_id, obj.host.sensors)
    bands = [
        {
            "name": b.name,
            "common_name": b.common_name,
            "center_wavelength_nm": b.center_wavelength_nm,
            "fwhm_nm": b.fwhm_nm,
            "gsd_m": b.gsd_m,
            "scale": b.scale,
            "offset": b.offset,
            "nodata": b.nodata,
            "has_response": b.response is not None,
        }
        for b in spec.bands
    ]
    if as_json:
        echo_json(
            {
                "id": spec.id,
                "name": spec.name,
                "aliases": list(spec.aliases),
                "platforms": list(spec.platforms),
                "instrument": spec.instrument,
                "modality": spec.modality,
                "extends": spec.extends,
                "sources": list(spec.sources),
                "notes": list(spec.notes),
                "bands": bands,
            }
        )
        return
    from rich.table import Table

    title = f"{spec.id}: {spec.name} ({spec.n_bands} bands)"
    table = Table(title=title, caption="Sources: " + "; ".join(spec.sources))
    for col in ("band", "common name", "centre (nm)", "FWHM (nm)", "GSD (m)", "scale", "offset",
                "nodata", "SRF"):
        table.add_column(col, overflow="fold")
    fmt = lambda v: "" if v is None else f"{v:g}"  # noqa: E731
    for b in bands:
        table.add_row(
            b["name"], b["common_name"] or "", f"{b['center_wavelength_nm']:g}",
            f"{b['fwhm_nm']:g}", f"{b['gsd_m']:g}", fmt(b["scale"]), fmt(b["offset"]),
            fmt(b["nodata"]), "yes" if b["has_response"] else "",
        )
    console().print(table)


@sensors.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
def validate_sensors(obj, files: tuple[Path, ...]) -> None:
    """Validate sensor spec YAML FILES; one line per problem on stderr, exit 1 if any."""
    from atomizer.sensors.loader import read_raw_spec
    from atomizer.sensors.resolve import validate_against

    registry = None
    failed = 0
    for path in files:
        try:
            if registry is None:
                registry = obj.host.sensors
            spec = validate_against(read_raw_spec(path), registry)
        except SpecError as exc:
            failed += 1
            for line in exc.problems:
                click.echo(f"error: {line}", err=True)
            continue
        except AtomizerError as exc:
            failed += 1
            for line in str(exc).splitlines():
                click.echo(f"error: {line if line.startswith(str(path)) else f'{path}: {line}'}",
                           err=True)
            continue
        click.echo(f"{path}: ok ({spec.id}, {spec.n_bands} bands)")
    if failed:
        click.echo(f"error: {failed} of {len(files)} file(s) invalid", err=True)
        sys.exit(1)


@sensors.command("plot")
@click.argument("sensor_ids", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Image file to write (.png, .svg, .pdf).")
@click.option(
    "--overwrite", is_flag=True, help="Replace the output even when it is a symbolic link."
)
@click.option("--log-x/--linear-x", default=True, show_default=True,
              help="Logarithmic wavelength axis (thermal bands stay readable).")
@click.pass_obj
def plot_sensors(obj, sensor_ids: tuple[str, ...], output: Path, overwrite: bool,
                 log_x: bool) -> None:
    """Plot the bands of SENSOR_IDS across the spectrum: one row per sensor, GSD shown."""
    from atomizer.sensors import resolve_sensor
    from atomizer.sensors.plot import plot_sensor_bands

    specs = [resolve_sensor(s, obj.host.sensors) for s in sensor_ids]
    check_output(output, inputs=sensor_ids, overwrite=overwrite)
    plot_sensor_bands(specs, output, log_x=log_x)
    click.echo(f"wrote {output}")


COMMANDS = [sensors]
