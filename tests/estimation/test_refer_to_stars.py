"""Reported Zernikes are referred to the design at each star's field, not at its donut's pixel.

A misaligned M2 moves the image (~548 px per mm of decenter): the star whose donut sits at a pixel is not the
one the design puts there. The estimators subtract the design at the pixel's field; `refer_to_stars` moves the
reference to the star's field, where the simulator's truths (and the convention) take it.
"""

import numpy as np
import pytest

from lsst.ts.auxtelwep.estimation import EstimationConfig, PairEstimate, WavefrontEstimate, refer_to_stars
from lsst.ts.auxtelwep.estimation.forward_optics import design_references, design_zernikes_ta
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState, Role
from lsst.ts.auxtelwep.sim.truth import true_zernikes
from lsst.ts.auxtelwep.stamps import DonutPair

# 2.8 mm of decenter (the image moves ~1500 px), the camera turned so that hexapod and batoid frames differ.
STATE = HexapodState(x=2.0, y=-2.0, z=0.095)
TELESCOPE = AuxTel().with_camera_angle(30.0)
STARS_DEG = ((-0.015, -0.017), (0.001, 0.068))
NOLL = EstimationConfig().noll


def _pixel_field(star: tuple[float, float]) -> tuple[float, float]:
    """The field the pipeline gives a star's donut: its light's pixel through the design's mapping."""
    col, row = TELESCOPE.with_hexapod(STATE).light_centroid_pixel(*star)
    fx, fy = TELESCOPE.pixel_to_field(col, row)
    return float(fx), float(fy)


def test_star_field_undoes_the_image_motion_of_a_decentred_m2() -> None:
    moved = TELESCOPE.with_hexapod(STATE)
    for star in STARS_DEG:
        pixel = _pixel_field(star)
        assert (
            np.hypot(*np.subtract(TELESCOPE.field_to_pixel(*pixel), TELESCOPE.field_to_pixel(*star))) > 1000
        )
        found = moved.star_field(*pixel)
        # Where the design puts the light of the pixel's field, the moved telescope puts the found star's.
        landed = np.subtract(moved.light_centroid_pixel(*found), TELESCOPE.light_centroid_pixel(*pixel))
        assert np.hypot(*landed) < 0.02
        # And that star is the one simulated, to the design's distortion over the motion (< 1.5 px).
        miss_px = np.subtract(TELESCOPE.field_to_pixel(*found), TELESCOPE.field_to_pixel(*star))
        assert np.hypot(*miss_px) < 1.5
    # The aligned telescope: the pixel's field is the star's.
    assert TELESCOPE.star_field(0.03, -0.04) == (0.03, -0.04)


def test_refer_to_stars_gives_the_deviation_at_the_stars_field() -> None:
    moved = TELESCOPE.with_hexapod(STATE)
    noll = np.array(NOLL)
    pairs, estimates, truths = [], [], []
    for index, star in enumerate(STARS_DEG):
        pixel = _pixel_field(star)
        pairs.append(
            DonutPair.from_arrays(
                np.zeros((3, 3)),
                np.zeros((3, 3)),
                variance_intra=1.0,
                variance_extra=1.0,
                field_deg=pixel,
                index=index,
            )
        )
        # What an exact estimator returns: the wavefront each role's donut carries (the star's) minus the
        # design reference the fit subtracts (at the pixel's field), averaged over the two roles.
        measured = np.mean(
            [
                design_zernikes_ta(
                    moved.with_role(role).optic,
                    *star,
                    wavelength_m=TELESCOPE.wavelength_m,
                    focal_length_m=TELESCOPE.focal_length_m,
                )[noll]
                - design_references(TELESCOPE, role, *pixel)[noll]
                for role in (Role.INTRA, Role.EXTRA)
            ],
            axis=0,
        )
        estimates.append(
            PairEstimate(
                index=index,
                zernikes_um=measured,
                zernikes_err_um=np.full(noll.size, 1e-4),
                used=True,
                reason="",
                algorithm="tie+danish",
            )
        )
        truths.append(true_zernikes(moved, *star, noll=NOLL))
    estimate = WavefrontEstimate(
        noll=NOLL,
        um=np.mean([e.zernikes_um for e in estimates], axis=0),
        um_err=np.full(noll.size, 1e-4),
        scatter_um=np.zeros(noll.size),
        pairs=tuple(estimates),
        algorithm="tie+danish",
        elapsed_s=0.0,
    )
    referred = refer_to_stars(estimate, pairs, STATE, config=EstimationConfig(), telescope=TELESCOPE)

    for before, after, truth, star in zip(estimate.pairs, referred.pairs, truths, STARS_DEG, strict=True):
        # At the pixels' fields the design's own field variation reads as 5-30 nm of Z4-Z6 ...
        assert np.max(np.abs(before.zernikes_um - truth)[:5]) > 0.005
        # ... at the stars' fields what is left is the intra/extra asymmetry of a 2.8 mm decenter (0.12 nm
        # of Z4, 0.1 nm of coma) and the design fit's 0.05 nm.
        np.testing.assert_allclose(after.zernikes_um, truth, atol=0.0003)
        np.testing.assert_allclose(after.star_field_deg, star, atol=2e-5)  # 0.75 px
        np.testing.assert_array_equal(after.zernikes_err_um, before.zernikes_err_um)
        assert after.used
    np.testing.assert_allclose(referred.um, np.mean(truths, axis=0), atol=0.0003)
    # Aligned: nothing moves.
    same = refer_to_stars(estimate, pairs, HexapodState(), config=EstimationConfig(), telescope=TELESCOPE)
    for before, after in zip(estimate.pairs, same.pairs, strict=True):
        np.testing.assert_allclose(after.zernikes_um, before.zernikes_um, atol=1e-12)


@pytest.mark.parametrize("index", [0, 1])
def test_pairs_without_an_estimate_or_a_stamp_pair_are_left_as_they_are(index: int) -> None:
    pair = DonutPair.from_arrays(
        np.zeros((3, 3)), np.zeros((3, 3)), variance_intra=1.0, variance_extra=1.0, field_deg=(0.01, 0.02)
    )
    flagged = PairEstimate(
        index=index,
        zernikes_um=None,
        zernikes_err_um=None,
        used=False,
        reason="flagged: BLEND",
        algorithm="tie+danish",
    )
    estimate = WavefrontEstimate(
        noll=NOLL,
        um=np.full(len(NOLL), np.nan),
        um_err=np.full(len(NOLL), np.nan),
        scatter_um=np.full(len(NOLL), np.nan),
        pairs=(flagged,),
        algorithm="tie+danish",
        elapsed_s=0.0,
    )
    referred = refer_to_stars(estimate, [pair], STATE, config=EstimationConfig(), telescope=TELESCOPE)
    assert referred.pairs == (flagged,)
