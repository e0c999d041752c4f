"""Standard CSC state transitions on the real DDS transport."""

from lsst.ts.auxtelwep.sal import AckError, SalRetCode, State, TestCsc
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT, BaseCscTestCase

#: How long (s) to wait to be sure that a sample is NOT coming (delivery in-process takes milliseconds).
NO_DATA_TIMEOUT = 0.3


class UnreachableHardwareCsc(TestCsc):
    """A CSC whose work in ENABLED cannot start."""

    async def handle_summary_state(self):
        if self.summary_state == State.ENABLED:
            raise RuntimeError("cannot connect to the low-level controller")


class StateTransitionTestCase(BaseCscTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, csc_class=TestCsc, **kwargs):
        return csc_class(
            index=1, initial_state=initial_state, config_dir=config_dir, simulation_mode=simulation_mode
        )

    async def test_standard_state_transitions(self):
        async with self.make_csc(initial_state=State.STANDBY):
            await self.check_standard_state_transitions(enabled_commands=("setScalars", "setArrays"))

    async def test_initial_state_enabled(self):
        async with self.make_csc(initial_state=State.ENABLED):
            # A late-joining remote sees the latest summaryState only (evt_max_history=1).
            await self.assert_next_summary_state(State.ENABLED)
            self.assertEqual(self.csc.summary_state, State.ENABLED)
            await self.assert_next_sample(self.remote.evt_softwareVersions, cscVersion="1.0")
            await self.assert_next_sample(self.remote.evt_simulationMode, mode=0)

    async def test_a_new_fault_while_in_fault_is_reported(self):
        async with self.make_csc(initial_state=State.ENABLED):
            self.remote.evt_errorCode.flush()  # the errorCode 0 of the start
            await self.csc.fault(code=1, report="first problem")
            await self.csc.fault(code=2, report="second problem")
            self.assertEqual(self.csc.summary_state, State.FAULT)
            codes = []
            while len(codes) < 2:
                error = await self.remote.evt_errorCode.next(flush=False, timeout=STD_TIMEOUT)
                codes.append((error.errorCode, error.errorReport))
            self.assertEqual(codes, [(1, "first problem"), (2, "second problem")])

    async def test_error_code_is_written_at_start_and_cleared_when_leaving_fault(self):
        async with self.make_csc(initial_state=State.STANDBY):
            # A late joiner finds one from the start.
            await self.assert_next_sample(self.remote.evt_errorCode, errorCode=0, errorReport="")
            await self.csc.fault(code=5, report="broken")
            await self.assert_next_sample(self.remote.evt_errorCode, errorCode=5, errorReport="broken")
            await self.remote.cmd_standby.start(timeout=STD_TIMEOUT)
            await self.assert_next_sample(self.remote.evt_errorCode, errorCode=0, errorReport="")
            self.assertEqual(self.remote.evt_errorCode.get().errorCode, 0)

    async def test_a_failing_handle_summary_state_fails_the_command(self):
        async with self.make_csc(initial_state=State.DISABLED, csc_class=UnreachableHardwareCsc):
            await self.assert_next_summary_state(State.DISABLED)
            with self.assertRaises(AckError) as cm:
                await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
            self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_FAILED)
            self.assertIn("low-level controller", cm.exception.ackcmd.result)
            # As ts_salobj: ENABLED is not reported, no FAULT, and the CSC keeps the state it went to.
            with self.assertRaises(TimeoutError):
                await self.remote.evt_summaryState.next(flush=False, timeout=NO_DATA_TIMEOUT)
            self.assertEqual(self.csc.summary_state, State.ENABLED)
