"""``atomizer predict | embed | export``: use a trained model on whole scenes, and package it.

MODEL is a checkpoint (.json / .safetensors), a run folder, a model package folder written by
``atomizer export``, or (``embed`` only) a pretraining checkpoint. Heavy imports happen inside the
commands.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from atomizer.cli.output import echo_json
from atomizer.io import check_output


def _progress() -> bool:
    return sys.stderr.isatty()


#: A length in metres: positive and finite (10,000 km at most).
METRES = click.FloatRange(0, 1e7, min_open=True)


def _refuse_existing(path: Path, overwrite: bool, inputs: list) -> None:
    """An existing output is refused unless ``--overwrite``; then the one output guard."""
    from atomizer.errors import OutputError

    if os.path.lexists(path) and not overwrite:
        raise OutputError(f"{path} exists; choose another output or pass --overwrite to replace it")
    check_output(path, inputs=inputs, overwrite=overwrite)


def _scene_options(f):
    for option in reversed(
        [
            click.option("--sensor", help="Sensor id or spec YAML (needed for a GeoTIFF / JP2)."),
            click.option("--reader", help="Reader to use (default: chosen by the file suffix)."),
            click.option(
                "--mask",
                "mask_names",
                help="Drop atoms the sensor's quality layer flags, e.g. cloud,shadow (STAC items).",
            ),
            click.option(
                "--chip-m",
                type=METRES,
                default=1920.0,
                show_default=True,
                help="Window side in metres.",
            ),
            click.option("--stride-m", type=METRES, help="Window step in metres."),
            click.option(
                "--batch-size",
                type=click.IntRange(min=1),
                default=16,
                show_default=True,
                help="Windows per forward pass.",
            ),
            click.option(
                "--device",
                type=click.Choice(["auto", "cpu", "cuda"]),
                default="auto",
                show_default=True,
            ),
            click.option("--overwrite", is_flag=True, help="Replace an existing output."),
            click.option("--json", "as_json", is_flag=True, help="Print a JSON summary."),
        ]
    ):
        f = option(f)
    return f


def _model_folder(model_path: str) -> Path | None:
    """The folder of a model (run or package folder, or the one holding a checkpoint record and
    its weights): an output never overwrites one of its files."""
    path = Path(model_path)
    if path.is_dir():
        return path
    return path.parent if path.is_file() else None


def _start(obj, model_path: str, output: str, sources: list, scene: dict, *, need_head: bool):
    """The output (refused when it exists without --overwrite), the model on its device, and the
    keyword arguments every scene command passes on from the shared scene options."""
    from atomizer.inference.loading import load_inference_model
    from atomizer.readers.quality import parse_mask_names
    from atomizer.training.evaluate import resolve_device

    out = Path(output)
    _refuse_existing(out, scene["overwrite"],
                     [model_path, _model_folder(model_path), *sources, scene["sensor"]])
    target = resolve_device(scene["device"])
    model = load_inference_model(model_path, host=obj.host, device=target, need_head=need_head)
    common = {
        "sensor": scene["sensor"],
        "host": obj.host,
        "chip_m": scene["chip_m"],
        "batch_size": scene["batch_size"],
        "device": target,
        "reader": scene["reader"],
        "mask": parse_mask_names(scene["mask_names"]),
    }
    return out, model, common


@click.command("predict")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Map (.tif).")
@click.option("--gsd", type=METRES, help="Pixel size of the map in metres (default: finest band).")
@click.option(
    "--argmax", is_flag=True, help="Write class index + confidence instead of probabilities."
)
@_scene_options
@click.pass_obj
def predict_command(obj, model_path, source, output, gsd, argmax, **scene) -> None:
    """Predict a class map of a whole scene SOURCE (STAC item, or GeoTIFF / JP2 with --sensor).

    SOURCE may also be a dataset folder (`atomizer dataset build`): then every chip is classified
    and OUTPUT is a GeoParquet table (.parquet) with one row per chip: footprint, ids, label, split,
    predicted class, confidence and one p_CLASS probability column per class.

    Windows of --chip-m metres every --stride-m metres (default: half a window) are classified and
    blended where they overlap; the map is a Cloud-Optimized GeoTIFF on the scene's grid with one
    probability band per class (or --argmax: class + confidence), -1 where there were no atoms.
    """
    from atomizer.inference.predict import predict_scene
    from atomizer.inference.tables import is_dataset_folder
    from atomizer.training.evaluate import progress_bar

    if is_dataset_folder(source):
        given = {"--gsd": gsd, "--argmax": argmax or None, "--sensor": scene["sensor"],
                 "--mask": scene["mask_names"], "--stride-m": scene["stride_m"],
                 "--reader": scene["reader"]}
        _predict_dataset(obj, model_path, source, output, scene,
                         [name for name, value in given.items() if value is not None])
        return
    out, model, common = _start(obj, model_path, output, [source], scene, need_head=True)
    with progress_bar(_progress()) as bar:
        job = bar.add_task("predict", total=None)
        report = predict_scene(
            model,
            source,
            out,
            stride_m=scene["chip_m"] / 2 if scene["stride_m"] is None else scene["stride_m"],
            gsd_m=gsd,
            argmax=argmax,
            progress=lambda done, total: bar.update(job, completed=done, total=total),
            **common,
        )
    if scene["as_json"]:
        echo_json(report.to_json())
        return
    click.echo(
        f"wrote {out}: {report.width} x {report.height} px at {report.gsd_m:g} m "
        f"({report.crs}), {len(report.bands)} band(s), {report.n_windows} windows "
        f"({report.n_empty_windows} without atoms), {report.area_km2:.1f} km² in "
        f"{report.seconds:.1f} s"
    )


def _predict_dataset(
    obj, model_path: str, source: str, output: str, scene: dict, scene_only: list[str]
) -> None:
    """``predict MODEL DATASET_DIR -o TABLE.parquet``: one row per chip of the folder.
    ``scene_only``: the options given that apply to scenes only (refused: they would be ignored)."""
    from atomizer.errors import ConfigError, OutputError
    from atomizer.inference.predict import predict_dataset
    from atomizer.training.evaluate import progress_bar

    if scene_only:
        raise ConfigError(
            f"{source} is a dataset folder, whose chips are already cut and masked: "
            f"{', '.join(scene_only)} apply to scenes only; leave them out"
        )
    if Path(output).suffix.lower() != ".parquet":
        raise OutputError(
            f"{source} is a dataset folder: predict writes one row per chip, not a map; "
            f"name a GeoParquet table, e.g. -o {Path(output).stem}.parquet"
        )
    out, model, common = _start(obj, model_path, output, [source], scene, need_head=True)
    with progress_bar(_progress()) as bar:
        job = bar.add_task("predict", total=None)
        summary = predict_dataset(model, source, out, batch_size=common["batch_size"],
                                  device=common["device"], progress=lambda n: bar.advance(job, n))
    if scene["as_json"]:
        echo_json(summary)
        return
    accuracy = summary["accuracy"]
    scored = "" if accuracy is None else f" (accuracy on its labels: {100 * accuracy:.1f}%)"
    click.echo(f"wrote {out}: {summary['chips']} chips x {len(summary['classes'])} classes{scored}")


@click.command("embed")
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="GeoParquet table (.parquet).",
)
@_scene_options
@click.pass_obj
def embed_command(obj, model_path, sources, output, **scene) -> None:
    """Embed every chip of a grid over SOURCES (--chip-m windows every --stride-m; no overlap).

    A SOURCE may also be a dataset folder (`atomizer dataset build`): every chip of it is embedded.
    Writes one GeoParquet row per chip: lon/lat footprint, chip_id, item_id, sensor, datetime,
    n_atoms and the encoder's pooled embedding. MODEL may also be a pretraining checkpoint. Nearest
    chips: ``atomizer.inference.nearest_chips(geopandas.read_parquet(PATH), CHIP_ID, k=10)``.
    """
    from atomizer.inference.embed import embed_sources
    from atomizer.training.evaluate import progress_bar

    out, model, common = _start(obj, model_path, output, list(sources), scene, need_head=False)
    with progress_bar(_progress()) as bar:
        job = bar.add_task("embed", total=None)
        summary = embed_sources(
            model,
            list(sources),
            out,
            stride_m=scene["stride_m"],
            progress=lambda n: bar.advance(job, n),
            **common,
        )
    if scene["as_json"]:
        echo_json(summary)
        return
    click.echo(
        f"wrote {out}: {summary['chips']} chips x {summary['dim']} features from "
        f"{summary['sources']} source(s)"
    )


@click.command("export")
@click.argument("checkpoint", type=click.Path())
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Package folder to create.",
)
@click.option("--classes", help="Class names, comma-separated (default: the dataset's).")
@click.option("--overwrite", is_flag=True, help="Replace an existing package folder.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def export_command(obj, checkpoint, output, classes, overwrite, as_json) -> None:
    """Package a trained CHECKPOINT: safetensors weights, config, STAC MLM item, model card."""
    from atomizer.inference.package import export_package

    names = [c.strip() for c in classes.split(",")] if classes else None
    out = export_package(checkpoint, output, host=obj.host, class_names=names, overwrite=overwrite)
    files = sorted(p.name for p in out.iterdir())
    if as_json:
        echo_json({"output": str(out), "files": files})
        return
    click.echo(f"wrote {out}: {', '.join(files)}")


COMMANDS = [predict_command, embed_command, export_command]
