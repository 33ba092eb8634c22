"""``atomizer atoms``: look inside ``.atoms`` files (summary, quick-look picture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from atomizer.cli.output import console, echo_json
from atomizer.io import check_output


@click.group()
def atoms() -> None:
    """Inspect .atoms files: per-band summary, quick-look picture."""


def _load(path: Path) -> tuple[Any, dict[str, list[int]]]:
    """The atoms of ``path`` and the shapes of its extra arrays (e.g. token features, not read)."""
    from atomizer.atoms.io import ATOM_ARRAYS, open_atoms

    with open_atoms(path) as handle:  # validates the file first
        extras = {k: list(handle.shape(k)) for k in handle.keys() if k not in ATOM_ARRAYS}
        return handle.load(), extras


@atoms.command("show")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
def show_atoms(path: Path, as_json: bool) -> None:
    """Summarise the .atoms file PATH: sensor, scene, and per band its atoms and value range."""
    atomset, extras = _load(path)
    summary = atomset.summary()
    summary["path"] = str(path)
    summary["nbytes"] = atomset.nbytes
    summary["extra_arrays"] = extras
    if as_json:
        echo_json(summary)
        return
    from rich.table import Table

    scene = atomset.scene
    when = scene.datetime.isoformat() if scene.datetime else "unknown date"
    where = (
        f"lon {scene.lon:.4f}, lat {scene.lat:.4f}"
        if scene.lon is not None and scene.lat is not None
        else "no location"
    )
    table = Table(
        title=f"{path}: {len(atomset):,} atoms, sensor {scene.sensor_id}, {when}, {where}",
        caption=(
            f"CRS {scene.crs}; source {scene.source_id}"
            + (f"; extra arrays: {extras}" if extras else "")
        ),
    )
    for col in (
        "band",
        "common name",
        "centre (nm)",
        "FWHM (nm)",
        "GSD (m)",
        "atoms",
        "min",
        "max",
        "mean",
    ):
        table.add_column(col, overflow="fold")
    fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    for b in summary["bands"]:
        table.add_row(
            b["name"],
            b["common_name"] or "",
            f"{b['center_wavelength_nm']:g}",
            f"{b['fwhm_nm']:g}",
            f"{b['gsd_m']:g}",
            f"{b['n_atoms']:,}",
            fmt(b["min"]),
            fmt(b["max"]),
            fmt(b["mean"]),
        )
    console().print(table)


@atoms.command("plot")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Image file to write (.png, .svg, .pdf).",
)
@click.option(
    "--bands", help="Draw these bands as panels (comma-separated) instead of an RGB composite."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the output even when it is a symbolic link."
)
@click.option(
    "--panels", is_flag=True, help="One panel per band even when an RGB composite is possible."
)
def plot_atoms(path: Path, output: Path, overwrite: bool, bands: str | None, panels: bool) -> None:
    """Draw a quick-look of the .atoms file PATH, rebuilt from its atoms.

    An RGB composite (bands with common names red, green, blue; percentile stretch) where the bands
    allow, else one panel per band.
    """
    from atomizer.quicklook import plot_quicklook
    from atomizer.readers.base import parse_band_list

    check_output(output, inputs=[path], overwrite=overwrite)
    atomset, _ = _load(path)
    plot_quicklook(atomset, output, bands=parse_band_list(bands), rgb=False if panels else None)
    click.echo(f"wrote {output}")


COMMANDS = [atoms]
