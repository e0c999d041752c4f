"""Test doubles for the AuxTelWEP CSC: fake processors (run in worker processes), raw files, the simulated
ATCamera / ATOODS / ATAOS controllers, and a test-case base.

Fake processors are module-level functions so they pickle into the spawn workers (pytest puts this folder
on ``sys.path`` and spawn passes ``sys.path`` on). They read their behaviour from the pipeline options
(``config.pipeline`` of the CSC) and from ``$AUXTELWEP_FAKE_SLEEP_S`` (for the crash test, whose two CSC
processes share one configuration).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml
from astropy.io import fits

from lsst.ts.auxtelwep.cadence import Triplet
from lsst.ts.auxtelwep.csc import AuxTelWepCsc
from lsst.ts.auxtelwep.csc_worker import WepSummary
from lsst.ts.auxtelwep.errors import RawFormatError
from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.sal import Controller, SalRetCode, State
from lsst.ts.auxtelwep.sal.testutils import BaseCscTestCase

#: Noll indices and values (um) every fake result carries.
FAKE_NOLL = tuple(range(4, 12))
FAKE_ZERNIKES_UM = tuple(0.01 * j for j in FAKE_NOLL)
#: Default correction of fake results (mm, deg), within the default per-step limits after gains.
FAKE_CORRECTION = (0.2, -0.1, 0.05, 0.0, 0.0)
#: Its 1-sigma uncertainty (u, v not solved).
FAKE_SIGMA = (0.004, 0.005, 0.0003, 0.0, 0.0)
#: Time limit (s) of waits for results (a first spawn worker imports the package: a few s on a busy host).
RESULT_TIMEOUT = 60.0
CORRUPT_MARKER = "CORRUPT"


def fake_processor(triplet: Triplet, options: Mapping[str, Any]) -> WepSummary:
    """Return fixed numbers after ``fake_sleep_s`` (sleep) or ``fake_burn_s`` (CPU) seconds.

    Raises `RawFormatError` when the intra raw's header has ``NOTE = 'CORRUPT'`` (bad pixels found late).
    """
    start = time.perf_counter()
    sleep_s = float(os.environ.get("AUXTELWEP_FAKE_SLEEP_S", options.get("fake_sleep_s", 0.0)))
    time.sleep(sleep_s)
    burn_until = time.perf_counter() + float(options.get("fake_burn_s", 0.0))
    x = 0
    while time.perf_counter() < burn_until:  # pure-Python work: holds this worker's GIL and one core
        x += sum(range(1000))
    for image in triplet.images:
        if fits.getheader(image.path).get("NOTE") == CORRUPT_MARKER:
            raise RawFormatError(f"{image.path}: HDU Segment10 is truncated (simulated)", value=image.path)
    correction = HexapodState.from_array(options.get("fake_correction", FAKE_CORRECTION))
    total = time.perf_counter() - start
    return WepSummary(
        noll=FAKE_NOLL,
        zernikes_um=FAKE_ZERNIKES_UM,
        zernikes_err_um=tuple(0.001 for _ in FAKE_NOLL),
        donut_count=3,
        reduced_chi2=1.05,
        algorithm="fake",
        detection_mode="wcs",
        detection_reason="test",
        wcs_scatter_arcsec=0.3,
        correction=correction,
        solved_axes=("x", "y", "z"),
        timings_s={"isr": 0.1, "detection": 0.2, "estimation": total, "total": total + 0.3},
        correction_sigma=HexapodState.from_array(FAKE_SIGMA),
        residual_structure=0.02,
        camera_angle_deg=triplet.intra.camera_angle_deg,
    )


def dying_processor(triplet: Triplet, options: Mapping[str, Any]) -> WepSummary:
    """A processor whose worker process dies (as a segfault in a C extension would)."""
    os._exit(3)


FOCUS = {"INTRA": 0.8, "EXTRA": -0.8011, "INFOCUS": 0.0}


def obsid(seq: int, day_obs: str = "20240624") -> str:
    return f"AT_O_{day_obs}_{seq:06d}"


def write_raw(
    data_root: Path, seq: int, reason: str, *, group: str = "G1", day_obs: str = "20240624", **extra: Any
) -> str:
    """Write a header-only raw at ``<data_root>/raw/<DAYOBS>/<OBSID>.fits``; return its OBSID.

    ``reason`` is INTRA, EXTRA or INFOCUS; ``extra`` overrides header keys (``NOTE='CORRUPT'``...).
    """
    name = obsid(seq, day_obs)
    header = fits.Header()
    values = dict(
        OBSID=name,
        DAYOBS=day_obs,
        SEQNUM=seq,
        GROUPID=group,
        IMGTYPE="ACQ" if reason == "INFOCUS" else "CWFS",
        REASON=reason,
        FOCUSZ=FOCUS[reason],
        RA=150.0,
        DEC=-30.0,
        ROTPA=0.0,
    )
    values.update(extra)
    for key, value in values.items():
        header[key] = value
    folder = data_root / "raw" / day_obs
    folder.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(header=header).writeto(folder / f"{name}.fits", overwrite=True)
    return name


def write_config(folder: Path, data_root: Path, state_dir: Path, **overrides: Any) -> Path:
    """Write ``<folder>/_init.yaml`` for a test CSC (short timeouts) and return ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "data_root": str(data_root),
        "state_dir": str(state_dir),
        "cadence": {"partner_timeout_s": 30.0},
        "telemetry_interval_s": 0.5,
        "process_timeout_s": 60.0,
        "oods_timeout_s": 2.0,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    (folder / "_init.yaml").write_text(yaml.safe_dump(config))
    return folder


class Observatory:
    """Simulated ATCamera and ATOODS (events), ATAOS (``offset``, answered by ``offset_handler``) and ATMCS
    (mount telemetry, written by `mount_at`)."""

    def __init__(self) -> None:
        self.camera = Controller("ATCamera", do_callbacks=False)
        self.oods = Controller("ATOODS", do_callbacks=False)
        self.ataos = Controller("ATAOS", do_callbacks=False)
        self.mount = Controller("ATMCS", do_callbacks=False)
        self.offsets: list[tuple[float, ...]] = []
        #: Set to an exception to make ATAOS fail ``offset``.
        self.offset_error: Exception | None = None
        #: True: ``offset`` is acknowledged without moving M2, as ATAOS does while the shutter is open; the
        #: move comes with `move_m2`.
        self.defer_moves = False
        self.ataos.cmd_offset.set_do_callback(self._offset)

    async def _offset(self, data: Any) -> None:
        self.offsets.append((data.x, data.y, data.z, data.u, data.v))
        if self.offset_error is not None:
            raise self.offset_error
        if not self.defer_moves:
            self.move_m2()

    def move_m2(self) -> None:
        """Write ``hexapodCorrectionStarted`` and ``hexapodCorrectionCompleted``: ATAOS moved M2."""
        self.ataos.evt_hexapodCorrectionStarted.set_write(force_output=True)
        self.ataos.evt_hexapodCorrectionCompleted.set_write(force_output=True)

    @property
    def _controllers(self) -> tuple[Controller, ...]:
        return (self.camera, self.oods, self.ataos, self.mount)

    async def start(self) -> Observatory:
        await asyncio.gather(*(c.start_task for c in self._controllers))
        return self

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._controllers))

    def mount_at(self, elevation_deg: float, nasmyth2_deg: float) -> None:
        """Write one message of each ATMCS telemetry topic AuxTelWEP reads (100 equal samples)."""
        self.mount.tel_mount_AzEl_Encoders.set_write(elevationCalculatedAngle=[elevation_deg] * 100)
        self.mount.tel_mount_Nasmyth_Encoders.set_write(nasmyth2CalculatedAngle=[nasmyth2_deg] * 100)

    def announce(
        self, name: str, *, group: str = "G1", image_type: str = "CWFS", reason: str = "INTRA"
    ) -> None:
        """Write ``endReadout`` for ``name``."""
        self.camera.evt_endReadout.set_write(
            imageName=name,
            additionalKeys="groupId:imageType:reason",
            additionalValues=f"{group}:{image_type}:{reason}",
            force_output=True,
        )

    def ingested(self, name: str, status_code: int = 0, description: str = "OK") -> None:
        """Write ``imageInOODS`` for ``name``."""
        self.oods.evt_imageInOODS.set_write(
            camera="LATISS",
            obsid=name,
            raft="R00",
            sensor="S00",
            statusCode=status_code,
            description=description,
            force_output=True,
        )

    def take(self, data_root: Path, seq: int, reason: str, *, group: str = "G1", **extra: Any) -> str:
        """Write the raw, then both camera events, as a real exposure would."""
        name = write_raw(data_root, seq, reason, group=group, **extra)
        self.announce(name, group=group, image_type="ACQ" if reason == "INFOCUS" else "CWFS", reason=reason)
        self.ingested(name)
        return name


class CscTestCase(BaseCscTestCase):
    """`BaseCscTestCase` for `AuxTelWepCsc` with a data root, a state dir and a config dir per test."""

    #: Extra `_init.yaml` settings of this test case.
    config_overrides: ClassVar[dict[str, Any]] = {}

    def setUp(self) -> None:
        super().setUp()
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="auxtelwep-csc-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.data_root = self.tmp / "data"
        (self.data_root / "raw").mkdir(parents=True)
        self.state_dir = self.tmp / "state"
        self.config_dir = write_config(
            self.tmp / "config", self.data_root, self.state_dir, **self.config_overrides
        )

    def basic_make_csc(
        self, initial_state: State, config_dir: Any, simulation_mode: int, **kwargs: Any
    ) -> AuxTelWepCsc:
        return AuxTelWepCsc(
            config_dir=config_dir or self.config_dir,
            initial_state=initial_state,
            processor=kwargs.pop("processor", fake_processor),
            **kwargs,
        )

    async def next_matching(
        self, topic: Any, predicate: Callable[[Any], bool], timeout: float = RESULT_TIMEOUT
    ) -> Any:
        """Read ``topic`` until a sample satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            data = await topic.next(flush=False, timeout=max(0.1, deadline - time.monotonic()))
            if predicate(data):
                return data

    async def assert_enabled(self) -> None:
        await asyncio.sleep(0)
        self.assertEqual(self.csc.summary_state, State.ENABLED)


__all__ = [
    "CORRUPT_MARKER",
    "FAKE_CORRECTION",
    "FAKE_NOLL",
    "FAKE_ZERNIKES_UM",
    "RESULT_TIMEOUT",
    "CscTestCase",
    "Observatory",
    "SalRetCode",
    "dying_processor",
    "fake_processor",
    "obsid",
    "write_config",
    "write_raw",
]
