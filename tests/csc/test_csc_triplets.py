"""Camera events to results on real DDS: a triplet, runWEP, and every kind of bad sequence or bad data.

ATCamera and ATOODS are simulated by Controllers in the test (`csc_fakes.Observatory`); the processor is
`csc_fakes.fake_processor` in a spawn worker. After each bad case the CSC must still be ENABLED.
"""

import asyncio
import os
from typing import Any, ClassVar
from unittest import mock

import numpy as np
from csc_fakes import (
    FAKE_CORRECTION,
    FAKE_NOLL,
    FAKE_ZERNIKES_UM,
    RESULT_TIMEOUT,
    CscTestCase,
    Observatory,
    obsid,
    write_raw,
)

from lsst.ts.auxtelwep.cadence import TripletState
from lsst.ts.auxtelwep.journal import ImageStatus, Journal
from lsst.ts.auxtelwep.sal import AckError, SalRetCode, State

TRIPLET = ("INTRA", "EXTRA", "INFOCUS")


class TripletTestCase(CscTestCase):
    config_overrides: ClassVar[dict[str, Any]] = {"cadence": {"partner_timeout_s": 3.0}}

    async def asyncSetUp(self) -> None:
        self.obs = await Observatory().start()

    async def asyncTearDown(self) -> None:
        await self.obs.close()

    def journal(self) -> Journal:
        journal = Journal(self.state_dir / "auxtelwep_journal.sqlite3")
        self.addCleanup(journal.close)
        return journal

    async def test_triplet_from_camera_events(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            names = [self.obs.take(self.data_root, seq, reason) for seq, reason in enumerate(TRIPLET, 1)]
            for name, role in zip(names, ("intra", "extra", "inFocus"), strict=True):
                received = await self.next_matching(
                    self.remote.evt_imageReceived, lambda d, n=name: d.obsid == n
                )
                self.assertEqual((received.status, received.role, received.groupId), ("accepted", role, "G1"))
            wfe = await self.remote.evt_wavefrontError.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertEqual((wfe.intraObsid, wfe.extraObsid, wfe.inFocusObsid), tuple(names))
            self.assertEqual(wfe.numZernikes, len(FAKE_NOLL))
            self.assertEqual(list(wfe.nollZernikeIndices[: len(FAKE_NOLL)]), list(FAKE_NOLL))
            self.assertEqual(set(wfe.nollZernikeIndices[len(FAKE_NOLL) :]), {0})
            np.testing.assert_allclose(wfe.nollZernikeValues[: len(FAKE_NOLL)], FAKE_ZERNIKES_UM)
            self.assertEqual(wfe.donutCount, 3)
            hexapod = await self.remote.evt_hexapodCorrection.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertFalse(hexapod.applied)
            np.testing.assert_allclose(
                [hexapod.x, hexapod.y, hexapod.z, hexapod.u, hexapod.v], FAKE_CORRECTION, atol=1e-12
            )
            self.assertEqual(hexapod.solvedAxes, "x,y,z")
            detection = await self.remote.evt_donutDetection.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertEqual((detection.mode, detection.donutCount), ("wcs", 3))
            duration = await self.remote.evt_wepDuration.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertGreater(duration.calcTime, duration.isrTime)
            telemetry = await self.remote.tel_zernikeCorrection.next(flush=True, timeout=RESULT_TIMEOUT)
            np.testing.assert_allclose(telemetry.nollZernikeValues[: len(FAKE_NOLL)], FAKE_ZERNIKES_UM)
            journal = self.journal()
            (done,) = journal.triplets(TripletState.DONE)
            self.assertEqual(done.key, "+".join(names))
            self.assertEqual(done.result["zernikes_um"], list(FAKE_ZERNIKES_UM))
            self.assertEqual({journal.image(n).status for n in names}, {ImageStatus.IN_TRIPLET})
            await self.assert_enabled()

    async def test_images_announced_while_disabled_are_all_taken_at_enable(self) -> None:
        # 180 images announced while DISABLED: only 100 were reported (a reader queue of salobj's 100 per
        # topic), 80 lost without a word.
        async with self.make_csc(initial_state=State.DISABLED):
            names = [
                self.obs.take(self.data_root, 1 + 3 * k + j, reason, group=f"B{k}")
                for k in range(40)
                for j, reason in enumerate(TRIPLET)
            ]
            await asyncio.sleep(1.0)
            received: set[str] = set()
            self.remote.evt_imageReceived.callback = lambda data: received.add(data.obsid)
            await self.remote.cmd_enable.start(timeout=30)
            async with asyncio.timeout(RESULT_TIMEOUT):
                while received != set(names):
                    await asyncio.sleep(0.2)

    async def test_the_camera_angle_comes_from_the_mount_at_readout(self) -> None:
        # Real raws carry no camera angle: without the mount's, x, y went out rotated by it (taken as 0).
        async with self.make_csc(initial_state=State.ENABLED):
            self.obs.mount_at(elevation_deg=60.0, nasmyth2_deg=15.0)  # port 2's parity: 60 - 15
            await asyncio.sleep(0.5)  # the telemetry reaches the CSC before the readout
            names = [self.obs.take(self.data_root, seq, reason) for seq, reason in enumerate(TRIPLET, 1)]
            await self.remote.evt_wavefrontError.next(flush=False, timeout=RESULT_TIMEOUT)
            (done,) = self.journal().triplets(TripletState.DONE)
            self.assertEqual([i.camera_angle_deg for i in done.triplet.images], [45.0, 45.0, 45.0])
            hexapod = await self.remote.evt_hexapodCorrection.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertEqual(hexapod.cameraAngle, 45.0)  # the fake processor echoes the angle it was given
            # runWEP on the same images, whose raws do not carry it, uses the angle journaled at readout.
            await self.remote.cmd_runWEP.set_start(
                intraObsid=names[0], extraObsid=names[1], inFocusObsid=names[2], timeout=RESULT_TIMEOUT
            )
            hexapod = await self.remote.evt_hexapodCorrection.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertEqual(hexapod.cameraAngle, 45.0)
            # Without mount telemetry (none in the last 5 s) and without CAMANGLE: unknown, said to the
            # operators (the CSC's log: logMessage) when it becomes unknown.
            with mock.patch("lsst.ts.auxtelwep.csc.MOUNT_TELEMETRY_MAX_AGE_S", 0.0):
                later = [self.obs.take(self.data_root, seq, r) for seq, r in enumerate(TRIPLET, 4)]
                message = await self.next_matching(
                    self.remote.evt_logMessage, lambda d: "camera angle unknown" in d.message
                )
                self.assertIn(later[0], message.message)
                await self.next_matching(self.remote.evt_wavefrontError, lambda d: d.intraObsid == later[0])
            record = self.journal().triplet("+".join(later))
            self.assertEqual([i.camera_angle_deg for i in record.triplet.images], [None, None, None])

    async def test_images_read_out_while_disabled_do_not_take_the_mount_angle_at_enable(self) -> None:
        # Queued while DISABLED, they were given the angle of the mount when the CSC was enabled (120 deg
        # instead of 45 at their readout).
        with mock.patch("lsst.ts.auxtelwep.csc.MOUNT_TELEMETRY_MAX_AGE_S", 1.0):
            async with self.make_csc(initial_state=State.DISABLED):
                self.obs.mount_at(elevation_deg=60.0, nasmyth2_deg=15.0)
                names = [self.obs.take(self.data_root, seq, r) for seq, r in enumerate(TRIPLET, 1)]
                await asyncio.sleep(1.5)
                self.obs.mount_at(elevation_deg=60.0, nasmyth2_deg=-60.0)
                await asyncio.sleep(0.3)
                await self.remote.cmd_enable.start(timeout=30)
                await self.next_matching(self.remote.evt_wavefrontError, lambda d: d.intraObsid == names[0])
                record = self.journal().triplet("+".join(names))
                self.assertEqual([i.camera_angle_deg for i in record.triplet.images], [None, None, None])

    async def test_a_triplet_announced_while_the_csc_was_down_is_processed(self) -> None:
        # The camera's events come to the CSC as late-joiner history (it keeps up to 50 per topic).
        names = [self.obs.take(self.data_root, seq, reason) for seq, reason in enumerate(TRIPLET, 1)]
        async with self.make_csc(initial_state=State.ENABLED):
            wfe = await self.remote.evt_wavefrontError.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertEqual((wfe.intraObsid, wfe.extraObsid, wfe.inFocusObsid), tuple(names))

    async def test_run_wep_processes_named_images(self) -> None:
        names = [write_raw(self.data_root, seq, reason, group="") for seq, reason in enumerate(TRIPLET, 1)]
        async with self.make_csc(initial_state=State.ENABLED):
            ack = await self.remote.cmd_runWEP.set_start(
                intraObsid=names[0],
                extraObsid=names[1],
                inFocusObsid=names[2],
                config="fake_correction: [0.1, 0.0, 0.0, 0.0, 0.0]",
                timeout=RESULT_TIMEOUT,
            )
            self.assertEqual(ack.ack, SalRetCode.CMD_COMPLETE)
            wfe = await self.remote.evt_wavefrontError.next(flush=False, timeout=1)  # already published
            self.assertEqual(wfe.groupId, f"runWEP-{names[0]}")
            hexapod = await self.remote.evt_hexapodCorrection.next(flush=False, timeout=1)
            self.assertAlmostEqual(hexapod.x, 0.1)  # the override reached the processor
            # Running it again is a new result, not a duplicate.
            await self.remote.cmd_runWEP.set_start(
                intraObsid=names[0], extraObsid=names[1], timeout=RESULT_TIMEOUT
            )
            self.assertEqual(len(self.journal().triplets(TripletState.DONE)), 2)
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_runWEP.set_start(
                    intraObsid=obsid(99), extraObsid=names[1], timeout=RESULT_TIMEOUT
                )
            self.assertIn(f"no raw for {obsid(99)}", cm.exception.ackcmd.result)
            # A file whose header names another exposure is refused, as the live intake refuses it.
            write_raw(self.data_root, 98, "INTRA", OBSID=obsid(97))
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_runWEP.set_start(
                    intraObsid=obsid(98), extraObsid=names[1], timeout=RESULT_TIMEOUT
                )
            self.assertIn(f"has OBSID='{obsid(97)}', expected '{obsid(98)}'", cm.exception.ackcmd.result)

    async def test_run_wep_leaves_images_the_camera_is_bringing_in_to_the_live_triplet(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            intra, extra = (
                self.obs.take(self.data_root, seq, reason) for seq, reason in ((1, "INTRA"), (2, "EXTRA"))
            )
            for name in (intra, extra):
                await self.next_matching(self.remote.evt_imageReceived, lambda d, n=name: d.obsid == n)
            infocus = write_raw(self.data_root, 3, "INFOCUS")  # on disk before the camera's events
            await self.remote.cmd_runWEP.set_start(
                intraObsid=intra, extraObsid=extra, inFocusObsid=infocus, config="", timeout=RESULT_TIMEOUT
            )
            self.remote.evt_wavefrontError.flush()  # runWEP's result
            self.obs.announce(infocus, image_type="ACQ", reason="INFOCUS")
            self.obs.ingested(infocus)
            received = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == infocus)
            self.assertEqual((received.status, received.role), ("accepted", "inFocus"))
            live = await self.next_matching(
                self.remote.evt_wavefrontError, lambda d: d.inFocusObsid == infocus, timeout=RESULT_TIMEOUT
            )
            self.assertEqual(live.groupId, "G1")
            journal = self.journal()
            self.assertEqual(
                sorted(t.source for t in journal.triplets(TripletState.DONE)), ["events", "runWEP"]
            )
            self.assertEqual(
                {journal.image(n).status for n in (intra, extra, infocus)}, {ImageStatus.IN_TRIPLET}
            )
            await self.assert_enabled()

    async def test_run_wep_time_limit_counts_the_triplet_being_processed(self) -> None:
        with mock.patch.dict(os.environ, {"AUXTELWEP_FAKE_SLEEP_S": "1.0"}):
            async with self.make_csc(initial_state=State.ENABLED):
                names = [self.obs.take(self.data_root, seq, reason) for seq, reason in enumerate(TRIPLET, 1)]
                while not self.csc._in_progress:  # the live triplet is being processed
                    await asyncio.sleep(0.02)
                ack = await self.remote.cmd_runWEP.set_start(
                    intraObsid=names[0], extraObsid=names[1], timeout=RESULT_TIMEOUT, wait_done=False
                )
                self.assertEqual(ack.ack, SalRetCode.CMD_INPROGRESS)
                self.assertGreaterEqual(ack.timeout, 2 * 60.0)  # its own process_timeout_s and the live one's

    async def test_blocked_and_out_of_order_sequences_warn(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            for seq, reason in enumerate(("INTRA", "INTRA", "INFOCUS", "EXTRA"), 1):
                self.obs.take(self.data_root, seq, reason)
            blocked = await self.next_matching(self.remote.evt_cadenceWarning, lambda d: d.kind == "blocked")
            self.assertEqual((blocked.groupId, blocked.obsid), ("G1", obsid(2)))
            self.assertIn("blocked sequence", blocked.message)
            late = await self.next_matching(self.remote.evt_cadenceWarning, lambda d: d.kind == "outOfOrder")
            self.assertEqual(late.obsid, obsid(3))
            # Still processed, first in first out: intra #1 with the extra.
            wfe = await self.remote.evt_wavefrontError.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertEqual(
                (wfe.intraObsid, wfe.extraObsid, wfe.inFocusObsid), (obsid(1), obsid(4), obsid(3))
            )
            await self.assert_enabled()

    async def test_pointing_change_warns(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            self.obs.take(self.data_root, 1, "INTRA")
            self.obs.take(self.data_root, 2, "EXTRA")
            self.obs.take(self.data_root, 3, "INFOCUS", DEC=-29.9)  # 360 arcsec away; tolerance 180
            warning = await self.next_matching(
                self.remote.evt_cadenceWarning, lambda d: d.kind == "pointingChanged"
            )
            self.assertIn("by 360.0 arcsec", warning.message)
            await self.remote.evt_wavefrontError.next(flush=False, timeout=RESULT_TIMEOUT)  # still processed

    async def test_duplicate_is_reported_once_processed(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            name = self.obs.take(self.data_root, 1, "INTRA")
            await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == name)
            self.obs.ingested(name)  # ATOODS reports it again
            warning = await self.next_matching(
                self.remote.evt_cadenceWarning, lambda d: d.kind == "duplicate"
            )
            self.assertEqual(warning.obsid, name)
            self.assertEqual(self.journal().image(name).status, ImageStatus.QUEUED)
            await self.assert_enabled()

    async def test_missing_partner_is_reported_after_timeout(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            intra = self.obs.take(self.data_root, 1, "INTRA")
            extra = self.obs.take(self.data_root, 2, "EXTRA")
            warning = await self.next_matching(
                self.remote.evt_cadenceWarning, lambda d: d.kind == "timeout", timeout=15
            )
            self.assertEqual(warning.obsid, intra)
            self.assertIn("no partner within 3 s", warning.message)
            journal = self.journal()
            self.assertEqual({journal.image(n).status for n in (intra, extra)}, {ImageStatus.EXPIRED})
            await self.assert_enabled()

    async def test_unknown_role_and_not_wavefront_images(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            odd = write_raw(self.data_root, 1, "INTRA", REASON="SCIENCE", FOCUSZ=0.4)
            self.obs.announce(odd)
            self.obs.ingested(odd)
            rejected = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == odd)
            self.assertEqual(rejected.status, "rejected")
            self.assertIn("cannot tell intra, extra or in-focus", rejected.reason)
            self.obs.announce(obsid(2), image_type="BIAS")
            ignored = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == obsid(2))
            self.assertEqual(ignored.status, "ignored")
            await self.assert_enabled()

    async def test_corrupt_raws_are_rejected(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            # A raw cut in the middle of its header (a transfer that died): rejected at intake.
            broken = write_raw(self.data_root, 1, "INTRA")
            path = self.data_root / "raw" / "20240624" / f"{broken}.fits"
            path.write_bytes(path.read_bytes()[:800])
            self.obs.announce(broken)
            self.obs.ingested(broken)
            received = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == broken)
            self.assertEqual(received.status, "rejected")
            self.assertIn("unreadable raw", received.reason)
            # A triplet whose pixels turn out bad in the pipeline: rejectedWavefrontError, no wavefrontError.
            names = [
                self.obs.take(self.data_root, seq, reason, group="G2", NOTE="CORRUPT" if seq == 12 else "")
                for seq, reason in zip((11, 12, 13), TRIPLET, strict=True)
            ]
            rejected = await self.remote.evt_rejectedWavefrontError.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertEqual((rejected.groupId, rejected.intraObsid), ("G2", names[0]))
            self.assertIn("truncated (simulated)", rejected.reason)
            with self.assertRaises(TimeoutError):
                await self.remote.evt_wavefrontError.next(flush=False, timeout=0.5)
            self.assertEqual(self.journal().triplets(TripletState.REJECTED)[0].group_id, "G2")
            # ATOODS failing to ingest is a rejection too.
            self.obs.announce(obsid(20))
            self.obs.ingested(obsid(20), status_code=1, description="checksum mismatch")
            failed = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == obsid(20))
            self.assertIn("statusCode=1 (checksum mismatch)", failed.reason)
            await self.assert_enabled()

    async def test_an_image_comes_in_after_a_failed_ingest_or_a_late_raw(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            # ATOODS fails, then retries: the image is reported, then taken.
            retried = write_raw(self.data_root, 1, "INTRA")
            self.obs.announce(retried)
            self.obs.ingested(retried, status_code=1, description="checksum mismatch")
            failed = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == retried)
            self.assertEqual(failed.status, "rejected")
            self.obs.ingested(retried)
            taken = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == retried)
            self.assertEqual(taken.status, "accepted")
            # imageInOODS before the file shows on this machine's file system: looked for again.
            self.obs.announce(obsid(2))
            self.obs.ingested(obsid(2))
            await asyncio.sleep(1.0)
            write_raw(self.data_root, 2, "EXTRA")
            late = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == obsid(2))
            self.assertEqual(late.status, "accepted")
            # Never there: lost once oods_timeout_s (2 s) has passed.
            self.obs.announce(obsid(3))
            self.obs.ingested(obsid(3))
            lost = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == obsid(3))
            self.assertIn("no raw is at", lost.reason)
            self.assertEqual(self.journal().image(obsid(3)).status, ImageStatus.LOST)
            await self.assert_enabled()

    async def test_a_name_the_data_root_cannot_hold_stops_nothing_else(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            self.obs.announce("AT_O_20240624_1")  # no imageInOODS: housekeeping looks for it
            found = write_raw(self.data_root, 4, "INTRA")
            self.obs.announce(found)  # no imageInOODS either, but the raw is there
            odd = await self.next_matching(
                self.remote.evt_imageReceived, lambda d: d.obsid == "AT_O_20240624_1"
            )
            self.assertEqual(odd.status, "rejected")
            accepted = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == found)
            self.assertEqual(accepted.status, "accepted")
            self.assertEqual(self.journal().image("AT_O_20240624_1").status, ImageStatus.REJECTED)
            await self.assert_enabled()

    async def test_silent_oods_falls_back_to_the_data_root(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            found = write_raw(self.data_root, 1, "INTRA")
            self.obs.announce(found)  # no imageInOODS: after oods_timeout_s (2 s) the file is used
            self.obs.announce(obsid(2))  # no file either: lost
            accepted = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == found)
            self.assertEqual(accepted.status, "accepted")
            lost = await self.next_matching(self.remote.evt_imageReceived, lambda d: d.obsid == obsid(2))
            self.assertIn("no imageInOODS within 2 s", lost.reason)
            self.assertEqual(self.journal().image(obsid(2)).status, ImageStatus.LOST)
            await asyncio.sleep(0)
            await self.assert_enabled()
