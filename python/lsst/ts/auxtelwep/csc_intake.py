"""The CSC's intake: camera events -> raw file -> header -> sequencer -> journal -> triplets to process.

Flow for one image
------------------
1. ATCamera ``endReadout`` announces ``imageName`` with ``groupId``/``imageType``/``reason`` in
   ``additionalKeys``/``additionalValues``. A non-wavefront ``imageType`` is journaled IGNORED; otherwise the
   image is journaled ANNOUNCED and given ``oods_timeout_s`` for ATOODS to report it.
2. ATOODS ``imageInOODS`` (``statusCode`` 0) says the file is ingested: the raw is looked for under the data
   root (`intake.RawLocator`), its primary header read, and the image handed to the `cadence.Sequencer`.
   A raw not visible yet is looked for again at each housekeeping pass for ``oods_timeout_s`` (a shared
   file system can lag the event). A non-zero ``statusCode`` makes the image LOST (reported), and a later
   ``imageInOODS`` with 0 (ATOODS retried) still brings it in. If ATOODS stays silent past the timeout, the
   file is looked for anyway; if it is not there either, the image is LOST (reported). A name the data root
   has no place for is rejected once.
3. The sequencer's verdict is journaled (QUEUED, REJECTED...) and published (``imageReceived``,
   ``cadenceWarning``); complete triplets are journaled and handed to the sink to be processed.

Samples replayed as late-joiner history for images already journaled are skipped silently; ``imageInOODS``
again, live, for an image already handled is a duplicate and reported. ``endReadout`` for a journaled image
is ignored (ATOODS may be heard first). An image journaled only because runWEP named it (NAMED) is still
taken when its events come. Times are `time.monotonic` seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Protocol

from .cadence import CadenceLimits, RejectionKind, Sequencer, Triplet, TripletState, WarningKind
from .errors import AuxTelWepError, InputError, RawFormatError
from .instrument import Role
from .intake import ImageInfo, RawLocator, parse_additional, read_image_info
from .journal import ImageStatus, Journal

__all__ = ["ROLE_NAMES", "ImageIntake", "IntakeSink", "kind_name"]

log = logging.getLogger(__name__)

#: Role names written in ``imageReceived.role``.
ROLE_NAMES = {Role.INTRA: "intra", Role.EXTRA: "extra", Role.INFOCUS: "inFocus"}
#: Statuses in which ``imageInOODS`` is awaited (rather than a duplicate).
_AWAITED = (ImageStatus.ANNOUNCED, ImageStatus.LOST, ImageStatus.NAMED)
_KIND_NAMES = {WarningKind.POINTING_MOVED: "pointingChanged", WarningKind.MISSING_PARTNER: "timeout"}


def kind_name(kind: WarningKind | RejectionKind) -> str:
    """Name of a warning or rejection kind in ``cadenceWarning.kind`` (camelCase: ``outOfOrder``...).

    Parameters
    ----------
    kind : `WarningKind` or `RejectionKind`
        The kind.
    """
    if kind in _KIND_NAMES:
        return _KIND_NAMES[kind]  # type: ignore[index]
    head, *rest = kind.value.split("_")
    return head + "".join(word.capitalize() for word in rest)


class IntakeSink(Protocol):
    """What the intake needs from the CSC."""

    def image_received(
        self, obsid: str, *, group_id: str, role: Role | None, status: str, reason: str
    ) -> None:
        """Publish ``imageReceived`` (status: accepted, ignored or rejected).

        Parameters
        ----------
        obsid : `str`
            Observation id.
        group_id : `str`
            Group of the image ("" if unknown).
        role : `Role` or None
            Role of the image; None if not known.
        status : `str`
            ``"accepted"``, ``"ignored"`` or ``"rejected"``.
        reason : `str`
            Why it was ignored or rejected ("" if accepted).
        """

    def cadence_warning(self, kind: str, *, group_id: str, obsid: str, message: str) -> None:
        """Publish ``cadenceWarning``.

        Parameters
        ----------
        kind : `str`
            Kind of warning (`kind_name`).
        group_id : `str`
            Group concerned ("" if none).
        obsid : `str`
            Image concerned ("" if none).
        message : `str`
            Description for operators.
        """

    def image_queued(self, info: ImageInfo, role: Role, group_id: str) -> None:
        """An image joined group ``group_id`` (work on it may start before its triplet is complete).

        Parameters
        ----------
        info : `ImageInfo`
            The image's header values and path.
        role : `Role`
            Its role in the triplet.
        group_id : `str`
            The group (the header's GROUPID, or one made by the sequencer).
        """

    def triplet_ready(self, key: str) -> None:
        """A journaled COMPLETE triplet is ready to process.

        Parameters
        ----------
        key : `str`
            Journal key of the triplet.
        """

    def triplet_rejected(self, triplet: Triplet, reason: str) -> None:
        """Publish ``rejectedWavefrontError`` for a triplet refused before processing.

        Parameters
        ----------
        triplet : `Triplet`
            The triplet.
        reason : `str`
            Why it was refused.
        """

    def data_root_lost(self, message: str) -> None:
        """The data root became unreadable (a lost dependency: FAULT).

        Parameters
        ----------
        message : `str`
            What went wrong, for the ``errorCode`` report.
        """


class ImageIntake:
    """Turn camera events into journaled triplets (see the module docstring).

    Parameters
    ----------
    locator : `intake.RawLocator`
    journal : `journal.Journal`
    limits : `cadence.CadenceLimits`
    oods_timeout_s : `float`
        Time after ``endReadout`` to wait for ``imageInOODS`` before looking for the file, seconds.
    sink : `IntakeSink`
    clock : callable, optional
        Monotonic clock, seconds (tests pass a fake).
    camera_angle : callable, optional
        The camera angle at an event's time (TAI unix seconds; None: now), from the mount
        (`instrument.camera_angle_from_mount`), or None when unknown; read when an image's readout ends and
        kept as its ``camera_angle_deg`` (over the header's).
    log : `logging.Logger`, optional
        Where the intake's warnings go (the CSC's, so that they reach ``logMessage``).
    """

    def __init__(
        self,
        *,
        locator: RawLocator,
        journal: Journal,
        limits: CadenceLimits,
        oods_timeout_s: float,
        sink: IntakeSink,
        clock: Callable[[], float] = time.monotonic,
        camera_angle: Callable[[float | None], float | None] = lambda event_tai: None,
        log: logging.Logger = log,
    ) -> None:
        self.locator = locator
        self.journal = journal
        self.limits = limits
        self.oods_timeout_s = oods_timeout_s
        self.sink = sink
        self.clock = clock
        self.camera_angle = camera_angle
        self.log = log
        # The mount's camera angle when each image was read out (live events only: a replayed one is old).
        self._angles: dict[str, float | None] = {}
        self._angle_known: bool | None = None  # of the last image ingested (None: none yet)
        self.sequencer = Sequencer(limits=limits)
        self._deadlines: dict[str, float] = {}
        # Images ATOODS reported whose raw was not visible yet, with the time to give up on them.
        self._awaiting_raw: dict[str, float] = {}

    def recover(self) -> dict[str, int]:
        """Rebuild the in-memory state from the journal after a (re)start; return counts per kind.

        Queued images go back to the sequencer (their timeout restarts now); announced images are looked
        for at the next `housekeeping` (and lost ones may still come); every other journaled OBSID counts
        as seen.
        """
        queued = self.journal.images(ImageStatus.QUEUED)
        # Only images the sequencer had: those still awaited (announced, lost, named by runWEP) must come in.
        unseen = {r.obsid for r in queued}
        for status in _AWAITED:
            unseen |= {r.obsid for r in self.journal.images(status)}
        self.sequencer.mark_seen(r.obsid for r in self.journal.images() if r.obsid not in unseen)
        now = self.clock()
        for record in queued:
            if record.info is not None:
                self._accept(record.obsid, record.info, replay=True)
        waiting = self.journal.images(ImageStatus.ANNOUNCED)
        for record in waiting:
            self._deadlines[record.obsid] = now
        for record in waiting + self.journal.images(ImageStatus.LOST):
            if record.info is not None and record.info.camera_angle_deg is not None:
                self._angles[record.obsid] = record.info.camera_angle_deg  # noted at its readout
        return {"queued": len(queued), "announced": len(waiting)}

    # --- events ----------------------------------------------------------------------------------------

    def on_end_readout(
        self,
        image_name: str,
        *,
        additional_keys: str,
        additional_values: str,
        historical: bool,
        event_tai: float | None = None,
    ) -> None:
        """Handle ATCamera ``endReadout`` (one for an image already journaled is ignored: ATOODS may
        have been heard first).

        Parameters
        ----------
        image_name : `str`
            ``imageName``: the OBSID.
        additional_keys, additional_values : `str`
            ``additionalKeys`` and ``additionalValues`` (`intake.parse_additional`); ``groupId`` and
            ``imageType``
            are used.
        historical : `bool`
            True for an event written before the CSC started: the camera angle now is not the image's.
        event_tai : `float`, optional
            Time the event was sent, TAI unix seconds, for the mount's camera angle.
        """
        record = self.journal.image(image_name)
        if record is not None and record.status is not ImageStatus.NAMED:
            self.log.debug("endReadout for %s, already journaled", image_name)
            return
        try:
            extra = parse_additional(additional_keys, additional_values)
        except InputError as exc:
            self.log.warning("endReadout %s: %s; using no additional keys", image_name, exc)
            extra = {}
        group_id = extra.get("groupid", "")
        image_type = extra.get("imagetype", "").upper()
        types = self.limits.wavefront_image_types
        if image_type and types and image_type not in types:
            reason = f"imageType={image_type!r} is not a wavefront image type (one of {list(types)})"
            self._record(image_name, ImageStatus.IGNORED, group_id=group_id, reason=reason)
            self.sink.image_received(
                image_name, group_id=group_id, role=None, status="ignored", reason=reason
            )
            return
        self._record(image_name, ImageStatus.ANNOUNCED, group_id=group_id)
        self._deadlines[image_name] = self.clock() + self.oods_timeout_s
        if not historical:
            self._note_angle(image_name, event_tai)

    def on_image_in_oods(
        self,
        obsid: str,
        *,
        status_code: int,
        description: str,
        historical: bool,
        event_tai: float | None = None,
    ) -> None:
        """Handle ATOODS ``imageInOODS``.

        Parameters
        ----------
        obsid : `str`
            The OBSID.
        status_code : `int`
            ``statusCode``: 0 if the raw was ingested.
        description : `str`
            ``description``, quoted when the ingestion failed.
        historical : `bool`
            True for an event written before the CSC started: no camera angle is noted and a repeat is not
            reported as a duplicate.
        event_tai : `float`, optional
            Time the event was sent, TAI unix seconds, for the mount's camera angle if no ``endReadout`` was
            heard.
        """
        record = self.journal.image(obsid)
        if record is not None and record.status is ImageStatus.IGNORED:
            return  # a bias, flat...: announced by endReadout, nothing to do
        if record is not None and record.status not in _AWAITED:
            if not historical:
                self._duplicate(
                    obsid, record.group_id, f"imageInOODS again for {obsid} ({record.status.value})"
                )
            return
        if record is None or record.status is ImageStatus.NAMED:
            self._record(obsid, ImageStatus.ANNOUNCED)
        if not historical and obsid not in self._angles:  # no endReadout heard: the nearest time there is
            self._note_angle(obsid, event_tai)
        if status_code != 0:
            self._lose(
                obsid,
                "",
                f"ATOODS could not ingest {obsid}: statusCode={status_code} ({description}); a later "
                "imageInOODS for it is still taken",
            )
            return
        self.ingest(obsid)

    def ingest(self, obsid: str) -> None:
        """Find raw ``obsid``, read its header and hand it to the sequencer (it must be journaled).

        Parameters
        ----------
        obsid : `str`
            The OBSID.
        """
        self._deadlines.pop(obsid, None)
        try:
            path = self.locator.find(obsid)
        except InputError as exc:
            self._reject(obsid, "", str(exc))
            return
        if path is None:
            try:
                self.locator.check_readable()
            except AuxTelWepError as exc:
                self.sink.data_root_lost(str(exc))
                return
            if obsid not in self._awaiting_raw:
                self.log.info("%s: no raw yet; looking again for %g s", obsid, self.oods_timeout_s)
                self._awaiting_raw[obsid] = self.clock() + self.oods_timeout_s
                return
            del self._awaiting_raw[obsid]
            where = ", ".join(str(p) for p in self.locator.candidates(obsid))
            self._lose(
                obsid, "", f"{obsid} was announced but no raw is at {where} ({self.oods_timeout_s:g} s on)"
            )
            return
        self._awaiting_raw.pop(obsid, None)
        try:
            info = read_image_info(path)
        except RawFormatError as exc:
            self._reject(obsid, "", f"unreadable raw: {exc}")
            return
        except Exception as exc:  # last resort: an image the intake cannot read is reported, never lost
            self.log.exception("unexpected error reading the header of %s", path)
            self._reject(obsid, "", f"unreadable raw: {path}: unexpected {type(exc).__name__}: {exc}")
            return
        if info.obsid != obsid:
            self._reject(obsid, info.group_id, f"{path} has OBSID={info.obsid!r}, expected {obsid!r}")
            return
        self._accept(obsid, self._with_camera_angle(info), replay=False)

    def _note_angle(self, obsid: str, event_tai: float | None) -> None:
        """Keep the mount's camera angle at an image's readout, in memory and journaled: a restart before
        its raw is read must not lose it (the raw does not carry it)."""
        angle = self.camera_angle(event_tai)
        self._angles[obsid] = angle
        record = self.journal.image(obsid)
        if angle is not None and record is not None and record.info is None:
            info = ImageInfo(obsid=obsid, camera_angle_deg=angle)  # the header's fields come at ingest
            self.journal.update_image(obsid, status=record.status, info=info)

    def _with_camera_angle(self, info: ImageInfo) -> ImageInfo:
        """``info`` with the mount's camera angle at its readout, which real raws do not carry."""
        angle = self._angles.pop(info.obsid, None)
        if angle is not None:
            if (
                info.camera_angle_deg is not None
                and abs((angle - info.camera_angle_deg + 180) % 360 - 180) > 1
            ):
                self.log.warning(
                    f"{info.obsid}: the mount's camera angle {angle:.2f} deg disagrees with header "
                    f"CAMANGLE={info.camera_angle_deg:.2f}; the mount's is used"
                )
            info = dataclasses.replace(info, camera_angle_deg=angle)
        known = info.camera_angle_deg is not None
        if known != self._angle_known:  # said when it changes, not for every image
            if not known:
                self.log.warning(
                    f"{info.obsid}: camera angle unknown (no fresh ATMCS mount telemetry at its readout, no "
                    "CAMANGLE in its header): its triplet, and those after it until the angle is known "
                    "again, solve focus only"
                )
            elif self._angle_known is False:
                self.log.info(f"{info.obsid}: camera angle known again ({info.camera_angle_deg:.2f} deg)")
            self._angle_known = known
        return info

    def housekeeping(self) -> None:
        """Report groups whose partners never came; look for announced images ATOODS never reported."""
        now = self.clock()
        for expired in self.sequencer.expire(now_s=now):
            for obsid in expired.obsids:
                self.journal.update_image(obsid, status=ImageStatus.EXPIRED, reason=expired.message)
            self.log.warning(expired.message)
            self.sink.cadence_warning(
                kind_name(WarningKind.MISSING_PARTNER),
                group_id=expired.group_id,
                obsid=expired.obsids[0],
                message=expired.message,
            )
        for obsid, deadline in list(self._awaiting_raw.items()):
            record = self.journal.image(obsid)
            if record is None or record.status is not ImageStatus.ANNOUNCED:
                self._awaiting_raw.pop(obsid, None)
            elif now >= deadline or self.locator.find(obsid) is not None:
                self.ingest(obsid)  # the raw, or the verdict that it never came
        for obsid, deadline in list(self._deadlines.items()):
            if now < deadline:
                continue
            record = self.journal.image(obsid)
            if record is None or record.status is not ImageStatus.ANNOUNCED:
                self._deadlines.pop(obsid, None)
                continue
            try:
                found = self.locator.find(obsid) is not None
            except InputError as exc:  # a name the data root has no place for
                self._deadlines.pop(obsid, None)
                self._reject(obsid, record.group_id, str(exc))
                continue
            if found:
                self.log.warning(
                    "%s: no imageInOODS within %g s, but the raw is there: using it",
                    obsid,
                    self.oods_timeout_s,
                )
                self.ingest(obsid)
                continue
            self._deadlines.pop(obsid, None)
            self._lose(
                obsid,
                record.group_id,
                f"no imageInOODS within {self.oods_timeout_s:g} s of endReadout and no raw in the data root",
            )

    # --- helpers ---------------------------------------------------------------------------------------

    def _record(self, obsid: str, status: ImageStatus, *, group_id: str = "", reason: str = "") -> None:
        """Journal an image the camera's events brought (first seen now, or before only through runWEP)."""
        if not self.journal.add_image(obsid, status=status, group_id=group_id, reason=reason):
            self.journal.update_image(obsid, status=status, group_id=group_id, reason=reason)

    def _duplicate(self, obsid: str, group_id: str, message: str) -> None:
        self.log.warning(message)
        self.sink.cadence_warning(
            kind_name(RejectionKind.DUPLICATE), group_id=group_id, obsid=obsid, message=message
        )

    def _reject(self, obsid: str, group_id: str, reason: str) -> None:
        self.log.warning("rejected %s: %s", obsid, reason)
        self._angles.pop(obsid, None)
        self.journal.update_image(obsid, status=ImageStatus.REJECTED, reason=reason)
        self.sink.image_received(obsid, group_id=group_id, role=None, status="rejected", reason=reason)

    def _lose(self, obsid: str, group_id: str, reason: str) -> None:
        """Report an image not (yet) to be had; unlike a rejection, a later imageInOODS may bring it."""
        self.log.warning("lost %s: %s", obsid, reason)
        self.journal.update_image(obsid, status=ImageStatus.LOST, reason=reason)
        self.sink.image_received(obsid, group_id=group_id, role=None, status="rejected", reason=reason)

    def _accept(self, obsid: str, info: ImageInfo, *, replay: bool) -> None:
        outcome = self.sequencer.add(info, now_s=self.clock(), replay=replay)
        if outcome.rejection is not None:
            rejection = outcome.rejection
            self.journal.update_image(obsid, status=ImageStatus.REJECTED, info=info, reason=rejection.message)
            if rejection.kind in (RejectionKind.DUPLICATE, RejectionKind.OUT_OF_ORDER):
                self.sink.cadence_warning(
                    kind_name(rejection.kind),
                    group_id=rejection.group_id,
                    obsid=obsid,
                    message=rejection.message,
                )
            self.log.warning("rejected %s: %s", obsid, rejection.message)
            self.sink.image_received(
                obsid, group_id=rejection.group_id, role=None, status="rejected", reason=rejection.message
            )
            return
        role = outcome.role
        if role is Role.INFOCUS and not self.limits.require_infocus:
            reason = "in-focus image not needed (cadence.require_infocus is false)"
            self.journal.update_image(obsid, status=ImageStatus.IGNORED, info=info, role=role, reason=reason)
            self.sink.image_received(
                obsid, group_id=info.group_id, role=role, status="ignored", reason=reason
            )
            return
        self.journal.update_image(
            obsid, status=ImageStatus.QUEUED, info=info, role=role, group_id=outcome.group_id
        )
        if not replay:
            self.sink.image_received(
                obsid, group_id=outcome.group_id, role=role, status="accepted", reason=""
            )
            self.sink.image_queued(info, role, outcome.group_id)
        for warning in outcome.warnings:
            self.log.warning(warning.message)
            self.sink.cadence_warning(
                kind_name(warning.kind),
                group_id=warning.group_id,
                obsid=warning.obsids[0],
                message=warning.message,
            )
        for triplet in outcome.triplets:
            if self.journal.add_triplet(triplet, source="events"):
                self.sink.triplet_ready(triplet.key)
        for refused in outcome.triplet_rejections:
            self.journal.add_triplet(refused.triplet, source="events")
            self.journal.set_triplet_state(refused.triplet.key, TripletState.REJECTED, reason=refused.message)
            self.log.warning(refused.message)
            self.sink.triplet_rejected(refused.triplet, refused.message)
