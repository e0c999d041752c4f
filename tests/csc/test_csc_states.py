"""The AuxTelWEP CSC on real DDS: state transitions, what a remote sees, FAULT on lost dependencies."""

import asyncio
import os
import shutil
from unittest import mock

from csc_fakes import RESULT_TIMEOUT, CscTestCase, Observatory, write_raw

from lsst.ts.auxtelwep.csc import ERROR_DATA_ROOT
from lsst.ts.auxtelwep.csc_worker import run_pipeline
from lsst.ts.auxtelwep.journal import Journal
from lsst.ts.auxtelwep.sal import AckError, Domain, Remote, SalRetCode, State
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT
from lsst.ts.auxtelwep.triplet import TripletState

ENABLED_COMMANDS = ("runWEP", "startClosedLoop", "stopClosedLoop", "issueCorrection")


class StateTestCase(CscTestCase):
    async def test_standard_state_transitions(self) -> None:
        async with self.make_csc(initial_state=State.STANDBY):
            await self.check_standard_state_transitions(enabled_commands=ENABLED_COMMANDS)

    async def test_remote_sees_heartbeat_state_and_acks(self) -> None:
        async with self.make_csc(initial_state=State.STANDBY):
            # A remote on its own domain (another identity), as a script would be.
            async with Domain() as domain, Remote(domain, "AuxTelWEP") as remote:
                heartbeat = await remote.evt_heartbeat.next(flush=True, timeout=STD_TIMEOUT)
                self.assertEqual(heartbeat.private_identity, "AuxTelWEP")
                state = await remote.evt_summaryState.aget(timeout=STD_TIMEOUT)
                self.assertEqual(state.summaryState, State.STANDBY)
                ack = await remote.cmd_start.set_start(configurationOverride="", timeout=STD_TIMEOUT)
                self.assertEqual(ack.ack, SalRetCode.CMD_COMPLETE)
                self.assertEqual(ack.identity, domain.identity)
                applied = await remote.evt_configurationApplied.aget(timeout=STD_TIMEOUT)
                # Names relative to the url: the config_dir's _init.yaml, not also the shipped one.
                self.assertEqual(applied.configurations.split(",").count("_init.yaml"), 1)
                self.assertEqual(applied.url, self.config_dir.resolve().as_uri())
                await remote.cmd_enable.start(timeout=STD_TIMEOUT)
                await self.next_matching(remote.evt_summaryState, lambda d: d.summaryState == State.ENABLED)
                loop_state = await remote.evt_closedLoopState.aget(timeout=STD_TIMEOUT)
                self.assertEqual(loop_state.state, 1)  # IDLE
                with self.assertRaises(AckError) as cm:
                    await remote.cmd_runWEP.set_start(intraObsid="", extraObsid="", timeout=STD_TIMEOUT)
                self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_FAILED)
                self.assertIn("needs intraObsid and extraObsid", cm.exception.ackcmd.result)

    async def test_invalid_override_keeps_standby(self) -> None:
        (self.config_dir / "bad.yaml").write_text("cadence:\n  partner_timeout_s: -3\n")
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_start.set_start(configurationOverride="bad.yaml", timeout=STD_TIMEOUT)
            self.assertIn("cadence.partner_timeout_s", cm.exception.ackcmd.result)
            self.assertEqual(self.csc.summary_state, State.STANDBY)

    async def test_invalid_pipeline_options_fail_start(self) -> None:
        # With the real processor, the science options are validated at `start`, not at the first triplet.
        (self.config_dir / "isr.yaml").write_text("pipeline:\n  isr: {doFlat: true, doApplyGains: true}\n")
        async with self.make_csc(initial_state=State.STANDBY, processor=run_pipeline):
            await self.assert_next_summary_state(State.STANDBY)
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_start.set_start(configurationOverride="isr.yaml", timeout=STD_TIMEOUT)
            self.assertIn("invalid pipeline configuration", cm.exception.ackcmd.result)
            self.assertIn("doApplyGains", cm.exception.ackcmd.result)
            self.assertEqual(self.csc.summary_state, State.STANDBY)

    async def test_a_runwep_config_the_pipeline_refuses_fails_the_command(self) -> None:
        names = [write_raw(self.data_root, seq, reason) for seq, reason in enumerate(("INTRA", "EXTRA"), 1)]
        async with self.make_csc(initial_state=State.ENABLED, processor=run_pipeline):
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_runWEP.set_start(
                    intraObsid=names[0],
                    extraObsid=names[1],
                    config="estimation: {algoritm: tie}",
                    timeout=STD_TIMEOUT,
                )
            self.assertIn("invalid runWEP config", cm.exception.ackcmd.result)
            self.assertIn("algoritm", cm.exception.ackcmd.result)
            journal = Journal(self.state_dir / "auxtelwep_journal.sqlite3")
            self.addCleanup(journal.close)
            self.assertEqual(journal.triplets(), [])  # nothing queued, nothing to reject later

    async def test_unreadable_data_root_refuses_enable_and_faults_an_enabled_start(self) -> None:
        shutil.rmtree(self.data_root / "raw")
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            await self.remote.cmd_start.start(timeout=STD_TIMEOUT)
            # The command fails, so a script changing states learns it there (as ts_salobj's begin_enable).
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
            self.assertIn("not a readable directory", cm.exception.ackcmd.result)
            self.assertEqual(self.csc.summary_state, State.DISABLED)
        async with self.make_csc(initial_state=State.ENABLED):  # no command to refuse: FAULT
            await self.next_matching(self.remote.evt_summaryState, lambda d: d.summaryState == State.FAULT)
            error = await self.remote.evt_errorCode.aget(timeout=STD_TIMEOUT)
            self.assertEqual(error.errorCode, ERROR_DATA_ROOT)
            self.assertIn("not a readable directory", error.errorReport)

    async def test_missing_refcat_refuses_enable(self) -> None:
        (self.config_dir / "refcat.yaml").write_text(f"refcat_path: {self.tmp / 'nowhere.ecsv'}\n")
        async with self.make_csc(initial_state=State.STANDBY):
            await self.remote.cmd_start.set_start(configurationOverride="refcat.yaml", timeout=STD_TIMEOUT)
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
            self.assertIn("nowhere.ecsv", cm.exception.ackcmd.result)
            self.assertEqual(self.csc.summary_state, State.DISABLED)

    async def test_disabling_while_a_triplet_is_processed_does_not_use_up_its_attempts(self) -> None:
        # max_attempts is 2 by default: two disables used to give up on the triplet ("the CSC stopped").
        with mock.patch.dict(os.environ, {"AUXTELWEP_FAKE_SLEEP_S": "1.5"}):
            async with self.make_csc(initial_state=State.ENABLED):
                obs = await Observatory().start()
                self.addAsyncCleanup(obs.close)
                journal = Journal(self.state_dir / "auxtelwep_journal.sqlite3")
                self.addCleanup(journal.close)
                for seq, reason in enumerate(("INTRA", "EXTRA", "INFOCUS"), 1):
                    obs.take(self.data_root, seq, reason, group="G1")
                for _ in range(2):
                    while not journal.triplets(TripletState.PROCESSING):
                        await asyncio.sleep(0.1)
                    await self.remote.cmd_disable.start(timeout=STD_TIMEOUT)
                    await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
                wfe = await self.remote.evt_wavefrontError.next(flush=False, timeout=RESULT_TIMEOUT)
                self.assertEqual(wfe.groupId, "G1")
                (done,) = journal.triplets(TripletState.DONE)
                self.assertEqual(done.attempts, 1)
