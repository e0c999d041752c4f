"""The AuxTelWEP CSC on real DDS: state transitions, what a remote sees, FAULT on lost dependencies."""

import shutil

from csc_fakes import CscTestCase

from lsst.ts.auxtelwep.csc import ERROR_CONFIG, ERROR_DATA_ROOT
from lsst.ts.auxtelwep.csc_worker import run_pipeline
from lsst.ts.auxtelwep.sal import AckError, Domain, Remote, SalRetCode, State
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT

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
                self.assertIn("_init.yaml", applied.configurations)
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

    async def test_unreadable_data_root_faults_at_enable(self) -> None:
        shutil.rmtree(self.data_root / "raw")
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            await self.remote.cmd_start.start(timeout=STD_TIMEOUT)
            await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
            await self.next_matching(self.remote.evt_summaryState, lambda d: d.summaryState == State.FAULT)
            error = await self.remote.evt_errorCode.aget(timeout=STD_TIMEOUT)
            self.assertEqual(error.errorCode, ERROR_DATA_ROOT)
            self.assertIn("not a readable directory", error.errorReport)

    async def test_missing_refcat_faults_at_enable(self) -> None:
        (self.config_dir / "refcat.yaml").write_text(f"refcat_path: {self.tmp / 'nowhere.ecsv'}\n")
        async with self.make_csc(initial_state=State.STANDBY):
            await self.remote.cmd_start.set_start(configurationOverride="refcat.yaml", timeout=STD_TIMEOUT)
            await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
            await self.next_matching(self.remote.evt_summaryState, lambda d: d.summaryState == State.FAULT)
            error = await self.remote.evt_errorCode.aget(timeout=STD_TIMEOUT)
            self.assertEqual(error.errorCode, ERROR_CONFIG)
            self.assertIn("nowhere.ecsv", error.errorReport)
