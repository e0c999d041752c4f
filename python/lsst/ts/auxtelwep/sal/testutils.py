"""Test helpers: per-test DDS isolation and `BaseCscTestCase`, as ts_salobj's ``BaseCscTestCase``.

Every test case gets its own ``LSST_DDS_DOMAIN_ID`` and ``LSST_DDS_PARTITION_PREFIX`` (`dds_isolation`), so
tests (and test runs in parallel) never see each other's samples. Subprocesses started inside inherit them.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import unittest
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from .base import AckError, SalRetCode, State
from .base_csc import BaseCsc
from .domain import dds_environment
from .read_topic import ReadTopic
from .remote import Remote

__all__ = ["STD_TIMEOUT", "BaseCscTestCase", "dds_isolation"]

#: Default time limit (s) of the waits in tests.
STD_TIMEOUT = 10.0

# Domain ids 1..230 are valid with Cyclone's default port mapping; start somewhere random for this process.
_domain_ids = itertools.count(random.randint(0, 229))

_STATE_CMDS = ("start", "enable", "disable", "standby", "exitControl")
_ALLOWED = {
    State.STANDBY: {"start", "exitControl"},
    State.DISABLED: {"enable", "standby"},
    State.ENABLED: {"disable"},
    State.FAULT: {"standby"},
}


@contextlib.contextmanager
def dds_isolation() -> Iterator[tuple[int, str]]:
    """Set a fresh ``LSST_DDS_DOMAIN_ID`` and a unique ``LSST_DDS_PARTITION_PREFIX`` inside the block.

    Yields
    ------
    domain_id, partition_prefix : `int`, `str`
        The values set; the previous environment is restored on exit.
    """
    domain_id = 1 + next(_domain_ids) % 230
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    with dds_environment(domain_id, prefix):
        yield domain_id, prefix


class BaseCscTestCase(unittest.IsolatedAsyncioTestCase):
    """Base class for CSC tests; subclasses implement `basic_make_csc`.

    Attributes
    ----------
    csc : `BaseCsc`
        The CSC made by `make_csc` (inside the block).
    remote : `Remote`
        A remote of the CSC on the CSC's own domain (so its commands carry the CSC's identity).
    """

    csc: Any
    remote: Any

    def setUp(self) -> None:
        isolation = dds_isolation()
        self.domain_id, self.partition_prefix = isolation.__enter__()
        self.addCleanup(isolation.__exit__, None, None, None)

    def basic_make_csc(
        self, initial_state: State, config_dir: str | Path | None, simulation_mode: int, **kwargs: Any
    ) -> BaseCsc:
        """Make and return the CSC (not yet started).

        Parameters
        ----------
        initial_state : `State`
            State the CSC goes to once started.
        config_dir : `str`, `pathlib.Path` or None
            Configuration directory; None for the CSC's default.
        simulation_mode : `int`
            Simulation mode.
        **kwargs
            Extra constructor arguments.
        """
        raise NotImplementedError("subclasses must implement basic_make_csc")

    @contextlib.asynccontextmanager
    async def make_csc(
        self,
        initial_state: State = State.STANDBY,
        config_dir: str | Path | None = None,
        simulation_mode: int = 0,
        timeout: float = STD_TIMEOUT,
        **kwargs: Any,
    ) -> AsyncIterator[None]:
        """Make ``self.csc``, wait until it started, make ``self.remote``; close both on exit.

        Parameters
        ----------
        initial_state : `State`, optional
            State the CSC goes to once started.
        config_dir : `str`, `pathlib.Path` or None, optional
            Configuration directory; None for the CSC's default.
        simulation_mode : `int`, optional
            Simulation mode.
        timeout : `float`, optional
            Time limit (s) for the CSC and the remote to start.
        **kwargs
            Passed to `basic_make_csc`.
        """
        self.csc = self.basic_make_csc(initial_state, config_dir, simulation_mode, **kwargs)
        self.remote = None
        try:
            await _wait(self.csc.start_task, timeout)
            # Made after the CSC started: a late joiner that sees the latest value of each event.
            self.remote = Remote(self.csc.domain, self.csc.salinfo.name, self.csc.salinfo.index)
            await _wait(self.remote.start_task, timeout)
            yield
        finally:
            if getattr(self, "remote", None) is not None:
                await self.remote.close()
            await self.csc.close()

    async def assert_next_sample(
        self, topic: ReadTopic, flush: bool = False, timeout: float = STD_TIMEOUT, **kwargs: Any
    ) -> Any:
        """Read the next sample of ``topic`` and check the fields given as keyword arguments.

        Parameters
        ----------
        topic : `ReadTopic`
            Topic to read (of a remote).
        flush : `bool`, optional
            Drop queued samples first and wait for a new one.
        timeout : `float`, optional
            Time limit (s).
        **kwargs
            Expected field values.

        Returns
        -------
        data : `DataType`
            The sample read.
        """
        data = await topic.next(flush=flush, timeout=timeout)
        for name, expected in kwargs.items():
            self.assertEqual(getattr(data, name), expected, msg=f"{topic.attr_name}.{name}")
        return data

    async def assert_next_summary_state(
        self, state: State, flush: bool = False, timeout: float = STD_TIMEOUT, remote: Remote | None = None
    ) -> None:
        """Check the next ``summaryState`` event is ``state``.

        Parameters
        ----------
        state : `State`
            Expected state.
        flush : `bool`, optional
            Drop queued samples first and wait for a new one.
        timeout : `float`, optional
            Time limit (s).
        remote : `Remote`, optional
            Remote to read; default ``self.remote``.
        """
        remote = remote if remote is not None else self.remote
        data = await remote.evt_summaryState.next(flush=flush, timeout=timeout)
        self.assertEqual(State(data.summaryState), state)

    async def check_standard_state_transitions(
        self,
        enabled_commands: Sequence[str] = (),
        override: str = "",
        timeout: float = STD_TIMEOUT,
    ) -> None:
        """Check every state command in every state, allowed or not, ending with exitControl.

        The CSC must be in STANDBY with its first summaryState unread. ``enabled_commands`` are commands that
        must fail unless the CSC is ENABLED (they are only sent in other states).

        Parameters
        ----------
        enabled_commands : sequence of `str`, optional
            Commands that need ENABLED.
        override : `str`, optional
            ``configurationOverride`` of the ``start`` commands.
        timeout : `float`, optional
            Time limit (s) of each command and wait.
        """
        await self.assert_next_summary_state(State.STANDBY)
        path = [
            ("start", State.DISABLED),
            ("enable", State.ENABLED),
            ("disable", State.DISABLED),
            ("standby", State.STANDBY),
            ("start", State.DISABLED),
            ("standby", State.STANDBY),
        ]
        for cmd_name, new_state in path:
            await self._check_forbidden(self.csc.summary_state, enabled_commands, timeout)
            kwargs = {"configurationOverride": override} if cmd_name == "start" else {}
            await getattr(self.remote, f"cmd_{cmd_name}").set_start(timeout=timeout, **kwargs)
            await self.assert_next_summary_state(new_state)
        await self.csc.fault(code=1, report="test fault")
        await self.assert_next_summary_state(State.FAULT)
        await self._check_forbidden(State.FAULT, enabled_commands, timeout)
        await self.remote.cmd_standby.start(timeout=timeout)
        await self.assert_next_summary_state(State.STANDBY)
        await self.remote.cmd_exitControl.start(timeout=timeout)
        await self.assert_next_summary_state(State.OFFLINE)
        await _wait(self.csc.done_task, timeout)

    async def _check_forbidden(self, state: State, enabled_commands: Sequence[str], timeout: float) -> None:
        forbidden = [c for c in _STATE_CMDS if c not in _ALLOWED[state]]
        if state != State.ENABLED:
            forbidden += list(enabled_commands)
        for cmd_name in forbidden:
            with self.assertRaises(AckError, msg=f"{cmd_name} in {state!r}") as cm:
                await getattr(self.remote, f"cmd_{cmd_name}").start(timeout=timeout)
            self.assertEqual(cm.exception.ackcmd.ack, SalRetCode.CMD_FAILED)
        self.assertEqual(self.csc.summary_state, state)


async def _wait(future: Any, timeout: float) -> Any:
    import asyncio

    return await asyncio.wait_for(
        asyncio.shield(future) if isinstance(future, asyncio.Future) else future, timeout
    )
