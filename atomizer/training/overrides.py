"""``--set KEY.PATH=VALUE`` overrides of a raw YAML config (kept for existing imports).

The implementation lives in :mod:`atomizer.config`, the one config pipeline:

- the key path is split on ``.``; all-digit parts are list indices (``models.0.config.width``);
- the value is parsed as YAML (``[5]`` is a list, ``0.1`` a float); text that is not valid YAML
  (``[``) is kept as a string and left to validation;
- missing or ``null`` parents are created (a mapping, or a list when the next part is an index);
- an index one past the end of a list appends to it.
"""

from __future__ import annotations

from atomizer.config import apply_overrides, key_path_text, parse_override

__all__ = ["apply_overrides", "key_path_text", "parse_override"]
