"""Explicit, documented limits on the work one input may ask for.

Every document, raster or model size read from outside is bounded, so a hostile or careless input
(a YAML alias bomb, ``/dev/zero`` given as a spec, a sparse 60000 x 60000 GeoTIFF, a checkpoint that
says ``latent_dim: 1000000``) is refused with one line that names the limit and how to raise it,
instead of hanging or eating the machine's memory.

Each limit has a name, a default, a unit and an environment variable that raises (or lowers) it::

    ATOMIZER_MAX_YAML_BYTES=50000000 atomizer sensors validate huge.yaml

The table is the single source of truth: README.md lists the same rows (a test checks it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from atomizer.errors import LimitError


@dataclass(frozen=True)
class Limit:
    """One bound on input size or work."""

    name: str
    default: int
    unit: str
    what: str

    @property
    def env(self) -> str:
        """The environment variable that overrides the default."""
        return f"ATOMIZER_MAX_{self.name.upper()}"


#: Every limit, by name. Add a row here (and in README.md's table) for a new bound.
LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (
        Limit("yaml_bytes", 8 * 1024**2, "bytes", "size of one YAML document (spec, config)"),
        Limit("json_bytes", 256 * 1024**2, "bytes", "size of one JSON document (STAC item, record)"),
        Limit("yaml_nodes", 2_000_000, "nodes", "YAML nodes after expanding anchors and aliases"),
        Limit("nesting_depth", 200, "levels", "nesting of lists and mappings in one document"),
        Limit("read_pixels", 400_000_000, "pixels", "pixels decoded from one band in one read"),
        Limit("patch_pixels", 4096 * 4096, "pixels", "pixels of one modality patch (size_px squared)"),
        Limit("map_pixels", 1_000_000_000, "pixels", "pixels of one predicted map (width x height)"),
        Limit("model_parameters", 2_000_000_000, "parameters", "parameters of one model built from a config"),
        Limit("text_chars", 1000, "characters", "length of an identifier or name echoed in a message"),
    )
}


def limit(name: str) -> int:
    """The value of limit ``name``: its environment variable when set to a positive integer, else
    its default. A malformed override is an error, never silently ignored."""
    spec = LIMITS[name]
    raw = os.environ.get(spec.env)
    if raw is None or raw.strip() == "":
        return spec.default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise LimitError(f"{spec.env}={raw!r}: write a positive whole number of {spec.unit}")
    return value


def exceeded(name: str, got: int | float, *, subject: str) -> LimitError:
    """The error for ``subject`` needing ``got`` of limit ``name``: names the limit and how to raise it."""
    spec = LIMITS[name]
    return LimitError(
        f"{subject}: {got:,} {spec.unit} exceeds the limit of {limit(name):,} {spec.unit} "
        f"({spec.what}); set {spec.env} to raise it"
    )


def check(name: str, got: int | float, *, subject: str) -> None:
    """Raise :func:`exceeded` when ``got`` is over limit ``name``."""
    if got > limit(name):
        raise exceeded(name, got, subject=subject)


def safe_repr(value: object) -> str:
    """``repr(value)``, or a stand-in when the object's own ``__repr__`` fails (a plugin's object
    may raise anything)."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001
        return f"<{type(value).__name__} whose repr failed>"


def clip_text(text: object, *, max_chars: int | None = None) -> str:
    """``text`` for an error message: control characters escaped, cut to the ``text_chars`` limit
    with the full length said."""
    s = str(text)
    if not s.isprintable():  # a line break or control character would forge or split a message line
        s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
    n = max_chars if max_chars is not None else limit("text_chars")
    if len(s) <= n:
        return s
    return f"{s[: max(n - 20, 10)]}... ({len(s):,} characters)"
