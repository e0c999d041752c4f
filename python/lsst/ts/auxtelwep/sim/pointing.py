"""Where the telescope points and what a simulated raw's header says.

`Pointing` (boresight, sky rotation, elevation, camera angle), the TRUE WCS of a pointing (`true_wcs`: TAN
about the boresight with the optical plate scale), a deliberately wrong WCS (`offset_wcs`), the identity of
an exposure (`Observation`) and the primary header built from them (`build_header`).

WCS error convention: with ``offset_wcs(wcs, dx_px=dx, dy_px=dy, drot_deg=drot)`` the WCS predicts pixel
``c + R(drot) (p - c) + (dx, dy)`` for a star ``wcs`` puts at ``p``, where ``c`` is the boresight pixel and
``R`` turns (col, row) vectors counter-clockwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..errors import InputError
from ..exposure import boresight_wcs
from ..instrument import DETECTOR_SHAPE, AuxTel, Role

__all__ = ["Observation", "Pointing", "build_header", "offset_wcs", "true_wcs"]

_IMGTYPE = {Role.INTRA: "CWFS", Role.EXTRA: "CWFS", Role.INFOCUS: "ENGTEST"}


@dataclasses.dataclass(frozen=True)
class Pointing:
    """Where the telescope points and how the camera is turned.

    Attributes
    ----------
    ra_deg, dec_deg : `float`
        Boresight, ICRS degrees.
    rotpa_deg : `float`
        Sky position angle of the +row axis, degrees (header ``ROTPA``, `boresight_wcs` convention).
    elevation_deg : `float`
        Elevation (header ``ELSTART``), degrees.
    camera_angle_deg : `float`
        Camera rotation relative to the hexapod frame (instrument.py convention; header ``CAMANGLE``).
    azimuth_deg : `float`
        Azimuth (header ``AZSTART``), degrees.
    camera_angle_in_header : `bool`
        Write ``CAMANGLE`` (a key of this simulator: real raws have none, the CSC takes the angle from the
        mount, offline users give it).
    """

    ra_deg: float
    dec_deg: float
    rotpa_deg: float = 0.0
    elevation_deg: float = 60.0
    camera_angle_deg: float = 0.0
    azimuth_deg: float = 180.0
    camera_angle_in_header: bool = True

    def dithered(self, dra_arcsec: float, ddec_arcsec: float) -> Pointing:
        """Return the pointing moved by ``(dra, ddec)`` arcsec on the sky (RA step divided by cos dec).

        Parameters
        ----------
        dra_arcsec, ddec_arcsec : `float`
            Offsets on the sky, arcseconds.
        """
        dra = dra_arcsec / 3600.0 / max(np.cos(np.deg2rad(self.dec_deg)), 1e-6)
        return dataclasses.replace(
            self, ra_deg=(self.ra_deg + dra) % 360.0, dec_deg=self.dec_deg + ddec_arcsec / 3600.0
        )


def true_wcs(pointing: Pointing, telescope: AuxTel) -> WCS:
    """The TRUE celestial WCS of the assembled image: TAN about the boresight with the optical plate scale.

    Parameters
    ----------
    pointing : `Pointing`
        Boresight and sky position angle.
    telescope : `AuxTel`
        Gives the plate scale.
    """
    return boresight_wcs(
        pointing.ra_deg,
        pointing.dec_deg,
        pointing.rotpa_deg,
        scale_arcsec_per_px=telescope.plate_scale_arcsec_per_px,
    )


def offset_wcs(wcs: WCS, *, dx_px: float, dy_px: float, drot_deg: float) -> WCS:
    """Return ``wcs`` made wrong by a shift and a rotation about the boresight (module docstring convention).

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        A WCS whose reference pixel is the boresight (`true_wcs`).
    dx_px, dy_px : `float`
        Shift of the predicted positions, pixels (col, row).
    drot_deg : `float`
        Rotation of the predicted positions about the boresight, degrees counter-clockwise in (col, row).
    """
    a = np.deg2rad(drot_deg)
    rot_inv = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    wrong = wcs.deepcopy()
    cd = wcs.pixel_scale_matrix @ rot_inv
    wrong.wcs.cd = cd
    wrong.wcs.crpix = [wcs.wcs.crpix[0] + dx_px, wcs.wcs.crpix[1] + dy_px]
    wrong.wcs.set()
    return wrong


@dataclasses.dataclass(frozen=True)
class Observation:
    """Identity of one exposure in the night.

    Attributes
    ----------
    dayobs : `str`
        ``YYYYMMDD``.
    seqnum : `int`
        Sequence number within the day.
    groupid : `str`
        Shared by the images of a triplet.
    program : `str`
        Header ``PROGRAM``.
    date_obs : `str`
        ISO time (TAI) of the start of the exposure, header ``DATE-OBS`` ('' writes none).
    """

    dayobs: str = "20240624"
    seqnum: int = 1
    groupid: str = ""
    program: str = "AUXTELWEP_SIM"
    date_obs: str = ""

    def __post_init__(self) -> None:
        if len(self.dayobs) != 8 or not self.dayobs.isdigit() or not 0 < self.seqnum < 1_000_000:
            raise InputError(
                f"Observation needs dayobs 'YYYYMMDD' and 0 < seqnum < 1e6, got dayobs={self.dayobs!r}, "
                f"seqnum={self.seqnum}",
                value=(self.dayobs, self.seqnum),
            )

    @property
    def obsid(self) -> str:
        """``AT_O_<dayobs>_<seqnum:06d>``."""
        return f"AT_O_{self.dayobs}_{self.seqnum:06d}"


def build_header(
    observation: Observation,
    role: Role,
    pointing: Pointing,
    *,
    exptime_s: float,
    darktime_s: float,
    wcs: WCS | None,
    filter_name: str = "SDSSr_65mm",
    grating: str = "empty_1",
) -> fits.Header:
    """Primary header of a simulated raw (FACTS.md section 3 keys, ``CAMANGLE``, and ``wcs`` if given).

    Parameters
    ----------
    observation : `Observation`
        Identity of the exposure (``OBSID``, ``GROUPID``, ``DAYOBS``, ``SEQNUM``, ``PROGRAM``, ``DATE-OBS``).
    role : `Role`
        Role of the exposure (``IMGTYPE``, ``REASON``, ``FOCUSZ``).
    pointing : `Pointing`
        Boresight, rotation, elevation and azimuth (and ``CAMANGLE`` if it is to be written).
    exptime_s, darktime_s : `float`
        Exposure and dark times, seconds.
    wcs : `astropy.wcs.WCS` or None
        WCS to write in the header; None writes none.
    filter_name : `str`, optional
        Header ``FILTER``.
    grating : `str`, optional
        Header ``GRATING``.
    """
    header = fits.Header()
    cards: list[tuple[str, object, str]] = [
        ("TELESCOP", "LSST AuxTelescope", ""),
        ("INSTRUME", "LATISS", ""),
        ("OBSID", observation.obsid, "observation id"),
        ("IMGTYPE", _IMGTYPE[role], ""),
        ("REASON", role.name, "INTRA, EXTRA or INFOCUS"),
        ("PROGRAM", observation.program, ""),
        ("GROUPID", observation.groupid, "shared by the images of a triplet"),
        ("DAYOBS", observation.dayobs, ""),
        ("SEQNUM", observation.seqnum, ""),
        ("RA", pointing.ra_deg, "[deg] boresight"),
        ("DEC", pointing.dec_deg, "[deg] boresight"),
        ("ROTPA", pointing.rotpa_deg, "[deg] sky position angle of +row"),
        ("ELSTART", pointing.elevation_deg, "[deg]"),
        ("AZSTART", pointing.azimuth_deg, "[deg]"),
        ("FOCUSZ", role.focus_z_mm, "[mm] hexapod focus offset"),
        ("EXPTIME", exptime_s, "[s]"),
        ("DARKTIME", darktime_s, "[s]"),
        ("FILTER", filter_name, ""),
        ("GRATING", grating, ""),
        ("CCDTEMP", -94.0, "[C]"),
        ("DETSIZE", f"[1:{DETECTOR_SHAPE[1]},1:{DETECTOR_SHAPE[0]}]", ""),
        ("BUNIT", "adu", ""),
        ("SIMULATE", True, "written by auxtelwep simulate"),
    ]
    if pointing.camera_angle_in_header:
        cards.append(("CAMANGLE", pointing.camera_angle_deg, "[deg] camera vs hexapod frame (auxtelwep)"))
    if observation.date_obs:
        cards.append(("DATE-OBS", observation.date_obs, "start of exposure (TAI)"))
    for key, value, comment in cards:
        header[key] = (value, comment)
    if wcs is not None:
        header.update(wcs.to_header(relax=True))
    return header
