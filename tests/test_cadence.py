"""The sequencer: roles, grouping, interleaved order, pointing, duplicates, timeouts, triplet states."""

import dataclasses
import math
import pickle

import numpy as np
import pytest

from lsst.ts.auxtelwep.cadence import (
    CadenceLimits,
    RejectedImageError,
    RejectionKind,
    Sequencer,
    Triplet,
    TripletState,
    WarningKind,
    angular_separation_deg,
    check_transition,
    classify,
)
from lsst.ts.auxtelwep.errors import CadenceError, RawFormatError
from lsst.ts.auxtelwep.instrument import Role
from lsst.ts.auxtelwep.intake import ImageInfo

LIMITS = CadenceLimits()
FOCUS = {Role.INTRA: 0.8, Role.EXTRA: -0.8011, Role.INFOCUS: 0.0}
REASON = {Role.INTRA: "INTRA", Role.EXTRA: "EXTRA", Role.INFOCUS: "INFOCUS"}


def image(
    seq: int, role: Role, *, group: str = "G1", ra: float = 150.0, dec: float = -30.0, **kw
) -> ImageInfo:
    fields = dict(
        obsid=f"AT_O_20240624_{seq:06d}",
        group_id=group,
        image_type="CWFS" if role is not Role.INFOCUS else "ACQ",
        reason=f"{REASON[role]}_align",
        focus_z_mm=FOCUS[role],
        ra_deg=ra,
        dec_deg=dec,
        day_obs="20240624",
        seq_num=seq,
    )
    fields.update(kw)
    return ImageInfo(**fields)


def feed(seq: Sequencer, roles: list[Role], *, start: int = 1, dt: float = 10.0, **kw):
    return [seq.add(image(start + i, r, **kw), now_s=dt * i) for i, r in enumerate(roles)]


I, E, F = Role.INTRA, Role.EXTRA, Role.INFOCUS  # noqa: E741


def test_classify_by_reason_and_focus() -> None:
    assert classify(image(1, I), limits=LIMITS) is I
    assert classify(image(2, E, reason="EXTRA"), limits=LIMITS) is E
    assert classify(image(3, F, reason="INFOCUS"), limits=LIMITS) is F
    # FOCUSZ alone decides when REASON says nothing; REASON alone when FOCUSZ is off-nominal.
    assert classify(image(4, E, reason=""), limits=LIMITS) is E
    assert classify(image(5, I, focus_z_mm=None), limits=LIMITS) is I
    assert classify(image(6, I, focus_z_mm=0.5), limits=LIMITS) is I


@pytest.mark.parametrize(
    ("kw", "kind", "words"),
    [
        (dict(reason="INTRA", focus_z_mm=-0.8011), RejectionKind.ROLE_CONFLICT, "FOCUSZ=-0.8011"),
        (dict(reason="SCIENCE", focus_z_mm=0.5), RejectionKind.UNKNOWN_ROLE, "REASON='SCIENCE'"),
        (dict(reason="", focus_z_mm=None), RejectionKind.UNKNOWN_ROLE, "FOCUSZ=None"),
        (dict(image_type="BIAS"), RejectionKind.NOT_WAVEFRONT, "IMGTYPE='BIAS'"),
    ],
)
def test_classify_rejects_with_reason(kw, kind, words) -> None:
    with pytest.raises(RejectedImageError, match=words) as info:
        classify(image(7, I, **kw), limits=LIMITS)
    assert info.value.kind is kind
    assert "AT_O_20240624_000007" in str(info.value)


def test_header_parsing_and_radians_before_2020() -> None:
    header = {"OBSID": "AT_O_20240624_000106", "DAYOBS": "20240624", "RA": 10.0, "DEC": -20.0, "SEQNUM": 106}
    info = ImageInfo.from_header(
        header | {"GROUPID": "g", "IMGTYPE": "cwfs", "FOCUSZ": "0.8"}, path="/x.fits"
    )
    assert (info.ra_deg, info.dec_deg, info.seq_num, info.image_type, info.focus_z_mm) == (
        10.0,
        -20.0,
        106,
        "CWFS",
        0.8,
    )
    old = ImageInfo.from_header(header | {"DAYOBS": "20191105", "RA": np.pi / 2, "DEC": -np.pi / 6})
    assert old.ra_deg == pytest.approx(90.0) and old.dec_deg == pytest.approx(-30.0)
    with pytest.raises(RawFormatError, match="FOCUSZ='near'"):
        ImageInfo.from_header(header | {"FOCUSZ": "near"})
    with pytest.raises(RawFormatError, match="no OBSID"):
        ImageInfo.from_header({"DAYOBS": "20240624"}, path="/data/x.fits")
    assert ImageInfo.from_dict(info.to_dict()) == info


def test_exposure_start_from_the_header_in_its_time_scale(caplog: pytest.LogCaptureFixture) -> None:
    header = {"OBSID": "AT_O_20240624_000106"}
    utc = 1719280800.0  # 2024-06-25T02:00:00 UTC; TAI is 37 s ahead
    assert ImageInfo.from_header(header | {"DATE-OBS": "2024-06-25T02:00:37.000"}).exposure_start == utc
    in_utc = header | {"DATE-OBS": "2024-06-25T02:00:00", "TIMESYS": "UTC"}
    assert ImageInfo.from_header(in_utc).exposure_start == pytest.approx(utc)
    # MJD-BEG first, then DATE-BEG, then DATE-OBS.
    both = header | {"MJD-BEG": 60486.0 + 37 / 86400, "DATE-BEG": "2024-01-01T00:00:00", "DATE-OBS": "x"}
    assert ImageInfo.from_header(both).exposure_start == pytest.approx(1719273600.0, abs=1e-3)
    # A scale this package cannot convert leaves the start unknown.
    assert ImageInfo.from_header(header | {"DATE-OBS": "2024-06-25", "TIMESYS": "UT1"}).exposure_start is None
    assert ImageInfo.from_header(header).exposure_start is None
    # A key that is no time is passed over, warned (late-2019 raws have MJD-BEG and DATE-OBS of 1970).
    for key, value in (("DATE-OBS", "yesterday"), ("MJD-BEG", "abc"), ("MJD-BEG", 1e30), ("DATE-OBS", 5)):
        caplog.clear()
        assert ImageInfo.from_header(header | {key: value}).exposure_start is None
        assert f"header {key}={value!r} is not a time" in caplog.text
    real_2019 = {"MJD-BEG": 40587.00009, "DATE-OBS": "1970-01-01T00:00:08", "DATE-BEG": "2019-11-13T01:02:03"}
    assert ImageInfo.from_header(header | real_2019).exposure_start == pytest.approx(1573606886.0, abs=1)


def test_interleaved_order_makes_triplets_without_warnings() -> None:
    seq = Sequencer(limits=LIMITS)
    outcomes = feed(seq, [I, E, F, I, E, F])
    assert all(not o.warnings and o.rejection is None for o in outcomes)
    triplets = [t for o in outcomes for t in o.triplets]
    assert [t.key for t in triplets] == [
        "AT_O_20240624_000001+AT_O_20240624_000002+AT_O_20240624_000003",
        "AT_O_20240624_000004+AT_O_20240624_000005+AT_O_20240624_000006",
    ]
    assert seq.pending() == {}
    assert Triplet.from_dict(triplets[0].to_dict()) == triplets[0]
    assert pickle.loads(pickle.dumps(triplets[0])) == triplets[0]


def test_blocked_sequence_warns_once_and_pairs_first_in_first_out() -> None:
    seq = Sequencer(limits=LIMITS)
    outcomes = feed(seq, [I, I, I, F, E, E, E, F, F])
    kinds = [w.kind for o in outcomes for w in o.warnings]
    assert kinds.count(WarningKind.BLOCKED) == 1
    assert kinds.count(WarningKind.OUT_OF_ORDER) == 1
    blocked = next(w for o in outcomes for w in o.warnings if w.kind is WarningKind.BLOCKED)
    assert "blocked" in blocked.message and blocked.obsids == ("AT_O_20240624_000002",)
    pairs = [(t.intra.seq_num, t.extra.seq_num, t.infocus.seq_num) for o in outcomes for t in o.triplets]
    assert pairs == [(1, 5, 4), (2, 6, 8), (3, 7, 9)]


def test_out_of_order_warns_or_rejects_by_policy() -> None:
    outcomes = feed(Sequencer(limits=LIMITS), [E, I, F])
    assert [w.kind for w in outcomes[0].warnings] == [WarningKind.OUT_OF_ORDER]
    assert "starts with extra" in outcomes[0].warnings[0].message
    assert len(outcomes[2].triplets) == 1  # still processed under "warn"
    strict = Sequencer(limits=dataclasses.replace(LIMITS, order_policy="reject"))
    outcomes = feed(strict, [I, F, E, F])
    assert outcomes[1].rejection.kind is RejectionKind.OUT_OF_ORDER
    assert "expected extra" in outcomes[1].rejection.message
    assert len(outcomes[3].triplets) == 1


def test_duplicate_and_unknown_role_are_rejected() -> None:
    seq = Sequencer(limits=LIMITS)
    first = seq.add(image(1, I), now_s=0.0)
    again = seq.add(image(1, I), now_s=1.0)
    assert first.rejection is None
    assert again.rejection.kind is RejectionKind.DUPLICATE and "already received" in again.rejection.message
    odd = seq.add(image(2, I, reason="FLAT", focus_z_mm=0.3), now_s=2.0)
    assert odd.rejection.kind is RejectionKind.UNKNOWN_ROLE
    seq.mark_seen(["AT_O_20240624_000009"])
    assert seq.add(image(9, E), now_s=3.0).rejection.kind is RejectionKind.DUPLICATE


def test_pointing_moved_between_infocus_and_defocal() -> None:
    seq = Sequencer(limits=LIMITS)
    seq.add(image(1, I, dec=-30.0), now_s=0)
    seq.add(image(2, E, dec=-30.0), now_s=1)
    done = seq.add(image(3, F, dec=-30.0 + 0.2), now_s=2)
    assert len(done.triplets) == 1
    (warning,) = done.warnings
    assert warning.kind is WarningKind.POINTING_MOVED
    assert "720.0 arcsec" in warning.message and warning.obsids[0] == "AT_O_20240624_000003"
    # Within tolerance: no warning.
    seq2 = Sequencer(limits=LIMITS)
    assert not [w for o in feed(seq2, [I, E, F], dec=-30.01) for w in o.warnings]


def test_swapped_focus_rejects_the_triplet() -> None:
    seq = Sequencer(limits=dataclasses.replace(LIMITS, require_infocus=False))
    seq.add(image(1, I, focus_z_mm=0.5), now_s=0)  # REASON decides; FOCUSZ off-nominal
    out = seq.add(image(2, E, focus_z_mm=0.6), now_s=1)
    assert not out.triplets
    (refused,) = out.triplet_rejections
    assert refused.kind is RejectionKind.SWAPPED_FOCUS and "smaller FOCUSZ is extra" in refused.message


def test_missing_partner_is_reported_after_timeout() -> None:
    seq = Sequencer(limits=LIMITS)
    feed(seq, [I, E])
    assert seq.expire(now_s=LIMITS.partner_timeout_s) == []  # last image at t = 10 s: not yet
    (expired,) = seq.expire(now_s=LIMITS.partner_timeout_s + 11.0)
    assert expired.obsids == ("AT_O_20240624_000001", "AT_O_20240624_000002")
    assert "no partner" in expired.message and "1 intra" in expired.message
    assert seq.pending() == {}


def test_the_end_of_the_data_reports_what_is_left() -> None:
    # Offline, the night's end expires every group: "idle inf s" said nothing useful.
    seq = Sequencer(limits=LIMITS)
    feed(seq, [I, E])
    (expired,) = seq.expire(now_s=math.inf)
    assert "no partner by the end of the data" in expired.message and "idle" not in expired.message


def test_grouping_without_groupid_uses_time_and_pointing() -> None:
    seq = Sequencer(limits=LIMITS)
    a = seq.add(image(1, I, group=""), now_s=0)
    b = seq.add(image(2, E, group=""), now_s=30)
    c = seq.add(image(3, I, group="", ra=151.0), now_s=40)  # 0.87 deg away: a new group
    d = seq.add(image(4, F, group=""), now_s=60 + LIMITS.group_window_s)  # too late: a new group
    assert a.group_id == b.group_id == "auto-AT_O_20240624_000001"
    assert c.group_id == "auto-AT_O_20240624_000003"
    assert d.group_id == "auto-AT_O_20240624_000004"


def test_groups_never_span_two_nights() -> None:
    # Two nights whose GROUPIDs coincide, the first with its extra missing: the second night's extra
    # completed the first night's intra (a wrong correction returned as a normal result).
    seq = Sequencer(limits=LIMITS)

    def night(day: str, seqs: list[int], roles: list[Role]) -> list:
        return [
            seq.add(image(n, r, obsid=f"AT_O_{day}_{n:06d}", day_obs=day), now_s=float(n))
            for n, r in zip(seqs, roles, strict=True)
        ]

    first = night("20240624", [1, 3], [I, F])
    second = night("20240625", [11, 12, 13], [I, E, F])
    assert not any(o.triplets for o in first)
    (triplet,) = second[2].triplets
    assert {i.day_obs for i in triplet.images} == {"20240625"}
    assert triplet.group_id == "G1"
    assert seq.pending() == {"G1": ("AT_O_20240624_000001", "AT_O_20240624_000003")}
    # Without GROUPID the same holds: an image of another night opens its own group.
    auto = Sequencer(limits=LIMITS)
    a = auto.add(image(1, I, group=""), now_s=0)
    b = auto.add(image(2, E, group="", obsid="AT_O_20240625_000002", day_obs="20240625"), now_s=1)
    assert a.group_id != b.group_id


def test_replay_adds_without_warnings() -> None:
    seq = Sequencer(limits=LIMITS)
    out = seq.add(image(2, E), now_s=0, replay=True)
    assert not out.warnings and out.rejection is None


def test_optional_infocus() -> None:
    seq = Sequencer(limits=dataclasses.replace(LIMITS, require_infocus=False))
    outcomes = feed(seq, [I, E, F])
    assert outcomes[1].triplets[0].infocus is None
    assert outcomes[2].role is F and not outcomes[2].triplets and not outcomes[2].warnings


def test_angular_separation() -> None:
    rng = np.random.default_rng(5)
    for ra, dec in rng.uniform([0, -80], [360, 80], size=(5, 2)):
        d = rng.uniform(0.001, 1.0)
        # Along a meridian the separation is the change of declination (exact).
        assert angular_separation_deg((ra, dec), (ra, dec + d)) == pytest.approx(d, rel=1e-9)
        # Along a parallel, small steps shrink by cos(dec) (to second order in the step).
        assert angular_separation_deg((ra, dec), (ra + d, dec)) == pytest.approx(
            d * np.cos(np.radians(dec)), rel=1e-4
        )


def test_triplet_state_transitions() -> None:
    check_transition(TripletState.COMPLETE, TripletState.PROCESSING, key="k")
    check_transition(TripletState.PROCESSING, TripletState.COMPLETE, key="k")  # resumed after a crash
    with pytest.raises(CadenceError, match="triplet k: cannot go from DONE to PROCESSING: its result was"):
        check_transition(TripletState.DONE, TripletState.PROCESSING, key="k")
    with pytest.raises(CadenceError, match="never processed"):
        check_transition(TripletState.COMPLETE, TripletState.DONE, key="k")
    messages = set()
    for old in TripletState:
        for new in TripletState:
            try:
                check_transition(old, new, key="k")
            except CadenceError as exc:
                messages.add(str(exc))
    # Every illegal move has its own message.
    illegal = sum(1 for old in TripletState for new in TripletState) - 5
    assert len(messages) == illegal
