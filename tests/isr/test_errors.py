"""Bad raws, missing or wrong calibrations, refused configurations: each raises the package's error and the
message names the file (or option) and the problem."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lsst.ts.auxtelwep.calibs import Calibrations, load_calibrations, write_image
from lsst.ts.auxtelwep.errors import CalibrationError, ConfigurationError, InputError, RawFormatError
from lsst.ts.auxtelwep.exposure import AMP_NAMES, MaskBit, RawImage, read_raw
from lsst.ts.auxtelwep.instrument import DETECTOR_SHAPE
from lsst.ts.auxtelwep.isr import UNSUPPORTED_FLAGS, IsrConfig, run_isr
from lsst.ts.auxtelwep.sim.signature import default_header, write_raw


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid raw with constant amplifiers (bias 1000 adu + 500 adu of signal), fast to write."""
    amps = {name: np.full((2048, 576), 1000.0, dtype=np.float32) for name in AMP_NAMES}
    for amp in amps.values():
        amp[:2000, 3:512] += 500.0
    path = tmp_path_factory.mktemp("raws") / "good.fits"
    write_raw(path, amps, default_header())
    return path


@pytest.fixture(scope="module")
def calib_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Valid products, to be linked one by one into each test's directory."""
    directory = tmp_path_factory.mktemp("calib_store")
    write_image(directory / "bias.fits", np.zeros(DETECTOR_SHAPE), "adu")
    write_image(directory / "dark.fits", np.zeros(DETECTOR_SHAPE), "adu/s")
    write_image(directory / "flat.fits", np.ones(DETECTOR_SHAPE), "")
    table = Table({"amp": sorted(AMP_NAMES), "gain": [1.1] * 16, "read_noise": [9.0] * 16})
    table["saturation"] = [120000.0] * 16
    table.write(directory / "amps.ecsv", format="ascii.ecsv")
    return directory


def link(store: Path, directory: Path, *names: str) -> Path:
    for name in names:
        os.symlink(store / name, directory / name)
    return directory


# ------------------------------------------------------------------------------------------------- raws


def test_good_small_raw_runs(small_raw: Path, tmp_path: Path, calib_store: Path) -> None:
    # The baseline the failure cases below break: 500 adu of signal after overscan, bias 0, flat 1.
    calibs = load_calibrations(
        link(calib_store, tmp_path, "bias.fits", "dark.fits", "flat.fits"), IsrConfig()
    )
    exposure = run_isr(read_raw(small_raw), calibs, IsrConfig())
    np.testing.assert_allclose(exposure.image, 500.0)


def test_a_few_nonfinite_calibration_pixels_are_masked_quietly(
    small_raw: Path, tmp_path: Path, calib_store: Path
) -> None:
    # A bias with inf pixels leaked numpy's "invalid value encountered" from the ISR's arithmetic.
    link(calib_store, tmp_path, "dark.fits", "flat.fits")
    bias = np.zeros(DETECTOR_SHAPE)
    bias[100, 200], bias[3000, 10] = np.inf, np.nan
    write_image(tmp_path / "bias.fits", bias, "adu")
    calibs = load_calibrations(tmp_path, IsrConfig())
    assert np.isfinite(calibs.bias).all() and "_nonfinite=" not in repr(calibs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exposure = run_isr(read_raw(small_raw), calibs, IsrConfig())
    for row, col in ((100, 200), (3000, 10)):  # masked BAD, then interpolated over (doInterpolate)
        assert exposure.mask[row, col] & MaskBit.BAD and exposure.image[row, col] == pytest.approx(500.0)
    assert np.count_nonzero(exposure.mask & MaskBit.BAD) == 2


def test_corrupt_raw(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.fits"
    path.write_bytes(b"this is not FITS at all" * 400)
    with pytest.raises(RawFormatError, match="not a readable FITS") as info:
        read_raw(path)
    assert str(path) in str(info.value)


@pytest.mark.filterwarnings("ignore:File may have been truncated")  # astropy's own notice, before the error
def test_truncated_raw(small_raw: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.fits"
    path.write_bytes(small_raw.read_bytes()[:-100_000])
    with pytest.raises(RawFormatError, match="file is truncated") as info:
        read_raw(path)
    assert str(path) in str(info.value)


def test_wrong_shape_hdu(small_raw: Path, tmp_path: Path) -> None:
    path = tmp_path / "narrow.fits"
    with fits.open(small_raw) as hdul:
        hdul["Segment05"].data = hdul["Segment05"].data[:, :500]
        hdul.writeto(path)
    with pytest.raises(
        RawFormatError, match=r"Segment05 has shape \(2048, 500\), expected one of \(\(2048, 576\)"
    ) as info:
        read_raw(path)
    assert str(path) in str(info.value)


def test_missing_hdu(small_raw: Path, tmp_path: Path) -> None:
    path = tmp_path / "fifteen.fits"
    with fits.open(small_raw) as hdul:
        del hdul["Segment07"]
        hdul.writeto(path)
    with pytest.raises(RawFormatError, match="missing amplifier HDU Segment07") as info:
        read_raw(path)
    assert str(path) in str(info.value) and "ISR'd already" not in str(info.value)
    # An image with no segment at all (one ISR'd already, given where a raw goes) is named as such.
    single = tmp_path / "isrd.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((40, 40), dtype=np.float32))]).writeto(single)
    with pytest.raises(RawFormatError, match="no amplifier segment at all: an image ISR'd already"):
        read_raw(single)


def test_run_isr_refuses_incomplete_amps(small_raw: Path) -> None:
    raw = read_raw(small_raw)
    amps = {name: data for name, data in raw.amps.items() if name != "C13"}
    with pytest.raises(RawFormatError, match=r"in-memory: amplifiers \['C13'\] missing"):
        run_isr(
            RawImage("in-memory", raw.header, amps), None, IsrConfig(doBias=False, doDark=False, doFlat=False)
        )


# --------------------------------------------------------------------------------------------- calibrations


@pytest.mark.parametrize(
    ("config", "present", "missing_file", "step"),
    [
        ({}, ("dark.fits", "flat.fits"), "bias.fits", "doBias"),
        ({}, ("bias.fits", "flat.fits"), "dark.fits", "doDark"),
        ({}, ("bias.fits", "dark.fits"), "flat.fits", "doFlat"),
        ({"doFlat": False, "doApplyGains": True}, ("bias.fits", "dark.fits"), "amps.ecsv", "doApplyGains"),
        ({"doVariance": True}, ("bias.fits", "dark.fits", "flat.fits"), "amps.ecsv", "doVariance"),
        ({"doDefect": True}, ("bias.fits", "dark.fits", "flat.fits"), "defects.ecsv", "doDefect"),
        ({"fringeFilters": ("SDSSi",)}, ("bias.fits", "dark.fits", "flat.fits"), "fringe.fits", "doFringe"),
    ],
)
def test_missing_calibration(
    calib_store: Path, tmp_path: Path, config: dict, present: tuple[str, ...], missing_file: str, step: str
) -> None:
    link(calib_store, tmp_path, *present)
    with pytest.raises(CalibrationError) as info:
        load_calibrations(tmp_path, IsrConfig(**config))
    message = str(info.value)
    assert step in message and str(tmp_path / missing_file) in message and "does not exist" in message


def test_missing_calibration_directory(tmp_path: Path) -> None:
    with pytest.raises(
        CalibrationError, match=f"calibration directory {tmp_path / 'nowhere'} does not exist"
    ):
        load_calibrations(tmp_path / "nowhere", IsrConfig())
    (tmp_path / "refcat.ecsv").write_text("ra,dec,mag\n")  # a file given where the directory goes
    with pytest.raises(CalibrationError, match=re.escape("refcat.ecsv is a file, not a directory")):
        load_calibrations(tmp_path / "refcat.ecsv", IsrConfig())


def test_run_isr_without_calibrations(small_raw: Path) -> None:
    with pytest.raises(
        CalibrationError, match=re.escape("ISR step doBias needs bias.fits, but no calibrations were given")
    ):
        run_isr(read_raw(small_raw), None, IsrConfig())


def test_calibration_wrong_shape(calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "dark.fits", "flat.fits")
    write_image(tmp_path / "bias.fits", np.zeros((2000, 4072)), "adu")
    with pytest.raises(CalibrationError, match=r"bias .*bias.fits: image has shape \(2000, 4072\), expected"):
        load_calibrations(tmp_path, IsrConfig())


def test_calibration_wrong_unit(calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "bias.fits", "flat.fits")
    write_image(tmp_path / "dark.fits", np.zeros(DETECTOR_SHAPE), "Jy")
    with pytest.raises(CalibrationError, match=r"dark .*dark.fits: BUNIT 'Jy' not understood"):
        load_calibrations(tmp_path, IsrConfig())


def test_flat_not_normalised(calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "bias.fits", "dark.fits")
    write_image(tmp_path / "flat.fits", np.full(DETECTOR_SHAPE, 30000.0), "")
    with pytest.raises(CalibrationError, match=r"flat .*flat.fits: mean of valid pixels is 3e\+04, expected"):
        load_calibrations(tmp_path, IsrConfig())


def test_a_calibration_of_unusable_pixels_is_refused(calib_store: Path, tmp_path: Path) -> None:
    # An all-NaN bias was applied: `isr` exited 0 with a 100 % masked image, and `process` then failed on
    # "no template detection". A flat half negative and another instrument's bias passed silently.
    link(calib_store, tmp_path, "dark.fits", "flat.fits")
    write_image(tmp_path / "bias.fits", np.full(DETECTOR_SHAPE, np.nan), "adu")
    with pytest.raises(CalibrationError, match=r"bias .*bias.fits: 100.0 % of its pixels are NaN or inf"):
        load_calibrations(tmp_path, IsrConfig())
    write_image(tmp_path / "bias.fits", np.zeros(DETECTOR_SHAPE), "adu", INSTRUME="LSSTComCam")
    with pytest.raises(
        CalibrationError, match=r"bias .*bias.fits: made for INSTRUME='LSSTComCam', not LATISS"
    ):
        load_calibrations(tmp_path, IsrConfig())
    (tmp_path / "bias.fits").unlink()
    link(calib_store, tmp_path, "bias.fits")
    flat = np.ones(DETECTOR_SHAPE)
    flat[:2000] = -1.0
    (tmp_path / "flat.fits").unlink()
    write_image(tmp_path / "flat.fits", flat, "")
    with pytest.raises(CalibrationError, match=r"flat .*flat.fits: 50.0 % of its pixels are NaN, inf or not"):
        load_calibrations(tmp_path, IsrConfig())


def test_corrupt_calibration(calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "bias.fits", "dark.fits")
    (tmp_path / "flat.fits").write_bytes(b"garbage" * 1000)
    with pytest.raises(CalibrationError, match=r"flat .*flat.fits: unreadable or truncated FITS"):
        load_calibrations(tmp_path, IsrConfig())


def test_truncated_calibration_is_one_error_and_no_warning(calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "bias.fits", "dark.fits")
    (tmp_path / "flat.fits").write_bytes((calib_store / "flat.fits").read_bytes()[:1_000_000])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy's "may have been truncated" notice would fail here
        with pytest.raises(CalibrationError, match=r"flat .*flat.fits: unreadable or truncated FITS"):
            load_calibrations(tmp_path, IsrConfig())


def test_amps_table_missing_amplifier(calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "bias.fits", "dark.fits")
    table = Table.read(calib_store / "amps.ecsv")
    table[table["amp"] != "C12"].write(tmp_path / "amps.ecsv", format="ascii.ecsv")
    with pytest.raises(CalibrationError, match=r"amps table .*amps.ecsv: amplifiers \['C12'\] missing"):
        load_calibrations(tmp_path, IsrConfig(doFlat=False, doApplyGains=True))


def test_dark_frame_scaled_by_its_darktime(calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "bias.fits", "flat.fits")
    write_image(tmp_path / "dark.fits", np.full(DETECTOR_SHAPE, 60.0), "adu", DARKTIME=120.0)
    assert float(load_calibrations(tmp_path, IsrConfig()).dark[0, 0]) == pytest.approx(0.5)
    write_image(tmp_path / "dark.fits", np.full(DETECTOR_SHAPE, 60.0), "adu/s", DARKTIME=120.0)
    with pytest.raises(CalibrationError, match=re.escape("DARKTIME 120.0 s does not fit BUNIT 'adu/s'")):
        load_calibrations(tmp_path, IsrConfig())


def test_electron_bias_converted_to_adu(calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "dark.fits", "flat.fits", "amps.ecsv")
    write_image(tmp_path / "bias.fits", np.full(DETECTOR_SHAPE, 11.0), "electron")
    calibs = load_calibrations(tmp_path, IsrConfig())
    assert calibs.units == "adu" and float(calibs.bias[0, 0]) == pytest.approx(10.0)  # 11 e- / 1.1 e-/adu
    assert not calibs.bias.flags.writeable


def test_calibrations_for_another_unit_refused(small_raw: Path, calib_store: Path, tmp_path: Path) -> None:
    link(calib_store, tmp_path, "bias.fits", "dark.fits", "flat.fits", "amps.ecsv")
    calibs = load_calibrations(tmp_path, IsrConfig())
    with pytest.raises(
        ConfigurationError, match="loaded for adu output, but the ISR configuration produces electron"
    ):
        run_isr(read_raw(small_raw), calibs, IsrConfig(doFlat=False, doApplyGains=True))
    with pytest.raises(CalibrationError, match=r"bias has shape \(10, 10\)"):
        Calibrations(str(tmp_path), bias=np.zeros((10, 10)))


# ------------------------------------------------------------------------------------------- configuration


def test_seed_defaults() -> None:
    config = IsrConfig()
    on = {"doOverscan", "doBias", "doDark", "doFlat", "doFringe", "doInterpolate"}
    off = {"doApplyGains", "doBrighterFatter", "doCrosstalk", "doDefect", "doLinearize", "doNanMasking"}
    assert all(getattr(config, flag) for flag in on) and not any(getattr(config, flag) for flag in off)
    assert not config.doVariance and config.fringeFilters == () and config.output_units == "adu"


def test_flat_and_gains_refused() -> None:
    with pytest.raises(ConfigurationError, match="doFlat and doApplyGains are both true"):
        IsrConfig(doApplyGains=True)


@pytest.mark.parametrize("flag", UNSUPPORTED_FLAGS)
def test_unsupported_flag_refused(flag: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{flag}=True is not supported yet"):
        IsrConfig(**{flag: True})


def test_unknown_and_mistyped_options_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown option 'doMagic'"):
        IsrConfig(doMagic=True)
    with pytest.raises(ConfigurationError, match="overscanSkip"):
        IsrConfig(overscanSkip="many")
    path = tmp_path / "isr.yaml"
    path.write_text("isr:\n  doFlat: false\n  doApplyGains: true\n  doVariance: true\n")
    assert IsrConfig.from_yaml(path) == IsrConfig(doFlat=False, doApplyGains=True, doVariance=True)
    path.write_text("doBias: true\ndoCrossTalk: false\n")
    with pytest.raises(ConfigurationError, match=f"{path}: .*unknown option 'doCrossTalk'"):
        IsrConfig.from_yaml(path)


def test_run_isr_rechecks_constructed_config(small_raw: Path) -> None:
    config = IsrConfig.model_construct(doApplyGains=True)  # bypasses validation
    with pytest.raises(ConfigurationError, match="doFlat and doApplyGains"):
        run_isr(read_raw(small_raw), None, config)


def test_dark_time_problems_are_named(caplog: pytest.LogCaptureFixture) -> None:
    from lsst.ts.auxtelwep.isr import _darktime

    def raw(**keys: object) -> RawImage:
        return RawImage("x.fits", fits.Header(keys), {})

    assert _darktime(raw(DARKTIME=30.4, EXPTIME=30.0)) == 30.4
    with caplog.at_level("WARNING"):
        assert _darktime(raw(DARKTIME=-5.0, EXPTIME=30.0)) == 30.0
    assert "DARKTIME=-5.0 is not >= 0; scaling the dark by EXPTIME" in caplog.text  # not "no DARKTIME"
    with pytest.raises(RawFormatError, match="no DARKTIME and EXPTIME=-1 is not >= 0: no time to scale"):
        _darktime(raw(EXPTIME=-1))
    # Real 2020 raws (AT_O_20200128_000335): DARKTIME 0 with EXPTIME 7.5 s scaled the dark by 0.
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert _darktime(raw(DARKTIME=0.0, EXPTIME=7.5)) == 7.5
    assert "DARKTIME 0 s < EXPTIME 7.5 s; scaling the dark by EXPTIME" in caplog.text


def test_an_amplifier_reading_one_value_is_masked_and_named(
    small_raw: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = read_raw(small_raw)
    amps = dict(raw.amps)
    amps["C07"] = np.zeros_like(amps["C07"])  # dead, or not read out
    config = IsrConfig(doBias=False, doDark=False, doFlat=False)
    with caplog.at_level("WARNING"):
        exposure = run_isr(RawImage("dead.fits", raw.header, amps), None, config)
    assert "amplifier C07 reads one constant value (dead or not read out): masked BAD" in caplog.text
    dead = (exposure.mask & MaskBit.BAD) > 0
    assert dead.sum() == 509 * 2000  # that amplifier's pixels, and only those
    assert np.all(exposure.image[~dead] == 500.0)  # the others as before


def test_a_path_or_a_mapping_at_the_call(tmp_path: Path) -> None:
    path = tmp_path / "raw.fits"
    with pytest.raises(InputError, match=r"raw: expected RawImage, got str .*exposure\.read_raw\(path\)"):
        run_isr(str(path), None, IsrConfig())
    with pytest.raises(ConfigurationError, match="doBias"):
        run_isr(RawImage(str(path), fits.Header(), {}), None, {"doBias": "often"})
