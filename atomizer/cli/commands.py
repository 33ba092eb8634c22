"""The list of built-in command groups (each lives in its own module)."""

from __future__ import annotations

import click


def builtin_commands() -> list[click.Command]:
    from atomizer.cli.plugins_cmd import plugins_command
    from atomizer.cli.sensors_cmd import sensors

    return [sensors, plugins_command]
