"""Header values are read and checked in one place (`headers`), for every reader of a header."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits

from lsst.ts.auxtelwep.errors import RawFormatError
from lsst.ts.auxtelwep.exposure import camera_angle_from_header, read_exposure
from lsst.ts.auxtelwep.headers import parse_header
from lsst.ts.auxtelwep.intake import ImageInfo, read_image_info

GOOD = {
    "OBSID": "AT_O_20240624_000001",
    "DAYOBS": "20240624",
    "SEQNUM": 1,
    "RA": 150.0,
    "DEC": -30.0,
    "ROTPA": -179.5,
    "FOCUSZ": 0.8,
    "EXPTIME": 20.0,
    "CAMANGLE": 12.0,
    "DATE-OBS": "2024-06-25T02:00:37.000",
    "TIMESYS": "TAI",
}


def test_a_real_latiss_header_reads() -> None:
    values = parse_header(GOOD, where="raw.fits")
    assert (values.ra_deg, values.dec_deg, values.seq_num, values.day_obs) == (150.0, -30.0, 1, "20240624")
    # Before 2020-01-28 RA/DEC were in radians.
    old = parse_header(GOOD | {"DAYOBS": "20191101", "RA": 3.0, "DEC": -0.5}, where="raw.fits")
    assert old.ra_deg == pytest.approx(171.887, abs=1e-3) and old.dec_deg == pytest.approx(-28.648, abs=1e-3)
    # A bias (EXPTIME 0) reads as a file; only as a wavefront image is it refused.
    assert parse_header(GOOD | {"EXPTIME": 0.0}, where="bias.fits").exposure_time_s == 0.0
    assert parse_header({"DAYOBS": 20240624}, where="raw.fits").day_obs == "20240624"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("SEQNUM", "inf", "is not a number"),
        ("SEQNUM", "-inf", "is not a number"),
        ("SEQNUM", 1e300, "is not a whole number in [0, 999999]"),
        ("SEQNUM", -1, "is not a whole number in [0, 999999]"),
        ("SEQNUM", 1.5, "is not a whole number in [0, 999999]"),
        ("RA", "inf", "is not a number of degrees"),
        ("RA", 720.0, "is not in [0, 360] deg"),
        ("RA", 1e30, "is not in [0, 360] deg"),
        ("DEC", 95.0, "is not in [-90, 90] deg"),
        ("DEC", -1e30, "is not in [-90, 90] deg"),
        ("DEC", "nan", "is not a number of degrees"),
        ("ROTPA", 721.0, "is not in [-720, 720] deg"),
        ("CAMANGLE", 1e30, "is not in [-360, 360] deg"),
        ("FOCUSZ", 1e30, "is not in [-50, 50] mm"),
        ("FOCUSZ", True, "is not a number of mm"),
        ("EXPTIME", -5.0, "is not in [0, 3600] s"),
        ("EXPTIME", 1e30, "is not in [0, 3600] s"),
        ("DAYOBS", "garbage", "is not a date YYYYMMDD"),
    ],
)
def test_a_malformed_value_is_refused_naming_file_key_and_value(key: str, value: Any, problem: str) -> None:
    expected = re.escape(f"raw.fits: header {key}={value!r} {problem}")
    with pytest.raises(RawFormatError, match=expected):
        parse_header(GOOD | {key: value}, where="raw.fits")
    # The intake (CSC, reprocess) refuses it the same way.
    with pytest.raises(RawFormatError, match=expected):
        ImageInfo.from_header(GOOD | {key: value}, path="raw.fits")


def test_a_wavefront_image_of_zero_seconds_is_refused() -> None:
    with pytest.raises(RawFormatError, match=r"raw.fits: header EXPTIME=0 s: not a wavefront image"):
        ImageInfo.from_header(GOOD | {"EXPTIME": 0.0}, path="raw.fits")


def test_the_camera_angle_uses_the_same_check() -> None:
    assert camera_angle_from_header(fits.Header(GOOD)) == 12.0
    with pytest.raises(RawFormatError, match=re.escape("CAMANGLE=1e+30 is not in [-360, 360] deg")):
        camera_angle_from_header(fits.Header(GOOD | {"CAMANGLE": 1e30}))


def _write(path: Path, **keys: Any) -> Path:
    fits.PrimaryHDU(data=[[1.0, 2.0], [3.0, 4.0]], header=fits.Header(GOOD | keys)).writeto(path)
    return path


def test_files_with_a_malformed_value_are_refused_when_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "inf.fits", SEQNUM="inf")
    for read in (read_image_info, read_exposure):
        with pytest.raises(RawFormatError, match=re.escape(f"{path}: header SEQNUM='inf' is not a number")):
            read(path)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"CDELT1": 0.0, "CDELT2": 1e-4}, "matrix is singular"),
        ({"CTYPE1": "GARBAGE"}, "Unmatched celestial axes"),
        ({"CRVAL2": 95.0}, "Ill-conditioned coordinate transformation"),
    ],
)
def test_an_unusable_header_wcs_is_refused_naming_the_file(tmp_path: Path, keys: dict, problem: str) -> None:
    wcs = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": -30.0, "CRPIX1": 1.0}
    wcs |= {"CRPIX2": 1.0, "CDELT1": -1e-4, "CDELT2": 1e-4}
    path = _write(tmp_path / "wcs.fits", **(wcs | keys))
    with pytest.raises(RawFormatError, match=rf"wcs.fits: the header's WCS .* is not usable: .*{problem}"):
        read_exposure(path)
