"""Synthetic LATISS fields for the detection tests (independent of the package's own template code).

Donuts are uniform annuli (outer 96.6 px, inner 34.1 px: AuxTel at 0.8 mm) blurred by a Gaussian seeing,
placed with sub-pixel accuracy by a Fourier shift; in-focus stars are Gaussians. Noise is Gaussian with the
variance of Poisson sky + signal + read noise, in electrons. Stars come from a random catalog placed through a
true boresight WCS; the header carries a pointing that may differ from the truth by a shift and a rotation.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray
from scipy import ndimage

from lsst.ts.auxtelwep.exposure import Exposure, MaskBit, boresight_wcs
from lsst.ts.auxtelwep.instrument import BORESIGHT_PIXEL
from lsst.ts.auxtelwep.refcat import RefCatalog

OUTER_PX = 96.58
INNER_PX = 34.05
SCALE = 0.0955  # arcsec/px, the optical model's plate scale
FWHM_PX = 1.0 / SCALE  # 1 arcsec seeing
ZERO_POINT = 27.0  # mag of a 1 e- star (only the ordering of magnitudes matters)
FULL_SHAPE = (4000, 4072)


@functools.lru_cache(maxsize=4)
def _donut_spectrum(outer: float, inner: float, sigma: float, half: int) -> NDArray:
    n = 2 * half + 1
    over = 4
    c = (np.arange(n * over) - (n * over - 1) / 2.0) / over
    r = np.hypot(c[:, None], c[None, :])
    img = ((r <= outer) & (r >= inner)).astype(float)
    img = ndimage.gaussian_filter(img, sigma * over)
    img = img.reshape(n, over, n, over).mean(axis=(1, 3))
    img /= img.sum()
    return np.fft.fft2(img)


def donut_image(
    dx: float, dy: float, *, outer: float = OUTER_PX, inner: float = INNER_PX, fwhm: float = FWHM_PX
):
    """Unit-flux donut stamp centred at (half + dx, half + dy)."""
    sigma = fwhm / 2.3548
    half = math.ceil(outer + 5 * sigma)
    spec = _donut_spectrum(outer, inner, sigma, half)
    shifted = ndimage.fourier_shift(spec, (dy, dx))
    return np.real(np.fft.ifft2(shifted)), half


def star_image(dx: float, dy: float, *, fwhm: float = FWHM_PX):
    sigma = fwhm / 2.3548
    half = math.ceil(5 * sigma)
    c = np.arange(-half, half + 1, dtype=float)
    g = np.exp(-((c[None, :] - dx) ** 2 + (c[:, None] - dy) ** 2) / (2 * sigma**2))
    return g / g.sum(), half


def add_stamp(image: NDArray, stamp: NDArray, half: int, x: float, y: float) -> None:
    ix, iy = round(x), round(y)
    ny, nx = image.shape
    r0, r1 = iy - half, iy + half + 1
    c0, c1 = ix - half, ix + half + 1
    sr0, sc0 = max(0, -r0), max(0, -c0)
    r0c, c0c, r1c, c1c = max(r0, 0), max(c0, 0), min(r1, ny), min(c1, nx)
    if r0c >= r1c or c0c >= c1c:
        return
    image[r0c:r1c, c0c:c1c] += stamp[sr0 : sr0 + r1c - r0c, sc0 : sc0 + c1c - c0c]


@dataclasses.dataclass
class Field:
    """A star field: catalog, true WCS and true pixel positions."""

    refcat: RefCatalog
    ra0: float
    dec0: float
    rotpa: float
    x: NDArray
    y: NDArray
    flux: NDArray
    shape: tuple[int, int]


def make_field(
    rng: np.random.Generator,
    *,
    n_stars: int = 12,
    shape: tuple[int, int] = FULL_SHAPE,
    ra0: float = 150.0,
    dec0: float = -30.0,
    rotpa: float = 20.0,
    flux_range: tuple[float, float] = (3e5, 3e6),
    min_separation_px: float = 260.0,
    margin_px: float = 150.0,
    positions: NDArray | None = None,
    extra_faint: int = 0,
) -> Field:
    """Random isolated stars on the chip (plus ``extra_faint`` faint catalog-only stars anywhere)."""
    wcs = boresight_wcs(ra0, dec0, rotpa, scale_arcsec_per_px=SCALE)
    if positions is None:
        pts: list[tuple[float, float]] = []
        while len(pts) < n_stars:
            p = (
                rng.uniform(margin_px, shape[1] - 1 - margin_px),
                rng.uniform(margin_px, shape[0] - 1 - margin_px),
            )
            if all(math.hypot(p[0] - q[0], p[1] - q[1]) >= min_separation_px for q in pts):
                pts.append(p)
        positions = np.array(pts)
    x, y = positions[:, 0].astype(float), positions[:, 1].astype(float)
    flux = np.exp(rng.uniform(np.log(flux_range[0]), np.log(flux_range[1]), size=len(x)))
    if extra_faint:
        fx = rng.uniform(-500, shape[1] + 500, extra_faint)
        fy = rng.uniform(-500, shape[0] + 500, extra_faint)
        x, y = np.concatenate([x, fx]), np.concatenate([y, fy])
        flux = np.concatenate([flux, np.full(extra_faint, 50.0)])
    ra, dec = wcs.all_pix2world(x, y, 0)
    mag = ZERO_POINT - 2.5 * np.log10(flux)
    return Field(RefCatalog.from_arrays(ra, dec, mag), ra0, dec0, rotpa, x, y, flux, shape)


def header_for(
    field: Field, *, shift_px: tuple[float, float] = (0.0, 0.0), rotation_deg: float = 0.0, obsid: str = "SIM"
) -> fits.Header:
    """A header whose RA/DEC/ROTPA are off by a boresight shift (px) and a rotation (deg)."""
    wcs = boresight_wcs(field.ra0, field.dec0, field.rotpa, scale_arcsec_per_px=SCALE)
    ra, dec = wcs.all_pix2world([[BORESIGHT_PIXEL[0] + shift_px[0], BORESIGHT_PIXEL[1] + shift_px[1]]], 0)[0]
    header = fits.Header()
    header["RA"] = float(ra)
    header["DEC"] = float(dec)
    header["ROTPA"] = field.rotpa + rotation_deg
    header["OBSID"] = obsid
    return header


def render(
    field: Field,
    rng: np.random.Generator,
    *,
    kind: str = "donut",
    offset_px: tuple[float, float] = (0.0, 0.0),
    sky: float = 400.0,
    read_noise: float = 9.0,
    header: fits.Header | None = None,
    saturation: float | None = None,
    cosmic_rays: int = 0,
    hot_column: int | None = None,
    extra_sources: list[tuple[float, float, float]] | None = None,
) -> Exposure:
    """Render the field as a defocal ('donut') or in-focus ('star') image in electrons."""
    signal = np.zeros(field.shape, dtype=np.float64)
    sources = list(zip(field.x + offset_px[0], field.y + offset_px[1], field.flux, strict=True))
    sources += extra_sources or []
    for x, y, f in sources:
        if f <= 0:
            continue
        dx, dy = x - round(x), y - round(y)
        stamp, half = donut_image(dx, dy) if kind == "donut" else star_image(dx, dy)
        add_stamp(signal, f * stamp, half, x, y)
    noise = rng.standard_normal(field.shape, dtype=np.float32)
    noise *= np.sqrt(sky + np.clip(signal, 0, None) + read_noise**2).astype(np.float32)
    image = (signal + sky).astype(np.float32) + noise
    mask = np.zeros(field.shape, dtype=np.uint16)
    for _ in range(cosmic_rays):
        # A short track of a few bright pixels.
        x0, y0 = rng.uniform(20, field.shape[1] - 20), rng.uniform(20, field.shape[0] - 20)
        angle, length = rng.uniform(0, np.pi), rng.integers(1, 8)
        for t in range(int(length)):
            image[int(y0 + t * np.sin(angle)), int(x0 + t * np.cos(angle))] += rng.uniform(2000, 20000)
    if hot_column is not None:
        image[:, hot_column] += 3000.0
    if saturation is not None:
        sat = image >= saturation
        image[sat] = saturation
        mask[sat] |= np.uint16(MaskBit.SAT)
    hdr = header if header is not None else fits.Header()
    hdr = hdr.copy()
    hdr["BUNIT"] = "electron"
    return Exposure(image=image, mask=mask, header=hdr, wcs=None, units="electron")
