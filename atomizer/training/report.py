"""The comparison table of ``atomizer run``: Markdown, JSON and a bar chart with error bars.

Rows are models, columns the unseen test modalities plus their mean; a cell is the mean +/- the
standard deviation over seeds (:func:`atomizer.evaluation.stats.mean_std`: sample standard
deviation, ``ddof = 1``; 0 with a single seed) of the experiment's main metric. The ``mean`` column
averages the modalities within each seed first, then takes mean +/- std over seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atomizer import __version__
from atomizer.evaluation.stats import mean_std
from atomizer.io import atomic_path, atomic_write_text, ensure_dir
from atomizer.training.runner import RunResults

MEAN_COLUMN = "mean"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float
    n: int

    def text(self, digits: int = 1) -> str:
        if math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def _stats(values: list[float]) -> Cell:
    return Cell(*mean_std(values))


def table(
    results: RunResults, metric: str | None = None
) -> tuple[list[str], dict[str, dict[str, Cell]]]:
    """Column labels and, per model row, a :class:`Cell` per column (``mean`` last)."""
    metric = metric or results.config.main_metric
    columns = [m.label for m in results.config.test_modalities]
    rows: dict[str, dict[str, Cell]] = {}
    for model, per_mod in results.scores.items():
        cells = {c: _stats([s[metric] for s in per_mod[c].values()]) for c in columns}
        seeds = sorted({seed for c in columns for seed in per_mod[c]})
        per_seed_means = []
        for seed in seeds:
            vals = [per_mod[c][seed][metric] for c in columns if seed in per_mod[c]]
            vals = [v for v in vals if not math.isnan(v)]
            per_seed_means.append(float(np.mean(vals)) if vals else float("nan"))
        cells[MEAN_COLUMN] = _stats(per_seed_means)
        rows[model] = cells
    return [*columns, MEAN_COLUMN], rows


def markdown(results: RunResults, metric: str | None = None) -> str:
    """The table as Markdown; the best mean of each column is in bold."""
    metric = metric or results.config.main_metric
    columns, rows = table(results, metric)
    title = (
        f"{metric} (%) on unseen test modalities, mean ± std over seeds "
        f"{', '.join(map(str, results.config.seeds))}"
    )
    return markdown_table(title, columns, rows)


def markdown_table(
    title: str,
    columns: list[str],
    rows: dict[str, dict[str, Cell]],
    headers: dict[str, str] | None = None,
) -> str:
    """``title``, then models x ``columns`` as a Markdown table (each column's header from
    ``headers``, default its name); the best mean of each column is in bold."""
    headers = headers or {}
    best = {
        c: max((r[c].mean for r in rows.values() if not math.isnan(r[c].mean)), default=None)
        for c in columns
    }
    lines = [
        title,
        "",
        "| model | " + " | ".join(headers.get(c, c) for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for model, cells in rows.items():
        texts = []
        for c in columns:
            t = cells[c].text()
            texts.append(f"**{t}**" if best[c] is not None and cells[c].mean == best[c] else t)
        lines.append(f"| {model} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def to_json(results: RunResults) -> dict[str, Any]:
    """Every metric of every model / modality / seed, the table of each metric, and timings."""
    metric = results.config.main_metric
    tables = {}
    for name in results.config.metrics:
        columns, rows = table(results, name)
        tables[name] = {
            model: {
                c: {"mean": cells[c].mean, "std": cells[c].std, "n_seeds": cells[c].n}
                for c in columns
            }
            for model, cells in rows.items()
        }
    return {
        "experiment": results.config.name,
        "atomizer_version": __version__,
        "main_metric": metric,
        "seeds": results.config.seeds,
        "test_modalities": [m.model_dump(mode="json") for m in results.config.test_modalities],
        "train_modalities": [m.model_dump(mode="json") for m in results.config.train_modalities],
        "table": tables[metric],
        "tables": tables,
        "per_seed": {
            model: {
                c: {str(seed): v for seed, v in per_seed.items()} for c, per_seed in per_mod.items()
            }
            for model, per_mod in results.scores.items()
        },
        "seconds": results.seconds,
        "notes": results.notes,
        "config": results.config.model_dump(mode="json"),
    }


def plot(results: RunResults, path: str | Path, metric: str | None = None) -> Path:
    """A grouped bar chart (models x columns) with error bars over seeds, written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    metric = metric or results.config.main_metric
    columns, rows = table(results, metric)
    n_models = max(len(rows), 1)
    width = 0.8 / n_models
    fig = Figure(figsize=(max(6.0, 1.4 * len(columns) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(columns))
    for i, (model, cells) in enumerate(rows.items()):
        means = [cells[c].mean for c in columns]
        stds = [0.0 if math.isnan(cells[c].std) else cells[c].std for c in columns]
        ax.bar(
            x + (i - (n_models - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=model
        )
    tops = [
        c.mean + (c.std if not math.isnan(c.std) else 0.0)
        for r in rows.values()
        for c in r.values()
    ]
    tops = [t for t in tops if not math.isnan(t)]
    ax.set_ylim(0, 1.25 * max(tops) if tops and max(tops) > 0 else 1.0)  # room for the legend
    ax.set_xticks(x, columns, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(
        f"{results.config.name}: unseen test modalities (error bars: std over seeds)", fontsize=9
    )
    ax.legend(fontsize=8, ncols=min(n_models, 5))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def write_report(results: RunResults, output_dir: str | Path) -> dict[str, Path]:
    """``results.md``, ``results.json`` and ``results.png`` in ``output_dir``."""
    out = ensure_dir(output_dir)
    md = out / RESULTS_MD
    atomic_write_text(md, markdown(results))
    js = out / RESULTS_JSON
    atomic_write_text(js, json.dumps(to_json(results), indent=2, allow_nan=True) + "\n")
    png = plot(results, out / RESULTS_PNG)
    return {"markdown": md, "json": js, "plot": png}
