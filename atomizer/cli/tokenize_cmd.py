"""``atomizer tokenize``: an image source (STAC item, GeoTIFF) -> atoms, summary, .atoms file."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from atomizer.cli.output import console, echo_json
from atomizer.io import check_output

#: Scenes with more pixels than this (all bands together) get a progress bar.
PROGRESS_MIN_PIXELS = 4_000_000
#: Largest token matrix ``--encode`` writes (bytes); larger scenes should be windowed.
MAX_TOKEN_BYTES = 4 * 2**30


def _check_token_size(n_atoms: int, tokenizer: Any) -> None:
    from atomizer.errors import EncoderError

    itemsize = 8 if tokenizer.config.dtype == "float64" else 4
    size = n_atoms * tokenizer.dim * itemsize
    if size > MAX_TOKEN_BYTES:
        raise EncoderError(
            f"--encode would write a {n_atoms:,} x {tokenizer.dim} token matrix "
            f"({size / 2**30:.1f} GiB, limit {MAX_TOKEN_BYTES / 2**30:.0f} GiB); tokenize a "
            "window (--window / --bbox), or drop --encode (models use the factorised parts)"
        )


def _summary_table(report: Any, output: Path | None) -> None:
    from rich.table import Table

    fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    title = (
        f"{report.source}: {report.n_atoms:,} atoms, sensor {report.sensor_id} "
        f"({report.sensor_from}), {report.nbytes / 1e6:.1f} MB"
    )
    table = Table(title=title, caption=_caption(report, output))
    for col in (
        "band",
        "asset",
        "matched by",
        "centre (nm)",
        "GSD (m)",
        "pixels read",
        "atoms",
        "no-data dropped",
        "min",
        "max",
    ):
        table.add_column(col, overflow="fold")
    for b in report.bands:
        asset = b.asset if b.asset_band == 1 else f"{b.asset}[{b.asset_band}]"
        table.add_row(
            b.band,
            asset,
            b.matched_by,
            fmt(b.center_wavelength_nm),
            f"{b.gsd_m:g}",
            f"{b.shape[0]}x{b.shape[1]}",
            f"{b.n_atoms:,}",
            f"{b.n_nodata + b.n_nonfinite:,}",
            fmt(b.min),
            fmt(b.max),
        )
    console().print(table)


def _describe_window(window: dict[str, Any]) -> str:
    """``window: 200 x 200 px at 60 m from column 600, row 600 (bounds ...)`` for the caption."""
    parts = []
    if window.get("pixel_window"):
        col, row, w, h = window["pixel_window"]
        parts.append(f"{w} x {h} px from column {col}, row {row}")
    if window.get("bbox_lonlat"):
        parts.append("lon/lat " + ", ".join(f"{v:g}" for v in window["bbox_lonlat"]))
    if window.get("grid_gsd_m"):
        parts.append(f"on the {window['grid_gsd_m']:g} m grid")
    if window.get("bounds"):
        parts.append("bounds " + ", ".join(f"{v:.0f}" for v in window["bounds"]))
    if window.get("clipped"):
        parts.append("clipped to the scene")
    return "window: " + "; ".join(parts or [str(window)])


def _caption(report: Any, output: Path | None) -> str:
    lines = [f"CRS {report.crs}; positions in metres from {report.reference_centre_m}"]
    if report.window:
        lines.append(_describe_window(report.window))
    if report.missing_bands:
        lines.append(f"spec bands not in the source: {', '.join(report.missing_bands)}")
    if report.ignored_assets:
        lines.append(
            "ignored assets: " + "; ".join(f"{k} ({v})" for k, v in report.ignored_assets.items())
        )
    lines.append(
        f"no-data dropped: {report.n_nodata:,}, non-finite dropped: {report.n_nonfinite:,}"
    )
    if output is not None:
        lines.append(f"wrote {output}")
    return "\n".join(lines)


@click.command()
@click.argument("source")
@click.option(
    "--sensor",
    "sensor_id",
    help="Sensor id, alias or spec YAML (default: detect from the STAC item).",
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Write the atoms to this .atoms file."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the output even when it is a symbolic link."
)
@click.option("--bbox", help="Only atoms inside W,S,E,N (degrees, WGS84).")
@click.option(
    "--window",
    "pixel_window",
    help="Only atoms inside the pixel window COL,ROW,WIDTH,HEIGHT (finest grid).",
)
@click.option(
    "--bands",
    help="STAC: bands to read (B04,B03,...). GeoTIFF: the spec band of each file band, in "
    "file order ('-' skips one).",
)
@click.option(
    "--mask",
    help="STAC: drop atoms the item's quality layer flags, e.g. cloud,shadow (the sensor spec "
    "names the layer and its classes or bits).",
)
@click.option(
    "--reader", "reader_name", help="Reader to use (default: chosen by the source's suffix)."
)
@click.option(
    "--encode",
    "encode_config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Tokenizer config YAML: also write token features (array 'tokens') into the .atoms file.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the read report as JSON instead of a table."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: for large scenes).",
)
@click.pass_obj
def tokenize(
    obj: Any,
    source: str,
    sensor_id: str | None,
    output: Path | None,
    overwrite: bool,
    bbox: str | None,
    pixel_window: str | None,
    bands: str | None,
    mask: str | None,
    reader_name: str | None,
    encode_config: Path | None,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Turn SOURCE (a STAC item .json, or a GeoTIFF / JP2 with --sensor) into atoms.

    Prints what was read (sensor, band -> asset matches, atoms per band, GSDs, value ranges,
    no-data dropped); -o writes a .atoms file (atomically); --encode adds token features.
    """
    from atomizer.readers import LonLatBBox, PixelWindow, ReaderWarning, ReadOptions, reader_for
    from atomizer.readers.base import parse_band_list
    from atomizer.sensors import resolve_sensor

    host = obj.host
    if encode_config is not None and output is None:
        raise click.UsageError(
            "--encode writes token features into the .atoms file: give -o OUT.atoms"
        )
    inputs = [source, sensor_id, encode_config]
    if output is not None:
        check_output(output, inputs=inputs, overwrite=overwrite)  # fail before any work
    tokenizer = None
    if encode_config is not None:
        from atomizer.encoders import Tokenizer

        tokenizer = Tokenizer.from_config(encode_config, host=host)
    from atomizer.readers.quality import parse_mask_names

    mask_names = parse_mask_names(mask)
    reader = reader_for(source, host.readers, name=reader_name)
    spec = resolve_sensor(sensor_id, host.sensors) if sensor_id else None
    options = ReadOptions(
        bbox=LonLatBBox.parse(bbox) if bbox else None,
        window=PixelWindow.parse(pixel_window) if pixel_window else None,
        bands=parse_band_list(bands),
        progress=None if progress is False else _ProgressBar(forced=progress is True),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReaderWarning)
        try:
            reading = reader.read(
                source, sensor=spec, sensors=host.sensors if spec is None else None, options=options
            )
        finally:
            if options.progress is not None:
                options.progress.stop()
            others = [w for w in caught if not issubclass(w.category, ReaderWarning)]
            for w in caught:
                if issubclass(w.category, ReaderWarning):
                    click.echo(f"warning: {w.message}", err=True)
    for w in others:  # not ours: back to the normal warnings machinery
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    atoms, report = reading
    if mask_names:
        from atomizer.readers.quality import mask_item_atoms

        atoms, n_masked = mask_item_atoms(
            source, atoms, spec or host.sensors.get(report.sensor_id), mask_names,
            report.reference_centre_m,
        )
        report.warnings.append(f"--mask {','.join(mask_names)}: {n_masked:,} atoms dropped")
        report.n_atoms, report.nbytes = len(atoms), atoms.nbytes
    if output is not None:
        from atomizer.atoms.io import save_atoms

        # the item's assets are inputs too (known only now; nothing is written yet)
        check_output(output, inputs=[*inputs, *(b.href for b in report.bands)], overwrite=overwrite)

        extra = None
        if tokenizer is not None:
            _check_token_size(len(atoms), tokenizer)
            import numpy as np

            tokens = tokenizer.tokens(atoms).detach().cpu().numpy()
            if not np.isfinite(tokens).all():
                from atomizer.errors import EncoderError

                biggest = float(np.abs(atoms.value.astype(np.float64)).max())
                raise EncoderError(
                    f"--encode: the token features are NaN or inf (largest |value| {biggest:.3g}): "
                    "the values are far outside what the encoders read; check the sensor's scale "
                    "and offset (atomizer expects physical units, reflectance 0..1)"
                )
            extra = {"tokens": tokens}
        save_atoms(atoms, output, extra=extra)
    if as_json:
        out = report.to_json()
        out["output"] = str(output) if output is not None else None
        if tokenizer is not None:
            out["token_dim"] = tokenizer.dim
        echo_json(out)
    else:
        _summary_table(report, output)


class _ProgressBar:
    """A progress callback driving a rich bar on stderr, shown for large scenes (or forced)."""

    def __init__(self, *, forced: bool) -> None:
        self.forced = forced
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int, label: str) -> None:
        if self.bar is None:
            if not (self.forced or total >= PROGRESS_MIN_PIXELS):
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("reading {task.description:>4}", markup=False),  # band names: no markup
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}% of {task.total:,.0f} pixels"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)
        self.bar.update(self.task, completed=done, description=label)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


COMMANDS = [tokenize]
