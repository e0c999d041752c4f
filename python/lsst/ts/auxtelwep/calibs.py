"""Calibration products for ISR: load and check them, or build them from raw bias, dark and flat frames.

A calibration directory holds (assembled 4000 x 4072 frame, ``[row, col]``, in the primary HDU or the first
image HDU):

``bias.fits``
    What overscan correction leaves of a zero-second exposure; BUNIT ``adu`` or ``electron``.
``dark.fits``
    Dark signal per second of dark time: BUNIT ``adu/s`` or ``electron/s``, or ``adu`` / ``electron`` for a
    frame of DARKTIME seconds (header key; the frame is divided by it when present).
``flat.fits``
    Pixel response, unitless, normalised to mean 1. Built from adu frames (as `build_calibrations` does), it
    carries the amplifiers' gain ratios, so dividing an adu image by it also evens out the gains.
``amps.ecsv``
    Astropy ECSV table: ``amp`` (C00..C17), ``gain`` (e-/adu), ``read_noise`` (e-), ``saturation`` (adu).
``defects.ecsv`` (optional)
    Boxes of bad pixels: ``x0``, ``y0``, ``width``, ``height`` in assembled pixels (x = column, y = row).
``fringe.fits`` (optional)
    Fringe pattern for the filters in ``IsrConfig.fringeFilters``; its amplitude is fitted per exposure.

`load_calibrations` reads what the enabled ISR steps need and converts bias and dark into the ISR's output
unit (adu, or electrons with ``doApplyGains``), so that `lsst.ts.auxtelwep.isr.run_isr` only subtracts.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from numpy.typing import NDArray

from .calibs_build import build_calibrations
from .errors import CalibrationError
from .exposure import AMP_NAMES, amp_geometry
from .guarded_warnings import guarded_warnings
from .instrument import DETECTOR_SHAPE
from .reprs import summary_repr

if TYPE_CHECKING:
    from .isr import IsrConfig

__all__ = [
    "AmpParameters",
    "Calibrations",
    "build_calibrations",
    "load_calibrations",
    "per_amp_image",
    "write_image",
]

_log = logging.getLogger(__name__)
_GEOMETRY = amp_geometry()
_UNITS = {"adu": "adu", "count": "adu", "counts": "adu", "electron": "electron", "electrons": "electron"}
_UNITS.update({"e-": "electron", "ct": "adu"})


@dataclasses.dataclass(frozen=True)
class AmpParameters:
    """Per-amplifier values from ``amps.ecsv``.

    Attributes
    ----------
    gain : mapping of `str` to `float`
        e-/adu, by amplifier name ``C00``..``C17``.
    read_noise : mapping of `str` to `float`
        e- rms.
    saturation : mapping of `str` to `float`
        adu (raw value, bias included).
    """

    gain: Mapping[str, float]
    read_noise: Mapping[str, float]
    saturation: Mapping[str, float]


@dataclasses.dataclass(frozen=True, eq=False)
class Calibrations:
    """Calibration products ready for ISR (arrays read-only, assembled frame ``[row, col]``).

    Attributes
    ----------
    directory : `str`
        Where they were read from (for messages).
    units : `str`
        ``"adu"`` or ``"electron"``: the unit of ``bias`` and of ``dark`` (per second), which is the ISR
        output unit they were loaded for.
    bias : `numpy.ndarray` or `None`
        Bias, shape (4000, 4072), ``units``.
    dark : `numpy.ndarray` or `None`
        Dark signal per second of dark time, shape (4000, 4072), ``units`` / s.
    flat : `numpy.ndarray` or `None`
        Flat, shape (4000, 4072), unitless, mean 1.
    fringe : `numpy.ndarray` or `None`
        Fringe pattern, shape (4000, 4072), arbitrary scale.
    amps : `AmpParameters` or `None`
        Gains, read noise and saturation.
    defects : `tuple` of (x0, y0, width, height)
        Bad-pixel boxes, assembled pixels.
    """

    directory: str
    units: str = "adu"
    bias: NDArray[np.float32] | None = None
    dark: NDArray[np.float32] | None = None
    flat: NDArray[np.float32] | None = None
    fringe: NDArray[np.float32] | None = None
    amps: AmpParameters | None = None
    defects: tuple[tuple[int, int, int, int], ...] = ()
    # Bias and dark pixels that were NaN or inf (set to 0 so the ISR's arithmetic stays finite).
    _nonfinite: NDArray[np.bool_] | None = dataclasses.field(default=None, init=False, repr=False)

    def __repr__(self) -> str:
        """A one-line summary: arrays as their shape and dtype (`reprs.summary_repr`)."""
        return summary_repr(self)

    def __post_init__(self) -> None:
        if self.units not in ("adu", "electron"):
            raise CalibrationError(f"Calibrations.units is {self.units!r}, expected 'adu' or 'electron'")
        for name in ("bias", "dark", "flat", "fringe"):
            array = getattr(self, name)
            if array is None:
                continue
            if array.shape != DETECTOR_SHAPE:
                raise CalibrationError(
                    f"{self.directory}: {name} has shape {array.shape}, expected {DETECTOR_SHAPE}",
                    value=array.shape,
                    allowed=DETECTOR_SHAPE,
                )
            finite = np.isfinite(array) if name in ("bias", "dark") else None
            if finite is not None and not finite.all():
                nonfinite = ~finite if self._nonfinite is None else self._nonfinite | ~finite
                object.__setattr__(self, "_nonfinite", nonfinite)
                array = np.where(finite, array, 0.0)
            if not _frozen_float32(array):
                array = np.array(array, dtype=np.float32, copy=True)
                array.setflags(write=False)
                object.__setattr__(self, name, array)

    @functools.cached_property
    def invalid(self) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """``(rows, cols)`` of pixels the calibrations cannot correct: a bias or dark that was not finite, a
        flat that is not finite and > 0 (the ISR masks them BAD)."""
        bad = np.zeros(DETECTOR_SHAPE, dtype=bool) if self._nonfinite is None else self._nonfinite.copy()
        if self.flat is not None:
            bad |= ~((self.flat > 0) & (self.flat < np.inf))
        return np.nonzero(bad)


def _frozen_float32(array: NDArray) -> bool:
    """Whether ``array`` can be kept without a copy: read-only float32 that owns its memory.

    `load_calibrations` hands over arrays made that way (copying 65 MB products is a tenth of a second
    each in a fresh process); any other array is copied so that the caller cannot change it later.
    """
    return array.dtype == np.float32 and array.flags.owndata and not array.flags.writeable


def per_amp_image(values: Mapping[str, float], *, dtype: type = np.float32) -> NDArray:
    """An assembled (4000, 4072) image holding each amplifier's value over its imaging section.

    Parameters
    ----------
    values : mapping of `str` to `float`
        A value per amplifier name (``C00``..``C17``), e.g. its gain.
    dtype : `type`
        Data type of the image.

    Returns
    -------
    image : `numpy.ndarray`, shape (4000, 4072)
        The image.
    """
    image = np.empty(DETECTOR_SHAPE, dtype=dtype)
    for geom in _GEOMETRY:
        image[geom.rows, geom.cols] = values[geom.name]
    return image


def _normalise_unit(unit: str) -> str:
    return unit.strip().lower().replace(" ", "")


#: Largest fraction of a calibration image's pixels that may be unusable (non-finite; a flat's also <= 0).
_MAX_UNUSABLE_FRACTION = 0.01


def _read_image(path: Path, product: str) -> tuple[NDArray[np.float32], fits.Header]:
    try:
        # Header verification notes and astropy's "may have been truncated": what matters is whether the
        # image reads, and if not the error below names the file.
        with guarded_warnings(ignore=(AstropyUserWarning,)), fits.open(path, memmap=True) as hdul:
            hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) == 2), None)
            if hdu is None:
                raise CalibrationError(f"{product} {path}: no 2-D image HDU", value=str(path))
            # One copy, from the mapped file to native float32 (not a read and then a conversion).
            data = np.array(hdu.data, dtype=np.float32)
            header = hdu.header.copy()
            if hdu is not hdul[0]:
                for key, value in hdul[0].header.items():
                    if key not in header and key not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND"):
                        header[key] = value
    except CalibrationError:
        raise
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise CalibrationError(
            f"{product} {path}: unreadable or truncated FITS ({exc})", value=str(path)
        ) from exc
    if data.shape != DETECTOR_SHAPE:
        raise CalibrationError(
            f"{product} {path}: image has shape {data.shape}, expected {DETECTOR_SHAPE} (assembled frame)",
            value=data.shape,
            allowed=DETECTOR_SHAPE,
        )
    instrument = str(header.get("INSTRUME", "") or "").strip()
    if instrument and instrument.upper() != "LATISS":
        raise CalibrationError(
            f"{product} {path}: made for INSTRUME={instrument!r}, not LATISS",
            value=instrument,
            allowed="LATISS",
        )
    # A product with many unusable pixels is a failed one (an all-NaN bias was applied and left nothing).
    usable = np.isfinite(data) if product != "flat" else np.isfinite(data) & (data > 0)
    unusable = 1.0 - float(np.count_nonzero(usable)) / data.size
    if unusable > _MAX_UNUSABLE_FRACTION:
        what = "NaN or inf" if product != "flat" else "NaN, inf or not positive"
        raise CalibrationError(
            f"{product} {path}: {100 * unusable:.1f} % of its pixels are {what} (at most "
            f"{100 * _MAX_UNUSABLE_FRACTION:g} % allowed)",
            value=unusable,
        )
    return data, header


def _require(directory: Path, filename: str, step: str) -> Path:
    path = directory / filename
    if not path.is_file():
        raise CalibrationError(
            f"ISR step {step} needs {path}, which does not exist (add it, or turn {step} off)",
            value=str(path),
        )
    return path


def _image_unit(header: fits.Header, path: Path, product: str, allowed: Sequence[str]) -> str:
    raw = header.get("BUNIT")
    if raw is None:
        _log.warning("%s %s has no BUNIT; assuming adu", product, path)
        return "adu"
    unit = _normalise_unit(str(raw))
    if unit not in allowed:
        raise CalibrationError(
            f"{product} {path}: BUNIT {raw!r} not understood, expected one of {sorted(set(allowed))}",
            value=raw,
            allowed=sorted(set(allowed)),
        )
    return unit


def _read_table(path: Path, what: str, needed: tuple[str, ...]) -> Table:
    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception as exc:  # astropy raises many types for a bad ECSV
        raise CalibrationError(f"{what} {path}: not a readable ECSV table ({exc})", value=str(path)) from exc
    missing = [c for c in needed if c not in table.colnames]
    if missing:
        raise CalibrationError(
            f"{what} {path}: columns {missing} missing (has {table.colnames})", value=missing, allowed=needed
        )
    return table


#: Smallest value (inclusive) of each amps-table column, and how to say it. A gain must be > 0 (the
#: smallest float above 0 stands for it); a saturation level below 1000 adu would mask sky as saturated:
#: LATISS saturates near 120000 adu (FACTS.md section 3).
_AMP_LIMITS = {
    "gain": (np.nextafter(0.0, 1.0), "finite and > 0 e-/adu"),
    "read_noise": (0.0, "finite and >= 0 e-"),
    "saturation": (1000.0, "finite and >= 1000 adu (LATISS saturates near 120000 adu)"),
}


def _read_amps(path: Path) -> AmpParameters:
    needed = ("amp", "gain", "read_noise", "saturation")
    table = _read_table(path, "amps table", needed)
    expected_units = {"gain": "electron / adu", "read_noise": "electron", "saturation": "adu"}
    for column, unit in expected_units.items():
        have = table[column].unit
        if have is not None and str(have).replace(" ", "") != unit.replace(" ", ""):
            raise CalibrationError(
                f"amps table {path}: column {column} is in {have}, expected {unit}",
                value=str(have),
                allowed=unit,
            )
    names = [str(n).strip() for n in table["amp"]]
    absent = sorted(set(AMP_NAMES) - set(names))
    if absent:
        raise CalibrationError(
            f"amps table {path}: amplifiers {absent} missing", value=absent, allowed=AMP_NAMES
        )
    rows = {name: i for i, name in enumerate(names)}
    values: dict[str, dict[str, float]] = {}
    for column, (low, allowed) in _AMP_LIMITS.items():
        try:
            values[column] = {n: float(table[column][rows[n]]) for n in AMP_NAMES}
        except (TypeError, ValueError) as exc:
            raise CalibrationError(
                f"amps table {path}: column {column} is not numeric ({exc})", allowed=allowed
            ) from exc
        bad = {n: v for n, v in values[column].items() if not (np.isfinite(v) and v >= low)}
        if bad:
            raise CalibrationError(
                f"amps table {path}: {column} must be {allowed}, got {bad}", value=bad, allowed=allowed
            )
    return AmpParameters(**{c: MappingProxyType(v) for c, v in values.items()})


def _read_defects(path: Path) -> tuple[tuple[int, int, int, int], ...]:
    needed = ("x0", "y0", "width", "height")
    table = _read_table(path, "defects", needed)
    boxes = tuple(tuple(int(row[c]) for c in needed) for row in table)
    rows, cols = DETECTOR_SHAPE
    outside = [
        b
        for b in boxes
        if b[0] < 0 or b[1] < 0 or b[2] < 1 or b[3] < 1 or b[0] + b[2] > cols or b[1] + b[3] > rows
    ]
    if outside:
        raise CalibrationError(
            f"defects {path}: boxes {outside[:5]} fall outside the {cols} x {rows} frame", value=outside
        )
    return boxes  # type: ignore[return-value]


def _to_units(
    data: NDArray[np.float32], unit: str, target: str, amps: AmpParameters | None, path: Path, step: str
) -> NDArray[np.float32]:
    if unit == target:
        return data
    if amps is None:
        raise CalibrationError(
            f"ISR step {step}: {path} is in {unit} but the output is in {target}; converting needs the gains "
            f"in {path.parent / 'amps.ecsv'}, which does not exist",
            value=str(path),
        )
    gain = per_amp_image(amps.gain)
    return np.multiply(data, gain, out=data) if target == "electron" else np.divide(data, gain, out=data)


def load_calibrations(directory: str | Path, config: IsrConfig) -> Calibrations:
    """Read the calibration products the enabled steps of ``config`` need.

    Parameters
    ----------
    directory : `str` or `pathlib.Path`
        Calibration directory (format in the module docstring).
    config : `lsst.ts.auxtelwep.isr.IsrConfig`
        Which steps run; bias and dark are converted to its output unit.

    Returns
    -------
    calibs : `Calibrations`

    Raises
    ------
    CalibrationError
        If a product an enabled step needs is missing (the message names the step and the file), or a
        product has the wrong shape or unit, or cannot be read.
    """
    directory = Path(directory)
    if not directory.is_dir():
        problem = "is a file, not a directory" if directory.exists() else "does not exist"
        raise CalibrationError(f"calibration directory {directory} {problem}", value=str(directory))
    target = "electron" if config.doApplyGains else "adu"

    amps = None
    amps_path = directory / "amps.ecsv"
    if config.doApplyGains or config.doVariance:
        step = "doApplyGains" if config.doApplyGains else "doVariance"
        amps = _read_amps(_require(directory, "amps.ecsv", step))
    elif amps_path.is_file():
        amps = _read_amps(amps_path)

    bias = dark = flat = fringe = None
    if config.doBias:
        path = _require(directory, "bias.fits", "doBias")
        data, header = _read_image(path, "bias")
        unit = _UNITS[_image_unit(header, path, "bias", tuple(_UNITS))]
        bias = _to_units(data, unit, target, amps, path, "doBias")
    if config.doDark:
        path = _require(directory, "dark.fits", "doDark")
        data, header = _read_image(path, "dark")
        allowed = tuple(_UNITS) + tuple(f"{u}/s" for u in _UNITS)
        unit = _image_unit(header, path, "dark", allowed)
        per_second = unit.endswith("/s")
        darktime = header.get("DARKTIME")
        if darktime is not None:
            try:
                darktime = float(darktime)
            except (TypeError, ValueError) as exc:
                raise CalibrationError(
                    f"dark {path}: header DARKTIME={darktime!r} is not a number of seconds", value=darktime
                ) from exc
            if not darktime > 0 or (per_second and darktime != 1.0):
                raise CalibrationError(
                    f"dark {path}: DARKTIME {darktime} s does not fit BUNIT {header['BUNIT']!r} (a rate "
                    "needs no DARKTIME or 1; a frame needs DARKTIME > 0)",
                    value=darktime,
                )
            data /= np.float32(darktime)
        dark = _to_units(data, _UNITS[unit.removesuffix("/s")], target, amps, path, "doDark")
    if config.doFlat:
        path = _require(directory, "flat.fits", "doFlat")
        data, header = _read_image(path, "flat")
        if "BUNIT" in header:  # a flat is unitless: an adu or electron flat is refused
            _image_unit(header, path, "flat", ("", "1", "dimensionless", "none"))
        good = np.isfinite(data) & (data > 0)
        mean = float(data[good].mean(dtype=np.float64)) if good.any() else float("nan")
        if not abs(mean - 1.0) < 0.05:
            raise CalibrationError(
                f"flat {path}: mean of valid pixels is {mean:.4g}, expected a flat normalised to mean 1",
                value=mean,
                allowed=1.0,
            )
        flat = data
    if config.doFringe and config.fringeFilters:
        path = _require(directory, "fringe.fits", "doFringe")
        fringe, _ = _read_image(path, "fringe")
    defects: tuple[tuple[int, int, int, int], ...] = ()
    if config.doDefect:
        defects = _read_defects(_require(directory, "defects.ecsv", "doDefect"))
    for array in (bias, dark, flat, fringe):
        if array is not None:
            array.setflags(write=False)
    return Calibrations(
        directory=str(directory),
        units=target,
        bias=bias,
        dark=dark,
        flat=flat,
        fringe=fringe,
        amps=amps,
        defects=defects,
    )


def write_image(path: str | Path, data: NDArray, unit: str, **keys: object) -> None:
    """Write a calibration image (primary HDU, float32) with BUNIT ``unit`` and extra header ``keys``.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        File to write (replaced if it exists).
    data : `numpy.ndarray`
        The image, written as float32.
    unit : `str`
        ``BUNIT`` value (e.g. ``"adu"``, ``"adu/s"``).
    **keys
        Further header keys and values (e.g. ``DARKTIME``).
    """
    hdu = fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32))
    hdu.header["BUNIT"] = unit
    for key, value in keys.items():
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True)
