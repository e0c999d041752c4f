"""estimate_wavefront: several pairs, flags, failures, outliers, worker processes."""

import dataclasses
import functools
import time
from types import SimpleNamespace

import numpy as np
import pytest

from lsst.ts.auxtelwep import estimation
from lsst.ts.auxtelwep.errors import ConfigurationError, EstimationError, InputError
from lsst.ts.auxtelwep.estimation import (
    EstimationConfig,
    estimate_wavefront,
    forget_estimates,
    shutdown_pool,
    start_pool,
)
from lsst.ts.auxtelwep.instrument import AuxTel, HexapodState
from lsst.ts.auxtelwep.sim.optics import render_stamp_pair
from lsst.ts.auxtelwep.stamps import DonutPair, PairFlag

SKY_E = 200.0
HEXAPOD = HexapodState(x=0.15, y=-0.1, z=0.03)
FIELDS = [(0.02, 0.01), (-0.03, 0.02), (0.0, -0.04), (0.04, 0.04)]


@pytest.fixture(scope="module")
def pairs_and_truth():
    pairs, truths = [], []
    for i, field in enumerate(FIELDS):
        sim = render_stamp_pair(
            AuxTel().with_hexapod(HEXAPOD), *field, seeing_arcsec=1.0, flux=1e6, sky=SKY_E, seed=10 + i
        )
        pairs.append(sim.donut_pair(index=i))
        truths.append(sim.truth.zernikes_ta_um)
    return pairs, np.array(truths)


def test_combined_wavefront_matches_truth(pairs_and_truth) -> None:
    pairs, truths = pairs_and_truth
    truth = truths.mean(axis=0)
    est = estimate_wavefront(pairs, config=EstimationConfig(max_workers=1), telescope=AuxTel())
    assert est.n_used == len(pairs)
    assert all(p.reason == "" and p.success for p in est.pairs)
    assert all(p.chi2_reduced == pytest.approx(1.0, abs=0.03) for p in est.pairs)
    rms = np.sqrt(np.mean(((est.um - truth)[:8] * 1e3) ** 2))
    # Mean over 4 pairs of 1e6 e-: the 2 nm single-pair level, averaged.
    assert rms < 2.0, f"Z4-Z11 RMS error {rms:.2f} nm"
    assert np.all(est.um_err > 0) and est.noll == tuple(range(4, 23))


def test_flagged_failed_and_outlying_pairs_are_reported(pairs_and_truth) -> None:
    pairs, _ = pairs_and_truth
    blend = dataclasses.replace(pairs[1], flags=PairFlag.BLEND, notes=("detection flags a blend",))
    rng = np.random.default_rng(0)
    empty = DonutPair.from_arrays(
        rng.normal(0, 14, (255, 255)),
        rng.normal(0, 14, (255, 255)),
        variance_intra=200,
        variance_extra=200,
        index=7,
    )
    # An outlier: the extra stamp of another star's pair, rotated by 90 degrees (a different wavefront).
    odd = DonutPair.from_arrays(
        pairs[2].intra.image,
        np.rot90(pairs[3].extra.image),
        variance_intra=SKY_E,
        variance_extra=SKY_E,
        index=9,
    )
    config = EstimationConfig(max_workers=1)
    est = estimate_wavefront(
        [pairs[0], blend, pairs[2], pairs[3], empty, odd], config=config, telescope=AuxTel()
    )
    by_index = {p.index: p for p in est.pairs}
    assert by_index[1].reason.startswith("flagged: BLEND") and "detection flags a blend" in by_index[1].reason
    assert by_index[7].reason.startswith("fit failed:")
    assert by_index[9].reason.startswith("outlier:") or by_index[9].reason.startswith("fit failed:")
    assert {p.index for p in est.pairs if p.used} == {0, 2, 3}


def _unresolved_blend(index: int) -> tuple[DonutPair, np.ndarray]:
    """Two stars 25 px and 0.25 mag apart, too close for detection's blend tests, and the brighter's truth."""
    sim = render_stamp_pair(
        AuxTel().with_hexapod(HEXAPOD),
        -0.01,
        0.03,
        seeing_arcsec=1.0,
        flux=1e6,
        sky=0.0,
        seed=3,
        noiseless=True,
    )
    rng = np.random.default_rng(index)
    stamps = []
    for image in (sim.intra, sim.extra):
        companion = 10 ** (-0.4 * 0.25) * np.roll(image, (15, 20), axis=(0, 1))
        stamps.append(rng.poisson(image + companion + SKY_E) - SKY_E)
    pair = DonutPair.from_arrays(*stamps, variance_intra=SKY_E, variance_extra=SKY_E, index=index)
    return pair, np.asarray(sim.truth.zernikes_ta_um)


def test_an_unresolved_blend_is_rejected_by_its_seeing(pairs_and_truth) -> None:
    pairs, _ = pairs_and_truth
    blend, truth = _unresolved_blend(5)
    est = estimate_wavefront([*pairs[:3], blend], config=EstimationConfig(max_workers=1), telescope=AuxTel())
    by_index = {p.index: p for p in est.pairs}
    assert {p.index for p in est.pairs if p.used} == {0, 1, 2}
    reason = by_index[5].reason
    assert reason.startswith("broadened: fitted seeing") and "an unresolved blend" in reason, reason
    # Its own fit is far off, which is why it must not enter the mean; its seeing gives it away.
    error_nm = np.sqrt(np.mean(((by_index[5].zernikes_um - truth)[:8] * 1e3) ** 2))
    assert error_nm > 4.0
    assert np.all(
        by_index[5].fwhm_arcsec > 1.5 * np.median([by_index[i].fwhm_arcsec for i in range(3)], axis=0)
    )
    # The test can be turned off; then the blend counts.
    off = estimate_wavefront(
        [*pairs[:3], blend], config=EstimationConfig(max_workers=1, broadened_ratio=None), telescope=AuxTel()
    )
    assert {p.index for p in off.pairs if p.used} == {0, 1, 2, 5}


@pytest.mark.parametrize(
    "fwhm, rejected",
    [
        ([(1.0, 1.0), (1.02, 0.98), (0.97, 1.01), (1.9, 1.8)], {3}),
        ([(1.0, 1.0), (1.9, 1.8)], {1}),  # two pairs: only the broader can be the blend
        ([(1.0, 1.0), (1.02, 0.98), (1.9, 1.05)], set()),  # broad in one exposure only: seeing noise
        ([(0.28, 0.56), (0.7, 0.7)], set()),  # a faint pair's low seeing makes no blend of the other
        ([(1.2, 1.1)], set()),  # nothing to compare with
    ],
)
def test_which_seeing_counts_as_broadened(fwhm: list[tuple[float, float]], rejected: set[int]) -> None:
    results = [
        estimation.PairEstimate(
            index=i,
            zernikes_um=np.zeros(19),
            zernikes_err_um=np.ones(19),
            used=True,
            reason="",
            algorithm="danish",
            fwhm_arcsec=np.array(f),
        )
        for i, f in enumerate(fwhm)
    ]
    found = estimation._broadened(results, list(range(len(results))), EstimationConfig())
    assert set(found) == rejected


def test_a_pair_error_never_falls_below_the_model_floor() -> None:
    # At SNR in the thousands the formal error (0.1 nm) is below what the model is good to: pulls of 6.
    fit = SimpleNamespace(
        zernikes_um=np.zeros(3),
        zernikes_err_um=np.array([1e-4, 2e-3, 0.0]),
        chi2_reduced=1.0,
        fwhm_arcsec=np.array([1.0, 1.0]),
        structure_fraction=(0.0, 0.0),
        success=True,
        nfev=3,
        message="",
    )
    pair = SimpleNamespace(index=0)
    estimate = estimation._from_fit(pair, fit, "danish", EstimationConfig(), time.perf_counter())
    np.testing.assert_allclose(estimate.zernikes_err_um, np.hypot([1e-4, 2e-3, 0.0], 5e-4))
    exact = estimation._from_fit(pair, fit, "danish", EstimationConfig(model_floor_um=0), time.perf_counter())
    np.testing.assert_array_equal(exact.zernikes_err_um, fit.zernikes_err_um)


def test_no_usable_pair_raises_with_the_reasons(pairs_and_truth) -> None:
    pairs, _ = pairs_and_truth
    flagged = [dataclasses.replace(p, flags=PairFlag.CLIPPED) for p in pairs[:2]]
    with pytest.raises(EstimationError, match="no usable donut pair out of 2") as info:
        estimate_wavefront(flagged, telescope=AuxTel())
    assert all(p.reason.startswith("flagged: CLIPPED") for p in info.value.result.pairs)
    with pytest.raises(InputError, match="no donut pairs"):
        estimate_wavefront([], telescope=AuxTel())


def test_tie_and_tie_seeded_algorithms(pairs_and_truth) -> None:
    pairs, truths = pairs_and_truth
    truth = truths[:2].mean(axis=0)
    tie = estimate_wavefront(pairs[:2], config=EstimationConfig(algorithm="tie"), telescope=AuxTel())
    seeded = estimate_wavefront(
        pairs[:2], config=EstimationConfig(algorithm="tie+danish"), telescope=AuxTel()
    )
    assert {p.algorithm for p in seeded.pairs} <= {"tie+danish", "tie+danish (grid)"}
    assert all(np.isnan(p.chi2_reduced) for p in tie.pairs)
    # The forward fit ends at the photon-noise level: every term within 4 of its reported sigmas (Z5/Z6,
    # the noisiest, have about 3.5 nm for two pairs of 1e6 e-); the TIE is a few nm off.
    pulls = np.abs(seeded.um - truth) / seeded.um_err
    assert pulls.max() < 4.0, np.round(pulls, 1)
    assert np.sqrt(np.mean(((seeded.um - truth)[:8] * 1e3) ** 2)) < 4.0
    assert np.sqrt(np.mean(((tie.um - truth)[:8] * 1e3) ** 2)) < 10.0


def test_worker_processes_give_the_same_answer(pairs_and_truth) -> None:
    pairs, _ = pairs_and_truth
    config = EstimationConfig(max_workers=2, min_pairs_for_pool=2, noll=tuple(range(4, 12)))
    try:
        parallel = estimate_wavefront(pairs[:2], config=config, telescope=AuxTel())
    finally:
        shutdown_pool()
    serial = estimate_wavefront(
        pairs[:2], config=config.model_copy(update={"max_workers": 1}), telescope=AuxTel()
    )
    # Same code, other processes: only floating-point summation order may differ (1e-6 um = 0.001 nm).
    np.testing.assert_allclose(parallel.um, serial.um, atol=1e-6)


def test_a_running_pool_is_used_from_two_pairs(pairs_and_truth, monkeypatch) -> None:
    pairs, _ = pairs_and_truth
    config = EstimationConfig(algorithm="tie", max_workers=2, noll=tuple(range(4, 12)))
    assert config.min_pairs_for_pool > 2

    # Pickled by name (wraps gives it estimate_pair's), so the workers run their own, unpatched copy:
    # only the serial path reaches this stand-in.
    @functools.wraps(estimation.estimate_pair)
    def not_here(*args, **kwargs):
        raise AssertionError("estimated in the calling process")

    monkeypatch.setattr(estimation, "estimate_pair", not_here)
    with pytest.raises(AssertionError, match="calling process"):
        estimate_wavefront(pairs[:2], config=config, telescope=AuxTel())
    try:
        start_pool(workers=2)
        est = estimate_wavefront(pairs[:2], config=config, telescope=AuxTel())
    finally:
        shutdown_pool()
    assert est.n_used == 2


def test_a_pair_seen_again_is_not_estimated_again(pairs_and_truth, monkeypatch) -> None:
    pairs, _ = pairs_and_truth
    config = EstimationConfig(algorithm="tie", max_workers=1, noll=tuple(range(4, 12)))
    forget_estimates()
    first = estimate_wavefront(pairs[:2], config=config, telescope=AuxTel())

    def not_again(pair, **kwargs):
        raise AssertionError(f"pair {pair.index} estimated again")

    monkeypatch.setattr(estimation, "estimate_pair", not_again)
    renumbered = [dataclasses.replace(p, index=p.index + 10) for p in pairs[:2]]
    again = estimate_wavefront(renumbered, config=config, telescope=AuxTel())
    np.testing.assert_array_equal(again.um, first.um)
    assert [p.index for p in again.pairs] == [10, 11]
    # One pixel changed, or another configuration: a new estimate.
    image = pairs[0].extra.image.copy()
    image[100, 100] += 1.0
    touched = dataclasses.replace(pairs[0], extra=dataclasses.replace(pairs[0].extra, image=image))
    with pytest.raises(AssertionError, match="pair 0 estimated again"):
        estimate_wavefront([touched], config=config, telescope=AuxTel())
    with pytest.raises(AssertionError, match="estimated again"):
        estimate_wavefront(
            pairs[:1], config=config.model_copy(update={"tie_solver": "fft"}), telescope=AuxTel()
        )
    forget_estimates()
    with pytest.raises(AssertionError, match="estimated again"):
        estimate_wavefront(pairs[:1], config=config, telescope=AuxTel())


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="noll must be distinct"):
        EstimationConfig(noll=(3, 4))
    with pytest.raises(ValueError, match="unknown PairFlag"):
        EstimationConfig(reject_flags=("BLND",))
    assert EstimationConfig().forward_options(with_grid=False).z4_grid_um == ()


def test_a_configuration_may_be_a_mapping() -> None:
    with pytest.raises(ConfigurationError, match="algorithm"):
        estimation.estimate_wavefront([], config={"algorithm": "guess"})
    with pytest.raises(InputError, match="no donut pairs"):
        estimation.estimate_wavefront([], config={"algorithm": "tie"})
