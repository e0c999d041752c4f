"""Running the science pipeline off the CSC's event loop.

The CSC hands a `cadence.Triplet` and the pipeline options to a *processor*, a picklable function
``(triplet, options) -> WepSummary`` run in a worker process (`WorkerPool`, spawn context), so heartbeats,
commands and intake stay responsive however long a triplet takes. The default processor, `run_pipeline`,
calls `lsst.ts.auxtelwep.pipeline.process` and summarises its result; tests inject fakes that sleep, burn CPU,
return fixed numbers or raise. A processor raises the package's errors (`errors.AuxTelWepError`) for bad
data; the CSC turns them into ``rejectedWavefrontError``.

`WepSummary` is what the CSC publishes and journals: plain numbers, micrometres for Zernikes (Noll indices
in ``noll``), mm and degrees for the hexapod correction, seconds for timings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import multiprocessing
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cadence import Triplet
from .errors import AuxTelWepError, ConfigurationError, as_config
from .instrument import HexapodState, Role, pair_camera_angle

if TYPE_CHECKING:  # the pipeline is imported only in worker processes (run_pipeline)
    from .intake import ImageInfo
    from .pipeline import PipelineConfig, WavefrontResult

__all__ = [
    "Processor",
    "WepSummary",
    "WorkAhead",
    "WorkerError",
    "WorkerPool",
    "estimate_ahead",
    "prepare_raw",
    "run_pipeline",
    "summarize",
    "warm_pipeline",
]

log = logging.getLogger(__name__)


class WorkerError(AuxTelWepError, RuntimeError):
    """A worker process died or overran its time limit (the pool is restarted)."""


@dataclasses.dataclass(frozen=True)
class WepSummary:
    """What the CSC publishes for one processed triplet.

    Attributes
    ----------
    noll : `tuple` of `int`
        Noll indices of the Zernikes.
    zernikes_um, zernikes_err_um : `tuple` of `float`
        In-focus wavefront deviation from the design and its 1-sigma error, micrometres, one per ``noll``.
    donut_count : `int`
        Donut pairs combined.
    reduced_chi2 : `float`
        Reduced chi-square of the fit (NaN if the estimator has none).
    algorithm : `str`
        Estimator (``tie``, ``danish``...).
    detection_mode, detection_reason : `str`
        How donuts were found and why that mode.
    wcs_scatter_arcsec : `float`
        Scatter of the catalog match, arcsec (NaN without a WCS match).
    correction : `HexapodState`
        Full hexapod correction (before the CSC's gains and limits), mm and degrees.
    solved_axes : `tuple` of `str`
        Axes solved (others are zero).
    timings_s : `dict` of `str` to `float`
        Seconds per stage: ``isr``, ``detection``, ``estimation``, ``total`` (others allowed).
    correction_sigma : `HexapodState`
        1-sigma uncertainty of ``correction`` per axis (0 for the axes not solved, and in results
        journaled before it was recorded).
    residual_structure : `float`
        Largest residual structure of the pairs used (`pipeline.WavefrontResult.residual_structure`; NaN
        when unknown).
    camera_angle_deg : `float` or `None`
        Camera angle the correction's x, y, u, v are in (`pipeline.WavefrontResult.camera_angle_deg`); None
        when unknown (then only z is solved).
    """

    noll: tuple[int, ...]
    zernikes_um: tuple[float, ...]
    zernikes_err_um: tuple[float, ...]
    donut_count: int
    reduced_chi2: float
    algorithm: str
    detection_mode: str
    detection_reason: str
    wcs_scatter_arcsec: float
    correction: HexapodState
    solved_axes: tuple[str, ...]
    timings_s: dict[str, float]
    correction_sigma: HexapodState = dataclasses.field(default_factory=HexapodState)
    residual_structure: float = float("nan")
    camera_angle_deg: float | None = None

    def __post_init__(self) -> None:
        if not len(self.noll) == len(self.zernikes_um) == len(self.zernikes_err_um):
            raise ConfigurationError(
                f"WepSummary: noll ({len(self.noll)}), zernikes_um ({len(self.zernikes_um)}) and "
                f"zernikes_err_um ({len(self.zernikes_err_um)}) must have the same length",
                value=(self.noll, self.zernikes_um),
            )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (inverse of `from_dict`)."""
        data = dataclasses.asdict(self)
        data["correction"] = self.correction.as_array().tolist()
        data["correction_sigma"] = self.correction_sigma.as_array().tolist()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WepSummary:
        """Build from `to_dict` output.

        Parameters
        ----------
        data : mapping [`str`, `object`]
            Output of `to_dict` (``correction_sigma`` may be missing).
        """
        fields = dict(data)
        fields["correction"] = HexapodState.from_array(fields["correction"])
        if "correction_sigma" in fields:
            fields["correction_sigma"] = HexapodState.from_array(fields["correction_sigma"])
        for name in ("noll", "zernikes_um", "zernikes_err_um", "solved_axes"):
            fields[name] = tuple(fields[name])
        return cls(**fields)


Processor = Callable[[Triplet, Mapping[str, Any]], WepSummary]
"""A picklable (module-level) function ``(triplet, pipeline options) -> WepSummary``."""


def summarize(result: WavefrontResult) -> WepSummary:
    """Summarise a `lsst.ts.auxtelwep.pipeline.WavefrontResult`.

    ``donut_count`` is the number of pairs combined; ``reduced_chi2`` the result's (median over those
    pairs; NaN if none has one). The correction is the pipeline's offset before its clipping
    (``offset``): the CSC applies its own gains and limits when it sends it.

    Parameters
    ----------
    result : `lsst.ts.auxtelwep.pipeline.WavefrontResult`
        The pipeline's result for one triplet.
    """
    estimate, catalog, correction = result.estimate, result.catalog, result.correction
    scatter = catalog.wcs_scatter_arcsec
    return WepSummary(
        noll=tuple(int(n) for n in estimate.noll),
        zernikes_um=tuple(float(v) for v in estimate.um),
        zernikes_err_um=tuple(float(v) for v in estimate.um_err),
        donut_count=int(estimate.n_used),
        reduced_chi2=float(result.reduced_chi2),
        algorithm=str(estimate.algorithm),
        detection_mode=str(catalog.mode),
        detection_reason=str(catalog.reason),
        wcs_scatter_arcsec=float("nan") if scatter is None else float(scatter),
        correction=correction.offset,
        solved_axes=tuple(correction.solved_axes),
        timings_s={k: float(v) for k, v in result.timings_s.items()},
        correction_sigma=correction.sigma,
        residual_structure=float(result.residual_structure),
        camera_angle_deg=result.camera_angle_deg,
    )


def run_pipeline(triplet: Triplet, options: Mapping[str, Any]) -> WepSummary:
    """The default processor: `lsst.ts.auxtelwep.pipeline.process` on the triplet's raw files.

    Parameters
    ----------
    triplet : `Triplet`
        The journaled triplet (raw paths, group id, camera angles).
    options : mapping [`str`, `object`]
        `pipeline.PipelineConfig` fields.

    Raises
    ------
    ConfigurationError
        If ``options`` do not validate as a `pipeline.PipelineConfig`.
    AuxTelWepError
        Whatever the pipeline raises for bad data.
    """
    from . import pipeline  # imported here: only worker processes pay for the science imports

    config = _pipeline_config(options)
    files = pipeline.Triplet(
        intra=Path(triplet.intra.path),
        extra=Path(triplet.extra.path),
        infocus=None if triplet.infocus is None else Path(triplet.infocus.path),
        group_id=triplet.group_id,
        camera_angle_deg=pair_camera_angle(triplet.intra.camera_angle_deg, triplet.extra.camera_angle_deg),
    )
    return summarize(pipeline.process(files, config=config))


def prepare_raw(path: str, options: Mapping[str, Any]) -> None:
    """Calibrate one raw ahead of its triplet (`lsst.ts.auxtelwep.pipeline.prepare`) in this worker.

    Parameters
    ----------
    path : `str`
        Path of the raw.
    options : mapping [`str`, `object`]
        `pipeline.PipelineConfig` fields.

    Raises
    ------
    AuxTelWepError
        What `run_pipeline` would raise for this file; the triplet reports it again when processed.
    """
    from . import pipeline

    pipeline.prepare(Path(path), config=_pipeline_config(options))


def estimate_ahead(intra_path: str, extra_path: str, options: Mapping[str, Any]) -> int:
    """Estimate a defocal pair's donuts before its triplet is complete (`pipeline.estimate_ahead`).

    Parameters
    ----------
    intra_path, extra_path : `str`
        Paths of the intra- and extra-focal raws.
    options : mapping [`str`, `object`]
        `pipeline.PipelineConfig` fields.

    Returns
    -------
    n_pairs : `int`
        Pairs estimated.

    Raises
    ------
    AuxTelWepError
        Whatever the pipeline raises; the triplet reports it again when processed.
    """
    from . import pipeline

    return pipeline.estimate_ahead(Path(intra_path), Path(extra_path), config=_pipeline_config(options))


def warm_pipeline(options: Mapping[str, Any]) -> None:
    """Do the pipeline's one-time work in a new worker (`lsst.ts.auxtelwep.pipeline.warm_up`).

    Parameters
    ----------
    options : mapping [`str`, `object`]
        `pipeline.PipelineConfig` fields.
    """
    from . import pipeline

    pipeline.warm_up(_pipeline_config(options))


def _pipeline_config(options: Mapping[str, Any]) -> PipelineConfig:
    from .pipeline import PipelineConfig

    return as_config("pipeline options", options, PipelineConfig)


def _start_only() -> None:
    """The default warm-up: nothing but starting the worker before the first triplet."""


def _log_warm_up_failure(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning(f"worker warm-up failed (the first triplet will redo it): {future.exception()!r}")


class WorkerPool:
    """A process pool for processors, restarted when a worker dies or overruns.

    Parameters
    ----------
    n_workers : `int`
        Worker processes.
    context : `str`, optional
        Multiprocessing start method; ``spawn`` (default) never copies the CSC's DDS threads.
    warm_up : callable, optional
        Picklable ``() -> None`` run first in each new worker (e.g. `warm_pipeline` bound to the
        options), so the first triplet does not pay for the one-time work; failures are logged.
    """

    def __init__(
        self, *, n_workers: int, context: str = "spawn", warm_up: Callable[[], None] | None = None
    ) -> None:
        self.n_workers = n_workers
        self.context = context
        self.warm_up = warm_up or _start_only
        self._pool = self._make()

    def _make(self) -> concurrent.futures.ProcessPoolExecutor:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.n_workers, mp_context=multiprocessing.get_context(self.context)
        )
        for _ in range(self.n_workers):
            pool.submit(self.warm_up).add_done_callback(_log_warm_up_failure)
        return pool

    async def run(self, func: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """Run ``func(*args)`` in a worker; return its result or raise its exception.

        Parameters
        ----------
        func : callable
            A picklable callable (a module-level function or a partial of one).
        *args
            Its (picklable) arguments.
        timeout : `float`
            Time limit, seconds.

        Raises
        ------
        WorkerError
            If the worker died, or did not finish within ``timeout`` seconds (it is then killed and the
            pool restarted; other triplets running in the pool fail the same way).
        """
        try:
            future = self._pool.submit(func, *args)
        except (BrokenProcessPool, RuntimeError):
            self.restart()
            future = self._pool.submit(func, *args)
        try:
            # Not asyncio.wait_for: on Python 3.11 it returns the result instead of raising when it is
            # cancelled just as the worker answers, and a cancelled CSC task then never ends.
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            self.restart()
            raise WorkerError(
                f"processing did not finish within {timeout:g} s; the worker was stopped"
            ) from None
        except BrokenProcessPool as exc:
            self.restart()
            raise WorkerError(f"the worker process died while processing ({exc})") from exc

    def restart(self) -> None:
        """Kill the workers and start a fresh pool."""
        self._kill()
        self._pool = self._make()

    def _kill(self) -> None:
        # ProcessPoolExecutor cannot cancel a running task: kill its processes (private attribute, guarded).
        processes = getattr(self._pool, "_processes", None) or {}
        for process in list(processes.values()):
            if process.is_alive():
                process.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self, *, grace_s: float = 3.0) -> None:
        """Stop the workers: idle ones exit cleanly, the others are killed after ``grace_s`` seconds.

        A worker that exits cleanly also stops the estimation processes it started; a killed one leaves
        them to notice its death (`estimation` polls for it) and their semaphores to the resource tracker.

        Parameters
        ----------
        grace_s : `float`, optional
            Time to wait for the workers to exit, seconds.
        """
        closer = threading.Thread(
            target=self._pool.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True
        )
        closer.start()
        closer.join(grace_s)
        if closer.is_alive():
            self._kill()


class WorkAhead:
    """The work a worker does on a triplet's images before the triplet is complete.

    Each accepted defocal image is calibrated as it arrives (`prepare_raw`); once a group has both, its
    donut pairs are estimated (`estimate_ahead`). The jobs go to the same `WorkerPool` as the triplets, so
    with one worker they run in arrival order and the triplet finds their results in that worker. Failures
    are only logged: the triplet reports any real problem when it is processed.
    """

    #: Groups remembered while waiting for their second defocal image.
    max_groups = 8

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._defocal: dict[str, dict[Role, str]] = {}

    def image_queued(
        self,
        pool: WorkerPool,
        info: ImageInfo,
        role: Role,
        group_id: str,
        *,
        options: Mapping[str, Any],
        timeout_s: float,
    ) -> None:
        """Start the work an accepted image allows (nothing for an in-focus image).

        Parameters
        ----------
        pool : `WorkerPool`
            Pool the jobs run in.
        info : `ImageInfo`
            The accepted image.
        role : `Role`
            Its role.
        group_id : `str`
            Its group; the second defocal image of a group starts the estimation.
        options : mapping [`str`, `object`]
            `pipeline.PipelineConfig` fields.
        timeout_s : `float`
            Time limit of each job, seconds.
        """
        if role is Role.INFOCUS:
            return
        run = functools.partial(pool.run, timeout=timeout_s)
        self._start(
            f"calibrating {info.obsid}", functools.partial(run, prepare_raw, info.path, dict(options))
        )
        defocal = self._defocal.setdefault(group_id, {})
        defocal[role] = info.path
        while len(self._defocal) > self.max_groups:  # groups whose partner never came
            del self._defocal[next(iter(self._defocal))]
        if len(defocal) == 2:
            del self._defocal[group_id]
            job = functools.partial(
                run, estimate_ahead, defocal[Role.INTRA], defocal[Role.EXTRA], dict(options)
            )
            self._start(f"estimating group {group_id}", job)

    async def cancel(self) -> None:
        """Stop waiting for the work in progress and forget the groups (the CSC left ENABLED)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._defocal.clear()

    def _start(self, what: str, job: Callable[[], Awaitable[Any]]) -> None:
        task = asyncio.create_task(self._logged(what, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(what: str, job: Callable[[], Awaitable[Any]]) -> None:
        try:
            await job()
        except Exception as exc:
            log.info(f"{what} ahead of the triplet failed: {exc}")
