"""One simulated LATISS exposure: a star field seen through the TRUE WCS, rendered, written as raw + truth.

Chain: reference catalog (ra, dec, mag) -> TRUE WCS of the pointing (`true_wcs`: boresight TAN with the
optical plate scale) -> nominal pixels -> field angles (`AuxTel.pixel_to_field`) -> donuts traced through
the perturbed, defocused optic (`lsst.ts.auxtelwep.sim.optics`) -> expected electrons + sky ->
`lsst.ts.auxtelwep.sim.signature` (shot noise, detector, 16 amplifiers) -> raw FITS; the truth goes to
JSON beside it (`truth_path`).

A decentred M2 moves the image (about 538 px per mm), so donuts land away from where the true WCS puts the
star, as on the sky: the truth records both (``wcs_col``/``wcs_row`` and the light centroid ``col``/``row``).

WCS error convention: with ``wcs_error=(dx_px, dy_px, drot_deg)`` the header WCS predicts pixel
``c + R(drot) (p - c) + (dx, dy)`` for a star the true WCS puts at ``p``, where ``c`` is the boresight
pixel and ``R`` turns (col, row) vectors counter-clockwise.

Flux: a star of magnitude ``m`` gives ``exptime * 10**(-0.4 (m - zero_point_mag))`` electrons through the
pupil annulus; `ZERO_POINT_MAG` is an approximate r-band value for AuxTel (1.2 m), not a measurement.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydantic
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from ..errors import CatalogError, InputError
from ..exposure import boresight_wcs
from ..instrument import (
    DEFAULT_NOLL,
    DEFAULT_WAVELENGTH_M,
    DETECTOR_SHAPE,
    AuxTel,
    HexapodState,
    Role,
)
from .optics import RenderMethod, add_donut, donut_centroid, render_donut, true_zernikes
from .signature import DetectorSignature

__all__ = [
    "ZERO_POINT_MAG",
    "HexapodTruth",
    "Observation",
    "Pointing",
    "StarTruth",
    "Truth",
    "build_header",
    "offset_wcs",
    "render_scene",
    "simulate_exposure",
    "true_wcs",
    "truth_path",
]

_log = logging.getLogger(__name__)

ZERO_POINT_MAG = 25.0
"""Magnitude giving 1 electron per second through the AuxTel pupil (approximate r band)."""
_RENDER_MARGIN_PX = 300  # stars whose donut centre is farther than this off the chip are not rendered
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
    """

    ra_deg: float
    dec_deg: float
    rotpa_deg: float = 0.0
    elevation_deg: float = 60.0
    camera_angle_deg: float = 0.0
    azimuth_deg: float = 180.0

    def dithered(self, dra_arcsec: float, ddec_arcsec: float) -> Pointing:
        """Return the pointing moved by ``(dra, ddec)`` arcsec on the sky (RA step divided by cos dec)."""
        dra = dra_arcsec / 3600.0 / max(np.cos(np.deg2rad(self.dec_deg)), 1e-6)
        return dataclasses.replace(
            self, ra_deg=(self.ra_deg + dra) % 360.0, dec_deg=self.dec_deg + ddec_arcsec / 3600.0
        )


def true_wcs(pointing: Pointing, telescope: AuxTel) -> WCS:
    """The TRUE celestial WCS of the assembled image: TAN about the boresight with the optical plate scale."""
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


class HexapodTruth(pydantic.BaseModel):
    """A hexapod state in the truth file: x, y, z mm; u, v deg (instrument.HexapodState)."""

    model_config = pydantic.ConfigDict(frozen=True)
    x: float
    y: float
    z: float
    u: float
    v: float

    @classmethod
    def of(cls, state: HexapodState) -> HexapodTruth:
        return cls(**dataclasses.asdict(state))

    def to_state(self) -> HexapodState:
        return HexapodState(self.x, self.y, self.z, self.u, self.v)


class StarTruth(pydantic.BaseModel):
    """One catalog star as simulated. Pixels are 0-based assembled-frame ``(col = x, row = y)``."""

    model_config = pydantic.ConfigDict(frozen=True)
    id: int
    ra_deg: float
    dec_deg: float
    mag: float
    note: str = ""  # the catalog's note column, if any
    field_x_deg: float
    field_y_deg: float
    wcs_col: float  # where the TRUE WCS puts the star (nominal chief ray)
    wcs_row: float
    col: float  # light centroid of the donut in this image (unclipped by the chip edge)
    row: float
    flux_e: float  # electrons reaching the focal plane
    flux_on_chip_e: float  # of which on the chip
    on_chip: bool  # the centroid is on the chip
    # kind ("ta", "opd") -> in-focus deviation from design at Truth.noll, um; empty for stars not rendered
    zernikes_um: dict[str, list[float]]


class Truth(pydantic.BaseModel):
    """Everything that went into one simulated exposure (written as JSON beside the raw)."""

    model_config = pydantic.ConfigDict(frozen=True)
    schema_version: int = 1
    obsid: str
    raw_file: str  # file name, in the truth's directory
    role: str  # Role value: intra, extra, infocus
    dayobs: str
    seqnum: int
    groupid: str
    hexapod: HexapodTruth  # injected state, without the role defocus
    hexapod_with_defocus: HexapodTruth  # what M2 actually was at
    focus_z_mm: float  # header FOCUSZ
    camera_angle_deg: float
    wavelength_m: float
    seeing_arcsec: float
    exptime_s: float
    darktime_s: float
    sky_e_per_px_per_s: float
    zero_point_mag: float
    ra_deg: float
    dec_deg: float
    rotpa_deg: float
    elevation_deg: float
    noll: list[int]
    zernike_units: str = "um"
    stars: list[StarTruth]
    true_wcs: dict[str, float | int | str]  # FITS cards of the true WCS
    header_wcs: dict[str, float | int | str] | None  # the WCS written in the header (None: absent)
    wcs_error: tuple[float, float, float] | None  # (dx_px, dy_px, drot_deg), None when exact or absent
    render_method: str
    seed: int

    def write(self, path: str | Path) -> Path:
        """Write as indented JSON; return the path."""
        path = Path(path)
        path.write_text(self.model_dump_json(indent=1))
        return path

    @classmethod
    def read(cls, path: str | Path) -> Truth:
        """Read a truth file written by `write`."""
        try:
            return cls.model_validate_json(Path(path).read_text())
        except (OSError, pydantic.ValidationError) as exc:
            raise InputError(f"{path}: not a readable truth file ({exc})", value=str(path)) from exc


def truth_path(raw_path: str | Path) -> Path:
    """Truth file of a raw: ``<dir>/<OBSID>.truth.json`` beside ``<dir>/<OBSID>.fits[.fz]``."""
    raw_path = Path(raw_path)
    name = raw_path.name
    for suffix in (".fits.fz", ".fits"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return raw_path.with_name(f"{name}.truth.json")


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
    """Primary header of a simulated raw (FACTS.md section 3 keys, ``CAMANGLE``, and ``wcs`` if given)."""
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
        ("CAMANGLE", pointing.camera_angle_deg, "[deg] camera vs hexapod frame (auxtelwep)"),
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
    if observation.date_obs:
        cards.append(("DATE-OBS", observation.date_obs, "start of exposure (TAI)"))
    for key, value, comment in cards:
        header[key] = (value, comment)
    if wcs is not None:
        header.update(wcs.to_header(relax=True))
    return header


def _wcs_cards(wcs: WCS) -> dict[str, float | int | str]:
    return {key: value for key, value in wcs.to_header(relax=True).items() if key not in ("COMMENT", "")}


def render_scene(
    telescope: AuxTel,
    role: Role,
    pointing: Pointing,
    catalog: Table,
    *,
    seeing_arcsec: float,
    exptime_s: float,
    sky_e_per_px_per_s: float,
    zero_point_mag: float = ZERO_POINT_MAG,
    noll: Sequence[int] = DEFAULT_NOLL,
    method: RenderMethod = "expected",
    rng: np.random.Generator | None = None,
) -> tuple[NDArray[np.float32], list[StarTruth]]:
    """Render the expected incident electrons of one exposure (no noise, no detector).

    Parameters
    ----------
    telescope : `~lsst.ts.auxtelwep.instrument.AuxTel`
        The perturbed in-focus telescope (hexapod state, wavelength); the camera angle is taken from
        ``pointing`` and the role defocus is added here.
    role : `~lsst.ts.auxtelwep.instrument.Role`
    pointing : `Pointing`
    catalog : `astropy.table.Table`
        Columns ``ra``, ``dec`` (deg), ``mag``; optional ``id``, ``note``.
    seeing_arcsec, exptime_s, sky_e_per_px_per_s : `float`
        Kolmogorov FWHM (arcsec), exposure time (s), sky (electrons per pixel per second).
    zero_point_mag : `float`
        Magnitude giving 1 e-/s.
    noll : sequence of `int`
        Noll indices of the truth Zernikes.
    method : {"expected", "photons"}
        Donut renderer (`lsst.ts.auxtelwep.sim.optics`); "photons" returns photon counts for the donuts.
    rng : `numpy.random.Generator`, optional
        Needed by ``method="photons"``.

    Returns
    -------
    electrons : `numpy.ndarray`, shape (4000, 4072), float32
        Incident electrons per pixel (sky + donuts), ``[row, col]``: the expectation, or with
        ``method="photons"`` one Poisson realisation.
    stars : `list` of `StarTruth`
    """
    for column in ("ra", "dec", "mag"):
        if column not in catalog.colnames:
            raise CatalogError(
                f"catalog lacks column {column!r} (has {catalog.colnames})",
                value=column,
                allowed=("ra", "dec", "mag"),
            )
    t0 = time.perf_counter()
    in_focus = telescope.with_camera_angle(pointing.camera_angle_deg)
    optic_state = in_focus.with_role(role)
    wcs = true_wcs(pointing, telescope)
    wcs_col, wcs_row = wcs.world_to_pixel_values(
        np.asarray(catalog["ra"], float), np.asarray(catalog["dec"], float)
    )
    field_x, field_y = telescope.pixel_to_field(wcs_col, wcs_row)
    flux = exptime_s * 10.0 ** (-0.4 * (np.asarray(catalog["mag"], float) - zero_point_mag))
    sky = sky_e_per_px_per_s * exptime_s
    if method == "photons":
        if rng is None:
            raise InputError('method="photons" needs an rng', value=None)
        image = rng.poisson(sky, DETECTOR_SHAPE).astype(np.float32)
    else:
        image = np.full(DETECTOR_SHAPE, np.float32(sky), dtype=np.float32)
    ids = catalog["id"] if "id" in catalog.colnames else np.arange(len(catalog))
    notes = catalog["note"] if "note" in catalog.colnames else [""] * len(catalog)
    stars = []
    for i in range(len(catalog)):
        fx, fy = float(field_x[i]), float(field_y[i])
        col, row, transmitted = donut_centroid(optic_state, fx, fy)
        near = (
            -_RENDER_MARGIN_PX < col < DETECTOR_SHAPE[1] + _RENDER_MARGIN_PX
            and -_RENDER_MARGIN_PX < row < DETECTOR_SHAPE[0] + _RENDER_MARGIN_PX
        )
        landed, flux_focal = 0.0, float(flux[i]) * transmitted
        if near:
            donut = render_donut(
                optic_state,
                fx,
                fy,
                flux_e=float(flux[i]),
                seeing_arcsec=seeing_arcsec,
                method=method,
                rng=rng,
            )
            landed = add_donut(image, donut)
            (col, row), flux_focal = donut.centroid, donut.flux_e
        stars.append(
            StarTruth(
                id=int(ids[i]),
                ra_deg=float(catalog["ra"][i]),
                dec_deg=float(catalog["dec"][i]),
                mag=float(catalog["mag"][i]),
                note=str(notes[i]),
                field_x_deg=fx,
                field_y_deg=fy,
                wcs_col=float(wcs_col[i]),
                wcs_row=float(wcs_row[i]),
                col=col,
                row=row,
                flux_e=flux_focal,
                flux_on_chip_e=landed,
                on_chip=bool(-0.5 <= col < DETECTOR_SHAPE[1] - 0.5 and -0.5 <= row < DETECTOR_SHAPE[0] - 0.5),
                zernikes_um={
                    kind: true_zernikes(in_focus, fx, fy, noll=noll, kind=kind).tolist()
                    for kind in ("ta", "opd")
                }
                if near
                else {},
            )
        )
    _log.debug("rendered %d stars (%s) in %.2f s", len(stars), role.value, time.perf_counter() - t0)
    return image, stars


def simulate_exposure(
    path: str | Path,
    *,
    telescope_state: HexapodState,
    role: Role,
    pointing: Pointing,
    catalog: Table,
    seeing_arcsec: float,
    exptime_s: float,
    sky_e_per_px_per_s: float,
    seed: int,
    signature: DetectorSignature,
    observation: Observation | None = None,
    wcs_error: tuple[float, float, float] | None = None,
    header_wcs: bool = True,
    wavelength_m: float = DEFAULT_WAVELENGTH_M,
    darktime_s: float | None = None,
    zero_point_mag: float = ZERO_POINT_MAG,
    n_cosmic_rays: int = 0,
    compress: bool = False,
    method: RenderMethod = "expected",
    noll: Sequence[int] = DEFAULT_NOLL,
) -> Truth:
    """Simulate one LATISS exposure: write the raw at ``path`` and its truth at `truth_path` ``(path)``.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        Raw file to write (``.fits``; parent directories are created).
    telescope_state : `~lsst.ts.auxtelwep.instrument.HexapodState`
        Injected M2 state, without the role defocus (added from ``role``).
    role : `~lsst.ts.auxtelwep.instrument.Role`
    pointing : `Pointing`
        Boresight, sky rotation, elevation and camera angle.
    catalog : `astropy.table.Table`
        Reference stars (``ra``, ``dec`` deg, ``mag``), e.g. from `make_catalog`.
    seeing_arcsec, exptime_s, sky_e_per_px_per_s : `float`
        Kolmogorov FWHM (arcsec), exposure time (s), sky level (e-/px/s).
    seed : `int`
        Seed of every random draw of this exposure.
    signature : `~lsst.ts.auxtelwep.sim.signature.DetectorSignature`
        The detector (gains, bias, dark, flat...).
    observation : `Observation`, optional
        DAYOBS, SEQNUM, GROUPID, PROGRAM (default: ``Observation()``).
    wcs_error : `tuple` of `float`, optional
        ``(dx_px, dy_px, drot_deg)`` error of the header WCS (module docstring); None writes the true WCS.
    header_wcs : `bool`
        Write a WCS in the header at all (False: no WCS, as real raws).
    wavelength_m : `float`
        Wavelength of the monochromatic optical model, metres.
    darktime_s : `float`, optional
        Dark time, s (default ``exptime_s + 0.3``).
    zero_point_mag : `float`
        Magnitude giving 1 e-/s.
    n_cosmic_rays : `int`
        Cosmic-ray tracks added by the detector model.
    compress : `bool`
        RICE-compress the amplifier HDUs.
    method : {"expected", "photons"}
        Donut renderer.
    noll : sequence of `int`
        Noll indices of the truth Zernikes.

    Returns
    -------
    truth : `Truth`
        Also written to ``truth_path(path)``.
    """
    from .signature import electrons_to_amps, write_raw

    if not exptime_s > 0 or not sky_e_per_px_per_s >= 0 or not seeing_arcsec >= 0:
        raise InputError(
            f"need exptime_s > 0, sky_e_per_px_per_s >= 0, seeing_arcsec >= 0; got {exptime_s}, "
            f"{sky_e_per_px_per_s}, {seeing_arcsec}",
            value=(exptime_s, sky_e_per_px_per_s, seeing_arcsec),
        )
    path = Path(path)
    observation = observation or Observation()
    darktime_s = exptime_s + 0.3 if darktime_s is None else darktime_s
    rng = np.random.default_rng(seed)
    telescope = AuxTel(hexapod=telescope_state).with_wavelength(wavelength_m)
    electrons, stars = render_scene(
        telescope,
        role,
        pointing,
        catalog,
        seeing_arcsec=seeing_arcsec,
        exptime_s=exptime_s,
        sky_e_per_px_per_s=sky_e_per_px_per_s,
        zero_point_mag=zero_point_mag,
        noll=noll,
        method=method,
        rng=rng,
    )
    wcs_true = true_wcs(pointing, telescope)
    wcs_header = None
    if header_wcs:
        wcs_header = (
            wcs_true
            if wcs_error is None
            else offset_wcs(wcs_true, dx_px=wcs_error[0], dy_px=wcs_error[1], drot_deg=wcs_error[2])
        )
    header = build_header(
        observation, role, pointing, exptime_s=exptime_s, darktime_s=darktime_s, wcs=wcs_header
    )
    amps = electrons_to_amps(
        electrons,
        signature,
        exptime_s=exptime_s,
        darktime_s=darktime_s,
        rng=rng,
        n_cosmic_rays=n_cosmic_rays,
        shot_noise=method == "expected",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_raw(path, amps, header, compress=compress)
    truth = Truth(
        obsid=observation.obsid,
        raw_file=path.name,
        role=role.value,
        dayobs=observation.dayobs,
        seqnum=observation.seqnum,
        groupid=observation.groupid,
        hexapod=HexapodTruth.of(telescope_state),
        hexapod_with_defocus=HexapodTruth.of(telescope.with_role(role).hexapod),
        focus_z_mm=role.focus_z_mm,
        camera_angle_deg=pointing.camera_angle_deg,
        wavelength_m=wavelength_m,
        seeing_arcsec=seeing_arcsec,
        exptime_s=exptime_s,
        darktime_s=darktime_s,
        sky_e_per_px_per_s=sky_e_per_px_per_s,
        zero_point_mag=zero_point_mag,
        ra_deg=pointing.ra_deg,
        dec_deg=pointing.dec_deg,
        rotpa_deg=pointing.rotpa_deg,
        elevation_deg=pointing.elevation_deg,
        noll=[int(j) for j in noll],
        stars=stars,
        true_wcs=_wcs_cards(wcs_true),
        header_wcs=None if wcs_header is None else _wcs_cards(wcs_header),
        wcs_error=None if (wcs_error is None or not header_wcs) else tuple(float(v) for v in wcs_error),
        render_method=method,
        seed=seed,
    )
    truth.write(truth_path(path))
    _log.info(
        "wrote %s (%s, %d stars on chip) and its truth", path, role.value, sum(s.on_chip for s in stars)
    )
    return truth
