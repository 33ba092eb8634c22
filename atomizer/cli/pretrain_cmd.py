"""``atomizer pretrain CONFIG`` and ``atomizer probe CHECKPOINT``: SatMIP pretraining and probes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from atomizer.errors import ConfigError


@click.command("pretrain")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--method",
    "methods",
    multiple=True,
    help="Run only these methods (simclr, satmip, satmips-coupled, satmips-uncoupled); "
    "default: the config's methods list.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set optim.epochs=1 (repeatable).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: the config's output_dir).",
)
@click.option("--quiet", is_flag=True, help="Print only the final table.")
@click.pass_obj
def pretrain(
    obj,
    config: Path,
    methods: tuple[str, ...],
    overrides: tuple[str, ...],
    out_dir: Path | None,
    quiet: bool,
) -> None:
    """Pretrain an image encoder with SimCLR / SatMIP / SatMIPS on the config's real-data chips.

    Every method in the config's `methods` list is trained on the same chips for the same epochs;
    each writes a checkpoint (METHOD.safetensors + METHOD.json) into the output folder, and the
    frozen features are probed (kNN, linear, bimodal). The comparison table (accuracy, training
    time and peak memory relative to SimCLR) is printed and written as comparison.md and
    comparison.json.
    """
    from atomizer.pretrain.compare import run_pretraining
    from atomizer.pretrain.config import load_config

    if methods:
        overrides = (*overrides, f"methods={json.dumps(list(methods))}")
    cfg = load_config(config, overrides)
    out = out_dir or Path(cfg.output_dir)
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    report = run_pretraining(cfg, host=obj.host, out_dir=out, config_dir=config.parent, log=log)
    click.echo(report.markdown)
    click.echo(f"wrote {report.markdown_path} and {report.json_path}", err=True)


@click.command("probe")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(["knn", "linear", "bimodal"]),
    help="Probes to run (repeatable; default: knn and linear).",
)
@click.option(
    "--data",
    "data_config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A YAML with a `data:` section (e.g. a pretraining config) giving the labelled "
    "chips; default: the checkpoint's own data.",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder the data paths are relative to (default: as at training time).",
)
@click.option("--seeds", default=None, help="Comma-separated split seeds (default: the config's).")
@click.option(
    "--metadata-features",
    type=click.Choice(["fixed", "learned"]),
    default=None,
    help="Metadata half of the bimodal probe (default: the config's).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results as JSON here.",
)
@click.pass_obj
def probe(
    obj,
    checkpoint: Path,
    methods: tuple[str, ...],
    data_config: Path | None,
    data_root: Path | None,
    seeds: str | None,
    metadata_features: str | None,
    json_out: Path | None,
) -> None:
    """Probe the frozen features of a pretraining CHECKPOINT (.json or .safetensors).

    kNN: weighted votes of the k most cosine-similar training chips (k = 1, 5, 20, 100);
    linear: logistic regression (L-BFGS, 200 iterations, no regularisation); bimodal: the linear
    probe on image + metadata features. Accuracy in %, mean ± std over split seeds.
    """
    from atomizer.evaluation.probe import evaluate_probes
    from atomizer.io import atomic_write_text
    from atomizer.pretrain.checkpoint import load_checkpoint
    from atomizer.pretrain.chips import build_chips
    from atomizer.pretrain.compare import MethodRow, format_markdown
    from atomizer.pretrain.config import DataConfig, load_config
    from atomizer.pretrain.metadata_encoders import fixed_metadata_features
    from atomizer.pretrain.pretrainer import extract_features

    loaded = load_checkpoint(checkpoint, host=obj.host)
    cfg = loaded.config
    config_dir = None
    if data_config is not None:
        cfg = cfg.model_copy(update={"data": load_config(data_config).data})
        config_dir = data_config.parent
    elif data_root is None and loaded.record.data_root:
        data_root = Path(loaded.record.data_root)
    if data_root is not None:
        cfg = cfg.model_copy(
            update={
                "data": DataConfig.model_validate(
                    {**cfg.data.model_dump(), "root": str(data_root.resolve())}
                )
            }
        )
    probe_cfg = cfg.probe
    if seeds:
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(
                f"--seeds {seeds!r}: give comma-separated integers, e.g. 0,1,2"
            ) from None
        probe_cfg = probe_cfg.model_copy(update={"seeds": seed_list})
    if metadata_features:
        probe_cfg = probe_cfg.model_copy(update={"metadata_features": metadata_features})
    chips = build_chips(cfg, host=obj.host, config_dir=config_dir)
    probe_chips = chips.probe_chips
    if len(chips.class_names) < 2:
        raise ConfigError("the data gives fewer than 2 labelled classes; nothing to probe")
    wanted = list(methods) or ["knn", "linear"]
    img, meta = extract_features(loaded.model, probe_chips, batch_size=probe_cfg.batch_size)
    if "bimodal" in wanted and (probe_cfg.metadata_features == "fixed" or meta is None):
        meta = fixed_metadata_features([c.metadata for c in probe_chips])
    results = evaluate_probes(
        img,
        chips.probe_labels(),
        metadata_features=meta,
        methods=wanted,
        seeds=probe_cfg.seeds,
        test_fraction=probe_cfg.test_fraction,
        groups=[c.group for c in probe_chips],
        ks=probe_cfg.knn_k,
        knn_temperature=probe_cfg.knn_temperature,
        max_iter=probe_cfg.linear_max_iter,
    )
    row = MethodRow(loaded.record.method, None, results)
    click.echo(
        format_markdown(
            [row],
            title=f"probe of {checkpoint.name}",
            notes=[
                f"{len(probe_chips)} labelled chips, classes: {', '.join(chips.class_names)}",
                f"seeds {list(probe_cfg.seeds)}, test fraction {probe_cfg.test_fraction}",
            ],
        )
    )
    if json_out is not None:
        payload = {
            "checkpoint": str(checkpoint),
            "method": loaded.record.method,
            "class_names": chips.class_names,
            "n_chips": len(probe_chips),
            "seeds": list(probe_cfg.seeds),
            "results": {k: v.to_json() for k, v in results.items()},
        }
        atomic_write_text(json_out, json.dumps(payload, indent=2) + "\n")
        click.echo(f"wrote {json_out}", err=True)


COMMANDS = [pretrain, probe]
