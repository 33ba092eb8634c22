"""The built-in commands: each CLI module exposes ``COMMANDS``, a list of click commands."""

from __future__ import annotations

import importlib

import click

#: CLI modules, in the order their commands appear in ``atomizer --help``.
COMMAND_MODULES = (
    "atomizer.cli.sensors_cmd",
    "atomizer.cli.tokenize_cmd",
    "atomizer.cli.atoms_cmd",
    "atomizer.cli.dataset_cmd",
    "atomizer.cli.simulate_cmd",
    "atomizer.cli.train_cmd",
    "atomizer.cli.pretrain_cmd",
    "atomizer.cli.inference_cmd",
    "atomizer.cli.plugins_cmd",
)


def builtin_commands() -> list[click.Command]:
    out: list[click.Command] = []
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        out.extend(module.COMMANDS)
    return out
