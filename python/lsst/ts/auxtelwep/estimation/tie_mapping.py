"""Pupil grid and image-to-pupil mapping ("compensation") for the TIE solver.

A `PupilGrid` is a square grid in normalised pupil coordinates ``(u, v)`` whose step is one image pixel at the
paraxial donut scale; the computation uses the grid points of an annular domain (the pupil plus a ring of
``boundary_px`` pixels on each edge, whose mapping is evaluated at the nearest pupil edge, as in cwfs).

A `SideModel` holds everything about one donut that does not change during the TIE loop: the stamp, its
centre, the base mapping of the optical model (pixels, relative to the stamp centre) and its Jacobian.
`SideModel.compensate` adds the displacement ``kappa * grad W`` of the current wavefront estimate, samples the
stamp at the mapped points (bilinear) and multiplies by the Jacobian determinant of the mapping, which turns
image intensity into pupil intensity.
"""

from __future__ import annotations

import dataclasses
import math

import galsim
import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates

from .. import zernikes
from ..errors import EstimationError, InputError
from .tie_geometry import MaskCircle, TieGeometry

__all__ = ["PupilGrid", "SideModel", "build_side", "pupil_grid"]

_CENTROID_ITERATIONS = 4
_WINDOW_FACTOR = 1.15  # centroid window radius over the model donut's outer radius ...
_WINDOW_MARGIN_PX = 4.0  # ... plus this margin for the blur of the edge


@dataclasses.dataclass(frozen=True, eq=False)
class PupilGrid:
    """The pupil sampling of one solve.

    Attributes
    ----------
    n_side : `int`
        Grid points per side (even: points sit at half-integer steps, symmetric about the centre).
    spacing : `float`
        Grid step in normalised pupil units (one paraxial image pixel).
    scale_px : `float`
        Image pixels per normalised pupil unit (the paraxial donut radius in pixels).
    obscuration : `float`
        Pupil obscuration.
    domain : `numpy.ndarray` of bool, shape ``(n_side, n_side)``
        Grid points used, row = v, col = u.
    bases : `lsst.ts.auxtelwep.zernikes.ZernikeBases`
        Zernike values and derivatives at the domain points (unclipped coordinates).
    uc, vc : `numpy.ndarray`, shape ``(npoint,)``
        Domain points moved onto the annulus (points of the boundary rings go to the nearest edge).
    """

    n_side: int
    spacing: float
    scale_px: float
    obscuration: float
    domain: NDArray[np.bool_]
    bases: zernikes.ZernikeBases
    uc: NDArray[np.float64]
    vc: NDArray[np.float64]

    @property
    def npoint(self) -> int:
        """Number of domain points."""
        return int(self.uc.size)

    def domain_image(self, flags: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Put per-point flags on the square grid (False outside the domain), shape ``(n_side, n_side)``.

        Parameters
        ----------
        flags : `numpy.ndarray` of bool, shape ``(npoint,)``
            One flag per domain point.
        """
        out = np.zeros(self.domain.shape, dtype=bool)
        out[self.domain] = flags
        return out

    def to_image(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Put per-point values on the square grid (NaN outside the domain), shape ``(n_side, n_side)``.

        Parameters
        ----------
        values : `numpy.ndarray`, shape ``(npoint,)``
            One value per domain point.
        """
        out = np.full(self.domain.shape, np.nan)
        out[self.domain] = values
        return out


def pupil_grid(geometry: TieGeometry, solve_noll: tuple[int, ...], boundary_px: int) -> PupilGrid:
    """Build the pupil grid for ``geometry`` (bases memoised by `zernikes.grid_bases`).

    Parameters
    ----------
    geometry : `TieGeometry`
        Instrument; its donut radius sets the grid step and its obscuration the annulus.
    solve_noll : `tuple` of `int`
        Noll indices of the Zernike bases evaluated on the grid.
    boundary_px : `int`
        Width of the boundary rings added inside and outside the annulus, pixels.

    Raises
    ------
    InputError
        If the donut radius is below 8 pixels.
    """
    scale = geometry.donut_radius_px
    if scale < 8:
        raise InputError(
            f"{geometry.name}: donut radius {scale:.1f} px is too small for the TIE (need >= 8 px)",
            value=scale,
        )
    spacing = 1.0 / scale
    n_side = 2 * math.ceil(scale + boundary_px + 2)
    obsc = geometry.obscuration
    ring = boundary_px * spacing
    domain, bases = zernikes.grid_bases(
        solve_noll, n_side, spacing, max(0.0, obsc - ring) if obsc > 0 else 0.0, 1.0 + ring, obsc
    )
    r = np.hypot(bases.x, bases.y)
    rc = np.clip(r, obsc, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(r > 0, rc / r, 1.0)
    return PupilGrid(n_side, spacing, scale, obsc, domain, bases, bases.x * factor, bases.y * factor)


def _apply_circles(
    uc: NDArray[np.float64], vc: NDArray[np.float64], circles: tuple[MaskCircle, ...], tol: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Vignetting: drop points beyond each circle (by more than ``tol``) and move the rest onto its edge."""
    uc, vc = uc.copy(), vc.copy()
    keep = np.ones(uc.shape, dtype=bool)
    for circle in circles:
        du, dv = uc - circle.center_u, vc - circle.center_v
        d = np.hypot(du, dv)
        if circle.clear:
            keep &= d <= circle.radius + tol
            edge = keep & (d > circle.radius)
        else:
            keep &= d >= circle.radius - tol
            edge = keep & (d < circle.radius) & (d > 0)
        uc[edge] = circle.center_u + du[edge] / d[edge] * circle.radius
        vc[edge] = circle.center_v + dv[edge] / d[edge] * circle.radius
    return uc, vc, keep


def _centroid(stamp: NDArray[np.float64], radius_px: float, role: str) -> tuple[float, float, float]:
    """Flux-weighted centroid (col, row) in a circular window that follows the centroid, and that flux."""
    rows, cols = np.indices(stamp.shape, dtype=float)
    weights = np.clip(stamp, 0.0, None)
    total = weights.sum()
    cx, cy = float((weights * cols).sum() / total), float((weights * rows).sum() / total)
    for _ in range(_CENTROID_ITERATIONS):
        window = (cols - cx) ** 2 + (rows - cy) ** 2 <= radius_px**2
        w = np.where(window, stamp, 0.0)
        total = w.sum()
        if not total > 0:
            raise EstimationError(f"no positive flux within {radius_px:.0f} px of the {role} donut centroid")
        cx, cy = float((w * cols).sum() / total), float((w * rows).sum() / total)
    return cx, cy, float(total)


@dataclasses.dataclass(frozen=True, eq=False)
class SideModel:
    """One donut and its mapping onto the pupil grid (see module docstring).

    Attributes
    ----------
    side : `str`
        "intra" or "extra".
    stamp : `numpy.ndarray`
        The stamp, electrons.
    flux : `float`
        Flux of the donut (sum in the centroid window), electrons: compensated images are divided by it.
    centroid_col, centroid_row : `float`
        Flux centroid of the donut in the stamp, pixels (see `mapping`).
    uc, vc : `numpy.ndarray`, shape ``(npoint,)``
        Pupil coordinates at which the mapping is evaluated (domain points moved onto the pupil edges).
    mask : `numpy.ndarray` of bool, shape ``(npoint,)``
        Domain points that receive light (annulus and vignetting, with the boundary rings).
    base_x, base_y : `numpy.ndarray`, shape ``(npoint,)``
        Image position of each point for a perfect design, pixels relative to the origin.
    base_jac : `numpy.ndarray`, shape ``(4, npoint)``
        d(x, y)/d(u, v) of the base mapping: dx/du, dx/dv, dy/du, dy/dv, pixels per pupil unit.
    kappa : `float`
        Image displacement per unit wavefront slope, pixels per (metre per pupil unit): ``-distance / (R p)``.
    scale_px : `float`
        Pixels per pupil unit (paraxial), to express the Jacobian determinant relative to 1.
    obscuration : `float`
        Obscuration of the wavefront Zernikes.
    """

    side: str
    stamp: NDArray[np.float64]
    flux: float
    centroid_col: float
    centroid_row: float
    uc: NDArray[np.float64]
    vc: NDArray[np.float64]
    mask: NDArray[np.bool_]
    base_x: NDArray[np.float64]
    base_y: NDArray[np.float64]
    base_jac: NDArray[np.float64]
    kappa: float
    scale_px: float
    obscuration: float

    def mapping(
        self, coefs_m: NDArray[np.float64], noll: tuple[int, ...]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Image position (col, row in stamp pixels) of each point and the Jacobian determinant (relative).

        The design's model donut is placed so that its centroid (the mean image position over the uniformly
        lit pupil) falls on the stamp's centroid; the wavefront (its tilt included) moves it from there.

        Parameters
        ----------
        coefs_m : `numpy.ndarray`
            Wavefront relative to the optical model's reference, Zernike coefficients in metres.
        noll : `tuple` of `int`
            Noll indices of ``coefs_m``.

        Returns
        -------
        col, row : `numpy.ndarray`, shape ``(npoint,)``
            Image position of each domain point, stamp pixels.
        det : `numpy.ndarray`, shape ``(npoint,)``
            Jacobian determinant of the mapping relative to the paraxial scale.
        """
        col, row, det, _ = self._mapping(coefs_m, noll)
        return col, row, det

    def _mapping(
        self, coefs_m: NDArray[np.float64], noll: tuple[int, ...]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        x, y = self.base_x, self.base_y
        j = self.base_jac
        if np.any(coefs_m):
            dense = np.zeros(max(noll) + 1)
            dense[list(noll)] = coefs_m
            wave = galsim.zernike.Zernike(dense, R_outer=1.0, R_inner=self.obscuration)
            gx, gy = wave.gradX, wave.gradY
            k = self.kappa
            wxy = k * gx.gradY(self.uc, self.vc)
            x = x + k * gx(self.uc, self.vc)
            y = y + k * gy(self.uc, self.vc)
            j = np.stack(
                [
                    j[0] + k * gx.gradX(self.uc, self.vc),
                    j[1] + wxy,
                    j[2] + wxy,
                    j[3] + k * gy.gradY(self.uc, self.vc),
                ]
            )
        det = (j[0] * j[3] - j[1] * j[2]) / self.scale_px**2
        dx = self.centroid_col - float(self.base_x[self.mask].mean())
        dy = self.centroid_row - float(self.base_y[self.mask].mean())
        return x + dx, y + dy, det, j

    def compensate(
        self, coefs_m: NDArray[np.float64], noll: tuple[int, ...]
    ) -> tuple[NDArray[np.float64], bool]:
        """Map the stamp onto the pupil with the wavefront ``coefs_m`` (metres over ``noll``; see `mapping`).

        Parameters
        ----------
        coefs_m : `numpy.ndarray`
            Wavefront relative to the optical model's reference, Zernike coefficients in metres.
        noll : `tuple` of `int`
            Noll indices of ``coefs_m``.

        Returns
        -------
        pupil : `numpy.ndarray`, shape ``(npoint,)``
            Intensity at each domain point (zero off the mask).
        folded : `bool`
            True if the mapping folds (Jacobian determinant <= 0 somewhere on the mask): a caustic.
        """
        col, row, det, jac = self._mapping(coefs_m, noll)
        # Folded where the Jacobian relative to the design's (B^-1 J) has an eigenvalue <= 0: a determinant
        # <= 0, or a trace <= 0 (both eigenvalues through zero, e.g. a donut turned inside out by defocus,
        # whose determinant is positive again).
        b = self.base_jac[:, self.mask]
        j = jac[:, self.mask]
        b_det = b[0] * b[3] - b[1] * b[2]
        rel_det = (j[0] * j[3] - j[1] * j[2]) / b_det
        rel_trace = (b[3] * j[0] - b[1] * j[2] - b[2] * j[1] + b[0] * j[3]) / b_det
        folded = bool(np.any(rel_det <= 0) or np.any(rel_trace <= 0))
        values = map_coordinates(self.stamp, [row, col], order=1, mode="constant", cval=0.0, prefilter=False)
        return np.where(self.mask, values * det, 0.0), folded


def _base_mapping(
    model: str,
    sign: float,
    grid: PupilGrid,
    uc: NDArray[np.float64],
    vc: NDArray[np.float64],
    geometry: TieGeometry,
    pmap_coefs: tuple[NDArray[np.float64], NDArray[np.float64], tuple[int, ...], float] | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    scale = grid.scale_px
    if model == "paraxial":
        one, zero = np.full(uc.shape, sign * scale), np.zeros(uc.shape)
        return sign * scale * uc, sign * scale * vc, np.stack([one, zero, zero, one])
    if model == "onAxis":
        # A ray from pupil radius r (normalised) meets the defocused plane at r * f / sqrt(f^2 - r^2 R^2) in
        # units of the paraxial donut radius (exact for an aplanatic beam on axis).
        f, big_r = geometry.focal_length_m, geometry.pupil_radius_m
        q = f**2 - (uc**2 + vc**2) * big_r**2
        g = sign * scale * f / np.sqrt(q)
        t = big_r**2 / q
        jac = np.stack([g * (1 + uc**2 * t), g * uc * vc * t, g * uc * vc * t, g * (1 + vc**2 * t)])
        return g * uc, g * vc, jac
    if pmap_coefs is None:
        raise InputError(f"optical model {model!r} needs a pupil map from geometry.design")
    cx, cy, noll, obsc = pmap_coefs
    p = geometry.pixel_size_m
    out = []
    for coefs in (cx, cy):
        dense = np.zeros(max(noll) + 1)
        dense[list(noll)] = coefs / p
        z = galsim.zernike.Zernike(dense, R_outer=1.0, R_inner=obsc)
        out.append((z(uc, vc), z.gradX(uc, vc), z.gradY(uc, vc)))
    (x, xu, xv), (y, yu, yv) = out
    return x, y, np.stack([xu, xv, yu, yv])


def build_side(
    stamp: NDArray[np.float64],
    side: str,
    field_deg: tuple[float, float],
    *,
    geometry: TieGeometry,
    model: str,
    grid: PupilGrid,
    boundary_px: int,
) -> SideModel:
    """Prepare one donut: base mapping of ``model``, masks and the centre of the stamp.

    The stamp's flux centroid is measured once (in a window following the centroid); `SideModel.mapping`
    places the model donut on it. Each donut is thus centred independently (the two exposures may be pointed
    differently).

    Parameters
    ----------
    stamp : `numpy.ndarray`, shape (n, n)
        Background-subtracted stamp, ``[row, col]``.
    side : `str`
        ``"intra"`` or ``"extra"``.
    field_deg : `tuple` [`float`, `float`]
        Field angle of the donut, batoid frame, degrees (used by the ``offAxis`` model).
    geometry : `TieGeometry`
        Instrument (with ``design`` for ``offAxis``).
    model : `str`
        Optical model: ``"paraxial"``, ``"onAxis"`` or ``"offAxis"``.
    grid : `PupilGrid`
        The pupil grid (`pupil_grid`).
    boundary_px : `int`
        Width of the boundary rings, pixels (also widens the vignetting circles).

    Raises
    ------
    InputError
        If ``model`` is ``offAxis`` and ``geometry`` has no design.
    EstimationError
        If vignetting leaves fewer than 50 pupil points.
    """
    sign = 1.0 if side == "intra" else -1.0
    uc, vc = grid.uc, grid.vc
    mask = np.ones(uc.shape, dtype=bool)
    pmap_coefs = None
    if model == "offAxis":
        if geometry.design is None:
            raise InputError("the offAxis model needs geometry.design")
        pmap = geometry.design.pupil_map(field_deg[0], field_deg[1], side)  # type: ignore[arg-type]
        if pmap.vignetting:
            uc, vc, mask = _apply_circles(uc, vc, pmap.vignetting, boundary_px * grid.spacing)
        pmap_coefs = (pmap.x_coefs_m, pmap.y_coefs_m, pmap.noll, pmap.obscuration)
    base_x, base_y, base_jac = _base_mapping(model, sign, grid, uc, vc, geometry, pmap_coefs)
    if np.count_nonzero(mask) < 50:
        raise EstimationError(
            f"the {side} pupil is vignetted away at field {field_deg} deg ({mask.sum()} pixels)"
        )
    mx, my = float(base_x[mask].mean()), float(base_y[mask].mean())
    outer = float(np.hypot(base_x - mx, base_y - my)[mask].max())
    col, row, flux = _centroid(stamp, _WINDOW_FACTOR * outer + _WINDOW_MARGIN_PX, side)
    distance = geometry.focal_length_m - sign * geometry.defocus_offset_m
    kappa = -distance / (geometry.pupil_radius_m * geometry.pixel_size_m)
    return SideModel(
        side=side,
        stamp=stamp,
        flux=flux,
        centroid_col=col,
        centroid_row=row,
        uc=uc,
        vc=vc,
        mask=mask,
        base_x=base_x,
        base_y=base_y,
        base_jac=base_jac,
        kappa=kappa,
        scale_px=grid.scale_px,
        obscuration=geometry.obscuration,
    )
