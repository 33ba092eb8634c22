"""``atomizer dataset build | info | stats``: labelled STAC items as a sharded atom dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from atomizer.cli.output import console, echo_json


@click.group()
def dataset() -> None:
    """Build datasets from your own STAC items and labels; inspect built dataset folders."""


@dataset.command("build")
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Dataset folder to write (an unfinished build there is resumed).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=0),
              help="Processes of the local Dask cluster (0: read in this process, no cluster).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on a running dask.distributed cluster (tcp://HOST:PORT) instead.")
@click.option("--max-failures", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Stop when more than this fraction of shard tasks fails.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of the spec, e.g. --set chip_m=300 (repeatable).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def build(obj: Any, spec_path: Path, out: Path, workers: int, scheduler: str | None, max_failures: float,
          overrides: tuple[str, ...], progress: bool | None, as_json: bool) -> None:
    """Build the dataset of SPEC.yaml in OUTPUT: one chip per (item, label) pair."""
    from atomizer.datasets.build import build_dataset
    from atomizer.datasets.spec import load_dataset_spec

    spec = load_dataset_spec(spec_path, overrides)
    bar = _Bar(enabled=progress if progress is not None else (not as_json and _is_tty()))
    try:
        result = build_dataset(spec, out, workers=workers, scheduler=scheduler,
                               max_failures=max_failures, progress=bar, host=obj.host)
    finally:
        bar.stop()
    summary = {"output": str(out), "shard_tasks": result.n_tasks, "reused": result.n_reused,
               "built": result.n_built, "failed": result.n_failed, "chips": result.n_chips,
               "errors": result.n_errors}
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"{out}: {result.n_chips} chips in {result.n_tasks} shards ({result.n_reused} reused, "
        f"{result.n_built} built, {result.n_failed} failed); {result.n_errors} skipped or failed "
        f"entries in {out / 'errors.jsonl'}"
    )


@dataset.command("info")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
def info(folder: Path, as_json: bool) -> None:
    """Summarise the dataset FOLDER: chips, splits, classes, sensors, errors."""
    from atomizer.datasets.manifest import summary

    s = summary(folder)
    if as_json:
        echo_json(s)
        return
    from rich.table import Table

    click.echo(f"{folder}: {s['chips']:,} chips ({s['task']}, {s['chip_m']:g} m), {s['atoms']:,} atoms "
               f"in {s['shards']} shards, from {s['items']} items")
    click.echo(f"sensors: {', '.join(s['sensors'])}")
    click.echo(f"splits: {', '.join(f'{k} {v:,}' for k, v in sorted(s['splits'].items()))}")
    click.echo(f"skipped or failed: {s['errors']:,} (see {Path(folder) / 'errors.jsonl'})")
    table = Table()
    table.add_column("class")
    table.add_column("chips", justify="right")
    for name, n in sorted(s["classes"].items()):
        table.add_row(name, f"{n:,}")
    console().print(table)


@dataset.command("stats")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(folder: Path, as_json: bool) -> None:
    """Re-compute FOLDER/stats.json from the shards (per sensor band: count, mean, std, p2, p98)."""
    from atomizer.datasets.manifest import recompute_stats

    out = recompute_stats(folder)
    if as_json:
        echo_json(out)
        return
    from rich.table import Table

    table = Table(title=f"{folder}/stats.json")
    for col in ("sensor", "band", "count", "mean", "std", "p2", "p98"):
        table.add_column(col, justify="left" if col in ("sensor", "band") else "right")
    for sensor, bands in out["sensors"].items():
        for band, st in bands.items():
            if not st["count"]:
                continue
            table.add_row(sensor, band, f"{st['count']:,}",
                          *(f"{st[k]:.4g}" for k in ("mean", "std", "p2", "p98")))
    console().print(table)


def _is_tty() -> bool:
    import sys

    return sys.stderr.isatty()


class _Bar:
    """A rich progress bar over shard tasks, on stderr."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("shards"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("shards", total=total)
        self.bar.update(self.task, completed=done)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


COMMANDS = [dataset]
