"""Corrections on real DDS: authorisation, gains and limits, once-only sending, the closed loop, ATAOS errors.

ATAOS is a Controller in the test that records every ``offset`` it receives (`csc_fakes.Observatory`).
Results come from runWEP (or camera events) with the fake processor, whose correction is set per test.
"""

import asyncio
import os
import sqlite3
import time
from typing import Any, ClassVar
from unittest import mock

import numpy as np
from csc_fakes import FAKE_SIGMA, RESULT_TIMEOUT, CscTestCase, Observatory, write_raw

from lsst.ts.auxtelwep import csc as csc_module
from lsst.ts.auxtelwep import m2_moves
from lsst.ts.auxtelwep.csc_corrections import as_sent
from lsst.ts.auxtelwep.instrument import HexapodState
from lsst.ts.auxtelwep.journal import CorrectionState, Journal
from lsst.ts.auxtelwep.sal import AckError, Controller, Domain, ExpectedError, Remote, SalRetCode, State
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT

TRIPLET = ("INTRA", "EXTRA", "INFOCUS")
# gains (0.5, 0.5, 0.9, 0.5, 0.5); per-step limits (0.5, 0.5, 0.1, 0.05, 0.05); total limit on x: 0.8 mm.
RAW = (2.0, -0.3, 0.5, 0.0, 0.0)
# x clipped by max_step (1.0 -> 0.5) and y with it (the lateral step keeps its direction); z by max_step.
FIRST_STEP = (0.5, -0.075, 0.1, 0.0, 0.0)
# What ATAOS gets: its offset fields are float32 (ts_xml), and the journal records exactly that.
FIRST_SENT = tuple(as_sent(HexapodState(*FIRST_STEP)).as_array())


class CorrectionTestCase(CscTestCase):
    config_overrides: ClassVar[dict[str, Any]] = {
        "pipeline": {"fake_correction": list(RAW)},
        "correction": {
            "gains": {"x": 0.5, "y": 0.5, "z": 0.9, "u": 0.5, "v": 0.5},
            "max_step": {"x": 0.5, "y": 0.5, "z": 0.1, "u": 0.05, "v": 0.05},
            "max_total": {"x": 0.8, "y": 2.0, "z": 0.5, "u": 0.2, "v": 0.2},
            "apply_timeout_s": 5.0,
        },
    }

    async def asyncSetUp(self) -> None:
        # A move is taken as done at once (ATAOS's FAULT after a failed move is not simulated here).
        grace = mock.patch.object(m2_moves, "FAULT_GRACE_S", 0.0)
        grace.start()
        self.addCleanup(grace.stop)
        self.obs = await Observatory().start()
        self.names = [write_raw(self.data_root, seq, reason) for seq, reason in enumerate(TRIPLET, 1)]

    async def asyncTearDown(self) -> None:
        await self.obs.close()

    def journal(self) -> Journal:
        """The CSC's journal, read alongside it (closed at the end of the test)."""
        journal = Journal(self.state_dir / "auxtelwep_journal.sqlite3")
        self.addCleanup(journal.close)
        return journal

    async def m2_moved(self) -> None:
        """ATAOS moves M2 (`Observatory.move_m2`); return once the CSC has seen the move end."""
        sent = time.time()
        self.obs.move_m2()
        deadline = time.monotonic() + STD_TIMEOUT
        while self.csc.m2_moves.completed_after(received=sent) is None:
            self.assertLess(time.monotonic(), deadline, "the CSC did not see ATAOS's move")
            await asyncio.sleep(0.01)

    async def run_wep(self, names: list[str] | None = None) -> None:
        names = names or self.names
        await self.remote.cmd_runWEP.set_start(
            intraObsid=names[0], extraObsid=names[1], inFocusObsid=names[2], timeout=RESULT_TIMEOUT
        )

    async def test_unauthorised_identity_gets_noperm(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_setAuthList.set_start(
                authorizedUsers="operator@summit", timeout=STD_TIMEOUT
            )
            async with Domain() as domain:
                domain.identity = "intruder@elsewhere"
                async with Remote(domain, "AuxTelWEP", include=[]) as intruder:
                    for command in (intruder.cmd_issueCorrection, intruder.cmd_startClosedLoop):
                        with self.assertRaises(AckError) as cm:
                            await command.start(timeout=STD_TIMEOUT)
                        self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_NOPERM)
                    # Commands that need no authorisation still work for anyone.
                    await intruder.cmd_stopClosedLoop.start(timeout=STD_TIMEOUT)
            async with Domain() as domain:
                domain.identity = "operator@summit"
                async with Remote(domain, "AuxTelWEP", include=[]) as operator:
                    ack = await operator.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
                    self.assertEqual(ack.ack, SalRetCode.CMD_COMPLETE)
            self.assertEqual(self.obs.offsets, [])

    async def test_issue_correction_gains_limits_and_once_only(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_issueCorrection.start(timeout=STD_TIMEOUT)
            self.assertIn("no correction computed yet", cm.exception.ackcmd.result)
            await self.run_wep()
            await self.remote.cmd_issueCorrection.start(timeout=STD_TIMEOUT)
            np.testing.assert_array_equal(self.obs.offsets, [FIRST_SENT])
            applied = await self.next_matching(self.remote.evt_hexapodCorrection, lambda d: d.applied)
            np.testing.assert_array_equal([applied.x, applied.y, applied.z], FIRST_SENT[:3])
            # With the uncertainty of the computed correction, kept through the journal.
            errors = [applied.xError, applied.yError, applied.zError, applied.uError, applied.vError]
            np.testing.assert_allclose(errors, FAKE_SIGMA, atol=1e-12)
            # The same result is never sent twice.
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_issueCorrection.start(timeout=STD_TIMEOUT)
            self.assertIn("is APPLIED: it is not sent again", cm.exception.ackcmd.result)
            await self.m2_moved()  # the observing script's defocus: ATAOS moves M2, offset included
            # The same images measured again describe M2 before that offset: sending it would correct twice.
            await self.run_wep()
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_issueCorrection.start(timeout=STD_TIMEOUT)
            self.assertIn("came before the last offset to M2", cm.exception.ackcmd.result)
            # New images: x is limited by the total (0.8 mm, 0.5 already sent).
            await self.run_wep(
                [write_raw(self.data_root, seq, reason) for seq, reason in enumerate(TRIPLET, 4)]
            )
            await self.remote.cmd_issueCorrection.start(timeout=STD_TIMEOUT)
            self.assertEqual(len(self.obs.offsets), 2)
            self.assertAlmostEqual(self.obs.offsets[1][0], 0.3, places=7)
            total = np.sum(self.obs.offsets, axis=0)
            self.assertLessEqual(total[0], 0.8)  # float32 rounding does not push it over the limit

    async def test_closed_loop_applies_each_result_automatically(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            await self.next_matching(self.remote.evt_closedLoopState, lambda d: d.state == 1)
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            for seq, reason in enumerate(TRIPLET, 11):
                self.obs.take(self.data_root, seq, reason, group="G2")
            states = []
            while not states or states[-1] != 2 or 5 not in states:
                states.append(
                    (await self.remote.evt_closedLoopState.next(flush=False, timeout=RESULT_TIMEOUT)).state
                )
            # WAITING_IMAGE, PROCESSING, APPLYING_CORRECTION, WAITING_IMAGE
            self.assertEqual(states, [2, 3, 5, 2])
            np.testing.assert_array_equal(self.obs.offsets, [FIRST_SENT])
            await self.remote.cmd_stopClosedLoop.start(timeout=STD_TIMEOUT)
            await self.next_matching(self.remote.evt_closedLoopState, lambda d: d.state == 1)
            # Restarting the loop does not reset the total limit: 0.8 - 0.5 mm of x is left.
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            await self.m2_moved()  # the observing script's defocus moves M2, offset included
            await self.run_wep()
            await self.next_matching(
                self.remote.evt_hexapodCorrection, lambda d: d.applied and d.groupId == "G1"
            )
            self.assertAlmostEqual(self.obs.offsets[-1][0], 0.3, places=7)

    async def test_closed_loop_does_not_apply_a_triplet_taken_before_the_last_offset(self) -> None:
        # Each result takes 0.5 s, so both triplets are in before the first offset goes out.
        with mock.patch.dict(os.environ, {"AUXTELWEP_FAKE_SLEEP_S": "0.5"}):
            await self._back_to_back()

    async def _back_to_back(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            # Two triplets back to back, both before any correction: only the first may move M2.
            for group, first in (("G1", 11), ("G2", 14)):
                for seq, reason in enumerate(TRIPLET, first):
                    self.obs.take(self.data_root, seq, reason, group=group)
            for group in ("G1", "G2"):
                await self.next_matching(self.remote.evt_wavefrontError, lambda d, g=group: d.groupId == g)
            # Its images came before the offset (or M2 is not yet known to have moved for it).
            message = await self.next_matching(
                self.remote.evt_logMessage, lambda d: "the correction of group G2 is not sent" in d.message
            )
            self.assertRegex(message.message, "came before the last offset|M2 may still be moving")
            np.testing.assert_array_equal(self.obs.offsets, [FIRST_SENT])
            state = await self.next_matching(self.remote.evt_closedLoopState, lambda d: d.state == 2)
            self.assertEqual(state.state, 2)  # WAITING_IMAGE, for the next triplet

    async def test_the_closed_loop_waits_for_ataos_to_move_m2(self) -> None:
        # ATAOS acknowledges an offset while the shutter is open and moves M2 once it closes: a triplet
        # taken between the two shows M2 as it was, or moving, and would correct the same error twice.
        self.obs.defer_moves = True
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            groups = {"G1": 11, "G2": 14, "G3": 17}

            async def triplet(group: str) -> None:
                for seq, reason in enumerate(TRIPLET, groups[group]):
                    self.obs.take(self.data_root, seq, reason, group=group)
                await self.next_matching(self.remote.evt_wavefrontError, lambda d: d.groupId == group)

            await triplet("G1")
            await self.next_matching(self.remote.evt_hexapodCorrection, lambda d: d.applied)
            await triplet("G2")
            message = await self.next_matching(
                self.remote.evt_logMessage, lambda d: "M2 may still be moving" in d.message
            )
            self.assertIn("the correction of group G2 is not sent", message.message)
            self.assertEqual(len(self.obs.offsets), 1)
            self.assertIsNone(self.journal().last_move().settled)
            await self.m2_moved()  # the shutter closed: ATAOS moves M2
            await triplet("G3")
            await self.next_matching(
                self.remote.evt_hexapodCorrection, lambda d: d.applied and d.groupId == "G3"
            )
            self.assertEqual(len(self.obs.offsets), 2)
            self.assertIsNotNone(self.journal().moves()[0].settled)

    async def test_the_total_limit_holds_across_loop_restarts_and_restarts_at_enable(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            first = 1

            async def triplet(group: str) -> None:
                nonlocal first
                await self.m2_moved()  # the observing script's defocus: ATAOS moves M2, offsets included
                names = [
                    write_raw(self.data_root, seq, reason, group=group)
                    for seq, reason in enumerate(TRIPLET, first)
                ]
                first += len(TRIPLET)
                await self.run_wep(names)

            async def applied(group: str) -> float:
                data = await self.next_matching(
                    self.remote.evt_hexapodCorrection, lambda d: d.applied and d.groupId == group
                )
                return data.x

            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            await triplet("G1")
            self.assertAlmostEqual(await applied("G1"), 0.5, places=6)
            # ATAOS refuses: the loop stops in ERROR, and only startClosedLoop takes it on.
            self.obs.offset_error = ExpectedError("hexapod interlock")
            await triplet("G2")
            await self.next_matching(self.remote.evt_closedLoopState, lambda d: d.state == 6)
            self.obs.offset_error = None
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            # The refused offset does not count (FAILED), the applied one does: 0.3 mm of x is left.
            await triplet("G3")
            self.assertAlmostEqual(await applied("G3"), 0.3, places=6)
            await triplet("G4")
            self.assertEqual(await applied("G4"), 0.0)  # x used up, and y with it (the lateral step's line)
            self.assertEqual(len(self.obs.offsets), 4)  # G1, G2 (refused), G3, G4
            self.assertLessEqual(sum(o[0] for i, o in enumerate(self.obs.offsets) if i != 1), 0.8)
            # An operator's disable and enable is what restarts the sum.
            await self.remote.cmd_disable.start(timeout=STD_TIMEOUT)
            await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            await triplet("G5")
            self.assertAlmostEqual(await applied("G5"), 0.5, places=6)
        # A restart straight into ENABLED (a supervisor's, after a crash) is no operator's decision: the sum
        # goes on (it restarted from zero, and 1.2 mm of x went out against a limit of 0.8).
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            await triplet("G6")
            self.assertAlmostEqual(await applied("G6"), 0.3, places=6)

    async def test_the_closed_loop_does_not_apply_images_taken_before_startclosedloop(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            # startClosedLoop is no new epoch any more, yet images from before it are still not applied.
            for seq, reason in enumerate(TRIPLET[:2], 11):
                name = self.obs.take(self.data_root, seq, reason, group="G2")
                await self.next_matching(self.remote.evt_imageReceived, lambda d, n=name: d.obsid == n)
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            self.obs.take(self.data_root, 13, TRIPLET[2], group="G2")
            message = await self.next_matching(
                self.remote.evt_logMessage, lambda d: "came before the closed loop started" in d.message
            )
            self.assertIn("G2", message.message)
            self.assertEqual(self.obs.offsets, [])

    async def test_ataos_refusal_is_reported_and_may_be_retried(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            self.obs.offset_error = ExpectedError("hexapod not ready")
            await self.run_wep()
            await self.next_matching(self.remote.evt_closedLoopState, lambda d: d.state == 6)  # ERROR
            journal = self.journal()
            record = journal.last_correction()
            self.assertEqual(record.state, CorrectionState.FAILED)
            self.assertIn("hexapod not ready", record.message)
            self.obs.offset_error = None
            await self.remote.cmd_issueCorrection.start(timeout=STD_TIMEOUT)
            self.assertEqual(len(self.obs.offsets), 2)  # the refused one, then the retry
            self.assertEqual(journal.last_correction().state, CorrectionState.APPLIED)
            self.assertEqual(self.csc.summary_state, State.ENABLED)

    async def test_an_unexpected_error_while_sending_ends_the_step_in_error(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            send = self.csc.ataos.cmd_offset.set_start

            async def broken(**kwargs: Any) -> None:
                raise RuntimeError("DDS write failed (simulated)")

            self.csc.ataos.cmd_offset.set_start = broken
            await self.run_wep()
            await self.next_matching(self.remote.evt_closedLoopState, lambda d: d.state == 6)  # ERROR
            message = await self.next_matching(
                self.remote.evt_logMessage, lambda d: d.message.startswith("closed loop:")
            )
            self.assertIn("failed unexpectedly (it may have been applied)", message.message)
            journal = self.journal()
            record = journal.last_correction()
            # Whether it went out is unknown: counted as sent, never sent again.
            self.assertEqual(record.state, CorrectionState.UNCERTAIN)
            self.assertIn("DDS write failed", record.message)
            self.csc.ataos.cmd_offset.set_start = send
            # Had it gone out, ATAOS's next move (for its look-up table, say) would have applied it.
            await self.m2_moved()
            # As after any other failure: the next result is published, not applied, until startClosedLoop.
            names = [write_raw(self.data_root, seq, reason) for seq, reason in enumerate(TRIPLET, 4)]
            await self.run_wep(names)
            self.assertEqual(self.csc.closed_loop.state.name, "ERROR")
            self.assertEqual(self.obs.offsets, [])
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            await self.run_wep(
                [write_raw(self.data_root, seq, reason) for seq, reason in enumerate(TRIPLET, 7)]
            )
            await self.next_matching(self.remote.evt_hexapodCorrection, lambda d: d.applied)
            self.assertEqual(len(self.obs.offsets), 1)
            self.assertEqual(self.csc.summary_state, State.ENABLED)

    async def test_a_failure_after_the_send_still_ends_the_step_in_error(self) -> None:
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)

            def broken(*args: Any, **kwargs: Any) -> None:
                raise sqlite3.OperationalError("disk I/O error (simulated)")

            self.csc.journal.finish_correction = broken  # ATAOS applies it; journaling that fails
            await self.run_wep()
            await self.next_matching(self.remote.evt_closedLoopState, lambda d: d.state == 6)  # ERROR
            message = await self.next_matching(
                self.remote.evt_logMessage, lambda d: d.message.startswith("closed loop:")
            )
            self.assertIn("failed unexpectedly", message.message)
            self.assertIn("disk I/O error", message.traceback)
            self.assertEqual(len(self.obs.offsets), 1)

    async def test_a_failure_reporting_an_applied_offset_does_not_strand_the_loop(self) -> None:
        # The offset was applied and journaled, then its hexapodCorrection failed: the loop stayed in
        # APPLYING_CORRECTION, applied nothing more and refused startClosedLoop.
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            publish = csc_module.publish_correction

            def broken(*args: Any, applied: bool, **kwargs: Any) -> None:
                if applied:
                    raise RuntimeError("event write failed (simulated)")
                publish(*args, applied=applied, **kwargs)

            with mock.patch.object(csc_module, "publish_correction", broken):
                await self.run_wep()
                states: list[int] = []
                while states[-2:] != [5, 2]:  # APPLYING_CORRECTION, then WAITING_IMAGE again
                    data = await self.remote.evt_closedLoopState.next(flush=False, timeout=RESULT_TIMEOUT)
                    states.append(data.state)
            self.assertEqual(len(self.obs.offsets), 1)
            self.assertEqual(self.journal().last_correction().state, CorrectionState.APPLIED)

    async def test_an_offset_never_written_for_want_of_ataos_is_failed_not_uncertain(self) -> None:
        await self.obs.ataos.close()
        async with self.make_csc(initial_state=State.ENABLED):
            await self.remote.cmd_startClosedLoop.start(timeout=STD_TIMEOUT)
            await self.run_wep()
            await self.next_matching(self.remote.evt_closedLoopState, lambda d: d.state == 6)  # ERROR
            journal = self.journal()
            record = journal.last_correction()
            self.assertEqual(record.state, CorrectionState.FAILED)
            self.assertIn("not sent to ATAOS", record.message)
            # Not applied: not in the totals, and M2 did not move.
            np.testing.assert_allclose(journal.total_applied(), 0.0)
            self.assertIsNone(journal.last_move())
            # So with ATAOS back it may be sent, in full.
            async with Controller("ATAOS", do_callbacks=False) as ataos:
                offsets = []

                async def offset(data: Any) -> None:
                    offsets.append((data.x, data.y, data.z, data.u, data.v))

                ataos.cmd_offset.set_do_callback(offset)
                await self.remote.cmd_issueCorrection.start(timeout=STD_TIMEOUT)
            np.testing.assert_array_equal(offsets, [FIRST_SENT])
            self.assertEqual(journal.last_correction().state, CorrectionState.APPLIED)

    async def test_correction_in_flight_at_a_crash_is_never_resent(self) -> None:
        journal = Journal(self.state_dir / "auxtelwep_journal.sqlite3")
        journal.add_correction("k", "G0", HexapodState(z=0.05))
        journal.claim_correction("k", HexapodState(z=0.045))  # then the CSC "died"
        journal.close()
        async with self.make_csc(initial_state=State.ENABLED):
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_issueCorrection.start(timeout=STD_TIMEOUT)
            self.assertIn("is UNCERTAIN: it is not sent again", cm.exception.ackcmd.result)
            message = await self.next_matching(
                self.remote.evt_logMessage, lambda d: "may or may not" in d.message
            )
            self.assertIn("G0", message.message)
        self.assertEqual(self.obs.offsets, [])
