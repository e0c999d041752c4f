"""`SalInfo`: the topics of one component and index on one `Domain`, with the command/ack bookkeeping."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import MAX_SAL_INDEX
from .interface import ComponentInterface, TopicSpec, load_interface
from .transport import ReaderHandle, WriterHandle

if TYPE_CHECKING:
    from .commands import CommandInfo
    from .domain import Domain

__all__ = ["SalInfo"]


class SalInfo:
    """Interface, readers and writers of component ``name`` with index ``index`` on ``domain``.

    Parameters
    ----------
    domain : `Domain`
        The domain; it closes this object when it closes.
    name : `str`
        Component name, e.g. ``"AuxTelWEP"``.
    index : `int`, optional
        salIndex; 0 or None for a component that is not indexed (for an indexed one, a remote's "any
        index").
    schema_dir : `pathlib.Path`, optional
        Where the interface XML lives (default: `interface.get_schema_dir`).

    Raises
    ------
    ValueError
        If ``index`` is out of range, non-zero for a component that is not indexed, or the interface XML
        is invalid.
    FileNotFoundError
        If the component has no interface XML.

    Attributes
    ----------
    command_names, event_names, telemetry_names : `tuple` [`str`]
        Names of the component's commands, events and telemetry topics, without prefix, sorted (as
        ts_salobj's).
    """

    def __init__(
        self, domain: Domain, name: str, index: int | None = 0, schema_dir: Path | None = None
    ) -> None:
        index = 0 if index is None else int(index)
        if not 0 <= index <= MAX_SAL_INDEX:
            raise ValueError(f"index={index} must be in [0, {MAX_SAL_INDEX}]")
        self.domain = domain
        self.name = name
        self.index = index
        self.interface: ComponentInterface = load_interface(name, schema_dir)
        if index != 0 and not self.interface.indexed:
            # As ts_salobj: a remote of Name:1 for a component that is not indexed would wait for samples
            # of an index no controller writes.
            raise ValueError(f"index={index} must be 0 or None: {name} is not an indexed SAL component")
        self.command_names = tuple(self.interface.commands)
        self.event_names = tuple(self.interface.events)
        self.telemetry_names = tuple(self.interface.telemetry)
        self._readers: list[ReaderHandle] = []
        self._writers: list[WriterHandle] = []
        self._closeables: list[Any] = []
        # Command sequence numbers start at a random value so two remotes sharing identity and origin
        # are unlikely to confuse their acks.
        self._seq_num = random.randint(1, 2**30)
        self.running_commands: dict[int, CommandInfo] = {}
        self._ack_reader: ReaderHandle | None = None
        self.closed = False
        domain.add_salinfo(self)

    @property
    def indexed(self) -> bool:
        """True if the component is indexed (``schema/SALSubsystems.xml``)."""
        return self.interface.indexed

    @property
    def name_index(self) -> str:
        """``name`` or ``name:index`` (the identity of a controller)."""
        return self.name if self.index == 0 else f"{self.name}:{self.index}"

    @property
    def identity(self) -> str:
        return self.domain.identity

    def next_seq_num(self) -> int:
        self._seq_num = self._seq_num + 1 if self._seq_num < 2**31 - 1 else 1
        return self._seq_num

    def data_type(self, spec: TopicSpec) -> type:
        """Return the data class of a topic (`Transport.make_data_type`).

        Parameters
        ----------
        spec : `TopicSpec`
            The topic.
        """
        return self.domain.transport.make_data_type(spec)

    def make_writer(self, spec: TopicSpec) -> WriterHandle:
        """Make a writer of a topic, closed with this object.

        Parameters
        ----------
        spec : `TopicSpec`
            The topic.
        """
        writer = self.domain.transport.make_writer(spec)
        self._writers.append(writer)
        return writer

    def make_reader(self, spec: TopicSpec, deliver: Callable[[list[Any]], None]) -> ReaderHandle:
        """Make a reader of a topic, closed with this object.

        Parameters
        ----------
        spec : `TopicSpec`
            The topic.
        deliver : callable
            Called in the event loop's thread with each list of samples read.
        """
        reader = self.domain.transport.make_reader(spec, deliver)
        self._readers.append(reader)
        return reader

    def add_closeable(self, topic: Any) -> None:
        """Register a topic whose ``basic_close()`` must run when this object closes.

        Parameters
        ----------
        topic : `object`
            A topic with a ``basic_close()`` method.
        """
        self._closeables.append(topic)

    def start_ack_reader(self) -> None:
        """Read ``ackcmd`` (once) and route acks to `running_commands` (others' acks are dropped)."""
        if self._ack_reader is None:
            self._ack_reader = self.make_reader(self.interface.ackcmd, self._deliver_acks)

    def ack_reader_matched(self) -> bool:
        """True if the ``ackcmd`` reader has discovered a writer (the controller that would answer)."""
        return self._ack_reader is not None and self._ack_reader.matched_count() > 0

    def _deliver_acks(self, samples: list[Any]) -> None:
        for ack in samples:
            info = self.running_commands.get(ack.private_seqNum)
            if info is not None:
                info.add_ack(ack)

    async def close(self) -> None:
        self.basic_close()

    def basic_close(self) -> None:
        """Close every topic and DDS reader and writer. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        for topic in self._closeables:
            topic.basic_close()
        for reader in self._readers:
            reader.close()
        for writer in self._writers:
            writer.close()
        for info in self.running_commands.values():
            info.abort("the remote was closed")
        self.running_commands.clear()
        self.domain.remove_salinfo(self)

    def __repr__(self) -> str:
        return f"SalInfo(name={self.name!r}, index={self.index})"
