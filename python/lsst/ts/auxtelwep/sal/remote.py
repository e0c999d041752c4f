"""`Remote`: the side of a component that sends commands and reads events and telemetry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .base import DISCOVERY_POLL, DISCOVERY_TIMEOUT
from .commands import RemoteCommand
from .domain import Domain
from .interface import TopicKind
from .read_topic import DEFAULT_QUEUE_LEN, HISTORY_SETTLE_S, ReadTopic
from .sal_info import SalInfo
from .topic_owner import TopicOwner

__all__ = ["Remote"]


class Remote(TopicOwner):
    """Talk to component ``name`` and ``index``: attributes ``cmd_<name>`` (`RemoteCommand`), ``evt_<name>``
    and ``tel_<name>`` (`ReadTopic`).

    Parameters
    ----------
    domain : `Domain`
        Domain to use; not closed by the remote. Commands carry its identity.
    name : `str`
        Component name, e.g. ``"AuxTelWEP"``.
    index : `int`, optional
        salIndex to talk to; None or 0 reads every index of an indexed component.
    readonly : `bool`, optional
        If True, make no command writers.
    include, exclude : iterable of `str`, optional
        Names of the events and telemetry to read (or not), without prefix; default all. Not both. Other
        names (commands, as ts_observatory_control's RemoteGroup passes, or no topic at all) are ignored,
        as in ts_salobj.
    evt_max_history : `int`, optional
        Most historical samples per event queued for `ReadTopic.next` (late-joiner history).
    queue_len : `int`, optional
        Queue length of each reader.
    schema_dir : `pathlib.Path`, optional
        Interface XML directory.

    Attributes
    ----------
    salinfo : `SalInfo`
        Topics bookkeeping.
    start_task : `asyncio.Task`
        Done when the remote is ready: the component's event writers are discovered and their late-joiner
        history is read, or `DISCOVERY_TIMEOUT` s passed (``async with`` waits for it).
    done_task : `asyncio.Future`
        Done when the remote is closed.

    Raises
    ------
    ValueError
        If both ``include`` and ``exclude`` are given.
    """

    def __init__(
        self,
        domain: Domain,
        name: str,
        index: int | None = None,
        readonly: bool = False,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        evt_max_history: int = 1,
        queue_len: int = DEFAULT_QUEUE_LEN,
        schema_dir: Path | None = None,
    ) -> None:
        if include is not None and exclude is not None:
            raise ValueError("give include or exclude, not both")
        self.salinfo = SalInfo(domain, name, index, schema_dir)
        try:
            interface = self.salinfo.interface
            readable = set(interface.events) | set(interface.telemetry)
            if include is not None:
                chosen = readable & set(include)
            else:
                chosen = readable - set(exclude or ())
            self._topics: dict[str, Any] = {}
            for spec in interface.events.values():
                if spec.name in chosen:
                    self._topics[spec.attr_name] = ReadTopic(
                        self.salinfo, spec, max_history=evt_max_history, queue_len=queue_len
                    )
            for spec in interface.telemetry.values():
                if spec.name in chosen:
                    self._topics[spec.attr_name] = ReadTopic(
                        self.salinfo, spec, max_history=0, queue_len=queue_len
                    )
            if not readonly:
                for spec in interface.commands.values():
                    self._topics[spec.attr_name] = RemoteCommand(self.salinfo, spec)
        except BaseException:
            self.salinfo.basic_close()
            raise
        self.start_task: asyncio.Future = asyncio.create_task(self._start())
        self.done_task: asyncio.Future = asyncio.get_running_loop().create_future()

    async def _start(self) -> None:
        """Wait (at most `DISCOVERY_TIMEOUT` s) for the component's event writers and their history.

        As ts_salobj's start waits for historical data: after ``async with Remote(...)``, ``get()`` returns
        the latest event values of a running component. A component not running costs the full wait.
        """
        events = [
            topic
            for topic in self._topics.values()
            if isinstance(topic, ReadTopic) and topic.spec.kind is TopicKind.EVENT
        ]
        if not events:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DISCOVERY_TIMEOUT
        while loop.time() < deadline and not all(topic.matched_count() > 0 for topic in events):
            await asyncio.sleep(DISCOVERY_POLL)
        # The history follows a match within milliseconds: wait until deliveries stop.
        received = -1
        while received != (now := sum(topic.n_received for topic in events)):
            received = now
            await asyncio.sleep(HISTORY_SETTLE_S)

    async def close(self) -> None:
        """Close the topics (not the domain). Safe to call more than once."""
        self.salinfo.basic_close()
        if not self.done_task.done():
            self.done_task.set_result(None)

    def __repr__(self) -> str:
        return f"Remote({self.salinfo.name_index!r})"
