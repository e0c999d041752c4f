"""One simulated LATISS exposure: a star field seen through the TRUE WCS, rendered, written as raw + truth.

Chain: reference catalog (ra, dec, mag) -> TRUE WCS of the pointing (`true_wcs`: boresight TAN with the
optical plate scale) -> nominal pixels -> field angles (`AuxTel.pixel_to_field`) -> donuts traced through
the perturbed, defocused optic (`lsst.ts.auxtelwep.sim.optics`) -> expected electrons + sky ->
`lsst.ts.auxtelwep.sim.signature` (shot noise, detector, 16 amplifiers) -> raw FITS; the truth goes to
JSON beside it (`truth_path`).

A decentred M2 moves the image (the light centroid ~548 px per mm), so donuts land away from where the true
WCS puts the star, as on the sky: the truth records both (``wcs_col``/``wcs_row`` and the light centroid
``col``/``row``).

WCS error convention: ``wcs_error=(dx_px, dy_px, drot_deg)`` makes the header WCS the true one passed
through `lsst.ts.auxtelwep.sim.pointing.offset_wcs`: it predicts pixel ``c + R(drot) (p - c) + (dx, dy)``
for a star the true WCS puts at ``p``, where ``c`` is the boresight pixel and ``R`` turns (col, row)
vectors counter-clockwise.

The pointing, header and WCS helpers live in `lsst.ts.auxtelwep.sim.pointing`, the truth records in
`lsst.ts.auxtelwep.sim.truth`; both are re-exported here.

Flux: a star of magnitude ``m`` gives ``exptime * 10**(-0.4 (m - zero_point_mag))`` electrons through the
pupil annulus; `ZERO_POINT_MAG` is an approximate r-band value for AuxTel (1.2 m), not a measurement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from ..errors import CatalogError, InputError
from ..instrument import (
    DEFAULT_NOLL,
    DEFAULT_WAVELENGTH_M,
    DETECTOR_SHAPE,
    AuxTel,
    HexapodState,
    Role,
)
from .optics import RenderMethod, add_donut, donut_centroid, render_donut, true_zernikes
from .pointing import Observation, Pointing, build_header, offset_wcs, true_wcs
from .signature import DetectorSignature
from .truth import HexapodTruth, StarTruth, Truth, truth_path

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
