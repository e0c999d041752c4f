"""One wavefront triplet end to end: raw files in, Zernikes and a hexapod correction out.

`process` is a pure function of files and configuration (no SAL, no global state), so the CSC, the
``auxtelwep process`` command, the benchmarks and offline reprocessing all run exactly the same code::

    raw FITS --isr--> Exposure --detection--> DonutCatalog --stamps--> DonutPairs
             --estimation--> WavefrontEstimate --correction--> HexapodCorrection
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from . import calibs as calibs_module
from .cadence import ROLE_LABELS, check_roles
from .correction import CorrectionConfig, HexapodCorrection, compute_correction
from .detection import DetectionConfig, DonutCatalog, detect_donuts
from .errors import AuxTelWepError, ConfigurationError, EstimationError, InputError, as_config, check_type
from .estimation import (
    EstimationConfig,
    WavefrontEstimate,
    estimate_wavefront,
    refer_to_stars,
    reference_shift,
    start_pool,
)
from .estimation.forward import fit_pair
from .estimation.forward_model import design_fits
from .exposure import Exposure, camera_angle_from_header, read_exposure, read_header, read_raw
from .instrument import DEFAULT_WAVELENGTH_M, AuxTel, Role
from .isr import IsrConfig, run_isr
from .refcat import RefCatalog, load_refcat
from .stamps import DonutPair, cut_pairs

__all__ = [
    "PipelineConfig",
    "Triplet",
    "WavefrontResult",
    "correct_from_estimate",
    "estimate_ahead",
    "model_stamps",
    "prepare",
    "process",
    "warm_up",
]

log = logging.getLogger(__name__)


class PipelineConfig(BaseModel):
    """Configuration of the whole pipeline (the ``pipeline`` section of the CSC configuration).

    Immutable, as its sections are; build a variant with ``config.model_copy(update={...})``. The functions
    that take one also take a mapping of its fields, validated here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    apply_isr: bool = Field(
        True, description="Run ISR on raw files; false for images that are already ISR'd."
    )
    calibs_dir: Path | None = Field(
        None, description="Directory of calibration products (bias, dark, flat...)."
    )
    refcat: Path | None = Field(None, description="Reference catalog (ECSV/FITS/Parquet with ra, dec, mag).")
    wavelength_nm: float = Field(
        DEFAULT_WAVELENGTH_M * 1e9, gt=300, lt=1100, description="Effective wavelength."
    )
    isr: IsrConfig = Field(default_factory=IsrConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    estimation: EstimationConfig = Field(default_factory=EstimationConfig)
    correction: CorrectionConfig = Field(default_factory=CorrectionConfig)


@dataclasses.dataclass(frozen=True)
class Triplet:
    """The files of one wavefront measurement.

    Attributes
    ----------
    intra, extra : `pathlib.Path`
        Intra- and extra-focal raw files (or ISR'd images when ``apply_isr`` is false).
    infocus : `pathlib.Path` or `None`
        The in-focus image of the same group, used for astrometry when the WCS is poor.
    group_id : `str`
        GROUPID of the triplet (informational).
    camera_angle_deg : `float` or `None`
        Camera rotation relative to the hexapod frame during the exposures, degrees (instrument.py
        convention): the mount's elevation - Nasmyth-2 angle, recorded by the CSC, or given by the user.
        None: the intra image's header ``CAMANGLE``; without it only focus is solved.
    """

    intra: Path
    extra: Path
    infocus: Path | None = None
    group_id: str = ""
    camera_angle_deg: float | None = None


@dataclasses.dataclass(frozen=True)
class WavefrontResult:
    """Everything one triplet produced.

    Attributes
    ----------
    group_id, intra_obsid, extra_obsid, infocus_obsid : `str` (infocus may be `None`)
        Identification of the images.
    camera_angle_deg : `float` or `None`
        Camera rotation used for the correction (instrument.py convention); None when it was not known
        (only focus was then solved).
    catalog : `DonutCatalog`
        The donuts found and how.
    estimate : `WavefrontEstimate`
        Zernikes (um, in-focus deviation from the design at each star's field, `estimation.refer_to_stars`)
        with errors and per-pair details.
    correction : `HexapodCorrection`
        Offset to apply to M2.
    timings_s : `dict` of `str` to `float`
        Wall time per stage (isr, detection, estimation, correction, total), seconds.
    pairs : `tuple` of `DonutPair`
        The stamp pairs, kept only when `process` is asked to (``keep_pairs=True``) since they are large.
    notes : `tuple` of `str`
        What about the images themselves a reader should know (e.g. they come from different groups).
    """

    group_id: str
    intra_obsid: str
    extra_obsid: str
    infocus_obsid: str | None
    camera_angle_deg: float | None
    catalog: DonutCatalog
    estimate: WavefrontEstimate
    correction: HexapodCorrection
    timings_s: dict[str, float]
    pairs: tuple[DonutPair, ...] = ()
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        """The images, detection mode, donuts used, Z4-Z11 in nm and the correction, on one line.

        The generated one printed every array of the estimate and the catalog (23 kB).
        """
        from .reprs import summary_repr, zernikes_nm

        offset, solved = self.correction.offset, self.correction.solved_axes
        unit = {"x": "mm", "y": "mm", "z": "mm", "u": "deg", "v": "deg"}
        correction = "[" + ", ".join(f"{a} {getattr(offset, a):+.4f} {unit[a]}" for a in solved) + "]"
        extra = {
            "infocus": repr(self.infocus_obsid),
            "mode": repr(self.catalog.mode),
            "donuts_used": f"{self.estimate.n_used}/{len(self.catalog.donuts)}",
            "nm": zernikes_nm(self.estimate.noll, self.estimate.um),
            "correction": correction,
        }
        if self.notes:
            extra["notes"] = str(len(self.notes))
        return summary_repr(self, ("group_id", "intra_obsid", "extra_obsid"), extra)

    @property
    def reduced_chi2(self) -> float:
        """Median reduced chi-square of the forward fits of the pairs used (NaN for the TIE alone)."""
        values = [p.chi2_reduced for p in self.estimate.pairs if p.used and np.isfinite(p.chi2_reduced)]
        return float(np.median(values)) if values else float("nan")

    @property
    def residual_structure(self) -> float:
        """Largest residual structure of the pairs used (`PairEstimate.structure_fraction`; NaN if none has
        one, as with the TIE alone)."""
        values = [v for p in self.estimate.pairs if p.used for v in p.structure_fraction if np.isfinite(v)]
        return float(max(values)) if values else float("nan")

    def to_json_dict(self) -> dict[str, Any]:
        """The documented JSON shape of ``auxtelwep process --json`` (extra keys allowed by the spec)."""
        by_index = {p.index: p for p in self.estimate.pairs}
        donuts = []
        for index, donut in enumerate(self.catalog.donuts):
            pair = by_index.get(index)
            donuts.append(
                {
                    "intra_xy": [float(donut.intra_x), float(donut.intra_y)],
                    "extra_xy": [float(donut.extra_x), float(donut.extra_y)],
                    "used": bool(pair is not None and pair.used),
                    "reason": "not cut into a stamp pair" if pair is None else pair.reason,
                    "field_deg": [float(donut.field_x_deg), float(donut.field_y_deg)],
                    # The star's field, where the design reference of zernikes_um is taken (null: field_deg).
                    "star_field_deg": None
                    if pair is None or pair.star_field_deg is None
                    else [float(v) for v in pair.star_field_deg],
                    "blended": bool(donut.blended),
                    "snr": None if pair is None else [_finite_or_none(v) for v in pair.snr],
                    "reduced_chi2": None if pair is None else _finite_or_none(pair.chi2_reduced),
                    "fwhm_arcsec": _floats_or_none(None if pair is None else pair.fwhm_arcsec),
                    "structure_fraction": None
                    if pair is None
                    else [_finite_or_none(v) for v in pair.structure_fraction],
                    "zernikes_um": _floats_or_none(None if pair is None else pair.zernikes_um),
                    "zernikes_err_um": _floats_or_none(None if pair is None else pair.zernikes_err_um),
                }
            )
        correction = self.correction
        solved = set(correction.solved_axes)
        return {
            "group_id": self.group_id,
            "intra": self.intra_obsid,
            "extra": self.extra_obsid,
            "infocus": self.infocus_obsid,
            "detection": {
                "mode": self.catalog.mode,
                "reason": self.catalog.reason,
                "wcs_scatter_arcsec": self.catalog.wcs_scatter_arcsec,
                "donuts": donuts,
                # Candidates detection did not keep (saturated, at the edge, a cosmic ray...), with why.
                "rejected": [
                    {"xy": [float(r.x), float(r.y)], "role": r.role, "reason": r.reason}
                    for r in self.catalog.rejected
                ],
            },
            "zernikes": {
                "noll": [int(n) for n in self.estimate.noll],
                "um": [float(v) for v in self.estimate.um],
                "um_err": [_finite_or_none(v) for v in self.estimate.um_err],  # null: no error known
                "scatter_um": [_finite_or_none(v) for v in self.estimate.scatter_um],
                "algorithm": self.estimate.algorithm,
                "reduced_chi2": _finite_or_none(self.reduced_chi2),
                "residual_structure": _finite_or_none(self.residual_structure),
                "donuts_used": self.estimate.n_used,
            },
            "hexapod": correction.as_dict(),
            # 1-sigma errors; null for the axes not solved (their offset is 0 by construction).
            # null for the axes not solved, and for all when no Zernike had an error (unknown, not 0).
            "hexapod_err": {
                key: float(value) if key[0] in solved and np.isfinite(self.estimate.um_err).any() else None
                for key, value in correction.sigma_dict().items()
            },
            "hexapod_solved_axes": list(correction.solved_axes),
            # null when the terms the rule reads (Z4, Z7, Z8) were not all measured, or only z is solved.
            "hexapod_ops_rule": None
            if correction.ops_offset is None
            else {
                "x_mm": correction.ops_offset.x,
                "y_mm": correction.ops_offset.y,
                "z_mm": correction.ops_offset.z,
            },
            "camera_angle_deg": self.camera_angle_deg,
            "notes": list(self.notes),
            "timing_s": dict(self.timings_s),
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _floats_or_none(values: NDArray | None) -> list[float | None] | None:
    return None if values is None else [_finite_or_none(v) for v in values]


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _load(path: Path, config: PipelineConfig) -> Exposure:
    if not config.apply_isr:
        return read_exposure(path)
    calibrations = None
    if config.calibs_dir is not None:
        calibrations = _calibrations(config.calibs_dir, config.isr)
    elif _needs_calibrations(config.isr):
        raise ConfigurationError(
            "ISR is configured to use calibration products (doBias/doDark/doFlat) but no calibs_dir is set; "
            "give --calibs DIR or turn those steps off"
        )
    return run_isr(read_raw(path), calibrations, config.isr)


# Exposures calibrated ahead of their triplet by `prepare`, oldest first; `process` takes them out. Images
# are loaded in threads (`_in_threads`), hence the lock around the bookkeeping (not around the loading).
_PREPARED: collections.OrderedDict[tuple, Exposure] = collections.OrderedDict()
_PREPARED_LOCK = threading.Lock()
_MAX_PREPARED = 3


def _prepared_key(path: Path, config: PipelineConfig) -> tuple:
    """What an exposure depends on: the file, the ISR configuration and the calibration files."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    calibs = None if config.calibs_dir is None else _calibs_versions(Path(config.calibs_dir))
    return (str(path), stat.st_mtime_ns, stat.st_size, config.apply_isr, config.isr.model_dump_json(), calibs)


def prepare(path: Path, *, config: PipelineConfig | Mapping[str, Any]) -> Exposure:
    """Calibrate one image ahead of its triplet, for a later `process` call in this process to take.

    The CSC calls it (in its worker) as each defocal image arrives, so that when the last image of a
    triplet comes only that one is left to calibrate. At most three prepared exposures are held (about
    100 MB each for a full frame, 160 MB with the variance plane); the oldest is dropped first, and
    `process` removes what it uses.

    Parameters
    ----------
    path : `pathlib.Path`
        Raw LATISS file (or an ISR'd exposure when ``config.apply_isr`` is False).
    config : `PipelineConfig`
        The configuration `process` will be called with (a different one calibrates again).

    Returns
    -------
    exposure : `Exposure`
        The calibrated image (also kept for `process`).

    Raises
    ------
    AuxTelWepError
        As `process` would for this file (unreadable raw, missing calibration...).
    """
    config = as_config("config", config, PipelineConfig)
    try:
        key = _prepared_key(path, config)
    except OSError:
        return _load(path, config)  # raises the error that names the problem
    with _PREPARED_LOCK:
        exposure = _PREPARED.get(key)
    if exposure is None:
        exposure = _load(path, config)
        # Shared by the work ahead and the triplet: nothing may change it on the way.
        for array in (exposure.image, exposure.mask, exposure.variance):
            if array is not None:
                array.setflags(write=False)
    with _PREPARED_LOCK:
        _PREPARED[key] = exposure
        _PREPARED.move_to_end(key)
        while len(_PREPARED) > _MAX_PREPARED:
            _PREPARED.popitem(last=False)
    return exposure


def estimate_ahead(intra: Path, extra: Path, *, config: PipelineConfig | Mapping[str, Any]) -> int:
    """Estimate the donut pairs of a defocal pair before its triplet is complete.

    While the in-focus image of a triplet is being taken, the CSC's worker finds the donuts on the two
    defocal images alone (detection mode ``auto`` without the in-focus image: ``wcs`` or ``template``),
    cuts the pairs and estimates them; `estimation.estimate_wavefront` keeps the estimates, so when the
    triplet is processed every pair cut the same way is not fitted again. The result of `process` does
    not depend on whether this ran: a pair is reused only if it is the same pair, pixel for pixel.

    Parameters
    ----------
    intra, extra : `pathlib.Path`
        The triplet's intra- and extra-focal raw files (calibrated through `prepare`, so kept for `process`).
    config : `PipelineConfig`
        The configuration `process` will be called with.

    Returns
    -------
    n_pairs : `int`
        Pairs estimated (flagged ones are not).

    Raises
    ------
    AuxTelWepError
        Bad images, no donut found, no usable pair: `process` will report it for the triplet.
    """
    config = as_config("config", config, PipelineConfig)
    intra_exposure, extra_exposure = _in_threads(_prepare, (intra, extra), config)
    telescope = _telescope(None, config)
    catalog = detect_donuts(
        intra_exposure,
        extra_exposure,
        infocus=None,
        refcat=_refcat(config),
        config=config.detection.model_copy(update={"mode": "auto"}),
        telescope=telescope,
    )
    pairs = cut_pairs(intra_exposure, extra_exposure, catalog, telescope=telescope)
    estimate = estimate_wavefront(pairs, config=config.estimation, telescope=telescope)
    return sum(p.zernikes_um is not None for p in estimate.pairs)


def _prepare(path: Path, config: PipelineConfig) -> Exposure:
    return prepare(path, config=config)


def _in_threads(
    load: Callable[[Path, PipelineConfig], Exposure], paths: tuple[Path, Path], config: PipelineConfig
) -> tuple[Exposure, Exposure]:
    """Load two images at once: reading and ISR run mostly outside the GIL (0.5 s for three, not 0.7-1.2)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as threads:
        first, second = threads.map(load, paths, (config, config))
    return first, second


def _refuse_one_file_twice(triplet: Triplet) -> None:
    """The same file in two roles (what check_roles sees by OBSID, here by path: headers may lack it)."""
    given = {Role.INTRA: triplet.intra, Role.EXTRA: triplet.extra, Role.INFOCUS: triplet.infocus}
    seen: dict[Path, str] = {}
    for role, path in ((ROLE_LABELS[r], p) for r, p in given.items()):
        if path is None:
            continue
        resolved = Path(path).expanduser().resolve()
        if resolved in seen:
            raise InputError(
                f"{path} was given as both the {seen[resolved]} and the {role} image", value=str(path)
            )
        seen[resolved] = role


def _telescope(angle_deg: float | None, config: PipelineConfig) -> AuxTel:
    # An unknown camera angle leaves detection and estimation alone (the aligned design is round); only
    # the correction's x, y, u, v need it, and `process` then solves focus alone.
    return AuxTel().with_camera_angle(angle_deg or 0.0).with_wavelength(config.wavelength_nm * 1e-9)


def _refcat(config: PipelineConfig) -> RefCatalog | None:
    """The reference catalog of ``config``, read once per file version (a catalog is read-only)."""
    if config.refcat is None:
        return None
    try:
        version = Path(config.refcat).expanduser().resolve().stat()
    except OSError:
        return load_refcat(config.refcat)  # raises the error that names the problem
    return _cached_refcat(config.refcat, version.st_ino, version.st_mtime_ns, version.st_size)


@functools.lru_cache(maxsize=4)
def _cached_refcat(path: Path, inode: int, mtime_ns: int, size: int) -> RefCatalog:
    del inode, mtime_ns, size  # part of the cache key only
    return load_refcat(path)


def warm_up(config: PipelineConfig | Mapping[str, Any]) -> None:
    """Do the one-time work of `process` for ``config`` now, in a process that will run many triplets.

    Loads the calibration products, the optical model's design references and its sensitivity map, and
    starts the estimation worker processes (`estimation.start_pool`), so that the first triplet costs what
    the others do. Problems with the files are left for `process` to report.

    Parameters
    ----------
    config : `PipelineConfig`
        The configuration the triplets will be processed with (its calibrations directory, estimation and
        correction settings).
    """
    config = as_config("config", config, PipelineConfig)
    wavelength_m = config.wavelength_nm * 1e-9
    if config.apply_isr and config.calibs_dir is not None and Path(config.calibs_dir).is_dir():
        _calibrations(config.calibs_dir, config.isr)
    design_fits(wavelength_m)
    if set(config.estimation.noll) & set(config.correction.noll):
        # On the terms measured, as `correction.compute_correction` asks for it.
        AuxTel().with_wavelength(wavelength_m).sensitivity_map(noll=config.estimation.noll)
    start_pool(workers=config.estimation.max_workers, wavelength_m=wavelength_m)


def _take_or_load(path: Path, config: PipelineConfig) -> Exposure:
    if _PREPARED:
        try:
            key = _prepared_key(path, config)
        except OSError:
            return _load(path, config)  # raises the error that names the problem
        with _PREPARED_LOCK:
            prepared = _PREPARED.pop(key, None)
        if prepared is not None:
            return prepared
    return _load(path, config)


def process(
    triplet: Triplet, *, config: PipelineConfig | Mapping[str, Any] | None = None, keep_pairs: bool = False
) -> WavefrontResult:
    """Run ISR, detection, estimation and correction on one triplet.

    Parameters
    ----------
    triplet : `Triplet`
        Paths of the intra, extra and (optional) in-focus images.
    config : `PipelineConfig` or mapping, optional
        Pipeline configuration, or a mapping of its fields; defaults when omitted.
    keep_pairs : `bool`
        Keep the donut stamp pairs in the result (for figures).

    Returns
    -------
    result : `WavefrontResult`

    Raises
    ------
    AuxTelWepError
        A subclass naming the problem: unreadable raw, missing calibration, no donuts, failed fits...
    """
    config = as_config("config", config, PipelineConfig)
    check_type("triplet", triplet, Triplet, hint="Triplet(intra=path, extra=path, infocus=path)")
    _refuse_one_file_twice(triplet)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    infocus_job = None
    if triplet.infocus is not None and config.detection.mode in ("auto", "refit"):
        # Detection needs the in-focus image whenever the header WCS is off by more than ~10 px, as it is
        # after any M2 move (548 px per mm): calibrate it beside the rest, unused if the WCS turns out good.
        background = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        infocus_job = background.submit(_take_or_load, triplet.infocus, config)
        background.shutdown(wait=False)
    with _timed(timings, "isr"):
        intra, extra = _in_threads(_take_or_load, (triplet.intra, triplet.extra), config)
    check_roles({Role.INTRA: intra, Role.EXTRA: extra})
    loaded: list[Exposure] = []

    def load_infocus(path: Path) -> Exposure:
        # Called by detection only when it needs astrometry.
        with _timed(timings, "isr"):
            loaded.append(_take_or_load(path, config) if infocus_job is None else infocus_job.result())
        check_roles({Role.INTRA: intra, Role.EXTRA: extra, Role.INFOCUS: loaded[0]})
        return loaded[0]

    angle = triplet.camera_angle_deg
    if angle is None:
        angle = camera_angle_from_header(intra.header)
    if angle is not None:
        angle = (float(angle) + 180.0) % 360.0 - 180.0  # as reported: 420 given is 60
    telescope = _telescope(angle, config)
    isr_before_detection = timings["isr"]
    with _timed(timings, "detection"):
        catalog = detect_donuts(
            intra,
            extra,
            infocus=None if triplet.infocus is None else functools.partial(load_infocus, triplet.infocus),
            refcat=_refcat(config),
            config=config.detection,
            telescope=telescope,
        )
    # The in-focus ISR, if detection asked for it, is counted under isr, not detection.
    timings["detection"] -= timings["isr"] - isr_before_detection
    with _timed(timings, "estimation"):
        pairs = cut_pairs(intra, extra, catalog, telescope=telescope)
        estimate = estimate_wavefront(pairs, config=config.estimation, telescope=telescope)
    notes: list[str] = []
    correction_config = config.correction
    if angle is None:
        correction_config = correction_config.model_copy(update={"axes": "z"})
        notes.append(
            f"camera angle unknown ({intra.obsid} has no CAMANGLE and none was given): only focus (z) is "
            "solved; x, y, u, v need the camera's rotation relative to the hexapod (the mount's elevation "
            "- Nasmyth-2 angle: the CSC records it from ATMCS; auxtelwep process --camera-angle takes it)"
        )
    with _timed(timings, "correction"):
        correction = correct_from_estimate(estimate, catalog, telescope=telescope, config=correction_config)
        # The correction is made from the deviations at the pixels' fields (its model follows the image);
        # the reported Zernikes are then referred to the stars' own fields with the misalignment it found.
        try:
            estimate = refer_to_stars(
                estimate,
                pairs,
                -correction.offset,
                config=config.estimation,
                telescope=telescope,
                light_fields_deg={i: (d.field_x_deg, d.field_y_deg) for i, d in enumerate(catalog.donuts)},
            )
        except InputError as exc:
            notes.append(
                f"Zernikes referred to the design at the donuts' pixel fields, not their stars': {exc}"
            )
    timings["total"] = time.perf_counter() - start
    infocus_obsid, infocus_note = _infocus_obsid(triplet.infocus, loaded)
    if infocus_note is not None:
        notes.append(infocus_note)
    return WavefrontResult(
        group_id=triplet.group_id or str(intra.header.get("GROUPID", "")),
        intra_obsid=intra.obsid,
        extra_obsid=extra.obsid,
        infocus_obsid=infocus_obsid,
        camera_angle_deg=angle,
        catalog=catalog,
        estimate=estimate,
        correction=correction,
        timings_s=timings,
        pairs=tuple(pairs) if keep_pairs else (),
        notes=_group_notes(
            {Role.INTRA: intra, Role.EXTRA: extra, **({Role.INFOCUS: loaded[0]} if loaded else {})}
        )
        + tuple(notes),
    )


def model_stamps(
    result: WavefrontResult, *, config: PipelineConfig | Mapping[str, Any], max_pairs: int = 2
) -> list[dict[str, Any]]:
    """Data and forward-model images of the first pairs used, for `plots.plot_stamps`.

    The model is what the pair's reported Zernikes predict: the forward model with the Zernikes held at the
    pair's estimate, whichever algorithm made it, and only the flux, offsets, seeing and background fitted.
    The residuals and reduced chi-square thus judge the reported estimate (a fit started there would move
    to its own answer, and judge that instead: chi2/dof 1.01 under a TIE estimate tens of nm off).

    Parameters
    ----------
    result : `WavefrontResult`
        A result made with ``keep_pairs=True``.
    config : `PipelineConfig` or mapping
        The configuration it was made with (or a mapping of its fields).
    max_pairs : `int`
        How many pairs to draw.

    Returns
    -------
    stamps : `list` of `dict`
        ``{"data", "model", "label"}`` per stamp, intra then extra for each pair; a pair whose model fit
        fails says why in its labels (its model is drawn if the fit made one, else only the data).
    """
    config = as_config("config", config, PipelineConfig)
    if not result.pairs:
        raise InputError("the result holds no stamps: run process(..., keep_pairs=True)")
    telescope = _telescope(result.camera_angle_deg, config)
    estimates = {p.index: p for p in result.estimate.pairs if p.used and p.zernikes_um is not None}
    panels: list[dict[str, Any]] = []
    for pair in [p for p in result.pairs if p.index in estimates][:max_pairs]:
        estimate = estimates[pair.index]
        held = estimate.zernikes_um
        if estimate.star_field_deg is not None:
            # Reported at the star's field; the forward model takes the design at the pair's (pixel) field.
            held = held - reference_shift(
                telescope, pair.intra.field_deg, estimate.star_field_deg, noll=result.estimate.noll
            )
        try:
            fit = fit_pair(
                pair,
                telescope=telescope,
                options=config.estimation.forward_options(with_grid=False),
                start_um=held,
                keep_images=True,
                fit_zernikes=False,
            )
            failure = ""
        except EstimationError as exc:
            # Still drawn: a reported estimate the model cannot follow (e.g. a caustic) is what to show.
            fit = exc.result
            failure = f"  (model fit failed: {fit.message if fit is not None else exc})"
        for k, (role, stamp) in enumerate((("intra", pair.intra), ("extra", pair.extra))):
            panel: dict[str, Any] = {"data": np.where(stamp.mask, np.nan, stamp.image)}
            label = f"{role} #{pair.index}  SNR {stamp.snr:.0f}"
            if fit is not None and fit.models is not None:
                panel["model"] = fit.models[k]
                label += f"  chi2/dof {fit.chi2_reduced_per_stamp[k]:.2f}"
            panel["label"] = label + failure
            panels.append(panel)
    return panels


def correct_from_estimate(
    estimate: WavefrontEstimate, catalog: DonutCatalog, *, telescope: AuxTel, config: CorrectionConfig
) -> HexapodCorrection:
    """Hexapod correction from the pairs used in ``estimate``, each at its own field position.

    Step 5 of `process`: the deviations are those estimation returns, referred to the design at each donut's
    pixel field (``catalog``'s ``field_x_deg``, ``field_y_deg``); the model follows the image M2 moves.

    Parameters
    ----------
    estimate : `WavefrontEstimate`
        The estimate of the triplet, before `estimation.refer_to_stars`; only its used pairs count.
    catalog : `DonutCatalog`
        The donuts the pairs were cut from (``PairEstimate.index`` indexes ``catalog.donuts``).
    telescope : `AuxTel`
        The in-focus telescope the images were taken with (camera angle, wavelength).
    config : `CorrectionConfig`
        Axes to solve, systematic error, refinement.

    Returns
    -------
    correction : `HexapodCorrection`
        The full offset that nulls the measured deviation, with its errors and the ops rule's for comparison.

    Raises
    ------
    EstimationError
        If no pair was used (every donut was rejected; the reasons are listed).
    """
    used = [p for p in estimate.pairs if p.used and p.zernikes_um is not None]
    if not used:
        reasons = "; ".join(f"donut {p.index}: {p.reason}" for p in estimate.pairs) or "no donut pairs"
        raise EstimationError(f"no usable wavefront estimate: {reasons}", result=estimate)
    deviations = np.array([p.zernikes_um for p in used])
    errors = np.array(
        [
            p.zernikes_err_um if p.zernikes_err_um is not None else np.full(len(estimate.noll), np.nan)
            for p in used
        ]
    )
    fields = np.array(
        [[catalog.donuts[p.index].field_x_deg, catalog.donuts[p.index].field_y_deg] for p in used]
    )
    return compute_correction(estimate.noll, deviations, errors, fields, telescope=telescope, config=config)


def _calibrations(directory: Path, isr: IsrConfig) -> calibs_module.Calibrations:
    """Calibration products of ``directory``, loaded once per set of file versions (also across threads).

    A night reuses one directory for every triplet; the key includes each file's modification time and
    size, so replaced products are read again. The products' arrays are read-only, so sharing is safe.
    """
    directory = Path(directory).expanduser().resolve()
    # The images of a triplet are calibrated in threads; unguarded, each would miss the cache at once and
    # read the products itself (three times the reading, 1 s more for a fresh process's first triplet).
    with _CALIBRATIONS_LOCK:
        return _cached_calibrations(directory, _calibs_versions(directory), isr.model_dump_json())


_CALIBRATIONS_LOCK = threading.Lock()


def _calibs_versions(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of every file of a calibration directory."""
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        return ()
    return tuple(
        (p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(directory.glob("*")) if p.is_file()
    )


@functools.lru_cache(maxsize=4)
def _cached_calibrations(
    directory: Path, versions: tuple[tuple[str, int, int], ...], isr_json: str
) -> calibs_module.Calibrations:
    del versions  # part of the cache key only
    return calibs_module.load_calibrations(directory, IsrConfig.model_validate_json(isr_json))


def _group_notes(given: dict[Role, Exposure]) -> tuple[str, ...]:
    """A note when the images carry different ``GROUPID``s: not a triplet the CSC would have formed.

    Processed all the same (pairing exposures of different groups can be deliberate, e.g. a retaken
    image), but said, since the optics or the pointing may have changed between them.
    """
    groups = {role: str(e.header.get("GROUPID", "") or "").strip() for role, e in given.items()}
    if len({g for g in groups.values() if g}) <= 1:
        return ()
    detail = ", ".join(
        f"{role.value} {given[role].obsid} {group or '(none)'}" for role, group in groups.items()
    )
    return (f"the images come from different groups (GROUPID: {detail}); the CSC would not pair them",)


def _infocus_obsid(path: Path | None, loaded: list[Exposure]) -> tuple[str | None, str | None]:
    """The in-focus image's OBSID for the result, and a note when an unneeded one could not be read.

    Detection may not need the in-focus image (calibrated in the background all the same): a file that does
    not read then costs no result; but it is labelled only if its file reads (structure and header), else
    named in a note and left out.
    """
    if loaded:
        return loaded[0].obsid, None
    if path is None:
        return None, None
    try:
        header = read_header(path)
    except AuxTelWepError as exc:
        return None, f"in-focus image not used (detection did not need it) and not readable: {exc}"
    return str(header.get("OBSID", "") or "").strip() or path.stem, None


def _needs_calibrations(isr: IsrConfig) -> bool:
    return bool(isr.doBias or isr.doDark or isr.doFlat)
