"""Donut rendering: rays through the perturbed AuxTel model, blurred by the atmosphere.

How a donut is made
-------------------
Rays leave the entrance pupil (batoid's stop surface, an annulus of radii `PUPIL_INNER_RADIUS_M` and
`PUPIL_OUTER_RADIUS_M`) at the star's field angle, are traced through the perturbed optic of
`lsst.ts.auxtelwep.instrument.AuxTel`, and vignetted rays are dropped. Where they hit the detector is turned
into assembled-frame pixels by a pure shift: the design's on-axis chief ray lands on
`~lsst.ts.auxtelwep.instrument.BORESIGHT_PIXEL` (batoid's own detector origin is about 405 px away), column =
batoid detector x, row = batoid detector y, 10 um pixels. A decentred M2 therefore moves the donut as the
optics say (its light centroid ~548 px per mm of decenter).

Two renderers share that trace:

- ``method="expected"`` (the default): a regular pupil grid, dense enough that neighbouring rays land
  about half a pixel apart, is deposited with cloud-in-cell weights and convolved (FFT) with a Kolmogorov
  kernel drawn by galsim. The result is the *expected* electron image, so its cost does not depend on the
  flux, and Poisson noise drawn on it afterwards has exactly photon statistics. Cloud-in-cell deposition plus
  a kernel drawn without the pixel response equals pixel integration followed by one extra 1-px box blur
  (variance 1/12 px^2, against about 20 px^2 for 1" seeing).
- ``method="photons"``: Poisson(flux) pupil positions drawn uniformly over the annulus, traced, displaced
  by photons shot from galsim's Kolmogorov profile and counted into pixels. Exact Monte Carlo, cost
  proportional to the flux: for tests and faint stars.

Conventions: pixel ``i`` spans ``[i - 0.5, i + 0.5)``, arrays are ``[row, col]`` (row = batoid y), 0-based,
in electrons. Zernike truths are the in-focus deviation from the design at the star's field position, in
micrometres (see `lsst.ts.auxtelwep.sim.truth.true_zernikes`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import batoid
import galsim
import numpy as np
from numpy.typing import NDArray
from scipy.signal import fftconvolve

from ..errors import InputError
from ..instrument import (
    APERTURE_DIAMETER_M,
    BORESIGHT_PIXEL,
    OBSCURATION,
    PIXEL_SIZE_M,
    AuxTel,
)

__all__ = [
    "MAX_PHOTONS",
    "PUPIL_INNER_RADIUS_M",
    "PUPIL_OUTER_RADIUS_M",
    "RenderMethod",
    "RenderedDonut",
    "add_donut",
    "donut_centroid",
    "render_donut",
    "seeing_kernel",
    "trace_to_pixels",
]


PUPIL_OUTER_RADIUS_M = APERTURE_DIAMETER_M / 2
"""Outer radius of the sampled entrance-pupil annulus, metres (0.6 m)."""
PUPIL_INNER_RADIUS_M = OBSCURATION * PUPIL_OUTER_RADIUS_M
"""Inner radius of the sampled annulus (the M2 baffle shadow), metres (0.2115 m)."""
MAX_PHOTONS = 20_000_000
"""Largest flux (electrons) ``method="photons"`` accepts; use ``"expected"`` above it."""

RenderMethod = Literal["expected", "photons"]

_GRID_SPACING_PX = 0.5  # target distance between neighbouring grid rays on the detector, pixels
_MIN_GRID = 48  # rays across the pupil diameter, whatever the donut size (in-focus images)
_MAX_GRID = 640
_KERNEL_HALF_WIDTH_FWHM = 8.0  # kernel half width in FWHM: keeps > 99.7 % of a Kolmogorov profile
_EDGE_RAYS = 72  # rays on the pupil rim used to size the donut before the main trace


@functools.lru_cache(maxsize=8)
def _reference_point_m(wavelength_m: float) -> tuple[float, float]:
    """Detector (x, y), metres, of the design's on-axis chief ray: it lands on the boresight pixel."""
    optic = AuxTel().optic
    ray = optic.trace(
        batoid.RayVector.fromStop(0.0, 0.0, optic=optic, wavelength=wavelength_m, theta_x=0.0, theta_y=0.0)
    )
    return float(ray.x[0]), float(ray.y[0])


@functools.lru_cache(maxsize=16)
def _pupil_grid(n_across: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Points of a square grid, ``n_across`` over the diameter, inside the pupil annulus (m, read-only)."""
    step = 2 * PUPIL_OUTER_RADIUS_M / n_across
    axis = (np.arange(n_across) - (n_across - 1) / 2) * step
    x, y = np.meshgrid(axis, axis)
    r2 = x * x + y * y
    keep = (r2 <= PUPIL_OUTER_RADIUS_M**2) & (r2 >= PUPIL_INNER_RADIUS_M**2)
    x, y = x[keep], y[keep]
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def trace_to_pixels(
    telescope: AuxTel,
    field_x_deg: float,
    field_y_deg: float,
    pupil_x_m: NDArray[np.float64],
    pupil_y_m: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Trace rays from entrance-pupil positions to assembled-frame pixels.

    Parameters
    ----------
    telescope : `~lsst.ts.auxtelwep.instrument.AuxTel`
        Telescope state (including any defocus) and wavelength.
    field_x_deg, field_y_deg : `float`
        Field angle of the star in batoid's frame, degrees.
    pupil_x_m, pupil_y_m : `numpy.ndarray`, shape (n,)
        Ray positions on the entrance pupil (batoid stop surface), metres.

    Returns
    -------
    col, row : `numpy.ndarray`, shape (n,)
        0-based pixel coordinates (col = batoid detector x) where each ray lands.
    ok : `numpy.ndarray` of bool, shape (n,)
        False for rays vignetted or failed in the trace (their positions are meaningless).
    """
    optic = telescope.optic
    rays = batoid.RayVector.fromStop(
        pupil_x_m,
        pupil_y_m,
        optic=optic,
        wavelength=telescope.wavelength_m,
        theta_x=np.deg2rad(field_x_deg),
        theta_y=np.deg2rad(field_y_deg),
    )
    traced = optic.trace(rays)
    x0, y0 = _reference_point_m(telescope.wavelength_m)
    col = BORESIGHT_PIXEL[0] + (traced.x - x0) / PIXEL_SIZE_M
    row = BORESIGHT_PIXEL[1] + (traced.y - y0) / PIXEL_SIZE_M
    ok = ~(traced.vignetted | traced.failed)
    return col, row, ok


@functools.lru_cache(maxsize=32)
def seeing_kernel(seeing_arcsec: float, *, scale_arcsec_per_px: float) -> NDArray[np.float64]:
    """Kolmogorov atmospheric kernel sampled at pixel centres, normalised to unit sum (memoised).

    Parameters
    ----------
    seeing_arcsec : `float`
        FWHM of the Kolmogorov profile, arcsec (> 0).
    scale_arcsec_per_px : `float`
        Pixel scale, arcsec per pixel.

    Returns
    -------
    kernel : `numpy.ndarray`, shape (2h+1, 2h+1)
        Read-only, centred on the middle pixel, half width ``h`` of 8 FWHM (at least 8 px).
    """
    if not seeing_arcsec > 0 or not scale_arcsec_per_px > 0:
        raise InputError(
            f"seeing_arcsec={seeing_arcsec} and scale_arcsec_per_px={scale_arcsec_per_px} must be > 0",
            value=(seeing_arcsec, scale_arcsec_per_px),
        )
    half = max(8, int(np.ceil(_KERNEL_HALF_WIDTH_FWHM * seeing_arcsec / scale_arcsec_per_px)))
    image = galsim.Kolmogorov(fwhm=seeing_arcsec).drawImage(
        nx=2 * half + 1, ny=2 * half + 1, scale=scale_arcsec_per_px, method="no_pixel"
    )
    kernel = np.asarray(image.array, dtype=np.float64)
    kernel /= kernel.sum()
    kernel.setflags(write=False)
    return kernel


@dataclasses.dataclass(frozen=True)
class RenderedDonut:
    """One star's image, in a box of the assembled frame.

    Attributes
    ----------
    image : `numpy.ndarray`, shape (rows, cols), float32
        Electrons: expected values (``method="expected"``) or photon counts (``"photons"``), no sky.
    origin : `tuple` of `int`
        0-based ``(col, row)`` of ``image[0, 0]`` in the assembled frame (may be off the detector).
    centroid : `tuple` of `float`
        0-based ``(col, row)`` of the light centroid (traced rays, unclipped by the detector edge).
    flux_e : `float`
        Electrons that reach the focal plane (the flux through the annulus less vignetting).
    field_deg : `tuple` of `float`
        Field angle ``(x, y)`` of the star in batoid's frame, degrees.
    """

    image: NDArray[np.float32]
    origin: tuple[int, int]
    centroid: tuple[float, float]
    flux_e: float
    field_deg: tuple[float, float]


def render_donut(
    telescope: AuxTel,
    field_x_deg: float,
    field_y_deg: float,
    *,
    flux_e: float,
    seeing_arcsec: float,
    method: RenderMethod = "expected",
    rng: np.random.Generator | None = None,
) -> RenderedDonut:
    """Render one star through ``telescope``.

    Parameters
    ----------
    telescope : `~lsst.ts.auxtelwep.instrument.AuxTel`
        Telescope state *including* the defocus of the image (``.with_role(role)``).
    field_x_deg, field_y_deg : `float`
        Field angle, degrees, batoid frame.
    flux_e : `float`
        Electrons through the entrance-pupil annulus (before vignetting), >= 0.
    seeing_arcsec : `float`
        Kolmogorov FWHM, arcsec; 0 gives the purely geometric image.
    method : {"expected", "photons"}
        Renderer (module docstring).
    rng : `numpy.random.Generator`, optional
        Needed by ``method="photons"``.

    Returns
    -------
    donut : `RenderedDonut`

    Raises
    ------
    InputError
        For a negative flux or seeing, an unknown method, a missing ``rng``, or more than `MAX_PHOTONS`
        photons.
    """
    if not flux_e >= 0 or not seeing_arcsec >= 0:
        raise InputError(
            f"flux_e={flux_e} and seeing_arcsec={seeing_arcsec} must be >= 0", value=(flux_e, seeing_arcsec)
        )
    if method == "expected":
        col, row, weight = _grid_rays(telescope, field_x_deg, field_y_deg, flux_e)
    elif method == "photons":
        if rng is None:
            raise InputError('method="photons" needs an rng', value=None)
        if flux_e > MAX_PHOTONS:
            raise InputError(
                f'flux_e={flux_e:.3g} is too many photons for method="photons"; use method="expected"',
                value=flux_e,
                allowed=(0, MAX_PHOTONS),
            )
        col, row, weight = _photon_rays(telescope, field_x_deg, field_y_deg, flux_e, rng)
    else:
        raise InputError(f"unknown render method {method!r}", value=method, allowed=("expected", "photons"))
    if weight.size == 0 or weight.sum() == 0:
        centroid = telescope.field_to_pixel(field_x_deg, field_y_deg)
        return RenderedDonut(
            image=np.zeros((1, 1), np.float32),
            origin=(int(np.floor(centroid[0])), int(np.floor(centroid[1]))),
            centroid=(float(centroid[0]), float(centroid[1])),
            flux_e=0.0,
            field_deg=(float(field_x_deg), float(field_y_deg)),
        )
    total = float(weight.sum())
    centroid = (float(np.dot(weight, col) / total), float(np.dot(weight, row) / total))
    scale = telescope.plate_scale_arcsec_per_px
    kernel = None
    pad = 2
    if method == "expected" and seeing_arcsec > 0:
        kernel = seeing_kernel(seeing_arcsec, scale_arcsec_per_px=scale)
        pad += kernel.shape[0] // 2
    elif method == "photons" and seeing_arcsec > 0:
        dx, dy = _kolmogorov_offsets_px(seeing_arcsec, scale, col.size, rng)
        col = col + dx
        row = row + dy
    c0 = int(np.floor(col.min())) - pad
    r0 = int(np.floor(row.min())) - pad
    shape = (int(np.ceil(row.max())) + pad + 1 - r0, int(np.ceil(col.max())) + pad + 1 - c0)
    if method == "expected":
        image = _deposit_cic(col - c0, row - r0, weight, shape)
        if kernel is not None:
            image = np.clip(fftconvolve(image, kernel, mode="same"), 0.0, None)
    else:
        ic = np.floor(col - c0 + 0.5).astype(np.int64)
        ir = np.floor(row - r0 + 0.5).astype(np.int64)
        image = np.bincount(ir * shape[1] + ic, minlength=shape[0] * shape[1]).reshape(shape)
    return RenderedDonut(
        image=image.astype(np.float32),
        origin=(c0, r0),
        centroid=centroid,
        flux_e=total,
        field_deg=(float(field_x_deg), float(field_y_deg)),
    )


def _grid_rays(
    telescope: AuxTel, field_x_deg: float, field_y_deg: float, flux_e: float
) -> tuple[NDArray, NDArray, NDArray]:
    """Trace a pupil grid whose rays land about `_GRID_SPACING_PX` apart; weight = flux per grid cell."""
    phi = np.linspace(0.0, 2 * np.pi, _EDGE_RAYS, endpoint=False)
    rim_c, rim_r, rim_ok = trace_to_pixels(
        telescope,
        field_x_deg,
        field_y_deg,
        PUPIL_OUTER_RADIUS_M * 0.999 * np.cos(phi),
        PUPIL_OUTER_RADIUS_M * 0.999 * np.sin(phi),
    )
    radius_px = 0.0
    if rim_ok.any():
        dc = rim_c[rim_ok] - rim_c[rim_ok].mean()
        dr = rim_r[rim_ok] - rim_r[rim_ok].mean()
        radius_px = float(np.hypot(dc, dr).max())
    n_across = int(np.clip(np.ceil(2 * radius_px / _GRID_SPACING_PX), _MIN_GRID, _MAX_GRID))
    px, py = _pupil_grid(n_across)
    col, row, ok = trace_to_pixels(telescope, field_x_deg, field_y_deg, px, py)
    weight = np.full(int(ok.sum()), flux_e / px.size)
    return col[ok], row[ok], weight


def donut_centroid(telescope: AuxTel, field_x_deg: float, field_y_deg: float) -> tuple[float, float, float]:
    """Light centroid of a donut from a coarse pupil grid (about 1400 rays; to ~0.05 px), without an image.

    Parameters
    ----------
    telescope : `~lsst.ts.auxtelwep.instrument.AuxTel`
        Telescope state (including any defocus) and wavelength.
    field_x_deg, field_y_deg : `float`
        Field angle of the star in batoid's frame, degrees.

    Returns
    -------
    col, row : `float`
        0-based assembled-frame centroid (NaN when every ray is vignetted).
    transmitted : `float`
        Fraction of the pupil annulus not vignetted.
    """
    px, py = _pupil_grid(_MIN_GRID)
    col, row, ok = trace_to_pixels(telescope, field_x_deg, field_y_deg, px, py)
    if not ok.any():
        return float("nan"), float("nan"), 0.0
    return float(col[ok].mean()), float(row[ok].mean()), float(ok.mean())


def _photon_rays(
    telescope: AuxTel, field_x_deg: float, field_y_deg: float, flux_e: float, rng: np.random.Generator
) -> tuple[NDArray, NDArray, NDArray]:
    """Poisson(flux) rays uniform over the pupil annulus, traced; unit weights."""
    n = int(rng.poisson(flux_e))
    r = np.sqrt(rng.uniform(PUPIL_INNER_RADIUS_M**2, PUPIL_OUTER_RADIUS_M**2, n))
    phi = rng.uniform(0.0, 2 * np.pi, n)
    col, row, ok = trace_to_pixels(telescope, field_x_deg, field_y_deg, r * np.cos(phi), r * np.sin(phi))
    return col[ok], row[ok], np.ones(int(ok.sum()))


def _kolmogorov_offsets_px(
    seeing_arcsec: float, scale_arcsec_per_px: float, n: int, rng: np.random.Generator
) -> tuple[NDArray, NDArray]:
    """Photon displacements (pixels) shot from galsim's Kolmogorov profile, truncated as `seeing_kernel` is.

    The profile's far wings (a fraction of a percent) are redrawn, so both renderers use the same kernel:
    Kolmogorov restricted to a square of half width 8 FWHM and renormalised.
    """
    profile = galsim.Kolmogorov(fwhm=seeing_arcsec)
    half = seeing_kernel(seeing_arcsec, scale_arcsec_per_px=scale_arcsec_per_px).shape[0] // 2 + 0.5
    dx = np.empty(n)
    dy = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        shot = profile.shoot(todo.size, rng=galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1))))
        dx[todo] = shot.x / scale_arcsec_per_px
        dy[todo] = shot.y / scale_arcsec_per_px
        todo = todo[(np.abs(dx[todo]) >= half) | (np.abs(dy[todo]) >= half)]
    return dx, dy


def _deposit_cic(col: NDArray, row: NDArray, weight: NDArray, shape: tuple[int, int]) -> NDArray[np.float64]:
    """Cloud-in-cell deposit of weighted points (pixel centres at integer coordinates) into ``shape``."""
    c0 = np.floor(col).astype(np.int64)
    r0 = np.floor(row).astype(np.int64)
    fc = col - c0
    fr = row - r0
    flat = np.zeros(shape[0] * shape[1])
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            flat += np.bincount((r0 + dr) * shape[1] + c0 + dc, weights=weight * wr * wc, minlength=flat.size)
    return flat.reshape(shape)


def add_donut(frame: NDArray, donut: RenderedDonut, *, frame_origin: tuple[int, int] = (0, 0)) -> float:
    """Add a donut into ``frame`` in place, clipping at its edges.

    Parameters
    ----------
    frame : `numpy.ndarray`, shape (rows, cols)
        Image to add to (electrons), ``[row, col]``.
    donut : `RenderedDonut`
        What to add.
    frame_origin : `tuple` of `int`
        Assembled-frame ``(col, row)`` of ``frame[0, 0]`` (non-zero for stamps).

    Returns
    -------
    landed : `float`
        Electrons of the donut that fell inside ``frame``.
    """
    c0 = donut.origin[0] - frame_origin[0]
    r0 = donut.origin[1] - frame_origin[1]
    rows, cols = donut.image.shape
    fr = slice(max(r0, 0), min(r0 + rows, frame.shape[0]))
    fc = slice(max(c0, 0), min(c0 + cols, frame.shape[1]))
    if fr.start >= fr.stop or fc.start >= fc.stop:
        return 0.0
    part = donut.image[fr.start - r0 : fr.stop - r0, fc.start - c0 : fc.stop - c0]
    frame[fr, fc] += part
    return float(part.sum(dtype=np.float64))
