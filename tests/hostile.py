"""Helpers for the hostile-input tests: run the real CLI in-process, check the README's promise,
tally what happened (printed at the end of the test session, see ``conftest.py``).

The promise (README "Bad input"): a non-zero exit, no traceback, stderr made of ``error:`` lines
(one per problem found; at least one) and possibly ``warning:`` lines, and no new file anywhere in
the output folder (no output, no temporary left behind).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner, Result

#: Outcomes of every hostile input run in this session: "inputs", "clean errors", and one key per
#: kind of broken promise. Read by conftest.py's terminal summary.
TALLY: Counter[str] = Counter()

WHEN = dt.datetime(2020, 7, 14, 11, 0, tzinfo=dt.timezone.utc)


def make_host(tmp_root: Path) -> Any:
    from atomizer.plugins.host import PluginHost

    return PluginHost(load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(tmp_root / "xdg")})


def run_cli(host: Any, *args: Any) -> Result:
    from atomizer.cli.main import build_cli

    return CliRunner().invoke(build_cli(host), [str(a) for a in args])


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def problems_with(result: Result, before: set[Path], folder: Path) -> list[str]:
    """How ``result`` breaks the promise for bad input (empty: a clean error)."""
    out = []
    if result.exit_code == 0:
        out.append("exit 0")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        out.append(f"traceback ({type(result.exception).__name__}: {result.exception})")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    others = [line for line in lines if not line.startswith(("error: ", "warning: ", "Usage:",
                                                             "Try ", "  "))]
    if not errors:
        out.append(f"no error: line (stderr {result.stderr[-300:]!r})")
    if others:
        out.append(f"stray stderr lines {others[:2]!r}")
    if any("Traceback" in line for line in lines):
        out.append("traceback text")
    new = files_under(folder) - before
    if new:
        out.append(f"new files {sorted(p.name for p in new)}")
    return out


def expect_clean_error(host: Any, folder: Path, *args: Any, label: str = "") -> Result:
    """Run the CLI on a hostile input; assert (and tally) the promise."""
    before = files_under(folder)
    result = run_cli(host, *args)
    problems = problems_with(result, before, folder)
    TALLY["inputs"] += 1
    if problems:
        for p in problems:
            TALLY[p.split(" (")[0].split(" [")[0]] += 1
    else:
        TALLY["clean errors"] += 1
    assert not problems, f"{label or args}: {problems}\nstdout: {result.stdout[-800:]}"
    return result


# --- a small valid world to break ------------------------------------------------------------------
SPEC_YAML = """\
id: hostsat
name: Hostile-input test sensor
sources: [test]
stac: {platform: [hostsat-1]}
bands:
  - {name: B2, common_name: blue, center_wavelength_nm: 490, fwhm_nm: 65, gsd_m: 10, scale: 0.0001, nodata: 0}
  - {name: B3, common_name: green, center_wavelength_nm: 560, fwhm_nm: 35, gsd_m: 10, scale: 0.0001, nodata: 0}
"""


def write_world(folder: Path) -> dict[str, Path]:
    """Two small GeoTIFFs, a STAC item over them and a spec file, in ``folder``."""
    from atomizer.readers.stac_build import build_stac_item
    from atomizer.readers.synthetic import write_geotiff

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = {
        name: write_geotiff(folder / f"{name}.tif", rng.integers(1, 4000, (6, 8)).astype(np.uint16))
        for name in ("B2", "B3")
    }
    fields = {
        name: {"eo:bands": [{"name": name, "center_wavelength": c, "full_width_half_max": w}]}
        for name, c, w in (("B2", 0.49, 0.065), ("B3", 0.56, 0.035))
    }
    item = build_stac_item("hostile-item", paths, datetime=WHEN,
                           properties={"platform": "hostsat-1"}, asset_fields=fields)
    item_path = folder / "item.json"
    item.save_object(dest_href=str(item_path), include_self_link=False)
    spec = folder / "hostsat.yaml"
    spec.write_text(SPEC_YAML)
    return {"item": item_path, "spec": spec, **paths}
