"""Donut templates and matched-filter detection on a binned image.

The template is the pupil model at the current defocus: a uniform annulus with the outer radius of
`AuxTel.donut_radii_px` and the inner radius of the 0.3525 obscuration, blurred by a Gaussian seeing and
binned like the image. The detection kernel is that model minus a ring just outside it with the same total
weight, so the kernel has zero sum and a smooth background does not change the correlation.

For a donut of flux ``F`` centred at ``c``, the correlation map is ``F * response(q - c)``, with ``response``
the cross-correlation of the unit-flux model with the kernel. Peaks are taken brightest first, and a peak
is kept only if it stands out from what the peaks already kept predict there (so the skirt of a bright
donut is not a second donut, while a real neighbour is). Each kept peak must then show light in most of
eight azimuthal sectors of its annulus: a cosmic ray or a defect column lights one or a few sectors only.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from numpy.typing import NDArray
from scipy import fft, ndimage

from .image import BinnedImage, bin_image, local_maxima

__all__ = ["Candidate", "DonutTemplate", "correlate", "donut_template", "find_donuts"]

_OVERSAMPLE = 2
_RING_GAP_SIGMA = 3.0  # the background ring starts this many blur sigmas outside the outer radius...
_RING_GAP_PX = 2.0  # ...plus this many pixels
_RING_WIDTH_PX = 40.0  # wide, so the ring adds little noise (its weight per pixel is small)
_N_SECTORS = 8
_MIN_LIT_SECTORS = 6  # of 8: sectors whose flux exceeds 2 sigma
_SIDELOBE_MARGIN = 0.3  # a peak must exceed the neighbours' predicted skirt by 30 % of it (model error)


@dataclasses.dataclass(frozen=True, eq=False)
class DonutTemplate:
    """A donut model and its zero-sum detection kernel, on a grid binned by ``binning``.

    Attributes
    ----------
    model : `numpy.ndarray`, shape (k, k), k odd
        Unit-flux donut image (sums to 1), centred on the middle pixel, read-only.
    kernel : `numpy.ndarray`, shape (k, k)
        ``model`` minus a uniform background ring of equal weight (sums to 0), read-only.
    response : `numpy.ndarray`, shape (2k-1, 2k-1)
        Correlation of ``model`` with ``kernel``: the correlation map of a unit-flux donut (centred,
        read-only).
    kernel_norm : `float`
        ``sqrt(sum(kernel**2))``: the correlation noise is ``sigma * kernel_norm`` for white noise ``sigma``.
    sectors : `numpy.ndarray` of int, shape (k, k)
        Azimuthal sector (0-7) of each pixel in the annulus, -1 elsewhere.
    ring : `numpy.ndarray` of bool, shape (k, k)
        The background ring.
    outer_px, inner_px, blur_sigma_px : `float`
        Geometry, full-resolution pixels.
    binning : `int`
        Grid binning.
    """

    model: NDArray[np.float64]
    kernel: NDArray[np.float64]
    response: NDArray[np.float64]
    kernel_norm: float
    sectors: NDArray[np.int64]
    ring: NDArray[np.bool_]
    outer_px: float
    inner_px: float
    blur_sigma_px: float
    binning: int

    @property
    def half(self) -> int:
        """Half-size of the template grid, binned pixels."""
        return self.model.shape[0] // 2

    @property
    def peak_response(self) -> float:
        """Correlation of a unit-flux donut at zero offset."""
        return float(self.response[self.response.shape[0] // 2, self.response.shape[1] // 2])

    @property
    def aperture_radius_px(self) -> float:
        """Radius that holds the blurred donut, full-resolution pixels."""
        return self.outer_px + 2.5 * self.blur_sigma_px


def _readonly(arr: NDArray) -> NDArray:
    arr.setflags(write=False)
    return arr


@functools.lru_cache(maxsize=32)
def donut_template(outer_px: float, inner_px: float, *, binning: int, blur_sigma_px: float) -> DonutTemplate:
    """Build (once per argument set) the donut template.

    Parameters
    ----------
    outer_px, inner_px : `float`
        Outer and inner radius of the geometric donut, full-resolution pixels.
    binning : `int`
        Binning of the grid the template is used on.
    blur_sigma_px : `float`
        Gaussian sigma of the seeing, full-resolution pixels.

    Returns
    -------
    template : `DonutTemplate`
    """
    b = int(binning)
    ring_outer = outer_px + _RING_GAP_SIGMA * blur_sigma_px + _RING_GAP_PX + _RING_WIDTH_PX
    half = math.ceil(ring_outer / b) + 1
    k = 2 * half + 1
    sub = b * _OVERSAMPLE
    n = k * sub
    # Radius of every oversampled pixel centre from the template centre, full-resolution pixels.
    coords = (np.arange(n) - (n - 1) / 2.0) / _OVERSAMPLE
    r = np.hypot(coords[:, None], coords[None, :])
    annulus = ((r <= outer_px) & (r >= inner_px)).astype(float)
    if blur_sigma_px > 0:
        annulus = ndimage.gaussian_filter(annulus, blur_sigma_px * _OVERSAMPLE, mode="constant")
    model = bin_image(annulus, sub).astype(float)
    model /= model.sum()

    centres = np.arange(k) - half
    rb = np.hypot(centres[:, None], centres[None, :]) * b
    ring_inner = outer_px + _RING_GAP_SIGMA * blur_sigma_px + _RING_GAP_PX
    ring = (rb >= ring_inner) & (rb <= ring_outer)
    kernel = model.copy()
    kernel[ring] -= model.sum() / ring.sum()
    response = _correlate_full(model, kernel)

    lit = (rb >= max(inner_px - blur_sigma_px, 0.0)) & (rb <= outer_px + blur_sigma_px)
    angle = np.arctan2(centres[:, None], centres[None, :])
    sectors = np.where(lit, np.floor((angle + np.pi) / (2 * np.pi) * _N_SECTORS).astype(int) % _N_SECTORS, -1)
    return DonutTemplate(
        model=_readonly(model),
        kernel=_readonly(kernel),
        response=_readonly(response),
        kernel_norm=float(np.sqrt(np.sum(kernel**2))),
        sectors=_readonly(sectors),
        ring=_readonly(ring),
        outer_px=float(outer_px),
        inner_px=float(inner_px),
        blur_sigma_px=float(blur_sigma_px),
        binning=b,
    )


def _correlate_full(a: NDArray, b: NDArray) -> NDArray[np.float64]:
    """Full 2-D cross-correlation of ``a`` with ``b`` (output shape ``a.shape + b.shape - 1``), by FFT."""
    out_shape = tuple(n + m - 1 for n, m in zip(a.shape, b.shape, strict=True))
    shape = tuple(fft.next_fast_len(n, real=True) for n in out_shape)
    spectrum = fft.rfft2(a, s=shape) * fft.rfft2(b[::-1, ::-1], s=shape)
    return fft.irfft2(spectrum, s=shape)[: out_shape[0], : out_shape[1]]


@functools.lru_cache(maxsize=16)
def _kernel_fft(template: DonutTemplate, shape: tuple[int, int]) -> NDArray[np.complex64]:
    """FFT of the kernel laid out for correlation on a grid of ``shape`` (circular, centred at (0, 0))."""
    padded = np.zeros(shape, dtype=np.float32)
    k = template.kernel.shape[0]
    h = k // 2
    # Correlation = convolution with the flipped kernel; roll its centre to (0, 0).
    padded[:k, :k] = template.kernel[::-1, ::-1]
    padded = np.roll(padded, (-h, -h), axis=(0, 1))
    return _readonly(fft.rfft2(padded))


def correlate(data: NDArray, template: DonutTemplate) -> NDArray[np.float32]:
    """Correlate ``data`` with the template's kernel (zero padding at the edges).

    Parameters
    ----------
    data : `numpy.ndarray`, shape (ny, nx)
        Background-subtracted image on the template's grid.
    template : `DonutTemplate`

    Returns
    -------
    corr : `numpy.ndarray`, float32, shape (ny, nx)
        ``corr[q] = sum_p data[q + p] * kernel[p]``, image units times flux fraction.
    """
    k = template.kernel.shape[0]
    shape = (
        fft.next_fast_len(data.shape[0] + k, real=True),
        fft.next_fast_len(data.shape[1] + k, real=True),
    )
    spectrum = fft.rfft2(np.asarray(data, dtype=np.float32), s=shape)
    spectrum *= _kernel_fft(template, shape)
    return fft.irfft2(spectrum, s=shape)[: data.shape[0], : data.shape[1]].astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A peak of the correlation map.

    Attributes
    ----------
    x, y : `float`
        Position, full-resolution pixels (0-based, x = column), from the binned peak.
    snr : `float`
        Peak of the matched filter in sigma.
    flux : `float`
        Flux estimated from the peak (correlation / response), image units.
    accepted : `bool`
        Whether it passed the sidelobe and sector tests.
    reason : `str`
        Why it was not accepted (empty when accepted).
    """

    x: float
    y: float
    snr: float
    flux: float
    accepted: bool = True
    reason: str = ""


def _subpixel(values: NDArray, i: int, j: int) -> tuple[float, float]:
    """Parabolic peak offset along each axis from the 3 x 3 neighbourhood (clamped to +-0.5)."""
    ny, nx = values.shape
    dy = dx = 0.0
    if 0 < i < ny - 1:
        lo, mid, hi = values[i - 1, j], values[i, j], values[i + 1, j]
        den = lo - 2 * mid + hi
        dy = float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5)) if den < 0 else 0.0
    if 0 < j < nx - 1:
        lo, mid, hi = values[i, j - 1], values[i, j], values[i, j + 1]
        den = lo - 2 * mid + hi
        dx = float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5)) if den < 0 else 0.0
    return dx, dy


def _relocate(
    corr: NDArray, kept: list[tuple[int, int, float]], template: DonutTemplate, i: int, j: int, *, half: int
) -> tuple[int, int, float, float, float]:
    """Peak of ``corr`` minus the kept donuts' responses within ``half`` bins of ``(i, j)``.

    Returns the new bin ``(i, j)``, its full-resolution ``(x, y)`` and the residual correlation there.
    """
    resp = template.response
    rh = resp.shape[0] // 2
    ny, nx = corr.shape
    r0, r1, c0, c1 = max(i - half, 0), min(i + half + 1, ny), max(j - half, 0), min(j + half + 1, nx)
    residual = np.array(corr[r0:r1, c0:c1], dtype=float)
    rows, cols = np.arange(r0, r1), np.arange(c0, c1)
    for ki, kj, kflux in kept:
        di, dj = rows - ki + rh, cols - kj + rh
        ok_i, ok_j = (di >= 0) & (di < resp.shape[0]), (dj >= 0) & (dj < resp.shape[1])
        if ok_i.any() and ok_j.any():
            residual[np.ix_(ok_i, ok_j)] -= kflux * resp[np.ix_(di[ok_i], dj[ok_j])]
    wi, wj = np.unravel_index(int(np.argmax(residual)), residual.shape)
    dx, dy = _subpixel(residual, int(wi), int(wj))
    b = template.binning
    ni, nj = r0 + int(wi), c0 + int(wj)
    return ni, nj, (nj + dx) * b + (b - 1) / 2.0, (ni + dy) * b + (b - 1) / 2.0, float(residual[wi, wj])


def sector_test(binned: BinnedImage, template: DonutTemplate, i: int, j: int) -> tuple[int, NDArray]:
    """Count the annulus sectors lit above 2 sigma around binned pixel ``(row i, col j)``.

    Parameters
    ----------
    binned : `BinnedImage`
        The binned image.
    template : `DonutTemplate`
        Binned template giving the sectors and the background ring.
    i, j : `int`
        Row and column of the binned pixel.

    Returns
    -------
    n_lit : `int`
        Sectors (of 8) whose background-subtracted flux exceeds twice its noise.
    fluxes : `numpy.ndarray`, shape (8,)
        Sector fluxes, image units per full-resolution pixel times bins.
    """
    h = template.half
    data = binned.data
    ny, nx = data.shape
    rows = slice(max(i - h, 0), min(i + h + 1, ny))
    cols = slice(max(j - h, 0), min(j + h + 1, nx))
    stamp = data[rows, cols]
    sect = template.sectors[
        rows.start - (i - h) : rows.stop - (i - h), cols.start - (j - h) : cols.stop - (j - h)
    ]
    ring = template.ring[
        rows.start - (i - h) : rows.stop - (i - h), cols.start - (j - h) : cols.stop - (j - h)
    ]
    local_bkg = float(np.median(stamp[ring])) if ring.any() else 0.0
    labels = sect.ravel()
    lit = labels >= 0
    counts = np.bincount(labels[lit], minlength=_N_SECTORS)
    sums = np.bincount(labels[lit], weights=stamp.ravel()[lit] - local_bkg, minlength=_N_SECTORS)
    noise = binned.sigma_binned * np.sqrt(np.maximum(counts, 1))
    n_lit = int(np.count_nonzero((sums > 2.0 * noise) & (counts > 0)))
    return n_lit, sums


def find_donuts(
    binned: BinnedImage,
    template: DonutTemplate,
    *,
    threshold_sigma: float,
    max_candidates: int = 200,
    corr: NDArray | None = None,
) -> tuple[Candidate, ...]:
    """Find donuts on a binned image by matched filtering.

    Parameters
    ----------
    binned : `BinnedImage`
        The prepared image (its binning must match the template's).
    template : `DonutTemplate`
        Template on the same grid.
    threshold_sigma : `float`
        Detection threshold on the matched-filter map, sigma.
    max_candidates : `int`
        Peaks examined at most (brightest first).
    corr : `numpy.ndarray`, optional
        The correlation map, when already computed.

    Returns
    -------
    candidates : `tuple` of `Candidate`
        Accepted and rejected peaks, in decreasing SNR.
    """
    if corr is None:
        corr = correlate(binned.data, template)
    noise = binned.sigma_binned * template.kernel_norm
    snr = corr / np.float32(noise)
    ii, jj = local_maxima(snr, threshold_sigma, half=1)
    order = np.argsort(-snr[ii, jj])[:max_candidates]
    ii, jj = ii[order], jj[order]

    b = template.binning
    resp = template.response
    rh = resp.shape[0] // 2
    peak_resp = template.peak_response
    min_sep2 = (0.25 * template.outer_px / b) ** 2
    kept: list[tuple[int, int, float]] = []  # (i, j, flux)
    out: list[Candidate] = []
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        value = float(corr[i, j])
        flux = value / peak_resp
        dx, dy = _subpixel(snr, i, j)
        x, y = (j + dx) * b + (b - 1) / 2.0, (i + dy) * b + (b - 1) / 2.0
        predicted = 0.0
        too_close = False
        for ki, kj, kflux in kept:
            di, dj = i - ki, j - kj
            if di * di + dj * dj < min_sep2:
                too_close = True
                break
            if abs(di) <= rh and abs(dj) <= rh:
                predicted += kflux * float(resp[rh + di, rh + dj])
        if too_close:
            out.append(Candidate(x, y, float(snr[i, j]), flux, False, "duplicate peak of a brighter donut"))
            continue
        excess = value - predicted
        if predicted > 0 and (excess < threshold_sigma * noise or excess < _SIDELOBE_MARGIN * predicted):
            out.append(Candidate(x, y, float(snr[i, j]), flux, False, "skirt of a brighter donut"))
            continue
        if predicted > 0:
            # On a brighter donut's skirt the peak is dragged downhill: find it again once the skirt is
            # subtracted.
            i, j, x, y, excess = _relocate(
                corr, kept, template, i, j, half=math.ceil(0.25 * template.outer_px / b)
            )
            flux = excess / peak_resp
        n_lit, _ = sector_test(binned, template, i, j)
        if n_lit < _MIN_LIT_SECTORS:
            out.append(
                Candidate(
                    x,
                    y,
                    float(snr[i, j]),
                    flux,
                    False,
                    f"cosmic ray or defect: light in {n_lit} of {_N_SECTORS} annulus sectors",
                )
            )
            continue
        kept.append((i, j, max(excess, 0.0) / peak_resp))
        out.append(Candidate(x, y, float(snr[i, j]), flux))
    return tuple(out)
