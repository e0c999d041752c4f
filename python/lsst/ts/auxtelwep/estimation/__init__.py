"""Wavefront estimation from donut pairs: TIE, forward-model fit (danish), combination over donuts.

`estimate_wavefront` takes the `~lsst.ts.auxtelwep.stamps.DonutPair` list of one intra/extra exposure pair,
estimates each usable pair (in parallel across processes when there are many), and combines them with sigma
clipping (`combine`). Every pair is reported, used or not, with the reason it was not used: flagged by the
stamp cutter (blend, clipped, masked...), fit failed, or outlier.

Zernikes are Noll-indexed, annular (obscuration 0.3525), micrometres, and are the in-focus deviation from the
optical design at each donut's field position (doc/architecture.md, "Conventions"). `estimate_wavefront`
takes that position from the donut's pixel through the design's mapping; a misaligned M2 moves the image
(~548 px per mm of decenter), so its estimates are the wavefront of the star there minus the design at the
pixel's field.
`refer_to_stars`, given the misalignment (the pipeline's correction), refers them to the star's own field:
the wavefront's deviation from the design at the same field angle, as the simulator's truths are.

Algorithms (`EstimationConfig.algorithm`):

- ``"tie+danish"`` (default): the forward-model fit of `forward` started from the TIE solution (computed on
  2x-binned stamps; falls back to the Z4 grid when the TIE fails). The most accurate, and the fastest of the
  forward fits: the seed saves the grid and most of the coarse stage (benchmarks/bench_estimation.py: 0.13 s
  CPU per pair, 1.6 nm median Z4-Z11 error on bright simulated pairs, against 3.5 s and 1.6 nm for danish as
  published and 0.10 s and 2.5 nm for the TIE alone);
- ``"danish"``: the same fit started from the best Z4 of a small grid (no TIE);
- ``"tie"``: the TIE alone (`tie.solve_tie`, the in-focus deviation from the design).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import AuxTelWepError, EstimationError, InputError, as_config
from ..instrument import DEFAULT_WAVELENGTH_M, AuxTel, HexapodState, Role
from ..reprs import summary_repr, zernikes_nm
from ..stamps import DonutPair, PairFlag
from .combine import Combination, sigma_clip_combine
from .forward import ForwardFitResult, ForwardOptions, fit_pair
from .forward_model import bin_stamp, design_fits, design_references, install_design_fits

__all__ = [
    "EstimationConfig",
    "PairEstimate",
    "WavefrontEstimate",
    "estimate_pair",
    "estimate_wavefront",
    "forget_estimates",
    "refer_to_stars",
    "reference_shift",
    "shutdown_pool",
    "start_pool",
]

_log = logging.getLogger(__name__)

Algorithm = Literal["tie", "danish", "tie+danish"]


class EstimationConfig(BaseModel):
    """Configuration of `estimate_wavefront` (``pipeline.estimation`` in the CSC's configuration)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Algorithm = Field(
        "tie+danish", description="Estimator: TIE alone, danish from a Z4 grid, or danish seeded by the TIE."
    )
    noll: tuple[int, ...] = Field(tuple(range(4, 23)), description="Noll indices estimated (4..28).")
    coarse_binning: int = Field(
        4, ge=1, le=8, description="Binning of the coarse forward-fit stage (1: none)."
    )
    polish_binning: int = Field(
        2, ge=1, le=4, description="Binning of the final forward-fit stage (1: full resolution)."
    )
    step_tol_sigma: float = Field(0.1, gt=0, description="Final-stage step tolerance, standard deviations.")
    step_tol_um: float = Field(
        0.0001,
        ge=0,
        description="The final stage also stops when no Zernike moved by more than this, um (bright donuts).",
    )
    chi2_tol: float = Field(0.1, gt=0, description="Chi-square gain tolerance, reduced units.")
    max_nfev: int = Field(40, ge=2, description="Model evaluations allowed per forward-fit stage.")
    z4_grid_um: tuple[float, ...] = Field(
        (-0.45, -0.3, -0.15, 0.0, 0.15, 0.3, 0.45), description="Z4 offsets tried when no TIE seed, um."
    )
    blur_per_donut: bool = Field(
        True, description="One seeing FWHM per exposure (taken a minute apart) instead of one per pair."
    )
    model_error_fraction: float = Field(
        0.0, ge=0, lt=1, description="Fractional model error added to the pixel noise (real-data speckle)."
    )
    diffraction_band_m: tuple[float, ...] = Field(
        (),
        description="Wavelengths (m) of a diffraction donut model; empty: geometric (real donuts need it).",
    )
    tie_seed_binning: int = Field(
        2,
        ge=1,
        le=4,
        description="Binning of the stamps the TIE seed of 'tie+danish' works on (the fit refines it).",
    )
    tie_solver: Literal["exp", "fft"] = Field("exp", description="TIE solver.")
    tie_model: Literal["onAxis", "offAxis", "paraxial"] = Field("onAxis", description="TIE optical model.")
    max_workers: int = Field(
        0, ge=0, description="Worker processes for many pairs (0: one per core, 1: run in this process)."
    )
    min_pairs_for_pool: int = Field(
        6,
        ge=2,
        description="Fewest pairs worth starting worker processes for (a pool already running, see "
        "start_pool, is used from two pairs on).",
    )
    sigma_clip: float = Field(
        3.0, gt=0, description="Outlier threshold over pairs, equivalent Gaussian sigmas (combine.py)."
    )
    clip_floor_um: float = Field(
        0.005,
        ge=0,
        description="Scatter between pairs expected whatever their errors (field dependence), um: weights "
        "and clipping.",
    )
    model_floor_um: float = Field(
        0.0005,
        ge=0,
        description="Systematic error of the forward model added in quadrature to each pair's formal errors, "
        "um: at SNR in the thousands the formal errors (0.1 nm) are below what the model is good to "
        "(0.1-0.7 nm, doc/estimation.md 'Bright donuts: the systematic floor').",
    )
    broadened_ratio: float | None = Field(
        1.5,
        gt=1,
        description="Reject a pair whose fitted seeing exceeds the median of the other pairs' by this factor "
        "(and by broadened_min_arcsec) in every exposure: an unresolved blend or an extended source "
        "(None: no such test).",
    )
    broadened_min_arcsec: float = Field(
        0.5,
        ge=0,
        description="Smallest excess of fitted seeing broadened_ratio may call a blend, arcsec.",
    )
    reject_flags: tuple[str, ...] = Field(
        ("BLEND", "CLIPPED", "MASKED", "RECENTER", "LOW_FLUX"),
        description="Stamp flags (stamps.PairFlag names) that exclude a pair.",
    )
    max_chi2_reduced: float | None = Field(
        None, gt=0, description="Reject pairs whose forward fit ends above this reduced chi-square."
    )

    @field_validator("noll")
    @classmethod
    def _check_noll(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) < 4 or max(value) > 28 or len(set(value)) != len(value):
            raise ValueError(f"noll must be distinct indices in 4..28, got {value}")
        return tuple(sorted(value))

    @field_validator("reject_flags")
    @classmethod
    def _check_flags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in PairFlag.__members__]
        if unknown:
            raise ValueError(f"unknown PairFlag names {unknown}; known: {list(PairFlag.__members__)}")
        return value

    def forward_options(self, *, with_grid: bool = True) -> ForwardOptions:
        """The `ForwardOptions` equivalent of this configuration.

        Parameters
        ----------
        with_grid : `bool`, optional
            Keep ``z4_grid_um`` (the forward fit's start from a grid of focus values); False when the fit
            starts from a TIE seed instead.
        """
        return ForwardOptions(
            noll=self.noll,
            coarse_binning=self.coarse_binning,
            polish_binning=self.polish_binning,
            step_tol=self.step_tol_sigma,
            zernike_tol_um=self.step_tol_um,
            chi2_tol=self.chi2_tol,
            max_nfev=self.max_nfev,
            z4_grid_um=self.z4_grid_um if with_grid else (),
            blur_per_donut=self.blur_per_donut,
            model_error_fraction=self.model_error_fraction,
            diffraction_band_m=self.diffraction_band_m,
        )

    @property
    def reject_mask(self) -> PairFlag:
        """The union of `reject_flags`."""
        mask = PairFlag.NONE
        for name in self.reject_flags:
            mask |= PairFlag[name]
        return mask


@dataclasses.dataclass(frozen=True)
class PairEstimate:
    """What one donut pair gave.

    Attributes
    ----------
    index : `int`
        The pair's ``index`` (its position in the donut catalog).
    zernikes_um, zernikes_err_um : `numpy.ndarray` or `None`, shape (len(noll),)
        Estimate and 1-sigma error, micrometres (`None` when the pair was not estimated; the error is NaN
        for the TIE alone, which has none).
    used : `bool`
        Whether it entered the combined wavefront.
    reason : `str`
        Why not (empty when used): ``"flagged: ..."``, ``"fit failed: ..."``, ``"poor fit: ..."``,
        ``"broadened: ..."``, ``"outlier: ..."``.
    algorithm : `str`
        What produced the estimate (``"danish"``, ``"tie+danish"``, ``"tie"``; ``"tie+danish (grid)"`` when
        the TIE seed failed and the grid start was used).
    chi2_reduced : `float`
        Reduced chi-square of the forward fit (NaN for the TIE alone).
    fwhm_arcsec : `numpy.ndarray` or `None`
        Fitted seeing.
    structure_fraction : `tuple` of `float`
        Residual structure of the forward fit beyond the noise, relative to the model, intra and extra
        (`forward.ForwardFitResult.structure_fraction`; NaN for the TIE alone).
    success : `bool`
        The estimator's own verdict.
    nfev : `int`
        Model evaluations (forward fit) or TIE iterations.
    message : `str`
        The estimator's message.
    elapsed_s : `float`
        Wall time for this pair when it was estimated, seconds.
    snr : `tuple` of `float`
        Signal-to-noise ratio of the intra and the extra donut (`stamps.Stamp.snr`).
    star_field_deg : `tuple` of `float` or `None`
        Field angle of the star, batoid frame, degrees, where the design reference of ``zernikes_um`` is
        taken (`refer_to_stars`); `None`: at the field of the donut's pixel through the design's mapping.
    """

    index: int
    zernikes_um: NDArray[np.float64] | None
    zernikes_err_um: NDArray[np.float64] | None
    used: bool
    reason: str
    algorithm: str
    chi2_reduced: float = float("nan")
    fwhm_arcsec: NDArray[np.float64] | None = None
    structure_fraction: tuple[float, ...] = (float("nan"), float("nan"))
    success: bool = False
    nfev: int = 0
    message: str = ""
    elapsed_s: float = 0.0
    snr: tuple[float, float] = (float("nan"), float("nan"))
    star_field_deg: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _read_only(self.zernikes_um, self.zernikes_err_um, self.fwhm_arcsec)

    def __repr__(self) -> str:
        """A one-line summary: arrays as their shape and dtype (`reprs.summary_repr`)."""
        return summary_repr(self)


def _read_only(*arrays: NDArray | None) -> None:
    """Make a frozen result's arrays read-only too (a frozen dataclass keeps its arrays writable)."""
    for array in arrays:
        if array is not None:
            array.setflags(write=False)


@dataclasses.dataclass(frozen=True)
class WavefrontEstimate:
    """The wavefront of one intra/extra exposure pair.

    Attributes
    ----------
    noll : `tuple` of `int`
        Noll indices.
    um, um_err : `numpy.ndarray`, shape (len(noll),)
        Combined in-focus deviation from the design and its uncertainty, micrometres.
    scatter_um : `numpy.ndarray`, shape (len(noll),)
        Standard deviation over the pairs used, micrometres.
    pairs : `tuple` of `PairEstimate`
        Every pair, used or not.
    algorithm : `str`
        Configured algorithm.
    elapsed_s : `float`
        Wall time, seconds.
    """

    noll: tuple[int, ...]
    um: NDArray[np.float64]
    um_err: NDArray[np.float64]
    scatter_um: NDArray[np.float64]
    pairs: tuple[PairEstimate, ...]
    algorithm: str
    elapsed_s: float

    def __post_init__(self) -> None:
        _read_only(self.um, self.um_err, self.scatter_um)

    def __repr__(self) -> str:
        """Algorithm, pairs used and Z4-Z11 in nm (`reprs.summary_repr`)."""
        return summary_repr(
            self, ("algorithm", "noll"), {"n_used": str(self.n_used), "nm": zernikes_nm(self.noll, self.um)}
        )

    @property
    def n_used(self) -> int:
        """Number of pairs in the combination."""
        return sum(p.used for p in self.pairs)


def estimate_pair(pair: DonutPair, *, config: EstimationConfig, telescope: AuxTel) -> PairEstimate:
    """Estimate one pair (never raises for a science failure: the reason is in the result).

    Parameters
    ----------
    pair : `DonutPair`
        The stamps.
    config : `EstimationConfig`
        Algorithm and options.
    telescope : `AuxTel`
        Geometry and wavelength (hexapod state ignored: the reference is the design).
    """
    t0 = time.perf_counter()
    try:
        if config.algorithm == "tie":
            return _tie_only(pair, config, telescope, t0)
        seed, label = None, "danish"
        if config.algorithm == "tie+danish":
            seed, label = _tie_seed(pair, config, telescope)
        fit = fit_pair(
            pair, telescope=telescope, options=config.forward_options(with_grid=seed is None), start_um=seed
        )
        return _from_fit(pair, fit, label, config, t0)
    except EstimationError as exc:
        fit = exc.result if isinstance(exc.result, ForwardFitResult) else None
        return PairEstimate(
            index=pair.index,
            zernikes_um=None if fit is None else fit.zernikes_um,
            zernikes_err_um=None if fit is None else fit.zernikes_err_um,
            used=False,
            reason=f"fit failed: {exc}",
            algorithm=config.algorithm,
            chi2_reduced=float("nan") if fit is None else fit.chi2_reduced,
            fwhm_arcsec=None if fit is None else fit.fwhm_arcsec,
            nfev=0 if fit is None else fit.nfev,
            message=str(exc),
            elapsed_s=time.perf_counter() - t0,
        )
    except AuxTelWepError as exc:
        return PairEstimate(
            index=pair.index,
            zernikes_um=None,
            zernikes_err_um=None,
            used=False,
            reason=f"fit failed: {exc}",
            algorithm=config.algorithm,
            message=str(exc),
            elapsed_s=time.perf_counter() - t0,
        )


def _tie_result(pair: DonutPair, config: EstimationConfig, telescope: AuxTel, *, binning: int = 1):
    from .tie import solve_tie
    from .tie_geometry import TieGeometry

    geometry = TieGeometry.auxtel(telescope.with_hexapod(type(telescope.hexapod)()))
    images = [pair.intra.image, pair.extra.image]
    if binning > 1:
        geometry = dataclasses.replace(geometry, pixel_size_m=geometry.pixel_size_m * binning)
        images = [bin_stamp(np.asarray(image, dtype=float), binning)[0] for image in images]
    return solve_tie(
        *images,
        geometry=geometry,
        field_intra_deg=pair.intra.field_deg,
        field_extra_deg=pair.extra.field_deg,
        noll=config.noll,
        solver=config.tie_solver,
        model=config.tie_model,
    )


def _tie_seed(pair: DonutPair, config: EstimationConfig, telescope: AuxTel) -> tuple[NDArray | None, str]:
    try:
        result = _tie_result(pair, config, telescope, binning=config.tie_seed_binning)
    except AuxTelWepError as exc:
        _log.info("pair %d: TIE seed failed (%s); starting from the Z4 grid", pair.index, exc)
        return None, "tie+danish (grid)"
    if not result.converged or not np.all(np.isfinite(result.deviation_um)):
        _log.info("pair %d: TIE did not converge (%s); starting from the Z4 grid", pair.index, result.message)
        return None, "tie+danish (grid)"
    return np.asarray(result.deviation_um, dtype=float), "tie+danish"


def _tie_only(pair: DonutPair, config: EstimationConfig, telescope: AuxTel, t0: float) -> PairEstimate:
    result = _tie_result(pair, config, telescope)
    z = np.asarray(result.deviation_um, dtype=float)
    return PairEstimate(
        index=pair.index,
        zernikes_um=z,
        zernikes_err_um=np.full(z.shape, np.nan),
        used=bool(result.converged),
        reason="" if result.converged else f"fit failed: TIE {result.message}",
        algorithm="tie",
        success=bool(result.converged),
        nfev=int(result.iterations),
        message=result.message,
        elapsed_s=time.perf_counter() - t0,
    )


def _from_fit(
    pair: DonutPair, fit: ForwardFitResult, label: str, config: EstimationConfig, t0: float
) -> PairEstimate:
    reason = ""
    if config.max_chi2_reduced is not None and fit.chi2_reduced > config.max_chi2_reduced:
        reason = f"poor fit: reduced chi-square {fit.chi2_reduced:.2f} > {config.max_chi2_reduced}"
    return PairEstimate(
        index=pair.index,
        zernikes_um=fit.zernikes_um,
        zernikes_err_um=np.hypot(fit.zernikes_err_um, config.model_floor_um),
        used=not reason,
        reason=reason,
        algorithm=label,
        chi2_reduced=fit.chi2_reduced,
        fwhm_arcsec=fit.fwhm_arcsec,
        structure_fraction=fit.structure_fraction,
        success=fit.success,
        nfev=fit.nfev,
        message=fit.message,
        elapsed_s=time.perf_counter() - t0,
    )


# --- worker processes ---------------------------------------------------------------------------------------
# One pool per process, created on first need and reused (start-up costs about a second per worker: the
# imports, plus the design fits, which are computed once here and installed in each worker). The context is
# "forkserver": forking a process that runs threads (DDS, asyncio executors) can deadlock the child.
_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_POOL_KEY: tuple[int, float] | None = None


_OWNER_POLL_S = 2.0
"""How often a pool worker checks that the process owning the pool is still alive, seconds."""


def _worker_init(fits: dict, owner_pid: int) -> None:
    install_design_fits(fits)
    # A pool worker blocks on its task queue forever if the process that owns the pool dies without
    # shutting it down (killed, or a multiprocessing child that exits without atexit): leave with it.
    threading.Thread(target=_exit_with_owner, args=(owner_pid,), daemon=True, name="owner-watch").start()


def _exit_with_owner(owner_pid: int) -> None:
    while True:
        time.sleep(_OWNER_POLL_S)
        try:
            os.kill(owner_pid, 0)
        except ProcessLookupError:
            os._exit(0)


def start_pool(*, workers: int = 0, wavelength_m: float = DEFAULT_WAVELENGTH_M) -> None:
    """Start the worker processes of `estimate_wavefront` now and wait until they are ready.

    A long-lived caller (the CSC's pipeline worker) starts them once, so that every triplet, even one
    with two donut pairs, is estimated in parallel without paying the start-up (about a second).

    Parameters
    ----------
    workers : `int`
        Processes (0: one per core), as `EstimationConfig.max_workers`.
    wavelength_m : `float`
        Wavelength of the model, metres (the pipeline's ``wavelength_nm``).
    """
    workers = _n_workers(workers)
    if workers <= 1:
        return
    pool = _pool(workers, wavelength_m)
    for future in [pool.submit(os.getpid) for _ in range(workers)]:
        future.result()


def _n_workers(configured: int) -> int:
    return configured or (os.cpu_count() or 1)


def _pool_running(workers: int, wavelength_m: float) -> bool:
    return _POOL is not None and _POOL_KEY == (workers, float(wavelength_m))


def _pool(workers: int, wavelength_m: float) -> concurrent.futures.ProcessPoolExecutor:
    global _POOL, _POOL_KEY
    key = (workers, float(wavelength_m))
    if _POOL is None or _POOL_KEY != key:
        shutdown_pool()
        context = multiprocessing.get_context("forkserver")
        _POOL = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_worker_init,
            initargs=(design_fits(wavelength_m), os.getpid()),
        )
        _POOL_KEY = key
    return _POOL


def shutdown_pool() -> None:
    """Stop the worker processes of `estimate_wavefront`, if any."""
    global _POOL, _POOL_KEY
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
    _POOL, _POOL_KEY = None, None


# Runs at exit of the main process (multiprocessing registers its finalizers with atexit) and, unlike
# atexit, also when the pool belongs to a multiprocessing child such as the CSC's pipeline worker.
multiprocessing.util.Finalize(None, shutdown_pool, exitpriority=100)


# --- estimates already made ----------------------------------------------------------------------------
# A pair's estimate is a function of its stamps, field, gain, the configuration and the telescope: the
# same pair estimated again (the CSC estimates a triplet's pairs ahead, while the in-focus image is being
# taken, then processes the triplet) gets the first result back. Keys are content hashes, so a pair
# that differs in any pixel is estimated anew.
_MEMO: collections.OrderedDict[bytes, PairEstimate] = collections.OrderedDict()
_MEMO_SIZE = 64


def _memo_key(pair: DonutPair, config: EstimationConfig, telescope: AuxTel) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    for stamp in (pair.intra, pair.extra):
        for array in (stamp.image, stamp.variance, stamp.mask):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(np.asarray(stamp.field_deg, dtype=float).tobytes())
    digest.update(repr((pair.gain, config.model_dump_json(), telescope)).encode())
    return digest.digest()


def forget_estimates() -> None:
    """Forget the pair estimates kept for reuse (see `estimate_wavefront`)."""
    _MEMO.clear()


def _estimate_all(
    pairs: Sequence[DonutPair], config: EstimationConfig, telescope: AuxTel
) -> list[PairEstimate]:
    keys = [_memo_key(p, config, telescope) for p in pairs]
    new = {k: p for k, p in zip(keys, pairs, strict=True) if k not in _MEMO}
    for key, estimate in zip(new, _run_all(list(new.values()), config, telescope), strict=True):
        for array in (estimate.zernikes_um, estimate.zernikes_err_um, estimate.fwhm_arcsec):
            if array is not None:
                array.setflags(write=False)  # handed out again: nobody may change it in place
        _MEMO[key] = estimate
    results = []
    for key, pair in zip(keys, pairs, strict=True):
        _MEMO.move_to_end(key)
        results.append(dataclasses.replace(_MEMO[key], index=pair.index))
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return results


def _run_all(pairs: Sequence[DonutPair], config: EstimationConfig, telescope: AuxTel) -> list[PairEstimate]:
    if not pairs:
        return []
    workers = _n_workers(config.max_workers)
    serial = workers <= 1 or len(pairs) <= 1
    # A cold pool pays for itself only with many pairs; a running one (`start_pool`) from two on.
    if not serial and len(pairs) < config.min_pairs_for_pool:
        serial = not _pool_running(workers, telescope.wavelength_m)
    if serial:
        return [estimate_pair(p, config=config, telescope=telescope) for p in pairs]
    pool = _pool(workers, telescope.wavelength_m)
    futures = [pool.submit(estimate_pair, p, config=config, telescope=telescope) for p in pairs]
    return [f.result() for f in futures]


def estimate_wavefront(
    pairs: Sequence[DonutPair],
    *,
    config: EstimationConfig | Mapping[str, Any] | None = None,
    telescope: AuxTel | None = None,
) -> WavefrontEstimate:
    """Estimate the wavefront from the donut pairs of one intra/extra exposure pair.

    The last 64 pair estimates are kept: a pair seen again (same pixels, variances, masks, field, gain,
    configuration and telescope) gets its estimate back instead of a new fit (`forget_estimates`).

    Parameters
    ----------
    pairs : sequence of `DonutPair`
        Stamps from `stamps.cut_pairs` (flagged pairs are reported, not estimated).
    config : `EstimationConfig` or mapping, optional
        Algorithm, terms, tolerances, parallelism, clipping (or a mapping of them).
    telescope : `AuxTel`, optional
        Geometry and wavelength (default: the design at its default wavelength).

    Returns
    -------
    estimate : `WavefrontEstimate`

    Raises
    ------
    InputError
        If ``pairs`` is empty.
    EstimationError
        If no pair could be used; ``result`` holds the `WavefrontEstimate` with every pair's reason.
    """
    config = as_config("config", config, EstimationConfig)
    telescope = telescope or AuxTel()
    t0 = time.perf_counter()
    if not pairs:
        raise InputError("no donut pairs to estimate from", value=0)
    reject = config.reject_mask
    todo = [p for p in pairs if not (p.flags & reject)]
    done = {p.index: e for p, e in zip(todo, _estimate_all(todo, config, telescope), strict=True)}
    results = []
    for p in pairs:
        snr = (p.intra.snr, p.extra.snr)
        if p.flags & reject:
            names = ", ".join(f.name for f in PairFlag if f and f in (p.flags & reject))
            detail = f" ({'; '.join(p.notes)})" if p.notes else ""
            results.append(
                PairEstimate(
                    index=p.index,
                    zernikes_um=None,
                    zernikes_err_um=None,
                    used=False,
                    reason=f"flagged: {names}{detail}",
                    algorithm=config.algorithm,
                    snr=snr,
                )
            )
        else:
            results.append(dataclasses.replace(done[p.index], snr=snr))
    return _combine(results, config, t0)


def refer_to_stars(
    estimate: WavefrontEstimate,
    pairs: Sequence[DonutPair],
    misalignment: HexapodState,
    *,
    config: EstimationConfig,
    telescope: AuxTel,
    light_fields_deg: Mapping[int, tuple[float, float]] | None = None,
) -> WavefrontEstimate:
    """Refer each pair's deviation to the design at its star's field instead of its pixel's.

    The fit subtracts the design reference of each role at the field of the donut's pixel through the
    design's mapping (``pair.intra.field_deg``); with M2 misaligned the star there is elsewhere on the sky
    (`AuxTel.star_field`), and the difference is the design's own field variation, not a deviation: 18-26
    nm of Z4 (and 2-9 nm of Z5-Z8) at 2.8 mm of decenter, 1-7 nm at 0.3 mm. Each estimate gets the design
    references of its pixel's field minus those of its star's field (the same quadratic field fits as the
    fit, averaged over the two roles, microseconds), and the combination is redone over the pairs already
    used (the choice of pairs and the correction made from them stay as they were). The errors stay: the
    misalignment's own error moves a star's field by ~2 px (4 um of decenter), its reference by < 0.05 nm.

    Parameters
    ----------
    estimate : `WavefrontEstimate`
        From `estimate_wavefront` on ``pairs``.
    pairs : sequence of `DonutPair`
        The pairs it was made from (their fields are the pixels').
    misalignment : `HexapodState`
        M2's state relative to ``telescope``'s (hexapod frame), e.g. minus the correction's offset.
    config : `EstimationConfig`
        The configuration of the estimate (combination settings).
    telescope : `AuxTel`
        The telescope of the estimate (camera angle, wavelength).
    light_fields_deg : mapping of `int` to `tuple` of `float`, optional
        By pair index, the field of the donut's light centroid through the design's mapping (detection's
        ``field_x_deg, field_y_deg``), from which its star is found (`AuxTel.star_field`); default: the
        pair's own field. The pair's field (the design reference the fit subtracted) is that of its stamps'
        centre pixels, which recentring puts on the donut's ring: ~7 px from the light centroid of a comatic
        donut at 2-2.8 mm of decenter (0.1 nm of Z4).

    Returns
    -------
    estimate : `WavefrontEstimate`
        The same pairs and choices, values referred to the stars' fields (`PairEstimate.star_field_deg`).

    Raises
    ------
    InputError
        If a star's light misses the detector in the misaligned model (M2 centimetres away).
    """
    moved = telescope.with_hexapod(telescope.hexapod + misalignment)
    fields = {p.index: np.mean([p.intra.field_deg, p.extra.field_deg], axis=0) for p in pairs}
    light = dict(light_fields_deg or {})
    results = []
    for result in estimate.pairs:
        pixel = fields.get(result.index)
        if result.zernikes_um is None or pixel is None:
            results.append(result)
            continue
        star = moved.star_field(*light.get(result.index, pixel))
        shift = reference_shift(telescope, pixel, star, noll=estimate.noll)
        results.append(
            dataclasses.replace(result, zernikes_um=result.zernikes_um + shift, star_field_deg=star)
        )
    used = [r for r in results if r.used and r.zernikes_um is not None]
    if not used:
        return dataclasses.replace(estimate, pairs=tuple(results))
    comb = sigma_clip_combine(
        np.array([r.zernikes_um for r in used]),
        np.array([r.zernikes_err_um for r in used]),
        threshold=np.inf,
        floor_um=config.clip_floor_um,
    )
    return dataclasses.replace(
        estimate, um=comb.mean_um, um_err=comb.err_um, scatter_um=comb.scatter_um, pairs=tuple(results)
    )


def reference_shift(
    telescope: AuxTel,
    pixel_field_deg: Sequence[float],
    star_field_deg: Sequence[float],
    *,
    noll: Sequence[int],
) -> NDArray[np.float64]:
    """What moving a pair's design reference from its pixel's field to its star's adds to its deviation.

    Parameters
    ----------
    telescope : `AuxTel`
        Wavelength of the references (its hexapod state is ignored).
    pixel_field_deg, star_field_deg : sequence of `float`
        The pair's field (``pair.intra.field_deg``) and its star's (`PairEstimate.star_field_deg`), degrees.
    noll : sequence of `int`
        Noll indices.

    Returns
    -------
    shift_um : `numpy.ndarray`, shape (len(noll),)
        The design references at the pixel's field minus those at the star's, averaged over the intra and
        extra roles, micrometres: add it to a deviation at the pixel's field to refer it to the star's
        (`refer_to_stars`), subtract it to go back (the forward model's references are the pixel's).
    """
    index = np.asarray(noll, dtype=int)
    jmax = int(index.max())
    return np.mean(
        [
            design_references(telescope, role, *pixel_field_deg, jmax=jmax)[index]
            - design_references(telescope, role, *star_field_deg, jmax=jmax)[index]
            for role in (Role.INTRA, Role.EXTRA)
        ],
        axis=0,
    )


def _broadened(
    results: list[PairEstimate], candidates: list[int], config: EstimationConfig
) -> dict[int, str]:
    """Pairs whose fitted seeing is well above the other pairs' in every exposure, with the reason.

    Every donut of an exposure sees the same seeing, and nothing makes one star's donut sharper than that.
    Two stars closer than detection's blend tests resolve (~45 px) fit as one donut blurred by their
    separation: 1.7-2.0" at 20 px and 2.3-2.9" at 30 px for 1" seeing, with Z4-Z11 off by 2-4 and 8 nm.
    Single donuts at SNR 60-100 fit within x1.22 of their median (0.7-1.5" seeing).
    """
    if config.broadened_ratio is None:
        return {}
    fitted = [i for i in candidates if results[i].fwhm_arcsec is not None]
    if len(fitted) < 2:
        return {}
    fwhm = np.array([results[i].fwhm_arcsec for i in fitted], dtype=float)
    found = {}
    for k, i in enumerate(fitted):
        others = np.median(np.delete(fwhm, k, axis=0), axis=0)
        excess = fwhm[k] - others
        if np.all(fwhm[k] > config.broadened_ratio * others) and np.all(excess > config.broadened_min_arcsec):
            found[i] = (
                f"broadened: fitted seeing {_arcsec(fwhm[k])} against {_arcsec(others)} for the other donuts "
                f"of these exposures (more than x{config.broadened_ratio:g}): an unresolved blend or an "
                "extended source"
            )
    return found


def _arcsec(values: NDArray[np.float64]) -> str:
    return "/".join(f'{v:.2f}"' for v in values)


def _combine(results: list[PairEstimate], config: EstimationConfig, t0: float) -> WavefrontEstimate:
    nz = len(config.noll)
    candidates = [i for i, r in enumerate(results) if r.used and r.zernikes_um is not None]
    for i, reason in _broadened(results, candidates, config).items():
        results[i] = dataclasses.replace(results[i], used=False, reason=reason)
    candidates = [i for i in candidates if results[i].used]
    if not candidates:
        estimate = WavefrontEstimate(
            noll=config.noll,
            um=np.full(nz, np.nan),
            um_err=np.full(nz, np.nan),
            scatter_um=np.full(nz, np.nan),
            pairs=tuple(results),
            algorithm=config.algorithm,
            elapsed_s=time.perf_counter() - t0,
        )
        reasons = "; ".join(f"pair {r.index}: {r.reason}" for r in results)
        raise EstimationError(f"no usable donut pair out of {len(results)}: {reasons}", result=estimate)
    values = np.array([results[i].zernikes_um for i in candidates])
    errors = np.array([results[i].zernikes_err_um for i in candidates])
    comb: Combination = sigma_clip_combine(
        values, errors, threshold=config.sigma_clip, floor_um=config.clip_floor_um
    )
    for k, i in enumerate(candidates):
        if not comb.kept[k]:
            results[i] = dataclasses.replace(
                results[i],
                used=False,
                reason=f"outlier: {comb.distance[k]:.1f} sigmas from the other pairs (> {config.sigma_clip})",
            )
    return WavefrontEstimate(
        noll=config.noll,
        um=comb.mean_um,
        um_err=comb.err_um,
        scatter_um=comb.scatter_um,
        pairs=tuple(results),
        algorithm=config.algorithm,
        elapsed_s=time.perf_counter() - t0,
    )
