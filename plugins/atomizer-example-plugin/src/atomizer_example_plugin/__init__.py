"""An example atomizer plugin: one sensor (SPOT-6) and one command (`atomizer ndvi`)."""

from __future__ import annotations

from importlib import resources

import click

from atomizer import hookimpl


@hookimpl
def register_sensors(register):
    register(resources.files(__name__) / "spot6.yaml")


@hookimpl
def register_commands(cli):
    @cli.command("ndvi")
    @click.argument("atoms_file", type=click.Path(exists=True, dir_okay=False))
    def ndvi(atoms_file):
        """NDVI statistics of the pixels where an .atoms file has both red and nir atoms."""
        import numpy as np

        from atomizer.atoms import load_atoms
        from atomizer.errors import AtomizerError

        atoms = load_atoms(atoms_file)
        by_name = {b.common_name: i for i, b in enumerate(atoms.bands) if b.common_name}
        nir = by_name.get("nir", by_name.get("nir08"))
        if "red" not in by_name or nir is None:
            raise AtomizerError(f"{atoms_file}: needs a 'red' and a 'nir' band to compute NDVI")

        def plane(i):
            sel = atoms.band == i
            return {(float(x), float(y)): float(v)
                    for x, y, v in zip(atoms.x[sel], atoms.y[sel], atoms.value[sel])}

        red, nirv = plane(by_name["red"]), plane(nir)
        common = red.keys() & nirv.keys()
        if not common:
            raise AtomizerError(f"{atoms_file}: red and nir atoms share no pixel position")
        r = np.array([red[k] for k in common])
        n = np.array([nirv[k] for k in common])
        ndvi_values = (n - r) / np.where(n + r == 0, np.nan, n + r)
        click.echo(
            f"NDVI over {len(common)} pixels: mean {np.nanmean(ndvi_values):.3f}, "
            f"median {np.nanmedian(ndvi_values):.3f}"
        )
