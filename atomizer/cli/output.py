"""Small helpers shared by the commands: JSON output, a console (outputs are checked by
:func:`atomizer.io.check_output`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click



def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def console():
    """A rich console that writes through click (so CliRunner captures it)."""
    from rich.console import Console

    import sys

    # markup and emoji codes off: names and paths from users' files are printed as they are
    # (a band named "[/]" broke every table; "[bold]x[/]" printed as x)
    return Console(file=sys.stdout, width=max(100, _terminal_width()), markup=False, emoji=False)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120
