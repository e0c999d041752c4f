"""Astrometry on the in-focus image: source detection, pattern matching to the catalog, WCS fit.

Used when the WCS is too far off to place donuts directly (about 100 px, or rotated by several degrees).

1. `detect_sources`: smooth the binned image with the seeing, take local maxima above a threshold, then at
   full resolution measure a Gaussian-windowed centroid and a flux; reject cosmic rays (a peak pixel more
   than twice the mean of its 8 neighbours: a star blurred by the seeing is never that sharp) and flag
   saturated stars (their centroids may follow a bleed trail: used for matching, left out of the fit).
2. `solve_astrometry`: project the brightest catalog stars through the initial WCS, build every triangle of
   the brightest detections and catalog stars, match triangles by their side ratios (invariant to shift,
   rotation and scale), turn each match into a similarity transform, and vote for the transform (rotation in
   1 degree bins, boresight shift in 16 px bins). Any rotation is allowed, shifts up to ``max_shift_px``, and
   the scale within 3 % of the initial one. The best few votes are checked by counting the detections that
   land on a catalog star.
3. The matched pairs are fitted with a TAN WCS whose reference pixel is the boresight: a similarity (four
   parameters) for fewer than five pairs, else a full CD matrix (six), with rematching and 3-sigma clipping.
   The scatter is ``sqrt(sum |r|^2 / (n - p/2))`` over matched stars, arcsec (per-star 2-D rms, corrected for
   the ``p`` fitted parameters).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import DetectionError
from ..exposure import Exposure, MaskBit
from ..instrument import BORESIGHT_PIXEL
from ..refcat import RefCatalog
from .image import local_maxima, prepare
from .wcs import _cd_of, from_tangent_plane, project, tan_wcs, tangent_plane, wcs_rotation_deg

__all__ = ["AstrometrySolution", "Sources", "detect_sources", "solve_astrometry"]

_N_DET_TRIANGLES = 25
_N_CAT_TRIANGLES = 40
_MIN_TRIANGLE_SIDE_PX = 150.0
_INVARIANT_TOL = 0.01
_SCALE_TOL = 0.03
_TRIANGLE_FIT_PX = 4.0
_MATCH_RADIUS_PX = 12.0


@dataclasses.dataclass(frozen=True)
class Sources:
    """Point sources on an in-focus image, brightest first.

    Attributes
    ----------
    x, y : `numpy.ndarray`, shape (n,)
        Windowed centroids, 0-based pixels (x = column).
    flux : `numpy.ndarray`, shape (n,)
        Background-subtracted flux within two FWHM, image units.
    snr : `numpy.ndarray`, shape (n,)
        Peak significance on the smoothed binned image.
    saturated : `numpy.ndarray` of bool, shape (n,)
        The star holds saturated pixels: good for pattern matching, but its centroid may follow a bleed
        trail, so the WCS fit leaves it out when enough other stars match.
    n_cosmic_rays : `int`
        Peaks rejected as cosmic rays.
    """

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    flux: NDArray[np.float64]
    snr: NDArray[np.float64]
    saturated: NDArray[np.bool_]
    n_cosmic_rays: int = 0

    def __len__(self) -> int:
        return int(self.x.size)


def detect_sources(
    exposure: Exposure,
    *,
    binning: int,
    threshold_sigma: float,
    fwhm_px: float,
    saturation: float,
    max_sources: int = 100,
) -> Sources:
    """Find stars on an in-focus image (see the module docstring).

    Parameters
    ----------
    exposure : `Exposure`
        In-focus ISR'd image.
    binning : `int`
        Binning used to find peaks.
    threshold_sigma : `float`
        Peak threshold on the seeing-smoothed binned image, sigma.
    fwhm_px : `float`
        Seeing FWHM, pixels.
    saturation : `float`
        Saturation level, image units.
    max_sources : `int`
        Keep at most this many (brightest).

    Returns
    -------
    sources : `Sources`
    """
    binned = prepare(
        exposure.image, exposure.mask, binning=binning, clean_cosmic_rays=False, name=exposure.obsid
    )
    b = binned.binning
    smooth = ndimage.gaussian_filter(binned.data, max(fwhm_px / 2.3548 / b, 0.5))
    sample = smooth[::3, ::3][~binned.bad[::3, ::3]]
    med = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - med))) or 1.0
    snr_map = (smooth - med) / sigma
    ii, jj = local_maxima(snr_map, threshold_sigma, half=2)
    order = np.argsort(-snr_map[ii, jj])[: 3 * max_sources]
    ii, jj = ii[order], jj[order]

    image, mask = exposure.image, exposure.mask
    ny, nx = image.shape
    half = max(math.ceil(2.0 * fwhm_px), 4)
    sig_w = fwhm_px / 2.3548
    offs = np.arange(-half, half + 1, dtype=float)
    xs, ys, fluxes, snrs, sats = [], [], [], [], []
    n_cr = 0
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        x0, y0 = j * b + (b - 1) // 2, i * b + (b - 1) // 2
        r0, r1, c0, c1 = max(y0 - half, 0), min(y0 + half + 1, ny), max(x0 - half, 0), min(x0 + half + 1, nx)
        stamp = np.asarray(image[r0:r1, c0:c1], dtype=float)
        if stamp.shape != (2 * half + 1, 2 * half + 1):
            continue  # too close to the edge for a clean centroid
        saturated = bool(np.any(stamp >= saturation) or np.any((mask[r0:r1, c0:c1] & MaskBit.SAT) != 0))
        border = np.concatenate([stamp[0], stamp[-1], stamp[1:-1, 0], stamp[1:-1, -1]])
        stamp = stamp - np.median(border)
        # Sharpness at the brightest pixel near the centre: a cosmic ray stands alone.
        core = stamp[half - 3 : half + 4, half - 3 : half + 4]
        pi, pj = np.unravel_index(int(np.argmax(core)), core.shape)
        pi, pj = pi + half - 3, pj + half - 3
        peak = stamp[pi, pj]
        nbr = (stamp[pi - 1 : pi + 2, pj - 1 : pj + 2].sum() - peak) / 8.0
        if peak <= 0 or (nbr < 0.5 * peak and not saturated):
            n_cr += 1
            continue
        cx, cy = 0.0, 0.0
        positive = np.clip(stamp, 0.0, None)
        for _ in range(6):
            w = np.exp(-((offs[None, :] - cx) ** 2 + (offs[:, None] - cy) ** 2) / (2 * sig_w**2)) * positive
            total = w.sum()
            if total <= 0:
                break
            nx_, ny_ = float((w * offs[None, :]).sum() / total), float((w * offs[:, None]).sum() / total)
            done = abs(nx_ - cx) < 1e-3 and abs(ny_ - cy) < 1e-3
            cx, cy = float(np.clip(nx_, -half / 2, half / 2)), float(np.clip(ny_, -half / 2, half / 2))
            if done:
                break
        xs.append(x0 + cx)
        ys.append(y0 + cy)
        fluxes.append(float(stamp[np.hypot(offs[None, :], offs[:, None]) <= half].sum()))
        snrs.append(float(snr_map[i, j]))
        sats.append(saturated)
    x, y, flux, snr = (np.array(v, dtype=float) for v in (xs, ys, fluxes, snrs))
    sat = np.array(sats, dtype=bool)
    # Drop duplicates (two peaks that converged on one star), keeping the brighter.
    order = np.argsort(-flux)
    x, y, flux, snr, sat = x[order], y[order], flux[order], snr[order], sat[order]
    keep = np.ones(x.size, dtype=bool)
    if x.size > 1:
        for a, c in cKDTree(np.column_stack([x, y])).query_pairs(3.0):
            keep[max(a, c)] = False
    keep_idx = np.flatnonzero(keep)[:max_sources]
    return Sources(x[keep_idx], y[keep_idx], flux[keep_idx], snr[keep_idx], sat[keep_idx], n_cr)


@dataclasses.dataclass(frozen=True)
class AstrometrySolution:
    """A WCS fitted on the in-focus image.

    Attributes
    ----------
    wcs : `astropy.wcs.WCS`
        TAN WCS, reference pixel at the boresight.
    scatter_arcsec : `float`
        Per-star 2-D rms residual, corrected for the fitted parameters, arcsec.
    n_matches : `int`
        Stars used in the final fit.
    source_index, ref_index : `numpy.ndarray` of int
        Matched pairs: indices into the sources and into the reference catalog.
    rotation_deg : `float`
        Rotation of the solution relative to the initial WCS, degrees.
    shift_px : `tuple` of `float`
        Pixel offset ``(dx, dy)`` at which the solution puts the initial WCS's boresight sky position.
    n_parameters : `int`
        4 (similarity) or 6 (full CD matrix).
    """

    wcs: WCS
    scatter_arcsec: float
    n_matches: int
    source_index: NDArray[np.int64]
    ref_index: NDArray[np.int64]
    rotation_deg: float
    shift_px: tuple[float, float]
    n_parameters: int


def _triangles(xy: NDArray) -> tuple[NDArray, NDArray]:
    """All triangles with a long enough longest side: invariants (b/c, a/c) and vertices ordered.

    Vertices are ordered as (opposite the shortest side, opposite the middle, opposite the longest), so the
    same triangle seen rotated, shifted or scaled gives the same order.
    """
    n = len(xy)
    if n < 3:
        return np.empty((0, 2)), np.empty((0, 3), dtype=int)
    idx = np.array(list(itertools.combinations(range(n), 3)), dtype=int)
    p = xy[idx]  # (t, 3, 2)
    # side k is opposite vertex k
    sides = np.stack(
        [
            np.hypot(*(p[:, 1] - p[:, 2]).T),
            np.hypot(*(p[:, 0] - p[:, 2]).T),
            np.hypot(*(p[:, 0] - p[:, 1]).T),
        ],
        axis=1,
    )
    order = np.argsort(sides, axis=1)
    s_sorted = np.take_along_axis(sides, order, axis=1)
    good = s_sorted[:, 2] >= _MIN_TRIANGLE_SIDE_PX
    inv = s_sorted[:, :2] / s_sorted[:, 2:3]
    verts = np.take_along_axis(idx, order, axis=1)
    return inv[good], verts[good]


def _similarity(src: NDArray, dst: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Least-squares ``dst = a * src + b`` in complex numbers over the last axis of length-k point sets.

    ``src``, ``dst`` are complex arrays of shape (m, k). Returns ``a``, ``b`` (shape (m,)) and the rms
    residual (shape (m,)).
    """
    ms, md = src.mean(axis=1, keepdims=True), dst.mean(axis=1, keepdims=True)
    ds, dd = src - ms, dst - md
    a = (dd * ds.conj()).sum(axis=1) / np.maximum((np.abs(ds) ** 2).sum(axis=1), 1e-30)
    b = md[:, 0] - a * ms[:, 0]
    resid = np.sqrt((np.abs(a[:, None] * src + b[:, None] - dst) ** 2).mean(axis=1))
    return a, b, resid


def _vote(det: NDArray, cat: NDArray, *, max_shift_px: float) -> list[tuple[complex, complex]]:
    """Candidate similarity transforms (detection pixels -> catalog pixels), best voted first."""
    inv_d, ver_d = _triangles(det)
    inv_c, ver_c = _triangles(cat)
    if len(inv_d) == 0 or len(inv_c) == 0:
        return []
    tree = cKDTree(inv_c)
    hits = tree.query_ball_point(inv_d, _INVARIANT_TOL)
    lens = np.fromiter((len(h) for h in hits), dtype=int, count=len(hits))
    if lens.sum() == 0:
        return []
    di = np.repeat(np.arange(len(hits)), lens)
    ci = np.fromiter(itertools.chain.from_iterable(hits), dtype=int, count=int(lens.sum()))
    zd = det[:, 0] + 1j * det[:, 1]
    zc = cat[:, 0] + 1j * cat[:, 1]
    a, b, resid = _similarity(zd[ver_d[di]], zc[ver_c[ci]])
    centre = BORESIGHT_PIXEL[0] + 1j * BORESIGHT_PIXEL[1]
    shift = a * centre + b - centre
    ok = (np.abs(np.abs(a) - 1.0) < _SCALE_TOL) & (resid < _TRIANGLE_FIT_PX) & (np.abs(shift) <= max_shift_px)
    if not ok.any():
        return []
    a, shift = a[ok], shift[ok]
    keys = np.column_stack(
        [
            np.round(np.degrees(np.angle(a))).astype(int) % 360,
            np.round(shift.real / 16),
            np.round(shift.imag / 16),
        ]
    ).astype(int)
    _uniq, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    out = []
    for k in np.argsort(-counts)[:5]:
        members = inverse.ravel() == k
        a_k = complex(np.median(a[members].real) + 1j * np.median(a[members].imag))
        s_k = complex(np.median(shift[members].real) + 1j * np.median(shift[members].imag))
        out.append((a_k, s_k + centre - a_k * centre))
    return out


def _fit_wcs(
    det_xy: NDArray, ra: NDArray, dec: NDArray, *, ra0: float, dec0: float, parity: float, affine: bool
) -> tuple[WCS, NDArray]:
    """Fit a TAN WCS (reference pixel at the boresight) to matched pairs; return it and residuals (arcsec)."""
    dp = det_xy - np.asarray(BORESIGHT_PIXEL)
    for _ in range(3):  # re-centre the tangent point on the boresight
        xi, eta = tangent_plane(ra, dec, ra0, dec0)
        if affine:
            design = np.column_stack([dp, np.ones(len(dp))])
            coef, *_ = np.linalg.lstsq(design, np.column_stack([xi, eta]), rcond=None)
            cd, c = coef[:2].T, coef[2]
        else:
            zs = dp[:, 0] + 1j * dp[:, 1]
            zw = parity * xi + 1j * eta
            a, bvec, _ = _similarity(zs[None, :], zw[None, :])
            a0, b0 = complex(a[0]), complex(bvec[0])
            cd = np.array([[parity * a0.real, -parity * a0.imag], [a0.imag, a0.real]])
            c = np.array([parity * b0.real, b0.imag])
        ra0_new, dec0_new = from_tangent_plane(c[0], c[1], ra0, dec0)
        ra0, dec0 = float(ra0_new), float(dec0_new)
    xi, eta = tangent_plane(ra, dec, ra0, dec0)
    model = dp @ cd.T
    resid = np.hypot(xi - model[:, 0], eta - model[:, 1]) * 3600.0
    return tan_wcs(ra0, dec0, cd), resid


def solve_astrometry(
    sources: Sources,
    refcat: RefCatalog,
    initial: WCS,
    *,
    shape: tuple[int, int],
    max_shift_px: float,
    min_matches: int,
    max_scatter_arcsec: float,
) -> AstrometrySolution:
    """Match sources to the catalog and fit a WCS (see the module docstring).

    Parameters
    ----------
    sources : `Sources`
        Stars found on the in-focus image.
    refcat : `RefCatalog`
        Reference stars.
    initial : `astropy.wcs.WCS`
        Starting WCS (parity and approximate scale are trusted; rotation and shift are not).
    shape : `tuple` of `int`
        Image shape ``(rows, cols)``.
    max_shift_px, min_matches, max_scatter_arcsec
        Search range and success criteria.

    Returns
    -------
    solution : `AstrometrySolution`

    Raises
    ------
    DetectionError
        If too few sources or catalog stars, no transform is found, or the fit is too poor.
    """
    if len(sources) < min_matches:
        raise DetectionError(
            f"astrometry: {len(sources)} stars found on the in-focus image, need {min_matches}"
        )
    cx, cy = project(initial, refcat.ra_deg, refcat.dec_deg)
    half_diag = 0.5 * math.hypot(*shape)
    near = np.isfinite(cx) & (
        np.hypot(cx - BORESIGHT_PIXEL[0], cy - BORESIGHT_PIXEL[1]) <= half_diag + max_shift_px
    )
    near_idx = np.flatnonzero(near)
    if near_idx.size < min_matches:
        raise DetectionError(
            f"astrometry: {near_idx.size} catalog stars ({refcat.source}) fall near the field, "
            f"need {min_matches}"
        )
    near_idx = near_idx[np.argsort(refcat.mag[near_idx], kind="stable")]
    cat_xy = np.column_stack([cx[near_idx], cy[near_idx]])
    det_xy = np.column_stack([sources.x, sources.y])

    candidates = _vote(det_xy[:_N_DET_TRIANGLES], cat_xy[:_N_CAT_TRIANGLES], max_shift_px=max_shift_px)
    if not candidates:
        raise DetectionError(
            f"astrometry: no triangle of the {min(len(sources), _N_DET_TRIANGLES)} brightest stars matches "
            f"the catalog within {max_shift_px:.0f} px and any rotation"
        )
    tree = cKDTree(cat_xy)
    zd = det_xy[:, 0] + 1j * det_xy[:, 1]
    best: tuple[int, NDArray, NDArray] | None = None
    for a, b in candidates:
        moved = a * zd + b
        dist, idx = tree.query(np.column_stack([moved.real, moved.imag]))
        hit = dist <= _MATCH_RADIUS_PX
        if best is None or hit.sum() > best[0]:
            best = (int(hit.sum()), np.flatnonzero(hit), idx[hit])
    if best is None or best[0] < min_matches:
        raise DetectionError(
            f"astrometry: the best transform matches {0 if best is None else best[0]} stars, "
            f"need {min_matches}"
        )
    src_i, cat_i = best[1], best[2]
    parity = -1.0 if np.linalg.det(_cd_of(initial)) < 0 else 1.0
    ra0, dec0 = (float(v) for v in initial.wcs.crval)
    radius = _MATCH_RADIUS_PX
    wcs, resid, affine = initial, np.zeros(0), False

    def fit(src: NDArray[np.intp], cat: NDArray[np.intp]) -> tuple[WCS, NDArray, bool]:
        # Affine (6 parameters) from 5 matches on, else scale and rotation (4).
        ref = near_idx[cat]
        affine = len(src) >= 5
        wcs, resid = _fit_wcs(
            det_xy[src],
            refcat.ra_deg[ref],
            refcat.dec_deg[ref],
            ra0=ra0,
            dec0=dec0,
            parity=parity,
            affine=affine,
        )
        return wcs, resid, affine

    for _ in range(4):
        # Keep one detection per catalog star (the nearest).
        _, first = np.unique(cat_i, return_index=True)
        src_i, cat_i = src_i[first], cat_i[first]
        wcs, resid, affine = fit(src_i, cat_i)
        scale = 3600.0 * math.sqrt(abs(np.linalg.det(_cd_of(wcs))))
        rms = float(np.sqrt(np.mean(resid**2))) if resid.size else 0.0
        radius = max(min(radius, 3.0 * rms / scale), 1.5)
        px, py = project(wcs, refcat.ra_deg[near_idx], refcat.dec_deg[near_idx])
        tree = cKDTree(np.column_stack([px, py]))
        dist, idx = tree.query(det_xy)
        hit = dist <= radius
        src_i, cat_i = np.flatnonzero(hit), idx[hit]
        if len(src_i) < min_matches:
            break
    _, first = np.unique(cat_i, return_index=True)
    src_i, cat_i = src_i[first], cat_i[first]
    unsaturated = ~sources.saturated[src_i]
    if unsaturated.sum() >= min_matches:
        src_i, cat_i = src_i[unsaturated], cat_i[unsaturated]
    n = len(src_i)
    if n < min_matches:
        raise DetectionError(f"astrometry: only {n} stars match after refinement, need {min_matches}")
    wcs, resid, affine = fit(src_i, cat_i)
    ref = near_idx[cat_i]
    n_par = 6 if affine else 4
    scatter = float(np.sqrt(np.sum(resid**2) / max(n - n_par / 2, 1)))
    if scatter > max_scatter_arcsec:
        raise DetectionError(
            f"astrometry: WCS scatter {scatter:.2f} arcsec over {n} stars exceeds {max_scatter_arcsec} arcsec"
        )
    x0, y0 = project(wcs, [ra0], [dec0])
    return AstrometrySolution(
        wcs=wcs,
        scatter_arcsec=scatter,
        n_matches=n,
        source_index=src_i.astype(np.int64),
        ref_index=ref.astype(np.int64),
        rotation_deg=float((wcs_rotation_deg(wcs) - wcs_rotation_deg(initial) + 180.0) % 360.0 - 180.0),
        shift_px=(float(x0[0] - BORESIGHT_PIXEL[0]), float(y0[0] - BORESIGHT_PIXEL[1])),
        n_parameters=n_par,
    )
