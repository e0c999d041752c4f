"""Kill the CSC (SIGKILL, workers included) in the middle of a triplet, restart it: the triplet is processed
once, and its result published once.

The CSC runs in a subprocess (`run_fake_csc.py`, the real ``amain``) in its own process group; ATCamera and
ATOODS are Controllers in this process, so the restarted CSC also receives their events again as late-joiner
history, which it must recognise from the journal and skip.
"""

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from csc_fakes import RESULT_TIMEOUT, CscTestCase, Observatory

from lsst.ts.auxtelwep.cadence import TripletState
from lsst.ts.auxtelwep.journal import ImageStatus, Journal
from lsst.ts.auxtelwep.sal import Domain, Remote, State

RUNNER = Path(__file__).with_name("run_fake_csc.py")
SRC = Path(__file__).resolve().parents[2] / "python"
#: Time limit (s) for a CSC process to start (Python, imports, the 2 s duplicate-instance check).
START_TIMEOUT = 60.0


class CrashTestCase(CscTestCase):
    async def start_csc(self, sleep_s: float) -> asyncio.subprocess.Process:
        env = dict(os.environ, AUXTELWEP_FAKE_SLEEP_S=str(sleep_s))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(RUNNER),
            "--state",
            "enabled",
            "--configdir",
            str(self.config_dir),
            env=env,
            start_new_session=True,  # its own process group: SIGKILL reaches the workers too
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.addCleanup(self.kill, proc)
        return proc

    @staticmethod
    def kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def wait_enabled(self, remote: Remote, proc: asyncio.subprocess.Process) -> None:
        await self.next_matching(
            remote.evt_summaryState,
            lambda d: d.private_origin == proc.pid and d.summaryState == State.ENABLED,
            timeout=START_TIMEOUT,
        )

    async def test_sigkill_mid_triplet_then_restart(self) -> None:
        obs = await Observatory().start()
        self.addAsyncCleanup(obs.close)
        async with Domain() as domain, Remote(domain, "AuxTelWEP") as remote:
            first = await self.start_csc(sleep_s=120.0)
            await self.wait_enabled(remote, first)
            names = [
                obs.take(self.data_root, seq, r) for seq, r in enumerate(("INTRA", "EXTRA", "INFOCUS"), 1)
            ]
            journal = Journal(self.state_dir / "auxtelwep_journal.sqlite3")
            self.addCleanup(journal.close)
            deadline = time.monotonic() + RESULT_TIMEOUT
            while not journal.triplets(TripletState.PROCESSING):
                self.assertLess(time.monotonic(), deadline, "the triplet never started processing")
                await asyncio.sleep(0.2)
            os.killpg(first.pid, signal.SIGKILL)
            await first.wait()
            (pending,) = journal.triplets(TripletState.PROCESSING)
            self.assertEqual(pending.attempts, 1)

            second = await self.start_csc(sleep_s=0.0)
            await self.wait_enabled(remote, second)
            wfe = await remote.evt_wavefrontError.next(flush=False, timeout=RESULT_TIMEOUT)
            self.assertEqual((wfe.intraObsid, wfe.extraObsid, wfe.inFocusObsid), tuple(names))
            self.assertEqual(wfe.private_origin, second.pid)
            # Nothing twice: no second result, no duplicate warnings for the replayed camera events.
            with self.assertRaises(TimeoutError):
                await remote.evt_wavefrontError.next(flush=False, timeout=2.0)
            self.assertIsNone(remote.evt_cadenceWarning.get())
            (done,) = journal.triplets(TripletState.DONE)
            self.assertEqual((done.key, done.attempts), (pending.key, 2))
            self.assertEqual({journal.image(n).status for n in names}, {ImageStatus.IN_TRIPLET})
            second.send_signal(signal.SIGTERM)
            self.assertEqual(await asyncio.wait_for(second.wait(), START_TIMEOUT), 0)
