"""`Controller`: the side of a component that receives commands and writes events and telemetry.

Lifecycle (as ts_salobj): the constructor does the synchronous setup (own `Domain`, topics, the
``do_<command>`` check) and schedules `Controller.start` as ``start_task``; ``done_task`` ends when the
controller is closed; ``async with`` waits for ``start_task`` and closes on exit; `Controller.close` may be
called more than once; subclasses extend `Controller.close_tasks`. If the constructor fails after making the
domain, `Controller.basic_close` frees it before the exception propagates.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from pathlib import Path
from typing import Any

from .base import HEARTBEAT_INTERVAL, current_tai
from .commands import ControllerCommand
from .domain import Domain
from .read_topic import ReadTopic
from .sal_info import SalInfo
from .topic_owner import TopicOwner
from .write_topic import ControllerEvent, ControllerTelemetry, WriteTopic

__all__ = ["DUPLICATE_CHECK_TIMEOUT", "Controller"]

#: Time (s) a controller listens for another instance's heartbeat before it starts (if asked to check).
DUPLICATE_CHECK_TIMEOUT = 2 * HEARTBEAT_INTERVAL


class _LogMessageHandler(logging.Handler):
    """Write log records as ``logMessage`` events (from any thread)."""

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        self._in_emit = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._in_emit, "active", False):
            return  # a log call made while writing a log message: do not recurse
        try:
            self._in_emit.active = True
            tb = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
            fields = dict(
                name=record.name,
                level=record.levelno,
                message=self.format(record) if not record.exc_info else record.getMessage(),
                traceback=tb,
                filePath=record.pathname,
                functionName=record.funcName,
                lineNumber=record.lineno,
                process=record.process or 0,
                timestamp=current_tai(),
            )
            loop = self.controller.domain.loop
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                self.controller._write_log_message(fields)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self.controller._write_log_message, fields)
        except Exception:
            self.handleError(record)
        finally:
            self._in_emit.active = False


class Controller(TopicOwner):
    """Receive the commands and write the events and telemetry of component ``name`` and ``index``.

    Parameters
    ----------
    name : `str`
        Component name (a folder of ``schema/``), e.g. ``"AuxTelWEP"``.
    index : `int`, optional
        salIndex; None or 0 if the component is not indexed.
    do_callbacks : `bool`, optional
        If True, every command needs a ``do_<name>`` coroutine method, which is called for each command.
    check_if_duplicate : `bool`, optional
        If True, `start` first listens for another instance's heartbeat and fails if it hears one.
    schema_dir : `pathlib.Path`, optional
        Interface XML directory (default `interface.get_schema_dir`).

    Attributes
    ----------
    domain : `Domain`
        Own domain (closed with the controller); its identity is set to ``name[:index]``.
    salinfo : `SalInfo`
        Topics bookkeeping.
    log : `logging.Logger`
        Logger whose records (at its level and above) are also written as ``logMessage`` events.
    start_task : `asyncio.Task`
        Runs `start`.
    done_task : `asyncio.Future`
        Done when the controller is closed (with the exception that closed it, if any).

    Raises
    ------
    TypeError
        If ``do_callbacks`` and the ``do_`` methods do not match the commands (the message names them).
    RuntimeError
        If there is no running event loop.

    Notes
    -----
    Topics are attributes ``cmd_<name>`` (`ControllerCommand`), ``evt_<name>`` (`ControllerEvent`) and
    ``tel_<name>`` (`ControllerTelemetry`).
    """

    def __init__(
        self,
        name: str,
        index: int | None = None,
        do_callbacks: bool = True,
        *,
        check_if_duplicate: bool = False,
        schema_dir: Path | None = None,
    ) -> None:
        self.log = logging.getLogger(name if not index else f"{name}:{index}")
        self.check_if_duplicate = check_if_duplicate
        self.done_task: asyncio.Future = asyncio.get_running_loop().create_future()
        self._closing = False
        self.domain = Domain()
        try:
            self.salinfo = SalInfo(self.domain, name, index, schema_dir)
            self.domain.identity = self.salinfo.name_index
            self._topics: dict[str, Any] = {}
            interface = self.salinfo.interface
            if do_callbacks:
                self._assert_do_methods_present()
            self._ack_writer = WriteTopic(self.salinfo, interface.ackcmd)
            for spec in interface.events.values():
                self._topics[spec.attr_name] = ControllerEvent(self.salinfo, spec)
            for spec in interface.telemetry.values():
                self._topics[spec.attr_name] = ControllerTelemetry(self.salinfo, spec)
            for spec in interface.commands.values():
                cmd = ControllerCommand(self.salinfo, spec, self._ack_writer)
                self._topics[spec.attr_name] = cmd
                if do_callbacks:
                    cmd.set_do_callback(getattr(self, f"do_{spec.name}"))
            self._log_handler = _LogMessageHandler(self)
            self.log.addHandler(self._log_handler)
            if self.log.level == logging.NOTSET:
                self.log.setLevel(logging.INFO)
            self.start_task = asyncio.create_task(self._run_start())
        except BaseException:
            self.basic_close()
            raise

    def _assert_do_methods_present(self) -> None:
        command_names = set(self.salinfo.interface.commands)
        do_names = {name[3:] for name in dir(type(self)) if name.startswith("do_")}
        missing = sorted(command_names - do_names)
        extra = sorted(do_names - command_names)
        if missing or extra:
            raise TypeError(
                f"{type(self).__name__} does not match the {self.salinfo.name} commands: "
                f"add methods {['do_' + n for n in missing]}; remove methods {['do_' + n for n in extra]}"
            )

    async def _run_start(self) -> None:
        try:
            await self.start()
        except Exception as e:
            self.log.error(f"start failed: {e}")
            await self.close(exception=e)
            raise

    async def start(self) -> None:
        """Finish starting (subclasses extend it: call ``await super().start()`` first)."""
        if self.check_if_duplicate:
            await self._check_duplicate(DUPLICATE_CHECK_TIMEOUT)

    async def _check_duplicate(self, timeout: float) -> None:
        """Raise RuntimeError if a heartbeat of this name and index arrives within ``timeout`` s."""
        reader = ReadTopic(self.salinfo, self.salinfo.interface.events["heartbeat"], max_history=1)
        try:
            data = await reader.next(flush=False, timeout=timeout)
        except TimeoutError:
            return
        finally:
            reader.basic_close()
        raise RuntimeError(
            f"another {self.salinfo.name_index} is running (heartbeat from "
            f"identity={data.private_identity!r}, origin={data.private_origin}); not starting"
        )

    def _write_log_message(self, fields: dict[str, Any]) -> None:
        if self._closing:
            return
        evt = self._topics.get("evt_logMessage")
        if evt is not None:
            evt.set_write(force_output=True, **fields)

    async def close_tasks(self) -> None:
        """Stop background work before the topics close (subclasses extend; call super)."""

    async def close(self, exception: BaseException | None = None) -> None:
        """Stop tasks, close topics and the domain; then ``done_task`` ends. Safe to call more than once.

        Parameters
        ----------
        exception : `BaseException`, optional
            Ends ``done_task`` with this exception instead of None.
        """
        if self._closing:
            await asyncio.shield(self.done_task) if not self.done_task.done() else None
            return
        self._closing = True
        try:
            await self.close_tasks()
        except Exception:
            self.log.exception("close_tasks failed")
        finally:
            self.log.removeHandler(self._log_handler)
            await self.domain.close()
            if not self.done_task.done():
                if exception is None:
                    self.done_task.set_result(None)
                else:
                    self.done_task.set_exception(exception)

    def basic_close(self) -> None:
        """Synchronous close: free the domain at once (for the constructor's error path)."""
        self._closing = True
        handler = self.__dict__.get("_log_handler")
        if handler is not None:
            self.log.removeHandler(handler)
        self.domain.basic_close()
        if not self.done_task.done():
            self.done_task.set_result(None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.salinfo.name_index!r})"
