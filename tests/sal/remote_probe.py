"""Run in a separate process by test_cross_process.py: a late-joining remote of Test:1.

Prints one JSON line with what it saw. DDS domain and partition come from the environment.
"""

import asyncio
import json
import sys

from lsst.ts.auxtelwep.sal import AckError, Domain, Remote, SalRetCode

TIMEOUT = 10.0


async def main() -> dict:
    out: dict = {"first_command_acks": []}
    # A fresh participant's first command, sent at once: it must wait for discovery, not be lost.
    for _ in range(3):
        async with Domain() as domain, Remote(domain, "Test", 1, include=[]) as fresh:
            ack = await fresh.cmd_wait.set_start(duration=0, ackTimeout=0, timeout=TIMEOUT)
            out["first_command_acks"].append(ack.ack)
    async with Domain() as domain, Remote(domain, "Test", 1) as remote:
        out["summaryState_get"] = remote.evt_summaryState.get().summaryState  # history read at start
        state = await remote.evt_summaryState.next(flush=False, timeout=TIMEOUT)
        out["summaryState"] = state.summaryState
        scalars = await remote.evt_scalars.next(flush=False, timeout=TIMEOUT)
        out["scalars_int0"] = scalars.int0
        out["scalars_queue_empty"] = remote.evt_scalars._queue.__len__() == 0
        heartbeat = await remote.evt_heartbeat.next(flush=True, timeout=TIMEOUT)
        out["heartbeat_identity"] = heartbeat.private_identity
        ack = await remote.cmd_wait.set_start(duration=0.1, ackTimeout=0, timeout=TIMEOUT)
        out["wait_ack"] = ack.ack
        out["wait_identity"] = ack.identity
        try:
            await remote.cmd_fail.set_start(message="probe failure", expected=True, timeout=TIMEOUT)
            out["fail_ack"] = None
        except AckError as e:
            out["fail_ack"] = e.ackcmd.ack
            out["fail_result"] = e.ackcmd.result
        out["complete_code"] = int(SalRetCode.CMD_COMPLETE)
    return out


if __name__ == "__main__":
    result = asyncio.run(main())
    sys.stdout.write(json.dumps(result) + "\n")
