"""The one document reader (bounded JSON/YAML) and the one config pipeline (YAML -> pydantic -> lines)."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import field_validator, model_validator

from atomizer.config import LocatedError, StrictModel, load_config, render_errors, validate_config
from atomizer.documents import parse_json, parse_yaml, read_json, read_yaml
from atomizer.errors import ConfigError, DocumentError, LimitError
from atomizer.limits import LIMITS, clip_text, limit


class Inner(StrictModel):
    name: str
    width_m: float

    @field_validator("width_m")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("width_m must be > 0; write a positive number of metres")
        return v


class Outer(StrictModel):
    title: str
    parts: list[Inner]
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _order(self) -> Outer:
        if self.low >= self.high:
            raise LocatedError([(("high",), f"high ({self.high}) must exceed low ({self.low})")])
        return self


def _write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_errors_name_file_line_key_and_hint(tmp_path):
    p = _write(tmp_path, "title: t\nparts:\n  - name: a\n    width_m: 1\n  - name: b\n    widht_m: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, p)
    lines = str(info.value).splitlines()
    assert f"{p}:6: parts[1](b).widht_m: unknown key 'widht_m'; did you mean 'width_m'?" in lines
    assert f"{p}:5: parts[1](b).width_m: required key 'width_m' is missing; add it" in lines


def test_cross_field_errors_point_at_their_own_key(tmp_path):
    p = _write(tmp_path, "title: t\nparts: []\nlow: 2\nhigh: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, p)
    assert str(info.value) == f"{p}:4: high: high (1.0) must exceed low (2.0)"


def test_overrides_apply_before_validation_and_lines_still_match(tmp_path):
    p = _write(tmp_path, "title: t\nparts:\n  - {name: a, width_m: 1}\n")
    cfg = load_config(Outer, p, ["parts.0.width_m=3", "high=5"])
    assert cfg.parts[0].width_m == 3 and cfg.high == 5
    with pytest.raises(ConfigError, match=r":3: parts\[0\]\(a\).width_m: width_m must be > 0"):
        load_config(Outer, p, ["parts.0.width_m=-1"])


def test_not_a_mapping_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r":1: the file is a list; Outer is a mapping"):
        load_config(Outer, _write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="the file is empty"):
        validate_config(Outer, None)


def test_duplicate_keys_are_reported_with_lines(tmp_path):
    with pytest.raises(DocumentError) as info:
        read_yaml(_write(tmp_path, "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"))
    assert str(info.value).splitlines() == [
        f"{tmp_path / 'c.yaml'}:4: c: the key appears twice in one mapping; keep one",
        f"{tmp_path / 'c.yaml'}:5: a: the key appears twice in one mapping; keep one",
    ]


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    p = _write(tmp_path, "\n".join(lines) + "\n")
    assert p.stat().st_size < 1000
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match="yaml_nodes|ATOMIZER_MAX_YAML_NODES"):
        read_yaml(p)
    assert time.perf_counter() - t0 < 5


def test_shared_aliases_within_the_limit_still_load(tmp_path):
    doc = read_yaml(_write(tmp_path, "base: &b {x: 1}\nuse: [*b, *b]\n"))
    assert doc.data["use"] == [{"x": 1}, {"x": 1}]


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "{\"a\":" * 50_000 + "1" + "}" * 50_000])
def test_deep_nesting_is_a_limit_not_a_crash(text):
    with pytest.raises(LimitError, match="ATOMIZER_MAX_NESTING_DEPTH"):
        parse_json(text, origin="deep.json")
    with pytest.raises(LimitError, match="ATOMIZER_MAX_NESTING_DEPTH"):
        parse_yaml(text, origin="deep.yaml")


def test_non_regular_files_are_refused(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(DocumentError, match="FIFO"):
        read_yaml(fifo)
    with pytest.raises(DocumentError, match="device"):
        read_yaml("/dev/zero")
    with pytest.raises(DocumentError, match="folder"):
        read_json(tmp_path)
    with pytest.raises(DocumentError, match="no such"):
        read_json(tmp_path / "missing.json")


def test_size_limit_names_its_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ATOMIZER_MAX_YAML_BYTES", "100")
    with pytest.raises(LimitError, match=r"exceeds the limit of 100 bytes.*ATOMIZER_MAX_YAML_BYTES"):
        read_yaml(_write(tmp_path, "a: " + "x" * 200 + "\n"))
    monkeypatch.setenv("ATOMIZER_MAX_YAML_BYTES", "lots")
    with pytest.raises(LimitError, match="positive whole number"):
        limit("yaml_bytes")


def test_json_refuses_nan_and_binary(tmp_path):
    with pytest.raises(DocumentError, match="finite"):
        parse_json('{"a": NaN}')
    p = tmp_path / "x.json"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(DocumentError, match="not UTF-8"):
        read_json(p)


def test_custom_error_class_is_used(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_yaml(_write(tmp_path, "a: [1, 2\n"), error=ConfigError)


def test_every_limit_has_a_readme_row():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [spec.env for spec in LIMITS.values() if spec.env not in readme]
    assert not missing, f"document these limits in README.md: {missing}"


def test_clip_text_keeps_messages_short():
    assert clip_text("x" * 100_000).endswith("(100,000 characters)")
    assert len(clip_text("x" * 100_000)) < 1100
    assert clip_text("short") == "short"


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                    max_leaves=20))
def test_any_yaml_shape_gives_a_model_or_one_config_error_per_problem(data):
    """Whatever shape a document has, validation ends in a model or in ConfigError lines that each
    start with the origin: never another exception."""
    import yaml

    text = yaml.safe_dump({"title": "t", "parts": data})
    doc = parse_yaml(text, origin="f.yaml")
    try:
        validate_config(Outer, doc.data, doc)
    except ConfigError as exc:
        assert all(line.startswith("f.yaml") for line in str(exc).splitlines())


def test_render_errors_without_document():
    from pydantic import ValidationError

    try:
        Outer.model_validate({"title": 1, "parts": []})
    except ValidationError as exc:
        lines = render_errors(exc, origin="mem")
    assert lines == ["mem: title: Input should be a valid string (got 1)"]


class Numbers(StrictModel):
    size_m: float = 1.0
    count: int | None = None
    weights: list[float] = []
    pair: tuple[str, float] = ("a", 1.0)
    scale: dict[str, float] = {}
    flag: bool = False
    either: float | bool = 0.0


@pytest.mark.parametrize(("text", "key"), [
    ("size_m: true", "size_m"), ("count: false", "count"), ("weights: [1, true]", "weights"),
    ("pair: [b, yes]", "pair"), ("scale: {x: true}", "scale"),
])
def test_true_or_false_where_a_number_is_meant_is_one_line(tmp_path, text, key):
    """pydantic reads a bool as 1/0 in a number field: ``chip_m: true`` was a 1 m chip."""
    p = _write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(Numbers, p)
    assert str(info.value) == f"{p}:1: {key}: true/false is not a number here; write a number"
    with pytest.raises(ConfigError, match="true/false is not a number"):  # the same through --set
        load_config(Numbers, _write(tmp_path, "{}\n", "empty.yaml"), [text.replace(": ", "=", 1)])


@settings(max_examples=80, deadline=None)
@given(size=st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6)),
       weights=st.lists(st.one_of(st.integers(-9, 9), st.floats(-9, 9)), max_size=4),
       flag=st.booleans(), either=st.one_of(st.booleans(), st.floats(-9, 9)))
def test_numbers_and_bools_where_they_are_meant_still_load(size, weights, flag, either):
    got = Numbers.model_validate({"size_m": size, "weights": weights, "flag": flag, "either": either,
                                  "count": None, "scale": {"x": size}})
    assert got.size_m == size and got.weights == weights and got.flag is flag and got.either == either
