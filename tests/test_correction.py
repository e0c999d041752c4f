"""Zernikes to hexapod offsets: closing the loop on the optical model, degeneracy handling, ops rule."""

import warnings

import numpy as np
import pytest

from lsst.ts.auxtelwep.correction import CorrectionConfig, compute_correction, ops_script_correction
from lsst.ts.auxtelwep.errors import ConfigurationError, InputError
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState

NOLL = tuple(range(4, 12))
FULL_NOLL = tuple(range(4, 23))


def _measure(
    misalignment: HexapodState,
    fields: np.ndarray,
    camera_angle: float = 0.0,
    *,
    noll: tuple[int, ...] = NOLL,
    follow_image: bool = True,
) -> np.ndarray:
    """Exact (noiseless) deviations the optical model predicts for a misalignment, per donut.

    By default as the pipeline measures them: ``fields`` come from the donuts' pixels through the design's
    mapping, and a decentred M2 moves the image, so the star seen there is elsewhere (found by fixed-point
    steps on the chief ray); the deviation is its wavefront minus the design at the donut's field. Without
    ``follow_image`` the star is at the donut's field (``compute_correction(..., fields_from_pixels=False)``).
    """
    nominal = AuxTel().with_camera_angle(camera_angle)
    perturbed = nominal.with_hexapod(misalignment)
    out = []
    for fx, fy in fields:
        pixel = np.array(nominal.chief_ray_pixel(fx, fy))
        star = np.array([fx, fy], dtype=float)
        for _ in range(6 if follow_image else 0):
            landed = np.array(perturbed.chief_ray_pixel(*star))
            star -= np.array(nominal.pixel_to_field(*landed)) - np.array(nominal.pixel_to_field(*pixel))
        out.append(perturbed.zernikes(*star, noll=noll) - nominal.zernikes(fx, fy, noll=noll))
    return np.array(out)


@pytest.mark.parametrize("camera_angle", [0.0, 37.0])
def test_decenter_and_focus_are_nulled(camera_angle: float) -> None:
    truth = HexapodState(x=0.25, y=-0.15, z=0.08)
    fields = np.array([[0.0, 0.0]])
    dev = _measure(truth, fields, camera_angle)
    corr = compute_correction(
        NOLL, dev, np.full_like(dev, 0.002), fields, telescope=AuxTel().with_camera_angle(camera_angle)
    )
    assert corr.solved_axes == ("x", "y", "z")
    # The model is nonlinear only at second order: 2 um of Z4 per 0.5 mm leaves < 2 um of focus.
    np.testing.assert_allclose(corr.offset.as_array()[:3], -truth.as_array()[:3], atol=0.002)
    # Axes not solved are +0.0 (printed "+0.0000", not "-0.0000") with no uncertainty.
    assert np.copysign(1.0, corr.offset.u) == 1.0 and np.copysign(1.0, corr.offset.v) == 1.0
    assert corr.sigma_dict()["u_deg"] == 0.0 and corr.sigma_dict()["z_mm"] > 0
    # Deviations without errors (the TIE alone, one donut): the solution's errors are unknown (0), not the
    # spread of an arbitrary 10 nm per term.
    blind = compute_correction(
        NOLL, dev, np.full_like(dev, np.nan), fields, telescope=AuxTel().with_camera_angle(camera_angle)
    )
    np.testing.assert_allclose(blind.offset.as_array(), corr.offset.as_array(), atol=1e-9)
    assert blind.sigma == HexapodState()


@pytest.mark.parametrize("camera_angle", [0.0, 37.0])
def test_large_misalignment_is_nulled_in_one_step(camera_angle: float) -> None:
    # 2.8 mm of decenter (0.5 um of coma, the robustness case of issue 7), measured on Z4-Z22 at two donuts.
    truth = HexapodState(x=-2.0, y=2.0, z=0.095)
    fields = np.array([[0.0, 0.0], [0.03, -0.02]])
    nominal = AuxTel().with_camera_angle(camera_angle)
    dev = _measure(truth, fields, camera_angle, noll=FULL_NOLL)
    err = np.full_like(dev, 0.002)
    corr = compute_correction(FULL_NOLL, dev, err, fields, telescope=nominal)
    np.testing.assert_allclose(corr.offset.as_array()[:3], -truth.as_array()[:3], atol=1e-4)
    assert corr.residual_rms_um < 1e-3
    # The linear model alone leaves 1.3 um of focus: decentering M2 defocuses as the square of the decenter.
    linear = compute_correction(
        FULL_NOLL, dev, err, fields, telescope=nominal, config=CorrectionConfig(refine_above_mm=None)
    )
    assert abs(linear.offset.z + truth.z) > 0.001


def test_sensitivity_is_taken_on_the_measured_terms() -> None:
    # Deviations measured on Z4-Z22 (the estimator's default): a sensitivity fitted to Z4-Z11 alone
    # mistook 0.25 mm of decenter by 0.5 um. Below the refinement threshold the linear model must be right.
    truth = HexapodState(x=0.15, y=-0.2)
    fields = np.array([[0.0, 0.0], [0.045, -0.03]])
    dev = _measure(truth, fields, noll=FULL_NOLL, follow_image=False)
    corr = compute_correction(
        FULL_NOLL, dev, np.full_like(dev, 0.002), fields, telescope=AuxTel(), fields_from_pixels=False
    )
    np.testing.assert_allclose(corr.offset.as_array()[:3], -truth.as_array()[:3], atol=1e-4)


@pytest.mark.parametrize("camera_angle", [0.0, -123.0])
def test_the_linear_model_follows_the_image(camera_angle: float) -> None:
    # At fixed pixels the stars change as M2 moves the image (0.004 deg here): 1-3 nm of Z4 off the chip's
    # centre, which the sensitivity alone read as 0.5-1 um of decenter and focus.
    truth = HexapodState(x=0.15, y=-0.2, z=0.05)
    fields = np.array([[-0.045, 0.025], [0.045, -0.03]])
    dev = _measure(truth, fields, camera_angle, noll=FULL_NOLL)
    telescope = AuxTel().with_camera_angle(camera_angle)
    corr = compute_correction(FULL_NOLL, dev, np.full_like(dev, 0.002), fields, telescope=telescope)
    np.testing.assert_allclose(corr.offset.as_array()[:3], -truth.as_array()[:3], atol=1e-4)


def test_one_bright_donut_does_not_make_a_tilt() -> None:
    # One donut at the edge of the chip, errors of 0.12 nm (SNR ~6000): the five-axis fit looks pinned down,
    # and a few nm of model error (the image's motion, the estimator's bias) read as a significant tilt
    # (0.0036 deg, with 36 um of decenter error). The systematic floor keeps u, v unsolved.
    truth = HexapodState(x=0.2, y=-0.1, z=0.05)
    fields = np.array([[-0.027, 0.043]])
    dev = _measure(truth, fields, noll=FULL_NOLL)
    bias = np.zeros_like(dev)
    bias[0, [0, 2]] = [0.003, 0.002]  # 3 nm of Z4, 2 nm of Z6
    corr = compute_correction(FULL_NOLL, dev + bias, np.full_like(dev, 1.2e-4), fields, telescope=AuxTel())
    assert corr.solved_axes == ("x", "y", "z")
    np.testing.assert_allclose(corr.offset.as_array()[:2], -truth.as_array()[:2], atol=0.02)


def test_uncertainty_matches_the_scatter_over_noise() -> None:
    # 300 noise draws of 5 nm per term on four donuts: the offsets scatter as the reported sigma says.
    rng = np.random.default_rng(12)
    fields = np.array([[-0.03, -0.03], [0.03, -0.03], [-0.03, 0.03], [0.03, 0.03]])
    dev = _measure(HexapodState(x=0.1, z=0.03), fields)
    offsets, sigmas = [], []
    for _ in range(300):
        noisy = dev + rng.normal(0, 0.005, dev.shape)
        corr = compute_correction(NOLL, noisy, np.full_like(dev, 0.005), fields, telescope=AuxTel())
        offsets.append(corr.offset.as_array()[:3])
        sigmas.append(corr.sigma.as_array()[:3])
    np.testing.assert_allclose(np.std(offsets, axis=0), np.mean(sigmas, axis=0), rtol=0.2)


def test_tilt_on_axis_is_compensated_by_decenter() -> None:
    # A pure tilt seen by one on-axis donut: decenter about the coma-free point nulls the coma.
    truth = HexapodState(u=0.03)
    fields = np.array([[0.0, 0.0]])
    dev = _measure(truth, fields)
    corr = compute_correction(NOLL, dev, np.full_like(dev, 0.002), fields, telescope=AuxTel())
    assert corr.solved_axes == ("x", "y", "z")
    coma_after = _measure(truth + corr.offset, fields)[0, [3, 4]]
    assert np.max(np.abs(coma_after)) < 0.003  # um; coma was 54 nm before


def test_forced_five_axes_and_uncertainty() -> None:
    truth = HexapodState(x=0.1, u=0.02)
    fields = np.array([[-0.05, -0.05], [0.05, -0.05], [-0.05, 0.05], [0.05, 0.05], [0.0, 0.0]])
    dev = _measure(truth, fields)
    corr = compute_correction(
        NOLL, dev, np.full_like(dev, 0.001), fields, telescope=AuxTel(), config=CorrectionConfig(axes="xyzuv")
    )
    assert corr.solved_axes == ("x", "y", "z", "u", "v")
    # Noiseless data over the full LATISS field separate tilt from decenter.
    np.testing.assert_allclose(corr.offset.as_array(), -truth.as_array(), atol=5e-3)
    assert corr.sigma.u > 0


def test_auto_keeps_an_aligned_telescope_on_three_axes() -> None:
    # Noise only, donuts spread over the field: u, v are pinned down but not significant, so only x, y, z
    # are solved (no drift along the coma-free line).
    rng = np.random.default_rng(4)
    fields = np.array([[-0.05, -0.05], [0.05, -0.05], [-0.05, 0.05], [0.05, 0.05]])
    dev = rng.normal(0, 0.001, (4, len(NOLL)))
    corr = compute_correction(NOLL, dev, np.full_like(dev, 0.001), fields, telescope=AuxTel())
    assert corr.solved_axes == ("x", "y", "z")
    # A real tilt over the same field is significant and is solved.
    tilted = _measure(HexapodState(u=0.05), fields) + dev
    corr = compute_correction(NOLL, tilted, np.full_like(dev, 0.001), fields, telescope=AuxTel())
    assert corr.solved_axes == ("x", "y", "z", "u", "v")
    assert corr.offset.u == pytest.approx(-0.05, abs=0.01)


def test_without_z4_focus_is_not_solved_and_the_ops_rule_is_left_out() -> None:
    # `estimation: {noll: [5, ..., 11]}` exited with "the ops rule needs Z4, Z7 and Z8". Without Z4, focus is
    # seen only in Z11 (0.008 um per mm): z is named as not solved, x and y are solved from coma, and the
    # ops rule (a comparison that reads Z4) is not evaluated.
    truth = HexapodState(x=0.2, y=-0.1, z=0.05)
    fields = np.array([[0.0, 0.0], [0.03, 0.03]])
    noll = tuple(range(5, 12))
    dev = _measure(truth, fields, noll=noll)
    corr = compute_correction(noll, dev, np.full_like(dev, 0.001), fields, telescope=AuxTel())
    assert corr.solved_axes == ("x", "y")
    np.testing.assert_allclose([corr.offset.x, corr.offset.y], [-truth.x, -truth.y], atol=0.005)
    assert corr.offset.z == 0.0 and corr.sigma.z == 0.0
    assert corr.ops_offset is None


@pytest.mark.parametrize("camera_angle", [0.0, 60.0, -120.0])
def test_ops_rule_agrees_with_model_to_published_accuracy(camera_angle: float) -> None:
    truth = HexapodState(x=0.2, y=-0.1, z=0.05)
    fields = np.array([[0.0, 0.0]])
    dev = _measure(truth, fields, camera_angle)[0]
    ops = ops_script_correction(NOLL, dev, camera_angle_deg=camera_angle, gains=(1, 1, 1))
    # The published matrix is ~20 % weaker than batoid's (145 vs 177 nm/mm of coma), so it
    # overshoots by ~20 %; sign and rotation must agree.
    np.testing.assert_allclose(ops.as_array()[:3], -truth.as_array()[:3], rtol=0.3, atol=0.01)


def test_bad_input_is_named() -> None:
    with pytest.raises(InputError, match="shapes disagree"):
        compute_correction(NOLL, np.zeros((1, 3)), np.zeros((1, 3)), [[0, 0]], telescope=AuxTel())
    with pytest.raises(InputError, match="none of the measured Noll"):
        compute_correction([20, 21], np.zeros((1, 2)), np.ones((1, 2)), [[0, 0]], telescope=AuxTel())
    with pytest.raises(InputError, match="needs Z4, Z7 and Z8"):
        ops_script_correction([4, 5], [0, 0], camera_angle_deg=0)


def test_a_measurement_beyond_the_model_is_refused_quietly() -> None:
    # 20 um of coma implies M2 ~0.1 m off, where batoid's rays can miss the detector: no donut shows that, so
    # the deviations are refused naming the correction they imply (it was reported, for whoever applies it
    # to clip), without numpy's warnings on the way.
    dev = np.zeros((1, len(FULL_NOLL)))
    dev[0, [0, 3]] = 20.0  # Z4 and Z7, um
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for from_pixels in (True, False):
            with pytest.raises(InputError, match=r"ask for a correction of HexapodState\(x="):
                compute_correction(
                    FULL_NOLL,
                    dev,
                    np.full_like(dev, 0.01),
                    [[0.0, 0.0]],
                    telescope=AuxTel(),
                    fields_from_pixels=from_pixels,
                )
        for hexapod in (HexapodState(y=110.0), HexapodState(x=200.0)):
            with pytest.raises(InputError, match="rays miss the detector"):
                AuxTel().with_hexapod(hexapod).zernikes()
            with pytest.raises(InputError, match="no ray at field"):
                AuxTel().with_hexapod(hexapod).donut_radii_px()


def test_a_configuration_may_be_a_mapping() -> None:
    dev = np.zeros((1, len(NOLL)))
    errors = np.full_like(dev, 0.01)
    given = compute_correction(NOLL, dev, errors, [[0.0, 0.0]], telescope=AuxTel(), config={"axes": "xyz"})
    assert given.solved_axes == ("x", "y", "z")
    with pytest.raises(ConfigurationError, match="axes"):
        compute_correction(NOLL, dev, errors, [[0.0, 0.0]], telescope=AuxTel(), config={"axes": "all"})


@pytest.mark.parametrize("noll", [(4, 40), (2, 3), (1, 4), (), (4, 4, 5)])
def test_noll_indices_the_hexapod_cannot_use_are_refused(noll: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"noll must be distinct indices in 4\.\.37"):
        CorrectionConfig(noll=noll)
    assert CorrectionConfig(noll=(8, 4, 37)).noll == (4, 8, 37)


def test_deviations_in_nanometres_are_refused() -> None:
    # Z4 -212, Z7 -17, Z8 +34 given in nm where um are expected gave x -178.9 mm, z -55.9 mm without a word.
    with pytest.raises(InputError, match=r"beyond any misalignment donuts can show .*were nanometres given"):
        compute_correction([4, 7, 8], [[-212, -17, 34]], [[1, 1, 1]], [[0, 0]], telescope=AuxTel())
    # The same in micrometres is 0.2 mm of decenter and 0.05 mm of focus.
    fine = compute_correction(
        [4, 7, 8], [[-0.212, -0.017, 0.034]], [[1e-3] * 3], [[0, 0]], telescope=AuxTel()
    )
    assert np.hypot(fine.offset.x, fine.offset.y) < 0.3 and abs(fine.offset.z) < 0.1
