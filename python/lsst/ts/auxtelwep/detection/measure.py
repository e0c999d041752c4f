"""Full-resolution refinement and photometry of one donut.

`measure_donut` cuts a stamp around a guess, correlates it with the full-resolution template over a small
window of shifts (FFT), takes the peak with a parabolic sub-pixel step, moves to the light centroid, and
measures there: the background and noise (3-sigma-clipped mean and rms of a wide ring outside the donut),
the aperture flux, the SNR
(``flux / sqrt(n_ap * sigma_sky**2 * (1 + n_ap / n_ring) + flux)``: sky noise in the aperture, the error of
the background from a ring of ``n_ring`` pixels, and the source's Poisson term, which counts one unit per unit
of flux: exact for electrons, and within the LATISS gains of 1.05-1.10 e-/adu for adu), and whether the
aperture holds saturated (``SAT`` bit, or a value at the saturation level) or unusable pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from numpy.typing import NDArray
from scipy import fft, ndimage

from ..errors import InputError
from ..exposure import MaskBit
from .image import UNUSABLE_BITS
from .template import DonutTemplate

__all__ = ["ASYMMETRY_LIMIT", "Measurement", "measure_donut", "pair_blend_suspected"]

_MAD_TO_SIGMA = 1.4826
_MEASURE_UNUSABLE = UNUSABLE_BITS | int(MaskBit.CR)
_SKY_GAP_PX = 4.0
_SKY_WIDTH_PX = 36.0  # wide: the background error over a 36000 px aperture must stay below the noise
_CENTROID_ITERATIONS = 16
# How far the light centroid may sit from the correlation peak (the ring's centre), as a fraction of the
# template's outer radius: coma moves it 15 px (0.16) with M2 decentred by 2.8 mm; farther, a neighbour's
# light is taking over and the peak is kept.
_CENTROID_MAX_SHIFT_FRACTION = 0.25
# The centroid's aperture grows beyond the template's by steps of this width while they hold light, up to
# this fraction of the template's outer radius: a donut grown by a focus error, or stretched by coma, reaches
# past the template (142 px from its centroid for M2 decentred by 2.8 mm and 0.095 mm out of focus).
_GROWTH_STEP_PX = 4.0
_MAX_GROWTH_FRACTION = 0.5
# A step holds light when its mean exceeds this many sigmas of its noise, and this fraction of the donut's
# mean surface brightness (a residual background gradient must not grow the aperture without end).
_GROWTH_SIGMAS = 3.0
_GROWTH_MIN_LEVEL = 1e-3
ASYMMETRY_LIMIT = 0.5
"""Sector-flux contrast beyond the first harmonic above which a donut is flagged as an unresolved blend (one
donut: about 0.02, at most 0.23 with M2 decentred by up to 3.5 mm, whose coma is all first harmonic)."""
HOLE_LIMIT = 0.3
"""Surface brightness in the donut's central hole, relative to its annulus, above which another donut's ring
crosses the hole (0.35-0.39 for two donuts 50 px and up to 0.5 mag apart). One donut: up to 0.24 in one
image and 0.11 in both with M2 decentred by up to 3.5 mm or 2" of seeing; the real LATISS pair, whose
extra-focal hole diffraction fills, 0.04 intra and 0.36 extra: a pair is flagged when both holes are lit."""


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Refined position and photometry of a donut on one image.

    Attributes
    ----------
    x, y : `float`
        Centre, 0-based full-resolution pixels (x = column).
    flux : `float`
        Background-subtracted aperture flux, image units.
    snr : `float`
        Aperture signal-to-noise ratio.
    background : `float`
        Local background per pixel, image units.
    saturated : `bool`
        The aperture holds a ``SAT`` pixel or a value at the saturation level.
    bad_fraction : `float`
        Fraction of the aperture that is ``BAD``, ``NO_DATA`` or off the image.
    shift_at_limit : `bool`
        The correlation peak sat on the edge of the search window (the guess was too far off).
    asymmetry : `float`
        ``(max - min) / mean`` of the flux in eight sectors of the annulus once their first harmonic (the
        one-sided brightening of coma) is removed: about 0 for one donut, however decentred M2 is, large
        for two donuts merged into one detection.
    neighbour_light : `float`
        Excess surface brightness of the brightest of eight sectors of the sky ring over their median,
        relative to the donut's own: light of a neighbour that reaches the ring.
    overlap_seen : `bool`
        ``asymmetry`` exceeds `ASYMMETRY_LIMIT` significantly (5 sigma): another donut overlaps this one.
    neighbour_seen : `bool`
        ``neighbour_light`` exceeds ``neighbour_fraction`` significantly (5 sigma).
    hole_light : `float`
        Mean surface brightness in the central hole (clear of the blurred inner edge), relative to the
        annulus: another donut's ring crossing the hole lights it.
    hole_seen : `bool`
        ``hole_light`` exceeds `HOLE_LIMIT` significantly (5 sigma).
    """

    x: float
    y: float
    flux: float
    snr: float
    background: float
    saturated: bool
    bad_fraction: float
    shift_at_limit: bool
    asymmetry: float = 0.0
    neighbour_light: float = 0.0
    overlap_seen: bool = False
    neighbour_seen: bool = False
    hole_light: float = 0.0
    hole_seen: bool = False


def pair_blend_suspected(intra: Measurement, extra: Measurement) -> bool:
    """Whether a pair hides a blend: an overlap in either image, or neighbour light or a lit hole in both.

    A neighbouring star lights the sky ring of both images. A donut ~0.1 mm out of focus spills its own
    edge into the ring of only one: the image in which it is the larger (intra or extra, by the sign of the
    focus error), as at the start of a night. Likewise a neighbour's ring lights the central hole of both,
    while diffraction and fine wavefront structure fill one more than the other (the real LATISS pair).

    Parameters
    ----------
    intra, extra : `Measurement`
        The star's measurements on the intra- and extra-focal images.
    """
    return (
        intra.overlap_seen
        or extra.overlap_seen
        or (intra.neighbour_seen and extra.neighbour_seen)
        or (intra.hole_seen and extra.hole_seen)
    )


def _cutout(array: NDArray, x0: int, y0: int, half: int, fill: float) -> tuple[NDArray, NDArray]:
    """``array[y0-half : y0+half+1, x0-half : x0+half+1]``, padded with ``fill`` off the image.

    Returns the cutout and a boolean map of the pixels that lie on the image.
    """
    size = 2 * half + 1
    out = np.full((size, size), fill, dtype=array.dtype)
    inside = np.zeros((size, size), dtype=bool)
    ny, nx = array.shape
    r0, r1 = max(y0 - half, 0), min(y0 + half + 1, ny)
    c0, c1 = max(x0 - half, 0), min(x0 + half + 1, nx)
    if r0 < r1 and c0 < c1:
        out[r0 - (y0 - half) : r1 - (y0 - half), c0 - (x0 - half) : c1 - (x0 - half)] = array[r0:r1, c0:c1]
        inside[r0 - (y0 - half) : r1 - (y0 - half), c0 - (x0 - half) : c1 - (x0 - half)] = True
    return out, inside


@functools.lru_cache(maxsize=16)
def _stamp_kernel_fft(template: DonutTemplate, size: int, model_half: int) -> NDArray[np.complex128]:
    """FFT of the model (cropped to ``model_half``), flipped and centred at (0, 0), on a ``size`` grid."""
    # The model itself, not the zero-sum kernel: the stamp is already background-subtracted, and the sharp
    # edges of the kernel's background ring would add position noise without adding signal.
    h = template.half
    model = template.model[h - model_half : h + model_half + 1, h - model_half : h + model_half + 1]
    k = model.shape[0]
    padded = np.zeros((size, size))
    padded[:k, :k] = model[::-1, ::-1]
    padded = np.roll(padded, (-model_half, -model_half), axis=(0, 1))
    out = fft.rfft2(padded)
    out.setflags(write=False)
    return out


def _clipped_mean(values: NDArray, *, nsigma: float = 3.0) -> tuple[float, float]:
    """Mean and standard deviation after clipping at ``nsigma`` about the median (MAD scale), twice."""
    if values.size == 0:
        return 0.0, 0.0
    median = np.median(values)  # once: _robust_sigma would take it again
    centre, sigma = float(median), float(_MAD_TO_SIGMA * np.median(np.abs(values - median)))
    keep = values
    for _ in range(2):
        if sigma <= 0:
            break
        keep = values[np.abs(values - centre) <= nsigma * sigma]
        if keep.size < 10:
            break
        centre, sigma = float(keep.mean()), float(keep.std())
    return centre, sigma


def _robust_sigma(values: NDArray) -> float:
    if values.size == 0:
        return 0.0
    med = np.median(values)
    return float(_MAD_TO_SIGMA * np.median(np.abs(values - med)))


def _sharp_pixels(stamp: NDArray, *, noise_floor: float) -> NDArray[np.bool_]:
    """Pixels brighter than twice the mean of their 8 neighbours and by more than 8 sigma (NaN = unusable)."""
    level = np.nanmedian(stamp[::5, ::5])
    data = np.nan_to_num(stamp - level, nan=0.0)
    padded = np.pad(data, 1, mode="edge")
    total = np.zeros_like(data)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            total += padded[1 + di : 1 + di + data.shape[0], 1 + dj : 1 + dj + data.shape[1]]
    neighbours = (total - data) / 8.0
    noise = np.sqrt(noise_floor**2 + np.clip(neighbours, 0.0, None))
    sharp = (data - neighbours > 8.0 * noise) & (data > 2.0 * np.clip(neighbours, 0.0, None))
    if sharp.any():
        # A track's pixels light each other up: grow the flag by one pixel where still 4 sigma high.
        grown = ndimage.binary_dilation(sharp, structure=np.ones((3, 3), dtype=bool))
        sharp = grown & (data - neighbours > 4.0 * noise)
    return sharp


def _window(x: float, y: float, reach: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The rows and columns of a stamp of ``shape`` within ``reach`` of ``(x, y)`` (stamp pixels), and one
    more each side for rounding: every pixel of a disk of radius ``reach`` about that point.

    Selecting a disk from the window gives the same pixels in the same (row-major) order, hence the same
    sums, as from the whole stamp, which is sized for the largest aperture wherever the centroid may go.
    """
    return (
        slice(max(math.floor(y - reach) - 1, 0), min(math.ceil(y + reach) + 2, shape[0])),
        slice(max(math.floor(x - reach) - 1, 0), min(math.ceil(x + reach) + 2, shape[1])),
    )


def _light_radius(
    values: NDArray,
    px: NDArray,
    py: NDArray,
    centre: tuple[float, float],
    *,
    start: float,
    stop: float,
    noise: float,
) -> float:
    """Radius about ``centre`` of an aperture that holds all of a donut's light, ``start`` to ``stop`` pixels.

    The aperture grows by steps of `_GROWTH_STEP_PX` while the next step holds light: its mean of ``values``
    (usable pixels at ``px``, ``py``, background-subtracted) is significant (`_GROWTH_SIGMAS` of its noise,
    ``noise`` per pixel) and above `_GROWTH_MIN_LEVEL` of the mean within ``start``. It stops where, in one of
    eight sectors, the light rises outward by `_GROWTH_SIGMAS`: a donut's own light only falls beyond its
    edge (also a one-sided comatic one), a neighbour's rises where its ring begins.
    """
    dx, dy = px - centre[0], py - centre[1]
    r2 = dx**2 + dy**2
    inside = r2 <= start**2
    level = float(values[inside].mean()) if inside.any() else 0.0
    # Step 0 is the last one inside ``start`` (for the first comparison), steps 1 to n_steps grow.
    n_steps = math.ceil((stop - start) / _GROWTH_STEP_PX)
    near = (r2 > (start - _GROWTH_STEP_PX) ** 2) & (r2 <= (start + n_steps * _GROWTH_STEP_PX) ** 2)
    dx, dy = dx[near], dy[near]
    step = np.floor((np.sqrt(r2[near]) - start) / _GROWTH_STEP_PX).astype(int) + 1
    sector = (np.floor((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * 8).astype(int)) % 8
    cell = step * 8 + sector
    counts = np.bincount(cell, minlength=(n_steps + 1) * 8).reshape(n_steps + 1, 8)
    sums = np.bincount(cell, weights=values[near], minlength=(n_steps + 1) * 8).reshape(n_steps + 1, 8)
    with np.errstate(invalid="ignore", divide="ignore"):
        sector_mean = sums / counts
        sector_error = noise / np.sqrt(counts)
    for k in range(1, n_steps + 1):
        n = int(counts[k].sum())
        if n == 0:
            break
        mean = float(sums[k].sum()) / n
        if mean <= max(_GROWTH_SIGMAS * noise / math.sqrt(n), _GROWTH_MIN_LEVEL * level):
            break
        rise = sector_mean[k] - sector_mean[k - 1]
        if np.any(rise > _GROWTH_SIGMAS * np.hypot(sector_error[k], sector_error[k - 1])):
            break  # NaN (an empty sector) compares False
    else:
        return stop
    return start + (k - 1) * _GROWTH_STEP_PX


def _sector_means(values: NDArray, angle: NDArray, select: NDArray) -> NDArray | None:
    """Mean of ``values`` in each of 8 azimuthal sectors of the ``select`` pixels (None if one is empty)."""
    sector = (np.floor((angle[select] + np.pi) / (2 * np.pi) * 8).astype(int)) % 8
    counts = np.bincount(sector, minlength=8)
    if counts.min() == 0:
        return None
    return np.bincount(sector, weights=values[select], minlength=8) / counts


def _first_harmonic(sectors: NDArray) -> NDArray:
    """The ``cos`` + ``sin`` (m = 1) part of 8 equal azimuthal sectors' values (sector centres as in
    `_sector_means`)."""
    centre = (np.arange(8) + 0.5) * (np.pi / 4) - np.pi
    cos, sin = np.cos(centre), np.sin(centre)
    # The 8 sectors sample the circle evenly, so the Fourier coefficients are plain projections.
    return (cos * (sectors @ cos) + sin * (sectors @ sin)) / 4.0


def _sector_medians(values: NDArray, angle: NDArray, select: NDArray) -> NDArray | None:
    """Median of ``values`` in each of 8 azimuthal sectors of the ``select`` pixels (None if one is empty)."""
    sector = (np.floor((angle[select] + np.pi) / (2 * np.pi) * 8).astype(int)) % 8
    picked = values[select]
    out = np.empty(8)
    for k in range(8):
        members = picked[sector == k]
        if members.size == 0:
            return None
        out[k] = np.median(members)
    return out


def _blend_tests(
    work: NDArray,
    usable: NDArray,
    radius: NDArray,
    angle: NDArray,
    *,
    ring_values: NDArray,
    ring: NDArray,
    ring_angle: NDArray,
    template: DonutTemplate,
    sky_sigma: float,
    neighbour_fraction: float,
) -> dict[str, float | bool]:
    """Asymmetry of the annulus plateau, neighbour light in the sky ring and light in the central hole, and
    whether each is significant, as the `Measurement` fields of those names (none: the defaults)."""
    blur = template.blur_sigma_px
    plateau = usable & (radius >= template.inner_px + blur) & (radius <= template.outer_px - blur)
    own = _sector_means(work, angle, plateau)
    if own is None or own.mean() <= 0:
        return {}
    level = float(own.mean())
    n_plateau = max(int(plateau.sum()) // 8, 1)
    # A decentred M2 (coma) brightens one side of a single donut as cos(angle - phase): 0.08 of the level
    # at 0.3 mm of decenter, 0.6 at 2.8 mm. Overlapping light from a neighbour is local (a few sectors), so
    # only what is left after that first harmonic counts (a single donut: <= 0.23 up to 3.5 mm).
    residual = own - level - _first_harmonic(own - level)
    spread = float(residual.max() - residual.min())
    asymmetry = spread / level
    noise = math.sqrt(2.0 / n_plateau) * math.sqrt(sky_sigma**2 + level)
    overlap = asymmetry > ASYMMETRY_LIMIT and spread > 5.0 * noise
    neighbour, neighbour_seen = 0.0, False
    sky = _sector_medians(ring_values, ring_angle, ring)  # medians: a cosmic ray does not light a sector
    if sky is not None:
        excess = float(sky.max() - np.median(sky))
        neighbour = excess / level
        n_ring = max(int(ring.sum()) // 8, 1)
        neighbour_seen = neighbour > neighbour_fraction and excess > 5.0 * sky_sigma * math.sqrt(2.0 / n_ring)
    # The hole, clear of the blurred inner edge (and of the few pixels a decentred M2 moves it by).
    hole = usable & (radius <= max(template.inner_px - 3.0 * blur, 0.4 * template.inner_px))
    hole_light, hole_seen = 0.0, False
    if hole.any():
        mean = float(work[hole].mean())
        hole_light = mean / level
        hole_seen = hole_light > HOLE_LIMIT and mean > 5.0 * sky_sigma / math.sqrt(int(hole.sum()))
    return {
        "asymmetry": asymmetry,
        "neighbour_light": neighbour,
        "overlap_seen": bool(overlap),
        "neighbour_seen": bool(neighbour_seen),
        "hole_light": hole_light,
        "hole_seen": bool(hole_seen),
    }


@functools.lru_cache(maxsize=16)
def _polar_grid(half: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Radius and azimuth (rad) of every pixel of a ``2 half + 1`` square about its centre (read-only)."""
    c = np.arange(-half, half + 1, dtype=float)
    r = np.hypot(c[:, None], c[None, :])
    a = np.arctan2(c[:, None], c[None, :])
    r.setflags(write=False)
    a.setflags(write=False)
    return r, a


def _model_half(template: DonutTemplate) -> int:
    """Half-size of the part of the full-resolution model that holds light (outer radius + 4 sigma)."""
    return min(math.ceil(template.outer_px + 4.0 * template.blur_sigma_px) + 1, template.half)


def measure_donut(
    image: NDArray,
    mask: NDArray | None,
    x: float,
    y: float,
    *,
    template: DonutTemplate,
    search_px: int,
    saturation: float,
    neighbour_fraction: float = 10 ** (-0.4 * 2.0),
) -> Measurement:
    """Refine a donut's centre near ``(x, y)`` and measure it.

    Parameters
    ----------
    image : `numpy.ndarray`, shape (rows, cols)
        Full-resolution image, ``image[y, x]``, image units (not background-subtracted).
    mask : `numpy.ndarray` of uint16 or `None`
        `MaskBit` flags.
    x, y : `float`
        Guess of the centre, 0-based pixels.
    template : `DonutTemplate`
        Full-resolution template (``binning == 1``).
    search_px : `int`
        Half-width of the window of shifts searched, pixels.
    saturation : `float`
        Saturation level, image units.
    neighbour_fraction : `float`
        Neighbour surface brightness, relative to the donut's, that makes a blend (default: 2 mag fainter).

    Returns
    -------
    measurement : `Measurement`
    """
    if template.binning != 1:
        raise InputError(f"measure_donut needs a full-resolution template, got binning {template.binning}")
    search = int(search_px)
    model_half = _model_half(template)
    inner = model_half + search  # box for the correlation, the centroid and the photometry
    sky_in = template.aperture_radius_px + _SKY_GAP_PX
    sky_out = sky_in + _SKY_WIDTH_PX
    radius_ap = template.aperture_radius_px
    max_radius = radius_ap + _MAX_GROWTH_FRACTION * template.outer_px
    max_centroid_shift = max(float(search), _CENTROID_MAX_SHIFT_FRACTION * template.outer_px)
    # The cutout holds the centroid's largest aperture wherever the peak and the centroid may take it.
    half = max(inner, math.ceil(sky_out) + 1, math.ceil(max_radius + search + max_centroid_shift) + 1)
    x0, y0 = round(x), round(y)
    stamp, inside = _cutout(image, x0, y0, half, np.nan)
    usable = inside & np.isfinite(stamp)
    mstamp = None
    if mask is not None:
        mstamp, _ = _cutout(mask, x0, y0, half, 0)
        usable &= (mstamp & _MEASURE_UNUSABLE) == 0
    r, angle = _polar_grid(half)
    ring = (r >= sky_in) & (r <= sky_out) & usable
    if ring.sum() < 20:
        ring = usable & (r >= template.aperture_radius_px)
    background, sky_sigma = _clipped_mean(stamp[ring])

    # Cosmic rays not flagged by ISR: pixels far above their 8 neighbours (the donut is blurred by the
    # seeing, so its own pixels never are). They are set aside like masked pixels.
    good_all = usable & ~_sharp_pixels(np.where(usable, stamp, np.nan), noise_floor=sky_sigma)
    work_all = np.where(good_all, stamp - background, 0.0)
    box = slice(half - inner, half + inner + 1)
    sub = stamp[box, box]
    good = good_all[box, box]
    work = work_all[box, box]

    # Correlation over the window of shifts (circular FFT; the model fits for every shift in the window).
    size = fft.next_fast_len(2 * inner + 1, real=True)
    spectrum = fft.rfft2(work, s=(size, size)) * _stamp_kernel_fft(template, size, model_half)
    corr = fft.irfft2(spectrum, s=(size, size))[
        inner - search : inner + search + 1, inner - search : inner + search + 1
    ]
    i, j = np.unravel_index(int(np.argmax(corr)), corr.shape)
    at_limit = i in (0, 2 * search) or j in (0, 2 * search)
    dy = dx = 0.0
    if 0 < i < 2 * search:
        lo, mid, hi = corr[i - 1, j], corr[i, j], corr[i + 1, j]
        den = lo - 2 * mid + hi
        dy = float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5)) if den < 0 else 0.0
    if 0 < j < 2 * search:
        lo, mid, hi = corr[i, j - 1], corr[i, j], corr[i, j + 1]
        den = lo - 2 * mid + hi
        dx = float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5)) if den < 0 else 0.0
    peak_x = x0 + (j - search) + dx
    peak_y = y0 + (i - search) + dy

    # The reported centre is the light centroid, in an aperture started on the correlation peak. An
    # aberrated donut (a decentred M2) is brighter on one side, and its centroid then differs from the
    # peak: 1.3 px at 0.3 mm of decenter, 15 px at 2.8 mm; the centroid is what stamps and the simulator
    # use. The aperture holds all the light: the template's cut the edge of a donut grown by 0.1 mm of
    # focus error (3 px off the centroid) or stretched by coma (7 px at 2.8 mm of decenter).
    # Pixel coordinates on the stamp grid; each step looks only at the window about its aperture.
    coords = np.arange(-half, half + 1, dtype=float)
    xs, ys = coords + x0, coords + y0
    px, py = np.broadcast_to(xs, good_all.shape), np.broadcast_to(ys[:, None], good_all.shape)
    cx, cy = peak_x, peak_y
    radius = radius_ap
    for _ in range(_CENTROID_ITERATIONS):
        rows, cols = _window(cx - xs[0], cy - ys[0], radius, good_all.shape)
        ap = ((xs[cols] - cx) ** 2)[np.newaxis, :] + ((ys[rows] - cy) ** 2)[:, np.newaxis] <= radius**2
        ap &= good_all[rows, cols]
        weight = work_all[rows, cols][ap]
        total = float(weight.sum())
        if total <= 0:
            cx, cy = peak_x, peak_y
            break
        nx = float((weight * px[rows, cols][ap]).sum() / total)
        ny = float((weight * py[rows, cols][ap]).sum() / total)
        if math.hypot(nx - peak_x, ny - peak_y) > max_centroid_shift:
            cx, cy = peak_x, peak_y  # a neighbour pulls the centroid away: keep the peak
            break
        moved = math.hypot(nx - cx, ny - cy)
        cx, cy = nx, ny
        if moved < 0.005:
            # Converged in this aperture: done when it holds all the light, else go on in a larger one.
            # (The window holds all that _light_radius looks at.)
            window = _window(cx - xs[0], cy - ys[0], max_radius + _GROWTH_STEP_PX, good_all.shape)
            usable_px = good_all[window]
            grown = _light_radius(
                work_all[window][usable_px],
                px[window][usable_px],
                py[window][usable_px],
                (cx, cy),
                start=radius,
                stop=max_radius,
                noise=sky_sigma,
            )
            if grown <= radius:
                break
            radius = grown

    # Photometry in an aperture centred on the refined position.
    c = np.arange(-inner, inner + 1, dtype=float)
    gx, gy = c[None, :] + x0, c[:, None] + y0
    r_new = np.hypot(gx - cx, gy - cy)
    aperture = r_new <= radius_ap
    n_ap = int(aperture.sum())
    good_ap = aperture & good
    flux = float(work[good_ap].sum())
    if good_ap.sum() < n_ap:
        # Fill the unusable part of the aperture with the mean of the usable part (a small correction).
        flux *= n_ap / max(int(good_ap.sum()), 1)
    # Sky noise in the aperture, the error of the background taken from the ring, and the source's shot noise.
    n_sky = max(int(ring.sum()), 1)
    noise = math.sqrt(n_ap * sky_sigma**2 * (1.0 + n_ap / n_sky) + max(flux, 0.0))
    snr = flux / noise if noise > 0 else 0.0
    saturated = bool(np.any(sub[aperture & inside[box, box]] >= saturation))
    if mstamp is not None:
        saturated |= bool(np.any((mstamp[box, box][aperture] & MaskBit.SAT) != 0))
    bad_fraction = 1.0 - float(good_ap.sum()) / max(n_ap, 1)
    blend = _blend_tests(
        work,
        good,
        r_new,
        np.arctan2(gy - cy, gx - cx),
        ring_values=stamp - background,
        # The ring is centred on the guess: move its inner edge out by the refinement so the donut's own
        # light stays out of it.
        ring=ring & (r >= sky_in + math.ceil(math.hypot(cx - x0, cy - y0))),
        ring_angle=angle,
        template=template,
        sky_sigma=sky_sigma,
        neighbour_fraction=neighbour_fraction,
    )
    return Measurement(
        x=float(cx),
        y=float(cy),
        flux=flux,
        snr=float(snr),
        background=background,
        saturated=saturated,
        bad_fraction=bad_fraction,
        shift_at_limit=bool(at_limit),
        **blend,
    )
