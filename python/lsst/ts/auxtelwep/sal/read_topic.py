"""Read side of topics: `ReadTopic` (queue, ``get``/``next``/``aget``/``flush``, callback).

Samples arrive in the event loop thread from the transport. Each gets ``private_rcvStamp``. An event written
before this reader existed (a late joiner's history, from TRANSIENT_LOCAL events) is "historical": at most
``max_history`` of those are kept, the newest ones (in the queue, or handed to a callback once they stop
arriving), while `get` returns the newest sample. With ``max_history=0`` no history is read at all, as in
ts_salobj: `get` returns None until a new sample arrives.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .base import current_tai
from .interface import TopicKind, TopicSpec
from .sal_info import SalInfo

__all__ = ["DEFAULT_QUEUE_LEN", "DEFAULT_READ_TIMEOUT", "HISTORY_SETTLE_S", "ReadTopic"]

#: Samples kept in a reader's queue before the oldest are dropped (with a warning).
DEFAULT_QUEUE_LEN = 100
#: Quiet time (s) after which a late joiner's history counts as received (it follows discovery within ms).
HISTORY_SETTLE_S = 0.05
#: Default time limit (s) of `ReadTopic.next` and `ReadTopic.aget`: none (wait forever), as ts_salobj.
DEFAULT_READ_TIMEOUT: float | None = None

CallbackType = Callable[[Any], Awaitable[None] | None]


class ReadTopic:
    """A topic that reads samples.

    Parameters
    ----------
    salinfo : `SalInfo`
        Component and domain.
    spec : `TopicSpec`
        The topic.
    max_history : `int`
        Most historical samples (events written before this reader was made) to keep in the queue; 0 to
        read no history at all.
    queue_len : `int`, optional
        Queue length; older samples are dropped, with a warning, when it is full.
    index_filter : `bool`, optional
        If True and ``salinfo.index`` is not 0, drop samples whose ``salIndex`` differs.

    Attributes
    ----------
    DataType : `type`
        The data class of the topic.
    """

    def __init__(
        self,
        salinfo: SalInfo,
        spec: TopicSpec,
        *,
        max_history: int,
        queue_len: int = DEFAULT_QUEUE_LEN,
        index_filter: bool = True,
    ) -> None:
        if max_history < 0 or queue_len < 1 or max_history > queue_len:
            raise ValueError(
                f"need 0 <= max_history={max_history} <= queue_len={queue_len} and queue_len >= 1"
            )
        self.salinfo = salinfo
        self.spec = spec
        self.name = spec.name
        self.attr_name = spec.attr_name
        self.DataType = salinfo.data_type(spec)
        self.max_history = max_history
        self.log = logging.getLogger(f"{salinfo.name_index}.{self.attr_name}")
        self._index = salinfo.index if index_filter else 0
        # Only events are durable: other topics deliver no history, so the send time of their samples, which
        # another host's clock may put before this reader's start, must not drop them as history.
        self._has_history = spec.kind is TopicKind.EVENT
        self._queue: collections.deque[Any] = collections.deque(maxlen=queue_len)
        self._n_historical = 0
        self._overflowing = False
        self._current: Any = None
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._aget_waiters: collections.deque[asyncio.Future] = collections.deque()
        #: Samples delivered so far for this index (also history dropped for ``max_history=0``).
        self.n_received = 0
        self._callback: CallbackType | None = None
        self._callback_queue: asyncio.Queue[Any] = asyncio.Queue()
        self._callback_task: asyncio.Task | None = None
        # Late-joiner history for a callback, held until it stops arriving so only the newest
        # ``max_history`` samples reach the callback (the queue trims itself).
        self._held_history: collections.deque[Any] = collections.deque(maxlen=max(max_history, 1))
        self._release_handle: asyncio.TimerHandle | None = None
        self._start_tai = current_tai()
        self.closed = False
        salinfo.add_closeable(self)
        self._reader = salinfo.make_reader(spec, self._deliver)

    def matched_count(self) -> int:
        """Writers of this topic discovered so far."""
        return 0 if self.closed else self._reader.matched_count()

    @property
    def has_callback(self) -> bool:
        """True if a callback is set."""
        return self._callback is not None

    @property
    def nqueued(self) -> int:
        """Samples in the queue (read by `next` or `get_oldest`)."""
        return len(self._queue)

    def get_oldest(self) -> Any:
        """Take and return the oldest queued sample, or None if the queue is empty (`next` without waiting).

        Raises
        ------
        RuntimeError
            If a callback is set.
        """
        self._assert_no_callback("get_oldest")
        return self._pop() if self._queue else None

    def _assert_no_callback(self, method: str) -> None:
        if self._callback is not None:
            raise RuntimeError(f"{self.attr_name}.{method} is not allowed while a callback is set")

    @property
    def has_data(self) -> bool:
        """True once any sample has been read."""
        return self._current is not None

    @property
    def callback(self) -> CallbackType | None:
        """Function (sync or async) called with each new sample; None to queue samples for `next`.

        Setting a callback also hands it the samples already queued. Callbacks run one at a time, in order.
        """
        return self._callback

    @callback.setter
    def callback(self, func: CallbackType | None) -> None:
        if func is not None and not callable(func):
            raise TypeError(f"callback={func!r} is not callable")
        self._release_history()
        self._callback = func
        if func is None:
            if self._callback_task is not None:
                self._callback_task.cancel()
                self._callback_task = None
            return
        while self._queue:
            self._callback_queue.put_nowait(self._queue.popleft())
        self._n_historical = 0
        if self._callback_task is None or self._callback_task.done():
            self._callback_task = asyncio.create_task(self._callback_loop())

    def get(self) -> Any:
        """Return the newest sample, or None if none was read. Does not touch the queue."""
        return self._current

    async def aget(self, timeout: float | None = DEFAULT_READ_TIMEOUT) -> Any:
        """Return the newest sample, waiting up to ``timeout`` s for one if none was read yet.

        Parameters
        ----------
        timeout : `float` or None, optional
            Time limit (s); None to wait forever.

        Raises
        ------
        RuntimeError
            If a callback is set (as in ts_salobj) or the topic is closed.
        TimeoutError
            If no sample arrives in time.
        """
        self._assert_no_callback("aget")
        if self._current is not None:
            return self._current
        if self.closed:
            raise RuntimeError(f"{self.attr_name} is closed")
        # Waits for the first sample without taking it from the queue (as ts_salobj).
        return await self._wait_for_sample(self._aget_waiters, timeout)

    def flush(self) -> None:
        """Drop every queued sample.

        Raises
        ------
        RuntimeError
            If a callback is set (as in ts_salobj: samples then go to the callback, not the queue).
        """
        self._assert_no_callback("flush")
        self._queue.clear()
        self._n_historical = 0

    async def next(self, *, flush: bool, timeout: float | None = DEFAULT_READ_TIMEOUT) -> Any:
        """Return the oldest queued sample, waiting up to ``timeout`` s for one if the queue is empty.

        Parameters
        ----------
        flush : `bool`
            Drop the queued samples first, so only a sample that arrives after this call is returned.
        timeout : `float` or None, optional
            Time limit (s); None to wait forever.

        Raises
        ------
        RuntimeError
            If a callback is set (samples then go to the callback, not the queue) or the topic is closed.
        TimeoutError
            If no sample arrives in time.
        """
        self._assert_no_callback("next")
        if self.closed:
            raise RuntimeError(f"{self.attr_name} is closed")
        if flush:
            self.flush()
        if self._queue:
            return self._pop()
        return await self._wait_for_sample(self._waiters, timeout)

    async def _wait_for_sample(
        self, waiters: collections.deque[asyncio.Future], timeout: float | None
    ) -> Any:
        """Wait for `_deliver` to resolve a future put in ``waiters``; raise TimeoutError naming the topic."""
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
                return await waiter
        except TimeoutError:
            raise TimeoutError(
                f"no {self.salinfo.name_index}.{self.attr_name} sample in timeout={timeout} s"
            ) from None
        finally:
            if waiter in waiters:
                waiters.remove(waiter)

    def _pop(self) -> Any:
        data = self._queue.popleft()
        if self._n_historical > 0:
            self._n_historical -= 1
        return data

    def _deliver(self, samples: list[Any]) -> None:
        """Take a batch from the transport (loop thread)."""
        if self.closed:
            return
        now = current_tai()
        for data in samples:
            if self._index != 0 and data.salIndex != self._index:
                continue
            self.n_received += 1
            historical = self._has_history and data.private_sndStamp < self._start_tai
            if historical and self.max_history == 0:
                continue
            data.private_rcvStamp = now
            self._current = data
            self._add(data, historical)
        if self._current is not None:
            for waiter in self._aget_waiters:
                if not waiter.done():
                    waiter.set_result(self._current)
            self._aget_waiters.clear()

    def _add(self, data: Any, historical: bool) -> None:
        if self._callback is not None:
            if not historical:
                self._release_history()
                self._callback_queue.put_nowait(data)
            else:
                self._held_history.append(data)
                if self._release_handle is not None:
                    self._release_handle.cancel()
                self._release_handle = asyncio.get_running_loop().call_later(
                    HISTORY_SETTLE_S, self._release_history
                )
            return
        self._queue_sample(data, historical)

    def _release_history(self) -> None:
        """Hand the held history to the callback (or the queue, if the callback was removed)."""
        if self._release_handle is not None:
            self._release_handle.cancel()
            self._release_handle = None
        while self._held_history:
            data = self._held_history.popleft()
            if self._callback is not None:
                self._callback_queue.put_nowait(data)
            else:
                self._queue_sample(data, historical=True)

    def _queue_sample(self, data: Any, historical: bool) -> None:
        if historical:
            if self._n_historical >= self.max_history:
                # Historical samples precede live ones: drop the oldest historical one.
                self._queue.popleft()
                self._n_historical -= 1
            self._n_historical += 1
        elif len(self._queue) == self._queue.maxlen:
            if not self._overflowing:  # once until the queue drains: a topic nobody reads would warn forever
                self.log.warning(
                    f"{self.attr_name} queue full (queue_len={self._queue.maxlen}); dropping the oldest "
                    "samples until it is read"
                )
                self._overflowing = True
        else:
            self._overflowing = False
        self._queue.append(data)
        while self._waiters and self._queue:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._pop())

    async def _callback_loop(self) -> None:
        while True:
            data = await self._callback_queue.get()
            func = self._callback
            if func is None:
                continue
            try:
                result = func(data)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception(f"callback {func!r} failed on {self.attr_name}")

    def basic_close(self) -> None:
        """Stop reading; pending `next` calls are cancelled. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        self._reader.close()
        if self._release_handle is not None:
            self._release_handle.cancel()
        self._held_history.clear()
        if self._callback_task is not None:
            self._callback_task.cancel()
        while self._waiters:
            self._waiters.popleft().cancel()
        for waiter in self._aget_waiters:
            waiter.cancel()
        self._aget_waiters.clear()
        self._queue.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.salinfo.name_index}.{self.attr_name})"
