"""Remote construction as ts_salobj scripts and ts_observatory_control's RemoteGroup use it."""

import getpass
import os
import socket
import unittest
from unittest import mock

from lsst.ts.auxtelwep.sal import Domain, Remote
from lsst.ts.auxtelwep.sal.testutils import dds_isolation


class RemoteTestCase(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        isolation = dds_isolation()
        isolation.__enter__()
        self.addCleanup(isolation.__exit__, None, None, None)

    async def test_include_and_exclude_ignore_names_that_are_no_event_or_telemetry(self):
        # RemoteGroup passes the generic command names along with the events it reads.
        async with Domain() as domain:
            include = ["enable", "start", "summaryState", "scalars", "nothing"]
            remote = Remote(domain, "Test", 1, include=include)
            remote.start_task.cancel()  # nobody answers: do not wait for discovery
            self.assertEqual(
                sorted(name for name in remote.topic_names if not name.startswith("cmd_")),
                ["evt_scalars", "evt_summaryState", "tel_scalars"],
            )
            self.assertTrue(hasattr(remote, "cmd_enable"))
            await remote.close()
            remote = Remote(domain, "Test", 1, exclude=["enable", "heartbeat", "nothing"])
            remote.start_task.cancel()
            self.assertFalse(hasattr(remote, "evt_heartbeat"))
            self.assertTrue(hasattr(remote, "evt_summaryState"))
            await remote.close()
            with self.assertRaises(ValueError):
                Remote(domain, "Test", 1, include=["summaryState"], exclude=["heartbeat"])

    async def test_salinfo_names_its_topics_and_tells_if_indexed(self):
        # ts_standardscripts' RunCommand checks the command and event names it is given against these.
        async with Domain() as domain:
            test = Remote(domain, "Test", 1, include=[])
            info = test.salinfo
            self.assertEqual(info.telemetry_names, ("scalars",))
            self.assertIn("setScalars", info.command_names)
            self.assertIn("summaryState", info.event_names)
            for names in (info.command_names, info.event_names):
                self.assertIsInstance(names, tuple)
                self.assertEqual(list(names), sorted(names))
            self.assertIs(info.indexed, True)
            wep = Remote(domain, "AuxTelWEP", include=[])
            self.assertIs(wep.salinfo.indexed, False)
            await test.close()
            await wep.close()
            # No controller of AuxTelWEP writes index 1: a remote of it would wait for nothing.
            with self.assertRaisesRegex(ValueError, "index=1 must be 0 or None: AuxTelWEP is not an indexed"):
                Remote(domain, "AuxTelWEP", 1, include=[])

    async def test_only_events_have_history(self):
        # Telemetry and commands are not durable: a sample whose send time (another host's clock) is before
        # the reader started is no history, and max_history=0 must not drop it.
        async with Domain() as domain:
            remote = Remote(domain, "Test", 1, include=["scalars"], evt_max_history=0)
            remote.start_task.cancel()
            for reader in (remote.tel_scalars, remote.evt_scalars):
                data = reader.DataType(salIndex=1, private_sndStamp=1.0, int0=3)
                reader._deliver([data])
            self.assertEqual(remote.tel_scalars.get().int0, 3)
            self.assertIsNone(remote.evt_scalars.get())
            await remote.close()

    async def test_queue_reads_are_refused_while_a_callback_is_set(self):
        # As ts_salobj: with a callback, samples go to it, not to the queue these read.
        async with Domain() as domain:
            remote = Remote(domain, "Test", 1, include=["scalars"])
            remote.start_task.cancel()
            reader = remote.evt_scalars
            reader.callback = lambda data: None
            with self.assertRaisesRegex(RuntimeError, "callback"):
                reader.flush()
            with self.assertRaisesRegex(RuntimeError, "callback"):
                reader.get_oldest()
            with self.assertRaisesRegex(RuntimeError, "callback"):
                await reader.aget(timeout=1)
            with self.assertRaisesRegex(RuntimeError, "callback"):
                await reader.next(flush=False, timeout=1)
            reader.callback = None
            reader.flush()
            await remote.close()

    async def test_a_remote_command_is_only_sent_by_start(self):
        # As ts_salobj: write would send a command whose acks nobody waits for.
        async with Domain() as domain:
            remote = Remote(domain, "Test", 1, include=[])
            with self.assertRaisesRegex(NotImplementedError, "set_start"):
                remote.cmd_setLogLevel.set_write(level=10)
            with self.assertRaisesRegex(NotImplementedError, "start"):
                remote.cmd_setLogLevel.write()
            await remote.close()

    async def test_domain_user_host(self):
        # RemoteGroup.get_identity falls back on it when the identity is a CSC name.
        with mock.patch.dict(os.environ, {"LSST_IDENTITY": "Script:3"}):
            async with Domain() as domain:
                self.assertEqual(domain.default_identity, "Script:3")
                self.assertEqual(domain.user_host, f"{getpass.getuser()}@{socket.gethostname()}")
