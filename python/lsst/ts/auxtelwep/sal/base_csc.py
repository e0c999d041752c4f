"""`BaseCsc`: a `Controller` with the standard CSC state machine, heartbeat, logging and authorisation.

State machine (commands and the states they are allowed from)::

    start       STANDBY          -> DISABLED   (configurationOverride; ConfigurableCsc configures here)
    enable      DISABLED         -> ENABLED
    disable     ENABLED          -> DISABLED
    standby     DISABLED, FAULT  -> STANDBY
    exitControl STANDBY          -> OFFLINE    (then the CSC closes)

Each state command runs ``begin_<cmd>(data)``, changes the state, runs ``end_<cmd>(data)`` (if that raises,
the state goes back and the command fails), calls `BaseCsc.handle_summary_state` (if that raises, the command
fails and ``summaryState`` is not written, while the state stays the new one, as in ts_salobj), then writes
``summaryState``.
`BaseCsc.fault` goes to FAULT from any state but OFFLINE and writes ``errorCode``; every other state written
(the initial STANDBY too) comes with an ``errorCode`` of 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from .auth import AuthList
from .base import HEARTBEAT_INTERVAL, ExpectedError, State
from .controller import Controller

__all__ = ["EXIT_CLOSE_DELAY", "BaseCsc"]

#: Time (s) between acknowledging exitControl and closing.
EXIT_CLOSE_DELAY = 0.2

_SAL_LAYER_VERSION = "auxtelwep-sal 1"

_STATE_COMMANDS: dict[str, tuple[frozenset[State], State]] = {
    "start": (frozenset({State.STANDBY}), State.DISABLED),
    "enable": (frozenset({State.DISABLED}), State.ENABLED),
    "disable": (frozenset({State.ENABLED}), State.DISABLED),
    "standby": (frozenset({State.DISABLED, State.FAULT}), State.STANDBY),
    "exitControl": (frozenset({State.STANDBY}), State.OFFLINE),
}


class BaseCsc(Controller):
    """A Commandable SAL Component.

    A subclass names its component in ``super().__init__(name="AuxTelWEP", ...)``, defines a ``do_<name>``
    coroutine for each of its own commands, and may set the class attributes below.

    Parameters
    ----------
    name : `str`
        Component name (a folder of ``schema/``).
    index : `int`, optional
        salIndex; None for a component that is not indexed.
    initial_state : `State`, optional
        STANDBY, DISABLED or ENABLED; the CSC goes there by the usual commands once started (if one fails,
        it logs why and stays in the state it got to).
    override : `str`, optional
        Configuration override used when ``initial_state`` is DISABLED or ENABLED.
    simulation_mode : `int`, optional
        Must be in ``valid_simulation_modes``.
    check_if_duplicate : `bool`, optional
        Refuse to start if another instance's heartbeat is heard (`amain` sets it; tests usually do not).
    schema_dir : `pathlib.Path`, optional
        Interface XML directory.

    Attributes
    ----------
    valid_simulation_modes : `tuple` [`int`]
        Accepted simulation modes (class attribute).
    version : `str`
        CSC version written in ``softwareVersions`` (class attribute).
    auth_commands : `frozenset` [`str`]
        Commands that need authorisation (class attribute); see `auth.AuthList` for the rule.
    heartbeat_interval : `float`
        Seconds between heartbeats (class attribute).

    Raises
    ------
    ValueError
        If ``initial_state`` or ``simulation_mode`` is not allowed.
    TypeError
        If the ``do_`` methods do not match the commands.
    """

    valid_simulation_modes: ClassVar[Sequence[int]] = (0,)
    version: ClassVar[str] = "?"
    auth_commands: ClassVar[frozenset[str]] = frozenset()
    heartbeat_interval: ClassVar[float] = HEARTBEAT_INTERVAL

    def __init__(
        self,
        name: str,
        index: int | None = None,
        initial_state: State = State.STANDBY,
        override: str = "",
        simulation_mode: int = 0,
        *,
        check_if_duplicate: bool = False,
        schema_dir: Path | None = None,
    ) -> None:
        initial_state = State(initial_state)
        if initial_state not in (State.STANDBY, State.DISABLED, State.ENABLED):
            raise ValueError(f"initial_state={initial_state!r} must be STANDBY, DISABLED or ENABLED")
        if simulation_mode not in self.valid_simulation_modes:
            raise ValueError(f"simulation_mode={simulation_mode} not in {tuple(self.valid_simulation_modes)}")
        self._summary_state = State.STANDBY
        self._initial_state = initial_state
        self._override = override
        self.simulation_mode = simulation_mode
        self.auth_list = AuthList()
        self._heartbeat_task: asyncio.Future | None = None
        self._exit_task: asyncio.Task | None = None
        super().__init__(
            name, index, do_callbacks=True, check_if_duplicate=check_if_duplicate, schema_dir=schema_dir
        )
        unknown = sorted(self.auth_commands - set(self.salinfo.interface.commands))
        if unknown:
            self.basic_close()
            raise ValueError(f"auth_commands names unknown commands {unknown}")
        for cmd_name in self.auth_commands:
            self._topics[f"cmd_{cmd_name}"].authorize = self._authorize

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Write the startup events, start the heartbeat, and go to the initial state.

        If the initial state cannot be reached (say an override that is missing), the failure is logged and
        the CSC stays up in the state it got to, as in ts_salobj: an operator can then send ``start`` with
        another override.
        """
        await super().start()
        self.evt_softwareVersions.set_write(
            salVersion=_SAL_LAYER_VERSION, xmlVersion="", cscVersion=self.version, subsystemVersions=""
        )
        self.evt_simulationMode.set_write(mode=self.simulation_mode)
        self.evt_logLevel.set_write(level=self.log.getEffectiveLevel(), subsystem="")
        self._write_auth_list()
        await self.start_extra()
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())
        self._report_summary_state()
        commands = {State.STANDBY: (), State.DISABLED: ("start",), State.ENABLED: ("start", "enable")}
        for cmd_name in commands[self._initial_state]:
            data = getattr(self, f"cmd_{cmd_name}").DataType()
            if cmd_name == "start":
                data.configurationOverride = self._override
            try:
                await self._do_change_state(data, cmd_name)
            except Exception as exc:
                why = (
                    f"could not go to {self._initial_state.name}: {cmd_name} failed; "
                    f"staying in {self._summary_state.name}"
                )
                if isinstance(exc, ExpectedError):  # a refusal that says it all: no traceback
                    self.log.error(f"{why}: {exc}")
                else:
                    self.log.exception(why)
                break

    async def start_extra(self) -> None:
        """Hook run in `start` before the heartbeat begins (ConfigurableCsc writes an event here)."""

    async def _heartbeat_loop(self) -> None:
        while True:
            self.evt_heartbeat.write()
            await asyncio.sleep(self.heartbeat_interval)

    async def close_tasks(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        await super().close_tasks()

    # --- state machine ---------------------------------------------------------------------------------

    @property
    def summary_state(self) -> State:
        return self._summary_state

    @property
    def disabled_or_enabled(self) -> bool:
        return self._summary_state in (State.DISABLED, State.ENABLED)

    def assert_enabled(self, action: str = "") -> None:
        """Raise ExpectedError unless the CSC is ENABLED.

        Parameters
        ----------
        action : `str`, optional
            What was refused, for the error message; default "this command".
        """
        if self._summary_state != State.ENABLED:
            what = action or "this command"
            raise ExpectedError(f"{what} not allowed in state {self._summary_state!r}; it needs ENABLED")

    async def _do_change_state(self, data: Any, cmd_name: str) -> None:
        allowed, new_state = _STATE_COMMANDS[cmd_name]
        old_state = self._summary_state
        if old_state not in allowed:
            allowed_str = ", ".join(s.name for s in sorted(allowed))
            raise ExpectedError(f"{cmd_name} not allowed in state {old_state!r}; allowed in {allowed_str}")
        await getattr(self, f"begin_{cmd_name}")(data)
        self._summary_state = new_state
        try:
            await getattr(self, f"end_{cmd_name}")(data)
        except Exception:
            self._summary_state = old_state
            self.log.warning(f"end_{cmd_name} failed; state stays {old_state!r}")
            raise
        # Before the state is reported, as ts_salobj: a hook that raises fails the command, and remotes do
        # not see a state whose work did not start.
        await self.handle_summary_state()
        self._report_summary_state()

    def _report_summary_state(self) -> None:
        """Write ``summaryState`` and, outside FAULT, an ``errorCode`` of 0.

        As ts_salobj: a late joiner always finds an ``errorCode``, and one of a CSC that left FAULT no
        longer names the old fault.
        """
        self.evt_summaryState.set_write(summaryState=self._summary_state)
        if self._summary_state is not State.FAULT:
            self.evt_errorCode.set_write(errorCode=0, errorReport="", traceback="")

    async def handle_summary_state(self) -> None:
        """Hook called on every state change (start or stop work that depends on the state).

        A state command calls it before writing ``summaryState``: if it raises, the command fails. `fault`
        calls it after writing ``summaryState`` FAULT.
        """

    async def fault(self, code: int | None, report: str, traceback: str = "") -> None:
        """Go to FAULT (unless OFFLINE) and write ``errorCode`` (0 if ``code`` is None), also when already
        in FAULT: a new problem is reported, as in ts_salobj.

        Parameters
        ----------
        code : `int` or None
            Error code written in ``errorCode``.
        report : `str`
            Description of the problem (``errorReport``).
        traceback : `str`, optional
            Traceback text, if any.
        """
        if self._summary_state is State.OFFLINE:
            return
        self.evt_errorCode.set_write(
            errorCode=code or 0, errorReport=report, traceback=traceback, force_output=True
        )
        self.log.error(f"fault: code={code}, report={report}")
        if self._summary_state is not State.FAULT:
            self._summary_state = State.FAULT
            self._report_summary_state()
            try:
                await self.handle_summary_state()
            except Exception:
                # Faults are mostly reported from background tasks, which must not die of the report.
                self.log.exception("handle_summary_state failed on going to FAULT")

    async def do_start(self, data: Any) -> None:
        """Go to DISABLED (see the module docstring).

        Parameters
        ----------
        data : `DataType`
            The ``start`` command's data (field ``configurationOverride``).
        """
        await self._do_change_state(data, "start")

    async def do_enable(self, data: Any) -> None:
        """Go to ENABLED (see the module docstring).

        Parameters
        ----------
        data : `DataType`
            The ``enable`` command's data (no fields used).
        """
        await self._do_change_state(data, "enable")

    async def do_disable(self, data: Any) -> None:
        """Go to DISABLED (see the module docstring).

        Parameters
        ----------
        data : `DataType`
            The ``disable`` command's data (no fields used).
        """
        await self._do_change_state(data, "disable")

    async def do_standby(self, data: Any) -> None:
        """Go to STANDBY (see the module docstring).

        Parameters
        ----------
        data : `DataType`
            The ``standby`` command's data (no fields used).
        """
        await self._do_change_state(data, "standby")

    async def do_exitControl(self, data: Any) -> None:
        """Go to OFFLINE, then close the CSC after `EXIT_CLOSE_DELAY` seconds.

        Parameters
        ----------
        data : `DataType`
            The ``exitControl`` command's data (no fields used).
        """
        await self._do_change_state(data, "exitControl")
        self._exit_task = asyncio.create_task(self._close_after_exit())

    async def _close_after_exit(self) -> None:
        # The ack is written before this task first runs; the delay lets remotes sharing this CSC's domain
        # read it before the domain closes.
        await asyncio.sleep(EXIT_CLOSE_DELAY)
        await self.close()

    async def begin_start(self, data: Any) -> None:
        """Hook run before going from STANDBY to DISABLED.

        Parameters
        ----------
        data : `DataType`
            The ``start`` command's data (field ``configurationOverride``).
        """

    async def end_start(self, data: Any) -> None:
        """Hook run after going from STANDBY to DISABLED.

        Parameters
        ----------
        data : `DataType`
            The ``start`` command's data (field ``configurationOverride``).
        """

    async def begin_enable(self, data: Any) -> None:
        """Hook run before going from DISABLED to ENABLED.

        Parameters
        ----------
        data : `DataType`
            The ``enable`` command's data (no fields used).
        """

    async def end_enable(self, data: Any) -> None:
        """Hook run after going from DISABLED to ENABLED.

        Parameters
        ----------
        data : `DataType`
            The ``enable`` command's data (no fields used).
        """

    async def begin_disable(self, data: Any) -> None:
        """Hook run before going from ENABLED to DISABLED.

        Parameters
        ----------
        data : `DataType`
            The ``disable`` command's data (no fields used).
        """

    async def end_disable(self, data: Any) -> None:
        """Hook run after going from ENABLED to DISABLED.

        Parameters
        ----------
        data : `DataType`
            The ``disable`` command's data (no fields used).
        """

    async def begin_standby(self, data: Any) -> None:
        """Hook run before going to STANDBY.

        Parameters
        ----------
        data : `DataType`
            The ``standby`` command's data (no fields used).
        """

    async def end_standby(self, data: Any) -> None:
        """Hook run after going to STANDBY.

        Parameters
        ----------
        data : `DataType`
            The ``standby`` command's data (no fields used).
        """

    async def begin_exitControl(self, data: Any) -> None:
        """Hook run before going to OFFLINE.

        Parameters
        ----------
        data : `DataType`
            The ``exitControl`` command's data (no fields used).
        """

    async def end_exitControl(self, data: Any) -> None:
        """Hook run after going to OFFLINE.

        Parameters
        ----------
        data : `DataType`
            The ``exitControl`` command's data (no fields used).
        """

    # --- log level and authorisation ------------------------------------------------------------------

    async def do_setLogLevel(self, data: Any) -> None:
        """Set the log level and write ``logLevel``.

        Parameters
        ----------
        data : `DataType`
            The command's data (field ``level``, a Python log level).
        """
        self.log.setLevel(data.level)
        self.evt_logLevel.set_write(level=self.log.getEffectiveLevel(), subsystem="")

    async def do_setAuthList(self, data: Any) -> None:
        """Update the authorisation lists (`AuthList.update`) and write ``authList``.

        Parameters
        ----------
        data : `DataType`
            The command's data (fields ``authorizedUsers`` and ``nonAuthorizedCSCs``).
        """
        self.auth_list.update(data.authorizedUsers, data.nonAuthorizedCSCs)
        self._write_auth_list()

    def _write_auth_list(self) -> None:
        self.evt_authList.set_write(
            authorizedUsers=self.auth_list.users_str, nonAuthorizedCSCs=self.auth_list.cscs_str
        )

    def _authorize(self, data: Any) -> bool:
        return self.auth_list.is_authorized(data.private_identity, self.salinfo.name_index)

    # --- command line ---------------------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Hook: add CSC-specific command-line arguments.

        Parameters
        ----------
        parser : `argparse.ArgumentParser`
            The parser made by `make_argument_parser`, to add arguments to.
        """

    @classmethod
    def add_kwargs_from_args(cls, args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
        """Hook: turn CSC-specific arguments into constructor keyword arguments.

        Parameters
        ----------
        args : `argparse.Namespace`
            The parsed command line.
        kwargs : `dict` [`str`, `object`]
            Constructor keyword arguments; update it in place.
        """

    @classmethod
    def make_argument_parser(cls, index: int | bool | None = None) -> argparse.ArgumentParser:
        """Return the parser `amain` uses (see there).

        Parameters
        ----------
        index : `int`, `bool` or None, optional
            True adds a required ``index`` argument; anything else adds none.
        """
        parser = argparse.ArgumentParser(description=f"Run the {cls.__name__} CSC.")
        if index is True:
            parser.add_argument("index", type=int, help="SAL index.")
        parser.add_argument(
            "--state",
            choices=["standby", "disabled", "enabled"],
            default="standby",
            help="State to go to after starting.",
        )
        parser.add_argument(
            "--override", default="", help="Configuration override for --state disabled/enabled."
        )
        parser.add_argument("--loglevel", type=int, default=None, help="Python log level, e.g. 10 for debug.")
        parser.add_argument("--version", action="version", version=f"{cls.__name__} {cls.version}")
        if len(cls.valid_simulation_modes) > 1:
            parser.add_argument("--simulate", type=int, default=0, choices=cls.valid_simulation_modes)
        cls.add_arguments(parser)
        return parser

    @classmethod
    async def amain(
        cls, index: int | bool | None = None, args: Sequence[str] | None = None, **kwargs: Any
    ) -> None:
        """Parse the command line, run the CSC until it closes (exitControl or SIGINT/SIGTERM).

        Parameters
        ----------
        index : `int`, `bool` or None
            True: the index is a required argument; an int: use that index; None or False: not indexed.
        args : sequence of `str`, optional
            Arguments to parse instead of ``sys.argv[1:]``.
        **kwargs
            Extra constructor arguments.
        """
        parser = cls.make_argument_parser(index)
        ns = parser.parse_args(args)
        csc_kwargs: dict[str, Any] = dict(
            initial_state=State[ns.state.upper()], override=ns.override, check_if_duplicate=True
        )
        if index is True:
            csc_kwargs["index"] = ns.index
        elif index not in (None, False):
            csc_kwargs["index"] = int(index)
        if hasattr(ns, "simulate"):
            csc_kwargs["simulation_mode"] = ns.simulate
        cls.add_kwargs_from_args(ns, csc_kwargs)
        csc_kwargs.update(kwargs)
        if ns.loglevel is not None:
            logging.getLogger().setLevel(ns.loglevel)
        try:
            csc = cls(**csc_kwargs)
        except ValueError as exc:
            # A bad argument (e.g. --configdir that is not a directory): one line and status 2, like any other
            # argument error, not a traceback.
            parser.error(str(exc))
        if ns.loglevel is not None:
            csc.log.setLevel(ns.loglevel)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(csc.close()))
        await csc.done_task
