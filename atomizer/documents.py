"""Reading documents from outside (JSON, YAML) within bounds.

The one place that opens a user's JSON or YAML file. It refuses what is not a regular file (a FIFO
would block forever, ``/dev/zero`` would never end), documents over the size limit, nesting deeper
than the depth limit and YAML whose anchors and aliases expand past the node limit (a 600-byte alias
bomb), and reports YAML keys repeated within one mapping (PyYAML silently keeps the last). Every
failure is a :class:`~atomizer.errors.DocumentError` (or the caller's error class) with the file and,
where known, the line. Limits live in :mod:`atomizer.limits`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from atomizer.errors import DocumentError, LimitError
from atomizer.io import file_kind
from atomizer.limits import check, exceeded, limit

#: libyaml's safe loader when available (specs with 1-nm response tables parse ~10x faster).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ErrorFactory = Callable[[str], Exception]


def read_bytes(path: str | Path, *, limit_name: str, what: str = "file",
               error: ErrorFactory = DocumentError) -> bytes:
    """The bytes of the regular file ``path``, at most limit ``limit_name`` of them."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}; check the path") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {file_kind(st.st_mode)}, not a {what}; give a regular file")
    max_bytes = limit(limit_name)
    if st.st_size > max_bytes:
        raise _as(error, exceeded(limit_name, st.st_size, subject=str(path)))
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # the file grew while we read it
        raise _as(error, exceeded(limit_name, len(data), subject=str(path)))
    return data


def _as(error: ErrorFactory, exc: LimitError) -> Exception:
    return exc if error is DocumentError else error(str(exc))


def _text(data: bytes, origin: str, what: str, error: ErrorFactory) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{origin}: the {what} is not UTF-8 text (byte {exc.start}); is it a binary file?"
        ) from None


# --- JSON -----------------------------------------------------------------------------------------
def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows; write a finite number")


def parse_json(text: str | bytes, *, origin: str = "<json>", what: str = "JSON document",
               error: ErrorFactory = DocumentError, allow_nan: bool = False) -> Any:
    """Parse JSON text; nesting past the depth limit is an error, and so are ``NaN``/``Infinity``
    unless ``allow_nan`` (records this package wrote itself, e.g. a checkpoint's metric history)."""
    if isinstance(text, bytes):
        text = _text(text, origin, what, error)
    depth = _bracket_depth(text)
    if depth > limit("nesting_depth"):
        raise _as(error, exceeded("nesting_depth", depth, subject=origin))
    try:
        return json.loads(text, parse_constant=None if allow_nan else _refuse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{origin}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise error(f"{origin}: invalid JSON: {exc}") from None
    except RecursionError:
        raise _as(error, exceeded("nesting_depth", depth, subject=origin)) from None


def read_json(path: str | Path, *, what: str = "JSON document",
              error: ErrorFactory = DocumentError, allow_nan: bool = False) -> Any:
    """Read and parse the JSON file ``path`` within the size and depth limits."""
    data = read_bytes(path, limit_name="json_bytes", what=what, error=error)
    return parse_json(data, origin=str(path), what=what, error=error, allow_nan=allow_nan)


def check_format(doc: Any, origin: str, *, format_id: str, version: int, what: str, kind: str,
                 fix: str, error: ErrorFactory = DocumentError, detail: str = "") -> dict[str, Any]:
    """``doc`` when it is a JSON object whose ``format`` is ``format_id`` and ``version`` is
    ``version``; otherwise ``error``: ``ORIGIN: not WHAT; FIX``, or ``ORIGIN: KIND version V`` +
    ``detail`` + `` is not read by this atomizer (it reads version N); FIX``."""
    if not isinstance(doc, dict) or doc.get("format") != format_id:
        raise error(f"{origin}: not {what}; {fix}")
    if doc.get("version") != version:
        raise error(
            f"{origin}: {kind} version {str(doc.get('version'))[:20]}{detail} is not read by this "
            f"atomizer (it reads version {version}); {fix}"
        )
    return doc


_BRACKETS = re.compile(r'[\[\]{}]|"(?:[^"\\]|\\.)*"')


def _bracket_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside double-quoted strings (a cheap pre-parse bound)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        ch = match.group()
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


# --- YAML -----------------------------------------------------------------------------------------
@dataclass
class YamlDocument:
    """A parsed YAML document: its data, its node tree (for line numbers) and where it came from."""

    data: Any
    node: yaml.Node | None
    origin: str

    def line_of(self, loc: Sequence[Any]) -> int | None:
        """1-based line of the deepest node on ``loc`` (the key itself for a mapping entry)."""
        return line_of(self.node, loc)

    def where(self, loc: Sequence[Any] = ()) -> str:
        """``FILE:LINE`` of ``loc``, or the origin alone when the line is unknown."""
        line = self.line_of(loc)
        return f"{self.origin}:{line}" if line is not None else self.origin


def line_of(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` (the key itself for a mapping entry)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _check_nodes(node: yaml.Node, origin: str, error: ErrorFactory) -> list[str]:
    """Bound the expanded size and depth of ``node`` (linear time: shared alias nodes are visited
    once and their expanded size memoised) and list keys repeated within one mapping."""
    max_nodes, max_depth = limit("yaml_nodes"), limit("nesting_depth")
    size: dict[int, int] = {}
    visiting: set[int] = set()
    duplicates: list[tuple[int, str]] = []
    # iterative post-order walk: (node, depth, children_done)
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 1, False)]
    while stack:
        current, depth, done = stack.pop()
        key = id(current)
        if key in size and not done:
            continue
        if depth > max_depth:
            raise _as(error, exceeded("nesting_depth", depth, subject=origin))
        children: list[yaml.Node] = []
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                children.extend((k, v))
        elif isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        if not done:
            if key in visiting:
                raise error(f"{origin}:{current.start_mark.line + 1}: an alias refers to itself; "
                            "YAML anchors must not contain themselves")
            visiting.add(key)
            stack.append((current, depth, True))
            stack.extend((c, depth + 1, False) for c in children if id(c) not in size)
            if isinstance(current, yaml.MappingNode):
                seen: set[str] = set()
                for k, _ in current.value:
                    if isinstance(k, yaml.ScalarNode):
                        if k.value in seen:
                            duplicates.append((k.start_mark.line + 1, str(k.value)))
                        seen.add(k.value)
            continue
        total = 1 + sum(size.get(id(c), 1) for c in children)
        size[key] = total
        visiting.discard(key)
        if total > max_nodes:
            raise _as(error, exceeded("yaml_nodes", total, subject=origin))
    return [
        f"{origin}:{line}: {key}: the key appears twice in one mapping; keep one"
        for line, key in sorted(duplicates)
    ]


def parse_yaml(text: str | bytes, *, origin: str = "<yaml>", what: str = "YAML document",
               error: ErrorFactory = DocumentError) -> YamlDocument:
    """Parse YAML text once (compose, check bounds and duplicate keys, then construct)."""
    if isinstance(text, bytes):
        text = _text(text, origin, what, error)
    depth = _bracket_depth(text)
    if depth > limit("nesting_depth"):
        raise _as(error, exceeded("nesting_depth", depth, subject=origin))
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(data=None, node=None, origin=origin)
        duplicates = _check_nodes(node, origin, error)
        if duplicates:
            raise error("\n".join(duplicates))
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise _as(error, exceeded("nesting_depth", limit("nesting_depth") + 1, subject=origin)) from None
    finally:
        loader.dispose()
    _check_finite_keys(data, origin, error)
    return YamlDocument(data=data, node=node, origin=origin)


def _check_finite_keys(data: Any, origin: str, error: ErrorFactory) -> None:
    """Mapping keys must be strings or numbers a person could write (no lists, no NaN keys)."""
    stack = [data]
    seen: set[int] = set()
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, dict):
            for k, v in cur.items():
                if isinstance(k, float) and not math.isfinite(k):
                    raise error(f"{origin}: a mapping key is {k!r}; write a name")
                stack.append(v)
        elif isinstance(cur, list):
            stack.extend(cur)


def read_yaml(path: str | Path, *, what: str = "YAML document",
              error: ErrorFactory = DocumentError) -> YamlDocument:
    """Read and parse the YAML file ``path`` within the size, depth and node limits."""
    data = read_bytes(path, limit_name="yaml_bytes", what=what, error=error)
    return parse_yaml(data, origin=str(path), what=what, error=error)


__all__ = [
    "YamlDocument",
    "check",
    "line_of",
    "parse_json",
    "parse_yaml",
    "read_bytes",
    "read_json",
    "read_yaml",
]
