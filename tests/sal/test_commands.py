"""Command acks on real DDS: FAILED text, NOPERM, INPROGRESS, timeouts, do_ method check, duplicates."""

import asyncio
import time

import pytest

from lsst.ts.auxtelwep.sal import (
    AckError,
    AckTimeoutError,
    BaseCsc,
    CommandNotSentError,
    Domain,
    Remote,
    SalRetCode,
    State,
    TestCsc,
)
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT, BaseCscTestCase


class CommandTestCase(BaseCscTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, **kwargs):
        return TestCsc(index=3, initial_state=initial_state, **kwargs)

    async def test_failed_ack_text(self):
        async with self.make_csc(initial_state=State.ENABLED):
            with self.assertLogs("Test:3", level="INFO") as logs:
                with self.assertRaises(AckError) as cm:
                    await self.remote.cmd_fail.set_start(
                        message="bad input", expected=True, timeout=STD_TIMEOUT
                    )
            self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_FAILED)
            self.assertIn("bad input", cm.exception.ackcmd.result)
            # A refusal (ExpectedError) is no error of the CSC: INFO, no traceback (no alarm in LOVE).
            self.assertEqual([record.levelname for record in logs.records], ["INFO"])
            self.assertIn("fail refused: bad input", logs.output[0])
            with self.assertLogs("Test:3", level="ERROR") as logs:
                with self.assertRaises(AckError) as cm:
                    await self.remote.cmd_fail.set_start(message="oops", expected=False, timeout=STD_TIMEOUT)
            self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_FAILED)
            self.assertIn("RuntimeError('oops')", cm.exception.ackcmd.result)
            self.assertTrue(any("Traceback" in line for line in logs.output))  # unexpected: traceback logged

    async def test_noperm_after_set_auth_list(self):
        async with self.make_csc(initial_state=State.ENABLED):
            async with Domain() as domain:
                domain.identity = "mallory@example.org"
                async with Remote(domain, "Test", 3, include=["authList"]) as other:
                    # No user list yet: any user may send setScalars.
                    await other.cmd_setScalars.set_start(int0=1, timeout=STD_TIMEOUT)
                    await self.remote.cmd_setAuthList.set_start(
                        authorizedUsers="alice@example.org", nonAuthorizedCSCs="Script:7", timeout=STD_TIMEOUT
                    )
                    auth = await other.evt_authList.aget(timeout=STD_TIMEOUT)
                    while auth.authorizedUsers == "":
                        auth = await other.evt_authList.next(flush=False, timeout=STD_TIMEOUT)
                    self.assertEqual(auth.authorizedUsers, "alice@example.org")
                    self.assertEqual(auth.nonAuthorizedCSCs, "Script:7")
                    with self.assertRaises(AckError) as cm:
                        await other.cmd_setScalars.set_start(int0=2, timeout=STD_TIMEOUT)
                    self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_NOPERM)
                    self.assertIn("mallory@example.org", cm.exception.ackcmd.result)
                    # Commands not listed in auth_commands are not checked.
                    await other.cmd_wait.set_start(duration=0, timeout=STD_TIMEOUT)
                    domain.identity = "Script:7"
                    with self.assertRaises(AckError) as cm:
                        await other.cmd_setScalars.set_start(int0=3, timeout=STD_TIMEOUT)
                    self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_NOPERM)
                    domain.identity = "alice@example.org"
                    await other.cmd_setScalars.set_start(int0=4, timeout=STD_TIMEOUT)
            # The CSC's own identity (this remote shares its domain) is always allowed.
            await self.remote.cmd_setScalars.set_start(int0=5, timeout=STD_TIMEOUT)

    async def test_inprogress_extends_deadline(self):
        async with self.make_csc(initial_state=State.STANDBY):
            t0 = time.monotonic()
            ack = await self.remote.cmd_wait.set_start(duration=1.0, ackTimeout=2.0, timeout=0.5)
            self.assertEqual(ack.ack, SalRetCode.CMD_COMPLETE)
            self.assertGreaterEqual(time.monotonic() - t0, 1.0)
            first = await self.remote.cmd_wait.set_start(
                duration=0.3, ackTimeout=1.0, wait_done=False, timeout=1
            )
            self.assertEqual(first.ack, SalRetCode.CMD_INPROGRESS)
            self.assertEqual(first.timeout, 1.0)
            # The final ack of a command started without waiting (ts_salobj's next_ackcmd).
            final = await self.remote.cmd_wait.next_ackcmd(first, timeout=STD_TIMEOUT)
            self.assertEqual(final.ack, SalRetCode.CMD_COMPLETE)
            with self.assertRaisesRegex(RuntimeError, "unknown or finished"):
                await self.remote.cmd_wait.next_ackcmd(final, timeout=STD_TIMEOUT)
            # Without CMD_INPROGRESS the wait times out; the error carries the last ack (none: NOACK).
            with self.assertRaises(AckTimeoutError) as cm:
                await self.remote.cmd_wait.set_start(duration=1.0, ackTimeout=0, timeout=0.3)
            self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_NOACK)
            self.assertNotIsInstance(cm.exception, CommandNotSentError)  # it was written: it may have acted

    async def test_no_controller_means_not_sent(self):
        async with Domain() as domain, Remote(domain, "Test", 99, include=[]) as nobody:
            with self.assertRaises(AckTimeoutError) as cm:  # what ts_salobj callers catch
                await nobody.cmd_wait.set_start(duration=0, timeout=0.3)
            # ... told apart from a time-out after the write: nothing was sent.
            self.assertIsInstance(cm.exception, CommandNotSentError)
            self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_NOACK)
            self.assertIn("no Test:99 controller found", str(cm.exception))

    async def test_acks_only_for_issuing_remote(self):
        async with self.make_csc(initial_state=State.STANDBY):
            async with Domain() as domain, Remote(domain, "Test", 3, include=[]) as other:
                domain.identity = "someone@else.org"
                # Same next seqNum and command on both remotes: only identity/origin tell the acks apart.
                other.salinfo._seq_num = self.remote.salinfo._seq_num
                t0 = time.monotonic()
                slow = asyncio.create_task(other.cmd_wait.set_start(duration=0.5, timeout=STD_TIMEOUT))
                fast = await self.remote.cmd_wait.set_start(duration=0, timeout=STD_TIMEOUT)
                slow_ack = await slow
                self.assertEqual(fast.private_seqNum, slow_ack.private_seqNum)
                self.assertEqual(slow_ack.identity, "someone@else.org")
                self.assertGreaterEqual(time.monotonic() - t0, 0.5)


class MissingDo(BaseCsc):
    async def do_wait(self, data):
        pass

    async def do_notACommand(self, data):
        pass


class DoMethodAndDuplicateTestCase(BaseCscTestCase):
    async def test_do_method_check(self):
        with pytest.raises(TypeError) as excinfo:
            MissingDo("Test", index=1)
        message = str(excinfo.value)
        for name in ("do_setScalars", "do_fail", "do_fault", "do_notACommand"):
            self.assertIn(name, message)
        self.assertNotIn("do_wait'", message)

    async def test_duplicate_instance_refused(self):
        async with TestCsc(index=4) as first:
            self.assertEqual(first.summary_state, State.STANDBY)
            second = TestCsc(index=4, check_if_duplicate=True)
            with self.assertRaises(RuntimeError) as cm:
                await second.start_task
            self.assertIn("another Test:4 is running", str(cm.exception))
            with self.assertRaises(RuntimeError):
                await second.done_task
            # A different index is not a duplicate.
            async with TestCsc(index=5, check_if_duplicate=True) as third:
                self.assertEqual(third.summary_state, State.STANDBY)
