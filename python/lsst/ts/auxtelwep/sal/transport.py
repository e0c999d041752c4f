"""The transport: the only module of the package that imports Cyclone DDS.

The rest of the SAL layer sees a `Transport`: it makes a data class per topic, writers with ``write(sample)``,
and readers that hand lists of samples to a callback **in the asyncio event loop thread**. `DdsTransport`
implements it on Eclipse Cyclone DDS (brokerless, one ``DomainParticipant`` per `Domain`).

Threading: all blocking DDS waits happen in one worker thread per transport, which waits on a ``WaitSet``
holding one ``ReadCondition`` per reader (plus a ``GuardCondition`` used to wake it up for closing), takes the
samples and passes them to the loop with ``loop.call_soon_threadsafe``. The event loop itself never blocks on
DDS: a write is non-blocking unless a reliable history is full, and then for at most `MAX_BLOCKING_TIME` s.

QoS (as ts_ddsconfig): every topic RELIABLE and KEEP_LAST `HISTORY_DEPTH`; commands, acks and telemetry
VOLATILE; events TRANSIENT_LOCAL so a late joiner gets the latest samples of each instance (key ``salIndex``):
Cyclone keeps that history by the DURABILITY_SERVICE policy (default KEEP_LAST 1), so events set it to
KEEP_LAST `HISTORY_DEPTH` as well.

Writers and readers report how many peers they are matched with (``matched_count``): a sample written
before the other side is discovered is lost for a VOLATILE topic, so the SAL layer waits for a match.
Partitions: the publisher and subscriber of a transport both use the single partition
``<partition_prefix>.sal``, so runs with different prefixes do not see each other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import cyclonedds.idl.types as idl_types
from cyclonedds.core import (
    GuardCondition,
    InstanceState,
    Policy,
    Qos,
    ReadCondition,
    SampleState,
    ViewState,
    WaitSet,
)
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlMeta, IdlStruct
from cyclonedds.pub import DataWriter, Publisher
from cyclonedds.sub import DataReader, Subscriber
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from .interface import FieldSpec, TopicKind, TopicSpec

__all__ = [
    "HISTORY_DEPTH",
    "MAX_BLOCKING_TIME",
    "READ_WAIT_INTERVAL",
    "DdsTransport",
    "ReaderHandle",
    "Transport",
    "WriterHandle",
    "make_data_type",
]

#: Samples kept per instance by writers and readers (KEEP_LAST depth).
HISTORY_DEPTH = 100
#: Longest time (s) a reliable write may block when the history is full.
MAX_BLOCKING_TIME = 0.1
#: Longest time (s) the read thread waits on the WaitSet before looking at its flags again.
READ_WAIT_INTERVAL = 1.0
#: Most samples taken from one reader in one call.
_MAX_TAKE = 256

_log = logging.getLogger(__name__)

_SCALAR_TYPES: dict[str, tuple[Any, Any]] = {
    "bool": (bool, False),
    "uint8": (idl_types.uint8, 0),
    "int16": (idl_types.int16, 0),
    "uint16": (idl_types.uint16, 0),
    "int32": (idl_types.int32, 0),
    "uint32": (idl_types.uint32, 0),
    "int64": (idl_types.int64, 0),
    "uint64": (idl_types.uint64, 0),
    "float32": (idl_types.float32, 0.0),
    "float64": (idl_types.float64, 0.0),
    "string": (str, ""),
}


class WriterHandle(Protocol):
    """Write side of one topic."""

    def write(self, sample: Any) -> None:
        """Write one sample.

        Parameters
        ----------
        sample : `object`
            An instance of the topic's data class.
        """
        ...

    def matched_count(self) -> int:
        """Readers of the topic this writer has discovered (its samples reach them)."""
        ...

    def close(self) -> None: ...


class ReaderHandle(Protocol):
    """Read side of one topic; samples go to the callback given to `Transport.make_reader`."""

    def matched_count(self) -> int:
        """Writers of the topic this reader has discovered."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    """What the SAL layer needs from a middleware."""

    def make_data_type(self, spec: TopicSpec) -> type:
        """Return the data class of a topic.

        Parameters
        ----------
        spec : `TopicSpec`
            The topic.
        """
        ...

    def make_writer(self, spec: TopicSpec) -> WriterHandle:
        """Make a writer of a topic.

        Parameters
        ----------
        spec : `TopicSpec`
            The topic.
        """
        ...

    def make_reader(self, spec: TopicSpec, deliver: Callable[[list[Any]], None]) -> ReaderHandle:
        """Make a reader of a topic.

        Parameters
        ----------
        spec : `TopicSpec`
            The topic.
        deliver : callable
            Called in the event loop's thread with each list of samples read.
        """
        ...

    def close(self) -> None: ...


def _field_type(field: FieldSpec) -> tuple[Any, Any]:
    """Return (annotation, dataclass default) for a field."""
    scalar, zero = _SCALAR_TYPES[field.type_name]
    if field.count == 1:
        return scalar, zero
    count = field.count
    return idl_types.array[scalar, count], dataclasses.field(default_factory=lambda: [zero] * count)


@functools.cache
def make_data_type(spec: TopicSpec) -> type:
    """Return the ``IdlStruct`` dataclass of a topic (made once per spec), keyed on ``salIndex``.

    Parameters
    ----------
    spec : `TopicSpec`
        The topic.
    """
    class_name = f"{spec.component}_{spec.sal_name}"
    namespace = IdlMeta.__prepare__(class_name, (IdlStruct,), typename=spec.typename)
    for field in spec.fields:
        annotation, default = _field_type(field)
        namespace["__annotations__"][field.name] = annotation
        namespace[field.name] = default
    namespace["__idl_field_annotations__"] = {"salIndex": {"key": True}}
    cls = IdlMeta(class_name, (IdlStruct,), namespace)
    return dataclasses.dataclass(cls)


def _make_qos(kind: TopicKind) -> Qos:
    policies = [
        Policy.Reliability.Reliable(max_blocking_time=duration(seconds=MAX_BLOCKING_TIME)),
        Policy.History.KeepLast(HISTORY_DEPTH),
    ]
    if kind is TopicKind.EVENT:
        policies += [
            Policy.Durability.TransientLocal,
            Policy.DurabilityService(
                cleanup_delay=0,
                history=Policy.History.KeepLast(HISTORY_DEPTH),
                max_samples=-1,
                max_instances=-1,
                max_samples_per_instance=-1,
            ),
        ]
    else:
        policies.append(Policy.Durability.Volatile)
    return Qos(*policies)


_QOS = {kind: _make_qos(kind) for kind in TopicKind}


class _DdsWriter:
    def __init__(self, writer: DataWriter) -> None:
        self._writer: DataWriter | None = writer

    def write(self, sample: Any) -> None:
        if self._writer is None:
            raise RuntimeError("writer is closed")
        self._writer.write(sample)

    def matched_count(self) -> int:
        if self._writer is None:
            return 0
        return int(self._writer.get_publication_matched_status().current_count)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.__del__()  # frees the DDS entity now rather than at garbage collection


class _DdsReader:
    def __init__(
        self, transport: DdsTransport, reader: DataReader, deliver: Callable[[list[Any]], None]
    ) -> None:
        self.transport = transport
        self.reader = reader
        self.deliver = deliver
        self.condition = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any)

    def matched_count(self) -> int:
        with self.transport._lock:  # the read thread may be deleting the reader
            if self not in self.transport._readers:
                return 0
            return int(self.reader.get_subscription_matched_status().current_count)

    def close(self) -> None:
        self.transport._remove_reader(self)


class DdsTransport:
    """Cyclone DDS transport for one domain and partition prefix.

    Parameters
    ----------
    domain_id : `int`
        DDS domain id.
    partition_prefix : `str`
        Prefix of the partition name; processes see each other only with the same domain id and prefix.
    loop : `asyncio.AbstractEventLoop`
        Loop that receives the samples.
    """

    def __init__(self, domain_id: int, partition_prefix: str, loop: asyncio.AbstractEventLoop) -> None:
        self.domain_id = domain_id
        self.partition_prefix = partition_prefix
        self.loop = loop
        self.participant = DomainParticipant(domain_id)
        partition = Qos(Policy.Partition([f"{partition_prefix}.sal"]))
        self.publisher = Publisher(self.participant, qos=partition)
        self.subscriber = Subscriber(self.participant, qos=partition)
        self._topics: dict[str, Topic] = {}
        self._readers: list[_DdsReader] = []
        self._writers: list[_DdsWriter] = []
        self._lock = threading.Lock()
        self._closing = False
        self._waitset = WaitSet(self.participant)
        self._guard = GuardCondition(self.participant)
        self._waitset.attach(self._guard)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dds-read-{domain_id}")
        self._read_future = self._executor.submit(self._read_loop)

    def make_data_type(self, spec: TopicSpec) -> type:
        """Return the data class of a topic (`make_data_type`).

        Parameters
        ----------
        spec : `TopicSpec`
            The topic.
        """
        return make_data_type(spec)

    def _topic(self, spec: TopicSpec) -> Topic:
        topic = self._topics.get(spec.dds_name)
        if topic is None:
            topic = Topic(self.participant, spec.dds_name, make_data_type(spec), qos=_QOS[spec.kind])
            self._topics[spec.dds_name] = topic
        return topic

    def make_writer(self, spec: TopicSpec) -> WriterHandle:
        """Make a writer of a topic.

        Parameters
        ----------
        spec : `TopicSpec`
            The topic.
        """
        writer = _DdsWriter(DataWriter(self.publisher, self._topic(spec), qos=_QOS[spec.kind]))
        self._writers.append(writer)
        return writer

    def make_reader(self, spec: TopicSpec, deliver: Callable[[list[Any]], None]) -> ReaderHandle:
        """Make a reader; ``deliver(samples)`` is called in the loop thread with each batch of samples.

        Parameters
        ----------
        spec : `TopicSpec`
            The topic to read.
        deliver : callable
            Called with each list of samples read.

        Returns
        -------
        reader : `ReaderHandle`
            The reader; close it to stop reading.
        """
        reader = DataReader(self.subscriber, self._topic(spec), qos=_QOS[spec.kind])
        handle = _DdsReader(self, reader, deliver)
        with self._lock:
            self._readers.append(handle)
            self._waitset.attach(handle.condition)
        self._guard.set(True)  # let the read thread pick up samples already there
        return handle

    def _remove_reader(self, handle: _DdsReader) -> None:
        with self._lock:
            if handle not in self._readers:
                return
            self._readers.remove(handle)
            self._waitset.detach(handle.condition)
            handle.condition.__del__()
            handle.reader.__del__()

    def _read_loop(self) -> None:
        """Body of the read thread: wait, take, hand batches to the loop; ends when closing."""
        wait_ns = duration(seconds=READ_WAIT_INTERVAL)
        while not self._closing:
            try:
                self._waitset.wait(wait_ns)
                if self._guard.read():
                    self._guard.take()
                with self._lock:
                    if self._closing:
                        return
                    batches = []
                    for handle in self._readers:
                        while True:
                            samples = handle.reader.take(N=_MAX_TAKE)
                            valid = [s for s in samples if hasattr(s, "salIndex")]
                            if valid:
                                batches.append((handle.deliver, valid))
                            if len(samples) < _MAX_TAKE:
                                break
                for deliver, valid in batches:
                    self.loop.call_soon_threadsafe(deliver, valid)
            except RuntimeError:  # the loop is closed: nobody left to deliver to
                return
            except Exception:
                _log.exception("DDS read thread error; continuing")

    def close(self) -> None:
        """Stop the read thread and free every DDS entity. Safe to call more than once."""
        if self._closing:
            return
        self._closing = True
        self._guard.set(True)
        self._executor.shutdown(wait=True)
        with self._lock:
            for handle in self._readers:
                self._waitset.detach(handle.condition)
                handle.condition.__del__()
                handle.reader.__del__()
            self._readers.clear()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        self._waitset.detach(self._guard)
        self._topics.clear()
        self.participant.__del__()  # deletes every child entity as well
