"""``atomizer train | evaluate | run``: experiments from a YAML config.

Heavy imports (torch, the datasets) happen inside the commands, so ``atomizer --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from atomizer.cli.output import echo_json

_SET_HELP = (
    "Override a config value, e.g. --set epochs=1 --set models.0.config.latent_dim=32 (repeatable)."
)


def _progress() -> bool:
    return sys.stderr.isatty()


def _load(obj, config: str, overrides: tuple[str, ...], output: str | None = None):
    from atomizer.training.config import load_config

    host = obj.host
    cfg = load_config(
        config,
        overrides,
        known_models=host.models.names(),
        known_datasets=host.datasets.names(),
    )
    if output is not None:
        cfg = cfg.model_copy(update={"output_dir": output})
    return cfg


def _device_option(f):
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default=None,
        help="Override the config's device.",
    )(f)


@click.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--model",
    "model_name",
    help="Model entry (label or name) to train; needed when the config lists several.",
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed (default: the config's first seed).")
@click.option(
    "--resume", is_flag=True, help="Continue the run in the output folder where it stopped."
)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Run folder (default: OUTPUT_DIR/MODEL/seed-N).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@_device_option
@click.option(
    "--stop-after-steps", type=int, hidden=True, help="Stop after N optimiser steps (testing)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def train_command(
    obj, config, model_name, seed, resume, output, overrides, device, stop_after_steps, as_json
) -> None:
    """Train one model of an experiment CONFIG with one seed (checkpoints every epoch).

    Multi-GPU / multi-node: launch with torchrun, e.g.
    ``torchrun --nproc-per-node 4 -m atomizer.cli.main train CONFIG --model atomizer``.
    """
    from atomizer.errors import ConfigError
    from atomizer.training.distributed import from_environment, shutdown
    from atomizer.training.evaluate import resolve_device
    from atomizer.training.runner import train_one

    cfg = _load(obj, config, overrides)
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    if model_name is None:
        if len(cfg.models) > 1:
            raise ConfigError(
                f"{config} lists {len(cfg.models)} models "
                f"({', '.join(m.row for m in cfg.models)}); "
                "choose one with --model, or train them all with `atomizer run`"
            )
        entry = cfg.models[0]
    else:
        entry = cfg.model(model_name)
    seed = cfg.seeds[0] if seed is None else seed
    dist = from_environment(device_type=resolve_device(cfg.device).type)
    try:
        result = train_one(
            cfg,
            entry,
            seed,
            host=obj.host,
            run_dir=output,
            resume=resume,
            dist=dist,
            progress=_progress(),
            stop_after_steps=stop_after_steps,
        )
    finally:
        shutdown(dist)
    if not dist.is_main:
        return
    last = result.history[-1] if result.history else {}
    summary = {
        "model": entry.row,
        "seed": seed,
        "run_dir": str(result.run_dir),
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "epochs": result.epochs_done,
        "global_step": result.global_step,
        "finished": result.finished,
        "last_epoch": last,
    }
    if as_json:
        echo_json(summary)
        return
    state = "finished" if result.finished else "stopped"
    click.echo(
        f"{entry.row} seed {seed}: {state} after {result.global_step} steps "
        f"({result.epochs_done} epochs)"
    )
    for key, value in last.items():
        if key.startswith("val/") or key == "train_loss":
            click.echo(f"  {key}: {value:.4g}")
    click.echo(f"checkpoint: {result.checkpoint}")


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path())
@click.option(
    "--modality",
    "sensor",
    required=True,
    help="Sensor id (registry or ATOMIZER_SENSOR_PATH) or spec YAML file.",
)
@click.option("--bands", help="Comma-separated band subset, e.g. B04,B03,B02.")
@click.option("--gsd", type=float, help="GSD in metres (default: the bands' native GSD).")
@click.option("--size", type=int, help="Patch side in pixels.")
@click.option("--name", help="Label of the modality in the output.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Experiment config to use instead of the checkpoint's own (e.g. another data path).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--split", help="Dataset split (default: the config's test split).")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Evaluate on this dataset folder (built by atomizer dataset build) instead.",
)
@_device_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def evaluate_command(
    obj, checkpoint, sensor, bands, gsd, size, name, config_path, overrides, split, data_dir,
    device, as_json,
) -> None:
    """Evaluate a trained CHECKPOINT (file, run folder or model package) on a modality.

    The sensor may be a spec written after training: a YAML file, or an id defined in a folder on
    ATOMIZER_SENSOR_PATH.
    """
    from pydantic import ValidationError

    from atomizer.config import render_errors
    from atomizer.data.modality import Modality
    from atomizer.inference.loading import record_path
    from atomizer.errors import ConfigError
    from atomizer.sensors.resolve import is_spec_path
    from atomizer.training.checkpoint import read_record
    from atomizer.training.config import apply_overrides, validate_config
    from atomizer.training.runner import evaluate_checkpoint, experiment_of

    checkpoint = record_path(checkpoint)  # a model package folder -> its checkpoint record
    band_list = tuple(b.strip() for b in bands.split(",") if b.strip()) if bands else None
    try:
        modality = Modality(sensor=sensor, bands=band_list, gsd_m=gsd, size_px=size, name=name)
        if name is None and is_spec_path(sensor):  # label a spec file by its name, not its path
            short = Modality(sensor=Path(sensor).stem, bands=band_list, gsd_m=gsd, size_px=size)
            modality = modality.model_copy(update={"name": short.label})
    except ValidationError as exc:
        lines = render_errors(exc, model=Modality, origin="--modality")
        raise ConfigError("\n".join(lines)) from None
    if data_dir is not None:
        overrides = (*overrides, "data.dataset=atoms", f"data.path={data_dir.resolve()}",
                     "data.options={}")
    cfg = None
    if config_path is not None:
        cfg = _load(obj, config_path, overrides)
    elif overrides:
        ref = read_record(checkpoint)
        raw = apply_overrides(experiment_of(ref.record, ref.path).model_dump(mode="json"), overrides)
        cfg = validate_config(raw, origin=f"{checkpoint} (experiment + --set)")
    out = evaluate_checkpoint(
        checkpoint,
        modality,
        host=obj.host,
        config=cfg,
        split=split,
        device=device,
        progress=_progress(),
    )
    if as_json:
        echo_json(out)
        return
    click.echo(
        f"{out['model']} (seed {out['seed']}) on {out['modality']} [{out['split']}], "
        f"trained on {', '.join(out['trained_on'])}"
    )
    for key, value in out["metrics"].items():
        click.echo(f"  {key}: {value:.2f}")


@click.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Output folder (default: the config's output_dir).",
)
@_device_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print the results JSON instead of the table."
)
@click.option("--workers", default=None, type=click.IntRange(min=0),
              help="Train runs (model x seed) side by side on a local Dask cluster of N processes "
              "(0: one after the other here; default: the config's workers). Same results.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Train the runs on a running dask.distributed cluster (tcp://HOST:PORT).")
@click.option(
    "--sweep",
    metavar="NAME",
    help="Test along the config's sweep NAME (GSD or size) instead of the test modalities; "
    "writes OUTPUT/sweep-NAME/results.{md,json,png}.",
)
@click.pass_obj
def run_command(obj, config, overrides, output, device, as_json, workers, scheduler, sweep) -> None:
    """Train every model with every seed, test every unseen modality, write the comparison table.

    Writes results.md, results.json and results.png into the output folder; finished runs are
    reused and interrupted ones resumed when the command is run again.
    """
    import json as json_lib

    from atomizer.training.report import markdown, to_json, write_report
    from atomizer.training.runner import run_experiment

    cfg = _load(obj, config, overrides, output)
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    log = (lambda m: click.echo(m, err=True)) if not as_json else None
    if workers is not None:
        cfg = cfg.model_copy(update={"workers": workers})
    if sweep is not None:
        _run_sweep(obj, cfg, sweep, as_json, log, scheduler)
        return
    results = run_experiment(cfg, host=obj.host, progress=_progress(), log=log, scheduler=scheduler)
    paths = write_report(results, cfg.output_dir)
    if as_json:
        click.echo(json_lib.dumps(to_json(results), indent=2, allow_nan=True))
        return
    click.echo(markdown(results))
    for row, notes in results.notes.items():
        for column, text in notes.items():
            click.echo(f"note: {row} on {column}: {text}")
    click.echo(f"wrote {paths['markdown']}, {paths['json']}, {paths['plot']}")


def _run_sweep(obj, cfg, name, as_json, log, scheduler) -> None:
    import json as json_lib

    from atomizer.training import sweep as sweeps

    sweeps.sweep_of(cfg, name)  # an unknown sweep fails before any training
    results = sweeps.run_sweep(cfg, name, host=obj.host, progress=_progress(), log=log,
                               scheduler=scheduler)
    paths = sweeps.write_sweep_report(results, name)
    if as_json:
        click.echo(json_lib.dumps(sweeps.to_json(results, name), indent=2, allow_nan=True))
        return
    click.echo(sweeps.markdown(results, name))
    click.echo(f"wrote {paths['markdown']}, {paths['json']}, {paths['plot']}")


COMMANDS = [train_command, evaluate_command, run_command]
