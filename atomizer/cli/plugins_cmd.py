"""``atomizer plugins``: which plugins loaded and what each registered."""

from __future__ import annotations

import click

from atomizer.cli.output import console, echo_json


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def plugins_command(obj, as_json: bool) -> None:
    """List loaded plugins (built-in and third-party) and what each registers."""
    records = obj.host.plugins()
    rows = [
        {
            "name": r.name,
            "kind": r.kind,
            "module": r.module,
            "registered": r.registered,
            "errors": r.errors,
        }
        for r in records
    ]
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} plugins")
    for col in ("plugin", "kind", "registers", "problems"):
        table.add_column(col, overflow="fold")
    for r in rows:
        what = "; ".join(
            f"{hook.removeprefix('register_')}: {len(names)} ({', '.join(names[:6])}"
            + (", ..." if len(names) > 6 else "") + ")"
            for hook, names in r["registered"].items()
        )
        table.add_row(r["name"], r["kind"], what or "-", "; ".join(r["errors"]))
    console().print(table)


COMMANDS = [plugins_command]
