"""Intake: where the raws of the camera events are, and what their primary headers say.

Data layout
-----------
The data root is a local directory or a ``file://`` URI. A raw announced as ``OBSID`` (e.g.
``AT_O_20240624_000106``) is looked for at::

    <data_root>/raw/<DAYOBS>/<OBSID>.fits        (or .fits.fz)

where ``DAYOBS`` is the date field of the OBSID (``20240624``). Only the primary header is read here
(a few ms); the pipeline reads the pixels.

Camera events: ATCamera ``endReadout`` carries ``additionalKeys`` and ``additionalValues``, two strings of
colon-separated items of equal count (``"groupId:imageType:reason"`` and ``"G1:CWFS:INTRA"``);
`parse_additional` turns them into a dict.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import re
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from .errors import ConfigurationError, InputError, RawFormatError
from .guarded_warnings import guarded_warnings
from .headers import parse_header

__all__ = [
    "FITS_READ_ERRORS",
    "RAW_SUFFIXES",
    "ImageInfo",
    "RawLocator",
    "day_obs_from_obsid",
    "fits_error_text",
    "header_warnings_named",
    "name_warnings",
    "parse_additional",
    "read_image_info",
    "refuse_non_file",
]

log = logging.getLogger(__name__)

try:  # astropy's tile decompression raises its own class, not an OSError, for a garbled RICE stream
    from astropy.io.fits.hdu.compressed._compression import CfitsioException as _CfitsioException
except ImportError:  # an astropy that moved it: such files then surface as the error it raises instead
    _CfitsioException = OSError

#: What astropy raises for a file, header or HDU it cannot read (a damaged header card gives KeyError).
FITS_READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    _CfitsioException,
)


def fits_error_text(exc: BaseException) -> str:
    """One line saying what astropy's exception ``exc`` means for the file (`FITS_READ_ERRORS`).

    Parameters
    ----------
    exc : `BaseException`
        The exception astropy raised.

    Returns
    -------
    text : `str`
        Its message on one line, at most 300 characters; a KeyError says which header card is missing.
    """
    if isinstance(exc, KeyError):
        # astropy's only word for a header whose card was overwritten: the name of the key it then lacks.
        return f"header card {exc} missing or damaged"
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text[:300]


@contextlib.contextmanager
def header_warnings_named(path: str | Path) -> Iterator[None]:
    """Read header cards of ``path`` inside: astropy's warnings name the file, as WARNING log messages.

    astropy warns, without the file's name, of a header card it cannot parse (a damaged or non-standard
    one, which it then leaves out): the service's log and the command line say which file it was. Its
    verification notes (`astropy.io.fits.verify.VerifyWarning`: cards it fixes) are left out.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        The file whose headers are read in the block.
    """
    with guarded_warnings(record=True) as caught:
        yield
    name_warnings(path, caught)


def name_warnings(path: str | Path, caught: Iterable[warnings.WarningMessage]) -> None:
    """Log astropy's FITS warnings ``caught`` while reading ``path`` (`header_warnings_named`), once each.

    The record is process-wide: warnings of other code (another thread's) are shown as they would have been.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        The file read.
    caught : iterable of `warnings.WarningMessage`
        What was recorded.
    """
    for warning in caught:
        if issubclass(warning.category, fits.verify.VerifyWarning):
            continue
        if not (issubclass(warning.category, AstropyUserWarning) and _FITS_SOURCE in warning.filename):
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
            continue
        note = (str(path), " ".join(str(warning.message).split()))
        # Once per file and process: the same header is read for its role, then for its pixels.
        if note not in _NAMED_WARNINGS:
            log.warning("%s: %s", *note)
        _NAMED_WARNINGS[note] = None
        _NAMED_WARNINGS.move_to_end(note)
        while len(_NAMED_WARNINGS) > 256:
            _NAMED_WARNINGS.popitem(last=False)


_NAMED_WARNINGS: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
_FITS_SOURCE = str(Path(fits.__file__).parent)


#: File name endings tried, in order, for a raw.
RAW_SUFFIXES = (".fits", ".fits.fz")
_OBSID_RE = re.compile(r"^[A-Z]{2}_[A-Z]_(\d{8})_(\d{6})$")


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the sequencer needs to know about one raw image (from its primary header).

    Attributes
    ----------
    obsid : `str`
        ``OBSID``, e.g. ``AT_O_20240624_000106``.
    path : `str`
        Local path of the raw ('' when not located).
    group_id : `str`
        ``GROUPID`` ('' when absent).
    image_type : `str`
        ``IMGTYPE``, upper case.
    reason : `str`
        ``REASON``.
    focus_z_mm : `float` or None
        ``FOCUSZ``, hexapod focus offset, mm.
    ra_deg, dec_deg : `float` or None
        Pointing, degrees (converted from radians for files older than 2020-01-28).
    rotation_deg : `float` or None
        ``ROTPA``, degrees.
    day_obs : `str`
        ``DAYOBS`` (``YYYYMMDD``).
    seq_num : `int`
        ``SEQNUM`` (0 when absent).
    exposure_start : `float` or None
        Start of the exposure, unix seconds (UTC, as `time.time`), from ``MJD-BEG``, ``DATE-BEG`` or
        ``DATE-OBS`` in the scale of ``TIMESYS`` (TAI when absent, as LATISS writes them); None when the
        header has none or it cannot be read (a warning is logged).
    exposure_time_s : `float` or None
        ``EXPTIME``, seconds.
    camera_angle_deg : `float` or None
        Camera rotation relative to the hexapod frame during the exposure, degrees (instrument.py
        conventions): the mount's (ATMCS elevation - Nasmyth-2, recorded by the CSC at the end of the
        readout) or, without it, header ``CAMANGLE`` (the simulator's key; real raws have none).
    """

    obsid: str
    path: str = ""
    group_id: str = ""
    image_type: str = ""
    reason: str = ""
    focus_z_mm: float | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    rotation_deg: float | None = None
    day_obs: str = ""
    seq_num: int = 0
    exposure_start: float | None = None
    exposure_time_s: float | None = None
    camera_angle_deg: float | None = None

    @classmethod
    def from_header(cls, header: Mapping[str, Any], *, path: str = "") -> ImageInfo:
        """Build from a primary header (an `astropy.io.fits.Header` or any mapping).

        Parameters
        ----------
        header : mapping [`str`, `object`]
            The primary header.
        path : `str`, optional
            Path of the raw, kept in ``path`` and named in error messages.

        Raises
        ------
        RawFormatError
            If ``OBSID`` is missing, a value is malformed (`headers.parse_header`: not a number, out of
            range, not a date or time) or ``EXPTIME`` is 0; the message names the file (else the OBSID),
            the key and the value.
        """
        obsid = str(header.get("OBSID", "") or "").strip()
        if not obsid:
            raise RawFormatError(f"{path or 'header'}: no OBSID in the primary header")
        where = path or obsid
        values = parse_header(header, where=where)
        if values.exposure_time_s == 0.0:
            # A bias-like frame: no starlight, no donuts; refused here rather than as "no donuts found".
            raise RawFormatError(f"{where}: header EXPTIME=0 s: not a wavefront image", value=0.0)
        return cls(
            obsid=obsid,
            path=str(path),
            group_id=str(header.get("GROUPID", "") or "").strip(),
            image_type=str(header.get("IMGTYPE", "") or "").strip().upper(),
            reason=str(header.get("REASON", "") or "").strip(),
            focus_z_mm=values.focus_z_mm,
            ra_deg=values.ra_deg,
            dec_deg=values.dec_deg,
            rotation_deg=values.rotation_deg,
            day_obs=values.day_obs,
            seq_num=values.seq_num or 0,
            exposure_start=values.exposure_start,
            exposure_time_s=values.exposure_time_s,
            camera_angle_deg=values.camera_angle_deg,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (inverse of `from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageInfo:
        """Build from `to_dict` output; unknown keys are ignored.

        Parameters
        ----------
        data : mapping [`str`, `object`]
            Output of `to_dict`.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def obsid_disagreement(self) -> str | None:
        """What the header's ``DAYOBS`` and ``SEQNUM`` say against its OBSID (``XX_X_<DAYOBS>_<SEQNUM:06d>``).

        Returns
        -------
        problem : `str` or `None`
            The disagreeing values, or None when they agree, are absent (SEQNUM 0) or the OBSID has
            another form.
        """
        match = _OBSID_RE.match(self.obsid)
        if match is None:
            return None
        day_obs, seq_num = match.group(1), int(match.group(2))
        problems = []
        if self.day_obs and self.day_obs != day_obs:
            problems.append(f"DAYOBS={self.day_obs}")
        if self.seq_num and self.seq_num != seq_num:
            problems.append(f"SEQNUM={self.seq_num}")
        if not problems:
            return None
        return (
            f"OBSID {self.obsid} disagrees with the header's {' and '.join(problems)} "
            f"(an OBSID is XX_X_<DAYOBS>_<SEQNUM:06d>)"
        )

    @property
    def pointing(self) -> tuple[float, float] | None:
        """``(ra_deg, dec_deg)`` or None when either is unknown."""
        if self.ra_deg is None or self.dec_deg is None:
            return None
        return (self.ra_deg, self.dec_deg)


def day_obs_from_obsid(obsid: str) -> str:
    """Return the ``DAYOBS`` (``YYYYMMDD``) of an OBSID like ``AT_O_20240624_000106``.

    Parameters
    ----------
    obsid : `str`
        The OBSID.

    Returns
    -------
    day_obs : `str`
        Its date part, ``YYYYMMDD``.

    Raises
    ------
    InputError
        If ``obsid`` does not have the form ``XX_X_YYYYMMDD_NNNNNN``.
    """
    match = _OBSID_RE.match(obsid.strip())
    if match is None:
        raise InputError(
            f"obsid={obsid!r} is not of the form AT_O_YYYYMMDD_NNNNNN",
            value=obsid,
            allowed="AT_O_YYYYMMDD_NNNNNN",
        )
    return match.group(1)


# A group id is usually an ISO time (2024-06-25T02:00:00.000), whose colons are not separators.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?")


def _split_values(values: str) -> list[str]:
    """Split colon-separated values, keeping ISO times whole."""
    times = _ISO_TIME.findall(values)
    masked = _ISO_TIME.sub("\0", values)
    items = masked.split(":")
    restored = iter(times)
    return [item.replace("\0", next(restored)) if "\0" in item else item for item in items]


def parse_additional(keys: str, values: str) -> dict[str, str]:
    """Turn ``endReadout``'s ``additionalKeys``/``additionalValues`` into a dict with lower-case keys.

    Values are colon-separated, except that an ISO time (a group id such as ``2024-06-25T02:00:00.000``)
    stays one value.

    Parameters
    ----------
    keys : `str`
        ``additionalKeys``: colon-separated header key names.
    values : `str`
        ``additionalValues``: their values, colon-separated in the same order.

    Returns
    -------
    additional : `dict` of `str` to `str`
        Values by lower-case key (empty for two empty strings).

    Raises
    ------
    InputError
        If the two strings do not hold the same number of colon-separated items.
    """
    k = [item.strip() for item in keys.split(":")] if keys.strip() else []
    v = [item.strip() for item in _split_values(values)] if values.strip() else []
    if len(k) != len(v):
        raise InputError(
            f"additionalKeys={keys!r} has {len(k)} items but additionalValues={values!r} has {len(v)}",
            value=(keys, values),
        )
    return {key.lower(): value for key, value in zip(k, v, strict=True)}


@dataclasses.dataclass(frozen=True)
class RawLocator:
    """Find raws under a data root (layout in the module docstring).

    Parameters
    ----------
    root : `str`
        Local directory or ``file://`` URI.

    Raises
    ------
    ConfigurationError
        If ``root`` is a URI of another scheme.
    """

    root: str

    def __post_init__(self) -> None:
        _local_path(self.root)  # refuse other URI schemes at construction

    @property
    def root_path(self) -> Path:
        """The data root as a local path."""
        return _local_path(self.root)

    def check_readable(self) -> None:
        """Raise `ConfigurationError` unless ``<root>/raw`` is a readable directory."""
        raw = self.root_path / "raw"
        if not raw.is_dir() or not os.access(raw, os.R_OK | os.X_OK):
            raise ConfigurationError(
                f"data_root={self.root!r}: {raw} is not a readable directory (expected <data_root>/raw/"
                "<DAYOBS>/<OBSID>.fits)",
                value=str(raw),
            )

    def candidates(self, obsid: str, *, day_obs: str | None = None) -> tuple[Path, ...]:
        """Paths where raw ``obsid`` may be, in the order they are tried.

        Parameters
        ----------
        obsid : `str`
            The OBSID.
        day_obs : `str`, optional
            ``YYYYMMDD`` folder under ``raw/``; default the date in the OBSID.
        """
        day = day_obs or day_obs_from_obsid(obsid)
        folder = self.root_path / "raw" / day
        return tuple(folder / f"{obsid}{suffix}" for suffix in RAW_SUFFIXES)

    def find(self, obsid: str, *, day_obs: str | None = None) -> Path | None:
        """Return the path of raw ``obsid``, or None if it is not (yet) there.

        Something else than a file where the raw should be (a directory) is returned when there is no file,
        so that reading it says what is there rather than the raw being waited for in vain.

        Parameters
        ----------
        obsid : `str`
            The OBSID.
        day_obs : `str`, optional
            ``YYYYMMDD`` folder under ``raw/``; default the date in the OBSID.
        """
        candidates = self.candidates(obsid, day_obs=day_obs)
        for path in candidates:
            if path.is_file():
                return path
        return next((path for path in candidates if path.exists()), None)


def _local_path(root: str) -> Path:
    parsed = urllib.parse.urlparse(root)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(root).expanduser()
    raise ConfigurationError(
        f"data_root={root!r}: only local paths and file:// URIs are supported",
        value=root,
        allowed="a path or file:///path",
    )


def refuse_non_file(path: str | Path) -> None:
    """Raise `RawFormatError` naming ``path`` unless it is a file: missing, or what it is instead.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        Where a FITS file should be.

    Raises
    ------
    RawFormatError
        ``no such file``, or ``is a directory, not a FITS file`` (or another kind of entry).
    """
    path = Path(path)
    if path.is_file():
        return
    if path.is_dir():
        raise RawFormatError(f"{path}: is a directory, not a FITS file", value=str(path))
    if path.exists():
        raise RawFormatError(f"{path}: not a regular file", value=str(path))
    raise RawFormatError(f"{path}: no such file", value=str(path))


def read_image_info(path: str | Path) -> ImageInfo:
    """Read the primary header of a raw and return its `ImageInfo`.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        Raw LATISS file.

    Returns
    -------
    info : `ImageInfo`
        What the cadence needs from the header (OBSID, role keys, pointing, times...).

    Raises
    ------
    RawFormatError
        If the file is missing (or a directory), not FITS, or its header lacks ``OBSID`` or has a malformed
        value (`ImageInfo.from_header`).
    """
    path = Path(path)
    refuse_non_file(path)
    try:
        with header_warnings_named(path):
            header = fits.getheader(path, 0)
    except FileNotFoundError as exc:
        raise RawFormatError(f"{path}: no such file", value=str(path)) from exc
    except FITS_READ_ERRORS as exc:
        raise RawFormatError(
            f"{path}: not a readable FITS file ({fits_error_text(exc)})", value=str(path)
        ) from exc
    return ImageInfo.from_header(header, path=str(path))
