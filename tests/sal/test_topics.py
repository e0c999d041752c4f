"""Writers and readers on real DDS: set_write change-only semantics, arrays, get/next/aget/flush/callback."""

import asyncio
import math

from lsst.ts.auxtelwep.sal import Domain, Remote, State, TestCsc
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT, BaseCscTestCase

#: How long (s) to wait to be sure that a sample is NOT coming (delivery in-process takes milliseconds).
NO_DATA_TIMEOUT = 0.3


class TopicTestCase(BaseCscTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, **kwargs):
        return TestCsc(index=2, initial_state=initial_state)

    async def test_set_write_change_only(self):
        async with self.make_csc(initial_state=State.ENABLED):
            evt = self.csc.evt_scalars
            reader = self.remote.evt_scalars
            first = evt.set_write(int0=1, double0=math.nan)
            self.assertTrue(first.was_written)
            await self.assert_next_sample(reader, int0=1)
            # Same values (NaN equals NaN): nothing written.
            again = evt.set_write(int0=1, double0=math.nan)
            self.assertFalse(again.was_written)
            self.assertFalse(again.did_change)
            with self.assertRaises(TimeoutError):
                await reader.next(flush=False, timeout=NO_DATA_TIMEOUT)
            # Forced: written though unchanged.
            forced = evt.set_write(int0=1, force_output=True)
            self.assertTrue(forced.was_written)
            self.assertFalse(forced.did_change)
            await self.assert_next_sample(reader, int0=1)
            # Changed: written; the result holds a copy of what was sent.
            changed = evt.set_write(string0="new")
            self.assertTrue(changed.was_written and changed.did_change)
            self.assertEqual(changed.data.string0, "new")
            data = await self.assert_next_sample(reader, int0=1, string0="new")
            self.assertTrue(math.isnan(data.double0))
            self.assertEqual(data.private_identity, "Test:2")
            self.assertEqual(data.salIndex, 2)
            self.assertGreaterEqual(data.private_rcvStamp, data.private_sndStamp)

    async def test_telemetry_always_written(self):
        async with self.make_csc(initial_state=State.STANDBY):
            for _ in range(3):
                self.assertTrue(self.csc.tel_scalars.set_write(int0=5).was_written)
            for _ in range(3):
                await self.assert_next_sample(self.remote.tel_scalars, int0=5)

    async def test_arrays_and_bad_fields(self):
        async with self.make_csc(initial_state=State.ENABLED):
            evt = self.csc.evt_arrays
            evt.set_write(int0=[1, 2, 3, 4, 5], double0=(0.5,) * 5)
            data = await self.remote.evt_arrays.next(flush=False, timeout=STD_TIMEOUT)
            self.assertEqual(list(data.int0), [1, 2, 3, 4, 5])
            with self.assertRaises(ValueError):
                evt.set(int0=[1, 2])
            with self.assertRaises(AttributeError):
                evt.set(no_such_field=1)
            with self.assertRaises(AttributeError):
                await self.remote.cmd_setScalars.set_start(nonsense=3, timeout=STD_TIMEOUT)

    async def test_reader_api(self):
        async with self.make_csc(initial_state=State.ENABLED):
            reader = self.remote.evt_scalars
            self.assertIsNone(reader.get())
            for value in (1, 2, 3):
                self.csc.evt_scalars.set_write(int0=value)
            await asyncio.sleep(NO_DATA_TIMEOUT)
            self.assertEqual(reader.get().int0, 3)
            self.assertEqual((await reader.aget(timeout=STD_TIMEOUT)).int0, 3)
            await self.assert_next_sample(reader, int0=1)  # next() reads the queue in order
            reader.flush()
            with self.assertRaises(TimeoutError):
                await reader.next(flush=False, timeout=NO_DATA_TIMEOUT)
            received = []
            done = asyncio.Event()

            async def callback(data):
                received.append(data.int0)
                if len(received) == 2:
                    done.set()

            reader.callback = callback
            with self.assertRaises(RuntimeError):
                await reader.next(flush=False, timeout=NO_DATA_TIMEOUT)
            self.csc.evt_scalars.set_write(int0=10)
            self.csc.evt_scalars.set_write(int0=11)
            await asyncio.wait_for(done.wait(), STD_TIMEOUT)
            self.assertEqual(received, [10, 11])

    async def test_each_command_starts_from_fresh_data_and_none_keeps_a_field(self):
        async with self.make_csc(initial_state=State.ENABLED):
            command = self.remote.cmd_setScalars
            await command.set_start(int0=7, string0="first", timeout=STD_TIMEOUT)
            await self.assert_next_sample(self.remote.evt_scalars, int0=7, string0="first")
            # Nothing of the first command carries over (as ts_salobj's RemoteCommand.set).
            await command.set_start(int0=8, timeout=STD_TIMEOUT)
            await self.assert_next_sample(self.remote.evt_scalars, int0=8, string0="")
            # None leaves a field as it is (it must still be a field).
            evt = self.csc.evt_scalars
            evt.set(string0="kept")
            evt.set(string0=None, int0=9)
            self.assertEqual((evt.data.string0, evt.data.int0), ("kept", 9))
            with self.assertRaises(AttributeError):
                evt.set(no_such_field=None)

    async def test_late_joiner_history_and_callback_limits(self):
        async with self.make_csc(initial_state=State.ENABLED):
            for value in range(1, 11):
                self.csc.evt_scalars.set_write(int0=value)
            async with Domain() as domain:
                # Right after start, get() holds the latest value, and the queue the newest history.
                async with Remote(domain, "Test", 2, include=["scalars"], evt_max_history=50) as late:
                    self.assertEqual(late.evt_scalars.get().int0, 10)
                    self.assertEqual((await late.evt_scalars.aget(timeout=STD_TIMEOUT)).int0, 10)
                    self.assertEqual(late.evt_scalars.nqueued, 10)  # aget took nothing from the queue
                    queued = [late.evt_scalars.get_oldest().int0 for _ in range(10)]
                    self.assertEqual(queued, list(range(1, 11)))
                    self.assertIsNone(late.evt_scalars.get_oldest())
                # A callback set before the history arrives gets the newest max_history samples.
                remote = Remote(domain, "Test", 2, include=["scalars"], evt_max_history=3)
                received: list[int] = []
                remote.evt_scalars.callback = lambda data: received.append(data.int0)
                self.assertTrue(remote.evt_scalars.has_callback)
                await remote.start_task
                await asyncio.sleep(NO_DATA_TIMEOUT)
                self.assertEqual(received, [8, 9, 10])
                await remote.close()

    async def test_max_history_0_reads_no_history(self):
        async with self.make_csc(initial_state=State.ENABLED):
            self.csc.evt_scalars.set_write(int0=1)
            async with (
                Domain() as domain,
                Remote(domain, "Test", 2, include=["scalars", "summaryState"], evt_max_history=0) as late,
            ):
                # As ts_salobj: not even get() sees what was written before the remote started.
                for reader in (late.evt_scalars, late.evt_summaryState):
                    self.assertIsNone(reader.get())
                    self.assertFalse(reader.has_data)
                    self.assertEqual(reader.nqueued, 0)
                with self.assertRaises(TimeoutError):
                    await late.evt_scalars.aget(timeout=NO_DATA_TIMEOUT)
                self.csc.evt_scalars.set_write(int0=2)
                self.assertEqual((await late.evt_scalars.aget(timeout=STD_TIMEOUT)).int0, 2)
                await self.assert_next_sample(late.evt_scalars, int0=2)

    async def test_a_full_queue_is_reported_once_until_it_is_read(self):
        async with self.make_csc(initial_state=State.ENABLED):
            async with (
                Domain() as domain,
                Remote(domain, "Test", 2, include=["scalars"], queue_len=2) as remote,
            ):
                reader = remote.evt_scalars
                with self.assertLogs(reader.log, level="WARNING") as logs:
                    for value in range(1, 7):
                        self.csc.evt_scalars.set_write(int0=value)
                    await asyncio.sleep(NO_DATA_TIMEOUT)
                    self.assertEqual([reader.get_oldest().int0 for _ in range(2)], [5, 6])
                    for value in range(7, 10):
                        self.csc.evt_scalars.set_write(int0=value)
                    await asyncio.sleep(NO_DATA_TIMEOUT)
                self.assertEqual(len(logs.records), 2, logs.output)  # one per filling, not one per sample
