"""The experiment schema: strict keys, impossible values, disjoint test modalities, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.errors import AtomizerError, ConfigError
from atomizer.training.config import (
    ExperimentConfig,
    apply_overrides,
    load_config,
    modality_key,
    parse_override,
)

BASE = {
    "name": "tiny",
    "data": {"dataset": "indian-pines", "path": "data", "options": {"stride_px": 3}},
    "task": {"type": "multiclass", "num_classes": 16},
    "train_modalities": [
        {"sensor": "sentinel2a", "bands": ["B02", "B03"], "gsd_m": 20, "size_px": 8}
    ],
    "val_modalities": [
        {"sensor": "sentinel2a", "bands": ["B02", "B03"], "gsd_m": 20, "size_px": 8}
    ],
    "test_modalities": [{"sensor": "landsat8", "bands": ["B2", "B3"], "gsd_m": 30, "size_px": 5}],
    "models": [{"name": "atomizer"}, {"name": "resnet", "config": {"stem_width": 8}}],
    "optimizer": {"base_lr": 0.001, "warmup_epochs": 1},
    "epochs": 3,
    "batch_size": 32,
    "seeds": [0, 1],
}


def write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def errors_of(tmp_path, data, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data), **kw)
    return str(info.value).splitlines()


def test_valid_config_loads_and_resolves_paths(tmp_path):
    cfg = load_config(write(tmp_path, BASE), known_models=["atomizer", "resnet"])
    assert cfg.data.path == str((tmp_path / "data").resolve())
    assert cfg.lr == pytest.approx(0.001 * 32 / 256)
    assert cfg.main_metric == "overall_accuracy"
    assert [m.label for m in cfg.test_modalities] == ["landsat8[B2,B3]@30m/5px"]
    assert cfg.model("resnet").config == {"stem_width": 8}


def test_unknown_keys_name_file_line_and_key_path(tmp_path):
    data = {**BASE, "epohcs": 3, "optimizer": {"base_lr": 0.001, "betaz": [0.9, 0.9]}}
    data["test_modalities"] = [{**BASE["test_modalities"][0], "gsd": 30}]
    lines = errors_of(tmp_path, data)
    path = str(tmp_path / "exp.yaml")
    assert any(
        ln.startswith(f"{path}:") and "epohcs: unknown key" in ln and "'epochs'" in ln
        for ln in lines
    )
    assert any("optimizer.betaz: unknown key" in ln and "'betas'" in ln for ln in lines)
    assert any("test_modalities[0].gsd: unknown key" in ln for ln in lines)
    assert len(lines) == 3


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -2}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"metrics": ["accuracy"]}, "metrics"),
        ({"task": {"type": "regression", "num_classes": 3}}, "task.type"),
        ({"task": {"type": "multiclass", "num_classes": 1}}, "task.num_classes"),
        ({"optimizer": {"base_lr": -1}}, "optimizer.base_lr"),
        ({"optimizer": {"betas": [0.9, 1.5]}}, "optimizer.betas"),
        ({"optimizer": {"warmup_epochs": 5}}, "optimizer.warmup_epochs"),
        ({"device": "tpu"}, "device"),
        ({"primary_metric": "map_micro"}, "primary_metric"),
        ({"models": []}, "models"),
    ],
)
def test_impossible_values(tmp_path, patch, key):
    lines = errors_of(tmp_path, {**BASE, **patch})
    assert any(f": {key}" in ln for ln in lines), lines


def test_modality_values_are_checked(tmp_path):
    data = {
        **BASE,
        "train_modalities": [
            {"sensor": "sentinel2a", "gsd_m": -20, "size_px": 0, "bands": ["B02", "B02"]}
        ],
    }
    text = "\n".join(errors_of(tmp_path, data))
    assert "train_modalities[0].gsd_m" in text and "train_modalities[0].size_px" in text
    assert "train_modalities[0].bands" in text


def test_test_modalities_must_be_unseen(tmp_path):
    same = {**BASE["train_modalities"][0], "bands": ["B03", "B02"]}  # same band SET
    lines = errors_of(tmp_path, {**BASE, "test_modalities": [BASE["test_modalities"][0], same]})
    assert len(lines) == 1
    assert "test_modalities[1]" in lines[0] and "unseen" in lines[0]
    assert lines[0].startswith(f"{tmp_path / 'exp.yaml'}:")
    # the same sensor and bands at another GSD is a different, unseen modality
    other = {**same, "gsd_m": 40}
    load_config(write(tmp_path, {**BASE, "test_modalities": [other]}))


def test_unknown_model_names(tmp_path):
    lines = errors_of(
        tmp_path, {**BASE, "models": [{"name": "resnt"}]}, known_models=["atomizer", "resnet"]
    )
    assert (
        len(lines) == 1
        and "models[0].name: unknown model 'resnt'; did you mean 'resnet'?" in lines[0]
    )


def test_duplicate_model_rows_need_labels(tmp_path):
    lines = errors_of(tmp_path, {**BASE, "models": [{"name": "atomizer"}, {"name": "atomizer"}]})
    assert any("models[1]" in ln and "label" in ln for ln in lines)
    ok = {**BASE, "models": [{"name": "atomizer"}, {"name": "atomizer", "label": "atomizer-wide"}]}
    assert [m.row for m in load_config(write(tmp_path, ok)).models] == ["atomizer", "atomizer-wide"]


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_overrides(tmp_path):
    cfg = load_config(
        write(tmp_path, BASE),
        [
            "epochs=1",
            "models.1.config.stem_width=4",
            "seeds=[5]",
            "optimizer.base_lr=0.1",
            "data.options.seed=2",
        ],
    )
    assert cfg.epochs == 1 and cfg.seeds == [5] and cfg.optimizer.base_lr == 0.1
    assert cfg.models[1].config == {"stem_width": 4} and cfg.data.options == {
        "stride_px": 3,
        "seed": 2,
    }
    with pytest.raises(ConfigError, match="out of range"):
        load_config(write(tmp_path, BASE), ["models.7.config.width=1"])
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config(write(tmp_path, BASE), ["epochs"])
    # an override that breaks the config is reported like a bad file
    with pytest.raises(ConfigError, match="epochs"):
        load_config(write(tmp_path, BASE), ["epochs=-1"])


def test_fingerprint_ignores_what_does_not_change_the_weights():
    cfg = ExperimentConfig.model_validate(BASE)
    entry = cfg.models[1]
    same = cfg.model_copy(update={"output_dir": "elsewhere", "test_modalities": [], "seeds": [7]})
    assert same.fingerprint(entry) == cfg.fingerprint(entry)
    more = ExperimentConfig.model_validate({**BASE, "models": [*BASE["models"], {"name": "vit"}]})
    assert more.fingerprint(more.models[1]) == cfg.fingerprint(entry)  # adding a model
    assert cfg.model_copy(update={"epochs": 4}).fingerprint(entry) != cfg.fingerprint(entry)
    assert cfg.fingerprint(cfg.models[0]) != cfg.fingerprint(entry)


@settings(max_examples=40, deadline=None)
@given(
    path=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3),
    value=st.one_of(st.integers(-5, 5), st.booleans(), st.text("xyz", min_size=1, max_size=3)),
)
def test_override_sets_exactly_that_key(path, value):
    """Property: after KEY.PATH=VALUE, reading KEY.PATH gives VALUE and nothing else changed."""
    data = {"keep": {"me": 1}}
    text = f"{'.'.join(path)}={yaml.safe_dump(value).strip().removesuffix('...').strip()}"
    out = apply_overrides(data, [text])
    node = out
    for part in path:
        node = node[part]
    assert node == value
    assert out["keep"] == {"me": 1} and data == {"keep": {"me": 1}}
    assert parse_override(text)[0] == path


@pytest.mark.parametrize(
    "text,where",
    [("a.b=1", "a is not a mapping"), ("a.b.c=1", "a is not a mapping"), ("a.0=1", "a is not")],
)
def test_override_through_a_scalar_names_the_scalar(text, where):
    with pytest.raises(ConfigError, match=f"--set {text}: {where}"):
        apply_overrides({"a": 3}, [text])


def test_modality_key_ignores_band_order_and_case():
    a = ExperimentConfig.model_validate(BASE).train_modalities[0]
    b = a.model_copy(update={"bands": ("b03", "B02")})
    assert modality_key(a) == modality_key(b)


@pytest.mark.parametrize(("change", "message"), [
    ({"optimizer": {"base_lr": 1e300}}, "less than or equal to 100"),
    ({"models": [{"name": "atomizer", "label": "../elsewhere"}]}, "should match pattern"),
    ({"models": [{"name": "atomizer", "label": "/tmp/x"}]}, "should match pattern"),
    ({"epochs": True}, "true/false is not a number"),  # was one epoch
    ({"optimizer": {"base_lr": False}}, "true/false is not a number"),
])
def test_values_that_overflow_or_escape_the_output_folder_are_refused(change, message):
    from atomizer.training.config import validate_config

    with pytest.raises(AtomizerError, match=message):
        validate_config({**BASE, **change}, origin="exp.yaml")
