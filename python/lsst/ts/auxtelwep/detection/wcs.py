"""WCS helpers for detection: the initial WCS of an exposure, projections, and moving a WCS between exposures.

Conventions: pixels are 0-based ``(x, y)`` = ``(col, row)`` (astropy calls with ``origin=0``); the WCS is a
TAN projection whose reference pixel is the boresight (`instrument.BORESIGHT_PIXEL`) and whose CD matrix
follows `exposure.boresight_wcs`: ``CD = s * P @ R(rotpa)`` with ``P = diag(-1, 1)`` (east toward -x at zero
rotation) and ``R`` a counter-clockwise rotation. Tangent-plane coordinates ``(xi, eta)`` are in degrees,
``xi`` toward east and ``eta`` toward north, as FITS intermediate world coordinates.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math

import batoid
import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from ..errors import RawFormatError
from ..exposure import Exposure, boresight_wcs
from ..headers import parse_header
from ..instrument import BORESIGHT_PIXEL, PIXEL_SIZE_M, AuxTel, Role

__all__ = [
    "Pointing",
    "from_tangent_plane",
    "initial_wcs",
    "model_image_shift_px",
    "pointing_of",
    "project",
    "tan_wcs",
    "tangent_plane",
    "transfer_wcs",
    "wcs_rotation_deg",
]

_log = logging.getLogger(__name__)


def tangent_plane(
    ra_deg: ArrayLike, dec_deg: ArrayLike, ra0_deg: float, dec0_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gnomonic projection about ``(ra0, dec0)``.

    Parameters
    ----------
    ra_deg, dec_deg : array-like
        Sky positions, degrees.
    ra0_deg, dec0_deg : `float`
        Tangent point, degrees.

    Returns
    -------
    xi, eta : `numpy.ndarray`
        Standard coordinates, degrees (``xi`` east, ``eta`` north). Points more than 90 degrees away are NaN.
    """
    ra = np.deg2rad(np.asarray(ra_deg, dtype=float))
    dec = np.deg2rad(np.asarray(dec_deg, dtype=float))
    a0, d0 = math.radians(ra0_deg), math.radians(dec0_deg)
    dra = ra - a0
    cos_c = math.sin(d0) * np.sin(dec) + math.cos(d0) * np.cos(dec) * np.cos(dra)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.where(cos_c > 0, np.cos(dec) * np.sin(dra) / cos_c, np.nan)
        eta = np.where(
            cos_c > 0, (math.cos(d0) * np.sin(dec) - math.sin(d0) * np.cos(dec) * np.cos(dra)) / cos_c, np.nan
        )
    return np.rad2deg(xi), np.rad2deg(eta)


def from_tangent_plane(
    xi_deg: ArrayLike, eta_deg: ArrayLike, ra0_deg: float, dec0_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Inverse of `tangent_plane`: standard coordinates (deg) to ``(ra, dec)`` (deg).

    Parameters
    ----------
    xi_deg, eta_deg : array-like
        Standard coordinates, degrees (``xi`` east, ``eta`` north).
    ra0_deg, dec0_deg : `float`
        Tangent point, degrees.
    """
    xi = np.deg2rad(np.asarray(xi_deg, dtype=float))
    eta = np.deg2rad(np.asarray(eta_deg, dtype=float))
    a0, d0 = math.radians(ra0_deg), math.radians(dec0_deg)
    denom = math.cos(d0) - eta * math.sin(d0)
    ra = a0 + np.arctan2(xi, denom)
    dec = np.arctan2(math.sin(d0) + eta * math.cos(d0), np.hypot(xi, denom))
    return np.mod(np.rad2deg(ra), 360.0), np.rad2deg(dec)


def tan_wcs(
    ra0_deg: float, dec0_deg: float, cd: ArrayLike, *, crpix0: tuple[float, float] = BORESIGHT_PIXEL
) -> WCS:
    """A TAN WCS with reference pixel ``crpix0`` (0-based ``(x, y)``) and CD matrix ``cd`` (deg/px).

    Parameters
    ----------
    ra0_deg, dec0_deg : `float`
        Sky position of the reference pixel, degrees.
    cd : array-like, shape (2, 2)
        CD matrix, degrees per pixel.
    crpix0 : `tuple` [`float`, `float`], optional
        0-based reference pixel ``(x, y)``; default the boresight pixel.
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0_deg, dec0_deg]
    wcs.wcs.crpix = [crpix0[0] + 1.0, crpix0[1] + 1.0]
    wcs.wcs.cd = np.asarray(cd, dtype=float)
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


def project(
    wcs: WCS, ra_deg: ArrayLike, dec_deg: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sky (deg) to 0-based pixels ``(x, y)`` through ``wcs``.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        The WCS.
    ra_deg, dec_deg : array-like
        Sky positions, degrees.
    """
    x, y = wcs.all_world2pix(np.asarray(ra_deg, dtype=float), np.asarray(dec_deg, dtype=float), 0)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def wcs_rotation_deg(wcs: WCS) -> float:
    """Position angle of the +y (row) axis, degrees from north through east (the ``ROTPA`` convention).

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        A celestial WCS.
    """
    cd = _cd_of(wcs)
    # Column 2 of CD is the sky direction of +y: (d xi, d eta) = (s sin t, s cos t).
    return math.degrees(math.atan2(cd[0, 1], cd[1, 1]))


def _cd_of(wcs: WCS) -> NDArray[np.float64]:
    if wcs.wcs.has_cd():
        return np.array(wcs.wcs.cd, dtype=float)
    return np.array(wcs.wcs.get_pc() * wcs.wcs.get_cdelt()[:, None], dtype=float)


@dataclasses.dataclass(frozen=True)
class Pointing:
    """Where an exposure's header says the boresight pointed.

    Attributes
    ----------
    ra_deg, dec_deg : `float`
        Boresight, degrees.
    rotpa_deg : `float`
        Position angle of +y, degrees.
    source : `str`
        ``"header"`` (RA/DEC/ROTPA keys) or ``"wcs"`` (the exposure's WCS).
    """

    ra_deg: float
    dec_deg: float
    rotpa_deg: float
    source: str


def pointing_of(exposure: Exposure) -> Pointing | None:
    """The boresight pointing of an exposure: its RA/DEC/ROTPA keys, else its WCS, else `None`.

    Parameters
    ----------
    exposure : `Exposure`
        The exposure (header and WCS).
    """
    try:
        # Read as the intake reads it: RA/DEC in radians before 2020-01-28 come out in degrees.
        values = parse_header(exposure.header, where=exposure.obsid)
    except RawFormatError:  # an exposure built in memory with a bad key: its WCS may still say
        values = None
    if values is not None and values.ra_deg is not None and values.dec_deg is not None:
        return Pointing(values.ra_deg, values.dec_deg, values.rotation_deg or 0.0, "header")
    if exposure.wcs is not None:
        ra, dec = exposure.wcs.all_pix2world([[BORESIGHT_PIXEL[0], BORESIGHT_PIXEL[1]]], 0)[0]
        return Pointing(float(ra), float(dec), wcs_rotation_deg(exposure.wcs), "wcs")
    return None


#: Largest relative difference between a header WCS's pixel scale and the optical plate scale for it to be
#: taken as LATISS's.
_WCS_SCALE_TOLERANCE = 0.05


def initial_wcs(exposure: Exposure, telescope: AuxTel) -> tuple[WCS | None, str]:
    """The WCS to start from: the exposure's own, else one built from the header's boresight.

    Parameters
    ----------
    exposure : `Exposure`
        The exposure; its own WCS is used only if its scale matches the telescope's.
    telescope : `AuxTel`
        Gives the plate scale.

    Returns
    -------
    wcs : `astropy.wcs.WCS` or `None`
        `None` when the exposure has neither a WCS nor RA/DEC keys.
    source : `str`
        Where it came from, for the result's reason.
    """
    scale = telescope.plate_scale_arcsec_per_px
    ignored = ""
    if exposure.wcs is not None:
        own = float(np.sqrt(abs(np.linalg.det(_cd_of(exposure.wcs))))) * 3600.0
        if abs(own / scale - 1.0) < _WCS_SCALE_TOLERANCE:
            return exposure.wcs, "the exposure's WCS"
        # Raws of 2020-2022 carry CD1_1 = 0.105 (378"/px): not LATISS's WCS, whatever it was.
        ignored = f"the exposure's WCS ignored (scale {own:.4g}\"/px, not {scale:.4g}); "
    pointing = pointing_of(exposure)
    if pointing is None:
        return None, ignored + "no WCS and no RA/DEC in the header"
    wcs = boresight_wcs(pointing.ra_deg, pointing.dec_deg, pointing.rotpa_deg, scale_arcsec_per_px=scale)
    return wcs, ignored + "the boresight WCS (header RA, DEC, ROTPA)"


def transfer_wcs(wcs: WCS, source: Exposure, target: Exposure) -> tuple[WCS, str]:
    """Carry a WCS solved on ``source`` over to ``target``, applying their header pointing difference.

    The telescope is assumed not to have moved except as the headers say: the reference point is moved by
    the difference of boresight RA/DEC and the CD matrix turned by the difference of ROTPA.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        WCS solved on ``source``.
    source, target : `Exposure`
        Exposures whose header pointings (`pointing_of`) give the offset; with either unknown, none is
        applied.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        WCS for ``target``.
    note : `str`
        The offset applied, for the result's reason.
    """
    p_src, p_tgt = pointing_of(source), pointing_of(target)
    cd = _cd_of(wcs)
    ra0, dec0 = (float(v) for v in wcs.wcs.crval)
    if p_src is None or p_tgt is None:
        return tan_wcs(
            ra0, dec0, cd, crpix0=tuple(wcs.wcs.crpix - 1.0)
        ), "no pointing difference known (none applied)"
    # Move the solved reference point by the on-sky offset between the two boresights.
    xi, eta = tangent_plane(p_tgt.ra_deg, p_tgt.dec_deg, p_src.ra_deg, p_src.dec_deg)
    ra1, dec1 = from_tangent_plane(xi, eta, ra0, dec0)
    drot = p_tgt.rotpa_deg - p_src.rotpa_deg
    t = math.radians(drot)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    note = (
        f"pointing offset ({float(xi) * 3600:.1f}, {float(eta) * 3600:.1f}) arcsec, rotation {drot:.3f} deg"
    )
    return tan_wcs(float(ra1), float(dec1), cd @ rot, crpix0=tuple(wcs.wcs.crpix - 1.0)), note


@functools.lru_cache(maxsize=32)
def model_image_shift_px(telescope: AuxTel, role: Role) -> tuple[float, float]:
    """Where the optics put a donut's light centroid relative to the WCS prediction, pixels ``(dx, dy)``.

    A WCS (header or fitted) maps a star to where the aligned telescope's in-focus chief ray lands. The
    telescope's M2 state moves the image (the light centroid ~548 px per mm of decenter) and the defocus adds
    a fraction of a pixel; both are taken from the optical model, on axis (the field dependence is below a
    pixel on the chip). Zero for the aligned telescope apart from the defocus term.

    Parameters
    ----------
    telescope : `AuxTel`
        In-focus telescope state (hexapod, camera angle, wavelength).
    role : `Role`
        Which image.
    """
    design = AuxTel(wavelength_m=telescope.wavelength_m).optic
    chief = design.trace(
        batoid.RayVector.fromStop(
            0.0, 0.0, optic=design, wavelength=telescope.wavelength_m, theta_x=0.0, theta_y=0.0
        )
    )
    optic = telescope.with_role(role).optic
    rays = optic.trace(
        batoid.RayVector.asPolar(
            optic=optic, wavelength=telescope.wavelength_m, theta_x=0.0, theta_y=0.0, nrad=24, naz=96
        )
    )
    ok = ~(rays.vignetted | rays.failed)
    if not ok.any():
        return 0.0, 0.0
    dx = (float(rays.x[ok].mean()) - float(chief.x[0])) / PIXEL_SIZE_M
    dy = (float(rays.y[ok].mean()) - float(chief.y[0])) / PIXEL_SIZE_M
    return dx, dy
