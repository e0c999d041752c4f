"""WCS helpers, the optical image shift, in-focus source detection and the triangle-matching WCS fit."""

import dataclasses
import math

import detsynth as ds
import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.auxtelwep.detection.astrometry import Sources, detect_sources, solve_astrometry
from lsst.ts.auxtelwep.detection.wcs import (
    from_tangent_plane,
    initial_wcs,
    model_image_shift_px,
    project,
    tangent_plane,
    transfer_wcs,
    wcs_rotation_deg,
)
from lsst.ts.auxtelwep.errors import DetectionError
from lsst.ts.auxtelwep.exposure import Exposure, boresight_wcs
from lsst.ts.auxtelwep.instrument import BORESIGHT_PIXEL, AuxTel, HexapodState, Role


def _exposure(header: fits.Header, wcs=None) -> Exposure:
    return Exposure(
        image=np.zeros((8, 8), np.float32), mask=np.zeros((8, 8), np.uint16), header=header, wcs=wcs
    )


def _solve(sources, field, start):
    """`solve_astrometry` with the settings every test here uses (800 px search, 4 matches, 1 arcsec)."""
    return solve_astrometry(
        sources,
        field.refcat,
        start,
        shape=ds.FULL_SHAPE,
        max_shift_px=800,
        min_matches=4,
        max_scatter_arcsec=1.0,
    )


def test_tangent_plane_round_trip_and_agrees_with_astropy() -> None:
    rng = np.random.default_rng(1)
    ra = 150.0 + rng.uniform(-0.1, 0.1, 50)
    dec = -30.0 + rng.uniform(-0.1, 0.1, 50)
    xi, eta = tangent_plane(ra, dec, 150.0, -30.0)
    back = from_tangent_plane(xi, eta, 150.0, -30.0)
    np.testing.assert_allclose(back, (ra, dec), atol=1e-10)
    # A TAN WCS with CD = identity (deg/px) maps sky to (xi, eta) in degrees.
    wcs = boresight_wcs(150.0, -30.0, 0.0, scale_arcsec_per_px=3600.0, crpix0=(0.0, 0.0))
    x, y = project(wcs, ra, dec)
    np.testing.assert_allclose(-x, xi, atol=1e-9)  # east toward -x at ROTPA 0
    np.testing.assert_allclose(y, eta, atol=1e-9)
    assert wcs_rotation_deg(boresight_wcs(1.0, 2.0, 37.0, scale_arcsec_per_px=0.1)) == pytest.approx(37.0)


def test_initial_wcs_prefers_the_exposures_own_then_the_header() -> None:
    header = fits.Header({"RA": 150.0, "DEC": -30.0, "ROTPA": 12.0})
    wcs, source = initial_wcs(_exposure(header), AuxTel())
    assert "boresight" in source
    assert wcs.wcs.crval[0] == pytest.approx(150.0) and wcs_rotation_deg(wcs) == pytest.approx(12.0)
    own = boresight_wcs(10.0, 20.0, 0.0, scale_arcsec_per_px=0.1)
    assert initial_wcs(_exposure(header, own), AuxTel()) == (own, "the exposure's WCS")
    assert initial_wcs(_exposure(fits.Header()), AuxTel()) == (None, "no WCS and no RA/DEC in the header")
    # Before 2020-01-28 RA and DEC were written in radians.
    old = fits.Header({"RA": math.radians(150.0), "DEC": math.radians(-30.0), "DAYOBS": "20191113"})
    assert initial_wcs(_exposure(old), AuxTel())[0].wcs.crval == pytest.approx([150.0, -30.0])
    # Raws of 2020-2022 carry CD1_1 = 0.105 (378"/px), which astropy reads as given: not LATISS's WCS.
    wrong = boresight_wcs(10.0, 20.0, 0.0, scale_arcsec_per_px=378.0)
    wcs, source = initial_wcs(_exposure(header, wrong), AuxTel())
    assert source.startswith("the exposure's WCS ignored (scale 378\"/px") and "boresight" in source
    assert wcs.wcs.crval[0] == pytest.approx(150.0)


def test_transfer_wcs_applies_the_pointing_difference() -> None:
    scale = AuxTel().plate_scale_arcsec_per_px
    src = _exposure(fits.Header({"RA": 150.0, "DEC": -30.0, "ROTPA": 5.0}))
    tgt = _exposure(fits.Header({"RA": 150.01, "DEC": -29.995, "ROTPA": 5.5}))
    solved = boresight_wcs(150.0, -30.0, 5.0, scale_arcsec_per_px=scale)
    moved, note = transfer_wcs(solved, src, tgt)
    # Oracle: with an exact solution, the transferred WCS is the target's own boresight WCS.
    expected = boresight_wcs(150.01, -29.995, 5.5, scale_arcsec_per_px=scale)
    rng = np.random.default_rng(2)
    ra = 150.01 + rng.uniform(-0.05, 0.05, 20)
    dec = -29.995 + rng.uniform(-0.05, 0.05, 20)
    np.testing.assert_allclose(project(moved, ra, dec), project(expected, ra, dec), atol=0.01)
    assert "rotation 0.500 deg" in note


def test_model_image_shift_follows_the_m2_decenter() -> None:
    aligned = model_image_shift_px(AuxTel(), Role.INTRA)
    assert np.hypot(*aligned) < 0.5  # only the defocus term (FACTS.md: chief ray lands on the boresight)
    shifted = model_image_shift_px(AuxTel(hexapod=HexapodState(x=0.2)), Role.INTRA)
    # The light centroid moves 548 px per mm of M2 decenter (FACTS.md section 1 rounds to ~538).
    assert np.hypot(shifted[0] - aligned[0], shifted[1] - aligned[1]) == pytest.approx(0.2 * 548, rel=0.01)


def _star_sources(rng, field, wcs_truth, *, n_extra: int = 3, noise_px: float = 0.05) -> Sources:
    x = field.x + rng.normal(0, noise_px, field.x.size)
    y = field.y + rng.normal(0, noise_px, field.y.size)
    # Sources not in the catalog (galaxies, faint stars) must not confuse the matching.
    x = np.concatenate([x, rng.uniform(200, 3800, n_extra)])
    y = np.concatenate([y, rng.uniform(200, 3800, n_extra)])
    flux = np.concatenate([field.flux, np.full(n_extra, 1e5)])
    order = np.argsort(-flux)
    return Sources(x[order], y[order], flux[order], flux[order] / 100, np.zeros(x.size, dtype=bool))


@pytest.mark.parametrize(("shift", "rotation"), [((100.0, -40.0), 8.0), ((-250.0, 300.0), -120.0)])
def test_solve_astrometry_recovers_shift_and_rotation(shift, rotation) -> None:
    rng = np.random.default_rng(3)
    field = ds.make_field(rng, n_stars=12, extra_faint=20)
    wrong = boresight_wcs(field.ra0, field.dec0, field.rotpa, scale_arcsec_per_px=ds.SCALE)
    # Make the starting WCS wrong: the header boresight is off by `shift` px and turned by `rotation`.
    header = ds.header_for(field, shift_px=shift, rotation_deg=rotation)
    start = boresight_wcs(header["RA"], header["DEC"], header["ROTPA"], scale_arcsec_per_px=ds.SCALE)
    sources = _star_sources(
        rng, dataclasses.replace(field, x=field.x[:12], y=field.y[:12], flux=field.flux[:12]), wrong
    )
    sol = _solve(sources, field, start)
    assert sol.n_matches >= 11
    # 0.05 px of centroid noise is 0.005": the fit must be far below the 1" requirement.
    assert sol.scatter_arcsec < 0.02
    assert sol.rotation_deg == pytest.approx(-rotation, abs=0.01)
    x, y = project(sol.wcs, field.refcat.ra_deg[:12], field.refcat.dec_deg[:12])
    np.testing.assert_allclose(np.hypot(x - field.x[:12], y - field.y[:12]), 0.0, atol=0.1)


def test_solve_astrometry_failures_are_explained() -> None:
    rng = np.random.default_rng(4)
    field = ds.make_field(rng, n_stars=8)
    start = boresight_wcs(field.ra0, field.dec0, field.rotpa, scale_arcsec_per_px=ds.SCALE)
    few = Sources(field.x[:2], field.y[:2], field.flux[:2], field.flux[:2], np.zeros(2, dtype=bool))
    with pytest.raises(DetectionError, match="2 stars found on the in-focus image, need 4"):
        _solve(few, field, start)
    # Random points have no counterpart in the catalog.
    junk = Sources(
        rng.uniform(0, 4000, 12),
        rng.uniform(0, 4000, 12),
        np.arange(12.0, 0, -1),
        np.ones(12),
        np.zeros(12, dtype=bool),
    )
    with pytest.raises(DetectionError, match="astrometry"):
        _solve(junk, field, start)


def test_detect_sources_finds_stars_and_rejects_cosmic_rays() -> None:
    rng = np.random.default_rng(5)
    field = ds.make_field(
        rng, n_stars=10, flux_range=(1e5, 1e6), shape=(1200, 1300), min_separation_px=60, margin_px=40
    )
    exposure = ds.render(field, rng, kind="star", cosmic_rays=40, saturation=None)
    sources = detect_sources(exposure, binning=4, threshold_sigma=10.0, fwhm_px=ds.FWHM_PX, saturation=1e9)
    assert len(sources) == 10 and sources.n_cosmic_rays >= 1
    d = np.hypot(sources.x[:, None] - field.x[None, :], sources.y[:, None] - field.y[None, :]).min(axis=0)
    # Windowed centroids of SNR 170-900 stars with a 10 px FWHM: sigma about 0.03 px or better.
    assert d.max() < 0.15
    assert list(sources.flux) == sorted(sources.flux, reverse=True)


def test_boresight_constant_is_the_wcs_reference() -> None:
    wcs = boresight_wcs(150.0, -30.0, 0.0, scale_arcsec_per_px=0.1)
    x, y = project(wcs, [150.0], [-30.0])
    assert (float(x[0]), float(y[0])) == pytest.approx(BORESIGHT_PIXEL)
