"""The journal's rows as values: what became of an image, a triplet and a correction.

`ImageStatus` and `CorrectionState` are the lifecycles stored in the journal (`lsst.ts.auxtelwep.journal`,
which re-exports everything here); the ``*_record`` functions turn a table row into its record, and
`dump_state` / `load_state` store a hexapod state as a JSON list (x, y, z mm; u, v deg).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from .errors import InputError
from .instrument import HexapodState, Role
from .intake import ImageInfo
from .triplet import Triplet, TripletState

__all__ = [
    "CorrectionRecord",
    "CorrectionState",
    "ImageRecord",
    "ImageStatus",
    "TripletRecord",
    "correction_record",
    "dump_state",
    "image_record",
    "load_state",
    "triplet_record",
]


class ImageStatus(enum.Enum):
    """What became of an image."""

    ANNOUNCED = "announced"  # endReadout seen; waiting for ATOODS (or the file) to appear
    QUEUED = "queued"  # accepted by the sequencer; waiting for its partners
    IN_TRIPLET = "in_triplet"  # part of a triplet (its outcome is the triplet's)
    IGNORED = "ignored"  # not a wavefront image (bias, flat...); nothing to do
    REJECTED = "rejected"  # refused: unknown role, unreadable raw, out of order...; ``reason`` says why
    EXPIRED = "expired"  # its partner never came within the timeout
    LOST = "lost"  # announced, but neither ATOODS nor the data root ever produced the file
    NAMED = "named"  # known only from runWEP so far; the camera's events may still bring it in


class CorrectionState(enum.Enum):
    """Lifecycle of one hexapod correction."""

    COMPUTED = "computed"  # from a result; not sent
    APPLYING = "applying"  # claimed and sent to ATAOS; waiting for the ack
    APPLIED = "applied"  # ATAOS acknowledged it (terminal)
    FAILED = "failed"  # ATAOS refused it for sure (FAILED/NOPERM ack); may be sent again
    UNCERTAIN = "uncertain"  # sent, but the outcome is unknown (timeout, crash); never re-sent (terminal)
    SUPERSEDED = "superseded"  # a newer result replaced it before it was sent (terminal)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """A row of the images table (``info`` is None for an image known only from ``endReadout``)."""

    obsid: str
    group_id: str
    role: Role | None
    status: ImageStatus
    reason: str
    triplet_key: str
    info: ImageInfo | None
    created: float
    updated: float


@dataclasses.dataclass(frozen=True)
class TripletRecord:
    """A row of the triplets table; ``source`` is ``"events"`` or ``"runWEP"``."""

    key: str
    group_id: str
    state: TripletState
    reason: str
    source: str
    triplet: Triplet
    result: dict[str, Any]
    attempts: int


@dataclasses.dataclass(frozen=True)
class CorrectionRecord:
    """A row of the corrections table.

    Attributes
    ----------
    raw : `HexapodState`
        The correction computed from the wavefront (mm, mm, mm, deg, deg), before gains and limits.
    applied : `HexapodState` or None
        What was (or is being) sent to ATAOS, after gains and limits; None until claimed.
    """

    id: int
    triplet_key: str
    group_id: str
    epoch: int
    state: CorrectionState
    raw: HexapodState
    applied: HexapodState | None
    message: str


@dataclasses.dataclass(frozen=True)
class MoveRecord:
    """An offset that moved, or may have moved, M2: a correction APPLYING, APPLIED or UNCERTAIN.

    Attributes
    ----------
    sent : `float`
        When it was sent to ATAOS (``time.time``).
    answered : `float`
        When its state last changed: the acknowledgement (or the giving up), or the send while APPLYING.
    acked_tai : `float` or None
        ATAOS's stamp of the acknowledgement (TAI unix seconds, its clock); None unless APPLIED.
    settled : `float` or None
        When M2 was seen to have finished moving for it (`m2_moves`); None while that is not known.
    provisional : `bool`
        ``settled`` is only assumed (no move was reported in time); a move reported later replaces it.
    """

    triplet_key: str
    group_id: str
    state: CorrectionState
    sent: float
    answered: float
    acked_tai: float | None
    settled: float | None
    provisional: bool


def dump_state(state: HexapodState) -> str:
    """Serialise a hexapod state as the JSON list ``[x, y, z, u, v]``.

    Parameters
    ----------
    state : `HexapodState`
        The state (mm, mm, mm, deg, deg).
    """
    return json.dumps(state.as_array().tolist())


def load_state(text: str) -> HexapodState | None:
    """Inverse of `dump_state`; None for JSON ``null``.

    Parameters
    ----------
    text : `str`
        JSON list ``[x, y, z, u, v]`` or ``null``.
    """
    values = json.loads(text)
    return None if values is None else HexapodState.from_array(values)


def image_record(row: tuple[Any, ...]) -> ImageRecord:
    """Build an `ImageRecord` from a row of the images table.

    Parameters
    ----------
    row : `tuple`
        The row, columns in table order.
    """
    obsid, group_id, role, status, reason, triplet_key, info, created, updated = row
    info_dict = json.loads(info)
    return ImageRecord(
        obsid=obsid,
        group_id=group_id,
        role=Role(role) if role else None,
        status=ImageStatus(status),
        reason=reason,
        triplet_key=triplet_key,
        info=ImageInfo.from_dict(info_dict) if info_dict else None,
        created=created,
        updated=updated,
    )


def triplet_record(row: tuple[Any, ...]) -> TripletRecord:
    """Build a `TripletRecord` from a row of the triplets table.

    Parameters
    ----------
    row : `tuple`
        The row, columns in table order.
    """
    key, group_id, state, reason, source, triplet, result, attempts, _created, _updated = row
    return TripletRecord(
        key=key,
        group_id=group_id,
        state=TripletState(state),
        reason=reason,
        source=source,
        triplet=Triplet.from_dict(json.loads(triplet)),
        result=json.loads(result),
        attempts=int(attempts),
    )


def correction_record(row: tuple[Any, ...]) -> CorrectionRecord:
    """Build a `CorrectionRecord` from a row of the corrections table.

    Parameters
    ----------
    row : `tuple`
        The row, columns in table order.

    Raises
    ------
    InputError
        If the row has no raw values.
    """
    id_, triplet_key, group_id, epoch, state, raw, applied, message, _created, _updated = row
    raw_state = load_state(raw)
    if raw_state is None:
        raise InputError(f"correction {triplet_key!r} has no raw values", value=triplet_key)
    return CorrectionRecord(
        id=int(id_),
        triplet_key=triplet_key,
        group_id=group_id,
        epoch=int(epoch),
        state=CorrectionState(state),
        raw=raw_state,
        applied=load_state(applied),
        message=message,
    )
