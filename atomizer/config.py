"""The one pipeline for configuration files a user writes: YAML -> pydantic -> ``FILE:LINE`` errors.

Sensor specs, experiment configs, tokenizer, model, pretraining and dataset specs all go through it,
so every one of them reports problems the same way, one line each::

    exp.yaml:12: models[0].config.widht: unknown key 'widht'; did you mean 'width'?

Use it as::

    class MyConfig(StrictModel):
        size_m: float

    config = load_config(MyConfig, "my.yaml", overrides=["size_m=30"], error=ConfigError)

A cross-field check that wants to point at a key deeper than the model it runs in raises
:class:`LocatedError` (from a pydantic validator): its problems carry their own key paths.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from atomizer.documents import YamlDocument, read_yaml
from atomizer.errors import ConfigError
from atomizer.limits import clip_text

ErrorFactory = Callable[[str], Exception]


class StrictModel(BaseModel):
    """The base of every model validated from a user's file: unknown keys are errors, instances are
    immutable, strings are stripped, and every float is finite (a field that means NaN, such as a
    no-data marker, says ``Field(allow_inf_nan=True)``)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``true``/``false`` where a number is meant is an error (pydantic reads it as 1/0:
        ``chip_m: true`` was a 1 m chip, ``--set epochs=true`` one epoch)."""
        key = (cls, info.field_name or "")
        check = _BOOL_CHECKS.get(key, _UNSEEN)
        if check is _UNSEEN:
            field = cls.model_fields.get(key[1])
            check = _BOOL_CHECKS[key] = None if field is None else _bool_check(field.annotation)
        if check is not None and check(value):
            raise ValueError("true/false is not a number here; write a number")
        return value


_SEQUENCES = (list, tuple, set, frozenset, Sequence, typing.Sequence)
_MAPPINGS = (dict, Mapping, typing.Mapping)
_UNSEEN = object()
BoolCheck = Callable[[Any], bool]
#: (model, field) -> the field's check (None: it takes no number), made once per field: models
#: with long number lists (spectral responses) are validated often.
_BOOL_CHECKS: dict[tuple[type, str], BoolCheck | None] = {}


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _bool_check(annotation: Any) -> BoolCheck | None:
    """A function telling whether a value holds a bool where ``annotation`` takes a number and no
    bool (the value itself, an item of a list / tuple / set, a value of a mapping), or None when
    the annotation takes no number at all."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin is typing.Annotated:
        return _bool_check(args[0])
    if origin in (typing.Union, types.UnionType):
        if any(o is bool or o is Any or o is object for o in args):
            return None
        checks = [c for c in map(_bool_check, args) if c is not None]
        return (lambda v: any(c(v) for c in checks)) if checks else None
    if annotation in (int, float):
        return _is_bool
    if origin in _SEQUENCES:
        if origin is tuple and len(args) > 1:  # tuple[str, float]: item by item
            slots = [_bool_check(a) for a in args]
            if all(c is None for c in slots):
                return None
            return lambda v: (isinstance(v, (list, tuple)) and len(v) == len(slots)
                              and any(c is not None and c(x) for c, x in zip(slots, v)))
        item = _bool_check(args[0]) if args else None
        if item is None:
            return None
        if item is _is_bool:  # numbers: one pass in C over the items' types
            return lambda v: isinstance(v, (list, tuple, set, frozenset)) and bool in set(map(type, v))
        return lambda v: isinstance(v, (list, tuple, set, frozenset)) and any(map(item, v))
    if origin in _MAPPINGS and len(args) == 2:
        value_check = _bool_check(args[1])
        if value_check is None:
            return None
        return lambda v: isinstance(v, Mapping) and any(map(value_check, v.values()))
    return None


class LocatedError(ValueError):
    """Problems found by a validator, each with the key path (relative to the model) it concerns."""

    def __init__(self, problems: Sequence[tuple[Sequence[str | int], str]] | str,
                 loc: Sequence[str | int] = ()) -> None:
        if isinstance(problems, str):
            problems = [(tuple(loc), problems)]
        self.problems = [(tuple(p), str(m)) for p, m in problems]
        super().__init__("; ".join(m for _, m in self.problems))


def key_path_text(loc: Sequence[Any], data: Any = None) -> str:
    """``("bands", 3, "fwhm_nm")`` -> ``bands[3](B04).fwhm_nm``: list items that have a ``name``
    (or ``id``) are named as well as numbered."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            name = item.get("name", item.get("id")) if isinstance(item, Mapping) else None
            if isinstance(name, (str, int)) and str(name):
                out += f"({clip_text(name, max_chars=60)})"
            node = item
        else:
            out += ("." if out else "") + clip_text(part, max_chars=80)
            node = node.get(part) if isinstance(node, Mapping) else None
    return out or "(top level)"


def _model_at(root: type[BaseModel] | None, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at ``loc`` (for 'did you mean' hints)."""
    model = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _model_in(field.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside an annotation (``list[Band] | None`` -> ``Band``)."""
    stack = [annotation]
    while stack:
        ann = stack.pop(0)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        stack.extend(typing.get_args(ann))
    return None


def _message(err: Mapping[str, Any], model: type[BaseModel] | None,
             extra_keys: Mapping[tuple[str, ...], Sequence[str]]) -> str:
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "extra_forbidden":
        parent = tuple(p for p in loc[:-1] if not isinstance(p, int))
        owner = _model_at(model, loc[:-1])
        allowed = [*(owner.model_fields if owner else ()), *extra_keys.get(parent, ())]
        key = clip_text(loc[-1], max_chars=80)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return f"unknown key {key!r}; {hint}"
    if kind == "missing":
        return f"required key {str(loc[-1])!r} is missing; add it"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    given = err.get("input")
    if kind not in ("value_error", "assertion_error") and not isinstance(given, (dict, list)):
        msg += f" (got {clip_text(repr(given), max_chars=80)})"
    return msg


def render_errors(exc: ValidationError, doc: YamlDocument | None = None, *,
                  model: type[BaseModel] | None = None, origin: str | None = None,
                  extra_keys: Mapping[tuple[str, ...], Sequence[str]] | None = None) -> list[str]:
    """One ``FILE:LINE: key.path: problem; fix`` line per validation problem.

    ``extra_keys`` names keys a file may use beyond the model's fields, by parent key path
    (e.g. a sensor spec's derivation keys at the top level), for "did you mean" hints.
    """
    origin = origin or (doc.origin if doc is not None else "<config>")
    data = doc.data if doc is not None else None
    extra = extra_keys or {}
    lines = []
    for err in exc.errors(include_url=False):
        base = tuple(err["loc"])
        located = (err.get("ctx") or {}).get("error")
        if isinstance(located, LocatedError):
            parts = [((*base, *loc), msg) for loc, msg in located.problems]
        else:
            parts = [(base, _message(err, model, extra))]
        for loc, msg in parts:
            line = doc.line_of(loc) if doc is not None else None
            where = f"{origin}:{line}" if line is not None else origin
            lines.append(f"{where}: {key_path_text(loc, data)}: {msg}")
    return lines


M = typing.TypeVar("M", bound=BaseModel)


def validate_config(cls: type[M], data: Any, doc: YamlDocument | None = None, *,
                    origin: str | None = None, error: ErrorFactory = ConfigError,
                    extra_keys: Mapping[tuple[str, ...], Sequence[str]] | None = None,
                    what: str | None = None) -> M:
    """Validate ``data`` into ``cls``; problems become one ``error`` with one line each."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        where = f"{origin or (doc.origin if doc else '<config>')}:1"
        raise error(f"{where}: the file is {kind}; {what or cls.__name__} is a mapping of keys")
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        raise error("\n".join(render_errors(exc, doc, model=cls, origin=origin,
                                            extra_keys=extra_keys))) from None


def load_config(cls: type[M], path: str | Path, overrides: Iterable[str] = (), *,
                error: ErrorFactory = ConfigError, what: str | None = None,
                prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> M:
    """Read ``path`` (within the document limits), apply ``KEY.PATH=VALUE`` overrides, validate.

    ``prepare`` may rewrite the raw mapping before validation (e.g. make relative paths absolute);
    line numbers still refer to the file.
    """
    doc = read_yaml(path, what=what or "config file", error=error)
    data = doc.data
    if isinstance(data, dict):
        data = apply_overrides(data, overrides, error=error)
        if prepare is not None:
            data = prepare(data)
    return validate_config(cls, data, doc, error=error, what=what)


def parse_override(text: str, *, error: ErrorFactory = ConfigError) -> tuple[list[str | int], Any]:
    """``models.0.config.width=32`` -> (["models", 0, "config", "width"], 32); values are YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise error(f"--set {clip_text(text, max_chars=80)!r}: write KEY.PATH=VALUE, e.g. --set epochs=1")
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return path, parsed


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str], *,
                    error: ErrorFactory = ConfigError) -> dict[str, Any]:
    """A copy of ``data`` with each ``KEY.PATH=VALUE`` override set (list indices are integers)."""
    import copy

    out = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text, error=error)
        node: Any = out
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise error(
                        f"--set {text}: {key_path_text(path[:i])} has {len(node)} entries; index "
                        f"{part!r} is out of range"
                    )
                node = node[part]
            elif isinstance(node, dict):
                if part not in node or node[part] is None:
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
            else:
                raise error(f"--set {text}: {key_path_text(path[:i])} is not a mapping")
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise error(f"--set {text}: index {last!r} is out of range")
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise error(f"--set {text}: {key_path_text(path[:-1])} is not a mapping")
    return out


__all__ = [
    "LocatedError",
    "StrictModel",
    "apply_overrides",
    "key_path_text",
    "load_config",
    "parse_override",
    "render_errors",
    "validate_config",
]
