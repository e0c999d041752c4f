"""The raw writer and the detector signature, checked with astropy alone where the format is concerned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from isr_truth import DARKTIME_S, SATURATED_STAR, SKY_E, Truth

from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.exposure import AMP_NAMES, RawImage, amp_geometry, read_raw
from lsst.ts.auxtelwep.instrument import DETECTOR_SHAPE
from lsst.ts.auxtelwep.isr import IsrConfig, run_isr
from lsst.ts.auxtelwep.sim.signature import DetectorSignature, default_header, electrons_to_amps, write_raw

PRIMARY_KEYS = (
    "OBSID IMGTYPE REASON PROGRAM GROUPID DAYOBS SEQNUM RA DEC ROTPA ELSTART AZSTART FOCUSZ EXPTIME DARKTIME "
    "FILTER GRATING CCDTEMP BUNIT"
).split()


def test_raw_read_back_with_astropy(truth: Truth) -> None:
    with fits.open(truth.raw_path) as hdul:
        assert len(hdul) == 17
        names = [hdu.header["EXTNAME"] for hdu in hdul[1:]]
        assert names == [f"Segment1{i}" for i in range(8)] + [f"Segment0{i}" for i in range(7, -1, -1)]
        primary = hdul[0].header
        assert all(key in primary for key in PRIMARY_KEYS)
        assert primary["BUNIT"] == "adu" and isinstance(primary["DAYOBS"], str)
        for hdu in hdul[1:]:
            assert hdu.data.shape == (2048, 576) and hdu.header["BITPIX"] == 32
            assert hdu.header["DATASEC"] == "[4:512,1:2000]" and hdu.header["BIASSEC"] == "[513:576,1:2000]"
            assert hdu.header["BUNIT"] == "adu"
        assert hdul["Segment03"].header["DETSEC"] == "[2036:1528,1:2000]"
        assert (
            hdul["Segment13"].header["DETSEC"] == "[2036:1528,2001:4000]"
        )  # no y flip: DM-36115 as real files

        sig = truth.signature
        name, index = "C05", names.index("Segment05") + 1
        geom = {g.name: g for g in amp_geometry()}[name]
        amp = hdul[index].data.astype(np.float64)
        # A quiet 400 x 400 patch of the data section, readout rows 1000-1399 / columns 103-502.
        patch = amp[1000:1400, 103:503]
        block = slice(geom.cols.start, geom.cols.stop)
        assembled_cols = block.stop - 1 - np.arange(100, 500)  # flipped in x
        flat = sig.flat[1000:1400][:, assembled_cols]
        dark = sig.dark_current[1000:1400][:, assembled_cols]
        structure = sig.bias_structure[1000:1400][:, assembled_cols]
        signal = (SKY_E * flat + dark * DARKTIME_S) / sig.gain[name]
        bias = sig.bias_rows(name)[1000:1400, None] + sig.bias_columns[index - 1][None, 103:503] + structure
        # bias + signal / gain: the difference is the exposure's bias jitter (3 adu rms) plus noise
        # (28 adu / 400 = 0.07 adu); 12 adu is 4 sigma of the jitter.
        assert float((patch - bias - signal).mean()) == pytest.approx(0.0, abs=12.0)
        # Against its own serial overscan (which carries the same jitter and drift) the match is 0.5 adu.
        overscan = (
            amp[1000:1400, 515:573].mean(axis=1, keepdims=True) - sig.bias_columns[index - 1][515:573].mean()
        )
        expected = (
            signal
            + structure
            + sig.bias_columns[index - 1][None, 103:503]
            - sig.bias_rows(name)[1000:1400, None] * 0
        )
        assert float((patch - overscan - expected).mean()) == pytest.approx(0.0, abs=0.5)
        # Noise per pixel: shot noise and read noise, in adu.
        predicted = np.sqrt(SKY_E * flat.mean() + sig.read_noise[name] ** 2) / sig.gain[name]
        assert float((patch - overscan - expected).std()) == pytest.approx(predicted, rel=0.03)


def test_compressed_raw_is_lossless(truth: Truth, tmp_path: Path) -> None:
    raw = read_raw(truth.raw_path)
    path = tmp_path / "compressed.fits"
    write_raw(path, raw.amps, raw.header, compress=True)
    with fits.open(path) as hdul:
        assert all(isinstance(hdu, fits.CompImageHDU) for hdu in hdul[1:])
        assert hdul[1].header["EXTNAME"] == "Segment10"
        assert hdul[1].compression_type == "RICE_1"
    again = read_raw(path)
    for name in AMP_NAMES:
        np.testing.assert_array_equal(again.amps[name], raw.amps[name])
    assert path.stat().st_size < 0.5 * truth.raw_path.stat().st_size


def test_saturation_and_integer_adu(truth: Truth) -> None:
    raw = read_raw(truth.raw_path)
    for amp in raw.amps.values():
        assert np.array_equal(amp, np.rint(amp)) and amp.max() <= truth.signature.saturation
    row, col, _ = SATURATED_STAR  # bottom half, amp C06 (cols 3054-3562), flipped in x
    amp = raw.amps["C06"]
    assert amp[int(row), 3 + (3562 - int(col))] == truth.signature.saturation


def test_typical_signature() -> None:
    sig = DetectorSignature.typical(seed=4)
    assert all(1.047 <= g <= 1.105 for g in sig.gain.values())
    assert all(8.0 <= r <= 10.3 for r in sig.read_noise.values())
    assert sig.flat.mean(dtype=np.float64) == pytest.approx(1.0, abs=1e-6)
    assert sig.flat.shape == DETECTOR_SHAPE and not sig.flat.flags.writeable
    assert sig.saturation == 120000.0 and sig.n_cols == 576
    assert DetectorSignature.typical(seed=4).gain == sig.gain
    assert DetectorSignature.typical(seed=5).gain != sig.gain
    with pytest.raises(InputError, match="serial_overscan is 48, expected 32 or 64"):
        DetectorSignature.typical(seed=4, serial_overscan=48)


def test_cosmic_rays_hot_columns_and_input_checks(truth: Truth) -> None:
    rng = np.random.default_rng(9)
    electrons = np.zeros(DETECTOR_SHAPE, dtype=np.float32)
    kwargs = dict(exptime_s=0.0, darktime_s=0.0, rng=rng, bias_offset_sigma_adu=0.0)
    quiet = electrons_to_amps(electrons, truth.signature, **kwargs)
    busy = electrons_to_amps(electrons, truth.signature, n_cosmic_rays=30, **kwargs, hot_columns=[10])
    quiet_max = max(float(quiet[n][:2000, 3:512].max()) for n in AMP_NAMES)
    busy_max = max(float(busy[n][:2000, 3:512].max()) for n in AMP_NAMES)
    assert busy_max > quiet_max + 500  # a cosmic ray deposits >= 800 e- per pixel
    # darktime 0: the hot column collects nothing, so the two differ only by the cosmic rays' pixels.
    with pytest.raises(InputError, match=r"electrons image has shape \(10, 10\)"):
        electrons_to_amps(np.zeros((10, 10)), truth.signature, **kwargs)
    with pytest.raises(InputError, match="need 0 <= exptime_s <= darktime_s"):
        electrons_to_amps(electrons, truth.signature, exptime_s=10.0, darktime_s=5.0, rng=rng)
    with pytest.raises(InputError, match=r"hot_columns \[5000\] outside"):
        electrons_to_amps(electrons, truth.signature, hot_columns=[5000], **kwargs)
    with pytest.raises(InputError, match=r"amplifiers \['C00'\] missing"):
        write_raw("x.fits", {n: quiet[n] for n in AMP_NAMES[:-1]}, default_header())


def test_pre_2022_narrow_overscan() -> None:
    """32 overscan columns (before November 2022): arrays 544 wide, and ISR takes them."""
    sig = DetectorSignature.typical(seed=6, serial_overscan=32)
    electrons = np.full(DETECTOR_SHAPE, 500.0, dtype=np.float32)
    amps = electrons_to_amps(electrons, sig, exptime_s=1.0, darktime_s=1.0, rng=np.random.default_rng(1))
    assert all(a.shape == (2048, 544) for a in amps.values())
    raw = RawImage("narrow-overscan", default_header(), amps)
    exposure = run_isr(raw, None, IsrConfig(doBias=False, doDark=False, doFlat=False))
    # Overscan-corrected adu: 500 e- x flat / gain, plus the 2 adu bias structure no bias frame removed.
    expected = float(np.mean(500.0 * sig.flat / np.mean(list(sig.gain.values())))) + float(
        sig.bias_structure.mean()
    )
    assert float(np.median(exposure.image)) == pytest.approx(expected, rel=0.01)
