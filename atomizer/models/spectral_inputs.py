"""The ONE adapter from a band table to the spectral inputs of the wavelength-conditioned models.

Each any-sensor model of the literature wants its bands described in its own units, and this is
exactly where toolkits go wrong (a placeholder or zero wavelength for a band they do not know, a
centre in nanometres where micrometres belong). Every conversion lives here:

=================  =====================================================  ==========================
model              spectral input per band                                unit
=================  =====================================================  ==========================
``dofa``           centre wavelength                                      micrometres (DOFA's API)
``panopticon``     channel id = centre wavelength, and the spectral       nanometres
                   width sigma of a Gaussian response with the band's
                   FWHM: ``sigma = FWHM / (2 sqrt(2 ln 2))``
``copernicusfm``   centre wavelength and bandwidth (= FWHM)               nanometres
=================  =====================================================  ==========================

The source is a :class:`~atomizer.sensors.spec.SensorSpec` (optionally a subset of its bands, as a
modality names them), anything with a ``bands`` table (an :class:`~atomizer.atoms.AtomSet` or an
:class:`~atomizer.atoms.batch.AtomBatch`) or a sequence of :class:`~atomizer.sensors.spec.Band`.
Every value is checked finite and positive, and the centre in the range of an optical / thermal
band, so a band without a real wavelength fails loudly here instead of silently becoming 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from atomizer.errors import ModalityError
from atomizer.sensors.spec import MAX_CENTER_NM, MIN_CENTER_NM, Band, SensorSpec

#: sigma of a Gaussian whose full width at half maximum is 1: ``1 / (2 sqrt(2 ln 2))``.
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
NM_PER_UM = 1000.0


def band_table(source: Any, bands: Sequence[str] | None = None) -> tuple[Band, ...]:
    """The bands of ``source`` (a spec, an AtomSet / AtomBatch or a band sequence), checked.

    ``bands`` selects a subset of a spec by name or alias (a modality's ``bands``), in that order.
    """
    if isinstance(source, SensorSpec):
        table = tuple(source.band(b) for b in bands) if bands else tuple(source.bands)
    else:
        if bands is not None:
            raise ModalityError("a band subset can only be selected from a sensor spec")
        table = tuple(getattr(source, "bands", source))
    for band in table:
        _check(band)
    return table


def _check(band: Any) -> None:
    if not isinstance(band, Band):
        raise ModalityError(f"expected a sensor Band, got {type(band).__name__}")
    c, w = band.center_wavelength_nm, band.fwhm_nm
    if not (math.isfinite(c) and MIN_CENTER_NM <= c <= MAX_CENTER_NM):
        raise ModalityError(
            f"band {band.name!r}: centre wavelength {c!r} nm is not a real optical wavelength "
            f"({MIN_CENTER_NM:g}-{MAX_CENTER_NM:g} nm); fix the sensor spec"
        )
    if not (math.isfinite(w) and 0 < w < c):
        raise ModalityError(
            f"band {band.name!r}: FWHM {w!r} nm must be positive and below the centre {c:g} nm; "
            "fix the sensor spec"
        )


def dofa_wavelengths_um(source: Any, bands: Sequence[str] | None = None) -> Tensor:
    """DOFA's input: each band's centre wavelength in micrometres, ``(C,)`` float32."""
    table = band_table(source, bands)
    return torch.tensor([b.center_wavelength_nm / NM_PER_UM for b in table], dtype=torch.float32)


def panopticon_channels(source: Any, bands: Sequence[str] | None = None) -> Tensor:
    """Panopticon's channel ids: ``(C, 2)`` float32 of ``[centre_nm, sigma_nm]`` per band, sigma
    the standard deviation of a Gaussian response with the band's FWHM."""
    table = band_table(source, bands)
    return torch.tensor(
        [[b.center_wavelength_nm, b.fwhm_nm * FWHM_TO_SIGMA] for b in table], dtype=torch.float32
    ).reshape(len(table), 2)


def copernicus_spectral(source: Any, bands: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
    """Copernicus-FM's spectral input: ``(wavelength_nm, bandwidth_nm)``, each ``(C,)`` float32."""
    table = band_table(source, bands)
    wavelength = torch.tensor([b.center_wavelength_nm for b in table], dtype=torch.float32)
    bandwidth = torch.tensor([b.fwhm_nm for b in table], dtype=torch.float32)
    return wavelength, bandwidth
