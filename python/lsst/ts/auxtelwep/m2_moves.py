"""When M2 moved, from ATAOS's ``hexapodCorrectionStarted`` and ``hexapodCorrectionCompleted``.

ATAOS acknowledges ``offset`` once a run of its correction loop has followed the offset's addition to its
model. That run moves the hexapod only if the camera's shutter is closed (unless ``moveWhileExposing``);
otherwise the move waits for the shutter to close, after the acknowledgement, and an image that starts then
may be taken while M2 moves. A move whose start ATAOS wrote before the acknowledgement may also be one of
an earlier run, whose target did not include the offset (the run held the loop's lock while the offset
waited for it). Every move ATAOS starts after acknowledging the offset goes to its whole model, offsets
included (for an offset, its elevation look-up table, a filter change, an observing script's defocus): so an
offset is known to be in effect once such a move has ended. `M2MoveWatcher.completed_after` says when.

ATAOS writes ``hexapodCorrectionCompleted`` even when the hexapod's move failed (and then goes to FAULT): a
move is taken as done only if ATAOS stayed ENABLED through it and for `FAULT_GRACE_S` after it.

Times: the two events and the acknowledgement are ordered by their ``private_sndStamp``, all written by
ATAOS (one clock, whatever this host's); when a move ended is its receipt time on this host (``time.time``,
the clock of the journal), never earlier than the truth.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from .sal import State

__all__ = ["FAULT_GRACE_S", "M2MoveWatcher"]

#: Time (s, ATAOS's clock) after a move's end within which ATAOS going to FAULT says the move failed (it
#: writes ``hexapodCorrectionCompleted`` before faulting); a move is not taken as done before this has
#: passed on this host's clock either.
FAULT_GRACE_S = 1.0


class M2MoveWatcher:
    """ATAOS's hexapod moves and summary states, as this process received them.

    Give `on_started`, `on_completed` and `on_summary_state` to the callbacks of ATAOS's
    ``hexapodCorrectionStarted``, ``hexapodCorrectionCompleted`` and ``summaryState`` events. A late
    joiner's history is welcome: moves are placed by ATAOS's stamps, and one received at a restart counts as
    ending then (its receipt), no earlier than it did.

    Parameters
    ----------
    max_moves : `int`, optional
        Starts, ends and states kept (the oldest are forgotten): hours of moves.
    fault_grace_s : `float`, optional
        How long after a move's end a FAULT of ATAOS says it failed (default: `FAULT_GRACE_S` when made).
    """

    def __init__(self, *, max_moves: int = 2000, fault_grace_s: float | None = None) -> None:
        self.max_moves = int(max_moves)
        self.fault_grace_s = FAULT_GRACE_S if fault_grace_s is None else float(fault_grace_s)
        # (private_sndStamp, receipt time.time()), in stamp order: the three topics have separate readers,
        # so a move's end may be read before its start.
        self._starts: list[tuple[float, float]] = []
        self._ends: list[tuple[float, float]] = []
        self._states: list[tuple[float, int]] = []  # (private_sndStamp, summaryState)

    def on_started(self, data: Any) -> None:
        """Callback of ``hexapodCorrectionStarted``.

        Parameters
        ----------
        data : `DataType`
            The event's sample (its ``private_sndStamp`` is used).
        """
        self._record(self._starts, (float(data.private_sndStamp), time.time()))

    def on_completed(self, data: Any) -> None:
        """Callback of ``hexapodCorrectionCompleted``.

        Parameters
        ----------
        data : `DataType`
            The event's sample (its ``private_sndStamp`` is used).
        """
        self._record(self._ends, (float(data.private_sndStamp), time.time()))

    def on_summary_state(self, data: Any) -> None:
        """Callback of ATAOS's ``summaryState``.

        Parameters
        ----------
        data : `DataType`
            The event's sample (``summaryState`` and ``private_sndStamp`` are used).
        """
        self._record(self._states, (float(data.private_sndStamp), int(data.summaryState)))

    def _record(self, samples: list[Any], sample: tuple[float, Any]) -> None:
        bisect.insort(samples, sample)
        del samples[: -self.max_moves]

    @property
    def ataos_enabled(self) -> bool:
        """False if ATAOS's last reported summary state is not ENABLED (True when none was received)."""
        return not self._states or self._states[-1][1] == State.ENABLED

    def completed_after(
        self, *, stamp: float | None = None, received: float | None = None, now: float | None = None
    ) -> float | None:
        """When the first successful move started after a time was seen to end.

        Parameters
        ----------
        stamp : `float`, optional
            The time on ATAOS's clock (TAI unix seconds, e.g. the acknowledgement's ``private_sndStamp``):
            moves whose start ATAOS stamped at or after it.
        received : `float`, optional
            Else the time on this host's clock (``time.time``): moves whose start was received after it.
        now : `float`, optional
            The current time (``time.time``; default: now).

        Returns
        -------
        settled : `float` or `None`
            Receipt time (``time.time``) of the end of the first such move that did not fail (ATAOS stayed
            ENABLED through it and ``fault_grace_s`` after, and that much time has passed since it was
            received); None if there is none yet (see `moving_after` for whether one is under way).
        """
        outcome = self._first_move(stamp, received, time.time() if now is None else now)
        return outcome if isinstance(outcome, float) else None

    def moving_after(
        self, *, stamp: float | None = None, received: float | None = None, now: float | None = None
    ) -> bool:
        """True if a move started after a time (as in `completed_after`) is under way or not yet judged.

        Parameters
        ----------
        stamp, received, now : `float`, optional
            As in `completed_after`.
        """
        return self._first_move(stamp, received, time.time() if now is None else now) == "moving"

    def _first_move(self, stamp: float | None, received: float | None, now: float) -> float | str:
        """The first successful move started after ``stamp`` (or ``received``): its end's receipt time,
        "moving" if it has not ended (or its end is within ``fault_grace_s``), or "none"."""
        for start_stamp, start_received in self._starts:
            if stamp is not None:
                if start_stamp < stamp:
                    continue
            elif received is None or start_received < received:
                continue
            end = next(((s, r) for s, r in self._ends if s >= start_stamp), None)
            if end is None:
                return "moving"
            end_stamp, end_received = end
            if now < end_received + self.fault_grace_s:
                return "moving"  # a FAULT may still be on its way
            if any(
                start_stamp <= s <= end_stamp + self.fault_grace_s and state != State.ENABLED
                for s, state in self._states
            ):
                continue  # the move failed (or ATAOS was stopped): M2's place is unknown until the next one
            return max(end_received, start_received)
        return "none"
