"""When M2 moved, from ATAOS's ``hexapodCorrectionStarted`` and ``hexapodCorrectionCompleted``.

ATAOS acknowledges ``offset`` once a run of its correction loop has followed the offset's addition to its
model. That run moves the hexapod only if the camera's shutter is closed (unless ``moveWhileExposing``);
otherwise the move waits for the shutter to close, after the acknowledgement, and an image that starts then
may be taken while M2 moves. Every move ATAOS makes (for an offset, its elevation look-up table, a filter
change) goes to its whole model, offsets included: an offset is in effect once a move that started after it
was sent has completed. `M2MoveWatcher.completed_after` says when that was.
"""

from __future__ import annotations

import bisect
import collections
import time
from typing import Any

from .sal import current_tai

__all__ = ["M2MoveWatcher"]


class M2MoveWatcher:
    """Starts and ends of ATAOS's hexapod moves, as this process received them.

    Give `on_started` and `on_completed` to the callbacks of the two events. Samples written before the
    watcher was made (a late joiner's history: the moves before a restart) are left out, since their
    receipt time says nothing of when they happened.

    Parameters
    ----------
    max_moves : `int`, optional
        Starts and ends kept (the oldest are forgotten): minutes of moves, since pending offsets are
        resolved as each move ends.
    """

    def __init__(self, *, max_moves: int = 256) -> None:
        self._since_tai = current_tai()
        # (private_sndStamp, receipt time.time()): the writer's stamps order the two topics, whose samples
        # may be read in either order; receipt times are on this host's clock, as the journal's are.
        self._starts: collections.deque[tuple[float, float]] = collections.deque(maxlen=max_moves)
        self._ends: collections.deque[tuple[float, float]] = collections.deque(maxlen=max_moves)

    def on_started(self, data: Any) -> None:
        """Callback of ``hexapodCorrectionStarted``.

        Parameters
        ----------
        data : `DataType`
            The event's sample (its ``private_sndStamp`` is used).
        """
        self._record(self._starts, data)

    def on_completed(self, data: Any) -> None:
        """Callback of ``hexapodCorrectionCompleted``.

        Parameters
        ----------
        data : `DataType`
            The event's sample (its ``private_sndStamp`` is used).
        """
        self._record(self._ends, data)

    def _record(self, samples: collections.deque[tuple[float, float]], data: Any) -> None:
        stamp = float(data.private_sndStamp)
        if stamp >= self._since_tai:
            # Kept in stamp order (they arrive in it, barring a clock step on ATAOS's host).
            bisect.insort(samples, (stamp, time.time()))

    def completed_after(self, sent: float) -> float | None:
        """When the first move that started after ``sent`` was seen to end.

        Parameters
        ----------
        sent : `float`
            When the offset was sent (``time.time``).

        Returns
        -------
        settled : `float` or `None`
            Receipt time (``time.time``) of the end of the first move whose start was received after
            ``sent`` (not earlier than that start's receipt); None if no such move has ended yet.
        """
        for start_stamp, start_received in self._starts:
            if start_received >= sent:
                for end_stamp, end_received in self._ends:
                    if end_stamp >= start_stamp:
                        return max(end_received, start_received)
                return None
        return None
