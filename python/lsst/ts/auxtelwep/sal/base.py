"""Enums, exceptions, constants and small helpers shared by the SAL layer.

Times on the wire are TAI unix seconds (``private_sndStamp``, ``private_rcvStamp``); durations and
timeouts are seconds, measured locally with `time.monotonic`.
"""

from __future__ import annotations

import asyncio
import enum
import getpass
import os
import socket
import time
from typing import Any

__all__ = [
    "DEFAULT_TIMEOUT",
    "DISCOVERY_POLL",
    "DISCOVERY_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "MAX_SAL_INDEX",
    "TAI_MINUS_UTC",
    "AckError",
    "AckTimeoutError",
    "CommandNotSentError",
    "ExpectedError",
    "SalRetCode",
    "State",
    "current_tai",
    "default_identity",
    "get_user_host",
    "make_done_future",
    "name_to_name_index",
]

#: Default time limit (s) for a command to be acknowledged as done (ts_salobj's; pass a shorter one).
DEFAULT_TIMEOUT = 3600.0
#: Longest time (s) a `Remote` waits at start to discover the component (and receive its late-joiner events).
DISCOVERY_TIMEOUT = 2.0
#: Interval (s) between two looks at DDS discovery (remote start, a command's first write).
DISCOVERY_POLL = 0.01
#: Interval (s) between two heartbeat events.
HEARTBEAT_INTERVAL = 1.0
#: Largest salIndex accepted (salIndex is a signed 32-bit field).
MAX_SAL_INDEX = 2**31 - 1
#: TAI - UTC (s), valid since 2017-01-01 (no leap second announced since).
TAI_MINUS_UTC = 37.0


class State(enum.IntEnum):
    """Summary state of a CSC (values fixed by the SAL interface)."""

    DISABLED = 1  # configured, not acting on the system
    ENABLED = 2  # fully operational
    FAULT = 3  # stopped by an error; needs standby to recover
    OFFLINE = 4  # about to quit (after exitControl)
    STANDBY = 5  # running but unconfigured


class SalRetCode(enum.IntEnum):
    """Command acknowledgement codes (the ``ack`` field of ``ackcmd``), with SAL's numbers."""

    CMD_ACK = 300  # command received, not started
    CMD_INPROGRESS = 301  # started; ``timeout`` says how long it may take
    CMD_STALLED = 302  # started but stalled
    CMD_COMPLETE = 303  # finished successfully
    CMD_NOPERM = -300  # the commander is not authorised
    CMD_NOACK = -301  # no acknowledgement (only made up by a remote that timed out)
    CMD_FAILED = -302  # failed; ``result`` says why
    CMD_ABORTED = -303  # cancelled
    CMD_TIMEOUT = -304  # the controller gave up


class ExpectedError(Exception):
    """A command failed for a reason that needs no traceback (bad state, rejected input...).

    The command is acknowledged CMD_FAILED with the message as ``result``, and no traceback is logged.
    """


class AckError(Exception):
    """A command was acknowledged with a failure code.

    Parameters
    ----------
    msg : `str`
        Summary of the problem.
    ackcmd : `object`
        The ``ackcmd`` sample that ended the command (``ack``, ``error``, ``result``...).
    """

    def __init__(self, msg: str, ackcmd: Any) -> None:
        super().__init__(msg)
        self.ackcmd = ackcmd

    def __str__(self) -> str:
        ack = self.ackcmd
        return (
            f"{self.args[0]}: ack={_ack_name(ack.ack)}, error={ack.error}, result={ack.result!r}"
            if ack is not None
            else str(self.args[0])
        )


class AckTimeoutError(AckError):
    """A command did not finish in time; ``ackcmd`` is the last ack seen (ack CMD_NOACK if none)."""


class CommandNotSentError(AckTimeoutError):
    """A command was never written: no controller was discovered within its time limit (ack CMD_NOACK).

    An `AckTimeoutError` (what ts_salobj raises when nobody answers), so callers written for that are
    unaffected; a caller to whom "maybe done" and "surely not done" differ (a correction sent to ATAOS)
    can tell it apart from a time-out after the command went out, which may have acted.
    """


def _ack_name(ack: int) -> str:
    try:
        return SalRetCode(ack).name
    except ValueError:
        return str(ack)


def current_tai() -> float:
    """Return the current time as TAI unix seconds (system clock + `TAI_MINUS_UTC`)."""
    return time.time() + TAI_MINUS_UTC


def get_user_host() -> str:
    """Return ``user@host`` of this process (the user id if it has no name)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in containers without passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def default_identity() -> str:
    """Return the identity used by remotes: ``$LSST_IDENTITY`` if set, else `get_user_host`."""
    env = os.environ.get("LSST_IDENTITY", "").strip()
    return env if env else get_user_host()


def make_done_future() -> asyncio.Future:
    """Return a future that is already done (result None): a placeholder task that is safe to cancel."""
    future: asyncio.Future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def name_to_name_index(name: str) -> tuple[str, int]:
    """Split ``"name[:index]"`` into ``(name, index)``; a missing index is 0.

    Parameters
    ----------
    name : `str`
        Component name, optionally followed by ``:index``.

    Raises
    ------
    ValueError
        If the index is not an integer.
    """
    base, sep, index_str = name.partition(":")
    if not sep:
        return base, 0
    try:
        return base, int(index_str)
    except ValueError:
        raise ValueError(f"name={name!r} must be 'name' or 'name:index' with an integer index") from None
