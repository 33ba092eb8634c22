"""The ``atomizer`` command line: one entry point, one sub-command per job.

This is the only place that prints errors or chooses exit codes: library code raises
:class:`~atomizer.errors.AtomizerError` and the CLI turns it into one line on stderr and exit 1.
"""

from __future__ import annotations

import sys
import warnings

import click

from atomizer import __version__
from atomizer.errors import AtomizerError
from atomizer.plugins.host import PluginHost, PluginLoadWarning


class AtomizerGroup(click.Group):
    """A click group that turns :class:`AtomizerError` into one ``error:`` line and exit 1."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except AtomizerError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"error: {line}", err=True)
            ctx.exit(1)


class Context:
    """What every command can reach through ``click.pass_obj``: the plugin host."""

    def __init__(self, host: PluginHost) -> None:
        self.host = host


def build_cli(host: PluginHost | None = None) -> click.Group:
    """A fresh CLI group with the built-in commands and every plugin's commands."""
    from atomizer.cli import commands

    host = host or PluginHost()

    @click.group(cls=AtomizerGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
    @click.version_option(__version__, prog_name="atomizer")
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        """atomizer: one encoder for every optical sensor.

        Images become sets of atoms (one scalar per band per pixel, with its wavelength, bandwidth,
        GSD, position and time). A new sensor is a YAML file, not code.
        """
        ctx.obj = Context(host)

    for command in commands.builtin_commands():
        cli.add_command(command)
    host.add_commands(cli)
    return cli


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
    if issubclass(category, PluginLoadWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        click.echo(f"warning: {category.__name__}: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    warnings.showwarning = _show_warning
    try:
        cli = build_cli()
        cli.main(args=argv, prog_name="atomizer")
    except AtomizerError as exc:  # raised while building the CLI (e.g. by a plugin)
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
