"""`AuxTelWepCsc`: the AuxTelWEP CSC (wavefront estimation for AuxTel/LATISS).

What it does while ENABLED
--------------------------
- **Intake** (`csc_intake`): ATCamera ``endReadout`` and ATOODS ``imageInOODS`` -> raw under the data
  root -> `cadence.Sequencer` -> journal; publishes ``imageReceived`` and ``cadenceWarning``.
- **Processing**: each complete triplet goes to the processor (default `csc_worker.run_pipeline`) in a
  worker process; ``donutDetection``, ``wavefrontError``, ``hexapodCorrection`` (applied=false) and
  ``wepDuration`` are published, or ``rejectedWavefrontError`` with the reason. Bad data never faults the CSC.
- **Corrections** (`csc_corrections`): ``issueCorrection`` (or, in closed loop with ``auto_apply``, each new
  result more than ``min_significance`` sigma from zero) sends the last correction to ATAOS
  ``offset`` after the gains and limits of `closed_loop.plan_step`; the journal's claim makes sure one
  result is never sent twice, even across a crash. ``hexapodCorrection`` (applied=true) then reports what
  was sent.
- **Telemetry**: ``zernikeCorrection`` and ``hexapodCorrection`` (the last result) every
  ``telemetry_interval_s``.

FAULT is for lost dependencies only, found while ENABLED (a missing one fails ``enable``): the data root
unreadable, or a configured refcat / calibration directory missing. The journal (SQLite in ``state_dir``) is
opened at ``start``; at the first enable after that, pending work is resumed: queued images go back to the
sequencer, triplets that were being processed are processed again (at most ``max_attempts`` times in all),
and a correction that was in flight becomes UNCERTAIN and is reported, never re-sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from . import __version__
from .cadence import Triplet, TripletState
from .closed_loop import ClosedLoop, ClosedLoopState
from .config import SHIPPED_CONFIG_DIR, AuxTelWepConfig, load_config
from .csc_corrections import CorrectionSender, NothingSignificantError
from .csc_intake import ROLE_NAMES, ImageIntake
from .csc_publish import parse_overrides, publish_correction, publish_rejected, publish_result, zernike_slots
from .csc_recovery import ERROR_CONFIG, ERROR_DATA_ROOT, dependency_problem, resume_work
from .csc_worker import Processor, WepSummary, WorkAhead, WorkerPool, run_pipeline, warm_pipeline
from .errors import AuxTelWepError, ConfigurationError
from .instrument import HexapodState, Role, camera_angle_from_mount
from .intake import ImageInfo, RawLocator, read_image_info
from .journal import JOURNAL_FILE_NAME, CorrectionState, ImageStatus, Journal, TripletRecord
from .m2_moves import M2MoveWatcher
from .sal import (
    ConfigurableCsc,
    ExpectedError,
    Remote,
    State,
    current_tai,
)

__all__ = ["ERROR_CONFIG", "ERROR_DATA_ROOT", "AuxTelWepCsc", "run_auxtelwep"]

#: Interval of the intake housekeeping (partner timeouts, silent ATOODS), seconds.
HOUSEKEEPING_INTERVAL_S = 1.0
#: Interval between checks that the data root is still readable, seconds.
DEPENDENCY_CHECK_INTERVAL_S = 10.0
#: Camera events kept from before the CSC started (late-joiner history), so images announced while it was
#: down are not lost.
EVENT_HISTORY = 50
#: Camera events queued while the CSC is not ENABLED (read at enable): a night's images, not salobj's 100.
CAMERA_QUEUE_LEN = 2000
#: Mount telemetry older than this at an image's readout does not give its camera angle, seconds (ATMCS
#: writes it every second; a silent ATMCS is not the mount of now).
MOUNT_TELEMETRY_MAX_AGE_S = 5.0


class AuxTelWepCsc(ConfigurableCsc):
    """The AuxTelWEP CSC (see the module docstring).

    Parameters
    ----------
    config_dir : `str` or `pathlib.Path`, optional
        Configuration directory (default: the shipped one).
    initial_state, override, simulation_mode, check_if_duplicate
        As `sal.BaseCsc`.
    processor : callable, optional
        ``(cadence.Triplet, options) -> csc_worker.WepSummary``, picklable; default `csc_worker.run_pipeline`.
    mp_context : `str`, optional
        Start method of the worker processes.
    """

    config_model: ClassVar[type[AuxTelWepConfig]] = AuxTelWepConfig
    version: ClassVar[str] = __version__
    auth_commands: ClassVar[frozenset[str]] = frozenset({"issueCorrection", "startClosedLoop"})
    default_config_dir: ClassVar[Path | None] = SHIPPED_CONFIG_DIR

    def __init__(
        self,
        config_dir: str | Path | None = None,
        initial_state: State = State.STANDBY,
        override: str = "",
        simulation_mode: int = 0,
        *,
        processor: Processor = run_pipeline,
        mp_context: str = "spawn",
        check_if_duplicate: bool = False,
    ) -> None:
        self.processor = processor
        self.mp_context = mp_context
        self.cfg: AuxTelWepConfig | None = None
        self.journal: Journal | None = None
        self.intake: ImageIntake | None = None
        self.pool: WorkerPool | None = None
        self._warm_options: dict[str, Any] | None = None
        self.ahead = WorkAhead()
        self.closed_loop = ClosedLoop()
        self.last_summary: WepSummary | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._in_progress: set[str] = set()  # keys being processed now
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._recovered = False
        self._start_tai = current_tai()
        self._fault_task: asyncio.Task[None] | None = None
        self._enable_commanded = False  # an enable command (not the initial state) starts a new epoch
        super().__init__(
            "AuxTelWEP",
            config_dir=config_dir,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
            check_if_duplicate=check_if_duplicate,
        )

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start_extra(self) -> None:
        await super().start_extra()
        camera_events = dict(evt_max_history=EVENT_HISTORY, queue_len=CAMERA_QUEUE_LEN)
        self.atcamera = Remote(self.domain, "ATCamera", include=["endReadout"], **camera_events)
        self.atoods = Remote(self.domain, "ATOODS", include=["imageInOODS"], **camera_events)
        # When M2 has moved for an offset: ATAOS acknowledges it before moving while the shutter is open.
        self.ataos = Remote(
            self.domain,
            "ATAOS",
            include=["summaryState", "hexapodCorrectionStarted", "hexapodCorrectionCompleted"],
        )
        self.m2_moves = M2MoveWatcher()
        self.ataos.evt_summaryState.callback = self.m2_moves.on_summary_state
        self.ataos.evt_hexapodCorrectionStarted.callback = self.m2_moves.on_started
        self.ataos.evt_hexapodCorrectionCompleted.callback = self.m2_moves.on_completed
        # The camera angle of each image (elevation - Nasmyth-2): real raws do not carry it.
        self.atmcs = Remote(self.domain, "ATMCS", include=["mount_AzEl_Encoders", "mount_Nasmyth_Encoders"])
        self.evt_closedLoopState.set_write(state=ClosedLoopState.IDLE)

    def read_config(self, override: str) -> tuple[AuxTelWepConfig, list[str]]:
        """Read the configuration files (`config.load_config`); refuse with ExpectedError.

        The names returned (for ``configurationApplied``) are relative to its ``url``, the configuration
        directory, as in ts_salobj: the shipped defaults, outside it, are not named (they would read as the
        directory's ``_init.yaml`` a second time).

        Parameters
        ----------
        override : `str`
            Override file name in the configuration directory; "" for none.
        """
        try:
            config, files = load_config(self.config_dir, override)
        except ConfigurationError as exc:
            raise ExpectedError(str(exc)) from exc
        folder = self.config_dir.resolve() if self.config_dir is not None else None
        return config, [Path(f).name for f in files if Path(f).parent == folder]

    async def configure(self, config: AuxTelWepConfig) -> None:
        """Open the journal and the data root of ``config``; start the worker pool.

        Parameters
        ----------
        config : `AuxTelWepConfig`
            The validated configuration.
        """
        # A bad configuration fails `start`, not the first triplet.
        self._check_pipeline_options(dict(config.pipeline), "invalid pipeline configuration")
        try:
            locator = RawLocator(config.data_root)
            journal = Journal(Path(config.state_dir).expanduser() / JOURNAL_FILE_NAME)
        except ConfigurationError as exc:
            raise ExpectedError(str(exc)) from exc
        if self.journal is not None:
            self.journal.close()
        self.cfg, self.journal, self._recovered = config, journal, False
        self.intake = ImageIntake(
            locator=locator,
            journal=journal,
            limits=config.cadence.limits(),
            oods_timeout_s=config.oods_timeout_s,
            sink=self,
            camera_angle=self._mount_camera_angle,
            log=self.log,
        )
        # The real pipeline's workers load its calibrations and start its estimation processes up front.
        warm = self._base_options(config) if self.processor is run_pipeline else None
        if self.pool is None or (self.pool.n_workers, self._warm_options) != (config.n_workers, warm):
            if self.pool is not None:
                self.pool.close()
            self.pool = WorkerPool(
                n_workers=config.n_workers,
                context=self.mp_context,
                warm_up=None if warm is None else functools.partial(warm_pipeline, warm),
            )
            self._warm_options = warm
        self.log.info(f"configured: data_root={config.data_root!r}, journal={journal.path}")

    def _mount_camera_angle(self, event_tai: float | None) -> float | None:
        """The camera angle at ``event_tai`` (TAI unix s) from ATMCS telemetry, None unless the last samples
        and the event are both within `MOUNT_TELEMETRY_MAX_AGE_S` of now (an event queued while DISABLED is
        read at enable, when the mount may have turned)."""
        samples = (self.atmcs.tel_mount_AzEl_Encoders.get(), self.atmcs.tel_mount_Nasmyth_Encoders.get())
        oldest = current_tai() - MOUNT_TELEMETRY_MAX_AGE_S
        if (event_tai is not None and event_tai < oldest) or any(
            data is None or data.private_rcvStamp < oldest for data in samples
        ):
            return None
        azel, nasmyth = samples
        return camera_angle_from_mount(azel.elevationCalculatedAngle, nasmyth.nasmyth2CalculatedAngle)

    async def begin_enable(self, data: Any) -> None:
        """Refuse enable (staying DISABLED) while a dependency is missing, naming it.

        Not while starting in ENABLED: there is no command to fail, and `handle_summary_state` faults.

        Parameters
        ----------
        data : `DataType`
            The ``enable`` command's data (no fields used).
        """
        problem = self._dependency_problem()
        if problem is not None and self.start_task.done():
            raise ExpectedError(f"cannot enable: {problem[1]}")
        # Also called on the way to an initial ENABLED state, before start is done: no command then.
        self._enable_commanded = self.start_task.done()

    async def handle_summary_state(self) -> None:
        if self.summary_state != State.ENABLED:
            await self._stop_work()
            return
        problem = self._dependency_problem()
        if problem is not None:  # enabled without an enable command (initial state): nobody to refuse
            await self.fault(code=problem[0], report=problem[1])
            return
        # The limits on the sum of offsets (correction.max_total) count from an operator's enable, not from
        # startClosedLoop (restarting the loop, the only way on after an ATAOS error, must not give it
        # another max_total) nor from a start straight into ENABLED (a supervisor's restart after a crash).
        if self._enable_commanded:
            self._journal.new_epoch("enable")
            self._enable_commanded = False
        else:
            total = HexapodState.from_array(self._journal.total_applied())
            self.log.info(
                f"started in ENABLED: the offsets sent since the last enable go on counting: {total}"
            )
        self._resume()
        n_workers = self._config.n_workers
        self._tasks = [asyncio.create_task(self._consume()) for _ in range(n_workers)]
        self._tasks += [asyncio.create_task(self._housekeeping()), asyncio.create_task(self._telemetry())]
        intake = self._intake
        self.atcamera.evt_endReadout.callback = lambda d: intake.on_end_readout(
            d.imageName,
            additional_keys=d.additionalKeys,
            additional_values=d.additionalValues,
            historical=d.private_sndStamp < self._start_tai,
            event_tai=d.private_sndStamp,
        )
        self.atoods.evt_imageInOODS.callback = lambda d: intake.on_image_in_oods(
            d.obsid,
            status_code=d.statusCode,
            description=d.description,
            historical=d.private_sndStamp < self._start_tai,
            event_tai=d.private_sndStamp,
        )

    async def _stop_work(self) -> None:
        for topic in (getattr(self, "atcamera", None), getattr(self, "atoods", None)):
            if topic is not None:
                for reader in topic.topic_names:
                    getattr(topic, reader).callback = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, self.ahead.cancel(), return_exceptions=True)
        if self._tasks and self.journal is not None:
            # Stopped on purpose: processed again at the next enable, not counted as a failed attempt.
            for key in self.journal.requeue_interrupted(
                f"interrupted: the CSC left ENABLED ({self.summary_state!r})"
            ):
                self.log.info(f"triplet {key} interrupted; it is processed again at the next enable")
        self._tasks = []
        self._queue = asyncio.Queue()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(ExpectedError(f"the CSC left ENABLED (now {self.summary_state!r})"))
        self._waiters.clear()
        self._move_loop(ClosedLoopState.IDLE)

    async def close_tasks(self) -> None:
        await self._stop_work()
        if self.pool is not None:
            self.pool.close()
        if self.journal is not None:
            self.journal.close()
        await super().close_tasks()

    @property
    def _config(self) -> AuxTelWepConfig:
        if self.cfg is None:
            raise ExpectedError("not configured: send start first")
        return self.cfg

    @property
    def _journal(self) -> Journal:
        if self.journal is None:
            raise ExpectedError("not configured: send start first")
        return self.journal

    @property
    def _intake(self) -> ImageIntake:
        if self.intake is None:
            raise ExpectedError("not configured: send start first")
        return self.intake

    def _dependency_problem(self) -> tuple[int, str] | None:
        return dependency_problem(self._config, self._intake)

    def _resume(self) -> None:
        """Resume journaled work (see the module docstring)."""
        first, self._recovered = not self._recovered, True
        for key in resume_work(self._journal, self._intake, first=first, log=self.log):
            self._queue.put_nowait(key)

    # --- intake sink (csc_intake.IntakeSink) -------------------------------------------------------------

    def image_received(
        self, obsid: str, *, group_id: str, role: Role | None, status: str, reason: str
    ) -> None:
        """Write ``imageReceived`` (`csc_intake.IntakeSink.image_received`).

        Parameters
        ----------
        obsid : `str`
            Observation id.
        group_id : `str`
            Group of the image ("" if unknown).
        role : `Role` or None
            Role of the image; None if not known.
        status : `str`
            ``"accepted"``, ``"ignored"`` or ``"rejected"``.
        reason : `str`
            Why it was ignored or rejected ("" if accepted).
        """
        self.evt_imageReceived.set_write(
            obsid=obsid,
            groupId=group_id,
            role=ROLE_NAMES.get(role, "") if role is not None else "",
            status=status,
            reason=reason,
            force_output=True,
        )

    def cadence_warning(self, kind: str, *, group_id: str, obsid: str, message: str) -> None:
        """Write ``cadenceWarning`` (`csc_intake.IntakeSink.cadence_warning`).

        Parameters
        ----------
        kind : `str`
            Kind of warning (`csc_intake.kind_name`).
        group_id : `str`
            Group concerned ("" if none).
        obsid : `str`
            Image concerned ("" if none).
        message : `str`
            Description for operators.
        """
        self.evt_cadenceWarning.set_write(
            kind=kind, groupId=group_id, obsid=obsid, message=message, force_output=True
        )

    def image_queued(self, info: ImageInfo, role: Role, group_id: str) -> None:
        """Start the work ahead on an accepted image (real pipeline only; `WorkAhead.image_queued`).

        Parameters
        ----------
        info : `ImageInfo`
            The image's header values and path.
        role : `Role`
            Its role in the triplet.
        group_id : `str`
            Its group.
        """
        if self.processor is run_pipeline and self.pool is not None:
            config = self._config
            self.ahead.image_queued(
                self.pool,
                info,
                role,
                group_id,
                options=self._base_options(config),
                timeout_s=config.process_timeout_s,
            )

    def triplet_ready(self, key: str) -> None:
        """Queue a journaled COMPLETE triplet for processing.

        Parameters
        ----------
        key : `str`
            Journal key of the triplet.
        """
        self._queue.put_nowait(key)

    def triplet_rejected(self, triplet: Triplet, reason: str) -> None:
        """Write ``rejectedWavefrontError`` for a triplet refused before processing.

        Parameters
        ----------
        triplet : `Triplet`
            The triplet.
        reason : `str`
            Why it was refused.
        """
        publish_rejected(self, triplet, reason)

    def data_root_lost(self, message: str) -> None:
        """Go to FAULT (soon, from a callback) with the data-root error code.

        Parameters
        ----------
        message : `str`
            What went wrong, for the ``errorCode`` report.
        """
        self._fault_soon(ERROR_DATA_ROOT, message)

    def _fault_soon(self, code: int, report: str) -> None:
        """Go to FAULT from code that cannot await (callbacks, the housekeeping task)."""
        if self._fault_task is None or self._fault_task.done():
            self._fault_task = asyncio.create_task(self.fault(code=code, report=report))

    # --- background tasks ------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            try:
                self._intake.housekeeping()
            except Exception:
                self.log.exception("intake housekeeping failed")
            try:
                # Journaled as they happen (a restart forgets the moves seen), not only when next needed.
                self._sender().settle()
            except Exception:
                self.log.exception("journaling M2's moves failed")
            if time.monotonic() - last_check > DEPENDENCY_CHECK_INTERVAL_S:
                last_check = time.monotonic()
                problem = self._dependency_problem()
                if problem is not None:
                    self._fault_soon(*problem)
                    return

    async def _telemetry(self) -> None:
        while True:
            summary = self.last_summary
            if summary is not None:
                noll, values, _ = zernike_slots(summary)
                self.tel_zernikeCorrection.set_write(nollZernikeIndices=noll, nollZernikeValues=values)
                c = summary.correction
                self.tel_hexapodCorrection.set_write(x=c.x, y=c.y, z=c.z, u=c.u, v=c.v)
            await asyncio.sleep(self._config.telemetry_interval_s)

    async def _consume(self) -> None:
        while True:
            key = await self._queue.get()
            self._in_progress.add(key)
            try:
                await self._process(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception(f"processing {key} failed unexpectedly")
                self._resolve(key, ExpectedError(f"processing {key} failed unexpectedly: {exc!r}"))
            finally:
                self._in_progress.discard(key)

    # --- processing ------------------------------------------------------------------------------------

    async def _process(self, key: str) -> None:
        journal, config = self._journal, self._config
        record = journal.triplet(key)
        if record is None or record.state is not TripletState.COMPLETE:
            return
        if record.attempts >= config.max_attempts:
            self._reject(
                record,
                f"processing started {record.attempts} times without finishing (the CSC stopped each time); "
                "giving up on this triplet",
            )
            return
        record = journal.set_triplet_state(key, TripletState.PROCESSING)
        self._move_loop(
            ClosedLoopState.PROCESSING,
            only_from=(ClosedLoopState.WAITING_IMAGE, ClosedLoopState.WAITING_APPLY),
        )
        options = self._pipeline_options(record)
        pool = self.pool
        if pool is None:
            raise ExpectedError("no worker pool: send start first")
        self.log.info(f"processing {key} (group {record.group_id}, attempt {record.attempts})")
        try:
            summary: WepSummary = await pool.run(
                self.processor, record.triplet, options, timeout=config.process_timeout_s
            )
        except AuxTelWepError as exc:
            self._reject(record, str(exc))
            return
        except Exception as exc:  # a bug in a processor is still not a reason to fault
            self.log.exception(f"processor failed on {key}")
            self._reject(record, f"unexpected error in the pipeline: {exc!r}")
            return
        journal.set_triplet_state(key, TripletState.DONE, result=summary.to_dict())
        self.last_summary = summary
        publish_result(self, record.triplet, summary)
        journal.add_correction(key, record.group_id, summary.correction)
        self._resolve(key, None)
        if self.closed_loop.state is ClosedLoopState.PROCESSING:
            if config.correction.auto_apply:
                try:
                    await self._apply(key, automatic=True)
                except NothingSignificantError as exc:
                    self.log.info(f"closed loop: {exc}")
                    self._move_loop(ClosedLoopState.WAITING_IMAGE, only_from=(ClosedLoopState.PROCESSING,))
                except ExpectedError as exc:
                    self.log.warning(f"closed loop: {exc}")
                    self._move_loop(ClosedLoopState.WAITING_IMAGE, only_from=(ClosedLoopState.PROCESSING,))
                except Exception:
                    # The result is published; it is applying it that failed (the loop is in ERROR).
                    self.log.exception(f"closed loop: applying the correction of {key} failed unexpectedly")
            else:
                self._move_loop(ClosedLoopState.WAITING_APPLY)

    @staticmethod
    def _base_options(config: AuxTelWepConfig) -> dict[str, Any]:
        options = dict(config.pipeline)
        if config.refcat_path:
            options.setdefault("refcat", config.refcat_path)
        if config.calibs_dir:
            options.setdefault("calibs_dir", config.calibs_dir)
        return options

    def _check_pipeline_options(self, options: dict[str, Any], problem: str) -> None:
        """Raise ExpectedError naming ``problem`` if the science pipeline would refuse ``options``."""
        if self.processor is not run_pipeline:
            return
        # Imported here: the science stack is otherwise loaded only by the workers.
        from .pipeline import PipelineConfig

        try:
            PipelineConfig.model_validate(options)
        except ValueError as exc:
            raise ExpectedError(f"{problem}: {exc}") from exc

    def _pipeline_options(self, record: TripletRecord) -> dict[str, Any]:
        overrides = record.result.get("overrides") or {}
        return {**self._base_options(self._config), **overrides}

    def _reject(self, record: TripletRecord, reason: str) -> None:
        self.log.warning(f"rejected triplet {record.key} (group {record.group_id}): {reason}")
        self._journal.set_triplet_state(record.key, TripletState.REJECTED, reason=reason)
        self.triplet_rejected(record.triplet, reason)
        self._resolve(record.key, ExpectedError(f"rejected: {reason}"))
        self._move_loop(ClosedLoopState.WAITING_IMAGE, only_from=(ClosedLoopState.PROCESSING,))

    def _resolve(self, key: str, error: Exception | None) -> None:
        future = self._waiters.pop(key, None)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    # --- corrections and the closed loop ---------------------------------------------------------------

    def _move_loop(
        self, new: ClosedLoopState, *, only_from: tuple[ClosedLoopState, ...] | None = None
    ) -> None:
        if only_from is not None and self.closed_loop.state not in only_from:
            return
        if self.closed_loop.move(new):
            self.evt_closedLoopState.set_write(state=int(new))

    def _sender(self) -> CorrectionSender:
        return CorrectionSender(
            journal=self._journal,
            ataos=self.ataos,
            config=self._config.correction,
            log=self.log,
            moves=self.m2_moves,
        )

    async def _apply(self, key: str, *, automatic: bool = False) -> None:
        """Send the correction of triplet ``key`` to ATAOS once (``automatic``: for the closed loop, see
        `CorrectionSender.prepare`); raise ExpectedError if not applied."""
        sender = self._sender()
        offset = sender.prepare(key, automatic=automatic)
        from_states = (ClosedLoopState.PROCESSING, ClosedLoopState.WAITING_APPLY)
        self._move_loop(ClosedLoopState.APPLYING_CORRECTION, only_from=from_states)
        try:
            await sender.send(key, offset)
        except Exception:
            # Any failure, even one the sender did not foresee (the journal's write, say), ends the step:
            # the loop must not stay APPLYING_CORRECTION, where nothing would ever be applied again.
            self._move_loop(ClosedLoopState.ERROR, only_from=(ClosedLoopState.APPLYING_CORRECTION,))
            raise
        try:
            record = self._journal.triplet(key)
            group = record.group_id if record is not None else ""
            summary = WepSummary.from_dict(record.result) if record is not None else None
            publish_correction(self, group, offset, summary, applied=True)
            self.log.info(f"applied the correction of group {group}: {offset}")
        finally:
            # Applied (journaled so) whatever befalls its report: the loop goes on to the next image.
            self._move_loop(ClosedLoopState.WAITING_IMAGE, only_from=(ClosedLoopState.APPLYING_CORRECTION,))

    # --- commands --------------------------------------------------------------------------------------

    async def do_runWEP(self, data: Any) -> None:
        """Process the named images now; COMPLETE once the result is published.

        Parameters
        ----------
        data : `DataType`
            The command's data: ``intraObsid``, ``extraObsid`` (required), ``inFocusObsid`` (optional) and
            ``config`` (YAML/JSON pipeline overrides, `parse_overrides`).
        """
        self.assert_enabled("runWEP")
        journal, config = self._journal, self._config
        names = [data.intraObsid.strip(), data.extraObsid.strip(), data.inFocusObsid.strip()]
        if not names[0] or not names[1]:
            raise ExpectedError(f"runWEP needs intraObsid and extraObsid; got {names[0]!r} and {names[1]!r}")
        overrides = parse_overrides(data.config)
        # Refused now rather than by the worker after the triplet was queued and journaled.
        self._check_pipeline_options({**dict(config.pipeline), **overrides}, "invalid runWEP config")
        infos = [self._named_image(name) if name else None for name in names]
        intra, extra, infocus = infos
        if intra is None or extra is None:  # for the type checker: names were checked above
            raise ExpectedError("runWEP needs intraObsid and extraObsid")
        triplet = Triplet(
            group_id=intra.group_id or f"runWEP-{intra.obsid}", intra=intra, extra=extra, infocus=infocus
        )
        key = f"{triplet.key}@runWEP-{time.time():.3f}"
        # Journaled for when they were first seen (the double-correction guard needs it), without touching
        # the live intake's record of an image the camera already announced.
        for info in triplet.images:
            journal.add_image(info.obsid, status=ImageStatus.NAMED, info=info, group_id=triplet.group_id)
        journal.add_triplet(triplet, source="runWEP", key=key, overrides=overrides)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        # Rounds of work before this triplet starts: the queue and the triplets being processed now.
        ahead = math.ceil((self._queue.qsize() + len(self._in_progress)) / config.n_workers)
        self.cmd_runWEP.ack_in_progress(
            data, timeout=config.process_timeout_s * (1 + ahead), result=f"processing {key}"
        )
        self._queue.put_nowait(key)
        await future

    def _named_image(self, obsid: str) -> ImageInfo:
        locator = self._intake.locator
        try:
            path = locator.find(obsid)
            if path is None:
                where = ", ".join(str(p) for p in locator.candidates(obsid))
                raise ExpectedError(f"no raw for {obsid} at {where}")
            info = read_image_info(path)
        except AuxTelWepError as exc:
            raise ExpectedError(str(exc)) from exc
        if info.obsid != obsid:  # as the live intake refuses it: the result would carry the wrong name
            raise ExpectedError(f"{path} has OBSID={info.obsid!r}, expected {obsid!r}")
        record = self._journal.image(obsid)
        if record is not None and record.info is not None and record.info.camera_angle_deg is not None:
            # The mount's angle at its readout, which its raw does not carry.
            info = dataclasses.replace(info, camera_angle_deg=record.info.camera_angle_deg)
        return info

    async def do_startClosedLoop(self, data: Any) -> None:
        """Start the closed loop: images taken before now are not applied; the total limits go on.

        Parameters
        ----------
        data : `DataType`
            The command's data (no fields used).
        """
        self.assert_enabled("startClosedLoop")
        state = self.closed_loop.state
        if state not in (ClosedLoopState.IDLE, ClosedLoopState.ERROR):
            raise ExpectedError(f"the closed loop is already running (state {state.name})")
        journal = self._journal
        journal.mark_loop_start()
        self._move_loop(ClosedLoopState.WAITING_IMAGE)
        total = HexapodState.from_array(journal.total_applied())
        self.log.info(f"closed loop started; sent since the CSC was enabled (counts in max_total): {total}")

    async def do_stopClosedLoop(self, data: Any) -> None:
        """Stop the closed loop; an offset in flight finishes but nothing new is applied automatically.

        Parameters
        ----------
        data : `DataType`
            The command's data (no fields used).
        """
        self.assert_enabled("stopClosedLoop")
        self._move_loop(ClosedLoopState.IDLE)

    async def do_issueCorrection(self, data: Any) -> None:
        """Apply the last correction through ATAOS ``offset`` (refused if already sent).

        Parameters
        ----------
        data : `DataType`
            The command's data (no fields used).
        """
        self.assert_enabled("issueCorrection")
        record = self._journal.last_correction()
        if record is None:
            raise ExpectedError("no correction computed yet")
        if record.state not in (CorrectionState.COMPUTED, CorrectionState.FAILED):
            raise ExpectedError(
                f"the last correction (group {record.group_id}) is {record.state.name}: it is not sent again"
            )
        await self._apply(record.triplet_key)


def run_auxtelwep() -> None:
    """Entry point ``run_auxtelwep``: run the CSC until exitControl or a signal (salobj ``amain``).

    Worker processes inherit one BLAS thread each (unless the environment says otherwise): the pipeline's
    small least-squares fits are much slower with a multithreaded BLAS on a busy machine, and parallelism
    comes from ``n_workers``.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    asyncio.run(AuxTelWepCsc.amain(index=None))
