"""Star fields: WCS errors, catalogs, full-frame scenes against truth, raw files read back with astropy."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from lsst.ts.auxtelwep.errors import CatalogError, InputError
from lsst.ts.auxtelwep.exposure import wcs_from_header
from lsst.ts.auxtelwep.instrument import BORESIGHT_PIXEL, DETECTOR_SHAPE, AuxTel, HexapodState, Role
from lsst.ts.auxtelwep.sim.night import make_catalog, write_catalog
from lsst.ts.auxtelwep.sim.scene import (
    Observation,
    Pointing,
    Truth,
    build_header,
    offset_wcs,
    render_scene,
    simulate_exposure,
    true_wcs,
    truth_path,
)

POINTING = Pointing(ra_deg=210.0, dec_deg=-45.0, rotpa_deg=35.0, camera_angle_deg=20.0)


@pytest.fixture(scope="module")
def catalog() -> Table:
    return make_catalog(POINTING, seed=11, n_stars=10, blend_pair=True, saturated_star=True)


def _isolated_on_chip(stars: list, margin: float = 160.0) -> list:
    pos = np.array([(s.col, s.row) for s in stars])
    keep = []
    for i, s in enumerate(stars):
        others = np.delete(pos, i, axis=0)
        inside = margin < s.col < DETECTOR_SHAPE[1] - margin and margin < s.row < DETECTOR_SHAPE[0] - margin
        if inside and np.hypot(*(others - pos[i]).T).min() > 300 and s.note == "field":
            keep.append(s)
    return keep


def test_offset_wcs_moves_predictions_as_documented() -> None:
    rng = np.random.default_rng(5)
    wcs = true_wcs(POINTING, AuxTel())
    dx, dy, drot = 80.0, -45.0, 1.5
    wrong = offset_wcs(wcs, dx_px=dx, dy_px=dy, drot_deg=drot)
    col, row = rng.uniform(0, 4000, (2, 30))
    ra, dec = wcs.pixel_to_world_values(col, row)
    pcol, prow = wrong.world_to_pixel_values(ra, dec)
    a = np.deg2rad(drot)
    c0, r0 = BORESIGHT_PIXEL
    expected_col = c0 + np.cos(a) * (col - c0) - np.sin(a) * (row - r0) + dx
    expected_row = r0 + np.sin(a) * (col - c0) + np.cos(a) * (row - r0) + dy
    # Both are TAN about the same tangent point, so the relation is exact up to rounding.
    np.testing.assert_allclose(pcol, expected_col, atol=1e-6)
    np.testing.assert_allclose(prow, expected_row, atol=1e-6)
    # The true WCS has the optical plate scale (0.0955"/px, FACTS.md section 1).
    assert np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600 == pytest.approx(0.0955, abs=2e-4)


def test_catalog_spreads_stars_on_and_off_the_chip(catalog: Table, tmp_path) -> None:
    col, row = true_wcs(POINTING, AuxTel()).world_to_pixel_values(catalog["ra"], catalog["dec"])
    on = (col > 0) & (col < DETECTOR_SHAPE[1]) & (row > 0) & (row < DETECTOR_SHAPE[0])
    assert 4 <= on.sum() < len(catalog)
    blend = np.flatnonzero(catalog["note"] == "blend")
    assert blend.size == 2
    assert np.hypot(col[blend[0]] - col[blend[1]], row[blend[0]] - row[blend[1]]) == pytest.approx(
        60.0, abs=0.01
    )
    saturated = np.flatnonzero(catalog["note"] == "saturated")
    assert saturated.size == 1 and on[saturated[0]] and catalog["mag"][saturated[0]] == 4.5
    assert np.ptp(catalog["mag"][catalog["note"] == "field"]) > 1.5
    back = Table.read(write_catalog(catalog, tmp_path / "refcat.ecsv"), format="ascii.ecsv")
    np.testing.assert_array_equal(back["ra"], catalog["ra"])
    assert list(back["note"]) == list(catalog["note"])


def test_scene_donuts_land_where_truth_says(catalog: Table) -> None:
    rng = np.random.default_rng(2)
    telescope = AuxTel().with_hexapod(HexapodState(x=0.1, y=-0.15, z=0.03))
    expected, stars = render_scene(
        telescope, Role.EXTRA, POINTING, catalog, seeing_arcsec=1.2, exptime_s=20.0, sky_e_per_px_per_s=4.0
    )
    image = rng.poisson(expected).astype(np.float64) - 80.0  # sky: 4 e-/px/s x 20 s
    checked = _isolated_on_chip(stars)
    assert len(checked) >= 3
    rows, cols = np.indices((301, 301))
    for star in checked:
        c0, r0 = round(star.col) - 150, round(star.row) - 150
        cut = image[r0 : r0 + 301, c0 : c0 + 301]
        aperture = np.hypot(cols + c0 - star.col, rows + r0 - star.row) < 140
        w = np.where(aperture, cut, 0.0)
        centroid = ((w * (cols + c0)).sum() / w.sum(), (w * (rows + r0)).sum() / w.sum())
        # Shot and sky noise move the centroid by < 0.05 px at these fluxes; the requirement is 0.5 px.
        np.testing.assert_allclose(centroid, (star.col, star.row), atol=0.5, err_msg=f"star {star.id}")
        assert star.flux_on_chip_e == pytest.approx(star.flux_e, rel=1e-4)
        assert set(star.zernikes_um) == {"ta", "opd"} and len(star.zernikes_um["ta"]) == 19
        # The truth is the in-focus deviation with the pointing's camera angle applied.
        in_focus = telescope.with_camera_angle(POINTING.camera_angle_deg)
        np.testing.assert_allclose(
            star.zernikes_um["opd"],
            in_focus.zernikes(star.field_x_deg, star.field_y_deg, kind="opd")
            - AuxTel().zernikes(star.field_x_deg, star.field_y_deg, kind="opd"),
            atol=1e-12,
        )
        # 177 nm of coma per mm of decenter (FACTS.md section 2), whatever the camera angle.
        coma_nm = np.hypot(star.zernikes_um["ta"][3], star.zernikes_um["ta"][4]) * 1000
        assert coma_nm == pytest.approx(np.hypot(0.1, 0.15) * 177, rel=0.05)
    off = [s for s in stars if not s.on_chip]
    assert off and all(s.flux_on_chip_e < s.flux_e for s in off)


def test_decentred_m2_moves_every_donut_and_truth_records_it(catalog: Table) -> None:
    kwargs = {"seeing_arcsec": 1.0, "exptime_s": 1.0, "sky_e_per_px_per_s": 0.0}
    _, ref = render_scene(AuxTel(), Role.INTRA, POINTING, catalog, **kwargs)
    _, moved = render_scene(
        AuxTel().with_hexapod(HexapodState(y=0.25)), Role.INTRA, POINTING, catalog, **kwargs
    )
    shifts = np.array([(m.col - r.col, m.row - r.row) for m, r in zip(moved, ref, strict=True)])
    wcs_shift = np.array(
        [(m.wcs_col - r.wcs_col, m.wcs_row - r.wcs_row) for m, r in zip(moved, ref, strict=True)]
    )
    # The light centroid moves 548 px per mm of decenter (the chief ray 554; FACTS.md section 1 rounds to
    # ~538), the same for every star of this small field (2 %);
    # the WCS prediction does not move (the sky did not).
    lengths = np.hypot(*shifts.T)
    assert np.median(lengths) == pytest.approx(0.25 * 548, rel=0.01)
    assert np.ptp(lengths) < 0.02 * np.median(lengths)
    np.testing.assert_allclose(wcs_shift, 0.0, atol=1e-9)


def test_header_keys_and_wcs_choices() -> None:
    obs = Observation(dayobs="20240624", seqnum=106, groupid="G1")
    wcs = true_wcs(POINTING, AuxTel())
    header = build_header(obs, Role.INFOCUS, POINTING, exptime_s=20.0, darktime_s=20.3, wcs=None)
    assert header["OBSID"] == "AT_O_20240624_000106"
    assert header["REASON"] == "INFOCUS" and header["FOCUSZ"] == 0.0 and header["IMGTYPE"] == "ENGTEST"
    assert "CTYPE1" not in header
    header = build_header(obs, Role.EXTRA, POINTING, exptime_s=20.0, darktime_s=20.3, wcs=wcs)
    assert header["FOCUSZ"] == pytest.approx(-0.8011) and header["CAMANGLE"] == 20.0
    assert WCS(header).wcs.ctype[0] == "RA---TAN"
    with pytest.raises(InputError, match="dayobs"):
        Observation(dayobs="2024-06-24")


def test_bad_catalog_is_refused() -> None:
    with pytest.raises(CatalogError, match="lacks column 'mag'"):
        render_scene(
            AuxTel(),
            Role.INTRA,
            POINTING,
            Table({"ra": [210.0], "dec": [-45.0]}),
            seeing_arcsec=1.0,
            exptime_s=1.0,
            sky_e_per_px_per_s=0.0,
        )


@pytest.mark.slow
def test_raw_file_layout_headers_and_truth(catalog: Table, tmp_path) -> None:
    from lsst.ts.auxtelwep.sim.signature import DetectorSignature

    path = tmp_path / "raw" / "AT_O_20240624_000007.fits"
    truth = simulate_exposure(
        path,
        telescope_state=HexapodState(x=0.1, z=0.02),
        role=Role.INTRA,
        pointing=POINTING,
        catalog=catalog,
        seeing_arcsec=1.0,
        exptime_s=15.0,
        sky_e_per_px_per_s=5.0,
        seed=4,
        signature=DetectorSignature.typical(seed=1),
        observation=Observation(dayobs="20240624", seqnum=7, groupid="2024-06-25T02:00:00.000"),
        wcs_error=(60.0, -25.0, 0.8),
    )
    with fits.open(path) as hdul:
        assert len(hdul) == 17
        names = [h.header["EXTNAME"] for h in hdul[1:]]
        assert names == [f"Segment1{i}" for i in range(8)] + [f"Segment0{i}" for i in range(7, -1, -1)]
        assert all(h.data.shape == (2048, 576) for h in hdul[1:])
        header = hdul[0].header
        expected = {
            "OBSID": "AT_O_20240624_000007",
            "IMGTYPE": "CWFS",
            "REASON": "INTRA",
            "DAYOBS": "20240624",
            "SEQNUM": 7,
            "GROUPID": "2024-06-25T02:00:00.000",
            "FOCUSZ": 0.8,
            "EXPTIME": 15.0,
            "CAMANGLE": 20.0,
            "ROTPA": 35.0,
            "BUNIT": "adu",
        }
        assert {k: header[k] for k in expected} == expected
        for key in ("PROGRAM", "RA", "DEC", "ELSTART", "AZSTART", "DARKTIME", "FILTER", "GRATING"):
            assert key in header, key
        assert isinstance(header["DAYOBS"], str)
        header_wcs = wcs_from_header(header)  # the pipeline's reader
        assert header_wcs is not None
    assert truth_path(path).is_file() and Truth.read(truth_path(path)) == truth
    assert truth.hexapod.z == 0.02 and truth.hexapod_with_defocus.z == pytest.approx(0.82)
    assert truth.wcs_error == (60.0, -25.0, 0.8) and truth.header_wcs is not None
    # The header WCS is the true one made wrong as recorded: for each star, prediction - truth matches.
    stars = [s for s in truth.stars if s.on_chip]
    col, row = header_wcs.world_to_pixel_values([s.ra_deg for s in stars], [s.dec_deg for s in stars])
    a = np.deg2rad(0.8)
    c0, r0 = BORESIGHT_PIXEL
    for s, pc, pr in zip(stars, col, row, strict=True):
        ec = c0 + np.cos(a) * (s.wcs_col - c0) - np.sin(a) * (s.wcs_row - r0) + 60.0
        er = r0 + np.sin(a) * (s.wcs_col - c0) + np.cos(a) * (s.wcs_row - r0) - 25.0
        assert (pc, pr) == pytest.approx((ec, er), abs=1e-6)


def test_a_field_too_crowded_for_its_stars_is_refused_not_blended() -> None:
    with pytest.raises(InputError, match=r"no place left for field star \d of 5 at least 260\.0 px"):
        make_catalog(POINTING, seed=1, n_stars=5, radius_deg=0.005)
