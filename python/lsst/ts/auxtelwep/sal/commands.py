"""Commands: `RemoteCommand` (send, wait for acks) and `ControllerCommand` (run ``do_<name>``, send acks).

Protocol. A remote writes the command with a fresh ``private_seqNum`` and its domain's identity and origin.
The controller answers on ``ackcmd`` with ``private_seqNum`` set to the command's, ``identity``/``origin`` set
to the command's, and ``cmdtype`` the index of the command name. A remote accepts only acks matching all four,
so it never sees the acks of another remote. Acks: optionally CMD_INPROGRESS (``timeout`` > 0 tells how long
the command may still take; the remote then waits up to that long past the ack plus its own ``timeout``),
then one final ack: CMD_COMPLETE, or CMD_FAILED / CMD_ABORTED / CMD_TIMEOUT / CMD_NOPERM, which raise
`AckError`. No final ack in time raises `AckTimeoutError`; no controller discovered in time raises its
subclass `CommandNotSentError` (the command was not written).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .base import (
    DEFAULT_TIMEOUT,
    DISCOVERY_POLL,
    AckError,
    AckTimeoutError,
    CommandNotSentError,
    ExpectedError,
    SalRetCode,
)
from .interface import TopicSpec
from .read_topic import ReadTopic
from .sal_info import SalInfo
from .write_topic import SetWriteResult, WriteTopic

__all__ = ["CommandInfo", "ControllerCommand", "RemoteCommand"]

_FINAL_GOOD = {SalRetCode.CMD_COMPLETE}
_INTERMEDIATE = {SalRetCode.CMD_ACK, SalRetCode.CMD_INPROGRESS, SalRetCode.CMD_STALLED}


class CommandInfo:
    """Acks of one command sent by a remote (internal).

    Parameters
    ----------
    name : `str`
        Command name.
    seq_num, cmdtype, origin : `int`
        Values the acks must echo.
    identity : `str`
        Identity the acks must echo.
    make_ack : callable
        Makes an ``ackcmd`` sample (to report CMD_NOACK on time out).
    """

    def __init__(
        self, name: str, seq_num: int, cmdtype: int, identity: str, origin: int, make_ack: Callable[[], Any]
    ) -> None:
        self.name = name
        self.seq_num = seq_num
        self.cmdtype = cmdtype
        self.identity = identity
        self.origin = origin
        self._make_ack = make_ack
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.last_ack: Any = None

    def add_ack(self, ack: Any) -> None:
        """Queue ``ack`` if it echoes this command's identity, origin and cmdtype.

        Parameters
        ----------
        ack : `DataType`
            An ``ackcmd`` sample with this command's ``private_seqNum``.
        """
        if ack.identity == self.identity and ack.origin == self.origin and ack.cmdtype == self.cmdtype:
            self.queue.put_nowait(ack)

    def abort(self, reason: str) -> None:
        """Queue a CMD_ABORTED ack, ending the wait for this command.

        Parameters
        ----------
        reason : `str`
            The ack's ``result``.
        """
        ack = self._make_ack()
        ack.ack, ack.result = SalRetCode.CMD_ABORTED, reason
        self.queue.put_nowait(ack)

    def noack(self) -> Any:
        ack = self._make_ack()
        ack.private_seqNum, ack.ack, ack.result = self.seq_num, SalRetCode.CMD_NOACK, "no ack received"
        return ack

    async def wait(self, timeout: float, wait_done: bool) -> Any:
        """Return the final ack (or the first ack if not ``wait_done``); raise AckError/AckTimeoutError.

        Parameters
        ----------
        timeout : `float`
            Time limit (s) for the ack; a CMD_INPROGRESS ack with a ``timeout`` extends it.
        wait_done : `bool`
            If False, return the first ack, even an intermediate one, instead of waiting for the final one.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(remaining, 0.0)):  # not wait_for: it can swallow a cancel
                    ack = await self.queue.get()
            except TimeoutError:
                last = self.last_ack if self.last_ack is not None else self.noack()
                raise AckTimeoutError(
                    f"command {self.name} seqNum={self.seq_num} not done in time; timeout={timeout} s", last
                ) from None
            self.last_ack = ack
            if ack.ack == SalRetCode.CMD_INPROGRESS and ack.timeout > 0:
                deadline = max(deadline, time.monotonic() + ack.timeout + timeout)
            if ack.ack in _FINAL_GOOD:
                return ack
            if ack.ack not in _INTERMEDIATE:
                raise AckError(f"command {self.name} seqNum={self.seq_num} failed", ack)
            if not wait_done:
                return ack


class RemoteCommand(WriteTopic):
    """A command a `Remote` can send."""

    def __init__(self, salinfo: SalInfo, spec: TopicSpec) -> None:
        super().__init__(salinfo, spec)
        self._cmdtype = salinfo.command_names.index(spec.name)
        self._AckType = salinfo.data_type(salinfo.interface.ackcmd)
        salinfo.start_ack_reader()

    def set(self, **kwargs: Any) -> bool:
        """Start from fresh data (every field at its default) and set the fields given; see `WriteTopic.set`.

        As in ts_salobj, nothing of an earlier command carries over into the next one.

        Parameters
        ----------
        **kwargs
            Field values; a value of None leaves the field at its default.
        """
        self.data = self.DataType()
        return super().set(**kwargs)

    async def set_start(
        self, *, timeout: float = DEFAULT_TIMEOUT, wait_done: bool = True, **kwargs: Any
    ) -> Any:
        """Set fields on fresh data (`set`) and send; see `start`.

        Parameters
        ----------
        timeout : `float`, optional
            Time limit (s) for the final ack; a CMD_INPROGRESS ack can extend it.
        wait_done : `bool`, optional
            If False, return the first ack.
        **kwargs
            Command fields to set.

        Raises
        ------
        AttributeError
            If a keyword is not a field of the command.
        """
        self.set(**kwargs)
        return await self.start(timeout=timeout, wait_done=wait_done)

    async def start(
        self, data: Any = None, *, timeout: float = DEFAULT_TIMEOUT, wait_done: bool = True
    ) -> Any:
        """Send the command and wait for its acks.

        Parameters
        ----------
        data : `DataType`, optional
            Command data; default: the current ``data``.
        timeout : `float`, optional
            Time limit (s) for the final ack; a CMD_INPROGRESS ack can extend it.
        wait_done : `bool`, optional
            If False, return the first ack (which may be CMD_INPROGRESS; then `next_ackcmd` waits for more).

        Returns
        -------
        ackcmd : `object`
            The final (or first) ``ackcmd`` sample.

        Raises
        ------
        AckError
            If the command fails (CMD_FAILED, CMD_NOPERM, CMD_ABORTED, CMD_TIMEOUT).
        AckTimeoutError
            If no final ack arrives in time.
        CommandNotSentError
            (an `AckTimeoutError`) If no controller was discovered in time: the command was not written.
        """
        if data is not None:
            if not isinstance(data, self.DataType):
                raise TypeError(f"data={data!r} is not a {self.DataType.__name__}")
            self.data = copy.deepcopy(data)
        deadline = time.monotonic() + timeout
        await self._wait_for_controller(timeout)
        seq_num = self.salinfo.next_seq_num()
        info = CommandInfo(
            self.name,
            seq_num,
            self._cmdtype,
            self.salinfo.identity,
            self.salinfo.domain.origin,
            self._AckType,
        )
        self.salinfo.running_commands[seq_num] = info
        self._seq_num = seq_num - 1  # write() increments: the command carries the salinfo-wide number
        super().write()
        return await self._acks(info, timeout=max(deadline - time.monotonic(), 0.0), wait_done=wait_done)

    def write(self) -> Any:
        """Refused, as in ts_salobj: a command is sent by `start`, which also waits for its acks.

        Raises
        ------
        NotImplementedError
            Always.
        """
        raise NotImplementedError(f"{self.attr_name}: call start instead of write")

    def set_write(self, *, force_output: bool = False, **kwargs: Any) -> SetWriteResult:
        """Refused, as in ts_salobj: a command is sent by `set_start`, which also waits for its acks.

        Parameters
        ----------
        force_output : `bool`, optional
            Ignored.
        **kwargs
            Ignored.

        Raises
        ------
        NotImplementedError
            Always.
        """
        raise NotImplementedError(f"{self.attr_name}: call set_start instead of set_write")

    async def next_ackcmd(
        self, ackcmd: Any, *, timeout: float = DEFAULT_TIMEOUT, wait_done: bool = True
    ) -> Any:
        """Wait for the next (or, with ``wait_done``, the final) ack of a command started with
        ``wait_done=False``, as ts_salobj's ``RemoteCommand.next_ackcmd``.

        Parameters
        ----------
        ackcmd : `object`
            An ack of the command (its ``private_seqNum`` names the command).
        timeout : `float`, optional
            Time limit (s) for the ack.
        wait_done : `bool`, optional
            If True, wait for the final ack; otherwise return the next one.

        Raises
        ------
        RuntimeError
            If that command is unknown or already finished.
        AckError, AckTimeoutError
            As `start`.
        """
        info = self.salinfo.running_commands.get(ackcmd.private_seqNum)
        if info is None:
            raise RuntimeError(f"command {self.name} seqNum={ackcmd.private_seqNum} is unknown or finished")
        return await self._acks(info, timeout=timeout, wait_done=wait_done)

    async def _acks(self, info: CommandInfo, *, timeout: float, wait_done: bool) -> Any:
        """Wait for acks of ``info``; forget the command unless it returns an intermediate ack."""
        finished = True
        try:
            ack = await info.wait(timeout=timeout, wait_done=wait_done)
            finished = ack.ack not in _INTERMEDIATE
            return ack
        finally:
            if finished:
                self.salinfo.running_commands.pop(info.seq_num, None)

    async def _wait_for_controller(self, timeout: float) -> None:
        """Wait until the command reader and the ack writer of the controller are discovered.

        A command written before that is lost (commands are VOLATILE): a fresh remote's first command
        would time out although the controller runs.

        Raises
        ------
        CommandNotSentError
            If they are not discovered within ``timeout`` s (CMD_NOACK); nothing was written.
        """
        deadline = time.monotonic() + timeout
        while not (self._writer.matched_count() > 0 and self.salinfo.ack_reader_matched()):
            if time.monotonic() >= deadline:
                ack = self._AckType(ack=int(SalRetCode.CMD_NOACK), result="no controller discovered")
                raise CommandNotSentError(
                    f"command {self.name}: no {self.salinfo.name_index} controller found within "
                    f"timeout={timeout} s (is it running, on this DDS domain and partition?)",
                    ack,
                )
            await asyncio.sleep(DISCOVERY_POLL)


class ControllerCommand(ReadTopic):
    """A command a `Controller` receives; its callback's outcome becomes the ack.

    Parameters
    ----------
    salinfo : `SalInfo`
        Component and domain.
    spec : `TopicSpec`
        The command.
    ack_writer : `WriteTopic`
        The controller's ``ackcmd`` writer.
    """

    def __init__(self, salinfo: SalInfo, spec: TopicSpec, ack_writer: WriteTopic) -> None:
        super().__init__(salinfo, spec, max_history=0)
        self._ack_writer = ack_writer
        self._cmdtype = salinfo.command_names.index(spec.name)
        #: Optional check run before the command; returns False to answer CMD_NOPERM.
        self.authorize: Callable[[Any], bool] | None = None

    def ack(self, data: Any, ack: SalRetCode, error: int = 0, result: str = "", timeout: float = 0.0) -> None:
        """Write an ack for command sample ``data``.

        Parameters
        ----------
        data : `DataType`
            The command sample (its ``private_seqNum``, identity and origin are echoed).
        ack : `SalRetCode`
            Ack code.
        error : `int`, optional
            Error code.
        result : `str`, optional
            Message; cut at 2000 characters.
        timeout : `float`, optional
            With CMD_INPROGRESS: how much longer (s) the command may take.
        """
        self._ack_writer.set(
            private_seqNum=data.private_seqNum,
            ack=int(ack),
            error=error,
            result=result[:2000],
            identity=data.private_identity,
            origin=data.private_origin,
            cmdtype=self._cmdtype,
            timeout=timeout,
        )
        # The ack writer's own private_seqNum would overwrite the command's: write with the command's.
        self._ack_writer._seq_num = data.private_seqNum - 1
        try:
            self._ack_writer.write()
        except RuntimeError as e:  # closing: the ack writer is gone
            self.log.warning(f"could not ack {self.name} seqNum={data.private_seqNum}: {e}")

    def ack_in_progress(self, data: Any, timeout: float, result: str = "") -> None:
        """Tell the commander the command started and may take up to ``timeout`` s more.

        Parameters
        ----------
        data : `DataType`
            The command sample.
        timeout : `float`
            Time (s) the command may still take.
        result : `str`, optional
            Message.
        """
        self.ack(data, SalRetCode.CMD_INPROGRESS, result=result, timeout=timeout)

    def set_do_callback(self, func: Callable[[Any], Awaitable[Any]]) -> None:
        """Run ``func(data)`` for each command and ack from its outcome (see module docstring).

        Parameters
        ----------
        func : callable
            Coroutine function called with the command's data; a normal return acks CMD_COMPLETE.
        """

        async def run(data: Any) -> None:
            await self._run_callback(func, data)

        self.callback = run

    async def _run_callback(self, func: Callable[[Any], Awaitable[Any]], data: Any) -> None:
        if self.authorize is not None and not self.authorize(data):
            self.ack(
                data, SalRetCode.CMD_NOPERM, error=1, result=f"{data.private_identity} is not authorized"
            )
            return
        try:
            await func(data)
        except ExpectedError as e:
            # The ack carries the reason; an ERROR log would raise an alarm in LOVE for a refused command.
            self.log.info(f"{self.name} refused: {e}")
            self.ack(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: {e}")
        except TimeoutError as e:
            self.log.error(f"{self.name} timed out: {e}")
            self.ack(data, SalRetCode.CMD_TIMEOUT, error=1, result=f"Timeout: {e}")
        except asyncio.CancelledError:
            self.ack(data, SalRetCode.CMD_ABORTED, error=1, result="Aborted")
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this topic is closing, not just the command being cancelled
        except Exception as e:
            self.log.exception(f"{self.name} failed")
            self.ack(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: {e!r}")
        else:
            self.ack(data, SalRetCode.CMD_COMPLETE, result="Done")
