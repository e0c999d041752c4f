"""Donut rendering: geometry against the optical model, sign conventions, centroids, the two renderers."""

import batoid
import numpy as np
import pytest

from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.instrument import BORESIGHT_PIXEL, AuxTel, HexapodState, Role
from lsst.ts.auxtelwep.sim.optics import (
    PUPIL_OUTER_RADIUS_M,
    add_donut,
    render_donut,
    render_stamp_pair,
    trace_to_pixels,
    true_zernikes,
)


def _centroid(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    total = image.sum()
    return float((image * cols).sum() / total), float((image * rows).sum() / total)


@pytest.mark.parametrize("role", [Role.INTRA, Role.EXTRA])
def test_geometric_donut_matches_optical_model(role: Role) -> None:
    telescope = AuxTel().with_role(role)
    donut = render_donut(telescope, 0.0, 0.0, flux_e=1e6, seeing_arcsec=0.0)
    outer_model, inner_model = telescope.donut_radii_px()
    rows, cols = np.indices(donut.image.shape)
    radius = np.hypot(cols + donut.origin[0] - donut.centroid[0], rows + donut.origin[1] - donut.centroid[1])
    level = np.median(donut.image[(radius > inner_model + 5) & (radius < outer_model - 5)])
    lit = donut.image > 0.5 * level
    # The half-level contour sits on the geometric edge to about half a pixel (cloud-in-cell spreads
    # each ray over 2 px); 1 px allows for the pixel grid.
    assert radius[lit].max() == pytest.approx(outer_model, abs=1.0)
    assert radius[lit].min() == pytest.approx(inner_model, abs=1.0)
    assert outer_model == pytest.approx(97, abs=1.5)  # FACTS.md section 1: 96-97 px at 0.8 mm
    # Uniform illumination: the lit annulus has the area the radii imply (5 % allows the edge pixels).
    area = np.pi * (outer_model**2 - inner_model**2)
    assert lit.sum() == pytest.approx(area, rel=0.05)


def test_intra_is_m2_toward_m1_and_extra_is_inverted() -> None:
    # Independent construction of the intra-focal optic: batoid M2 shifted by -0.8 mm (FACTS.md section 1).
    optic = batoid.Optic.fromYaml("AuxTel.yaml").withLocallyShiftedOptic("M2", [0.0, 0.0, -0.0008])
    intra = AuxTel().with_role(Role.INTRA)
    extra = AuxTel().with_role(Role.EXTRA)
    assert intra.hexapod.z == pytest.approx(0.8) and extra.hexapod.z < -0.8
    px = np.array([0.5, -0.5, 0.0, 0.0])
    py = np.array([0.0, 0.0, 0.5, -0.5])
    col, row, ok = trace_to_pixels(intra, 0.0, 0.0, px, py)
    assert ok.all()
    design = batoid.Optic.fromYaml("AuxTel.yaml")
    chief = design.trace(
        batoid.RayVector.fromStop(
            0.0, 0.0, optic=design, wavelength=intra.wavelength_m, theta_x=0.0, theta_y=0.0
        )
    )
    rays = optic.trace(
        batoid.RayVector.fromStop(
            px, py, optic=optic, wavelength=intra.wavelength_m, theta_x=0.0, theta_y=0.0
        )
    )
    # Same optic, and the design's chief ray on the boresight pixel (10 um pixels).
    np.testing.assert_allclose(col, BORESIGHT_PIXEL[0] + (rays.x - chief.x[0]) / 1e-5, atol=1e-6)
    np.testing.assert_allclose(row, BORESIGHT_PIXEL[1] + (rays.y - chief.y[0]) / 1e-5, atol=1e-6)
    # Through focus the pupil image inverts: the +x pupil ray lands on opposite sides in intra and extra.
    col_e, row_e, _ = trace_to_pixels(extra, 0.0, 0.0, px, py)
    assert np.sign(col[0] - col[1]) == -np.sign(col_e[0] - col_e[1])
    assert np.sign(row[2] - row[3]) == -np.sign(row_e[2] - row_e[3])
    assert abs(col[0] - col[1]) / 2 == pytest.approx(0.5 / PUPIL_OUTER_RADIUS_M * 97, rel=0.03)


def test_stamp_centroids_match_truth() -> None:
    telescope = AuxTel().with_hexapod(HexapodState(x=0.15, y=-0.1, z=0.05))
    pair = render_stamp_pair(telescope, 0.03, -0.02, seeing_arcsec=1.1, flux=5e6, sky=50.0, seed=3)
    for stamp, truth in ((pair.intra, pair.truth.intra_centroid), (pair.extra, pair.truth.extra_centroid)):
        assert stamp.shape == (255, 255)
        # Sky noise moves the measured centroid by about 0.05 px here; 0.5 px is the requirement.
        np.testing.assert_allclose(_centroid(stamp - pair.truth.sky_e), truth, atol=0.5)
        assert abs(truth[0] - 127) <= 0.5 and abs(truth[1] - 127) <= 0.5


@pytest.mark.parametrize("camera_angle_deg", [0.0, 90.0])
def test_decentred_m2_moves_the_donut(camera_angle_deg: float) -> None:
    base = AuxTel().with_camera_angle(camera_angle_deg)
    shifted = base.with_hexapod(HexapodState(x=0.2))
    kwargs = {"seeing_arcsec": 1.0, "flux": 1e6, "sky": 0.0, "seed": 1, "noiseless": True}
    ref = render_stamp_pair(base, 0.0, 0.0, **kwargs).truth
    moved = render_stamp_pair(shifted, 0.0, 0.0, **kwargs).truth
    shift = np.add(moved.intra_origin, moved.intra_centroid) - np.add(ref.intra_origin, ref.intra_centroid)
    # The light centroid moves 548 px per mm of decenter (the chief ray 554; FACTS.md rounds to ~538).
    assert np.hypot(*shift) == pytest.approx(0.2 * 548, rel=0.01)
    # The camera angle turns the hexapod axes on the detector: x decenter moves along col at 0 deg,
    # along row at 90 deg.
    along, across = (0, 1) if camera_angle_deg == 0.0 else (1, 0)
    assert abs(shift[across]) < 0.01 * abs(shift[along])
    # The truth records the coma of the decenter: 177 nm/mm (FACTS.md section 2) in Z8 or Z7.
    coma = np.hypot(moved.zernikes_ta_um[3], moved.zernikes_ta_um[4]) * 1000
    assert coma == pytest.approx(0.2 * 177, rel=0.03)


def test_truth_zernikes_are_deviation_from_design() -> None:
    telescope = AuxTel().with_hexapod(HexapodState(y=0.3, z=0.02))
    zk = true_zernikes(telescope, 0.02, 0.01, noll=[4, 7, 8], kind="opd")
    expected = telescope.zernikes(0.02, 0.01, noll=[4, 7, 8], kind="opd") - AuxTel().zernikes(
        0.02, 0.01, noll=[4, 7, 8], kind="opd"
    )
    np.testing.assert_allclose(zk, expected, atol=1e-12)
    # 4231 nm of Z4 per mm of M2 piston (FACTS.md section 1); sign: toward M1 = negative Z4.
    assert zk[0] * 1000 == pytest.approx(-0.02 * 4231, rel=0.03)
    assert np.allclose(true_zernikes(AuxTel(), 0.02, 0.01, noll=[4, 7, 8]), 0.0, atol=1e-9)


def test_photon_shooting_agrees_with_expected_image() -> None:
    rng = np.random.default_rng(7)
    telescope = AuxTel().with_hexapod(HexapodState(x=0.2)).with_role(Role.EXTRA)
    flux = 4e5
    expected = render_donut(telescope, 0.01, 0.0, flux_e=flux, seeing_arcsec=0.8)
    shot = render_donut(telescope, 0.01, 0.0, flux_e=flux, seeing_arcsec=0.8, method="photons", rng=rng)
    frame_e = np.zeros((400, 400))
    frame_p = np.zeros((400, 400))
    origin = (int(expected.centroid[0]) - 200, int(expected.centroid[1]) - 200)
    add_donut(frame_e, expected, frame_origin=origin)
    add_donut(frame_p, shot, frame_origin=origin)
    # Photon counts scatter by sqrt(flux): 0.2 % of the total.
    assert frame_p.sum() == pytest.approx(frame_e.sum(), rel=0.006)
    np.testing.assert_allclose(shot.centroid, expected.centroid, atol=0.1)
    # In 8x8 bins the photon image is a Poisson draw of the expected one: reduced chi^2 near 1.
    bins_e = frame_e.reshape(50, 8, 50, 8).sum(axis=(1, 3))
    bins_p = frame_p.reshape(50, 8, 50, 8).sum(axis=(1, 3))
    lit = bins_e > 20
    chi2 = np.mean((bins_p[lit] - bins_e[lit]) ** 2 / bins_e[lit])
    assert 0.85 < chi2 < 1.2, f"reduced chi^2 {chi2:.3f} over {lit.sum()} bins"


def test_bad_arguments_are_refused_with_reasons() -> None:
    with pytest.raises(InputError, match="looks defocused"):
        render_stamp_pair(
            AuxTel().with_role(Role.INTRA), 0.0, 0.0, seeing_arcsec=1.0, flux=1e5, sky=0.0, seed=0
        )
    with pytest.raises(InputError, match="needs an rng"):
        render_donut(AuxTel(), 0.0, 0.0, flux_e=10.0, seeing_arcsec=1.0, method="photons")
    with pytest.raises(InputError, match="unknown render method"):
        render_donut(AuxTel(), 0.0, 0.0, flux_e=10.0, seeing_arcsec=1.0, method="fft")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="flux_e=-1"):
        render_donut(AuxTel(), 0.0, 0.0, flux_e=-1.0, seeing_arcsec=1.0)
