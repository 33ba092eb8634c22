"""Unit tests of the built-in token encoders: formulas, shapes, parameters, registration."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import torch

from atomizer.atoms.atomset import SceneMeta
from atomizer.encoders import (
    FourierValueEncoder,
    LocationEncoder,
    PositionEncoder,
    SpectralEncoder,
    TimeEncoder,
    fourier_features,
    fourier_frequencies,
    gaussian_layout,
    pixel_center_m,
)
from atomizer.encoders.spectral import DEFAULT_LAYOUT_NM
from atomizer.errors import EncoderError
from atomizer.plugins.host import PluginHost
from atomizer.sensors.spec import Band, BandStats, SpectralResponse

BUILTIN_ENCODERS = ("fourier_value", "position", "spectral", "time", "location")
#: Per registered encoder: the role it declares and parameters that build it (defaults: {}).
#: A newly registered encoder must get a row here.
ENCODER_TABLE: dict[str, tuple[str, dict]] = {
    "fourier_value": ("value", {}),
    "position": ("position", {}),
    "spectral": ("spectral", {}),
    "time": ("scene", {}),
    "location": ("scene", {}),
}


def _registered_encoder_names() -> list[str]:
    """The registry's encoder names (import strings: listing them imports no encoder module)."""
    return PluginHost(load_entrypoints=False, environ={}).encoders.names()


REGISTERED_ENCODERS = _registered_encoder_names()


def band(center: float, fwhm: float, *, name: str = "b", gsd: float = 10.0, **kw) -> Band:
    return Band(name=name, center_wavelength_nm=center, fwhm_nm=fwhm, gsd_m=gsd, **kw)


# --- Fourier features ------------------------------------------------------------------------------
def test_fourier_features_match_the_formula():
    freqs = fourier_frequencies(4, 7.0)
    assert torch.allclose(freqs, torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=torch.float64))
    v = torch.tensor([0.0, 0.25, -0.7], dtype=torch.float64)
    out = fourier_features(v, freqs)
    assert out.shape == (3, 9)
    f = np.array([1.0, 3.0, 5.0, 7.0])
    for i, x in enumerate(v.tolist()):
        expected = np.concatenate([np.sin(np.pi * f * x), np.cos(np.pi * f * x), [x]])
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-12)
    assert fourier_features(v, freqs, include_input=False).shape == (3, 8)


def test_value_encoder_shape_dtype_and_no_parameters():
    enc = FourierValueEncoder(num_bands=5, max_freq=4.0)
    assert enc.out_dim == 11
    assert list(enc.parameters()) == []
    out = enc(torch.rand(2, 3))
    assert out.shape == (2, 3, 11) and out.dtype == torch.float32
    assert enc(torch.rand(4, dtype=torch.float64)).dtype == torch.float64
    assert torch.equal(out[..., -1], out[..., -1])  # the input itself is the last feature


def test_value_encoder_normalises_by_band_stats_when_asked():
    bands = (band(665, 30, name="red", stats=BandStats(mean=0.2, std=0.1)), band(842, 100, name="nir"))
    value = torch.tensor([0.3, 0.3])
    index = torch.tensor([0, 1])
    enc = FourierValueEncoder(num_bands=3, max_freq=2.0, normalise=True)
    out = enc(value, bands, index)
    assert out[0, -1].item() == pytest.approx((0.3 - 0.2) / 0.1)
    assert out[1, -1].item() == pytest.approx(0.3)  # no stats: unchanged
    plain = FourierValueEncoder(num_bands=3, max_freq=2.0)(value, bands, index)
    assert plain[0, -1].item() == pytest.approx(0.3)
    with pytest.raises(EncoderError, match="band index"):
        enc(value)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (FourierValueEncoder, {"num_bands": 0}, "num_bands"),
        (FourierValueEncoder, {"num_bands": 2.5}, "num_bands"),
        (FourierValueEncoder, {"max_freq": 0.5}, "max_freq"),
        (PositionEncoder, {"reference_m": 0.0}, "reference_m"),
        (PositionEncoder, {"max_freq": float("nan")}, "max_freq"),
        (SpectralEncoder, {"layout": []}, "layout"),
        (SpectralEncoder, {"layout": [[400, 300, 3]]}, "start_nm < stop_nm"),
        (SpectralEncoder, {"layout": [[400, 1000, 0]]}, "count"),
        (SpectralEncoder, {"layout": [[400, 1000]]}, "segment"),
        (SpectralEncoder, {"layout": [["a", 1000, 3]]}, "segment"),
        (SpectralEncoder, {"layout": [[400, 1000, "many"]]}, "count"),
        (SpectralEncoder, {"layout": [[1000, 2000, 3], [400, 1000, 3]]}, "overlaps"),
        (SpectralEncoder, {"sigma_scale": -1.0}, "sigma_scale"),
        (TimeEncoder, {"year_scale": 0}, "year_scale"),
        (LocationEncoder, {"num_bands": -1}, "num_bands"),
    ],
)
def test_bad_parameters_raise_encoder_error(cls, kwargs, match):
    with pytest.raises(EncoderError, match=match):
        cls(**kwargs)


# --- position --------------------------------------------------------------------------------------
def test_position_layout_is_x_then_y_with_raw_scaled_coordinates():
    enc = PositionEncoder(num_bands=3, max_freq=5.0, reference_m=100.0)
    assert enc.out_dim_1d == 7 and enc.out_dim == 14
    x = torch.tensor([30.0, -250.0])
    y = torch.tensor([5.0, 70.0])
    out = enc(x, y)
    assert out.shape == (2, 14)
    assert torch.allclose(out[:, :7], enc.encode_1d(x))
    assert torch.allclose(out[:, 7:], enc.encode_1d(y))
    assert torch.allclose(out[:, 6], x / 100.0) and torch.allclose(out[:, 13], y / 100.0)
    assert torch.allclose(out[0, :3], torch.sin(math.pi * torch.tensor([1.0, 3.0, 5.0]) * 0.3))


def test_paper_pixel_formula_equals_metres_over_reference():
    # the paper: x_scaled = (x_pixel - w/2) * g / G, at pixel centres x_pixel = i + 0.5
    width, gsd, reference = 120, 10.0, 600.0
    i = torch.arange(width, dtype=torch.float64)
    paper = ((i + 0.5) - width / 2) * gsd / reference
    enc = PositionEncoder(reference_m=reference)
    assert torch.allclose(enc.scale(pixel_center_m(i, width, gsd)), paper)
    assert float(paper.min()) == pytest.approx(-(width / 2 - 0.5) * gsd / reference)


# --- spectral --------------------------------------------------------------------------------------
def test_default_layout_is_dense_in_the_vnir_and_sparse_beyond():
    mu, sigma = gaussian_layout(DEFAULT_LAYOUT_NM)
    assert torch.all(mu[1:] > mu[:-1])
    vnir = (mu >= 400) & (mu <= 1000)
    swir = (mu > 1000) & (mu <= 2500)
    thermal = mu > 3000
    assert int(vnir.sum()) > int(swir.sum()) > int(thermal.sum()) >= 2
    assert float(sigma[vnir].max()) < float(sigma[swir].min()) < float(sigma[thermal].min())
    assert float((mu + sigma).max()) >= 14000  # the thermal infrared is covered


def _numeric_integral(mu, sigma, lo, hi, weight=None, n=20001):
    lam = np.linspace(lo, hi, n)
    g = np.exp(-((lam[:, None] - mu[None, :]) ** 2) / (2 * sigma[None, :] ** 2))
    g /= sigma[None, :] * np.sqrt(2 * np.pi)  # unit-area densities
    w = np.ones_like(lam) if weight is None else weight(lam)
    return np.trapezoid(g * w[:, None], lam, axis=0)


def test_boxcar_closed_form_matches_numerical_integration():
    enc = SpectralEncoder()
    mu, sigma = enc.mu_nm.numpy(), enc.sigma_nm.numpy()
    for c, w in [(665.0, 30.0), (1610.0, 90.0), (10895.0, 590.0), (443.0, 2.0)]:
        raw = _numeric_integral(mu, sigma, c - w / 2, c + w / 2)
        expected = raw / np.linalg.norm(raw)
        got = enc([band(c, w)], dtype=torch.float64)[0].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-7)
        assert np.linalg.norm(got) == pytest.approx(1.0)


def test_response_weighting_matches_numerical_integration():
    enc = SpectralEncoder()
    mu, sigma = enc.mu_nm.numpy(), enc.sigma_nm.numpy()
    wl = [640.0, 650.0, 665.0, 675.0, 690.0]
    rv = [0.0, 0.6, 1.0, 0.8, 0.1]
    b = band(665, 30, response=SpectralResponse(wavelength_nm=wl, value=rv))
    raw = _numeric_integral(mu, sigma, wl[0], wl[-1], weight=lambda lam: np.interp(lam, wl, rv))
    np.testing.assert_allclose(enc([b], dtype=torch.float64)[0].numpy(), raw / np.linalg.norm(raw), atol=1e-7)
    boxcar = enc([band(665, 30)], dtype=torch.float64)[0]
    assert float((enc([b], dtype=torch.float64)[0] - boxcar).norm()) > 1e-3  # the response matters
    off = SpectralEncoder(use_response=False)([b], dtype=torch.float64)[0]
    assert torch.allclose(off, boxcar)


def test_flat_response_over_the_fwhm_equals_the_boxcar():
    enc = SpectralEncoder()
    flat = band(842, 115, response=SpectralResponse(wavelength_nm=[784.5, 899.5], value=[3.0, 3.0]))
    out = enc([flat, band(842, 115)], dtype=torch.float64)
    assert torch.allclose(out[0], out[1], atol=1e-12)


def test_spectral_encoding_ignores_name_and_gsd():
    enc = SpectralEncoder()
    out = enc([band(560, 35, name="B03", gsd=10), band(560, 35, name="green", gsd=30)])
    assert torch.equal(out[0], out[1])


def test_spectral_band_outside_the_basis_is_a_clear_error():
    enc = SpectralEncoder(layout=[[400, 1000, 12]])
    with pytest.raises(EncoderError, match=r"far at 2000 nm.*outside the Gaussian basis, which covers 275-1125 nm"):
        enc([band(665, 30, name="red"), band(2000, 50, name="far")])
    with pytest.raises(EncoderError, match="outside"):
        enc.encode(torch.tensor([3000.0]), torch.tensor([10.0]))
    assert enc.coverage_nm == (275.0, 1125.0)  # centres 425..975, sigma 50


# --- time and location -----------------------------------------------------------------------------
def test_time_encoder_known_values_and_missing():
    enc = TimeEncoder(reference_year=2000, year_scale=25)
    scenes = [
        SceneMeta("s", datetime=dt.datetime(2020, 1, 1, 0, 0)),
        SceneMeta("s", datetime=dt.datetime(2021, 7, 2, 12, 0, tzinfo=dt.timezone.utc)),
        SceneMeta("s", datetime=dt.datetime(2021, 7, 2, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        SceneMeta("s"),
    ]
    out = enc(scenes, dtype=torch.float64)
    assert out.shape == (4, 6) and enc.out_dim == 6
    np.testing.assert_allclose(out[0].numpy(), [0, 1, 0, 1, 20 / 25, 0], atol=1e-12)
    # 2 July noon is day 183 of 365 (+ half a day): close to half a year; noon is half a day
    frac = (182 + 0.5) / 365
    np.testing.assert_allclose(
        out[1].numpy(),
        [math.sin(2 * math.pi * frac), math.cos(2 * math.pi * frac), 0, -1, (21 + frac) / 25, 0],
        atol=1e-12,
    )
    assert torch.allclose(out[1], out[2])  # same instant in another time zone
    assert torch.equal(out[3], torch.tensor([0, 0, 0, 0, 0, 1], dtype=torch.float64))
    from atomizer.encoders import datetime_fields

    fields, present = datetime_fields([dt.date(2020, 1, 1), dt.datetime(2020, 1, 1)])
    assert torch.equal(fields[0], fields[1]) and present.all()  # a bare date means midnight UTC


def test_location_encoder_known_values_and_missing():
    enc = LocationEncoder(num_bands=2, max_freq=3.0)
    assert enc.out_dim == 3 + 12 + 1
    scenes = [SceneMeta("s", lon=0.0, lat=0.0), SceneMeta("s", lon=90.0, lat=0.0),
              SceneMeta("s", lon=12.0, lat=90.0), SceneMeta("s"), SceneMeta("s", lon=float("nan"), lat=3.0)]
    out = enc(scenes, dtype=torch.float64)
    np.testing.assert_allclose(out[0, :3].numpy(), [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(out[1, :3].numpy(), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(out[2, :3].numpy(), [0, 0, 1], atol=1e-12)
    assert torch.all(out[:3, -1] == 0)
    for row in out[3:]:
        assert torch.all(row[:-1] == 0) and row[-1] == 1
    # Fourier features of each of x, y, z follow the unit vector
    np.testing.assert_allclose(out[0, 3:7].numpy(), [0.0, 0.0, -1.0, -1.0], atol=1e-12)  # x = 1, f = 1, 3
    bare = LocationEncoder(num_bands=0)
    assert bare.out_dim == 4 and bare(scenes[:1]).shape == (1, 4)


# --- registration ------------------------------------------------------------------------------------
def test_builtin_encoders_are_registered_through_the_hook(host):
    assert set(BUILTIN_ENCODERS) <= set(host.encoders.names())
    for name in BUILTIN_ENCODERS:
        assert host.encoders.provider(name) == "atomizer.encoders.plugin"


def test_every_registered_encoder_has_a_table_row():
    missing = sorted(set(REGISTERED_ENCODERS) - set(ENCODER_TABLE))
    assert not missing, f"encoders {missing} are registered but have no row in ENCODER_TABLE of {__name__}"


@pytest.mark.parametrize("name", REGISTERED_ENCODERS)
def test_every_registered_encoder_builds_with_defaults(host, name):
    if name not in ENCODER_TABLE:
        pytest.fail(f"encoder {name!r} is registered but has no row in ENCODER_TABLE; add (role, params)")
    role, params = ENCODER_TABLE[name]
    encoder = host.encoders.get(name)(**params)
    assert isinstance(encoder, torch.nn.Module)
    assert list(encoder.parameters()) == []  # fixed feature maps
    assert encoder.role == role
    assert isinstance(encoder.out_dim, int) and encoder.out_dim >= 1
    assert host.encoders.provider(name)  # every registration records who made it


def test_spectral_cache_returns_the_same_rows_and_survives_overflow(monkeypatch):
    import atomizer.encoders.spectral as spectral_module

    monkeypatch.setattr(spectral_module, "MAX_CACHED_BANDS", 2)
    enc = SpectralEncoder()
    table = [band(490, 65, name="a"), band(560, 35, name="b"), band(665, 30, name="c")]
    first = enc(table, dtype=torch.float64)
    assert len(enc._cache) <= 3
    again = enc(list(reversed(table)) + table[:1], dtype=torch.float64)
    assert torch.equal(again, torch.stack([first[2], first[1], first[0], first[0]]))
    assert torch.equal(first, SpectralEncoder()(table, dtype=torch.float64))


def test_components_are_the_share_of_each_gaussians_mass_inside_the_band():
    from atomizer.encoders.spectral import boxcar_integrals

    mu, sigma = gaussian_layout([[400, 1000, 6], [1000, 2500, 3]])
    from scipy.stats import norm

    lo, hi = 300.0, 2900.0
    shares = boxcar_integrals(torch.tensor((lo + hi) / 2, dtype=torch.float64),
                              torch.tensor(hi - lo, dtype=torch.float64), mu, sigma)
    expected = norm.cdf(hi, mu.numpy(), sigma.numpy()) - norm.cdf(lo, mu.numpy(), sigma.numpy())
    np.testing.assert_allclose(shares.numpy(), expected, rtol=1e-12)
    assert float(shares.min()) > 0.9  # every Gaussian nearly wholly inside: each counts ~1
    at_centre = boxcar_integrals(mu[2], torch.tensor(1e-6, dtype=torch.float64), mu, sigma)
    assert at_centre[2] == pytest.approx(1e-6 / (sigma[2] * math.sqrt(2 * math.pi)).item(), rel=1e-6)
    # sigmas follow the mean spacing of each centre's neighbours, so widths change gradually
    gaps = torch.diff(mu)
    assert torch.allclose(sigma[1:-1], (gaps[:-1] + gaps[1:]) / 2)
    assert sigma[0] == gaps[0] and sigma[-1] == gaps[-1]


def test_plot_spectral_basis_writes_the_file_atomically(tmp_path):
    from atomizer.encoders.plot import plot_spectral_basis
    from atomizer.errors import OutputError
    from atomizer.sensors.spec import SensorSpec

    spec = SensorSpec(id="tiny", name="Tiny", sources=["test"], bands=[band(490, 65), band(1610, 90, name="c")])
    out = plot_spectral_basis(tmp_path / "basis.png", specs=[spec], dpi=40)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["basis.png"]  # no temporary left behind
    with pytest.raises(OutputError, match="does not exist"):
        plot_spectral_basis(tmp_path / "missing" / "basis.png")


def test_casting_a_module_to_half_precision_does_not_round_encoder_constants():
    enc = torch.nn.ModuleDict({"s": SpectralEncoder(), "p": PositionEncoder(), "v": FourierValueEncoder()})
    reference = enc["s"]([band(2202.4, 175)], dtype=torch.float64)
    enc.to(torch.bfloat16)
    assert enc["s"].mu_nm.dtype == torch.float64 and enc["p"].frequencies.dtype == torch.float64
    assert torch.equal(enc["s"]([band(2202.4, 175)], dtype=torch.float64), reference)
    assert enc["p"].encode_1d(torch.tensor([600.0], dtype=torch.float64))[0, -1] == 1.0
