"""The adapter from a band table to DOFA / Panopticon / Copernicus-FM spectral inputs, on EVERY
built-in sensor spec of the registry: right units, one value per band in band order, never a
zero, placeholder or non-finite wavelength; and loud errors for bands without a real one."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
import torch

from atomizer.atoms.atomset import AtomSet
from atomizer.atoms.batch import collate_atoms
from atomizer.errors import ModalityError
from atomizer.models.spectral_inputs import (
    FWHM_TO_SIGMA,
    band_table,
    copernicus_spectral,
    dofa_wavelengths_um,
    panopticon_channels,
)
from atomizer.sensors.loader import read_raw_spec
from atomizer.sensors.registry import SensorRegistry, builtin_sensor_files
from atomizer.sensors.spec import Band


@lru_cache(maxsize=1)
def registry() -> SensorRegistry:
    """The registry of the built-in specs alone (no user folders, no plugins)."""
    return SensorRegistry.from_raw(
        [(read_raw_spec(p), "atomizer") for p in builtin_sensor_files()], strict=True
    )


SENSOR_IDS = registry().ids()


def test_every_builtin_spec_is_covered():
    assert len(SENSOR_IDS) == len(builtin_sensor_files()) >= 17


@pytest.mark.parametrize("sensor_id", SENSOR_IDS)
def test_adapters_on_every_builtin_sensor(sensor_id):
    spec = registry().get(sensor_id)
    centre_nm = torch.tensor([b.center_wavelength_nm for b in spec.bands], dtype=torch.float32)
    fwhm_nm = torch.tensor([b.fwhm_nm for b in spec.bands], dtype=torch.float32)

    um = dofa_wavelengths_um(spec)
    assert um.shape == (len(spec.bands),) and um.dtype == torch.float32
    assert torch.isfinite(um).all() and (um > 0.3).all() and (um < 15.0).all()  # micrometres
    torch.testing.assert_close(um * 1000, centre_nm)

    channels = panopticon_channels(spec)
    assert channels.shape == (len(spec.bands), 2)
    torch.testing.assert_close(channels[:, 0], centre_nm)  # channel ids in nanometres
    sigma = channels[:, 1]
    assert torch.isfinite(sigma).all() and (sigma > 0).all() and (sigma < fwhm_nm).all()
    # a Gaussian of that sigma has the band's FWHM: 2 sqrt(2 ln 2) sigma = FWHM
    torch.testing.assert_close(2 * math.sqrt(2 * math.log(2)) * sigma, fwhm_nm)

    wavelength, bandwidth = copernicus_spectral(spec)
    torch.testing.assert_close(wavelength, centre_nm)
    torch.testing.assert_close(bandwidth, fwhm_nm)
    assert (wavelength >= 300).all() and (bandwidth > 0).all() and (bandwidth < wavelength).all()
    for values in (um, channels, wavelength, bandwidth):
        assert not torch.isnan(values).any() and (values != 0).all()


@pytest.mark.parametrize("sensor_id", SENSOR_IDS)
def test_atoms_and_band_subsets_give_the_spec_values(sensor_id):
    """From an AtomSet / AtomBatch of the sensor, and from a modality's band subset, in order."""
    spec = registry().get(sensor_id)
    names = list(reversed(spec.band_names))[:3]
    atoms = AtomSet.from_array(np.ones((len(names), 2, 2)), spec, bands=names, gsd_m=30.0)
    expected = dofa_wavelengths_um(spec, names)
    assert [b.name for b in band_table(spec, names)] == names
    torch.testing.assert_close(dofa_wavelengths_um(atoms), expected)
    torch.testing.assert_close(dofa_wavelengths_um(collate_atoms([atoms])), expected)
    torch.testing.assert_close(panopticon_channels(atoms)[:, 0], expected * 1000)


@pytest.mark.parametrize(
    "centre, fwhm",
    [(0.0, 10.0), (float("nan"), 10.0), (0.665, 0.03), (665.0, 0.0), (665.0, float("inf"))],
)
def test_bands_without_a_real_wavelength_are_refused(centre, fwhm):
    bad = Band.model_construct(
        name="X1", center_wavelength_nm=centre, fwhm_nm=fwhm, gsd_m=10.0, common_name=None
    )
    for adapter in (dofa_wavelengths_um, panopticon_channels, copernicus_spectral):
        with pytest.raises(ModalityError, match="X1"):
            adapter([bad])


def test_sigma_constant():
    assert FWHM_TO_SIGMA == pytest.approx(1 / 2.3548, rel=1e-4)
