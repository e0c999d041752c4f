"""A triplet of images to process together, and the lifecycle it goes through once formed.

`Triplet` is what the sequencer (`lsst.ts.auxtelwep.cadence.Sequencer`) hands out; `TripletState` and
`check_transition` are the state machine the journal enforces. Both are re-exported by
`lsst.ts.auxtelwep.cadence`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from .errors import CadenceError
from .intake import ImageInfo

__all__ = ["Triplet", "TripletState", "check_transition"]


class TripletState(enum.Enum):
    """Lifecycle of a triplet, as journaled; `check_transition` guards the moves."""

    COMPLETE = "complete"  # every role is present; waiting for a worker
    PROCESSING = "processing"  # handed to the pipeline; back to COMPLETE only when resumed after a crash
    DONE = "done"  # result published (terminal)
    REJECTED = "rejected"  # refused: inconsistent images or bad data; the reason is kept (terminal)


_TRANSITIONS: dict[TripletState, frozenset[TripletState]] = {
    TripletState.COMPLETE: frozenset({TripletState.PROCESSING, TripletState.REJECTED}),
    TripletState.PROCESSING: frozenset({TripletState.DONE, TripletState.REJECTED, TripletState.COMPLETE}),
    TripletState.DONE: frozenset(),
    TripletState.REJECTED: frozenset(),
}

_ILLEGAL: dict[tuple[TripletState, TripletState], str] = {
    (TripletState.COMPLETE, TripletState.DONE): "it was never processed, so it has no result to publish",
    (TripletState.DONE, TripletState.PROCESSING): "its result was already published; processing it again "
    "would publish (and possibly apply) a second result",
    (TripletState.DONE, TripletState.REJECTED): "its result was already published; it cannot be rejected now",
    (TripletState.DONE, TripletState.COMPLETE): "its result was already published; it cannot be requeued",
    (TripletState.REJECTED, TripletState.PROCESSING): "it was rejected; send the images again (runWEP) "
    "to retry",
    (TripletState.REJECTED, TripletState.DONE): "it was rejected; a result cannot be published for it",
    (TripletState.REJECTED, TripletState.COMPLETE): "it was rejected; it cannot be requeued",
}


def check_transition(old: TripletState, new: TripletState, *, key: str) -> None:
    """Raise if triplet ``key`` may not move from ``old`` to ``new``.

    Parameters
    ----------
    old, new : `TripletState`
        Current and requested states.
    key : `str`
        Journal key of the triplet, for the message.

    Raises
    ------
    CadenceError
        With a message specific to the illegal move.
    """
    if new in _TRANSITIONS[old]:
        return
    why = _ILLEGAL.get((old, new), f"{old.name} -> {new.name} is not a transition of a triplet")
    raise CadenceError(f"triplet {key}: cannot go from {old.name} to {new.name}: {why}")


@dataclasses.dataclass(frozen=True)
class Triplet:
    """Images to process together (``infocus`` is None when the configuration does not require one)."""

    group_id: str
    intra: ImageInfo
    extra: ImageInfo
    infocus: ImageInfo | None = None

    @property
    def key(self) -> str:
        """Unique name: ``<intra obsid>+<extra obsid>[+<in-focus obsid>]``."""
        return "+".join(image.obsid for image in self.images)

    @property
    def images(self) -> tuple[ImageInfo, ...]:
        """The images, intra first, then extra, then in-focus (when present)."""
        return (self.intra, self.extra) if self.infocus is None else (self.intra, self.extra, self.infocus)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (inverse of `from_dict`)."""
        return {
            "group_id": self.group_id,
            "intra": self.intra.to_dict(),
            "extra": self.extra.to_dict(),
            "infocus": None if self.infocus is None else self.infocus.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Triplet:
        """Build from `to_dict` output.

        Parameters
        ----------
        data : mapping [`str`, `object`]
            Output of `to_dict`.
        """
        infocus = data.get("infocus")
        return cls(
            group_id=str(data["group_id"]),
            intra=ImageInfo.from_dict(data["intra"]),
            extra=ImageInfo.from_dict(data["extra"]),
            infocus=None if infocus is None else ImageInfo.from_dict(infocus),
        )
