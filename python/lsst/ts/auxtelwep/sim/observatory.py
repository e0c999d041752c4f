"""The simulated observatory peers of AuxTelWEP: ATCamera, ATOODS, ATAOS and ATHexapod on DDS.

One `SimulatedTelescope` holds the truth every peer shares: where M2 is. Its hexapod position (x, y, z mm;
u, v deg, relative to the aligned telescope, `instrument.HexapodState` conventions) starts at the injected
misalignment, and every ATAOS ``offset`` (from the night script's defocus moves or the CSC's corrections) or
ATHexapod move changes it. The camera renders each image from the position at the time of the exposure, so
a correction changes the next images::

    night script --ATAOS offset z=+0.8--> SimulatedATAOS --> SimulatedTelescope <-- SimulatedATHexapod
                                                                 |                 (positionUpdate)
    night script --camera.take_image(INTRA, group)--> SimulatedATCamera
        renders <staging>/<OBSID>.fits from the telescope's CURRENT position (sim.scene.simulate_exposure)
        writes ATCamera endReadout, hands the file to SimulatedATOODS
    SimulatedATOODS moves it to <data_root>/raw/<DAYOBS>/<OBSID>.fits (and the truth JSON beside it)
        and writes ATOODS imageInOODS (statusCode 0)

Cameras have no commands in our interface subset: the camera is driven through its Python API from the same
process (`SimulatedATCamera.take_image`). The peers are `BaseCsc` components that start ENABLED and refuse
commands unless ENABLED. The raw's header names the role (``REASON``, ``IMGTYPE``, ``FOCUSZ`` = the role's
nominal offset) while the optics are M2's current position: the renderer gets the position minus the role's
nominal defocus, which it adds back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.table import Table

from ..errors import InputError
from ..instrument import DEFAULT_WAVELENGTH_M, HexapodState, Role
from ..intake import read_image_info
from ..sal import BaseCsc, ExpectedError, State, current_tai
from .scene import Observation, Pointing, Truth, simulate_exposure, truth_path
from .signature import DetectorSignature

__all__ = [
    "CAMERA_ADDITIONAL_KEYS",
    "HexapodMove",
    "ImageRecord",
    "SceneConfig",
    "SimulatedATAOS",
    "SimulatedATCamera",
    "SimulatedATHexapod",
    "SimulatedATOODS",
    "SimulatedObservatory",
    "SimulatedTelescope",
]

_log = logging.getLogger(__name__)

#: ``additionalKeys`` of the simulated ``endReadout`` events (values in the same order).
CAMERA_ADDITIONAL_KEYS = "groupId:imageType:reason"
_SIM_VERSION = "0.1.0"


@dataclasses.dataclass(frozen=True)
class HexapodMove:
    """One change of the simulated M2 position.

    Attributes
    ----------
    time_s : `float`
        `time.monotonic` of the move, seconds.
    source : `str`
        Identity of the commander (``AuxTelWEP``, ``user@host``...).
    kind : `str`
        ``"offset"`` (relative) or ``"move"`` (absolute).
    delta, position : `HexapodState`
        Change of position and position after the move (mm, mm, mm, deg, deg).
    """

    time_s: float
    source: str
    kind: str
    delta: HexapodState
    position: HexapodState


class SimulatedTelescope:
    """Where M2 is, shared by the simulated peers (the truth of the simulation).

    Parameters
    ----------
    misalignment : `HexapodState`, optional
        Initial M2 position relative to the aligned telescope (mm, mm, mm, deg, deg); default aligned.

    Attributes
    ----------
    misalignment : `HexapodState`
        The initial position.
    moves : `list` of `HexapodMove`
        Every move, oldest first.
    """

    def __init__(self, misalignment: HexapodState | None = None) -> None:
        misalignment = misalignment or HexapodState()
        self.misalignment = misalignment
        self._position = misalignment
        self.moves: list[HexapodMove] = []
        self._listeners: list[Callable[[HexapodMove], None]] = []

    @property
    def hexapod(self) -> HexapodState:
        """Current M2 position relative to the aligned telescope, defocus included."""
        return self._position

    def add_listener(self, func: Callable[[HexapodMove], None]) -> None:
        """Call ``func(move)`` after every move (synchronously, in the caller's thread).

        Parameters
        ----------
        func : callable
            Called with each `HexapodMove`.
        """
        self._listeners.append(func)

    def apply_offset(self, delta: HexapodState, *, source: str) -> HexapodMove:
        """Move M2 by ``delta``; return the move.

        Parameters
        ----------
        delta : `HexapodState`
            Change of position (mm, mm, mm, deg, deg).
        source : `str`
            Identity of the commander, kept in the move.
        """
        return self._record("offset", delta, self._position + delta, source)

    def move_to(self, position: HexapodState, *, source: str) -> HexapodMove:
        """Move M2 to ``position``; return the move.

        Parameters
        ----------
        position : `HexapodState`
            New position relative to the aligned telescope (mm, mm, mm, deg, deg).
        source : `str`
            Identity of the commander, kept in the move.
        """
        return self._record("move", position - self._position, position, source)

    def moves_by(self, source: str, *, since_s: float = -np.inf) -> list[HexapodMove]:
        """Moves commanded by ``source`` at or after monotonic time ``since_s``.

        Parameters
        ----------
        source : `str`
            Identity of the commander (`HexapodMove.source`).
        since_s : `float`, optional
            Earliest `time.monotonic` time, seconds; default every move.
        """
        return [m for m in self.moves if m.source == source and m.time_s >= since_s]

    def _record(self, kind: str, delta: HexapodState, position: HexapodState, source: str) -> HexapodMove:
        move = HexapodMove(time.monotonic(), source, kind, delta, position)
        self._position = position
        self.moves.append(move)
        for func in self._listeners:
            func(move)
        return move


@dataclasses.dataclass(frozen=True, eq=False)
class SceneConfig:
    """What the camera sees apart from M2: sky, star field, exposure and detector.

    Attributes
    ----------
    pointing : `~lsst.ts.auxtelwep.sim.scene.Pointing`
        Boresight, sky rotation, elevation and camera angle (fixed for the night).
    catalog : `astropy.table.Table`
        Stars (``ra``, ``dec`` deg, ``mag``), e.g. from `~lsst.ts.auxtelwep.sim.scene.make_catalog`.
    signature : `~lsst.ts.auxtelwep.sim.signature.DetectorSignature`
        The detector.
    seed : `int`
        Seed of the night; each exposure's seed derives from it and the exposure's SEQNUM.
    seeing_arcsec, sky_e_per_px_per_s : `float`
        Kolmogorov FWHM (arcsec) and sky (electrons per pixel per second).
    exptime_s, infocus_exptime_s : `float`
        Exposure times of the defocused and in-focus images, seconds.
    dayobs, first_seqnum : `str`, `int`
        ``YYYYMMDD`` of every OBSID and SEQNUM of the first image.
    wavelength_m : `float`
        Wavelength of the optical model, metres.
    n_cosmic_rays : `int`
        Cosmic-ray tracks per exposure.
    wcs_error : `tuple` of `float`, optional
        ``(dx_px, dy_px, drot_deg)`` error of the header WCS (None: exact).
    program : `str`
        Header ``PROGRAM``.
    """

    pointing: Pointing
    catalog: Table
    signature: DetectorSignature
    seed: int = 0
    seeing_arcsec: float = 1.0
    sky_e_per_px_per_s: float = 5.0
    exptime_s: float = 20.0
    infocus_exptime_s: float = 5.0
    dayobs: str = "20240624"
    first_seqnum: int = 1
    wavelength_m: float = DEFAULT_WAVELENGTH_M
    n_cosmic_rays: int = 2
    wcs_error: tuple[float, float, float] | None = None
    program: str = "AUXTELWEP_DEMO"

    def __post_init__(self) -> None:
        if not (self.exptime_s > 0 and self.infocus_exptime_s > 0 and self.seeing_arcsec > 0):
            raise InputError(
                f"SceneConfig needs exptime_s, infocus_exptime_s, seeing_arcsec > 0; got {self.exptime_s}, "
                f"{self.infocus_exptime_s}, {self.seeing_arcsec}",
                value=(self.exptime_s, self.infocus_exptime_s, self.seeing_arcsec),
            )

    def exposure_seed(self, seqnum: int) -> int:
        """Seed of the exposure with SEQNUM ``seqnum`` (independent streams per exposure).

        Parameters
        ----------
        seqnum : `int`
            Header ``SEQNUM`` of the exposure; combined with ``seed``.
        """
        return int(np.random.SeedSequence([self.seed, seqnum]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image taken by the simulated camera.

    Attributes
    ----------
    obsid, seqnum, role, group_id, image_type : `str`, `int`, `Role`, `str`, `str`
        ``AT_O_<DAYOBS>_<SEQNUM>``, SEQNUM, role, GROUPID and header ``IMGTYPE``.
    path : `pathlib.Path`
        Raw file in the data root (after OODS ingestion).
    truth : `~lsst.ts.auxtelwep.sim.scene.Truth`
        What was simulated (``hexapod_with_defocus`` is the M2 position of the exposure).
    render_s : `float`
        Wall time of the rendering, seconds.
    """

    obsid: str
    seqnum: int
    role: Role
    group_id: str
    image_type: str
    path: Path
    truth: Truth
    render_s: float


class _SimulatedCsc(BaseCsc):
    """A peer that starts ENABLED and accepts simulation mode 0 or 1."""

    valid_simulation_modes: ClassVar[tuple[int, ...]] = (0, 1)
    version: ClassVar[str] = _SIM_VERSION

    def __init__(self, name: str, initial_state: State = State.ENABLED) -> None:
        super().__init__(name, initial_state=initial_state, simulation_mode=1)


class SimulatedATOODS(_SimulatedCsc):
    """ATOODS: ingests raws into ``<data_root>/raw/<DAYOBS>/`` and writes ``imageInOODS``.

    Parameters
    ----------
    data_root : `pathlib.Path`
        Data root (created if missing).
    delay_s : `float`
        Ingestion latency, seconds.
    """

    def __init__(
        self, data_root: Path, *, delay_s: float = 0.1, initial_state: State = State.ENABLED
    ) -> None:
        self.data_root = Path(data_root)
        self.delay_s = float(delay_s)
        super().__init__("ATOODS", initial_state)

    def _announce(self, obsid: str, status: int, description: str) -> None:
        fields = dict(camera="LATISS", obsid=obsid, raft="R00", sensor="S00", description=description)
        self.evt_imageInOODS.set_write(statusCode=status, force_output=True, **fields)

    def raw_path(self, obsid: str, dayobs: str) -> Path:
        """Where raw ``obsid`` lands: ``<data_root>/raw/<dayobs>/<obsid>.fits``.

        Parameters
        ----------
        obsid : `str`
            Observation id (header ``OBSID``).
        dayobs : `str`
            Observing day, ``YYYYMMDD``.
        """
        return self.data_root / "raw" / dayobs / f"{obsid}.fits"

    async def ingest(self, staged: Path, *, obsid: str, dayobs: str) -> Path:
        """Move a staged raw (and its truth file) into the data root, then write ``imageInOODS``.

        A file that cannot be moved is reported with ``statusCode`` 1 and the error, and `InputError` is
        raised.

        Parameters
        ----------
        staged : `pathlib.Path`
            The raw as written by the camera (its truth file, if any, is beside it).
        obsid : `str`
            Observation id, written in ``imageInOODS``.
        dayobs : `str`
            Observing day, ``YYYYMMDD`` (the folder under ``raw/``).

        Returns
        -------
        path : `pathlib.Path`
            The raw in the data root.
        """
        await asyncio.sleep(self.delay_s)
        target = self.raw_path(obsid, dayobs)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            truth_src = truth_path(staged)
            if truth_src.exists():
                os.replace(truth_src, truth_path(target))
            os.replace(staged, target)  # atomic: the CSC never sees a partial file
        except OSError as exc:
            self._announce(obsid, 1, f"ingest failed: {exc}")
            raise InputError(
                f"{staged}: cannot ingest {obsid} into {target} ({exc})", value=str(staged)
            ) from exc
        self._announce(obsid, 0, "ingested")
        return target


class SimulatedATCamera(_SimulatedCsc):
    """ATCamera: renders raws from the telescope's current M2 position and writes ``endReadout``.

    Parameters
    ----------
    telescope : `SimulatedTelescope`
    scene : `SceneConfig`
    oods : `SimulatedATOODS`
        Receives each raw after readout.
    staging_dir : `pathlib.Path`
        Where raws are written before ingestion (created if missing).
    """

    def __init__(
        self,
        telescope: SimulatedTelescope,
        scene: SceneConfig,
        oods: SimulatedATOODS,
        staging_dir: Path,
        *,
        initial_state: State = State.ENABLED,
    ) -> None:
        self.telescope = telescope
        self.scene = scene
        self.oods = oods
        self.staging_dir = Path(staging_dir)
        self.next_seqnum = scene.first_seqnum
        self._lock = asyncio.Lock()
        super().__init__("ATCamera", initial_state)

    async def take_image(self, role: Role, *, group_id: str, exptime_s: float | None = None) -> ImageRecord:
        """Expose, read out and hand the raw to OODS; return once OODS has ingested it.

        Parameters
        ----------
        role : `~lsst.ts.auxtelwep.instrument.Role`
            Role written in the header (``REASON``, ``IMGTYPE``); the optics are the telescope's current
            position whatever the role.
        group_id : `str`
            ``GROUPID`` shared by the images of a triplet (no ``:``: it travels in a colon-separated list).
        exptime_s : `float`, optional
            Exposure time, s; default the scene's (``infocus_exptime_s`` for in-focus images).

        Raises
        ------
        lsst.ts.auxtelwep.sal.ExpectedError
            If the camera is not ENABLED.
        InputError
            If ``group_id`` holds a ``:``.
        """
        self.assert_enabled("take_image")
        if ":" in group_id:
            raise InputError(f"group_id={group_id!r} must not contain ':'", value=group_id)
        scene = self.scene
        if exptime_s is None:
            exptime_s = scene.infocus_exptime_s if role is Role.INFOCUS else scene.exptime_s
        async with self._lock:  # one exposure at a time
            seqnum = self.next_seqnum
            self.next_seqnum += 1
            start_tai = current_tai()
            # TAI unix seconds read as a calendar date give the header's TAI date (DATE-OBS is in TAI).
            date_obs = datetime.datetime.fromtimestamp(start_tai, datetime.UTC).replace(tzinfo=None)
            observation = Observation(
                dayobs=scene.dayobs,
                seqnum=seqnum,
                groupid=group_id,
                program=scene.program,
                date_obs=date_obs.isoformat(timespec="milliseconds"),
            )
            obsid = observation.obsid
            position = self.telescope.hexapod
            staged = self.staging_dir / f"{obsid}.fits"
            t0 = time.perf_counter()
            truth = await asyncio.to_thread(
                simulate_exposure,
                staged,
                telescope_state=position.with_offset(z=-role.focus_z_mm),
                role=role,
                pointing=scene.pointing,
                catalog=scene.catalog,
                seeing_arcsec=scene.seeing_arcsec,
                exptime_s=exptime_s,
                sky_e_per_px_per_s=scene.sky_e_per_px_per_s,
                seed=scene.exposure_seed(seqnum),
                signature=scene.signature,
                observation=observation,
                wcs_error=scene.wcs_error,
                wavelength_m=scene.wavelength_m,
                n_cosmic_rays=scene.n_cosmic_rays,
            )
            render_s = time.perf_counter() - t0
            info = await asyncio.to_thread(read_image_info, staged)
            self.evt_endReadout.set_write(
                imageName=obsid,
                imagesInSequence=1,
                imageIndex=1,
                imageSource="AT",
                imageController="O",
                imageDate=scene.dayobs,
                imageNumber=seqnum,
                timestampAcquisitionStart=start_tai,
                requestedExposureTime=exptime_s,
                timestampEndOfReadout=current_tai(),
                additionalKeys=CAMERA_ADDITIONAL_KEYS,
                additionalValues=f"{group_id}:{info.image_type}:{info.reason}",
                force_output=True,
            )
            path = await self.oods.ingest(staged, obsid=obsid, dayobs=scene.dayobs)
            record = ImageRecord(obsid, seqnum, role, group_id, info.image_type, path, truth, render_s)
            self.log.info(
                f"{obsid} ({role.value}, group {group_id}) at M2 x={position.x:+.4f} y={position.y:+.4f} "
                f"z={position.z:+.4f} mm, rendered in {render_s:.1f} s"
            )
            return record


class SimulatedATHexapod(_SimulatedCsc):
    """ATHexapod: absolute and relative moves of the shared M2; ``positionUpdate`` after every move.

    Parameters
    ----------
    telescope : `SimulatedTelescope`
    settle_s : `float`
        Time a commanded move takes, seconds.
    """

    def __init__(
        self, telescope: SimulatedTelescope, *, settle_s: float = 0.1, initial_state: State = State.ENABLED
    ) -> None:
        self.telescope = telescope
        self.settle_s = float(settle_s)
        super().__init__("ATHexapod", initial_state)
        telescope.add_listener(self._on_move)

    async def start(self) -> None:
        await super().start()
        self._on_move(None)

    def _on_move(self, move: HexapodMove | None) -> None:
        if self._closing:
            return
        p = self.telescope.hexapod
        self.evt_positionUpdate.set_write(
            positionX=p.x, positionY=p.y, positionZ=p.z, positionU=p.u, positionV=p.v, positionW=0.0
        )

    async def do_moveToPosition(self, data: Any) -> None:
        """Move M2 to the position given, after ``settle_s``.

        Parameters
        ----------
        data : `DataType`
            The command's data: ``x``, ``y``, ``z`` (mm), ``u``, ``v`` (deg); ``w`` must be 0.
        """
        await self._move(data, "moveToPosition", self.telescope.move_to)

    async def do_applyPositionOffset(self, data: Any) -> None:
        """Move M2 by the offset given, after ``settle_s``.

        Parameters
        ----------
        data : `DataType`
            The command's data: ``x``, ``y``, ``z`` (mm), ``u``, ``v`` (deg); ``w`` must be 0.
        """
        await self._move(data, "applyPositionOffset", self.telescope.apply_offset)

    async def _move(self, data: Any, what: str, action: Callable[..., HexapodMove]) -> None:
        self.assert_enabled(what)
        _refuse_w(data.w, f"ATHexapod {what}")
        await asyncio.sleep(self.settle_s)
        action(HexapodState(data.x, data.y, data.z, data.u, data.v), source=data.private_identity)


class SimulatedATAOS(_SimulatedCsc):
    """ATAOS: ``offset`` adds to the hexapod position between ``hexapodCorrectionStarted`` and
    ``hexapodCorrectionCompleted`` (as the real one when the shutter is closed: it is never open here).

    Mirror pressure offsets (``m1``, ``m2``) and hexapod ``w`` are refused when non-zero: the simulated
    telescope has no model for them.

    Parameters
    ----------
    telescope : `SimulatedTelescope`
    settle_s : `float`
        Time an offset takes to apply, seconds.
    """

    def __init__(
        self, telescope: SimulatedTelescope, *, settle_s: float = 0.2, initial_state: State = State.ENABLED
    ) -> None:
        self.telescope = telescope
        self.settle_s = float(settle_s)
        super().__init__("ATAOS", initial_state)

    async def do_offset(self, data: Any) -> None:
        """Add the offset to M2's position, between ``hexapodCorrectionStarted`` and ``Completed``.

        Parameters
        ----------
        data : `DataType`
            The command's data: ``x``, ``y``, ``z`` (mm), ``u``, ``v`` (deg); ``w``, ``m1`` and ``m2`` must be
            0.
        """
        self.assert_enabled("offset")
        _refuse_w(data.w, "ATAOS offset")
        if data.m1 != 0 or data.m2 != 0:
            raise ExpectedError(
                f"ATAOS offset: m1={data.m1} Pa, m2={data.m2} Pa: the simulated telescope has no mirror "
                "force model; send 0"
            )
        delta = HexapodState(data.x, data.y, data.z, data.u, data.v)
        self.evt_hexapodCorrectionStarted.set_write(**_ataos_position(self.telescope.hexapod + delta))
        await asyncio.sleep(self.settle_s)
        move = self.telescope.apply_offset(delta, source=data.private_identity)
        p = move.position
        self.evt_hexapodCorrectionCompleted.set_write(**_ataos_position(p))
        self.log.info(
            f"offset from {data.private_identity}: dx={delta.x:+.4f} dy={delta.y:+.4f} dz={delta.z:+.4f} mm "
            f"du={delta.u:+.4f} dv={delta.v:+.4f} deg -> x={p.x:+.4f} y={p.y:+.4f} z={p.z:+.4f} mm"
        )


def _ataos_position(p: HexapodState) -> dict[str, Any]:
    """The fields of ATAOS's hexapod correction events for position ``p``."""
    axes = {f"hexapod_{axis}": value for axis, value in zip("xyzuv", p.as_array().tolist(), strict=True)}
    return {**axes, "hexapod_w": 0.0, "force_output": True}


def _refuse_w(w: float, what: str) -> None:
    if w != 0:
        raise ExpectedError(f"{what}: w={w} deg: rotation about the optical axis is not simulated; send 0")


class SimulatedATMCS(_SimulatedCsc):
    """ATMCS: the mount's elevation and Nasmyth-2 angle at 1 Hz, 100 samples per message as the real one.

    The camera angle AuxTelWEP reads from them (elevation - Nasmyth-2, port 2's parity) is the scene's
    ``pointing.camera_angle_deg``, the angle the simulated raws are rendered with.

    Parameters
    ----------
    pointing : `~lsst.ts.auxtelwep.sim.scene.Pointing`
        Elevation, azimuth and camera angle (fixed for the night).
    interval_s : `float`
        Time between telemetry messages, seconds.
    """

    def __init__(self, pointing: Pointing, *, interval_s: float = 1.0) -> None:
        self.pointing = pointing
        self.interval_s = float(interval_s)
        self._task: asyncio.Task[None] | None = None
        super().__init__("ATMCS")

    async def start(self) -> None:
        await super().start()
        self._task = asyncio.create_task(self._publish())

    async def close_tasks(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await super().close_tasks()

    async def _publish(self) -> None:
        elevation = self.pointing.elevation_deg
        nasmyth2 = elevation - self.pointing.camera_angle_deg
        while True:
            stamp = time.time()
            self.tel_mount_AzEl_Encoders.set_write(
                cRIO_timestamp=stamp,
                elevationCalculatedAngle=[elevation] * 100,
                azimuthCalculatedAngle=[self.pointing.azimuth_deg] * 100,
            )
            self.tel_mount_Nasmyth_Encoders.set_write(
                cRIO_timestamp=stamp,
                nasmyth1CalculatedAngle=[math.nan] * 100,  # LATISS is on port 2
                nasmyth2CalculatedAngle=[nasmyth2] * 100,
            )
            await asyncio.sleep(self.interval_s)


class SimulatedObservatory:
    """The four peers around one `SimulatedTelescope`, started and closed together.

    Parameters
    ----------
    telescope : `SimulatedTelescope`
    scene : `SceneConfig`
    data_root : `pathlib.Path`
        Data root of ATOODS; raws are staged in ``<data_root>/staging``.
    oods_delay_s, settle_s : `float`
        Ingestion latency and hexapod move time, seconds.

    Notes
    -----
    Make it inside a running event loop (the peers are DDS controllers); use ``async with`` or
    `start` / `close`.
    """

    def __init__(
        self,
        telescope: SimulatedTelescope,
        scene: SceneConfig,
        data_root: Path,
        *,
        oods_delay_s: float = 0.1,
        settle_s: float = 0.2,
    ) -> None:
        self.telescope = telescope
        self.scene = scene
        self.data_root = Path(data_root)
        self.oods = SimulatedATOODS(self.data_root, delay_s=oods_delay_s)
        self.camera = SimulatedATCamera(telescope, scene, self.oods, self.data_root / "staging")
        self.ataos = SimulatedATAOS(telescope, settle_s=settle_s)
        self.hexapod = SimulatedATHexapod(telescope, settle_s=settle_s / 2)
        self.mount = SimulatedATMCS(scene.pointing)

    @property
    def peers(self) -> tuple[BaseCsc, ...]:
        """ATOODS, ATCamera, ATAOS, ATHexapod, ATMCS."""
        return (self.oods, self.camera, self.ataos, self.hexapod, self.mount)

    async def start(self) -> None:
        """Wait until every peer has started (ENABLED)."""
        await asyncio.gather(*(peer.start_task for peer in self.peers))

    async def close(self) -> None:
        """Close every peer (safe to call more than once)."""
        await asyncio.gather(*(peer.close() for peer in self.peers), return_exceptions=True)

    async def __aenter__(self) -> SimulatedObservatory:
        await self.start()
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()
