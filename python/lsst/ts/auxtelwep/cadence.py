"""The observing sequence: classify each image, group triplets, check order and pointing.

A wavefront measurement needs an intra-focal image, an extra-focal image and (by default) an in-focus
image of the same field, taken in the recommended interleaved order::

    intra #1, extra #1, in-focus #1, intra #2, extra #2, in-focus #2, ...

Rules, stated once
------------------
- **Role.** An image's role (`instrument.Role`) comes from its ``REASON`` header: ``INTRA``, ``EXTRA`` or
  ``INFOCUS``, optionally followed by ``_<anything>`` (the ops scripts write ``INTRA_<reason>``). When
  ``FOCUSZ`` (hexapod focus offset, mm) is near a nominal position (+0.8 intra, -0.8011 extra, 0 in focus,
  within ``focus_tolerance_mm``) it must agree with ``REASON``; without a usable ``REASON`` it decides alone.
  An image whose role cannot be told, or whose ``IMGTYPE`` is not a wavefront type, is rejected.
- **Groups.** Images are grouped by ``GROUPID`` within one ``DAYOBS``: images of different nights never
  share a group, even when their ``GROUPID``s coincide (a group is one night's sequence). Without
  ``GROUPID``, an image joins the most recent group without ``GROUPID`` of its ``DAYOBS`` whose last image
  came less than ``group_window_s`` before and whose pointing is within ``pointing_tolerance_deg``;
  otherwise it opens a new group named ``auto-<obsid>``.
- **Order.** Within a group, two consecutive images of the same role make a *blocked* sequence; an image
  whose role is not the next one of the cycle (intra, extra, in-focus) is *out of order*. Both give a
  warning (once per group and kind) with the ``"warn"`` policy, or reject the image with ``"reject"``.
- **Pairing.** Queued images are paired first in, first out per role: the k-th intra of a group goes with
  its k-th extra (and k-th in-focus). For LATISS the smaller ``FOCUSZ`` is extra: a triplet whose intra has
  the smaller ``FOCUSZ`` is rejected. A pointing change larger than ``pointing_tolerance_deg`` between the
  in-focus and a defocal image gives a warning.
- **Duplicates and timeouts.** An OBSID seen before is rejected. Images still waiting for a partner
  ``partner_timeout_s`` after their group's last activity are reported by `Sequencer.expire` and dropped.

Times are seconds on one caller-chosen clock (the CSC uses `time.monotonic`), angles degrees.
The sequencer is pure bookkeeping: no I/O, no SAL, no clock of its own.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal

from .errors import CadenceError, InputError
from .instrument import EXTRA_FOCUS_Z_MM, INTRA_FOCUS_Z_MM, Role
from .intake import ImageInfo
from .triplet import Triplet, TripletState, check_transition

if TYPE_CHECKING:
    from .exposure import Exposure

__all__ = [
    "ROLE_LABELS",
    "AddOutcome",
    "CadenceLimits",
    "CadenceWarning",
    "ExpiredGroup",
    "RejectedImageError",
    "Rejection",
    "RejectionKind",
    "Sequencer",
    "Triplet",
    "TripletRejection",
    "TripletState",
    "WarningKind",
    "angular_separation_deg",
    "check_roles",
    "check_transition",
    "classify",
    "stated_role",
    "swapped_focus_problem",
]

#: Cycle of roles in the recommended interleaved order.
ROLE_CYCLE = (Role.INTRA, Role.EXTRA, Role.INFOCUS)
#: Cap on the OBSIDs remembered for duplicate detection (a night is a few hundred images).
_MAX_SEEN = 100_000
_REASON_RE = re.compile(r"^\s*(INTRA|EXTRA|INFOCUS|IN-FOCUS|IN_FOCUS)(?:[_\-\s].*)?$", re.IGNORECASE)
_REASON_ROLE = {"INTRA": Role.INTRA, "EXTRA": Role.EXTRA}


class RejectionKind(enum.Enum):
    """Why an image (or a triplet) was refused."""

    DUPLICATE = "duplicate"  # the OBSID was seen before
    UNKNOWN_ROLE = "unknown_role"  # neither REASON nor FOCUSZ tells intra, extra or in-focus
    ROLE_CONFLICT = "role_conflict"  # REASON and FOCUSZ disagree
    NOT_WAVEFRONT = "not_wavefront"  # IMGTYPE is not one of the wavefront types (bias, flat...)
    OUT_OF_ORDER = "out_of_order"  # order policy "reject" and the image breaks the interleaved order
    SWAPPED_FOCUS = "swapped_focus"  # the "intra" image has the smaller FOCUSZ
    BAD_DATA = "bad_data"  # unreadable raw or pipeline error (used by the CSC)
    MISSING_PARTNER = "missing_partner"  # the partner never came within the timeout


class WarningKind(enum.Enum):
    """A cadence problem that does not stop processing."""

    BLOCKED = "blocked"  # two consecutive images of the same role in a group
    OUT_OF_ORDER = "out_of_order"  # a role that is not the next of the interleaved cycle
    POINTING_MOVED = "pointing_moved"  # in-focus and defocal pointings differ more than the tolerance
    MISSING_PARTNER = "missing_partner"  # images dropped after the partner timeout


@dataclasses.dataclass(frozen=True)
class CadenceLimits:
    """Cadence rules (mirrors the ``cadence`` section of the CSC configuration).

    Attributes
    ----------
    pointing_tolerance_deg : `float`
        Largest pointing change between in-focus and defocal images without a warning, degrees.
    partner_timeout_s : `float`
        Time after a group's last image before its unpaired images are reported, seconds.
    group_window_s : `float`
        Largest gap between images grouped without ``GROUPID``, seconds.
    focus_tolerance_mm : `float`
        Distance from a nominal ``FOCUSZ`` within which ``FOCUSZ`` tells the role, mm.
    order_policy : ``"warn"`` or ``"reject"``
        What to do with blocked or out-of-order images.
    require_infocus : `bool`
        If False a triplet is complete with intra and extra, and in-focus images are not used.
    wavefront_image_types : `tuple` of `str`
        Accepted ``IMGTYPE`` values (upper case); empty accepts all.
    """

    pointing_tolerance_deg: float = 0.05
    partner_timeout_s: float = 300.0
    group_window_s: float = 180.0
    focus_tolerance_mm: float = 0.2
    order_policy: Literal["warn", "reject"] = "warn"
    require_infocus: bool = True
    wavefront_image_types: tuple[str, ...] = ("CWFS", "ENGTEST", "ACQ", "OBJECT", "SCIENCE", "FOCUS")


def angular_separation_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two ``(ra, dec)`` pointings, degrees (haversine: exact when small).

    Parameters
    ----------
    a, b : `tuple` of `float`
        ``(ra, dec)`` of each pointing, degrees.

    Returns
    -------
    separation_deg : `float`
        Their angular distance, degrees.
    """
    ra1, dec1, ra2, dec2 = map(math.radians, (*a, *b))
    h = math.sin((dec2 - dec1) / 2) ** 2 + math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


class RejectedImageError(CadenceError):
    """An image refused by the cadence rules; ``kind`` is a `RejectionKind`."""

    def __init__(self, message: str, *, kind: RejectionKind) -> None:
        super().__init__(message)
        self.kind = kind


def _role_from_focus(focus_z_mm: float | None, tolerance_mm: float) -> Role | None:
    if focus_z_mm is None:
        return None
    for role, nominal in (
        (Role.INTRA, INTRA_FOCUS_Z_MM),
        (Role.EXTRA, EXTRA_FOCUS_Z_MM),
        (Role.INFOCUS, 0.0),
    ):
        if abs(focus_z_mm - nominal) <= tolerance_mm:
            return role
    return None


def stated_role(info: ImageInfo, *, focus_tolerance_mm: float) -> Role | None:
    """The role an image's header states (``REASON``, else ``FOCUSZ``), or None if it states none.

    Parameters
    ----------
    info : `ImageInfo`
        The image's header values.
    focus_tolerance_mm : `float`
        How far ``FOCUSZ`` may be from a role's nominal focus offset and still name it, mm.

    Returns
    -------
    role : `Role` or `None`
        The stated role, or `None`.

    Raises
    ------
    RejectedImageError
        ``ROLE_CONFLICT`` if ``REASON`` and ``FOCUSZ`` name different roles.
    """
    match = _REASON_RE.match(info.reason)
    by_reason = None if match is None else _REASON_ROLE.get(match.group(1).upper(), Role.INFOCUS)
    by_focus = _role_from_focus(info.focus_z_mm, focus_tolerance_mm)
    if by_reason is not None and by_focus is not None and by_reason is not by_focus:
        raise RejectedImageError(
            f"{info.obsid}: REASON={info.reason!r} says {by_reason.value} but FOCUSZ={info.focus_z_mm} mm "
            f"says {by_focus.value} (intra {INTRA_FOCUS_Z_MM}, extra {EXTRA_FOCUS_Z_MM:.4f}, "
            f"tolerance {focus_tolerance_mm} mm)",
            kind=RejectionKind.ROLE_CONFLICT,
        )
    return by_reason or by_focus


def classify(info: ImageInfo, *, limits: CadenceLimits) -> Role:
    """Return the role of an image by the rules of the module docstring.

    Parameters
    ----------
    info : `ImageInfo`
        The image's header values.
    limits : `CadenceLimits`
        Accepted image types and the focus tolerance.

    Returns
    -------
    role : `Role`
        Intra, extra or in-focus.

    Raises
    ------
    RejectedImageError
        ``NOT_WAVEFRONT``, ``UNKNOWN_ROLE`` or ``ROLE_CONFLICT``, naming the header values.
    """
    types = limits.wavefront_image_types
    if types and info.image_type and info.image_type not in types:
        raise RejectedImageError(
            f"{info.obsid}: IMGTYPE={info.image_type!r} is not a wavefront image type (one of {list(types)})",
            kind=RejectionKind.NOT_WAVEFRONT,
        )
    role = stated_role(info, focus_tolerance_mm=limits.focus_tolerance_mm)
    if role is None:
        raise RejectedImageError(
            f"{info.obsid}: cannot tell intra, extra or in-focus from REASON={info.reason!r} "
            f"(expected INTRA, EXTRA or INFOCUS, optionally with a _suffix) and FOCUSZ={info.focus_z_mm} "
            f"(expected within {limits.focus_tolerance_mm} mm of {INTRA_FOCUS_Z_MM}, "
            f"{EXTRA_FOCUS_Z_MM:.4f} or 0)",
            kind=RejectionKind.UNKNOWN_ROLE,
        )
    return role


def swapped_focus_problem(intra: ImageInfo, extra: ImageInfo) -> str | None:
    """Why ``intra`` and ``extra`` look swapped (for LATISS the smaller ``FOCUSZ`` is extra), or None.

    Parameters
    ----------
    intra, extra : `ImageInfo`
        The header values of the images given as intra- and extra-focal.

    Returns
    -------
    problem : `str` or `None`
        The two OBSIDs and ``FOCUSZ`` values when intra's is not larger; `None` when it is or either is
        unknown.
    """
    zi, ze = intra.focus_z_mm, extra.focus_z_mm
    if zi is None or ze is None or zi > ze:
        return None
    return (
        f"intra {intra.obsid} has FOCUSZ={zi} mm, not larger than extra {extra.obsid} FOCUSZ={ze} mm; "
        "for LATISS the smaller FOCUSZ is extra"
    )


@dataclasses.dataclass(frozen=True)
class Rejection:
    """An image refused, with the reason."""

    obsid: str
    group_id: str
    kind: RejectionKind
    message: str


@dataclasses.dataclass(frozen=True)
class TripletRejection:
    """A triplet refused when it was formed (its images disagree)."""

    triplet: Triplet
    kind: RejectionKind
    message: str


@dataclasses.dataclass(frozen=True)
class CadenceWarning:
    """A cadence problem that does not stop processing."""

    group_id: str
    obsids: tuple[str, ...]
    kind: WarningKind
    message: str


@dataclasses.dataclass(frozen=True)
class ExpiredGroup:
    """Images of a group dropped because their partners never came."""

    group_id: str
    obsids: tuple[str, ...]
    message: str


@dataclasses.dataclass(frozen=True)
class AddOutcome:
    """What `Sequencer.add` did with one image.

    Attributes
    ----------
    obsid, group_id : `str`
        The image and the group it joined ('' group when rejected before grouping).
    role : `Role` or None
        None when rejected.
    rejection : `Rejection` or None
        Set when the image was refused; nothing else happened then.
    warnings : `tuple` of `CadenceWarning`
    triplets : `tuple` of `Triplet`
        Triplets completed by this image, ready to process.
    triplet_rejections : `tuple` of `TripletRejection`
        Triplets completed by this image but refused.
    """

    obsid: str
    group_id: str
    role: Role | None
    rejection: Rejection | None = None
    warnings: tuple[CadenceWarning, ...] = ()
    triplets: tuple[Triplet, ...] = ()
    triplet_rejections: tuple[TripletRejection, ...] = ()


@dataclasses.dataclass
class _Group:
    group_id: str
    day_obs: str
    auto: bool
    last_s: float
    pointing: tuple[float, float] | None
    last_role: Role | None = None
    warned: set[WarningKind] = dataclasses.field(default_factory=set)
    queues: dict[Role, collections.deque[ImageInfo]] = dataclasses.field(
        default_factory=lambda: {role: collections.deque() for role in Role}
    )

    def queued(self) -> list[ImageInfo]:
        return [image for role in ROLE_CYCLE for image in self.queues[role]]


class Sequencer:
    """Classify, group and pair images into triplets by the rules of the module docstring.

    Parameters
    ----------
    limits : `CadenceLimits`
        The rules' numbers.
    """

    def __init__(self, *, limits: CadenceLimits) -> None:
        self.limits = limits
        # Keyed by (DAYOBS, group id): a GROUPID names a group only within its night.
        self._groups: dict[tuple[str, str], _Group] = {}
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    @property
    def required_roles(self) -> tuple[Role, ...]:
        """Roles a triplet needs."""
        return ROLE_CYCLE if self.limits.require_infocus else ROLE_CYCLE[:2]

    def seen(self, obsid: str) -> bool:
        """Return True if ``obsid`` was added (or marked) before.

        Parameters
        ----------
        obsid : `str`
            Observation id.
        """
        return obsid in self._seen

    def mark_seen(self, obsids: Iterable[str]) -> None:
        """Remember OBSIDs handled elsewhere (e.g. found in the journal after a restart).

        Parameters
        ----------
        obsids : iterable of `str`
            Observation ids to treat as duplicates if they come again.
        """
        for obsid in obsids:
            self._remember(obsid)

    def pending(self) -> dict[str, tuple[str, ...]]:
        """Return the OBSIDs waiting for partners, by group id (groups of one id on several nights merged)."""
        pending: dict[str, tuple[str, ...]] = {}
        for group in self._groups.values():
            if group.queued():
                pending[group.group_id] = pending.get(group.group_id, ()) + tuple(
                    i.obsid for i in group.queued()
                )
        return pending

    def _remember(self, obsid: str) -> None:
        self._seen[obsid] = None
        while len(self._seen) > _MAX_SEEN:
            self._seen.popitem(last=False)

    def add(self, image: ImageInfo, *, now_s: float, replay: bool = False) -> AddOutcome:
        """Take one image; return what happened to it.

        Parameters
        ----------
        image : `ImageInfo`
        now_s : `float`
            Current time on the caller's clock, seconds.
        replay : `bool`
            True when re-adding journaled images after a restart: no order warnings.
        """
        if self.seen(image.obsid):
            return self._reject(image, "", RejectionKind.DUPLICATE, f"{image.obsid} was already received")
        self._remember(image.obsid)
        try:
            role = classify(image, limits=self.limits)
        except RejectedImageError as exc:
            return self._reject(image, image.group_id, exc.kind, str(exc))
        if role is Role.INFOCUS and not self.limits.require_infocus:
            return AddOutcome(obsid=image.obsid, group_id=image.group_id, role=role)
        group = self._group_for(image, now_s)
        warnings: list[CadenceWarning] = []
        order = None if replay else self._order_problem(group, role, image)
        if order is not None:
            kind, message = order
            if self.limits.order_policy == "reject":
                return self._reject(image, group.group_id, RejectionKind.OUT_OF_ORDER, message)
            if kind not in group.warned:
                group.warned.add(kind)
                warnings.append(CadenceWarning(group.group_id, (image.obsid,), kind, message))
        group.last_role = role
        group.last_s = now_s
        if group.pointing is None:
            group.pointing = image.pointing
        group.queues[role].append(image)
        triplets: list[Triplet] = []
        refused: list[TripletRejection] = []
        while all(group.queues[r] for r in self.required_roles):
            intra, extra = group.queues[Role.INTRA].popleft(), group.queues[Role.EXTRA].popleft()
            infocus = group.queues[Role.INFOCUS].popleft() if self.limits.require_infocus else None
            triplet = Triplet(group_id=group.group_id, intra=intra, extra=extra, infocus=infocus)
            swap = swapped_focus_problem(intra, extra)
            if swap is not None:
                refused.append(
                    TripletRejection(triplet, RejectionKind.SWAPPED_FOCUS, f"group {group.group_id}: {swap}")
                )
                continue
            warnings.extend(self._pointing_warnings(triplet))
            triplets.append(triplet)
        return AddOutcome(
            obsid=image.obsid,
            group_id=group.group_id,
            role=role,
            warnings=tuple(warnings),
            triplets=tuple(triplets),
            triplet_rejections=tuple(refused),
        )

    def expire(self, *, now_s: float) -> list[ExpiredGroup]:
        """Drop and report the images still unpaired ``partner_timeout_s`` after their group's last image.

        Idle groups with nothing queued are forgotten silently. ``now_s=math.inf`` ends the data: every
        image still queued is reported.

        Parameters
        ----------
        now_s : `float`
            Current time on the clock given to `add`, seconds; `math.inf` at the end of the data.

        Returns
        -------
        expired : `list` [`ExpiredGroup`]
            One entry per group that still had queued images.
        """
        expired: list[ExpiredGroup] = []
        for key, group in list(self._groups.items()):
            group_id = group.group_id
            idle_s = now_s - group.last_s
            if idle_s <= self.limits.partner_timeout_s:
                continue
            queued = group.queued()
            if queued:
                have = sorted({f"{len(group.queues[r])} {r.value}" for r in Role if group.queues[r]})
                waited = (
                    f"no partner within {self.limits.partner_timeout_s:g} s (idle {idle_s:.0f} s)"
                    if math.isfinite(now_s)
                    else "no partner by the end of the data"
                )
                expired.append(
                    ExpiredGroup(
                        group_id=group_id,
                        obsids=tuple(i.obsid for i in queued),
                        message=f"group {group_id}: {waited} for {', '.join(i.obsid for i in queued)} "
                        f"(have {', '.join(have)}; a triplet needs "
                        f"{', '.join(r.value for r in self.required_roles)})",
                    )
                )
            del self._groups[key]
        return expired

    def _reject(self, image: ImageInfo, group_id: str, kind: RejectionKind, message: str) -> AddOutcome:
        return AddOutcome(
            obsid=image.obsid,
            group_id=group_id,
            role=None,
            rejection=Rejection(obsid=image.obsid, group_id=group_id, kind=kind, message=message),
        )

    def _group_for(self, image: ImageInfo, now_s: float) -> _Group:
        if image.group_id:
            key = (image.day_obs, image.group_id)
            group = self._groups.get(key)
            if group is None:
                group = _Group(
                    image.group_id, image.day_obs, auto=False, last_s=now_s, pointing=image.pointing
                )
                self._groups[key] = group
            return group
        for group in sorted(self._groups.values(), key=lambda g: g.last_s, reverse=True):
            if not group.auto or group.day_obs != image.day_obs:
                continue
            if now_s - group.last_s > self.limits.group_window_s:
                continue
            if group.pointing is not None and image.pointing is not None:
                moved = angular_separation_deg(group.pointing, image.pointing)
                if moved > self.limits.pointing_tolerance_deg:
                    continue
            return group
        group = _Group(f"auto-{image.obsid}", image.day_obs, auto=True, last_s=now_s, pointing=image.pointing)
        self._groups[(image.day_obs, group.group_id)] = group
        return group

    def _order_problem(self, group: _Group, role: Role, image: ImageInfo) -> tuple[WarningKind, str] | None:
        cycle = self.required_roles
        last = group.last_role
        if last is None:
            if role is cycle[0]:
                return None
            return (
                WarningKind.OUT_OF_ORDER,
                f"group {group.group_id}: starts with {role.value} image {image.obsid}; the recommended "
                f"order is {', '.join(r.value for r in cycle)}, repeated",
            )
        if role is last:
            return (
                WarningKind.BLOCKED,
                f"group {group.group_id}: blocked sequence, {role.value} image {image.obsid} follows another "
                f"{role.value} image; interleave {', '.join(r.value for r in cycle)} so partners are close "
                "in time",
            )
        expected = cycle[(cycle.index(last) + 1) % len(cycle)]
        if role is expected:
            return None
        return (
            WarningKind.OUT_OF_ORDER,
            f"group {group.group_id}: {role.value} image {image.obsid} follows a {last.value} image; "
            f"expected {expected.value} (recommended order {', '.join(r.value for r in cycle)})",
        )

    def _pointing_warnings(self, triplet: Triplet) -> list[CadenceWarning]:
        ref = triplet.infocus if triplet.infocus is not None else triplet.intra
        if ref.pointing is None:
            return []
        moved = {
            image.obsid: angular_separation_deg(ref.pointing, image.pointing)
            for image in triplet.images
            if image is not ref and image.pointing is not None
        }
        far = {k: v for k, v in moved.items() if v > self.limits.pointing_tolerance_deg}
        if not far:
            return []
        detail = ", ".join(f"{k} by {v * 3600:.1f} arcsec" for k, v in far.items())
        return [
            CadenceWarning(
                triplet.group_id,
                (ref.obsid, *far),
                WarningKind.POINTING_MOVED,
                f"group {triplet.group_id}: pointing moved from {ref.obsid}: {detail} "
                f"(tolerance {self.limits.pointing_tolerance_deg * 3600:.1f} arcsec)",
            )
        ]


#: How an error message names each role.
ROLE_LABELS = {Role.INTRA: "intra-focal", Role.EXTRA: "extra-focal", Role.INFOCUS: "in-focus"}


def check_roles(given: Mapping[Role, Exposure]) -> None:
    """Refuse exposures whose headers contradict the role they were given for.

    The cadence rules (`cadence.stated_role`, `cadence.swapped_focus_problem`) applied to the images of one
    triplet: one exposure given twice, a role that ``REASON`` (else ``FOCUSZ``) contradicts, an intra image
    whose ``FOCUSZ`` is not larger than the extra's, images of different nights (``DAYOBS``: the sequencer
    never groups them). An exposure without these keys is taken as given; one without ``OBSID`` (an image
    prepared elsewhere) is checked by its ``REASON`` and ``FOCUSZ`` all the same.

    Parameters
    ----------
    given : mapping of `Role` to `Exposure`
        The exposures by the role they were given for (intra, extra and, if any, in-focus).

    Raises
    ------
    InputError
        Naming the exposure, the role it was given for and what its header says (or, for images of
        different nights, each image's OBSID and DAYOBS).
    CadenceError
        If an exposure's ``REASON`` and ``FOCUSZ`` disagree.
    """

    infos = {}
    for role, exposure in given.items():
        header = exposure.header
        if not str(header.get("OBSID", "") or "").strip():
            # A header without OBSID still says what it is; it is named by the role it was given for.
            header = header.copy()
            header["OBSID"] = f"the {ROLE_LABELS[role]} image (no OBSID)"
        infos[role] = ImageInfo.from_header(header)
    roles_of: dict[str, Role] = {}
    for role, info in infos.items():
        if info.obsid in roles_of:
            first = ROLE_LABELS[roles_of[info.obsid]]
            raise InputError(
                f"{info.obsid} was given as both the {first} and the {ROLE_LABELS[role]} image",
                value=info.obsid,
            )
        roles_of[info.obsid] = role
        stated = stated_role(info, focus_tolerance_mm=CadenceLimits.focus_tolerance_mm)
        if stated is not None and stated is not role:
            raise InputError(
                f"{info.obsid} was given as the {ROLE_LABELS[role]} image but its header says "
                f"{ROLE_LABELS[stated]} (REASON={info.reason!r}, FOCUSZ={info.focus_z_mm} mm)",
                value=info.obsid,
                allowed=role.value,
            )
    nights = {role: info.day_obs for role, info in infos.items() if info.day_obs}
    if len(set(nights.values())) > 1:
        detail = ", ".join(f"{ROLE_LABELS[r]} {infos[r].obsid} DAYOBS={day}" for r, day in nights.items())
        raise InputError(
            f"the images come from different nights ({detail}); a triplet's images are of one night",
            value=tuple(nights.values()),
        )
    if Role.INTRA in infos and Role.EXTRA in infos:
        swapped = swapped_focus_problem(infos[Role.INTRA], infos[Role.EXTRA])
        if swapped is not None:
            raise InputError(swapped, value=(infos[Role.INTRA].obsid, infos[Role.EXTRA].obsid))
