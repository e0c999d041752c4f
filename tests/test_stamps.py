"""Stamps: cutting pairs out of exposures, background, recentring, masks, flags, variance."""

import dataclasses

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.estimation.forward import fit_pair
from lsst.ts.auxtelwep.exposure import Exposure, MaskBit
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState, Role
from lsst.ts.auxtelwep.sim.optics import render_stamp_pair
from lsst.ts.auxtelwep.stamps import CutOptions, DonutPair, PairFlag, cut_pairs, stamp_size_px

SKY = 300.0
FRAME = (900, 1200)  # rows, cols: a cut-down frame is enough here


@dataclasses.dataclass
class Donut:
    intra_x: float
    intra_y: float
    extra_x: float
    extra_y: float
    field_x_deg: float = 0.01
    field_y_deg: float = -0.02
    blended: bool = False
    blend_with: tuple[int, ...] = ()


@pytest.fixture(scope="module")
def sim_pair():
    return render_stamp_pair(
        AuxTel().with_hexapod(HexapodState(x=0.1, z=0.02)),
        0.01,
        -0.02,
        seeing_arcsec=1.0,
        flux=1e6,
        sky=0.0,
        seed=5,
        noiseless=True,
    )


def _exposures(sim, positions, *, seed=0, units="electron", gain=1.0, with_variance=False):
    """Frames with the donuts pasted at ``positions`` ((col, row) of each stamp centre), sky, noise."""
    rng = np.random.default_rng(seed)
    out = []
    for number, stamp in enumerate((sim.intra, sim.extra), start=1):
        expected = np.full(FRAME, SKY)
        half = stamp.shape[0] // 2
        for col, row in positions:
            expected[row - half : row + half + 1, col - half : col + half + 1] += stamp
        electrons = rng.poisson(expected).astype(np.float64)
        image = (electrons / gain).astype(np.float32)
        # As ISR makes it: from the (noisy) image itself, image / gain + (read noise / gain)^2.
        variance = (
            (np.maximum(image, 0) / gain + (5.0 / gain) ** 2).astype(np.float32) if with_variance else None
        )
        out.append(
            Exposure(
                image=image,
                mask=np.zeros(FRAME, dtype=np.uint16),
                header=fits.Header({"OBSID": f"AT_O_20240624_{number:06d}"}),
                variance=variance,
                units=units,
            )
        )
    return out


def test_stamp_size_holds_a_0p1mm_focus_error() -> None:
    # FACTS.md 1: 0.1 mm of focus error grows the donut to 111 px radius -> about 255 px stamps, odd.
    size = stamp_size_px(AuxTel())
    assert size % 2 == 1
    assert 245 <= size <= 265


def test_cut_recentres_subtracts_background_and_keeps_flux(sim_pair) -> None:
    intra, extra = _exposures(sim_pair, [(600, 450)])
    # The catalog is 7 px off in x and 5 in y: recentring must find the donut.
    truth_col = 600 - 127 + sim_pair.truth.intra_centroid[0]
    truth_row = 450 - 127 + sim_pair.truth.intra_centroid[1]
    donut = Donut(truth_col + 7, truth_row - 5, 600 + 4, 450 + 6)
    (pair,) = cut_pairs(intra, extra, [donut], telescope=AuxTel(), options=CutOptions(size_px=255))
    assert pair.flags == PairFlag.NONE, pair.notes
    assert pair.size == 255 and pair.gain == 1.0
    for stamp, sim in ((pair.intra, sim_pair.intra), (pair.extra, sim_pair.extra)):
        # Background: the sky level, to a fraction of its noise.
        assert stamp.background == pytest.approx(SKY, abs=0.5)
        # The donut's light centroid lands within 1 px of the stamp centre (integer recentring).
        img = stamp.image.astype(float)
        yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
        cx, cy = (img * xx).sum() / img.sum(), (img * yy).sum() / img.sum()
        assert abs(cx - 127) <= 1.5 and abs(cy - 127) <= 1.5, (cx, cy)
        # Flux conserved: sky noise summed over 65 000 pixels (4 400 e-) and the background estimate's error
        # times 65 000 pixels (about 0.1 e- each, 6 500 e-): 1.5 % of 1e6 e- is over 3 sigma.
        assert img.sum() == pytest.approx(sim.sum(), rel=1.5e-2)
        # Background-only variance: the sky.
        assert np.median(stamp.variance) == pytest.approx(SKY, rel=0.1)
    # One field angle for the pair: that of its two centre pixels (whatever the catalog said).
    mean_centre = np.mean([pair.intra.centre, pair.extra.centre], axis=0)
    assert pair.intra.field_deg == pair.extra.field_deg
    np.testing.assert_allclose(pair.intra.field_deg, AuxTel().pixel_to_field(*mean_centre), atol=1e-12)


def test_neighbours_are_masked_and_blends_flagged(sim_pair) -> None:
    intra, extra = _exposures(sim_pair, [(400, 450), (620, 450)], seed=1)
    near = [Donut(400, 450, 400, 450), Donut(620, 450, 620, 450)]
    pairs = cut_pairs(intra, extra, near, options=CutOptions(size_px=255))
    # 220 px apart: the neighbour reaches into the stamp (masked) but not into the donut (no blend).
    assert all(not (p.flags & PairFlag.BLEND) for p in pairs), [p.notes for p in pairs]
    assert pairs[0].intra.mask[:, 240:].any() and not pairs[0].intra.mask[:, :100].any()
    close = [Donut(400, 450, 400, 450), Donut(550, 450, 550, 450, blended=True, blend_with=(0,))]
    pairs = cut_pairs(intra, extra, close, options=CutOptions(size_px=255, recentre=False))
    assert pairs[0].flags & PairFlag.BLEND and pairs[1].flags & PairFlag.BLEND
    assert "detection flags a blend with donut 0" in pairs[1].notes


def test_edges_bad_pixels_and_adu_variance(sim_pair) -> None:
    intra, extra = _exposures(sim_pair, [(600, 450)], units="adu", gain=1.5, with_variance=True, seed=2)
    intra.mask[440:460, 590:610] |= np.uint16(MaskBit.SAT)
    donut = Donut(600, 450, 600, 450)
    edge = Donut(60, 450, 60, 450)
    pairs = cut_pairs(intra, extra, [donut, edge], options=CutOptions(size_px=255, max_masked_fraction=0.5))
    inner, clipped = pairs
    # Gain from the variance plane (slope of variance against signal), and a background-only variance.
    assert inner.gain == pytest.approx(1.5, rel=0.02)
    assert np.median(inner.intra.variance) == pytest.approx(SKY / 1.5**2 + (5 / 1.5) ** 2, rel=0.05)
    assert inner.intra.mask.sum() >= 400 and not inner.extra.mask.any()
    assert clipped.flags & PairFlag.CLIPPED
    assert clipped.intra.mask[:, :10].all()  # off the detector: masked
    assert any("runs off the detector" in n for n in clipped.notes)


def _expected_snr(sim_stamp: np.ndarray, background_variance_e: float) -> float:
    """ts_wep's SN of a noiseless donut (electrons): its light and variance summed over the design annulus."""
    outer, inner = AuxTel().with_role(Role.INTRA).donut_radii_px()
    half = sim_stamp.shape[0] // 2
    yy, xx = np.mgrid[: sim_stamp.shape[0], : sim_stamp.shape[1]] - half
    annulus = (np.hypot(xx, yy) <= outer) & (np.hypot(xx, yy) >= inner)
    signal = float(sim_stamp[annulus].sum())
    return signal / np.sqrt(signal + annulus.sum() * background_variance_e)


def test_snr_is_ts_wep_sn_in_electrons_whatever_the_units(sim_pair) -> None:
    # 1e6 e- on a sky of 300 e-/px: SNR about 340, most of the noise from the sky under the annulus.
    intra, extra = _exposures(sim_pair, [(600, 450)], seed=3)
    (pair,) = cut_pairs(intra, extra, [Donut(600, 450, 600, 450)], options=CutOptions(size_px=255))
    for stamp, sim in ((pair.intra, sim_pair.intra), (pair.extra, sim_pair.extra)):
        assert stamp.snr == pytest.approx(_expected_snr(sim, SKY), rel=0.03)
    # The same light read in adu with a gain of 1.5 (and 5 e- read noise): the SNR does not change units.
    intra, extra = _exposures(sim_pair, [(600, 450)], units="adu", gain=1.5, with_variance=True, seed=4)
    (pair,) = cut_pairs(intra, extra, [Donut(600, 450, 600, 450)], options=CutOptions(size_px=255))
    assert pair.extra.snr == pytest.approx(_expected_snr(sim_pair.extra, SKY + 25.0), rel=0.03)
    # A faint donut: 10 times less light, SNR about 30 (sky-dominated), to within 3 times the measured SNR's
    # own scatter (5 % over noise draws: the background level's error, summed over the annulus).
    faint = dataclasses.replace(sim_pair, intra=sim_pair.intra / 10, extra=sim_pair.extra / 10)
    intra, extra = _exposures(faint, [(600, 450)], seed=5)
    (pair,) = cut_pairs(intra, extra, [Donut(600, 450, 600, 450)], options=CutOptions(size_px=255))
    assert pair.intra.snr == pytest.approx(_expected_snr(faint.intra, SKY), rel=0.15)


def test_cosmic_rays_on_a_donut_are_masked(sim_pair) -> None:
    # ISR does not look for cosmic rays; a track across a donut used to drag the whole fit (reduced chi2
    # 9-90 on a simulated night). A 30 px track of 2000 e- per pixel across the intra ring:
    intra, extra = _exposures(sim_pair, [(600, 450)], seed=6)
    steps = np.arange(30)
    rows, cols = (400 + 0.6 * steps).astype(int), (560 + 0.8 * steps).astype(int)
    intra.image[rows, cols] += 2000.0
    (pair,) = cut_pairs(intra, extra, [Donut(600, 450, 600, 450)], options=CutOptions(size_px=255))
    row0, col0 = (int(v) - 127 for v in (pair.intra.centre[1], pair.intra.centre[0]))
    assert pair.intra.mask[rows - row0, cols - col0].all()
    assert pair.intra.mask.sum() <= 5 * steps.size  # the track grown by a pixel, nothing else
    assert not pair.extra.mask.any()  # no false alarm on a clean donut
    assert pair.flags == PairFlag.NONE and any("cosmic-ray pixels masked" in n for n in pair.notes)
    # Masked, the track leaves the fit at the photon noise; unmasked it would not.
    assert fit_pair(pair, telescope=AuxTel()).chi2_reduced < 1.05
    options = CutOptions(size_px=255, mask_cosmic_rays=False)
    (unmasked,) = cut_pairs(intra, extra, [Donut(600, 450, 600, 450)], options=options)
    assert fit_pair(unmasked, telescope=AuxTel()).chi2_reduced > 1.2


def test_background_noise_is_not_inflated_by_smooth_light(sim_pair) -> None:
    # Smooth light across the background region (a neighbour's seeing wings, a gradient of sky) is not
    # noise: a plain scatter of the region read a 1.8 times larger variance on a simulated 2" stamp.
    intra, extra = _exposures(sim_pair, [(600, 450)], seed=7)
    ramp = (0.5 * (np.arange(FRAME[1]) - 600)).astype(np.float32)  # +-150 e- over the stamp, noiseless
    for exposure in (intra, extra):
        exposure.image[:] += ramp
    (pair,) = cut_pairs(intra, extra, [Donut(600, 450, 600, 450)], options=CutOptions(size_px=255))
    for stamp in (pair.intra, pair.extra):
        # A plain scatter of the ramp alone would be about 150 / sqrt(3) = 87 e-, a variance of 7 500.
        assert np.median(stamp.variance) == pytest.approx(SKY, rel=0.1)


def test_bad_inputs_are_refused(sim_pair) -> None:
    intra, extra = _exposures(sim_pair, [(600, 450)])
    with pytest.raises(InputError, match="odd"):
        cut_pairs(intra, extra, [], options=CutOptions(size_px=254))
    with pytest.raises(InputError, match="odd"):
        # The keyword overrides the options.
        cut_pairs(intra, extra, [], size_px=254, options=CutOptions(size_px=255))
    other = dataclasses.replace(extra, units="adu")
    with pytest.raises(InputError, match="must match in shape and units"):
        cut_pairs(intra, other, [])
    with pytest.raises(InputError, match="differ in shape"):
        DonutPair.from_arrays(np.zeros((5, 5)), np.zeros((7, 7)), variance_intra=1, variance_extra=1)
    with pytest.raises(InputError, match="odd side"):
        DonutPair.from_arrays(np.zeros((6, 6)), np.zeros((6, 6)), variance_intra=1, variance_extra=1)


def test_inputs_of_the_wrong_type_are_named() -> None:
    image = Exposure(
        image=np.zeros((200, 200), np.float32), mask=np.zeros((200, 200), np.uint16), header=fits.Header()
    )
    with pytest.raises(InputError, match=r"a donut of the catalog: expected CataloguedDonut, got tuple"):
        cut_pairs(image, image, [(100.0, 100.0, 100.0, 100.0)])
    with pytest.raises(InputError, match=r"extra: expected Exposure, got tuple"):
        cut_pairs(image, (image,), [])
