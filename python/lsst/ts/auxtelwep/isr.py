"""Instrument signature removal: a LATISS raw and its calibration products in, an `Exposure` out.

The switches carry ip_isr's names and meanings (legacy ``IsrTask``, the seed's configuration). The steps, in
the order they run (FACTS.md section 4):

1. saturation mask, from the raw values before anything else (``doSaturation``; SAT, grown by
   ``growSaturationFootprintSize`` pixels when ``doWidenSaturationTrails``);
2. serial overscan (``doOverscan``): per readout row, the median of the serial overscan columns after
   skipping ``overscanSkip`` leading and trailing columns and rejecting values beyond
   ``overscanNumSigmaClip`` x 0.74 x IQR of the row's median; then the parallel overscan
   (``doParallelOverscan``): the same per column over the parallel overscan rows;
3. gains (``doApplyGains``): each amplifier times its gain, output in electrons;
4. assembly with the cameraGeom geometry (`lsst.ts.auxtelwep.exposure.amp_geometry`);
5. bias (``doBias``), dark scaled by the raw's DARKTIME (``doDark``), defect mask (``doDefect``, BAD);
6. variance (``doVariance``): image/gain + (read noise/gain)^2 in adu, image + read noise^2 in electrons;
7. flat (``doFlat``): divide by the normalised flat (variance by its square); flat pixels <= 0 are BAD;
8. fringe (``doFringe``, only for filters in ``fringeFilters``): fitted amplitude of the fringe frame;
9. NaN masking (``doNanMasking``, NO_DATA); interpolation (``doInterpolate``) along rows over the planes
   of ``maskListToInterpolate`` and non-finite pixels, flagged INTRP.

Output unit: adu by default (the flat, built from adu frames, also evens out the gains), electrons with
``doApplyGains`` (which excludes ``doFlat``, as in ip_isr). Steps that need models this package does not
have (crosstalk, linearity, brighter-fatter, CTI...) are refused with a `ConfigurationError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.ndimage import binary_dilation

from .calibs import Calibrations
from .errors import CalibrationError, ConfigurationError, RawFormatError, as_config, check_type
from .exposure import (
    DATA_COLS,
    DATA_ROWS,
    PARALLEL_OVERSCAN_ROWS,
    Exposure,
    MaskBit,
    RawImage,
    amp_geometry,
    wcs_from_header,
)
from .instrument import DETECTOR_SHAPE

__all__ = ["UNSUPPORTED_FLAGS", "IsrConfig", "run_isr"]

_log = logging.getLogger(__name__)
_GEOMETRY = amp_geometry()
NOMINAL_SATURATION_ADU = 120000.0

UNSUPPORTED_FLAGS = (
    "doBrighterFatter",
    "doCrosstalk",
    "doLinearize",
    "doDeferredCharge",
    "doStrayLight",
    "doIlluminationCorrection",
    "doVignette",
    "doAmpOffset",
)
"""ip_isr switches accepted by name but refused when true: no model or product for them here yet."""


def _refusals(config: IsrConfig) -> list[str]:
    problems = [
        f"{flag}=True is not supported yet (no model or calibration product for it); set it false"
        for flag in UNSUPPORTED_FLAGS
        if getattr(config, flag)
    ]
    if config.doFlat and config.doApplyGains:
        problems.append(
            "doFlat and doApplyGains are both true: a flat built from adu frames already carries the gain "
            "ratios (ip_isr refuses this too); use doFlat alone (output in adu) or doApplyGains with "
            "doFlat false (output in electrons)"
        )
    if not config.doAssembleCcd:
        problems.append("doAssembleCcd=False is not supported: the output is always the assembled frame")
    needs_overscan = config.doBias or config.doDark or config.doFlat
    if needs_overscan and not config.doOverscan:
        problems.append(
            "doOverscan=False with doBias/doDark/doFlat: the calibrations assume overscan-corrected data"
        )
    return problems


class IsrConfig(BaseModel):
    """ISR switches (ip_isr names) and options; defaults are the seed's settings.

    Constructing one with contradictory or unsupported settings, or an unknown key, raises
    `ConfigurationError` (use `from_mapping` / `from_yaml` for files).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    doOverscan: bool = Field(True, description="Subtract the serial overscan, per row.")
    doParallelOverscan: bool = Field(True, description="Then subtract the parallel overscan, per column.")
    overscanFitType: Literal["MEDIAN_PER_ROW", "MEAN_PER_ROW"] = Field(
        "MEDIAN_PER_ROW", description="Statistic of the clipped overscan values per row (column)."
    )
    overscanSkip: int = Field(
        3, ge=0, le=20, description="Leading and trailing overscan columns (rows) skipped."
    )
    overscanNumSigmaClip: float = Field(
        3.0, gt=0, description="Clip beyond this many 0.74 x IQR of the median."
    )
    parallelOverscanMaskThreshold: float = Field(
        1000.0,
        gt=0,
        description="adu; a column whose parallel overscan is this far above the others (bleed) "
        "gets the median correction instead.",
    )
    doSaturation: bool = Field(True, description="Mask raw pixels at or above saturation as SAT.")
    saturation: float | None = Field(
        None, gt=0, description="adu; None: amps.ecsv per amplifier, or 120000 adu without an amps table."
    )
    doWidenSaturationTrails: bool = Field(True, description="Grow the SAT mask.")
    growSaturationFootprintSize: int = Field(1, ge=0, le=10, description="Pixels the SAT mask grows by.")
    doAssembleCcd: bool = Field(True, description="Assemble the amplifiers (always; false is refused).")
    doBias: bool = Field(True, description="Subtract bias.fits.")
    doDark: bool = Field(True, description="Subtract dark.fits scaled by the raw's DARKTIME.")
    doFlat: bool = Field(True, description="Divide by flat.fits.")
    doFringe: bool = Field(True, description="Subtract a fitted fringe frame for filters in fringeFilters.")
    fringeFilters: tuple[str, ...] = Field((), description="FILTER values that need fringe correction.")
    doApplyGains: bool = Field(
        False, description="Multiply each amplifier by its gain (output in electrons)."
    )
    doDefect: bool = Field(False, description="Mask defects.ecsv boxes as BAD.")
    doNanMasking: bool = Field(False, description="Mask non-finite pixels as NO_DATA.")
    doInterpolate: bool = Field(True, description="Interpolate over maskListToInterpolate and NaN pixels.")
    maskListToInterpolate: tuple[Literal["SAT", "BAD", "NO_DATA", "CR"], ...] = ("SAT", "BAD", "NO_DATA")
    doVariance: bool = Field(False, description="Compute the variance plane.")
    doBrighterFatter: bool = False
    doCrosstalk: bool = False
    doLinearize: bool = False
    doDeferredCharge: bool = False
    doStrayLight: bool = False
    doIlluminationCorrection: bool = False
    doVignette: bool = False
    doAmpOffset: bool = False

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid ISR configuration: {_describe(exc)}", value=data) from exc

    @model_validator(mode="after")
    def _supported(self) -> IsrConfig:
        # Runs in nested models too (a pipeline configuration), where it surfaces as a ValidationError.
        problems = _refusals(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def output_units(self) -> str:
        """``"electron"`` with ``doApplyGains``, else ``"adu"``."""
        return "electron" if self.doApplyGains else "adu"

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "configuration") -> IsrConfig:
        """Build from a mapping (e.g. parsed YAML); ``source`` names it in error messages.

        Parameters
        ----------
        data : `dict` or None
            ISR options by name; None for the defaults.
        source : `str`, optional
            Where the options come from, for messages.

        Raises
        ------
        ConfigurationError
            If ``data`` is not a mapping or an option is unknown or invalid.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"{source}: expected a mapping of ISR options, got {type(data).__name__}"
            )
        try:
            return cls(**data)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}", value=data) from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> IsrConfig:
        """Read a YAML file of ISR options (top level, or under an ``isr`` key).

        Parameters
        ----------
        path : `str` or `pathlib.Path`
            The YAML file.

        Raises
        ------
        ConfigurationError
            If the file cannot be read or parsed, or its options are invalid.
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(
                f"{path}: cannot read the ISR configuration ({exc})", value=str(path)
            ) from exc
        if isinstance(data, dict) and set(data) == {"isr"}:
            data = data["isr"]
        return cls.from_mapping(data, source=str(path))


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown option {where!r} (see IsrConfig for the accepted ip_isr names)")
        elif err["type"] == "value_error" and not err["loc"]:
            parts.append(str(err["msg"]).removeprefix("Value error, "))
        else:
            parts.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- overscan


def _sorted_quantile(ordered: NDArray[np.float32], q: float) -> NDArray[np.float32]:
    """Quantile ``q`` along the last axis of sorted values (linear interpolation, as `numpy.percentile`)."""
    position = q * (ordered.shape[-1] - 1)
    below = int(np.floor(position))
    above = min(below + 1, ordered.shape[-1] - 1)
    fraction = np.float32(position - below)
    return ordered[..., below] + fraction * (ordered[..., above] - ordered[..., below])


def _clipped_stat(values: NDArray[np.float32], *, nsigma: float, median: bool) -> NDArray[np.float32]:
    """Clipped median (or mean) along the last axis; outliers beyond ``nsigma`` x 0.74 x IQR of the median.

    One sort serves everything: the quartiles are read off the sorted values, and the values kept form a
    contiguous run of them, whose middle is the clipped median.
    """
    ordered = np.sort(values, axis=-1)
    q25, q50, q75 = (_sorted_quantile(ordered, q) for q in (0.25, 0.5, 0.75))
    limit = np.maximum(nsigma * 0.74 * (q75 - q25), 1e-3)[..., None]
    low = (ordered < q50[..., None] - limit).sum(axis=-1)
    high = (ordered <= q50[..., None] + limit).sum(axis=-1)  # kept: ordered[..., low:high]
    if not median:
        cumulative = np.concatenate(
            [np.zeros((*ordered.shape[:-1], 1)), np.cumsum(ordered, axis=-1, dtype=np.float64)], axis=-1
        )
        total = np.take_along_axis(cumulative, high[..., None], -1) - np.take_along_axis(
            cumulative, low[..., None], -1
        )
        return (total[..., 0] / np.maximum(high - low, 1)).astype(np.float32)
    lo = np.take_along_axis(ordered, ((low + high - 1) // 2)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, ((low + high) // 2)[..., None], axis=-1)[..., 0]
    return ((lo + hi) * np.float32(0.5)).astype(np.float32)


def _overscan(amps: list[NDArray[np.float32]], config: IsrConfig) -> tuple[NDArray, NDArray]:
    """Serial overscan per readout row (16, 2048) and parallel overscan per data column (16, 509), adu.

    The parallel overscan is measured after the serial correction of its rows. The inputs are not changed.
    """
    skip, nsigma = config.overscanSkip, config.overscanNumSigmaClip
    median = config.overscanFitType == "MEDIAN_PER_ROW"
    n_cols = amps[0].shape[1]
    serial_values = np.stack([amp[:, DATA_COLS.stop + skip : n_cols - skip] for amp in amps])
    serial = _clipped_stat(serial_values, nsigma=nsigma, median=median)  # (16, 2048)
    per_col = np.zeros((len(amps), DATA_COLS.stop - DATA_COLS.start), dtype=np.float32)
    if config.doParallelOverscan:
        rows = slice(PARALLEL_OVERSCAN_ROWS.start + skip, PARALLEL_OVERSCAN_ROWS.stop - skip)
        parallel = np.stack([amp[rows, DATA_COLS].T for amp in amps]) - serial[:, None, rows]  # (16, 509, n)
        per_col = _clipped_stat(parallel, nsigma=nsigma, median=median)
        typical = np.median(per_col, axis=1, keepdims=True)
        bleed = per_col - typical > config.parallelOverscanMaskThreshold
        if bleed.any():
            _log.debug("parallel overscan: %d bleeding columns get the amplifier median", int(bleed.sum()))
            per_col = np.where(bleed, typical, per_col)
    return serial, per_col


# ------------------------------------------------------------------------------------------ interpolation


def _interpolate_rows(image: NDArray[np.float32], bad: NDArray[np.bool_]) -> None:
    """Replace ``bad`` pixels in place by linear interpolation between the nearest good pixels of the row."""
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size == 0:
        return
    sub_bad = bad[rows]
    width = image.shape[1]
    index = np.arange(width, dtype=np.int32)
    left = np.maximum.accumulate(np.where(sub_bad, np.int32(-1), index), axis=1)
    right = np.minimum.accumulate(np.where(sub_bad, np.int32(width), index)[:, ::-1], axis=1)[:, ::-1]
    r, c = np.nonzero(sub_bad)
    left, right, row = left[r, c], right[r, c], rows[r]
    has_left, has_right = left >= 0, right < width
    vl = image[row, np.clip(left, 0, width - 1)]
    vr = image[row, np.clip(right, 0, width - 1)]
    weight = (c - left) / np.maximum(right - left, 1)
    value = np.where(has_left & has_right, vl + weight * (vr - vl), np.where(has_left, vl, vr))
    empty = ~(has_left | has_right)
    if empty.any():  # whole rows masked: use the median of the good pixels (a subsample is enough)
        good_values = image[::7, ::7][~bad[::7, ::7]]
        value[empty] = np.median(good_values) if good_values.size else 0.0
    image[row, c] = value


# ------------------------------------------------------------------------------------------------ run


def _check_calibs(calibs: Calibrations | None, config: IsrConfig, raw: RawImage) -> None:
    needs = {
        "doBias": ("bias", "bias.fits"),
        "doDark": ("dark", "dark.fits"),
        "doFlat": ("flat", "flat.fits"),
        "doApplyGains": ("amps", "amps.ecsv"),
        "doVariance": ("amps", "amps.ecsv"),
    }
    fringe_needed = config.doFringe and str(raw.header.get("FILTER", "")).strip() in config.fringeFilters
    if fringe_needed:
        needs["doFringe"] = ("fringe", "fringe.fits")
    for flag, (attr, filename) in needs.items():
        if getattr(config, flag) and (calibs is None or getattr(calibs, attr) is None):
            where = (
                "no calibrations were given" if calibs is None else f"{calibs.directory} has no {filename}"
            )
            raise CalibrationError(
                f"{raw.path}: ISR step {flag} needs {filename}, but {where}", value=filename
            )
    if calibs is not None and (config.doBias or config.doDark) and calibs.units != config.output_units:
        raise ConfigurationError(
            f"calibrations from {calibs.directory} were loaded for {calibs.units} output, but the ISR "
            f"configuration produces {config.output_units} (doApplyGains={config.doApplyGains}); load them "
            "with the same configuration",
            value=calibs.units,
            allowed=config.output_units,
        )


def _reads_a_constant(data: NDArray) -> bool:
    """True if a whole amplifier segment (data and overscans) holds one value: read noise alone makes
    pixels differ, and the overscan differs from exposed pixels.

    A sparse sample of rows is looked at first, so a working amplifier costs next to nothing.
    """
    sample = data[::64]
    first = sample.flat[0]
    return bool(np.all(sample == first) and np.all(data == first))


def _seconds_or_none(value: object) -> float | None:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _darktime(raw: RawImage) -> float:
    problems: list[str] = []
    for key in ("DARKTIME", "EXPTIME"):
        value = raw.header.get(key)
        if value is None:
            problems.append(f"no {key}")
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise RawFormatError(f"{raw.path}: header {key}={value!r} is not a number of seconds") from exc
        if not seconds >= 0:  # NaN too
            problems.append(f"{key}={value!r} is not >= 0")
            continue
        if problems:
            _log.warning("%s: %s; scaling the dark by %s", raw.path, "; ".join(problems), key)
        exptime = _seconds_or_none(raw.header.get("EXPTIME"))
        if key == "DARKTIME" and exptime is not None and seconds < exptime:
            # Some 2020 raws have DARKTIME 0 with EXPTIME 7.5 s: the sensor integrated at least EXPTIME.
            _log.warning(
                "%s: DARKTIME %g s < EXPTIME %g s; scaling the dark by EXPTIME", raw.path, seconds, exptime
            )
            return exptime
        return seconds
    raise RawFormatError(
        f"{raw.path}: header has {' and '.join(problems)}: no time to scale the dark by (doDark)",
        value=raw.path,
    )


def _fit_fringe(image: NDArray[np.float32], fringe: NDArray[np.float32], usable: NDArray[np.bool_]) -> float:
    """Least-squares amplitude of ``fringe`` in ``image`` (plus an offset), with 3-sigma clipping passes."""
    sample = (slice(None, None, 4), slice(None, None, 4))
    y, x = image[sample].ravel().astype(np.float64), fringe[sample].ravel().astype(np.float64)
    keep = usable[sample].ravel() & np.isfinite(y) & np.isfinite(x)
    amplitude = 0.0
    for _ in range(3):
        xs, ys = x[keep], y[keep]
        xc = xs - xs.mean()
        denominator = float(xc @ xc)
        if denominator <= 0:
            return 0.0
        amplitude = float(xc @ (ys - ys.mean())) / denominator
        resid = y - amplitude * x - (ys.mean() - amplitude * xs.mean())
        sigma = 1.4826 * np.median(np.abs(resid[keep]))
        keep &= np.abs(resid) <= 3.0 * max(sigma, 1e-6)
    return amplitude


_CHUNK_ROWS = 128
"""Rows of an amplifier calibrated together. A chunk of 128 x 509 float32 (260 kB) and its calibration rows
stay in the CPU cache through every step; a whole amplifier (4 MB) went through memory once per step, which
took most of the ISR's time."""


def _calibrate_amp(
    data: NDArray[np.float32],
    box: tuple[slice, slice],
    *,
    overscan: tuple[NDArray[np.float32], NDArray[np.float32]] | None,
    saturation: np.float32,
    gain: np.float32,
    read_noise: np.float32,
    darktime: np.float32 | None,
    calibs: Calibrations | None,
    config: IsrConfig,
    out: tuple[NDArray[np.float32], NDArray[np.uint16], NDArray[np.float32] | None],
) -> tuple[int, int] | None:
    """Steps 1-7 of the module docstring for one amplifier, written into its ``box`` of ``out``.

    ``data`` is the amplifier's data section oriented as assembled; ``overscan`` its serial (column vector)
    and parallel (row vector) corrections. Returns the first and last row of ``box`` with a saturated pixel.
    """
    image, mask, variance = out
    rows, cols = box
    saturated: list[int] = []
    scratch = np.empty((_CHUNK_ROWS, data.shape[1]), dtype=np.float32)
    for start in range(0, data.shape[0], _CHUNK_ROWS):
        chunk = slice(start, min(start + _CHUNK_ROWS, data.shape[0]))
        frame = (slice(rows.start + chunk.start, rows.start + chunk.stop), cols)
        raw = data[chunk]
        block = image[frame]
        if config.doSaturation:
            hit = raw >= saturation
            if hit.any():
                mask[frame] = hit.view(np.uint8) * np.uint16(MaskBit.SAT)
                hit_rows = np.flatnonzero(hit.any(axis=1))
                saturated += [chunk.start + int(hit_rows[0]), chunk.start + int(hit_rows[-1])]
        if overscan is not None:
            np.subtract(raw, overscan[0][chunk], out=block)
            block -= overscan[1]
        else:
            block[...] = raw
        if config.doApplyGains:
            block *= gain
        if config.doBias:
            block -= calibs.bias[frame]  # type: ignore[union-attr,index]
        if config.doDark:
            product = scratch[: block.shape[0]]
            np.multiply(calibs.dark[frame], darktime, out=product)  # type: ignore[union-attr,index]
            block -= product
        if variance is not None:
            noise = variance[frame]
            np.maximum(block, np.float32(0.0), out=noise)
            if config.output_units == "adu":
                noise /= gain
                noise += (read_noise / gain) ** 2
            else:
                noise += read_noise**2
        if config.doFlat:
            flat = calibs.flat[frame]  # type: ignore[union-attr,index]
            with np.errstate(divide="ignore", invalid="ignore"):
                block /= flat
                if variance is not None:
                    variance[frame] /= flat * flat
    return (saturated[0], saturated[-1]) if saturated else None


def run_isr(raw: RawImage, calibs: Calibrations | None, config: IsrConfig | Mapping[str, Any]) -> Exposure:
    """Remove the instrument signature from a LATISS raw.

    Parameters
    ----------
    raw : `lsst.ts.auxtelwep.exposure.RawImage`
        As read by `lsst.ts.auxtelwep.exposure.read_raw`: 16 amplifier arrays (2048, n_cols), adu.
    calibs : `lsst.ts.auxtelwep.calibs.Calibrations` or `None`
        Products loaded with `lsst.ts.auxtelwep.calibs.load_calibrations` for the same ``config``; `None`
        only when no enabled step needs one.
    config : `IsrConfig` or mapping
        The switches, or a mapping of them.

    Returns
    -------
    exposure : `lsst.ts.auxtelwep.exposure.Exposure`
        Image (4000, 4072) float32 in ``config.output_units``, mask (`MaskBit`), variance when
        ``doVariance``, the raw's primary header (BUNIT updated), and the header's WCS if it has one.

    Raises
    ------
    InputError
        If ``raw`` is not a `RawImage` (a path, say: read it with `lsst.ts.auxtelwep.exposure.read_raw`).
    ConfigurationError
        Unsupported or contradictory settings, or calibrations loaded for another output unit.
    CalibrationError
        An enabled step lacks its product.
    RawFormatError
        Amplifiers missing or of inconsistent shapes, or no DARKTIME for ``doDark``.
    """
    check_type("raw", raw, RawImage, hint="read the file first with exposure.read_raw(path)")
    config = as_config("config", config, IsrConfig)
    problems = _refusals(config)  # also catches configs built with model_construct
    if problems:
        raise ConfigurationError("invalid ISR configuration: " + "; ".join(problems))
    _check_calibs(calibs, config, raw)
    missing = [g.name for g in _GEOMETRY if g.name not in raw.amps]
    if missing:
        raise RawFormatError(f"{raw.path}: amplifiers {missing} missing", value=missing)
    shapes = {raw.amps[g.name].shape for g in _GEOMETRY}
    if len(shapes) != 1 or next(iter(shapes))[0] != 2048 or next(iter(shapes))[1] < DATA_COLS.stop + 8:
        raise RawFormatError(
            f"{raw.path}: amplifier arrays have shapes {sorted(shapes)}, expected one (2048, 576)"
        )
    _log.debug("ISR of %s", raw.path)

    raw_amps = [np.asarray(raw.amps[g.name], dtype=np.float32) for g in _GEOMETRY]
    amps = calibs.amps if calibs is not None else None
    if amps is None and (config.doApplyGains or config.doVariance):  # _check_calibs guarantees it; for typing
        raise CalibrationError(f"{raw.path}: doApplyGains/doVariance need amps.ecsv")
    if config.saturation is not None or amps is None:
        levels = {g.name: config.saturation or NOMINAL_SATURATION_ADU for g in _GEOMETRY}
    else:
        levels = dict(amps.saturation)
    serial, per_col = _overscan(raw_amps, config) if config.doOverscan else (None, None)
    darktime = np.float32(_darktime(raw)) if config.doDark else None
    image = np.empty(DETECTOR_SHAPE, dtype=np.float32)
    mask = np.zeros(DETECTOR_SHAPE, dtype=np.uint16)
    variance = np.empty(DETECTOR_SHAPE, dtype=np.float32) if config.doVariance else None

    dead: list[tuple[slice, slice]] = []
    saturated_rows: list[int] = []  # assembled rows of the first and last saturated pixel, per amplifier
    for index, geom in enumerate(_GEOMETRY):
        box = (geom.rows, geom.cols)
        if _reads_a_constant(raw_amps[index]):
            _log.warning(
                "%s: amplifier %s reads one constant value (dead or not read out): masked BAD",
                raw.path,
                geom.name,
            )
            dead.append(box)
        saturated = _calibrate_amp(
            geom.to_assembled(raw_amps[index][DATA_ROWS, DATA_COLS]),
            box,
            overscan=None
            if serial is None or per_col is None
            else (
                geom.to_assembled(serial[index, DATA_ROWS, None]),
                geom.to_assembled(per_col[index, None, :]),
            ),
            saturation=np.float32(levels[geom.name]),
            gain=np.float32(amps.gain[geom.name]) if amps is not None else np.float32(1.0),
            read_noise=np.float32(amps.read_noise[geom.name]) if amps is not None else np.float32(0.0),
            darktime=darktime,
            calibs=calibs,
            config=config,
            out=(image, mask, variance),
        )
        if saturated is not None:
            saturated_rows.extend(geom.rows.start + row for row in saturated)

    if config.doSaturation and config.doWidenSaturationTrails and config.growSaturationFootprintSize:
        if saturated_rows:
            band = slice(max(min(saturated_rows) - 10, 0), max(saturated_rows) + 11)
            mask[band] |= binary_dilation(
                mask[band].astype(bool), iterations=config.growSaturationFootprintSize
            ) * np.uint16(MaskBit.SAT)
    for box in dead:  # its "signal" is whatever the calibrations left: nothing to measure
        mask[box] |= np.uint16(MaskBit.BAD)
        image[box] = np.nan
    if calibs is not None:
        invalid = calibs.invalid
        mask[invalid] |= np.uint16(MaskBit.BAD)
        image[invalid] = np.nan
    if config.doDefect and calibs is not None:
        for x0, y0, width, height in calibs.defects:
            mask[y0 : y0 + height, x0 : x0 + width] |= np.uint16(MaskBit.BAD)

    filter_name = str(raw.header.get("FILTER", "")).strip()
    if config.doFringe and filter_name in config.fringeFilters:
        usable = mask == 0
        amplitude = _fit_fringe(image, calibs.fringe, usable)  # type: ignore[union-attr,arg-type]
        image -= np.float32(amplitude) * calibs.fringe  # type: ignore[union-attr]
        _log.debug("%s: fringe amplitude %.4g for filter %s", raw.path, amplitude, filter_name)

    if config.doNanMasking or config.doInterpolate:
        not_finite = ~np.isfinite(image)
        if config.doNanMasking:
            mask[not_finite] |= np.uint16(MaskBit.NO_DATA)
        if config.doInterpolate:
            planes = np.uint16(0)
            for plane in config.maskListToInterpolate:
                planes |= np.uint16(MaskBit[plane])
            bad = (mask & planes).astype(bool) | not_finite
            _interpolate_rows(image, bad)
            mask[bad] |= np.uint16(MaskBit.INTRP)

    header = raw.header.copy()
    header["BUNIT"] = config.output_units
    return Exposure(
        image=image,
        mask=mask,
        header=header,
        wcs=wcs_from_header(header),
        variance=variance,
        units=config.output_units,
    )
