"""A figure of the spectral encoder's Gaussian basis, with some sensors' bands beneath it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from atomizer.encoders.spectral import SpectralEncoder
from atomizer.io import check_figure_path, save_figure
from atomizer.sensors.spec import SensorSpec

#: Wavelength samples per decade on the plot's log axis.
SAMPLES_PER_DECADE = 400
#: The plot's wavelength axis never goes beyond this range (nm).
PLOT_RANGE_NM = (250.0, 16000.0)


def plot_spectral_basis(output: str | Path, *, encoder: SpectralEncoder | None = None,
                        specs: Sequence[SensorSpec] = (), dpi: int = 150) -> Path:
    """Draw the Gaussians of ``encoder`` (default layout) and, below, the bands of ``specs``.

    The file is written atomically; its format follows the suffix (``.png``, ``.svg``, ``.pdf``).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    from atomizer.sensors.plot import NICE_TICKS_NM

    check_figure_path(output)
    encoder = encoder or SpectralEncoder()
    mu, sigma = encoder.mu_nm.cpu().double(), encoder.sigma_nm.cpu().double()
    lo, hi = encoder.coverage_nm
    lo, hi = max(lo, PLOT_RANGE_NM[0]), min(hi, PLOT_RANGE_NM[1])
    decades = torch.log10(torch.tensor(hi / lo)).item()
    lam = torch.logspace(torch.log10(torch.tensor(lo)).item(), torch.log10(torch.tensor(hi)).item(),
                         max(2, int(decades * SAMPLES_PER_DECADE)), dtype=torch.float64)
    curves = torch.exp(-((lam[:, None] - mu) ** 2) / (2 * sigma**2))

    rows = len(specs)
    fig = Figure(constrained_layout=True, figsize=(12, 3.2 + (0.45 * rows + 0.6 if rows else 0)))
    axes = fig.subplots(2 if rows else 1, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [3, max(1, 0.45 * rows)]} if rows else None)
    ax = axes[0, 0]
    ax.plot(lam.numpy(), curves.numpy(), linewidth=0.7, color="#1c7ed6", alpha=0.8)
    ax.plot(mu.numpy(), torch.ones_like(mu).numpy(), "|", color="#0b7285", markersize=6)
    ax.set_ylabel("Gaussian density\n(scaled to unit peak)")
    ax.set_title(f"Spectral encoding basis: {encoder.out_dim} Gaussians "
                 f"(component = integral over the band, then L2-normalised)")
    if rows:
        bx = axes[1, 0]
        for row, spec in enumerate(specs):
            y = rows - 1 - row
            for band in spec.bands:
                bx.barh(y, band.fwhm_nm, left=band.lower_nm, height=0.6, color="#f59f00",
                        edgecolor="black", linewidth=0.3)
        bx.set_yticks(range(rows))
        bx.set_yticklabels([s.id for s in specs][::-1], fontsize=8)
        bx.set_ylim(-0.6, rows - 0.4)
        bottom = bx
    else:
        bottom = ax
    bottom.set_xscale("log")
    bottom.xaxis.set_major_locator(FixedLocator([t for t in NICE_TICKS_NM if lo <= t <= hi]))
    bottom.xaxis.set_major_formatter(ScalarFormatter())
    bottom.xaxis.set_minor_formatter(NullFormatter())
    bottom.set_xlim(lo, hi)
    bottom.set_xlabel("wavelength (nm)")
    return save_figure(fig, output, dpi=dpi)
