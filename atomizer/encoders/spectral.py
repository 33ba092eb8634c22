"""``spectral``: a band's spectral position as a Gaussian radial-basis encoding (paper section 3.1).

K Gaussian densities ``g_i = N(mu_i, sigma_i^2)`` (unit area) are laid out NON-uniformly: dense
and narrow where sensors crowd (400-1000 nm), wider and sparser across the short-wave infrared (to
2500 nm), and a few wide ones over the thermal infrared (up to 15 um). Component i of a band is the
integral of g_i over ``[centre - fwhm/2, centre + fwhm/2]`` in closed form with erf: the share of
Gaussian i's mass inside the band, so a Gaussian wholly inside a band counts 1 whatever its width,
and the wide thermal Gaussians' tails barely touch visible bands. When the band has a tabulated
``response`` (and ``use_response``), it is the integral of g_i times the piecewise-linear response
instead (also exact: erf and exp terms per table segment). The vector is then L2-normalised, so
the scale of the response does not matter.

Properties: unit norm; smooth in centre and width; it depends only on the band's physics (centre,
FWHM, response), never on its name, sensor or GSD, so identical bands of two sensors share one
encoding. Computed in float64 per band (B rows, never per atom) and then cast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from atomizer.errors import EncoderError
from atomizer.sensors.spec import Band

#: Default layout: ``(start_nm, stop_nm, count)`` segments; each holds ``count`` Gaussians at the
#: centres of ``count`` equal cells. Each sigma is ``sigma_scale`` x the mean distance to the two
#: neighbouring centres, so widths change gradually where segments meet.
#: 12.5 nm spacing over 400-1000 nm, 62.5 nm over 1000-2500 nm, about 2 um over the thermal.
DEFAULT_LAYOUT_NM: tuple[tuple[float, float, int], ...] = (
    (300.0, 400.0, 2),
    (400.0, 1000.0, 48),
    (1000.0, 2500.0, 24),
    (2500.0, 15000.0, 6),
)
DEFAULT_SIGMA_SCALE = 1.0
#: A band centre must lie within this many sigmas of some Gaussian (else: EncoderError).
COVERAGE_SIGMAS = 3.0
_MIN_NORM = 1e-300
#: Band rows the encoder keeps (float64, K values each); the cache is emptied when it would overflow.
MAX_CACHED_BANDS = 4096

_SQRT2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def gaussian_layout(layout_nm: Sequence[Sequence[float]], sigma_scale: float = DEFAULT_SIGMA_SCALE
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres and sigmas (nm, float64, ``(K,)`` each) of the Gaussians of ``layout_nm``."""
    if not layout_nm:
        raise EncoderError("spectral: layout is empty; give [start_nm, stop_nm, count] segments")
    if not (isinstance(sigma_scale, (int, float)) and math.isfinite(sigma_scale) and sigma_scale > 0):
        raise EncoderError(f"spectral: sigma_scale must be a positive number, got {sigma_scale!r}")
    mus, steps = [], []
    previous_stop = -math.inf
    for i, seg in enumerate(layout_nm):
        try:
            start, stop, count = float(seg[0]), float(seg[1]), seg[2]
            if len(seg) != 3:
                raise ValueError
        except (TypeError, ValueError, IndexError, KeyError):
            raise EncoderError(
                f"spectral: layout[{i}] is {seg!r}; each segment is [start_nm, stop_nm, count]"
            ) from None
        if isinstance(count, bool) or not isinstance(count, (int, float)) or int(count) != count or count < 1:
            raise EncoderError(f"spectral: layout[{i}] count must be an integer >= 1, got {count!r}")
        if not (math.isfinite(start) and math.isfinite(stop) and 0 < start < stop):
            raise EncoderError(
                f"spectral: layout[{i}] needs 0 < start_nm < stop_nm, got {start:g}, {stop:g}"
            )
        if start < previous_stop:
            raise EncoderError(f"spectral: layout[{i}] overlaps the previous segment; sort the segments")
        previous_stop = stop
        count = int(count)
        step = (stop - start) / count
        mus.append(start + step * (torch.arange(count, dtype=torch.float64) + 0.5))
        steps.append(step)
    mu = torch.cat(mus)
    if mu.numel() == 1:
        return mu, torch.tensor(steps, dtype=torch.float64) * float(sigma_scale)
    gap = torch.diff(mu)
    spacing = (torch.cat([gap[:1], gap]) + torch.cat([gap, gap[-1:]])) / 2
    return mu, spacing * float(sigma_scale)


def _erf_diff(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """``erf(zb) - erf(za)`` for ``za <= zb``, accurate in the tails (two erfc calls).

    ``erf(b) - erf(a) = erfc(a) - erfc(b)`` always; mirroring the interval so that its midpoint
    is >= 0 keeps both erfc arguments away from the far left tail where erfc saturates at 2.
    """
    flip = (za + zb) < 0
    lo = torch.where(flip, -zb, za)
    hi = torch.where(flip, -za, zb)
    return (torch.special.erfc(lo) - torch.special.erfc(hi)).clamp_min(0.0)


def boxcar_integrals(center_nm: torch.Tensor, fwhm_nm: torch.Tensor, mu: torch.Tensor,
                     sigma: torch.Tensor) -> torch.Tensor:
    """``(...,)`` bands -> ``(..., K)``: integral of each unit-area Gaussian over the band."""
    c = center_nm.unsqueeze(-1)
    half = fwhm_nm.unsqueeze(-1) / 2
    za = (c - half - mu) / (sigma * _SQRT2)
    zb = (c + half - mu) / (sigma * _SQRT2)
    return 0.5 * _erf_diff(za, zb)


def response_integrals(wavelength_nm: torch.Tensor, response: torch.Tensor, mu: torch.Tensor,
                       sigma: torch.Tensor) -> torch.Tensor:
    """``(K,)``: integral of each unit-area Gaussian times the piecewise-linear response.

    On a table segment ``[w_j, w_j+1]`` with ``r(l) = A + B t`` in ``t = (l - mu) / sigma``:
    ``A (Phi(tb) - Phi(ta)) + B (phi(ta) - phi(tb))`` with Phi, phi the standard normal CDF and
    density, i.e. ``A (erf(tb/sqrt2) - erf(ta/sqrt2)) / 2 + B (exp(-ta^2/2) - exp(-tb^2/2)) / sqrt(2 pi)``.
    """
    t = (wavelength_nm[:, None] - mu) / sigma  # (J + 1, K) table nodes in sigma units
    erf_t = torch.erf(t / _SQRT2)  # once per node; float64 and the coverage check make the
    exp_t = torch.exp(-t * t / 2)  # differences below accurate enough
    w0, w1 = wavelength_nm[:-1, None], wavelength_nm[1:, None]  # (J, 1)
    r0, r1 = response[:-1, None], response[1:, None]
    slope = (r1 - r0) / (w1 - w0)
    a = r0 + slope * (mu - w0)  # each segment's line evaluated at mu: (J, K)
    b = slope * sigma
    segments = 0.5 * a * (erf_t[1:] - erf_t[:-1]) + b * (exp_t[:-1] - exp_t[1:]) / _SQRT_2PI
    # the integrand is >= 0; far from a table the two terms cancel to within rounding
    return segments.sum(dim=0).clamp_min(0.0)


class SpectralEncoder(nn.Module):
    """``spectral``: unit-norm Gaussian RBF encoding of each band's spectral window.

    :param layout: ``[[start_nm, stop_nm, count], ...]`` segments (default :data:`DEFAULT_LAYOUT_NM`).
    :param sigma_scale: sigma of each Gaussian in units of the mean distance to its two neighbours.
    :param use_response: integrate against a band's tabulated response when it has one.
    """

    role = "spectral"

    def __init__(self, *, layout: Sequence[Sequence[float]] = DEFAULT_LAYOUT_NM,
                 sigma_scale: float = DEFAULT_SIGMA_SCALE, use_response: bool = True) -> None:
        super().__init__()
        mu, sigma = gaussian_layout(layout, sigma_scale)
        self.layout = tuple((float(a), float(b), int(n)) for a, b, n in layout)
        self.sigma_scale = float(sigma_scale)
        self.use_response = bool(use_response)
        # float64 on the CPU, deliberately not buffers: ``model.half()`` / ``.to(bfloat16)`` must
        # not round the centres (bfloat16 steps are 8 nm at 2000 nm); rows are cast at the end.
        self.mu_nm = mu
        self.sigma_nm = sigma
        self._cache: dict[tuple, torch.Tensor] = {}  # band physics -> float64 row (CPU)

    @property
    def out_dim(self) -> int:
        """K, the number of Gaussians."""
        return int(self.mu_nm.shape[0])

    @property
    def coverage_nm(self) -> tuple[float, float]:
        """Wavelengths (nm) the basis covers: from the lowest ``mu - 3 sigma`` to the highest ``mu + 3 sigma``."""
        return (float((self.mu_nm - COVERAGE_SIGMAS * self.sigma_nm).min()),
                float((self.mu_nm + COVERAGE_SIGMAS * self.sigma_nm).max()))

    def _check_coverage(self, center_nm: torch.Tensor, names: Sequence[str] | None = None) -> None:
        lo, hi = self.coverage_nm
        outside = ((center_nm < lo) | (center_nm > hi) | ~torch.isfinite(center_nm)).flatten()
        if bool(outside.any()):
            idx = outside.nonzero().flatten().tolist()
            if names is not None:
                what = ", ".join(f"{names[i]} at {float(center_nm.flatten()[i]):g} nm" for i in idx[:5])
            else:
                what = ", ".join(f"{float(center_nm.flatten()[i]):g} nm" for i in idx[:5])
            raise EncoderError(
                f"spectral: {len(idx)} band(s) ({what}) lie outside the Gaussian basis, which covers "
                f"{lo:g}-{hi:g} nm; extend the layout to cover them"
            )

    @staticmethod
    def _normalise(raw: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(raw, dim=-1, keepdim=True)
        if not bool((norm > _MIN_NORM).all()):  # unreachable for centres inside the coverage
            raise EncoderError("spectral: a band's encoding vanished numerically; extend the layout")
        return raw / norm

    def encode(self, center_nm: torch.Tensor, fwhm_nm: torch.Tensor) -> torch.Tensor:
        """``(...,)`` centres and FWHMs in nm (boxcar bands) -> ``(..., K)`` unit vectors.

        Computed in float64 and returned in ``center_nm``'s floating dtype.
        """
        dtype = center_nm.dtype if torch.is_floating_point(center_nm) else torch.float32
        c = center_nm.to(torch.float64)
        w = fwhm_nm.to(device=c.device, dtype=torch.float64)
        self._check_coverage(c)
        raw = boxcar_integrals(c, w, self.mu_nm.to(c.device), self.sigma_nm.to(c.device))
        return self._normalise(raw).to(dtype)

    def _band_key(self, band: Band) -> tuple:
        response = band.response if self.use_response else None
        table = None if response is None else (tuple(response.wavelength_nm), tuple(response.value))
        return (band.center_wavelength_nm, band.fwhm_nm, table)

    def _encode_bands(self, bands: Sequence[Band]) -> torch.Tensor:
        """``(B, K)`` float64 unit vectors on the CPU (no cache)."""
        mu, sigma = self.mu_nm.cpu(), self.sigma_nm.cpu()
        c = torch.tensor([b.center_wavelength_nm for b in bands], dtype=torch.float64)
        w = torch.tensor([b.fwhm_nm for b in bands], dtype=torch.float64)
        self._check_coverage(c, [b.name for b in bands])
        raw = boxcar_integrals(c, w, mu, sigma)
        if self.use_response:
            for i, band in enumerate(bands):  # per band (B rows), never per atom
                if band.response is not None:
                    table = torch.tensor(band.response.wavelength_nm, dtype=torch.float64)
                    values = torch.tensor(band.response.value, dtype=torch.float64)
                    raw[i] = response_integrals(table, values, mu, sigma)
        return self._normalise(raw)

    def forward(self, bands: Sequence[Band], *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
        """A band table (B bands) -> ``(B, K)`` unit vectors.

        Rows are cached per band physics (centre, FWHM, response), so a band table seen before
        (the usual case: one per sensor) costs a lookup.
        """
        if not bands:
            return torch.zeros(0, self.out_dim, dtype=dtype, device=device)
        keys = [self._band_key(b) for b in bands]
        found = {k: self._cache[k] for k in keys if k in self._cache}
        missing = {k: b for k, b in zip(keys, bands) if k not in found}
        if missing:
            new = dict(zip(missing, self._encode_bands(list(missing.values()))))
            found.update(new)
            if len(self._cache) + len(new) > MAX_CACHED_BANDS:
                self._cache.clear()
            self._cache.update(new)
        out = torch.stack([found[k] for k in keys])
        return out.to(dtype=dtype, device=device)

    def extra_repr(self) -> str:
        return f"K={self.out_dim}, layout={list(self.layout)}, sigma_scale={self.sigma_scale}"
