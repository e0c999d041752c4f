"""The one place where the values of a LATISS primary header are read and checked.

Every header value the package uses is parsed here, against what a LATISS header can hold (FACTS.md
section 3), so that a malformed value (text where a number belongs, ``inf``, 1e30, a date that is not one)
is refused as a `RawFormatError` naming the file, the key and the value, wherever the header is read: the
CSC's intake, ``reprocess``, and the raws and exposures the pipeline reads. A key that is absent (or blank)
is None; it is not an error here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import erfa
from astropy.time import Time

from .errors import RawFormatError
from .guarded_warnings import guarded_warnings

__all__ = ["HEADER_LIMITS", "HeaderValues", "exposure_start", "header_number", "parse_header"]

log = logging.getLogger(__name__)

#: Accepted range (inclusive) and unit of each numeric key. Wide enough for any real LATISS header (RA/DEC
#: in radians before 2020-01-28 fall inside the degree ranges), narrow enough to refuse nonsense.
HEADER_LIMITS: dict[str, tuple[float, float, str]] = {
    "RA": (0.0, 360.0, "deg"),
    "DEC": (-90.0, 90.0, "deg"),
    # obs_lsst's corrections hold ROTPA down to -360.57 (LATISS-AT_O_20200217_000354): one turn and a bit.
    "ROTPA": (-720.0, 720.0, "deg"),
    "CAMANGLE": (-360.0, 360.0, "deg"),
    # Hexapod focus offset: its travel is a few mm; 50 mm is beyond anything the hexapod can do.
    "FOCUSZ": (-50.0, 50.0, "mm"),
    # Biases have 0 s (calibs_build reads them); an hour is longer than any LATISS exposure.
    "EXPTIME": (0.0, 3600.0, "s"),
    # The OBSID holds it in 6 digits.
    "SEQNUM": (0.0, 999_999.0, ""),
}
_INTEGER_KEYS = ("SEQNUM",)
_UNIT_NAMES = {"deg": " of degrees", "mm": " of mm", "s": " of seconds"}
_DAY_OBS_RE = re.compile(r"^\d{8}$")
#: Time scales of ``TIMESYS`` understood without Earth-rotation tables.
_TIME_SCALES = ("tai", "utc", "tt")
#: Exposure times outside 1990-01-01 .. 2100-01-01 UTC (unix seconds) are not of a LATISS image.
_TIME_RANGE_UNIX = (631_152_000.0, 4_102_444_800.0)


def header_number(header: Mapping[str, Any], key: str, *, where: str) -> float | None:
    """Read numeric header ``key`` and check it against `HEADER_LIMITS`.

    Parameters
    ----------
    header : mapping
        A primary header (`astropy.io.fits.Header` or a dict).
    key : `str`
        One of the keys of `HEADER_LIMITS`.
    where : `str`
        The file (or OBSID) the header is of, for messages.

    Returns
    -------
    value : `float` or `None`
        The value, or None when the key is absent or blank.

    Raises
    ------
    RawFormatError
        If the value is not a finite number (FITS ``T``/``F`` and the text ``nan`` included), is out of
        range, or not a whole number for an integer key; the message names ``where``, the key and the value.
    """
    value = header.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    low, high, unit = HEADER_LIMITS[key]
    # float(True) is 1.0: a FITS logical where a number belongs is a damaged card, not 1.
    number = None if isinstance(value, bool) else _to_float(value)
    if number is None or not math.isfinite(number):
        # FITS cannot hold a NaN or infinite number: such a value is text written where a number belongs.
        raise RawFormatError(
            f"{where}: header {key}={value!r} is not a number{_UNIT_NAMES.get(unit, '')}", value=value
        )
    if not (low <= number <= high) or (key in _INTEGER_KEYS and not number.is_integer()):
        kind = "a whole number " if key in _INTEGER_KEYS else ""
        unit = f" {unit}" if unit else ""
        raise RawFormatError(
            f"{where}: header {key}={value!r} is not {kind}in [{low:g}, {high:g}]{unit}",
            value=value,
            allowed=(low, high),
        )
    return number


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def exposure_start(header: Mapping[str, Any], *, where: str) -> float | None:
    """Exposure start as unix seconds (UTC), from ``MJD-BEG``, ``DATE-BEG`` or ``DATE-OBS``.

    In the scale of ``TIMESYS`` (TAI when absent, as LATISS writes them); the first usable key wins. A key
    that is no time, or not one between 1990 and 2100, is passed over with a warning: real raws of late 2019
    have DATE-OBS and MJD-BEG of 1970 (obs_lsst falls back to other keys), and the start only serves the
    guard against measuring images taken while M2 moved, which an unknown start leaves to the image's
    arrival. An unknown ``TIMESYS`` leaves the start unknown too (warned).

    Parameters
    ----------
    header : mapping
        A primary header.
    where : `str`
        The file (or OBSID) the header is of, for messages.

    Returns
    -------
    start : `float` or `None`
        Unix seconds, or None when the header has no usable time or an unknown ``TIMESYS``.
    """
    scale = str(header.get("TIMESYS", "") or "TAI").strip().lower()
    for key, time_format in (("MJD-BEG", "mjd"), ("DATE-BEG", "isot"), ("DATE-OBS", "isot")):
        value = header.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if scale not in _TIME_SCALES:
            log.warning("%s: TIMESYS=%r is not one of %s; exposure start unknown", where, scale, _TIME_SCALES)
            return None
        try:
            if isinstance(value, bool):
                raise TypeError("a logical")
            # ERFA warns of a "dubious year" far from now: the range check below says it better.
            with guarded_warnings(ignore=(erfa.ErfaWarning,)):
                start = float(Time(value, format=time_format, scale=scale).unix)
        # astropy and ERFA raise a variety (ValueError, ScaleValueError, ErfaError, OverflowError) for
        # values they cannot convert: all mean the same here.
        except Exception:
            log.warning(
                "%s: header %s=%r is not a time (%s, %s); passed over",
                where,
                key,
                value,
                time_format,
                scale.upper(),
            )
            continue
        if not (_TIME_RANGE_UNIX[0] <= start <= _TIME_RANGE_UNIX[1]):
            log.warning(
                "%s: header %s=%r is not a time between 1990 and 2100; passed over", where, key, value
            )
            continue
        return start
    return None


@dataclasses.dataclass(frozen=True)
class HeaderValues:
    """The checked values of a primary header (None where a key is absent).

    Attributes
    ----------
    ra_deg, dec_deg : `float` or `None`
        Pointing, degrees (converted from radians for ``DAYOBS`` before 2020-01-28).
    rotation_deg : `float` or `None`
        ``ROTPA``, degrees.
    focus_z_mm : `float` or `None`
        ``FOCUSZ``, mm.
    exposure_time_s : `float` or `None`
        ``EXPTIME``, s.
    camera_angle_deg : `float` or `None`
        ``CAMANGLE``, degrees.
    seq_num : `int` or `None`
        ``SEQNUM``.
    day_obs : `str`
        ``DAYOBS`` (``YYYYMMDD``), '' when absent.
    exposure_start : `float` or `None`
        Unix seconds (`exposure_start`).
    """

    ra_deg: float | None
    dec_deg: float | None
    rotation_deg: float | None
    focus_z_mm: float | None
    exposure_time_s: float | None
    camera_angle_deg: float | None
    seq_num: int | None
    day_obs: str
    exposure_start: float | None


#: RA/DEC headers were written in radians before this DAYOBS (FACTS.md section 3).
_RADIANS_BEFORE_DAYOBS = "20200128"


def parse_header(header: Mapping[str, Any], *, where: str) -> HeaderValues:
    """Read and check every header value the package uses (see the module docstring).

    Parameters
    ----------
    header : mapping
        A primary header.
    where : `str`
        The file (or OBSID) the header is of, for messages.

    Returns
    -------
    values : `HeaderValues`

    Raises
    ------
    RawFormatError
        Naming ``where``, the key and the value, for the first malformed value.
    """
    raw_day_obs = header.get("DAYOBS", "")
    day_obs = "" if raw_day_obs is None or isinstance(raw_day_obs, bool) else str(raw_day_obs).strip()
    if isinstance(raw_day_obs, bool) or (day_obs and not _DAY_OBS_RE.match(day_obs)):
        raise RawFormatError(
            f"{where}: header DAYOBS={raw_day_obs!r} is not a date YYYYMMDD", value=raw_day_obs
        )
    numbers = {key: header_number(header, key, where=where) for key in HEADER_LIMITS}
    ra, dec = numbers["RA"], numbers["DEC"]
    if day_obs and day_obs < _RADIANS_BEFORE_DAYOBS and ra is not None and dec is not None:
        ra, dec = math.degrees(ra), math.degrees(dec)
    seq = numbers["SEQNUM"]
    return HeaderValues(
        ra_deg=ra,
        dec_deg=dec,
        rotation_deg=numbers["ROTPA"],
        focus_z_mm=numbers["FOCUSZ"],
        exposure_time_s=numbers["EXPTIME"],
        camera_angle_deg=numbers["CAMANGLE"],
        seq_num=None if seq is None else int(seq),
        day_obs=day_obs,
        exposure_start=exposure_start(header, where=where),
    )
