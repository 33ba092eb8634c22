"""``--set KEY.PATH=VALUE`` overrides of a raw YAML config, shared by every config loader.

Both ``atomizer run`` / ``train`` (:mod:`atomizer.training.config`) and ``atomizer pretrain``
(:mod:`atomizer.pretrain.config`) edit the raw mapping with :func:`apply_overrides` before
validation, so an override behaves the same in every job:

- the key path is split on ``.``; all-digit parts are list indices (``models.0.config.width``);
- the value is parsed as YAML (``[5]`` is a list, ``0.1`` a float); text that is not valid YAML
  (``[``) is kept as a string and left to validation;
- missing or ``null`` parents are created (a mapping, or a list when the next part is an index);
- an index one past the end of a list appends to it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from atomizer.errors import ConfigError


def key_path_text(loc: Sequence[Any]) -> str:
    """``("models", 0, "config")`` -> ``models[0].config`` (``(top level)`` when empty)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``models.0.config.width=32`` -> (["models", 0, "config", "width"], 32); values are YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: write KEY.PATH=VALUE, e.g. --set epochs=1")
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return path, parsed


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``KEY.PATH=VALUE`` override set (list indices are integers)."""
    out = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text)
        node: Any = out
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise ConfigError(
                        f"--set {text}: {key_path_text(path[:i])} has {len(node)} entries; index "
                        f"{part!r} is out of range"
                    )
                node = node[part]
            elif isinstance(node, dict):
                if part not in node or node[part] is None:
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
            else:
                raise ConfigError(f"--set {text}: {key_path_text(path[:i])} is not a mapping")
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise ConfigError(f"--set {text}: index {last!r} is out of range")
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {text}: {key_path_text(path[:-1])} is not a mapping")
    return out
