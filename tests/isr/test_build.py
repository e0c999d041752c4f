"""Calibration products built from simulated raw biases, darks and flats (by the CLI), then used by ISR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from isr_truth import SKY_E, Truth

from lsst.ts.auxtelwep.calibs import per_amp_image
from lsst.ts.auxtelwep.cli import main
from lsst.ts.auxtelwep.exposure import AMP_NAMES, amp_geometry, read_exposure
from lsst.ts.auxtelwep.instrument import DETECTOR_SHAPE
from lsst.ts.auxtelwep.sim.signature import default_header, electrons_to_amps, write_raw

DARK_S = 300.0
FLAT_E = 30000.0


@pytest.fixture(scope="module")
def built(truth: Truth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("calib_build")
    rng = np.random.default_rng(77)
    frames: dict[str, list[str]] = {"bias": [], "dark": [], "flat": []}
    kinds = (("bias", 0.0, 0.0, 0.0), ("dark", 0.0, DARK_S, DARK_S), ("flat", FLAT_E, 10.0, 10.2))
    for kind, level, exptime, darktime in kinds:
        electrons = np.full(DETECTOR_SHAPE, level, dtype=np.float32)
        for i in range(2):
            amps = electrons_to_amps(
                electrons, truth.signature, exptime_s=exptime, darktime_s=darktime, rng=rng
            )
            path = directory / f"{kind}{i}.fits"
            header = default_header(IMGTYPE=kind.upper(), EXPTIME=exptime, DARKTIME=darktime, SEQNUM=i)
            write_raw(path, amps, header)
            frames[kind].append(str(path))
    out = directory / "calibs"
    argv = ["calibs", "build", "--bias", *frames["bias"], "--dark", *frames["dark"]]
    assert main([*argv, "--flat", *frames["flat"], "--out", str(out)]) == 0
    return out


def test_amp_table(truth: Truth, built: Path) -> None:
    table = Table.read(built / "amps.ecsv", format="ascii.ecsv")
    assert sorted(table["amp"]) == sorted(AMP_NAMES) and str(table["gain"].unit) == "electron / adu"
    for row in table:
        name = row["amp"]
        # Photon transfer on 2 x 1M pixels: errors seen 0.0-0.3 % (0.15 % rms); 0.6 % is 4 sigma.
        assert row["gain"] == pytest.approx(truth.signature.gain[name], rel=0.006), name
        # Bias difference less the overscan correction's noise (3.3 % before that correction); the
        # variance of 1M pixels is known to 0.15 %, so the read noise to better than 0.5 %.
        assert row["read_noise"] == pytest.approx(truth.signature.read_noise[name], rel=0.01), name


def test_bias_dark_flat_images(truth: Truth, built: Path) -> None:
    sig = truth.signature
    gain = per_amp_image(sig.gain)
    noise_adu = per_amp_image({n: sig.read_noise[n] / sig.gain[n] for n in AMP_NAMES})
    bias = fits.getdata(built / "bias.fits")
    diff = bias - sig.bias_structure
    # Two frames: what is left is read noise / sqrt(2), and no offset (overscan removed level and drift).
    assert abs(float(diff.mean())) < 0.1
    assert float(diff.std()) == pytest.approx(float(np.sqrt((noise_adu**2).mean() / 2)), rel=0.1)

    dark = fits.getdata(built / "dark.fits")
    assert fits.getheader(built / "dark.fits")["BUNIT"] == "adu/s"
    expected = sig.dark_current / gain
    assert float(dark.mean()) == pytest.approx(float(expected.mean()), rel=0.1)
    warm = sig.dark_current > 0.5
    # Warm pixels: shot and read noise of two 300 s frames, per pixel; 5 sigma.
    sigma = np.sqrt(sig.dark_current * DARK_S + (noise_adu * gain) ** 2) / (DARK_S * np.sqrt(2) * gain)
    assert np.all(np.abs(dark - expected)[warm] < 5 * sigma[warm])

    flat = fits.getdata(built / "flat.fits")
    reference = (sig.flat / gain) / np.mean(sig.flat / gain, dtype=np.float64)
    # Shot noise of 2 x 30000 e- flats: 0.41 % per pixel.
    assert float((flat - reference).std()) == pytest.approx(np.sqrt(1 / (2 * FLAT_E)), rel=0.1)
    for geom in amp_geometry():
        ratio = flat[geom.rows, geom.cols].mean() / reference[geom.rows, geom.cols].mean()
        assert ratio == pytest.approx(1.0, abs=3e-4), f"{geom.name}: gain ratio off by {ratio - 1:.2e}"


def test_isr_cli_with_built_calibrations(truth: Truth, built: Path, tmp_path: Path) -> None:
    out = tmp_path / "calexp.fits"
    config = tmp_path / "isr.yaml"
    config.write_text("doVariance: true\ndoDefect: false\n")
    argv = ["isr", str(truth.raw_path), "--calibs", str(built), "--out", str(out), "--config", str(config)]
    assert main(argv) == 0
    exposure = read_exposure(out)
    assert exposure.units == "adu" and exposure.variance is not None
    assert exposure.header["OBSID"] == "AT_O_20240624_000106"
    quiet = truth.quiet & (exposure.mask == 0)
    # The flat from uniform frames gives the same adu per incident e- as the truth's calibration.
    assert float(np.median(exposure.image[quiet])) == pytest.approx(SKY_E * truth.adu_scale, abs=1.5)
    resid = (exposure.image - truth.electrons * np.float32(truth.adu_scale))[quiet]
    assert float(resid.std()) == pytest.approx(float(np.sqrt(exposure.variance[quiet].mean())), rel=0.03)


def test_cli_errors_exit_2(truth: Truth, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "isr.yaml"
    config.write_text("doFlat: true\ndoApplyGains: true\n")
    out = str(tmp_path / "x.fits")
    assert main(["isr", str(truth.raw_path), "--out", out, "--config", str(config)]) == 2
    assert "doFlat and doApplyGains are both true" in capsys.readouterr().err
    assert main(["isr", str(truth.raw_path), "--out", out]) == 2
    assert "ISR step doBias needs bias.fits, but no calibrations were given" in capsys.readouterr().err
    raws = [str(truth.raw_path)]
    assert main(["calibs", "build", "--bias", *raws, "--dark", *raws, "--flat", *raws, "--out", out]) == 2
    assert (
        ">= 2 biases (read noise), >= 1 dark and >= 2 flats (gains); got 1, 1, 1" in capsys.readouterr().err
    )
    # A science frame given as a calibration is named (it was combined, and failed later, if at all).
    args = ["calibs", "build", "--bias", *raws * 2, "--dark", *raws, "--flat", *raws * 2, "--out", out]
    assert main(args) == 2
    assert "IMGTYPE='CWFS', given as a bias frame" in capsys.readouterr().err
