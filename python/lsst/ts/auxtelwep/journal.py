"""The journal: a SQLite record of every image received, every triplet and every correction.

It is what makes "nothing lost, nothing twice" hold across a crash (a SIGKILL included):

- **images**: one row per OBSID, with its `ImageStatus` and the reason of a refusal. A second row for the
  same OBSID is impossible (primary key), which is the durable duplicate check.
- **triplets**: one row per `cadence.Triplet` (keyed by `cadence.Triplet.key`) with its `TripletState`;
  moves are checked by `cadence.check_transition`. ``attempts`` counts how often processing started, so a
  triplet that crashed the CSC repeatedly can be rejected instead of retried forever.
- **corrections**: one row per result (unique per triplet) with its `CorrectionState`. A correction is
  claimed for sending by one atomic ``UPDATE ... WHERE state IN (computed, failed)`` *before* the ATAOS
  command is written, so it can never be sent twice; a correction found ``APPLYING`` after a restart may or
  may not have been applied and becomes ``UNCERTAIN``: reported, never re-sent, and counted in the totals.
- **moves**: for each correction claimed, when it was sent, ATAOS's stamp of its acknowledgement, and when
  M2 was seen to have finished moving for it (``settled``, NULL until then, ``provisional`` when only
  assumed; `m2_moves`): images taken before that measure M2 as it was before, or moving. Corrections
  journaled before this table existed count as settled when acknowledged.
- **epochs**: each enable starts a new epoch; the totals of what was sent in it feed the limits.
  startClosedLoop does not (restarting the loop, after an error say, must not give it room for another
  ``max_total``): it only marks the loop's start (``meta``), before which no image is applied automatically.

Every write is its own transaction, committed before the method returns (WAL, ``synchronous=FULL``).
Times are unix seconds (``time.time``). The journal is used from one thread (the CSC's event loop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .cadence import Triplet, TripletState, check_transition
from .errors import ConfigurationError, InputError
from .instrument import HexapodState, Role
from .intake import ImageInfo
from .journal_records import (
    CorrectionRecord,
    CorrectionState,
    ImageRecord,
    ImageStatus,
    MoveRecord,
    TripletRecord,
    correction_record,
    dump_state,
    image_record,
    triplet_record,
)

__all__ = [
    "JOURNAL_FILE_NAME",
    "CorrectionRecord",
    "CorrectionState",
    "ImageRecord",
    "ImageStatus",
    "Journal",
    "MoveRecord",
    "TripletRecord",
]

#: File name of the journal inside the configured state directory.
JOURNAL_FILE_NAME = "auxtelwep_journal.sqlite3"
_SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    obsid TEXT PRIMARY KEY, group_id TEXT NOT NULL, role TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT NOT NULL, triplet_key TEXT NOT NULL, info TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS images_status ON images (status);
CREATE TABLE IF NOT EXISTS triplets (
    key TEXT PRIMARY KEY, group_id TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    source TEXT NOT NULL, triplet TEXT NOT NULL, result TEXT NOT NULL, attempts INTEGER NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS triplets_state ON triplets (state);
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, triplet_key TEXT NOT NULL UNIQUE, group_id TEXT NOT NULL,
    epoch INTEGER NOT NULL, state TEXT NOT NULL, raw TEXT NOT NULL, applied TEXT NOT NULL,
    message TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS epochs (id INTEGER PRIMARY KEY AUTOINCREMENT, reason TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS moves (
    correction_id INTEGER PRIMARY KEY REFERENCES corrections (id), sent REAL NOT NULL, acked_tai REAL,
    settled REAL, provisional INTEGER NOT NULL DEFAULT 0);
"""


class Journal:
    """The SQLite journal (see the module docstring).

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        The database file; created (with its directory) if missing.

    Raises
    ------
    ConfigurationError
        If the file cannot be opened or created, or holds another schema version.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
                self._db.execute(
                    "INSERT INTO epochs (reason, created) VALUES ('journal created', ?)", (time.time(),)
                )
            elif row[0] != _SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.path}: journal schema version {row[0]!r}, expected {_SCHEMA_VERSION!r}",
                    value=row[0],
                    allowed=_SCHEMA_VERSION,
                )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"{self.path}: cannot open the journal ({exc})", value=str(path)
            ) from exc

    def close(self) -> None:
        """Close the database (safe to call more than once)."""
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on exit, rolled back on any exception."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        with self._transaction() as db:
            return db.execute(sql, params).rowcount

    # --- images ------------------------------------------------------------------------------------------

    def add_image(
        self,
        obsid: str,
        *,
        status: ImageStatus,
        info: ImageInfo | None = None,
        group_id: str = "",
        role: Role | None = None,
        reason: str = "",
    ) -> bool:
        """Record a new image; return False (and change nothing) if ``obsid`` is already recorded.

        Parameters
        ----------
        obsid : `str`
            The OBSID.
        status : `ImageStatus`
            Its status.
        info : `ImageInfo`, optional
            Header values, if known.
        group_id : `str`, optional
            Its group, if known.
        role : `Role`, optional
            Its role, if known.
        reason : `str`, optional
            Why it was refused or ignored.
        """
        now = time.time()
        info_json = json.dumps(info.to_dict() if info is not None else {})
        count = self._write(
            "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?, '', ?, ?, ?)",
            (obsid, group_id, role.value if role else "", status.value, reason, info_json, now, now),
        )
        return count == 1

    def update_image(
        self,
        obsid: str,
        *,
        status: ImageStatus,
        info: ImageInfo | None = None,
        group_id: str | None = None,
        role: Role | None = None,
        reason: str = "",
        triplet_key: str = "",
    ) -> None:
        """Change an image's status (and the other fields given).

        Parameters
        ----------
        obsid : `str`
            The OBSID.
        status : `ImageStatus`
            New status.
        info : `ImageInfo`, optional
            New header values; None keeps them.
        group_id : `str`, optional
            New group; None keeps it.
        role : `Role`, optional
            New role; None keeps it.
        reason : `str`, optional
            Why; always written, so the default clears an earlier reason.
        triplet_key : `str`, optional
            Key of the triplet the image joined; "" keeps it.

        Raises
        ------
        InputError
            If ``obsid`` is not recorded.
        """
        sets = ["status = ?", "reason = ?", "updated = ?"]
        params: list[Any] = [status.value, reason, time.time()]
        for column, value in (
            ("info", None if info is None else json.dumps(info.to_dict())),
            ("group_id", group_id),
            ("role", None if role is None else role.value),
            ("triplet_key", triplet_key or None),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        if self._write(f"UPDATE images SET {', '.join(sets)} WHERE obsid = ?", (*params, obsid)) != 1:
            raise InputError(f"journal {self.path}: no image {obsid!r} to update", value=obsid)

    def image(self, obsid: str) -> ImageRecord | None:
        """Return the record of ``obsid`` or None.

        Parameters
        ----------
        obsid : `str`
            The OBSID.
        """
        row = self._db.execute("SELECT * FROM images WHERE obsid = ?", (obsid,)).fetchone()
        return None if row is None else image_record(row)

    def images(self, status: ImageStatus | None = None) -> list[ImageRecord]:
        """Return the images (with ``status``, if given), oldest first.

        Parameters
        ----------
        status : `ImageStatus`, optional
            Only images with this status; default all.
        """
        if status is None:
            rows = self._db.execute("SELECT * FROM images ORDER BY created, rowid").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM images WHERE status = ? ORDER BY created, rowid", (status.value,)
            ).fetchall()
        return [image_record(row) for row in rows]

    # --- triplets ----------------------------------------------------------------------------------------

    def add_triplet(
        self,
        triplet: Triplet,
        *,
        source: str,
        key: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> bool:
        """Record a COMPLETE triplet; return False if already recorded.

        A triplet of the camera's events marks its images IN_TRIPLET; one of runWEP leaves the images'
        status alone (the live intake may still be waiting for them).

        Parameters
        ----------
        triplet : `cadence.Triplet`
        source : `str`
            ``"events"`` or ``"runWEP"``.
        key : `str`, optional
            Journal key; default ``triplet.key`` (runWEP gives a unique one, so a re-run is a new result).
        overrides : `dict`, optional
            Pipeline option overrides to process it with (kept as ``result["overrides"]`` until done).
        """
        key = triplet.key if key is None else key
        now = time.time()
        result = json.dumps({"overrides": overrides} if overrides else {})
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO triplets VALUES (?, ?, ?, '', ?, ?, ?, 0, ?, ?)",
                (
                    key,
                    triplet.group_id,
                    TripletState.COMPLETE.value,
                    source,
                    json.dumps(triplet.to_dict()),
                    result,
                    now,
                    now,
                ),
            )
            added = cursor.rowcount == 1
            if added and source == "events":
                for image in triplet.images:
                    db.execute(
                        "UPDATE images SET status = ?, triplet_key = ?, updated = ? WHERE obsid = ?",
                        (ImageStatus.IN_TRIPLET.value, key, now, image.obsid),
                    )
        return added

    def set_triplet_state(
        self, key: str, state: TripletState, *, reason: str = "", result: dict[str, Any] | None = None
    ) -> TripletRecord:
        """Move triplet ``key`` to ``state`` (PROCESSING also counts an attempt); return the new record.

        Parameters
        ----------
        key : `str`
            Journal key of the triplet.
        state : `TripletState`
            New state.
        reason : `str`, optional
            Why; always written, so the default clears an earlier reason.
        result : `dict` [`str`, `object`], optional
            New result (JSON-ready); None keeps the current one.

        Raises
        ------
        InputError
            If ``key`` is not recorded.
        CadenceError
            If the move is illegal (`cadence.check_transition`).
        """
        record = self.triplet(key)
        if record is None:
            raise InputError(f"journal {self.path}: no triplet {key!r}", value=key)
        check_transition(record.state, state, key=key)
        attempts = record.attempts + (1 if state is TripletState.PROCESSING else 0)
        result_json = json.dumps(result if result is not None else record.result)
        self._write(
            "UPDATE triplets SET state = ?, reason = ?, result = ?, attempts = ?, updated = ? WHERE key = ?",
            (state.value, reason, result_json, attempts, time.time(), key),
        )
        return dataclasses.replace(
            record, state=state, reason=reason, attempts=attempts, result=json.loads(result_json)
        )

    def requeue_interrupted(self, reason: str) -> list[str]:
        """Put every PROCESSING triplet back to COMPLETE, not counting the attempt; return their keys.

        For work the CSC stopped on purpose (it left ENABLED): ``attempts`` is there to give up on a triplet
        that kills the CSC, which an operator's disable is not.

        Parameters
        ----------
        reason : `str`
            Reason recorded on each triplet put back.
        """
        keys = [record.key for record in self.triplets(TripletState.PROCESSING)]
        for key in keys:
            self._write(
                "UPDATE triplets SET state = ?, reason = ?, attempts = MAX(attempts - 1, 0), updated = ?"
                " WHERE key = ? AND state = ?",
                (TripletState.COMPLETE.value, reason, time.time(), key, TripletState.PROCESSING.value),
            )
        return keys

    def triplet(self, key: str) -> TripletRecord | None:
        """Return the record of triplet ``key`` or None.

        Parameters
        ----------
        key : `str`
            Journal key of the triplet.
        """
        row = self._db.execute("SELECT * FROM triplets WHERE key = ?", (key,)).fetchone()
        return None if row is None else triplet_record(row)

    def triplets(self, *states: TripletState) -> list[TripletRecord]:
        """Return the triplets in any of ``states`` (all if none given), oldest first.

        Parameters
        ----------
        *states : `TripletState`
            States to select.
        """
        rows = self._db.execute("SELECT * FROM triplets ORDER BY created, rowid").fetchall()
        records = [triplet_record(row) for row in rows]
        return [r for r in records if not states or r.state in states]

    # --- corrections and epochs --------------------------------------------------------------------------

    def add_correction(self, triplet_key: str, group_id: str, raw: HexapodState) -> CorrectionRecord:
        """Record the correction of a result (COMPUTED) in the current epoch; the other triplets' COMPUTED
        and FAILED ones are SUPERSEDED (only the newest result may be sent). Return the record (the existing
        one if this triplet already has one).

        Parameters
        ----------
        triplet_key : `str`
            Journal key of the triplet the result belongs to.
        group_id : `str`
            Its group.
        raw : `HexapodState`
            The correction as computed, before gains and limits (mm, mm, mm, deg, deg).
        """
        now = time.time()
        epoch = self.current_epoch()
        with self._transaction() as db:
            db.execute(
                "UPDATE corrections SET state = ?, updated = ? WHERE state IN (?, ?) AND triplet_key != ?",
                (
                    CorrectionState.SUPERSEDED.value,
                    now,
                    CorrectionState.COMPUTED.value,
                    CorrectionState.FAILED.value,
                    triplet_key,
                ),
            )
            db.execute(
                "INSERT OR IGNORE INTO corrections (triplet_key, group_id, epoch, state, raw, applied,"
                " message, created, updated) VALUES (?, ?, ?, ?, ?, 'null', '', ?, ?)",
                (triplet_key, group_id, epoch, CorrectionState.COMPUTED.value, dump_state(raw), now, now),
            )
        record = self.correction(triplet_key)
        if record is None:  # cannot happen: just inserted, or already there
            raise InputError(
                f"journal {self.path}: correction of {triplet_key!r} vanished", value=triplet_key
            )
        return record

    def claim_correction(self, triplet_key: str, applied: HexapodState) -> bool:
        """Atomically move a COMPUTED (or FAILED) correction to APPLYING with the values to send.

        It then counts in the current epoch, whatever the epoch it was computed in: the limits are on
        what is sent since the epoch began.

        Parameters
        ----------
        triplet_key : `str`
            Journal key of the triplet whose correction is sent.
        applied : `HexapodState`
            The offset about to be sent, after gains and limits (mm, mm, mm, deg, deg).

        Returns
        -------
        claimed : `bool`
            False if it is in any other state (being applied, applied, uncertain, superseded): do not send.
        """
        now = time.time()
        with self._transaction() as db:
            count = db.execute(
                "UPDATE corrections SET state = ?, applied = ?, updated = ?,"
                " epoch = (SELECT MAX(id) FROM epochs) WHERE triplet_key = ? AND state IN (?, ?)",
                (
                    CorrectionState.APPLYING.value,
                    dump_state(applied),
                    now,
                    triplet_key,
                    CorrectionState.COMPUTED.value,
                    CorrectionState.FAILED.value,
                ),
            ).rowcount
            if count == 1:
                db.execute(
                    "INSERT OR REPLACE INTO moves (correction_id, sent)"
                    " SELECT id, ? FROM corrections WHERE triplet_key = ?",
                    (now, triplet_key),
                )
        return count == 1

    def finish_correction(self, triplet_key: str, state: CorrectionState, *, message: str = "") -> None:
        """Record the outcome of an APPLYING correction (APPLIED, FAILED or UNCERTAIN).

        Parameters
        ----------
        triplet_key : `str`
            Journal key of the triplet whose correction was sent.
        state : `CorrectionState`
            The outcome.
        message : `str`, optional
            What happened (e.g. ATAOS's answer).

        Raises
        ------
        InputError
            If ``state`` is not an outcome, or the correction is not APPLYING.
        """
        outcomes = (CorrectionState.APPLIED, CorrectionState.FAILED, CorrectionState.UNCERTAIN)
        if state not in outcomes:
            raise InputError(
                f"state={state.name} is not an outcome of applying", value=state, allowed=outcomes
            )
        count = self._write(
            "UPDATE corrections SET state = ?, message = ?, updated = ? WHERE triplet_key = ? AND state = ?",
            (state.value, message, time.time(), triplet_key, CorrectionState.APPLYING.value),
        )
        if count != 1:
            current = self.correction(triplet_key)
            raise InputError(
                f"journal {self.path}: correction of {triplet_key!r} is "
                f"{'missing' if current is None else current.state.name}, not APPLYING",
                value=triplet_key,
            )

    def correction(self, triplet_key: str) -> CorrectionRecord | None:
        """Return the correction of triplet ``triplet_key`` or None.

        Parameters
        ----------
        triplet_key : `str`
            Journal key of the triplet.
        """
        row = self._db.execute("SELECT * FROM corrections WHERE triplet_key = ?", (triplet_key,)).fetchone()
        return None if row is None else correction_record(row)

    def corrections(self, *states: CorrectionState) -> list[CorrectionRecord]:
        """Return the corrections in any of ``states`` (all if none given), oldest first.

        Parameters
        ----------
        *states : `CorrectionState`
            States to select.
        """
        rows = self._db.execute("SELECT * FROM corrections ORDER BY id").fetchall()
        records = [correction_record(row) for row in rows]
        return [r for r in records if not states or r.state in states]

    def last_correction(self) -> CorrectionRecord | None:
        """Return the newest correction or None."""
        row = self._db.execute("SELECT * FROM corrections ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else correction_record(row)

    def moves(self, *, unsettled: bool = False) -> list[MoveRecord]:
        """The offsets that moved, or may have moved, M2 (APPLYING, APPLIED, UNCERTAIN), oldest sent first.

        Parameters
        ----------
        unsettled : `bool`, optional
            Only those whose move is not known to have finished (not settled, or only provisionally).
        """
        condition = "AND m.correction_id IS NOT NULL AND (m.settled IS NULL OR m.provisional)"
        return self._moves(condition if unsettled else "")

    def last_move(self) -> MoveRecord | None:
        """The offset sent last that moved, or may have moved, M2 (see `moves`); None if there is none."""
        moves = self._moves("", newest_only=True)
        return moves[0] if moves else None

    def _moves(self, condition: str, *, newest_only: bool = False) -> list[MoveRecord]:
        states = (CorrectionState.APPLYING, CorrectionState.APPLIED, CorrectionState.UNCERTAIN)
        order = "DESC LIMIT 1" if newest_only else ""
        rows = self._db.execute(
            "SELECT c.triplet_key, c.group_id, c.state, COALESCE(m.sent, c.updated), c.updated, m.acked_tai,"
            # A correction journaled before the moves table existed settled when it was answered.
            " CASE WHEN m.correction_id IS NULL THEN c.updated ELSE m.settled END, COALESCE(m.provisional, 0)"
            " FROM corrections c LEFT JOIN moves m ON m.correction_id = c.id"
            f" WHERE c.state IN (?, ?, ?) {condition}"
            f" ORDER BY COALESCE(m.sent, c.updated) {order}",
            tuple(s.value for s in states),
        ).fetchall()
        return [
            MoveRecord(key, group, CorrectionState(state), float(sent), float(answer), acked, done, bool(pr))
            for key, group, state, sent, answer, acked, done, pr in rows
        ]

    def mark_acked(self, triplet_key: str, stamp: float) -> None:
        """Record ATAOS's stamp of the acknowledgement of the offset of ``triplet_key`` (TAI, its clock).

        Parameters
        ----------
        triplet_key : `str`
            Journal key of the triplet whose offset was acknowledged.
        stamp : `float`
            The acknowledgement's ``private_sndStamp``.
        """
        self._update_move(triplet_key, "acked_tai = ?", (float(stamp),))

    def mark_settled(self, triplet_key: str, when: float, *, provisional: bool = False) -> None:
        """Record when M2 was seen to have finished moving for the correction of ``triplet_key``.

        Parameters
        ----------
        triplet_key : `str`
            Journal key of the triplet whose offset moved M2.
        when : `float`
            When the move was seen to end (``time.time``).
        provisional : `bool`, optional
            Only assumed (no move reported in time): a move reported later replaces it.

        Raises
        ------
        InputError
            If that correction was never sent.
        """
        self._update_move(triplet_key, "settled = ?, provisional = ?", (float(when), int(provisional)))

    def _update_move(self, triplet_key: str, assignments: str, values: tuple[Any, ...]) -> None:
        count = self._write(
            f"UPDATE moves SET {assignments} WHERE correction_id = "
            "(SELECT id FROM corrections WHERE triplet_key = ?)",
            (*values, triplet_key),
        )
        if count != 1:
            raise InputError(
                f"journal {self.path}: no offset was sent for {triplet_key!r}", value=triplet_key
            )

    def new_epoch(self, reason: str) -> int:
        """Start a new epoch (totals restart from zero: only at enable); return its number.

        Parameters
        ----------
        reason : `str`
            Why the epoch starts, recorded with it.
        """
        self._write("INSERT INTO epochs (reason, created) VALUES (?, ?)", (reason, time.time()))
        return self.current_epoch()

    def current_epoch(self) -> int:
        """Return the number of the current epoch."""
        return int(self._db.execute("SELECT MAX(id) FROM epochs").fetchone()[0])

    def epoch_start_time(self) -> float:
        """When the current epoch started (`time.time`): the last enable."""
        return float(self._db.execute("SELECT created FROM epochs ORDER BY id DESC LIMIT 1").fetchone()[0])

    def mark_loop_start(self) -> float:
        """Record that the closed loop starts now (not a new epoch: the totals go on); return the time."""
        now = time.time()
        self._write("INSERT OR REPLACE INTO meta VALUES ('loop_started', ?)", (repr(now),))
        return now

    def loop_start_time(self) -> float:
        """When the closed loop last started, or the current epoch if later (`time.time`).

        The later of the two: a loop start journaled before the CSC's last enable belongs to a loop that
        enable ended (the loop is IDLE after it).
        """
        row = self._db.execute("SELECT value FROM meta WHERE key = 'loop_started'").fetchone()
        started = self.epoch_start_time()
        return started if row is None else max(started, float(row[0]))

    def total_applied(self, epoch: int | None = None) -> NDArray[np.float64]:
        """Sum of the corrections sent in ``epoch`` (default: current, i.e. since the last enable) that were
        or may have been applied.

        Parameters
        ----------
        epoch : `int`, optional
            Epoch number; default the current one.

        Returns
        -------
        total : `numpy.ndarray`, shape (5,)
            ``[x, y, z, u, v]`` in mm, mm, mm, deg, deg (APPLIED, APPLYING and UNCERTAIN count).
        """
        epoch = self.current_epoch() if epoch is None else epoch
        counted = (CorrectionState.APPLIED, CorrectionState.APPLYING, CorrectionState.UNCERTAIN)
        total = np.zeros(5)
        for record in self.corrections(*counted):
            if record.epoch == epoch and record.applied is not None:
                total += record.applied.as_array()
        return total
