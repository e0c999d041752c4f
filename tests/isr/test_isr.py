"""ISR on a full-frame simulated raw with known truth: adu (doFlat) and electron (doApplyGains) outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from isr_truth import DARKTIME_S, DONUT, EXPTIME_S, HOT_COLUMN, SATURATED_STAR, SKY_E, STARS, Truth
from numpy.typing import NDArray

from lsst.ts.auxtelwep.calibs import load_calibrations, per_amp_image, write_image
from lsst.ts.auxtelwep.exposure import AMP_NAMES, Exposure, MaskBit, RawImage, amp_geometry, read_raw
from lsst.ts.auxtelwep.isr import IsrConfig, run_isr
from lsst.ts.auxtelwep.sim.signature import electrons_to_amps

GEOMETRY = {g.name: g for g in amp_geometry()}


@pytest.fixture(scope="module")
def raw(truth: Truth) -> RawImage:
    return read_raw(truth.raw_path)


@pytest.fixture(scope="module")
def adu(truth: Truth, raw: RawImage) -> Exposure:
    config = IsrConfig(doVariance=True)
    return run_isr(raw, load_calibrations(truth.calib_dir, config), config)


@pytest.fixture(scope="module")
def electron(truth: Truth, raw: RawImage, tmp_path_factory: pytest.TempPathFactory) -> Exposure:
    # A calibration directory without flat.fits: doApplyGains must not need it.
    directory = tmp_path_factory.mktemp("calibs_no_flat")
    for name in ("bias.fits", "dark.fits", "amps.ecsv"):
        os.symlink(truth.calib_dir / name, directory / name)
    config = IsrConfig(doFlat=False, doApplyGains=True, doVariance=True)
    return run_isr(raw, load_calibrations(directory, config), config)


def expected_sky_variance(truth: Truth, *, unit: str) -> NDArray[np.float32]:
    """Per-pixel noise variance of the sky in the ISR output (shot + dark + read noise), ``unit``^2."""
    sig = truth.signature
    gain = per_amp_image(sig.gain)
    read = per_amp_image({n: v**2 for n, v in sig.read_noise.items()})
    electrons_var = SKY_E * sig.flat + sig.dark_current * DARKTIME_S + read
    if unit == "electron":
        return electrons_var
    flat_cal = (sig.flat / gain) / truth.adu_scale  # the flat the calibration holds (noise aside)
    return electrons_var / (gain * flat_cal) ** 2


def seam_steps(image: NDArray, quiet: NDArray, *, band: int = 40) -> list[tuple[str, float, float]]:
    """Step across every amplifier seam: (seam, |mean right - mean left|, its standard error).

    Means over the quiet pixels of ``band`` columns (rows) each side; the standard error comes from the
    scatter of the per-column (per-row) means, which includes the overscan's per-column noise.
    """
    out = []

    def side_stats(block: NDArray, ok: NDArray, axis: int) -> tuple[float, float]:
        counts = ok.sum(axis=axis)
        means = np.where(ok, block, 0.0).sum(axis=axis)[counts > 0] / counts[counts > 0]
        return float(means.mean()), float(means.std(ddof=1) / np.sqrt(means.size))

    for half, rows in (("bottom", slice(0, 2000)), ("top", slice(2000, 4000))):
        for i in range(1, 8):
            c = 509 * i
            left = side_stats(image[rows, c - band : c], quiet[rows, c - band : c], 0)
            right = side_stats(image[rows, c : c + band], quiet[rows, c : c + band], 0)
            out.append((f"{half} col {c}", abs(right[0] - left[0]), float(np.hypot(left[1], right[1]))))
    for i in range(8):
        cols = slice(509 * i, 509 * (i + 1))
        below = side_stats(image[2000 - band : 2000, cols], quiet[2000 - band : 2000, cols], 1)
        above = side_stats(image[2000 : 2000 + band, cols], quiet[2000 : 2000 + band, cols], 1)
        out.append((f"row 2000 block {i}", abs(above[0] - below[0]), float(np.hypot(below[1], above[1]))))
    return out


def check_fluxes(image: NDArray, response: NDArray | float, truth: Truth, sigma: float) -> None:
    """Sums of the image over each star (20 px radius) and the donut, minus a local background (median of
    an annulus 30-45 px beyond the source), against the injected electrons times ``response``."""
    rows, cols = np.ogrid[: image.shape[0], : image.shape[1]]
    sources = [(row, col, 20.0) for row, col, _ in STARS] + [(DONUT[0], DONUT[1], DONUT[2] + 3)]
    injected = np.asarray((truth.electrons - np.float32(SKY_E)) * response, dtype=np.float64)
    for row, col, radius in sources:
        outer = radius + 45
        sl = (slice(int(row - outer), int(row + outer) + 1), slice(int(col - outer), int(col + outer) + 1))
        r2 = (rows[sl[0]] - row) ** 2 + (cols[:, sl[1]] - col) ** 2
        inside, ring = r2 <= radius**2, (r2 >= (radius + 30) ** 2) & (r2 <= outer**2)
        local = float(np.median(image[sl][ring]))
        measured = float((image[sl][inside] - local).sum())
        expected = float(injected[sl][inside].sum())
        npix = int(inside.sum())
        # Noise of the sum: sky in the aperture, the background estimate (x npix), the source's shot noise.
        noise = sigma * np.sqrt(npix + npix**2 * 1.57 / ring.sum()) + np.sqrt(abs(expected) * 1.1)
        assert measured == pytest.approx(expected, abs=5 * noise), f"source at ({row}, {col})"


def test_adu_output_matches_injected_electrons(truth: Truth, adu: Exposure) -> None:
    assert adu.units == "adu" and adu.header["BUNIT"] == "adu"
    assert adu.image.shape == (4000, 4072) and adu.image.dtype == np.float32
    quiet = truth.quiet & (adu.mask == 0)
    background = float(np.median(adu.image[quiet]))
    # Sky: flat fielding leaves mean(flat/gain) adu per incident e-; 1 adu is ~30x the median's error.
    assert background == pytest.approx(SKY_E * truth.adu_scale, abs=1.0)

    resid = adu.image - truth.electrons * np.float32(truth.adu_scale)
    expected_sigma = float(np.sqrt(expected_sky_variance(truth, unit="adu")[quiet].mean()))
    # Residual scatter is the noise and nothing else (2 %: overscan and calibration noise add ~0.5 %).
    assert float(resid[quiet].std()) == pytest.approx(expected_sigma, rel=0.02)

    check_fluxes(adu.image, truth.adu_scale, truth, expected_sigma)


def test_overscan_drift_removed(truth: Truth, raw: RawImage, adu: Exposure) -> None:
    resid = adu.image - truth.electrons * np.float32(truth.adu_scale)
    sig = truth.signature
    for name in AMP_NAMES:
        geom = GEOMETRY[name]
        # The raw does drift: its first 50 readout rows sit above rows 1000-1049 by most of the amplitude.
        first, later = raw.amps[name][:50, 520:570].mean(), raw.amps[name][1000:1050, 520:570].mean()
        bias = sig.bias_rows(name)
        drift = float(bias[:50].mean() - bias[1000:1050].mean())
        assert drift > 3.0 and first - later == pytest.approx(drift, abs=0.6)  # 2500 px of ~9 adu noise each
        block = resid[geom.rows, geom.cols]
        quiet = truth.quiet[geom.rows, geom.cols]
        if geom.flip_y:
            block, quiet = block[::-1], quiet[::-1]  # back to readout row order
        early = block[:50][quiet[:50]].mean()
        # 50 x 509 pixels of ~28 adu noise: standard error 0.18 adu, plus per-column overscan noise.
        assert abs(early) < 1.0, f"{name}: residual {early:.2f} adu in the first 50 rows"


def test_amp_seams_invisible(truth: Truth, adu: Exposure) -> None:
    quiet = truth.quiet & (adu.mask == 0)
    sigma = float(adu.image[quiet].std())
    for seam, step, error in seam_steps(adu.image, quiet):
        assert step < sigma, f"{seam}: step {step:.2f} adu > 1 sigma {sigma:.2f}"
        # 40 px bands: the error (~0.4 adu) is mostly the overscan's per-row/column noise; a 0.2 % gain
        # mismatch at this sky level would be a 1.5 adu step.
        assert step < 4 * error, f"{seam}: step {step:.2f} adu, {step / error:.1f} standard errors"


def test_electron_output_without_flat(truth: Truth, electron: Exposure) -> None:
    assert electron.units == "electron" and electron.header["BUNIT"] == "electron"
    quiet = truth.quiet & (electron.mask == 0)
    detected = truth.electrons * truth.signature.flat  # no flat correction: the pixel response stays
    resid = electron.image - detected
    # Bias and dark are removed exactly up to noise: 1 e- is ~30x the error of the mean residual.
    assert abs(float(np.median(resid[quiet]))) < 1.0
    expected_sigma = float(np.sqrt(expected_sky_variance(truth, unit="electron")[quiet].mean()))
    assert float(resid[quiet].std()) == pytest.approx(expected_sigma, rel=0.02)
    check_fluxes(electron.image, truth.signature.flat, truth, expected_sigma)  # no flat: response stays
    sigma = float(electron.image[quiet].std())
    for seam, step, error in seam_steps(electron.image, quiet):
        assert step < sigma, f"{seam}: step {step:.2f} e- > 1 sigma {sigma:.2f}"
        assert step < 4 * error, f"{seam}: step {step:.2f} e-, {step / error:.1f} standard errors"


@pytest.mark.parametrize("output", ["adu", "electron"])
def test_variance_plane(truth: Truth, adu: Exposure, electron: Exposure, output: str) -> None:
    exposure = adu if output == "adu" else electron
    quiet = truth.quiet & (exposure.mask == 0)
    scale = truth.adu_scale if output == "adu" else None
    detected = truth.electrons * (np.float32(scale) if scale else truth.signature.flat)
    measured = float((exposure.image - detected)[quiet].var())
    assert exposure.variance is not None
    # Predicted variance agrees with the scatter to 3 % (the sky level in the formula is itself noisy).
    assert float(exposure.variance[quiet].mean()) == pytest.approx(measured, rel=0.03)


def test_saturated_star_masked_and_interpolated(truth: Truth, adu: Exposure) -> None:
    row, col, _ = SATURATED_STAR
    box = (slice(int(row) - 30, int(row) + 31), slice(int(col) - 30, int(col) + 31))
    sat = (adu.mask & MaskBit.SAT).astype(bool)
    assert sat[int(row), int(col)] and (adu.mask[int(row), int(col)] & MaskBit.INTRP)
    assert sat[box].sum() == sat.sum() > 20, "SAT only on the saturated star"
    assert np.isfinite(adu.image).all()


def test_defects_masked_and_interpolated(truth: Truth, raw: RawImage, adu: Exposure) -> None:
    background = SKY_E * truth.adu_scale
    # Without doDefect the hot column (50 e-/s x 30.4 s / gain ~ 1400 adu) is plain to see.
    assert float(np.median(adu.image[:, HOT_COLUMN])) - background > 1000
    config = IsrConfig(doDefect=True)
    exposure = run_isr(raw, load_calibrations(truth.calib_dir, config), config)
    assert (exposure.mask[:, HOT_COLUMN] & MaskBit.BAD).all()
    assert (exposure.mask[:, HOT_COLUMN] & MaskBit.INTRP).all()
    # Interpolated from its neighbours: sky within a few adu (noise of the mean of two pixels / sqrt(rows)).
    assert float(np.median(exposure.image[:, HOT_COLUMN])) == pytest.approx(background, abs=3.0)


def test_fringe_fitted_for_configured_filters(truth: Truth, tmp_path: Path) -> None:
    rows = np.arange(4000, dtype=np.float32)[:, None] / np.float32(37.0)
    cols = np.arange(4072, dtype=np.float32)[None, :]
    pattern = np.sin(rows + cols / np.float32(53.0)) * np.cos(cols / np.float32(91.0))  # tilted fringes
    electrons = truth.electrons + np.float32(120.0) * pattern  # fringes of +-120 e- on 800 e- of sky
    amps = electrons_to_amps(
        electrons, truth.signature, exptime_s=EXPTIME_S, darktime_s=DARKTIME_S, rng=np.random.default_rng(5)
    )
    header = read_raw(truth.raw_path).header
    header["FILTER"] = "SDSSi_65mm"
    raw = RawImage(path="fringed", header=header, amps=amps)
    for name in ("bias.fits", "dark.fits", "flat.fits", "amps.ecsv"):
        os.symlink(truth.calib_dir / name, tmp_path / name)
    write_image(tmp_path / "fringe.fits", pattern, "")
    quiet = truth.quiet
    stds = {}
    for filters in ((), ("SDSSi_65mm",)):
        config = IsrConfig(fringeFilters=filters)
        exposure = run_isr(raw, load_calibrations(tmp_path, config), config)
        stds[filters] = float((exposure.image - truth.electrons * np.float32(truth.adu_scale))[quiet].std())
    fringe_rms = 120.0 * truth.adu_scale * float(pattern.std())
    noise = float(np.sqrt(expected_sky_variance(truth, unit="adu")[quiet].mean()))
    # Fringes stay when the filter is not listed, and are removed (noise only, to 2 %) when it is.
    assert stds[()] == pytest.approx(np.hypot(noise, fringe_rms), rel=0.03)
    assert stds[("SDSSi_65mm",)] == pytest.approx(noise, rel=0.02)
