"""Sweeps: an experiment's trained models tested along one axis (the paper's Tables 2 and 3).

An experiment config may name sweeps; each is a base test modality and a list of points that set
its GSD and / or size::

    sweeps:
      gsd:                                 # mAP as a function of the test GSD (paper Table 2)
        x: gsd_m
        modality: {sensor: sentinel2a, bands: [B02, B03, B04, B08]}
        points: [{gsd_m: 20, size_px: 8}, {gsd_m: 40, size_px: 4}, ...]

``atomizer run CONFIG --sweep gsd`` trains the experiment's models (or, as usual, reuses the
finished runs in ``output_dir``: sweeps are left out of the training fingerprint, so the runs of
``atomizer run CONFIG`` serve every sweep) and tests every model and seed at every point. It
writes ``output_dir/sweep-<name>/results.{md,json,png}``: a table (rows: models, columns: points,
mean ± std over seeds) and a line plot of the main metric against ``x``, one line per model, error
bars over seeds. A point may coincide with a training modality (an in-distribution reference); the
table marks it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from atomizer.data.modality import Modality
from atomizer.errors import ConfigError
from atomizer.io import atomic_path, atomic_write_text, ensure_dir
from atomizer.training.config import modality_key
from atomizer.training.report import (
    MEAN_COLUMN,
    RESULTS_JSON,
    RESULTS_MD,
    RESULTS_PNG,
    markdown_table,
    table,
)
from atomizer.training.report import to_json as report_json
from atomizer.training.runner import RunResults, run_experiment
from atomizer.training.sweep_config import X_TITLES, SweepConfig

SWEEP_DIR_PREFIX = "sweep-"


def sweep_of(config: Any, name: str) -> SweepConfig:
    if name not in config.sweeps:
        known = ", ".join(sorted(config.sweeps)) or "none"
        raise ConfigError(
            f"experiment {config.name!r} has no sweep {name!r} (its sweeps: {known}); "
            "add it under 'sweeps:' in the config"
        )
    return config.sweeps[name]


def run_sweep(
    config: Any, name: str, *, host: Any, progress: bool = False, log: Any = None,
    scheduler: str | None = None,
) -> RunResults:
    """Every model x seed of ``config`` (finished runs reused) tested at every point of the sweep.

    Returns the :class:`~atomizer.training.runner.RunResults` of the experiment whose test
    modalities are the sweep's points.
    """
    sweep = sweep_of(config, name)
    swept = config.model_copy(update={"test_modalities": sweep.modalities()})
    return run_experiment(swept, host=host, progress=progress, log=log, scheduler=scheduler)


def sweep_dir(config: Any, name: str, output_dir: str | Path | None = None) -> Path:
    return Path(output_dir or config.output_dir) / f"{SWEEP_DIR_PREFIX}{name}"


def _in_training(config: Any, modality: Modality) -> bool:
    return modality_key(modality) in {modality_key(m) for m in config.train_modalities}


def markdown(results: Any, name: str) -> str:
    """The sweep's table: models x points, mean ± std over seeds of the main metric."""
    config = results.config
    sweep = sweep_of(config, name)
    metric = config.main_metric
    columns, rows = table(results, metric)
    columns = [c for c in columns if c != MEAN_COLUMN]
    marks = {
        m.label: f"{m.label} (train)" if _in_training(config, m) else m.label
        for m in config.test_modalities
    }
    title = (
        f"{metric} (%) against {X_TITLES[sweep.x]} on {sweep.modality.label}, mean ± std over "
        f"seeds {', '.join(map(str, config.seeds))}"
    )
    if any(marks[c] != c for c in columns):
        title += "; (train): that point is a training modality"
    return markdown_table(title, columns, rows, marks)


def to_json(results: Any, name: str) -> dict[str, Any]:
    """The experiment report's JSON plus the sweep's axis and point values."""
    sweep = sweep_of(results.config, name)
    return {
        "sweep": name,
        "x": sweep.x,
        "x_values": [getattr(p, sweep.x) for p in sweep.points],
        "columns": [m.label for m in results.config.test_modalities],
        **report_json(results),
    }


def plot(results: Any, name: str, path: str | Path) -> Path:
    """Main metric against ``x``: one line per model, error bars over seeds (written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    config = results.config
    sweep = sweep_of(config, name)
    xs = [getattr(p, sweep.x) for p in sweep.points]
    labels = [m.label for m in config.test_modalities]
    _, rows = table(results, config.main_metric)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for model, cells in rows.items():
        means = [cells[c].mean for c in labels]
        stds = [0.0 if math.isnan(cells[c].std) else cells[c].std for c in labels]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=model)
    ax.set_xticks(xs, [f"{x:.3g}" for x in xs])
    ax.set_xlabel(X_TITLES[sweep.x])
    ax.set_ylabel(f"{config.main_metric} (%)")
    ax.set_title(f"{config.name}: sweep {name} on {sweep.modality.label}", fontsize=9)
    ax.legend(fontsize=7, ncols=2)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def write_sweep_report(
    results: Any, name: str, output_dir: str | Path | None = None
) -> dict[str, Path]:
    """``results.md``, ``results.json`` and ``results.png`` in ``output_dir/sweep-<name>``."""
    out = ensure_dir(sweep_dir(results.config, name, output_dir))
    md, js = out / RESULTS_MD, out / RESULTS_JSON
    atomic_write_text(md, markdown(results, name))
    atomic_write_text(js, json.dumps(to_json(results, name), indent=2, allow_nan=True) + "\n")
    return {"markdown": md, "json": js, "plot": plot(results, name, out / RESULTS_PNG)}
