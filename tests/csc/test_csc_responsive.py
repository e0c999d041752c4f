"""The CSC stays responsive while a triplet is processed: heartbeats keep coming and commands are answered."""

import itertools
import time
from typing import Any, ClassVar

from csc_fakes import RESULT_TIMEOUT, CscTestCase, write_raw

from lsst.ts.auxtelwep.sal import Domain, Remote, SalRetCode, State
from lsst.ts.auxtelwep.sal.testutils import STD_TIMEOUT

#: CPU-bound work of the fake processor (s): long enough for several heartbeats.
BURN_S = 4.0
#: Largest gap allowed between two heartbeats (s); the interval is 1 s.
MAX_GAP_S = 1.5


class ResponsiveTestCase(CscTestCase):
    config_overrides: ClassVar[dict[str, Any]] = {"pipeline": {"fake_burn_s": BURN_S}}

    async def test_heartbeat_gap_while_processing(self) -> None:
        names = [write_raw(self.data_root, seq, r) for seq, r in enumerate(("INTRA", "EXTRA", "INFOCUS"), 1)]
        async with self.make_csc(initial_state=State.ENABLED):
            async with Domain() as domain, Remote(domain, "AuxTelWEP", include=["heartbeat"]) as listener:
                await listener.evt_heartbeat.next(flush=True, timeout=STD_TIMEOUT)
                self.remote.cmd_runWEP.set(intraObsid=names[0], extraObsid=names[1], inFocusObsid=names[2])
                ack = await self.remote.cmd_runWEP.start(timeout=RESULT_TIMEOUT, wait_done=False)
                self.assertEqual((ack.ack, ack.result[:10]), (SalRetCode.CMD_INPROGRESS, "processing"))
                self.assertGreaterEqual(ack.timeout, 60.0)  # process_timeout_s of the test configuration
                start = time.monotonic()
                arrivals = [start]
                while self.csc.last_summary is None:
                    await listener.evt_heartbeat.next(flush=False, timeout=RESULT_TIMEOUT)
                    arrivals.append(time.monotonic())
                    # A command answered while the worker burns CPU.
                    if len(arrivals) == 3:
                        await self.remote.cmd_stopClosedLoop.start(timeout=MAX_GAP_S)
                busy_s = arrivals[-1] - start
                gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        self.assertGreaterEqual(busy_s, BURN_S - 0.5, msg="processing ended too early to test anything")
        self.assertLess(max(gaps), MAX_GAP_S, msg=f"heartbeat gaps {gaps}")
