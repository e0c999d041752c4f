"""A stand-in AuxTelWEP for the observatory and night-script tests: same topics, no pipeline.

It listens to ATOODS ``imageInOODS``, reads each raw's truth file (a test double may look at the truth),
groups images by GROUPID and, for each complete triplet, publishes ``wavefrontError`` (the true Zernikes),
``wepDuration`` and ``hexapodCorrection`` = ``-gain * true misalignment`` (x, y, z). In closed loop it then
sends that correction through ATAOS ``offset`` (from its own domain, so the command carries the identity
``AuxTelWEP``) and publishes ``hexapodCorrection(applied=True)``, with ``closedLoopState`` moving
PROCESSING -> APPLYING_CORRECTION -> WAITING_IMAGE as the real CSC's does. Groups named in ``reject`` get a
``rejectedWavefrontError`` instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lsst.ts.auxtelwep.sal import BaseCsc, Remote, State
from lsst.ts.auxtelwep.sim.scene import Truth, truth_path

IDLE, WAITING_IMAGE, PROCESSING, APPLYING = 1, 2, 3, 5
N_ZERNIKES = 28


class StandInCsc(BaseCsc):
    valid_simulation_modes: ClassVar[tuple[int, ...]] = (0,)
    version: ClassVar[str] = "standin"

    def __init__(
        self,
        data_root: Path,
        *,
        gain: float = 1.0,
        reject: frozenset[str] = frozenset(),
        initial_state: State = State.STANDBY,
    ) -> None:
        self.data_root = Path(data_root)
        self.gain = gain
        self.reject = reject
        self.closed_loop = False
        self.groups: dict[str, dict[str, Truth]] = {}
        self.start_overrides: list[str] = []
        super().__init__("AuxTelWEP", initial_state=initial_state)

    async def start(self) -> None:
        self.oods = Remote(self.domain, "ATOODS", include=["imageInOODS"])
        self.ataos = Remote(self.domain, "ATAOS", include=["summaryState"])
        self.oods.evt_imageInOODS.callback = self._on_image
        await super().start()
        self.evt_closedLoopState.set_write(state=IDLE)

    async def begin_start(self, data: Any) -> None:
        self.start_overrides.append(data.configurationOverride)

    async def _on_image(self, data: Any) -> None:
        if data.statusCode != 0 or self.summary_state != State.ENABLED:
            return
        dayobs = data.obsid.split("_")[2]
        raw = self.data_root / "raw" / dayobs / f"{data.obsid}.fits"
        truth = Truth.read(truth_path(raw))
        group = self.groups.setdefault(truth.groupid, {})
        group[truth.role] = truth
        if len(group) == 3:
            await self._process(truth.groupid, group)

    async def _process(self, group_id: str, group: dict[str, Truth]) -> None:
        obsids = dict(
            intraObsid=group["intra"].obsid,
            extraObsid=group["extra"].obsid,
            inFocusObsid=group["infocus"].obsid,
        )
        if self.closed_loop:
            self.evt_closedLoopState.set_write(state=PROCESSING)
        if group_id in self.reject:
            self.evt_rejectedWavefrontError.set_write(groupId=group_id, reason="stand-in rejection", **obsids)
            if self.closed_loop:
                self.evt_closedLoopState.set_write(state=WAITING_IMAGE)
            return
        truth = group["intra"]
        noll = truth.noll
        values = np.mean([s.zernikes_um["ta"] for s in truth.stars], axis=0)
        pad = N_ZERNIKES - len(noll)
        self.evt_wavefrontError.set_write(
            groupId=group_id,
            nollZernikeIndices=list(noll) + [0] * pad,
            nollZernikeValues=list(values) + [0.0] * pad,
            nollZernikeErrors=[0.001] * len(noll) + [0.0] * pad,
            numZernikes=len(noll),
            donutCount=len(truth.stars),
            reducedChi2=1.0,
            algorithm="standin",
            force_output=True,
            **obsids,
        )
        self.evt_wepDuration.set_write(groupId=group_id, calcTime=0.01, force_output=True)
        state = truth.hexapod
        correction = dict(
            x=-self.gain * state.x, y=-self.gain * state.y, z=-self.gain * state.z, u=0.0, v=0.0
        )
        self.evt_hexapodCorrection.set_write(
            groupId=group_id, solvedAxes="x,y,z", applied=False, force_output=True, **correction
        )
        if not self.closed_loop:
            return
        self.evt_closedLoopState.set_write(state=APPLYING)
        await self.ataos.cmd_offset.set_start(
            x=correction["x"], y=correction["y"], z=correction["z"], timeout=10
        )
        self.evt_hexapodCorrection.set_write(
            groupId=group_id, solvedAxes="x,y,z", applied=True, force_output=True, **correction
        )
        await asyncio.sleep(0)
        self.evt_closedLoopState.set_write(state=WAITING_IMAGE)

    async def do_runWEP(self, data: Any) -> None:
        self.assert_enabled("runWEP")

    async def do_startClosedLoop(self, data: Any) -> None:
        self.assert_enabled("startClosedLoop")
        self.closed_loop = True
        self.evt_closedLoopState.set_write(state=WAITING_IMAGE)

    async def do_stopClosedLoop(self, data: Any) -> None:
        self.closed_loop = False
        self.evt_closedLoopState.set_write(state=IDLE)

    async def do_issueCorrection(self, data: Any) -> None:
        self.assert_enabled("issueCorrection")

    async def close_tasks(self) -> None:
        await self.oods.close()
        await self.ataos.close()
        await super().close_tasks()


def truth_processor(triplet: Any, options: Any) -> Any:
    """A picklable processor for the real `AuxTelWepCsc`: the truth instead of the pipeline.

    Zernikes are the mean true deviation of the intra image's stars; the correction is minus the true
    in-focus misalignment (x, y, z), as a perfect pipeline would find.
    """
    from lsst.ts.auxtelwep.csc_worker import WepSummary
    from lsst.ts.auxtelwep.instrument import HexapodState

    truth = Truth.read(truth_path(triplet.intra.path))
    values = np.mean([s.zernikes_um["ta"] for s in truth.stars], axis=0)
    state = truth.hexapod
    return WepSummary(
        noll=tuple(truth.noll),
        zernikes_um=tuple(float(v) for v in values),
        zernikes_err_um=tuple(0.001 for _ in truth.noll),
        donut_count=len(truth.stars),
        reduced_chi2=1.0,
        algorithm="truth",
        detection_mode="truth",
        detection_reason="stand-in processor",
        wcs_scatter_arcsec=float("nan"),
        correction=HexapodState(x=-state.x, y=-state.y, z=-state.z),
        solved_axes=("x", "y", "z"),
        timings_s={"total": 0.0},
    )
