"""A figure of sensors' bands across the spectrum: one row per sensor, bars from centre and FWHM."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from atomizer.io import check_figure_path, plain_text_figure, save_figure
from atomizer.sensors.spec import SensorSpec

#: Named regions shaded behind the bands, in nm.
SPECTRAL_REGIONS_NM = (
    ("VIS", 400.0, 700.0, "#f3f0ff"),
    ("NIR", 700.0, 1100.0, "#fff4e6"),
    ("SWIR", 1100.0, 2500.0, "#e6fcf5"),
    ("MWIR", 3000.0, 5000.0, "#f8f0fc"),
    ("TIR", 8000.0, 14000.0, "#fff0f6"),
)

NICE_TICKS_NM = (400, 500, 600, 700, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 7000,
                 10000, 15000)


@plain_text_figure
def plot_sensor_bands(
    specs: Sequence[SensorSpec], output: str | Path, *, log_x: bool = True, dpi: int = 150
) -> Path:
    """Draw each band as a bar from ``centre - fwhm/2`` to ``centre + fwhm/2``, coloured by GSD."""
    check_figure_path(output)
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    gsds = [b.gsd_m for s in specs for b in s.bands]
    norm = LogNorm(vmin=min(gsds), vmax=max(max(gsds), min(gsds) * 1.0001))
    cmap = colormaps["viridis"]
    n = len(specs)
    fig = Figure(figsize=(13, 1.0 + 0.9 * n), constrained_layout=True)  # no pyplot: no global state
    ax = fig.subplots()
    lo = min(b.lower_nm for s in specs for b in s.bands)
    hi = max(b.upper_nm for s in specs for b in s.bands)
    x_lo, x_hi = lo * 0.95, hi * 1.05
    for name, a, b, colour in SPECTRAL_REGIONS_NM:
        if b > x_lo and a < x_hi:
            ax.axvspan(a, b, color=colour, zorder=0)
            a, b = max(a, x_lo), min(b, x_hi)
            ax.text((a * b) ** 0.5 if log_x else (a + b) / 2, n - 0.35, name, ha="center",
                    va="bottom", fontsize=7, color="#868e96", clip_on=True)
    for row, spec in enumerate(specs):
        y = n - 1 - row
        bands = sorted(spec.bands, key=lambda b: b.center_wavelength_nm)
        # stack overlapping bands in up to three lanes so none hides another
        lanes: list[float] = []
        for band in bands:
            lane = next((i for i, end in enumerate(lanes) if band.lower_nm > end), len(lanes))
            if lane == len(lanes):
                lanes.append(band.upper_nm)
            else:
                lanes[lane] = band.upper_nm
            k = min(lane, 2)
            height = 0.26
            yy = y - 0.3 + k * 0.3
            ax.barh(yy, band.fwhm_nm, left=band.lower_nm, height=height, color=cmap(norm(band.gsd_m)),
                    edgecolor="black", linewidth=0.4, zorder=2)
            if spec.n_bands <= 40:
                ax.text(band.center_wavelength_nm, yy + height / 2 + 0.01, band.name, ha="center",
                        va="bottom", fontsize=5.5, zorder=3)
    ax.set_yticks(range(n))
    ax.set_yticklabels(
        [f"{s.id}\n{s.n_bands} bands, {'/'.join(f'{g:g}' for g in s.gsds_m)} m" for s in specs][::-1],
        fontsize=8,
    )
    ax.set_ylim(-0.6, n - 0.15)
    if log_x:
        from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ticks = [t for t in NICE_TICKS_NM if x_lo <= t <= x_hi]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel("wavelength (nm); bars span centre ± FWHM/2")
    ax.set_title("Spectral bands by sensor (colour = ground sampling distance)")
    sm = ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label="GSD (m)", pad=0.01)
    return save_figure(fig, output, dpi=dpi)
