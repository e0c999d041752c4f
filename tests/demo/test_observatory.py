"""Simulated peers on real DDS: ATAOS/ATHexapod move the shared M2; the camera renders, announces raws."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from helpers import IsolatedTestCase, small_scene

from lsst.ts.auxtelwep.errors import InputError
from lsst.ts.auxtelwep.instrument import HexapodState, Role, camera_angle_from_mount
from lsst.ts.auxtelwep.sal import AckError, Domain, Remote, SalRetCode, State
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT
from lsst.ts.auxtelwep.sim.observatory import SimulatedObservatory, SimulatedTelescope

#: Hexapod positions are sums of a few float64 offsets: equal to ~1e-15 mm; 1e-12 leaves room.
EXACT_MM = 1e-12
#: ATAOS ``hexapodCorrectionCompleted`` positions are float32 in ts_xml: ~1e-7 relative.
F32_MM = 1e-6


def _f32(value: float) -> float:
    """``value`` as a float32 field carries it (ATAOS ``offset`` in ts_xml)."""
    return float(np.float32(value))


def _close(a: HexapodState, b: HexapodState, tol: float = EXACT_MM) -> bool:
    return bool(abs(a.as_array() - b.as_array()).max() < tol)


def test_telescope_offsets_and_moves_add_up():
    telescope = SimulatedTelescope(HexapodState(x=0.3, z=-0.1))
    seen = []
    telescope.add_listener(seen.append)
    telescope.apply_offset(HexapodState(z=0.8), source="Script:1")
    telescope.apply_offset(HexapodState(x=-0.3, z=0.1), source="AuxTelWEP")
    assert _close(telescope.hexapod, HexapodState(z=0.8))
    telescope.move_to(HexapodState(y=0.05), source="user@host")
    assert _close(telescope.hexapod, HexapodState(y=0.05))
    assert [m.kind for m in seen] == ["offset", "offset", "move"]
    assert _close(seen[2].delta, HexapodState(y=0.05, z=-0.8))
    assert [m.source for m in telescope.moves_by("AuxTelWEP")] == ["AuxTelWEP"]
    assert telescope.moves_by("AuxTelWEP", since_s=seen[2].time_s + 1) == []
    assert _close(telescope.misalignment, HexapodState(x=0.3, z=-0.1))


class ObservatoryTestCase(IsolatedTestCase):
    async def asyncSetUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.data_root = Path(self.tmp.name)
        self.telescope = SimulatedTelescope(HexapodState(x=0.2, y=-0.1, z=0.05))

    async def test_ataos_offset_moves_hexapod_and_publishes(self):
        async with (
            SimulatedObservatory(self.telescope, small_scene(), self.data_root, settle_s=0.01) as obs,
            Domain() as domain,
        ):
            ataos = Remote(domain, "ATAOS", include=["hexapodCorrectionCompleted", "summaryState"])
            hexapod = Remote(domain, "ATHexapod", include=["positionUpdate"])
            state = await ataos.evt_summaryState.aget(timeout=STD_TIMEOUT)
            assert state.summaryState == State.ENABLED
            await ataos.cmd_offset.set_start(x=-0.2, z=0.8, u=0.01, timeout=STD_TIMEOUT)
            # M2 moves by the offset as ATAOS's float32 fields carry it.
            expected = HexapodState(x=0.2 + _f32(-0.2), y=-0.1, z=0.05 + _f32(0.8), u=_f32(0.01))
            assert _close(self.telescope.hexapod, expected)
            move = self.telescope.moves[-1]
            assert move.source == domain.identity and move.kind == "offset"
            done = await ataos.evt_hexapodCorrectionCompleted.next(flush=False, timeout=STD_TIMEOUT)
            assert (done.hexapod_x, done.hexapod_y, done.hexapod_z, done.hexapod_u) == pytest.approx(
                (0.0, -0.1, 0.85, 0.01), abs=F32_MM
            )
            # ATHexapod reports every position: the initial one, then the one after the offset.
            await hexapod.evt_positionUpdate.next(flush=False, timeout=STD_TIMEOUT)
            position = hexapod.evt_positionUpdate.get()
            if abs(position.positionZ - expected.z) > EXACT_MM:
                position = await hexapod.evt_positionUpdate.next(flush=False, timeout=STD_TIMEOUT)
            assert position.positionZ == pytest.approx(expected.z, abs=EXACT_MM)
            # What the simulation cannot model is refused, and M2 stays put.
            with self.assertRaises(AckError) as cm:
                await ataos.cmd_offset.set_start(z=0.1, m1=5.0, timeout=STD_TIMEOUT)
            assert cm.exception.ackcmd.ack == SalRetCode.CMD_FAILED
            assert "m1=5.0" in cm.exception.ackcmd.result
            assert _close(self.telescope.hexapod, expected)
            # A disabled ATAOS refuses offsets.
            await ataos.cmd_disable.start(timeout=STD_TIMEOUT)
            with self.assertRaises(AckError):
                await ataos.cmd_offset.set_start(z=0.1, timeout=STD_TIMEOUT)
            assert _close(self.telescope.hexapod, expected)
            # ATHexapod absolute move.
            await Remote(domain, "ATHexapod", include=[]).cmd_moveToPosition.set_start(
                x=0.5, timeout=STD_TIMEOUT
            )
            assert _close(self.telescope.hexapod, HexapodState(x=0.5))
            assert obs.ataos.summary_state == State.DISABLED

    async def test_the_mount_gives_the_camera_angle_of_the_scene(self):
        scene = dataclasses.replace(
            small_scene(), pointing=dataclasses.replace(small_scene().pointing, camera_angle_deg=-75.0)
        )
        async with (
            SimulatedObservatory(self.telescope, scene, self.data_root, settle_s=0.01),
            Domain() as domain,
        ):
            mount = Remote(domain, "ATMCS", include=["mount_AzEl_Encoders", "mount_Nasmyth_Encoders"])
            azel = await mount.tel_mount_AzEl_Encoders.next(flush=False, timeout=STD_TIMEOUT)
            nasmyth = await mount.tel_mount_Nasmyth_Encoders.next(flush=False, timeout=STD_TIMEOUT)
            angle = camera_angle_from_mount(azel.elevationCalculatedAngle, nasmyth.nasmyth2CalculatedAngle)
            assert angle == pytest.approx(-75.0)
            assert np.all(np.isnan(nasmyth.nasmyth1CalculatedAngle))  # LATISS is on port 2

    async def test_camera_writes_raw_then_announces(self):
        order: list[tuple[str, str]] = []
        async with (
            SimulatedObservatory(self.telescope, small_scene(), self.data_root, settle_s=0.01) as obs,
            Domain() as domain,
        ):
            camera = Remote(domain, "ATCamera", include=["endReadout"])
            oods = Remote(domain, "ATOODS", include=["imageInOODS"])
            camera.evt_endReadout.callback = lambda d: order.append(("endReadout", d.imageName))
            oods.evt_imageInOODS.callback = lambda d: order.append(("imageInOODS", d.obsid))
            self.telescope.apply_offset(HexapodState(z=0.8), source="test")  # defocus as the script does
            record = await obs.camera.take_image(Role.INTRA, group_id="g-001")
            at_exposure = self.telescope.hexapod
            self.telescope.apply_offset(HexapodState(x=-0.2), source="test")
            # The raw is in the data root, the staging area is empty, and the header names the image.
            path = self.data_root / "raw" / "20240624" / f"{record.obsid}.fits"
            assert record.path == path and path.is_file()
            assert not list((self.data_root / "staging").iterdir())
            header = fits.getheader(path, 0)
            assert (header["OBSID"], header["GROUPID"], header["REASON"]) == (record.obsid, "g-001", "INTRA")
            # It was rendered at M2's position at the time of the exposure, defocus included.
            assert _close(record.truth.hexapod_with_defocus.to_state(), at_exposure)
            assert record.truth.role == "intra" and record.seqnum == small_scene().first_seqnum
            for _ in range(100):
                if len(order) == 2:
                    break
                await asyncio.sleep(0.05)
            assert order == [("endReadout", record.obsid), ("imageInOODS", record.obsid)]
            readout = camera.evt_endReadout.get()
            assert readout.additionalKeys == "groupId:imageType:reason"
            assert readout.additionalValues == "g-001:CWFS:INTRA"
            assert (readout.imageDate, readout.imageNumber) == ("20240624", record.seqnum)
            announced = oods.evt_imageInOODS.get()
            assert (announced.statusCode, announced.camera) == (0, "LATISS")
            record2 = await obs.camera.take_image(Role.INFOCUS, group_id="g-001")
            assert record2.seqnum == record.seqnum + 1
            assert _close(record2.truth.hexapod_with_defocus.to_state(), self.telescope.hexapod)
            with self.assertRaises(InputError):
                await obs.camera.take_image(Role.EXTRA, group_id="bad:group")
