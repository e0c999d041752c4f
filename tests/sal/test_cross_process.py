"""A remote in another process sees heartbeats, the latest events as a late joiner, and command acks."""

import asyncio
import json
import os
import sys
from pathlib import Path

from lsst.ts.auxtelwep.sal import Domain, Remote, SalRetCode, State, TestCsc
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT, BaseCscTestCase

PROBE = Path(__file__).with_name("remote_probe.py")
#: Time limit (s) for the probe process (Python start-up and imports included).
PROBE_TIMEOUT = 60.0


class CrossProcessTestCase(BaseCscTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, **kwargs):
        return TestCsc(index=1, initial_state=initial_state)

    async def test_remote_in_other_process(self):
        async with self.make_csc(initial_state=State.ENABLED):
            await self.assert_next_summary_state(State.ENABLED)
            for value in (1, 2, 3):
                await self.remote.cmd_setScalars.set_start(int0=value, timeout=STD_TIMEOUT)
            env = dict(os.environ)
            src = str(Path(__file__).resolve().parents[2] / "python")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(PROBE),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
            self.assertEqual(proc.returncode, 0, msg=stderr.decode())
            seen = json.loads(stdout.decode().strip().splitlines()[-1])
        self.assertEqual(seen["first_command_acks"], [SalRetCode.CMD_COMPLETE] * 3)
        self.assertEqual(seen["summaryState_get"], State.ENABLED)
        self.assertEqual(seen["summaryState"], State.ENABLED)
        self.assertEqual(seen["scalars_int0"], 3)  # the latest value, not the first
        self.assertTrue(seen["scalars_queue_empty"])  # older history trimmed (evt_max_history=1)
        self.assertEqual(seen["heartbeat_identity"], "Test:1")
        self.assertEqual(seen["wait_ack"], SalRetCode.CMD_COMPLETE)
        self.assertIn("@", seen["wait_identity"])  # the probe's own user@host identity came back
        self.assertEqual(seen["fail_ack"], SalRetCode.CMD_FAILED)
        self.assertIn("probe failure", seen["fail_result"])

    async def test_other_domain_same_process_is_isolated(self):
        """A remote on another partition prefix sees nothing."""
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            async with Domain(partition_prefix=self.partition_prefix + "-other") as domain:
                async with Remote(domain, "Test", 1, include=["summaryState"]) as remote:
                    with self.assertRaises(TimeoutError):
                        await remote.evt_summaryState.next(flush=False, timeout=0.5)
