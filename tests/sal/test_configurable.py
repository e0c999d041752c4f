"""ConfigurableCsc (config files, events, schema) and amain, on real DDS."""

import asyncio
import contextlib
import io

from lsst.ts.auxtelwep.sal import AckError, Domain, Remote, SalRetCode, State, TestConfig, TestCsc
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT, BaseCscTestCase


def write_config_dir(path):
    (path / "_init.yaml").write_text("string0: from_init\nint0: 1\n")
    (path / "_testsite.yaml").write_text("int0: 2\n")
    (path / "fast.yaml").write_text("float0: 3.5\n")
    (path / "broken.yaml").write_text("int0: -5\n")
    return path


class ConfigurableTestCase(BaseCscTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, **kwargs):
        return TestCsc(
            index=6, initial_state=initial_state, config_dir=config_dir, simulation_mode=simulation_mode
        )

    def setUp(self):
        super().setUp()
        import os
        import tempfile
        from pathlib import Path

        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.config_dir = write_config_dir(Path(tmp.name))
        saved = os.environ.get("LSST_SITE")
        os.environ["LSST_SITE"] = "testsite"
        self.addCleanup(
            lambda: os.environ.pop("LSST_SITE") if saved is None else os.environ.update(LSST_SITE=saved)
        )

    async def test_config_files_and_events(self):
        async with self.make_csc(initial_state=State.STANDBY, config_dir=self.config_dir):
            available = await self.remote.evt_configurationsAvailable.aget(timeout=STD_TIMEOUT)
            self.assertEqual(available.overrides, "broken.yaml,fast.yaml")
            self.assertEqual(available.schemaVersion, "v1")
            await self.remote.cmd_start.set_start(configurationOverride="fast.yaml", timeout=STD_TIMEOUT)
            applied = await self.remote.evt_configurationApplied.next(flush=False, timeout=STD_TIMEOUT)
            self.assertEqual(applied.configurations, "_init.yaml,_testsite.yaml,fast.yaml")
            self.assertEqual(self.csc.config, TestConfig(string0="from_init", int0=2, float0=3.5))
            await self.remote.cmd_standby.start(timeout=STD_TIMEOUT)
            for override, text in (("broken.yaml", "invalid"), ("missing.yaml", "not found")):
                with self.assertRaises(AckError) as cm:
                    await self.remote.cmd_start.set_start(configurationOverride=override, timeout=STD_TIMEOUT)
                self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_FAILED)
                self.assertIn(text, cm.exception.ackcmd.result)
                self.assertEqual(self.csc.summary_state, State.STANDBY)

    def test_schema(self):
        schema = TestCsc.get_config_schema()
        self.assertEqual(schema["title"], "Test v1")
        self.assertIn("string0", schema["properties"])

    async def test_amain(self):
        args = ["7", "--state", "disabled", "--override", "fast.yaml", "--configdir", str(self.config_dir)]
        task = asyncio.create_task(TestCsc.amain(index=True, args=args))
        async with (
            Domain() as domain,
            Remote(domain, "Test", 7, include=["summaryState", "heartbeat"]) as remote,
        ):
            state = await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
            while state.summaryState != State.DISABLED:
                state = await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
            await remote.evt_heartbeat.next(flush=False, timeout=STD_TIMEOUT)
            await remote.cmd_standby.start(timeout=STD_TIMEOUT)
            await remote.cmd_exitControl.start(timeout=STD_TIMEOUT)
            await asyncio.wait_for(task, STD_TIMEOUT)

    async def test_amain_names_a_bad_config_dir(self):
        # A configuration directory that is not one: one line and status 2, like any argument error (it was a
        # ValueError traceback).
        args = ["7", "--configdir", str(self.config_dir / "missing")]
        with contextlib.redirect_stderr(io.StringIO()) as err, self.assertRaises(SystemExit) as cm:
            await TestCsc.amain(index=True, args=args)
        self.assertEqual(cm.exception.code, 2)
        self.assertIn("is not a directory", err.getvalue())
        self.assertNotIn("Traceback", err.getvalue())

    async def test_amain_stays_up_in_standby_if_the_initial_state_fails(self):
        # As ts_salobj: the failure is logged and the CSC waits for a start with another override (it used
        # to exit).
        args = ["7", "--state", "enabled", "--override", "broken.yaml", "--configdir", str(self.config_dir)]
        with self.assertLogs("Test:7", level="ERROR") as logs:
            task = asyncio.create_task(TestCsc.amain(index=True, args=args))
            async with (
                Domain() as domain,
                Remote(domain, "Test", 7, include=["summaryState", "errorCode"]) as remote,
            ):
                state = await remote.evt_summaryState.aget(timeout=STD_TIMEOUT)
                self.assertEqual(state.summaryState, State.STANDBY)
                error = await remote.evt_errorCode.aget(timeout=STD_TIMEOUT)
                self.assertEqual(error.errorCode, 0)
                self.assertFalse(task.done())
                await remote.cmd_start.set_start(configurationOverride="fast.yaml", timeout=STD_TIMEOUT)
                await remote.cmd_standby.start(timeout=STD_TIMEOUT)
                await remote.cmd_exitControl.start(timeout=STD_TIMEOUT)
                await asyncio.wait_for(task, STD_TIMEOUT)
        self.assertIn("could not go to ENABLED: start failed; staying in STANDBY", logs.output[0])
        self.assertIn("broken.yaml", logs.output[0])
